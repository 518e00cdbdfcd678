//! The worklists as the last run left them, held in memory.
//!
//! Worklist pages are the API's hottest read; answered from SQLite, a collector's
//! page at a million items meant counting and sorting tens of thousands of rows per
//! request (hundreds of milliseconds). The runner rebuilds this view after each run
//! (the worklist table only changes there) and swaps it in atomically, so a page is a
//! walk over pre-sorted index lists and watch streams diff against memory instead
//! of re-querying the store.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use rust_decimal::prelude::ToPrimitive;

use arrears_store::{Result, Store, WorklistEntry, WorklistQuery, WorklistScope};

#[derive(Default)]
pub struct WorklistView {
    /// In worklist order: NAD, then priority (high first), then score, then customer.
    /// Shared, so the view after an incremental run reuses every entry it did not
    /// change.
    entries: Vec<Arc<WorklistEntry>>,
    /// Positions in `entries`, ascending, per collector and per group's unassigned work.
    by_collector: HashMap<String, Vec<u32>>,
    unassigned: HashMap<String, Vec<u32>>,
    by_group: HashMap<String, Vec<u32>>,
    /// Open-item currencies per customer, read on the first currency-filtered query
    /// only: it costs a pass over the open items that most deployments never need.
    currencies: OnceLock<HashMap<i64, Vec<String>>>,
}

impl WorklistView {
    pub fn load(store: &Store) -> Result<WorklistView> {
        Ok(WorklistView::from_entries(
            store.worklist_all()?.into_iter().map(Arc::new).collect(),
        ))
    }

    /// The view after an incremental run rewrote the entries of the `touched`
    /// customers: theirs are read again, every other entry is kept, and the result
    /// is what [`WorklistView::load`] would read (tested). Re-reading a whole
    /// portfolio's worklist costs over a second at a million items; this costs the
    /// touched customers' rows and a merge.
    pub fn patched(&self, store: &Store, touched: &[i64]) -> Result<WorklistView> {
        let fresh: Vec<Arc<WorklistEntry>> = store
            .worklist_of(touched)?
            .into_iter()
            .map(Arc::new)
            .collect();
        let gone: HashSet<i64> = touched.iter().copied().collect();
        let mut entries = Vec::with_capacity(self.entries.len() + fresh.len());
        let mut kept = self
            .entries
            .iter()
            .filter(|e| !gone.contains(&e.customer_id))
            .peekable();
        let mut fresh = fresh.into_iter().peekable();
        loop {
            let take_kept = match (kept.peek(), fresh.peek()) {
                (Some(k), Some(f)) => order(k, f) != Ordering::Greater,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_kept {
                entries.extend(kept.next().cloned());
            } else {
                entries.extend(fresh.next());
            }
        }
        let v = WorklistView::from_entries(entries);
        if let Some(old) = self.currencies.get() {
            let mut map = old.clone();
            for id in touched {
                map.remove(id);
            }
            map.extend(store.open_currencies_of(touched)?);
            let _ = v.currencies.set(map);
        }
        Ok(v)
    }

    fn from_entries(entries: Vec<Arc<WorklistEntry>>) -> WorklistView {
        let mut v = WorklistView::default();
        for (i, e) in entries.iter().enumerate() {
            let i = i as u32;
            v.by_group.entry(e.group.clone()).or_default().push(i);
            match &e.collector {
                Some(c) => v.by_collector.entry(c.clone()).or_default().push(i),
                None => v.unassigned.entry(e.group.clone()).or_default().push(i),
            }
        }
        v.entries = entries;
        v
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn needs_currencies(&self, q: &WorklistQuery) -> bool {
        q.currency.is_some() && self.currencies.get().is_none()
    }

    /// Reads the currencies the first currency filter needs (see `currencies`).
    pub fn load_currencies(&self, store: &Store) -> Result<()> {
        if self.currencies.get().is_none() {
            let _ = self.currencies.set(store.open_currencies()?);
        }
        Ok(())
    }

    /// Positions the scope covers, ascending (so in worklist order).
    fn candidates(&self, scope: &WorklistScope) -> Vec<u32> {
        let none = Vec::new();
        match scope {
            WorklistScope::All => (0..self.entries.len() as u32).collect(),
            WorklistScope::Group(g) => self.by_group.get(g).cloned().unwrap_or_default(),
            WorklistScope::Collector { id, groups } => {
                let mut out = self.by_collector.get(id).unwrap_or(&none).clone();
                for g in groups {
                    out = merge(&out, self.unassigned.get(g).unwrap_or(&none));
                }
                out
            }
        }
    }

    /// One page and the size of the whole filtered list, exactly as
    /// [`Store::worklist_page`] would answer on the same store.
    pub fn page(&self, q: &WorklistQuery) -> (Vec<&WorklistEntry>, u64) {
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
        for i in self.candidates(&q.scope) {
            let e: &WorklistEntry = &self.entries[i as usize];
            if !keep(e) {
                continue;
            }
            if total as usize >= q.offset && page.len() < q.limit {
                page.push(e);
            }
            total += 1;
        }
        (page, total)
    }
}

/// The store's worklist order (`ORDER BY nad, priority DESC, CAST(score AS REAL)
/// DESC, customer id`), scores compared as the store compares them: as doubles.
fn order(a: &WorklistEntry, b: &WorklistEntry) -> Ordering {
    let score = |e: &WorklistEntry| e.score.to_f64().unwrap_or(0.0);
    a.nad
        .cmp(&b.nad)
        .then_with(|| b.priority.cmp(&a.priority))
        .then_with(|| score(b).total_cmp(&score(a)))
        .then_with(|| a.customer_id.cmp(&b.customer_id))
}

fn merge(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] <= b[j] {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrears_app::run::{run, RunMode};
    use arrears_core::domain::Priority;

    /// The view must answer every query exactly as the store does.
    #[test]
    fn pages_match_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("t.db")).unwrap();
        let as_of = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        arrears_demo::generate(
            &mut store,
            &arrears_demo::DemoOptions {
                customers: 400,
                items: 4000,
                seed: 7,
                as_of,
            },
            None,
        )
        .unwrap();
        let rules = arrears_test_support::shipped_rules();
        run(&mut store, &rules, as_of, RunMode::Full).unwrap();
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
        use arrears_core::money::Currency;
        use rust_decimal_macros::dec;

        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("t.db")).unwrap();
        let as_of = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        arrears_demo::generate(
            &mut store,
            &arrears_demo::DemoOptions {
                customers: 400,
                items: 4000,
                seed: 7,
                as_of,
            },
            None,
        )
        .unwrap();
        let rules = arrears_test_support::shipped_rules();
        run(&mut store, &rules, as_of, RunMode::Full).unwrap();
        let view = WorklistView::load(&store).unwrap();
        view.load_currencies(&store).unwrap();
        let some: Vec<Arc<WorklistEntry>> =
            view.entries.iter().step_by(37).take(4).cloned().collect();
        assert_eq!(some.len(), 4);

        // Three customers owe more, in a currency they had not owed in; one new
        // customer appears; one customer is put off until next month.
        let item = |n: usize, company: &str, customer: &str, cur: &str| ItemInput {
            source: "patch".into(),
            external_id: format!("p{n}"),
            company: company.into(),
            customer: customer.into(),
            document_no: format!("P-{n}"),
            document_date: arrears_test_support::d("2026-06-01"),
            due_date: arrears_test_support::d("2026-07-01"),
            original_amount: dec!(25000),
            open_amount: dec!(25000),
            currency: Currency::parse(cur).unwrap(),
            hold: None,
            original_document: None,
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
        let patched = view.patched(&store, &touched).unwrap();
        let fresh = WorklistView::load(&store).unwrap();
        fresh.load_currencies(&store).unwrap();

        let plain = |v: &WorklistView| -> Vec<WorklistEntry> {
            v.entries.iter().map(|e| (**e).clone()).collect()
        };
        assert_eq!(plain(&patched), plain(&fresh));
        assert_eq!(patched.currencies.get(), fresh.currencies.get());
        assert_ne!(
            plain(&patched),
            plain(&view),
            "the run changed the worklist"
        );
        assert!(!patched
            .entries
            .iter()
            .any(|e| e.customer_id == some[3].customer_id));
        assert!(patched.entries.iter().any(|e| e.customer == "PATCH-NEW"));
        // Every entry the run did not touch is the one the old view held.
        let old: HashSet<*const WorklistEntry> = view.entries.iter().map(Arc::as_ptr).collect();
        let untouched: Vec<&Arc<WorklistEntry>> = patched
            .entries
            .iter()
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
}
