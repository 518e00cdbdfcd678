//! Payment agreements through whole portfolio runs: the store's agreement operations
//! with the engine's run around them (here, since the store crate does not know the
//! run).

use crate::run::{run, RunMode};
use arrears_core::domain::Role;
use arrears_core::domain::{Batch, ItemInput};
use arrears_core::money::Currency;
use arrears_finance::PlanKind;
use arrears_store::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use arrears_test_support::d;

fn item(ext: &str, due: &str, amount: Decimal, open: Decimal) -> ItemInput {
    ItemInput {
        source: "erp".into(),
        external_id: ext.into(),
        company: "ACME_DE".into(),
        customer: "C1".into(),
        document_no: format!("INV-{ext}"),
        document_date: d("2026-08-01"),
        due_date: d(due),
        original_amount: amount,
        open_amount: open,
        currency: Currency::parse("EUR").unwrap(),
        hold: None,
        original_document: None,
    }
}

fn setup() -> (tempfile::TempDir, Store, arrears_rules::RuleSet, Vec<i64>) {
    let rules = arrears_test_support::shipped_rules();
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("a.db")).unwrap();
    s.ingest(&Batch {
        items: vec![
            item("1", "2026-09-01", dec!(1000), dec!(1000)),
            item("2", "2026-10-01", dec!(500), dec!(500)),
        ],
        ..Batch::default()
    })
    .unwrap();
    run(&mut s, &rules, d("2026-11-23"), RunMode::Full).unwrap();
    let cases = s
        .test_connection()
        .prepare("SELECT id FROM cases WHERE status = 'open' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<std::result::Result<Vec<i64>, _>>()
        .unwrap();
    assert_eq!(cases.len(), 2);
    (dir, s, rules, cases)
}

fn terms(r: &arrears_rules::RuleSet) -> Terms<'_> {
    Terms {
        interest: r.interest.as_ref().unwrap(),
        agreements: r.agreements.as_ref().unwrap(),
        rates: &r.rates,
        templates: r.templates.as_deref(),
    }
}

fn count(s: &Store, sql: &str) -> i64 {
    s.test_connection()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

/// Priced with the shipped policy (1 % a month = 12 % a year, ACT/365, 7 grace
/// days, 2 % fine), on 2026-11-23:
/// - INV-1 1000.00 due 09-01: 83 days → 1000 × 12 × 83 / 36500 = 27.2877 → 27.29;
///   fine 20.00.
/// - INV-2 500.00 due 10-01: 53 days → 500 × 12 × 53 / 36500 = 8.7123 → 8.71;
///   fine 10.00.
///
/// Total 1500 + 30 + 36.00 = 1566.00; 10 % discount = 156.60 → debt 1409.40.
#[test]
fn a_proposal_beyond_the_limits_waits_for_someone_else_with_higher_limits() {
    let (_d, mut s, rules, cases) = setup();
    let t = terms(&rules);
    let on = d("2026-11-23");
    let p = Proposal {
        case_ids: cases.clone(),
        plan: PlanKind::Price,
        installments: 12,
        first_due: d("2026-12-15"),
        discount_percent: dec!(10),
        on,
    };
    let a = s
        .propose_agreement(&p, "chen", Role::Collector, &t)
        .unwrap();
    assert_eq!(
        (a.principal, a.fine, a.interest, a.discount, a.debt),
        (
            dec!(1500),
            dec!(30),
            dec!(36.00),
            dec!(156.60),
            dec!(1409.40)
        )
    );
    assert_eq!(a.items[0].interest, dec!(27.29));
    assert_eq!(a.items[1].interest, dec!(8.71));
    assert_eq!(a.status, "pending");
    let why = a.needs_approval.clone().unwrap();
    assert!(
        why.contains("12 instalments above 6") && why.contains("discount 10%"),
        "{why}"
    );
    assert_eq!(a.schedule.len(), 12);
    assert_eq!(
        a.schedule.iter().map(|l| l.principal).sum::<Decimal>(),
        a.debt
    );
    assert_eq!(
        count(&s, "SELECT COUNT(*) FROM items WHERE source = 'agreement'"),
        0
    );

    // Not by the proposer, not by someone whose limits do not cover it.
    let e = s
        .approve_agreement(a.id, "chen", Role::Supervisor, "", on, &t)
        .unwrap_err();
    assert!(matches!(e, StoreError::Denied(_)), "{e}");
    let e = s
        .approve_agreement(a.id, "dara", Role::Collector, "", on, &t)
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::Denied(m) if m.contains("above 6")),
        "{e}"
    );
    assert!(
        s.reject_agreement(a.id, "sup", " ", on).is_err(),
        "a reason is required"
    );
    let late = s
        .approve_agreement(a.id, "sup", Role::Supervisor, "", d("2026-12-16"), &t)
        .unwrap_err();
    assert!(
        late.to_string().contains("due 2026-12-15 already"),
        "{late}"
    );
    assert_eq!(
        s.agreement(a.id).unwrap().status,
        "pending",
        "refusals change nothing"
    );

    let a = s
        .approve_agreement(
            a.id,
            "sup",
            Role::Supervisor,
            "customer lost a big client",
            on,
            &t,
        )
        .unwrap();
    assert_eq!(
        (a.status.as_str(), a.decided_by.as_deref()),
        ("active", Some("sup"))
    );
    assert_eq!(
        count(&s, "SELECT COUNT(*) FROM items WHERE status = 'agreement'"),
        2
    );
    assert_eq!(
        count(&s, "SELECT COUNT(*) FROM cases WHERE status = 'closed' AND close_reason = 'replaced by agreement 1'"),
        2
    );
    assert_eq!(
        count(
            &s,
            "SELECT COUNT(*) FROM items WHERE source = 'agreement' AND status = 'open'"
        ),
        12
    );
    assert_eq!(a.schedule[0].document_no.as_deref(), Some("AGR-1-1"));
    let docs = s.documents(None, Some(a.id)).unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].kind, "debt_recognition");
    let html = docs[0].html.as_deref().unwrap();
    assert!(
        html.contains("INV-1") && html.contains("1,409.40"),
        "{html}"
    );
    assert!(
        s.approve_agreement(a.id, "adm", Role::Admin, "", on, &t)
            .is_err(),
        "once"
    );

    // The ERP still reports the old invoices open: they stay replaced.
    s.ingest(&Batch {
        items: vec![item("1", "2026-09-01", dec!(1000), dec!(1000))],
        ..Batch::default()
    })
    .unwrap();
    assert_eq!(
        count(&s, "SELECT COUNT(*) FROM items WHERE status = 'agreement'"),
        2
    );
    run(&mut s, &rules, on, RunMode::Auto).unwrap();
    assert_eq!(
        count(&s, "SELECT COUNT(*) FROM cases c JOIN items i ON i.id = c.item_id WHERE c.status = 'open' AND i.source = 'erp'"),
        0
    );

    // Paid instalment by instalment: the last one ends it with an acquittance.
    let mut paid = Vec::new();
    for n in 1..=12 {
        let mut it = item(&format!("{}/{n}", a.id), "2026-12-15", dec!(1), dec!(0));
        it.source = "agreement".into();
        it.document_no = format!("AGR-{}-{n}", a.id);
        paid.push(it);
    }
    s.ingest(&Batch {
        items: paid,
        ..Batch::default()
    })
    .unwrap();
    let st = s
        .settle_agreements(d("2027-01-05"), t.agreements, t.templates)
        .unwrap();
    assert_eq!(st, SettleStats { broken: 0, paid: 1 });
    assert_eq!(s.agreement(a.id).unwrap().status, "paid");
    let docs = s.documents(None, Some(a.id)).unwrap();
    assert_eq!(docs[0].kind, "acquittance");
}

/// Within a supervisor's limits it is in force at once; an instalment unpaid 30
/// days after its due date breaks it and the rest falls due.
#[test]
fn within_the_limits_it_takes_effect_and_a_missed_instalment_breaks_it() {
    let (_d, mut s, rules, cases) = setup();
    let t = terms(&rules);
    let p = Proposal {
        case_ids: cases,
        plan: PlanKind::Sac,
        installments: 6,
        first_due: d("2026-12-01"),
        discount_percent: dec!(0),
        on: d("2026-11-23"),
    };
    let a = s
        .propose_agreement(&p, "sup", Role::Supervisor, &t)
        .unwrap();
    assert_eq!(
        (a.status.as_str(), a.needs_approval.as_ref()),
        ("active", None)
    );
    // SAC: equal principal (1566.00 / 6 = 261.00), interest on the balance.
    assert_eq!(a.schedule[0].principal, dec!(261.00));
    assert_eq!(
        a.schedule[0].interest,
        dec!(23.49),
        "1566.00 × 1.5 % = 23.49"
    );
    assert_eq!(
        a.schedule[5].interest,
        dec!(3.92),
        "261.00 × 1.5 % = 3.915 → 3.92"
    );

    let st = s
        .settle_agreements(d("2026-12-31"), t.agreements, t.templates)
        .unwrap();
    assert_eq!(
        st,
        SettleStats::default(),
        "30 days after 12-01 is not yet past"
    );
    let st = s
        .settle_agreements(d("2027-01-01"), t.agreements, t.templates)
        .unwrap();
    assert_eq!(st.broken, 1);
    let a = s.agreement(a.id).unwrap();
    assert_eq!(a.status, "broken");
    assert!(a
        .end_reason
        .unwrap()
        .contains("instalment 1 due 2026-12-01"));
    assert_eq!(
        count(
            &s,
            "SELECT COUNT(*) FROM items WHERE source = 'agreement' AND due_date = '2027-01-01'"
        ),
        5,
        "instalment 2 is due that day, 3..6 are moved to it; 1 keeps its date"
    );
    // 3..6 lose their unearned interest; 2 (due that day) keeps it.
    let open = |n: u32| -> String {
        s.test_connection()
            .query_row(
                "SELECT open_amount FROM items WHERE source = 'agreement' AND external_id = ?1",
                [format!("{}/{n}", a.id)],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(open(3), a.schedule[2].principal.to_string());
    assert_eq!(open(6), "261.00");
    assert_eq!(open(2), a.schedule[1].amount.to_string());
}

#[test]
fn bad_proposals_are_refused_and_write_nothing() {
    let (_d, mut s, rules, cases) = setup();
    let t = terms(&rules);
    let base = Proposal {
        case_ids: cases.clone(),
        plan: PlanKind::Price,
        installments: 3,
        first_due: d("2026-12-15"),
        discount_percent: dec!(0),
        on: d("2026-11-23"),
    };
    let bad = [
        Proposal {
            installments: 25,
            ..base.clone()
        },
        Proposal {
            installments: 0,
            ..base.clone()
        },
        Proposal {
            discount_percent: dec!(101),
            ..base.clone()
        },
        Proposal {
            first_due: d("2026-11-01"),
            ..base.clone()
        },
        Proposal {
            first_due: d("2027-03-01"),
            ..base.clone()
        },
        Proposal {
            case_ids: vec![],
            ..base.clone()
        },
        Proposal {
            case_ids: vec![cases[0], cases[0]],
            ..base.clone()
        },
        Proposal {
            case_ids: vec![9999],
            ..base.clone()
        },
    ];
    for p in &bad {
        assert!(
            s.propose_agreement(p, "sup", Role::Supervisor, &t).is_err(),
            "{p:?}"
        );
    }
    assert_eq!(count(&s, "SELECT COUNT(*) FROM agreements"), 0);
    assert_eq!(
        count(&s, "SELECT COUNT(*) FROM items WHERE status <> 'open'"),
        0
    );
}
