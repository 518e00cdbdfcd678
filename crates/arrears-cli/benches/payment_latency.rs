//! One payment → the collector's screen: how long from the commit of a payment by
//! another process (the ERP connector reporting an invoice partly paid, an import)
//! until a `WatchWorklist` stream carries the changed entry.
//!
//! Builds a synthetic portfolio (default 100k customers / 1M open items), runs it
//! once and composes its outbox backlog (a daemon that has been running has done
//! so), starts `arrears serve` (the release binary, as a child) with a 5 ms store
//! poll, opens one stream over the `general` group, then lowers the open amount of
//! one item at a time (as an ERP sync does when an invoice is paid in part) for
//! customers the stream follows, each waiting for its update. Prints the
//! latency percentiles, the daemon's CPU time per payment and its memory.
//!
//! `cargo bench -p arrears --bench payment_latency`; sizes and count from
//! ARREARS_BENCH_CUSTOMERS, ARREARS_BENCH_ITEMS, ARREARS_BENCH_PAYMENTS; the days of
//! full runs after them from ARREARS_BENCH_DAYS; the daemon's outbox interval from
//! ARREARS_BENCH_OUTBOX_EVERY (default 60s; 0s turns it off); its store poll from
//! ARREARS_BENCH_POLL (default 5ms); its log filter from
//! ARREARS_BENCH_LOG (e.g. `arrears_server::runner=debug` for where a run's time goes).
//!
//! ARREARS_BENCH_DB=postgres://… (an empty database): the portfolio is made and run
//! on SQLite as above, copied across with `arrears migrate`'s copy, and two daemons
//! serve it: the leader, which runs, and a follower replica, whose stream is timed.
//! Payments are still chosen from the SQLite file (the copy keeps every id).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrears::domain::{Batch, ItemInput};
use arrears::money::Currency;
use arrears::server::pb;
use arrears_store::rusqlite;
use chrono::NaiveDate;
use rust_decimal::Decimal;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (user + system CPU seconds, resident MiB) of a process, from /proc.
/// The daemon's peak resident memory so far (MiB).
fn peak_rss(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn proc_figures(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which may hold spaces, closed by ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the ')'.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, rss_kib / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// An item as the ERP would send it again: select [`ITEM`] and map with
/// [`item_from_row`].
const ITEM: &str = "SELECT i.source, i.external_id, c.company, c.code, i.document_no,
        i.document_date, i.due_date, i.original_amount, i.open_amount, i.currency
     FROM items i JOIN customers c ON c.id = i.customer_id";

fn item_from_row(r: &rusqlite::Row) -> rusqlite::Result<ItemInput> {
    let text = |i: usize| r.get::<_, String>(i);
    let date =
        |i: usize| -> rusqlite::Result<NaiveDate> { Ok(text(i)?.parse().expect("stored date")) };
    let amount =
        |i: usize| -> rusqlite::Result<Decimal> { Ok(text(i)?.parse().expect("stored amount")) };
    Ok(ItemInput {
        source: text(0)?,
        external_id: text(1)?,
        company: text(2)?,
        customer: text(3)?,
        document_no: text(4)?,
        document_date: date(5)?,
        due_date: date(6)?,
        original_amount: amount(7)?,
        open_amount: amount(8)?,
        currency: Currency::parse(&text(9)?).expect("currency"),
        hold: None,
        original_document: None,
    })
}

/// An open item to pay, and the customer whose entry the payment changes.
struct Target {
    customer_id: i64,
    item: ItemInput,
}

fn main() {
    let customers = env_usize("ARREARS_BENCH_CUSTOMERS", 100_000);
    let items = env_usize("ARREARS_BENCH_ITEMS", 1_000_000);
    let payments = env_usize("ARREARS_BENCH_PAYMENTS", 1_000);
    let as_of: NaiveDate = "2026-11-23".parse().unwrap();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("bench.db");
    let rules_dir = arrears_test_support::repo_root().join("rules");

    println!(
        "payment latency benchmark: {customers} customers, {items} items, {payments} payments"
    );
    let t = Instant::now();
    {
        let mut store = arrears::store::Store::open(&db).expect("open store");
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
        let rules = arrears::rules::load(&rules_dir).expect("rules");
        arrears::engine::run::run(
            &mut store,
            &rules,
            as_of,
            arrears::engine::run::RunMode::Full,
        )
        .expect("first run");
        // The outbox composes the first run's backlog here, as a daemon that has been
        // running would have: its first pass would otherwise overlap the payments
        // (call tasks mark their customers changed: a run for each batch of them).
        let now = as_of.and_hms_opt(10, 0, 0).unwrap().and_utc();
        arrears::correspondence::compose(&mut store, &rules, now).expect("outbox pass");
        arrears::engine::run::run(
            &mut store,
            &rules,
            as_of,
            arrears::engine::run::RunMode::Auto,
        )
        .expect("run after the outbox");
    }
    println!(
        "portfolio generated, run once, its outbox backlog composed and run again in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // Where the daemons work, and where payments are written.
    let pg_url = std::env::var("ARREARS_BENCH_DB").ok();
    let served = match &pg_url {
        Some(url) => {
            let t = Instant::now();
            let from = arrears::store::Store::open(&db).expect("open store");
            let to = arrears::store::Store::open_at(url).expect("open the PostgreSQL store");
            let report =
                arrears_store::pg::copy::copy(&from, &to, &|_, _| {}).expect("copy to PostgreSQL");
            println!(
                "copied to {} ({} rows) in {:.1} s",
                to.location(),
                report.rows,
                t.elapsed().as_secs_f64()
            );
            url.clone()
        }
        None => db.display().to_string(),
    };
    let open_served = || arrears::store::Store::open_at(&served).expect("open store");

    // No tokens: the local admin on loopback, who may follow any group.
    let cfg = dir.path().join("arrears.yaml");
    // ARREARS_BENCH_OUTBOX_EVERY=0s for a soak of full runs alone: with a fixed
    // `--as-of`, the call tasks each day's outbox pass creates mark customers
    // changed, and the run they cause is for the daemon's own date, not the day's.
    let outbox_every = std::env::var("ARREARS_BENCH_OUTBOX_EVERY").unwrap_or_else(|_| "60s".into());
    // The daemon wakes on the database log's writes; the poll is the fallback.
    // ARREARS_BENCH_POLL=1s measures with the default.
    let poll = std::env::var("ARREARS_BENCH_POLL").unwrap_or_else(|_| "5ms".into());
    std::fs::write(
        &cfg,
        format!("serve:\n  run_every: 0s\n  store_poll: {poll}\n  outbox_every: {outbox_every}\n"),
    )
    .unwrap();
    let start = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_arrears"))
            .args(["--config", cfg.to_str().unwrap(), "serve"])
            .args([
                "--grpc-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .args(["--as-of", &as_of.to_string()])
            .env("ARREARS_DB", &served)
            .env("ARREARS_RULES", &rules_dir)
            .env(
                "RUST_LOG",
                std::env::var("ARREARS_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .spawn()
            .expect("start arrears serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let l = lines.next().expect("daemon exited").expect("stdout");
            if let Some(a) = l.strip_prefix("grpc listening on ") {
                break format!("http://{a}");
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        (child.id(), child, addr)
    };
    let (pid, mut child, addr) = start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut follower = rt.block_on(async {
        let ch = tonic::transport::Channel::from_shared(addr)
            .unwrap()
            .connect()
            .await
            .expect("connect");
        // On PostgreSQL the daemon runs once it leads (it tries every half second).
        if pg_url.is_some() {
            let leads = tonic_health::pb::HealthCheckRequest {
                service: arrears::server::LEADER_HEALTH.into(),
            };
            let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
            // Unknown (not registered yet) until the daemon has tried once.
            while health
                .check(leads.clone())
                .await
                .map(|r| r.into_inner().status)
                .ok()
                != Some(tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // The start-up run first, so it does not land in the first measurement. It
        // loads the whole portfolio into the daemon (its cold start).
        let (cpu0, _) = proc_figures(pid);
        let t0 = Instant::now();
        let mut admin = pb::admin_client::AdminClient::new(ch.clone());
        admin
            .trigger_run(pb::TriggerRunRequest {
                full: false,
                as_of: String::new(),
            })
            .await
            .expect("start-up run");
        let (cpu1, rss1) = proc_figures(pid);
        println!(
            "start-up run (cold start: the portfolio into memory): {:.0} ms wall, {:.0} ms CPU; RSS {rss1:.0} MiB",
            t0.elapsed().as_secs_f64() * 1e3,
            (cpu1 - cpu0) * 1e3
        );
        // On PostgreSQL the stream is a follower's, started once the first daemon
        // leads: the payment goes to the database, the leader runs for it, and the
        // follower reads what the run wrote.
        let mut follower = None;
        let watched = match &pg_url {
            None => ch,
            Some(_) => {
                let t = Instant::now();
                let (fpid, fchild, faddr) = start();
                let fch = tonic::transport::Channel::from_shared(faddr)
                    .unwrap()
                    .connect()
                    .await
                    .expect("connect to the follower");
                let (cpu, rss) = proc_figures(fpid);
                println!(
                    "follower serving after {:.0} ms ({cpu:.1} s CPU), RSS {rss:.0} MiB",
                    t.elapsed().as_secs_f64() * 1e3
                );
                follower = Some((fpid, fchild));
                fch
            }
        };
        let mut stream = pb::worklists_client::WorklistsClient::new(watched)
            .watch_worklist(pb::WatchWorklistRequest {
                scope: Some(pb::WorklistScope {
                    scope: Some(pb::worklist_scope::Scope::Group("general".into())),
                }),
                filter: None,
            })
            .await
            .expect("watch")
            .into_inner();
        let snapshot = stream.message().await.expect("stream").expect("snapshot");
        let followed: Vec<i64> = snapshot.upserted.iter().map(|e| e.customer_id).collect();

        let store = arrears::store::Store::open(&db).expect("open store");
        let mut targets = Vec::new();
        for &id in &followed {
            let row = store.test_connection().query_row(
                &format!(
                    "{ITEM} WHERE i.customer_id = ?1 AND i.status = 'open' AND i.hold_reason IS NULL
                       AND i.original_document IS NULL AND CAST(i.open_amount AS REAL) >= 1000
                     ORDER BY i.id LIMIT 1"
                ),
                [id],
                item_from_row,
            );
            if let Ok(item) = row {
                targets.push(Target {
                    customer_id: id,
                    item,
                });
            }
        }
        assert!(
            !targets.is_empty(),
            "no open item among the followed customers"
        );
        println!(
            "stream follows {} entries; paying items of {} of them",
            followed.len(),
            targets.len()
        );
        // Items are chosen from the SQLite file, payments written where the daemons work.
        let lite = store;
        // The PostgreSQL client blocks on a runtime of its own: not on this one's
        // threads, so every call to it is made in place of a worker.
        use tokio::task::block_in_place as blocking;
        let mut store = blocking(open_served);
        let follower_cpu = || follower.as_ref().map(|(p, _)| proc_figures(*p).0);

        let (cpu_before, rss_before) = proc_figures(pid);
        let fcpu_before = follower_cpu();
        let started = Instant::now();
        let mut latencies = Vec::with_capacity(payments);
        let mut timeouts = 0;
        for k in 0..payments {
            let n = targets.len();
            let t = &mut targets[k % n];
            // One unit less open, as the ERP reports a partial payment; a whole unit so
            // that every currency (JPY has none below it) takes it.
            t.item.open_amount -= Decimal::ONE;
            let batch = Batch {
                items: vec![t.item.clone()],
                ..Batch::default()
            };
            let customer_id = t.customer_id;
            let t0 = Instant::now();
            blocking(|| store.ingest(&batch)).expect("payment");
            let seen = tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    let u = stream.message().await.expect("stream").expect("open");
                    if u.upserted.iter().any(|e| e.customer_id == customer_id)
                        || u.removed.contains(&customer_id)
                    {
                        return;
                    }
                }
            })
            .await;
            match seen {
                Ok(()) => latencies.push(t0.elapsed().as_secs_f64() * 1e3),
                Err(_) => timeouts += 1,
            }
        }
        let wall = started.elapsed().as_secs_f64();
        let (cpu_after, rss_after) = proc_figures(pid);
        latencies.sort_by(|a, b| a.total_cmp(b));
        println!(
            "payment → stream update over {} payments ({} timed out after 30 s), {:.1} s:",
            latencies.len(),
            timeouts,
            wall
        );
        println!(
            "  p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.9),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or(f64::NAN)
        );
        println!(
            "  daemon CPU {:.1} ms per payment; RSS {:.0} MiB before, {:.0} MiB after",
            (cpu_after - cpu_before) * 1e3 / payments as f64,
            rss_before,
            rss_after
        );
        if let (Some(a), Some(b)) = (fcpu_before, follower_cpu()) {
            println!(
                "  follower CPU {:.1} ms per payment",
                (b - a) * 1e3 / payments as f64
            );
        }

        // 1 % of the items change at once (an ERP sync after a day of payments):
        // from the commit until a run has loaded it and committed every derived
        // result (the store then has no change pending).
        let changed: Vec<ItemInput> = lite
            .test_connection()
            .prepare(&format!(
                "{ITEM} WHERE i.status = 'open' AND i.hold_reason IS NULL
                   AND i.original_document IS NULL AND CAST(i.open_amount AS REAL) >= 1000
                   AND i.id % 40 = 5 LIMIT {}",
                items / 100
            ))
            .expect("prepare")
            .query_map([], item_from_row)
            .expect("query")
            .map(|r| {
                let mut it = r.expect("row");
                it.open_amount -= Decimal::ONE;
                it
            })
            .collect();
        // The log is checkpointed after the measurement, not by the commit: the
        // clock then starts at the commit, and the daemon's run does not share the
        // core with this process's checkpoint (200 ms of a 1 % ingest).
        if !store.is_postgres() {
            store
                .test_connection()
                .execute_batch("PRAGMA wal_autocheckpoint = 0")
                .expect("no checkpoint");
        }
        let (c0, _) = proc_figures(pid);
        let t = Instant::now();
        blocking(|| {
            store.ingest(&Batch {
                items: changed.clone(),
                ..Batch::default()
            })
        })
        .expect("1% changed");
        let committed = t.elapsed();
        eprintln!("1 % committed at {}", chrono::Utc::now());
        // The stream hears of it (collectors see it) before it is all written.
        let shown = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let u = stream.message().await.expect("stream").expect("open");
                // A follower hears of it as its leader's run.
                if u.cause.contains("changed in the store") || u.cause.contains("of the leader") {
                    return t.elapsed();
                }
            }
        })
        .await
        .expect("the 1 % change on the stream");
        while blocking(|| store.changes_pending())
            .expect("pending")
            .is_some()
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (c1, rss) = proc_figures(pid);
        if !store.is_postgres() {
            store
                .test_connection()
                .execute_batch(
                    "PRAGMA wal_autocheckpoint = 1000; PRAGMA wal_checkpoint(PASSIVE)",
                )
                .expect("checkpoint");
        }
        println!(
            "{} items changed (1 %): ingest {:.0} ms, then on the stream after {:.0} ms, every derived result committed after {:.0} ms; daemon CPU {:.0} ms, RSS {rss:.0} MiB",
            changed.len(),
            committed.as_secs_f64() * 1e3,
            (shown - committed).as_secs_f64() * 1e3,
            (t.elapsed() - committed).as_secs_f64() * 1e3,
            (c1 - c0) * 1e3
        );

        // The following business days' full runs, as the scheduler starts them.
        let days = env_usize("ARREARS_BENCH_DAYS", 5);
        for day in 1..=days {
            let date = as_of + chrono::Duration::days(day as i64);
            let (c0, _) = proc_figures(pid);
            let t = Instant::now();
            let sum = admin
                .trigger_run(pb::TriggerRunRequest {
                    full: true,
                    as_of: date.to_string(),
                })
                .await
                .expect("full run")
                .into_inner();
            let (c1, rss) = proc_figures(pid);
            let phases = serde_json::from_str::<serde_json::Value>(&sum.summary_json)
                .ok()
                .and_then(|v| v.get("phases_ms").cloned())
                .unwrap_or_default();
            println!(
                "full run for {date}: {:.0} ms wall, {:.0} ms CPU, run {} ms {phases}, RSS {rss:.0} MiB, peak {:.0} MiB",
                t.elapsed().as_secs_f64() * 1e3,
                (c1 - c0) * 1e3,
                sum.duration_ms,
                peak_rss(pid)
            );
        }
        blocking(move || drop(store));
        follower
    });
    for (pid, child) in
        std::iter::once((pid, &mut child)).chain(follower.as_mut().map(|(p, c)| (*p, c)))
    {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let _ = child.wait();
    }
}
