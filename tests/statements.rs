//! End-to-end: `arrears import statement` on the public sample statements
//! (tests/samples, see SOURCES.md there) against a real SQLite file.

use arrears_store::rusqlite;
use std::path::PathBuf;
use std::process::{Command, Output};

fn samples() -> Vec<PathBuf> {
    let root = arrears_test_support::repo_root().join("tests/samples");
    let mut out = Vec::new();
    for dir in ["camt053", "camt054", "mt940"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            out.push(e.unwrap().path());
        }
    }
    out.sort();
    out
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_arrears"))
            .args(args)
            .env("ARREARS_DB", self.path("arrears.db"))
            .env(
                "ARREARS_RULES",
                arrears_test_support::repo_root().join("rules"),
            )
            .env_remove("ARREARS_CONFIG")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "arrears {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
    fn sql(&self, q: &str) -> i64 {
        let c = rusqlite::Connection::open(self.path("arrears.db")).unwrap();
        c.query_row(q, [], |r| r.get(0)).unwrap()
    }
}

#[test]
fn every_sample_imports_and_a_second_import_pays_nothing() {
    let env = Env::new();
    env.ok(&[
        "demo",
        "--customers",
        "50",
        "--items",
        "400",
        "--as-of",
        "2026-11-23",
    ]);
    let files = samples();
    assert_eq!(files.len(), 19, "samples: {files:?}");
    let mut args: Vec<String> = vec!["import".into(), "statement".into(), "--json".into()];
    args.extend(files.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out: serde_json::Value = serde_json::from_str(&env.ok(&args)).unwrap();
    let reports = out.as_array().unwrap();
    assert_eq!(reports.len(), files.len());
    let mut credits = 0;
    for r in reports {
        assert!(r.get("error").is_none(), "{r}");
        assert_eq!(r["duplicate_file"], false, "{r}");
        let n = r["credits"].as_u64().unwrap();
        let sum = ["matched", "partial", "review", "unmatched"]
            .iter()
            .map(|k| r[k].as_u64().unwrap())
            .sum::<u64>();
        assert_eq!(n, sum, "every credit has one outcome: {r}");
        credits += n;
    }
    assert!(credits > 100, "credits found in all samples: {credits}");
    assert_eq!(
        env.sql("SELECT COUNT(*) FROM statement_files"),
        files.len() as i64
    );
    assert_eq!(
        env.sql("SELECT COUNT(*) FROM statement_credits"),
        credits as i64
    );
    let payments = env.sql("SELECT COUNT(*) FROM payments");

    // Again: every file is recognised; nothing is paid twice.
    let out: serde_json::Value = serde_json::from_str(&env.ok(&args)).unwrap();
    for r in out.as_array().unwrap() {
        assert_eq!(r["duplicate_file"], true, "{r}");
    }
    assert_eq!(env.sql("SELECT COUNT(*) FROM payments"), payments);
    assert_eq!(
        env.sql("SELECT COUNT(*) FROM statement_credits"),
        credits as i64
    );
}

/// The UBS sample pays "INVOICE R77561", CHF 474.4: with that invoice open, the
/// credit clears it and the next run closes its case.
#[test]
fn a_real_camt_credit_closes_the_case_of_the_invoice_it_names() {
    let env = Env::new();
    let csv = env.path("items.csv");
    std::fs::write(
        &csv,
        "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,currency\n\
         item,r77561,ACME_CH,C77,Jon Doe AG,R77561,2026-08-01,2026-09-01,474.40,CHF\n\
         item,r77562,ACME_CH,C77,Jon Doe AG,R77562,2026-08-01,2026-09-01,120.00,CHF\n",
    )
    .unwrap();
    env.ok(&["import", "csv", csv.to_str().unwrap()]);
    env.ok(&["run", "--as-of", "2026-11-23"]);
    let open_case = "SELECT COUNT(*) FROM cases c JOIN items i ON i.id = c.item_id \
                     WHERE i.document_no = 'R77561' AND c.status = 'open'";
    assert_eq!(env.sql(open_case), 1);

    let ubs = arrears_test_support::repo_root()
        .join("tests/samples/camt053/viafintech-camt_parser__ubs_camt053_v08.xml");
    let out = env.ok(&["import", "statement", ubs.to_str().unwrap()]);
    assert!(out.contains("camt.053.001.08"), "{out}");
    assert!(out.contains("matched 1"), "{out}");
    assert_eq!(
        env.sql("SELECT COUNT(*) FROM items WHERE document_no = 'R77561' AND status = 'cleared'"),
        1
    );
    assert_eq!(
        env.sql("SELECT COUNT(*) FROM items WHERE document_no = 'R77562' AND status = 'open'"),
        1,
        "the other invoice is untouched"
    );
    env.ok(&["run", "--as-of", "2026-11-24"]);
    assert_eq!(env.sql(open_case), 0, "the paid invoice's case closed");

    // The same statement re-exported (other bytes, same content): skipped whole.
    let copy = env.path("ubs-again.xml");
    let mut text = std::fs::read_to_string(&ubs).unwrap();
    text.push_str("\n<!-- exported again -->\n");
    std::fs::write(&copy, text).unwrap();
    let out = env.ok(&["import", "statement", copy.to_str().unwrap()]);
    assert!(out.contains("already imported and skipped"), "{out}");
    assert_eq!(
        env.sql("SELECT COUNT(*) FROM payments WHERE item_id IN (SELECT id FROM items WHERE document_no = 'R77561')"),
        1
    );
}

#[test]
fn a_broken_file_is_named_with_its_line_and_changes_nothing() {
    let env = Env::new();
    env.ok(&["demo", "--customers", "5", "--items", "20"]);
    let bad = env.path("broken.xml");
    let ubs = arrears_test_support::repo_root()
        .join("tests/samples/camt053/viafintech-camt_parser__ubs_camt053_v08.xml");
    let text = std::fs::read_to_string(ubs).unwrap();
    // An amount a person typed with a decimal comma, on the first entry's line.
    let text = text.replacen(">82721.95<", ">82721,95<", 1);
    std::fs::write(&bad, &text).unwrap();
    let line = text.lines().position(|l| l.contains("82721,95")).unwrap();
    let o = env.run(&["import", "statement", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("broken.xml:"), "{err}");
    assert!(err.contains("82721,95"), "{err}");
    // The error points at the amount's own line.
    let reported: usize = err
        .split("broken.xml:")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no line in {err}"));
    assert_eq!(reported, line + 1, "{err}");
    assert_eq!(env.sql("SELECT COUNT(*) FROM statement_files"), 0);

    let junk = env.path("junk.txt");
    std::fs::write(&junk, "hello, this is not a statement\n").unwrap();
    let o = env.run(&["import", "statement", junk.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a bank statement"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
