//! Matching a bank credit to open items, strongest evidence first:
//! 1. a structured creditor reference (SCOR, ISR, QRR…) naming an item's document
//!    number;
//! 2. an invoice number written in the remittance text;
//! 3. the end-to-end id naming a document number;
//! 4. the payer's name naming one customer, and the amount fitting one of its open
//!    items or its whole balance — or, with no customer, one open item in the
//!    currency with exactly that amount.
//!
//! 1–3 are applied at once (the payer told us what they pay); 4 is applied only at
//! or above [`MatchOptions::min_confidence`], otherwise it is a suggestion in the
//! review queue. Credits without a match wait in the review queue too.
//!
//! The open items come through [`Lookup`], so the decisions here need no database.

use std::collections::BTreeSet;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::{Entry, Transaction};

/// Below this a heuristic match is only suggested. An end-to-end id sits exactly on
/// it, so by default it is applied and a stricter threshold turns it into a suggestion.
pub const DEFAULT_MIN_CONFIDENCE: Decimal = Decimal::from_parts(9, 0, 0, false, 1);

const REFERENCE: Decimal = Decimal::ONE;
const INVOICE_NUMBER: Decimal = Decimal::from_parts(95, 0, 0, false, 2);
const END_TO_END_ID: Decimal = DEFAULT_MIN_CONFIDENCE;
const PAYER_AND_AMOUNT: Decimal = Decimal::from_parts(8, 0, 0, false, 1);
const AMOUNT_ONLY: Decimal = Decimal::from_parts(5, 0, 0, false, 1);
const PAYER_ONLY: Decimal = Decimal::from_parts(4, 0, 0, false, 1);

#[derive(Debug, Clone)]
pub struct MatchOptions {
    /// Heuristic matches (payer name and amount) at or above this confidence are
    /// applied; below it they are suggestions for a person to confirm.
    pub min_confidence: Decimal,
}

impl Default for MatchOptions {
    fn default() -> Self {
        MatchOptions {
            min_confidence: DEFAULT_MIN_CONFIDENCE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CreditStatus {
    /// The whole credit went to the items it names.
    Matched,
    /// Matched, but the amounts differ: the items stay partly open, or part of the
    /// credit is left unapplied (overpayment) and waits in the review queue.
    Partial,
    /// A heuristic suggestion below the confidence threshold: nothing applied.
    Review,
    /// Nothing found: nothing applied.
    Unmatched,
}

impl CreditStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CreditStatus::Matched => "matched",
            CreditStatus::Partial => "partial",
            CreditStatus::Review => "review",
            CreditStatus::Unmatched => "unmatched",
        }
    }
}

/// Whether a recorded credit (by its stored status) still waits for a person: nothing
/// or only a suggestion applied, or money left over.
pub fn in_review_queue(status: &str, unapplied: Decimal) -> bool {
    matches!(status, "review" | "unmatched")
        || (matches!(status, "matched" | "partial") && unapplied > Decimal::ZERO)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Allocation {
    pub item_id: i64,
    pub document_no: String,
    pub amount: Decimal,
}

/// An open item a credit may pay, in the credit's currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: i64,
    pub customer_id: i64,
    pub document_no: String,
    pub open: Decimal,
}

/// Where the open items in the credit's currency come from. Each answer is in
/// due-date order; where only "exactly one" matters, two answers suffice.
pub trait Lookup {
    type Error;
    /// Open items whose document number, upper-cased, is one of `docs`.
    fn by_documents(&mut self, docs: &[String]) -> Result<Vec<Candidate>, Self::Error>;
    /// Customers with this name, ignoring case.
    fn customers_named(&mut self, name: &str) -> Result<Vec<i64>, Self::Error>;
    /// A customer's open items.
    fn open_items(&mut self, customer_id: i64) -> Result<Vec<Candidate>, Self::Error>;
    /// Open items with exactly this open amount.
    fn with_open_amount(&mut self, amount: Decimal) -> Result<Vec<Candidate>, Self::Error>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub items: Vec<Candidate>,
    pub method: &'static str,
    pub confidence: Decimal,
    /// How a heuristic match was made, for the person reviewing it.
    pub note: String,
}

fn found(items: Vec<Candidate>, method: &'static str, confidence: Decimal, note: &str) -> Found {
    Found {
        items,
        method,
        confidence,
        note: note.to_string(),
    }
}

/// The items `amount` (from transaction `t`) most likely pays, by the strongest
/// evidence there is; `None` when nothing points anywhere.
pub fn find<L: Lookup>(
    lookup: &mut L,
    t: &Transaction,
    amount: Decimal,
) -> Result<Option<Found>, L::Error> {
    let refs: Vec<String> = t.creditor_refs.iter().flat_map(|r| variants(r)).collect();
    let items = lookup.by_documents(&refs)?;
    if !items.is_empty() {
        return Ok(Some(found(items, "reference", REFERENCE, "")));
    }
    let items = lookup.by_documents(&tokens(&t.remittance))?;
    if !items.is_empty() {
        return Ok(Some(found(items, "invoice_number", INVOICE_NUMBER, "")));
    }
    if let Some(e2e) = &t.end_to_end_id {
        let items = lookup.by_documents(&variants(e2e))?;
        if !items.is_empty() {
            return Ok(Some(found(items, "end_to_end_id", END_TO_END_ID, "")));
        }
    }
    if amount <= Decimal::ZERO {
        return Ok(None);
    }
    let customers = match &t.debtor_name {
        Some(n) if !n.trim().is_empty() => lookup.customers_named(n.trim())?,
        _ => vec![],
    };
    if let [customer] = customers.as_slice() {
        let open = lookup.open_items(*customer)?;
        let exact: Vec<&Candidate> = open.iter().filter(|o| o.open == amount).collect();
        if let [o] = exact.as_slice() {
            return Ok(Some(found(
                vec![(*o).clone()],
                "payer_and_amount",
                PAYER_AND_AMOUNT,
                "payer name and exact open amount",
            )));
        }
        let total: Decimal = open.iter().map(|o| o.open).sum();
        if !open.is_empty() && total == amount {
            return Ok(Some(found(
                open,
                "payer_and_balance",
                PAYER_AND_AMOUNT,
                "payer name and the whole open balance",
            )));
        }
        if !open.is_empty() {
            return Ok(Some(found(
                open,
                "payer",
                PAYER_ONLY,
                "payer name only; the amount fits no item",
            )));
        }
    }
    if let [o] = lookup.with_open_amount(amount)?.as_slice() {
        return Ok(Some(found(
            vec![o.clone()],
            "amount",
            AMOUNT_ONLY,
            "the only open item with exactly this amount",
        )));
    }
    Ok(None)
}

/// Splits `amount` over `items` in their order; returns the allocations and what is
/// left over.
pub fn allocate(items: &[Candidate], amount: Decimal) -> (Vec<Allocation>, Decimal) {
    let mut left = amount;
    let mut out = Vec::new();
    for o in items {
        if left <= Decimal::ZERO {
            break;
        }
        let a = left.min(o.open);
        if a > Decimal::ZERO {
            out.push(Allocation {
                item_id: o.id,
                document_no: o.document_no.clone(),
                amount: a,
            });
            left -= a;
        }
    }
    (out, left)
}

/// What becomes of a credit of `amount` `currency` given what [`find`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub status: CreditStatus,
    /// Applied when the status is matched or partial, else only suggested.
    pub allocations: Vec<Allocation>,
    pub unapplied: Decimal,
    /// Why the amounts differ, for the review queue.
    pub notes: Vec<String>,
}

pub fn decide(
    found: Option<&Found>,
    amount: Decimal,
    currency: &str,
    opts: &MatchOptions,
) -> Decision {
    let Some(f) = found else {
        return Decision {
            status: CreditStatus::Unmatched,
            allocations: vec![],
            unapplied: amount,
            notes: vec![],
        };
    };
    let (allocations, left) = allocate(&f.items, amount);
    let mut notes = Vec::new();
    if !f.note.is_empty() {
        notes.push(f.note.clone());
    }
    if f.confidence < opts.min_confidence {
        return Decision {
            status: CreditStatus::Review,
            allocations,
            unapplied: amount,
            notes,
        };
    }
    let open_total: Decimal = f.items.iter().map(|o| o.open).sum();
    let status = if left == Decimal::ZERO && amount == open_total {
        CreditStatus::Matched
    } else {
        CreditStatus::Partial
    };
    if left > Decimal::ZERO {
        notes.push(format!(
            "{amount} exceeds what the items owe; {left} {currency} unapplied"
        ));
    } else if amount < open_total {
        notes.push(format!("pays {amount} of {open_total} {currency} open"));
    }
    Decision {
        status,
        allocations,
        unapplied: left,
        notes,
    }
}

/// Ways a reference may name a document number: as written, without an ISO 11649
/// `RF` prefix and check digits, without leading zeros (national numeric
/// references pad them), and without a trailing check digit (ISR/QRR, Finnish).
pub fn variants(reference: &str) -> Vec<String> {
    let r: String = reference
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_uppercase();
    let mut out = BTreeSet::new();
    if r.len() < 3 {
        return vec![];
    }
    out.insert(r.clone());
    let mut base = r.clone();
    if r.len() > 4 && r.starts_with("RF") && r[2..4].chars().all(|c| c.is_ascii_digit()) {
        base = r[4..].to_string();
        out.insert(base.clone());
    }
    if base.chars().all(|c| c.is_ascii_digit()) {
        let trimmed = base.trim_start_matches('0');
        if trimmed.len() >= 3 {
            out.insert(trimmed.to_string());
            out.insert(trimmed[..trimmed.len() - 1].to_string());
        }
    }
    out.into_iter().collect()
}

/// Tokens of remittance text that could be document numbers: they hold a digit and
/// are at least 3 characters. Lines are also joined without a space, because banks
/// cut remittance at 35 characters mid-word.
pub fn tokens(lines: &[String]) -> Vec<String> {
    let mut out = BTreeSet::new();
    let spaced = lines.join(" ");
    let glued = lines.concat();
    for text in [spaced.as_str(), glued.as_str()] {
        for t in text.split(|c: char| c.is_whitespace() || ",;:()[]'\"".contains(c)) {
            let t = t.trim_matches(|c: char| c == '.' || c == '-' || c == '/' || c == '#');
            if t.len() >= 3 && t.chars().any(|c| c.is_ascii_digit()) {
                out.insert(t.to_uppercase());
            }
        }
    }
    out.into_iter().take(64).collect()
}

/// One credit of an entry.
#[derive(Debug, Clone)]
pub struct Credit {
    /// The transaction's number in its entry from 1; 0 for the money the details do
    /// not account for.
    pub tx_no: u32,
    pub amount: Decimal,
    pub transaction: Transaction,
    pub note: Option<String>,
}

/// An entry's credits: one per transaction detail, or the entry itself when the
/// bank gave no details (then its free text stands in for the remittance). When a
/// batch's details do not account for all of its money (summarised batches, details
/// without amounts), the rest becomes one more credit, so every cent received is
/// either applied or in the review queue.
pub fn credits_of(e: &Entry) -> Vec<Credit> {
    let with_info = |t: &Transaction| {
        let mut t = t.clone();
        if t.remittance.is_empty() {
            t.remittance.extend(e.entry_info.iter().cloned());
        }
        t
    };
    let credit = |tx_no, amount, transaction, note| Credit {
        tx_no,
        amount,
        transaction,
        note,
    };
    // A lone transaction is the entry; its own amount may be in another currency
    // (instructed amount) or simply inconsistent, and the entry amount is what
    // reached the account.
    if let [t] = e.transactions.as_slice() {
        return vec![credit(1, e.amount, with_info(t), None)];
    }
    let mut out = Vec::new();
    let mut without_amount = None;
    for (i, t) in e.transactions.iter().enumerate() {
        match t.amount {
            Some(a) if a > Decimal::ZERO => out.push(credit(i as u32 + 1, a, with_info(t), None)),
            _ => {
                without_amount.get_or_insert_with(|| with_info(t));
            }
        }
    }
    let accounted: Decimal = out.iter().map(|c| c.amount).sum();
    let rest = e.amount - accounted;
    if rest > Decimal::ZERO {
        let t = without_amount.unwrap_or_else(|| Transaction {
            remittance: e.entry_info.iter().cloned().collect(),
            ..Transaction::default()
        });
        let note = (!e.transactions.is_empty()).then(|| {
            format!(
                "the bank's details account for {accounted} of this {} entry; the rest is one credit",
                e.amount
            )
        });
        out.push(credit(0, rest, t, note));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    /// Open items in one currency, in due-date order, and the customers' names.
    #[derive(Default)]
    struct Book {
        items: Vec<Candidate>,
        customers: Vec<(i64, &'static str)>,
        asked: Vec<&'static str>,
    }

    impl Book {
        fn item(mut self, id: i64, customer_id: i64, doc: &str, open: Decimal) -> Book {
            self.items.push(Candidate {
                id,
                customer_id,
                document_no: doc.into(),
                open,
            });
            self
        }
    }

    impl Lookup for Book {
        type Error = std::convert::Infallible;
        fn by_documents(&mut self, docs: &[String]) -> Result<Vec<Candidate>, Self::Error> {
            self.asked.push("documents");
            Ok(self
                .items
                .iter()
                .filter(|i| docs.contains(&i.document_no.to_uppercase()))
                .cloned()
                .collect())
        }
        fn customers_named(&mut self, name: &str) -> Result<Vec<i64>, Self::Error> {
            Ok(self
                .customers
                .iter()
                .filter(|(_, n)| n.eq_ignore_ascii_case(name))
                .map(|(id, _)| *id)
                .collect())
        }
        fn open_items(&mut self, customer_id: i64) -> Result<Vec<Candidate>, Self::Error> {
            Ok(self
                .items
                .iter()
                .filter(|i| i.customer_id == customer_id)
                .cloned()
                .collect())
        }
        fn with_open_amount(&mut self, amount: Decimal) -> Result<Vec<Candidate>, Self::Error> {
            Ok(self
                .items
                .iter()
                .filter(|i| i.open == amount)
                .cloned()
                .collect())
        }
    }

    fn book() -> Book {
        Book {
            customers: vec![(1, "Acme GmbH"), (2, "Beta AG"), (3, "Twin"), (4, "twin")],
            ..Book::default()
        }
        .item(10, 1, "1245", dec!(120))
        .item(11, 1, "INV-1002", dec!(250))
        .item(20, 2, "B-1", dec!(60))
        .item(21, 2, "B-2", dec!(40))
        .item(30, 3, "T-1", dec!(77))
    }

    fn method(b: &mut Book, t: Transaction, amount: Decimal) -> Option<(&'static str, Decimal)> {
        let Ok(f) = find(b, &t, amount);
        f.map(|f| (f.method, f.confidence))
    }

    #[test]
    fn the_strongest_evidence_wins() {
        let mut b = book();
        let both = Transaction {
            creditor_refs: vec!["RF18 0000 1245".into()],
            remittance: vec!["INV-1002".into()],
            ..Transaction::default()
        };
        assert_eq!(method(&mut b, both, dec!(1)), Some(("reference", dec!(1))));
        assert_eq!(
            b.asked,
            vec!["documents"],
            "a reference found stops the search"
        );
        let text = Transaction {
            remittance: vec!["for inv-10".into(), "02 thanks".into()],
            end_to_end_id: Some("B-1".into()),
            ..Transaction::default()
        };
        assert_eq!(
            method(&mut b, text, dec!(1)),
            Some(("invoice_number", dec!(0.95)))
        );
        let e2e = Transaction {
            end_to_end_id: Some("b-1".into()),
            ..Transaction::default()
        };
        assert_eq!(
            method(&mut b, e2e, dec!(1)),
            Some(("end_to_end_id", DEFAULT_MIN_CONFIDENCE))
        );
    }

    #[test]
    fn the_payer_and_the_amount_are_weaker_evidence() {
        let mut b = book();
        let payer = |name: &str| Transaction {
            debtor_name: Some(name.into()),
            ..Transaction::default()
        };
        assert_eq!(
            method(&mut b, payer(" beta ag "), dec!(40)),
            Some(("payer_and_amount", dec!(0.8)))
        );
        assert_eq!(
            method(&mut b, payer("Beta AG"), dec!(100)),
            Some(("payer_and_balance", dec!(0.8)))
        );
        assert_eq!(
            method(&mut b, payer("Beta AG"), dec!(70)),
            Some(("payer", dec!(0.4)))
        );
        // Two customers of that name: the amount alone decides, if one item has it.
        assert_eq!(
            method(&mut b, payer("TWIN"), dec!(77)),
            Some(("amount", dec!(0.5)))
        );
        assert_eq!(
            method(&mut b, payer("Nobody"), dec!(60)),
            Some(("amount", dec!(0.5)))
        );
        let mut twice = book().item(40, 1, "X-1", dec!(60));
        assert_eq!(method(&mut twice, payer("Nobody"), dec!(60)), None);
        assert_eq!(method(&mut b, payer("Beta AG"), dec!(0)), None);
    }

    #[test]
    fn the_threshold_decides_between_applying_and_suggesting() {
        let b = book();
        let f = found(
            b.items[2..4].to_vec(),
            "payer_and_balance",
            dec!(0.8),
            "payer name",
        );
        let strict = decide(Some(&f), dec!(100), "EUR", &MatchOptions::default());
        assert_eq!(strict.status, CreditStatus::Review);
        assert_eq!(strict.unapplied, dec!(100), "a suggestion applies nothing");
        assert_eq!(strict.allocations.len(), 2);
        assert_eq!(strict.notes, vec!["payer name"]);
        let lenient = MatchOptions {
            min_confidence: dec!(0.8),
        };
        let d = decide(Some(&f), dec!(100), "EUR", &lenient);
        assert_eq!((d.status, d.unapplied), (CreditStatus::Matched, dec!(0)));
        assert_eq!(MatchOptions::default().min_confidence, dec!(0.9));
    }

    #[test]
    fn short_and_over_payments_are_partial_with_a_note() {
        let b = book();
        let f = found(b.items[0..2].to_vec(), "reference", dec!(1), "");
        let short = decide(Some(&f), dec!(200), "EUR", &MatchOptions::default());
        assert_eq!(short.status, CreditStatus::Partial);
        assert_eq!(
            short.allocations,
            vec![
                Allocation {
                    item_id: 10,
                    document_no: "1245".into(),
                    amount: dec!(120)
                },
                Allocation {
                    item_id: 11,
                    document_no: "INV-1002".into(),
                    amount: dec!(80)
                }
            ]
        );
        assert_eq!(short.notes, vec!["pays 200 of 370 EUR open"]);
        let over = decide(Some(&f), dec!(400), "EUR", &MatchOptions::default());
        assert_eq!(
            (over.status, over.unapplied),
            (CreditStatus::Partial, dec!(30))
        );
        assert_eq!(
            over.notes,
            vec!["400 exceeds what the items owe; 30 EUR unapplied"]
        );
        let none = decide(None, dec!(5), "EUR", &MatchOptions::default());
        assert_eq!(
            (none.status, none.unapplied),
            (CreditStatus::Unmatched, dec!(5))
        );
        assert!(none.allocations.is_empty());
    }

    #[test]
    fn the_review_queue_holds_what_is_not_fully_applied() {
        assert!(in_review_queue("review", dec!(0)));
        assert!(in_review_queue("unmatched", dec!(5)));
        assert!(in_review_queue("partial", dec!(1)));
        assert!(!in_review_queue("partial", dec!(0)));
        assert!(!in_review_queue("matched", dec!(0)));
        assert!(!in_review_queue("dismissed", dec!(5)));
        assert!(!in_review_queue("resolved", dec!(0)));
    }

    #[test]
    fn reference_variants_cover_rf_padding_and_check_digits() {
        let v = variants("RF18 5390 0754 7034");
        assert!(v.contains(&"539007547034".to_string()), "{v:?}");
        assert!(v.contains(&"53900754703".to_string()), "{v:?}");
        let v = variants("000000000000000000000012453");
        assert!(v.contains(&"1245".to_string()), "{v:?}");
        assert!(variants("12").is_empty());
        let t = tokens(&["INVOICE R775".into(), "61 AND 2026-11".into()]);
        assert!(t.contains(&"R77561".to_string()), "{t:?}");
        assert!(t.contains(&"R775".to_string()), "{t:?}");
    }

    fn entry(amount: Decimal, transactions: Vec<Transaction>) -> Entry {
        Entry {
            line: 1,
            amount,
            currency: "EUR".into(),
            credit: true,
            reversal: false,
            status: None,
            booking_date: None,
            value_date: None,
            bank_ref: None,
            batch_count: None,
            transactions,
            entry_info: Some("entry text 123".into()),
        }
    }

    #[test]
    fn every_cent_of_an_entry_is_one_credit_or_another() {
        let lone = credits_of(&entry(dec!(50), vec![Transaction::default()]));
        assert_eq!(
            (lone.len(), lone[0].tx_no, lone[0].amount),
            (1, 1, dec!(50))
        );
        assert_eq!(lone[0].transaction.remittance, vec!["entry text 123"]);

        let t = |a: Option<Decimal>| Transaction {
            amount: a,
            ..Transaction::default()
        };
        let batch = credits_of(&entry(
            dec!(100),
            vec![t(Some(dec!(30))), t(None), t(Some(dec!(20)))],
        ));
        let got: Vec<(u32, Decimal)> = batch.iter().map(|c| (c.tx_no, c.amount)).collect();
        assert_eq!(got, vec![(1, dec!(30)), (3, dec!(20)), (0, dec!(50))]);
        assert_eq!(
            batch[2].note.as_deref(),
            Some("the bank's details account for 50 of this 100 entry; the rest is one credit")
        );
        assert!(
            credits_of(&entry(dec!(50), vec![t(Some(dec!(30))), t(Some(dec!(20)))]))
                .iter()
                .all(|c| c.tx_no > 0)
        );
    }
}
