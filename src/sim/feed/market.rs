//! The simulated market behind the feed: per-instrument day statistics that move with each
//! price, the packets a subscription mode receives for them (spec dhan-v2 §1.5), and the
//! market thread that moves prices (random walk, scenario) and fires timed faults.

use std::time::{Duration, Instant};

use super::{ConnEvent, Hub, Pace, PriceSource, malformed_packet};
use crate::domain::{InstrumentKey, Paise, Segment};
use crate::feed::codec::{DepthLevel, Full, Oi, Packet, PrevClose, Quote, Ticker};
use crate::feed::subscribe::FeedMode;
use crate::sim::scenario::ScenarioRow;

/// Tick size of Indian index options: ₹0.05.
pub const TICK: Paise = Paise(5);

/// Day statistics of one simulated instrument.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct InstrumentState {
    pub ltp: Paise,
    pub ltq: u16,
    pub open: Paise,
    pub high: Paise,
    pub low: Paise,
    pub prev_close: Paise,
    pub volume: u32,
    pub oi: u32,
    turnover: i128,
}

impl InstrumentState {
    /// A fresh day opening at `price`, which is also taken as the previous close.
    pub fn new(price: Paise) -> InstrumentState {
        InstrumentState {
            ltp: price,
            ltq: 0,
            open: price,
            high: price,
            low: price,
            prev_close: price,
            volume: 0,
            oi: 1_000_000,
            turnover: 0,
        }
    }

    /// A trade of `qty` units at `price`.
    pub fn trade(&mut self, price: Paise, qty: u16) {
        self.ltp = price;
        self.ltq = qty;
        self.high = self.high.max(price);
        self.low = self.low.min(price);
        // Stay below 2^31 (spec §1.6: a simulator must never emit values ≥ 2^31).
        if self.volume < (1 << 30) {
            self.volume += u32::from(qty);
            self.turnover += i128::from(price.0) * i128::from(qty);
        }
    }

    /// Average traded price, rounded down to the paisa.
    pub fn atp(&self) -> Paise {
        if self.volume == 0 {
            self.ltp
        } else {
            Paise((self.turnover / i128::from(self.volume)) as i64)
        }
    }

    fn depth(&self) -> [DepthLevel; 5] {
        std::array::from_fn(|i| {
            let steps = Paise(TICK.0 * (i as i64 + 1));
            DepthLevel {
                bid_qty: 75 * (i as u32 + 1),
                ask_qty: 75 * (i as u32 + 2),
                bid_orders: i as u16 + 1,
                ask_orders: i as u16 + 2,
                bid_price: (self.ltp - steps).max(Paise::ZERO),
                ask_price: self.ltp + steps,
            }
        })
    }

    /// Previous-close packet (code 6).
    pub fn prev_close_packet(&self, key: InstrumentKey) -> Packet {
        Packet::PrevClose(PrevClose { instrument: key, prev_close: self.prev_close, prev_oi: 0 })
    }

    /// The packets a subscriber in `mode` receives for the current state, LTT `ltt`.
    pub fn packets(&self, key: InstrumentKey, mode: FeedMode, ltt: u32) -> Vec<Packet> {
        let t = Ticker::new(key, self.ltp, ltt);
        let quote = Quote {
            instrument: key,
            ltp: self.ltp,
            ltq: self.ltq,
            ltt,
            exchange_time: t.exchange_time,
            atp: self.atp(),
            volume: self.volume,
            total_sell_qty: 50_000,
            total_buy_qty: 60_000,
            open: self.open,
            close: self.prev_close,
            high: self.high,
            low: self.low,
        };
        match mode {
            FeedMode::Ticker => vec![Packet::Ticker(t)],
            FeedMode::Quote if is_derivative(key.segment) => {
                vec![Packet::Quote(quote), Packet::Oi(Oi { instrument: key, oi: self.oi })]
            }
            FeedMode::Quote => vec![Packet::Quote(quote)],
            FeedMode::Full => vec![Packet::Full(Full {
                instrument: key,
                ltp: quote.ltp,
                ltq: quote.ltq,
                ltt,
                exchange_time: quote.exchange_time,
                atp: quote.atp,
                volume: quote.volume,
                total_sell_qty: quote.total_sell_qty,
                total_buy_qty: quote.total_buy_qty,
                oi: if is_derivative(key.segment) { self.oi } else { 0 },
                oi_day_high: self.oi,
                oi_day_low: self.oi,
                open: quote.open,
                close: quote.close,
                high: quote.high,
                low: quote.low,
                depth: self.depth(),
            })],
        }
    }
}

/// Segments whose instruments carry open interest.
pub fn is_derivative(segment: Segment) -> bool {
    matches!(
        segment,
        Segment::NseFno
            | Segment::BseFno
            | Segment::McxComm
            | Segment::NseCurrency
            | Segment::BseCurrency
    )
}

/// One random-walk step on ₹0.05 ticks: down, unchanged or up with equal odds, never below one
/// tick.
pub fn walk(price: Paise, rng: &mut fastrand::Rng) -> Paise {
    let step = Paise(TICK.0 * (rng.i64(0..3) - 1));
    (price + step).max(TICK)
}

/// The market thread: moves prices per the configured source and fires the timed faults.
pub(super) fn run(hub: &Hub) {
    let started = Instant::now();
    let faults = &hub.cfg.faults;
    let mut timed: Vec<(Instant, ConnEvent)> = [
        faults.drop_after.map(|d| (started + d, ConnEvent::Drop)),
        faults.disconnect_after.map(|(d, r)| (started + d, ConnEvent::Disconnect(r))),
        faults.malformed_after.map(|d| (started + d, ConnEvent::Raw(malformed_packet()))),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut rng = fastrand::Rng::new();
    let mut next_step = started;
    let mut scenario = match &hub.cfg.prices {
        PriceSource::Scenario { rows, pace } => Some((rows.iter(), *pace, None::<(Instant, i64)>)),
        _ => None,
    };
    if let PriceSource::RandomWalk { seed, .. } = hub.cfg.prices {
        rng.seed(seed);
    }
    loop {
        let now = Instant::now();
        for (_, event) in timed.extract_if(.., |(at, _)| now >= *at) {
            hub.broadcast(event);
        }
        let mut wait = Duration::from_millis(5);
        match &hub.cfg.prices {
            PriceSource::Manual => {}
            PriceSource::RandomWalk { interval, .. } => {
                if now >= next_step {
                    next_step = now + *interval;
                    let ltt = hub.now_ltt();
                    for key in hub.subscribed_instruments() {
                        let price = walk(hub.state(key).ltp, &mut rng);
                        hub.publish(key, price, ltt);
                    }
                }
                wait = wait.min(next_step.saturating_duration_since(now));
            }
            PriceSource::Scenario { .. } => {
                if let Some((rows, pace, origin)) = scenario.as_mut() {
                    wait = replay_due(hub, rows, *pace, origin, now).unwrap_or(wait);
                }
            }
        }
        if !hub.sleep(wait) {
            return;
        }
    }
}

/// Publishes every scenario row that is due; returns how long until the next one.
fn replay_due(
    hub: &Hub,
    rows: &mut std::slice::Iter<'_, ScenarioRow>,
    pace: Pace,
    origin: &mut Option<(Instant, i64)>,
    now: Instant,
) -> Option<Duration> {
    if hub.subscribed.lock().is_empty() && origin.is_none() {
        return None;
    }
    loop {
        let row = *rows.as_slice().first()?;
        let (t0, ts0) = *origin.get_or_insert((now, row.ts.millis()));
        if pace == Pace::RealTime {
            let due = t0 + Duration::from_millis(row.ts.millis().saturating_sub(ts0).max(0) as u64);
            if due > now {
                return Some(due - now);
            }
        }
        rows.next();
        hub.publish(row.instrument, row.ltp, row.ts.to_feed_ltt());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FNO: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);

    #[test]
    fn quote_mode_sends_oi_for_derivatives_only() {
        let s = InstrumentState::new(Paise(10_000));
        assert_eq!(s.packets(FNO, FeedMode::Quote, 0).len(), 2);
        let eq = InstrumentKey::new(Segment::NseEq, 1333);
        assert_eq!(s.packets(eq, FeedMode::Quote, 0).len(), 1);
        assert!(matches!(s.packets(FNO, FeedMode::Full, 0)[..], [Packet::Full(_)]));
        assert!(matches!(s.packets(FNO, FeedMode::Ticker, 0)[..], [Packet::Ticker(_)]));
    }

    #[test]
    fn trades_move_the_day_statistics() {
        let mut s = InstrumentState::new(Paise(10_000));
        s.trade(Paise(10_100), 75);
        s.trade(Paise(9_900), 25);
        assert_eq!((s.high, s.low, s.volume), (Paise(10_100), Paise(9_900), 100));
        assert_eq!(s.atp(), Paise(10_050));
        assert_eq!(s.prev_close, Paise(10_000));
    }

    #[test]
    fn walk_moves_by_at_most_one_tick_and_stays_positive() {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut p = Paise(10);
        for _ in 0..1000 {
            let next = walk(p, &mut rng);
            assert!((next.0 - p.0).abs() <= 5 && next >= TICK && next.0 % 5 == 0);
            p = next;
        }
    }
}
