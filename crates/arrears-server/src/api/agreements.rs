//! `Agreements`: renegotiation over the API. Limits and the approval rules live in
//! the store (`Store::propose_agreement`); here only who may touch which cases.

use rust_decimal::Decimal;
use tonic::{Request, Response, Status};

use super::{nonempty, opt, positive_id, Api};
use crate::app_status;
use crate::auth::principal;
use crate::authz::Reach;
use crate::metrics::observed;
use crate::{parse_date, pb, status};
use arrears_app::cases::Caller;
use arrears_finance::PlanKind;
use arrears_store::{AgreementView, DocumentView, Proposal};

pub fn plan_kind(s: &str) -> Result<PlanKind, Status> {
    match s {
        "price" => Ok(PlanKind::Price),
        "sac" => Ok(PlanKind::Sac),
        "no_interest" => Ok(PlanKind::NoInterest),
        other => Err(Status::invalid_argument(format!(
            "plan: `{other}` is not one of price, sac, no_interest"
        ))),
    }
}

pub fn agreement_to_pb(a: &AgreementView) -> pb::Agreement {
    pb::Agreement {
        id: a.id,
        customer: a.customer.clone(),
        status: a.status.clone(),
        currency: a.currency.clone(),
        as_of: a.as_of.to_string(),
        plan: a.plan.clone(),
        installments: a.installments,
        monthly_rate: a.monthly_rate.to_string(),
        first_due: a.first_due.to_string(),
        principal: a.principal.to_string(),
        fine: a.fine.to_string(),
        interest: a.interest.to_string(),
        costs: a.costs.to_string(),
        discount_percent: a.discount_percent.to_string(),
        discount: a.discount.to_string(),
        debt: a.debt.to_string(),
        proposed_by: a.proposed_by.clone(),
        proposed_on: a.proposed_on.to_string(),
        needs_approval: a.needs_approval.clone().unwrap_or_default(),
        decided_by: a.decided_by.clone().unwrap_or_default(),
        decided_on: opt(&a.decided_on),
        decision_note: a.decision_note.clone().unwrap_or_default(),
        ended_on: opt(&a.ended_on),
        end_reason: a.end_reason.clone().unwrap_or_default(),
        items: a
            .items
            .iter()
            .map(|i| pb::AgreementItem {
                document_no: i.document_no.clone(),
                due_date: i.due_date.to_string(),
                open_amount: i.open_amount.to_string(),
                fine: i.fine.to_string(),
                interest: i.interest.to_string(),
                costs: i.costs.to_string(),
                lines: i.lines.clone(),
            })
            .collect(),
        schedule: a
            .schedule
            .iter()
            .map(|s| pb::AgreementInstallment {
                number: s.number,
                due: s.due.to_string(),
                principal: s.principal.to_string(),
                interest: s.interest.to_string(),
                amount: s.amount.to_string(),
                document_no: s.document_no.clone().unwrap_or_default(),
                open_amount: opt(&s.open_amount),
            })
            .collect(),
    }
}

fn document_to_pb(d: &DocumentView) -> pb::Document {
    pb::Document {
        id: d.id,
        agreement_id: d.agreement_id.unwrap_or(0),
        kind: d.kind.clone(),
        language: d.language.clone(),
        subject: d.subject.clone(),
        text: d.text.clone(),
        html: d.html.clone().unwrap_or_default(),
        created_on: d.created_on.to_string(),
    }
}

#[tonic::async_trait]
impl pb::agreements_server::Agreements for Api {
    async fn propose_agreement(
        &self,
        req: Request<pb::ProposeAgreementRequest>,
    ) -> Result<Response<pb::Agreement>, Status> {
        observed("Agreements/ProposeAgreement", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let mut case_ids = Vec::with_capacity(r.case_ids.len());
            for &c in &r.case_ids {
                case_ids.push(positive_id("case_ids", c)?);
            }
            let discount_percent: Decimal = if r.discount_percent.trim().is_empty() {
                Decimal::ZERO
            } else {
                r.discount_percent.trim().parse().map_err(|_| {
                    Status::invalid_argument(format!(
                        "discount_percent: `{}` is not a decimal",
                        r.discount_percent
                    ))
                })?
            };
            let p = Proposal {
                case_ids,
                plan: plan_kind(&r.plan)?,
                installments: r.installments,
                first_due: parse_date("first_due", &r.first_due)?,
                discount_percent,
                on: self.shared.as_of(&r.on)?,
            };
            let a = self
                .shared
                .write("agreement proposed".into(), move |store, rules| {
                    let caller = Caller::new(&who, rules, &who.name);
                    Ok(agreement_to_pb(
                        &arrears_app::agreements::propose(store, rules, &caller, &p)
                            .map_err(app_status)?,
                    ))
                })
                .await?;
            Ok(Response::new(a))
        })
        .await
    }

    async fn approve_agreement(
        &self,
        req: Request<pb::DecideAgreementRequest>,
    ) -> Result<Response<pb::Agreement>, Status> {
        observed("Agreements/ApproveAgreement", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let id = positive_id("id", r.id)?;
            let on = self.shared.as_of(&r.on)?;
            let a = self
                .shared
                .write(format!("agreement {id} approved"), move |store, rules| {
                    let caller = Caller::new(&who, rules, &who.name);
                    Ok(agreement_to_pb(
                        &arrears_app::agreements::approve(store, rules, &caller, id, &r.note, on)
                            .map_err(app_status)?,
                    ))
                })
                .await?;
            Ok(Response::new(a))
        })
        .await
    }

    async fn reject_agreement(
        &self,
        req: Request<pb::DecideAgreementRequest>,
    ) -> Result<Response<pb::Agreement>, Status> {
        observed("Agreements/RejectAgreement", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let id = positive_id("id", r.id)?;
            let on = self.shared.as_of(&r.on)?;
            let a = self
                .shared
                .write(format!("agreement {id} rejected"), move |store, rules| {
                    let caller = Caller::new(&who, rules, &who.name);
                    Ok(agreement_to_pb(
                        &arrears_app::agreements::reject(store, &caller, id, &r.note, on)
                            .map_err(app_status)?,
                    ))
                })
                .await?;
            Ok(Response::new(a))
        })
        .await
    }

    async fn get_agreement(
        &self,
        req: Request<pb::GetAgreementRequest>,
    ) -> Result<Response<pb::Agreement>, Status> {
        observed("Agreements/GetAgreement", async {
            let who = principal(&req)?;
            let id = positive_id("id", req.get_ref().id)?;
            let a = self
                .shared
                .read(move |store, rules| {
                    Reach::of(&who, rules)
                        .agreement(store, id)
                        .map_err(app_status)?;
                    Ok(agreement_to_pb(&store.agreement(id).map_err(status)?))
                })
                .await?;
            Ok(Response::new(a))
        })
        .await
    }

    async fn list_agreements(
        &self,
        req: Request<pb::ListAgreementsRequest>,
    ) -> Result<Response<pb::ListAgreementsResponse>, Status> {
        observed("Agreements/ListAgreements", async {
            let who = principal(&req)?;
            let key = req.into_inner().customer;
            let agreements = self
                .shared
                .read(move |store, rules| {
                    let reach = Reach::of(&who, rules);
                    let id = match key.trim() {
                        "" => None,
                        k => Some(reach.customer_key(store, k).map_err(app_status)?),
                    };
                    let all = store.list_agreements(id).map_err(status)?;
                    Ok(reach
                        .filter(store, all, |a| &a.customer)
                        .map_err(app_status)?
                        .iter()
                        .map(agreement_to_pb)
                        .collect())
                })
                .await?;
            Ok(Response::new(pb::ListAgreementsResponse { agreements }))
        })
        .await
    }

    async fn list_documents(
        &self,
        req: Request<pb::ListDocumentsRequest>,
    ) -> Result<Response<pb::ListDocumentsResponse>, Status> {
        observed("Agreements/ListDocuments", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            if r.customer.trim().is_empty() && r.agreement_id == 0 {
                nonempty("customer (or agreement_id)", &r.customer)?;
            }
            let documents = self
                .shared
                .read(move |store, rules| {
                    let reach = Reach::of(&who, rules);
                    let customer = match r.customer.trim() {
                        "" => None,
                        k => Some(reach.customer_key(store, k).map_err(app_status)?),
                    };
                    let agreement = (r.agreement_id > 0).then_some(r.agreement_id);
                    if let Some(a) = agreement {
                        reach.agreement(store, a).map_err(app_status)?;
                    }
                    Ok(store
                        .documents(customer, agreement)
                        .map_err(status)?
                        .iter()
                        .map(document_to_pb)
                        .collect())
                })
                .await?;
            Ok(Response::new(pb::ListDocumentsResponse { documents }))
        })
        .await
    }
}
