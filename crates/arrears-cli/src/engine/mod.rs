//! `arrears::engine`: the `arrears-engine` crate, plus the portfolio run and the
//! simulation of the application crate under their old paths.

pub use arrears_app::{run, simulate};
pub use arrears_engine::*;
