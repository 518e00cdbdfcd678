//! Payment agreements: proposed within the proposer's limits (in force at once) or
//! beyond them (waiting for someone whose limits cover it), approved or rejected.
//! Once, for the API and the command line alike.

use chrono::NaiveDate;
use serde_json::json;

use super::cases::Caller;
use super::AppError;
use arrears_rules::RuleSet;
use arrears_store::{
    AgreementStore, AgreementView, AuditLog, Proposal, ReachLookup, Terms, TERMS_MISSING,
};

fn terms(rules: &RuleSet) -> Result<Terms<'_>, AppError> {
    Terms::of(rules).ok_or_else(|| AppError::Rule {
        kind: arrears_core::error::ErrorKind::State,
        message: TERMS_MISSING.into(),
    })
}

/// Prices the cases' items and proposes the plan, with the caller's role's limits;
/// every case must be one the caller reaches.
pub fn propose<S: AgreementStore + ReachLookup + AuditLog>(
    store: &mut S,
    rules: &RuleSet,
    caller: &Caller,
    p: &Proposal,
) -> Result<AgreementView, AppError> {
    let t = terms(rules)?;
    let who = caller.principal;
    store.audited(&who.name, "agreement.propose", "agreement", |st| {
        for &c in &p.case_ids {
            caller.reach.case(st, c)?;
        }
        let a = st.propose_agreement(p, &who.name, who.role, &t)?;
        let after = json!(a);
        Ok((a, json!(null), after))
    })
}

/// Approves a waiting agreement, if the caller's limits cover it and they did not
/// propose it themselves.
pub fn approve<S: AgreementStore + ReachLookup + AuditLog>(
    store: &mut S,
    rules: &RuleSet,
    caller: &Caller,
    id: i64,
    note: &str,
    on: NaiveDate,
) -> Result<AgreementView, AppError> {
    let t = terms(rules)?;
    let who = caller.principal;
    store.audited(
        &who.name,
        "agreement.approve",
        &format!("agreement {id}"),
        |st| {
            caller.reach.agreement(st, id)?;
            let before = json!(st.agreement(id)?);
            let a = st.approve_agreement(id, &who.name, who.role, note, on, &t)?;
            let after = json!(a);
            Ok((a, before, after))
        },
    )
}

/// Rejects a waiting agreement, for `reason`.
pub fn reject<S: AgreementStore + ReachLookup + AuditLog>(
    store: &mut S,
    caller: &Caller,
    id: i64,
    reason: &str,
    on: NaiveDate,
) -> Result<AgreementView, AppError> {
    let who = caller.principal;
    store.audited(
        &who.name,
        "agreement.reject",
        &format!("agreement {id}"),
        |st| {
            caller.reach.agreement(st, id)?;
            let before = json!(st.agreement(id)?);
            let a = st.reject_agreement(id, &who.name, reason, on)?;
            let after = json!(a);
            Ok((a, before, after))
        },
    )
}
