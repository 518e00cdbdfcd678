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

/// The use case against a store that is not SQLite: proof that it needs nothing but
/// the traits, and a check of what it decides (reach, audit naming) without a
/// database.
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrears_core::domain::{PromiseStatus, Role};
    use arrears_core::error::ErrorKind;
    use arrears_store::{AuditRecord, AuditVerdict, JudgeStats, Owner, StoreError};
    use arrears_test_support::d;
    use chrono::NaiveDate;
    use rust_decimal::Decimal;

    use super::*;
    use crate::access::Principal;

    /// Cases and their owners, the promises recorded and who took them, and the
    /// audit entries as (principal, action, target).
    #[derive(Clone, Default)]
    struct Memory {
        cases: BTreeMap<i64, Owner>,
        promises: Vec<(PromiseView, String)>,
        audit: Vec<(String, String, String)>,
    }

    fn missing(what: String) -> StoreError {
        StoreError::NotFound(what)
    }

    impl ReachLookup for Memory {
        fn customer_id(&self, key: &str) -> Result<i64, StoreError> {
            Err(missing(format!("customer {key}")))
        }
        fn customer_owner(&self, customer_id: i64) -> Result<Owner, StoreError> {
            self.cases
                .values()
                .find(|o| o.customer_id == customer_id)
                .cloned()
                .ok_or_else(|| missing(format!("customer {customer_id}")))
        }
        fn case_owner(&self, case_id: i64) -> Result<Owner, StoreError> {
            self.cases
                .get(&case_id)
                .cloned()
                .ok_or_else(|| missing(format!("case {case_id}")))
        }
        fn agreement_customer(&self, id: i64) -> Result<i64, StoreError> {
            Err(missing(format!("agreement {id}")))
        }
        fn dispute_customer(&self, id: i64) -> Result<i64, StoreError> {
            Err(missing(format!("dispute {id}")))
        }
    }

    impl PromiseStore for Memory {
        fn create_promise(
            &mut self,
            p: &NewPromise,
            actor: &str,
        ) -> Result<PromiseView, StoreError> {
            let owner = self.case_owner(p.case_ids[0])?;
            let view = PromiseView {
                id: self.promises.len() as i64 + 1,
                customer: owner.customer,
                case_id: Some(p.case_ids[0]),
                amount: p.amount,
                currency: "EUR".into(),
                promised_on: p.promised_on,
                created_on: p.on,
                status: PromiseStatus::Open,
                judged_on: None,
                channel: p.channel.clone(),
                contact: p.contact.clone(),
                documents: vec![],
                paid: None,
                paid_on: None,
            };
            self.promises.push((view.clone(), actor.to_string()));
            Ok(view)
        }
        fn judge_promises(&mut self, _: NaiveDate, _: i64) -> Result<JudgeStats, StoreError> {
            unreachable!("creating a promise judges none")
        }
    }

    impl AuditLog for Memory {
        /// The transaction is a copy taken before `f`, put back when it fails.
        fn audited<T, E: From<StoreError>>(
            &mut self,
            principal: &str,
            action: &str,
            target: &str,
            f: impl FnOnce(&mut Self) -> Result<(T, serde_json::Value, serde_json::Value), E>,
        ) -> Result<T, E> {
            let before = self.clone();
            match f(self) {
                Ok((t, _, _)) => {
                    self.audit
                        .push((principal.into(), action.into(), target.into()));
                    Ok(t)
                }
                Err(e) => {
                    *self = before;
                    Err(e)
                }
            }
        }
        fn audit_records(&self, _: i64, _: usize) -> Result<Vec<AuditRecord>, StoreError> {
            unreachable!("creating a promise reads no audit records")
        }
        fn verify_audit(&self, _: Option<&std::path::Path>) -> Result<AuditVerdict, StoreError> {
            unreachable!("creating a promise verifies nothing")
        }
    }

    fn owned_by(customer_id: i64, collector: &str) -> Owner {
        Owner {
            customer_id,
            customer: format!("ACME_DE/C{customer_id}"),
            group: Some("general".into()),
            collector: Some(collector.into()),
            assignees: vec![],
        }
    }

    fn promise(case_ids: Vec<i64>) -> NewPromise {
        NewPromise {
            case_ids,
            amount: Decimal::new(10000, 2),
            promised_on: d("2026-12-01"),
            on: d("2026-11-23"),
            channel: Some("call".into()),
            contact: None,
        }
    }

    #[test]
    fn a_promise_needs_only_the_store_traits_and_every_case_in_reach() {
        let rules = arrears_test_support::shipped_rules();
        let chen = Principal {
            name: "chen".into(),
            role: Role::Collector,
            groups: vec![],
        };
        let caller = Caller::new(&chen, &rules, "chen");
        let mut store = Memory::default();
        store.cases.insert(1, owned_by(1, "chen"));
        store.cases.insert(2, owned_by(1, "dara"));

        let e = create(&mut store, &caller, &promise(vec![])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");

        // Case 2 is dara's: the whole promise is refused and nothing is audited.
        let e = create(&mut store, &caller, &promise(vec![1, 2])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Denied, "{e}");
        assert!(e.to_string().contains("dara"), "{e}");
        assert!(store.promises.is_empty() && store.audit.is_empty());

        let p = create(&mut store, &caller, &promise(vec![1])).unwrap();
        assert_eq!(p.customer, "ACME_DE/C1");
        assert_eq!(store.promises, vec![(p, "chen".to_string())]);
        assert_eq!(
            store.audit,
            vec![("chen".into(), "promise.create".into(), "case 1".into())]
        );
    }
}
