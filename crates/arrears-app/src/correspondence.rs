//! Correspondence: turns escalation steps into messages and delivers them.
//!
//! - **Compose.** One message per step, i.e. per customer and day: every item the step
//!   lists, at the highest level reached, with the fees (the level's fee once per item
//!   and level, plus those charged before) and the interest of the rules' policy
//!   itemised, rendered from the level's template in the customer's language.
//!   Call-task levels become an activity on the customer's oldest case instead.
//! - **Deliver.** Every attempt passes the compliance guard first: deferred to the next
//!   allowed moment (reason kept), or refused (opt-out, do-not-contact), which moves
//!   the step to the level's next fallback channel, as does a missing address or a
//!   permanent refusal by the server. Transient failures are retried with back-off.
//!   Only a delivery marks the step sent, records its event on the customer and
//!   charges its fees.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;

use arrears_core::money::{Currency, Money};
use arrears_delivery::{self, DeliveryConfig, Outgoing, SendError};
use arrears_rules::compliance::{self, ContactRequest, Decision, PastContact};
use arrears_rules::templates::{self, Context};
use arrears_rules::{Channel, Level, RuleSet};
use arrears_store::{
    CaseStore, ContactProfile, Fee, MessageView, NewMessage, OutboxStore, StoreError,
};

/// Why a message waits when the config has no delivery channel at all.
const DELIVERY_OFF: &str = "delivery off: no `delivery:` channel in the config";

static DELIVERY_OFF_SAID: AtomicBool = AtomicBool::new(false);

/// Attempts on one channel before falling back to the next.
pub const MAX_ATTEMPTS: i64 = 6;
/// Messages looked at per pass.
const BATCH: usize = 500;
/// A contact limit can only span this far back.
const HISTORY_DAYS: i64 = 62;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct OutboxStats {
    pub composed: u32,
    pub call_tasks: u32,
    pub sent: u32,
    pub deferred: u32,
    pub retried: u32,
    pub fell_back: u32,
    pub failed: u32,
    pub held: u32,
    /// Of `held`, those held because no delivery channel is configured at all.
    pub delivery_off: u32,
    /// Left `sending` by a pass whose process died: delivered or not, nobody knows.
    pub in_doubt: u32,
}

fn level_of<'a>(rules: &'a RuleSet, ladder: &str, level: usize) -> Option<&'a Level> {
    rules
        .ladders
        .iter()
        .find(|l| l.name == ladder)
        .and_then(|l| l.levels.get(level.checked_sub(1)?))
}

/// The level's fee (base currency) in the item's currency.
fn fee_in(rules: &RuleSet, fee_base: Decimal, currency: &str) -> Option<Decimal> {
    if fee_base.is_zero() {
        return Some(Decimal::ZERO);
    }
    let cur = Currency::parse(currency).ok()?;
    let one = rules.rates.to_base(Money::new(Decimal::ONE, cur)).ok()?;
    // In the item's minor units: a JPY fee has no sen, a KWD fee has fils.
    (!one.is_zero()).then(|| arrears_core::money::round_to(fee_base / one, cur.minor_digits()))
}

fn company(rules: &RuleSet, p: &ContactProfile) -> templates::Company {
    match rules.correspondence.companies.get(&p.company) {
        Some(c) => templates::Company {
            name: c.name.clone(),
            address: c.address.clone(),
            iban: c.iban.clone(),
            contact: c.contact.clone(),
        },
        None => templates::Company {
            name: p.company.clone(),
            address: String::new(),
            iban: None,
            contact: String::new(),
        },
    }
}

fn payment_link(rules: &RuleSet, p: &ContactProfile) -> String {
    rules
        .correspondence
        .companies
        .get(&p.company)
        .map(|c| {
            c.payment_link
                .replace("{company}", &p.company)
                .replace("{customer}", &p.code)
        })
        .unwrap_or_default()
}

fn recipient(p: &ContactProfile, channel: &str) -> Option<String> {
    let v = match channel {
        "email" => p.email.clone(),
        "sms" => p.phone.clone(),
        "portal" => Some(format!("{}/{}", p.company, p.code)),
        // A letter needs an address the post can deliver to: never the bare name.
        "letter" => p.postal_address(),
        _ => None,
    };
    v.filter(|s| !s.trim().is_empty())
}

/// Makes the messages (and call tasks) of every step not handled yet.
pub fn compose<S: OutboxStore + CaseStore>(
    store: &mut S,
    rules: &RuleSet,
    now: DateTime<Utc>,
) -> Result<OutboxStats, OutboxError> {
    compose_until(store, rules, now, &|| false)
}

/// A pass asked to stop (the daemon shutting down) ends between two steps or
/// messages: each is handled in transactions of its own, so what is left simply waits
/// for the next pass.
pub type Stop<'a> = &'a dyn Fn() -> bool;

fn compose_until<S: OutboxStore + CaseStore>(
    store: &mut S,
    rules: &RuleSet,
    now: DateTime<Utc>,
    stop: Stop,
) -> Result<OutboxStats, OutboxError> {
    let mut stats = OutboxStats::default();
    let Some(t) = rules.templates.as_deref() else {
        return Ok(stats);
    };
    let steps = store.steps_to_send()?;
    // Only the customer's newest step goes out; older ones that still wait (an
    // outage, no templates for a while) are superseded, not sent in a burst. Found
    // in one pass: a first run's backlog is a step for nearly every customer.
    let mut newest: HashMap<i64, i64> = HashMap::with_capacity(steps.len());
    for s in &steps {
        let n = newest.entry(s.customer_id).or_insert(s.id);
        *n = (*n).max(s.id);
    }
    for step in &steps {
        if stop() {
            break;
        }
        if newest.get(&step.customer_id) != Some(&step.id) {
            continue;
        }
        store.supersede_waiting(step.customer_id, step.id)?;
        let p = store.contact_profile(step.customer_id)?;
        let level = level_of(rules, &step.ladder, step.level);
        if step.channel == "call_task" {
            let activity = level.and_then(|l| l.activity.clone());
            let case = store.oldest_open_case(step.customer_id)?;
            let done = match (activity, case) {
                (Some((cat, sub)), Some(case)) => match rules.subcategory(&cat, &sub) {
                    Some(s) => {
                        store.set_activity(
                            case,
                            &cat,
                            s,
                            step.as_of,
                            "escalation",
                            &rules.cases,
                        )?;
                        Some(format!("call task {cat}/{sub} on case {case}"))
                    }
                    None => None,
                },
                (None, Some(case)) => Some(format!("call due on case {case}")),
                (_, None) => None,
            };
            let event = level
                .map(|l| l.event.clone())
                .unwrap_or_else(|| "Collection call due".into());
            match done {
                Some(detail) => {
                    store.close_step(step.id, "sent", step.as_of, Some((&event, &detail)))?;
                    stats.call_tasks += 1;
                }
                None => store.close_step(step.id, "failed", step.as_of, None)?,
            }
            continue;
        }
        let letter_items =
            store.letter_items(&step.items.iter().map(|x| x.0).collect::<Vec<_>>())?;
        let mut items = Vec::new();
        let mut totals: Vec<templates::Total> = Vec::new();
        for it in letter_items.iter().filter(|i| i.open && !i.disputed) {
            let charged: Decimal = it.fees.iter().map(|f| f.2).sum();
            let item_level = level_of_item(step, it.id);
            let already = it
                .fees
                .iter()
                .any(|f| f.0 == step.ladder && f.1 == item_level);
            let fee_base = level_of(rules, &step.ladder, item_level)
                .map(|l| l.fee)
                .unwrap_or(Decimal::ZERO);
            let new_fee = if already {
                Decimal::ZERO
            } else {
                fee_in(rules, fee_base, &it.currency).unwrap_or(Decimal::ZERO)
            };
            let interest = interest_of(rules, it, step.as_of);
            let fee = charged + new_fee;
            let total = it.open_amount + fee + interest;
            items.push(templates::Item {
                document_no: it.document_no.clone(),
                document_date: it.document_date,
                due_date: it.due_date,
                days_overdue: (step.as_of - it.due_date).num_days(),
                currency: it.currency.clone(),
                original_amount: it.original_amount,
                open_amount: it.open_amount,
                fee,
                interest,
                total,
            });
            match totals.iter_mut().find(|x| x.currency == it.currency) {
                Some(x) => {
                    x.open_amount += it.open_amount;
                    x.fees += fee;
                    x.interest += interest;
                    x.total += total;
                }
                None => totals.push(templates::Total {
                    currency: it.currency.clone(),
                    open_amount: it.open_amount,
                    fees: fee,
                    interest,
                    total,
                }),
            }
        }
        if items.is_empty() {
            // Paid between the run and now: nothing to ask for.
            store.close_step(step.id, "cancelled", step.as_of, None)?;
            continue;
        }
        let language = p
            .language
            .clone()
            .unwrap_or_else(|| arrears_rules::DEFAULT_LANGUAGE.into());
        let ctx = Context {
            customer: templates::Customer {
                code: p.code.clone(),
                name: p.name.clone(),
                company: p.company.clone(),
                language: language.clone(),
                country: p.country.clone(),
                email: p.email.clone(),
                phone: p.phone.clone(),
                // The whole address block when it is complete (what the letter is
                // sent to), else whatever free text is on file.
                address: p.postal_block().or_else(|| p.address.clone()),
            },
            company: company(rules, &p),
            level: Some(templates::Level {
                name: step.level_name.clone(),
                number: step.level as u32,
                ladder: step.ladder.clone(),
            }),
            as_of: step.as_of,
            deadline: Some(step.as_of + Duration::days(10)),
            items,
            totals,
            payment_link: payment_link(rules, &p),
            agreement: None,
            receipt: None,
        };
        let r = match t.render(&step.template, &language, &ctx) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(step = step.id, error = %e, "cannot render the reminder");
                store.close_step(step.id, "failed", step.as_of, None)?;
                stats.failed += 1;
                continue;
            }
        };
        let cc = if step.copy_manager {
            manager_email(rules, p.group.as_deref())
                .into_iter()
                .collect()
        } else {
            Vec::new()
        };
        let queued = store.queue_message(
            &NewMessage {
                customer_id: step.customer_id,
                escalation_id: Some(step.id),
                recipient: recipient(&p, &step.channel),
                channel: step.channel.clone(),
                template: step.template.clone(),
                language: t
                    .language_for(&step.template, &language)
                    .unwrap_or(t.default_language())
                    .to_string(),
                cc,
                subject: r.subject,
                text: r.text,
                html: r.html,
                replaces: None,
            },
            now,
        )?;
        if queued.is_some() {
            stats.composed += 1;
        }
    }
    Ok(stats)
}

fn manager_email(rules: &RuleSet, group: Option<&str>) -> Option<String> {
    let g = rules
        .groups
        .iter()
        .find(|g| Some(g.name.as_str()) == group)?;
    let m = g.manager.as_deref()?;
    g.collectors
        .iter()
        .chain(rules.groups.iter().flat_map(|g| g.collectors.iter()))
        .find(|c| c.id == m)
        .and_then(|c| c.email.clone())
}

/// Statutory interest on an overdue item under the rules' policy (zero without one).
fn interest_of(rules: &RuleSet, it: &arrears_store::LetterItem, as_of: NaiveDate) -> Decimal {
    let Some(policy) = &rules.interest else {
        return Decimal::ZERO;
    };
    let payments = it
        .payments
        .iter()
        .map(|p| arrears_finance::Payment {
            date: p.0,
            amount: p.1,
        })
        .collect();
    let (input, _) = arrears_finance::ItemDebtInput::from_record(
        it.original_amount,
        it.open_amount,
        it.due_date,
        payments,
    );
    let mu = arrears_core::money::minor_digits_of(&it.currency);
    arrears_finance::debt(policy, &input, as_of, mu)
        .map(|d| d.interest_outstanding)
        .unwrap_or(Decimal::ZERO)
}

fn backoff(attempts: i64) -> Duration {
    // 1 min, 5 min, 15 min, 1 h, 4 h: a server that is down for the night is
    // retried into the morning, not hammered.
    match attempts {
        0 | 1 => Duration::minutes(1),
        2 => Duration::minutes(5),
        3 => Duration::minutes(15),
        4 => Duration::hours(1),
        _ => Duration::hours(4),
    }
}

/// Attempts every message due by `now`, and the fallbacks that queues.
pub fn deliver<S: OutboxStore + CaseStore>(
    store: &mut S,
    rules: &RuleSet,
    delivery: Option<&DeliveryConfig>,
    now: DateTime<Utc>,
) -> Result<OutboxStats, OutboxError> {
    deliver_until(store, rules, delivery, now, &|| false)
}

fn deliver_until<S: OutboxStore + CaseStore>(
    store: &mut S,
    rules: &RuleSet,
    delivery: Option<&DeliveryConfig>,
    now: DateTime<Utc>,
    stop: Stop,
) -> Result<OutboxStats, OutboxError> {
    let mut total = OutboxStats::default();
    // A fallback is due at once; three rounds cover email → sms → letter.
    for _ in 0..3 {
        let s = deliver_once(store, rules, delivery, now, stop)?;
        total.sent += s.sent;
        total.deferred += s.deferred;
        total.retried += s.retried;
        total.fell_back += s.fell_back;
        total.failed += s.failed;
        total.held += s.held;
        total.delivery_off += s.delivery_off;
        if s.fell_back == 0 {
            break;
        }
    }
    Ok(total)
}

fn deliver_once<S: OutboxStore + CaseStore>(
    store: &mut S,
    rules: &RuleSet,
    delivery: Option<&DeliveryConfig>,
    now: DateTime<Utc>,
    stop: Stop,
) -> Result<OutboxStats, OutboxError> {
    let mut stats = OutboxStats::default();
    let mut held_reason: Option<String> = None;
    // No channel at all is a choice (a demo, worklists only), not a fault to page
    // anyone about; a channel that is set up but refused is.
    let off = delivery.is_none_or(|d| d.smtp.is_none() && d.webhook.is_none());
    let smtp = delivery
        .and_then(|d| d.smtp.as_ref())
        .map(|c| (c, c.resolve()));
    let hook = delivery
        .and_then(|d| d.webhook.as_ref())
        .map(|c| (c, c.resolve()));
    for m in store.due_messages(now, BATCH)? {
        // Checked before a message is taken, never between taking and recording it:
        // a message taken is delivered and recorded, or put back, before the pass ends.
        if stop() {
            break;
        }
        // Taken by this pass alone; another pass (the daemon's, an API call, the
        // CLI) skips it, so it is sent once.
        if !store.reserve_message(m.id)? {
            continue;
        }
        let p = store.contact_profile(m.customer_id)?;
        // What the step asked for may have been paid, promised or disputed since.
        let fees = match what_sending_means(store, rules, &m)? {
            Some(f) => f,
            None => {
                store
                    .cancel_message(m.id, "nothing of the step is open and undisputed any more")?;
                continue;
            }
        };
        // The guard first: nothing leaves without it.
        if let (Some(policy), Ok(ch)) =
            (&rules.compliance, m.channel.parse::<compliance::Channel>())
        {
            let history: Vec<PastContact> = store
                .contact_history(m.customer_id, now - Duration::days(HISTORY_DAYS))?
                .into_iter()
                .filter_map(|(c, at)| {
                    Some(PastContact {
                        channel: c.parse().ok()?,
                        at,
                    })
                })
                .collect();
            let req = ContactRequest {
                channel: ch,
                country: p.country.clone(),
                time_zone: p.timezone.clone(),
                do_not_contact: p.do_not_contact,
                opted_out: p.opt_outs.iter().filter_map(|o| o.parse().ok()).collect(),
                only_disputed_items: false,
            };
            match policy.check(&req, &history, now) {
                Decision::Allow => {}
                Decision::Defer { until, reason } => {
                    store.message_deferred(m.id, until, &reason)?;
                    tracing::info!(message = m.id, %until, %reason, "contact deferred");
                    stats.deferred += 1;
                    continue;
                }
                Decision::Refuse { reason } => {
                    fail_over(
                        store,
                        rules,
                        &m,
                        &p,
                        &format!("compliance: {reason}"),
                        false,
                        now,
                        &mut stats,
                    )?;
                    continue;
                }
            }
        }
        let Some(to) = m.recipient.clone() else {
            let why = format!("no {} address on file", m.channel);
            fail_over(store, rules, &m, &p, &why, false, now, &mut stats)?;
            continue;
        };
        let detail = format!("{} to {to}: {}", m.channel, m.subject);
        let event = fees.1.as_deref().map(|e| (e, detail.as_str()));
        if m.channel == "letter" {
            let html = m
                .html
                .clone()
                .unwrap_or_else(|| format!("<pre>{}</pre>", minijinja::HtmlEscape(&m.text)));
            store.letter_sent(
                m.id,
                m.customer_id,
                &m.language,
                &m.subject,
                &m.text,
                &html,
                now,
                &fees.0,
                event,
            )?;
            stats.sent += 1;
            continue;
        }
        let out = Outgoing {
            message_id: m.id.to_string(),
            customer: m.customer.clone(),
            to: to.clone(),
            cc: m.cc.clone(),
            subject: m.subject.clone(),
            text: m.text.clone(),
            html: m.html.clone(),
            attachments: Vec::new(),
        };
        // In doubt from here only when something can actually reach a server: a
        // channel that is off or misconfigured fails before anything leaves.
        let reaches_a_server = match m.channel.as_str() {
            "email" => matches!(&smtp, Some((_, Ok(_)))),
            "sms" | "portal" => matches!(&hook, Some((_, Ok(_)))),
            _ => false,
        };
        // Only the pass whose claim still stands hands it over: a pass whose lock
        // was lost (its session ended while it composed) may find its claim taken
        // by the next pass, which then sends it; this one leaves it.
        if reaches_a_server && !store.message_handing_over(m.id)? {
            tracing::warn!(
                message = m.id,
                "another outbox pass took this message over; not sending it here"
            );
            continue;
        }
        let result = match m.channel.as_str() {
            "email" => match &smtp {
                Some((cfg, Ok(secrets))) => arrears_delivery::send_email(cfg, secrets, &out),
                Some((_, Err(e))) => Err(e.clone()),
                None => Err(SendError::Config {
                    reason: "no `delivery.smtp` in the config".into(),
                }),
            },
            "sms" | "portal" => match &hook {
                Some((cfg, Ok(secrets))) => {
                    arrears_delivery::send_webhook(cfg, secrets, &out, &m.channel)
                }
                Some((_, Err(e))) => Err(e.clone()),
                None => Err(SendError::Config {
                    reason: "no `delivery.webhook` in the config".into(),
                }),
            },
            other => Err(SendError::Permanent {
                reason: format!("`{other}` is not a message channel"),
            }),
        };
        match result {
            Ok(receipt) => {
                // Delivered: if recording it fails now, the message stays `sending`
                // and is not sent again.
                store.message_sent(m.id, now, &receipt.reply, &fees.0, event)?;
                stats.sent += 1;
            }
            Err(SendError::Transient { reason }) if m.attempts + 1 < MAX_ATTEMPTS => {
                store.message_retry(m.id, now + backoff(m.attempts + 1), &reason)?;
                tracing::warn!(message = m.id, %reason, "delivery failed; retrying");
                stats.retried += 1;
            }
            Err(SendError::Config { .. }) if off => {
                store.message_held(m.id, now + Duration::minutes(15), DELIVERY_OFF)?;
                stats.held += 1;
                stats.delivery_off += 1;
            }
            Err(SendError::Config { reason }) => {
                // The same for every message: hold the channel and tell an operator
                // rather than use up retries or push everything to the fallback.
                store.message_held(
                    m.id,
                    now + Duration::minutes(15),
                    &format!("config: {reason}"),
                )?;
                held_reason = Some(reason);
                stats.held += 1;
            }
            Err(e) => {
                fail_over(store, rules, &m, &p, e.reason(), true, now, &mut stats)?;
            }
        }
    }
    if let Some(reason) = held_reason {
        tracing::error!(
            held = stats.held - stats.delivery_off,
            %reason,
            "messages held: a delivery channel is misconfigured"
        );
    }
    if stats.delivery_off > 0 && !DELIVERY_OFF_SAID.swap(true, Ordering::Relaxed) {
        // Once per process: every pass holds the same messages again, and a log full
        // of the same line hides the ones that matter.
        tracing::warn!(
            waiting = stats.delivery_off,
            "delivery is off (no `delivery:` channel in the config): reminders are \
             composed and wait in the outbox, letters and call tasks still go ahead. \
             To send them, add `delivery.smtp` (e-mail) and/or `delivery.webhook` \
             (SMS, portal) to the config; `arrears outbox list` shows what waits"
        );
    }
    Ok(stats)
}

/// The fees a delivered step charges (its open items only) and the event it
/// records; `None` when none of the step's items is open any more.
#[allow(clippy::type_complexity)]
fn what_sending_means<S: OutboxStore + ?Sized>(
    store: &S,
    rules: &RuleSet,
    m: &MessageView,
) -> Result<Option<(Vec<Fee>, Option<String>)>, OutboxError> {
    let Some(eid) = m.escalation_id else {
        return Ok(Some((Vec::new(), None)));
    };
    let step = store.escalation_step(eid)?;
    let items = store.letter_items(&step.items.iter().map(|x| x.0).collect::<Vec<_>>())?;
    // Disputed since the step was decided: not asked for, and no fee on it.
    if !items.iter().any(|i| i.open && !i.disputed) {
        return Ok(None);
    }
    let level = level_of(rules, &step.ladder, step.level);
    let event = level
        .map(|l| l.event.clone())
        .unwrap_or_else(|| format!("Reminder: {}", step.level_name));
    let mut fees = Vec::new();
    for it in items.iter().filter(|i| i.open && !i.disputed) {
        let item_level = level_of_item(&step, it.id);
        let fee_base = level_of(rules, &step.ladder, item_level)
            .map(|l| l.fee)
            .unwrap_or(Decimal::ZERO);
        if fee_base.is_zero() {
            continue;
        }
        if let Some(amount) = fee_in(rules, fee_base, &it.currency) {
            fees.push(Fee {
                item_id: it.id,
                ladder: step.ladder.clone(),
                level: item_level,
                amount,
                currency: it.currency.clone(),
            });
        }
    }
    Ok(Some((fees, Some(event))))
}

/// The level a step reminds an item at: its own (each item carries its level), never
/// above the step's. Fees are charged per item at that level.
fn level_of_item(step: &arrears_store::StepToSend, item_id: i64) -> usize {
    step.items
        .iter()
        .find(|x| x.0 == item_id)
        .map_or(step.level, |x| x.1.min(step.level))
}

/// Gives up on the message's channel and queues the step on the level's next
/// fallback channel not tried yet; without one the step failed, and the customer's
/// history says so. One transaction, so the step never waits on nothing.
#[allow(clippy::too_many_arguments)]
fn fail_over<S: OutboxStore + CaseStore>(
    store: &mut S,
    rules: &RuleSet,
    m: &MessageView,
    p: &ContactProfile,
    error: &str,
    counts_as_attempt: bool,
    now: DateTime<Utc>,
    stats: &mut OutboxStats,
) -> Result<(), OutboxError> {
    let tried = store.tried_channels(m.id)?;
    let chain: Vec<Channel> = match m.escalation_id {
        Some(eid) => {
            let step = store.escalation_step(eid)?;
            match level_of(rules, &step.ladder, step.level) {
                Some(l) => l.fallback.clone(),
                None => Channel::parse(&m.channel)
                    .map(|c| c.default_fallback())
                    .unwrap_or_default(),
            }
        }
        None => Vec::new(),
    };
    let next = chain
        .iter()
        .map(|c| c.as_str())
        .find(|c| !tried.iter().any(|t| t == c))
        .map(|ch| NewMessage {
            customer_id: m.customer_id,
            escalation_id: m.escalation_id,
            channel: ch.to_string(),
            template: m.template.clone(),
            language: m.language.clone(),
            recipient: recipient(p, ch),
            cc: m.cc.clone(),
            subject: m.subject.clone(),
            text: m.text.clone(),
            html: m.html.clone(),
            replaces: Some(m.id),
        });
    let give_up = format!("tried {}; last: {error}", tried.join(", "));
    store.fail_over(
        m.id,
        error,
        counts_as_attempt,
        next.as_ref(),
        now,
        Some(("Reminder not delivered", &give_up)),
    )?;
    if next.is_some() {
        stats.fell_back += 1;
    } else {
        stats.failed += 1;
    }
    Ok(())
}

/// Compose, then deliver: one pass of the outbox.
pub fn process<S: OutboxStore + CaseStore>(
    store: &mut S,
    rules: &RuleSet,
    delivery: Option<&DeliveryConfig>,
    now: DateTime<Utc>,
) -> Result<OutboxStats, OutboxError> {
    process_until(store, rules, delivery, now, &|| false)
}

/// [`process`] that ends early, between two messages, once `stop` says so.
pub fn process_until<S: OutboxStore + CaseStore>(
    store: &mut S,
    rules: &RuleSet,
    delivery: Option<&DeliveryConfig>,
    now: DateTime<Utc>,
    stop: Stop,
) -> Result<OutboxStats, OutboxError> {
    let pass = store.outbox_pass()?;
    let in_doubt = store.messages_interrupted(&pass, now)?;
    if in_doubt > 0 {
        tracing::error!(
            in_doubt,
            "messages left `sending` by an outbox pass that was killed: marked `unknown`, not sent again"
        );
    }
    let a = compose_until(store, rules, now, stop)?;
    let b = deliver_until(store, rules, delivery, now, stop)?;
    drop(pass);
    Ok(OutboxStats {
        composed: a.composed,
        call_tasks: a.call_tasks,
        sent: b.sent,
        deferred: b.deferred,
        retried: b.retried,
        fell_back: b.fell_back,
        failed: a.failed + b.failed,
        held: b.held,
        delivery_off: b.delivery_off,
        in_doubt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{run, RunMode};
    use arrears_core::domain::{Batch, ItemInput};
    use arrears_store::Store;
    use rust_decimal_macros::dec;

    use arrears_test_support::d;

    /// An invoice reminded for the first time inside a final notice pays the fee of
    /// its own level (none at reminder_1), not the final notice's.
    #[test]
    fn each_item_pays_the_fee_of_its_own_level() {
        let mut rules = arrears_test_support::shipped_rules();
        for l in &mut rules.ladders {
            l.step_interval_days = 7;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("a.db")).unwrap();
        let item = |ext: &str, due: &str| ItemInput {
            source: "erp".into(),
            external_id: ext.into(),
            company: "ACME_DE".into(),
            customer: "C1".into(),
            document_no: format!("INV-{ext}"),
            document_date: d("2026-08-01"),
            due_date: d(due),
            original_amount: dec!(500),
            open_amount: dec!(500),
            currency: Currency::parse("EUR").unwrap(),
            hold: None,
            original_document: None,
        };
        let batch = |it| Batch {
            items: vec![it],
            ..Batch::default()
        };
        s.ingest(&batch(item("A", "2026-09-20"))).unwrap();
        for day in ["2026-11-08", "2026-11-09", "2026-11-10"] {
            run(&mut s, &rules, d(day), RunMode::Auto).unwrap();
        }
        s.ingest(&batch(item("B", "2026-11-01"))).unwrap();
        run(&mut s, &rules, d("2026-11-17"), RunMode::Auto).unwrap();
        let now = "2026-11-17T10:00:00Z".parse().unwrap();
        compose(&mut s, &rules, now).unwrap();
        let m = s.due_messages(now, 10).unwrap();
        assert_eq!(m.len(), 1, "one message: the newest step");
        let step = s.escalation_step(m[0].escalation_id.unwrap()).unwrap();
        assert_eq!(step.level, 4);
        let (fees, _) = what_sending_means(&s, &rules, &m[0]).unwrap().unwrap();
        let charged: Vec<(usize, Decimal)> = fees.iter().map(|f| (f.level, f.amount)).collect();
        assert_eq!(
            charged,
            vec![(4, dec!(10))],
            "A at final_notice; B at reminder_1 pays none"
        );
        assert!(
            m[0].text.contains("INV-B") && m[0].text.contains("INV-A"),
            "{}",
            m[0].text
        );
    }

    /// Older steps still waiting are superseded by the newest, a message is taken by
    /// one pass only, and a step whose items were disputed (or paid) meanwhile is
    /// cancelled, not sent.
    #[test]
    fn one_reminder_per_customer_sent_once_and_never_for_disputed_items() {
        let rules = arrears_test_support::shipped_rules();
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("a.db")).unwrap();
        let item = |open: Decimal| ItemInput {
            source: "erp".into(),
            external_id: "1".into(),
            company: "ACME_DE".into(),
            customer: "C1".into(),
            document_no: "INV-1".into(),
            document_date: d("2026-09-20"),
            due_date: d("2026-10-20"),
            original_amount: dec!(500),
            open_amount: open,
            currency: Currency::parse("EUR").unwrap(),
            hold: None,
            original_document: None,
        };
        s.ingest(&Batch {
            items: vec![item(dec!(500))],
            ..Batch::default()
        })
        .unwrap();
        // Two steps decided on two days, nothing sent in between.
        run(&mut s, &rules, d("2026-10-30"), RunMode::Full).unwrap();
        run(&mut s, &rules, d("2026-11-13"), RunMode::Full).unwrap();
        assert_eq!(s.steps_to_send().unwrap().len(), 2);
        let now = "2026-11-13T10:00:00Z".parse().unwrap();
        let st = compose(&mut s, &rules, now).unwrap();
        assert_eq!(st.composed, 1, "the newest step only");
        assert!(
            s.steps_to_send().unwrap().is_empty(),
            "the older one is superseded"
        );
        let m = s.due_messages(now, 10).unwrap();
        assert_eq!(m.len(), 1);
        assert!(s.reserve_message(m[0].id).unwrap());
        assert!(!s.reserve_message(m[0].id).unwrap(), "taken once");
        s.message_retry(m[0].id, now, "test").unwrap();

        // Disputed before the next attempt: cancelled, no fee, no event.
        let case = s.oldest_open_case(1).unwrap().unwrap();
        s.open_dispute(case, "never delivered", d("2026-11-13"), "anna")
            .unwrap();
        let st = deliver(&mut s, &rules, None, now).unwrap();
        assert_eq!((st.sent, st.held), (0, 0), "{st:?}");
        let m = s.messages(None, 10).unwrap();
        assert_eq!(m[0].status, "cancelled");
        assert!(s.letter_items(&[1]).unwrap()[0].fees.is_empty());
    }

    /// No channel in the config is delivery switched off, told apart from a channel
    /// that is missing next to others (a misconfiguration): both hold the message.
    #[test]
    fn no_channel_at_all_is_delivery_off_not_a_misconfiguration() {
        let rules = arrears_test_support::shipped_rules();
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("a.db")).unwrap();
        s.ingest(&Batch {
            customers: vec![arrears_core::domain::CustomerInfo {
                company: "ACME_DE".into(),
                code: "C1".into(),
                name: "Becker GmbH".into(),
                country: "DE".into(),
                email: Some("ap@becker.example".into()),
                phone: None,
                language: Some("de".into()),
                timezone: None,
                credit_limit: None,
                street: None,
                postal_code: None,
                city: None,
                dunning: None,
            }],
            items: vec![ItemInput {
                source: "erp".into(),
                external_id: "1".into(),
                company: "ACME_DE".into(),
                customer: "C1".into(),
                document_no: "INV-1".into(),
                document_date: d("2026-09-20"),
                due_date: d("2026-10-20"),
                original_amount: dec!(500),
                open_amount: dec!(500),
                currency: Currency::parse("EUR").unwrap(),
                hold: None,
                original_document: None,
            }],
            ..Batch::default()
        })
        .unwrap();
        run(&mut s, &rules, d("2026-11-13"), RunMode::Full).unwrap();
        let now: DateTime<Utc> = "2026-11-13T10:00:00Z".parse().unwrap();
        let st = process(&mut s, &rules, None, now).unwrap();
        assert_eq!((st.held, st.delivery_off), (1, 1), "{st:?}");
        let m = s.messages(None, 10).unwrap();
        assert_eq!(m[0].channel, "email");
        assert_eq!(m[0].last_error.as_deref(), Some(DELIVERY_OFF));

        let webhook_only: DeliveryConfig = serde_yaml::from_str(
            "webhook: { url: 'https://sms.example.com/send', token_env: ARREARS_TEST_UNSET }",
        )
        .unwrap();
        let later = now + Duration::hours(1);
        let st = deliver(&mut s, &rules, Some(&webhook_only), later).unwrap();
        assert_eq!((st.held, st.delivery_off), (1, 0), "{st:?}");
        let m = s.messages(None, 10).unwrap();
        assert_eq!(
            m[0].last_error.as_deref(),
            Some("config: no `delivery.smtp` in the config")
        );
    }
}
