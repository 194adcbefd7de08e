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

use std::sync::Arc;

use crate::broker::journal::OrderJournal;
use crate::domain::{OrderIntent, Timestamp};
use crate::exec::router::{Gateway, Placement};

use super::SharedTracker;
use super::desk::DeskHandle;
use super::placer::{Attempt, Placer};

pub struct LiveGateway {
    placer: Arc<Placer>,
    desk: DeskHandle,
    tracker: SharedTracker,
    journal: Arc<OrderJournal>,
    placers: usize,
}

impl LiveGateway {
    pub fn new(
        placer: Arc<Placer>,
        desk: DeskHandle,
        tracker: SharedTracker,
        journal: Arc<OrderJournal>,
    ) -> LiveGateway {
        LiveGateway { placer, desk, tracker, journal, placers: 1 }
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
        let cid = &intent.correlation_id;
        let exit = intent.purpose.is_exit();
        let fresh = self.tracker.lock().expect(intent, SharedTracker::now_ms());
        if !fresh {
            // The router's ledger drops repeats; this is the second line of that guard.
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
                let _ = self.tracker.lock().bind(cid, &order_id, SharedTracker::now_ms());
                Placement::Accepted { order_id }
            }
            Attempt::Rejected(reason) => {
                self.tracker.lock().finish(cid);
                Placement::Rejected { reason }
            }
            Attempt::NotSent(why) if exit => {
                self.desk.retry(intent, &why);
                Placement::Queued { detail: format!("not sent ({why}); resent under the same id") }
            }
            Attempt::NotSent(why) => {
                self.tracker.lock().finish(cid);
                Placement::Rejected { reason: format!("not sent: {why}") }
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
                self.tracker.lock().finish(cid);
                Placement::Rejected { reason: format!("{why}: entries are refused") }
            }
        }
    }
}
