//! CSV import of customers, open items and payments.
//!
//! [`parse_csv`] reads and validates a file into a [`Batch`]; it never writes to the
//! store. What to do with bad rows is the caller's policy, and the CLI's is:
//!
//! - by default a file with any bad row is rejected whole: every error is listed
//!   (line and column) and nothing is imported, so a partly-broken export can never
//!   leave the store half-updated;
//! - with `--skip-invalid` the valid rows are imported and the bad rows are written
//!   by [`write_rejects`] to `FILE.rejected.csv`, unchanged, with an extra `error`
//!   column, so nothing the user gave is lost. That file can be fixed and imported
//!   as is: an `error` column is accepted and ignored.
//!
//! With `--snapshot`, use [`Parsed::snapshot_sources`] rather than every source
//! in the file: a source that lost item rows to validation is not a complete list.
//!
//! # Format
//!
//! A header row is required; column order is free; unknown or repeated columns are
//! an error; `kind`, `company` and `customer` must be present, other columns may be
//! left out. Values are trimmed and an empty value counts as missing. Dates are
//! `YYYY-MM-DD`, amounts plain decimals (`1234.50`, never negative), currencies
//! ISO 4217 codes. Rows whose fields are all empty are skipped.
//!
//! - `kind`: `item`, `payment` or `customer`.
//! - `item`: required `external_id`, `company`, `customer`, `document_no`,
//!   `document_date`, `due_date` (not before `document_date`), `amount` (original
//!   amount), `currency`; optional `source` (default: the caller's default source),
//!   `open_amount` (default `amount`, at most `amount`, 0 clears the item),
//!   `block_reason` + `block_until` (dunning hold, `block_until` needs a reason),
//!   `original_document` (invoice a split / re-posted item replaces),
//!   `customer_name` + `country`, `email`, `phone` (customer details; these need
//!   `customer_name`, must agree between item rows of one customer, and are
//!   ignored when the file has a `customer` row for that customer).
//! - `payment`: required `external_id`, `company`, `customer`, `amount`, `currency`,
//!   `document_date` (value date); optional `source`, `document_no` (payment
//!   reference), `item_ref` (`external_id` of the paid item, same source).
//! - `customer`: required `company`, `customer`, `customer_name`; optional `amount`
//!   with `currency` (credit limit, both or neither), `country`, `email`, `phone`,
//!   and the postal address letters go to: `street`, `postal_code`, `city`.
//!   `source` is ignored: customers are keyed by company and code.
//!
//! A non-empty value in a column that does not apply to the row's kind is an error
//! (it would otherwise be dropped silently, and usually means a wrong `kind` or a
//! shifted column). `(source, external_id)` must be unique per kind within a file,
//! and `(company, customer)` among `customer` rows; both lines are reported.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use csv::StringRecord;
use rust_decimal::Decimal;
use serde::Serialize;

use arrears_core::domain::{Batch, CustomerInfo, Hold, ItemInput, PaymentInput};
use arrears_core::money::{check_amount, check_bound, parse_amount, Currency};

/// Every column the importer knows, in documentation order.
pub const COLUMNS: [&str; 22] = [
    "kind",
    "source",
    "external_id",
    "company",
    "customer",
    "customer_name",
    "document_no",
    "document_date",
    "due_date",
    "amount",
    "open_amount",
    "currency",
    "item_ref",
    "block_reason",
    "block_until",
    "original_document",
    "country",
    "email",
    "phone",
    "street",
    "postal_code",
    "city",
];

/// Columns without which no row of any kind can be valid.
const HEADER_REQUIRED: [Col; 3] = [Col::Kind, Col::Company, Col::Customer];

/// The column [`write_rejects`] adds; accepted and ignored on input so a fixed
/// rejects file can be imported again.
pub const ERROR_COLUMN: &str = "error";

/// One validation problem; `line` is the physical (1-based) line of the file where
/// the row starts, so it matches what an editor shows even after multi-line fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub line: usize,
    pub column: Option<String>,
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(c) => write!(f, "line {}, column {}: {}", self.line, c, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

/// Problems that make the whole file unusable, as opposed to [`RowError`]s.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: malformed csv at line {line}: {message}", path.display())]
    Malformed {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{}: no header row", path.display())]
    NoHeader { path: PathBuf },
    #[error("{}: bad header: {}", path.display(), header_problems(.unknown, .duplicate, .missing))]
    Header {
        path: PathBuf,
        unknown: Vec<String>,
        duplicate: Vec<String>,
        missing: Vec<String>,
    },
}

fn header_problems(unknown: &[String], duplicate: &[String], missing: &[String]) -> String {
    let quoted = |v: &[String]| {
        v.iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !unknown.is_empty() {
        parts.push(format!(
            "unknown column(s) {} (known: {})",
            quoted(unknown),
            COLUMNS.join(", ")
        ));
    }
    if !duplicate.is_empty() {
        parts.push(format!("column(s) given twice: {}", quoted(duplicate)));
    }
    if !missing.is_empty() {
        parts.push(format!("missing column(s) {}", quoted(missing)));
    }
    parts.join("; ")
}

/// The outcome of [`parse_csv`]: the valid rows as a batch, and the invalid ones.
#[derive(Debug)]
pub struct Parsed {
    /// Valid rows only; `snapshot_sources` is left empty for the caller to decide.
    pub batch: Batch,
    /// Data rows read (header and all-empty rows not counted).
    pub rows: usize,
    /// Every problem found, in file order.
    pub errors: Vec<RowError>,
    /// The rows with at least one error, exactly as read, with their line.
    pub rejected: Vec<(usize, StringRecord)>,
    /// The header row as read, for [`write_rejects`].
    pub headers: StringRecord,
    /// Line and record of each payment in `batch.payments`, in the same order, so a
    /// check against the store can still name the line.
    payment_rows: Vec<(usize, StringRecord)>,
}

impl Parsed {
    /// Refuses payments whose `item_ref` names an item that is neither in this file
    /// (same source) nor known to `exists(source, external_id)` — the store. Each
    /// becomes a row error on the `item_ref` column and leaves the batch.
    pub fn refuse_unknown_item_refs<E>(
        &mut self,
        mut exists: impl FnMut(&str, &str) -> Result<bool, E>,
    ) -> Result<(), E> {
        let in_file: HashSet<(&str, &str)> = self
            .batch
            .items
            .iter()
            .map(|i| (i.source.as_str(), i.external_id.as_str()))
            .collect();
        let mut unknown = Vec::new();
        for (k, p) in self.batch.payments.iter().enumerate() {
            let Some(r) = &p.item_ref else { continue };
            if !in_file.contains(&(p.source.as_str(), r.as_str())) && !exists(&p.source, r)? {
                unknown.push(k);
            }
        }
        for k in unknown.into_iter().rev() {
            let p = self.batch.payments.remove(k);
            let (line, record) = self.payment_rows.remove(k);
            self.errors.push(RowError {
                line,
                column: Some(Col::ItemRef.name().to_string()),
                message: format!(
                    "`{}` matches no item of source `{}` (in this file or imported before)",
                    p.item_ref.unwrap_or_default(),
                    p.source
                ),
            });
            self.rejected.push((line, record));
        }
        self.errors.sort_by_key(|e| e.line);
        self.rejected.sort_by_key(|r| r.0);
        Ok(())
    }

    /// Sources whose open items this file lists completely, for `--snapshot`.
    ///
    /// A source with a rejected row that may be an item is left out: clearing
    /// its "missing" items would close items that are merely mistyped.
    pub fn snapshot_sources(&self, default_source: &str) -> Vec<String> {
        let col = |name: &str| {
            self.headers
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(name))
        };
        let (kind_col, source_col) = (col("kind"), col("source"));
        let value = |rec: &StringRecord, c: Option<usize>| {
            c.and_then(|i| rec.get(i))
                .map(str::trim)
                .unwrap_or_default()
                .to_string()
        };
        let incomplete: HashSet<String> = self
            .rejected
            .iter()
            .filter(|(_, rec)| {
                !matches!(
                    Kind::parse(&value(rec, kind_col)),
                    Some(Kind::Payment | Kind::Customer)
                )
            })
            .map(|(_, rec)| {
                let s = value(rec, source_col);
                if s.is_empty() {
                    default_source.to_string()
                } else {
                    s
                }
            })
            .collect();
        let sources: BTreeSet<&str> = self
            .batch
            .items
            .iter()
            .map(|i| i.source.as_str())
            .filter(|s| !incomplete.contains(*s))
            .collect();
        sources.into_iter().map(String::from).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Col {
    Kind,
    Source,
    ExternalId,
    Company,
    Customer,
    CustomerName,
    DocumentNo,
    DocumentDate,
    DueDate,
    Amount,
    OpenAmount,
    Currency,
    ItemRef,
    BlockReason,
    BlockUntil,
    OriginalDocument,
    Country,
    Email,
    Phone,
    Street,
    PostalCode,
    City,
}

impl Col {
    const ALL: [Col; 22] = [
        Col::Kind,
        Col::Source,
        Col::ExternalId,
        Col::Company,
        Col::Customer,
        Col::CustomerName,
        Col::DocumentNo,
        Col::DocumentDate,
        Col::DueDate,
        Col::Amount,
        Col::OpenAmount,
        Col::Currency,
        Col::ItemRef,
        Col::BlockReason,
        Col::BlockUntil,
        Col::OriginalDocument,
        Col::Country,
        Col::Email,
        Col::Phone,
        Col::Street,
        Col::PostalCode,
        Col::City,
    ];

    fn name(self) -> &'static str {
        COLUMNS[self as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Item,
    Payment,
    Customer,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        // Spreadsheet users capitalise; the meaning is unambiguous either way.
        match s.trim().to_ascii_lowercase().as_str() {
            "item" => Some(Kind::Item),
            "payment" => Some(Kind::Payment),
            "customer" => Some(Kind::Customer),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Item => "item",
            Kind::Payment => "payment",
            Kind::Customer => "customer",
        }
    }

    fn uses(self, c: Col) -> bool {
        match self {
            // A postal address is the customer's, given once on its `customer` row.
            Kind::Item => !matches!(c, Col::ItemRef | Col::Street | Col::PostalCode | Col::City),
            Kind::Payment => matches!(
                c,
                Col::Kind
                    | Col::Source
                    | Col::ExternalId
                    | Col::Company
                    | Col::Customer
                    | Col::DocumentNo
                    | Col::DocumentDate
                    | Col::Amount
                    | Col::Currency
                    | Col::ItemRef
            ),
            // `source` describes where every row of an export comes from, so a
            // value there is expected even though customers are not keyed by it.
            Kind::Customer => matches!(
                c,
                Col::Kind
                    | Col::Source
                    | Col::Company
                    | Col::Customer
                    | Col::CustomerName
                    | Col::Amount
                    | Col::Currency
                    | Col::Country
                    | Col::Email
                    | Col::Phone
                    | Col::Street
                    | Col::PostalCode
                    | Col::City
            ),
        }
    }
}

/// Where each known column sits in the file's records.
struct Columns([Option<usize>; COLUMNS.len()]);

impl Columns {
    fn from_headers(path: &Path, headers: &StringRecord) -> Result<Columns, ImportError> {
        let mut idx = [None; COLUMNS.len()];
        let (mut unknown, mut duplicate) = (Vec::new(), Vec::new());
        let mut error_seen = false;
        for (i, h) in headers.iter().enumerate() {
            let name = h.trim().to_ascii_lowercase();
            if name == ERROR_COLUMN {
                if error_seen {
                    duplicate.push(name);
                }
                error_seen = true;
                continue;
            }
            match COLUMNS.iter().position(|c| *c == name) {
                Some(c) if idx[c].is_some() => duplicate.push(name),
                Some(c) => idx[c] = Some(i),
                None => unknown.push(h.to_string()),
            }
        }
        let missing: Vec<String> = HEADER_REQUIRED
            .iter()
            .filter(|c| idx[**c as usize].is_none())
            .map(|c| c.name().to_string())
            .collect();
        if unknown.is_empty() && duplicate.is_empty() && missing.is_empty() {
            Ok(Columns(idx))
        } else {
            Err(ImportError::Header {
                path: path.to_path_buf(),
                unknown,
                duplicate,
                missing,
            })
        }
    }

    fn get<'r>(&self, rec: &'r StringRecord, c: Col) -> Option<&'r str> {
        let v = rec.get(self.0[c as usize]?)?.trim();
        (!v.is_empty()).then_some(v)
    }
}

/// One record under validation; errors accumulate so a user sees all of them at once.
struct Row<'r> {
    line: usize,
    rec: &'r StringRecord,
    cols: &'r Columns,
    errors: Vec<RowError>,
}

impl<'r> Row<'r> {
    fn get(&self, c: Col) -> Option<&'r str> {
        self.cols.get(self.rec, c)
    }

    fn fail(&mut self, c: Col, message: impl Into<String>) {
        self.errors.push(RowError {
            line: self.line,
            column: Some(c.name().to_string()),
            message: message.into(),
        });
    }

    fn required(&mut self, c: Col, kind: Kind) -> Option<&'r str> {
        let v = self.get(c);
        if v.is_none() {
            self.fail(c, format!("required for {} rows", kind.name()));
        }
        v
    }

    fn date(&mut self, c: Col, v: Option<&str>) -> Option<NaiveDate> {
        let v = v?;
        let d = parse_date(v);
        if d.is_none() {
            self.fail(c, format!("`{v}` is not a date (expected YYYY-MM-DD)"));
        }
        d
    }

    fn amount(&mut self, c: Col, v: Option<&str>) -> Option<Decimal> {
        match parse_amount(v?) {
            Ok(a) if a < Decimal::ZERO => {
                self.fail(c, format!("must not be negative ({a})"));
                None
            }
            Ok(a) => Some(a),
            Err(e) => {
                self.fail(c, e.to_string());
                None
            }
        }
    }

    /// The amount bound and the currency's minor units (`10.001 EUR`, `100.50 JPY`
    /// are refused: rounding them here would change what the ERP says is owed).
    fn in_currency(&mut self, c: Col, amount: Option<Decimal>, currency: Option<Currency>) {
        let Some(a) = amount else { return };
        let checked = match currency {
            Some(cur) => check_amount(a, cur),
            None => check_bound(a),
        };
        if let Err(e) = checked {
            self.fail(c, e.to_string());
        }
    }

    fn currency(&mut self, c: Col, v: Option<&str>) -> Option<Currency> {
        match Currency::parse(v?) {
            Ok(cur) => Some(cur),
            Err(e) => {
                self.fail(c, e.to_string());
                None
            }
        }
    }
}

/// Strict `YYYY-MM-DD`: chrono alone would also take `2026-9-1`, which in a
/// day-first locale is just as likely to mean January.
fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let shaped = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        });
    if !shaped {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

enum Entry {
    // Boxed: an item is twice the size of the other variants.
    Item(Box<ItemInput>, Option<CustomerInfo>),
    Payment(PaymentInput),
    Customer(CustomerInfo),
}

struct RowResult {
    line: usize,
    record: StringRecord,
    entry: Option<Entry>,
    errors: Vec<RowError>,
}

fn parse_item(row: &mut Row, source: &str) -> Option<Entry> {
    let k = Kind::Item;
    let external_id = row.required(Col::ExternalId, k);
    let company = row.required(Col::Company, k);
    let customer = row.required(Col::Customer, k);
    let document_no = row.required(Col::DocumentNo, k);
    let v = row.required(Col::DocumentDate, k);
    let document_date = row.date(Col::DocumentDate, v);
    let v = row.required(Col::DueDate, k);
    let due_date = row.date(Col::DueDate, v);
    let v = row.required(Col::Amount, k);
    let amount = row.amount(Col::Amount, v);
    let v = row.get(Col::OpenAmount);
    let open_amount = row.amount(Col::OpenAmount, v);
    let v = row.required(Col::Currency, k);
    let currency = row.currency(Col::Currency, v);
    row.in_currency(Col::Amount, amount, currency);
    row.in_currency(Col::OpenAmount, open_amount, currency);

    if let (Some(a), Some(o)) = (amount, open_amount) {
        if o > a {
            row.fail(Col::OpenAmount, format!("{o} exceeds amount {a}"));
        }
    }
    if let (Some(doc), Some(due)) = (document_date, due_date) {
        if due < doc {
            row.fail(Col::DueDate, format!("{due} is before document_date {doc}"));
        }
    }

    let reason = row.get(Col::BlockReason);
    let v = row.get(Col::BlockUntil);
    let until = row.date(Col::BlockUntil, v);
    if reason.is_none() && v.is_some() {
        row.fail(Col::BlockUntil, "given without block_reason");
    }

    let name = row.get(Col::CustomerName);
    let country = row.get(Col::Country);
    let email = row.get(Col::Email);
    let phone = row.get(Col::Phone);
    if name.is_none() {
        // Customer details are stored as a whole; without a name we would have to
        // invent one and overwrite the real one.
        for (c, v) in [
            (Col::Country, country),
            (Col::Email, email),
            (Col::Phone, phone),
        ] {
            if v.is_some() {
                row.fail(c, "customer details on item rows need customer_name");
            }
        }
    }

    if !row.errors.is_empty() {
        return None;
    }
    let (
        Some(external_id),
        Some(company),
        Some(customer),
        Some(document_no),
        Some(document_date),
        Some(due_date),
        Some(amount),
        Some(currency),
    ) = (
        external_id,
        company,
        customer,
        document_no,
        document_date,
        due_date,
        amount,
        currency,
    )
    else {
        return None;
    };
    let info = name.map(|name| CustomerInfo {
        company: company.to_string(),
        code: customer.to_string(),
        name: name.to_string(),
        country: country.unwrap_or_default().to_string(),
        email: email.map(String::from),
        phone: phone.map(String::from),
        language: None,
        timezone: None,
        credit_limit: None,
        street: None,
        postal_code: None,
        city: None,
        dunning: None,
    });
    Some(Entry::Item(
        Box::new(ItemInput {
            source: source.to_string(),
            external_id: external_id.to_string(),
            company: company.to_string(),
            customer: customer.to_string(),
            document_no: document_no.to_string(),
            document_date,
            due_date,
            original_amount: amount,
            open_amount: open_amount.unwrap_or(amount),
            currency,
            hold: reason.map(|r| Hold {
                reason: r.to_string(),
                until,
            }),
            original_document: row.get(Col::OriginalDocument).map(String::from),
        }),
        info,
    ))
}

fn parse_payment(row: &mut Row, source: &str) -> Option<Entry> {
    let k = Kind::Payment;
    let external_id = row.required(Col::ExternalId, k);
    let company = row.required(Col::Company, k);
    let customer = row.required(Col::Customer, k);
    let v = row.required(Col::Amount, k);
    let amount = row.amount(Col::Amount, v);
    let v = row.required(Col::Currency, k);
    let currency = row.currency(Col::Currency, v);
    row.in_currency(Col::Amount, amount, currency);
    let v = row.required(Col::DocumentDate, k);
    let value_date = row.date(Col::DocumentDate, v);
    if !row.errors.is_empty() {
        return None;
    }
    let (
        Some(external_id),
        Some(company),
        Some(customer),
        Some(amount),
        Some(currency),
        Some(value_date),
    ) = (external_id, company, customer, amount, currency, value_date)
    else {
        return None;
    };
    Some(Entry::Payment(PaymentInput {
        source: source.to_string(),
        external_id: external_id.to_string(),
        company: company.to_string(),
        customer: customer.to_string(),
        amount,
        currency,
        value_date,
        reference: row.get(Col::DocumentNo).unwrap_or_default().to_string(),
        item_ref: row.get(Col::ItemRef).map(String::from),
    }))
}

fn parse_customer(row: &mut Row) -> Option<Entry> {
    let k = Kind::Customer;
    let company = row.required(Col::Company, k);
    let customer = row.required(Col::Customer, k);
    let name = row.required(Col::CustomerName, k);
    let (a, c) = (row.get(Col::Amount), row.get(Col::Currency));
    let amount = row.amount(Col::Amount, a);
    let currency = row.currency(Col::Currency, c);
    row.in_currency(Col::Amount, amount, currency);
    match (a, c) {
        (Some(_), None) => row.fail(Col::Currency, "required with a credit limit (amount)"),
        (None, Some(_)) => row.fail(Col::Amount, "credit limit required with currency"),
        _ => {}
    }
    if !row.errors.is_empty() {
        return None;
    }
    let (Some(company), Some(customer), Some(name)) = (company, customer, name) else {
        return None;
    };
    Some(Entry::Customer(CustomerInfo {
        company: company.to_string(),
        code: customer.to_string(),
        name: name.to_string(),
        country: row.get(Col::Country).unwrap_or_default().to_string(),
        email: row.get(Col::Email).map(String::from),
        phone: row.get(Col::Phone).map(String::from),
        language: None,
        timezone: None,
        credit_limit: amount.zip(currency),
        street: row.get(Col::Street).map(String::from),
        postal_code: row.get(Col::PostalCode).map(String::from),
        city: row.get(Col::City).map(String::from),
        dunning: None,
    }))
}

fn parse_row(line: usize, record: StringRecord, cols: &Columns, default_source: &str) -> RowResult {
    let mut row = Row {
        line,
        rec: &record,
        cols,
        errors: Vec::new(),
    };
    let kind = match row.get(Col::Kind) {
        None => {
            row.fail(Col::Kind, "required (item, payment or customer)");
            None
        }
        Some(k) => {
            let kind = Kind::parse(k);
            if kind.is_none() {
                row.fail(
                    Col::Kind,
                    format!("unknown kind `{k}` (expected item, payment or customer)"),
                );
            }
            kind
        }
    };
    let entry = kind.and_then(|kind| {
        for c in Col::ALL {
            if !kind.uses(c) && row.get(c).is_some() {
                row.fail(c, format!("does not apply to {} rows", kind.name()));
            }
        }
        let source = row.get(Col::Source).unwrap_or(default_source);
        match kind {
            Kind::Item => parse_item(&mut row, source),
            Kind::Payment => parse_payment(&mut row, source),
            Kind::Customer => parse_customer(&mut row),
        }
    });
    let errors = row.errors;
    RowResult {
        line,
        record,
        entry,
        errors,
    }
}

/// Customer name, country, email, phone as given on an item row.
type Details<'r> = [Option<&'r str>; 4];

fn shown(v: Option<&str>) -> String {
    v.map_or_else(|| "empty".to_string(), |v| format!("`{v}`"))
}

/// How many other lines a message names before it only counts the rest: a key
/// repeated on every row of a big file must not make an error report (and a rejects
/// file) that grows with the square of the file.
const LINES_SHOWN: usize = 5;

fn lines_text(lines: &[usize]) -> String {
    let list = lines
        .iter()
        .take(LINES_SHOWN)
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    match lines.len() {
        1 => format!("line {list}"),
        n if n > LINES_SHOWN => format!("lines {list} and {} more", n - LINES_SHOWN),
        _ => format!("lines {list}"),
    }
}

/// Checks that need more than one row: duplicate keys and disagreeing customer details.
/// They look at raw values, so a duplicate is reported even on a row that has other
/// errors: fixing those alone would not make the file importable.
///
/// Returns the customers that have a `customer` row: item rows do not describe them.
fn cross_check(
    results: &mut [RowResult],
    cols: &Columns,
    default_source: &str,
) -> HashSet<(String, String)> {
    let mut keys: BTreeMap<(Kind, String, String), Vec<usize>> = BTreeMap::new();
    let mut customer_rows: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, r) in results.iter().enumerate() {
        let get = |c| cols.get(&r.record, c);
        let company_code = || {
            Some((
                get(Col::Company)?.to_string(),
                get(Col::Customer)?.to_string(),
            ))
        };
        match get(Col::Kind).and_then(Kind::parse) {
            Some(k @ (Kind::Item | Kind::Payment)) => {
                if let Some(id) = get(Col::ExternalId) {
                    let source = get(Col::Source).unwrap_or(default_source);
                    keys.entry((k, source.to_string(), id.to_string()))
                        .or_default()
                        .push(i);
                }
            }
            Some(Kind::Customer) => {
                if let Some(key) = company_code() {
                    customer_rows.entry(key).or_default().push(i);
                }
            }
            None => {}
        }
    }

    let mut found: Vec<(usize, Col, String)> = Vec::new();
    for ((kind, source, id), rows) in &keys {
        for &i in rows.iter().filter(|_| rows.len() > 1) {
            let others: Vec<usize> = rows
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| results[j].line)
                .collect();
            found.push((
                i,
                Col::ExternalId,
                format!(
                    "duplicate {} `{id}` of source `{source}`: also on {}",
                    kind.name(),
                    lines_text(&others)
                ),
            ));
        }
    }
    for ((company, code), rows) in &customer_rows {
        for &i in rows.iter().filter(|_| rows.len() > 1) {
            let others: Vec<usize> = rows
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| results[j].line)
                .collect();
            found.push((
                i,
                Col::Customer,
                format!(
                    "duplicate customer `{code}` of company `{company}`: also on {}",
                    lines_text(&others)
                ),
            ));
        }
    }

    // Item rows are a fallback source of customer details; the first row that names a
    // customer sets them and later rows must agree, or which one wins would depend on
    // row order.
    const DETAILS: [Col; 4] = [Col::CustomerName, Col::Country, Col::Email, Col::Phone];
    let mut first: BTreeMap<(String, String), (usize, Details)> = BTreeMap::new();
    for (i, r) in results.iter().enumerate() {
        let get = |c| cols.get(&r.record, c);
        if get(Col::Kind).and_then(Kind::parse) != Some(Kind::Item)
            || get(Col::CustomerName).is_none()
        {
            continue;
        }
        let (Some(company), Some(code)) = (get(Col::Company), get(Col::Customer)) else {
            continue;
        };
        let key = (company.to_string(), code.to_string());
        if customer_rows.contains_key(&key) {
            continue;
        }
        let details = DETAILS.map(get);
        match first.get(&key) {
            None => {
                first.insert(key, (r.line, details));
            }
            Some((line, seen)) => {
                for (n, c) in DETAILS.iter().enumerate() {
                    if details[n] != seen[n] {
                        found.push((
                            i,
                            *c,
                            format!(
                                "{} differs from {} on line {line} for the same customer",
                                shown(details[n]),
                                shown(seen[n])
                            ),
                        ));
                    }
                }
            }
        }
    }

    for (i, c, message) in found {
        let r = &mut results[i];
        r.errors.push(RowError {
            line: r.line,
            column: Some(c.name().to_string()),
            message,
        });
        r.entry = None;
    }
    customer_rows.into_keys().collect()
}

/// Reads and validates `path`. Row problems are collected in [`Parsed::errors`];
/// only problems that make the file unusable as a whole are an `Err`.
pub fn parse_csv(path: &Path, default_source: &str) -> Result<Parsed, ImportError> {
    let file = File::open(path).map_err(|source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_csv_from(file, path, default_source)
}

/// [`parse_csv`] on any reader, for input that is not a file (the fuzz targets);
/// `path` only names the input in errors.
pub fn parse_csv_from(
    input: impl io::Read,
    path: &Path,
    default_source: &str,
) -> Result<Parsed, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(input);
    let csv_error = |e: csv::Error| {
        let line = e.position().map_or(0, |p| p.line());
        let text = e.to_string();
        let message = match e.into_kind() {
            csv::ErrorKind::Io(source) => {
                return ImportError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            }
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => format!("{len} fields where the header has {expected_len}"),
            csv::ErrorKind::Utf8 { .. } => "not valid UTF-8 (save the file as UTF-8)".into(),
            _ => text,
        };
        ImportError::Malformed {
            path: path.to_path_buf(),
            line,
            message,
        }
    };
    let headers = reader.headers().map_err(csv_error)?.clone();
    if headers.iter().all(|h| h.trim().is_empty()) {
        return Err(ImportError::NoHeader {
            path: path.to_path_buf(),
        });
    }
    let cols = Columns::from_headers(path, &headers)?;

    let mut results = Vec::new();
    let mut record = StringRecord::new();
    while reader.read_record(&mut record).map_err(csv_error)? {
        // Spreadsheets pad exports with rows of bare separators; they carry nothing.
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let line = record
            .position()
            .map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX));
        results.push(parse_row(line, record.clone(), &cols, default_source));
    }
    // Seeded with the customers that have their own row, so details on item rows
    // never compete with it, wherever in the file it comes.
    let mut described = cross_check(&mut results, &cols, default_source);

    let rows = results.len();
    let mut batch = Batch::default();
    let mut errors = Vec::new();
    let mut rejected = Vec::new();
    let mut payment_rows = Vec::new();
    for r in results {
        if !r.errors.is_empty() {
            errors.extend(r.errors);
            rejected.push((r.line, r.record));
            continue;
        }
        match r.entry {
            Some(Entry::Item(item, info)) => {
                if let Some(info) = info {
                    if described.insert((info.company.clone(), info.code.clone())) {
                        batch.customers.push(info);
                    }
                }
                batch.items.push(*item);
            }
            Some(Entry::Payment(p)) => {
                batch.payments.push(p);
                payment_rows.push((r.line, r.record));
            }
            Some(Entry::Customer(c)) => batch.customers.push(c),
            None => {}
        }
    }
    tracing::debug!(
        path = %path.display(),
        rows,
        rejected = rejected.len(),
        "csv parsed"
    );
    Ok(Parsed {
        batch,
        rows,
        errors,
        rejected,
        headers,
        payment_rows,
    })
}

/// Writes `rejected` rows, unchanged, to `path` with their errors in an `error`
/// column (replacing it when the input was itself a rejects file), so the user can
/// fix them there and import that file.
pub fn write_rejects(
    path: &Path,
    headers: &StringRecord,
    rejected: &[(usize, StringRecord)],
    errors: &[RowError],
) -> io::Result<()> {
    let error_col = headers
        .iter()
        .position(|h| h.trim().eq_ignore_ascii_case(ERROR_COLUMN));
    let mut by_line: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for e in errors {
        by_line.entry(e.line).or_default().push(e.to_string());
    }
    let mut w = csv::Writer::from_path(path)?;
    let with_error = |rec: &StringRecord, msg: &str| -> StringRecord {
        let mut out: StringRecord = rec
            .iter()
            .enumerate()
            .map(|(i, f)| if Some(i) == error_col { msg } else { f })
            .collect();
        if error_col.is_none() {
            out.push_field(msg);
        }
        out
    };
    w.write_record(&with_error(headers, ERROR_COLUMN))?;
    for (line, rec) in rejected {
        let msg = by_line.get(line).map(|m| m.join("; ")).unwrap_or_default();
        w.write_record(&with_error(rec, &msg))?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use tempfile::TempDir;

    const ITEM: &[(&str, &str)] = &[
        ("kind", "item"),
        ("company", "ACME_DE"),
        ("customer", "C1"),
        ("document_no", "INV-1"),
        ("document_date", "2026-09-01"),
        ("due_date", "2026-10-01"),
        ("amount", "100.00"),
        ("currency", "EUR"),
    ];
    const PAYMENT: &[(&str, &str)] = &[
        ("kind", "payment"),
        ("company", "ACME_DE"),
        ("customer", "C1"),
        ("amount", "40.00"),
        ("currency", "EUR"),
        ("document_date", "2026-10-10"),
    ];

    fn quote(v: &str) -> String {
        if v.contains([',', '"', '\n']) || v.trim() != v {
            format!("\"{}\"", v.replace('"', "\"\""))
        } else {
            v.to_string()
        }
    }

    /// One CSV line in `header` order; later field lists override earlier ones.
    fn row(header: &[&str], fields: &[&[(&str, &str)]]) -> String {
        let all = fields.concat();
        for (k, _) in &all {
            assert!(header.contains(k), "test bug: `{k}` is not in the header");
        }
        header
            .iter()
            .map(|h| {
                all.iter()
                    .rfind(|(k, _)| k == h)
                    .map_or(String::new(), |(_, v)| quote(v))
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn write(dir: &TempDir, name: &str, header: &[&str], rows: &[String]) -> PathBuf {
        let mut text = header.join(",");
        for r in rows {
            text.push('\n');
            text.push_str(r);
        }
        text.push('\n');
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    fn date(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    fn summary(errors: &[RowError]) -> Vec<(usize, Option<&str>)> {
        errors
            .iter()
            .map(|e| (e.line, e.column.as_deref()))
            .collect()
    }

    #[test]
    fn good_file_becomes_the_expected_batch() {
        let dir = TempDir::new().unwrap();
        // Column order deliberately differs from the documented one.
        let mut header = COLUMNS.to_vec();
        header.reverse();
        let h = &header;
        let rows = vec![
            // The customer row further down is authoritative; this name is not used.
            row(
                h,
                &[ITEM, &[("external_id", "i1"), ("customer_name", "Alpha")]],
            ),
            row(
                h,
                &[
                    ITEM,
                    &[
                        ("source", "sap"),
                        ("external_id", "i2"),
                        ("customer", "C2"),
                        ("customer_name", "Beta, AG"),
                        ("country", "CH"),
                        ("document_no", "INV-2"),
                        ("amount", "250.50"),
                        ("open_amount", "50.25"),
                        ("currency", "USD"),
                        ("block_reason", "disputed"),
                        ("block_until", "2026-12-31"),
                        ("original_document", "INV-0"),
                    ],
                ],
            ),
            row(
                h,
                &[
                    ITEM,
                    &[
                        ("kind", "Item"),
                        ("external_id", "i3"),
                        ("customer", "C2"),
                        ("customer_name", "Beta, AG"),
                        ("country", "CH"),
                        ("amount", "10"),
                        ("open_amount", "0"),
                        ("block_reason", "legal"),
                    ],
                ],
            ),
            // Same (source, external_id) as item i1, but a payment: no conflict.
            row(
                h,
                &[
                    PAYMENT,
                    &[
                        ("external_id", "i1"),
                        ("document_no", "BANK-7"),
                        ("item_ref", "i1"),
                    ],
                ],
            ),
            row(
                h,
                &[
                    PAYMENT,
                    &[
                        ("source", " sap "),
                        ("external_id", "p2"),
                        ("customer", "C2"),
                        ("amount", "10.00"),
                        ("currency", "USD"),
                        ("document_date", "2026-10-11"),
                    ],
                ],
            ),
            row(
                h,
                &[&[
                    ("kind", "customer"),
                    ("company", "ACME_DE"),
                    ("customer", "C1"),
                    ("customer_name", "Alpha GmbH"),
                    ("amount", "5000.00"),
                    ("currency", "EUR"),
                    ("country", "DE"),
                    ("email", "ap@alpha.example"),
                    ("phone", "+49 30 1234"),
                    ("street", "Unter den Linden 1"),
                    ("postal_code", "10117"),
                    ("city", "Berlin"),
                ]],
            ),
            ",".repeat(COLUMNS.len() - 1),
        ];
        let path = write(&dir, "good.csv", h, &rows);
        let p = parse_csv(&path, "csv").unwrap();

        assert_eq!(p.errors, vec![]);
        assert!(p.rejected.is_empty());
        assert_eq!(p.rows, 6, "the all-empty row is not counted");
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(
            p.batch.customers,
            vec![
                CustomerInfo {
                    company: "ACME_DE".into(),
                    code: "C2".into(),
                    name: "Beta, AG".into(),
                    country: "CH".into(),
                    email: None,
                    phone: None,
                    language: None,
                    timezone: None,
                    credit_limit: None,
                    street: None,
                    postal_code: None,
                    city: None,
                    dunning: None,
                },
                CustomerInfo {
                    company: "ACME_DE".into(),
                    code: "C1".into(),
                    name: "Alpha GmbH".into(),
                    country: "DE".into(),
                    email: Some("ap@alpha.example".into()),
                    phone: Some("+49 30 1234".into()),
                    language: None,
                    timezone: None,
                    credit_limit: Some((dec!(5000.00), eur())),
                    street: Some("Unter den Linden 1".into()),
                    postal_code: Some("10117".into()),
                    city: Some("Berlin".into()),
                    dunning: None,
                },
            ]
        );
        let base = ItemInput {
            source: "csv".into(),
            external_id: "i1".into(),
            company: "ACME_DE".into(),
            customer: "C1".into(),
            document_no: "INV-1".into(),
            document_date: date("2026-09-01"),
            due_date: date("2026-10-01"),
            original_amount: dec!(100.00),
            open_amount: dec!(100.00),
            currency: eur(),
            hold: None,
            original_document: None,
        };
        assert_eq!(
            p.batch.items,
            vec![
                base.clone(),
                ItemInput {
                    source: "sap".into(),
                    external_id: "i2".into(),
                    customer: "C2".into(),
                    document_no: "INV-2".into(),
                    original_amount: dec!(250.50),
                    open_amount: dec!(50.25),
                    currency: usd,
                    hold: Some(Hold {
                        reason: "disputed".into(),
                        until: Some(date("2026-12-31")),
                    }),
                    original_document: Some("INV-0".into()),
                    ..base.clone()
                },
                ItemInput {
                    external_id: "i3".into(),
                    customer: "C2".into(),
                    original_amount: dec!(10),
                    open_amount: dec!(0),
                    hold: Some(Hold {
                        reason: "legal".into(),
                        until: None,
                    }),
                    ..base.clone()
                },
            ]
        );
        assert_eq!(
            p.batch.payments,
            vec![
                PaymentInput {
                    source: "csv".into(),
                    external_id: "i1".into(),
                    company: "ACME_DE".into(),
                    customer: "C1".into(),
                    amount: dec!(40.00),
                    currency: eur(),
                    value_date: date("2026-10-10"),
                    reference: "BANK-7".into(),
                    item_ref: Some("i1".into()),
                },
                PaymentInput {
                    source: "sap".into(),
                    external_id: "p2".into(),
                    company: "ACME_DE".into(),
                    customer: "C2".into(),
                    amount: dec!(10.00),
                    currency: usd,
                    value_date: date("2026-10-11"),
                    reference: String::new(),
                    item_ref: None,
                },
            ]
        );
        assert!(p.batch.snapshot_sources.is_empty(), "the caller decides");
        assert_eq!(p.snapshot_sources("csv"), vec!["csv", "sap"]);
    }

    #[test]
    fn optional_columns_may_be_left_out_and_a_bom_is_ignored() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("min.csv");
        std::fs::write(
            &path,
            "\u{feff}kind,external_id,company,customer,document_no,document_date,due_date,amount,currency\n\
             item,i1,ACME_DE,C1,INV-1,2026-09-01,2026-10-01,750,JPY\n",
        )
        .unwrap();
        let p = parse_csv(&path, "erp").unwrap();
        assert_eq!(p.errors, vec![]);
        assert_eq!(p.batch.items.len(), 1);
        let it = &p.batch.items[0];
        assert_eq!(
            (it.source.as_str(), it.open_amount, it.currency.as_str()),
            ("erp", dec!(750), "JPY")
        );
        assert!(p.batch.customers.is_empty());
    }

    /// One key repeated on every row: one error per row, each of bounded length, so
    /// the report stays proportional to the file.
    #[test]
    fn a_key_repeated_on_thousands_of_rows_gives_a_report_proportional_to_the_file() {
        let dir = TempDir::new().unwrap();
        let h = &COLUMNS;
        let rows: Vec<String> = (0..5000)
            .map(|_| row(h, &[ITEM, &[("external_id", "same")]]))
            .collect();
        let path = write(&dir, "dup.csv", h, &rows);
        let input = std::fs::metadata(&path).unwrap().len() as usize;
        let p = parse_csv(&path, "csv").unwrap();
        assert_eq!(p.errors.len(), 5000, "one error per row");
        let report: usize = p.errors.iter().map(|e| e.to_string().len() + 1).sum();
        assert!(
            report < 2 * input,
            "{report} bytes of errors for {input} bytes of input"
        );
        assert!(
            p.errors[0]
                .to_string()
                .contains("also on lines 3, 4, 5, 6, 7 and 4994 more"),
            "{}",
            p.errors[0]
        );
        let rejects = dir.path().join("dup.rejected.csv");
        write_rejects(&rejects, &p.headers, &p.rejected, &p.errors).unwrap();
        let size = std::fs::metadata(&rejects).unwrap().len() as usize;
        assert!(
            size < 3 * input,
            "rejects file {size} bytes for {input} bytes of input"
        );
    }

    #[test]
    fn amounts_beyond_the_bound_or_the_currency_decimals_are_refused_with_line_and_column() {
        let dir = TempDir::new().unwrap();
        let h = &COLUMNS;
        let item = |id: &'static str, over: &[(&'static str, &'static str)]| {
            row(h, &[ITEM, &[("external_id", id)], over])
        };
        let rows = vec![
            item(
                "ok",
                &[("amount", "999999999999999"), ("open_amount", "10.000")],
            ),
            item("big", &[("amount", "50000000000000000000000000000")]),
            item("eur", &[("amount", "10.001")]),
            item("jpy", &[("amount", "100.50"), ("currency", "JPY")]),
            item("open", &[("open_amount", "99.999")]),
            row(
                h,
                &[
                    PAYMENT,
                    &[("external_id", "p"), ("amount", "1000000000000000")],
                ],
            ),
            row(
                h,
                &[&[
                    ("kind", "customer"),
                    ("company", "ACME_DE"),
                    ("customer", "C9"),
                    ("customer_name", "Delta"),
                    ("amount", "1.5"),
                    ("currency", "JPY"),
                ]],
            ),
        ];
        let p = parse_csv(&write(&dir, "a.csv", h, &rows), "csv").unwrap();
        assert_eq!(
            summary(&p.errors),
            vec![
                (3, Some("amount")),
                (4, Some("amount")),
                (5, Some("amount")),
                (6, Some("open_amount")),
                (7, Some("amount")),
                (8, Some("amount")),
            ]
        );
        let text: Vec<String> = p.errors.iter().map(|e| e.to_string()).collect();
        assert!(text[0].contains("out of range"), "{text:?}");
        assert!(text[1].contains("more decimals than EUR"), "{text:?}");
        assert!(text[2].contains("more decimals than JPY"), "{text:?}");
        assert_eq!(p.batch.items.len(), 1);
        assert_eq!(p.batch.items[0].original_amount, dec!(999999999999999));
    }

    #[test]
    fn a_payment_for_an_unknown_item_is_refused_with_its_line() {
        let dir = TempDir::new().unwrap();
        let h = &COLUMNS;
        let rows = vec![
            row(h, &[ITEM, &[("external_id", "i1")]]),
            row(h, &[PAYMENT, &[("external_id", "p1"), ("item_ref", "i1")]]),
            row(h, &[PAYMENT, &[("external_id", "p2"), ("item_ref", "old")]]),
            row(
                h,
                &[PAYMENT, &[("external_id", "p3"), ("item_ref", "nowhere")]],
            ),
            row(h, &[PAYMENT, &[("external_id", "p4")]]),
        ];
        let mut p = parse_csv(&write(&dir, "a.csv", h, &rows), "csv").unwrap();
        assert!(p.errors.is_empty());
        let mut asked = Vec::new();
        p.refuse_unknown_item_refs(|s, e| {
            asked.push(format!("{s}/{e}"));
            Ok::<_, ()>(e == "old")
        })
        .unwrap();
        assert_eq!(
            asked,
            ["csv/old", "csv/nowhere"],
            "items in the file need no lookup"
        );
        assert_eq!(summary(&p.errors), vec![(5, Some("item_ref"))]);
        assert!(p.errors[0]
            .to_string()
            .contains("`nowhere` matches no item"));
        assert_eq!(p.rejected.len(), 1);
        assert_eq!(p.rejected[0].0, 5);
        let kept: Vec<&str> = p
            .batch
            .payments
            .iter()
            .map(|x| x.external_id.as_str())
            .collect();
        assert_eq!(kept, ["p1", "p2", "p4"]);
    }

    #[test]
    fn every_validation_error_is_reported_with_its_physical_line() {
        let dir = TempDir::new().unwrap();
        let h = &COLUMNS;
        let item = |id: &'static str, over: &[(&'static str, &'static str)]| {
            row(h, &[ITEM, &[("external_id", id)], over])
        };
        let rows = vec![
            // line 2-3: valid, with a newline inside a quoted field
            item("ok1", &[("document_no", "INV\n1")]),
            // line 4 onwards: one problem each unless noted
            item("e4", &[("kind", "invoice")]),
            item("e5", &[("due_date", "")]),
            item("e6", &[("document_date", "2026-02-30")]),
            item("e7", &[("currency", "EUX")]),
            item("e8", &[("amount", "12,50")]),
            item("e9", &[("amount", "-5.00")]),
            item("e10", &[("open_amount", "120.00")]),
            item("e11", &[("due_date", "2026-08-01")]),
            item("e12", &[("block_until", "2026-12-01")]),
            item("d1", &[]),
            // line 14: same key as line 13 but another kind, valid
            row(h, &[PAYMENT, &[("external_id", "d1")]]),
            item("d1", &[]),
            row(
                h,
                &[&[
                    ("kind", "customer"),
                    ("company", "ACME_DE"),
                    ("customer", "C8"),
                    ("customer_name", "Gamma"),
                    ("amount", "1000"),
                ]],
            ),
            row(
                h,
                &[
                    PAYMENT,
                    &[("external_id", "p17"), ("due_date", "2026-10-01")],
                ],
            ),
            // line 18: quoted empty and whitespace-only values count as missing
            item("e18", &[("company", "  "), ("document_no", "EMPTY")]).replace("EMPTY", "\"\""),
            item("e19", &[("due_date", "2026-9-1")]),
            row(
                h,
                &[&[
                    ("kind", "customer"),
                    ("company", "ACME_DE"),
                    ("customer", "C9"),
                    ("customer_name", "Delta"),
                ]],
            ),
            row(
                h,
                &[&[
                    ("kind", "customer"),
                    ("company", "ACME_DE"),
                    ("customer", "C9"),
                    ("customer_name", "Delta"),
                ]],
            ),
            item("e22", &[("country", "DE")]),
            item("e23", &[("kind", "")]),
            // line 24-25: a rejected row spanning two lines
            item("e24", &[("amount", "abc"), ("original_document", "x\ny")]),
            // Boundaries that are allowed: fully open, due on the document date.
            item(
                "ok26",
                &[("open_amount", "100.00"), ("due_date", "2026-09-01")],
            ),
        ];
        let path = write(&dir, "bad.csv", h, &rows);
        let p = parse_csv(&path, "csv").unwrap();

        assert_eq!(
            summary(&p.errors),
            vec![
                (4, Some("kind")),
                (5, Some("due_date")),
                (6, Some("document_date")),
                (7, Some("currency")),
                (8, Some("amount")),
                (9, Some("amount")),
                (10, Some("open_amount")),
                (11, Some("due_date")),
                (12, Some("block_until")),
                (13, Some("external_id")),
                (15, Some("external_id")),
                (16, Some("currency")),
                (17, Some("due_date")),
                (18, Some("company")),
                (18, Some("document_no")),
                (19, Some("due_date")),
                (20, Some("customer")),
                (21, Some("customer")),
                (22, Some("country")),
                (23, Some("kind")),
                (24, Some("amount")),
            ]
        );
        let messages: Vec<String> = p.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            vec![
                "line 4, column kind: unknown kind `invoice` (expected item, payment or customer)",
                "line 5, column due_date: required for item rows",
                "line 6, column document_date: `2026-02-30` is not a date (expected YYYY-MM-DD)",
                "line 7, column currency: unknown currency code `EUX` (expected an ISO 4217 code such as EUR)",
                "line 8, column amount: `12,50` is not a decimal amount",
                "line 9, column amount: must not be negative (-5.00)",
                "line 10, column open_amount: 120.00 exceeds amount 100.00",
                "line 11, column due_date: 2026-08-01 is before document_date 2026-09-01",
                "line 12, column block_until: given without block_reason",
                "line 13, column external_id: duplicate item `d1` of source `csv`: also on line 15",
                "line 15, column external_id: duplicate item `d1` of source `csv`: also on line 13",
                "line 16, column currency: required with a credit limit (amount)",
                "line 17, column due_date: does not apply to payment rows",
                "line 18, column company: required for item rows",
                "line 18, column document_no: required for item rows",
                "line 19, column due_date: `2026-9-1` is not a date (expected YYYY-MM-DD)",
                "line 20, column customer: duplicate customer `C9` of company `ACME_DE`: also on line 21",
                "line 21, column customer: duplicate customer `C9` of company `ACME_DE`: also on line 20",
                "line 22, column country: customer details on item rows need customer_name",
                "line 23, column kind: required (item, payment or customer)",
                "line 24, column amount: `abc` is not a decimal amount",
            ]
        );
        assert_eq!(p.rows, 23);
        let rejected_lines: Vec<usize> = p.rejected.iter().map(|(l, _)| *l).collect();
        assert_eq!(
            rejected_lines,
            [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]
        );
        assert_eq!(p.rejected[19].1.get(15), Some("x\ny"), "kept as given");
        let ids: Vec<&str> = p
            .batch
            .items
            .iter()
            .map(|i| i.external_id.as_str())
            .collect();
        assert_eq!(ids, ["ok1", "ok26"]);
        assert_eq!(p.batch.items[0].document_no, "INV\n1");
        assert_eq!(p.batch.payments.len(), 1);
        assert!(p.batch.customers.is_empty());
    }

    #[test]
    fn item_rows_must_agree_on_customer_details() {
        let dir = TempDir::new().unwrap();
        let h = &COLUMNS;
        let named = |id: &'static str, name: &'static str, country: &'static str| {
            row(
                h,
                &[
                    ITEM,
                    &[
                        ("external_id", id),
                        ("customer_name", name),
                        ("country", country),
                    ],
                ],
            )
        };
        let rows = vec![
            named("i1", "Beta AG", ""),
            named("i2", "Beta SA", ""),
            named("i3", "Beta AG", "CH"),
            named("i4", "Beta AG", ""),
        ];
        let p = parse_csv(&write(&dir, "c.csv", h, &rows), "csv").unwrap();
        let messages: Vec<String> = p.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "line 3, column customer_name: `Beta SA` differs from `Beta AG` on line 2 for the same customer",
                "line 4, column country: `CH` differs from empty on line 2 for the same customer",
            ]
        );
        assert_eq!(p.batch.items.len(), 2);
        assert_eq!(p.batch.customers.len(), 1, "one record per customer");
        assert_eq!(p.batch.customers[0].name, "Beta AG");
    }

    #[test]
    fn header_problems_reject_the_file() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("h.csv");
        std::fs::write(
            &path,
            "kind,company,customer,colour,Amount,amount,Size\nitem,A,C,red,1,1,L\n",
        )
        .unwrap();
        let e = parse_csv(&path, "csv").unwrap_err();
        let ImportError::Header {
            unknown,
            duplicate,
            missing,
            ..
        } = &e
        else {
            panic!("expected a header error, got {e:?}");
        };
        assert_eq!(unknown, &["colour", "Size"]);
        assert_eq!(duplicate, &["amount"]);
        assert!(missing.is_empty());
        let text = e.to_string();
        assert!(
            text.contains("unknown column(s) `colour`, `Size` (known: kind, source,"),
            "{text}"
        );

        std::fs::write(&path, "external_id,company\n").unwrap();
        match parse_csv(&path, "csv") {
            Err(ImportError::Header { missing, .. }) => {
                assert_eq!(missing, ["kind", "customer"])
            }
            other => panic!("expected missing columns, got {other:?}"),
        }

        std::fs::write(&path, "").unwrap();
        assert!(matches!(
            parse_csv(&path, "csv"),
            Err(ImportError::NoHeader { .. })
        ));
        assert!(matches!(
            parse_csv(&dir.path().join("absent.csv"), "csv"),
            Err(ImportError::Read { .. })
        ));
    }

    #[test]
    fn structurally_broken_csv_names_the_line() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("m.csv");
        std::fs::write(
            &path,
            "kind,company,customer\ncustomer,A,\"C\n1\"\ncustomer,A,C2,extra\n",
        )
        .unwrap();
        match parse_csv(&path, "csv") {
            Err(e @ ImportError::Malformed { line: 4, .. }) => {
                assert!(
                    e.to_string().contains("4 fields where the header has 3"),
                    "{e}"
                )
            }
            other => panic!("expected malformed at line 4, got {other:?}"),
        }

        std::fs::write(&path, b"kind,company,customer\ncustomer,A,\xff\n").unwrap();
        assert!(matches!(
            parse_csv(&path, "csv"),
            Err(ImportError::Malformed { line: 2, .. })
        ));
    }

    /// A postal address belongs on the customer's own row: on an item row it would
    /// have to agree across every item of the customer, and is refused instead.
    #[test]
    fn a_postal_address_on_an_item_row_is_refused_with_its_column() {
        let dir = TempDir::new().unwrap();
        let h = &COLUMNS;
        let rows = vec![row(
            h,
            &[
                ITEM,
                &[
                    ("external_id", "s1"),
                    ("customer_name", "Alpha GmbH"),
                    ("street", "Hauptstr. 1"),
                ],
            ],
        )];
        let p = parse_csv(&write(&dir, "street.csv", h, &rows), "csv").unwrap();
        let messages: Vec<String> = p.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            vec!["line 2, column street: does not apply to item rows"]
        );
    }

    #[test]
    fn rejects_file_round_trips_and_can_be_imported_again() {
        let dir = TempDir::new().unwrap();
        let h = &COLUMNS;
        let rows = vec![
            row(
                h,
                &[
                    ITEM,
                    &[
                        ("external_id", "b1"),
                        ("document_no", "INV \"7\",\nsplit"),
                        ("due_date", "2026-08-01"),
                    ],
                ],
            ),
            row(h, &[ITEM, &[("external_id", "ok")]]),
            row(h, &[PAYMENT, &[("external_id", "b2"), ("currency", "EUX")]]),
        ];
        let src = write(&dir, "in.csv", h, &rows);
        let p = parse_csv(&src, "csv").unwrap();
        assert_eq!(
            summary(&p.errors),
            [(2, Some("due_date")), (5, Some("currency"))]
        );

        let out = dir.path().join("in.rejected.csv");
        write_rejects(&out, &p.headers, &p.rejected, &p.errors).unwrap();
        let mut r = csv::Reader::from_path(&out).unwrap();
        let mut expected_header = p.headers.clone();
        expected_header.push_field("error");
        assert_eq!(r.headers().unwrap(), &expected_header);
        let back: Vec<StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(back.len(), 2);
        for ((_, orig), got) in p.rejected.iter().zip(&back) {
            let fields: Vec<&str> = got.iter().take(COLUMNS.len()).collect();
            assert_eq!(fields, orig.iter().collect::<Vec<_>>());
        }
        assert_eq!(back[0].get(2), Some("b1"));
        assert_eq!(back[0].get(6), Some("INV \"7\",\nsplit"));
        assert_eq!(
            back[0].get(COLUMNS.len()),
            Some("line 2, column due_date: 2026-08-01 is before document_date 2026-09-01")
        );
        assert_eq!(
            back[1].get(COLUMNS.len()),
            Some(
                "line 5, column currency: unknown currency code `EUX` (expected an ISO 4217 code such as EUR)"
            )
        );

        // Importing the rejects file as is: the `error` column is accepted, the
        // same problems come back (at the rows' new lines), and a second rejects
        // file replaces the error column instead of adding another.
        let again = parse_csv(&out, "csv").unwrap();
        assert_eq!(
            summary(&again.errors),
            [(2, Some("due_date")), (4, Some("currency"))]
        );
        assert_eq!(again.rejected.len(), 2);
        for ((_, a), (_, b)) in again.rejected.iter().zip(&p.rejected) {
            assert_eq!(
                a.iter().take(COLUMNS.len()).collect::<Vec<_>>(),
                b.iter().collect::<Vec<_>>()
            );
        }
        let out2 = dir.path().join("in.rejected.rejected.csv");
        write_rejects(&out2, &again.headers, &again.rejected, &again.errors).unwrap();
        let mut r2 = csv::Reader::from_path(&out2).unwrap();
        assert_eq!(r2.headers().unwrap(), &expected_header);
        let back2: Vec<StringRecord> = r2.records().map(Result::unwrap).collect();
        assert_eq!(
            back2[1].get(COLUMNS.len()),
            Some(
                "line 4, column currency: unknown currency code `EUX` (expected an ISO 4217 code such as EUR)"
            )
        );
    }

    #[test]
    fn a_source_with_rejected_item_rows_is_not_a_complete_snapshot() {
        let dir = TempDir::new().unwrap();
        let h = &COLUMNS;
        let rows = vec![
            row(h, &[ITEM, &[("external_id", "a")]]),
            row(h, &[ITEM, &[("source", "sap"), ("external_id", "b")]]),
            row(
                h,
                &[
                    ITEM,
                    &[("source", "sap"), ("external_id", "c"), ("amount", "x")],
                ],
            ),
            row(h, &[ITEM, &[("source", "erp"), ("external_id", "d")]]),
            row(
                h,
                &[
                    PAYMENT,
                    &[("source", "erp"), ("external_id", "e"), ("amount", "x")],
                ],
            ),
        ];
        let p = parse_csv(&write(&dir, "s.csv", h, &rows), "csv").unwrap();
        assert_eq!(p.rejected.len(), 2);
        assert_eq!(p.snapshot_sources("csv"), ["csv", "erp"]);
    }

    /// Found by `fuzz/csv_import`: an amount that `Decimal` holds but the documented
    /// bound does not was accepted, the poison pill of issue 9 (two such items on one
    /// customer overflow every later run). Every amount column must refuse it.
    #[test]
    fn fuzz_amounts_beyond_the_bound_are_refused() {
        let crash = "kind,external_id,company,customer,customer_name,document_no,document_date,due_date,amount,open_amount,currency,item_ref,original_document,error\n\
                     item,i1,ACDE,C1,Aa GmbH,INV-9,2026-09-01,2026-10-01,500000000000000000000.00,,EUR,,,\n";
        let p = parse_csv_from(crash.as_bytes(), Path::new("crash.csv"), "csv").unwrap();
        assert!(p.batch.items.is_empty(), "{:?}", p.batch.items);
        assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
        assert_eq!(p.errors[0].line, 2);
        assert_eq!(p.errors[0].column.as_deref(), Some("amount"));
        assert!(
            p.errors[0].message.contains("out of range"),
            "{}",
            p.errors[0]
        );

        let dir = TempDir::new().unwrap();
        let h = &COLUMNS;
        let over = "1000000000000000";
        let rows = vec![
            row(
                h,
                &[
                    ITEM,
                    &[("external_id", "max"), ("amount", "999999999999999.00")],
                ],
            ),
            row(h, &[ITEM, &[("external_id", "a"), ("amount", over)]]),
            row(h, &[ITEM, &[("external_id", "o"), ("open_amount", over)]]),
            row(h, &[PAYMENT, &[("external_id", "p"), ("amount", over)]]),
            row(
                h,
                &[&[
                    ("kind", "customer"),
                    ("company", "ACME_DE"),
                    ("customer", "C7"),
                    ("customer_name", "Big"),
                    ("amount", over),
                    ("currency", "EUR"),
                ]],
            ),
        ];
        let p = parse_csv(&write(&dir, "b.csv", h, &rows), "csv").unwrap();
        assert_eq!(p.batch.items.len(), 1, "the bound itself is fine");
        let mut refused: Vec<_> = p
            .errors
            .iter()
            .map(|e| (e.line, e.column.as_deref().unwrap_or("")))
            .collect();
        // Line 4's open amount also exceeds its amount: a second error, same place.
        refused.dedup();
        assert_eq!(
            refused,
            [
                (3, "amount"),
                (4, "open_amount"),
                (5, "amount"),
                (6, "amount")
            ]
        );
    }
}
