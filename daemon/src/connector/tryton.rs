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
use crate::domain::{Batch, CustomerInfo, ItemInput};
use crate::money::Currency;
use crate::store::Store;

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
    #[serde(
        default = "default_timeout",
        with = "crate::config::humantime_serde_compat"
    )]
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
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(cfg.timeout))
            .http_status_as_error(false)
            .build()
            .into();
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
            return std::fs::read_to_string(p)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| TrytonError::Config(format!("password_file {}: {e}", p.display())));
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
    "move_origin.rec_name",
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
    let mut batch = Batch::default();
    let mut seen_parties = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    let mut skipped = 0u64;
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
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let id = r["id"].as_i64().unwrap_or_default();
            last_id = last_id.max(id);
            match item(r, &source, &company) {
                Ok((customer, it)) => {
                    if seen_parties.insert(customer.code.clone()) {
                        batch.customers.push(customer);
                    }
                    batch.items.push(it);
                }
                Err(TrytonError::Data { line, message }) if message.starts_with("skip:") => {
                    tracing::debug!(line, "{message}");
                    skipped += 1;
                }
                Err(e) => return Err(e.to_string()),
            }
            for k in ["write_date", "create_date"] {
                if let Some(t) = datetime(&r[k]) {
                    if cursor.as_ref().is_none_or(|c| &t > c) {
                        cursor = Some(t);
                    }
                }
            }
        }
        if rows.len() < cfg.page_size {
            break;
        }
    }
    batch.snapshot_sources = vec![source.clone()];
    let pulled = batch.items.len() as u64;
    let stats = store
        .audited(&format!("connector:{connector}"), "tryton.sync", &source, |st| {
            let s = st.ingest(&batch)?;
            let after = json!({
                "open_lines": pulled, "items_new": s.items_new, "items_updated": s.items_updated,
                "items_cleared": s.items_cleared, "customers_new": s.customers_new,
            });
            Ok::<_, crate::store::StoreError>((s, json!(null), after))
        })
        .map_err(|e| e.to_string())?;
    Ok(SyncStats {
        pulled,
        failed: 0,
        cursor,
        details: vec![format!(
            "{source}: {pulled} open lines ({skipped} credit lines skipped); items new {} updated {} cleared {}; customers new {}",
            stats.items_new, stats.items_updated, stats.items_cleared, stats.customers_new
        )],
    })
}

/// Maps one receivable line to a customer and an open item.
fn item(r: &Value, source: &str, company: &str) -> Result<(CustomerInfo, ItemInput), TrytonError> {
    let line = r["id"].as_i64().unwrap_or_default();
    let bad = |message: String| TrytonError::Data { line, message };
    let debit = decimal(&r["debit"])
        .ok_or_else(|| bad(format!("debit {} is not a decimal", r["debit"])))?;
    let credit = decimal(&r["credit"])
        .ok_or_else(|| bad(format!("credit {} is not a decimal", r["credit"])))?;
    let open = debit - credit;
    if open <= Decimal::ZERO {
        // Payments on account and credit notes: not a claim to collect.
        return Err(bad(format!("skip: credit line {open}")));
    }
    let currency = r["company.currency.code"]
        .as_str()
        .ok_or_else(|| bad("company currency missing".into()))?;
    let currency = Currency::parse(currency).map_err(|e| bad(e.to_string()))?;
    let party = r["party"].as_i64().ok_or_else(|| bad("no party".into()))?;
    let code = r["party.code"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("P{party}"));
    let name = r["party.rec_name"].as_str().unwrap_or(&code).to_string();
    let doc_date = date(&r["move.date"]).ok_or_else(|| bad("move.date missing".into()))?;
    let due = date(&r["maturity_date"]).unwrap_or(doc_date);
    // The invoice number when the line comes from an invoice, else the move number.
    let document_no = r["move_origin.rec_name"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or_else(|| r["move.number"].as_str())
        .unwrap_or_default()
        .to_string();
    let customer = CustomerInfo {
        company: company.to_string(),
        code: code.clone(),
        name,
        country: String::new(),
        email: None,
        phone: None,
        language: None,
        timezone: None,
        credit_limit: None,
    };
    let item = ItemInput {
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
    };
    Ok((customer, item))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_line_maps_to_a_customer_and_an_item() {
        let r = json!({
            "id": 7, "party": 3, "party.rec_name": "Alpha GmbH", "party.code": "C3",
            "debit": {"__class__": "Decimal", "decimal": "250.00"},
            "credit": {"__class__": "Decimal", "decimal": "0"},
            "maturity_date": {"__class__": "date", "year": 2026, "month": 10, "day": 1},
            "move.date": {"__class__": "date", "year": 2026, "month": 9, "day": 1},
            "move.number": "M12", "move_origin.rec_name": "INV-4",
            "company.currency.code": "EUR"
        });
        let (c, i) = item(&r, "tryton:erp", "ACME").unwrap();
        assert_eq!((c.code.as_str(), c.name.as_str()), ("C3", "Alpha GmbH"));
        assert_eq!(i.external_id, "7");
        assert_eq!(i.document_no, "INV-4");
        assert_eq!(i.open_amount, Decimal::new(25000, 2));
        assert_eq!(i.due_date, NaiveDate::from_ymd_opt(2026, 10, 1).unwrap());
        let mut credit = r.clone();
        credit["credit"] = json!({"__class__": "Decimal", "decimal": "300.00"});
        assert!(
            matches!(item(&credit, "s", "c"), Err(TrytonError::Data { message, .. }) if message.starts_with("skip:"))
        );
        let mut bad = r.clone();
        bad["debit"] = json!("12,5");
        assert!(matches!(
            item(&bad, "s", "c"),
            Err(TrytonError::Data { line: 7, .. })
        ));
    }
}
