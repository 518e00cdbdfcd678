//! `arrears::rules`: the `arrears-rules` crate, plus the rule-fixture runner of the
//! application crate under its old path.

pub use arrears_app::fixtures;
pub use arrears_rules::*;
