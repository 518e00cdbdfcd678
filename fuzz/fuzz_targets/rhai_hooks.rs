//! A Rhai script compiled as in `rhai_script`, then every hook it defines called
//! once on a small customer, under the engine's limits and each call's wall-clock
//! budget (so no script can trip libFuzzer's timeout).
#![no_main]

use std::sync::{Arc, OnceLock};

use arrears::domain::Priority;
use arrears::engine::facts::Facts;
use arrears::money::Currency;
use arrears::rules::script::{
    self, CaseView, CustomerData, CustomerView, Hook, ItemData, PaymentData, PromiseData,
};
use chrono::NaiveDate;
use libfuzzer_sys::fuzz_target;
use rhai::Engine;
use rust_decimal::Decimal;

fn setup() -> &'static (Engine, tempfile::TempDir, CustomerView, CaseView) {
    static S: OnceLock<(Engine, tempfile::TempDir, CustomerView, CaseView)> = OnceLock::new();
    S.get_or_init(|| {
        let amount = Decimal::new(123_450, 2);
        let item = ItemData {
            document_no: "INV-1".into(),
            due_date: NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
            days_overdue: 53,
            original_amount: amount,
            open_amount: amount,
            open_amount_base: amount,
            currency: Currency::parse("EUR").unwrap(),
            disputed: false,
            blocked: false,
        };
        let customer = CustomerView(Arc::new(CustomerData {
            code: "C1".into(),
            name: "Fuzz GmbH".into(),
            as_of: "2026-11-23".into(),
            facts: Facts {
                open_amount: amount,
                overdue_amount: amount,
                max_days_overdue: 53,
                open_items: 1,
                overdue_items: 1,
                currency: "EUR".into(),
                segment: "key_account".into(),
                ..Facts::default()
            },
            credit_limit: Some(Decimal::new(10_000, 0)),
            items: vec![item.clone(), item],
            promises: vec![PromiseData {
                amount,
                currency: "EUR".into(),
                date: "2026-11-01".into(),
                status: "broken".into(),
                judged_on: "2026-11-02".into(),
                paid_on: String::new(),
            }],
            payments: vec![PaymentData {
                amount,
                currency: "EUR".into(),
                date: "2026-09-01".into(),
            }],
        }));
        let case = CaseView {
            document_no: "INV-1".into(),
            nad: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            nad_passed: false,
            days_overdue: 53,
            open_amount: amount,
            open_amount_base: amount,
            currency: Currency::parse("EUR").unwrap(),
            proposed: Priority::Medium,
        };
        (
            script::build_engine(),
            tempfile::tempdir().unwrap(),
            customer,
            case,
        )
    })
}

fuzz_target!(|data: &[u8]| {
    if std::str::from_utf8(data).is_err() {
        return;
    }
    let (engine, dir, customer, case) = setup();
    std::fs::write(dir.path().join("fuzz.rhai"), data).unwrap();
    let Ok(s) = script::compile(engine, dir.path(), "fuzz.rhai") else {
        return;
    };
    for hook in &s.hooks {
        let _ = match hook {
            Hook::Segment => s.segment(engine, customer).map(drop),
            Hook::Score => s.score(engine, customer, Decimal::TEN).map(drop),
            Hook::Priority => s.priority(engine, case, customer).map(drop),
            Hook::Escalation => s.escalation(engine, customer, 2).map(drop),
        };
    }
});
