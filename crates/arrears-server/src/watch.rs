//! Worklist queries from API requests, and the `WatchWorklist` streams.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Weak};

use tokio::sync::{broadcast, watch as tokio_watch};
use tokio_stream::Stream;
use tonic::Status;

use super::auth::Principal;
use super::authz::Reach;
use super::limits::{clip, WatchSlot, WatchSlots};
use super::pb;
use super::{Change, Loaded, Shared, WorklistView};
use crate::config::Role;
use arrears_core::domain::Priority;
use arrears_rules::RuleSet;
use arrears_store::{WorklistEntry, WorklistQuery, WorklistScope};

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
        days_overdue: e.days_overdue,
    }
}

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

/// One worklist as a stream sends it, with its entries found by customer.
pub struct Snapshot {
    /// Shared with the same list over the previous view where the entry did not
    /// change, so a stream finds what changed by address.
    list: Vec<Arc<pb::WorklistEntry>>,
    index: HashMap<i64, usize>,
}

impl Snapshot {
    /// The list `q` selects from `view`. `from` is the same list over the view this
    /// one was patched from, with the customers whose entries may have changed
    /// since: every other entry is taken from it instead of converted again, so a
    /// payment costs its own customer's conversion, not the whole list's.
    pub(crate) fn build(
        view: &WorklistView,
        q: &WorklistQuery,
        base: &str,
        from: Option<(&Snapshot, &HashSet<i64>)>,
    ) -> Snapshot {
        let (page, _) = view.page(q);
        let list: Vec<Arc<pb::WorklistEntry>> = page
            .iter()
            .map(|e| {
                from.filter(|(_, changed)| !changed.contains(&e.customer_id))
                    .and_then(|(old, _)| old.get(e.customer_id))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(entry_to_pb(e, base)))
            })
            .collect();
        let index = list
            .iter()
            .enumerate()
            .map(|(i, e)| (e.customer_id, i))
            .collect();
        Snapshot { list, index }
    }

    pub(crate) fn get(&self, customer_id: i64) -> Option<&Arc<pb::WorklistEntry>> {
        self.index.get(&customer_id).map(|&i| &self.list[i])
    }

    pub(crate) fn entries(&self) -> Vec<pb::WorklistEntry> {
        self.list.iter().map(|e| (**e).clone()).collect()
    }
}

/// The worklists streams follow, converted once per view and rule set: many streams
/// of one scope (a team's screens, or one client opening hundreds) share one
/// conversion and one copy instead of each holding its own.
#[derive(Default)]
pub struct SnapshotCache {
    /// Weak, so the cache never keeps an old view or rule set alive; compared by
    /// address, which cannot be reused while the weak reference exists.
    view: Weak<WorklistView>,
    generation: u64,
    rules: Weak<Loaded>,
    /// Weak too: a list lives as long as a stream holds it, so queries of streams
    /// that have closed (their keys may carry long filter strings) do not pile up
    /// until the next run.
    lists: HashMap<WorklistQuery, Weak<Snapshot>>,
    /// The lists over the view before, when the current one was patched from it,
    /// and the customers the patch may have changed: new lists are derived from
    /// them (see [`Snapshot::build`]).
    previous: HashMap<WorklistQuery, Weak<Snapshot>>,
    changed: Option<Arc<HashSet<i64>>>,
}

fn cached(
    shared: &Shared,
    loaded: &Arc<Loaded>,
    view: &Arc<WorklistView>,
    q: &WorklistQuery,
) -> Arc<Snapshot> {
    // Built under the lock: streams woken by the same run want the same lists, and
    // one of them building while the others wait beats all of them building.
    let mut c = shared.watch_cache.lock().unwrap_or_else(|p| p.into_inner());
    if !std::ptr::eq(c.view.as_ptr(), Arc::as_ptr(view))
        || !std::ptr::eq(c.rules.as_ptr(), Arc::as_ptr(loaded))
    {
        let same_rules = std::ptr::eq(c.rules.as_ptr(), Arc::as_ptr(loaded));
        c.changed = view.changed_since(c.generation).filter(|_| same_rules);
        let lists = std::mem::take(&mut c.lists);
        c.previous = if c.changed.is_some() {
            lists
        } else {
            HashMap::new()
        };
        c.view = Arc::downgrade(view);
        c.generation = view.generation();
        c.rules = Arc::downgrade(loaded);
    }
    if let Some(s) = c.lists.get(q).and_then(Weak::upgrade) {
        return s;
    }
    let previous = c.previous.get(q).and_then(Weak::upgrade);
    let from = previous.as_deref().zip(c.changed.as_deref());
    let s = Arc::new(Snapshot::build(
        view,
        q,
        &loaded.set.rates.base.to_string(),
        from,
    ));
    // At most one entry per open stream: dropping the dead ones here keeps it so.
    c.lists.retain(|_, w| w.strong_count() > 0);
    c.lists.insert(q.clone(), Arc::downgrade(&s));
    s
}

/// The caller's worklist now. The scope is resolved again each time: a reload may
/// have taken the caller out of the group.
async fn current(
    shared: &Arc<Shared>,
    who: &Principal,
    req: &pb::WatchWorklistRequest,
) -> Result<Arc<Snapshot>, Status> {
    let loaded = shared.rules();
    let q = query(&loaded.set, who, req.scope.as_ref(), req.filter.as_ref())?;
    let view = view_for(shared, &q).await?;
    Ok(cached(shared, &loaded, &view, &q))
}

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WorklistUpdate, Status>> + Send>>;

/// Starts a watch: the first message is the whole worklist, then one message per change.
///
/// Messages are made only when the transport asks for the next one, that is when the
/// client has read what it was sent (HTTP/2 flow control). A stream that is not read
/// therefore holds no queue of updates and costs no work per run; the run itself only
/// publishes to a bounded broadcast channel and never waits on a stream. A stream that
/// falls further behind than that channel holds is sent a fresh snapshot when its
/// client reads again.
pub async fn start(
    shared: Arc<Shared>,
    who: Principal,
    req: pb::WatchWorklistRequest,
) -> Result<WatchStream, Status> {
    let slot = WatchSlots::claim(&shared, &who.name)?;
    // Subscribe before the first read so no change between the two is missed.
    let changes = shared.changes.subscribe();
    let last = current(&shared, &who, &req).await?;
    let stop = shared.shutdown.clone();
    let w = Watch {
        shared,
        who,
        req,
        changes,
        stop,
        last,
        seq: 0,
        started: false,
        ended: false,
        _slot: slot,
    };
    Ok(Box::pin(futures_util::stream::unfold(w, |mut w| async {
        let item = w.next().await?;
        Some((item, w))
    })))
}

struct Watch {
    shared: Arc<Shared>,
    who: Principal,
    req: pb::WatchWorklistRequest,
    changes: broadcast::Receiver<Change>,
    stop: tokio_watch::Receiver<bool>,
    /// What the client was last sent.
    last: Arc<Snapshot>,
    seq: u64,
    started: bool,
    ended: bool,
    _slot: WatchSlot,
}

/// The most bytes of merged change causes one update carries.
const CAUSE_BYTES: usize = 512;

impl Watch {
    async fn next(&mut self) -> Option<Result<pb::WorklistUpdate, Status>> {
        if self.ended {
            return None;
        }
        if !self.started {
            self.started = true;
            return Some(Ok(pb::WorklistUpdate {
                kind: pb::worklist_update::Kind::Snapshot as i32,
                upserted: self.last.entries(),
                removed: vec![],
                cause: "watch started".into(),
                sequence: self.seq,
            }));
        }
        loop {
            let first = tokio::select! {
                _ = self.stop.wait_for(|s| *s) => return None,
                c = self.changes.recv() => c,
            };
            // Everything published since the client last read becomes one update.
            let mut causes: Vec<String> = Vec::new();
            let mut missed = 0u64;
            let mut take = |c: Result<Change, u64>, seq: &mut u64| match c {
                Ok(c) => {
                    *seq = c.seq;
                    if !causes.contains(&c.cause) {
                        causes.push(c.cause);
                    }
                }
                Err(n) => missed += n,
            };
            match first {
                Ok(c) => take(Ok(c), &mut self.seq),
                Err(broadcast::error::RecvError::Lagged(n)) => take(Err(n), &mut self.seq),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
            loop {
                match self.changes.try_recv() {
                    Ok(c) => take(Ok(c), &mut self.seq),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => take(Err(n), &mut self.seq),
                    Err(_) => break,
                }
            }
            let now = match current(&self.shared, &self.who, &self.req).await {
                Ok(s) => s,
                Err(s) => {
                    // E.g. a reload removed the caller's group: tell them and end.
                    self.ended = true;
                    return Some(Err(super::limits::clip_status(s)));
                }
            };
            let last = std::mem::replace(&mut self.last, now.clone());
            if missed > 0 {
                return Some(Ok(pb::WorklistUpdate {
                    kind: pb::worklist_update::Kind::Snapshot as i32,
                    upserted: now.entries(),
                    removed: vec![],
                    cause: format!("{missed} change(s) missed; fresh snapshot"),
                    sequence: self.seq,
                }));
            }
            if Arc::ptr_eq(&last, &now) {
                continue;
            }
            let upserted: Vec<_> = now
                .list
                .iter()
                .filter(|e| {
                    last.get(e.customer_id)
                        .is_none_or(|old| !Arc::ptr_eq(old, e) && old != *e)
                })
                .map(|e| (**e).clone())
                .collect();
            let mut removed: Vec<i64> = last
                .index
                .keys()
                .filter(|k| !now.index.contains_key(k))
                .copied()
                .collect();
            removed.sort_unstable();
            if upserted.is_empty() && removed.is_empty() {
                continue;
            }
            return Some(Ok(pb::WorklistUpdate {
                kind: pb::worklist_update::Kind::Change as i32,
                upserted,
                removed,
                cause: clip(&causes.join("; "), CAUSE_BYTES).into_owned(),
                sequence: self.seq,
            }));
        }
    }
}
