//! Fills valued at the order's own trades. Dhan's reports of an order are cumulative (traded
//! quantity, average price), and the order-update socket adds the latest trade's price; an
//! order that trades at several prices has an average that is not a whole paisa, so a fill
//! derived from averages can be off by up to half a paisa per unit. When a report ends an
//! order, or moves it without the latest trade's price (an order-book poll, updates missed),
//! the order's trades are read first (`GET /trades/{order-id}`, dhan-v2 §4.4) and kept in the
//! order book by trade id, so that what the book reports adds up to the trade book, to the
//! paisa (`exec::order_book::tracker`).

use crate::broker::rest::DhanClient;
use crate::exec::order_book::{Event, OrderBookHandle, Report, Seen};

/// Applies `seen` to the order book, reading the order's trades first when the book wants
/// them (`OrderBook::wants_trades`). The trade book is read without holding the order book;
/// the trades go in as [`Event::Trades`], then the report as [`Event::Report`]. When the trade
/// book cannot be read, the report is applied as it is (valued from the averages).
pub fn observe(book: &OrderBookHandle, client: &DhanClient, seen: &Seen) -> Vec<Report> {
    if let Some(order_id) = book.wants_trades(seen) {
        match client.trades_for_order(&order_id) {
            Ok(trades) => {
                book.apply(Event::Trades { seen: seen.clone(), trades });
            }
            Err(e) => {
                log::warn!(target: "broker", "reading the trades of order {order_id}: {e}; its fills are valued from the broker's average price")
            }
        }
    }
    book.apply(Event::Report(seen.clone())).reports()
}
