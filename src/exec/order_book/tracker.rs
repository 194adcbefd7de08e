//! The live broker's part of the order book: what the broker says about our orders, turned
//! into our events exactly once.
//!
//! Every order is registered (`expect`) before its placement is sent, so a report that beats
//! the HTTP answer is still matched, by correlation id; once the order id is known reports are
//! matched by it. Reports carry cumulative figures (traded quantity, average price), so a fill
//! is the growth of the traded quantity since the last report applied: a duplicate message, a
//! poll that repeats what the socket said, or a stale poll that says less, add nothing. An
//! exit's executions are reported as they come (the exit core adds part fills up); an entry's
//! once, when it is complete, as its total at its average (the core opens the position
//! from it). An order that ends without (further) executions (rejected by the exchange,
//! cancelled, expired) is reported once as ended.
//!
//! The book also keeps, per instrument, a sequence number of our order activity, so that
//! reconciliation can tell which instruments moved while it was reading the broker's books.
//! Neighbours: `exec::live` feeds it (through [`OrderBook::apply`]) from the order-update
//! socket, the poller, the gateway and the order desk, and reports what it returns to the exit
//! engine.

use std::collections::BTreeSet;

use crate::broker::model::{Order, OrderStatus, OrderUpdate, Trade};
use crate::domain::money::{average_price, sum_trades, trade_value};
use crate::domain::{
    CorrelationId, Fill, InstrumentKey, OrderId, OrderIntent, Paise, Qty, Timestamp,
};

use super::{Execution, Now, OrderBook, Record, Sliced, State};

/// One report about an order, whatever its source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub order_id: OrderId,
    pub correlation_id: Option<String>,
    pub status: OrderStatus,
    /// Cumulative traded quantity.
    pub traded: Qty,
    /// Average price of everything traded so far.
    pub avg_price: Paise,
    /// The price of the latest trade (the order-update socket's `TradedPrice`); `None` from
    /// the order book, which only gives the average.
    pub last_fill_price: Option<Paise>,
    /// The broker's reason text (rejections).
    pub reason: String,
}

impl Seen {
    pub fn from_update(u: &OrderUpdate) -> Seen {
        Seen {
            order_id: u.order_id.clone(),
            correlation_id: u.correlation_id.clone(),
            status: u.status.clone(),
            traded: u.traded_qty,
            avg_price: u.avg_traded_price,
            last_fill_price: Some(u.last_fill_price).filter(|p| p.0 > 0),
            reason: u.reason.clone(),
        }
    }

    pub fn from_order(o: &Order) -> Seen {
        Seen {
            order_id: o.order_id.clone(),
            correlation_id: o.correlation_id.clone(),
            status: o.order_status.clone(),
            traded: o.filled_qty,
            avg_price: o.average_traded_price,
            last_fill_price: None,
            reason: o.oms_error_description.clone(),
        }
    }
}

/// What the book concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// The broker holds the order under `order_id` (reported the first time only).
    Bound { intent: OrderIntent, order_id: OrderId },
    /// An execution: each one for an exit; the order's total at its average for an entry.
    /// `cumulative`: the order's traded quantity with it.
    Fill { intent: OrderIntent, fill: Fill, cumulative: Qty },
    /// The order ended without (further) executions: rejected, cancelled or expired. An entry
    /// that ended part filled is reported as a `Fill` of that part instead.
    Ended { intent: OrderIntent, order_id: OrderId, status: OrderStatus, reason: String },
}

impl OrderBook {
    fn touch(&mut self, instrument: InstrumentKey) {
        self.seq += 1;
        self.activity.insert(instrument, self.seq);
    }

    /// Registers an order about to be placed. `false` if it is already known (beyond the
    /// router's admission).
    pub(crate) fn expect(&mut self, intent: &OrderIntent, now: Now) -> bool {
        self.expect_filled(intent, Qty(0), Paise::ZERO, now)
    }

    /// Registers an order of which `traded` worth `value` (Σ price × quantity) was already
    /// applied (an exit in flight recovered after a restart): only what trades beyond it is
    /// reported.
    pub(crate) fn expect_filled(
        &mut self,
        intent: &OrderIntent,
        traded: Qty,
        value: Paise,
        now: Now,
    ) -> bool {
        let cid = &intent.correlation_id;
        if self.orders.get(cid).is_some_and(|r| r.state != State::Intent) {
            return false;
        }
        self.touch(intent.instrument);
        let r = self
            .orders
            .entry(cid.clone())
            .or_insert_with(|| Record::new(intent, State::Intent, now));
        r.state = if traded.0 > 0 { State::PartFilled } else { State::Sent };
        r.tracked = true;
        r.traded = traded;
        r.value = value;
        r.avg = average_price(value, traded).unwrap_or(Paise::ZERO);
        r.updated_at = now.at;
        r.last_seen_ms = now.ms;
        true
    }

    /// Registers an order sent as `children` (each registered as an order of its own). `false`
    /// if the parent or a child is already known.
    pub(crate) fn expect_sliced(
        &mut self,
        parent: &OrderIntent,
        children: &[OrderIntent],
        now: Now,
    ) -> bool {
        let cid = &parent.correlation_id;
        if self.orders.get(cid).is_some_and(|r| r.state != State::Intent)
            || children.iter().any(|c| self.orders.contains_key(&c.correlation_id))
        {
            return false;
        }
        for c in children {
            self.expect(c, now);
            if let Some(r) = self.orders.get_mut(&c.correlation_id) {
                r.parent = Some(cid.clone());
            }
        }
        let r = self
            .orders
            .entry(cid.clone())
            .or_insert_with(|| Record::new(parent, State::Intent, now));
        r.state = State::Sent;
        r.updated_at = now.at;
        r.last_seen_ms = now.ms;
        r.sliced = Some(Sliced {
            children: children.iter().map(|c| c.correlation_id.clone()).collect(),
            ..Sliced::default()
        });
        true
    }

    /// After a restart: `traded` of the parent's quantity was applied already (its fills are
    /// in the recovered state), of which `child_traded` at `avg` by child `cid`: only what
    /// trades beyond it is reported. The figures only grow: a poll that told the child's
    /// executions between its registration and this (and reported them) is not undone, so
    /// they never count twice.
    pub(crate) fn applied(
        &mut self,
        cid: &CorrelationId,
        parent_traded: Qty,
        child_traded: Qty,
        avg: Paise,
    ) {
        let mut parent = None;
        if let Some(t) = self.orders.get_mut(cid) {
            if child_traded > t.traded {
                t.traded = child_traded;
                t.avg = avg;
                t.value = avg * child_traded;
            }
            parent = t.parent.clone();
        }
        if let Some(p) = parent.and_then(|p| self.orders.get_mut(&p)) {
            p.traded = p.traded.max(parent_traded);
        }
    }

    /// Whether `cid` is one child of a sliced order.
    pub fn is_slice(&self, cid: &CorrelationId) -> bool {
        self.orders.get(cid).is_some_and(|r| r.parent.is_some())
    }

    /// Marks a sliced order as ended by its placement (every child refused at once): nothing
    /// more is reported of it.
    pub(crate) fn abandon_sliced(&mut self, parent: &CorrelationId, now: Now) {
        let children = match self.orders.get_mut(parent) {
            Some(p) if p.sliced.is_some() => {
                p.advance(State::Rejected { reason: "every slice was refused".into() }, now);
                p.children().to_vec()
            }
            _ => return,
        };
        for c in &children {
            self.finish_one(c, "refused at placement", now);
        }
    }

    /// Tells the reports of children as their parent's; adds the parent's end once every
    /// child has ended short of the parent's quantity.
    fn lift(&mut self, reports: Vec<Report>, now: Now) -> Vec<Report> {
        let mut out = Vec::with_capacity(reports.len());
        let mut touched = Vec::new();
        for r in reports {
            let cid = match &r {
                Report::Bound { intent, .. }
                | Report::Fill { intent, .. }
                | Report::Ended { intent, .. } => intent.correlation_id.clone(),
            };
            let Some(parent) = self.orders.get(&cid).and_then(|c| c.parent.clone()) else {
                out.push(r);
                continue;
            };
            let Some(p) = self.orders.get_mut(&parent) else { continue };
            let Some(s) = p.sliced.as_mut() else { continue };
            match r {
                Report::Bound { order_id, .. } => {
                    if p.order_id.is_none() {
                        p.order_id = Some(order_id.clone());
                        p.advance(State::Accepted, now);
                        out.push(Report::Bound { intent: p.intent.clone(), order_id });
                    }
                }
                Report::Fill { mut fill, .. } => {
                    p.traded = Qty(p.traded.0.saturating_add(fill.quantity.0));
                    p.value =
                        Paise::saturating_from(i128::from(p.value.0) + i128::from(fill.value().0));
                    p.fills.insert(
                        fill.trade_id.clone(),
                        Execution { quantity: fill.quantity, price: fill.price },
                    );
                    p.updated_at = now.at;
                    if p.intent.purpose.is_exit() {
                        p.state = if p.traded >= p.intent.quantity {
                            State::Filled
                        } else {
                            State::PartFilled
                        };
                        fill.correlation_id = parent.clone();
                        out.push(Report::Fill {
                            intent: p.intent.clone(),
                            fill,
                            cumulative: p.traded,
                        });
                    } else {
                        s.value += i128::from(fill.value().0);
                        s.last_fill = Some((fill.order_id, fill.at));
                        p.advance(State::PartFilled, now);
                    }
                }
                Report::Ended { order_id, status, reason, .. } => {
                    s.last_end = Some((order_id, status, reason));
                }
            }
            touched.push(parent);
        }
        for parent in touched {
            out.extend(self.parent_end(&parent, now));
        }
        out
    }

    fn parent_end(&mut self, parent: &CorrelationId, now: Now) -> Option<Report> {
        let p = self.orders.get(parent)?;
        let exit = p.intent.purpose.is_exit();
        if p.state.is_final() || (exit && p.traded >= p.intent.quantity) {
            return None;
        }
        if !p.children().iter().all(|c| self.orders.get(c).is_none_or(|t| t.state.is_final())) {
            return None;
        }
        let p = self.orders.get_mut(parent)?;
        let s = p.sliced.clone()?;
        if !exit && p.traded.0 > 0 {
            let value = Paise::saturating_from(s.value);
            let (order_id, at) = s.last_fill.clone()?;
            p.value = value;
            p.avg = average_price(value, p.traded).unwrap_or(Paise::ZERO);
            p.state = if p.traded >= p.intent.quantity {
                State::Filled
            } else {
                State::Cancelled { reason: "a slice ended unfilled".into() }
            };
            p.updated_at = now.at;
            return Some(Report::Fill {
                intent: p.intent.clone(),
                fill: fill(&p.intent, &order_id, p.traded, p.traded, value, at),
                cumulative: p.traded,
            });
        }
        let (order_id, status, reason) = s.last_end.clone().unwrap_or_else(|| {
            (OrderId(String::new()), OrderStatus::Rejected, "a slice was not placed".into())
        });
        let reason = format!(
            "{reason} (sliced order: {} of {} filled; the rest ended)",
            p.traded, p.intent.quantity
        );
        p.state = if p.traded.0 > 0 {
            State::Cancelled { reason: reason.clone() }
        } else {
            State::Rejected { reason: reason.clone() }
        };
        p.updated_at = now.at;
        Some(Report::Ended { intent: p.intent.clone(), order_id, status, reason })
    }

    /// The broker answered the placement (or resolution found it) with `order_id`.
    pub(crate) fn bind(
        &mut self,
        cid: &CorrelationId,
        order_id: &OrderId,
        now: Now,
    ) -> Option<Report> {
        let r = self.bind_one(cid, order_id, now)?;
        self.lift(vec![r], now).into_iter().next()
    }

    fn bind_one(&mut self, cid: &CorrelationId, order_id: &OrderId, now: Now) -> Option<Report> {
        let t = self.orders.get_mut(cid)?;
        if t.order_id.is_some() {
            return None;
        }
        t.order_id = Some(order_id.clone());
        t.last_seen_ms = now.ms;
        t.advance(State::Accepted, now);
        let report = Report::Bound { intent: t.intent.clone(), order_id: order_id.clone() };
        let instrument = t.intent.instrument;
        self.by_order.insert(order_id.clone(), cid.clone());
        self.touch(instrument);
        Some(report)
    }

    /// Nothing more will come of the order (rejected at placement, proved absent). For a child
    /// of a sliced order: the parent's end when it was the last child to end.
    pub(crate) fn finish(&mut self, cid: &CorrelationId, reason: &str, now: Now) -> Vec<Report> {
        self.finish_one(cid, reason, now);
        match self.orders.get(cid).and_then(|r| r.parent.clone()) {
            Some(parent) => self.parent_end(&parent, now).into_iter().collect(),
            None => Vec::new(),
        }
    }

    fn finish_one(&mut self, cid: &CorrelationId, reason: &str, now: Now) {
        if let Some(t) = self.orders.get_mut(cid) {
            let instrument = t.intent.instrument;
            let reason = reason.to_string();
            let end = if t.traded.0 > 0 {
                State::Cancelled { reason }
            } else {
                State::Rejected { reason }
            };
            t.advance(end, now);
            t.last_seen_ms = now.ms;
            self.touch(instrument);
        }
    }

    /// Applies a report; `now.at` stamps the fills. Reports about orders that are not ours (or
    /// not registered) are ignored.
    pub(crate) fn observe(&mut self, seen: &Seen, now: Now) -> Vec<Report> {
        let reports = self.observe_one(seen, now);
        self.lift(reports, now)
    }

    fn observe_one(&mut self, seen: &Seen, now: Now) -> Vec<Report> {
        let at = now.at;
        let cid = match self.by_order.get(&seen.order_id) {
            Some(c) => c.clone(),
            None => match seen
                .correlation_id
                .as_deref()
                .and_then(|c| CorrelationId::new(c).ok())
                .filter(|c| self.orders.get(c).is_some_and(|r| r.tracked))
            {
                Some(c) => c,
                None => {
                    self.ignored += 1;
                    return Vec::new();
                }
            },
        };
        let mut out = Vec::new();
        if let Some(r) = self.bind_one(&cid, &seen.order_id, now) {
            out.push(r);
        }
        let t = self.orders.get_mut(&cid).expect("matched above");
        if t.order_id.as_ref() != Some(&seen.order_id) {
            // Another order carrying our correlation id (a duplicate placement): never merge
            // its fills into ours. Reconciliation will see its position.
            log::error!(target: "broker", "order {} also carries correlation id {cid} (ours is {:?}); ignored", seen.order_id, t.order_id);
            return out;
        }
        t.last_seen_ms = now.ms;
        if t.state.is_final() {
            return out;
        }
        let exit = t.intent.purpose.is_exit();
        let grew = seen.traded > t.traded;
        if grew {
            let dq = Qty(seen.traded.0 - t.traded.0);
            let dv = growth_value(t, seen);
            let f = fill(&t.intent, &seen.order_id, seen.traded, dq, dv, at);
            t.fills.insert(f.trade_id.clone(), Execution { quantity: dq, price: f.price });
            if exit {
                out.push(Report::Fill {
                    intent: t.intent.clone(),
                    fill: f,
                    cumulative: seen.traded,
                });
            }
            t.traded = seen.traded;
            t.value += dv;
            t.avg = seen.avg_price;
            t.advance(State::PartFilled, now);
        }
        let complete = seen.status.is_terminal() || t.traded >= t.intent.quantity;
        if complete {
            let end = if t.traded >= t.intent.quantity {
                State::Filled
            } else {
                let reason = if seen.reason.is_empty() {
                    seen.status.to_string()
                } else {
                    format!("{}: {}", seen.status, seen.reason)
                };
                if t.traded.0 > 0 {
                    State::Cancelled { reason }
                } else {
                    State::Rejected { reason }
                }
            };
            t.advance(end, now);
            if !exit && t.traded.0 > 0 {
                out.push(Report::Fill {
                    intent: t.intent.clone(),
                    fill: fill(&t.intent, &seen.order_id, t.traded, t.traded, t.value, at),
                    cumulative: t.traded,
                });
            } else if t.traded < t.intent.quantity {
                out.push(Report::Ended {
                    intent: t.intent.clone(),
                    order_id: seen.order_id.clone(),
                    status: seen.status.clone(),
                    reason: seen.reason.clone(),
                });
            }
        }
        if grew || complete {
            let instrument = t.intent.instrument;
            self.touch(instrument);
        }
        out
    }

    /// The broker's id of the order `seen` is about when reading its trades (`GET
    /// /trades/{order-id}`, then [`super::Event::Trades`]) would value what it reports
    /// exactly and the trades read so far do not: the report moves an order of ours that has
    /// not ended and either ends it or carries no price of its latest trade (an order-book
    /// poll, or updates were missed).
    pub fn wants_trades(&self, seen: &Seen) -> Option<OrderId> {
        let t = self.orders.get(&self.matched(seen)?)?;
        if t.state.is_final()
            || seen.traded <= t.traded
            || t.order_id.as_ref().is_some_and(|o| o != &seen.order_id)
            || traded_value(t).is_some_and(|(q, _)| q == seen.traded)
        {
            return None;
        }
        let ends = seen.status.is_terminal() || seen.traded >= t.intent.quantity;
        (ends || seen.last_fill_price.is_none()).then(|| seen.order_id.clone())
    }

    /// Keeps the trades of the order `seen` is about (the trade book's, any number of times: a
    /// trade is kept once, by its id) to value its reports exactly ([`super::Event::Trades`]).
    /// `Err` (nothing kept) when the order is not ours, or another order carries our id, or it
    /// ended.
    pub(crate) fn record_trades(
        &mut self,
        seen: &Seen,
        trades: &[Trade],
        now: Now,
    ) -> Result<(), super::Refusal> {
        let Some(t) = self.matched(seen).and_then(|c| self.orders.get_mut(&c)) else {
            return Err(super::Refusal::UnknownOrder);
        };
        if t.state.is_final() || t.order_id.as_ref().is_some_and(|o| o != &seen.order_id) {
            return Err(super::Refusal::Stale);
        }
        for tr in trades.iter().filter(|tr| tr.order_id == seen.order_id) {
            if tr.traded_quantity.0 > 0 && !tr.exchange_trade_id.is_empty() {
                t.trades
                    .insert(tr.exchange_trade_id.clone(), (tr.traded_price, tr.traded_quantity));
            }
        }
        t.last_seen_ms = now.ms;
        Ok(())
    }

    /// Our correlation id of the order `seen` is about (as [`OrderBook::observe`] matches it):
    /// by order id, else by its correlation id when the live broker tracks that order.
    fn matched(&self, seen: &Seen) -> Option<CorrelationId> {
        if let Some(c) = self.by_order.get(&seen.order_id) {
            return Some(c.clone());
        }
        let c = CorrelationId::new(seen.correlation_id.as_deref()?).ok()?;
        self.orders.get(&c).is_some_and(|r| r.tracked).then_some(c)
    }

    /// Whether the live broker tracks `cid` (registered for placement or found at startup).
    pub fn is_tracked(&self, cid: &CorrelationId) -> bool {
        self.orders.get(cid).is_some_and(|r| r.tracked)
    }

    /// The broker's id of a registered order, once known.
    pub fn order_id(&self, cid: &CorrelationId) -> Option<OrderId> {
        self.orders.get(cid).and_then(|t| t.order_id.clone())
    }

    pub fn is_done(&self, cid: &CorrelationId) -> bool {
        self.orders.get(cid).is_some_and(|t| t.state.is_final())
    }

    /// Orders the broker holds that have not ended and had no report for `quiet_ms`.
    pub fn quiet_working(&self, quiet_ms: u64, now_ms: u64) -> Vec<(CorrelationId, OrderId)> {
        let mut v: Vec<_> = self
            .orders
            .iter()
            .filter(|(_, t)| t.tracked && t.sliced.is_none())
            .filter(|(_, t)| {
                !t.state.is_final() && now_ms.saturating_sub(t.last_seen_ms) >= quiet_ms
            })
            .filter_map(|(c, t)| t.order_id.clone().map(|o| (c.clone(), o)))
            .collect();
        v.sort();
        v
    }

    /// The current activity marker.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Instruments with an order of ours not yet ended, or with order activity after `marker`.
    pub fn busy_since(&self, marker: u64) -> BTreeSet<InstrumentKey> {
        let mut busy: BTreeSet<InstrumentKey> = self
            .orders
            .values()
            .filter(|t| t.tracked && !t.state.is_final())
            .map(|t| t.intent.instrument)
            .collect();
        busy.extend(self.activity.iter().filter(|(_, s)| **s > marker).map(|(k, _)| *k));
        busy
    }

    /// Reports about orders that were not ours, so far.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Forgets orders that ended more than `keep_ms` ago (late duplicates of their reports are
    /// then ignored as unknown, which is what they are worth). A sliced order goes with its
    /// last child.
    pub(crate) fn prune(&mut self, keep_ms: u64, now_ms: u64) -> usize {
        let before = self.orders.len();
        let gone: Vec<CorrelationId> = self
            .orders
            .iter()
            .filter(|(_, t)| t.sliced.is_none())
            .filter(|(_, t)| t.state.is_final() && now_ms.saturating_sub(t.last_seen_ms) > keep_ms)
            .map(|(c, _)| c.clone())
            .collect();
        for c in &gone {
            if let Some(t) = self.orders.remove(c)
                && let Some(o) = t.order_id
                && self.by_order.get(&o) == Some(c)
            {
                self.by_order.remove(&o);
            }
        }
        let parents: Vec<CorrelationId> = self
            .orders
            .iter()
            .filter(|(_, p)| p.sliced.is_some() && p.state.is_final())
            .filter(|(_, p)| !p.children().iter().any(|c| self.orders.contains_key(c)))
            .filter(|(_, p)| now_ms.saturating_sub(p.last_seen_ms) > keep_ms)
            .map(|(c, _)| c.clone())
            .collect();
        for c in &parents {
            self.orders.remove(c);
        }
        before - self.orders.len()
    }
}

/// Quantity and exact value of the order's trades read from the trade book, if any.
fn traded_value(t: &Record) -> Option<(Qty, Paise)> {
    if t.trades.is_empty() {
        return None;
    }
    sum_trades(t.trades.values().copied())
}

/// The exact value of what `seen` reports beyond what was applied (`seen.traded − t.traded`
/// units), best source first:
/// 1. the order's trades, when those read add up to exactly `seen.traded`: their value less
///    what was reported before;
/// 2. the latest trade's price (`TradedPrice`) times the growth, when the result agrees with
///    the broker's average (one trade since the last report: exact; updates missed in between
///    would not agree, or not always, so an order's end reads its trades);
/// 3. the broker's average times the traded quantity, less what was reported before (off by
///    up to half a paisa per unit: only when neither is at hand).
fn growth_value(t: &Record, seen: &Seen) -> Paise {
    let dq = Qty(seen.traded.0 - t.traded.0);
    if let Some((q, v)) = traded_value(t)
        && q == seen.traded
        && v > t.value
    {
        return v - t.value;
    }
    if let Some(p) = seen.last_fill_price
        && let Some(dv) = trade_value(p, dq)
        && average_price(t.value + dv, seen.traded) == Some(seen.avg_price)
    {
        return dv;
    }
    match trade_value(seen.avg_price, seen.traded) {
        Some(v) if v > t.value => v - t.value,
        _ => seen.avg_price * dq,
    }
}

/// A fill of `quantity` worth `value`, at their average rounded to the paisa.
fn fill(
    intent: &OrderIntent,
    order_id: &OrderId,
    cumulative: Qty,
    quantity: Qty,
    value: Paise,
    at: Timestamp,
) -> Fill {
    let price = average_price(value, quantity).unwrap_or(Paise::ZERO);
    Fill {
        correlation_id: intent.correlation_id.clone(),
        order_id: order_id.clone(),
        // Deterministic and unique per execution: the order and its cumulative quantity.
        trade_id: format!("{}-{}", order_id.0, cumulative.0),
        instrument: intent.instrument,
        txn: intent.txn,
        quantity,
        price,
        value,
        at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ExitReason, OrderPurpose, PositionId, Segment, Txn};

    const K: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);
    const AT: Timestamp = Timestamp(1_000);

    fn n(ms: u64) -> Now {
        Now { at: AT, ms }
    }

    fn intent(cid: &str, purpose: OrderPurpose) -> OrderIntent {
        OrderIntent {
            correlation_id: CorrelationId::new(cid).unwrap(),
            position_id: PositionId::new("p1"),
            instrument: K,
            txn: Txn::Sell,
            quantity: Qty(75),
            purpose,
            reference_price: Paise(10_000),
            price_is_stale: false,
            created_at: AT,
            limit_price: None,
        }
    }

    fn exit(cid: &str) -> OrderIntent {
        intent(cid, OrderPurpose::Exit(ExitReason::StopLoss))
    }

    fn seen(order: &str, cid: Option<&str>, status: OrderStatus, traded: i64, avg: i64) -> Seen {
        Seen {
            order_id: OrderId(order.into()),
            correlation_id: cid.map(String::from),
            status,
            traded: Qty(traded),
            avg_price: Paise(avg),
            last_fill_price: None,
            reason: String::new(),
        }
    }

    fn fills(r: &[Report]) -> Vec<(i64, i64)> {
        r.iter()
            .filter_map(|r| match r {
                Report::Fill { fill, .. } => Some((fill.quantity.0, fill.price.0)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_report_before_the_http_answer_is_matched_by_correlation_id_and_binds_once() {
        let mut t = OrderBook::new();
        t.expect(&exit("X1-p1"), n(0));
        let r = t.observe(&seen("9", Some("X1-p1"), OrderStatus::Transit, 0, 0), n(1));
        assert!(matches!(&r[..], [Report::Bound { order_id, .. }] if order_id.0 == "9"));
        assert_eq!(t.bind(&exit("X1-p1").correlation_id, &OrderId("9".into()), n(2)), None);
        // Later reports match by order id even without a correlation id.
        let r = t.observe(&seen("9", None, OrderStatus::Traded, 75, 9_000), n(3));
        assert_eq!(fills(&r), [(75, 9_000)]);
        assert!(t.is_done(&exit("X1-p1").correlation_id));
    }

    #[test]
    fn exit_part_fills_are_reported_once_each_whatever_the_duplicates() {
        let mut t = OrderBook::new();
        t.expect(&exit("X1-p1"), n(0));
        t.bind(&exit("X1-p1").correlation_id, &OrderId("9".into()), n(0));
        let part = seen("9", Some("X1-p1"), OrderStatus::PartTraded, 25, 9_000);
        assert_eq!(fills(&t.observe(&part, n(1))), [(25, 9_000)]);
        assert_eq!(fills(&t.observe(&part, n(2))), [], "a duplicate adds nothing");
        let stale = seen("9", None, OrderStatus::Pending, 0, 0);
        assert_eq!(t.observe(&stale, n(3)), [], "a stale poll says less: nothing");
        // 25 at 90.00 then 50 at 89.95: the average of 75 is 89.9666… → 89.97 on the wire.
        let done = seen("9", None, OrderStatus::Traded, 75, 8_997);
        let r = t.observe(&done, n(4));
        // (8997 × 75 − 9000 × 25) / 50 = 8995.5 → 8996 (half away from zero)
        assert_eq!(fills(&r), [(50, 8_996)]);
        assert_eq!(t.observe(&done, n(5)), [], "after the end, nothing");
        assert_eq!(t.open_orders(), 0);
    }

    fn trade(order: &str, id: &str, qty: i64, price: i64) -> Trade {
        serde_json::from_value(serde_json::json!({
            "orderId": order, "exchangeTradeId": id, "tradedQuantity": qty,
            "tradedPrice": price as f64 / 100.0,
        }))
        .unwrap()
    }

    fn values(r: &[Report]) -> Vec<(i64, i64, i64)> {
        r.iter()
            .filter_map(|r| match r {
                Report::Fill { fill, .. } => Some((fill.quantity.0, fill.price.0, fill.value.0)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn socket_updates_value_each_part_at_its_own_trade_price() {
        let mut t = OrderBook::new();
        t.expect(&exit("X1-p1"), n(0));
        let mut u = seen("9", Some("X1-p1"), OrderStatus::PartTraded, 50, 8_800);
        u.last_fill_price = Some(Paise(8_800));
        assert_eq!(values(&t.observe(&u, n(1))), [(50, 8_800, 440_000)]);
        // 25 more at 88.01: the average 88.00333… is 88.00 on the wire; the averages would make
        // this part 88.00, its trade price says 88.01.
        let mut u = seen("9", None, OrderStatus::PartTraded, 75, 8_800);
        u.last_fill_price = Some(Paise(8_801));
        assert_eq!(values(&t.observe(&u, n(2))), [(25, 8_801, 220_025)]);
    }

    #[test]
    fn an_order_that_ends_is_valued_at_its_trades_read_once_each() {
        let mut t = OrderBook::new();
        let e = intent("N1-p1", OrderPurpose::Entry);
        t.expect(&e, n(0));
        // A poll finds the entry done: 25 at 100.00 and 50 at 100.01, 100.01 on average.
        let done = seen("5", Some("N1-p1"), OrderStatus::Traded, 75, 10_001);
        assert_eq!(t.wants_trades(&done), Some(OrderId("5".into())));
        let trades = [trade("5", "T1", 25, 10_000), trade("5", "T2", 50, 10_001)];
        t.record_trades(&done, &trades, n(1)).unwrap();
        // Read again (another report, another read): each trade counts once; another order's
        // trades are not this order's.
        t.record_trades(&done, &[trade("5", "T2", 50, 10_001), trade("6", "T3", 75, 1)], n(1))
            .unwrap();
        assert_eq!(t.wants_trades(&done), None, "the trades read cover the report");
        assert_eq!(values(&t.observe(&done, n(1))), [(75, 10_001, 750_050)]);
        assert_eq!(t.wants_trades(&done), None, "ended");
    }

    #[test]
    fn the_end_of_an_exit_corrects_what_the_averages_made_of_its_earlier_parts() {
        let mut t = OrderBook::new();
        t.expect(&exit("X1-p1"), n(0));
        // A poll (no trade price) sees 50 of 75 at an average of 88.005 → 88.01 on the wire;
        // it wants the trades, which cannot be read: valued from the average.
        let part = seen("9", Some("X1-p1"), OrderStatus::PartTraded, 50, 8_801);
        assert!(t.wants_trades(&part).is_some());
        assert_eq!(values(&t.observe(&part, n(1))), [(50, 8_801, 440_050)]);
        // At the end the trades are read: 25 at 88.00, 25 at 88.01, 25 at 88.01.
        let done = seen("9", None, OrderStatus::Traded, 75, 8_801);
        assert!(t.wants_trades(&done).is_some());
        let trades =
            [trade("9", "A", 25, 8_800), trade("9", "B", 25, 8_801), trade("9", "C", 25, 8_801)];
        t.record_trades(&done, &trades, n(1)).unwrap();
        // The last part makes the order's total the trade book's 660,050.
        assert_eq!(values(&t.observe(&done, n(2))), [(25, 8_800, 220_000)]);
    }

    #[test]
    fn a_socket_update_after_missed_ones_is_valued_from_the_average_not_its_trade_price() {
        let mut t = OrderBook::new();
        t.expect(&exit("X1-p1"), n(0));
        // 25 at 88.00 was missed; this says 50 traded at an average of 88.01 (88.005), the
        // latest at 88.02: 50 × 88.02 does not agree with the average.
        let mut u = seen("9", Some("X1-p1"), OrderStatus::PartTraded, 50, 8_801);
        u.last_fill_price = Some(Paise(8_802));
        assert_eq!(values(&t.observe(&u, n(1))), [(50, 8_801, 440_050)]);
    }

    #[test]
    fn an_entry_is_reported_once_complete_as_its_total_at_its_average() {
        let mut t = OrderBook::new();
        let e = intent("N1-p1", OrderPurpose::Entry);
        t.expect(&e, n(0));
        let r = t.observe(&seen("5", Some("N1-p1"), OrderStatus::PartTraded, 25, 10_000), n(1));
        assert_eq!(fills(&r), [], "an entry waits for its completion");
        let r = t.observe(&seen("5", None, OrderStatus::Traded, 75, 10_010), n(2));
        assert_eq!(fills(&r), [(75, 10_010)]);
    }

    #[test]
    fn an_order_ending_without_executions_is_reported_ended_and_a_part_filled_entry_as_its_part() {
        let mut t = OrderBook::new();
        t.expect(&exit("X1-p1"), n(0));
        let mut rej = seen("9", Some("X1-p1"), OrderStatus::Rejected, 0, 0);
        rej.reason = "RMS: margin".into();
        let r = t.observe(&rej, n(1));
        assert!(
            matches!(r.last(), Some(Report::Ended { reason, status: OrderStatus::Rejected, .. }) if reason == "RMS: margin")
        );
        let e = intent("N1-p2", OrderPurpose::Entry);
        t.expect(&e, n(0));
        let r = t.observe(&seen("6", Some("N1-p2"), OrderStatus::Cancelled, 30, 10_000), n(1));
        assert_eq!(fills(&r), [(30, 10_000)]);
        assert!(!r.iter().any(|r| matches!(r, Report::Ended { .. })));
    }

    #[test]
    fn a_recovered_exit_reports_only_what_traded_beyond_what_was_applied() {
        let mut t = OrderBook::new();
        t.expect_filled(&exit("X1-p1"), Qty(25), Paise(9_000 * 25), n(0));
        let r = t.observe(&seen("9", Some("X1-p1"), OrderStatus::Traded, 75, 8_980), n(1));
        // (8980 × 75 − 9000 × 25) / 50 = 8970
        assert_eq!(fills(&r), [(50, 8_970)]);
    }

    fn sliced(parent: &str, children: &[&str]) -> (OrderIntent, Vec<OrderIntent>) {
        let mut p = exit(parent);
        p.quantity = Qty(75 * children.len() as i64);
        (p, children.iter().map(|c| exit(c)).collect())
    }

    fn cids(r: &[Report]) -> Vec<&str> {
        r.iter()
            .map(|r| match r {
                Report::Bound { intent, .. }
                | Report::Fill { intent, .. }
                | Report::Ended { intent, .. } => intent.correlation_id.as_str(),
            })
            .collect()
    }

    #[test]
    fn a_sliced_exit_reports_as_its_parent_and_is_complete_when_every_child_filled() {
        let mut t = OrderBook::new();
        let (p, children) = sliced("X1-p1", &["X1s1-p1", "X1s2-p1", "X1s3-p1"]);
        assert!(t.expect_sliced(&p, &children, n(0)));
        assert!(!t.expect_sliced(&p, &children, n(0)), "a second registration is refused");
        let b = t.bind(&children[0].correlation_id, &OrderId("1".into()), n(1));
        assert!(
            matches!(b, Some(Report::Bound { ref intent, .. }) if intent.correlation_id.as_str() == "X1-p1")
        );
        assert_eq!(t.bind(&children[1].correlation_id, &OrderId("2".into()), n(1)), None);
        let r = t.observe(&seen("1", Some("X1s1-p1"), OrderStatus::Traded, 75, 9_000), n(2));
        assert_eq!((cids(&r), fills(&r)), (vec!["X1-p1"], vec![(75, 9_000)]));
        assert!(
            matches!(&r[0], Report::Fill { fill, cumulative, .. } if fill.correlation_id.as_str() == "X1-p1" && cumulative.0 == 75)
        );
        let r = t.observe(&seen("3", Some("X1s3-p1"), OrderStatus::Traded, 75, 8_990), n(3));
        assert!(
            matches!(&r[..], [Report::Fill { cumulative, .. }] if cumulative.0 == 150),
            "{r:?}"
        );
        let r = t.observe(&seen("2", Some("X1s2-p1"), OrderStatus::Traded, 75, 8_980), n(4));
        assert!(
            matches!(&r[..], [Report::Fill { cumulative, .. }] if cumulative.0 == 225),
            "{r:?}"
        );
        assert_eq!(t.open_orders(), 0);
        assert!(!r.iter().any(|r| matches!(r, Report::Ended { .. })));
    }

    #[test]
    fn a_sliced_exit_ends_once_after_its_last_child_when_a_child_failed() {
        let mut t = OrderBook::new();
        let (p, children) = sliced("X1-p1", &["X1s1-p1", "X1s2-p1", "X1s3-p1"]);
        t.expect_sliced(&p, &children, n(0));
        // Child 2 refused at placement: the others are still working, nothing is reported yet.
        assert_eq!(t.finish(&children[1].correlation_id, "refused", n(0)), []);
        let r = t.observe(&seen("1", Some("X1s1-p1"), OrderStatus::Traded, 75, 9_000), n(1));
        assert_eq!(fills(&r), [(75, 9_000)]);
        assert!(!r.iter().any(|r| matches!(r, Report::Ended { .. })));
        let mut rej = seen("3", Some("X1s3-p1"), OrderStatus::Rejected, 0, 0);
        rej.reason = "RMS: band".into();
        let r = t.observe(&rej, n(2));
        assert!(
            matches!(&r[..], [Report::Ended { intent, reason, .. }] if intent.correlation_id.as_str() == "X1-p1" && reason.contains("75 of 225")),
            "{r:?}"
        );
        assert_eq!(t.observe(&rej, n(3)), [], "ended once");
        // Every child refused at placement: the placement says so, the tracker nothing more.
        let (p, children) = sliced("X2-p1", &["X2s1-p1", "X2s2-p1"]);
        t.expect_sliced(&p, &children, n(0));
        t.abandon_sliced(&p.correlation_id, n(0));
        assert_eq!(t.finish(&children[0].correlation_id, "refused", n(0)), []);
        assert_eq!(t.open_orders(), 0);
    }

    #[test]
    fn a_child_fill_polled_before_the_startup_settlement_applied_it_counts_once() {
        let mut t = OrderBook::new();
        let (p, children) = sliced("X1-p1", &["X1s1-p1", "X1s2-p1", "X1s3-p1"]);
        t.expect_sliced(&p, &children, n(0));
        // The order tracker's first poll after a restart sees child 1 traded before the
        // startup settlement applies what the recovered state held of it (nothing).
        let r = t.observe(&seen("1", Some("X1s1-p1"), OrderStatus::Traded, 75, 9_000), n(1));
        assert_eq!(fills(&r), [(75, 9_000)]);
        t.applied(&children[0].correlation_id, Qty(0), Qty(0), Paise::ZERO);
        let r = t.observe(&seen("2", Some("X1s2-p1"), OrderStatus::Traded, 75, 9_000), n(2));
        assert!(
            matches!(&r[..], [Report::Fill { cumulative, .. }] if cumulative.0 == 150),
            "{r:?}"
        );
        let r = t.observe(&seen("3", Some("X1s3-p1"), OrderStatus::Traded, 75, 9_000), n(3));
        assert!(
            matches!(&r[..], [Report::Fill { cumulative, .. }] if cumulative.0 == 225),
            "{r:?}"
        );
        assert_eq!(t.get(&p.correlation_id).map(|r| r.state.name()), Some("filled"));
    }

    #[test]
    fn a_sliced_entry_is_reported_once_every_child_ended_as_its_total_at_its_average() {
        let mut t = OrderBook::new();
        let mut p = intent("N1-p1", OrderPurpose::Entry);
        p.quantity = Qty(150);
        let children: Vec<OrderIntent> =
            ["N1s1-p1", "N1s2-p1"].iter().map(|c| intent(c, OrderPurpose::Entry)).collect();
        t.expect_sliced(&p, &children, n(0));
        let r = t.observe(&seen("1", Some("N1s1-p1"), OrderStatus::Traded, 75, 10_000), n(1));
        assert!(matches!(&r[..], [Report::Bound { .. }]), "{r:?}");
        let r = t.observe(&seen("2", Some("N1s2-p1"), OrderStatus::Traded, 75, 10_011), n(2));
        assert_eq!(fills(&r), [(150, 10_006)], "(10000 + 10011) / 2 = 10005.5 → 10006");
        assert!(
            matches!(&r[..], [Report::Fill { intent, fill, .. }] if intent.correlation_id.as_str() == "N1-p1" && fill.correlation_id.as_str() == "N1-p1")
        );
    }

    #[test]
    fn reports_about_other_orders_are_ignored() {
        let mut t = OrderBook::new();
        assert_eq!(
            t.observe(&seen("1", Some("1000000001-17"), OrderStatus::Traded, 75, 1), n(0)),
            []
        );
        assert_eq!(t.observe(&seen("2", Some("X1-unknown"), OrderStatus::Traded, 75, 1), n(0)), []);
        assert_eq!(t.ignored(), 2);
    }

    #[test]
    fn a_second_order_with_our_correlation_id_never_adds_fills() {
        let mut t = OrderBook::new();
        t.expect(&exit("X1-p1"), n(0));
        t.bind(&exit("X1-p1").correlation_id, &OrderId("9".into()), n(0));
        let other = seen("10", Some("X1-p1"), OrderStatus::Traded, 75, 9_000);
        assert_eq!(t.observe(&other, n(1)), []);
        assert!(!t.is_done(&exit("X1-p1").correlation_id));
    }

    #[test]
    fn busy_instruments_are_those_with_open_orders_or_activity_after_the_marker() {
        let mut t = OrderBook::new();
        let marker = t.seq();
        assert!(t.busy_since(marker).is_empty());
        t.expect(&exit("X1-p1"), n(0));
        assert!(t.busy_since(marker).contains(&K));
        t.observe(&seen("9", Some("X1-p1"), OrderStatus::Traded, 75, 9_000), n(1));
        assert!(t.busy_since(marker).contains(&K), "done, but it moved after the marker");
        assert!(t.busy_since(t.seq()).is_empty());
    }

    #[test]
    fn quiet_working_orders_are_those_with_an_id_and_no_recent_report() {
        let mut t = OrderBook::new();
        t.expect(&exit("X1-p1"), n(0));
        assert_eq!(t.quiet_working(100, 1_000), [], "no order id yet: the desk resolves it");
        t.bind(&exit("X1-p1").correlation_id, &OrderId("9".into()), n(950));
        assert_eq!(t.quiet_working(100, 1_000), []);
        assert_eq!(t.quiet_working(100, 1_050).len(), 1);
        assert_eq!(t.prune(0, 2_000), 0, "open orders are never pruned");
    }
}
