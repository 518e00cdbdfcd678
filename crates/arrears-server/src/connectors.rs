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
use arrears_connectors::{self as connector, plugin, ConnectorConfig, Kind, SyncStats};

/// How often a running plugin is asked whether it is healthy.
const HEALTH_EVERY: Duration = Duration::from_secs(30);

/// A plugin pull: over gRPC from the long-lived process, then stored (and the
/// outcome recorded) on a store connection of its own.
async fn plugin_sync(
    shared: &Arc<Shared>,
    cfg: &ConnectorConfig,
    host: &mut plugin::Host,
) -> Result<SyncStats, String> {
    let at = shared.clock.now();
    let (me, name) = (shared.clone(), cfg.name.clone());
    let cursor = tokio::task::spawn_blocking(move || {
        me.open_store()
            .and_then(|s| s.connector_health(&name))
            .map(|h| h.and_then(|h| h.cursor).unwrap_or_default())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    let pulled = host.pull(&cursor).await;
    let (me, cfg) = (shared.clone(), cfg.clone());
    tokio::task::spawn_blocking(move || {
        let mut store = me.open_store().map_err(|e| e.to_string())?;
        let result = pulled.and_then(|b| plugin::store_pull(&mut store, &cfg.name, &b));
        connector::record(&store, &cfg, at, &result);
        result
    })
    .await
    .unwrap_or_else(|e| Err(format!("the sync panicked: {e}")))
}

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
    if !shared.lead.leads() {
        return Some(Err(format!(
            "this replica ({}) follows: connectors sync on the leader; ask the leader",
            shared.lead.name
        )));
    }
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
        counter!("arrears_connector_restarts_total", "connector" => name.clone()).increment(0);
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
    // A plugin process lives as long as its connector's task.
    let mut host = match &h.cfg.kind {
        Kind::Plugin(p) => Some(plugin::Host::new(&name, p)),
        _ => None,
    };
    let mut health = tokio::time::interval(HEALTH_EVERY);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;
    let mut stopping = false;
    loop {
        if !first {
            let scheduled = async {
                if every.is_zero() {
                    std::future::pending::<()>().await
                } else {
                    tokio::time::sleep(every).await
                }
            };
            tokio::pin!(scheduled);
            loop {
                tokio::select! {
                    _ = &mut scheduled => break,
                    _ = h.now.notified() => break,
                    _ = shared.lead.became.notified() => break,
                    _ = health.tick(), if host.is_some() => {
                        if let Some(host) = host.as_mut() {
                            // A failed check stops the plugin; the next pull starts it again.
                            if let Err(e) = host.health().await {
                                tracing::warn!(connector = %name, error = %e, "plugin health");
                            }
                        }
                    }
                    changed = stop.changed() => {
                        let stopped = *stop.borrow();
                        if changed.is_err() || stopped {
                            stopping = true;
                            break;
                        }
                    }
                }
            }
            if stopping {
                if let Some(host) = host.as_mut() {
                    host.stop().await;
                }
                return;
            }
        }
        first = false;
        // One replica syncs each connector, the leader: two would race for its
        // cursor. A sync asked for just before this replica stopped leading is
        // answered, not left waiting.
        if !shared.lead.leads() {
            for w in std::mem::take(&mut *h.waiting.lock().await) {
                let _ = w.send(Err(format!(
                    "this replica ({}) no longer leads: connectors sync on the leader; ask the leader",
                    shared.lead.name
                )));
            }
            continue;
        }
        let waiting: Vec<_> = std::mem::take(&mut *h.waiting.lock().await);
        let result = match host.as_mut() {
            Some(host) => plugin_sync(&shared, &h.cfg, host).await,
            None => {
                let (me, cfg) = (shared.clone(), h.cfg.clone());
                let as_of = shared.as_of("").unwrap_or_else(|_| shared.clock.today());
                tokio::task::spawn_blocking(move || {
                    let mut store = me.open_store().map_err(|e| e.to_string())?;
                    connector::sync(&mut store, &cfg, as_of)
                })
                .await
                .unwrap_or_else(|e| Err(format!("the sync panicked: {e}")))
            }
        };
        match &result {
            Ok(s) => {
                counter!("arrears_connector_syncs_total", "connector" => name.clone(), "result" => "success")
                    .increment(1);
                counter!("arrears_connector_pulled_total", "connector" => name.clone())
                    .increment(s.pulled);
                counter!("arrears_connector_errors_total", "connector" => name.clone())
                    .increment(s.failed);
                gauge!("arrears_connector_last_success_timestamp_seconds", "connector" => name.clone())
                    .set(shared.clock.now().timestamp() as f64);
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
