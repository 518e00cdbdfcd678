//! End-to-end with a real non-Rust client: Python grpcio, stubs generated from
//! `proto/` at run time. `.ci/run` installs grpcio and grpcio-tools into `.venv`;
//! ARREARS_PYTHON names another interpreter that has them.

mod common;

use std::process::Command;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_client_pages_watches_and_gets_clear_errors() {
    let py = python();
    let probe = Command::new(&py)
        .args(["-c", "import grpc, grpc_tools"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {py}: {e}"));
    assert!(
        probe.status.success(),
        "{py} lacks grpcio/grpcio-tools: run .ci/run, or `pip install -r tests/python/requirements.txt` \
         and set ARREARS_PYTHON\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let dir = Daemon::prepare();
    arrears(
        dir.path(),
        &[
            "demo",
            "--customers",
            "80",
            "--items",
            "800",
            "--as-of",
            AS_OF,
        ],
    );
    let d = Daemon::start(dir);
    let addr = d.grpc.trim_start_matches("http://").to_string();
    let script = arrears_test_support::repo_root().join("tests/python/e2e_client.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(py)
            .arg(script)
            .args([addr.as_str(), SUP, CHEN])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("python client ok"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
