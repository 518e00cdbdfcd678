//! Write-offs at the end of the collection process: proposed within the proposer's
//! limits (carried out at once) or beyond them (waiting for someone whose limits
//! cover it), approved or rejected, and exported for the ERP. Once, for the API and
//! the command line alike; every change is audited with the caller.

use chrono::NaiveDate;
use serde_json::json;

use super::cases::Caller;
use super::AppError;
use arrears_rules::RuleSet;
use arrears_store::{
    AuditLog, ReachLookup, WriteOffStore, WriteOffTerms, WriteOffView, WRITE_OFF_TERMS_MISSING,
};

fn terms(rules: &RuleSet) -> Result<WriteOffTerms<'_>, AppError> {
    WriteOffTerms::of(rules).ok_or_else(|| AppError::Rule {
        kind: arrears_core::error::ErrorKind::State,
        message: WRITE_OFF_TERMS_MISSING.into(),
    })
}

/// The columns of the ERP export, in order.
pub const EXPORT_COLUMNS: [&str; 13] = [
    "write_off_id",
    "source",
    "external_id",
    "customer",
    "document_no",
    "amount",
    "currency",
    "reason",
    "proposed_by",
    "approved_by",
    "written_off_on",
    "note",
    "case_id",
];

/// Proposes writing off the item of case `case_id`, with the caller's role's limits;
/// the case must be one the caller reaches.
pub fn propose<S: WriteOffStore + ReachLookup + AuditLog>(
    store: &mut S,
    rules: &RuleSet,
    caller: &Caller,
    case_id: i64,
    reason: &str,
    on: NaiveDate,
) -> Result<WriteOffView, AppError> {
    let t = terms(rules)?;
    let who = caller.principal;
    store.audited(
        &who.name,
        "write_off.propose",
        &format!("case {case_id}"),
        |st| {
            caller.reach.case(st, case_id)?;
            let w = st.propose_write_off(case_id, reason, on, &who.name, who.role, &t)?;
            let after = json!(w);
            Ok((w, json!(null), after))
        },
    )
}

/// Approves and carries out a waiting write-off, if the caller's limits cover it and
/// they did not propose it themselves.
pub fn approve<S: WriteOffStore + ReachLookup + AuditLog>(
    store: &mut S,
    rules: &RuleSet,
    caller: &Caller,
    id: i64,
    note: &str,
    on: NaiveDate,
) -> Result<WriteOffView, AppError> {
    let t = terms(rules)?;
    let who = caller.principal;
    store.audited(
        &who.name,
        "write_off.approve",
        &format!("write-off {id}"),
        |st| {
            reach(st, caller, id)?;
            let before = json!(st.write_off(id)?);
            let w = st.approve_write_off(id, &who.name, who.role, note, on, &t)?;
            let after = json!(w);
            Ok((w, before, after))
        },
    )
}

/// Rejects a waiting write-off, for `reason`; the item stays in collection.
pub fn reject<S: WriteOffStore + ReachLookup + AuditLog>(
    store: &mut S,
    caller: &Caller,
    id: i64,
    reason: &str,
    on: NaiveDate,
) -> Result<WriteOffView, AppError> {
    let who = caller.principal;
    store.audited(
        &who.name,
        "write_off.reject",
        &format!("write-off {id}"),
        |st| {
            reach(st, caller, id)?;
            let before = json!(st.write_off(id)?);
            let w = st.reject_write_off(id, &who.name, reason, on)?;
            let after = json!(w);
            Ok((w, before, after))
        },
    )
}

/// One write-off, if the caller reaches its customer.
pub fn get<S: WriteOffStore + ReachLookup>(
    store: &S,
    caller: &Caller,
    id: i64,
) -> Result<WriteOffView, AppError> {
    reach(store, caller, id)?;
    Ok(store.write_off(id)?)
}

/// Write-offs the caller reaches, newest first; of one customer (`COMPANY/CODE`) and
/// in one status when given.
pub fn list<S: WriteOffStore + ReachLookup>(
    store: &S,
    caller: &Caller,
    customer: Option<&str>,
    status: Option<&str>,
) -> Result<Vec<WriteOffView>, AppError> {
    let id = customer
        .map(|k| caller.reach.customer_key(store, k))
        .transpose()?;
    let all = store.list_write_offs(id, status)?;
    caller.reach.filter(store, all, |w| &w.customer)
}

/// The carried-out write-offs not reported to the ERP yet, as CSV
/// ([`EXPORT_COLUMNS`]), after marking `reported` (ids an earlier export returned and
/// the ERP took) reported on `on`, audited. Two steps, so that a file that could not
/// be written, or an answer lost on the way, loses nothing: the caller marks only
/// what it has safely handed over, and an export before that repeats it.
pub fn export<S: WriteOffStore + AuditLog>(
    store: &mut S,
    caller: &Caller,
    on: NaiveDate,
    reported: &[i64],
) -> Result<(String, Vec<WriteOffView>), AppError> {
    if !reported.is_empty() {
        let who = caller.principal;
        store.audited(&who.name, "write_off.reported", "erp", |st| {
            let n = st.mark_write_offs_reported(reported, on)?;
            Ok::<_, AppError>((
                (),
                json!(null),
                json!({"write_offs": reported, "marked": n, "on": on}),
            ))
        })?;
    }
    let rows = store.write_offs_to_report()?;
    Ok((csv(&rows), rows))
}

fn reach<S: WriteOffStore + ReachLookup>(
    store: &S,
    caller: &Caller,
    id: i64,
) -> Result<(), AppError> {
    let c = store.write_off_customer(id)?;
    caller
        .reach
        .customer(store, c)
        .map_err(|e| AppError::denied(format!("write-off {id}: {}", e.message())))
}

/// RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv(rows: &[WriteOffView]) -> String {
    let mut out = EXPORT_COLUMNS.join(",");
    out.push('\n');
    for w in rows {
        let line = [
            w.id.to_string(),
            w.source.clone(),
            w.external_id.clone(),
            w.customer.clone(),
            w.document_no.clone(),
            w.amount.to_string(),
            w.currency.clone(),
            w.reason.clone(),
            w.proposed_by.clone(),
            w.decided_by.clone().unwrap_or_default(),
            w.decided_on.map(|d| d.to_string()).unwrap_or_default(),
            w.decision_note.clone().unwrap_or_default(),
            w.case_id.map(|c| c.to_string()).unwrap_or_default(),
        ]
        .iter()
        .map(|f| field(f))
        .collect::<Vec<_>>()
        .join(",");
        out.push_str(&line);
        out.push('\n');
    }
    out
}
