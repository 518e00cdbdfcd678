//! The use cases: each mutation written once, checked against the caller's reach and
//! audited, and called by every front — the gRPC handlers and the command line on its
//! database — so the two cannot drift apart. Imports, the portfolio run and the outbox
//! passes are orchestrated here too: the store stores, the engine decides, this crate
//! puts them in order.

pub mod access;
pub mod agreements;
pub mod cases;
pub mod correspondence;
pub mod customers;
pub mod disputes;
pub mod fixtures;
pub mod forecast;
pub mod promises;
pub mod reports;
pub mod run;
pub mod simulate;
pub mod writeoffs;

#[cfg(test)]
mod agreement_runs;
#[cfg(test)]
mod writeoff_runs;

use arrears_core::error::ErrorKind;

use arrears_store::StoreError;

/// A use case's failure: its kind decides the API status and the CLI's wording.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// From the store, said as the store says it (the CLI's wording), mapped by kind
    /// for the API.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Decided here: a refusal, a bad argument.
    #[error("{message}")]
    Rule { kind: ErrorKind, message: String },
}

impl AppError {
    pub fn denied(message: impl Into<String>) -> AppError {
        AppError::Rule {
            kind: ErrorKind::Denied,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> AppError {
        AppError::Rule {
            kind: ErrorKind::Invalid,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            AppError::Store(e) => e.kind(),
            AppError::Rule { kind, .. } => *kind,
        }
    }

    /// The message without the store's prefixes, as the API returns it.
    pub fn message(&self) -> String {
        match self {
            AppError::Store(StoreError::NotFound(what)) => format!("no {what}"),
            AppError::Store(
                StoreError::Invalid(m)
                | StoreError::State(m)
                | StoreError::Denied(m)
                | StoreError::Audit(m),
            ) => m.clone(),
            AppError::Store(other) => other.to_string(),
            AppError::Rule { message, .. } => message.clone(),
        }
    }
}
