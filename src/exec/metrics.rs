//! The trading engine's metric handles (`scalper_orders_*`, `scalper_exits_*`,
//! `scalper_pnl_*`, ...), created once per engine when it is built and shared by the workers,
//! so a respawned worker keeps counting into the same series. Money gauges are in paise.
//!
//! [`known`] lists the label values each labelled series is created with (at 0, from
//! startup): add a new alert code, exit reason or order outcome there.

use prometheus::{GaugeVec, HistogramVec, IntCounter, IntCounterVec, IntGauge};

use crate::domain::ExitReason;
use crate::exec::core::AlertLevel;
use crate::ops::metrics::{Metrics, StateGauge, preset};

/// The label values known in advance, one list per label.
pub mod known {
    use crate::exec::core::AlertLevel;

    /// `purpose` of `scalper_orders_total` and `scalper_order_decision_to_fill_seconds`.
    pub const ORDER_PURPOSES: &[&str] = &["entry", "exit"];
    /// `outcome` of `scalper_orders_total`: what the router saw of each placement.
    pub const ORDER_OUTCOMES: &[&str] =
        &["queued", "duplicate", "accepted", "filled", "rejected", "unknown"];
    /// `outcome` of `scalper_entries_total`: accepted, or the refusal code
    /// (`exec::messages::refusal_code`).
    pub const ENTRY_OUTCOMES: &[&str] = &[
        "accepted",
        "trading_not_active",
        "not_a_trading_day",
        "after_entry_cutoff",
        "max_open_positions",
        "max_trades_per_day",
        "reentry_cooldown",
        "no_price",
        "stale_price",
        "insufficient_cash",
        "bad_quantity",
        "not_tradable",
        "duplicate_id",
        "attempts_exhausted",
    ];
    /// `outcome` of `scalper_price_guard_total`.
    pub const PRICE_GUARD_OUTCOMES: &[&str] = &["dropped", "suspect", "confirmed", "discarded"];
    /// Every alert the engine raises, `code` with its `severity`
    /// (`scalper_alerts_total{code, severity}`).
    pub const ALERTS: &[(&str, AlertLevel)] = &[
        ("daily_loss_limit", AlertLevel::Critical),
        ("kill_switch", AlertLevel::Critical),
        ("exit_blocked", AlertLevel::Critical),
        ("exit_rejected", AlertLevel::Warning),
        ("exit_not_started", AlertLevel::Critical),
        ("exit_absent", AlertLevel::Warning),
        ("closed_at_broker", AlertLevel::Warning),
        ("adopted_at_broker_average", AlertLevel::Warning),
        ("entry_rejected", AlertLevel::Warning),
        ("exit_held", AlertLevel::Warning),
        ("exit_held_unconfirmed", AlertLevel::Critical),
        ("stale_feed", AlertLevel::Warning),
        ("startup_reconciliation_late", AlertLevel::Critical),
        ("component_down", AlertLevel::Critical),
        ("worker_escalation", AlertLevel::Critical),
        ("lease_lost", AlertLevel::Critical),
    ];
    /// `state` of `scalper_trading_state` (`risk::TradingState::name`).
    pub const TRADING_STATES: &[&str] = &["active", "reducing", "halted"];
}

/// Decision → fill latency buckets (seconds): 1 µs (paper) … 10 s (a slow broker).
fn order_buckets() -> Vec<f64> {
    vec![
        0.000_001, 0.000_005, 0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1,
        0.5, 1.0, 2.5, 10.0,
    ]
}

#[derive(Clone)]
pub struct EngineMetrics {
    /// Orders by purpose (`entry`/`exit`) and outcome (`filled`, `accepted`, `rejected`,
    /// `unknown`, `duplicate`).
    pub orders: IntCounterVec,
    /// Decision in the exit engine → fill reported by the broker, by purpose.
    pub decision_to_fill: HistogramVec,
    /// Closed trades by exit reason.
    pub exits: IntCounterVec,
    /// Entry requests by outcome (`accepted` or the refusal code).
    pub entries: IntCounterVec,
    /// Alerts raised, by code and severity (count one with [`EngineMetrics::alert`]).
    pub alerts: IntCounterVec,
    /// Position ticks the exit engine evaluated.
    pub ticks_evaluated: IntCounter,
    /// The price guard's verdicts other than a plain accept: dropped (LTP <= 0), suspect,
    /// confirmed, discarded (a suspect never confirmed).
    pub price_guard: IntCounterVec,
    /// Effects waiting in the exit engine's outbox.
    pub outbox: IntGauge,
    /// Exit orders held until the broker's books are reconciled (`exec::core::held_exits`).
    pub exits_held: IntGauge,
    pub positions_open: IntGauge,
    /// `scalper_trading_state{state}`.
    pub trading_state: StateGauge,
    /// The daily loss limit (positive; 0 without one), next to `day_pnl`.
    pub max_daily_loss: IntGauge,
    pub day_pnl: IntGauge,
    pub realised_gross: IntGauge,
    pub realised_net: IntGauge,
    pub charges: IntGauge,
    pub unrealised_gross: IntGauge,
    pub paper_cash: IntGauge,
    /// Open positions whose instrument's last tick is older than `risk.stale_after_ms`.
    pub stale_positions: IntGauge,
    /// Open positions whose exit was refused permanently (`exit_retry`).
    pub exits_blocked: IntGauge,
    /// Age in seconds of each open position's price at the last heartbeat (-1: never had one).
    pub position_price_age: GaugeVec,
    pub uptime_seconds: IntGauge,
}

impl EngineMetrics {
    pub fn new(m: &Metrics) -> EngineMetrics {
        EngineMetrics {
            orders: m.counter_vec_preset(
                "orders_total",
                "Orders by purpose and outcome",
                &["purpose", "outcome"],
                &[known::ORDER_PURPOSES, known::ORDER_OUTCOMES],
            ),
            decision_to_fill: {
                let h = m.histogram_vec(
                    "order_decision_to_fill_seconds",
                    "From the exit engine's decision to the broker's fill",
                    &["purpose"],
                    order_buckets(),
                );
                preset(&h, &[known::ORDER_PURPOSES]);
                h
            },
            exits: m.counter_vec_preset(
                "exits_total",
                "Closed trades by exit reason",
                &["reason"],
                &[&ExitReason::ALL.map(ExitReason::code)],
            ),
            entries: m.counter_vec_preset(
                "entries_total",
                "Entry requests by outcome",
                &["outcome"],
                &[known::ENTRY_OUTCOMES],
            ),
            alerts: {
                let c = m.counter_vec(
                    "alerts_total",
                    "Alerts raised, by code and severity",
                    &["code", "severity"],
                );
                for (code, level) in known::ALERTS {
                    c.with_label_values(&[code, level.name()]);
                }
                c
            },
            ticks_evaluated: m
                .counter("exit_engine_ticks_total", "Position ticks evaluated by the exit engine"),
            price_guard: m.counter_vec_preset(
                "price_guard_total",
                "Position prices the price guard dropped, held as suspect, confirmed or discarded",
                &["outcome"],
                &[known::PRICE_GUARD_OUTCOMES],
            ),
            outbox: m.gauge("exit_engine_outbox", "Effects decided and not yet carried out"),
            exits_held: m.gauge(
                "exits_held",
                "Exit orders decided and held until the broker's books are reconciled",
            ),
            positions_open: m.gauge("positions_open", "Positions not yet closed"),
            trading_state: m.state_gauge(
                "trading_state",
                "Trading state: 1 for the current one (active, reducing, halted), 0 for the others",
                "state",
                known::TRADING_STATES,
                "active",
            ),
            max_daily_loss: m.gauge(
                "pnl_max_daily_loss_paise",
                "The daily loss limit (trading halts when day PnL <= -limit); 0 without one",
            ),
            day_pnl: m.gauge("pnl_day_paise", "Day PnL: realised net plus unrealised gross"),
            realised_gross: m.gauge("pnl_realised_gross_paise", "Gross PnL of trades closed today"),
            realised_net: m.gauge("pnl_realised_net_paise", "Net PnL of trades closed today"),
            charges: m.gauge("pnl_charges_paise", "Charges of trades closed today (both legs)"),
            unrealised_gross: m
                .gauge("pnl_unrealised_gross_paise", "Unrealised gross PnL of open positions"),
            paper_cash: m.gauge("paper_cash_paise", "Cash in the paper wallet"),
            stale_positions: m.gauge("stale_positions", "Open positions whose price is stale"),
            exits_blocked: m.gauge(
                "positions_exit_blocked",
                "Open positions whose exit the broker refused permanently (retried slowly)",
            ),
            position_price_age: m.float_gauge_vec(
                "position_price_age_seconds",
                "Age of each open position's price at the last heartbeat (-1: no price yet)",
                &["position"],
            ),
            uptime_seconds: m.gauge("uptime_seconds", "Seconds since the engine was built"),
        }
    }
}

impl EngineMetrics {
    /// Counts one alert.
    pub fn alert(&self, code: &str, level: AlertLevel) {
        self.alerts.with_label_values(&[code, level.name()]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `(AlertLevel::X, "code")` pair written in the engine's sources (outside tests).
    fn alerts_in_sources() -> Vec<(String, String, String)> {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs")
                    && !p.to_string_lossy().contains("tests")
                {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        walk(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
        let mut found = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let mut rest = text.as_str();
            while let Some(i) = rest.find("AlertLevel::") {
                rest = &rest[i + "AlertLevel::".len()..];
                let level: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
                if !["Info", "Warning", "Critical"].contains(&level.as_str()) {
                    continue;
                }
                let after = rest[level.len()..].trim_start_matches([',', ' ', '\n']);
                let after = after.strip_prefix("code:").unwrap_or(after).trim_start();
                if let Some(lit) = after.strip_prefix('"') {
                    let code: String = lit.chars().take_while(|c| *c != '"').collect();
                    found.push((code, level.to_ascii_lowercase(), f.display().to_string()));
                }
            }
        }
        found
    }

    #[test]
    fn every_alert_the_sources_raise_is_in_the_known_list_with_its_severity() {
        let found = alerts_in_sources();
        assert!(found.len() >= 10, "{found:?}");
        for (code, level, file) in found {
            assert!(
                known::ALERTS.iter().any(|(c, l)| *c == code && l.name() == level),
                "alert {code} ({level}) raised in {file} is missing from exec::metrics::known::ALERTS"
            );
        }
    }

    #[test]
    fn the_known_label_values_match_the_domain() {
        let states: Vec<&str> = [
            crate::risk::TradingState::Active,
            crate::risk::TradingState::Reducing,
            crate::risk::TradingState::Halted,
        ]
        .map(crate::risk::TradingState::name)
        .to_vec();
        assert_eq!(states, known::TRADING_STATES);
        let m = Metrics::new();
        let e = EngineMetrics::new(&m);
        let text = m.render();
        for r in ExitReason::ALL {
            assert!(text.contains(&format!("scalper_exits_total{{reason=\"{}\"}} 0", r.code())));
        }
        e.alert("exit_blocked", AlertLevel::Critical);
        assert!(
            m.render()
                .contains("scalper_alerts_total{code=\"exit_blocked\",severity=\"critical\"} 1")
        );
    }
}
