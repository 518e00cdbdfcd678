//! Payment agreements (renegotiation): a proposal prices the selected items with the
//! interest policy, applies a discount and builds an instalment plan; within the
//! proposer's limits it takes effect at once, beyond them it waits for someone whose
//! limits cover it — never the proposer. Taking effect replaces the items (status
//! `agreement`, their cases closed) by one item per instalment and stores the
//! debt-recognition letter. A missed instalment breaks the agreement (the remaining
//! instalments fall due at once); the last one paid ends it with an acquittance.

use crate::db::Db;
use chrono::NaiveDate;
use rusqlite::{params, Connection, OptionalExtension};
use rust_decimal::Decimal;
use serde::Serialize;

use super::customer::{customer_event, mark_changed};
use super::{date, dec, Result, Store, StoreError};
use arrears_core::domain::Role;
use arrears_core::money::{Currency, Money, Rates};
use arrears_engine::case::add_days;
use arrears_finance::{
    self as finance, agreement, InterestPolicy, ItemDebtInput, Payment, PlanKind,
};
use arrears_rules::letters::{self, AgreementLetter};
use arrears_rules::raw::AgreementsSection;
use arrears_rules::templates::{self, Templates};

/// What a collector proposes.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub case_ids: Vec<i64>,
    pub plan: PlanKind,
    pub installments: u32,
    pub first_due: NaiveDate,
    /// Share of the updated debt waived, in percent.
    pub discount_percent: Decimal,
    /// The day of the proposal: interest runs to it.
    pub on: NaiveDate,
}

/// The rules an agreement is made under.
pub struct Terms<'a> {
    pub interest: &'a InterestPolicy,
    pub agreements: &'a AgreementsSection,
    pub rates: &'a Rates,
    pub templates: Option<&'a Templates>,
}

impl<'a> Terms<'a> {
    /// The terms of a rule set; `None` when it defines no `interest` and `agreements`
    /// (renegotiation is then off).
    pub fn of(rules: &'a arrears_rules::RuleSet) -> Option<Terms<'a>> {
        Some(Terms {
            interest: rules.interest.as_ref()?,
            agreements: rules.agreements.as_ref()?,
            rates: &rules.rates,
            templates: rules.templates.as_deref(),
        })
    }
}

pub const TERMS_MISSING: &str =
    "the rules define no `interest` and `agreements` sections; renegotiation is off";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgreementView {
    pub id: i64,
    /// COMPANY/CODE
    pub customer: String,
    pub status: String,
    pub currency: String,
    pub as_of: NaiveDate,
    pub plan: String,
    pub installments: u32,
    pub monthly_rate: Decimal,
    pub first_due: NaiveDate,
    pub principal: Decimal,
    pub fine: Decimal,
    pub interest: Decimal,
    pub costs: Decimal,
    pub discount_percent: Decimal,
    pub discount: Decimal,
    pub debt: Decimal,
    pub proposed_by: String,
    pub proposed_on: NaiveDate,
    pub needs_approval: Option<String>,
    pub decided_by: Option<String>,
    pub decided_on: Option<NaiveDate>,
    pub decision_note: Option<String>,
    pub ended_on: Option<NaiveDate>,
    pub end_reason: Option<String>,
    pub items: Vec<AgreementItem>,
    pub schedule: Vec<ScheduleLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgreementItem {
    pub document_no: String,
    pub due_date: NaiveDate,
    pub open_amount: Decimal,
    pub fine: Decimal,
    pub interest: Decimal,
    pub costs: Decimal,
    /// How the figures came about, line by line.
    pub lines: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleLine {
    pub number: u32,
    pub due: NaiveDate,
    pub principal: Decimal,
    pub interest: Decimal,
    pub amount: Decimal,
    /// The instalment's item once the agreement is in force.
    pub document_no: Option<String>,
    pub open_amount: Option<Decimal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentView {
    pub id: i64,
    pub agreement_id: Option<i64>,
    pub kind: String,
    pub language: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub created_on: NaiveDate,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SettleStats {
    pub broken: u32,
    pub paid: u32,
}

fn agreement_err(e: agreement::AgreementError) -> StoreError {
    StoreError::Invalid(e.to_string())
}

impl Store {
    /// Prices the items of `p.case_ids` and records the proposal: in force at once when
    /// it is within the proposer's limits, else pending approval.
    pub fn propose_agreement(
        &mut self,
        p: &Proposal,
        who: &str,
        role: Role,
        terms: &Terms,
    ) -> Result<AgreementView> {
        let t = terms.agreements;
        if p.case_ids.is_empty() {
            return Err(StoreError::Invalid(
                "case_ids: an agreement needs at least one case".into(),
            ));
        }
        let request = agreement::Request {
            plan: p.plan,
            installments: p.installments,
            first_due: p.first_due,
            discount_percent: p.discount_percent,
            on: p.on,
        };
        let plan_terms = t.plan_terms();
        agreement::check_request(&request, &plan_terms).map_err(agreement_err)?;
        let tx = self.write_tx()?;
        let mut customer: Option<(i64, String)> = None;
        let mut items: Vec<(i64, AgreementItem)> = Vec::new();
        let (mut principal, mut fine, mut interest, mut costs) =
            (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
        for &case_id in &p.case_ids {
            type Row = (
                i64,
                String,
                i64,
                String,
                String,
                String,
                String,
                String,
                String,
            );
            let (cust, status, item_id, doc, due, original, open, currency, item_status): Row = tx
                .query_row(
                    "SELECT c.customer_id, c.status, i.id, i.document_no, i.due_date, i.original_amount,
                            i.open_amount, i.currency, i.status
                     FROM cases c JOIN items i ON i.id = c.item_id WHERE c.id = ?1",
                    [case_id],
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                            r.get(8)?,
                        ))
                    },
                )
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("case {case_id}")))?;
            if status != "open" || item_status != "open" {
                return Err(StoreError::State(format!(
                    "case {case_id} ({doc}) is not open; an agreement covers open items only"
                )));
            }
            match &customer {
                None => customer = Some((cust, currency.clone())),
                Some((c, _)) if *c != cust => {
                    return Err(StoreError::Invalid(format!(
                        "case {case_id} belongs to another customer; an agreement covers one customer"
                    )))
                }
                Some((_, cur)) if *cur != currency => {
                    return Err(StoreError::Invalid(format!(
                        "case {case_id} is in {currency}, the others in {cur}; an agreement is in one currency"
                    )))
                }
                Some(_) => {}
            }
            if items.iter().any(|(i, _)| *i == item_id) {
                return Err(StoreError::Invalid(format!(
                    "case {case_id} is named twice"
                )));
            }
            let disputed: bool = tx
                .query_row(
                    "SELECT EXISTS(SELECT 1 FROM dispute_items di JOIN disputes d ON d.id = di.dispute_id
                     WHERE di.item_id = ?1 AND d.resolved_on IS NULL)",
                    [item_id],
                    |r| r.get(0),
                )?;
            if disputed {
                return Err(StoreError::State(format!(
                    "{doc} is disputed; settle the dispute before renegotiating it"
                )));
            }
            let original = dec("original_amount", &original)?;
            let open = dec("open_amount", &open)?;
            let due = date("due_date", &due)?;
            let mut pays: Vec<Payment> = Vec::new();
            {
                let mut st = tx.prepare_cached(
                    "SELECT value_date, amount FROM payments WHERE item_id = ?1 AND currency = ?2 ORDER BY value_date",
                )?;
                let mut rows = st.query(params![item_id, currency])?;
                while let Some(r) = rows.next()? {
                    pays.push(Payment {
                        date: date("value_date", &r.get::<_, String>(0)?)?,
                        amount: dec("payments.amount", &r.get::<_, String>(1)?)?,
                    });
                }
            }
            let (input, note) = ItemDebtInput::from_record(original, open, due, pays);
            let mu = arrears_core::money::minor_digits_of(&currency);
            let d = finance::debt(terms.interest, &input, p.on, mu)
                .map_err(|e| StoreError::Invalid(format!("{doc}: {e}")))?;
            principal += d.principal_outstanding;
            fine += d.fine_outstanding;
            interest += d.interest_outstanding;
            costs += d.costs_outstanding;
            let mut lines = d.lines.clone();
            lines.extend(note);
            items.push((
                item_id,
                AgreementItem {
                    document_no: doc,
                    due_date: due,
                    open_amount: open,
                    fine: d.fine_outstanding,
                    interest: d.interest_outstanding,
                    costs: d.costs_outstanding,
                    lines,
                },
            ));
        }
        let Some((customer_id, currency)) = customer else {
            unreachable!("at least one case was read")
        };
        let agreement::Priced {
            discount,
            debt,
            monthly_rate: rate,
            schedule,
        } = agreement::price(
            principal + fine + interest + costs,
            &currency,
            &request,
            &plan_terms,
        )
        .map_err(agreement_err)?;
        let cur = Currency::parse(&currency).map_err(|_| StoreError::Corrupt {
            column: "items.currency",
            value: currency.clone(),
        })?;
        let debt_base = terms
            .rates
            .to_base(Money::new(debt, cur))
            .map_err(|e| StoreError::State(format!("cannot weigh the debt against limits: {e}")))?;
        let over = agreement::exceeded(
            role,
            t.limits_of(role).as_ref(),
            p.discount_percent,
            p.installments,
            debt_base,
        );
        let needs = (!over.is_empty()).then(|| over.join("; "));
        let detail = serde_json::json!({
            "items": items.iter().map(|(_, i)| i).collect::<Vec<_>>(),
            "policy": terms.interest,
        });
        tx.execute(
            "INSERT INTO agreements(customer_id, status, currency, as_of, plan, installments, monthly_rate, first_due,
                principal, fine, interest, costs, discount_percent, discount, debt, detail, proposed_by, proposed_on,
                needs_approval)
             VALUES (?1, 'pending', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            params![
                customer_id,
                currency,
                p.on.to_string(),
                plan_name(p.plan),
                p.installments,
                rate.to_string(),
                p.first_due.to_string(),
                principal.to_string(),
                fine.to_string(),
                interest.to_string(),
                costs.to_string(),
                p.discount_percent.to_string(),
                discount.to_string(),
                debt.to_string(),
                detail.to_string(),
                who,
                p.on.to_string(),
                needs,
            ],
        )?;
        let id = tx.last_insert_rowid();
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO agreement_items(agreement_id, item_id, open_amount) VALUES (?1, ?2, ?3)",
            )?;
            for (item_id, it) in &items {
                st.execute(params![id, item_id, it.open_amount.to_string()])?;
            }
            let mut st = tx.prepare_cached(
                "INSERT INTO agreement_installments(agreement_id, number, due_date, principal, interest, amount)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for i in &schedule {
                st.execute(params![
                    id,
                    i.number,
                    i.due.to_string(),
                    i.principal.to_string(),
                    i.interest.to_string(),
                    i.amount.to_string()
                ])?;
            }
        }
        let event = match &needs {
            None => format!("agreement {id} proposed by {who}: {debt} {currency} in {} instalments", p.installments),
            Some(why) => format!(
                "agreement {id} proposed by {who}: {debt} {currency} in {} instalments; needs approval ({why})",
                p.installments
            ),
        };
        customer_event(&Db::Lite(&tx), customer_id, p.on, "agreement", &event)?;
        if needs.is_none() {
            activate(&tx, id, p.on, terms.templates)?;
            tx.execute(
                "UPDATE agreements SET decided_by = ?2, decided_on = ?3, decision_note = 'within the proposer''s limits'
                 WHERE id = ?1",
                params![id, who, p.on.to_string()],
            )?;
        }
        let view = agreement(&tx, id)?;
        tx.commit()?;
        Ok(view)
    }

    /// Approves a pending agreement: refused for the proposer and for anyone whose
    /// limits do not cover it. The items are checked to be as they were proposed.
    pub fn approve_agreement(
        &mut self,
        id: i64,
        who: &str,
        role: Role,
        note: &str,
        on: NaiveDate,
        terms: &Terms,
    ) -> Result<AgreementView> {
        let tx = self.write_tx()?;
        let a = agreement(&tx, id)?;
        if a.status != "pending" {
            return Err(StoreError::State(format!(
                "agreement {id} is {}; only a pending one can be approved",
                a.status
            )));
        }
        if a.proposed_by == who {
            return Err(StoreError::Denied(format!(
                "agreement {id} was proposed by {who}; someone else must approve it"
            )));
        }
        if a.first_due < on {
            return Err(StoreError::State(format!(
                "agreement {id}: its first instalment was due {} already; propose again",
                a.first_due
            )));
        }
        let disputed: Option<String> = tx
            .query_row(
                "SELECT i.document_no FROM agreement_items ai JOIN items i ON i.id = ai.item_id
                 JOIN dispute_items di ON di.item_id = ai.item_id JOIN disputes d ON d.id = di.dispute_id
                 WHERE ai.agreement_id = ?1 AND d.resolved_on IS NULL LIMIT 1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(doc) = disputed {
            return Err(StoreError::State(format!(
                "agreement {id}: {doc} was disputed since the proposal; settle the dispute first"
            )));
        }
        let cur = Currency::parse(&a.currency).map_err(|_| StoreError::Corrupt {
            column: "agreements.currency",
            value: a.currency.clone(),
        })?;
        let debt_base = terms
            .rates
            .to_base(Money::new(a.debt, cur))
            .map_err(|e| StoreError::State(format!("cannot weigh the debt against limits: {e}")))?;
        let over = agreement::exceeded(
            role,
            terms.agreements.limits_of(role).as_ref(),
            a.discount_percent,
            a.installments,
            debt_base,
        );
        if !over.is_empty() {
            return Err(StoreError::Denied(format!(
                "{who} ({}) cannot approve agreement {id}: {}",
                role.as_str(),
                over.join("; ")
            )));
        }
        activate(&tx, id, on, terms.templates)?;
        tx.execute(
            "UPDATE agreements SET decided_by = ?2, decided_on = ?3, decision_note = ?4 WHERE id = ?1",
            params![id, who, on.to_string(), note],
        )?;
        let view = agreement(&tx, id)?;
        tx.commit()?;
        Ok(view)
    }

    /// Rejects a pending agreement, with the reason; the items stay in collection.
    pub fn reject_agreement(
        &mut self,
        id: i64,
        who: &str,
        reason: &str,
        on: NaiveDate,
    ) -> Result<AgreementView> {
        if reason.trim().is_empty() {
            return Err(StoreError::Invalid(
                "reason: say why the agreement is rejected".into(),
            ));
        }
        let tx = self.write_tx()?;
        let a = agreement(&tx, id)?;
        if a.status != "pending" {
            return Err(StoreError::State(format!(
                "agreement {id} is {}; only a pending one can be rejected",
                a.status
            )));
        }
        tx.execute(
            "UPDATE agreements SET status = 'rejected', decided_by = ?2, decided_on = ?3, decision_note = ?4,
                ended_on = ?3, end_reason = 'rejected' WHERE id = ?1",
            params![id, who, on.to_string(), reason],
        )?;
        let customer_id: i64 = tx.query_row(
            "SELECT customer_id FROM agreements WHERE id = ?1",
            [id],
            |r| r.get(0),
        )?;
        customer_event(
            &Db::Lite(&tx),
            customer_id,
            on,
            "agreement",
            &format!("agreement {id} rejected by {who}: {reason}"),
        )?;
        let view = agreement(&tx, id)?;
        tx.commit()?;
        Ok(view)
    }

    pub fn agreement(&self, id: i64) -> Result<AgreementView> {
        agreement(self.conn()?, id)
    }

    /// Agreements, newest first; of one customer when given.
    pub fn list_agreements(&self, customer_id: Option<i64>) -> Result<Vec<AgreementView>> {
        let ids: Vec<i64> = self
            .conn()?
            .prepare(
                "SELECT id FROM agreements WHERE ?1 IS NULL OR customer_id = ?1 ORDER BY id DESC",
            )?
            .query_map([customer_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        ids.into_iter()
            .map(|id| agreement(self.conn()?, id))
            .collect()
    }

    /// Breaks agreements with an instalment unpaid `break_after_days` after its due
    /// date (the remaining instalments fall due on `as_of`), and ends those whose
    /// instalments are all paid, with an acquittance receipt.
    pub fn settle_agreements(
        &mut self,
        as_of: NaiveDate,
        terms: &AgreementsSection,
        templates: Option<&Templates>,
    ) -> Result<SettleStats> {
        let tx = self.write_tx()?;
        let mut stats = SettleStats::default();
        let active: Vec<(i64, i64)> = tx
            .prepare("SELECT id, customer_id FROM agreements WHERE status = 'active'")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let cutoff = add_days(as_of, -terms.break_after_days);
        for (id, customer_id) in active {
            let missed: Option<(i64, String)> = tx
                .query_row(
                    "SELECT ai.number, ai.due_date FROM agreement_installments ai JOIN items i ON i.id = ai.item_id
                     WHERE ai.agreement_id = ?1 AND i.status = 'open' AND ai.due_date < ?2
                     ORDER BY ai.number LIMIT 1",
                    params![id, cutoff.to_string()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((n, due)) = missed {
                let reason = format!(
                    "instalment {n} due {due} unpaid after {} days; the remaining balance is due at once",
                    terms.break_after_days
                );
                tx.execute(
                    "UPDATE agreements SET status = 'broken', ended_on = ?2, end_reason = ?3 WHERE id = ?1",
                    params![id, as_of.to_string(), reason],
                )?;
                // Instalments not due yet fall due now (agreement::due_at_once).
                let ahead: Vec<(i64, String, String)> = tx
                    .prepare(
                        "SELECT i.id, i.open_amount, ai.interest FROM agreement_installments ai
                         JOIN items i ON i.id = ai.item_id
                         WHERE ai.agreement_id = ?1 AND i.status = 'open' AND i.due_date > ?2",
                    )?
                    .query_map(params![id, as_of.to_string()], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?
                    .collect::<Result<_, _>>()?;
                for (item, open, unearned) in ahead {
                    let open = dec("items.open_amount", &open)?;
                    let unearned = dec("agreement_installments.interest", &unearned)?;
                    let left = agreement::due_at_once(open, unearned);
                    let status = if left.is_zero() { "cleared" } else { "open" };
                    tx.execute(
                        "UPDATE items SET due_date = ?2, open_amount = ?3, status = ?4 WHERE id = ?1",
                        params![item, as_of.to_string(), left.to_string(), status],
                    )?;
                }
                customer_event(
                    &Db::Lite(&tx),
                    customer_id,
                    as_of,
                    "agreement broken",
                    &format!("agreement {id}: {reason}"),
                )?;
                mark_changed(&Db::Lite(&tx), customer_id)?;
                stats.broken += 1;
                continue;
            }
            let open: i64 = tx.query_row(
                "SELECT COUNT(*) FROM agreement_installments ai JOIN items i ON i.id = ai.item_id
                 WHERE ai.agreement_id = ?1 AND i.status <> 'cleared'",
                [id],
                |r| r.get(0),
            )?;
            if open == 0 {
                tx.execute(
                    "UPDATE agreements SET status = 'paid', ended_on = ?2, end_reason = 'every instalment paid' WHERE id = ?1",
                    params![id, as_of.to_string()],
                )?;
                customer_event(
                    &Db::Lite(&tx),
                    customer_id,
                    as_of,
                    "agreement paid",
                    &format!("agreement {id} paid in full"),
                )?;
                if let Some(t) = templates {
                    write_letter(&tx, t, AgreementLetter::Acquittance, customer_id, id, as_of)?;
                }
                stats.paid += 1;
            }
        }
        tx.commit()?;
        Ok(stats)
    }

    /// Documents of a customer or of one agreement, newest first.
    pub fn documents(
        &self,
        customer_id: Option<i64>,
        agreement_id: Option<i64>,
    ) -> Result<Vec<DocumentView>> {
        let mut st = self.conn()?.prepare(
            "SELECT id, agreement_id, kind, language, subject, text, html, created_on FROM documents
             WHERE (?1 IS NULL OR customer_id = ?1) AND (?2 IS NULL OR agreement_id = ?2) ORDER BY id DESC",
        )?;
        let mut rows = st.query(params![customer_id, agreement_id])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(DocumentView {
                id: r.get(0)?,
                agreement_id: r.get(1)?,
                kind: r.get(2)?,
                language: r.get(3)?,
                subject: r.get(4)?,
                text: r.get(5)?,
                html: r.get(6)?,
                created_on: date("documents.created_on", &r.get::<_, String>(7)?)?,
            });
        }
        Ok(out)
    }
}

fn plan_name(p: PlanKind) -> &'static str {
    match p {
        PlanKind::Price => "price",
        PlanKind::Sac => "sac",
        PlanKind::NoInterest => "no_interest",
    }
}

/// Puts an agreement in force: the items it replaces leave collection (their cases
/// close), one item per instalment takes their place, and the debt-recognition
/// letter is stored.
fn activate(tx: &Connection, id: i64, on: NaiveDate, templates: Option<&Templates>) -> Result<()> {
    let (customer_id, currency): (i64, String) = tx.query_row(
        "SELECT customer_id, currency FROM agreements WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let items: Vec<(i64, String, String, String, String)> = tx
        .prepare(
            "SELECT ai.item_id, ai.open_amount, i.open_amount, i.status, i.document_no
             FROM agreement_items ai JOIN items i ON i.id = ai.item_id WHERE ai.agreement_id = ?1",
        )?
        .query_map([id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    for (item_id, then, now, status, doc) in &items {
        if status != "open" || dec("open_amount", then)? != dec("open_amount", now)? {
            return Err(StoreError::State(format!(
                "{doc} changed since the proposal (open {now}, was {then}; {status}); propose again"
            )));
        }
        tx.execute(
            "UPDATE items SET status = 'agreement' WHERE id = ?1",
            [item_id],
        )?;
        let cases: Vec<i64> = tx
            .prepare("SELECT id FROM cases WHERE item_id = ?1 AND status = 'open'")?
            .query_map([item_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for case_id in cases {
            let reason = format!("replaced by agreement {id}");
            tx.execute(
                "UPDATE cases SET status = 'closed', closed_on = ?2, close_reason = ?3 WHERE id = ?1",
                params![case_id, on.to_string(), reason],
            )?;
            tx.execute(
                "INSERT INTO case_events(case_id, on_date, kind, actor, detail) VALUES (?1, ?2, 'closed', 'agreement', ?3)",
                params![case_id, on.to_string(), reason],
            )?;
        }
    }
    let company: String = tx.query_row(
        "SELECT company FROM customers WHERE id = ?1",
        [customer_id],
        |r| r.get(0),
    )?;
    let plan: Vec<(u32, String, String)> = tx
        .prepare("SELECT number, due_date, amount FROM agreement_installments WHERE agreement_id = ?1 ORDER BY number")?
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let n = plan.len();
    for (number, due, amount) in plan {
        tx.execute(
            "INSERT INTO items(source, external_id, customer_id, document_no, document_date, due_date,
                original_amount, open_amount, currency, status)
             VALUES ('agreement', ?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, 'open')",
            params![
                format!("{id}/{number}"),
                customer_id,
                format!("AGR-{id}-{number}"),
                on.to_string(),
                due,
                amount,
                currency
            ],
        )?;
        let item = tx.last_insert_rowid();
        tx.execute(
            "UPDATE agreement_installments SET item_id = ?3 WHERE agreement_id = ?1 AND number = ?2",
            params![id, number, item],
        )?;
    }
    tx.execute(
        "UPDATE agreements SET status = 'active' WHERE id = ?1",
        [id],
    )?;
    customer_event(
        &Db::Lite(tx),
        customer_id,
        on,
        "agreement",
        &format!(
            "agreement {id} in force: {} item(s) replaced by {n} instalments (company {company})",
            items.len()
        ),
    )?;
    mark_changed(&Db::Lite(tx), customer_id)?;
    if let Some(t) = templates {
        write_letter(tx, t, AgreementLetter::DebtRecognition, customer_id, id, on)?;
    }
    Ok(())
}

/// Writes `letter` for agreement `id` and keeps it; the letter itself is
/// `arrears_rules::letters`.
fn write_letter(
    tx: &Connection,
    t: &Templates,
    letter: AgreementLetter,
    customer_id: i64,
    id: i64,
    on: NaiveDate,
) -> Result<()> {
    let a = agreement(tx, id)?;
    let to = tx.query_row(
        "SELECT code, name, company, country, language FROM customers WHERE id = ?1",
        [customer_id],
        |r| {
            Ok(letters::Addressee {
                code: r.get(0)?,
                name: r.get(1)?,
                company: r.get(2)?,
                country: r.get(3)?,
                language: r.get(4)?,
            })
        },
    )?;
    let ctx = letters::agreement_context(letter, &to, &a.letter_facts(), on);
    // A letter that cannot be written must not stop agreements (and the runs that
    // settle them); it is logged and can be written again from the agreement.
    let doc = match letters::render(t, letter, &ctx) {
        Ok(doc) => doc,
        Err(e) => {
            tracing::error!(agreement = id, kind = letter.kind(), error = %e, "cannot write the letter");
            return Ok(());
        }
    };
    tx.execute(
        "INSERT INTO documents(customer_id, agreement_id, kind, language, subject, text, html, created_on)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![customer_id, id, doc.kind, doc.language, doc.subject, doc.text, doc.html, on.to_string()],
    )?;
    Ok(())
}

impl AgreementView {
    fn letter_facts(&self) -> letters::AgreementFacts {
        letters::AgreementFacts {
            id: self.id,
            as_of: self.as_of,
            currency: self.currency.clone(),
            principal: self.principal,
            fine: self.fine,
            interest: self.interest,
            costs: self.costs,
            debt: self.debt,
            items: self
                .items
                .iter()
                .map(|i| letters::AgreementItemFacts {
                    document_no: i.document_no.clone(),
                    due_date: i.due_date,
                    open_amount: i.open_amount,
                    fine: i.fine,
                    interest: i.interest,
                    costs: i.costs,
                })
                .collect(),
            schedule: self
                .schedule
                .iter()
                .map(|s| templates::Installment {
                    number: s.number,
                    due: s.due,
                    principal: s.principal,
                    interest: s.interest,
                    amount: s.amount,
                })
                .collect(),
        }
    }
}

fn agreement(c: &Connection, id: i64) -> Result<AgreementView> {
    let mut a = c
        .query_row(
            "SELECT a.id, cu.company || '/' || cu.code, a.status, a.currency, a.as_of, a.plan, a.installments,
                    a.monthly_rate, a.first_due, a.principal, a.fine, a.interest, a.costs, a.discount_percent,
                    a.discount, a.debt, a.proposed_by, a.proposed_on, a.needs_approval, a.decided_by,
                    a.decided_on, a.decision_note, a.ended_on, a.end_reason, a.detail
             FROM agreements a JOIN customers cu ON cu.id = a.customer_id WHERE a.id = ?1",
            [id],
            |r| {
                let s = |i: usize| r.get::<_, String>(i);
                let o = |i: usize| r.get::<_, Option<String>>(i);
                Ok((
                    (r.get::<_, i64>(0)?, s(1)?, s(2)?, s(3)?, s(4)?, s(5)?, r.get::<_, u32>(6)?),
                    (s(7)?, s(8)?, s(9)?, s(10)?, s(11)?, s(12)?, s(13)?, s(14)?, s(15)?),
                    (s(16)?, s(17)?, o(18)?, o(19)?, o(20)?, o(21)?, o(22)?, o(23)?, s(24)?),
                ))
            },
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("agreement {id}")))
        .and_then(|(h, m, t)| {
            let d = |col: &'static str, v: &str| dec(col, v);
            let od = |col: &'static str, v: Option<String>| v.map(|v| date(col, &v)).transpose();
            let detail: serde_json::Value = serde_json::from_str(&t.8).unwrap_or_default();
            let items: Vec<AgreementItem> = detail
                .get("items")
                .and_then(|i| serde_json::from_value::<Vec<ItemJson>>(i.clone()).ok())
                .unwrap_or_default()
                .into_iter()
                .map(ItemJson::into_item)
                .collect();
            Ok(AgreementView {
                id: h.0,
                customer: h.1,
                status: h.2,
                currency: h.3,
                as_of: date("agreements.as_of", &h.4)?,
                plan: h.5,
                installments: h.6,
                monthly_rate: d("monthly_rate", &m.0)?,
                first_due: date("first_due", &m.1)?,
                principal: d("principal", &m.2)?,
                fine: d("fine", &m.3)?,
                interest: d("interest", &m.4)?,
                costs: d("costs", &m.5)?,
                discount_percent: d("discount_percent", &m.6)?,
                discount: d("discount", &m.7)?,
                debt: d("debt", &m.8)?,
                proposed_by: t.0,
                proposed_on: date("proposed_on", &t.1)?,
                needs_approval: t.2,
                decided_by: t.3,
                decided_on: od("decided_on", t.4)?,
                decision_note: t.5,
                ended_on: od("ended_on", t.6)?,
                end_reason: t.7,
                items,
                schedule: Vec::new(),
            })
        })?;
    let mut st = c.prepare_cached(
        "SELECT ai.number, ai.due_date, ai.principal, ai.interest, ai.amount, i.document_no, i.open_amount
         FROM agreement_installments ai LEFT JOIN items i ON i.id = ai.item_id
         WHERE ai.agreement_id = ?1 ORDER BY ai.number",
    )?;
    let mut rows = st.query([id])?;
    while let Some(r) = rows.next()? {
        a.schedule.push(ScheduleLine {
            number: r.get(0)?,
            due: date("agreement_installments.due_date", &r.get::<_, String>(1)?)?,
            principal: dec("agreement_installments.principal", &r.get::<_, String>(2)?)?,
            interest: dec("agreement_installments.interest", &r.get::<_, String>(3)?)?,
            amount: dec("agreement_installments.amount", &r.get::<_, String>(4)?)?,
            document_no: r.get(5)?,
            open_amount: r
                .get::<_, Option<String>>(6)?
                .map(|v| dec("items.open_amount", &v))
                .transpose()?,
        });
    }
    Ok(a)
}

/// The per-item computation as stored in `agreements.detail`.
#[derive(serde::Deserialize)]
struct ItemJson {
    document_no: String,
    due_date: NaiveDate,
    open_amount: Decimal,
    fine: Decimal,
    interest: Decimal,
    costs: Decimal,
    lines: Vec<String>,
}

impl ItemJson {
    fn into_item(self) -> AgreementItem {
        AgreementItem {
            document_no: self.document_no,
            due_date: self.due_date,
            open_amount: self.open_amount,
            fine: self.fine,
            interest: self.interest,
            costs: self.costs,
            lines: self.lines,
        }
    }
}
