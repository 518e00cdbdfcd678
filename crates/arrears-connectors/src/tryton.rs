//! Tryton ERP over its JSON-RPC API: customers and open receivable lines.
//!
//! A full sync reads every posted, unreconciled receivable line with a party (paged
//! by id) and stores them as open items of the source `tryton:<connector>` in one
//! batch marked as a snapshot: a line that is no longer open in Tryton (paid and
//! reconciled) is cleared here, and its case closes on the next run.
//!
//! Between full syncs (`full_every`, default daily) a sync reads only what changed
//! since the cursor: lines created or written since then, minus an `overlap`,
//! because Tryton stamps a record with its transaction's start (PostgreSQL) or
//! first write (SQLite), not its commit, so a long transaction can commit records
//! older than the cursor. Reconciling a payment writes the invoice's line, so a
//! paid item shows up as a written, reconciled line and is cleared; a partial
//! payment is a new credit line, and every open line of its invoice is read again
//! to recompute the invoice's open amount. Anything this misses (a line moved to
//! another party, a cancelled move) the next full snapshot corrects.
//!
//! Per party it reads what decides who may be dunned and where to write: the
//! dunning procedure (none: Tryton does not dun the party, and neither does
//! Arrears), the invoice address (else the first), e-mail and phone (invoice ones
//! first) and language; per line, whether Tryton's dunning of it is blocked.
//!
//! The password comes from an environment variable or a file and is never logged.

use std::path::PathBuf;
use std::time::Duration;

use backon::{BlockingRetryable, ExponentialBuilder};
use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::SyncStats;
use arrears_core::domain::{Batch, CustomerInfo, ErpDunning, Hold, ItemInput};
use arrears_core::money::Currency;
use arrears_store::{DeliveredStep, Store};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrytonConfig {
    /// Server base URL, e.g. `http://127.0.0.1:8000`.
    pub url: String,
    pub database: String,
    pub user: String,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// The company key customers and items get here [default: the database name].
    pub company: Option<String>,
    /// Per-request timeout.
    #[serde(default = "default_timeout", with = "arrears_core::human_duration")]
    pub timeout: Duration,
    /// Lines per request.
    #[serde(default = "default_page")]
    pub page_size: usize,
    /// How often a sync reads every open line instead of what changed; `0s`: always.
    #[serde(default = "default_full_every", with = "arrears_core::human_duration")]
    pub full_every: Duration,
    /// How far before the cursor a changed-lines read starts (Tryton's timestamps are
    /// transaction starts, not commits).
    #[serde(default = "default_overlap", with = "arrears_core::human_duration")]
    pub overlap: Duration,
    /// Tell Tryton what Arrears did: a note on the party for each delivered step.
    #[serde(default)]
    pub write_back: bool,
}

fn default_full_every() -> Duration {
    Duration::from_secs(86_400)
}

fn default_overlap() -> Duration {
    Duration::from_secs(1_800)
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_page() -> usize {
    500
}

#[derive(Debug, thiserror::Error)]
pub enum TrytonError {
    #[error("tryton {url}: {method}: {message}")]
    Call {
        url: String,
        method: String,
        message: String,
        /// Worth trying again (connection refused, timeout, 5xx, 429).
        transient: bool,
    },
    #[error("tryton: {0}")]
    Config(String),
    #[error("tryton: line {line}: {message}")]
    Data { line: i64, message: String },
}

impl TrytonError {
    fn transient(&self) -> bool {
        matches!(
            self,
            TrytonError::Call {
                transient: true,
                ..
            }
        )
    }
}

/// Sessions by (url, database, user), kept between syncs.
type Sessions = std::collections::BTreeMap<(String, String, String), (String, Value)>;
static SESSIONS: std::sync::Mutex<Sessions> = std::sync::Mutex::new(Sessions::new());

struct Client {
    cfg: TrytonConfig,
    agent: ureq::Agent,
    auth: Option<String>,
    context: Value,
    id: u64,
}

impl Client {
    fn new(cfg: &TrytonConfig) -> Client {
        let agent = super::http_agent(cfg.timeout);
        Client {
            cfg: cfg.clone(),
            agent,
            auth: None,
            context: json!({}),
            id: 0,
        }
    }

    fn password(&self) -> Result<String, TrytonError> {
        if let Some(var) = &self.cfg.password_env {
            return std::env::var(var).map_err(|_| {
                TrytonError::Config(format!(
                    "environment variable {var} (password_env) is not set"
                ))
            });
        }
        if let Some(p) = &self.cfg.password_file {
            return arrears_secret::read(p)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| TrytonError::Config(format!("password_file: {e}")));
        }
        Err(TrytonError::Config(
            "set password_env or password_file".into(),
        ))
    }

    fn endpoint(&self) -> String {
        format!(
            "{}/{}/rpc/",
            self.cfg.url.trim_end_matches('/'),
            self.cfg.database
        )
    }

    /// One JSON-RPC call, retried with backoff while the failure is transient.
    fn call(&mut self, method: &str, params: Value) -> Result<Value, TrytonError> {
        let attempt = || self.call_once(method, &params);
        let retried = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(5))
                    .with_max_times(3),
            )
            .when(TrytonError::transient)
            .notify(|e, after| tracing::warn!(error = %e, ?after, "tryton call failed; retrying"))
            .call();
        match retried {
            // An expired session: log in again once, then repeat the call.
            Err(TrytonError::Call { message, .. })
                if message == "401" && method != "common.db.login" =>
            {
                self.login()?;
                self.call_once(method, &params)
            }
            other => other,
        }
    }

    fn call_once(&self, method: &str, params: &Value) -> Result<Value, TrytonError> {
        let url = self.endpoint();
        let err = |message: String, transient: bool| TrytonError::Call {
            url: url.clone(),
            method: method.to_string(),
            message,
            transient,
        };
        let mut req = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json");
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let body = json!({ "id": self.id, "method": method, "params": params });
        let mut resp = req.send_json(&body).map_err(|e| {
            let transient = matches!(
                e,
                ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed
            );
            err(e.to_string(), transient)
        })?;
        let status = resp.status().as_u16();
        if status == 401 {
            return Err(err("401".into(), false));
        }
        if status != 200 {
            let transient = status == 429 || status >= 500;
            return Err(err(format!("HTTP {status}"), transient));
        }
        let reply: Value = resp
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_json()
            .map_err(|e| err(format!("reply is not JSON: {e}"), false))?;
        if let Some(e) = reply.get("error").filter(|e| !e.is_null()) {
            return Err(err(format!("server error: {e}"), false));
        }
        reply
            .get("result")
            .cloned()
            .ok_or_else(|| err("reply has neither result nor error".into(), false))
    }

    /// The session of an earlier sync of this process, if any, else a new login.
    /// Tryton hashes the password on every login (≈ 0.1 s here, half of an
    /// incremental sync) and rate-limits logins; an expired session is a 401, and
    /// `call` logs in again.
    fn resume(&mut self) -> Result<(), TrytonError> {
        let key = self.session_key();
        let kept = SESSIONS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        match kept {
            Some((auth, context)) => {
                self.auth = Some(auth);
                self.context = context;
                Ok(())
            }
            None => self.login(),
        }
    }

    fn session_key(&self) -> (String, String, String) {
        (
            self.cfg.url.clone(),
            self.cfg.database.clone(),
            self.cfg.user.clone(),
        )
    }

    fn login(&mut self) -> Result<(), TrytonError> {
        self.auth = None;
        let password = self.password()?;
        let r = self.call(
            "common.db.login",
            json!([self.cfg.user, { "password": password }, "en"]),
        )?;
        let (uid, session) = match r.as_array().map(|a| a.as_slice()) {
            Some([uid, session, ..]) => (
                uid.clone(),
                session.as_str().unwrap_or_default().to_string(),
            ),
            _ => {
                return Err(TrytonError::Config(format!(
                    "login as {} failed (wrong user or password?)",
                    self.cfg.user
                )))
            }
        };
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}:{}", self.cfg.user, uid, session));
        self.auth = Some(format!("Session {token}"));
        self.context = self.call("model.res.user.get_preferences", json!([true, {}]))?;
        if let Some(auth) = &self.auth {
            SESSIONS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(self.session_key(), (auth.clone(), self.context.clone()));
        }
        Ok(())
    }
}

/// Tryton's typed JSON values (`{"__class__": "Decimal", "decimal": "12.30"}`).
fn decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::Object(o) if o.get("__class__").and_then(Value::as_str) == Some("Decimal") => {
            o.get("decimal")?.as_str()?.parse().ok()
        }
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

fn date(v: &Value) -> Option<NaiveDate> {
    let o = v.as_object()?;
    let n = |k: &str| o.get(k).and_then(Value::as_i64);
    NaiveDate::from_ymd_opt(n("year")? as i32, n("month")? as u32, n("day")? as u32)
}

/// A datetime as sortable text (`2026-11-23T10:00:00.000000`), for the cursor.
fn datetime(v: &Value) -> Option<String> {
    let o = v.as_object()?;
    let n = |k: &str| o.get(k).and_then(Value::as_i64).unwrap_or(0);
    o.get("year")?;
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
        n("year"),
        n("month"),
        n("day"),
        n("hour"),
        n("minute"),
        n("second"),
        n("microsecond")
    ))
}

/// A dotted field of a reply row: Tryton 8 nests them (`"party.": {"code": …}`);
/// flat keys (`"party.code"`) are read too.
fn field<'a>(r: &'a Value, dotted: &str) -> &'a Value {
    if let Some(v) = r.get(dotted) {
        return v;
    }
    match dotted.split_once('.') {
        Some((head, rest)) => match r.get(format!("{head}.")) {
            Some(inner) if !inner.is_null() => field(inner, rest),
            _ => &Value::Null,
        },
        None => &Value::Null,
    }
}

const FIELDS: &[&str] = &[
    "id",
    "party",
    "party.rec_name",
    "party.code",
    "debit",
    "credit",
    "maturity_date",
    "move.number",
    "move.date",
    // `move_origin.number` fails the whole read when one origin is not an invoice,
    // so invoice numbers are read separately by id.
    "move_origin",
    "reconciliation",
    "write_date",
    "create_date",
    "company.currency.code",
];

/// Where the next sync starts, kept as the connector's cursor (JSON).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cursor {
    /// The newest write or create date seen, in Tryton's clock.
    changed: Option<String>,
    /// When the last full snapshot was stored, in Arrears' clock.
    full: Option<DateTime<Utc>>,
    /// Escalation steps up to this id are written back (or were never delivered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    written: Option<i64>,
}

const STAMP: &str = "%Y-%m-%dT%H:%M:%S%.6f";

fn stamp_value(t: NaiveDateTime) -> Value {
    use chrono::{Datelike, Timelike};
    json!({
        "__class__": "datetime", "year": t.year(), "month": t.month(), "day": t.day(),
        "hour": t.hour(), "minute": t.minute(), "second": t.second(),
        "microsecond": t.nanosecond() / 1_000,
    })
}

/// The newest `write_date`/`create_date` of some rows, kept in `newest`.
fn note_stamps(rows: &[Value], newest: &mut Option<String>) {
    for r in rows {
        for k in ["write_date", "create_date"] {
            if let Some(t) = datetime(&r[k]) {
                if newest.as_ref().is_none_or(|c| &t > c) {
                    *newest = Some(t);
                }
            }
        }
    }
}

/// Domain clause: created or written at or after `since`.
fn since_clause(since: NaiveDateTime) -> Value {
    let t = stamp_value(since);
    json!(["OR", ["write_date", ">=", t], ["create_date", ">=", t]])
}

/// The same for lines, and the lines of moves written since: posting a move
/// created earlier as a draft writes the move, not its lines.
fn lines_since_clause(since: NaiveDateTime) -> Value {
    let t = stamp_value(since);
    json!([
        "OR",
        ["write_date", ">=", t],
        ["create_date", ">=", t],
        ["move.write_date", ">=", t]
    ])
}

fn receivable_domain() -> Vec<Value> {
    vec![
        json!(["account.type.receivable", "=", true]),
        json!(["move.state", "=", "posted"]),
        json!(["party", "!=", null]),
    ]
}

impl Client {
    fn ctx(&self) -> Value {
        self.context.clone()
    }

    /// Every record of `model` matching `domain`, paged by id rather than offset, so
    /// records posted during the read cannot shift pages and be read twice or not at all.
    fn search_all(
        &mut self,
        model: &str,
        domain: &[Value],
        fields: &[&str],
    ) -> Result<Vec<Value>, TrytonError> {
        let page = self.cfg.page_size.max(1);
        let mut out = Vec::new();
        let mut last_id = 0i64;
        loop {
            let mut d = domain.to_vec();
            d.push(json!(["id", ">", last_id]));
            let ctx = self.ctx();
            let rows = self.call(
                &format!("model.{model}.search_read"),
                json!([d, 0, page, [["id", "ASC"]], fields, ctx]),
            )?;
            let rows = match rows {
                Value::Array(a) => a,
                _ => Vec::new(),
            };
            let n = rows.len();
            for r in rows {
                last_id = last_id.max(r["id"].as_i64().unwrap_or_default());
                out.push(r);
            }
            if n < page {
                return Ok(out);
            }
        }
    }

    /// Whether `model` has `field` here (a module that adds it may not be activated).
    fn has_field(&mut self, model: &str, field: &str) -> Result<bool, TrytonError> {
        let ctx = self.ctx();
        let r = self.call(&format!("model.{model}.fields_get"), json!([[field], ctx]))?;
        Ok(r.get(field).is_some())
    }

    /// The newest write or create date of any receivable line: where a full
    /// snapshot leaves the cursor.
    fn newest_line_stamp(&mut self) -> Result<Option<String>, TrytonError> {
        let mut newest = None;
        for k in ["write_date", "create_date"] {
            let ctx = self.ctx();
            let rows = self.call(
                "model.account.move.line.search_read",
                json!([
                    [["account.type.receivable", "=", true], [k, "!=", null]],
                    0,
                    1,
                    [[k, "DESC"]],
                    [k],
                    ctx
                ]),
            )?;
            note_stamps(
                rows.as_array().map(Vec::as_slice).unwrap_or_default(),
                &mut newest,
            );
        }
        Ok(newest)
    }
}

/// One sync: every open line (a snapshot of the source) when a full sync is due,
/// else the lines changed since the cursor.
pub fn sync(store: &mut Store, connector: &str, cfg: &TrytonConfig) -> Result<SyncStats, String> {
    let source = format!("tryton:{connector}");
    let company = cfg.company.clone().unwrap_or_else(|| cfg.database.clone());
    let now = store.clock().now();
    // A cursor that does not parse (one from before the incremental pull) asks for
    // a full sync.
    let prev: Cursor = store
        .connector_health(connector)
        .map_err(|e| e.to_string())?
        .and_then(|h| h.cursor)
        .and_then(|c| serde_json::from_str(&c).ok())
        .unwrap_or_default();
    let since = match (&prev.changed, prev.full) {
        (Some(changed), Some(full))
            if !cfg.full_every.is_zero()
                && now.signed_duration_since(full).to_std().unwrap_or_default()
                    < cfg.full_every =>
        {
            NaiveDateTime::parse_from_str(changed, STAMP)
                .ok()
                .map(|t| t - chrono::Duration::from_std(cfg.overlap).unwrap_or_default())
        }
        _ => None,
    };
    let mut client = Client::new(cfg);
    client.resume().map_err(|e| e.to_string())?;
    let held = store
        .held_items(&source, BLOCKED)
        .map_err(|e| e.to_string())?;
    let pull = pull(&mut client, since, &held).map_err(|e| e.to_string())?;
    let numbers = invoice_numbers(
        &mut client,
        pull.open.iter().chain(&pull.reconciled),
        cfg.page_size,
    )?;
    let (mut customers, mut items, skipped) =
        open_items(&pull.open, &numbers, &source, &company).map_err(|e| e.to_string())?;
    let pulled = pull.open.len() as u64;
    // Lines reconciled since the cursor: their items are cleared.
    let (paid_customers, paid, _) =
        open_items(&pull.reconciled, &numbers, &source, &company).map_err(|e| e.to_string())?;
    let reconciled = pull.reconciled.len() as u64;
    for mut it in paid {
        it.open_amount = Decimal::ZERO;
        items.push(it);
    }
    for c in paid_customers {
        if !customers.iter().any(|k| k.code == c.code) {
            customers.push(c);
        }
    }
    for it in &mut items {
        if pull.blocked.contains(&it.external_id) {
            it.hold = Some(Hold {
                reason: BLOCKED.into(),
                until: None,
            });
        }
    }
    let mut ids = pull.parties.clone();
    ids.extend(
        pull.open
            .iter()
            .chain(&pull.reconciled)
            .filter_map(|r| r["party"].as_i64()),
    );
    let parties =
        read_parties(&mut client, ids, &company, pull.dunning_module).map_err(|e| e.to_string())?;
    let by_code: std::collections::HashMap<&str, &CustomerInfo> =
        parties.values().map(|p| (p.code.as_str(), p)).collect();
    for c in &mut customers {
        if let Some(p) = by_code.get(c.code.as_str()) {
            *c = (*p).clone();
        }
    }
    // A party whose data changed but who has no line in this pull: only one
    // Arrears already knows (Tryton's suppliers and prospects are not customers).
    let mut listed: std::collections::HashSet<String> =
        customers.iter().map(|c| c.code.clone()).collect();
    for id in &pull.parties {
        if let Some(p) = parties.get(id) {
            if !listed.contains(&p.code)
                && store
                    .customer_id(&format!("{}/{}", p.company, p.code))
                    .is_ok()
            {
                listed.insert(p.code.clone());
                customers.push(p.clone());
            }
        }
    }
    let excluded = customers
        .iter()
        .filter(|c| c.dunning == Some(ErpDunning::Excluded))
        .count();
    let full = since.is_none();
    let batch = Batch {
        customers,
        items,
        snapshot_sources: if full {
            vec![source.clone()]
        } else {
            Vec::new()
        },
        ..Batch::default()
    };
    let stats = store
        .audited(
            &format!("connector:{connector}"),
            "tryton.sync",
            &source,
            |st| {
                let s = st.ingest(&batch)?;
                let after = json!({
                    "mode": if full { "full" } else { "changes" },
                    "open_lines": pulled, "reconciled_lines": reconciled,
                    "items_new": s.items_new, "items_updated": s.items_updated,
                    "items_cleared": s.items_cleared, "customers_new": s.customers_new,
                    "customers_updated": s.customers_updated,
                });
                Ok::<_, arrears_store::StoreError>((s, json!(null), after))
            },
        )
        .map_err(|e| e.to_string())?;
    // Write-back: the data is stored whatever happens here; a failure is the
    // sync's problem, and the steps not written are written next time.
    let mut problem = None;
    let (noted, written) = if cfg.write_back {
        // Switched on now: from the newest step on, not the whole past.
        let after = match prev.written {
            Some(w) => w,
            None => store.last_escalation_id().map_err(|e| e.to_string())?,
        };
        match write_back(&mut client, store, &source, after) {
            Ok((report, mark)) => (Some(report), Some(mark)),
            Err(e) => {
                problem = Some(format!("writing back to Tryton: {e}"));
                (None, Some(after))
            }
        }
    } else {
        (None, prev.written)
    };
    // A full sync sets the cursor to Tryton's clock as it is, so a cursor once
    // ahead of it (a clock put back, another database) does not hide changes.
    let mut changed = if full { None } else { prev.changed };
    if let Some(t) = pull.newest {
        if changed.as_ref().is_none_or(|c| &t > c) {
            changed = Some(t);
        }
    }
    let cursor = Cursor {
        changed,
        full: if full { Some(now) } else { prev.full },
        written,
    };
    let what = match since {
        None => format!("{pulled} open lines"),
        Some(t) => format!(
            "changes since {}: {pulled} open lines, {reconciled} reconciled",
            t.format("%Y-%m-%d %H:%M:%S")
        ),
    };
    Ok(SyncStats {
        pulled: pulled + reconciled,
        failed: 0,
        cursor: serde_json::to_string(&cursor).ok(),
        details: vec![format!(
            "{source}: {what} ({skipped} payments on account not applied); items new {} updated {} cleared {}; customers new {} updated {}",
            stats.items_new, stats.items_updated, stats.items_cleared, stats.customers_new, stats.customers_updated
        )]
        .into_iter()
        .chain((excluded > 0).then(|| {
            format!(
                "{source}: {excluded} customers have no dunning procedure in Tryton and are not dunned"
            )
        }))
        .chain(noted)
        .chain(problem.clone())
        .collect(),
        problem,
    })
}

/// The marker a note written back carries, so a step is never noted twice (a sync
/// can fail after writing, before its cursor is stored).
fn step_marker(id: i64) -> String {
    format!("[arrears step #{id}]")
}

/// Tells Tryton what Arrears did: one note on the party per escalation step
/// delivered since `after` (level, its name, the channel, the day it went out,
/// the invoices). Returns a one-line report and where the next write-back starts.
fn write_back(
    client: &mut Client,
    store: &Store,
    source: &str,
    after: i64,
) -> Result<(String, i64), String> {
    const PAGE: usize = 1_000;
    let mut scanned = after;
    let mut first_pending = None;
    let (mut written, mut unknown_party) = (0usize, 0usize);
    loop {
        let (steps, pending) = store
            .delivered_steps(source, scanned, PAGE)
            .map_err(|e| e.to_string())?;
        if scanned == after {
            first_pending = pending;
        }
        let Some(last) = steps.last().map(|s| s.id) else {
            break;
        };
        let (w, u) = note_steps(client, &steps)?;
        written += w;
        unknown_party += u;
        scanned = last;
        if steps.len() < PAGE {
            break;
        }
    }
    // Below the first step still on its way: it may be delivered after later ones.
    let mark = first_pending
        .map_or(scanned, |p| scanned.min(p - 1))
        .max(after);
    let mut report = format!("{source}: {written} steps written back as notes");
    if unknown_party > 0 {
        report.push_str(&format!(
            "; {unknown_party} not written: their party is not found in Tryton"
        ));
    }
    Ok((report, mark))
}

/// Writes the notes of some steps, none twice: (written, steps whose party was
/// not found).
fn note_steps(client: &mut Client, steps: &[DeliveredStep]) -> Result<(usize, usize), String> {
    let mut codes: Vec<&str> = steps.iter().map(|s| s.customer.as_str()).collect();
    codes.sort_unstable();
    codes.dedup();
    // Archived parties too: a note on an archived party is still where its
    // history is looked up.
    let mut ctx = client.ctx();
    ctx["active_test"] = json!(false);
    let found = client
        .call(
            "model.party.party.search_read",
            json!([[["code", "in", codes]], 0, null, null, ["code"], ctx]),
        )
        .map_err(|e| e.to_string())?;
    let found = found.as_array().cloned().unwrap_or_default();
    let party_of = |code: &str| {
        found
            .iter()
            .find(|p| p["code"].as_str() == Some(code))
            .and_then(|p| p["id"].as_i64())
            // A party without a code is `P<id>` here (see `open_items`).
            .or_else(|| code.strip_prefix('P').and_then(|n| n.parse().ok()))
    };
    let resources: Vec<String> = codes
        .iter()
        .filter_map(|c| party_of(c))
        .map(|id| format!("party.party,{id}"))
        .collect();
    let noted = client
        .search_all(
            "ir.note",
            &[
                json!(["resource", "in", resources]),
                json!(["message", "like", "%[arrears step #%"]),
            ],
            &["message"],
        )
        .map_err(|e| e.to_string())?;
    let noted: String = noted.iter().filter_map(|n| n["message"].as_str()).collect();
    let mut unknown = 0;
    let mut notes = Vec::new();
    for s in steps {
        // A step naming none of this source's invoices is not the ERP's business.
        if s.documents.is_empty() || noted.contains(&step_marker(s.id)) {
            continue;
        }
        let Some(party) = party_of(&s.customer) else {
            unknown += 1;
            continue;
        };
        notes.push(json!({
            "resource": format!("party.party,{party}"),
            "message": format!(
                "Arrears: dunning level {} ({}) sent by {} on {}: {} {}",
                s.level, s.level_name, s.channel, s.sent_on,
                s.documents.join(", "), step_marker(s.id)
            ),
        }));
    }
    if !notes.is_empty() {
        let ctx = client.ctx();
        client
            .call("model.ir.note.create", json!([notes, ctx]))
            .map_err(|e| e.to_string())?;
    }
    Ok((notes.len(), unknown))
}

/// What one sync read from Tryton.
#[derive(Default)]
struct Pull {
    /// Open lines: all of them (full), or those changed and every open line of an
    /// invoice with a changed line (changes).
    open: Vec<Value>,
    /// Debit lines reconciled since the cursor (changes only).
    reconciled: Vec<Value>,
    /// Lines whose dunning Tryton has blocked.
    blocked: std::collections::HashSet<String>,
    /// Parties whose own data changed (changes only).
    parties: Vec<i64>,
    newest: Option<String>,
    dunning_module: bool,
}

/// The hold a blocked Tryton dunning puts on its item.
const BLOCKED: &str = "dunning blocked in Tryton";

/// Reads from Tryton what one sync needs. `held`: the items on hold here for a
/// blocked Tryton dunning, so a block Tryton no longer has (a dunning deleted
/// leaves no timestamp) is lifted by an incremental sync too.
fn pull(
    client: &mut Client,
    since: Option<NaiveDateTime>,
    held: &[String],
) -> Result<Pull, TrytonError> {
    const LINES: &str = "account.move.line";
    let mut p = Pull {
        dunning_module: client.has_field("party.party", "dunning_procedure")?,
        ..Pull::default()
    };
    if p.dunning_module {
        let blocked = client.search_all(
            "account.dunning",
            &[
                json!(["blocked", "=", true]),
                json!(["line.reconciliation", "=", null]),
            ],
            &["line"],
        )?;
        p.blocked = blocked
            .iter()
            .filter_map(|r| r["line"].as_i64())
            .map(|l| l.to_string())
            .collect();
    }
    let mut open_domain = receivable_domain();
    open_domain.push(json!(["reconciliation", "=", null]));
    let Some(t) = since else {
        p.open = client.search_all(LINES, &open_domain, FIELDS)?;
        // The cursor: where Tryton's clock stood, not the newest open line (which
        // may be old while payments were reconciled since).
        p.newest = client.newest_line_stamp()?;
        return Ok(p);
    };
    let mut d = receivable_domain();
    d.push(lines_since_clause(t));
    let mut changed = client.search_all(LINES, &d, FIELDS)?;
    note_stamps(&changed, &mut p.newest);
    // Lines to read again although they were not written: blocking or unblocking
    // a dunning writes the dunning, not the line; a deleted one writes nothing.
    let mut more: Vec<i64> = held
        .iter()
        .filter(|h| !p.blocked.contains(*h))
        .filter_map(|h| h.parse().ok())
        .collect();
    if p.dunning_module {
        let dunnings = client.search_all(
            "account.dunning",
            &[since_clause(t)],
            &["line", "write_date", "create_date"],
        )?;
        note_stamps(&dunnings, &mut p.newest);
        more.extend(dunnings.iter().filter_map(|r| r["line"].as_i64()));
    }
    let have: std::collections::HashSet<i64> =
        changed.iter().filter_map(|r| r["id"].as_i64()).collect();
    more.retain(|id| !have.contains(id));
    more.sort_unstable();
    more.dedup();
    for chunk in more.chunks(client.cfg.page_size.max(1)) {
        let mut d = receivable_domain();
        d.push(json!(["id", "in", chunk]));
        changed.extend(client.search_all(LINES, &d, FIELDS)?);
    }
    // Every open line of an invoice with a changed line: a partial payment
    // lowers the invoice's items, earliest due first, so all are recomputed.
    let mut refs: Vec<&str> = changed
        .iter()
        .filter_map(|r| r["move_origin"].as_str())
        .filter(|o| o.starts_with("account.invoice,"))
        .collect();
    refs.sort_unstable();
    refs.dedup();
    let mut siblings = Vec::new();
    for chunk in refs.chunks(client.cfg.page_size.max(1)) {
        let mut d = open_domain.clone();
        d.push(json!(["move_origin", "in", chunk]));
        siblings.extend(client.search_all(LINES, &d, FIELDS)?);
    }
    let mut seen: std::collections::HashSet<i64> = Default::default();
    for r in changed.into_iter().chain(siblings) {
        if !seen.insert(r["id"].as_i64().unwrap_or_default()) {
            continue;
        }
        if r["reconciliation"].is_null() {
            p.open.push(r);
        } else if decimal(&r["debit"]) > decimal(&r["credit"]) {
            p.reconciled.push(r);
        }
    }
    // Parties whose own record, addresses or contact mechanisms changed.
    for model in ["party.party", "party.address", "party.contact_mechanism"] {
        let party = if model == "party.party" {
            "id"
        } else {
            "party"
        };
        let rows = client.search_all(
            model,
            &[since_clause(t)],
            &[party, "write_date", "create_date"],
        )?;
        note_stamps(&rows, &mut p.newest);
        p.parties
            .extend(rows.iter().filter_map(|r| r[party].as_i64()));
    }
    Ok(p)
}

/// Customers as Tryton keeps them, by party id: name, the dunning procedure (when
/// the dunning module is active), the invoice address (else the first), e-mail
/// and phone (invoice ones first, else the first; a mobile before a landline, for
/// text messages) and language. Tryton is the record of where its customers are
/// reached: an address, e-mail or phone it does not have is cleared here too, so
/// nothing goes to what its users removed. A language it does not have is left as
/// Arrears knows it.
fn read_parties(
    client: &mut Client,
    mut ids: Vec<i64>,
    company: &str,
    dunning_module: bool,
) -> Result<std::collections::HashMap<i64, CustomerInfo>, TrytonError> {
    ids.sort_unstable();
    ids.dedup();
    let mut out = std::collections::HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let invoice_flag = client.has_field("party.address", "invoice")?;
    let mut party_fields = vec!["id", "code", "rec_name", "lang.code"];
    if dunning_module {
        party_fields.push("dunning_procedure.rec_name");
    }
    let mut addr_fields = vec![
        "party",
        "street",
        "postal_code",
        "city",
        "country.code",
        "sequence",
    ];
    let mut mech_fields = vec!["party", "type", "value", "sequence"];
    if invoice_flag {
        addr_fields.push("invoice");
        mech_fields.push("invoice");
    }
    let page = client.cfg.page_size.max(1);
    for chunk in ids.chunks(page) {
        let ctx = client.ctx();
        let parties = client.call("model.party.party.read", json!([chunk, party_fields, ctx]))?;
        let d = [json!(["party", "in", chunk])];
        let addresses = client.search_all("party.address", &d, &addr_fields)?;
        let mechanisms = client.search_all(
            "party.contact_mechanism",
            &[
                d[0].clone(),
                json!(["type", "in", ["email", "phone", "mobile"]]),
            ],
            &mech_fields,
        )?;
        for r in parties.as_array().into_iter().flatten() {
            let Some(id) = r["id"].as_i64() else { continue };
            let text = |v: &Value| {
                v.as_str()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
            };
            let code = text(&r["code"]).unwrap_or_else(|| format!("P{id}"));
            let mut c = CustomerInfo {
                company: company.to_string(),
                name: text(&r["rec_name"]).unwrap_or_else(|| code.clone()),
                code,
                language: text(field(r, "lang.code")),
                ..CustomerInfo::default()
            };
            if dunning_module {
                c.dunning = Some(match text(field(r, "dunning_procedure.rec_name")) {
                    Some(p) => ErpDunning::Procedure(p),
                    None => ErpDunning::Excluded,
                });
            }
            // Invoice address first, then Tryton's order (sequence, id).
            let mine = |rows: &[Value]| -> Vec<Value> {
                let mut v: Vec<Value> = rows
                    .iter()
                    .filter(|a| a["party"].as_i64() == Some(id))
                    .cloned()
                    .collect();
                v.sort_by_key(|a| {
                    (
                        !a["invoice"]
                            .as_bool()
                            .unwrap_or(a["invoice"].as_i64() == Some(1)),
                        // Tryton orders an empty sequence first.
                        a["sequence"].as_i64().unwrap_or(i64::MIN),
                        a["id"].as_i64().unwrap_or_default(),
                    )
                });
                v
            };
            // An address counts when it has a street or a city: Tryton gives every
            // new party an empty one.
            c.street = Some(String::new());
            c.postal_code = Some(String::new());
            c.city = Some(String::new());
            if let Some(a) = mine(&addresses)
                .into_iter()
                .find(|a| text(&a["street"]).is_some() || text(&a["city"]).is_some())
            {
                // All three parts together, so a partial address in Tryton never
                // mixes with an older one here.
                c.street = Some(text(&a["street"]).unwrap_or_default());
                c.postal_code = Some(text(&a["postal_code"]).unwrap_or_default());
                c.city = Some(text(&a["city"]).unwrap_or_default());
                c.country = text(field(&a, "country.code")).unwrap_or_default();
            }
            let mechs = mine(&mechanisms);
            let first = |kinds: &[&str]| {
                kinds.iter().find_map(|k| {
                    mechs
                        .iter()
                        .filter(|m| m["type"].as_str() == Some(k))
                        .find_map(|m| text(&m["value"]))
                })
            };
            c.email = Some(first(&["email"]).unwrap_or_default());
            c.phone = Some(first(&["mobile", "phone"]).unwrap_or_default());
            out.insert(id, c);
        }
    }
    Ok(out)
}

/// The invoice id of a line's origin (`"account.invoice,12"`).
fn invoice_of(r: &Value) -> Option<i64> {
    r["move_origin"]
        .as_str()?
        .strip_prefix("account.invoice,")?
        .parse()
        .ok()
}

/// Invoice numbers by invoice id, for every invoice the lines come from.
fn invoice_numbers<'a>(
    client: &mut Client,
    rows: impl Iterator<Item = &'a Value>,
    page: usize,
) -> Result<std::collections::HashMap<i64, String>, String> {
    let mut ids: Vec<i64> = rows.filter_map(invoice_of).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut out = std::collections::HashMap::new();
    for chunk in ids.chunks(page.max(1)) {
        let ctx = client.context.clone();
        let r = client
            .call(
                "model.account.invoice.read",
                json!([chunk, ["number"], ctx]),
            )
            .map_err(|e| e.to_string())?;
        for inv in r.as_array().into_iter().flatten() {
            if let (Some(id), Some(n)) = (inv["id"].as_i64(), inv["number"].as_str()) {
                out.insert(id, n.to_string());
            }
        }
    }
    Ok(out)
}

/// Maps the open receivable lines to customers and open items: each debit line
/// is an item (an invoice's instalment); an unreconciled credit line whose origin
/// is an invoice is a partial payment and lowers that invoice's items, earliest
/// due first. Credit lines without an invoice (payments on account) are not
/// items; they are counted in the third value.
fn open_items(
    rows: &[Value],
    numbers: &std::collections::HashMap<i64, String>,
    source: &str,
    company: &str,
) -> Result<(Vec<CustomerInfo>, Vec<ItemInput>, u64), TrytonError> {
    let mut customers: Vec<CustomerInfo> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut items: Vec<(Option<i64>, ItemInput)> = Vec::new();
    let mut paid: std::collections::HashMap<i64, Decimal> = Default::default();
    let mut on_account = 0u64;
    for r in rows {
        let line = r["id"].as_i64().unwrap_or_default();
        let bad = |message: String| TrytonError::Data { line, message };
        let debit = decimal(&r["debit"])
            .ok_or_else(|| bad(format!("debit {} is not a decimal", r["debit"])))?;
        let credit = decimal(&r["credit"])
            .ok_or_else(|| bad(format!("credit {} is not a decimal", r["credit"])))?;
        let open = debit - credit;
        let invoice = invoice_of(r);
        if open <= Decimal::ZERO {
            match invoice {
                Some(inv) => *paid.entry(inv).or_default() -= open,
                None => on_account += 1,
            }
            continue;
        }
        let currency = field(r, "company.currency.code")
            .as_str()
            .ok_or_else(|| bad("company currency missing".into()))?;
        let currency = Currency::parse(currency).map_err(|e| bad(e.to_string()))?;
        let party = r["party"].as_i64().ok_or_else(|| bad("no party".into()))?;
        let code = field(r, "party.code")
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| format!("P{party}"));
        if seen.insert(code.clone()) {
            customers.push(CustomerInfo {
                company: company.to_string(),
                code: code.clone(),
                name: field(r, "party.rec_name")
                    .as_str()
                    .unwrap_or(&code)
                    .to_string(),
                country: String::new(),
                email: None,
                phone: None,
                language: None,
                timezone: None,
                credit_limit: None,
                street: None,
                postal_code: None,
                city: None,
                dunning: None,
            });
        }
        let doc_date =
            date(field(r, "move.date")).ok_or_else(|| bad("move.date missing".into()))?;
        let due = date(&r["maturity_date"]).unwrap_or(doc_date);
        // The invoice number when the line comes from an invoice, else the move's.
        let document_no = invoice
            .and_then(|i| numbers.get(&i).cloned())
            .or_else(|| field(r, "move.number").as_str().map(str::to_string))
            .unwrap_or_default();
        items.push((
            invoice,
            ItemInput {
                source: source.to_string(),
                external_id: line.to_string(),
                company: company.to_string(),
                customer: code,
                document_no,
                document_date: doc_date,
                due_date: due.max(doc_date),
                original_amount: open,
                open_amount: open,
                currency,
                hold: None,
                original_document: None,
            },
        ));
    }
    // Partial payments, earliest instalment first.
    items.sort_by(|a, b| (a.1.due_date, &a.1.external_id).cmp(&(b.1.due_date, &b.1.external_id)));
    for (invoice, it) in items.iter_mut() {
        if let Some(left) = invoice.and_then(|i| paid.get_mut(&i)) {
            let take = (*left).min(it.open_amount);
            it.open_amount -= take;
            *left -= take;
        }
    }
    Ok((
        customers,
        items.into_iter().map(|(_, i)| i).collect(),
        on_account,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_password_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "pass word\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let cfg: TrytonConfig = serde_json::from_value(json!({
            "url": "http://127.0.0.1:9", "database": "d", "user": "u", "password_file": f,
        }))
        .unwrap();
        let c = Client::new(&cfg);
        let e = c.password().unwrap_err().to_string();
        assert!(
            e.contains("password_file: ") && e.contains("mode 640"),
            "{e}"
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(c.password().unwrap(), "pass word");
    }

    #[test]
    fn typed_values_decode() {
        assert_eq!(
            decimal(&json!({"__class__": "Decimal", "decimal": "12.30"})),
            Some(Decimal::new(1230, 2))
        );
        assert_eq!(
            date(&json!({"__class__": "date", "year": 2026, "month": 11, "day": 22})),
            NaiveDate::from_ymd_opt(2026, 11, 22)
        );
        assert_eq!(
            datetime(
                &json!({"__class__": "datetime", "year": 2026, "month": 1, "day": 2, "hour": 3, "minute": 4, "second": 5, "microsecond": 6})
            ),
            Some("2026-01-02T03:04:05.000006".into())
        );
        assert_eq!(decimal(&json!({"__class__": "date"})), None);
    }

    fn line(id: i64, debit: &str, credit: &str, due_day: u32, origin: Value) -> Value {
        json!({
            "id": id, "party": 3,
            "party.": {"id": 3, "rec_name": "Alpha GmbH", "code": "C3"},
            "debit": {"__class__": "Decimal", "decimal": debit},
            "credit": {"__class__": "Decimal", "decimal": credit},
            "maturity_date": {"__class__": "date", "year": 2026, "month": 10, "day": due_day},
            "move.": {"id": 9, "number": "MOVE/2026/0009",
                      "date": {"__class__": "date", "year": 2026, "month": 9, "day": 1}},
            "move_origin": origin,
            "company.": {"id": 1, "currency.": {"id": 1, "code": "EUR"}},
        })
    }

    #[test]
    fn lines_map_to_items_and_partial_payments_lower_the_earliest_instalment() {
        let numbers: std::collections::HashMap<i64, String> =
            [(4, "INV/2026/0004".to_string())].into();
        let rows = vec![
            // An invoice in two instalments, 100 paid on it, not yet reconciled.
            line(7, "150.00", "0", 15, json!("account.invoice,4")),
            line(8, "150.00", "0", 1, json!("account.invoice,4")),
            line(9, "0", "100.00", 1, json!("account.invoice,4")),
            // A manual move, and a payment on account.
            line(10, "30.00", "0", 20, Value::Null),
            line(11, "0", "5.00", 20, Value::Null),
        ];
        let (customers, items, on_account) =
            open_items(&rows, &numbers, "tryton:erp", "ACME").unwrap();
        assert_eq!(customers.len(), 1);
        assert_eq!(
            (customers[0].code.as_str(), customers[0].name.as_str()),
            ("C3", "Alpha GmbH")
        );
        let got: Vec<(&str, &str, Decimal)> = items
            .iter()
            .map(|i| {
                (
                    i.external_id.as_str(),
                    i.document_no.as_str(),
                    i.open_amount,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("8", "INV/2026/0004", Decimal::new(5000, 2)),
                ("7", "INV/2026/0004", Decimal::new(15000, 2)),
                ("10", "MOVE/2026/0009", Decimal::new(3000, 2)),
            ]
        );
        assert_eq!(on_account, 1);
        assert_eq!(items[0].currency.to_string(), "EUR");

        let mut bad = line(12, "12,5", "0", 1, Value::Null);
        assert!(matches!(
            open_items(&[bad.clone()], &numbers, "s", "c"),
            Err(TrytonError::Data { line: 12, .. })
        ));
        bad["debit"] = json!({"__class__": "Decimal", "decimal": "12.50"});
        bad["company."] = json!({"id": 1, "currency.": {"id": 1, "code": "XXY"}});
        assert!(
            open_items(&[bad], &numbers, "s", "c").is_err(),
            "unknown currency"
        );
    }
}
