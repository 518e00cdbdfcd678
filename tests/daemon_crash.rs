//! Crash test of the daemon: the real `arrears serve` is killed with SIGKILL at
//! seeded random moments — during its start-up run, during the run an import from
//! another process sets off, during the outbox pass that follows, with a message in
//! flight — and started again on the same database each time, while a sequence of
//! imports goes on. At the end its database must hold the same cases, worklists,
//! customer states, escalation steps and messages as that of a daemon that was never
//! killed and saw the same imports, and meet the invariants every database must meet.
//!
//! Each import is applied once the daemon has caught up with the one before (in the
//! reference and in the trials alike), so that both see the same store at every run
//! and any difference is the crash's doing, not a race between two imports.
//!
//! Delivery is off (the shared harness configures no channel): e-mails wait in the
//! outbox and letters are only recorded, so no message is ever handed to a server
//! and none may end up in doubt.
//!
//! The seed is printed; `ARREARS_DAEMON_CRASH_SEED=<seed>` replays a failure and
//! `ARREARS_DAEMON_CRASH_TRIALS` sets how many trials run (default 3).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use arrears_store::rusqlite;
use chrono::NaiveDate;
use common::Daemon;

/// splitmix64: small, seedable and good enough to spread kill moments and inputs.
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
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const CUSTOMERS: usize = 300;
const HEADER: &str = "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,open_amount,currency,country,email,item_ref,block_reason,block_until\n";

/// One open item as the ERP sees it; every import repeats the whole row.
struct Item {
    ext: String,
    customer: usize,
    doc_date: NaiveDate,
    due: NaiveDate,
    cents: u64,
    open: u64,
    block: Option<NaiveDate>,
}

fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// A quarter of the customers are American (the jump-to-age ladder), one in ten has
/// no e-mail address (letters instead), so every channel has work.
fn company(c: usize) -> (&'static str, &'static str) {
    if c % 4 == 3 {
        ("ACME_US", "US")
    } else {
        ("ACME_DE", "DE")
    }
}

fn item_row(it: &Item) -> String {
    let c = it.customer;
    let (company, country) = company(c);
    let email = if c % 10 == 9 {
        String::new()
    } else {
        format!("ap{c}@customer.example")
    };
    let (reason, until) = match it.block {
        Some(d) => ("disputed by phone".to_string(), d.to_string()),
        None => (String::new(), String::new()),
    };
    format!(
        "item,{ext},{company},K{c:03},Customer {c},INV-{ext},{doc},{due},{amount},{open},EUR,{country},{email},,{reason},{until}\n",
        ext = it.ext,
        doc = it.doc_date,
        due = it.due,
        amount = money(it.cents),
        open = money(it.open),
    )
}

fn payment_row(id: &str, it: &Item, paid: u64, on: NaiveDate) -> String {
    let (company, _) = company(it.customer);
    format!(
        "payment,{id},{company},K{c:03},,PAY-{id},{on},,{paid},,EUR,,,{ext},,\n",
        c = it.customer,
        paid = money(paid),
        ext = it.ext,
    )
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn invoice(rng: &mut Rng, ext: String, customer: usize, first_due: &str, days: u64) -> Item {
    let due = day(first_due) + chrono::Duration::days(rng.below(days) as i64);
    let cents = 5_000 + rng.below(490_000);
    Item {
        ext,
        customer,
        doc_date: due - chrono::Duration::days(30),
        due,
        cents,
        open: cents,
        block: None,
    }
}

/// The starting portfolio and three change batches; the files and how many items
/// there are in the end. Made from a fixed seed: every run of the test sees the
/// same inputs, so only the kill moments vary with the seed.
fn write_inputs(dir: &Path) -> (Vec<PathBuf>, usize) {
    let mut rng = Rng(0x5EED_0001);
    // One customer in three owes nothing due before December at the start: the
    // imports make some of them overdue, so that the runs after an import decide
    // escalation steps too (a customer gets one step a day, all the others got
    // theirs from the start-up run).
    let current = |c: usize| c % 3 == 1;
    let mut items: Vec<Item> = Vec::new();
    for c in 0..CUSTOMERS {
        for i in 0..6 + rng.below(7) {
            let ext = format!("i{c}-{i}");
            items.push(if current(c) {
                invoice(&mut rng, ext, c, "2026-12-05", 70)
            } else {
                invoice(&mut rng, ext, c, "2026-06-15", 200)
            });
        }
    }
    let mut files = Vec::new();
    let mut write = |name: &str, body: String| {
        let p = dir.join(name);
        std::fs::write(&p, format!("{HEADER}{body}")).unwrap();
        files.push(p);
    };
    write("initial.csv", items.iter().map(item_row).collect());

    // Batch 1: payments in full and in part all over the portfolio.
    let mut b = String::new();
    for (n, it) in items.iter_mut().enumerate() {
        let paid = match rng.below(100) {
            0..=11 => it.open,
            12..=21 => it.open / 2,
            _ => continue,
        };
        it.open -= paid;
        b += &item_row(it);
        b += &payment_row(&format!("p1-{n}"), it, paid, day("2026-11-20"));
    }
    write("batch1.csv", b);

    // Batch 2: dunning blocks on a few items; overdue invoices for a fifth of the
    // customers and for half of those who were up to date; new customers.
    let mut b = String::new();
    for it in items.iter_mut() {
        if it.open > 0 && rng.below(40) == 0 {
            it.block = Some(day("2026-12-31"));
            b += &item_row(it);
        }
    }
    let mut late = BTreeSet::new();
    for c in 0..CUSTOMERS {
        let n = if current(c) && rng.below(2) == 0 {
            late.insert(c);
            1 + rng.below(2)
        } else if rng.below(5) == 0 {
            1 + rng.below(3)
        } else {
            0
        };
        for k in 0..n {
            let it = invoice(&mut rng, format!("n{c}-{k}"), c, "2026-09-01", 75);
            b += &item_row(&it);
            items.push(it);
        }
    }
    for c in CUSTOMERS..CUSTOMERS + 30 {
        for k in 0..3 + rng.below(4) {
            let it = invoice(&mut rng, format!("i{c}-{k}"), c, "2026-07-01", 130);
            b += &item_row(&it);
            items.push(it);
        }
    }
    write("batch2.csv", b);

    // Batch 3: some customers settle everything (their cases close, they leave the
    // worklists), others pay a part of an invoice, and a few more of those who were
    // up to date fall behind.
    let mut b = String::new();
    let settling: BTreeSet<usize> = (0..CUSTOMERS).filter(|_| rng.below(16) == 0).collect();
    for (n, it) in items.iter_mut().enumerate() {
        let paid = if settling.contains(&it.customer) {
            it.open
        } else if rng.below(12) == 0 {
            it.open / 3
        } else {
            0
        };
        if paid == 0 {
            continue;
        }
        it.open -= paid;
        b += &item_row(it);
        b += &payment_row(&format!("p3-{n}"), it, paid, day("2026-11-22"));
    }
    for c in (0..CUSTOMERS).filter(|&c| current(c) && !late.contains(&c)) {
        if rng.below(3) == 0 {
            let it = invoice(&mut rng, format!("m{c}"), c, "2026-08-01", 100);
            b += &item_row(&it);
            items.push(it);
        }
    }
    write("batch3.csv", b);
    (files, items.len())
}

/// A folder with the shipped rules and the daemon config of the shared harness, and
/// the starting portfolio already imported (as a fresh installation would have it).
fn workspace(initial: &Path) -> tempfile::TempDir {
    let dir = Daemon::prepare();
    import(dir.path(), initial);
    dir
}

fn import(dir: &Path, file: &Path) {
    common::arrears(dir, &["import", "csv", file.to_str().unwrap()]);
}

/// How far the daemon has got, read from its database beside it.
#[derive(Debug, Clone, PartialEq)]
struct Progress {
    runs: i64,
    /// Customers changed since the store-change counter the latest run loaded.
    changes_pending: bool,
    /// Escalation steps no outbox pass has composed yet.
    steps_waiting: i64,
    /// Messages due now (letters the outbox sends even without a delivery channel,
    /// anything taken but not recorded).
    messages_due: i64,
    /// Messages taken for delivery and not yet recorded.
    sending: i64,
    // Move with any outbox work: unchanged, the daemon is idle.
    messages: i64,
    sent: i64,
}

impl Progress {
    fn run_done(&self, min_runs: i64) -> bool {
        self.runs >= min_runs && !self.changes_pending
    }

    fn caught_up(&self, min_runs: i64) -> bool {
        self.run_done(min_runs) && self.steps_waiting == 0 && self.messages_due == 0
    }
}

/// A read-only connection to a daemon's database. Read-only, so that a probe after a
/// kill neither checkpoints nor removes the write-ahead log: the next daemon finds
/// the file exactly as the dead one left it.
struct Probe(rusqlite::Connection);

impl Probe {
    fn open(db: &Path) -> Probe {
        let c =
            rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        Probe(c)
    }

    fn progress(&self) -> Progress {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        self.0
            .query_row(
                "SELECT (SELECT COUNT(*) FROM runs),
                        (SELECT seq FROM sqlite_sequence WHERE name = 'changes')
                            > IFNULL((SELECT changes_seen FROM runs ORDER BY id DESC LIMIT 1), -1),
                        (SELECT COUNT(*) FROM escalations e WHERE e.status = 'pending' AND NOT EXISTS
                            (SELECT 1 FROM messages m WHERE m.escalation_id = e.id AND m.replaces IS NULL)),
                        (SELECT COUNT(*) FROM messages WHERE status = 'sending'
                            OR (status IN ('queued', 'deferred') AND next_attempt <= ?1)),
                        (SELECT COUNT(*) FROM messages WHERE status = 'sending'),
                        (SELECT COUNT(*) FROM messages),
                        (SELECT COUNT(*) FROM messages WHERE status = 'sent')",
                [now],
                |r| {
                    Ok(Progress {
                        runs: r.get(0)?,
                        changes_pending: r.get(1)?,
                        steps_waiting: r.get(2)?,
                        messages_due: r.get(3)?,
                        sending: r.get(4)?,
                        messages: r.get(5)?,
                        sent: r.get(6)?,
                    })
                },
            )
            .unwrap()
    }
}

fn progress(db: &Path) -> Progress {
    Probe::open(db).progress()
}

/// Whether the process has ended (a zombie not yet reaped counts as ended).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// When a phase's work was done, counted from its start (the daemon's start, or the
/// end of the import that began it).
#[derive(Debug, Clone, Copy)]
struct Spans {
    /// The run for the phase's changes had committed.
    run: Duration,
    /// The outbox had nothing left to do either, nor had another run.
    all: Duration,
}

/// Waits until the daemon has run at least `min_runs` runs in all, has loaded every
/// change in the store and its outbox has nothing left to do now, and that has held
/// for a few store-poll intervals.
fn catch_up(d: &Daemon, min_runs: i64, since: Instant, what: &str) -> Spans {
    let probe = Probe::open(&d.path("arrears.db"));
    // A hang guard only (a slow machine takes seconds here), not a speed assertion.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut run = None;
    let mut first: Option<(Instant, Progress)> = None;
    loop {
        assert!(
            !exited(d.pid()),
            "{what}: the daemon ended on its own; its log:\n{}",
            d.log()
        );
        let p = probe.progress();
        if run.is_none() && p.run_done(min_runs) {
            run = Some(since.elapsed());
        }
        if p.caught_up(min_runs) {
            match &first {
                // Over three store-poll intervals with nothing new: no run or pass is
                // on its way.
                Some((at, seen)) if *seen == p => {
                    if at.elapsed() >= Duration::from_millis(350) {
                        let all = at.duration_since(since);
                        return Spans {
                            run: run.unwrap_or(all).min(all),
                            all,
                        };
                    }
                }
                _ => first = Some((Instant::now(), p)),
            }
        } else {
            first = None;
            assert!(
                Instant::now() < deadline,
                "{what}: the daemon did not catch up in 180 s: {p:?}; its log:\n{}",
                d.log()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What a kill aims at. Runs are aimed at by time (a random moment of the span the
/// reference's run took); the outbox pass, which starts only once its run has
/// committed, by watching the database for the work it is given, and the delivery
/// of one message by watching for a message taken (`sending`).
#[derive(Debug, Clone, Copy)]
enum Aim {
    Run,
    Outbox,
    Delivery,
    Anytime,
}

/// Sleeps until the moment a kill aimed at `aim` is due, and says when that was.
fn wait_to_kill(
    d: &Daemon,
    aim: Aim,
    spans: Spans,
    min_runs: i64,
    since: Instant,
    rng: &mut Rng,
) -> String {
    let until = |after: Duration| std::thread::sleep(after.saturating_sub(since.elapsed()));
    match aim {
        Aim::Run => {
            let after = spans.run.mul_f64(rng.unit());
            until(after);
            format!("{after:?} in")
        }
        Aim::Anytime => {
            // A little beyond the span, so that some land once all is done.
            let after = spans.all.mul_f64(1.2 * rng.unit());
            until(after);
            format!("{after:?} in")
        }
        Aim::Outbox | Aim::Delivery => {
            let probe = Probe::open(&d.path("arrears.db"));
            let deadline = Instant::now() + Duration::from_secs(180);
            loop {
                let p = probe.progress();
                let due = match aim {
                    Aim::Delivery => p.sending > 0,
                    _ => p.run_done(min_runs) && (p.steps_waiting > 0 || p.messages_due > 0),
                };
                if due {
                    break;
                }
                // This phase's runs decided nothing to send.
                if p.caught_up(min_runs) {
                    return format!("{:?} in, the outbox had no work", since.elapsed());
                }
                assert!(
                    Instant::now() < deadline && !exited(d.pid()),
                    "waiting for outbox work: {p:?}; the daemon's log:\n{}",
                    d.log()
                );
                std::thread::sleep(Duration::from_micros(200));
            }
            let seen = since.elapsed();
            if let Aim::Delivery = aim {
                return format!("{seen:?} in, with a message taken");
            }
            let pass = spans
                .all
                .saturating_sub(spans.run)
                .max(Duration::from_millis(5));
            let extra = pass.mul_f64(rng.unit());
            std::thread::sleep(extra);
            format!("{seen:?} in, when the outbox had work, + {extra:?}")
        }
    }
}

/// SIGKILL: no handler, no clean-up, as in a power cut. Hands back the folder for the
/// next start and the daemon's log up to its death.
fn sigkill(mut d: Daemon) -> (tempfile::TempDir, String) {
    let pid = d.pid().to_string();
    let st = Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    assert!(st.success(), "kill -KILL {pid}");
    // The daemon owns its folder and removes it when dropped; a stand-in takes its
    // place so the database survives. Dropping reaps the dead child.
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    let log = d.log();
    drop(d);
    (dir, log)
}

/// SIGTERM and the clean exit it must lead to.
fn stop(d: &mut Daemon, what: &str) {
    let (status, lines) = d.terminate();
    assert!(
        status.success() && lines.iter().any(|l| l == "shutdown complete"),
        "{what}: {status:?} {lines:?}; its log:\n{}",
        d.log()
    );
}

/// Every row of `sql` as one line, its columns joined by " | " (NULL as ∅).
fn rows(db: &rusqlite::Connection, sql: &str) -> Vec<String> {
    use rusqlite::types::Value;
    let mut st = db.prepare(sql).unwrap();
    let width = st.column_count();
    let mut found = st.query([]).unwrap();
    let mut out = Vec::new();
    while let Some(r) = found.next().unwrap() {
        let columns: Vec<String> = (0..width)
            .map(|i| match r.get::<_, Value>(i).unwrap() {
                Value::Null => "∅".into(),
                Value::Integer(v) => v.to_string(),
                Value::Real(v) => v.to_string(),
                Value::Text(t) => t,
                Value::Blob(b) => String::from_utf8_lossy(&b).into_owned(),
            })
            .collect();
        out.push(columns.join(" | "));
    }
    out
}

/// The daemon's decisions by business keys: row ids depend on what was written and
/// rolled back before, so they are replaced by customer codes and external ids.
fn results(db: &rusqlite::Connection) -> BTreeMap<&'static str, Vec<String>> {
    const CU: &str = "(SELECT company || '/' || code FROM customers WHERE id = x.customer_id)";
    // A step names its items by row id and the level each is reminded at.
    const STEP_ITEMS: &str = "(SELECT group_concat(v, ' ') FROM (
            SELECT i.external_id || '@' || json_extract(j.value, '$[1]') AS v
            FROM json_each(x.items) j JOIN items i ON i.id = json_extract(j.value, '$[0]')
            ORDER BY 1))";
    // A delivery is dated by the clock, not the business date: a trial after midnight
    // (UTC) would otherwise differ from a reference before it.
    let day = |column: &str| {
        format!(
            "CASE {column} WHEN '{}' THEN {column} ELSE 'the day sent' END",
            common::AS_OF
        )
    };
    let q = |sql: &str| {
        let sql = sql
            .replace("{CU}", CU)
            .replace("{STEP_ITEMS}", STEP_ITEMS)
            .replace("{DAY(f.charged_on)}", &day("f.charged_on"))
            .replace("{DAY(on_date)}", &day("on_date"));
        rows(db, &sql)
    };
    BTreeMap::from([
        (
            "items",
            q("SELECT source, external_id, {CU}, status, open_amount, hold_reason, hold_until
               FROM items x ORDER BY 1, 2"),
        ),
        (
            "cases",
            q("SELECT i.external_id, c.status, c.opened_on, c.closed_on, c.close_reason, c.nad,
                      c.priority, c.assigned_to, c.activity, c.category, c.subcategory
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
            q("SELECT {CU}, as_of, ladder, level, level_name, channel, template, copy_manager, amount,
                      {STEP_ITEMS}, reason, status
               FROM escalations x ORDER BY 1, 2"),
        ),
        (
            "messages",
            q("SELECT {CU}, (SELECT as_of FROM escalations WHERE id = x.escalation_id), channel,
                      template, language, recipient, cc, subject, status
               FROM messages x ORDER BY 1, 2, 3, 8"),
        ),
        (
            "fees",
            q("SELECT {CU}, x.external_id, f.ladder, f.level, f.amount, {DAY(f.charged_on)}
               FROM fees f JOIN items x ON x.id = f.item_id ORDER BY 1, 2, 3, 4"),
        ),
        (
            // The details name case and message ids.
            "customer events",
            q("SELECT {CU}, {DAY(on_date)}, kind FROM customer_events x ORDER BY 1, 2, 3"),
        ),
    ])
}

/// What follows from a message's delivery: for a customer with a message in doubt
/// these differ as a consequence, and are reported with the message instead.
const DELIVERY: [&str; 3] = ["messages", "fees", "customer events"];

fn check_invariants(dir: &Path, items: usize, what: &str) {
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
    let n: i64 = db
        .query_row("SELECT COUNT(*) FROM items", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n as usize, items, "{what}: every item once");
    let dup = rows(
        &db,
        "SELECT escalation_id FROM messages WHERE replaces IS NULL AND escalation_id IS NOT NULL
         GROUP BY 1 HAVING COUNT(*) > 1",
    );
    assert!(dup.is_empty(), "{what}: a step composed twice: {dup:?}");
    // A clean stop finishes the message in flight; only a kill leaves one `sending`,
    // and the next start settles it.
    let stuck = rows(&db, "SELECT id FROM messages WHERE status = 'sending'");
    assert!(stuck.is_empty(), "{what}: left sending: {stuck:?}");
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

/// The rows on one side only, a screenful of each.
fn difference(want: &[String], have: &[String]) -> String {
    let only_want: Vec<_> = want.iter().filter(|r| !have.contains(r)).collect();
    let only_have: Vec<_> = have.iter().filter(|r| !want.contains(r)).collect();
    format!(
        "  {} expected only (first 20): {:#?}\n  {} found only (first 20): {:#?}",
        only_want.len(),
        &only_want[..only_want.len().min(20)],
        only_have.len(),
        &only_have[..only_have.len().min(20)]
    )
}

/// Compares a trial's results with the reference's, but for the delivery of the
/// customers in `in_doubt`; an empty list when they agree.
fn compare(
    expected: &BTreeMap<&'static str, Vec<String>>,
    got: &BTreeMap<&'static str, Vec<String>>,
    in_doubt: &BTreeSet<String>,
) -> Vec<String> {
    let mut bad = Vec::new();
    for (k, want) in expected {
        let keep = |rows: &[String]| -> Vec<String> {
            rows.iter()
                .filter(|r| !DELIVERY.contains(k) || !in_doubt.contains(customer(r)))
                .map(|r| match r.rsplit_once(" | ") {
                    // A step is `sent` once its message is: the decision is compared,
                    // its status goes with the message in doubt.
                    Some((decision, _))
                        if *k == "escalations" && in_doubt.contains(customer(r)) =>
                    {
                        format!("{decision} | (as its message in doubt)")
                    }
                    _ => r.clone(),
                })
                .collect()
        };
        let (want, have) = (keep(want), keep(&got[k]));
        if have != want {
            bad.push(format!(
                "{k} differ from the never-killed daemon's:\n{}",
                difference(&want, &have)
            ));
        }
    }
    bad
}

/// The customer a result row is about (its first column).
fn customer(row: &str) -> &str {
    row.split(" | ").next().unwrap_or_default()
}

/// Where a kill landed, from what the dead daemon left in its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Moment {
    /// A message was taken for delivery and not yet recorded.
    Delivery,
    /// The start-up run had not committed.
    StartUpRun,
    /// The outbox had steps to compose or messages to send (its own changes, call
    /// tasks, may have been waiting for a run as well).
    Outbox,
    /// Changes (an import, or what the outbox did) waited for their run or were in it.
    Run,
    /// Nothing was left to do.
    CaughtUp,
}

fn moment(db: &Path, min_runs: i64) -> Moment {
    let p = progress(db);
    // The outbox's first pass after a start goes along with the start-up run.
    if p.sending > 0 {
        Moment::Delivery
    } else if p.runs < min_runs {
        Moment::StartUpRun
    } else if p.steps_waiting > 0 || p.messages_due > 0 {
        Moment::Outbox
    } else if p.changes_pending {
        Moment::Run
    } else {
        Moment::CaughtUp
    }
}

#[test]
fn sigkilled_daemon_restarted_decides_as_one_never_killed() {
    let seed = std::env::var("ARREARS_DAEMON_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let trials: usize = std::env::var("ARREARS_DAEMON_CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    eprintln!(
        "daemon crash test: seed {seed} (replay with ARREARS_DAEMON_CRASH_SEED={seed}), {trials} trial(s)"
    );
    let started = Instant::now();
    let inputs = tempfile::tempdir().unwrap();
    let (files, items) = write_inputs(inputs.path());
    let (initial, batches) = files.split_first().unwrap();

    // The daemon that never dies: the results every trial must reach, and how long
    // each phase (the start-up run, each import's run and outbox pass) takes — the
    // span the kills are spread over.
    let mut d = Daemon::spawn(workspace(initial));
    let mut took = vec![catch_up(&d, 1, Instant::now(), "reference start")];
    for (n, b) in batches.iter().enumerate() {
        import(d.dir.path(), b);
        took.push(catch_up(
            &d,
            0,
            Instant::now(),
            &format!("reference batch {}", n + 1),
        ));
    }
    stop(&mut d, "reference");
    check_invariants(d.dir.path(), items, "reference");
    let expected = results(&rusqlite::Connection::open(d.path("arrears.db")).unwrap());
    drop(d);
    eprintln!("daemon crash test: the reference's phases took {took:?}");
    for (k, min) in [
        ("cases", 1000),
        ("worklist", 100),
        ("escalations", 100),
        ("messages", 100),
    ] {
        assert!(
            expected[k].len() >= min,
            "the input gives {k} enough to compare: {}",
            expected[k].len()
        );
    }
    // E-mail steps (held: no delivery channel), call tasks, and letters for the
    // customers without an e-mail address (recorded even with delivery off).
    for (k, channel) in [
        ("escalations", "email"),
        ("escalations", "call_task"),
        ("messages", "letter"),
    ] {
        assert!(
            expected[k]
                .iter()
                .any(|e| e.contains(&format!(" | {channel} | "))),
            "the input reaches the {channel} channel"
        );
    }

    let mut rng = Rng(seed);
    let mut moments: BTreeMap<Moment, usize> = BTreeMap::new();
    for trial in 0..trials {
        let mut log: Vec<String> = Vec::new();
        let mut logs: Vec<String> = Vec::new();
        let mut d = Daemon::spawn(workspace(initial));
        // The runs a caught-up daemon has made in all: after a start, its start-up run.
        let mut min_runs = 1;
        let mut since = Instant::now();
        for phase in 0..=batches.len() {
            if phase > 0 {
                import(d.dir.path(), &batches[phase - 1]);
                since = Instant::now();
            }
            // Up to three kills a phase; after the first, the daemon started again
            // has the phase's work, or what is left of it, to do once more.
            let mut kills = 0;
            while kills < 3 && rng.unit() < 0.7 {
                kills += 1;
                let aim = match rng.below(7) {
                    0 | 1 => Aim::Run,
                    2 | 3 => Aim::Outbox,
                    4 => Aim::Delivery,
                    _ => Aim::Anytime,
                };
                let when = wait_to_kill(&d, aim, took[phase], min_runs, since, &mut rng);
                let (dir, dead) = sigkill(d);
                let db = dir.path().join("arrears.db");
                let at = moment(&db, min_runs);
                *moments.entry(at).or_default() += 1;
                log.push(format!(
                    "phase {phase}: aimed at {aim:?}, killed {when}: {at:?}"
                ));
                logs.push(dead);
                min_runs = progress(&db).runs + 1;
                d = Daemon::spawn(dir);
                since = Instant::now();
            }
            catch_up(
                &d,
                min_runs,
                since,
                &format!("seed {seed}, trial {trial}, phase {phase}: {log:#?}"),
            );
        }
        let what = format!("seed {seed}, trial {trial}: {log:#?}");
        stop(&mut d, &what);
        check_invariants(d.dir.path(), items, &what);
        let db = rusqlite::Connection::open(d.path("arrears.db")).unwrap();
        let doubt = rows(
            &db,
            "SELECT (SELECT company || '/' || code FROM customers WHERE id = m.customer_id),
                    channel, subject, last_error
             FROM messages m WHERE status = 'unknown' ORDER BY 1",
        );
        let in_doubt: BTreeSet<String> = doubt.iter().map(|r| customer(r).to_string()).collect();
        let mut bad = compare(&expected, &results(&db), &in_doubt);
        // No message here can have been handed to a server (see the top of the file),
        // and the README has a message in doubt only when its process died between
        // handing it to the server and recording it.
        if !doubt.is_empty() {
            let reference: Vec<_> = expected["messages"]
                .iter()
                .filter(|r| in_doubt.contains(customer(r)))
                .collect();
            bad.push(format!(
                "messages marked in doubt (`unknown`, never to be sent) after a kill, though \
                 none was handed to a server:\n{doubt:#?}\nthe never-killed daemon has them as:\n{reference:#?}"
            ));
        }
        if !bad.is_empty() {
            // The last daemon's log follows when it is dropped.
            let mut text = String::new();
            for (n, l) in logs.iter().enumerate().filter(|(_, l)| !l.is_empty()) {
                let _ = writeln!(text, "----- killed daemon {n} stderr -----\n{l}");
            }
            panic!("{what}\n{text}\n{}", bad.join("\n"));
        }
        eprintln!("daemon crash test: trial {trial}: {log:?}");
    }
    let kills: usize = moments.values().sum();
    eprintln!(
        "daemon crash test: {trials} trial(s), {kills} kill(s) {moments:?}, in {:?}",
        started.elapsed()
    );
    assert!(kills > 0, "the daemon was never killed: nothing was tested");
}
