//! The README cannot rot: every `sh` block runs, as written and in order, in one
//! scratch folder that looks like a fresh clone (the shipped `rules/`, the sample
//! files under `tests/`), and every `yaml` block of configuration loads with the real
//! config parser, so a renamed key fails here first.
//!
//! `cargo run --release -- ARGS` in a block runs this build's `arrears ARGS` (a
//! `cargo` shim on PATH: building a second, release binary would only cost minutes),
//! and `arrears` is the same binary. The data directory is the scratch folder's, so a
//! command that forgets `--db` cannot reach a real database.
//!
//! A block is steered by an HTML comment on the line just above its fence:
//! `<!-- readme-test: daemon -->` starts it in the background (it serves until the
//! next block has run, then gets Ctrl-C and must exit cleanly), and
//! `<!-- readme-test: skip: REASON -->` leaves it out, with the reason in the README.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::copy_dir;

#[derive(Debug, PartialEq)]
enum Mode {
    Run,
    Daemon,
    Skip(String),
}

#[derive(Debug)]
struct Block {
    line: usize,
    lang: String,
    text: String,
    mode: Mode,
}

fn blocks(readme: &str) -> Vec<Block> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].strip_prefix("```") else {
            i += 1;
            continue;
        };
        let start = i;
        let marker = (start > 0)
            .then(|| lines[start - 1].trim())
            .and_then(|l| l.strip_prefix("<!-- readme-test:"))
            .and_then(|l| l.strip_suffix("-->"))
            .map(str::trim);
        let mode = match marker {
            None => Mode::Run,
            Some("daemon") => Mode::Daemon,
            Some(m) => match m.strip_prefix("skip:") {
                Some(why) if !why.trim().is_empty() => Mode::Skip(why.trim().to_string()),
                _ => panic!("README.md:{start}: unknown readme-test marker `{m}`"),
            },
        };
        let mut text = String::new();
        i += 1;
        while i < lines.len() && !lines[i].starts_with("```") {
            text.push_str(lines[i]);
            text.push('\n');
            i += 1;
        }
        assert!(i < lines.len(), "README.md:{}: unclosed block", start + 1);
        out.push(Block {
            line: start + 1,
            lang: lang.trim().to_string(),
            text,
            mode,
        });
        i += 1;
    }
    out
}

fn repo() -> PathBuf {
    arrears_test_support::repo_root()
}

/// A scratch clone: `rules/` copied (the daemon watches it), `tests/` linked (read
/// only), and a PATH with `arrears` and the `cargo run` shim.
fn scratch() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    copy_dir(&repo().join("rules"), &root.join("rules"));
    std::os::unix::fs::symlink(repo().join("tests"), root.join("tests")).unwrap();
    let bin = root.join(".bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_arrears"), bin.join("arrears")).unwrap();
    let shim = bin.join("cargo");
    std::fs::write(
        &shim,
        "#!/bin/sh\n\
         # README test: `cargo run --release -- ARGS` is the binary under test.\n\
         if [ \"$1 $2 $3\" = 'run --release --' ]; then shift 3; exec arrears \"$@\"; fi\n\
         echo \"the README test knows only 'cargo run --release --', not: cargo $*\" >&2\n\
         exit 2\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (dir, path)
}

fn shell(root: &Path, path: &str, script: &str) -> Command {
    let mut c = Command::new("bash");
    c.args(["-e", "-o", "pipefail", "-c", script])
        .current_dir(root)
        .env("PATH", path)
        .env("HOME", root.join("home"))
        .env("XDG_DATA_HOME", root.join("data"))
        .env_remove("ARREARS_DB")
        .env_remove("ARREARS_RULES")
        .env_remove("ARREARS_CONFIG")
        .env_remove("ARREARS_TOKEN")
        .env_remove("RUST_LOG");
    c
}

/// Waits until the daemon's first run has produced its KPIs, as a reader of the
/// README would before trying the second terminal's commands.
fn wait_for_kpis(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut body = String::new();
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = write!(
                s,
                "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            );
            let _ = s.read_to_string(&mut body);
        }
        if body.contains("arrears_dso_days") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon showed no KPIs on {addr} within 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_readme_block_runs_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let all = blocks(&readme);
    let (dir, path) = scratch();
    let root = dir.path();
    let mut daemon: Option<(usize, std::process::Child)> = None;
    let (mut ran, mut configs, mut skipped) = (0, 0, Vec::new());
    for b in &all {
        match (b.lang.as_str(), &b.mode) {
            (_, Mode::Skip(why)) => skipped.push(format!("README.md:{}: {why}", b.line)),
            ("yaml", _) => {
                // Configuration excerpts load with the real parser (unknown keys are
                // errors there).
                let f = root.join(format!("config-{}.yaml", b.line));
                std::fs::write(&f, &b.text).unwrap();
                if let Err(e) = arrears::config::Config::load(&f) {
                    panic!("README.md:{}: this config block does not load: {e}", b.line);
                }
                configs += 1;
            }
            ("sh", Mode::Daemon) => {
                assert!(daemon.is_none(), "README.md:{}: a second daemon", b.line);
                let mut child = shell(root, &path, b.text.trim())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let out = BufReader::new(child.stdout.take().unwrap());
                let (mut grpc, mut metrics) = (false, None);
                for l in out.lines() {
                    let l = l.unwrap();
                    grpc |= l.starts_with("grpc listening on ");
                    if let Some(a) = l.strip_prefix("metrics listening on ") {
                        metrics = Some(a.to_string());
                    }
                    if grpc && metrics.is_some() {
                        break;
                    }
                }
                let Some(metrics) = metrics.filter(|_| grpc) else {
                    let mut err = String::new();
                    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                    panic!("README.md:{}: the daemon did not start:\n{err}", b.line);
                };
                wait_for_kpis(&metrics);
                daemon = Some((b.line, child));
                ran += 1;
            }
            ("sh", Mode::Run) => {
                let o = shell(root, &path, &b.text).output().unwrap();
                assert!(
                    o.status.success(),
                    "README.md:{}: the block failed ({}):\n{}\n--- stdout\n{}\n--- stderr\n{}",
                    b.line,
                    o.status,
                    b.text,
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                ran += 1;
                // The block after the daemon's is the "second terminal"; then Ctrl-C.
                if let Some((line, mut child)) = daemon.take() {
                    Command::new("kill")
                        .args(["-INT", &child.id().to_string()])
                        .status()
                        .unwrap();
                    let status = child.wait().unwrap();
                    assert!(
                        status.success(),
                        "README.md:{line}: Ctrl-C did not stop the daemon cleanly: {status}"
                    );
                }
            }
            _ => {}
        }
    }
    if let Some((line, mut child)) = daemon {
        let _ = child.kill();
        panic!("README.md:{line}: no block follows the daemon's to use it");
    }
    // The README keeps its main job, its daemon walk-through and its config examples.
    assert!(
        ran >= 6 && configs >= 4,
        "ran {ran} blocks, loaded {configs}"
    );
    eprintln!(
        "ran {ran} sh blocks, loaded {configs} config blocks; skipped:\n{}",
        skipped.join("\n")
    );
}

#[test]
fn markers_are_read() {
    let md = "a\n<!-- readme-test: skip: needs the network -->\n```sh\ncurl x\n```\n\
              <!-- readme-test: daemon -->\n```sh\narrears serve\n```\n```yaml\na: 1\n```\n";
    let b = blocks(md);
    assert_eq!(b.len(), 3);
    assert_eq!(b[0].mode, Mode::Skip("needs the network".into()));
    assert_eq!((b[0].line, b[0].text.as_str()), (3, "curl x\n"));
    assert_eq!(b[1].mode, Mode::Daemon);
    assert_eq!((b[2].lang.as_str(), &b[2].mode), ("yaml", &Mode::Run));
}
