//! The latest market data of every instrument: LTP with exchange and local receive time, plus
//! the quote statistics, open interest, best bid/ask and previous close when the subscription
//! mode delivers them. Written by the tick reader; read by the exit engine, the PnL refresher,
//! heartbeat, status and HTTP threads.
//!
//! Design (no lock anywhere, reads never block the writer):
//! * A fixed-capacity, insert-only open-addressing table, sized when the engine starts (twice the
//!   instrument capacity, so probes stay short). A slot's key is claimed once with a
//!   compare-and-swap and never removed, so a lookup is a hash and a few atomic loads.
//! * Each slot is a *seqlock* over sixteen `AtomicU64` words: a writer makes the sequence odd
//!   (by compare-and-swap, so two writers on one slot exclude each other), stores the words and
//!   makes it even again; a reader copies the words between two reads of the sequence and
//!   retries if they differ or are odd. Every word is an atomic, so there is no data race and no
//!   `unsafe`; a torn copy is detected and retried, never returned.
//! * When the table is full, updates of a new instrument are refused with [`CacheFull`] (the
//!   reader counts them); known instruments keep updating.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};

use crate::domain::{InstrumentKey, Mono, Paise, SecurityId, Segment, Tick, TickSource, Timestamp};
use crate::feed::codec::{DepthLevel, Packet};

const WORDS: usize = 17;

const W_LTP: usize = 0;
const W_EXCH_TIME: usize = 1;
const W_RECV_TIME: usize = 2;
/// Flags in bits 0..8, LTQ in bits 16..32.
const W_FLAGS_LTQ: usize = 3;
const W_ATP: usize = 4;
/// Volume low, OI high.
const W_VOLUME_OI: usize = 5;
/// Total buy low, total sell high.
const W_BUY_SELL: usize = 6;
const W_OPEN: usize = 7;
const W_HIGH: usize = 8;
const W_LOW: usize = 9;
const W_CLOSE: usize = 10;
const W_BID: usize = 11;
const W_ASK: usize = 12;
/// Best bid quantity low, best ask quantity high.
const W_BID_ASK_QTY: usize = 13;
const W_PREV_CLOSE: usize = 14;
const W_UPDATES: usize = 15;
const W_RECV_MONO: usize = 16;

const HAS_LTP: u64 = 1;
const HAS_QUOTE: u64 = 2;
const HAS_OI: u64 = 4;
const HAS_DEPTH: u64 = 8;
const HAS_PREV_CLOSE: u64 = 16;

/// The table cannot take another instrument.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("tick cache is full ({capacity} instruments): cannot track {instrument}")]
pub struct CacheFull {
    pub instrument: InstrumentKey,
    pub capacity: usize,
}

/// The last trade of an instrument.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LastTrade {
    pub ltp: Paise,
    /// From the feed's LTT (true UTC).
    pub exchange_time: Timestamp,
    /// When the engine received the packet (local wall clock).
    pub received_at: Timestamp,
    /// When the engine received the packet (monotonic): ages are measured on this.
    pub received_mono: Mono,
}

/// Day statistics from quote or full packets.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct QuoteStats {
    pub ltq: u16,
    pub atp: Paise,
    pub volume: u32,
    pub total_buy_qty: u32,
    pub total_sell_qty: u32,
    pub open: Paise,
    pub high: Paise,
    pub low: Paise,
    /// Previous session's close as carried by quote/full packets.
    pub close: Paise,
}

/// Best level of the book (full mode only).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BestLevel {
    pub bid_price: Paise,
    pub bid_qty: u32,
    pub ask_price: Paise,
    pub ask_qty: u32,
}

/// Everything the cache knows about one instrument, copied out consistently.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TickSnapshot {
    pub instrument: InstrumentKey,
    pub last: Option<LastTrade>,
    pub quote: Option<QuoteStats>,
    pub oi: Option<u32>,
    pub best: Option<BestLevel>,
    /// From a prev-close packet (code 6; indices).
    pub prev_close: Option<Paise>,
    /// Number of LTP updates seen.
    pub updates: u64,
}

impl TickSnapshot {
    /// The last trade as the exit engine's [`Tick`].
    pub fn tick(&self) -> Option<Tick> {
        self.last.map(|l| Tick {
            instrument: self.instrument,
            ltp: l.ltp,
            exchange_time: l.exchange_time,
            received_at: l.received_at,
            received_mono: l.received_mono,
            source: TickSource::Feed,
        })
    }
}

#[repr(align(64))]
#[derive(Default)]
struct Slot {
    seq: AtomicU64,
    words: [AtomicU64; WORDS],
}

impl Slot {
    fn read(&self) -> [u64; WORDS] {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let words = std::array::from_fn(|i| self.words[i].load(Ordering::Relaxed));
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                return words;
            }
        }
    }

    /// Runs `f` on the current words under the write side of the seqlock and publishes the
    /// result.
    fn write(&self, f: impl FnOnce(&mut [u64; WORDS])) {
        let mut s = self.seq.load(Ordering::Relaxed);
        loop {
            if s & 1 == 1 {
                std::hint::spin_loop();
                s = self.seq.load(Ordering::Relaxed);
                continue;
            }
            match self.seq.compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break,
                Err(current) => s = current,
            }
        }
        fence(Ordering::Release);
        // This thread holds the slot exclusively: relaxed loads see the last published words.
        let mut words: [u64; WORDS] =
            std::array::from_fn(|i| self.words[i].load(Ordering::Relaxed));
        f(&mut words);
        for (cell, w) in self.words.iter().zip(words) {
            cell.store(w, Ordering::Relaxed);
        }
        self.seq.store(s + 2, Ordering::Release);
    }
}

struct Table {
    /// 0 = empty; otherwise [`encode_key`].
    keys: Box<[AtomicU64]>,
    slots: Box<[Slot]>,
    mask: usize,
    capacity: usize,
    len: AtomicUsize,
}

/// Shared, cheap to clone. See the module doc.
#[derive(Clone)]
pub struct TickCache(Arc<Table>);

impl std::fmt::Debug for TickCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TickCache")
            .field("instruments", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

fn encode_key(k: InstrumentKey) -> u64 {
    (1 << 40) | (u64::from(k.segment.code()) << 32) | u64::from(k.security_id.0)
}

fn decode_key(v: u64) -> Option<InstrumentKey> {
    let segment = Segment::from_code(((v >> 32) & 0xFF) as u8)?;
    Some(InstrumentKey { segment, security_id: SecurityId(v as u32) })
}

fn hash(v: u64) -> usize {
    // Fibonacci hashing, folded so the low bits (the table index) depend on every key bit.
    let x = v.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x ^ (x >> 29)) as usize
}

fn paise(w: u64) -> Paise {
    Paise(w as i64)
}

fn lo(w: u64) -> u32 {
    w as u32
}

fn hi(w: u64) -> u32 {
    (w >> 32) as u32
}

fn pack(lo: u32, hi: u32) -> u64 {
    u64::from(lo) | (u64::from(hi) << 32)
}

impl TickCache {
    /// Room for `capacity` instruments (a Dhan connection carries at most 5000).
    pub fn with_capacity(capacity: usize) -> TickCache {
        let capacity = capacity.max(1);
        let size = (capacity * 2).next_power_of_two();
        TickCache(Arc::new(Table {
            keys: (0..size).map(|_| AtomicU64::new(0)).collect(),
            slots: (0..size).map(|_| Slot::default()).collect(),
            mask: size - 1,
            capacity,
            len: AtomicUsize::new(0),
        }))
    }

    pub fn capacity(&self) -> usize {
        self.0.capacity
    }

    /// Instruments with a slot.
    pub fn len(&self) -> usize {
        self.0.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn find(&self, key: InstrumentKey) -> Option<&Slot> {
        let t = &*self.0;
        let k = encode_key(key);
        let mut i = hash(k) & t.mask;
        for _ in 0..=t.mask {
            match t.keys[i].load(Ordering::Acquire) {
                0 => return None,
                v if v == k => return Some(&t.slots[i]),
                _ => i = (i + 1) & t.mask,
            }
        }
        None
    }

    fn find_or_insert(&self, key: InstrumentKey) -> Result<&Slot, CacheFull> {
        let t = &*self.0;
        let k = encode_key(key);
        let mut i = hash(k) & t.mask;
        for _ in 0..=t.mask {
            match t.keys[i].load(Ordering::Acquire) {
                v if v == k => return Ok(&t.slots[i]),
                0 => {
                    // Reserve room first so the table never passes half full.
                    let reserved = t
                        .len
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                            (n < t.capacity).then_some(n + 1)
                        })
                        .is_ok();
                    if !reserved {
                        return Err(CacheFull { instrument: key, capacity: t.capacity });
                    }
                    match t.keys[i].compare_exchange(0, k, Ordering::AcqRel, Ordering::Acquire) {
                        Ok(_) => return Ok(&t.slots[i]),
                        Err(other) => {
                            t.len.fetch_sub(1, Ordering::AcqRel);
                            if other == k {
                                return Ok(&t.slots[i]);
                            }
                            i = (i + 1) & t.mask;
                        }
                    }
                }
                _ => i = (i + 1) & t.mask,
            }
        }
        Err(CacheFull { instrument: key, capacity: t.capacity })
    }

    /// [`TickCache::apply_at`] on a virtual clock whose monotonic reading is its wall time
    /// (tests, benchmarks).
    pub fn apply(
        &self,
        packet: &Packet,
        received_at: Timestamp,
    ) -> Result<Option<Tick>, CacheFull> {
        self.apply_at(packet, received_at, Mono::of_wall(received_at))
    }

    /// Records what `packet` says about its instrument, received at `received_at` (wall) and
    /// `received_mono` (monotonic). Returns the resulting [`Tick`] when the packet carries a
    /// last traded price (ticker, quote, full).
    pub fn apply_at(
        &self,
        packet: &Packet,
        received_at: Timestamp,
        received_mono: Mono,
    ) -> Result<Option<Tick>, CacheFull> {
        let Some(instrument) = packet.instrument() else { return Ok(None) };
        let slot = self.find_or_insert(instrument)?;
        let received = (received_at, received_mono);
        slot.write(|w| apply_words(w, packet, received));
        Ok(packet.last_trade().map(|(instrument, ltp, exchange_time)| Tick {
            instrument,
            ltp,
            exchange_time,
            received_at,
            received_mono,
            source: TickSource::Feed,
        }))
    }

    /// Sets the last trade directly (tests, replay, the paper broker's own fills).
    pub fn set_last(&self, tick: &Tick) -> Result<(), CacheFull> {
        let slot = self.find_or_insert(tick.instrument)?;
        let received = (tick.received_at, tick.received_mono);
        slot.write(|w| set_last_words(w, tick.ltp, tick.exchange_time, received, None));
        Ok(())
    }

    /// Everything known about `key`, or `None` if nothing was received for it yet.
    pub fn get(&self, key: InstrumentKey) -> Option<TickSnapshot> {
        let words = self.find(key)?.read();
        snapshot(key, &words)
    }

    /// The last trade of `key` as a [`Tick`].
    pub fn tick(&self, key: InstrumentKey) -> Option<Tick> {
        self.get(key).and_then(|s| s.tick())
    }

    /// The last traded price of `key`.
    pub fn ltp(&self, key: InstrumentKey) -> Option<Paise> {
        self.get(key).and_then(|s| s.last).map(|l| l.ltp)
    }

    /// Every instrument with data, in key order.
    pub fn instruments(&self) -> Vec<InstrumentKey> {
        let mut v: Vec<InstrumentKey> = self
            .0
            .keys
            .iter()
            .zip(self.0.slots.iter())
            .filter_map(|(k, slot)| {
                let key = decode_key(k.load(Ordering::Acquire))?;
                snapshot(key, &slot.read()).map(|_| key)
            })
            .collect();
        v.sort();
        v
    }
}

fn set_last_words(
    w: &mut [u64; WORDS],
    ltp: Paise,
    exchange_time: Timestamp,
    (received_at, received_mono): (Timestamp, Mono),
    ltq: Option<u16>,
) {
    w[W_LTP] = ltp.0 as u64;
    w[W_EXCH_TIME] = exchange_time.millis() as u64;
    w[W_RECV_TIME] = received_at.millis() as u64;
    w[W_RECV_MONO] = received_mono.0 as u64;
    let mut flags_ltq = w[W_FLAGS_LTQ] | HAS_LTP;
    if let Some(q) = ltq {
        flags_ltq = (flags_ltq & !(0xFFFF << 16)) | (u64::from(q) << 16);
    }
    w[W_FLAGS_LTQ] = flags_ltq;
    w[W_UPDATES] += 1;
}

fn set_quote_words(
    w: &mut [u64; WORDS],
    atp: Paise,
    volume: u32,
    buy: u32,
    sell: u32,
    ohlc: [Paise; 4],
) {
    w[W_ATP] = atp.0 as u64;
    w[W_VOLUME_OI] = pack(volume, hi(w[W_VOLUME_OI]));
    w[W_BUY_SELL] = pack(buy, sell);
    w[W_OPEN] = ohlc[0].0 as u64;
    w[W_HIGH] = ohlc[1].0 as u64;
    w[W_LOW] = ohlc[2].0 as u64;
    w[W_CLOSE] = ohlc[3].0 as u64;
    w[W_FLAGS_LTQ] |= HAS_QUOTE;
}

fn set_oi_words(w: &mut [u64; WORDS], oi: u32) {
    w[W_VOLUME_OI] = pack(lo(w[W_VOLUME_OI]), oi);
    w[W_FLAGS_LTQ] |= HAS_OI;
}

fn set_best_words(w: &mut [u64; WORDS], best: &DepthLevel) {
    w[W_BID] = best.bid_price.0 as u64;
    w[W_ASK] = best.ask_price.0 as u64;
    w[W_BID_ASK_QTY] = pack(best.bid_qty, best.ask_qty);
    w[W_FLAGS_LTQ] |= HAS_DEPTH;
}

fn apply_words(w: &mut [u64; WORDS], packet: &Packet, received_at: (Timestamp, Mono)) {
    match packet {
        Packet::Ticker(t) => set_last_words(w, t.ltp, t.exchange_time, received_at, None),
        Packet::Quote(q) => {
            set_last_words(w, q.ltp, q.exchange_time, received_at, Some(q.ltq));
            set_quote_words(
                w,
                q.atp,
                q.volume,
                q.total_buy_qty,
                q.total_sell_qty,
                [q.open, q.high, q.low, q.close],
            );
        }
        Packet::Full(f) => {
            set_last_words(w, f.ltp, f.exchange_time, received_at, Some(f.ltq));
            set_quote_words(
                w,
                f.atp,
                f.volume,
                f.total_buy_qty,
                f.total_sell_qty,
                [f.open, f.high, f.low, f.close],
            );
            set_oi_words(w, f.oi);
            set_best_words(w, &f.depth[0]);
        }
        Packet::Oi(o) => set_oi_words(w, o.oi),
        Packet::PrevClose(p) => {
            w[W_PREV_CLOSE] = p.prev_close.0 as u64;
            w[W_FLAGS_LTQ] |= HAS_PREV_CLOSE;
        }
        Packet::MarketStatus(_) | Packet::Disconnect(_) | Packet::Unknown(_) => {}
    }
}

fn snapshot(instrument: InstrumentKey, w: &[u64; WORDS]) -> Option<TickSnapshot> {
    let flags = w[W_FLAGS_LTQ] & 0xFF;
    if flags == 0 {
        return None;
    }
    let ltq = ((w[W_FLAGS_LTQ] >> 16) & 0xFFFF) as u16;
    Some(TickSnapshot {
        instrument,
        last: (flags & HAS_LTP != 0).then(|| LastTrade {
            ltp: paise(w[W_LTP]),
            exchange_time: Timestamp::from_millis(w[W_EXCH_TIME] as i64),
            received_at: Timestamp::from_millis(w[W_RECV_TIME] as i64),
            received_mono: Mono(w[W_RECV_MONO] as i64),
        }),
        quote: (flags & HAS_QUOTE != 0).then(|| QuoteStats {
            ltq,
            atp: paise(w[W_ATP]),
            volume: lo(w[W_VOLUME_OI]),
            total_buy_qty: lo(w[W_BUY_SELL]),
            total_sell_qty: hi(w[W_BUY_SELL]),
            open: paise(w[W_OPEN]),
            high: paise(w[W_HIGH]),
            low: paise(w[W_LOW]),
            close: paise(w[W_CLOSE]),
        }),
        oi: (flags & HAS_OI != 0).then(|| hi(w[W_VOLUME_OI])),
        best: (flags & HAS_DEPTH != 0).then(|| BestLevel {
            bid_price: paise(w[W_BID]),
            bid_qty: lo(w[W_BID_ASK_QTY]),
            ask_price: paise(w[W_ASK]),
            ask_qty: hi(w[W_BID_ASK_QTY]),
        }),
        prev_close: (flags & HAS_PREV_CLOSE != 0).then(|| paise(w[W_PREV_CLOSE])),
        updates: w[W_UPDATES],
    })
}

#[cfg(test)]
mod tests;
