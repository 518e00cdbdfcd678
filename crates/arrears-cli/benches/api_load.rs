//! API load benchmark (not a test): `cargo bench --bench api_load`.
//!
//! Builds a synthetic portfolio (default 100k customers / 1M open items), starts the
//! real `arrears serve` on loopback, waits for its start-up run, and then sends
//! `GetWorklist` requests open-loop at a fixed rate (default 300/s) in two phases:
//! idle, and while a full portfolio run (next day) is in progress. Prints the latency
//! percentiles of each phase. Sizes: ARREARS_BENCH_CUSTOMERS, ARREARS_BENCH_ITEMS;
//! rate: ARREARS_BENCH_RPS; idle phase length: ARREARS_BENCH_IDLE_SECS.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrears::server::pb;
use chrono::NaiveDate;
use tokio::sync::mpsc;
use tonic::transport::Channel;

const TOKEN: &str = "bench-supervisor-token-0123456789";
const COLLECTORS: [&str; 6] = ["alice", "bob", "chen", "dara", "farid", "hugo"];
const GROUPS: [&str; 3] = ["key_accounts", "general", "us_team"];

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

struct Client {
    ch: Channel,
}

impl Client {
    fn req<T>(&self, m: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(m);
        r.metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        r
    }
    fn worklists(&self) -> pb::worklists_client::WorklistsClient<Channel> {
        pb::worklists_client::WorklistsClient::new(self.ch.clone())
    }
    fn admin(&self) -> pb::admin_client::AdminClient<Channel> {
        pb::admin_client::AdminClient::new(self.ch.clone())
    }
}

/// The n-th request of a phase: collector and group worklists, first pages and
/// deeper ones, with and without a priority filter, as a team of collector apps and
/// a supervisor screen would send them.
fn request(n: usize) -> pb::GetWorklistRequest {
    use pb::worklist_scope::Scope;
    let scope = if n % 4 == 3 {
        Scope::Group(GROUPS[n / 4 % GROUPS.len()].into())
    } else {
        Scope::Collector(COLLECTORS[n % COLLECTORS.len()].into())
    };
    let filter = (n % 5 == 0).then(|| pb::WorklistFilter {
        min_priority: pb::Priority::High as i32,
        ..Default::default()
    });
    pb::GetWorklistRequest {
        scope: Some(pb::WorklistScope { scope: Some(scope) }),
        filter,
        page_size: 50,
        page_token: String::new(),
    }
}

struct Phase {
    latencies: Vec<Duration>,
    errors: usize,
    late: usize,
}

/// Open-loop load: a request is sent every 1/rps whether or not earlier ones have
/// answered, so a slow server shows up as latency rather than as a lower rate.
async fn load(client: &Client, rps: usize, until: impl std::future::Future<Output = ()>) -> Phase {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rps as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    tokio::pin!(until);
    let mut n = 0usize;
    loop {
        tokio::select! {
            _ = &mut until => break,
            _ = tick.tick() => {
                let mut wl = client.worklists();
                let req = client.req(request(n));
                let tx = tx.clone();
                n += 1;
                tokio::spawn(async move {
                    let t = Instant::now();
                    let r = wl.get_worklist(req).await;
                    let ok = matches!(&r, Ok(p) if !p.get_ref().entries.is_empty() || p.get_ref().total == 0);
                    let _ = tx.send((t.elapsed(), ok));
                });
            }
        }
    }
    drop(tx);
    let mut p = Phase {
        latencies: Vec::with_capacity(n),
        errors: 0,
        late: 0,
    };
    while let Some((d, ok)) = rx.recv().await {
        if !ok {
            p.errors += 1;
        }
        if d > Duration::from_millis(20) {
            p.late += 1;
        }
        p.latencies.push(d);
    }
    p.latencies.sort();
    p
}

fn pct(v: &[Duration], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i].as_secs_f64() * 1000.0
}

fn report(name: &str, p: &Phase, secs: f64) {
    println!(
        "{name:<34} {:>6} req  {:>6.0} req/s  p50 {:>6.2} ms  p95 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  >20ms {:>4}  errors {}",
        p.latencies.len(),
        p.latencies.len() as f64 / secs,
        pct(&p.latencies, 0.50),
        pct(&p.latencies, 0.95),
        pct(&p.latencies, 0.99),
        pct(&p.latencies, 1.0),
        p.late,
        p.errors
    );
    if p.errors > 0 {
        // An answer that is an error (a refused token, no reach) is fast and says
        // nothing about pages: such figures must not be quoted.
        println!(
            "  {} of {} requests FAILED: the latencies above are not pages",
            p.errors,
            p.latencies.len()
        );
    }
}

fn main() {
    let customers = env_usize("ARREARS_BENCH_CUSTOMERS", 100_000);
    let items = env_usize("ARREARS_BENCH_ITEMS", 1_000_000);
    let rps = env_usize("ARREARS_BENCH_RPS", 300);
    let idle = env_usize("ARREARS_BENCH_IDLE_SECS", 10) as u64;
    let as_of: NaiveDate = "2026-11-23".parse().unwrap();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("bench.db");
    let rules = arrears_test_support::repo_root().join("rules");

    println!("api load benchmark: {customers} customers, {items} items, {rps} req/s");
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
    }
    println!("portfolio generated in {:.1} s", t.elapsed().as_secs_f64());

    let cfg = dir.path().join("arrears.yaml");
    std::fs::write(
        &cfg,
        "serve:\n  run_every: 0s\nauth:\n  tokens:\n    - { principal: bench, role: supervisor, groups: ['*'], token_env: ARREARS_BENCH_TOKEN }\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_arrears"))
        .args(["--config", cfg.to_str().unwrap(), "serve"])
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .args(["--as-of", &as_of.to_string()])
        .env("ARREARS_DB", &db)
        .env("ARREARS_RULES", &rules)
        .env("ARREARS_BENCH_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
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

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ch = Channel::from_shared(addr).unwrap().connect().await.unwrap();
        let client = Client { ch };
        // The start-up run (a back-fill of every case) is queued first; a run request
        // waits behind it, so its answer means the portfolio is evaluated.
        let t = Instant::now();
        let s = client
            .admin()
            .trigger_run(client.req(pb::TriggerRunRequest {
                full: false,
                as_of: as_of.to_string(),
            }))
            .await
            .expect("start-up run")
            .into_inner();
        println!(
            "start-up run done after {:.1} s (then a run of {} customers)",
            t.elapsed().as_secs_f64(),
            s.customers_evaluated
        );

        let t = Instant::now();
        let p = load(&client, rps, tokio::time::sleep(Duration::from_secs(idle))).await;
        report("idle", &p, t.elapsed().as_secs_f64());

        let next = as_of.succ_opt().unwrap().to_string();
        let mut admin = client.admin();
        let run_req = client.req(pb::TriggerRunRequest {
            full: true,
            as_of: next,
        });
        let t = Instant::now();
        let run = tokio::spawn(async move { admin.trigger_run(run_req).await });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let watch = tokio::spawn(async move {
            let r = run.await;
            let _ = tx.send(());
            r
        });
        let p = load(&client, rps, async {
            let _ = rx.await;
        })
        .await;
        let secs = t.elapsed().as_secs_f64();
        let s = watch
            .await
            .unwrap()
            .unwrap()
            .expect("full run")
            .into_inner();
        report("during a full run (next day)", &p, secs);
        println!(
            "full run: {:.1} s as seen by the client, {} customers, {} ms in the runner",
            secs, s.customers_evaluated, s.duration_ms
        );
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
