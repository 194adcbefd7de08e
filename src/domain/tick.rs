//! A price update for one instrument, as the exit engine sees it.

use super::{InstrumentKey, Paise, Timestamp};

/// The last traded price of an instrument, with the exchange's time (from the feed's LTT) and
/// the local time the engine received it. Staleness is judged on `received_at`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Tick {
    pub instrument: InstrumentKey,
    pub ltp: Paise,
    pub exchange_time: Timestamp,
    pub received_at: Timestamp,
}
