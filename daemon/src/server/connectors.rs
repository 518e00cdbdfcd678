//! Runs the configured connectors inside the daemon: each on its schedule, inboxes
//! also as soon as a file lands (notify, with a short quiet period so a file being
//! copied in is not read half-way), and on demand (`Connectors/SyncConnector`).
//! A sync runs on its own store connection off the async threads; a panic or error
//! in one connector is logged and counted and never reaches the rest of the daemon.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};
use tokio::sync::{oneshot, Mutex as AsyncMutex, Notify};

use super::{RunRequest, Shared};
use crate::connector::{self, ConnectorConfig, SyncStats};

/// A connector the daemon runs, and how to ask it for a sync now.
pub struct Handle {
    pub cfg: ConnectorConfig,
    now: Notify,
    /// Callers waiting for the result of the sync they asked for.
    waiting: AsyncMutex<Vec<oneshot::Sender<Result<SyncStats, String>>>>,
}

pub type Connectors = HashMap<String, Arc<Handle>>;

pub fn handles(list: &[ConnectorConfig]) -> Connectors {
    list.iter()
        .map(|c| {
            (
                c.name.clone(),
                Arc::new(Handle {
                    cfg: c.clone(),
                    now: Notify::new(),
                    waiting: AsyncMutex::new(Vec::new()),
                }),
            )
        })
        .collect()
}

/// Asks `name` to sync now and waits for that sync's result.
pub async fn sync_now(shared: &Arc<Shared>, name: &str) -> Option<Result<SyncStats, String>> {
    let h = shared.connectors.get(name)?.clone();
    let (tx, rx) = oneshot::channel();
    h.waiting.lock().await.push(tx);
    h.now.notify_one();
    Some(
        rx.await
            .unwrap_or_else(|_| Err("the daemon is shutting down".into())),
    )
}

/// Starts every connector's task; the returned watchers must live as long as the daemon.
pub fn start(shared: &Arc<Shared>) -> Vec<notify::RecommendedWatcher> {
    let mut watchers = Vec::new();
    for h in shared.connectors.values() {
        let name = h.cfg.name.clone();
        // Series exist from the start, so dashboards show zeros rather than gaps.
        for result in ["success", "failure"] {
            counter!("arrears_connector_syncs_total", "connector" => name.clone(), "result" => result)
                .increment(0);
        }
        counter!("arrears_connector_pulled_total", "connector" => name.clone()).increment(0);
        counter!("arrears_connector_errors_total", "connector" => name.clone()).increment(0);
        if let Some(path) = h.cfg.kind.inbox() {
            match watch_folder(path, h.clone()) {
                Ok(w) => watchers.push(w),
                // The schedule still picks files up; say why they are not instant.
                Err(e) => {
                    tracing::warn!(connector = %name, error = %e, "not watching the inbox folder")
                }
            }
        }
        tokio::spawn(run(shared.clone(), h.clone()));
    }
    watchers
}

fn watch_folder(
    path: &std::path::Path,
    h: Arc<Handle>,
) -> Result<notify::RecommendedWatcher, String> {
    use notify::{EventKind, Watcher};
    std::fs::create_dir_all(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if matches!(ev.kind, EventKind::Create(_) | EventKind::Modify(_)) {
                let _ = tx.send(());
            }
        }
    })
    .map_err(|e| e.to_string())?;
    // Only the folder itself: processed/ and failed/ below it are ours.
    w.watch(path, notify::RecursiveMode::NonRecursive)
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            let quiet = Duration::from_millis(300);
            while let Ok(Some(())) = tokio::time::timeout(quiet, rx.recv()).await {}
            h.now.notify_one();
        }
    });
    Ok(w)
}

async fn run(shared: Arc<Shared>, h: Arc<Handle>) {
    let name = h.cfg.name.clone();
    let mut stop = shared.shutdown.clone();
    let every = h.cfg.every;
    let mut first = true;
    loop {
        if !first {
            let scheduled = async {
                if every.is_zero() {
                    std::future::pending::<()>().await
                } else {
                    tokio::time::sleep(every).await
                }
            };
            tokio::select! {
                _ = scheduled => {}
                _ = h.now.notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        first = false;
        let waiting: Vec<_> = std::mem::take(&mut *h.waiting.lock().await);
        let (db, cfg) = (shared.db.clone(), h.cfg.clone());
        let result = tokio::task::spawn_blocking(move || connector::sync(&db, &cfg))
            .await
            .unwrap_or_else(|e| Err(format!("the sync panicked: {e}")));
        match &result {
            Ok(s) => {
                counter!("arrears_connector_syncs_total", "connector" => name.clone(), "result" => "success")
                    .increment(1);
                counter!("arrears_connector_pulled_total", "connector" => name.clone())
                    .increment(s.pulled);
                counter!("arrears_connector_errors_total", "connector" => name.clone())
                    .increment(s.failed);
                gauge!("arrears_connector_last_success_timestamp_seconds", "connector" => name.clone())
                    .set(chrono::Utc::now().timestamp() as f64);
                for d in &s.details {
                    tracing::info!(connector = %name, "{d}");
                }
                if s.pulled > 0 {
                    shared.request_run(RunRequest::auto(format!("connector {name}")));
                }
            }
            Err(e) => {
                counter!("arrears_connector_syncs_total", "connector" => name.clone(), "result" => "failure")
                    .increment(1);
                counter!("arrears_connector_errors_total", "connector" => name.clone())
                    .increment(1);
                tracing::error!(connector = %name, error = %e, "connector sync failed");
            }
        }
        for w in waiting {
            let _ = w.send(result.clone());
        }
    }
}
