//! The test harness shared by the daemon tests: a real `arrears serve` on loopback
//! ports with a temporary database and rules folder, in this process or as a child.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrears::server::pb;
use tonic::transport::Channel;
use tonic::{Request, Status};

pub const SUP: &str = "supervisor-token-0123456789";
pub const CHEN: &str = "chen-collector-token-0123456789";
pub const DARA: &str = "dara-collector-token-0123456789";
pub const AS_OF: &str = "2026-11-23";

/// A daemon for a test: in this process ([`Daemon::start`]) or, where the test is
/// about the process itself (signals, memory, the exit status), the real binary as
/// a child ([`Daemon::spawn`]).
pub struct Daemon {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    inner: Option<arrears_test_support::daemon::InProcess>,
    pub grpc: String,
    pub metrics: String,
    stdout: Option<std::thread::JoinHandle<Vec<String>>>,
    log: Log,
}

/// A child's stderr, read into memory as it comes.
///
/// The daemons' WARN and ERROR lines are expected in most tests (a refused call, a
/// broken rule file on purpose); passed through, they bury the output of the test that
/// failed. Kept instead, and printed only when the test fails ([`Log::dump_if_failing`]).
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    /// Starts draining `stderr`, so the child never blocks on a full pipe.
    pub fn capture(mut stderr: ChildStderr) -> Log {
        let log = Log::default();
        let buf = log.0.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(&chunk[..n]);
            }
        });
        log
    }

    /// What the child has written so far, as raw bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What the child has written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    /// Prints the log when called while the test is failing (from a `Drop` during the
    /// unwinding of a failed assertion): the daemon's side of what went wrong.
    pub fn dump_if_failing(&self, who: &str) {
        if std::thread::panicking() {
            eprintln!(
                "----- {who} stderr -----\n{}----- end of {who} stderr -----",
                self.text()
            );
        }
    }
}

/// The Python the end-to-end tests run: ARREARS_PYTHON, else the `.venv` that
/// `.ci/run` creates (grpcio, Tryton), else `python3`.
pub fn python() -> String {
    if let Ok(p) = std::env::var("ARREARS_PYTHON") {
        return p;
    }
    let venv = arrears_test_support::repo_root().join(".venv/bin/python");
    if venv.exists() {
        return venv.display().to_string();
    }
    "python3".into()
}

pub fn copy_dir(from: &Path, to: &Path) {
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

/// A secret file as its owner keeps it: arrears refuses one other users can read.
pub fn write_secret(path: &Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
}

pub fn arrears(dir: &Path, args: &[&str]) -> std::process::Output {
    let o = Command::new(env!("CARGO_BIN_EXE_arrears"))
        .args(args)
        .env("ARREARS_DB", dir.join("arrears.db"))
        .env("ARREARS_RULES", dir.join("rules"))
        .env_remove("ARREARS_CONFIG")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "arrears {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

impl Daemon {
    /// A fresh folder with the shipped rules and a config with three tokens.
    pub fn prepare() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(
            &arrears_test_support::repo_root().join("rules"),
            &dir.path().join("rules"),
        );
        let inbox = |name: &str| dir.path().join("inbox").join(name).display().to_string();
        // Token files rather than environment variables: a daemon in this process
        // shares its environment with every other test running beside it.
        let token = |name: &str, secret: &str| {
            let p = dir.path().join(format!("{name}.token"));
            write_secret(&p, secret);
            p.display().to_string()
        };
        let (sup, chen, dara) = (token("sup", SUP), token("chen", CHEN), token("dara", DARA));
        std::fs::write(
            dir.path().join("arrears.yaml"),
            format!(
                "serve:\n  run_every: 0s\n  store_poll: 100ms\n  reload_debounce: 150ms\n  kpi_interval: 0s\n\
                 auth:\n  tokens:\n\
                 \x20   - {{ principal: sup, role: supervisor, groups: ['*'], token_file: '{sup}' }}\n\
                 \x20   - {{ principal: chen, role: collector, token_file: '{chen}' }}\n\
                 \x20   - {{ principal: dara, role: collector, token_file: '{dara}' }}\n\
                 connectors:\n\
                 \x20 - {{ name: bank, kind: statement_inbox, path: '{}', every: 0s }}\n\
                 \x20 - {{ name: erp-drop, kind: csv_inbox, path: '{}', every: 0s }}\n",
                inbox("bank"),
                inbox("csv")
            ),
        )
        .unwrap();
        dir
    }

    /// The daemon of `dir`'s config, database and rules, in this process.
    pub fn start(dir: tempfile::TempDir) -> Daemon {
        let d = arrears_test_support::daemon::InProcess::start(
            arrears_test_support::daemon::Options::in_folder(
                dir.path(),
                Some(AS_OF.parse().unwrap()),
            ),
        );
        Daemon {
            grpc: format!("http://{}", d.grpc),
            metrics: d.metrics.to_string(),
            log: Log(d.log()),
            inner: Some(d),
            child: None,
            stdout: None,
            dir,
        }
    }

    /// `arrears serve` as a child process.
    pub fn spawn(dir: tempfile::TempDir) -> Daemon {
        Daemon::start_env(dir, &[])
    }

    /// A child process with more environment, e.g. the tokens of a config the test
    /// wrote.
    pub fn start_env(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_arrears"))
            .args([
                "--config",
                dir.path().join("arrears.yaml").to_str().unwrap(),
                "serve",
                "--grpc-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--as-of",
                AS_OF,
            ])
            .env("ARREARS_DB", dir.path().join("arrears.db"))
            .env("ARREARS_RULES", dir.path().join("rules"))
            .env("T_SUP", SUP)
            .env("T_CHEN", CHEN)
            .env("T_DARA", DARA)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Log::capture(child.stderr.take().unwrap());
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for l in BufReader::new(out).lines() {
                let l = l.unwrap_or_default();
                let _ = tx.send(l.clone());
                lines.push(l);
            }
            lines
        });
        let (mut grpc, mut metrics) = (String::new(), String::new());
        while grpc.is_empty() || metrics.is_empty() {
            let l = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| {
                    let _ = child.kill();
                    let _ = child.wait();
                    // Give the reader the last bytes the daemon wrote before it ended.
                    std::thread::sleep(Duration::from_millis(100));
                    panic!(
                        "daemon did not report its addresses; its stderr:\n{}",
                        log.text()
                    )
                });
            if let Some(a) = l.strip_prefix("grpc listening on ") {
                grpc = format!("http://{a}");
            }
            if let Some(a) = l.strip_prefix("metrics listening on ") {
                metrics = a.to_string();
            }
        }
        Daemon {
            dir,
            child: Some(child),
            inner: None,
            grpc,
            metrics,
            stdout: Some(stdout),
            log,
        }
    }

    /// Everything the daemon has written to stderr so far (its log).
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// The daemon's process id (for /proc figures such as its memory).
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .expect("a daemon of its own process: Daemon::spawn")
            .id()
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.grpc.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// SIGTERM, then the exit status and everything printed on stdout.
    pub fn terminate(&mut self) -> (std::process::ExitStatus, Vec<String>) {
        let mut child = self
            .child
            .take()
            .expect("a daemon of its own process: Daemon::spawn");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        let lines = self.stdout.take().unwrap().join().unwrap();
        (status, lines)
    }

    pub fn scrape(&self) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.metrics).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.metrics
        )
        .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        let (head, body) = body.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(!head.to_ascii_lowercase().contains("chunked"), "{head}");
        body.to_string()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut d) = self.inner.take() {
            if let Err(e) = d.stop() {
                eprintln!("daemon ended with: {e}");
            }
        }
        self.log.dump_if_failing("daemon");
    }
}

pub type Auth = fn(Request<()>) -> Result<Request<()>, Status>;

pub fn with_token(
    token: &'static str,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut r: Request<()>| {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        Ok(r)
    }
}

pub fn no_token(r: Request<()>) -> Result<Request<()>, Status> {
    Ok(r)
}

pub fn group(g: &str) -> Option<pb::WorklistScope> {
    Some(pb::WorklistScope {
        scope: Some(pb::worklist_scope::Scope::Group(g.into())),
    })
}

pub fn mine() -> Option<pb::WorklistScope> {
    Some(pb::WorklistScope {
        scope: Some(pb::worklist_scope::Scope::Mine(true)),
    })
}

pub async fn wait_for<F: FnMut(&pb::WorklistUpdate) -> bool>(
    stream: &mut tonic::Streaming<pb::WorklistUpdate>,
    mut pred: F,
) -> pb::WorklistUpdate {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("no worklist update within 30 s")
            .expect("stream failed")
            .expect("stream ended");
        if pred(&m) {
            return m;
        }
    }
}

pub mod smtp;
