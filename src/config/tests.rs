//! Validation rules, one table per concern: each case is a TOML snippet and the one error line
//! it must produce, so a rule that stops firing, or fires with a different key or reason,
//! fails by name.

use std::time::Duration;

use chrono::NaiveDate;

use super::*;
use crate::pnl::charges::Rate;
use crate::risk::RiskParams;

fn scalper_session(c: &Config) -> crate::risk::session::SessionClock {
    crate::risk::session::SessionClock::new(c.session.clone())
}
use crate::domain::{Bp, InstrumentKey, Paise, Qty, Segment, TimeOfDay};

/// A valid live file: live mode needs only the daily loss limit on top of the defaults.
const LIVE: &str = "mode = \"live\"\n";
const LIVE_LIMITS: &str = "[limits]\nmax_daily_loss_rupees = 3000\n";

fn errors_of(text: &str) -> Vec<String> {
    match Config::from_toml_str(text) {
        Ok(_) => Vec::new(),
        Err(e) => e.lines(),
    }
}

fn ok(text: &str) -> Config {
    Config::from_toml_str(text)
        .unwrap_or_else(|e| panic!("expected a valid config:\n{e}\n---\n{text}"))
}

/// Runs `(case name, snippet, the single expected error line)`.
fn refused(cases: &[(&str, &str, &str)]) {
    let mut failures = Vec::new();
    for (name, text, want) in cases {
        let got = errors_of(text);
        if got != [want.to_string()] {
            failures.push(format!("{name}:\n  want [{want}]\n  got  {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn accepted(cases: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for (name, text) in cases {
        if let Err(e) = Config::from_toml_str(text) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn an_empty_file_is_a_valid_paper_config_with_the_spec_defaults() {
    let c = ok("");
    assert_eq!(c, Config::default());
    assert_eq!(c.mode, Mode::Paper);
    assert_eq!(c.summary(), "paper, paper, sqlite");
    assert_eq!(c.data_dir, std::path::PathBuf::from("data"));
    // spec §3-§5: the rule engine's own defaults, which `risk::params` pins to the spec.
    assert_eq!(c.risk, RiskParams::default());
    assert_eq!(c.limits.max_daily_loss, Paise(500_000));
    assert_eq!(c.limits.max_trades_per_day, 20);
    assert_eq!(c.limits.max_open_positions, 5);
    assert_eq!(c.limits.reentry_cooldown_secs, 180);
    assert_eq!(c.session.square_off_time, TimeOfDay::hms(15, 20, 0));
    assert_eq!(c.session.entry_cutoff_time, TimeOfDay::hms(15, 15, 0));
    // spec §6
    assert_eq!(c.charges.brokerage_per_order, Paise(2000));
    assert_eq!(c.charges.stt_sell, Rate(100_000));
    assert_eq!(c.charges.exchange, Rate(35_030));
    assert_eq!(c.charges.sebi, Rate(100));
    assert_eq!(c.charges.stamp_buy, Rate(3_000));
    assert_eq!(c.charges.gst, Rate(18_000_000));
    assert_eq!(c.paper.initial_cash, Paise(10_000_000));
    assert_eq!(c.paper.tick_size, Paise(5));
    assert_eq!(c.paper.slippage_ticks, 0);
    // the in-process simulator, port chosen at startup
    assert_eq!(c.feed.source, FeedSource::Sim);
    assert!(c.sim.enabled);
    assert_eq!(c.feed.url.as_str(), "ws://127.0.0.1:0/");
    assert_eq!(c.store.backend, StoreBackend::Sqlite { path: "data/scalper.db".into() });
    assert_eq!(c.store.spill_dir, std::path::PathBuf::from("data/spill"));
    assert_eq!(c.http.listen, "127.0.0.1:8080".parse().unwrap());
    // demo instruments default to the simulator's tradable ones (not the index)
    assert!(!c.entries.demo_instruments.is_empty());
    assert!(c.entries.demo_instruments.iter().all(|k| k.segment.is_tradable()));
}

#[test]
fn percentages_may_be_integers_floats_or_strings() {
    let c = ok("[risk]\nstop_loss_pct = 2.5\ntake_profit_pct = \"12.75\"\ntrail_drop_pct = 0\n");
    assert_eq!(
        (c.risk.stop_loss, c.risk.take_profit, c.risk.trail_drop),
        (Bp(250), Bp(1275), Bp(0))
    );
}

#[test]
fn risk_rules_are_validated() {
    refused(&[
        (
            "float with three decimals",
            "[risk]\nstop_loss_pct = 12.345\n",
            "risk.stop_loss_pct: 12.345 has more than two decimals",
        ),
        (
            "string with three decimals",
            "[risk]\ntake_profit_pct = \"20.125\"\n",
            "risk.take_profit_pct: 20.125 has more than two decimals",
        ),
        (
            "not a number",
            "[risk]\nstop_loss_pct = \"ten\"\n",
            "risk.stop_loss_pct: \"ten\" is not a decimal number",
        ),
        (
            "negative stop loss",
            "[risk]\nstop_loss_pct = -1\n",
            "risk.stop_loss_pct: -1 is out of range: must be between 0 (off) and 100",
        ),
        (
            "stop loss above 100",
            "[risk]\nstop_loss_pct = 150\n",
            "risk.stop_loss_pct: 150 is out of range: must be between 0 (off) and 100",
        ),
        (
            "negative take profit",
            "[risk]\ntake_profit_pct = -5\n",
            "risk.take_profit_pct: -5 is out of range: must be 0 (off) or more",
        ),
        (
            "trail drop above 100",
            "[risk]\ntrail_drop_pct = 100.5\n",
            "risk.trail_drop_pct: 100.5 is out of range: must be between 0 (off) and 100",
        ),
        (
            "trail activation in paise",
            "[risk]\ntrail_activation_rupees = 10.005\n",
            "risk.trail_activation_rupees: 10.005 has more than two decimals",
        ),
        (
            "negative trail activation",
            "[risk]\ntrail_activation_rupees = -1\n",
            "risk.trail_activation_rupees: -1 is out of range: must not be negative",
        ),
        (
            "negative peak drawdown",
            "[risk]\npeak_drawdown_pct = -0.5\n",
            "risk.peak_drawdown_pct: -0.5 is out of range: must be 0 (off) or more",
        ),
        (
            "negative pd activation",
            "[risk]\npeak_drawdown_activation_pct = -1\n",
            "risk.peak_drawdown_activation_pct: -1 is out of range: must not be negative",
        ),
        (
            "stale after zero",
            "[risk]\nstale_after_ms = 0\n",
            "risk.stale_after_ms: 0 is out of range: must be at least 1",
        ),
        (
            "stale exit negative",
            "[risk]\nstale_exit_after_secs = -1\n",
            "risk.stale_exit_after_secs: -1 is out of range: must be at least 0",
        ),
    ]);
}

#[test]
fn ratchet_tiers_are_validated() {
    let tiers = |t: &[(&str, &str)]| -> String {
        t.iter()
            .map(|(a, o)| format!("[[risk.ratchet]]\nat_pct = {a}\nstop_offset_pct = {o}\n"))
            .collect()
    };
    refused(&[
        (
            "tier at zero",
            &tiers(&[("0", "-5")]),
            "risk.ratchet[0].at_pct: 0 is out of range: a tier activates above 0",
        ),
        (
            "over-precise tier",
            &tiers(&[("10", "-5"), ("15.125", "0")]),
            "risk.ratchet[1].at_pct: 15.125 has more than two decimals",
        ),
        (
            "at not increasing",
            &tiers(&[("10", "-5"), ("25", "0"), ("20", "10")]),
            "risk.ratchet[2].at_pct: 20 is not above risk.ratchet[1].at_pct 25 (tiers must be strictly increasing)",
        ),
        (
            "offset not increasing",
            &tiers(&[("10", "-5"), ("15", "0"), ("25", "0")]),
            "risk.ratchet[2].stop_offset_pct: 0 is not above risk.ratchet[1].stop_offset_pct 0 (a higher tier must lock in more)",
        ),
        (
            "offset at or above its tier",
            &tiers(&[("10", "10")]),
            "risk.ratchet[0].stop_offset_pct: 10 is not below the tier's at_pct 10 (the stop would sit above the price that activated it)",
        ),
        (
            "offset at -100",
            &tiers(&[("10", "-100")]),
            "risk.ratchet[0].stop_offset_pct: -100 is out of range: the stop offset must be above -100",
        ),
    ]);
    accepted(&[
        ("no tiers switches the ratchet off", "[risk]\nratchet = []\n"),
        ("fractional tiers", &tiers(&[("5.5", "-2.25"), ("7.75", "0.5")])),
    ]);
    assert!(ok("[risk]\nratchet = []\n").risk.ratchet.is_empty());
    assert_eq!(ok("[risk]\nstale_exit_after_secs = 30\n").risk.stale_exit_after_secs, 30);
}

#[test]
fn limits_are_validated_and_required_in_live_mode() {
    refused(&[
        (
            "zero daily loss",
            "[limits]\nmax_daily_loss_rupees = 0\n",
            "limits.max_daily_loss_rupees: 0 is out of range: must be above 0",
        ),
        (
            "daily loss in paise",
            "[limits]\nmax_daily_loss_rupees = 2500.505\n",
            "limits.max_daily_loss_rupees: 2500.505 has more than two decimals",
        ),
        (
            "negative trades",
            "[limits]\nmax_trades_per_day = -1\n",
            "limits.max_trades_per_day: -1 is out of range: must be at least 0",
        ),
        (
            "negative cooldown",
            "[limits]\nreentry_cooldown_secs = -5\n",
            "limits.reentry_cooldown_secs: -5 is out of range: must be at least 0",
        ),
        (
            "live without a daily loss limit",
            LIVE,
            "limits.max_daily_loss_rupees: required in live mode (the day's loss at which every position is closed and trading halts)",
        ),
    ]);
    let live = ok(&format!("{LIVE}{LIVE_LIMITS}"));
    assert_eq!(live.limits.max_daily_loss, Paise(300_000));
    assert_eq!(live.summary(), "live, dhan, sqlite");
}

#[test]
fn session_times_and_calendar_are_validated() {
    refused(&[
        (
            "hour 25",
            "[session]\nsquare_off_time = \"25:00\"\n",
            "session.square_off_time: \"25:00\" is not a time of day (HH:MM or HH:MM:SS)",
        ),
        (
            "cutoff after square-off",
            "[session]\nentry_cutoff_time = \"15:25\"\n",
            "session.entry_cutoff_time: 15:25:00 is after session.square_off_time 15:20:00",
        ),
        (
            "impossible holiday",
            "[session]\nholidays = [\"2026-01-26\", \"2026-02-30\"]\n",
            "session.holidays[1]: \"2026-02-30\" is not a date (YYYY-MM-DD)",
        ),
    ]);
    let c = ok("[session]\nentry_cutoff_time = \"15:20\"\nholidays = [\"2026-01-26\"]\n");
    assert_eq!(c.session.entry_cutoff_time, c.session.square_off_time);
    let day = |d| NaiveDate::from_ymd_opt(2026, 1, d).unwrap();
    assert!(!scalper_session(&c).is_trading_day(day(26)), "holiday");
    assert!(scalper_session(&c).is_trading_day(day(27)), "Tuesday");
    assert!(!scalper_session(&c).is_trading_day(day(24)), "Saturday");
    let weekends = ok("[session]\nweekends = true\n");
    assert!(scalper_session(&weekends).is_trading_day(day(24)));
}

#[test]
fn charges_are_exact_to_six_decimals() {
    refused(&[
        (
            "seven decimals",
            "[charges]\nexchange_txn_pct = 0.0350301\n",
            "charges.exchange_txn_pct: 0.0350301 has more than six decimals",
        ),
        (
            "above 100 percent",
            "[charges]\ngst_pct = 118\n",
            "charges.gst_pct: 118 is out of range: a rate is between 0 and 100 percent",
        ),
        (
            "negative rate",
            "[charges]\nstt_sell_pct = -0.1\n",
            "charges.stt_sell_pct: -0.1 is out of range: a rate is between 0 and 100 percent",
        ),
        (
            "brokerage in fractions of paise",
            "[charges]\nbrokerage_per_order_rupees = 20.001\n",
            "charges.brokerage_per_order_rupees: 20.001 has more than two decimals",
        ),
    ]);
    assert_eq!(ok("[charges]\nsebi_pct = \"0.000123\"\n").charges.sebi, Rate(123));
}

#[test]
fn http_listen_is_loopback_unless_allowed() {
    refused(&[
        (
            "all interfaces",
            "[http]\nlisten = \"0.0.0.0:8080\"\n",
            "http.listen: 0.0.0.0:8080 is not a loopback address; set http.allow_remote = true to serve other hosts",
        ),
        (
            "a host name",
            "[http]\nlisten = \"localhost:8080\"\n",
            "http.listen: \"localhost:8080\" is not an IP address and port (e.g. \"127.0.0.1:8080\")",
        ),
        (
            "huge bodies",
            "[http]\nmax_body_bytes = 100000000\n",
            "http.max_body_bytes: 100000000 is out of range: must be between 1 and 16777216",
        ),
        (
            "empty bodies only",
            "[http]\nmax_body_bytes = 0\n",
            "http.max_body_bytes: 0 is out of range: must be between 1 and 16777216",
        ),
    ]);
    accepted(&[
        ("remote when allowed", "[http]\nlisten = \"0.0.0.0:8080\"\nallow_remote = true\n"),
        ("port 0", "[http]\nlisten = \"127.0.0.1:0\"\n"),
        ("ipv6 loopback", "[http]\nlisten = \"[::1]:8080\"\n"),
    ]);
}

#[test]
fn feed_settings_are_validated() {
    refused(&[
        (
            "bad segment",
            "[feed]\nwatchlist = [\"IDX_I:13\", \"NSE_XYZ:1\"]\n",
            "feed.watchlist[1]: unknown exchange segment \"NSE_XYZ\"",
        ),
        (
            "duplicate",
            "[feed]\nwatchlist = [\"IDX_I:13\", \"IDX_I:13\"]\n",
            "feed.watchlist[1]: IDX_I:13 is listed twice",
        ),
        (
            "http url",
            "[feed]\nurl = \"https://api-feed.dhan.co\"\n",
            "feed.url: scheme https:// is not allowed here (use ws:// or wss://)",
        ),
        (
            "base above cap",
            "[feed]\nreconnect_base_ms = 70000\n",
            "feed.reconnect_cap_ms: 60000 is below feed.reconnect_base_ms 70000",
        ),
        (
            "no stall timeout",
            "[feed]\nstall_timeout_ms = 0\n",
            "feed.stall_timeout_ms: 0 is out of range: must be at least 1",
        ),
        (
            "empty position queue",
            "[feed]\nposition_queue = 0\n",
            "feed.position_queue: 0 is out of range: must be at least 1",
        ),
        (
            "sim source without simulator or url",
            "[sim]\nenabled = false\n",
            "feed.url: feed.source = \"sim\" with sim.enabled = false needs the ws:// url of an external simulator",
        ),
        (
            "live 429 cool-off below 60 s",
            &format!("{LIVE}[feed]\ncooloff_429_secs = 30\n{LIVE_LIMITS}"),
            "feed.cooloff_429_secs: 30 is below 60, the least live mode allows (Dhan blocks accounts that retry handshakes sooner)",
        ),
    ]);
    let c = ok(
        "[feed]\nwatchlist = [\"IDX_I:13\", \"NSE_FNO:52175\"]\nmode = \"full\"\ncooloff_429_secs = 5\n",
    );
    assert_eq!(
        c.feed.watchlist,
        [InstrumentKey::new(Segment::IdxI, 13), InstrumentKey::new(Segment::NseFno, 52175)]
    );
    assert_eq!(c.feed.mode, FeedMode::Full);
    assert_eq!(c.feed.cooloff_429, Duration::from_secs(5), "paper mode may cool off sooner");
    let external = ok("[feed]\nurl = \"ws://127.0.0.1:9001/\"\n[sim]\nenabled = false\n");
    assert_eq!(external.feed.url.as_str(), "ws://127.0.0.1:9001/");
    let dhan = ok("[feed]\nsource = \"dhan\"\n");
    assert_eq!(dhan.feed.url.as_str(), "wss://api-feed.dhan.co/");
    assert!(!dhan.sim.enabled);
}

#[test]
fn mode_decides_the_broker_and_live_endpoints() {
    let sim_live = "mode = \"live\"\n[feed]\nurl = \"ws://127.0.0.1:0/\"\n[broker]\nrest_url = \"http://127.0.0.1:0/v2\"\norder_update_url = \"ws://127.0.0.1:0/order-update\"\n[sim]\nenabled = true\nbroker = true\n[limits]\nmax_daily_loss_rupees = 3000\n";
    refused(&[
        (
            "paper with the dhan broker",
            "[broker]\nkind = \"dhan\"\n",
            "broker.kind: paper mode trades with the paper broker: set broker.kind = \"paper\" (or mode = \"live\" to send orders to Dhan or the simulator's broker)",
        ),
        (
            "live with the paper broker",
            &format!("{LIVE}[broker]\nkind = \"paper\"\n{LIVE_LIMITS}"),
            "broker.kind: live mode sends orders to Dhan: set broker.kind = \"dhan\"",
        ),
        (
            "live on the simulator's feed source",
            &format!(
                "{LIVE}[feed]\nsource = \"sim\"\nurl = \"wss://api-feed.dhan.co\"\n{LIVE_LIMITS}"
            ),
            "feed.source: live mode reads the feed with the Dhan client: set feed.source = \"dhan\" (feed.url may point at a loopback simulator)",
        ),
        (
            "live over plain http",
            &format!("{LIVE}[broker]\nrest_url = \"http://api.dhan.co/v2\"\n{LIVE_LIMITS}"),
            "broker.rest_url: live mode needs https:// for a remote endpoint",
        ),
        (
            "live mixing simulator and Dhan",
            &format!("{LIVE}[feed]\nurl = \"ws://127.0.0.1:9000/\"\n{LIVE_LIMITS}"),
            "mode: live mode must not mix a loopback simulator (feed.url) with remote endpoints (broker.rest_url, broker.order_update_url)",
        ),
        (
            "rest url over websocket",
            "[broker]\nrest_url = \"ws://x/v2\"\n",
            "broker.rest_url: scheme ws:// is not allowed here (use http:// or https://)",
        ),
        (
            "breaker never trips",
            "[broker]\nbreaker_failures = 0\n",
            "broker.breaker_failures: 0 is out of range: must be at least 1",
        ),
    ]);
    assert_eq!(
        errors_of(&sim_live.replace("broker = true\n", "")),
        [
            "broker.rest_url: port 0 stands for the in-process simulator, which needs sim.broker = true",
            "broker.order_update_url: port 0 stands for the in-process simulator, which needs sim.broker = true",
        ]
    );
    let c = ok(sim_live);
    assert_eq!(c.summary(), "live, dhan, sqlite");
    let mut bound = c.clone();
    bound.bind_simulator("127.0.0.1:41234".parse().unwrap());
    assert_eq!(bound.feed.url.as_str(), "ws://127.0.0.1:41234/");
    assert_eq!(bound.broker.rest_url.as_str(), "http://127.0.0.1:41234/v2");
    assert_eq!(bound.broker.order_update_url.as_str(), "ws://127.0.0.1:41234/order-update");
    assert_eq!(bound.sim.listen.port(), 41234);
}

#[test]
fn simulator_settings_are_validated() {
    refused(&[
        (
            "remote simulator",
            "[sim]\nlisten = \"0.0.0.0:9000\"\n",
            "sim.listen: 0.0.0.0:9000 is not a loopback address; the simulator serves this host only",
        ),
        (
            "free instrument",
            "[sim]\ninstruments = [{ instrument = \"NSE_FNO:1\", price = \"0\" }]\n",
            "sim.instruments[0].price: 0 is out of range: must be above 0",
        ),
        (
            "bad instrument",
            "[sim]\ninstruments = [{ instrument = \"NSE_FNO\", price = \"1\" }]\n",
            "sim.instruments[0].instrument: \"NSE_FNO\" is not an instrument (expected SEGMENT:SECURITY_ID, e.g. NSE_FNO:52175)",
        ),
        (
            "instrument twice",
            "[sim]\ninstruments = [{ instrument = \"NSE_FNO:1\", price = 1 }, { instrument = \"NSE_FNO:1\", price = 2 }]\n",
            "sim.instruments[1].instrument: NSE_FNO:1 is listed twice",
        ),
        (
            "broker half alone",
            "[feed]\nsource = \"dhan\"\n[sim]\nbroker = true\n",
            "sim.broker: the simulator's broker half needs sim.enabled = true",
        ),
        ("empty token", "[sim]\naccess_token = \"\"\n", "sim.access_token: must not be empty"),
    ]);
    let c = ok("[sim]\ninstruments = [{ instrument = \"NSE_FNO:7\", price = 99.95 }]\n");
    assert_eq!(
        c.sim.instruments,
        [SimInstrument { instrument: InstrumentKey::new(Segment::NseFno, 7), price: Paise(9995) }]
    );
}

#[test]
fn paper_and_entries_are_validated() {
    refused(&[
        (
            "no cash",
            "[paper]\ninitial_cash_rupees = 0\n",
            "paper.initial_cash_rupees: 0 is out of range: must be above 0",
        ),
        (
            "tick in fractions of paise",
            "[paper]\ntick_size_rupees = 0.005\n",
            "paper.tick_size_rupees: 0.005 has more than two decimals",
        ),
        (
            "zero quantity",
            "[entries]\ndemo_quantity = 0\n",
            "entries.demo_quantity: 0 is out of range: must be at least 1",
        ),
        (
            "index entries",
            "[entries]\ndemo = true\ndemo_instruments = [\"IDX_I:13\"]\n",
            "entries.demo_instruments[0]: IDX_I:13 is an index, not a tradable instrument",
        ),
        (
            "demo entries against Dhan",
            &format!(
                "{LIVE}[entries]\ndemo = true\ndemo_instruments = [\"NSE_FNO:1\"]\n{LIVE_LIMITS}"
            ),
            "entries.demo: demo entries place real orders: live mode allows them only against a loopback simulator",
        ),
        (
            "demo with nothing to trade",
            "[entries]\ndemo = true\ndemo_instruments = []\n",
            "entries.demo_instruments: demo entries need at least one tradable instrument",
        ),
    ]);
    let c = ok("[entries]\ndemo = true\ndemo_quantity = 50\ndemo_instruments = [\"NSE_FNO:9\"]\n");
    assert_eq!(c.entries.demo_quantity, Qty(50));
    assert_eq!(c.entries.demo_instruments, [InstrumentKey::new(Segment::NseFno, 9)]);
}

#[test]
fn store_redis_and_instance_are_validated() {
    refused(&[
        (
            "postgres without url",
            "[store]\nbackend = \"postgres\"\n",
            "store.postgres_url: required when store.backend = \"postgres\"",
        ),
        (
            "password in the postgres url",
            "[store]\nbackend = \"postgres\"\npostgres_url = \"postgres://scalper:hunter2@127.0.0.1/scalper\"\n",
            "store.postgres_url: carries a password: remove it and set PGPASSWORD in the environment or the secrets file",
        ),
        (
            "password in key=value form",
            "[store]\nbackend = \"postgres\"\npostgres_url = \"host=127.0.0.1 user=scalper password=hunter2\"\n",
            "store.postgres_url: carries a password: remove it and set PGPASSWORD in the environment or the secrets file",
        ),
        (
            "unknown sslmode",
            "[store]\nbackend = \"postgres\"\npostgres_url = \"postgres://scalper@127.0.0.1/scalper?sslmode=verify-everything\"\n",
            "store.postgres_url: sslmode \"verify-everything\" is not one of disable, prefer, require, verify-ca, verify-full",
        ),
        (
            "redis CA without TLS",
            "[redis]\ntls_ca_file = \"/etc/scalper/ca.pem\"\n",
            "redis.tls_ca_file: only applies to a rediss:// redis.url",
        ),
        (
            "batch above queue",
            "[store]\nqueue_capacity = 10\nbatch_max = 11\n",
            "store.batch_max: 11 is above store.queue_capacity 10",
        ),
        (
            "empty sqlite path",
            "[store]\nsqlite_path = \"\"\n",
            "store.sqlite_path: must not be empty",
        ),
        (
            "password in the redis url",
            "[redis]\nurl = \"redis://:hunter2@127.0.0.1:6379/0\"\n",
            "redis.url: carries a password: remove it and set REDIS_PASSWORD in the environment or the secrets file",
        ),
        (
            "redis over http",
            "[redis]\nurl = \"http://127.0.0.1:6379\"\n",
            "redis.url: scheme http:// is not allowed here (use redis:// or rediss://)",
        ),
        (
            "heartbeat outlives its key",
            "[redis]\nheartbeat_ttl_secs = 10\n",
            "redis.heartbeat_ttl_secs: 10 must be longer than heartbeat.interval_secs 10 (or the heartbeat key expires between beats)",
        ),
        (
            "redis lease without redis",
            "[instance]\nlease = \"redis\"\n",
            "instance.lease: \"redis\" needs redis.enabled = true",
        ),
        (
            "renewal after expiry",
            "[instance]\nrenew_every_ms = 5000\n",
            "instance.renew_every_ms: 5000 must be shorter than instance.lease_ttl_ms 5000",
        ),
    ]);
    let pg = ok(
        "[store]\nbackend = \"postgres\"\npostgres_url = \"postgres://scalper@127.0.0.1:5432/scalper\"\n",
    );
    assert_eq!(
        pg.store.backend,
        StoreBackend::Postgres { url: "postgres://scalper@127.0.0.1:5432/scalper".into() }
    );
    assert_eq!(pg.summary(), "paper, paper, postgres");
    let sqlite = ok("data_dir = \"/var/lib/scalper\"\n");
    assert_eq!(
        sqlite.store.backend,
        StoreBackend::Sqlite { path: "/var/lib/scalper/scalper.db".into() }
    );
}

#[test]
fn errors_never_repeat_a_password() {
    for text in [
        "[store]\nbackend = \"postgres\"\npostgres_url = \"postgres://u:hunter2@127.0.0.1/db\"\n",
        "[store]\nbackend = \"postgres\"\npostgres_url = \"password=hunter2 nonsense\"\n",
        "[redis]\nurl = \"redis://:hunter2@127.0.0.1:6379/0\"\n",
        "[redis]\nurl = \"redis://:hunter2@[::1\"\n",
    ] {
        let errs = errors_of(text);
        assert!(!errs.is_empty(), "{text}");
        assert!(errs.iter().all(|e| !e.contains("hunter2")), "{errs:?}");
    }
}

#[test]
fn runtime_host_and_cadences_are_validated() {
    refused(&[
        (
            "base above cap",
            "[runtime]\nbackoff_base_ms = 6000\n",
            "runtime.backoff_cap_ms: 5000 is below runtime.backoff_base_ms 6000",
        ),
        (
            "no restarts",
            "[runtime]\nrestart_budget = 0\n",
            "runtime.restart_budget: 0 is out of range: must be at least 1",
        ),
        (
            "zero worker limit",
            "[runtime.heartbeat_limits]\nexit_engine = 0\n",
            "runtime.heartbeat_limits.exit_engine: 0 is out of range: must be at least 1",
        ),
        (
            "negative core",
            "[host]\npin = { exit_engine = -1 }\n",
            "host.pin.exit_engine: -1 is out of range: must be between 0 and 4095",
        ),
        (
            "busy polling without pins",
            "[host]\nbusy_poll = true\npin = { exit_engine = 1 }\n",
            "host.busy_poll: spinning workers must be pinned to CPU cores: set host.pin.tick_reader, host.pin.order_router",
        ),
        (
            "no heartbeat",
            "[heartbeat]\ninterval_secs = 0\n",
            "heartbeat.interval_secs: 0 is out of range: must be at least 1",
        ),
        (
            "no pnl refresh",
            "[pnl]\nrefresh_ms = 0\n",
            "pnl.refresh_ms: 0 is out of range: must be at least 1",
        ),
    ]);
    let c = ok(
        "[runtime.heartbeat_limits]\nstore = 30000\n[host]\npin = { exit_engine = 2, tick_reader = 3 }\n",
    );
    assert_eq!(c.runtime.heartbeat_limit_for("store"), Duration::from_secs(30));
    assert_eq!(c.runtime.heartbeat_limit_for("feed"), Duration::from_secs(5));
    assert_eq!(c.host.pin.get("exit_engine"), Some(&2));
    assert!(!c.host.busy_poll, "off by default");
    let c = ok(
        "[host]\nbusy_poll = true\npin = { tick_reader = 0, exit_engine = 1, order_router = 1 }\n",
    );
    assert!(c.host.spins("tick_reader") && c.host.spins("order_router"));
    assert!(!c.host.spins("store_writer"), "only the hot workers spin");
    assert!(c.host.shares_core("exit_engine") && c.host.shares_core("order_router"));
    assert!(!c.host.shares_core("tick_reader"));
}

#[test]
fn every_validation_error_is_reported_at_once() {
    let text = "mode = \"live\"\n[risk]\nstop_loss_pct = 12.345\n[[risk.ratchet]]\nat_pct = 10\nstop_offset_pct = -5\n[[risk.ratchet]]\nat_pct = 5\nstop_offset_pct = 0\n[session]\nentry_cutoff_time = \"15:30\"\n[charges]\ngst_pct = 18.0000001\n";
    assert_eq!(
        errors_of(text),
        [
            "risk.stop_loss_pct: 12.345 has more than two decimals",
            "risk.ratchet[1].at_pct: 5 is not above risk.ratchet[0].at_pct 10 (tiers must be strictly increasing)",
            "limits.max_daily_loss_rupees: required in live mode (the day's loss at which every position is closed and trading halts)",
            "session.entry_cutoff_time: 15:30:00 is after session.square_off_time 15:20:00",
            "charges.gst_pct: 18.0000001 has more than six decimals",
        ]
    );
}

#[test]
fn structural_errors_do_not_hide_value_errors() {
    // The wrongly typed tier takes the whole ratchet out (defaults checked instead), so no
    // second message about the tiers; the unknown table is reported next to the rest.
    let text = "[riks]\nstop_loss_pct = 10\n[risk]\nstop_loss_pct = 12.345\nratchet = [{ at_pct = 10, stop_offset_pct = -5 }, { at_pct = 5, stop_offset_pct = [] }]\n[store]\nbackend = \"mysql\"\n[charges]\ngst_pct = 18.0000001\n";
    let errs = errors_of(text);
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert!(errs[0].starts_with("1:2: riks: unknown field `riks`"), "{}", errs[0]);
    assert!(errs[1].starts_with("5:"), "{}", errs[1]);
    assert!(
        errs[1].contains("risk.ratchet[1].stop_offset_pct: invalid type: sequence"),
        "{}",
        errs[1]
    );
    assert!(errs[2].starts_with("7:11: store.backend: unknown variant `mysql`"), "{}", errs[2]);
    assert_eq!(errs[3], "risk.stop_loss_pct: 12.345 has more than two decimals");
    assert_eq!(errs[4], "charges.gst_pct: 18.0000001 has more than six decimals");
}

#[test]
fn unknown_keys_and_syntax_errors_name_the_key_and_line() {
    let cases = [
        ("top level", "mode = \"paper\"\nmood = 1\n", "2:1: mood: unknown field `mood`"),
        (
            "nested",
            "[risk]\nstop_loss_pct = 10\nstop_los_pct = 5\n",
            "3:1: risk.stop_los_pct: unknown field `stop_los_pct`",
        ),
        (
            "table of tables",
            "[[risk.ratchet]]\nat_pct = 10\nstop_offset_pct = 0\noffset = 1\n",
            "4:1: risk.ratchet[0].offset: unknown field `offset`",
        ),
        (
            "inline table",
            "[host]\npin = {}\nmlock = true\n",
            "3:1: host.mlock: unknown field `mlock`",
        ),
        ("unknown table", "[riks]\nstop_loss_pct = 10\n", "1:2: riks: unknown field `riks`"),
        (
            "bad enum",
            "[feed]\nmode = \"tick\"\n",
            "2:8: feed.mode: unknown variant `tick`, expected one of `ticker`, `quote`, `full`",
        ),
        (
            "wrong type",
            "[feed]\nstall_timeout_ms = \"45s\"\n",
            "2:20: feed.stall_timeout_ms: invalid type: string \"45s\", expected i64",
        ),
        ("syntax", "[risk\n", "1:6: unclosed table, expected `]`"),
    ];
    for (name, text, want) in cases {
        let errs = errors_of(text);
        assert_eq!(errs.len(), 1, "{name}: {errs:?}");
        assert!(errs[0].starts_with(want), "{name}: want {want:?}\n got {:?}", errs[0]);
    }
}

#[test]
fn reload_compares_against_the_bound_simulator_address() {
    let file = "mode = \"live\"\n[feed]\nurl = \"ws://127.0.0.1:0/\"\n[broker]\nrest_url = \"http://127.0.0.1:0/v2\"\norder_update_url = \"ws://127.0.0.1:0/order-update\"\n[sim]\nenabled = true\nbroker = true\n[limits]\nmax_daily_loss_rupees = 3000\n";
    let mut running = ok(file);
    running.bind_simulator("127.0.0.1:40001".parse().unwrap());
    let same = plan_reload(&running, Config::from_toml_str(file)).unwrap();
    assert!(same.changes.is_empty());
    assert_eq!(same.config, running);
    let moved = file.replace("enabled = true", "enabled = true\nlisten = \"127.0.0.1:9000\"");
    match plan_reload(&running, Config::from_toml_str(&moved)) {
        Err(ReloadError::NeedsRestart { keys }) => {
            assert!(keys.contains(&"sim.listen"), "{keys:?}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reload_reports_old_and_new_values_as_written() {
    let running = ok("");
    let new = "[risk]\nstale_exit_after_secs = 20\nratchet = [{ at_pct = 10, stop_offset_pct = -2.5 }]\n[limits]\nmax_daily_loss_rupees = 2500.50\n";
    let plan = plan_reload(&running, Config::from_toml_str(new)).unwrap();
    let shown: Vec<String> = plan.changes.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        shown,
        [
            "risk.ratchet: [10→-5, 15→0, 25→10, 40→20, 60→30, 80→40, 120→60] → [10→-2.5]",
            "risk.stale_exit_after_secs: 0 → 20",
            "limits.max_daily_loss_rupees: 5000.00 → 2500.50",
        ]
    );
}

/// Every duration key of the file, as `(table, key, unit is seconds)`.
const DURATION_KEYS: &[(&str, &str, bool)] = &[
    ("feed", "connect_timeout_ms", false),
    ("feed", "stall_timeout_ms", false),
    ("feed", "reconnect_base_ms", false),
    ("feed", "reconnect_cap_ms", false),
    ("feed", "cooloff_429_secs", true),
    ("feed", "backoff_805_secs", true),
    ("broker", "connect_timeout_ms", false),
    ("broker", "request_timeout_ms", false),
    ("broker", "resolve_window_ms", false),
    ("broker", "breaker_open_secs", true),
    ("sim", "tick_interval_ms", false),
    ("sim", "transit_ms", false),
    ("risk", "stale_after_ms", false),
    ("risk", "stale_exit_after_secs", true),
    ("risk", "jump_confirm_window_ms", false),
    ("limits", "reentry_cooldown_secs", true),
    ("entries", "demo_interval_secs", true),
    ("store", "flush_interval_ms", false),
    ("redis", "heartbeat_ttl_secs", true),
    ("instance", "lease_ttl_ms", false),
    ("instance", "renew_every_ms", false),
    ("runtime", "backoff_base_ms", false),
    ("runtime", "backoff_cap_ms", false),
    ("runtime", "restart_window_secs", true),
    ("runtime", "stop_deadline_ms", false),
    ("runtime", "heartbeat_limit_ms", false),
    ("runtime.heartbeat_limits", "exit_engine", false),
    ("heartbeat", "interval_secs", true),
    ("pnl", "refresh_ms", false),
];

#[test]
fn every_duration_has_an_upper_bound_of_a_day() {
    for &(table, key, secs) in DURATION_KEYS {
        let max: i64 = if secs { 86_400 } else { 86_400_000 };
        let path = format!("{table}.{key}");
        for value in [18_446_744_073_709_552_i64, i64::MAX, max + 1] {
            let errors = errors_of(&format!("[{table}]\n{key} = {value}\n"));
            let want = format!("{path}: {value} is out of range: must be at most {max} (a day)");
            assert!(errors.contains(&want), "{path} = {value}:\n  want {want}\n  got  {errors:?}");
        }
        let errors = errors_of(&format!("[{table}]\n{key} = {max}\n"));
        let bound = format!("{path}: {max} is out of range");
        assert!(!errors.iter().any(|e| e.starts_with(&bound)), "{path} = {max}: {errors:?}");
    }
}

#[test]
fn the_price_guard_settings_are_validated() {
    let c = ok("[risk]\nmax_jump_pct = 12.5\njump_confirm_window_ms = 2000\n");
    assert_eq!(
        c.risk.price_guard,
        crate::risk::PriceGuardParams { max_jump: Bp(1_250), confirm_window_ms: 2_000 }
    );
    assert_eq!(ok("").risk.price_guard, crate::risk::PriceGuardParams::default());
    assert_eq!(ok("[risk]\nmax_jump_pct = 0\n").risk.price_guard.max_jump, Bp(0));
    refused(&[
        (
            "negative jump",
            "[risk]\nmax_jump_pct = -1\n",
            "risk.max_jump_pct: -1 is out of range: must be 0 (off) or more",
        ),
        (
            "over-precise jump",
            "[risk]\nmax_jump_pct = 1.234\n",
            "risk.max_jump_pct: 1.234 has more than two decimals",
        ),
        (
            "no window",
            "[risk]\njump_confirm_window_ms = 0\n",
            "risk.jump_confirm_window_ms: 0 is out of range: must be at least 1",
        ),
    ]);
}

#[test]
fn relative_paths_in_a_file_are_relative_to_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().canonicalize().unwrap().join("etc");
    std::fs::create_dir(&etc).unwrap();
    let file = etc.join("scalper.toml");
    std::fs::write(
        &file,
        "data_dir = \"../state\"\n[secrets]\nfile = \"./secrets.env\"\n[store]\nspill_dir = \"/var/spill\"\n[sim]\nscenario = \"ticks/a.csv\"\n",
    )
    .unwrap();
    let c = Config::load(&file).unwrap();
    let state = dir.path().canonicalize().unwrap().join("state");
    assert_eq!(c.data_dir, state);
    assert_eq!(c.secrets.file, Some(etc.join("secrets.env")));
    assert_eq!(c.store.backend, StoreBackend::Sqlite { path: state.join("scalper.db") });
    assert_eq!(c.store.spill_dir, std::path::PathBuf::from("/var/spill"), "absolute stays");
    assert_eq!(c.sim.scenario, Some(etc.join("ticks/a.csv")));
    // Text without a file keeps its paths as written.
    assert_eq!(ok("data_dir = \"../state\"\n").data_dir, std::path::PathBuf::from("../state"));
}

#[test]
fn database_tls_options_are_accepted() {
    let c = ok(concat!(
        "[store]\nbackend = \"postgres\"\n",
        "postgres_url = \"postgres://scalper@db.example:5432/scalper?sslmode=verify-full&sslrootcert=/etc/scalper/pg-ca.pem\"\n",
        "[redis]\nurl = \"rediss://redis.example:6380/0\"\ntls_ca_file = \"ca.pem\"\n",
    ));
    assert_eq!(c.redis.tls_ca_file, Some(std::path::PathBuf::from("ca.pem")));
    let c = ok(
        "[store]\nbackend = \"postgres\"\npostgres_url = \"host=127.0.0.1 user=scalper sslmode=require\"\n",
    );
    assert!(matches!(c.store.backend, StoreBackend::Postgres { .. }));
}

#[test]
fn keeping_rest_connections_warm_is_on_by_default_and_below_the_pools_idle_age() {
    assert_eq!(ok("").broker.keep_warm, std::time::Duration::from_millis(2_000));
    assert_eq!(ok("[broker]\nkeep_warm_ms = 0\n").broker.keep_warm, std::time::Duration::ZERO);
    assert_eq!(
        ok("[broker]\nkeep_warm_ms = 3900\n").broker.keep_warm,
        std::time::Duration::from_millis(3_900)
    );
    refused(&[
        (
            "past the pool's idle age",
            "[broker]\nkeep_warm_ms = 4000\n",
            "broker.keep_warm_ms: 4000 is out of range: must be between 0 and 3900",
        ),
        (
            "negative",
            "[broker]\nkeep_warm_ms = -1\n",
            "broker.keep_warm_ms: -1 is out of range: must be between 0 and 3900",
        ),
    ]);
}
