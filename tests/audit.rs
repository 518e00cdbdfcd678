//! End-to-end: the keyed, anchored audit log through the `arrears` binary on a real
//! database file, tampered with from outside as someone with write access would.

mod common;

use arrears_store::rusqlite;
use std::path::PathBuf;
use std::process::{Command, Output};

const KEY: &str = "7f3c9a1e5b2d4c6e8f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d1e";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let env = Env { dir };
        std::fs::write(
            env.path("keyed.yaml"),
            format!(
                "audit:\n  key_id: k1\n  key_env: ARREARS_TEST_AUDIT_KEY\n  anchor_file: {}\n",
                env.anchor().display()
            ),
        )
        .unwrap();
        std::fs::write(env.path("keyless.yaml"), "log: warn\n").unwrap();
        std::fs::write(
            env.path("customers.csv"),
            "kind,company,customer,customer_name\ncustomer,ACME,C1,Example Ltd\n",
        )
        .unwrap();
        env
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn anchor(&self) -> PathBuf {
        self.path("anchor.log")
    }

    fn run(&self, config: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_arrears"))
            .arg("--config")
            .arg(self.path(config))
            .args(args)
            .env("ARREARS_DB", self.path("arrears.db"))
            .env(
                "ARREARS_RULES",
                arrears_test_support::repo_root().join("rules"),
            )
            .env("ARREARS_TEST_AUDIT_KEY", KEY)
            .env_remove("ARREARS_CONFIG")
            .env_remove("RUST_LOG")
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run("keyed.yaml", args);
        assert!(o.status.success(), "arrears {args:?} failed:\n{}", text(&o));
        String::from_utf8(o.stdout).unwrap()
    }

    /// `audit verify` that must fail; returns what it said.
    fn broken(&self, args: &[&str]) -> String {
        let mut all = vec!["audit", "verify"];
        all.extend_from_slice(args);
        let o = self.run("keyed.yaml", &all);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        text(&o)
    }

    /// A connection of someone with write access to the file, past the triggers.
    fn raw(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(self.path("arrears.db")).unwrap();
        c.execute_batch(
            "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;",
        )
        .unwrap();
        c
    }

    fn count(&self) -> i64 {
        rusqlite::Connection::open(self.path("arrears.db"))
            .unwrap()
            .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
            .unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Four audited changes from the command line, keyed and anchored.
fn written() -> Env {
    let env = Env::new();
    env.ok(&["import", "csv", "customers.csv"]);
    env.ok(&["resubmit", "C1", "--on", "2026-12-01"]);
    env.ok(&[
        "hold",
        "C1",
        "--reason",
        "in talks",
        "--until",
        "2026-12-31",
    ]);
    env.ok(&["resubmit", "C1", "--on", "2026-12-15"]);
    env.ok(&["hold", "C1", "--lift", "--reason", "agreed"]);
    assert_eq!(env.count(), 4);
    env
}

#[test]
fn a_keyed_log_verifies_against_its_anchor_and_exports_its_key_ids() {
    let env = written();
    let out = env.ok(&["audit", "verify"]);
    assert!(
        out.contains("intact: 4 record(s) (4 with key `k1`)"),
        "{out}"
    );
    assert!(out.contains("anchored up to record 4"), "{out}");
    let anchor = std::fs::read_to_string(env.anchor()).unwrap();
    assert_eq!(anchor.lines().count(), 4, "one line per commit: {anchor}");

    let csv = env.ok(&["audit", "export", "--format", "csv"]);
    assert!(
        csv.starts_with("id,at,principal,action,target,before,after,prev_hash,hash,key_id\n"),
        "{csv}"
    );
    let jsonl = env.ok(&["audit", "export"]);
    let first: serde_json::Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
    assert_eq!(first["key_id"], "k1");
}

#[test]
fn a_command_without_the_key_is_refused_on_a_keyed_log() {
    let env = written();
    let o = env.run("keyless.yaml", &["resubmit", "C1", "--on", "2027-01-01"]);
    assert!(!o.status.success());
    let said = text(&o);
    assert!(
        said.contains("audit.key_file or audit.key_env") && said.contains("nothing was written"),
        "{said}"
    );
    assert_eq!(env.count(), 4);
    let resubmissions: i64 = rusqlite::Connection::open(env.path("arrears.db"))
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM resubmissions WHERE on_date = '2027-01-01'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(resubmissions, 0, "the change went with its refused record");
}

#[test]
fn a_deleted_tail_is_found_through_the_anchor_and_named() {
    let env = written();
    env.raw()
        .execute("DELETE FROM audit WHERE id >= 3", [])
        .unwrap();
    // Given the anchor explicitly, and by default from audit.anchor_file.
    let anchor = env.anchor();
    for args in [vec!["--anchor", anchor.to_str().unwrap()], vec![]] {
        let said = env.broken(&args);
        assert!(
            said.contains(
                "broken at record 3: truncated: the anchor says record 4 exists, the log ends at 2"
            ),
            "{said}"
        );
    }
}

#[test]
fn edits_deletions_and_reordering_are_named_by_record() {
    let env = written();
    env.raw()
        .execute(
            "UPDATE audit SET principal = 'someone else' WHERE id = 2",
            [],
        )
        .unwrap();
    let said = env.broken(&[]);
    assert!(
        said.contains("broken at record 2: its MAC does not match its contents"),
        "{said}"
    );

    let env = written();
    env.raw()
        .execute("DELETE FROM audit WHERE id = 2", [])
        .unwrap();
    let said = env.broken(&[]);
    assert!(said.contains("broken at record 2: missing"), "{said}");

    let env = written();
    env.raw()
        .execute_batch(
            "UPDATE audit SET id = 100 WHERE id = 2;
             UPDATE audit SET id = 2 WHERE id = 3;
             UPDATE audit SET id = 3 WHERE id = 100;",
        )
        .unwrap();
    let said = env.broken(&[]);
    assert!(
        said.contains("broken at record 2: it holds record 3's entry (the log was reordered)"),
        "{said}"
    );
}

#[test]
fn the_daemon_writes_keyed_anchored_records_and_exports_the_head() {
    let dir = common::Daemon::prepare();
    let key = dir.path().join("audit.key");
    std::fs::write(&key, KEY).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = dir.path().join("arrears.yaml");
    let mut yaml = std::fs::read_to_string(&config).unwrap();
    yaml.push_str(&format!(
        "audit:\n  key_id: d1\n  key_file: '{}'\n  anchor_file: '{}'\n",
        key.display(),
        dir.path().join("anchor.log").display()
    ));
    std::fs::write(&config, yaml).unwrap();
    let d = common::Daemon::start(dir);

    // A rules edit: the daemon reloads them and audits the reload.
    let strategies = d.path("rules/strategies.yaml");
    let mut rules = std::fs::read_to_string(&strategies).unwrap();
    rules.push_str("\n# touched by the audit test\n");
    std::fs::write(&strategies, rules).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let head = loop {
        let metrics = d.scrape();
        let head = metrics
            .lines()
            .find_map(|l| l.strip_prefix("arrears_audit_head_sequence "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if head >= 1.0 {
            break head;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the audit head never moved:\n{metrics}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };

    let o = Command::new(env!("CARGO_BIN_EXE_arrears"))
        .args(["--config", config.to_str().unwrap(), "audit", "verify"])
        .env("ARREARS_DB", d.path("arrears.db"))
        .env("ARREARS_RULES", d.path("rules"))
        .env_remove("ARREARS_CONFIG")
        .output()
        .unwrap();
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    assert!(said.contains("with key `d1`"), "{said}");
    assert!(
        said.contains(&format!("anchored up to record {head}")),
        "{said}"
    );
}
