//! The engine as the process runs it: everything built from the configuration after startup
//! recovery — the workers in their start order, the operator API, the trading-state cell, and
//! the hook that applies a live config reload. `app` (the process lifecycle: signals,
//! supervisor, systemd, HTTP) runs what [`build`] returns.
//!
//! Workers, in start order (the supervisor stops them in reverse): the persistence sink's
//! workers (`store_writer`), `alert_notifier` when `[alerts]` has targets, the broker's own
//! workers (none in paper mode), `order_router`,
//! `exit_engine`, `tick_reader`, `pnl_refresher`, `heartbeat`, `entries_demo` when
//! `entries.demo` is on, `instruments` (the daily master reload) when the master comes from a
//! file or a download, and `redis_publisher` when `[redis] enabled`. The app adds the HTTP
//! worker last. State that must outlive a worker's panic lives in [`shared::Shared`], from
//! which each worker gets its own typed handles (`handles.rs`), never the whole of it; the
//! plug-in points for the store and the live broker are in [`seams`]; the store, restart
//! recovery and its ordering point for the live broker's reconciliation are in [`persist`];
//! the live Dhan broker is built by [`live`].
//!
//! Startup order: the simulator (when `sim.enabled`, with its broker half when `sim.broker`),
//! recovered state restored into the exit core (here), then, once the workers run, the
//! broker's startup reconciliation (by the exit engine, before its first order), the
//! positions' feed subscriptions, and only then the rules.

pub mod api;
pub mod feed;
mod handles;
pub mod instruments;
pub mod live;
pub mod persist;
pub mod seams;
pub mod shared;

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::{Config, Secrets};
use crate::domain::Clock;
use crate::exec::core::ExitCore;
use crate::exec::entries_demo::DemoEntries;
use crate::exec::exit_engine::ExitEngine;
use crate::exec::heartbeat::Heartbeat;
use crate::exec::messages::EngineCommand;
use crate::exec::metrics::EngineMetrics;
use crate::exec::order_book::OrderBookHandle;
use crate::exec::outbox::Outbox;
use crate::exec::pnl_refresher::{PnlBoard, PnlRefresher, PnlSnapshot};
use crate::exec::router::OrderRouter;
use crate::feed::reader::{FeedReader, ReaderShared, install_crypto_provider};
use crate::feed::subscribe::MAX_INSTRUMENTS_PER_CONNECTION;
use crate::feed::{FeedStats, SubscriptionSet, TickCache};
use crate::ops::health::HealthBoard;
use crate::ops::http::OpsApi;
use crate::ops::metrics::Metrics;
use crate::risk::trading_state::TradingCell;
use crate::runtime::spin::Waiting;
use crate::runtime::{StatusTable, Worker, WorkerSpec};
use crate::sim::feed::SimFeed;

use self::seams::{BrokerContext, Seams};
use self::shared::{Channels, Settings, Shared};
use crate::exec::positions::{PositionIds, PositionSubscriptions};

/// What the process gives the engine to build itself with.
pub struct EngineEnv {
    pub config: Config,
    pub secrets: Secrets,
    pub metrics: Metrics,
    pub health: HealthBoard,
    /// The supervisor's worker status table (for `/health`).
    pub workers: StatusTable,
    pub clock: Arc<dyn Clock>,
}

/// A built engine, ready to be supervised.
pub struct Engine {
    /// Workers in start order; the supervisor stops them in reverse order.
    pub workers: Vec<WorkerSpec>,
    /// Behind `/health`, `/metrics` and the `/v1/` control routes.
    pub api: Arc<dyn OpsApi>,
    /// The trading state; the supervisor's escalation halts trading through it.
    pub trading: TradingCell,
    /// Applies a validated live reload (the `[risk]` and `[limits]` tables) to the running
    /// engine.
    pub reload: Box<dyn Fn(&Config) + Send>,
    /// Lines for the startup banner (where the simulator listens, which store is used...).
    pub banner: Vec<String>,
    /// The state the workers share (positions, outbox, order book, wallet, channels, caches).
    pub shared: Arc<Shared>,
    /// Keep until the supervisor has stopped every worker, then drop.
    pub keep_alive: KeepAlive,
}

/// Resources the workers use that are not workers themselves.
#[derive(Default)]
pub struct KeepAlive {
    /// The in-process simulator (`sim.enabled`); it stops when dropped.
    pub simulator: Option<SimFeed>,
    /// Its broker half (`sim.broker`).
    pub sim_broker: Option<crate::sim::broker::SimBroker>,
    /// Keeps the simulator's prices in `data_dir` (a random walk continues after a restart);
    /// writes them a last time when dropped.
    pub sim_prices: Option<crate::sim::saved_prices::PriceKeeper>,
}

/// Builds the engine of a process that runs without an instance lease: [`build_active`]
/// with a gate that is always open.
pub fn build(env: EngineEnv) -> anyhow::Result<Engine> {
    build_active(env, crate::instance::OrderGate::open())
}

/// Builds the engine of the process allowed to trade (`gate`: its instance lease), with the
/// broker `broker.kind` names: the store, restart recovery and the Redis publisher around
/// [`build_with`] (see [`persist`]). Live mode settles the orders found in flight with Dhan
/// ([`live::LiveRestart`], then the exit engine's startup reconciliation) instead of
/// re-sending them.
pub fn build_active(env: EngineEnv, gate: crate::instance::OrderGate) -> anyhow::Result<Engine> {
    match env.config.broker.kind {
        crate::config::BrokerKind::Paper => {
            persist::build(env, Seams::paper(), &mut persist::PaperRestart, gate)
        }
        crate::config::BrokerKind::Dhan => {
            // The options come from the context's config: the in-process simulator's ports are
            // bound by then.
            let order_gate = gate.clone();
            let seams = Seams {
                broker: Box::new(move |ctx| {
                    let options = live::LiveOptions {
                        gate: order_gate,
                        ..live::LiveOptions::from_config(ctx.config)
                    };
                    live::dhan_broker(ctx, options)
                }),
                ..Seams::paper()
            };
            let mut restart = live::LiveRestart::from_journal(&env.config, env.clock.now())?;
            persist::build(env, seams, &mut restart, gate)
        }
    }
}

/// Builds the engine: starts the in-process simulator if configured, restores recovered
/// state, builds the broker, then every worker. Fails (and the process exits non-zero without
/// trading) when any of it cannot be done.
pub fn build_with(env: EngineEnv, seams: Seams) -> anyhow::Result<Engine> {
    let EngineEnv { mut config, secrets, metrics, health, workers: status, clock } = env;
    install_crypto_provider();
    let mut banner = Vec::new();

    let mut sim_broker = None;
    let mut sim_prices = None;
    let simulator = if config.sim.enabled {
        let (sim, broker, keeper) = crate::sim::setup::start_in_process(&config)?;
        sim_prices = keeper;
        if let Some(b) = broker {
            crate::sim::setup::bind_broker(&mut config, &b);
            banner.push(format!(
                "simulator: broker REST on {}, order updates on {}",
                b.base_url(),
                b.order_socket_url()
            ));
            sim_broker = Some(b);
        }
        config.bind_simulator(sim.addr());
        banner.push(format!(
            "simulator: market feed on {} ({} instruments)",
            crate::sim::setup::feed_url(&sim),
            config.sim.instruments.len()
        ));
        Some(sim)
    } else {
        None
    };

    let now = clock.now();
    let (master, master_line) = instruments::load_at_start(&config, now.ist_date())?;
    log::info!(target: "instruments", "{master_line}");
    banner.push(master_line);
    let master = crate::instruments::SharedInstruments::new(master);
    let (mut core, trading) = match seams.recovered {
        Some(r) => {
            let trading = TradingCell::new(r.trading);
            let positions = r.core.positions.len();
            let core = ExitCore::restore(config.core_params(), trading.clone(), r.core)
                .map_err(|e| anyhow::anyhow!("restoring the exit core: {e}"))?;
            banner
                .push(format!("recovered {positions} open positions; trading {}", trading.state()));
            (core, trading)
        }
        None => {
            let trading = TradingCell::active(now);
            (ExitCore::new(config.core_params(), trading.clone()), trading)
        }
    };
    core.set_instruments(master.clone());

    // Alerts to people: a sink beside the others, and the notifier worker (none without
    // targets).
    let notifier = crate::alerts::Notifier::from_config(&config, &secrets, &metrics)?;
    let sink: Arc<dyn seams::EventSink> = match &notifier {
        Some(n) => {
            banner.push(n.describe());
            Arc::new(persist::FanoutSink(vec![seams.sink.clone(), n.sink()]))
        }
        None => seams.sink.clone(),
    };

    let channels = Channels::new(config.feed.position_queue);
    let orders = OrderBookHandle::new(clock.clone());
    let broker = (seams.broker)(&BrokerContext {
        config: &config,
        secrets: &secrets,
        metrics: &metrics,
        health: &health,
        clock: clock.clone(),
        order_events: channels.router_to_exit_engine_tx.clone(),
        commands: channels.commands_to_exit_engine_tx.clone(),
        orders: orders.clone(),
        sink: sink.clone(),
        data_dir: &config.data_dir,
        instruments: master.clone(),
    })?;
    banner.push(format!(
        "{} mode, orders through the {} broker",
        config.mode,
        broker.gateway.name()
    ));

    let mut watch = config.feed.watchlist.clone();
    if config.entries.demo {
        // Demo entries need prices for their instruments before any position exists.
        watch.extend(config.entries.demo_instruments.iter().copied());
    }
    let initial = PnlSnapshot {
        version: 0,
        core: core.snapshot(now, clock.mono()),
        paper_cash: broker.paper_wallet.as_ref().map(|w| w.lock().cash()),
    };
    let subscriptions = SubscriptionSet::with_watchlist(watch);
    let shared = Arc::new(Shared {
        settings: Settings {
            mode: config.mode,
            pnl_refresh: config.pnl.refresh,
            heartbeat_interval: config.heartbeat.interval,
            startup_reconcile_alert: config.broker.startup_reconcile_alert,
        },
        clock: clock.clone(),
        trading: trading.clone(),
        core: Arc::new(Mutex::new(core)),
        outbox: Outbox::new(),
        cache: TickCache::with_capacity(MAX_INSTRUMENTS_PER_CONNECTION),
        subscriptions: subscriptions.clone(),
        position_subscriptions: PositionSubscriptions::new(subscriptions.clone()),
        pnl: PnlBoard::new(initial),
        orders,
        gateway: broker.gateway,
        paper_wallet: broker.paper_wallet,
        reconciler: broker.reconciler,
        stale_prices: broker.stale_prices,
        sink: sink.clone(),
        ids: Arc::new(PositionIds::new(now)),
        health: health.clone(),
        m: EngineMetrics::new(&metrics),
        metrics: metrics.clone(),
        feed_stats: FeedStats::new(&metrics),
        channels,
        built: Instant::now(),
        instruments: master.clone(),
    });

    let reader_cfg = feed::reader_config(&config, &secrets.dhan_client_id)?;
    let reader_shared = ReaderShared {
        cache: shared.cache.clone(),
        subscriptions: shared.subscriptions.clone(),
        position_ticks: shared.channels.ticks_to_exit_engine_tx.clone(),
        token_source: Arc::new(feed::SecretsTokenSource::new(config.clone(), &secrets)),
        stats: shared.feed_stats.clone(),
        health: health.clone(),
        on_fatal: feed::fatal_hook(trading.clone(), clock.clone(), sink.clone()),
        clock: clock.clone(),
    };
    banner.push(format!("market feed {} ({} mode)", config.feed.url, config.feed.mode));

    let spec = |name: &str, floor: Duration, make: Box<dyn FnMut() -> Box<dyn Worker> + Send>| {
        let limit = config.runtime.heartbeat_limit_for(name).max(floor);
        WorkerSpec::new(name, limit, make).pinned_to(config.host.pin.get(name).copied())
    };
    let mut workers: Vec<WorkerSpec> = seams.sink_workers;
    // Early in the start order, so stopped late: alerts of the shutdown still go out.
    if let Some(n) = &notifier {
        workers.push(n.worker_spec(&config));
    }
    workers.extend(broker.workers);
    if config.host.busy_poll {
        let cores: Vec<String> = crate::config::HostConfig::BUSY_POLL_WORKERS
            .iter()
            .map(|w| format!("{w} on core {}", config.host.pin.get(*w).copied().unwrap_or(0)))
            .collect();
        banner.push(format!("busy polling: {} spin instead of sleeping", cores.join(", ")));
    }
    let router_waits = Waiting::for_worker(&config.host, "order_router");
    let exit_engine_waits = Waiting::for_worker(&config.host, "exit_engine");
    let h = shared.router_handles();
    let rest_floor = broker.rest_heartbeat_floor;
    workers.push(spec(
        "order_router",
        rest_floor,
        Box::new(move || Box::new(OrderRouter::new(h.clone()).waiting(router_waits))),
    ));
    let h = shared.exit_engine_handles();
    workers.push(spec(
        "exit_engine",
        Duration::ZERO,
        Box::new(move || Box::new(ExitEngine::new(h.clone()).waiting(exit_engine_waits))),
    ));
    let floor = feed::reader_heartbeat_floor(&reader_cfg);
    workers.push(spec(
        "tick_reader",
        floor,
        Box::new(move || Box::new(FeedReader::new(reader_cfg.clone(), reader_shared.clone()))),
    ));
    let h = shared.pnl_handles();
    workers.push(spec(
        "pnl_refresher",
        Duration::ZERO,
        Box::new(move || Box::new(PnlRefresher::new(h.clone()))),
    ));
    let h = shared.heartbeat_handles();
    workers.push(spec(
        "heartbeat",
        rest_floor,
        Box::new(move || Box::new(Heartbeat::new(h.clone()))),
    ));
    if config.entries.demo {
        let commands = shared.channels.commands_to_exit_engine_tx.clone();
        let e = config.entries.clone();
        banner.push(format!(
            "demo entries every {:?} on {} instruments",
            e.demo_interval,
            e.demo_instruments.len()
        ));
        workers.push(spec(
            "entries_demo",
            Duration::ZERO,
            Box::new(move || {
                Box::new(DemoEntries::new(
                    commands.clone(),
                    e.demo_instruments.clone(),
                    e.demo_quantity,
                    e.demo_interval,
                ))
            }),
        ));
    }

    if config.instruments.master_file.is_some() || config.instruments.download {
        let (c, m, k, day) = (config.clone(), master.clone(), clock.clone(), now.ist_date());
        workers.push(spec(
            "instruments",
            config.instruments.download_timeout + Duration::from_secs(30),
            Box::new(move || {
                Box::new(instruments::MasterReloader::new(&c, m.clone(), k.clone(), day))
            }),
        ));
    }

    let commands = shared.channels.commands_to_exit_engine_tx.clone();
    let reload: Box<dyn Fn(&Config) + Send> = Box::new(move |c: &Config| {
        let command = EngineCommand::Reload { risk: c.risk.clone(), limits: c.limits.clone() };
        if commands.send_timeout(command, Duration::from_secs(1)).is_err() {
            log::error!(target: "exit_engine", "reload not applied: the exit engine is not taking commands");
        }
    });

    Ok(Engine {
        workers,
        api: Arc::new(api::EngineApi::new(shared.api_handles(), status)),
        trading,
        reload,
        banner,
        shared,
        keep_alive: KeepAlive { simulator, sim_broker, sim_prices },
    })
}
