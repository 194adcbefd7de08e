//! Where other parts of the engine plug in. Paper trading needs none of them beyond defaults;
//! the store and the live Dhan broker fill them:
//!
//! - [`EventSink`]: every engine event worth persisting (position changes, orders and their
//!   states, fills, closed trades, trading-state changes, alerts, operator actions, published
//!   PnL), handed over on the hot path: an implementation must only enqueue.
//! - [`BrokerFactory`]: builds the [`Gateway`] the order router places orders through, with the
//!   broker's own workers (order-update socket, order desk, order tracker, reconciler), its
//!   [`Reconciler`] and its [`StalePriceSource`]. The default ([`configured_broker`]) builds
//!   what `broker.kind` names: the in-process paper broker, or Dhan (`engine::live`).
//! - [`Recovered`]: the state startup recovery found (positions with their risk state, the
//!   day's figures, the latched trading state).

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use crate::broker::reconcile::{BrokerCheck, LocalView};
use crate::config::{BrokerKind, Config, Secrets};
use crate::domain::{
    Clock, CorrelationId, Fill, InstrumentKey, Mono, OrderIntent, OrderPurpose, Tick, Timestamp,
};
use crate::exec::core::{CoreEvent, CoreState};
use crate::exec::ledger::{OrderLedger, OrderState};
use crate::exec::messages::{EngineCommand, OrderEvent};
use crate::exec::paper::PaperBroker;
use crate::exec::paper_gateway::PaperGateway;
use crate::exec::pnl_refresher::PnlSnapshot;
use crate::exec::router::Gateway;
use crate::ops::health::HealthBoard;
use crate::ops::metrics::Metrics;
use crate::risk::trading_state::TradingStatus;
use crate::runtime::WorkerSpec;

/// Something that happened in the engine, for persistence and audit.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    /// An effect the exit core decided: position changes (with the position and its risk
    /// state), closed trades, trading-state changes, new sessions, alerts, exit intents.
    Core(CoreEvent),
    /// The router recorded an order and is handing it to the broker.
    OrderSent { intent: OrderIntent, at: Timestamp },
    /// What became of an order.
    OrderState { correlation_id: CorrelationId, state: OrderState, at: Timestamp },
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

/// What a broker factory gets to build with.
pub struct BrokerContext<'a> {
    pub config: &'a Config,
    pub secrets: &'a Secrets,
    pub metrics: &'a Metrics,
    pub health: &'a HealthBoard,
    pub clock: Arc<dyn Clock>,
    /// To the exit engine: fills and rejections that arrive after placement (order-update
    /// socket, resolver).
    pub order_events: Sender<OrderEvent>,
    /// To the exit engine: what reconciliation read from the broker.
    pub commands: Sender<EngineCommand>,
    /// The router's ledger, to settle orders that were accepted or unknown at placement.
    pub ledger: OrderLedger,
    /// Fills and order states the broker reports after placement are recorded here too.
    pub sink: Arc<dyn EventSink>,
    /// Where the broker keeps files (the order journal): `data_dir`.
    pub data_dir: &'a std::path::Path,
    /// The instrument master (the paper broker fills on each instrument's tick).
    pub instruments: crate::instruments::SharedInstruments,
}

/// A broker, ready to be wired.
pub struct BrokerParts {
    pub gateway: Arc<dyn Gateway>,
    /// The paper wallet, when the broker is the in-process paper broker (entry cash checks,
    /// `/v1/pnl`).
    pub paper_wallet: Option<Arc<Mutex<PaperBroker>>>,
    /// The broker's own workers; they start before the order router.
    pub workers: Vec<WorkerSpec>,
    pub reconciler: Arc<dyn Reconciler>,
    /// `None`: stale prices are only reported (paper mode).
    pub stale_prices: Option<Arc<dyn StalePriceSource>>,
    /// The least heartbeat limit of the engine's workers that call this broker synchronously
    /// (the order router placing, the heartbeat fetching stale prices): the broker's worst
    /// single legitimate wait plus a margin. Zero when calls never block (paper).
    pub rest_heartbeat_floor: Duration,
}

pub type BrokerFactory = Box<dyn FnOnce(&BrokerContext<'_>) -> anyhow::Result<BrokerParts> + Send>;

/// State found by startup recovery.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub core: CoreState,
    pub trading: TradingStatus,
}

/// Everything [`crate::engine::build_with`] plugs in.
pub struct Seams {
    pub sink: Arc<dyn EventSink>,
    /// Workers behind the sink (the store's writer); they start first.
    pub sink_workers: Vec<WorkerSpec>,
    pub broker: BrokerFactory,
    pub recovered: Option<Recovered>,
}

impl Seams {
    /// Nothing persisted, and the broker `broker.kind` names ([`configured_broker`]): the
    /// state until the store is wired in.
    pub fn paper() -> Seams {
        Seams {
            sink: Arc::new(NoopSink),
            sink_workers: Vec::new(),
            broker: Box::new(configured_broker),
            recovered: None,
        }
    }
}

/// The broker `broker.kind` names: the paper broker, or Dhan (`engine::live`) with its
/// settings from the configuration.
pub fn configured_broker(ctx: &BrokerContext<'_>) -> anyhow::Result<BrokerParts> {
    match ctx.config.broker.kind {
        BrokerKind::Paper => paper_broker(ctx),
        BrokerKind::Dhan => crate::engine::live::dhan_broker(
            ctx,
            crate::engine::live::LiveOptions::from_config(ctx.config),
        ),
    }
}

/// The in-process paper broker (`broker.kind = "paper"`): fills at once, wallet per
/// `[paper]`, charges per `[charges]`.
pub fn paper_broker(ctx: &BrokerContext<'_>) -> anyhow::Result<BrokerParts> {
    if ctx.config.broker.kind != BrokerKind::Paper {
        anyhow::bail!("the paper broker cannot serve broker.kind = \"{}\"", ctx.config.broker.kind);
    }
    let wallet = Arc::new(Mutex::new(PaperBroker::new(
        ctx.config.paper.clone(),
        ctx.config.charges.clone(),
    )));
    Ok(BrokerParts {
        gateway: Arc::new(
            PaperGateway::new(wallet.clone()).with_instruments(ctx.instruments.clone()),
        ),
        paper_wallet: Some(wallet),
        workers: Vec::new(),
        reconciler: Arc::new(NoReconciliation),
        stale_prices: None,
        rest_heartbeat_floor: Duration::ZERO,
    })
}
