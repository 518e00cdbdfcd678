//! The collections vocabulary shared by store, engine and outputs.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::money::Currency;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low = 1,
    Medium = 2,
    High = 3,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
        }
    }

    pub fn parse(s: &str) -> Option<Priority> {
        match s {
            "low" => Some(Priority::Low),
            "medium" => Some(Priority::Medium),
            "high" => Some(Priority::High),
            _ => None,
        }
    }

    pub fn from_i64(v: i64) -> Priority {
        match v {
            3 => Priority::High,
            2 => Priority::Medium,
            _ => Priority::Low,
        }
    }
}

/// A dunning block: keeps items out of escalation until `until` (inclusive), or forever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub reason: String,
    pub until: Option<NaiveDate>,
}

impl Hold {
    /// Holds lift by themselves: the day after `until` the item is back in collection.
    pub fn active_on(&self, as_of: NaiveDate) -> bool {
        self.until.is_none_or(|u| as_of <= u)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CustomerInfo {
    pub company: String,
    pub code: String,
    pub name: String,
    pub country: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub language: Option<String>,
    pub timezone: Option<String>,
    pub credit_limit: Option<(Decimal, Currency)>,
    /// The postal address letters go to, in parts (the country is `country`).
    /// For e-mail, phone and these: `None` keeps what is stored, `Some("")` clears it.
    pub street: Option<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    /// What the ERP says of dunning the customer; `None`: it does not say.
    pub dunning: Option<ErpDunning>,
}

/// What the ERP says of dunning a customer (Tryton: the party's dunning procedure).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ErpDunning {
    /// No procedure: the ERP does not dun this customer, and neither does Arrears.
    /// Its cases and worklist entries stay; only the escalation ladder stops.
    Excluded,
    /// Dunned under this procedure (its name in the ERP).
    Procedure(String),
}

impl ErpDunning {
    /// As stored: `''` for [`ErpDunning::Excluded`], else the procedure's name.
    pub fn stored(&self) -> &str {
        match self {
            ErpDunning::Excluded => "",
            ErpDunning::Procedure(n) => n,
        }
    }

    /// From [`ErpDunning::stored`]; `None` (NULL) is "the ERP does not say".
    pub fn from_stored(v: Option<String>) -> Option<ErpDunning> {
        v.map(|v| {
            if v.is_empty() {
                ErpDunning::Excluded
            } else {
                ErpDunning::Procedure(v)
            }
        })
    }
}

/// An open (due) item as a source reports it; the natural key is (source, external_id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemInput {
    pub source: String,
    pub external_id: String,
    pub company: String,
    pub customer: String,
    pub document_no: String,
    pub document_date: NaiveDate,
    pub due_date: NaiveDate,
    pub original_amount: Decimal,
    pub open_amount: Decimal,
    pub currency: Currency,
    pub hold: Option<Hold>,
    /// Set when the item replaces another (split, re-posting): the original invoice number.
    pub original_document: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentInput {
    pub source: String,
    pub external_id: String,
    pub company: String,
    pub customer: String,
    pub amount: Decimal,
    pub currency: Currency,
    pub value_date: NaiveDate,
    pub reference: String,
    /// External id (same source) of the item the payment was allocated to, if known.
    pub item_ref: Option<String>,
}

/// One ingest unit: written in a single transaction or not at all.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub customers: Vec<CustomerInfo>,
    pub items: Vec<ItemInput>,
    pub payments: Vec<PaymentInput>,
    /// Sources for which `items` is the complete list of open items: any other open
    /// item of these sources has disappeared and is cleared.
    pub snapshot_sources: Vec<String>,
    /// The business day the data describes (an ERP sync's day, an import's
    /// `--as-of`): what the batch changes is dated by it in the items' history.
    /// `None`: the store clock's day.
    pub as_of: Option<NaiveDate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromiseStatus {
    Open,
    Kept,
    PartiallyKept,
    Broken,
}

impl PromiseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PromiseStatus::Open => "open",
            PromiseStatus::Kept => "kept",
            PromiseStatus::PartiallyKept => "partially_kept",
            PromiseStatus::Broken => "broken",
        }
    }

    pub fn parse(s: &str) -> PromiseStatus {
        match s {
            "kept" => PromiseStatus::Kept,
            "partially_kept" => PromiseStatus::PartiallyKept,
            "broken" => PromiseStatus::Broken,
            _ => PromiseStatus::Open,
        }
    }
}

/// Why an item's open amount or status changed, as its history records it (and
/// `cleared_by` once it left collection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeCause {
    /// A payment allocated to the item (a bank statement, or an ERP batch that
    /// links a payment to it).
    Payment,
    /// A credit note set against it.
    Credit,
    /// Written off at the end of the collection process.
    WriteOff,
    /// Taken into a payment agreement, or changed by one (a broken agreement's
    /// unearned interest dropped).
    Agreement,
    /// Split or re-posted: replaced by other documents.
    Replaced,
    /// The ERP reported the new amount or status without saying why.
    Erp,
    /// It disappeared from a full snapshot of its source.
    Snapshot,
    /// State found when the history began (schema version 14), dated by what
    /// the store held: the closing of its case, its last linked payment.
    BeforeHistory,
}

impl ChangeCause {
    pub const ALL: [ChangeCause; 8] = [
        ChangeCause::Payment,
        ChangeCause::Credit,
        ChangeCause::WriteOff,
        ChangeCause::Agreement,
        ChangeCause::Replaced,
        ChangeCause::Erp,
        ChangeCause::Snapshot,
        ChangeCause::BeforeHistory,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeCause::Payment => "payment",
            ChangeCause::Credit => "credit",
            ChangeCause::WriteOff => "write_off",
            ChangeCause::Agreement => "agreement",
            ChangeCause::Replaced => "replaced",
            ChangeCause::Erp => "erp",
            ChangeCause::Snapshot => "snapshot",
            ChangeCause::BeforeHistory => "before_history",
        }
    }

    pub fn parse(s: &str) -> Option<ChangeCause> {
        ChangeCause::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Where a case stands with its current activity; drives the Next Activity Due date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Activity {
    /// No activity assigned yet.
    None,
    /// Assigned, not done: due `days_to_complete` after the case was last edited.
    Open {
        category: String,
        subcategory: String,
        days_to_complete: i64,
        last_edited_on: NaiveDate,
    },
    /// Done on `on`; `ptp` when the customer agreed a promise to pay.
    Completed {
        on: NaiveDate,
        ptp: Option<NaiveDate>,
    },
}

impl Activity {
    /// The day the activity was last assigned, edited or completed.
    pub fn last_date(&self) -> Option<NaiveDate> {
        match self {
            Activity::None => None,
            Activity::Open { last_edited_on, .. } => Some(*last_edited_on),
            Activity::Completed { on, .. } => Some(*on),
        }
    }
}

/// The roles of API principals and of agreement limits, least to most.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, PartialOrd, Ord, Serialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Collector,
    Supervisor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Collector => "collector",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }
}
