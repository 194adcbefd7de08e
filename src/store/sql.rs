//! The SQL both backends share: what each event writes, and how rows read back into records.
//! Statements use `$n` placeholders (PostgreSQL's); the SQLite backend rewrites them to `?n`.
//! Values travel as [`Value`], which each backend turns into its driver's parameter type.

use std::str::FromStr;

use super::records::*;
use super::{EventId, StoreError};
use crate::domain::{CorrelationId, InstrumentKey, OrderId, Paise, PositionId, Qty, Timestamp};

/// A parameter or column value: the schema only has integers and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    Int(Option<i64>),
    Text(Option<String>),
}

fn int(v: i64) -> Value {
    Value::Int(Some(v))
}

fn opt_int(v: Option<i64>) -> Value {
    Value::Int(v)
}

fn text(v: impl Into<String>) -> Value {
    Value::Text(Some(v.into()))
}

fn opt_text(v: Option<impl Into<String>>) -> Value {
    Value::Text(v.map(Into::into))
}

/// One statement with its parameters.
pub(crate) struct Op {
    pub sql: &'static str,
    pub params: Vec<Value>,
}

pub(crate) const CLAIM_EVENT: &str = "INSERT INTO applied_events (event_id, kind, at) \
     VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING";

const UPSERT_POSITION: &str = "INSERT INTO positions (id, instrument, side, quantity, \
     entry_price, opened_at, source, state, best_price, hwm_pnl, ratchet_stop, last_price, \
     last_price_at, exit_attempts, exit_reason, exit_trigger_price, exit_trigger_at, \
     exit_correlation_id, exit_price, exited_at, last_rejection, updated_at, event_id, \
     entry_value) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
     $19, $20, $21, $22, $23, $24) \
     ON CONFLICT (id) DO UPDATE SET instrument = excluded.instrument, side = excluded.side, \
     quantity = excluded.quantity, entry_price = excluded.entry_price, \
     opened_at = excluded.opened_at, source = excluded.source, state = excluded.state, \
     best_price = excluded.best_price, hwm_pnl = excluded.hwm_pnl, \
     ratchet_stop = excluded.ratchet_stop, last_price = excluded.last_price, \
     last_price_at = excluded.last_price_at, exit_attempts = excluded.exit_attempts, \
     exit_reason = excluded.exit_reason, exit_trigger_price = excluded.exit_trigger_price, \
     exit_trigger_at = excluded.exit_trigger_at, \
     exit_correlation_id = excluded.exit_correlation_id, exit_price = excluded.exit_price, \
     exited_at = excluded.exited_at, last_rejection = excluded.last_rejection, \
     updated_at = excluded.updated_at, event_id = excluded.event_id, \
     entry_value = excluded.entry_value";

const MARK_POSITION: &str = "UPDATE positions SET best_price = $2, hwm_pnl = $3, \
     ratchet_stop = $4, last_price = $5, last_price_at = $6, updated_at = $7, event_id = $8 \
     WHERE id = $1";

const UPSERT_ORDER: &str = "INSERT INTO orders (correlation_id, broker_order_id, position_id, \
     instrument, txn, quantity, purpose, status, created_at, updated_at, limit_price) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
     ON CONFLICT (correlation_id) DO UPDATE SET \
     broker_order_id = COALESCE(excluded.broker_order_id, orders.broker_order_id), \
     position_id = excluded.position_id, instrument = excluded.instrument, txn = excluded.txn, \
     quantity = excluded.quantity, purpose = excluded.purpose, status = excluded.status, \
     created_at = excluded.created_at, updated_at = excluded.updated_at, \
     limit_price = COALESCE(excluded.limit_price, orders.limit_price)";

const UPDATE_ORDER_STATUS: &str = "UPDATE orders SET status = $2, \
     broker_order_id = COALESCE($3, broker_order_id), updated_at = $4 WHERE correlation_id = $1";

const INSERT_HISTORY: &str = "INSERT INTO order_status_history (event_id, correlation_id, \
     status, broker_order_id, at, detail) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (event_id) DO NOTHING";

const INSERT_FILL: &str = "INSERT INTO fills (trade_id, correlation_id, order_id, instrument, \
     txn, quantity, price, at, value) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (trade_id) DO NOTHING";

const UPSERT_CLOSED: &str = "INSERT INTO closed_trades (position_id, instrument, side, reason, \
     entry_price, exit_price, quantity, gross, charges, net, closed_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
     ON CONFLICT (position_id) DO UPDATE SET instrument = excluded.instrument, \
     side = excluded.side, reason = excluded.reason, entry_price = excluded.entry_price, \
     exit_price = excluded.exit_price, quantity = excluded.quantity, gross = excluded.gross, \
     charges = excluded.charges, net = excluded.net, closed_at = excluded.closed_at";

const UPSERT_DAILY: &str = "INSERT INTO daily_pnl (trading_day, realised_net, charges, \
     trade_count, updated_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (trading_day) DO UPDATE SET realised_net = excluded.realised_net, \
     charges = excluded.charges, trade_count = excluded.trade_count, \
     updated_at = excluded.updated_at";

const UPSERT_TRADING_STATE: &str = "INSERT INTO trading_state (id, state, reason, since, \
     latched_day, updated_at) VALUES (1, $1, $2, $3, $4, $5) \
     ON CONFLICT (id) DO UPDATE SET state = excluded.state, reason = excluded.reason, \
     since = excluded.since, latched_day = excluded.latched_day, \
     updated_at = excluded.updated_at";

const INSERT_AUDIT: &str = "INSERT INTO audit_log (event_id, at, actor, action, detail) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING";

/// Every write statement, for the placeholder check below.
#[cfg(test)]
pub(crate) const WRITE_STATEMENTS: &[&str] = &[
    CLAIM_EVENT,
    UPSERT_POSITION,
    MARK_POSITION,
    UPSERT_ORDER,
    UPDATE_ORDER_STATUS,
    INSERT_HISTORY,
    INSERT_FILL,
    UPSERT_CLOSED,
    UPSERT_DAILY,
    UPSERT_TRADING_STATE,
    INSERT_AUDIT,
];

pub(crate) fn claim_params(ev: &StoreEvent) -> Vec<Value> {
    vec![int(ev.id.0), text(ev.kind.name()), int(ev.at.0)]
}

fn ts(t: Timestamp) -> Value {
    int(t.0)
}

fn opt_ts(t: Option<Timestamp>) -> Value {
    opt_int(t.map(|t| t.0))
}

fn paise(p: Paise) -> Value {
    int(p.0)
}

fn opt_paise(p: Option<Paise>) -> Value {
    opt_int(p.map(|p| p.0))
}

/// The statements that apply one event (after its id was claimed).
pub(crate) fn event_ops(ev: &StoreEvent) -> Vec<Op> {
    let id = int(ev.id.0);
    match &ev.kind {
        EventKind::PositionUpsert(p) => vec![Op {
            sql: UPSERT_POSITION,
            params: vec![
                text(p.id.as_str()),
                text(p.instrument.to_string()),
                text(p.side.name()),
                int(p.quantity.0),
                paise(p.entry_price),
                ts(p.opened_at),
                text(p.source.code()),
                text(p.state.code()),
                paise(p.best_price),
                paise(p.hwm_pnl),
                opt_paise(p.ratchet_stop),
                paise(p.last_price),
                opt_ts(p.last_price_at),
                int(i64::from(p.exit_attempts)),
                opt_text(p.exit_reason.map(|r| r.code())),
                opt_paise(p.exit_trigger_price),
                opt_ts(p.exit_trigger_at),
                opt_text(p.exit_correlation_id.as_ref().map(|c| c.as_str())),
                opt_paise(p.exit_price),
                opt_ts(p.exited_at),
                opt_text(p.last_rejection.clone()),
                ts(p.updated_at),
                id,
                opt_paise(p.entry_value),
            ],
        }],
        EventKind::PositionMark(m) => vec![Op {
            sql: MARK_POSITION,
            params: vec![
                text(m.id.as_str()),
                paise(m.best_price),
                paise(m.hwm_pnl),
                opt_paise(m.ratchet_stop),
                paise(m.last_price),
                opt_ts(m.last_price_at),
                ts(m.updated_at),
                id,
            ],
        }],
        EventKind::OrderPlaced(o) => vec![
            Op {
                sql: UPSERT_ORDER,
                params: vec![
                    text(o.correlation_id.as_str()),
                    opt_text(o.broker_order_id.as_ref().map(|b| b.0.as_str())),
                    text(o.position_id.as_str()),
                    text(o.instrument.to_string()),
                    text(o.txn.name()),
                    int(o.quantity.0),
                    text(purpose_code(o.purpose)),
                    text(o.status.code()),
                    ts(o.created_at),
                    ts(o.updated_at),
                    opt_paise(o.limit_price),
                ],
            },
            Op {
                sql: INSERT_HISTORY,
                params: vec![
                    id,
                    text(o.correlation_id.as_str()),
                    text(o.status.code()),
                    opt_text(o.broker_order_id.as_ref().map(|b| b.0.as_str())),
                    ts(o.created_at),
                    Value::Text(None),
                ],
            },
        ],
        EventKind::OrderStatus(c) => vec![
            Op {
                sql: UPDATE_ORDER_STATUS,
                params: vec![
                    text(c.correlation_id.as_str()),
                    text(c.status.code()),
                    opt_text(c.broker_order_id.as_ref().map(|b| b.0.as_str())),
                    ts(c.at),
                ],
            },
            Op {
                sql: INSERT_HISTORY,
                params: vec![
                    id,
                    text(c.correlation_id.as_str()),
                    text(c.status.code()),
                    opt_text(c.broker_order_id.as_ref().map(|b| b.0.as_str())),
                    ts(c.at),
                    opt_text(c.detail.clone()),
                ],
            },
        ],
        EventKind::Fill(f) => vec![Op {
            sql: INSERT_FILL,
            params: vec![
                text(f.trade_id.as_str()),
                text(f.correlation_id.as_str()),
                text(f.order_id.0.as_str()),
                text(f.instrument.to_string()),
                text(f.txn.name()),
                int(f.quantity.0),
                paise(f.price),
                ts(f.at),
                opt_paise(f.value),
            ],
        }],
        EventKind::TradeClosed(t) => vec![Op {
            sql: UPSERT_CLOSED,
            params: vec![
                text(t.position_id.as_str()),
                text(t.instrument.to_string()),
                text(t.side.name()),
                text(t.reason.code()),
                paise(t.entry_price),
                paise(t.exit_price),
                int(t.quantity.0),
                paise(t.gross),
                paise(t.charges),
                paise(t.net),
                ts(t.closed_at),
            ],
        }],
        EventKind::DailyPnl(d) => vec![Op {
            sql: UPSERT_DAILY,
            params: vec![
                text(day_to_text(d.trading_day)),
                paise(d.realised_net),
                paise(d.charges),
                int(i64::from(d.trade_count)),
                ts(d.updated_at),
            ],
        }],
        EventKind::TradingState(s) => vec![Op {
            sql: UPSERT_TRADING_STATE,
            params: vec![
                text(s.state.code()),
                text(s.reason.as_str()),
                ts(s.since),
                opt_text(s.latched_day.map(day_to_text)),
                ts(s.updated_at),
            ],
        }],
        EventKind::Audit(a) => vec![Op {
            sql: INSERT_AUDIT,
            params: vec![
                id,
                ts(a.at),
                text(a.actor.code()),
                text(a.action.as_str()),
                text(a.detail.as_str()),
            ],
        }],
    }
}

// Reads. Column lists are fixed so that the mapping below can go by index.

const POSITION_COLUMNS: &str = "id, instrument, side, quantity, entry_price, opened_at, source, \
     state, best_price, hwm_pnl, ratchet_stop, last_price, last_price_at, exit_attempts, \
     exit_reason, exit_trigger_price, exit_trigger_at, exit_correlation_id, exit_price, \
     exited_at, last_rejection, updated_at, entry_value";

pub(crate) fn select_positions(open_only: bool) -> String {
    let filter = if open_only { " WHERE state <> 'exited'" } else { "" };
    format!("SELECT {POSITION_COLUMNS} FROM positions{filter} ORDER BY opened_at, id")
}

const ORDER_COLUMNS: &str = "correlation_id, broker_order_id, position_id, instrument, txn, \
     quantity, purpose, status, created_at, updated_at, limit_price";

pub(crate) fn select_orders(open_only: bool) -> String {
    let filter = if open_only {
        " WHERE status NOT IN ('traded', 'cancelled', 'rejected', 'expired')"
    } else {
        ""
    };
    format!("SELECT {ORDER_COLUMNS} FROM orders{filter} ORDER BY created_at, correlation_id")
}

pub(crate) const SELECT_HISTORY: &str = "SELECT correlation_id, event_id, status, \
     broker_order_id, at, detail FROM order_status_history ORDER BY correlation_id, event_id";

pub(crate) const SELECT_FILLS: &str = "SELECT trade_id, correlation_id, order_id, instrument, \
     txn, quantity, price, at, value FROM fills ORDER BY at, trade_id";

pub(crate) const SELECT_CLOSED: &str = "SELECT position_id, instrument, side, reason, \
     entry_price, exit_price, quantity, gross, charges, net, closed_at FROM closed_trades \
     ORDER BY closed_at, position_id";

pub(crate) const SELECT_DAILY: &str = "SELECT trading_day, realised_net, charges, trade_count, \
     updated_at FROM daily_pnl ORDER BY trading_day";

pub(crate) const SELECT_DAILY_ONE: &str = "SELECT trading_day, realised_net, charges, \
     trade_count, updated_at FROM daily_pnl WHERE trading_day = $1";

pub(crate) const SELECT_TRADING_STATE: &str =
    "SELECT state, reason, since, latched_day, updated_at FROM trading_state WHERE id = 1";

pub(crate) const SELECT_AUDIT: &str =
    "SELECT event_id, at, actor, action, detail FROM audit_log ORDER BY event_id";

pub(crate) const SELECT_LAST_EVENT: &str = "SELECT MAX(event_id) FROM applied_events";

/// A row as either driver hands it over: by column index, integers or text, maybe NULL.
pub(crate) trait Row {
    fn int(&self, idx: usize) -> Result<Option<i64>, String>;
    fn text(&self, idx: usize) -> Result<Option<String>, String>;
}

/// Reads typed columns of one row of `table`, naming the column on error.
pub(crate) struct Reader<'r> {
    pub backend: &'static str,
    pub table: &'static str,
    pub row: &'r dyn Row,
}

impl Reader<'_> {
    fn corrupt(&self, idx: usize, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            backend: self.backend,
            table: self.table,
            detail: format!("column {idx}: {detail}"),
        }
    }

    fn opt_i64(&self, idx: usize) -> Result<Option<i64>, StoreError> {
        self.row.int(idx).map_err(|e| self.corrupt(idx, e))
    }

    fn i64(&self, idx: usize) -> Result<i64, StoreError> {
        self.opt_i64(idx)?.ok_or_else(|| self.corrupt(idx, "unexpected NULL"))
    }

    fn opt_string(&self, idx: usize) -> Result<Option<String>, StoreError> {
        self.row.text(idx).map_err(|e| self.corrupt(idx, e))
    }

    fn string(&self, idx: usize) -> Result<String, StoreError> {
        self.opt_string(idx)?.ok_or_else(|| self.corrupt(idx, "unexpected NULL"))
    }

    fn parse<T: FromStr>(&self, idx: usize) -> Result<T, StoreError>
    where
        T::Err: std::fmt::Display,
    {
        let s = self.string(idx)?;
        s.parse().map_err(|e| self.corrupt(idx, format!("{s:?}: {e}")))
    }

    fn opt_parse<T: FromStr>(&self, idx: usize) -> Result<Option<T>, StoreError>
    where
        T::Err: std::fmt::Display,
    {
        match self.opt_string(idx)? {
            Some(s) => s.parse().map(Some).map_err(|e| self.corrupt(idx, format!("{s:?}: {e}"))),
            None => Ok(None),
        }
    }

    fn u32(&self, idx: usize) -> Result<u32, StoreError> {
        let v = self.i64(idx)?;
        u32::try_from(v).map_err(|_| self.corrupt(idx, format!("{v} is out of range")))
    }

    fn paise(&self, idx: usize) -> Result<Paise, StoreError> {
        self.i64(idx).map(Paise)
    }

    fn opt_paise(&self, idx: usize) -> Result<Option<Paise>, StoreError> {
        Ok(self.opt_i64(idx)?.map(Paise))
    }

    fn ts(&self, idx: usize) -> Result<Timestamp, StoreError> {
        self.i64(idx).map(Timestamp)
    }

    fn opt_ts(&self, idx: usize) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.opt_i64(idx)?.map(Timestamp))
    }

    fn instrument(&self, idx: usize) -> Result<InstrumentKey, StoreError> {
        self.parse(idx)
    }

    fn correlation_id(&self, idx: usize) -> Result<CorrelationId, StoreError> {
        let s = self.string(idx)?;
        CorrelationId::new(s).map_err(|e| self.corrupt(idx, e))
    }

    fn opt_correlation_id(&self, idx: usize) -> Result<Option<CorrelationId>, StoreError> {
        match self.opt_string(idx)? {
            Some(s) => CorrelationId::new(s).map(Some).map_err(|e| self.corrupt(idx, e)),
            None => Ok(None),
        }
    }

    fn day(&self, idx: usize) -> Result<chrono::NaiveDate, StoreError> {
        day_from_text(&self.string(idx)?).map_err(|e| self.corrupt(idx, e))
    }

    fn opt_day(&self, idx: usize) -> Result<Option<chrono::NaiveDate>, StoreError> {
        match self.opt_string(idx)? {
            Some(s) => day_from_text(&s).map(Some).map_err(|e| self.corrupt(idx, e)),
            None => Ok(None),
        }
    }

    fn txn(&self, idx: usize) -> Result<crate::domain::Txn, StoreError> {
        match self.string(idx)?.as_str() {
            "BUY" => Ok(crate::domain::Txn::Buy),
            "SELL" => Ok(crate::domain::Txn::Sell),
            other => Err(self.corrupt(idx, format!("{other:?} is not BUY or SELL"))),
        }
    }

    pub fn position(&self) -> Result<PositionRecord, StoreError> {
        Ok(PositionRecord {
            id: PositionId::new(self.string(0)?),
            instrument: self.instrument(1)?,
            side: self.parse(2)?,
            quantity: Qty(self.i64(3)?),
            entry_price: self.paise(4)?,
            opened_at: self.ts(5)?,
            source: self.parse(6)?,
            state: self.parse(7)?,
            best_price: self.paise(8)?,
            hwm_pnl: self.paise(9)?,
            ratchet_stop: self.opt_paise(10)?,
            last_price: self.paise(11)?,
            last_price_at: self.opt_ts(12)?,
            exit_attempts: self.u32(13)?,
            exit_reason: self.opt_parse(14)?,
            exit_trigger_price: self.opt_paise(15)?,
            exit_trigger_at: self.opt_ts(16)?,
            exit_correlation_id: self.opt_correlation_id(17)?,
            exit_price: self.opt_paise(18)?,
            exited_at: self.opt_ts(19)?,
            last_rejection: self.opt_string(20)?,
            updated_at: self.ts(21)?,
            entry_value: self.opt_paise(22)?,
        })
    }

    pub fn order(&self) -> Result<OrderRecord, StoreError> {
        Ok(OrderRecord {
            correlation_id: self.correlation_id(0)?,
            broker_order_id: self.opt_string(1)?.map(OrderId),
            position_id: PositionId::new(self.string(2)?),
            instrument: self.instrument(3)?,
            txn: self.txn(4)?,
            quantity: Qty(self.i64(5)?),
            purpose: {
                let s = self.string(6)?;
                parse_purpose(&s).map_err(|e| self.corrupt(6, e))?
            },
            status: self.parse(7)?,
            created_at: self.ts(8)?,
            updated_at: self.ts(9)?,
            limit_price: self.opt_paise(10)?,
        })
    }

    /// `(correlation id, entry)` of an `order_status_history` row.
    pub fn history(&self) -> Result<(String, OrderHistoryEntry), StoreError> {
        Ok((
            self.string(0)?,
            OrderHistoryEntry {
                event_id: EventId(self.i64(1)?),
                status: self.parse(2)?,
                broker_order_id: self.opt_string(3)?.map(OrderId),
                at: self.ts(4)?,
                detail: self.opt_string(5)?,
            },
        ))
    }

    pub fn fill(&self) -> Result<FillRecord, StoreError> {
        Ok(FillRecord {
            trade_id: self.string(0)?,
            correlation_id: self.correlation_id(1)?,
            order_id: OrderId(self.string(2)?),
            instrument: self.instrument(3)?,
            txn: self.txn(4)?,
            quantity: Qty(self.i64(5)?),
            price: self.paise(6)?,
            at: self.ts(7)?,
            value: self.opt_paise(8)?,
        })
    }

    pub fn closed_trade(&self) -> Result<ClosedTradeRecord, StoreError> {
        Ok(ClosedTradeRecord {
            position_id: PositionId::new(self.string(0)?),
            instrument: self.instrument(1)?,
            side: self.parse(2)?,
            reason: self.parse(3)?,
            entry_price: self.paise(4)?,
            exit_price: self.paise(5)?,
            quantity: Qty(self.i64(6)?),
            gross: self.paise(7)?,
            charges: self.paise(8)?,
            net: self.paise(9)?,
            closed_at: self.ts(10)?,
        })
    }

    pub fn daily(&self) -> Result<DailyPnlRecord, StoreError> {
        Ok(DailyPnlRecord {
            trading_day: self.day(0)?,
            realised_net: self.paise(1)?,
            charges: self.paise(2)?,
            trade_count: self.u32(3)?,
            updated_at: self.ts(4)?,
        })
    }

    pub fn trading_state(&self) -> Result<TradingStateRecord, StoreError> {
        Ok(TradingStateRecord {
            state: self.parse(0)?,
            reason: self.string(1)?,
            since: self.ts(2)?,
            latched_day: self.opt_day(3)?,
            updated_at: self.ts(4)?,
        })
    }

    pub fn audit(&self) -> Result<AuditEntry, StoreError> {
        Ok(AuditEntry {
            event_id: EventId(self.i64(0)?),
            record: AuditRecord {
                at: self.ts(1)?,
                actor: self.parse(2)?,
                action: self.string(3)?,
                detail: self.string(4)?,
            },
        })
    }
}

/// Joins orders with their history rows (both sorted by correlation id for the history).
pub(crate) fn join_history(
    orders: Vec<OrderRecord>,
    history: Vec<(String, OrderHistoryEntry)>,
) -> Vec<OrderWithHistory> {
    let mut by_order: std::collections::HashMap<String, Vec<OrderHistoryEntry>> =
        std::collections::HashMap::new();
    for (cid, entry) in history {
        by_order.entry(cid).or_default().push(entry);
    }
    orders
        .into_iter()
        .map(|order| {
            let history = by_order.remove(order.correlation_id.as_str()).unwrap_or_default();
            OrderWithHistory { order, history }
        })
        .collect()
}

/// A Postgres-style statement with `?n` placeholders, for SQLite.
pub(crate) fn to_sqlite(sql: &str) -> String {
    sql.replace('$', "?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_from_one_without_gaps() {
        for sql in WRITE_STATEMENTS {
            let mut seen = Vec::new();
            let mut rest = *sql;
            while let Some(pos) = rest.find('$') {
                let digits: String =
                    rest[pos + 1..].chars().take_while(|c| c.is_ascii_digit()).collect();
                seen.push(digits.parse::<usize>().expect("a number follows $"));
                rest = &rest[pos + 1..];
            }
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen, (1..=seen.len()).collect::<Vec<_>>(), "{sql}");
        }
    }
}
