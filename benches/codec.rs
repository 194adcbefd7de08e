//! Feed codec and tick cache costs.
//!
//! `decode_mix` splits and fully decodes a realistic stream (half ticker, 30 % quote, 20 % full
//! packets, 10 000 packets, ~560 KB) and reports packets/s and bytes/s; `header_walk` only
//! follows the length fields over the same bytes, the floor any decoder pays. `tick_cache_*`
//! measure one update (a decoded quote into a known instrument's slot) and one read.
//!
//! Run: `cargo bench --bench codec`.

use divan::counter::{BytesCount, ItemsCount};
use divan::{Bencher, black_box};
use scalper::domain::{InstrumentKey, Paise, Segment, Timestamp};
use scalper::feed::codec::{self, Packet, Quote, Ticker, decode_packet};
use scalper::feed::tick_cache::TickCache;
use scalper::feed::{Packets, vectors};

fn main() {
    divan::main();
}

const PACKETS: usize = 10_000;
const INSTRUMENTS: u32 = 200;

/// A deterministic stream: 50 % ticker, 30 % quote, 20 % full over 200 instruments.
fn mixed_stream() -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(7);
    let Ok(Packet::Quote(quote)) = decode_packet(&vectors::QUOTE) else { panic!("vector") };
    let Ok(Packet::Full(full)) = decode_packet(&vectors::FULL) else { panic!("vector") };
    let mut out = Vec::new();
    for _ in 0..PACKETS {
        let key = InstrumentKey::new(Segment::NseFno, 40_000 + rng.u32(0..INSTRUMENTS));
        let ltp = Paise(rng.i64(5_000..50_000) / 5 * 5);
        let ltt = 1_763_980_215 + rng.u32(0..22_500);
        let packet = match rng.u8(0..10) {
            0..=4 => Packet::Ticker(Ticker::new(key, ltp, ltt)),
            5..=7 => Packet::Quote(Quote { instrument: key, ltp, ltt, ..quote }),
            _ => Packet::Full(codec::Full { instrument: key, ltp, ltt, ..full }),
        };
        codec::encode(&packet, &mut out);
    }
    out
}

#[divan::bench]
fn decode_mix(bencher: Bencher) {
    let bytes = mixed_stream();
    bencher.counter(ItemsCount::new(PACKETS)).counter(BytesCount::new(bytes.len())).bench(|| {
        let mut sum = 0i64;
        for f in Packets::new(black_box(&bytes)).flatten() {
            if let Some((_, ltp, _)) = f.packet.last_trade() {
                sum += ltp.0;
            }
        }
        sum
    });
}

#[divan::bench]
fn header_walk(bencher: Bencher) {
    let bytes = mixed_stream();
    bencher.counter(ItemsCount::new(PACKETS)).counter(BytesCount::new(bytes.len())).bench(|| {
        let bytes = black_box(&bytes[..]);
        let (mut pos, mut n) = (0usize, 0usize);
        while let Some(h) = bytes.get(pos..pos + 3) {
            let len = usize::from(u16::from_le_bytes([h[1], h[2]]));
            if len < 8 {
                break;
            }
            pos += len;
            n += 1;
        }
        n
    });
}

#[divan::bench]
fn decode_one_full_packet(bencher: Bencher) {
    bencher.counter(ItemsCount::new(1usize)).bench(|| decode_packet(black_box(&vectors::FULL)));
}

#[divan::bench]
fn tick_cache_update(bencher: Bencher) {
    let cache = TickCache::with_capacity(5000);
    let Ok(packet) = decode_packet(&vectors::QUOTE) else { panic!("vector") };
    let now = Timestamp::from_millis(1_763_960_415_000);
    cache.apply(&packet, now).expect("room");
    bencher.bench(|| cache.apply(black_box(&packet), now));
}

#[divan::bench]
fn tick_cache_read(bencher: Bencher) {
    let cache = TickCache::with_capacity(5000);
    let now = Timestamp::from_millis(1_763_960_415_000);
    for id in 0..4000 {
        let key = InstrumentKey::new(Segment::NseFno, 40_000 + id);
        cache.apply(&Packet::Ticker(Ticker::new(key, Paise(10_000), 0)), now).expect("room");
    }
    let key = InstrumentKey::new(Segment::NseFno, 41_234);
    bencher.bench(|| cache.get(black_box(key)));
}

#[divan::bench]
fn tick_cache_read_ltp(bencher: Bencher) {
    let cache = TickCache::with_capacity(5000);
    let key = InstrumentKey::new(Segment::NseFno, 52175);
    let now = Timestamp::from_millis(1_763_960_415_000);
    cache.apply(&Packet::Ticker(Ticker::new(key, Paise(12345), 0)), now).expect("room");
    bencher.bench(|| cache.ltp(black_box(key)));
}
