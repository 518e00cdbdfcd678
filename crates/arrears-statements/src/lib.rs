//! Bank statements: ISO 20022 camt.053 (statements) and camt.054 (debit/credit
//! notifications) in any version, and SWIFT MT940. Each parser turns a file into
//! the same [`StatementFile`]; matching credits to open items and applying them to
//! the store is format-independent (`matching`).
//!
//! The parsers are lenient where banks are inconsistent (namespaces, batch
//! summaries, decimal places, line endings) and strict where money is concerned:
//! an amount or currency that does not parse is an error naming the file and line,
//! never a skipped entry.

pub mod camt;
pub mod matching;
pub mod mt940;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

/// What a file turned out to be (detected from its content, not its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Camt053,
    Camt054,
    Mt940,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Camt053 => "camt.053",
            Format::Camt054 => "camt.054",
            Format::Mt940 => "MT940",
        })
    }
}

/// One file: one or more statements (camt `Stmt`/`Ntfctn` blocks, MT940 messages).
#[derive(Debug, Clone, Serialize)]
pub struct StatementFile {
    pub format: Format,
    /// The message version, e.g. `camt.053.001.02`; `MT940` for MT940.
    pub version: String,
    pub statements: Vec<Statement>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Statement {
    /// camt `Stmt/Id` or `Ntfctn/Id`; MT940 `:20:` reference.
    pub id: String,
    /// camt `ElctrncSeqNb`/`LglSeqNb`; MT940 `:28C:` statement/sequence number.
    pub sequence: Option<String>,
    /// IBAN, else the other account id (`Othr/Id`), else MT940 `:25:` as written.
    pub account: String,
    /// Account currency (`Acct/Ccy`, MT940 balance currency) when the file gives it.
    pub currency: Option<String>,
    /// Opening and closing booked balances when present (camt `OPBD`/`CLBD`, MT940
    /// `:60F:`/`:60M:` and `:62F:`/`:62M:`), signed (debit balances negative).
    pub opening: Option<Balance>,
    pub closing: Option<Balance>,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Balance {
    pub date: NaiveDate,
    pub amount: Decimal,
    pub currency: String,
}

/// One booked entry (camt `Ntry`, MT940 `:61:` with its `:86:`).
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// 1-based line in the file where the entry starts (errors and reports point here).
    pub line: u32,
    /// Always positive; `credit` gives the direction.
    pub amount: Decimal,
    pub currency: String,
    pub credit: bool,
    /// A reversal (camt `RvslInd`, MT940 `RC`/`RD` marks): never matched to items.
    pub reversal: bool,
    /// camt `Sts` when given (`BOOK`, `PDNG`, `INFO`); only booked entries are applied.
    pub status: Option<String>,
    pub booking_date: Option<NaiveDate>,
    pub value_date: Option<NaiveDate>,
    /// The bank's reference for the entry (camt `AcctSvcrRef`, MT940 bank reference
    /// after `//`), used with the statement to recognise the entry again.
    pub bank_ref: Option<String>,
    /// camt `Btch/NbOfTxs` (or `NtryDtls` count) when the entry is a batch.
    pub batch_count: Option<u32>,
    /// Transaction details. Empty when the bank gave none (then the entry itself is
    /// the only thing to match, with the entry-level texts in `entry_info`).
    pub transactions: Vec<Transaction>,
    /// Entry-level free text (camt `AddtlNtryInf`; MT940 `:86:` when it could not be
    /// split into fields) — searched for invoice numbers when no details exist.
    pub entry_info: Option<String>,
}

/// One transaction inside an entry (camt `TxDtls`; MT940 gives exactly one).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Transaction {
    /// The transaction's own amount (camt `TxDtls/Amt` or `AmtDtls/TxAmt`), if given;
    /// otherwise the entry amount applies (single-transaction entries).
    pub amount: Option<Decimal>,
    pub currency: Option<String>,
    /// `EndToEndId` (MT940: `EREF+`, `/EREF/`), without the `NOTPROVIDED` placeholder.
    pub end_to_end_id: Option<String>,
    /// Structured creditor references (camt `CdtrRefInf/Ref`, whatever the type:
    /// SCOR, ISR, QRR; MT940 structured fields that carry one), trimmed.
    pub creditor_refs: Vec<String>,
    /// Unstructured remittance lines (camt `Ustrd`, MT940 `SVWZ+`, `/REMI/`, `?2x`),
    /// in order, unjoined (banks split at 35 characters mid-word).
    pub remittance: Vec<String>,
    /// The payer (camt `RltdPties/Dbtr/Nm` or `Dbtr/Pty/Nm`; MT940 name field).
    pub debtor_name: Option<String>,
    /// The payer's account (IBAN or other id).
    pub debtor_account: Option<String>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unknown_currency_is_an_error_naming_the_line() {
        let ubs = include_str!(
            "../../../tests/samples/camt053/viafintech-camt_parser__ubs_camt053_v08.xml"
        );
        let bad = ubs.replacen(
            "<Amt Ccy=\"CHF\">474.4</Amt>",
            "<Amt Ccy=\"XXY\">474.4</Amt>",
            1,
        );
        assert_ne!(bad, ubs);
        let e = super::parse(bad.as_bytes(), "ubs.xml", None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("ubs.xml:") && e.contains("XXY"), "{e}");
        assert!(super::parse(ubs.as_bytes(), "ubs.xml", None).is_ok());
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    #[error("{file}: not a bank statement this build reads (camt.053, camt.054 or MT940): {why}")]
    Unknown { file: String, why: String },
    #[error("{file}:{line}: {message}")]
    At {
        file: String,
        line: u32,
        message: String,
    },
}

impl StatementError {
    pub fn at(file: &str, line: u32, message: impl Into<String>) -> StatementError {
        StatementError::At {
            file: file.to_string(),
            line,
            message: message.into(),
        }
    }
}

/// Reads a statement file whatever its format, detected from the content: XML
/// whose document element holds a `BkToCstmrStmt` or `BkToCstmrDbtCdtNtfctn` is
/// camt.053 or camt.054; text with `:20:` and `:61:`/`:60F:`-style tags is MT940.
/// `file` names the file in errors. `encoding` only matters for MT940 that is not
/// UTF-8 (see [`mt940::parse`]).
pub fn parse(
    bytes: &[u8],
    file: &str,
    encoding: Option<&str>,
) -> Result<StatementFile, StatementError> {
    let head: Vec<u8> = bytes
        .iter()
        .copied()
        .skip_while(|b| b.is_ascii_whitespace() || *b == 0xEF || *b == 0xBB || *b == 0xBF)
        .take(1)
        .collect();
    let parsed = if head.first() == Some(&b'<') {
        camt::parse(bytes, file)?
    } else if mt940::looks_like(bytes) {
        mt940::parse(bytes, file, encoding)?
    } else {
        return Err(StatementError::Unknown {
            file: file.to_string(),
            why: "neither XML nor SWIFT MT940 tags".into(),
        });
    };
    known_currencies(&parsed, file)?;
    Ok(parsed)
}

/// Every currency must be an ISO 4217 code: an entry in `XXY` could never be
/// matched or booked, and silently keeping it would hide a broken export.
fn known_currencies(f: &StatementFile, file: &str) -> Result<(), StatementError> {
    let check = |code: &str, line: u32| {
        arrears_core::money::Currency::parse(code)
            .map(|_| ())
            .map_err(|e| StatementError::at(file, line, format!("currency `{code}`: {e}")))
    };
    for s in &f.statements {
        for e in &s.entries {
            check(&e.currency, e.line)?;
            for t in &e.transactions {
                if let Some(c) = &t.currency {
                    check(c, e.line)?;
                }
            }
        }
    }
    Ok(())
}
