//! The text the command line prints for what it can get both from the database and
//! from a daemon. The local commands convert their store results with the daemon's
//! own conversions (`case_to_pb`, `entry_to_pb`, …) and both paths print the gRPC
//! types here, so `arrears X` and `arrears --remote URL X` cannot drift apart.

use anyhow::{Context, Result};
use arrears::engine::run::Summary;
use arrears::server::pb;
use rust_decimal::Decimal;
use serde_json::Value;

/// An amount at its currency's minor unit (2 for EUR, 0 for JPY): what a person
/// reads, where the exact figure (`--json`) may carry conversion digits.
pub fn amount(v: &str, currency: &str) -> String {
    match v.parse::<Decimal>() {
        Ok(d) => fixed(d, arrears::money::minor_digits_of(currency)),
        // Not a number: shown as it came rather than hidden.
        Err(_) => v.to_string(),
    }
}

fn fixed(d: Decimal, digits: u32) -> String {
    arrears::money::round_to(d, digits).to_string()
}

pub fn money(m: Option<&pb::Money>) -> String {
    match m {
        Some(m) => format!("{} {}", amount(&m.amount, &m.currency), m.currency),
        None => "-".into(),
    }
}

/// Scores with one decimal whatever their scale (`80.0`, `52.7`), so a column of them
/// lines up.
pub fn score(v: &str) -> String {
    match v.parse::<Decimal>() {
        Ok(d) => fixed(d, 1),
        Err(_) => v.to_string(),
    }
}

pub fn priority(p: i32) -> &'static str {
    match pb::Priority::try_from(p) {
        Ok(pb::Priority::High) => "high",
        Ok(pb::Priority::Medium) => "medium",
        Ok(pb::Priority::Low) => "low",
        _ => "-",
    }
}

fn dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('…')).collect()
    }
}

/// Machine-readable output of a gRPC answer (local and remote alike).
pub fn json<T: serde::Serialize>(v: &T) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A worklist page, `whose` naming it ("chen", "yours"). A page shorter than the list
/// says so: a silent page limit reads as "that is all my work".
pub fn worklist(page: &pb::WorklistPage, whose: &str) {
    let shown = page.entries.len();
    let total = page.total as usize;
    if total == 0 {
        outln!("worklist of {whose}: no entries");
        return;
    }
    if shown < total {
        outln!("worklist of {whose}: {shown} of {total} entries (--limit {total} for all)");
    } else {
        outln!("worklist of {whose}: {total} entries");
    }
    let base = page
        .entries
        .iter()
        .find_map(|e| e.amount.as_ref().map(|m| m.currency.clone()))
        .unwrap_or_default();
    outln!(
        "{:<10} {:<6} {:>6} {:>7} {:<18} {:<28} {:>5} {:>14} {:<10} {:<12} reason",
        "nad",
        "prio",
        "score",
        "overdue",
        "customer",
        "name",
        "items",
        format!("amount {base}"),
        "profile",
        "assigned"
    );
    for e in &page.entries {
        outln!(
            "{:<10} {:<6} {:>6} {:>7} {:<18} {:<28} {:>5} {:>14} {:<10} {:<12} {}",
            e.nad,
            priority(e.priority),
            score(&e.score),
            e.days_overdue,
            e.customer,
            truncate(&e.customer_name, 28),
            e.items,
            e.amount
                .as_ref()
                .map(|m| amount(&m.amount, &m.currency))
                .unwrap_or_default(),
            e.profile,
            if e.collector.is_empty() {
                "(unassigned)"
            } else {
                &e.collector
            },
            e.reason
        );
    }
}

pub fn case(c: &pb::Case) {
    outln!(
        "case {} [{}] {} — {} {}",
        c.id,
        c.status,
        c.document_no,
        c.customer,
        c.customer_name
    );
    if !c.external_ref.is_empty() {
        outln!("  external reference  {}", c.external_ref);
    }
    outln!("  document / due      {} / {}", c.document_date, c.due_date);
    let currency = c
        .open_amount
        .as_ref()
        .map(|m| m.currency.as_str())
        .unwrap_or_default();
    let amt = |m: &Option<pb::Money>| {
        m.as_ref()
            .map(|m| amount(&m.amount, &m.currency))
            .unwrap_or_else(|| "-".into())
    };
    outln!(
        "  amount open/orig    {} / {} {currency}",
        amt(&c.open_amount),
        amt(&c.original_amount)
    );
    outln!(
        "  opened              {}{}",
        c.opened_on,
        if c.closed_on.is_empty() {
            String::new()
        } else {
            format!(", closed {} ({})", c.closed_on, c.close_reason)
        }
    );
    outln!(
        "  next activity due   {}   priority {}",
        c.nad,
        priority(c.priority)
    );
    outln!(
        "  assigned to         {}",
        if c.assigned_to.is_empty() {
            "(nobody)"
        } else {
            &c.assigned_to
        }
    );
    outln!("  activity            {}", activity(c.activity.as_ref()));
    for p in &c.promises {
        outln!("  {}", promise_line(p));
    }
    for d in &c.disputes {
        outln!(
            "  dispute {}: {} — opened {}{}",
            d.id,
            d.reason,
            d.opened_on,
            if d.resolved_on.is_empty() {
                String::new()
            } else {
                format!(", resolved {} ({})", d.resolved_on, d.resolution)
            }
        );
    }
    if !c.history.is_empty() {
        outln!("  history:");
    }
    for e in &c.history {
        outln!("    {} {:<10} {:<10} {}", e.on, e.kind, e.actor, e.detail);
    }
}

fn activity(a: Option<&pb::Activity>) -> String {
    let Some(a) = a else {
        return "none".into();
    };
    match a.state.as_str() {
        "open" => format!(
            "open: {}/{}, {} day(s) to complete from {}",
            a.category, a.subcategory, a.days_to_complete, a.last_edited_on
        ),
        "completed" if a.promise_date.is_empty() => format!("completed {}", a.completed_on),
        "completed" => format!(
            "completed {}, promise to pay by {}",
            a.completed_on, a.promise_date
        ),
        "" => "none".into(),
        s => s.to_string(),
    }
}

pub fn promise_line(p: &pb::Promise) -> String {
    let judged = if p.judged_on.is_empty() {
        String::new()
    } else {
        let currency = p.amount.as_ref().map(|m| m.currency.as_str()).unwrap_or("");
        format!(
            " (judged {}; paid {} by {})",
            p.judged_on,
            if p.paid.is_empty() {
                "0".to_string()
            } else {
                amount(&p.paid, currency)
            },
            dash(&p.paid_on)
        )
    };
    format!(
        "promise {}: {} by {} on {} — {}{judged}",
        p.id,
        money(p.amount.as_ref()),
        p.promised_on,
        p.documents.join(", "),
        p.status
    )
}

pub fn promises(list: &[pb::Promise], customer: &str) {
    if list.is_empty() {
        outln!("no promises for {customer}");
    }
    for p in list {
        outln!("{}", promise_line(p));
    }
}

/// Outbox messages. The business day is the as-of date of the escalation step a
/// message carries out; the attempt and send times are the wall clock, labelled so,
/// because a world run `--as-of` another day does not move them.
pub fn messages(list: &[pb::Message], customer: Option<&str>) {
    if list.is_empty() {
        match customer {
            Some(c) => outln!("no messages for {c}"),
            None => outln!("no messages"),
        }
        return;
    }
    outln!(
        "{:>5} {:<12} {:<16} {:<7} {:<9} {:<28} subject (attempts; wall-clock time) why",
        "id",
        "business day",
        "customer",
        "channel",
        "status",
        "recipient"
    );
    for m in list {
        let why = match m.status.as_str() {
            "deferred" => &m.defer_reason,
            "sent" => &m.receipt,
            _ => &m.last_error,
        };
        let clock = if m.sent_at.is_empty() {
            format!("next attempt {}", m.next_attempt)
        } else {
            format!("sent {}", m.sent_at)
        };
        outln!(
            "{:>5} {:<12} {:<16} {:<7} {:<9} {:<28} {} ({} attempts; {clock} wall clock) {}",
            m.id,
            dash(&m.business_date),
            m.customer,
            m.channel,
            m.status,
            dash(&m.recipient),
            m.subject,
            m.attempts,
            why
        );
    }
}

pub fn explanation(e: &pb::Explanation) -> Result<()> {
    let whole: Value = serde_json::from_str(&e.trace_json).context("explanation trace_json")?;
    let f = &whole["facts"];
    let t = &whole["trace"];
    // Amounts of the facts are in the rules' base currency, which the explanation
    // does not name; two decimals, as for most currencies.
    let num = |v: &Value| match v {
        Value::String(s) => s.parse().map_or_else(|_| s.clone(), |d| fixed(d, 2)),
        Value::Null => "-".into(),
        v => v.to_string(),
    };
    let int = |v: &Value| v.as_i64().unwrap_or_default();
    outln!("{} — as of {}, rules {}", e.customer, e.as_of, e.rules_hash);
    outln!(
        "facts: open {} in {} items; overdue {} in {} items; oldest {} days; disputed {}; blocked {}; promises kept {} broken {}",
        num(&f["open_amount"]),
        int(&f["open_items"]),
        num(&f["overdue_amount"]),
        int(&f["overdue_items"]),
        int(&f["max_days_overdue"]),
        int(&f["disputed_items"]),
        int(&f["blocked_items"]),
        int(&f["promises_kept"]),
        int(&f["promises_broken"])
    );
    outln!("strategy  {}", e.strategy_why);
    outln!("segment   {}", e.segment_why);
    outln!(
        "score     {} = sum of the points of every criterion that holds:",
        score(&e.score)
    );
    for c in &e.criteria {
        outln!(
            "  {} {:<28} {:>7}  {}{}",
            if c.held { "+" } else { " " },
            c.name,
            if c.held { c.points.as_str() } else { "-" },
            c.condition,
            if c.exit {
                "  (exit: later criteria not evaluated)"
            } else {
                ""
            }
        );
    }
    for n in t["script_notes"].as_array().into_iter().flatten() {
        outln!("  script: {}", n.as_str().unwrap_or_default());
    }
    outln!("profile   {}", e.profile_why);
    outln!("group     {}", e.route_why);
    outln!(
        "priority  {} (highest of the open cases)",
        priority(e.priority)
    );
    let cases = t["cases"].as_array().map(Vec::as_slice).unwrap_or_default();
    const SHOWN: usize = 15;
    if cases.len() > SHOWN {
        outln!(
            "  (the {SHOWN} most urgent of {} open cases; --json lists all)",
            cases.len()
        );
    }
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    for c in cases.iter().take(SHOWN) {
        outln!(
            "  case {:<6} {:<22} {:>4} days  {:>16}  NAD {} ({})  {} — {}",
            c["case_id"]
                .as_i64()
                .map(|i| i.to_string())
                .unwrap_or_else(|| "new".into()),
            s(&c["document_no"]),
            int(&c["days_overdue"]),
            s(&c["open_amount"]),
            s(&c["nad"]),
            s(&c["nad_rule"]),
            s(&c["priority"]),
            s(&c["priority_rule"])
        );
    }
    let esc: Value = serde_json::from_str(&e.escalation_why).unwrap_or_default();
    // A daemon older than the ERP procedure mapping sends no ladder.
    let ladder = t["ladder_why"]
        .as_str()
        .filter(|w| !w.is_empty())
        .map(|w| format!(" {w}"))
        .unwrap_or_default();
    outln!(
        "escalation ladder{ladder}: the items' ages imply level {}; step {}",
        int(&esc["reached"]),
        e.escalation
    );
    match (&esc["decision"], esc["why_not"].as_str()) {
        (d @ Value::Object(_), _) => outln!(
            "  step: {} on {} item(s) — {}",
            num(&d["amount"]),
            d["items"].as_array().map_or(0, Vec::len),
            s(&d["reason"])
        ),
        (_, Some(w)) => outln!("  no step: {w}"),
        _ => {}
    }
    outln!("worklist  {}", e.worklist_why);
    Ok(())
}

/// A run: what it changed, then the whole portfolio after it, kept apart so an
/// incremental run with nothing to do does not read as an empty portfolio.
pub fn run_summary(r: &pb::RunSummary) -> Result<()> {
    let s: Summary = serde_json::from_str(&r.summary_json).context("run summary_json")?;
    outln!(
        "run {} ({}) as of {} with rules {} in {} ms",
        r.run_id,
        r.mode,
        r.as_of,
        s.rules_hash,
        r.duration_ms
    );
    outln!(
        "this run:{}",
        if s.customers_evaluated == 0 {
            " nothing changed since the last run"
        } else {
            ""
        }
    );
    outln!(
        "  customers evaluated  {}{}",
        s.customers_evaluated,
        if s.customers_skipped > 0 {
            format!(" ({} skipped)", s.customers_skipped)
        } else {
            String::new()
        }
    );
    outln!(
        "  cases                {} opened, {} updated, {} closed",
        s.cases_opened,
        s.cases_updated,
        s.cases_closed
    );
    outln!(
        "  escalations          {}{}",
        s.escalations,
        with_map(&s.escalations_by_level)
    );
    if s.customers_evaluated > 0 {
        outln!(
            "  segments             {}",
            fmt_map(&s.customers_by_segment)
        );
        outln!(
            "  profiles             {}",
            fmt_map(&s.customers_by_profile)
        );
        outln!(
            "  worklist entries     {} written, {} unassigned{}",
            s.worklist.entries,
            s.worklist.unassigned,
            with_map(&s.worklist.by_collector)
        );
    }
    if s.script_errors > 0 {
        outln!(
            "  script errors        {} ({} limit hits)",
            s.script_errors,
            s.script_limit_hits
        );
    }
    for p in &s.problems {
        outln!("  problem: {p}");
    }
    let p = &s.portfolio;
    let prio = |k: &str| p.open_cases_by_priority.get(k).copied().unwrap_or(0);
    outln!("portfolio after the run:");
    outln!("  customers            {}", p.customers);
    outln!(
        "  open cases           {} (high {}, medium {}, low {})",
        p.open_cases,
        prio("high"),
        prio("medium"),
        prio("low")
    );
    outln!(
        "  worklist             {} entries, {} unassigned",
        p.worklist_entries,
        p.worklist_unassigned
    );
    Ok(())
}

fn fmt_map(m: &std::collections::BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn with_map(m: &std::collections::BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        String::new()
    } else {
        format!(" ({})", fmt_map(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_round_to_the_minor_unit_and_scores_to_one_decimal() {
        assert_eq!(amount("33735.68968", "EUR"), "33735.69");
        assert_eq!(amount("641.8", "EUR"), "641.80");
        assert_eq!(amount("1000.5", "JPY"), "1001");
        assert_eq!(amount("1.2345", "KWD"), "1.235");
        assert_eq!(score("80"), "80.0");
        assert_eq!(score("52.66"), "52.7");
        assert_eq!(score("55.0"), "55.0");
    }
}
