//! The tick reader: the worker that keeps the Dhan market-feed socket alive, decodes every
//! message into the tick cache and hands the ticks of open positions to the exit engine.
//!
//! Tick delivery policy:
//! * Every decoded packet updates the [`TickCache`] (latest value wins). Instruments without
//!   an open position are *conflated*: the cache is all they get, and a reader of the cache
//!   sees the newest price, never a queue of old ones.
//! * Ticks of instruments with an open position (per the shared [`SubscriptionSet`]) are also
//!   sent to the exit engine over a bounded crossbeam channel and are **never dropped**: when
//!   the channel is full the reader blocks on the send (beating its heartbeat every
//!   `beat_every`), which stops it reading the socket until the exit engine catches up; the
//!   backpressure is counted in `scalper_feed_position_backpressure_total`. Only a stop request
//!   abandons a pending send. The reader notices a new position within one socket read of the
//!   set's change; the exit engine should seed a new position from the cache.
//!
//! Connection policy:
//! * Connect with explicit timeouts, subscribe the tracked set in the configured mode
//!   (positions first, ≤ 100 per message, ≤ `max_instruments` per connection), keep the socket
//!   in sync as the set changes, resubscribe everything after every reconnect.
//! * Reconnect on any transport error, close frame, or stall (no frame and no ping for
//!   `stall_timeout`), after an exponential backoff with jitter and a cap; the backoff resets
//!   once a connection has delivered data for `healthy_after`. A dead socket is dropped, never
//!   closed politely.
//! * Handshake HTTP 429: wait at least `cool_off_429`. HTTP 401/403: reload the token.
//! * Disconnect packets (spec §1.8): 805 → wait at least `back_off_805`; 807/809 → reload the
//!   token from its source, then reconnect; 806/808/810 → error log, health `Down`, the
//!   `on_fatal` hook (so trading can go to reducing-only while positions are open), and no
//!   more attempts until [`FeedStats::clear_fatal`]; anything else → backoff.
//! * The token comes from a [`TokenSource`] when the reader has none (first connect, after a
//!   807/809/401/403, after a respawn) and never appears in a log line or an error.

mod connect;
mod stats;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError, select};
use serde_json::json;
use tungstenite::Message;

pub use connect::{ConnectError, install_crypto_provider};
pub use stats::{ConnState, FeedStats};

use crate::domain::{Clock, InstrumentKey, Tick};
use crate::feed::backoff::{Backoff, BackoffPolicy};
use crate::feed::codec::{DisconnectReason, Packet};
use crate::feed::splitter::Packets;
use crate::feed::subscribe::{
    FeedMode, MAX_INSTRUMENTS_PER_CONNECTION, subscribe_messages, unsubscribe_messages,
};
use crate::feed::subscriptions::{SubscriptionSet, Tracked};
use crate::feed::tick_cache::TickCache;
use crate::feed::url::{redacted_feed_url, scrub};
use crate::ops::health::{ComponentHealth, HealthBoard, Status};
use crate::runtime::{Worker, WorkerCtx};
use connect::{FeedSocket, Opened, Timeouts};

/// The health board component name.
pub const HEALTH_COMPONENT: &str = "feed";

/// A Dhan access token. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn new(token: impl Into<String>) -> AccessToken {
        AccessToken(token.into())
    }

    /// The token itself, for the URL only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

/// Where the reader gets the current access token (a file, the config's secret store, …).
/// Called on first connect and whenever the server says the token is no good. The error text
/// must not contain the token.
pub trait TokenSource: Send + Sync {
    fn token(&self) -> Result<AccessToken, String>;
}

impl<F> TokenSource for F
where
    F: Fn() -> Result<AccessToken, String> + Send + Sync,
{
    fn token(&self) -> Result<AccessToken, String> {
        self()
    }
}

/// What the `on_fatal` hook is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedFatal {
    pub reason: DisconnectReason,
    /// Instruments with open positions when the feed stopped.
    pub open_positions: usize,
}

/// Called once when the feed stops for good (806/808/810).
pub type FatalHook = Arc<dyn Fn(&FeedFatal) + Send + Sync>;

/// The reader's settings (the TOML mapping lives in `config`).
#[derive(Clone, Debug)]
pub struct ReaderConfig {
    /// `wss://api-feed.dhan.co` live, `ws://127.0.0.1:PORT` for the simulator.
    pub url: String,
    pub client_id: String,
    pub mode: FeedMode,
    /// TCP connect, and separately the whole WebSocket handshake.
    pub connect_timeout: Duration,
    pub write_timeout: Duration,
    /// Socket read timeout slice; capped at the worker's `beat_every`.
    pub poll_interval: Duration,
    pub backoff: BackoffPolicy,
    /// No frame and no ping for this long: the socket is dead.
    pub stall_timeout: Duration,
    /// Minimum wait after a handshake 429.
    pub cool_off_429: Duration,
    /// Minimum wait after a 805 disconnect.
    pub back_off_805: Duration,
    /// A connection that delivered data for this long resets the backoff.
    pub healthy_after: Duration,
    pub max_instruments: usize,
    /// How often health, gauges and price ages are refreshed.
    pub health_every: Duration,
    /// TLS settings for `wss://`; `None` trusts the Mozilla roots (webpki-roots) with rustls'
    /// ring provider.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl ReaderConfig {
    /// Spec §1.7 / §7 defaults: 2 s → 60 s backoff, 45 s stall, 60 s cool-offs.
    pub fn new(url: impl Into<String>, client_id: impl Into<String>) -> ReaderConfig {
        ReaderConfig {
            url: url.into(),
            client_id: client_id.into(),
            mode: FeedMode::Quote,
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(100),
            backoff: BackoffPolicy::default(),
            stall_timeout: Duration::from_secs(45),
            cool_off_429: Duration::from_secs(60),
            back_off_805: Duration::from_secs(60),
            healthy_after: Duration::from_secs(10),
            max_instruments: MAX_INSTRUMENTS_PER_CONNECTION,
            health_every: Duration::from_secs(1),
            tls: None,
        }
    }
}

impl ReaderConfig {
    /// Every problem with these settings, for the config checker to report at once.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !(self.url.starts_with("ws://") || self.url.starts_with("wss://")) {
            errors.push(format!("feed url {:?} must start with ws:// or wss://", self.url));
        }
        if self.client_id.trim().is_empty() {
            errors.push("feed client id is empty".to_string());
        }
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("write_timeout", self.write_timeout),
            ("poll_interval", self.poll_interval),
            ("health_every", self.health_every),
        ] {
            if d.is_zero() {
                errors.push(format!("feed {name} must be positive"));
            }
        }
        if self.stall_timeout <= self.poll_interval {
            errors.push(format!(
                "feed stall_timeout {:?} must exceed poll_interval {:?}",
                self.stall_timeout, self.poll_interval
            ));
        }
        if self.max_instruments == 0 || self.max_instruments > MAX_INSTRUMENTS_PER_CONNECTION {
            errors.push(format!(
                "feed max_instruments {} must be within 1..={MAX_INSTRUMENTS_PER_CONNECTION}",
                self.max_instruments
            ));
        }
        errors
    }
}

/// Everything the reader shares with the rest of the engine. Built once, outside the worker.
#[derive(Clone)]
pub struct ReaderShared {
    pub cache: TickCache,
    pub subscriptions: SubscriptionSet,
    /// To the exit engine: ticks of instruments with open positions, lossless.
    pub position_ticks: Sender<Tick>,
    pub token_source: Arc<dyn TokenSource>,
    pub stats: Arc<FeedStats>,
    pub health: HealthBoard,
    pub on_fatal: FatalHook,
    /// Stamps `received_at`.
    pub clock: Arc<dyn Clock>,
}

/// How a connection attempt or a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    Stopped,
    /// HTTP 429 at the handshake.
    RateLimited,
    /// HTTP 401/403 at the handshake.
    Unauthorized,
    /// Could not connect (DNS, TCP, TLS, other HTTP status, timeout, no token).
    ConnectFailed,
    /// A code-50 packet.
    Server(DisconnectReason),
    /// Transport error, close frame or stall on an established socket.
    Lost,
}

/// What to do after an [`Ending`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    Stop,
    Retry { after: Duration, reload_token: bool },
    Fatal(DisconnectReason),
}

/// The reconnect decision table (pure). `random` is uniform in `[0, 1)`.
pub fn plan(ending: &Ending, cfg: &ReaderConfig, backoff: &mut Backoff, random: f64) -> Plan {
    let retry = |after: Duration, reload_token: bool| Plan::Retry { after, reload_token };
    match ending {
        Ending::Stopped => Plan::Stop,
        Ending::RateLimited => retry(backoff.next_delay(random).max(cfg.cool_off_429), false),
        Ending::Unauthorized => retry(backoff.next_delay(random), true),
        Ending::ConnectFailed | Ending::Lost => retry(backoff.next_delay(random), false),
        Ending::Server(reason) => match reason {
            DisconnectReason::TooManyConnections => {
                retry(backoff.next_delay(random).max(cfg.back_off_805), false)
            }
            DisconnectReason::TokenExpired | DisconnectReason::TokenInvalid => {
                retry(backoff.next_delay(random), true)
            }
            DisconnectReason::DataApiNotSubscribed
            | DisconnectReason::AuthenticationFailed
            | DisconnectReason::ClientIdInvalid => Plan::Fatal(*reason),
            _ => retry(backoff.next_delay(random), false),
        },
    }
}

/// What handling one message asks of the session.
enum Flow {
    Continue,
    Disconnect(DisconnectReason),
    Stopped,
}

/// The worker. Build a fresh one per spawn with [`FeedReader::new`]; all state that matters
/// lives in [`ReaderShared`].
pub struct FeedReader {
    cfg: ReaderConfig,
    shared: ReaderShared,
    backoff: Backoff,
    rng: fastrand::Rng,
    token: Option<AccessToken>,
    tracked: Tracked,
    next_publish: Instant,
    ticks_at_publish: (Instant, u64),
    aged_labels: BTreeSet<InstrumentKey>,
    receiver_gone_logged: bool,
}

impl FeedReader {
    pub fn new(cfg: ReaderConfig, shared: ReaderShared) -> FeedReader {
        let now = Instant::now();
        let ticks = shared.stats.ticks.get();
        FeedReader {
            backoff: Backoff::new(cfg.backoff),
            cfg,
            rng: fastrand::Rng::new(),
            token: None,
            tracked: shared.subscriptions.snapshot(),
            next_publish: now,
            ticks_at_publish: (now, ticks),
            aged_labels: BTreeSet::new(),
            receiver_gone_logged: false,
            shared,
        }
    }

    fn redacted_url(&self) -> String {
        redacted_feed_url(&self.cfg.url, &self.cfg.client_id)
    }

    fn refresh_tracked(&mut self) {
        if self.shared.subscriptions.version() != self.tracked.version || self.tracked.version == 0
        {
            self.tracked = self.shared.subscriptions.snapshot();
        }
    }

    /// Sleeps until `until`, beating and publishing health; `false` on stop.
    fn wait_until(&mut self, ctx: &WorkerCtx, until: Instant) -> bool {
        loop {
            self.publish(false);
            let now = Instant::now();
            if now >= until {
                return !ctx.should_stop();
            }
            if !ctx.sleep((until - now).min(self.cfg.health_every)) {
                return false;
            }
        }
    }

    fn connect(&mut self, ctx: &WorkerCtx) -> Result<Opened, ConnectError> {
        let token = match &self.token {
            Some(t) => t.clone(),
            None => {
                let t = self.shared.token_source.token().map_err(ConnectError::Token)?;
                self.token = Some(t.clone());
                t
            }
        };
        let poll = self.cfg.poll_interval.min(ctx.beat_every());
        let timeouts =
            Timeouts { connect: self.cfg.connect_timeout, write: self.cfg.write_timeout, poll };
        let tls = self.cfg.tls.clone();
        connect::open(&self.cfg.url, token.expose(), &self.cfg.client_id, tls, timeouts, ctx)
            .map_err(|e| match e {
                // Belt and braces: nothing upstream should echo the token, but scrub anyway.
                ConnectError::Handshake(m) => ConnectError::Handshake(scrub(&m, token.expose())),
                other => other,
            })
    }

    /// One connection attempt and, if it opens, the session on it.
    fn attempt(&mut self, ctx: &WorkerCtx) -> Ending {
        let stats = self.shared.stats.clone();
        stats.set_state(ConnState::Connecting);
        stats.connection_attempts.inc();
        match self.connect(ctx) {
            Ok(opened) => self.session(ctx, opened),
            Err(ConnectError::Stopped) => Ending::Stopped,
            Err(e) => {
                let (cause, ending) = match e {
                    ConnectError::RateLimited => ("http_429", Ending::RateLimited),
                    ConnectError::Unauthorized(_) => ("http_unauthorized", Ending::Unauthorized),
                    ConnectError::Token(_) => ("no_token", Ending::ConnectFailed),
                    _ => ("connect_failed", Ending::ConnectFailed),
                };
                log::warn!(target: "feed", "connecting to {} failed: {e}", self.redacted_url());
                stats.disconnects.with_label_values(&[cause]).inc();
                stats.set_last_error(e.to_string());
                ending
            }
        }
    }

    fn session(&mut self, ctx: &WorkerCtx, opened: Opened) -> Ending {
        let Opened { mut ws, tcp } = opened;
        let poll = self.cfg.poll_interval.min(ctx.beat_every());
        let _ = tcp.set_read_timeout(Some(poll));
        let stats = self.shared.stats.clone();
        if stats.connections.get() > 0 {
            stats.reconnects.inc();
        }
        stats.connections.inc();
        stats.set_state(ConnState::Connected);
        stats.frame_seen();
        log::info!(target: "feed", "connected to {}", self.redacted_url());
        let started = Instant::now();
        let mut last_frame = started;
        let mut data_seen = false;
        let mut backoff_reset = false;
        let mut subscribed: BTreeSet<InstrumentKey> = BTreeSet::new();
        let mut synced_version = None;
        let ending = loop {
            ctx.beat();
            if ctx.should_stop() {
                break Ending::Stopped;
            }
            self.refresh_tracked();
            if synced_version != Some(self.tracked.version) {
                if let Err(e) = self.sync(&mut ws, &mut subscribed) {
                    log::warn!(target: "feed", "subscribing failed, reconnecting: {e}");
                    break self.lost("write_failed", e.to_string());
                }
                synced_version = Some(self.tracked.version);
            }
            self.publish(false);
            match ws.read() {
                Ok(Message::Binary(data)) => {
                    last_frame = Instant::now();
                    stats.frame_seen();
                    data_seen = true;
                    match self.on_message(ctx, &data) {
                        Flow::Continue => {}
                        Flow::Stopped => break Ending::Stopped,
                        Flow::Disconnect(reason) => break self.server_disconnect(reason),
                    }
                }
                Ok(Message::Close(frame)) => {
                    let why = frame
                        .map_or("no reason".to_string(), |f| format!("{} {}", f.code, f.reason));
                    log::warn!(target: "feed", "server closed the feed socket ({why}), reconnecting");
                    break self.lost("closed", format!("server closed the socket: {why}"));
                }
                Ok(_) => {
                    // Pings (tungstenite queues the pong and sends it on the next read),
                    // pongs, text: all prove the socket is alive.
                    last_frame = Instant::now();
                    stats.frame_seen();
                }
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    let silent = last_frame.elapsed();
                    if silent >= self.cfg.stall_timeout {
                        log::warn!(target: "feed", "no frame or ping for {silent:?}, reconnecting");
                        break self.lost("stall", format!("no frame or ping for {silent:?}"));
                    }
                }
                Err(e) => {
                    log::warn!(target: "feed", "feed socket failed ({e}), reconnecting");
                    break self.lost("transport", e.to_string());
                }
            }
            if !backoff_reset && data_seen && started.elapsed() >= self.cfg.healthy_after {
                self.backoff.reset();
                backoff_reset = true;
            }
        };
        // Dropping the socket closes it without waiting for a close handshake.
        drop(ws);
        stats.subscribed.set(0);
        stats.set_state(ConnState::Disconnected);
        ending
    }

    fn lost(&self, cause: &str, error: String) -> Ending {
        self.shared.stats.disconnects.with_label_values(&[cause]).inc();
        self.shared.stats.set_last_error(error);
        Ending::Lost
    }

    fn server_disconnect(&self, reason: DisconnectReason) -> Ending {
        let stats = &self.shared.stats;
        stats.disconnects.with_label_values(&[&reason.code().to_string()]).inc();
        stats.set_last_error(format!("server disconnect {reason}"));
        log::warn!(target: "feed", "server disconnected the feed: {reason}");
        Ending::Server(reason)
    }

    /// Brings the socket's subscriptions to the tracked set: unsubscribe removals, subscribe
    /// additions (positions first), within the per-connection limit.
    fn sync(
        &mut self,
        ws: &mut FeedSocket,
        subscribed: &mut BTreeSet<InstrumentKey>,
    ) -> Result<(), tungstenite::Error> {
        let (desired, overflow) = self.tracked.desired(self.cfg.max_instruments);
        let wanted: BTreeSet<InstrumentKey> = desired.iter().copied().collect();
        let removed: Vec<InstrumentKey> = subscribed.difference(&wanted).copied().collect();
        let added: Vec<InstrumentKey> =
            desired.iter().filter(|k| !subscribed.contains(k)).copied().collect();
        for msg in unsubscribe_messages(self.cfg.mode, &removed) {
            ws.send(Message::text(msg))?;
        }
        for k in &removed {
            subscribed.remove(k);
        }
        for msg in subscribe_messages(self.cfg.mode, &added) {
            ws.send(Message::text(msg))?;
        }
        subscribed.extend(added.iter().copied());
        let stats = &self.shared.stats;
        stats.subscribed.set(subscribed.len() as i64);
        if overflow as i64 != stats.over_limit.get() && overflow > 0 {
            log::error!(target: "feed", "{overflow} tracked instruments exceed the {} per connection and are not subscribed", self.cfg.max_instruments);
        }
        stats.over_limit.set(overflow as i64);
        if !added.is_empty() || !removed.is_empty() {
            log::info!(target: "feed", "subscriptions: +{} -{} ({} in {} mode)", added.len(), removed.len(), subscribed.len(), self.cfg.mode);
        }
        Ok(())
    }

    fn on_message(&mut self, ctx: &WorkerCtx, data: &[u8]) -> Flow {
        let received_at = self.shared.clock.now();
        for item in Packets::new(data) {
            let framed = match item {
                Ok(f) => f,
                Err(e) => {
                    let stats = &self.shared.stats;
                    stats.decode_errors.inc();
                    let n = stats.decode_errors.get();
                    if n <= 10 || n.is_power_of_two() {
                        log::warn!(target: "feed", "{e} (decode error #{n})");
                    }
                    continue;
                }
            };
            match framed.packet {
                Packet::Disconnect(d) => return Flow::Disconnect(d.reason),
                Packet::MarketStatus(m) => {
                    log::info!(target: "feed", "market status packet (segment {}, id {})", m.segment, m.security_id);
                }
                Packet::Unknown(u) => {
                    log::debug!(target: "feed", "skipped unknown packet code {} ({} bytes)", u.code, u.len);
                }
                packet => {
                    self.shared.stats.packets.inc();
                    match self.shared.cache.apply(&packet, received_at) {
                        Ok(Some(tick)) => {
                            self.shared.stats.ticks.inc();
                            if self.tracked.is_position(&tick.instrument)
                                && !self.deliver(ctx, tick)
                            {
                                return Flow::Stopped;
                            }
                        }
                        Ok(None) => {}
                        Err(full) => {
                            self.shared.stats.cache_full.inc();
                            if self.shared.stats.cache_full.get() == 1 {
                                log::error!(target: "feed", "{full}");
                            }
                        }
                    }
                }
            }
        }
        Flow::Continue
    }

    /// Hands a position tick to the exit engine without ever dropping it; `false` if a stop
    /// was requested while waiting.
    fn deliver(&mut self, ctx: &WorkerCtx, tick: Tick) -> bool {
        let tx = &self.shared.position_ticks;
        let stats = &self.shared.stats;
        match tx.try_send(tick) {
            Ok(()) => {
                stats.position_ticks.inc();
                return true;
            }
            Err(TrySendError::Disconnected(_)) => {
                if !self.receiver_gone_logged {
                    self.receiver_gone_logged = true;
                    log::error!(target: "feed", "the exit engine's tick channel is closed; position ticks reach the cache only");
                }
                return true;
            }
            Err(TrySendError::Full(_)) => stats.position_backpressure.inc(),
        }
        loop {
            ctx.beat();
            select! {
                send(tx, tick) -> sent => {
                    if sent.is_ok() {
                        stats.position_ticks.inc();
                    }
                    return true;
                }
                recv(ctx.stopped()) -> _ => return false,
                default(ctx.beat_every()) => {}
            }
        }
    }

    /// Refreshes gauges, price ages and the health board, at most every `health_every`
    /// unless `force`.
    fn publish(&mut self, force: bool) {
        let now = Instant::now();
        if !force && now < self.next_publish {
            return;
        }
        self.next_publish = now + self.cfg.health_every;
        self.refresh_tracked();
        let stats = &self.shared.stats;
        let ticks = stats.ticks.get();
        let (t0, n0) = self.ticks_at_publish;
        let secs = now.duration_since(t0).as_secs_f64();
        if secs > 0.0 {
            stats.ticks_per_second.set(((ticks.saturating_sub(n0)) as f64 / secs).round() as i64);
        }
        self.ticks_at_publish = (now, ticks);
        let frame_age = stats.last_frame_age().map(|d| d.as_millis() as i64);
        stats.last_frame_age_ms.set(frame_age.unwrap_or(-1));

        let wall = self.shared.clock.now();
        let mut ages = serde_json::Map::new();
        for key in &self.tracked.positions {
            let age = self
                .shared
                .cache
                .tick(*key)
                .map_or(-1, |t| wall.millis_since(t.received_at).max(0));
            stats.price_age_ms.with_label_values(&[&key.to_string()]).set(age);
            ages.insert(key.to_string(), json!(age));
        }
        for gone in self.aged_labels.difference(&self.tracked.positions) {
            let _ = stats.price_age_ms.remove_label_values(&[&gone.to_string()]);
        }
        self.aged_labels = self.tracked.positions.clone();

        let state = stats.state();
        let (status, reason) = match (state, stats.fatal()) {
            (_, Some(r)) => (Status::Down, format!("feed stopped: server disconnect {r}")),
            (ConnState::Connected, _) if stats.over_limit.get() > 0 => (
                Status::Degraded,
                format!(
                    "{} tracked instruments over the per-connection limit",
                    stats.over_limit.get()
                ),
            ),
            (ConnState::Connected, _) => (Status::Ok, String::new()),
            (s, _) if stats.state_age() > self.cfg.stall_timeout => (
                Status::Down,
                format!("{} for {:?}: {}", s.name(), stats.state_age(), stats.last_error()),
            ),
            (s, _) => (Status::Degraded, format!("{}: {}", s.name(), stats.last_error())),
        };
        let details = json!({
            "state": state.name(),
            "reconnects": stats.reconnects.get(),
            "last_frame_age_ms": frame_age,
            "ticks_per_sec": stats.ticks_per_second.get(),
            "decode_errors": stats.decode_errors.get(),
            "subscribed": stats.subscribed.get(),
            "position_price_age_ms": ages,
        });
        self.shared
            .health
            .set(HEALTH_COMPONENT, ComponentHealth::new(status, reason).with_details(details));
    }

    fn go_fatal(&mut self, reason: DisconnectReason) {
        self.refresh_tracked();
        let stats = &self.shared.stats;
        stats.set_fatal(reason);
        stats.set_state(ConnState::Stopped);
        let open_positions = self.tracked.positions.len();
        log::error!(target: "feed", "market feed stopped for good: {reason}; {open_positions} instruments with open positions have no prices; fix the credentials or data plan and re-arm");
        (self.shared.on_fatal)(&FeedFatal { reason, open_positions });
        self.publish(true);
    }
}

impl Worker for FeedReader {
    fn run(&mut self, ctx: &WorkerCtx) -> anyhow::Result<()> {
        let mut next_attempt = Instant::now();
        loop {
            if ctx.should_stop() {
                break;
            }
            if self.shared.stats.fatal().is_some() {
                // Parked: beat, publish, and resume if someone re-arms the feed.
                self.shared.stats.set_state(ConnState::Stopped);
                self.publish(false);
                if !ctx.sleep(self.cfg.health_every.min(ctx.beat_every())) {
                    break;
                }
                if self.shared.stats.fatal().is_none() {
                    log::info!(target: "feed", "feed re-armed; reconnecting");
                    self.token = None;
                    self.backoff.reset();
                    next_attempt = Instant::now();
                }
                continue;
            }
            if !self.wait_until(ctx, next_attempt) {
                break;
            }
            let ending = self.attempt(ctx);
            match plan(&ending, &self.cfg, &mut self.backoff, self.rng.f64()) {
                Plan::Stop => break,
                Plan::Fatal(reason) => self.go_fatal(reason),
                Plan::Retry { after, reload_token } => {
                    if reload_token {
                        log::info!(target: "feed", "reloading the access token before reconnecting");
                        self.token = None;
                    }
                    let state = if after >= self.cfg.cool_off_429.min(self.cfg.back_off_805)
                        && matches!(
                            ending,
                            Ending::RateLimited
                                | Ending::Server(DisconnectReason::TooManyConnections)
                        ) {
                        ConnState::CoolingOff
                    } else {
                        ConnState::Disconnected
                    };
                    self.shared.stats.set_state(state);
                    log::info!(target: "feed", "reconnecting in {after:?}");
                    next_attempt = Instant::now() + after;
                }
            }
            self.publish(true);
        }
        self.shared.stats.set_state(ConnState::Disconnected);
        self.publish(true);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ReaderConfig {
        let mut c = ReaderConfig::new("ws://127.0.0.1:1", "1");
        c.backoff = BackoffPolicy::new(Duration::from_millis(100), Duration::from_secs(10), 0.0)
            .expect("valid policy");
        c.cool_off_429 = Duration::from_secs(60);
        c.back_off_805 = Duration::from_secs(30);
        c
    }

    fn retry(ms: u64, reload_token: bool) -> Plan {
        Plan::Retry { after: Duration::from_millis(ms), reload_token }
    }

    #[test]
    fn reconnect_plan_follows_the_disconnect_table() {
        use DisconnectReason as R;
        let cases = [
            (Ending::Stopped, Plan::Stop),
            (Ending::Lost, retry(100, false)),
            (Ending::ConnectFailed, retry(100, false)),
            (Ending::RateLimited, retry(60_000, false)),
            (Ending::Unauthorized, retry(100, true)),
            (Ending::Server(R::TooManyConnections), retry(30_000, false)),
            (Ending::Server(R::TokenExpired), retry(100, true)),
            (Ending::Server(R::TokenInvalid), retry(100, true)),
            (Ending::Server(R::DataApiNotSubscribed), Plan::Fatal(R::DataApiNotSubscribed)),
            (Ending::Server(R::AuthenticationFailed), Plan::Fatal(R::AuthenticationFailed)),
            (Ending::Server(R::ClientIdInvalid), Plan::Fatal(R::ClientIdInvalid)),
            (Ending::Server(R::InternalError), retry(100, false)),
            (Ending::Server(R::InstrumentLimit), retry(100, false)),
            (Ending::Server(R::Other(999)), retry(100, false)),
        ];
        for (ending, expected) in cases {
            let mut b = Backoff::new(cfg().backoff);
            assert_eq!(plan(&ending, &cfg(), &mut b, 0.0), expected, "{ending:?}");
        }
    }

    #[test]
    fn repeated_failures_back_off_exponentially_and_cool_offs_stay_a_floor() {
        let c = cfg();
        let mut b = Backoff::new(c.backoff);
        let waits: Vec<Plan> = (0..4).map(|_| plan(&Ending::Lost, &c, &mut b, 0.0)).collect();
        assert_eq!(
            waits,
            [retry(100, false), retry(200, false), retry(400, false), retry(800, false)]
        );
        for _ in 0..20 {
            plan(&Ending::Lost, &c, &mut b, 0.0);
        }
        assert_eq!(plan(&Ending::Lost, &c, &mut b, 0.0), retry(10_000, false), "capped");
        assert_eq!(plan(&Ending::RateLimited, &c, &mut b, 0.0), retry(60_000, false));
    }

    #[test]
    fn config_validation_reports_every_problem() {
        assert!(cfg().validate().is_empty());
        let mut c = ReaderConfig::new("http://x", " ");
        c.poll_interval = Duration::ZERO;
        c.stall_timeout = Duration::ZERO;
        c.max_instruments = 5001;
        let errors = c.validate();
        assert_eq!(errors.len(), 5, "{errors:?}");
    }

    #[test]
    fn access_token_debug_is_redacted() {
        assert_eq!(format!("{:?}", AccessToken::new("eyJsecret")), "AccessToken(***)");
    }
}
