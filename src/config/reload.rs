//! Live reload: given the running configuration and a newly loaded file, decide whether the
//! new file can be applied without a restart, and say exactly which keys changed.
//!
//! What applies live, and why it is safe:
//! - `[risk]`: the exit rules are evaluated on every tick from the current parameters; the
//!   per-position state (`best_price`, `hwm_pnl`, ratchet stop) does not depend on them, so
//!   new percentages simply apply from the next tick. A ratchet stop only tightens, so a new
//!   tier table never loosens a stop already set.
//! - `[limits]`: checked at each entry and each mark-to-market; a lower daily-loss limit may
//!   halt trading at the next check (which is what lowering it means), a lower trade or
//!   position cap only refuses further entries.
//!
//! Everything else needs a restart: `mode`, `[broker]`, `[feed]`, `[store]`, `[http]`,
//! `[redis]`, `[instance]`, `[runtime]`, `[host]`, `[exit_retry]`, `[alerts]` and `[sim]` are sockets, threads, queues and
//! files built at startup; `[session]` instants are scheduled for the day (moving square-off
//! across "now" could skip or repeat it); `[charges]` and `[paper]` would make the day's
//! accounting mix two schedules; `[secrets]` are read once.
//!
//! The SIGHUP handler calls [`reload_from_file`]; the running config is never modified here.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::domain::{Bp, Paise};
use crate::exec::paper::PaperParams;
use crate::pnl::charges::ChargeSchedule;
use crate::risk::{Limits, RatchetTier, RiskParams, SessionParams};

use super::types::*;
use super::{Config, ConfigErrors};

/// One key whose new value will apply live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// File key path, e.g. `risk.stop_loss_pct`.
    pub key: &'static str,
    pub old: String,
    pub new: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} → {}", self.key, self.old, self.new)
    }
}

/// An accepted reload: the new configuration and what changed (empty if nothing did).
#[derive(Clone, Debug)]
pub struct Reload {
    pub config: Config,
    pub changes: Vec<Change>,
}

/// Why a reload was refused. The running configuration stays as it was.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new configuration is invalid:\n{0}")]
    Invalid(ConfigErrors),
    #[error("the new configuration changes keys that need a restart: {}", keys.join(", "))]
    NeedsRestart { keys: Vec<&'static str> },
}

/// Loads `path` and plans its reload against `running`.
pub fn reload_from_file(running: &Config, path: &Path) -> Result<Reload, ReloadError> {
    plan_reload(running, Config::load(path))
}

/// Decides whether `candidate` (the result of loading the new file) can replace `running`
/// live: refused if it failed validation or changes anything outside `[risk]` and `[limits]`.
pub fn plan_reload(
    running: &Config,
    candidate: Result<Config, ConfigErrors>,
) -> Result<Reload, ReloadError> {
    let mut new = candidate.map_err(ReloadError::Invalid)?;
    // The running config had the in-process simulator's port filled in at startup; the file
    // still says port 0. Compare like with like.
    let (file_sim, bound_sim) = (new.sim.listen, running.sim.listen);
    if file_sim.port() == 0 && bound_sim.port() != 0 && file_sim.ip() == bound_sim.ip() {
        new.bind_simulator(bound_sim);
    }
    let restart = restart_keys(running, &new);
    if !restart.is_empty() {
        return Err(ReloadError::NeedsRestart { keys: restart });
    }
    let changes = live_changes(running, &new);
    Ok(Reload { config: new, changes })
}

/// Text of a value in a change report.
trait Show {
    fn show(&self) -> String;
}

impl Show for Bp {
    /// As a percentage the way it is written in the file: `250` → `2.5`.
    fn show(&self) -> String {
        let s = self.to_string();
        let s = s.trim_end_matches('%');
        if s.contains('.') { s.trim_end_matches('0').to_string() } else { s.to_string() }
    }
}

impl Show for crate::risk::PriceGuardParams {
    fn show(&self) -> String {
        format!("{} % within {} ms", self.max_jump.show(), self.confirm_window_ms)
    }
}

impl Show for Paise {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Show for u32 {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Show for i64 {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Show for Duration {
    fn show(&self) -> String {
        format!("{:?}", self)
    }
}

impl Show for Option<Duration> {
    fn show(&self) -> String {
        self.map_or_else(|| "never".to_string(), |d| d.show())
    }
}

impl Show for Vec<RatchetTier> {
    fn show(&self) -> String {
        let tiers: Vec<String> =
            self.iter().map(|t| format!("{}→{}", t.at.show(), t.stop_offset.show())).collect();
        format!("[{}]", tiers.join(", "))
    }
}

/// Compares the listed fields of two values of `$ty`. The `let` destructures without `..`, so
/// adding a field to the struct without listing it here is a compile error: no change can be
/// silently ignored by a reload.
macro_rules! diff_fields {
    ($out:ident, $a:expr, $b:expr, $ty:ident, $push:expr, { $($field:ident => $key:literal),* $(,)? }) => {{
        let $ty { $($field: _),* } = $a;
        $( if $a.$field != $b.$field { $push(&mut $out, $key, &$a.$field, &$b.$field); } )*
    }};
}

fn live_changes(a: &Config, b: &Config) -> Vec<Change> {
    let mut out = Vec::new();
    fn push<T: Show>(out: &mut Vec<Change>, key: &'static str, old: &T, new: &T) {
        out.push(Change { key, old: old.show(), new: new.show() });
    }
    diff_fields!(out, &a.risk, &b.risk, RiskParams, push, {
        stop_loss => "risk.stop_loss_pct",
        take_profit => "risk.take_profit_pct",
        trail_drop => "risk.trail_drop_pct",
        trail_activation => "risk.trail_activation_rupees",
        peak_drawdown => "risk.peak_drawdown_pct",
        peak_drawdown_activation => "risk.peak_drawdown_activation_pct",
        ratchet => "risk.ratchet",
        stale_after_ms => "risk.stale_after_ms",
        stale_exit_after_secs => "risk.stale_exit_after_secs",
        price_guard => "risk.max_jump_pct / risk.jump_confirm_window_ms",
    });
    diff_fields!(out, &a.limits, &b.limits, Limits, push, {
        max_daily_loss => "limits.max_daily_loss_rupees",
        max_trades_per_day => "limits.max_trades_per_day",
        max_open_positions => "limits.max_open_positions",
        reentry_cooldown_secs => "limits.reentry_cooldown_secs",
        max_lots_per_order => "limits.max_lots_per_order",
        max_order_value => "limits.max_order_value_rupees",
    });
    out
}

fn restart_keys(a: &Config, b: &Config) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    fn push<T>(out: &mut Vec<&'static str>, key: &'static str, _: &T, _: &T) {
        out.push(key);
    }
    // The two live sections are listed so that a new top-level section cannot be forgotten.
    let Config {
        mode: _,
        data_dir: _,
        secrets: _,
        http: _,
        feed: _,
        broker: _,
        sim: _,
        paper: _,
        risk: _,
        limits: _,
        session: _,
        charges: _,
        entries: _,
        store: _,
        redis: _,
        instance: _,
        runtime: _,
        heartbeat: _,
        pnl: _,
        host: _,
        instruments: _,
        exit_retry: _,
        alerts: _,
    } = a;
    if a.mode != b.mode {
        out.push("mode");
    }
    if a.data_dir != b.data_dir {
        out.push("data_dir");
    }
    diff_fields!(out, &a.secrets, &b.secrets, SecretsConfig, push, { file => "secrets.file" });
    diff_fields!(out, &a.http, &b.http, HttpConfig, push, {
        listen => "http.listen",
        max_body_bytes => "http.max_body_bytes",
        allow_remote => "http.allow_remote",
    });
    diff_fields!(out, &a.feed, &b.feed, FeedConfig, push, {
        source => "feed.source",
        url => "feed.url",
        mode => "feed.mode",
        watchlist => "feed.watchlist",
        connect_timeout => "feed.connect_timeout_ms",
        stall_timeout => "feed.stall_timeout_ms",
        reconnect_base => "feed.reconnect_base_ms",
        reconnect_cap => "feed.reconnect_cap_ms",
        cooloff_429 => "feed.cooloff_429_secs",
        backoff_805 => "feed.backoff_805_secs",
        position_queue => "feed.position_queue",
    });
    diff_fields!(out, &a.broker, &b.broker, BrokerConfig, push, {
        kind => "broker.kind",
        rest_url => "broker.rest_url",
        order_update_url => "broker.order_update_url",
        product_type => "broker.product_type",
        connect_timeout => "broker.connect_timeout_ms",
        request_timeout => "broker.request_timeout_ms",
        resolve_window => "broker.resolve_window_ms",
        breaker_failures => "broker.breaker_failures",
        breaker_open => "broker.breaker_open_secs",
        startup_reconcile_alert => "broker.startup_reconcile_alert_secs",
        keep_warm => "broker.keep_warm_ms",
    });
    diff_fields!(out, &a.sim, &b.sim, SimConfig, push, {
        enabled => "sim.enabled",
        listen => "sim.listen",
        client_id => "sim.client_id",
        access_token => "sim.access_token",
        seed => "sim.seed",
        tick_interval => "sim.tick_interval_ms",
        instruments => "sim.instruments",
        scenario => "sim.scenario",
        scenario_speed => "sim.scenario_speed",
        transit => "sim.transit_ms",
        broker => "sim.broker",
        master_file => "sim.master_file",
    });
    diff_fields!(out, &a.paper, &b.paper, PaperParams, push, {
        initial_cash => "paper.initial_cash_rupees",
        slippage_ticks => "paper.slippage_ticks",
        tick_size => "paper.tick_size_rupees",
    });
    diff_fields!(out, &a.session, &b.session, SessionParams, push, {
        square_off_time => "session.square_off_time",
        entry_cutoff_time => "session.entry_cutoff_time",
        holidays => "session.holidays",
        weekends_are_trading_days => "session.weekends",
    });
    diff_fields!(out, &a.charges, &b.charges, ChargeSchedule, push, {
        brokerage_per_order => "charges.brokerage_per_order_rupees",
        stt_sell => "charges.stt_sell_pct",
        exchange => "charges.exchange_txn_pct",
        sebi => "charges.sebi_pct",
        stamp_buy => "charges.stamp_buy_pct",
        gst => "charges.gst_pct",
    });
    diff_fields!(out, &a.entries, &b.entries, EntriesConfig, push, {
        demo => "entries.demo",
        demo_interval => "entries.demo_interval_secs",
        demo_quantity => "entries.demo_quantity",
        demo_instruments => "entries.demo_instruments",
    });
    diff_fields!(out, &a.store, &b.store, StoreConfig, push, {
        backend => "store.backend",
        spill_dir => "store.spill_dir",
        queue_capacity => "store.queue_capacity",
        batch_max => "store.batch_max",
        flush_interval => "store.flush_interval_ms",
    });
    diff_fields!(out, &a.redis, &b.redis, RedisConfig, push, {
        enabled => "redis.enabled",
        url => "redis.url",
        key_prefix => "redis.key_prefix",
        heartbeat_ttl => "redis.heartbeat_ttl_secs",
        tls_ca_file => "redis.tls_ca_file",
    });
    diff_fields!(out, &a.instance, &b.instance, InstanceConfig, push, {
        lease => "instance.lease",
        lease_ttl => "instance.lease_ttl_ms",
        renew_every => "instance.renew_every_ms",
    });
    diff_fields!(out, &a.runtime, &b.runtime, RuntimeConfig, push, {
        backoff_base => "runtime.backoff_base_ms",
        backoff_cap => "runtime.backoff_cap_ms",
        restart_budget => "runtime.restart_budget",
        restart_window => "runtime.restart_window_secs",
        stop_deadline => "runtime.stop_deadline_ms",
        heartbeat_limit => "runtime.heartbeat_limit_ms",
        heartbeat_limits => "runtime.heartbeat_limits",
    });
    diff_fields!(out, &a.heartbeat, &b.heartbeat, HeartbeatConfig, push, {
        interval => "heartbeat.interval_secs",
    });
    diff_fields!(out, &a.pnl, &b.pnl, PnlConfig, push, { refresh => "pnl.refresh_ms" });
    if a.exit_retry != b.exit_retry {
        out.push("exit_retry");
    }
    diff_fields!(out, &a.instruments, &b.instruments, InstrumentsConfig, push, {
        master_file => "instruments.master_file",
        master_url => "instruments.master_url",
        download => "instruments.master_url",
        download_timeout => "instruments.download_timeout_secs",
        reload_time => "instruments.reload_time",
    });
    if a.alerts != b.alerts {
        out.push("alerts");
    }
    diff_fields!(out, &a.host, &b.host, HostConfig, push, {
        pin => "host.pin",
        mlockall => "host.mlockall",
        busy_poll => "host.busy_poll",
    });
    out
}
