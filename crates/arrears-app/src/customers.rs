//! Changes to a customer as a whole, for the API and the command line alike.

use chrono::NaiveDate;
use serde_json::json;

use super::cases::Caller;
use super::AppError;
use arrears_store::{AuditLog, CaseStore, ContactProfile, ContactUpdate, ReachLookup};

/// Puts the customer back on the worklist on `on` (until then, the next activity
/// waits), for `reason`; `made` is the business date the resubmission was agreed on.
/// Returns the customer's id.
pub fn resubmit<S: CaseStore + ReachLookup + AuditLog>(
    store: &mut S,
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

/// A change of how the customer may be contacted; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ContactChange {
    pub email: Option<String>,
    pub phone: Option<String>,
    /// Free text above the street (c/o, building).
    pub address: Option<String>,
    pub street: Option<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    pub do_not_contact: Option<bool>,
    /// The channels the customer refused; `Some(vec![])` clears them.
    pub opt_outs: Option<Vec<String>>,
}

fn contact_json(p: &ContactProfile) -> serde_json::Value {
    json!({
        "email": p.email, "phone": p.phone, "address": p.address,
        "street": p.street, "postal_code": p.postal_code, "city": p.city,
        "do_not_contact": p.do_not_contact, "opt_outs": p.opt_outs,
    })
}

/// Changes the customer's contact data and preferences (what the compliance guard
/// checks before every contact).
pub fn set_contact<S: CaseStore + ReachLookup + AuditLog>(
    store: &mut S,
    caller: &Caller,
    customer: &str,
    change: &ContactChange,
) -> Result<ContactProfile, AppError> {
    if customer.trim().is_empty() {
        return Err(AppError::invalid("customer is required"));
    }
    for o in change.opt_outs.iter().flatten() {
        if o.parse::<arrears_rules::compliance::Channel>().is_err() {
            return Err(AppError::invalid(format!(
                "opt_outs: `{o}` is not a channel (email, sms, letter, portal, call)"
            )));
        }
    }
    store.audited(&caller.principal.name, "customer.contact", customer, |st| {
        let id = caller.reach.customer_key(st, customer)?;
        let before = contact_json(&st.contact_profile(id)?);
        let p = st.set_contact_preferences(
            id,
            &ContactUpdate {
                email: change.email.as_deref(),
                phone: change.phone.as_deref(),
                address: change.address.as_deref(),
                street: change.street.as_deref(),
                postal_code: change.postal_code.as_deref(),
                city: change.city.as_deref(),
                do_not_contact: change.do_not_contact,
                opt_outs: change.opt_outs.as_deref(),
            },
        )?;
        let after = contact_json(&p);
        Ok((p, before, after))
    })
}
