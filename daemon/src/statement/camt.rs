//! ISO 20022 camt.053 / camt.054 (placeholder; being written).
use super::{StatementError, StatementFile};

pub fn parse(_bytes: &[u8], file: &str) -> Result<StatementFile, StatementError> {
    Err(StatementError::Unknown {
        file: file.into(),
        why: "camt parser not written yet".into(),
    })
}
