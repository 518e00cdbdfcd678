//! Finance KPIs over a demo portfolio after a real run, end to end through the store's
//! scan and the KPI arithmetic. The unit tests of `arrears-store` (`kpi_scan`) and
//! `arrears-kpi` each check one half on small hand-worked ledgers; this pins the whole
//! on a realistic one, so that a change in either half shows here.

use std::path::Path;

use arrears::demo::{generate, DemoOptions};
use arrears::kpi::{compute, KpiOptions};
use arrears::store::Store;
use chrono::NaiveDate;

fn portfolio(dir: &Path, as_of: NaiveDate) -> Store {
    let mut s = Store::open(&dir.join("kpi.db")).unwrap();
    generate(
        &mut s,
        &DemoOptions {
            customers: 300,
            items: 4_000,
            seed: 7,
            as_of,
        },
        None,
    )
    .unwrap();
    let rules =
        arrears::rules::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")).unwrap();
    arrears::engine::run::run(&mut s, &rules, as_of, arrears::engine::run::RunMode::Full)
        .unwrap();
    // Some cases closed before the CEI start, so the beginning receivables lose items.
    s.conn()
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
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/samples/kpi/demo.json");
    if std::env::var_os("ARREARS_BLESS").is_some() {
        std::fs::write(&golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap();
    assert!(got == want, "KPIs changed; got:\n{got}");
}
