//! Leader failover on PostgreSQL (not a test): `cargo bench -p arrears --bench failover`.
//!
//! A throwaway PostgreSQL cluster on 127.0.0.1, a demo portfolio, three replicas
//! of the release binary. Then, ARREARS_BENCH_KILLS times (default 20): a note is
//! written through a follower, the leader is killed with SIGKILL while its outbox
//! sends reminders to a slow SMTP server on loopback, the time until another
//! replica leads is taken from their `/metrics`, and a replica is started again
//! in its place. At the end, once the last leader has sent everything: the
//! failover times (median, p90, max), the notes found against those written, and
//! the e-mails received twice (must be none; the one in flight at each kill is in
//! doubt and never sent again).

#[path = "../../../tests/common/smtp.rs"]
mod smtp;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrears_store::pg::testing::PgCluster;
use arrears_store::Store;

const AS_OF: &str = "2026-11-23";

struct Replica {
    child: Child,
    grpc: String,
    metrics: String,
}

fn arrears() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_arrears"));
    c.env_remove("ARREARS_CONFIG").env_remove("ARREARS_DB");
    c
}

fn start(cfg: &Path, url: &str, rules: &Path) -> Replica {
    let mut child = arrears()
        .args(["--config", cfg.to_str().unwrap(), "--db", url])
        .args(["--rules", rules.to_str().unwrap()])
        .args(["serve", "--grpc-listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0", "--as-of", AS_OF])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut grpc, mut metrics) = (String::new(), String::new());
    while grpc.is_empty() || metrics.is_empty() {
        let l = lines.next().expect("the replica's addresses").unwrap();
        if let Some(a) = l.strip_prefix("grpc listening on ") {
            grpc = format!("http://{a}");
        }
        if let Some(a) = l.strip_prefix("metrics listening on ") {
            metrics = a.to_string();
        }
    }
    // Keep reading, so that the replica never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Replica {
        child,
        grpc,
        metrics,
    }
}

fn leads(r: &Replica) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(&r.metrics) else {
        return false;
    };
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines().any(|l| l == "arrears_leader 1")
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

fn main() {
    let kills = std::env::var("ARREARS_BENCH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20usize);
    let sink = smtp::SmtpSink::start(Duration::from_millis(20));
    let url = PgCluster::shared().fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    copy_dir(&arrears_test_support::repo_root().join("rules"), &rules);
    // The guard's hours would make what goes out depend on the clock.
    std::fs::remove_file(rules.join("compliance.yaml")).unwrap();
    let cfg = dir.path().join("arrears.yaml");
    std::fs::write(
        &cfg,
        format!(
            "serve:\n  run_every: 0s\n  store_poll: 100ms\n  outbox_every: 300ms\n  kpi_interval: 0s\n\
             delivery:\n  smtp:\n    host: 127.0.0.1\n    port: {}\n    security: none\n    \
             from: {{ address: collections@acme.example }}\n    timeout: 5s\n",
            sink.port
        ),
    )
    .unwrap();
    let demo = arrears()
        .args(["--db", &url, "--rules", rules.to_str().unwrap()])
        .args(["demo", "--customers", "1500", "--items", "15000"])
        .args(["--as-of", AS_OF])
        .output()
        .unwrap();
    assert!(demo.status.success(), "{demo:?}");
    let store = Store::open_postgres(&url).unwrap();
    // A case to write notes on, once the first leader's run has opened them.
    let mut case = None;

    let mut replicas: Vec<Replica> = (0..3).map(|_| start(&cfg, &url, &rules)).collect();
    let mut took = Vec::new();
    let mut notes = 0;
    for k in 0..kills {
        wait_until("one leader", Duration::from_secs(30), || {
            replicas.iter().filter(|r| leads(r)).count() == 1
        });
        let leader = replicas.iter().position(leads).unwrap();
        // The new leader's full run and some of its sending.
        let sent = sink.delivered().len();
        wait_until("e-mails going out", Duration::from_secs(60), || {
            sink.delivered().len() > sent + 3
        });
        let case = *case.get_or_insert_with(|| {
            store
                .oldest_open_case(1)
                .unwrap()
                .expect("an open case after the run")
        });
        let follower = &replicas[(leader + 1) % replicas.len()];
        let note = arrears()
            .args(["--remote", &follower.grpc, "case", "note"])
            .args([&case.to_string(), &format!("written before kill {k}")])
            .output()
            .unwrap();
        assert!(note.status.success(), "{note:?}");
        notes += 1;
        let mut old = replicas.remove(leader);
        old.child.kill().unwrap();
        let t = wait_until("a new leader", Duration::from_secs(30), || {
            replicas.iter().any(leads)
        });
        let _ = old.child.wait();
        eprintln!(
            "kill {k}: a new leader after {:.0} ms",
            t.as_secs_f64() * 1e3
        );
        took.push(t.as_secs_f64() * 1e3);
        replicas.push(start(&cfg, &url, &rules));
    }
    wait_until("the outbox done", Duration::from_secs(600), || {
        store.steps_to_send().unwrap().is_empty()
            && store
                .messages(None, 1_000_000)
                .unwrap()
                .iter()
                .all(|m| !["queued", "deferred", "claimed", "sending"].contains(&m.status.as_str()))
    });
    let messages = store.messages(None, 1_000_000).unwrap();
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for mid in sink.delivered() {
        *got.entry(mid).or_default() += 1;
    }
    let twice = got.values().filter(|n| **n > 1).count();
    let in_doubt = messages.iter().filter(|m| m.status == "unknown").count();
    let found = format!("{:?}", store.case_detail(case.unwrap()).unwrap())
        .matches("written before kill")
        .count();
    for mut r in replicas {
        let _ = r.child.kill();
        let _ = r.child.wait();
    }
    took.sort_by(f64::total_cmp);
    let at = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize];
    println!(
        "failover over {kills} SIGKILLs: median {:.0} ms, p90 {:.0} ms, max {:.0} ms; \
         notes written {notes}, found {found}; e-mails received {} ({} messages), received twice {twice}, \
         in doubt {in_doubt}",
        at(0.5),
        at(0.9),
        took[took.len() - 1],
        got.len(),
        messages.len()
    );
    assert_eq!(twice, 0, "an e-mail went out twice");
    assert_eq!(found, notes, "a note was lost");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &p);
        } else {
            std::fs::copy(e.path(), p).unwrap();
        }
    }
}
