//! External connector plugins: any program serving `arrears.connector.v1.Connector`
//! (proto/arrears/connector/v1/connector.proto) on a Unix socket.
//!
//! The host starts the program as a child process with `ARREARS_PLUGIN_SOCKET`
//! naming a socket in a private temporary folder, waits for it to listen,
//! performs the versioned handshake, and then pulls on the connector's schedule.
//! A plugin that exits, hangs past `call_timeout` or fails its health check is
//! killed and started again on the next attempt, after a backoff that doubles up
//! to a minute. Whatever a plugin sends is validated before anything is stored:
//! one bad record fails the pull (naming the record), and the pull's batches are
//! stored in one transaction, so the cursor never moves past what was stored.

use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use rust_decimal::Decimal;
use serde::Deserialize;
use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint, Uri};

use super::SyncStats;
use arrears_core::domain::{Batch, CustomerInfo, ItemInput, PaymentInput};
use arrears_core::money::Currency;
use arrears_store::Store;

pub use arrears_proto::connector_v1 as pb;

pub const PROTOCOL_VERSION: &str = "1";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The program and its arguments, e.g. `[".venv/bin/python", "plugin.py"]`.
    pub command: Vec<String>,
    /// Handed to the plugin in the handshake, as JSON.
    #[serde(default)]
    pub settings: serde_json::Value,
    /// How long the plugin may take to start listening and answer the handshake.
    #[serde(default = "default_start", with = "arrears_core::human_duration")]
    pub start_timeout: Duration,
    /// How long one pull (all its batches) may take.
    #[serde(default = "default_call", with = "arrears_core::human_duration")]
    pub call_timeout: Duration,
}

fn default_start() -> Duration {
    Duration::from_secs(30)
}

fn default_call() -> Duration {
    Duration::from_secs(120)
}

/// A running (or to be started) plugin process.
pub struct Host {
    name: String,
    cfg: PluginConfig,
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    channel: Option<Channel>,
    /// Consecutive failures, for the restart backoff.
    failures: u32,
    not_before: Option<Instant>,
    /// Whether a start was attempted before, so the next one is a restart.
    started: bool,
    pub restarts: u64,
    pub plugin: String,
}

impl Host {
    pub fn new(name: &str, cfg: &PluginConfig) -> Host {
        Host {
            name: name.to_string(),
            cfg: cfg.clone(),
            dir: None,
            child: None,
            channel: None,
            failures: 0,
            not_before: None,
            started: false,
            restarts: 0,
            plugin: String::new(),
        }
    }

    fn client(&self) -> Option<pb::connector_client::ConnectorClient<Channel>> {
        self.channel
            .clone()
            .map(pb::connector_client::ConnectorClient::new)
    }

    /// Kills the process (if any) and forgets the connection; the next call
    /// starts it again after the backoff.
    pub async fn stop(&mut self) {
        self.channel = None;
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), c.wait()).await;
        }
        self.dir = None;
    }

    async fn fail(&mut self, why: String) -> String {
        self.stop().await;
        self.failures += 1;
        let wait = Duration::from_secs(1 << self.failures.min(6)).min(Duration::from_secs(60));
        self.not_before = Some(Instant::now() + wait);
        tracing::warn!(connector = %self.name, error = %why, retry_in = ?wait, "plugin failed; stopped");
        why
    }

    /// Starts the plugin if it is not running, and handshakes.
    pub async fn ensure(&mut self) -> Result<(), String> {
        if let Some(c) = self.child.as_mut() {
            match c.try_wait() {
                Ok(None) if self.channel.is_some() => return Ok(()),
                Ok(Some(status)) => {
                    let why = format!("plugin {} exited ({status})", self.name);
                    return Err(self.fail(why).await);
                }
                _ => {}
            }
        }
        if let Some(t) = self.not_before {
            if Instant::now() < t {
                return Err(format!(
                    "plugin {} is backing off after {} failure(s)",
                    self.name, self.failures
                ));
            }
        }
        if self.started {
            self.restarts += 1;
            metrics::counter!("arrears_connector_restarts_total", "connector" => self.name.clone())
                .increment(1);
        }
        self.stop().await;
        self.started = true;
        match self.start().await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e).await),
        }
    }

    async fn start(&mut self) -> Result<(), String> {
        let (program, args) = self
            .cfg
            .command
            .split_first()
            .ok_or_else(|| format!("plugin {}: `command` is empty", self.name))?;
        let dir = tempfile::Builder::new()
            .prefix("arrears-plugin-")
            .tempdir()
            .map_err(|e| format!("plugin {}: socket folder: {e}", self.name))?;
        let sock = dir.path().join("plugin.sock");
        let mut child = Command::new(program)
            .args(args)
            .env("ARREARS_PLUGIN_SOCKET", &sock)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("plugin {}: cannot start {program}: {e}", self.name))?;
        forward_output(&self.name, &mut child);
        self.child = Some(child);
        self.dir = Some(dir);
        let deadline = Instant::now() + self.cfg.start_timeout;
        let channel = loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "plugin {} exited while starting ({status})",
                    self.name
                ));
            }
            if sock.exists() {
                if let Ok(ch) = connect(sock.clone()).await {
                    break ch;
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "plugin {} did not listen on its socket within {:?}",
                    self.name, self.cfg.start_timeout
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut client = pb::connector_client::ConnectorClient::new(channel.clone());
        let req = pb::HandshakeRequest {
            protocol_version: PROTOCOL_VERSION.into(),
            connector: self.name.clone(),
            settings_json: self.cfg.settings.to_string(),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let hs = tokio::time::timeout(left.max(Duration::from_secs(1)), client.handshake(req))
            .await
            .map_err(|_| format!("plugin {}: no handshake answer in time", self.name))?
            .map_err(|s| format!("plugin {}: handshake refused: {}", self.name, s.message()))?
            .into_inner();
        if hs.protocol_version != PROTOCOL_VERSION {
            return Err(format!(
                "plugin {} speaks protocol {}, this daemon {PROTOCOL_VERSION}",
                self.name, hs.protocol_version
            ));
        }
        self.plugin = format!("{} {}", hs.plugin_name, hs.plugin_version);
        tracing::info!(connector = %self.name, plugin = %self.plugin, "plugin started");
        self.channel = Some(channel);
        Ok(())
    }

    pub async fn health(&mut self) -> Result<String, String> {
        self.ensure().await?;
        let mut c = self.client().ok_or("not connected")?;
        match tokio::time::timeout(Duration::from_secs(10), c.health(pb::HealthRequest {})).await {
            Ok(Ok(r)) if r.get_ref().ok => Ok(r.into_inner().detail),
            Ok(Ok(r)) => Err(self
                .fail(format!(
                    "plugin {} unhealthy: {}",
                    self.name,
                    r.get_ref().detail
                ))
                .await),
            Ok(Err(s)) => Err(self
                .fail(format!("plugin {} health: {}", self.name, s.message()))
                .await),
            Err(_) => Err(self
                .fail(format!("plugin {} health check timed out", self.name))
                .await),
        }
    }

    /// One pull from `cursor`: every batch, or an error (and the plugin restarted).
    pub async fn pull(&mut self, cursor: &str) -> Result<Vec<pb::PullBatch>, String> {
        self.ensure().await?;
        let mut c = self.client().ok_or("not connected")?;
        let name = self.name.clone();
        let all = async move {
            let mut stream = c
                .pull(pb::PullRequest {
                    cursor: cursor.to_string(),
                })
                .await
                .map_err(|s| format!("plugin {name}: pull: {}", s.message()))?
                .into_inner();
            let mut out = Vec::new();
            while let Some(b) = stream
                .message()
                .await
                .map_err(|s| format!("plugin {name}: pull broke off: {}", s.message()))?
            {
                out.push(b);
            }
            Ok::<_, String>(out)
        };
        match tokio::time::timeout(self.cfg.call_timeout, all).await {
            Ok(Ok(b)) => {
                self.failures = 0;
                self.not_before = None;
                Ok(b)
            }
            Ok(Err(e)) => Err(self.fail(e).await),
            Err(_) => {
                let why = format!(
                    "plugin {}: pull took longer than {:?}",
                    self.name, self.cfg.call_timeout
                );
                Err(self.fail(why).await)
            }
        }
    }
}

async fn connect(sock: std::path::PathBuf) -> Result<Channel, tonic::transport::Error> {
    // The URI is required by the API but unused: the connector dials the socket.
    Endpoint::from_static("http://plugin.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let sock = sock.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(sock).await?))
            }
        }))
        .await
}

/// The plugin's stdout and stderr go to the log, a line at a time.
fn forward_output(name: &str, child: &mut Child) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    if let Some(out) = child.stdout.take() {
        let name = name.to_string();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                tracing::info!(connector = %name, "plugin: {l}");
            }
        });
    }
    if let Some(err) = child.stderr.take() {
        let name = name.to_string();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                tracing::warn!(connector = %name, "plugin: {l}");
            }
        });
    }
}

fn dec(what: &str, v: &str) -> Result<Decimal, String> {
    let d = arrears_core::money::parse_amount(v)
        .and_then(arrears_core::money::check_bound)
        .map_err(|e| format!("{what}: {e}"))?;
    if d < Decimal::ZERO {
        return Err(format!("{what}: `{v}` is negative"));
    }
    Ok(d)
}

fn day(what: &str, v: &str) -> Result<chrono::NaiveDate, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("{what}: `{v}` is not a date (YYYY-MM-DD)"))
}

/// Checks and converts what a plugin sent; the first bad record fails it all.
pub fn to_batch(source: &str, batches: &[pb::PullBatch]) -> Result<Batch, String> {
    let mut b = Batch::default();
    for (n, pb) in batches.iter().enumerate() {
        for c in &pb.customers {
            if c.company.is_empty() || c.code.is_empty() || c.name.is_empty() {
                return Err(format!(
                    "batch {n}: customer `{}/{}`: company, code and name are required",
                    c.company, c.code
                ));
            }
            let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
            b.customers.push(CustomerInfo {
                company: c.company.clone(),
                code: c.code.clone(),
                name: c.name.clone(),
                country: c.country.clone(),
                email: opt(&c.email),
                phone: opt(&c.phone),
                language: None,
                timezone: None,
                credit_limit: None,
                street: None,
                postal_code: None,
                city: None,
                dunning: None,
            });
        }
        for i in &pb.items {
            let w = format!("batch {n}: item `{}`", i.external_id);
            if i.external_id.is_empty() || i.company.is_empty() || i.customer.is_empty() {
                return Err(format!(
                    "{w}: external_id, company and customer are required"
                ));
            }
            let original = dec(&format!("{w}: original_amount"), &i.original_amount)?;
            let open = dec(&format!("{w}: open_amount"), &i.open_amount)?;
            if open > original {
                return Err(format!(
                    "{w}: open_amount {open} exceeds original_amount {original}"
                ));
            }
            let document_date = day(&format!("{w}: document_date"), &i.document_date)?;
            let due_date = day(&format!("{w}: due_date"), &i.due_date)?;
            if due_date < document_date {
                return Err(format!(
                    "{w}: due_date {due_date} is before document_date {document_date}"
                ));
            }
            let currency = Currency::parse(&i.currency).map_err(|e| format!("{w}: {e}"))?;
            for a in [original, open] {
                arrears_core::money::check_amount(a, currency).map_err(|e| format!("{w}: {e}"))?;
            }
            b.items.push(ItemInput {
                source: source.to_string(),
                external_id: i.external_id.clone(),
                company: i.company.clone(),
                customer: i.customer.clone(),
                document_no: i.document_no.clone(),
                document_date,
                due_date,
                original_amount: original,
                open_amount: open,
                currency,
                hold: None,
                original_document: None,
            });
        }
        for p in &pb.payments {
            let w = format!("batch {n}: payment `{}`", p.external_id);
            if p.external_id.is_empty() || p.company.is_empty() || p.customer.is_empty() {
                return Err(format!(
                    "{w}: external_id, company and customer are required"
                ));
            }
            let amount = dec(&format!("{w}: amount"), &p.amount)?;
            let currency = Currency::parse(&p.currency).map_err(|e| format!("{w}: {e}"))?;
            arrears_core::money::check_amount(amount, currency).map_err(|e| format!("{w}: {e}"))?;
            b.payments.push(PaymentInput {
                source: source.to_string(),
                external_id: p.external_id.clone(),
                company: p.company.clone(),
                customer: p.customer.clone(),
                amount,
                currency,
                value_date: day(&format!("{w}: value_date"), &p.value_date)?,
                reference: p.reference.clone(),
                item_ref: (!p.item_ref.is_empty()).then(|| p.item_ref.clone()),
            });
        }
    }
    Ok(b)
}

/// Stores a pull's batches in one audited transaction.
pub fn store_pull(
    store: &mut Store,
    connector: &str,
    batches: &[pb::PullBatch],
) -> Result<SyncStats, String> {
    let source = format!("plugin:{connector}");
    let batch = to_batch(&source, batches)?;
    let cursor = batches
        .last()
        .map(|b| b.next_cursor.clone())
        .filter(|c| !c.is_empty());
    let s = store
        .audited(
            &format!("connector:{connector}"),
            "plugin.pull",
            &source,
            |st| {
                let s = st.ingest(&batch)?;
                let after = serde_json::json!({
                    "items_new": s.items_new, "items_updated": s.items_updated,
                    "items_cleared": s.items_cleared, "payments_new": s.payments_new,
                });
                Ok::<_, arrears_store::StoreError>((s, serde_json::Value::Null, after))
            },
        )
        .map_err(|e| e.to_string())?;
    Ok(SyncStats {
        pulled: (batch.items.len() + batch.payments.len()) as u64,
        failed: 0,
        details: vec![format!(
            "{source}: {} batch(es); items new {} updated {} cleared {}; payments new {}",
            batches.len(),
            s.items_new,
            s.items_updated,
            s.items_cleared,
            s.payments_new
        )],
        cursor,
        problem: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, open: &str) -> pb::Item {
        pb::Item {
            external_id: id.into(),
            company: "ACME".into(),
            customer: "C1".into(),
            document_no: format!("D-{id}"),
            document_date: "2026-09-01".into(),
            due_date: "2026-10-01".into(),
            original_amount: "100.00".into(),
            open_amount: open.into(),
            currency: "EUR".into(),
        }
    }

    #[test]
    fn garbage_from_a_plugin_is_refused_naming_the_record() {
        let ok = pb::PullBatch {
            items: vec![item("a", "50.00")],
            next_cursor: "7".into(),
            ..Default::default()
        };
        let b = to_batch("plugin:x", std::slice::from_ref(&ok)).unwrap();
        assert_eq!(b.items[0].open_amount, Decimal::new(5000, 2));
        for (bad, says) in [
            (item("b", "abc"), "item `b`: open_amount: `abc`"),
            (item("c", "150.00"), "exceeds original_amount"),
            (
                pb::Item {
                    original_amount: "5000000000000000".into(),
                    ..item("f", "1")
                },
                "item `f`: original_amount: amount 5000000000000000 is out of range",
            ),
            (
                item("g", "10.001"),
                "item `g`: amount 10.001 has more decimals than EUR",
            ),
            (
                pb::Item {
                    currency: "EURO".into(),
                    ..item("d", "1")
                },
                "item `d`",
            ),
            (
                pb::Item {
                    due_date: "2026-13-01".into(),
                    ..item("e", "1")
                },
                "due_date: `2026-13-01`",
            ),
        ] {
            let batches = vec![
                ok.clone(),
                pb::PullBatch {
                    items: vec![bad],
                    ..Default::default()
                },
            ];
            let e = to_batch("plugin:x", &batches).unwrap_err();
            assert!(e.contains(says) && e.starts_with("batch 1"), "{e}");
        }
    }
}
