//! The engine is the `arrears-engine` crate; the portfolio run and the simulation
//! around it load from and write to the store, so they stay here.

pub use arrears_app::{run, simulate};
pub use arrears_engine::*;
