//! Prometheus metrics: the recorder, gRPC request accounting, and the KPI gauges
//! refreshed after every run. Money is exact `Decimal` up to here; a gauge is a float
//! by nature of the exposition format, so the conversion happens only at this edge.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use tonic::{Code, Status};

use super::Shared;
use arrears_kpi::{self as kpi, KpiOptions};
use arrears_rules::RuleSet;
use arrears_store::Store;

/// The daemon's recorder with its histogram buckets, not yet installed anywhere.
/// `arrears serve` installs it process-wide ([`install`]); a test that runs several
/// daemons in one process gives each its own (see [`crate::Metrics`]).
pub fn recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    let latency = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ];
    let runs = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("arrears_grpc_request_duration_seconds".into()),
            &latency,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full("arrears_run_duration_seconds".into()), &runs)
        })
        .expect("bucket lists are non-empty")
        .build_recorder()
}

/// Installs the process-wide recorder. A process serves one daemon this way, so a
/// recorder already in place is an error rather than something to share.
pub fn install() -> Result<PrometheusHandle, super::ServeError> {
    let recorder = recorder();
    let handle = recorder.handle();
    ::metrics::set_global_recorder(recorder)
        .map_err(|e| super::ServeError::Metrics(e.to_string()))?;
    super::metric_catalog::register();
    Ok(handle)
}

/// Histograms need periodic upkeep; also keeps the watcher gauge and the audit head
/// current.
pub async fn upkeep(shared: Arc<Shared>, handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        handle.run_upkeep();
        gauge!("arrears_worklist_watchers")
            .set(shared.watchers.load(std::sync::atomic::Ordering::Relaxed) as f64);
        // Read from the database, not counted in this process: other processes (the
        // CLI, imports) append too, and a head that goes down means a deleted tail.
        match shared.read(|store, _| Ok(store.audit_head())).await {
            Ok(Ok(head)) => gauge!("arrears_audit_head_sequence").set(head as f64),
            Ok(Err(e)) => tracing::warn!(error = %e, "reading the audit log head"),
            Err(e) => tracing::warn!(error = %e, "reading the audit log head"),
        }
    }
}

/// Recomputes the KPIs after runs, at most once per `kpi_interval`, on a read
/// connection: the writer (and so the next run and API writes) never waits for it.
/// Runs that finish during a pass or the pause after it are folded into one more pass.
pub async fn kpis(shared: Arc<Shared>) {
    let mut stop = shared.shutdown.clone();
    let mut analysed: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shared.kpi_due.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let as_of = *shared.kpi_as_of.lock().unwrap_or_else(|p| p.into_inner());
        let mut took = std::time::Duration::ZERO;
        if let Some(as_of) = as_of {
            let started = Instant::now();
            let done = shared
                .read(move |store, rules| {
                    export_kpis(store, rules, as_of);
                    Ok(())
                })
                .await;
            if let Err(e) = done {
                tracing::error!(error = %e, "KPI pass");
            }
            took = started.elapsed();
            tracing::debug!(ms = took.as_millis() as u64, "KPI pass");
            if analysed.is_none_or(|t| t.elapsed() >= shared.cfg.analysis_interval) {
                let started = Instant::now();
                let done = shared
                    .read(move |store, rules| {
                        export_analysis(store, rules, as_of);
                        Ok(())
                    })
                    .await;
                if let Err(e) = done {
                    tracing::error!(error = %e, "analysis pass");
                }
                analysed = Some(Instant::now());
                tracing::debug!(ms = started.elapsed().as_millis() as u64, "analysis pass");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(kpi_pause(shared.cfg.kpi_interval, took)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// The pause after a KPI pass: `serve.kpi_interval`, or four times the pass when
/// that is longer. A pass rescans the store and its cost grows with the portfolio
/// (0.5–0.8 s at a million items): with a fixed pause, a large portfolio would be
/// rescanned almost without rest, on the core that payments and pages need.
fn kpi_pause(interval: std::time::Duration, took: std::time::Duration) -> std::time::Duration {
    interval.max(took * 4)
}

pub fn code_name(c: Code) -> &'static str {
    match c {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Counts and times one gRPC call by method and status code, and cuts its error
/// message to [`super::limits::STATUS_BYTES`]: every handler runs inside this, so no
/// message can echo a megabyte a caller sent.
pub async fn observed<T>(
    method: &'static str,
    fut: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let t = Instant::now();
    let r = fut.await;
    let code = match &r {
        Ok(_) => "OK",
        Err(s) => code_name(s.code()),
    };
    counter!("arrears_grpc_requests_total", "method" => method, "code" => code).increment(1);
    histogram!("arrears_grpc_request_duration_seconds", "method" => method, "code" => code)
        .record(t.elapsed().as_secs_f64());
    r.map_err(super::limits::clip_status)
}

type Labels = Vec<(&'static str, String)>;

/// Label sets each KPI gauge got from the last export. A company or collector that
/// drops out of the KPIs would otherwise keep showing its last figures forever; its
/// series are set to 0 (amounts, counts) or NaN (days, ratios: undefined) instead.
static EXPORTED: Mutex<Option<HashMap<&'static str, HashSet<Labels>>>> = Mutex::new(None);

#[derive(Default)]
struct Export {
    seen: HashMap<&'static str, HashSet<Labels>>,
}

impl Export {
    fn set(&mut self, name: &'static str, labels: Labels, v: f64) {
        gauge!(name, &labels).set(v);
        self.seen.entry(name).or_default().insert(labels);
    }

    /// Retires the series of `names` the last pass of the same kind set and this one
    /// did not; the other pass's metrics are left as they are.
    fn finish(self, names: &[&'static str]) {
        let mut last = EXPORTED.lock().unwrap_or_else(|p| p.into_inner());
        let all = last.get_or_insert_with(HashMap::new);
        for name in names {
            let before = all.remove(name).unwrap_or_default();
            let now = self.seen.get(name).cloned().unwrap_or_default();
            for labels in before.difference(&now) {
                gauge!(*name, labels).set(retired(name));
            }
            all.insert(name, now);
        }
    }
}

/// What a retired series shows: 0 for amounts and counts, NaN (undefined) for days
/// and ratios.
fn retired(name: &str) -> f64 {
    if name.ends_with("_days") || name.ends_with("_ratio") {
        f64::NAN
    } else {
        0.0
    }
}

/// The gauges of the KPI pass.
const KPI_GAUGES: &[&str] = &[
    "arrears_receivables_amount",
    "arrears_overdue_amount",
    "arrears_expected_cash_7d_amount",
    "arrears_aging_amount",
    "arrears_dso_days",
    "arrears_average_days_delinquent_days",
    "arrears_cei_ratio",
    "arrears_promise_kept_ratio",
    "arrears_promises",
    "arrears_open_cases",
    "arrears_worklist_entries",
    "arrears_worklist_amount",
    "arrears_activities_completed",
    "arrears_promises_taken",
];

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

/// The collections analysis gauges: the cash forecast (7, 30 and 90 days ahead),
/// what came in over the last 7 days, conversion and days to first payment of the
/// cases opened in the last 30 days, and what promises made in the last 90 days
/// brought in. The same reports as `arrears report`, over everything.
pub fn export_analysis(store: &Store, rules: &RuleSet, as_of: NaiveDate) {
    use arrears_app::reports::{self, Cell, Filter, Request, Table};
    let who = arrears_app::access::Principal {
        name: "metrics".into(),
        role: crate::config::Role::Admin,
        groups: Vec::new(),
    };
    let reach = arrears_app::access::Reach::everything(&who);
    let table = |kind: &str, back: u64, within: Option<i64>| -> Option<Table> {
        let from = as_of.checked_sub_days(chrono::Days::new(back))?;
        let mut req = Request::parse(kind, Some(from), as_of, &[], Filter::default(), within)
            .map_err(|e| tracing::error!(error = %e, kind, "analysis request"))
            .ok()?;
        req.use_rules(rules);
        reports::run(store, &reach, &req)
            .map_err(|e| tracing::error!(error = %e, kind, "analysis report"))
            .ok()
    };
    let num = |t: &Table, r: usize, col: &str| -> f64 {
        match t.cell(r, col) {
            Some(Cell::Amount(a)) => f(*a),
            Some(Cell::Count(n)) => *n as f64,
            Some(Cell::Figure(Some(x))) => f(*x),
            _ => f64::NAN,
        }
    };
    let text = |t: &Table, r: usize, col: &str| -> String {
        match t.cell(r, col) {
            Some(Cell::Text(s)) => s.clone(),
            _ => String::new(),
        }
    };
    let mut x = Export::default();
    let labels = |t: &Table, r: usize| -> Labels {
        vec![
            ("company", text(t, r, "company")),
            ("currency", text(t, r, "currency")),
        ]
    };
    // The forecast and what came in over the last 7 days, from one read of the
    // book (the largest read of the pass).
    let book = store.report_customers().and_then(|c| {
        arrears_app::forecast::facts(store, as_of, |id| c.get(&id).map(|d| d.company.clone()))
    });
    match book {
        Ok((items, promises, company)) => {
            let book = arrears_app::forecast::Book::new(&items, &promises, &company);
            let labels = |(co, cur): &(String, String)| -> Labels {
                vec![("company", co.clone()), ("currency", cur.clone())]
            };
            for (k, days) in book.forecast(as_of, 90) {
                for (horizon, n) in [("7d", 7), ("30d", 30), ("90d", 90)] {
                    let mut l = labels(&k);
                    l.push(("horizon", horizon.into()));
                    x.set("arrears_forecast_amount", l, f(days.iter().take(n).sum()));
                }
            }
            if let Some(week) = as_of.checked_sub_days(chrono::Days::new(7)) {
                for (k, days) in book.actual(week, 7) {
                    x.set(
                        "arrears_collected_7d_amount",
                        labels(&k),
                        f(days.iter().sum()),
                    );
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "analysis: reading the book"),
    }
    if let Some(t) = table("conversion", 29, Some(30)) {
        for r in 0..t.rows.len() {
            x.set(
                "arrears_conversion_ratio",
                labels(&t, r),
                num(&t, r, "conversion_rate"),
            );
            x.set(
                "arrears_first_payment_days",
                labels(&t, r),
                num(&t, r, "avg_days_to_first_payment"),
            );
        }
    }
    if let Some(t) = table("promises", 89, None) {
        for r in 0..t.rows.len() {
            let promised = num(&t, r, "promised");
            let received = num(&t, r, "received");
            let ratio = if promised > 0.0 {
                received / promised
            } else {
                f64::NAN
            };
            x.set("arrears_promise_received_ratio", labels(&t, r), ratio);
        }
    }
    x.finish(&[
        "arrears_forecast_amount",
        "arrears_collected_7d_amount",
        "arrears_conversion_ratio",
        "arrears_first_payment_days",
        "arrears_promise_received_ratio",
    ]);
}

/// Recomputes the finance KPIs and sets their gauges. A failure is logged, never fatal:
/// the run it follows has already committed.
pub fn export_kpis(store: &Store, _rules: &RuleSet, as_of: NaiveDate) {
    let k = match kpi::compute(store, as_of, &KpiOptions::default()) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "computing KPIs");
            return;
        }
    };
    let mut x = Export::default();
    for c in &k.companies {
        let l: Labels = vec![
            ("company", c.company.clone()),
            ("currency", c.currency.clone()),
        ];
        let with = |k: &'static str, v: &str| {
            let mut lb = l.clone();
            lb.push((k, v.to_string()));
            lb
        };
        x.set("arrears_receivables_amount", l.clone(), f(c.receivables));
        x.set("arrears_overdue_amount", l.clone(), f(c.overdue));
        x.set(
            "arrears_expected_cash_7d_amount",
            l.clone(),
            f(c.expected_cash_7d),
        );
        for (bucket, amount) in &c.aging {
            x.set("arrears_aging_amount", with("bucket", bucket), f(*amount));
        }
        for (method, v) in [
            ("standard", c.dso_standard),
            ("count_back", c.dso_count_back),
            ("best_possible", c.dso_best_possible),
        ] {
            let v = v.map(f).unwrap_or(f64::NAN);
            x.set("arrears_dso_days", with("method", method), v);
        }
        let opt = |v: Option<Decimal>| v.map(f).unwrap_or(f64::NAN);
        x.set(
            "arrears_average_days_delinquent_days",
            l.clone(),
            opt(c.average_days_delinquent),
        );
        x.set("arrears_cei_ratio", l.clone(), opt(c.cei));
        x.set(
            "arrears_promise_kept_ratio",
            l.clone(),
            opt(c.promise_kept_rate),
        );
        for (status, n) in [
            ("kept", c.promises_kept),
            ("partial", c.promises_partial),
            ("broken", c.promises_broken),
        ] {
            x.set("arrears_promises", with("status", status), n as f64);
        }
        for (prio, n) in &c.open_cases_by_priority {
            let lp = vec![("company", c.company.clone()), ("priority", prio.clone())];
            x.set("arrears_open_cases", lp, *n as f64);
        }
    }
    for c in &k.collectors {
        let l: Labels = vec![("collector", c.collector.clone())];
        x.set(
            "arrears_worklist_entries",
            l.clone(),
            c.worklist_entries as f64,
        );
        x.set("arrears_worklist_amount", l.clone(), f(c.worklist_amount));
        x.set(
            "arrears_activities_completed",
            l.clone(),
            c.activities_completed as f64,
        );
        x.set("arrears_promises_taken", l, c.promises_taken as f64);
    }
    x.finish(KPI_GAUGES);
}

#[cfg(test)]
mod tests {
    use super::kpi_pause;
    use std::time::Duration;

    #[test]
    fn a_long_kpi_pass_is_followed_by_a_longer_pause() {
        let s = Duration::from_secs;
        assert_eq!(kpi_pause(s(10), Duration::from_millis(700)), s(10));
        assert_eq!(kpi_pause(s(10), s(8)), s(32));
        assert_eq!(kpi_pause(s(0), s(0)), s(0), "tests turn the pause off");
    }
}
