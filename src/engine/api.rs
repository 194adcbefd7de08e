//! The engine behind the operator's HTTP surface ([`OpsApi`]): `/health`, `/metrics` and the
//! `/v1/` control routes. The HTTP layer has already routed, authenticated and parsed; this
//! file reads published state (the PnL snapshot, the worker status table, the health board)
//! and turns control requests into commands for the exit engine, waiting a bounded time for
//! its answer. Money is written as decimal rupee strings (`"1436.72"`), times as IST ISO-8601.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::Mode;
use crate::domain::{Clock, InstrumentKey, Paise, PositionId, Qty, Side, Timestamp};
use crate::engine::seams::{EngineEvent, EventSink};
use crate::exec::core::{PositionView, RetryExitError};
use crate::exec::messages::{EngineCommand, EntryOrder, EntrySource};
use crate::exec::order_book::OrderBookView;
use crate::exec::pnl_refresher::{PnlBoard, PnlSnapshot};
use crate::instruments::{Instruments, SharedInstruments};
use crate::ops::health::{HealthBoard, Status};
use crate::ops::http::{ApiResponse, OpsApi, Route};
use crate::ops::metrics::Metrics;
use crate::risk::Lifecycle;
use crate::risk::trading_state::{TradingStatus, TradingView};
use crate::runtime::StatusTable;

/// How long a control request waits for the exit engine to take and answer it.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// What the API works with: published state to read (the PnL board, the health board, the
/// order book's view, the trading state) and the exit engine's command channel for the rest.
#[derive(Clone)]
pub struct ApiHandles {
    pub mode: Mode,
    pub clock: Arc<dyn Clock>,
    /// Read only: halts and resumes go to the exit engine as commands.
    pub trading: TradingView,
    pub pnl: PnlBoard,
    pub orders: OrderBookView,
    pub health: HealthBoard,
    pub metrics: Metrics,
    pub uptime_seconds: prometheus::IntGauge,
    pub sink: Arc<dyn EventSink>,
    pub instruments: SharedInstruments,
    /// When the engine was built.
    pub built: Instant,
    pub commands_to_exit_engine_tx: Sender<EngineCommand>,
}

pub struct EngineApi {
    h: ApiHandles,
    workers: StatusTable,
}

impl EngineApi {
    pub fn new(h: ApiHandles, workers: StatusTable) -> EngineApi {
        EngineApi { h, workers }
    }

    /// Sends a command and waits for its answer on `rx`.
    fn ask<T>(&self, command: EngineCommand, rx: &Receiver<T>) -> Result<T, ApiResponse> {
        let tx = &self.h.commands_to_exit_engine_tx;
        if tx.send_timeout(command, ANSWER_WITHIN).is_err() {
            return Err(ApiResponse::error(503, "the exit engine is not taking commands"));
        }
        rx.recv_timeout(ANSWER_WITHIN).map_err(|e| {
            let why = match e {
                RecvTimeoutError::Timeout => format!("did not answer within {ANSWER_WITHIN:?}"),
                RecvTimeoutError::Disconnected => "dropped the request".to_string(),
            };
            ApiResponse::error(503, format!("the exit engine {why} (it may be restarting); check /v1/positions before retrying"))
        })
    }

    fn audit(&self, action: &'static str, detail: String) {
        let at = self.h.clock.now();
        log::info!(target: "control", "operator {action}: {detail}");
        self.h.sink.record(&EngineEvent::Operator { action, detail, at });
    }

    fn place_order(&self, body: Option<Value>) -> ApiResponse {
        let master = self.h.instruments.load();
        let order = match parse_order_with(body, &master) {
            Ok(o) => o,
            Err(message) => return ApiResponse::error(400, message),
        };
        let (reply, rx) = crossbeam_channel::bounded(1);
        let answer = match self.ask(EngineCommand::PlaceEntry { order: order.clone(), reply }, &rx)
        {
            Ok(a) => a,
            Err(resp) => return resp,
        };
        match answer {
            Ok(accepted) => {
                self.audit(
                    "entry",
                    format!(
                        "{} {} {} ({}) as {}",
                        order.side,
                        order.quantity,
                        order.instrument,
                        master.label(order.instrument),
                        accepted.correlation_id
                    ),
                );
                ApiResponse {
                    status: 202,
                    body: json!({
                        "correlation_id": accepted.correlation_id,
                        "position_id": accepted.position_id,
                        "instrument": order.instrument,
                        "symbol": symbol_of(&master, order.instrument),
                        "reference_price": accepted.reference_price.to_string(),
                    }),
                }
            }
            Err(refused) => ApiResponse {
                status: 422,
                body: json!({ "error": refused.message, "code": refused.code }),
            },
        }
    }

    fn halt_or_resume(&self, halt: bool) -> ApiResponse {
        let (reply, rx) = crossbeam_channel::bounded(1);
        let command = if halt {
            EngineCommand::Halt { reply: Some(reply) }
        } else {
            EngineCommand::Resume { reply: Some(reply) }
        };
        let action = if halt { "halt" } else { "resume" };
        match self.ask(command, &rx) {
            Ok(Ok(status)) => {
                self.audit(action, format!("trading is {}", status.state));
                ApiResponse::ok(json!({ "trading": trading_json(&status) }))
            }
            Ok(Err(why)) => ApiResponse::error(409, why),
            Err(resp) => resp,
        }
    }

    fn flatten(&self) -> ApiResponse {
        let (reply, rx) = crossbeam_channel::bounded(1);
        match self.ask(EngineCommand::Flatten { reply: Some(reply) }, &rx) {
            Ok(report) => {
                self.audit(
                    "flatten",
                    format!(
                        "{} exits started, {} already exiting",
                        report.exits.len(),
                        report.already_exiting
                    ),
                );
                let exits: Vec<Value> = report
                    .exits
                    .iter()
                    .map(|e| {
                        json!({
                            "position_id": e.position_id,
                            "correlation_id": e.correlation_id,
                            "price": e.price.to_string(),
                        })
                    })
                    .collect();
                ApiResponse::ok(json!({
                    "exits": exits,
                    "already_exiting": report.already_exiting,
                    "trading": trading_json(&report.trading),
                }))
            }
            Err(resp) => resp,
        }
    }
}

impl EngineApi {
    fn retry_exit(&self, id: &str) -> ApiResponse {
        let id = PositionId::new(id);
        let (reply, rx) = crossbeam_channel::bounded(1);
        match self.ask(EngineCommand::RetryExit { id: id.clone(), reply }, &rx) {
            Ok(Ok(started)) => {
                self.audit("retry_exit", format!("position {id}: exit {}", started.correlation_id));
                ApiResponse {
                    status: 202,
                    body: json!({
                        "position_id": started.position_id,
                        "correlation_id": started.correlation_id,
                        "price": started.price.to_string(),
                    }),
                }
            }
            Ok(Err(e @ RetryExitError::UnknownPosition(_))) => {
                ApiResponse::error(404, e.to_string())
            }
            Ok(Err(e @ RetryExitError::NotRetryable { .. })) => {
                ApiResponse::error(409, e.to_string())
            }
            Err(resp) => resp,
        }
    }
}

impl OpsApi for EngineApi {
    fn health(&self) -> (bool, Value) {
        let workers = self.workers.read().clone();
        let components = self.h.health.snapshot();
        let overall = self.h.health.overall();
        let workers_ok = !workers.is_empty() && workers.iter().all(|w| w.healthy());
        let healthy = workers_ok && overall != Status::Down;
        let status = match (healthy, overall) {
            (false, _) => "down",
            (true, Status::Degraded) => "degraded",
            _ => "ok",
        };
        let snap = self.h.pnl.get();
        let doc = json!({
            "status": status,
            "healthy": healthy,
            "mode": self.h.mode.to_string(),
            "trading_state": self.h.trading.state().name(),
            "trading": trading_json(&self.h.trading.status()),
            "workers": workers,
            "components": components,
            "positions": snap.core.positions.len(),
            "day_pnl": snap.core.account.day_pnl.to_string(),
            "pnl_at": snap.at().to_ist_iso(),
            "orders_open": self.h.orders.open_orders(),
            "uptime_secs": self.h.built.elapsed().as_secs(),
        });
        (healthy, doc)
    }

    fn metrics(&self) -> String {
        self.h.uptime_seconds.set(self.h.built.elapsed().as_secs() as i64);
        self.h.metrics.render()
    }

    fn control(&self, route: Route, body: Option<Value>) -> ApiResponse {
        match route {
            Route::Positions => {
                ApiResponse::ok(positions_json(&self.h.pnl.get(), &self.h.instruments.load()))
            }
            Route::Pnl => {
                let master = self.h.instruments.load();
                ApiResponse::ok(pnl_json(&self.h.pnl.get(), &self.h.trading.status(), &master))
            }
            Route::PlaceOrder => self.place_order(body),
            Route::Halt => self.halt_or_resume(true),
            Route::Resume => self.halt_or_resume(false),
            Route::Flatten => self.flatten(),
            Route::RetryExit(id) => self.retry_exit(&id),
        }
    }
}

/// The body of `POST /v1/orders`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderBody {
    #[serde(default)]
    instrument: Option<String>,
    #[serde(default)]
    symbol: Option<String>,
    side: String,
    quantity: i64,
    /// A limit price in rupees (`"123.45"`): a LIMIT entry; absent: MARKET.
    #[serde(default)]
    price: Option<String>,
}

/// Reads `{ "instrument": "NSE_FNO:52175", "side": "LONG"|"SHORT", "quantity": 75 }` without
/// an instrument master (a `"symbol"` is unknown).
pub fn parse_order(body: Option<Value>) -> Result<EntryOrder, String> {
    parse_order_with(body, &Instruments::empty())
}

/// Reads `{ "instrument": "NSE_FNO:52175" | "symbol": "NIFTY-Dec2026-24500-CE", "side":
/// "LONG"|"SHORT", "quantity": 75 }`, the symbol looked up in `master`.
pub fn parse_order_with(body: Option<Value>, master: &Instruments) -> Result<EntryOrder, String> {
    let usage = r#"expected {"instrument": "NSE_FNO:52175" (or "symbol": "NIFTY-Dec2026-24500-CE"), "side": "LONG" or "SHORT", "quantity": 75} and optionally "price": "123.45" (a LIMIT entry)"#;
    let body = body.ok_or_else(|| format!("missing body: {usage}"))?;
    let b: OrderBody = serde_json::from_value(body).map_err(|e| format!("{e}: {usage}"))?;
    let instrument: InstrumentKey = match (&b.instrument, &b.symbol) {
        (Some(text), None) => text.parse().map_err(|e| format!("instrument: {e}"))?,
        (None, Some(symbol)) => master.by_symbol(symbol).map_err(|e| format!("symbol: {e}"))?.key,
        (Some(_), Some(_)) => {
            return Err(format!("give either instrument or symbol, not both: {usage}"));
        }
        (None, None) => return Err(format!("missing field `instrument` (or `symbol`): {usage}")),
    };
    let side = match b.side.as_str() {
        "LONG" => Side::Long,
        "SHORT" => Side::Short,
        other => return Err(format!("side {other:?} is not LONG or SHORT")),
    };
    if b.quantity <= 0 {
        return Err(format!("quantity {} is not a positive number of units", b.quantity));
    }
    let limit_price = match &b.price {
        None => None,
        Some(text) => {
            let p = Paise::parse_rupees(text).map_err(|e| {
                format!("price {text:?} is not a price in rupees (\"123.45\"): {e}")
            })?;
            Some(p)
        }
    };
    Ok(EntryOrder {
        instrument,
        side,
        quantity: Qty(b.quantity),
        source: EntrySource::Operator,
        limit_price,
    })
}

/// The master's symbol of an instrument, or null when the master does not know it.
fn symbol_of(master: &Instruments, key: InstrumentKey) -> Value {
    master.get(key).map_or(Value::Null, |i| Value::String(i.symbol.to_string()))
}

fn iso(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::String(t.to_ist_iso()))
}

fn money(p: Paise) -> Value {
    Value::String(p.to_string())
}

pub fn trading_json(s: &TradingStatus) -> Value {
    json!({ "state": s.state.name(), "reason": s.reason.to_string(), "since": s.since.to_ist_iso() })
}

fn position_json(p: &PositionView, master: &Instruments) -> Value {
    let exit = match &p.lifecycle {
        Lifecycle::Exiting(x) => json!({
            "reason": x.reason.code(),
            "trigger_price": money(x.trigger_price),
            "triggered_at": x.triggered_at.to_ist_iso(),
            "correlation_id": x.correlation_id,
            "attempt": x.attempt,
        }),
        Lifecycle::Active { attempts, last_rejection } => json!({
            "attempts": attempts,
            "last_rejection": last_rejection.as_ref().map(|r| r.why.clone()),
            "retry": p.exit_retry.as_ref().map(|r| json!({
                "reason": r.reason.code(),
                "rejections": r.rejections,
                "class": r.class,
                "cause": r.cause,
                "why": r.why,
                "retry_at": r.retry_at.to_ist_iso(),
            })),
        }),
        Lifecycle::Exited(_) => Value::Null,
    };
    json!({
        "id": p.id,
        "instrument": p.instrument,
        "symbol": symbol_of(master, p.instrument),
        "side": p.side,
        "quantity": p.open_quantity.0,
        "entry_price": money(p.entry_price),
        "entry_price_source": p.origin.entry_price_source(),
        "origin": p.origin,
        "opened_at": p.opened_at.to_ist_iso(),
        "last_price": money(p.last_price),
        "last_price_at": iso(p.last_price_at),
        "price_is_stale": p.price_is_stale,
        "unrealised_pnl": money(p.unrealised_gross),
        "state": p.state_name(),
        "exit_blocked": p.exit_retry.as_ref().and_then(|r| r.blocked.as_ref()).map(|b| json!({
            "cause": b.cause,
            "reason": b.why,
            "since": b.since.to_ist_iso(),
        })),
        "exit": exit,
        "risk": {
            "best_price": money(p.risk.best_price),
            "hwm_pnl": money(p.risk.hwm_pnl),
            "ratchet_stop": p.risk.ratchet_stop.map_or(Value::Null, money),
        },
    })
}

/// `/v1/positions`: the open positions of the published snapshot, each with the master's
/// symbol (null when the master does not know the instrument).
pub fn positions_json(snap: &PnlSnapshot, master: &Instruments) -> Value {
    json!({
        "at": snap.at().to_ist_iso(),
        "positions": snap.core.positions.iter().map(|p| position_json(p, master)).collect::<Vec<_>>(),
    })
}

/// `/v1/pnl`: the day's account of the published snapshot, with the live trading state.
pub fn pnl_json(snap: &PnlSnapshot, trading: &TradingStatus, master: &Instruments) -> Value {
    let a = &snap.core.account;
    json!({
        "at": snap.at().to_ist_iso(),
        "version": snap.version,
        "trading": trading_json(trading),
        "session": a.session.map(|d| d.format("%Y-%m-%d").to_string()),
        "realised_gross": money(a.realised_gross),
        "charges": money(a.charges),
        "realised_net": money(a.realised_net),
        "unrealised_gross": money(a.unrealised_gross),
        "day_pnl": money(a.day_pnl),
        "max_daily_loss": money(a.max_daily_loss),
        "trades_today": a.trades_today,
        "closed_today": a.closed_today,
        "open_positions": a.open_positions,
        "pending_entries": a.pending_entries,
        "paper_cash": snap.paper_cash.map_or(Value::Null, money),
        "positions": snap.core.positions.iter().map(|p| json!({
            "id": p.id,
            "instrument": p.instrument,
            "symbol": symbol_of(master, p.instrument),
            "unrealised_pnl": money(p.unrealised_gross),
            "state": p.state_name(),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_body_is_parsed_strictly_and_every_refusal_says_why() {
        let ok = parse_order(Some(
            json!({"instrument": "NSE_FNO:52175", "side": "SHORT", "quantity": 75}),
        ))
        .unwrap();
        assert_eq!(
            (ok.side, ok.quantity, ok.instrument.to_string()),
            (Side::Short, Qty(75), "NSE_FNO:52175".to_string())
        );
        let cases = [
            (None, "missing body"),
            (
                Some(json!({"instrument": "NSE_FNO:52175", "side": "LONG"})),
                "missing field `quantity`",
            ),
            (
                Some(
                    json!({"instrument": "NSE_FNO:52175", "side": "LONG", "quantity": 75, "x": 1}),
                ),
                "unknown field `x`",
            ),
            (Some(json!({"instrument": "NSE_XX:1", "side": "LONG", "quantity": 75})), "instrument"),
            (
                Some(json!({"instrument": "NSE_FNO:1", "side": "long", "quantity": 75})),
                "is not LONG or SHORT",
            ),
            (
                Some(json!({"instrument": "NSE_FNO:1", "side": "LONG", "quantity": 0})),
                "not a positive",
            ),
            (
                Some(json!({"instrument": "NSE_FNO:1", "side": "LONG", "quantity": "75"})),
                "invalid type",
            ),
        ];
        for (body, want) in cases {
            let err = parse_order(body.clone()).unwrap_err();
            assert!(err.contains(want), "{body:?}: {err}");
        }
    }

    #[test]
    fn a_symbol_names_the_instrument_through_the_master() {
        let master = crate::instruments::synthetic::generate(&[(
            InstrumentKey::new(crate::domain::Segment::NseFno, 52175),
            Paise(12_000),
        )]);
        let body = |v: Value| parse_order_with(Some(v), &master);
        let ok = body(json!({"symbol": "SIM-52175", "side": "LONG", "quantity": 75})).unwrap();
        assert_eq!(ok.instrument.to_string(), "NSE_FNO:52175");
        let err = body(json!({"symbol": "NOPE", "side": "LONG", "quantity": 75})).unwrap_err();
        assert!(err.contains("unknown symbol"), "{err}");
        let both = json!({"symbol": "SIM-52175", "instrument": "NSE_FNO:52175", "side": "LONG", "quantity": 75});
        assert!(body(both).unwrap_err().contains("not both"));
        let none = body(json!({"side": "LONG", "quantity": 75})).unwrap_err();
        assert!(none.contains("instrument"), "{none}");
    }
}
