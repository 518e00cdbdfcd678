//! Changes to a customer as a whole, for the API and the command line alike.

use chrono::NaiveDate;
use serde_json::json;

use super::cases::Caller;
use super::AppError;
use crate::store::Store;

/// Puts the customer back on the worklist on `on` (until then, the next activity
/// waits), for `reason`; `made` is the business date the resubmission was agreed on.
/// Returns the customer's id.
pub fn resubmit(
    store: &mut Store,
    caller: &Caller,
    customer: &str,
    on: NaiveDate,
    reason: &str,
    made: NaiveDate,
) -> Result<i64, AppError> {
    if customer.trim().is_empty() {
        return Err(AppError::invalid("customer is required"));
    }
    store.audited(
        &caller.principal.name,
        "customer.resubmit",
        customer,
        |st| {
            let id = caller.reach.customer_key(st, customer)?;
            st.resubmit(id, on, reason, caller.actor)?;
            let after = json!({
                "customer": id, "on": on, "reason": reason, "actor": caller.actor, "as_of": made,
            });
            Ok((id, json!(null), after))
        },
    )
}
