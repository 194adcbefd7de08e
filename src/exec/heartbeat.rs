//! The heartbeat: the engine's slow housekeeping, every `heartbeat.interval`.
//!
//! - Stale prices (risk spec §5), judged every `heartbeat.interval` and, when a stale-price
//!   source exists, every `risk.stale_after_ms` too (at least a second apart): an open
//!   position whose last confirmed price (the exit core's, after the price guard) was
//!   received `risk.stale_after_ms` ago or more on the monotonic clock (or that never had one
//!   for that long since it opened) is stale. Staleness is always visible: the `prices` health component goes `Degraded`,
//!   `scalper_stale_positions` and `scalper_position_price_age_seconds` show it. With a
//!   [`crate::exec::seams::StalePriceSource`] (live mode: Dhan's LTP over REST) the fetched
//!   prices go to the exit engine to be evaluated as ticks; without one (paper mode) each
//!   position that turns stale gets an alert log line.
//! - Pruning: the exit core forgets prices and cooldowns no decision needs (by command, as the
//!   exit engine owns it); the order book forgets orders that ended long ago.
//! - Reconciliation: the broker's [`crate::exec::seams::Reconciler`] compares positions
//!   (a no-op in paper mode; in live mode it wakes the `reconciler` worker, whose reads the
//!   exit engine applies); its findings are logged.
//! - One summary line in the log: positions, day PnL, ticks per second, trading state.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crossbeam_channel::Sender;

use crate::domain::{Clock, InstrumentKey, PositionId};
use crate::exec::core::CoreView;
use crate::exec::messages::EngineCommand;
use crate::exec::metrics::EngineMetrics;
use crate::exec::order_book::{Event, OrderBookHandle, Outcome};
use crate::exec::pnl_refresher::PnlBoard;
use crate::exec::seams::{Reconciler, StalePriceSource};
use crate::feed::{FeedStats, TickCache};
use crate::ops::health::{ComponentHealth, HealthBoard, Status};
use crate::risk::trading_state::TradingView;
use crate::runtime::{Worker, WorkerCtx};

/// The health board component for price freshness.
pub const HEALTH_COMPONENT: &str = "prices";

/// Ended orders stay in the order book this long: far beyond any re-send after a restart.
pub const LEDGER_RETENTION_MS: i64 = 60 * 60 * 1_000;

/// The stale-price fallback asks at most this often (Dhan's quote limit: one call a second).
const MIN_FALLBACK_GAP: Duration = Duration::from_secs(1);

/// A full round is due when the interval has passed, give or take this.
const PRICES_SLACK: Duration = Duration::from_millis(20);

/// One open position's price freshness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceAge {
    pub position: PositionId,
    pub instrument: InstrumentKey,
    /// Milliseconds since the instrument's last tick; `None` if it never had one.
    pub age_ms: Option<i64>,
    pub stale: bool,
}

/// One open position's silence: whether it ever had a confirmed price, and for how many
/// milliseconds it has had none (since that price, else since it opened).
pub type Silence = (PositionId, InstrumentKey, bool, i64);

/// Judges every open position's price (pure: the figures in, the verdicts out).
pub fn price_ages(positions: &[Silence], stale_after_ms: i64) -> Vec<PriceAge> {
    positions
        .iter()
        .map(|(id, instrument, priced, silent_ms)| PriceAge {
            position: id.clone(),
            instrument: *instrument,
            age_ms: priced.then_some(*silent_ms),
            stale: *silent_ms >= stale_after_ms,
        })
        .collect()
}

/// What the heartbeat works with, built once by the engine and cloned into each spawn: the
/// exit core to read (its pruning goes by command to the exit engine), the order book to prune.
#[derive(Clone)]
pub struct HeartbeatHandles {
    pub clock: Arc<dyn Clock>,
    pub core: CoreView,
    pub orders: OrderBookHandle,
    pub pnl: PnlBoard,
    pub reconciler: Arc<dyn Reconciler>,
    pub stale_prices: Option<Arc<dyn StalePriceSource>>,
    /// A fetched fallback price goes in as the instrument's last.
    pub cache: TickCache,
    pub feed_stats: Arc<FeedStats>,
    /// Read for the summary line.
    pub trading: TradingView,
    pub health: HealthBoard,
    pub m: EngineMetrics,
    /// `heartbeat.interval`.
    pub interval: Duration,
    pub commands_to_exit_engine_tx: Sender<EngineCommand>,
}

pub struct Heartbeat {
    h: HeartbeatHandles,
    /// Positions found stale at the last round (to log transitions once).
    stale: BTreeSet<PositionId>,
}

impl Heartbeat {
    pub fn new(h: HeartbeatHandles) -> Heartbeat {
        Heartbeat { h, stale: BTreeSet::new() }
    }

    /// One round of housekeeping.
    pub fn round(&mut self) {
        let s = self.h.clone();
        let ages = self.prices_round();

        let _ = s.commands_to_exit_engine_tx.try_send(EngineCommand::Prune);
        if let Outcome::Pruned(n) =
            s.orders.apply(Event::Prune { keep_ms: LEDGER_RETENTION_MS.unsigned_abs() })
            && n > 0
        {
            log::debug!(target: "heartbeat", "forgot {n} orders that ended long ago");
        }

        let snapshot = s.pnl.get();
        match s.reconciler.reconcile(&snapshot) {
            Ok(findings) => {
                for f in findings {
                    log::warn!(target: "heartbeat", "reconciliation: {f}");
                }
            }
            Err(e) => log::warn!(target: "heartbeat", "reconciliation could not run: {e}"),
        }

        let stale = ages.iter().filter(|a| a.stale).count();
        log::info!(
            target: "heartbeat",
            "{} positions ({stale} stale), day PnL {} (realised net {}, unrealised {}), {} ticks/s on {} instruments, trading {}, {} orders open",
            ages.len(),
            snapshot.core.account.day_pnl,
            snapshot.core.account.realised_net,
            snapshot.core.account.unrealised_gross,
            s.feed_stats.ticks_per_sec(),
            s.feed_stats.subscribed.get(),
            s.trading.state(),
            s.orders.view().open_orders(),
        );
    }

    /// Judges every open position's price freshness, reports it, and (live) fetches the stale
    /// instruments' prices for the exit engine. Returns the verdicts.
    pub fn prices_round(&mut self) -> Vec<PriceAge> {
        let s = self.h.clone();
        let (now, mono) = (s.clock.now(), s.clock.mono());
        let (positions, stale_after_ms) = {
            let core = s.core.read();
            let positions: Vec<Silence> = core
                .price_ages(now, mono)
                .into_iter()
                .map(|(p, age)| (p.id.clone(), p.instrument, p.last_price_at.is_some(), age))
                .collect();
            (positions, core.risk_params().stale_after_ms)
        };
        let ages = price_ages(&positions, stale_after_ms);
        self.report_staleness(&ages, stale_after_ms);
        ages
    }

    /// How often the prices are judged: every `heartbeat.interval`, and with a stale-price
    /// source every `stale_after_ms` too (at least a second apart: Dhan allows one quote call
    /// per second), so that a fallback price comes while it still matters.
    fn prices_every(&self) -> Duration {
        let interval = self.h.interval;
        match &self.h.stale_prices {
            Some(_) => {
                let stale_after = self.h.core.read().risk_params().stale_after_ms.max(0);
                Duration::from_millis(stale_after as u64).max(MIN_FALLBACK_GAP).min(interval)
            }
            None => interval,
        }
    }

    fn report_staleness(&mut self, ages: &[PriceAge], stale_after_ms: i64) {
        let s = &self.h;
        s.m.position_price_age.reset();
        for a in ages {
            s.m.position_price_age
                .with_label_values(&[a.position.as_str()])
                .set(a.age_ms.map_or(-1.0, |ms| ms as f64 / 1000.0));
        }
        let stale: Vec<&PriceAge> = ages.iter().filter(|a| a.stale).collect();
        s.m.stale_positions.set(stale.len() as i64);
        let now_stale: BTreeSet<PositionId> = stale.iter().map(|a| a.position.clone()).collect();
        let health = if stale.is_empty() {
            ComponentHealth::ok()
        } else {
            let details: serde_json::Map<String, serde_json::Value> = stale
                .iter()
                .map(|a| {
                    (
                        a.position.to_string(),
                        json!({ "instrument": a.instrument, "age_ms": a.age_ms }),
                    )
                })
                .collect();
            ComponentHealth::new(
                Status::Degraded,
                format!("{} positions have no tick for {stale_after_ms} ms or more", stale.len()),
            )
            .with_details(serde_json::Value::Object(details))
        };
        s.health.set(HEALTH_COMPONENT, health);

        match &s.stale_prices {
            Some(source) if !stale.is_empty() => {
                let mut instruments: Vec<InstrumentKey> =
                    stale.iter().map(|a| a.instrument).collect();
                instruments.sort();
                instruments.dedup();
                match source.fetch(&instruments, s.clock.now(), s.clock.mono()) {
                    Ok(ticks) if !ticks.is_empty() => {
                        for t in &ticks {
                            let _ = s.cache.set_last(t);
                        }
                        let _ = s
                            .commands_to_exit_engine_tx
                            .try_send(EngineCommand::FallbackPrices(ticks));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        log::warn!(target: "heartbeat", "fetching prices of {} stale instruments failed: {e}", instruments.len())
                    }
                }
            }
            Some(_) => {}
            None => {
                for a in stale.iter().filter(|a| !self.stale.contains(&a.position)) {
                    let age = a
                        .age_ms
                        .map_or("no tick yet".to_string(), |ms| format!("last tick {ms} ms ago"));
                    log::warn!(target: "heartbeat", "position {} on {}: price is stale ({age}); exit rules wait for a fresh tick", a.position, a.instrument);
                }
            }
        }
        for id in self.stale.difference(&now_stale) {
            if ages.iter().any(|a| &a.position == id) {
                log::info!(target: "heartbeat", "position {id}: price is fresh again");
            }
        }
        self.stale = now_stale;
    }
}

impl Worker for Heartbeat {
    fn run(&mut self, ctx: &WorkerCtx) -> anyhow::Result<()> {
        let mut last_round = Instant::now();
        while ctx.sleep(self.prices_every()) {
            if last_round.elapsed() + PRICES_SLACK >= self.h.interval {
                last_round = Instant::now();
                self.round();
            } else {
                self.prices_round();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Segment;

    #[test]
    fn a_price_is_stale_from_exactly_stale_after_ms() {
        let k = |i| InstrumentKey::new(Segment::NseFno, i);
        let positions = vec![
            (PositionId::new("fresh"), k(1), true, 2_999),
            (PositionId::new("old"), k(1), true, 3_000),
            (PositionId::new("never"), k(2), false, 2_999),
            (PositionId::new("never-old"), k(3), false, 3_000),
        ];
        let ages = price_ages(&positions, 3_000);
        let got: Vec<(Option<i64>, bool)> = ages.iter().map(|a| (a.age_ms, a.stale)).collect();
        assert_eq!(got, [(Some(2_999), false), (Some(3_000), true), (None, false), (None, true)]);
    }
}
