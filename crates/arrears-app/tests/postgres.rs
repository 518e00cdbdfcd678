//! The same portfolio on SQLite and on PostgreSQL decides the same: a full run,
//! the judging of promises, payments arriving and an incremental run after them
//! leave the same cases, worklists, states and escalation steps on both, to the
//! cent and the day. The PostgreSQL server is a throwaway cluster on 127.0.0.1.

use arrears_app::run::{run, RunMode, Summary};
use arrears_core::domain::{Batch, PaymentInput};
use arrears_core::money::Currency;
use arrears_store::pg::testing::PgCluster;
use arrears_store::{Scope, Store, WorklistQuery, WorklistScope};
use chrono::NaiveDate;

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// What a run decided, without what differs by nature (ids of the run, time).
fn decided(s: &Summary) -> String {
    let mut s = s.clone();
    s.run_id = 0;
    s.duration_ms = 0;
    s.phases_ms.clear();
    serde_json::to_string_pretty(&s).unwrap()
}

/// Everything a run leaves in the store that the next one and the API read.
fn state(s: &Store) -> String {
    let inputs = s.load_run_input(Scope::All).unwrap();
    let (worklist, total) = s
        .worklist_page(&WorklistQuery {
            scope: WorklistScope::All,
            limit: 100_000,
            ..WorklistQuery::default()
        })
        .unwrap();
    let steps = s.steps_to_send().unwrap();
    format!(
        "{inputs:#?}\n{total} entries\n{worklist:#?}\n{steps:#?}\n{:#?}",
        s.portfolio().unwrap()
    )
}

/// Equal, or the first lines that differ (the whole texts are long).
fn same(pg: &str, lite: &str, what: &str) {
    if pg == lite {
        return;
    }
    let (a, b): (Vec<&str>, Vec<&str>) = (pg.lines().collect(), lite.lines().collect());
    let at = a
        .iter()
        .zip(&b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let from = at.saturating_sub(15);
    panic!(
        "{what}: PostgreSQL and SQLite differ at line {at}\n--- PostgreSQL\n{}\n--- SQLite\n{}",
        a[from..(at + 5).min(a.len())].join("\n"),
        b[from..(at + 5).min(b.len())].join("\n")
    );
}

#[test]
fn a_portfolio_decides_the_same_on_sqlite_and_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let mut lite = Store::open(&dir.path().join("a.db")).unwrap();
    let mut pg = Store::open_postgres(&PgCluster::shared().fresh_database())
        .unwrap_or_else(|e| panic!("{e}"));
    let rules = arrears_test_support::shipped_rules();
    let as_of = day("2026-11-23");
    let mut sums = Vec::new();
    for s in [&mut lite, &mut pg] {
        arrears_demo::generate(
            s,
            &arrears_demo::DemoOptions {
                customers: 150,
                items: 1500,
                seed: 11,
                as_of,
                history_days: 0,
            },
            None,
        )
        .unwrap();
        sums.push(run(s, &rules, as_of, RunMode::Full).unwrap());
    }
    assert!(sums[0].cases_opened > 500, "{}", sums[0].cases_opened);
    assert!(sums[0].escalations > 10, "{}", sums[0].escalations);
    same(&decided(&sums[1]), &decided(&sums[0]), "the full run");
    same(&state(&pg), &state(&lite), "after the full run");

    // Payments: a few items paid in full, one in part with cents that a float
    // would not keep; then the next day's run, incremental.
    let open: Vec<(String, String, String, String, String, String)> = lite
        .test_connection()
        .prepare(
            "SELECT i.source, i.external_id, c.company, c.code, i.open_amount, i.currency
             FROM items i JOIN customers c ON c.id = i.customer_id
             WHERE i.status = 'open' ORDER BY i.id",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .step_by(97)
        .take(6)
        .collect();
    assert_eq!(open.len(), 6);
    let payments: Vec<PaymentInput> = open
        .iter()
        .enumerate()
        .map(
            |(n, (source, ext, company, customer, amount, currency))| PaymentInput {
                source: source.clone(),
                external_id: format!("pay-{n}"),
                company: company.clone(),
                customer: customer.clone(),
                amount: if n == 0 {
                    "10.01".parse().unwrap()
                } else {
                    amount.parse().unwrap()
                },
                currency: Currency::parse(currency).unwrap(),
                value_date: as_of,
                reference: format!("payment {n}"),
                item_ref: Some(ext.clone()),
            },
        )
        .collect();
    // The same day: a new day would age every item and run in full.
    let next = as_of;
    let mut sums = Vec::new();
    for s in [&mut lite, &mut pg] {
        s.ingest(&Batch {
            payments: payments.clone(),
            ..Batch::default()
        })
        .unwrap();
        sums.push(run(s, &rules, next, RunMode::Auto).unwrap());
    }
    assert_eq!(sums[0].mode, "incremental");
    same(
        &decided(&sums[1]),
        &decided(&sums[0]),
        "the incremental run",
    );
    same(&state(&pg), &state(&lite), "after the payments");
}

/// An embedded store copied into PostgreSQL (`arrears migrate`) holds the same
/// portfolio, the same audit chain, and goes on as the original does: the next
/// run on each, after the same payment, decides the same (new ids follow the
/// copied ones, the change log continues where it was).
#[test]
fn a_copied_store_goes_on_as_the_original() {
    let dir = tempfile::tempdir().unwrap();
    // One clock for both: the audit records hash their time.
    let clock = std::sync::Arc::new(arrears_core::clock::FixedClock(
        "2026-11-23T09:30:00Z".parse().unwrap(),
    ));
    let mut lite = Store::open(&dir.path().join("a.db"))
        .unwrap()
        .with_clock(clock.clone());
    let rules = arrears_test_support::shipped_rules();
    let as_of = day("2026-11-23");
    arrears_demo::generate(
        &mut lite,
        &arrears_demo::DemoOptions {
            customers: 80,
            items: 800,
            seed: 5,
            as_of,
            history_days: 0,
        },
        None,
    )
    .unwrap();
    run(&mut lite, &rules, as_of, RunMode::Full).unwrap();
    lite.append_audit(
        "alice",
        "note",
        "case 1",
        &serde_json::json!(null),
        &serde_json::json!("Müller 10.50 €"),
    )
    .unwrap();
    let mut pg = Store::open_postgres(&PgCluster::shared().fresh_database())
        .unwrap_or_else(|e| panic!("{e}"))
        .with_clock(clock);
    let seen = std::cell::RefCell::new(Vec::new());
    let report = arrears_store::pg::copy::copy(&lite, &pg, &|t, n| {
        seen.borrow_mut().push((t.to_string(), n))
    })
    .unwrap();
    assert_eq!(report.tables, seen.into_inner());
    assert!(report.rows > 2000, "{}", report.rows);
    assert_eq!(report.audit.problem, None);
    assert_eq!(report.audit, lite.verify_audit(None).unwrap());
    assert_eq!(
        pg.audit_records(0, 10_000).unwrap(),
        lite.audit_records(0, 10_000).unwrap()
    );
    same(&state(&pg), &state(&lite), "the copy");
    assert_eq!(
        pg.changes_pending().unwrap(),
        lite.changes_pending().unwrap()
    );

    // A second copy into the same database is refused, writing nothing.
    let e = arrears_store::pg::copy::copy(&lite, &pg, &|_, _| {}).unwrap_err();
    assert!(e.to_string().contains("not empty"), "{e}");

    let next = day("2026-11-24");
    let mut sums = Vec::new();
    for s in [&mut lite, &mut pg] {
        s.append_audit(
            "bob",
            "note",
            "case 2",
            &serde_json::json!(1),
            &serde_json::json!(2),
        )
        .unwrap();
        sums.push(run(s, &rules, next, RunMode::Full).unwrap());
    }
    same(&decided(&sums[1]), &decided(&sums[0]), "the next run");
    same(&state(&pg), &state(&lite), "the next run");
    assert_eq!(
        pg.audit_records(0, 10_000).unwrap(),
        lite.audit_records(0, 10_000).unwrap()
    );
}
