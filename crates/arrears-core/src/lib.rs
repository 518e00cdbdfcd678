//! The bottom of the dependency graph: types and rules about money and the domain
//! that need no IO, so every crate above can share them (see the README's Layout).

pub mod clock;
pub mod domain;
pub mod error;
pub mod human_duration;
pub mod money;
pub mod portfolio;
