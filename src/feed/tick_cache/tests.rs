//! Tick cache: what each packet kind records, capacity, and consistency under concurrent
//! readers and writers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::domain::{InstrumentKey, Paise, Segment, Timestamp};
use crate::feed::codec::{Oi, Packet, PrevClose, Ticker, decode_packet};
use crate::feed::vectors;

const FNO: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);
const T0: Timestamp = Timestamp::from_millis(1_763_960_415_123);

fn packet(bytes: &[u8]) -> Packet {
    decode_packet(bytes).expect("spec vector decodes")
}

#[test]
fn unknown_instrument_has_no_snapshot() {
    let cache = TickCache::with_capacity(8);
    assert_eq!(cache.get(FNO), None);
    assert_eq!(cache.ltp(FNO), None);
    assert!(cache.is_empty());
}

#[test]
fn ticker_sets_last_trade_with_exchange_and_receive_time() {
    let cache = TickCache::with_capacity(8);
    let tick = cache.apply(&packet(&vectors::TICKER), T0).unwrap().expect("ticker carries LTP");
    assert_eq!(tick.instrument, FNO);
    assert_eq!(tick.ltp, Paise(12345));
    assert_eq!(tick.exchange_time, Timestamp::from_feed_ltt(1_763_980_215));
    assert_eq!(tick.received_at, T0);
    let snap = cache.get(FNO).unwrap();
    assert_eq!(snap.tick(), Some(tick));
    assert_eq!((snap.quote, snap.oi, snap.best, snap.prev_close), (None, None, None, None));
    assert_eq!(snap.updates, 1);
    assert_eq!(cache.tick(FNO), Some(tick));
}

#[test]
fn quote_then_oi_fill_statistics_and_open_interest() {
    let cache = TickCache::with_capacity(8);
    let eq = InstrumentKey::new(Segment::NseEq, 1333);
    cache.apply(&packet(&vectors::QUOTE), T0).unwrap();
    cache.apply(&Packet::Oi(Oi { instrument: eq, oi: 77 }), T0.plus_millis(5)).unwrap();
    let snap = cache.get(eq).unwrap();
    let q = snap.quote.unwrap();
    assert_eq!(snap.last.unwrap().ltp, Paise(100_050));
    assert_eq!(snap.last.unwrap().received_at, T0, "OI does not refresh the price's age");
    assert_eq!((q.ltq, q.atp, q.volume), (25, Paise(99_875), 1_234_567));
    assert_eq!((q.total_buy_qty, q.total_sell_qty), (310_000, 250_000));
    assert_eq!(
        (q.open, q.high, q.low, q.close),
        (Paise(99_500), Paise(100_400), Paise(99_250), Paise(99_025))
    );
    assert_eq!(snap.oi, Some(77));
}

#[test]
fn oi_alone_gives_a_snapshot_without_a_price() {
    let cache = TickCache::with_capacity(8);
    assert_eq!(cache.apply(&packet(&vectors::OI), T0), Ok(None));
    let snap = cache.get(FNO).unwrap();
    assert_eq!(snap.oi, Some(1_234_500));
    assert_eq!(snap.last, None);
    assert_eq!(cache.tick(FNO), None);
}

#[test]
fn full_sets_open_interest_and_best_level() {
    let cache = TickCache::with_capacity(8);
    cache.apply(&packet(&vectors::FULL), T0).unwrap();
    let snap = cache.get(FNO).unwrap();
    assert_eq!(snap.oi, Some(1_234_500));
    assert_eq!(
        snap.best,
        Some(BestLevel {
            bid_price: Paise(12340),
            bid_qty: 750,
            ask_price: Paise(12350),
            ask_qty: 525
        })
    );
    assert_eq!(snap.quote.unwrap().ltq, 75);
}

#[test]
fn prev_close_is_kept_apart_from_the_price() {
    let cache = TickCache::with_capacity(8);
    let nifty = InstrumentKey::new(Segment::IdxI, 13);
    cache.apply(&packet(&vectors::PREV_CLOSE), T0).unwrap();
    cache
        .apply(
            &Packet::PrevClose(PrevClose { instrument: nifty, prev_close: Paise(1), prev_oi: 0 }),
            T0,
        )
        .unwrap();
    assert_eq!(cache.get(nifty).unwrap().prev_close, Some(Paise(1)));
    assert_eq!(cache.ltp(nifty), None);
}

#[test]
fn packets_without_an_instrument_change_nothing() {
    let cache = TickCache::with_capacity(8);
    for bytes in [&vectors::MARKET_STATUS[..], &vectors::DISCONNECT_805[..]] {
        assert_eq!(cache.apply(&packet(bytes), T0), Ok(None));
    }
    assert!(cache.is_empty());
}

#[test]
fn later_ticks_replace_earlier_ones() {
    let cache = TickCache::with_capacity(8);
    for (i, p) in [10_000, 10_005, 9_995].into_iter().enumerate() {
        cache.apply(&Packet::Ticker(Ticker::new(FNO, Paise(p), 1_000 + i as u32)), T0).unwrap();
    }
    let snap = cache.get(FNO).unwrap();
    assert_eq!(snap.last.unwrap().ltp, Paise(9_995));
    assert_eq!(snap.updates, 3);
}

#[test]
fn a_full_table_refuses_new_instruments_but_keeps_updating_known_ones() {
    let cache = TickCache::with_capacity(3);
    let key = |i| InstrumentKey::new(Segment::NseFno, i);
    for i in 0..3 {
        cache.apply(&Packet::Ticker(Ticker::new(key(i), Paise(100), 0)), T0).unwrap();
    }
    assert_eq!(
        cache.apply(&Packet::Ticker(Ticker::new(key(99), Paise(100), 0)), T0),
        Err(CacheFull { instrument: key(99), capacity: 3 })
    );
    cache.apply(&Packet::Ticker(Ticker::new(key(1), Paise(250), 0)), T0).unwrap();
    assert_eq!(cache.ltp(key(1)), Some(Paise(250)));
    assert_eq!(cache.instruments(), vec![key(0), key(1), key(2)]);
    assert_eq!(cache.len(), 3);
}

#[test]
fn same_security_id_in_two_segments_are_two_instruments() {
    let cache = TickCache::with_capacity(8);
    let a = InstrumentKey::new(Segment::NseFno, 7);
    let b = InstrumentKey::new(Segment::BseFno, 7);
    cache.apply(&Packet::Ticker(Ticker::new(a, Paise(1), 0)), T0).unwrap();
    cache.apply(&Packet::Ticker(Ticker::new(b, Paise(2), 0)), T0).unwrap();
    assert_eq!((cache.ltp(a), cache.ltp(b)), (Some(Paise(1)), Some(Paise(2))));
}

/// A full packet whose every field is derived from `i`, so a torn read shows as a mismatch.
fn derived_full(key: InstrumentKey, i: u32) -> Packet {
    let Packet::Full(mut f) = packet(&vectors::FULL) else { unreachable!("vector is full") };
    f.instrument = key;
    f.ltp = Paise(i64::from(i));
    f.ltt = i;
    f.exchange_time = Timestamp::from_feed_ltt(i);
    f.ltq = i as u16;
    f.atp = Paise(i64::from(i) * 2);
    f.volume = i;
    f.oi = i.wrapping_mul(3);
    f.total_buy_qty = i;
    f.total_sell_qty = i + 1;
    f.open = Paise(i64::from(i) + 1);
    f.high = Paise(i64::from(i) + 2);
    f.low = Paise(i64::from(i) + 3);
    f.close = Paise(i64::from(i) + 4);
    f.depth[0].bid_price = Paise(i64::from(i) + 5);
    f.depth[0].ask_price = Paise(i64::from(i) + 6);
    f.depth[0].bid_qty = i;
    f.depth[0].ask_qty = i;
    Packet::Full(f)
}

fn assert_consistent(s: &TickSnapshot) {
    let i = s.last.unwrap().ltp.0;
    let q = s.quote.unwrap();
    let b = s.best.unwrap();
    assert_eq!(s.last.unwrap().exchange_time, Timestamp::from_feed_ltt(i as u32));
    assert_eq!(s.last.unwrap().received_at, Timestamp::from_millis(i));
    assert_eq!(q.ltq, i as u16);
    assert_eq!(q.atp.0, i * 2);
    assert_eq!(i64::from(q.volume), i);
    assert_eq!(s.oi, Some((i as u32).wrapping_mul(3)));
    assert_eq!((q.total_buy_qty, q.total_sell_qty), (i as u32, i as u32 + 1));
    assert_eq!((q.open.0, q.high.0, q.low.0, q.close.0), (i + 1, i + 2, i + 3, i + 4));
    assert_eq!(
        (b.bid_price.0, b.ask_price.0, b.bid_qty, b.ask_qty),
        (i + 5, i + 6, i as u32, i as u32)
    );
}

#[test]
fn concurrent_readers_never_see_a_torn_snapshot() {
    let cache = TickCache::with_capacity(16);
    let keys: Vec<InstrumentKey> = (0..4).map(|i| InstrumentKey::new(Segment::NseFno, i)).collect();
    for &k in &keys {
        cache.apply(&derived_full(k, 0), Timestamp::from_millis(0)).unwrap();
    }
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (cache, keys, done) = (cache.clone(), keys.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut last_seen = vec![0i64; keys.len()];
                while !done.load(Ordering::Acquire) || reads < 1000 {
                    for (j, &k) in keys.iter().enumerate() {
                        let s = cache.get(k).expect("pre-filled");
                        assert_consistent(&s);
                        let i = s.last.unwrap().ltp.0;
                        assert!(i >= last_seen[j], "values only move forward for one writer");
                        last_seen[j] = i;
                        reads += 1;
                    }
                }
                reads
            })
        })
        .collect();
    // Two writers, each owning half of the instruments; two writers on one slot are the next
    // test's subject.
    let writers: Vec<_> = [0usize, 1]
        .into_iter()
        .map(|w| {
            let (cache, keys) = (cache.clone(), keys.clone());
            std::thread::spawn(move || {
                for i in 1..=20_000u32 {
                    for k in keys.iter().skip(w).step_by(2) {
                        cache
                            .apply(&derived_full(*k, i), Timestamp::from_millis(i64::from(i)))
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer thread");
    }
    done.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().expect("reader thread") >= 1000);
    }
    for &k in &keys {
        assert_eq!(cache.ltp(k), Some(Paise(20_000)));
    }
}

#[test]
fn two_writers_on_one_instrument_exclude_each_other() {
    let cache = TickCache::with_capacity(4);
    let k = FNO;
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                for i in 1..=10_000u32 {
                    cache.apply(&derived_full(k, i), Timestamp::from_millis(i64::from(i))).unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let cache = cache.clone();
        std::thread::spawn(move || {
            for _ in 0..20_000 {
                if let Some(s) = cache.get(k) {
                    assert_consistent(&s);
                }
            }
        })
    };
    for w in writers {
        w.join().expect("writer thread");
    }
    reader.join().expect("reader thread");
    assert_eq!(cache.get(k).unwrap().updates, 20_000, "no update lost");
}

#[test]
fn concurrent_inserts_of_distinct_instruments_all_land() {
    let cache = TickCache::with_capacity(4000);
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                for i in 0..1000u32 {
                    let k = InstrumentKey::new(Segment::NseFno, t * 1000 + i);
                    cache
                        .apply(&Packet::Ticker(Ticker::new(k, Paise(i64::from(i)), 0)), T0)
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("insert thread");
    }
    assert_eq!(cache.len(), 4000);
    for t in 0..4u32 {
        for i in 0..1000u32 {
            let k = InstrumentKey::new(Segment::NseFno, t * 1000 + i);
            assert_eq!(cache.ltp(k), Some(Paise(i64::from(i))));
        }
    }
}
