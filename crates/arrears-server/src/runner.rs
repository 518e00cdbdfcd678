//! The runner owns portfolio runs; the scheduler, the store poller and the rules
//! watcher feed it requests.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use tokio::sync::{mpsc, oneshot};

use super::{ServeError, Shared};
use arrears_app::run::{run_resident, Decided, KnownLoads, RunMode, RunOptions, Summary};
use arrears_store::WorklistSince;

pub struct RunRequest {
    pub mode: RunMode,
    pub as_of: Option<NaiveDate>,
    pub cause: String,
    pub reply: Option<oneshot::Sender<Result<Summary, String>>>,
    /// Asked for because of a committed change (an API write, the store poller):
    /// satisfied by any run that loaded after it, so it is dropped when no change is
    /// pending any more. Explicit, scheduled and start-up runs always run.
    pub if_pending: bool,
}

impl RunRequest {
    /// Only the customers changed since the last run, unless the business date or the
    /// rules changed since, which makes it a full run (`RunMode::Auto`).
    pub fn auto(cause: String) -> RunRequest {
        RunRequest {
            mode: RunMode::Auto,
            as_of: None,
            cause,
            reply: None,
            if_pending: false,
        }
    }

    /// A request for changes already committed (see [`RunRequest::if_pending`]).
    pub fn pending(cause: String) -> RunRequest {
        RunRequest {
            if_pending: true,
            ..RunRequest::auto(cause)
        }
    }
    pub fn full(cause: String) -> RunRequest {
        RunRequest {
            mode: RunMode::Full,
            ..RunRequest::auto(cause)
        }
    }
}

/// Takes requests one run at a time; everything that queued up during a run is merged
/// into the next (a full request makes it full), so a burst of changes costs one run.
pub async fn run_loop(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<RunRequest>) {
    let mut stop = shared.shutdown.clone();
    let worker = match RunThread::start() {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the run thread; no runs");
            return;
        }
    };
    loop {
        let first = tokio::select! {
            r = rx.recv() => match r { Some(r) => r, None => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        let mut batch = vec![first];
        while let Ok(r) = rx.try_recv() {
            batch.push(r);
        }
        // An API write and the poller both ask for the same commit; the poller may
        // also see it while the write's run is going. If a run loaded it already,
        // there is nothing left to do: another would reload the portfolio for nothing.
        if batch.iter().all(|r| r.if_pending) && !changes_pending(&shared).await {
            tracing::debug!("store change already covered by the last run");
            continue;
        }
        let full = batch.iter().any(|r| matches!(r.mode, RunMode::Full));
        let as_of = batch.iter().rev().find_map(|r| r.as_of);
        let mut causes: Vec<String> = Vec::new();
        for r in &batch {
            if !causes.contains(&r.cause) {
                causes.push(r.cause.clone());
            }
        }
        let cause = causes.join("; ");
        if !shared.lead.leads() {
            follow(&shared).await;
            for r in batch {
                if let Some(tx) = r.reply {
                    let _ = tx.send(Err(format!(
                        "this replica ({}) follows: portfolio runs are the leader's; ask the leader, \
                         or wait for its next run",
                        shared.lead.name
                    )));
                }
            }
            continue;
        }
        // The portfolio totals only go to someone waiting for the summary.
        let totals = batch.iter().any(|r| r.reply.is_some());
        let result = run_once(&shared, &worker, full, as_of, cause.clone(), totals).await;
        match &result {
            Ok(sum) => {
                tracing::info!(run = sum.run_id, mode = %sum.mode, customers = sum.customers_evaluated,
                    ms = sum.duration_ms, %cause, "portfolio run");
            }
            Err(e) => tracing::error!(error = %e, %cause, "portfolio run failed"),
        }
        for r in batch {
            if let Some(tx) = r.reply {
                let _ = tx.send(result.clone());
            }
        }
    }
}

/// A follower's worklists after the leader's runs: the entries those runs may
/// have rewritten read from the store and patched into the view shown, or every
/// entry after a full run (or when the view is too far behind).
async fn follow(shared: &Arc<Shared>) {
    let me = shared.clone();
    let done = tokio::task::spawn_blocking(move || {
        let store = me.writer.lock().unwrap_or_else(|p| p.into_inner());
        let shown = me.worklist();
        let started = Instant::now();
        let since = store.worklist_since(shown.run_id(), shown.has_currencies())?;
        let read_ms = started.elapsed().as_millis() as u64;
        let (view, run, as_of, patched) = match since {
            WorklistSince::Same => return Ok(()),
            WorklistSince::Patch {
                run_id,
                as_of,
                touched,
                entries,
                currencies,
            } => (
                shown.patched_with(&touched, &entries, &[], currencies),
                run_id,
                as_of,
                true,
            ),
            WorklistSince::Whole {
                run_id,
                as_of,
                entries,
            } => (
                super::WorklistView::from_entries(entries),
                run_id,
                as_of,
                false,
            ),
        };
        drop(store);
        me.worklist.store(Arc::new(view.with_run(run)));
        tracing::debug!(
            run,
            patched,
            read_ms,
            ms = started.elapsed().as_millis() as u64,
            "followed the leader's run"
        );
        me.publish(format!("run {run} of the leader"), 0);
        *me.kpi_as_of.lock().unwrap_or_else(|p| p.into_inner()) = Some(as_of);
        me.kpi_due.notify_one();
        Ok::<_, arrears_store::StoreError>(())
    })
    .await;
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "following the leader's run"),
        Err(e) => tracing::warn!(error = %e, "following the leader's run failed"),
    }
}

/// Whether the store holds changes no run has loaded yet; on doubt, yes.
async fn changes_pending(shared: &Arc<Shared>) -> bool {
    let me = shared.clone();
    tokio::task::spawn_blocking(move || {
        let store = me.writer.lock().unwrap_or_else(|p| p.into_inner());
        store.changes_pending().map(|p| p.is_some()).unwrap_or(true)
    })
    .await
    .unwrap_or(true)
}

/// The one thread every run works on. A run allocates hundreds of megabytes at a
/// million items and the allocator keeps what a thread freed for that thread's
/// next use: runs that hopped between the blocking pool's threads left each one's
/// high-water mark resident, and the daemon grew with every full run.
struct RunThread {
    jobs: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl RunThread {
    fn start() -> std::io::Result<RunThread> {
        let (jobs, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        std::thread::Builder::new()
            .name("arrears-run".into())
            .spawn(move || {
                // Ends when the runner drops its sender (shutdown).
                while let Ok(job) = rx.recv() {
                    // A panicking run must not take the thread with it: its caller
                    // sees the run fail, the next run works.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })?;
        Ok(RunThread { jobs })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| "the run thread has stopped".to_string())?;
        rx.await
            .map_err(|_| "the run panicked; see the log".to_string())
    }
}

async fn run_once(
    shared: &Arc<Shared>,
    worker: &RunThread,
    full: bool,
    as_of: Option<NaiveDate>,
    cause: String,
    totals: bool,
) -> Result<Summary, String> {
    let as_of = match as_of {
        Some(d) => d,
        None => shared.as_of("").map_err(|s| s.message().to_string())?,
    };
    let me = shared.clone();
    let started = Instant::now();
    let res = worker
        .run(move || {
            let mut store = me.writer.lock().unwrap_or_else(|p| p.into_inner());
            let locked = Instant::now();
            let loaded = me.rules();
            let tolerance = me.cfg.promise_tolerance_days;
            arrears_app::run::settle(&mut store, &loaded.set, as_of, tolerance)
                .map_err(|e| format!("judging promises and agreements: {e}"))?;
            let settled = Instant::now();
            let mode = if full { RunMode::Full } else { RunMode::Auto };
            // The worklists in memory are the last run's: an incremental run balances
            // against them instead of reading every worklist row.
            let before = me.worklist();
            // Unless another process ran in between (`arrears run` next to the daemon):
            // then the view is stale and is read again whole after this run.
            let current = before.run_id().is_some()
                && before.run_id()
                    == store
                        .last_run()
                        .map_err(|e| e.to_string())?
                        .map(|(id, _, _)| id);
            // Collectors see what a run from the portfolio in memory decided while it
            // is written (a tenth of a second for a 1 % change at a million items).
            // An incremental run changed the entries of the customers it touched
            // only: the view keeps the rest. A full run may have moved every entry;
            // only those of customers it could not evaluate are kept from the view
            // before.
            let shown: RefCell<Option<Arc<super::WorklistView>>> = RefCell::new(None);
            let show = |d: &Decided| {
                let Some(view) =
                    view_after(&before, current, d.touched, d.entries, d.kept, d.resident)
                else {
                    return;
                };
                let view = Arc::new(view);
                me.worklist.store(view.clone());
                // No steps yet for the outbox: they are not written.
                me.publish(cause.clone(), 0);
                *shown.borrow_mut() = Some(view);
            };
            let mut resident = me.resident.lock().unwrap_or_else(|p| p.into_inner());
            let ran = run_resident(
                &mut store,
                &loaded.set,
                as_of,
                mode,
                &RunOptions {
                    totals,
                    loads: Some(before.as_ref()),
                    decided: Some(&show),
                },
                &mut resident,
            );
            let shown = shown.into_inner();
            let sum = match ran {
                Ok(sum) => sum,
                Err(e) => {
                    if shown.is_some() {
                        // What was shown was not written: back to what the store holds.
                        if let Ok(v) = super::WorklistView::load(&store) {
                            me.worklist.store(Arc::new(v));
                            me.publish(format!("{cause}; not saved: {e}"), 0);
                        }
                    }
                    return Err(e.to_string());
                }
            };
            match &shown {
                // Tagged in place: streams and caches keep recognising the view.
                Some(v) => v.tag_run(sum.run_id),
                // Not shown yet (a cold start, a stale portfolio): made now, or read
                // back when another process ran in between.
                None => {
                    let made = match (&sum.entries, resident.as_ref()) {
                        (Some((entries, kept)), Some(r)) => {
                            view_after(&before, current, sum.touched.as_deref(), entries, kept, r)
                        }
                        _ => None,
                    };
                    let view = match made {
                        Some(v) => v,
                        None => super::WorklistView::load(&store)
                            .map_err(|e| format!("reading the worklists back: {e}"))?,
                    };
                    me.worklist.store(Arc::new(view.with_run(sum.run_id)));
                }
            }
            drop(resident);
            // Where a run's time goes besides the run itself, for whoever tunes it.
            tracing::debug!(
                wait_ms = (locked - started).as_millis() as u64,
                settle_ms = (settled - locked).as_millis() as u64,
                run_ms = sum.duration_ms,
                view_ms = (settled.elapsed().as_millis() as u64).saturating_sub(sum.duration_ms),
                "run phases"
            );
            // Watchers heard of a view shown before the write already; the outbox
            // hears of the steps now that they are written.
            if shown.is_none() || sum.escalations > 0 {
                me.publish(cause, sum.escalations);
            }
            *me.kpi_as_of.lock().unwrap_or_else(|p| p.into_inner()) = Some(as_of);
            me.kpi_due.notify_one();
            Ok::<_, String>(sum)
        })
        .await
        .map_err(|e| format!("run worker failed: {e}"))?;
    let secs = started.elapsed().as_secs_f64();
    match &res {
        Ok(sum) => {
            let mode = sum.mode.clone();
            ::metrics::histogram!("arrears_run_duration_seconds", "mode" => mode.clone())
                .record(secs);
            ::metrics::counter!("arrears_runs_total", "mode" => mode, "result" => "ok")
                .increment(1);
            ::metrics::counter!("arrears_script_errors_total").increment(sum.script_errors);
            ::metrics::counter!("arrears_script_limit_hits_total").increment(sum.script_limit_hits);
            // Customers whose figures could not be computed (no rate, out of range):
            // they keep their last result until someone fixes their data.
            ::metrics::gauge!("arrears_run_customers_skipped").set(sum.customers_skipped as f64);
            ::metrics::gauge!("arrears_last_run_timestamp_seconds")
                .set(shared.clock.now().timestamp() as f64);
            *shared.last_run.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((shared.clock.now(), as_of));
        }
        Err(_) => {
            let mode = if full { "full" } else { "incremental" };
            ::metrics::counter!("arrears_runs_total", "mode" => mode, "result" => "error")
                .increment(1);
        }
    }
    res
}

/// The periodic run (`serve.run_every`; `0s` turns it off).
pub async fn schedule(shared: Arc<Shared>) {
    let every = shared.cfg.run_every;
    if every.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        shared.request_run(RunRequest::auto("scheduled run".into()));
    }
}

/// The view after a run, from what it decided: `before` patched with the entries of
/// the customers an incremental run touched (`touched`), or the whole list a full
/// run made, with the entries of the customers it could not evaluate (`kept`) kept
/// from `before`. `None` when `before` is not the store's latest run's
/// (`current`: another process ran in between) and the run cannot replace it
/// whole: the store is read instead.
fn view_after(
    before: &super::WorklistView,
    current: bool,
    touched: Option<&[i64]>,
    entries: &[arrears_store::WorklistEntry],
    kept: &[i64],
    resident: &arrears_engine::resident::Resident,
) -> Option<super::WorklistView> {
    match touched {
        Some(touched) if current => Some(
            before.patched_with(
                touched,
                entries,
                kept,
                before
                    .has_currencies()
                    .then(|| resident.open_currencies(touched)),
            ),
        ),
        None if current || kept.is_empty() => {
            Some(super::WorklistView::from_run(entries, kept, before))
        }
        _ => None,
    }
}

/// Notices what other processes (imports, connectors) committed to the store and
/// runs for the customers they changed.
///
/// What counts is the store's change counter against the one the latest run loaded
/// from, not whether customers are marked changed: a customer a run cannot evaluate
/// stays marked, and every commit (the daemon's own runs and outbox passes included)
/// would otherwise start yet another run. A change asks for one run; a run that
/// fails is not asked for again until something else changes.
pub async fn poll_store(shared: Arc<Shared>) {
    let every = shared.cfg.store_poll;
    if every.is_zero() {
        return;
    }
    let me = shared.clone();
    let conn = match tokio::task::spawn_blocking(move || me.open_store()?.for_short_reads()).await {
        Ok(Ok(s)) => Arc::new(std::sync::Mutex::new(s)),
        _ => {
            tracing::error!(
                "store poller could not open the database; external changes need a run request"
            );
            return;
        }
    };
    // Other processes' commits wake the poller as they land in the write-ahead log,
    // instead of waiting for the next tick (by default a second); the tick stays for
    // file systems and systems that do not report changes.
    let at = shared.db.to_string_lossy().into_owned();
    let postgres = arrears_store::is_postgres_url(&at);
    let mut watch = if postgres {
        Some(Watch::Listen(listen(at)))
    } else {
        match WalWatch::new(&shared.db) {
            Ok(w) => Some(Watch::Wal(Box::new(w))),
            Err(e) => {
                tracing::warn!(error = %e, "not watching the database file; polling only");
                None
            }
        }
    };
    let mut asked: Option<i64> = None;
    let mut tick = tokio::time::interval(every);
    // A look that found nothing after the log was written: the commit may be in the
    // log before its index says so, so look once more shortly. (Spacing the looks
    // out instead saved a large import a fifth of the core but cost every payment
    // two milliseconds: the daemon's own writes wake the poller too.)
    let mut again = false;
    loop {
        let woken = tokio::select! {
            _ = tick.tick() => false,
            _ = tokio::time::sleep(Duration::from_millis(2)), if again => false,
            w = async {
                match watch.as_mut() {
                    Some(w) => w.written().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Err(e) = &w {
                    tracing::warn!(error = %e, "database watch failed; polling only");
                    watch = None;
                }
                w.is_ok()
            }
        };
        let c = conn.clone();
        let last = asked;
        let me = shared.clone();
        let seen = tokio::task::spawn_blocking(move || {
            // Holding the writer (see `Shared::write`): a write made through the
            // daemon has asked for its run by the time this can see its commit.
            let _writer = me.writer.lock().unwrap_or_else(|p| p.into_inner());
            let s = c.lock().unwrap_or_else(|p| p.into_inner());
            // A follower looks for the leader's runs, not for changes: the leader
            // runs for those.
            if !me.lead.leads() {
                let last = s.last_run()?.map(|(id, _, _)| id);
                return Ok(
                    (last.is_some() && last != me.worklist().run_id()).then_some(Seen::LeadersRun)
                );
            }
            // Counting the changed customers scans them all: only for a new change.
            match s.changes_pending()? {
                Some(seq) if last != Some(seq) => Ok(Some(Seen::Change {
                    seq,
                    dirty: s.dirty_count()?,
                })),
                _ => Ok::<_, arrears_store::StoreError>(None),
            }
        })
        .await;
        again = false;
        match seen {
            Ok(Ok(Some(Seen::LeadersRun))) => {
                shared.request_run(RunRequest::auto("the leader's run".into()));
            }
            Ok(Ok(Some(Seen::Change { seq, dirty }))) => {
                tracing::debug!(seq, dirty, woken, "store poller: a change to run for");
                asked = Some(seq);
                shared.request_run(RunRequest::pending(format!(
                    "{dirty} customer(s) changed in the store"
                )));
            }
            Ok(Ok(None)) => again = woken,
            Ok(Err(e)) => tracing::warn!(error = %e, "store poller"),
            Err(e) => tracing::warn!(error = %e, "store poller failed"),
        }
        if postgres {
            continue;
        }
        if let Ok(meta) = std::fs::metadata(&shared.db) {
            let wal = std::fs::metadata(shared.db.with_extension("db-wal"))
                .map(|m| m.len())
                .unwrap_or(0);
            ::metrics::gauge!("arrears_store_size_bytes").set((meta.len() + wal) as f64);
        }
    }
}

/// What the store poller found to do.
enum Seen {
    /// A change no run has looked at (the leader, or the only daemon): run.
    Change { seq: i64, dirty: i64 },
    /// A follower: the leader's newer run, whose worklists to read.
    LeadersRun,
}

/// What wakes the store poller before its tick.
enum Watch {
    /// SQLite: writes to the write-ahead log (boxed: its event buffer is 4 KiB).
    Wal(Box<WalWatch>),
    /// PostgreSQL: the commits that appended to the change log, whichever replica
    /// or process made them (LISTEN/NOTIFY).
    Listen(mpsc::Receiver<()>),
}

impl Watch {
    async fn written(&mut self) -> std::io::Result<()> {
        match self {
            Watch::Wal(w) => w.written().await,
            Watch::Listen(rx) => rx.recv().await.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the listener stopped")
            }),
        }
    }
}

/// Listens for the change log's commits on a connection of its own, on a thread
/// of its own (the client blocks); each wake-up is handed to the poller, which
/// reads the log itself. A lost connection is opened again with back-off, and the
/// poller is woken once it is back: what was committed meanwhile is in the log.
fn listen(url: String) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    std::thread::Builder::new()
        .name("arrears-listen".into())
        .spawn(move || {
            let mut backoff = Duration::from_millis(250);
            while !tx.is_closed() {
                let mut l = match arrears_store::pg::ChangeListener::open(&url) {
                    Ok(l) => {
                        backoff = Duration::from_millis(250);
                        // Whatever was committed while no one listened.
                        let _ = tx.try_send(());
                        l
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "change listener");
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        continue;
                    }
                };
                loop {
                    match l.wait(Duration::from_secs(1)) {
                        // Full: a wake-up already waits, which covers this one.
                        Ok(true) => drop(tx.try_send(())),
                        Ok(false) if tx.is_closed() => return,
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "change listener lost its connection");
                            break;
                        }
                    }
                }
            }
        })
        .expect("a thread for the change listener");
    rx
}

/// Reports writes to the database's write-ahead log: another process's commits as
/// the daemon's own (the poller then finds nothing new). Linux only (inotify);
/// elsewhere the poller polls. The folder is watched, not the file, because SQLite
/// may create the log again.
#[cfg(target_os = "linux")]
struct WalWatch {
    events: inotify::EventStream<[u8; 4096]>,
    name: std::ffi::OsString,
}

#[cfg(target_os = "linux")]
impl WalWatch {
    fn new(db: &std::path::Path) -> std::io::Result<WalWatch> {
        let mut name = db.file_name().unwrap_or_default().to_os_string();
        name.push("-wal");
        let dir = match db.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        let ino = inotify::Inotify::init()?;
        ino.watches()
            .add(dir, inotify::WatchMask::MODIFY | inotify::WatchMask::CREATE)?;
        Ok(WalWatch {
            events: ino.into_event_stream([0u8; 4096])?,
            name,
        })
    }

    /// Waits until the log has been written to since the last call. Events are read
    /// only when asked for: until then the kernel folds a burst of writes to the log
    /// (an import writes thousands of pages) into one, where a watcher reading each
    /// as it came cost a tenth of the daemon's time during a large import.
    async fn written(&mut self) -> std::io::Result<()> {
        use futures_util::{FutureExt, StreamExt};
        loop {
            let mut ours = false;
            let mut next = self.events.next().await;
            loop {
                match next {
                    Some(Ok(e)) => ours |= e.name.as_deref() == Some(self.name.as_os_str()),
                    Some(Err(e)) => return Err(e),
                    None => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the watch ended",
                        ))
                    }
                }
                // Whatever else is there already, without waiting.
                match self.events.next().now_or_never() {
                    Some(more) => next = more,
                    None => break,
                }
            }
            if ours {
                return Ok(());
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
struct WalWatch;

#[cfg(not(target_os = "linux"))]
impl WalWatch {
    fn new(_db: &std::path::Path) -> std::io::Result<WalWatch> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "watching the database needs Linux",
        ))
    }

    async fn written(&mut self) -> std::io::Result<()> {
        std::future::pending().await
    }
}

/// Watches the rules folder; a change reloads it once the folder has been quiet for
/// `serve.reload_debounce` (editors write temp files and rename). Only creations,
/// modifications and removals count: reading the files (as a reload does) must not
/// trigger another reload. The returned watcher must stay alive for the watch to go on.
pub fn watch_rules(shared: Arc<Shared>) -> Result<notify::RecommendedWatcher, ServeError> {
    use notify::{EventKind, Watcher};
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let dir = shared.rules_dir.clone();
    let err = |e: notify::Error| ServeError::Watch {
        dir: dir.display().to_string(),
        message: e.to_string(),
    };
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev)
                if matches!(
                    ev.kind,
                    EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
                ) =>
            {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "rules watcher"),
        })
        .map_err(err)?;
    watcher
        .watch(&shared.rules_dir, notify::RecursiveMode::Recursive)
        .map_err(err)?;
    let quiet = shared.cfg.reload_debounce.max(Duration::from_millis(20));
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            while let Ok(Some(())) = tokio::time::timeout(quiet, rx.recv()).await {}
            let _ = shared.reload_rules("rules-watcher").await;
        }
    });
    Ok(watcher)
}
