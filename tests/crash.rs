//! Crash test: the real `arrears` binary is killed with SIGKILL at random moments of
//! `import csv`, `run` and `outbox send` (delivering to a loopback SMTP server), then
//! started again on the same database until each step has completed once. After
//! every trial the database must be intact, hold every item once with at most one
//! open case per item, no message may have reached the SMTP server twice, the audit
//! chain must verify, and the results must equal those of an uninterrupted pass
//! over the same input.
//!
//! The kill moments come from a seeded generator; the seed is printed, and
//! `ARREARS_CRASH_SEED=<seed>` replays a failure. `ARREARS_CRASH_TRIALS` sets how
//! many trials run (default 6).

mod common;

use arrears_store::rusqlite;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::smtp::SmtpSink;

const DAY1: &str = "2026-11-23";
const DAY2: &str = "2026-12-07";

/// splitmix64: small, seedable and good enough to spread kill moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug, Clone)]
enum Step {
    Import(PathBuf),
    Run(&'static str),
    Outbox(&'static str),
}

/// Two business days: each day's ERP extract, the run, the outbox at 10:00 UTC.
fn steps(inputs: &Path) -> Vec<Step> {
    vec![
        Step::Import(inputs.join("day1.csv")),
        Step::Run(DAY1),
        Step::Outbox(DAY1),
        Step::Import(inputs.join("day2.csv")),
        Step::Run(DAY2),
        Step::Outbox(DAY2),
    ]
}

const HEADER: &str = "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,open_amount,currency,country,email\n";

/// A portfolio with e-mail, letter (no address) and call-task customers; day two
/// pays some items in part or in full and brings new ones.
fn write_inputs(dir: &Path) {
    let mut day1 = String::from(HEADER);
    let mut day2 = String::from(HEADER);
    for c in 0..120 {
        let (company, country) = if c % 4 == 3 {
            ("ACME_US", "US")
        } else {
            ("ACME_DE", "DE")
        };
        let email = if c % 10 == 9 {
            String::new()
        } else {
            format!("ap{c}@customer.example")
        };
        for i in 0..3 {
            let due = chrono::NaiveDate::from_ymd_opt(2026, 8, 1).unwrap()
                + chrono::Duration::days(((c * 7 + i * 23) % 110) as i64);
            let doc = due - chrono::Duration::days(30);
            let amount = 100 + (c * 37 + i * 11) % 900;
            let row = |open: u64| {
                format!(
                    "item,i{c}-{i},{company},K{c},Customer {c},INV-{c}-{i},{doc},{due},{amount}.00,{open}.00,EUR,{country},{email}\n"
                )
            };
            day1 += &row(amount);
            let open = match (c + i) % 9 {
                0 => 0,
                1 => amount / 2,
                _ => amount,
            };
            day2 += &row(open);
        }
        if c % 5 == 0 {
            day2 += &format!(
                "item,n{c},{company},K{c},Customer {c},INV-{c}-N,2026-10-01,2026-10-31,450.00,450.00,EUR,{country},{email}\n"
            );
        }
    }
    std::fs::write(dir.join("day1.csv"), day1).unwrap();
    std::fs::write(dir.join("day2.csv"), day2).unwrap();
}

/// A database folder with the shipped rules and a config delivering to `smtp_port`.
fn workspace(smtp_port: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(
        &arrears_test_support::repo_root().join("rules"),
        &dir.path().join("rules"),
    );
    std::fs::write(
        dir.path().join("arrears.yaml"),
        format!(
            "delivery:\n  smtp:\n    host: 127.0.0.1\n    port: {smtp_port}\n    security: none\n    \
             from: {{ address: collections@acme.example }}\n    timeout: 5s\n"
        ),
    )
    .unwrap();
    dir
}

fn command(dir: &Path, step: &Step) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_arrears"));
    c.arg("--config")
        .arg(dir.join("arrears.yaml"))
        .env("ARREARS_DB", dir.join("arrears.db"))
        .env("ARREARS_RULES", dir.join("rules"))
        .env_remove("ARREARS_CONFIG")
        .env_remove("RUST_LOG");
    match step {
        Step::Import(f) => c.args(["import", "csv"]).arg(f),
        Step::Run(d) => c.args(["run", "--as-of", d]),
        Step::Outbox(d) => c.args(["outbox", "send", "--now", &format!("{d}T10:00:00Z")]),
    };
    c
}

/// Runs the step to its end; it must succeed.
fn complete(dir: &Path, step: &Step) -> Duration {
    let started = Instant::now();
    let o = command(dir, step).output().unwrap();
    assert!(
        o.status.success(),
        "{step:?} after a crash: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    started.elapsed()
}

/// Starts the step and SIGKILLs it after `after`; `false` when it ended first
/// (successfully: a step that ends on its own must not fail).
fn kill_after(dir: &Path, step: &Step, after: Duration) -> bool {
    let mut child = command(dir, step)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + after;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            assert!(status.success(), "{step:?}: {err}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // std's kill is SIGKILL on Unix: no handler, no clean-up, as in a power cut.
    child.kill().unwrap();
    child.wait().unwrap();
    true
}

fn rows(db: &rusqlite::Connection, sql: &str) -> Vec<String> {
    let mut st = db.prepare(sql).unwrap();
    let n = st.column_count();
    let out = st
        .query_map([], |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => "∅".to_string(),
                        rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                        rusqlite::types::ValueRef::Real(v) => v.to_string(),
                        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()
                .map(|v| v.join(" | "))
        })
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap();
    out
}

/// What a pass over the input decides, by natural keys (row ids may differ).
fn results(db: &rusqlite::Connection) -> BTreeMap<&'static str, Vec<String>> {
    const CU: &str = "(SELECT company || '/' || code FROM customers WHERE id = x.customer_id)";
    let q = |sql: &str| rows(db, &sql.replace("{CU}", CU));
    BTreeMap::from([
        (
            "items",
            q("SELECT source, external_id, {CU}, status, open_amount, dun_level FROM items x ORDER BY 1, 2"),
        ),
        (
            "cases",
            q("SELECT i.source || '/' || i.external_id, c.status, c.opened_on, c.closed_on, c.close_reason,
                      c.nad, c.priority, c.external_ref, c.activity, c.category, c.subcategory
               FROM cases c JOIN items i ON i.id = c.item_id ORDER BY 1, 3, 2"),
        ),
        (
            "customer states",
            q("SELECT {CU}, strategy, segment, profile, score, collection_group, collector, priority,
                      dunning_level, dunning_on, as_of FROM customer_state x ORDER BY 1"),
        ),
        (
            "worklist",
            q("SELECT {CU}, collection_group, collector, score, priority, nad, items, amount, reason
               FROM worklist x ORDER BY 1"),
        ),
        (
            "escalations",
            // A step whose message is in doubt stays pending: as the messages below.
            q("SELECT {CU}, as_of, ladder, level, level_name, channel, template, amount, items, reason,
                      CASE WHEN EXISTS (SELECT 1 FROM messages m WHERE m.escalation_id = x.id AND m.status = 'unknown')
                           THEN 'sent' ELSE status END
               FROM escalations x ORDER BY 1, 2"),
        ),
        (
            // A message in doubt went out or not: both count as the reference's `sent`.
            "messages",
            q("SELECT {CU}, channel, recipient, subject, CASE status WHEN 'unknown' THEN 'sent' ELSE status END
               FROM messages x ORDER BY 1, 2, 4"),
        ),
        (
            "fees",
            q("SELECT i.external_id, f.ladder, f.level, f.amount, f.charged_on FROM fees f
               JOIN items i ON i.id = f.item_id ORDER BY 1, 2, 3"),
        ),
        (
            "customer events",
            q("SELECT {CU}, on_date, kind, detail FROM customer_events x ORDER BY 1, 2, 3, 4"),
        ),
    ])
}

/// Fees and customer events follow a delivery; one in doubt charged no fee and
/// recorded a "delivery in doubt" event instead of its own.
const AFTER_DELIVERY: [&str; 2] = ["fees", "customer events"];

/// The invariants every database must meet, crashed or not.
fn check_invariants(dir: &Path, delivered: &[String], what: &str) {
    let db = rusqlite::Connection::open(dir.join("arrears.db")).unwrap();
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok", "{what}: integrity");
    let dup = rows(
        &db,
        "SELECT item_id, COUNT(*) FROM cases WHERE status = 'open' GROUP BY item_id HAVING COUNT(*) > 1",
    );
    assert!(dup.is_empty(), "{what}: more than one open case: {dup:?}");
    let dup = rows(
        &db,
        "SELECT source, external_id FROM items GROUP BY 1, 2 HAVING COUNT(*) > 1",
    );
    assert!(dup.is_empty(), "{what}: items twice: {dup:?}");
    let mut seen = BTreeSet::new();
    for id in delivered {
        assert!(seen.insert(id), "{what}: {id} delivered twice");
    }
    // Every message recorded as sent reached the server; everything the server got
    // is recorded as sent, or in doubt when its pass was killed.
    for id in rows(
        &db,
        "SELECT id FROM messages WHERE status = 'sent' AND channel = 'email'",
    ) {
        let mid = format!("<arrears.{id}@acme.example>");
        assert!(
            seen.contains(&mid),
            "{what}: message {id} marked sent but never delivered"
        );
    }
    let accounted: BTreeSet<String> = rows(
        &db,
        "SELECT '<arrears.' || id || '@acme.example>' FROM messages WHERE status IN ('sent', 'unknown')",
    )
    .into_iter()
    .collect();
    for id in &seen {
        assert!(
            accounted.contains(*id),
            "{what}: {id} was delivered but is neither sent nor in doubt"
        );
    }
    let stuck = rows(&db, "SELECT id FROM messages WHERE status = 'sending'");
    assert!(
        stuck.is_empty() || what == "uninterrupted",
        "{what}: left sending after a complete pass: {stuck:?}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_arrears"))
        .args(["audit", "verify"])
        .env("ARREARS_DB", dir.join("arrears.db"))
        .env("ARREARS_RULES", dir.join("rules"))
        .env_remove("ARREARS_CONFIG")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{what}: audit verify: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn sigkill_at_random_moments_loses_and_doubles_nothing() {
    let seed = std::env::var("ARREARS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let trials: usize = std::env::var("ARREARS_CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    eprintln!("crash test: seed {seed} (replay with ARREARS_CRASH_SEED={seed}), {trials} trial(s)");
    let mut rng = Rng(seed);
    let inputs = tempfile::tempdir().unwrap();
    write_inputs(inputs.path());
    let plan = steps(inputs.path());

    // The uninterrupted pass: the results every crashed one must reach, and how long
    // each step takes (the window the kills are spread over).
    let sink = SmtpSink::start(Duration::from_millis(2));
    let reference = workspace(sink.port);
    let took: Vec<Duration> = plan.iter().map(|s| complete(reference.path(), s)).collect();
    eprintln!("crash test: uninterrupted steps took {took:?}");
    check_invariants(reference.path(), &sink.delivered(), "uninterrupted");
    let expected =
        results(&rusqlite::Connection::open(reference.path().join("arrears.db")).unwrap());
    assert!(
        expected["messages"].len() > 50,
        "{:?}",
        expected["messages"]
    );
    assert!(
        expected["escalations"]
            .iter()
            .any(|e| e.contains("call_task")),
        "the input reaches call tasks"
    );

    let started = Instant::now();
    let (mut kills, mut in_doubt) = (0, 0);
    for trial in 0..trials {
        let sink = SmtpSink::start(Duration::from_millis(2));
        let ws = workspace(sink.port);
        let mut log = Vec::new();
        for (step, t) in plan.iter().zip(&took) {
            // Up to three kills per step, each at a random moment of its usual span
            // (a little beyond, so that some land after the last commit).
            let (mut attempts, mut done) = (0, false);
            while !done && attempts < 3 && rng.unit() < 0.8 {
                attempts += 1;
                let after = t.mul_f64(1.2 * rng.unit());
                if kill_after(ws.path(), step, after) {
                    kills += 1;
                    log.push(format!("{step:?} killed after {after:?}"));
                } else {
                    log.push(format!("{step:?} finished before {after:?}"));
                    done = true;
                }
            }
            if !done {
                complete(ws.path(), step);
            }
        }
        let what = format!("seed {seed}, trial {trial}: {log:#?}");
        check_invariants(ws.path(), &sink.delivered(), &what);
        let db = rusqlite::Connection::open(ws.path().join("arrears.db")).unwrap();
        in_doubt += db
            .query_row(
                "SELECT COUNT(*) FROM messages WHERE status = 'unknown'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap();
        let got = results(&db);
        for (k, want) in &expected {
            let have = &got[k];
            if AFTER_DELIVERY.contains(k) {
                let extra: Vec<_> = have
                    .iter()
                    .filter(|r| !want.contains(r) && !r.contains("Reminder delivery in doubt"))
                    .collect();
                assert!(
                    extra.is_empty(),
                    "{what}\n{k} not in the uninterrupted pass: {extra:#?}"
                );
                continue;
            }
            if have != want {
                let only_want: Vec<_> = want.iter().filter(|r| !have.contains(r)).collect();
                let only_have: Vec<_> = have.iter().filter(|r| !want.contains(r)).collect();
                panic!(
                    "{what}\n{k} differ from the uninterrupted pass:\n  expected only: {only_want:#?}\n  found only: {only_have:#?}"
                );
            }
        }
    }
    eprintln!(
        "crash test: {trials} trial(s), {kills} kill(s), {in_doubt} message(s) in doubt, in {:?}",
        started.elapsed()
    );
    assert!(kills > 0, "no step was ever killed: nothing was tested");
}
