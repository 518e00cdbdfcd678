//! Property tests of the money path: every amount within the bound survives parse →
//! store → load → evaluate → print unchanged, every amount beyond it is refused at the
//! door, and interest and instalment plans stay exact in currencies with 0, 2 and 3
//! minor digits.

use arrears::domain::{Batch, ItemInput};
use arrears::finance::{self, DayCount, InterestPolicy, PlanInput, PlanKind, RatePeriod};
use arrears::money::{check_amount, parse_amount, Currency, MAX_AMOUNT};
use arrears::store::{Scope, Store};
use chrono::NaiveDate;
use proptest::prelude::*;
use rust_decimal::Decimal;

const CURRENCIES: [&str; 3] = ["JPY", "EUR", "KWD"];

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// An amount of `currency` within the bound: any number of whole units up to the bound
/// and any number of minor units.
fn amount_in(digits: u32) -> impl Strategy<Value = Decimal> {
    let scale = 10i64.pow(digits);
    let max = i64::try_from(MAX_AMOUNT.mantissa()).unwrap() * scale + (scale - 1);
    // Small amounts are the common case; the edges of the bound matter as much.
    prop_oneof![0..1_000_000i64, 0..=max, (max - 1000)..=max]
        .prop_map(move |m| Decimal::new(m, digits).min(MAX_AMOUNT))
}

fn item(ext: String, amount: Decimal, currency: Currency) -> ItemInput {
    ItemInput {
        source: "prop".into(),
        external_id: ext.clone(),
        company: "ACME_DE".into(),
        customer: format!("C-{ext}"),
        document_no: format!("INV-{ext}"),
        document_date: d("2026-09-01"),
        due_date: d("2026-10-01"),
        original_amount: amount,
        open_amount: amount,
        currency,
        hold: None,
        original_document: None,
    }
}

fn csv_row(ext: &str, amount: &str, currency: &str) -> String {
    format!(
        "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,currency\n\
         item,{ext},ACME_DE,C1,Alpha,INV-{ext},2026-09-01,2026-10-01,{amount},{currency}\n"
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn amounts_within_the_bound_survive_the_whole_path(
        (k, amount) in (0usize..3).prop_flat_map(|k| amount_in([0, 2, 3][k]).prop_map(move |a| (k, a))),
    ) {
        let currency = Currency::parse(CURRENCIES[k]).unwrap();
        let text = amount.to_string();
        // parse: the CSV importer and the API read amounts like this.
        prop_assert_eq!(parse_amount(&text).unwrap(), amount);
        prop_assert!(check_amount(amount, currency).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("items.csv");
        std::fs::write(&file, csv_row("x", &text, currency.as_str())).unwrap();
        let parsed = arrears::import::parse_csv(&file, "csv").unwrap();
        prop_assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        prop_assert_eq!(parsed.batch.items[0].open_amount, amount);
        // store → load
        let mut store = Store::open(&dir.path().join("a.db")).unwrap();
        store.ingest(&Batch { items: vec![item("x".into(), amount, currency)], ..Batch::default() }).unwrap();
        let id = store.customer_id("ACME_DE/C-x").unwrap();
        let input = store.load_run_input(Scope::One(id)).unwrap();
        prop_assert_eq!(input[0].items[0].open_amount, amount);
        prop_assert_eq!(input[0].items[0].original_amount, amount);
        // evaluate: in a rule set whose base is the item's currency, the facts carry the
        // amount exactly (a conversion would multiply by a rate).
        let rules = rules_based_in(currency);
        let ev = arrears::engine::evaluate::evaluate(&rules, d("2026-11-23"), &input[0], false).unwrap();
        prop_assert_eq!(ev.facts.open_amount, amount);
        prop_assert_eq!(ev.facts.overdue_amount, amount);
        // print: what the CLI and letters show reads back as the same amount.
        let shown = arrears::money::Money::new(amount, currency).to_string();
        let (num, cur) = shown.split_once(' ').unwrap();
        prop_assert_eq!(parse_amount(num).unwrap(), amount);
        prop_assert_eq!(cur, currency.as_str());
    }

    #[test]
    fn amounts_beyond_the_bound_or_the_minor_units_are_refused(
        k in 0usize..3,
        over in 1i64..i64::MAX,
        extra_digit in 1u32..10,
    ) {
        let currency = Currency::parse(CURRENCIES[k]).unwrap();
        let digits = currency.minor_digits();
        let beyond = MAX_AMOUNT + Decimal::new(over, 0) / Decimal::from(1_000_000_000i64) + Decimal::new(1, 0);
        prop_assert!(check_amount(beyond, currency).is_err());
        // One digit more than the currency has.
        let precise = Decimal::new(i64::from(extra_digit), digits + 1);
        prop_assert!(check_amount(precise, currency).is_err());
        let dir = tempfile::tempdir().unwrap();
        for (n, bad) in [beyond, precise].iter().enumerate() {
            let file = dir.path().join(format!("bad{n}.csv"));
            std::fs::write(&file, csv_row("x", &bad.to_string(), currency.as_str())).unwrap();
            let parsed = arrears::import::parse_csv(&file, "csv").unwrap();
            prop_assert!(parsed.batch.items.is_empty());
            prop_assert_eq!(parsed.errors.len(), 1);
            prop_assert_eq!(parsed.errors[0].line, 2);
            prop_assert_eq!(parsed.errors[0].column.as_deref(), Some("amount"));
            let mut store = Store::open(&dir.path().join("a.db")).unwrap();
            let refused = store.ingest(&Batch { items: vec![item("x".into(), *bad, currency)], ..Batch::default() });
            prop_assert!(refused.is_err());
        }
    }

    #[test]
    fn instalments_always_sum_exactly_in_minor_units(
        k in 0usize..3,
        units in 1i64..1_000_000_000,
        n in 1u32..=60,
        kind in prop_oneof![Just(PlanKind::Price), Just(PlanKind::Sac), Just(PlanKind::NoInterest)],
        rate_bp in 0i64..1000,
        first_day in 0u32..365,
    ) {
        let digits = [0u32, 2, 3][k];
        let debt = Decimal::new(units, digits);
        let monthly_rate = if kind == PlanKind::NoInterest { Decimal::ZERO } else { Decimal::new(rate_bp, 2) };
        let plan = PlanInput {
            debt,
            installments: n,
            kind,
            monthly_rate,
            first_due: d("2027-01-01") + chrono::Days::new(first_day.into()),
        };
        match finance::schedule(&plan, digits) {
            Ok(lines) => {
                prop_assert_eq!(lines.len(), n as usize);
                let principal: Decimal = lines.iter().map(|l| l.principal).sum();
                prop_assert_eq!(principal, debt, "principal repays the debt exactly");
                prop_assert!(lines.last().unwrap().balance_after.is_zero());
                for l in &lines {
                    prop_assert_eq!(l.amount, l.principal + l.interest);
                    prop_assert!(l.principal >= Decimal::ZERO && l.interest >= Decimal::ZERO);
                    for v in [l.principal, l.interest, l.amount] {
                        prop_assert!(v.normalize().scale() <= digits, "{} has more than {} decimals", v, digits);
                    }
                }
            }
            // Too little debt for n instalments of one minor unit, or a Price table whose
            // rounding cannot keep equal instalments: refused with a reason, not wrong.
            Err(e) => prop_assert!(
                debt < Decimal::new(i64::from(n), digits) || kind == PlanKind::Price,
                "{}: {:?}", e, plan
            ),
        }
    }

    #[test]
    fn interest_after_partial_payments_stays_exact(
        k in 0usize..3,
        units in 1i64..10_000_000_000,
        paid_parts in proptest::collection::vec((1u32..400, 1u32..100), 0..4),
        rate in 0i64..3000,
        per in prop_oneof![Just(RatePeriod::Yearly), Just(RatePeriod::Monthly)],
        day_count in prop_oneof![Just(DayCount::Act365), Just(DayCount::Act360), Just(DayCount::Thirty360)],
        fine in 0i64..1000,
        grace in 0u32..30,
    ) {
        let digits = [0u32, 2, 3][k];
        let principal = Decimal::new(units, digits);
        let policy = InterestPolicy {
            rate: Decimal::new(rate, 2),
            per,
            day_count,
            grace_days: grace,
            fine_percent: Decimal::new(fine, 2),
            interest_cap_percent: None,
            fine_max: None,
            allocation: vec![
                finance::Component::Costs,
                finance::Component::Fine,
                finance::Component::Interest,
                finance::Component::Principal,
            ],
        };
        let due = d("2026-01-31");
        // Payments of a share of the principal, each in whole minor units.
        let payments: Vec<finance::Payment> = paid_parts
            .iter()
            .map(|(day, pct)| finance::Payment {
                date: due + chrono::Days::new((*day).into()),
                amount: (principal * Decimal::new(i64::from(*pct), 2) / Decimal::from(4))
                    .round_dp(digits)
                    .max(Decimal::new(1, digits)),
            })
            .collect();
        let item = finance::ItemDebtInput { principal, due, costs: Decimal::ZERO, payments: payments.clone() };
        let debt = finance::debt(&policy, &item, d("2027-06-30"), digits).unwrap();
        let parts = debt.principal_outstanding + debt.fine_outstanding + debt.interest_outstanding + debt.costs_outstanding;
        prop_assert_eq!(debt.total, parts);
        for v in [debt.total, debt.interest_accrued, debt.fine_charged, debt.credit] {
            prop_assert!(v.normalize().scale() <= digits, "{} has more than {} decimals", v, digits);
            prop_assert!(v >= Decimal::ZERO);
        }
        let segments: Decimal = debt.segments.iter().map(|s| s.amount).sum();
        prop_assert_eq!(segments, debt.interest_accrued, "interest is the sum of its rounded segments");
        // Nothing is lost: what was owed = what is owed now + what was paid − any credit.
        let paid: Decimal = payments.iter().map(|p| p.amount).sum();
        prop_assert_eq!(
            principal + debt.fine_charged + debt.interest_accrued,
            debt.total + paid - debt.credit
        );
    }
}

/// The shipped rules with the base currency switched to `currency`.
fn rules_based_in(currency: Currency) -> arrears::rules::RuleSet {
    let mut rules = arrears::rules::load(&arrears_test_support::repo_root().join("rules")).unwrap();
    rules.rates.base = currency;
    rules
}
