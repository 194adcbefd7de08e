//! Feed throughput: the simulator's feed streams ticker packets as fast as the engine's reader
//! takes them, over loopback, into the engine in live mode (the real `tick_reader` worker: the
//! WebSocket, the splitter, the codec, the tick cache, and the position ticks handed to the
//! exit engine over their bounded, lossless channel).
//!
//! Two shapes: one packet per WebSocket message (as Dhan sends them) and ten packets stacked
//! per message. 100 instruments, one of them with an open position (one packet in twenty is
//! on it; its price never moves, so no exit fires). Reported per shape: the reader's sustained
//! packets per second (the whole burst from the feed's first write to the reader's last
//! decoded packet), that no position tick was lost (the reader handed every one over and the
//! exit engine evaluated every one), and the CPU the reader and the exit engine used,
//! scaled to a feed of 10 000 ticks/s (each thread's run time from the kernel's schedstat).
//!
//! `cargo bench --bench firehose` streams 2 000 000 packets per shape; under `cargo test` a
//! smoke run streams 20 000.

#[path = "live_engine/mod.rs"]
mod live_engine;

use std::time::{Duration, Instant};

use live_engine::*;
use scalper::domain::{InstrumentKey, Paise, Segment, Timestamp};
use scalper::feed::codec::{self, Packet, Ticker};
use scalper::sim::broker::{FaultConfig, SimBrokerConfig};
use scalper::sim::feed::Firehose;
use tungstenite::Bytes;

const INSTRUMENTS: u32 = 100;
/// One packet in this many is on the position's instrument.
const POSITION_EVERY: usize = 20;

/// One round of packets: `INSTRUMENTS × POSITION_EVERY / …` tickers, every `POSITION_EVERY`th
/// on `A` at its entry price, the others spread over the other instruments.
fn round() -> Vec<Vec<u8>> {
    let ltt = Timestamp(1_700_000_000_000).to_feed_ltt();
    (0..2_000usize)
        .map(|i| {
            let (instrument, ltp) = if i % POSITION_EVERY == 0 {
                (A, rupees("100.00"))
            } else {
                let id = 60_000 + (i as u32 % INSTRUMENTS);
                (InstrumentKey::new(Segment::NseFno, id), Paise(10_000 + (i as i64 % 50)))
            };
            let mut out = Vec::with_capacity(16);
            codec::encode(&Packet::Ticker(Ticker::new(instrument, ltp, ltt)), &mut out);
            out
        })
        .collect()
}

fn burst(per_message: usize, packets: u64) -> (Firehose, u64) {
    let packets_of_round = round();
    let messages: Vec<Bytes> =
        packets_of_round.chunks(per_message).map(|c| Bytes::from(c.concat())).collect();
    let rounds = (packets / packets_of_round.len() as u64).max(1);
    let position = (packets_of_round.len() / POSITION_EVERY) as u64 * rounds;
    (Firehose { messages, rounds }, position)
}

/// Nanoseconds of CPU each named thread of this process has run.
fn thread_cpu(names: &[&str]) -> Vec<u64> {
    let mut out = vec![0; names.len()];
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if let Some(i) = names.iter().position(|n| comm.trim() == *n) {
            let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            out[i] += stat.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    out
}

fn run(sim: &LiveSim, e: &Engine, label: &str, per_message: usize, packets: u64) {
    let (burst, position_ticks) = burst(per_message, packets);
    let total = burst.packets();
    let stats = &e.shared.feed_stats;
    let (packets0, handed0, evaluated0) =
        (stats.packets.get(), stats.position_ticks.get(), e.shared.m.ticks_evaluated.get());
    let threads = ["tick_reader", "exit_engine"];
    let cpu0 = thread_cpu(&threads);
    let started = Instant::now();
    sim.prices.firehose(burst);
    wait_until("the reader decoded the whole burst", || {
        let done = stats.packets.get() - packets0 >= total;
        if !done {
            std::thread::sleep(Duration::from_micros(500));
        }
        done
    });
    let took = started.elapsed();
    wait_until("the exit engine evaluated every position tick", || {
        e.shared.m.ticks_evaluated.get() - evaluated0 >= position_ticks
    });
    let cpu1 = thread_cpu(&threads);
    let handed = stats.position_ticks.get() - handed0;
    let evaluated = e.shared.m.ticks_evaluated.get() - evaluated0;
    assert_eq!(handed, position_ticks, "every position tick handed to the exit engine");
    assert_eq!(evaluated, position_ticks, "every position tick evaluated");
    let rate = total as f64 / took.as_secs_f64();
    println!(
        "{label:<36} {total} packets in {took:>10.3?}: {rate:>11.0} packets/s; position ticks {handed} sent, {evaluated} evaluated (0 lost)"
    );
    for (i, name) in threads.iter().enumerate() {
        let ns = cpu1[i].saturating_sub(cpu0[i]);
        // At 10 000 ticks/s a thread spends 10 000 × (its CPU per packet) each second.
        let share = ns as f64 / total as f64 * 10_000.0 / 1e9 * 100.0;
        println!(
            "    {name:<12} CPU {:>9.3} ms ({:>6.0} ns per packet): {share:.2} % of a core at 10 000 ticks/s",
            ns as f64 / 1e6,
            ns as f64 / total as f64
        );
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let packets = if full { 2_000_000 } else { 20_000 };
    scalper::feed::reader::install_crypto_provider();
    println!(
        "firehose ({}): {packets} ticker packets per shape, CPU {:?}, {} cores, load {}",
        if full { "full" } else { "smoke" },
        cpu_model(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        load_average()
    );
    let sim = LiveSim::start(SimBrokerConfig {
        transit: Duration::ZERO,
        fill_interval: Duration::from_millis(1),
        enforce_rate_limits: false,
        ..sim_config(FaultConfig::default())
    });
    let journal = tempfile::tempdir().expect("a journal directory");
    let e = Engine::start(&sim, journal.path());
    e.price(&sim, A, "100.00");
    e.open(A);
    run(&sim, &e, "one packet per message", 1, packets);
    run(&sim, &e, "ten packets per message", 10, packets);
    drop(e);
    sim.shutdown();
}
