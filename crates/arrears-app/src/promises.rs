//! Promises to pay, for the API and the command line alike.

use serde_json::json;

use super::cases::Caller;
use super::AppError;
use arrears_store::{AuditLog, NewPromise, PromiseStore, PromiseView, ReachLookup};

/// Records a promise on the items of one or more cases of one customer; every case
/// must be one the caller reaches. The promise names its principal as who took it.
pub fn create<S: PromiseStore + ReachLookup + AuditLog>(
    store: &mut S,
    caller: &Caller,
    new: &NewPromise,
) -> Result<PromiseView, AppError> {
    let first = *new
        .case_ids
        .first()
        .ok_or_else(|| AppError::invalid("case_ids: a promise needs at least one case"))?;
    store.audited(
        &caller.principal.name,
        "promise.create",
        &format!("case {first}"),
        |st| {
            for &c in &new.case_ids {
                caller.reach.case(st, c)?;
            }
            let p = st.create_promise(new, &caller.principal.name)?;
            let after = json!(p);
            Ok((p, json!(null), after))
        },
    )
}
