//! SWIFT MT940 (placeholder; being written).
use super::{StatementError, StatementFile};

pub fn looks_like(bytes: &[u8]) -> bool {
    bytes.windows(4).any(|w| w == b":20:")
}

pub fn parse(
    _bytes: &[u8],
    file: &str,
    _encoding: Option<&str>,
) -> Result<StatementFile, StatementError> {
    Err(StatementError::Unknown {
        file: file.into(),
        why: "MT940 parser not written yet".into(),
    })
}
