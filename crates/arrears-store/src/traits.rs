//! What the application needs from a store, as traits: the use cases are written
//! against them, not against a database. [`Store`] implements every one by calling
//! its own methods, on SQLite or PostgreSQL alike; no SQL lives here.
//!
//! The traits follow what the application does, not the tables:
//! - [`ReachLookup`]: whose a customer, case, agreement or dispute is — what checking
//!   a caller's reach reads, before every use case;
//! - [`CaseStore`]: working a case (notes, activities, assignment), resubmission and
//!   the customer's contact preferences;
//! - [`PromiseStore`], [`DisputeStore`], [`AgreementStore`]: those records' life;
//! - [`PortfolioStore`]: the portfolio run's input and output and the figures after;
//! - [`ChangeFeed`]: the markers the daemon polls to know a run has work;
//! - [`OutboxStore`]: the escalation steps to compose and the messages to deliver;
//! - [`StatementStore`]: bank statements and the credits they bring;
//! - [`AuditLog`]: the audited write, the log and its verification;
//! - [`WriteOffStore`]: write-offs at the end of the collection process.
//!
//! Every method keeps the signature of the [`Store`] method it stands for and returns
//! the store's own types and [`StoreError`], so a use case written against the traits
//! reads as it did against `Store`, and a call on a `Store` still reaches the inherent
//! method (inherent methods win method resolution; the traits add nothing a `Store`
//! caller sees).
//!
//! # Transactions
//!
//! A use case checks the caller's reach, reads the "before", changes and records the
//! audit entry in one transaction. [`AuditLog::audited`] opens the transaction, hands the closure the store itself (`&mut
//! Self`) — now inside that transaction — and commits with the audit record or rolls
//! everything back. Writes made inside the closure that open a transaction of their
//! own nest in it (a savepoint).
//!
//! The store holds its transaction state in itself: it `BEGIN`s on its one
//! connection, passes `self` on, and `COMMIT`s or `ROLLBACK`s after — its other
//! methods use the same connection and so run inside. We chose `&mut Self` over an associated `Tx<'a>` type (a borrowed
//! transaction handle implementing the other traits) because every use case would
//! then need higher-ranked bounds on it (`for<'a> S::Tx<'a>: CaseStore + …`) for no
//! gain a store with one connection could use. The closure is generic, so `audited` has
//! `where Self: Sized`: the traits stay usable as `dyn` for everything else.

use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::{
    AgreementView, AuditRecord, AuditVerdict, CaseDetail, ChangesSince, ContactProfile,
    ContactUpdate, CreditView, DisputeView, Fee, ImportReport, ItemRow, JudgeStats, LetterItem,
    MatchOptions, MessageView, NewMessage, NewPromise, OutboxPass, Owner, Portfolio, PromiseView,
    Proposal, Resolution, Result, RunInput, RunOutput, Scope, SettleStats, StepToSend, Store,
    StoreError, Terms, WriteOffTerms, WriteOffView,
};
use arrears_core::domain::Role;
use arrears_rules::raw::AgreementsSection;
use arrears_rules::templates::Templates;
use arrears_rules::{CasePolicy, Subcategory};
use arrears_statements::StatementFile;

/// Whose a record is: what a use case reads to check the caller's reach.
pub trait ReachLookup {
    /// The customer named `COMPANY/CODE`, by a code unique across companies, or by id.
    fn customer_id(&self, key: &str) -> Result<i64>;
    /// The customer's group and collector, as the latest run routed it.
    fn customer_owner(&self, customer_id: i64) -> Result<Owner>;
    /// The case's customer's owner, with the case's own assignee as its collector.
    fn case_owner(&self, case_id: i64) -> Result<Owner>;
    fn agreement_customer(&self, agreement_id: i64) -> Result<i64>;
    fn dispute_customer(&self, dispute_id: i64) -> Result<i64>;
}

/// Cases as collectors work them, and the customer-wide changes made from a case.
pub trait CaseStore {
    fn case_detail(&self, id: i64) -> Result<CaseDetail>;
    fn add_note(
        &mut self,
        id: i64,
        on: NaiveDate,
        actor: &str,
        text: &str,
        policy: &CasePolicy,
    ) -> Result<()>;
    /// Returns the case's next-activity-due date.
    fn set_activity(
        &mut self,
        id: i64,
        category: &str,
        sub: &Subcategory,
        on: NaiveDate,
        actor: &str,
        policy: &CasePolicy,
    ) -> Result<NaiveDate>;
    /// Returns the case's next-activity-due date.
    fn complete_activity(
        &mut self,
        id: i64,
        on: NaiveDate,
        actor: &str,
        ptp: Option<(NaiveDate, Decimal)>,
        policy: &CasePolicy,
    ) -> Result<NaiveDate>;
    fn assign_cases(
        &mut self,
        ids: &[i64],
        collector: Option<&str>,
        on: NaiveDate,
        actor: &str,
        policy: &CasePolicy,
    ) -> Result<()>;
    fn oldest_open_case(&self, customer_id: i64) -> Result<Option<i64>>;
    fn resubmit(
        &mut self,
        customer_id: i64,
        on_date: NaiveDate,
        reason: &str,
        actor: &str,
    ) -> Result<()>;
    fn contact_profile(&self, customer_id: i64) -> Result<ContactProfile>;
    fn set_contact_preferences(
        &mut self,
        customer_id: i64,
        change: &ContactUpdate,
    ) -> Result<ContactProfile>;
}

pub trait PromiseStore {
    fn create_promise(&mut self, p: &NewPromise, actor: &str) -> Result<PromiseView>;
    /// Judges the promises whose date (plus the tolerance) has passed by `as_of`.
    fn judge_promises(&mut self, as_of: NaiveDate, tolerance_days: i64) -> Result<JudgeStats>;
}

pub trait DisputeStore {
    /// Opens one dispute over the items of `case_id` and of `more`; returns its id.
    fn open_dispute_on(
        &mut self,
        case_id: i64,
        more: &[i64],
        reason: &str,
        on: NaiveDate,
        actor: &str,
    ) -> Result<i64>;
    fn dispute(&self, dispute_id: i64) -> Result<DisputeView>;
    fn resolve_dispute(
        &mut self,
        dispute_id: i64,
        resolution: &str,
        on: NaiveDate,
        actor: &str,
    ) -> Result<DisputeView>;
}

pub trait AgreementStore {
    fn propose_agreement(
        &mut self,
        p: &Proposal,
        who: &str,
        role: Role,
        terms: &Terms,
    ) -> Result<AgreementView>;
    fn agreement(&self, id: i64) -> Result<AgreementView>;
    fn approve_agreement(
        &mut self,
        id: i64,
        who: &str,
        role: Role,
        note: &str,
        on: NaiveDate,
        terms: &Terms,
    ) -> Result<AgreementView>;
    fn reject_agreement(
        &mut self,
        id: i64,
        who: &str,
        reason: &str,
        on: NaiveDate,
    ) -> Result<AgreementView>;
    /// Breaks agreements with a missed instalment and ends paid-up ones, as of `as_of`.
    fn settle_agreements(
        &mut self,
        as_of: NaiveDate,
        terms: &AgreementsSection,
        templates: Option<&Templates>,
    ) -> Result<SettleStats>;
}

/// The portfolio run: its input, its output written in one go, and the figures.
pub trait PortfolioStore {
    /// The latest run: its id, business date and rules hash.
    fn last_run(&self) -> Result<Option<(i64, NaiveDate, String)>>;
    fn load_run_input(&self, scope: Scope) -> Result<Vec<RunInput>>;
    /// Items by id as a load reads them, with their customer; items a load leaves
    /// out (cleared, without an open case) are missing.
    fn load_items(&self, ids: &[i64]) -> Result<Vec<(i64, ItemRow)>>;
    /// The change log after `after`, with the latest run and the customers marked
    /// changed, read together.
    fn changes_since(&self, after: i64) -> Result<ChangesSince>;
    /// Up to where in the change log the last load read.
    fn loaded_at(&self) -> Option<i64>;
    /// Worklist entries of customers an incremental run does not reload: (group,
    /// collector, items, amount).
    fn worklist_loads_outside_dirty(&self) -> Result<Vec<(String, String, i64, Decimal)>>;
    /// Writes the run's output and returns the run's id and the ids of the cases it
    /// opened, in `out.new_cases` order.
    fn write_run(
        &mut self,
        as_of: NaiveDate,
        rules_hash: &str,
        mode: &str,
        full: bool,
        out: &RunOutput,
        summary_json: &str,
    ) -> Result<(i64, Vec<i64>)>;
    fn portfolio(&self) -> Result<Portfolio>;
}

/// What tells the daemon a run has work: customers marked changed since a run last
/// loaded them.
pub trait ChangeFeed {
    /// The change counter, when a change no run has looked at exists.
    fn changes_pending(&self) -> Result<Option<i64>>;
    /// How many customers are marked changed.
    fn dirty_count(&self) -> Result<i64>;
}

/// The outbox: escalation steps waiting to be composed, and messages waiting to go.
pub trait OutboxStore {
    /// Held by one outbox pass while it runs; how a backend excludes other passes is
    /// its own (SQLite: a lock file next to the database).
    type Pass;
    /// Waits until no other pass runs, and holds that until the value is dropped.
    fn outbox_pass(&self) -> Result<Self::Pass>;
    /// Marks `unknown` the messages a killed pass left `sending`; only while holding
    /// a pass.
    fn messages_interrupted(&mut self, pass: &Self::Pass, now: DateTime<Utc>) -> Result<u32>;
    fn steps_to_send(&self) -> Result<Vec<StepToSend>>;
    fn escalation_step(&self, id: i64) -> Result<StepToSend>;
    fn supersede_waiting(&mut self, customer_id: i64, newer_step: i64) -> Result<u32>;
    fn close_step(
        &mut self,
        escalation_id: i64,
        status: &str,
        on: NaiveDate,
        event: Option<(&str, &str)>,
    ) -> Result<()>;
    fn letter_items(&self, ids: &[i64]) -> Result<Vec<LetterItem>>;
    /// Queues the message; `None` when an identical one is queued already.
    fn queue_message(&mut self, m: &NewMessage, now: DateTime<Utc>) -> Result<Option<i64>>;
    fn due_messages(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<MessageView>>;
    /// Claims the message for one attempt; `false` when another pass has it.
    fn reserve_message(&mut self, id: i64) -> Result<bool>;
    /// Marks a claimed message as being handed to a server, just before it is;
    /// `false` when the claim is no longer there (another pass took it over), and
    /// then it must not be sent.
    fn message_handing_over(&mut self, id: i64) -> Result<bool>;
    fn message_deferred(&mut self, id: i64, until: DateTime<Utc>, reason: &str) -> Result<()>;
    fn message_retry(&mut self, id: i64, next: DateTime<Utc>, error: &str) -> Result<()>;
    fn message_held(&mut self, id: i64, next: DateTime<Utc>, error: &str) -> Result<()>;
    fn cancel_message(&mut self, id: i64, why: &str) -> Result<()>;
    /// The customer's messages sent since `since`: (channel, when); what the
    /// compliance guard counts.
    fn contact_history(
        &self,
        customer_id: i64,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, DateTime<Utc>)>>;
    /// The channels the message's step has been tried on.
    fn tried_channels(&self, id: i64) -> Result<Vec<String>>;
    /// Gives up on the message's channel and queues `next` instead, or (without one)
    /// records the step as failed with `give_up_event`.
    fn fail_over(
        &mut self,
        id: i64,
        error: &str,
        counts_as_attempt: bool,
        next: Option<&NewMessage>,
        now: DateTime<Utc>,
        give_up_event: Option<(&str, &str)>,
    ) -> Result<()>;
    fn message_sent(
        &mut self,
        id: i64,
        now: DateTime<Utc>,
        receipt: &str,
        fees: &[Fee],
        event: Option<(&str, &str)>,
    ) -> Result<()>;
    #[allow(clippy::too_many_arguments)]
    fn letter_sent(
        &mut self,
        id: i64,
        customer_id: i64,
        language: &str,
        subject: &str,
        text: &str,
        html: &str,
        now: DateTime<Utc>,
        fees: &[Fee],
        event: Option<(&str, &str)>,
    ) -> Result<i64>;
}

/// Bank statements and the credits they bring.
pub trait StatementStore {
    fn import_statement(
        &mut self,
        name: &str,
        raw: &[u8],
        file: &StatementFile,
        opts: &MatchOptions,
    ) -> Result<ImportReport>;
    fn list_credits(&self, review_only: bool, limit: usize) -> Result<Vec<CreditView>>;
    fn credit(&self, id: i64) -> Result<CreditView>;
    fn resolve_credit(&mut self, id: i64, how: &Resolution, reason: &str) -> Result<CreditView>;
}

/// The audit log: every change a person makes lands with its record, in one
/// transaction (see the module's notes on transactions).
pub trait AuditLog {
    /// Runs `f` inside one transaction and appends the audit record of `principal`
    /// doing `action` on `target`, with the (value, before, after) `f` returns;
    /// commits both or neither.
    fn audited<T, E: From<StoreError>>(
        &mut self,
        principal: &str,
        action: &str,
        target: &str,
        f: impl FnOnce(&mut Self) -> std::result::Result<(T, serde_json::Value, serde_json::Value), E>,
    ) -> std::result::Result<T, E>
    where
        Self: Sized;
    fn audit_records(&self, after_id: i64, limit: usize) -> Result<Vec<AuditRecord>>;
    /// Checks the chain, against the anchor file when given.
    fn verify_audit(&self, anchor: Option<&Path>) -> Result<AuditVerdict>;
}

// `Store::method(self, …)` names the inherent method (it wins over the trait's), so
// each of these calls the SQLite code, never itself.

impl ReachLookup for Store {
    fn customer_id(&self, key: &str) -> Result<i64> {
        Store::customer_id(self, key)
    }
    fn customer_owner(&self, customer_id: i64) -> Result<Owner> {
        Store::customer_owner(self, customer_id)
    }
    fn case_owner(&self, case_id: i64) -> Result<Owner> {
        Store::case_owner(self, case_id)
    }
    fn agreement_customer(&self, agreement_id: i64) -> Result<i64> {
        Store::agreement_customer(self, agreement_id)
    }
    fn dispute_customer(&self, dispute_id: i64) -> Result<i64> {
        Store::dispute_customer(self, dispute_id)
    }
}

impl CaseStore for Store {
    fn case_detail(&self, id: i64) -> Result<CaseDetail> {
        Store::case_detail(self, id)
    }
    fn add_note(
        &mut self,
        id: i64,
        on: NaiveDate,
        actor: &str,
        text: &str,
        policy: &CasePolicy,
    ) -> Result<()> {
        Store::add_note(self, id, on, actor, text, policy)
    }
    fn set_activity(
        &mut self,
        id: i64,
        category: &str,
        sub: &Subcategory,
        on: NaiveDate,
        actor: &str,
        policy: &CasePolicy,
    ) -> Result<NaiveDate> {
        Store::set_activity(self, id, category, sub, on, actor, policy)
    }
    fn complete_activity(
        &mut self,
        id: i64,
        on: NaiveDate,
        actor: &str,
        ptp: Option<(NaiveDate, Decimal)>,
        policy: &CasePolicy,
    ) -> Result<NaiveDate> {
        Store::complete_activity(self, id, on, actor, ptp, policy)
    }
    fn assign_cases(
        &mut self,
        ids: &[i64],
        collector: Option<&str>,
        on: NaiveDate,
        actor: &str,
        policy: &CasePolicy,
    ) -> Result<()> {
        Store::assign_cases(self, ids, collector, on, actor, policy)
    }
    fn oldest_open_case(&self, customer_id: i64) -> Result<Option<i64>> {
        Store::oldest_open_case(self, customer_id)
    }
    fn resubmit(
        &mut self,
        customer_id: i64,
        on_date: NaiveDate,
        reason: &str,
        actor: &str,
    ) -> Result<()> {
        Store::resubmit(self, customer_id, on_date, reason, actor)
    }
    fn contact_profile(&self, customer_id: i64) -> Result<ContactProfile> {
        Store::contact_profile(self, customer_id)
    }
    fn set_contact_preferences(
        &mut self,
        customer_id: i64,
        change: &ContactUpdate,
    ) -> Result<ContactProfile> {
        Store::set_contact_preferences(self, customer_id, change)
    }
}

impl PromiseStore for Store {
    fn create_promise(&mut self, p: &NewPromise, actor: &str) -> Result<PromiseView> {
        Store::create_promise(self, p, actor)
    }
    fn judge_promises(&mut self, as_of: NaiveDate, tolerance_days: i64) -> Result<JudgeStats> {
        Store::judge_promises(self, as_of, tolerance_days)
    }
}

impl DisputeStore for Store {
    fn open_dispute_on(
        &mut self,
        case_id: i64,
        more: &[i64],
        reason: &str,
        on: NaiveDate,
        actor: &str,
    ) -> Result<i64> {
        Store::open_dispute_on(self, case_id, more, reason, on, actor)
    }
    fn dispute(&self, dispute_id: i64) -> Result<DisputeView> {
        Store::dispute(self, dispute_id)
    }
    fn resolve_dispute(
        &mut self,
        dispute_id: i64,
        resolution: &str,
        on: NaiveDate,
        actor: &str,
    ) -> Result<DisputeView> {
        Store::resolve_dispute(self, dispute_id, resolution, on, actor)
    }
}

impl AgreementStore for Store {
    fn propose_agreement(
        &mut self,
        p: &Proposal,
        who: &str,
        role: Role,
        terms: &Terms,
    ) -> Result<AgreementView> {
        Store::propose_agreement(self, p, who, role, terms)
    }
    fn agreement(&self, id: i64) -> Result<AgreementView> {
        Store::agreement(self, id)
    }
    fn approve_agreement(
        &mut self,
        id: i64,
        who: &str,
        role: Role,
        note: &str,
        on: NaiveDate,
        terms: &Terms,
    ) -> Result<AgreementView> {
        Store::approve_agreement(self, id, who, role, note, on, terms)
    }
    fn reject_agreement(
        &mut self,
        id: i64,
        who: &str,
        reason: &str,
        on: NaiveDate,
    ) -> Result<AgreementView> {
        Store::reject_agreement(self, id, who, reason, on)
    }
    fn settle_agreements(
        &mut self,
        as_of: NaiveDate,
        terms: &AgreementsSection,
        templates: Option<&Templates>,
    ) -> Result<SettleStats> {
        Store::settle_agreements(self, as_of, terms, templates)
    }
}

impl PortfolioStore for Store {
    fn last_run(&self) -> Result<Option<(i64, NaiveDate, String)>> {
        Store::last_run(self)
    }
    fn load_run_input(&self, scope: Scope) -> Result<Vec<RunInput>> {
        Store::load_run_input(self, scope)
    }
    fn load_items(&self, ids: &[i64]) -> Result<Vec<(i64, ItemRow)>> {
        Store::load_items(self, ids)
    }
    fn changes_since(&self, after: i64) -> Result<ChangesSince> {
        Store::changes_since(self, after)
    }
    fn loaded_at(&self) -> Option<i64> {
        Store::loaded_at(self)
    }
    fn worklist_loads_outside_dirty(&self) -> Result<Vec<(String, String, i64, Decimal)>> {
        Store::worklist_loads_outside_dirty(self)
    }
    fn write_run(
        &mut self,
        as_of: NaiveDate,
        rules_hash: &str,
        mode: &str,
        full: bool,
        out: &RunOutput,
        summary_json: &str,
    ) -> Result<(i64, Vec<i64>)> {
        Store::write_run(self, as_of, rules_hash, mode, full, out, summary_json)
    }
    fn portfolio(&self) -> Result<Portfolio> {
        Store::portfolio(self)
    }
}

impl ChangeFeed for Store {
    fn changes_pending(&self) -> Result<Option<i64>> {
        Store::changes_pending(self)
    }
    fn dirty_count(&self) -> Result<i64> {
        Store::dirty_count(self)
    }
}

impl OutboxStore for Store {
    type Pass = OutboxPass;
    fn outbox_pass(&self) -> Result<OutboxPass> {
        Store::outbox_pass(self)
    }
    fn messages_interrupted(&mut self, pass: &OutboxPass, now: DateTime<Utc>) -> Result<u32> {
        Store::messages_interrupted(self, pass, now)
    }
    fn steps_to_send(&self) -> Result<Vec<StepToSend>> {
        Store::steps_to_send(self)
    }
    fn escalation_step(&self, id: i64) -> Result<StepToSend> {
        Store::escalation_step(self, id)
    }
    fn supersede_waiting(&mut self, customer_id: i64, newer_step: i64) -> Result<u32> {
        Store::supersede_waiting(self, customer_id, newer_step)
    }
    fn close_step(
        &mut self,
        escalation_id: i64,
        status: &str,
        on: NaiveDate,
        event: Option<(&str, &str)>,
    ) -> Result<()> {
        Store::close_step(self, escalation_id, status, on, event)
    }
    fn letter_items(&self, ids: &[i64]) -> Result<Vec<LetterItem>> {
        Store::letter_items(self, ids)
    }
    fn queue_message(&mut self, m: &NewMessage, now: DateTime<Utc>) -> Result<Option<i64>> {
        Store::queue_message(self, m, now)
    }
    fn due_messages(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<MessageView>> {
        Store::due_messages(self, now, limit)
    }
    fn reserve_message(&mut self, id: i64) -> Result<bool> {
        Store::reserve_message(self, id)
    }
    fn message_handing_over(&mut self, id: i64) -> Result<bool> {
        Store::message_handing_over(self, id)
    }
    fn message_deferred(&mut self, id: i64, until: DateTime<Utc>, reason: &str) -> Result<()> {
        Store::message_deferred(self, id, until, reason)
    }
    fn message_retry(&mut self, id: i64, next: DateTime<Utc>, error: &str) -> Result<()> {
        Store::message_retry(self, id, next, error)
    }
    fn message_held(&mut self, id: i64, next: DateTime<Utc>, error: &str) -> Result<()> {
        Store::message_held(self, id, next, error)
    }
    fn cancel_message(&mut self, id: i64, why: &str) -> Result<()> {
        Store::cancel_message(self, id, why)
    }
    fn contact_history(
        &self,
        customer_id: i64,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, DateTime<Utc>)>> {
        Store::contact_history(self, customer_id, since)
    }
    fn tried_channels(&self, id: i64) -> Result<Vec<String>> {
        Store::tried_channels(self, id)
    }
    fn fail_over(
        &mut self,
        id: i64,
        error: &str,
        counts_as_attempt: bool,
        next: Option<&NewMessage>,
        now: DateTime<Utc>,
        give_up_event: Option<(&str, &str)>,
    ) -> Result<()> {
        Store::fail_over(self, id, error, counts_as_attempt, next, now, give_up_event)
    }
    fn message_sent(
        &mut self,
        id: i64,
        now: DateTime<Utc>,
        receipt: &str,
        fees: &[Fee],
        event: Option<(&str, &str)>,
    ) -> Result<()> {
        Store::message_sent(self, id, now, receipt, fees, event)
    }
    fn letter_sent(
        &mut self,
        id: i64,
        customer_id: i64,
        language: &str,
        subject: &str,
        text: &str,
        html: &str,
        now: DateTime<Utc>,
        fees: &[Fee],
        event: Option<(&str, &str)>,
    ) -> Result<i64> {
        Store::letter_sent(
            self,
            id,
            customer_id,
            language,
            subject,
            text,
            html,
            now,
            fees,
            event,
        )
    }
}

impl StatementStore for Store {
    fn import_statement(
        &mut self,
        name: &str,
        raw: &[u8],
        file: &StatementFile,
        opts: &MatchOptions,
    ) -> Result<ImportReport> {
        Store::import_statement(self, name, raw, file, opts)
    }
    fn list_credits(&self, review_only: bool, limit: usize) -> Result<Vec<CreditView>> {
        Store::list_credits(self, review_only, limit)
    }
    fn credit(&self, id: i64) -> Result<CreditView> {
        Store::credit(self, id)
    }
    fn resolve_credit(&mut self, id: i64, how: &Resolution, reason: &str) -> Result<CreditView> {
        Store::resolve_credit(self, id, how, reason)
    }
}

impl AuditLog for Store {
    fn audited<T, E: From<StoreError>>(
        &mut self,
        principal: &str,
        action: &str,
        target: &str,
        f: impl FnOnce(&mut Self) -> std::result::Result<(T, serde_json::Value, serde_json::Value), E>,
    ) -> std::result::Result<T, E> {
        Store::audited(self, principal, action, target, f)
    }
    fn audit_records(&self, after_id: i64, limit: usize) -> Result<Vec<AuditRecord>> {
        Store::audit_records(self, after_id, limit)
    }
    fn verify_audit(&self, anchor: Option<&Path>) -> Result<AuditVerdict> {
        Store::verify_audit(self, anchor)
    }
}

/// Write-offs at the end of the collection process: proposed, approved, rejected,
/// proposed by a ladder's last level, and reported to the ERP.
pub trait WriteOffStore {
    fn propose_write_off(
        &mut self,
        case_id: i64,
        reason: &str,
        on: NaiveDate,
        who: &str,
        role: Role,
        terms: &WriteOffTerms,
    ) -> Result<WriteOffView>;
    fn approve_write_off(
        &mut self,
        id: i64,
        who: &str,
        role: Role,
        note: &str,
        on: NaiveDate,
        terms: &WriteOffTerms,
    ) -> Result<WriteOffView>;
    fn reject_write_off(
        &mut self,
        id: i64,
        who: &str,
        reason: &str,
        on: NaiveDate,
    ) -> Result<WriteOffView>;
    fn write_off(&self, id: i64) -> Result<WriteOffView>;
    fn write_off_customer(&self, id: i64) -> Result<i64>;
    fn list_write_offs(
        &self,
        customer_id: Option<i64>,
        status: Option<&str>,
    ) -> Result<Vec<WriteOffView>>;
    fn propose_ladder_write_offs(
        &mut self,
        as_of: NaiveDate,
        rules: &arrears_rules::RuleSet,
    ) -> Result<u32>;
    fn write_offs_to_report(&self) -> Result<Vec<WriteOffView>>;
    fn mark_write_offs_reported(&mut self, ids: &[i64], on: NaiveDate) -> Result<u32>;
}

impl WriteOffStore for Store {
    fn propose_write_off(
        &mut self,
        case_id: i64,
        reason: &str,
        on: NaiveDate,
        who: &str,
        role: Role,
        terms: &WriteOffTerms,
    ) -> Result<WriteOffView> {
        Store::propose_write_off(self, case_id, reason, on, who, role, terms)
    }
    fn approve_write_off(
        &mut self,
        id: i64,
        who: &str,
        role: Role,
        note: &str,
        on: NaiveDate,
        terms: &WriteOffTerms,
    ) -> Result<WriteOffView> {
        Store::approve_write_off(self, id, who, role, note, on, terms)
    }
    fn reject_write_off(
        &mut self,
        id: i64,
        who: &str,
        reason: &str,
        on: NaiveDate,
    ) -> Result<WriteOffView> {
        Store::reject_write_off(self, id, who, reason, on)
    }
    fn write_off(&self, id: i64) -> Result<WriteOffView> {
        Store::write_off(self, id)
    }
    fn write_off_customer(&self, id: i64) -> Result<i64> {
        Store::write_off_customer(self, id)
    }
    fn list_write_offs(
        &self,
        customer_id: Option<i64>,
        status: Option<&str>,
    ) -> Result<Vec<WriteOffView>> {
        Store::list_write_offs(self, customer_id, status)
    }
    fn propose_ladder_write_offs(
        &mut self,
        as_of: NaiveDate,
        rules: &arrears_rules::RuleSet,
    ) -> Result<u32> {
        Store::propose_ladder_write_offs(self, as_of, rules)
    }
    fn write_offs_to_report(&self) -> Result<Vec<WriteOffView>> {
        Store::write_offs_to_report(self)
    }
    fn mark_write_offs_reported(&mut self, ids: &[i64], on: NaiveDate) -> Result<u32> {
        Store::mark_write_offs_reported(self, ids, on)
    }
}
