//! The exec layer's seams: the events the engine's workers emit ([`EngineEvent`], handed to an
//! [`EventSink`]) and the broker-side services they call ([`Reconciler`],
//! [`StalePriceSource`]). Defined here, below `engine`, so that the workers, the broker and the
//! publishers depend on them without importing the engine that wires them together
//! (`engine::seams` re-exports them next to the factories).

use std::sync::Arc;
use std::time::Duration;

use crate::broker::reconcile::{BrokerCheck, LocalView};
use crate::domain::{
    CorrelationId, Fill, InstrumentKey, Mono, OrderIntent, OrderPurpose, Qty, Tick, Timestamp,
};
use crate::exec::core::CoreEvent;
use crate::exec::order_book::OrderState;
use crate::exec::pnl_refresher::PnlSnapshot;

/// Something that happened in the engine, for persistence and audit.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    /// An effect the exit core decided: position changes (with the position and its risk
    /// state), closed trades, trading-state changes, new sessions, alerts, exit intents.
    Core(CoreEvent),
    /// The router recorded an order and is handing it to the broker.
    OrderSent { intent: OrderIntent, at: Timestamp },
    /// What became of an order; `ordered`: its quantity (the order book's intent), so a part
    /// fill tells itself from a full one without a copy of every order.
    OrderState { correlation_id: CorrelationId, state: OrderState, ordered: Qty, at: Timestamp },
    /// An execution.
    Fill { purpose: OrderPurpose, fill: Fill },
    /// An operator action through the control API (`halt`, `resume`, `flatten`, `entry`).
    Operator { action: &'static str, detail: String, at: Timestamp },
    /// The PnL refresher published a snapshot (positions marked to market, the day's account).
    PnlPublished(Arc<PnlSnapshot>),
}

/// Receives engine events. Called on the engine's hot threads: it must not block (enqueue and
/// return) and must not panic.
pub trait EventSink: Send + Sync {
    fn record(&self, event: &EngineEvent);
}

/// The sink until the store is wired in: drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopSink;

impl EventSink for NoopSink {
    fn record(&self, _event: &EngineEvent) {}
}

/// Compares the engine's positions with the broker's: at startup, before the exit engine's
/// first order, and on the heartbeat's cadence.
pub trait Reconciler: Send + Sync {
    /// Findings for the log, empty when engine and broker agree; `Err` when the broker could
    /// not be asked. A live reconciler hands what it read to the exit engine
    /// (`EngineCommand::Reconcile`), which owns the positions and applies the adjustments.
    fn reconcile(&self, engine: &PnlSnapshot) -> Result<Vec<String>, String>;

    /// Startup, called by the exit engine after recovery (the rules already run meanwhile, with
    /// exit orders held until this succeeds): reads the broker's books and settles every order in `local`'s
    /// `orders_in_flight` by correlation id. `Ok(None)`: nothing to compare (paper trading, or
    /// already done by an earlier run of the exit-engine worker). `Err`: it could not complete;
    /// the exit engine retries and trading does not start meanwhile. It runs on a helper thread
    /// while the exit engine keeps beating (a REST call may outlast its heartbeat limit).
    /// `pause` sleeps, waking early on stop; it returns `false` when the caller must stop.
    fn startup(
        &self,
        _local: &LocalView,
        _pause: &dyn Fn(Duration) -> bool,
    ) -> Result<Option<BrokerCheck>, String> {
        Ok(None)
    }

    /// The exit engine applied what [`Reconciler::startup`] returned: trading starts.
    fn started(&self) {}

    /// Whether a startup reconciliation is still to succeed: until it does, the exit engine
    /// holds the exit orders it decides (`exec::core::held_exits`) and refuses entries.
    fn startup_pending(&self) -> bool {
        false
    }
}

/// Paper trading: the paper broker is the engine's own, there is nothing to compare.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoReconciliation;

impl Reconciler for NoReconciliation {
    fn reconcile(&self, _engine: &PnlSnapshot) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
}

/// Another way to get prices when the feed goes quiet on a position's instrument (risk spec
/// §5: Dhan's LTP over REST, batched, within the data rate limit).
pub trait StalePriceSource: Send + Sync {
    /// Last traded prices of `instruments` as ticks received `now` (wall) and `mono`
    /// (monotonic), from [`crate::domain::TickSource::Rest`]; instruments it has no price for
    /// are left out.
    fn fetch(
        &self,
        instruments: &[InstrumentKey],
        now: Timestamp,
        mono: Mono,
    ) -> Result<Vec<Tick>, String>;
}
