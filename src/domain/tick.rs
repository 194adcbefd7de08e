//! A price update for one instrument, as the exit engine sees it.

use super::{InstrumentKey, Mono, Paise, Timestamp};

/// Where a price came from.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum TickSource {
    /// Dhan's market feed.
    #[default]
    Feed,
    /// Dhan's REST LTP (the stale-price fallback): it confirms a suspect feed price.
    Rest,
}

/// The last traded price of an instrument, with the exchange's time (from the feed's LTT) and
/// the local time the engine received it: the wall clock for records and session rules, the
/// monotonic reading for staleness.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Tick {
    pub instrument: InstrumentKey,
    pub ltp: Paise,
    pub exchange_time: Timestamp,
    pub received_at: Timestamp,
    pub received_mono: Mono,
    pub source: TickSource,
}

impl Tick {
    /// A feed tick on a virtual clock whose monotonic reading is its wall time (replay, tests).
    pub fn at(instrument: InstrumentKey, ltp: Paise, received_at: Timestamp) -> Tick {
        Tick {
            instrument,
            ltp,
            exchange_time: received_at,
            received_at,
            received_mono: Mono::of_wall(received_at),
            source: TickSource::Feed,
        }
    }
}
