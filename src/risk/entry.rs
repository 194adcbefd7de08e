//! Whether a new entry may be placed (risk spec §4, §5, §6): trading state, session, position
//! and trade limits, re-entry cooldown, price freshness and paper cash.
//!
//! [`check`] is a pure function over an [`EntryContext`] of plain figures; the exit core fills
//! the context from its state. Every refusal is an [`EntryRefusal`] variant that says why, with
//! the figures that decided it. Adopted positions (found at the broker, or given to replay) do
//! not pass through here.

use crate::domain::{InstrumentKey, Paise, PositionId, Qty, Side, Timestamp, Txn};
use crate::pnl::ChargeSchedule;

use super::params::Limits;
use super::session::{EntriesClosed, SessionClock};
use super::trading_state::TradingState;

/// An entry the strategy (or an operator) wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRequest {
    pub position_id: PositionId,
    pub instrument: InstrumentKey,
    pub side: Side,
    pub quantity: Qty,
    /// Cash in the paper wallet; `None` in live mode, where the broker checks margin.
    pub available_cash: Option<Paise>,
}

/// The engine's figures an entry is checked against.
#[derive(Debug, Clone)]
pub struct EntryContext<'a> {
    pub now: Timestamp,
    pub trading: TradingState,
    pub session: &'a SessionClock,
    pub limits: &'a Limits,
    pub charges: &'a ChargeSchedule,
    pub stale_after_ms: i64,
    /// Positions not yet closed.
    pub open_positions: u32,
    /// Entries placed and not yet filled or rejected.
    pub pending_entries: u32,
    /// Entries filled today.
    pub trades_today: u32,
    /// When a position on the instrument last closed.
    pub last_exit: Option<Timestamp>,
    /// The instrument's last tick: LTP and when it was received.
    pub last_tick: Option<(Paise, Timestamp)>,
    /// Its age on the monotonic clock, when known (a wall-clock step then moves nothing);
    /// otherwise the age is `now` minus its wall time.
    pub last_tick_age_ms: Option<i64>,
    /// Whether a position (or pending entry) already has this id.
    pub id_in_use: bool,
}

/// An accepted entry: the price to place it at and what it will cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryApproval {
    pub reference_price: Paise,
    /// Turnover plus charges of the entry leg at the reference price.
    pub cost: Paise,
}

/// Why an entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryRefusal {
    #[error("trading is {state}: entries are accepted only while active")]
    TradingNotActive { state: TradingState },
    #[error("{date} is not a trading day")]
    NotATradingDay { date: chrono::NaiveDate },
    #[error("entry cut-off passed at {cutoff}")]
    AfterEntryCutoff { cutoff: Timestamp },
    #[error("{open} open positions and {pending} pending entries reach the limit of {max}")]
    MaxOpenPositions { open: u32, pending: u32, max: u32 },
    #[error("{trades} trades today and {pending} pending entries reach the limit of {max}")]
    MaxTradesPerDay { trades: u32, pending: u32, max: u32 },
    #[error("{instrument} exited at {last_exit}: re-entry cooldown until {until}")]
    ReentryCooldown { instrument: InstrumentKey, last_exit: Timestamp, until: Timestamp },
    #[error("no price for {instrument} yet")]
    NoPrice { instrument: InstrumentKey },
    #[error("price of {instrument} is stale: last tick {age_ms} ms ago")]
    StalePrice { instrument: InstrumentKey, last_tick_at: Timestamp, age_ms: i64 },
    #[error("entry needs {needed} but the paper wallet has {available}")]
    InsufficientCash { needed: Paise, available: Paise },
    #[error("quantity {quantity} is not positive")]
    BadQuantity { quantity: Qty },
    #[error("{instrument} is not tradable")]
    NotTradable { instrument: InstrumentKey },
    #[error("position id {id} is already in use")]
    DuplicateId { id: PositionId },
    #[error("position {id} used all {attempts} entry attempts a correlation id can number")]
    AttemptsExhausted { id: PositionId, attempts: u32 },
}

/// Checks `request` in this order: request itself, trading state, session, open positions,
/// trades today, cooldown, price, cash. The first failing check is the refusal.
pub fn check(
    ctx: &EntryContext<'_>,
    request: &EntryRequest,
) -> Result<EntryApproval, EntryRefusal> {
    if request.quantity.0 <= 0 {
        return Err(EntryRefusal::BadQuantity { quantity: request.quantity });
    }
    if !request.instrument.segment.is_tradable() {
        return Err(EntryRefusal::NotTradable { instrument: request.instrument });
    }
    if ctx.id_in_use {
        return Err(EntryRefusal::DuplicateId { id: request.position_id.clone() });
    }
    if !ctx.trading.allows_entries() {
        return Err(EntryRefusal::TradingNotActive { state: ctx.trading });
    }
    match ctx.session.entries_open(ctx.now) {
        Ok(()) => {}
        Err(EntriesClosed::NotATradingDay(date)) => {
            return Err(EntryRefusal::NotATradingDay { date });
        }
        Err(EntriesClosed::AfterCutoff { cutoff }) => {
            return Err(EntryRefusal::AfterEntryCutoff { cutoff });
        }
    }
    let max = ctx.limits.max_open_positions;
    if ctx.open_positions + ctx.pending_entries >= max {
        return Err(EntryRefusal::MaxOpenPositions {
            open: ctx.open_positions,
            pending: ctx.pending_entries,
            max,
        });
    }
    let max = ctx.limits.max_trades_per_day;
    if ctx.trades_today + ctx.pending_entries >= max {
        return Err(EntryRefusal::MaxTradesPerDay {
            trades: ctx.trades_today,
            pending: ctx.pending_entries,
            max,
        });
    }
    let cooldown_ms = ctx.limits.reentry_cooldown_secs * 1_000;
    if let Some(last_exit) = ctx.last_exit
        && cooldown_ms > 0
        && ctx.now.millis_since(last_exit) <= cooldown_ms
    {
        return Err(EntryRefusal::ReentryCooldown {
            instrument: request.instrument,
            last_exit,
            until: last_exit.plus_millis(cooldown_ms),
        });
    }
    // A non-positive last price (a bad tick) is no price to enter at.
    let Some((price, at)) = ctx.last_tick.filter(|(p, _)| p.0 > 0) else {
        return Err(EntryRefusal::NoPrice { instrument: request.instrument });
    };
    let age_ms = ctx.last_tick_age_ms.unwrap_or_else(|| ctx.now.millis_since(at));
    if age_ms >= ctx.stale_after_ms {
        return Err(EntryRefusal::StalePrice {
            instrument: request.instrument,
            last_tick_at: at,
            age_ms,
        });
    }
    let turnover = price * request.quantity;
    let cost = turnover + ctx.charges.leg_on_turnover(Txn::opening(request.side), turnover).total();
    if let Some(available) = request.available_cash
        && available < cost
    {
        return Err(EntryRefusal::InsufficientCash { needed: cost, available });
    }
    Ok(EntryApproval { reference_price: price, cost })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Segment;
    use crate::risk::params::SessionParams;

    fn ist(text: &str) -> Timestamp {
        Timestamp::parse(&format!("{text}+05:30")).unwrap()
    }

    const INSTRUMENT: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);

    fn request() -> EntryRequest {
        EntryRequest {
            position_id: PositionId::new("p9"),
            instrument: INSTRUMENT,
            side: Side::Long,
            quantity: Qty(75),
            available_cash: None,
        }
    }

    struct Fixture {
        session: SessionClock,
        limits: Limits,
        charges: ChargeSchedule,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                session: SessionClock::new(SessionParams::default()),
                limits: Limits::default(),
                charges: ChargeSchedule::default(),
            }
        }

        fn ctx(&self) -> EntryContext<'_> {
            let now = ist("2025-11-24T10:00:00");
            EntryContext {
                now,
                trading: TradingState::Active,
                session: &self.session,
                limits: &self.limits,
                charges: &self.charges,
                stale_after_ms: 3_000,
                open_positions: 0,
                pending_entries: 0,
                trades_today: 0,
                last_exit: None,
                last_tick: Some((Paise(10_000), now.plus_millis(-100))),
                last_tick_age_ms: None,
                id_in_use: false,
            }
        }
    }

    #[test]
    fn a_fresh_entry_is_approved_with_its_cost() {
        let f = Fixture::new();
        let ok = check(&f.ctx(), &request()).unwrap();
        // ₹7,500.00 turnover + ₹26.95 entry-leg charges (spec §6 example).
        assert_eq!(ok, EntryApproval { reference_price: Paise(10_000), cost: Paise(752_695) });
    }

    #[test]
    fn every_refusal_names_its_cause() {
        let f = Fixture::new();
        let base = f.ctx();
        let now = base.now;
        type Case<'a> = (&'a str, Box<dyn Fn(&mut EntryContext<'_>, &mut EntryRequest)>);
        let cases: Vec<Case> = vec![
            ("reducing", Box::new(|c, _| c.trading = TradingState::Reducing)),
            ("halted", Box::new(|c, _| c.trading = TradingState::Halted)),
            ("saturday", Box::new(|c, _| c.now = ist("2025-11-22T10:00:00"))),
            ("cutoff", Box::new(|c, _| c.now = ist("2025-11-24T15:15:00"))),
            ("max open", Box::new(|c, _| c.open_positions = 5)),
            (
                "max open counts pending",
                Box::new(|c, _| {
                    c.open_positions = 3;
                    c.pending_entries = 2
                }),
            ),
            ("max trades", Box::new(|c, _| c.trades_today = 20)),
            ("cooldown", Box::new(move |c, _| c.last_exit = Some(now.plus_millis(-180_000)))),
            ("no price", Box::new(|c, _| c.last_tick = None)),
            (
                "stale",
                Box::new(move |c, _| c.last_tick = Some((Paise(10_000), now.plus_millis(-3_000)))),
            ),
            ("cash", Box::new(|_, r| r.available_cash = Some(Paise(752_694)))),
            ("qty", Box::new(|_, r| r.quantity = Qty(0))),
            ("index", Box::new(|_, r| r.instrument = InstrumentKey::new(Segment::IdxI, 13))),
            ("duplicate", Box::new(|c, _| c.id_in_use = true)),
        ];
        let mut got = Vec::new();
        for (name, tweak) in &cases {
            let mut ctx = f.ctx();
            let mut req = request();
            tweak(&mut ctx, &mut req);
            let refusal = check(&ctx, &req).expect_err(name);
            got.push(format!("{name}: {refusal:?}"));
        }
        let expect = [
            "TradingNotActive",
            "TradingNotActive",
            "NotATradingDay",
            "AfterEntryCutoff",
            "MaxOpenPositions",
            "MaxOpenPositions",
            "MaxTradesPerDay",
            "ReentryCooldown",
            "NoPrice",
            "StalePrice",
            "InsufficientCash",
            "BadQuantity",
            "NotTradable",
            "DuplicateId",
        ];
        for (g, e) in got.iter().zip(expect) {
            assert!(g.contains(&format!(": {e}")), "{g} should be {e}");
        }
    }

    #[test]
    fn boundaries_one_step_inside_are_approved() {
        let f = Fixture::new();
        let now = f.ctx().now;
        let mut c = f.ctx();
        c.open_positions = 4;
        c.trades_today = 19;
        c.last_exit = Some(now.plus_millis(-180_001));
        c.last_tick = Some((Paise(10_000), now.plus_millis(-2_999)));
        let req = EntryRequest { available_cash: Some(Paise(752_695)), ..request() };
        assert!(check(&c, &req).is_ok());
        c.now = ist("2025-11-24T15:14:59.999");
        c.last_exit = None;
        c.last_tick = Some((Paise(10_000), c.now));
        assert!(check(&c, &req).is_ok());
    }

    #[test]
    fn cooldown_zero_is_off() {
        let mut f = Fixture::new();
        f.limits.reentry_cooldown_secs = 0;
        let mut c = f.ctx();
        c.last_exit = Some(c.now);
        assert!(check(&c, &request()).is_ok());
    }
}
