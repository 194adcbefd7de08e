//! The trading engine's metric handles (`scalper_orders_*`, `scalper_exits_*`,
//! `scalper_pnl_*`, ...), created once per engine when it is built and shared by the workers,
//! so a respawned worker keeps counting into the same series. Money gauges are in paise.

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use crate::ops::metrics::Metrics;

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
    /// Alerts raised by the core, by code.
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
    /// 0 active, 1 reducing, 2 halted.
    pub trading_state: IntGauge,
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
    /// Age of each open position's price at the last heartbeat (-1: never had one).
    pub position_price_age_ms: IntGaugeVec,
    pub uptime_seconds: IntGauge,
}

impl EngineMetrics {
    pub fn new(m: &Metrics) -> EngineMetrics {
        EngineMetrics {
            orders: m.counter_vec(
                "orders_total",
                "Orders by purpose and outcome",
                &["purpose", "outcome"],
            ),
            decision_to_fill: m.histogram_vec(
                "order_decision_to_fill_seconds",
                "From the exit engine's decision to the broker's fill",
                &["purpose"],
                order_buckets(),
            ),
            exits: m.counter_vec("exits_total", "Closed trades by exit reason", &["reason"]),
            entries: m.counter_vec("entries_total", "Entry requests by outcome", &["outcome"]),
            alerts: m.counter_vec("alerts_total", "Alerts raised by the exit core", &["code"]),
            ticks_evaluated: m
                .counter("exit_engine_ticks_total", "Position ticks evaluated by the exit engine"),
            price_guard: m.counter_vec(
                "price_guard_total",
                "Position prices the price guard dropped, held as suspect, confirmed or discarded",
                &["outcome"],
            ),
            outbox: m.gauge("exit_engine_outbox", "Effects decided and not yet carried out"),
            exits_held: m.gauge(
                "exits_held",
                "Exit orders decided and held until the broker's books are reconciled",
            ),
            positions_open: m.gauge("positions_open", "Positions not yet closed"),
            trading_state: m
                .gauge("trading_state", "Trading state: 0 active, 1 reducing, 2 halted"),
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
            position_price_age_ms: m.gauge_vec(
                "position_price_age_ms",
                "Age of each open position's price at the last heartbeat",
                &["position"],
            ),
            uptime_seconds: m.gauge("uptime_seconds", "Seconds since the engine was built"),
        }
    }
}

/// The gauge value of a trading state.
pub fn trading_state_code(s: crate::risk::TradingState) -> i64 {
    match s {
        crate::risk::TradingState::Active => 0,
        crate::risk::TradingState::Reducing => 1,
        crate::risk::TradingState::Halted => 2,
    }
}
