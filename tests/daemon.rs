//! End-to-end: the real `arrears serve` on loopback ports with a temporary database
//! and rules folder, driven by a tonic client as collector apps would.

mod common;

use arrears_store::rusqlite;
use std::time::Duration;

use arrears::server::pb;
use common::*;
use tonic::{Code, Status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worklist_paging_auth_and_clear_errors() {
    let dir = Daemon::prepare();
    arrears(
        dir.path(),
        &[
            "demo",
            "--customers",
            "300",
            "--items",
            "3000",
            "--as-of",
            AS_OF,
        ],
    );
    let d = Daemon::start(dir);
    let ch = d.channel().await;
    let mut sup =
        pb::worklists_client::WorklistsClient::with_interceptor(ch.clone(), with_token(SUP));
    let mut admin = pb::admin_client::AdminClient::with_interceptor(ch.clone(), with_token(SUP));
    admin
        .trigger_run(pb::TriggerRunRequest {
            full: false,
            as_of: String::new(),
        })
        .await
        .unwrap();

    // Paging: every page in order, no entry twice, as many as `total` says.
    let mut seen = std::collections::HashSet::new();
    let mut token = String::new();
    let mut last_nad = String::new();
    let mut total = None;
    let mut pages = 0;
    loop {
        let p = sup
            .get_worklist(pb::GetWorklistRequest {
                scope: group("general"),
                filter: None,
                page_size: 7,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(p.entries.len() <= 7);
        for e in &p.entries {
            assert!(
                seen.insert(e.customer_id),
                "customer {} twice",
                e.customer_id
            );
            assert!(e.nad >= last_nad, "not ordered by NAD");
            last_nad = e.nad.clone();
            assert_eq!(e.collection_group, "general");
            assert!(e.amount.as_ref().unwrap().amount.parse::<f64>().is_ok());
        }
        total = Some(total.unwrap_or(p.total));
        assert_eq!(Some(p.total), total);
        if p.next_page_token.is_empty() {
            break;
        }
        token = p.next_page_token;
    }
    let total = total.unwrap() as usize;
    assert!(
        total > 14,
        "the demo gives the general group several pages ({total})"
    );
    assert_eq!(seen.len(), total);
    assert_eq!(pages, total.div_ceil(7));

    // Filters narrow the list.
    let high = sup
        .get_worklist(pb::GetWorklistRequest {
            scope: group("general"),
            filter: Some(pb::WorklistFilter {
                min_priority: pb::Priority::High as i32,
                ..Default::default()
            }),
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(high
        .entries
        .iter()
        .all(|e| e.priority == pb::Priority::High as i32));
    assert!((high.total as usize) < total);

    // Bad requests get a clear status.
    let err = |r: Result<tonic::Response<pb::WorklistPage>, Status>| r.unwrap_err();
    let e = err(sup
        .get_worklist(pb::GetWorklistRequest {
            scope: group("general"),
            page_size: 100_000,
            ..Default::default()
        })
        .await);
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("page_size"));
    let e = err(sup
        .get_worklist(pb::GetWorklistRequest {
            scope: group("general"),
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await);
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = err(sup
        .get_worklist(pb::GetWorklistRequest {
            scope: group("no_such_group"),
            ..Default::default()
        })
        .await);
    assert_eq!(e.code(), Code::NotFound);

    // Authentication.
    let mut anon =
        pb::worklists_client::WorklistsClient::with_interceptor(ch.clone(), no_token as Auth);
    let e = anon
        .get_worklist(pb::GetWorklistRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let mut wrong = pb::worklists_client::WorklistsClient::with_interceptor(
        ch.clone(),
        with_token("not-a-real-token-at-all"),
    );
    let e = wrong
        .get_worklist(pb::GetWorklistRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    // A collector reads their own worklist, not a colleague's.
    let mut chen =
        pb::worklists_client::WorklistsClient::with_interceptor(ch.clone(), with_token(CHEN));
    let own = chen
        .get_worklist(pb::GetWorklistRequest {
            scope: mine(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(own
        .entries
        .iter()
        .all(|e| e.collector.is_empty() || e.collector == "chen"));
    let e = chen
        .get_worklist(pb::GetWorklistRequest {
            scope: Some(pb::WorklistScope {
                scope: Some(pb::worklist_scope::Scope::Collector("dara".into())),
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Cases: a supervisor assigns one to dara; chen may then not touch it.
    let mut cases_sup =
        pb::cases_client::CasesClient::with_interceptor(ch.clone(), with_token(SUP));
    let mut cases_chen =
        pb::cases_client::CasesClient::with_interceptor(ch.clone(), with_token(CHEN));
    let some = own.entries.first().expect("chen has work").customer.clone();
    let list = cases_sup
        .list_cases(pb::ListCasesRequest {
            customer: some.clone(),
            all: false,
        })
        .await
        .unwrap()
        .into_inner();
    let case_id = list.cases.first().expect("an open case").id;
    let e = cases_chen
        .assign_cases(pb::AssignCasesRequest {
            case_ids: vec![case_id],
            collector: "dara".into(),
            on: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    cases_sup
        .assign_cases(pb::AssignCasesRequest {
            case_ids: vec![case_id],
            collector: "dara".into(),
            on: String::new(),
        })
        .await
        .unwrap();
    let e = cases_chen
        .add_note(pb::AddNoteRequest {
            case_id,
            text: "called, no answer".into(),
            on: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let mut cases_dara =
        pb::cases_client::CasesClient::with_interceptor(ch.clone(), with_token(DARA));
    let c = cases_dara
        .add_note(pb::AddNoteRequest {
            case_id,
            text: "called, promised to check".into(),
            on: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.assigned_to, "dara");
    assert!(c
        .history
        .iter()
        .any(|h| h.kind == "note" && h.actor == "dara"));
    let e = cases_dara
        .add_note(pb::AddNoteRequest {
            case_id,
            text: "  ".into(),
            on: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = cases_sup
        .get_case(pb::GetCaseRequest {
            id: "99999999".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = cases_dara
        .set_activity(pb::SetActivityRequest {
            case_id,
            category: "nope".into(),
            subcategory: "nope".into(),
            on: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // A wrong value is INVALID_ARGUMENT; a record in the wrong state is
    // FAILED_PRECONDITION.
    let mut promises =
        pb::promises_client::PromisesClient::with_interceptor(ch.clone(), with_token(SUP));
    let e = promises
        .create_promise(pb::CreatePromiseRequest {
            case_id,
            amount: "999999999".into(),
            promised_on: "2026-12-01".into(),
            on: AS_OF.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("exceeds the open amount"), "{e:?}");
    // Amounts beyond the bound, or with more decimals than the currency, are refused
    // before they reach the store.
    for (amount, says) in [
        ("50000000000000000000000000000", "out of range"),
        ("1.001", "more decimals than"),
        ("1e3", "not a decimal amount"),
    ] {
        let e = promises
            .create_promise(pb::CreatePromiseRequest {
                case_id,
                amount: amount.into(),
                promised_on: "2026-12-01".into(),
                on: AS_OF.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{amount}: {e:?}");
        assert!(e.message().contains(says), "{amount}: {e:?}");
    }
    let mut disputes =
        pb::disputes_client::DisputesClient::with_interceptor(ch.clone(), with_token(SUP));
    let dispute = disputes
        .open_dispute(pb::OpenDisputeRequest {
            case_id,
            reason: "goods damaged".into(),
            on: AS_OF.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ageing = disputes
        .dispute_ageing(pb::DisputeAgeingRequest {
            as_of: AS_OF.into(),
            oldest: 1000,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ageing.buckets[0].bucket, "0-30");
    assert!(
        ageing.oldest.iter().any(|d| d.id == dispute.id),
        "{ageing:?}"
    );
    let resolve = pb::ResolveDisputeRequest {
        dispute_id: dispute.id,
        resolution: "invalid".into(),
        on: AS_OF.into(),
    };
    disputes.resolve_dispute(resolve.clone()).await.unwrap();
    let e = disputes.resolve_dispute(resolve).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("already resolved"), "{e:?}");

    // The customer's 360° view and the explanation.
    let cust = cases_sup
        .get_customer(pb::GetCustomerRequest {
            customer: some.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!cust.open_items.is_empty());
    assert!(!cust.segment.is_empty());
    // The hand assignment moved the customer to dara: chen no longer reaches it, dara
    // does.
    let mut ex = pb::explain_client::ExplainClient::with_interceptor(ch.clone(), with_token(CHEN));
    let e = ex
        .explain_customer(pb::ExplainRequest {
            customer: some.clone(),
            as_of: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let mut ex = pb::explain_client::ExplainClient::with_interceptor(ch.clone(), with_token(DARA));
    let why = ex
        .explain_customer(pb::ExplainRequest {
            customer: some.clone(),
            as_of: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(why.segment, cust.segment);
    assert!(!why.criteria.is_empty());
    let e = ex
        .explain_customer(pb::ExplainRequest {
            customer: "NOPE/NOPE".into(),
            as_of: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Rule operations need a supervisor.
    let mut strat_chen =
        pb::strategies_client::StrategiesClient::with_interceptor(ch.clone(), with_token(CHEN));
    let e = strat_chen
        .validate_rules(pb::ValidateRulesRequest { files: vec![] })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // The CLI as a client: `arrears --remote URL worklist` with the token from the environment.
    let cli = |token: &str, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_arrears"))
            .args(["--remote", &d.grpc])
            .args(args)
            .env("ARREARS_TOKEN", token)
            .env_remove("ARREARS_CONFIG")
            .output()
            .unwrap()
    };
    let o = cli(CHEN, &["worklist", "--json", "--limit", "1000"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["total"].as_u64().unwrap() > 0, "{v}");
    for e in v["entries"].as_array().unwrap() {
        let c = e["collector"].as_str().unwrap();
        assert!(c.is_empty() || c == "chen", "{e}");
    }
    let o = cli("wrong-token-wrong-token", &["worklist"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Unauthenticated"));
    let o = cli(
        DARA,
        &["case", "note", &case_id.to_string(), "left a voicemail"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Every mutation is in the audit log with its principal.
    let db = rusqlite::Connection::open(d.path("arrears.db")).unwrap();
    let (who, before): (String, String) = db
        .query_row(
            "SELECT principal, before FROM audit WHERE action = 'cases.assign'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(who, "sup");
    assert!(before.contains(&format!("\"case\":{case_id}")), "{before}");
    let notes: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE action = 'case.note' AND principal = 'dara'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        notes, 2,
        "dara's two notes; the refused one by chen left no record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_stream_follows_imports_assignments_and_rule_reloads() {
    let dir = Daemon::prepare();
    let csv = dir.path().join("items.csv");
    let header = "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,open_amount,currency\n";
    std::fs::write(
        &csv,
        format!(
            "{header}item,w1,ACME_DE,W1,Watch One GmbH,INV-W1,2026-08-01,2026-09-01,4000.00,4000.00,EUR\n\
             item,w2,ACME_DE,W2,Watch Two GmbH,INV-W2,2026-08-01,2026-09-15,2500.00,2500.00,EUR\n"
        ),
    )
    .unwrap();
    arrears(dir.path(), &["import", "csv", csv.to_str().unwrap()]);
    let d = Daemon::start(dir);
    let ch = d.channel().await;
    let mut wl =
        pb::worklists_client::WorklistsClient::with_interceptor(ch.clone(), with_token(SUP));
    let mut admin = pb::admin_client::AdminClient::with_interceptor(ch.clone(), with_token(SUP));
    admin
        .trigger_run(pb::TriggerRunRequest::default())
        .await
        .unwrap();

    let mut stream = wl
        .watch_worklist(pb::WatchWorklistRequest {
            scope: group("general"),
            filter: None,
        })
        .await
        .unwrap()
        .into_inner();
    let first = wait_for(&mut stream, |_| true).await;
    assert_eq!(first.kind, pb::worklist_update::Kind::Snapshot as i32);
    let w1 = first
        .upserted
        .iter()
        .find(|e| e.customer == "ACME_DE/W1")
        .expect("W1 on the general worklist")
        .clone();
    assert!(first.upserted.iter().any(|e| e.customer == "ACME_DE/W2"));

    // A payment clears W1's invoice in another process: W1 leaves the worklist.
    std::fs::write(
        &csv,
        format!(
            "{header}item,w1,ACME_DE,W1,Watch One GmbH,INV-W1,2026-08-01,2026-09-01,4000.00,0,EUR\n"
        ),
    )
    .unwrap();
    arrears(d.dir.path(), &["import", "csv", csv.to_str().unwrap()]);
    let m = wait_for(&mut stream, |m| m.removed.contains(&w1.customer_id)).await;
    assert_eq!(m.kind, pb::worklist_update::Kind::Change as i32);
    assert!(m.cause.contains("changed in the store"), "{}", m.cause);

    // A reassignment moves W2 to chen.
    let mut cases = pb::cases_client::CasesClient::with_interceptor(ch.clone(), with_token(SUP));
    let c = cases
        .list_cases(pb::ListCasesRequest {
            customer: "ACME_DE/W2".into(),
            all: false,
        })
        .await
        .unwrap()
        .into_inner();
    let case_id = c.cases[0].id;
    cases
        .assign_cases(pb::AssignCasesRequest {
            case_ids: vec![case_id],
            collector: "chen".into(),
            on: String::new(),
        })
        .await
        .unwrap();
    let m = wait_for(&mut stream, |m| {
        m.upserted
            .iter()
            .any(|e| e.customer == "ACME_DE/W2" && e.collector == "chen")
    })
    .await;
    assert!(m.cause.contains("assigned to chen"), "{}", m.cause);

    // A broken rule file is refused; the last good rules stay in force.
    let mut strat =
        pb::strategies_client::StrategiesClient::with_interceptor(ch.clone(), with_token(SUP));
    let before = strat
        .list_rules(pb::ListRulesRequest {})
        .await
        .unwrap()
        .into_inner();
    let rules_file = d.path("rules/strategies.yaml");
    let good = std::fs::read_to_string(&rules_file).unwrap();
    std::fs::write(&rules_file, good.replace("strategies:", "strategies: [\n")).unwrap();
    let mut info = before.clone();
    for _ in 0..100 {
        info = strat
            .list_rules(pb::ListRulesRequest {})
            .await
            .unwrap()
            .into_inner();
        if !info.last_reload_error.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        info.last_reload_error.contains("strategies.yaml:"),
        "{info:?}"
    );
    assert_eq!(info.hash, before.hash, "the last good set is kept");
    let metrics = d.scrape();
    assert!(
        metrics.contains("arrears_rule_reloads_total{result=\"failure\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("arrears_rules_valid 0"), "{metrics}");
    // The worklist still answers.
    wl.get_worklist(pb::GetWorklistRequest {
        scope: group("general"),
        ..Default::default()
    })
    .await
    .unwrap();

    // A good change is swapped in, re-evaluates the portfolio and reaches the watcher:
    // lowering the key-account threshold moves W2 (2500 EUR) out of the general group.
    assert!(good.contains("gte: 100000"));
    std::fs::write(&rules_file, good.replace("gte: 100000", "gte: 1000")).unwrap();
    let m = wait_for(&mut stream, |m| m.cause.contains("rules reloaded")).await;
    assert!(
        m.removed.iter().any(|id| first
            .upserted
            .iter()
            .any(|e| e.customer_id == *id && e.customer == "ACME_DE/W2"))
            || m.upserted.iter().any(|e| e.customer == "ACME_DE/W2"),
        "{m:?}"
    );
    let after = strat
        .list_rules(pb::ListRulesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_ne!(after.hash, before.hash);
    assert!(after.last_reload_error.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_and_leaves_a_consistent_store() {
    let dir = Daemon::prepare();
    arrears(
        dir.path(),
        &[
            "demo",
            "--customers",
            "50",
            "--items",
            "400",
            "--as-of",
            AS_OF,
        ],
    );
    let mut d = Daemon::spawn(dir);
    let ch = d.channel().await;
    let mut wl =
        pb::worklists_client::WorklistsClient::with_interceptor(ch.clone(), with_token(CHEN));
    let mut stream = wl
        .watch_worklist(pb::WatchWorklistRequest {
            scope: mine(),
            filter: None,
        })
        .await
        .unwrap()
        .into_inner();
    wait_for(&mut stream, |_| true).await;
    let (status, lines) = d.terminate();
    assert!(status.success(), "{status:?}");
    assert!(lines.iter().any(|l| l == "shutdown complete"), "{lines:?}");
    // Updates already sent may still be read; then the stream ends.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = stream.message().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream did not end with the daemon");
    let db = rusqlite::Connection::open(d.path("arrears.db")).unwrap();
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let runs: i64 = db
        .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))
        .unwrap();
    assert!(runs >= 1);
}

/// A private CA and a server certificate for `localhost`/127.0.0.1 signed by it.
fn tls_material(dir: &std::path::Path) -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    // Another CA, which the client must not accept the server under.
    let other = CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&KeyPair::generate().unwrap())
        .unwrap();
    (ca.pem(), other.pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_with_the_configured_certificate_only() {
    let dir = Daemon::prepare();
    let (ca, other_ca) = tls_material(dir.path());
    std::fs::write(dir.path().join("ca.pem"), &ca).unwrap();
    let cfg = dir.path().join("arrears.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "serve:\n",
        &format!(
            "serve:\n  tls: {{ cert: {}, key: {} }}\n",
            dir.path().join("server.pem").display(),
            dir.path().join("server.key").display()
        ),
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    // A private key others can read is refused with the fix; kept private, it serves.
    let key = dir.path().join("server.key");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_arrears"))
            .args([
                "--config",
                cfg.to_str().unwrap(),
                "serve",
                "--grpc-listen",
                "127.0.0.1:0",
            ])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .env("ARREARS_DB", dir.path().join("arrears.db"))
            .env("ARREARS_RULES", dir.path().join("rules"))
            .env("T_SUP", SUP)
            .env("T_CHEN", CHEN)
            .env("T_DARA", DARA)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "served with a readable key: {err}");
        assert!(
            err.contains("server.key") && err.contains("chmod 600"),
            "{err}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    arrears(
        dir.path(),
        &[
            "demo",
            "--customers",
            "50",
            "--items",
            "400",
            "--as-of",
            AS_OF,
        ],
    );
    let d = Daemon::start(dir);
    let https = d.grpc.replacen("http://", "https://", 1);

    let health = |ch: tonic::transport::Channel| async move {
        pb::admin_client::AdminClient::with_interceptor(ch, with_token(SUP))
            .health(pb::HealthRequest {})
            .await
    };
    let tls_channel = |ca_pem: String| {
        let https = https.clone();
        async move {
            tonic::transport::Endpoint::from_shared(https)
                .unwrap()
                .tls_config(
                    tonic::transport::ClientTlsConfig::new()
                        .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
                        .domain_name("localhost"),
                )
                .unwrap()
                .connect()
                .await
        }
    };

    let ok = health(tls_channel(ca.clone()).await.unwrap())
        .await
        .unwrap();
    assert!(!ok.get_ref().rules_hash.is_empty());
    // A client that trusts another CA refuses the server: no request gets through.
    match tls_channel(other_ca).await {
        Err(_) => {}
        Ok(ch) => assert!(health(ch).await.is_err(), "untrusted server accepted"),
    }
    // Plaintext to a TLS port fails rather than silently downgrading.
    match tonic::transport::Endpoint::from_shared(d.grpc.clone())
        .unwrap()
        .connect()
        .await
    {
        Err(_) => {}
        Ok(ch) => assert!(health(ch).await.is_err(), "plaintext accepted"),
    }

    // The CLI over TLS: with the CA it works; without it, it says what is missing.
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_arrears"))
            .args(["--remote", &https])
            .args(args)
            .env("ARREARS_TOKEN", SUP)
            .env_remove("ARREARS_CONFIG")
            .env_remove("ARREARS_CA_FILE")
            .output()
            .unwrap()
    };
    let ca_file = d.path("ca.pem");
    // The demo data has not been run yet: the daemon's start-up run makes chen's
    // worklist, and on a busy machine it may still be at work.
    let mut v = serde_json::Value::Null;
    for _ in 0..300 {
        let o = cli(&[
            "--ca-file",
            ca_file.to_str().unwrap(),
            "worklist",
            "--collector",
            "chen",
            "--json",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        v = serde_json::from_slice(&o.stdout).unwrap();
        if v["total"].as_u64().unwrap() > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(v["total"].as_u64().unwrap() > 0, "{v}");
    let o = cli(&["worklist", "--collector", "chen"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--ca-file"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_statements_over_the_api_clear_items_and_fill_the_review_queue() {
    let dir = Daemon::prepare();
    let csv = dir.path().join("items.csv");
    std::fs::write(
        &csv,
        "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,currency\n\
         item,r77561,ACME_CH,C77,Jon Doe AG,R77561,2026-08-01,2026-09-01,474.40,CHF\n\
         item,r88,ACME_CH,C77,Jon Doe AG,R88,2026-08-01,2026-09-01,88.85,CHF\n",
    )
    .unwrap();
    arrears(dir.path(), &["import", "csv", csv.to_str().unwrap()]);
    let d = Daemon::start(dir);
    let ch = d.channel().await;
    let mut sup =
        pb::statements_client::StatementsClient::with_interceptor(ch.clone(), with_token(SUP));
    let mut chen =
        pb::statements_client::StatementsClient::with_interceptor(ch.clone(), with_token(CHEN));
    let ubs = std::fs::read(
        arrears_test_support::repo_root()
            .join("tests/samples/camt053/viafintech-camt_parser__ubs_camt053_v08.xml"),
    )
    .unwrap();
    let req = |content: Vec<u8>| pb::ImportStatementRequest {
        name: "ubs.xml".into(),
        content,
        encoding: String::new(),
        min_confidence: String::new(),
    };
    let e = chen.import_statement(req(ubs.clone())).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let bad = String::from_utf8(ubs.clone())
        .unwrap()
        .replacen(">474.4<", ">474,4<", 1);
    let e = sup
        .import_statement(req(bad.into_bytes()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("ubs.xml:"), "{e:?}");

    let r = sup
        .import_statement(req(ubs.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.credits, r.matched), (2, 1), "{r:?}");
    let again = sup.import_statement(req(ubs)).await.unwrap().into_inner();
    assert!(again.duplicate_file);

    // The other credit (88.85, a QR reference we do not know) waits for review.
    let queue = sup
        .list_credits(pb::ListCreditsRequest {
            review_only: true,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .credits;
    assert_eq!(queue.len(), 1, "{queue:?}");
    let c = &queue[0];
    assert_eq!(c.amount.as_ref().unwrap().amount, "88.85");
    // A person recognises it as the R88 invoice and applies it.
    let db = rusqlite::Connection::open(d.path("arrears.db")).unwrap();
    let r88: i64 = db
        .query_row("SELECT id FROM items WHERE document_no = 'R88'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let e = sup
        .resolve_credit(pb::ResolveCreditRequest {
            credit_id: c.id,
            item_ids: vec![r88],
            dismiss: true,
            reason: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let done = sup
        .resolve_credit(pb::ResolveCreditRequest {
            credit_id: c.id,
            item_ids: vec![r88],
            dismiss: false,
            reason: "customer called: QR ref of invoice R88".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.status, "resolved");
    let cleared: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM items WHERE document_no IN ('R77561', 'R88') AND status = 'cleared'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(cleared, 2);
    let audited: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE principal = 'sup' AND action IN ('statement.import', 'credit.resolve')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        audited, 3,
        "two imports (one a duplicate) and one resolution"
    );
}

/// Polls `q` (a COUNT query) until it returns `want`, for up to 30 s.
fn wait_count(db: &std::path::Path, q: &str, want: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let c = rusqlite::Connection::open(db).unwrap();
        let n: i64 = c.query_row(q, [], |r| r.get(0)).unwrap();
        if n == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "`{q}` is {n}, not {want}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_connectors_take_dropped_files_and_report_their_health() {
    let dir = Daemon::prepare();
    let csv = dir.path().join("items.csv");
    std::fs::write(
        &csv,
        "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,currency\n\
         item,r77561,ACME_CH,C77,Jon Doe AG,R77561,2026-08-01,2026-09-01,474.40,CHF\n",
    )
    .unwrap();
    arrears(dir.path(), &["import", "csv", csv.to_str().unwrap()]);
    let d = Daemon::start(dir);
    let db = d.path("arrears.db");

    // A statement dropped the way exporters should: written aside, renamed in.
    let ubs = arrears_test_support::repo_root()
        .join("tests/samples/camt053/viafintech-camt_parser__ubs_camt053_v08.xml");
    let bank = d.path("inbox/bank");
    std::fs::create_dir_all(&bank).unwrap();
    std::fs::copy(&ubs, bank.join(".ubs.xml.tmp")).unwrap();
    std::fs::rename(bank.join(".ubs.xml.tmp"), bank.join("ubs.xml")).unwrap();
    wait_count(
        &db,
        "SELECT COUNT(*) FROM items WHERE document_no = 'R77561' AND status = 'cleared'",
        1,
    );
    // The daemon's run follows: the case closes without anyone asking.
    wait_count(
        &db,
        "SELECT COUNT(*) FROM cases c JOIN items i ON i.id = c.item_id WHERE i.document_no = 'R77561' AND c.status = 'open'",
        0,
    );
    assert!(bank.join("processed/ubs.xml").is_file());

    // A bad CSV lands in failed/ with its report; nothing of it is stored.
    let inbox = d.path("inbox/csv");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(
        inbox.join("bad.csv"),
        "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,currency\n\
         item,x1,ACME_CH,C78,Other AG,X1,2026-08-01,2026-09-01,12.50,CHF\n\
         item,x2,ACME_CH,C78,Other AG,X2,2026-08-01,2026-09-01,abc,CHF\n",
    )
    .unwrap();
    let report = inbox.join("failed/bad.csv.error.txt");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !report.is_file() {
        assert!(std::time::Instant::now() < deadline, "no error report");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("line 3"), "{text}");
    wait_count(
        &db,
        "SELECT COUNT(*) FROM items WHERE document_no = 'X1'",
        0,
    );

    let ch = d.channel().await;
    let mut sup =
        pb::connectors_client::ConnectorsClient::with_interceptor(ch.clone(), with_token(SUP));
    let list = sup
        .list_connectors(pb::ListConnectorsRequest {})
        .await
        .unwrap()
        .into_inner()
        .connectors;
    let by = |n: &str| list.iter().find(|c| c.name == n).unwrap().clone();
    assert_eq!(by("bank").pulled_total, 1, "{list:?}");
    assert!(!by("bank").last_success.is_empty());
    assert_eq!(by("erp-drop").errors_total, 1, "{list:?}");
    let r = sup
        .sync_connector(pb::SyncConnectorRequest {
            name: "bank".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.pulled, r.failed), (0, 0), "nothing waiting");
    let e = sup
        .sync_connector(pb::SyncConnectorRequest {
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = pb::connectors_client::ConnectorsClient::with_interceptor(ch, with_token(CHEN))
        .sync_connector(pb::SyncConnectorRequest {
            name: "bank".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // The CLI shows the same, from the daemon and from the store.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_arrears"))
        .args(["--remote", &d.grpc, "connectors", "--json"])
        .env("ARREARS_TOKEN", SUP)
        .env_remove("ARREARS_CONFIG")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    let m = d.scrape();
    assert!(
        m.contains("arrears_connector_pulled_total{connector=\"bank\"} 1"),
        "{m}"
    );
}

/// The example Python plugin as a connector: its data arrives, a crash mid-pull
/// is survived by a restart, and garbage it sends is refused without moving the
/// cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_connector_is_started_restarted_after_a_crash_and_checked() {
    let dir = Daemon::prepare();
    let root = arrears_test_support::repo_root();
    let example = root.join("connectors/examples/python_plugin");
    let data = dir.path().join("legacy.json");
    std::fs::copy(example.join("example_data.json"), &data).unwrap();
    let crash = dir.path().join("crash-now");
    let hang = dir.path().join("hang-now");
    let cfg = dir.path().join("arrears.yaml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "  - name: legacy\n    kind: plugin\n    command: ['{}', '{}']\n    \
         settings: {{ data_file: '{}', crash_file: '{}', hang_file: '{}' }}\n    \
         call_timeout: 2s\n    every: 0s\n",
        python(),
        example.join("plugin.py").display(),
        data.display(),
        crash.display(),
        hang.display()
    ));
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::start(dir);
    let db = d.path("arrears.db");
    let items = "SELECT COUNT(*) FROM items WHERE source = 'plugin:legacy'";
    // The first sync runs at start-up.
    wait_count(&db, items, 3);
    wait_count(
        &db,
        "SELECT COUNT(*) FROM payments WHERE source = 'plugin:legacy'",
        1,
    );

    let ch = d.channel().await;
    let mut sup =
        pb::connectors_client::ConnectorsClient::with_interceptor(ch.clone(), with_token(SUP));
    let sync = |c: &mut pb::connectors_client::ConnectorsClient<_>| {
        let mut c = c.clone();
        async move {
            c.sync_connector(pb::SyncConnectorRequest {
                name: "legacy".into(),
            })
            .await
        }
    };

    // New data, and the plugin dies in the middle of the pull.
    let v2 = std::fs::read_to_string(&data)
        .unwrap()
        .replace("\"version\": 1", "\"version\": 2")
        .replace("\"open_amount\": \"480.50\"", "\"open_amount\": \"0\"");
    std::fs::write(&data, v2).unwrap();
    std::fs::write(&crash, "").unwrap();
    let e = sync(&mut sup).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(!crash.exists(), "the plugin consumed the crash switch");
    // It is started again (after a short backoff) and the pull goes through.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match sync(&mut sup).await {
            Ok(r) => {
                assert!(r.get_ref().pulled > 0, "{r:?}");
                break;
            }
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "never recovered: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    wait_count(
        &db,
        "SELECT COUNT(*) FROM items WHERE source = 'plugin:legacy' AND external_id = 'INV-2026-0003' AND status = 'cleared'",
        1,
    );
    let m = d.scrape();
    assert!(
        m.lines().any(
            |l| l.starts_with("arrears_connector_restarts_total{connector=\"legacy\"}")
                && !l.ends_with(" 0")
        ),
        "{m}"
    );

    // A plugin that hangs is cut off after call_timeout and started afresh.
    std::fs::write(&hang, "").unwrap();
    let t = std::time::Instant::now();
    let e = sync(&mut sup).await.unwrap_err();
    assert!(e.message().contains("took longer"), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    std::fs::remove_file(&hang).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while let Err(e) = sync(&mut sup).await {
        assert!(
            std::time::Instant::now() < deadline,
            "never recovered: {e:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Garbage from the plugin: refused whole, naming the record; the cursor stays.
    let v3 = std::fs::read_to_string(&data)
        .unwrap()
        .replace("\"version\": 2", "\"version\": 3")
        .replace("\"open_amount\": \"1190.00\"", "\"open_amount\": \"lots\"");
    std::fs::write(&data, v3).unwrap();
    let e = sync(&mut sup).await.unwrap_err();
    assert!(e.message().contains("INV-2026-0001"), "{e:?}");
    assert!(e.message().contains("lots"), "{e:?}");
    let c = rusqlite::Connection::open(&db).unwrap();
    let cursor: String = c
        .query_row(
            "SELECT cursor FROM connector_state WHERE name = 'legacy'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(cursor, "2");
    let open: String = c
        .query_row(
            "SELECT open_amount FROM items WHERE external_id = 'INV-2026-0001'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(open, "1190.00");
}

/// Renegotiation over the API: a collector's proposal beyond their limits waits; the
/// collector cannot approve it, nor can another collector; a supervisor can, and the
/// items are replaced by instalments with a debt-recognition letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agreement_goes_round_the_approval_workflow() {
    let dir = Daemon::prepare();
    let csv = dir.path().join("items.csv");
    std::fs::write(
        &csv,
        "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,currency\n\
         item,a1,ACME_DE,C5,Weber GmbH,INV-A1,2026-08-01,2026-09-01,1000.00,EUR\n\
         item,a2,ACME_DE,C5,Weber GmbH,INV-A2,2026-08-01,2026-10-01,500.00,EUR\n",
    )
    .unwrap();
    arrears(dir.path(), &["import", "csv", csv.to_str().unwrap()]);
    let d = Daemon::start(dir);
    let db = d.path("arrears.db");
    let open = "SELECT COUNT(*) FROM cases c JOIN items i ON i.id = c.item_id WHERE i.document_no LIKE 'INV-A%' AND c.status = 'open'";
    wait_count(&db, open, 2);
    let cases: Vec<i64> = rusqlite::Connection::open(&db)
        .unwrap()
        .prepare("SELECT c.id FROM cases c JOIN items i ON i.id = c.item_id WHERE i.document_no LIKE 'INV-A%' ORDER BY c.id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();

    let ch = d.channel().await;
    let client = |t: &'static str| {
        pb::agreements_client::AgreementsClient::with_interceptor(ch.clone(), with_token(t))
    };
    let propose = |plan: &str, n: u32| pb::ProposeAgreementRequest {
        case_ids: cases.clone(),
        plan: plan.into(),
        installments: n,
        first_due: "2026-12-15".into(),
        discount_percent: "10".into(),
        on: AS_OF.into(),
    };
    let e = client(CHEN)
        .propose_agreement(propose("weekly", 12))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let a = client(CHEN)
        .propose_agreement(propose("price", 12))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.status, "pending");
    assert!(a.needs_approval.contains("12 instalments above 6"), "{a:?}");
    // 1566.00 less 10 % (see the store test for the hand computation).
    assert_eq!(a.debt, "1409.40");

    let approve = |note: &str| pb::DecideAgreementRequest {
        id: a.id,
        note: note.into(),
        on: AS_OF.into(),
    };
    let e = client(CHEN)
        .approve_agreement(approve(""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("someone else"), "{e:?}");
    let e = client(DARA)
        .approve_agreement(approve(""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = client(DARA)
        .reject_agreement(approve("no"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "collectors do not reject");
    let a = client(SUP)
        .approve_agreement(approve("lost a big client; asked for time"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (a.status.as_str(), a.decided_by.as_str()),
        ("active", "sup")
    );
    assert_eq!(a.schedule.len(), 12);
    assert_eq!(a.schedule[0].document_no, format!("AGR-{}-1", a.id));
    let e = client(SUP)
        .approve_agreement(approve(""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "approved once only");

    // The run that follows opens cases for the instalments; the invoices are out.
    wait_count(&db, open, 0);
    let docs = client(CHEN)
        .list_documents(pb::ListDocumentsRequest {
            customer: "ACME_DE/C5".into(),
            agreement_id: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .documents;
    // Beside it, the reminder the daemon's outbox put on paper (no e-mail on file).
    let letter = docs
        .iter()
        .find(|d| d.kind == "debt_recognition")
        .unwrap_or_else(|| panic!("{docs:?}"));
    assert!(letter.html.contains("Weber GmbH"), "{}", letter.html);
    let audited: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE action IN ('agreement.propose', 'agreement.approve')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(audited, 2, "refusals leave no audit record");
}

fn count(db: &std::path::Path, q: &str) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(q, [], |r| r.get(0))
        .unwrap()
}

/// With the default timings, a portfolio whose outbox turns steps into call tasks
/// (which change cases) and with a customer no run can evaluate (no exchange rate,
/// so it stays marked changed) comes to rest: the daemon's own commits do not start
/// run after run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_and_the_outbox_settle_with_default_timings() {
    let dir = Daemon::prepare();
    arrears(
        dir.path(),
        &[
            "demo",
            "--customers",
            "150",
            "--items",
            "1500",
            "--as-of",
            AS_OF,
        ],
    );
    let csv = dir.path().join("jpy.csv");
    std::fs::write(
        &csv,
        "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,currency\n\
         item,jpy1,ACME_DE,NORATE,No Rate KK,INV-JPY1,2026-08-01,2026-09-01,50000,JPY\n",
    )
    .unwrap();
    arrears(dir.path(), &["import", "csv", csv.to_str().unwrap()]);
    // Nothing but the defaults (run every 15 min, store poll 1 s, outbox every minute).
    std::fs::write(dir.path().join("arrears.yaml"), "{}\n").unwrap();
    let d = Daemon::start(dir);
    let db = d.path("arrears.db");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while count(
        &db,
        "SELECT COUNT(*) FROM escalations WHERE channel = 'call_task' AND status = 'pending'",
    ) > 0
        || count(&db, "SELECT COUNT(*) FROM runs") < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox did not take the call tasks"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        count(
            &db,
            "SELECT COUNT(*) FROM escalations WHERE channel = 'call_task'"
        ) > 0
    );
    // The call tasks changed cases: one more run for them is right, then quiet.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = count(&db, "SELECT COUNT(*) FROM runs");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = count(&db, "SELECT COUNT(*) FROM runs");
    assert!(
        after - before <= 1,
        "{} runs in 8 s with nothing changing",
        after - before
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM customers WHERE dirty <> 0"),
        1,
        "only the customer without a rate stays marked"
    );
}

/// Imports from other processes while the daemon runs and writes (each import
/// makes it run) all wait for the write lock and succeed; none reports a locked
/// database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_imports_from_other_processes_all_succeed() {
    let dir = Daemon::prepare();
    arrears(
        dir.path(),
        &[
            "demo",
            "--customers",
            "300",
            "--items",
            "3000",
            "--as-of",
            AS_OF,
        ],
    );
    let d = Daemon::start(dir);
    const ROUNDS: usize = 3;
    const PROCS: usize = 6;
    for round in 0..ROUNDS {
        let children: Vec<_> = (0..PROCS)
            .map(|p| {
                let csv = d.path(&format!("imp-{round}-{p}.csv"));
                let mut text = String::from(
                    "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,currency\n",
                );
                for i in 0..40 {
                    text += &format!(
                        "item,c{round}-{p}-{i},ACME_DE,CC{p}-{i},Concurrent {p}-{i},INV-C{round}-{p}-{i},2026-09-01,2026-10-01,{}.00,EUR\n",
                        100 + i
                    );
                }
                std::fs::write(&csv, text).unwrap();
                std::process::Command::new(env!("CARGO_BIN_EXE_arrears"))
                    .args(["import", "csv", csv.to_str().unwrap()])
                    .env("ARREARS_DB", d.path("arrears.db"))
                    .env("ARREARS_RULES", d.path("rules"))
                    .env_remove("ARREARS_CONFIG")
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let o = c.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                o.status.success(),
                "an import failed in round {round}: {err}"
            );
            assert!(!err.contains("locked"), "{err}");
        }
    }
    assert_eq!(
        count(
            &d.path("arrears.db"),
            "SELECT COUNT(*) FROM items WHERE external_id LIKE 'c%-%-%'"
        ),
        (ROUNDS * PROCS * 40) as i64
    );
}

/// SIGTERM while the outbox works through a batch on a slow SMTP server: the
/// daemon exits within a bound, after the message in flight, and every message is
/// either sent (and delivered exactly once) or still waiting for the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_slow_outbox_pass_exits_promptly_and_loses_nothing() {
    let sink = smtp::SmtpSink::start(Duration::from_millis(500));
    let dir = Daemon::prepare();
    // The guard's hours and holidays would make this depend on the clock.
    std::fs::remove_file(dir.path().join("rules/compliance.yaml")).unwrap();
    let cfg = dir.path().join("arrears.yaml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text += &format!(
        "delivery:\n  smtp:\n    host: 127.0.0.1\n    port: {}\n    security: none\n    \
         from: {{ address: collections@acme.example }}\n    timeout: 5s\n",
        sink.port
    );
    std::fs::write(&cfg, text).unwrap();
    const N: usize = 60;
    let csv = dir.path().join("items.csv");
    let mut items = String::from(
        "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,currency,country,email\n",
    );
    for i in 0..N {
        items += &format!(
            "item,s{i},ACME_DE,S{i},Slow {i} GmbH,INV-S{i},2026-10-01,2026-11-01,{}.00,EUR,DE,ap{i}@slow.example\n",
            200 + i
        );
    }
    std::fs::write(&csv, items).unwrap();
    arrears(dir.path(), &["import", "csv", csv.to_str().unwrap()]);
    let mut d = Daemon::spawn(dir);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sink.delivered().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox sent nothing in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked = std::time::Instant::now();
    let (status, lines) = d.terminate();
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(lines.iter().any(|l| l == "shutdown complete"), "{lines:?}");
    assert!(
        took < Duration::from_secs(20),
        "shutdown took {took:?} with the outbox busy"
    );
    let db = d.path("arrears.db");
    let delivered = sink.delivered();
    assert!(
        delivered.len() < N,
        "the whole batch went out before the shutdown: nothing was tested"
    );
    let mut unique = delivered.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        delivered.len(),
        "delivered twice: {delivered:?}"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM messages WHERE status = 'sent'"),
        delivered.len() as i64,
        "every delivery is recorded as sent, and nothing else is"
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM messages WHERE status NOT IN ('sent', 'queued', 'deferred')"
        ),
        0,
        "a message neither sent nor waiting"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM messages"),
        N as i64,
        "one message per customer"
    );
}

/// A change made through the API asks for its run directly; the store poller also
/// sees the commit, and when its tick falls while that run is going it used to ask
/// for a second run that found nothing to do (a whole reload at a million items).
/// Twenty writes, each waited for, must cost twenty runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_write_costs_one_run_even_when_the_poller_sees_its_commit() {
    let dir = Daemon::prepare();
    let cfg = dir.path().join("arrears.yaml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("store_poll: 100ms", "store_poll: 5ms\n  outbox_every: 0s");
    std::fs::write(&cfg, text).unwrap();
    let csv = dir.path().join("items.csv");
    std::fs::write(
        &csv,
        "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,currency\n\
         item,a1,ACME_DE,A1,Alpha GmbH,INV-A1,2026-08-01,2026-09-01,1000.00,EUR\n\
         item,b1,ACME_DE,B1,Beta AG,INV-B1,2026-08-01,2026-09-01,2000.00,EUR\n",
    )
    .unwrap();
    arrears(dir.path(), &["import", "csv", csv.to_str().unwrap()]);
    let d = Daemon::start(dir);
    let db = d.path("arrears.db");
    let runs = || count(&db, "SELECT COUNT(*) FROM runs");
    async fn settle(db: &std::path::Path, want: i64) {
        for _ in 0..1000 {
            if count(db, "SELECT COUNT(*) FROM runs") >= want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("no run {want} within 5 s");
    }
    let mut cases =
        pb::cases_client::CasesClient::with_interceptor(d.channel().await, with_token(SUP));
    settle(&db, 1).await;
    // Several poll intervals of quiet: the start-up run is the only one.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = runs();
    for i in 0..20 {
        cases
            .set_resubmission(pb::SetResubmissionRequest {
                customer: "A1".into(),
                on: format!("2026-12-{:02}", 10 + i % 10),
                reason: format!("write {i}"),
            })
            .await
            .unwrap();
        settle(&db, before + i + 1).await;
        // Let the poller tick a few times over the finished run.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        runs() - before,
        20,
        "one run per write, none for the poller"
    );
}

/// Another process's commit wakes the daemon as it lands in the database's log:
/// with an hour between polls, only that can bring the change to the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_commit_reaches_the_stream_without_waiting_for_the_poll() {
    let dir = Daemon::prepare();
    let cfg = dir.path().join("arrears.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("store_poll: 100ms"));
    std::fs::write(&cfg, text.replace("store_poll: 100ms", "store_poll: 1h")).unwrap();
    let csv = dir.path().join("items.csv");
    let header = "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,open_amount,currency\n";
    let line = |open: &str| {
        format!(
            "item,p1,ACME_DE,P1,Poll One GmbH,INV-P1,2026-08-01,2026-09-01,4000.00,{open},EUR\n"
        )
    };
    std::fs::write(&csv, format!("{header}{}", line("4000.00"))).unwrap();
    arrears(dir.path(), &["import", "csv", csv.to_str().unwrap()]);
    let d = Daemon::start(dir);
    let ch = d.channel().await;
    let mut wl = pb::worklists_client::WorklistsClient::with_interceptor(ch, with_token(SUP));
    let mut stream = wl
        .watch_worklist(pb::WatchWorklistRequest {
            scope: group("general"),
            filter: None,
        })
        .await
        .unwrap()
        .into_inner();
    let first = wait_for(&mut stream, |m| {
        m.upserted.iter().any(|e| e.customer == "ACME_DE/P1")
    })
    .await;
    let p1 = first
        .upserted
        .iter()
        .find(|e| e.customer == "ACME_DE/P1")
        .unwrap()
        .customer_id;

    std::fs::write(&csv, format!("{header}{}", line("0"))).unwrap();
    arrears(d.dir.path(), &["import", "csv", csv.to_str().unwrap()]);
    let m = wait_for(&mut stream, |m| m.removed.contains(&p1)).await;
    assert!(m.cause.contains("changed in the store"), "{}", m.cause);
}
