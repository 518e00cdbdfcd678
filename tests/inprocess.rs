//! The daemon as a library: `server::run` on listeners the test bound itself, stopped
//! by a future the test completes, with no child process and no sleeps (the listener
//! is bound before `run` starts, so a client's first call waits for it to serve).

mod common;

use arrears::server::{pb, run, ServeOptions};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_on_given_listeners_and_stops_on_the_given_future() {
    let dir = Daemon::prepare();
    arrears(
        dir.path(),
        &[
            "demo",
            "--customers",
            "30",
            "--items",
            "300",
            "--as-of",
            AS_OF,
        ],
    );
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = grpc.local_addr().unwrap();
    let cfg = arrears::config::ServeConfig {
        as_of: Some(AS_OF.parse().unwrap()),
        ..Default::default()
    };
    let opts = ServeOptions {
        db: dir.path().join("arrears.db"),
        rules_dir: dir.path().join("rules"),
        cfg,
        auth: Default::default(),
        connectors: vec![],
        delivery: None,
        audit: Default::default(),
        clock: std::sync::Arc::new(arrears::clock::SystemClock),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(run(opts, grpc, metrics, async {
        let _ = stopped.await;
    }));

    // No token configured: the local admin, on loopback only.
    let ch = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut admin = pb::admin_client::AdminClient::new(ch.clone());
    let run_summary = admin
        .trigger_run(pb::TriggerRunRequest {
            full: true,
            as_of: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(run_summary.customers_evaluated, 30);
    let page = pb::worklists_client::WorklistsClient::new(ch)
        .get_worklist(pb::GetWorklistRequest {
            scope: group("general"),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(page.total > 0, "{page:?}");

    stop.send(()).unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(60), daemon)
        .await
        .expect("run did not return after its shutdown future completed")
        .unwrap();
    assert!(ended.is_ok(), "{ended:?}");
}
