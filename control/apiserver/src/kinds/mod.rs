//! The built-in kinds: per kind its defaults, validation and table columns.

pub mod event;
pub mod namespace;
pub mod node;
pub mod pod;
pub mod validation;
