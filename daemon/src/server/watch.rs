//! Worklist queries from API requests, and the `WatchWorklist` streams.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use super::auth::Principal;
use super::authz::Reach;
use super::pb;
use super::{Shared, WorklistView};
use crate::config::Role;
use crate::domain::Priority;
use crate::rules::RuleSet;
use crate::store::{WorklistEntry, WorklistQuery, WorklistScope};

/// The most entries one watch stream follows; a larger worklist is cut at this size
/// (in NAD/priority order), which is far beyond what a collector can work on.
pub const WATCH_LIMIT: usize = 5_000;
pub const MAX_PAGE: u32 = 1_000;

pub fn priority_from_pb(p: i32) -> Result<Option<Priority>, Status> {
    match pb::Priority::try_from(p) {
        Ok(pb::Priority::Unspecified) => Ok(None),
        Ok(pb::Priority::Low) => Ok(Some(Priority::Low)),
        Ok(pb::Priority::Medium) => Ok(Some(Priority::Medium)),
        Ok(pb::Priority::High) => Ok(Some(Priority::High)),
        Err(_) => Err(Status::invalid_argument(format!(
            "priority: unknown value {p}"
        ))),
    }
}

pub fn priority_to_pb(p: Priority) -> i32 {
    match p {
        Priority::Low => pb::Priority::Low as i32,
        Priority::Medium => pb::Priority::Medium as i32,
        Priority::High => pb::Priority::High as i32,
    }
}

/// Resolves a request's scope and filter against the caller's rights and the rules.
pub fn query(
    rules: &RuleSet,
    who: &Principal,
    scope: Option<&pb::WorklistScope>,
    filter: Option<&pb::WorklistFilter>,
) -> Result<WorklistQuery, Status> {
    let groups_of = |c: &str| -> Vec<String> {
        rules
            .collector_groups(c)
            .iter()
            .map(|g| g.name.clone())
            .collect()
    };
    let scope = match scope.and_then(|s| s.scope.as_ref()) {
        None | Some(pb::worklist_scope::Scope::Mine(_)) => {
            let groups = groups_of(&who.name);
            if groups.is_empty() && who.role == Role::Collector {
                return Err(Status::failed_precondition(format!(
                    "{} is not a collector of any collection group",
                    who.name
                )));
            }
            WorklistScope::Collector {
                id: who.name.clone(),
                groups,
            }
        }
        Some(pb::worklist_scope::Scope::Collector(c)) => {
            if c.is_empty() {
                return Err(Status::invalid_argument("scope.collector is empty"));
            }
            if who.role == Role::Collector && *c != who.name {
                return Err(Status::permission_denied(format!(
                    "{} may read only their own worklist, not {c}'s",
                    who.name
                )));
            }
            let groups = groups_of(c);
            if groups.is_empty() {
                return Err(Status::not_found(format!(
                    "no collector `{c}` in any collection group"
                )));
            }
            let reach = Reach::of(who, rules);
            let groups: Vec<String> = groups.into_iter().filter(|g| reach.group(g)).collect();
            if groups.is_empty() {
                return Err(Status::permission_denied(format!(
                    "{c} collects in no group {} supervises",
                    who.name
                )));
            }
            WorklistScope::Collector {
                id: c.clone(),
                groups,
            }
        }
        Some(pb::worklist_scope::Scope::Group(g)) => {
            if rules.group(g).is_none() {
                return Err(Status::not_found(format!("no collection group `{g}`")));
            }
            if !Reach::of(who, rules).group(g) {
                return Err(Status::permission_denied(format!(
                    "{} is not in collection group {g}",
                    who.name
                )));
            }
            WorklistScope::Group(g.clone())
        }
    };
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let f = filter.cloned().unwrap_or_default();
    Ok(WorklistQuery {
        scope,
        min_priority: priority_from_pb(f.min_priority)?,
        segment: nonempty(&f.segment),
        company: nonempty(&f.company),
        currency: nonempty(&f.currency),
        offset: 0,
        limit: WATCH_LIMIT,
    })
}

pub fn entry_to_pb(e: &WorklistEntry, base: &str) -> pb::WorklistEntry {
    pb::WorklistEntry {
        customer_id: e.customer_id,
        customer: format!("{}/{}", e.company, e.customer),
        customer_name: e.customer_name.clone(),
        company: e.company.clone(),
        collection_group: e.group.clone(),
        collector: e.collector.clone().unwrap_or_default(),
        nad: e.nad.to_string(),
        priority: priority_to_pb(e.priority),
        score: e.score.to_string(),
        segment: e.segment.clone(),
        profile: e.profile.clone(),
        items: e.items.max(0) as u32,
        amount: Some(pb::Money {
            amount: e.amount.to_string(),
            currency: base.to_string(),
        }),
        reason: e.reason.clone(),
    }
}

struct WatcherGuard(Arc<Shared>);
impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

type Snapshot = HashMap<i64, pb::WorklistEntry>;

/// The current worklist view, with the currencies a currency filter needs read in
/// first (once per view).
pub async fn view_for(
    shared: &Arc<Shared>,
    q: &WorklistQuery,
) -> Result<Arc<WorklistView>, Status> {
    let view = shared.worklist();
    if view.needs_currencies(q) {
        let v = view.clone();
        shared
            .read(move |store, _| v.load_currencies(store).map_err(super::status))
            .await?;
    }
    Ok(view)
}

async fn snapshot(
    shared: &Arc<Shared>,
    who: &Principal,
    req: &pb::WatchWorklistRequest,
) -> Result<(Vec<pb::WorklistEntry>, Snapshot), Status> {
    let loaded = shared.rules();
    let q = query(&loaded.set, who, req.scope.as_ref(), req.filter.as_ref())?;
    let view = view_for(shared, &q).await?;
    let (list, _) = view.page(&q);
    let base = loaded.set.rates.base.to_string();
    let list: Vec<_> = list.iter().map(|e| entry_to_pb(e, &base)).collect();
    let map = list.iter().map(|e| (e.customer_id, e.clone())).collect();
    Ok((list, map))
}

/// Starts a watch: the first message is the whole worklist, then one message per change.
pub async fn start(
    shared: Arc<Shared>,
    who: Principal,
    req: pb::WatchWorklistRequest,
) -> Result<mpsc::Receiver<Result<pb::WorklistUpdate, Status>>, Status> {
    // Subscribe before the first read so no change between the two is missed.
    let mut changes = shared.changes.subscribe();
    let (list, mut last) = snapshot(&shared, &who, &req).await?;
    let (tx, rx) = mpsc::channel(16);
    shared.watchers.fetch_add(1, Ordering::Relaxed);
    let guard = WatcherGuard(shared.clone());
    let mut stop = shared.shutdown.clone();
    tokio::spawn(async move {
        let _guard = guard;
        let mut seq = 0u64;
        let first = pb::WorklistUpdate {
            kind: pb::worklist_update::Kind::Snapshot as i32,
            upserted: list,
            removed: vec![],
            cause: "watch started".into(),
            sequence: seq,
        };
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        loop {
            let change = tokio::select! {
                _ = tx.closed() => return,
                _ = stop.wait_for(|s| *s) => return,
                c = changes.recv() => c,
            };
            let (cause, resync) = match change {
                Ok(c) => {
                    seq = c.seq;
                    (c.cause, false)
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    (format!("{n} change(s) missed; fresh snapshot"), true)
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let (list, now) = match snapshot(&shared, &who, &req).await {
                Ok(x) => x,
                Err(s) => {
                    // E.g. a reload removed the caller's group: tell them and end.
                    let _ = tx.send(Err(s)).await;
                    return;
                }
            };
            let msg = if resync {
                pb::WorklistUpdate {
                    kind: pb::worklist_update::Kind::Snapshot as i32,
                    upserted: list,
                    removed: vec![],
                    cause,
                    sequence: seq,
                }
            } else {
                let upserted: Vec<_> = list
                    .iter()
                    .filter(|e| last.get(&e.customer_id) != Some(*e))
                    .cloned()
                    .collect();
                let mut removed: Vec<i64> = last
                    .keys()
                    .filter(|k| !now.contains_key(k))
                    .copied()
                    .collect();
                removed.sort_unstable();
                if upserted.is_empty() && removed.is_empty() {
                    last = now;
                    continue;
                }
                pb::WorklistUpdate {
                    kind: pb::worklist_update::Kind::Change as i32,
                    upserted,
                    removed,
                    cause,
                    sequence: seq,
                }
            };
            last = now;
            if tx.send(Ok(msg)).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
