//! Credit bureau: score and risk-class lookups over HTTP JSON.
//!
//! The protocol (what a bureau adapter must answer):
//! `GET {url}/v1/score?company=C&customer=CODE&name=N&country=CC` with
//! `Authorization: Bearer KEY` when a key is configured →
//! `200 {"score": 0..1000, "risk_class": "A".."E"}`, or `404` when the bureau does
//! not know the customer. Each sync looks up the customers with open items whose
//! score is missing or older than `max_age`, oldest first, at most `batch` of them;
//! the answers are written in one transaction, so a sync that fails half-way
//! (timeout, 5xx after retries, a reply that is not the JSON above) stores nothing
//! and the same customers are asked again next time.

use std::path::PathBuf;
use std::time::Duration;

use backon::{BlockingRetryable, ExponentialBuilder};
use chrono::Utc;
use serde::Deserialize;

use super::SyncStats;
use crate::store::Store;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BureauConfig {
    pub url: String,
    pub api_key_env: Option<String>,
    pub api_key_file: Option<PathBuf>,
    #[serde(
        default = "default_timeout",
        with = "crate::config::humantime_serde_compat"
    )]
    pub timeout: Duration,
    /// A score older than this is looked up again.
    #[serde(
        default = "default_max_age",
        with = "crate::config::humantime_serde_compat"
    )]
    pub max_age: Duration,
    /// Lookups per sync at most (bureaus bill and throttle per call).
    #[serde(default = "default_batch")]
    pub batch: usize,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_age() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_batch() -> usize {
    200
}

#[derive(Debug, Deserialize)]
struct Reply {
    score: i64,
    risk_class: String,
}

struct Lookup {
    customer_id: i64,
    company: String,
    code: String,
    name: String,
    country: String,
}

enum Failure {
    Transient(String),
    Final(String),
}

fn key(cfg: &BureauConfig) -> Result<Option<String>, String> {
    if let Some(v) = &cfg.api_key_env {
        return std::env::var(v)
            .map(Some)
            .map_err(|_| format!("environment variable {v} (api_key_env) is not set"));
    }
    if let Some(p) = &cfg.api_key_file {
        return std::fs::read_to_string(p)
            .map(|s| Some(s.trim().to_string()))
            .map_err(|e| format!("api_key_file {}: {e}", p.display()));
    }
    Ok(None)
}

fn ask(
    agent: &ureq::Agent,
    cfg: &BureauConfig,
    key: Option<&str>,
    l: &Lookup,
) -> Result<Option<Reply>, Failure> {
    let url = format!("{}/v1/score", cfg.url.trim_end_matches('/'));
    let who = format!("customer {}/{}", l.company, l.code);
    let mut req = agent
        .get(&url)
        .query("company", &l.company)
        .query("customer", &l.code)
        .query("name", &l.name)
        .query("country", &l.country);
    if let Some(k) = key {
        req = req.header("Authorization", &format!("Bearer {k}"));
    }
    let mut resp = req.call().map_err(|e| {
        let m = format!("bureau {url}, {who}: {e}");
        match e {
            ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed => {
                Failure::Transient(m)
            }
            _ => Failure::Final(m),
        }
    })?;
    let status = resp.status().as_u16();
    match status {
        200 => {}
        404 => return Ok(None),
        429 | 500..=599 => {
            return Err(Failure::Transient(format!(
                "bureau {url}, {who}: HTTP {status}"
            )))
        }
        _ => {
            return Err(Failure::Final(format!(
                "bureau {url}, {who}: HTTP {status}"
            )))
        }
    }
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| Failure::Final(format!("bureau {url}, {who}: {e}")))?;
    let r: Reply = serde_json::from_str(&text).map_err(|e| {
        let shown: String = text.chars().take(80).collect();
        Failure::Final(format!(
            "bureau {url}, {who}: reply is not {{\"score\", \"risk_class\"}}: {e}: `{shown}`"
        ))
    })?;
    if !(0..=1000).contains(&r.score) {
        return Err(Failure::Final(format!(
            "bureau {url}, {who}: score {} is outside 0..1000",
            r.score
        )));
    }
    Ok(Some(r))
}

pub fn sync(store: &mut Store, connector: &str, cfg: &BureauConfig) -> Result<SyncStats, String> {
    let key = key(cfg)?;
    let stale = (Utc::now()
        - chrono::Duration::from_std(cfg.max_age).unwrap_or(chrono::Duration::days(7)))
    .to_rfc3339();
    let due: Vec<Lookup> = {
        let mut st = store
            .conn()
            .prepare(
                "SELECT c.id, c.company, c.code, c.name, c.country FROM customers c
                 LEFT JOIN bureau_scores b ON b.customer_id = c.id
                 WHERE EXISTS (SELECT 1 FROM items i WHERE i.customer_id = c.id AND i.status = 'open')
                   AND (b.fetched_at IS NULL OR b.fetched_at < ?1)
                 ORDER BY b.fetched_at IS NOT NULL, b.fetched_at, c.id LIMIT ?2",
            )
            .map_err(|e| e.to_string())?;
        let rows = st
            .query_map(rusqlite::params![stale, cfg.batch as i64], |r| {
                Ok(Lookup {
                    customer_id: r.get(0)?,
                    company: r.get(1)?,
                    code: r.get(2)?,
                    name: r.get(3)?,
                    country: r.get(4)?,
                })
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<_, _>>().map_err(|e| e.to_string())?
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(cfg.timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut answers = Vec::with_capacity(due.len());
    for l in &due {
        let once = || ask(&agent, cfg, key.as_deref(), l);
        let r = once
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_times(2),
            )
            .when(|f| matches!(f, Failure::Transient(_)))
            .call()
            .map_err(|f| match f {
                Failure::Transient(m) | Failure::Final(m) => m,
            })?;
        answers.push((l.customer_id, r));
    }
    let now = Utc::now().to_rfc3339();
    let known = answers.iter().filter(|(_, r)| r.is_some()).count();
    let principal = format!("connector:{connector}");
    store
        .audited(&principal, "bureau.scores", connector, |st| {
            let mut w = st.conn().prepare(
                "INSERT INTO bureau_scores(customer_id, bureau, score, risk_class, fetched_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(customer_id) DO UPDATE SET bureau = excluded.bureau, score = excluded.score,
                     risk_class = excluded.risk_class, fetched_at = excluded.fetched_at",
            )?;
            for (id, r) in &answers {
                w.execute(rusqlite::params![
                    id,
                    connector,
                    r.as_ref().map(|r| r.score),
                    r.as_ref().map(|r| r.risk_class.clone()),
                    now
                ])?;
            }
            let after = serde_json::json!({ "looked_up": answers.len(), "known": known });
            Ok::<_, crate::store::StoreError>(((), serde_json::Value::Null, after))
        })
        .map_err(|e| e.to_string())?;
    Ok(SyncStats {
        pulled: answers.len() as u64,
        failed: 0,
        details: vec![format!(
            "{connector}: {} customers looked up, {known} known to the bureau",
            answers.len()
        )],
        cursor: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Batch, CustomerInfo, ItemInput};
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A stub bureau on loopback. By customer code: `OK*` → a score, `NEW*` →
    /// 404, `FLAKY` → 503 once then a score, `DOWN` → always 500, `SLOW` → answers
    /// after 2 s, `BAD` → not JSON.
    fn stub() -> (String, Arc<AtomicUsize>) {
        use axum::http::{StatusCode, Uri};
        let hits = Arc::new(AtomicUsize::new(0));
        let flaky = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let h = hits.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = axum::Router::new().route(
                    "/v1/score",
                    axum::routing::get(move |uri: Uri| {
                        let (h, flaky) = (h.clone(), flaky.clone());
                        async move {
                            h.fetch_add(1, Ordering::SeqCst);
                            let q: HashMap<&str, &str> = uri
                                .query()
                                .unwrap_or_default()
                                .split('&')
                                .filter_map(|kv| kv.split_once('='))
                                .collect();
                            let code = q.get("customer").copied().unwrap_or_default().to_string();
                            let score = |n: u32| {
                                (
                                    StatusCode::OK,
                                    format!("{{\"score\": {n}, \"risk_class\": \"B\"}}"),
                                )
                            };
                            match code.as_str() {
                                c if c.starts_with("OK") => score(700 + c.len() as u32),
                                c if c.starts_with("NEW") => (StatusCode::NOT_FOUND, String::new()),
                                "FLAKY" if flaky.fetch_add(1, Ordering::SeqCst) == 0 => {
                                    (StatusCode::SERVICE_UNAVAILABLE, String::new())
                                }
                                "FLAKY" => score(512),
                                "DOWN" => (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
                                "SLOW" => {
                                    tokio::time::sleep(Duration::from_secs(2)).await;
                                    score(1)
                                }
                                _ => (StatusCode::OK, "<html>maintenance</html>".into()),
                            }
                        }
                    }),
                );
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                axum::serve(l, app).await.unwrap();
            });
        });
        (format!("http://{}", rx.recv().unwrap()), hits)
    }

    fn store_with(codes: &[&str]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("t.db")).unwrap();
        let d = chrono::NaiveDate::from_ymd_opt(2026, 9, 1).unwrap();
        s.ingest(&Batch {
            customers: codes
                .iter()
                .map(|c| CustomerInfo {
                    company: "ACME".into(),
                    code: c.to_string(),
                    name: format!("{c} Ltd"),
                    country: "DE".into(),
                    email: None,
                    phone: None,
                    language: None,
                    timezone: None,
                    credit_limit: None,
                })
                .collect(),
            items: codes
                .iter()
                .map(|c| ItemInput {
                    source: "t".into(),
                    external_id: c.to_string(),
                    company: "ACME".into(),
                    customer: c.to_string(),
                    document_no: format!("INV-{c}"),
                    document_date: d,
                    due_date: d,
                    original_amount: rust_decimal::Decimal::TEN,
                    open_amount: rust_decimal::Decimal::TEN,
                    currency: crate::money::Currency::parse("EUR").unwrap(),
                    hold: None,
                    original_document: None,
                })
                .collect(),
            ..Batch::default()
        })
        .unwrap();
        (dir, s)
    }

    fn cfg(url: &str) -> BureauConfig {
        BureauConfig {
            url: url.into(),
            api_key_env: None,
            api_key_file: None,
            timeout: Duration::from_millis(500),
            max_age: Duration::from_secs(3600),
            batch: 100,
        }
    }

    fn scores(s: &Store) -> Vec<(String, Option<i64>)> {
        let mut st = s
            .conn()
            .prepare("SELECT c.code, b.score FROM bureau_scores b JOIN customers c ON c.id = b.customer_id ORDER BY c.code")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn scores_are_stored_unknown_customers_too_and_fresh_ones_are_not_asked_again() {
        let (url, hits) = stub();
        let (_d, mut s) = store_with(&["OK1", "OK22", "NEW1", "FLAKY"]);
        let r = sync(&mut s, "bureau", &cfg(&url)).unwrap();
        assert_eq!(r.pulled, 4);
        assert_eq!(
            scores(&s),
            vec![
                ("FLAKY".into(), Some(512)),
                ("NEW1".into(), None),
                ("OK1".into(), Some(703)),
                ("OK22".into(), Some(704)),
            ]
        );
        assert_eq!(hits.load(Ordering::SeqCst), 5, "FLAKY was asked twice");
        let r = sync(&mut s, "bureau", &cfg(&url)).unwrap();
        assert_eq!(r.pulled, 0, "all fresh");
        let view = s
            .customer_view(
                s.customer_id("ACME/OK1").unwrap(),
                chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
            )
            .unwrap();
        assert_eq!(view.bureau.unwrap().1, Some(703));
    }

    #[test]
    fn a_failing_bureau_stores_nothing_and_names_the_customer() {
        let (url, _) = stub();
        for (bad, says) in [("BAD", "not {"), ("DOWN", "http 500"), ("SLOW", "timeout")] {
            let (_d, mut s) = store_with(&["OK1", bad]);
            let e = sync(&mut s, "bureau", &cfg(&url)).unwrap_err();
            assert!(e.contains(&format!("ACME/{bad}")), "{e}");
            assert!(e.to_lowercase().contains(says), "{e}");
            assert!(
                scores(&s).is_empty(),
                "nothing half-written: {:?}",
                scores(&s)
            );
        }
        let (_d, mut s) = store_with(&["OK1"]);
        let e = sync(&mut s, "bureau", &cfg("http://127.0.0.1:9")).unwrap_err();
        assert!(e.contains("ACME/OK1"), "{e}");
    }
}
