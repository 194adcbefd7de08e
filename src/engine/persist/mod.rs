//! Persistence and restart recovery wired into the engine: what [`crate::engine::build`] does
//! around [`crate::engine::build_with`].
//!
//! Startup, in this order, before any worker runs (so before any rule is evaluated):
//! 1. **Store**: open the write-behind queue and writer state from `[store]`; connect
//!    (retrying for up to [`STARTUP_WAIT`]); set aside a spill that another instance has
//!    overtaken (see `startup.rs`); run a writer until a leftover spill is replayed into the
//!    database ([`crate::store::WriterShared::is_caught_up`]).
//! 2. **Load**: read today's state back and derive the [`RestartState`] (`recover.rs`): open
//!    positions with their risk state and exits in flight, the trading state (a halt latched
//!    today stays), today's figures, the paper wallet.
//! 3. **Reconcile** ([`Reconcile`], the ordering point for the live broker): settle the orders
//!    that were in flight — outcomes for the exit engine, exits to re-send under their own
//!    correlation id, entries to drop — and record every adjustment. Paper trading uses
//!    [`PaperRestart`]; live mode plugs in `engine::live::LiveRestart`, which re-sends nothing
//!    and leaves the orders in flight to the exit engine's startup reconciliation (Dhan asked
//!    by correlation id before the first rule runs).
//! 4. **Build** the engine from the recovered state (`Seams.recovered`), with the store sink
//!    (`sink.rs`) and, when `[redis] enabled`, the Redis publisher's event feed; the broker's
//!    gateway is wrapped by the instance's order gate.
//! 5. **Hand over** ([`Persist::finish`]), still before any worker runs: restore the paper
//!    wallet, subscribe the open positions' instruments, record the startup adjustments, queue
//!    the reconciled outcomes (the exit engine applies them before anything else) and the
//!    exits to re-send (its outbox, carried out first).
//! 6. The supervisor then starts the workers: the store writer first, the broker's workers,
//!    router, exit engine, tick reader (which subscribes the feed), ...; the Redis publisher
//!    last.
//!
//! If any step before 6 fails, [`build`] returns the error and the process exits non-zero
//! with it on one log line (`Startup failed: recovery: ...`): trading never starts on a state
//! that could not be recovered.

pub mod journal_replay;
pub mod mapping;
pub mod recover;
pub mod sink;
pub mod startup;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, Secrets, StoreBackend};
use crate::domain::Clock;
use crate::engine::seams::{EventSink, Recovered, Seams};
use crate::engine::{Engine, EngineEnv, build_with};
use crate::exec::core::CoreEvent;
use crate::exec::paper::PaperBroker;
use crate::exec::pnl_refresher::PnlSnapshot;
use crate::instance::fence::{GatedGateway, fenced};
use crate::instance::gate::OrderGate;
use crate::ops::health::HealthBoard;
use crate::ops::metrics::Metrics;
use crate::publish::Publisher;
use crate::risk::{Lifecycle, SessionClock};
use crate::runtime::WorkerSpec;
use crate::store::postgres::PgOptions;
use crate::store::spill::SpillFiles;
use crate::store::{Actor, Connector, StoreHandle, StoreWriter, WriterConfig, WriterShared, queue};

pub use recover::{PaperRestart, PaperWallet, Reconcile, RestartState, RestoreParams, Stored};
pub use sink::{FanoutSink, StoreSink};

/// How long startup waits for the store to be reachable and caught up.
pub const STARTUP_WAIT: Duration = Duration::from_secs(20);

/// The store writer's worker name.
pub const WRITER: &str = "store_writer";

/// Where and how the store is written.
pub struct StoreSetup {
    pub connector: Connector,
    /// The backend and where it is, without credentials (logs, errors, banner).
    pub target: String,
    pub writer: WriterConfig,
    pub queue_capacity: usize,
    /// The least heartbeat limit the writer needs: a write on a dead connection blocks it up
    /// to the backend's timeouts.
    pub heartbeat_floor: Duration,
    /// How long startup waits for the store ([`STARTUP_WAIT`]).
    pub startup_wait: Duration,
}

impl StoreSetup {
    /// From `[store]`, with the PostgreSQL password from the secrets.
    pub fn from_config(config: &Config, secrets: &Secrets) -> StoreSetup {
        let s = &config.store;
        let (connector, target, floor) = match &s.backend {
            StoreBackend::Sqlite { path } => (
                crate::store::sqlite::connector(path.clone()),
                format!("sqlite {}", path.display()),
                Duration::from_secs(10),
            ),
            StoreBackend::Postgres { url } => {
                let opts =
                    PgOptions { password: secrets.pg_password.clone(), ..PgOptions::default() };
                let floor = opts.connect_timeout + opts.statement_timeout + Duration::from_secs(5);
                let target = crate::store::postgres::config(url, &opts)
                    .map(|c| describe_pg(&c))
                    .unwrap_or_else(|_| "postgres (unparsable URL)".to_string());
                (crate::store::postgres::connector(url.clone(), opts), target, floor)
            }
        };
        let writer = WriterConfig {
            batch_max: s.batch_max,
            linger: s.flush_interval,
            ..WriterConfig::new(s.spill_dir.join("store.spill"))
        };
        StoreSetup {
            connector,
            target,
            writer,
            queue_capacity: s.queue_capacity,
            heartbeat_floor: floor,
            startup_wait: STARTUP_WAIT,
        }
    }
}

fn describe_pg(c: &::postgres::Config) -> String {
    let host =
        c.get_hostaddrs().first().map(|a| a.to_string()).unwrap_or_else(|| "localhost".to_string());
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!("postgres {host}:{port}/{}", c.get_dbname().unwrap_or(""))
}

/// What persistence needs from the process.
pub struct PersistEnv<'a> {
    pub config: &'a Config,
    pub metrics: &'a Metrics,
    pub health: &'a HealthBoard,
    pub clock: Arc<dyn Clock>,
    pub gate: &'a OrderGate,
}

/// An opened store with the recovered state; see the module doc.
pub struct Persist {
    handle: StoreHandle,
    writer: Arc<WriterShared>,
    sink: Arc<StoreSink>,
    pub state: RestartState,
    target: String,
    heartbeat_floor: Duration,
    gate: OrderGate,
    overtaken: u64,
}

impl Persist {
    /// Steps 1 and 2 of the module doc.
    pub fn open(setup: StoreSetup, env: &PersistEnv<'_>) -> anyhow::Result<Persist> {
        let StoreSetup { connector, target, writer, queue_capacity, heartbeat_floor, startup_wait } =
            setup;
        let connector =
            if env.gate.is_leased() { fenced(connector, env.gate.clone()) } else { connector };
        let spill = SpillFiles::new(writer.spill_path.clone());
        let deadline = Instant::now() + startup_wait;
        let mut store = startup::connect(&connector, &target, deadline)?;
        let db_last =
            store.last_event_id().map_err(|e| anyhow::anyhow!("reading {target}: {e}"))?;
        let overtaken = startup::set_aside_overtaken_spill(&spill, db_last)?;

        let (handle, inbox) = queue(queue_capacity);
        let shared = WriterShared::new(inbox, connector, writer, env.metrics, env.health.clone());
        if spill.pending() {
            log::info!(target: "store", "startup: replaying the spill of the previous run into {target} before recovery");
        }
        startup::catch_up(&shared, env.health, &target, deadline)?;

        let now = env.clock.now();
        let session = SessionClock::new(env.config.session.clone());
        let today = session.session_of(now);
        let stored = startup::read(store.as_mut(), &target, today)?;
        drop(store);
        if let Some(last) = stored.recovery.last_event_id {
            handle.raise_id_floor(last);
        }
        let params = RestoreParams {
            session: session.clone(),
            charges: env.config.charges.clone(),
            paper: (env.config.broker.kind == crate::config::BrokerKind::Paper)
                .then(|| env.config.paper.clone()),
        };
        let state = recover::restart_state(&stored, &params, now)?;
        let sink = Arc::new(StoreSink::new(handle.clone(), session));
        Ok(Persist {
            handle,
            writer: shared,
            sink,
            state,
            target,
            heartbeat_floor,
            gate: env.gate.clone(),
            overtaken,
        })
    }

    pub fn sink(&self) -> Arc<StoreSink> {
        self.sink.clone()
    }

    pub fn handle(&self) -> &StoreHandle {
        &self.handle
    }

    pub fn writer(&self) -> Arc<WriterShared> {
        self.writer.clone()
    }

    /// The writer's worker spec (the supervisor starts it first).
    pub fn writer_spec(&self, config: &Config) -> WorkerSpec {
        let shared = self.writer.clone();
        let limit = config.runtime.heartbeat_limit_for(WRITER).max(self.heartbeat_floor);
        WorkerSpec::new(WRITER, limit, move || {
            Box::new(StoreWriter::new(shared.clone())) as Box<dyn crate::runtime::Worker>
        })
        .pinned_to(config.host.pin.get(WRITER).copied())
    }

    /// Step 4: `base` with the store sink (and `also`), the writer, the recovered state and
    /// the gated broker.
    pub fn seams(&self, config: &Config, base: Seams, also: Vec<Arc<dyn EventSink>>) -> Seams {
        self.sink.seed(&self.state.core.positions);
        let mut sinks: Vec<Arc<dyn EventSink>> = vec![self.sink.clone()];
        sinks.extend(also);
        sinks.push(base.sink);
        let mut workers = vec![self.writer_spec(config)];
        workers.extend(base.sink_workers);
        let gate = self.gate.clone();
        let inner = base.broker;
        let broker: crate::engine::seams::BrokerFactory = if gate.is_leased() {
            Box::new(move |ctx| {
                let mut parts = inner(ctx)?;
                parts.gateway = Arc::new(GatedGateway::new(parts.gateway, gate));
                Ok(parts)
            })
        } else {
            inner
        };
        Seams {
            sink: Arc::new(FanoutSink(sinks)),
            sink_workers: workers,
            broker,
            recovered: Some(Recovered {
                core: self.state.core.clone(),
                trading: self.state.trading.clone(),
            }),
        }
    }

    /// Step 5: hands the reconciled state to the built engine, before its workers run.
    pub fn finish(self, engine: &mut Engine, config: &Config) -> anyhow::Result<()> {
        let Persist { handle, sink, state, target, gate, overtaken, .. } = self;
        let shared = &engine.shared;
        if let (Some(w), Some(wallet)) = (&state.paper_wallet, &shared.paper_wallet) {
            // The master is loaded now: a sliced open leg pays brokerage per child.
            let mut w = w.clone();
            w.charge_slices(&shared.instruments.load(), &config.charges);
            *wallet.lock() = PaperBroker::restore(
                config.paper.clone(),
                config.charges.clone(),
                w.cash,
                &w.holdings,
                w.executions,
            );
            // The engine's first PnL snapshot was taken before the wallet was restored: the
            // API must not show the initial cash until the refresher's first round.
            let version = shared.pnl.get().version;
            shared.pnl.publish(Arc::new(PnlSnapshot::take(&shared.pnl_handles(), version)));
        }
        for p in &state.core.positions {
            shared.position_subscriptions.subscribe(&p.id, p.instrument);
        }
        for r in state.records.iter().cloned() {
            handle.record(r);
        }
        if overtaken > 0 {
            sink.audit(Actor::Engine, "spill_set_aside", format!("{overtaken} spilled events older than the database's newest were set aside, not replayed"), state.now);
        }
        let exiting = state.exits_in_flight().len();
        let d = &state.core.day;
        let summary = format!(
            "{} open positions ({exiting} exiting), {} pending entries; trading {} ({}); session {}: {} trades, {} closed, net {}",
            state.core.positions.len(),
            state.core.pending_entries.len(),
            state.trading.state,
            state.trading.reason,
            state.trading_day.format("%Y-%m-%d"),
            d.trades,
            d.closed,
            d.realised_net,
        );
        log::info!(target: "store", "recovered from {target}: {summary}");
        for p in &state.core.positions {
            let exit = match &p.lifecycle {
                Lifecycle::Exiting(x) => format!(
                    ", exit {} in flight ({}, attempt {})",
                    x.correlation_id, x.reason, x.attempt
                ),
                _ => String::new(),
            };
            log::info!(target: "store", "recovered position {}: {} {} {} at {}, best {} hwm {} ratchet {}{exit}", p.id, p.side, p.open_quantity(), p.instrument, p.entry_price, p.risk.best_price, p.risk.hwm_pnl, p.risk.ratchet_stop.map_or_else(|| "none".to_string(), |s| s.to_string()));
        }
        let token = gate.token().map_or_else(String::new, |t| format!("; fencing token {t}"));
        sink.audit(
            Actor::Engine,
            "engine_started",
            format!("recovered {summary}{token}"),
            state.now,
        );
        if let Some(w) = &state.paper_wallet {
            log::info!(target: "store", "paper wallet: cash {}, {} holdings", w.cash, w.holdings.len());
        }
        for ev in state.outcomes {
            // The receiver lives in `Shared`: an unbounded send cannot fail.
            let _ = shared.channels.router_to_exit_engine_tx.send(ev);
        }
        if !state.resend.is_empty() {
            let events = state.resend.into_iter().map(CoreEvent::ExitIntent).collect();
            shared.outbox.push_events(events, Instant::now());
        }
        engine.banner.push(format!("store: {target}"));
        Ok(())
    }
}

/// The whole startup of an engine that persists: steps 1 to 5 of the module doc. `base`
/// supplies the broker (and any extra sink); `reconcile` settles the orders found in flight;
/// `gate` is the instance's order gate ([`OrderGate::open`] without a lease).
pub fn build(
    env: EngineEnv,
    base: Seams,
    reconcile: &mut dyn Reconcile,
    gate: OrderGate,
) -> anyhow::Result<Engine> {
    let setup = StoreSetup::from_config(&env.config, &env.secrets);
    build_with_setup(env, setup, base, reconcile, gate)
}

/// [`build`] with the store given explicitly rather than from `[store]`.
pub fn build_with_setup(
    env: EngineEnv,
    setup: StoreSetup,
    base: Seams,
    reconcile: &mut dyn Reconcile,
    gate: OrderGate,
) -> anyhow::Result<Engine> {
    let config = env.config.clone();
    let penv = PersistEnv {
        config: &config,
        metrics: &env.metrics,
        health: &env.health,
        clock: env.clock.clone(),
        gate: &gate,
    };
    let mut persist =
        Persist::open(setup, &penv).map_err(|e| anyhow::anyhow!("recovery: {e:#}"))?;
    reconcile
        .reconcile(&mut persist.state)
        .map_err(|e| anyhow::anyhow!("recovery: reconciliation: {e:#}"))?;
    let publisher = if config.redis.enabled {
        Some(Publisher::new(&config, &env.secrets, &env.metrics, &env.health)?)
    } else {
        None
    };
    let also: Vec<Arc<dyn EventSink>> = publisher.iter().map(|p| p.sink()).collect();
    let seams = persist.seams(&config, base, also);
    let mut engine = build_with(env, seams)?;
    persist.finish(&mut engine, &config)?;
    if let Some(p) = publisher {
        engine.banner.push(format!("redis: publishing to {}", p.target()));
        engine.workers.push(p.worker_spec(engine.shared.publisher_handles(), &config));
    }
    Ok(engine)
}
