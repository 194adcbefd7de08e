//! Reconciliation: comparing what Dhan holds (positions and open orders) with what the engine
//! holds, and deciding the adjustments. Pure: the live reconciler (`exec::live`) reads the
//! broker's books twice and the exit engine, which owns the positions, calls [`plan`] with its
//! own view and applies the result.
//!
//! Rules (the broker is the source of truth, but only when it is sure):
//!
//! - positions are compared per instrument as signed net quantities, for the configured product
//!   type only (a `MARGIN` position is not ours to exit with `INTRADAY` orders);
//! - an instrument is left alone while anything may be moving it: an order of ours not yet
//!   settled, order activity of ours since the first read began, an exit in flight, a pending
//!   entry, or any open order in the broker's book on it (ours or placed elsewhere);
//! - the two reads must agree: a difference seen once is only a finding;
//! - a broker position we do not know is adopted; a broker holding more than we do on the same
//!   side has the excess adopted. When entry orders of ours that executed today, on that
//!   instrument, whose positions the engine does not hold and that no exit of ours executed
//!   against, add up to exactly that excess, each is adopted at its own fills (the order's
//!   volume-weighted price and filled quantity); otherwise the excess is adopted at the
//!   broker's average price, marked as such ([`PriceSource::BrokerAverage`]: the position's
//!   `entry_price_source` is `broker_average` and a warning alert says so);
//! - a local position the broker reports flat is closed locally, at the broker's average exit
//!   price when it has one, else at the position's last price;
//! - a book with a line we cannot read (unknown segment, non-numeric id) changes nothing;
//! - anything else (the broker holds less than we do, or the other side) is reported for an
//!   operator and changes nothing;
//! - no adjustment ever places an order.

use std::collections::{BTreeMap, BTreeSet};

use crate::broker::model::{Order, OrderStatus, Position as WirePosition, ProductType};
use crate::domain::{
    CorrelationId, InstrumentKey, OrderId, OrderIntent, Paise, PositionId, Qty, Side,
};
use crate::risk::correlation::{self, OrderRole, ParsedCorrelation};

/// A broker position row, reduced to what reconciliation compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerPosition {
    pub instrument: InstrumentKey,
    /// Signed units: negative when short.
    pub net: i64,
    pub buy_avg: Paise,
    pub sell_avg: Paise,
    pub cost_price: Paise,
}

/// An order still open in the broker's book.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerOrder {
    pub order_id: OrderId,
    pub correlation_id: Option<String>,
    pub instrument: Option<InstrumentKey>,
    pub status: OrderStatus,
    /// Its correlation id is one the engine generates.
    pub ours: bool,
}

/// An order of ours (by its correlation id) that executed, as the broker's order book shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnExecution {
    pub correlation_id: String,
    pub parsed: ParsedCorrelation,
    pub instrument: InstrumentKey,
    /// The side this order's fills hold (buy: long).
    pub side: Side,
    pub filled: Qty,
    /// Volume-weighted price of its fills, rounded to the paisa.
    pub average: Paise,
    /// The broker's id of the order (to find its trades).
    pub order_id: OrderId,
    /// The exact value of its fills (Σ price × quantity): `average × filled` as the order book
    /// gives it, exact once valued at the trade book ([`BrokerBook::value_at_trades`]).
    pub value: Paise,
}

/// Where an adopted position's entry price comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PriceSource {
    /// The fills of an entry order of ours.
    OwnTrades,
    /// The broker's average for the contract: nothing of ours explains the position.
    BrokerAverage,
}

/// One read of the broker's books.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BrokerBook {
    pub positions: Vec<BrokerPosition>,
    pub open_orders: Vec<BrokerOrder>,
    /// Today's orders of ours that executed (any status).
    pub own_executions: Vec<OwnExecution>,
    /// Lines of our product type we could not read: the book is not well-formed enough to act
    /// on.
    pub unreadable: usize,
}

impl BrokerBook {
    /// From the answers of `GET /positions` and `GET /orders`: rows of `product` with an
    /// instrument we know; notes for what is left out.
    pub fn read(
        positions: &[WirePosition],
        orders: &[Order],
        product: ProductType,
    ) -> (BrokerBook, Vec<String>) {
        let mut book = BrokerBook::default();
        let mut notes = Vec::new();
        for p in positions {
            let net = p.net_qty.0;
            match p.product_type.known() {
                Some(pt) if pt != product => {
                    if net != 0 {
                        notes.push(format!(
                            "broker position {:?} (security {}, net {net}) of product {pt} is not managed (orders use {product})",
                            p.trading_symbol, p.security_id
                        ));
                    }
                    continue;
                }
                None => {
                    book.unreadable += 1;
                    continue;
                }
                Some(_) => {}
            }
            match p.instrument() {
                Some(instrument) => book.positions.push(BrokerPosition {
                    instrument,
                    net,
                    buy_avg: p.buy_avg,
                    sell_avg: p.sell_avg,
                    cost_price: p.cost_price,
                }),
                None => book.unreadable += 1,
            }
        }
        for o in orders {
            let parsed = o.correlation_id.as_deref().and_then(correlation::parse);
            if let (Some(parsed), Some(instrument), Some(txn)) =
                (parsed, o.instrument(), o.transaction_type.known())
                && o.filled_qty.0 > 0
                && o.average_traded_price.0 > 0
                && o.product_type.known() == Some(product)
            {
                book.own_executions.push(OwnExecution {
                    correlation_id: o.correlation_id.clone().unwrap_or_default(),
                    parsed,
                    instrument,
                    side: if txn == crate::domain::Txn::Buy { Side::Long } else { Side::Short },
                    filled: o.filled_qty,
                    average: o.average_traded_price,
                    order_id: o.order_id.clone(),
                    value: o.average_traded_price * o.filled_qty,
                });
            }
            if o.order_status.is_terminal() || matches!(o.order_status, OrderStatus::Other(_)) {
                continue;
            }
            let ours = o.correlation_id.as_deref().and_then(correlation::parse).is_some();
            book.open_orders.push(BrokerOrder {
                order_id: o.order_id.clone(),
                correlation_id: o.correlation_id.clone(),
                instrument: o.instrument(),
                status: o.order_status.clone(),
                ours,
            });
        }
        (book, notes)
    }

    /// Values our executions at `values` (by correlation id: the filled quantity and the exact
    /// value of the order's trades), where the quantity is the one the order book shows; the
    /// average becomes the value's, rounded to the paisa.
    pub fn value_at_trades(&mut self, values: &BTreeMap<String, (Qty, Paise)>) {
        for e in &mut self.own_executions {
            if let Some(&(q, v)) = values.get(&e.correlation_id)
                && q == e.filled
                && let Some(avg) = crate::domain::money::average_price(v, q)
            {
                e.value = v;
                e.average = avg;
            }
        }
    }

    fn net(&self, k: InstrumentKey) -> i64 {
        self.positions.iter().filter(|p| p.instrument == k).map(|p| p.net).sum()
    }

    fn row(&self, k: InstrumentKey) -> Option<&BrokerPosition> {
        self.positions.iter().find(|p| p.instrument == k)
    }
}

/// One of the engine's open positions, as reconciliation sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalPosition {
    pub id: PositionId,
    pub instrument: InstrumentKey,
    pub side: Side,
    pub open: Qty,
    /// An exit order is in flight.
    pub exiting: bool,
    pub last_price: Paise,
}

/// The engine's side.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalView {
    pub positions: Vec<LocalPosition>,
    /// Instruments with an entry order not yet answered.
    pub pending_entries: BTreeSet<InstrumentKey>,
    /// The orders the engine considers in flight (exits of `Exiting` positions, pending
    /// entries): startup settles each by correlation id.
    pub orders_in_flight: Vec<InFlight>,
}

/// An order in flight as placed, and what of it the engine has already applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlight {
    pub intent: OrderIntent,
    /// Executions of it applied so far (an exit's part fills).
    pub filled: Qty,
    /// Σ price × quantity of those executions.
    pub turnover: Paise,
}

/// What the live reconciler hands the exit engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BrokerCheck {
    pub first: BrokerBook,
    /// A second, independent read taken after the first.
    pub recheck: BrokerBook,
    /// Instruments with our order activity since the first read began.
    pub busy: BTreeSet<InstrumentKey>,
    /// Orders in flight that resolution proved absent (startup).
    pub settled: Vec<Adjustment>,
    /// Findings made while reading.
    pub notes: Vec<String>,
}

/// A change to the engine's positions. None of them places an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adjustment {
    /// Take a broker position under management.
    Adopt {
        instrument: InstrumentKey,
        side: Side,
        quantity: Qty,
        price: Paise,
        /// The exact value of the fills it is priced at (Σ price × quantity); `price ×
        /// quantity` at the broker's average.
        value: Paise,
        source: PriceSource,
        /// The position id of the entry order whose fills these are (`OwnTrades` with an id
        /// that fits the correlation id), kept so the position is the entry's own.
        position: Option<PositionId>,
        why: String,
    },
    /// The broker no longer holds this position: close it locally at `price`.
    CloseLocal { position: PositionId, instrument: InstrumentKey, price: Paise, why: String },
    /// An exit order in flight never reached Dhan: start its next attempt (a new id).
    ExitAbsent { correlation_id: CorrelationId, why: String },
    /// An entry order never reached Dhan: it is rejected.
    EntryAbsent { correlation_id: CorrelationId, why: String },
    /// An exit order a previous run journaled for a position whose entry was still in flight
    /// at the restart (startup): once the entry's fills opened the position, it exits under
    /// that order, settled with Dhan by correlation id, never sent again. Applied before the
    /// books are compared.
    ExitJournaled { intent: Box<crate::domain::OrderIntent>, why: String },
}

impl Adjustment {
    /// For logs, metrics and the audit record.
    pub const fn kind(&self) -> &'static str {
        match self {
            Adjustment::Adopt { .. } => "adopt",
            Adjustment::CloseLocal { .. } => "close_local",
            Adjustment::ExitAbsent { .. } => "exit_absent",
            Adjustment::EntryAbsent { .. } => "entry_absent",
            Adjustment::ExitJournaled { .. } => "exit_journaled",
        }
    }
}

/// What to do, and what to tell an operator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub adjustments: Vec<Adjustment>,
    pub notes: Vec<String>,
}

/// Compares the broker's two reads with the engine's view. See the module doc for the rules.
pub fn plan(check: &BrokerCheck, local: &LocalView) -> Plan {
    let mut out = Plan { adjustments: check.settled.clone(), notes: check.notes.clone() };
    if check.first.unreadable > 0 || check.recheck.unreadable > 0 {
        out.notes.push(format!(
            "the broker's positions have {} unreadable lines: nothing adjusted this round",
            check.first.unreadable.max(check.recheck.unreadable)
        ));
        return out;
    }
    let mut busy = check.busy.clone();
    busy.extend(local.pending_entries.iter().copied());
    busy.extend(local.positions.iter().filter(|p| p.exiting).map(|p| p.instrument));
    for book in [&check.first, &check.recheck] {
        busy.extend(book.open_orders.iter().filter_map(|o| o.instrument));
    }
    let mut local_net: BTreeMap<InstrumentKey, i64> = BTreeMap::new();
    for p in &local.positions {
        *local_net.entry(p.instrument).or_default() += p.side.sign() * p.open.0;
    }
    let mut instruments: BTreeSet<InstrumentKey> = local_net.keys().copied().collect();
    for book in [&check.first, &check.recheck] {
        instruments.extend(book.positions.iter().map(|p| p.instrument));
    }
    for k in instruments {
        let (b1, b2) = (check.first.net(k), check.recheck.net(k));
        let ours = local_net.get(&k).copied().unwrap_or(0);
        if b1 != b2 {
            out.notes.push(format!(
                "{k}: the broker's position changed between two reads ({b1} then {b2}); looked at again next round"
            ));
            continue;
        }
        if b2 == ours {
            continue;
        }
        if busy.contains(&k) {
            out.notes.push(format!(
                "{k}: broker holds {b2}, the engine {ours}, with orders in flight: looked at again once they settle"
            ));
            continue;
        }
        let row = check.recheck.row(k);
        if ours == 0 || (ours.signum() == b2.signum() && b2.abs() > ours.abs()) {
            let side = if b2 > 0 { Side::Long } else { Side::Short };
            let quantity = Qty((b2 - ours).abs());
            let held = if ours == 0 {
                format!("the broker holds {b2} of {k} that the engine did not know")
            } else {
                format!("the broker holds {b2} of {k}, the engine {ours}: the excess is adopted")
            };
            let own = unexplained_entries(&check.recheck, k, local);
            let explained: i64 = own.iter().map(|e| e.side.sign() * e.filled.0).sum();
            if !own.is_empty() && explained == b2 - ours {
                for e in own {
                    out.adjustments.push(Adjustment::Adopt {
                        instrument: k,
                        side: e.side,
                        quantity: e.filled,
                        price: e.average,
                        value: e.value,
                        source: PriceSource::OwnTrades,
                        position: match &e.parsed.position {
                            correlation::PositionRef::Id(id) => Some(id.clone()),
                            correlation::PositionRef::Hash(_) => None,
                        },
                        why: format!(
                            "{held}; our entry order {} explains {} of it: priced at its own fills",
                            e.correlation_id, e.filled
                        ),
                    });
                }
                continue;
            }
            let price = row.map_or(Paise::ZERO, |r| entry_average(r, side));
            let why = format!(
                "{held}; no order of ours explains it: priced at the broker's average (entry_price_source = broker_average)"
            );
            out.adjustments.push(Adjustment::Adopt {
                instrument: k,
                side,
                quantity,
                price,
                value: price * quantity,
                source: PriceSource::BrokerAverage,
                position: None,
                why,
            });
        } else if b2 == 0 {
            for p in local.positions.iter().filter(|p| p.instrument == k) {
                let exit = row.map(|r| exit_average(r, p.side)).filter(|x| x.0 > 0);
                out.adjustments.push(Adjustment::CloseLocal {
                    position: p.id.clone(),
                    instrument: k,
                    price: exit.unwrap_or(p.last_price),
                    why: format!(
                        "the broker reports {k} flat (two reads agree) while the engine held {} {}: closed outside the engine",
                        p.side, p.open
                    ),
                });
            }
        } else {
            out.notes.push(format!(
                "{k}: the broker holds {b2}, the engine {ours}: not adjusted automatically, an operator must look"
            ));
        }
    }
    out
}

/// The instruments on which the broker's books confirm the engine's positions: both reads are
/// well-formed and agree, and the broker's net quantity equals the engine's. Held exit orders
/// (`exec::core::held_exits`) of positions on these instruments may go out; `local` is taken
/// after the round's adjustments were applied.
pub fn confirmed(check: &BrokerCheck, local: &LocalView) -> BTreeSet<InstrumentKey> {
    if check.first.unreadable > 0 || check.recheck.unreadable > 0 {
        return BTreeSet::new();
    }
    let mut local_net: BTreeMap<InstrumentKey, i64> = BTreeMap::new();
    for p in &local.positions {
        *local_net.entry(p.instrument).or_default() += p.side.sign() * p.open.0;
    }
    local_net
        .into_iter()
        .filter(|&(k, ours)| check.first.net(k) == ours && check.recheck.net(k) == ours)
        .map(|(k, _)| k)
        .collect()
}

/// Entry orders of ours on `k` that executed, whose position the engine does not hold and
/// against which no exit order of ours executed.
fn unexplained_entries<'a>(
    book: &'a BrokerBook,
    k: InstrumentKey,
    local: &LocalView,
) -> Vec<&'a OwnExecution> {
    let own = &book.own_executions;
    own.iter()
        .filter(|e| e.instrument == k && e.parsed.role == OrderRole::Entry)
        .filter(|e| !local.positions.iter().any(|p| e.parsed.refers_to(&p.id)))
        .filter(|e| {
            !own.iter()
                .any(|x| x.parsed.role == OrderRole::Exit && x.parsed.position == e.parsed.position)
        })
        .collect()
}

/// The average price of the side a position was opened on.
fn entry_average(row: &BrokerPosition, side: Side) -> Paise {
    if row.cost_price.0 > 0 {
        return row.cost_price;
    }
    match side {
        Side::Long => row.buy_avg,
        Side::Short => row.sell_avg,
    }
}

/// The average price of the side that closes `side`.
fn exit_average(row: &BrokerPosition, side: Side) -> Paise {
    match side {
        Side::Long => row.sell_avg,
        Side::Short => row.buy_avg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Segment;

    const A: InstrumentKey = InstrumentKey::new(Segment::NseFno, 1);
    const B: InstrumentKey = InstrumentKey::new(Segment::NseFno, 2);

    fn row(k: InstrumentKey, net: i64, buy: i64, sell: i64) -> BrokerPosition {
        let cost = if net > 0 {
            buy
        } else if net < 0 {
            sell
        } else {
            0
        };
        BrokerPosition {
            instrument: k,
            net,
            buy_avg: Paise(buy),
            sell_avg: Paise(sell),
            cost_price: Paise(cost),
        }
    }

    fn book(rows: Vec<BrokerPosition>) -> BrokerBook {
        BrokerBook { positions: rows, ..BrokerBook::default() }
    }

    fn twice(rows: Vec<BrokerPosition>) -> BrokerCheck {
        BrokerCheck { first: book(rows.clone()), recheck: book(rows), ..BrokerCheck::default() }
    }

    fn local(id: &str, k: InstrumentKey, side: Side, open: i64) -> LocalPosition {
        LocalPosition {
            id: PositionId::new(id),
            instrument: k,
            side,
            open: Qty(open),
            exiting: false,
            last_price: Paise(10_000),
        }
    }

    fn view(positions: Vec<LocalPosition>) -> LocalView {
        LocalView { positions, ..LocalView::default() }
    }

    fn exec(cid: &str, k: InstrumentKey, side: Side, filled: i64, avg: i64) -> OwnExecution {
        OwnExecution {
            correlation_id: cid.into(),
            parsed: correlation::parse(cid).unwrap(),
            instrument: k,
            side,
            filled: Qty(filled),
            average: Paise(avg),
            order_id: OrderId(format!("O-{cid}")),
            value: Paise(avg * filled),
        }
    }

    fn with_executions(rows: Vec<BrokerPosition>, own: Vec<OwnExecution>) -> BrokerCheck {
        let b = BrokerBook { positions: rows, own_executions: own, ..BrokerBook::default() };
        BrokerCheck { first: b.clone(), recheck: b, ..BrokerCheck::default() }
    }

    fn adoptions(p: &Plan) -> Vec<(Side, Qty, Paise, PriceSource, Option<&str>)> {
        p.adjustments
            .iter()
            .filter_map(|a| match a {
                Adjustment::Adopt { side, quantity, price, source, position, .. } => {
                    Some((*side, *quantity, *price, *source, position.as_ref().map(|p| p.as_str())))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_entry_valued_at_its_trades_is_adopted_at_their_exact_value() {
        // The order book says 75 at 100.01; its trades, 25 at 100.00 and 50 at 100.01.
        let own = vec![exec("N1-p2", A, Side::Long, 75, 10_001)];
        let mut check = with_executions(vec![row(A, 75, 10_001, 0)], own);
        let values = BTreeMap::from([
            ("N1-p2".to_string(), (Qty(75), Paise(750_050))),
            ("N1-p9".to_string(), (Qty(75), Paise(1))),
        ]);
        check.recheck.value_at_trades(&values);
        let p = plan(&check, &view(vec![]));
        assert!(
            matches!(&p.adjustments[..], [Adjustment::Adopt { price, value, source: PriceSource::OwnTrades, .. }]
                if *price == Paise(10_001) && *value == Paise(750_050)),
            "{p:?}"
        );
        // A value for another quantity than the order book's is not this order's (yet).
        let mut check = with_executions(
            vec![row(A, 75, 10_001, 0)],
            vec![exec("N1-p2", A, Side::Long, 75, 10_001)],
        );
        check
            .recheck
            .value_at_trades(&BTreeMap::from([("N1-p2".to_string(), (Qty(50), Paise(500_000)))]));
        assert_eq!(check.recheck.own_executions[0].value, Paise(750_075));
    }

    #[test]
    fn a_position_our_own_entries_explain_is_adopted_at_their_fills_not_the_day_average() {
        use PriceSource::{BrokerAverage, OwnTrades};
        // Day average 95.00: an earlier trade (entered at 100.00, exited) and today's lost
        // entry at 90.00.
        let own = vec![
            exec("N1-p1", A, Side::Long, 75, 10_000),
            exec("X1-p1", A, Side::Short, 75, 12_100),
            exec("N1-p2", A, Side::Long, 75, 9_000),
        ];
        let p = plan(&with_executions(vec![row(A, 75, 9_500, 12_100)], own.clone()), &view(vec![]));
        assert_eq!(adoptions(&p), [(Side::Long, Qty(75), Paise(9_000), OwnTrades, Some("p2"))]);

        // Two lost entries, part of the broker's position each.
        let mut two = own.clone();
        two.push(exec("N1-p3", A, Side::Long, 25, 9_100));
        let p = plan(&with_executions(vec![row(A, 100, 9_500, 12_100)], two), &view(vec![]));
        assert_eq!(
            adoptions(&p),
            [
                (Side::Long, Qty(75), Paise(9_000), OwnTrades, Some("p2")),
                (Side::Long, Qty(25), Paise(9_100), OwnTrades, Some("p3")),
            ]
        );

        // Our entries do not add up to what the broker holds: the broker's average, marked.
        let p =
            plan(&with_executions(vec![row(A, 150, 9_500, 12_100)], own.clone()), &view(vec![]));
        assert_eq!(adoptions(&p), [(Side::Long, Qty(150), Paise(9_500), BrokerAverage, None)]);
        let why = format!("{:?}", p.adjustments[0]);
        assert!(why.contains("broker_average"), "{why}");

        // An entry whose position the engine holds explains nothing more.
        let p = plan(
            &with_executions(vec![row(A, 150, 9_500, 12_100)], own.clone()),
            &view(vec![local("p2", A, Side::Long, 75)]),
        );
        assert_eq!(adoptions(&p), [(Side::Long, Qty(75), Paise(9_500), BrokerAverage, None)]);

        // Nothing of ours at all.
        let p = plan(&with_executions(vec![row(A, 75, 9_500, 0)], vec![]), &view(vec![]));
        assert_eq!(adoptions(&p), [(Side::Long, Qty(75), Paise(9_500), BrokerAverage, None)]);
    }

    #[test]
    fn unknown_broker_long_and_short_are_adopted_on_their_side_at_their_average() {
        let p =
            plan(&twice(vec![row(A, 75, 12_000, 0), row(B, -50, 0, 9_000)]), &LocalView::default());
        assert_eq!(p.adjustments.len(), 2, "{p:?}");
        assert!(
            matches!(&p.adjustments[0], Adjustment::Adopt { instrument, side: Side::Long, quantity: Qty(75), price: Paise(12_000), .. } if *instrument == A)
        );
        assert!(
            matches!(&p.adjustments[1], Adjustment::Adopt { instrument, side: Side::Short, quantity: Qty(50), price: Paise(9_000), .. } if *instrument == B)
        );
    }

    #[test]
    fn a_flat_broker_closes_the_local_position_at_the_brokers_exit_average() {
        let p = plan(
            &twice(vec![row(A, 0, 10_000, 10_500)]),
            &view(vec![local("p1", A, Side::Long, 75)]),
        );
        assert!(
            matches!(&p.adjustments[..], [Adjustment::CloseLocal { position, price: Paise(10_500), .. }] if position.as_str() == "p1")
        );
        // No row at all: closed at the position's last price.
        let p = plan(&twice(vec![]), &view(vec![local("p1", A, Side::Short, 75)]));
        assert!(matches!(
            &p.adjustments[..],
            [Adjustment::CloseLocal { price: Paise(10_000), .. }]
        ));
    }

    #[test]
    fn reads_that_disagree_change_nothing() {
        let check = BrokerCheck {
            first: book(vec![row(A, 75, 12_000, 0)]),
            recheck: book(vec![]),
            ..BrokerCheck::default()
        };
        let p = plan(&check, &view(vec![local("p1", A, Side::Long, 75)]));
        assert!(p.adjustments.is_empty());
        assert!(p.notes[0].contains("changed between two reads"), "{:?}", p.notes);
    }

    #[test]
    fn an_instrument_with_anything_in_flight_is_left_alone() {
        let rows = vec![row(A, 75, 12_000, 0)];
        let mut busy = twice(rows.clone());
        busy.busy.insert(A);
        let mut pending = LocalView::default();
        pending.pending_entries.insert(A);
        let mut exiting = local("p1", A, Side::Long, 75);
        exiting.exiting = true;
        let mut open_order = twice(vec![]);
        open_order.first.open_orders.push(BrokerOrder {
            order_id: OrderId("1".into()),
            correlation_id: Some("1000000001-5".into()),
            instrument: Some(A),
            status: OrderStatus::Pending,
            ours: false,
        });
        for (check, view) in [
            (busy, LocalView::default()),
            (twice(rows.clone()), pending),
            (twice(vec![]), view(vec![exiting])),
            (open_order, view(vec![local("p1", A, Side::Long, 75)])),
        ] {
            let p = plan(&check, &view);
            assert!(p.adjustments.is_empty(), "{p:?}");
            assert!(p.notes.iter().any(|n| n.contains("in flight")), "{p:?}");
        }
    }

    #[test]
    fn an_unreadable_line_changes_nothing() {
        let mut check = twice(vec![]);
        check.recheck.unreadable = 1;
        let p = plan(&check, &view(vec![local("p1", A, Side::Long, 75)]));
        assert!(p.adjustments.is_empty());
        assert!(p.notes[0].contains("unreadable"));
    }

    #[test]
    fn the_excess_on_our_side_is_adopted_and_anything_else_is_only_reported() {
        let p =
            plan(&twice(vec![row(A, 150, 11_000, 0)]), &view(vec![local("p1", A, Side::Long, 75)]));
        assert!(matches!(
            &p.adjustments[..],
            [Adjustment::Adopt { quantity: Qty(75), side: Side::Long, .. }]
        ));
        for broker in [25, -75] {
            let p = plan(
                &twice(vec![row(A, broker, 11_000, 12_000)]),
                &view(vec![local("p1", A, Side::Long, 75)]),
            );
            assert!(p.adjustments.is_empty(), "{broker}: {p:?}");
            assert!(p.notes[0].contains("operator"), "{p:?}");
        }
    }

    #[test]
    fn only_instruments_both_reads_agree_on_with_the_engine_are_confirmed() {
        let long = || view(vec![local("p1", A, Side::Long, 75)]);
        let disagree = BrokerCheck {
            first: book(vec![row(A, 75, 10_000, 0)]),
            recheck: book(vec![]),
            ..BrokerCheck::default()
        };
        let mut unreadable = twice(vec![row(A, 75, 10_000, 0)]);
        unreadable.first.unreadable = 1;
        // (check, local view, confirmed)
        let table: [(BrokerCheck, LocalView, &[InstrumentKey]); 7] = [
            (twice(vec![row(A, 75, 10_000, 0)]), long(), &[A]),
            (twice(vec![row(A, 75, 10_000, 0), row(B, 50, 10_000, 0)]), long(), &[A]),
            (twice(vec![row(A, 0, 10_000, 10_500)]), long(), &[]),
            (twice(vec![row(A, 25, 10_000, 0)]), long(), &[]),
            (twice(vec![row(A, -75, 0, 10_000)]), long(), &[]),
            (disagree, long(), &[]),
            (unreadable, long(), &[]),
        ];
        for (i, (check, local, want)) in table.into_iter().enumerate() {
            let got: Vec<InstrumentKey> = confirmed(&check, &local).into_iter().collect();
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn agreement_is_silent_and_settled_orders_pass_through() {
        let mut check = twice(vec![row(A, -75, 0, 9_000)]);
        let cid = CorrelationId::new("X1-p9").unwrap();
        check.settled.push(Adjustment::ExitAbsent { correlation_id: cid, why: "absent".into() });
        let p = plan(&check, &view(vec![local("p1", A, Side::Short, 75)]));
        assert_eq!(p.adjustments.len(), 1);
        assert!(p.notes.is_empty(), "{p:?}");
    }
}
