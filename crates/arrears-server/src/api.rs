//! The gRPC services. Every handler: authenticate (interceptor) → check the role →
//! validate the request → one store call off the async threads → map the result.
//! Mutations are written together with their audit record.

mod agreements;
mod correspondence;
mod reports;
mod writeoffs;
pub use agreements::{agreement_to_pb, plan_kind};
pub use correspondence::message_to_pb;
pub use reports::report_to_pb;
pub use writeoffs::write_off_to_pb;

use std::sync::Arc;

use rust_decimal::Decimal;
use serde_json::json;
use tonic::transport::server::Router;
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use tower::layer::util::{Identity, Stack};

use super::auth::principal;
use super::authz::{AuthLayer, Reach};
use super::metrics::observed;
use super::pb;
use super::watch::{self, entry_to_pb, priority_to_pb, MAX_PAGE};
use super::{parse_date, status, RunRequest, ServeError, Shared};
use crate::app_status;
use crate::config::TlsConfig;
use arrears_app::{self as app, cases::Caller};
use arrears_core::domain::{Activity, ErpDunning};
use arrears_rules::{self as rules, RuleError};
use arrears_store::{CaseDetail, Store};

#[derive(Clone)]
pub struct Api {
    shared: Arc<Shared>,
}

/// The health service's name for "this replica leads".
pub const LEADER_HEALTH: &str = "arrears.leader";

pub fn router(
    shared: Arc<Shared>,
    tls: Option<&TlsConfig>,
) -> Result<Router<Stack<AuthLayer, Identity>>, ServeError> {
    let api = Api {
        shared: shared.clone(),
    };
    let (health_reporter, health) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let names = [
        "arrears.v1.Worklists",
        "arrears.v1.Cases",
        "arrears.v1.Promises",
        "arrears.v1.Disputes",
        "arrears.v1.Strategies",
        "arrears.v1.Explain",
        "arrears.v1.Admin",
    ];
    let me = shared.clone();
    tokio::spawn(async move {
        for n in names {
            health_reporter
                .set_service_status(n, tonic_health::ServingStatus::Serving)
                .await;
        }
        health_reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        // `arrears.leader`: SERVING on the replica that runs portfolios,
        // connectors and the outbox, NOT_SERVING on the others (a load balancer
        // or an operator asks the standard health service which one leads).
        let mut stop = me.shutdown.clone();
        let mut said = None;
        loop {
            let leads = me.lead.leads();
            if said != Some(leads) {
                health_reporter
                    .set_service_status(
                        LEADER_HEALTH,
                        if leads {
                            tonic_health::ServingStatus::Serving
                        } else {
                            tonic_health::ServingStatus::NotServing
                        },
                    )
                    .await;
                said = Some(leads);
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    });
    let mut builder = Server::builder();
    if let Some(t) = tls {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| ServeError::Tls(format!("{}: {e}", p.display())))
        };
        // The private key is a secret like a token: refused when others can read it.
        let key = arrears_secret::read(&t.key).map_err(|e| ServeError::Tls(e.to_string()))?;
        let identity = tonic::transport::Identity::from_pem(read(&t.cert)?, key);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| ServeError::Tls(e.to_string()))?;
    }
    Ok(builder
        .layer(AuthLayer::new(shared.auth.clone()))
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(pb::worklists_server::WorklistsServer::new(api.clone()))
        .add_service(pb::cases_server::CasesServer::new(api.clone()))
        .add_service(pb::promises_server::PromisesServer::new(api.clone()))
        .add_service(pb::disputes_server::DisputesServer::new(api.clone()))
        .add_service(pb::strategies_server::StrategiesServer::new(api.clone()))
        .add_service(pb::explain_server::ExplainServer::new(api.clone()))
        .add_service(
            // Statement files are often larger than gRPC's default 4 MiB message.
            // The auth layer runs first, so an unauthenticated call never takes a slot.
            super::limits::InFlight::new(
                pb::statements_server::StatementsServer::new(api.clone())
                    .max_decoding_message_size(MAX_STATEMENT_BYTES),
                shared.cfg.limits.uploads,
                "uploads",
            ),
        )
        .add_service(pb::connectors_server::ConnectorsServer::new(api.clone()))
        .add_service(pb::reports_server::ReportsServer::new(api.clone()))
        .add_service(pb::write_offs_server::WriteOffsServer::new(api.clone()))
        .add_service(pb::agreements_server::AgreementsServer::new(api.clone()))
        .add_service(pb::correspondence_server::CorrespondenceServer::new(
            api.clone(),
        ))
        .add_service(pb::admin_server::AdminServer::new(api)))
}

const MAX_STATEMENT_BYTES: usize = 64 << 20;

/// An amount argument: exact decimal notation within the amount bound.
fn amount_arg(field: &str, v: &str) -> Result<Decimal, Status> {
    arrears_core::money::parse_amount(v)
        .and_then(arrears_core::money::check_bound)
        .map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

fn money(amount: Decimal, currency: &str) -> Option<pb::Money> {
    Some(pb::Money {
        amount: amount.to_string(),
        currency: currency.to_string(),
    })
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(|x| x.to_string()).unwrap_or_default()
}

fn nonempty<'a>(field: &str, v: &'a str) -> Result<&'a str, Status> {
    if v.trim().is_empty() {
        Err(Status::invalid_argument(format!("{field} is required")))
    } else {
        Ok(v)
    }
}

fn positive_id(field: &str, v: i64) -> Result<i64, Status> {
    if v <= 0 {
        Err(Status::invalid_argument(format!(
            "{field} is required (a positive id)"
        )))
    } else {
        Ok(v)
    }
}

pub fn case_to_pb(d: &CaseDetail, store: &Store) -> Result<pb::Case, Status> {
    let activity = match &d.activity {
        Activity::None => pb::Activity {
            state: "none".into(),
            ..Default::default()
        },
        Activity::Open {
            category,
            subcategory,
            days_to_complete,
            last_edited_on,
        } => pb::Activity {
            state: "open".into(),
            category: category.clone(),
            subcategory: subcategory.clone(),
            days_to_complete: (*days_to_complete).max(0) as u32,
            last_edited_on: last_edited_on.to_string(),
            ..Default::default()
        },
        Activity::Completed { on, ptp } => pb::Activity {
            state: "completed".into(),
            completed_on: on.to_string(),
            promise_date: opt(ptp),
            ..Default::default()
        },
    };
    let promises = store
        .case_promises(d.id)
        .map_err(status)?
        .iter()
        .map(promise_to_pb)
        .collect();
    let disputes = store
        .case_disputes(d.id)
        .map_err(status)?
        .iter()
        .map(dispute_to_pb)
        .collect();
    Ok(pb::Case {
        id: d.id,
        status: d.status.clone(),
        customer: format!("{}/{}", d.company, d.customer),
        customer_name: d.customer_name.clone(),
        company: d.company.clone(),
        document_no: d.document_no.clone(),
        external_ref: opt(&d.external_ref),
        document_date: d.document_date.to_string(),
        due_date: d.due_date.to_string(),
        original_amount: money(d.original_amount, &d.currency),
        open_amount: money(d.open_amount, &d.currency),
        opened_on: d.opened_on.to_string(),
        closed_on: opt(&d.closed_on),
        close_reason: opt(&d.close_reason),
        nad: d.nad.to_string(),
        priority: priority_to_pb(d.priority),
        assigned_to: opt(&d.assigned_to),
        activity: Some(activity),
        history: d
            .history
            .iter()
            .map(|e| pb::CaseEvent {
                on: e.on.to_string(),
                kind: e.kind.clone(),
                actor: e.actor.clone(),
                detail: e.detail.clone(),
            })
            .collect(),
        promises,
        disputes,
    })
}

pub fn promise_to_pb(p: &arrears_store::PromiseView) -> pb::Promise {
    pb::Promise {
        id: p.id,
        customer: p.customer.clone(),
        case_id: p.case_id.unwrap_or(0),
        amount: money(p.amount, &p.currency),
        promised_on: p.promised_on.to_string(),
        created_on: p.created_on.to_string(),
        status: p.status.as_str().to_string(),
        judged_on: opt(&p.judged_on),
        channel: p.channel.clone().unwrap_or_default(),
        contact: p.contact.clone().unwrap_or_default(),
        documents: p.documents.clone(),
        paid: p.paid.map(|a| a.to_string()).unwrap_or_default(),
        paid_on: opt(&p.paid_on),
    }
}

pub fn dispute_to_pb(d: &arrears_store::DisputeView) -> pb::Dispute {
    pb::Dispute {
        id: d.id,
        customer: d.customer.clone(),
        case_id: d.case_id.unwrap_or(0),
        reason: d.reason.clone(),
        opened_on: d.opened_on.to_string(),
        resolved_on: opt(&d.resolved_on),
        resolution: opt(&d.resolution),
        documents: d.documents.clone(),
    }
}

fn problems(errs: &[RuleError]) -> Vec<pb::RuleProblem> {
    errs.iter()
        .map(|e| pb::RuleProblem {
            file: e.file.display().to_string(),
            line: e.pos.map_or(0, |p| p.0 as u32),
            column: e.pos.map_or(0, |p| p.1 as u32),
            message: e.message.clone(),
        })
        .collect()
}

/// Loads a rule set sent over the wire: the files are written to a private temporary
/// folder (paths may not climb out of it) and loaded as any rules folder. Problems are
/// reported with the sender's file names.
fn load_candidate(
    files: &[pb::RuleFile],
) -> Result<Result<rules::RuleSet, Vec<RuleError>>, Status> {
    const MAX_FILES: usize = 200;
    const MAX_BYTES: usize = 4 << 20;
    if files.is_empty() {
        return Err(Status::invalid_argument(
            "files: a rule set needs at least one file",
        ));
    }
    if files.len() > MAX_FILES {
        return Err(Status::invalid_argument(format!(
            "files: more than {MAX_FILES}"
        )));
    }
    let total: usize = files.iter().map(|f| f.content.len()).sum();
    if total > MAX_BYTES {
        return Err(Status::invalid_argument(format!(
            "files: {total} bytes in all, more than {MAX_BYTES}"
        )));
    }
    let dir =
        tempfile::tempdir().map_err(|e| Status::internal(format!("temporary folder: {e}")))?;
    for f in files {
        let rel = std::path::Path::new(&f.path);
        let ok = !f.path.is_empty()
            && rel
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !ok {
            return Err(Status::invalid_argument(format!(
                "files: `{}` is not a relative path inside the rules folder",
                f.path
            )));
        }
        let p = dir.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Status::internal(e.to_string()))?;
        }
        std::fs::write(&p, &f.content).map_err(|e| Status::internal(e.to_string()))?;
    }
    Ok(rules::load(dir.path()).map_err(|errs| {
        errs.0
            .into_iter()
            .map(|mut e| {
                if let Ok(rel) = e.file.strip_prefix(dir.path()) {
                    e.file = rel.to_path_buf();
                }
                e
            })
            .collect()
    }))
}

#[tonic::async_trait]
impl pb::worklists_server::Worklists for Api {
    async fn get_worklist(
        &self,
        req: Request<pb::GetWorklistRequest>,
    ) -> Result<Response<pb::WorklistPage>, Status> {
        observed("Worklists/GetWorklist", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let size = match r.page_size {
                0 => 50,
                n if n > MAX_PAGE => {
                    return Err(Status::invalid_argument(format!(
                        "page_size {n} is above the maximum {MAX_PAGE}"
                    )))
                }
                n => n,
            } as usize;
            let offset = if r.page_token.is_empty() {
                0
            } else {
                r.page_token.parse::<usize>().map_err(|_| {
                    Status::invalid_argument("page_token: not a token this server issued")
                })?
            };
            let loaded = self.shared.rules();
            let mut q = watch::query(&loaded.set, &who, r.scope.as_ref(), r.filter.as_ref())?;
            q.offset = offset;
            q.limit = size;
            let view = watch::view_for(&self.shared, &q).await?;
            let (list, total) = view.page(&q);
            let base = loaded.set.rates.base.to_string();
            let next = offset + list.len();
            let page = pb::WorklistPage {
                entries: list.iter().map(|e| entry_to_pb(e, &base)).collect(),
                next_page_token: if (next as u64) < total {
                    next.to_string()
                } else {
                    String::new()
                },
                total: total as u32,
            };
            Ok(Response::new(page))
        })
        .await
    }

    type WatchWorklistStream = watch::WatchStream;

    async fn watch_worklist(
        &self,
        req: Request<pb::WatchWorklistRequest>,
    ) -> Result<Response<Self::WatchWorklistStream>, Status> {
        observed("Worklists/WatchWorklist", async {
            let who = principal(&req)?;
            let stream = watch::start(self.shared.clone(), who, req.into_inner()).await?;
            Ok(Response::new(stream))
        })
        .await
    }
}

#[tonic::async_trait]
impl pb::cases_server::Cases for Api {
    async fn get_case(
        &self,
        req: Request<pb::GetCaseRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        observed("Cases/GetCase", async {
            let who = principal(&req)?;
            let id = nonempty("id", &req.get_ref().id)?.trim().to_string();
            let c = self
                .shared
                .read(move |store, rules| {
                    let n = match id.parse::<i64>() {
                        Ok(n) => n,
                        Err(_) => store.case_by_document(&id).map_err(status)?,
                    };
                    Reach::of(&who, rules).case(store, n).map_err(app_status)?;
                    let d = store.case_detail(n).map_err(status)?;
                    case_to_pb(&d, store)
                })
                .await?;
            Ok(Response::new(c))
        })
        .await
    }

    async fn list_cases(
        &self,
        req: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::ListCasesResponse>, Status> {
        observed("Cases/ListCases", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let key = nonempty("customer", &r.customer)?.to_string();
            let cases = self
                .shared
                .read(move |store, rules| {
                    let reach = Reach::of(&who, rules);
                    let id = reach.customer_key(store, &key).map_err(app_status)?;
                    let mut out = Vec::new();
                    for cid in store.cases_of(id, r.all).map_err(status)? {
                        // A case of the customer assigned to a colleague stays theirs.
                        if reach.case(store, cid).is_err() {
                            continue;
                        }
                        let d = store.case_detail(cid).map_err(status)?;
                        out.push(case_to_pb(&d, store)?);
                    }
                    Ok(out)
                })
                .await?;
            Ok(Response::new(pb::ListCasesResponse { cases }))
        })
        .await
    }

    async fn assign_cases(
        &self,
        req: Request<pb::AssignCasesRequest>,
    ) -> Result<Response<pb::AssignCasesResponse>, Status> {
        observed("Cases/AssignCases", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            for &i in &r.case_ids {
                positive_id("case_ids", i)?;
            }
            let to = (!r.collector.is_empty()).then(|| r.collector.clone());
            let on = self.shared.as_of(&r.on)?;
            let cause = format!(
                "{} case(s) assigned to {}",
                r.case_ids.len(),
                to.as_deref().unwrap_or("nobody")
            );
            let n = self
                .shared
                .write(cause, move |store, rules| {
                    let caller = Caller::new(&who, rules, &who.name);
                    app::cases::assign(store, rules, &caller, &r.case_ids, to.as_deref(), on)
                        .map_err(app_status)
                })
                .await?;
            Ok(Response::new(pb::AssignCasesResponse {
                assigned: n as u32,
            }))
        })
        .await
    }

    async fn add_note(
        &self,
        req: Request<pb::AddNoteRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        observed("Cases/AddNote", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let id = positive_id("case_id", r.case_id)?;
            let on = self.shared.as_of(&r.on)?;
            let c = self
                .shared
                .write(format!("case {id}: case.note"), move |store, rules| {
                    let caller = Caller::new(&who, rules, &who.name);
                    let d = app::cases::add_notes(store, rules, &caller, &[id], &r.text, on)
                        .map_err(app_status)?;
                    case_to_pb(&d[0], store)
                })
                .await?;
            Ok(Response::new(c))
        })
        .await
    }

    async fn add_notes(
        &self,
        req: Request<pb::AddNotesRequest>,
    ) -> Result<Response<pb::AddNotesResponse>, Status> {
        observed("Cases/AddNotes", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let mut ids = Vec::with_capacity(r.case_ids.len());
            for &c in &r.case_ids {
                ids.push(positive_id("case_ids", c)?);
            }
            let on = self.shared.as_of(&r.on)?;
            let noted = self
                .shared
                .write(format!("cases {ids:?}: cases.note"), move |store, rules| {
                    let caller = Caller::new(&who, rules, &who.name);
                    let d = app::cases::add_notes(store, rules, &caller, &ids, &r.text, on)
                        .map_err(app_status)?;
                    Ok(d.len() as u32)
                })
                .await?;
            Ok(Response::new(pb::AddNotesResponse { noted }))
        })
        .await
    }

    async fn set_activity(
        &self,
        req: Request<pb::SetActivityRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        observed("Cases/SetActivity", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let id = positive_id("case_id", r.case_id)?;
            nonempty("category", &r.category)?;
            nonempty("subcategory", &r.subcategory)?;
            let on = self.shared.as_of(&r.on)?;
            let c = self
                .shared
                .write(format!("case {id}: case.activity"), move |store, rules| {
                    let caller = Caller::new(&who, rules, &who.name);
                    let (d, _) = app::cases::set_activity(
                        store,
                        rules,
                        &caller,
                        id,
                        &r.category,
                        &r.subcategory,
                        on,
                    )
                    .map_err(app_status)?;
                    case_to_pb(&d, store)
                })
                .await?;
            Ok(Response::new(c))
        })
        .await
    }

    async fn complete_activity(
        &self,
        req: Request<pb::CompleteActivityRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        observed("Cases/CompleteActivity", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let id = positive_id("case_id", r.case_id)?;
            let on = self.shared.as_of(&r.on)?;
            let ptp = match (r.promise_date.is_empty(), r.promise_amount.is_empty()) {
                (true, true) => None,
                (false, false) => Some((
                    parse_date("promise_date", &r.promise_date)?,
                    amount_arg("promise_amount", &r.promise_amount)?,
                )),
                _ => {
                    return Err(Status::invalid_argument(
                        "promise_date and promise_amount go together",
                    ))
                }
            };
            let c = self
                .shared
                .write(format!("case {id}: case.complete"), move |store, rules| {
                    let caller = Caller::new(&who, rules, &who.name);
                    let (d, _) = app::cases::complete_activity(store, rules, &caller, id, on, ptp)
                        .map_err(app_status)?;
                    case_to_pb(&d, store)
                })
                .await?;
            Ok(Response::new(c))
        })
        .await
    }

    async fn set_resubmission(
        &self,
        req: Request<pb::SetResubmissionRequest>,
    ) -> Result<Response<pb::SetResubmissionResponse>, Status> {
        observed("Cases/SetResubmission", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let on = parse_date("on", &r.on)?;
            let made = self.shared.as_of("")?;
            self.shared
                .write(
                    format!("customer {} resubmitted for {on}", r.customer),
                    move |store, rules| {
                        let caller = Caller::new(&who, rules, &who.name);
                        app::customers::resubmit(store, &caller, &r.customer, on, &r.reason, made)
                            .map_err(app_status)?;
                        Ok(())
                    },
                )
                .await?;
            Ok(Response::new(pb::SetResubmissionResponse {}))
        })
        .await
    }

    async fn get_customer(
        &self,
        req: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        observed("Cases/GetCustomer", async {
            let who = principal(&req)?;
            let key = nonempty("customer", &req.get_ref().customer)?.to_string();
            let as_of = self.shared.as_of("")?;
            let c = self
                .shared
                .read(move |store, rules| {
                    let id = Reach::of(&who, rules)
                        .customer_key(store, &key)
                        .map_err(app_status)?;
                    let v = store.customer_view(id, as_of).map_err(status)?;
                    Ok(customer_to_pb(&v))
                })
                .await?;
            Ok(Response::new(c))
        })
        .await
    }
}

pub fn customer_to_pb(v: &arrears_store::CustomerView) -> pb::Customer {
    pb::Customer {
        id: v.id,
        customer: format!("{}/{}", v.company, v.code),
        name: v.name.clone(),
        company: v.company.clone(),
        country: v.country.clone(),
        email: opt(&v.email),
        phone: opt(&v.phone),
        language: opt(&v.language),
        timezone: opt(&v.timezone),
        credit_limit: v
            .credit_limit
            .zip(v.credit_currency.as_ref())
            .and_then(|(a, c)| money(a, c)),
        strategy: opt(&v.strategy),
        segment: opt(&v.segment),
        profile: opt(&v.profile),
        score: opt(&v.score),
        collection_group: opt(&v.collection_group),
        collector: opt(&v.collector),
        dunning_level: v.dunning_level.unwrap_or(0).max(0) as u32,
        dunning_on: opt(&v.dunning_on),
        open_items: v
            .items
            .iter()
            .map(|i| pb::Item {
                id: i.id,
                document_no: i.document_no.clone(),
                document_date: i.document_date.to_string(),
                due_date: i.due_date.to_string(),
                original_amount: money(i.original_amount, &i.currency),
                open_amount: money(i.open_amount, &i.currency),
                status: i.status.clone(),
                days_overdue: i.days_overdue,
                disputed: i.disputed,
                hold_reason: opt(&i.hold_reason),
                hold_until: opt(&i.hold_until),
            })
            .collect(),
        payments: v
            .payments
            .iter()
            .map(|p| pb::Payment {
                value_date: p.value_date.to_string(),
                amount: money(p.amount, &p.currency),
                reference: p.reference.clone(),
            })
            .collect(),
        promises: v.promises.iter().map(promise_to_pb).collect(),
        disputes: v.disputes.iter().map(dispute_to_pb).collect(),
        contacts: v
            .contacts
            .iter()
            .map(|e| pb::CaseEvent {
                on: e.on.to_string(),
                kind: e.kind.clone(),
                actor: e.actor.clone(),
                detail: e.detail.clone(),
            })
            .collect(),
        bureau_score: match &v.bureau {
            Some((bureau, Some(score), class, at)) => format!(
                "{score} ({}; {bureau}, {at})",
                class.as_deref().unwrap_or("-")
            ),
            Some((bureau, None, _, at)) => format!("unknown to {bureau} ({at})"),
            None => String::new(),
        },
        erp_excluded: v.erp_dunning == Some(ErpDunning::Excluded),
        erp_procedure: match &v.erp_dunning {
            Some(ErpDunning::Procedure(p)) => p.clone(),
            _ => String::new(),
        },
        letter_address: v.letter_address.clone().unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl pb::promises_server::Promises for Api {
    async fn create_promise(
        &self,
        req: Request<pb::CreatePromiseRequest>,
    ) -> Result<Response<pb::Promise>, Status> {
        observed("Promises/CreatePromise", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let id = positive_id("case_id", r.case_id)?;
            let mut case_ids = vec![id];
            for &c in &r.more_case_ids {
                case_ids.push(positive_id("more_case_ids", c)?);
            }
            let amount = amount_arg("amount", &r.amount)?;
            let text = |s: String| (!s.trim().is_empty()).then(|| s.trim().to_string());
            let new = arrears_store::NewPromise {
                case_ids,
                amount,
                promised_on: parse_date("promised_on", &r.promised_on)?,
                on: self.shared.as_of(&r.on)?,
                channel: text(r.channel),
                contact: text(r.contact),
            };
            let p = self
                .shared
                .write(format!("promise on case {id}"), move |store, rules| {
                    let caller = Caller::new(&who, rules, &who.name);
                    Ok(promise_to_pb(
                        &app::promises::create(store, &caller, &new).map_err(app_status)?,
                    ))
                })
                .await?;
            Ok(Response::new(p))
        })
        .await
    }

    async fn list_promises(
        &self,
        req: Request<pb::ListPromisesRequest>,
    ) -> Result<Response<pb::ListPromisesResponse>, Status> {
        observed("Promises/ListPromises", async {
            let who = principal(&req)?;
            let key = nonempty("customer", &req.get_ref().customer)?.to_string();
            let promises = self
                .shared
                .read(move |store, rules| {
                    let id = Reach::of(&who, rules)
                        .customer_key(store, &key)
                        .map_err(app_status)?;
                    Ok(store
                        .list_promises(id)
                        .map_err(status)?
                        .iter()
                        .map(promise_to_pb)
                        .collect())
                })
                .await?;
            Ok(Response::new(pb::ListPromisesResponse { promises }))
        })
        .await
    }

    async fn judge_promises(
        &self,
        req: Request<pb::JudgePromisesRequest>,
    ) -> Result<Response<pb::JudgePromisesResponse>, Status> {
        observed("Promises/JudgePromises", async {
            let who = principal(&req)?;
            let as_of = self.shared.as_of(&req.get_ref().as_of)?;
            let tol = self.shared.cfg.promise_tolerance_days;
            let s = self
                .shared
                .write("promises judged".into(), move |store, _| {
                    store
                        .audited(&who.name, "promises.judge", &as_of.to_string(), |st| {
                            let s = st.judge_promises(as_of, tol)?;
                            let after = json!(s);
                            Ok((s, json!(null), after))
                        })
                        .map_err(status)
                })
                .await?;
            Ok(Response::new(pb::JudgePromisesResponse {
                judged: s.judged as u32,
                kept: s.kept as u32,
                partial: s.partial as u32,
                broken: s.broken as u32,
            }))
        })
        .await
    }
}

#[tonic::async_trait]
impl pb::disputes_server::Disputes for Api {
    async fn open_dispute(
        &self,
        req: Request<pb::OpenDisputeRequest>,
    ) -> Result<Response<pb::Dispute>, Status> {
        observed("Disputes/OpenDispute", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let id = positive_id("case_id", r.case_id)?;
            let mut more = Vec::with_capacity(r.more_case_ids.len());
            for &c in &r.more_case_ids {
                more.push(positive_id("more_case_ids", c)?);
            }
            let on = self.shared.as_of(&r.on)?;
            let d = self
                .shared
                .write(format!("dispute on case {id}"), move |store, rules| {
                    let caller = Caller::new(&who, rules, &who.name);
                    let d = app::disputes::open(store, &caller, id, &more, &r.reason, on)
                        .map_err(app_status)?;
                    Ok(dispute_to_pb(&d))
                })
                .await?;
            Ok(Response::new(d))
        })
        .await
    }

    async fn resolve_dispute(
        &self,
        req: Request<pb::ResolveDisputeRequest>,
    ) -> Result<Response<pb::Dispute>, Status> {
        observed("Disputes/ResolveDispute", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let id = positive_id("dispute_id", r.dispute_id)?;
            let on = self.shared.as_of(&r.on)?;
            let d = self
                .shared
                .write(format!("dispute {id} resolved"), move |store, rules| {
                    let caller = Caller::new(&who, rules, &who.name);
                    let d = app::disputes::resolve(store, &caller, id, &r.resolution, on)
                        .map_err(app_status)?;
                    Ok(dispute_to_pb(&d))
                })
                .await?;
            Ok(Response::new(d))
        })
        .await
    }

    async fn list_disputes(
        &self,
        req: Request<pb::ListDisputesRequest>,
    ) -> Result<Response<pb::ListDisputesResponse>, Status> {
        observed("Disputes/ListDisputes", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let key = nonempty("customer", &r.customer)?.to_string();
            let disputes = self
                .shared
                .read(move |store, rules| {
                    let id = Reach::of(&who, rules)
                        .customer_key(store, &key)
                        .map_err(app_status)?;
                    Ok(store
                        .list_disputes(id, r.all)
                        .map_err(status)?
                        .iter()
                        .map(dispute_to_pb)
                        .collect())
                })
                .await?;
            Ok(Response::new(pb::ListDisputesResponse { disputes }))
        })
        .await
    }

    async fn dispute_ageing(
        &self,
        req: Request<pb::DisputeAgeingRequest>,
    ) -> Result<Response<pb::DisputeAgeingResponse>, Status> {
        observed("Disputes/DisputeAgeing", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let as_of = self.shared.as_of(&r.as_of)?;
            let oldest = if r.oldest == 0 {
                20
            } else {
                r.oldest.min(1000)
            } as usize;
            let a = self
                .shared
                .read(move |store, rules| {
                    let reach = Reach::of(&who, rules);
                    let mut seen = std::collections::HashMap::new();
                    store
                        .dispute_ageing(as_of, oldest, &mut |c| {
                            if let Some(&ok) = seen.get(&c) {
                                return Ok(ok);
                            }
                            let ok = reach.allows(&store.customer_owner(c)?);
                            seen.insert(c, ok);
                            Ok(ok)
                        })
                        .map_err(status)
                })
                .await?;
            Ok(Response::new(dispute_ageing_to_pb(&a)))
        })
        .await
    }
}

pub fn dispute_ageing_to_pb(a: &arrears_store::DisputeAgeing) -> pb::DisputeAgeingResponse {
    pb::DisputeAgeingResponse {
        buckets: a
            .buckets
            .iter()
            .map(|b| pb::AgeingBucket {
                bucket: b.bucket.clone(),
                disputes: b.disputes,
                amounts: b.amounts.iter().filter_map(|(c, x)| money(*x, c)).collect(),
            })
            .collect(),
        oldest: a.oldest.iter().map(dispute_to_pb).collect(),
    }
}

#[tonic::async_trait]
impl pb::strategies_server::Strategies for Api {
    async fn list_rules(
        &self,
        req: Request<pb::ListRulesRequest>,
    ) -> Result<Response<pb::RuleSetInfo>, Status> {
        observed("Strategies/ListRules", async {
            let _who = principal(&req)?;
            let l = self.shared.rules();
            let r = &l.set;
            let reload = self
                .shared
                .reload
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            Ok(Response::new(pb::RuleSetInfo {
                hash: r.hash.clone(),
                loaded_at: l.loaded_at.to_rfc3339(),
                dir: self.shared.rules_dir.display().to_string(),
                strategies: r.strategies.iter().map(|s| s.name.clone()).collect(),
                groups: r.groups.iter().map(|g| g.name.clone()).collect(),
                ladders: r.ladders.iter().map(|l| l.name.clone()).collect(),
                scripts: r.scripts.iter().map(|s| s.script.file.clone()).collect(),
                last_reload_error: reload
                    .errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
                last_reload_at: opt(&reload.at.map(|a| a.to_rfc3339())),
            }))
        })
        .await
    }

    async fn validate_rules(
        &self,
        req: Request<pb::ValidateRulesRequest>,
    ) -> Result<Response<pb::ValidateRulesResponse>, Status> {
        observed("Strategies/ValidateRules", async {
            let _who = principal(&req)?;
            let files = req.into_inner().files;
            let res = tokio::task::spawn_blocking(move || load_candidate(&files))
                .await
                .map_err(|e| Status::internal(e.to_string()))??;
            Ok(Response::new(match res {
                Ok(set) => pb::ValidateRulesResponse {
                    valid: true,
                    hash: set.hash,
                    problems: vec![],
                },
                Err(errs) => pb::ValidateRulesResponse {
                    valid: false,
                    hash: String::new(),
                    problems: problems(&errs),
                },
            }))
        })
        .await
    }

    async fn simulate(
        &self,
        req: Request<pb::SimulateRequest>,
    ) -> Result<Response<pb::SimulateResponse>, Status> {
        observed("Strategies/Simulate", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let as_of = self.shared.as_of(&r.as_of)?;
            let limit = if r.limit == 0 { 20 } else { r.limit.min(1000) } as usize;
            let rep = self
                .shared
                .read(move |store, current| {
                    let cand = match load_candidate(&r.files)? {
                        Ok(c) => c,
                        Err(errs) => {
                            let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
                            return Err(Status::invalid_argument(format!(
                                "the candidate rule set is invalid:\n{}",
                                text.join("\n")
                            )));
                        }
                    };
                    let mut rep =
                        arrears_app::simulate::simulate(store, current, &cand, as_of, limit)
                            .map_err(status)?;
                    // Counts are the portfolio's; examples only of customers the caller reaches.
                    let examples = std::mem::take(&mut rep.examples);
                    rep.examples = Reach::of(&who, current)
                        .filter(store, examples, |c| &c.customer)
                        .map_err(app_status)?;
                    Ok(rep)
                })
                .await?;
            let mut transitions = Vec::new();
            for (field, m) in &rep.transitions {
                for (change, n) in m {
                    let (from, to) = change.split_once(" -> ").unwrap_or((change.as_str(), ""));
                    transitions.push(pb::Transition {
                        field: field.clone(),
                        from: from.into(),
                        to: to.into(),
                        customers: *n,
                    });
                }
            }
            Ok(Response::new(pb::SimulateResponse {
                current_rules: rep.current_rules.clone(),
                candidate_rules: rep.candidate_rules.clone(),
                customers: rep.customers,
                changed: rep.changed,
                transitions,
                examples: rep
                    .examples
                    .iter()
                    .map(|c| pb::CustomerChange {
                        customer: c.customer.clone(),
                        changed: c.changed.iter().map(|s| s.to_string()).collect(),
                        before_json: json!(c.before).to_string(),
                        after_json: json!(c.after).to_string(),
                    })
                    .collect(),
                problems: rep.problems.clone(),
            }))
        })
        .await
    }
}

#[tonic::async_trait]
impl pb::explain_server::Explain for Api {
    async fn explain_customer(
        &self,
        req: Request<pb::ExplainRequest>,
    ) -> Result<Response<pb::Explanation>, Status> {
        observed("Explain/ExplainCustomer", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let key = nonempty("customer", &r.customer)?.to_string();
            let as_of = self.shared.as_of(&r.as_of)?;
            let e = self
                .shared
                .read(move |store, rules| {
                    let id = Reach::of(&who, rules)
                        .customer_key(store, &key)
                        .map_err(app_status)?;
                    let input = store
                        .load_run_input(arrears_store::Scope::One(id))
                        .map_err(status)?
                        .pop()
                        .ok_or_else(|| Status::not_found(format!("no customer `{key}`")))?;
                    explanation_to_pb(rules, as_of, &input)
                        .map_err(|e| Status::failed_precondition(e.to_string()))
                })
                .await?;
            Ok(Response::new(e))
        })
        .await
    }
}

/// Why a customer has its results on `as_of`: what `ExplainCustomer` answers, and what
/// `arrears explain` prints on the database.
pub fn explanation_to_pb(
    rules: &rules::RuleSet,
    as_of: chrono::NaiveDate,
    input: &arrears_store::RunInput,
) -> Result<pb::Explanation, arrears_engine::evaluate::EvalError> {
    let ev = arrears_engine::evaluate::evaluate(rules, as_of, input, true)?;
    let t = ev.trace.as_deref().cloned().unwrap_or_default();
    let strat = &rules.strategies[ev.strategy];
    let ladder = &rules.ladders[ev.ladder];
    let escalation = match &ev.escalation.decision {
        Some(d) => format!(
            "level {} `{}` by {:?}",
            d.level,
            ladder.levels[d.level - 1].name,
            ladder.levels[d.level - 1].channel
        ),
        None => "none".into(),
    };
    Ok(pb::Explanation {
        customer: format!("{}/{}", input.customer.company, input.customer.code),
        as_of: as_of.to_string(),
        rules_hash: rules.hash.clone(),
        strategy: strat.name.clone(),
        strategy_why: t.strategy_why.clone(),
        segment: ev.facts.segment.clone(),
        segment_why: t.segment_why.clone(),
        score: ev.facts.score.to_string(),
        criteria: t
            .criteria
            .iter()
            .map(|c| pb::Criterion {
                name: c.name.clone(),
                condition: c.condition.clone(),
                held: c.held,
                points: c.points.to_string(),
                exit: c.exit,
            })
            .collect(),
        profile: ev.profile.clone(),
        profile_why: t.profile_why.clone(),
        collection_group: rules.groups[ev.group].name.clone(),
        route_why: t.route_why.clone(),
        priority: priority_to_pb(ev.priority),
        escalation,
        escalation_why: json!(ev.escalation).to_string(),
        worklist_why: t.worklist_why.clone(),
        trace_json: json!({"facts": ev.facts, "trace": t}).to_string(),
    })
}

#[tonic::async_trait]
impl pb::admin_server::Admin for Api {
    async fn trigger_run(
        &self,
        req: Request<pb::TriggerRunRequest>,
    ) -> Result<Response<pb::RunSummary>, Status> {
        observed("Admin/TriggerRun", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let as_of = if r.as_of.is_empty() {
                None
            } else {
                Some(parse_date("as_of", &r.as_of)?)
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            let mut req = if r.full {
                RunRequest::full(format!("run requested by {}", who.name))
            } else {
                RunRequest::auto(format!("run requested by {}", who.name))
            };
            req.as_of = as_of;
            req.reply = Some(tx);
            self.shared.request_run(req);
            let sum = rx
                .await
                .map_err(|_| Status::unavailable("the daemon is shutting down"))?
                .map_err(Status::internal)?;
            Ok(Response::new(summary_to_pb(&sum)))
        })
        .await
    }

    async fn reload_rules(
        &self,
        req: Request<pb::ReloadRulesRequest>,
    ) -> Result<Response<pb::ReloadRulesResponse>, Status> {
        observed("Admin/ReloadRules", async {
            let who = principal(&req)?;
            Ok(Response::new(
                match self.shared.reload_rules(&who.name).await {
                    Ok(hash) => pb::ReloadRulesResponse {
                        applied: true,
                        hash,
                        problems: vec![],
                    },
                    Err(errs) => pb::ReloadRulesResponse {
                        applied: false,
                        hash: self.shared.rules().set.hash.clone(),
                        problems: problems(&errs),
                    },
                },
            ))
        })
        .await
    }

    async fn health(
        &self,
        req: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        observed("Admin/Health", async {
            let _who = principal(&req)?;
            let last = self.shared.last_run();
            let reload = self
                .shared
                .reload
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let schema = self
                .shared
                .read(|store, _| store.schema_version().map_err(status))
                .await?;
            Ok(Response::new(pb::HealthResponse {
                version: env!("CARGO_PKG_VERSION").into(),
                rules_hash: self.shared.rules().set.hash.clone(),
                last_run_at: opt(&last.map(|l| l.0.to_rfc3339())),
                last_run_as_of: opt(&last.map(|l| l.1)),
                last_reload_error: reload
                    .errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
                watchers: self
                    .shared
                    .watchers
                    .load(std::sync::atomic::Ordering::Relaxed),
                schema_version: schema.max(0) as u64,
            }))
        })
        .await
    }
}

fn credit_to_pb(c: &arrears_store::CreditView) -> pb::Credit {
    pb::Credit {
        id: c.id,
        file: c.file.clone(),
        line: c.line,
        account: c.account.clone(),
        amount: money(c.amount, &c.currency),
        value_date: c.value_date.clone().unwrap_or_default(),
        status: c.status.clone(),
        method: c.method.clone().unwrap_or_default(),
        confidence: c.confidence.clone().unwrap_or_default(),
        customer_id: c.customer_id.unwrap_or_default(),
        applied: c.applied.to_string(),
        unapplied: c.unapplied.to_string(),
        end_to_end_id: c.end_to_end_id.clone().unwrap_or_default(),
        references: c.refs.clone(),
        remittance: c.remittance.clone(),
        debtor_name: c.debtor_name.clone().unwrap_or_default(),
        note: c.note.clone(),
        allocations: c
            .allocations
            .iter()
            .map(|(d, a, k)| pb::CreditAllocation {
                document_no: d.clone(),
                amount: a.to_string(),
                kind: k.clone(),
            })
            .collect(),
    }
}

/// A run's summary as `TriggerRun` answers it, the whole summary in `summary_json`.
pub fn summary_to_pb(sum: &arrears_app::run::Summary) -> pb::RunSummary {
    pb::RunSummary {
        run_id: sum.run_id,
        mode: sum.mode.clone(),
        as_of: opt(&sum.as_of),
        customers_evaluated: sum.customers_evaluated,
        cases_opened: sum.cases_opened,
        cases_closed: sum.cases_closed,
        escalations: sum.escalations,
        duration_ms: sum.duration_ms,
        summary_json: json!(sum).to_string(),
    }
}

#[tonic::async_trait]
impl pb::statements_server::Statements for Api {
    async fn import_statement(
        &self,
        req: Request<pb::ImportStatementRequest>,
    ) -> Result<Response<pb::StatementImport>, Status> {
        observed("Statements/ImportStatement", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let name = nonempty("name", &r.name)?.to_string();
            let min_confidence = if r.min_confidence.is_empty() {
                arrears_store::MatchOptions::default().min_confidence
            } else {
                r.min_confidence.trim().parse::<Decimal>().map_err(|_| {
                    Status::invalid_argument(format!(
                        "min_confidence: `{}` is not a decimal",
                        r.min_confidence
                    ))
                })?
            };
            let encoding = (!r.encoding.is_empty()).then_some(r.encoding);
            // Parse before taking the writer: a bad file costs the writer nothing.
            let parsed = arrears_statements::parse(&r.content, &name, encoding.as_deref())
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let report = self
                .shared
                .write(format!("statement {name} imported"), move |store, _| {
                    store
                        .import_statement_as(
                            &who.name,
                            &name,
                            &r.content,
                            &parsed,
                            &arrears_store::MatchOptions { min_confidence },
                        )
                        .map_err(status)
                })
                .await?;
            Ok(Response::new(pb::StatementImport {
                file: report.file.clone(),
                format: report.format.clone(),
                version: report.version.clone(),
                duplicate_file: report.duplicate_file,
                statements: report.statements as u32,
                duplicate_statements: report.duplicate_statements as u32,
                credits: report.credits as u32,
                matched: report.matched as u32,
                partial: report.partial as u32,
                review: report.review as u32,
                unmatched: report.unmatched as u32,
                debits: report.debits as u32,
                skipped: report.skipped as u32,
                applied: report
                    .applied
                    .iter()
                    .filter_map(|(c, a)| money(*a, c))
                    .collect(),
                report_json: serde_json::to_string(&report).unwrap_or_default(),
            }))
        })
        .await
    }

    async fn list_credits(
        &self,
        req: Request<pb::ListCreditsRequest>,
    ) -> Result<Response<pb::ListCreditsResponse>, Status> {
        observed("Statements/ListCredits", async {
            let _who = principal(&req)?;
            let r = req.into_inner();
            let limit = match r.limit {
                0 => 100,
                n if n > MAX_PAGE => {
                    return Err(Status::invalid_argument(format!(
                        "limit {n} is above the maximum {MAX_PAGE}"
                    )))
                }
                n => n as usize,
            };
            let credits = self
                .shared
                .read(move |store, _| {
                    Ok(store
                        .list_credits(r.review_only, limit)
                        .map_err(status)?
                        .iter()
                        .map(credit_to_pb)
                        .collect())
                })
                .await?;
            Ok(Response::new(pb::ListCreditsResponse { credits }))
        })
        .await
    }

    async fn resolve_credit(
        &self,
        req: Request<pb::ResolveCreditRequest>,
    ) -> Result<Response<pb::Credit>, Status> {
        observed("Statements/ResolveCredit", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let id = positive_id("credit_id", r.credit_id)?;
            let how = match (r.dismiss, r.item_ids.is_empty()) {
                (true, true) => arrears_store::Resolution::Dismiss,
                (false, false) => arrears_store::Resolution::Apply(r.item_ids.clone()),
                (true, false) => {
                    return Err(Status::invalid_argument(
                        "either item_ids or dismiss, not both",
                    ))
                }
                (false, true) => {
                    return Err(Status::invalid_argument(
                        "name the item_ids to apply the credit to, or set dismiss",
                    ))
                }
            };
            let reason = r.reason;
            let c = self
                .shared
                .write(format!("credit {id} resolved"), move |store, rules| {
                    // Money goes only onto items of customers the caller reaches.
                    if let arrears_store::Resolution::Apply(items) = &how {
                        let reach = Reach::of(&who, rules);
                        for &i in items {
                            reach
                                .customer(store, store.item_customer(i).map_err(status)?)
                                .map_err(app_status)?;
                        }
                    }
                    store.audited_as(
                        status,
                        &who.name,
                        "credit.resolve",
                        &format!("credit {id}"),
                        |st| {
                            let before = json!(st.credit(id).map_err(status)?);
                            let c = st.resolve_credit(id, &how, &reason).map_err(status)?;
                            let after = json!(c);
                            Ok::<_, Status>((credit_to_pb(&c), before, after))
                        },
                    )
                })
                .await?;
            Ok(Response::new(c))
        })
        .await
    }
}

/// A connector's health for the API and the CLI: config and stored state together.
pub fn connector_health(
    cfg: &arrears_connectors::ConnectorConfig,
    h: Option<arrears_connectors::Health>,
    now: chrono::DateTime<chrono::Utc>,
) -> pb::ConnectorHealth {
    let h = h.unwrap_or_default();
    let ts =
        |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    pb::ConnectorHealth {
        name: cfg.name.clone(),
        kind: cfg.kind.name().to_string(),
        every_seconds: cfg.every.as_secs(),
        last_attempt: ts(h.last_attempt),
        last_success: ts(h.last_success),
        last_error: h.last_error.unwrap_or_default(),
        pulled_total: h.pulled_total,
        errors_total: h.errors_total,
        lag_seconds: h
            .last_success
            .map(|t| (now - t).num_seconds().max(0).to_string())
            .unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl pb::connectors_server::Connectors for Api {
    async fn list_connectors(
        &self,
        req: Request<pb::ListConnectorsRequest>,
    ) -> Result<Response<pb::ListConnectorsResponse>, Status> {
        observed("Connectors/ListConnectors", async {
            let _who = principal(&req)?;
            let mut cfgs: Vec<_> = self
                .shared
                .connectors
                .values()
                .map(|h| h.cfg.clone())
                .collect();
            cfgs.sort_by(|a, b| a.name.cmp(&b.name));
            let now = self.shared.clock.now();
            let connectors = self
                .shared
                .read(move |store, _| {
                    cfgs.iter()
                        .map(|c| {
                            Ok(connector_health(
                                c,
                                store.connector_health(&c.name).map_err(status)?,
                                now,
                            ))
                        })
                        .collect::<Result<Vec<_>, Status>>()
                })
                .await?;
            Ok(Response::new(pb::ListConnectorsResponse { connectors }))
        })
        .await
    }

    async fn sync_connector(
        &self,
        req: Request<pb::SyncConnectorRequest>,
    ) -> Result<Response<pb::SyncResult>, Status> {
        observed("Connectors/SyncConnector", async {
            let _who = principal(&req)?;
            let name = nonempty("name", &req.get_ref().name)?.to_string();
            let result = super::connectors::sync_now(&self.shared, &name)
                .await
                .ok_or_else(|| Status::not_found(format!("no connector `{name}`")))?
                .map_err(Status::unavailable)?;
            Ok(Response::new(pb::SyncResult {
                pulled: result.pulled,
                failed: result.failed,
                details: result.details,
            }))
        })
        .await
    }
}
