//! Turns the file as written (`raw.rs`) into the typed [`Config`] (`types.rs`), applying every
//! range and cross-key rule and collecting every problem with its key path, so that an
//! operator fixes a file in one pass. Pure: no I/O, no environment.
//!
//! This file holds the top level, the connections (`[http]`, `[feed]`, `[broker]`, `[sim]`)
//! and the rules of each mode; `trading.rs` the trading rules (`[risk]`, `[limits]`,
//! `[session]`, `[entries]`); `services.rs` storage and supervision (`[store]`, `[redis]`,
//! `[instance]`, `[runtime]`); `alerts.rs` `[alerts]`; `[exit_retry]` is here.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::domain::{Bp, Paise, TimeOfDay};
use crate::exec::exit_retry::ExitRetryPolicy;
use crate::exec::paper::PaperParams;
use crate::pnl::charges::ChargeSchedule;

mod alerts;
mod services;
mod trading;

use services::{instance, redis, runtime, store};
use trading::{entries, limits, risk, session};

use super::ConfigErrors;
use super::raw::{RawConfig, RawExitRetry, RawFeed};
use super::types::*;
use super::value::{Collector, is_loopback_url};

/// Dhan accepts at most this many instruments per feed connection (spec dhan-v2 §5).
const MAX_FEED_INSTRUMENTS: usize = 5_000;
/// The shortest 429 cool-off allowed in live mode (spec dhan-v2 §1: handshake 429s are
/// account-wide; retrying sooner invites a block).
const MIN_LIVE_COOLOFF_429_SECS: i64 = 60;
const MAX_PCT: Bp = Bp(1_000_000); // 10 000 %: a sanity bound, not a rule of the spec
const HUNDRED_PCT: Bp = Bp(10_000);
/// Request bodies are small JSON commands; 16 MiB is already far more than any needs.
const MAX_BODY_BYTES: i64 = 16 << 20;
/// An hour: a startup reconciliation failing longer than that is long past alerting.
const STARTUP_RECONCILE_ALERT_MAX_SECS: i64 = 3_600;
/// `broker.keep_warm_ms` at most: below the REST pool's idle age (4 s), past which a pooled
/// connection is not reused (so warming it later would only open a new one each time).
const KEEP_WARM_MAX_MS: i64 = 3_900;

/// Path of the in-process simulator's endpoints on its one listening socket.
pub const SIM_FEED_PATH: &str = "/";
pub const SIM_REST_PATH: &str = "/v2";
pub const SIM_ORDER_UPDATE_PATH: &str = "/order-update";

pub(super) fn validate(raw: &RawConfig) -> Result<Config, ConfigErrors> {
    let mut c = Collector::new();
    let mode = raw.mode;
    let live = mode == Mode::Live;

    let data_dir = PathBuf::from(raw.data_dir.trim());
    if raw.data_dir.trim().is_empty() {
        c.push("data_dir", "must not be empty");
    }
    let secrets = SecretsConfig { file: non_empty(&raw.secrets.file).map(PathBuf::from) };
    let http = http(&mut c, raw);
    let source = raw.feed.source.unwrap_or(if live { FeedSource::Dhan } else { FeedSource::Sim });
    let sim = sim(&mut c, raw, source);
    let feed = feed(&mut c, &raw.feed, source, &sim, live);
    let broker = broker(&mut c, raw, live);
    let paper = PaperParams {
        initial_cash: c
            .rupees(
                "paper.initial_cash_rupees",
                &raw.paper.initial_cash_rupees,
                Paise(1),
                "must be above 0",
            )
            .unwrap_or_default(),
        slippage_ticks: c
            .int("paper.slippage_ticks", raw.paper.slippage_ticks, 0, 1_000)
            .unwrap_or(0),
        tick_size: c
            .rupees(
                "paper.tick_size_rupees",
                &raw.paper.tick_size_rupees,
                Paise(1),
                "must be above 0",
            )
            .unwrap_or_default(),
    };
    let risk = risk(&mut c, &raw.risk);
    let limits = limits(&mut c, raw, live);
    let session = session(&mut c, raw);
    let ch = &raw.charges;
    let charges = ChargeSchedule {
        brokerage_per_order: c
            .rupees(
                "charges.brokerage_per_order_rupees",
                &ch.brokerage_per_order_rupees,
                Paise(0),
                "must not be negative",
            )
            .unwrap_or_default(),
        stt_sell: c.rate("charges.stt_sell_pct", &ch.stt_sell_pct).unwrap_or_default(),
        exchange: c.rate("charges.exchange_txn_pct", &ch.exchange_txn_pct).unwrap_or_default(),
        sebi: c.rate("charges.sebi_pct", &ch.sebi_pct).unwrap_or_default(),
        stamp_buy: c.rate("charges.stamp_buy_pct", &ch.stamp_buy_pct).unwrap_or_default(),
        gst: c.rate("charges.gst_pct", &ch.gst_pct).unwrap_or_default(),
    };
    let entries = entries(&mut c, raw, &sim, &broker, live);
    let store = store(&mut c, raw, &data_dir);
    let heartbeat = HeartbeatConfig {
        interval: c
            .secs("heartbeat.interval_secs", raw.heartbeat.interval_secs, 1)
            .unwrap_or_default(),
    };
    let redis = redis(&mut c, raw, &heartbeat);
    let instance = instance(&mut c, raw);
    let runtime = runtime(&mut c, raw);
    let pnl = PnlConfig {
        refresh: c.millis("pnl.refresh_ms", raw.pnl.refresh_ms, 1).unwrap_or_default(),
    };
    let mut pin = BTreeMap::new();
    for (name, core) in &raw.host.pin {
        if let Some(id) = c.int(&format!("host.pin.{name}"), *core, 0, 4_095) {
            pin.insert(name.clone(), id as usize);
        }
    }
    if raw.host.busy_poll {
        let missing: Vec<&str> = HostConfig::BUSY_POLL_WORKERS
            .iter()
            .copied()
            .filter(|w| !raw.host.pin.contains_key(*w))
            .collect();
        if !missing.is_empty() {
            let keys: Vec<String> = missing.iter().map(|w| format!("host.pin.{w}")).collect();
            c.push(
                "host.busy_poll",
                format!("spinning workers must be pinned to CPU cores: set {}", keys.join(", ")),
            );
        }
    }
    let host = HostConfig { pin, mlockall: raw.host.mlockall, busy_poll: raw.host.busy_poll };
    let exit_retry = exit_retry(&mut c, &raw.exit_retry);
    let instruments = instruments(&mut c, raw, &broker, live);
    let alerts = alerts::alerts(&mut c, &raw.alerts, &runtime);

    mode_rules(&mut c, mode, &feed, &broker);

    if !c.is_empty() {
        return Err(c.into_errors());
    }
    Ok(Config {
        mode,
        data_dir,
        secrets,
        http,
        feed,
        broker,
        sim,
        paper,
        risk,
        limits,
        session,
        charges,
        entries,
        store,
        redis,
        instance,
        runtime,
        heartbeat,
        pnl,
        host,
        instruments,
        exit_retry,
        alerts,
    })
}

/// `[instruments]`: the default URL is Dhan's detailed master when orders go to Dhan, none when
/// they go to a loopback simulator (which shares its own master); downloads happen in live mode
/// only.
fn instruments(
    c: &mut Collector,
    raw: &RawConfig,
    broker: &BrokerConfig,
    live: bool,
) -> InstrumentsConfig {
    let r = &raw.instruments;
    let master_url = match &r.master_url {
        Some(text) if text.trim().is_empty() => String::new(),
        Some(text) => c
            .url("instruments.master_url", text, &["http", "https"])
            .map(|u| u.to_string())
            .unwrap_or_default(),
        None if is_loopback_url(&broker.rest_url) => String::new(),
        None => crate::instruments::source::DHAN_DETAILED_URL.to_string(),
    };
    let master_file = non_empty(&r.master_file).map(PathBuf::from);
    InstrumentsConfig {
        download: live && master_file.is_none() && !master_url.is_empty(),
        master_file,
        master_url,
        download_timeout: c
            .secs("instruments.download_timeout_secs", r.download_timeout_secs, 1)
            .unwrap_or_default(),
        reload_time: c
            .time_of_day("instruments.reload_time", &r.reload_time)
            .unwrap_or(TimeOfDay(0)),
    }
}

/// `[exit_retry]`: every bound is explicit, so no duration can wrap.
fn exit_retry(c: &mut Collector, r: &RawExitRetry) -> ExitRetryPolicy {
    let ms = |v: Option<i64>| Duration::from_millis(v.unwrap_or(1) as u64);
    let base = c.int("exit_retry.backoff_base_ms", r.backoff_base_ms, 1, 60_000);
    let cap = c.int("exit_retry.backoff_cap_ms", r.backoff_cap_ms, 1, 600_000);
    if let (Some(b), Some(k)) = (base, cap)
        && k < b
    {
        c.push("exit_retry.backoff_cap_ms", format!("{k} is below exit_retry.backoff_base_ms {b}"));
    }
    let blocked = c.int("exit_retry.blocked_retry_secs", r.blocked_retry_secs, 1, 3_600);
    let max = c.int("exit_retry.max_orders_per_window", r.max_orders_per_window, 1, 1_000);
    let window = c.int("exit_retry.window_secs", r.window_secs, 1, 3_600);
    ExitRetryPolicy {
        backoff_base: ms(base),
        backoff_cap: ms(cap),
        blocked_retry: ms(blocked.map(|s| s * 1_000)),
        max_orders: max.unwrap_or(1) as u32,
        window: ms(window.map(|s| s * 1_000)),
    }
}

fn non_empty(s: &str) -> Option<&str> {
    let t = s.trim();
    (!t.is_empty()).then_some(t)
}

/// Stands in for a value that failed to parse; never returned (an error was recorded).
fn placeholder_url() -> Url {
    Url::parse("http://invalid.invalid/").expect("a constant URL parses")
}

fn http(c: &mut Collector, raw: &RawConfig) -> HttpConfig {
    let h = &raw.http;
    let listen =
        c.socket_addr("http.listen", &h.listen).unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
    if !listen.ip().is_loopback() && !h.allow_remote {
        c.push(
            "http.listen",
            format!("{listen} is not a loopback address; set http.allow_remote = true to serve other hosts"),
        );
    }
    HttpConfig {
        listen,
        max_body_bytes: c
            .int("http.max_body_bytes", h.max_body_bytes, 1, MAX_BODY_BYTES)
            .unwrap_or(1) as usize,
        allow_remote: h.allow_remote,
    }
}

fn sim(c: &mut Collector, raw: &RawConfig, source: FeedSource) -> SimConfig {
    let s = &raw.sim;
    let enabled = s.enabled.unwrap_or(source == FeedSource::Sim);
    let listen =
        c.socket_addr("sim.listen", &s.listen).unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
    if !listen.ip().is_loopback() {
        c.push(
            "sim.listen",
            format!("{listen} is not a loopback address; the simulator serves this host only"),
        );
    }
    if s.client_id.is_empty() {
        c.push("sim.client_id", "must not be empty");
    }
    if s.access_token.is_empty() {
        c.push("sim.access_token", "must not be empty");
    }
    let mut instruments = Vec::new();
    let mut seen = HashSet::new();
    for (i, inst) in s.instruments.iter().enumerate() {
        let key = c.instrument(&format!("sim.instruments[{i}].instrument"), &inst.instrument);
        let price = c.rupees(
            &format!("sim.instruments[{i}].price"),
            &inst.price,
            Paise(1),
            "must be above 0",
        );
        if let Some(k) = key
            && !seen.insert(k)
        {
            c.push(format!("sim.instruments[{i}].instrument"), format!("{k} is listed twice"));
        }
        if let (Some(instrument), Some(price)) = (key, price) {
            instruments.push(SimInstrument { instrument, price });
        }
    }
    if enabled && s.instruments.is_empty() && non_empty(&s.scenario).is_none() {
        c.push(
            "sim.instruments",
            "the simulator needs at least one instrument (or a sim.scenario)",
        );
    }
    if s.broker && !enabled {
        c.push("sim.broker", "the simulator's broker half needs sim.enabled = true");
    }
    SimConfig {
        enabled,
        listen,
        client_id: s.client_id.clone(),
        access_token: s.access_token.clone(),
        seed: c.int("sim.seed", s.seed, 0, i64::MAX).unwrap_or(0) as u64,
        tick_interval: c.millis("sim.tick_interval_ms", s.tick_interval_ms, 1).unwrap_or_default(),
        instruments,
        scenario: non_empty(&s.scenario).map(PathBuf::from),
        scenario_speed: s.scenario_speed,
        transit: c.millis("sim.transit_ms", s.transit_ms, 0).unwrap_or_default(),
        broker: s.broker,
        master_file: non_empty(&s.master_file).map(PathBuf::from),
    }
}

/// A URL with port 0 stands for the in-process simulator, whose port is known only once it is
/// bound (see `Config::bind_simulator`).
fn check_sim_port(c: &mut Collector, key: &str, url: &Url, sim_serves_it: bool, what: &str) {
    if url.port() == Some(0) {
        if !is_loopback_url(url) {
            c.push(
                key,
                "port 0 is only meaningful on loopback (it stands for the in-process simulator)",
            );
        } else if !sim_serves_it {
            c.push(key, format!("port 0 stands for the in-process simulator, which needs {what}"));
        }
    }
}

fn feed(
    c: &mut Collector,
    f: &RawFeed,
    source: FeedSource,
    sim: &SimConfig,
    live: bool,
) -> FeedConfig {
    let url = match (&f.url, source) {
        (Some(text), _) => c.url("feed.url", text, &["ws", "wss"]),
        (None, FeedSource::Sim) => {
            if !sim.enabled {
                c.push(
                    "feed.url",
                    "feed.source = \"sim\" with sim.enabled = false needs the ws:// url of an external simulator",
                );
                None
            } else {
                Url::parse(&format!("ws://{}{SIM_FEED_PATH}", sim.listen)).ok()
            }
        }
        (None, FeedSource::Dhan) => Url::parse("wss://api-feed.dhan.co").ok(),
    }
    .unwrap_or_else(placeholder_url);
    check_sim_port(c, "feed.url", &url, sim.enabled, "sim.enabled = true");

    let mut watchlist = Vec::new();
    let mut seen = HashSet::new();
    for (i, text) in f.watchlist.iter().enumerate() {
        let key = format!("feed.watchlist[{i}]");
        if let Some(k) = c.instrument(&key, text) {
            if seen.insert(k) {
                watchlist.push(k);
            } else {
                c.push(key, format!("{k} is listed twice"));
            }
        }
    }
    if watchlist.len() > MAX_FEED_INSTRUMENTS {
        c.push(
            "feed.watchlist",
            format!(
                "{} instruments; Dhan allows at most {MAX_FEED_INSTRUMENTS} per connection",
                watchlist.len()
            ),
        );
    }
    let reconnect_base = c.millis("feed.reconnect_base_ms", f.reconnect_base_ms, 1);
    let reconnect_cap = c.millis("feed.reconnect_cap_ms", f.reconnect_cap_ms, 1);
    if let (Some(b), Some(cap)) = (reconnect_base, reconnect_cap)
        && b > cap
    {
        c.push(
            "feed.reconnect_cap_ms",
            format!(
                "{} is below feed.reconnect_base_ms {}",
                f.reconnect_cap_ms, f.reconnect_base_ms
            ),
        );
    }
    let min_cooloff = if live { MIN_LIVE_COOLOFF_429_SECS } else { 1 };
    let cooloff_429 = if live && f.cooloff_429_secs < MIN_LIVE_COOLOFF_429_SECS {
        c.push(
            "feed.cooloff_429_secs",
            format!(
                "{} is below {MIN_LIVE_COOLOFF_429_SECS}, the least live mode allows (Dhan blocks accounts that retry handshakes sooner)",
                f.cooloff_429_secs
            ),
        );
        None
    } else {
        c.secs("feed.cooloff_429_secs", f.cooloff_429_secs, min_cooloff)
    };
    FeedConfig {
        source,
        url,
        mode: f.mode,
        watchlist,
        connect_timeout: c
            .millis("feed.connect_timeout_ms", f.connect_timeout_ms, 1)
            .unwrap_or_default(),
        stall_timeout: c.millis("feed.stall_timeout_ms", f.stall_timeout_ms, 1).unwrap_or_default(),
        reconnect_base: reconnect_base.unwrap_or_default(),
        reconnect_cap: reconnect_cap.unwrap_or_default(),
        cooloff_429: cooloff_429.unwrap_or_default(),
        backoff_805: c.secs("feed.backoff_805_secs", f.backoff_805_secs, 1).unwrap_or_default(),
        position_queue: c.size("feed.position_queue", f.position_queue, 1).unwrap_or(1),
    }
}

fn broker(c: &mut Collector, raw: &RawConfig, live: bool) -> BrokerConfig {
    let b = &raw.broker;
    let kind = b.kind.unwrap_or(if live { BrokerKind::Dhan } else { BrokerKind::Paper });
    let rest_url =
        c.url("broker.rest_url", &b.rest_url, &["http", "https"]).unwrap_or_else(placeholder_url);
    let order_update_url = c
        .url("broker.order_update_url", &b.order_update_url, &["ws", "wss"])
        .unwrap_or_else(placeholder_url);
    if kind == BrokerKind::Dhan {
        let sim_broker = raw.sim.broker;
        check_sim_port(c, "broker.rest_url", &rest_url, sim_broker, "sim.broker = true");
        check_sim_port(
            c,
            "broker.order_update_url",
            &order_update_url,
            sim_broker,
            "sim.broker = true",
        );
    }
    BrokerConfig {
        kind,
        rest_url,
        order_update_url,
        product_type: b.product_type,
        connect_timeout: c
            .millis("broker.connect_timeout_ms", b.connect_timeout_ms, 1)
            .unwrap_or_default(),
        request_timeout: c
            .millis("broker.request_timeout_ms", b.request_timeout_ms, 1)
            .unwrap_or_default(),
        resolve_window: c
            .millis("broker.resolve_window_ms", b.resolve_window_ms, 1)
            .unwrap_or_default(),
        breaker_failures: c.count("broker.breaker_failures", b.breaker_failures, 1).unwrap_or(1),
        breaker_open: c
            .secs("broker.breaker_open_secs", b.breaker_open_secs, 1)
            .unwrap_or_default(),
        startup_reconcile_alert: c
            .int(
                "broker.startup_reconcile_alert_secs",
                b.startup_reconcile_alert_secs,
                1,
                STARTUP_RECONCILE_ALERT_MAX_SECS,
            )
            .map(|v| std::time::Duration::from_secs(v as u64))
            .unwrap_or_default(),
        // Below the REST pool's idle age (4 s), past which a pooled connection is not reused.
        keep_warm: c
            .int("broker.keep_warm_ms", b.keep_warm_ms, 0, KEEP_WARM_MAX_MS)
            .map(|v| std::time::Duration::from_millis(v as u64))
            .unwrap_or_default(),
    }
}

/// What paper and live mode each require of the feed and the broker.
fn mode_rules(c: &mut Collector, mode: Mode, feed: &FeedConfig, broker: &BrokerConfig) {
    match mode {
        Mode::Paper => {
            if broker.kind != BrokerKind::Paper {
                c.push(
                    "broker.kind",
                    "paper mode trades with the paper broker: set broker.kind = \"paper\" (or mode = \"live\" to send orders to Dhan or the simulator's broker)",
                );
            }
        }
        Mode::Live => {
            if broker.kind != BrokerKind::Dhan {
                c.push("broker.kind", "live mode sends orders to Dhan: set broker.kind = \"dhan\"");
            }
            if feed.source != FeedSource::Dhan {
                c.push(
                    "feed.source",
                    "live mode reads the feed with the Dhan client: set feed.source = \"dhan\" (feed.url may point at a loopback simulator)",
                );
            }
            // Either everything talks to a simulator on this host, or everything talks to Dhan:
            // real orders on simulated prices (or the reverse) is never what anyone wants.
            let endpoints = [
                ("feed.url", &feed.url),
                ("broker.rest_url", &broker.rest_url),
                ("broker.order_update_url", &broker.order_update_url),
            ];
            let local: Vec<&str> =
                endpoints.iter().filter(|(_, u)| is_loopback_url(u)).map(|(k, _)| *k).collect();
            if !local.is_empty() && local.len() != endpoints.len() {
                let remote: Vec<&str> = endpoints
                    .iter()
                    .filter(|(_, u)| !is_loopback_url(u))
                    .map(|(k, _)| *k)
                    .collect();
                c.push(
                    "mode",
                    format!(
                        "live mode must not mix a loopback simulator ({}) with remote endpoints ({})",
                        local.join(", "),
                        remote.join(", ")
                    ),
                );
            }
            if local.is_empty() {
                for (key, url, secure) in [
                    ("feed.url", &feed.url, "wss"),
                    ("broker.rest_url", &broker.rest_url, "https"),
                    ("broker.order_update_url", &broker.order_update_url, "wss"),
                ] {
                    if url.scheme() != secure {
                        c.push(key, format!("live mode needs {secure}:// for a remote endpoint"));
                    }
                }
            }
        }
    }
}
