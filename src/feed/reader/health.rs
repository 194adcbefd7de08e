//! Publishing the feed's health: the `scalper_feed_*` gauges, the price age of every
//! instrument with an open position, and the `feed` component of the health board. Refreshed
//! at most every `health_every`, never per tick.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{ConnState, HEALTH_COMPONENT, ReaderConfig, ReaderShared};
use crate::domain::InstrumentKey;
use crate::feed::subscriptions::Tracked;
use crate::ops::health::{ComponentHealth, Status};

pub(super) struct HealthPublisher {
    every: Duration,
    stall_timeout: Duration,
    next: Instant,
    ticks_at: (Instant, u64),
    aged_labels: BTreeSet<InstrumentKey>,
}

impl HealthPublisher {
    pub(super) fn new(cfg: &ReaderConfig, shared: &ReaderShared) -> HealthPublisher {
        let now = Instant::now();
        HealthPublisher {
            every: cfg.health_every,
            stall_timeout: cfg.stall_timeout,
            next: now,
            ticks_at: (now, shared.stats.ticks.get()),
            aged_labels: BTreeSet::new(),
        }
    }

    /// Refreshes everything, unless the last refresh is younger than `health_every` and
    /// `force` is false.
    pub(super) fn publish(
        &mut self,
        force: bool,
        now: Instant,
        shared: &ReaderShared,
        tracked: &Tracked,
    ) {
        if !force && now < self.next {
            return;
        }
        self.next = now + self.every;
        let stats = &shared.stats;
        let ticks = stats.ticks.get();
        let (t0, n0) = self.ticks_at;
        let secs = now.duration_since(t0).as_secs_f64();
        if secs > 0.0 {
            stats.set_ticks_per_sec((ticks.saturating_sub(n0) as f64 / secs).round() as i64);
        }
        self.ticks_at = (now, ticks);
        let frame_age = stats.last_frame_age().map(|d| d.as_millis() as i64);
        stats.last_frame_age.set(frame_age.map_or(-1.0, |ms| ms as f64 / 1000.0));

        let wall = shared.clock.now();
        let mut ages = serde_json::Map::new();
        for key in &tracked.positions {
            let age =
                shared.cache.tick(*key).map_or(-1, |t| wall.millis_since(t.received_at).max(0));
            let secs = if age < 0 { -1.0 } else { age as f64 / 1000.0 };
            stats.price_age.with_label_values(&[&key.to_string()]).set(secs);
            ages.insert(key.to_string(), json!(age));
        }
        for gone in self.aged_labels.difference(&tracked.positions) {
            let _ = stats.price_age.remove_label_values(&[&gone.to_string()]);
        }
        self.aged_labels.clone_from(&tracked.positions);

        let state = stats.state();
        let over_limit = stats.over_limit.get();
        let (status, reason) = match (state, stats.fatal(), stats.down_for()) {
            (_, Some(r), _) => (Status::Down, format!("feed stopped: server disconnect {r}")),
            (ConnState::Connected, ..) if over_limit > 0 => (
                Status::Degraded,
                format!("{over_limit} tracked instruments over the per-connection limit"),
            ),
            (ConnState::Connected, ..) => (Status::Ok, String::new()),
            (s, _, Some(down)) if down > self.stall_timeout => (
                Status::Down,
                format!("{}, no feed for {down:?}: {}", s.name(), stats.last_error()),
            ),
            (s, ..) => (Status::Degraded, format!("{}: {}", s.name(), stats.last_error())),
        };
        let details = json!({
            "state": state.name(),
            "reconnects": stats.reconnects.get(),
            "last_frame_age_ms": frame_age,
            "ticks_per_sec": stats.ticks_per_sec(),
            "decode_errors": stats.decode_errors.get(),
            "subscribed": stats.subscribed.get(),
            "position_price_age_ms": ages,
        });
        shared
            .health
            .set(HEALTH_COMPONENT, ComponentHealth::new(status, reason).with_details(details));
    }
}
