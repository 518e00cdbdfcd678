//! Payment agreements: whether a proposal fits the policy, what it costs after the
//! discount, its instalment plan, and which of a role's limits it exceeds (beyond them
//! it waits for someone whose limits cover it).

use chrono::{Days, NaiveDate};
use rust_decimal::Decimal;

use crate::{schedule, FinanceError, Installment, PlanInput, PlanKind};
use arrears_core::domain::Role;
use arrears_core::money::{minor_digits_of, round_minor};

/// The policy's terms for every agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanTerms {
    /// Monthly interest (%) of Price and SAC plans.
    pub monthly_rate: Decimal,
    pub max_installments: u32,
    /// Smallest instalment, in the agreement's currency.
    pub min_installment: Decimal,
    /// Latest first due date, counted from the day of the proposal.
    pub first_due_within_days: i64,
}

/// What one role may grant without approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub discount_percent: Decimal,
    pub installments: u32,
    /// Largest debt in the base currency; `None` = no limit.
    pub amount: Option<Decimal>,
}

/// What a collector asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub plan: PlanKind,
    pub installments: u32,
    pub first_due: NaiveDate,
    /// Share of the updated debt waived, in percent.
    pub discount_percent: Decimal,
    /// The day of the proposal.
    pub on: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgreementError {
    #[error("installments: 1 to {max} (the policy's maximum), got {got}")]
    Installments { max: u32, got: u32 },
    #[error("discount_percent: 0 to 100, got {0}")]
    Discount(Decimal),
    #[error("first_due {first_due} must lie between {on} and {latest} ({days} days)")]
    FirstDue {
        first_due: NaiveDate,
        on: NaiveDate,
        latest: NaiveDate,
        days: i64,
    },
    #[error("instalment {number} of {amount} {currency} is below the minimum {minimum}; fewer instalments")]
    BelowMinimum {
        number: u32,
        amount: Decimal,
        currency: String,
        minimum: Decimal,
    },
    #[error(transparent)]
    Finance(#[from] FinanceError),
}

/// Refuses a request the policy cannot grant to anyone, before anything is priced.
pub fn check_request(r: &Request, t: &PlanTerms) -> Result<(), AgreementError> {
    if r.installments == 0 || r.installments > t.max_installments {
        return Err(AgreementError::Installments {
            max: t.max_installments,
            got: r.installments,
        });
    }
    if r.discount_percent < Decimal::ZERO || r.discount_percent > Decimal::ONE_HUNDRED {
        return Err(AgreementError::Discount(r.discount_percent));
    }
    let latest = plus_days(r.on, t.first_due_within_days);
    if r.first_due < r.on || r.first_due > latest {
        return Err(AgreementError::FirstDue {
            first_due: r.first_due,
            on: r.on,
            latest,
            days: t.first_due_within_days,
        });
    }
    Ok(())
}

/// A priced agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced {
    pub discount: Decimal,
    /// What the plan repays: the updated debt less the discount.
    pub debt: Decimal,
    /// The rate the plan runs at: none for a no-interest plan.
    pub monthly_rate: Decimal,
    pub schedule: Vec<Installment>,
}

/// Prices a request on `total` (principal, fine, interest and costs of the items,
/// updated to the day of the proposal) in `currency`, in its minor units; refused when
/// an instalment would fall below the policy's minimum.
pub fn price(
    total: Decimal,
    currency: &str,
    r: &Request,
    t: &PlanTerms,
) -> Result<Priced, AgreementError> {
    let discount = round_minor(total * r.discount_percent / Decimal::ONE_HUNDRED, currency);
    let debt = total - discount;
    let monthly_rate = match r.plan {
        PlanKind::NoInterest => Decimal::ZERO,
        _ => t.monthly_rate,
    };
    let schedule = schedule(
        &PlanInput {
            debt,
            installments: r.installments,
            kind: r.plan,
            monthly_rate,
            first_due: r.first_due,
        },
        minor_digits_of(currency),
    )?;
    if let Some(small) = schedule.iter().find(|i| i.amount < t.min_installment) {
        return Err(AgreementError::BelowMinimum {
            number: small.number,
            amount: small.amount,
            currency: currency.to_string(),
            minimum: t.min_installment,
        });
    }
    Ok(Priced {
        discount,
        debt,
        monthly_rate,
        schedule,
    })
}

/// Which of `role`'s limits (`None`: it has none) an agreement exceeds, in words;
/// empty = within them. `debt_base` is the debt in the base currency.
pub fn exceeded(
    role: Role,
    limits: Option<&Limits>,
    discount_percent: Decimal,
    installments: u32,
    debt_base: Decimal,
) -> Vec<String> {
    let Some(l) = limits else {
        return vec![format!(
            "the {} role has no agreement limits",
            role.as_str()
        )];
    };
    let mut out = Vec::new();
    if discount_percent > l.discount_percent {
        out.push(format!(
            "discount {discount_percent}% above {}%",
            l.discount_percent
        ));
    }
    if installments > l.installments {
        out.push(format!(
            "{installments} instalments above {}",
            l.installments
        ));
    }
    if let Some(max) = l.amount {
        if debt_base > max {
            out.push(format!("debt {debt_base} (base currency) above {max}"));
        }
    }
    out
}

/// What is left of an instalment that falls due early because its agreement broke:
/// its interest was the price of time the customer no longer gets.
pub fn due_at_once(open: Decimal, unearned_interest: Decimal) -> Decimal {
    (open - unearned_interest).max(Decimal::ZERO)
}

fn plus_days(d: NaiveDate, n: i64) -> NaiveDate {
    let days = Days::new(n.unsigned_abs());
    let moved = if n >= 0 {
        d.checked_add_days(days)
    } else {
        d.checked_sub_days(days)
    };
    moved.unwrap_or(if n >= 0 {
        NaiveDate::MAX
    } else {
        NaiveDate::MIN
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn terms() -> PlanTerms {
        PlanTerms {
            monthly_rate: dec!(1),
            max_installments: 12,
            min_installment: dec!(50),
            first_due_within_days: 30,
        }
    }

    fn request(plan: PlanKind, installments: u32, discount: Decimal) -> Request {
        Request {
            plan,
            installments,
            first_due: d("2026-11-15"),
            discount_percent: discount,
            on: d("2026-11-01"),
        }
    }

    #[test]
    fn requests_outside_the_policy_are_refused_with_the_reason() {
        let t = terms();
        let ok = request(PlanKind::Price, 12, dec!(10));
        assert_eq!(check_request(&ok, &t), Ok(()));
        let e = check_request(
            &Request {
                installments: 13,
                ..ok
            },
            &t,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "installments: 1 to 12 (the policy's maximum), got 13"
        );
        assert!(matches!(
            check_request(
                &Request {
                    installments: 0,
                    ..ok
                },
                &t
            ),
            Err(AgreementError::Installments { got: 0, .. })
        ));
        for bad in [dec!(-1), dec!(100.01)] {
            assert_eq!(
                check_request(
                    &Request {
                        discount_percent: bad,
                        ..ok
                    },
                    &t
                ),
                Err(AgreementError::Discount(bad))
            );
        }
        assert_eq!(
            check_request(
                &Request {
                    first_due: d("2026-12-01"),
                    ..ok
                },
                &t
            ),
            Ok(()),
            "the last day of the window is allowed"
        );
        for bad in ["2026-10-31", "2026-12-02"] {
            let e = check_request(
                &Request {
                    first_due: d(bad),
                    ..ok
                },
                &t,
            )
            .unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("first_due {bad} must lie between 2026-11-01 and 2026-12-01 (30 days)")
            );
        }
    }

    #[test]
    fn the_discount_rounds_to_the_currency_and_the_plan_repays_the_rest() {
        let p = price(
            dec!(1000.05),
            "EUR",
            &request(PlanKind::NoInterest, 3, dec!(10)),
            &terms(),
        )
        .unwrap();
        assert_eq!(p.discount, dec!(100.01));
        assert_eq!(p.debt, dec!(900.04));
        assert_eq!(
            p.monthly_rate,
            dec!(0),
            "a no-interest plan ignores the policy rate"
        );
        assert_eq!(p.schedule.len(), 3);
        assert_eq!(
            p.schedule.iter().map(|i| i.amount).sum::<Decimal>(),
            dec!(900.04)
        );

        let p = price(
            dec!(100005),
            "JPY",
            &request(PlanKind::Price, 2, dec!(10)),
            &terms(),
        )
        .unwrap();
        assert_eq!((p.discount, p.debt), (dec!(10001), dec!(90004)));
        assert_eq!(p.monthly_rate, dec!(1));
        assert!(p.schedule.iter().all(|i| i.amount.scale() == 0));

        let p = price(
            dec!(1000),
            "KWD",
            &request(PlanKind::Sac, 3, dec!(0.0125)),
            &terms(),
        )
        .unwrap();
        assert_eq!(p.discount, dec!(0.125));
        assert!(p.schedule.iter().all(|i| i.amount.scale() == 3));
    }

    #[test]
    fn an_instalment_below_the_minimum_refuses_the_plan() {
        let e = price(
            dec!(120),
            "EUR",
            &request(PlanKind::NoInterest, 3, dec!(0)),
            &terms(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "instalment 1 of 40.00 EUR is below the minimum 50; fewer instalments"
        );
        assert!(price(
            dec!(120),
            "EUR",
            &request(PlanKind::NoInterest, 2, dec!(0)),
            &terms()
        )
        .is_ok());
    }

    #[test]
    fn limits_name_everything_a_role_may_not_grant() {
        let l = Limits {
            discount_percent: dec!(5),
            installments: 6,
            amount: Some(dec!(10000)),
        };
        assert!(exceeded(Role::Collector, Some(&l), dec!(5), 6, dec!(10000)).is_empty());
        assert_eq!(
            exceeded(Role::Collector, Some(&l), dec!(7.5), 8, dec!(12000)),
            vec![
                "discount 7.5% above 5%",
                "8 instalments above 6",
                "debt 12000 (base currency) above 10000"
            ]
        );
        let unlimited = Limits { amount: None, ..l };
        assert!(exceeded(Role::Collector, Some(&unlimited), dec!(0), 1, dec!(1e9)).is_empty());
        assert_eq!(
            exceeded(Role::Collector, None, dec!(0), 1, dec!(1)),
            vec![format!(
                "the {} role has no agreement limits",
                Role::Collector.as_str()
            )]
        );
    }

    #[test]
    fn an_instalment_due_early_loses_its_interest_but_never_goes_negative() {
        assert_eq!(due_at_once(dec!(105), dec!(5)), dec!(100));
        assert_eq!(due_at_once(dec!(3), dec!(5)), dec!(0));
    }
}
