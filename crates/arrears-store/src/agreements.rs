//! Payment agreements (renegotiation): a proposal prices the selected items with the
//! interest policy, applies a discount and builds an instalment plan; within the
//! proposer's limits it takes effect at once, beyond them it waits for someone whose
//! limits cover it — never the proposer. Taking effect replaces the items (status
//! `agreement`, their cases closed) by one item per instalment and stores the
//! debt-recognition letter. A missed instalment breaks the agreement (the remaining
//! instalments fall due at once); the last one paid ends it with an acquittance.

use crate::db::{args, Db};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use super::customer::{customer_event, mark_changed};
use super::{date, dec, Result, Store, StoreError};
use arrears_core::domain::{ChangeCause, Role};
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
        self.db()
            .write(|db| propose(db, p, &request, &plan_terms, who, role, terms))
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
        self.db().write(|db| {
            let a = agreement(db, id)?;
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
            let disputed: Option<String> = db
                .row(
                    "SELECT i.document_no FROM agreement_items ai JOIN items i ON i.id = ai.item_id
                     JOIN dispute_items di ON di.item_id = ai.item_id JOIN disputes d ON d.id = di.dispute_id
                     WHERE ai.agreement_id = ?1 AND d.resolved_on IS NULL LIMIT 1",
                    args![id],
                )?
                .map(|r| r.get(0, "items.document_no"))
                .transpose()?;
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
                .map_err(|e| {
                    StoreError::State(format!("cannot weigh the debt against limits: {e}"))
                })?;
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
            activate(db, id, on, terms.templates)?;
            db.execute(
                "UPDATE agreements SET decided_by = ?2, decided_on = ?3, decision_note = ?4 WHERE id = ?1",
                args![id, who, on, note],
            )?;
            agreement(db, id)
        })
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
        self.db().write(|db| {
            let a = agreement(db, id)?;
            if a.status != "pending" {
                return Err(StoreError::State(format!(
                    "agreement {id} is {}; only a pending one can be rejected",
                    a.status
                )));
            }
            db.execute(
                "UPDATE agreements SET status = 'rejected', decided_by = ?2, decided_on = ?3, decision_note = ?4,
                    ended_on = ?3, end_reason = 'rejected' WHERE id = ?1",
                args![id, who, on, reason],
            )?;
            let customer_id = agreement_customer(db, id)?;
            customer_event(
                db,
                customer_id,
                on,
                "agreement",
                &format!("agreement {id} rejected by {who}: {reason}"),
            )?;
            agreement(db, id)
        })
    }

    pub fn agreement(&self, id: i64) -> Result<AgreementView> {
        agreement(&self.db(), id)
    }

    /// Agreements, newest first; of one customer when given.
    pub fn list_agreements(&self, customer_id: Option<i64>) -> Result<Vec<AgreementView>> {
        let db = self.db();
        let ids: Vec<i64> = db
            .rows(
                "SELECT id FROM agreements WHERE CAST(?1 AS BIGINT) IS NULL OR customer_id = ?1 ORDER BY id DESC",
                args![customer_id],
            )?
            .iter()
            .map(|r| r.get(0, "agreements.id"))
            .collect::<Result<_>>()?;
        ids.into_iter().map(|id| agreement(&db, id)).collect()
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
        self.db().write(|db| settle(db, as_of, terms, templates))
    }

    /// Documents of a customer or of one agreement, newest first.
    pub fn documents(
        &self,
        customer_id: Option<i64>,
        agreement_id: Option<i64>,
    ) -> Result<Vec<DocumentView>> {
        self.db()
            .rows(
                "SELECT id, agreement_id, kind, language, subject, text, html, created_on FROM documents
                 WHERE (CAST(?1 AS BIGINT) IS NULL OR customer_id = ?1)
                   AND (CAST(?2 AS BIGINT) IS NULL OR agreement_id = ?2) ORDER BY id DESC",
                args![customer_id, agreement_id],
            )?
            .iter()
            .map(|r| {
                Ok(DocumentView {
                    id: r.get(0, "documents.id")?,
                    agreement_id: r.get(1, "documents.agreement_id")?,
                    kind: r.get(2, "documents.kind")?,
                    language: r.get(3, "documents.language")?,
                    subject: r.get(4, "documents.subject")?,
                    text: r.get(5, "documents.text")?,
                    html: r.get(6, "documents.html")?,
                    created_on: r.date(7, "documents.created_on")?,
                })
            })
            .collect()
    }
}

/// The customer an agreement is with.
fn agreement_customer(db: &Db, id: i64) -> Result<i64> {
    db.row(
        "SELECT customer_id FROM agreements WHERE id = ?1",
        args![id],
    )?
    .ok_or_else(|| StoreError::NotFound(format!("agreement {id}")))?
    .get(0, "agreements.customer_id")
}

/// [`Store::settle_agreements`], inside the caller's write.
fn settle(
    db: &Db,
    as_of: NaiveDate,
    terms: &AgreementsSection,
    templates: Option<&Templates>,
) -> Result<SettleStats> {
    let mut stats = SettleStats::default();
    let active: Vec<(i64, i64)> = db
        .rows(
            "SELECT id, customer_id FROM agreements WHERE status = 'active'",
            args![],
        )?
        .iter()
        .map(|r| {
            Ok((
                r.get(0, "agreements.id")?,
                r.get(1, "agreements.customer_id")?,
            ))
        })
        .collect::<Result<_>>()?;
    let cutoff = add_days(as_of, -terms.break_after_days);
    for (id, customer_id) in active {
        let missed = db.row(
            "SELECT ai.number, ai.due_date FROM agreement_installments ai JOIN items i ON i.id = ai.item_id
             WHERE ai.agreement_id = ?1 AND i.status = 'open' AND ai.due_date < ?2
             ORDER BY ai.number LIMIT 1",
            args![id, cutoff],
        )?;
        if let Some(r) = missed {
            let n: i64 = r.get(0, "agreement_installments.number")?;
            let due: String = r.get(1, "agreement_installments.due_date")?;
            let reason = format!(
                "instalment {n} due {due} unpaid after {} days; the remaining balance is due at once",
                terms.break_after_days
            );
            db.execute(
                "UPDATE agreements SET status = 'broken', ended_on = ?2, end_reason = ?3 WHERE id = ?1",
                args![id, as_of, reason],
            )?;
            // Instalments not due yet fall due now (agreement::due_at_once).
            let ahead = db.rows(
                "SELECT i.id, i.open_amount, ai.interest FROM agreement_installments ai
                 JOIN items i ON i.id = ai.item_id
                 WHERE ai.agreement_id = ?1 AND i.status = 'open' AND i.due_date > ?2",
                args![id, as_of],
            )?;
            for r in ahead {
                let item: i64 = r.get(0, "items.id")?;
                let open = r.dec(1, "items.open_amount")?;
                let unearned = r.dec(2, "agreement_installments.interest")?;
                let left = agreement::due_at_once(open, unearned);
                let status = if left.is_zero() { "cleared" } else { "open" };
                db.execute(
                    "UPDATE items SET due_date = ?2, open_amount = ?3, status = ?4 WHERE id = ?1",
                    args![item, as_of, left, status],
                )?;
                crate::history::note(db, as_of, ChangeCause::Agreement, &[item])?;
            }
            customer_event(
                db,
                customer_id,
                as_of,
                "agreement broken",
                &format!("agreement {id}: {reason}"),
            )?;
            mark_changed(db, customer_id)?;
            stats.broken += 1;
            continue;
        }
        let open: i64 = db
            .row(
                "SELECT COUNT(*) FROM agreement_installments ai JOIN items i ON i.id = ai.item_id
                 WHERE ai.agreement_id = ?1 AND i.status <> 'cleared'",
                args![id],
            )?
            .map(|r| r.get(0, "count"))
            .transpose()?
            .unwrap_or(0);
        if open == 0 {
            db.execute(
                "UPDATE agreements SET status = 'paid', ended_on = ?2, end_reason = 'every instalment paid' WHERE id = ?1",
                args![id, as_of],
            )?;
            customer_event(
                db,
                customer_id,
                as_of,
                "agreement paid",
                &format!("agreement {id} paid in full"),
            )?;
            if let Some(t) = templates {
                write_letter(db, t, AgreementLetter::Acquittance, customer_id, id, as_of)?;
            }
            stats.paid += 1;
        }
    }
    Ok(stats)
}

/// Prices the proposal's items and records it, inside the caller's write.
fn propose(
    db: &Db,
    p: &Proposal,
    request: &agreement::Request,
    plan_terms: &agreement::PlanTerms,
    who: &str,
    role: Role,
    terms: &Terms,
) -> Result<AgreementView> {
    let t = terms.agreements;
    let mut customer: Option<(i64, String)> = None;
    let mut items: Vec<(i64, AgreementItem)> = Vec::new();
    let (mut principal, mut fine, mut interest, mut costs) =
        (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for &case_id in &p.case_ids {
        let r = db
            .row(
                "SELECT c.customer_id, c.status, i.id, i.document_no, i.due_date, i.original_amount,
                        i.open_amount, i.currency, i.status
                 FROM cases c JOIN items i ON i.id = c.item_id WHERE c.id = ?1",
                args![case_id],
            )?
            .ok_or_else(|| StoreError::NotFound(format!("case {case_id}")))?;
        let cust: i64 = r.get(0, "cases.customer_id")?;
        let status: String = r.get(1, "cases.status")?;
        let item_id: i64 = r.get(2, "items.id")?;
        let doc: String = r.get(3, "items.document_no")?;
        let currency: String = r.get(7, "items.currency")?;
        let item_status: String = r.get(8, "items.status")?;
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
        let disputed = db
            .row(
                "SELECT 1 FROM dispute_items di JOIN disputes d ON d.id = di.dispute_id
                 WHERE di.item_id = ?1 AND d.resolved_on IS NULL LIMIT 1",
                args![item_id],
            )?
            .is_some();
        if disputed {
            return Err(StoreError::State(format!(
                "{doc} is disputed; settle the dispute before renegotiating it"
            )));
        }
        let original = r.dec(5, "items.original_amount")?;
        let open = r.dec(6, "items.open_amount")?;
        let due = r.date(4, "items.due_date")?;
        let pays = db
            .rows(
                "SELECT value_date, amount FROM payments WHERE item_id = ?1 AND currency = ?2 ORDER BY value_date",
                args![item_id, currency],
            )?
            .iter()
            .map(|r| {
                Ok(Payment {
                    date: r.date(0, "payments.value_date")?,
                    amount: r.dec(1, "payments.amount")?,
                })
            })
            .collect::<Result<Vec<Payment>>>()?;
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
        request,
        plan_terms,
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
    let id = db
        .prepare_insert(
            "INSERT INTO agreements(customer_id, status, currency, as_of, plan, installments, monthly_rate, first_due,
                principal, fine, interest, costs, discount_percent, discount, debt, detail, proposed_by, proposed_on,
                needs_approval)
             VALUES (?1, 'pending', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        )?
        .insert(args![
            customer_id,
            currency,
            p.on,
            plan_name(p.plan),
            i64::from(p.installments),
            rate,
            p.first_due,
            principal,
            fine,
            interest,
            costs,
            p.discount_percent,
            discount,
            debt,
            detail.to_string(),
            who,
            p.on,
            needs,
        ])?
        .ok_or_else(|| StoreError::State("the agreement was not recorded".into()))?;
    let mut st = db.prepare(
        "INSERT INTO agreement_items(agreement_id, item_id, open_amount) VALUES (?1, ?2, ?3)",
    )?;
    for (item_id, it) in &items {
        st.execute(args![id, item_id, it.open_amount])?;
    }
    let mut st = db.prepare(
        "INSERT INTO agreement_installments(agreement_id, number, due_date, principal, interest, amount)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for i in &schedule {
        st.execute(args![
            id,
            i64::from(i.number),
            i.due,
            i.principal,
            i.interest,
            i.amount
        ])?;
    }
    let event = match &needs {
        None => format!(
            "agreement {id} proposed by {who}: {debt} {currency} in {} instalments",
            p.installments
        ),
        Some(why) => format!(
            "agreement {id} proposed by {who}: {debt} {currency} in {} instalments; needs approval ({why})",
            p.installments
        ),
    };
    customer_event(db, customer_id, p.on, "agreement", &event)?;
    if needs.is_none() {
        activate(db, id, p.on, terms.templates)?;
        db.execute(
            "UPDATE agreements SET decided_by = ?2, decided_on = ?3, decision_note = 'within the proposer''s limits'
             WHERE id = ?1",
            args![id, who, p.on],
        )?;
    }
    agreement(db, id)
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
fn activate(db: &Db, id: i64, on: NaiveDate, templates: Option<&Templates>) -> Result<()> {
    let r = db
        .row(
            "SELECT customer_id, currency FROM agreements WHERE id = ?1",
            args![id],
        )?
        .ok_or_else(|| StoreError::NotFound(format!("agreement {id}")))?;
    let customer_id: i64 = r.get(0, "agreements.customer_id")?;
    let currency: String = r.get(1, "agreements.currency")?;
    let items = db.rows(
        "SELECT ai.item_id, ai.open_amount, i.open_amount, i.status, i.document_no
         FROM agreement_items ai JOIN items i ON i.id = ai.item_id WHERE ai.agreement_id = ?1",
        args![id],
    )?;
    for r in &items {
        let item_id: i64 = r.get(0, "agreement_items.item_id")?;
        let then: String = r.get(1, "agreement_items.open_amount")?;
        let now: String = r.get(2, "items.open_amount")?;
        let status: String = r.get(3, "items.status")?;
        let doc: String = r.get(4, "items.document_no")?;
        if status != "open" || dec("open_amount", &then)? != dec("open_amount", &now)? {
            return Err(StoreError::State(format!(
                "{doc} changed since the proposal (open {now}, was {then}; {status}); propose again"
            )));
        }
        db.execute(
            "UPDATE items SET status = 'agreement' WHERE id = ?1",
            args![item_id],
        )?;
        crate::history::note(db, on, ChangeCause::Agreement, &[item_id])?;
        let cases: Vec<i64> = db
            .rows(
                "SELECT id FROM cases WHERE item_id = ?1 AND status = 'open'",
                args![item_id],
            )?
            .iter()
            .map(|r| r.get(0, "cases.id"))
            .collect::<Result<_>>()?;
        for case_id in cases {
            let reason = format!("replaced by agreement {id}");
            db.execute(
                "UPDATE cases SET status = 'closed', closed_on = ?2, close_reason = ?3 WHERE id = ?1",
                args![case_id, on, reason],
            )?;
            db.execute(
                "INSERT INTO case_events(case_id, on_date, kind, actor, detail) VALUES (?1, ?2, 'closed', 'agreement', ?3)",
                args![case_id, on, reason],
            )?;
        }
    }
    let company: String = db
        .row(
            "SELECT company FROM customers WHERE id = ?1",
            args![customer_id],
        )?
        .ok_or_else(|| StoreError::NotFound(format!("customer {customer_id}")))?
        .get(0, "customers.company")?;
    let plan = db.rows(
        "SELECT number, due_date, amount FROM agreement_installments WHERE agreement_id = ?1 ORDER BY number",
        args![id],
    )?;
    let n = plan.len();
    let mut ins = db.prepare_insert(
        "INSERT INTO items(source, external_id, customer_id, document_no, document_date, due_date,
            original_amount, open_amount, currency, status)
         VALUES ('agreement', ?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, 'open')",
    )?;
    for r in plan {
        let number: i64 = r.get(0, "agreement_installments.number")?;
        let due: String = r.get(1, "agreement_installments.due_date")?;
        let amount: String = r.get(2, "agreement_installments.amount")?;
        let item = ins
            .insert(args![
                format!("{id}/{number}"),
                customer_id,
                format!("AGR-{id}-{number}"),
                on,
                due,
                amount,
                currency
            ])?
            .ok_or_else(|| {
                StoreError::State(format!(
                    "instalment {number} of agreement {id} was not recorded"
                ))
            })?;
        db.execute(
            "UPDATE agreement_installments SET item_id = ?3 WHERE agreement_id = ?1 AND number = ?2",
            args![id, number, item],
        )?;
    }
    db.execute(
        "UPDATE agreements SET status = 'active' WHERE id = ?1",
        args![id],
    )?;
    customer_event(
        db,
        customer_id,
        on,
        "agreement",
        &format!(
            "agreement {id} in force: {} item(s) replaced by {n} instalments (company {company})",
            items.len()
        ),
    )?;
    mark_changed(db, customer_id)?;
    if let Some(t) = templates {
        write_letter(db, t, AgreementLetter::DebtRecognition, customer_id, id, on)?;
    }
    Ok(())
}

/// Writes `letter` for agreement `id` and keeps it; the letter itself is
/// `arrears_rules::letters`.
fn write_letter(
    db: &Db,
    t: &Templates,
    letter: AgreementLetter,
    customer_id: i64,
    id: i64,
    on: NaiveDate,
) -> Result<()> {
    let a = agreement(db, id)?;
    let r = db
        .row(
            "SELECT code, name, company, country, language FROM customers WHERE id = ?1",
            args![customer_id],
        )?
        .ok_or_else(|| StoreError::NotFound(format!("customer {customer_id}")))?;
    let to = letters::Addressee {
        code: r.get(0, "customers.code")?,
        name: r.get(1, "customers.name")?,
        company: r.get(2, "customers.company")?,
        country: r.get(3, "customers.country")?,
        language: r.get(4, "customers.language")?,
    };
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
    db.execute(
        "INSERT INTO documents(customer_id, agreement_id, kind, language, subject, text, html, created_on)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        args![customer_id, id, doc.kind, doc.language, doc.subject, doc.text, doc.html, on],
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

fn agreement(db: &Db, id: i64) -> Result<AgreementView> {
    let r = db
        .row(
            "SELECT a.id, cu.company || '/' || cu.code, a.status, a.currency, a.as_of, a.plan, a.installments,
                    a.monthly_rate, a.first_due, a.principal, a.fine, a.interest, a.costs, a.discount_percent,
                    a.discount, a.debt, a.proposed_by, a.proposed_on, a.needs_approval, a.decided_by,
                    a.decided_on, a.decision_note, a.ended_on, a.end_reason, a.detail
             FROM agreements a JOIN customers cu ON cu.id = a.customer_id WHERE a.id = ?1",
            args![id],
        )?
        .ok_or_else(|| StoreError::NotFound(format!("agreement {id}")))?;
    let text = |i: usize, col: &'static str| r.get::<String>(i, col);
    let d = |i: usize, col: &'static str| dec(col, &text(i, col)?);
    let day = |i: usize, col: &'static str| date(col, &text(i, col)?);
    let od = |i: usize, col: &'static str| {
        r.get::<Option<String>>(i, col)?
            .map(|v| date(col, &v))
            .transpose()
    };
    let detail: serde_json::Value =
        serde_json::from_str(&text(24, "agreements.detail")?).unwrap_or_default();
    let items: Vec<AgreementItem> = detail
        .get("items")
        .and_then(|i| serde_json::from_value::<Vec<ItemJson>>(i.clone()).ok())
        .unwrap_or_default()
        .into_iter()
        .map(ItemJson::into_item)
        .collect();
    let mut a = AgreementView {
        id: r.get(0, "agreements.id")?,
        customer: text(1, "customers.code")?,
        status: text(2, "agreements.status")?,
        currency: text(3, "agreements.currency")?,
        as_of: day(4, "agreements.as_of")?,
        plan: text(5, "agreements.plan")?,
        installments: small(
            r.get(6, "agreements.installments")?,
            "agreements.installments",
        )?,
        monthly_rate: d(7, "monthly_rate")?,
        first_due: day(8, "first_due")?,
        principal: d(9, "principal")?,
        fine: d(10, "fine")?,
        interest: d(11, "interest")?,
        costs: d(12, "costs")?,
        discount_percent: d(13, "discount_percent")?,
        discount: d(14, "discount")?,
        debt: d(15, "debt")?,
        proposed_by: text(16, "agreements.proposed_by")?,
        proposed_on: day(17, "proposed_on")?,
        needs_approval: r.get(18, "agreements.needs_approval")?,
        decided_by: r.get(19, "agreements.decided_by")?,
        decided_on: od(20, "decided_on")?,
        decision_note: r.get(21, "agreements.decision_note")?,
        ended_on: od(22, "ended_on")?,
        end_reason: r.get(23, "agreements.end_reason")?,
        items,
        schedule: Vec::new(),
    };
    for r in db.rows(
        "SELECT ai.number, ai.due_date, ai.principal, ai.interest, ai.amount, i.document_no, i.open_amount
         FROM agreement_installments ai LEFT JOIN items i ON i.id = ai.item_id
         WHERE ai.agreement_id = ?1 ORDER BY ai.number",
        args![id],
    )? {
        let text = |i: usize, col: &'static str| r.get::<String>(i, col);
        a.schedule.push(ScheduleLine {
            number: small(
                r.get(0, "agreement_installments.number")?,
                "agreement_installments.number",
            )?,
            due: date(
                "agreement_installments.due_date",
                &text(1, "agreement_installments.due_date")?,
            )?,
            principal: dec(
                "agreement_installments.principal",
                &text(2, "agreement_installments.principal")?,
            )?,
            interest: dec(
                "agreement_installments.interest",
                &text(3, "agreement_installments.interest")?,
            )?,
            amount: dec(
                "agreement_installments.amount",
                &text(4, "agreement_installments.amount")?,
            )?,
            document_no: r.get(5, "items.document_no")?,
            open_amount: r
                .get::<Option<String>>(6, "items.open_amount")?
                .map(|v| dec("items.open_amount", &v))
                .transpose()?,
        });
    }
    Ok(a)
}

/// A count stored as an integer (instalments, their numbers).
fn small(v: i64, column: &'static str) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt {
        column,
        value: v.to_string(),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrears_core::domain::{Batch, CustomerInfo, ItemInput, PaymentInput};
    use rust_decimal_macros::dec;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn rules() -> arrears_rules::RuleSet {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
        arrears_rules::load(&dir).unwrap_or_else(|e| panic!("{e}"))
    }

    fn customer(code: &str) -> CustomerInfo {
        CustomerInfo {
            company: "ACME".into(),
            code: code.into(),
            name: format!("Customer {code}"),
            country: "DE".into(),
            email: None,
            phone: None,
            language: Some("en".into()),
            timezone: None,
            credit_limit: None,
            street: None,
            postal_code: None,
            city: None,
            dunning: None,
        }
    }

    fn item(
        c: &str,
        doc: &str,
        original: Decimal,
        open: Decimal,
        due: &str,
        cur: &str,
    ) -> ItemInput {
        ItemInput {
            source: "erp".into(),
            external_id: doc.into(),
            company: "ACME".into(),
            customer: c.into(),
            document_no: doc.into(),
            document_date: d("2026-08-01"),
            due_date: d(due),
            original_amount: original,
            open_amount: open,
            currency: Currency::parse(cur).unwrap(),
            hold: None,
            original_document: None,
        }
    }

    /// Customers C1 (INV-1 partly paid, INV-2, INV-3 in USD) and C2 (INV-9), each
    /// item with an open case.
    fn setup(s: &mut Store) {
        s.ingest(&Batch {
            customers: vec![customer("C1"), customer("C2")],
            items: vec![
                item(
                    "C1",
                    "INV-1",
                    dec!(1200.00),
                    dec!(1000.00),
                    "2026-09-01",
                    "EUR",
                ),
                item(
                    "C1",
                    "INV-2",
                    dec!(500.00),
                    dec!(500.00),
                    "2026-09-15",
                    "EUR",
                ),
                item("C1", "INV-3", dec!(80.00), dec!(80.00), "2026-09-15", "USD"),
                item(
                    "C2",
                    "INV-9",
                    dec!(100.00),
                    dec!(100.00),
                    "2026-09-20",
                    "EUR",
                ),
            ],
            payments: vec![PaymentInput {
                source: "erp".into(),
                external_id: "P-1".into(),
                company: "ACME".into(),
                customer: "C1".into(),
                amount: dec!(200.00),
                currency: Currency::parse("EUR").unwrap(),
                value_date: d("2026-09-10"),
                reference: String::new(),
                item_ref: Some("INV-1".into()),
            }],
            ..Batch::default()
        })
        .unwrap();
        s.db()
            .batch(
                "INSERT INTO cases(item_id, customer_id, opened_on, nad, priority)
                 SELECT id, customer_id, '2026-09-20', '2026-10-01', 1 FROM items ORDER BY id",
            )
            .unwrap();
    }

    fn case(s: &Store, doc: &str) -> i64 {
        s.db()
            .row(
                "SELECT c.id FROM cases c JOIN items i ON i.id = c.item_id WHERE i.document_no = ?1",
                args![doc],
            )
            .unwrap()
            .unwrap()
            .get(0, "cases.id")
            .unwrap()
    }

    fn proposal(s: &Store, docs: &[&str], discount: Decimal) -> Proposal {
        Proposal {
            case_ids: docs.iter().map(|doc| case(s, doc)).collect(),
            plan: PlanKind::Price,
            installments: 3,
            first_due: d("2026-10-15"),
            discount_percent: discount,
            on: d("2026-10-01"),
        }
    }

    /// (document, open amount, status, due date) of a customer's items, by id.
    fn items_of(s: &Store, code: &str) -> Vec<(String, String, String, String)> {
        s.db()
            .rows(
                "SELECT i.document_no, i.open_amount, i.status, i.due_date FROM items i
                 JOIN customers c ON c.id = i.customer_id WHERE c.code = ?1 ORDER BY i.id",
                args![code],
            )
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.get(0, "document_no").unwrap(),
                    r.get(1, "open_amount").unwrap(),
                    r.get(2, "status").unwrap(),
                    r.get(3, "due_date").unwrap(),
                )
            })
            .collect()
    }

    fn kinds(docs: &[DocumentView]) -> Vec<&str> {
        docs.iter().map(|d| d.kind.as_str()).collect()
    }

    crate::on_both!(
        an_agreement_within_limits_replaces_its_items_by_instalments,
        |s| {
            setup(s);
            let rules = rules();
            let terms = Terms::of(&rules).unwrap();
            let a = s
                .propose_agreement(
                    &proposal(s, &["INV-1", "INV-2"], dec!(0)),
                    "alice",
                    Role::Collector,
                    &terms,
                )
                .unwrap();
            assert_eq!(
                (a.status.as_str(), a.customer.as_str(), a.currency.as_str()),
                ("active", "ACME/C1", "EUR")
            );
            assert_eq!(a.needs_approval, None);
            assert_eq!(
                (
                    a.decided_by.as_deref(),
                    a.decided_on,
                    a.decision_note.as_deref()
                ),
                (
                    Some("alice"),
                    Some(d("2026-10-01")),
                    Some("within the proposer's limits")
                )
            );
            // INV-1 was paid 9 days late: 24.00 fine and 3.55 interest came first.
            assert_eq!(a.principal, dec!(1527.55));
            assert_eq!(
                a.debt,
                a.principal + a.fine + a.interest + a.costs - a.discount
            );
            let docs: Vec<&str> = a.items.iter().map(|i| i.document_no.as_str()).collect();
            assert_eq!(docs, ["INV-1", "INV-2"]);
            let principal: Decimal = a.schedule.iter().map(|l| l.principal).sum();
            assert_eq!(principal, a.debt, "{a:?}");
            let id = a.id;
            let agr = |n| format!("AGR-{id}-{n}");
            // Each instalment is an item of its own, open for the instalment's amount.
            assert_eq!(
                a.schedule
                    .iter()
                    .map(|l| (
                        l.number,
                        l.due,
                        l.document_no.clone(),
                        l.open_amount == Some(l.amount)
                    ))
                    .collect::<Vec<_>>(),
                vec![
                    (1, d("2026-10-15"), Some(agr(1)), true),
                    (2, d("2026-11-15"), Some(agr(2)), true),
                    (3, d("2026-12-15"), Some(agr(3)), true),
                ]
            );
            let items = items_of(s, "C1");
            let status: Vec<(&str, &str)> =
                items.iter().map(|i| (i.0.as_str(), i.2.as_str())).collect();
            assert_eq!(
                status,
                [
                    ("INV-1", "agreement"),
                    ("INV-2", "agreement"),
                    ("INV-3", "open"),
                    (agr(1).as_str(), "open"),
                    (agr(2).as_str(), "open"),
                    (agr(3).as_str(), "open"),
                ]
            );
            // INV-1 and INV-2 left collection into the agreement on its day.
            for doc in ["INV-1", "INV-2"] {
                let id: i64 = s
                    .db()
                    .row("SELECT id FROM items WHERE document_no = ?1", args![doc])
                    .unwrap()
                    .unwrap()
                    .get(0, "items.id")
                    .unwrap();
                let h = s.item_history(id).unwrap();
                let last = h.last().expect("a history");
                assert_eq!(
                    (last.on, last.status.as_str(), last.cause),
                    (d("2026-10-01"), "agreement", ChangeCause::Agreement),
                    "{doc}"
                );
                assert_eq!(
                    s.item_clearing(id).unwrap().map(|c| (c.on, c.by)),
                    Some((d("2026-10-01"), ChangeCause::Agreement))
                );
            }
            // Each instalment item carries the instalment's amount with its scale.
            for (l, i) in a.schedule.iter().zip(&items[3..]) {
                assert_eq!(i.1, l.amount.to_string());
                assert_eq!(i.3, l.due.to_string());
            }
            let closed: Vec<(String, Option<String>)> = s
                .db()
                .rows(
                    "SELECT c.status, c.close_reason FROM cases c JOIN items i ON i.id = c.item_id
                 WHERE i.document_no IN ('INV-1', 'INV-2') ORDER BY c.id",
                    args![],
                )
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r.get(0, "status").unwrap(),
                        r.get(1, "close_reason").unwrap(),
                    )
                })
                .collect();
            let replaced = Some(format!("replaced by agreement {id}"));
            assert_eq!(
                closed,
                [
                    ("closed".to_string(), replaced.clone()),
                    ("closed".to_string(), replaced)
                ]
            );
            let c1 = s.customer_id("ACME/C1").unwrap();
            let letters = s.documents(Some(c1), None).unwrap();
            assert_eq!(kinds(&letters), ["debt_recognition"]);
            assert_eq!(letters[0].agreement_id, Some(id));
            assert_eq!(letters[0].created_on, d("2026-10-01"));
            assert_eq!(s.documents(None, Some(id)).unwrap(), letters);
            assert!(s.documents(None, Some(id + 1)).unwrap().is_empty());
            assert_eq!(s.agreement(id).unwrap(), a);
            assert_eq!(
                s.list_agreements(Some(c1)).unwrap(),
                std::slice::from_ref(&a)
            );
            assert_eq!(s.list_agreements(None).unwrap(), [a]);
            let c2 = s.customer_id("ACME/C2").unwrap();
            assert!(s.list_agreements(Some(c2)).unwrap().is_empty());
            assert!(matches!(s.agreement(id + 1), Err(StoreError::NotFound(_))));
            // The items it replaced are in no other agreement.
            assert!(matches!(
                s.propose_agreement(&proposal(s, &["INV-2"], dec!(0)), "alice", Role::Collector, &terms),
                Err(StoreError::State(m)) if m.contains("is not open")
            ));
        }
    );

    crate::on_both!(
        a_proposal_covers_open_undisputed_items_of_one_customer_and_currency,
        |s| {
            setup(s);
            let rules = rules();
            let terms = Terms::of(&rules).unwrap();
            let propose = |s: &mut Store, docs: &[&str]| {
                let p = proposal(s, docs, dec!(0));
                s.propose_agreement(&p, "alice", Role::Collector, &terms)
            };
            let err = |r: Result<AgreementView>| r.unwrap_err().to_string();
            assert!(err(propose(s, &["INV-1", "INV-9"])).contains("belongs to another customer"));
            assert!(
                err(propose(s, &["INV-1", "INV-3"])).contains("an agreement is in one currency")
            );
            assert!(err(propose(s, &["INV-1", "INV-1"])).contains("is named twice"));
            s.db()
            .batch(
                "INSERT INTO disputes(customer_id, reason, opened_on)
                   SELECT customer_id, 'wrong price', '2026-09-25' FROM items WHERE document_no = 'INV-2';
                 INSERT INTO dispute_items(dispute_id, item_id)
                   SELECT d.id, i.id FROM disputes d, items i WHERE i.document_no = 'INV-2'",
            )
            .unwrap();
            assert!(err(propose(s, &["INV-1", "INV-2"])).contains("INV-2 is disputed"));
            let p = Proposal {
                case_ids: vec![999_999],
                ..proposal(s, &[], dec!(0))
            };
            assert!(matches!(
                s.propose_agreement(&p, "alice", Role::Collector, &terms),
                Err(StoreError::NotFound(_))
            ));
            // Nothing of the refused proposals was written.
            assert!(s.list_agreements(None).unwrap().is_empty());
            assert!(items_of(s, "C1").iter().all(|i| i.2 == "open"));
        }
    );

    crate::on_both!(
        beyond_the_proposers_limits_an_agreement_waits_for_approval,
        |s| {
            setup(s);
            let rules = rules();
            let terms = Terms::of(&rules).unwrap();
            let p = proposal(s, &["INV-1", "INV-2"], dec!(10));
            let a = s
                .propose_agreement(&p, "alice", Role::Collector, &terms)
                .unwrap();
            assert_eq!(a.status, "pending");
            assert!(
                a.needs_approval.as_deref().unwrap().contains("discount"),
                "{a:?}"
            );
            assert!(a.schedule.iter().all(|l| l.document_no.is_none()));
            assert!(
                items_of(s, "C1").iter().all(|i| i.2 == "open"),
                "nothing replaced yet"
            );
            // A second proposal on the same items, waiting too.
            let b = s
                .propose_agreement(&p, "alice", Role::Collector, &terms)
                .unwrap();
            let on = d("2026-10-02");
            assert!(matches!(
                s.approve_agreement(a.id, "alice", Role::Supervisor, "ok", on, &terms),
                Err(StoreError::Denied(m)) if m.contains("someone else")
            ));
            assert!(matches!(
                s.approve_agreement(a.id, "bob", Role::Collector, "ok", on, &terms),
                Err(StoreError::Denied(m)) if m.contains("cannot approve")
            ));
            assert!(matches!(
                s.approve_agreement(a.id, "carol", Role::Supervisor, "ok", d("2026-10-16"), &terms),
                Err(StoreError::State(m)) if m.contains("due 2026-10-15 already")
            ));
            let approved = s
                .approve_agreement(
                    a.id,
                    "carol",
                    Role::Supervisor,
                    "customer called",
                    on,
                    &terms,
                )
                .unwrap();
            assert_eq!(
                (
                    approved.status.as_str(),
                    approved.decided_by.as_deref(),
                    approved.decided_on,
                    approved.decision_note.as_deref()
                ),
                ("active", Some("carol"), Some(on), Some("customer called"))
            );
            assert_eq!(approved.discount, a.discount);
            assert!(approved.discount > Decimal::ZERO);
            // The other proposal's items are gone from collection meanwhile.
            let e = s
                .approve_agreement(b.id, "carol", Role::Supervisor, "ok", on, &terms)
                .unwrap_err()
                .to_string();
            assert!(e.contains("INV-1 changed since the proposal"), "{e}");
            assert_eq!(s.agreement(b.id).unwrap().status, "pending", "rolled back");
            assert!(matches!(
                s.reject_agreement(b.id, "carol", " ", on),
                Err(StoreError::Invalid(_))
            ));
            let rejected = s.reject_agreement(b.id, "carol", "superseded", on).unwrap();
            assert_eq!(
                (
                    rejected.status.as_str(),
                    rejected.ended_on,
                    rejected.end_reason.as_deref()
                ),
                ("rejected", Some(on), Some("rejected"))
            );
            assert!(matches!(
                s.reject_agreement(b.id, "carol", "again", on),
                Err(StoreError::State(_))
            ));
            assert!(matches!(
                s.approve_agreement(a.id, "carol", Role::Supervisor, "again", on, &terms),
                Err(StoreError::State(_))
            ));
            let events: Vec<String> = s
                .db()
                .rows(
                    "SELECT detail FROM customer_events WHERE kind = 'agreement' ORDER BY id",
                    args![],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0, "detail").unwrap())
                .collect();
            assert_eq!(events.len(), 4, "{events:?}");
            assert!(
                events[3].ends_with("rejected by carol: superseded"),
                "{events:?}"
            );
        }
    );

    crate::on_both!(
        a_missed_instalment_breaks_an_agreement_and_the_last_one_paid_ends_it,
        |s| {
            setup(s);
            let rules = rules();
            let terms = Terms::of(&rules).unwrap();
            let broken = s
                .propose_agreement(
                    &proposal(s, &["INV-1", "INV-2"], dec!(0)),
                    "alice",
                    Role::Collector,
                    &terms,
                )
                .unwrap();
            let paid = s
                .propose_agreement(
                    &proposal(s, &["INV-9"], dec!(0)),
                    "alice",
                    Role::Collector,
                    &terms,
                )
                .unwrap();
            // Customer C2 paid every instalment.
            s.db()
                .batch(&format!(
                    "UPDATE items SET open_amount = '0', status = 'cleared'
                 WHERE source = 'agreement' AND external_id LIKE '{}/%'",
                    paid.id
                ))
                .unwrap();
            // Nothing is late yet: instalment 1 of C1 is 30 days overdue, not more.
            let stats = s
                .settle_agreements(d("2026-11-14"), terms.agreements, terms.templates)
                .unwrap();
            assert_eq!((stats.broken, stats.paid), (0, 1));
            let stats = s
                .settle_agreements(d("2026-11-20"), terms.agreements, terms.templates)
                .unwrap();
            assert_eq!((stats.broken, stats.paid), (1, 0));
            let b = s.agreement(broken.id).unwrap();
            assert_eq!(
                (b.status.as_str(), b.ended_on),
                ("broken", Some(d("2026-11-20")))
            );
            assert!(
                b.end_reason
                    .as_deref()
                    .unwrap()
                    .starts_with("instalment 1 due 2026-10-15 unpaid after 30 days"),
                "{b:?}"
            );
            // The instalment not due yet falls due now, less its interest.
            let last = &broken.schedule[2];
            let now = items_of(s, "C1");
            let due_now = &now[now.len() - 1];
            assert_eq!(
                (due_now.1.parse::<Decimal>().unwrap(), due_now.3.as_str()),
                (last.amount - last.interest, "2026-11-20")
            );
            let due_now_id: i64 = s
                .db()
                .row(
                    "SELECT id FROM items WHERE document_no = ?1",
                    args![due_now.0],
                )
                .unwrap()
                .unwrap()
                .get(0, "items.id")
                .unwrap();
            let h = s.item_history(due_now_id).unwrap();
            assert_eq!(
                h.iter()
                    .map(|h| (h.on, h.open_amount, h.cause))
                    .collect::<Vec<_>>(),
                [(
                    d("2026-11-20"),
                    last.amount - last.interest,
                    ChangeCause::Agreement
                )],
                "the unearned interest dropped the day it broke"
            );
            assert_eq!(
                now[now.len() - 2].3,
                "2026-11-15",
                "an instalment already due keeps its day"
            );
            let p = s.agreement(paid.id).unwrap();
            assert_eq!(
                (p.status.as_str(), p.end_reason.as_deref()),
                ("paid", Some("every instalment paid"))
            );
            let c2 = s.customer_id("ACME/C2").unwrap();
            assert_eq!(
                kinds(&s.documents(Some(c2), None).unwrap()),
                ["acquittance", "debt_recognition"],
                "newest first"
            );
            // Settled agreements are left alone.
            let stats = s
                .settle_agreements(d("2026-12-31"), terms.agreements, terms.templates)
                .unwrap();
            assert_eq!((stats.broken, stats.paid), (0, 0));
        }
    );
}
