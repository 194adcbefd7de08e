//! The validated configuration as the rest of the engine sees it: every value already typed
//! (`Bp`, `Paise`, `Rate`, `TimeOfDay`, `InstrumentKey`, `Duration`, `Url`, dates), every
//! default and cross-key rule already applied. Nothing downstream parses text again. The trading
//! tables are held as the parameter types their users take (`RiskParams`, `Limits`,
//! `SessionParams`, `ChargeSchedule`, `PaperParams`), so there is no second copy to map.
//!
//! Built only by `validate.rs` from the file layout in `raw.rs`; the key each field comes from
//! is named in its doc (see `config/production.example.toml` for the full commented layout).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::domain::{InstrumentKey, Paise, Qty, TimeOfDay};
use crate::exec::paper::PaperParams;
use crate::pnl::charges::ChargeSchedule;
use crate::risk::{Limits, RiskParams, SessionParams};

use super::secrets::Secret;

/// `mode`: paper trading (simulated fills) or live trading (real orders).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Paper,
    Live,
}

/// `feed.source`: where market data comes from.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedSource {
    /// The built-in simulator (in-process, or an external one at `feed.url`).
    Sim,
    /// Dhan's market feed (or anything speaking its protocol at `feed.url`).
    Dhan,
}

/// `feed.mode`: the Dhan subscription type (spec dhan-v2 §1).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedMode {
    Ticker,
    #[default]
    Quote,
    Full,
}

/// `broker.kind`: who executes orders.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// The engine's own paper broker (fills at the last traded price).
    Paper,
    /// Dhan's REST API and order-update socket (or the simulator's broker half).
    Dhan,
}

/// `broker.product_type`: Dhan's `productType` for every order.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProductType {
    #[default]
    Intraday,
    Margin,
}

impl ProductType {
    /// The value sent to Dhan.
    pub const fn wire_name(self) -> &'static str {
        match self {
            ProductType::Intraday => "INTRADAY",
            ProductType::Margin => "MARGIN",
        }
    }
}

/// `sim.scenario_speed`: how a replayed scenario is paced.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScenarioSpeed {
    /// Follow the timestamps of the file.
    #[default]
    Realtime,
    /// As fast as the feed can send.
    Fast,
}

/// `store.backend`, as written.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Sqlite,
    Postgres,
}

/// `instance.lease`: how a second engine on the same account is kept out.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseKind {
    #[default]
    None,
    Redis,
}

/// `alerts.targets[].kind`: the payload a target receives.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertTargetKind {
    /// A JSON object POSTed to a URL (`severity`, `code`, `message`, `at`, `repeats`, ...).
    Webhook,
    /// The Telegram bot API's `sendMessage` (`chat_id`, `text`).
    Telegram,
    /// A Slack incoming webhook (`{"text": ...}`).
    Slack,
}

/// `alerts.targets[].min_severity`: the least severe alert a target receives.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertSeverity {
    #[default]
    Warning,
    Critical,
}

macro_rules! display_as_str {
    ($($ty:ty => { $($variant:path => $name:literal),* $(,)? })*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $($variant => $name),* })
            }
        }
    )*};
}

display_as_str! {
    Mode => { Mode::Paper => "paper", Mode::Live => "live" }
    FeedSource => { FeedSource::Sim => "sim", FeedSource::Dhan => "dhan" }
    FeedMode => { FeedMode::Ticker => "ticker", FeedMode::Quote => "quote", FeedMode::Full => "full" }
    BrokerKind => { BrokerKind::Paper => "paper", BrokerKind::Dhan => "dhan" }
    ProductType => { ProductType::Intraday => "INTRADAY", ProductType::Margin => "MARGIN" }
    ScenarioSpeed => { ScenarioSpeed::Realtime => "realtime", ScenarioSpeed::Fast => "fast" }
    StoreKind => { StoreKind::Sqlite => "sqlite", StoreKind::Postgres => "postgres" }
    LeaseKind => { LeaseKind::None => "none", LeaseKind::Redis => "redis" }
    AlertTargetKind => {
        AlertTargetKind::Webhook => "webhook",
        AlertTargetKind::Telegram => "telegram",
        AlertTargetKind::Slack => "slack",
    }
    AlertSeverity => { AlertSeverity::Warning => "warning", AlertSeverity::Critical => "critical" }
}

/// The whole validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `mode`.
    pub mode: Mode,
    /// `data_dir`: state files (control token, default SQLite database, spill files).
    pub data_dir: PathBuf,
    pub secrets: SecretsConfig,
    pub http: HttpConfig,
    pub feed: FeedConfig,
    pub broker: BrokerConfig,
    pub sim: SimConfig,
    /// `[paper]`: the paper broker and wallet.
    pub paper: PaperParams,
    /// `[risk]`: the per-tick exit rules (spec §3, §5). Applies live on reload.
    pub risk: RiskParams,
    /// `[limits]`: account rules (spec §4). Applies live on reload.
    pub limits: Limits,
    /// `[session]`: the trading day (IST).
    pub session: SessionParams,
    /// `[charges]`: the per-leg charge schedule (spec §6).
    pub charges: ChargeSchedule,
    pub entries: EntriesConfig,
    pub store: StoreConfig,
    pub redis: RedisConfig,
    pub instance: InstanceConfig,
    pub runtime: RuntimeConfig,
    pub heartbeat: HeartbeatConfig,
    pub pnl: PnlConfig,
    pub host: HostConfig,
    /// `[instruments]`.
    pub instruments: InstrumentsConfig,
    /// `[exit_retry]`.
    pub exit_retry: crate::exec::exit_retry::ExitRetryPolicy,
    /// `[alerts]`.
    pub alerts: AlertsConfig,
}

/// `[secrets]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretsConfig {
    /// `secrets.file`: a `KEY=VALUE` file read at startup; `None` when `""`.
    pub file: Option<PathBuf>,
}

/// `[http]`: the operator's HTTP surface (health, metrics, control API).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// `http.listen`; port 0 lets the system pick one.
    pub listen: SocketAddr,
    /// `http.max_body_bytes`: larger request bodies are refused.
    pub max_body_bytes: usize,
    /// `http.allow_remote`: needed to bind anything but loopback.
    pub allow_remote: bool,
}

/// `[feed]`: the market-data connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedConfig {
    /// `feed.source`.
    pub source: FeedSource,
    /// `feed.url`, resolved: for `source = "sim"` without a url it is the in-process
    /// simulator's feed address (`ws://<sim.listen>/`, port 0 until the simulator is bound:
    /// see [`Config::bind_simulator`]).
    pub url: Url,
    /// `feed.mode`.
    pub mode: FeedMode,
    /// `feed.watchlist`: instruments subscribed besides those with open positions.
    pub watchlist: Vec<InstrumentKey>,
    /// `feed.connect_timeout_ms`: TCP + TLS + WebSocket handshake.
    pub connect_timeout: Duration,
    /// `feed.stall_timeout_ms`: no frame at all for this long → reconnect.
    pub stall_timeout: Duration,
    /// `feed.reconnect_base_ms`: first reconnect delay (doubles each failure).
    pub reconnect_base: Duration,
    /// `feed.reconnect_cap_ms`: reconnect delay ceiling.
    pub reconnect_cap: Duration,
    /// `feed.cooloff_429_secs`: wait after an HTTP 429 at the handshake.
    pub cooloff_429: Duration,
    /// `feed.backoff_805_secs`: wait after a disconnect with reason 805 (too many connections).
    pub backoff_805: Duration,
    /// `feed.position_queue`: capacity of the channel carrying position-instrument ticks.
    pub position_queue: usize,
}

/// `[broker]`: order execution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerConfig {
    /// `broker.kind`.
    pub kind: BrokerKind,
    /// `broker.rest_url`: base of the REST API, e.g. `https://api.dhan.co/v2`.
    pub rest_url: Url,
    /// `broker.order_update_url`: the order-update WebSocket.
    pub order_update_url: Url,
    /// `broker.product_type`.
    pub product_type: ProductType,
    /// `broker.connect_timeout_ms`.
    pub connect_timeout: Duration,
    /// `broker.request_timeout_ms`: a whole REST call.
    pub request_timeout: Duration,
    /// `broker.resolve_window_ms`: how long an order with an unknown outcome (timeout, 5xx) is
    /// looked up by correlation id before it is declared failed.
    pub resolve_window: Duration,
    /// `broker.breaker_failures`: consecutive failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// `broker.breaker_open_secs`: how long the breaker stays open before a trial call.
    pub breaker_open: Duration,
    /// `broker.startup_reconcile_alert_secs`: how long after the start a startup
    /// reconciliation that has not succeeded raises a critical alert (repeated every minute).
    pub startup_reconcile_alert: Duration,
    /// `broker.keep_warm_ms`: a REST connection idle this long gets a cheap request
    /// (`GET /profile`) so that the next order finds it open; zero: off.
    pub keep_warm: Duration,
}

/// `[sim]`: the built-in Dhan simulator.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// `sim.enabled`: start the simulator in-process.
    pub enabled: bool,
    /// `sim.listen`: loopback address of its feed, REST and order-update endpoints.
    pub listen: SocketAddr,
    /// `sim.client_id`: the client id the simulator expects.
    pub client_id: Secret,
    /// `sim.access_token`: the access token the simulator expects.
    pub access_token: Secret,
    /// `sim.seed`: random-walk seed (same seed, same prices).
    pub seed: u64,
    /// `sim.tick_interval_ms`: time between price moves of each instrument.
    pub tick_interval: Duration,
    /// `sim.instruments`: what the simulator trades and its opening prices.
    pub instruments: Vec<SimInstrument>,
    /// `sim.scenario`: a `ticks.csv` to replay instead of the random walk.
    pub scenario: Option<PathBuf>,
    /// `sim.scenario_speed`.
    pub scenario_speed: ScenarioSpeed,
    /// `sim.transit_ms`: delay between an order's acceptance and its fill/update.
    pub transit: Duration,
    /// `sim.master_file`: the master the simulator trades by; none = generated.
    pub master_file: Option<PathBuf>,
    /// `sim.broker`: also serve the broker half (REST + order-update socket).
    pub broker: bool,
}

/// One `sim.instruments` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimInstrument {
    pub instrument: InstrumentKey,
    /// Opening price.
    pub price: Paise,
}

/// `[entries]`: the demo entry generator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntriesConfig {
    /// `entries.demo`.
    pub demo: bool,
    /// `entries.demo_interval_secs`.
    pub demo_interval: Duration,
    /// `entries.demo_quantity` (units).
    pub demo_quantity: Qty,
    /// `entries.demo_instruments`, resolved: the simulator's tradable instruments when not set.
    pub demo_instruments: Vec<InstrumentKey>,
}

/// `[store]`: persistence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// `store.backend` with its location.
    pub backend: StoreBackend,
    /// `store.spill_dir`: where writes go while the database is down.
    pub spill_dir: PathBuf,
    /// `store.queue_capacity`: the write-behind queue.
    pub queue_capacity: usize,
    /// `store.batch_max`: rows per transaction.
    pub batch_max: usize,
    /// `store.flush_interval_ms`.
    pub flush_interval: Duration,
}

/// Where the store lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreBackend {
    /// `store.sqlite_path`, resolved (default `<data_dir>/scalper.db`).
    Sqlite { path: PathBuf },
    /// `store.postgres_url`, without a password (that comes from `PGPASSWORD`).
    Postgres { url: String },
}

impl StoreBackend {
    pub fn kind(&self) -> StoreKind {
        match self {
            StoreBackend::Sqlite { .. } => StoreKind::Sqlite,
            StoreBackend::Postgres { .. } => StoreKind::Postgres,
        }
    }
}

/// `[redis]`: live state mirror and heartbeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis.enabled`.
    pub enabled: bool,
    /// `redis.url`, without a password (that comes from `REDIS_PASSWORD`).
    pub url: Url,
    /// `redis.key_prefix`.
    pub key_prefix: String,
    /// `redis.heartbeat_ttl_secs`.
    pub heartbeat_ttl: Duration,
    /// `redis.tls_ca_file`: the CA that signs the server certificate of a `rediss://` URL
    /// (`None`: the bundled web PKI roots).
    pub tls_ca_file: Option<PathBuf>,
}

/// `[instance]`: single-instance lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceConfig {
    /// `instance.lease`.
    pub lease: LeaseKind,
    /// `instance.lease_ttl_ms`.
    pub lease_ttl: Duration,
    /// `instance.renew_every_ms` (< ttl).
    pub renew_every: Duration,
}

/// `[runtime]`: the worker supervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// `runtime.backoff_base_ms`: first restart delay after a worker failure.
    pub backoff_base: Duration,
    /// `runtime.backoff_cap_ms`.
    pub backoff_cap: Duration,
    /// `runtime.restart_budget`: restarts allowed within the window before the engine stops.
    pub restart_budget: u32,
    /// `runtime.restart_window_secs`.
    pub restart_window: Duration,
    /// `runtime.stop_deadline_ms`: how long a worker has to return once told to stop.
    pub stop_deadline: Duration,
    /// `runtime.heartbeat_limit_ms`: a worker silent for longer is declared hung.
    pub heartbeat_limit: Duration,
    /// `[runtime.heartbeat_limits]`: per-worker overrides.
    pub heartbeat_limits: BTreeMap<String, Duration>,
}

impl RuntimeConfig {
    /// The heartbeat limit of the worker called `name`.
    pub fn heartbeat_limit_for(&self, name: &str) -> Duration {
        self.heartbeat_limits.get(name).copied().unwrap_or(self.heartbeat_limit)
    }
}

/// `[heartbeat]`: the engine's own liveness record (Redis, store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatConfig {
    /// `heartbeat.interval_secs`.
    pub interval: Duration,
}

/// `[pnl]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PnlConfig {
    /// `pnl.refresh_ms`: the PnL refresher's cadence (account rules are also checked per tick).
    pub refresh: Duration,
}

/// `[host]`: host tuning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostConfig {
    /// `host.pin`: worker name → CPU core id (empty = no pinning).
    pub pin: BTreeMap<String, usize>,
    /// `host.mlockall`: lock the process's memory (needs `LimitMEMLOCK`/`CAP_IPC_LOCK`).
    pub mlockall: bool,
    /// `host.busy_poll`: the tick reader, the exit engine and the order router spin on their
    /// inputs instead of sleeping (each must be pinned; see [`HostConfig::BUSY_POLL_WORKERS`]).
    pub busy_poll: bool,
}

impl HostConfig {
    /// The workers that spin under `host.busy_poll`, each of which must be pinned.
    pub const BUSY_POLL_WORKERS: [&'static str; 3] = ["tick_reader", "exit_engine", "order_router"];

    /// Whether `worker` spins (busy polling on and the worker one of the spinning ones).
    pub fn spins(&self, worker: &str) -> bool {
        self.busy_poll && Self::BUSY_POLL_WORKERS.contains(&worker)
    }

    /// Whether a spinning `worker` shares its core with another spinning worker: it then yields
    /// the core on each empty poll instead of only pausing the CPU, so that the other one runs.
    pub fn shares_core(&self, worker: &str) -> bool {
        let Some(core) = self.pin.get(worker) else { return false };
        Self::BUSY_POLL_WORKERS.iter().any(|w| *w != worker && self.pin.get(*w) == Some(core))
    }
}

/// `[instruments]`: where the instrument master comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstrumentsConfig {
    /// `instruments.master_file`: always used when set.
    pub master_file: Option<PathBuf>,
    /// `instruments.master_url` (resolved default); `""` = none.
    pub master_url: String,
    /// Live mode with a URL: download once per trading day.
    pub download: bool,
    /// `instruments.download_timeout_secs`.
    pub download_timeout: Duration,
    /// `instruments.reload_time` (IST).
    pub reload_time: TimeOfDay,
}
/// `[alerts]`: where critical and warning alerts are delivered besides the log, the metrics and
/// the event stream. No target: nothing is sent (and no worker runs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertsConfig {
    /// `alerts.dedupe_window_secs`: alerts of the same code within this window are sent once;
    /// the next one after it carries the count of those held back.
    pub dedupe_window: Duration,
    /// `alerts.queue`: alerts waiting for the notifier at most; more are dropped (and counted).
    pub queue: usize,
    /// `[[alerts.targets]]`.
    pub targets: Vec<AlertTargetConfig>,
}

/// One `[[alerts.targets]]` entry. Its URL (webhook, Slack) or bot token (Telegram) is a
/// secret: [`AlertTargetConfig::secret_key`] names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertTargetConfig {
    /// `name`: `[a-z0-9_]`, unique; the `target` label of the metrics.
    pub name: String,
    /// `kind`.
    pub kind: AlertTargetKind,
    /// `min_severity`.
    pub min_severity: AlertSeverity,
    /// `chat_id` (Telegram only).
    pub chat_id: String,
    /// `api_url` (Telegram only): the bot API's base, `https://api.telegram.org` by default.
    pub api_url: Url,
    /// `rate_per_minute`: the rate limit's refill.
    pub rate_per_minute: u32,
    /// `burst`: how many may go at once.
    pub burst: u32,
    /// `timeout_ms`: the whole request, connect to last byte.
    pub timeout: Duration,
    /// `max_attempts`: attempts per alert before it is given up.
    pub max_attempts: u32,
    /// `backoff_base_ms`: the wait before the first retry, doubling per retry.
    pub backoff_base: Duration,
    /// `backoff_cap_ms`: the longest wait between retries (a `Retry-After` may ask for longer).
    pub backoff_cap: Duration,
}

impl AlertTargetConfig {
    /// The secrets key holding this target's URL (`SCALPER_ALERT_<NAME>_URL`) or Telegram bot
    /// token (`SCALPER_ALERT_<NAME>_BOT_TOKEN`).
    pub fn secret_key(&self) -> String {
        let suffix = match self.kind {
            AlertTargetKind::Telegram => "BOT_TOKEN",
            AlertTargetKind::Webhook | AlertTargetKind::Slack => "URL",
        };
        format!("{ALERT_SECRET_PREFIX}{}_{suffix}", self.name.to_ascii_uppercase())
    }
}

/// Secrets keys of alert targets start with this.
pub const ALERT_SECRET_PREFIX: &str = "SCALPER_ALERT_";
