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
//!
//! Negative listing (with `listing:` configured): `POST {url}/v1/listings`
//! `{"company", "customer", "document_no", "amount", "currency", "due_date"}` →
//! `201 {"listing_id": "…"}`; removal `DELETE {url}/v1/listings/{id}` → 2xx or 404.
//! The legal guard decides per item, on the business date: the item is still open,
//! at least `min_amount`, not disputed and not on hold; the customer was sent the
//! prior notice (an escalation at `notice_level` with status `sent` that covered
//! the item) at least `waiting_days` ago. A listed item that is paid (cleared) or
//! becomes disputed is removed at the next sync. Each listing and removal is
//! recorded as soon as the bureau confirmed it, so a sync that fails later never
//! forgets what the bureau already holds.

use std::path::PathBuf;
use std::time::Duration;

use backon::{BlockingRetryable, ExponentialBuilder};
use serde::Deserialize;

use std::collections::HashMap;

use super::SyncStats;
use arrears_store::{
    ActiveListing, BureauCandidate, BureauLookup, BureauScore, RemovalReason, Store,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BureauConfig {
    pub url: String,
    pub api_key_env: Option<String>,
    pub api_key_file: Option<PathBuf>,
    #[serde(default = "default_timeout", with = "arrears_core::human_duration")]
    pub timeout: Duration,
    /// A score older than this is looked up again.
    #[serde(default = "default_max_age", with = "arrears_core::human_duration")]
    pub max_age: Duration,
    /// Lookups per sync at most (bureaus bill and throttle per call).
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Negative listing; off when absent.
    pub listing: Option<ListingPolicy>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListingPolicy {
    /// The escalation level whose message is the legally required prior notice.
    pub notice_level: String,
    /// Days between the notice and the earliest listing.
    pub waiting_days: i64,
    /// Items below this open amount are never listed.
    #[serde(default)]
    pub min_amount: rust_decimal::Decimal,
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
        return arrears_secret::read(p)
            .map(|s| Some(s.trim().to_string()))
            .map_err(|e| format!("api_key_file: {e}"));
    }
    Ok(None)
}

/// Adds the API key, when one is configured.
fn bearer<B>(req: ureq::RequestBuilder<B>, key: Option<&str>) -> ureq::RequestBuilder<B> {
    match key {
        Some(k) => req.header("Authorization", &format!("Bearer {k}")),
        None => req,
    }
}

fn ask(
    agent: &ureq::Agent,
    cfg: &BureauConfig,
    key: Option<&str>,
    l: &BureauLookup,
) -> Result<Option<Reply>, Failure> {
    let url = format!("{}/v1/score", cfg.url.trim_end_matches('/'));
    let who = format!("customer {}/{}", l.company, l.code);
    let req = agent
        .get(&url)
        .query("company", &l.company)
        .query("customer", &l.code)
        .query("name", &l.name)
        .query("country", &l.country);
    let mut resp = bearer(req, key).call().map_err(|e| {
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

pub fn sync(
    store: &mut Store,
    connector: &str,
    cfg: &BureauConfig,
    as_of: chrono::NaiveDate,
) -> Result<SyncStats, String> {
    let mut stats = lookups(store, connector, cfg)?;
    if let Some(policy) = &cfg.listing {
        let (listed, removed) = listings(store, connector, cfg, policy, as_of)?;
        stats.details.push(format!(
            "{connector}: {listed} listed, {removed} listings removed"
        ));
    }
    Ok(stats)
}

/// Items the guard allows to be listed today, and active listings to remove with
/// the reason; `candidates` are the store's open, overdue, undisputed items not on
/// hold and not listed yet, `notices` the first sent notice per item.
fn guard<'a>(
    p: &ListingPolicy,
    as_of: chrono::NaiveDate,
    candidates: &'a [BureauCandidate],
    notices: &HashMap<i64, chrono::NaiveDate>,
    active: &'a [ActiveListing],
) -> (
    Vec<&'a BureauCandidate>,
    Vec<(&'a ActiveListing, RemovalReason)>,
) {
    let noticed_by = as_of - chrono::Duration::days(p.waiting_days);
    let list = candidates
        .iter()
        .filter(|c| notices.get(&c.item_id).is_some_and(|&on| on <= noticed_by))
        .filter(|c| c.open_amount >= p.min_amount)
        .collect();
    let remove = active
        .iter()
        .filter_map(|l| {
            if !l.item_open {
                Some((l, RemovalReason::Paid))
            } else if l.disputed {
                Some((l, RemovalReason::Disputed))
            } else {
                None
            }
        })
        .collect();
    (list, remove)
}

/// What the bureau is sent to list an item.
fn listing_body(c: &BureauCandidate) -> serde_json::Value {
    serde_json::json!({
        "company": c.company, "customer": c.customer, "document_no": c.document_no,
        "amount": c.open_amount.to_string(), "currency": c.currency,
        "due_date": c.due_date.to_string(),
    })
}

fn listings(
    store: &mut Store,
    connector: &str,
    cfg: &BureauConfig,
    policy: &ListingPolicy,
    as_of: chrono::NaiveDate,
) -> Result<(usize, usize), String> {
    let candidates = store
        .bureau_candidates(connector, as_of)
        .map_err(|e| e.to_string())?;
    let notices = store
        .sent_notices(&policy.notice_level)
        .map_err(|e| e.to_string())?;
    let active = store
        .active_bureau_listings(connector)
        .map_err(|e| e.to_string())?;
    let (list, remove) = guard(policy, as_of, &candidates, &notices, &active);
    let key = key(cfg)?;
    let agent = super::http_agent(cfg.timeout);
    let base = cfg.url.trim_end_matches('/');
    let principal = format!("connector:{connector}");
    let mut removed = 0;
    for (listing, why) in remove {
        let listing_ref = &listing.listing_ref;
        let status = bearer(
            agent.delete(&format!("{base}/v1/listings/{listing_ref}")),
            key.as_deref(),
        )
        .call()
        .map_err(|e| format!("bureau: removing listing {listing_ref}: {e}"))?
        .status()
        .as_u16();
        // 404: the bureau no longer has it, which is what removal wants.
        if !(200..300).contains(&status) && status != 404 {
            return Err(format!(
                "bureau: removing listing {listing_ref}: HTTP {status}"
            ));
        }
        store
            .record_bureau_removal(&principal, listing, as_of, why)
            .map_err(|e| e.to_string())?;
        removed += 1;
    }
    let mut listed = 0;
    for item in list {
        let body = listing_body(item);
        let mut resp = bearer(agent.post(&format!("{base}/v1/listings")), key.as_deref())
            .send_json(&body)
            .map_err(|e| format!("bureau: listing {body}: {e}"))?;
        let status = resp.status().as_u16();
        if status != 200 && status != 201 {
            return Err(format!("bureau: listing {body}: HTTP {status}"));
        }
        let reply: serde_json::Value = resp
            .body_mut()
            .read_json()
            .map_err(|e| format!("bureau: listing {body}: reply is not JSON: {e}"))?;
        let listing_ref = reply["listing_id"]
            .as_str()
            .map(str::to_string)
            .or_else(|| reply["listing_id"].as_i64().map(|n| n.to_string()))
            .ok_or_else(|| format!("bureau: listing {body}: no listing_id in {reply}"))?;
        store
            .record_bureau_listing(&principal, connector, item, &listing_ref, as_of)
            .map_err(|e| e.to_string())?;
        listed += 1;
    }
    Ok((listed, removed))
}

fn lookups(store: &mut Store, connector: &str, cfg: &BureauConfig) -> Result<SyncStats, String> {
    let key = key(cfg)?;
    let stale = (store.clock().now()
        - chrono::Duration::from_std(cfg.max_age).unwrap_or(chrono::Duration::days(7)))
    .to_rfc3339();
    let due = store
        .bureau_lookups_due(&stale, cfg.batch)
        .map_err(|e| e.to_string())?;
    let agent = super::http_agent(cfg.timeout);
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
        let r = r.map(|r| BureauScore {
            score: r.score,
            risk_class: r.risk_class,
        });
        answers.push((l.customer_id, r));
    }
    let now = store.clock().now().to_rfc3339();
    let known = answers.iter().filter(|(_, r)| r.is_some()).count();
    store
        .record_bureau_scores(&format!("connector:{connector}"), connector, &answers, &now)
        .map_err(|e| e.to_string())?;
    Ok(SyncStats {
        pulled: answers.len() as u64,
        failed: 0,
        details: vec![format!(
            "{connector}: {} customers looked up, {known} known to the bureau",
            answers.len()
        )],
        cursor: None,
        problem: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrears_core::domain::{Batch, CustomerInfo, ItemInput};
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
                    street: None,
                    postal_code: None,
                    city: None,
                    dunning: None,
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
                    currency: arrears_core::money::Currency::parse("EUR").unwrap(),
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
            listing: None,
        }
    }

    fn today() -> chrono::NaiveDate {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
    }

    #[cfg(unix)]
    #[test]
    fn an_api_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("key");
        std::fs::write(&f, "bureau-key\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut c = cfg("http://127.0.0.1:9");
        c.api_key_file = Some(f.clone());
        let e = key(&c).unwrap_err();
        assert!(
            e.starts_with("api_key_file: ") && e.contains("chmod 600"),
            "{e}"
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(key(&c).unwrap().as_deref(), Some("bureau-key"));
    }

    /// The stored score of each of `codes` (ACME's) that has a bureau answer.
    fn scores(s: &Store, codes: &[&str]) -> Vec<(String, Option<i64>)> {
        let mut out: Vec<(String, Option<i64>)> = codes
            .iter()
            .filter_map(|code| {
                let id = s.customer_id(&format!("ACME/{code}")).unwrap();
                let view = s.customer_view(id, today()).unwrap();
                view.bureau.map(|b| (code.to_string(), b.1))
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn scores_are_stored_unknown_customers_too_and_fresh_ones_are_not_asked_again() {
        let (url, hits) = stub();
        let codes = ["OK1", "OK22", "NEW1", "FLAKY"];
        let (_d, mut s) = store_with(&codes);
        let r = sync(&mut s, "bureau", &cfg(&url), today()).unwrap();
        assert_eq!(r.pulled, 4);
        assert_eq!(
            scores(&s, &codes),
            vec![
                ("FLAKY".into(), Some(512)),
                ("NEW1".into(), None),
                ("OK1".into(), Some(703)),
                ("OK22".into(), Some(704)),
            ]
        );
        assert_eq!(hits.load(Ordering::SeqCst), 5, "FLAKY was asked twice");
        let r = sync(&mut s, "bureau", &cfg(&url), today()).unwrap();
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
            let e = sync(&mut s, "bureau", &cfg(&url), today()).unwrap_err();
            assert!(e.contains(&format!("ACME/{bad}")), "{e}");
            assert!(e.to_lowercase().contains(says), "{e}");
            let stored = scores(&s, &["OK1", bad]);
            assert!(stored.is_empty(), "nothing half-written: {stored:?}");
        }
        let (_d, mut s) = store_with(&["OK1"]);
        let e = sync(&mut s, "bureau", &cfg("http://127.0.0.1:9"), today()).unwrap_err();
        assert!(e.contains("ACME/OK1"), "{e}");
    }

    /// A stub bureau for listings: POST answers `{"listing_id": "L<n>"}`, DELETE
    /// answers 204; every call is logged as "POST <document_no>" / "DELETE <id>".
    fn listing_stub() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        use axum::http::{StatusCode, Uri};
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let (l1, l2) = (log.clone(), log.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = axum::Router::new()
                    .route(
                        "/v1/listings",
                        axum::routing::post(move |body: String| {
                            let log = l1.clone();
                            async move {
                                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                                let mut log = log.lock().unwrap();
                                log.push(format!("POST {}", v["document_no"].as_str().unwrap()));
                                let id = format!("L{}", log.len());
                                (StatusCode::CREATED, format!("{{\"listing_id\": \"{id}\"}}"))
                            }
                        }),
                    )
                    .route(
                        "/v1/listings/{id}",
                        axum::routing::delete(move |uri: Uri| {
                            let log = l2.clone();
                            async move {
                                let id = uri
                                    .path()
                                    .rsplit('/')
                                    .next()
                                    .unwrap_or_default()
                                    .to_string();
                                log.lock().unwrap().push(format!("DELETE {id}"));
                                StatusCode::NO_CONTENT
                            }
                        }),
                    );
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                axum::serve(l, app).await.unwrap();
            });
        });
        (format!("http://{}", rx.recv().unwrap()), log)
    }

    fn candidate(item_id: i64, open: i64) -> BureauCandidate {
        BureauCandidate {
            item_id,
            company: "ACME".into(),
            customer: format!("C{item_id}"),
            document_no: format!("INV-{item_id}"),
            open_amount: rust_decimal::Decimal::from(open),
            currency: "EUR".into(),
            due_date: "2026-09-01".parse().unwrap(),
        }
    }

    fn listing(id: i64, item_open: bool, disputed: bool) -> ActiveListing {
        ActiveListing {
            id,
            item_id: 100 + id,
            listing_ref: format!("L{id}"),
            item_open,
            disputed,
        }
    }

    #[test]
    fn the_guard_lists_only_after_a_sent_notice_and_the_wait_and_removes_paid_and_disputed() {
        let policy = ListingPolicy {
            notice_level: "final_notice".into(),
            waiting_days: 10,
            min_amount: rust_decimal::Decimal::from(5),
        };
        let day = |d: &str| -> chrono::NaiveDate { d.parse().unwrap() };
        let candidates = [
            candidate(1, 10), // noticed long enough ago: listed
            candidate(2, 10), // noticed exactly `waiting_days` ago: listed
            candidate(3, 10), // waiting period not over
            candidate(4, 10), // no (sent) notice at all
            candidate(5, 4),  // below min_amount
            candidate(6, 5),  // at min_amount: listed
        ];
        let notices = HashMap::from([
            (1, day("2026-11-01")),
            (2, day("2026-11-13")),
            (3, day("2026-11-20")),
            (5, day("2026-11-01")),
            (6, day("2026-11-01")),
        ]);
        let active = [
            listing(1, false, false),
            listing(2, true, true),
            listing(3, true, false),
            listing(4, false, true),
        ];
        let (list, remove) = guard(&policy, today(), &candidates, &notices, &active);
        let listed: Vec<i64> = list.iter().map(|c| c.item_id).collect();
        assert_eq!(listed, vec![1, 2, 6]);
        let removed: Vec<(&str, RemovalReason)> = remove
            .iter()
            .map(|(l, why)| (l.listing_ref.as_str(), *why))
            .collect();
        assert_eq!(
            removed,
            vec![
                ("L1", RemovalReason::Paid),
                ("L2", RemovalReason::Disputed),
                ("L4", RemovalReason::Paid),
            ],
            "an open, undisputed listing stays"
        );
    }

    #[test]
    fn the_listing_request_names_the_item() {
        let body = listing_body(&BureauCandidate {
            open_amount: "10.50".parse().unwrap(),
            ..candidate(7, 0)
        });
        assert_eq!(
            body,
            serde_json::json!({
                "company": "ACME", "customer": "C7", "document_no": "INV-7",
                "amount": "10.50", "currency": "EUR", "due_date": "2026-09-01",
            })
        );
    }

    /// The whole chain: runs decide the final notice, the outbox delivers it (a letter
    /// stored for printing), and only after the waiting period the bureau lists the
    /// item; before the outbox ran, the decided-but-unsent notice lists nothing. A
    /// debtor without a postal address gets the same notice decided, but its letter
    /// cannot go: it is never listed.
    #[test]
    fn a_listing_follows_a_delivered_final_notice_after_the_wait() {
        let rules = arrears_test_support::shipped_rules();
        let (url, log) = listing_stub();
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("t.db")).unwrap();
        let n1 = ItemInput {
            source: "erp".into(),
            external_id: "n1".into(),
            company: "ACME_DE".into(),
            customer: "N1".into(),
            document_no: "INV-N1".into(),
            document_date: chrono::NaiveDate::from_ymd_opt(2026, 8, 1).unwrap(),
            due_date: chrono::NaiveDate::from_ymd_opt(2026, 9, 1).unwrap(),
            original_amount: rust_decimal::Decimal::from(800),
            open_amount: rust_decimal::Decimal::from(800),
            currency: arrears_core::money::Currency::parse("EUR").unwrap(),
            hold: None,
            original_document: None,
        };
        let n2 = ItemInput {
            external_id: "n2".into(),
            customer: "N2".into(),
            document_no: "INV-N2".into(),
            ..n1.clone()
        };
        let customer = |code: &str| CustomerInfo {
            company: "ACME_DE".into(),
            code: code.into(),
            name: format!("Nord {code} GmbH"),
            country: "DE".into(),
            ..Default::default()
        };
        s.ingest(&Batch {
            customers: vec![customer("N1"), customer("N2")],
            items: vec![n1.clone(), n2],
            ..Batch::default()
        })
        .unwrap();
        let n1_id = s.customer_id("ACME_DE/N1").unwrap();
        s.set_contact_preferences(
            n1_id,
            &arrears_store::ContactUpdate {
                street: Some("Hafenstr. 1"),
                postal_code: Some("20457"),
                city: Some("Hamburg"),
                ..Default::default()
            },
        )
        .unwrap();
        let day = |d: &str| -> chrono::NaiveDate { d.parse().unwrap() };
        let mut c = cfg(&url);
        c.batch = 0;
        c.listing = Some(ListingPolicy {
            notice_level: "final_notice".into(),
            waiting_days: 10,
            min_amount: rust_decimal::Decimal::ONE,
        });
        // One level per run: reminder 1, reminder 2, then the final notice.
        for d in ["2026-10-05", "2026-10-06", "2026-10-20"] {
            arrears_app::run::run(&mut s, &rules, day(d), arrears_app::run::RunMode::Full).unwrap();
            if d != "2026-10-20" {
                let now = format!("{d}T10:00:00Z").parse().unwrap();
                arrears_app::correspondence::process(&mut s, &rules, None, now).unwrap();
            }
        }
        // Decided, not sent: nothing is listed even after the wait.
        sync(&mut s, "bureau", &c, day("2026-11-05")).unwrap();
        assert!(log.lock().unwrap().is_empty(), "{:?}", log.lock().unwrap());
        // The outbox prints it (no e-mail on file: the letter is the channel anyway).
        let st = arrears_app::correspondence::process(
            &mut s,
            &rules,
            None,
            "2026-10-20T10:00:00Z".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(
            (st.sent, st.failed),
            (1, 1),
            "N1's letter, not N2's: {st:?}"
        );
        let why: String = s
            .test_connection()
            .query_row(
                "SELECT m.last_error FROM messages m JOIN customers c ON c.id = m.customer_id
                 WHERE c.code = 'N2' AND m.channel = 'letter'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(why.contains("no letter address on file"), "{why}");
        // The final notice printed for N1 carries the address block it was sent to.
        let printed: i64 = s
            .test_connection()
            .query_row(
                "SELECT COUNT(*) FROM documents d JOIN customers c ON c.id = d.customer_id
                 WHERE c.code = 'N1' AND d.kind = 'letter'
                   AND d.html LIKE '%Hafenstr. 1%' AND d.html LIKE '%20457 Hamburg%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(printed, 1, "the final notice shows N1's address");
        sync(&mut s, "bureau", &c, day("2026-10-29")).unwrap();
        assert!(
            log.lock().unwrap().is_empty(),
            "9 days after the notice: still waiting"
        );
        sync(&mut s, "bureau", &c, day("2026-10-30")).unwrap();
        assert_eq!(*log.lock().unwrap(), vec!["POST INV-N1".to_string()]);
        // Nothing new the next day: no second listing; N2, never noticed, never.
        sync(&mut s, "bureau", &c, day("2026-10-31")).unwrap();
        sync(&mut s, "bureau", &c, day("2026-12-31")).unwrap();
        assert_eq!(log.lock().unwrap().len(), 1);
        let listed = s.active_bureau_listings("bureau").unwrap();
        assert_eq!(listed.len(), 1);
        let item = listed[0].item_id;

        // Paid: the listing is removed at the next sync.
        s.ingest(&Batch {
            items: vec![ItemInput {
                open_amount: rust_decimal::Decimal::ZERO,
                ..n1
            }],
            ..Batch::default()
        })
        .unwrap();
        sync(&mut s, "bureau", &c, day("2026-11-02")).unwrap();
        assert_eq!(log.lock().unwrap().last().unwrap(), "DELETE L1");
        assert!(s.active_bureau_listings("bureau").unwrap().is_empty());
        let rec = s.item_bureau_listings(item).unwrap();
        assert_eq!(rec.len(), 1);
        assert_eq!(
            (rec[0].removed_on, rec[0].reason.as_deref()),
            (Some(day("2026-11-02")), Some("paid"))
        );
        let audited: Vec<(String, String)> = s
            .audit_records(0, 10_000)
            .unwrap()
            .into_iter()
            .filter(|r| r.action.starts_with("bureau.") && r.action != "bureau.scores")
            .map(|r| (r.action, r.target))
            .collect();
        assert_eq!(
            audited,
            vec![
                ("bureau.list".to_string(), "L1".to_string()),
                ("bureau.remove".to_string(), "L1".to_string()),
            ]
        );
    }
}
