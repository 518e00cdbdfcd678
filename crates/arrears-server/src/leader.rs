//! Which replica leads, when several daemons share one PostgreSQL database.
//!
//! Every replica serves the API. One, the leader, also runs portfolios, connectors
//! and the outbox: two replicas running the same portfolio would open every case
//! twice, two syncing one connector would race for its cursor. The leader is the
//! replica whose session holds the database's leader lock
//! ([`arrears_store::pg::Leadership`]); the server frees it when that session
//! ends, the leader's process killed included, and the next replica to try leads.
//! The others follow: their worklists are read from the store whenever the
//! leader's run lands (the change listener wakes them).
//!
//! On SQLite the daemon is alone with its file: it always leads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use crate::runner::RunRequest;

/// How often a follower tries to lead, and a leader checks it still does: the
/// failover time is about this plus the server noticing the dead session (at once
/// for a killed process: its socket closes).
const TRY_EVERY: Duration = Duration::from_millis(500);

pub struct Lead {
    leads: AtomicBool,
    /// This replica's name, as operators see it in `pg_stat_activity` and the log.
    pub name: String,
    /// Woken when this replica becomes the leader, so leader-only work starts at
    /// once rather than at its next tick.
    pub became: tokio::sync::Notify,
}

impl Lead {
    /// The only daemon of its database (SQLite): it leads for good.
    pub fn sole() -> Lead {
        Lead {
            leads: AtomicBool::new(true),
            name: String::new(),
            became: tokio::sync::Notify::new(),
        }
    }

    /// One of several replicas: it follows until it holds the lock.
    pub fn replica(name: String) -> Lead {
        ::metrics::gauge!("arrears_leader").set(0.0);
        Lead {
            leads: AtomicBool::new(false),
            name,
            became: tokio::sync::Notify::new(),
        }
    }

    pub fn leads(&self) -> bool {
        self.leads.load(Ordering::SeqCst)
    }

    fn set(&self, leads: bool) {
        self.leads.store(leads, Ordering::SeqCst);
        ::metrics::gauge!("arrears_leader").set(if leads { 1.0 } else { 0.0 });
    }
}

/// A name for this replica: the host and the process.
pub fn replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "arrears".into());
    format!("{host}/{}", std::process::id())
}

/// Tries to lead until shutdown, and keeps checking while it leads (PostgreSQL
/// only). Becoming the leader asks for a full run, which also brings this
/// replica's portfolio in memory up to date, and wakes the outbox and the
/// connectors; losing the lock (a cut-off session) stops them before their next
/// piece of work.
pub async fn keep(shared: Arc<Shared>, url: String) {
    let mut stop = shared.shutdown.clone();
    // The session that tries to lead, and holds the lock once it does.
    let mut session: Option<arrears_store::pg::Leadership> = None;
    let mut tick = tokio::time::interval(TRY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let (u, name, was) = (url.clone(), shared.lead.name.clone(), shared.lead.leads());
        let s = session.take();
        let (s, leads, err) = tokio::task::spawn_blocking(move || {
            let mut s = match s {
                Some(s) => s,
                None => match arrears_store::pg::Leadership::session(&u, &name) {
                    Ok(s) => s,
                    Err(e) => return (None, false, Some(e.to_string())),
                },
            };
            let leads = if was {
                s.still_held()
            } else {
                match s.try_lead() {
                    Ok(l) => l,
                    // The session is dropped: a new one next time.
                    Err(e) => return (None, false, Some(e.to_string())),
                }
            };
            // A leader that lost its lock drops the session: a new one may try.
            (if was && !leads { None } else { Some(s) }, leads, None)
        })
        .await
        .unwrap_or((None, false, Some("the leader check failed".into())));
        session = s;
        match (was, leads) {
            (false, true) => {
                tracing::info!(replica = %shared.lead.name, "this replica leads: runs, connectors and the outbox are its");
                shared.lead.set(true);
                shared.lead.became.notify_waiters();
                shared.request_run(RunRequest::full("this replica became the leader".into()));
            }
            (true, false) => {
                tracing::error!(replica = %shared.lead.name, "this replica no longer leads (its session was lost): it follows");
                shared.lead.set(false);
            }
            _ => {}
        }
        if let Some(e) = err {
            tracing::warn!(error = %e, "cannot try to lead");
        }
    }
}
