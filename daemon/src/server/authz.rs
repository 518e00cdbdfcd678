//! Authorisation: the one place that decides who may call what, on which customers.
//!
//! Two steps, both here. Before any handler runs, [`AuthLayer`] authenticates the
//! caller and checks the method's least role from [`METHODS`]; a method missing from
//! that table is refused, so a new RPC cannot be served without a rule. Inside the
//! handler's store transaction, [`Reach`] checks the customer, case, agreement or
//! dispute the request touches against the principal's assignment, so the check
//! and the change see the same state.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::Status;

use super::auth::{Auth, Principal};
use crate::config::Role;
use crate::rules::RuleSet;
use crate::store::{Owner, Store};

/// Who may call a method at all: nobody needs a token for the standard health and
/// reflection services (they carry no customer data); every other method needs at
/// least the role given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Floor {
    Public,
    Role(Role),
}

const C: Floor = Floor::Role(Role::Collector);
const S: Floor = Floor::Role(Role::Supervisor);

/// Every method the daemon serves and the least role it needs. What the role may
/// then reach (which customers, cases, groups) is decided by [`Reach`].
pub const METHODS: &[(&str, Floor)] = &[
    ("grpc.health.v1.Health/Check", Floor::Public),
    ("grpc.health.v1.Health/Watch", Floor::Public),
    (
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        Floor::Public,
    ),
    (
        "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        Floor::Public,
    ),
    ("arrears.v1.Worklists/GetWorklist", C),
    ("arrears.v1.Worklists/WatchWorklist", C),
    ("arrears.v1.Cases/GetCase", C),
    ("arrears.v1.Cases/ListCases", C),
    ("arrears.v1.Cases/AssignCases", C),
    ("arrears.v1.Cases/AddNote", C),
    ("arrears.v1.Cases/AddNotes", C),
    ("arrears.v1.Cases/SetActivity", C),
    ("arrears.v1.Cases/CompleteActivity", C),
    ("arrears.v1.Cases/SetResubmission", C),
    ("arrears.v1.Cases/GetCustomer", C),
    ("arrears.v1.Promises/CreatePromise", C),
    ("arrears.v1.Promises/ListPromises", C),
    ("arrears.v1.Promises/JudgePromises", S),
    ("arrears.v1.Disputes/OpenDispute", C),
    ("arrears.v1.Disputes/ResolveDispute", S),
    ("arrears.v1.Disputes/ListDisputes", C),
    ("arrears.v1.Disputes/DisputeAgeing", S),
    ("arrears.v1.Agreements/ProposeAgreement", C),
    ("arrears.v1.Agreements/ApproveAgreement", C),
    ("arrears.v1.Agreements/RejectAgreement", S),
    ("arrears.v1.Agreements/GetAgreement", C),
    ("arrears.v1.Agreements/ListAgreements", C),
    ("arrears.v1.Agreements/ListDocuments", C),
    ("arrears.v1.Correspondence/ListMessages", C),
    ("arrears.v1.Correspondence/ProcessOutbox", S),
    ("arrears.v1.Correspondence/SetContactPreferences", C),
    ("arrears.v1.Strategies/ListRules", C),
    ("arrears.v1.Strategies/ValidateRules", S),
    ("arrears.v1.Strategies/Simulate", S),
    ("arrears.v1.Explain/ExplainCustomer", C),
    ("arrears.v1.Admin/TriggerRun", S),
    ("arrears.v1.Admin/ReloadRules", S),
    ("arrears.v1.Admin/Health", C),
    ("arrears.v1.Statements/ImportStatement", S),
    ("arrears.v1.Statements/ListCredits", S),
    ("arrears.v1.Statements/ResolveCredit", S),
    ("arrears.v1.Connectors/ListConnectors", C),
    ("arrears.v1.Connectors/SyncConnector", S),
];

/// The floor of a request path (`/package.Service/Method`).
pub fn floor(path: &str) -> Option<Floor> {
    let m = path.strip_prefix('/')?;
    METHODS.iter().find(|(n, _)| *n == m).map(|(_, f)| *f)
}

/// Authenticates and admits a request, or answers it with the refusal.
fn admit(auth: &Auth, path: &str, headers: &http::HeaderMap) -> Result<Option<Principal>, Status> {
    match floor(path) {
        Some(Floor::Public) => Ok(None),
        Some(Floor::Role(least)) => {
            let who = auth.check(headers)?;
            if who.role < least {
                return Err(Status::permission_denied(format!(
                    "{} needs the {} role; {} is a {}",
                    path.trim_start_matches('/'),
                    least.as_str(),
                    who.name,
                    who.role.as_str()
                )));
            }
            Ok(Some(who))
        }
        None => {
            // Authenticate first, so an unknown caller learns nothing about methods.
            auth.check(headers)?;
            Err(Status::permission_denied(format!(
                "{} has no authorisation rule",
                clip(path)
            )))
        }
    }
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(120) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A tower layer over the whole gRPC router: every request passes [`admit`], and the
/// principal travels to the handler in the request's extensions.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Auth,
}

impl AuthLayer {
    pub fn new(auth: Auth) -> AuthLayer {
        AuthLayer { auth }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Auth,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        match admit(&self.auth, req.uri().path(), req.headers()) {
            Ok(who) => {
                if let Some(p) = who {
                    req.extensions_mut().insert(p);
                }
                Box::pin(self.inner.call(req))
            }
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
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

    fn refuse(&self, what: &str, o: &Owner) -> Status {
        let whose = match (&o.collector, &o.group) {
            (Some(c), Some(g)) => format!("{c}'s in group {g}"),
            (Some(c), None) => format!("{c}'s"),
            (None, Some(g)) => format!("unassigned in group {g}"),
            (None, None) => "not yet routed to a group".into(),
        };
        Status::permission_denied(format!(
            "{what} ({}) is {whose}; {} ({}) may not reach it",
            o.customer,
            self.who.name,
            self.who.role.as_str()
        ))
    }

    pub fn customer(&self, store: &Store, customer_id: i64) -> Result<(), Status> {
        if self.groups.is_none() {
            return Ok(());
        }
        let o = store.customer_owner(customer_id).map_err(super::status)?;
        if self.allows(&o) {
            Ok(())
        } else {
            Err(self.refuse(&format!("customer {customer_id}"), &o))
        }
    }

    /// The customer named by a request's `customer` field, checked.
    pub fn customer_key(&self, store: &Store, key: &str) -> Result<i64, Status> {
        let id = store.customer_id(key).map_err(super::status)?;
        self.customer(store, id)?;
        Ok(id)
    }

    pub fn case(&self, store: &Store, case_id: i64) -> Result<(), Status> {
        if self.groups.is_none() {
            return Ok(());
        }
        let o = store.case_owner(case_id).map_err(super::status)?;
        if self.allows(&o) {
            Ok(())
        } else {
            Err(self.refuse(&format!("case {case_id}"), &o))
        }
    }

    pub fn agreement(&self, store: &Store, id: i64) -> Result<(), Status> {
        let c = store.agreement_customer(id).map_err(super::status)?;
        self.customer(store, c)
            .map_err(|e| Status::permission_denied(format!("agreement {id}: {}", e.message())))
    }

    pub fn dispute(&self, store: &Store, id: i64) -> Result<(), Status> {
        let c = store.dispute_customer(id).map_err(super::status)?;
        self.customer(store, c)
            .map_err(|e| Status::permission_denied(format!("dispute {id}: {}", e.message())))
    }

    /// For listings across customers: keeps what the principal reaches, looking each
    /// customer up once.
    pub fn filter<T>(
        &self,
        store: &Store,
        rows: Vec<T>,
        customer: impl Fn(&T) -> &str,
    ) -> Result<Vec<T>, Status> {
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
                    let id = store.customer_id(key).map_err(super::status)?;
                    let ok = self.allows(&store.customer_owner(id).map_err(super::status)?);
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

    #[test]
    fn unknown_methods_are_refused_and_floors_apply() {
        assert_eq!(floor("/arrears.v1.Admin/TriggerRun"), Some(S));
        assert_eq!(floor("/arrears.v1.Admin/NoSuchThing"), None);
        assert_eq!(floor("/grpc.health.v1.Health/Check"), Some(Floor::Public));
        let names: BTreeSet<&str> = METHODS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names.len(), METHODS.len(), "a method listed twice");
    }
}
