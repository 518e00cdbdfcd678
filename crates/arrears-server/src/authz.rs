//! Authorisation: the one place that decides who may call what, on which customers.
//!
//! Two steps, both here. Before any handler runs, [`AuthLayer`] authenticates the
//! caller and checks the method's least role from [`METHODS`]; a method missing from
//! that table is refused, so a new RPC cannot be served without a rule. Inside the
//! handler's store transaction, [`Reach`] checks the customer, case, agreement or
//! dispute the request touches against the principal's assignment, so the check
//! and the change see the same state.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::Status;

use super::auth::{Auth, Principal};
use crate::config::Role;
pub use arrears_app::access::Reach;

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
    // Cut to the caller's reach inside.
    ("arrears.v1.Reports/RunReport", C),
    // Collectors propose and approve within their limits (decided inside), like
    // agreements; the export marks what the ERP was given, for the whole portfolio.
    ("arrears.v1.WriteOffs/ProposeWriteOff", C),
    ("arrears.v1.WriteOffs/ApproveWriteOff", C),
    ("arrears.v1.WriteOffs/RejectWriteOff", S),
    ("arrears.v1.WriteOffs/GetWriteOff", C),
    ("arrears.v1.WriteOffs/ListWriteOffs", C),
    ("arrears.v1.WriteOffs/ExportWriteOffs", S),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn unknown_methods_are_refused_and_floors_apply() {
        assert_eq!(floor("/arrears.v1.Admin/TriggerRun"), Some(S));
        assert_eq!(floor("/arrears.v1.Admin/NoSuchThing"), None);
        assert_eq!(floor("/grpc.health.v1.Health/Check"), Some(Floor::Public));
        let names: BTreeSet<&str> = METHODS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names.len(), METHODS.len(), "a method listed twice");
    }
}
