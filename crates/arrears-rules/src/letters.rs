//! The payment-agreement letters (debt recognition, acquittance): what they state,
//! built from the agreement as recorded, and rendered with the admin's templates.
//! The store keeps the rendered document; nothing here reads or writes it.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::templates::{self, Context, TemplateError, Templates};

/// Whom a letter is addressed to, as the master data has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressee {
    pub code: String,
    pub name: String,
    pub company: String,
    pub country: String,
    /// `None`: the rules' default language.
    pub language: Option<String>,
}

/// An agreement as its letters state it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgreementFacts {
    pub id: i64,
    /// The day it was priced: the items' days overdue count to it.
    pub as_of: NaiveDate,
    pub currency: String,
    pub principal: Decimal,
    pub fine: Decimal,
    pub interest: Decimal,
    pub costs: Decimal,
    /// What the plan repays after the discount.
    pub debt: Decimal,
    pub items: Vec<AgreementItemFacts>,
    pub schedule: Vec<templates::Installment>,
}

/// One replaced item, with what the pricing added to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementItemFacts {
    pub document_no: String,
    pub due_date: NaiveDate,
    pub open_amount: Decimal,
    pub fine: Decimal,
    pub interest: Decimal,
    pub costs: Decimal,
}

/// Which letter: the one the customer signs when the agreement takes effect, or the
/// receipt once every instalment is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgreementLetter {
    DebtRecognition,
    Acquittance,
}

impl AgreementLetter {
    /// The template's name, and the document kind it is stored as.
    pub fn kind(self) -> &'static str {
        match self {
            AgreementLetter::DebtRecognition => "debt_recognition",
            AgreementLetter::Acquittance => "acquittance",
        }
    }
}

/// What `letter` shows for agreement `a`, written on `on`. Fines and costs are the
/// letter's fees; the agreement has no company letterhead of its own, so the
/// customer's company stands in.
pub fn agreement_context(
    letter: AgreementLetter,
    to: &Addressee,
    a: &AgreementFacts,
    on: NaiveDate,
) -> Context {
    let items = a
        .items
        .iter()
        .map(|i| templates::Item {
            document_no: i.document_no.clone(),
            document_date: i.due_date,
            due_date: i.due_date,
            days_overdue: (a.as_of - i.due_date).num_days(),
            currency: a.currency.clone(),
            original_amount: i.open_amount,
            open_amount: i.open_amount,
            fee: i.fine + i.costs,
            interest: i.interest,
            total: i.open_amount + i.fine + i.costs + i.interest,
        })
        .collect();
    let total = templates::Total {
        currency: a.currency.clone(),
        open_amount: a.principal,
        fees: a.fine + a.costs,
        interest: a.interest,
        total: a.principal + a.fine + a.costs + a.interest,
    };
    let receipt = (letter == AgreementLetter::Acquittance).then(|| templates::Receipt {
        agreement_id: a.id.to_string(),
        paid_on: on,
        amount: a.schedule.iter().map(|s| s.amount).sum(),
        currency: a.currency.clone(),
    });
    Context {
        customer: templates::Customer {
            code: to.code.clone(),
            name: to.name.clone(),
            company: to.company.clone(),
            language: to
                .language
                .clone()
                .unwrap_or_else(|| crate::DEFAULT_LANGUAGE.into()),
            country: to.country.clone(),
            email: None,
            phone: None,
            address: None,
        },
        company: templates::Company {
            name: to.company.clone(),
            address: String::new(),
            iban: None,
            contact: String::new(),
        },
        level: None,
        as_of: on,
        deadline: None,
        items,
        totals: vec![total],
        payment_link: String::new(),
        agreement: Some(templates::Agreement {
            id: a.id.to_string(),
            debt: a.debt,
            currency: a.currency.clone(),
            installments: a.schedule.clone(),
            signed_on: Some(on),
        }),
        receipt,
    }
}

/// A rendered letter, ready to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub kind: &'static str,
    /// The language folder the template came from (after fallbacks).
    pub language: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// Renders `letter` in the customer's language (falling back as
/// [`Templates::render`] does).
pub fn render(
    t: &Templates,
    letter: AgreementLetter,
    ctx: &Context,
) -> Result<Document, TemplateError> {
    let kind = letter.kind();
    let r = t.render(kind, &ctx.customer.language, ctx)?;
    let language = t
        .language_for(kind, &ctx.customer.language)
        .unwrap_or(t.default_language())
        .to_string();
    Ok(Document {
        kind,
        language,
        subject: r.subject,
        text: r.text,
        html: r.html,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn to(language: Option<&str>) -> Addressee {
        Addressee {
            code: "C5".into(),
            name: "Weber GmbH".into(),
            company: "ACME_DE".into(),
            country: "DE".into(),
            language: language.map(str::to_string),
        }
    }

    fn facts() -> AgreementFacts {
        let line = |number, due: &str, amount| templates::Installment {
            number,
            due: d(due),
            principal: amount,
            interest: dec!(0),
            amount,
        };
        AgreementFacts {
            id: 7,
            as_of: d("2026-11-01"),
            currency: "EUR".into(),
            principal: dec!(1000.00),
            fine: dec!(20.00),
            interest: dec!(15.50),
            costs: dec!(5.00),
            debt: dec!(1040.50),
            items: vec![AgreementItemFacts {
                document_no: "INV-1".into(),
                due_date: d("2026-09-01"),
                open_amount: dec!(1000.00),
                fine: dec!(20.00),
                interest: dec!(15.50),
                costs: dec!(5.00),
            }],
            schedule: vec![
                line(1, "2026-12-01", dec!(520.25)),
                line(2, "2027-01-01", dec!(520.25)),
            ],
        }
    }

    #[test]
    fn a_debt_recognition_states_the_items_the_totals_and_the_plan() {
        let on = d("2026-11-03");
        let c = agreement_context(
            AgreementLetter::DebtRecognition,
            &to(Some("de")),
            &facts(),
            on,
        );
        assert_eq!(
            (c.customer.name.as_str(), c.customer.language.as_str()),
            ("Weber GmbH", "de")
        );
        assert_eq!(c.company.name, "ACME_DE");
        assert_eq!(c.as_of, on);
        let i = &c.items[0];
        assert_eq!(
            i.days_overdue, 61,
            "counted to the pricing day, not the letter's"
        );
        assert_eq!(
            (i.fee, i.interest, i.total),
            (dec!(25.00), dec!(15.50), dec!(1040.50))
        );
        let t = &c.totals[0];
        assert_eq!(
            (t.open_amount, t.fees, t.total),
            (dec!(1000.00), dec!(25.00), dec!(1040.50))
        );
        let a = c.agreement.as_ref().unwrap();
        assert_eq!(
            (a.id.as_str(), a.debt, a.signed_on),
            ("7", dec!(1040.50), Some(on))
        );
        assert_eq!(a.installments.len(), 2);
        assert_eq!(c.receipt, None);
        assert_eq!((c.level, c.deadline), (None, None));
    }

    #[test]
    fn an_acquittance_adds_the_receipt_for_every_instalment() {
        let on = d("2027-01-05");
        let c = agreement_context(AgreementLetter::Acquittance, &to(None), &facts(), on);
        let r = c.receipt.unwrap();
        assert_eq!(
            (r.agreement_id.as_str(), r.paid_on, r.amount),
            ("7", on, dec!(1040.50))
        );
        assert_eq!(c.customer.language, crate::DEFAULT_LANGUAGE);
        assert_eq!(AgreementLetter::Acquittance.kind(), "acquittance");
        assert_eq!(AgreementLetter::DebtRecognition.kind(), "debt_recognition");
    }
}
