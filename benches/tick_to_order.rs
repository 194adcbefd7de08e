//! Tick → order, end to end, as a trader sees it: from the moment the simulator's feed starts
//! writing a crossing ticker packet to its socket to the moment the simulator's REST side has
//! the whole exit request (`POST /v2/orders`), both instants on the same monotonic clock.
//!
//! The engine runs in live mode with every worker under a real supervisor (reader, exit
//! engine, order router, the live Dhan broker's workers), against the simulator's feed and
//! broker halves over loopback sockets. One exit at a time after a quiet feed: open a long at
//! 100.00 with a live entry order, wait until it is open and the engine is idle, then trade the
//! instrument at 98.00 (the default stop loss is 1.5 %) and wait for the exit's request. Run
//! twice: the order journal on tmpfs (`/dev/shm`, no disk flush) and on the data disk (the
//! target directory; the durable write included).
//!
//! The per-hop breakdown comes from the engine's own stamps (`runtime::hops`): socket read →
//! decoded → core decision → router dequeue → journal durable → first byte written, each as
//! the time since the feed's write.
//!
//! The goal with the journal on disk is relative to the disk itself: the run also measures the
//! disk's own durable write after idle, interleaved with the exits (after each exit, a pause as
//! long as the one before each exit's tick, then one `OrderJournal::record` into a journal of
//! its own in the same directory: the journal's method, preallocated file and `pwrite` under
//! `O_DSYNC`), and prints both p99s and their difference.
//!
//! Allocations: a counting global allocator counts, per hot thread (reader, exit engine, order
//! placers), the allocations between the crossing tick's socket read and the request's first
//! byte on the wire (`runtime::hops::counting`), reported per exit.
//!
//! Busy polling: a third run (journal on tmpfs) with `[host] busy_poll = true`, the reader,
//! the exit engine and the router pinned (on two cores the exit engine and the router share
//! one, yielding to each other).
//!
//! Rate limits are lifted on both sides (Dhan's 10 orders/s would otherwise pace the run); the
//! limiter's bookkeeping is still on the path. `cargo bench --bench tick_to_order` runs 1000
//! measured exits per journal location; under `cargo test` a smoke run of a few dozen checks
//! that it works.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
#[path = "live_engine/mod.rs"]
mod live_engine;

#[path = "support/micros.rs"]
mod micros;
use micros::{histogram, report};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use live_engine::*;
use scalper::broker::journal::OrderJournal;
use scalper::domain::{
    Clock, CorrelationId, ExitReason, InstrumentKey, OrderIntent, OrderPurpose, Paise, PositionId,
    Qty, Segment, SystemClock, Timestamp, Txn,
};
use scalper::runtime::hops::{self, Hop, HotThread};
use scalper::sim::broker::{FaultConfig, SimBrokerConfig};

/// Allocations of each hot thread (indexed by `HotThread as usize`) in the armed window.
static ALLOCATIONS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

#[inline]
fn count() {
    if let Some(role) = hops::counting() {
        ALLOCATIONS[role as usize].fetch_add(1, Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting(count);

/// Each hot thread's allocations since the last call.
fn take_allocations() -> [u64; 3] {
    HotThread::ALL.map(|r| ALLOCATIONS[r as usize].swap(0, Ordering::Relaxed))
}

struct Sizes {
    warmup: usize,
    exits: usize,
}

/// One measured exit: end to end and each hop, in µs after the feed's write.
struct Sample {
    total: u64,
    hops: [Option<u64>; 6],
    /// Allocations per hot thread between the socket read and the first byte.
    allocations: [u64; 3],
}

/// The pause before each exit's crossing tick (and before each bare durable write).
const QUIET: Duration = Duration::from_millis(5);

/// One durable journal write after `QUIET`, in µs.
fn durable_write_after_idle(journal: &OrderJournal, i: usize) -> u64 {
    let intent = OrderIntent {
        correlation_id: CorrelationId::new(format!("X{}-disk", i + 1)).expect("short id"),
        position_id: PositionId::new("disk"),
        instrument: InstrumentKey::new(Segment::NseFno, 52175),
        txn: Txn::Sell,
        quantity: Qty(75),
        purpose: OrderPurpose::Exit(ExitReason::StopLoss),
        reference_price: Paise(9800),
        price_is_stale: false,
        created_at: Timestamp(0),
        limit_price: None,
    };
    std::thread::sleep(QUIET);
    let t = Instant::now();
    journal.record(&intent, SystemClock.now()).expect("journal write");
    (t.elapsed().as_micros() as u64).max(1)
}

fn one_exit(sim: &LiveSim, e: &Engine) -> Sample {
    e.price(sim, A, "100.00");
    let id = e.open(A);
    // Quiet: the entry's own traffic (fill report, order-book poll) has settled.
    std::thread::sleep(QUIET);
    hops::reset();
    take_allocations();
    sim.prices.take_writes();
    e.clock.advance_millis(1);
    sim.prices.set_price(A, rupees("98.00"));
    let cid = format!("X1-{id}");
    wait_until(&format!("{id} closed"), || e.recorder.closed(&id).is_some());
    let stamps = hops::read();
    let allocations = take_allocations();
    let written = *sim.prices.take_writes().first().expect("the feed wrote the crossing tick");
    let arrived = sim
        .broker
        .received()
        .iter()
        .rev()
        .find(|r| r.method == "POST" && r.body.contains(&format!("\"correlationId\":\"{cid}\"")))
        .map(|r| r.at)
        .expect("the exit reached the simulator");
    let origin = hops::since_origin(written);
    let us = |ns: u64| (ns.saturating_sub(origin) / 1000).max(1);
    Sample {
        total: (arrived.saturating_duration_since(written).as_micros() as u64).max(1),
        hops: stamps.map(|s| s.map(us)),
        allocations,
    }
}

fn run(label: &str, journal_dir: &Path, host: &str, s: &Sizes) {
    let sim = LiveSim::start(SimBrokerConfig {
        transit: Duration::ZERO,
        fill_interval: Duration::from_millis(1),
        enforce_rate_limits: false,
        ..sim_config(FaultConfig::default())
    });
    sim.prices.record_writes(true);
    // The harness's capturing logger keeps every line it is given (an allocation each): at
    // warn, the counts are the engine's own, not the test logger's.
    log::set_max_level(log::LevelFilter::Warn);
    let e = Engine::start_with(&sim, journal_dir, host);
    let mut total = histogram();
    let mut per_hop: Vec<Histogram<u64>> = Hop::ALL.iter().map(|_| histogram()).collect();
    let disk_dir = journal_dir.join("durable-write");
    let disk = OrderJournal::open(&disk_dir, SystemClock.now()).expect("a journal of its own");
    let mut durable = histogram();
    let mut allocations = [(0u64, 0u64, u64::MAX); 3]; // (sum, max, min) per hot thread
    for i in 0..s.warmup + s.exits {
        let sample = one_exit(&sim, &e);
        let write = durable_write_after_idle(&disk, i);
        if i < s.warmup {
            continue;
        }
        durable.record(write).expect("in range");
        total.record(sample.total).expect("in range");
        for (a, n) in allocations.iter_mut().zip(sample.allocations) {
            *a = (a.0 + n, a.1.max(n), a.2.min(n));
        }
        for (h, v) in per_hop.iter_mut().zip(sample.hops) {
            let v = v.unwrap_or_else(|| panic!("every hop stamped: {:?}", sample.hops));
            h.record(v).expect("in range");
        }
    }
    println!("journal on {label} ({})", journal_dir.display());
    report("  tick written -> order request at the broker", &total);
    for (hop, h) in Hop::ALL.iter().zip(&per_hop) {
        report(&format!("    tick written -> {}", hop.name()), h);
    }
    report("  the journal's durable write alone, after idle", &durable);
    let (p99, disk_p99) = (total.value_at_quantile(0.99), durable.value_at_quantile(0.99));
    println!(
        "  p99 tick -> order {p99} µs = the durable write's p99 {disk_p99} µs {} {} µs (goal: at most + 250 µs)",
        if p99 >= disk_p99 { "+" } else { "-" },
        p99.abs_diff(disk_p99)
    );
    let n = s.exits.max(1) as f64;
    let per_exit: Vec<String> = HotThread::ALL
        .iter()
        .zip(allocations)
        .map(|(r, (sum, max, min))| {
            format!("{} {:.1} (min {min}, max {max})", r.name(), sum as f64 / n)
        })
        .collect();
    let all = allocations.iter().map(|a| a.0).sum::<u64>() as f64 / n;
    println!(
        "  allocations per exit, socket read -> first byte: {all:.1}; {}",
        per_exit.join(", ")
    );
    drop(e);
    sim.prices.record_writes(false);
    sim.shutdown();
}

/// `[host]` for the busy-polling run, and its pins in words: the reader, the exit engine and
/// the router each on a core of its own when there are four cores or more (core 0 left to the
/// rest), otherwise the reader on one core and the exit engine with the router on another.
fn busy_poll_host() -> Option<(String, String)> {
    let cores = scalper::runtime::host::core_count();
    let (reader, exit, router) = match cores {
        0 | 1 => return None,
        2 => (0, 1, 1),
        3 => (0, 1, 2),
        _ => (1, 2, 3),
    };
    let host = format!(
        "[host]\nbusy_poll = true\npin = {{ tick_reader = {reader}, exit_engine = {exit}, order_router = {router} }}\n"
    );
    let pins = format!("reader on core {reader}, exit engine on {exit}, router on {router}");
    Some((host, pins))
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let s = if full { Sizes { warmup: 50, exits: 1000 } } else { Sizes { warmup: 3, exits: 30 } };
    scalper::feed::reader::install_crypto_provider();
    hops::enable();
    println!(
        "tick -> order ({}): {} exits after {} warm-up per journal location, CPU {:?}, {} cores, load {}",
        if full { "full" } else { "smoke" },
        s.exits,
        s.warmup,
        cpu_model(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        load_average()
    );
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        let dir = tempfile::tempdir_in(shm).expect("a directory on tmpfs");
        run("tmpfs", dir.path(), "", &s);
        match busy_poll_host() {
            Some((host, pins)) => {
                let dir = tempfile::tempdir_in(shm).expect("a directory on tmpfs");
                run(&format!("tmpfs, busy polling ({pins})"), dir.path(), &host, &s);
            }
            None => println!("one core: the busy-polling run is skipped"),
        }
    } else {
        println!("no /dev/shm: the tmpfs runs are skipped");
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a directory on disk");
    run("the data disk", dir.path(), "", &s);
}
