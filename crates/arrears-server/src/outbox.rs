//! The outbox task: after every run that decided escalation steps and on a timer (retries,
//! deferred contacts coming due), compose and deliver on a connection of its own, so
//! a slow SMTP server never holds the writer the API and the runner need.
//!
//! At shutdown the pass in progress stops after the message in flight (delivered
//! and recorded, or put back): the rest stays queued for the next start.

use std::sync::Arc;

use metrics::{counter, gauge};

use super::Shared;
use arrears_store::Store;

pub async fn work(shared: Arc<Shared>) {
    let every = shared.cfg.outbox_every;
    if every.is_zero() {
        tracing::info!("outbox off (serve.outbox_every = 0s)");
        return;
    }
    let mut changes = shared.changes.subscribe();
    let mut stop = shared.shutdown.clone();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The queue's size is known before the first pass: export it at once, so the
    // gauge exists from start-up rather than after the first tick.
    let me = shared.clone();
    let mut store: Option<Store> = tokio::task::spawn_blocking(move || {
        let s = me.open_store().ok()?;
        if let Ok(n) = s.messages_waiting() {
            gauge!("arrears_messages_waiting").set(n as f64);
        }
        Some(s)
    })
    .await
    .ok()
    .flatten();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = changes.recv() => match r {
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                // A run that decided no step left nothing new to compose.
                Ok(c) if c.steps == 0 => continue,
                // Lagged: some of the runs missed may have decided steps.
                _ => {}
            },
            _ = shared.lead.became.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        // One replica sends: the leader (a second pass would wait for the first's
        // lock anyway, holding a connection for nothing).
        if !shared.lead.leads() {
            continue;
        }
        let me = shared.clone();
        let mut st = match store.take() {
            Some(s) => s,
            None => match me.open_store() {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "outbox: cannot open the store");
                    continue;
                }
            },
        };
        let done = tokio::task::spawn_blocking(move || {
            let rules = me.rules();
            let stopping = || *me.shutdown.borrow();
            let r = arrears_app::correspondence::process_until(
                &mut st,
                &rules.set,
                me.delivery.as_ref(),
                me.clock.now(),
                &stopping,
            );
            let pending = st.messages_waiting().unwrap_or(0);
            (st, r, pending)
        })
        .await;
        match done {
            Ok((st, r, pending)) => {
                store = Some(st);
                gauge!("arrears_messages_waiting").set(pending as f64);
                match r {
                    Ok(s) => {
                        for (result, n) in [
                            ("sent", s.sent),
                            ("deferred", s.deferred),
                            ("retried", s.retried),
                            ("fell_back", s.fell_back),
                            ("failed", s.failed),
                            ("held", s.held - s.delivery_off),
                            ("delivery_off", s.delivery_off),
                            ("in_doubt", s.in_doubt),
                        ] {
                            counter!("arrears_messages_total", "result" => result)
                                .increment(n as u64);
                        }
                        counter!("arrears_call_tasks_total").increment(s.call_tasks as u64);
                        if s.composed + s.sent + s.deferred + s.failed > 0 {
                            tracing::info!(
                                composed = s.composed,
                                sent = s.sent,
                                deferred = s.deferred,
                                retried = s.retried,
                                fell_back = s.fell_back,
                                failed = s.failed,
                                "outbox"
                            );
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "outbox pass failed"),
                }
            }
            Err(e) => tracing::error!(error = %e, "outbox worker panicked"),
        }
    }
}
