//! The order router's door to Dhan: one placement attempt on the router's thread, and
//! everything that cannot finish at once handed to the order desk.
//!
//! | attempt ended as | exit | entry |
//! |---|---|---|
//! | accepted | tracked; `Accepted` | same |
//! | rejected (4xx) | `Rejected`: the position is `Active` again | `Rejected` |
//! | not sent (429, limiter, no connection) | held by the desk, resent under the same id | `Rejected` (an entry is not worth a late fill) |
//! | unknown (timeout, reset, 5xx, unreadable) | the desk settles it; `Unknown`, the position stays `Exiting` | same |
//! | circuit breaker open | held by the desk, alerted; `Queued` | `Rejected` |
//!
//! An id the order journal holds but this run has not sent (an earlier run sent it before a
//! crash) is never sent: it goes straight to the desk to be settled by correlation id.
//!
//! An order above the instrument's freeze quantity (instrument master) goes out as child
//! orders (`exec::slicing`), back to back, each journaled and handled by the table above on
//! its own (a child not sent is resent alone, an unknown one settled alone; a filled one is
//! never sent again). The router hears of the parent: accepted when a child was accepted,
//! rejected only when every child was refused at once. The order book tells an exit's child fills
//! as the parent's part fills and ends the parent once the last child ended short (the exit
//! engine then sends the rest as its next attempt); a sliced entry is reported once every
//! child has ended, as its total at its average (a part-filled entry opens with that part).

use std::sync::Arc;

use crate::broker::journal::OrderJournal;
use crate::domain::{OrderIntent, Paise, Qty, Timestamp};
use crate::exec::order_book::{Event, OrderBookHandle};
use crate::exec::router::{Gateway, Placement};
pub use crate::exec::slicing::slices_of;
use crate::instruments::SharedInstruments;

use super::desk::DeskHandle;
use super::placer::{Attempt, Placer};

pub struct LiveGateway {
    placer: Arc<Placer>,
    desk: DeskHandle,
    orders: OrderBookHandle,
    journal: Arc<OrderJournal>,
    placers: usize,
    instruments: Option<SharedInstruments>,
}

impl LiveGateway {
    pub fn new(
        placer: Arc<Placer>,
        desk: DeskHandle,
        orders: OrderBookHandle,
        journal: Arc<OrderJournal>,
    ) -> LiveGateway {
        LiveGateway { placer, desk, orders, journal, placers: 1, instruments: None }
    }

    /// Slices exits above each instrument's freeze quantity (without it, nothing is sliced).
    pub fn with_instruments(mut self, instruments: SharedInstruments) -> LiveGateway {
        self.instruments = Some(instruments);
        self
    }

    /// The children of an order above its instrument's freeze quantity, if it is one.
    fn slices(&self, intent: &OrderIntent) -> Option<Vec<OrderIntent>> {
        slices_of(self.instruments.as_ref()?, intent)
    }

    fn place_sliced(&self, parent: &OrderIntent, children: &[OrderIntent]) -> Placement {
        let cid = &parent.correlation_id;
        let register =
            Event::RegisterSliced { parent: parent.clone(), children: children.to_vec() };
        if !self.orders.apply(register).is_applied() {
            log::error!(target: "broker", "{cid} was already placed by this run: not sent again");
            return Placement::Unknown { detail: "already placed by this run".into() };
        }
        let exit = parent.purpose.is_exit();
        let kind = if exit { "exit" } else { "entry" };
        log::info!(target: "broker", "{kind} {cid} of {}: {} units above the freeze quantity, sent as {} orders", parent.position_id, parent.quantity, children.len());
        // The parent's own line first: after a crash between two children, the restart knows
        // the whole order (a pending entry's quantity) from it, not from the children that
        // left. The parent's id itself never goes to Dhan.
        if let Err(e) = self.journal.record(parent, self.placer.clock.now()) {
            log::warn!(target: "broker", "{kind} {cid}: the parent's journal line was not written ({e}); each child is journaled on its own");
        }
        let mut accepted = None;
        let mut unsettled = None;
        let mut refused = Vec::new();
        for child in children {
            let ccid = &child.correlation_id;
            if let Some(sent) = self.journal.lookup(ccid) {
                self.desk.resolve(child, Some(sent.at), "sent before a restart (order journal)");
                unsettled.get_or_insert_with(|| {
                    format!("{ccid} sent before a restart: settled by correlation id")
                });
                continue;
            }
            match self.placer.attempt(child) {
                Attempt::Accepted(order_id) => {
                    // The parent's acceptance is the router's to report.
                    let bind =
                        Event::Bind { correlation_id: ccid.clone(), order_id: order_id.clone() };
                    let _ = self.orders.apply(bind);
                    accepted.get_or_insert(order_id);
                }
                Attempt::Rejected(reason) => refused.push((child, reason)),
                Attempt::NotSent(why) if !exit => refused.push((child, format!("not sent: {why}"))),
                Attempt::BreakerOpen(why) if !exit => {
                    refused.push((child, format!("{why}: entries are refused")))
                }
                Attempt::NotSent(why) => {
                    self.desk.retry(child, &why);
                    unsettled.get_or_insert_with(|| {
                        format!("{ccid} not sent ({why}): resent under the same id")
                    });
                }
                Attempt::Unknown(why) => {
                    self.desk.resolve(child, None, &why);
                    unsettled.get_or_insert_with(|| format!("{ccid}: {why}"));
                }
                Attempt::BreakerOpen(why) => {
                    self.desk.hold_for_breaker(child, &why);
                    unsettled.get_or_insert_with(|| format!("{ccid}: {why}"));
                }
            }
        }
        if refused.len() == children.len() {
            let _ = self.orders.apply(Event::Abandon { parent: cid.clone() });
            let reason = refused.into_iter().next().map(|(_, r)| r).unwrap_or_default();
            return Placement::Rejected { reason };
        }
        let mut reports = Vec::new();
        for (child, reason) in refused {
            log::warn!(target: "broker", "{kind} slice {} of {} refused: {reason}", child.correlation_id, child.position_id);
            let finish = Event::Finish { correlation_id: child.correlation_id.clone(), reason };
            reports.extend(self.orders.apply(finish).reports());
        }
        for r in reports {
            self.desk.shared().reporter.report(r);
        }
        match (accepted, unsettled) {
            (Some(order_id), _) => Placement::Accepted { order_id },
            (None, Some(detail)) => Placement::Unknown { detail },
            (None, None) => Placement::Unknown { detail: "sliced".into() },
        }
    }

    /// Nothing more will come of an unsliced order refused at its placement.
    fn finish(&self, intent: &OrderIntent, reason: &str) {
        let finish =
            Event::Finish { correlation_id: intent.correlation_id.clone(), reason: reason.into() };
        let _ = self.orders.apply(finish);
    }

    /// Lets the router have up to `n` orders in flight at once.
    pub fn with_placers(mut self, n: usize) -> LiveGateway {
        self.placers = n.max(1);
        self
    }
}

impl Gateway for LiveGateway {
    fn name(&self) -> &'static str {
        "dhan"
    }

    fn placers(&self) -> usize {
        self.placers
    }

    fn place(&self, intent: &OrderIntent, _now: Timestamp) -> Placement {
        if let Some(children) = self.slices(intent) {
            return self.place_sliced(intent, &children);
        }
        let cid = &intent.correlation_id;
        let exit = intent.purpose.is_exit();
        let register =
            Event::Register { intent: intent.clone(), traded: Qty(0), value: Paise::ZERO };
        if !self.orders.apply(register).is_applied() {
            // The router's admission drops repeats; this is the second line of that guard.
            log::error!(target: "broker", "{cid} was already placed by this run: not sent again");
            return Placement::Unknown { detail: "already placed by this run".into() };
        }
        if let Some(sent) = self.journal.lookup(cid) {
            // Journaled, yet unknown to this run: an earlier run sent it.
            self.desk.resolve(intent, Some(sent.at), "sent before a restart (order journal)");
            return Placement::Unknown {
                detail: format!(
                    "sent at {} before a restart: settled by correlation id, never sent again",
                    sent.at.to_ist_iso()
                ),
            };
        }
        match self.placer.attempt(intent) {
            Attempt::Accepted(order_id) => {
                // The router reports it; a report from the socket may have beaten us to it.
                let _ = self
                    .orders
                    .apply(Event::Bind { correlation_id: cid.clone(), order_id: order_id.clone() });
                Placement::Accepted { order_id }
            }
            Attempt::Rejected(reason) => {
                self.finish(intent, &reason);
                Placement::Rejected { reason }
            }
            Attempt::NotSent(why) if exit => {
                self.desk.retry(intent, &why);
                Placement::Queued { detail: format!("not sent ({why}); resent under the same id") }
            }
            Attempt::NotSent(why) => {
                let reason = format!("not sent: {why}");
                self.finish(intent, &reason);
                Placement::Rejected { reason }
            }
            Attempt::Unknown(why) => {
                self.desk.resolve(intent, None, &why);
                Placement::Unknown { detail: why }
            }
            Attempt::BreakerOpen(why) if exit => {
                self.desk.hold_for_breaker(intent, &why);
                Placement::Queued { detail: why }
            }
            Attempt::BreakerOpen(why) => {
                let reason = format!("{why}: entries are refused");
                self.finish(intent, &reason);
                Placement::Rejected { reason }
            }
        }
    }
}
