//! The order-update socket client (spec dhan-v2 §3): a supervised worker that connects to
//! `wss://api-order-update.dhan.co` (or the simulator's `ws://`), sends the MsgCode-42 login
//! right after the upgrade, and turns `order_alert` messages into [`OrderUpdateEvent`]s on a
//! channel. It reconnects with exponential backoff, jitter and a cap; reads with a short
//! timeout so that it beats its heartbeat and notices a stop promptly; treats a reset right
//! after login as a probable token problem and reloads the credentials; and reports its state
//! to the health board (component `order_updates`) and to metrics.
//!
//! Everything that must outlive a worker panic (the event sender, the recent-updates store,
//! metric handles, counters) lives in [`OrderUpdateShared`], created once and captured by the
//! supervisor's factory: `move || OrderUpdateWorker::new(shared.clone())`.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{SendTimeoutError, Sender};
use parking_lot::Mutex;
use prometheus::IntCounter;
use tungstenite::handshake::HandshakeError;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use super::credentials::CredentialSource;
use super::model::{FrameItem, OrderUpdate, parse_frame};
use crate::domain::OrderId;
use crate::ops::health::{ComponentHealth, HealthBoard, Status};
use crate::ops::metrics::{Metrics, StateGauge};
use crate::runtime::backoff::BackoffPolicy;
use crate::runtime::{Worker, WorkerCtx};

/// Dhan's order-update socket.
pub const DHAN_ORDER_UPDATE_URL: &str = "wss://api-order-update.dhan.co";

/// The health-board component name.
pub const HEALTH_COMPONENT: &str = "order_updates";

#[derive(Clone, Debug, PartialEq)]
pub struct OrderUpdateConfig {
    pub url: String,
    pub connect_timeout: Duration,
    /// Each read waits at most this long, so the worker beats and checks for a stop; keep it
    /// at or below the worker's `beat_every`.
    pub read_timeout: Duration,
    /// No frame (data, ping or pong) for this long: the connection is dead (spec §3.1: assume
    /// the feed's 40 s).
    pub idle_timeout: Duration,
    /// Our own pings, so that a quiet but healthy socket still shows frames.
    pub ping_every: Duration,
    pub backoff: BackoffPolicy,
    /// A connection that lived this long resets the backoff to its first step.
    pub stable_after: Duration,
    /// A connection that ends this soon after the login, having received nothing, is taken as
    /// a token problem (Dhan resets ~10 ms after an invalid login).
    pub suspect_token_within: Duration,
}

impl OrderUpdateConfig {
    pub fn new(url: impl Into<String>) -> OrderUpdateConfig {
        OrderUpdateConfig {
            url: url.into(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(40),
            ping_every: Duration::from_secs(10),
            backoff: BackoffPolicy::default(),
            stable_after: Duration::from_secs(30),
            suspect_token_within: Duration::from_secs(2),
        }
    }

    pub fn dhan() -> OrderUpdateConfig {
        OrderUpdateConfig::new(DHAN_ORDER_UPDATE_URL)
    }
}

/// What the worker tells its consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderUpdateEvent {
    /// Logged in. Updates missed while disconnected are not replayed: reconcile against the
    /// order book after every (re)connect.
    Connected,
    Disconnected {
        reason: String,
        token_suspect: bool,
    },
    Update(Box<OrderUpdate>),
}

/// The latest update per correlation id and per order id, as the stream saw them: what the
/// placement resolver consults. Bounded; the oldest entries go first.
#[derive(Clone, Debug)]
pub struct RecentUpdates {
    inner: Arc<Mutex<RecentInner>>,
}

#[derive(Debug)]
struct RecentInner {
    by_cid: HashMap<String, OrderUpdate>,
    by_order: HashMap<OrderId, OrderUpdate>,
    arrival: VecDeque<OrderId>,
    capacity: usize,
}

impl Default for RecentUpdates {
    fn default() -> RecentUpdates {
        RecentUpdates::with_capacity(4096)
    }
}

impl RecentUpdates {
    pub fn with_capacity(capacity: usize) -> RecentUpdates {
        RecentUpdates {
            inner: Arc::new(Mutex::new(RecentInner {
                by_cid: HashMap::new(),
                by_order: HashMap::new(),
                arrival: VecDeque::new(),
                capacity: capacity.max(1),
            })),
        }
    }

    pub fn record(&self, u: &OrderUpdate) {
        let mut g = self.inner.lock();
        if g.by_order.insert(u.order_id.clone(), u.clone()).is_none() {
            g.arrival.push_back(u.order_id.clone());
        }
        if let Some(cid) = &u.correlation_id {
            g.by_cid.insert(cid.clone(), u.clone());
        }
        while g.arrival.len() > g.capacity {
            if let Some(old) = g.arrival.pop_front()
                && let Some(gone) = g.by_order.remove(&old)
                && let Some(cid) = gone.correlation_id
                && g.by_cid.get(&cid).is_some_and(|x| x.order_id == old)
            {
                g.by_cid.remove(&cid);
            }
        }
    }

    pub fn by_correlation_id(&self, cid: &str) -> Option<OrderUpdate> {
        self.inner.lock().by_cid.get(cid).cloned()
    }

    pub fn by_order_id(&self, id: &OrderId) -> Option<OrderUpdate> {
        self.inner.lock().by_order.get(id).cloned()
    }
}

/// The socket's state, for health and tests.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    Disconnected,
    Connecting,
    Connected,
}

impl ConnectionState {
    /// Every state's name, as the `state` label of `scalper_order_updates_state`.
    pub const NAMES: &'static [&'static str] = &["disconnected", "connecting", "connected"];

    pub const fn name(self) -> &'static str {
        match self {
            ConnectionState::Disconnected => "disconnected",
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
        }
    }
}

#[derive(Debug)]
struct SocketStatus {
    state: ConnectionState,
    /// Why the socket is not connected (empty while connected).
    reason: String,
    last_error: String,
}

/// The socket's counters and state gauge (create once per engine). They are the only record
/// of these figures: the `order_updates` health details are read from them, so `/health` and
/// `/metrics` always agree.
#[derive(Clone, Debug)]
pub struct OrderUpdateMetrics {
    state: StateGauge,
    connects: IntCounter,
    disconnects: IntCounter,
    updates: IntCounter,
    malformed: IntCounter,
}

impl OrderUpdateMetrics {
    pub fn new(m: &Metrics) -> OrderUpdateMetrics {
        OrderUpdateMetrics {
            state: m.state_gauge(
                "order_updates_state",
                "Order-update socket: 1 for the current state (disconnected, connecting, \
                 connected), 0 for the others",
                "state",
                ConnectionState::NAMES,
                ConnectionState::Disconnected.name(),
            ),
            connects: m.counter("order_updates_connects_total", "Order-update socket logins"),
            disconnects: m.counter("order_updates_disconnects_total", "Order-update socket losses"),
            updates: m.counter("order_updates_messages_total", "order_alert messages decoded"),
            malformed: m.counter(
                "order_updates_malformed_total",
                "order_alert messages that could not be decoded",
            ),
        }
    }

    /// The `order_updates` health details: the state and the same counters as the metrics.
    fn details(&self, state: ConnectionState, last_error: &str) -> serde_json::Value {
        serde_json::json!({
            "state": state.name(),
            "connects": self.connects.get(),
            "disconnects": self.disconnects.get(),
            "updates": self.updates.get(),
            "malformed": self.malformed.get(),
            "last_error": last_error,
        })
    }
}

/// Everything the worker needs that must survive a respawn. Cheap to clone.
#[derive(Clone)]
pub struct OrderUpdateShared {
    pub cfg: OrderUpdateConfig,
    pub credentials: Arc<dyn CredentialSource>,
    pub events: Sender<OrderUpdateEvent>,
    pub recent: RecentUpdates,
    pub health: HealthBoard,
    metrics: OrderUpdateMetrics,
    status: Arc<Mutex<SocketStatus>>,
    tls: Arc<rustls::ClientConfig>,
}

impl OrderUpdateShared {
    pub fn new(
        cfg: OrderUpdateConfig,
        credentials: Arc<dyn CredentialSource>,
        events: Sender<OrderUpdateEvent>,
        health: HealthBoard,
    ) -> anyhow::Result<OrderUpdateShared> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("building the TLS configuration for the order-update socket")?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(OrderUpdateShared {
            cfg,
            credentials,
            events,
            recent: RecentUpdates::default(),
            health,
            // Unregistered until `with_metrics` gives the engine's.
            metrics: OrderUpdateMetrics::new(&Metrics::new()),
            status: Arc::new(Mutex::new(SocketStatus {
                state: ConnectionState::Disconnected,
                reason: String::new(),
                last_error: String::new(),
            })),
            tls: Arc::new(tls),
        })
    }

    pub fn with_metrics(mut self, metrics: OrderUpdateMetrics) -> OrderUpdateShared {
        self.metrics = metrics;
        self
    }

    pub fn with_recent(mut self, recent: RecentUpdates) -> OrderUpdateShared {
        self.recent = recent;
        self
    }

    pub fn state(&self) -> ConnectionState {
        self.status.lock().state
    }

    /// How many times the socket has logged in since the process started.
    pub fn connects(&self) -> u64 {
        self.metrics.connects.get()
    }

    fn set_state(&self, state: ConnectionState, reason: &str) {
        {
            let mut s = self.status.lock();
            s.state = state;
            s.reason = reason.to_string();
            // The last loss or failure; "connecting" and "stopped" are not errors and would
            // hide it.
            if state == ConnectionState::Disconnected && !reason.is_empty() && reason != "stopped" {
                s.last_error = reason.to_string();
            }
            self.metrics.state.set(state.name());
        }
        self.publish_health();
    }

    /// Counts with `count`, then refreshes the health details, so that they show the count.
    fn count(&self, count: impl FnOnce(&OrderUpdateMetrics)) {
        count(&self.metrics);
        self.publish_health();
    }

    /// The `order_updates` component: its status from the state, its details from the
    /// counters (under the status lock, so two publications cannot land out of order with
    /// older figures last).
    fn publish_health(&self) {
        let s = self.status.lock();
        let status = match s.state {
            ConnectionState::Connected => Status::Ok,
            // Orders still work without the socket (the book is polled); it is not Down.
            _ => Status::Degraded,
        };
        let details = self.metrics.details(s.state, &s.last_error);
        self.health.set(
            HEALTH_COMPONENT,
            ComponentHealth::new(status, s.reason.clone()).with_details(details),
        );
    }
}

/// How one connection ended.
struct ConnectionEnd {
    reason: String,
    /// Logged in, then lost the connection soon after with nothing received.
    token_suspect: bool,
    lived: Duration,
    stopped: bool,
}

/// The worker. Fresh per spawn; holds only its backoff position.
pub struct OrderUpdateWorker {
    shared: OrderUpdateShared,
    attempt: u32,
}

impl OrderUpdateWorker {
    pub fn new(shared: OrderUpdateShared) -> OrderUpdateWorker {
        OrderUpdateWorker { shared, attempt: 0 }
    }

    fn connect(
        &self,
        ctx: &WorkerCtx,
    ) -> Result<(WebSocket<MaybeTlsStream<TcpStream>>, TcpStream), String> {
        let cfg = &self.shared.cfg;
        let uri: tungstenite::http::Uri =
            cfg.url.parse().map_err(|e| format!("bad order-update URL {:?}: {e}", cfg.url))?;
        let host =
            uri.host().ok_or_else(|| format!("order-update URL {:?} has no host", cfg.url))?;
        let tls = uri.scheme_str() == Some("wss");
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let addrs: Vec<_> = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("resolving {host}:{port}: {e}"))?
            .collect();
        let mut last = format!("{host}:{port} resolved to no address");
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, cfg.connect_timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = format!("connecting to {addr}: {e}"),
            }
        }
        let tcp = tcp.ok_or(last)?;
        let _ = tcp.set_nodelay(true);
        tcp.set_read_timeout(Some(cfg.read_timeout)).map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(cfg.connect_timeout)).map_err(|e| e.to_string())?;
        let handle = tcp.try_clone().map_err(|e| e.to_string())?;
        let connector = tls.then(|| tungstenite::Connector::Rustls(self.shared.tls.clone()));
        let deadline = Instant::now() + cfg.connect_timeout;
        let mut attempt =
            tungstenite::client_tls_with_config(cfg.url.as_str(), tcp, None, connector);
        loop {
            match attempt {
                Ok((ws, _response)) => return Ok((ws, handle)),
                Err(HandshakeError::Interrupted(mid)) => {
                    ctx.beat();
                    if Instant::now() > deadline || ctx.should_stop() {
                        return Err("WebSocket handshake timed out".into());
                    }
                    attempt = mid.handshake();
                }
                Err(HandshakeError::Failure(e)) => return Err(format!("WebSocket handshake: {e}")),
            }
        }
    }

    fn connection(&self, ctx: &WorkerCtx) -> ConnectionEnd {
        let started = Instant::now();
        let end = |reason: String, token_suspect: bool| ConnectionEnd {
            reason,
            token_suspect,
            lived: started.elapsed(),
            stopped: ctx.should_stop(),
        };
        let (mut ws, tcp) = match self.connect(ctx) {
            Ok(pair) => pair,
            Err(e) => return end(e, false),
        };
        let creds = self.shared.credentials.current();
        let login = serde_json::json!({
            "LoginReq": {"MsgCode": 42, "ClientId": creds.client_id, "Token": creds.access_token.expose()},
            "UserType": "SELF",
        });
        if let Err(e) = ws.send(Message::text(login.to_string())) {
            return end(format!("sending the login: {e}"), false);
        }
        drop(creds);
        let logged_in = Instant::now();
        self.shared.metrics.connects.inc();
        self.shared.set_state(ConnectionState::Connected, "");
        log::info!(target: "order_updates", "order-update socket connected to {}", self.shared.cfg.url);
        if !self.emit(ctx, OrderUpdateEvent::Connected) {
            return end("stopped".into(), false);
        }
        let mut received_anything = false;
        let mut last_frame = Instant::now();
        let mut last_ping = Instant::now();
        let suspect = |received: bool| {
            !received && logged_in.elapsed() <= self.shared.cfg.suspect_token_within
        };
        loop {
            ctx.beat();
            if ctx.should_stop() {
                let _ = ws.close(None);
                let _ = ws.flush();
                let _ = tcp.shutdown(std::net::Shutdown::Both);
                return end("stopped".into(), false);
            }
            match ws.read() {
                Ok(msg) => {
                    last_frame = Instant::now();
                    match msg {
                        Message::Text(text) => {
                            received_anything = true;
                            if !self.handle_text(ctx, text.as_str()) {
                                return end("stopped".into(), false);
                            }
                        }
                        Message::Close(frame) => {
                            let why = frame
                                .map(|f| format!("{} {}", f.code, f.reason))
                                .unwrap_or_default();
                            return end(
                                format!("closed by the server {why}").trim().to_string(),
                                suspect(received_anything),
                            );
                        }
                        Message::Binary(b) => {
                            received_anything = true;
                            log::debug!(target: "order_updates", "ignoring a {}-byte binary frame", b.len());
                        }
                        // Pings are answered by tungstenite on the next read or write.
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    }
                }
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
                {
                    if last_frame.elapsed() >= self.shared.cfg.idle_timeout {
                        return end(format!("no frame for {:?}", last_frame.elapsed()), false);
                    }
                    if last_ping.elapsed() >= self.shared.cfg.ping_every {
                        last_ping = Instant::now();
                        if let Err(e) = ws.send(Message::Ping(Default::default())) {
                            return end(format!("sending a ping: {e}"), suspect(received_anything));
                        }
                    }
                }
                Err(e) => return end(format!("{e}"), suspect(received_anything)),
            }
        }
    }

    /// Decodes a text frame and forwards its updates. `false` if stopped while forwarding.
    fn handle_text(&self, ctx: &WorkerCtx, text: &str) -> bool {
        for item in parse_frame(text) {
            match item {
                FrameItem::Update(u) => {
                    self.shared.recent.record(&u);
                    self.shared.count(|m| m.updates.inc());
                    log::debug!(target: "order_updates", "order {} {} traded {} avg {}",
                        u.order_id, u.status, u.traded_qty, u.avg_traded_price);
                    if !self.emit(ctx, OrderUpdateEvent::Update(u)) {
                        return false;
                    }
                }
                FrameItem::UnknownType(t) => {
                    log::info!(target: "order_updates", "ignoring an order-update message of type {t:?}")
                }
                FrameItem::Malformed(e) => {
                    self.shared.count(|m| m.malformed.inc());
                    log::warn!(target: "order_updates", "undecodable order update ({e}); the order book will show the truth")
                }
                FrameItem::Noise(t) => {
                    log::debug!(target: "order_updates", "ignoring non-message text {t:?}")
                }
            }
        }
        true
    }

    /// Sends an event, waiting for room while beating; `false` if stopped first.
    fn emit(&self, ctx: &WorkerCtx, mut ev: OrderUpdateEvent) -> bool {
        loop {
            match self.shared.events.send_timeout(ev, ctx.beat_every()) {
                Ok(()) => return true,
                Err(SendTimeoutError::Timeout(back)) => {
                    ctx.beat();
                    if ctx.should_stop() {
                        return false;
                    }
                    ev = back;
                }
                Err(SendTimeoutError::Disconnected(_)) => {
                    // Nobody listens any more (engine shutting down): keep the socket, drop the event.
                    return true;
                }
            }
        }
    }
}

impl Worker for OrderUpdateWorker {
    fn run(&mut self, ctx: &WorkerCtx) -> anyhow::Result<()> {
        loop {
            if ctx.should_stop() {
                self.shared.set_state(ConnectionState::Disconnected, "stopped");
                return Ok(());
            }
            self.shared.set_state(ConnectionState::Connecting, "connecting");
            let end = self.connection(ctx);
            if end.stopped {
                self.shared.set_state(ConnectionState::Disconnected, "stopped");
                return Ok(());
            }
            self.shared.count(|m| m.disconnects.inc());
            if end.token_suspect {
                log::warn!(target: "order_updates",
                    "order-update socket dropped {:?} after login with nothing received: the access token may be invalid or expired; reloading credentials",
                    end.lived);
                if let Err(e) = self.shared.credentials.reload() {
                    log::error!(target: "order_updates", "{e}");
                }
            }
            if end.lived >= self.shared.cfg.stable_after {
                self.attempt = 0;
            }
            let delay = self.shared.cfg.backoff.delay(self.attempt, fastrand::f64());
            self.attempt = self.attempt.saturating_add(1);
            log::warn!(target: "order_updates", "order-update socket lost ({}); reconnecting in {delay:?}", end.reason);
            self.shared.set_state(
                ConnectionState::Disconnected,
                &format!("{}; retry in {delay:?}", end.reason),
            );
            if !self.emit(
                ctx,
                OrderUpdateEvent::Disconnected {
                    reason: end.reason,
                    token_suspect: end.token_suspect,
                },
            ) {
                return Ok(());
            }
            if !ctx.sleep(delay) {
                self.shared.set_state(ConnectionState::Disconnected, "stopped");
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::model::OrderStatus;

    fn update(order: &str, cid: Option<&str>, status: OrderStatus) -> OrderUpdate {
        let mut data = serde_json::json!({"OrderNo": order, "Status": status.wire_upper()});
        if let Some(c) = cid {
            data["CorrelationId"] = c.into();
        }
        crate::broker::model::parse_order_alert(data.as_object().unwrap()).unwrap()
    }

    #[test]
    fn recent_updates_keep_the_latest_per_order_and_correlation_id() {
        let r = RecentUpdates::with_capacity(2);
        r.record(&update("1", Some("a"), OrderStatus::Transit));
        r.record(&update("1", Some("a"), OrderStatus::Traded));
        assert_eq!(r.by_correlation_id("a").unwrap().status, OrderStatus::Traded);
        r.record(&update("2", Some("b"), OrderStatus::Pending));
        r.record(&update("3", None, OrderStatus::Pending));
        assert!(r.by_correlation_id("a").is_none(), "the oldest order is evicted");
        assert!(r.by_order_id(&OrderId("1".into())).is_none());
        assert_eq!(r.by_correlation_id("b").unwrap().order_id, OrderId("2".into()));
    }
}
