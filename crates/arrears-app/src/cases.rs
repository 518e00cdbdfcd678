//! Working a case: notes, activities, their completion. One function per change, for
//! the API and the command line alike: the caller's reach is checked inside the same
//! transaction as the change, and the change lands with its audit record or not at all.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::json;

use super::access::{Principal, Reach};
use super::AppError;
use arrears_rules::RuleSet;
use arrears_store::{AuditLog, CaseDetail, CaseStore, ReachLookup};

/// The most text one note may carry.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// The most cases one change may touch (one transaction).
pub const MAX_CASES: usize = 1000;

/// Who changes a case: the principal the audit log records, what they reach, and the
/// name the case history shows (a local user may log work done by a collector).
pub struct Caller<'a> {
    pub principal: &'a Principal,
    pub reach: Reach,
    pub actor: &'a str,
}

impl<'a> Caller<'a> {
    /// The operating-system user of a local command: they hold the database file, so
    /// they reach everything (and resolving that needs no rules).
    pub fn local_admin(principal: &'a Principal, actor: &'a str) -> Caller<'a> {
        Caller {
            principal,
            reach: Reach::everything(principal),
            actor,
        }
    }

    pub fn new(principal: &'a Principal, rules: &RuleSet, actor: &'a str) -> Caller<'a> {
        Caller {
            principal,
            reach: Reach::of(principal, rules),
            actor,
        }
    }
}

/// The case, if the caller reaches it.
fn guarded<S: CaseStore + ReachLookup>(
    store: &S,
    caller: &Caller,
    id: i64,
) -> Result<CaseDetail, AppError> {
    caller.reach.case(store, id)?;
    Ok(store.case_detail(id)?)
}

/// One audited change of one case, recorded as `action` on `case ID` with the case as
/// it was before and after.
fn one_case<T, S: CaseStore + ReachLookup + AuditLog>(
    store: &mut S,
    caller: &Caller,
    action: &str,
    id: i64,
    change: impl FnOnce(&mut S) -> Result<T, AppError>,
) -> Result<(T, CaseDetail), AppError> {
    store.audited(
        &caller.principal.name,
        action,
        &format!("case {id}"),
        |st| {
            let before = guarded(st, caller, id)?;
            let t = change(st)?;
            let after = st.case_detail(id)?;
            Ok(((t, after.clone()), json!(before), json!(after)))
        },
    )
}

/// Adds `text` to each case, all or none: one case that cannot take it (closed,
/// unknown, out of reach) leaves every case as it was. One case is audited as
/// `case.note`, several as one `cases.note`.
pub fn add_notes<S: CaseStore + ReachLookup + AuditLog>(
    store: &mut S,
    rules: &RuleSet,
    caller: &Caller,
    ids: &[i64],
    text: &str,
    on: NaiveDate,
) -> Result<Vec<CaseDetail>, AppError> {
    if ids.is_empty() || ids.len() > MAX_CASES {
        return Err(AppError::invalid(format!(
            "case_ids: 1 to {MAX_CASES} cases"
        )));
    }
    if text.trim().is_empty() {
        return Err(AppError::invalid("text is required"));
    }
    if text.len() > MAX_NOTE_BYTES {
        return Err(AppError::invalid("text: more than 64 KiB"));
    }
    if let [id] = ids[..] {
        let ((), after) = one_case(store, caller, "case.note", id, |st| {
            Ok(st.add_note(id, on, caller.actor, text, &rules.cases)?)
        })?;
        return Ok(vec![after]);
    }
    store.audited(
        &caller.principal.name,
        "cases.note",
        &format!("cases {ids:?}"),
        |st| {
            let mut before = Vec::with_capacity(ids.len());
            let mut after = Vec::with_capacity(ids.len());
            for &id in ids {
                before.push(guarded(st, caller, id)?);
                st.add_note(id, on, caller.actor, text, &rules.cases)?;
                after.push(st.case_detail(id)?);
            }
            let (b, a) = (json!(before), json!(after));
            Ok((after, b, a))
        },
    )
}

/// Gives the case an activity from the rules' categories; returns the case and its
/// next-activity-due date.
pub fn set_activity<S: CaseStore + ReachLookup + AuditLog>(
    store: &mut S,
    rules: &RuleSet,
    caller: &Caller,
    id: i64,
    category: &str,
    subcategory: &str,
    on: NaiveDate,
) -> Result<(CaseDetail, NaiveDate), AppError> {
    let sub = rules.subcategory(category, subcategory).ok_or_else(|| {
        AppError::invalid(format!(
            "no subcategory `{category}/{subcategory}` in the rules"
        ))
    })?;
    let (nad, after) = one_case(store, caller, "case.activity", id, |st| {
        Ok(st.set_activity(id, category, sub, on, caller.actor, &rules.cases)?)
    })?;
    Ok((after, nad))
}

/// Completes the case's open activity, with the promise to pay the customer gave in
/// it, if any; returns the case and its next-activity-due date.
pub fn complete_activity<S: CaseStore + ReachLookup + AuditLog>(
    store: &mut S,
    rules: &RuleSet,
    caller: &Caller,
    id: i64,
    on: NaiveDate,
    promise: Option<(NaiveDate, Decimal)>,
) -> Result<(CaseDetail, NaiveDate), AppError> {
    if let Some((by, amount)) = promise {
        if amount <= Decimal::ZERO {
            return Err(AppError::invalid("promise_amount must be above zero"));
        }
        if by < on {
            return Err(AppError::invalid(format!(
                "promise_date {by} is before {on}"
            )));
        }
    }
    let (nad, after) = one_case(store, caller, "case.complete", id, |st| {
        Ok(st.complete_activity(id, on, caller.actor, promise, &rules.cases)?)
    })?;
    Ok((after, nad))
}

/// The most cases one assignment may move.
pub const MAX_ASSIGN: usize = 10_000;

/// Assigns the cases to collector `to` (`None`: releases them). Collectors may take
/// cases they reach and release their own; moving work between collectors is a
/// supervisor's call, to collectors of the groups they reach. Returns how many cases
/// (each counted once) were assigned.
pub fn assign<S: CaseStore + ReachLookup + AuditLog>(
    store: &mut S,
    rules: &RuleSet,
    caller: &Caller,
    ids: &[i64],
    to: Option<&str>,
    on: NaiveDate,
) -> Result<usize, AppError> {
    if ids.is_empty() {
        return Err(AppError::invalid("case_ids: at least one case"));
    }
    if ids.len() > MAX_ASSIGN {
        return Err(AppError::invalid(format!(
            "case_ids: at most {MAX_ASSIGN} per call"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    let ids: Vec<i64> = ids.iter().copied().filter(|i| seen.insert(*i)).collect();
    let who = caller.principal;
    if let Some(t) = to {
        if who.role == arrears_core::domain::Role::Collector && t != who.name {
            return Err(AppError::denied(
                "assigning cases to another collector needs the supervisor role",
            ));
        }
        if !arrears_rules::collectors_by_id(rules).contains_key(t) {
            return Err(AppError::Rule {
                kind: arrears_core::error::ErrorKind::NotFound,
                message: format!("no collector `{t}` in the rules"),
            });
        }
        if !rules
            .collector_groups(t)
            .iter()
            .any(|g| caller.reach.group(&g.name))
        {
            return Err(AppError::denied(format!(
                "{t} collects in no group {} supervises",
                who.name
            )));
        }
    }
    store.audited(
        &who.name,
        "cases.assign",
        &format!("{} case(s)", ids.len()),
        |st| {
            let mut before = Vec::with_capacity(ids.len());
            for &id in &ids {
                let d = guarded(st, caller, id)?;
                before.push(json!({"case": id, "assigned_to": d.assigned_to}));
            }
            st.assign_cases(&ids, to, on, caller.actor, &rules.cases)?;
            let after = json!({"cases": ids, "assigned_to": to, "actor": caller.actor});
            Ok((ids.len(), json!(before), after))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{run, RunMode};
    use arrears_core::domain::Role;
    use arrears_core::domain::{Batch, ItemInput};
    use arrears_core::money::Currency;
    use arrears_store::Store;

    use arrears_test_support::d;

    fn item(customer: &str, ext: &str) -> ItemInput {
        ItemInput {
            source: "erp".into(),
            external_id: ext.into(),
            company: "ACME_DE".into(),
            customer: customer.into(),
            document_no: format!("INV-{ext}"),
            document_date: d("2026-08-01"),
            due_date: d("2026-09-01"),
            original_amount: Decimal::new(50000, 2),
            open_amount: Decimal::new(50000, 2),
            currency: Currency::parse("EUR").unwrap(),
            hold: None,
            original_document: None,
        }
    }

    #[test]
    fn a_note_on_several_cases_is_all_or_nothing_and_checks_each_cases_reach() {
        let rules = arrears_test_support::shipped_rules();
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("a.db")).unwrap();
        s.ingest(&Batch {
            items: vec![item("C1", "1"), item("C2", "2")],
            ..Batch::default()
        })
        .unwrap();
        run(&mut s, &rules, d("2026-11-23"), RunMode::Full).unwrap();
        let case = |doc: &str| s.case_by_document(doc).unwrap();
        let (mine, theirs) = (case("INV-1"), case("INV-2"));
        s.assign_cases(&[mine], Some("chen"), d("2026-11-23"), "t", &rules.cases)
            .unwrap();
        s.assign_cases(&[theirs], Some("dara"), d("2026-11-23"), "t", &rules.cases)
            .unwrap();
        let chen = Principal {
            name: "chen".into(),
            role: Role::Collector,
            groups: vec![],
        };
        let caller = Caller::new(&chen, &rules, "chen");
        let notes = |s: &Store, id: i64| {
            s.case_detail(id)
                .unwrap()
                .history
                .iter()
                .filter(|e| e.kind == "note")
                .count()
        };

        let e = add_notes(
            &mut s,
            &rules,
            &caller,
            &[mine, theirs],
            "called",
            d("2026-11-23"),
        )
        .unwrap_err();
        assert_eq!(e.kind(), arrears_core::error::ErrorKind::Denied, "{e}");
        assert!(e.to_string().contains("dara"), "{e}");
        assert_eq!(notes(&s, mine), 0, "the reached case kept nothing either");

        let e = add_notes(&mut s, &rules, &caller, &[mine], " ", d("2026-11-23")).unwrap_err();
        assert_eq!(e.kind(), arrears_core::error::ErrorKind::Invalid);
        let done = add_notes(&mut s, &rules, &caller, &[mine], "called", d("2026-11-23")).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(notes(&s, mine), 1);
        let audited = s.audit_records(0, 100).unwrap();
        assert!(
            audited
                .iter()
                .any(|r| r.principal == "chen" && r.action == "case.note"),
            "{audited:?}"
        );
    }
}
