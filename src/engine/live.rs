//! The live Dhan broker (`broker.kind = "dhan"`), built for the engine: one REST client with
//! the shared per-class rate limiter, the circuit breaker, the order journal in
//! `<data_dir>/journal`, the order tracker, and the workers `order_updates` (the socket),
//! `order_tracker` (socket messages and order-book polls → fills), `order_desk` (unknown
//! outcomes, resends, exits held by the breaker) and `reconciler` (the broker's books read on
//! the heartbeat's cadence), plus the stale-price source. What each part does is in `exec::live`; [`LiveOptions`] holds every knob, taken from
//! `[broker]` by [`LiveOptions::from_config`] (tests shrink windows and limits through it).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use parking_lot::Mutex;

use crate::broker::breaker::{BreakerConfig, SharedBreaker};
use crate::broker::credentials::{
    CredentialError, CredentialSource, Credentials, ReloadableCredentials,
};
use crate::broker::journal::{OrderJournal, Sent};
use crate::broker::keep_warm::KeepWarm;
use crate::broker::model::ProductType;
use crate::broker::order_updates::{
    OrderUpdateConfig, OrderUpdateMetrics, OrderUpdateShared, OrderUpdateWorker, RecentUpdates,
};
use crate::broker::ratelimit::{LimiterConfig, RateLimiter};
use crate::broker::resolve::ResolverConfig;
use crate::broker::rest::{DhanClient, RestConfig, RestMetrics};
use crate::config::{self, Config, Secrets};
use crate::domain::{CorrelationId, OrderPurpose};
use crate::engine::persist::{Reconcile, RestartState};
use crate::engine::seams::{BrokerContext, BrokerParts};
use crate::exec::live::LiveMetrics;
use crate::exec::live::desk::{DeskConfig, DeskHandle, OrderDesk};
use crate::exec::live::gateway::LiveGateway;
use crate::exec::live::ltp::LtpSource;
use crate::exec::live::placer::Placer;
use crate::exec::live::reconciler::{LiveReconciler, ReconcileWorker};
use crate::exec::live::report::Reporter;
use crate::exec::live::tracking::{OrderTracking, TrackingShared};
use crate::exec::messages::OrderEvent;
use crate::instance::OrderGate;
use crate::runtime::WorkerSpec;
use crate::store::{Actor, OrderStatus as StoreStatus};

/// Every setting of the live broker.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub rest: RestConfig,
    pub order_updates: OrderUpdateConfig,
    pub limiter: LimiterConfig,
    pub breaker: BreakerConfig,
    pub desk: DeskConfig,
    /// An order the broker holds with no report for this long is looked up in the order book.
    pub poll_every: Duration,
    pub product: ProductType,
    /// The order journal's directory; `None`: `<data_dir>/journal`.
    pub journal_dir: Option<PathBuf>,
    /// The instance's order gate (its lease): no placement while it is closed, whoever places
    /// (the router's gateway or the order desk).
    pub gate: OrderGate,
    /// Orders the router may have in flight at once (its placers; orders of one position
    /// still go one at a time). Dhan allows 10 orders a second and answers in ≈ 300 ms, so 4
    /// keep a flatten at the rate limit's pace.
    pub placers: usize,
    /// A call on the REST pool whenever the client has been idle this long, so the next order
    /// finds a warm connection (`broker.keep_warm_ms`); zero: off.
    pub keep_warm: Duration,
}

/// The router's placers in live mode (see [`LiveOptions::placers`]).
pub const DEFAULT_PLACERS: usize = 4;

impl LiveOptions {
    /// From `[broker]`: URLs, timeouts, resolve window, breaker; Dhan's rate limits (spec §5).
    pub fn from_config(c: &Config) -> LiveOptions {
        let b = &c.broker;
        let rest = RestConfig {
            connect_timeout: b.connect_timeout,
            request_timeout: b.request_timeout,
            ..RestConfig::new(b.rest_url.as_str().trim_end_matches('/'))
        };
        let mut order_updates = OrderUpdateConfig::new(b.order_update_url.as_str());
        order_updates.connect_timeout = b.connect_timeout;
        let window_ms = b.resolve_window.as_millis() as u64;
        let resolver = ResolverConfig {
            window_ms,
            first_poll_ms: (window_ms / 10).clamp(20, 200),
            max_poll_ms: (window_ms / 4).clamp(50, 1_000),
            give_up_after_ms: (window_ms * 2).max(5_000),
        };
        LiveOptions {
            rest,
            order_updates,
            limiter: LimiterConfig::dhan(),
            breaker: BreakerConfig {
                failure_threshold: b.breaker_failures,
                cool_down_ms: b.breaker_open.as_millis() as u64,
            },
            desk: DeskConfig { resolver, ..DeskConfig::default() },
            poll_every: Duration::from_secs(1),
            product: match b.product_type {
                config::ProductType::Intraday => ProductType::Intraday,
                config::ProductType::Margin => ProductType::Margin,
            },
            journal_dir: None,
            gate: OrderGate::open(),
            placers: DEFAULT_PLACERS,
            keep_warm: b.keep_warm,
        }
    }

    /// The least heartbeat limit of a worker that makes blocking REST calls: one call's worst
    /// legitimate wait (a rate-limit slot for up to `limiter_wait`, then the whole request for
    /// up to `request_timeout`, and when that request was not sent, its one resend on a fresh
    /// connection for up to `request_timeout` again) plus 2 s. The order router and the
    /// heartbeat get it too.
    fn rest_worker_limit(&self) -> Duration {
        self.rest.request_timeout * 2 + self.rest.limiter_wait + Duration::from_secs(2)
    }
}

/// The credentials: the ones resolved at startup, re-read from the environment and the
/// secrets file when Dhan answers as if the token had expired.
fn credentials(config: &Config, secrets: &Secrets) -> anyhow::Result<Arc<dyn CredentialSource>> {
    let initial =
        Credentials::new(secrets.dhan_client_id.expose(), secrets.dhan_access_token.expose());
    let first = Mutex::new(Some(initial.clone()));
    let config = config.clone();
    let loader = move || -> Result<Credentials, CredentialError> {
        if let Some(c) = first.lock().take() {
            return Ok(c);
        }
        match Secrets::from_process_env(&config) {
            Ok(s) if !s.dhan_access_token.is_empty() => {
                Ok(Credentials::new(s.dhan_client_id.expose(), s.dhan_access_token.expose()))
            }
            Ok(_) => Ok(initial.clone()),
            Err(e) => Err(CredentialError { source_name: "secrets".into(), reason: e.to_string() }),
        }
    };
    let creds = ReloadableCredentials::new(loader)
        .map_err(|e| anyhow::anyhow!("Dhan credentials: {}", e.reason))?;
    Ok(Arc::new(creds))
}

/// Builds the live broker: see the module doc.
pub fn dhan_broker(ctx: &BrokerContext<'_>, opts: LiveOptions) -> anyhow::Result<BrokerParts> {
    let creds = credentials(ctx.config, ctx.secrets)?;
    let limiter = Arc::new(RateLimiter::new(opts.limiter.clone()));
    let client = DhanClient::with_metrics(
        opts.rest.clone(),
        creds.clone(),
        limiter,
        RestMetrics::new(ctx.metrics),
    );
    let m = LiveMetrics::new(ctx.metrics);
    let journal_dir = opts.journal_dir.clone().unwrap_or_else(|| ctx.data_dir.join("journal"));
    let journal = Arc::new(
        OrderJournal::open(&journal_dir, ctx.clock.now())
            .with_context(|| format!("opening the order journal in {}", journal_dir.display()))?,
    );
    // The order book the router admits orders into: the live broker's workers apply what
    // Dhan says to the same book.
    let orders = ctx.orders.clone();
    let reporter = Reporter::new(ctx.order_events.clone(), ctx.sink.clone(), ctx.clock.clone());
    let placer = Arc::new(Placer {
        client: client.clone(),
        journal: journal.clone(),
        breaker: SharedBreaker::new(opts.breaker),
        product: opts.product,
        clock: ctx.clock.clone(),
        health: ctx.health.clone(),
        m: m.clone(),
        desk_figures: Mutex::new((0, 0)),
        gate: opts.gate.clone(),
    });
    placer.publish_breaker();
    let recent = RecentUpdates::default();
    let desk = DeskHandle::new(
        placer.clone(),
        orders.clone(),
        reporter.clone(),
        recent.clone(),
        ctx.clock.clone(),
        opts.desk,
    );
    let gateway = Arc::new(
        LiveGateway::new(placer.clone(), desk.clone(), orders.clone(), journal.clone())
            .with_placers(opts.placers)
            .with_instruments(ctx.instruments.clone()),
    );

    let (updates_tx, updates_rx) = crossbeam_channel::bounded(4_096);
    let socket = OrderUpdateShared::new(
        opts.order_updates.clone(),
        creds.clone(),
        updates_tx,
        ctx.health.clone(),
    )?
    .with_metrics(OrderUpdateMetrics::new(ctx.metrics))
    .with_recent(recent.clone());
    let tracking = TrackingShared {
        updates: updates_rx,
        orders: orders.clone(),
        reporter: reporter.clone(),
        client: client.clone(),
        poll_every: opts.poll_every,
        m: m.clone(),
    };
    let rest_limit = opts.rest_worker_limit();
    let socket_limit = opts.order_updates.connect_timeout + Duration::from_secs(2);
    let stop_deadline = opts.rest.request_timeout + Duration::from_secs(1);
    let desk_for_worker = desk.clone();
    let mut workers = vec![
        WorkerSpec::new("order_updates", socket_limit, move || {
            Box::new(OrderUpdateWorker::new(socket.clone()))
        }),
        WorkerSpec::new("order_tracker", rest_limit, move || {
            Box::new(OrderTracking::new(tracking.clone()))
        })
        .stop_deadline(stop_deadline),
        WorkerSpec::new("order_desk", rest_limit, move || {
            Box::new(OrderDesk::new(desk_for_worker.clone()))
        })
        .stop_deadline(stop_deadline),
    ];

    let reconciler = Arc::new(
        LiveReconciler::new(
            client.clone(),
            opts.product,
            orders,
            desk,
            reporter,
            recent,
            journal.clone(),
            opts.desk.resolver,
            ctx.commands.clone(),
            ctx.health.clone(),
            ctx.clock.clone(),
            m,
        )
        .with_instruments(ctx.instruments.clone()),
    );
    let for_worker = reconciler.clone();
    workers.push(
        WorkerSpec::new("reconciler", rest_limit, move || {
            Box::new(ReconcileWorker::new(for_worker.clone()))
        })
        .stop_deadline(stop_deadline),
    );
    if !opts.keep_warm.is_zero() {
        let (client, every) = (client.clone(), opts.keep_warm);
        workers.push(
            WorkerSpec::new("rest_keep_warm", rest_limit, move || {
                Box::new(KeepWarm::new(client.clone(), every))
            })
            .stop_deadline(stop_deadline),
        );
    }
    log::info!(target: "broker", "live broker: REST {}, order updates {}, journal {}", opts.rest.base_url, opts.order_updates.url, journal.path_for(ctx.clock.now()).display());
    Ok(BrokerParts {
        gateway,
        paper_wallet: None,
        workers,
        reconciler,
        stale_prices: Some(Arc::new(LtpSource::new(client))),
        rest_heartbeat_floor: rest_limit,
    })
}

/// Restart recovery's reconciliation step in live mode (`engine::persist`, step 3): nothing is
/// decided from the store alone, because only Dhan knows what became of an order in flight.
///
/// - An exit in flight stays `Exiting` under its correlation id: it is never re-sent here; the
///   exit engine's startup reconciliation asks Dhan for it before any order is sent. Its fills the
///   store recorded are applied first (they happened), and Dhan is then asked only for what
///   traded beyond them.
/// - An entry in flight whose position the store knows was filled; one without stays pending,
///   to be asked for the same way.
/// - An older exit order of a position that has since moved on is closed in the store's books.
/// - Every order of today's journal the store missed (the store is write-behind, the journal
///   was fsynced before the send) is put back in flight first
///   ([`crate::engine::persist::journal_replay`]), so it is settled the same way.
/// - With `instance.lease = "redis"` (a standby may be taking over from a holder on another
///   host, whose journal it does not have) the next exit attempt of every open position is
///   recorded in the journal as presumed sent
///   ([`crate::engine::persist::journal_replay::presumed_exits`]): looked up, never sent,
///   until the resolve window proves it absent.
#[derive(Debug, Default, Clone)]
pub struct LiveRestart {
    /// Today's order journal as the previous run left it.
    pub journal: Vec<Sent>,
    /// Where the journal is (`None`: presume nothing).
    pub journal_dir: Option<PathBuf>,
    /// Presume the next exit attempts sent (`instance.lease = "redis"`).
    pub presume_next_exits: bool,
}

impl LiveRestart {
    /// Reads today's order journal (`journal_dir`, or `<data_dir>/journal`).
    pub fn from_journal(config: &Config, now: crate::domain::Timestamp) -> anyhow::Result<Self> {
        let dir = LiveOptions::from_config(config)
            .journal_dir
            .unwrap_or_else(|| config.data_dir.join("journal"));
        let journal = OrderJournal::open(&dir, now)
            .with_context(|| format!("reading the order journal in {}", dir.display()))?;
        Ok(LiveRestart {
            journal: journal.today(),
            presume_next_exits: config.instance.lease == config::LeaseKind::Redis,
            journal_dir: Some(dir),
        })
    }

    /// Records the next exit attempts of the open positions as presumed sent (see above).
    fn presume_next_exits(&self, state: &mut RestartState) -> anyhow::Result<()> {
        let (true, Some(dir)) = (self.presume_next_exits, &self.journal_dir) else {
            return Ok(());
        };
        let intents = crate::engine::persist::journal_replay::presumed_exits(state, &self.journal);
        if intents.is_empty() {
            return Ok(());
        }
        let journal = OrderJournal::open(dir, state.now)
            .with_context(|| format!("opening the order journal in {}", dir.display()))?;
        for i in intents {
            journal.presume(&i, state.now).with_context(|| {
                format!("recording {} as possibly sent by the previous holder", i.correlation_id)
            })?;
            state.audit(
                Actor::Reconciliation,
                "exit_presumed_sent",
                format!(
                    "{} of {}: possibly sent by the previous lease holder; looked up, never sent, until proved absent",
                    i.correlation_id, i.position_id
                ),
            );
        }
        Ok(())
    }
}

impl Reconcile for LiveRestart {
    fn reconcile(&mut self, state: &mut RestartState) -> anyhow::Result<()> {
        crate::engine::persist::journal_replay::replay(state, &self.journal);
        self.presume_next_exits(state)?;
        let mut outcomes = Vec::new();
        let mut notes = Vec::new();
        for (p, x) in state.exits_in_flight() {
            let fills = state.exit_fills.get(&x.correlation_id).cloned().unwrap_or_default();
            notes.push(format!(
                "exit {} of {} in flight ({} recorded fills): settled with Dhan by correlation id before trading starts",
                x.correlation_id,
                p.id,
                fills.len()
            ));
            let purpose = OrderPurpose::Exit(x.reason);
            outcomes.extend(fills.into_iter().map(|fill| OrderEvent::Filled { purpose, fill }));
        }
        let in_flight: Vec<CorrelationId> =
            state.exits_in_flight().iter().map(|(_, x)| x.correlation_id.clone()).collect();
        let mut settle = Vec::new();
        for o in &state.open_orders {
            if in_flight.contains(&o.correlation_id) {
                continue;
            }
            match o.purpose {
                OrderPurpose::Entry if state.known_positions.contains(&o.position_id) => settle
                    .push((o.correlation_id.clone(), StoreStatus::Traded, "its position exists: it filled")),
                OrderPurpose::Entry => notes.push(format!(
                    "entry {} of {} in flight: settled with Dhan by correlation id before trading starts",
                    o.correlation_id, o.position_id
                )),
                OrderPurpose::Exit(_) => settle.push((
                    o.correlation_id.clone(),
                    StoreStatus::Cancelled,
                    "superseded: its position moved on (a later attempt, or closed)",
                )),
            }
        }
        state
            .core
            .pending_entries
            .retain(|e| !settle.iter().any(|(c, _, _)| c == &e.correlation_id));
        for (cid, status, why) in settle {
            state.audit(Actor::Reconciliation, "order_settled", format!("{cid}: {status} ({why})"));
            state.settle_order(&cid, status, why.to_string());
        }
        for note in notes {
            state.audit(Actor::Reconciliation, "order_in_flight", note);
        }
        state.outcomes.extend(outcomes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_follow_the_broker_table() {
        let c = Config::from_toml_str(
            r#"
mode = "live"
[feed]
source = "dhan"
[broker]
kind = "dhan"
product_type = "MARGIN"
request_timeout_ms = 1500
connect_timeout_ms = 700
resolve_window_ms = 2000
breaker_failures = 4
breaker_open_secs = 7
[limits]
max_daily_loss_rupees = 5000
"#,
        )
        .unwrap();
        let o = LiveOptions::from_config(&c);
        assert_eq!(o.rest.base_url, "https://api.dhan.co/v2");
        assert_eq!(
            (o.rest.request_timeout, o.rest.connect_timeout),
            (Duration::from_millis(1500), Duration::from_millis(700))
        );
        assert_eq!(o.order_updates.url, "wss://api-order-update.dhan.co/");
        assert_eq!((o.breaker.failure_threshold, o.breaker.cool_down_ms), (4, 7_000));
        assert_eq!(o.desk.resolver.window_ms, 2_000);
        assert!(o.desk.resolver.give_up_after_ms >= o.desk.resolver.window_ms);
        assert_eq!(o.product, ProductType::Margin);
        assert_eq!(o.limiter, LimiterConfig::dhan());
    }

    fn order(cid: &str, position: &str, purpose: OrderPurpose) -> crate::store::OrderRecord {
        use crate::domain::{InstrumentKey, PositionId, Qty, Segment, Timestamp, Txn};
        crate::store::OrderRecord {
            correlation_id: CorrelationId::new(cid).unwrap(),
            broker_order_id: None,
            position_id: PositionId::new(position),
            instrument: InstrumentKey::new(Segment::NseFno, 1),
            txn: Txn::Sell,
            quantity: Qty(75),
            purpose,
            status: StoreStatus::Created,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            limit_price: None,
        }
    }

    #[test]
    fn a_live_restart_resends_nothing_applies_recorded_fills_and_leaves_the_rest_to_dhan() {
        use crate::domain::{
            ExitReason, Fill, InstrumentKey, OrderId, Paise, PositionId, Qty, Segment, Tick,
            Timestamp, Txn,
        };
        use crate::exec::core::{CoreParams, ExitCore, PendingEntry};
        use crate::risk::trading_state::TradingCell;
        let t0 = Timestamp(1_763_958_600_000);
        let k = InstrumentKey::new(Segment::NseFno, 1);
        let mut core = ExitCore::new(CoreParams::default(), TradingCell::active(t0));
        core.adopt(PositionId::new("p1"), k, crate::domain::Side::Long, Qty(75), Paise(10_000), t0)
            .unwrap();
        core.on_tick(&Tick::at(k, Paise(9_000), t0));
        let mut cs = core.export();
        let pending = |id: &str| PendingEntry {
            position_id: PositionId::new(id),
            instrument: k,
            side: crate::domain::Side::Long,
            quantity: Qty(75),
            correlation_id: CorrelationId::new(format!("N1-{id}")).unwrap(),
            attempt: 1,
            reference_price: Paise(10_000),
            placed_at: t0,
            limit_price: None,
        };
        cs.pending_entries = vec![pending("p2"), pending("p3")];
        let exit = OrderPurpose::Exit(ExitReason::StopLoss);
        let part = Fill {
            correlation_id: CorrelationId::new("X1-p1").unwrap(),
            order_id: OrderId("9".into()),
            trade_id: "9-25".into(),
            instrument: k,
            txn: Txn::Sell,
            quantity: Qty(25),
            price: Paise(9_000),
            value: Paise(9_000 * 25),
            at: t0,
        };
        let mut state = RestartState {
            trading_day: t0.ist_date(),
            now: t0,
            core: cs,
            trading: TradingCell::active(t0).status(),
            open_orders: vec![
                order("X1-p1", "p1", exit),
                order("N1-p2", "p2", OrderPurpose::Entry),
                order("N1-p3", "p3", OrderPurpose::Entry),
                order("X1-p9", "p9", exit),
            ],
            exit_fills: [(CorrelationId::new("X1-p1").unwrap(), vec![part.clone()])].into(),
            known_positions: vec![PositionId::new("p1"), PositionId::new("p2")],
            paper_wallet: None,
            outcomes: Vec::new(),
            resend: Vec::new(),
            records: Vec::new(),
        };
        LiveRestart::default().reconcile(&mut state).unwrap();
        assert!(state.resend.is_empty(), "nothing is re-sent from the store");
        assert_eq!(state.outcomes, [OrderEvent::Filled { purpose: exit, fill: part }]);
        let pending: Vec<&str> =
            state.core.pending_entries.iter().map(|e| e.correlation_id.as_str()).collect();
        assert_eq!(pending, ["N1-p3"], "filled entry settled, the unknown one left to Dhan");
        let text = format!("{:?}", state.records);
        assert!(text.contains("N1-p2: traded"), "{text}");
        assert!(text.contains("X1-p9: cancelled"), "{text}");
        assert!(text.contains("X1-p1 of p1 in flight (1 recorded fills)"), "{text}");
        assert!(text.contains("N1-p3 of p3 in flight"), "{text}");
    }
}
