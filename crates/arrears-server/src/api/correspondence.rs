//! `Correspondence`: the outbox and the contact preferences over the API.

use tonic::{Request, Response, Status};

use super::{nonempty, Api};
use crate::app_status;
use crate::auth::principal;
use crate::authz::Reach;
use crate::metrics::observed;
use crate::{pb, status};
use arrears_app::cases::Caller;
use arrears_store::{ContactProfile, MessageView};

pub fn message_to_pb(m: &MessageView) -> pb::Message {
    pb::Message {
        id: m.id,
        customer: m.customer.clone(),
        escalation_id: m.escalation_id.unwrap_or(0),
        channel: m.channel.clone(),
        template: m.template.clone(),
        language: m.language.clone(),
        recipient: m.recipient.clone().unwrap_or_default(),
        cc: m.cc.clone(),
        subject: m.subject.clone(),
        text: m.text.clone(),
        status: m.status.clone(),
        attempts: m.attempts,
        next_attempt: m.next_attempt.clone(),
        last_error: m.last_error.clone().unwrap_or_default(),
        defer_reason: m.defer_reason.clone().unwrap_or_default(),
        sent_at: m.sent_at.clone().unwrap_or_default(),
        receipt: m.receipt.clone().unwrap_or_default(),
        replaces: m.replaces.unwrap_or(0),
        business_date: m.business_date.clone().unwrap_or_default(),
    }
}

fn prefs_to_pb(p: &ContactProfile) -> pb::ContactPreferences {
    pb::ContactPreferences {
        customer: format!("{}/{}", p.company, p.code),
        email: p.email.clone().unwrap_or_default(),
        phone: p.phone.clone().unwrap_or_default(),
        address: p.address.clone().unwrap_or_default(),
        do_not_contact: p.do_not_contact,
        opt_outs: p.opt_outs.clone(),
        language: p.language.clone().unwrap_or_default(),
        timezone: p.timezone.clone().unwrap_or_default(),
        street: p.street.clone().unwrap_or_default(),
        postal_code: p.postal_code.clone().unwrap_or_default(),
        city: p.city.clone().unwrap_or_default(),
        letter_address: p.postal_address().unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl pb::correspondence_server::Correspondence for Api {
    async fn list_messages(
        &self,
        req: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        observed("Correspondence/ListMessages", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let limit = if r.limit == 0 { 50 } else { r.limit.min(1000) } as usize;
            let messages = self
                .shared
                .read(move |store, rules| {
                    let reach = Reach::of(&who, rules);
                    let id = match r.customer.trim() {
                        "" => None,
                        k => Some(reach.customer_key(store, k).map_err(app_status)?),
                    };
                    let all = store.messages(id, limit).map_err(status)?;
                    Ok(reach
                        .filter(store, all, |m| &m.customer)
                        .map_err(app_status)?
                        .iter()
                        .map(message_to_pb)
                        .collect())
                })
                .await?;
            Ok(Response::new(pb::ListMessagesResponse { messages }))
        })
        .await
    }

    async fn process_outbox(
        &self,
        req: Request<pb::ProcessOutboxRequest>,
    ) -> Result<Response<pb::OutboxStats>, Status> {
        observed("Correspondence/ProcessOutbox", async {
            let _who = principal(&req)?;
            // On a connection of its own, like the daemon's outbox task: a slow SMTP
            // server must not hold the writer the API and the runner need.
            let me = self.shared.clone();
            let s = tokio::task::spawn_blocking(move || {
                let mut st = me.open_store().map_err(status)?;
                let rules = me.rules();
                arrears_app::correspondence::process(
                    &mut st,
                    &rules.set,
                    me.delivery.as_ref(),
                    me.clock.now(),
                )
                .map_err(|e| Status::internal(e.to_string()))
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
            if s.call_tasks > 0 {
                self.shared
                    .request_run(crate::RunRequest::auto("outbox call tasks".into()));
            }
            Ok(Response::new(pb::OutboxStats {
                composed: s.composed,
                call_tasks: s.call_tasks,
                sent: s.sent,
                deferred: s.deferred,
                retried: s.retried,
                fell_back: s.fell_back,
                failed: s.failed,
                held: s.held,
            }))
        })
        .await
    }

    async fn set_contact_preferences(
        &self,
        req: Request<pb::ContactPreferencesRequest>,
    ) -> Result<Response<pb::ContactPreferences>, Status> {
        observed("Correspondence/SetContactPreferences", async {
            let who = principal(&req)?;
            let r = req.into_inner();
            let key = nonempty("customer", &r.customer)?.to_string();
            let dnc = match r.do_not_contact.trim() {
                "" => None,
                "true" => Some(true),
                "false" => Some(false),
                other => {
                    return Err(Status::invalid_argument(format!(
                        "do_not_contact: `{other}` is not true or false"
                    )))
                }
            };
            let text = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
            let change = arrears_app::customers::ContactChange {
                email: text(&r.email),
                phone: text(&r.phone),
                address: text(&r.address),
                street: text(&r.street),
                postal_code: text(&r.postal_code),
                city: text(&r.city),
                do_not_contact: dnc,
                opt_outs: r.set_opt_outs.then_some(r.opt_outs),
            };
            let p = self
                .shared
                .write(
                    format!("contact preferences of {key}"),
                    move |store, rules| {
                        let caller = Caller::new(&who, rules, &who.name);
                        let p = arrears_app::customers::set_contact(store, &caller, &key, &change)
                            .map_err(app_status)?;
                        Ok(prefs_to_pb(&p))
                    },
                )
                .await?;
            Ok(Response::new(p))
        })
        .await
    }
}
