//! Arrears: a collections-management engine and daemon.
//!
//! # Layout
//! - [`money`]: exact amounts with ISO 4217 currencies and explicit rates.
//! - [`domain`]: the collections vocabulary (items, payments, holds, activities…).
//! - [`rules`]: YAML strategies + Rhai scripts compiled into a validated `RuleSet`.
//! - [`store`]: SQLite persistence — migrations, idempotent ingest, case operations.
//! - [`engine`]: ByDesign case rules, scoring, escalation, worklists and the run.
//! - [`import`]: CSV import; [`demo`]: synthetic portfolios.
//! - [`kpi`]: finance KPIs computed from the store.
//! - [`statement`]: camt.053/camt.054/MT940 bank statements and matching credits to items.
//! - [`server`]: `arrears serve` — gRPC API, auth, runs, rules watcher, metrics.
//! - [`config`]: the daemon's own settings file; [`secret`]: secrets read from files.
//! - [`connector`]: data sources on schedules (ERP, inboxes, bureau, plugins) and their health.
//! - [`finance`]: interest, fines and instalment schedules for payment agreements.
//! - [`templates`]: correspondence templates (per language, checked when rules load).
//! - [`compliance`]: the guard every contact passes (hours, limits, opt-outs).
//! - [`delivery`]: sending one message by SMTP or webhook, with failures classified.
//! - [`correspondence`]: escalation steps → messages → delivery, through the guard.
//! - [`secret`]: secret files, refused when other users can read them.

pub use arrears_app as app;
pub use arrears_app::correspondence;
pub use arrears_connectors as connector;
pub use arrears_core::clock;
pub use arrears_core::domain;
pub use arrears_delivery as delivery;
pub use arrears_demo as demo;
pub use arrears_rules::compliance;
pub use arrears_server::config;
pub mod engine;
pub use arrears_core::money;
pub use arrears_finance as finance;
pub use arrears_import as import;
pub use arrears_kpi as kpi;
pub mod rules;
pub use arrears_secret as secret;
pub use arrears_server as server;

pub use arrears_rules::templates;
pub use arrears_statements as statement;
pub use arrears_store as store;
