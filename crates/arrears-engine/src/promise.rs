//! Judging a promise to pay (SAP semantics): once the promised date plus a tolerance
//! has passed, the customer's payments in the promise's currency with a value date
//! from the day the promise was made through that deadline count towards it; at
//! least the amount → kept, something → partially kept, nothing → broken.
//!
//! A payment counts once across promises: what an earlier promise took of it is not
//! there for the next one, so the caller hands in what is left of each payment and
//! records what the verdict took.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::case::add_days;
use arrears_core::domain::PromiseStatus;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromiseError {
    #[error("tolerance_days must not be negative, got {0}")]
    NegativeTolerance(i64),
}

/// Days a payment may come after the promised date and still count; never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tolerance(i64);

impl Tolerance {
    pub fn days(days: i64) -> Result<Tolerance, PromiseError> {
        if days < 0 {
            return Err(PromiseError::NegativeTolerance(days));
        }
        Ok(Tolerance(days))
    }

    pub fn get(self) -> i64 {
        self.0
    }

    /// Promises dated before this day are past their deadline on `as_of`, so a caller
    /// need only load those: as_of > promised_on + tolerance ⇔ promised_on < as_of − tolerance.
    pub fn cutoff(self, as_of: NaiveDate) -> NaiveDate {
        add_days(as_of, -self.0)
    }
}

/// What a promise says: how much, made when, due when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Promise {
    pub amount: Decimal,
    pub created_on: NaiveDate,
    pub promised_on: NaiveDate,
}

impl Promise {
    /// The value dates whose payments count, both ends included.
    pub fn window(&self, tolerance: Tolerance) -> (NaiveDate, NaiveDate) {
        (self.created_on, add_days(self.promised_on, tolerance.0))
    }
}

/// One of the customer's payments in the promise's currency, with what earlier
/// promises left of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payment {
    pub id: i64,
    pub value_date: NaiveDate,
    pub left: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: PromiseStatus,
    /// What the counted payments gave, at most the promised amount.
    pub paid: Decimal,
    /// The day the counted payments reached the amount (kept) or the last of them.
    pub paid_on: Option<NaiveDate>,
    /// (payment id, amount taken) in the order taken; the caller records these so
    /// that later promises do not count the same money.
    pub taken: Vec<(i64, Decimal)>,
    /// The last value date that counted.
    pub deadline: NaiveDate,
}

/// The verdict on `promise` on `as_of`, or `None` while its deadline has not passed.
/// Payments count in value-date order (ties in the order given); those outside the
/// promise's window or with nothing left are passed over.
pub fn judge(
    promise: &Promise,
    payments: &[Payment],
    as_of: NaiveDate,
    tolerance: Tolerance,
) -> Option<Verdict> {
    let (from, deadline) = promise.window(tolerance);
    if as_of <= deadline {
        return None;
    }
    let mut order: Vec<&Payment> = payments
        .iter()
        .filter(|p| p.value_date >= from && p.value_date <= deadline && p.left > Decimal::ZERO)
        .collect();
    order.sort_by_key(|p| p.value_date);
    let mut paid = Decimal::ZERO;
    let mut paid_on = None;
    let mut taken = Vec::new();
    for p in order {
        if paid >= promise.amount {
            break;
        }
        let take = p.left.min(promise.amount - paid);
        taken.push((p.id, take));
        paid += take;
        paid_on = Some(p.value_date);
    }
    let status = if paid >= promise.amount {
        PromiseStatus::Kept
    } else if paid > Decimal::ZERO {
        PromiseStatus::PartiallyKept
    } else {
        PromiseStatus::Broken
    };
    Some(Verdict {
        status,
        paid,
        paid_on,
        taken,
        deadline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn promise(amount: Decimal) -> Promise {
        Promise {
            amount,
            created_on: d("2026-11-01"),
            promised_on: d("2026-11-10"),
        }
    }

    fn pay(id: i64, on: &str, left: Decimal) -> Payment {
        Payment {
            id,
            value_date: d(on),
            left,
        }
    }

    fn tol(days: i64) -> Tolerance {
        Tolerance::days(days).unwrap()
    }

    #[test]
    fn a_negative_tolerance_is_refused() {
        assert_eq!(
            Tolerance::days(-1),
            Err(PromiseError::NegativeTolerance(-1))
        );
        assert!(PromiseError::NegativeTolerance(-1)
            .to_string()
            .contains("tolerance_days"));
        assert_eq!(tol(0).get(), 0);
    }

    #[test]
    fn open_until_the_day_after_promise_date_plus_tolerance() {
        let p = promise(dec!(100));
        assert_eq!(p.window(tol(3)), (d("2026-11-01"), d("2026-11-13")));
        assert_eq!(judge(&p, &[], d("2026-11-13"), tol(3)), None);
        assert!(judge(&p, &[], d("2026-11-14"), tol(3)).is_some());
        // The cutoff a loader filters on agrees with the judgement.
        assert_eq!(tol(3).cutoff(d("2026-11-14")), d("2026-11-11"));
        assert!(p.promised_on < tol(3).cutoff(d("2026-11-14")));
        assert!(p.promised_on >= tol(3).cutoff(d("2026-11-13")));
    }

    #[test]
    fn kept_when_payments_in_the_window_reach_the_amount() {
        let v = judge(
            &promise(dec!(100)),
            &[
                pay(2, "2026-11-13", dec!(40)),
                pay(1, "2026-11-05", dec!(60)),
                pay(3, "2026-11-13", dec!(500)),
            ],
            d("2026-11-14"),
            tol(3),
        )
        .unwrap();
        assert_eq!(v.status, PromiseStatus::Kept);
        assert_eq!(v.paid, dec!(100));
        assert_eq!(v.paid_on, Some(d("2026-11-13")));
        assert_eq!(v.taken, vec![(1, dec!(60)), (2, dec!(40))]);
        assert_eq!(v.deadline, d("2026-11-13"));
    }

    #[test]
    fn only_the_window_counts_and_only_what_is_needed_is_taken() {
        let v = judge(
            &promise(dec!(200)),
            &[
                pay(1, "2026-10-31", dec!(500)),
                pay(2, "2026-11-01", dec!(50)),
                pay(3, "2026-11-14", dec!(500)),
            ],
            d("2026-11-14"),
            tol(3),
        )
        .unwrap();
        assert_eq!(v.status, PromiseStatus::PartiallyKept);
        assert_eq!((v.paid, v.paid_on), (dec!(50), Some(d("2026-11-01"))));
        assert_eq!(v.taken, vec![(2, dec!(50))]);

        let v = judge(
            &promise(dec!(30)),
            &[pay(1, "2026-11-02", dec!(500))],
            d("2026-11-14"),
            tol(3),
        )
        .unwrap();
        assert_eq!(
            (v.status, v.taken),
            (PromiseStatus::Kept, vec![(1, dec!(30))])
        );
    }

    #[test]
    fn broken_when_nothing_is_left_of_the_payments() {
        let v = judge(
            &promise(dec!(80)),
            &[pay(1, "2026-11-05", dec!(0))],
            d("2026-11-14"),
            tol(3),
        )
        .unwrap();
        assert_eq!(v.status, PromiseStatus::Broken);
        assert_eq!((v.paid, v.paid_on), (dec!(0), None));
        assert!(v.taken.is_empty());
    }
}
