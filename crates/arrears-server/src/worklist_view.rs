//! The worklists as the last run left them, held in memory.
//!
//! Worklist pages are the API's hottest read; answered from SQLite, a collector's
//! page at a million items meant counting and sorting tens of thousands of rows per
//! request (hundreds of milliseconds). The runner swaps in a new view after each run
//! (the worklist table only changes there), so a page is a walk over lists already
//! in worklist order and watch streams diff against memory instead of re-querying
//! the store.
//!
//! The lists are persistent ordered maps: a view after an incremental run shares
//! everything with the one before except the paths to the touched customers'
//! entries, so one payment costs a few tree updates rather than a rebuild of every
//! list (a hundred thousand entries at a million items, tens of milliseconds).

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, OnceLock};

use chrono::NaiveDate;
use imbl::OrdMap;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use arrears_app::run::KnownLoads;
use arrears_core::domain::Priority;
use arrears_store::{Result, Store, WorklistEntry, WorklistQuery, WorklistScope};

/// An entry's place in worklist order: NAD, then priority (high first), then score
/// (high first, compared as the store compares it: as a double), then customer.
#[derive(Clone, Copy, Debug)]
struct Pos {
    nad: NaiveDate,
    priority: Priority,
    score: f64,
    customer_id: i64,
}

impl Pos {
    fn of(e: &WorklistEntry) -> Pos {
        Pos {
            nad: e.nad,
            priority: e.priority,
            score: e.score.to_f64().unwrap_or(0.0),
            customer_id: e.customer_id,
        }
    }
}

impl Ord for Pos {
    fn cmp(&self, b: &Pos) -> Ordering {
        self.nad
            .cmp(&b.nad)
            .then_with(|| b.priority.cmp(&self.priority))
            .then_with(|| b.score.total_cmp(&self.score))
            .then_with(|| self.customer_id.cmp(&b.customer_id))
    }
}

impl PartialOrd for Pos {
    fn partial_cmp(&self, b: &Pos) -> Option<Ordering> {
        Some(self.cmp(b))
    }
}

impl PartialEq for Pos {
    fn eq(&self, b: &Pos) -> bool {
        self.cmp(b) == Ordering::Equal
    }
}

impl Eq for Pos {}

/// One list in worklist order: a persistent map, cheap to patch, and the same
/// entries laid out flat for pages, made on the first page after a change: walking
/// a vector is several times faster than walking the tree, and a page that counts
/// a filtered list walks all of it.
#[derive(Default)]
struct List {
    map: OrdMap<Pos, Arc<WorklistEntry>>,
    flat: OnceLock<Arc<Flat>>,
}

type Flat = Vec<(Pos, Arc<WorklistEntry>)>;

impl Clone for List {
    fn clone(&self) -> List {
        let flat = OnceLock::new();
        if let Some(f) = self.flat.get() {
            let _ = flat.set(f.clone());
        }
        List {
            map: self.map.clone(),
            flat,
        }
    }
}

impl List {
    fn insert(&mut self, pos: Pos, e: Arc<WorklistEntry>) {
        self.map.insert(pos, e);
        self.flat = OnceLock::new();
    }

    fn remove(&mut self, pos: &Pos) -> Option<Arc<WorklistEntry>> {
        self.flat = OnceLock::new();
        self.map.remove(pos)
    }

    fn get(&self, pos: &Pos) -> Option<&Arc<WorklistEntry>> {
        self.map.get(pos)
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn flat(&self) -> &[(Pos, Arc<WorklistEntry>)] {
        self.flat
            .get_or_init(|| Arc::new(self.map.iter().map(|(p, e)| (*p, e.clone())).collect()))
    }
}

#[derive(Default, Clone)]
pub struct WorklistView {
    /// Every entry, in worklist order.
    all: List,
    /// The same entries per collector, per group's unassigned work, per group.
    by_collector: HashMap<String, List>,
    unassigned: HashMap<String, List>,
    by_group: HashMap<String, List>,
    /// Where each customer's entry sits.
    by_customer: imbl::HashMap<i64, Pos>,
    /// Assigned work per group and collector (items, amount): what an incremental
    /// run balances the changed customers against, less their own entries. Kept
    /// by difference as entries come and go.
    loads: HashMap<(String, String), (i64, Decimal)>,
    /// The run that wrote these entries, once the daemon knows it: a view is shown
    /// before its run is written (see the runner) and tagged in place afterwards,
    /// so streams and caches keep recognising it.
    run_id: OnceLock<i64>,
    /// Which view this is (unique in the process), and, for a patched view, the
    /// view it was patched from and the customers whose entries may differ from
    /// it: streams then redo only those customers' entries.
    generation: u64,
    patch_of: Option<(u64, Arc<HashSet<i64>>)>,
    /// Open-item currencies per customer, read on the first currency-filtered query
    /// only: it costs a pass over the open items that most deployments never need.
    currencies: OnceLock<imbl::HashMap<i64, Vec<String>>>,
}

fn next_generation() -> u64 {
    static GENERATIONS: AtomicU64 = AtomicU64::new(1);
    GENERATIONS.fetch_add(1, AtomicOrdering::Relaxed)
}

impl WorklistView {
    pub fn load(store: &Store) -> Result<WorklistView> {
        // The run is read first: a run another process commits in between makes
        // the tag older than the entries, never newer, so they are read again.
        let run_id = store.last_run()?.map(|(id, _, _)| id);
        let v = WorklistView::from_entries(store.worklist_all()?);
        Ok(match run_id {
            Some(id) => v.with_run(id),
            None => v,
        })
    }

    /// A view of these entries, not yet tagged with a run.
    pub fn from_entries(entries: Vec<WorklistEntry>) -> WorklistView {
        let mut v = WorklistView {
            generation: next_generation(),
            ..WorklistView::default()
        };
        for e in entries {
            v.insert(Arc::new(e));
        }
        v
    }

    /// The view after a full run: the `entries` it wrote, and for the customers it
    /// could not evaluate (`kept`), their entries in `before` (the run left them).
    pub fn from_run(
        entries: &[WorklistEntry],
        kept: &[i64],
        before: &WorklistView,
    ) -> WorklistView {
        let mut v = WorklistView {
            generation: next_generation(),
            ..WorklistView::default()
        };
        for e in entries {
            v.insert(Arc::new(e.clone()));
        }
        for id in kept {
            if let Some(e) = before.by_customer.get(id).and_then(|p| before.all.get(p)) {
                v.insert(e.clone());
            }
        }
        v
    }

    /// The view after an incremental run rewrote the entries of the `touched`
    /// customers: `entries` are those it listed, as the run made them in memory;
    /// `kept` the customers it could not evaluate (their entries stay as this view
    /// holds them); `currencies` the touched customers' open-item currencies, needed
    /// only once a currency filter has loaded them ([`WorklistView::has_currencies`];
    /// without them the next currency filter reads them again). Every other entry is
    /// kept, shared with this view, and the result is what [`WorklistView::load`]
    /// would read (tested). Reading the entries back from the store instead was
    /// 140 ms of a 1 % change at a million items.
    pub fn patched_with(
        &self,
        touched: &[i64],
        entries: &[WorklistEntry],
        kept: &[i64],
        currencies: Option<HashMap<i64, Vec<String>>>,
    ) -> WorklistView {
        let mut v = WorklistView {
            currencies: OnceLock::new(),
            run_id: OnceLock::new(),
            ..self.clone()
        };
        for id in touched {
            v.remove(*id);
        }
        for e in entries {
            v.insert(Arc::new(e.clone()));
        }
        for id in kept {
            if let Some(e) = self.by_customer.get(id).and_then(|p| self.all.get(p)) {
                v.insert(e.clone());
            }
        }
        v.generation = next_generation();
        v.patch_of = Some((self.generation, Arc::new(touched.iter().copied().collect())));
        if let (Some(old), Some(fresh)) = (self.currencies.get(), currencies) {
            let mut map = old.clone();
            for id in touched {
                map.remove(id);
            }
            map.extend(fresh);
            let _ = v.currencies.set(map);
        }
        v
    }

    /// Whether a currency filter has loaded the open-item currencies, which a
    /// patch must then keep up to date.
    pub fn has_currencies(&self) -> bool {
        self.currencies.get().is_some()
    }

    fn insert(&mut self, e: Arc<WorklistEntry>) {
        let pos = Pos::of(&e);
        if let Some(old) = self.by_customer.insert(e.customer_id, pos) {
            // One entry per customer (the store's key): a second replaces the first.
            self.remove_at(old);
        }
        fn list<'a>(map: &'a mut HashMap<String, List>, key: &str) -> &'a mut List {
            // Keys are cloned only for a new group or collector, not per entry.
            if !map.contains_key(key) {
                map.insert(key.to_string(), List::default());
            }
            map.get_mut(key).expect("just inserted")
        }
        list(&mut self.by_group, &e.group).insert(pos, e.clone());
        match &e.collector {
            Some(c) => {
                list(&mut self.by_collector, c).insert(pos, e.clone());
                let l = self.loads.entry((e.group.clone(), c.clone())).or_default();
                l.0 += e.items;
                l.1 += e.amount;
            }
            None => {
                list(&mut self.unassigned, &e.group).insert(pos, e.clone());
            }
        }
        self.all.insert(pos, e);
    }

    fn remove(&mut self, customer_id: i64) {
        if let Some(pos) = self.by_customer.remove(&customer_id) {
            self.remove_at(pos);
        }
    }

    fn remove_at(&mut self, pos: Pos) {
        let Some(e) = self.all.remove(&pos) else {
            return;
        };
        if let Some(l) = self.by_group.get_mut(&e.group) {
            l.remove(&pos);
        }
        match &e.collector {
            Some(c) => {
                if let Some(l) = self.by_collector.get_mut(c) {
                    l.remove(&pos);
                }
                if let Some(l) = self.loads.get_mut(&(e.group.clone(), c.clone())) {
                    l.0 -= e.items;
                    l.1 -= e.amount;
                }
            }
            None => {
                if let Some(l) = self.unassigned.get_mut(&e.group) {
                    l.remove(&pos);
                }
            }
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The customers whose entries may differ between the view of generation
    /// `earlier` and this one, when this view was patched from it; `None` when
    /// anything may differ.
    pub fn changed_since(&self, earlier: u64) -> Option<Arc<HashSet<i64>>> {
        self.patch_of
            .as_ref()
            .filter(|(parent, _)| *parent == earlier && earlier != 0)
            .map(|(_, c)| c.clone())
    }

    /// Tags the view with the run that wrote its entries (see [`KnownLoads`]).
    pub fn with_run(mut self, run_id: i64) -> WorklistView {
        self.run_id = OnceLock::from(run_id);
        self
    }

    /// [`WorklistView::with_run`] for a view already shown; a no-op on one tagged.
    pub fn tag_run(&self, run_id: i64) {
        let _ = self.run_id.set(run_id);
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.map.is_empty()
    }

    /// Every entry, in worklist order.
    pub fn entries(&self) -> impl Iterator<Item = &Arc<WorklistEntry>> {
        self.all.map.values()
    }

    pub fn needs_currencies(&self, q: &WorklistQuery) -> bool {
        q.currency.is_some() && self.currencies.get().is_none()
    }

    /// Reads the currencies the first currency filter needs (see `currencies`).
    pub fn load_currencies(&self, store: &Store) -> Result<()> {
        if self.currencies.get().is_none() {
            let _ = self
                .currencies
                .set(store.open_currencies()?.into_iter().collect());
        }
        Ok(())
    }

    /// The lists the scope covers; each in worklist order, and no entry in two.
    fn lists(&self, scope: &WorklistScope) -> Vec<&List> {
        match scope {
            WorklistScope::All => vec![&self.all],
            WorklistScope::Group(g) => self.by_group.get(g).into_iter().collect(),
            WorklistScope::Collector { id, groups } => self
                .by_collector
                .get(id)
                .into_iter()
                .chain(groups.iter().filter_map(|g| self.unassigned.get(g)))
                .collect(),
        }
    }

    /// One page and the size of the whole filtered list, exactly as
    /// [`Store::worklist_page`] would answer on the same store.
    pub fn page(&self, q: &WorklistQuery) -> (Vec<&WorklistEntry>, u64) {
        let unfiltered = q.min_priority.is_none()
            && q.segment.is_none()
            && q.company.is_none()
            && q.currency.is_none();
        let scoped = self.lists(&q.scope);
        let size: u64 = scoped.iter().map(|l| l.map.len() as u64).sum();
        let currencies = self.currencies.get();
        let keep = |e: &WorklistEntry| {
            q.min_priority.is_none_or(|p| e.priority >= p)
                && q.segment.as_ref().is_none_or(|s| &e.segment == s)
                && q.company.as_ref().is_none_or(|c| &e.company == c)
                && q.currency.as_ref().is_none_or(|c| {
                    currencies
                        .and_then(|m| m.get(&e.customer_id))
                        .is_some_and(|v| v.contains(c))
                })
        };
        let mut total = 0u64;
        let mut page = Vec::new();
        if unfiltered {
            // Without a filter a page is its first entries: walked in the trees, as
            // many as it shows. (Every page through the flat copy below made each
            // payment copy the whole list for the watch streams: 40 % of the
            // daemon's CPU at 1M items.)
            let mut walks: Vec<_> = scoped.iter().map(|l| l.map.iter().peekable()).collect();
            while page.len() < q.limit {
                let mut best: Option<(usize, Pos)> = None;
                for (k, w) in walks.iter_mut().enumerate() {
                    if let Some((p, _)) = w.peek() {
                        if best.is_none_or(|(_, b)| **p < b) {
                            best = Some((k, **p));
                        }
                    }
                }
                let Some((b, _)) = best else { break };
                let Some((_, e)) = walks[b].next() else { break };
                if total as usize >= q.offset {
                    page.push(&**e);
                }
                total += 1;
            }
            return (page, size);
        }
        // A filter counts the whole list, which a vector walks several times faster
        // than the trees: the list's flat copy, made on the first such page after a
        // change, walked by index.
        let lists: Vec<&[(Pos, Arc<WorklistEntry>)]> = scoped.into_iter().map(List::flat).collect();
        let mut heads = vec![0usize; lists.len()];
        loop {
            // The smallest head among the lists: a merge in worklist order.
            let mut best: Option<(usize, Pos)> = None;
            for (k, l) in lists.iter().enumerate() {
                if let Some((p, _)) = l.get(heads[k]) {
                    if best.is_none_or(|(_, b)| *p < b) {
                        best = Some((k, *p));
                    }
                }
            }
            let Some((b, _)) = best else { break };
            let e = &lists[b][heads[b]].1;
            heads[b] += 1;
            if !keep(e) {
                continue;
            }
            if total as usize >= q.offset && page.len() < q.limit {
                page.push(&**e);
            }
            total += 1;
        }
        (page, total)
    }
}

impl KnownLoads for WorklistView {
    fn run_id(&self) -> Option<i64> {
        self.run_id.get().copied()
    }

    fn loads_outside(&self, skip: &HashSet<i64>) -> Vec<(String, String, i64, Decimal)> {
        let mut loads = self.loads.clone();
        for id in skip {
            let Some(e) = self.by_customer.get(id).and_then(|p| self.all.get(p)) else {
                continue;
            };
            if let Some(c) = &e.collector {
                if let Some(l) = loads.get_mut(&(e.group.clone(), c.clone())) {
                    l.0 -= e.items;
                    l.1 -= e.amount;
                }
            }
        }
        loads
            .into_iter()
            .map(|((g, c), (items, amount))| (g, c, items, amount))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::Snapshot;
    use arrears_app::run::{run, RunMode};
    use arrears_core::domain::Priority;

    /// A demo portfolio of `customers` (ten items each) run once in full with
    /// the shipped rules: the business day and the rules.
    fn demo_run(
        store: &mut Store,
        customers: usize,
        seed: u64,
    ) -> (chrono::NaiveDate, arrears_rules::RuleSet) {
        let as_of = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        arrears_demo::generate(
            store,
            &arrears_demo::DemoOptions {
                customers,
                items: customers * 10,
                seed,
                as_of,
                history_days: 0,
            },
            None,
        )
        .unwrap();
        let rules = arrears_test_support::shipped_rules();
        run(store, &rules, as_of, RunMode::Full).unwrap();
        (as_of, rules)
    }

    /// An item `customer` owes since July, numbered `n`.
    fn owed(
        n: usize,
        company: &str,
        customer: &str,
        currency: &str,
        amount: Decimal,
    ) -> arrears_core::domain::ItemInput {
        arrears_core::domain::ItemInput {
            source: "test".into(),
            external_id: format!("t{n}"),
            company: company.into(),
            customer: customer.into(),
            document_no: format!("T-{n}"),
            document_date: arrears_test_support::d("2026-06-01"),
            due_date: arrears_test_support::d("2026-07-01"),
            original_amount: amount,
            open_amount: amount,
            currency: arrears_core::money::Currency::parse(currency).unwrap(),
            hold: None,
            original_document: None,
        }
    }

    /// The view must answer every query exactly as the store does.
    #[test]
    fn pages_match_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("t.db")).unwrap();
        let (_, rules) = demo_run(&mut store, 400, 7);
        // Some unassigned work, so the collector scope has two lists to merge.
        store
            .test_connection()
            .execute(
                "UPDATE worklist SET collector = NULL WHERE customer_id % 5 = 0",
                [],
            )
            .unwrap();
        let view = WorklistView::load(&store).unwrap();
        assert!(view.len() > 100, "demo worklist too small: {}", view.len());
        view.load_currencies(&store).unwrap();

        let groups: Vec<String> = rules.groups.iter().map(|g| g.name.clone()).collect();
        let mut scopes = vec![WorklistScope::All];
        for g in &rules.groups {
            scopes.push(WorklistScope::Group(g.name.clone()));
            for c in &g.collectors {
                scopes.push(WorklistScope::Collector {
                    id: c.id.clone(),
                    groups: vec![g.name.clone()],
                });
            }
        }
        scopes.push(WorklistScope::Collector {
            id: "nobody".into(),
            groups: groups.clone(),
        });
        let mut checked_nonempty = 0;
        for scope in scopes {
            for (min_priority, segment, company, currency) in [
                (None, None, None, None),
                (Some(Priority::High), None, None, None),
                (Some(Priority::Medium), Some("standard"), None, None),
                (None, None, Some("ACME_DE"), None),
                (None, None, None, Some("USD")),
                (None, None, None, Some("EUR")),
            ] {
                for (offset, limit) in [(0, 10), (7, 25), (0, 100_000)] {
                    let q = WorklistQuery {
                        scope: scope.clone(),
                        min_priority,
                        segment: segment.map(Into::into),
                        company: company.map(Into::into),
                        currency: currency.map(Into::into),
                        offset,
                        limit,
                    };
                    let (want, want_total) = store.worklist_page(&q).unwrap();
                    let (got, got_total) = view.page(&q);
                    assert_eq!(got_total, want_total, "{q:?}");
                    let got: Vec<WorklistEntry> = got.into_iter().cloned().collect();
                    assert_eq!(got, want, "{q:?}");
                    if !want.is_empty() {
                        checked_nonempty += 1;
                    }
                }
            }
        }
        assert!(checked_nonempty > 50, "too few non-empty pages compared");
    }

    /// After an incremental run the daemon patches its view instead of re-reading the
    /// whole worklist: the patch must read exactly what a reload reads, currencies
    /// included, and must reuse the entries it did not touch.
    #[test]
    fn an_incremental_run_patches_the_view_to_what_a_reload_reads() {
        use arrears_core::domain::{Batch, ItemInput};
        use rust_decimal_macros::dec;

        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("t.db")).unwrap();
        let (as_of, rules) = demo_run(&mut store, 400, 7);
        let view = WorklistView::load(&store).unwrap();
        view.load_currencies(&store).unwrap();
        let some: Vec<Arc<WorklistEntry>> = view.entries().step_by(37).take(4).cloned().collect();
        assert_eq!(some.len(), 4);

        // Three customers owe more, in a currency they had not owed in; one new
        // customer appears; one customer is put off until next month.
        let item = |n: usize, company: &str, customer: &str, cur: &str| {
            owed(n, company, customer, cur, dec!(25000))
        };
        let mut items: Vec<ItemInput> = some[..3]
            .iter()
            .enumerate()
            .map(|(n, e)| item(n, &e.company, &e.customer, "USD"))
            .collect();
        items.push(item(9, "ACME_DE", "PATCH-NEW", "EUR"));
        store
            .ingest(&Batch {
                items,
                ..Batch::default()
            })
            .unwrap();
        store
            .resubmit(
                some[3].customer_id,
                arrears_test_support::d("2026-12-20"),
                "call back",
                "test",
            )
            .unwrap();

        // The loads the incremental run balances against, from memory, are what
        // the store would sum (zero loads are the same as none to the balancer).
        let dirty: HashSet<i64> = store
            .load_run_input(arrears_store::Scope::Dirty)
            .unwrap()
            .iter()
            .map(|i| i.customer.id)
            .collect();
        assert!(dirty.len() >= 4);
        let sums = |rows: Vec<(String, String, i64, Decimal)>| {
            let mut m: std::collections::BTreeMap<(String, String), (i64, Decimal)> =
                Default::default();
            for (g, c, i, a) in rows {
                let l = m.entry((g, c)).or_default();
                l.0 += i;
                l.1 += a;
            }
            m.retain(|_, l| l.0 != 0 || !l.1.is_zero());
            m
        };
        let known = sums(view.loads_outside(&dirty));
        assert!(!known.is_empty());
        assert_eq!(known, sums(store.worklist_loads_outside_dirty().unwrap()));
        assert_ne!(
            known,
            sums(view.loads_outside(&HashSet::new())),
            "the changed customers' own work is left out"
        );

        let sum = run(&mut store, &rules, as_of, RunMode::Auto).unwrap();
        let touched = sum
            .touched
            .clone()
            .expect("an incremental run names what it touched");
        assert!(
            (5..50).contains(&touched.len()),
            "touched {} customers",
            touched.len()
        );
        // The entries and currencies the run made in memory are what the store reads.
        let patched = view.patched_with(
            &touched,
            &store.worklist_of(&touched).unwrap(),
            &[],
            Some(store.open_currencies_of(&touched).unwrap()),
        );
        let fresh = WorklistView::load(&store).unwrap();
        fresh.load_currencies(&store).unwrap();

        let plain = |v: &WorklistView| -> Vec<WorklistEntry> {
            v.entries().map(|e| (**e).clone()).collect()
        };
        assert_eq!(plain(&patched), plain(&fresh));
        assert_eq!(patched.currencies.get(), fresh.currencies.get());
        assert_eq!(patched.loads, fresh.loads);

        // A stream's list over the patched view, derived from its list over the
        // view before, is the list a rebuild makes; entries of customers the patch
        // did not touch are shared, not converted again.
        let q = WorklistQuery {
            scope: WorklistScope::All,
            limit: crate::watch::WATCH_LIMIT,
            ..WorklistQuery::default()
        };
        let before = Snapshot::build(&view, &q, "EUR", None);
        let changed = patched
            .changed_since(view.generation())
            .expect("patched from `view`");
        assert!(fresh.changed_since(view.generation()).is_none());
        assert!(patched.changed_since(fresh.generation()).is_none());
        let derived = Snapshot::build(&patched, &q, "EUR", Some((&before, &changed)));
        assert_eq!(
            derived.entries(),
            Snapshot::build(&fresh, &q, "EUR", None).entries()
        );
        assert_ne!(derived.entries(), before.entries());
        let (mut shared, mut redone) = (0, 0);
        for e in derived.entries() {
            let now = derived.get(e.customer_id).unwrap();
            match before.get(e.customer_id) {
                Some(old) if !changed.contains(&e.customer_id) => {
                    assert!(Arc::ptr_eq(now, old), "{} converted again", e.customer_id);
                    shared += 1;
                }
                Some(old) => redone += usize::from(!Arc::ptr_eq(now, old)),
                None => {}
            }
        }
        assert!(
            shared > 100 && redone > 0,
            "{shared} shared, {redone} redone"
        );
        assert_ne!(
            plain(&patched),
            plain(&view),
            "the run changed the worklist"
        );
        assert!(!patched
            .entries()
            .any(|e| e.customer_id == some[3].customer_id));
        assert!(patched.entries().any(|e| e.customer == "PATCH-NEW"));
        // Every entry the run did not touch is the one the old view held.
        let old: HashSet<*const WorklistEntry> = view.entries().map(Arc::as_ptr).collect();
        let untouched: Vec<&Arc<WorklistEntry>> = patched
            .entries()
            .filter(|e| !touched.contains(&e.customer_id))
            .collect();
        assert!(untouched.len() > 100);
        assert!(untouched.iter().all(|e| old.contains(&Arc::as_ptr(e))));
        for q in [
            WorklistQuery {
                scope: WorklistScope::All,
                currency: Some("USD".into()),
                limit: 1000,
                ..WorklistQuery::default()
            },
            WorklistQuery {
                scope: WorklistScope::Group(rules.groups[0].name.clone()),
                limit: 1000,
                ..WorklistQuery::default()
            },
        ] {
            let (a, ta) = patched.page(&q);
            let (b, tb) = store.worklist_page(&q).unwrap();
            assert_eq!(ta, tb, "{q:?}");
            assert_eq!(a.into_iter().cloned().collect::<Vec<_>>(), b, "{q:?}");
        }
    }

    /// A replica that follows reads only the entries the leader's runs since its
    /// view may have rewritten, over several runs at once, and the patched view is
    /// what a reload reads; after a full run it reads every entry.
    fn a_follower_patches_its_view_to_what_a_reload_reads(store: &mut Store) {
        use arrears_app::run::KnownLoads;
        use arrears_core::domain::Batch;
        use arrears_store::WorklistSince;
        use rust_decimal_macros::dec;

        let (as_of, rules) = demo_run(store, 300, 11);
        let shown = WorklistView::load(store).unwrap();
        shown.load_currencies(store).unwrap();
        let first = shown.run_id().expect("tagged");
        assert!(matches!(
            store.worklist_since(Some(first), true).unwrap(),
            WorklistSince::Same
        ));
        let some: Vec<Arc<WorklistEntry>> = shown.entries().step_by(29).take(3).cloned().collect();
        assert_eq!(some.len(), 3);

        // Two runs the follower misses: one customer owes more in a new currency,
        // a new customer appears; then one customer is put off.
        let item = |n: usize, company: &str, customer: &str, cur: &str| {
            owed(n, company, customer, cur, dec!(30000))
        };
        store
            .ingest(&Batch {
                items: vec![
                    item(1, &some[0].company, &some[0].customer, "USD"),
                    item(2, "ACME_DE", "FOLLOW-NEW", "EUR"),
                ],
                ..Batch::default()
            })
            .unwrap();
        let a = run(store, &rules, as_of, RunMode::Auto).unwrap();
        store
            .resubmit(
                some[1].customer_id,
                arrears_test_support::d("2026-12-20"),
                "call back",
                "test",
            )
            .unwrap();
        let b = run(store, &rules, as_of, RunMode::Auto).unwrap();
        assert!(b.run_id > a.run_id && a.run_id > first);

        let fresh = WorklistView::load(store).unwrap();
        fresh.load_currencies(store).unwrap();
        let plain = |v: &WorklistView| -> Vec<WorklistEntry> {
            v.entries().map(|e| (**e).clone()).collect()
        };
        let WorklistSince::Patch {
            run_id,
            as_of: run_as_of,
            touched,
            entries,
            currencies,
        } = store.worklist_since(Some(first), true).unwrap()
        else {
            panic!("two incremental runs are read as a patch");
        };
        assert_eq!((run_id, run_as_of), (b.run_id, as_of));
        let mut both: Vec<i64> = a.touched.clone().unwrap();
        both.extend(b.touched.clone().unwrap());
        both.sort_unstable();
        both.dedup();
        assert_eq!(touched, both, "the union of both runs' customers");
        assert!(touched.len() < shown.len() / 4, "{} touched", touched.len());
        let patched = shown.patched_with(&touched, &entries, &[], currencies);
        assert_eq!(plain(&patched), plain(&fresh));
        assert_eq!(patched.currencies.get(), fresh.currencies.get());
        assert_eq!(patched.loads, fresh.loads);
        assert_ne!(
            plain(&patched),
            plain(&shown),
            "the runs changed the worklist"
        );
        assert!(patched.entries().any(|e| e.customer == "FOLLOW-NEW"));
        assert!(!patched
            .entries()
            .any(|e| e.customer_id == some[1].customer_id));
        // Only the second run missed: its customers alone.
        let WorklistSince::Patch { touched, .. } =
            store.worklist_since(Some(a.run_id), false).unwrap()
        else {
            panic!("one incremental run is read as a patch");
        };
        assert_eq!(Some(touched), b.touched);

        // A full run (the next business day) may move every entry.
        let next = as_of.succ_opt().unwrap();
        let full = run(store, &rules, next, RunMode::Full).unwrap();
        match store.worklist_since(Some(b.run_id), false).unwrap() {
            WorklistSince::Whole {
                run_id,
                as_of,
                entries,
            } => {
                assert_eq!((run_id, as_of), (full.run_id, next));
                assert_eq!(entries, store.worklist_all().unwrap());
            }
            other => panic!("after a full run every entry is read, not {other:?}"),
        }
        // A view that was never tagged with a run reads everything.
        assert!(matches!(
            store.worklist_since(None, false).unwrap(),
            WorklistSince::Whole { .. }
        ));
    }

    #[test]
    fn a_follower_patches_its_view_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("t.db")).unwrap();
        a_follower_patches_its_view_to_what_a_reload_reads(&mut store);
    }

    #[test]
    fn a_follower_patches_its_view_on_postgres() {
        a_follower_patches_its_view_to_what_a_reload_reads(&mut arrears_store::pg::testing::store());
    }
}
