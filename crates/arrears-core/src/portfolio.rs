//! The portfolio as a run sees it: what the store loads for each customer, and what
//! the engine's decisions write back. Plain data, so the engine and the store can
//! share it without depending on each other.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::domain::{Activity, Hold, Priority, PromiseStatus};
use crate::money::Currency;

/// Totals of the whole portfolio, whichever customers a run evaluated.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Portfolio {
    pub customers: u64,
    pub open_cases: u64,
    pub open_cases_by_priority: std::collections::BTreeMap<String, u64>,
    pub worklist_entries: u64,
    pub worklist_unassigned: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CustomerRow {
    pub id: i64,
    pub company: String,
    pub code: String,
    pub name: String,
    pub country: String,
    pub credit_limit: Option<(Decimal, Currency)>,
    /// What the ERP says of dunning the customer (`None`: nothing).
    pub dunning: Option<crate::domain::ErpDunning>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ItemRow {
    pub id: i64,
    pub document_no: String,
    pub document_date: NaiveDate,
    pub due_date: NaiveDate,
    pub original_amount: Decimal,
    pub open_amount: Decimal,
    pub currency: Currency,
    /// A hold and a split's documents: rarely set, so boxed (a word on each item
    /// instead of 80 bytes, at a million items held in memory).
    pub rare: Option<Box<ItemRare>>,
    /// False once the item is cleared (it is loaded only to close its case).
    pub open: bool,
    /// Split or re-posted: another item names it as its original.
    pub replaced: bool,
    /// The dunning level the item was last reminded at (0: never).
    pub dun_level: usize,
    pub disputed: bool,
    /// The newest promise covering the item.
    pub promised: Option<ItemPromise>,
    /// The item's open case, if it has one.
    pub case: Option<CaseRow>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemRare {
    pub hold: Option<Hold>,
    pub original_document: Option<String>,
    /// The invoice number a chain of splits and re-postings started from (INV-3001
    /// for INV-3001-A1 ← INV-3001-A ← INV-3001): what a new case shows as its
    /// external reference. Resolved only for items that still need a case.
    pub root_document: Option<String>,
}

impl ItemRare {
    /// `None` when nothing is set.
    pub fn boxed(
        hold: Option<Hold>,
        original_document: Option<String>,
        root_document: Option<String>,
    ) -> Option<Box<ItemRare>> {
        (hold.is_some() || original_document.is_some() || root_document.is_some()).then(|| {
            Box::new(ItemRare {
                hold,
                original_document,
                root_document,
            })
        })
    }
}

impl ItemRow {
    pub fn hold(&self) -> Option<&Hold> {
        self.rare.as_ref()?.hold.as_ref()
    }

    pub fn original_document(&self) -> Option<&str> {
        self.rare.as_ref()?.original_document.as_deref()
    }

    pub fn root_document(&self) -> Option<&str> {
        self.rare.as_ref()?.root_document.as_deref()
    }

    pub fn set_root_document(&mut self, root: Option<String>) {
        let rare = self.rare.take().map(|r| *r).unwrap_or_default();
        self.rare = ItemRare::boxed(rare.hold, rare.original_document, root);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemPromise {
    pub by: NaiveDate,
    /// The day it was made.
    pub made: NaiveDate,
    /// Not judged yet: the item is not dunned while the customer's word stands.
    pub open: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CaseRow {
    pub id: i64,
    pub nad: NaiveDate,
    pub priority: Priority,
    pub assigned_to: Option<String>,
    /// `None` for [`Activity::None`], which most cases have: boxed, because an
    /// activity inline took 64 of the bytes of every item held in memory. Read it
    /// with [`CaseRow::activity`].
    pub activity: Option<Box<Activity>>,
    pub external_ref: Option<String>,
}

static NO_ACTIVITY: Activity = Activity::None;

impl CaseRow {
    pub fn activity(&self) -> &Activity {
        self.activity.as_deref().unwrap_or(&NO_ACTIVITY)
    }

    /// What [`CaseRow::activity`] holds for `a`.
    pub fn boxed_activity(a: Activity) -> Option<Box<Activity>> {
        (a != Activity::None).then(|| Box::new(a))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PromiseRow {
    pub amount: Decimal,
    pub currency: Currency,
    pub promised_on: NaiveDate,
    pub status: PromiseStatus,
    pub judged_on: Option<NaiveDate>,
    /// The day the counted payments reached the promise (or the last of them).
    pub paid_on: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PaymentRow {
    pub amount: Decimal,
    pub currency: Currency,
    pub value_date: NaiveDate,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredState {
    pub dunning_level: usize,
    pub dunning_on: Option<NaiveDate>,
    pub collector: Option<String>,
    /// The state row as the store holds it, with the date of the run that wrote it
    /// (`None` before the customer's first run): a run writes only rows that differ.
    pub written: Option<(StateOut, NaiveDate)>,
}

/// Everything a run needs about one customer.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInput {
    pub customer: CustomerRow,
    pub items: Vec<ItemRow>,
    pub promises: Vec<PromiseRow>,
    pub payments: Vec<PaymentRow>,
    pub holds: Vec<Hold>,
    /// Latest resubmission date, if any.
    pub resubmission: Option<NaiveDate>,
    pub state: StoredState,
    /// The customer's worklist entry as the store holds it.
    pub listed: Option<WorklistOut>,
    /// The customer's change counter as loaded: the run clears it only if no write
    /// came in since, so a change committed while the run works is not forgotten.
    pub changes: i64,
}

pub struct NewCase {
    pub item_id: i64,
    pub customer_id: i64,
    pub nad: NaiveDate,
    pub priority: Priority,
    pub external_ref: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StateOut {
    pub customer_id: i64,
    pub strategy: String,
    pub segment: String,
    pub profile: String,
    pub score: Decimal,
    pub group: String,
    pub collector: Option<String>,
    pub priority: Priority,
    pub dunning_level: usize,
    pub dunning_on: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorklistOut {
    pub customer_id: i64,
    pub group: String,
    pub collector: Option<String>,
    pub score: Decimal,
    pub priority: Priority,
    pub nad: NaiveDate,
    pub items: i64,
    pub amount: Decimal,
    pub reason: String,
}

pub struct EscalationOut {
    pub customer_id: i64,
    pub ladder: String,
    pub level: usize,
    pub level_name: String,
    pub channel: String,
    pub template: String,
    pub copy_manager: bool,
    pub amount: Decimal,
    /// JSON list of the items and the level each reached.
    pub items: String,
    pub reason: String,
}

#[derive(Default)]
pub struct RunOutput {
    /// (customer id, change counter the run saw)
    pub processed: Vec<(i64, i64)>,
    pub states: Vec<StateOut>,
    pub new_cases: Vec<NewCase>,
    /// (case id, nad, priority)
    pub case_updates: Vec<(i64, NaiveDate, Priority)>,
    /// (case id, reason)
    pub closed: Vec<(i64, String)>,
    pub worklist: Vec<WorklistOut>,
    pub escalations: Vec<EscalationOut>,
    /// Customers the run could not evaluate: a full run keeps their worklist entries.
    pub kept: Vec<i64>,
    /// (item id, dunning level) of the items a decided step reminds.
    pub item_levels: Vec<(i64, usize)>,
    /// `None`: `states` and `worklist` are every processed customer's rows and the
    /// store replaces what it holds for them. `Some`: the run compared its rows
    /// with what the store holds, and they are only those that differ.
    pub delta: Option<Delta>,
    /// After an incremental run: the customers whose worklist entries it may have
    /// rewritten (the run's row keeps them, so a replica that follows can read
    /// just those entries again). `None` after a full run: every entry may differ.
    pub touched: Option<Vec<i64>>,
}

/// What a run that wrote only changed rows also asks of the store.
#[derive(Debug, Default)]
pub struct Delta {
    /// Customers whose worklist entry goes.
    pub unlisted: Vec<i64>,
    /// Stamp every state row not in `RunOutput::kept` with the run's date: a full
    /// run evaluated them all, and most rows differ only in that date.
    pub restamp: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every open item is held in the daemon's memory: at ten million items each
    /// byte of an item is ten megabytes. An activity inline took 64 of them.
    #[test]
    fn a_held_item_stays_small() {
        let (item, case) = (
            std::mem::size_of::<ItemRow>(),
            std::mem::size_of::<CaseRow>(),
        );
        assert!(case <= 72, "CaseRow {case} B");
        assert!(item <= 184, "ItemRow {item} B");
    }
}
