//! The simulator's market-data half: a Dhan-compatible feed WebSocket server on loopback.
//!
//! Std `TcpListener`, one thread per connection (`connection`), one market thread that moves
//! prices (random walk on ₹0.05 ticks, a `ticks.csv` scenario, or only what a test sets) and
//! writes them into the shared [`PriceBoard`], so the broker half fills at the same prices.
//! Start it in-process with [`SimFeed::start`]; steer it and inject faults through
//! [`SimFeedControl`].
//!
//! Behaviour (spec dhan-v2 §1, §7 "Simulator"):
//! * the v2 URL is checked: `version=2` and `authType=2` (else 808), `clientId` (else 810), the
//!   token (an earlier token replaced by [`SimFeedControl::set_token`] → 807, any other → 809),
//!   and the data plan (806); a rejected client gets a code-50 packet, then the socket closes;
//! * subscribe/unsubscribe per mode: ticker → code 2, quote → code 4 (+ 5 for derivatives),
//!   full → code 8; prev close (6) on subscribe for `IDX_I` (or for all, by option), then a
//!   snapshot of the current price; one packet per message unless `packets_per_message` > 1;
//! * a ping every `ping_interval`, a client silent for `client_timeout` is dropped, client
//!   pings are answered;
//! * at most `max_connections_per_client` sockets per client id (the next one kicks the
//!   oldest with 805) and `max_instruments_per_connection` instruments per socket; a subscribe
//!   that would pass it, or a message listing more than 100 instruments, is answered with 804
//!   and the socket closes (Dhan's reaction is undocumented; 804 is its "instruments exceed
//!   limit" code). Other malformed requests are logged, counted and ignored, as are binary
//!   client frames (spec §1.11).

mod connection;
mod market;

/// One step of the random walk (for tests that replay the simulator's market).
pub use market::walk;

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

pub use market::{InstrumentState, TICK};

use crate::domain::{Clock, InstrumentKey, Paise, SystemClock};
use crate::sim::prices::PriceBoard;
use crate::sim::scenario::ScenarioRow;

/// How prices move.
#[derive(Clone, Debug)]
pub enum PriceSource {
    /// Only [`SimFeedControl::set_price`] moves prices.
    Manual,
    /// Every `interval`, each subscribed instrument moves one tick down, stays or moves one
    /// tick up with equal odds; seeded, so a run is repeatable.
    RandomWalk { seed: u64, interval: Duration },
    /// Replays rows in file order, starting when the first instrument is subscribed; LTT
    /// follows the rows' `ts`.
    Scenario { rows: Vec<ScenarioRow>, pace: Pace },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Pace {
    /// Wait between rows as long as their timestamps say.
    RealTime,
    /// No waiting.
    AsFastAsPossible,
}

/// Faults switched on from the start (all can also be switched at run time).
#[derive(Clone, Debug, Default)]
pub struct FaultConfig {
    /// Drop every connection (no close frame) once it has sent this many binary messages.
    pub drop_after_messages: Option<u64>,
    /// Drop all connections open at this time after start, once.
    pub drop_after: Option<Duration>,
    /// Send every connection open at this time after start a code-50 packet with this reason,
    /// once.
    pub disconnect_after: Option<(Duration, u16)>,
    /// Send every connection open at this time after start one malformed packet, once.
    pub malformed_after: Option<Duration>,
    /// Connected but silent: no data, no pings, client frames unread.
    pub silent: bool,
    /// Refuse this many handshakes with HTTP 429 before accepting again.
    pub refuse_handshakes: u32,
}

/// The simulator feed's settings.
#[derive(Clone, Debug)]
pub struct SimFeedConfig {
    /// Where to listen; port 0 picks a free one.
    pub bind: SocketAddr,
    pub client_id: String,
    /// The access token accepted at first.
    pub token: String,
    /// `false` answers every client with 806 (data APIs not subscribed).
    pub data_plan_active: bool,
    pub ping_interval: Duration,
    pub client_timeout: Duration,
    pub max_connections_per_client: usize,
    pub max_instruments_per_connection: usize,
    /// Packets stacked into one WebSocket message (1 = one packet per message, as the
    /// official SDK expects).
    pub packets_per_message: usize,
    /// Send prev close (code 6) on subscribe for every segment, not only `IDX_I`.
    pub prev_close_for_all: bool,
    /// Send the current price right after a subscribe.
    pub snapshot_on_subscribe: bool,
    pub prices: PriceSource,
    /// Starting price of an instrument the price board does not know.
    pub default_price: Paise,
    pub faults: FaultConfig,
}

impl SimFeedConfig {
    /// Loopback on a free port, Dhan's documented limits and intervals, manual prices.
    pub fn new(client_id: &str, token: &str) -> SimFeedConfig {
        SimFeedConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            client_id: client_id.to_string(),
            token: token.to_string(),
            data_plan_active: true,
            ping_interval: Duration::from_secs(10),
            client_timeout: Duration::from_secs(40),
            max_connections_per_client: 5,
            max_instruments_per_connection: crate::feed::subscribe::MAX_INSTRUMENTS_PER_CONNECTION,
            packets_per_message: 1,
            prev_close_for_all: false,
            snapshot_on_subscribe: true,
            prices: PriceSource::Manual,
            default_price: Paise(10_000),
            faults: FaultConfig::default(),
        }
    }
}

/// What happened to one handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeOutcome {
    Accepted,
    /// HTTP 429 at the upgrade.
    Refused,
    /// Upgraded, then a code-50 packet with this reason.
    Rejected(u16),
    /// Not a WebSocket upgrade or the client went away.
    Failed,
}

/// One connection attempt as the simulator saw it (a test record: the token here is the
/// simulator's own fake secret).
#[derive(Clone, Debug)]
pub struct HandshakeRecord {
    /// When the TCP connection arrived.
    pub at: Instant,
    pub client_id: String,
    pub token: String,
    pub outcome: HandshakeOutcome,
}

/// Counters for tests and the `sim` command.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SimFeedStats {
    pub connections: usize,
    pub handshakes: u64,
    pub messages_sent: u64,
    pub pings_sent: u64,
    pub bad_requests: u64,
}

/// What the hub tells a connection thread.
#[derive(Clone, Debug)]
enum ConnEvent {
    Update { key: InstrumentKey, state: InstrumentState, ltt: u32 },
    Disconnect(u16),
    Raw(Vec<u8>),
    Firehose(Arc<Firehose>),
    Drop,
}

/// A burst for throughput measurements: every message (one WebSocket binary message each, of
/// one packet or several stacked) `rounds` times over, written as fast as the client's socket
/// takes them.
#[derive(Debug)]
pub struct Firehose {
    pub messages: Vec<tungstenite::Bytes>,
    pub rounds: u64,
}

impl Firehose {
    /// Packets in the whole burst.
    pub fn packets(&self) -> u64 {
        let per_round: usize =
            self.messages.iter().map(|m| crate::feed::splitter::Packets::new(m).count()).sum();
        per_round as u64 * self.rounds
    }
}

struct ConnEntry {
    id: u64,
    client_id: String,
    tx: Sender<ConnEvent>,
}

struct Tokens {
    current: String,
    expired: Vec<String>,
}

/// State shared by the acceptor, the market thread, the connections and the control handle.
struct Hub {
    cfg: SimFeedConfig,
    board: PriceBoard,
    market: Mutex<HashMap<InstrumentKey, InstrumentState>>,
    conns: Mutex<Vec<ConnEntry>>,
    subscribed: Mutex<HashMap<InstrumentKey, usize>>,
    tokens: Mutex<Tokens>,
    handshakes: Mutex<Vec<HandshakeRecord>>,
    silent: AtomicBool,
    data_plan_active: AtomicBool,
    drop_after_messages: AtomicU64,
    refuse_handshakes: AtomicU32,
    next_id: AtomicU64,
    messages_sent: AtomicU64,
    pings_sent: AtomicU64,
    bad_requests: AtomicU64,
    /// When set, the instant each binary message starts to be written goes to `writes`.
    record_writes: AtomicBool,
    writes: Mutex<Vec<Instant>>,
    shutdown: AtomicBool,
    stop_tx: Mutex<Option<Sender<()>>>,
    stop_rx: Receiver<()>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

const NO_LIMIT: u64 = u64::MAX;

impl Hub {
    fn now_ltt(&self) -> u32 {
        SystemClock.now().to_feed_ltt()
    }

    /// Sleeps up to `d`; `false` once the simulator is shutting down.
    fn sleep(&self, d: Duration) -> bool {
        let _ = self.stop_rx.recv_timeout(d);
        !self.shutdown.load(Ordering::Acquire)
    }

    /// The instrument's state, created from the price board (or the default price) on first use.
    fn state(&self, key: InstrumentKey) -> InstrumentState {
        if let Some(s) = self.market.lock().get(&key) {
            return *s;
        }
        let price = self.board.get(key).map_or(self.cfg.default_price, |(p, _)| p);
        let mut market = self.market.lock();
        let state = *market.entry(key).or_insert_with(|| InstrumentState::new(price));
        if self.board.get(key).is_none() {
            self.board.set(key, state.ltp, SystemClock.now());
        }
        state
    }

    /// A trade at `price`: updates the board and the statistics, then streams it.
    fn publish(&self, key: InstrumentKey, price: Paise, ltt: u32) {
        self.board.set(key, price, SystemClock.now());
        let state = {
            let mut market = self.market.lock();
            let s = market.entry(key).or_insert_with(|| InstrumentState::new(price));
            s.trade(price, 75);
            *s
        };
        self.broadcast(ConnEvent::Update { key, state, ltt });
    }

    fn broadcast(&self, event: ConnEvent) {
        // A silent server sends nothing: updates made meanwhile are lost, as from a hung feed.
        if matches!(event, ConnEvent::Update { .. }) && self.silent.load(Ordering::Acquire) {
            return;
        }
        for c in self.conns.lock().iter() {
            let _ = c.tx.send(event.clone());
        }
    }

    fn subscribed_instruments(&self) -> Vec<InstrumentKey> {
        let mut v: Vec<InstrumentKey> = self.subscribed.lock().keys().copied().collect();
        v.sort();
        v
    }

    fn add_subscriber(&self, key: InstrumentKey) {
        *self.subscribed.lock().entry(key).or_insert(0) += 1;
    }

    fn remove_subscriber(&self, key: InstrumentKey) {
        let mut subs = self.subscribed.lock();
        if let Some(n) = subs.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                subs.remove(&key);
            }
        }
    }

    /// Registers a connection; kicks the oldest of the same client with 805 when over the limit.
    fn register(&self, client_id: &str) -> (u64, Receiver<ConnEvent>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut conns = self.conns.lock();
        let same = conns.iter().filter(|c| c.client_id == client_id).count();
        if same >= self.cfg.max_connections_per_client
            && let Some(pos) = conns.iter().position(|c| c.client_id == client_id)
        {
            let oldest = conns.remove(pos);
            // The client id is the account's secret identifier: not logged.
            log::info!(target: "sim", "feed: a client opened one socket too many; kicking its oldest (805)");
            let _ = oldest.tx.send(ConnEvent::Disconnect(805));
        }
        conns.push(ConnEntry { id, client_id: client_id.to_string(), tx });
        (id, rx)
    }

    fn deregister(&self, id: u64) {
        self.conns.lock().retain(|c| c.id != id);
    }

    fn record(&self, at: Instant, client_id: &str, token: &str, outcome: HandshakeOutcome) {
        self.handshakes.lock().push(HandshakeRecord {
            at,
            client_id: client_id.to_string(),
            token: token.to_string(),
            outcome,
        });
    }

    /// Spec §1.8 reason for these credentials, or `None` if they are good.
    fn check_credentials(&self, params: &[(String, String)]) -> Option<u16> {
        let get = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        if get("version") != Some("2") || get("authType") != Some("2") {
            return Some(808);
        }
        if get("clientId") != Some(self.cfg.client_id.as_str()) {
            return Some(810);
        }
        let tokens = self.tokens.lock();
        match get("token") {
            None | Some("") => return Some(808),
            Some(t) if t == tokens.current => {}
            Some(t) if tokens.expired.iter().any(|e| e == t) => return Some(807),
            Some(_) => return Some(809),
        }
        (!self.data_plan_active.load(Ordering::Acquire)).then_some(806)
    }
}

/// A running simulator feed. Dropping it shuts it down.
pub struct SimFeed {
    addr: SocketAddr,
    hub: Arc<Hub>,
    acceptor: Option<JoinHandle<()>>,
    market: Option<JoinHandle<()>>,
}

impl SimFeed {
    /// Binds `cfg.bind` and starts serving.
    pub fn start(cfg: SimFeedConfig, prices: PriceBoard) -> io::Result<SimFeed> {
        let listener = TcpListener::bind(cfg.bind)?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let hub = Arc::new(Hub {
            board: prices,
            market: Mutex::new(HashMap::new()),
            conns: Mutex::new(Vec::new()),
            subscribed: Mutex::new(HashMap::new()),
            tokens: Mutex::new(Tokens { current: cfg.token.clone(), expired: Vec::new() }),
            handshakes: Mutex::new(Vec::new()),
            silent: AtomicBool::new(cfg.faults.silent),
            data_plan_active: AtomicBool::new(cfg.data_plan_active),
            drop_after_messages: AtomicU64::new(cfg.faults.drop_after_messages.unwrap_or(NO_LIMIT)),
            refuse_handshakes: AtomicU32::new(cfg.faults.refuse_handshakes),
            next_id: AtomicU64::new(1),
            messages_sent: AtomicU64::new(0),
            pings_sent: AtomicU64::new(0),
            bad_requests: AtomicU64::new(0),
            record_writes: AtomicBool::new(false),
            writes: Mutex::new(Vec::new()),
            shutdown: AtomicBool::new(false),
            stop_tx: Mutex::new(Some(stop_tx)),
            stop_rx,
            threads: Mutex::new(Vec::new()),
            cfg,
        });
        let acceptor = {
            let hub = hub.clone();
            std::thread::Builder::new()
                .name("sim-feed-accept".into())
                .spawn(move || accept_loop(&hub, listener))?
        };
        let market = {
            let hub = hub.clone();
            std::thread::Builder::new()
                .name("sim-feed-market".into())
                .spawn(move || market::run(&hub))?
        };
        // Debug only: the engine (or `scalper sim`'s JSON line) announces the address once.
        log::debug!(target: "sim", "feed simulator listening on ws://{addr}");
        Ok(SimFeed { addr, hub, acceptor: Some(acceptor), market: Some(market) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT`, the base URL a reader connects to.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn control(&self) -> SimFeedControl {
        SimFeedControl(self.hub.clone())
    }

    /// Stops accepting, closes every connection and joins all threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.hub.shutdown.swap(true, Ordering::AcqRel) {
            return;
        }
        self.hub.stop_tx.lock().take();
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for handle in [self.acceptor.take(), self.market.take()].into_iter().flatten() {
            let _ = handle.join();
        }
        let threads = std::mem::take(&mut *self.hub.threads.lock());
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for SimFeed {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(hub: &Arc<Hub>, listener: TcpListener) {
    for stream in listener.incoming() {
        if hub.shutdown.load(Ordering::Acquire) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let conn_hub = hub.clone();
        let spawned = std::thread::Builder::new()
            .name("sim-feed-conn".into())
            .spawn(move || connection::serve(&conn_hub, stream));
        match spawned {
            Ok(handle) => {
                let mut threads = hub.threads.lock();
                threads.retain(|t| !t.is_finished());
                threads.push(handle);
            }
            Err(e) => log::error!(target: "sim", "feed: cannot start a connection thread: {e}"),
        }
    }
}

/// A ticker whose segment byte is 6 (unused): framed correctly, refused by any decoder.
fn malformed_packet() -> Vec<u8> {
    let mut bytes = crate::feed::vectors::TICKER.to_vec();
    bytes[3] = 6;
    bytes
}

/// Steers a running simulator feed; cheap to clone.
#[derive(Clone)]
pub struct SimFeedControl(Arc<Hub>);

impl SimFeedControl {
    /// Trades `key` at `price` now: the price board, the day statistics and every subscriber.
    pub fn set_price(&self, key: InstrumentKey, price: Paise) {
        self.0.publish(key, price, self.0.now_ltt());
    }

    /// The current simulated price of `key`.
    pub fn price(&self, key: InstrumentKey) -> Paise {
        self.0.state(key).ltp
    }

    /// Accepts `token` from now on; the previous token is answered with 807 (expired).
    pub fn set_token(&self, token: &str) {
        let mut t = self.0.tokens.lock();
        let old = std::mem::replace(&mut t.current, token.to_string());
        t.expired.push(old);
    }

    /// Switches the account's data plan: inactive answers new clients with 806.
    pub fn set_data_plan_active(&self, active: bool) {
        self.0.data_plan_active.store(active, Ordering::Release);
    }

    /// Every open connection receives a code-50 packet with `reason`, then is closed.
    pub fn send_disconnect(&self, reason: u16) {
        self.0.broadcast(ConnEvent::Disconnect(reason));
    }

    /// Every open connection is dropped without a close frame.
    pub fn drop_connections(&self) {
        self.0.broadcast(ConnEvent::Drop);
    }

    /// Drop each connection once it has sent `n` binary messages (`None`: never).
    pub fn set_drop_after_messages(&self, n: Option<u64>) {
        self.0.drop_after_messages.store(n.unwrap_or(NO_LIMIT), Ordering::Release);
    }

    /// Connected but silent: no data, no pings, client frames unread.
    pub fn set_silent(&self, silent: bool) {
        self.0.silent.store(silent, Ordering::Release);
    }

    /// Every open connection receives one malformed packet: a ticker whose segment byte is 6
    /// (unused), so the price never reaches a cache.
    pub fn send_malformed(&self) {
        self.send_raw(malformed_packet());
    }

    /// Every open connection receives these bytes as one binary message.
    pub fn send_raw(&self, bytes: Vec<u8>) {
        self.0.broadcast(ConnEvent::Raw(bytes));
    }

    /// Every open connection streams the burst, as fast as its client reads.
    pub fn firehose(&self, burst: Firehose) {
        self.0.broadcast(ConnEvent::Firehose(Arc::new(burst)));
    }

    /// Refuse the next `n` handshakes with HTTP 429.
    pub fn refuse_next_handshakes(&self, n: u32) {
        self.0.refuse_handshakes.store(n, Ordering::Release);
    }

    /// Records (or stops recording) the instant each binary message starts to be written to a
    /// client's socket, for latency measurements from the wire.
    pub fn record_writes(&self, on: bool) {
        self.0.record_writes.store(on, Ordering::Release);
    }

    /// The write instants recorded since the last call, oldest first.
    pub fn take_writes(&self) -> Vec<Instant> {
        std::mem::take(&mut *self.0.writes.lock())
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.0.conns.lock().len()
    }

    /// Instruments subscribed on any open connection.
    pub fn subscribed(&self) -> BTreeSet<InstrumentKey> {
        self.0.subscribed.lock().keys().copied().collect()
    }

    /// Every handshake so far, by the time its TCP connection arrived.
    pub fn handshakes(&self) -> Vec<HandshakeRecord> {
        let mut v = self.0.handshakes.lock().clone();
        v.sort_by_key(|h| h.at);
        v
    }

    pub fn stats(&self) -> SimFeedStats {
        SimFeedStats {
            connections: self.connections(),
            handshakes: self.0.handshakes.lock().len() as u64,
            messages_sent: self.0.messages_sent.load(Ordering::Relaxed),
            pings_sent: self.0.pings_sent.load(Ordering::Relaxed),
            bad_requests: self.0.bad_requests.load(Ordering::Relaxed),
        }
    }
}
