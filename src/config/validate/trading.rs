//! Validation of the trading rules: `[risk]` (spec §3, §5), `[limits]` and `[session]`
//! (spec §4) and the demo `[entries]`.

use std::collections::BTreeSet;

use crate::domain::{Bp, Paise, Qty, TimeOfDay};

use super::super::raw::{RawConfig, RawRisk};
use super::super::types::*;
use super::super::value::{Collector, is_loopback_url};
use super::{HUNDRED_PCT, MAX_PCT};
use crate::risk::{Limits, PriceGuardParams, RatchetTier, RiskParams, SessionParams};

pub(super) fn risk(c: &mut Collector, r: &RawRisk) -> RiskParams {
    let off_to_100 = "must be between 0 (off) and 100";
    let off_or_more = "must be 0 (off) or more";
    // In file order, so errors come out in the order an operator reads them.
    let mut risk = RiskParams {
        stop_loss: c
            .pct("risk.stop_loss_pct", &r.stop_loss_pct, Bp(0), HUNDRED_PCT, off_to_100)
            .unwrap_or_default(),
        take_profit: c
            .pct("risk.take_profit_pct", &r.take_profit_pct, Bp(0), MAX_PCT, off_or_more)
            .unwrap_or_default(),
        trail_drop: c
            .pct("risk.trail_drop_pct", &r.trail_drop_pct, Bp(0), HUNDRED_PCT, off_to_100)
            .unwrap_or_default(),
        trail_activation: c
            .rupees(
                "risk.trail_activation_rupees",
                &r.trail_activation_rupees,
                Paise(0),
                "must not be negative",
            )
            .unwrap_or_default(),
        peak_drawdown: c
            .pct("risk.peak_drawdown_pct", &r.peak_drawdown_pct, Bp(0), MAX_PCT, off_or_more)
            .unwrap_or_default(),
        peak_drawdown_activation: c
            .pct(
                "risk.peak_drawdown_activation_pct",
                &r.peak_drawdown_activation_pct,
                Bp(0),
                MAX_PCT,
                "must not be negative",
            )
            .unwrap_or_default(),
        ratchet: Vec::new(),
        stale_after_ms: 0,
        stale_exit_after_secs: 0,
        price_guard: PriceGuardParams::default(),
    };

    let mut ratchet: Vec<RatchetTier> = Vec::new();
    let mut prev: Option<(RatchetTier, usize)> = None;
    for (i, t) in r.ratchet.iter().enumerate() {
        let at_key = format!("risk.ratchet[{i}].at_pct");
        let off_key = format!("risk.ratchet[{i}].stop_offset_pct");
        let at = c.pct(&at_key, &t.at_pct, Bp(1), MAX_PCT, "a tier activates above 0");
        let off = c.pct(
            &off_key,
            &t.stop_offset_pct,
            Bp(-9_999),
            MAX_PCT,
            "the stop offset must be above -100",
        );
        let (Some(at), Some(stop_offset)) = (at, off) else {
            prev = None;
            continue;
        };
        if stop_offset >= at {
            c.push(
                &off_key,
                format!("{} is not below the tier's at_pct {} (the stop would sit above the price that activated it)", t.stop_offset_pct, t.at_pct),
            );
        }
        if let Some((p, j)) = prev {
            if at <= p.at {
                c.push(&at_key, format!("{} is not above risk.ratchet[{j}].at_pct {} (tiers must be strictly increasing)", t.at_pct, r.ratchet[j].at_pct));
            }
            if stop_offset <= p.stop_offset {
                c.push(
                    &off_key,
                    format!(
                        "{} is not above risk.ratchet[{j}].stop_offset_pct {} (a higher tier must lock in more)",
                        t.stop_offset_pct, r.ratchet[j].stop_offset_pct
                    ),
                );
            }
        }
        let tier = RatchetTier { at, stop_offset };
        prev = Some((tier, i));
        ratchet.push(tier);
    }
    risk.ratchet = ratchet;
    let stale_after = c.millis("risk.stale_after_ms", r.stale_after_ms, 1).unwrap_or_default();
    risk.stale_after_ms = stale_after.as_millis() as i64;
    let stale_exit =
        c.secs("risk.stale_exit_after_secs", r.stale_exit_after_secs, 0).unwrap_or_default();
    risk.stale_exit_after_secs = stale_exit.as_secs() as i64;
    risk.price_guard = PriceGuardParams {
        max_jump: c
            .pct("risk.max_jump_pct", &r.max_jump_pct, Bp(0), MAX_PCT, off_or_more)
            .unwrap_or_default(),
        confirm_window_ms: c
            .millis("risk.jump_confirm_window_ms", r.jump_confirm_window_ms, 1)
            .unwrap_or_default()
            .as_millis() as i64,
    };
    risk
}

pub(super) fn limits(c: &mut Collector, raw: &RawConfig, live: bool) -> Limits {
    let l = &raw.limits;
    let max_daily_loss = match &l.max_daily_loss_rupees {
        Some(v) => c
            .rupees("limits.max_daily_loss_rupees", v, Paise(1), "must be above 0")
            .unwrap_or_default(),
        None if live => {
            c.push(
                "limits.max_daily_loss_rupees",
                "required in live mode (the day's loss at which every position is closed and trading halts)",
            );
            Paise(0)
        }
        None => Paise(500_000),
    };
    Limits {
        max_daily_loss,
        max_trades_per_day: c
            .count("limits.max_trades_per_day", l.max_trades_per_day, 0)
            .unwrap_or(0),
        max_open_positions: c
            .count("limits.max_open_positions", l.max_open_positions, 0)
            .unwrap_or(0),
        reentry_cooldown_secs: c
            .secs("limits.reentry_cooldown_secs", l.reentry_cooldown_secs, 0)
            .unwrap_or_default()
            .as_secs() as i64,
        max_lots_per_order: c
            .int("limits.max_lots_per_order", l.max_lots_per_order, 0, 1_000_000)
            .unwrap_or(0),
        max_order_value: c
            .rupees(
                "limits.max_order_value_rupees",
                &l.max_order_value_rupees,
                Paise(0),
                "must not be negative (0 = no limit)",
            )
            .unwrap_or_default(),
    }
}

pub(super) fn session(c: &mut Collector, raw: &RawConfig) -> SessionParams {
    let s = &raw.session;
    let square_off = c.time_of_day("session.square_off_time", &s.square_off_time);
    let cutoff = c.time_of_day("session.entry_cutoff_time", &s.entry_cutoff_time);
    if let (Some(sq), Some(cut)) = (square_off, cutoff)
        && cut > sq
    {
        c.push("session.entry_cutoff_time", format!("{cut} is after session.square_off_time {sq}"));
    }
    let mut holidays = BTreeSet::new();
    for (i, text) in s.holidays.iter().enumerate() {
        if let Some(d) = c.date(&format!("session.holidays[{i}]"), text) {
            holidays.insert(d);
        }
    }
    SessionParams {
        square_off_time: square_off.unwrap_or(TimeOfDay(0)),
        entry_cutoff_time: cutoff.unwrap_or(TimeOfDay(0)),
        holidays,
        weekends_are_trading_days: s.weekends,
    }
}

pub(super) fn entries(
    c: &mut Collector,
    raw: &RawConfig,
    sim: &SimConfig,
    broker: &BrokerConfig,
    live: bool,
) -> EntriesConfig {
    let e = &raw.entries;
    let demo_instruments = match &e.demo_instruments {
        Some(list) => {
            let mut out = Vec::new();
            for (i, text) in list.iter().enumerate() {
                let key = format!("entries.demo_instruments[{i}]");
                if let Some(k) = c.instrument(&key, text) {
                    if !k.segment.is_tradable() {
                        c.push(key, format!("{k} is an index, not a tradable instrument"));
                    } else if out.contains(&k) {
                        c.push(key, format!("{k} is listed twice"));
                    } else {
                        out.push(k);
                    }
                }
            }
            out
        }
        None => sim
            .instruments
            .iter()
            .map(|i| i.instrument)
            .filter(|k| k.segment.is_tradable())
            .collect(),
    };
    if e.demo
        && demo_instruments.is_empty()
        && e.demo_instruments.as_ref().is_none_or(|l| l.is_empty())
    {
        c.push("entries.demo_instruments", "demo entries need at least one tradable instrument");
    }
    if e.demo
        && live
        && !(is_loopback_url(&broker.rest_url) && is_loopback_url(&broker.order_update_url))
    {
        c.push("entries.demo", "demo entries place real orders: live mode allows them only against a loopback simulator");
    }
    EntriesConfig {
        demo: e.demo,
        demo_interval: c
            .secs("entries.demo_interval_secs", e.demo_interval_secs, 1)
            .unwrap_or_default(),
        demo_quantity: Qty(i64::from(
            c.count("entries.demo_quantity", e.demo_quantity, 1).unwrap_or(1),
        )),
        demo_instruments,
    }
}
