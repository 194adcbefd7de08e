//! The paper gateway: the order router's door to the pure [`PaperBroker`]. Every order fills
//! at once (an entry may be refused: stale price, short cash); the wallet lives outside the
//! router, in the engine's shared state, so it survives a router restart. This gateway is the
//! wallet's one writer while the engine runs; the workers that only need its cash (the exit
//! engine's entry check, the PnL snapshot) get a [`PaperCash`].
//!
//! Paper trading respects the instrument master as the live broker does: an order above the
//! instrument's freeze quantity goes out as the same child orders (`exec::slicing`, the ids
//! `X<a>s<n>-…` / `N<a>s<n>-…`, each placed once, the parent's id never), through the same
//! `slices_of` as the live gateway. The paper exchange fills every child at once at the same
//! price, so the parent ends when its last child fills, in one step: the router hears of one
//! fill of the parent (its total quantity at that price), and the leg is charged brokerage
//! per child and the rest on its whole turnover, as the exit core and the live account do.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::domain::{CorrelationId, OrderIntent, Paise, Timestamp};
use crate::exec::paper::PaperBroker;
use crate::exec::router::{Gateway, Placement};
use crate::exec::slicing::slices_of;
use crate::instruments::SharedInstruments;

pub struct PaperGateway {
    wallet: Arc<Mutex<PaperBroker>>,
    /// Orders that reached the paper broker, by correlation id (what exactly-once is checked
    /// against).
    placed: Mutex<HashMap<CorrelationId, u32>>,
    /// The instrument master: fills on each instrument's own tick when it knows it.
    instruments: Option<SharedInstruments>,
}

impl PaperGateway {
    pub fn new(wallet: Arc<Mutex<PaperBroker>>) -> PaperGateway {
        PaperGateway { wallet, placed: Mutex::new(HashMap::new()), instruments: None }
    }

    /// Fills on the tick the master gives each instrument (else `paper.tick_size_rupees`).
    pub fn with_instruments(mut self, instruments: SharedInstruments) -> PaperGateway {
        self.instruments = Some(instruments);
        self
    }

    /// How many times an order with this correlation id reached the paper broker.
    pub fn placements(&self, id: &CorrelationId) -> u32 {
        self.placed.lock().get(id).copied().unwrap_or(0)
    }

    /// Orders that reached the paper broker, all ids together.
    pub fn total_placements(&self) -> u32 {
        self.placed.lock().values().sum()
    }
}

/// Reads the paper wallet's cash; cannot trade on it. Cheap to clone.
#[derive(Clone)]
pub struct PaperCash(Arc<Mutex<PaperBroker>>);

impl PaperCash {
    pub fn new(wallet: &Arc<Mutex<PaperBroker>>) -> PaperCash {
        PaperCash(wallet.clone())
    }

    /// The wallet's cash now (one short lock).
    pub fn cash(&self) -> Paise {
        self.0.lock().cash()
    }
}

impl Gateway for PaperGateway {
    fn name(&self) -> &'static str {
        "paper"
    }

    fn place(&self, intent: &OrderIntent, now: Timestamp) -> Placement {
        let children = self.instruments.as_ref().and_then(|m| slices_of(m, intent));
        let tick =
            self.instruments.as_ref().and_then(|m| m.load().get(intent.instrument).map(|i| i.tick));
        let orders = children.as_ref().map_or(1, |c| u32::try_from(c.len()).unwrap_or(u32::MAX));
        let result = self.wallet.lock().execute_leg(intent, now, tick, orders);
        {
            let mut placed = self.placed.lock();
            match &children {
                Some(children) => {
                    for child in children {
                        *placed.entry(child.correlation_id.clone()).or_insert(0) += 1;
                    }
                    log::info!(target: "broker", "paper: {} {} of {}: {} units above the freeze quantity, sent as {} orders", if intent.purpose.is_exit() { "exit" } else { "entry" }, intent.correlation_id, intent.position_id, intent.quantity, children.len());
                }
                None => *placed.entry(intent.correlation_id.clone()).or_insert(0) += 1,
            }
        }
        match result {
            Ok(exec) => Placement::Filled(exec.fill),
            Err(refusal) => Placement::Rejected { reason: refusal.to_string() },
        }
    }

    fn placements(&self, id: &CorrelationId) -> Option<u32> {
        Some(PaperGateway::placements(self, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        ExitReason, InstrumentKey, OrderPurpose, Paise, PositionId, Qty, Segment, Txn,
    };
    use crate::exec::paper::PaperParams;
    use crate::pnl::ChargeSchedule;

    fn intent(purpose: OrderPurpose, txn: Txn, stale: bool) -> OrderIntent {
        OrderIntent {
            correlation_id: CorrelationId::new("N1-p1").unwrap(),
            position_id: PositionId::new("p1"),
            instrument: InstrumentKey::new(Segment::NseFno, 52175),
            txn,
            quantity: Qty(75),
            purpose,
            reference_price: Paise(10_000),
            price_is_stale: stale,
            created_at: Timestamp(1),
            limit_price: None,
        }
    }

    #[test]
    fn orders_fill_at_once_a_stale_entry_is_rejected_and_placements_are_counted() {
        let wallet = Arc::new(Mutex::new(PaperBroker::new(
            PaperParams::default(),
            ChargeSchedule::default(),
        )));
        let g = PaperGateway::new(wallet.clone());
        let cash = PaperCash::new(&wallet);
        let stale = intent(OrderPurpose::Entry, Txn::Buy, true);
        assert!(
            matches!(g.place(&stale, Timestamp(2)), Placement::Rejected { reason } if reason.contains("stale"))
        );
        let entry = intent(OrderPurpose::Entry, Txn::Buy, false);
        let Placement::Filled(fill) = g.place(&entry, Timestamp(3)) else { panic!("entry fills") };
        assert_eq!((fill.price, fill.quantity, fill.at), (Paise(10_000), Qty(75), Timestamp(3)));
        assert!(cash.cash() < PaperParams::default().initial_cash);
        assert_eq!(cash.cash(), wallet.lock().cash());
        let exit = intent(OrderPurpose::Exit(ExitReason::StopLoss), Txn::Sell, true);
        assert!(
            matches!(g.place(&exit, Timestamp(4)), Placement::Filled(_)),
            "a stale exit still fills"
        );
        assert_eq!(g.placements(&entry.correlation_id), 3);
        assert_eq!(g.total_placements(), 3);
    }
}
