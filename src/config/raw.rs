//! The config file's layout, as written: one serde struct per table, `deny_unknown_fields`
//! everywhere, a default for every key. Values that need an exact or checked parse (decimals,
//! times, instruments, URLs, addresses, ranges) stay loose here (text, `i64`) so that
//! `validate.rs` can report every problem at once instead of stopping at the first.
//!
//! Defaults that depend on other keys (`broker.kind`, `feed.source`, `sim.enabled`,
//! `limits.max_daily_loss_rupees`, `store.sqlite_path`, ...) are `Option`s resolved in
//! `validate.rs`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::secrets::Secret;
use super::types::{
    AlertSeverity, AlertTargetKind, BrokerKind, FeedMode, FeedSource, LeaseKind, Mode, ProductType,
    ScenarioSpeed, StoreKind,
};
use super::value::Dec;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    /// `"paper"` (default) or `"live"`.
    pub mode: Mode,
    /// Directory for state files. Default `"data"`.
    pub data_dir: String,
    pub secrets: RawSecrets,
    pub http: RawHttp,
    pub feed: RawFeed,
    pub broker: RawBroker,
    pub sim: RawSim,
    pub paper: RawPaper,
    pub risk: RawRisk,
    pub limits: RawLimits,
    pub session: RawSession,
    pub charges: RawCharges,
    pub entries: RawEntries,
    pub store: RawStore,
    pub redis: RawRedis,
    pub instance: RawInstance,
    pub runtime: RawRuntime,
    pub heartbeat: RawHeartbeat,
    pub pnl: RawPnl,
    pub host: RawHost,
    pub exit_retry: RawExitRetry,
    pub instruments: RawInstruments,
    pub alerts: RawAlerts,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            mode: Mode::Paper,
            data_dir: "data".into(),
            secrets: RawSecrets::default(),
            http: RawHttp::default(),
            feed: RawFeed::default(),
            broker: RawBroker::default(),
            sim: RawSim::default(),
            paper: RawPaper::default(),
            risk: RawRisk::default(),
            limits: RawLimits::default(),
            session: RawSession::default(),
            charges: RawCharges::default(),
            entries: RawEntries::default(),
            store: RawStore::default(),
            redis: RawRedis::default(),
            instance: RawInstance::default(),
            runtime: RawRuntime::default(),
            heartbeat: RawHeartbeat::default(),
            pnl: RawPnl::default(),
            host: RawHost::default(),
            exit_retry: RawExitRetry::default(),
            instruments: RawInstruments::default(),
            alerts: RawAlerts::default(),
        }
    }
}

/// `[secrets]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSecrets {
    /// Path of a `KEY=VALUE` file with `DHAN_CLIENT_ID`, `DHAN_ACCESS_TOKEN`,
    /// `SCALPER_CONTROL_TOKEN`, `PGPASSWORD`, `REDIS_PASSWORD`. `""` = none. The environment
    /// wins over the file. The file must not be readable or writable by group or others.
    pub file: String,
}

/// `[http]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHttp {
    /// IP and port to bind. Default `"127.0.0.1:8080"`; port 0 picks a free port.
    pub listen: String,
    /// Largest accepted request body. Default 65536.
    pub max_body_bytes: i64,
    /// Must be true to bind a non-loopback address. Default false.
    pub allow_remote: bool,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp { listen: "127.0.0.1:8080".into(), max_body_bytes: 65_536, allow_remote: false }
    }
}

/// `[feed]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawFeed {
    /// `"sim"` or `"dhan"`. Default: `"sim"` in paper mode, `"dhan"` in live mode.
    pub source: Option<FeedSource>,
    /// Feed WebSocket. Default `wss://api-feed.dhan.co` for dhan; for sim, unset means the
    /// in-process simulator and a `ws://` url means an external simulator.
    pub url: Option<String>,
    /// `"ticker"`, `"quote"` (default) or `"full"`.
    pub mode: FeedMode,
    /// Instruments to subscribe besides open positions, `"SEGMENT:SECURITY_ID"`.
    pub watchlist: Vec<String>,
    /// Default 10000.
    pub connect_timeout_ms: i64,
    /// Default 45000.
    pub stall_timeout_ms: i64,
    /// Default 2000.
    pub reconnect_base_ms: i64,
    /// Default 60000.
    pub reconnect_cap_ms: i64,
    /// Default 60; at least 60 in live mode.
    pub cooloff_429_secs: i64,
    /// Default 120.
    pub backoff_805_secs: i64,
    /// Default 65536.
    pub position_queue: i64,
}

impl Default for RawFeed {
    fn default() -> Self {
        RawFeed {
            source: None,
            url: None,
            mode: FeedMode::Quote,
            watchlist: Vec::new(),
            connect_timeout_ms: 10_000,
            stall_timeout_ms: 45_000,
            reconnect_base_ms: 2_000,
            reconnect_cap_ms: 60_000,
            cooloff_429_secs: 60,
            backoff_805_secs: 120,
            position_queue: 65_536,
        }
    }
}

/// `[broker]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawBroker {
    /// `"paper"` or `"dhan"`. Default: `"paper"` in paper mode, `"dhan"` in live mode.
    pub kind: Option<BrokerKind>,
    /// Default `https://api.dhan.co/v2`.
    pub rest_url: String,
    /// Default `wss://api-order-update.dhan.co`.
    pub order_update_url: String,
    /// `"INTRADAY"` (default) or `"MARGIN"`.
    pub product_type: ProductType,
    /// Default 3000.
    pub connect_timeout_ms: i64,
    /// Default 5000.
    pub request_timeout_ms: i64,
    /// Default 5000.
    pub resolve_window_ms: i64,
    /// Default 5.
    pub breaker_failures: i64,
    /// Default 10.
    pub breaker_open_secs: i64,
    /// Default 30.
    pub startup_reconcile_alert_secs: i64,
    /// Default 2000; 0 = off.
    pub keep_warm_ms: i64,
}

impl Default for RawBroker {
    fn default() -> Self {
        RawBroker {
            kind: None,
            rest_url: "https://api.dhan.co/v2".into(),
            order_update_url: "wss://api-order-update.dhan.co".into(),
            product_type: ProductType::Intraday,
            connect_timeout_ms: 3_000,
            request_timeout_ms: 5_000,
            resolve_window_ms: 5_000,
            breaker_failures: 5,
            breaker_open_secs: 10,
            startup_reconcile_alert_secs: 30,
            keep_warm_ms: 2_000,
        }
    }
}

/// `[sim]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSim {
    /// Start the simulator in-process. Default: true when `feed.source = "sim"`.
    pub enabled: Option<bool>,
    /// Loopback address. Default `"127.0.0.1:0"`.
    pub listen: String,
    /// Client id the simulator expects. Default `"1000000001"`.
    pub client_id: Secret,
    /// Access token the simulator expects. Default `"sim-access-token"`.
    pub access_token: Secret,
    /// Random-walk seed. Default 1.
    pub seed: i64,
    /// Default 250.
    pub tick_interval_ms: i64,
    /// `[{ instrument = "NSE_FNO:52175", price = "120.00" }, ...]`.
    pub instruments: Vec<RawSimInstrument>,
    /// A `ticks.csv` to replay instead of the random walk. `""` = random walk.
    pub scenario: String,
    /// `"realtime"` (default) or `"fast"`.
    pub scenario_speed: ScenarioSpeed,
    /// Default 200.
    pub transit_ms: i64,
    /// Also serve REST + order-update socket. Default false.
    pub broker: bool,
    /// Dhan detailed instrument master the simulator trades by (lots, ticks, freeze, band).
    /// `""` (default) = a generated one for `sim.instruments` (lot 75, tick 0.05, freeze 1800).
    pub master_file: String,
}

impl Default for RawSim {
    fn default() -> Self {
        let inst = |key: &str, price: &str| RawSimInstrument {
            instrument: key.into(),
            price: Dec::new(price),
        };
        RawSim {
            enabled: None,
            listen: "127.0.0.1:0".into(),
            client_id: Secret::new("1000000001"),
            access_token: Secret::new("sim-access-token"),
            seed: 1,
            tick_interval_ms: 250,
            instruments: vec![
                inst("IDX_I:13", "24500.00"),
                inst("NSE_FNO:52175", "120.00"),
                inst("NSE_FNO:52176", "95.50"),
            ],
            scenario: String::new(),
            scenario_speed: ScenarioSpeed::Realtime,
            transit_ms: 200,
            broker: false,
            master_file: String::new(),
        }
    }
}

/// One `sim.instruments` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSimInstrument {
    pub instrument: String,
    /// Opening price in rupees.
    pub price: Dec,
}

/// `[paper]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawPaper {
    /// Default 100000.
    pub initial_cash_rupees: Dec,
    /// Default 0.
    pub slippage_ticks: i64,
    /// Default "0.05".
    pub tick_size_rupees: Dec,
}

impl Default for RawPaper {
    fn default() -> Self {
        RawPaper {
            initial_cash_rupees: Dec::new("100000"),
            slippage_ticks: 0,
            tick_size_rupees: Dec::new("0.05"),
        }
    }
}

/// `[risk]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRisk {
    pub stop_loss_pct: Dec,
    pub take_profit_pct: Dec,
    pub trail_drop_pct: Dec,
    pub trail_activation_rupees: Dec,
    pub peak_drawdown_pct: Dec,
    pub peak_drawdown_activation_pct: Dec,
    pub ratchet: Vec<RawTier>,
    pub stale_after_ms: i64,
    pub stale_exit_after_secs: i64,
    pub max_jump_pct: Dec,
    pub jump_confirm_window_ms: i64,
}

impl Default for RawRisk {
    fn default() -> Self {
        let tier =
            |at: &str, off: &str| RawTier { at_pct: Dec::new(at), stop_offset_pct: Dec::new(off) };
        RawRisk {
            stop_loss_pct: Dec::new("10"),
            take_profit_pct: Dec::new("20"),
            trail_drop_pct: Dec::new("3"),
            trail_activation_rupees: Dec::new("1000"),
            peak_drawdown_pct: Dec::new("5"),
            peak_drawdown_activation_pct: Dec::new("5"),
            ratchet: vec![
                tier("10", "-5"),
                tier("15", "0"),
                tier("25", "10"),
                tier("40", "20"),
                tier("60", "30"),
                tier("80", "40"),
                tier("120", "60"),
            ],
            stale_after_ms: 3_000,
            stale_exit_after_secs: 0,
            max_jump_pct: Dec::new("20"),
            jump_confirm_window_ms: 5_000,
        }
    }
}

/// One `[[risk.ratchet]]` tier.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    pub at_pct: Dec,
    pub stop_offset_pct: Dec,
}

/// `[limits]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLimits {
    /// Default 5000 in paper mode; required in live mode.
    pub max_daily_loss_rupees: Option<Dec>,
    pub max_trades_per_day: i64,
    pub max_open_positions: i64,
    pub reentry_cooldown_secs: i64,
    /// Most lots one entry may carry. Default 0 = no limit.
    pub max_lots_per_order: i64,
    /// Largest value (quantity × price) of one entry. Default "0" = no limit.
    pub max_order_value_rupees: Dec,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_daily_loss_rupees: None,
            max_trades_per_day: 20,
            max_open_positions: 5,
            reentry_cooldown_secs: 180,
            max_lots_per_order: 0,
            max_order_value_rupees: Dec::new("0"),
        }
    }
}

/// `[session]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSession {
    pub square_off_time: String,
    pub entry_cutoff_time: String,
    pub holidays: Vec<String>,
    pub weekends: bool,
}

impl Default for RawSession {
    fn default() -> Self {
        RawSession {
            square_off_time: "15:20:00".into(),
            entry_cutoff_time: "15:15:00".into(),
            holidays: Vec::new(),
            weekends: false,
        }
    }
}

/// `[charges]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCharges {
    pub brokerage_per_order_rupees: Dec,
    pub stt_sell_pct: Dec,
    pub exchange_txn_pct: Dec,
    pub sebi_pct: Dec,
    pub stamp_buy_pct: Dec,
    pub gst_pct: Dec,
}

impl Default for RawCharges {
    fn default() -> Self {
        RawCharges {
            brokerage_per_order_rupees: Dec::new("20"),
            stt_sell_pct: Dec::new("0.1"),
            exchange_txn_pct: Dec::new("0.03503"),
            sebi_pct: Dec::new("0.0001"),
            stamp_buy_pct: Dec::new("0.003"),
            gst_pct: Dec::new("18"),
        }
    }
}

/// `[entries]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawEntries {
    pub demo: bool,
    pub demo_interval_secs: i64,
    pub demo_quantity: i64,
    /// Default: the simulator's tradable instruments.
    pub demo_instruments: Option<Vec<String>>,
}

impl Default for RawEntries {
    fn default() -> Self {
        RawEntries {
            demo: false,
            demo_interval_secs: 20,
            demo_quantity: 75,
            demo_instruments: None,
        }
    }
}

/// `[store]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawStore {
    pub backend: StoreKind,
    /// Default `<data_dir>/scalper.db`.
    pub sqlite_path: Option<String>,
    /// Required for postgres; must not carry a password.
    pub postgres_url: Option<String>,
    /// Default `<data_dir>/spill`.
    pub spill_dir: Option<String>,
    pub queue_capacity: i64,
    pub batch_max: i64,
    pub flush_interval_ms: i64,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            backend: StoreKind::Sqlite,
            sqlite_path: None,
            postgres_url: None,
            spill_dir: None,
            queue_capacity: 65_536,
            batch_max: 512,
            flush_interval_ms: 5,
        }
    }
}

/// `[redis]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRedis {
    pub enabled: bool,
    pub url: String,
    pub key_prefix: String,
    pub heartbeat_ttl_secs: i64,
    /// PEM CA certificate(s) for `rediss://`; default: the bundled web PKI roots.
    pub tls_ca_file: Option<String>,
}

impl Default for RawRedis {
    fn default() -> Self {
        RawRedis {
            enabled: false,
            url: "redis://127.0.0.1:6379/0".into(),
            key_prefix: String::new(),
            heartbeat_ttl_secs: 15,
            tls_ca_file: None,
        }
    }
}

/// `[instance]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawInstance {
    pub lease: LeaseKind,
    pub lease_ttl_ms: i64,
    pub renew_every_ms: i64,
}

impl Default for RawInstance {
    fn default() -> Self {
        RawInstance { lease: LeaseKind::None, lease_ttl_ms: 5_000, renew_every_ms: 1_000 }
    }
}

/// `[runtime]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRuntime {
    pub backoff_base_ms: i64,
    pub backoff_cap_ms: i64,
    pub restart_budget: i64,
    pub restart_window_secs: i64,
    pub stop_deadline_ms: i64,
    pub heartbeat_limit_ms: i64,
    /// Worker name → milliseconds.
    pub heartbeat_limits: BTreeMap<String, i64>,
}

impl Default for RawRuntime {
    fn default() -> Self {
        RawRuntime {
            backoff_base_ms: 10,
            backoff_cap_ms: 5_000,
            restart_budget: 5,
            restart_window_secs: 60,
            stop_deadline_ms: 2_000,
            heartbeat_limit_ms: 5_000,
            heartbeat_limits: BTreeMap::new(),
        }
    }
}

/// `[heartbeat]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHeartbeat {
    pub interval_secs: i64,
}

impl Default for RawHeartbeat {
    fn default() -> Self {
        RawHeartbeat { interval_secs: 10 }
    }
}

/// `[pnl]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawPnl {
    pub refresh_ms: i64,
}

impl Default for RawPnl {
    fn default() -> Self {
        RawPnl { refresh_ms: 1_000 }
    }
}

/// `[host]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHost {
    /// Worker name → CPU core id.
    pub pin: BTreeMap<String, i64>,
    pub mlockall: bool,
    /// The hot workers spin instead of sleeping (needs them pinned).
    pub busy_poll: bool,
}

/// `[exit_retry]`: what a rejected exit leads to.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawExitRetry {
    pub backoff_base_ms: i64,
    pub backoff_cap_ms: i64,
    pub blocked_retry_secs: i64,
    pub max_orders_per_window: i64,
    pub window_secs: i64,
}

impl Default for RawExitRetry {
    fn default() -> Self {
        RawExitRetry {
            backoff_base_ms: 250,
            backoff_cap_ms: 5_000,
            blocked_retry_secs: 60,
            max_orders_per_window: 6,
            window_secs: 60,
        }
    }
}

/// `[instruments]`: Dhan's instrument master (lots, ticks, freeze quantities, bands, symbols).
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawInstruments {
    /// A local detailed master CSV; when set it is always used (and never downloaded).
    pub master_file: String,
    /// Where live mode downloads the master once per trading day. Default: Dhan's detailed CSV
    /// when the broker is Dhan's, none when it is a loopback simulator. `""` = never download.
    pub master_url: Option<String>,
    /// Whole-download timeout. Default 60.
    pub download_timeout_secs: i64,
    /// IST time of the daily reload. Default "08:30:00".
    pub reload_time: String,
}

impl Default for RawInstruments {
    fn default() -> Self {
        RawInstruments {
            master_file: String::new(),
            master_url: None,
            download_timeout_secs: 60,
            reload_time: "08:30:00".into(),
        }
    }
}

/// `[alerts]`: delivery of alerts to people.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAlerts {
    pub dedupe_window_secs: i64,
    pub queue: i64,
    pub targets: Vec<RawAlertTarget>,
}

impl Default for RawAlerts {
    fn default() -> Self {
        RawAlerts { dedupe_window_secs: 300, queue: 1_024, targets: Vec::new() }
    }
}

/// `[[alerts.targets]]`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAlertTarget {
    pub name: String,
    /// Required.
    pub kind: Option<AlertTargetKind>,
    pub min_severity: AlertSeverity,
    pub chat_id: String,
    pub api_url: String,
    pub rate_per_minute: i64,
    pub burst: i64,
    pub timeout_ms: i64,
    pub max_attempts: i64,
    pub backoff_base_ms: i64,
    pub backoff_cap_ms: i64,
}

impl Default for RawAlertTarget {
    fn default() -> Self {
        RawAlertTarget {
            name: String::new(),
            kind: None,
            min_severity: AlertSeverity::Warning,
            chat_id: String::new(),
            api_url: "https://api.telegram.org".into(),
            rate_per_minute: 20,
            burst: 5,
            timeout_ms: 1_500,
            max_attempts: 8,
            backoff_base_ms: 1_000,
            backoff_cap_ms: 60_000,
        }
    }
}
