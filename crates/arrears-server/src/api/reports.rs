//! `Reports`: the collections reports over the API, the same tables as
//! `arrears report`.

use tonic::{Request, Response, Status};

use super::Api;
use crate::app_status;
use crate::auth::principal;
use crate::authz::Reach;
use crate::metrics::observed;
use crate::{parse_date, pb};
use arrears_app::reports::{self, Filter, Table};

pub fn report_to_pb(t: &Table) -> pb::ReportTable {
    pb::ReportTable {
        report: t.report.as_str().into(),
        from: t.from.to_string(),
        to: t.to.to_string(),
        columns: t
            .columns
            .iter()
            .map(|c| pb::ReportColumn {
                name: c.name.clone(),
                kind: c.kind.as_str().into(),
            })
            .collect(),
        rows: t
            .rows
            .iter()
            .map(|r| pb::ReportRow {
                cells: r.iter().map(|c| c.to_string()).collect(),
            })
            .collect(),
    }
}

fn filter(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

#[tonic::async_trait]
impl pb::reports_server::Reports for Api {
    async fn run_report(
        &self,
        req: Request<pb::RunReportRequest>,
    ) -> Result<Response<pb::ReportTable>, Status> {
        observed("Reports/RunReport", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let to = self.shared.as_of(&r.to)?;
            let from = if r.from.is_empty() {
                None
            } else {
                Some(parse_date("from", &r.from)?)
            };
            let mut request = reports::Request::parse(
                &r.report,
                from,
                to,
                &r.by,
                Filter {
                    company: filter(r.company),
                    group: filter(r.group),
                    collector: filter(r.collector),
                    segment: filter(r.segment),
                },
                (r.within_days != 0).then_some(r.within_days),
            )
            .map_err(app_status)?;
            let table = self
                .shared
                .read(move |store, rules| {
                    request.use_rules(rules);
                    reports::run(store, &Reach::of(&who, rules), &request).map_err(app_status)
                })
                .await?;
            Ok(Response::new(report_to_pb(&table)))
        })
        .await
    }
}
