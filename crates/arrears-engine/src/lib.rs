//! The engine, pure: per-customer evaluation (facts → strategy → segment → score →
//! profile → group → cases → escalation → worklist) from a loaded portfolio snapshot
//! and a rule set. No store, no clock, no IO: the portfolio run around it loads,
//! decides here and writes back.

pub mod case;
pub mod escalation;
pub mod evaluate;
pub mod promise;
pub mod resident;
pub use arrears_rules::facts;
pub mod worklist;
