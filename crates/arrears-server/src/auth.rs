//! Bearer tokens → principal and role.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use tonic::codegen::http::HeaderMap;
use tonic::{Request, Status};

use crate::config::{AuthConfig, Role};

pub use arrears_app::access::Principal;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("auth token of {principal}: {message}")]
    Token { principal: String, message: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let who: Vec<&str> = self.by_digest.values().map(|p| p.name.as_str()).collect();
        f.debug_struct("Auth")
            .field("principals", &who)
            .field("open", &self.open)
            .finish()
    }
}

/// Tokens are kept as SHA-256 digests, and a memory dump does not show them.
///
/// The lookup's timing (SipHash bucket, then a byte comparison that stops at the first
/// difference) depends on the digest of the presented token, which its sender cannot
/// steer byte by byte: learning that SHA-256(guess) shares a prefix with a real
/// token's digest says nothing about the token. A constant-time comparison would buy
/// nothing here, so the O(1) map stays.
#[derive(Clone)]
pub struct Auth {
    by_digest: HashMap<[u8; 32], Principal>,
    /// No tokens configured: every caller is the local admin (loopback only).
    open: bool,
}

/// A token file others can read is a leaked token: refused, with the fix in the message.
fn read_token_file(path: &std::path::Path) -> Result<String, String> {
    arrears_secret::read_owner_only(path)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Auth {
    pub fn from_config(cfg: &AuthConfig) -> Result<Auth, AuthError> {
        let mut by_digest = HashMap::new();
        for t in &cfg.tokens {
            let err = |message: String| AuthError::Token {
                principal: t.principal.clone(),
                message,
            };
            let secret = match (&t.token_env, &t.token_file) {
                (Some(var), None) => std::env::var(var)
                    .map_err(|_| err(format!("environment variable {var} is not set")))?,
                (None, Some(path)) => read_token_file(path).map_err(err)?,
                _ => return Err(err("give exactly one of token_env and token_file".into())),
            };
            if secret.len() < 16 {
                return Err(err("the token must have at least 16 characters".into()));
            }
            if !t.groups.is_empty() && t.role != Role::Supervisor {
                return Err(err(format!(
                    "`groups` is for supervisors; a {} reaches what the rules give it",
                    t.role.as_str()
                )));
            }
            let p = Principal {
                name: t.principal.clone(),
                role: t.role,
                groups: t.groups.clone(),
            };
            if by_digest.insert(digest(&secret), p).is_some() {
                return Err(err("the same token is given to two principals".into()));
            }
        }
        Ok(Auth {
            open: by_digest.is_empty(),
            by_digest,
        })
    }

    pub fn principals(&self) -> impl Iterator<Item = &Principal> {
        self.by_digest.values()
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<Principal, Status> {
        if self.open {
            return Ok(Principal {
                name: "local".into(),
                role: Role::Admin,
                groups: Vec::new(),
            });
        }
        let Some(v) = headers.get("authorization") else {
            return Err(Status::unauthenticated(
                "missing `authorization: Bearer <token>` metadata",
            ));
        };
        let v = v
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization metadata is not text"))?;
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
        self.by_digest
            .get(&digest(token.trim()))
            .cloned()
            .ok_or_else(|| Status::unauthenticated("unknown token"))
    }
}

pub fn principal<T>(req: &Request<T>) -> Result<Principal, Status> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::internal("request reached a service without authentication"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenConfig;

    #[test]
    fn tokens_map_to_principals_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "alice-secret-token-0001\n").unwrap();
        let cfg = AuthConfig {
            tokens: vec![TokenConfig {
                principal: "alice".into(),
                role: Role::Collector,
                groups: vec![],
                token_env: None,
                token_file: Some(f.clone()),
            }],
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = Auth::from_config(&cfg).err().unwrap().to_string();
            assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let auth = Auth::from_config(&cfg).unwrap();
        assert!(!auth.is_open());
        let mut md = HeaderMap::new();
        assert_eq!(
            auth.check(&md).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        md.insert(
            "authorization",
            "Bearer wrong-token-wrong-token".parse().unwrap(),
        );
        assert_eq!(
            auth.check(&md).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        md.insert(
            "authorization",
            "Bearer alice-secret-token-0001".parse().unwrap(),
        );
        let p = auth.check(&md).unwrap();
        assert_eq!(p.name, "alice");
        assert_eq!(p.role, Role::Collector);

        let mut grouped = cfg.clone();
        grouped.tokens[0].groups = vec!["general".into()];
        let e = Auth::from_config(&grouped).unwrap_err().to_string();
        assert!(e.contains("`groups` is for supervisors"), "{e}");

        let short = AuthConfig {
            tokens: vec![TokenConfig {
                principal: "x".into(),
                role: Role::Admin,
                groups: vec![],
                token_env: Some("ARREARS_TEST_SURELY_UNSET_VAR".into()),
                token_file: None,
            }],
        };
        assert!(Auth::from_config(&short)
            .unwrap_err()
            .to_string()
            .contains("not set"));
    }
}
