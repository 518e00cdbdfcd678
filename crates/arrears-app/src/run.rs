//! The portfolio run: evaluate customers, open/close/update cases, decide escalation
//! steps, build balanced worklists, and write everything in one transaction.
//!
//! Full vs incremental: when the last run had the same `as_of` and the same rules hash,
//! only customers changed since (the change log every write appends to, which moves
//! their `dirty` counter) can have a different result, so only they are evaluated;
//! their worklist entries are re-balanced against the load the unchanged customers
//! already give each collector. A run resets a counter only to zero from the value it
//! loaded, so a write that lands while it works is not lost.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use arrears_core::domain::Priority;
use arrears_engine::evaluate::{evaluate, CaseAction, EvalError};
use arrears_engine::resident::Resident;
use arrears_engine::worklist::{balance, Candidate, Load};
use arrears_rules::{collectors_by_id, RuleSet};
use arrears_store::{
    AgreementStore, Delta, EscalationOut, NewCase, PortfolioStore, PromiseStore, RunInput,
    RunOutput, Scope, StateOut, Store, StoreError, WorklistEntry, WorklistOut, WriteOffStore,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// Incremental when possible (same as-of date and rules as the last run), else full.
    Auto,
    Full,
    Incremental,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("incremental run impossible: {0}; run with --mode full")]
    NotIncremental(String),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorklistSummary {
    pub entries: u64,
    pub unassigned: u64,
    pub by_collector: BTreeMap<String, u64>,
}

/// What one run did; its worklist and priority counts cover the customers it
/// evaluated (all of them in a full run, the changed ones in an incremental run), and
/// `portfolio` the whole portfolio after it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    pub run_id: i64,
    pub as_of: Option<NaiveDate>,
    pub mode: String,
    pub rules_hash: String,
    pub customers_evaluated: u64,
    pub open_items: u64,
    pub cases_opened: u64,
    pub cases_updated: u64,
    pub cases_closed: u64,
    pub open_cases_by_priority: BTreeMap<String, u64>,
    pub customers_by_segment: BTreeMap<String, u64>,
    pub customers_by_profile: BTreeMap<String, u64>,
    pub escalations: u64,
    pub escalations_by_level: BTreeMap<String, u64>,
    pub worklist: WorklistSummary,
    pub script_errors: u64,
    pub script_limit_hits: u64,
    /// First few problems (script errors, customers skipped for a missing rate or
    /// figures out of range).
    pub problems: Vec<String>,
    /// Customers whose figures could not be computed: they keep their last result.
    pub customers_skipped: u64,
    pub duration_ms: u64,
    /// Where the time went: load, evaluate, balance, write (ms).
    pub phases_ms: BTreeMap<String, u64>,
    /// The portfolio after the run: an incremental run that had nothing to do still
    /// leaves one, which its own counts (all zero) do not show.
    pub portfolio: arrears_store::Portfolio,
    /// The customers whose worklist entries an incremental run may have rewritten;
    /// `None` after a full run (every entry may have moved). Lets the daemon refresh
    /// its in-memory worklists for these customers instead of re-reading them all.
    #[serde(skip)]
    pub touched: Option<Vec<i64>>,
    /// After a run from the resident portfolio: the worklist entries of the customers
    /// it evaluated (every customer, after a full run), as the store would read them
    /// back, and the customers it could not evaluate (whose entries stay as they
    /// were). The daemon builds or patches its worklist view from these instead of
    /// reading the entries back from the store.
    #[serde(skip)]
    pub entries: Option<(Vec<WorklistEntry>, Vec<i64>)>,
}

const MAX_PROBLEMS: usize = 20;

struct Laps {
    last: Instant,
    phases: BTreeMap<String, u64>,
}

impl Laps {
    fn lap(&mut self, name: &str) {
        self.phases
            .insert(name.to_string(), self.last.elapsed().as_millis() as u64);
        self.last = Instant::now();
    }
}

/// [`run_on`] the SQLite store. This one stays concrete because the daemon passes
/// its writer's lock guard, which derefs to a `Store` (a coercion a generic
/// parameter does not make).
pub fn run(
    store: &mut Store,
    rules: &RuleSet,
    as_of: NaiveDate,
    mode: RunMode,
) -> Result<Summary, RunError> {
    run_on(store, rules, as_of, mode)
}

/// [`run`] for a caller that does not report the portfolio totals
/// ([`Summary::portfolio`] stays empty): the daemon's runs for a change nobody
/// waits on. Counting the whole portfolio costs more than an incremental run of one
/// customer at a million items.
pub fn run_without_totals(
    store: &mut Store,
    rules: &RuleSet,
    as_of: NaiveDate,
    mode: RunMode,
) -> Result<Summary, RunError> {
    run_with(store, rules, as_of, mode, &RunOptions::default(), None)
}

/// The collectors' loads as a caller already holds them (the daemon keeps every
/// worklist entry in memory): an incremental run then skips the pass over every
/// worklist row in the store, most of what one changed customer cost at a million
/// items.
pub trait KnownLoads {
    /// The run whose worklists these are. They are used only when that run is still
    /// the store's latest: another process's run (`arrears run` next to a daemon)
    /// makes them stale, and the run then reads the store.
    fn run_id(&self) -> Option<i64>;
    /// (group, collector, items, amount) summed per group and collector over the
    /// assigned entries of every customer but those in `skip`.
    fn loads_outside(&self, skip: &HashSet<i64>) -> Vec<(String, String, i64, Decimal)>;
}

/// What the portfolio held has listed, each entry as the store holds it.
impl KnownLoads for Resident {
    fn run_id(&self) -> Option<i64> {
        Some(Resident::run_id(self))
    }

    fn loads_outside(&self, skip: &HashSet<i64>) -> Vec<(String, String, i64, Decimal)> {
        let mut sums: HashMap<(&str, &str), (i64, Decimal)> = HashMap::new();
        for w in self.inputs().iter().filter_map(|i| i.listed.as_ref()) {
            if let (Some(c), false) = (&w.collector, skip.contains(&w.customer_id)) {
                let e = sums.entry((&w.group, c)).or_default();
                e.0 += w.items;
                e.1 += w.amount;
            }
        }
        sums.into_iter()
            .map(|((g, c), (items, amount))| (g.to_string(), c.to_string(), items, amount))
            .collect()
    }
}

/// How a caller wants a run done; the default is what [`run_without_totals`] does.
#[derive(Default, Clone, Copy)]
pub struct RunOptions<'a> {
    /// Report the whole portfolio's totals in [`Summary::portfolio`].
    pub totals: bool,
    pub loads: Option<&'a dyn KnownLoads>,
    /// Told what a run from the resident portfolio decided before it is written:
    /// the daemon shows it to collectors while the store catches up. If the write
    /// then fails, the store keeps what it had and the run reports the error.
    pub decided: Option<&'a dyn Fn(&Decided)>,
}

/// What a run decided, before it is written (see [`RunOptions::decided`]).
pub struct Decided<'a> {
    /// The customers whose worklist entries may change; `None` for a full run.
    pub touched: Option<&'a [i64]>,
    /// The worklist entries of the customers evaluated, as the store will read them.
    pub entries: &'a [WorklistEntry],
    /// Customers that could not be evaluated: their entries stay as they were.
    pub kept: &'a [i64],
    /// Escalation steps decided (the outbox has work once they are written).
    pub escalations: u64,
    /// The portfolio the run read, as it was before the run.
    pub resident: &'a Resident,
}

/// [`run`] with [`RunOptions`].
pub fn run_with_options(
    store: &mut Store,
    rules: &RuleSet,
    as_of: NaiveDate,
    mode: RunMode,
    options: &RunOptions,
) -> Result<Summary, RunError> {
    run_with(store, rules, as_of, mode, options, None)
}

/// [`run_with_options`] for a caller that keeps the portfolio in memory between
/// runs (the daemon): `resident` is read instead of the store when it holds the
/// latest run's result, only the customers changed since are loaded, and it is
/// brought up to date with what this run wrote. When it is missing or stale (a
/// start, another process's run), the run loads the whole portfolio into it, even
/// if it evaluates only the changed customers.
pub fn run_resident(
    store: &mut Store,
    rules: &RuleSet,
    as_of: NaiveDate,
    mode: RunMode,
    options: &RunOptions,
    resident: &mut Option<Resident>,
) -> Result<Summary, RunError> {
    run_with(store, rules, as_of, mode, options, Some(resident))
}

/// The portfolio run on any store: loads the customers (all, or the changed ones),
/// evaluates them, balances the worklists and writes the result in one go.
pub fn run_on<S: PortfolioStore + ?Sized>(
    store: &mut S,
    rules: &RuleSet,
    as_of: NaiveDate,
    mode: RunMode,
) -> Result<Summary, RunError> {
    run_with(
        store,
        rules,
        as_of,
        mode,
        &RunOptions {
            totals: true,
            ..RunOptions::default()
        },
        None,
    )
}

fn run_with<S: PortfolioStore + ?Sized>(
    store: &mut S,
    rules: &RuleSet,
    as_of: NaiveDate,
    mode: RunMode,
    options: &RunOptions,
    mut resident: Option<&mut Option<Resident>>,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    let last = store.last_run()?;
    let last_id = last.as_ref().map(|l| l.0);
    let current = resident
        .as_deref()
        .and_then(Option::as_ref)
        .is_some_and(|r| Some(r.run_id()) == last_id);
    let known_loads = options
        .loads
        .filter(|k| k.run_id().is_some() && k.run_id() == last.as_ref().map(|l| l.0));
    let same = last
        .as_ref()
        .is_some_and(|(_, d, h)| *d == as_of && *h == rules.hash);
    let incremental = match mode {
        RunMode::Full => false,
        RunMode::Auto => same,
        RunMode::Incremental if same => true,
        RunMode::Incremental => {
            let why = match &last {
                None => "no earlier run".to_string(),
                Some((_, d, _)) if *d != as_of => format!("the last run was for {d}"),
                Some(_) => "the rules changed since the last run".to_string(),
            };
            return Err(RunError::NotIncremental(why));
        }
    };
    let mut laps = Laps {
        last: Instant::now(),
        phases: BTreeMap::new(),
    };
    // The customers to evaluate: from the store, or the changed ones from the store
    // and the rest from memory.
    let mut loaded = Vec::new();
    let mut changed: Vec<i64> = Vec::new();
    // The change log since what is held; it must belong to the run held (another
    // process may have run since `last_run` was read).
    let feed = match resident.as_deref().and_then(Option::as_ref) {
        Some(r) if current => {
            Some(store.changes_since(r.seq())?).filter(|f| f.last_run == Some(r.run_id()))
        }
        _ => None,
    };
    let current = feed.is_some();
    if let (Some(feed), Some(Some(r))) = (feed, resident.as_deref_mut()) {
        changed = follow_changes(store, r, feed)?;
    } else {
        // A caller keeping the portfolio gets all of it loaded (a cold start) even
        // when only the changed customers are evaluated.
        let all = !incremental || resident.is_some();
        loaded = store.load_run_input(if all { Scope::All } else { Scope::Dirty })?;
    }
    let cursor = store.loaded_at().unwrap_or_default();
    let held = resident
        .as_deref()
        .and_then(Option::as_ref)
        .filter(|_| current);
    let inputs: Vec<&RunInput> = match held {
        Some(r) if incremental => changed.iter().filter_map(|id| r.get(*id)).collect(),
        Some(r) => r.inputs().iter().collect(),
        // What `Scope::Dirty` loads: the customers whose change counter is set.
        None if incremental && resident.is_some() => {
            loaded.iter().filter(|i| i.changes != 0).collect()
        }
        None => loaded.iter().collect(),
    };
    laps.lap("load");
    let mut sum = Summary {
        as_of: Some(as_of),
        mode: if incremental { "incremental" } else { "full" }.into(),
        rules_hash: rules.hash.clone(),
        ..Summary::default()
    };
    let mut out = RunOutput::default();
    let collectors = collectors_by_id(rules);
    let mut cands: Vec<Vec<(Candidate, WorklistOut)>> = vec![Vec::new(); rules.groups.len()];

    for &input in &inputs {
        out.processed.push((input.customer.id, input.changes));
        let ev = match evaluate(rules, as_of, input, false) {
            Ok(ev) => ev,
            Err(e @ EvalError::Money { .. }) => {
                // Without a rate, or with figures beyond the amount bound, the customer's
                // amounts cannot be judged: its stored result (state, cases, worklist
                // entry) stays as it was, the rest of the portfolio runs, and it is
                // retried by the next run.
                out.processed.pop();
                out.kept.push(input.customer.id);
                sum.customers_skipped += 1;
                if sum.problems.len() < MAX_PROBLEMS {
                    sum.problems.push(format!("{e}; its last result is kept"));
                }
                continue;
            }
        };
        sum.customers_evaluated += 1;
        sum.open_items += ev.open_cases as u64;
        for e in &ev.script_errors {
            sum.script_errors += 1;
            sum.script_limit_hits += u64::from(e.limit_hit);
            if sum.problems.len() < MAX_PROBLEMS {
                sum.problems.push(format!(
                    "customer {}/{}: {e}",
                    input.customer.company, input.customer.code
                ));
            }
        }
        let strat = &rules.strategies[ev.strategy];
        let cid = input.customer.id;
        for a in &ev.cases {
            match a {
                CaseAction::Open {
                    item_id,
                    nad,
                    priority,
                    external_ref,
                } => {
                    sum.cases_opened += 1;
                    out.new_cases.push(NewCase {
                        item_id: *item_id,
                        customer_id: cid,
                        nad: *nad,
                        priority: *priority,
                        external_ref: external_ref.clone(),
                    });
                }
                CaseAction::Update {
                    case_id,
                    nad,
                    priority,
                } => {
                    sum.cases_updated += 1;
                    out.case_updates.push((*case_id, *nad, *priority));
                }
                CaseAction::Close { case_id, reason } => {
                    sum.cases_closed += 1;
                    out.closed.push((*case_id, reason.clone()));
                }
            }
        }
        *sum.customers_by_segment
            .entry(ev.facts.segment.clone())
            .or_default() += 1;
        *sum.customers_by_profile
            .entry(ev.profile.clone())
            .or_default() += 1;
        let ladder = &rules.ladders[ev.ladder];
        if let Some(d) = &ev.escalation.decision {
            // Only levels that move are written: a resend or a big customer's new
            // invoice leaves most items where they were. The step lists its items in
            // the input's order, so one pass finds each one's level before.
            let mut rest = input.items.iter();
            for &(id, level) in &d.items {
                if rest
                    .find(|i| i.id == id)
                    .is_some_and(|i| i.dun_level != level)
                {
                    out.item_levels.push((id, level));
                }
            }
            let level = &ladder.levels[d.level - 1];
            sum.escalations += 1;
            *sum.escalations_by_level
                .entry(level.name.clone())
                .or_default() += 1;
            out.escalations.push(EscalationOut {
                customer_id: cid,
                ladder: ladder.name.clone(),
                level: d.level,
                level_name: level.name.clone(),
                channel: serde_json::to_value(level.channel)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                template: level.template.clone(),
                copy_manager: level.copy_manager,
                amount: d.amount,
                items: serde_json::to_string(&d.items).unwrap_or_default(),
                reason: d.reason.clone(),
            });
        }
        if let Some(reason) = &ev.on_worklist {
            let nad = ev.min_nad.unwrap_or(as_of);
            cands[ev.group].push((
                Candidate {
                    customer_id: cid,
                    score: ev.facts.score,
                    items: ev.open_cases as i64,
                    amount: ev.facts.open_amount,
                    sticky: ev
                        .assigned
                        .clone()
                        .or_else(|| input.state.collector.clone()),
                },
                WorklistOut {
                    customer_id: cid,
                    group: rules.groups[ev.group].name.clone(),
                    collector: None,
                    score: ev.facts.score,
                    priority: ev.priority,
                    nad,
                    items: ev.open_cases as i64,
                    amount: ev.facts.open_amount,
                    reason: reason.clone(),
                },
            ));
        }
        out.states.push(StateOut {
            customer_id: cid,
            strategy: strat.name.clone(),
            segment: ev.facts.segment,
            profile: ev.profile,
            score: ev.facts.score,
            group: rules.groups[ev.group].name.clone(),
            collector: None,
            priority: ev.priority,
            dunning_level: ev.escalation.state.level,
            dunning_on: ev.escalation.state.on,
        });
    }

    laps.lap("evaluate");
    // Balance per group; in incremental runs against the load unchanged customers give.
    let mut loads: Vec<HashMap<String, Load>> = vec![HashMap::new(); rules.groups.len()];
    if incremental {
        // The portfolio held knows every customer's entry as written.
        let outside = match known_loads.or(held.map(|r| r as &dyn KnownLoads)) {
            Some(k) => k.loads_outside(&inputs.iter().map(|i| i.customer.id).collect()),
            None => store.worklist_loads_outside_dirty()?,
        };
        for (g, c, items, amount) in outside {
            if let Some(gi) = rules.groups.iter().position(|x| x.name == g) {
                let l = loads[gi].entry(c).or_default();
                l.items += items;
                l.amount += amount;
            }
        }
    }
    let mut assigned_to: HashMap<i64, Option<String>> = HashMap::new();
    for (gi, group_cands) in cands.into_iter().enumerate() {
        let (cs, mut rows): (Vec<Candidate>, Vec<WorklistOut>) = group_cands.into_iter().unzip();
        let index: HashMap<i64, usize> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.customer_id, i))
            .collect();
        for (c, who) in balance(&rules.groups[gi], &collectors, as_of, cs, &mut loads[gi]) {
            let row = &mut rows[index[&c.customer_id]];
            row.collector = who.clone();
            assigned_to.insert(c.customer_id, who);
        }
        out.worklist.extend(rows);
    }
    for s in &mut out.states {
        s.collector = assigned_to.get(&s.customer_id).cloned().flatten();
    }
    for w in &out.worklist {
        sum.worklist.entries += 1;
        match &w.collector {
            Some(c) => *sum.worklist.by_collector.entry(c.clone()).or_default() += 1,
            None => sum.worklist.unassigned += 1,
        }
    }
    let mut prio: BTreeMap<String, u64> = BTreeMap::new();
    for p in [Priority::High, Priority::Medium, Priority::Low] {
        prio.insert(p.as_str().into(), 0);
    }
    sum.open_cases_by_priority = prio;
    count_priorities(&out, &inputs, &mut sum);

    laps.lap("balance");
    let (all_states, all_worklist) = keep_changed_rows(&mut out, &inputs, as_of, !incremental);
    if incremental {
        let mut touched: Vec<i64> = out.processed.iter().map(|(id, _)| *id).collect();
        touched.extend(out.kept.iter().copied());
        touched.extend(out.worklist.iter().map(|w| w.customer_id));
        touched.sort_unstable();
        touched.dedup();
        out.touched = Some(touched.clone());
        sum.touched = Some(touched);
    }
    // The entries as the store will read them back, made from the portfolio held
    // (the run changes none of what they show but the run's own results): the
    // daemon's view takes them instead of reading them back, before the write when
    // it asked to.
    let mut entries = None;
    if let Some(r) = held {
        let made = worklist_entries(r, &all_states, &all_worklist, as_of);
        if let Some(f) = options.decided {
            f(&Decided {
                touched: sum.touched.as_deref(),
                entries: &made,
                kept: &out.kept,
                escalations: sum.escalations,
                resident: r,
            });
        }
        entries = Some(made);
    }
    sum.phases_ms = laps.phases.clone();
    let json = serde_json::to_string(&sum).unwrap_or_default();
    let (run_id, new_case_ids) =
        store.write_run(as_of, &rules.hash, &sum.mode, !incremental, &out, &json)?;
    sum.run_id = run_id;
    drop(inputs);
    if let Some(slot) = resident {
        match slot {
            Some(r) if current => r.apply(&out, &new_case_ids, run_id, as_of),
            _ => {
                let mut r = Resident::new(loaded, run_id, cursor);
                r.apply(&out, &new_case_ids, run_id, as_of);
                *slot = Some(r);
            }
        }
        // A cold start made the portfolio only now.
        if let (None, Some(r)) = (&entries, slot.as_ref()) {
            entries = Some(worklist_entries(r, &all_states, &all_worklist, as_of));
        }
        sum.entries = entries.map(|e| (e, out.kept.clone()));
    }
    laps.lap("write");
    if options.totals {
        sum.portfolio = store.portfolio()?;
    }
    sum.phases_ms = laps.phases;
    sum.duration_ms = started.elapsed().as_millis() as u64;
    tracing::info!(run_id = sum.run_id, mode = %sum.mode, customers = sum.customers_evaluated, ms = sum.duration_ms, "run finished");
    Ok(sum)
}

/// Brings the resident portfolio up to the change log's `feed` and returns the
/// customers marked changed (those a run evaluates). A customer the log names only
/// by items gets those items loaded again; any other changed customer (its data,
/// promises, payments, or a change the log no longer holds: one a failed run left)
/// is loaded whole. At a million items a 1 % change touched 40 % of the items'
/// customers; reloading them whole was most of what it cost.
fn follow_changes<S: PortfolioStore + ?Sized>(
    store: &S,
    r: &mut Resident,
    feed: arrears_store::ChangesSince,
) -> Result<Vec<i64>, RunError> {
    let mut items_of: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut whole: HashSet<i64> = HashSet::new();
    for (customer, item) in feed.entries {
        match item {
            Some(item) if !whole.contains(&customer) => {
                items_of.entry(customer).or_default().push(item)
            }
            _ => {
                whole.insert(customer);
                items_of.remove(&customer);
            }
        }
    }
    let counters: HashMap<i64, i64> = feed.dirty.iter().copied().collect();
    // Only a held customer marked changed is patched: the log and the counters are
    // read together, so a customer with entries is marked.
    items_of.retain(|c, _| counters.contains_key(c) && r.get(*c).is_some());
    let reload: Vec<i64> = feed
        .dirty
        .iter()
        .map(|(c, _)| *c)
        .filter(|c| !items_of.contains_key(c))
        .collect();
    let asked: Vec<i64> = items_of.values().flatten().copied().collect();
    let mut fresh: HashMap<i64, Vec<arrears_store::ItemRow>> = HashMap::new();
    if !asked.is_empty() {
        for (customer, item) in store.load_items(&asked)? {
            fresh.entry(customer).or_default().push(item);
        }
    }
    for (customer, items) in &items_of {
        let rows = fresh.remove(customer).unwrap_or_default();
        r.patch_items(*customer, items, rows, counters[customer]);
    }
    if !reload.is_empty() {
        r.replace(store.load_run_input(Scope::Ids(&reload))?);
    }
    r.set_seq(feed.seq);
    Ok(feed.dirty.iter().map(|(c, _)| *c).collect())
}

/// The worklist entries a run wrote, as [`Store::worklist_all`] reads them back:
/// the customer's names from the portfolio held, profile and segment from the
/// state the run wrote, days overdue from the oldest open item as of the run.
fn worklist_entries(
    r: &Resident,
    states: &[StateOut],
    worklist: &[WorklistOut],
    as_of: NaiveDate,
) -> Vec<WorklistEntry> {
    let states: HashMap<i64, &StateOut> = states.iter().map(|s| (s.customer_id, s)).collect();
    worklist
        .iter()
        .filter_map(|w| {
            let input = r.get(w.customer_id)?;
            let state = states.get(&w.customer_id)?;
            let oldest = input
                .items
                .iter()
                .filter(|i| i.open)
                .map(|i| i.due_date)
                .min();
            Some(WorklistEntry {
                customer_id: w.customer_id,
                customer: input.customer.code.clone(),
                customer_name: input.customer.name.clone(),
                company: input.customer.company.clone(),
                group: w.group.clone(),
                collector: w.collector.clone(),
                nad: w.nad,
                priority: w.priority,
                score: w.score,
                profile: state.profile.clone(),
                segment: state.segment.clone(),
                items: w.items,
                amount: w.amount,
                reason: w.reason.clone(),
                days_overdue: oldest.map_or(0, |d| (as_of - d).num_days().max(0)),
            })
        })
        .collect()
}

/// Leaves in `out.states` and `out.worklist` only the rows that differ from what the
/// store holds for each evaluated customer (its input carries them), says in
/// `out.delta` which entries go, and returns the full lists. At a million items a
/// day moves a few percent of the worklist entries and a fifth of the states;
/// rewriting them all was a third of a full run's write. Rows are compared as
/// written: a score of 1.50 is not the 1.5 the store holds.
fn keep_changed_rows(
    out: &mut RunOutput,
    inputs: &[&RunInput],
    as_of: NaiveDate,
    full: bool,
) -> (Vec<StateOut>, Vec<WorklistOut>) {
    fn exact(a: &Decimal, b: &Decimal) -> bool {
        a.serialize() == b.serialize()
    }
    let by_id: HashMap<i64, &RunInput> = inputs.iter().map(|i| (i.customer.id, *i)).collect();
    let states = std::mem::take(&mut out.states);
    let worklist = std::mem::take(&mut out.worklist);
    out.states = states
        .iter()
        .filter(|s| {
            let held = by_id
                .get(&s.customer_id)
                .and_then(|i| i.state.written.as_ref());
            // A full run stamps every row with its date in one statement; an
            // incremental run (same date as the last run) rewrites the rare row a
            // failed earlier run left behind.
            !held.is_some_and(|(w, on)| {
                w == *s && exact(&w.score, &s.score) && (full || *on == as_of)
            })
        })
        .cloned()
        .collect();
    let mut listed: HashSet<i64> = HashSet::with_capacity(worklist.len());
    out.worklist = worklist
        .iter()
        .filter(|w| {
            listed.insert(w.customer_id);
            let held = by_id.get(&w.customer_id).and_then(|i| i.listed.as_ref());
            !held.is_some_and(|h| {
                h == *w && exact(&h.score, &w.score) && exact(&h.amount, &w.amount)
            })
        })
        .cloned()
        .collect();
    let unlisted = out
        .processed
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !listed.contains(id) && by_id.get(id).is_some_and(|i| i.listed.is_some()))
        .collect();
    out.delta = Some(Delta {
        unlisted,
        restamp: full,
    });
    (states, worklist)
}

/// Priorities of the evaluated customers' open cases after this run.
fn count_priorities(out: &RunOutput, inputs: &[&RunInput], sum: &mut Summary) {
    let updated: HashMap<i64, Priority> = out
        .case_updates
        .iter()
        .map(|(id, _, p)| (*id, *p))
        .collect();
    let closed: std::collections::HashSet<i64> = out.closed.iter().map(|c| c.0).collect();
    let mut bump = |p: Priority| {
        *sum.open_cases_by_priority
            .entry(p.as_str().into())
            .or_default() += 1
    };
    for c in &out.new_cases {
        bump(c.priority);
    }
    for &input in inputs {
        for c in input.items.iter().filter_map(|i| i.case.as_ref()) {
            if !closed.contains(&c.id) {
                bump(updated.get(&c.id).copied().unwrap_or(c.priority));
            }
        }
    }
}

/// What happens to the store on the business date before the run looks at it:
/// promises past their date (+ tolerance) are judged, agreements with a missed
/// instalment break and paid-up ones end, and the items a ladder's last level with
/// `propose_write_off` reached are proposed for write-off.
///
/// Concrete for the reason [`run`] is; [`settle_on`] is the same on any store.
pub fn settle(
    store: &mut Store,
    rules: &RuleSet,
    as_of: NaiveDate,
    promise_tolerance_days: i64,
) -> Result<(), StoreError> {
    settle_on(store, rules, as_of, promise_tolerance_days)
}

/// [`settle`] on any store.
pub fn settle_on<S: PromiseStore + AgreementStore + WriteOffStore + ?Sized>(
    store: &mut S,
    rules: &RuleSet,
    as_of: NaiveDate,
    promise_tolerance_days: i64,
) -> Result<(), StoreError> {
    store.judge_promises(as_of, promise_tolerance_days)?;
    if let Some(terms) = &rules.agreements {
        store.settle_agreements(as_of, terms, rules.templates.as_deref())?;
    }
    // From the steps earlier runs took (the escalation rows), so an item is proposed
    // on the run after the one that took it to the last level: the step itself is
    // decided inside the run, and its write is the run's single transaction.
    let proposed = store.propose_ladder_write_offs(as_of, rules)?;
    if proposed > 0 {
        tracing::info!(proposed, "write-offs proposed by ladders' last levels");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrears_core::domain::{Batch, Hold, ItemInput};
    use arrears_core::money::Currency;
    use rust_decimal_macros::dec;

    use arrears_test_support::d;

    fn rules() -> RuleSet {
        arrears_test_support::shipped_rules()
    }

    fn item(
        ext: &str,
        customer: &str,
        due: &str,
        amount: rust_decimal::Decimal,
        cur: &str,
    ) -> ItemInput {
        ItemInput {
            source: "t".into(),
            external_id: ext.into(),
            company: "ACME_DE".into(),
            customer: customer.into(),
            document_no: format!("INV-{ext}"),
            document_date: d("2026-08-01"),
            due_date: d(due),
            original_amount: amount,
            open_amount: amount,
            currency: Currency::parse(cur).unwrap(),
            hold: None,
            original_document: None,
        }
    }

    fn store(items: Vec<ItemInput>) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("a.db")).unwrap();
        s.ingest(&Batch {
            items,
            ..Batch::default()
        })
        .unwrap();
        (dir, s)
    }

    fn escalations(s: &Store) -> i64 {
        s.test_connection()
            .query_row("SELECT COUNT(*) FROM escalations", [], |r| r.get(0))
            .unwrap()
    }

    /// One customer whose stored figures overflow (accepted before amounts had a bound)
    /// must not stop the portfolio: it keeps its last result and is named.
    #[test]
    fn a_customer_whose_figures_overflow_keeps_its_last_result_and_the_rest_runs() {
        let (_d, mut s) = store(vec![
            item("1", "C1", "2026-09-01", dec!(500), "EUR"),
            item("2", "C1", "2026-09-02", dec!(700), "EUR"),
            item("3", "C2", "2026-09-01", dec!(300), "EUR"),
        ]);
        let r = rules();
        run(&mut s, &r, d("2026-11-20"), RunMode::Full).unwrap();
        let c1 = s.customer_id("C1").unwrap();
        let state_of = |s: &Store, id: i64| -> (String, String, i64) {
            s.test_connection()
                .query_row(
                    "SELECT cs.as_of, cs.score, (SELECT COUNT(*) FROM worklist w WHERE w.customer_id = cs.customer_id)
                     FROM customer_state cs WHERE customer_id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .unwrap()
        };
        let before = state_of(&s, c1);
        assert_eq!(before.2, 1, "C1 is on a worklist after the first run");
        // Two items near Decimal::MAX: their sum overflows.
        s.test_connection()
            .execute(
                "UPDATE items SET original_amount = '50000000000000000000000000000', open_amount = '50000000000000000000000000000' WHERE customer_id = ?1",
                [c1],
            )
            .unwrap();
        s.test_connection()
            .execute(
                "UPDATE items SET open_amount = '150' WHERE external_id = '3'",
                [],
            )
            .unwrap();
        s.test_connection()
            .execute(
                "INSERT INTO changes(customer_id) SELECT id FROM customers",
                [],
            )
            .unwrap();
        for (day, mode) in [("2026-11-21", RunMode::Full), ("2026-11-21", RunMode::Auto)] {
            let sum = run(&mut s, &r, d(day), mode).unwrap();
            assert_eq!(
                sum.customers_skipped, 1,
                "C1 stays changed, so it is retried"
            );
            let full = matches!(mode, RunMode::Full);
            assert_eq!(sum.customers_evaluated, u64::from(full), "C2 still runs");
            assert!(
                sum.problems.iter().any(|p| p.contains("ACME_DE/C1")
                    && p.contains("out of range")
                    && p.contains("last result is kept")),
                "{:?}",
                sum.problems
            );
            assert_eq!(
                state_of(&s, c1),
                before,
                "C1 keeps its state and worklist entry"
            );
        }
        let c2 = s.customer_id("C2").unwrap();
        let amount: String = s
            .test_connection()
            .query_row(
                "SELECT amount FROM worklist WHERE customer_id = ?1",
                [c2],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(amount, "150", "C2's result follows its change");
    }

    /// Item A reached `final_notice` (never resent); invoice B falls due later: B is
    /// reminded at its own level, in a message at A's level, and the levels stick.
    #[test]
    fn an_invoice_falling_due_after_the_top_level_is_still_reminded() {
        let (_d, mut s) = store(vec![item("A", "C1", "2026-09-20", dec!(500), "EUR")]);
        let mut r = rules();
        // A week, so B's step falls while A still sits at final_notice (48–62 days).
        for l in &mut r.ladders {
            l.step_interval_days = 7;
        }
        let steps = |s: &Store| -> Vec<(String, i64, String)> {
            s.test_connection()
                .prepare("SELECT as_of, level, items FROM escalations ORDER BY id")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        for day in ["2026-11-08", "2026-11-09", "2026-11-10"] {
            run(&mut s, &r, d(day), RunMode::Auto).unwrap();
        }
        let a = s.customer_id("C1").unwrap();
        let levels: Vec<i64> = steps(&s).iter().map(|x| x.1).collect();
        assert_eq!(levels, [2, 3, 4], "one level per run up to final_notice");
        s.ingest(&Batch {
            items: vec![item("B", "C1", "2026-11-01", dec!(80), "EUR")],
            ..Batch::default()
        })
        .unwrap();
        // 11-10 was already a step day; on 11-11 B is 10 days late (reminder_1) and
        // goes out with the next step, 7 days after A's final notice.
        run(&mut s, &r, d("2026-11-10"), RunMode::Auto).unwrap();
        assert_eq!(steps(&s).len(), 3, "never two steps on one day");
        run(&mut s, &r, d("2026-11-11"), RunMode::Auto).unwrap();
        assert_eq!(steps(&s).len(), 3, "within the step interval");
        run(&mut s, &r, d("2026-11-17"), RunMode::Auto).unwrap();
        let all = steps(&s);
        assert_eq!(all.len(), 4, "B is reminded");
        let (on, level, items) = &all[3];
        assert_eq!((on.as_str(), *level), ("2026-11-17", 4));
        let items: Vec<(i64, usize)> = serde_json::from_str(items).unwrap();
        let ids: Vec<i64> = ["A", "B"]
            .iter()
            .map(|x| {
                s.test_connection()
                    .query_row("SELECT id FROM items WHERE external_id = ?1", [x], |r| {
                        r.get(0)
                    })
                    .unwrap()
            })
            .collect();
        assert_eq!(items, vec![(ids[0], 4), (ids[1], 2)]);
        let stored: Vec<i64> = s
            .test_connection()
            .prepare("SELECT dun_level FROM items WHERE customer_id = ?1 ORDER BY id")
            .unwrap()
            .query_map([a], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(stored, [4, 2]);
        run(&mut s, &r, d("2026-11-18"), RunMode::Auto).unwrap();
        assert_eq!(steps(&s).len(), 4, "nothing new the next day");
    }

    #[test]
    fn holds_keep_items_out_of_dunning_and_lift_by_themselves() {
        let mut it = item("1", "C1", "2026-09-01", dec!(500), "EUR");
        it.hold = Some(Hold {
            reason: "awaiting credit note".into(),
            until: Some(d("2026-11-20")),
        });
        let (_d, mut s) = store(vec![it]);
        let r = rules();
        let sum = run(&mut s, &r, d("2026-11-20"), RunMode::Auto).unwrap();
        assert_eq!(sum.escalations, 0, "held through its last day");
        let sum = run(&mut s, &r, d("2026-11-21"), RunMode::Auto).unwrap();
        assert_eq!(sum.escalations, 1, "back in collection the day after");
    }

    #[test]
    fn customer_holds_and_disputes_block_dunning() {
        let (_d, mut s) = store(vec![
            item("1", "C1", "2026-09-01", dec!(500), "EUR"),
            item("2", "C2", "2026-09-01", dec!(500), "EUR"),
        ]);
        let r = rules();
        let c1 = s.customer_id("C1").unwrap();
        s.add_hold(c1, "insolvency check", None, d("2026-11-01"))
            .unwrap();
        run(&mut s, &r, d("2026-11-22"), RunMode::Auto).unwrap();
        let case = s.open_cases_of(s.customer_id("C2").unwrap()).unwrap()[0].0;
        s.open_dispute(case, "goods damaged", d("2026-11-22"), "test")
            .unwrap();
        // C2 got its first step on 11-22; after the dispute nothing more, C1 never.
        let before = escalations(&s);
        run(&mut s, &r, d("2026-11-23"), RunMode::Auto).unwrap();
        run(&mut s, &r, d("2026-12-23"), RunMode::Auto).unwrap();
        assert_eq!(escalations(&s), before);
        let who: Vec<i64> = s
            .test_connection()
            .prepare("SELECT DISTINCT customer_id FROM escalations")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(!who.contains(&c1));
    }

    /// A customer the ERP has no dunning procedure for is not dunned: no step, its
    /// dunning state unmoved, `explain` says why; it stays on the worklist. When the
    /// ERP gives it a procedure, the ladder resumes.
    #[test]
    fn a_customer_the_erp_does_not_dun_is_not_dunned_but_still_worked() {
        let (_d, mut s) = store(vec![
            item("1", "C1", "2026-09-01", dec!(500), "EUR"),
            item("2", "C2", "2026-09-01", dec!(500), "EUR"),
        ]);
        let info = |code: &str, dunning| arrears_core::domain::CustomerInfo {
            company: "ACME_DE".into(),
            code: code.into(),
            name: format!("{code} GmbH"),
            country: "DE".into(),
            dunning,
            ..Default::default()
        };
        use arrears_core::domain::ErpDunning;
        s.ingest(&arrears_core::domain::Batch {
            customers: vec![
                info("C1", Some(ErpDunning::Excluded)),
                info("C2", Some(ErpDunning::Procedure("Standard".into()))),
            ],
            ..Default::default()
        })
        .unwrap();
        let r = rules();
        let c1 = s.customer_id("C1").unwrap();
        run(&mut s, &r, d("2026-11-22"), RunMode::Auto).unwrap();
        assert_eq!(
            ids(&s, "SELECT DISTINCT customer_id FROM escalations"),
            vec![s.customer_id("C2").unwrap()]
        );
        let listed: Vec<String> = s
            .worklist_all()
            .unwrap()
            .into_iter()
            .map(|w| w.customer)
            .collect();
        assert!(listed.contains(&"C1".to_string()), "{listed:?}");
        let input = s
            .load_run_input(arrears_store::Scope::Ids(&[c1]))
            .unwrap()
            .remove(0);
        assert_eq!(input.customer.dunning, Some(ErpDunning::Excluded));
        assert_eq!(input.state.dunning_level, 0);
        let ev = evaluate(&r, d("2026-11-22"), &input, true).unwrap();
        let why = ev.escalation.why_not.unwrap_or_default();
        assert!(why.contains("no dunning procedure"), "{why}");

        // A source that does not say keeps the stored word; a procedure lifts it.
        s.ingest(&arrears_core::domain::Batch {
            customers: vec![info("C1", None)],
            ..Default::default()
        })
        .unwrap();
        let steps_of_c1 = |s: &Store| -> i64 {
            s.test_connection()
                .query_row(
                    "SELECT COUNT(*) FROM escalations WHERE customer_id = ?1",
                    [c1],
                    |r| r.get(0),
                )
                .unwrap()
        };
        run(&mut s, &r, d("2026-11-23"), RunMode::Auto).unwrap();
        assert_eq!(steps_of_c1(&s), 0);
        s.ingest(&arrears_core::domain::Batch {
            customers: vec![info("C1", Some(ErpDunning::Procedure("Standard".into())))],
            ..Default::default()
        })
        .unwrap();
        run(&mut s, &r, d("2026-11-24"), RunMode::Auto).unwrap();
        assert_eq!(steps_of_c1(&s), 1, "C1 is dunned once the ERP says so");
    }

    /// The ERP's dunning procedure picks the ladder: a listed one its ladder, an
    /// unlisted one `erp_procedures.default`, and a customer the ERP says nothing
    /// about stays on its strategy's. The escalation written and `explain` name it.
    #[test]
    fn the_erp_dunning_procedure_picks_the_ladder() {
        let (_d, mut s) = store(vec![
            item("1", "C1", "2026-09-01", dec!(500), "EUR"),
            item("2", "C2", "2026-09-01", dec!(500), "EUR"),
            item("3", "C3", "2026-09-01", dec!(500), "EUR"),
        ]);
        use arrears_core::domain::ErpDunning;
        let info = |code: &str, procedure: &str| arrears_core::domain::CustomerInfo {
            company: "ACME_DE".into(),
            code: code.into(),
            dunning: Some(ErpDunning::Procedure(procedure.into())),
            ..Default::default()
        };
        s.ingest(&arrears_core::domain::Batch {
            customers: vec![info("C1", "Soft"), info("C2", "Unlisted")],
            ..Default::default()
        })
        .unwrap();
        let mut r = rules();
        let index = |r: &RuleSet, name: &str| r.ladders.iter().position(|l| l.name == name);
        let us = index(&r, "us_standard").unwrap();
        // A third ladder, told apart from `standard` by its level names and channel.
        let mut gentle = r.ladders[index(&r, "standard").unwrap()].clone();
        gentle.name = "gentle".into();
        for l in &mut gentle.levels {
            l.name = format!("gentle_{}", l.name);
            l.channel = arrears_rules::Channel::Letter;
        }
        r.ladders.push(gentle);
        r.erp_procedures.ladders.insert("Soft".into(), us);
        r.erp_procedures.default = Some(r.ladders.len() - 1);

        run(&mut s, &r, d("2026-11-22"), RunMode::Auto).unwrap();
        let step_of = |code: &str| -> (String, String, String) {
            s.test_connection()
                .query_row(
                    "SELECT e.ladder, e.level_name, e.channel FROM escalations e
                     JOIN customers c ON c.id = e.customer_id WHERE c.code = ?1",
                    [code],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .unwrap()
        };
        let step = |l: &str, n: &str, c: &str| (l.to_string(), n.to_string(), c.to_string());
        // 82 days late: us_standard jumps to its collection call (45 + 2 days); the
        // others climb one level per run, from their first overdue level.
        assert_eq!(
            step_of("C1"),
            step("us_standard", "collection_call", "call_task")
        );
        assert_eq!(step_of("C2"), step("gentle", "gentle_reminder_1", "letter"));
        assert_eq!(step_of("C3"), step("standard", "reminder_1", "email"));

        let explain = |code: &str| {
            let id = s.customer_id(code).unwrap();
            let input = s
                .load_run_input(arrears_store::Scope::Ids(&[id]))
                .unwrap()
                .remove(0);
            let ev = evaluate(&r, d("2026-11-22"), &input, true).unwrap();
            (
                r.ladders[ev.ladder].name.clone(),
                ev.trace.unwrap().ladder_why,
            )
        };
        let (ladder, why) = explain("C1");
        assert_eq!(ladder, "us_standard");
        assert_eq!(why, "`us_standard` (ERP procedure `Soft`)");
        let (ladder, why) = explain("C2");
        assert_eq!(ladder, "gentle");
        assert!(
            why.contains("default") && why.contains("`Unlisted`"),
            "{why}"
        );
        let (ladder, why) = explain("C3");
        assert_eq!(ladder, "standard");
        assert_eq!(why, "`standard` (strategy `b2b_default`)");
    }

    #[test]
    fn resubmission_hides_until_its_date() {
        let (_d, mut s) = store(vec![item("1", "C1", "2026-09-01", dec!(500), "EUR")]);
        let r = rules();
        let c1 = s.customer_id("C1").unwrap();
        s.resubmit(c1, d("2026-11-30"), "customer on holiday", "test")
            .unwrap();
        let sum = run(&mut s, &r, d("2026-11-23"), RunMode::Auto).unwrap();
        assert_eq!(sum.worklist.entries, 0);
        let sum = run(&mut s, &r, d("2026-11-30"), RunMode::Auto).unwrap();
        assert_eq!(sum.worklist.entries, 1);
        let reason: String = s
            .test_connection()
            .query_row("SELECT reason FROM worklist", [], |r| r.get(0))
            .unwrap();
        assert!(reason.contains("resubmitted"), "{reason}");
    }

    #[test]
    fn a_currency_without_rate_skips_only_that_customer_and_says_why() {
        let (_d, mut s) = store(vec![
            item("1", "C1", "2026-09-01", dec!(500), "JPY"),
            item("2", "C2", "2026-09-01", dec!(500), "EUR"),
        ]);
        let sum = run(&mut s, &rules(), d("2026-11-23"), RunMode::Auto).unwrap();
        assert_eq!((sum.customers_evaluated, sum.customers_skipped), (1, 1));
        assert!(sum.problems[0].contains("JPY"), "{:?}", sum.problems);
        let dirty: i64 = s
            .test_connection()
            .query_row("SELECT dirty FROM customers WHERE code = 'C1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_ne!(dirty, 0, "retried by the next run");
    }

    /// An open item as the ERP would send it again with `open` left to pay.
    fn resend(s: &Store, item_id: i64, open: rust_decimal::Decimal) -> ItemInput {
        s.test_connection()
            .query_row(
                "SELECT i.source, i.external_id, c.company, c.code, i.document_no, i.document_date,
                        i.due_date, i.original_amount, i.currency
                 FROM items i JOIN customers c ON c.id = i.customer_id WHERE i.id = ?1",
                [item_id],
                |r| {
                    let t = |k: usize| r.get::<_, String>(k);
                    Ok(ItemInput {
                        source: t(0)?,
                        external_id: t(1)?,
                        company: t(2)?,
                        customer: t(3)?,
                        document_no: t(4)?,
                        document_date: d(&t(5)?),
                        due_date: d(&t(6)?),
                        original_amount: t(7)?.parse().unwrap(),
                        open_amount: open,
                        currency: Currency::parse(&t(8)?).unwrap(),
                        hold: None,
                        original_document: None,
                    })
                },
            )
            .unwrap()
    }

    fn ids(s: &Store, sql: &str) -> Vec<i64> {
        s.test_connection()
            .prepare(sql)
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The daemon's runs read the portfolio from memory: after every kind of write
    /// and every kind of run it must hold exactly what a load from the store reads.
    #[test]
    fn the_resident_portfolio_reads_as_the_store_after_every_kind_of_change() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("a.db")).unwrap();
        let day = d("2026-11-23");
        arrears_demo::generate(
            &mut s,
            &arrears_demo::DemoOptions {
                customers: 300,
                items: 3000,
                seed: 3,
                as_of: day,
                history_days: 0,
            },
            None,
        )
        .unwrap();
        let r = rules();
        let mut res: Option<Resident> = None;
        let opts = RunOptions::default();
        let check = |s: &Store, res: &Option<Resident>, when: &str| {
            let held = res.as_ref().unwrap_or_else(|| panic!("{when}: none held"));
            let fresh = s.load_run_input(Scope::All).unwrap();
            assert_eq!(held.len(), fresh.len(), "{when}");
            for (a, b) in held.inputs().iter().zip(&fresh) {
                assert_eq!(a, b, "{when}: customer {}", b.customer.id);
            }
        };

        let sum = run_resident(&mut s, &r, day, RunMode::Full, &opts, &mut res).unwrap();
        assert!(sum.cases_opened > 1000, "{}", sum.cases_opened);
        check(&s, &res, "after the back-fill");

        // Payments in full and in part, new invoices, a new customer.
        let open = ids(
            &s,
            "SELECT i.id FROM items i JOIN cases c ON c.item_id = i.id AND c.status = 'open'
             WHERE i.status = 'open' ORDER BY i.id LIMIT 12",
        );
        let mut items: Vec<ItemInput> = open[..4]
            .iter()
            .map(|&id| resend(&s, id, dec!(0)))
            .collect();
        items.extend(open[4..8].iter().map(|&id| {
            let mut it = resend(&s, id, dec!(0));
            it.open_amount = (it.original_amount / dec!(2)).floor();
            it
        }));
        // A split of an open invoice: it replaces the invoice, and its case names
        // the invoice it came from.
        let mut new = resend(&s, open[8], dec!(0));
        new.original_document = Some(new.document_no.clone());
        new.external_id = "NEW-1".into();
        new.document_no = "NEW-1".into();
        new.open_amount = new.original_amount;
        items.push(new.clone());
        new.original_document = None;
        new.customer = "BRAND-NEW".into();
        new.external_id = "NEW-2".into();
        items.push(new);
        s.ingest(&Batch {
            items,
            ..Batch::default()
        })
        .unwrap();
        let cases = ids(
            &s,
            "SELECT id FROM cases WHERE status = 'open' ORDER BY id DESC LIMIT 3",
        );
        let customer_of = |case: i64| -> i64 {
            s.test_connection()
                .query_row("SELECT customer_id FROM cases WHERE id = ?1", [case], |r| {
                    r.get(0)
                })
                .unwrap()
        };
        let (c0, c1) = (customer_of(cases[0]), customer_of(cases[1]));
        s.create_promise(
            &arrears_store::NewPromise {
                case_ids: vec![cases[0]],
                amount: dec!(10),
                promised_on: d("2026-11-28"),
                on: day,
                channel: None,
                contact: None,
            },
            "t",
        )
        .unwrap();
        s.open_dispute(cases[1], "price", day, "t").unwrap();
        s.resubmit(c0, d("2026-12-01"), "call back", "t").unwrap();
        s.add_hold(c1, "legal", None, day).unwrap();
        // The daemon is told what the run decided before it is written: the entries
        // the summary carries afterwards, while the store still holds the run before.
        let earlier = s.last_run().unwrap().map(|l| l.0);
        let reader = Store::open(&dir.path().join("a.db")).unwrap();
        // (the latest run the store holds then, the entries, the customers touched)
        type Told = (Option<i64>, Vec<WorklistEntry>, Option<Vec<i64>>);
        let told: std::cell::RefCell<Vec<Told>> = Default::default();
        let tell = |d: &Decided| {
            told.borrow_mut().push((
                reader.last_run().unwrap().map(|l| l.0),
                d.entries.to_vec(),
                d.touched.map(<[i64]>::to_vec),
            ))
        };
        let hooked = RunOptions {
            decided: Some(&tell),
            ..opts
        };
        let sum = run_resident(&mut s, &r, day, RunMode::Auto, &hooked, &mut res).unwrap();
        assert_eq!(sum.mode, "incremental");
        assert!(sum.customers_evaluated >= 4, "{}", sum.customers_evaluated);
        let told = told.into_inner();
        assert_eq!(told.len(), 1, "told once");
        assert_eq!(told[0].0, earlier, "before the write");
        assert_ne!(Some(sum.run_id), earlier);
        assert_eq!(Some(&told[0].1), sum.entries.as_ref().map(|e| &e.0));
        assert_eq!(told[0].2, sum.touched);
        check(&s, &res, "after payments, invoices, a promise, a dispute");
        // The entries it made in memory for the customers it evaluated, and their
        // open-item currencies, are what the store reads back.
        let touched = sum.touched.clone().expect("an incremental run's customers");
        let (mut made, kept) = sum.entries.clone().expect("an incremental run's entries");
        assert!(kept.is_empty());
        made.sort_by_key(|e| e.customer_id);
        let mut stored = s.worklist_of(&touched).unwrap();
        stored.sort_by_key(|e| e.customer_id);
        assert!(!made.is_empty());
        assert_eq!(made, stored);
        let sorted = |m: HashMap<i64, Vec<String>>| {
            m.into_iter()
                .map(|(k, mut v)| {
                    v.sort();
                    (k, v)
                })
                .collect::<BTreeMap<_, _>>()
        };
        let held = sorted(res.as_ref().unwrap().open_currencies(&touched));
        let kinds: HashSet<&String> = held.values().flatten().collect();
        assert!(held.len() >= 3 && kinds.len() > 1, "{held:?}");
        assert_eq!(held, sorted(s.open_currencies_of(&touched).unwrap()));

        // Promises judged, the next business day's full run, the outbox's call tasks.
        let later = d("2026-12-14");
        settle(&mut s, &r, later, 3).unwrap();
        let sum = run_resident(&mut s, &r, later, RunMode::Auto, &opts, &mut res).unwrap();
        assert_eq!(sum.mode, "full");
        check(&s, &res, "after the next day's full run");
        // Its worklist entries, made in memory, are what the store reads back.
        let (mut made, kept) = sum.entries.expect("a full run's entries");
        assert!(kept.is_empty());
        made.sort_by_key(|e| e.customer_id);
        let mut stored = s.worklist_all().unwrap();
        stored.sort_by_key(|e| e.customer_id);
        assert!(stored.len() > 50);
        assert!(stored.iter().any(|e| e.days_overdue > 0));
        assert_eq!(made, stored);
        let composed =
            crate::correspondence::compose(&mut s, &r, "2026-12-14T10:00:00Z".parse().unwrap())
                .unwrap();
        assert!(composed.composed + composed.call_tasks > 0);
        run_resident(&mut s, &r, later, RunMode::Auto, &opts, &mut res).unwrap();
        check(&s, &res, "after the outbox");

        // Another process's run and write make it stale: it is not read but loaded
        // again whole, and only the changed customer is evaluated.
        run(&mut s, &r, later, RunMode::Full).unwrap();
        let held = res.as_ref().unwrap().run_id();
        s.resubmit(c1, d("2026-12-20"), "call back", "t").unwrap();
        let sum = run_resident(&mut s, &r, later, RunMode::Auto, &opts, &mut res).unwrap();
        assert_eq!(
            (sum.mode.as_str(), sum.customers_evaluated),
            ("incremental", 1)
        );
        assert!(res.as_ref().unwrap().run_id() > held);
        check(&s, &res, "loaded again");

        // A cold start: nothing held yet, an incremental run loads it all.
        let mut cold = None;
        s.resubmit(c0, d("2026-12-21"), "call back", "t").unwrap();
        let sum = run_resident(&mut s, &r, later, RunMode::Auto, &opts, &mut cold).unwrap();
        assert_eq!(
            (sum.mode.as_str(), sum.customers_evaluated),
            ("incremental", 1)
        );
        check(&s, &cold, "after a cold start");
    }

    /// Every row of a table as text, by customer.
    fn table(s: &Store, sql: &str) -> BTreeMap<i64, String> {
        let mut st = s.test_connection().prepare(sql).unwrap();
        let n = st.column_count();
        st.query_map([], |r| {
            let cols: Vec<String> = (1..n)
                .map(|k| {
                    format!(
                        "{:?}",
                        r.get::<_, arrears_store::rusqlite::types::Value>(k)
                            .unwrap()
                    )
                })
                .collect();
            Ok((r.get(0)?, cols.join("|")))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// A run writes only the state rows and worklist entries that differ from what
    /// the store holds. A copy of the store whose every held row is made to differ
    /// must be rewritten whole by the same runs; both must then read the same.
    #[test]
    fn writing_only_changed_rows_leaves_the_store_as_rewriting_them_all() {
        const WORKLIST: &str = "SELECT customer_id, collection_group, collector, score, priority, nad, items, amount, reason FROM worklist";
        const STATES: &str = "SELECT customer_id, strategy, segment, profile, score, collection_group, collector, priority, dunning_level, dunning_on, as_of FROM customer_state";
        let dir = tempfile::tempdir().unwrap();
        let mut a = Store::open(&dir.path().join("a.db")).unwrap();
        let day = d("2026-11-23");
        arrears_demo::generate(
            &mut a,
            &arrears_demo::DemoOptions {
                customers: 300,
                items: 3000,
                seed: 5,
                as_of: day,
                history_days: 0,
            },
            None,
        )
        .unwrap();
        let r = rules();
        let opts = RunOptions::default();
        let mut res: Option<Resident> = None;
        run_resident(&mut a, &r, day, RunMode::Full, &opts, &mut res).unwrap();
        // Payments in part on a few customers' items.
        let open = ids(
            &a,
            "SELECT i.id FROM items i WHERE i.status = 'open' ORDER BY i.id LIMIT 30",
        );
        let mut items: Vec<ItemInput> = open
            .iter()
            .map(|&id| {
                let mut it = resend(&a, id, dec!(0));
                it.open_amount = (it.original_amount / dec!(3)).floor();
                it
            })
            .collect();
        // And every item of three listed customers in full: they leave the worklist.
        let leaving = ids(
            &a,
            "SELECT customer_id FROM worklist ORDER BY items, customer_id LIMIT 3",
        );
        let cleared = ids(
            &a,
            &format!(
                "SELECT id FROM items WHERE status = 'open' AND customer_id IN ({})",
                leaving
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        );
        assert!(cleared.len() >= 3);
        items.extend(cleared.iter().map(|&id| resend(&a, id, dec!(0))));
        a.ingest(&Batch {
            items,
            ..Batch::default()
        })
        .unwrap();
        let copy = dir.path().join("b.db");
        a.test_connection()
            .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
            .unwrap();
        let mut b = Store::open(&copy).unwrap();
        let spoil = |b: &Store| {
            b.test_connection()
                .execute_batch(
                    "UPDATE worklist SET reason = reason || ' (spoilt)';
                     UPDATE customer_state SET profile = profile || ' (spoilt)';",
                )
                .unwrap();
        };

        spoil(&b);
        let sa = run_resident(&mut a, &r, day, RunMode::Auto, &opts, &mut res).unwrap();
        let sb = run(&mut b, &r, day, RunMode::Auto).unwrap();
        assert_eq!(
            (sa.mode.as_str(), sb.mode.as_str()),
            ("incremental", "incremental")
        );
        let touched = sa.touched.unwrap();
        assert!(touched.len() >= 3, "{touched:?}");
        let listed = table(&a, WORKLIST);
        assert!(leaving.iter().all(|id| !listed.contains_key(id)));
        for (sql, what) in [(WORKLIST, "worklist"), (STATES, "state")] {
            let (ta, tb) = (table(&a, sql), table(&b, sql));
            for id in &touched {
                assert_eq!(ta.get(id), tb.get(id), "{what} of customer {id}");
            }
        }

        let next = d("2026-12-07");
        spoil(&b);
        let wrote_before = table(&a, WORKLIST);
        let sa = run_resident(&mut a, &r, next, RunMode::Auto, &opts, &mut res).unwrap();
        let sb = run(&mut b, &r, next, RunMode::Auto).unwrap();
        assert_eq!((sa.mode.as_str(), sb.mode.as_str()), ("full", "full"));
        let wrote = table(&a, WORKLIST);
        assert!(wrote.len() > 50);
        assert_ne!(wrote, wrote_before, "two weeks on, some entries move");
        assert_eq!(wrote, table(&b, WORKLIST));
        let states = table(&a, STATES);
        assert!(states
            .values()
            .all(|row| row.ends_with("Text(\"2026-12-07\")")));
        assert_eq!(states, table(&b, STATES));
    }

    /// Loads a caller claims to hold: used by an incremental run only when they are
    /// the latest run's.
    struct ClaimedLoads {
        run: Option<i64>,
        loads: Vec<(String, String, i64, Decimal)>,
    }

    impl KnownLoads for ClaimedLoads {
        fn run_id(&self) -> Option<i64> {
            self.run
        }
        fn loads_outside(&self, _: &HashSet<i64>) -> Vec<(String, String, i64, Decimal)> {
            self.loads.clone()
        }
    }

    #[test]
    fn an_incremental_run_balances_against_loads_the_caller_holds_only_when_current() {
        let r = rules();
        let old: Vec<ItemInput> = (0..6)
            .map(|n| {
                item(
                    &format!("O{n}"),
                    &format!("OLD{n}"),
                    "2026-09-01",
                    dec!(900),
                    "EUR",
                )
            })
            .collect();
        let new: Vec<ItemInput> = (0..6)
            .map(|n| {
                item(
                    &format!("N{n}"),
                    &format!("NEW{n}"),
                    "2026-09-01",
                    dec!(800),
                    "EUR",
                )
            })
            .collect();
        // Three identical stores, each with a first run and then new customers.
        let setups: Vec<(tempfile::TempDir, Store, i64)> = (0..3)
            .map(|_| {
                let (dir, mut s) = store(old.clone());
                let first = run(&mut s, &r, d("2026-11-20"), RunMode::Full).unwrap();
                s.ingest(&Batch {
                    items: new.clone(),
                    ..Batch::default()
                })
                .unwrap();
                (dir, s, first.run_id)
            })
            .collect();
        let collectors = |s: &Store| -> BTreeMap<String, Option<String>> {
            s.worklist_all()
                .unwrap()
                .into_iter()
                .filter(|w| w.customer.starts_with("NEW"))
                .map(|w| (w.customer, w.collector))
                .collect()
        };
        let mut it = setups.into_iter();
        let (_a, mut plain, _) = it.next().unwrap();
        run(&mut plain, &r, d("2026-11-20"), RunMode::Incremental).unwrap();
        let expected = collectors(&plain);
        let (group, busy) = plain
            .worklist_all()
            .unwrap()
            .into_iter()
            .find(|w| w.customer.starts_with("NEW") && w.collector.is_some())
            .map(|w| (w.group, w.collector.unwrap()))
            .expect("a new customer assigned");
        // One collector claimed to be buried in work.
        let claim = |run| ClaimedLoads {
            run,
            loads: vec![(group.clone(), busy.clone(), 1_000_000, dec!(1000000000))],
        };
        let (_b, mut stale, first) = it.next().unwrap();
        let claimed = claim(Some(first - 1));
        let opts = RunOptions {
            loads: Some(&claimed),
            ..RunOptions::default()
        };
        run_with_options(&mut stale, &r, d("2026-11-20"), RunMode::Incremental, &opts).unwrap();
        assert_eq!(collectors(&stale), expected, "stale loads are not used");

        let (_c, mut current, first) = it.next().unwrap();
        let claimed = claim(Some(first));
        let opts = RunOptions {
            loads: Some(&claimed),
            ..RunOptions::default()
        };
        run_with_options(
            &mut current,
            &r,
            d("2026-11-20"),
            RunMode::Incremental,
            &opts,
        )
        .unwrap();
        let got = collectors(&current);
        assert_eq!(got.len(), expected.len());
        assert!(
            !got.values().any(|c| c.as_deref() == Some(busy.as_str())),
            "{busy} was claimed busy: {got:?}"
        );
    }

    /// The daemon's runs for a change skip the whole-portfolio totals; everything
    /// the run decides is the same.
    #[test]
    fn a_run_without_totals_decides_the_same_and_leaves_the_totals_empty() {
        let items = || {
            vec![
                item("1", "C1", "2026-09-01", dec!(500), "EUR"),
                item("2", "C2", "2026-10-01", dec!(700), "EUR"),
            ]
        };
        let (_a, mut with) = store(items());
        let (_b, mut without) = store(items());
        let r = rules();
        let a = run(&mut with, &r, d("2026-11-20"), RunMode::Full).unwrap();
        let b = run_without_totals(&mut without, &r, d("2026-11-20"), RunMode::Full).unwrap();
        assert!(
            a.portfolio.customers == 2 && a.portfolio.open_cases > 0,
            "{:?}",
            a.portfolio
        );
        assert_eq!(b.portfolio, arrears_store::Portfolio::default());
        assert_eq!(
            (
                a.customers_evaluated,
                a.cases_opened,
                a.escalations,
                &a.worklist.by_collector
            ),
            (
                b.customers_evaluated,
                b.cases_opened,
                b.escalations,
                &b.worklist.by_collector
            )
        );
        assert_eq!(with.portfolio().unwrap(), without.portfolio().unwrap());
    }

    #[test]
    fn incremental_needs_a_matching_earlier_run() {
        let (_d, mut s) = store(vec![item("1", "C1", "2026-09-01", dec!(500), "EUR")]);
        let r = rules();
        assert!(matches!(
            run(&mut s, &r, d("2026-11-23"), RunMode::Incremental),
            Err(RunError::NotIncremental(_))
        ));
        run(&mut s, &r, d("2026-11-23"), RunMode::Full).unwrap();
        s.ingest(&Batch {
            items: vec![item("2", "C2", "2026-10-01", dec!(50), "EUR")],
            ..Batch::default()
        })
        .unwrap();
        let sum = run(&mut s, &r, d("2026-11-23"), RunMode::Incremental).unwrap();
        assert_eq!((sum.customers_evaluated, sum.cases_opened), (1, 1));
    }

    /// A write committed while a run is working (after its load, before its write)
    /// must leave the customer for the next run, not be forgotten with the run's output.
    #[test]
    fn a_change_during_a_run_is_picked_up_by_the_next_one() {
        let (_d, mut s) = store(vec![item("1", "C1", "2026-09-01", dec!(500), "EUR")]);
        let r = rules();
        run(&mut s, &r, d("2026-11-23"), RunMode::Full).unwrap();
        let open = |s: &Store| -> i64 {
            s.test_connection()
                .query_row(
                    "SELECT COUNT(*) FROM cases WHERE status = 'open'",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!(open(&s), 1);
        // The run's load sees the item still open...
        let mut paid = item("1", "C1", "2026-09-01", dec!(500), "EUR");
        paid.open_amount = dec!(0);
        s.ingest(&Batch {
            items: vec![item("2", "C1", "2026-10-01", dec!(5), "EUR")],
            ..Batch::default()
        })
        .unwrap();
        let inputs = s.load_run_input(Scope::Dirty).unwrap();
        assert_eq!(inputs.len(), 1);
        // ...then the payment lands, then the run writes what it computed.
        s.ingest(&Batch {
            items: vec![paid],
            ..Batch::default()
        })
        .unwrap();
        let out = arrears_store::RunOutput {
            processed: inputs.iter().map(|i| (i.customer.id, i.changes)).collect(),
            ..Default::default()
        };
        s.write_run(d("2026-11-23"), &r.hash, "incremental", false, &out, "{}")
            .unwrap();
        assert_eq!(
            s.dirty_count().unwrap(),
            1,
            "the payment is still to be seen"
        );
        run(&mut s, &r, d("2026-11-23"), RunMode::Auto).unwrap();
        let closed: i64 = s
            .test_connection()
            .query_row(
                "SELECT COUNT(*) FROM cases c JOIN items i ON i.id = c.item_id WHERE i.external_id = '1' AND c.status = 'closed'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(closed, 1);
    }

    /// A promise keeps its items out of dunning and sets the follow-up after its date;
    /// broken, it brings the reminder back at once and shows in the promise history.
    #[test]
    fn promises_pause_dunning_and_a_broken_one_moves_the_escalation_on() {
        let (_d, mut s) = store(vec![
            item("1", "C1", "2026-10-25", dec!(300), "EUR"),
            item("2", "C1", "2026-10-26", dec!(200), "EUR"),
        ]);
        let r = rules();
        run(&mut s, &r, d("2026-11-10"), RunMode::Full).unwrap();
        assert_eq!(escalations(&s), 1, "first reminder");
        let cases: Vec<i64> = s
            .test_connection()
            .prepare("SELECT id FROM cases ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let p = s
            .create_promise(
                &arrears_store::NewPromise {
                    case_ids: cases.clone(),
                    amount: dec!(500),
                    promised_on: d("2026-11-12"),
                    on: d("2026-11-10"),
                    channel: Some("phone".into()),
                    contact: Some("Ms Weber".into()),
                },
                "anna",
            )
            .unwrap();
        assert_eq!(p.documents, vec!["INV-1", "INV-2"]);
        // Both cases wait for the day after the promise.
        run(&mut s, &r, d("2026-11-11"), RunMode::Auto).unwrap();
        let nads: Vec<String> = s
            .test_connection()
            .prepare("SELECT nad FROM cases ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(nads, vec!["2026-11-13", "2026-11-13"]);
        let id = s.customer_id("ACME_DE/C1").unwrap();
        let input = |s: &Store| s.load_run_input(Scope::One(id)).unwrap().pop().unwrap();
        let ev = arrears_engine::evaluate::evaluate(&r, d("2026-11-14"), &input(&s), true).unwrap();
        assert!(
            ev.escalation.decision.is_none(),
            "promised items are not dunned"
        );

        // Nothing paid: broken when judged after the tolerance.
        let judged = s.judge_promises(d("2026-11-15"), 2).unwrap();
        assert_eq!(judged.broken, 1);
        let ev = arrears_engine::evaluate::evaluate(&r, d("2026-11-15"), &input(&s), true).unwrap();
        let step = ev.escalation.decision.expect("the reminder comes back now");
        assert!(
            step.reason.contains("promise to pay broken"),
            "{}",
            step.reason
        );
        assert_eq!(
            (
                ev.facts.promises_made,
                ev.facts.promises_broken,
                ev.facts.promise_kept_rate
            ),
            (1, 1, Some(dec!(0)))
        );
        run(&mut s, &r, d("2026-11-15"), RunMode::Auto).unwrap();
        assert_eq!(escalations(&s), 2);
    }
}
