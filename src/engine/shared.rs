//! The engine's shared state lives in [`crate::exec::shared`] (the workers hold it); it is
//! re-exported here for the engine's builders.

pub use crate::exec::shared::*;
