//! `arrears serve` inside the test process, on loopback ports the harness binds
//! itself, stopped through a future rather than a signal: no child process, no
//! waiting for a port to appear (the listeners exist before the daemon starts, so a
//! client's first call simply waits for it to serve).
//!
//! Several of these run at once in one test binary. Each gets its own Prometheus
//! recorder and its own log, made the default of every thread of its own runtime,
//! so neither its `/metrics` nor its log shows another daemon's series or lines.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrears_core::clock::{Clock, SystemClock};
use arrears_server::config::Config;
use arrears_server::{Metrics, ServeOptions};
use chrono::NaiveDate;

/// What a test chooses about the daemon; the rest comes from the config file, as
/// `arrears --config FILE serve` would take it.
pub struct Options {
    pub config: Option<PathBuf>,
    pub db: PathBuf,
    pub rules: PathBuf,
    pub as_of: Option<NaiveDate>,
    pub clock: Arc<dyn Clock>,
}

impl Options {
    /// The layout `tests/common` prepares: `arrears.yaml`, `arrears.db` and `rules/`
    /// in one folder.
    pub fn in_folder(dir: &Path, as_of: Option<NaiveDate>) -> Options {
        let config = dir.join("arrears.yaml");
        Options {
            config: config.exists().then_some(config),
            db: dir.join("arrears.db"),
            rules: dir.join("rules"),
            as_of,
            clock: Arc::new(SystemClock),
        }
    }
}

pub struct InProcess {
    pub grpc: SocketAddr,
    pub metrics: SocketAddr,
    log: Arc<Mutex<Vec<u8>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

/// The daemon's log lines, kept in memory like a child's stderr would be.
#[derive(Clone)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl InProcess {
    /// Starts the daemon; panics with the reason when its config cannot be read.
    /// A daemon that fails later (bad rules, a busy database) ends its thread with
    /// the error, which [`InProcess::stop`] returns.
    pub fn start(o: Options) -> InProcess {
        let cfg = match &o.config {
            Some(p) => Config::load(p).unwrap_or_else(|e| panic!("{e}")),
            None => Config::default(),
        };
        let mut opts = ServeOptions::from_config(&cfg, o.db, o.rules, o.clock);
        opts.cfg.grpc_listen = "127.0.0.1:0".into();
        opts.cfg.metrics_listen = "127.0.0.1:0".into();
        if o.as_of.is_some() {
            opts.cfg.as_of = o.as_of;
        }

        // Leaked on purpose: the recorder must outlive every thread that records into
        // it, and a test process ends soon anyway.
        let recorder: &'static metrics_exporter_prometheus::PrometheusRecorder =
            Box::leak(Box::new(arrears_server::metrics_recorder()));
        let handle = recorder.handle();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = LogSink(log.clone());
        let dispatch = tracing::Dispatch::new(
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
                .with_ansi(false)
                .with_writer(move || sink.clone())
                .finish(),
        );
        let locals = move || {
            std::mem::forget(metrics::set_default_local_recorder(recorder));
            std::mem::forget(tracing::dispatcher::set_default(&dispatch));
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(locals.clone())
            .build()
            .expect("a runtime for the daemon");
        // Bound here with std, handed to the daemon's runtime on its own thread: the
        // caller may itself be inside a runtime (an async test), where blocking on
        // another one is refused.
        let bind = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
            l.set_nonblocking(true).expect("non-blocking listener");
            l
        };
        let (grpc, metrics_listener) = (bind(), bind());
        let (grpc_addr, metrics_addr) = (
            grpc.local_addr().expect("bound"),
            metrics_listener.local_addr().expect("bound"),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("arrears-daemon".into())
            .spawn(move || {
                locals();
                let served = rt.block_on(async {
                    let listener = |l| {
                        tokio::net::TcpListener::from_std(l).map_err(|e| {
                            arrears_server::ServeError::Listen {
                                what: "test listener",
                                addr: "127.0.0.1:0".into(),
                                source: e,
                            }
                        })
                    };
                    arrears_server::run_with(
                        opts,
                        listener(grpc)?,
                        listener(metrics_listener)?,
                        Metrics::Local(handle),
                        async {
                            let _ = stopped.await;
                        },
                    )
                    .await
                });
                // Tasks still draining (a stream's sender) end with the runtime here,
                // on this thread, rather than in a test's Drop.
                drop(rt);
                served.map_err(|e| e.to_string())
            })
            .expect("a thread for the daemon");
        let mut d = InProcess {
            grpc: grpc_addr,
            metrics: metrics_addr,
            log,
            stop: Some(stop),
            thread: Some(thread),
        };
        d.wait_ready();
        d
    }

    /// Returns once the daemon serves, as the child's "listening" lines say it for
    /// `arrears serve`: its metrics endpoint answers only after the rules are loaded,
    /// the store is open and the gRPC server is up. A daemon that failed to start
    /// fails the test with its error and log.
    fn wait_ready(&mut self) {
        use std::io::Read;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                let why = self.stop().err().unwrap_or_else(|| "it stopped".into());
                panic!(
                    "the daemon did not start: {why}\n{}",
                    String::from_utf8_lossy(&self.log.lock().unwrap_or_else(|p| p.into_inner()))
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the daemon did not serve within 60 s"
            );
            let answered = std::net::TcpStream::connect(self.metrics).and_then(|mut s| {
                s.set_read_timeout(Some(std::time::Duration::from_millis(500)))?;
                write!(
                    s,
                    "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    self.metrics
                )?;
                let mut head = [0u8; 12];
                s.read_exact(&mut head)?;
                Ok(head.starts_with(b"HTTP/1.1 200"))
            });
            if answered.unwrap_or(false) {
                return;
            }
        }
    }

    /// The log so far, shared: it keeps growing while the daemon runs.
    pub fn log(&self) -> Arc<Mutex<Vec<u8>>> {
        self.log.clone()
    }

    /// Asks the daemon to stop as SIGTERM would and waits for it: in-flight requests
    /// finish, a run in progress commits or rolls back whole.
    pub fn stop(&mut self) -> Result<(), String> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err("the daemon thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
