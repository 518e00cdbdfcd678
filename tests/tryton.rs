//! End-to-end with a real Tryton ERP: a Tryton 8.2 server on SQLite on loopback,
//! set up by `tests/tryton/fixture.py` (company, chart, dunning procedure,
//! customers with and without addresses and procedures, posted invoices, a blocked
//! dunning), pulled by the `tryton` connector. What Tryton knows decides who is
//! dunned and where letters go; an invoice paid in Tryton after a sync reaches
//! Arrears through the next (incremental) sync and closes its case. `.ci/run`
//! installs Tryton into `.venv`; ARREARS_PYTHON names another interpreter that has it.

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
        self.text(q).parse().unwrap()
    }
    /// One value of one row, as text ('' for NULL).
    fn text(&self, q: &str) -> String {
        let c = rusqlite::Connection::open(self.dir.path().join("arrears.db")).unwrap();
        c.query_row(q, [], |r| {
            Ok(match r.get_ref(0)? {
                rusqlite::types::ValueRef::Null => String::new(),
                rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                v => v.as_str().unwrap_or_default().to_string(),
            })
        })
        .unwrap_or_else(|e| panic!("{q}: {e}"))
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
    assert_eq!(invoices.len(), 5, "{setup}");

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
             database: {}\n    user: admin\n    password_env: TRYTON_TEST_PASSWORD\n    company: ACME\n    every: 0s\n    \
             overlap: 0s\n    write_back: true\n",
            setup["database"].as_str().unwrap()
        ),
    )
    .unwrap();

    // First sync (a full one): every posted invoice is an open item of its customer.
    let out = env.ok(&["sync", "erp"]);
    assert!(out.contains("5 open lines"), "{out}");
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
    // What Tryton knows of each party: Alpha's invoice address (its second one),
    // language and phone; Beta has no address; Gamma has no dunning procedure.
    let customer = |name: &str, cols: &str| {
        env.text(&format!(
            "SELECT {cols} FROM customers WHERE name = '{name}'"
        ))
    };
    let all = "street || '|' || postal_code || '|' || city || '|' || country || '|' || language \
               || '|' || phone || '|' || dunning_procedure";
    assert_eq!(
        customer("Alpha GmbH", all),
        "Hauptstraße 1|10115|Berlin|DE|de|+49 30 1234567|Standard"
    );
    assert_eq!(
        customer(
            "Beta AG",
            "COALESCE(street, '-') || '|' || dunning_procedure"
        ),
        "-|Standard"
    );
    assert_eq!(
        customer(
            "Gamma SA",
            "email || '|' || dunning_procedure || '|' || (dunning_procedure IS NULL)"
        ),
        "gamma@example.test||0",
        "no procedure in Tryton: excluded, not unknown"
    );
    // The blocked dunning in Tryton is a hold here.
    let blocked = setup["blocked"].as_str().unwrap();
    assert_eq!(
        env.text(&format!(
            "SELECT hold_reason FROM items WHERE document_no = '{blocked}'"
        )),
        "dunning blocked in Tryton"
    );

    env.ok(&["run", "--as-of", "2026-11-23"]);
    assert_eq!(
        env.sql("SELECT COUNT(*) FROM cases WHERE status = 'open'"),
        5
    );
    // Gamma is not dunned, and `explain` says why; it stays on the worklists.
    let gamma = format!("ACME/{}", invoices[4]["party_code"].as_str().unwrap());
    let why = env.ok(&["explain", &gamma]);
    assert!(
        why.contains("not dunned: the ERP has no dunning procedure"),
        "{why}"
    );
    assert_eq!(
        env.sql("SELECT COUNT(*) FROM escalations e JOIN customers c ON c.id = e.customer_id WHERE c.name = 'Gamma SA'"),
        0
    );
    // Alpha and Beta get their step. Neither has an e-mail address, so the e-mail
    // falls back to a letter: Alpha's goes, in German, to its invoice address, and
    // leaves out the blocked invoice; Beta's has no address and is never sent.
    env.ok(&["outbox", "send", "--now", "2026-11-23T10:00:00Z"]);
    let letter = |name: &str, col: &str| {
        env.text(&format!(
            "SELECT {col} FROM messages m JOIN customers c ON c.id = m.customer_id \
             WHERE c.name = '{name}' AND m.channel = 'letter'"
        ))
    };
    assert_eq!(letter("Alpha GmbH", "m.status"), "sent");
    assert_eq!(
        letter("Alpha GmbH", "m.recipient"),
        "Alpha GmbH\nHauptstraße 1\n10115 Berlin\nDE"
    );
    assert_eq!(letter("Alpha GmbH", "m.language"), "de");
    let body = letter("Alpha GmbH", "m.text");
    assert!(body.contains("Sehr geehrte Damen und Herren"), "{body}");
    assert!(
        !body.contains(blocked),
        "a blocked invoice is not dunned: {body}"
    );
    assert_eq!(letter("Beta AG", "m.status"), "failed");
    assert!(letter("Beta AG", "m.last_error").contains("no letter address"));
    assert_eq!(
        env.sql(
            "SELECT COUNT(*) FROM messages m JOIN customers c ON c.id = m.customer_id \
                 WHERE c.name = 'Beta AG' AND m.status = 'sent'"
        ),
        0,
        "nothing reached Beta"
    );

    // The same again: an incremental sync that changes nothing here, and tells
    // Tryton what was sent: a note on Alpha; Beta got nothing, so no note.
    let out = env.ok(&["sync", "erp"]);
    assert!(out.contains("changes since"), "{out}");
    assert!(out.contains("items new 0 updated 0 cleared 0"), "{out}");
    assert!(out.contains("1 steps written back as notes"), "{out}");
    let notes = run_fixture(&["notes", "--dir", t]);
    let notes = notes.as_array().unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["party"], "Alpha GmbH");
    let note = notes[0]["message"].as_str().unwrap();
    assert!(
        note.contains("sent by letter on 2026-11-23") && note.contains("INV/2026/0002"),
        "{note}"
    );
    assert!(!note.contains(blocked), "{note}");

    // Paid in Tryton after that sync: the next (incremental) sync sees the line
    // reconciled and clears it; the next run closes its case.
    let paid = invoices[0]["number"].as_str().unwrap().to_string();
    run_fixture(&["pay", "--dir", t, "--invoice", &paid]);
    let out = env.ok(&["sync", "erp"]);
    // No overlap in this test: only what the payment wrote is read (the reconciled
    // invoice line; the payment's own line is no item), and the newest line of the
    // last sync again, the read being inclusive.
    assert!(
        out.contains("changes since") && out.contains("1 open lines, 1 reconciled"),
        "{out}"
    );
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
    let out = env.ok(&["sync", "erp"]);
    // The new payment line and the invoice's open line, read again to apply it
    // (and the last payment's lines, the read being inclusive).
    assert!(out.contains("2 open lines, 1 reconciled"), "{out}");
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

    // A party changed in Tryton (an e-mail given, its addresses removed) and a
    // blocked dunning deleted there: an incremental sync sees both. Letters then
    // have nowhere to go, and the invoice is dunned again.
    run_fixture(&[
        "party",
        "--dir",
        t,
        "--name",
        "Alpha GmbH",
        "--email",
        "ap@alpha.example",
        "--drop-addresses",
    ]);
    run_fixture(&["unblock", "--dir", t, "--invoice", blocked]);
    let out = env.ok(&["sync", "erp"]);
    assert!(out.contains("changes since"), "{out}");
    assert_eq!(
        customer(
            "Alpha GmbH",
            "email || '|' || COALESCE(street, '-') || '|' || COALESCE(city, '-')"
        ),
        "ap@alpha.example|-|-"
    );
    assert_eq!(
        env.text(&format!(
            "SELECT COALESCE(hold_reason, '-') FROM items WHERE document_no = '{blocked}'"
        )),
        "-",
        "the block deleted in Tryton is lifted: {out}"
    );

    // A full snapshot when one is due (here: every sync) reads every open line.
    let cfg = env.dir.path().join("arrears.yaml");
    let yaml = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, yaml.replace("overlap: 0s", "full_every: 0s")).unwrap();
    let out = env.ok(&["sync", "erp"]);
    assert!(
        out.contains("5 open lines") && out.contains("cleared 0"),
        "4 invoices and the partial payment: {out}"
    );

    // A cursor lost (a crash after the notes were written, before the cursor was
    // stored): the next sync starts over, and still notes no step twice.
    rusqlite::Connection::open(env.dir.path().join("arrears.db"))
        .unwrap()
        .execute("DELETE FROM connector_state", [])
        .unwrap();
    let out = env.ok(&["sync", "erp"]);
    assert!(out.contains("0 steps written back"), "{out}");
    // Every later sync left the notes as they were: each step is noted once.
    assert_eq!(
        run_fixture(&["notes", "--dir", t])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Health: the connector saw a success; its cursor holds Tryton's clock, when
    // the last snapshot was stored and how far steps were written back.
    assert_eq!(
        env.sql(
            "SELECT json_extract(cursor, '$.changed') > '2026' AND json_extract(cursor, '$.full') > '2026' \
             AND json_extract(cursor, '$.written') > 0 FROM connector_state WHERE name = 'erp'"
        ),
        1
    );
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
        4,
        "a failed sync clears nothing"
    );
}
