//! The simulator's broker half: Dhan's REST API and order-update socket on loopback, with an
//! order book that follows Dhan's lifecycle and fills market orders at the [`PriceBoard`]'s
//! prices. Tests and the local "live against the simulator" mode start it with
//! [`SimBroker::start`], point the real client at [`SimBroker::base_url`] and
//! [`SimBroker::order_socket_url`], steer it with [`SimBroker::faults`], inspect what it
//! received, and stop it with [`SimBroker::shutdown`].
//!
//! Threads: the REST server (one per connection), the order-update server (one per
//! connection), and the "exchange" that moves orders through their lifecycle.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use super::http::{Handler, HttpServer};
use super::limits::SimLimits;
use super::order_socket::{OrderBus, OrderSocketServer, SocketCtx};
use super::orders::{Book, BookConfig, SimNow, SimOrder, SimPosition, SimTrade, Source};
use super::prices::PriceBoard;
use super::rest_api::{ReceivedRequest, SimState};
use crate::broker::model::ProductType;
use crate::broker::ratelimit::ApiClass;
use crate::domain::{Clock, InstrumentKey, Paise, SystemClock};
use crate::instruments::Instruments;

pub use super::faults::{Fault, FaultConfig, Faults, Refusal, RefuseOrders, Scope};
pub use super::http::{KeepAlive, OnIdle};
pub use super::orders::NewOrder;

#[derive(Clone)]
pub struct SimBrokerConfig {
    pub client_id: String,
    pub access_token: String,
    /// Address to bind both servers to (loopback by default).
    pub bind: IpAddr,
    /// 0 picks a free port.
    pub rest_port: u16,
    pub order_socket_port: u16,
    /// How long a new order stays in TRANSIT (spec: ≈ 100–500 ms).
    pub transit: Duration,
    /// From PENDING to the first fill of a marketable order.
    pub fill_delay: Duration,
    /// Fill marketable orders in this many parts (PART_TRADED in between).
    pub fill_parts: u32,
    pub fill_interval: Duration,
    pub sod_limit: Paise,
    /// Answer 429 / DH-904 over the limits of spec §5.
    pub enforce_rate_limits: bool,
    /// `Status` on the order-update socket in upper case instead of the sample's title case.
    pub upper_case_status: bool,
    /// Answer `GET /orders/{id}` with an array of one instead of a bare object.
    pub order_by_id_as_array: bool,
    pub faults: FaultConfig,
    /// The REST server's keep-alive idle timeout (`None`: connections stay open).
    pub keep_alive: Option<KeepAlive>,
    /// Server pings on the order-update socket.
    pub ping_every: Duration,
    /// The exchange thread's step.
    pub tick: Duration,
    /// Wall clock for the times the books show.
    pub clock: Arc<dyn Clock>,
    /// The instrument master the simulated exchange enforces (lots, freeze, tick, band) and
    /// serves at `GET /v2/instrument/{exchangeSegment}`; `None`: no exchange limits.
    pub instruments: Option<Arc<Instruments>>,
}

impl std::fmt::Debug for SimBrokerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBrokerConfig")
            .field("client_id", &self.client_id)
            .field("transit", &self.transit)
            .field("fill_parts", &self.fill_parts)
            .field("enforce_rate_limits", &self.enforce_rate_limits)
            .field("upper_case_status", &self.upper_case_status)
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl Default for SimBrokerConfig {
    fn default() -> SimBrokerConfig {
        SimBrokerConfig {
            client_id: "1000000001".into(),
            access_token: "sim-access-token".into(),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            rest_port: 0,
            order_socket_port: 0,
            transit: Duration::from_millis(200),
            fill_delay: Duration::ZERO,
            fill_parts: 1,
            fill_interval: Duration::from_millis(50),
            // ₹10 lakh
            sod_limit: Paise(100_000_000),
            enforce_rate_limits: true,
            upper_case_status: false,
            order_by_id_as_array: false,
            faults: FaultConfig::default(),
            keep_alive: None,
            ping_every: Duration::from_secs(10),
            tick: Duration::from_millis(5),
            clock: Arc::new(SystemClock),
            instruments: None,
        }
    }
}

/// A running simulated broker, and the handle to control and inspect it.
pub struct SimBroker {
    state: Arc<SimState>,
    socket_ctx: Arc<SocketCtx>,
    rest: HttpServer,
    socket: OrderSocketServer,
    exchange: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    ticks: Arc<AtomicU64>,
    started: Instant,
}

impl SimBroker {
    pub fn start(cfg: SimBrokerConfig, prices: PriceBoard) -> io::Result<SimBroker> {
        let faults = Faults::new(cfg.faults.clone());
        let token = Arc::new(RwLock::new(cfg.access_token.clone()));
        let bus =
            Arc::new(OrderBus::new(cfg.client_id.clone(), cfg.upper_case_status, faults.clone()));
        let (nudge_tx, nudge_rx) = crossbeam_channel::bounded(1);
        let state = Arc::new(SimState {
            client_id: cfg.client_id.clone(),
            token: token.clone(),
            order_by_id_as_array: cfg.order_by_id_as_array,
            book: Mutex::new(Book::new(BookConfig {
                client_id: cfg.client_id.clone(),
                transit: cfg.transit,
                fill_delay: cfg.fill_delay,
                fill_parts: cfg.fill_parts,
                fill_interval: cfg.fill_interval,
                sod_limit: cfg.sod_limit,
            })),
            limits: Mutex::new(SimLimits::dhan(cfg.enforce_rate_limits)),
            faults: faults.clone(),
            prices,
            bus: bus.clone(),
            clock: cfg.clock.clone(),
            received: Mutex::new(Vec::new()),
            nudge: nudge_tx,
            instruments: cfg.instruments.clone(),
        });
        let handler: Arc<Handler> = {
            let state = state.clone();
            Arc::new(move |req| state.handle(req))
        };
        let rest = HttpServer::start_with(
            SocketAddr::new(cfg.bind, cfg.rest_port),
            handler,
            cfg.keep_alive,
        )?;
        let socket_ctx = Arc::new(SocketCtx {
            bus,
            token,
            client_id: cfg.client_id.clone(),
            faults,
            ping_every: cfg.ping_every,
            logins: AtomicU64::new(0),
            refused_logins: AtomicU64::new(0),
        });
        let socket = OrderSocketServer::start(
            SocketAddr::new(cfg.bind, cfg.order_socket_port),
            socket_ctx.clone(),
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticks = Arc::new(AtomicU64::new(0));
        let exchange = {
            let (state, stop, ticks, tick) = (state.clone(), stop.clone(), ticks.clone(), cfg.tick);
            thread::Builder::new().name("sim-exchange".into()).spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let _ = nudge_rx.recv_timeout(tick);
                    let now = SimNow { mono: Instant::now(), wall: state.clock.now() };
                    let moved = state.book.lock().advance(now, &state.prices);
                    for o in &moved {
                        state.bus.publish(o);
                    }
                    ticks.fetch_add(1, Ordering::Release);
                }
            })?
        };
        // Debug only: the engine (or `scalper sim`'s JSON line) announces the addresses once.
        log::debug!(target: "sim", "simulated Dhan broker: REST on http://{}/v2, order updates on ws://{}",
            rest.addr(), socket.addr());
        Ok(SimBroker {
            state,
            socket_ctx,
            rest,
            socket,
            exchange: Some(exchange),
            stop,
            ticks,
            started: Instant::now(),
        })
    }

    pub fn rest_addr(&self) -> SocketAddr {
        self.rest.addr()
    }

    /// `http://127.0.0.1:PORT/v2`: the REST client's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.rest.addr(), crate::config::SIM_REST_PATH)
    }

    pub fn order_socket_addr(&self) -> SocketAddr {
        self.socket.addr()
    }

    /// `ws://127.0.0.1:PORT/order-update`: the order-update client's URL (the server takes any
    /// path; this is the one the configuration's port-0 URLs use).
    pub fn order_socket_url(&self) -> String {
        format!("ws://{}{}", self.socket.addr(), crate::config::SIM_ORDER_UPDATE_PATH)
    }

    pub fn client_id(&self) -> &str {
        &self.state.client_id
    }

    /// The fault controls (cheap to clone, usable from any thread).
    pub fn faults(&self) -> Faults {
        self.state.faults.clone()
    }

    /// Rolls the access token: the old one gets 401 DH-901 and refused socket logins.
    pub fn set_access_token(&self, token: &str) {
        *self.state.token.write() = token.to_string();
    }

    pub fn set_upper_case_status(&self, upper: bool) {
        self.state.bus.set_upper_status(upper);
    }

    // ------------------------------------------------------------ inspection

    /// Every REST request received, in order (including refused and faulted ones).
    /// REST connections accepted, and ended by the keep-alive idle timeout, so far.
    pub fn rest_connections(&self) -> (u64, u64) {
        self.rest.connections()
    }

    pub fn received(&self) -> Vec<ReceivedRequest> {
        self.state.received.lock().clone()
    }

    /// Every order in the book (all sources), in placement order.
    pub fn orders(&self) -> Vec<SimOrder> {
        self.state.book.lock().orders().to_vec()
    }

    pub fn trades(&self) -> Vec<SimTrade> {
        self.state.book.lock().trades().to_vec()
    }

    pub fn positions(&self) -> Vec<SimPosition> {
        self.state.book.lock().positions().to_vec()
    }

    /// How many orders were created with this correlation id (2 or more: a duplicate).
    pub fn orders_with_correlation_id(&self, cid: &str) -> usize {
        self.state.book.lock().orders().iter().filter(|o| o.correlation_id == cid).count()
    }

    /// Orders created per correlation id.
    pub fn correlation_counts(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for o in self.state.book.lock().orders() {
            *m.entry(o.correlation_id.clone()).or_insert(0) += 1;
        }
        m
    }

    /// Arrival times of the admitted REST requests of `class`, and how many were answered 429.
    pub fn arrivals(&self, class: ApiClass) -> (Vec<Instant>, usize) {
        let l = self.state.limits.lock();
        (l.arrivals(class), l.throttled(class))
    }

    /// Logged-in order-update sockets right now.
    pub fn order_socket_clients(&self) -> usize {
        self.state.bus.subscribers()
    }

    /// Successful and refused order-update logins so far.
    pub fn order_socket_logins(&self) -> (u64, u64) {
        (
            self.socket_ctx.logins.load(Ordering::Relaxed),
            self.socket_ctx.refused_logins.load(Ordering::Relaxed),
        )
    }

    /// Order-update messages sent and dropped so far.
    pub fn order_updates_sent(&self) -> (u64, u64) {
        self.state.bus.counts()
    }

    /// Steps the exchange thread has taken (to wait for "at least one more step").
    pub fn exchange_steps(&self) -> u64 {
        self.ticks.load(Ordering::Acquire)
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    // ------------------------------------------------------------ outside activity

    /// Places an order as if from the Dhan web app (`Source` N, a Dhan-generated correlation
    /// id unless one is given). It goes through the same lifecycle and is pushed on the socket.
    pub fn inject_order(&self, new: NewOrder) -> Option<SimOrder> {
        let now = SimNow { mono: Instant::now(), wall: self.state.clock.now() };
        let placed = self.state.book.lock().place(new, Source::Web, now).ok();
        if let Some(o) = &placed {
            self.state.bus.publish(o);
            let _ = self.state.nudge.try_send(());
        }
        placed
    }

    /// Adds a position as if traded earlier today from another platform.
    pub fn inject_position(
        &self,
        instrument: InstrumentKey,
        product: ProductType,
        net_qty: i64,
        avg_price: Paise,
    ) {
        self.state.book.lock().inject_position(instrument, product, net_qty, avg_price);
    }

    /// Stops every thread and closes every socket.
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.rest.shutdown();
        self.socket.shutdown();
        if let Some(h) = self.exchange.take() {
            let _ = h.join();
        }
    }
}

impl Drop for SimBroker {
    fn drop(&mut self) {
        if self.exchange.is_some() {
            self.stop_all();
        }
    }
}
