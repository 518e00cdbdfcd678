//! Bank statement import: credits matched to open items and applied, in one
//! transaction per file. Which items a credit pays, and whether it is applied or only
//! suggested, is `arrears_statements::matching`; here the candidates are loaded and
//! the outcome recorded.

use crate::customer::mark_changed;
use crate::db::{args, Arg, Db};
use std::fmt::Write as _;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{dec, Result, Store, StoreError};
use arrears_core::domain::ChangeCause;
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

fn items_by_document(db: &Db, docs: &[String], currency: &str) -> Result<Vec<Candidate>> {
    if docs.is_empty() {
        return Ok(vec![]);
    }
    candidates(
        db,
        &format!(
            "SELECT id, customer_id, document_no, open_amount FROM items
             WHERE status = 'open' AND currency = ?2
               AND UPPER(document_no) IN {}
             ORDER BY due_date, id",
            db.in_list("?1", "TEXT")
        ),
        args![Db::json_list(docs), currency],
    )
}

/// Open items as matching sees them: `id, customer_id, document_no, open_amount`.
fn candidates(db: &Db, sql: &str, args: &[&dyn Arg]) -> Result<Vec<Candidate>> {
    db.rows(sql, args)?
        .iter()
        .map(|r| {
            Ok(Candidate {
                id: r.get(0, "items.id")?,
                customer_id: r.get(1, "items.customer_id")?,
                document_no: r.get(2, "items.document_no")?,
                open: r.dec(3, "items.open_amount")?,
            })
        })
        .collect()
}

/// The open items of one currency, for `matching::find`.
struct Items<'a, 'c> {
    db: &'a Db<'c>,
    currency: &'a str,
}

impl Lookup for Items<'_, '_> {
    type Error = StoreError;

    fn by_documents(&mut self, docs: &[String]) -> Result<Vec<Candidate>> {
        items_by_document(self.db, docs, self.currency)
    }

    fn customers_named(&mut self, name: &str) -> Result<Vec<i64>> {
        // Case folded as SQLite's NOCASE does (ASCII letters): PostgreSQL's lower()
        // does so under the C locale, and its index on lower(name) serves it.
        let sql = match self.db {
            Db::Lite(_) => "SELECT id FROM customers WHERE name = ?1 COLLATE NOCASE LIMIT 2",
            Db::Pg(_) => "SELECT id FROM customers WHERE lower(name) = lower(?1) LIMIT 2",
        };
        self.db
            .rows(sql, args![name])?
            .iter()
            .map(|r| r.get(0, "customers.id"))
            .collect()
    }

    fn open_items(&mut self, customer_id: i64) -> Result<Vec<Candidate>> {
        candidates(
            self.db,
            "SELECT id, customer_id, document_no, open_amount FROM items
             WHERE status = 'open' AND customer_id = ?1 AND currency = ?2 ORDER BY due_date, id",
            args![customer_id, self.currency],
        )
    }

    fn with_open_amount(&mut self, amount: Decimal) -> Result<Vec<Candidate>> {
        // The amount as written, as SQLite compares its text: the same items on
        // both databases (PostgreSQL's NUMERIC keeps the scale it was given).
        let open = match self.db {
            Db::Lite(_) => "open_amount",
            Db::Pg(_) => "CAST(open_amount AS TEXT)",
        };
        candidates(
            self.db,
            &format!(
                "SELECT id, customer_id, document_no, open_amount FROM items
                 WHERE status = 'open' AND currency = ?2 AND {open} = ?1 ORDER BY due_date, id LIMIT 2"
            ),
            args![amount.to_string(), self.currency],
        )
    }
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
        let imported_at = self.clock.now().to_rfc3339();
        self.db().write(|db| {
            if db
                .row(
                    "SELECT id FROM statement_files WHERE sha256 = ?1",
                    args![sha],
                )?
                .is_some()
            {
                report.duplicate_file = true;
                report.duplicate_statements = file.statements.len();
                return Ok(report);
            }
            let file_id = inserted(
                db,
                "INSERT INTO statement_files(name, sha256, format, version, imported_at, content)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                args![
                    name,
                    sha,
                    file.format.to_string(),
                    file.version,
                    imported_at,
                    raw
                ],
            )?;
            for s in &file.statements {
                let key = content_key(s);
                if db
                    .row(
                        "SELECT id FROM statements WHERE content_key = ?1",
                        args![key],
                    )?
                    .is_some()
                {
                    report.duplicate_statements += 1;
                    continue;
                }
                let balance = |b: &Option<arrears_statements::Balance>| {
                    b.as_ref()
                        .map(|b| format!("{} {} {}", b.date, b.amount, b.currency))
                };
                let statement_id = inserted(
                    db,
                    "INSERT INTO statements(file_id, content_key, statement_ref, sequence, account, currency, opening, closing)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    args![
                        file_id,
                        key,
                        s.id,
                        s.sequence,
                        s.account,
                        s.currency,
                        balance(&s.opening),
                        balance(&s.closing),
                    ],
                )?;
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
                            db,
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
                            let applied: Decimal =
                                outcome.allocations.iter().map(|a| a.amount).sum();
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
            Ok(report)
        })
    }
}

/// Runs an insert of a table with an `id`: the new row's id.
fn inserted(db: &Db, sql: &str, args: &[&dyn Arg]) -> Result<i64> {
    db.prepare_insert(sql)?
        .insert(args)?
        .ok_or_else(|| StoreError::State(format!("nothing inserted by `{sql}`")))
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
        let db = self.db();
        let rows = db.rows(
            &format!(
                "SELECT c.id, f.name, c.line, s.account, c.amount, c.currency, c.value_date, c.status, c.method,
                        c.confidence, c.customer_id, c.applied, c.unapplied, c.end_to_end_id, c.refs,
                        c.remittance, c.debtor_name, c.note
                 FROM statement_credits c JOIN statements s ON s.id = c.statement_id
                 JOIN statement_files f ON f.id = s.file_id
                 WHERE (CAST(?3 AS BIGINT) IS NULL OR c.id = ?3)
                   AND (?1 = 0 OR c.status IN ('review', 'unmatched')
                        OR (c.status IN ('matched', 'partial') AND {} > 0))
                 ORDER BY c.id DESC LIMIT ?2",
                db.number("c.unapplied")
            ),
            args![review_only, limit as i64, id],
        )?;
        let mut out = Vec::new();
        for r in rows {
            let id: i64 = r.get(0, "statement_credits.id")?;
            let allocations = db
                .rows(
                    "SELECT i.document_no, a.amount, a.kind FROM credit_allocations a
                     JOIN items i ON i.id = a.item_id WHERE a.credit_id = ?1 ORDER BY i.due_date, i.id",
                    args![id],
                )?
                .iter()
                .map(|a| {
                    Ok((
                        a.get(0, "items.document_no")?,
                        a.dec(1, "credit_allocations.amount")?,
                        a.get(2, "credit_allocations.kind")?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            let amount = |i: usize, column: &'static str| -> Result<Decimal> {
                dec(column, &r.get::<String>(i, column)?)
            };
            out.push(CreditView {
                id,
                file: r.get(1, "statement_files.name")?,
                line: line_no(r.get(2, "statement_credits.line")?)?,
                account: r.get(3, "statements.account")?,
                amount: amount(4, "statement_credits.amount")?,
                currency: r.get(5, "statement_credits.currency")?,
                value_date: r.get(6, "statement_credits.value_date")?,
                status: r.get(7, "statement_credits.status")?,
                method: r.get(8, "statement_credits.method")?,
                confidence: r.get(9, "statement_credits.confidence")?,
                customer_id: r.get(10, "statement_credits.customer_id")?,
                applied: amount(11, "statement_credits.applied")?,
                unapplied: amount(12, "statement_credits.unapplied")?,
                end_to_end_id: r.get(13, "statement_credits.end_to_end_id")?,
                refs: r.get(14, "statement_credits.refs")?,
                remittance: r.get(15, "statement_credits.remittance")?,
                debtor_name: r.get(16, "statement_credits.debtor_name")?,
                note: r.get(17, "statement_credits.note")?,
                allocations,
            });
        }
        Ok(out)
    }

    /// The open item with this document number (the CLI names items so).
    pub fn open_item_by_document(&self, document_no: &str) -> Result<i64> {
        let ids = self
            .db()
            .rows(
                "SELECT id FROM items WHERE document_no = ?1 AND status = 'open' LIMIT 2",
                args![document_no],
            )?
            .iter()
            .map(|r| r.get(0, "items.id"))
            .collect::<Result<Vec<i64>>>()?;
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
        let today = self.clock.now().date_naive();
        self.db().write(|db| {
            match how {
                Resolution::Dismiss => {
                    db.execute(
                        "UPDATE statement_credits SET status = 'dismissed', note = ?2 WHERE id = ?1",
                        args![id, reason],
                    )?;
                }
                Resolution::Apply(items) => {
                    if items.is_empty() {
                        return Err(super::StoreError::Invalid("name at least one item".into()));
                    }
                    let mut open = Vec::new();
                    for item in items {
                        let r = db
                            .row(
                                "SELECT customer_id, document_no, open_amount, currency, status FROM items WHERE id = ?1",
                                args![item],
                            )?
                            .ok_or_else(|| super::StoreError::NotFound(format!("item {item}")))?;
                        let document_no: String = r.get(1, "items.document_no")?;
                        let currency: String = r.get(3, "items.currency")?;
                        if currency != c.currency {
                            return Err(super::StoreError::Invalid(format!(
                                "item {document_no} is in {currency}, the credit in {}",
                                c.currency
                            )));
                        }
                        if r.get::<String>(4, "items.status")? != "open" {
                            return Err(super::StoreError::State(format!(
                                "item {document_no} is not open"
                            )));
                        }
                        open.push(Candidate {
                            id: *item,
                            customer_id: r.get(0, "items.customer_id")?,
                            document_no,
                            open: r.dec(2, "items.open_amount")?,
                        });
                    }
                    let (allocs, left) = matching::allocate(&open, c.unapplied);
                    db.execute(
                        "DELETE FROM credit_allocations WHERE credit_id = ?1 AND kind = 'suggested'",
                        args![id],
                    )?;
                    // Its value date, else its booking date (as on import); the bank
                    // gave neither: the day it is resolved.
                    let booked: Option<String> = db
                        .row(
                            "SELECT booking_date FROM statement_credits WHERE id = ?1",
                            args![id],
                        )?
                        .map(|r| r.get(0, "statement_credits.booking_date"))
                        .transpose()?
                        .flatten();
                    let paid_on = match c.value_date.as_ref().or(booked.as_ref()) {
                        Some(v) => crate::date("statement_credits.value_date", v)?,
                        None => today,
                    };
                    for (n, a) in allocs.iter().enumerate() {
                        allocate_applied(db, id, a.item_id, a.amount)?;
                        apply_to_item(db, a.item_id, a.amount, paid_on)?;
                        let customer = open
                            .iter()
                            .find(|o| o.id == a.item_id)
                            .map(|o| o.customer_id)
                            .unwrap_or_default();
                        let value_date = paid_on.to_string();
                        db.execute(
                            "INSERT INTO payments(source, external_id, customer_id, item_id, amount, currency, value_date, reference)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                            args![
                                format!("bank:{}", c.account),
                                format!("credit:{id}:resolved:{n}:{}", a.item_id),
                                customer,
                                a.item_id,
                                a.amount,
                                c.currency,
                                value_date,
                                c.end_to_end_id.clone().unwrap_or_default(),
                            ],
                        )?;
                        mark_changed(db, customer)?;
                    }
                    let applied = c.applied + (c.unapplied - left);
                    db.execute(
                        "UPDATE statement_credits SET status = 'resolved', applied = ?2, unapplied = ?3,
                             customer_id = COALESCE(customer_id, ?4), note = ?5 WHERE id = ?1",
                        args![id, applied, left, open.first().map(|o| o.customer_id), reason],
                    )?;
                }
            }
            Ok(())
        })?;
        self.credit(id)
    }
}

/// Records `amount` of credit `credit_id` as applied to `item_id`, added to what
/// the credit applied to it before. The sum is exact: SQLite would add the two
/// amounts' text as floating point numbers.
fn allocate_applied(db: &Db, credit_id: i64, item_id: i64, amount: Decimal) -> Result<()> {
    let before = db.row(
        "SELECT amount FROM credit_allocations WHERE credit_id = ?1 AND item_id = ?2",
        args![credit_id, item_id],
    )?;
    match before {
        Some(r) => {
            let before = r.dec(0, "credit_allocations.amount")?;
            db.execute(
                "UPDATE credit_allocations SET amount = ?3, kind = 'applied'
                 WHERE credit_id = ?1 AND item_id = ?2",
                args![credit_id, item_id, before + amount],
            )?;
        }
        None => {
            db.execute(
                "INSERT INTO credit_allocations(credit_id, item_id, amount, kind) VALUES (?1, ?2, ?3, 'applied')",
                args![credit_id, item_id, amount],
            )?;
        }
    }
    Ok(())
}

/// A credit's line number as stored.
fn line_no(v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt {
        column: "statement_credits.line",
        value: v.to_string(),
    })
}

#[allow(clippy::too_many_arguments)]
fn apply_credit(
    db: &Db,
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
            db,
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
    let credit_id = inserted(
        db,
        "INSERT INTO statement_credits(statement_id, line, entry_no, tx_no, amount, currency, booking_date,
             value_date, end_to_end_id, refs, remittance, debtor_name, debtor_account, status, method,
             confidence, customer_id, applied, unapplied, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
        args![
            statement_id,
            i64::from(e.line),
            i64::from(entry_no),
            i64::from(tx_no),
            amount,
            currency,
            e.booking_date,
            e.value_date,
            t.end_to_end_id,
            t.creditor_refs.join(" "),
            t.remittance.join("\n"),
            t.debtor_name,
            t.debtor_account,
            out.status.as_str(),
            out.method,
            out.confidence,
            customer_id,
            amount - out.unapplied,
            out.unapplied,
            out.note,
        ],
    )?;
    let applied = matches!(out.status, CreditStatus::Matched | CreditStatus::Partial);
    let value_date = e.value_date.or(e.booking_date).unwrap_or(imported_on);
    for (n, a) in out.allocations.iter().enumerate() {
        db.execute(
            "INSERT INTO credit_allocations(credit_id, item_id, amount, kind) VALUES (?1, ?2, ?3, ?4)",
            args![credit_id, a.item_id, a.amount, if applied { "applied" } else { "suggested" }],
        )?;
        if !applied {
            continue;
        }
        apply_to_item(db, a.item_id, a.amount, value_date)?;
        let customer: i64 = db
            .row(
                "SELECT customer_id FROM items WHERE id = ?1",
                args![a.item_id],
            )?
            .ok_or_else(|| StoreError::NotFound(format!("item {}", a.item_id)))?
            .get(0, "items.customer_id")?;
        db.execute(
            "INSERT INTO payments(source, external_id, customer_id, item_id, amount, currency, value_date, reference)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            args![
                format!("bank:{account}"),
                format!("{key}:{entry_no}:{tx_no}:{n}"),
                customer,
                a.item_id,
                a.amount,
                currency,
                value_date,
                t.end_to_end_id.clone().or_else(|| t.creditor_refs.first().cloned()).unwrap_or_default(),
            ],
        )?;
        mark_changed(db, customer)?;
    }
    Ok(out)
}

/// Lowers an item's open amount by a payment of `on`; at zero the item is
/// cleared (its case closes on the next run).
fn apply_to_item(db: &Db, item_id: i64, amount: Decimal, on: NaiveDate) -> Result<()> {
    let open: String = db
        .row(
            "SELECT open_amount FROM items WHERE id = ?1",
            args![item_id],
        )?
        .ok_or_else(|| StoreError::NotFound(format!("item {item_id}")))?
        .get(0, "items.open_amount")?;
    let left = dec("items.open_amount", &open)? - amount;
    let left = left.max(Decimal::ZERO);
    db.execute(
        "UPDATE items SET open_amount = ?2, status = CASE WHEN ?3 <> 0 THEN 'cleared' ELSE status END WHERE id = ?1",
        args![item_id, left, left == Decimal::ZERO],
    )?;
    crate::history::note(db, on, ChangeCause::Payment, &[item_id])?;
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

    fn item(c: &str, doc: &str, amount: Decimal, due: &str) -> ItemInput {
        ItemInput {
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
        }
    }

    fn setup(s: &mut Store) {
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
        let r = s
            .db()
            .row(
                "SELECT open_amount, status FROM items WHERE document_no = ?1",
                args![doc],
            )
            .unwrap()
            .unwrap();
        (
            r.get::<String>(0, "open_amount").unwrap().parse().unwrap(),
            r.get(1, "status").unwrap(),
        )
    }

    fn count(s: &Store, sql: &str) -> i64 {
        s.db()
            .row(sql, args![])
            .unwrap()
            .unwrap()
            .get(0, "count")
            .unwrap()
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

    crate::on_both!(
        credits_are_matched_by_reference_text_e2e_and_payer_and_applied_once,
        |s| {
            setup(s);
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
            assert_eq!(open(s, "1245"), (dec!(0), "cleared".into()));
            assert_eq!(by_line(20).method, Some("invoice_number"));
            assert_eq!(open(s, "INV-1002"), (dec!(0), "cleared".into()));
            assert_eq!(by_line(30).status, CreditStatus::Partial);
            assert_eq!(open(s, "INV-1003"), (dec!(30.00), "open".into()));
            assert_eq!(by_line(40).method, Some("end_to_end_id"));
            assert_eq!(by_line(40).unapplied, dec!(24.50));
            assert_eq!(open(s, "INV-2001"), (dec!(0), "cleared".into()));
            assert_eq!(by_line(50).status, CreditStatus::Review);
            assert_eq!(by_line(50).allocations[0].document_no, "B-2");
            assert_eq!(
                open(s, "B-2"),
                (dec!(40.00), "open".into()),
                "suggestion only"
            );
            assert_eq!(
                open(s, "B-1"),
                (dec!(60.00), "open".into()),
                "reversal ignored"
            );
            assert_eq!(by_line(60).status, CreditStatus::Unmatched);
            assert_eq!(r.applied, vec![("EUR".to_string(), dec!(495.50))]);
            assert_eq!(count(s, "SELECT COUNT(*) FROM payments"), 4);
            assert_eq!(
            count(
                s,
                &format!(
                    "SELECT COUNT(*) FROM statement_credits WHERE status IN ('review','unmatched') OR {} > 0",
                    s.db().number("unapplied")
                )
            ),
            3,
            "the review queue: the suggestion, the unmatched credit, the overpayment"
        );
            assert_eq!(
                count(
                    s,
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
            assert_eq!(count(s, "SELECT COUNT(*) FROM payments"), 4);
            assert_eq!(open(s, "INV-1003"), (dec!(30.00), "open".into()));
            // Both files are kept as given.
            assert_eq!(count(s, "SELECT COUNT(*) FROM statement_files"), 2);
        }
    );

    // camt.053 allows an entry without booking or value date: its payment is dated
    // the day the statement came in, never left without a date (which no reader
    // of payments could parse).
    crate::on_both!(a_credit_without_dates_pays_on_the_day_it_came_in, |s| {
        setup(s);
        let at = "2026-11-25T08:00:00Z".parse().unwrap();
        s.clock = std::sync::Arc::new(arrears_core::clock::FixedClock(at));
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
                s,
                "SELECT COUNT(*) FROM payments WHERE value_date = '2026-11-25'"
            ),
            1
        );
        assert_eq!(
            count(
                s,
                "SELECT COUNT(*) FROM item_history WHERE on_date = '2026-11-25' AND cause = 'payment'"
            ),
            1
        );
    });

    crate::on_both!(a_lower_threshold_applies_payer_and_amount_matches, |s| {
        setup(s);
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
        assert_eq!(open(s, "B-1").1, "cleared");
        assert_eq!(open(s, "B-2").1, "cleared");
        // Cleared by the payment, on its value date.
        let b1 = s.open_item_by_document("B-1");
        assert!(b1.is_err(), "no longer open");
        let id: i64 = s
            .db()
            .row("SELECT id FROM items WHERE document_no = 'B-1'", args![])
            .unwrap()
            .unwrap()
            .get(0, "items.id")
            .unwrap();
        let h = s.item_history(id).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(
            (h[0].on, h[0].open_amount, h[0].cause),
            (d("2026-11-20"), dec!(0), ChangeCause::Payment)
        );
        assert_eq!(
            s.item_clearing(id).unwrap(),
            Some(crate::Clearing {
                on: d("2026-11-20"),
                by: ChangeCause::Payment
            })
        );
    });

    crate::on_both!(the_review_queue_is_settled_by_applying_or_dismissing, |s| {
        setup(s);
        s.import_statement("a.xml", b"file one", &file(), &MatchOptions::default())
            .unwrap();
        let queue = s.list_credits(true, 100).unwrap();
        let lines: Vec<u32> = queue.iter().map(|c| c.line).collect();
        assert_eq!(lines, vec![60, 50, 40], "newest first");
        let suggested = queue.iter().find(|c| c.line == 50).unwrap();
        assert_eq!(suggested.allocations[0].0, "B-2");
        assert_eq!(suggested.allocations[0].2, "suggested");
        let b2 = s.open_item_by_document("B-2").unwrap();
        assert!(matches!(
            s.open_item_by_document("1245"),
            Err(crate::StoreError::NotFound(_))
        ));

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
        assert_eq!(open(s, "B-2"), (dec!(0), "cleared".into()));
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
        assert_eq!(count(s, "SELECT COUNT(*) FROM payments"), 5);
    });

    crate::on_both!(money_a_batch_does_not_detail_is_one_more_credit, |s| {
        setup(s);
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
    });

    // A credit applied to an item again (the ERP still shows it open) adds to
    // what it applied before, exactly: SQLite would add the amounts' text as
    // floating point numbers, losing the scale (0.10 + 0.20 = 0.3) and digits
    // past the fifteenth (12345678901234.56 + 0.10 = 12345678901234.7).
    crate::on_both!(an_amount_applied_again_adds_up_exactly, |s| {
        setup(s);
        let small = item("M1", "INV-3001", dec!(0.10), "2026-10-01");
        let big = item("M1", "INV-3002", dec!(12345678901234.56), "2026-10-02");
        s.ingest(&Batch {
            items: vec![small.clone(), big.clone()],
            ..Batch::default()
        })
        .unwrap();
        let by_e2e = |line: u32, amount: Decimal, doc: &str| {
            credit(
                line,
                amount,
                Transaction {
                    end_to_end_id: Some(doc.into()),
                    ..Transaction::default()
                },
            )
        };
        let r = s
            .import_statement(
                "x.xml",
                b"x",
                &statement(vec![
                    by_e2e(1, dec!(0.30), "INV-3001"),
                    by_e2e(2, dec!(12345678901234.66), "INV-3002"),
                ]),
                &MatchOptions::default(),
            )
            .unwrap();
        let unapplied: Vec<Decimal> = r.outcomes.iter().map(|o| o.unapplied).collect();
        assert_eq!(unapplied, vec![dec!(0.20), dec!(0.10)], "{r:?}");
        // The ERP has not booked the payments yet: the items are open again.
        let reopened = |mut i: ItemInput, open: Decimal| {
            i.open_amount = open;
            i
        };
        s.ingest(&Batch {
            items: vec![reopened(small, dec!(0.20)), reopened(big, dec!(0.10))],
            ..Batch::default()
        })
        .unwrap();
        for o in &r.outcomes {
            let c = s
                .list_credits(true, 100)
                .unwrap()
                .into_iter()
                .find(|c| c.line == o.line)
                .unwrap();
            let item = o.allocations[0].item_id;
            s.resolve_credit(c.id, &Resolution::Apply(vec![item]), "paid twice")
                .unwrap();
        }
        let stored: Vec<String> = s
            .db()
            .rows(
                "SELECT a.amount FROM credit_allocations a JOIN items i ON i.id = a.item_id
                 WHERE i.document_no IN ('INV-3001', 'INV-3002') ORDER BY i.document_no",
                args![],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0, "amount").unwrap())
            .collect();
        assert_eq!(stored, ["0.30", "12345678901234.66"]);
        let views: Vec<(u32, Decimal, Decimal, String)> = s
            .list_credits(false, 2)
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c.line,
                    c.applied,
                    c.unapplied,
                    c.allocations[0].1.to_string(),
                )
            })
            .collect();
        assert_eq!(
            views,
            vec![
                (
                    2,
                    dec!(12345678901234.66),
                    dec!(0),
                    "12345678901234.66".into()
                ),
                (1, dec!(0.30), dec!(0), "0.30".into()),
            ]
        );
        assert_eq!(open(s, "INV-3001"), (dec!(0), "cleared".into()));
    });

    // The audited import lands with its audit record; an audited write that fails
    // after importing leaves neither the import nor a record (the import is a
    // savepoint inside the audited transaction).
    crate::on_both!(an_audited_import_lands_with_its_record_or_not_at_all, |s| {
        setup(s);
        let f = file();
        let failed: Result<()> = s.audited("alice", "statement.import", "b.xml", |st| {
            st.import_statement("b.xml", b"file one", &f, &MatchOptions::default())?;
            Err(StoreError::Invalid("changed my mind".into()))
        });
        assert!(matches!(failed, Err(StoreError::Invalid(_))));
        assert_eq!(count(s, "SELECT COUNT(*) FROM statement_files"), 0);
        assert_eq!(count(s, "SELECT COUNT(*) FROM payments"), 0);
        assert_eq!(open(s, "1245"), (dec!(120.00), "open".into()));
        assert!(s.audit_records(0, 10).unwrap().is_empty());
        let r = s
            .import_statement_as("alice", "a.xml", b"file one", &f, &MatchOptions::default())
            .unwrap();
        assert_eq!((r.credits, r.matched), (6, 2));
        assert_eq!(count(s, "SELECT COUNT(*) FROM payments"), 4);
        let log = s.audit_records(0, 10).unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(
            (
                log[0].principal.as_str(),
                log[0].action.as_str(),
                log[0].target.as_str()
            ),
            ("alice", "statement.import", "a.xml")
        );
        assert!(log[0].after.contains("\"matched\":2"), "{}", log[0].after);
    });
}
