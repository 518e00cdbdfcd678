//! End-to-end: what one client can make the daemon hold is bounded (issue 10).
//! Hundreds of WatchWorklist streams that are never read cost the daemon neither
//! memory nor run time; streams over the configured limits, and errors quoting huge
//! fields, are cut short.

mod common;

use std::time::{Duration, Instant};

use arrears::server::pb;
use common::*;
use tonic::Code;

/// Streams the measuring test opens, as one principal.
const STREAMS: usize = 500;
/// Figures per phase; medians of these are compared.
const SAMPLES: usize = 7;

/// Adds `serve.limits` to the prepared config.
fn with_limits(dir: &std::path::Path, limits: &str) {
    let p = dir.join("arrears.yaml");
    let cfg = std::fs::read_to_string(&p).unwrap();
    let cfg = cfg.replacen("serve:\n", &format!("serve:\n  limits: {limits}\n"), 1);
    std::fs::write(p, cfg).unwrap();
}

/// The daemon's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[derive(Debug)]
struct Figures {
    run_ms: f64,
    health_ms: f64,
    rss_mib: f64,
}

/// Full runs that move the worklists (the business date alternates, so priorities
/// and NADs change and every stream has something to be told), each followed by
/// Health calls and a look at the daemon's memory.
async fn measure(d: &Daemon, ch: &tonic::transport::Channel) -> Figures {
    let mut admin = pb::admin_client::AdminClient::with_interceptor(ch.clone(), with_token(SUP));
    let (mut runs, mut healths, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..SAMPLES {
        let as_of = if i % 2 == 0 { "2026-12-23" } else { AS_OF };
        let t = Instant::now();
        admin
            .trigger_run(pb::TriggerRunRequest {
                full: true,
                as_of: as_of.into(),
            })
            .await
            .unwrap();
        runs.push(t.elapsed().as_secs_f64() * 1e3);
        // Give what follows a run (streams' work, the KPI pass) time to happen.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for _ in 0..3 {
            let t = Instant::now();
            admin.health(pb::HealthRequest {}).await.unwrap();
            healths.push(t.elapsed().as_secs_f64() * 1e3);
        }
        rss.push(rss_kib(d.pid()) as f64 / 1024.0);
    }
    Figures {
        run_ms: median(runs),
        health_ms: median(healths),
        // The largest, not the median: memory that piles up run after run shows here.
        rss_mib: rss.into_iter().fold(0.0, f64::max),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_streams_cost_neither_memory_nor_run_time() {
    let dir = Daemon::prepare();
    with_limits(
        dir.path(),
        &format!(
            "{{ watch_streams: {n}, watch_streams_per_principal: {n} }}",
            n = STREAMS
        ),
    );
    arrears(
        dir.path(),
        &[
            "demo",
            "--customers",
            "500",
            "--items",
            "5000",
            "--as-of",
            AS_OF,
        ],
    );
    let d = Daemon::spawn(dir);
    let ch = d.channel().await;
    let mut admin = pb::admin_client::AdminClient::with_interceptor(ch.clone(), with_token(SUP));
    // Warm up: both business dates once, so both phases measure the same steady state.
    for as_of in ["2026-12-23", AS_OF, "2026-12-23", AS_OF] {
        admin
            .trigger_run(pb::TriggerRunRequest {
                full: true,
                as_of: as_of.into(),
            })
            .await
            .unwrap();
    }
    let idle = measure(&d, &ch).await;

    // Another client (its own connection) opens the streams and never reads them.
    let other = d.channel().await;
    let mut wl = pb::worklists_client::WorklistsClient::with_interceptor(other, with_token(SUP));
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let s = wl
            .watch_worklist(pb::WatchWorklistRequest {
                scope: group("general"),
                filter: None,
            })
            .await
            .unwrap()
            .into_inner();
        streams.push(s);
    }
    let h = admin
        .health(pb::HealthRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.watchers as usize, STREAMS);
    let opened_mib = rss_kib(d.pid()) as f64 / 1024.0;
    let loaded = measure(&d, &ch).await;
    // The streams were only behind, not broken: one that reads now gets a fresh
    // snapshot (it missed more changes than are kept) or the changes, up to date.
    let first = wait_for(&mut streams[0], |_| true).await;
    assert_eq!(first.kind, pb::worklist_update::Kind::Snapshot as i32);
    let message_mib = prost::Message::encoded_len(&first) as f64 / (1 << 20) as f64;
    eprintln!(
        "idle: {idle:?}\n{STREAMS} unread streams: {loaded:?} \
         ({opened_mib:.1} MiB right after opening them; one update is {message_mib:.3} MiB)"
    );

    // Within 10 %, plus a little for a noisy shared machine. An open stream still
    // holds the one update HTTP/2 has in hand for it (hyper takes the next chunk of
    // a response before the client's window has room), so memory may also grow by
    // one update per stream, but not with the runs.
    let within = |idle: f64, loaded: f64, slack: f64| loaded <= idle * 1.1 + slack;
    let in_hand = STREAMS as f64 * message_mib;
    assert!(
        within(idle.rss_mib, loaded.rss_mib, 16.0 + in_hand),
        "memory: idle {idle:?}, with {STREAMS} unread streams {loaded:?}"
    );
    assert!(
        within(opened_mib, loaded.rss_mib, 16.0),
        "memory grew with the runs: {opened_mib} MiB after opening, then {loaded:?}"
    );
    assert!(
        within(idle.run_ms, loaded.run_ms, 150.0),
        "run time: idle {idle:?}, with {STREAMS} unread streams {loaded:?}"
    );
    assert!(
        within(idle.health_ms, loaded.health_ms, 25.0),
        "Health: idle {idle:?}, with {STREAMS} unread streams {loaded:?}"
    );
    drop(streams);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_with_resource_exhausted_and_errors_stay_short() {
    let dir = Daemon::prepare();
    with_limits(
        dir.path(),
        "{ watch_streams: 3, watch_streams_per_principal: 2 }",
    );
    let d = Daemon::spawn(dir);
    let ch = d.channel().await;
    let watch = |token: &'static str, scope| {
        let mut wl =
            pb::worklists_client::WorklistsClient::with_interceptor(ch.clone(), with_token(token));
        async move {
            wl.watch_worklist(pb::WatchWorklistRequest {
                scope,
                filter: None,
            })
            .await
            .map(|r| r.into_inner())
        }
    };

    let s1 = watch(SUP, group("general")).await.unwrap();
    let _s2 = watch(SUP, group("key_accounts")).await.unwrap();
    let e = watch(SUP, group("general")).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message()
            .contains("serve.limits.watch_streams_per_principal = 2"),
        "{e:?}"
    );
    let _s3 = watch(CHEN, mine()).await.unwrap();
    let e = watch(DARA, mine()).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message().contains("serve.limits.watch_streams = 3"),
        "{e:?}"
    );

    // A closed stream gives its slot back.
    drop(s1);
    let mut reopened = None;
    for _ in 0..100 {
        match watch(SUP, group("general")).await {
            Ok(s) => {
                reopened = Some(s);
                break;
            }
            Err(e) => assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        reopened.is_some(),
        "the closed stream's slot was not given back"
    );

    // A 1 MB field comes back as a short prefix, not as a 1 MB message.
    let huge = "x".repeat(1 << 20);
    let mut admin = pb::admin_client::AdminClient::with_interceptor(ch.clone(), with_token(SUP));
    let e = admin
        .trigger_run(pb::TriggerRunRequest {
            full: false,
            as_of: huge.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().len() < 200, "{} bytes", e.message().len());
    assert!(e.message().contains("as_of: `xxxx"), "{}", e.message());
    let mut wl =
        pb::worklists_client::WorklistsClient::with_interceptor(ch.clone(), with_token(SUP));
    let e = wl
        .get_worklist(pb::GetWorklistRequest {
            scope: group(&huge),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().len() <= 1100, "{} bytes", e.message().len());

    // A 195 KB rules file of nested flow collections is refused at once, by name.
    let depth = 195 * 1024 / 2;
    let deep = format!("groups: {}{}\n", "[".repeat(depth), "]".repeat(depth));
    let mut strat =
        pb::strategies_client::StrategiesClient::with_interceptor(ch.clone(), with_token(SUP));
    let r = strat
        .validate_rules(pb::ValidateRulesRequest {
            files: vec![pb::RuleFile {
                path: "deep.yaml".into(),
                content: deep,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.valid);
    assert!(
        r.problems.iter().any(|p| p.file == "deep.yaml"
            && p.line == 1
            && p.message.contains("nested deeper than 64 levels")),
        "{:?}",
        r.problems
    );
}
