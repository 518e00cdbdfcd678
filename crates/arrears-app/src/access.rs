//! Who may reach which customers, cases, agreements and disputes: decided here, for
//! every use case and every front (gRPC, the CLI on its database).

use std::collections::BTreeSet;

use super::AppError;
use arrears_core::domain::Role;
use arrears_rules::RuleSet;
use arrears_store::{Owner, ReachLookup};

/// An authenticated caller: a token's principal, or the operating-system user of a
/// local command (an admin: they hold the database file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// Groups the token's config grants beyond those the rules give the principal.
    pub groups: Vec<String>,
}

/// What one principal may reach, resolved from their role, the rules' groups and
/// their token's config:
/// - a collector: customers the worklist gives them, cases assigned to them, and
///   unassigned customers and cases of their groups;
/// - a supervisor: everything in the groups they manage, collect in, or are given
///   in their token's `groups` (`"*"`: all);
/// - an admin: everything.
///
/// A customer no run has routed to a group yet is reached by admins and all-group
/// supervisors only.
#[derive(Debug, Clone)]
pub struct Reach {
    pub who: Principal,
    /// `None`: every group.
    groups: Option<BTreeSet<String>>,
}

impl Reach {
    /// An admin's reach, which needs no rules to resolve.
    pub fn everything(who: &Principal) -> Reach {
        Reach {
            who: who.clone(),
            groups: None,
        }
    }

    pub fn of(who: &Principal, rules: &RuleSet) -> Reach {
        let all = match who.role {
            Role::Admin => true,
            Role::Supervisor => who.groups.iter().any(|g| g == "*"),
            Role::Collector => false,
        };
        let groups = (!all).then(|| {
            let mut set: BTreeSet<String> = rules
                .collector_groups(&who.name)
                .iter()
                .map(|g| g.name.clone())
                .collect();
            if who.role == Role::Supervisor {
                set.extend(
                    rules
                        .groups
                        .iter()
                        .filter(|g| g.manager.as_deref() == Some(who.name.as_str()))
                        .map(|g| g.name.clone()),
                );
                set.extend(who.groups.iter().cloned());
            }
            set
        });
        Reach {
            who: who.clone(),
            groups,
        }
    }

    /// Reaches nothing at all (a supervisor of no group).
    pub fn is_empty(&self) -> bool {
        self.who.role != Role::Collector && self.groups.as_ref().is_some_and(|s| s.is_empty())
    }

    pub fn group(&self, group: &str) -> bool {
        self.groups.as_ref().is_none_or(|s| s.contains(group))
    }

    fn in_group(&self, group: Option<&str>) -> bool {
        match (&self.groups, group) {
            (None, _) => true,
            (Some(s), Some(g)) => s.contains(g),
            (Some(_), None) => false,
        }
    }

    pub fn allows(&self, o: &Owner) -> bool {
        match self.who.role {
            Role::Admin => true,
            Role::Supervisor => self.in_group(o.group.as_deref()),
            Role::Collector => {
                let me = self.who.name.as_str();
                o.collector.as_deref() == Some(me)
                    || o.assignees.iter().any(|a| a == me)
                    || (o.collector.is_none() && self.in_group(o.group.as_deref()))
            }
        }
    }

    fn refuse(&self, what: &str, o: &Owner) -> AppError {
        let whose = match (&o.collector, &o.group) {
            (Some(c), Some(g)) => format!("{c}'s in group {g}"),
            (Some(c), None) => format!("{c}'s"),
            (None, Some(g)) => format!("unassigned in group {g}"),
            (None, None) => "not yet routed to a group".into(),
        };
        AppError::denied(format!(
            "{what} ({}) is {whose}; {} ({}) may not reach it",
            o.customer,
            self.who.name,
            self.who.role.as_str()
        ))
    }

    pub fn customer<S: ReachLookup + ?Sized>(
        &self,
        store: &S,
        customer_id: i64,
    ) -> Result<(), AppError> {
        if self.groups.is_none() {
            return Ok(());
        }
        let o = store.customer_owner(customer_id)?;
        if self.allows(&o) {
            Ok(())
        } else {
            Err(self.refuse(&format!("customer {customer_id}"), &o))
        }
    }

    /// The customer named by a request's `customer` field, checked.
    pub fn customer_key<S: ReachLookup + ?Sized>(
        &self,
        store: &S,
        key: &str,
    ) -> Result<i64, AppError> {
        let id = store.customer_id(key)?;
        self.customer(store, id)?;
        Ok(id)
    }

    pub fn case<S: ReachLookup + ?Sized>(&self, store: &S, case_id: i64) -> Result<(), AppError> {
        if self.groups.is_none() {
            return Ok(());
        }
        let o = store.case_owner(case_id)?;
        if self.allows(&o) {
            Ok(())
        } else {
            Err(self.refuse(&format!("case {case_id}"), &o))
        }
    }

    pub fn agreement<S: ReachLookup + ?Sized>(&self, store: &S, id: i64) -> Result<(), AppError> {
        let c = store.agreement_customer(id)?;
        self.customer(store, c)
            .map_err(|e| AppError::denied(format!("agreement {id}: {}", e.message())))
    }

    pub fn dispute<S: ReachLookup + ?Sized>(&self, store: &S, id: i64) -> Result<(), AppError> {
        let c = store.dispute_customer(id)?;
        self.customer(store, c)
            .map_err(|e| AppError::denied(format!("dispute {id}: {}", e.message())))
    }

    /// For listings across customers: keeps what the principal reaches, looking each
    /// customer up once.
    pub fn filter<T, S: ReachLookup + ?Sized>(
        &self,
        store: &S,
        rows: Vec<T>,
        customer: impl Fn(&T) -> &str,
    ) -> Result<Vec<T>, AppError> {
        if self.groups.is_none() {
            return Ok(rows);
        }
        let mut seen: std::collections::HashMap<String, bool> = Default::default();
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let key = customer(&r);
            let ok = match seen.get(key) {
                Some(&ok) => ok,
                None => {
                    let id = store.customer_id(key)?;
                    let ok = self.allows(&store.customer_owner(id)?);
                    seen.insert(key.to_string(), ok);
                    ok
                }
            };
            if ok {
                out.push(r);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(group: Option<&str>, collector: Option<&str>, assignees: &[&str]) -> Owner {
        Owner {
            customer_id: 1,
            customer: "A/1".into(),
            group: group.map(Into::into),
            collector: collector.map(Into::into),
            assignees: assignees.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn reach(name: &str, role: Role, groups: &[&str], token_groups: &[&str]) -> Reach {
        Reach {
            who: Principal {
                name: name.into(),
                role,
                groups: token_groups.iter().map(|s| s.to_string()).collect(),
            },
            groups: (role != Role::Admin && !token_groups.contains(&"*"))
                .then(|| groups.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn collectors_reach_their_own_and_unassigned_work_of_their_groups() {
        let chen = reach("chen", Role::Collector, &["general"], &[]);
        assert!(chen.allows(&owner(Some("general"), Some("chen"), &[])));
        assert!(chen.allows(&owner(Some("general"), None, &[])));
        assert!(!chen.allows(&owner(Some("general"), Some("emma"), &[])));
        assert!(chen.allows(&owner(Some("general"), Some("emma"), &["chen"])));
        assert!(!chen.allows(&owner(Some("key_accounts"), None, &[])));
        // A case assigned to chen by hand, outside chen's groups.
        assert!(chen.allows(&owner(Some("key_accounts"), Some("chen"), &[])));
        assert!(!chen.allows(&owner(None, None, &[])));
    }

    #[test]
    fn supervisors_reach_their_groups_and_admins_everything() {
        let grace = reach("grace", Role::Supervisor, &["key_accounts"], &[]);
        assert!(grace.allows(&owner(Some("key_accounts"), Some("bob"), &[])));
        assert!(!grace.allows(&owner(Some("general"), None, &[])));
        assert!(!grace.allows(&owner(None, None, &[])));
        let back_office = reach("sam", Role::Supervisor, &[], &["*"]);
        assert!(back_office.allows(&owner(None, None, &[])));
        let root = reach("root", Role::Admin, &[], &[]);
        assert!(root.allows(&owner(Some("general"), Some("emma"), &[])));
    }
}
