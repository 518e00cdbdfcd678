//! The YAML input schema of `rules/`, exactly as users write it.
//!
//! Every struct denies unknown keys so a typo is an error with file:line:column
//! instead of a silently ignored setting. These types are never seen by the engine:
//! `compile` turns them into the validated [`super::RuleSet`].

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};

/// One YAML file under `rules/`. Each section may be defined in exactly one file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Schema version of the rule files; only 1 exists today.
    pub version: Option<u32>,
    pub currency: Option<CurrencySection>,
    pub cases: Option<CasesSection>,
    pub categories: Option<Vec<Category>>,
    pub strategies: Option<Vec<Strategy>>,
    pub groups: Option<Vec<Group>>,
    pub ladders: Option<Vec<Ladder>>,
    pub scripts: Option<Vec<ScriptRef>>,
    /// Interest and fine on overdue items (renegotiation).
    pub interest: Option<arrears_finance::InterestPolicy>,
    pub agreements: Option<AgreementsSection>,
    pub correspondence: Option<CorrespondenceSection>,
    pub erp_procedures: Option<ErpProceduresSection>,
    /// Collector commission: attribution, tiers, cap, clawback.
    pub commission: Option<arrears_finance::commission::CommissionPolicy>,
    pub write_off: Option<WriteOffSection>,
}

/// Which ladder a customer's dunning procedure in the ERP (its name there) stands for.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErpProceduresSection {
    /// ERP procedure name -> ladder name.
    #[serde(default)]
    pub ladders: BTreeMap<String, String>,
    /// Ladder of a procedure not listed; absent = the strategy's ladder.
    pub default: Option<String>,
}

/// What letters and messages say about the sender, per company code.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CorrespondenceSection {
    #[serde(default)]
    pub companies: BTreeMap<String, CompanySection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompanySection {
    pub name: String,
    #[serde(default)]
    pub address: String,
    pub iban: Option<String>,
    #[serde(default)]
    pub contact: String,
    /// `{customer}` and `{company}` are replaced by the customer's codes.
    #[serde(default)]
    pub payment_link: String,
}

/// Payment agreements: plan terms and what each role may grant without approval.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgreementsSection {
    /// Monthly interest (%) of Price and SAC instalment plans.
    #[serde(deserialize_with = "decimal")]
    pub monthly_rate: Decimal,
    pub max_installments: u32,
    /// Smallest instalment, in the agreement's currency.
    #[serde(deserialize_with = "decimal")]
    pub min_installment: Decimal,
    /// Days after an unpaid instalment's due date that break the agreement.
    pub break_after_days: i64,
    /// Latest first due date, counted from the day of the proposal.
    #[serde(default = "default_first_due_within")]
    pub first_due_within_days: i64,
    pub limits: BTreeMap<arrears_core::domain::Role, LimitSection>,
}

impl AgreementsSection {
    /// The terms the pure agreement maths of `arrears_finance::agreement` works with.
    pub fn plan_terms(&self) -> arrears_finance::agreement::PlanTerms {
        arrears_finance::agreement::PlanTerms {
            monthly_rate: self.monthly_rate,
            max_installments: self.max_installments,
            min_installment: self.min_installment,
            first_due_within_days: self.first_due_within_days,
        }
    }

    /// What `role` may grant without approval; `None` when the policy names no limits for it.
    pub fn limits_of(
        &self,
        role: arrears_core::domain::Role,
    ) -> Option<arrears_finance::agreement::Limits> {
        self.limits
            .get(&role)
            .map(|l| arrears_finance::agreement::Limits {
                discount_percent: l.discount_percent,
                installments: l.installments,
                amount: l.amount,
            })
    }
}

fn default_first_due_within() -> i64 {
    30
}

/// Write-offs at the end of the collection process: who may write off how much.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteOffSection {
    /// What each role may write off without anyone's approval, per item. A role not
    /// listed can propose but never approve.
    pub limits: BTreeMap<arrears_core::domain::Role, WriteOffLimit>,
    /// The reasons a write-off may give; empty = any text.
    #[serde(default)]
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteOffLimit {
    /// Largest open amount of the item (base currency); absent = no limit.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub amount: Option<Decimal>,
}

impl WriteOffSection {
    /// Why `role` may not write off `amount_base` (base currency) on its own; `None`
    /// when its limits cover it.
    pub fn exceeded(
        &self,
        role: arrears_core::domain::Role,
        amount_base: Decimal,
    ) -> Option<String> {
        match self.limits.get(&role) {
            None => Some(format!(
                "the {} role has no write-off limits",
                role.as_str()
            )),
            Some(WriteOffLimit { amount: Some(max) }) if amount_base > *max => {
                Some(format!("amount {amount_base} (base currency) above {max}"))
            }
            Some(_) => None,
        }
    }

    /// Checks `reason` against `reasons`, naming the field when it fails.
    pub fn check_reason(&self, reason: &str) -> Result<(), String> {
        let r = reason.trim();
        if r.is_empty() {
            return Err("reason: say why the item is written off".into());
        }
        if !self.reasons.is_empty() && !self.reasons.iter().any(|x| x == r) {
            return Err(format!(
                "reason: `{r}` is not one of the write-off reasons ({})",
                self.reasons.join(", ")
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSection {
    #[serde(deserialize_with = "decimal")]
    pub discount_percent: Decimal,
    pub installments: u32,
    /// Largest debt (base currency); absent = no limit.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub amount: Option<Decimal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurrencySection {
    /// Currency every threshold and score amount is expressed in.
    pub base: String,
    /// Date the rates were taken, recorded in run output for reproducibility.
    pub rates_as_of: Option<NaiveDate>,
    /// Units of `base` per one unit of the keyed currency.
    #[serde(default, deserialize_with = "decimal_map")]
    pub rates: BTreeMap<String, Decimal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasesSection {
    /// NAD of a new case = document date + this many days (ByDesign: 3).
    pub initial_nad_days: Option<i64>,
    pub priority: Option<PrioritySection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrioritySection {
    /// An open amount at or above this (base currency) counts as "high".
    #[serde(default, deserialize_with = "opt_decimal")]
    pub high_amount: Option<Decimal>,
    /// More days overdue than this makes a passed-NAD case high priority (ByDesign: 60).
    pub high_days_overdue: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub name: String,
    #[serde(default)]
    pub instruction: String,
    pub subcategories: Vec<Subcategory>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subcategory {
    pub name: String,
    pub days_to_complete: i64,
    #[serde(default)]
    pub instruction: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    pub name: String,
    /// Which customers this strategy handles; the first strategy whose condition holds wins.
    pub applies_to: Option<Condition>,
    #[serde(default)]
    pub segments: Vec<Segment>,
    #[serde(default)]
    pub criteria: Vec<Criterion>,
    #[serde(default)]
    pub profiles: Vec<Profile>,
    #[serde(default)]
    pub routing: Vec<Route>,
    /// Escalation ladder used for customers of this strategy.
    pub ladder: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    pub name: String,
    pub when: Option<Condition>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Criterion {
    pub name: String,
    pub when: Option<Condition>,
    /// Valuation points added when `when` holds.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub points: Option<Decimal>,
    /// Points proportional to a numeric fact, instead of (or on top of) fixed points.
    pub weight: Option<Weight>,
    /// Stop evaluating later criteria once this one holds (SAP exit rule).
    #[serde(default)]
    pub exit: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weight {
    pub field: String,
    /// `points` are given for every `per` units of `field`.
    #[serde(deserialize_with = "decimal")]
    pub per: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub points: Decimal,
    /// Upper bound on what this weight contributes.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub max: Option<Decimal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(deserialize_with = "decimal")]
    pub min_score: Decimal,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub when: Option<Condition>,
    pub group: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Collector who receives copies of escalations and approves beyond limits.
    pub manager: Option<String>,
    pub collectors: Vec<Collector>,
    /// Relative weight of item count vs amount when balancing (default 1 and 1).
    pub balance: Option<Balance>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Balance {
    #[serde(deserialize_with = "decimal")]
    pub items: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub amount: Decimal,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Collector {
    pub id: String,
    pub name: Option<String>,
    /// Where copies of escalations go when this collector manages a group.
    pub email: Option<String>,
    pub substitute: Option<String>,
    #[serde(default)]
    pub absences: Vec<Absence>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Absence {
    pub from: NaiveDate,
    pub to: NaiveDate,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ladder {
    pub name: String,
    /// `one_level_per_run` (default) or `jump_to_age`.
    pub mode: Option<String>,
    /// Grace days added to every positive `overdue_days` threshold.
    #[serde(default)]
    pub tolerance_days: i64,
    /// Least days between two steps of a customer when an invoice moves up a level
    /// without raising the customer's highest level (default 14).
    pub step_interval_days: Option<i64>,
    pub levels: Vec<Level>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Level {
    pub name: String,
    /// Applies when `as_of - due_date >= overdue_days` (+ tolerance when positive); negative = before due.
    pub overdue_days: i64,
    pub channel: String,
    pub template: String,
    /// Minimum total of the dunnable items (base currency) for a reminder at this level.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub min_amount: Option<Decimal>,
    /// Send again after this many days while the debt stays unpaid; absent = once.
    pub resend_after_days: Option<i64>,
    #[serde(default)]
    pub copy_manager: bool,
    /// Event recorded on the customer when the step is taken.
    pub event: Option<String>,
    /// Fee charged once per item reaching this level, in the base currency.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub fee: Option<Decimal>,
    /// Channels tried, in order, when `channel` is refused (opt-out), has no
    /// address, or bounces.
    pub fallback: Option<Vec<String>>,
    /// For `call_task`: the activity the call becomes on the customer's oldest case.
    pub activity: Option<String>,
    /// Last level only: the items this step reminds are also proposed for write-off,
    /// with this reason; a person whose `write_off.limits` cover them approves.
    pub propose_write_off: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptRef {
    /// Path relative to the rules folder.
    pub file: String,
    /// Run the script only for customers matching this native condition.
    pub when: Option<Condition>,
    /// Wall-clock milliseconds one hook call may take [default 50].
    pub budget_ms: Option<u64>,
}

/// A condition: every listed fact test must hold (AND); `any` holds when one of its
/// conditions does; `not` negates.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub open_amount: Option<NumTest>,
    pub overdue_amount: Option<NumTest>,
    pub max_days_overdue: Option<NumTest>,
    pub avg_days_overdue: Option<NumTest>,
    pub open_items: Option<NumTest>,
    pub overdue_items: Option<NumTest>,
    pub disputed_items: Option<NumTest>,
    pub blocked_items: Option<NumTest>,
    pub promises_broken: Option<NumTest>,
    pub promises_kept: Option<NumTest>,
    pub promises_made: Option<NumTest>,
    pub promises_partial: Option<NumTest>,
    pub promise_kept_rate: Option<NumTest>,
    pub promise_avg_delay_days: Option<NumTest>,
    pub credit_limit_utilisation: Option<NumTest>,
    pub days_since_last_payment: Option<NumTest>,
    pub score: Option<NumTest>,
    pub segment: Option<TextTest>,
    pub company: Option<TextTest>,
    pub currency: Option<TextTest>,
    pub country: Option<TextTest>,
    pub any: Option<Vec<Condition>>,
    pub not: Option<Box<Condition>>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct NumTest {
    #[serde(default, deserialize_with = "opt_decimal")]
    pub gt: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub gte: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub lt: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub lte: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    pub eq: Option<Decimal>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct TextTest {
    pub eq: Option<String>,
    pub ne: Option<String>,
    #[serde(rename = "in")]
    pub in_: Option<Vec<String>>,
    pub not_in: Option<Vec<String>>,
}

/// YAML numbers arrive as f64/i64; going through their shortest decimal text keeps
/// `0.1` exactly 0.1. Strings are accepted too so users can quote large amounts.
/// Serde helper: a decimal written as a YAML string or number, exactly (also for fixtures).
pub fn decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        I(i64),
        U(u64),
        F(f64),
        S(String),
    }
    let text = match Num::deserialize(d)? {
        Num::I(i) => return Ok(Decimal::from(i)),
        Num::U(u) => return Ok(Decimal::from(u)),
        Num::F(f) => f.to_string(),
        Num::S(s) => s,
    };
    arrears_core::money::parse_amount(&text).map_err(serde::de::Error::custom)
}

/// Serde helper: an optional [`decimal`].
pub fn opt_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    decimal(d).map(Some)
}

fn decimal_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Decimal>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "decimal")] Decimal);
    let m = BTreeMap::<String, W>::deserialize(d)?;
    Ok(m.into_iter().map(|(k, W(v))| (k, v)).collect())
}
