//! Each worker's handles, built from the engine's [`Shared`] wiring: a worker gets exactly the
//! pieces it uses, never the whole of it. Only the exit engine gets the exit core mutably; the
//! others read it through a [`CoreView`], and the order book through an `OrderBookView` where
//! they only look; likewise the trading state through a `TradingView` and the paper wallet's
//! cash through a [`PaperCash`].

use crate::exec::core::CoreView;
use crate::exec::exit_engine::ExitEngineHandles;
use crate::exec::heartbeat::HeartbeatHandles;
use crate::exec::paper_gateway::PaperCash;
use crate::exec::pnl_refresher::PnlHandles;
use crate::exec::router::RouterHandles;
use crate::publish::PublisherHandles;

use super::api::ApiHandles;
use super::shared::Shared;

impl Shared {
    /// The order router's.
    pub fn router_handles(&self) -> RouterHandles {
        RouterHandles {
            clock: self.clock.clone(),
            orders: self.orders.clone(),
            gateway: self.gateway.clone(),
            sink: self.sink.clone(),
            m: self.m.clone(),
            exits_to_router_rx: self.channels.exits_to_router_rx.clone(),
            entries_to_router_rx: self.channels.entries_to_router_rx.clone(),
            router_to_exit_engine_tx: self.channels.router_to_exit_engine_tx.clone(),
        }
    }

    /// The exit engine's: the only ones with the exit core to change.
    pub fn exit_engine_handles(&self) -> ExitEngineHandles {
        let c = &self.channels;
        ExitEngineHandles {
            clock: self.clock.clone(),
            trading: self.trading.view(),
            core: self.core.clone(),
            outbox: self.outbox.clone(),
            cache: self.cache.clone(),
            subscriptions: self.position_subscriptions.clone(),
            paper_cash: self.paper_cash(),
            reconciler: self.reconciler.clone(),
            sink: self.sink.clone(),
            ids: self.ids.clone(),
            m: self.m.clone(),
            instruments: self.instruments.clone(),
            startup_reconcile_alert: self.settings.startup_reconcile_alert,
            router_to_exit_engine_rx: c.router_to_exit_engine_rx.clone(),
            commands_to_exit_engine_rx: c.commands_to_exit_engine_rx.clone(),
            ticks_to_exit_engine_rx: c.ticks_to_exit_engine_rx.clone(),
            exits_to_router_tx: c.exits_to_router_tx.clone(),
            entries_to_router_tx: c.entries_to_router_tx.clone(),
            exit_engine_to_pnl_tx: c.exit_engine_to_pnl_tx.clone(),
        }
    }

    /// The PnL refresher's (also what a PnL snapshot is taken from).
    pub fn pnl_handles(&self) -> PnlHandles {
        PnlHandles {
            clock: self.clock.clone(),
            core: self.core_view(),
            paper_cash: self.paper_cash(),
            pnl: self.pnl.clone(),
            sink: self.sink.clone(),
            m: self.m.clone(),
            refresh: self.settings.pnl_refresh,
            commands_to_exit_engine_tx: self.channels.commands_to_exit_engine_tx.clone(),
            exit_engine_to_pnl_rx: self.channels.exit_engine_to_pnl_rx.clone(),
        }
    }

    /// The heartbeat's.
    pub fn heartbeat_handles(&self) -> HeartbeatHandles {
        HeartbeatHandles {
            clock: self.clock.clone(),
            core: self.core_view(),
            orders: self.orders.clone(),
            pnl: self.pnl.clone(),
            reconciler: self.reconciler.clone(),
            stale_prices: self.stale_prices.clone(),
            cache: self.cache.clone(),
            feed_stats: self.feed_stats.clone(),
            trading: self.trading.view(),
            health: self.health.clone(),
            m: self.m.clone(),
            interval: self.settings.heartbeat_interval,
            commands_to_exit_engine_tx: self.channels.commands_to_exit_engine_tx.clone(),
        }
    }

    /// The Redis publisher's: what it reads, nothing it could change.
    pub fn publisher_handles(&self) -> PublisherHandles {
        PublisherHandles {
            cache: self.cache.clone(),
            pnl: self.pnl.clone(),
            instruments: self.instruments.clone(),
            clock: self.clock.clone(),
        }
    }

    /// The control API's.
    pub fn api_handles(&self) -> ApiHandles {
        ApiHandles {
            mode: self.settings.mode,
            clock: self.clock.clone(),
            trading: self.trading.view(),
            pnl: self.pnl.clone(),
            orders: self.orders.view(),
            health: self.health.clone(),
            metrics: self.metrics.clone(),
            uptime_seconds: self.m.uptime_seconds.clone(),
            sink: self.sink.clone(),
            instruments: self.instruments.clone(),
            built: self.built,
            commands_to_exit_engine_tx: self.channels.commands_to_exit_engine_tx.clone(),
        }
    }

    /// The paper wallet's cash to read (paper mode); the paper gateway alone trades on it.
    pub fn paper_cash(&self) -> Option<PaperCash> {
        self.paper_wallet.as_ref().map(PaperCash::new)
    }

    /// A read-only view of the exit core.
    pub fn core_view(&self) -> CoreView {
        CoreView::new(&self.core)
    }
}
