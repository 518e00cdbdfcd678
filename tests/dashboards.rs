//! Guards `dashboards/`: every Grafana dashboard and every Prometheus alert rule
//! parses, and every metric they query is one the daemon exports on `/metrics`.
//!
//! A renamed or misspelt metric does not break a dashboard loudly: the panel just
//! shows "No data" and the alert never fires. This test turns that into a failure
//! that names the metric and every panel or rule that uses it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

/// Series suffixes a Prometheus histogram (or summary, without `_bucket`) is
/// exported under; a query names these, never the bare histogram name.
const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];

/// Grafana's built-in variables that may appear in a query.
const GRAFANA_BUILTINS: [&str; 5] = [
    "__rate_interval",
    "__interval",
    "__range",
    "__interval_ms",
    "__range_s",
];

fn dashboards_dir() -> PathBuf {
    arrears_test_support::repo_root().join("dashboards")
}

fn read(name: &str) -> String {
    let path = dashboards_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(name: &str) -> Yaml {
    serde_yaml::from_str(&read(name)).unwrap_or_else(|e| panic!("dashboards/{name}: {e}"))
}

/// The dashboard files (`dashboards/*.json`), sorted.
fn dashboard_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dashboards_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

fn dashboard(name: &str) -> Json {
    serde_json::from_str(&read(name)).unwrap_or_else(|e| panic!("dashboards/{name}: {e}"))
}

/// One query found in `dashboards/`: where it is and its PromQL.
struct Query {
    location: String,
    expr: String,
}

/// Every panel of a dashboard, including those nested in (collapsed) rows.
fn panels(dashboard: &Json) -> Vec<&Json> {
    fn walk<'a>(list: &'a Json, out: &mut Vec<&'a Json>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            if let Some(nested) = p.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn is_row(panel: &Json) -> bool {
    panel["type"] == "row"
}

fn panel_title(panel: &Json) -> String {
    format!(
        "panel {} {:?}",
        panel["id"],
        panel["title"].as_str().unwrap_or("")
    )
}

/// The template variables a dashboard defines, by name.
fn variables(dashboard: &Json) -> BTreeMap<String, &Json> {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| (v["name"].as_str().unwrap_or("").to_string(), v))
        .collect()
}

/// The query of a `query` template variable (a string, or `{ "query": … }` in
/// Grafana 10+).
fn variable_query(var: &Json) -> Option<&str> {
    if var["type"] != "query" {
        return None;
    }
    var["query"]
        .as_str()
        .or_else(|| var["query"]["query"].as_str())
        .or_else(|| var["definition"].as_str())
}

/// Every PromQL query in `dashboards/`: panel targets and template variables of
/// each dashboard, alert (and recording) rules, and the input series of the
/// promtool rule tests.
fn queries() -> Vec<Query> {
    let mut out = Vec::new();
    for file in dashboard_files() {
        let d = dashboard(&file);
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push(Query {
                        location: format!(
                            "{file} › {} › target {}",
                            panel_title(p),
                            t["refId"].as_str().unwrap_or("?")
                        ),
                        expr: expr.to_string(),
                    });
                }
            }
        }
        for (name, var) in variables(&d) {
            if let Some(q) = variable_query(var) {
                out.push(Query {
                    location: format!("{file} › variable ${name}"),
                    expr: q.to_string(),
                });
            }
        }
    }
    for rule in alert_rules(&yaml("alerts.yaml")) {
        out.push(Query {
            location: format!("alerts.yaml › {}", rule_name(rule)),
            expr: rule["expr"].as_str().unwrap_or("").to_string(),
        });
    }
    let tests = yaml("alerts.test.yaml");
    for test in tests["tests"].as_sequence().into_iter().flatten() {
        for series in test["input_series"].as_sequence().into_iter().flatten() {
            out.push(Query {
                location: format!(
                    "alerts.test.yaml › test {:?}",
                    test["name"].as_str().unwrap_or("")
                ),
                expr: series["series"].as_str().unwrap_or("").to_string(),
            });
        }
    }
    out
}

fn alert_rules(file: &Yaml) -> Vec<&Yaml> {
    file["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_sequence().into_iter().flatten())
        .collect()
}

fn rule_name(rule: &Yaml) -> &str {
    rule["alert"]
        .as_str()
        .or_else(|| rule["record"].as_str())
        .unwrap_or("<unnamed rule>")
}

/// Identifiers and `$variables` of a PromQL expression, outside string literals
/// and comments, in order.
fn tokens(expr: &str) -> (Vec<String>, Vec<String>) {
    let chars: Vec<char> = expr.chars().collect();
    let (mut idents, mut vars) = (Vec::new(), Vec::new());
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            // Skip the literal, but collect the Grafana `$variables` in it.
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' && c != '`' {
                    i += 2;
                } else if chars[i] == '$' {
                    i += 1;
                    if chars.get(i) == Some(&'{') {
                        i += 1;
                    }
                    let start = i;
                    while i < chars.len() && is_part(chars[i]) {
                        i += 1;
                    }
                    vars.push(chars[start..i].iter().collect());
                } else {
                    i += 1;
                }
            }
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '$' {
            i += 1;
            let braced = chars.get(i) == Some(&'{');
            if braced {
                i += 1;
            }
            let start = i;
            while i < chars.len() && is_part(chars[i]) {
                i += 1;
            }
            vars.push(chars[start..i].iter().collect());
        } else if is_start(c) {
            let start = i;
            while i < chars.len() && is_part(chars[i]) {
                i += 1;
            }
            idents.push(chars[start..i].iter().collect());
        } else if c.is_ascii_digit() {
            // A number or a duration (`5m`, `1e3`): not an identifier.
            while i < chars.len() && (is_part(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    (idents, vars)
}

/// The Arrears metric names (`arrears_*`) an expression uses, as written.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = tokens(expr).0;
    names.retain(|n| n.starts_with("arrears_"));
    names.dedup();
    names
}

/// The metric a series name belongs to: histogram series suffixes removed.
fn base_name(series: &str) -> &str {
    HISTOGRAM_SUFFIXES
        .iter()
        .find_map(|s| series.strip_suffix(s))
        .unwrap_or(series)
}

/// Every use of an Arrears metric in `dashboards/`: (series name as written,
/// where).
fn uses() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for q in queries() {
        for name in metric_names(&q.expr) {
            out.push((name, q.location.clone()));
        }
    }
    out
}

/// Every metric `dashboards/` uses (`_bucket`/`_sum`/`_count` mapped back to
/// the histogram's name) → where it is used.
fn referenced_metrics() -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, location) in uses() {
        let base = base_name(&name);
        let location = if base == name {
            location
        } else {
            format!("{location} (as {name})")
        };
        let list = out.entry(base.to_string()).or_default();
        if !list.contains(&location) {
            list.push(location);
        }
    }
    out
}

/// What a Prometheus text exposition declares: `# TYPE` kinds and the names of
/// the samples present.
#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    samples: BTreeSet<String>,
}

fn parse_exposition(text: &str) -> Exposition {
    let mut out = Exposition::default();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let bad = |why: &str| -> ! { panic!("exposition line {}: {why}: {raw:?}", n + 1) };
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            if words.next() == Some("TYPE") {
                match (words.next(), words.next(), words.next()) {
                    (Some(name), Some(kind), None) => {
                        out.types.insert(name.to_string(), kind.to_string());
                    }
                    _ => bad("expected `# TYPE name kind`"),
                }
            }
            continue;
        }
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .unwrap_or_else(|| bad("sample without a value"));
        let (name, mut rest) = line.split_at(name_end);
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_:".contains(c))
        {
            bad("invalid metric name");
        }
        if rest.starts_with('{') {
            // Skip the label set; label values may hold `}` and spaces.
            let mut in_string = false;
            let mut escaped = false;
            let mut end = None;
            for (i, c) in rest.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' if in_string => escaped = true,
                    '"' => in_string = !in_string,
                    '}' if !in_string => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.unwrap_or_else(|| bad("unterminated label set"));
            rest = &rest[end + 1..];
        }
        let mut fields = rest.split_whitespace();
        let value = fields
            .next()
            .unwrap_or_else(|| bad("sample without a value"));
        let numeric =
            matches!(value, "NaN" | "+Inf" | "-Inf" | "Inf") || value.parse::<f64>().is_ok();
        if !numeric || fields.nth(1).is_some() {
            bad("expected `name{labels} value [timestamp]`");
        }
        out.samples.insert(name.to_string());
    }
    out
}

/// Asserts that every metric `dashboards/` uses is in `exposition` (a scrape
/// of `/metrics`), and that histogram series are queried as histograms. Panics
/// with every missing name and where it is used.
fn check_against(exposition: &str) {
    let exp = parse_exposition(exposition);
    assert!(
        exp.samples.iter().any(|s| s.starts_with("arrears_")),
        "the exposition has no arrears_* sample at all:\n{exposition}"
    );
    let kind = |name: &str| exp.types.get(name).map(String::as_str);
    let exported = |name: &str| {
        exp.samples.contains(name) && !matches!(kind(name), Some("histogram" | "summary"))
    };
    let mut problems: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (written, location) in uses() {
        let base = base_name(&written);
        let suffix = &written[base.len()..];
        let problem = match (suffix, kind(base)) {
            ("", Some(k @ ("histogram" | "summary"))) => Some(format!(
                "{base} is a {k}: query {base}_bucket, _sum or _count"
            )),
            ("", _) if exported(base) || kind(base).is_some() => None,
            ("_bucket", Some("summary")) => Some(format!(
                "{base} is exported as a summary, not a histogram: there is no {written} \
                 (configure buckets for it in the Prometheus exporter)"
            )),
            (_, Some("histogram")) | ("_sum" | "_count", Some("summary")) => None,
            _ if exported(&written) || kind(&written).is_some() => None,
            _ => Some(format!("{written} is not exported")),
        };
        if let Some(p) = problem {
            let list = problems.entry(p).or_default();
            if !list.contains(&location) {
                list.push(location);
            }
        }
    }
    if !problems.is_empty() {
        let mut msg = String::from(
            "dashboards/ uses metrics the daemon does not export as such \
             (renamed or misspelt?):\n",
        );
        for (problem, uses) in &problems {
            let _ = writeln!(msg, "  {problem}; used in:");
            for u in uses {
                let _ = writeln!(msg, "    - {u}");
            }
        }
        let exported: BTreeSet<&str> = exp
            .samples
            .iter()
            .map(|s| base_name(s))
            .chain(exp.types.keys().map(String::as_str))
            .filter(|n| n.starts_with("arrears_"))
            .collect();
        let _ = writeln!(
            msg,
            "exported arrears_* metrics: {}",
            exported.into_iter().collect::<Vec<_>>().join(", ")
        );
        panic!("{msg}");
    }
}

// ------------------------------------------------------------------ part (a)

#[test]
fn dashboards_and_alerts_parse_and_every_query_uses_a_metric() {
    let files = dashboard_files();
    for expected in [
        "collections.json",
        "collections-analysis.json",
        "operations.json",
    ] {
        assert!(
            files.iter().any(|f| f == expected),
            "dashboards/{expected} missing"
        );
    }
    let mut errors = Vec::new();
    let mut uids = BTreeSet::new();
    for file in &files {
        let d = dashboard(file);
        let uid = d["uid"].as_str().unwrap_or("");
        if uid.is_empty() || !uids.insert(uid.to_string()) {
            errors.push(format!("{file}: missing or duplicate uid {uid:?}"));
        }
        if d["schemaVersion"].as_u64().unwrap_or(0) < 39 {
            errors.push(format!("{file}: schemaVersion below 39"));
        }
        let vars = variables(&d);
        match vars.get("datasource") {
            Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
            _ => errors.push(format!(
                "{file}: no `datasource` variable of type datasource (prometheus)"
            )),
        }
        let mut ids = BTreeSet::new();
        let all = panels(&d);
        if all.iter().filter(|p| !is_row(p)).count() == 0 {
            errors.push(format!("{file}: no panels"));
        }
        for p in all {
            let at = format!("{file} › {}", panel_title(p));
            if !p["id"].is_u64() || !ids.insert(p["id"].as_u64()) {
                errors.push(format!("{at}: missing or duplicate panel id"));
            }
            if p["gridPos"]["w"].as_u64().unwrap_or(0) == 0 {
                errors.push(format!("{at}: no gridPos"));
            }
            if is_row(p) {
                continue;
            }
            if p["datasource"]["uid"] != "${datasource}" {
                errors.push(format!("{at}: data source is not ${{datasource}}"));
            }
            let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            if targets.is_empty() {
                errors.push(format!("{at}: no targets"));
            }
            let mut refs = BTreeSet::new();
            for t in targets {
                let expr = t["expr"].as_str().unwrap_or("");
                let ref_id = t["refId"].as_str().unwrap_or("");
                if ref_id.is_empty() || !refs.insert(ref_id) {
                    errors.push(format!("{at}: missing or duplicate refId {ref_id:?}"));
                }
                if metric_names(expr).is_empty() {
                    errors.push(format!(
                        "{at} › target {ref_id}: no arrears_* metric in {expr:?}"
                    ));
                }
                for var in tokens(expr).1 {
                    if !vars.contains_key(&var) && !GRAFANA_BUILTINS.contains(&var.as_str()) {
                        errors.push(format!("{at} › target {ref_id}: undefined variable ${var}"));
                    }
                }
            }
        }
    }
    let collections = variables(&dashboard("collections.json"))
        .into_iter()
        .filter_map(|(name, v)| variable_query(v).map(|q| (name, q.to_string())))
        .collect::<BTreeMap<_, _>>();
    for var in ["company", "currency"] {
        match collections.get(var) {
            Some(q) if q.starts_with("label_values(") => {}
            _ => errors.push(format!("collections.json: no label_values variable ${var}")),
        }
    }

    let alerts = yaml("alerts.yaml");
    let rules = alert_rules(&alerts);
    if rules.is_empty() {
        errors.push("alerts.yaml: no rules".into());
    }
    let mut names = BTreeSet::new();
    for rule in rules {
        let name = rule_name(rule);
        if !names.insert(name) {
            errors.push(format!("alerts.yaml › {name}: duplicate rule"));
        }
        if metric_names(rule["expr"].as_str().unwrap_or("")).is_empty() {
            errors.push(format!("alerts.yaml › {name}: no arrears_* metric in expr"));
        }
        if rule["alert"].is_string() {
            let severity = rule["labels"]["severity"].as_str().unwrap_or("");
            if !["critical", "warning", "info"].contains(&severity) {
                errors.push(format!("alerts.yaml › {name}: severity {severity:?}"));
            }
            for a in ["summary", "description"] {
                if rule["annotations"][a]
                    .as_str()
                    .unwrap_or("")
                    .trim()
                    .is_empty()
                {
                    errors.push(format!("alerts.yaml › {name}: no {a} annotation"));
                }
            }
        }
    }
    assert!(
        errors.is_empty(),
        "dashboards/ problems:\n  {}",
        errors.join("\n  ")
    );
    assert!(!referenced_metrics().is_empty());
}

#[test]
fn provisioning_files_point_at_prometheus_and_the_dashboards() {
    let ds = yaml("provisioning/datasources.yaml");
    let prometheus: Vec<&Yaml> = ds["datasources"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter(|d| d["type"].as_str() == Some("prometheus"))
        .collect();
    assert_eq!(prometheus.len(), 1, "one prometheus data source");
    assert_eq!(prometheus[0]["url"].as_str(), Some("http://localhost:9090"));

    let dash = yaml("provisioning/dashboards.yaml");
    let providers = dash["providers"].as_sequence().expect("providers");
    assert!(
        providers.iter().any(|p| p["type"].as_str() == Some("file")
            && p["options"]["path"].as_str().is_some_and(|s| !s.is_empty())),
        "a file provider with options.path"
    );
}

#[test]
fn metric_names_skip_strings_variables_and_map_histogram_series() {
    let expr = r#"histogram_quantile(0.95, sum by (le) (rate(arrears_run_duration_seconds_bucket{job="arrears_x",instance=~"$instance"}[$__rate_interval]))) / on() arrears_runs_total offset 7d # arrears_comment"#;
    assert_eq!(
        metric_names(expr),
        ["arrears_run_duration_seconds_bucket", "arrears_runs_total"]
    );
    assert_eq!(tokens(expr).1, ["instance", "__rate_interval"]);
    assert_eq!(
        base_name("arrears_run_duration_seconds_count"),
        "arrears_run_duration_seconds"
    );
    assert_eq!(base_name("arrears_runs_total"), "arrears_runs_total");
}

// ------------------------------------------------------------------ part (b)

/// A hand-written exposition with one sample of each exported metric: the fixture the
/// checker's own tests break on purpose. The real check scrapes a running daemon.
const DOCUMENTED_EXPOSITION: &str = r#"
# TYPE arrears_receivables_amount gauge
arrears_receivables_amount{company="ACME",currency="EUR"} 1250000.5
# TYPE arrears_overdue_amount gauge
arrears_overdue_amount{company="ACME",currency="EUR"} 310000
# TYPE arrears_aging_amount gauge
arrears_aging_amount{company="ACME",currency="EUR",bucket="current"} 940000.5
arrears_aging_amount{company="ACME",currency="EUR",bucket="over_180"} 12000
# TYPE arrears_dso_days gauge
arrears_dso_days{company="ACME",currency="EUR",method="standard"} 48.2
arrears_dso_days{company="ACME",currency="EUR",method="count_back"} 45.9
arrears_dso_days{company="ACME",currency="EUR",method="best_possible"} 31
# TYPE arrears_average_days_delinquent_days gauge
arrears_average_days_delinquent_days{company="ACME",currency="EUR"} 17.2
# TYPE arrears_cei_ratio gauge
arrears_cei_ratio{company="ACME",currency="EUR"} 0.82
# TYPE arrears_open_cases gauge
arrears_open_cases{company="ACME",priority="high"} 120
arrears_open_cases{company="ACME",priority="medium"} 340
arrears_open_cases{company="ACME",priority="low"} 2210
# TYPE arrears_promise_kept_ratio gauge
arrears_promise_kept_ratio{company="ACME",currency="EUR"} 0.71
# TYPE arrears_promises gauge
arrears_promises{company="ACME",currency="EUR",status="kept"} 71
arrears_promises{company="ACME",currency="EUR",status="partial"} 9
arrears_promises{company="ACME",currency="EUR",status="broken"} 20
# TYPE arrears_expected_cash_7d_amount gauge
arrears_expected_cash_7d_amount{company="ACME",currency="EUR"} 88000
# TYPE arrears_forecast_amount gauge
arrears_forecast_amount{company="ACME",currency="EUR",horizon="7d"} 91000
arrears_forecast_amount{company="ACME",currency="EUR",horizon="90d"} 1100000
# TYPE arrears_collected_7d_amount gauge
arrears_collected_7d_amount{company="ACME",currency="EUR"} 86000
# TYPE arrears_conversion_ratio gauge
arrears_conversion_ratio{company="ACME",currency="EUR"} 0.41
# TYPE arrears_first_payment_days gauge
arrears_first_payment_days{company="ACME",currency="EUR"} 12.5
# TYPE arrears_promise_received_ratio gauge
arrears_promise_received_ratio{company="ACME",currency="EUR"} NaN
# TYPE arrears_worklist_entries gauge
arrears_worklist_entries{collector="chen"} 42
arrears_worklist_entries{collector="unassigned"} 7
# TYPE arrears_worklist_amount gauge
arrears_worklist_amount{collector="chen"} 151000.25
# TYPE arrears_activities_completed gauge
arrears_activities_completed{collector="chen"} 913
# TYPE arrears_promises_taken gauge
arrears_promises_taken{collector="chen"} 64
# TYPE arrears_run_duration_seconds histogram
arrears_run_duration_seconds_bucket{mode="full",le="1"} 0
arrears_run_duration_seconds_bucket{mode="full",le="10"} 3
arrears_run_duration_seconds_bucket{mode="full",le="+Inf"} 3
arrears_run_duration_seconds_sum{mode="full"} 21.9
arrears_run_duration_seconds_count{mode="full"} 3
# TYPE arrears_runs_total counter
arrears_runs_total{mode="full",result="ok"} 3
arrears_runs_total{mode="incremental",result="error"} 1
# TYPE arrears_last_run_timestamp_seconds gauge
arrears_last_run_timestamp_seconds 1795392000
# TYPE arrears_rule_reloads_total counter
arrears_rule_reloads_total{result="success"} 2
arrears_rule_reloads_total{result="failure"} 1
# TYPE arrears_rules_valid gauge
arrears_rules_valid 1
# TYPE arrears_script_errors_total counter
arrears_script_errors_total 0
# TYPE arrears_script_limit_hits_total counter
arrears_script_limit_hits_total 0
# TYPE arrears_grpc_requests_total counter
arrears_grpc_requests_total{method="Worklists/GetWorklist",code="OK"} 120
arrears_grpc_requests_total{method="Cases/GetCase",code="NOT_FOUND"} 2
# TYPE arrears_grpc_request_duration_seconds histogram
arrears_grpc_request_duration_seconds_bucket{method="Worklists/GetWorklist",code="OK",le="0.005"} 100
arrears_grpc_request_duration_seconds_bucket{method="Worklists/GetWorklist",code="OK",le="+Inf"} 120
arrears_grpc_request_duration_seconds_sum{method="Worklists/GetWorklist",code="OK"} 0.61
arrears_grpc_request_duration_seconds_count{method="Worklists/GetWorklist",code="OK"} 120
# TYPE arrears_store_size_bytes gauge
arrears_store_size_bytes 359661568
# TYPE arrears_worklist_watchers gauge
arrears_worklist_watchers 3
"#;

/// A daemon on demo data after a run, a reload, a watch and a few calls: every
/// metric family has at least one series by then.
async fn scrape_live_daemon() -> String {
    use arrears::server::pb;
    use common::*;
    let dir = Daemon::prepare();
    arrears(
        dir.path(),
        &[
            "demo",
            "--customers",
            "60",
            "--items",
            "600",
            "--as-of",
            AS_OF,
        ],
    );
    let d = Daemon::start(dir);
    let ch = d.channel().await;
    let mut admin = pb::admin_client::AdminClient::with_interceptor(ch.clone(), with_token(SUP));
    admin
        .trigger_run(pb::TriggerRunRequest::default())
        .await
        .unwrap();
    admin.reload_rules(pb::ReloadRulesRequest {}).await.unwrap();
    let mut wl =
        pb::worklists_client::WorklistsClient::with_interceptor(ch.clone(), with_token(SUP));
    wl.get_worklist(pb::GetWorklistRequest {
        scope: group("general"),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut stream = wl
        .watch_worklist(pb::WatchWorklistRequest {
            scope: group("general"),
            filter: None,
        })
        .await
        .unwrap()
        .into_inner();
    wait_for(&mut stream, |_| true).await;
    // The analysis gauges come with the first KPI pass after the run, on a read
    // connection of their own: wait for them rather than race them.
    let started = std::time::Instant::now();
    loop {
        let text = d.scrape();
        if text.contains("arrears_forecast_amount{")
            || started.elapsed() > std::time::Duration::from_secs(30)
        {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_referenced_metric_is_exported_by_a_running_daemon() {
    let text = scrape_live_daemon().await;
    check_metadata(&text);
    check_against(&text);
    // The forecast's horizons are cumulative: 90 days hold at least what 7 do.
    let forecast = |horizon: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with("arrears_forecast_amount{")
                    && l.contains("company=\"ACME_DE\"")
                    && l.contains(&format!("horizon=\"{horizon}\""))
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .next()
            .unwrap_or_else(|| panic!("no {horizon} forecast for ACME_DE"))
    };
    assert!(forecast("90d") >= forecast("30d") && forecast("30d") >= forecast("7d"));
    assert!(
        forecast("90d") > 0.0,
        "the open items are expected to come in"
    );
    // And the other way round: nothing exported is left off every dashboard and alert.
    let used = referenced_metrics();
    let exp = parse_exposition(&text);
    let unused: Vec<&String> = exp
        .types
        .keys()
        .filter(|m| m.starts_with("arrears_") && !used.contains_key(*m))
        .collect();
    assert!(
        unused.is_empty(),
        "exported but on no dashboard or alert: {unused:?}"
    );
}

// ------------------------------------------------------------- metadata, promtool

/// The metrics promtool's linter wants in seconds. DSO, days delinquent and days to
/// first payment are finance KPIs that everyone quotes in days, so they keep their
/// names and their HELP says so.
const DAY_KPIS: [&str; 3] = [
    "arrears_dso_days",
    "arrears_average_days_delinquent_days",
    "arrears_first_payment_days",
];

/// promtool, from PROMTOOL or the PATH. Missing is a failure, not a skip: without it
/// the alert rules and the exposition would go unchecked while the suite stays green.
fn promtool() -> PathBuf {
    if let Some(p) = std::env::var_os("PROMTOOL") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "promtool is not installed (or set PROMTOOL to it): these checks need it. \
                 On Debian/Ubuntu: apt-get install prometheus; .ci/run installs it"
            )
        })
}

/// Runs promtool in `dashboards/` with `stdin`; its exit status and everything it said.
fn run_promtool(args: &[&str], stdin: &str) -> (std::process::ExitStatus, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(promtool())
        .args(args)
        .current_dir(dashboards_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool: {e}"));
    // promtool may exit before reading all of it (a parse error): not our failure.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let o = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status, said)
}

/// Every metric family of a scrape has a HELP text from the catalogue, and promtool's
/// linter has nothing to say about it but the two day KPIs' unit.
fn check_metadata(exposition: &str) {
    let mut help: BTreeMap<&str, &str> = BTreeMap::new();
    let mut families = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help.insert(name, text.trim());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            families.insert(rest.split(' ').next().unwrap_or(""));
        }
    }
    let mut problems = Vec::new();
    for f in &families {
        match help.get(f) {
            None | Some(&"") => problems.push(format!("{f}: no HELP")),
            Some(text) => match arrears::server::metric_catalog::get(f) {
                None => problems.push(format!(
                    "{f}: not in crates/arrears-server/src/metric_catalog.rs"
                )),
                Some(m) if m.help != *text => {
                    problems.push(format!("{f}: HELP {text:?} is not the catalogue's"))
                }
                Some(_) => {}
            },
        }
    }
    for f in DAY_KPIS {
        if let Some(text) = help.get(f) {
            if !text.contains("In days") {
                problems.push(format!("{f}: HELP does not say the KPI is in days"));
            }
        }
    }
    let (status, said) = run_promtool(&["check", "metrics"], exposition);
    // 0: clean; 3: lint findings only (1 would be an exposition it cannot parse).
    if !matches!(status.code(), Some(0 | 3)) {
        problems.push(format!("promtool check metrics failed ({status}):\n{said}"));
    } else {
        for l in said.lines().filter(|l| !l.trim().is_empty()) {
            let day_kpi = DAY_KPIS
                .iter()
                .any(|f| l.starts_with(&format!("{f} ")) && l.contains("\"days\""));
            if !day_kpi {
                problems.push(format!("promtool check metrics: {l}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "/metrics metadata:\n  {}\n--- the exposition ---\n{exposition}",
        problems.join("\n  ")
    );
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    for args in [
        ["check", "rules", "alerts.yaml"],
        ["test", "rules", "alerts.test.yaml"],
    ] {
        let (status, said) = run_promtool(&args, "");
        assert!(
            status.success(),
            "promtool {} failed ({status}):\n{said}",
            args.join(" ")
        );
    }
}

#[test]
#[should_panic(expected = "no HELP")]
fn check_metadata_fails_on_a_family_without_help() {
    check_metadata(
        "# HELP arrears_rules_valid x\n# TYPE arrears_rules_valid gauge\narrears_rules_valid 1\n\
         # TYPE arrears_store_size_bytes gauge\narrears_store_size_bytes 1\n",
    );
}

#[test]
#[should_panic(expected = "promtool check metrics: arrears_runs_total")]
fn check_metadata_fails_on_what_promtool_lints() {
    let m = arrears::server::metric_catalog::get("arrears_runs_total").unwrap();
    // A counter typed as a gauge: promtool says a counter must end in _total the
    // other way round ("non-counter metrics should not have _total suffix").
    check_metadata(&format!(
        "# HELP arrears_runs_total {}\n# TYPE arrears_runs_total gauge\narrears_runs_total 1\n",
        m.help
    ));
}

/// Each alert in alerts.yaml: a promtool unit test where it fires and one where it
/// does not (a near miss), and a row in dashboards/README.md saying what to do.
#[test]
fn every_alert_has_unit_tests_and_a_readme_row() {
    let alerts = yaml("alerts.yaml");
    let names: BTreeSet<&str> = alert_rules(&alerts)
        .into_iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    let tests = yaml("alerts.test.yaml");
    let (mut fires, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for t in tests["tests"].as_sequence().into_iter().flatten() {
        for case in t["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = case["alertname"].as_str().unwrap_or("");
            let expected = case["exp_alerts"].as_sequence().map_or(0, Vec::len);
            if expected > 0 {
                fires.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    let readme = read("README.md");
    let mut problems = Vec::new();
    for n in &names {
        if !fires.contains(n) {
            problems.push(format!("{n}: no unit test where it fires"));
        }
        if !quiet.contains(n) {
            problems.push(format!("{n}: no unit test where it does not fire"));
        }
        if !readme.contains(&format!("| `{n}` |")) {
            problems.push(format!("{n}: no row in dashboards/README.md"));
        }
    }
    for n in fires.union(&quiet) {
        if !names.contains(n) {
            problems.push(format!("alerts.test.yaml tests {n}, which is no alert"));
        }
    }
    for row in readme.lines().filter(|l| l.starts_with("| `Arrears")) {
        let n = row
            .trim_start_matches("| `")
            .split('`')
            .next()
            .unwrap_or("");
        if !names.contains(n) {
            problems.push(format!(
                "dashboards/README.md documents {n}, which is no alert"
            ));
        }
    }
    assert!(problems.is_empty(), "alerts:\n  {}", problems.join("\n  "));
}

/// Every metric the daemon records (`counter!`, `gauge!`, `histogram!` and the KPI
/// exporter's `.set(`) is in the catalogue with that kind, and the catalogue lists
/// nothing the daemon does not record. A live scrape cannot show this: some series
/// appear only after a rare event (a plugin restart, a refused call).
#[test]
fn every_recorded_metric_is_in_the_catalogue() {
    use arrears::server::metric_catalog::{Kind, CATALOG};
    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    // The whole workspace records: the server, the connectors, the application.
    let src = arrears_test_support::repo_root();
    let mut files = Vec::new();
    rust_files(&src.join("crates"), &mut files);
    let callers = [
        ("counter!(", Kind::Counter),
        ("gauge!(", Kind::Gauge),
        ("histogram!(", Kind::Histogram),
        ("Matcher::Full(", Kind::Histogram),
        // The KPI exporter's `x.set("name", labels, value)`.
        (".set(", Kind::Gauge),
    ];
    let mut recorded: BTreeMap<String, (Kind, String)> = BTreeMap::new();
    let mut problems = Vec::new();
    for f in files.iter().filter(|f| !f.ends_with("metric_catalog.rs")) {
        let text = std::fs::read_to_string(f).unwrap();
        let at = f.strip_prefix(&src).unwrap().display().to_string();
        for (i, _) in text.match_indices("\"arrears_") {
            let before = text[..i].trim_end();
            let Some(&(_, kind)) = callers.iter().find(|(c, _)| before.ends_with(c)) else {
                continue;
            };
            let name: String = text[i + 1..].chars().take_while(|c| *c != '"').collect();
            if let Some((k, first)) = recorded.get(&name) {
                if *k != kind {
                    problems.push(format!("{name}: a {kind:?} in {at}, a {k:?} in {first}"));
                }
            } else {
                recorded.insert(name, (kind, at.clone()));
            }
        }
    }
    assert!(
        recorded.len() >= 30,
        "the scan found only {recorded:?}: has the recording code changed shape?"
    );
    for (name, (kind, at)) in &recorded {
        match CATALOG.iter().find(|m| m.name == name) {
            None => problems.push(format!(
                "{name} ({at}) is not in crates/arrears-server/src/metric_catalog.rs"
            )),
            Some(m) if m.kind != *kind => problems.push(format!(
                "{name}: a {kind:?} in {at}, a {:?} in the catalogue",
                m.kind
            )),
            Some(_) => {}
        }
    }
    for m in CATALOG {
        if !recorded.contains_key(m.name) {
            problems.push(format!(
                "{} is in the catalogue but recorded nowhere in the workspace",
                m.name
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "metric catalogue:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn dashboards_cover_every_documented_metric() {
    let used = referenced_metrics();
    let exp = parse_exposition(DOCUMENTED_EXPOSITION);
    let unused: Vec<&String> = exp
        .types
        .keys()
        .filter(|m| !used.contains_key(*m))
        .collect();
    assert!(
        unused.is_empty(),
        "exported but on no dashboard or alert: {unused:?}"
    );
}

/// The documented exposition with every line of `metric` (samples and
/// `# TYPE`) removed, or renamed to `replacement`.
fn without(metric: &str, replacement: Option<&str>) -> String {
    DOCUMENTED_EXPOSITION
        .lines()
        .filter_map(|l| {
            let name = l
                .trim_start_matches("# TYPE ")
                .split(['{', ' '])
                .next()
                .unwrap_or("");
            if base_name(name) != metric && name != metric {
                return Some(l.to_string());
            }
            replacement.map(|r| l.replacen(metric, r, 1))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
#[should_panic(expected = "arrears_cei_ratio is not exported")]
fn check_against_fails_on_a_missing_metric() {
    check_against(&without("arrears_cei_ratio", None));
}

#[test]
#[should_panic(expected = "arrears_dso_days is not exported")]
fn check_against_fails_on_a_misspelt_metric() {
    check_against(&without("arrears_dso_days", Some("arrears_dso_day")));
}

#[test]
#[should_panic(expected = "is exported as a summary, not a histogram")]
fn check_against_fails_when_a_histogram_is_exported_as_a_summary() {
    let summary = DOCUMENTED_EXPOSITION
        .replace(
            "# TYPE arrears_run_duration_seconds histogram",
            "# TYPE arrears_run_duration_seconds summary",
        )
        .lines()
        .filter(|l| !l.starts_with("arrears_run_duration_seconds_bucket"))
        .collect::<Vec<_>>()
        .join("\n");
    check_against(&summary);
}

#[test]
fn exposition_parser_reads_labels_with_braces_and_special_values() {
    let exp = parse_exposition(
        "# HELP x_total Things.\n# TYPE x_total counter\nx_total{a=\"}{ \\\"q\\\"\"} +Inf 1700000000000\ny NaN\n",
    );
    assert_eq!(
        exp.types.get("x_total").map(String::as_str),
        Some("counter")
    );
    assert_eq!(exp.samples.iter().collect::<Vec<_>>(), ["x_total", "y"]);
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A collector who leaves the rules must not keep their last worklist figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_who_leaves_drops_to_zero() {
    use common::*;
    let dir = Daemon::prepare();
    arrears(
        dir.path(),
        &[
            "demo",
            "--customers",
            "300",
            "--items",
            "3000",
            "--as-of",
            AS_OF,
        ],
    );
    let d = Daemon::start(dir);
    let hugo = "arrears_worklist_entries{collector=\"hugo\"}";
    let hana = "arrears_worklist_entries{collector=\"hana\"}";
    let until = |pred: &dyn Fn(&str) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let text = d.scrape();
            if pred(&text) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "metrics never got there:\n{text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    until(&|t| sample(t, hugo).is_some_and(|v| v > 0.0));
    // Hugo leaves; Hana takes his place in the same group.
    let groups = d.path("rules/groups.yaml");
    let text = std::fs::read_to_string(&groups).unwrap();
    assert!(text.contains("id: hugo"));
    std::fs::write(
        &groups,
        text.replace("hugo", "hana")
            .replace("Hugo Brennan", "Hana Sato"),
    )
    .unwrap();
    let after = until(&|t| sample(t, hana).is_some_and(|v| v > 0.0));
    assert_eq!(sample(&after, hugo), Some(0.0), "{after}");
}
