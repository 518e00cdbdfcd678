//! Interest, fines, payment allocation and instalment plans for overdue items.
//!
//! All figures are exact decimals; nothing passes through binary floating point.
//!
//! # What an overdue item owes ([`debt`])
//! - **Simple interest on the principal only.** Interest never bears interest, nor do the fine
//!   or costs. It runs from the due date to each payment, then on the declining balance from
//!   the last payment to `as_of`.
//! - **Rate and day count.** `rate` is a percentage per `per` (month or year); a monthly rate
//!   is turned into a yearly one by × 12. The interest of one segment is
//!   `base × yearly % × days / (100 × basis)`:
//!   `act_365` = actual days over 365 (ERPNext's `outstanding × rate/100/365 × overdue days`),
//!   `act_360` = actual days over 360, `thirty_360` = the European 30E/360 rule,
//!   days = 360·(Y2−Y1) + 30·(M2−M1) + (min(D2,30) − min(D1,30)), over 360.
//! - **Grace.** Nothing is charged while `as_of` is within `grace_days` after the due date, nor
//!   at all if the principal is fully paid by then. Past grace, interest counts from the due
//!   date and the fine (`fine_percent` of the principal still open when grace ends) is charged
//!   once. Payments made before the due date or within grace pay costs and principal only,
//!   because no interest or fine was owed when they were made.
//! - **Allocation.** Each payment pays what is owed on its date in the policy's `allocation`
//!   order (default costs → fine → interest → principal); what is left over is a credit.
//! - **Caps.** `interest_cap_percent` limits all interest ever accrued on the item to that
//!   percentage of the original principal; `fine_max` limits the fine. A cap that bites sets a
//!   flag on the result and says so in its lines.
//!
//! # Rounding
//! Money is rounded to the currency's minor units, midpoint away from zero, once per figure.
//! An accrual segment is the span between two consecutive events (due date, payment dates,
//! `as_of`) over which the principal is constant; its interest is computed at full precision
//! and rounded once, and the item's interest is the sum of its rounded segments. The fine is
//! rounded once. Caps are truncated to minor units, so a capped figure never exceeds its cap.
//!
//! # Instalment plans ([`schedule`])
//! Dues are monthly, each counted from the first due date so a 31st stays anchored
//! (Jan 31 → Feb 28 → Mar 31). An instalment's interest is `round(balance before it × i)`.
//! Price (French) table: `PMT = P·i / (1 − (1+i)^−n)` rounded once, principal = PMT − interest.
//! SAC and `no_interest`: the level principal is `P / n` truncated to minor units, so the
//! remainder (never negative) falls on the last instalment. In every kind the last instalment
//! takes the whole remaining balance, so the principal sums to the debt exactly.

pub mod agreement;
pub mod commission;

use std::fmt;

use chrono::{Datelike, Days, Months, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Minor units of most currencies (cents).
pub const DEFAULT_MINOR_UNITS: u32 = 2;

/// Longest plan accepted: 30 years of monthly instalments.
pub const MAX_INSTALLMENTS: u32 = 360;

const MAX_MINOR_UNITS: u32 = 8;
const MAX_RATE_PERCENT: i64 = 1000;
// Beyond this a rate is only rounding noise in (1+i)^-n, and 1 − (1+i)^-n could lose digits.
const MAX_PLAN_RATE_SCALE: u32 = 8;

// With amounts and rates bounded, every product (amount × yearly % × days) stays well inside
// Decimal's 28 digits, so no arithmetic here can overflow and panic on hostile input.
fn max_amount() -> Decimal {
    Decimal::from(1_000_000_000_000_000_i64)
}

/// Why a policy or an input was refused; `field` names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FinanceError {
    #[error("interest policy: `{field}` {reason}")]
    Policy { field: String, reason: String },
    #[error("`{field}` {reason}")]
    Input { field: String, reason: String },
    #[error("commission: `{field}` {reason}")]
    Commission { field: String, reason: String },
    /// Valid inputs whose rounding would break a schedule invariant.
    #[error("no valid schedule: {reason}")]
    Schedule { reason: String },
}

impl FinanceError {
    /// The field the error is about, if it is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            FinanceError::Policy { field, .. }
            | FinanceError::Input { field, .. }
            | FinanceError::Commission { field, .. } => Some(field),
            FinanceError::Schedule { .. } => None,
        }
    }
}

fn policy_err<T>(field: &str, reason: impl Into<String>) -> Result<T, FinanceError> {
    let (field, reason) = (field.to_string(), reason.into());
    Err(FinanceError::Policy { field, reason })
}

fn input_err<T>(field: &str, reason: impl Into<String>) -> Result<T, FinanceError> {
    let (field, reason) = (field.to_string(), reason.into());
    Err(FinanceError::Input { field, reason })
}

/// The period a rate is quoted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RatePeriod {
    Monthly,
    Yearly,
}

/// Day-count convention: how many days a segment has and over which year basis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DayCount {
    /// Actual days over 365.
    #[serde(rename = "act_365")]
    Act365,
    /// Actual days over 360.
    #[serde(rename = "act_360")]
    Act360,
    /// European 30E/360: both day-of-month numbers capped at 30, over 360.
    #[serde(rename = "thirty_360")]
    Thirty360,
}

impl DayCount {
    /// Days from `from` to `to` under this convention.
    pub fn days(self, from: NaiveDate, to: NaiveDate) -> i64 {
        // 30E/360 is a difference of "30-day serial numbers", so the days of consecutive
        // segments add up exactly to the days of the whole span.
        let serial = |d: NaiveDate| {
            360 * i64::from(d.year()) + 30 * i64::from(d.month()) + i64::from(d.day().min(30))
        };
        match self {
            DayCount::Act365 | DayCount::Act360 => (to - from).num_days(),
            DayCount::Thirty360 => serial(to) - serial(from),
        }
    }

    /// Days in the year the yearly rate is spread over.
    pub fn basis(self) -> i64 {
        match self {
            DayCount::Act365 => 365,
            DayCount::Act360 | DayCount::Thirty360 => 360,
        }
    }

    fn label(self) -> &'static str {
        match self {
            DayCount::Act365 => "ACT/365",
            DayCount::Act360 => "ACT/360",
            DayCount::Thirty360 => "30E/360",
        }
    }
}

/// One part of what an item owes; a payment pays them in the policy's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    Costs,
    Fine,
    Interest,
    Principal,
}

impl Component {
    const ALL: [Component; 4] = [Self::Costs, Self::Fine, Self::Interest, Self::Principal];

    fn name(self) -> &'static str {
        match self {
            Component::Costs => "costs",
            Component::Fine => "fine",
            Component::Interest => "interest",
            Component::Principal => "principal",
        }
    }
}

fn default_allocation() -> Vec<Component> {
    Component::ALL.to_vec()
}

/// How an overdue item is charged, as written in YAML. Percentages and amounts may be quoted
/// (`"1.5"`, exact) or bare YAML numbers (`1.5`, read back through their shortest decimal
/// form, which is exact for any figure of up to 15 digits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterestPolicy {
    /// Interest rate in percent per `per`: `rate: "1"` with `per: monthly` is 1 % a month.
    pub rate: Decimal,
    /// `monthly` (turned into a yearly rate by × 12) or `yearly`.
    pub per: RatePeriod,
    /// `act_365`, `act_360` or `thirty_360` (European 30E/360).
    pub day_count: DayCount,
    /// Days after the due date in which paying the principal in full costs no interest or fine.
    /// Once they are over, interest counts from the due date itself.
    #[serde(default)]
    pub grace_days: u32,
    /// One-off fine in percent of the principal still open when grace ends (0–100).
    #[serde(default)]
    pub fine_percent: Decimal,
    /// Ceiling on all interest accrued on an item, in percent of its original principal.
    #[serde(default)]
    pub interest_cap_percent: Option<Decimal>,
    /// Ceiling on the fine, as an amount in the item's currency.
    #[serde(default)]
    pub fine_max: Option<Decimal>,
    /// Order in which a payment pays the components: each of `costs`, `fine`, `interest` and
    /// `principal` exactly once. Default: costs → fine → interest → principal.
    #[serde(default = "default_allocation")]
    pub allocation: Vec<Component>,
}

impl InterestPolicy {
    /// Checks ranges and the allocation order; the error names the first bad field.
    pub fn validate(&self) -> Result<(), FinanceError> {
        let percent = |field: &str, v: Decimal, max: i64| match v {
            v if v < Decimal::ZERO => policy_err(field, format!("must not be negative (got {v})")),
            v if v > Decimal::from(max) => policy_err(field, format!("must be ≤ {max} (got {v})")),
            _ => Ok(()),
        };
        percent("rate", self.rate, MAX_RATE_PERCENT)?;
        percent("fine_percent", self.fine_percent, 100)?;
        if let Some(cap) = self.interest_cap_percent {
            percent("interest_cap_percent", cap, MAX_RATE_PERCENT)?;
        }
        if let Some(max) = self.fine_max {
            if max < Decimal::ZERO || max > max_amount() {
                return policy_err(
                    "fine_max",
                    format!("must be between 0 and 10^15 (got {max})"),
                );
            }
        }
        for c in Component::ALL {
            match self.allocation.iter().filter(|&&a| a == c).count() {
                0 => return policy_err("allocation", format!("lacks `{}`", c.name())),
                1 => {}
                _ => return policy_err("allocation", format!("lists `{}` twice", c.name())),
            }
        }
        Ok(())
    }

    fn yearly_rate(&self) -> Decimal {
        match self.per {
            RatePeriod::Monthly => self.rate * Decimal::from(12),
            RatePeriod::Yearly => self.rate,
        }
    }
}

/// A payment received for an item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub date: NaiveDate,
    /// Must be positive: a reversal is a correction of the payments, not a payment.
    pub amount: Decimal,
}

/// An overdue item as [`debt`] needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemDebtInput {
    /// The open amount on the due date; the only part that bears interest.
    pub principal: Decimal,
    pub due: NaiveDate,
    /// Fees already charged on the item (reminder fees…); they bear no interest.
    #[serde(default)]
    pub costs: Decimal,
    /// In any order. Payments dated after `as_of` are listed but not counted.
    #[serde(default)]
    pub payments: Vec<Payment>,
}

impl ItemDebtInput {
    /// An item as the books record it. Interest follows the payments when they explain
    /// the open amount; when they do not (credit notes, an ERP without payment detail)
    /// it runs on what is open now, and the note says so.
    pub fn from_record(
        original: Decimal,
        open: Decimal,
        due: NaiveDate,
        payments: Vec<Payment>,
    ) -> (ItemDebtInput, Option<String>) {
        let paid: Decimal = payments.iter().map(|x| x.amount).sum();
        if original - paid == open {
            let input = ItemDebtInput {
                principal: original,
                due,
                costs: Decimal::ZERO,
                payments,
            };
            return (input, None);
        }
        let input = ItemDebtInput {
            principal: open,
            due,
            costs: Decimal::ZERO,
            payments: Vec::new(),
        };
        let note = format!(
            "interest on the open amount {open}: the recorded payments ({paid}) do not explain it"
        );
        (input, Some(note))
    }
}

/// The interest of one accrual segment, with the figures a letter shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccrualSegment {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub days: i64,
    pub day_count: DayCount,
    /// Principal outstanding over the segment.
    pub base: Decimal,
    pub yearly_rate_percent: Decimal,
    /// Rounded once; already cut down if the interest cap bit here.
    pub amount: Decimal,
    pub capped: bool,
}

impl fmt::Display for AccrualSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            from,
            to,
            days,
            base,
            amount,
            ..
        } = self;
        let (label, basis) = (self.day_count.label(), self.day_count.basis());
        let rate = self.yearly_rate_percent.normalize();
        write!(f, "interest {from} to {to}, {days} days {label}: ")?;
        write!(f, "{base} × {rate} % × {days}/{basis} = {amount}")?;
        if self.capped {
            write!(f, " (cut by the interest cap)")?;
        }
        Ok(())
    }
}

/// What an item owes on `as_of`, with the explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemDebt {
    pub principal_outstanding: Decimal,
    pub fine_outstanding: Decimal,
    pub interest_outstanding: Decimal,
    pub costs_outstanding: Decimal,
    /// Sum of the four outstanding parts.
    pub total: Decimal,
    /// Paid beyond everything owed: to refund or to apply to another item, never dropped.
    pub credit: Decimal,
    /// All interest accrued, paid or not (what the interest cap applies to).
    pub interest_accrued: Decimal,
    pub fine_charged: Decimal,
    pub interest_capped: bool,
    pub fine_capped: bool,
    pub segments: Vec<AccrualSegment>,
    /// The whole computation in order, one sentence a line, for a letter or an explanation.
    pub lines: Vec<String>,
}

use arrears_core::money::{round_to as round_money, truncate_to as truncate_money};

fn check_minor_units(minor_units: u32) -> Result<(), FinanceError> {
    match minor_units {
        0..=MAX_MINOR_UNITS => Ok(()),
        _ => input_err("minor_units", format!("must be at most {MAX_MINOR_UNITS}")),
    }
}

/// Refuses amounts that are not money in this currency, so every sum stays exact.
fn check_money(field: &str, v: Decimal, mu: u32, positive: bool) -> Result<Decimal, FinanceError> {
    let refuse = |reason: &str| input_err(field, format!("{reason} (got {v})"));
    if positive && v <= Decimal::ZERO {
        return refuse("must be greater than zero");
    }
    if v < Decimal::ZERO {
        return refuse("must not be negative");
    }
    if v > max_amount() {
        return refuse("must be at most 10^15");
    }
    if v.normalize().scale() > mu {
        return refuse(&format!("has more than {mu} decimal places"));
    }
    Ok(round_money(v, mu))
}

#[derive(Debug, Clone, Copy)]
struct Owed {
    costs: Decimal,
    fine: Decimal,
    interest: Decimal,
    principal: Decimal,
}

impl Owed {
    fn slot(&mut self, c: Component) -> &mut Decimal {
        match c {
            Component::Costs => &mut self.costs,
            Component::Fine => &mut self.fine,
            Component::Interest => &mut self.interest,
            Component::Principal => &mut self.principal,
        }
    }

    /// Pays `amount` in `order`; returns what each component got and what was left over.
    fn pay(&mut self, order: &[Component], amount: Decimal) -> (Vec<String>, Decimal) {
        let mut left = amount;
        let mut paid = Vec::new();
        for &c in order {
            let slot = self.slot(c);
            let take = left.min(*slot);
            if take > Decimal::ZERO {
                *slot -= take;
                left -= take;
                paid.push(format!("{} {take}", c.name()));
            }
        }
        (paid, left)
    }
}

/// The running state of one [`debt`] computation.
struct Run<'a> {
    policy: &'a InterestPolicy,
    minor_units: u32,
    owed: Owed,
    /// Interest accrued within grace: owed only once grace has passed with principal open.
    pending: Decimal,
    accrued: Decimal,
    cap: Option<Decimal>,
    interest_capped: bool,
    fine_charged: Decimal,
    fine_capped: bool,
    credit: Decimal,
    segments: Vec<AccrualSegment>,
    lines: Vec<String>,
}

impl Run<'_> {
    fn accrue(&mut self, from: NaiveDate, to: NaiveDate, in_grace: bool) {
        let day_count = self.policy.day_count;
        let days = day_count.days(from, to);
        let base = self.owed.principal;
        if days <= 0 || base.is_zero() {
            return;
        }
        let yearly_rate_percent = self.policy.yearly_rate();
        // Dividing last keeps the product exact up to the single rounding.
        let exact = base * yearly_rate_percent * Decimal::from(days)
            / Decimal::from(100 * day_count.basis());
        let mut amount = round_money(exact, self.minor_units);
        let room = self.cap.map(|cap| cap - self.accrued);
        let capped = room.is_some_and(|room| amount > room);
        if let (true, Some(room)) = (capped, room) {
            amount = room;
            self.interest_capped = true;
        }
        self.accrued += amount;
        if in_grace {
            self.pending += amount;
        } else {
            self.owed.interest += amount;
        }
        let segment = AccrualSegment {
            from,
            to,
            days,
            day_count,
            base,
            yearly_rate_percent,
            amount,
            capped,
        };
        self.lines.push(segment.to_string());
        self.segments.push(segment);
    }

    /// Grace has passed with principal open: grace interest becomes owed and the fine is due.
    fn end_grace(&mut self, grace_end: NaiveDate) {
        self.owed.interest += std::mem::take(&mut self.pending);
        let (base, pct) = (self.owed.principal, self.policy.fine_percent);
        let mut fine = round_money(base * pct / Decimal::ONE_HUNDRED, self.minor_units);
        let pct = pct.normalize();
        let mut line =
            format!("fine {pct} % of {base} open when grace ended ({grace_end}) = {fine}");
        let max = self
            .policy
            .fine_max
            .map(|m| truncate_money(m, self.minor_units));
        if let Some(max) = max.filter(|&max| fine > max) {
            fine = max;
            self.fine_capped = true;
            line.push_str(&format!(", capped at {max}"));
        }
        if !fine.is_zero() {
            self.lines.push(line);
        }
        self.fine_charged = fine;
        self.owed.fine += fine;
    }

    fn pay(&mut self, p: &Payment) {
        let (mut parts, left) = self.owed.pay(&self.policy.allocation, p.amount);
        if !left.is_zero() {
            parts.push(format!("credit {left}"));
        }
        self.credit += left;
        let (amount, date, parts) = (p.amount, p.date, parts.join(", "));
        self.lines
            .push(format!("payment {amount} on {date}: {parts}"));
    }
}

/// What `item` owes on `as_of` under `policy`, in a currency with `minor_units` decimals
/// (usually [`DEFAULT_MINOR_UNITS`]). See the module doc for the rules.
pub fn debt(
    policy: &InterestPolicy,
    item: &ItemDebtInput,
    as_of: NaiveDate,
    minor_units: u32,
) -> Result<ItemDebt, FinanceError> {
    policy.validate()?;
    check_minor_units(minor_units)?;
    let principal = check_money("principal", item.principal, minor_units, true)?;
    let costs = check_money("costs", item.costs, minor_units, false)?;
    let mut payments = Vec::with_capacity(item.payments.len());
    for (k, p) in item.payments.iter().enumerate() {
        let field = format!("payments[{k}].amount");
        let amount = check_money(&field, p.amount, minor_units, true)?;
        payments.push(Payment {
            date: p.date,
            amount,
        });
    }
    // Stable: same-day payments keep their input order.
    payments.sort_by_key(|p| p.date);
    let Some(grace_end) = item
        .due
        .checked_add_days(Days::new(policy.grace_days.into()))
    else {
        return policy_err("grace_days", "ends grace past the last representable date");
    };

    let zero = round_money(Decimal::ZERO, minor_units);
    let start = Owed {
        costs,
        principal,
        fine: zero,
        interest: zero,
    };
    // Whether grace was kept decides everything else, so settle it before accruing anything.
    let principal_at_grace_end = payments
        .iter()
        .filter(|p| p.date <= grace_end && p.date <= as_of)
        .fold(start, |mut owed, p| {
            owed.pay(&policy.allocation, p.amount);
            owed
        })
        .principal;
    let charged = as_of > grace_end && principal_at_grace_end > Decimal::ZERO;

    let hundred = Decimal::ONE_HUNDRED;
    let cap = policy
        .interest_cap_percent
        .map(|pct| principal * pct / hundred);
    let mut run = Run {
        policy,
        minor_units,
        owed: start,
        pending: zero,
        accrued: zero,
        cap: cap.map(|cap| truncate_money(cap, minor_units)),
        interest_capped: false,
        fine_charged: zero,
        fine_capped: false,
        credit: zero,
        segments: Vec::new(),
        lines: vec![format!(
            "principal {principal} due {}, costs {costs}",
            item.due
        )],
    };

    let mut cursor = item.due;
    let mut grace_over = false;
    for p in &payments {
        if p.date > as_of {
            let (amount, date) = (p.amount, p.date);
            run.lines.push(format!(
                "payment {amount} on {date} is after {as_of}: not counted"
            ));
            continue;
        }
        if charged {
            if !grace_over && p.date > grace_end {
                run.end_grace(grace_end);
                grace_over = true;
            }
            if p.date > cursor {
                run.accrue(cursor, p.date, p.date <= grace_end);
                cursor = p.date;
            }
        }
        run.pay(p);
    }
    if charged {
        if !grace_over {
            run.end_grace(grace_end);
        }
        run.accrue(cursor, as_of, false);
    } else if as_of <= grace_end {
        run.lines.push(format!(
            "no interest or fine before the end of grace ({grace_end})"
        ));
    } else {
        run.lines.push(format!(
            "principal paid within grace ({grace_end}): no interest or fine"
        ));
    }
    if let (true, Some(cap)) = (run.interest_capped, run.cap) {
        let pct = policy.interest_cap_percent.unwrap_or_default().normalize();
        run.lines
            .push(format!("interest capped at {cap} ({pct} % of {principal})"));
    }
    let Owed {
        costs,
        fine,
        interest,
        principal,
    } = run.owed;
    let total = principal + fine + interest + costs;
    run.lines.push(format!(
        "owed on {as_of}: principal {principal}, fine {fine}, interest {interest}, \
         costs {costs}, total {total}"
    ));
    if !run.credit.is_zero() {
        run.lines.push(format!("credit {}", run.credit));
    }
    Ok(ItemDebt {
        principal_outstanding: principal,
        fine_outstanding: fine,
        interest_outstanding: interest,
        costs_outstanding: costs,
        total,
        credit: run.credit,
        interest_accrued: run.accrued,
        fine_charged: run.fine_charged,
        interest_capped: run.interest_capped,
        fine_capped: run.fine_capped,
        segments: run.segments,
        lines: run.lines,
    })
}

/// How a plan repays the debt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    /// Equal instalments with interest (French / Price table).
    Price,
    /// Constant amortisation (SAC): equal principal, interest on the declining balance.
    Sac,
    /// Equal principal, no interest.
    NoInterest,
}

/// A payment agreement to turn into instalments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanInput {
    /// The amount the plan repays; greater than zero.
    pub debt: Decimal,
    /// Number of monthly instalments, 1 to [`MAX_INSTALLMENTS`].
    pub installments: u32,
    pub kind: PlanKind,
    /// Interest in percent a month (0–100, at most 8 decimals); 0 for `no_interest`.
    pub monthly_rate: Decimal,
    pub first_due: NaiveDate,
}

/// One line of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Installment {
    /// From 1.
    pub number: u32,
    pub due: NaiveDate,
    pub principal: Decimal,
    pub interest: Decimal,
    /// principal + interest.
    pub amount: Decimal,
    /// Principal still open after this instalment is paid.
    pub balance_after: Decimal,
}

/// The instalments of `plan`, amounts in `minor_units` decimals (see the module doc).
///
/// A Price table is refused with [`FinanceError::Schedule`] when its rounding, compounded
/// over the plan, would pay the balance off before the last instalment or more than double
/// the last one: long plans at high rates amortise less than a minor unit a month at first,
/// so equal instalments cannot be kept.
pub fn schedule(plan: &PlanInput, minor_units: u32) -> Result<Vec<Installment>, FinanceError> {
    check_minor_units(minor_units)?;
    let debt = check_money("debt", plan.debt, minor_units, true)?;
    let (n, rate) = (plan.installments, plan.monthly_rate);
    if !(1..=MAX_INSTALLMENTS).contains(&n) {
        return input_err(
            "installments",
            format!("must be 1 to {MAX_INSTALLMENTS} (got {n})"),
        );
    }
    let bad_rate = |reason: &str| input_err("monthly_rate", format!("{reason} (got {rate})"));
    if rate < Decimal::ZERO || rate > Decimal::ONE_HUNDRED {
        return bad_rate("must be between 0 and 100");
    }
    if rate.normalize().scale() > MAX_PLAN_RATE_SCALE {
        return bad_rate(&format!(
            "has more than {MAX_PLAN_RATE_SCALE} decimal places"
        ));
    }
    if plan.kind == PlanKind::NoInterest && !rate.is_zero() {
        return bad_rate("must be 0 for a no_interest plan");
    }
    let unit = Decimal::new(1, minor_units);
    if debt < unit * Decimal::from(n) {
        return input_err(
            "debt",
            format!("{debt} cannot make {n} instalments of at least {unit}"),
        );
    }
    let i = rate / Decimal::ONE_HUNDRED;
    let price = plan.kind == PlanKind::Price && !i.is_zero();
    // A Price table at 0 % is equal principal; truncating it keeps the remainder positive.
    let level = if price {
        price_payment(debt, i, n, minor_units)?
    } else {
        truncate_money(debt / Decimal::from(n), minor_units)
    };
    let unkeepable = |k: u32| FinanceError::Schedule {
        reason: format!(
            "at {rate} % a month over {n} instalments, rounding to minor units breaks the equal \
             instalments at instalment {k}; use fewer instalments or a sac plan"
        ),
    };

    let mut balance = debt;
    let mut out = Vec::with_capacity(n as usize);
    for number in 1..=n {
        let Some(due) = plan.first_due.checked_add_months(Months::new(number - 1)) else {
            return input_err(
                "first_due",
                "puts instalments past the last representable date",
            );
        };
        let last = number == n;
        let interest = round_money(balance * i, minor_units);
        let principal = match (last, price) {
            (true, _) => balance,
            (false, true) => level - interest,
            (false, false) => level,
        };
        // A non-last instalment clearing the balance would leave the later ones empty.
        if principal < Decimal::ZERO || principal > balance || (!last && principal == balance) {
            return Err(unkeepable(number));
        }
        balance -= principal;
        let amount = principal + interest;
        if price && last && amount > level * Decimal::TWO {
            return Err(unkeepable(number));
        }
        let balance_after = balance;
        out.push(Installment {
            number,
            due,
            principal,
            interest,
            amount,
            balance_after,
        });
    }
    Ok(out)
}

/// PMT = P·i / (1 − (1+i)^−n), rounded once.
fn price_payment(debt: Decimal, i: Decimal, n: u32, mu: u32) -> Result<Decimal, FinanceError> {
    // Powers of the discount factor stay ≤ 1, so no n or i can overflow them.
    let discount = Decimal::ONE / (Decimal::ONE + i);
    let factor = (0..n).fold(Decimal::ONE, |f, _| f * discount);
    match (debt * i).checked_div(Decimal::ONE - factor) {
        Some(pmt) => Ok(round_money(pmt, mu)),
        None => input_err("monthly_rate", "is too small to compute a Price payment"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn policy(yaml: &str) -> InterestPolicy {
        let p: InterestPolicy = serde_yaml::from_str(yaml).unwrap();
        p.validate().unwrap();
        p
    }

    fn yearly12(extra: &str) -> InterestPolicy {
        policy(&format!(
            "rate: \"12\"\nper: yearly\nday_count: act_365\n{extra}"
        ))
    }

    /// 1000.00 due 2026-01-31, no costs.
    fn item(payments: &[(&str, Decimal)]) -> ItemDebtInput {
        let payments = payments.iter().map(|&(day, amount)| Payment {
            date: d(day),
            amount,
        });
        let (principal, due) = (dec!(1000.00), d("2026-01-31"));
        ItemDebtInput {
            principal,
            due,
            costs: Decimal::ZERO,
            payments: payments.collect(),
        }
    }

    fn owe(p: &InterestPolicy, i: &ItemDebtInput, as_of: &str) -> ItemDebt {
        debt(p, i, d(as_of), DEFAULT_MINOR_UNITS).unwrap()
    }

    /// [principal, fine, interest, costs] outstanding.
    fn parts(r: &ItemDebt) -> [Decimal; 4] {
        [
            r.principal_outstanding,
            r.fine_outstanding,
            r.interest_outstanding,
            r.costs_outstanding,
        ]
    }

    #[test]
    fn yaml_shape_with_quoted_and_bare_numbers() {
        let full = policy(
            "rate: \"1.5\"\nper: monthly\nday_count: thirty_360\ngrace_days: 5\n\
             fine_percent: 2\ninterest_cap_percent: \"20\"\nfine_max: 50.00\n\
             allocation: [fine, interest, principal, costs]\n",
        );
        assert_eq!((full.rate, full.fine_max), (dec!(1.5), Some(dec!(50))));
        assert_eq!(full.allocation[0], Component::Fine);
        let bare = policy("rate: 1.5\nper: monthly\nday_count: act_360\n");
        assert_eq!((bare.rate, bare.grace_days), (dec!(1.5), 0));
        assert_eq!(bare.allocation, Component::ALL);
        let parse = |yaml: &str| serde_yaml::from_str::<InterestPolicy>(yaml);
        assert!(parse("rate: 1\nper: monthly\nday_count: act_365\nrat: 2\n").is_err());
        assert!(parse("rate: 1\nper: weekly\nday_count: act_365\n").is_err());
    }

    #[test]
    fn act_365_full_period_with_fine() {
        let r = owe(&yearly12("fine_percent: 2"), &item(&[]), "2026-04-30");
        // Interest: Jan 31 → Apr 30 = 28 + 31 + 30 = 89 days;
        //   1000 × 12 × 89 / 36500 = 29.2603 → 29.26
        // Fine: 2 % × 1000.00 = 20.00. Total 1000.00 + 20.00 + 29.26 = 1049.26
        assert_eq!(
            parts(&r),
            [dec!(1000.00), dec!(20.00), dec!(29.26), dec!(0)]
        );
        assert_eq!(r.total, dec!(1049.26));
        assert_eq!(
            r.segments[0].to_string(),
            "interest 2026-01-31 to 2026-04-30, 89 days ACT/365: 1000.00 × 12 % × 89/365 = 29.26"
        );
        // 1 % a month is 12 % a year: the same 29.26.
        let monthly = policy("rate: 1\nper: monthly\nday_count: act_365\n");
        assert_eq!(owe(&monthly, &item(&[]), "2026-04-30").total, dec!(1029.26));
    }

    #[test]
    fn partial_payment_declining_balance() {
        let p = yearly12("fine_percent: 2\nallocation: [fine, interest, principal, costs]");
        let r = owe(&p, &item(&[("2026-03-02", dec!(400))]), "2026-04-30");
        // Fine at the end of grace (grace 0 → Jan 31): 2 % × 1000.00 = 20.00
        // Segment 1: Jan 31 → Mar 2 = 28 + 2 = 30 days; 1000 × 12 × 30 / 36500 = 9.8630 → 9.86
        // Payment 400: fine 20.00, interest 9.86, principal 400 − 29.86 = 370.14 → 629.86 open
        // Segment 2: Mar 2 → Apr 30 = 29 + 30 = 59 days;
        //   629.86 × 12 × 59 / 36500 = 12.2176 → 12.22
        // Owed: 629.86 + 12.22 = 642.08
        assert_eq!((r.segments[0].amount, r.segments[1].days), (dec!(9.86), 59));
        assert_eq!(parts(&r), [dec!(629.86), dec!(0), dec!(12.22), dec!(0)]);
        assert_eq!((r.total, r.interest_accrued), (dec!(642.08), dec!(22.08)));
        let line = "payment 400.00 on 2026-03-02: fine 20.00, interest 9.86, principal 370.14";
        assert!(r.lines.iter().any(|l| l == line), "{:#?}", r.lines);
    }

    #[test]
    fn allocation_order_is_followed() {
        let p = yearly12("fine_percent: 2\nallocation: [principal, interest, fine, costs]");
        let mut i = item(&[("2026-03-02", dec!(400))]);
        i.costs = dec!(50);
        let r = owe(&p, &i, "2026-04-30");
        // Payment 400 all to principal: 1000 − 400 = 600.00; fine 20.00 and costs 50 stay.
        // Interest: 9.86 (segment 1) + 600 × 12 × 59 / 36500 = 11.6384 → 11.64; 21.50
        // Total 600 + 20 + 21.50 + 50 = 691.50
        assert_eq!(
            parts(&r),
            [dec!(600.00), dec!(20.00), dec!(21.50), dec!(50)]
        );
        assert_eq!(r.total, dec!(691.50));
    }

    #[test]
    fn day_count_variants() {
        let act360 = policy("rate: 12\nper: yearly\nday_count: act_360\n");
        // 89 actual days; 1000 × 12 × 89 / 36000 = 29.6667 → 29.67
        assert_eq!(
            owe(&act360, &item(&[]), "2026-04-30").interest_outstanding,
            dec!(29.67)
        );
        // 30E/360 Jan 31 → Apr 30: D1 = min(31, 30) = 30, D2 = 30 → 30 × (4 − 1) + 0 = 90 days
        let e30 = DayCount::Thirty360;
        assert_eq!(e30.days(d("2026-01-31"), d("2026-04-30")), 90);
        // 1 % a month × 12 = 12 % a year; 1000 × 12 × 90 / 36000 = 30.00
        let p = policy("rate: 1\nper: monthly\nday_count: thirty_360\n");
        assert_eq!(
            owe(&p, &item(&[]), "2026-04-30").interest_outstanding,
            dec!(30.00)
        );
        // Feb 28 → Mar 1: 30 × 1 + (1 − 28) = 3 days, and split segments add up to the span.
        assert_eq!(e30.days(d("2026-02-28"), d("2026-03-01")), 3);
        let split = owe(&p, &item(&[("2026-02-28", dec!(1))]), "2026-04-30");
        assert_eq!(split.segments.iter().map(|s| s.days).sum::<i64>(), 90);
    }

    #[test]
    fn midpoints_round_away_from_zero() {
        let p = policy("rate: 12\nper: yearly\nday_count: act_360\n");
        let mut i = item(&[]);
        i.principal = dec!(1234.50);
        // Jan 31 → Mar 2 = 30 days; 1234.50 × 12 × 30 / 36000 = 12.345 exactly → 12.35
        assert_eq!(owe(&p, &i, "2026-03-02").interest_outstanding, dec!(12.35));
        // SAC 1234.50 over 2 at 1 %: interest 1234.50 × 0.01 = 12.345 → 12.35
        let s = schedule(&plan(dec!(1234.50), 2, PlanKind::Sac, dec!(1)), 2).unwrap();
        assert_eq!(s[0].interest, dec!(12.35));
    }

    #[test]
    fn grace_kept_and_missed() {
        let p = yearly12("fine_percent: 2\ngrace_days: 10");
        // Paid in full on the last grace day (Jan 31 + 10 = Feb 10): nothing more, ever.
        let paid = owe(&p, &item(&[("2026-02-10", dec!(1000))]), "2026-04-30");
        assert_eq!(
            (paid.total, paid.interest_accrued, paid.fine_charged),
            (dec!(0), dec!(0), dec!(0))
        );
        // as_of on the last grace day, nothing paid: nothing charged yet.
        assert_eq!(owe(&p, &item(&[]), "2026-02-10").total, dec!(1000.00));
        // One day past grace: 11 days from the due date, 1000 × 12 × 11 / 36500 = 3.6164 → 3.62;
        // fine 2 % × 1000 = 20.00
        let late = owe(&p, &item(&[]), "2026-02-11");
        assert_eq!(
            parts(&late),
            [dec!(1000.00), dec!(20.00), dec!(3.62), dec!(0)]
        );
        // Paying 1000 on that day: fine 20.00, interest 3.62, principal 976.38 → 23.62 open;
        // Feb 11 → Apr 30 = 17 + 31 + 30 = 78 days: 23.62 × 12 × 78 / 36500 = 0.6057 → 0.61
        let r = owe(&p, &item(&[("2026-02-11", dec!(1000))]), "2026-04-30");
        assert_eq!(parts(&r), [dec!(23.62), dec!(0), dec!(0.61), dec!(0)]);
        // 400 within grace (Feb 5) pays principal only (nothing else owed yet) → 600.00;
        // fine 2 % × 600.00 = 12.00; interest Jan 31 → Feb 5 = 5 days on 1000: 1.6438 → 1.64,
        // Feb 5 → Apr 30 = 84 days on 600: 600 × 12 × 84 / 36500 = 16.5699 → 16.57; 18.21
        let partial = owe(&p, &item(&[("2026-02-05", dec!(400))]), "2026-04-30");
        assert_eq!(
            parts(&partial),
            [dec!(600.00), dec!(12.00), dec!(18.21), dec!(0)]
        );
    }

    #[test]
    fn payment_before_due_date_and_overpayment() {
        let p = yearly12("fine_percent: 2");
        // 300 on Jan 15 leaves 700.00; 700 × 12 × 89 / 36500 = 20.4822 → 20.48;
        // fine 2 % × 700 = 14.00
        let early = owe(&p, &item(&[("2026-01-15", dec!(300))]), "2026-04-30");
        assert_eq!(
            parts(&early),
            [dec!(700.00), dec!(14.00), dec!(20.48), dec!(0)]
        );
        // 1100 on Mar 2 pays fine 20.00 + interest 9.86 + principal 1000.00; 70.14 is credit.
        // The payment dated after as_of is listed but not counted.
        let i = item(&[("2026-05-02", dec!(5)), ("2026-03-02", dec!(1100))]);
        let over = owe(&p, &i, "2026-04-30");
        assert_eq!((over.total, over.credit), (dec!(0.00), dec!(70.14)));
        assert!(over.lines.iter().any(|l| l.ends_with("not counted")));
    }

    #[test]
    fn caps_bite() {
        let p = yearly12("fine_percent: 2\ninterest_cap_percent: \"1.5\"\nfine_max: 15");
        let r = owe(&p, &item(&[("2026-03-02", dec!(400))]), "2026-04-30");
        // Fine 2 % × 1000 = 20.00, capped at 15.00. Interest cap 1.5 % × 1000 = 15.00.
        // Segment 1: 9.86; payment 400 → fine 15.00, interest 9.86, principal 375.14 → 624.86
        // Segment 2: 624.86 × 12 × 59 / 36500 = 12.1206 → 12.12, cut to 15.00 − 9.86 = 5.14
        assert_eq!(parts(&r), [dec!(624.86), dec!(0), dec!(5.14), dec!(0)]);
        assert_eq!(
            (r.fine_charged, r.interest_accrued),
            (dec!(15.00), dec!(15.00))
        );
        assert!(r.fine_capped && r.interest_capped);
        assert!(r.segments[1].capped && !r.segments[0].capped);
        assert!(r
            .lines
            .iter()
            .any(|l| l.starts_with("interest capped at 15.00")));
        // Unpaid: 29.26 would accrue, the cap keeps it at 15.00.
        assert_eq!(
            owe(&p, &item(&[]), "2026-04-30").interest_outstanding,
            dec!(15.00)
        );
    }

    #[test]
    fn invalid_policy_names_the_field() {
        let cases = [
            ("rate: -1", "rate"),
            ("rate: 1001", "rate"),
            ("rate: 1\nfine_percent: 101", "fine_percent"),
            ("rate: 1\ninterest_cap_percent: -1", "interest_cap_percent"),
            ("rate: 1\nfine_max: -5", "fine_max"),
            (
                "rate: 1\nallocation: [fine, fine, interest, principal]",
                "allocation",
            ),
            (
                "rate: 1\nallocation: [fine, interest, principal]",
                "allocation",
            ),
        ];
        for (yaml, field) in cases {
            let yaml = format!("{yaml}\nper: yearly\nday_count: act_365");
            let p: InterestPolicy = serde_yaml::from_str(&yaml).unwrap();
            assert_eq!(p.validate().unwrap_err().field(), Some(field), "{yaml}");
        }
    }

    #[test]
    fn invalid_item_names_the_field() {
        let p = yearly12("");
        let with = |f: fn(&mut ItemDebtInput)| {
            let mut i = item(&[("2026-02-01", dec!(10))]);
            f(&mut i);
            i
        };
        let two_payments = item(&[("2026-02-01", dec!(1)), ("2026-02-02", dec!(-1))]);
        let cases = [
            (with(|i| i.principal = dec!(0)), 2, "principal"),
            (with(|i| i.principal = dec!(10.005)), 2, "principal"),
            (with(|i| i.costs = dec!(-1)), 2, "costs"),
            (
                with(|i| i.payments[0].amount = dec!(0)),
                2,
                "payments[0].amount",
            ),
            (two_payments, 2, "payments[1].amount"),
            (item(&[]), 29, "minor_units"),
        ];
        for (i, mu, field) in cases {
            let e = debt(&p, &i, d("2026-04-30"), mu).unwrap_err();
            assert_eq!(e.field(), Some(field), "{e}");
        }
    }

    fn plan(debt: Decimal, n: u32, kind: PlanKind, rate: Decimal) -> PlanInput {
        let first_due = d("2026-01-31");
        PlanInput {
            debt,
            installments: n,
            kind,
            monthly_rate: rate,
            first_due,
        }
    }

    #[test]
    fn price_table() {
        let s = schedule(&plan(dec!(10000.00), 12, PlanKind::Price, dec!(1)), 2).unwrap();
        // PMT = 10000 × 0.01 / (1 − 1.01^−12) = 100 / 0.1125508 = 888.4879 → 888.49
        // (number, interest = round(balance × 0.01), principal = 888.49 − interest, balance after)
        let expected = [
            (1, dec!(100.00), dec!(788.49), dec!(9211.51)), // 10000.00 × 0.01
            (2, dec!(92.12), dec!(796.37), dec!(8415.14)),  // 9211.51 × 0.01 = 92.1151
            (3, dec!(84.15), dec!(804.34), dec!(7610.80)),  // 84.1514
            (4, dec!(76.11), dec!(812.38), dec!(6798.42)),  // 76.1080
            (5, dec!(67.98), dec!(820.51), dec!(5977.91)),  // 67.9842
            (6, dec!(59.78), dec!(828.71), dec!(5149.20)),  // 59.7791
            (7, dec!(51.49), dec!(837.00), dec!(4312.20)),  // 51.4920
            (8, dec!(43.12), dec!(845.37), dec!(3466.83)),  // 43.1220
            (9, dec!(34.67), dec!(853.82), dec!(2613.01)),  // 34.6683
            (10, dec!(26.13), dec!(862.36), dec!(1750.65)), // 26.1301
            (11, dec!(17.51), dec!(870.98), dec!(879.67)),  // 17.5065
            // Last: interest 8.7967 → 8.80, principal = the whole 879.67 left (not 888.49 − 8.80
            // = 879.69, which would overpay by 0.02), amount 888.47.
            (12, dec!(8.80), dec!(879.67), dec!(0.00)),
        ];
        for (r, row) in s.iter().zip(expected) {
            assert_eq!((r.number, r.interest, r.principal, r.balance_after), row);
        }
        assert!(s[..11].iter().all(|r| r.amount == dec!(888.49)));
        assert_eq!(s[11].amount, dec!(888.47));
        // Anchored on the 31st: Jan 31 → Feb 28 → Mar 31.
        assert_eq!((s[1].due, s[2].due), (d("2026-02-28"), d("2026-03-31")));
        // 2.99 % × 360: PMT 299.0074 → 299.01 amortises 0.01 a month at first and the rounding
        // compounds past the balance: refused rather than a plan that does not close.
        let long = schedule(&plan(dec!(10000.00), 360, PlanKind::Price, dec!(2.99)), 2);
        assert!(matches!(long, Err(FinanceError::Schedule { .. })));
    }

    #[test]
    fn sac_and_no_interest_tables() {
        let s = schedule(&plan(dec!(12000.00), 12, PlanKind::Sac, dec!(1)), 2).unwrap();
        for (k, row) in (0..).zip(&s) {
            // Balance before instalment k+1 is 12000 − 1000·k; 1 % of it is 120.00 − 10.00·k
            let interest = dec!(120.00) - dec!(10.00) * Decimal::from(k);
            assert_eq!((row.principal, row.interest), (dec!(1000.00), interest));
        }
        assert_eq!(s[11].interest, dec!(10.00));
        let no_interest = |p: Decimal, n: u32| {
            let s = schedule(&plan(p, n, PlanKind::NoInterest, dec!(0)), 2).unwrap();
            s.iter().map(|r| r.amount).collect::<Vec<_>>()
        };
        // 100 / 3 = 33.333 → 33.33, 33.33, and the remainder 100 − 66.66 = 33.34
        assert_eq!(
            no_interest(dec!(100.00), 3),
            [dec!(33.33), dec!(33.33), dec!(33.34)]
        );
        // 1000 / 7 = 142.857 → 142.85 six times = 857.10; the last takes 142.90
        assert_eq!(no_interest(dec!(1000.00), 7)[6], dec!(142.90));
        // 1.00 / 40 = 0.025 truncated to 0.02 (rounding up to 0.03 would need 1.20);
        // 39 × 0.02 = 0.78, the last takes 0.22
        let tiny = no_interest(dec!(1.00), 40);
        assert_eq!((tiny[0], tiny[39]), (dec!(0.02), dec!(0.22)));
    }

    #[test]
    fn schedule_invariants_over_many_inputs() {
        let debts = [5_i64, 100, 9999, 123456, 1000000, 98765432].map(|c| Decimal::new(c, 2));
        let rates = [0_i64, 1, 50, 100, 299, 500, 1250].map(|r| Decimal::new(r, 2));
        let counts = [1, 2, 3, 7, 12, 13, 24, 60, 120, 359, 360];
        let kinds = [PlanKind::Price, PlanKind::Sac, PlanKind::NoInterest];
        let mut cases = Vec::new();
        for p in debts {
            for n in counts {
                for i in rates {
                    for kind in kinds {
                        if kind != PlanKind::NoInterest || i.is_zero() {
                            cases.push((p, n, i, kind));
                        }
                    }
                }
            }
        }
        let (mut built, mut refused) = (0, 0);
        for (p, n, i, kind) in cases {
            let case = format!("{p} over {n} at {i} % {kind:?}");
            let too_small = p < Decimal::new(n.into(), 2);
            let price = kind == PlanKind::Price && !i.is_zero();
            match schedule(&plan(p, n, kind, i), 2) {
                Err(e) if too_small => assert_eq!(e.field(), Some("debt"), "{case}"),
                // Only a Price table compounds its rounding, and it is refused only over
                // long plans or with instalments of a few cents.
                Err(FinanceError::Schedule { .. }) if price => {
                    assert!(n >= 120 || p < Decimal::from(n), "{case}");
                    refused += 1;
                }
                Err(e) => panic!("{case}: {e}"),
                Ok(s) => {
                    assert!(!too_small, "{case}");
                    check_plan(&s, p, n, price, &case);
                    built += 1;
                }
            }
        }
        assert!(
            built > 700 && refused < 50,
            "built {built}, refused {refused}"
        );
    }

    fn check_plan(s: &[Installment], debt: Decimal, n: u32, price: bool, case: &str) {
        assert_eq!(s.len(), n as usize, "{case}");
        assert_eq!(
            s.iter().map(|r| r.principal).sum::<Decimal>(),
            debt,
            "{case}"
        );
        assert!(s[s.len() - 1].balance_after.is_zero(), "{case}");
        let mut balance = debt;
        for r in s {
            balance -= r.principal;
            assert_eq!(
                (r.amount, r.balance_after),
                (r.principal + r.interest, balance),
                "{case}"
            );
            assert!(
                r.principal >= Decimal::ZERO && r.interest >= Decimal::ZERO,
                "{case}"
            );
            assert!(
                r.amount > Decimal::ZERO && r.balance_after >= Decimal::ZERO,
                "{case}"
            );
        }
        if price {
            assert!(
                s.iter().all(|r| r.number == n || r.amount == s[0].amount),
                "{case}"
            );
            assert!(
                s[s.len() - 1].amount <= s[0].amount * Decimal::TWO,
                "{case}"
            );
        }
    }

    #[test]
    fn invalid_plan_names_the_field() {
        let cases = [
            (plan(dec!(0), 3, PlanKind::Sac, dec!(1)), "debt"),
            (plan(dec!(0.02), 3, PlanKind::NoInterest, dec!(0)), "debt"),
            (plan(dec!(10.001), 3, PlanKind::Sac, dec!(1)), "debt"),
            (plan(dec!(100), 0, PlanKind::Sac, dec!(1)), "installments"),
            (plan(dec!(100), 361, PlanKind::Sac, dec!(1)), "installments"),
            (
                plan(dec!(100), 3, PlanKind::NoInterest, dec!(1)),
                "monthly_rate",
            ),
            (
                plan(dec!(100), 3, PlanKind::Price, dec!(-1)),
                "monthly_rate",
            ),
            (
                plan(dec!(100), 3, PlanKind::Price, dec!(0.000000001)),
                "monthly_rate",
            ),
        ];
        for (p, field) in cases {
            assert_eq!(schedule(&p, 2).unwrap_err().field(), Some(field), "{p:?}");
        }
        let e = schedule(&plan(dec!(100), 3, PlanKind::Sac, dec!(1)), 9).unwrap_err();
        assert_eq!(e.field(), Some("minor_units"));
    }
}
