//! Writers wait for each other (issue 10): `arrears import csv` processes against the
//! database a serving daemon writes to, while API clients add notes and trigger runs.
//! No import may fail with "database is locked", and no acknowledged write may be lost.

mod common;

use arrears_store::rusqlite;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrears::server::pb;
use common::*;

const IMPORTS: usize = 200;
const PARALLEL: usize = 6;
const ROWS: usize = 5;
/// Past this, the test is stuck rather than slow: the writers stop and it fails.
const BUDGET: Duration = Duration::from_secs(240);

fn write_csv(dir: &Path, n: usize) -> PathBuf {
    let mut csv = String::from(
        "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,open_amount,currency,item_ref,original_document\n",
    );
    for j in 0..ROWS {
        csv.push_str(&format!(
            "item,conc-{n}-{j},ACME_DE,CONC{n},Concurrent {n} GmbH,CONC-{n}-{j},2026-09-01,2026-10-01,{a}.00,{a}.00,EUR,,\n",
            a = 100 + j
        ));
    }
    let f = dir.join(format!("import-{n}.csv"));
    std::fs::write(&f, csv).unwrap();
    f
}

/// Runs the imports, `PARALLEL` processes at a time; each one's exit and duration.
fn run_imports(dir: PathBuf) -> Vec<(usize, std::process::Output, Duration)> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..PARALLEL)
        .map(|_| {
            let (next, dir) = (next.clone(), dir.clone());
            std::thread::spawn(move || {
                let mut done = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= IMPORTS {
                        return done;
                    }
                    let started = Instant::now();
                    let o = Command::new(env!("CARGO_BIN_EXE_arrears"))
                        .args(["import", "csv"])
                        .arg(dir.join(format!("import-{n}.csv")))
                        .env("ARREARS_DB", dir.join("arrears.db"))
                        .env("ARREARS_RULES", dir.join("rules"))
                        .env_remove("ARREARS_CONFIG")
                        .env("RUST_LOG", "error")
                        .output()
                        .unwrap();
                    done.push((n, o, started.elapsed()));
                }
            })
        })
        .collect();
    workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_from_other_processes_wait_for_a_writing_daemon_and_nothing_is_lost() {
    let dir = Daemon::prepare();
    arrears(
        dir.path(),
        &[
            "demo",
            "--customers",
            "200",
            "--items",
            "2000",
            "--as-of",
            AS_OF,
        ],
    );
    arrears(dir.path(), &["run", "--as-of", AS_OF]);
    for n in 0..IMPORTS {
        write_csv(dir.path(), n);
    }
    let cases: Vec<i64> = {
        let c = rusqlite::Connection::open(dir.path().join("arrears.db")).unwrap();
        let mut st = c
            .prepare("SELECT id FROM cases WHERE status = 'open' ORDER BY id LIMIT 20")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert!(cases.len() >= 10, "the demo opens cases: {cases:?}");
    let d = Daemon::start(dir);
    let ch = d.channel().await;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    // Notes, one after another, each with a text of its own: the acknowledged ones
    // must all be in the database at the end.
    let notes = {
        let (stop, ch, cases) = (stop.clone(), ch.clone(), cases.clone());
        tokio::spawn(async move {
            let mut c = pb::cases_client::CasesClient::with_interceptor(ch, with_token(SUP));
            let (mut ok, mut failed) = (Vec::new(), Vec::new());
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) && started.elapsed() < BUDGET {
                let text = format!("concurrency note {i}");
                let case_id = cases[i % cases.len()];
                match c
                    .add_note(pb::AddNoteRequest {
                        case_id,
                        text: text.clone(),
                        on: String::new(),
                    })
                    .await
                {
                    Ok(_) => ok.push(text),
                    Err(e) => failed.push(format!("{text}: {e}")),
                }
                i += 1;
            }
            (ok, failed)
        })
    };
    // Runs on demand, full ones among them: they hold the write lock the longest.
    let runs = {
        let (stop, ch) = (stop.clone(), ch.clone());
        tokio::spawn(async move {
            let mut a = pb::admin_client::AdminClient::with_interceptor(ch, with_token(SUP));
            let (mut ok, mut failed) = (0, Vec::new());
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) && started.elapsed() < BUDGET {
                match a
                    .trigger_run(pb::TriggerRunRequest {
                        full: i % 3 == 0,
                        as_of: String::new(),
                    })
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
                i += 1;
            }
            (ok, failed)
        })
    };

    let path = d.dir.path().to_path_buf();
    let imports = tokio::task::spawn_blocking(move || run_imports(path))
        .await
        .unwrap();
    let import_wall = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (noted, note_errors) = notes.await.unwrap();
    let (ran, run_errors) = runs.await.unwrap();

    let failures: Vec<String> = imports
        .iter()
        .filter(|(_, o, _)| !o.status.success())
        .map(|(n, o, _)| format!("import {n}: {}", String::from_utf8_lossy(&o.stderr)))
        .collect();
    let mut took: Vec<Duration> = imports.iter().map(|(_, _, t)| *t).collect();
    took.sort();
    let median = took[took.len() / 2];
    let slowest = took[took.len() - 1];
    eprintln!(
        "{IMPORTS} imports ({PARALLEL} at a time) in {import_wall:.1?}: median {median:.1?}, \
         slowest {slowest:.1?}; meanwhile {} notes and {ran} runs",
        noted.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {IMPORTS} imports failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(imports.len(), IMPORTS);
    assert!(note_errors.is_empty(), "notes refused: {note_errors:?}");
    assert!(run_errors.is_empty(), "runs failed: {run_errors:?}");
    assert!(
        import_wall < BUDGET,
        "the writers ran out of time: {import_wall:?}"
    );
    // The imports take about a second on a quiet machine; the point is that the
    // daemon's own writes went on between them, not how many fit in.
    assert!(
        noted.len() >= 3 && ran >= 2,
        "the daemon kept writing throughout: {} notes, {ran} runs",
        noted.len()
    );

    let db = rusqlite::Connection::open(d.path("arrears.db")).unwrap();
    let items: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM items WHERE external_id LIKE 'conc-%' AND status = 'open'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        items,
        (IMPORTS * ROWS) as i64,
        "every imported row is there"
    );
    let stored: std::collections::HashSet<String> = db
        .prepare("SELECT detail FROM case_events WHERE kind = 'note' AND detail LIKE 'concurrency note %'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let lost: Vec<&String> = noted.iter().filter(|t| !stored.contains(*t)).collect();
    assert!(lost.is_empty(), "acknowledged notes missing: {lost:?}");
}
