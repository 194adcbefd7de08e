//! The tick reader's shared status: metric handles, connection state, last-frame time and the
//! fatal latch. Built once per engine, outside the worker, and captured by the reader's
//! factory, so a respawned reader counts into the same series and stays parked after a fatal
//! disconnect until someone re-arms it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge};

use crate::feed::codec::DisconnectReason;
use crate::ops::metrics::{Metrics, StateGauge};
use crate::runtime::{monotonic_millis, monotonic_millis_at};

/// Where the reader's connection stands.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ConnState {
    Disconnected = 0,
    Connecting = 1,
    Connected = 2,
    /// Waiting out a handshake 429 or an 805 before the next attempt.
    CoolingOff = 3,
    /// A fatal disconnect (806/808/810): no more attempts until re-armed.
    Stopped = 4,
}

impl ConnState {
    /// Every state, as the `state` label of `scalper_feed_state`.
    pub const NAMES: &'static [&'static str] =
        &["disconnected", "connecting", "connected", "cooling_off", "stopped"];

    pub const fn name(self) -> &'static str {
        match self {
            ConnState::Disconnected => "disconnected",
            ConnState::Connecting => "connecting",
            ConnState::Connected => "connected",
            ConnState::CoolingOff => "cooling_off",
            ConnState::Stopped => "stopped",
        }
    }

    fn from_u8(v: u8) -> ConnState {
        match v {
            1 => ConnState::Connecting,
            2 => ConnState::Connected,
            3 => ConnState::CoolingOff,
            4 => ConnState::Stopped,
            _ => ConnState::Disconnected,
        }
    }
}

/// The `cause` label values of `scalper_feed_disconnects_total` known in advance: failed
/// attempts, lost connections, and Dhan's disconnect codes (another code gets its own series).
pub const DISCONNECT_CAUSES: &[&str] = &[
    "connect_failed",
    "http_429",
    "http_unauthorized",
    "no_token",
    "closed",
    "stall",
    "transport",
    "write_failed",
    "800",
    "804",
    "805",
    "806",
    "807",
    "808",
    "809",
    "810",
];

/// Metric handles (`scalper_feed_*`) and shared state of the tick reader.
pub struct FeedStats {
    /// `scalper_feed_state{state}`: the [`ConnState`].
    pub state_gauge: StateGauge,
    pub connection_attempts: IntCounter,
    /// Successful handshakes.
    pub connections: IntCounter,
    /// Successful handshakes after the first one.
    pub reconnects: IntCounter,
    /// Ends of connections and failed attempts, by cause.
    pub disconnects: IntCounterVec,
    /// Seconds since the last frame or ping (-1: none yet).
    pub last_frame_age: Gauge,
    pub packets: IntCounter,
    /// Packets that carried a last traded price.
    pub ticks: IntCounter,
    pub decode_errors: IntCounter,
    pub subscribed: IntGauge,
    /// Tracked instruments left out by the per-connection limit.
    pub over_limit: IntGauge,
    /// Ticks handed to the exit engine.
    pub position_ticks: IntCounter,
    /// Times a position tick had to wait for room in the exit engine's channel.
    pub position_backpressure: IntCounter,
    pub cache_full: IntCounter,
    /// Age in seconds of the last price of each instrument with an open position (-1: none
    /// yet).
    pub price_age: GaugeVec,
    /// Ticks per second over the last health period, for `/health` and the heartbeat line
    /// (not a metric: the query takes `rate(scalper_feed_ticks_total[…])`).
    ticks_per_sec: AtomicI64,
    state: AtomicU8,
    last_frame: AtomicU64,
    state_since: AtomicU64,
    /// Monotonic ms since which no socket has been up; 0 while connected.
    down_since: AtomicU64,
    fatal: AtomicU32,
    last_error: Mutex<String>,
}

impl std::fmt::Debug for FeedStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedStats").field("state", &self.state()).finish_non_exhaustive()
    }
}

impl FeedStats {
    /// Registers the `scalper_feed_*` metrics; call once per engine.
    pub fn new(m: &Metrics) -> Arc<FeedStats> {
        Arc::new(FeedStats {
            state_gauge: m.state_gauge(
                "feed_state",
                "Feed connection state: 1 for the current one, 0 for the others",
                "state",
                ConnState::NAMES,
                ConnState::Disconnected.name(),
            ),
            connection_attempts: m
                .counter("feed_connection_attempts_total", "Feed connection attempts"),
            connections: m.counter("feed_connections_total", "Successful feed handshakes"),
            reconnects: m
                .counter("feed_reconnects_total", "Successful feed handshakes after the first"),
            disconnects: m.counter_vec_preset(
                "feed_disconnects_total",
                "Feed connections lost or refused, by cause",
                &["cause"],
                &[DISCONNECT_CAUSES],
            ),
            last_frame_age: {
                let g = m.float_gauge(
                    "feed_last_frame_age_seconds",
                    "Seconds since the last frame or ping (-1: none yet)",
                );
                g.set(-1.0);
                g
            },
            packets: m.counter("feed_packets_total", "Decoded feed packets about an instrument"),
            ticks: m.counter("feed_ticks_total", "Feed packets carrying a last traded price"),
            decode_errors: m.counter("feed_decode_errors_total", "Malformed feed packets"),
            subscribed: m
                .gauge("feed_subscribed_instruments", "Instruments subscribed on the socket"),
            over_limit: m.gauge(
                "feed_instruments_over_limit",
                "Tracked instruments beyond the per-connection limit",
            ),
            position_ticks: m
                .counter("feed_position_ticks_total", "Ticks delivered to the exit engine"),
            position_backpressure: m.counter(
                "feed_position_backpressure_total",
                "Position ticks that waited for room in the exit engine's channel",
            ),
            cache_full: m
                .counter("feed_cache_full_total", "Updates refused because the tick cache is full"),
            price_age: m.float_gauge_vec(
                "feed_price_age_seconds",
                "Age of the last price of each instrument with an open position (-1: none yet)",
                &["instrument"],
            ),
            ticks_per_sec: AtomicI64::new(0),
            state: AtomicU8::new(ConnState::Disconnected as u8),
            last_frame: AtomicU64::new(0),
            state_since: AtomicU64::new(monotonic_millis()),
            down_since: AtomicU64::new(monotonic_millis()),
            fatal: AtomicU32::new(0),
            last_error: Mutex::new(String::new()),
        })
    }

    pub fn state(&self) -> ConnState {
        ConnState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// How long the current state has lasted.
    pub fn state_age(&self) -> Duration {
        Duration::from_millis(
            monotonic_millis().saturating_sub(self.state_since.load(Ordering::Acquire)),
        )
    }

    /// How long no socket has been up (`None` while connected), across reconnect attempts.
    pub fn down_for(&self) -> Option<Duration> {
        match self.down_since.load(Ordering::Acquire) {
            0 => None,
            t => Some(Duration::from_millis(monotonic_millis().saturating_sub(t))),
        }
    }

    pub(crate) fn set_state(&self, s: ConnState) {
        let now = monotonic_millis();
        if self.state.swap(s as u8, Ordering::AcqRel) != s as u8 {
            self.state_since.store(now, Ordering::Release);
        }
        if s == ConnState::Connected {
            self.down_since.store(0, Ordering::Release);
        } else {
            let _ = self.down_since.compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
        }
        self.state_gauge.set(s.name());
    }

    /// Ticks per second over the last health period (the feed's health details and the
    /// heartbeat line).
    pub fn ticks_per_sec(&self) -> i64 {
        self.ticks_per_sec.load(Ordering::Acquire)
    }

    pub(crate) fn set_ticks_per_sec(&self, v: i64) {
        self.ticks_per_sec.store(v, Ordering::Release);
    }

    /// Time since the last frame or ping on any connection, if one ever arrived.
    pub fn last_frame_age(&self) -> Option<Duration> {
        match self.last_frame.load(Ordering::Acquire) {
            0 => None,
            t => Some(Duration::from_millis(monotonic_millis().saturating_sub(t))),
        }
    }

    pub(crate) fn frame_seen(&self) {
        self.last_frame.store(monotonic_millis(), Ordering::Release);
    }

    /// [`FeedStats::frame_seen`] at an instant the caller has read.
    pub(crate) fn frame_seen_at(&self, at: std::time::Instant) {
        self.last_frame.store(monotonic_millis_at(at), Ordering::Release);
    }

    /// The disconnect reason that stopped the reader, if any.
    pub fn fatal(&self) -> Option<DisconnectReason> {
        match self.fatal.load(Ordering::Acquire) {
            0 => None,
            code => Some(DisconnectReason::from_code(code as u16)),
        }
    }

    pub(crate) fn set_fatal(&self, reason: DisconnectReason) {
        self.fatal.store(u32::from(reason.code()).max(1), Ordering::Release);
    }

    /// Re-arms a reader stopped by a fatal disconnect (after the credentials or the data plan
    /// were fixed): it reloads the token and connects again.
    pub fn clear_fatal(&self) {
        self.fatal.store(0, Ordering::Release);
    }

    /// The last connection error, already free of secrets.
    pub fn last_error(&self) -> String {
        self.last_error.lock().clone()
    }

    pub(crate) fn set_last_error(&self, e: String) {
        *self.last_error.lock() = e;
    }
}
