//! The engine's shared state: everything that must outlive a worker's panic, created once in
//! `build`. A respawned worker picks up exactly where its predecessor stopped: the exit core
//! with every position's risk state, the outbox of effects decided and not yet carried out,
//! the order book, the paper wallet, the channel ends (with the messages still in them), the
//! tick cache, the subscriptions and the metric handles.
//!
//! [`Shared`] is the engine's wiring container, not a worker's: the engine builds from it each
//! worker's typed handles (`engine::handles`), exactly the pieces that worker uses, and every
//! worker factory captures those. It lives in `engine`, which no worker module may import
//! (`tests/layering.rs`). Ownership: only the exit-engine worker gets the exit core to
//! change; the PnL refresher and the heartbeat read it through a `CoreView`. Workers that only
//! read the trading state get a `TradingView`, and those that only read the paper wallet's cash
//! a `PaperCash`. Everyone else talks to the exit engine by message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::config::Mode;
use crate::domain::{Clock, Tick};
use crate::exec::core::ExitCore;
use crate::exec::messages::{EngineCommand, OrderEvent, PnlWake, RouterOrder};
use crate::exec::metrics::EngineMetrics;
use crate::exec::order_book::OrderBookHandle;
use crate::exec::outbox::Outbox;
use crate::exec::paper::PaperBroker;
use crate::exec::pnl_refresher::PnlBoard;
use crate::exec::positions::{PositionIds, PositionSubscriptions};
use crate::exec::router::Gateway;
use crate::exec::seams::{EventSink, Reconciler, StalePriceSource};
use crate::feed::{FeedStats, SubscriptionSet, TickCache};
use crate::instruments::SharedInstruments;
use crate::ops::health::HealthBoard;
use crate::ops::metrics::Metrics;
use crate::risk::trading_state::TradingCell;

/// Capacity of the command channel into the exit engine.
pub const COMMAND_QUEUE: usize = 1_024;
/// Capacity of the entry-order channel into the router (entries beyond it are refused).
pub const ENTRY_QUEUE: usize = 256;

/// The channels between the workers, both ends of each, named `<sender>_to_<receiver>`.
pub struct Channels {
    /// Exit orders: exit engine → router. Unbounded: an exit is never refused for room.
    pub exits_to_router_tx: Sender<RouterOrder>,
    pub exits_to_router_rx: Receiver<RouterOrder>,
    /// Entry orders: exit engine → router.
    pub entries_to_router_tx: Sender<RouterOrder>,
    pub entries_to_router_rx: Receiver<RouterOrder>,
    /// Order outcomes: router (and the live broker's update stream) → exit engine. Unbounded:
    /// the router must never block on the exit engine.
    pub router_to_exit_engine_tx: Sender<OrderEvent>,
    pub router_to_exit_engine_rx: Receiver<OrderEvent>,
    /// Commands: API, PnL refresher, heartbeat, demo entries, reload → exit engine.
    pub commands_to_exit_engine_tx: Sender<EngineCommand>,
    pub commands_to_exit_engine_rx: Receiver<EngineCommand>,
    /// Position ticks: tick reader → exit engine; bounded (`feed.position_queue`) and lossless
    /// (the reader blocks when it is full).
    pub ticks_to_exit_engine_tx: Sender<Tick>,
    pub ticks_to_exit_engine_rx: Receiver<Tick>,
    /// Wake-ups: exit engine → PnL refresher; one pending wake is enough.
    pub exit_engine_to_pnl_tx: Sender<PnlWake>,
    pub exit_engine_to_pnl_rx: Receiver<PnlWake>,
}

impl Channels {
    pub fn new(position_queue: usize) -> Channels {
        let (exits_to_router_tx, exits_to_router_rx) = crossbeam_channel::unbounded();
        let (entries_to_router_tx, entries_to_router_rx) = crossbeam_channel::bounded(ENTRY_QUEUE);
        let (router_to_exit_engine_tx, router_to_exit_engine_rx) = crossbeam_channel::unbounded();
        let (commands_to_exit_engine_tx, commands_to_exit_engine_rx) =
            crossbeam_channel::bounded(COMMAND_QUEUE);
        let (ticks_to_exit_engine_tx, ticks_to_exit_engine_rx) =
            crossbeam_channel::bounded(position_queue.max(1));
        let (exit_engine_to_pnl_tx, exit_engine_to_pnl_rx) = crossbeam_channel::bounded(1);
        Channels {
            exits_to_router_tx,
            exits_to_router_rx,
            entries_to_router_tx,
            entries_to_router_rx,
            router_to_exit_engine_tx,
            router_to_exit_engine_rx,
            commands_to_exit_engine_tx,
            commands_to_exit_engine_rx,
            ticks_to_exit_engine_tx,
            ticks_to_exit_engine_rx,
            exit_engine_to_pnl_tx,
            exit_engine_to_pnl_rx,
        }
    }
}

/// Settings the workers read, fixed for the engine's life.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    /// `pnl.refresh`: the PnL refresher's cadence while positions are open.
    pub pnl_refresh: Duration,
    /// `heartbeat.interval`.
    pub heartbeat_interval: Duration,
    /// `broker.startup_reconcile_alert_secs`.
    pub startup_reconcile_alert: Duration,
}

/// See the module doc.
pub struct Shared {
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    pub trading: TradingCell,
    /// Mutated by the exit-engine worker only.
    pub core: Arc<Mutex<ExitCore>>,
    pub outbox: Outbox,
    pub cache: TickCache,
    pub subscriptions: SubscriptionSet,
    /// Positions whose instrument the exit engine has subscribed (into `subscriptions`).
    pub position_subscriptions: PositionSubscriptions,
    pub pnl: PnlBoard,
    /// The order book: the one owner of order state (`exec::order_book`).
    pub orders: OrderBookHandle,
    pub gateway: Arc<dyn Gateway>,
    pub paper_wallet: Option<Arc<Mutex<PaperBroker>>>,
    pub reconciler: Arc<dyn Reconciler>,
    pub stale_prices: Option<Arc<dyn StalePriceSource>>,
    pub sink: Arc<dyn EventSink>,
    pub ids: Arc<PositionIds>,
    pub health: HealthBoard,
    pub metrics: Metrics,
    pub m: EngineMetrics,
    pub feed_stats: Arc<FeedStats>,
    pub channels: Channels,
    pub built: Instant,
    /// The instrument master (lots, ticks, freeze, band, symbols); read when an entry is
    /// checked and when a price is put on an order, never per tick.
    pub instruments: SharedInstruments,
}
