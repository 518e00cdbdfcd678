//! One outbox pass over a first run's backlog: after the first full run of a large
//! portfolio nearly every customer has an escalation step waiting, and the next
//! pass composes a message for each (rendering its template with the items, fees
//! and interest) before delivering what is due.
//!
//! Builds a synthetic portfolio (default 100k customers / 1M open items), runs it
//! once (full), copies the database, then times one whole pass through the library
//! (`correspondence::process`, as `arrears outbox send` does):
//!
//! 1. delivery off: every step composed, the messages held (left waiting);
//! 2. on the copy, delivery to an SMTP server on 127.0.0.1 that accepts everything:
//!    the same composing, and the pass's share of deliveries (a pass takes up to
//!    500 due messages per round, and runs another round while fallbacks appear).
//!
//! Prints steps, wall and CPU time (user + system of this process, the sink's few
//! threads included), steps per second, messages composed and delivered, and RSS.
//! Then how soon a pass returns once asked to stop, as the daemon asks at SIGTERM
//! (which promises to exit within 5 s): asked before it starts (what a pass does
//! before its first check) and asked a second into composing (on another copy).
//!
//! `cargo bench -p arrears --bench outbox`; sizes from ARREARS_BENCH_CUSTOMERS and
//! ARREARS_BENCH_ITEMS; ARREARS_BENCH_SMTP=0 leaves out the second pass.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrears::correspondence::{self, OutboxStats};
use arrears::delivery::DeliveryConfig;
use arrears::rules::RuleSet;
use arrears::store::Store;
use chrono::{DateTime, NaiveDate, Utc};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (user + system CPU seconds, resident MiB, peak resident MiB) of this process.
fn proc_figures() -> (f64, f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which may hold spaces, closed by ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the ')'.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (cpu, kib("VmRSS:"), kib("VmHWM:"))
}

/// An SMTP server on loopback that accepts every message at once and counts them:
/// what the pass costs on the sending side, not a server's own pace.
fn smtp_sink() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the SMTP sink");
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let n = accepted.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let n = n.clone();
            std::thread::spawn(move || {
                let _ = smtp_session(conn, &n);
            });
        }
    });
    (port, accepted)
}

fn smtp_session(conn: TcpStream, accepted: &AtomicUsize) -> std::io::Result<()> {
    let mut out = conn.try_clone()?;
    let mut lines = BufReader::new(conn);
    out.write_all(b"220 sink ESMTP\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        if cmd.starts_with("EHLO") {
            out.write_all(b"250-sink\r\n250 8BITMIME\r\n")?;
        } else if cmd.starts_with("DATA") {
            out.write_all(b"354 go ahead\r\n")?;
            loop {
                line.clear();
                if lines.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
            }
            accepted.fetch_add(1, Ordering::Relaxed);
            out.write_all(b"250 queued\r\n")?;
        } else if cmd.starts_with("QUIT") {
            out.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            out.write_all(b"250 ok\r\n")?;
        }
    }
}

/// One whole pass, timed; prints its figures.
fn timed_pass(
    what: &str,
    store: &mut Store,
    rules: &RuleSet,
    delivery: Option<&DeliveryConfig>,
    now: DateTime<Utc>,
    steps: usize,
    accepted: Option<&AtomicUsize>,
) -> OutboxStats {
    let (cpu0, rss0, _) = proc_figures();
    let t = Instant::now();
    let st = correspondence::process(store, rules, delivery, now).expect("outbox pass");
    let wall = t.elapsed().as_secs_f64();
    let (cpu1, rss, peak) = proc_figures();
    let left = store.steps_to_send().expect("steps").len();
    println!("{what}:");
    println!(
        "  {steps} steps in {wall:.1} s wall, {:.1} s CPU: {:.0} steps/s",
        cpu1 - cpu0,
        steps as f64 / wall
    );
    println!(
        "  composed {}, call tasks {}, sent {} (letters included), held {}, deferred {}, \
         fell back {}, failed {}; steps left uncomposed {left}",
        st.composed, st.call_tasks, st.sent, st.held, st.deferred, st.fell_back, st.failed
    );
    if let Some(n) = accepted {
        println!(
            "  e-mails accepted by the sink: {}",
            n.load(Ordering::Relaxed)
        );
    }
    // The process built the portfolio too: its peak is the generator's or the run's.
    println!("  RSS {rss0:.0} MiB before, {rss:.0} MiB after (peak of the process {peak:.0} MiB)");
    st
}

/// Seconds from asking a pass (delivery off) to stop until it returns: asked
/// `after` into it, or before it starts when `after` is zero. `None` when the pass
/// ended before it was asked.
fn stop_latency(
    store: &mut Store,
    rules: &RuleSet,
    now: DateTime<Utc>,
    after: Duration,
) -> (Option<f64>, OutboxStats) {
    let flag = Arc::new(AtomicBool::new(false));
    let asked: Arc<Mutex<Option<Instant>>> = Arc::default();
    let asker = {
        let (flag, asked) = (flag.clone(), asked.clone());
        std::thread::spawn(move || {
            std::thread::sleep(after);
            *asked.lock().unwrap() = Some(Instant::now());
            flag.store(true, Ordering::SeqCst);
        })
    };
    if after.is_zero() {
        asker.join().unwrap();
    }
    let stop = || flag.load(Ordering::SeqCst);
    let st = correspondence::process_until(store, rules, None, now, &stop).expect("outbox pass");
    let done = Instant::now();
    let asked = *asked.lock().unwrap();
    (asked.map(|a| (done - a).as_secs_f64()), st)
}

fn main() {
    let customers = env_usize("ARREARS_BENCH_CUSTOMERS", 100_000);
    let items = env_usize("ARREARS_BENCH_ITEMS", 1_000_000);
    let with_smtp = env_usize("ARREARS_BENCH_SMTP", 1) != 0;
    let as_of: NaiveDate = "2026-11-23".parse().unwrap();
    // Monday, 13:30 in New York and 08:30 in Honolulu: the compliance guard lets
    // e-mail go to every country of the demo, so nothing is deferred by the clock.
    let now: DateTime<Utc> = "2026-11-23T18:30:00Z".parse().unwrap();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("bench.db");
    let copy = dir.path().join("copy.db");
    let copy2 = dir.path().join("copy2.db");
    let rules =
        arrears::rules::load(&arrears_test_support::repo_root().join("rules")).expect("rules");

    println!("outbox benchmark: {customers} customers, {items} items");
    let t = Instant::now();
    let steps = {
        let mut store = Store::open(&db).expect("open store");
        arrears::demo::generate(
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
        arrears::engine::run::run(
            &mut store,
            &rules,
            as_of,
            arrears::engine::run::RunMode::Full,
        )
        .expect("first run");
        // Everything in the main file, so that a copy of it is the whole database.
        store
            .test_connection()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .expect("checkpoint");
        store.steps_to_send().expect("steps").len()
    };
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!(
        "portfolio generated and run once in {:.1} s: {steps} escalation steps wait \
         ({:.0} MiB database)",
        t.elapsed().as_secs_f64(),
        size as f64 / (1 << 20) as f64
    );
    if with_smtp {
        std::fs::copy(&db, &copy).expect("copy the database");
    }
    std::fs::copy(&db, &copy2).expect("copy the database");

    let mut store = Store::open(&db).expect("open store");
    // Changes nothing: asked to stop from the start, the pass composes nothing and
    // takes no message.
    let (latency, st) = stop_latency(&mut store, &rules, now, Duration::ZERO);
    assert_eq!(
        st,
        OutboxStats::default(),
        "a pass stopped from the start did something"
    );
    println!(
        "a pass asked to stop before it starts returns after {:.2} s (finding the waiting \
         steps, then the due messages)",
        latency.unwrap_or(f64::NAN)
    );
    timed_pass(
        "one pass, delivery off (composed and left waiting)",
        &mut store,
        &rules,
        None,
        now,
        steps,
        None,
    );
    drop(store);

    let mut store = Store::open(&copy2).expect("open the copy");
    let (latency, st) = stop_latency(&mut store, &rules, now, Duration::from_secs(1));
    drop(store);
    match latency {
        Some(s) => println!(
            "a pass asked to stop 1 s into composing returns after {s:.3} s ({} composed \
             by then)",
            st.composed
        ),
        None => println!("the pass ended within 1 s, before it was asked to stop"),
    }
    let _ = std::fs::remove_file(&copy2);

    if !with_smtp {
        return;
    }
    let (port, accepted) = smtp_sink();
    let delivery: DeliveryConfig = serde_yaml::from_str(&format!(
        "smtp: {{ host: 127.0.0.1, port: {port}, security: none, \
         from: {{ address: collections@acme.example }}, timeout: 5s }}"
    ))
    .expect("delivery config");
    let mut store = Store::open(&copy).expect("open the copy");
    timed_pass(
        "one pass, delivery to an SMTP sink on 127.0.0.1 (same backlog)",
        &mut store,
        &rules,
        Some(&delivery),
        now,
        steps,
        Some(&accepted),
    );
    let (cpu0, _, _) = proc_figures();
    // Nothing is left to compose: a second pass is delivery alone, its rate per
    // message.
    let before = accepted.load(Ordering::Relaxed);
    let t = Instant::now();
    let st2 =
        correspondence::process(&mut store, &rules, Some(&delivery), now).expect("second pass");
    let wall2 = t.elapsed().as_secs_f64();
    let (cpu1, _, _) = proc_figures();
    let emails = accepted.load(Ordering::Relaxed) - before;
    let attempts = st2.sent + st2.fell_back + st2.failed + st2.held + st2.deferred;
    println!("a second pass (delivery only):");
    println!(
        "  {attempts} messages handled ({} sent, {emails} of them e-mails; {} fell back) \
         in {wall2:.1} s wall, {:.1} s CPU: {:.1} ms per e-mail wall, {:.0} messages/s",
        st2.sent,
        st2.fell_back,
        cpu1 - cpu0,
        if emails > 0 {
            wall2 * 1e3 / emails as f64
        } else {
            f64::NAN
        },
        attempts as f64 / wall2
    );
    let waiting = store.messages_waiting().expect("waiting");
    println!(
        "  still waiting: {waiting} messages, {:.0} more passes of this size",
        (waiting as f64 / attempts.max(1) as f64).ceil()
    );
}
