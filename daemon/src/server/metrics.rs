//! Prometheus metrics: the recorder, gRPC request accounting, and the KPI gauges
//! refreshed after every run. Money is exact `Decimal` up to here; a gauge is a float
//! by nature of the exposition format, so the conversion happens only at this edge.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use tonic::{Code, Status};

use super::Shared;
use crate::kpi::{self, KpiOptions};
use crate::rules::RuleSet;
use crate::store::Store;

/// Installs the process-wide recorder. A process serves one daemon, so a recorder
/// already in place is an error rather than something to share.
pub fn install() -> Result<PrometheusHandle, super::ServeError> {
    let latency = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ];
    let runs = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("arrears_grpc_request_duration_seconds".into()),
            &latency,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full("arrears_run_duration_seconds".into()), &runs)
        })
        .expect("bucket lists are non-empty");
    builder
        .install_recorder()
        .map_err(|e| super::ServeError::Metrics(e.to_string()))
}

/// Histograms need periodic upkeep; also keeps the watcher gauge current.
pub async fn upkeep(shared: Arc<Shared>, handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        handle.run_upkeep();
        gauge!("arrears_worklist_watchers")
            .set(shared.watchers.load(std::sync::atomic::Ordering::Relaxed) as f64);
    }
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

/// Counts and times one gRPC call by method and status code.
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
    r
}

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
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
    for c in &k.companies {
        let l = [
            ("company", c.company.clone()),
            ("currency", c.currency.clone()),
        ];
        gauge!("arrears_receivables_amount", &l).set(f(c.receivables));
        gauge!("arrears_overdue_amount", &l).set(f(c.overdue));
        gauge!("arrears_expected_cash_7d_amount", &l).set(f(c.expected_cash_7d));
        for (bucket, amount) in &c.aging {
            let mut lb = l.to_vec();
            lb.push(("bucket", bucket.clone()));
            gauge!("arrears_aging_amount", &lb).set(f(*amount));
        }
        for (method, v) in [
            ("standard", c.dso_standard),
            ("count_back", c.dso_count_back),
            ("best_possible", c.dso_best_possible),
        ] {
            let mut lm = l.to_vec();
            lm.push(("method", method.to_string()));
            gauge!("arrears_dso_days", &lm).set(v.map(f).unwrap_or(f64::NAN));
        }
        gauge!("arrears_average_days_delinquent_days", &l)
            .set(c.average_days_delinquent.map(f).unwrap_or(f64::NAN));
        gauge!("arrears_cei_ratio", &l).set(c.cei.map(f).unwrap_or(f64::NAN));
        gauge!("arrears_promise_kept_ratio", &l)
            .set(c.promise_kept_rate.map(f).unwrap_or(f64::NAN));
        for (status, n) in [
            ("kept", c.promises_kept),
            ("partial", c.promises_partial),
            ("broken", c.promises_broken),
        ] {
            let mut ls = l.to_vec();
            ls.push(("status", status.to_string()));
            gauge!("arrears_promises", &ls).set(n as f64);
        }
        for (prio, n) in &c.open_cases_by_priority {
            let lp = [("company", c.company.clone()), ("priority", prio.clone())];
            gauge!("arrears_open_cases", &lp).set(*n as f64);
        }
    }
    for c in &k.collectors {
        let l = [("collector", c.collector.clone())];
        gauge!("arrears_worklist_entries", &l).set(c.worklist_entries as f64);
        gauge!("arrears_worklist_amount", &l).set(f(c.worklist_amount));
        gauge!("arrears_activities_completed", &l).set(c.activities_completed as f64);
        gauge!("arrears_promises_taken", &l).set(c.promises_taken as f64);
    }
}
