//! The stale-price fallback (risk spec §5): the last traded prices of the instruments whose
//! feed went quiet, from one batched `POST /marketfeed/ltp` (up to 1000 instruments per call,
//! in the quote class of the shared rate limiter: 1 call per second). The heartbeat asks for
//! them every `stale_after_ms` at most once a second; the exit engine evaluates them as ticks.

use std::collections::HashMap;

use crate::broker::rest::DhanClient;
use crate::domain::{InstrumentKey, Mono, Paise, Tick, TickSource, Timestamp};
use crate::exec::seams::StalePriceSource;

pub struct LtpSource {
    client: DhanClient,
}

impl LtpSource {
    pub fn new(client: DhanClient) -> LtpSource {
        LtpSource { client }
    }
}

/// The fetched prices as REST ticks received `now` (wall) and `mono`, in the order asked,
/// skipping what Dhan did not report (and non-positive prices, which no rule may act on).
pub fn ticks_from_prices(
    instruments: &[InstrumentKey],
    prices: &HashMap<InstrumentKey, Paise>,
    now: Timestamp,
    mono: Mono,
) -> Vec<Tick> {
    instruments
        .iter()
        .filter_map(|k| prices.get(k).filter(|p| p.0 > 0).map(|p| (k, p)))
        .map(|(k, p)| Tick {
            instrument: *k,
            ltp: *p,
            exchange_time: now,
            received_at: now,
            received_mono: mono,
            source: TickSource::Rest,
        })
        .collect()
}

impl StalePriceSource for LtpSource {
    fn fetch(
        &self,
        instruments: &[InstrumentKey],
        now: Timestamp,
        mono: Mono,
    ) -> Result<Vec<Tick>, String> {
        if instruments.is_empty() {
            return Ok(Vec::new());
        }
        let prices = self.client.ltp(instruments).map_err(|e| e.to_string())?;
        let ticks = ticks_from_prices(instruments, &prices, now, mono);
        log::info!(target: "broker", "stale-price fallback: {} of {} instruments priced over REST", ticks.len(), instruments.len());
        Ok(ticks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Segment;

    #[test]
    fn unreported_and_non_positive_prices_are_left_out() {
        let a = InstrumentKey::new(Segment::NseFno, 1);
        let b = InstrumentKey::new(Segment::NseFno, 2);
        let c = InstrumentKey::new(Segment::NseFno, 3);
        let prices = HashMap::from([(a, Paise(12_345)), (c, Paise(0))]);
        let ticks = ticks_from_prices(&[a, b, c], &prices, Timestamp(7), Mono(7));
        assert_eq!(ticks.len(), 1);
        assert_eq!(
            (ticks[0].instrument, ticks[0].ltp, ticks[0].received_at),
            (a, Paise(12_345), Timestamp(7))
        );
    }
}
