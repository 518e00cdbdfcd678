//! Every metric the daemon exports, with its type, unit and `# HELP` text.
//!
//! One table rather than descriptions next to each `counter!`/`gauge!` call: a metric
//! is recorded from several places (the runner, the API, the connectors), and an
//! operator reading `/metrics` needs the same text whichever of them ran first.
//! `tests/dashboards.rs` checks that every metric the source records is listed here.
//!
//! The Prometheus text format has no unit line, and the exporter is not asked to
//! append units to names (that would rename every series), so each HELP text says
//! its unit in words as well.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: Kind,
    /// `None` where the `metrics` crate has no such unit (money, days, ratios, flags):
    /// the HELP text carries it.
    pub unit: Option<Unit>,
    pub help: &'static str,
}

const fn def(name: &'static str, kind: Kind, unit: Option<Unit>, help: &'static str) -> MetricDef {
    MetricDef {
        name,
        kind,
        unit,
        help,
    }
}

use Kind::{Counter, Gauge, Histogram};

pub const CATALOG: &[MetricDef] = &[
    // Collections analysis, recomputed with a KPI pass at most once per
    // serve.analysis_interval (docs/REPORTS.md).
    def(
        "arrears_forecast_amount",
        Gauge,
        None,
        "Cash expected to come in over the next `horizon` (7d, 30d, 90d) per company, as an amount in the currency of the `currency` label (the forecast report).",
    ),
    def(
        "arrears_collected_7d_amount",
        Gauge,
        None,
        "Cash that came in over the last 7 days per company (open amounts lowered by payments or the ERP), as an amount in the currency of the `currency` label.",
    ),
    def(
        "arrears_conversion_ratio",
        Gauge,
        None,
        "Of the cases opened in the last 30 days, the share collected in full so far (0..1).",
    ),
    def(
        "arrears_first_payment_days",
        Gauge,
        None,
        "Average days from opening to first payment of the cases opened in the last 30 days that had one, per company and currency. In days, not seconds: a finance KPI quoted in days. NaN when no such case was paid yet.",
    ),
    def(
        "arrears_promise_received_ratio",
        Gauge,
        None,
        "Of the amounts promised in the last 90 days, the share the judged promises brought in (0..1).",
    ),
    // Finance KPIs, recomputed after runs (at most once per serve.kpi_interval).
    def(
        "arrears_receivables_amount",
        Gauge,
        None,
        "Open receivables per company, as an amount in the currency of the `currency` label.",
    ),
    def(
        "arrears_overdue_amount",
        Gauge,
        None,
        "Open receivables past their due date per company, as an amount in the currency of the `currency` label.",
    ),
    def(
        "arrears_aging_amount",
        Gauge,
        None,
        "Open receivables per company by days overdue (`bucket`), as an amount in the currency of the `currency` label.",
    ),
    def(
        "arrears_expected_cash_7d_amount",
        Gauge,
        None,
        "Cash expected in the next 7 days (items due and promises to pay) per company, as an amount in the currency of the `currency` label.",
    ),
    def(
        "arrears_dso_days",
        Gauge,
        None,
        "Days sales outstanding per company and currency, by `method` (standard, count_back, best_possible). In days, not seconds: DSO is a finance KPI quoted in days by convention. NaN when undefined (no sales).",
    ),
    def(
        "arrears_average_days_delinquent_days",
        Gauge,
        None,
        "Average days delinquent (standard DSO minus best-possible DSO) per company and currency. In days, not seconds: a finance KPI quoted in days by convention. NaN when undefined.",
    ),
    def(
        "arrears_cei_ratio",
        Gauge,
        None,
        "Collection effectiveness index per company and currency, as a ratio from 0 to 1 (1 = everything collectable was collected). NaN when undefined.",
    ),
    def(
        "arrears_promise_kept_ratio",
        Gauge,
        None,
        "Share of judged promises to pay that were kept, per company and currency, as a ratio from 0 to 1. NaN when no promise has been judged.",
    ),
    def(
        "arrears_promises",
        Gauge,
        Some(Unit::Count),
        "Judged promises to pay per company and currency by `status` (kept, partial, broken), as a count.",
    ),
    def(
        "arrears_open_cases",
        Gauge,
        Some(Unit::Count),
        "Open collection cases per company by `priority` (high, medium, low), as a count.",
    ),
    def(
        "arrears_worklist_entries",
        Gauge,
        Some(Unit::Count),
        "Entries on each collector's worklist (`unassigned` for entries without one), as a count.",
    ),
    def(
        "arrears_worklist_amount",
        Gauge,
        None,
        "Open amount on each collector's worklist, as an amount in the base currency of the rules.",
    ),
    def(
        "arrears_activities_completed",
        Gauge,
        Some(Unit::Count),
        "Case activities each collector has completed, all time, as a count.",
    ),
    def(
        "arrears_promises_taken",
        Gauge,
        Some(Unit::Count),
        "Completed activities in which a collector recorded a promise to pay, all time, as a count.",
    ),
    // Portfolio runs and rules.
    def(
        "arrears_runs_total",
        Counter,
        Some(Unit::Count),
        "Portfolio runs finished since the daemon started, by `mode` (full, incremental) and `result` (ok, error), as a count.",
    ),
    def(
        "arrears_run_duration_seconds",
        Histogram,
        Some(Unit::Seconds),
        "Duration of successful portfolio runs by `mode`, in seconds.",
    ),
    def(
        "arrears_last_run_timestamp_seconds",
        Gauge,
        Some(Unit::Seconds),
        "When the last successful portfolio run finished, as Unix time in seconds. Absent until the first run after start-up has finished.",
    ),
    def(
        "arrears_run_customers_skipped",
        Gauge,
        Some(Unit::Count),
        "Customers the last run could not evaluate (no exchange rate, amounts out of range); they keep their last result. A count.",
    ),
    def(
        "arrears_rule_reloads_total",
        Counter,
        Some(Unit::Count),
        "Reloads of the rules folder by `result` (success, failure), as a count.",
    ),
    def(
        "arrears_rules_valid",
        Gauge,
        None,
        "1 when the last reload of the rules folder succeeded, 0 when it failed and the last good rule set is still in use.",
    ),
    def(
        "arrears_script_errors_total",
        Counter,
        Some(Unit::Count),
        "Rhai script evaluations that ended in an error, as a count.",
    ),
    def(
        "arrears_script_limit_hits_total",
        Counter,
        Some(Unit::Count),
        "Rhai script evaluations stopped by their operation or time limit, as a count.",
    ),
    // The API.
    def(
        "arrears_grpc_requests_total",
        Counter,
        Some(Unit::Count),
        "gRPC calls answered by `method` and status `code`, as a count.",
    ),
    def(
        "arrears_grpc_request_duration_seconds",
        Histogram,
        Some(Unit::Seconds),
        "Time to answer a gRPC call by `method` and status `code`, in seconds (for a stream: until it was set up).",
    ),
    def(
        "arrears_worklist_watchers",
        Gauge,
        Some(Unit::Count),
        "Open WatchWorklist streams, as a count.",
    ),
    def(
        "arrears_limit_refusals_total",
        Counter,
        Some(Unit::Count),
        "Calls refused with RESOURCE_EXHAUSTED by a serve.limits setting (`limit`: watch_streams, watch_streams_per_principal, uploads), as a count.",
    ),
    // The store and the audit log.
    def(
        "arrears_store_size_bytes",
        Gauge,
        Some(Unit::Bytes),
        "Size of the SQLite database and its write-ahead log, in bytes.",
    ),
    def(
        "arrears_audit_head_sequence",
        Gauge,
        None,
        "Sequence number of the newest record in the audit log, read from the database; it only ever grows.",
    ),
    // Connectors.
    def(
        "arrears_connector_syncs_total",
        Counter,
        Some(Unit::Count),
        "Connector syncs by `connector` and `result` (success, failure), as a count.",
    ),
    def(
        "arrears_connector_pulled_total",
        Counter,
        Some(Unit::Count),
        "Records (items, payments, statement lines) a connector brought in, as a count.",
    ),
    def(
        "arrears_connector_errors_total",
        Counter,
        Some(Unit::Count),
        "Files a connector refused (moved to failed/) and syncs that failed, as a count.",
    ),
    def(
        "arrears_connector_restarts_total",
        Counter,
        Some(Unit::Count),
        "Restarts of a connector's plugin process (crash, hang, failed health check), as a count.",
    ),
    def(
        "arrears_connector_last_success_timestamp_seconds",
        Gauge,
        Some(Unit::Seconds),
        "When a connector last synced without error, as Unix time in seconds.",
    ),
    // Correspondence.
    def(
        "arrears_messages_total",
        Counter,
        Some(Unit::Count),
        "Outbox delivery outcomes by `result` (sent, deferred, retried, fell_back, failed, held, delivery_off, in_doubt), as a count of messages.",
    ),
    def(
        "arrears_leader",
        Gauge,
        None,
        "1 while this replica leads (runs portfolios, connectors and the outbox), 0 while it follows; only daemons sharing a PostgreSQL database export it.",
    ),
    def(
        "arrears_messages_waiting",
        Gauge,
        Some(Unit::Count),
        "Messages in the outbox waiting to be delivered, as a count.",
    ),
    def(
        "arrears_call_tasks_total",
        Counter,
        Some(Unit::Count),
        "Call tasks the outbox put on cases instead of sending a message, as a count.",
    ),
];

/// Label values of counters that alerts take `increase()` of. Prometheus sees no
/// increase in a series whose first sample is already 1, so these start at 0 when the
/// daemon starts, not at their first event.
const ZERO_SERIES: &[(&str, &[(&str, &str)])] = &[
    (
        "arrears_limit_refusals_total",
        &[("limit", "watch_streams")],
    ),
    (
        "arrears_limit_refusals_total",
        &[("limit", "watch_streams_per_principal")],
    ),
    ("arrears_limit_refusals_total", &[("limit", "uploads")]),
    (
        "arrears_runs_total",
        &[("mode", "full"), ("result", "error")],
    ),
    (
        "arrears_runs_total",
        &[("mode", "incremental"), ("result", "error")],
    ),
    ("arrears_messages_total", &[("result", "held")]),
    ("arrears_messages_total", &[("result", "failed")]),
    ("arrears_messages_total", &[("result", "in_doubt")]),
    ("arrears_script_errors_total", &[]),
    ("arrears_call_tasks_total", &[]),
    ("arrears_script_limit_hits_total", &[]),
];

/// Registers every description with the installed recorder, and the zero series.
pub fn register() {
    for m in CATALOG {
        match (m.kind, m.unit) {
            (Kind::Counter, Some(u)) => describe_counter!(m.name, u, m.help),
            (Kind::Counter, None) => describe_counter!(m.name, m.help),
            (Kind::Gauge, Some(u)) => describe_gauge!(m.name, u, m.help),
            (Kind::Gauge, None) => describe_gauge!(m.name, m.help),
            (Kind::Histogram, Some(u)) => describe_histogram!(m.name, u, m.help),
            (Kind::Histogram, None) => describe_histogram!(m.name, m.help),
        }
    }
    for (name, labels) in ZERO_SERIES {
        let labels: Vec<(&'static str, &'static str)> = labels.to_vec();
        metrics::counter!(*name, &labels).increment(0);
    }
}

/// The entry for `name`.
pub fn get(name: &str) -> Option<&'static MetricDef> {
    CATALOG.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_follow_the_conventions() {
        let mut seen = HashSet::new();
        for m in CATALOG {
            assert!(seen.insert(m.name), "{} listed twice", m.name);
            assert!(m.name.starts_with("arrears_"), "{}", m.name);
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters, and only counters, end in _total",
                m.name
            );
            if m.unit == Some(Unit::Seconds) {
                assert!(m.name.ends_with("_seconds"), "{}", m.name);
            }
            assert!(m.help.ends_with('.'), "{}: HELP is a sentence", m.name);
        }
        for (name, _) in ZERO_SERIES {
            assert!(get(name).is_some(), "{name} is not in the catalogue");
        }
    }

    #[test]
    fn the_day_kpis_say_they_are_in_days() {
        for name in ["arrears_dso_days", "arrears_average_days_delinquent_days"] {
            assert!(get(name).unwrap().help.contains("In days"), "{name}");
        }
    }
}
