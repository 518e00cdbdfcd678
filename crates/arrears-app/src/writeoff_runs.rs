//! Write-offs through whole portfolio runs: a ladder's last level proposes, a person
//! approves through the use case (audited), and the runs and KPIs that follow treat
//! the item as out of collection.

use crate::access::Principal;
use crate::cases::Caller;
use crate::run::{run, settle, RunMode};
use arrears_core::domain::{Batch, ItemInput, Role};
use arrears_core::money::Currency;
use arrears_rules::LadderMode;
use arrears_store::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use arrears_test_support::d;

fn item(ext: &str, due: &str, open: Decimal) -> ItemInput {
    ItemInput {
        source: "erp".into(),
        external_id: ext.into(),
        company: "ACME_DE".into(),
        customer: "C1".into(),
        document_no: format!("INV-{ext}"),
        document_date: d("2026-08-01"),
        due_date: d(due),
        original_amount: open,
        open_amount: open,
        currency: Currency::parse("EUR").unwrap(),
        hold: None,
        original_document: None,
    }
}

fn who(name: &str, role: Role) -> Principal {
    Principal {
        name: name.into(),
        role,
        groups: vec!["*".into()],
    }
}

fn scan(as_of: chrono::NaiveDate) -> KpiScan {
    KpiScan {
        as_of,
        dso_window_days: 90,
        cei_window_days: 30,
        period_days: 30,
        soon_days: 7,
        aging_bounds: [0, 30, 60, 90, 120],
        parts: Some(1),
    }
}

#[test]
fn the_last_step_proposes_a_person_approves_and_the_item_leaves_collection() {
    let mut rules = arrears_test_support::shipped_rules();
    // Straight to the level an item's age calls for, so one run reaches the top;
    // every ladder's last level proposes.
    for l in &mut rules.ladders {
        l.mode = LadderMode::JumpToAge;
        l.levels.last_mut().unwrap().propose_write_off = Some("uncollectible".into());
    }
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("a.db")).unwrap();
    // 83 and 53 days overdue on 11-23: the first past every ladder's last level
    // (at most 60 + 3 days), the second below it (at least 45 + 2).
    s.ingest(&Batch {
        items: vec![
            item("1", "2026-09-01", dec!(1500)),
            item("2", "2026-10-01", dec!(700)),
        ],
        ..Batch::default()
    })
    .unwrap();
    run(&mut s, &rules, d("2026-11-23"), RunMode::Full).unwrap();
    settle(&mut s, &rules, d("2026-11-24"), 3).unwrap();
    let proposed = s.list_write_offs(None, None).unwrap();
    assert_eq!(proposed.len(), 1, "{proposed:?}");
    let w = &proposed[0];
    assert_eq!(
        (w.document_no.as_str(), w.status.as_str()),
        ("INV-1", "pending")
    );
    assert!(w.proposed_by.starts_with("ladder:"), "{}", w.proposed_by);
    let before = s.audit_records(0, 100).unwrap().len();

    // A collector has no write-off limits: refused, and nothing is written, not even
    // an audit record.
    let chen = who("chen", Role::Collector);
    let e = crate::writeoffs::approve(
        &mut s,
        &rules,
        &Caller::local_admin(&chen, "chen"),
        w.id,
        "",
        d("2026-11-24"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("no write-off limits"), "{e}");
    assert_eq!(s.audit_records(0, 100).unwrap().len(), before);

    // A supervisor's limit (2000 in rules/agreements.yaml) covers 1500.
    let sam = who("sam", Role::Supervisor);
    let done = crate::writeoffs::approve(
        &mut s,
        &rules,
        &Caller::local_admin(&sam, "sam"),
        w.id,
        "no assets",
        d("2026-11-24"),
    )
    .unwrap();
    assert_eq!(done.status, "written_off");
    let audit = s.audit_records(0, 100).unwrap();
    let last = audit.last().unwrap();
    assert_eq!(
        (
            last.principal.as_str(),
            last.action.as_str(),
            last.target.as_str()
        ),
        (
            "sam",
            "write_off.approve",
            format!("write-off {}", w.id).as_str()
        )
    );
    assert!(last.before.contains("\"pending\"") && last.after.contains("\"written_off\""));

    // The next run finds the case closed and keeps it so; the KPIs count only INV-2.
    run(&mut s, &rules, d("2026-11-24"), RunMode::Full).unwrap();
    assert_eq!(s.portfolio().unwrap().open_cases, 1);
    let k = s.kpi_figures(&scan(d("2026-11-24"))).unwrap();
    let receivables: Decimal = k.rows.iter().map(|r| r.receivables).sum();
    assert_eq!(receivables, dec!(700));

    // The ERP export carries it until the ERP took it.
    let sam_caller = Caller::local_admin(&sam, "sam");
    let (csv, rows) = crate::writeoffs::export(&mut s, &sam_caller, d("2026-11-25"), &[]).unwrap();
    assert_eq!(rows.len(), 1);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], crate::writeoffs::EXPORT_COLUMNS.join(","));
    assert_eq!(
        lines[1],
        format!(
            "{},erp,1,ACME_DE/C1,INV-1,1500,EUR,uncollectible,{},sam,2026-11-24,no assets,{}",
            w.id,
            w.proposed_by,
            w.case_id.unwrap()
        )
    );
    let (again, _) = crate::writeoffs::export(&mut s, &sam_caller, d("2026-11-25"), &[]).unwrap();
    assert_eq!(again, csv);
    let (after, rows) =
        crate::writeoffs::export(&mut s, &sam_caller, d("2026-11-26"), &[w.id]).unwrap();
    assert!(rows.is_empty());
    assert_eq!(after.lines().count(), 1);
    assert_eq!(
        s.write_off(w.id).unwrap().reported_on,
        Some(d("2026-11-26"))
    );
    assert_eq!(
        s.audit_records(0, 100).unwrap().last().unwrap().action,
        "write_off.reported"
    );
}
