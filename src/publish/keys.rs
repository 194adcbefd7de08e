//! The Redis keys the publisher writes and what is in them: names and field values as plain
//! functions (no I/O), so that the documentation in the README (section "Redis keys") and the tests can be
//! checked against one place. Money is written as decimal rupees (`"143.20"`, as the HTTP API
//! does), instants as IST ISO-8601 text, plus epoch milliseconds where a program will compare
//! them.

use serde_json::{Value, json};

use crate::domain::{InstrumentKey, Paise, PositionId, Timestamp};
use crate::exec::core::{CoreEvent, PositionChange, PositionView};
use crate::exec::pnl_refresher::PnlSnapshot;
use crate::exec::seams::EngineEvent;
use crate::feed::tick_cache::TickSnapshot;
use crate::risk::Lifecycle;

/// Key names under one prefix (`redis.key_prefix`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.to_string() }
    }

    /// `tick:{SEGMENT}:{SECURITY_ID}`: hash, the latest tick of an instrument.
    pub fn tick(&self, k: InstrumentKey) -> String {
        format!("{}tick:{}:{}", self.prefix, k.segment.name(), k.security_id)
    }

    /// `pnl:position:{id}`: hash, an open position marked to market.
    pub fn position(&self, id: &PositionId) -> String {
        format!("{}pnl:position:{id}", self.prefix)
    }

    /// `positions:open`: set of the open positions' ids.
    pub fn open_positions(&self) -> String {
        format!("{}positions:open", self.prefix)
    }

    /// `account`: hash, the day's account and the trading state.
    pub fn account(&self) -> String {
        format!("{}account", self.prefix)
    }

    /// `heartbeat`: string (JSON), expires `redis.heartbeat_ttl_secs` after the last beat.
    pub fn heartbeat(&self) -> String {
        format!("{}heartbeat", self.prefix)
    }

    /// `events`: the pub/sub channel of engine events (JSON messages).
    pub fn events(&self) -> String {
        format!("{}events", self.prefix)
    }

    /// `lease:{account}`: string, the single-instance lease (see `instance::lease`).
    pub fn lease(&self, account: &str) -> String {
        format!("{}lease:{account}", self.prefix)
    }

    /// `lease:{account}:token`: integer, the last fencing token handed out.
    pub fn lease_token(&self, account: &str) -> String {
        format!("{}lease:{account}:token", self.prefix)
    }
}

fn rupees(p: Paise) -> String {
    p.to_string()
}

fn iso(t: Timestamp) -> String {
    t.to_ist_iso()
}

/// The fields of `tick:{SEGMENT}:{SECURITY_ID}`; `None` before the first trade.
pub fn tick_fields(s: &TickSnapshot) -> Option<Vec<(&'static str, String)>> {
    let last = s.last?;
    let mut f = vec![
        ("ltp", rupees(last.ltp)),
        ("exchange_time", iso(last.exchange_time)),
        ("received_at", iso(last.received_at)),
        ("received_at_ms", last.received_at.0.to_string()),
        ("updates", s.updates.to_string()),
    ];
    if let Some(q) = s.quote {
        f.extend([
            ("ltq", q.ltq.to_string()),
            ("atp", rupees(q.atp)),
            ("volume", q.volume.to_string()),
            ("open", rupees(q.open)),
            ("high", rupees(q.high)),
            ("low", rupees(q.low)),
            ("close", rupees(q.close)),
        ]);
    }
    if let Some(oi) = s.oi {
        f.push(("oi", oi.to_string()));
    }
    if let Some(b) = s.best {
        f.extend([
            ("bid", rupees(b.bid_price)),
            ("bid_qty", b.bid_qty.to_string()),
            ("ask", rupees(b.ask_price)),
            ("ask_qty", b.ask_qty.to_string()),
        ]);
    }
    if let Some(pc) = s.prev_close {
        f.push(("prev_close", rupees(pc)));
    }
    Some(f)
}

/// The fields of `pnl:position:{id}`; `symbol` is the master's (empty when unknown).
pub fn position_fields(
    p: &PositionView,
    at: Timestamp,
    symbol: &str,
) -> Vec<(&'static str, String)> {
    let (exit_reason, exit_cid) = match &p.lifecycle {
        Lifecycle::Exiting(x) => (x.reason.code().to_string(), x.correlation_id.to_string()),
        _ => (String::new(), String::new()),
    };
    vec![
        ("instrument", p.instrument.to_string()),
        ("symbol", symbol.to_string()),
        ("side", p.side.name().to_string()),
        ("quantity", p.open_quantity.0.to_string()),
        ("entry_price", rupees(p.entry_price)),
        ("opened_at", iso(p.opened_at)),
        ("last_price", rupees(p.last_price)),
        ("last_price_at", p.last_price_at.map(iso).unwrap_or_default()),
        ("price_is_stale", u8::from(p.price_is_stale).to_string()),
        ("unrealised_pnl", rupees(p.unrealised_gross)),
        ("best_price", rupees(p.risk.best_price)),
        ("hwm_pnl", rupees(p.risk.hwm_pnl)),
        ("ratchet_stop", p.risk.ratchet_stop.map(rupees).unwrap_or_default()),
        ("state", p.state_name().to_string()),
        ("exit_reason", exit_reason),
        ("exit_correlation_id", exit_cid),
        (
            "exit_blocked",
            p.exit_retry
                .as_ref()
                .and_then(|r| r.blocked.as_ref())
                .map(|b| format!("{}: {}", b.cause, b.why))
                .unwrap_or_default(),
        ),
        ("exit_retry_at", p.exit_retry.as_ref().map(|r| iso(r.retry_at)).unwrap_or_default()),
        ("updated_at", iso(at)),
    ]
}

/// The fields of `account`.
pub fn account_fields(s: &PnlSnapshot, mode: &str) -> Vec<(&'static str, String)> {
    let a = &s.core.account;
    let t = &s.core.trading;
    vec![
        ("mode", mode.to_string()),
        ("session", a.session.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default()),
        ("realised_gross", rupees(a.realised_gross)),
        ("charges", rupees(a.charges)),
        ("realised_net", rupees(a.realised_net)),
        ("unrealised_gross", rupees(a.unrealised_gross)),
        ("day_pnl", rupees(a.day_pnl)),
        ("max_daily_loss", rupees(a.max_daily_loss)),
        ("trades_today", a.trades_today.to_string()),
        ("closed_today", a.closed_today.to_string()),
        ("open_positions", a.open_positions.to_string()),
        ("pending_entries", a.pending_entries.to_string()),
        ("trading_state", t.state.name().to_string()),
        ("trading_reason", t.reason.to_string()),
        ("trading_since", iso(t.since)),
        ("paper_cash", s.paper_cash.map(rupees).unwrap_or_default()),
        ("updated_at", iso(s.at())),
        ("version", s.version.to_string()),
    ]
}

/// The heartbeat value.
pub fn heartbeat_value(instance: &str, mode: &str, at: Timestamp) -> String {
    json!({
        "instance": instance,
        "pid": std::process::id(),
        "mode": mode,
        "version": env!("CARGO_PKG_VERSION"),
        "at": iso(at),
        "at_ms": at.0,
    })
    .to_string()
}

fn change_name(c: &PositionChange) -> &'static str {
    match c {
        PositionChange::Opened => "opened",
        PositionChange::ExitStarted { .. } => "exit_started",
        PositionChange::PartFilled { .. } => "part_filled",
        PositionChange::ExitRejected { .. } => "exit_rejected",
        PositionChange::ExitBlocked { .. } => "exit_blocked",
        PositionChange::Exited => "exited",
    }
}

/// An engine event as a message on the `events` channel (`None`: not published). Values of
/// the domain types keep their JSON form: money in paise, instants in epoch milliseconds.
pub fn event_message(e: &EngineEvent) -> Option<String> {
    let v: Value = match e {
        EngineEvent::Core(c) => match c {
            CoreEvent::Position(ev) => json!({
                "type": "position",
                "change": change_name(&ev.change),
                "at": ev.at,
                "position": ev.position,
            }),
            CoreEvent::TradeClosed(t) => json!({ "type": "trade_closed", "trade": t }),
            CoreEvent::TradingState(ch) => json!({ "type": "trading_state", "change": ch }),
            CoreEvent::SessionStarted { session, at } => json!({
                "type": "session_started",
                "session": session.format("%Y-%m-%d").to_string(),
                "at": at,
            }),
            CoreEvent::Alert(a) => json!({ "type": "alert", "alert": a }),
            CoreEvent::ExitIntent(_) => return None,
        },
        EngineEvent::OrderSent { intent, at } => {
            json!({ "type": "order_sent", "order": intent, "at": at })
        }
        EngineEvent::OrderState { correlation_id, state, at, .. } => json!({
            "type": "order_state",
            "correlation_id": correlation_id,
            "state": state,
            "at": at,
        }),
        EngineEvent::Fill { purpose, fill } => {
            json!({ "type": "fill", "purpose": purpose, "fill": fill })
        }
        EngineEvent::Operator { action, detail, at } => {
            json!({ "type": "operator", "action": action, "detail": detail, "at": at })
        }
        EngineEvent::PnlPublished(_) => return None,
    };
    Some(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Segment;

    #[test]
    fn keys_live_under_the_prefix() {
        let k = Keys::new("scalper:acct1:");
        assert_eq!(
            k.tick(InstrumentKey::new(Segment::NseFno, 52175)),
            "scalper:acct1:tick:NSE_FNO:52175"
        );
        assert_eq!(k.position(&PositionId::new("P1-2")), "scalper:acct1:pnl:position:P1-2");
        assert_eq!(k.open_positions(), "scalper:acct1:positions:open");
        assert_eq!(k.account(), "scalper:acct1:account");
        assert_eq!(k.heartbeat(), "scalper:acct1:heartbeat");
        assert_eq!(k.events(), "scalper:acct1:events");
        assert_eq!(k.lease("ab12"), "scalper:acct1:lease:ab12");
        assert_eq!(k.lease_token("ab12"), "scalper:acct1:lease:ab12:token");
        assert_eq!(Keys::new("").account(), "account");
    }
}
