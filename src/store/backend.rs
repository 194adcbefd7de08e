//! What a database backend provides, and [`Store`] built on it once for both: SQLite and
//! PostgreSQL differ in how they write a batch, ping, run a read statement and hold a snapshot;
//! every read (which statement, which table, which record a row becomes) is the same for both
//! and lives here.

use chrono::NaiveDate;

use super::sql::{self, Reader, Value};
use super::{
    ApplyOutcome, AuditEntry, ClosedTradeRecord, DailyPnlRecord, EventId, FillRecord,
    OrderWithHistory, PositionRecord, Recovery, Store, StoreError, StoreEvent, TradingStateRecord,
};

/// One database backend.
pub(crate) trait Backend: Send {
    /// `"sqlite"` or `"postgres"`.
    const NAME: &'static str;

    /// [`Store::apply`]: `events` in order, in one transaction, each id at most once.
    fn write_events(&mut self, events: &[StoreEvent]) -> Result<ApplyOutcome, StoreError>;

    /// [`Store::ping`].
    fn round_trip(&mut self) -> Result<(), StoreError>;

    /// Runs a read statement (PostgreSQL text; the backend adapts it) and hands every row to
    /// `each`, in order.
    fn each_row(
        &mut self,
        table: &'static str,
        sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(&Reader<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// Runs `read` on one consistent snapshot of the database.
    fn snapshot<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;
}

/// Every row of a read, mapped.
fn read<B: Backend, T>(
    b: &mut B,
    table: &'static str,
    sql: &str,
    params: &[Value],
    map: impl Fn(&Reader<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    b.each_row(table, sql, params, &mut |r| {
        out.push(map(r)?);
        Ok(())
    })?;
    Ok(out)
}

impl<B: Backend> Store for B {
    fn backend(&self) -> &'static str {
        B::NAME
    }

    fn apply(&mut self, events: &[StoreEvent]) -> Result<ApplyOutcome, StoreError> {
        self.write_events(events)
    }

    fn load_recovery(&mut self, trading_day: NaiveDate) -> Result<Recovery, StoreError> {
        self.snapshot(|b| {
            let open_positions =
                read(b, "positions", &sql::select_positions(true), &[], |r| r.position())?;
            let open_orders = read(b, "orders", &sql::select_orders(true), &[], |r| r.order())?;
            let trading_state = b.trading_state()?;
            let day = [Value::Text(Some(super::day_to_text(trading_day)))];
            let today = read(b, "daily_pnl", sql::SELECT_DAILY_ONE, &day, |r| r.daily())?
                .into_iter()
                .next()
                .unwrap_or_else(|| DailyPnlRecord::empty(trading_day));
            let last_event_id = b.last_event_id()?;
            Ok(Recovery {
                trading_day,
                open_positions,
                open_orders,
                trading_state,
                today,
                last_event_id,
            })
        })
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        self.round_trip()
    }

    fn last_event_id(&mut self) -> Result<Option<EventId>, StoreError> {
        let v = read(self, "applied_events", sql::SELECT_LAST_EVENT, &[], |r| {
            Ok(r.row.int(0).ok().flatten())
        })?;
        Ok(v.into_iter().next().flatten().map(EventId))
    }

    fn schema_versions(&mut self) -> Result<Vec<i64>, StoreError> {
        let text = "SELECT version FROM schema_migrations ORDER BY version";
        read(self, "schema_migrations", text, &[], |r| {
            r.row.int(0).ok().flatten().ok_or_else(|| StoreError::Corrupt {
                backend: B::NAME,
                table: "schema_migrations",
                detail: "version is not an integer".into(),
            })
        })
    }

    fn positions(&mut self) -> Result<Vec<PositionRecord>, StoreError> {
        read(self, "positions", &sql::select_positions(false), &[], |r| r.position())
    }

    fn orders(&mut self) -> Result<Vec<OrderWithHistory>, StoreError> {
        let orders = read(self, "orders", &sql::select_orders(false), &[], |r| r.order())?;
        let history =
            read(self, "order_status_history", sql::SELECT_HISTORY, &[], |r| r.history())?;
        Ok(sql::join_history(orders, history))
    }

    fn fills(&mut self) -> Result<Vec<FillRecord>, StoreError> {
        read(self, "fills", sql::SELECT_FILLS, &[], |r| r.fill())
    }

    fn closed_trades(&mut self) -> Result<Vec<ClosedTradeRecord>, StoreError> {
        read(self, "closed_trades", sql::SELECT_CLOSED, &[], |r| r.closed_trade())
    }

    fn daily_pnl(&mut self) -> Result<Vec<DailyPnlRecord>, StoreError> {
        read(self, "daily_pnl", sql::SELECT_DAILY, &[], |r| r.daily())
    }

    fn trading_state(&mut self) -> Result<Option<TradingStateRecord>, StoreError> {
        let rows =
            read(self, "trading_state", sql::SELECT_TRADING_STATE, &[], |r| r.trading_state())?;
        Ok(rows.into_iter().next())
    }

    fn audit(&mut self) -> Result<Vec<AuditEntry>, StoreError> {
        read(self, "audit_log", sql::SELECT_AUDIT, &[], |r| r.audit())
    }
}
