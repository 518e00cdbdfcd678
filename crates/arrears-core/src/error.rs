//! What kind of failure an error is, independent of where it happened: the one
//! vocabulary the API maps to status codes and the CLI to wording, so no layer
//! decides it from message text.

/// The kind of a failure, as a caller must react to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The named record does not exist.
    NotFound,
    /// The request itself is wrong (a bad value, an amount out of range).
    Invalid,
    /// The request is fine, the record's state does not allow it (a closed case).
    State,
    /// The principal may not do this.
    Denied,
    /// A resource stayed busy past the wait; nothing changed, retrying is safe.
    Busy,
    /// The audit log cannot be written or checked; nothing changed.
    Audit,
    /// Stored data or the environment is broken (corrupt value, IO, newer schema).
    Internal,
}
