//! Commission on what collectors collect: who gets the credit for a payment, the
//! rates (marginal tiers, per segment), a cap and the clawback of reversed
//! payments, as `rules/commission.yaml` writes them. The settlement itself (which
//! payments, whose) is `arrears_app::reports`; the arithmetic is here, exact, with
//! one rounding per settled line.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::FinanceError;

/// Who is credited with a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributionRule {
    /// The collector who completed the last activity on one of the customer's
    /// cases within `within_days` before the payment's value date.
    LastContact,
    /// The collector the case is assigned to by hand, else the one the worklist
    /// gives the customer.
    Assigned,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attribution {
    pub rule: AttributionRule,
    /// `last_contact`: how many days before the value date a contact still counts.
    #[serde(default = "default_within")]
    pub within_days: u32,
}

fn default_within() -> u32 {
    30
}

/// From `from` (an amount collected in the period, in the payment's currency) on,
/// `rate` percent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub from: Decimal,
    pub rate: Decimal,
}

/// The `commission:` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommissionPolicy {
    pub attribution: Attribution,
    /// Marginal: each tier's rate applies to the part of the amount between its
    /// `from` and the next tier's. The first starts at 0.
    pub tiers: Vec<Tier>,
    /// Segments paid by tiers of their own (their amounts are banded apart).
    #[serde(default)]
    pub segments: BTreeMap<String, Vec<Tier>>,
    /// Most a collector earns per currency and period; none without.
    #[serde(default)]
    pub cap: Option<Decimal>,
    /// A payment whose item is open again within this many days of its value
    /// date earns nothing for the part reversed.
    #[serde(default)]
    pub clawback_days: u32,
}

/// Ten years: longer windows are a typo, and would reach past any calendar.
const MAX_DAYS: u32 = 3660;

fn err<T>(field: String, reason: impl Into<String>) -> Result<T, FinanceError> {
    Err(FinanceError::Commission {
        field,
        reason: reason.into(),
    })
}

fn check_tiers(field: &str, tiers: &[Tier]) -> Result<(), FinanceError> {
    if tiers.is_empty() {
        return err(field.into(), "needs at least one tier");
    }
    for (i, t) in tiers.iter().enumerate() {
        let at = |what: &str| format!("{field}[{i}].{what}");
        if t.rate < Decimal::ZERO || t.rate > Decimal::ONE_HUNDRED {
            return err(
                at("rate"),
                format!("a percentage from 0 to 100 (got {})", t.rate),
            );
        }
        if t.from < Decimal::ZERO || t.from > crate::max_amount() {
            return err(
                at("from"),
                format!("must be between 0 and 10^15 (got {})", t.from),
            );
        }
        if i == 0 && !t.from.is_zero() {
            return err(
                at("from"),
                format!(
                    "the first tier starts at 0 (got {}): below it nothing would be paid",
                    t.from
                ),
            );
        }
        if i > 0 && t.from <= tiers[i - 1].from {
            return err(
                at("from"),
                format!(
                    "tiers overlap: {} is not above the tier before it ({})",
                    t.from,
                    tiers[i - 1].from
                ),
            );
        }
    }
    Ok(())
}

impl CommissionPolicy {
    /// Checks tiers (from 0, rising, rates 0–100), the cap; the error names the
    /// first bad field.
    pub fn validate(&self) -> Result<(), FinanceError> {
        check_tiers("tiers", &self.tiers)?;
        for (segment, tiers) in &self.segments {
            check_tiers(&format!("segments.{segment}"), tiers)?;
        }
        for (field, days) in [
            ("clawback_days", self.clawback_days),
            ("attribution.within_days", self.attribution.within_days),
        ] {
            if days > MAX_DAYS {
                return err(
                    field.into(),
                    format!("at most {MAX_DAYS} days (got {days})"),
                );
            }
        }
        if let Some(cap) = self.cap {
            if cap < Decimal::ZERO || cap > crate::max_amount() {
                return err(
                    "cap".into(),
                    format!("must be between 0 and 10^15 (got {cap})"),
                );
            }
        }
        Ok(())
    }

    /// The tiers a customer of `segment` is paid by.
    pub fn tiers_of(&self, segment: Option<&str>) -> &[Tier] {
        segment
            .and_then(|s| self.segments.get(s))
            .map_or(&self.tiers[..], |t| &t[..])
    }
}

/// The commission on `amount` by marginal `tiers`, exact (rounded by the caller,
/// once per settled line). Nothing on an amount of 0 or less.
pub fn banded(tiers: &[Tier], amount: Decimal) -> Decimal {
    let mut total = Decimal::ZERO;
    for (i, t) in tiers.iter().enumerate() {
        if amount <= t.from {
            break;
        }
        let upper = tiers.get(i + 1).map_or(amount, |n| n.from.min(amount));
        total += (upper - t.from) * t.rate / Decimal::ONE_HUNDRED;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn tiers(list: &[(Decimal, Decimal)]) -> Vec<Tier> {
        list.iter()
            .map(|&(from, rate)| Tier { from, rate })
            .collect()
    }

    #[test]
    fn tiers_are_marginal_bands() {
        let t = tiers(&[
            (dec!(0), dec!(1)),
            (dec!(1000), dec!(2)),
            (dec!(5000), dec!(3)),
        ]);
        assert_eq!(banded(&t, dec!(0)), dec!(0));
        assert_eq!(banded(&t, dec!(500)), dec!(5));
        assert_eq!(banded(&t, dec!(1000)), dec!(10));
        // 1000 × 1 % + 2000 × 2 %
        assert_eq!(banded(&t, dec!(3000)), dec!(50));
        // 10 + 4000 × 2 % + 1000.01 × 3 %
        assert_eq!(banded(&t, dec!(6000.01)), dec!(120.0003));
    }

    #[test]
    fn a_bad_policy_names_its_field() {
        let base = |t: Vec<Tier>| CommissionPolicy {
            attribution: Attribution {
                rule: AttributionRule::Assigned,
                within_days: 30,
            },
            tiers: t,
            segments: BTreeMap::new(),
            cap: None,
            clawback_days: 0,
        };
        let msg = |p: CommissionPolicy| p.validate().unwrap_err().to_string();
        assert_eq!(
            msg(base(tiers(&[(dec!(0), dec!(1)), (dec!(1000), dec!(2)), (dec!(1000), dec!(3))]))),
            "commission: `tiers[2].from` tiers overlap: 1000 is not above the tier before it (1000)"
        );
        assert_eq!(
            msg(base(tiers(&[(dec!(0), dec!(-1))]))),
            "commission: `tiers[0].rate` a percentage from 0 to 100 (got -1)"
        );
        assert!(msg(base(tiers(&[(dec!(10), dec!(1))])))
            .starts_with("commission: `tiers[0].from` the first tier starts at 0"));
        let mut p = base(tiers(&[(dec!(0), dec!(1))]));
        p.segments.insert(
            "vip".into(),
            tiers(&[(dec!(0), dec!(1)), (dec!(0), dec!(2))]),
        );
        assert!(msg(p.clone()).starts_with("commission: `segments.vip[1].from` tiers overlap"));
        p.segments.clear();
        p.cap = Some(dec!(-5));
        assert!(msg(p).starts_with("commission: `cap`"));
    }
}
