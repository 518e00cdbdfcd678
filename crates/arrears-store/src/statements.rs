//! Bank statement import: credits matched to open items and applied, in one
//! transaction per file. Which items a credit pays, and whether it is applied or only
//! suggested, is `arrears_statements::matching`; here the candidates are loaded and
//! the outcome recorded.

use crate::customer::mark_changed;
use crate::db::Db;
use std::fmt::Write as _;

use chrono::NaiveDate;
use rusqlite::{params, Connection, OptionalExtension};
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{dec, Result, Store, StoreError};
use arrears_statements::matching::{self, Candidate, Lookup};
use arrears_statements::{Entry, Statement, StatementFile, Transaction};

pub use arrears_statements::matching::{Allocation, CreditStatus, MatchOptions};

#[derive(Debug, Clone, Serialize)]
pub struct CreditOutcome {
    pub line: u32,
    pub amount: Decimal,
    pub currency: String,
    pub status: CreditStatus,
    pub method: Option<&'static str>,
    pub confidence: Option<Decimal>,
    /// Applied allocations, or the suggestion when `status` is `review`.
    pub allocations: Vec<Allocation>,
    pub unapplied: Decimal,
    pub note: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub file: String,
    pub format: String,
    pub version: String,
    /// The file was imported before (same bytes): nothing was done.
    pub duplicate_file: bool,
    pub statements: usize,
    /// Statements already imported from another file: skipped whole.
    pub duplicate_statements: usize,
    pub credits: usize,
    pub matched: usize,
    pub partial: usize,
    pub review: usize,
    pub unmatched: usize,
    pub debits: usize,
    /// Reversals and entries not booked (pending, info): recorded, never applied.
    pub skipped: usize,
    pub applied: Vec<(String, Decimal)>,
    pub outcomes: Vec<CreditOutcome>,
}

/// A key that recognises a statement in any file: its account, reference, sequence,
/// balances and entries. Independent of the file's bytes, so a re-export of the
/// same statement is recognised too.
fn content_key(s: &Statement) -> String {
    let mut text = String::new();
    let _ = write!(
        text,
        "{}|{}|{:?}|{:?}|{:?}|{:?}",
        s.account, s.id, s.sequence, s.currency, s.opening, s.closing
    );
    for e in &s.entries {
        let _ = write!(
            text,
            "|{}{}{}{:?}{:?}{:?}",
            e.amount, e.currency, e.credit, e.booking_date, e.value_date, e.bank_ref
        );
    }
    hex(&Sha256::digest(text.as_bytes()))
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn items_by_document(tx: &Connection, docs: &[String], currency: &str) -> Result<Vec<Candidate>> {
    if docs.is_empty() {
        return Ok(vec![]);
    }
    let json = serde_json::to_string(docs).unwrap_or_else(|_| "[]".into());
    let mut st = tx.prepare_cached(
        "SELECT id, customer_id, document_no, open_amount FROM items
         WHERE status = 'open' AND currency = ?2
           AND UPPER(document_no) IN (SELECT value FROM json_each(?1))
         ORDER BY due_date, id",
    )?;
    let rows = st.query_map(params![json, currency], row_open)?;
    rows.map(|r| r.map_err(Into::into).and_then(finish_open))
        .collect()
}

type RawOpen = (i64, i64, String, String);

fn row_open(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawOpen> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn finish_open((id, customer_id, document_no, open): RawOpen) -> Result<Candidate> {
    Ok(Candidate {
        id,
        customer_id,
        document_no,
        open: dec("items.open_amount", &open)?,
    })
}

/// The open items of one currency, for `matching::find`.
struct Items<'a> {
    tx: &'a Connection,
    currency: &'a str,
}

impl Lookup for Items<'_> {
    type Error = StoreError;

    fn by_documents(&mut self, docs: &[String]) -> Result<Vec<Candidate>> {
        items_by_document(self.tx, docs, self.currency)
    }

    fn customers_named(&mut self, name: &str) -> Result<Vec<i64>> {
        let mut st = self
            .tx
            .prepare_cached("SELECT id FROM customers WHERE name = ?1 COLLATE NOCASE LIMIT 2")?;
        let ids = st
            .query_map([name], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<i64>>>()?;
        Ok(ids)
    }

    fn open_items(&mut self, customer_id: i64) -> Result<Vec<Candidate>> {
        let mut st = self.tx.prepare_cached(
            "SELECT id, customer_id, document_no, open_amount FROM items
             WHERE status = 'open' AND customer_id = ?1 AND currency = ?2 ORDER BY due_date, id",
        )?;
        let open = st
            .query_map(params![customer_id, self.currency], row_open)?
            .map(|r| r.map_err(Into::into).and_then(finish_open))
            .collect();
        open
    }

    fn with_open_amount(&mut self, amount: Decimal) -> Result<Vec<Candidate>> {
        let mut st = self.tx.prepare_cached(
            "SELECT id, customer_id, document_no, open_amount FROM items
             WHERE status = 'open' AND currency = ?2 AND open_amount = ?1 ORDER BY due_date, id LIMIT 2",
        )?;
        let same = st
            .query_map(params![amount.to_string(), self.currency], row_open)?
            .map(|r| r.map_err(Into::into).and_then(finish_open))
            .collect();
        same
    }
}

fn opt_date(d: Option<NaiveDate>) -> Option<String> {
    d.map(|d| d.to_string())
}

impl Store {
    /// [`Store::import_statement`] with its audit record, in one transaction.
    pub fn import_statement_as(
        &mut self,
        principal: &str,
        name: &str,
        raw: &[u8],
        file: &StatementFile,
        opts: &MatchOptions,
    ) -> Result<ImportReport> {
        self.audited(principal, "statement.import", name, |st| {
            let r = st.import_statement(name, raw, file, opts)?;
            let after = serde_json::json!({
                "file": r.file, "format": r.format, "duplicate_file": r.duplicate_file,
                "credits": r.credits, "matched": r.matched, "partial": r.partial,
                "review": r.review, "unmatched": r.unmatched, "applied": r.applied,
            });
            Ok((r, serde_json::Value::Null, after))
        })
    }

    /// Imports one statement file: keeps its bytes, skips statements seen before,
    /// matches and applies every booked credit, and records everything found — all
    /// in one transaction. Payments it records have the source `bank:<account>`.
    pub fn import_statement(
        &mut self,
        name: &str,
        raw: &[u8],
        file: &StatementFile,
        opts: &MatchOptions,
    ) -> Result<ImportReport> {
        let mut report = ImportReport {
            file: name.to_string(),
            format: file.format.to_string(),
            version: file.version.clone(),
            statements: file.statements.len(),
            ..ImportReport::default()
        };
        let sha = hex(&Sha256::digest(raw));
        // A savepoint, so the import can also run inside an audited transaction.
        // A payment needs a day: the bank's value or booking date, else the day the
        // statement came in.
        let imported_on = self.clock.now().date_naive();
        let tx = self.write_tx()?;
        let seen: Option<i64> = tx
            .query_row(
                "SELECT id FROM statement_files WHERE sha256 = ?1",
                [&sha],
                |r| r.get(0),
            )
            .optional()?;
        if seen.is_some() {
            report.duplicate_file = true;
            report.duplicate_statements = file.statements.len();
            return Ok(report);
        }
        tx.execute(
            "INSERT INTO statement_files(name, sha256, format, version, imported_at, content)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                name,
                sha,
                file.format.to_string(),
                file.version,
                self.clock.now().to_rfc3339(),
                raw
            ],
        )?;
        let file_id = tx.last_insert_rowid();
        for s in &file.statements {
            let key = content_key(s);
            let dup: Option<i64> = tx
                .query_row(
                    "SELECT id FROM statements WHERE content_key = ?1",
                    [&key],
                    |r| r.get(0),
                )
                .optional()?;
            if dup.is_some() {
                report.duplicate_statements += 1;
                continue;
            }
            tx.execute(
                "INSERT INTO statements(file_id, content_key, statement_ref, sequence, account, currency, opening, closing)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    file_id,
                    key,
                    s.id,
                    s.sequence,
                    s.account,
                    s.currency,
                    s.opening.as_ref().map(|b| format!("{} {} {}", b.date, b.amount, b.currency)),
                    s.closing.as_ref().map(|b| format!("{} {} {}", b.date, b.amount, b.currency)),
                ],
            )?;
            let statement_id = tx.last_insert_rowid();
            for (entry_no, e) in s.entries.iter().enumerate() {
                if !e.credit {
                    report.debits += 1;
                    continue;
                }
                let booked = e
                    .status
                    .as_deref()
                    .is_none_or(|s| s.eq_ignore_ascii_case("BOOK"));
                if e.reversal || !booked {
                    report.skipped += 1;
                    continue;
                }
                for c in matching::credits_of(e) {
                    let outcome = apply_credit(
                        &tx,
                        statement_id,
                        &s.account,
                        &key,
                        e,
                        entry_no as u32 + 1,
                        c.tx_no,
                        c.amount,
                        &c.transaction,
                        c.note,
                        opts,
                        imported_on,
                    )?;
                    report.credits += 1;
                    match outcome.status {
                        CreditStatus::Matched => report.matched += 1,
                        CreditStatus::Partial => report.partial += 1,
                        CreditStatus::Review => report.review += 1,
                        CreditStatus::Unmatched => report.unmatched += 1,
                    }
                    if matches!(
                        outcome.status,
                        CreditStatus::Matched | CreditStatus::Partial
                    ) {
                        let applied: Decimal = outcome.allocations.iter().map(|a| a.amount).sum();
                        match report
                            .applied
                            .iter_mut()
                            .find(|(c, _)| *c == outcome.currency)
                        {
                            Some((_, v)) => *v += applied,
                            None => report.applied.push((outcome.currency.clone(), applied)),
                        }
                    }
                    report.outcomes.push(outcome);
                }
            }
        }
        tx.commit()?;
        Ok(report)
    }
}

/// A credit as recorded, for the review queue and reports.
#[derive(Debug, Clone, Serialize)]
pub struct CreditView {
    pub id: i64,
    pub file: String,
    pub line: u32,
    pub account: String,
    pub amount: Decimal,
    pub currency: String,
    pub value_date: Option<String>,
    pub status: String,
    pub method: Option<String>,
    pub confidence: Option<String>,
    pub customer_id: Option<i64>,
    pub applied: Decimal,
    pub unapplied: Decimal,
    pub end_to_end_id: Option<String>,
    pub refs: String,
    pub remittance: String,
    pub debtor_name: Option<String>,
    pub note: String,
    /// (document number, amount, applied|suggested)
    pub allocations: Vec<(String, Decimal, String)>,
}

/// What a person decides for a credit in the review queue.
#[derive(Debug, Clone)]
pub enum Resolution {
    /// Apply what is unapplied of the credit to these items, in this order.
    Apply(Vec<i64>),
    /// Not a customer payment (a refund, a transfer between own accounts…).
    Dismiss,
}

impl Store {
    /// Credits, newest first; `review_only`: the review queue (unmatched, suggested,
    /// or with an amount left unapplied).
    pub fn list_credits(&self, review_only: bool, limit: usize) -> Result<Vec<CreditView>> {
        self.credits(None, review_only, limit)
    }

    fn credits(&self, id: Option<i64>, review_only: bool, limit: usize) -> Result<Vec<CreditView>> {
        let mut st = self.conn()?.prepare_cached(
            "SELECT c.id, f.name, c.line, s.account, c.amount, c.currency, c.value_date, c.status, c.method,
                    c.confidence, c.customer_id, c.applied, c.unapplied, c.end_to_end_id, c.refs,
                    c.remittance, c.debtor_name, c.note
             FROM statement_credits c JOIN statements s ON s.id = c.statement_id
             JOIN statement_files f ON f.id = s.file_id
             WHERE (?3 IS NULL OR c.id = ?3)
               AND (NOT ?1 OR c.status IN ('review', 'unmatched')
                    OR (c.status IN ('matched', 'partial') AND CAST(c.unapplied AS REAL) > 0))
             ORDER BY c.id DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![review_only, limit as i64, id], |r| {
            Ok((
                (
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u32>(2)?,
                    r.get::<_, String>(3)?,
                ),
                (
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ),
                (
                    r.get::<_, String>(7)?,
                    r.get::<_, Option<String>>(8)?,
                    r.get::<_, Option<String>>(9)?,
                ),
                (
                    r.get::<_, Option<i64>>(10)?,
                    r.get::<_, String>(11)?,
                    r.get::<_, String>(12)?,
                ),
                (
                    r.get::<_, Option<String>>(13)?,
                    r.get::<_, String>(14)?,
                    r.get::<_, String>(15)?,
                ),
                (r.get::<_, Option<String>>(16)?, r.get::<_, String>(17)?),
            ))
        })?;
        let mut out = Vec::new();
        for r in rows {
            let (
                (id, file, line, account),
                (amount, currency, value_date),
                (status, method, confidence),
                (customer_id, applied, unapplied),
                (end_to_end_id, refs, remittance),
                (debtor_name, note),
            ) = r?;
            let mut a = self.conn()?.prepare_cached(
                "SELECT i.document_no, a.amount, a.kind FROM credit_allocations a
                 JOIN items i ON i.id = a.item_id WHERE a.credit_id = ?1 ORDER BY i.due_date, i.id",
            )?;
            let allocations = a
                .query_map([id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })?
                .map(|r| {
                    let (d, amt, k) = r?;
                    Ok((d, dec("credit_allocations.amount", &amt)?, k))
                })
                .collect::<Result<Vec<_>>>()?;
            out.push(CreditView {
                id,
                file,
                line,
                account,
                amount: dec("statement_credits.amount", &amount)?,
                currency,
                value_date,
                status,
                method,
                confidence,
                customer_id,
                applied: dec("statement_credits.applied", &applied)?,
                unapplied: dec("statement_credits.unapplied", &unapplied)?,
                end_to_end_id,
                refs,
                remittance,
                debtor_name,
                note,
                allocations,
            });
        }
        Ok(out)
    }

    /// The open item with this document number (the CLI names items so).
    pub fn open_item_by_document(&self, document_no: &str) -> Result<i64> {
        let mut st = self.conn()?.prepare_cached(
            "SELECT id FROM items WHERE document_no = ?1 AND status = 'open' LIMIT 2",
        )?;
        let ids = st
            .query_map([document_no], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<i64>>>()?;
        match ids.as_slice() {
            [id] => Ok(*id),
            [] => Err(super::StoreError::NotFound(format!(
                "open item `{document_no}`"
            ))),
            _ => Err(super::StoreError::Invalid(format!(
                "several open items have document number `{document_no}`"
            ))),
        }
    }

    pub fn credit(&self, id: i64) -> Result<CreditView> {
        self.credits(Some(id), false, 1)?
            .pop()
            .ok_or_else(|| super::StoreError::NotFound(format!("credit {id}")))
    }

    /// Settles a credit from the review queue: applies its unapplied amount to the
    /// given items (due order as given) or dismisses it, with the person's reason.
    pub fn resolve_credit(
        &mut self,
        id: i64,
        how: &Resolution,
        reason: &str,
    ) -> Result<CreditView> {
        let c = self.credit(id)?;
        if !matching::in_review_queue(&c.status, c.unapplied) {
            return Err(super::StoreError::State(format!(
                "credit {id} is {} and not in the review queue",
                c.status
            )));
        }
        if reason.trim().is_empty() {
            return Err(super::StoreError::Invalid(
                "a resolution needs a reason".into(),
            ));
        }
        let today = self.clock.now().date_naive().to_string();
        let tx = self.write_tx()?;
        match how {
            Resolution::Dismiss => {
                tx.execute(
                    "UPDATE statement_credits SET status = 'dismissed', note = ?2 WHERE id = ?1",
                    params![id, reason],
                )?;
            }
            Resolution::Apply(items) => {
                if items.is_empty() {
                    return Err(super::StoreError::Invalid("name at least one item".into()));
                }
                let mut open = Vec::new();
                for item in items {
                    let row: Option<(i64, String, String, String, String)> = tx
                        .query_row(
                            "SELECT customer_id, document_no, open_amount, currency, status FROM items WHERE id = ?1",
                            [item],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                        )
                        .optional()?;
                    let (customer_id, document_no, amount, currency, status) =
                        row.ok_or_else(|| super::StoreError::NotFound(format!("item {item}")))?;
                    if currency != c.currency {
                        return Err(super::StoreError::Invalid(format!(
                            "item {document_no} is in {currency}, the credit in {}",
                            c.currency
                        )));
                    }
                    if status != "open" {
                        return Err(super::StoreError::State(format!(
                            "item {document_no} is not open"
                        )));
                    }
                    open.push(Candidate {
                        id: *item,
                        customer_id,
                        document_no,
                        open: dec("items.open_amount", &amount)?,
                    });
                }
                let (allocs, left) = matching::allocate(&open, c.unapplied);
                tx.execute(
                    "DELETE FROM credit_allocations WHERE credit_id = ?1 AND kind = 'suggested'",
                    [id],
                )?;
                for (n, a) in allocs.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO credit_allocations(credit_id, item_id, amount, kind) VALUES (?1, ?2, ?3, 'applied')
                         ON CONFLICT(credit_id, item_id) DO UPDATE SET amount = amount + excluded.amount, kind = 'applied'",
                        params![id, a.item_id, a.amount.to_string()],
                    )?;
                    apply_to_item(&tx, a.item_id, a.amount)?;
                    let customer = open
                        .iter()
                        .find(|o| o.id == a.item_id)
                        .map(|o| o.customer_id)
                        .unwrap_or_default();
                    tx.execute(
                        "INSERT INTO payments(source, external_id, customer_id, item_id, amount, currency, value_date, reference)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![
                            format!("bank:{}", c.account),
                            format!("credit:{id}:resolved:{n}:{}", a.item_id),
                            customer,
                            a.item_id,
                            a.amount.to_string(),
                            c.currency,
                            // The bank gave no date: the day it is resolved.
                            c.value_date.clone().unwrap_or_else(|| today.clone()),
                            c.end_to_end_id.clone().unwrap_or_default(),
                        ],
                    )?;
                    mark_changed(&Db::Lite(&tx), customer)?;
                }
                let applied = c.applied + (c.unapplied - left);
                tx.execute(
                    "UPDATE statement_credits SET status = 'resolved', applied = ?2, unapplied = ?3,
                         customer_id = COALESCE(customer_id, ?4), note = ?5 WHERE id = ?1",
                    params![id, applied.to_string(), left.to_string(), open.first().map(|o| o.customer_id), reason],
                )?;
            }
        }
        tx.commit()?;
        self.credit(id)
    }
}

#[allow(clippy::too_many_arguments)]
fn apply_credit(
    tx: &Connection,
    statement_id: i64,
    account: &str,
    key: &str,
    e: &Entry,
    entry_no: u32,
    tx_no: u32,
    amount: Decimal,
    t: &Transaction,
    note: Option<String>,
    opts: &MatchOptions,
    imported_on: NaiveDate,
) -> Result<CreditOutcome> {
    let currency = t
        .currency
        .clone()
        .filter(|_| e.transactions.len() > 1)
        .unwrap_or_else(|| e.currency.clone());
    let found = matching::find(
        &mut Items {
            tx,
            currency: &currency,
        },
        t,
        amount,
    )?;
    let d = matching::decide(found.as_ref(), amount, &currency, opts);
    let out = CreditOutcome {
        line: e.line,
        amount,
        currency: currency.clone(),
        status: d.status,
        method: found.as_ref().map(|f| f.method),
        confidence: found.as_ref().map(|f| f.confidence),
        allocations: d.allocations,
        unapplied: d.unapplied,
        note: note
            .into_iter()
            .chain(d.notes)
            .filter(|n| !n.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
    };
    let customer_id = found
        .as_ref()
        .and_then(|f| f.items.first())
        .map(|o| o.customer_id);
    tx.execute(
        "INSERT INTO statement_credits(statement_id, line, entry_no, tx_no, amount, currency, booking_date,
             value_date, end_to_end_id, refs, remittance, debtor_name, debtor_account, status, method,
             confidence, customer_id, applied, unapplied, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
        params![
            statement_id,
            e.line,
            entry_no,
            tx_no,
            amount.to_string(),
            currency,
            opt_date(e.booking_date),
            opt_date(e.value_date),
            t.end_to_end_id,
            t.creditor_refs.join(" "),
            t.remittance.join("\n"),
            t.debtor_name,
            t.debtor_account,
            out.status.as_str(),
            out.method,
            out.confidence.map(|c| c.to_string()),
            customer_id,
            (amount - out.unapplied).to_string(),
            out.unapplied.to_string(),
            out.note,
        ],
    )?;
    let credit_id = tx.last_insert_rowid();
    let applied = matches!(out.status, CreditStatus::Matched | CreditStatus::Partial);
    let value_date = e.value_date.or(e.booking_date).unwrap_or(imported_on);
    for (n, a) in out.allocations.iter().enumerate() {
        tx.execute(
            "INSERT INTO credit_allocations(credit_id, item_id, amount, kind) VALUES (?1, ?2, ?3, ?4)",
            params![credit_id, a.item_id, a.amount.to_string(), if applied { "applied" } else { "suggested" }],
        )?;
        if !applied {
            continue;
        }
        apply_to_item(tx, a.item_id, a.amount)?;
        let customer: i64 = tx.query_row(
            "SELECT customer_id FROM items WHERE id = ?1",
            [a.item_id],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO payments(source, external_id, customer_id, item_id, amount, currency, value_date, reference)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                format!("bank:{account}"),
                format!("{key}:{entry_no}:{tx_no}:{n}"),
                customer,
                a.item_id,
                a.amount.to_string(),
                currency,
                value_date.to_string(),
                t.end_to_end_id.clone().or_else(|| t.creditor_refs.first().cloned()).unwrap_or_default(),
            ],
        )?;
        mark_changed(&Db::Lite(tx), customer)?;
    }
    Ok(out)
}

/// Lowers an item's open amount; at zero the item is cleared (its case closes on
/// the next run).
fn apply_to_item(tx: &Connection, item_id: i64, amount: Decimal) -> Result<()> {
    let open: String = tx.query_row(
        "SELECT open_amount FROM items WHERE id = ?1",
        [item_id],
        |r| r.get(0),
    )?;
    let left = dec("items.open_amount", &open)? - amount;
    let left = left.max(Decimal::ZERO);
    tx.execute(
        "UPDATE items SET open_amount = ?2, status = CASE WHEN ?3 THEN 'cleared' ELSE status END WHERE id = ?1",
        params![item_id, left.to_string(), left == Decimal::ZERO],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrears_core::domain::{Batch, CustomerInfo, ItemInput};
    use arrears_core::money::Currency;
    use arrears_statements::{Format, Statement};
    use rust_decimal_macros::dec;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn setup() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("t.db")).unwrap();
        let customer = |code: &str, name: &str| CustomerInfo {
            company: "ACME".into(),
            code: code.into(),
            name: name.into(),
            country: "DE".into(),
            email: None,
            phone: None,
            language: None,
            timezone: None,
            credit_limit: None,
            street: None,
            postal_code: None,
            city: None,
            dunning: None,
        };
        let item = |c: &str, doc: &str, amount: Decimal, due: &str| ItemInput {
            source: "erp".into(),
            external_id: doc.into(),
            company: "ACME".into(),
            customer: c.into(),
            document_no: doc.into(),
            document_date: d("2026-09-01"),
            due_date: d(due),
            original_amount: amount,
            open_amount: amount,
            currency: Currency::parse("EUR").unwrap(),
            hold: None,
            original_document: None,
        };
        s.ingest(&Batch {
            customers: vec![customer("M1", "Muster GmbH"), customer("B1", "Beta AG")],
            items: vec![
                item("M1", "1245", dec!(120.00), "2026-10-01"),
                item("M1", "INV-1002", dec!(250.00), "2026-10-05"),
                item("M1", "INV-1003", dec!(80.00), "2026-10-07"),
                item("M1", "INV-2001", dec!(75.50), "2026-10-09"),
                item("B1", "B-1", dec!(60.00), "2026-10-01"),
                item("B1", "B-2", dec!(40.00), "2026-10-02"),
            ],
            ..Batch::default()
        })
        .unwrap();
        (dir, s)
    }

    fn credit(line: u32, amount: Decimal, t: Transaction) -> Entry {
        Entry {
            line,
            amount,
            currency: "EUR".into(),
            credit: true,
            reversal: false,
            status: Some("BOOK".into()),
            booking_date: Some(d("2026-11-20")),
            value_date: Some(d("2026-11-20")),
            bank_ref: Some(format!("REF{line}")),
            batch_count: None,
            transactions: vec![t],
            entry_info: None,
        }
    }

    fn statement(entries: Vec<Entry>) -> StatementFile {
        StatementFile {
            format: Format::Camt053,
            version: "camt.053.001.02".into(),
            statements: vec![Statement {
                id: "STMT-1".into(),
                sequence: Some("1".into()),
                account: "DE89370400440532013000".into(),
                currency: Some("EUR".into()),
                opening: None,
                closing: None,
                entries,
            }],
        }
    }

    fn open(s: &Store, doc: &str) -> (Decimal, String) {
        let (a, st): (String, String) = s
            .conn()
            .unwrap()
            .query_row(
                "SELECT open_amount, status FROM items WHERE document_no = ?1",
                [doc],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        (a.parse().unwrap(), st)
    }

    fn count(s: &Store, sql: &str) -> i64 {
        s.conn().unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    fn file() -> StatementFile {
        let mut debit = credit(90, dec!(500), Transaction::default());
        debit.credit = false;
        let mut reversal = credit(
            95,
            dec!(60.00),
            Transaction {
                creditor_refs: vec!["B-1".into()],
                ..Transaction::default()
            },
        );
        reversal.reversal = true;
        statement(vec![
            // A Finnish-style padded numeric reference naming document 1245.
            credit(
                10,
                dec!(120.00),
                Transaction {
                    creditor_refs: vec!["00000000000000001245".into()],
                    ..Transaction::default()
                },
            ),
            // The invoice number in the text.
            credit(
                20,
                dec!(250.00),
                Transaction {
                    remittance: vec!["Payment for invoice INV-1002, thanks".into()],
                    ..Transaction::default()
                },
            ),
            // Cut mid-number at 35 characters by the bank, and short: partial.
            credit(
                30,
                dec!(50.00),
                Transaction {
                    remittance: vec!["ACOMPTE INV-10".into(), "03 REST FOLLOWS".into()],
                    ..Transaction::default()
                },
            ),
            // By end-to-end id, more than owed: the rest stays unapplied.
            credit(
                40,
                dec!(100.00),
                Transaction {
                    end_to_end_id: Some("INV-2001".into()),
                    ..Transaction::default()
                },
            ),
            // Payer name and an exact amount: a suggestion, not applied at 0.9.
            credit(
                50,
                dec!(40.00),
                Transaction {
                    debtor_name: Some("beta ag".into()),
                    ..Transaction::default()
                },
            ),
            // Nothing to go on.
            credit(60, dec!(999.99), Transaction::default()),
            debit,
            reversal,
        ])
    }

    #[test]
    fn credits_are_matched_by_reference_text_e2e_and_payer_and_applied_once() {
        let (_dir, mut s) = setup();
        let f = file();
        let r = s
            .import_statement("a.xml", b"file one", &f, &MatchOptions::default())
            .unwrap();
        let by_line = |l: u32| r.outcomes.iter().find(|o| o.line == l).unwrap();
        assert_eq!(
            (
                r.credits,
                r.matched,
                r.partial,
                r.review,
                r.unmatched,
                r.debits,
                r.skipped
            ),
            (6, 2, 2, 1, 1, 1, 1)
        );
        assert_eq!(by_line(10).method, Some("reference"));
        assert_eq!(open(&s, "1245"), (dec!(0), "cleared".into()));
        assert_eq!(by_line(20).method, Some("invoice_number"));
        assert_eq!(open(&s, "INV-1002"), (dec!(0), "cleared".into()));
        assert_eq!(by_line(30).status, CreditStatus::Partial);
        assert_eq!(open(&s, "INV-1003"), (dec!(30.00), "open".into()));
        assert_eq!(by_line(40).method, Some("end_to_end_id"));
        assert_eq!(by_line(40).unapplied, dec!(24.50));
        assert_eq!(open(&s, "INV-2001"), (dec!(0), "cleared".into()));
        assert_eq!(by_line(50).status, CreditStatus::Review);
        assert_eq!(by_line(50).allocations[0].document_no, "B-2");
        assert_eq!(
            open(&s, "B-2"),
            (dec!(40.00), "open".into()),
            "suggestion only"
        );
        assert_eq!(
            open(&s, "B-1"),
            (dec!(60.00), "open".into()),
            "reversal ignored"
        );
        assert_eq!(by_line(60).status, CreditStatus::Unmatched);
        assert_eq!(r.applied, vec![("EUR".to_string(), dec!(495.50))]);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM payments"), 4);
        assert_eq!(
            count(&s, "SELECT COUNT(*) FROM statement_credits WHERE status IN ('review','unmatched') OR CAST(unapplied AS REAL) > 0"),
            3,
            "the review queue: the suggestion, the unmatched credit, the overpayment"
        );
        assert_eq!(
            count(
                &s,
                "SELECT COUNT(*) FROM customers WHERE code = 'M1' AND dirty <> 0"
            ),
            1
        );

        // The same file again: nothing happens.
        let again = s
            .import_statement("a.xml", b"file one", &f, &MatchOptions::default())
            .unwrap();
        assert!(again.duplicate_file);
        // The same statement inside another file: skipped, nothing paid twice.
        let other = s
            .import_statement("b.xml", b"file two", &f, &MatchOptions::default())
            .unwrap();
        assert_eq!((other.duplicate_statements, other.credits), (1, 0));
        assert_eq!(count(&s, "SELECT COUNT(*) FROM payments"), 4);
        assert_eq!(open(&s, "INV-1003"), (dec!(30.00), "open".into()));
        // Both files are kept as given.
        assert_eq!(count(&s, "SELECT COUNT(*) FROM statement_files"), 2);
    }

    /// camt.053 allows an entry without booking or value date: its payment is dated
    /// the day the statement came in, never left without a date (which no reader
    /// of payments could parse).
    #[test]
    fn a_credit_without_dates_pays_on_the_day_it_came_in() {
        let (_dir, s) = setup();
        let at = "2026-11-25T08:00:00Z".parse().unwrap();
        let mut s = s.with_clock(std::sync::Arc::new(arrears_core::clock::FixedClock(at)));
        let mut e = credit(
            6,
            dec!(60.00),
            Transaction {
                remittance: vec!["Invoice B-1".into()],
                ..Transaction::default()
            },
        );
        e.booking_date = None;
        e.value_date = None;
        let r = s
            .import_statement("d.xml", b"d", &statement(vec![e]), &MatchOptions::default())
            .unwrap();
        assert_eq!(r.matched, 1, "{r:?}");
        assert_eq!(
            count(
                &s,
                "SELECT COUNT(*) FROM payments WHERE value_date = '2026-11-25'"
            ),
            1
        );
    }

    #[test]
    fn a_lower_threshold_applies_payer_and_amount_matches() {
        let (_dir, mut s) = setup();
        let f = statement(vec![credit(
            5,
            dec!(100.00),
            Transaction {
                debtor_name: Some("Beta AG".into()),
                ..Transaction::default()
            },
        )]);
        let r = s
            .import_statement(
                "c.xml",
                b"c",
                &f,
                &MatchOptions {
                    min_confidence: dec!(0.8),
                },
            )
            .unwrap();
        let o = &r.outcomes[0];
        assert_eq!(
            (o.status, o.method),
            (CreditStatus::Matched, Some("payer_and_balance"))
        );
        assert_eq!(open(&s, "B-1").1, "cleared");
        assert_eq!(open(&s, "B-2").1, "cleared");
    }

    #[test]
    fn the_review_queue_is_settled_by_applying_or_dismissing() {
        let (_dir, mut s) = setup();
        s.import_statement("a.xml", b"file one", &file(), &MatchOptions::default())
            .unwrap();
        let queue = s.list_credits(true, 100).unwrap();
        let lines: Vec<u32> = queue.iter().map(|c| c.line).collect();
        assert_eq!(lines, vec![60, 50, 40], "newest first");
        let suggested = queue.iter().find(|c| c.line == 50).unwrap();
        assert_eq!(suggested.allocations[0].0, "B-2");
        assert_eq!(suggested.allocations[0].2, "suggested");
        let b2: i64 = s
            .conn()
            .unwrap()
            .query_row("SELECT id FROM items WHERE document_no = 'B-2'", [], |r| {
                r.get(0)
            })
            .unwrap();

        assert!(matches!(
            s.resolve_credit(suggested.id, &Resolution::Apply(vec![b2]), " "),
            Err(crate::StoreError::Invalid(_))
        ));
        let done = s
            .resolve_credit(
                suggested.id,
                &Resolution::Apply(vec![b2]),
                "called Beta AG: confirmed",
            )
            .unwrap();
        assert_eq!(
            (done.status.as_str(), done.applied, done.unapplied),
            ("resolved", dec!(40.00), dec!(0))
        );
        assert_eq!(open(&s, "B-2"), (dec!(0), "cleared".into()));
        assert!(matches!(
            s.resolve_credit(suggested.id, &Resolution::Apply(vec![b2]), "again"),
            Err(crate::StoreError::State(_))
        ));
        let unmatched = queue.iter().find(|c| c.line == 60).unwrap();
        s.resolve_credit(
            unmatched.id,
            &Resolution::Dismiss,
            "refund from the tax office",
        )
        .unwrap();
        let lines: Vec<u32> = s
            .list_credits(true, 100)
            .unwrap()
            .iter()
            .map(|c| c.line)
            .collect();
        assert_eq!(lines, vec![40], "only the overpayment is left");
        assert_eq!(count(&s, "SELECT COUNT(*) FROM payments"), 5);
    }

    #[test]
    fn money_a_batch_does_not_detail_is_one_more_credit() {
        let (_dir, mut s) = setup();
        let mut e = credit(7, dec!(200.00), Transaction::default());
        e.transactions = vec![
            Transaction {
                amount: Some(dec!(120.00)),
                creditor_refs: vec!["1245".into()],
                ..Transaction::default()
            },
            Transaction {
                remittance: vec!["summarised".into()],
                ..Transaction::default()
            },
        ];
        e.batch_count = Some(4);
        let r = s
            .import_statement("s.xml", b"s", &statement(vec![e]), &MatchOptions::default())
            .unwrap();
        let amounts: Vec<(Decimal, CreditStatus)> =
            r.outcomes.iter().map(|o| (o.amount, o.status)).collect();
        assert_eq!(
            amounts,
            vec![
                (dec!(120.00), CreditStatus::Matched),
                (dec!(80.00), CreditStatus::Review)
            ]
        );
        assert!(
            r.outcomes[1].note.contains("account for 120.00"),
            "{:?}",
            r.outcomes[1]
        );
    }
}
