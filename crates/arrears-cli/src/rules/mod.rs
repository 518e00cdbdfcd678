//! The rules are the `arrears-rules` crate; the fixture runner stays here because it
//! evaluates customers with the engine and builds inputs of the store.

pub use arrears_rules::*;

pub mod fixtures;
