//! The Redis publisher worker: mirrors the engine's live state into Redis for dashboards and
//! other processes (keys in `keys.rs`, documented in the README (section "Redis keys")).
//!
//! Every [`PUBLISH_EVERY`] it sends one pipeline with what changed since the last one: the
//! latest tick of each instrument whose tick changed (conflated: however many ticks arrived in
//! between, one `HSET` with the newest), the positions and the account when the PnL refresher
//! published a new snapshot (a closed position's key is deleted), the engine events that
//! arrived (one `PUBLISH` each), and the heartbeat when due. Nothing here is on the trading
//! path: ticks and snapshots are read from the engine's shared caches, and events come through
//! a bounded channel that the sink feeds with `try_send` (dropped, and counted, when full).
//!
//! The worker owns its connection. Every step has a timeout; on any error it drops the
//! connection, reports `redis` health as degraded (trading is not affected), reconnects with
//! backoff, and once connected again republishes everything: every tick, every position (and
//! deletes the keys of positions that closed meanwhile), the set, the account, the heartbeat.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use redis::Connection;

use super::connection::{RedisTarget, describe_error};
use super::keys::{self, Keys};
use crate::domain::{Clock, InstrumentKey, PositionId};
use crate::exec::pnl_refresher::PnlBoard;
use crate::exec::seams::EngineEvent;
use crate::feed::TickCache;
use crate::instruments::SharedInstruments;
use crate::ops::health::{ComponentHealth, HealthBoard, Status};
use crate::ops::metrics::Metrics;
use crate::runtime::backoff::{Backoff, BackoffPolicy};
use crate::runtime::{Worker, WorkerCtx};

/// How often changes are sent.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// The health board's component name.
pub const HEALTH_COMPONENT: &str = "redis";

/// Metric handles, created once per engine.
#[derive(Clone)]
pub struct PublishMetrics {
    pub up: prometheus::IntGauge,
    pub pipelines: prometheus::IntCounter,
    pub commands: prometheus::IntCounter,
    pub errors: prometheus::IntCounter,
    pub reconnects: prometheus::IntCounter,
    pub events_dropped: prometheus::IntCounter,
    pub seconds: prometheus::Histogram,
}

impl PublishMetrics {
    pub fn new(m: &Metrics) -> PublishMetrics {
        PublishMetrics {
            up: m.gauge("redis_up", "1 while the Redis publisher is connected"),
            pipelines: m.counter("redis_pipelines_total", "Pipelines sent to Redis"),
            commands: m.counter("redis_commands_total", "Commands sent to Redis in pipelines"),
            errors: m.counter("redis_errors_total", "Failed Redis connects or pipelines"),
            reconnects: m
                .counter("redis_reconnects_total", "Connections the Redis publisher opened"),
            events_dropped: m.counter(
                "redis_events_dropped_total",
                "Engine events not published to Redis (disconnected, or the queue was full)",
            ),
            seconds: m.histogram(
                "redis_pipeline_seconds",
                "Time to send one pipeline and read its replies",
                crate::ops::metrics::network_buckets(),
            ),
        }
    }
}

/// What outlives one publisher value.
pub struct PublisherShared {
    pub target: RedisTarget,
    pub keys: Keys,
    pub events: Receiver<EngineEvent>,
    pub metrics: PublishMetrics,
    pub health: HealthBoard,
    /// Written into the heartbeat.
    pub instance: String,
    pub mode: String,
    pub heartbeat_every: Duration,
    pub heartbeat_ttl: Duration,
}

/// The engine state the publisher reads (never changes): the tick cache, the PnL board, the
/// instrument master, the clock. Built once by the engine and cloned into each spawn.
#[derive(Clone)]
pub struct PublisherHandles {
    pub cache: TickCache,
    pub pnl: PnlBoard,
    pub instruments: SharedInstruments,
    pub clock: Arc<dyn Clock>,
}

/// What was last published, to send only changes. A fresh worker (or a new connection)
/// starts empty, so everything is published again.
#[derive(Default)]
struct Published {
    ticks: HashMap<InstrumentKey, u64>,
    snapshot_version: Option<u64>,
    positions: BTreeSet<PositionId>,
    heartbeat: Option<Instant>,
    /// The open set and stale position keys need cleaning (first pipeline on a connection).
    full: bool,
}

pub struct RedisPublisher {
    shared: Arc<PublisherShared>,
    engine: PublisherHandles,
    con: Option<Connection>,
    backoff: Backoff,
    next_attempt: Instant,
    published: Published,
    down_since: Option<Instant>,
    last_error: String,
}

impl RedisPublisher {
    pub fn new(shared: Arc<PublisherShared>, engine: PublisherHandles) -> RedisPublisher {
        let policy = BackoffPolicy::new(Duration::from_millis(100), Duration::from_secs(5), 0.2)
            .expect("a positive base, a larger cap and a small jitter are valid");
        RedisPublisher {
            shared,
            engine,
            con: None,
            backoff: Backoff::new(policy),
            next_attempt: Instant::now(),
            published: Published::default(),
            down_since: None,
            last_error: String::new(),
        }
    }

    fn set_health(&self, status: Status, reason: String) {
        self.shared.health.set(HEALTH_COMPONENT, ComponentHealth::new(status, reason));
    }

    fn connect(&mut self) {
        if Instant::now() < self.next_attempt {
            return;
        }
        let s = &self.shared;
        match s.target.connect() {
            Ok(con) => {
                s.metrics.reconnects.inc();
                s.metrics.up.set(1);
                self.backoff.reset();
                if let Some(since) = self.down_since.take() {
                    log::info!(target: "redis", "Redis at {} reachable again after {:?}; republishing the current state", s.target.describe(), since.elapsed());
                } else {
                    log::info!(target: "redis", "publishing to Redis at {}", s.target.describe());
                }
                self.con = Some(con);
                self.published = Published { full: true, ..Published::default() };
                self.set_health(Status::Ok, format!("publishing to {}", s.target.describe()));
            }
            Err(e) => self.failed(&describe_error(&e)),
        }
    }

    fn failed(&mut self, why: &str) {
        let s = &self.shared;
        s.metrics.errors.inc();
        s.metrics.up.set(0);
        self.con = None;
        let delay = self.backoff.next_delay(fastrand::f64());
        self.next_attempt = Instant::now() + delay;
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            log::error!(target: "redis", "Redis at {} unavailable ({why}): publishing paused, trading unaffected; reconnecting with backoff", s.target.describe());
        } else if why != self.last_error {
            log::debug!(target: "redis", "Redis still unavailable ({why}); next attempt in {delay:?}");
        }
        self.last_error = why.to_string();
        self.set_health(
            Status::Degraded,
            format!(
                "Redis at {} unavailable: {why}; trading unaffected, reconnecting",
                s.target.describe()
            ),
        );
    }

    /// Builds the pipeline of everything changed; returns it with its command count and what
    /// the published state becomes once it is sent.
    fn changes(
        &mut self,
        con: &mut Connection,
    ) -> Result<(redis::Pipeline, usize, Published), String> {
        let s = &self.shared;
        let k = &s.keys;
        let mut pipe = redis::pipe();
        let mut n = 0;
        let mut next = Published {
            ticks: self.published.ticks.clone(),
            snapshot_version: self.published.snapshot_version,
            positions: self.published.positions.clone(),
            heartbeat: self.published.heartbeat,
            full: false,
        };

        for key in self.engine.cache.instruments() {
            let Some(snap) = self.engine.cache.get(key) else { continue };
            if next.ticks.get(&key) == Some(&snap.updates) {
                continue;
            }
            if let Some(fields) = keys::tick_fields(&snap) {
                pipe.hset_multiple(k.tick(key), &fields).ignore();
                n += 1;
                next.ticks.insert(key, snap.updates);
            }
        }

        let snap = self.engine.pnl.get();
        if next.snapshot_version != Some(snap.version) {
            let open: BTreeSet<PositionId> =
                snap.core.positions.iter().map(|p| p.id.clone()).collect();
            let mut gone: BTreeSet<PositionId> =
                next.positions.difference(&open).cloned().collect();
            if self.published.full {
                // Positions published before an outage may have closed during it.
                let listed: Vec<String> = redis::cmd("SMEMBERS")
                    .arg(k.open_positions())
                    .query(con)
                    .map_err(|e| describe_error(&e))?;
                gone.extend(
                    listed.into_iter().map(PositionId::new).filter(|id| !open.contains(id)),
                );
                pipe.del(k.open_positions()).ignore();
                n += 1;
            }
            for id in &gone {
                pipe.del(k.position(id)).ignore();
                pipe.srem(k.open_positions(), id.as_str()).ignore();
                n += 2;
            }
            let master = self.engine.instruments.load();
            for p in &snap.core.positions {
                let symbol = master.get(p.instrument).map_or("", |i| &*i.symbol);
                pipe.hset_multiple(k.position(&p.id), &keys::position_fields(p, snap.at(), symbol))
                    .ignore();
                pipe.sadd(k.open_positions(), p.id.as_str()).ignore();
                n += 2;
            }
            pipe.hset_multiple(k.account(), &keys::account_fields(&snap, &s.mode)).ignore();
            n += 1;
            next.positions = open;
            next.snapshot_version = Some(snap.version);
        }

        while let Ok(ev) = s.events.try_recv() {
            if let Some(msg) = keys::event_message(&ev) {
                pipe.publish(k.events(), msg).ignore();
                n += 1;
            }
        }

        if next.heartbeat.is_none_or(|t| t.elapsed() >= s.heartbeat_every) {
            let value = keys::heartbeat_value(&s.instance, &s.mode, self.engine.clock.now());
            pipe.set(k.heartbeat(), value).ignore();
            pipe.pexpire(k.heartbeat(), s.heartbeat_ttl.as_millis() as i64).ignore();
            n += 2;
            next.heartbeat = Some(Instant::now());
        }
        Ok((pipe, n, next))
    }

    /// One publishing round on the open connection.
    fn publish(&mut self) {
        let Some(mut con) = self.con.take() else { return };
        let result = self.changes(&mut con).and_then(|(pipe, n, next)| {
            if n == 0 {
                return Ok(next);
            }
            let started = Instant::now();
            pipe.query::<()>(&mut con).map_err(|e| describe_error(&e))?;
            let m = &self.shared.metrics;
            m.seconds.observe(started.elapsed().as_secs_f64());
            m.pipelines.inc();
            m.commands.inc_by(n as u64);
            Ok(next)
        });
        match result {
            Ok(next) => {
                self.published = next;
                self.con = Some(con);
            }
            Err(why) => self.failed(&why),
        }
    }

    /// While disconnected, events are dropped (pub/sub has no memory either).
    fn drop_events(&self) {
        let mut n = 0;
        while self.shared.events.try_recv().is_ok() {
            n += 1;
        }
        self.shared.metrics.events_dropped.inc_by(n);
    }
}

impl Worker for RedisPublisher {
    fn run(&mut self, ctx: &WorkerCtx) -> anyhow::Result<()> {
        while !ctx.should_stop() {
            ctx.beat();
            if self.con.is_none() {
                self.connect();
            }
            if self.con.is_some() {
                self.publish();
            } else {
                self.drop_events();
            }
            let wait = if self.con.is_some() {
                PUBLISH_EVERY
            } else {
                self.next_attempt
                    .saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(10), PUBLISH_EVERY)
            };
            ctx.sleep(wait.min(ctx.beat_every()));
        }
        Ok(())
    }
}
