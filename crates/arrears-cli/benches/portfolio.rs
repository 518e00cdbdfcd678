//! Portfolio benchmark (not a test): `cargo bench --bench portfolio`.
//!
//! Generates a synthetic portfolio (default 100k customers / 1M open items), then
//! times: ingest, the first full run (back-fill: every case created), a steady-state
//! full run on the next day, an ingest of 1% changed items, and the incremental run
//! that follows. Prints items/s and peak RSS. Sizes: ARREARS_BENCH_CUSTOMERS,
//! ARREARS_BENCH_ITEMS; another rules folder: ARREARS_BENCH_RULES.

use std::time::Instant;

use arrears::domain::{Batch, ItemInput};
use arrears::engine::run::{run, run_resident, RunMode, RunOptions};
use arrears::store::Store;
use chrono::NaiveDate;
use rust_decimal::Decimal;

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn report(what: &str, items: usize, secs: f64) {
    println!(
        "{what:<44} {secs:>8.2} s  {:>12.0} items/s  peak RSS {:>7.0} MiB",
        items as f64 / secs,
        peak_rss_mib()
    );
}

/// This process's user + system CPU seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// A batch halving the open amount of `n` open items (a partial payment each),
/// picked by `round` so that rounds change other items. Read through the store's
/// own load, so it works on either database; the demo's external ids follow from
/// the company and the document number's sequence.
fn one_percent(store: &Store, n: usize, round: i64) -> Batch {
    let inputs = store
        .load_run_input(arrears::store::Scope::All)
        .expect("load");
    let mut items = Vec::with_capacity(n);
    'all: for c in &inputs {
        for i in &c.items {
            if items.len() == n {
                break 'all;
            }
            if !i.open || i.id % 97 != round {
                continue;
            }
            let seq: u64 = i.document_no.rsplit('-').next().unwrap().parse().unwrap();
            items.push(ItemInput {
                source: arrears::demo::SOURCE.into(),
                external_id: format!("{}-{seq:07}", c.customer.company),
                company: c.customer.company.clone(),
                customer: c.customer.code.clone(),
                document_no: i.document_no.clone(),
                document_date: i.document_date,
                due_date: i.due_date,
                original_amount: i.original_amount,
                open_amount: (i.open_amount / Decimal::TWO).round_dp(2),
                currency: i.currency,
                hold: None,
                original_document: None,
            });
        }
    }
    Batch {
        items,
        ..Batch::default()
    }
}

fn main() {
    // ARREARS_BENCH_LOG=debug shows per-query load timings.
    if let Ok(f) = std::env::var("ARREARS_BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(f))
            .with_writer(std::io::stderr)
            .init();
    }
    let customers = env_usize("ARREARS_BENCH_CUSTOMERS", 100_000);
    let items = env_usize("ARREARS_BENCH_ITEMS", 1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    // ARREARS_BENCH_DB=postgres://…: the same on an (empty) PostgreSQL database.
    let mut store = match std::env::var("ARREARS_BENCH_DB") {
        Ok(url) => Store::open_at(&url).expect("open store"),
        Err(_) => Store::open(&dir.path().join("bench.db")).expect("open store"),
    };
    println!("database: {}", store.location());
    let rules_dir = std::env::var_os("ARREARS_BENCH_RULES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| arrears_test_support::repo_root().join("rules"));
    let rules = arrears::rules::load(&rules_dir).expect("rules");
    let as_of: NaiveDate = "2026-11-23".parse().unwrap();
    println!(
        "portfolio benchmark: {customers} customers, {items} items, rules {}",
        rules.hash
    );

    let t = Instant::now();
    let stats = arrears::demo::generate(
        &mut store,
        &arrears::demo::DemoOptions {
            customers,
            items,
            seed: 1,
            as_of,
            history_days: 0,
        },
        None,
    )
    .expect("demo");
    report(
        "ingest (demo generator → store)",
        items,
        t.elapsed().as_secs_f64(),
    );
    let _ = stats;

    let t = Instant::now();
    let s = run(&mut store, &rules, as_of, RunMode::Auto).expect("run");
    report(
        &format!("first full run (back-fill, {} cases)", s.cases_opened),
        items,
        t.elapsed().as_secs_f64(),
    );
    println!("  phases (ms): {:?}", s.phases_ms);

    let next = as_of.succ_opt().unwrap();
    let t = Instant::now();
    let s = run(&mut store, &rules, next, RunMode::Auto).expect("run");
    report(
        &format!("full run, next day ({} cases updated)", s.cases_updated),
        items,
        t.elapsed().as_secs_f64(),
    );
    println!("  phases (ms): {:?}", s.phases_ms);

    // Change 1% of the open items (a partial payment each) through the ingest path.
    let changed = items / 100;
    let batch = one_percent(&store, changed, 0);
    let n = batch.items.len();
    let t = Instant::now();
    store.ingest(&batch).expect("ingest");
    report(
        &format!("ingest of {n} changed items"),
        n,
        t.elapsed().as_secs_f64(),
    );
    let dirty = store.dirty_count().unwrap();
    let t = Instant::now();
    let s = run(&mut store, &rules, next, RunMode::Auto).expect("run");
    assert_eq!(s.mode, "incremental");
    report(
        &format!(
            "incremental run ({dirty} dirty customers, {} open items)",
            s.open_items
        ),
        n,
        t.elapsed().as_secs_f64(),
    );
    println!("  phases (ms): {:?}", s.phases_ms);

    // The daemon's way: the portfolio held in memory, a 1 % change read from the
    // change log. Several rounds, each over other items, for medians and a profile.
    let rounds = env_usize("ARREARS_BENCH_ROUNDS", 5);
    let mut resident = None;
    let t = Instant::now();
    run_resident(
        &mut store,
        &rules,
        next,
        RunMode::Full,
        &RunOptions::default(),
        &mut resident,
    )
    .expect("run");
    report(
        "full run into memory (cold start)",
        items,
        t.elapsed().as_secs_f64(),
    );
    let mut took = Vec::new();
    for round in 1..=rounds {
        let batch = one_percent(&store, changed, round as i64);
        store.ingest(&batch).expect("ingest");
        let cpu = cpu_seconds();
        let t = Instant::now();
        let s = run_resident(
            &mut store,
            &rules,
            next,
            RunMode::Auto,
            &RunOptions::default(),
            &mut resident,
        )
        .expect("run");
        let (wall, cpu) = (t.elapsed().as_secs_f64() * 1e3, (cpu_seconds() - cpu) * 1e3);
        assert_eq!(s.mode, "incremental");
        println!(
            "  resident round {round}: {} items changed, {} customers: {wall:.0} ms (CPU {cpu:.0} ms), phases (ms) {:?}",
            batch.items.len(),
            s.customers_evaluated,
            s.phases_ms
        );
        took.push(wall);
    }
    took.sort_by(f64::total_cmp);
    if let Some(m) = took.get(took.len() / 2) {
        println!("1 % changed, resident portfolio: median {m:.0} ms over {rounds} rounds");
    }
    let size = std::fs::metadata(dir.path().join("bench.db")) // SQLite only
        .map(|m| m.len())
        .unwrap_or(0);
    println!("database size {:.0} MiB", size as f64 / 1048576.0);
}
