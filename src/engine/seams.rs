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

use crate::config::{BrokerKind, Config, Secrets};
use crate::domain::Clock;
use crate::exec::core::CoreState;
use crate::exec::messages::{EngineCommand, OrderEvent};
use crate::exec::order_book::OrderBookHandle;
use crate::exec::paper::PaperBroker;
use crate::exec::paper_gateway::PaperGateway;
use crate::exec::router::Gateway;
use crate::ops::health::HealthBoard;
use crate::ops::metrics::Metrics;
use crate::risk::trading_state::TradingStatus;
use crate::runtime::WorkerSpec;

pub use crate::exec::seams::{
    EngineEvent, EventSink, NoReconciliation, NoopSink, Reconciler, StalePriceSource,
};

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
    /// The order book: the live broker's workers apply what Dhan says about our orders to it.
    pub orders: OrderBookHandle,
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
