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
//!
//! Liveness: the reader beats at least every `beat_every` while reading (the socket read
//! timeout is `min(poll_interval, beat_every)`), handshaking, waiting and blocked on a position
//! tick, and returns within one slice of a stop. Two calls can block longer without a beat: the
//! TCP connect (up to `connect_timeout`) and a socket write (up to `write_timeout`); the
//! supervisor's heartbeat limit for this worker must exceed both.

mod config;
mod connect;
mod health;
mod policy;
mod stats;
mod token;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError, select};
use tungstenite::Message;

pub use config::ReaderConfig;
pub use connect::{ConnectError, install_crypto_provider};
pub use policy::{Ending, Plan, plan};
pub use stats::{ConnState, FeedStats};
pub use token::{AccessToken, TokenSource};

use crate::domain::{Clock, InstrumentKey, Tick};
use crate::feed::codec::{DisconnectReason, Packet};
use crate::feed::splitter::Packets;
use crate::feed::subscribe::{subscribe_messages, unsubscribe_messages};
use crate::feed::subscriptions::{SubscriptionSet, Tracked};
use crate::feed::tick_cache::TickCache;
use crate::feed::url::{redacted_feed_url, scrub};
use crate::ops::health::HealthBoard;
use crate::runtime::backoff::Backoff;
use crate::runtime::{Worker, WorkerCtx};
use connect::{FeedSocket, Opened, Timeouts};
use health::HealthPublisher;

/// The health board component name.
pub const HEALTH_COMPONENT: &str = "feed";

/// What the `on_fatal` hook is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedFatal {
    pub reason: DisconnectReason,
    /// Instruments with open positions when the feed stopped.
    pub open_positions: usize,
}

/// Called once when the feed stops for good (806/808/810).
pub type FatalHook = Arc<dyn Fn(&FeedFatal) + Send + Sync>;

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
    health: HealthPublisher,
    receiver_gone_logged: bool,
}

impl FeedReader {
    pub fn new(cfg: ReaderConfig, shared: ReaderShared) -> FeedReader {
        FeedReader {
            backoff: Backoff::new(cfg.backoff),
            health: HealthPublisher::new(&cfg, &shared),
            tracked: shared.subscriptions.snapshot(),
            rng: fastrand::Rng::new(),
            token: None,
            receiver_gone_logged: false,
            cfg,
            shared,
        }
    }

    fn redacted_url(&self) -> String {
        redacted_feed_url(&self.cfg.url)
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
        let client_id = self.cfg.client_id.expose();
        connect::open(&self.cfg.url, token.expose(), client_id, tls, timeouts, ctx).map_err(|e| {
            match e {
                // Belt and braces: nothing upstream should echo the token or the client id, but
                // scrub anyway.
                ConnectError::Handshake(m) => {
                    ConnectError::Handshake(scrub(&scrub(&m, token.expose()), client_id))
                }
                other => other,
            }
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
                // The error first: whoever sees the counter move can read why.
                stats.set_last_error(e.to_string());
                stats.disconnects.with_label_values(&[cause]).inc();
                ending
            }
        }
    }

    fn session(&mut self, ctx: &WorkerCtx, opened: Opened) -> Ending {
        let Opened { mut ws, tcp } = opened;
        let poll = self.cfg.poll_interval.min(ctx.beat_every());
        let _ = tcp.set_read_timeout(Some(poll));
        // Busy polling: reads return at once (WouldBlock) when no frame waits, and the loop
        // goes round again instead of sleeping in the kernel.
        let spinning = self.cfg.waiting.spins();
        if spinning && let Err(e) = tcp.set_nonblocking(true) {
            log::warn!(target: "feed", "cannot make the feed socket non-blocking ({e}); reading it blocking");
        }
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
        // The one clock read of each round of the loop (after the socket read returns): the
        // frame's arrival, the heartbeat, the health refresh and the stall check all use it.
        let mut now = started;
        let mut data_seen = false;
        let mut backoff_reset = false;
        let mut subscribed: BTreeSet<InstrumentKey> = BTreeSet::new();
        let mut synced_version = None;
        let ending = loop {
            ctx.beat_at(now);
            if ctx.should_stop() {
                break Ending::Stopped;
            }
            self.refresh_tracked();
            if synced_version != Some(self.tracked.version) {
                // Subscription messages are written blocking: a full socket buffer must not
                // turn into a lost subscription.
                if spinning {
                    let _ = tcp.set_nonblocking(false);
                }
                let synced = self.sync(&mut ws, &mut subscribed);
                if spinning {
                    let _ = tcp.set_nonblocking(true);
                }
                if let Err(e) = synced {
                    log::warn!(target: "feed", "subscribing failed, reconnecting: {e}");
                    break self.lost("write_failed", e.to_string());
                }
                synced_version = Some(self.tracked.version);
            }
            self.publish_at(false, now);
            let read = ws.read();
            now = Instant::now();
            match read {
                Ok(Message::Binary(data)) => {
                    crate::runtime::hops::stamp_at(crate::runtime::hops::Hop::SocketRead, now);
                    last_frame = now;
                    stats.frame_seen_at(now);
                    data_seen = true;
                    crate::runtime::failpoint::hit("tick_reader.message");
                    match self.on_message(ctx, &data, now) {
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
                    last_frame = now;
                    stats.frame_seen_at(now);
                }
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    let silent = now.saturating_duration_since(last_frame);
                    if silent >= self.cfg.stall_timeout {
                        log::warn!(target: "feed", "no frame or ping for {silent:?}, reconnecting");
                        break self.lost("stall", format!("no frame or ping for {silent:?}"));
                    }
                    self.cfg.waiting.pause();
                }
                Err(e) => {
                    log::warn!(target: "feed", "feed socket failed ({e}), reconnecting");
                    break self.lost("transport", e.to_string());
                }
            }
            if !backoff_reset
                && data_seen
                && now.saturating_duration_since(started) >= self.cfg.healthy_after
            {
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
        self.shared.stats.set_last_error(error);
        self.shared.stats.disconnects.with_label_values(&[cause]).inc();
        Ending::Lost
    }

    fn server_disconnect(&self, reason: DisconnectReason) -> Ending {
        let stats = &self.shared.stats;
        stats.set_last_error(format!("server disconnect {reason}"));
        stats.disconnects.with_label_values(&[&reason.code().to_string()]).inc();
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

    /// One frame, `arrived` when the socket read returned: every packet in it carries the
    /// same arrival (the wall clock is read once, the monotonic reading is `arrived`).
    fn on_message(&mut self, ctx: &WorkerCtx, data: &[u8], arrived: Instant) -> Flow {
        // A position opened while the reader slept in `read()` counts from this frame on (one
        // atomic load): its first tick goes to the exit engine at once, not through the exit
        // engine's catch-up from the cache on its next clock step.
        self.refresh_tracked();
        let received_at = self.shared.clock.now();
        let received_mono = self.shared.clock.mono_at(arrived);
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
                    match self.shared.cache.apply_at(&packet, received_at, received_mono) {
                        Ok(Some(tick)) => {
                            self.shared.stats.ticks.inc();
                            if self.tracked.is_position(&tick.instrument) {
                                crate::runtime::hops::stamp(crate::runtime::hops::Hop::Decoded);
                                if !self.deliver(ctx, tick) {
                                    return Flow::Stopped;
                                }
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

    /// Refreshes health and gauges (at most every `health_every` unless `force`).
    fn publish(&mut self, force: bool) {
        self.publish_at(force, Instant::now());
    }

    /// [`FeedReader::publish`] with the caller's reading of the clock.
    fn publish_at(&mut self, force: bool, now: Instant) {
        self.refresh_tracked();
        self.health.publish(force, now, &self.shared, &self.tracked);
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
        crate::runtime::hops::mark_thread(crate::runtime::hops::HotThread::Reader);
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
                    let cooling = matches!(
                        ending,
                        Ending::RateLimited | Ending::Server(DisconnectReason::TooManyConnections)
                    );
                    let state =
                        if cooling { ConnState::CoolingOff } else { ConnState::Disconnected };
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
