//! The authorisation matrix: every RPC of the proto (read from the descriptor, so a
//! method added without an entry here fails) × every role × a resource the caller
//! owns and one a colleague owns, against the real daemon over loopback. The
//! expectations below are the specification, written independently of the server's
//! own table.

mod common;

use arrears_store::rusqlite;
use std::collections::BTreeSet;
use std::time::Duration;

use arrears::server::pb;
use common::*;
use prost::Message;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const ROOT: &str = "root-admin-token-0123456789";
const GRACE: &str = "grace-supervisor-token-0123456789";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Collector,
    Supervisor,
    Admin,
}

/// What decides a call besides the role: nothing (a portfolio-wide operation), or
/// the customer/case/agreement/dispute/worklist it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Portfolio,
    Owned,
}

/// Method → least role, what decides, and whether an allowed call must succeed (reads
/// of data that exists). Mutations may meet a state refusal (FAILED_PRECONDITION…)
/// after earlier calls of the matrix changed the record; never PERMISSION_DENIED.
const SPEC: &[(&str, Role, Kind, bool)] = &[
    ("Worklists/GetWorklist", Role::Collector, Kind::Owned, true),
    (
        "Worklists/WatchWorklist",
        Role::Collector,
        Kind::Owned,
        true,
    ),
    ("Cases/GetCase", Role::Collector, Kind::Owned, true),
    ("Cases/ListCases", Role::Collector, Kind::Owned, true),
    ("Cases/AssignCases", Role::Collector, Kind::Owned, false),
    ("Cases/AddNote", Role::Collector, Kind::Owned, false),
    ("Cases/AddNotes", Role::Collector, Kind::Owned, false),
    ("Cases/SetActivity", Role::Collector, Kind::Owned, false),
    (
        "Cases/CompleteActivity",
        Role::Collector,
        Kind::Owned,
        false,
    ),
    ("Cases/SetResubmission", Role::Collector, Kind::Owned, false),
    ("Cases/GetCustomer", Role::Collector, Kind::Owned, true),
    (
        "Promises/CreatePromise",
        Role::Collector,
        Kind::Owned,
        false,
    ),
    ("Promises/ListPromises", Role::Collector, Kind::Owned, true),
    (
        "Promises/JudgePromises",
        Role::Supervisor,
        Kind::Portfolio,
        false,
    ),
    ("Disputes/OpenDispute", Role::Collector, Kind::Owned, false),
    (
        "Disputes/ResolveDispute",
        Role::Supervisor,
        Kind::Owned,
        false,
    ),
    ("Disputes/ListDisputes", Role::Collector, Kind::Owned, true),
    (
        "Disputes/DisputeAgeing",
        Role::Supervisor,
        Kind::Portfolio,
        true,
    ),
    (
        "Agreements/ProposeAgreement",
        Role::Collector,
        Kind::Owned,
        false,
    ),
    (
        "Agreements/ApproveAgreement",
        Role::Collector,
        Kind::Owned,
        false,
    ),
    (
        "Agreements/RejectAgreement",
        Role::Supervisor,
        Kind::Owned,
        false,
    ),
    (
        "Agreements/GetAgreement",
        Role::Collector,
        Kind::Owned,
        true,
    ),
    (
        "Agreements/ListAgreements",
        Role::Collector,
        Kind::Owned,
        true,
    ),
    (
        "Agreements/ListDocuments",
        Role::Collector,
        Kind::Owned,
        true,
    ),
    (
        "Correspondence/ListMessages",
        Role::Collector,
        Kind::Owned,
        true,
    ),
    (
        "Correspondence/ProcessOutbox",
        Role::Supervisor,
        Kind::Portfolio,
        false,
    ),
    (
        "Correspondence/SetContactPreferences",
        Role::Collector,
        Kind::Owned,
        false,
    ),
    (
        "Strategies/ListRules",
        Role::Collector,
        Kind::Portfolio,
        true,
    ),
    (
        "Strategies/ValidateRules",
        Role::Supervisor,
        Kind::Portfolio,
        false,
    ),
    (
        "Strategies/Simulate",
        Role::Supervisor,
        Kind::Portfolio,
        false,
    ),
    (
        "Explain/ExplainCustomer",
        Role::Collector,
        Kind::Owned,
        true,
    ),
    ("Admin/TriggerRun", Role::Supervisor, Kind::Portfolio, false),
    (
        "Admin/ReloadRules",
        Role::Supervisor,
        Kind::Portfolio,
        false,
    ),
    ("Admin/Health", Role::Collector, Kind::Portfolio, true),
    (
        "Statements/ImportStatement",
        Role::Supervisor,
        Kind::Portfolio,
        false,
    ),
    (
        "Statements/ListCredits",
        Role::Supervisor,
        Kind::Portfolio,
        true,
    ),
    (
        "Statements/ResolveCredit",
        Role::Supervisor,
        Kind::Owned,
        false,
    ),
    (
        "Connectors/ListConnectors",
        Role::Collector,
        Kind::Portfolio,
        true,
    ),
    (
        "Connectors/SyncConnector",
        Role::Supervisor,
        Kind::Portfolio,
        false,
    ),
    // Everyone may ask; the rows are cut to the caller's reach.
    ("Reports/RunReport", Role::Collector, Kind::Portfolio, true),
    (
        "WriteOffs/ProposeWriteOff",
        Role::Collector,
        Kind::Owned,
        false,
    ),
    (
        "WriteOffs/ApproveWriteOff",
        Role::Collector,
        Kind::Owned,
        false,
    ),
    (
        "WriteOffs/RejectWriteOff",
        Role::Supervisor,
        Kind::Owned,
        false,
    ),
    ("WriteOffs/GetWriteOff", Role::Collector, Kind::Owned, true),
    (
        "WriteOffs/ListWriteOffs",
        Role::Collector,
        Kind::Owned,
        true,
    ),
    (
        "WriteOffs/ExportWriteOffs",
        Role::Supervisor,
        Kind::Portfolio,
        true,
    ),
];

/// One customer with its work: a case to act on, a disputed case, an agreement.
#[derive(Debug, Clone)]
struct Target {
    customer: String,
    group: String,
    collector: String,
    case: i64,
    item: i64,
    dispute: i64,
    agreement: i64,
    write_off: i64,
}

fn bearer(
    token: Option<&'static str>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut r: Request<()>| {
        if let Some(t) = token {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        Ok(r)
    }
}

/// The methods the proto declares, as `Service/Method`.
fn declared_methods() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
    let mut out = BTreeSet::new();
    for f in &set.file {
        assert_eq!(f.package(), "arrears.v1");
        for s in &f.service {
            for m in &s.method {
                out.insert(format!("{}/{}", s.name(), m.name()));
            }
        }
    }
    out
}

async fn call(
    ch: &Channel,
    token: Option<&'static str>,
    method: &str,
    t: &Target,
    statement: &[u8],
) -> Result<(), Status> {
    let a = bearer(token);
    macro_rules! client {
        ($m:ident :: $c:ident) => {
            pb::$m::$c::with_interceptor(ch.clone(), a.clone())
        };
    }
    let scope = group(&t.group);
    let on = AS_OF.to_string();
    match method {
        "Worklists/GetWorklist" => client!(worklists_client::WorklistsClient)
            .get_worklist(pb::GetWorklistRequest {
                scope,
                ..Default::default()
            })
            .await
            .map(drop),
        "Worklists/WatchWorklist" => client!(worklists_client::WorklistsClient)
            .watch_worklist(pb::WatchWorklistRequest {
                scope,
                filter: None,
            })
            .await
            .map(drop),
        "Cases/GetCase" => client!(cases_client::CasesClient)
            .get_case(pb::GetCaseRequest {
                id: t.case.to_string(),
            })
            .await
            .map(drop),
        "Cases/ListCases" => client!(cases_client::CasesClient)
            .list_cases(pb::ListCasesRequest {
                customer: t.customer.clone(),
                all: true,
            })
            .await
            .map(drop),
        "Cases/AssignCases" => client!(cases_client::CasesClient)
            .assign_cases(pb::AssignCasesRequest {
                case_ids: vec![t.case],
                collector: t.collector.clone(),
                on,
            })
            .await
            .map(drop),
        "Cases/AddNote" => client!(cases_client::CasesClient)
            .add_note(pb::AddNoteRequest {
                case_id: t.case,
                text: "matrix".into(),
                on,
            })
            .await
            .map(drop),
        "Cases/AddNotes" => client!(cases_client::CasesClient)
            .add_notes(pb::AddNotesRequest {
                case_ids: vec![t.case],
                text: "matrix".into(),
                on,
            })
            .await
            .map(drop),
        "Cases/SetActivity" => client!(cases_client::CasesClient)
            .set_activity(pb::SetActivityRequest {
                case_id: t.case,
                category: "contact".into(),
                subcategory: "first_call".into(),
                on,
            })
            .await
            .map(drop),
        "Cases/CompleteActivity" => client!(cases_client::CasesClient)
            .complete_activity(pb::CompleteActivityRequest {
                case_id: t.case,
                on,
                ..Default::default()
            })
            .await
            .map(drop),
        "Cases/SetResubmission" => client!(cases_client::CasesClient)
            .set_resubmission(pb::SetResubmissionRequest {
                customer: t.customer.clone(),
                on: "2026-12-10".into(),
                reason: "matrix".into(),
            })
            .await
            .map(drop),
        "Cases/GetCustomer" => client!(cases_client::CasesClient)
            .get_customer(pb::GetCustomerRequest {
                customer: t.customer.clone(),
            })
            .await
            .map(drop),
        "Promises/CreatePromise" => client!(promises_client::PromisesClient)
            .create_promise(pb::CreatePromiseRequest {
                case_id: t.case,
                amount: "1.00".into(),
                promised_on: "2026-12-01".into(),
                on,
                ..Default::default()
            })
            .await
            .map(drop),
        "Promises/ListPromises" => client!(promises_client::PromisesClient)
            .list_promises(pb::ListPromisesRequest {
                customer: t.customer.clone(),
            })
            .await
            .map(drop),
        "Promises/JudgePromises" => client!(promises_client::PromisesClient)
            .judge_promises(pb::JudgePromisesRequest { as_of: on })
            .await
            .map(drop),
        "Disputes/OpenDispute" => client!(disputes_client::DisputesClient)
            .open_dispute(pb::OpenDisputeRequest {
                case_id: t.case,
                reason: "matrix".into(),
                on,
                ..Default::default()
            })
            .await
            .map(drop),
        "Disputes/ResolveDispute" => client!(disputes_client::DisputesClient)
            .resolve_dispute(pb::ResolveDisputeRequest {
                dispute_id: t.dispute,
                resolution: "matrix".into(),
                on,
            })
            .await
            .map(drop),
        "Disputes/ListDisputes" => client!(disputes_client::DisputesClient)
            .list_disputes(pb::ListDisputesRequest {
                customer: t.customer.clone(),
                all: true,
            })
            .await
            .map(drop),
        "Disputes/DisputeAgeing" => client!(disputes_client::DisputesClient)
            .dispute_ageing(pb::DisputeAgeingRequest {
                as_of: on,
                oldest: 10,
            })
            .await
            .map(drop),
        "Agreements/ProposeAgreement" => client!(agreements_client::AgreementsClient)
            .propose_agreement(pb::ProposeAgreementRequest {
                case_ids: vec![t.case],
                plan: "price".into(),
                installments: 2,
                first_due: "2026-12-15".into(),
                discount_percent: String::new(),
                on,
            })
            .await
            .map(drop),
        "Agreements/ApproveAgreement" => client!(agreements_client::AgreementsClient)
            .approve_agreement(pb::DecideAgreementRequest {
                id: t.agreement,
                note: "matrix".into(),
                on,
            })
            .await
            .map(drop),
        "Agreements/RejectAgreement" => client!(agreements_client::AgreementsClient)
            .reject_agreement(pb::DecideAgreementRequest {
                id: t.agreement,
                note: "matrix".into(),
                on,
            })
            .await
            .map(drop),
        "Agreements/GetAgreement" => client!(agreements_client::AgreementsClient)
            .get_agreement(pb::GetAgreementRequest { id: t.agreement })
            .await
            .map(drop),
        "Agreements/ListAgreements" => client!(agreements_client::AgreementsClient)
            .list_agreements(pb::ListAgreementsRequest {
                customer: t.customer.clone(),
            })
            .await
            .map(drop),
        "Agreements/ListDocuments" => client!(agreements_client::AgreementsClient)
            .list_documents(pb::ListDocumentsRequest {
                customer: t.customer.clone(),
                agreement_id: t.agreement,
            })
            .await
            .map(drop),
        "Correspondence/ListMessages" => client!(correspondence_client::CorrespondenceClient)
            .list_messages(pb::ListMessagesRequest {
                customer: t.customer.clone(),
                limit: 10,
            })
            .await
            .map(drop),
        "Correspondence/ProcessOutbox" => client!(correspondence_client::CorrespondenceClient)
            .process_outbox(pb::ProcessOutboxRequest {})
            .await
            .map(drop),
        "Correspondence/SetContactPreferences" => {
            client!(correspondence_client::CorrespondenceClient)
                .set_contact_preferences(pb::ContactPreferencesRequest {
                    customer: t.customer.clone(),
                    phone: "+49 30 1234567".into(),
                    ..Default::default()
                })
                .await
                .map(drop)
        }
        "Strategies/ListRules" => client!(strategies_client::StrategiesClient)
            .list_rules(pb::ListRulesRequest {})
            .await
            .map(drop),
        "Strategies/ValidateRules" => client!(strategies_client::StrategiesClient)
            .validate_rules(pb::ValidateRulesRequest { files: vec![] })
            .await
            .map(drop),
        "Strategies/Simulate" => client!(strategies_client::StrategiesClient)
            .simulate(pb::SimulateRequest {
                files: vec![],
                as_of: on,
                limit: 5,
            })
            .await
            .map(drop),
        "Explain/ExplainCustomer" => client!(explain_client::ExplainClient)
            .explain_customer(pb::ExplainRequest {
                customer: t.customer.clone(),
                as_of: on,
            })
            .await
            .map(drop),
        "Admin/TriggerRun" => client!(admin_client::AdminClient)
            .trigger_run(pb::TriggerRunRequest {
                full: false,
                as_of: String::new(),
            })
            .await
            .map(drop),
        "Admin/ReloadRules" => client!(admin_client::AdminClient)
            .reload_rules(pb::ReloadRulesRequest {})
            .await
            .map(drop),
        "Admin/Health" => client!(admin_client::AdminClient)
            .health(pb::HealthRequest {})
            .await
            .map(drop),
        "Statements/ImportStatement" => client!(statements_client::StatementsClient)
            .import_statement(pb::ImportStatementRequest {
                name: "matrix.xml".into(),
                content: statement.to_vec(),
                ..Default::default()
            })
            .await
            .map(drop),
        "Statements/ListCredits" => client!(statements_client::StatementsClient)
            .list_credits(pb::ListCreditsRequest {
                review_only: false,
                limit: 10,
            })
            .await
            .map(drop),
        "Statements/ResolveCredit" => client!(statements_client::StatementsClient)
            .resolve_credit(pb::ResolveCreditRequest {
                credit_id: 999_999,
                item_ids: vec![t.item],
                ..Default::default()
            })
            .await
            .map(drop),
        "Connectors/ListConnectors" => client!(connectors_client::ConnectorsClient)
            .list_connectors(pb::ListConnectorsRequest {})
            .await
            .map(drop),
        "Connectors/SyncConnector" => client!(connectors_client::ConnectorsClient)
            .sync_connector(pb::SyncConnectorRequest {
                name: "none".into(),
            })
            .await
            .map(drop),
        "Reports/RunReport" => client!(reports_client::ReportsClient)
            .run_report(pb::RunReportRequest {
                report: "open-items".into(),
                to: on,
                by: vec!["collector".into(), "customer".into()],
                ..Default::default()
            })
            .await
            .map(drop),
        "WriteOffs/ProposeWriteOff" => client!(write_offs_client::WriteOffsClient)
            .propose_write_off(pb::ProposeWriteOffRequest {
                case_id: t.case,
                reason: "uncollectible".into(),
                on,
            })
            .await
            .map(drop),
        "WriteOffs/ApproveWriteOff" => client!(write_offs_client::WriteOffsClient)
            .approve_write_off(pb::DecideWriteOffRequest {
                id: t.write_off,
                note: "matrix".into(),
                on,
            })
            .await
            .map(drop),
        "WriteOffs/RejectWriteOff" => client!(write_offs_client::WriteOffsClient)
            .reject_write_off(pb::DecideWriteOffRequest {
                id: t.write_off,
                note: "matrix".into(),
                on,
            })
            .await
            .map(drop),
        "WriteOffs/GetWriteOff" => client!(write_offs_client::WriteOffsClient)
            .get_write_off(pb::GetWriteOffRequest { id: t.write_off })
            .await
            .map(drop),
        "WriteOffs/ListWriteOffs" => client!(write_offs_client::WriteOffsClient)
            .list_write_offs(pb::ListWriteOffsRequest {
                customer: t.customer.clone(),
                status: String::new(),
            })
            .await
            .map(drop),
        "WriteOffs/ExportWriteOffs" => client!(write_offs_client::WriteOffsClient)
            .export_write_offs(pb::ExportWriteOffsRequest { reported: vec![] })
            .await
            .map(drop),
        other => panic!("the matrix has no request for {other}: add one to tests/authz.rs"),
    }
}

fn db_i64(db: &std::path::Path, sql: &str, p: &str) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(sql, [p], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql} [{p}]: {e}"))
}

fn case_of(db: &std::path::Path, doc: &str) -> i64 {
    db_i64(
        db,
        "SELECT c.id FROM cases c JOIN items i ON i.id = c.item_id
         WHERE i.document_no = ?1 AND c.status = 'open'",
        doc,
    )
}

async fn wait_owner(db: &std::path::Path, customer: &str, group: &str, collector: &str) {
    let want = (group.to_string(), Some(collector.to_string()));
    let mut got = None;
    for _ in 0..300 {
        let c = rusqlite::Connection::open(db).unwrap();
        got = c
            .query_row(
                "SELECT s.collection_group, s.collector FROM customer_state s
                 JOIN customers c ON c.id = s.customer_id WHERE c.company || '/' || c.code = ?1",
                [customer],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)),
            )
            .ok();
        if got.as_ref() == Some(&want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{customer}: wanted {want:?}, the store says {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_by_every_role_on_own_and_others_resources() {
    // The spec covers exactly what the proto declares.
    let declared = declared_methods();
    let specified: BTreeSet<String> = SPEC.iter().map(|s| s.0.to_string()).collect();
    assert_eq!(SPEC.len(), specified.len(), "a method is specified twice");
    let missing: Vec<_> = declared.difference(&specified).collect();
    assert!(
        missing.is_empty(),
        "RPCs without an authorisation expectation: {missing:?}"
    );
    let stale: Vec<_> = specified.difference(&declared).collect();
    assert!(stale.is_empty(), "expectations for no RPC: {stale:?}");

    let dir = Daemon::prepare();
    std::fs::write(
        dir.path().join("arrears.yaml"),
        "serve:\n  run_every: 0s\n  store_poll: 100ms\n  kpi_interval: 0s\n\
         auth:\n  tokens:\n\
         \x20   - { principal: root, role: admin, token_env: T_ROOT }\n\
         \x20   - { principal: grace, role: supervisor, token_env: T_GRACE }\n\
         \x20   - { principal: chen, role: collector, token_env: T_CHEN }\n",
    )
    .unwrap();
    // A: a small German customer (group general); B: a key account (over EUR 100,000).
    let csv = dir.path().join("items.csv");
    std::fs::write(
        &csv,
        "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,currency\n\
         item,a1,ACME_DE,A1,Alpha GmbH,INV-A1,2026-08-01,2026-09-01,1000.00,EUR\n\
         item,a2,ACME_DE,A1,Alpha GmbH,INV-A2,2026-08-01,2026-09-01,500.00,EUR\n\
         item,a3,ACME_DE,A1,Alpha GmbH,INV-A3,2026-08-01,2026-09-01,700.00,EUR\n\
         item,b1,ACME_DE,B1,Beta AG,INV-B1,2026-08-01,2026-09-01,120000.00,EUR\n\
         item,b2,ACME_DE,B1,Beta AG,INV-B2,2026-08-01,2026-09-01,30000.00,EUR\n\
         item,b3,ACME_DE,B1,Beta AG,INV-B3,2026-08-01,2026-09-01,7000.00,EUR\n\
         item,a4,ACME_DE,A1,Alpha GmbH,INV-A4,2026-08-01,2026-09-01,300.00,EUR\n\
         item,b4,ACME_DE,B1,Beta AG,INV-B4,2026-08-01,2026-09-01,400.00,EUR\n",
    )
    .unwrap();
    arrears(dir.path(), &["import", "csv", csv.to_str().unwrap()]);
    let d = Daemon::start_env(
        dir,
        &[("T_ROOT", ROOT), ("T_GRACE", GRACE), ("T_CHEN", CHEN)],
    );
    let db = d.path("arrears.db");
    let ch = d.channel().await;
    let admin = Some(ROOT);
    for _ in 0..300 {
        let n = db_i64(
            &db,
            "SELECT COUNT(*) FROM cases WHERE status = 'open' AND ?1 <> ''",
            "x",
        );
        if n == 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Pin each customer's cases to a collector so runs during the matrix keep them
    // where they are; then give each a dispute and an agreement.
    let mut targets = Vec::new();
    for (customer, p, group, collector) in [
        ("ACME_DE/A1", "A", "general", "chen"),
        ("ACME_DE/B1", "B", "key_accounts", "alice"),
    ] {
        let cases: Vec<i64> = (1..=4)
            .map(|n| case_of(&db, &format!("INV-{p}{n}")))
            .collect();
        let mut c = pb::cases_client::CasesClient::with_interceptor(ch.clone(), bearer(admin));
        c.assign_cases(pb::AssignCasesRequest {
            case_ids: cases.clone(),
            collector: collector.into(),
            on: AS_OF.into(),
        })
        .await
        .unwrap();
        pb::admin_client::AdminClient::with_interceptor(ch.clone(), bearer(admin))
            .trigger_run(pb::TriggerRunRequest {
                full: false,
                as_of: String::new(),
            })
            .await
            .unwrap();
        wait_owner(&db, customer, group, collector).await;
        let dispute =
            pb::disputes_client::DisputesClient::with_interceptor(ch.clone(), bearer(admin))
                .open_dispute(pb::OpenDisputeRequest {
                    case_id: cases[1],
                    reason: "setup".into(),
                    on: AS_OF.into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .id;
        let agreement =
            pb::agreements_client::AgreementsClient::with_interceptor(ch.clone(), bearer(admin))
                .propose_agreement(pb::ProposeAgreementRequest {
                    case_ids: vec![cases[2]],
                    plan: "price".into(),
                    installments: 3,
                    first_due: "2026-12-15".into(),
                    discount_percent: String::new(),
                    on: AS_OF.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .id;
        // Carried out at once (an admin has no limit): approving or rejecting it
        // meets a state refusal, never a permission one.
        let write_off =
            pb::write_offs_client::WriteOffsClient::with_interceptor(ch.clone(), bearer(admin))
                .propose_write_off(pb::ProposeWriteOffRequest {
                    case_id: cases[3],
                    reason: "uncollectible".into(),
                    on: AS_OF.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .id;
        targets.push(Target {
            customer: customer.into(),
            group: group.into(),
            collector: collector.into(),
            case: cases[0],
            item: db_i64(
                &db,
                "SELECT id FROM items WHERE document_no = ?1",
                &format!("INV-{p}1"),
            ),
            dispute,
            agreement,
            write_off,
        });
    }
    let statement = std::fs::read(
        arrears_test_support::repo_root()
            .join("tests/samples/camt053/genkgo-camt__camt053_v03.xml"),
    )
    .unwrap();

    // chen collects A; grace supervises key_accounts (B) by managing it in the rules,
    // not general (A); root reaches both.
    let callers = [
        (Role::Collector, CHEN, 0usize),
        (Role::Supervisor, GRACE, 1),
        (Role::Admin, ROOT, usize::MAX),
    ];
    let mut failures = Vec::new();
    let mut calls = 0;
    for (method, least, kind, must_succeed) in SPEC {
        for (ti, t) in targets.iter().enumerate() {
            // Nobody gets in without a token.
            let r = call(&ch, None, method, t, &statement).await;
            calls += 1;
            if r.as_ref().err().map(|e| e.code()) != Some(Code::Unauthenticated) {
                failures.push(format!("{method} without a token: {r:?}"));
            }
            for (role, token, own) in callers {
                let allowed =
                    role >= *least && (*kind == Kind::Portfolio || own == usize::MAX || own == ti);
                let r = call(&ch, Some(token), method, t, &statement).await;
                calls += 1;
                let code = r.as_ref().err().map(|e| e.code());
                let ok = if allowed {
                    !matches!(
                        code,
                        Some(
                            Code::PermissionDenied
                                | Code::Unauthenticated
                                | Code::Unimplemented
                                | Code::Internal
                        )
                    ) && (!must_succeed || code.is_none())
                } else {
                    code == Some(Code::PermissionDenied)
                };
                if !ok {
                    failures.push(format!(
                        "{method} by {role:?} on {} ({}): expected {}, got {r:?}",
                        t.customer,
                        if own == ti || own == usize::MAX {
                            "own"
                        } else {
                            "other's"
                        },
                        if allowed {
                            "allowed"
                        } else {
                            "PERMISSION_DENIED"
                        }
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {calls} calls broke the matrix:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The standard health service needs no token (probes), and says SERVING.
    let mut h = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let s = h
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        s.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}
