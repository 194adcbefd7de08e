//! Fills valued at the order's own trades. Dhan's reports of an order are cumulative (traded
//! quantity, average price), and the order-update socket adds the latest trade's price; an
//! order that trades at several prices has an average that is not a whole paisa, so a fill
//! derived from averages can be off by up to half a paisa per unit. When a report ends an
//! order, or moves it without the latest trade's price (an order-book poll, updates missed),
//! the order's trades are read first (`GET /trades/{order-id}`, dhan-v2 §4.4) and kept in the
//! order book by trade id, so that what the book reports adds up to the trade book, to the
//! paisa (`exec::order_book::tracker`).

use std::time::Duration;

use crate::broker::outcome::{CallError, NotSent};
use crate::broker::ratelimit::RateLimitError;
use crate::broker::rest::DhanClient;
use crate::exec::order_book::{Event, OrderBookHandle, Report, Seen};

/// How many times a trade read is tried in all.
const TRADE_READ_ATTEMPTS: usize = 3;
/// The wait before the second and the third attempt.
const TRADE_READ_BACKOFF: [Duration; TRADE_READ_ATTEMPTS - 1] =
    [Duration::from_millis(100), Duration::from_millis(300)];
/// The longest wait taken from the rate limiter's own estimate.
const TRADE_READ_MAX_WAIT: Duration = Duration::from_secs(1);

/// Reads trades (`read`: `GET /trades/{order-id}` or `GET /trades`) for valuing fills
/// exactly, trying again when the read was provably not served: Dhan throttled it (429 /
/// DH-904), our own rate limiter had no slot in time, or the connection could not be opened
/// or broke while sending. Up to [`TRADE_READ_ATTEMPTS`] attempts, waiting 100 ms then
/// 300 ms (or the limiter's own wait for its next slot, at most 1 s), since a single
/// throttled read would otherwise leave the fills valued from the broker's average price
/// for good. A rejection other than throttling, and a `Failed` read (timeout, lost
/// connection, 5xx, an unreadable answer), are not retried: the first is definitive, and the
/// second has usually cost the call's whole timeout already, which is not worth spending
/// again on what only refines a value by fractions of a paisa. Call it without holding the
/// order book: it sleeps.
pub fn read_trades<T>(mut read: impl FnMut() -> Result<T, CallError>) -> Result<T, CallError> {
    let mut attempt = 0;
    loop {
        let err = match read() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let wait = match (&err, TRADE_READ_BACKOFF.get(attempt)) {
            (CallError::NotSent { reason, .. }, Some(backoff)) => match reason {
                NotSent::RateLimited(RateLimitError::Deadline { wait, .. }) => {
                    (*wait).max(*backoff).min(TRADE_READ_MAX_WAIT)
                }
                NotSent::Throttled | NotSent::ConnectFailed(_) | NotSent::SendFailed(_) => *backoff,
            },
            _ => return Err(err),
        };
        log::info!(target: "broker", "reading trades: {err}; trying again in {wait:?}");
        std::thread::sleep(wait);
        attempt += 1;
    }
}

/// Applies `seen` to the order book, reading the order's trades first when the book wants
/// them (`OrderBook::wants_trades`). The trade book is read without holding the order book;
/// the trades go in as [`Event::Trades`], then the report as [`Event::Report`]. When the trade
/// book cannot be read ([`read_trades`] retries a read that was not served), the report is
/// applied as it is (valued from the averages).
pub fn observe(book: &OrderBookHandle, client: &DhanClient, seen: &Seen) -> Vec<Report> {
    if let Some(order_id) = book.wants_trades(seen) {
        match read_trades(|| client.trades_for_order(&order_id)) {
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
