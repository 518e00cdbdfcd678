//! The Tryton connector on a real ledger: a full sync (every open line, stored as a
//! snapshot) against an incremental one (lines changed since the cursor), with
//! nothing changed and after a few payments were reconciled in Tryton.
//!
//! Sets up a real Tryton 8.2 (`tests/tryton/fixture.py setup`, then `bulk`: P
//! parties with a procedure and an invoice address, N posted receivable lines),
//! serves it on loopback and syncs it into a fresh store in this process. Prints
//! medians of wall time, this process's CPU time and the Tryton server's CPU time,
//! so it shows on which side of the wire the time goes.
//!
//! `cargo bench -p arrears --bench tryton_sync`; needs the venv `.ci/run` makes (or
//! ARREARS_PYTHON). Sizes from ARREARS_BENCH_LINES (10000), ARREARS_BENCH_PARTIES
//! (950), rounds from ARREARS_BENCH_ROUNDS (5), payments reconciled per round from
//! ARREARS_BENCH_SETTLE (10). The incremental syncs run with no overlap: the whole
//! ledger was written minutes ago, and with the default 30 minutes every sync
//! would read it all again; in production the overlap adds what changed in its
//! last 30 minutes.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrears::connector::{self, ConnectorConfig, Kind};
use arrears_store::Store;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU seconds of a process, from /proc.
fn cpu_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn python() -> String {
    std::env::var("ARREARS_PYTHON").unwrap_or_else(|_| {
        arrears_test_support::repo_root()
            .join(".venv/bin/python")
            .display()
            .to_string()
    })
}

fn fixture(args: &[&str]) -> serde_json::Value {
    let script = arrears_test_support::repo_root().join("tests/tryton/fixture.py");
    let o = Command::new(python())
        .arg(script)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("run fixture.py");
    assert!(
        o.status.success(),
        "fixture.py {args:?} failed (run with the venv of .ci/run)"
    );
    serde_json::from_slice(&o.stdout).expect("fixture.py prints JSON")
}

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One measured sync: (wall s, our CPU s, Tryton's CPU s, its one-line summary).
fn timed(
    store: &mut Store,
    c: &ConnectorConfig,
    server: &str,
    as_of: chrono::NaiveDate,
) -> (f64, f64, f64, String) {
    let (cpu0, srv0, t0) = (cpu_of("self"), cpu_of(server), Instant::now());
    let stats = connector::sync(store, c, as_of).expect("sync");
    (
        t0.elapsed().as_secs_f64(),
        cpu_of("self") - cpu0,
        cpu_of(server) - srv0,
        stats.details.join("; "),
    )
}

fn report(name: &str, runs: Vec<(f64, f64, f64, String)>) {
    let last = runs.last().map(|r| r.3.clone()).unwrap_or_default();
    let n = runs.len();
    let wall = median(runs.iter().map(|r| r.0).collect());
    let cpu = median(runs.iter().map(|r| r.1).collect());
    let srv = median(runs.iter().map(|r| r.2).collect());
    println!(
        "{name:<44} median of {n}: wall {:>7.1} ms  arrears cpu {:>7.1} ms  tryton cpu {:>7.1} ms",
        wall * 1e3,
        cpu * 1e3,
        srv * 1e3
    );
    println!("    {last}");
}

fn main() {
    let lines = env_usize("ARREARS_BENCH_LINES", 10_000);
    let parties = env_usize("ARREARS_BENCH_PARTIES", 950);
    let rounds = env_usize("ARREARS_BENCH_ROUNDS", 5).max(1);
    let settle = env_usize("ARREARS_BENCH_SETTLE", 10);
    let tryton = tempfile::tempdir().unwrap();
    let t = tryton.path().to_str().unwrap();
    let t0 = Instant::now();
    let setup = fixture(&["setup", "--dir", t]);
    let bulk = fixture(&[
        "bulk",
        "--dir",
        t,
        "--lines",
        &lines.to_string(),
        "--parties",
        &parties.to_string(),
    ]);
    println!(
        "tryton_sync: {lines} lines over {parties} parties (+ the fixture's 5 invoices); ledger built in {:.0} s ({} s bulk)",
        t0.elapsed().as_secs_f64(),
        bulk["elapsed_s"]
    );
    let port = setup["port"].as_u64().unwrap() as u16;
    let script = arrears_test_support::repo_root().join("tests/tryton/fixture.py");
    let server = Server(
        Command::new(python())
            .arg(script)
            .args(["serve", "--dir", t])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "Tryton did not listen on {port}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let pid = server.0.id().to_string();
    let pw = tryton.path().join("arrears.pw");
    std::fs::write(&pw, "admin\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = |extra: serde_json::Value| {
        let mut v = serde_json::json!({
            "url": format!("http://127.0.0.1:{port}"), "database": setup["database"],
            "user": "admin", "password_file": pw,
            "company": "ACME", "overlap": "0s",
        });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        ConnectorConfig {
            name: "erp".into(),
            kind: Kind::Tryton(serde_json::from_value(v).unwrap()),
            every: Duration::ZERO,
        }
    };
    let full = config(serde_json::json!({ "full_every": "0s" }));
    let changes = config(serde_json::json!({ "full_every": "1d" }));
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("bench.db")).expect("open store");
    let as_of: chrono::NaiveDate = "2026-11-23".parse().unwrap();

    report(
        "full sync into an empty store",
        vec![timed(&mut store, &full, &pid, as_of)],
    );
    report(
        "full sync, nothing changed",
        (0..rounds)
            .map(|_| timed(&mut store, &full, &pid, as_of))
            .collect(),
    );
    report(
        "incremental sync, nothing changed",
        (0..rounds)
            .map(|_| timed(&mut store, &changes, &pid, as_of))
            .collect(),
    );
    let mut runs = Vec::new();
    for _ in 0..rounds {
        fixture(&["settle", "--dir", t, "--count", &settle.to_string()]);
        runs.push(timed(&mut store, &changes, &pid, as_of));
    }
    report(
        &format!("incremental sync, {settle} lines reconciled"),
        runs,
    );
    let mut runs = Vec::new();
    for _ in 0..rounds {
        fixture(&["settle", "--dir", t, "--count", &settle.to_string()]);
        runs.push(timed(&mut store, &full, &pid, as_of));
    }
    report(&format!("full sync, {settle} lines reconciled"), runs);
}
