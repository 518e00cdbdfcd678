//! End-to-end: the real `arrears` binary on a temporary database and rules copy.

use arrears_store::rusqlite;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(
            &arrears_test_support::repo_root().join("rules"),
            &dir.path().join("rules"),
        );
        Env { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_arrears"))
            .args(args)
            .env("ARREARS_DB", self.path("arrears.db"))
            .env("ARREARS_RULES", self.path("rules"))
            .env_remove("ARREARS_CONFIG")
            .env_remove("RUST_LOG")
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    /// Runs and asserts success; returns stdout.
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

    fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    fn sql(&self, q: &str) -> i64 {
        let c = rusqlite::Connection::open(self.path("arrears.db")).unwrap();
        c.query_row(q, [], |r| r.get(0)).unwrap()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn check_passes_on_shipped_rules_and_names_file_line_on_broken_copies() {
    let env = Env::new();
    let out = env.ok(&["check"]);
    assert!(out.contains(": ok"), "{out}");

    let esc = env.path("rules/escalation.yaml");
    let text = std::fs::read_to_string(&esc).unwrap();
    let line = text.lines().position(|l| l.contains("channel:")).unwrap() + 1;
    std::fs::write(&esc, text.replacen("channel:", "chanel:", 1)).unwrap();
    let o = env.run(&["check"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("escalation.yaml:{line}:")) && err.contains("chanel"),
        "{err}"
    );

    // A semantic error and a script error are both reported in one pass.
    std::fs::write(&esc, &text).unwrap();
    let groups = env.path("rules/groups.yaml");
    let g = std::fs::read_to_string(&groups).unwrap();
    std::fs::write(
        &groups,
        g.replacen("substitute: ", "substitute: nobody_", 1),
    )
    .unwrap();
    std::fs::write(
        env.path("rules/scripts/key_accounts.rhai"),
        "fn score(c, s) {\n  s +\n}\n",
    )
    .unwrap();
    let o = env.run(&["check"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("groups.yaml:") && err.contains("not a known collector"),
        "{err}"
    );
    assert!(err.contains("key_accounts.rhai:3:"), "{err}");
    assert!(err.contains("2 error(s)"), "{err}");
}

/// Issue 11: every YAML error of every file, once each, at the value's own line and
/// column, and nothing about the sections they are in being missing.
#[test]
fn check_reports_every_yaml_error_once_at_its_value() {
    let env = Env::new();
    let edit = |file: &str, edits: &[(&str, &str)]| {
        let p = env.path(&format!("rules/{file}"));
        let mut text = std::fs::read_to_string(&p).unwrap();
        for (old, new) in edits {
            text = text.replacen(old, new, 1);
        }
        std::fs::write(&p, &text).unwrap();
        text
    };
    let place = |text: &str, file: &str, needle: &str| {
        let (n, line) = text
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains(needle))
            .unwrap();
        format!("{file}:{}:{}: ", n + 1, line.find(needle).unwrap() + 1)
    };
    let strat = edit(
        "strategies.yaml",
        &[
            ("points: 15", "points: lots"),
            ("min_score: 40", "min_score: forty"),
        ],
    );
    let esc = edit(
        "escalation.yaml",
        &[("overdue_days: 7", "overdue_days: soon")],
    );
    let o = env.run(&["check"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    for (text, file, needle) in [
        (&strat, "strategies.yaml", "lots"),
        (&strat, "strategies.yaml", "forty"),
        (&esc, "escalation.yaml", "soon"),
    ] {
        let at = place(text, file, needle);
        assert_eq!(err.matches(&at).count(), 1, "{at} in:\n{err}");
    }
    assert!(
        err.contains("strategies[0].criteria[1].points: `lots` is not a decimal amount"),
        "{err}"
    );
    assert!(
        !err.contains("no `strategies`") && !err.contains("unknown ladder"),
        "{err}"
    );
    assert!(err.contains("3 error(s)"), "{err}");
}

#[test]
fn demo_run_worklist_explain_and_incremental_rerun() {
    let env = Env::new();
    env.ok(&[
        "demo",
        "--customers",
        "60",
        "--items",
        "600",
        "--seed",
        "7",
        "--as-of",
        "2026-11-23",
    ]);
    let s = env.json(&["run", "--as-of", "2026-11-23", "--json"]);
    assert_eq!(s["mode"], "full");
    let open_items = env.sql("SELECT COUNT(*) FROM items WHERE status = 'open'");
    assert_eq!(
        s["cases_opened"].as_i64().unwrap(),
        open_items,
        "every open item back-filled into a case"
    );
    assert_eq!(
        env.sql("SELECT COUNT(*) FROM cases WHERE status = 'open'"),
        open_items
    );
    assert!(s["escalations"].as_i64().unwrap() > 0, "{s}");
    assert!(s["worklist"]["entries"].as_i64().unwrap() > 0, "{s}");

    // Re-running the same day changes nothing and never escalates twice.
    let s2 = env.json(&["run", "--as-of", "2026-11-23", "--json"]);
    assert_eq!(s2["mode"], "incremental");
    assert_eq!(s2["customers_evaluated"], 0);
    let s3 = env.json(&["run", "--as-of", "2026-11-23", "--mode", "full", "--json"]);
    assert_eq!(
        (s3["cases_opened"].as_i64(), s3["escalations"].as_i64()),
        (Some(0), Some(0)),
        "{s3}"
    );
    assert_eq!(
        env.sql("SELECT COUNT(*) FROM escalations"),
        s["escalations"].as_i64().unwrap()
    );

    // My worklist: mine + unassigned of my groups, ordered by NAD then priority.
    let collector: String = {
        let c = rusqlite::Connection::open(env.path("arrears.db")).unwrap();
        c.query_row("SELECT collector FROM worklist WHERE collector IS NOT NULL GROUP BY collector ORDER BY COUNT(*) DESC LIMIT 1", [], |r| r.get(0)).unwrap()
    };
    let wl = env.json(&[
        "worklist",
        "--collector",
        &collector,
        "--json",
        "--limit",
        "1000",
    ]);
    let wl = wl.as_array().unwrap();
    assert!(!wl.is_empty());
    let keys: Vec<(String, i64)> = wl
        .iter()
        .map(|e| {
            assert!(e["collector"].is_null() || e["collector"] == collector.as_str());
            let p = match e["priority"].as_str().unwrap() {
                "high" => 0,
                "medium" => 1,
                _ => 2,
            };
            (e["nad"].as_str().unwrap().to_string(), p)
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    let human = env.ok(&["worklist", "--collector", &collector]);
    assert!(
        human.contains(&format!("worklist of {collector}")),
        "{human}"
    );

    // Explain names the rules behind the numbers.
    let code = wl[0]["customer"].as_str().unwrap();
    let company = wl[0]["company"].as_str().unwrap();
    let key = format!("{company}/{code}");
    let ex = env.ok(&["explain", &key, "--as-of", "2026-11-23"]);
    for needle in [
        "strategy",
        "segment",
        "score",
        "profile",
        "group",
        "NAD",
        "escalation ladder",
    ] {
        assert!(ex.contains(needle), "explain lacks {needle}:\n{ex}");
    }
    let exj = env.json(&["explain", &key, "--as-of", "2026-11-23", "--json"]);
    let pts: rust_decimal::Decimal = exj["trace"]["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["held"] == true)
        .map(|c| {
            c["points"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        })
        .sum();
    let score: rust_decimal::Decimal = exj["facts"]["score"].as_str().unwrap().parse().unwrap();
    let scripted = exj["trace"]["script_notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n.as_str().unwrap().starts_with("score "));
    if !scripted {
        assert_eq!(pts, score, "score is the sum of the held criteria's points");
    }

    // The next day is a full run again (dates moved), and NADs reached yesterday stay due.
    let s4 = env.json(&["run", "--as-of", "2026-11-24", "--json"]);
    assert_eq!(s4["mode"], "full");
}

const HEADER: &str = "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,open_amount,currency,item_ref,original_document\n";

#[test]
fn csv_import_rejects_bad_files_whole_or_skips_bad_rows_on_request() {
    let env = Env::new();
    let good = env.path("good.csv");
    std::fs::write(
        &good,
        format!(
            "{HEADER}item,g1,ACME_DE,C9,Gamma KG,INV-9,2026-09-01,2026-10-01,10.00,10.00,EUR,,\n"
        ),
    )
    .unwrap();
    env.ok(&["import", "csv", good.to_str().unwrap()]);
    let bad = env.path("bad.csv");
    std::fs::write(
        &bad,
        format!(
            "{HEADER}item,i1,ACME_DE,C1,Alpha GmbH,INV-1,2026-09-01,2026-10-01,100.00,100.00,EUR,,\n\
             item,i2,ACME_DE,C1,Alpha GmbH,INV-2,2026-09-01,2026-08-01,50.00,50.00,EUR,,\n\
             item,i3,ACME_DE,C1,Alpha GmbH,INV-3,2026-09-01,2026-10-01,abc,,EUR,,\n\
             item,i4,ACME_DE,C1,Alpha GmbH,INV-4,2026-09-01,2026-10-01,10.00,,EUX,,\n"
        ),
    )
    .unwrap();
    let o = env.run(&["import", "csv", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    for line in ["line 3", "line 4", "line 5"] {
        assert!(err.contains(line), "missing {line}: {err}");
    }
    assert_eq!(
        env.sql("SELECT COUNT(*) FROM items"),
        1,
        "nothing imported from a rejected file"
    );

    let out = env.ok(&["import", "csv", bad.to_str().unwrap(), "--skip-invalid"]);
    assert!(out.contains("3 rejected"), "{out}");
    assert_eq!(env.sql("SELECT COUNT(*) FROM items"), 2);
    let rejects = std::fs::read_to_string(env.path("bad.rejected.csv")).unwrap();
    assert_eq!(
        rejects.lines().count(),
        4,
        "header + 3 rejected rows kept: {rejects}"
    );
}

#[test]
fn case_lifecycle_backfill_clear_split_and_collector_actions() {
    let env = Env::new();
    let f = env.path("items.csv");
    std::fs::write(
        &f,
        format!(
            "{HEADER}item,i1,ACME_DE,C1,Alpha GmbH,INV-1,2026-09-01,2026-10-01,100.00,100.00,EUR,,\n\
             item,i2,ACME_DE,C1,Alpha GmbH,INV-2,2026-09-05,2026-10-05,5000.00,5000.00,EUR,,\n\
             item,i3,ACME_DE,C2,Beta AG,INV-3,2026-11-20,2026-12-20,70.00,70.00,EUR,,\n"
        ),
    )
    .unwrap();
    env.ok(&["import", "csv", f.to_str().unwrap()]);
    let s = env.json(&["run", "--as-of", "2026-11-23", "--json"]);
    assert_eq!(
        s["cases_opened"], 3,
        "existing items are back-filled into cases"
    );

    // ByDesign: NAD = document date + 3; passed NAD + not high + 53 days → medium.
    let c1 = env.json(&["case", "show", "INV-1", "--json"]);
    assert_eq!(c1["nad"], "2026-09-04");
    assert_eq!(c1["priority"], "medium");
    let c3 = env.json(&["case", "show", "INV-3", "--json"]);
    assert_eq!(
        (c3["nad"].as_str(), c3["priority"].as_str()),
        (Some("2026-11-23"), Some("low"))
    );

    // Activity: NAD = today + days to complete of the subcategory; completing with a PTP → PTP + 1.
    let id = c1["id"].to_string();
    env.ok(&[
        "case",
        "activity",
        &id,
        "--category",
        "contact",
        "--subcategory",
        "first_call",
        "--on",
        "2026-11-23",
    ]);
    let c = env.json(&["case", "show", &id, "--json"]);
    assert_eq!(c["nad"], "2026-11-25");
    env.ok(&[
        "case",
        "note",
        &id,
        "customer asked for a copy",
        "--on",
        "2026-11-24",
    ]);
    assert_eq!(
        env.json(&["case", "show", &id, "--json"])["nad"],
        "2026-11-26",
        "a later edit re-applies the days"
    );
    env.ok(&[
        "case",
        "complete",
        &id,
        "--ptp-date",
        "2026-11-30",
        "--ptp-amount",
        "100.00",
        "--on",
        "2026-11-24",
    ]);
    let c = env.json(&["case", "show", &id, "--json"]);
    assert_eq!(c["nad"], "2026-12-01");
    let kinds: Vec<&str> = c["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["activity", "note", "completed"]);
    let o = env.run(&["case", "complete", &id, "--on", "2026-11-24"]);
    assert!(!o.status.success(), "no open activity left to complete");
    // Each change from the command line is in the audit log, the refused one not.
    assert_eq!(
        env.sql(&format!(
            "SELECT COUNT(*) FROM audit WHERE principal LIKE 'local:%' AND target = 'case {id}' \
             AND action IN ('case.activity', 'case.note', 'case.complete')"
        )),
        3
    );
    // The chain verifies; the export carries every record with its hashes.
    assert!(env.ok(&["audit", "verify"]).contains("intact: 3 record(s)"));
    let out = env.path("audit.jsonl");
    env.ok(&["audit", "export", "--out", out.to_str().unwrap()]);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["prev_hash"], lines[0]["hash"]);
    let csv = env.ok(&["audit", "export", "--format", "csv"]);
    assert!(
        csv.starts_with("id,at,principal,action,target,before,after,prev_hash,hash,key_id\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 4);
    // Someone with write access to the file edits a record behind the triggers.
    {
        let c = rusqlite::Connection::open(env.path("arrears.db")).unwrap();
        c.execute_batch(
            "DROP TRIGGER audit_no_update; UPDATE audit SET after = '{}' WHERE id = 2;",
        )
        .unwrap();
    }
    let o = env.run(&["audit", "verify"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("broken at record 2"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // INV-1 paid, INV-2 split into two instalments by the ERP.
    std::fs::write(
        &f,
        format!(
            "{HEADER}item,i1,ACME_DE,C1,Alpha GmbH,INV-1,2026-09-01,2026-10-01,100.00,0,EUR,,\n\
             item,i2a,ACME_DE,C1,Alpha GmbH,INV-2-1,2026-09-05,2026-12-05,2500.00,2500.00,EUR,,INV-2\n\
             item,i2b,ACME_DE,C1,Alpha GmbH,INV-2-2,2026-09-05,2027-01-05,2500.00,2500.00,EUR,,INV-2\n\
             item,i3,ACME_DE,C2,Beta AG,INV-3,2026-11-20,2026-12-20,70.00,70.00,EUR,,\n"
        ),
    )
    .unwrap();
    env.ok(&["import", "csv", f.to_str().unwrap(), "--snapshot"]);
    let s = env.json(&["run", "--as-of", "2026-11-25", "--json"]);
    assert_eq!(
        (s["cases_closed"].as_i64(), s["cases_opened"].as_i64()),
        (Some(2), Some(2)),
        "{s}"
    );
    let old = env.json(&["case", "show", "INV-2", "--json"]);
    assert_eq!(old["status"], "closed");
    assert_eq!(old["close_reason"], "split or re-posted");
    let paid = env.json(&["case", "show", &id, "--json"]);
    assert_eq!(
        (paid["status"].as_str(), paid["close_reason"].as_str()),
        (Some("closed"), Some("cleared"))
    );
    let new = env.json(&["case", "show", "INV-2-1", "--json"]);
    assert_eq!(
        (new["status"].as_str(), new["external_ref"].as_str()),
        (Some("open"), Some("INV-2"))
    );
}

#[test]
fn a_runaway_script_is_reported_and_the_run_completes() {
    let env = Env::new();
    std::fs::write(
        env.path("rules/scripts/key_accounts.rhai"),
        "fn score(c, s) { let x = 0; loop { x += 1; } }\n",
    )
    .unwrap();
    let strat = env.path("rules/strategies.yaml");
    let text = std::fs::read_to_string(&strat).unwrap();
    // Let the script run for every customer, not only key accounts.
    let start = text.find("scripts:").unwrap();
    std::fs::write(
        &strat,
        format!(
            "{}scripts:\n  - file: scripts/key_accounts.rhai\n",
            &text[..start]
        ),
    )
    .unwrap();
    env.ok(&["check"]);
    env.ok(&[
        "demo",
        "--customers",
        "5",
        "--items",
        "30",
        "--as-of",
        "2026-11-23",
    ]);
    let s = env.json(&["run", "--as-of", "2026-11-23", "--json"]);
    assert_eq!(s["customers_evaluated"], 5);
    assert_eq!(s["script_limit_hits"], 5, "{s}");
    assert!(
        s["problems"][0]
            .as_str()
            .unwrap()
            .contains("key_accounts.rhai"),
        "{s}"
    );
}

#[test]
fn simulate_reports_what_a_candidate_rule_set_would_change_and_writes_nothing() {
    let env = Env::new();
    env.ok(&[
        "demo",
        "--customers",
        "80",
        "--items",
        "800",
        "--seed",
        "3",
        "--as-of",
        "2026-11-23",
    ]);
    env.ok(&["run", "--as-of", "2026-11-23"]);
    let cand = env.path("candidate");
    copy_dir(&env.path("rules"), &cand);

    // Unchanged rules: nothing changes.
    let same = env.json(&[
        "simulate",
        cand.to_str().unwrap(),
        "--as-of",
        "2026-11-23",
        "--json",
    ]);
    assert_eq!(same["changed"], 0, "{same}");
    assert_eq!(same["customers"], 80);

    // Lower the key-account threshold: customers move segment and group.
    let strat = cand.join("strategies.yaml");
    let text = std::fs::read_to_string(&strat).unwrap();
    assert!(text.contains("gte: 100000"));
    std::fs::write(&strat, text.replace("gte: 100000", "gte: 20000")).unwrap();
    let before_state = env.sql("SELECT COUNT(*) FROM customer_state WHERE segment = 'key_account'");
    let runs = env.sql("SELECT COUNT(*) FROM runs");
    let rep = env.json(&[
        "simulate",
        cand.to_str().unwrap(),
        "--as-of",
        "2026-11-23",
        "--json",
    ]);
    let moved = rep["transitions"]["segment"].as_object().unwrap();
    assert!(moved.keys().any(|k| k.ends_with("-> key_account")), "{rep}");
    assert!(
        rep["transitions"]["group"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.ends_with("-> key_accounts")),
        "{rep}"
    );
    assert!(rep["changed"].as_i64().unwrap() > 0);
    let human = env.ok(&["simulate", cand.to_str().unwrap(), "--as-of", "2026-11-23"]);
    assert!(
        human.contains("segment:") && human.contains("customers change"),
        "{human}"
    );
    assert_eq!(
        env.sql("SELECT COUNT(*) FROM customer_state WHERE segment = 'key_account'"),
        before_state,
        "nothing written"
    );
    assert_eq!(env.sql("SELECT COUNT(*) FROM runs"), runs);

    // A broken candidate is refused with its file and line.
    std::fs::write(&strat, "strategies: [\n").unwrap();
    let o = env.run(&["simulate", cand.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("strategies.yaml:"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn rule_fixtures_pass_on_the_shipped_policy_and_a_wrong_expectation_fails_with_its_line() {
    let env = Env::new();
    let out = env.ok(&["test"]);
    assert!(out.contains(" 0 failed"), "{out}");
    assert!(out.contains("ok    "), "{out}");

    // Changing the policy under a fixture makes that fixture fail, naming its line.
    let f = env.path("rules/tests/default_policy.yaml");
    let text = std::fs::read_to_string(&f).unwrap();
    assert!(text.contains("score: 59.50"));
    std::fs::write(&f, text.replace("score: 59.50", "score: 60.50")).unwrap();
    let o = env.run(&["test"]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    let line = text
        .lines()
        .position(|l| l.contains("long overdue over the credit limit"))
        .unwrap()
        + 1;
    assert!(
        out.contains("FAIL  ") && out.contains(&format!("default_policy.yaml:{line}")),
        "{out}"
    );
    assert!(out.contains("score") && out.contains("59.5"), "{out}");
    assert!(out.contains("1 failed"), "{out}");

    // An unknown key in a fixture is an error, not a silently skipped check.
    std::fs::write(&f, text.replace("segment: standard", "segmnet: standard")).unwrap();
    let o = env.run(&["test"]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("unknown field `segmnet`"), "{out}");
}

/// The README's renegotiation: price two invoices, agree six Price instalments, write
/// the letter; the invoices leave collection and the instalments are items.
#[test]
fn a_renegotiation_from_the_command_line() {
    let env = Env::new();
    let f = env.path("items.csv");
    std::fs::write(
        &f,
        format!(
            "{HEADER}item,i1,ACME_DE,C1,Alpha GmbH,INV-1,2026-08-01,2026-09-01,1000.00,1000.00,EUR,,\n\
             item,i2,ACME_DE,C1,Alpha GmbH,INV-2,2026-09-01,2026-10-01,500.00,500.00,EUR,,\n"
        ),
    )
    .unwrap();
    env.ok(&["import", "csv", f.to_str().unwrap()]);
    env.ok(&["run", "--as-of", "2026-11-23"]);
    let a = env.json(&[
        "agreement",
        "propose",
        "INV-1",
        "INV-2",
        "--plan",
        "price",
        "--installments",
        "6",
        "--first-due",
        "2026-12-15",
        "--on",
        "2026-11-23",
        "--json",
    ]);
    // 1000 + 500 + fines 30.00 + interest 27.29 + 8.71 (see the store test).
    assert_eq!(
        (a["status"].as_str(), a["debt"].as_str()),
        (Some("active"), Some("1566.00"))
    );
    let sched = a["schedule"].as_array().unwrap();
    assert_eq!(sched.len(), 6);
    let sum: rust_decimal::Decimal = sched
        .iter()
        .map(|s| {
            s["principal"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        })
        .sum();
    assert_eq!(sum.to_string(), "1566.00", "the schedule sums to the debt");

    let letter = env.path("letter.html");
    env.ok(&[
        "agreement",
        "letter",
        "1",
        "--out",
        letter.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&letter).unwrap();
    assert!(
        html.contains("Alpha GmbH") && html.contains("INV-2"),
        "{html}"
    );
    let c = env.json(&["case", "show", "INV-1", "--json"]);
    assert_eq!(c["status"], "closed");
    let s = env.json(&["run", "--as-of", "2026-11-23", "--json"]);
    assert_eq!(s["cases_opened"], 6, "one case per instalment");
    let o = env.run(&["agreement", "approve", "1"]);
    assert!(
        !o.status.success(),
        "an agreement in force is not approved again"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("only a pending one"));
}

/// ByDesign: a split or re-posting counts the debt once, on the new documents, even
/// when the ERP sends the new document before the original's clearing; and the newest
/// case of a split of a split still shows the initial invoice number.
#[test]
fn re_posting_counts_the_debt_once_and_splits_of_splits_keep_the_initial_invoice() {
    let env = Env::new();
    let f = env.path("items.csv");
    let import = |rows: &str| {
        std::fs::write(&f, format!("{HEADER}{rows}")).unwrap();
        env.ok(&["import", "csv", f.to_str().unwrap()]);
    };
    let open_amount = |day: &str| -> String {
        let e = env.json(&["explain", "C1", "--as-of", day, "--json"]);
        let a: rust_decimal::Decimal = e["facts"]["open_amount"].as_str().unwrap().parse().unwrap();
        a.normalize().to_string()
    };
    import("item,i1,ACME_DE,C1,Alpha GmbH,INV-3001,2026-09-01,2026-10-01,1000.00,1000.00,EUR,,\n");
    env.ok(&["run", "--as-of", "2026-11-20"]);
    assert_eq!(open_amount("2026-11-20"), "1000");

    // The re-posted document arrives alone: the original is still open in the file.
    import("item,i2,ACME_DE,C1,Alpha GmbH,INV-3001-A,2026-11-01,2026-12-01,1000.00,1000.00,EUR,,INV-3001\n");
    env.ok(&["run", "--as-of", "2026-11-21"]);
    assert_eq!(open_amount("2026-11-21"), "1000", "not 2000");
    let old = env.json(&["case", "show", "INV-3001", "--json"]);
    assert_eq!(
        (old["status"].as_str(), old["close_reason"].as_str()),
        (Some("closed"), Some("split or re-posted"))
    );
    // The ERP sends the original again, still open: it stays replaced.
    import("item,i1,ACME_DE,C1,Alpha GmbH,INV-3001,2026-09-01,2026-10-01,1000.00,1000.00,EUR,,\n");
    env.ok(&["run", "--as-of", "2026-11-22"]);
    assert_eq!(open_amount("2026-11-22"), "1000");
    assert_eq!(
        env.sql("SELECT COUNT(*) FROM cases c JOIN items i ON i.id = c.item_id WHERE i.document_no = 'INV-3001' AND c.status = 'open'"),
        0
    );

    // INV-3001-A split again into two; the newest cases name INV-3001.
    import(
        "item,i3,ACME_DE,C1,Alpha GmbH,INV-3001-A1,2026-11-10,2026-12-10,400.00,400.00,EUR,,INV-3001-A\n\
         item,i4,ACME_DE,C1,Alpha GmbH,INV-3001-A2,2026-11-10,2027-01-10,600.00,600.00,EUR,,INV-3001-A\n",
    );
    env.ok(&["run", "--as-of", "2026-11-23"]);
    assert_eq!(open_amount("2026-11-23"), "1000");
    for doc in ["INV-3001-A1", "INV-3001-A2"] {
        let c = env.json(&["case", "show", doc, "--json"]);
        assert_eq!(
            (c["status"].as_str(), c["external_ref"].as_str()),
            (Some("open"), Some("INV-3001")),
            "{doc}"
        );
    }
    let a = env.json(&["case", "show", "INV-3001-A", "--json"]);
    assert_eq!(a["close_reason"], "split or re-posted");
}

/// Runs `arrears ARGS` with standard output going to a pipe nobody reads any more.
fn run_into_closed_pipe(env: &Env, args: &[&str]) -> Output {
    // The write end of a pipe whose reader (`true`'s standard input) has exited, so
    // the first write fails whatever the pipe's size. (`std::io::pipe` is newer than
    // the crate's minimum Rust.)
    let mut reader = Command::new("true")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let writer = reader.stdin.take().unwrap();
    reader.wait().unwrap();
    Command::new(env!("CARGO_BIN_EXE_arrears"))
        .args(args)
        .env("ARREARS_DB", env.path("arrears.db"))
        .env("ARREARS_RULES", env.path("rules"))
        .env_remove("ARREARS_CONFIG")
        .env_remove("RUST_LOG")
        .current_dir(env.dir.path())
        .stdout(writer)
        .output()
        .unwrap()
}

#[test]
fn commands_end_quietly_when_their_reader_goes_away() {
    use std::io::BufRead;
    let env = Env::new();
    env.ok(&[
        "demo",
        "--customers",
        "30",
        "--items",
        "300",
        "--as-of",
        "2026-11-23",
    ]);
    env.ok(&["run", "--as-of", "2026-11-23"]);
    let commands: &[&[&str]] = &[
        &["worklist", "--collector", "dara", "--limit", "1000"],
        &["worklist", "--collector", "dara", "--json"],
        &["run", "--as-of", "2026-11-24"],
        &["check"],
        &["explain", "1", "--as-of", "2026-11-24"],
        &["dispute", "ageing", "--as-of", "2026-11-24"],
        &["case", "show", "1"],
        &["audit", "export"],
        &["--help"],
    ];
    for args in commands {
        let o = run_into_closed_pipe(&env, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() && !err.contains("panicked"),
            "arrears {args:?} into a closed pipe: {:?}\n{err}",
            o.status
        );
    }
    // As with `| head -1`: one line read, then the pipe closed while the command writes.
    let mut child = Command::new(env!("CARGO_BIN_EXE_arrears"))
        .args(["worklist", "--collector", "dara", "--limit", "1000"])
        .env("ARREARS_DB", env.path("arrears.db"))
        .env("ARREARS_RULES", env.path("rules"))
        .env_remove("ARREARS_CONFIG")
        .current_dir(env.dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("worklist of dara"), "{first}");
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && !err.contains("panicked"),
        "{:?}\n{err}",
        o.status
    );
}

#[test]
fn dispute_resolve_hold_lift_and_one_note_on_several_cases() {
    let env = Env::new();
    let f = env.path("items.csv");
    std::fs::write(
        &f,
        format!(
            "{HEADER}item,i1,ACME_DE,C1,Alpha GmbH,INV-1,2026-09-01,2026-10-01,100.00,100.00,EUR,,\n\
             item,i2,ACME_DE,C1,Alpha GmbH,INV-2,2026-09-05,2026-10-05,5000.00,5000.00,EUR,,\n\
             item,i3,ACME_DE,C2,Beta AG,INV-3,2026-09-05,2026-10-05,700.00,700.00,EUR,,\n"
        ),
    )
    .unwrap();
    env.ok(&["import", "csv", f.to_str().unwrap()]);

    // A hold placed before the first run keeps C1 out of dunning; lifted, C1 is dunned
    // by the next run of the same day.
    env.ok(&[
        "hold",
        "ACME_DE/C1",
        "--reason",
        "in liquidation talks",
        "--as-of",
        "2026-11-20",
    ]);
    let s = env.json(&["run", "--as-of", "2026-11-23", "--json"]);
    assert_eq!(s["escalations"], 1, "only C2: {s}");
    let out = env.ok(&["hold", "ACME_DE/C1", "--lift", "--as-of", "2026-11-23"]);
    assert!(out.contains("1 hold(s) lifted"), "{out}");
    let s = env.json(&["run", "--as-of", "2026-11-23", "--json"]);
    assert_eq!(s["escalations"], 1, "C1 now: {s}");
    let again = env.run(&["hold", "ACME_DE/C1", "--lift", "--as-of", "2026-11-23"]);
    assert!(!again.status.success(), "nothing left to lift");
    assert!(
        !env.run(&["hold", "ACME_DE/C1"]).status.success(),
        "a hold needs a reason"
    );

    // A dispute opened from a case and resolved from the command line, audited.
    env.ok(&[
        "case",
        "dispute",
        "INV-2",
        "--reason",
        "wrong price",
        "--on",
        "2026-11-23",
    ]);
    let id = env
        .sql("SELECT id FROM disputes ORDER BY id DESC LIMIT 1")
        .to_string();
    let d = env.json(&[
        "dispute",
        "resolve",
        &id,
        "--resolution",
        "invalid",
        "--on",
        "2026-11-24",
        "--json",
    ]);
    assert_eq!(
        (d["resolution"].as_str(), d["resolved_on"].as_str()),
        (Some("invalid"), Some("2026-11-24")),
        "{d}"
    );
    assert_eq!(
        env.sql(
            "SELECT COUNT(*) FROM audit WHERE action = 'dispute.resolve' \
             AND principal LIKE 'local:%' AND before LIKE '%\"resolution\":null%'"
        ),
        1
    );
    let twice = env.run(&["dispute", "resolve", &id, "--resolution", "valid"]);
    assert!(!twice.status.success(), "already resolved");
    assert!(String::from_utf8_lossy(&twice.stderr).contains("already resolved"));

    // One note on several cases; all or nothing.
    let notes = |env: &Env| env.sql("SELECT COUNT(*) FROM case_events WHERE kind = 'note'");
    let out = env.ok(&[
        "case",
        "note",
        "INV-1",
        "INV-2",
        "INV-3",
        "called: paying Friday",
    ]);
    assert!(out.contains("note added to 3 case(s)"), "{out}");
    assert_eq!(notes(&env), 3);
    assert_eq!(
        env.sql("SELECT COUNT(*) FROM audit WHERE action = 'cases.note'"),
        1
    );
    let bad = env.run(&["case", "note", "INV-1", "99999", "lost"]);
    assert!(!bad.status.success());
    assert_eq!(notes(&env), 3, "no case got the note");
    env.ok(&["case", "note", "INV-1", "one case as before"]);
    assert_eq!(notes(&env), 4);
}

#[test]
fn a_script_over_its_time_budget_is_reported_with_customer_file_and_line() {
    let env = Env::new();
    // Few operations, each on a 16 KB string: the operation limit alone lets this run
    // for seconds per customer.
    std::fs::write(
        env.path("rules/scripts/key_accounts.rhai"),
        "// runaway\nfn score(c, s) {\n  let t = \"\"; t.pad(16000, 'x');\n  loop { t.to_upper(); }\n}\n",
    )
    .unwrap();
    let strat = env.path("rules/strategies.yaml");
    let text = std::fs::read_to_string(&strat).unwrap();
    let start = text.find("scripts:").unwrap();
    let with = |budget: &str| {
        format!(
            "{}scripts:\n  - file: scripts/key_accounts.rhai\n    budget_ms: {budget}\n",
            &text[..start]
        )
    };
    std::fs::write(&strat, with("0")).unwrap();
    let o = env.run(&["check"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("budget_ms must be 1 to 10000"));
    std::fs::write(&strat, with("20")).unwrap();
    env.ok(&["check"]);
    env.ok(&[
        "demo",
        "--customers",
        "6",
        "--items",
        "30",
        "--as-of",
        "2026-11-23",
    ]);
    let started = std::time::Instant::now();
    let s = env.json(&["run", "--as-of", "2026-11-23", "--json"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(s["customers_evaluated"], 6, "{s}");
    assert_eq!(s["script_limit_hits"], 6, "{s}");
    let first = s["problems"][0].as_str().unwrap();
    assert!(first.starts_with("customer "), "{first}");
    assert!(
        first.contains(
            "scripts/key_accounts.rhai:2: score(): stopped: over its time budget of 20 ms"
        ),
        "{first}"
    );
    // After three overruns in a row the script rests instead of costing every customer.
    let last = s["problems"][5].as_str().unwrap();
    assert!(last.contains("not called"), "{last}");
}

#[test]
fn local_changes_are_audited_as_the_os_user_and_actor_is_who_they_acted_for() {
    let env = Env::new();
    let f = env.path("items.csv");
    std::fs::write(
        &f,
        format!(
            "{HEADER}item,i1,ACME_DE,C1,Alpha GmbH,INV-1,2026-09-01,2026-10-01,100.00,100.00,EUR,,\n"
        ),
    )
    .unwrap();
    env.ok(&["import", "csv", f.to_str().unwrap()]);
    env.ok(&["run", "--as-of", "2026-11-23"]);
    let me = Command::new("id").arg("-un").output().unwrap();
    assert!(me.status.success());
    let me = String::from_utf8(me.stdout).unwrap().trim().to_string();
    // $USER is whatever the caller sets; the audit must not take it at its word.
    let as_user = |args: &[&str], user: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_arrears"))
            .args(args)
            .env("ARREARS_DB", env.path("arrears.db"))
            .env("ARREARS_RULES", env.path("rules"))
            .env_remove("ARREARS_CONFIG")
            .env("USER", user)
            .env_remove("LOGNAME")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    as_user(&["case", "note", "INV-1", "called, no answer"], "mallory");
    as_user(
        &[
            "case",
            "note",
            "INV-1",
            "left a voicemail",
            "--actor",
            "chen",
        ],
        "",
    );
    let audit = |q: &str| -> Vec<String> {
        let c = rusqlite::Connection::open(env.path("arrears.db")).unwrap();
        let mut st = c.prepare(q).unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        audit("SELECT principal FROM audit WHERE action = 'case.note' ORDER BY id"),
        [format!("local:{me}"), format!("local:{me}")]
    );
    // The case history names who did the work: the user by default, else --actor;
    // the audit record's after-image carries that entry under the user's principal.
    let c = env.json(&["case", "show", "INV-1", "--json"]);
    let notes: Vec<(&str, &str)> = c["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "note")
        .map(|e| (e["actor"].as_str().unwrap(), e["detail"].as_str().unwrap()))
        .collect();
    assert_eq!(
        notes,
        [
            (me.as_str(), "called, no answer"),
            ("chen", "left a voicemail")
        ]
    );
    let last = audit("SELECT after FROM audit WHERE action = 'case.note' ORDER BY id DESC LIMIT 1");
    assert!(last[0].contains("\"chen\"") && last[0].contains("left a voicemail"));

    // Remotely the token's principal is the actor: --actor is refused, not dropped.
    let o = env.run(&[
        "--remote",
        "http://127.0.0.1:9",
        "case",
        "note",
        "1",
        "x",
        "--actor",
        "chen",
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("--actor chen") && e.contains("token's principal"),
        "{e}"
    );
}

#[cfg(unix)]
#[test]
fn a_token_file_other_users_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let t = env.path("token");
    std::fs::write(&t, "supervisor-token-0123456789\n").unwrap();
    std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = env.run(&[
        "--remote",
        "http://127.0.0.1:9",
        "--token-file",
        t.to_str().unwrap(),
        "worklist",
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("--token-file") && e.contains("mode 644") && e.contains("chmod 600"),
        "{e}"
    );
    // Readable by its owner only, it gets as far as connecting.
    std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = env.run(&[
        "--remote",
        "http://127.0.0.1:9",
        "--token-file",
        t.to_str().unwrap(),
        "worklist",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("connecting to the daemon"),
        "{e}"
    );
}

#[test]
fn the_default_database_is_named_and_a_missing_one_is_not_created_by_a_reader() {
    let env = Env::new();
    let data = env.path("data");
    let default_db = data.join("arrears").join("arrears.db");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_arrears"))
            .args(args)
            .env("XDG_DATA_HOME", &data)
            .env("HOME", env.path("home"))
            .env("ARREARS_RULES", env.path("rules"))
            .env_remove("ARREARS_DB")
            .env_remove("ARREARS_CONFIG")
            .env_remove("RUST_LOG")
            .current_dir(env.dir.path())
            .output()
            .unwrap()
    };
    // A reader on a database nobody made: refused, and nothing is created.
    let o = run(&["worklist", "--collector", "chen"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("no database at") && err.contains("(the default)") && err.contains("--db"),
        "{err}"
    );
    assert!(!default_db.exists());
    // A writer creates it and says where; so does every later command on it.
    let o = run(&[
        "demo",
        "--customers",
        "5",
        "--items",
        "20",
        "--as-of",
        "2026-11-23",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let said = format!("database: {} (the default", default_db.display());
    assert_eq!(err.matches(&said).count(), 1, "{err}");
    assert!(default_db.exists());
    let o = run(&["run", "--as-of", "2026-11-23"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(&said));
    // With --db, no such line.
    let o = env.run(&[
        "demo",
        "--customers",
        "5",
        "--items",
        "20",
        "--as-of",
        "2026-11-23",
    ]);
    assert!(o.status.success());
    assert!(!String::from_utf8_lossy(&o.stderr).contains("database:"));
    let o = env.run(&["--db", "elsewhere.db", "case", "show", "1"]);
    assert!(!o.status.success());
    assert!(
        !env.path("elsewhere.db").exists(),
        "a reader made a database"
    );
}

/// Decimals of a stored amount as printed ("1566.00" → 2, "1235" → 0).
fn decimals(s: &str) -> usize {
    s.split_once('.').map_or(0, |(_, f)| f.len())
}

#[test]
fn yen_and_dinar_agreements_are_priced_scheduled_and_lettered_in_their_minor_units() {
    let env = Env::new();
    // The shipped policy has no rates for these; a company trading in them adds its own.
    let policy = env.path("rules/policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap().replacen(
        "    PLN: \"0.235\"\n",
        "    PLN: \"0.235\"\n    JPY: \"0.0061\"\n    KWD: \"2.98\"\n",
        1,
    );
    std::fs::write(&policy, text).unwrap();
    let f = env.path("items.csv");
    std::fs::write(
        &f,
        format!(
            "{HEADER}item,j1,ACME_DE,J1,Nippon KK,JP-1,2026-08-01,2026-09-01,100000,100000,JPY,,\n\
             item,j2,ACME_DE,J1,Nippon KK,JP-2,2026-09-01,2026-10-01,55555,55555,JPY,,\n\
             item,k1,ACME_DE,K1,Gulf Trading WLL,KW-1,2026-08-01,2026-09-01,1234.567,1234.567,KWD,,\n\
             item,k2,ACME_DE,K1,Gulf Trading WLL,KW-2,2026-09-01,2026-10-01,99.999,99.999,KWD,,\n"
        ),
    )
    .unwrap();
    env.ok(&["import", "csv", f.to_str().unwrap()]);
    env.ok(&["run", "--as-of", "2026-11-23"]);
    for (id, docs, currency, digits) in [
        ("1", ["JP-1", "JP-2"], "JPY", 0),
        ("2", ["KW-1", "KW-2"], "KWD", 3),
    ] {
        let a = env.json(&[
            "agreement",
            "propose",
            docs[0],
            docs[1],
            "--plan",
            "price",
            "--installments",
            "5",
            "--first-due",
            "2026-12-15",
            "--discount",
            "3",
            "--on",
            "2026-11-23",
            "--json",
        ]);
        assert_eq!(a["currency"], currency, "{a}");
        let debt = a["debt"].as_str().unwrap();
        assert_eq!(decimals(debt), digits, "{currency} debt {debt}");
        let sched = a["schedule"].as_array().unwrap();
        assert_eq!(sched.len(), 5);
        let mut sum = rust_decimal::Decimal::ZERO;
        for s in sched {
            for field in ["principal", "interest", "amount"] {
                let v = s[field].as_str().unwrap_or_else(|| panic!("{field}: {s}"));
                assert_eq!(decimals(v), digits, "{currency} {field} {v}: {s}");
            }
            sum += s["principal"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap();
        }
        assert_eq!(
            sum.to_string(),
            debt,
            "{currency}: the schedule sums to the debt"
        );

        let letter = env.path(&format!("letter-{currency}.html"));
        env.ok(&["agreement", "letter", id, "--out", letter.to_str().unwrap()]);
        let html = std::fs::read_to_string(&letter).unwrap();
        // The letter prints the debt with the currency's decimals, thousands grouped.
        let whole: rust_decimal::Decimal = debt.parse().unwrap();
        let int = whole.trunc().to_string();
        let grouped: String = int
            .chars()
            .rev()
            .collect::<Vec<_>>()
            .chunks(3)
            .map(|c| c.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join(",")
            .chars()
            .rev()
            .collect();
        let printed = match debt.split_once('.') {
            Some((_, frac)) => format!("{currency} {grouped}.{frac}"),
            None => format!("{currency} {grouped}"),
        };
        assert!(
            html.contains(&printed),
            "{printed} not in the letter:\n{html}"
        );
    }
}
