//! `arrears report NAME`: the collections reports (docs/REPORTS.md) as a table,
//! JSON or CSV, on the database or over `--remote`.

use std::process::ExitCode;

use anyhow::Result;
use arrears::app::access::Reach;
use arrears::app::reports::{self, Filter};
use arrears::server::pb;
use chrono::NaiveDate;
use clap::Args;

use super::local_user;
use crate::remote::{describe, Remote};
use crate::{today, Env};

#[derive(Args)]
pub struct ReportArgs {
    /// The report: worklist, contacts, conversion, open-items, promises, commission,
    /// forecast, forecast-backtest (docs/REPORTS.md).
    name: String,
    /// The period's first day [default: 29 days before --to].
    #[arg(long)]
    from: Option<NaiveDate>,
    /// The period's last day [default: today].
    #[arg(long)]
    to: Option<NaiveDate>,
    /// Group by, in order (comma separated): company, group, collector, segment,
    /// customer [default: the report's own]. Rows are always split by currency.
    #[arg(long, value_delimiter = ',')]
    by: Vec<String>,
    /// Only this company.
    #[arg(long)]
    company: Option<String>,
    /// Only this collection group.
    #[arg(long)]
    group: Option<String>,
    /// Only this collector (`unassigned`: customers without one).
    #[arg(long)]
    collector: Option<String>,
    /// Only this segment.
    #[arg(long)]
    segment: Option<String>,
    /// conversion: collected in full within this many days of the case's opening
    /// [default: 30]; forecast: days ahead [default: 90]; forecast-backtest: days
    /// each past forecast looks ahead [default: 91, 13 weeks].
    #[arg(long, value_name = "DAYS")]
    within: Option<i64>,
    /// Print JSON instead of a table (for scripts).
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV instead of a table (for spreadsheets).
    #[arg(long)]
    csv: bool,
}

impl ReportArgs {
    fn filter(&self) -> Filter {
        Filter {
            company: self.company.clone(),
            group: self.group.clone(),
            collector: self.collector.clone(),
            segment: self.segment.clone(),
        }
    }
}

pub fn local(env: &Env, a: ReportArgs) -> Result<ExitCode> {
    let store = env.store()?;
    let mut req = reports::Request::parse(
        &a.name,
        a.from,
        a.to.unwrap_or_else(today),
        &a.by,
        a.filter(),
        a.within,
    )?;
    if req.needs_rules() {
        req.use_rules(&env.rules()?);
    }
    let table = reports::run(&store, &Reach::everything(&local_user()), &req)?;
    print(&arrears::server::report_to_pb(&table), &a)
}

pub async fn remote(r: &Remote, a: ReportArgs) -> Result<ExitCode> {
    let date = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
    let t = pb::reports_client::ReportsClient::new(r.auth())
        .run_report(pb::RunReportRequest {
            report: a.name.clone(),
            from: date(a.from),
            to: date(a.to),
            by: a.by.clone(),
            company: a.company.clone().unwrap_or_default(),
            group: a.group.clone().unwrap_or_default(),
            collector: a.collector.clone().unwrap_or_default(),
            segment: a.segment.clone().unwrap_or_default(),
            within_days: a.within.unwrap_or(0),
        })
        .await
        .map_err(describe)?
        .into_inner();
    print(&t, &a)
}

/// A cell as JSON: counts as numbers; amounts, ratios and days as exact decimal
/// strings (never floats); an undefined figure as null.
fn json_cell(kind: &str, cell: &str) -> serde_json::Value {
    match (kind, cell) {
        (_, "") if kind != "text" => serde_json::Value::Null,
        ("count", n) => n
            .parse::<u64>()
            .map_or_else(|_| n.into(), serde_json::Value::from),
        (_, s) => s.into(),
    }
}

fn print(t: &pb::ReportTable, a: &ReportArgs) -> Result<ExitCode> {
    if a.json {
        let rows: Vec<serde_json::Value> = t
            .rows
            .iter()
            .map(|r| {
                serde_json::Value::Object(
                    t.columns
                        .iter()
                        .zip(&r.cells)
                        .map(|(c, v)| (c.name.clone(), json_cell(&c.kind, v)))
                        .collect(),
                )
            })
            .collect();
        let v = serde_json::json!({
            "report": t.report, "from": t.from, "to": t.to,
            "columns": t.columns.iter().map(|c| serde_json::json!({"name": c.name, "kind": c.kind})).collect::<Vec<_>>(),
            "rows": rows,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if a.csv {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(t.columns.iter().map(|c| c.name.as_str()))?;
        for r in &t.rows {
            w.write_record(&r.cells)?;
        }
        out!("{}", String::from_utf8(w.into_inner()?)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!("{} from {} to {}", t.report, t.from, t.to);
    if t.rows.is_empty() {
        outln!("(nothing in the period)");
        return Ok(ExitCode::SUCCESS);
    }
    let widths: Vec<usize> = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            t.rows
                .iter()
                .map(|r| r.cells.get(i).map_or(0, |v| v.chars().count()))
                .chain([c.name.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        cells
            .zip(t.columns.iter().zip(&widths))
            .map(|(v, (c, &w))| {
                if c.kind == "text" {
                    format!("{v:<w$}")
                } else {
                    format!("{v:>w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    outln!("{}", line(&mut t.columns.iter().map(|c| c.name.as_str())));
    for r in &t.rows {
        outln!("{}", line(&mut r.cells.iter().map(|c| c.as_str())));
    }
    Ok(ExitCode::SUCCESS)
}
