//! Freeze-quantity slicing (dhan-v2 §8.2): the exchange rejects a single order above the
//! instrument's `SM_FREEZE_QTY`, so a larger order goes out as child orders, each a multiple of
//! the lot and at most the freeze quantity, each under its own correlation id derived from the
//! parent's (`risk::correlation::slice_id`: `X1-p17` → `X1s1-p17`, `X1s2-p17`, …).
//!
//! Pure: quantities and ids only. The children are as large as allowed (the largest lot
//! multiple not above the freeze), in order, the last one carrying the rest; the same parent
//! always gives the same children, so a restarted engine recomputes them.

use crate::domain::{InstrumentKey, OrderIntent, Qty};
use crate::risk::correlation::{self, CorrelationError, OrderRole};

/// The quantities of the children of an order of `quantity` units; `None` when one order is
/// enough (at most the freeze, no freeze known, or a freeze below one lot, which no slicing
/// can satisfy).
pub fn slice_quantities(quantity: Qty, lot: Qty, freeze: Option<Qty>) -> Option<Vec<Qty>> {
    let freeze = freeze?.0;
    let lot = lot.0.max(1);
    if quantity.0 <= freeze || freeze < lot {
        return None;
    }
    let step = freeze - freeze % lot;
    let mut left = quantity.0;
    let mut out = Vec::with_capacity(usize::try_from(left / step + 1).unwrap_or(0));
    while left > 0 {
        let q = left.min(step);
        out.push(Qty(q));
        left -= q;
    }
    Some(out)
}

/// How many orders a leg of `quantity` units goes to the exchange as: the number of its
/// children, or 1 when it is not sliced. The charges of a leg are per executed order
/// (brokerage) on top of its turnover (`pnl::ChargeSchedule::leg_on_turnover_orders`); a leg
/// whose children all filled executed exactly this many.
pub fn orders_of(quantity: Qty, lot: Qty, freeze: Option<Qty>) -> u32 {
    slice_quantities(quantity, lot, freeze)
        .map_or(1, |children| u32::try_from(children.len()).unwrap_or(u32::MAX))
}

/// [`orders_of`] for an instrument of `master` (1 when the master does not know it).
pub fn leg_orders(
    master: &crate::instruments::Instruments,
    instrument: InstrumentKey,
    quantity: Qty,
) -> u32 {
    master.get(instrument).map_or(1, |i| orders_of(quantity, i.lot, i.freeze))
}

/// The child orders of `parent`, or `None` when it goes as one order. The children keep
/// everything of the parent but the quantity and the correlation id.
pub fn slice_order(
    parent: &OrderIntent,
    lot: Qty,
    freeze: Option<Qty>,
) -> Result<Option<Vec<OrderIntent>>, CorrelationError> {
    let Some(quantities) = slice_quantities(parent.quantity, lot, freeze) else {
        return Ok(None);
    };
    let role = if parent.purpose.is_exit() { OrderRole::Exit } else { OrderRole::Entry };
    let attempt = correlation::parse(parent.correlation_id.as_str())
        .filter(|p| p.slice.is_none())
        .map_or(1, |p| p.attempt);
    let mut children = Vec::with_capacity(quantities.len());
    for (i, quantity) in quantities.into_iter().enumerate() {
        let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let correlation_id = correlation::slice_id(role, &parent.position_id, attempt, n)?;
        children.push(OrderIntent { correlation_id, quantity, ..parent.clone() });
    }
    Ok(Some(children))
}

/// The children of `intent` when it is above its instrument's freeze quantity (the master as
/// it is now); `None` when it goes as one order.
pub fn slices_of(
    instruments: &crate::instruments::SharedInstruments,
    intent: &OrderIntent,
) -> Option<Vec<OrderIntent>> {
    let table = instruments.load();
    let inst = table.get(intent.instrument)?;
    match slice_order(intent, inst.lot, inst.freeze) {
        Ok(children) => children,
        Err(e) => {
            log::error!(target: "broker", "ALERT order {} of {} above the freeze quantity cannot be sliced ({e}): sent as one order", intent.correlation_id, intent.position_id);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CorrelationId, OrderPurpose, Paise, PositionId, Timestamp, Txn};

    fn q(v: &[i64]) -> Option<Vec<Qty>> {
        Some(v.iter().map(|&x| Qty(x)).collect())
    }

    /// quantity, lot, freeze → children.
    type Case = (i64, i64, Option<i64>, Option<Vec<Qty>>);

    #[test]
    fn quantities_table() {
        let cases: &[Case] = &[
            // quantity, lot, freeze → children
            (450, 75, Some(150), q(&[150, 150, 150])),
            (450, 75, Some(1800), None),
            (150, 75, Some(150), None),
            (225, 75, Some(150), q(&[150, 75])),
            (3675, 75, Some(1800), q(&[1800, 1800, 75])),
            // A freeze that is not a lot multiple: the largest lot multiple below it.
            (450, 75, Some(200), q(&[150, 150, 150])),
            (900, 15, Some(900), None),
            (1000, 50, Some(175), q(&[150, 150, 150, 150, 150, 150, 100])),
            // No freeze known, or one below a lot: one order.
            (450, 75, None, None),
            (450, 75, Some(50), None),
            // Lot 1 (equity).
            (5, 1, Some(2), q(&[2, 2, 1])),
        ];
        for (quantity, lot, freeze, want) in cases {
            let got = slice_quantities(Qty(*quantity), Qty(*lot), freeze.map(Qty));
            assert_eq!(&got, want, "{quantity} lot {lot} freeze {freeze:?}");
            if let Some(children) = got {
                assert_eq!(children.iter().map(|c| c.0).sum::<i64>(), *quantity);
                assert!(children.iter().all(|c| c.0 > 0 && c.0 <= freeze.unwrap()));
            }
        }
    }

    #[test]
    fn a_leg_counts_one_order_per_child() {
        let cases: &[(i64, i64, Option<i64>, u32)] = &[
            (450, 75, Some(150), 3),
            (150, 75, Some(150), 1),
            (225, 75, Some(150), 2),
            (450, 75, None, 1),
            (3675, 75, Some(1800), 3),
            (0, 75, Some(150), 1),
        ];
        for (quantity, lot, freeze, want) in cases {
            assert_eq!(orders_of(Qty(*quantity), Qty(*lot), freeze.map(Qty)), *want, "{quantity}");
        }
    }

    fn intent(cid: &str, position: &str, quantity: i64, purpose: OrderPurpose) -> OrderIntent {
        OrderIntent {
            correlation_id: CorrelationId::new(cid).unwrap(),
            position_id: PositionId::new(position),
            instrument: "NSE_FNO:52175".parse::<InstrumentKey>().unwrap(),
            txn: Txn::Sell,
            quantity: Qty(quantity),
            purpose,
            reference_price: Paise(10_000),
            price_is_stale: false,
            created_at: Timestamp::from_millis(0),
            limit_price: None,
        }
    }

    fn ids(children: &[OrderIntent]) -> Vec<(&str, i64)> {
        children.iter().map(|c| (c.correlation_id.as_str(), c.quantity.0)).collect()
    }

    #[test]
    fn children_get_ids_derived_from_the_parent() {
        let exit = OrderPurpose::Exit(crate::domain::ExitReason::StopLoss);
        let p = intent("X1-p17", "p17", 450, exit);
        let children = slice_order(&p, Qty(75), Some(Qty(150))).unwrap().unwrap();
        assert_eq!(ids(&children), [("X1s1-p17", 150), ("X1s2-p17", 150), ("X1s3-p17", 150)]);
        assert!(children.iter().all(|c| c.position_id == p.position_id && c.txn == p.txn));
        // Deterministic, and the attempt carries over.
        assert_eq!(slice_order(&p, Qty(75), Some(Qty(150))).unwrap().unwrap(), children);
        let p2 = intent("X2-p17", "p17", 225, exit);
        let c2 = slice_order(&p2, Qty(75), Some(Qty(150))).unwrap().unwrap();
        assert_eq!(ids(&c2), [("X2s1-p17", 150), ("X2s2-p17", 75)]);
        // A long position id: the hashed form, each id once.
        let long = "position-with-a-long-name-1";
        let p3 = intent(
            &correlation::exit_id(&PositionId::new(long), 3).unwrap().to_string(),
            long,
            600,
            exit,
        );
        let c3 = slice_order(&p3, Qty(75), Some(Qty(150))).unwrap().unwrap();
        let mut seen: Vec<&str> = c3.iter().map(|c| c.correlation_id.as_str()).collect();
        assert!(seen.iter().all(|c| c.starts_with("X3s") && c.len() <= 25), "{seen:?}");
        seen.dedup();
        assert_eq!(seen.len(), 4);
        // At most the freeze: unchanged.
        assert_eq!(
            slice_order(&intent("X1-p17", "p17", 150, exit), Qty(75), Some(Qty(150))).unwrap(),
            None
        );
    }

    #[test]
    fn entries_slice_under_entry_ids() {
        let p = intent("N1-p9", "p9", 300, OrderPurpose::Entry);
        let children = slice_order(&p, Qty(75), Some(Qty(150))).unwrap().unwrap();
        assert_eq!(ids(&children), [("N1s1-p9", 150), ("N1s2-p9", 150)]);
    }
}
