//! Risk: the per-tick exit rules and the ratchet, position lifecycle, correlation ids, the
//! trading state, the session clock, entry limits and their parameters.
//!
//! Everything here is pure (no I/O, no clock reads, no threads); the exit core in
//! `exec::core` owns the state and drives these functions, on live ticks or in replay.

pub mod correlation;
pub mod entry;
pub mod params;
pub mod position;
pub mod price_guard;
pub mod ratchet;
pub mod rules;
pub mod session;
pub mod trading_state;

pub use params::{Limits, RatchetTier, RiskParams, SessionParams};
pub use position::{Lifecycle, LifecycleError, LifecycleEvent, Origin, Position};
pub use price_guard::{PriceBand, PriceGuard, PriceGuardParams};
pub use rules::{RiskState, Terms};
pub use session::SessionClock;
pub use trading_state::{
    ChangeReason, HaltCause, TradingCell, TradingCommand, TradingState, TradingStateChange,
    TradingStatus, TradingView,
};
