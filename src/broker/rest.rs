//! The blocking Dhan v2 REST client (spec dhan-v2 §4): one shared `ureq` agent (rustls with
//! ring, connection pool, explicit connect and per-call timeouts, HTTP error statuses returned
//! as responses), `access-token` and `client-id` headers on every call, `dhanClientId` in every
//! JSON body, and a slot from the shared [`RateLimiter`] before every request.
//!
//! Writes answer a [`WriteOutcome`]; reads a `Result<_, CallError>`. A call that provably did
//! not leave (no connection could be opened, or the connection broke while the request was
//! being written: `send_watch`) is tried once more at once on a fresh connection, same body,
//! same correlation id; nothing else is retried here: the order router decides, and settles
//! unknown placements with `resolve`. A pooled connection is reused only while it has been
//! idle less than `max_idle_age` (4 s, below the shortest keep-alive timeout in common use, so
//! a server or middlebox never drops one under a request) and ureq probes it first, so a
//! connection the server closed while idle never carries a request. The access
//! token is read from the [`CredentialSource`] on every call (it rolls daily) and is reloaded
//! when Dhan answers as if it had expired; it is never logged or put into an error.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::{HistogramVec, IntCounter, IntCounterVec};
use serde::de::DeserializeOwned;
use serde_json::Value;

use ureq::http::{HeaderName, HeaderValue, Uri, header};
use ureq::unversioned::transport::Connector as _;

use super::credentials::{CredentialSource, Credentials};
use super::model::{
    self, DhanErrorCode, ErrorBody, FundLimit, KillSwitchStatus, LtpRequest, ModifyOrder, Order,
    PlaceOrder, Position, Trade,
};
use super::outcome::{
    CallError, NotSent, Rejection, Unknown, WriteOutcome, classify_read, classify_write,
};
use super::ratelimit::{ApiClass, Priority, RateLimiter};
use crate::domain::{InstrumentKey, OrderId, Paise};
use crate::ops::metrics::{Metrics, network_buckets};

/// Dhan's production base URL.
pub const DHAN_BASE_URL: &str = "https://api.dhan.co/v2";

/// At most this many instruments per `POST /marketfeed/ltp` (spec §5).
pub const LTP_BATCH: usize = 1000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestConfig {
    /// `https://api.dhan.co/v2`, or the simulator's `http://127.0.0.1:PORT/v2`.
    pub base_url: String,
    pub connect_timeout: Duration,
    /// The whole call: connect, send, and the complete answer. Past it the outcome is unknown.
    pub request_timeout: Duration,
    /// How long a call may wait for a rate-limit slot before it gives up as `NotSent`.
    pub limiter_wait: Duration,
    pub max_idle_connections: usize,
    pub max_idle_per_host: usize,
    /// A pooled connection idle this long is not reused (see the module doc).
    pub max_idle_age: Duration,
}

impl RestConfig {
    pub fn new(base_url: impl Into<String>) -> RestConfig {
        RestConfig {
            base_url: base_url.into(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(3),
            limiter_wait: Duration::from_secs(2),
            max_idle_connections: 8,
            max_idle_per_host: 8,
            max_idle_age: Duration::from_secs(4),
        }
    }

    pub fn dhan() -> RestConfig {
        RestConfig::new(DHAN_BASE_URL)
    }
}

/// Per-endpoint latency and results, created once and shared by every clone of the client.
#[derive(Clone, Debug)]
pub struct RestMetrics {
    latency: HistogramVec,
    results: IntCounterVec,
    connections: IntCounter,
    keep_warm: IntCounterVec,
}

/// The order endpoints and their results, whose series exist from startup (a read endpoint's
/// series appear with its first call; a read's result is `ok`, `rejected`, `not_sent` or
/// `unknown`).
pub const WRITE_ENDPOINTS: &[&str] = &["place_order", "modify_order", "cancel_order"];
pub const WRITE_RESULTS: &[&str] = &["accepted", "rejected", "not_sent", "unknown"];

impl RestMetrics {
    pub fn new(m: &Metrics) -> RestMetrics {
        let latency = m.histogram_vec(
            "broker_request_seconds",
            "Dhan REST round trip, by endpoint",
            &["endpoint"],
            network_buckets(),
        );
        crate::ops::metrics::preset(&latency, &[WRITE_ENDPOINTS]);
        RestMetrics {
            latency,
            results: m.counter_vec_preset(
                "broker_requests_total",
                "Dhan REST calls by endpoint and result (ok or accepted, rejected, not_sent, \
                 unknown)",
                &["endpoint", "result"],
                &[WRITE_ENDPOINTS, WRITE_RESULTS],
            ),
            connections: m.counter(
                "broker_connections_total",
                "New connections (TCP and TLS handshakes) the Dhan REST client opened",
            ),
            keep_warm: m.counter_vec_preset(
                "broker_keep_warm_total",
                "Requests that kept an idle Dhan REST connection open, by result (ok, failed)",
                &["result"],
                &[&["ok", "failed"]],
            ),
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Put,
    Delete,
}

/// One request to make.
struct Call<'a> {
    endpoint: &'static str,
    method: Method,
    path: Cow<'static, str>,
    /// The JSON body, encoded once (a resend sends the same bytes).
    body: Option<&'a [u8]>,
    class: ApiClass,
    priority: Priority,
}

/// The path of `POST /orders`, whose URL the client parses once.
const ORDERS_PATH: &str = "/orders";

thread_local! {
    /// This thread's place-order body, reused from order to order: once it has grown to a
    /// body's size, encoding an order allocates nothing.
    static ORDER_BODY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The credential headers as header values, made once per pair: adding them to a request
/// copies nothing (a header value shares its bytes).
struct AuthHeaders {
    access_token: HeaderValue,
    client_id: HeaderValue,
}

impl AuthHeaders {
    /// `None` when a credential is not a valid header value (the request then carries the
    /// text as given and fails as it always did).
    fn of(c: &Credentials) -> Option<AuthHeaders> {
        let mut access_token = HeaderValue::from_str(c.access_token.expose()).ok()?;
        access_token.set_sensitive(true);
        let client_id = HeaderValue::from_str(&c.client_id).ok()?;
        Some(AuthHeaders { access_token, client_id })
    }

    fn is_for(&self, c: &Credentials) -> bool {
        self.access_token.as_bytes() == c.access_token.expose().as_bytes()
            && self.client_id.as_bytes() == c.client_id.as_bytes()
    }
}

/// The credentials one request carries.
enum Auth {
    Headers(HeaderValue, HeaderValue),
    /// Not valid as header values: given to ureq as text.
    Text(Credentials),
}

/// Header names and values of static text: made without copying or allocating.
fn access_token_name() -> HeaderName {
    HeaderName::from_static("access-token")
}

fn client_id_name() -> HeaderName {
    HeaderName::from_static("client-id")
}

fn json() -> HeaderValue {
    HeaderValue::from_static("application/json")
}

impl Auth {
    fn add<B>(self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        let req = match self {
            Auth::Headers(token, client) => {
                req.header(access_token_name(), token).header(client_id_name(), client)
            }
            Auth::Text(creds) => req
                .header("access-token", creds.access_token.expose())
                .header("client-id", &creds.client_id),
        };
        req.header(header::ACCEPT, json())
    }
}

/// What came back, before interpretation.
enum Reply {
    Answer { status: u16, body: Vec<u8> },
    NotSent(NotSent),
    Lost(Unknown),
}

struct Inner {
    agent: ureq::Agent,
    /// No pool: every call on a new connection (the retry of a call that was not sent).
    fresh: ureq::Agent,
    cfg: RestConfig,
    credentials: Arc<dyn CredentialSource>,
    /// The current credentials' headers (remade when the pair changes).
    auth: Mutex<Option<AuthHeaders>>,
    /// The URL of `POST /orders`, parsed once (`None` if the base URL does not parse: each
    /// order then gives ureq the text, which fails as before).
    orders_uri: Option<Uri>,
    limiter: Arc<RateLimiter>,
    metrics: Option<RestMetrics>,
    /// When the last call started or ended, in ms of `Inner::origin`.
    last_used_ms: AtomicU64,
    origin: Instant,
}

/// The Dhan REST client. Cheap to clone; every clone shares the agent, pool and limiter.
#[derive(Clone)]
pub struct DhanClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DhanClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhanClient")
            .field("base_url", &self.inner.cfg.base_url)
            .finish_non_exhaustive()
    }
}

impl DhanClient {
    pub fn new(
        cfg: RestConfig,
        credentials: Arc<dyn CredentialSource>,
        limiter: Arc<RateLimiter>,
    ) -> DhanClient {
        DhanClient::build(cfg, credentials, limiter, None)
    }

    /// As [`DhanClient::new`], recording latency and results into `metrics`.
    pub fn with_metrics(
        cfg: RestConfig,
        credentials: Arc<dyn CredentialSource>,
        limiter: Arc<RateLimiter>,
        metrics: RestMetrics,
    ) -> DhanClient {
        DhanClient::build(cfg, credentials, limiter, Some(metrics))
    }

    fn build(
        cfg: RestConfig,
        credentials: Arc<dyn CredentialSource>,
        limiter: Arc<RateLimiter>,
        metrics: Option<RestMetrics>,
    ) -> DhanClient {
        // The pooled agent resolves from a cache (no thread, no lookup per request); the fresh
        // one, used once after a failed connect, looks the host up again.
        let agent = |idle: usize, cached: bool| {
            let config = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(cfg.request_timeout))
                .timeout_connect(Some(cfg.connect_timeout))
                .max_idle_connections(idle)
                .max_idle_connections_per_host(cfg.max_idle_per_host.min(idle))
                .max_idle_age(cfg.max_idle_age)
                // A redirect would resend a POST somewhere we did not choose.
                .max_redirects(0)
                .user_agent(concat!("scalper/", env!("CARGO_PKG_VERSION")))
                .build();
            let connector = ureq::unversioned::transport::DefaultConnector::default()
                .chain(super::send_watch::SendWatch);
            if cached {
                ureq::Agent::with_parts(
                    config,
                    connector,
                    super::dns::CachedResolver::new(super::dns::DEFAULT_TTL),
                )
            } else {
                ureq::Agent::with_parts(
                    config,
                    connector,
                    ureq::unversioned::resolver::DefaultResolver::default(),
                )
            }
        };
        let (pooled, fresh) = (agent(cfg.max_idle_connections, true), agent(0, false));
        let orders_uri = Uri::try_from(url(&cfg.base_url, ORDERS_PATH)).ok();
        let inner = Inner {
            agent: pooled,
            fresh,
            cfg,
            credentials,
            auth: Mutex::new(None),
            orders_uri,
            limiter,
            metrics,
            last_used_ms: AtomicU64::new(0),
            origin: Instant::now(),
        };
        DhanClient { inner: Arc::new(inner) }
    }

    pub fn config(&self) -> &RestConfig {
        &self.inner.cfg
    }

    pub fn limiter(&self) -> &Arc<RateLimiter> {
        &self.inner.limiter
    }

    // ---------------------------------------------------------------- writes

    /// `POST /orders`. The body is written field by field into this thread's reused buffer
    /// ([`PlaceOrder::write_body`]), with the client id read in place.
    pub fn place_order(&self, order: &PlaceOrder, priority: Priority) -> WriteOutcome {
        let mut body = ORDER_BODY.with(|b| std::mem::take(&mut *b.borrow_mut()));
        self.inner.credentials.with_current(&mut |c| order.write_body(&c.client_id, &mut body));
        let call = Call {
            endpoint: "place_order",
            method: Method::Post,
            path: ORDERS_PATH.into(),
            body: Some(&body),
            class: ApiClass::Orders,
            priority,
        };
        let outcome = self.write(call);
        ORDER_BODY.with(|b| *b.borrow_mut() = body);
        log_write("place_order", order.correlation_id.as_ref().map(|c| c.as_str()), &outcome);
        outcome
    }

    /// `PUT /orders/{id}`.
    pub fn modify_order(&self, change: &ModifyOrder, priority: Priority) -> WriteOutcome {
        let client_id = self.inner.credentials.current().client_id;
        let body = serde_json::to_vec(&change.body(&client_id))
            .expect("a modify body of strings, integers and finite floats always encodes");
        let call = Call {
            endpoint: "modify_order",
            method: Method::Put,
            path: format!("/orders/{}", segment(&change.order_id.0)).into(),
            body: Some(&body),
            class: ApiClass::Orders,
            priority,
        };
        let outcome = self.write(call);
        log_write("modify_order", Some(&change.order_id.0), &outcome);
        outcome
    }

    /// `DELETE /orders/{id}`. A 400 DH-906 "Order is in Transit state" comes back as
    /// `Rejected` with [`Rejection::is_transit`]; try again once the order is PENDING.
    pub fn cancel_order(&self, order_id: &OrderId, priority: Priority) -> WriteOutcome {
        let call = Call {
            endpoint: "cancel_order",
            method: Method::Delete,
            path: format!("/orders/{}", segment(&order_id.0)).into(),
            body: None,
            class: ApiClass::Orders,
            priority,
        };
        let outcome = self.write(call);
        log_write("cancel_order", Some(&order_id.0), &outcome);
        outcome
    }

    // ---------------------------------------------------------------- reads
    //
    // Reads never add risk, so they ask the limiter at exit priority.

    /// `GET /orders/{id}`: `None` for an unknown id (Dhan answers `200 []`).
    pub fn order(&self, order_id: &OrderId) -> Result<Option<Order>, CallError> {
        let v: Value = self.read(
            "order",
            Method::Get,
            format!("/orders/{}", segment(&order_id.0)),
            None,
            ApiClass::NonTrading,
        )?;
        let one = model::wire::one_or_none(v).map_err(|e| decode_error("order", e))?;
        one.map(|o| serde_json::from_value(o).map_err(|e| decode_error("order", e))).transpose()
    }

    /// `GET /orders/external/{cid}`: `None` for 404 DH-906, which Dhan answers both for an
    /// unknown correlation id and for an order still in TRANSIT.
    pub fn order_by_correlation_id(
        &self,
        correlation_id: &str,
    ) -> Result<Option<Order>, CallError> {
        let path = format!("/orders/external/{}", segment(correlation_id));
        match self.read::<Value>(
            "order_by_correlation_id",
            Method::Get,
            path,
            None,
            ApiClass::NonTrading,
        ) {
            Ok(v) => {
                let one = model::wire::one_or_none(v)
                    .map_err(|e| decode_error("order_by_correlation_id", e))?;
                one.map(|o| {
                    serde_json::from_value(o)
                        .map_err(|e| decode_error("order_by_correlation_id", e))
                })
                .transpose()
            }
            Err(CallError::Rejected { rejection, .. })
                if rejection.http_status == 404 && rejection.code == DhanErrorCode::OrderError =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `GET /orders`: today's order book, every platform.
    pub fn orders(&self) -> Result<Vec<Order>, CallError> {
        self.read("orders", Method::Get, "/orders".into(), None, ApiClass::NonTrading)
    }

    /// `GET /trades`: today's fills.
    pub fn trades(&self) -> Result<Vec<Trade>, CallError> {
        self.read("trades", Method::Get, "/trades".into(), None, ApiClass::NonTrading)
    }

    /// `GET /trades/{order-id}`: the fills of one order.
    pub fn trades_for_order(&self, order_id: &OrderId) -> Result<Vec<Trade>, CallError> {
        let path = format!("/trades/{}", segment(&order_id.0));
        let v: Value =
            self.read("trades_for_order", Method::Get, path, None, ApiClass::NonTrading)?;
        // Seen as an array; accept a bare object too.
        let v = match v {
            Value::Object(_) => Value::Array(vec![v]),
            other => other,
        };
        serde_json::from_value(v).map_err(|e| decode_error("trades_for_order", e))
    }

    /// `GET /positions`.
    pub fn positions(&self) -> Result<Vec<Position>, CallError> {
        self.read("positions", Method::Get, "/positions".into(), None, ApiClass::NonTrading)
    }

    /// `GET /fundlimit`.
    pub fn fund_limit(&self) -> Result<FundLimit, CallError> {
        self.read("fund_limit", Method::Get, "/fundlimit".into(), None, ApiClass::NonTrading)
    }

    /// `POST /marketfeed/ltp`: last traded prices, at most [`LTP_BATCH`] instruments per call
    /// (more are split into several calls, each taking a quote-class slot). Instruments Dhan
    /// does not report are missing from the map.
    pub fn ltp(
        &self,
        instruments: &[InstrumentKey],
    ) -> Result<HashMap<InstrumentKey, Paise>, CallError> {
        let mut out = HashMap::new();
        for chunk in instruments.chunks(LTP_BATCH) {
            let mut body = serde_json::to_value(LtpRequest::new(chunk))
                .expect("a map of segment names to integer lists always encodes");
            if let Value::Object(map) = &mut body {
                map.insert(
                    "dhanClientId".into(),
                    Value::String(self.inner.credentials.current().client_id),
                );
            }
            let v: Value = self.read(
                "ltp",
                Method::Post,
                "/marketfeed/ltp".into(),
                Some(body),
                ApiClass::Quote,
            )?;
            out.extend(model::parse_ltp_response(&v).map_err(|e| decode_error("ltp", e))?);
        }
        Ok(out)
    }

    /// `POST /killswitch?killSwitchStatus=ACTIVATE|DEACTIVATE`. Dhan refuses activation while
    /// positions are open or orders pending.
    pub fn set_kill_switch(&self, activate: bool) -> Result<KillSwitchStatus, CallError> {
        let status = if activate { "ACTIVATE" } else { "DEACTIVATE" };
        let path = format!("/killswitch?killSwitchStatus={status}");
        let r: Result<KillSwitchStatus, CallError> =
            self.read("kill_switch", Method::Post, path, None, ApiClass::NonTrading);
        match &r {
            Ok(s) => {
                log::warn!(target: "broker", "Dhan kill switch {status}: {}", s.kill_switch_status)
            }
            Err(e) => log::error!(target: "broker", "Dhan kill switch {status} failed: {e}"),
        }
        r
    }

    /// `GET /killswitch`.
    pub fn kill_switch_status(&self) -> Result<KillSwitchStatus, CallError> {
        self.read(
            "kill_switch_status",
            Method::Get,
            "/killswitch".into(),
            None,
            ApiClass::NonTrading,
        )
    }

    // ---------------------------------------------------------------- warm connections

    /// How long no call has been made (since the last one started or ended).
    pub fn idle_for(&self) -> Duration {
        let now = self.inner.origin.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.inner.last_used_ms.load(Ordering::Relaxed)))
    }

    fn note_used(&self) {
        let now = self.inner.origin.elapsed().as_millis() as u64;
        self.inner.last_used_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// Keeps a pooled connection open for the next order: one `GET /profile` (a non-trading
    /// call, the cheapest Dhan answers; never an order-class slot) on the pool, which reuses
    /// an idle connection or, when the server closed it, opens one now rather than under the
    /// next order. Takes a rate-limit slot only if one is free at once, below every other
    /// call; `false` when none was free or the call failed.
    pub fn keep_warm(&self) -> bool {
        let inner = &*self.inner;
        if inner.limiter.acquire(ApiClass::NonTrading, Priority::Entry, Instant::now()).is_err() {
            return false;
        }
        self.note_used();
        let call = Call {
            endpoint: "keep_warm",
            method: Method::Get,
            path: Cow::Borrowed("/profile"),
            body: None,
            class: ApiClass::NonTrading,
            priority: Priority::Entry,
        };
        let reply = self.send(&inner.agent, &call);
        self.note_used();
        self.count_connection();
        let ok = matches!(reply, Reply::Answer { status: 200..=299, .. });
        if let Some(m) = &inner.metrics {
            m.keep_warm.with_label_values(&[if ok { "ok" } else { "failed" }]).inc();
        }
        if !ok {
            log::debug!(target: "broker", "keeping the REST connection warm failed");
        }
        ok
    }

    fn count_connection(&self) {
        if let Some(m) = &self.inner.metrics
            && super::send_watch::connected()
        {
            m.connections.inc();
        }
    }

    // ---------------------------------------------------------------- plumbing

    fn write(&self, call: Call) -> WriteOutcome {
        let endpoint = call.endpoint;
        let outcome = match self.exchange(call) {
            Reply::Answer { status, body } => classify_write(status, &body),
            Reply::NotSent(n) => WriteOutcome::NotSent(n),
            Reply::Lost(u) => WriteOutcome::Unknown(u),
        };
        if let WriteOutcome::Rejected(r) = &outcome {
            self.maybe_reload(r);
        }
        self.count(endpoint, outcome.kind());
        outcome
    }

    fn read<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        method: Method,
        path: String,
        body: Option<Value>,
        class: ApiClass,
    ) -> Result<T, CallError> {
        let body = body.map(|b| serde_json::to_vec(&b).expect("a JSON value always encodes"));
        let call = Call {
            endpoint,
            method,
            path: path.into(),
            body: body.as_deref(),
            class,
            priority: Priority::Exit,
        };
        let result = match self.exchange(call) {
            Reply::Answer { status, body } => classify_read(endpoint, status, &body),
            Reply::NotSent(reason) => Err(CallError::NotSent { endpoint, reason }),
            Reply::Lost(reason) => Err(CallError::Failed { endpoint, reason }),
        };
        let kind = match &result {
            Ok(_) => "ok",
            Err(CallError::Rejected { rejection, .. }) => {
                self.maybe_reload(rejection);
                "rejected"
            }
            Err(CallError::NotSent { .. }) => "not_sent",
            Err(CallError::Failed { .. }) => "unknown",
        };
        self.count(endpoint, kind);
        result
    }

    fn maybe_reload(&self, r: &Rejection) {
        if r.is_auth() {
            log::warn!(target: "broker", "Dhan refused the credentials ({} {}); reloading them", r.code, r.message);
            if let Err(e) = self.inner.credentials.reload() {
                log::error!(target: "broker", "{e}");
            }
        }
    }

    fn count(&self, endpoint: &str, kind: &str) {
        if let Some(m) = &self.inner.metrics {
            m.results.with_label_values(&[endpoint, kind]).inc();
        }
    }

    /// Takes a rate-limit slot, sends, and reads the whole answer.
    fn exchange(&self, call: Call) -> Reply {
        let inner = &*self.inner;
        let deadline = Instant::now() + inner.cfg.limiter_wait;
        if let Err(e) = inner.limiter.acquire(call.class, call.priority, deadline) {
            return Reply::NotSent(NotSent::RateLimited(e));
        }
        let started = Instant::now();
        self.note_used();
        let mut reply = self.send(&inner.agent, &call);
        self.count_connection();
        if let Reply::NotSent(n @ (NotSent::ConnectFailed(_) | NotSent::SendFailed(_))) = &reply {
            log::warn!(target: "broker", "{} {} not sent ({n}); sending it again at once on a new connection", call.endpoint, call.path);
            reply = self.send(&inner.fresh, &call);
            self.count_connection();
        }
        self.note_used();
        let elapsed = started.elapsed();
        if let Some(m) = &inner.metrics {
            m.latency.with_label_values(&[call.endpoint]).observe(elapsed.as_secs_f64());
        }
        match &reply {
            Reply::Answer { status, body } => {
                let throttled = *status == 429
                    || matches!(model::parse_error_body(body), Some(ErrorBody::Dhan(e)) if e.code == DhanErrorCode::RateLimit);
                if throttled {
                    inner.limiter.note_throttled(call.class);
                } else {
                    inner.limiter.note_accepted(call.class);
                }
                log::debug!(target: "broker", "{} {} -> HTTP {status} in {elapsed:?}", call.endpoint, call.path);
            }
            Reply::NotSent(n) => {
                log::warn!(target: "broker", "{} {} not sent: {n}", call.endpoint, call.path)
            }
            Reply::Lost(u) => {
                log::warn!(target: "broker", "{} {} after {elapsed:?}: {u}", call.endpoint, call.path)
            }
        }
        reply
    }

    /// The credential headers for a request: the cached values while the pair is unchanged
    /// (nothing copied), remade when it changed.
    fn auth(&self) -> Auth {
        let inner = &*self.inner;
        let mut cached = inner.auth.lock();
        let mut auth = None;
        inner.credentials.with_current(&mut |c| {
            if !cached.as_ref().is_some_and(|h| h.is_for(c)) {
                *cached = AuthHeaders::of(c);
            }
            auth = Some(match cached.as_ref() {
                Some(h) => Auth::Headers(h.access_token.clone(), h.client_id.clone()),
                None => Auth::Text(c.clone()),
            });
        });
        auth.unwrap_or_else(|| Auth::Text(inner.credentials.current()))
    }

    /// Sends once through `agent` and reads the whole answer.
    fn send(&self, agent: &ureq::Agent, call: &Call) -> Reply {
        let inner = &*self.inner;
        let auth = self.auth();
        // `POST /orders` on the URL parsed once; any other call on its text.
        let parsed = inner.orders_uri.as_ref().filter(|_| call.path == ORDERS_PATH);
        let text = || url(&inner.cfg.base_url, &call.path);
        super::send_watch::begin_call();
        let sent = match call.method {
            Method::Get | Method::Delete => {
                let url = text();
                let req =
                    if call.method == Method::Get { agent.get(&url) } else { agent.delete(&url) };
                auth.add(req).call()
            }
            Method::Post | Method::Put => {
                let req = match (call.method, parsed) {
                    (Method::Post, Some(uri)) => agent.post(uri.clone()),
                    (Method::Post, None) => agent.post(&text()),
                    _ => agent.put(&text()),
                };
                let req = auth.add(req);
                match call.body {
                    Some(body) => req.header(header::CONTENT_TYPE, json()).send(body),
                    None => req.send_empty(),
                }
            }
        };
        match sent {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                match resp.body_mut().read_to_vec() {
                    Ok(body) => Reply::Answer { status, body },
                    Err(e) => Reply::Lost(lost(e)),
                }
            }
            Err(e) if super::send_watch::send_failed() => {
                Reply::NotSent(NotSent::SendFailed(e.to_string()))
            }
            Err(e) => classify_transport(e),
        }
    }
}

/// The full URL of `path` under the base URL.
fn url(base: &str, path: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path)
}

fn log_write(endpoint: &str, key: Option<&str>, outcome: &WriteOutcome) {
    let key = key.unwrap_or("-");
    match outcome {
        WriteOutcome::Accepted(_) => log::info!(target: "broker", "{endpoint} {key}: {outcome}"),
        WriteOutcome::Rejected(_) | WriteOutcome::NotSent(_) => {
            log::warn!(target: "broker", "{endpoint} {key}: {outcome}")
        }
        WriteOutcome::Unknown(_) => {
            log::error!(target: "broker", "{endpoint} {key}: {outcome}; must be resolved before any resend")
        }
    }
}

fn decode_error(endpoint: &'static str, e: impl std::fmt::Display) -> CallError {
    CallError::Failed {
        endpoint,
        reason: Unknown::Unparseable { http_status: 200, detail: e.to_string() },
    }
}

/// Percent-encodes one path segment (order ids are digits; a correlation id from another
/// platform might not be).
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A transport error before any answer: provably not sent only if no connection was made.
fn classify_transport(e: ureq::Error) -> Reply {
    use ureq::Timeout;
    match e {
        ureq::Error::Timeout(Timeout::Connect | Timeout::Resolve) => {
            Reply::NotSent(NotSent::ConnectFailed(e.to_string()))
        }
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => {
            Reply::NotSent(NotSent::ConnectFailed(e.to_string()))
        }
        ureq::Error::Io(ref io) if io.kind() == io::ErrorKind::ConnectionRefused => {
            Reply::NotSent(NotSent::ConnectFailed(e.to_string()))
        }
        other => Reply::Lost(lost(other)),
    }
}

fn lost(e: ureq::Error) -> Unknown {
    match e {
        ureq::Error::Timeout(t) => Unknown::Timeout(format!("{t:?}")),
        ureq::Error::Io(io) => match io.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Unknown::Timeout(io.to_string()),
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => Unknown::ConnectionLost(io.to_string()),
            _ => Unknown::Transport(io.to_string()),
        },
        ureq::Error::Protocol(p) => Unknown::ConnectionLost(p.to_string()),
        other => Unknown::Transport(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(segment("52511243008123"), "52511243008123");
        assert_eq!(segment("AS-N_1.2"), "AS-N_1.2");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
    }
}
