//! The portfolio kept in memory between runs.
//!
//! A run needs every customer's items, cases, promises and payments. Loading them
//! from the store is most of a full run at a million items, yet between two runs
//! almost all of it is unchanged: only what a write marked changed (the store's
//! per-customer change counters) and what the run itself wrote. The resident
//! portfolio holds the last run's input, takes the changed customers again from
//! the store, and applies the run's own decisions to itself, so the next run starts
//! from what a fresh load would read (tested) without reading it.

use std::collections::{HashMap, HashSet};

#[cfg(test)]
use arrears_core::portfolio::ItemRare;
use arrears_core::portfolio::{CaseRow, ItemRow, RunInput, RunOutput, StoredState};
use chrono::NaiveDate;

/// Every customer's run input as the store holds it after the run `run_id` wrote.
#[derive(Debug, Default)]
pub struct Resident {
    /// Ordered by customer id, as a load returns them.
    inputs: Vec<RunInput>,
    index: HashMap<i64, usize>,
    run_id: i64,
    /// How far into the store's change log what is held reaches.
    seq: i64,
}

impl Resident {
    /// From a load of the whole portfolio (`Scope::All`), before the run `run_id`
    /// wrote; [`Resident::apply`] that run's output next.
    pub fn new(inputs: Vec<RunInput>, run_id: i64, seq: i64) -> Resident {
        let mut r = Resident {
            inputs,
            index: HashMap::new(),
            run_id,
            seq,
        };
        r.inputs.sort_by_key(|i| i.customer.id);
        r.inputs.iter_mut().for_each(compact);
        r.inputs.shrink_to_fit();
        r.reindex();
        r
    }

    fn reindex(&mut self) {
        self.index = self
            .inputs
            .iter()
            .enumerate()
            .map(|(k, i)| (i.customer.id, k))
            .collect();
    }

    /// The run whose result this is: usable only while it is the store's latest.
    pub fn run_id(&self) -> i64 {
        self.run_id
    }

    /// The change log's position up to which what is held is read.
    pub fn seq(&self) -> i64 {
        self.seq
    }

    pub fn set_seq(&mut self, seq: i64) {
        self.seq = seq;
    }

    pub fn get(&self, customer_id: i64) -> Option<&RunInput> {
        self.index.get(&customer_id).map(|&k| &self.inputs[k])
    }

    pub fn inputs(&self) -> &[RunInput] {
        &self.inputs
    }

    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    pub fn items(&self) -> usize {
        self.inputs.iter().map(|i| i.items.len()).sum()
    }

    /// The distinct currencies of each customer's open items, as
    /// `Store::open_currencies_of` reads them (customers without any are left out).
    pub fn open_currencies(&self, customers: &[i64]) -> HashMap<i64, Vec<String>> {
        let mut out = HashMap::new();
        for input in customers.iter().filter_map(|id| self.get(*id)) {
            let mut list: Vec<String> = Vec::new();
            for it in input.items.iter().filter(|i| i.open) {
                let code = it.currency.to_string();
                if !list.contains(&code) {
                    list.push(code);
                }
            }
            if !list.is_empty() {
                out.insert(input.customer.id, list);
            }
        }
        out
    }

    /// Puts customers freshly loaded from the store in place of what is held for
    /// them (a write changed them since), adding new customers.
    pub fn replace(&mut self, fresh: Vec<RunInput>) {
        let mut added = false;
        for mut input in fresh {
            compact(&mut input);
            match self.index.get(&input.customer.id) {
                Some(&k) => self.inputs[k] = input,
                None => {
                    added = true;
                    self.inputs.push(input);
                }
            }
        }
        if added {
            // New customers have the highest ids as a rule; sorting keeps the load's
            // order when they do not.
            self.inputs.sort_by_key(|i| i.customer.id);
            self.reindex();
        }
    }

    /// Puts items freshly loaded in place of what is held for them: `asked` are the
    /// items the change log named for `customer_id`, `fresh` those of them a load
    /// still reads (the others are cleared and go), and `changes` the customer's
    /// change counter now. Items stay in id order, as a load reads them. A customer
    /// not held is left alone (the caller loads it whole).
    pub fn patch_items(
        &mut self,
        customer_id: i64,
        asked: &[i64],
        fresh: Vec<ItemRow>,
        changes: i64,
    ) {
        let Some(&k) = self.index.get(&customer_id) else {
            return;
        };
        let input = &mut self.inputs[k];
        let gone: HashSet<i64> = asked.iter().copied().collect();
        input.items.retain(|i| !gone.contains(&i.id));
        for item in fresh {
            let at = input.items.partition_point(|i| i.id < item.id);
            input.items.insert(at, item);
        }
        input.items.shrink_to_fit();
        input.changes = changes;
    }

    /// Applies what the run `run_id` wrote: `new_case_ids` are the ids the store gave
    /// `out.new_cases`, in their order. Afterwards every customer the run processed
    /// reads as the store would load it.
    pub fn apply(&mut self, out: &RunOutput, new_case_ids: &[i64], run_id: i64, as_of: NaiveDate) {
        self.run_id = run_id;
        let mut case_of_item: HashMap<i64, CaseRow> = HashMap::new();
        for (c, &id) in out.new_cases.iter().zip(new_case_ids) {
            case_of_item.insert(
                c.item_id,
                CaseRow {
                    id,
                    nad: c.nad,
                    priority: c.priority,
                    assigned_to: None,
                    activity: None,
                    external_ref: c.external_ref.clone(),
                },
            );
        }
        let updated: HashMap<i64, _> = out
            .case_updates
            .iter()
            .map(|(id, nad, p)| (*id, (*nad, *p)))
            .collect();
        let closed: HashSet<i64> = out.closed.iter().map(|(id, _)| *id).collect();
        let levels: HashMap<i64, usize> = out.item_levels.iter().copied().collect();
        let mut customers: HashSet<i64> = out.processed.iter().map(|(id, _)| *id).collect();
        customers.extend(out.new_cases.iter().map(|c| c.customer_id));
        for id in &customers {
            let Some(&k) = self.index.get(id) else {
                continue;
            };
            let input = &mut self.inputs[k];
            for item in &mut input.items {
                if let Some(case) = case_of_item.remove(&item.id) {
                    // The store resolves a chain's first invoice only for items that
                    // still need a case.
                    item.set_root_document(None);
                    item.case = Some(case);
                }
                if let Some(case) = &mut item.case {
                    if closed.contains(&case.id) {
                        item.case = None;
                    } else if let Some(&(nad, p)) = updated.get(&case.id) {
                        case.nad = nad;
                        case.priority = p;
                    }
                }
                if let Some(&l) = levels.get(&item.id) {
                    item.dun_level = l;
                }
            }
            // A cleared item is loaded only while its case is open.
            input.items.retain(|i| i.open || i.case.is_some());
        }
        for (id, seen) in &out.processed {
            if let Some(&k) = self.index.get(id) {
                // The run clears the counter only if no write came in meanwhile; a
                // customer written to since is loaded again before the next run.
                if self.inputs[k].changes == *seen {
                    self.inputs[k].changes = 0;
                }
            }
        }
        let restamp = out.delta.as_ref().is_some_and(|d| d.restamp);
        match &out.delta {
            // The store replaced the processed customers' entries with the run's.
            None => {
                for (id, _) in &out.processed {
                    if let Some(&k) = self.index.get(id) {
                        self.inputs[k].listed = None;
                    }
                }
            }
            Some(d) => {
                for id in &d.unlisted {
                    if let Some(&k) = self.index.get(id) {
                        self.inputs[k].listed = None;
                    }
                }
            }
        }
        for w in &out.worklist {
            if let Some(&k) = self.index.get(&w.customer_id) {
                self.inputs[k].listed = Some(w.clone());
            }
        }
        if restamp {
            for (id, _) in &out.processed {
                if let Some(&k) = self.index.get(id) {
                    if let Some((_, on)) = &mut self.inputs[k].state.written {
                        *on = as_of;
                    }
                }
            }
        }
        for s in &out.states {
            if let Some(&k) = self.index.get(&s.customer_id) {
                self.inputs[k].state = StoredState {
                    dunning_level: s.dunning_level,
                    dunning_on: s.dunning_on,
                    collector: s.collector.clone(),
                    written: Some((s.clone(), as_of)),
                };
            }
        }
    }
}

/// Gives back what a load's growing vectors reserved beyond their length: held for
/// the daemon's lifetime, that slack was a third of the portfolio's memory.
fn compact(input: &mut RunInput) {
    input.items.shrink_to_fit();
    input.promises.shrink_to_fit();
    input.payments.shrink_to_fit();
    input.holds.shrink_to_fit();
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrears_core::domain::Priority;
    use arrears_core::money::Currency;
    use arrears_core::portfolio::{CustomerRow, NewCase, StateOut};
    use rust_decimal::Decimal;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn customer(id: i64, items: Vec<ItemRow>) -> RunInput {
        RunInput {
            customer: CustomerRow {
                id,
                company: "C".into(),
                code: format!("K{id}"),
                name: String::new(),
                country: String::new(),
                credit_limit: None,
                dunning: None,
            },
            items,
            promises: vec![],
            payments: vec![],
            holds: vec![],
            resubmission: None,
            state: StoredState::default(),
            listed: None,
            changes: 1,
        }
    }

    fn item(id: i64, open: bool, case: Option<i64>) -> ItemRow {
        ItemRow {
            id,
            document_no: format!("INV-{id}"),
            document_date: d("2026-09-01"),
            due_date: d("2026-10-01"),
            original_amount: Decimal::TEN,
            open_amount: Decimal::TEN,
            currency: Currency::parse("EUR").unwrap(),
            rare: ItemRare::boxed(None, None, Some("INV-0".into())),
            open,
            replaced: false,
            dun_level: 0,
            disputed: false,
            promised: None,
            case: case.map(|id| CaseRow {
                id,
                nad: d("2026-10-05"),
                priority: Priority::Low,
                assigned_to: Some("chen".into()),
                activity: None,
                external_ref: None,
            }),
        }
    }

    #[test]
    fn a_run_output_is_applied_as_the_store_would_load_it_back() {
        let mut r = Resident::new(
            vec![
                customer(2, vec![item(20, true, None), item(21, false, Some(7))]),
                customer(1, vec![item(10, true, Some(5))]),
            ],
            3,
            0,
        );
        assert_eq!(r.inputs()[0].customer.id, 1, "ordered by customer");
        let out = RunOutput {
            processed: vec![(1, 1), (2, 1)],
            new_cases: vec![NewCase {
                item_id: 20,
                customer_id: 2,
                nad: d("2026-11-23"),
                priority: Priority::High,
                external_ref: Some("INV-0".into()),
            }],
            case_updates: vec![(5, d("2026-11-30"), Priority::Medium)],
            closed: vec![(7, "cleared".into())],
            item_levels: vec![(20, 2)],
            states: vec![StateOut {
                customer_id: 2,
                strategy: "s".into(),
                segment: "x".into(),
                profile: "p".into(),
                score: Decimal::ONE,
                group: "g".into(),
                collector: Some("dara".into()),
                priority: Priority::High,
                dunning_level: 2,
                dunning_on: Some(d("2026-11-23")),
            }],
            ..RunOutput::default()
        };
        r.apply(&out, &[99], 4, d("2026-11-23"));
        assert_eq!(r.run_id(), 4);
        let one = &r.inputs()[0];
        let case = one.items[0].case.as_ref().unwrap();
        assert_eq!(
            (case.nad, case.priority),
            (d("2026-11-30"), Priority::Medium)
        );
        assert_eq!(one.changes, 0);
        let two = &r.inputs()[1];
        assert_eq!(two.items.len(), 1, "the cleared item went with its case");
        let new = two.items[0].case.as_ref().unwrap();
        assert_eq!(
            (new.id, new.priority, new.assigned_to.clone()),
            (99, Priority::High, None)
        );
        assert_eq!(two.items[0].root_document(), None);
        assert!(two.items[0].rare.is_none(), "nothing rare left to hold");
        assert_eq!(two.items[0].dun_level, 2);
        assert_eq!(two.state.collector.as_deref(), Some("dara"));
        assert_eq!(two.state.dunning_level, 2);
        assert_eq!(
            two.state
                .written
                .as_ref()
                .map(|(s, on)| (s.profile.as_str(), *on)),
            Some(("p", d("2026-11-23")))
        );

        // A customer written to again is taken from the store; a new one is added
        // in order.
        r.replace(vec![customer(3, vec![]), customer(1, vec![])]);
        let ids: Vec<i64> = r.inputs().iter().map(|i| i.customer.id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert!(r.inputs()[0].items.is_empty());
    }

    #[test]
    fn a_counter_moved_by_a_write_during_the_run_is_not_cleared() {
        let mut r = Resident::new(vec![customer(1, vec![])], 1, 0);
        let out = RunOutput {
            processed: vec![(1, 0)],
            ..RunOutput::default()
        };
        r.apply(&out, &[], 2, d("2026-11-23"));
        assert_eq!(r.inputs()[0].changes, 1);
    }
}
