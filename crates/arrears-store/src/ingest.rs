//! Idempotent ingest: the same (source, external id) seen twice updates, never duplicates.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::db::{args, Arg, Db, Row};
use super::history;
use super::pg::Value;
use super::{Result, Store, StoreError};
use arrears_core::domain::{Batch, ChangeCause, CustomerInfo, ItemInput, PaymentInput};
use arrears_core::money::check_amount;
use chrono::NaiveDate;

/// Every source (CSV, ERP connectors, plugins) lands here: amounts beyond the bound or
/// with more decimals than their currency are refused before anything is written.
fn check_amounts(batch: &Batch) -> Result<()> {
    let bad = |what: String, e: arrears_core::money::MoneyError| {
        StoreError::Invalid(format!("{what}: {e}"))
    };
    for i in &batch.items {
        for (field, a) in [
            ("amount", i.original_amount),
            ("open_amount", i.open_amount),
        ] {
            check_amount(a, i.currency)
                .map_err(|e| bad(format!("item {}/{} {field}", i.source, i.external_id), e))?;
        }
    }
    for p in &batch.payments {
        check_amount(p.amount, p.currency)
            .map_err(|e| bad(format!("payment {}/{} amount", p.source, p.external_id), e))?;
    }
    for c in &batch.customers {
        if let Some((a, cur)) = c.credit_limit {
            check_amount(a, cur)
                .map_err(|e| bad(format!("customer {}/{} credit limit", c.company, c.code), e))?;
        }
    }
    Ok(())
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct IngestStats {
    pub customers_new: u64,
    pub customers_updated: u64,
    pub items_new: u64,
    pub items_updated: u64,
    pub items_unchanged: u64,
    /// Items that reached zero open amount or disappeared from a snapshot.
    pub items_cleared: u64,
    pub payments_new: u64,
    pub payments_updated: u64,
    pub payments_unchanged: u64,
}

struct Customers {
    ids: HashMap<(String, String), i64>,
    /// Those this batch created: their data written in the same batch is not an
    /// update.
    created: HashSet<i64>,
}

impl Customers {
    fn id(&mut self, db: &Db, company: &str, code: &str, stats: &mut IngestStats) -> Result<i64> {
        if let Some(id) = self.ids.get(&(company.to_string(), code.to_string())) {
            return Ok(*id);
        }
        let found = db.row(
            "SELECT id FROM customers WHERE company = ?1 AND code = ?2",
            args![company, code],
        )?;
        let id = match found {
            Some(r) => r.get(0, "customers.id")?,
            None => {
                stats.customers_new += 1;
                let id = db.row(
                    "INSERT INTO customers(company, code, name) VALUES (?1, ?2, ?2) RETURNING id",
                    args![company, code],
                )?
                .expect("an inserted row")
                .get(0, "customers.id")?;
                self.created.insert(id);
                id
            }
        };
        self.ids.insert((company.to_string(), code.to_string()), id);
        Ok(id)
    }

    fn upsert(
        &mut self,
        db: &Db,
        c: &CustomerInfo,
        stats: &mut IngestStats,
        dirty: &mut HashSet<i64>,
    ) -> Result<()> {
        let id = self.id(db, &c.company, &c.code, stats)?;
        let (limit, cur) = match &c.credit_limit {
            Some((a, cur)) => (Some(a.to_string()), Some(cur.to_string())),
            None => (None, None),
        };
        let n = db.execute(
            // A source that leaves a field out (NULL) does not know it: keep what is
            // stored rather than wiping an e-mail address or credit limit given
            // earlier. One that sends an empty contact field says there is none
            // (an ERP whose party lost its e-mail or address): it is cleared. (The
            // casts tell PostgreSQL the parameters' types, which it cannot infer from
            // `? IS NULL`.)
            "UPDATE customers SET name = ?2, country = COALESCE(NULLIF(?3, ''), country),
                email = CASE WHEN CAST(?4 AS TEXT) IS NULL THEN email ELSE NULLIF(?4, '') END,
                phone = CASE WHEN CAST(?5 AS TEXT) IS NULL THEN phone ELSE NULLIF(?5, '') END,
                language = COALESCE(?6, language), timezone = COALESCE(?7, timezone),
                credit_limit = COALESCE(?8, credit_limit), credit_currency = COALESCE(?9, credit_currency),
                street = CASE WHEN CAST(?10 AS TEXT) IS NULL THEN street ELSE NULLIF(?10, '') END,
                postal_code = CASE WHEN CAST(?11 AS TEXT) IS NULL THEN postal_code ELSE NULLIF(?11, '') END,
                city = CASE WHEN CAST(?12 AS TEXT) IS NULL THEN city ELSE NULLIF(?12, '') END,
                dunning_procedure = COALESCE(?13, dunning_procedure)
             WHERE id = ?1 AND (name IS DISTINCT FROM ?2 OR (?3 <> '' AND country IS DISTINCT FROM ?3)
                OR (CAST(?4 AS TEXT) IS NOT NULL AND email IS DISTINCT FROM NULLIF(?4, ''))
                OR (CAST(?5 AS TEXT) IS NOT NULL AND phone IS DISTINCT FROM NULLIF(?5, ''))
                OR (CAST(?6 AS TEXT) IS NOT NULL AND language IS DISTINCT FROM ?6)
                OR (CAST(?7 AS TEXT) IS NOT NULL AND timezone IS DISTINCT FROM ?7)
                OR (CAST(?8 AS NUMERIC) IS NOT NULL AND credit_limit IS DISTINCT FROM ?8)
                OR (CAST(?9 AS TEXT) IS NOT NULL AND credit_currency IS DISTINCT FROM ?9)
                OR (CAST(?10 AS TEXT) IS NOT NULL AND street IS DISTINCT FROM NULLIF(?10, ''))
                OR (CAST(?11 AS TEXT) IS NOT NULL AND postal_code IS DISTINCT FROM NULLIF(?11, ''))
                OR (CAST(?12 AS TEXT) IS NOT NULL AND city IS DISTINCT FROM NULLIF(?12, ''))
                OR (CAST(?13 AS TEXT) IS NOT NULL AND dunning_procedure IS DISTINCT FROM ?13))",
            args![
                id,
                c.name,
                c.country,
                c.email,
                c.phone,
                c.language,
                c.timezone,
                limit,
                cur,
                c.street,
                c.postal_code,
                c.city,
                c.dunning.as_ref().map(|d| d.stored())
            ],
        )?;
        if n > 0 {
            dirty.insert(id);
            if !self.created.contains(&id) {
                stats.customers_updated += 1;
            }
        }
        Ok(())
    }

    /// Every customer the batch names, found or created at once (PostgreSQL, a
    /// large batch), with the ids one by one would give the new ones: in the
    /// order the batch first names them (its customers, items, then payments).
    fn resolve_in_bulk(&mut self, db: &Db, batch: &Batch, stats: &mut IngestStats) -> Result<()> {
        let mut seen = HashSet::new();
        let keys: Vec<(&String, &String)> = batch
            .customers
            .iter()
            .map(|c| (&c.company, &c.code))
            .chain(batch.items.iter().map(|i| (&i.company, &i.customer)))
            .chain(batch.payments.iter().map(|p| (&p.company, &p.customer)))
            .filter(|k| seen.insert(*k))
            .collect();
        let rows: Vec<Vec<Value>> = keys
            .iter()
            .map(|(c, k)| vec![c.value(), k.value()])
            .collect();
        let found: HashMap<(String, String), i64> =
            db.with_bulk("customers", &["company", "code"], &rows, |db| {
                db.rows(
                    "SELECT c.company, c.code, c.id
                     FROM bulk b JOIN customers c ON c.company = b.company AND c.code = b.code",
                    args![],
                )?
                .iter()
                .map(|r| {
                    Ok((
                        (r.get(0, "customers.company")?, r.get(1, "customers.code")?),
                        r.get(2, "customers.id")?,
                    ))
                })
                .collect()
            })?;
        let missing: Vec<(String, String)> = keys
            .iter()
            .map(|(c, k)| ((*c).clone(), (*k).clone()))
            .filter(|k| !found.contains_key(k))
            .collect();
        let ids = db.next_ids("customers", missing.len())?.unwrap_or_default();
        let new_rows: Vec<Vec<Value>> = missing
            .iter()
            .zip(&ids)
            .map(|((c, k), id)| vec![id.value(), c.value(), k.value(), k.value()])
            .collect();
        // In id order: the log entry each new customer gets is numbered in it.
        db.many(
            "",
            "customers",
            &["id", "company", "code", "name"],
            "INSERT INTO customers(id, company, code, name)
             SELECT id, company, code, name FROM bulk ORDER BY id",
            &new_rows,
        )?;
        stats.customers_new += missing.len() as u64;
        self.ids.extend(found);
        self.ids
            .extend(missing.into_iter().zip(ids.iter().copied()));
        self.created.extend(ids);
        Ok(())
    }

    /// [`Customers::upsert`] for every customer of the batch at once (PostgreSQL,
    /// a batch that names each once), after [`Customers::resolve_in_bulk`].
    fn upsert_in_bulk(
        &mut self,
        db: &Db,
        batch: &Batch,
        stats: &mut IngestStats,
        dirty: &mut HashSet<i64>,
    ) -> Result<()> {
        let mut rows: Vec<Vec<Value>> = Vec::with_capacity(batch.customers.len());
        for c in &batch.customers {
            let id = self.id(db, &c.company, &c.code, stats)?;
            let (limit, cur) = match &c.credit_limit {
                Some((a, cur)) => (Some(a.to_string()), Some(cur.to_string())),
                None => (None, None),
            };
            rows.push(vec![
                id.value(),
                c.name.value(),
                c.country.value(),
                c.email.value(),
                c.phone.value(),
                c.language.value(),
                c.timezone.value(),
                limit.value(),
                cur.value(),
                c.street.value(),
                c.postal_code.value(),
                c.city.value(),
                c.dunning.as_ref().map(|d| d.stored()).value(),
            ]);
        }
        // What `upsert` does per row, over the batch's rows in `bulk`.
        let changed: Vec<i64> = db.with_bulk(
            "customers",
            &[
                "id",
                "name",
                "country",
                "email",
                "phone",
                "language",
                "timezone",
                "credit_limit",
                "credit_currency",
                "street",
                "postal_code",
                "city",
                "dunning_procedure",
            ],
            &rows,
            |db| {
                db.rows(
                    "UPDATE customers c SET name = b.name, country = COALESCE(NULLIF(b.country, ''), c.country),
                        email = CASE WHEN b.email IS NULL THEN c.email ELSE NULLIF(b.email, '') END,
                        phone = CASE WHEN b.phone IS NULL THEN c.phone ELSE NULLIF(b.phone, '') END,
                        language = COALESCE(b.language, c.language), timezone = COALESCE(b.timezone, c.timezone),
                        credit_limit = COALESCE(b.credit_limit, c.credit_limit),
                        credit_currency = COALESCE(b.credit_currency, c.credit_currency),
                        street = CASE WHEN b.street IS NULL THEN c.street ELSE NULLIF(b.street, '') END,
                        postal_code = CASE WHEN b.postal_code IS NULL THEN c.postal_code ELSE NULLIF(b.postal_code, '') END,
                        city = CASE WHEN b.city IS NULL THEN c.city ELSE NULLIF(b.city, '') END,
                        dunning_procedure = COALESCE(b.dunning_procedure, c.dunning_procedure)
                     FROM bulk b
                     WHERE c.id = b.id AND (c.name IS DISTINCT FROM b.name
                        OR (b.country <> '' AND c.country IS DISTINCT FROM b.country)
                        OR (b.email IS NOT NULL AND c.email IS DISTINCT FROM NULLIF(b.email, ''))
                        OR (b.phone IS NOT NULL AND c.phone IS DISTINCT FROM NULLIF(b.phone, ''))
                        OR (b.language IS NOT NULL AND c.language IS DISTINCT FROM b.language)
                        OR (b.timezone IS NOT NULL AND c.timezone IS DISTINCT FROM b.timezone)
                        OR (b.credit_limit IS NOT NULL AND c.credit_limit IS DISTINCT FROM b.credit_limit)
                        OR (b.credit_currency IS NOT NULL AND c.credit_currency IS DISTINCT FROM b.credit_currency)
                        OR (b.street IS NOT NULL AND c.street IS DISTINCT FROM NULLIF(b.street, ''))
                        OR (b.postal_code IS NOT NULL AND c.postal_code IS DISTINCT FROM NULLIF(b.postal_code, ''))
                        OR (b.city IS NOT NULL AND c.city IS DISTINCT FROM NULLIF(b.city, ''))
                        OR (b.dunning_procedure IS NOT NULL AND c.dunning_procedure IS DISTINCT FROM b.dunning_procedure))
                     RETURNING c.id",
                    args![],
                )?
                .iter()
                .map(|r| r.get(0, "customers.id"))
                .collect()
            },
        )?;
        for id in changed {
            dirty.insert(id);
            if !self.created.contains(&id) {
                stats.customers_updated += 1;
            }
        }
        Ok(())
    }
}

/// An open item that another item of its customer names as `original_document` was
/// split or re-posted: it is `replaced`, so its debt is not counted a second time
/// while the ERP has not yet sent its clearing (and stays so if the ERP re-sends it
/// as open). Whichever of the two arrives first. Returns the (customer, item) marked.
fn mark_replaced(db: &Db) -> Result<Vec<(i64, i64)>> {
    db.rows(
        "UPDATE items SET status = 'replaced'
         WHERE status = 'open'
           AND document_no IN (SELECT original_document FROM items WHERE original_document IS NOT NULL)
           AND EXISTS (SELECT 1 FROM items r WHERE r.original_document = items.document_no
                       AND r.customer_id = items.customer_id AND r.id <> items.id)
         RETURNING customer_id, id",
        args![],
    )?
    .iter()
    .map(|r| Ok((r.get(0, "items.customer_id")?, r.get(1, "items.id")?)))
    .collect()
}

/// Writes a batch in one transaction (inside another one: a savepoint), on either
/// database. Either everything in it is stored or nothing is.
/// What it changes is dated `batch.as_of`, else `today`, in the items' history.
pub(crate) fn ingest(db: &Db, batch: &Batch, today: NaiveDate) -> Result<IngestStats> {
    check_amounts(batch)?;
    db.write(|db| ingest_in(db, batch, batch.as_of.unwrap_or(today)))
}

fn ingest_in(db: &Db, batch: &Batch, day: NaiveDate) -> Result<IngestStats> {
    let mut stats = IngestStats::default();
    let mut customers = Customers {
        ids: HashMap::new(),
        created: HashSet::new(),
    };
    // What the batch changed, for the change log: customers as a whole (their
    // data, payments, an item moved between them), and single items.
    let mut dirty: HashSet<i64> = HashSet::new();
    let mut items_changed: HashSet<(i64, i64)> = HashSet::new();
    // The items the batch wrote (id, index in the batch, created), for their history.
    let mut written: Vec<(i64, usize, bool)> = Vec::new();

    // A large batch on PostgreSQL finds and creates its customers at once, and
    // writes their data at once when it names each once.
    let rows = batch.customers.len() + batch.items.len() + batch.payments.len();
    if matches!(db, Db::Pg(_)) && rows >= BULK_FROM {
        customers.resolve_in_bulk(db, batch, &mut stats)?;
        if in_bulk(db, batch.customers.iter().map(|c| (&c.company, &c.code)), 1) {
            customers.upsert_in_bulk(db, batch, &mut stats, &mut dirty)?;
        } else {
            for c in &batch.customers {
                customers.upsert(db, c, &mut stats, &mut dirty)?;
            }
        }
    } else {
        for c in &batch.customers {
            customers.upsert(db, c, &mut stats, &mut dirty)?;
        }
    }
    if in_bulk(
        db,
        batch.items.iter().map(|i| (&i.source, &i.external_id)),
        BULK_FROM,
    ) {
        items_in_bulk(
            db,
            batch,
            &mut customers,
            &mut stats,
            &mut dirty,
            &mut items_changed,
            &mut written,
        )?;
    } else {
        items_one_by_one(
            db,
            batch,
            &mut customers,
            &mut stats,
            &mut dirty,
            &mut items_changed,
            &mut written,
        )?;
    }
    let mut replaced = Vec::new();
    if batch.items.iter().any(|i| i.original_document.is_some()) || stats.items_new > 0 {
        let r = mark_replaced(db)?;
        replaced = r.iter().map(|&(_, id)| id).collect();
        items_changed.extend(r);
    }
    let mut gone_ids = Vec::new();

    if !batch.snapshot_sources.is_empty() {
        db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS seen(source TEXT, external_id TEXT, PRIMARY KEY(source, external_id))",
            args![],
        )?;
        db.execute("DELETE FROM seen", args![])?;
        let mut seen = db.prepare("INSERT INTO seen VALUES (?1, ?2) ON CONFLICT DO NOTHING")?;
        for it in &batch.items {
            seen.execute(args![it.source, it.external_id])?;
        }
        for src in &batch.snapshot_sources {
            let gone = db.rows(
                "SELECT id, customer_id FROM items i WHERE source = ?1 AND status = 'open'
                 AND NOT EXISTS (SELECT 1 FROM seen s WHERE s.source = i.source AND s.external_id = i.external_id)",
                args![src],
            )?;
            for r in gone {
                let (id, cid): (i64, i64) = (r.get(0, "items.id")?, r.get(1, "items.customer_id")?);
                db.execute(
                    "UPDATE items SET status = 'cleared' WHERE id = ?1",
                    args![id],
                )?;
                items_changed.insert((cid, id));
                gone_ids.push(id);
                stats.items_cleared += 1;
            }
        }
        db.execute("DELETE FROM seen", args![])?;
    }

    if in_bulk(
        db,
        batch.payments.iter().map(|p| (&p.source, &p.external_id)),
        BULK_FROM,
    ) {
        payments_in_bulk(db, batch, &mut customers, &mut stats, &mut dirty)?;
    } else {
        payments_one_by_one(db, batch, &mut customers, &mut stats, &mut dirty)?;
    }
    note_history(db, batch, day, &written, &replaced, &gone_ids)?;

    // Sorted, so the same batch always logs the same: customers as a whole by
    // id, then single items by id.
    let mut whole: Vec<i64> = dirty.iter().copied().collect();
    whole.sort_unstable();
    let mut items_changed: Vec<(i64, i64)> = items_changed
        .into_iter()
        .filter(|(cid, _)| !dirty.contains(cid))
        .collect();
    items_changed.sort_unstable_by_key(|&(_, id)| id);
    let entries: Vec<Vec<Value>> = whole
        .iter()
        .map(|id| vec![id.value(), Value::Null])
        .chain(
            items_changed
                .iter()
                .map(|(cid, id)| vec![cid.value(), id.value()]),
        )
        .collect();
    // The numbering trigger numbers them in the order they are inserted.
    db.many(
        "INSERT INTO changes(customer_id, item_id) VALUES (?1, ?2)",
        "changes",
        &["customer_id", "item_id"],
        "INSERT INTO changes(customer_id, item_id) SELECT customer_id, item_id FROM bulk
         ORDER BY item_id IS NOT NULL, COALESCE(item_id, customer_id)",
        &entries,
    )?;
    Ok(stats)
}

/// The history of the items a batch changed: an item the batch links a payment
/// to changed by that payment, on its value date (the latest, when several);
/// any other by the ERP, on the batch's day.
fn note_history(
    db: &Db,
    batch: &Batch,
    day: NaiveDate,
    written: &[(i64, usize, bool)],
    replaced: &[i64],
    gone: &[i64],
) -> Result<()> {
    let mut paid_on: HashMap<(&str, &str), NaiveDate> = HashMap::new();
    for p in &batch.payments {
        if let Some(item) = &p.item_ref {
            let on = paid_on
                .entry((p.source.as_str(), item.as_str()))
                .or_insert(p.value_date);
            *on = (*on).max(p.value_date);
        }
    }
    // Originals this batch brings a replacement for (a split, a re-posting): an
    // original the ERP clears in the same batch was replaced, not paid.
    let mut replacing: HashMap<(&str, &str, &str), NaiveDate> = HashMap::new();
    for it in &batch.items {
        if let Some(original) = &it.original_document {
            let on = replacing
                .entry((it.company.as_str(), it.customer.as_str(), original.as_str()))
                .or_insert(it.document_date);
            *on = (*on).min(it.document_date);
        }
    }
    let dated = |it: &ItemInput| {
        let original = (
            it.company.as_str(),
            it.customer.as_str(),
            it.document_no.as_str(),
        );
        if let Some(&on) = replacing.get(&original) {
            return (on.min(day), ChangeCause::Replaced);
        }
        match paid_on.get(&(it.source.as_str(), it.external_id.as_str())) {
            Some(&on) => (on.min(day), ChangeCause::Payment),
            None => (day, ChangeCause::Erp),
        }
    };
    let mut changes = Vec::new();
    let mut created = Vec::new();
    for &(id, at, new) in written {
        let it = &batch.items[at];
        let (on, cause) = dated(it);
        if !new {
            changes.push((id, on, cause));
            continue;
        }
        let status = item_status(it);
        if status != "open" || it.open_amount != it.original_amount {
            created.push((id, on, it.open_amount, status, cause));
        }
    }
    history::note_new(db, &created)?;
    history::note_each(db, &changes)?;
    // Replaced from the day its replacement is dated, if earlier: its sale moved
    // to the replacement then.
    let replaced_on = if replaced.is_empty() {
        Vec::new()
    } else {
        db.rows(
            &format!(
                "SELECT i.id, MIN(r.document_date) FROM items i
                 JOIN items r ON r.original_document = i.document_no
                             AND r.customer_id = i.customer_id AND r.id <> i.id
                 WHERE i.id IN {} GROUP BY i.id",
                db.in_list("?1", "BIGINT")
            ),
            args![Db::json_list(replaced)],
        )?
        .iter()
        .map(|r| {
            let on = r.date(1, "items.document_date")?;
            Ok((r.get(0, "items.id")?, on.min(day), ChangeCause::Replaced))
        })
        .collect::<Result<Vec<_>>>()?
    };
    history::note_each(db, &replaced_on)?;
    history::note(db, day, ChangeCause::Snapshot, gone)?;
    Ok(())
}

/// Whether rows with these keys go in bulk: on PostgreSQL, from `from` rows on
/// (a few dozen: one statement per row costs a round trip there), when no key
/// repeats (a batch that names an item twice means "insert, then update" in its
/// order, which the row-by-row path keeps).
fn in_bulk<'a>(
    db: &Db,
    keys: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
    from: usize,
) -> bool {
    if !matches!(db, Db::Pg(_)) || keys.len() < from {
        return false;
    }
    let mut seen = HashSet::new();
    keys.into_iter().all(|k| seen.insert(k))
}

/// The rows of `table` with these (source, external id) keys, read at once: each
/// key with what `read` makes of the row `SELECT t.source, t.external_id,
/// {columns}` (PostgreSQL; the keys go in by a temporary table).
fn by_key<'a, T>(
    db: &Db,
    table: &str,
    keys: impl Iterator<Item = (&'a String, &'a String)>,
    columns: &str,
    read: impl Fn(&Row) -> Result<T>,
) -> Result<HashMap<(String, String), T>> {
    let keys: Vec<Vec<Value>> = keys.map(|(s, e)| vec![s.value(), e.value()]).collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    db.with_bulk(table, &["source", "external_id"], &keys, |db| {
        db.rows(
            &format!(
                "SELECT DISTINCT t.source, t.external_id, {columns}
                 FROM bulk b JOIN {table} t ON t.source = b.source AND t.external_id = b.external_id"
            ),
            args![],
        )?
        .iter()
        .map(|r| Ok(((r.get(0, "source")?, r.get(1, "external_id")?), read(r)?)))
        .collect()
    })
}

/// From this many rows a batch is written in bulk on PostgreSQL.
const BULK_FROM: usize = 64;

fn items_one_by_one(
    db: &Db,
    batch: &Batch,
    customers: &mut Customers,
    stats: &mut IngestStats,
    dirty: &mut HashSet<i64>,
    items_changed: &mut HashSet<(i64, i64)>,
    written: &mut Vec<(i64, usize, bool)>,
) -> Result<()> {
    // Prepared once: a bulk import runs them a million times.
    let mut ins = db.prepare_insert(
        "INSERT INTO items(source, external_id, customer_id, document_no, document_date, due_date,
            original_amount, open_amount, currency, hold_reason, hold_until, original_document, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT(source, external_id) DO NOTHING",
    )?;
    let mut prev = db.prepare(
        "SELECT id, customer_id, status FROM items WHERE source = ?1 AND external_id = ?2",
    )?;
    let mut upd = db.prepare(
        "UPDATE items SET customer_id = ?3, document_no = ?4, document_date = ?5, due_date = ?6,
            original_amount = ?7, open_amount = ?8, currency = ?9, hold_reason = ?10, hold_until = ?11,
            original_document = ?12, status = CASE WHEN status IN ('agreement', 'replaced', 'written_off') AND ?13 = 'open' THEN status ELSE ?13 END
         WHERE source = ?1 AND external_id = ?2 AND (customer_id IS DISTINCT FROM ?3
            OR document_no IS DISTINCT FROM ?4 OR document_date IS DISTINCT FROM ?5
            OR due_date IS DISTINCT FROM ?6 OR original_amount IS DISTINCT FROM ?7
            OR open_amount IS DISTINCT FROM ?8 OR currency IS DISTINCT FROM ?9
            OR hold_reason IS DISTINCT FROM ?10 OR hold_until IS DISTINCT FROM ?11
            OR original_document IS DISTINCT FROM ?12
            OR status IS DISTINCT FROM (CASE WHEN status IN ('agreement', 'replaced', 'written_off') AND ?13 = 'open' THEN status ELSE ?13 END))",
    )?;
    for (at, it) in batch.items.iter().enumerate() {
        let cid = customers.id(db, &it.company, &it.customer, stats)?;
        let status = if it.open_amount.is_zero() {
            "cleared"
        } else {
            "open"
        };
        let (hr, hu) = match &it.hold {
            Some(h) => (Some(h.reason.as_str()), h.until),
            None => (None, None),
        };
        let a = args![
            it.source,
            it.external_id,
            cid,
            it.document_no,
            it.document_date,
            it.due_date,
            it.original_amount,
            it.open_amount,
            it.currency.as_str(),
            hr,
            hu,
            it.original_document,
            status
        ];
        if let Some(id) = ins.insert(a)? {
            stats.items_new += 1;
            items_changed.insert((cid, id));
            written.push((id, at, true));
            continue;
        }
        let prev = prev.row(args![it.source, it.external_id])?.ok_or_else(|| {
            StoreError::State(format!(
                "item {}/{} was neither inserted nor found (removed meanwhile?)",
                it.source, it.external_id
            ))
        })?;
        let (id, old_cid, old_status): (i64, i64, String) = (
            prev.get(0, "items.id")?,
            prev.get(1, "items.customer_id")?,
            prev.get(2, "items.status")?,
        );
        let n = upd.execute(a)?;
        if n == 1 {
            written.push((id, at, false));
            stats.items_updated += 1;
            if status == "cleared" && old_status == "open" {
                stats.items_cleared += 1;
            }
            if old_cid == cid {
                items_changed.insert((cid, id));
            } else {
                dirty.insert(cid);
                dirty.insert(old_cid);
            }
        } else {
            stats.items_unchanged += 1;
        }
    }
    Ok(())
}

/// The status an item of the batch is written with.
fn item_status(it: &ItemInput) -> &'static str {
    if it.open_amount.is_zero() {
        "cleared"
    } else {
        "open"
    }
}

/// [`items_one_by_one`] on PostgreSQL for a large batch: the existing items read
/// at once, new ones given their ids in the batch's order (as one by one), then
/// every row written by one INSERT and one UPDATE from a temporary table. The
/// same rows, counts and change log as one by one.
fn items_in_bulk(
    db: &Db,
    batch: &Batch,
    customers: &mut Customers,
    stats: &mut IngestStats,
    dirty: &mut HashSet<i64>,
    items_changed: &mut HashSet<(i64, i64)>,
    written: &mut Vec<(i64, usize, bool)>,
) -> Result<()> {
    let cids: Vec<i64> = batch
        .items
        .iter()
        .map(|it| customers.id(db, &it.company, &it.customer, stats))
        .collect::<Result<_>>()?;
    // (source, external id) → (id, customer, status) before the batch.
    let old: HashMap<(String, String), (i64, i64, String)> = by_key(
        db,
        "items",
        batch.items.iter().map(|it| (&it.source, &it.external_id)),
        "t.id, t.customer_id, t.status",
        |r| {
            Ok((
                r.get(2, "items.id")?,
                r.get(3, "items.customer_id")?,
                r.get(4, "items.status")?,
            ))
        },
    )?;
    let key = |it: &ItemInput| (it.source.clone(), it.external_id.clone());
    let new = batch
        .items
        .iter()
        .filter(|it| !old.contains_key(&key(it)))
        .count();
    let mut fresh = db.next_ids("items", new)?.unwrap_or_default().into_iter();
    const COLUMNS: &[&str] = &[
        "id",
        "source",
        "external_id",
        "customer_id",
        "document_no",
        "document_date",
        "due_date",
        "original_amount",
        "open_amount",
        "currency",
        "hold_reason",
        "hold_until",
        "original_document",
        "status",
    ];
    let mut rows = Vec::with_capacity(batch.items.len());
    let mut at_of: HashMap<i64, usize> = HashMap::new();
    for (at, (it, cid)) in batch.items.iter().zip(&cids).enumerate() {
        let id = match old.get(&key(it)) {
            Some((id, _, _)) => {
                at_of.insert(*id, at);
                *id
            }
            None => {
                let id = fresh.next().expect("an id for each new item");
                stats.items_new += 1;
                items_changed.insert((*cid, id));
                written.push((id, at, true));
                id
            }
        };
        let (hr, hu) = match &it.hold {
            Some(h) => (Some(h.reason.as_str()), h.until),
            None => (None, None),
        };
        rows.push(vec![
            id.value(),
            it.source.value(),
            it.external_id.value(),
            cid.value(),
            it.document_no.value(),
            it.document_date.value(),
            it.due_date.value(),
            it.original_amount.value(),
            it.open_amount.value(),
            it.currency.as_str().value(),
            hr.value(),
            hu.value(),
            it.original_document.value(),
            item_status(it).value(),
        ]);
    }
    let updated = db.with_bulk("items", COLUMNS, &rows, |db| {
        let cols = COLUMNS.join(", ");
        db.execute(
            &format!(
                "INSERT INTO items({cols}) SELECT {cols} FROM bulk b
                 WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.id = b.id) ORDER BY b.id"
            ),
            args![],
        )?;
        // As one by one: an item in an agreement, replaced or written off keeps that status
        // when the ERP sends it as open again.
        db.rows(
            "UPDATE items SET customer_id = b.customer_id, document_no = b.document_no,
                document_date = b.document_date, due_date = b.due_date,
                original_amount = b.original_amount, open_amount = b.open_amount, currency = b.currency,
                hold_reason = b.hold_reason, hold_until = b.hold_until, original_document = b.original_document,
                status = CASE WHEN items.status IN ('agreement', 'replaced', 'written_off') AND b.status = 'open'
                              THEN items.status ELSE b.status END
             FROM bulk b
             WHERE items.id = b.id AND (items.customer_id IS DISTINCT FROM b.customer_id
                OR items.document_no IS DISTINCT FROM b.document_no
                OR items.document_date IS DISTINCT FROM b.document_date
                OR items.due_date IS DISTINCT FROM b.due_date
                OR items.original_amount IS DISTINCT FROM b.original_amount
                OR items.open_amount IS DISTINCT FROM b.open_amount
                OR items.currency IS DISTINCT FROM b.currency
                OR items.hold_reason IS DISTINCT FROM b.hold_reason
                OR items.hold_until IS DISTINCT FROM b.hold_until
                OR items.original_document IS DISTINCT FROM b.original_document
                OR items.status IS DISTINCT FROM (CASE WHEN items.status IN ('agreement', 'replaced', 'written_off')
                    AND b.status = 'open' THEN items.status ELSE b.status END))
             RETURNING items.id, b.customer_id, b.status",
            args![],
        )
    })?;
    let old_by_id: HashMap<i64, &(i64, i64, String)> = old.values().map(|o| (o.0, o)).collect();
    for r in &updated {
        let (id, cid, status): (i64, i64, String) = (
            r.get(0, "items.id")?,
            r.get(1, "items.customer_id")?,
            r.get(2, "items.status")?,
        );
        let (_, old_cid, old_status) = old_by_id[&id];
        written.push((id, at_of[&id], false));
        stats.items_updated += 1;
        if status == "cleared" && old_status == "open" {
            stats.items_cleared += 1;
        }
        if *old_cid == cid {
            items_changed.insert((cid, id));
        } else {
            dirty.insert(cid);
            dirty.insert(*old_cid);
        }
    }
    stats.items_unchanged += (old.len() - updated.len()) as u64;
    Ok(())
}

fn payments_one_by_one(
    db: &Db,
    batch: &Batch,
    customers: &mut Customers,
    stats: &mut IngestStats,
    dirty: &mut HashSet<i64>,
) -> Result<()> {
    let mut item_id = db.prepare("SELECT id FROM items WHERE source = ?1 AND external_id = ?2")?;
    let mut pay_ins = db.prepare(
        "INSERT INTO payments(source, external_id, customer_id, item_id, amount, currency, value_date, reference)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(source, external_id) DO NOTHING",
    )?;
    let mut pay_upd = db.prepare(
        "UPDATE payments SET customer_id = ?3, item_id = ?4, amount = ?5, currency = ?6, value_date = ?7, reference = ?8
         WHERE source = ?1 AND external_id = ?2 AND (customer_id IS DISTINCT FROM ?3
            OR item_id IS DISTINCT FROM ?4 OR amount IS DISTINCT FROM ?5 OR currency IS DISTINCT FROM ?6
            OR value_date IS DISTINCT FROM ?7 OR reference IS DISTINCT FROM ?8)",
    )?;
    for p in &batch.payments {
        let cid = customers.id(db, &p.company, &p.customer, stats)?;
        let iid: Option<i64> = match &p.item_ref {
            Some(r) => Some(
                item_id
                    .row(args![p.source, r])?
                    .ok_or_else(|| {
                        StoreError::Invalid(format!(
                            "payment {}/{}: item_ref `{r}` matches no item of source `{}`",
                            p.source, p.external_id, p.source
                        ))
                    })?
                    .get(0, "items.id")?,
            ),
            None => None,
        };
        let a = args![
            p.source,
            p.external_id,
            cid,
            iid,
            p.amount,
            p.currency.as_str(),
            p.value_date,
            p.reference
        ];
        if pay_ins.execute(a)? == 1 {
            stats.payments_new += 1;
            dirty.insert(cid);
        } else if pay_upd.execute(a)? == 1 {
            stats.payments_updated += 1;
            dirty.insert(cid);
        } else {
            stats.payments_unchanged += 1;
        }
    }

    Ok(())
}

/// [`payments_one_by_one`] on PostgreSQL for a large batch, as [`items_in_bulk`].
fn payments_in_bulk(
    db: &Db,
    batch: &Batch,
    customers: &mut Customers,
    stats: &mut IngestStats,
    dirty: &mut HashSet<i64>,
) -> Result<()> {
    let cids: Vec<i64> = batch
        .payments
        .iter()
        .map(|p| customers.id(db, &p.company, &p.customer, stats))
        .collect::<Result<_>>()?;
    let items: HashMap<(String, String), i64> = by_key(
        db,
        "items",
        batch
            .payments
            .iter()
            .filter_map(|p| Some((&p.source, p.item_ref.as_ref()?))),
        "t.id",
        |r| r.get(2, "items.id"),
    )?;
    let old: HashMap<(String, String), i64> = by_key(
        db,
        "payments",
        batch.payments.iter().map(|p| (&p.source, &p.external_id)),
        "t.id",
        |r| r.get(2, "payments.id"),
    )?;
    let key = |p: &PaymentInput| (p.source.clone(), p.external_id.clone());
    let new = batch
        .payments
        .iter()
        .filter(|p| !old.contains_key(&key(p)))
        .count();
    let mut fresh = db
        .next_ids("payments", new)?
        .unwrap_or_default()
        .into_iter();
    const COLUMNS: &[&str] = &[
        "id",
        "source",
        "external_id",
        "customer_id",
        "item_id",
        "amount",
        "currency",
        "value_date",
        "reference",
    ];
    let mut rows = Vec::with_capacity(batch.payments.len());
    for (p, cid) in batch.payments.iter().zip(&cids) {
        let iid: Option<i64> = match &p.item_ref {
            Some(r) => Some(*items.get(&(p.source.clone(), r.clone())).ok_or_else(|| {
                StoreError::Invalid(format!(
                    "payment {}/{}: item_ref `{r}` matches no item of source `{}`",
                    p.source, p.external_id, p.source
                ))
            })?),
            None => None,
        };
        let id = match old.get(&key(p)) {
            Some(id) => *id,
            None => {
                stats.payments_new += 1;
                dirty.insert(*cid);
                fresh.next().expect("an id for each new payment")
            }
        };
        rows.push(vec![
            id.value(),
            p.source.value(),
            p.external_id.value(),
            cid.value(),
            iid.value(),
            p.amount.value(),
            p.currency.as_str().value(),
            p.value_date.value(),
            p.reference.value(),
        ]);
    }
    let updated = db.with_bulk("payments", COLUMNS, &rows, |db| {
        let cols = COLUMNS.join(", ");
        db.execute(
            &format!(
                "INSERT INTO payments({cols}) SELECT {cols} FROM bulk b
                 WHERE NOT EXISTS (SELECT 1 FROM payments p WHERE p.id = b.id) ORDER BY b.id"
            ),
            args![],
        )?;
        db.rows(
            "UPDATE payments SET customer_id = b.customer_id, item_id = b.item_id, amount = b.amount,
                currency = b.currency, value_date = b.value_date, reference = b.reference
             FROM bulk b
             WHERE payments.id = b.id AND (payments.customer_id IS DISTINCT FROM b.customer_id
                OR payments.item_id IS DISTINCT FROM b.item_id OR payments.amount IS DISTINCT FROM b.amount
                OR payments.currency IS DISTINCT FROM b.currency
                OR payments.value_date IS DISTINCT FROM b.value_date
                OR payments.reference IS DISTINCT FROM b.reference)
             RETURNING b.customer_id",
            args![],
        )
    })?;
    for r in &updated {
        stats.payments_updated += 1;
        dirty.insert(r.get(0, "payments.customer_id")?);
    }
    stats.payments_unchanged += (old.len() - updated.len()) as u64;
    Ok(())
}

impl Store {
    /// Whether an item with this idempotency key was ever imported.
    pub fn item_exists(&self, source: &str, external_id: &str) -> Result<bool> {
        Ok(self
            .db()
            .row(
                "SELECT 1 FROM items WHERE source = ?1 AND external_id = ?2",
                args![source, external_id],
            )?
            .is_some())
    }

    /// Writes a batch in one transaction. Either everything in it is stored or nothing is.
    pub fn ingest(&mut self, batch: &Batch) -> Result<IngestStats> {
        ingest(&self.db(), batch, self.clock.today())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrears_core::domain::{ItemInput, PaymentInput};
    use arrears_core::money::Currency;
    use rust_decimal_macros::dec;

    pub(crate) fn item(ext: &str, open: rust_decimal::Decimal) -> ItemInput {
        ItemInput {
            source: "erp".into(),
            external_id: ext.into(),
            company: "ACME".into(),
            customer: "C1".into(),
            document_no: format!("INV-{ext}"),
            document_date: "2026-09-01".parse().unwrap(),
            due_date: "2026-10-01".parse().unwrap(),
            original_amount: dec!(100.00),
            open_amount: open,
            currency: Currency::parse("EUR").unwrap(),
            hold: None,
            original_document: None,
        }
    }

    fn count(s: &Store, sql: &str) -> i64 {
        s.conn().unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// The backstop behind every source (connectors and plugins have no CSV parser in
    /// front): nothing of a batch is written when one figure is out of bounds.
    #[test]
    fn a_batch_with_an_amount_out_of_bounds_or_an_unknown_item_ref_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("a.db")).unwrap();
        let payment = |item_ref: Option<&str>, amount| PaymentInput {
            source: "erp".into(),
            external_id: "p1".into(),
            company: "ACME".into(),
            customer: "C1".into(),
            amount,
            currency: Currency::parse("EUR").unwrap(),
            value_date: "2026-10-05".parse().unwrap(),
            reference: String::new(),
            item_ref: item_ref.map(String::from),
        };
        let mut huge = item("2", dec!(100));
        huge.original_amount = dec!(50000000000000000000000000000);
        huge.open_amount = huge.original_amount;
        let cases = [
            (
                vec![item("1", dec!(10.001))],
                vec![],
                "item erp/1 open_amount",
            ),
            (vec![item("1", dec!(10)), huge], vec![], "out of range"),
            (
                vec![item("1", dec!(10))],
                vec![payment(Some("9"), dec!(5))],
                "item_ref `9` matches no item",
            ),
            (
                vec![item("1", dec!(10))],
                vec![payment(Some("1"), dec!(5.555))],
                "payment erp/p1 amount",
            ),
        ];
        for (items, payments, why) in cases {
            let err = s
                .ingest(&Batch {
                    items,
                    payments,
                    ..Batch::default()
                })
                .unwrap_err();
            assert!(matches!(err, StoreError::Invalid(_)), "{err}");
            assert!(err.to_string().contains(why), "{err}");
            assert_eq!(count(&s, "SELECT COUNT(*) FROM items"), 0);
            assert_eq!(count(&s, "SELECT COUNT(*) FROM customers"), 0);
        }
        s.ingest(&Batch {
            items: vec![item("1", dec!(10))],
            payments: vec![payment(Some("1"), dec!(5))],
            ..Batch::default()
        })
        .unwrap();
        assert_eq!(
            count(
                &s,
                "SELECT COUNT(*) FROM payments WHERE item_id IS NOT NULL"
            ),
            1
        );
    }

    /// Every write says in the change log what it changed, in its own transaction:
    /// items by themselves when only they changed, the customer whole otherwise. A
    /// run prunes what it read; the numbering goes on.
    #[test]
    fn writes_log_what_they_changed_and_a_run_prunes_what_it_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("a.db")).unwrap();
        let batch = |items: Vec<ItemInput>| Batch {
            items,
            ..Batch::default()
        };
        s.ingest(&batch(vec![item("1", dec!(100)), item("2", dec!(100))]))
            .unwrap();
        let c1 = s.customer_id("C1").unwrap();
        let id = |ext: &str| -> i64 {
            s.conn()
                .unwrap()
                .query_row("SELECT id FROM items WHERE external_id = ?1", [ext], |r| {
                    r.get(0)
                })
                .unwrap()
        };
        let (i1, i2) = (id("1"), id("2"));
        let first = s.changes_since(0).unwrap();
        // A new customer is changed whole; its new items are logged too.
        assert_eq!(first.entries, [(c1, None), (c1, Some(i1)), (c1, Some(i2))]);
        assert_eq!(first.dirty.iter().map(|d| d.0).collect::<Vec<_>>(), [c1]);

        // A payment on one item: that item alone.
        s.ingest(&batch(vec![item("1", dec!(60)), item("2", dec!(100))]))
            .unwrap();
        let next = s.changes_since(first.seq).unwrap();
        assert_eq!(next.entries, [(c1, Some(i1))]);
        // A customer's data or a payment row: the customer whole.
        s.ingest(&Batch {
            payments: vec![PaymentInput {
                source: "erp".into(),
                external_id: "p1".into(),
                company: "ACME".into(),
                customer: "C1".into(),
                amount: dec!(40),
                currency: Currency::parse("EUR").unwrap(),
                value_date: "2026-10-05".parse().unwrap(),
                reference: String::new(),
                item_ref: Some("1".into()),
            }],
            ..Batch::default()
        })
        .unwrap();
        let after = s.changes_since(next.seq).unwrap();
        assert_eq!(after.entries, [(c1, None)]);
        assert_eq!(s.changes_pending().unwrap(), Some(after.seq));

        // Only the log marks a customer changed: a write that would bypass it fails.
        let bypass = s
            .conn()
            .unwrap()
            .execute("UPDATE customers SET dirty = dirty + 1", [])
            .unwrap_err();
        assert!(bypass.to_string().contains("change log"), "{bypass}");

        // A run that loaded everything prunes what it read and counts it as seen.
        s.load_run_input(crate::Scope::All).unwrap();
        s.write_run(
            "2026-10-06".parse().unwrap(),
            "h",
            "full",
            true,
            &crate::RunOutput::default(),
            "{}",
        )
        .unwrap();
        assert_eq!(count(&s, "SELECT COUNT(*) FROM changes"), 0);
        assert_eq!(s.changes_pending().unwrap(), None);
        s.ingest(&batch(vec![item("2", dec!(0))])).unwrap();
        let cleared = s.changes_since(0).unwrap();
        assert_eq!(cleared.entries, [(c1, Some(i2))]);
        assert!(cleared.seq > after.seq, "numbering goes on after pruning");
        assert_eq!(s.changes_pending().unwrap(), Some(cleared.seq));
    }

    #[test]
    fn same_key_twice_updates_never_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("a.db")).unwrap();
        let b = Batch {
            items: vec![item("1", dec!(100)), item("2", dec!(50))],
            ..Batch::default()
        };
        let st = s.ingest(&b).unwrap();
        assert_eq!((st.items_new, st.customers_new), (2, 1));
        let st = s.ingest(&b).unwrap();
        assert_eq!(
            (st.items_new, st.items_updated, st.items_unchanged),
            (0, 0, 2)
        );
        let b2 = Batch {
            items: vec![item("1", dec!(40))],
            ..Batch::default()
        };
        let st = s.ingest(&b2).unwrap();
        assert_eq!(st.items_updated, 1);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM items"), 2);
        assert_eq!(
            count(&s, "SELECT COUNT(*) FROM items WHERE open_amount = '40'"),
            1
        );
    }

    #[test]
    fn zero_open_amount_or_disappearing_from_a_snapshot_clears() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("a.db")).unwrap();
        s.ingest(&Batch {
            items: vec![
                item("1", dec!(100)),
                item("2", dec!(50)),
                item("3", dec!(5)),
            ],
            ..Batch::default()
        })
        .unwrap();
        let st = s
            .ingest(&Batch {
                items: vec![item("1", dec!(0)), item("3", dec!(5))],
                snapshot_sources: vec!["erp".into()],
                ..Batch::default()
            })
            .unwrap();
        assert_eq!(
            st.items_cleared, 2,
            "1 paid to zero, 2 gone from the snapshot"
        );
        assert_eq!(
            count(&s, "SELECT COUNT(*) FROM items WHERE status = 'open'"),
            1
        );
    }

    #[test]
    fn empty_fields_do_not_wipe_stored_customer_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("a.db")).unwrap();
        let full = CustomerInfo {
            company: "ACME".into(),
            code: "C1".into(),
            name: "Acme Ltd".into(),
            country: "GB".into(),
            email: Some("ap@acme.example".into()),
            phone: None,
            language: Some("en".into()),
            timezone: None,
            credit_limit: Some((dec!(5000), Currency::parse("GBP").unwrap())),
            street: Some("1 Dock Road".into()),
            postal_code: Some("E16 1AA".into()),
            city: Some("London".into()),
            dunning: None,
        };
        s.ingest(&Batch {
            customers: vec![full.clone()],
            ..Batch::default()
        })
        .unwrap();
        let thin = CustomerInfo {
            name: "Acme Limited".into(),
            country: String::new(),
            email: None,
            language: None,
            credit_limit: None,
            street: None,
            postal_code: None,
            city: None,
            ..full.clone()
        };
        let st = s
            .ingest(&Batch {
                customers: vec![thin.clone()],
                ..Batch::default()
            })
            .unwrap();
        assert_eq!(st.customers_updated, 1);
        let row: (String, String, Option<String>, Option<String>) = s
            .conn()
            .unwrap()
            .query_row(
                "SELECT name, country, email, credit_limit FROM customers",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            row,
            (
                "Acme Limited".into(),
                "GB".into(),
                Some("ap@acme.example".into()),
                Some("5000".into())
            )
        );
        let st = s
            .ingest(&Batch {
                customers: vec![thin],
                ..Batch::default()
            })
            .unwrap();
        assert_eq!(
            st.customers_updated, 0,
            "nothing new: no update, customer not marked dirty"
        );
        let id = s.customer_id("ACME/C1").unwrap();
        let letter = s.contact_profile(id).unwrap().postal_address();
        assert_eq!(
            letter.as_deref(),
            Some("Acme Limited\n1 Dock Road\nE16 1AA London\nGB"),
            "the address parts a source sent are kept when it sends none"
        );
        // A move: the source sends a new city only; the rest stays.
        s.ingest(&Batch {
            customers: vec![CustomerInfo {
                city: Some("Leeds".into()),
                ..full.clone()
            }],
            ..Batch::default()
        })
        .unwrap();
        assert_eq!(
            s.contact_profile(id).unwrap().city.as_deref(),
            Some("Leeds")
        );
        // A source that says there is none (an empty text) clears: no letter and
        // no e-mail go where the ERP's users removed them. Once, not every time.
        let gone = CustomerInfo {
            email: Some(String::new()),
            street: Some(String::new()),
            postal_code: Some(String::new()),
            city: Some(String::new()),
            ..full
        };
        let batch = Batch {
            customers: vec![gone],
            ..Batch::default()
        };
        assert_eq!(s.ingest(&batch).unwrap().customers_updated, 1);
        let p = s.contact_profile(id).unwrap();
        assert_eq!((p.postal_address(), p.email, p.street), (None, None, None));
        assert_eq!(s.ingest(&batch).unwrap().customers_updated, 0);
    }

    #[test]
    fn a_failing_batch_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("a.db")).unwrap();
        s.ingest(&Batch {
            items: vec![item("1", dec!(100))],
            ..Batch::default()
        })
        .unwrap();
        // A trigger standing in for any mid-batch failure (disk full, constraint, crash).
        s.conn().unwrap().execute_batch("CREATE TRIGGER boom BEFORE INSERT ON payments BEGIN SELECT RAISE(ABORT, 'boom'); END;").unwrap();
        let pay = PaymentInput {
            source: "bank".into(),
            external_id: "p1".into(),
            company: "ACME".into(),
            customer: "C2".into(),
            amount: dec!(1),
            currency: Currency::parse("EUR").unwrap(),
            value_date: "2026-10-02".parse().unwrap(),
            reference: String::new(),
            item_ref: None,
        };
        let b = Batch {
            items: vec![item("1", dec!(10)), item("9", dec!(10))],
            payments: vec![pay],
            ..Batch::default()
        };
        assert!(s.ingest(&b).is_err());
        assert_eq!(count(&s, "SELECT COUNT(*) FROM items"), 1);
        assert_eq!(
            count(&s, "SELECT COUNT(*) FROM items WHERE open_amount = '100'"),
            1
        );
        assert_eq!(count(&s, "SELECT COUNT(*) FROM customers"), 1);
    }

    /// The same batches on PostgreSQL as on SQLite: new, updated, unchanged, a
    /// snapshot clearing what it no longer lists, payments, the change log; the
    /// stored rows read the same (amounts with their scale, dates).
    #[test]
    fn a_batch_lands_the_same_on_postgres() {
        let first = Batch {
            customers: vec![CustomerInfo {
                company: "ACME".into(),
                code: "C1".into(),
                name: "Acme Ltd".into(),
                country: "GB".into(),
                credit_limit: Some((dec!(5000.00), Currency::parse("EUR").unwrap())),
                ..CustomerInfo::default()
            }],
            items: vec![item("1", dec!(100.00)), item("2", dec!(40.50))],
            payments: vec![PaymentInput {
                source: "erp".into(),
                external_id: "p1".into(),
                company: "ACME".into(),
                customer: "C1".into(),
                amount: dec!(59.50),
                currency: Currency::parse("EUR").unwrap(),
                value_date: "2026-10-20".parse().unwrap(),
                reference: "INV-2".into(),
                item_ref: Some("2".into()),
            }],
            ..Batch::default()
        };
        let mut again = first.clone();
        again.items = vec![item("1", dec!(60.00)), item("3", dec!(10.00))];
        again.snapshot_sources = vec!["erp".into()];
        let rows = "SELECT external_id || ' ' || status || ' ' || open_amount || ' ' || due_date FROM items ORDER BY external_id";

        let dir = tempfile::tempdir().unwrap();
        let mut lite = Store::open(&dir.path().join("a.db")).unwrap();
        let pg = crate::pg::testing::PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
        let mut post = Store::open_postgres(&pg.database("books").unwrap()).unwrap();
        let read = |db: &Db, sql: &str| -> Vec<String> {
            db.rows(sql, args![])
                .unwrap()
                .iter()
                .map(|r| r.get(0, "row").unwrap())
                .collect()
        };
        for batch in [&first, &first, &again] {
            let a = lite.ingest(batch).unwrap();
            let b = post.ingest(batch).unwrap();
            assert_eq!(a, b);
        }
        let want = read(&Db::Lite(lite.conn().unwrap()), rows);
        assert_eq!(
            want,
            [
                "1 open 60.00 2026-10-01",
                "2 cleared 40.50 2026-10-01",
                "3 open 10.00 2026-10-01"
            ]
        );
        assert_eq!(read(&post.db(), rows), want);
        // By document: PostgreSQL's ids have gaps (an insert that runs into an
        // existing row still takes a number), SQLite's do not.
        let log = "SELECT c.customer_id || ':' || COALESCE(i.external_id, '-')
                   FROM changes c LEFT JOIN items i ON i.id = c.item_id ORDER BY c.seq";
        assert_eq!(
            read(&post.db(), log),
            read(&Db::Lite(lite.conn().unwrap()), log)
        );
        let limit = "SELECT credit_limit || ' ' || (SELECT amount FROM payments) FROM customers";
        assert_eq!(read(&post.db(), limit), ["5000.00 59.50"]);
        // A batch that fails leaves nothing behind there either.
        let mut bad = again.clone();
        bad.payments[0].item_ref = Some("nope".into());
        bad.items.push(item("4", dec!(1.00)));
        assert!(post.ingest(&bad).is_err());
        assert_eq!(read(&post.db(), rows).len(), 3);
    }

    /// Large batches go in bulk on PostgreSQL: the same rows (ids included), the
    /// same counts and the same change log as SQLite's one statement per row, for
    /// new items and payments, changed ones (cleared, moved to another customer,
    /// kept in an agreement), unchanged ones, a snapshot, and a bad reference.
    #[test]
    fn a_large_batch_lands_the_same_in_bulk_on_postgres() {
        let items = |round: u32| -> Vec<ItemInput> {
            (0..150u32)
                .map(|n| {
                    let mut it = item(&n.to_string(), dec!(100.00));
                    it.customer = format!("C{}", n % 5);
                    if round > 0 && n % 7 == 0 {
                        it.open_amount = dec!(0.10) * rust_decimal::Decimal::from(n + 1);
                    }
                    if round > 0 && n % 11 == 0 {
                        it.open_amount = dec!(0);
                    }
                    if round > 0 && n == 3 {
                        it.customer = "C9".into();
                    }
                    it
                })
                .collect()
        };
        let payments = |round: u32| -> Vec<PaymentInput> {
            (0..80u32)
                .map(|n| PaymentInput {
                    source: "erp".into(),
                    external_id: format!("p{n}"),
                    company: "ACME".into(),
                    customer: format!("C{}", n % 5),
                    amount: if round > 0 && n % 9 == 0 {
                        dec!(0.30)
                    } else {
                        dec!(12.50)
                    },
                    currency: Currency::parse("EUR").unwrap(),
                    value_date: "2026-10-20".parse().unwrap(),
                    reference: format!("INV-{n}"),
                    item_ref: (n % 2 == 0).then(|| n.to_string()),
                })
                .collect()
        };
        // Customers' data: new ones, ones the items name too, and in the second
        // round changed, cleared and left-out fields.
        let customers = |round: u32| -> Vec<CustomerInfo> {
            (0..70u32)
                .map(|n| CustomerInfo {
                    company: "ACME".into(),
                    code: format!("C{n}"),
                    name: format!("Customer {n}"),
                    country: if round > 0 && n % 4 == 0 {
                        String::new()
                    } else {
                        "DE".into()
                    },
                    email: match (round, n % 3) {
                        (0, _) => Some(format!("c{n}@example.com")),
                        (_, 0) => Some(String::new()),
                        (_, 1) => None,
                        _ => Some(format!("new{n}@example.com")),
                    },
                    credit_limit: (n % 5 == 0).then(|| {
                        (
                            dec!(5000.00) + rust_decimal::Decimal::from(round),
                            Currency::parse("EUR").unwrap(),
                        )
                    }),
                    city: (round > 0 && n % 6 == 0).then(|| "Köln".to_string()),
                    ..CustomerInfo::default()
                })
                .collect()
        };
        let first = Batch {
            customers: customers(0),
            items: items(0),
            payments: payments(0),
            ..Batch::default()
        };
        let mut second = Batch {
            customers: customers(1),
            items: items(1),
            payments: payments(1),
            ..Batch::default()
        };
        second.items.truncate(140);
        second.snapshot_sources = vec!["erp".into()];
        let dir = tempfile::tempdir().unwrap();
        let mut lite = Store::open(&dir.path().join("a.db")).unwrap();
        let mut post = crate::pg::testing::store();
        let read = |db: &Db, sql: &str| -> Vec<String> {
            db.rows(sql, args![])
                .unwrap()
                .iter()
                .map(|r| r.get(0, "row").unwrap())
                .collect()
        };
        let tables = [
            "SELECT id || ' ' || external_id || ' ' || customer_id || ' ' || status || ' ' || open_amount
             || ' ' || document_date FROM items ORDER BY id",
            "SELECT id || ' ' || external_id || ' ' || customer_id || ' ' || COALESCE(item_id, 0) || ' '
             || amount FROM payments ORDER BY id",
            "SELECT customer_id || ':' || COALESCE(item_id, 0) FROM changes ORDER BY seq",
            "SELECT id || ' ' || company || '/' || code || ' ' || name || ' ' || country || ' '
             || COALESCE(email, '-') || ' ' || COALESCE(CAST(credit_limit AS TEXT), '-') || ' '
             || COALESCE(city, '-') || ' ' || dirty FROM customers ORDER BY id",
        ];
        let same = |lite: &Store, post: &Store, what: &str| {
            for t in tables {
                assert_eq!(read(&post.db(), t), read(&lite.db(), t), "{what}: {t}");
            }
        };
        for (batch, what) in [(&first, "new"), (&first, "the same again")] {
            let a = lite.ingest(batch).unwrap();
            let b = post.ingest(batch).unwrap();
            assert_eq!(b, a, "{what}");
            same(&lite, &post, what);
        }
        // An item in an agreement stays so when the ERP sends it as open again.
        for s in [&lite, &post] {
            s.db()
                .execute(
                    "UPDATE items SET status = 'agreement' WHERE external_id = '5'",
                    args![],
                )
                .unwrap();
        }
        let a = lite.ingest(&second).unwrap();
        let b = post.ingest(&second).unwrap();
        assert_eq!(b, a, "changed");
        assert!(
            a.items_updated > 20 && a.items_cleared > 10 && a.payments_updated > 5,
            "{a:?}"
        );
        same(&lite, &post, "changed");
        assert_eq!(
            read(
                &post.db(),
                "SELECT status FROM items WHERE external_id = '5'"
            ),
            ["agreement"]
        );
        // A reference to no item fails the batch, with the same words, writing nothing.
        let mut bad = second.clone();
        bad.payments[10].item_ref = Some("nope".into());
        let (a, b) = (
            lite.ingest(&bad).unwrap_err(),
            post.ingest(&bad).unwrap_err(),
        );
        assert_eq!(b.to_string(), a.to_string());
        same(&lite, &post, "after the bad batch");
    }
}
