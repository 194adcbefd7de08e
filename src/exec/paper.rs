//! The paper broker: fills market orders at the reference price moved against the order by the
//! configured slippage, charges them per the schedule, and keeps the paper wallet (risk spec §6).
//!
//! Pure: orders in, fills and charges out as values, the time given by the caller. The simulator
//! serves live-style paper trading over sockets; this one serves replay and the in-process paper
//! mode. An entry on a stale price, or one the wallet cannot pay for, is refused; an exit always
//! fills (refusing to reduce risk is never the safe choice) and says when its price was stale.
//!
//! Wallet: an entry takes its turnover plus charges out of cash and holds the turnover as the
//! position's reservation. An exit releases the reservation of the quantity it closes, adds the
//! gross PnL of that quantity and takes the exit charges: for a long that is exactly "proceeds
//! minus charges"; for a short it is the blocked premium back plus the PnL. An exit of a
//! position this broker did not open (adopted) moves cash by the order's own flow: a sell
//! credits proceeds minus charges, a buy debits cost plus charges.

use std::collections::HashMap;

use crate::domain::{
    CorrelationId, Fill, InstrumentKey, OrderId, OrderIntent, OrderPurpose, Paise, PositionId, Qty,
    Side, Timestamp, Txn,
};
use crate::pnl::{ChargeSchedule, LegCharges};

/// `[paper]` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaperParams {
    pub initial_cash: Paise,
    /// Ticks of slippage against every order (0 = fill at the reference price).
    pub slippage_ticks: i64,
    pub tick_size: Paise,
}

impl Default for PaperParams {
    fn default() -> PaperParams {
        PaperParams { initial_cash: Paise(10_000_000), slippage_ticks: 0, tick_size: Paise(5) }
    }
}

/// One paper execution: the fill, the leg's charges, whether the price was stale, the cash
/// after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaperExecution {
    pub fill: Fill,
    pub charges: LegCharges,
    pub price_was_stale: bool,
    pub cash_after: Paise,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaperRefusal {
    #[error("entry {correlation_id} on {instrument}: price is stale")]
    StalePrice { correlation_id: CorrelationId, instrument: InstrumentKey },
    #[error("entry {correlation_id} needs {needed} but the paper wallet has {available}")]
    InsufficientCash { correlation_id: CorrelationId, needed: Paise, available: Paise },
    #[error("order {correlation_id}: quantity {quantity} is not positive")]
    BadQuantity { correlation_id: CorrelationId, quantity: Qty },
    #[error("entry {correlation_id}: position {position_id} is already open on paper")]
    AlreadyOpen { correlation_id: CorrelationId, position_id: PositionId },
    #[error(
        "limit entry {correlation_id} at {limit} is not marketable at {price}; the paper broker does not rest orders"
    )]
    LimitNotMarketable { correlation_id: CorrelationId, limit: Paise, price: Paise },
}

#[derive(Debug, Clone, Copy)]
struct Holding {
    side: Side,
    quantity: Qty,
    entry_price: Paise,
}

#[derive(Debug, Clone)]
pub struct PaperBroker {
    params: PaperParams,
    charges: ChargeSchedule,
    cash: Paise,
    holdings: HashMap<PositionId, Holding>,
    executions: u64,
}

impl PaperBroker {
    pub fn new(params: PaperParams, charges: ChargeSchedule) -> PaperBroker {
        let cash = params.initial_cash;
        PaperBroker { params, charges, cash, holdings: HashMap::new(), executions: 0 }
    }

    /// A wallet that continues from a recorded state (restart recovery): its cash, the open
    /// holdings (position, side, open quantity, entry price) and the number of executions so
    /// far, so that new fills get new trade and order ids.
    pub fn restore(
        params: PaperParams,
        charges: ChargeSchedule,
        cash: Paise,
        holdings: &[(PositionId, Side, Qty, Paise)],
        executions: u64,
    ) -> PaperBroker {
        let holdings = holdings
            .iter()
            .map(|(id, side, quantity, entry_price)| {
                (
                    id.clone(),
                    Holding { side: *side, quantity: *quantity, entry_price: *entry_price },
                )
            })
            .collect();
        PaperBroker { params, charges, cash, holdings, executions }
    }

    pub fn cash(&self) -> Paise {
        self.cash
    }

    /// `reference` moved against the order by the slippage: up for a buy, down for a sell
    /// (never below one tick, or the reference itself if that is lower).
    pub fn fill_price(&self, txn: Txn, reference: Paise) -> Paise {
        Self::slipped(txn, reference, self.params.tick_size, self.params.slippage_ticks)
    }

    fn slipped(txn: Txn, reference: Paise, tick: Paise, slippage_ticks: i64) -> Paise {
        let slip = Paise(slippage_ticks.saturating_mul(tick.0));
        match txn {
            Txn::Buy => reference + slip,
            Txn::Sell => (reference - slip).max(tick.min(reference)),
        }
    }

    /// The fill price on an instrument's own tick (from the instrument master): the reference
    /// put on the tick against the order (up for a buy, down for a sell), then the slippage in
    /// that instrument's ticks.
    pub fn fill_price_on_tick(&self, txn: Txn, reference: Paise, tick: Paise) -> Paise {
        let tick = Paise(tick.0.max(1));
        let against = match txn {
            Txn::Buy => Txn::Sell,
            Txn::Sell => Txn::Buy,
        };
        // `round_to_tick` rounds toward the passive side of `against`: up for a buy here.
        let on_tick = crate::instruments::limits::round_to_tick(reference, tick, against);
        Self::slipped(txn, on_tick, tick, self.params.slippage_ticks)
    }

    /// Fills `intent` in full at `at`, or refuses an entry.
    pub fn execute(
        &mut self,
        intent: &OrderIntent,
        at: Timestamp,
    ) -> Result<PaperExecution, PaperRefusal> {
        self.execute_on_tick(intent, at, None)
    }

    /// [`PaperBroker::execute`] with the instrument's own tick when the master knows it.
    pub fn execute_on_tick(
        &mut self,
        intent: &OrderIntent,
        at: Timestamp,
        tick: Option<Paise>,
    ) -> Result<PaperExecution, PaperRefusal> {
        self.execute_leg(intent, at, tick, 1)
    }

    /// [`PaperBroker::execute_on_tick`] for an order that went to the exchange as `orders`
    /// child orders (sliced at the freeze quantity, `exec::slicing`), all filled at the same
    /// price: brokerage per child, the other charges on the whole turnover (risk spec §6).
    pub fn execute_leg(
        &mut self,
        intent: &OrderIntent,
        at: Timestamp,
        tick: Option<Paise>,
        orders: u32,
    ) -> Result<PaperExecution, PaperRefusal> {
        let cid = intent.correlation_id.clone();
        let qty = intent.quantity;
        if qty.0 <= 0 {
            return Err(PaperRefusal::BadQuantity { correlation_id: cid, quantity: qty });
        }
        let price = match tick {
            Some(t) => self.fill_price_on_tick(intent.txn, intent.reference_price, t),
            None => self.fill_price(intent.txn, intent.reference_price),
        };
        // A LIMIT order fills when the market price reaches its limit, at that price (the limit
        // or better); the paper exchange has no book to rest it in.
        let price = match intent.limit_price {
            None => price,
            Some(limit) => {
                let marketable = match intent.txn {
                    Txn::Buy => price <= limit,
                    Txn::Sell => price >= limit,
                };
                if !marketable {
                    return Err(PaperRefusal::LimitNotMarketable {
                        correlation_id: cid,
                        limit,
                        price,
                    });
                }
                price
            }
        };
        let turnover = price * qty;
        let charges = self.charges.leg_on_turnover_orders(intent.txn, turnover, orders);
        match intent.purpose {
            OrderPurpose::Entry => {
                if intent.price_is_stale {
                    return Err(PaperRefusal::StalePrice {
                        correlation_id: cid,
                        instrument: intent.instrument,
                    });
                }
                if self.holdings.contains_key(&intent.position_id) {
                    return Err(PaperRefusal::AlreadyOpen {
                        correlation_id: cid,
                        position_id: intent.position_id.clone(),
                    });
                }
                let cost = turnover + charges.total();
                if self.cash < cost {
                    return Err(PaperRefusal::InsufficientCash {
                        correlation_id: cid,
                        needed: cost,
                        available: self.cash,
                    });
                }
                self.cash -= cost;
                let side = if intent.txn == Txn::Buy { Side::Long } else { Side::Short };
                self.holdings.insert(
                    intent.position_id.clone(),
                    Holding { side, quantity: qty, entry_price: price },
                );
            }
            OrderPurpose::Exit(_) => {
                let credit = self.exit_credit(&intent.position_id, intent.txn, price, qty);
                self.cash += credit - charges.total();
            }
        }
        self.executions += 1;
        let n = self.executions;
        Ok(PaperExecution {
            fill: Fill {
                correlation_id: cid,
                order_id: OrderId(format!("PAPER-O{n}")),
                trade_id: format!("PAPER-T{n}"),
                instrument: intent.instrument,
                txn: intent.txn,
                quantity: qty,
                price,
                value: price * qty,
                at,
            },
            charges,
            price_was_stale: intent.price_is_stale,
            cash_after: self.cash,
        })
    }

    /// What an exit of `qty` at `price` gives back before charges.
    fn exit_credit(&mut self, position: &PositionId, txn: Txn, price: Paise, qty: Qty) -> Paise {
        match self.holdings.get_mut(position) {
            Some(h) => {
                let closed = Qty(qty.0.min(h.quantity.0));
                let released = h.entry_price * closed;
                let gross = Paise(h.side.sign() * (price.0 - h.entry_price.0) * closed.0);
                h.quantity = Qty(h.quantity.0 - closed.0);
                if h.quantity.0 == 0 {
                    self.holdings.remove(position);
                }
                // Anything beyond the holding is plain order flow.
                let beyond = price * Qty(qty.0 - closed.0);
                let flow = if txn == Txn::Sell { beyond } else { -beyond };
                released + gross + flow
            }
            None => {
                let turnover = price * qty;
                if txn == Txn::Sell { turnover } else { -turnover }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ExitReason, Segment};

    const NIFTY_CE: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);

    fn intent(purpose: OrderPurpose, txn: Txn, qty: i64, price: i64, stale: bool) -> OrderIntent {
        OrderIntent {
            correlation_id: CorrelationId::new("N1-p1").unwrap(),
            position_id: PositionId::new("p1"),
            instrument: NIFTY_CE,
            txn,
            quantity: Qty(qty),
            purpose,
            reference_price: Paise(price),
            price_is_stale: stale,
            created_at: Timestamp(1),
            limit_price: None,
        }
    }

    fn broker(slippage_ticks: i64) -> PaperBroker {
        PaperBroker::new(
            PaperParams { slippage_ticks, ..PaperParams::default() },
            ChargeSchedule::default(),
        )
    }

    #[test]
    fn long_round_trip_moves_cash_by_the_net_pnl() {
        let mut b = broker(0);
        let e = b
            .execute(&intent(OrderPurpose::Entry, Txn::Buy, 75, 10_000, false), Timestamp(5))
            .unwrap();
        assert_eq!(e.fill.price, Paise(10_000));
        assert_eq!(e.fill.at, Timestamp(5));
        assert_eq!(e.charges.total(), Paise(2_695));
        assert_eq!(b.cash(), Paise(10_000_000 - 750_000 - 2_695));
        let x = b
            .execute(
                &intent(OrderPurpose::Exit(ExitReason::TakeProfit), Txn::Sell, 75, 12_000, false),
                Timestamp(6),
            )
            .unwrap();
        assert_eq!(x.charges.total(), Paise(3_633));
        assert_eq!(b.cash(), Paise(10_000_000 + 143_672));
        assert_ne!(e.fill.trade_id, x.fill.trade_id);
    }

    #[test]
    fn a_limit_entry_fills_when_marketable_at_the_market_and_is_refused_otherwise() {
        let mut b = broker(0);
        let limit = |txn, price, limit| OrderIntent {
            limit_price: Some(Paise(limit)),
            ..intent(OrderPurpose::Entry, txn, 75, price, false)
        };
        // A buy limited at ₹99.00 with the market at ₹100.00: not marketable, nothing moves.
        let cash = b.cash();
        assert!(matches!(
            b.execute(&limit(Txn::Buy, 10_000, 9_900), Timestamp(1)),
            Err(PaperRefusal::LimitNotMarketable { .. })
        ));
        assert_eq!(b.cash(), cash);
        // At ₹101.00 it is: filled at the market, ₹100.00 (the limit or better).
        let e = b.execute(&limit(Txn::Buy, 10_000, 10_100), Timestamp(2)).unwrap();
        assert_eq!(e.fill.price, Paise(10_000));
        // A sell limited at ₹99.00 with the market at ₹100.00 fills at ₹100.00; at ₹101.00 not.
        let mut b = broker(0);
        assert!(b.execute(&limit(Txn::Sell, 10_000, 10_100), Timestamp(3)).is_err());
        let e = b.execute(&limit(Txn::Sell, 10_000, 9_900), Timestamp(4)).unwrap();
        assert_eq!(e.fill.price, Paise(10_000));
    }

    #[test]
    fn short_round_trip_moves_cash_by_the_net_pnl() {
        let mut b = broker(0);
        b.execute(&intent(OrderPurpose::Entry, Txn::Sell, 50, 8_000, false), Timestamp(1)).unwrap();
        b.execute(
            &intent(OrderPurpose::Exit(ExitReason::TakeProfit), Txn::Buy, 50, 7_250, false),
            Timestamp(2),
        )
        .unwrap();
        // Spec-style short example: net ₹320.54.
        assert_eq!(b.cash(), Paise(10_000_000 + 32_054));
    }

    #[test]
    fn slippage_moves_the_fill_against_the_order() {
        let b = broker(2);
        assert_eq!(b.fill_price(Txn::Buy, Paise(10_000)), Paise(10_010));
        assert_eq!(b.fill_price(Txn::Sell, Paise(10_000)), Paise(9_990));
        assert_eq!(b.fill_price(Txn::Sell, Paise(10)), Paise(5));
        assert_eq!(b.fill_price(Txn::Sell, Paise(3)), Paise(3));
    }

    #[test]
    fn fills_use_the_instruments_own_tick() {
        let b = broker(2);
        // Tick ₹0.10: a buy at ₹100.03 fills at ₹100.10 + 2 ticks, a sell at ₹100.00 − 2 ticks.
        assert_eq!(b.fill_price_on_tick(Txn::Buy, Paise(10_003), Paise(10)), Paise(10_030));
        assert_eq!(b.fill_price_on_tick(Txn::Sell, Paise(10_003), Paise(10)), Paise(9_980));
        // The global tick (₹0.05) would have slipped by ₹0.10 only.
        assert_eq!(b.fill_price(Txn::Buy, Paise(10_000)), Paise(10_010));
    }

    #[test]
    fn stale_entry_is_refused_stale_exit_fills_and_says_so() {
        let mut b = broker(0);
        assert!(matches!(
            b.execute(&intent(OrderPurpose::Entry, Txn::Buy, 75, 10_000, true), Timestamp(1)),
            Err(PaperRefusal::StalePrice { .. })
        ));
        assert_eq!(b.cash(), Paise(10_000_000));
        let x = b
            .execute(
                &intent(OrderPurpose::Exit(ExitReason::SquareOff), Txn::Sell, 75, 9_000, true),
                Timestamp(2),
            )
            .unwrap();
        assert!(x.price_was_stale);
    }

    #[test]
    fn entry_is_refused_when_cash_is_short_by_one_paisa() {
        let mut b = PaperBroker::new(
            PaperParams { initial_cash: Paise(752_694), ..PaperParams::default() },
            ChargeSchedule::default(),
        );
        let err = b
            .execute(&intent(OrderPurpose::Entry, Txn::Buy, 75, 10_000, false), Timestamp(1))
            .unwrap_err();
        assert_eq!(
            err,
            PaperRefusal::InsufficientCash {
                correlation_id: CorrelationId::new("N1-p1").unwrap(),
                needed: Paise(752_695),
                available: Paise(752_694)
            }
        );
        let mut b = PaperBroker::new(
            PaperParams { initial_cash: Paise(752_695), ..PaperParams::default() },
            ChargeSchedule::default(),
        );
        assert!(
            b.execute(&intent(OrderPurpose::Entry, Txn::Buy, 75, 10_000, false), Timestamp(1))
                .is_ok()
        );
        assert_eq!(b.cash(), Paise(0));
    }

    #[test]
    fn exit_of_an_adopted_position_is_plain_order_flow() {
        let mut b = broker(0);
        b.execute(
            &intent(OrderPurpose::Exit(ExitReason::StopLoss), Txn::Sell, 75, 9_000, false),
            Timestamp(1),
        )
        .unwrap();
        let sell_leg = ChargeSchedule::default().leg(Txn::Sell, Paise(9_000), Qty(75)).total();
        assert_eq!(b.cash(), Paise(10_000_000 + 675_000) - sell_leg);
    }
}
