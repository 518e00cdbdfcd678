//! The engine: per-customer evaluation (facts → strategy → segment → score → profile →
//! group → cases → escalation → worklist) and the portfolio run around it.

pub mod case;
pub mod escalation;
pub mod evaluate;
pub use arrears_rules::facts;
pub mod run;
pub mod simulate;
pub mod worklist;
