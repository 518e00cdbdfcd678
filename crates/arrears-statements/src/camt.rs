//! ISO 20022 camt.053 (bank-to-customer statement) and camt.054 (debit/credit
//! notification), any version.
//!
//! Elements are matched by local name only: associations publish their own
//! namespaces (Stuzza's `ISO:camt.053.001.02:APC:STUZZA:payments:003`) and the
//! element names have stayed stable across versions. Where versions differ (v08+
//! wraps `Sts` in `Cd` and party names in `Pty`) both shapes are read.

use std::borrow::Cow;
use std::str::FromStr;

use chrono::NaiveDate;
use roxmltree::{Document, Node};
use rust_decimal::Decimal;

use super::{Balance, Entry, Format, Statement, StatementError, StatementFile, Transaction};
use arrears_core::money::check_bound;

/// Parses a camt.053 or camt.054 file. `file` names the file in errors.
pub fn parse(bytes: &[u8], file: &str) -> Result<StatementFile, StatementError> {
    let text = decode(bytes, file)?;
    // roxmltree counts lines by LF only, so a CR-only file (old Mac) would be one
    // long line in every error and entry; XML itself treats CR and CRLF as LF.
    let text = if text.contains('\r') {
        Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(text)
    };
    // Some exports start with blank lines, which XML forbids before the
    // declaration; parse from the first tag but keep counting lines from the top.
    let body = text.trim_start();
    let cx = Cx::new(file, &text, text.len() - body.len());

    let doc = Document::parse(body).map_err(|e| cx.xml_error(&e, body))?;
    let root = doc.root_element();
    let message =
        std::iter::once(root)
            .chain(elements(root))
            .find_map(|n| match n.tag_name().name() {
                "BkToCstmrStmt" => Some((n, Format::Camt053, "Stmt")),
                "BkToCstmrDbtCdtNtfctn" => Some((n, Format::Camt054, "Ntfctn")),
                _ => None,
            });
    let Some((message, format, block)) = message else {
        return Err(StatementError::Unknown {
            file: file.to_string(),
            why: describe_root(root),
        });
    };

    let namespace = message
        .tag_name()
        .namespace()
        .or(root.tag_name().namespace());
    let statements = children(message, block)
        .map(|s| cx.statement(s))
        .collect::<Result<Vec<_>, _>>()?;
    if statements.is_empty() {
        return Err(cx.err(
            message,
            format!("<{}> holds no <{block}>", message.tag_name().name()),
        ));
    }
    Ok(StatementFile {
        format,
        version: version(namespace, format),
        statements,
    })
}

fn decode<'a>(bytes: &'a [u8], file: &str) -> Result<&'a str, StatementError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        return Err(StatementError::at(
            file,
            1,
            "the file is UTF-16; camt files are read as UTF-8",
        ));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        StatementError::at(
            file,
            line_breaks(&bytes[..at]) + 1,
            format!(
                "not UTF-8: byte 0x{:02X} at offset {at}; camt files are read as UTF-8",
                bytes[at]
            ),
        )
    })
}

/// Line breaks in raw bytes, counting CRLF, LF and a lone CR once each.
fn line_breaks(bytes: &[u8]) -> u32 {
    let n = bytes
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n')))
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn describe_root(root: Node) -> String {
    let name = root.tag_name().name();
    let namespace = root
        .tag_name()
        .namespace()
        .map(|ns| format!(" (namespace {ns})"))
        .unwrap_or_default();
    match elements(root).next() {
        Some(first) if name == "Document" => {
            format!(
                "XML <{name}>{namespace} holds <{}>",
                first.tag_name().name()
            )
        }
        _ => format!("XML <{name}>{namespace}"),
    }
}

/// `camt.053.001.02` when the namespace names the version (the ISO
/// `urn:iso:std:iso:20022:tech:xsd:camt.053.001.02` and variants that embed it),
/// else just the message type.
fn version(namespace: Option<&str>, format: Format) -> String {
    let prefix = format!("{format}.001.");
    namespace
        .and_then(|ns| {
            let start = ns.find(&prefix)? + prefix.len();
            let digits = ns.get(start..start + 2)?;
            digits
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| format!("{prefix}{digits}"))
        })
        .unwrap_or_else(|| format.to_string())
}

/// File name and line lookup shared by everything that can fail.
struct Cx<'a> {
    file: &'a str,
    /// Byte offsets of every LF in the whole (normalised) text.
    newlines: Vec<usize>,
    /// Where the parsed body starts in that text.
    skipped: usize,
}

impl<'a> Cx<'a> {
    fn new(file: &'a str, text: &str, skipped: usize) -> Cx<'a> {
        let newlines = text
            .bytes()
            .enumerate()
            .filter(|&(_, b)| b == b'\n')
            .map(|(i, _)| i)
            .collect();
        Cx {
            file,
            newlines,
            skipped,
        }
    }

    /// 1-based line of a byte offset in the parsed body. Same answer as
    /// `Document::text_pos_at`, which rescans the text from the start each call.
    fn line_at(&self, pos: usize) -> u32 {
        let before = self.newlines.partition_point(|&nl| nl < self.skipped + pos);
        u32::try_from(before + 1).unwrap_or(u32::MAX)
    }

    fn line(&self, node: Node) -> u32 {
        self.line_at(node.range().start)
    }

    fn err(&self, node: Node, message: impl Into<String>) -> StatementError {
        StatementError::at(self.file, self.line(node), message)
    }

    fn xml_error(&self, e: &roxmltree::Error, body: &str) -> StatementError {
        use roxmltree::Error::{UnclosedRootNode, UnexpectedEndOfStream};
        let (line, hint) = match e {
            // These carry no position; the problem is where the text stops.
            UnexpectedEndOfStream | UnclosedRootNode => (
                self.line_at(body.trim_end().len().saturating_sub(1)),
                " (the file ends early: truncated?)",
            ),
            _ => (self.line_at(0) - 1 + e.pos().row, ""),
        };
        StatementError::at(self.file, line, format!("malformed XML: {e}{hint}"))
    }

    fn statement(&self, stmt: Node) -> Result<Statement, StatementError> {
        let block = stmt.tag_name().name();
        let id = text_at(stmt, &["Id"])
            .ok_or_else(|| self.err(stmt, format!("<{block}> has no <Id>")))?;
        let acct = child(stmt, "Acct")
            .ok_or_else(|| self.err(stmt, format!("<{block}> has no <Acct>")))?;
        let account = text_at(acct, &["Id", "IBAN"])
            .or_else(|| text_at(acct, &["Id", "Othr", "Id"]))
            .ok_or_else(|| self.err(acct, "account has neither Id/IBAN nor Id/Othr/Id"))?;
        let currency = child(acct, "Ccy")
            .map(|c| self.currency(c, &text(c)))
            .transpose()?;

        let balance = |code: &str| {
            children(stmt, "Bal")
                .find(|b| text_at(*b, &["Tp", "CdOrPrtry", "Cd"]).as_deref() == Some(code))
        };
        // PRCD (the previous statement's closing) is what MT940 conversions give
        // instead of OPBD; both mean the balance before the first entry.
        let opening = balance("OPBD")
            .or_else(|| balance("PRCD"))
            .map(|b| self.balance(b, currency.as_deref()))
            .transpose()?;
        let closing = balance("CLBD")
            .map(|b| self.balance(b, currency.as_deref()))
            .transpose()?;

        let entries = children(stmt, "Ntry")
            .map(|n| self.entry(n, currency.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Statement {
            id,
            sequence: text_at(stmt, &["ElctrncSeqNb"]).or_else(|| text_at(stmt, &["LglSeqNb"])),
            account,
            currency,
            opening,
            closing,
            entries,
        })
    }

    fn balance(&self, bal: Node, account_ccy: Option<&str>) -> Result<Balance, StatementError> {
        let (amount, currency) = self.money(bal, account_ccy)?;
        let date = self
            .date(bal, "Dt")?
            .ok_or_else(|| self.err(bal, "balance has no Dt/Dt or Dt/DtTm"))?;
        let amount = if self.is_credit(bal)? {
            amount
        } else {
            -amount
        };
        Ok(Balance {
            date,
            amount,
            currency,
        })
    }

    fn entry(&self, ntry: Node, account_ccy: Option<&str>) -> Result<Entry, StatementError> {
        let (amount, currency) = self.money(ntry, account_ccy)?;
        let details: Vec<Node> = children(ntry, "NtryDtls").collect();
        let transactions = details
            .iter()
            .flat_map(|d| children(*d, "TxDtls"))
            .map(|tx| self.transaction(tx))
            .collect::<Result<Vec<_>, _>>()?;
        let batch_count = match details.iter().find_map(|d| find(*d, &["Btch", "NbOfTxs"])) {
            Some(n) => Some(
                text(n)
                    .parse::<u32>()
                    .map_err(|_| self.err(n, format!("NbOfTxs {:?} is not a count", text(n))))?,
            ),
            // Several TxDtls without a Btch block are a batch all the same.
            None if transactions.len() > 1 => u32::try_from(transactions.len()).ok(),
            None => None,
        };
        let status = child(ntry, "Sts").and_then(|s| {
            non_empty(text(s))
                .or_else(|| text_at(s, &["Cd"]))
                .or_else(|| text_at(s, &["Prtry"]))
        });
        Ok(Entry {
            line: self.line(ntry),
            amount,
            currency,
            credit: self.is_credit(ntry)?,
            reversal: matches!(text_at(ntry, &["RvslInd"]).as_deref(), Some("true" | "1")),
            status,
            booking_date: self.date(ntry, "BookgDt")?,
            value_date: self.date(ntry, "ValDt")?,
            bank_ref: text_at(ntry, &["AcctSvcrRef"]),
            batch_count,
            transactions,
            entry_info: text_at(ntry, &["AddtlNtryInf"]),
        })
    }

    fn transaction(&self, tx: Node) -> Result<Transaction, StatementError> {
        let amt = child(tx, "Amt")
            .or_else(|| find(tx, &["AmtDtls", "TxAmt", "Amt"]))
            .or_else(|| find(tx, &["AmtDtls", "InstdAmt", "Amt"]));
        let (amount, currency) = match amt {
            Some(amt) => (
                Some(self.amount(amt)?),
                amt.attribute("Ccy")
                    .map(|c| self.currency(amt, c))
                    .transpose()?,
            ),
            None => (None, None),
        };

        let mut creditor_refs = Vec::new();
        let mut remittance = Vec::new();
        for part in children(tx, "RmtInf").flat_map(elements) {
            match part.tag_name().name() {
                "Ustrd" => remittance.extend(non_empty(text(part))),
                "Strd" => {
                    creditor_refs
                        .extend(children(part, "CdtrRefInf").filter_map(|r| text_at(r, &["Ref"])));
                    remittance
                        .extend(children(part, "AddtlRmtInf").filter_map(|a| non_empty(text(a))));
                }
                _ => {}
            }
        }

        let parties = child(tx, "RltdPties");
        Ok(Transaction {
            amount,
            currency,
            end_to_end_id: text_at(tx, &["Refs", "EndToEndId"])
                .filter(|id| !id.eq_ignore_ascii_case("NOTPROVIDED")),
            creditor_refs,
            remittance,
            debtor_name: parties.and_then(|p| {
                text_at(p, &["Dbtr", "Nm"]).or_else(|| text_at(p, &["Dbtr", "Pty", "Nm"]))
            }),
            debtor_account: parties.and_then(|p| {
                text_at(p, &["DbtrAcct", "Id", "IBAN"])
                    .or_else(|| text_at(p, &["DbtrAcct", "Id", "Othr", "Id"]))
            }),
        })
    }

    /// The `Amt` of an entry or balance with its currency: the `Ccy` attribute,
    /// else the account currency.
    fn money(
        &self,
        parent: Node,
        account_ccy: Option<&str>,
    ) -> Result<(Decimal, String), StatementError> {
        let name = parent.tag_name().name();
        let amt = child(parent, "Amt")
            .ok_or_else(|| self.err(parent, format!("<{name}> has no <Amt>")))?;
        let currency = match (amt.attribute("Ccy"), account_ccy) {
            (Some(ccy), _) => self.currency(amt, ccy)?,
            (None, Some(ccy)) => ccy.to_string(),
            (None, None) => {
                return Err(self.err(amt, "amount has no Ccy and the account gives no currency"))
            }
        };
        Ok((self.amount(amt)?, currency))
    }

    /// A non-negative decimal with `.` as separator. Checked by hand because
    /// `Decimal::from_str` also takes `_` separators and rounds long inputs.
    fn amount(&self, amt: Node) -> Result<Decimal, StatementError> {
        let raw = text(amt);
        if raw.starts_with('-') {
            return Err(self.err(
                amt,
                format!("negative amount {raw:?}: camt gives the direction in CdtDbtInd"),
            ));
        }
        let digits = raw.strip_prefix('+').unwrap_or(&raw);
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let well_formed = !(int.is_empty() && frac.is_empty())
            && int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
            && int.len() + frac.len() <= 28;
        let bad = || {
            self.err(
                amt,
                format!("amount {raw:?} is not a decimal number like 1234.50"),
            )
        };
        if !well_formed {
            return Err(bad());
        }
        let a = Decimal::from_str(digits).map_err(|_| bad())?;
        check_bound(a).map_err(|e| self.err(amt, e.to_string()))
    }

    fn currency(&self, node: Node, code: &str) -> Result<String, StatementError> {
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(code.to_string())
        } else {
            Err(self.err(
                node,
                format!("currency {code:?} is not a three-letter ISO 4217 code"),
            ))
        }
    }

    fn is_credit(&self, parent: Node) -> Result<bool, StatementError> {
        let name = parent.tag_name().name();
        let ind = child(parent, "CdtDbtInd")
            .ok_or_else(|| self.err(parent, format!("<{name}> has no <CdtDbtInd>")))?;
        match text(ind).as_str() {
            "CRDT" => Ok(true),
            "DBIT" => Ok(false),
            other => Err(self.err(ind, format!("CdtDbtInd {other:?} is neither CRDT nor DBIT"))),
        }
    }

    /// The date in `<holder><Dt>` or `<holder><DtTm>`; `None` when the holder is absent.
    fn date(
        &self,
        parent: Node,
        holder: &'static str,
    ) -> Result<Option<NaiveDate>, StatementError> {
        let Some(node) =
            child(parent, holder).and_then(|h| child(h, "Dt").or_else(|| child(h, "DtTm")))
        else {
            return Ok(None);
        };
        let raw = text(node);
        // A DtTm may carry Z, an offset, milliseconds or nanoseconds; the day the
        // bank wrote is the first ten characters, whatever the time zone.
        raw.get(..10)
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .map(Some)
            .ok_or_else(|| self.err(node, format!("date {raw:?} is not YYYY-MM-DD")))
    }
}

fn elements<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(Node::is_element)
}

fn children<'a, 'i>(node: Node<'a, 'i>, name: &'static str) -> impl Iterator<Item = Node<'a, 'i>> {
    elements(node).filter(move |c| c.tag_name().name() == name)
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &'static str) -> Option<Node<'a, 'i>> {
    children(node, name).next()
}

/// Follows a path of child names, taking the first match at each step.
fn find<'a, 'i>(node: Node<'a, 'i>, path: &[&'static str]) -> Option<Node<'a, 'i>> {
    path.iter().try_fold(node, |n, name| child(n, name))
}

/// Trimmed text at a path, `None` when absent or blank.
fn text_at(node: Node, path: &[&'static str]) -> Option<String> {
    find(node, path).and_then(|n| non_empty(text(n)))
}

/// The element's own text, trimmed; joined across comments that split it.
fn text(node: Node) -> String {
    let joined: String = node
        .children()
        .filter(Node::is_text)
        .filter_map(|t| t.text())
        .collect();
    joined.trim().to_string()
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/samples/");

    const ABN: &str = "camt053/svapnil-iso20022js__abn_amro_example_camt053_v02.xml";
    const FI_053: &str = "camt053/moov-iso20022__fffs_finland_camt053_v02.xml";
    const GENKGO_053: &str = "camt053/genkgo-camt__camt053_v03.xml";
    const GOLDMAN: &str = "camt053/svapnil-iso20022js__goldman_sachs_us_camt053_v02.xml";
    const ING: &str = "camt053/svapnil-iso20022js__ing_example_camt053_v02.xml";
    const NORDEA: &str = "camt053/svapnil-iso20022js__nordea_example_camt053_v02.xml";
    const PF_053: &str = "camt053/viafintech-camt_parser__postfinance_camt053_v04_esr_batch.xml";
    const STUZZA: &str = "camt053/viafintech-camt_parser__stuzza_austria_camt053_v02.xml";
    const UBS: &str = "camt053/viafintech-camt_parser__ubs_camt053_v08.xml";
    const WISE: &str = "camt053/viafintech-camt_parser__wise_camt053_v10_datetime.xml";
    const GENKGO_054: &str = "camt054/genkgo-camt__camt054_v08.xml";
    const FI_054: &str = "camt054/moov-iso20022__fffs_finland_camt054_v02_cr_line_endings.xml";
    const PF_054_ESR: &str = "camt054/moov-iso20022__postfinance_camt054_v04_esr_batch.xml";
    const PF_054_CHDD: &str = "camt054/viafintech-camt_parser__postfinance_camt054_v04_chdd.xml";

    fn bytes(path: &str) -> Vec<u8> {
        std::fs::read(format!("{SAMPLES}{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn sample(path: &str) -> StatementFile {
        parse(&bytes(path), path).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every sample holds exactly one statement; this returns it.
    fn statement(path: &str) -> Statement {
        let mut file = sample(path);
        assert_eq!(file.statements.len(), 1, "{path}");
        file.statements.remove(0)
    }

    fn txs(st: &Statement) -> impl Iterator<Item = &Transaction> {
        st.entries.iter().flat_map(|e| &e.transactions)
    }

    fn signed(e: &Entry) -> Decimal {
        if e.credit {
            e.amount
        } else {
            -e.amount
        }
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn at(result: Result<StatementFile, StatementError>) -> (u32, String) {
        match result {
            Err(StatementError::At { line, message, .. }) => (line, message),
            other => panic!("expected an At error, got {other:?}"),
        }
    }

    /// A small camt.053 with the entry's `Ntry` on line 7 and its `Amt` on line 8.
    fn one_entry(amount: &str, ccy: &str, direction: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
<BkToCstmrStmt>
<Stmt>
<Id>S1</Id>
<Acct><Id><IBAN>CH9300762011623852957</IBAN></Id><Ccy>CHF</Ccy></Acct>
<Ntry>
<Amt Ccy="{ccy}">{amount}</Amt>
<CdtDbtInd>{direction}</CdtDbtInd>
</Ntry>
</Stmt>
</BkToCstmrStmt>
</Document>
"#
        )
    }

    #[test]
    fn every_sample_parses_with_its_format_version_and_counts() {
        use Format::{Camt053, Camt054};
        // (file, format, version, entries, credits, TxDtls), counted in the XML.
        let expected = [
            (ABN, Camt053, "camt.053.001.02", 13, 7, 26),
            (FI_053, Camt053, "camt.053.001.02", 10, 6, 12),
            (GENKGO_053, Camt053, "camt.053.001.03", 1, 1, 1),
            (GOLDMAN, Camt053, "camt.053.001.02", 15, 10, 15),
            (ING, Camt053, "camt.053.001.02", 9, 5, 7),
            (NORDEA, Camt053, "camt.053.001.02", 6, 2, 6),
            (PF_053, Camt053, "camt.053.001.04", 13, 5, 32),
            (STUZZA, Camt053, "camt.053.001.02", 3, 3, 3),
            (UBS, Camt053, "camt.053.001.08", 3, 2, 3),
            (WISE, Camt053, "camt.053.001.10", 1, 1, 0),
            (GENKGO_054, Camt054, "camt.054.001.08", 1, 0, 3),
            (FI_054, Camt054, "camt.054.001.02", 6, 4, 13),
            (PF_054_ESR, Camt054, "camt.054.001.04", 2, 1, 6),
            (PF_054_CHDD, Camt054, "camt.054.001.04", 4, 2, 5),
        ];
        for (path, format, version, entries, credits, tx_count) in expected {
            let file = sample(path);
            assert_eq!(
                (file.format, file.version.as_str()),
                (format, version),
                "{path}"
            );
            assert_eq!(file.statements.len(), 1, "{path}");
            let st = &file.statements[0];
            assert_eq!(st.entries.len(), entries, "{path}");
            assert_eq!(
                st.entries.iter().filter(|e| e.credit).count(),
                credits,
                "{path}"
            );
            assert_eq!(txs(st).count(), tx_count, "{path}");
        }
        // A sample added to the folders must be added above too.
        let on_disk: usize = ["camt053", "camt054"]
            .iter()
            .map(|d| std::fs::read_dir(format!("{SAMPLES}{d}")).unwrap().count())
            .sum();
        assert_eq!(on_disk, expected.len());
    }

    #[test]
    fn balances_agree_with_the_entries_between_them() {
        // Samples whose opening plus the signed entries gives the closing balance
        // (Goldman Sachs, UBS and genkgo are not self-consistent).
        for path in [ABN, FI_053, ING, NORDEA, PF_053, STUZZA] {
            let st = statement(path);
            let opening = st.opening.as_ref().expect(path).amount;
            let closing = st.closing.as_ref().expect(path).amount;
            let movement: Decimal = st.entries.iter().map(signed).sum();
            assert_eq!(opening + movement, closing, "{path}");
        }
    }

    #[test]
    fn nordea_balances_and_references() {
        let st = statement(NORDEA);
        assert_eq!(st.id, "2019-05-09-04.44.12-EUR0574");
        assert_eq!(st.sequence.as_deref(), Some("25")); // ElctrncSeqNb over LglSeqNb 20
        assert_eq!(st.account, "FI8529501800030574");
        assert_eq!(st.currency.as_deref(), Some("EUR"));
        let balance = |amount, day| Balance {
            date: date(day),
            amount,
            currency: "EUR".into(),
        };
        assert_eq!(st.opening, Some(balance(dec!(200.50), "2019-05-08")));
        assert_eq!(st.closing, Some(balance(dec!(8800.50), "2019-05-08")));

        let refs: Vec<&str> = txs(&st)
            .flat_map(|t| &t.creditor_refs)
            .map(String::as_str)
            .collect();
        assert_eq!(refs, ["00000000000000001245", "RF332348236"]);
        let lines: Vec<u32> = st.entries.iter().map(|e| e.line).collect();
        assert_eq!(lines, [72, 122, 161, 212, 250, 286]);
        let split = &st.entries[1].transactions[0];
        assert_eq!(
            split.remittance,
            [
                "Free text max 140 characters and ma",
                "x 35 characters in one line"
            ]
        );
        assert_eq!(split.end_to_end_id, None); // NOTPROVIDED
        assert_eq!(
            st.entries[0].transactions[0].end_to_end_id.as_deref(),
            Some("20190501-E00005")
        );
    }

    #[test]
    fn opening_prefers_opbd_and_falls_back_to_prcd() {
        // ING gives PRCD (2014-01-02) before OPBD (2014-01-03).
        let ing = statement(ING);
        assert_eq!(
            ing.opening.as_ref().map(|b| b.date),
            Some(date("2014-01-03"))
        );
        // Finland gives OPBD with a CdtLine/Amt ahead of its own Amt.
        let fi = statement(FI_053);
        let opening = fi.opening.unwrap();
        assert_eq!(
            (opening.date, opening.amount),
            (date("2009-10-29"), dec!(10000.00))
        );
        assert_eq!(fi.closing.map(|b| b.amount), Some(dec!(23644.83)));
        // ABN AMRO and Stuzza give only PRCD.
        let abn = statement(ABN).opening.unwrap();
        assert_eq!((abn.date, abn.amount), (date("2013-03-28"), dec!(1000.01)));
        let stuzza = statement(STUZZA).opening.unwrap();
        assert_eq!(
            (stuzza.date, stuzza.amount),
            (date("2019-02-28"), dec!(150.00))
        );
    }

    #[test]
    fn debit_balances_are_negative_and_dates_come_from_dttm() {
        let gs = statement(GOLDMAN);
        let opening = gs.opening.unwrap();
        assert_eq!(
            (opening.date, opening.amount),
            (date("2023-09-30"), dec!(-843686.20))
        );
        assert_eq!(gs.closing.unwrap().amount, dec!(-846665.15));

        let genkgo = statement(GENKGO_053).closing.unwrap();
        assert_eq!(
            (genkgo.amount, genkgo.currency.as_str()),
            (dec!(-27.00), "SEK")
        );

        let wise = statement(WISE);
        assert_eq!(wise.opening, None);
        let closing = wise.closing.unwrap();
        assert_eq!(
            (closing.date, closing.amount),
            (date("2023-07-07"), dec!(606.80))
        );
    }

    #[test]
    fn abn_amro_batches_reversals_and_quirks() {
        let st = statement(ABN);
        assert_eq!(st.sequence.as_deref(), Some("0070"));
        let lines: Vec<u32> = st.entries.iter().map(|e| e.line).collect();
        assert_eq!(
            lines,
            [144, 174, 245, 326, 903, 975, 1056, 1189, 1226, 1312, 1721, 1759, 1850]
        );
        // Batches appear once with and once without their TxDtls.
        let batches: Vec<(Option<u32>, usize)> = st
            .entries
            .iter()
            .map(|e| (e.batch_count, e.transactions.len()))
            .collect();
        assert_eq!(batches[3], (Some(10), 10));
        assert_eq!(batches[6], (Some(2), 2));
        assert_eq!(batches[7], (Some(2), 0));
        assert_eq!(batches[9], (Some(7), 7));
        assert_eq!(batches[10], (Some(7), 0));
        assert_eq!(st.entries.iter().filter(|e| e.reversal).count(), 2);
        // `01.00`, single-quoted Ccy.
        let e = &st.entries[5];
        assert_eq!(
            (e.amount, e.currency.as_str(), e.credit),
            (dec!(1.00), "EUR", false)
        );
        assert_eq!(st.entries[12].amount, dec!(921.00));
        // No details: the entry text is all there is.
        assert!(st.entries[0].transactions.is_empty());
        assert_eq!(
            st.entries[0].entry_info.as_deref(),
            Some("11.11.111.111 Naam Adres 7 2960 Dorp")
        );
        assert_eq!(txs(&st).flat_map(|t| &t.creditor_refs).count(), 11);
        assert_eq!(txs(&st).filter(|t| t.end_to_end_id.is_none()).count(), 15);
    }

    #[test]
    fn ing_credits_batches_without_details_and_reversal() {
        let st = statement(ING);
        assert_eq!(st.sequence.as_deref(), Some("03"));
        let credits: Decimal = st
            .entries
            .iter()
            .filter(|e| e.credit)
            .map(|e| e.amount)
            .sum();
        assert_eq!(credits, dec!(990.00));
        let summaries: Vec<usize> = (0..st.entries.len())
            .filter(|&i| {
                st.entries[i].batch_count == Some(2) && st.entries[i].transactions.is_empty()
            })
            .collect();
        assert_eq!(summaries, [3, 6]);
        let reversals: Vec<u32> = st
            .entries
            .iter()
            .filter(|e| e.reversal)
            .map(|e| e.line)
            .collect();
        assert_eq!(reversals, [566]);
        let first = &st.entries[0].transactions[0];
        assert_eq!(first.creditor_refs, ["0010008346912014"]);
        assert_eq!(first.debtor_name.as_deref(), Some("INGTestrekening"));
        assert_eq!(first.debtor_account.as_deref(), Some("NL20INGB0001234567"));
        assert_eq!(
            st.entries[1].transactions[0].remittance,
            ["UstrdRemi2014010323566INGBankNV"]
        );
    }

    #[test]
    fn goldman_sachs_other_account_and_foreign_entry() {
        let st = statement(GOLDMAN);
        assert_eq!(st.account, "DD01100056869");
        assert_eq!(st.currency.as_deref(), Some("USD"));
        assert_eq!(st.entries.iter().filter(|e| e.reversal).count(), 3);
        let eur: Vec<&Entry> = st.entries.iter().filter(|e| e.currency != "USD").collect();
        assert_eq!(eur.len(), 1);
        assert_eq!(
            (eur[0].amount, eur[0].currency.as_str()),
            (dec!(29.06), "EUR")
        );
        assert_eq!(eur[0].booking_date, Some(date("2023-08-02")));
        // TxAmt wins over InstdAmt (USD 25.00).
        let tx = &eur[0].transactions[0];
        assert_eq!(
            (tx.amount, tx.currency.as_deref()),
            (Some(dec!(29.06)), Some("EUR"))
        );
        // DtTm with and without Z, with milliseconds.
        assert_eq!(st.entries[0].booking_date, Some(date("2023-10-01")));
        assert_eq!(st.entries[3].booking_date, Some(date("2023-10-01")));
        assert_eq!(
            st.entries[0].transactions[0].remittance,
            ["Sample Unstructured Remittance 123"]
        );
    }

    #[test]
    fn postfinance_053_esr_batches_add_up() {
        let st = statement(PF_053);
        assert_eq!(st.currency, None); // no Acct/Ccy in this file
        let credits: Vec<&Entry> = st.entries.iter().filter(|e| e.credit).collect();
        let counts: Vec<Option<u32>> = credits.iter().map(|e| e.batch_count).collect();
        assert_eq!(counts, [Some(10), Some(8), Some(3), Some(2), Some(1)]);
        for e in &credits {
            assert_eq!(
                u32::try_from(e.transactions.len()).ok(),
                e.batch_count,
                "line {}",
                e.line
            );
            let sum: Decimal = e.transactions.iter().map(|t| t.amount.unwrap()).sum();
            assert_eq!(sum, e.amount, "line {}", e.line);
        }
        let esr = credits[0];
        assert_eq!(esr.amount, dec!(1000.00));
        let refs: Vec<&str> = esr
            .transactions
            .iter()
            .flat_map(|t| &t.creditor_refs)
            .map(String::as_str)
            .collect();
        assert_eq!(refs.len(), 10);
        assert_eq!(refs[0], "CreditorReference");
        assert!(refs[1..]
            .iter()
            .all(|r| r.len() == 27 && r.bytes().all(|b| b.is_ascii_digit())));
        assert_eq!(
            esr.transactions[0].debtor_name.as_deref(),
            Some("Hans Kaufmann")
        );
        assert_eq!(
            credits[1].transactions[2].remittance,
            [
                "MUSTER MITTEILUNG 1",
                "MUSTER MITTEILUNG 2",
                "MUSTER MITTEILUNG 3",
                "MUSTER MITTEILUNG 4",
                // PostFinance's status codes travel in Strd/AddtlRmtInf.
                "?REJECT?0",
                "?ERROR?000",
            ]
        );
        assert_eq!(
            st.entries[0].entry_info.as_deref(),
            Some("UEBRIGE: 25-9034-2 FÜR KONTOAUSZUG PAPIER TÄGLICH")
        );
        assert_eq!(st.entries.iter().filter(|e| e.reversal).count(), 2);
    }

    #[test]
    fn ubs_v08_qr_and_rf_references() {
        let st = statement(UBS);
        assert_eq!(st.sequence.as_deref(), Some("122"));
        assert_eq!(st.opening.as_ref().map(|b| b.amount), Some(dec!(82721.95)));
        assert_eq!(st.closing.as_ref().map(|b| b.amount), Some(dec!(84515.25)));
        let [first, second, third] = &st.entries[..] else {
            panic!("3 entries expected")
        };
        assert_eq!(
            (first.amount, first.status.as_deref()),
            (dec!(474.4), Some("BOOK"))
        );
        let tx = &first.transactions[0];
        assert_eq!(tx.remittance, ["INVOICE R77561"]);
        assert_eq!(tx.debtor_name.as_deref(), Some("Jon Doe")); // Dbtr/Pty/Nm
        assert_eq!(tx.end_to_end_id.as_deref(), Some("80000004540000100095"));
        assert_eq!(second.batch_count, Some(1));
        assert_eq!(
            second.transactions[0].creditor_refs,
            ["RF38000000000000000000552"]
        );
        assert_eq!((third.credit, third.currency.as_str()), (false, "EUR"));
        assert_eq!(
            third.transactions[0].creditor_refs,
            ["000000270148751802165444888"]
        );
        assert_eq!(third.bank_ref.as_deref(), Some("0124571DN6195349"));
    }

    #[test]
    fn postfinance_054_esr_batch_of_five() {
        let st = statement(PF_054_ESR);
        let batch = &st.entries[0];
        assert_eq!(
            (batch.amount, batch.credit, batch.batch_count),
            (dec!(1537.00), true, Some(5))
        );
        assert_eq!(batch.transactions.len(), 5);
        let sum: Decimal = batch.transactions.iter().map(|t| t.amount.unwrap()).sum();
        assert_eq!(sum, dec!(1537.00));
        for tx in &batch.transactions {
            let [r] = &tx.creditor_refs[..] else {
                panic!("one reference each")
            };
            assert!(
                r.len() == 27 && r.bytes().all(|b| b.is_ascii_digit()),
                "{r}"
            );
            assert_eq!(tx.debtor_account.as_deref(), Some("CH5109000000250092291"));
            assert_eq!(tx.remittance, ["?REJECT?0"]);
        }
        assert_eq!(
            batch.transactions[0].end_to_end_id.as_deref(),
            Some("EndToEndId-001-02-02")
        );
        assert_eq!(batch.transactions[4].end_to_end_id, None);
        assert_eq!(batch.value_date, Some(date("2019-04-25")));
        // A CdtrRefInf without Tp still counts.
        assert_eq!(
            st.entries[1].transactions[0].creditor_refs,
            ["100041698214115449371805270"]
        );
    }

    #[test]
    fn stuzza_namespace_is_not_iso_but_reads_the_same() {
        let file = sample(STUZZA);
        assert_eq!(file.version, "camt.053.001.02");
        let st = &file.statements[0];
        assert_eq!(st.sequence.as_deref(), Some("201900002")); // LglSeqNb only
        assert!(st
            .entries
            .iter()
            .all(|e| e.credit && e.status.as_deref() == Some("BOOK")));
        let refs: Vec<&str> = txs(st)
            .flat_map(|t| &t.creditor_refs)
            .map(String::as_str)
            .collect();
        assert_eq!(refs, ["201912341234", "201912341234", "2019456456"]);
        let e2e: Vec<&str> = txs(st).filter_map(|t| t.end_to_end_id.as_deref()).collect();
        assert_eq!(e2e, ["Text Muster", "Test Muster", "2019456456"]);
        assert_eq!(
            st.entries[2].transactions[0].debtor_name.as_deref(),
            Some("Testzahlung Zwei")
        );
    }

    #[test]
    fn finnish_cr_only_file_gets_real_line_numbers() {
        let st = statement(FI_054);
        let lines: Vec<u32> = st.entries.iter().map(|e| e.line).collect();
        // Lines as `tr '\r' '\n' | grep -n '<Ntry>'` counts them.
        assert_eq!(lines, [117, 247, 364, 537, 718, 936]);
        // Several Strd in one TxDtls; the RF reference loses its trailing space.
        assert_eq!(
            st.entries[0].transactions[0].creditor_refs,
            ["3900", "12344"]
        );
        assert_eq!(
            st.entries[2].transactions[0].creditor_refs,
            ["RF7812345", "RF0812344"]
        );
        // FX: the transaction amount is the EUR TxAmt, not the USD InstdAmt.
        let fx = &st.entries[4].transactions[0];
        assert_eq!(
            (fx.amount, fx.currency.as_deref()),
            (Some(dec!(500.00)), Some("EUR"))
        );
        let last = &st.entries[5];
        assert_eq!(
            (last.status.as_deref(), last.reversal),
            (Some("INFO"), true)
        );
        assert_eq!(last.booking_date, Some(date("2009-10-29")));
        assert_eq!(last.value_date, None);
    }

    #[test]
    fn finnish_053_comments_and_summarised_batches() {
        let st = statement(FI_053);
        assert_eq!(st.account, "FI7433010001222090"); // not the RltdAcct
        let salaries = &st.entries[0];
        assert_eq!(
            (salaries.batch_count, salaries.transactions.len()),
            (Some(4), 1)
        );
        assert_eq!(salaries.transactions[0].amount, None);
        // Two TxDtls and no Btch block.
        assert_eq!(st.entries[9].batch_count, Some(2));
        let refs: Vec<&str> = txs(&st)
            .flat_map(|t| &t.creditor_refs)
            .map(String::as_str)
            .collect();
        assert_eq!(refs, ["3900", "RF98123456789012", "RF98123456789012"]);
    }

    #[test]
    fn genkgo_quirks() {
        let st = statement(GENKGO_053);
        assert_eq!(st.account, "NL26VAYB8060476890"); // Othr/Id
        let e = &st.entries[0];
        assert_eq!(
            (e.amount, e.value_date),
            (dec!(8.85), Some(date("2015-01-02")))
        );
        assert_eq!(e.transactions[0].amount, Some(dec!(105.750)));
        assert_eq!(e.transactions[0].creditor_refs, ["4654654654654654"]);

        let st = statement(GENKGO_054);
        let e = &st.entries[0];
        assert_eq!(
            (e.amount, e.currency.as_str(), e.credit),
            (dec!(200000), "SEK", false)
        );
        // NbOfTxs says 2; all three TxDtls are kept.
        assert_eq!((e.batch_count, e.transactions.len()), (Some(2), 3));
        let third = &e.transactions[2];
        assert_eq!(
            third.remittance,
            [
                "Unstructured Remittance Information V3 block 1",
                "Unstructured Remittance Information V3 block 2",
                "Additional Remittance Information V3 block 1",
                "Additional Remittance Information V3 block 2",
            ]
        );
        assert_eq!(
            third.creditor_refs,
            ["Ref number V3 block 1", "Ref number V3 block 2"]
        );
        assert_eq!(third.debtor_name.as_deref(), Some("UNIFITS GmbH"));
        assert_eq!(third.currency.as_deref(), Some("CHF"));
    }

    #[test]
    fn wise_datetime_and_no_details() {
        let st = statement(WISE);
        assert_eq!(st.account, "11111111");
        let e = &st.entries[0];
        assert_eq!(
            (e.amount, e.status.as_deref()),
            (dec!(195.86), Some("BOOK"))
        );
        assert_eq!(e.booking_date, Some(date("2023-06-21")));
        assert_eq!((e.transactions.len(), e.batch_count, e.line), (0, None, 91));
    }

    #[test]
    fn chdd_refunds_are_reversals() {
        let st = statement(PF_054_CHDD);
        let flags: Vec<(bool, bool)> = st.entries.iter().map(|e| (e.credit, e.reversal)).collect();
        assert_eq!(
            flags,
            [(true, false), (true, false), (false, true), (false, true)]
        );
        let first = &st.entries[0].transactions[0];
        assert_eq!(first.remittance, ["Mitteilung 132"]);
        assert_eq!(
            first.debtor_account.as_deref(),
            Some("CH4409000000495962779")
        );
    }

    #[test]
    fn notprovided_is_never_an_end_to_end_id() {
        let mut seen = 0;
        for dir in ["camt053", "camt054"] {
            for f in std::fs::read_dir(format!("{SAMPLES}{dir}")).unwrap() {
                let path = format!("{dir}/{}", f.unwrap().file_name().to_string_lossy());
                for st in sample(&path).statements {
                    for tx in txs(&st) {
                        let id = tx.end_to_end_id.as_deref();
                        assert!(!id.is_some_and(
                            |id| id.eq_ignore_ascii_case("NOTPROVIDED") || id.is_empty()
                        ));
                        seen += usize::from(id.is_some());
                    }
                }
            }
        }
        assert!(seen > 50, "{seen}");
    }

    #[test]
    fn amounts_as_banks_write_them() {
        for (text, value) in [
            ("01.00", dec!(1)),
            ("474.4", dec!(474.40)),
            ("105.750", dec!(105.75)),
            (" 7 ", dec!(7)),
        ] {
            let file = parse(one_entry(text, "EUR", "CRDT").as_bytes(), "t.xml").unwrap();
            assert_eq!(file.statements[0].entries[0].amount, value, "{text}");
        }
    }

    #[test]
    fn bad_amounts_name_the_line_and_text() {
        for text in ["12,50", "abc", "", "1_000", "1.2.3", "1e5", "-5.00"] {
            let (line, message) = at(parse(one_entry(text, "EUR", "CRDT").as_bytes(), "t.xml"));
            assert_eq!(line, 8, "{text}: {message}");
            assert!(message.contains(&format!("{text:?}")), "{message}");
        }
    }

    #[test]
    fn an_amount_beyond_the_bound_names_its_line() {
        let (line, message) = at(parse(
            one_entry("1000000000000000.00", "EUR", "CRDT").as_bytes(),
            "t.xml",
        ));
        assert_eq!(line, 8);
        assert!(message.contains("out of range"), "{message}");
        assert!(parse(
            one_entry("999999999999999.99", "EUR", "CRDT").as_bytes(),
            "t.xml"
        )
        .is_err());
        assert!(parse(
            one_entry("999999999999999", "EUR", "CRDT").as_bytes(),
            "t.xml"
        )
        .is_ok());
    }

    #[test]
    fn bad_currency_and_direction_are_errors() {
        let (line, message) = at(parse(one_entry("1.00", "EU", "CRDT").as_bytes(), "t.xml"));
        assert_eq!(line, 8);
        assert!(message.contains("\"EU\""), "{message}");
        assert!(parse(one_entry("1.00", "eur", "CRDT").as_bytes(), "t.xml").is_err());
        let (line, message) = at(parse(one_entry("1.00", "EUR", "CRED").as_bytes(), "t.xml"));
        assert_eq!(line, 9);
        assert!(message.contains("CRED"), "{message}");
        // No Ccy attribute: the account currency applies.
        let xml = one_entry("1.00", "EUR", "DBIT").replace(r#" Ccy="EUR""#, "");
        let e = &parse(xml.as_bytes(), "t.xml").unwrap().statements[0].entries[0];
        assert_eq!((e.currency.as_str(), e.credit), ("CHF", false));
    }

    #[test]
    fn an_entry_without_amount_is_an_error_not_skipped() {
        let xml = one_entry("1.00", "EUR", "CRDT").replace(r#"<Amt Ccy="EUR">1.00</Amt>"#, "");
        let (line, message) = at(parse(xml.as_bytes(), "t.xml"));
        assert_eq!(line, 7);
        assert!(message.contains("Amt"), "{message}");
    }

    #[test]
    fn truncated_and_malformed_xml_give_a_line() {
        // Cut Nordea after line 100: the error points at the end of what is left.
        let full = bytes(NORDEA);
        let cut = full
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .nth(99)
            .unwrap()
            .0
            + 1;
        let (line, message) = at(parse(&full[..cut], NORDEA));
        assert_eq!(line, 100, "{message}");
        // Cut mid-tag.
        let (line, _) = at(parse(&full[..cut + 5], NORDEA));
        assert!((100..=101).contains(&line), "{line}");

        let xml = "<Document>\n<BkToCstmrStmt>\n<Stmt>\n</Stmx>\n</BkToCstmrStmt>\n</Document>\n";
        let (line, message) = at(parse(xml.as_bytes(), "t.xml"));
        assert_eq!(line, 4, "{message}");
        // The same with CR-only line ends.
        let (line, _) = at(parse(xml.replace('\n', "\r").as_bytes(), "t.xml"));
        assert_eq!(line, 4);
    }

    #[test]
    fn bom_crlf_leading_blank_lines_and_comments() {
        let xml = one_entry("12<!-- split -->.50", "EUR", "CRDT")
            .replace("<Ntry>", "<!-- c --><Ntry><!-- c -->");
        let xml = format!(
            "\u{FEFF}\r\n\r\n{}",
            xml.replace('\n', "\r\n").replace('"', "'")
        );
        let file = parse(xml.as_bytes(), "t.xml").unwrap();
        let e = &file.statements[0].entries[0];
        assert_eq!((e.amount, e.line), (dec!(12.50), 9));
        assert_eq!(file.version, "camt.053.001.02");
    }

    #[test]
    fn non_camt_xml_is_unknown_and_names_its_root() {
        let invoice = r#"<?xml version="1.0"?><Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"><ID>1</ID></Invoice>"#;
        match parse(invoice.as_bytes(), "inv.xml") {
            Err(StatementError::Unknown { why, .. }) => assert!(why.contains("<Invoice>"), "{why}"),
            other => panic!("{other:?}"),
        }
        let report = r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.052.001.02"><BkToCstmrAcctRpt/></Document>"#;
        match parse(report.as_bytes(), "rpt.xml") {
            Err(StatementError::Unknown { why, .. }) => {
                assert!(why.contains("BkToCstmrAcctRpt"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn version_falls_back_to_the_message_type() {
        let xml = one_entry("1.00", "EUR", "CRDT").replace(
            r#" xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02""#,
            "",
        );
        assert_eq!(parse(xml.as_bytes(), "t.xml").unwrap().version, "camt.053");
        let ntfctn = one_entry("1.00", "EUR", "CRDT")
            .replace("camt.053.001.02", "camt.054.001.11")
            .replace("BkToCstmrStmt>", "BkToCstmrDbtCdtNtfctn>")
            .replace("Stmt>", "Ntfctn>");
        let file = parse(ntfctn.as_bytes(), "t.xml").unwrap();
        assert_eq!(
            (file.format, file.version.as_str()),
            (Format::Camt054, "camt.054.001.11")
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused_clearly() {
        let xml = one_entry("1.00", "EUR", "CRDT").replace("S1", "Z\u{FC}rich");
        let latin1: Vec<u8> = xml
            .chars()
            .map(|c| u8::try_from(u32::from(c)).unwrap())
            .collect();
        let (line, message) = at(parse(&latin1, "t.xml"));
        assert_eq!(line, 5);
        assert!(
            message.contains("UTF-8") && message.contains("0xFC"),
            "{message}"
        );
    }
}
