//! Tick → decision latency of the exit core: from a tick arriving at `ExitCore::on_tick` to
//! the call returning with its events (an exit intent when a rule fires), as a distribution in
//! nanoseconds.
//!
//! Load: 1000 instruments, 50 open positions (default rules, account rules on), a tick stream
//! where four ticks in five are for instruments without a position, prices random-walking in
//! ₹0.05 steps with occasional jumps so that rules keep firing. Every exit is filled at once
//! and the instrument re-armed with a fresh position at the current price, outside the timed
//! section, so the run keeps producing decisions.
//!
//! `cargo bench --bench tick_to_decision` runs the full stream; without `--bench` (as under
//! `cargo test --all-targets`) it runs a short smoke pass.

use std::hint::black_box;
use std::time::Instant;

use hdrhistogram::Histogram;
use scalper::domain::{InstrumentKey, Paise, PositionId, Qty, Segment, Side, Tick, Timestamp};
use scalper::exec::{CoreEvent, CoreParams, ExitCore, NewPosition};
use scalper::risk::position::Origin;
use scalper::risk::{Limits, TradingCell};

const INSTRUMENTS: usize = 1000;
const POSITIONS: usize = 50;
const QUANTITY: i64 = 75;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (warmup, measured) = if full { (200_000, 3_000_000) } else { (1_000, 20_000) };

    let start = Timestamp::parse("2025-11-24T09:20:00+05:30").expect("a valid time");
    let params = CoreParams {
        // The account rules run on every tick; a limit this large never fires.
        limits: Limits { max_daily_loss: Paise(1_000_000_000_000), ..Limits::default() },
        ..CoreParams::default()
    };
    let mut core = ExitCore::new(params, TradingCell::active(start));
    core.on_clock(start);
    let instruments: Vec<InstrumentKey> =
        (0..INSTRUMENTS).map(|i| InstrumentKey::new(Segment::NseFno, 40_000 + i as u32)).collect();
    let mut prices = vec![10_000i64; INSTRUMENTS];
    let mut next_id = 0u64;
    for (i, key) in instruments.iter().enumerate().take(POSITIONS) {
        open(&mut core, &mut next_id, *key, i, Paise(prices[i]), start);
    }

    let mut rng = fastrand::Rng::with_seed(7);
    let mut all = histogram();
    let mut on_positions = histogram();
    let mut decisions = histogram();
    let mut now = start;
    for n in 0..(warmup + measured) {
        // Four ticks in five for instruments without a position.
        let i = if rng.u8(0..5) == 0 {
            rng.usize(0..POSITIONS)
        } else {
            rng.usize(POSITIONS..INSTRUMENTS)
        };
        let step = if rng.u16(0..500) == 0 { rng.i64(-160..=160) } else { rng.i64(-3..=3) };
        prices[i] = (prices[i] + step * 5).max(500);
        if n % 5 == 0 {
            now = now.plus_millis(1);
        }
        let tick = Tick::at(instruments[i], Paise(prices[i]), now);

        let t0 = Instant::now();
        let events = core.on_tick(black_box(&tick));
        let ns = t0.elapsed().as_nanos() as u64;

        let fired = events.iter().any(|e| matches!(e, CoreEvent::ExitIntent(_)));
        if n >= warmup {
            all.record(ns).expect("within bounds");
            if i < POSITIONS {
                on_positions.record(ns).expect("within bounds");
            }
            if fired {
                decisions.record(ns).expect("within bounds");
            }
        }
        for e in &events {
            if let CoreEvent::ExitIntent(x) = e {
                core.on_exit_filled(&x.correlation_id, x.reference_price, x.quantity, now)
                    .expect("the exit just started");
                let slot = (x.instrument.security_id.0 - 40_000) as usize;
                open(&mut core, &mut next_id, x.instrument, slot, Paise(prices[slot]), now);
            }
        }
    }

    let timer = timer_overhead();
    println!(
        "tick → decision (ExitCore::on_tick), {INSTRUMENTS} instruments, {POSITIONS} open positions"
    );
    println!(
        "{measured} measured ticks after {warmup} warm-up; Instant::now() pair overhead ≈ {timer} ns (included)"
    );
    report("all ticks", &all);
    report("ticks on position instruments", &on_positions);
    report("ticks that emitted an exit intent", &decisions);
}

fn open(
    core: &mut ExitCore,
    next_id: &mut u64,
    instrument: InstrumentKey,
    i: usize,
    price: Paise,
    at: Timestamp,
) {
    *next_id += 1;
    let new = NewPosition {
        id: PositionId::new(format!("b{next_id}")),
        instrument,
        side: if i.is_multiple_of(2) { Side::Long } else { Side::Short },
        quantity: Qty(QUANTITY),
        entry_price: price,
        opened_at: at,
    };
    core.open_position(new, Origin::Adopted).expect("a fresh id");
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

fn timer_overhead() -> u64 {
    let mut h = histogram();
    for _ in 0..100_000 {
        let t0 = Instant::now();
        let ns = black_box(t0).elapsed().as_nanos() as u64;
        h.record(ns.max(1)).expect("within bounds");
    }
    h.value_at_quantile(0.5)
}

fn report(name: &str, h: &Histogram<u64>) {
    println!(
        "{name:>36}: n={:>8}  p50={:>6} ns  p99={:>6} ns  p99.9={:>7} ns  max={:>8} ns",
        h.len(),
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
}
