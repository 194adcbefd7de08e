//! Fills valued at the order's own trades. Dhan's reports of an order are cumulative (traded
//! quantity, average price), and the order-update socket adds the latest trade's price; an
//! order that trades at several prices has an average that is not a whole paisa, so a fill
//! derived from averages can be off by up to half a paisa per unit. When a report ends an
//! order, or moves it without the latest trade's price (an order-book poll, updates missed),
//! the order's trades are read first (`GET /trades/{order-id}`, dhan-v2 §4.4) so that what the
//! tracker reports adds up to the trade book, to the paisa (`broker::tracker`).

use crate::broker::rest::DhanClient;
use crate::broker::tracker::{Report, Seen};
use crate::domain::Timestamp;

use super::SharedTracker;

/// Applies `seen` to the tracker, reading the order's trades first when the tracker wants
/// them (`OrderTracker::wants_trades`). The trade book is read without holding the tracker;
/// when it cannot be read, the report is applied as it is (valued from the averages).
pub fn observe(
    tracker: &SharedTracker,
    client: &DhanClient,
    seen: &Seen,
    at: Timestamp,
    now_ms: u64,
) -> Vec<Report> {
    let wanted = tracker.lock().wants_trades(seen);
    if let Some(order_id) = wanted {
        match client.trades_for_order(&order_id) {
            Ok(trades) => tracker.lock().record_trades(seen, &trades),
            Err(e) => {
                log::warn!(target: "broker", "reading the trades of order {order_id}: {e}; its fills are valued from the broker's average price")
            }
        }
    }
    tracker.lock().observe(seen, at, now_ms)
}
