//! Tryton ERP over its JSON-RPC API: customers and open receivable lines.
//!
//! Each sync reads every posted, unreconciled receivable line with a party (paged
//! by id) and stores them as open items of the source `tryton:<connector>` in one
//! batch marked as a snapshot: a line that is no longer open in Tryton (paid and
//! reconciled) is cleared here, and its case closes on the next run. The newest
//! `write_date` seen is kept as the cursor, for health and lag.
//!
//! Why a snapshot rather than only lines changed since the cursor: reconciling a
//! payment in Tryton does not have to rewrite the invoice's receivable line, so a
//! pull by `write_date` alone can miss that an item was paid. An open-line
//! snapshot cannot.
//!
//! The password comes from an environment variable or a file and is never logged.

use std::path::PathBuf;
use std::time::Duration;

use backon::{BlockingRetryable, ExponentialBuilder};
use base64::Engine as _;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};

use super::SyncStats;
use arrears_core::domain::{Batch, CustomerInfo, ItemInput};
use arrears_core::money::Currency;
use arrears_store::Store;

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
    "write_date",
    "create_date",
    "company.currency.code",
];

/// One sync: every open receivable line, as a snapshot of the source.
pub fn sync(store: &mut Store, connector: &str, cfg: &TrytonConfig) -> Result<SyncStats, String> {
    let source = format!("tryton:{connector}");
    let company = cfg.company.clone().unwrap_or_else(|| cfg.database.clone());
    let mut client = Client::new(cfg);
    client.login().map_err(|e| e.to_string())?;
    let domain = json!([
        ["account.type.receivable", "=", true],
        ["reconciliation", "=", null],
        ["move.state", "=", "posted"],
        ["party", "!=", null],
    ]);
    let mut rows_all: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut last_id = 0i64;
    loop {
        // Paged by id rather than offset, so lines posted during the sync cannot
        // shift pages and make one be read twice or not at all.
        let mut d = domain.as_array().cloned().unwrap_or_default();
        d.push(json!(["id", ">", last_id]));
        let ctx = client.context.clone();
        let rows = client
            .call(
                "model.account.move.line.search_read",
                json!([d, 0, cfg.page_size, [["id", "ASC"]], FIELDS, ctx]),
            )
            .map_err(|e| e.to_string())?;
        let rows = rows.as_array().cloned().unwrap_or_default();
        let n = rows.len();
        for r in rows {
            last_id = last_id.max(r["id"].as_i64().unwrap_or_default());
            for k in ["write_date", "create_date"] {
                if let Some(t) = datetime(&r[k]) {
                    if cursor.as_ref().is_none_or(|c| &t > c) {
                        cursor = Some(t);
                    }
                }
            }
            rows_all.push(r);
        }
        if n < cfg.page_size {
            break;
        }
    }
    let numbers = invoice_numbers(&mut client, &rows_all, cfg.page_size)?;
    let (customers, items, skipped) =
        open_items(&rows_all, &numbers, &source, &company).map_err(|e| e.to_string())?;
    let mut batch = Batch {
        customers,
        items,
        ..Batch::default()
    };
    batch.snapshot_sources = vec![source.clone()];
    let pulled = batch.items.len() as u64;
    let stats = store
        .audited(&format!("connector:{connector}"), "tryton.sync", &source, |st| {
            let s = st.ingest(&batch)?;
            let after = json!({
                "open_lines": pulled, "items_new": s.items_new, "items_updated": s.items_updated,
                "items_cleared": s.items_cleared, "customers_new": s.customers_new,
            });
            Ok::<_, arrears_store::StoreError>((s, json!(null), after))
        })
        .map_err(|e| e.to_string())?;
    Ok(SyncStats {
        pulled,
        failed: 0,
        cursor,
        details: vec![format!(
            "{source}: {pulled} open lines ({skipped} payments on account not applied); items new {} updated {} cleared {}; customers new {}",
            stats.items_new, stats.items_updated, stats.items_cleared, stats.customers_new
        )],
    })
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
fn invoice_numbers(
    client: &mut Client,
    rows: &[Value],
    page: usize,
) -> Result<std::collections::HashMap<i64, String>, String> {
    let mut ids: Vec<i64> = rows.iter().filter_map(invoice_of).collect();
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
