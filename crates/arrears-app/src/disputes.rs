//! Disputes: opened on cases a collector works, resolved by a supervisor. Once, for
//! the API and the command line alike.

use chrono::NaiveDate;
use serde_json::json;

use super::cases::Caller;
use super::AppError;
use arrears_store::{AuditLog, CaseStore, DisputeStore, DisputeView, ReachLookup};

/// Opens one dispute over the items of case `id` and of `more` cases of the same
/// customer; every case must be one the caller reaches.
pub fn open<S: DisputeStore + CaseStore + ReachLookup + AuditLog>(
    store: &mut S,
    caller: &Caller,
    id: i64,
    more: &[i64],
    reason: &str,
    on: NaiveDate,
) -> Result<DisputeView, AppError> {
    if reason.trim().is_empty() {
        return Err(AppError::invalid("reason is required"));
    }
    store.audited(
        &caller.principal.name,
        "dispute.open",
        &format!("case {id}"),
        |st| {
            caller.reach.case(st, id)?;
            let before = st.case_detail(id)?;
            for &c in more {
                caller.reach.case(st, c)?;
            }
            let did = st.open_dispute_on(id, more, reason, on, caller.actor)?;
            let d = st.dispute(did)?;
            let after = json!(d);
            Ok((d, json!(before), after))
        },
    )
}

/// Resolves the dispute (its items are dunned again unless the resolution cleared
/// them); the dispute must be of a customer the caller reaches.
pub fn resolve<S: DisputeStore + ReachLookup + AuditLog>(
    store: &mut S,
    caller: &Caller,
    id: i64,
    resolution: &str,
    on: NaiveDate,
) -> Result<DisputeView, AppError> {
    if resolution.trim().is_empty() {
        return Err(AppError::invalid("resolution is required"));
    }
    store.audited(
        &caller.principal.name,
        "dispute.resolve",
        &format!("dispute {id}"),
        |st| {
            caller.reach.dispute(st, id)?;
            let before = st.dispute(id)?;
            let after = st.resolve_dispute(id, resolution, on, caller.actor)?;
            let a = json!(after);
            Ok((after, json!(before), a))
        },
    )
}
