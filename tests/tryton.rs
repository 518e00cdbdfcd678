//! End-to-end with a real Tryton ERP: a Tryton 8.2 server on SQLite on loopback,
//! set up by `tests/tryton/fixture.py` (company, chart, customers, posted
//! invoices), pulled by the `tryton` connector; an invoice paid in Tryton then
//! closes its case in Arrears. `.ci/run` installs Tryton into `.venv`;
//! ARREARS_PYTHON names another interpreter that has it.

mod common;

use arrears_store::rusqlite;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::python;

fn fixture() -> PathBuf {
    arrears_test_support::repo_root().join("tests/tryton/fixture.py")
}

fn run_fixture(args: &[&str]) -> serde_json::Value {
    let o = Command::new(python())
        .arg(fixture())
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "fixture.py {args:?}:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "fixture.py {args:?} printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn arrears(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_arrears"))
            .arg("--config")
            .arg(self.dir.path().join("arrears.yaml"))
            .args(args)
            .env("ARREARS_DB", self.dir.path().join("arrears.db"))
            .env(
                "ARREARS_RULES",
                arrears_test_support::repo_root().join("rules"),
            )
            .env("TRYTON_TEST_PASSWORD", "admin")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.arrears(args);
        assert!(
            o.status.success(),
            "arrears {args:?}:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
    fn sql(&self, q: &str) -> i64 {
        let c = rusqlite::Connection::open(self.dir.path().join("arrears.db")).unwrap();
        c.query_row(q, [], |r| r.get(0)).unwrap()
    }
}

#[test]
fn invoices_posted_in_tryton_open_cases_and_paying_one_closes_its_case() {
    let py = python();
    let probe = Command::new(&py)
        .args(["-c", "import trytond, proteus"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {py}: {e}"));
    assert!(
        probe.status.success(),
        "{py} lacks trytond/proteus: run .ci/run, or `pip install -r tests/tryton/requirements.txt` \
         and set ARREARS_PYTHON\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let tryton_dir = tempfile::tempdir().unwrap();
    let t = tryton_dir.path().to_str().unwrap();
    let setup = run_fixture(&["setup", "--dir", t]);
    let port = setup["port"].as_u64().expect("port");
    let invoices = setup["invoices"].as_array().expect("invoices").clone();
    assert_eq!(invoices.len(), 3, "{setup}");

    let server = Server(
        Command::new(&py)
            .arg(fixture())
            .args(["serve", "--dir", t])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    while std::net::TcpStream::connect(("127.0.0.1", port as u16)).is_err() {
        assert!(Instant::now() < deadline, "Tryton did not listen on {port}");
        std::thread::sleep(Duration::from_millis(200));
    }

    let env = Env {
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::write(
        env.dir.path().join("arrears.yaml"),
        format!(
            "connectors:\n  - name: erp\n    kind: tryton\n    url: http://127.0.0.1:{port}\n    \
             database: {}\n    user: admin\n    password_env: TRYTON_TEST_PASSWORD\n    company: ACME\n    every: 0s\n",
            setup["database"].as_str().unwrap()
        ),
    )
    .unwrap();

    // First sync: every posted invoice is an open item of its customer.
    let out = env.ok(&["sync", "erp"]);
    assert!(out.contains("3 open lines"), "{out}");
    for inv in &invoices {
        let number = inv["number"].as_str().unwrap();
        let total = inv["total"].as_str().unwrap();
        assert_eq!(
            env.sql(&format!(
                "SELECT COUNT(*) FROM items WHERE document_no = '{number}' AND status = 'open' \
                 AND CAST(open_amount AS REAL) = {total} AND currency = 'EUR'"
            )),
            1,
            "invoice {inv}"
        );
    }
    assert_eq!(
        env.sql("SELECT COUNT(*) FROM customers WHERE name IN ('Alpha GmbH', 'Beta AG')"),
        2
    );
    env.ok(&["run", "--as-of", "2026-11-23"]);
    assert_eq!(
        env.sql("SELECT COUNT(*) FROM cases WHERE status = 'open'"),
        3
    );

    // The same again changes nothing.
    let out = env.ok(&["sync", "erp"]);
    assert!(out.contains("items new 0"), "{out}");

    // Paid in Tryton: the next sync clears it, the next run closes its case.
    let paid = invoices[0]["number"].as_str().unwrap().to_string();
    run_fixture(&["pay", "--dir", t, "--invoice", &paid]);
    let out = env.ok(&["sync", "erp"]);
    assert!(out.contains("2 open lines"), "{out}");
    assert!(out.contains("cleared 1"), "{out}");
    env.ok(&["run", "--as-of", "2026-11-24"]);
    let open_case = |doc: &str| {
        env.sql(&format!(
            "SELECT COUNT(*) FROM cases c JOIN items i ON i.id = c.item_id \
             WHERE i.document_no = '{doc}' AND c.status = 'open'"
        ))
    };
    assert_eq!(open_case(&paid), 0, "the paid invoice's case closed");
    for inv in &invoices[1..] {
        assert_eq!(open_case(inv["number"].as_str().unwrap()), 1, "{inv}");
    }

    // A partial payment in Tryton lowers the open amount; the case stays open.
    let part = invoices[1]["number"].as_str().unwrap().to_string();
    let total: f64 = invoices[1]["total"].as_str().unwrap().parse().unwrap();
    run_fixture(&["pay", "--dir", t, "--invoice", &part, "--amount", "100"]);
    env.ok(&["sync", "erp"]);
    assert_eq!(
        env.sql(&format!(
            "SELECT COUNT(*) FROM items WHERE document_no = '{part}' AND status = 'open' \
             AND CAST(open_amount AS REAL) = {}",
            total - 100.0
        )),
        1,
        "partly paid: {total} - 100 open"
    );
    env.ok(&["run", "--as-of", "2026-11-24"]);
    assert_eq!(open_case(&part), 1);

    // Health: the connector saw a success, and its cursor is Tryton's write date.
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["connectors", "--json"])).unwrap();
    let erp = &v[0];
    assert_eq!(erp["name"], "erp");
    assert!(!erp["last_success"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!(erp["errors_total"], 0, "{v}");

    // Tryton gone: a clear error naming the connector; the snapshot is not applied.
    drop(server);
    let o = env.arrears(&["sync", "erp"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("erp:"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        env.sql("SELECT COUNT(*) FROM items WHERE status = 'open'"),
        2,
        "a failed sync clears nothing"
    );
}
