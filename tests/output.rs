//! What the command line prints: the same text on the database and through a daemon,
//! tables a person can read, and quiet ends when the reader goes away.

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;

fn local(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_arrears"));
    c.env("ARREARS_DB", dir.join("arrears.db"))
        .env("ARREARS_RULES", dir.join("rules"))
        .env_remove("ARREARS_CONFIG")
        .env_remove("ARREARS_REMOTE")
        .env_remove("RUST_LOG");
    c
}

fn remote(d: &Daemon) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_arrears"));
    c.args(["--remote", &d.grpc])
        .env("ARREARS_TOKEN", SUP)
        .env_remove("ARREARS_CONFIG")
        .env_remove("ARREARS_DB")
        .env_remove("RUST_LOG");
    c
}

fn ok(mut c: Command, args: &[&str]) -> String {
    let o = c.args(args).output().unwrap();
    assert!(
        o.status.success(),
        "arrears {args:?}:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn demo(dir: &Path) {
    arrears(
        dir,
        &[
            "demo",
            "--customers",
            "60",
            "--items",
            "600",
            "--as-of",
            AS_OF,
        ],
    );
}

/// Everything but the first line, which names the run and how long it took.
fn after_first_line(s: &str) -> String {
    s.lines().skip(1).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_database_and_the_daemon_print_the_same_text() {
    let dir = Daemon::prepare();
    demo(dir.path());
    let d = Daemon::start(dir);
    let db = d.dir.path();

    // The daemon's run and then the same day's run on the database: both incremental
    // with nothing to do, both saying so and showing the portfolio, not zeros.
    let first = ok(remote(&d), &["run"]);
    assert!(first.contains("portfolio after the run:"), "{first}");
    // The daemon's outbox pass after a run records contacts, which the next run
    // re-evaluates, so the portfolio moves for a while after start. Compare a local run
    // with the remote runs either side of it once those two agree: nothing moved
    // in between, so all three must print the same.
    let (mut remote_run, mut local_run) = (String::new(), String::new());
    let mut settled = false;
    for _ in 0..20 {
        remote_run = ok(remote(&d), &["run"]);
        local_run = ok(local(db), &["run", "--as-of", AS_OF]);
        let again = ok(remote(&d), &["run"]);
        if remote_run.contains("nothing changed")
            && after_first_line(&again) == after_first_line(&remote_run)
        {
            settled = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert!(settled, "the daemon never settled:\n{remote_run}");
    assert_eq!(
        after_first_line(&remote_run),
        after_first_line(&local_run),
        "remote:\n{remote_run}\nlocal:\n{local_run}"
    );
    assert!(
        local_run.contains("this run: nothing changed since the last run"),
        "{local_run}"
    );
    let customers = local_run
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("customers ")
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .expect("portfolio customers line");
    assert_eq!(customers, 60, "{local_run}");
    assert!(
        !local_run.contains("open cases           0 "),
        "{local_run}"
    );

    for args in [
        &["worklist", "--collector", "chen", "--limit", "5"][..],
        &["worklist", "--collector", "chen", "--limit", "1000"],
        &["case", "show", "1"],
        &["case", "show", "7"],
        &["explain", "1", "--as-of", AS_OF],
        &["promise", "list", "C000001"],
    ] {
        let l = ok(local(db), args);
        let r = ok(remote(&d), args);
        assert_eq!(l, r, "arrears {args:?}\nlocal:\n{l}\nremote:\n{r}");
        assert!(!l.contains("Some(") && !l.contains(" {\n"), "{l}");
    }

    // The reports: the same tables both ways (the supervisor reaches every group,
    // as the database's admin does).
    for args in [
        &["report", "open-items", "--to", AS_OF][..],
        &[
            "report",
            "conversion",
            "--from",
            "2026-01-01",
            "--to",
            AS_OF,
            "--by",
            "company,segment",
        ],
        &[
            "report",
            "promises",
            "--from",
            "2025-01-01",
            "--to",
            AS_OF,
            "--by",
            "collector",
            "--csv",
        ],
        &["report", "open-items", "--to", AS_OF, "--json"],
    ] {
        let l = ok(local(db), args);
        let r = ok(remote(&d), args);
        assert_eq!(l, r, "arrears {args:?}\nlocal:\n{l}\nremote:\n{r}");
        assert!(l.lines().count() > 2, "{l}");
    }
    // The commission settlement reads the rules on both sides.
    let args = [
        "report",
        "commission",
        "--from",
        "2025-01-01",
        "--to",
        AS_OF,
        "--json",
    ];
    let l = ok(local(db), &args);
    assert_eq!(l, ok(remote(&d), &args));
    let v: serde_json::Value = serde_json::from_str(&l).unwrap();
    assert_eq!(v["columns"][0]["name"], "collector", "{l}");
    // A collector's report holds their own customers only.
    let mut chen = remote(&d);
    chen.env("ARREARS_TOKEN", CHEN);
    let args = [
        "report",
        "open-items",
        "--to",
        AS_OF,
        "--by",
        "collector",
        "--csv",
    ];
    let mine = ok(chen, &args);
    let all = ok(local(db), &args);
    let rows = |s: &str| -> Vec<String> { s.lines().skip(1).map(String::from).collect() };
    assert!(!rows(&mine).is_empty(), "{mine}");
    assert_eq!(
        rows(&mine),
        rows(&all)
            .into_iter()
            .filter(|r| r.starts_with("chen,"))
            .collect::<Vec<_>>()
    );
    assert!(rows(&all).len() > rows(&mine).len(), "{all}");

    // The remote JSON is JSON, not a debug dump.
    for args in [
        &["case", "show", "1", "--json"][..],
        &["explain", "1", "--json"],
        &["promise", "list", "C000001", "--json"],
        &["outbox", "list", "--limit", "3", "--json"],
    ] {
        let r = ok(remote(&d), args);
        serde_json::from_str::<serde_json::Value>(&r)
            .unwrap_or_else(|e| panic!("arrears --remote {args:?}: {e}\n{r}"));
    }
}

#[test]
fn the_worklist_is_a_table_that_says_how_much_of_it_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &arrears_test_support::repo_root().join("rules"),
        &dir.path().join("rules"),
    );
    demo(dir.path());
    ok(local(dir.path()), &["run", "--as-of", AS_OF]);
    let all = ok(
        local(dir.path()),
        &["worklist", "--collector", "chen", "--limit", "1000"],
    );
    let total = all.lines().skip(2).count();
    assert!(total > 3, "{all}");
    assert_eq!(
        all.lines().next().unwrap(),
        format!("worklist of chen: {total} entries")
    );
    let page = ok(
        local(dir.path()),
        &["worklist", "--collector", "chen", "--limit", "3"],
    );
    let mut lines = page.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("worklist of chen: 3 of {total} entries (--limit {total} for all)")
    );
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        &header[..8],
        &["nad", "prio", "score", "overdue", "customer", "name", "items", "amount"]
    );
    for row in lines {
        let cols: Vec<&str> = row.split_whitespace().collect();
        let (score, days) = (cols[2], cols[3]);
        assert!(
            score.split_once('.').is_some_and(|(_, f)| f.len() == 1),
            "score {score} with one decimal: {row}"
        );
        assert!(days.parse::<u32>().is_ok(), "days overdue {days}: {row}");
        // The amount: the first token after the item count with exactly two decimals.
        assert!(
            cols.iter().any(|c| c
                .split_once('.')
                .is_some_and(|(i, f)| f.len() == 2 && i.chars().all(|c| c.is_ascii_digit()))),
            "amount in cents: {row}"
        );
    }

    // Empty lists say so rather than print nothing.
    let p = ok(local(dir.path()), &["promise", "list", "C000001"]);
    assert_eq!(p.trim(), "no promises for C000001");
    let a = ok(
        local(dir.path()),
        &["agreement", "list", "--customer", "C000001"],
    );
    assert_eq!(a.trim(), "no agreements for C000001");
    let m = ok(
        local(dir.path()),
        &["outbox", "list", "--customer", "C000001"],
    );
    assert_eq!(m.trim(), "no messages for C000001");

    // Outbox messages name the business day of their step beside the wall clock.
    ok(
        local(dir.path()),
        &["outbox", "send", "--now", "2026-11-23T10:00:00Z"],
    );
    let out = ok(local(dir.path()), &["outbox", "list", "--limit", "5"]);
    let mut lines = out.lines();
    assert!(lines.next().unwrap().contains("business day"), "{out}");
    for l in lines {
        assert!(l.contains(AS_OF) && l.contains("wall clock"), "{out}");
    }
}

/// Reads one line of `cmd`'s output, closes the pipe, and returns how it ended. A
/// short output may be in the pipe before the reader leaves, so
/// [`into_pipe_closed_before`] covers the failing write for certain.
fn into_closed_pipe(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut first).unwrap();
    assert!(!first.is_empty());
    drop(out);
    child.wait_with_output().unwrap()
}

/// Standard output is a pipe whose reader has already exited: the first write fails.
fn into_pipe_closed_before(mut cmd: Command) -> Output {
    // `std::io::pipe` is newer than the crate's minimum Rust: the write end of
    // `true`'s standard input after it exited is such a pipe.
    let mut reader = Command::new("true").stdin(Stdio::piped()).spawn().unwrap();
    let writer = reader.stdin.take().unwrap();
    reader.wait().unwrap();
    cmd.stdout(writer).stderr(Stdio::piped()).output().unwrap()
}

/// Like `| head -1`: a command whose reader went away ends quietly with status 0, as
/// its work is done; no panic, no "Broken pipe", not the 101 of a Rust panic.
#[test]
fn a_closed_pipe_ends_commands_quietly_on_the_database_and_through_a_daemon() {
    let dir = Daemon::prepare();
    demo(dir.path());
    let d = Daemon::start(dir);
    let db = d.dir.path();
    ok(remote(&d), &["run"]);
    let args: &[&[&str]] = &[
        &["worklist", "--collector", "chen", "--limit", "1000"],
        &["explain", "1", "--as-of", AS_OF],
        &["run", "--as-of", AS_OF],
        &["--help"],
    ];
    for a in args {
        for (how, mut c) in [("local", local(db)), ("remote", remote(&d))] {
            if how == "remote" && a[0] == "run" {
                c.args(["run"]);
            } else {
                c.args(*a);
            }
            let mut again = Command::new(c.get_program());
            again.args(c.get_args());
            for (k, v) in c.get_envs() {
                match v {
                    Some(v) => again.env(k, v),
                    None => again.env_remove(k),
                };
            }
            for o in [into_closed_pipe(c), into_pipe_closed_before(again)] {
                let err = String::from_utf8_lossy(&o.stderr);
                assert!(
                    o.status.code() == Some(0)
                        && !err.contains("panicked")
                        && !err.to_lowercase().contains("broken pipe"),
                    "{how} arrears {a:?} into a closed pipe: {:?}\n{err}",
                    o.status
                );
            }
        }
    }
}
