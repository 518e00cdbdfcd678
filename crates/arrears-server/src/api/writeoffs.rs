//! `WriteOffs`: write-offs over the API. Limits and the approval rules live in the
//! store (`Store::propose_write_off`), reach and audit in `arrears_app::writeoffs`;
//! here only the request's shape.

use tonic::{Request, Response, Status};

use super::{nonempty, opt, positive_id, Api};
use crate::app_status;
use crate::auth::principal;
use crate::metrics::observed;
use crate::pb;
use arrears_app::cases::Caller;
use arrears_app::writeoffs;
use arrears_store::WriteOffView;

pub fn write_off_to_pb(w: &WriteOffView) -> pb::WriteOff {
    pb::WriteOff {
        id: w.id,
        customer: w.customer.clone(),
        item_id: w.item_id,
        source: w.source.clone(),
        external_id: w.external_id.clone(),
        document_no: w.document_no.clone(),
        case_id: w.case_id.unwrap_or(0),
        status: w.status.clone(),
        amount: w.amount.to_string(),
        currency: w.currency.clone(),
        reason: w.reason.clone(),
        proposed_by: w.proposed_by.clone(),
        proposed_on: w.proposed_on.to_string(),
        needs_approval: w.needs_approval.clone().unwrap_or_default(),
        decided_by: w.decided_by.clone().unwrap_or_default(),
        decided_on: opt(&w.decided_on),
        decision_note: w.decision_note.clone().unwrap_or_default(),
        reported_on: opt(&w.reported_on),
    }
}

#[tonic::async_trait]
impl pb::write_offs_server::WriteOffs for Api {
    async fn propose_write_off(
        &self,
        req: Request<pb::ProposeWriteOffRequest>,
    ) -> Result<Response<pb::WriteOff>, Status> {
        observed("WriteOffs/ProposeWriteOff", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let case_id = positive_id("case_id", r.case_id)?;
            nonempty("reason", &r.reason)?;
            let on = self.shared.as_of(&r.on)?;
            let w = self
                .shared
                .write(
                    format!("write-off of case {case_id} proposed"),
                    move |store, rules| {
                        let caller = Caller::new(&who, rules, &who.name);
                        Ok(write_off_to_pb(
                            &writeoffs::propose(store, rules, &caller, case_id, &r.reason, on)
                                .map_err(app_status)?,
                        ))
                    },
                )
                .await?;
            Ok(Response::new(w))
        })
        .await
    }

    async fn approve_write_off(
        &self,
        req: Request<pb::DecideWriteOffRequest>,
    ) -> Result<Response<pb::WriteOff>, Status> {
        observed("WriteOffs/ApproveWriteOff", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let id = positive_id("id", r.id)?;
            let on = self.shared.as_of(&r.on)?;
            let w = self
                .shared
                .write(format!("write-off {id} approved"), move |store, rules| {
                    let caller = Caller::new(&who, rules, &who.name);
                    Ok(write_off_to_pb(
                        &writeoffs::approve(store, rules, &caller, id, &r.note, on)
                            .map_err(app_status)?,
                    ))
                })
                .await?;
            Ok(Response::new(w))
        })
        .await
    }

    async fn reject_write_off(
        &self,
        req: Request<pb::DecideWriteOffRequest>,
    ) -> Result<Response<pb::WriteOff>, Status> {
        observed("WriteOffs/RejectWriteOff", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let id = positive_id("id", r.id)?;
            let on = self.shared.as_of(&r.on)?;
            let w = self
                .shared
                .write(format!("write-off {id} rejected"), move |store, rules| {
                    let caller = Caller::new(&who, rules, &who.name);
                    Ok(write_off_to_pb(
                        &writeoffs::reject(store, &caller, id, &r.note, on).map_err(app_status)?,
                    ))
                })
                .await?;
            Ok(Response::new(w))
        })
        .await
    }

    async fn get_write_off(
        &self,
        req: Request<pb::GetWriteOffRequest>,
    ) -> Result<Response<pb::WriteOff>, Status> {
        observed("WriteOffs/GetWriteOff", async {
            let who = principal(&req)?;
            let id = positive_id("id", req.get_ref().id)?;
            let w = self
                .shared
                .read(move |store, rules| {
                    let caller = Caller::new(&who, rules, &who.name);
                    Ok(write_off_to_pb(
                        &writeoffs::get(store, &caller, id).map_err(app_status)?,
                    ))
                })
                .await?;
            Ok(Response::new(w))
        })
        .await
    }

    async fn list_write_offs(
        &self,
        req: Request<pb::ListWriteOffsRequest>,
    ) -> Result<Response<pb::ListWriteOffsResponse>, Status> {
        observed("WriteOffs/ListWriteOffs", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let write_offs = self
                .shared
                .read(move |store, rules| {
                    let caller = Caller::new(&who, rules, &who.name);
                    let customer = Some(r.customer.trim()).filter(|c| !c.is_empty());
                    let status = Some(r.status.trim()).filter(|s| !s.is_empty());
                    Ok(writeoffs::list(store, &caller, customer, status)
                        .map_err(app_status)?
                        .iter()
                        .map(write_off_to_pb)
                        .collect())
                })
                .await?;
            Ok(Response::new(pb::ListWriteOffsResponse { write_offs }))
        })
        .await
    }

    async fn export_write_offs(
        &self,
        req: Request<pb::ExportWriteOffsRequest>,
    ) -> Result<Response<pb::WriteOffExport>, Status> {
        observed("WriteOffs/ExportWriteOffs", async {
            let who = principal(&req)?;
            let reported = req.into_inner().reported;
            for &id in &reported {
                positive_id("reported", id)?;
            }
            let on = self.shared.as_of("")?;
            let out = self
                .shared
                .write("write-offs exported".into(), move |store, rules| {
                    let caller = Caller::new(&who, rules, &who.name);
                    let (csv, rows) =
                        writeoffs::export(store, &caller, on, &reported).map_err(app_status)?;
                    Ok(pb::WriteOffExport {
                        csv,
                        write_offs: rows.iter().map(write_off_to_pb).collect(),
                    })
                })
                .await?;
            Ok(Response::new(out))
        })
        .await
    }
}
