//! The simulated broker's books: orders with their lifecycle (spec dhan-v2 §4.7: TRANSIT →
//! PENDING → PART_TRADED → TRADED, or CANCELLED / REJECTED / EXPIRED), trades, net positions
//! per instrument and product, funds and the kill switch. Plain state driven by `now` and the
//! [`PriceBoard`]; the REST layer (`rest_api.rs`) calls into it under a lock and the exchange
//! thread (`broker.rs`) advances it. Every transition is returned to the caller, which pushes
//! one order-update message per transition.

use std::time::{Duration, Instant};

use crate::broker::model::{OrderStatus, OrderType, ProductType, Validity};
use crate::domain::{InstrumentKey, Paise, Timestamp, Txn};
use crate::sim::prices::PriceBoard;

/// Monotonic time for the lifecycle, wall time for what the books show.
#[derive(Copy, Clone, Debug)]
pub struct SimNow {
    pub mono: Instant,
    pub wall: Timestamp,
}

/// Who placed an order: through the API (`P`) or the Dhan web/app (`N`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Api,
    Web,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookConfig {
    pub client_id: String,
    /// How long an order stays in TRANSIT (invisible by correlation id, not cancellable).
    pub transit: Duration,
    /// From PENDING to the first fill of a marketable order.
    pub fill_delay: Duration,
    /// Fill a marketable order in this many parts (1 = at once).
    pub fill_parts: u32,
    /// Between two parts.
    pub fill_interval: Duration,
    /// Start-of-day limit.
    pub sod_limit: Paise,
}

/// A validated new order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOrder {
    pub correlation_id: Option<String>,
    pub instrument: InstrumentKey,
    pub txn: Txn,
    pub product: ProductType,
    pub order_type: OrderType,
    pub validity: Validity,
    pub quantity: i64,
    pub disclosed_quantity: i64,
    pub price: Paise,
    pub trigger_price: Paise,
}

/// A validated modification (quantity is the new total).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderChange {
    pub order_type: OrderType,
    pub quantity: i64,
    pub price: Paise,
    pub trigger_price: Paise,
    pub disclosed_quantity: i64,
    pub validity: Validity,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimOrder {
    pub order_id: String,
    pub exchange_order_id: String,
    pub correlation_id: String,
    pub source: Source,
    pub instrument: InstrumentKey,
    pub txn: Txn,
    pub product: ProductType,
    pub order_type: OrderType,
    pub validity: Validity,
    pub quantity: i64,
    pub disclosed_quantity: i64,
    pub price: Paise,
    pub trigger_price: Paise,
    pub status: OrderStatus,
    pub filled_qty: i64,
    /// Σ price × qty of the fills, in paise.
    pub filled_value: i128,
    pub last_fill_price: Paise,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub exchange_time: Option<Timestamp>,
    /// `omsErrorDescription` / `ReasonDescription`.
    pub reason: String,
    pub modifications: u32,
    transit_until: Instant,
    next_fill_at: Option<Instant>,
    triggered: bool,
    /// Refused by the exchange / RMS when it leaves TRANSIT, with this description.
    refuse_with: Option<String>,
}

impl SimOrder {
    pub fn remaining(&self) -> i64 {
        self.quantity - self.filled_qty
    }

    /// Average fill price, rounded half away from zero.
    pub fn average_price(&self) -> Paise {
        if self.filled_qty == 0 {
            return Paise::ZERO;
        }
        Paise(crate::domain::money::div_round_half_away(
            self.filled_value,
            i128::from(self.filled_qty),
        ) as i64)
    }

    pub fn is_open(&self) -> bool {
        matches!(self.status, OrderStatus::Transit | OrderStatus::Pending | OrderStatus::PartTraded)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimTrade {
    pub trade_id: String,
    pub order_id: String,
    pub exchange_order_id: String,
    pub instrument: InstrumentKey,
    pub txn: Txn,
    pub product: ProductType,
    pub order_type: OrderType,
    pub quantity: i64,
    pub price: Paise,
    pub time: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimPosition {
    pub instrument: InstrumentKey,
    pub product: ProductType,
    pub buy_qty: i64,
    pub sell_qty: i64,
    /// Σ price × qty, paise.
    pub buy_value: i128,
    pub sell_value: i128,
}

impl SimPosition {
    pub fn net(&self) -> i64 {
        self.buy_qty - self.sell_qty
    }

    fn avg(value: i128, qty: i64) -> Paise {
        if qty == 0 {
            Paise::ZERO
        } else {
            Paise(crate::domain::money::div_round_half_away(value, i128::from(qty)) as i64)
        }
    }

    pub fn buy_avg(&self) -> Paise {
        SimPosition::avg(self.buy_value, self.buy_qty)
    }

    pub fn sell_avg(&self) -> Paise {
        SimPosition::avg(self.sell_value, self.sell_qty)
    }

    /// Profit on the matched quantity: `min(buy, sell) × (sell_avg − buy_avg)`.
    pub fn realized(&self) -> Paise {
        let matched = self.buy_qty.min(self.sell_qty);
        if matched == 0 {
            return Paise::ZERO;
        }
        let per_unit_value =
            self.sell_value * i128::from(self.buy_qty) - self.buy_value * i128::from(self.sell_qty);
        let value = per_unit_value * i128::from(matched);
        let den = i128::from(self.buy_qty) * i128::from(self.sell_qty);
        Paise(crate::domain::money::div_round_half_away(value, den) as i64)
    }

    /// The average price of the open side.
    pub fn cost_price(&self) -> Paise {
        match self.net() {
            n if n > 0 => self.buy_avg(),
            n if n < 0 => self.sell_avg(),
            _ => Paise::ZERO,
        }
    }

    pub fn unrealized(&self, ltp: Option<Paise>) -> Paise {
        let (Some(ltp), net) = (ltp, self.net()) else { return Paise::ZERO };
        Paise((ltp.0 - self.cost_price().0) * net)
    }
}

/// Why the book refused a request; the REST layer maps each to Dhan's error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BookError {
    UnknownOrder,
    InTransit,
    NotModifiable(OrderStatus),
    TooManyModifications,
    KillSwitchActive,
    OpenPositionsOrOrders,
}

#[derive(Debug)]
pub struct Book {
    cfg: BookConfig,
    orders: Vec<SimOrder>,
    trades: Vec<SimTrade>,
    positions: Vec<SimPosition>,
    kill_switch: bool,
    next_order: u64,
    next_trade: u64,
}

/// Dhan allows 25 modifications per order (spec §5).
pub const MAX_MODIFICATIONS: u32 = 25;

impl Book {
    pub fn new(cfg: BookConfig) -> Book {
        Book {
            cfg,
            orders: Vec::new(),
            trades: Vec::new(),
            positions: Vec::new(),
            kill_switch: false,
            next_order: 1,
            next_trade: 1,
        }
    }

    pub fn config(&self) -> &BookConfig {
        &self.cfg
    }

    pub fn orders(&self) -> &[SimOrder] {
        &self.orders
    }

    pub fn trades(&self) -> &[SimTrade] {
        &self.trades
    }

    pub fn positions(&self) -> &[SimPosition] {
        &self.positions
    }

    pub fn kill_switch_active(&self) -> bool {
        self.kill_switch
    }

    pub fn order(&self, id: &str) -> Option<&SimOrder> {
        self.orders.iter().find(|o| o.order_id == id)
    }

    /// The order `GET /orders/external/{cid}` shows: the latest one with that id that has left
    /// TRANSIT.
    pub fn by_correlation_id(&self, cid: &str) -> Option<&SimOrder> {
        self.orders
            .iter()
            .rev()
            .find(|o| o.correlation_id == cid && o.status != OrderStatus::Transit)
    }

    /// Places an order; it starts in TRANSIT. Returns its index-free snapshot.
    pub fn place(
        &mut self,
        new: NewOrder,
        source: Source,
        now: SimNow,
    ) -> Result<SimOrder, BookError> {
        if self.kill_switch {
            return Err(BookError::KillSwitchActive);
        }
        let n = self.next_order;
        self.next_order += 1;
        let correlation_id = new.correlation_id.unwrap_or_else(|| {
            format!("{}-{}", self.cfg.client_id, now.wall.millis() + n as i64 - 1)
        });
        let order = SimOrder {
            order_id: format!("52{:012}", n),
            exchange_order_id: String::new(),
            correlation_id,
            source,
            instrument: new.instrument,
            txn: new.txn,
            product: new.product,
            order_type: new.order_type,
            validity: new.validity,
            quantity: new.quantity,
            disclosed_quantity: new.disclosed_quantity,
            price: new.price,
            trigger_price: new.trigger_price,
            status: OrderStatus::Transit,
            filled_qty: 0,
            filled_value: 0,
            last_fill_price: Paise::ZERO,
            created: now.wall,
            updated: now.wall,
            exchange_time: None,
            reason: String::new(),
            modifications: 0,
            transit_until: now.mono + self.cfg.transit,
            next_fill_at: None,
            triggered: false,
            refuse_with: None,
        };
        self.orders.push(order.clone());
        Ok(order)
    }

    /// Places an order that the exchange / RMS will refuse with `reason` (its
    /// `omsErrorDescription`) when it leaves TRANSIT, as Dhan does for insufficient funds, a
    /// freeze or lot violation, a blocked instrument.
    pub fn place_refused(
        &mut self,
        new: NewOrder,
        source: Source,
        now: SimNow,
        reason: String,
    ) -> Result<SimOrder, BookError> {
        let placed = self.place(new, source, now)?;
        if let Some(o) = self.orders.last_mut() {
            o.refuse_with = Some(reason);
        }
        Ok(placed)
    }

    /// Modifies an open order (accepted while TRANSIT, spec §4.3).
    pub fn modify(
        &mut self,
        id: &str,
        change: OrderChange,
        now: SimNow,
    ) -> Result<SimOrder, BookError> {
        let o = self.orders.iter_mut().find(|o| o.order_id == id).ok_or(BookError::UnknownOrder)?;
        if !o.is_open() {
            return Err(BookError::NotModifiable(o.status.clone()));
        }
        if o.modifications >= MAX_MODIFICATIONS {
            return Err(BookError::TooManyModifications);
        }
        if change.quantity < o.filled_qty {
            return Err(BookError::NotModifiable(o.status.clone()));
        }
        o.modifications += 1;
        o.order_type = change.order_type;
        o.quantity = change.quantity;
        o.price = change.price;
        o.trigger_price = change.trigger_price;
        o.disclosed_quantity = change.disclosed_quantity;
        o.validity = change.validity;
        o.updated = now.wall;
        o.reason = "MODIFIED".into();
        Ok(o.clone())
    }

    /// Cancels an open order; refused while TRANSIT (spec §4.3).
    pub fn cancel(&mut self, id: &str, now: SimNow) -> Result<SimOrder, BookError> {
        let o = self.orders.iter_mut().find(|o| o.order_id == id).ok_or(BookError::UnknownOrder)?;
        match o.status {
            OrderStatus::Transit => Err(BookError::InTransit),
            OrderStatus::Pending | OrderStatus::PartTraded => {
                o.status = OrderStatus::Cancelled;
                o.reason = "CANCELLED".into();
                o.updated = now.wall;
                Ok(o.clone())
            }
            ref s => Err(BookError::NotModifiable(s.clone())),
        }
    }

    /// Activation needs no open position and no open order (spec §4.6).
    pub fn set_kill_switch(&mut self, activate: bool) -> Result<(), BookError> {
        if activate
            && (self.positions.iter().any(|p| p.net() != 0)
                || self.orders.iter().any(SimOrder::is_open))
        {
            return Err(BookError::OpenPositionsOrOrders);
        }
        self.kill_switch = activate;
        Ok(())
    }

    /// Adds a position as if traded earlier from another platform (a day trade on the books).
    pub fn inject_position(
        &mut self,
        instrument: InstrumentKey,
        product: ProductType,
        net_qty: i64,
        avg: Paise,
    ) {
        let p = self.position_mut(instrument, product);
        let value = i128::from(avg.0) * i128::from(net_qty.abs());
        if net_qty > 0 {
            p.buy_qty += net_qty;
            p.buy_value += value;
        } else {
            p.sell_qty -= net_qty;
            p.sell_value += value;
        }
    }

    fn position_mut(
        &mut self,
        instrument: InstrumentKey,
        product: ProductType,
    ) -> &mut SimPosition {
        let i = match self
            .positions
            .iter()
            .position(|p| p.instrument == instrument && p.product == product)
        {
            Some(i) => i,
            None => {
                self.positions.push(SimPosition {
                    instrument,
                    product,
                    buy_qty: 0,
                    sell_qty: 0,
                    buy_value: 0,
                    sell_value: 0,
                });
                self.positions.len() - 1
            }
        };
        &mut self.positions[i]
    }

    /// Moves every order as far as `now` and the prices allow; returns each order after each
    /// transition, in order.
    pub fn advance(&mut self, now: SimNow, prices: &PriceBoard) -> Vec<SimOrder> {
        let mut out = Vec::new();
        for i in 0..self.orders.len() {
            // Loop: one order may pass several states in one step (PENDING, then a fill).
            while let Some(snapshot) = self.step_order(i, now, prices) {
                out.push(snapshot);
            }
        }
        out
    }

    /// One transition of order `i`, if one is due.
    fn step_order(&mut self, i: usize, now: SimNow, prices: &PriceBoard) -> Option<SimOrder> {
        let ltp = prices.get(self.orders[i].instrument).map(|(p, _)| p);
        let cfg_fill_delay = self.cfg.fill_delay;
        let o = &mut self.orders[i];
        match o.status {
            OrderStatus::Transit if now.mono >= o.transit_until && o.refuse_with.is_some() => {
                o.status = OrderStatus::Rejected;
                o.reason = o.refuse_with.take().unwrap_or_default();
                o.updated = now.wall;
                Some(o.clone())
            }
            OrderStatus::Transit if now.mono >= o.transit_until => {
                o.status = OrderStatus::Pending;
                o.exchange_order_id = format!(
                    "1600{:012}",
                    o.order_id.trim_start_matches("52").parse::<u64>().unwrap_or(0)
                );
                o.exchange_time = Some(now.wall);
                o.updated = now.wall;
                o.reason = "CONFIRMED".into();
                o.next_fill_at = Some(now.mono + cfg_fill_delay);
                Some(o.clone())
            }
            OrderStatus::Pending | OrderStatus::PartTraded => {
                if o.next_fill_at.is_some_and(|t| now.mono < t) {
                    return None;
                }
                let fill_price = match self.fill_price(i, ltp) {
                    FillDecision::Fill(p) => p,
                    FillDecision::Wait => {
                        let o = &mut self.orders[i];
                        if o.validity == Validity::Ioc {
                            o.status = OrderStatus::Expired;
                            o.reason = "IOC order not filled: remaining quantity expired".into();
                            o.updated = now.wall;
                            return Some(o.clone());
                        }
                        return None;
                    }
                    FillDecision::Reject(why) => {
                        let o = &mut self.orders[i];
                        o.status = OrderStatus::Rejected;
                        o.reason = why;
                        o.updated = now.wall;
                        return Some(o.clone());
                    }
                };
                Some(self.fill(i, fill_price, now))
            }
            _ => None,
        }
    }

    fn fill_price(&mut self, i: usize, ltp: Option<Paise>) -> FillDecision {
        let o = &mut self.orders[i];
        let Some(ltp) = ltp else {
            return match o.order_type {
                OrderType::Market => {
                    FillDecision::Reject(format!("RMS:No last traded price for {}", o.instrument))
                }
                _ => FillDecision::Wait,
            };
        };
        let buy = o.txn == Txn::Buy;
        if matches!(o.order_type, OrderType::StopLoss | OrderType::StopLossMarket) && !o.triggered {
            let hit = if buy { ltp >= o.trigger_price } else { ltp <= o.trigger_price };
            if !hit {
                return FillDecision::Wait;
            }
            o.triggered = true;
        }
        match o.order_type {
            OrderType::Market | OrderType::StopLossMarket => FillDecision::Fill(ltp),
            OrderType::Limit | OrderType::StopLoss => {
                let crosses = if buy { ltp <= o.price } else { ltp >= o.price };
                if !crosses {
                    FillDecision::Wait
                } else if buy {
                    FillDecision::Fill(ltp.min(o.price))
                } else {
                    FillDecision::Fill(ltp.max(o.price))
                }
            }
        }
    }

    fn fill(&mut self, i: usize, price: Paise, now: SimNow) -> SimOrder {
        let parts = i64::from(self.cfg.fill_parts.max(1));
        let interval = self.cfg.fill_interval;
        let o = &mut self.orders[i];
        let part = (o.quantity + parts - 1) / parts;
        let qty = part.min(o.remaining()).max(1);
        o.filled_qty += qty;
        o.filled_value += i128::from(price.0) * i128::from(qty);
        o.last_fill_price = price;
        o.updated = now.wall;
        if o.remaining() == 0 {
            o.status = OrderStatus::Traded;
            o.reason = "TRADE CONFIRMED".into();
            o.next_fill_at = None;
        } else {
            o.status = OrderStatus::PartTraded;
            o.reason = "TRADE CONFIRMED".into();
            o.next_fill_at = Some(now.mono + interval);
        }
        let snapshot = o.clone();
        let trade_n = self.next_trade;
        self.next_trade += 1;
        self.trades.push(SimTrade {
            trade_id: format!("25{:012}", trade_n),
            order_id: snapshot.order_id.clone(),
            exchange_order_id: snapshot.exchange_order_id.clone(),
            instrument: snapshot.instrument,
            txn: snapshot.txn,
            product: snapshot.product,
            order_type: snapshot.order_type,
            quantity: qty,
            price,
            time: now.wall,
        });
        let p = self.position_mut(snapshot.instrument, snapshot.product);
        let value = i128::from(price.0) * i128::from(qty);
        match snapshot.txn {
            Txn::Buy => {
                p.buy_qty += qty;
                p.buy_value += value;
            }
            Txn::Sell => {
                p.sell_qty += qty;
                p.sell_value += value;
            }
        }
        snapshot
    }
}

enum FillDecision {
    Fill(Paise),
    Wait,
    Reject(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Segment;

    const NIFTY_PUT: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);

    fn book(parts: u32) -> Book {
        Book::new(BookConfig {
            client_id: "1000000001".into(),
            transit: Duration::from_millis(200),
            fill_delay: Duration::ZERO,
            fill_parts: parts,
            fill_interval: Duration::from_millis(50),
            sod_limit: Paise(10_000_000),
        })
    }

    fn market(txn: Txn, qty: i64) -> NewOrder {
        NewOrder {
            correlation_id: Some("c-1".into()),
            instrument: NIFTY_PUT,
            txn,
            product: ProductType::Intraday,
            order_type: OrderType::Market,
            validity: Validity::Day,
            quantity: qty,
            disclosed_quantity: 0,
            price: Paise::ZERO,
            trigger_price: Paise::ZERO,
        }
    }

    fn at(t0: Instant, ms: u64) -> SimNow {
        SimNow {
            mono: t0 + Duration::from_millis(ms),
            wall: Timestamp(1_763_960_415_000 + ms as i64),
        }
    }

    fn statuses(v: &[SimOrder]) -> Vec<OrderStatus> {
        v.iter().map(|o| o.status.clone()).collect()
    }

    #[test]
    fn market_order_goes_transit_pending_traded_at_the_ltp() {
        let t0 = Instant::now();
        let prices = PriceBoard::new();
        prices.set(NIFTY_PUT, Paise(12345), Timestamp(0));
        let mut b = book(1);
        let o = b.place(market(Txn::Buy, 75), Source::Api, at(t0, 0)).unwrap();
        assert_eq!(o.status, OrderStatus::Transit);
        assert!(b.advance(at(t0, 199), &prices).is_empty(), "still in transit");
        assert!(b.by_correlation_id("c-1").is_none(), "invisible by correlation id in TRANSIT");
        let moves = b.advance(at(t0, 200), &prices);
        assert_eq!(statuses(&moves), vec![OrderStatus::Pending, OrderStatus::Traded]);
        let done = &moves[1];
        assert_eq!((done.filled_qty, done.average_price()), (75, Paise(12345)));
        assert_eq!(b.trades().len(), 1);
        assert_eq!(b.positions()[0].net(), 75);
        assert!(b.by_correlation_id("c-1").is_some());
    }

    #[test]
    fn cancel_is_refused_in_transit_and_for_finished_orders() {
        let t0 = Instant::now();
        let prices = PriceBoard::new();
        let mut b = book(1);
        let mut lim = market(Txn::Buy, 75);
        lim.order_type = OrderType::Limit;
        lim.price = Paise(10000);
        let o = b.place(lim, Source::Api, at(t0, 0)).unwrap();
        assert_eq!(b.cancel(&o.order_id, at(t0, 10)), Err(BookError::InTransit));
        b.advance(at(t0, 300), &prices);
        assert_eq!(b.cancel(&o.order_id, at(t0, 310)).unwrap().status, OrderStatus::Cancelled);
        assert!(matches!(b.cancel(&o.order_id, at(t0, 320)), Err(BookError::NotModifiable(_))));
    }

    #[test]
    fn fills_in_parts_report_part_traded_with_cumulative_average() {
        let t0 = Instant::now();
        let prices = PriceBoard::new();
        prices.set(NIFTY_PUT, Paise(10000), Timestamp(0));
        let mut b = book(3);
        b.place(market(Txn::Sell, 150), Source::Api, at(t0, 0)).unwrap();
        let first = b.advance(at(t0, 200), &prices);
        assert_eq!(statuses(&first), vec![OrderStatus::Pending, OrderStatus::PartTraded]);
        prices.set(NIFTY_PUT, Paise(10300), Timestamp(0));
        let second = b.advance(at(t0, 250), &prices);
        assert_eq!(statuses(&second), vec![OrderStatus::PartTraded]);
        assert_eq!((second[0].filled_qty, second[0].average_price()), (100, Paise(10150)));
        let third = b.advance(at(t0, 300), &prices);
        assert_eq!(statuses(&third), vec![OrderStatus::Traded]);
        let p = &b.positions()[0];
        assert_eq!((p.net(), p.sell_qty), (-150, 150));
    }

    #[test]
    fn positions_average_and_realise_exactly() {
        let mut p = SimPosition {
            instrument: NIFTY_PUT,
            product: ProductType::Intraday,
            buy_qty: 0,
            sell_qty: 0,
            buy_value: 0,
            sell_value: 0,
        };
        p.buy_qty = 150;
        p.buy_value = 75 * 10000 + 75 * 10001;
        p.sell_qty = 75;
        p.sell_value = 75 * 11000;
        assert_eq!(p.buy_avg(), Paise(10001), "100.005 rounds half away to 100.01");
        assert_eq!(p.net(), 75);
        // 75 × (110.00 − 100.005) = 749.625 → 749.63
        assert_eq!(p.realized(), Paise(74963));
        assert_eq!(p.unrealized(Some(Paise(10101))), Paise(75 * 100));
    }

    #[test]
    fn market_order_without_a_price_is_rejected_by_rms() {
        let t0 = Instant::now();
        let mut b = book(1);
        b.place(market(Txn::Buy, 75), Source::Api, at(t0, 0)).unwrap();
        let moves = b.advance(at(t0, 200), &PriceBoard::new());
        assert_eq!(statuses(&moves), vec![OrderStatus::Pending, OrderStatus::Rejected]);
        assert!(moves[1].reason.starts_with("RMS:"));
    }

    #[test]
    fn an_order_placed_to_be_refused_leaves_transit_rejected_with_its_reason() {
        let t0 = Instant::now();
        let prices = PriceBoard::new();
        prices.set(NIFTY_PUT, Paise(12345), Timestamp(0));
        let mut b = book(1);
        let why = "RMS:Insufficient Funds".to_string();
        let o = b.place_refused(market(Txn::Sell, 75), Source::Api, at(t0, 0), why).unwrap();
        assert_eq!(o.status, OrderStatus::Transit);
        let moves = b.advance(at(t0, 200), &prices);
        assert_eq!(statuses(&moves), vec![OrderStatus::Rejected]);
        assert_eq!(moves[0].reason, "RMS:Insufficient Funds");
        assert!(b.trades().is_empty());
    }

    #[test]
    fn kill_switch_needs_a_flat_book_then_blocks_placement() {
        let t0 = Instant::now();
        let mut b = book(1);
        b.inject_position(NIFTY_PUT, ProductType::Intraday, 75, Paise(10000));
        assert_eq!(b.set_kill_switch(true), Err(BookError::OpenPositionsOrOrders));
        b.inject_position(NIFTY_PUT, ProductType::Intraday, -75, Paise(10100));
        assert_eq!(b.set_kill_switch(true), Ok(()));
        assert_eq!(
            b.place(market(Txn::Buy, 75), Source::Api, at(t0, 0)),
            Err(BookError::KillSwitchActive)
        );
    }

    #[test]
    fn omitted_correlation_id_is_generated_as_client_id_and_epoch_ms() {
        let t0 = Instant::now();
        let mut b = book(1);
        let mut n = market(Txn::Buy, 75);
        n.correlation_id = None;
        let o = b.place(n, Source::Web, at(t0, 0)).unwrap();
        assert_eq!(o.correlation_id, "1000000001-1763960415000");
    }
}
