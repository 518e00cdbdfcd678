//! Finance KPIs over a demo portfolio after a real run, end to end through the store's
//! scan and the KPI arithmetic. The unit tests of `arrears-store` (`kpi_scan`) and
//! `arrears-kpi` each check one half on small hand-worked ledgers; this pins the whole
//! on a realistic one, so that a change in either half shows here.

use std::path::Path;

use arrears::demo::{generate, DemoOptions};
use arrears::kpi::{compute, KpiOptions};
use arrears::store::{KpiScan, Store};
use chrono::NaiveDate;
use rust_decimal::Decimal;

fn portfolio(dir: &Path, as_of: NaiveDate) -> Store {
    let mut s = Store::open(&dir.join("kpi.db")).unwrap();
    generate(
        &mut s,
        &DemoOptions {
            customers: 300,
            items: 4_000,
            seed: 7,
            as_of,
            history_days: 0,
        },
        None,
    )
    .unwrap();
    let rules = arrears::rules::load(&arrears_test_support::repo_root().join("rules")).unwrap();
    arrears::engine::run::run(&mut s, &rules, as_of, arrears::engine::run::RunMode::Full).unwrap();
    // Some cases closed before the CEI start, so the beginning receivables lose items.
    s.test_connection()
        .execute_batch(
            "UPDATE cases SET status = 'closed', closed_on = '2026-10-01', close_reason = 'cleared' WHERE id % 7 = 0;
             UPDATE items SET status = 'cleared', open_amount = '0' WHERE id IN (SELECT item_id FROM cases WHERE id % 7 = 0);",
        )
        .unwrap();
    s
}

/// The KPIs of the seeded demo portfolio, as JSON, are the ones recorded in
/// `tests/samples/kpi/demo.json` (written by the code before it was split into the
/// store's scan and the `arrears-kpi` crate). `ARREARS_BLESS=1` records them anew.
#[test]
fn demo_portfolio_kpis_are_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let as_of: NaiveDate = "2026-11-23".parse().unwrap();
    let s = portfolio(dir.path(), as_of);
    let k = compute(&s, as_of, &KpiOptions::default()).unwrap();
    assert!(!k.companies.is_empty() && !k.collectors.is_empty());
    let got = serde_json::to_string_pretty(&k).unwrap() + "\n";
    let golden = arrears_test_support::repo_root().join("tests/samples/kpi/demo.json");
    if std::env::var_os("ARREARS_BLESS").is_some() {
        std::fs::write(&golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap();
    assert!(got == want, "KPIs changed; got:\n{got}");
}

/// The exact figures of a pass split `parts` ways, with the split it really made.
fn figures(s: &Store, as_of: NaiveDate, parts: usize) -> (String, usize) {
    let scan = KpiScan {
        parts: Some(parts),
        ..arrears::kpi::scan(as_of, &KpiOptions::default())
    };
    let f = s.kpi_figures(&scan).unwrap();
    // Debug shows each amount's scale too, which `==` on `Decimal` ignores.
    (
        format!("{:?}", (&f.rows, &f.worklist, &f.completions)),
        f.parts,
    )
}

/// Splitting the scans over several read connections changes nothing in the result
/// (and so nothing in the KPIs, which are computed from these figures alone).
#[test]
fn parts_add_up_to_the_same_figures() {
    let dir = tempfile::tempdir().unwrap();
    let as_of: NaiveDate = "2026-11-23".parse().unwrap();
    let s = portfolio(dir.path(), as_of);
    let (one, n) = figures(&s, as_of, 1);
    assert_eq!(n, 1);
    let f = s
        .kpi_figures(&arrears::kpi::scan(as_of, &KpiOptions::default()))
        .unwrap();
    assert!(f
        .rows
        .iter()
        .all(|r| r.beginning_receivables > Decimal::ZERO && r.receivables > Decimal::ZERO));
    assert_eq!(figures(&s, as_of, 2), (one.clone(), 2));
    assert_eq!(figures(&s, as_of, 3), (one, 3));
    // One far-away item id: the per-item flags switch to a map.
    s.test_connection()
        .execute_batch(
            "INSERT INTO items(id, source, external_id, customer_id, document_no, document_date, due_date, original_amount, open_amount, currency)
               SELECT 50000000, 'x', 'far', customer_id, 'FAR', '2026-09-01', '2026-10-01', '77.70', '77.70', currency FROM items LIMIT 1;
             INSERT INTO cases(item_id, customer_id, opened_on, nad, priority)
               SELECT id, customer_id, '2026-10-02', '2026-10-05', 3 FROM items WHERE id = 50000000;",
        )
        .unwrap();
    let (one, _) = figures(&s, as_of, 1);
    assert_eq!(figures(&s, as_of, 3), (one, 3));
}
