//! Store benchmarks: what recording an event costs the hot path (the queue alone, and the
//! engine's store sink that maps an engine event and enqueues it), and how many events per
//! second the write-behind worker persists to SQLite and to PostgreSQL with a realistic mix.
//!
//! `cargo bench --bench store` runs the full measurement; under `cargo test` (no `--bench`
//! argument) it runs a small smoke pass. The PostgreSQL part needs `DATABASE_URL` (it uses a
//! schema of its own and drops it) and is skipped with a note when it is unset.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use scalper::domain::{
    CorrelationId, ExitReason, InstrumentKey, OrderId, OrderPurpose, Paise, PositionId, Qty,
    Segment, Side, Timestamp, Txn,
};
use scalper::ops::health::HealthBoard;
use scalper::ops::metrics::Metrics;
use scalper::runtime::{Worker, WorkerCtx};
use scalper::store::postgres::{PgOptions, PgStore};
use scalper::store::sqlite::SqliteStore;
use scalper::store::*;

struct Sizes {
    enqueue: usize,
    write: usize,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full {
        Sizes { enqueue: 2_000_000, write: 100_000 }
    } else {
        Sizes { enqueue: 10_000, write: 2_000 }
    };
    println!("store benchmarks ({})", if full { "full" } else { "smoke" });
    bench_enqueue(&sizes);
    bench_sink(&sizes);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("bench.db");
    let connector: Connector =
        Arc::new(move || SqliteStore::open(&db).map(|s| Box::new(s) as Box<dyn Store>));
    bench_write("sqlite (WAL, synchronous=FULL)", connector, &sizes, &dir);
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let schema = format!("bench_{}", std::process::id());
            let opts = PgOptions { schema: Some(schema.clone()), ..PgOptions::default() };
            let (u, o) = (url.clone(), opts.clone());
            let connector: Connector =
                Arc::new(move || PgStore::connect(&u, &o).map(|s| Box::new(s) as Box<dyn Store>));
            bench_write("postgres", connector, &sizes, &dir);
            drop_schema(&url, &schema);
        }
        _ => println!(
            "postgres: skipped (DATABASE_URL is not set; run `scripts/with-test-services cargo bench --bench store`)"
        ),
    }
}

fn drop_schema(url: &str, schema: &str) {
    if let Ok(cfg) = scalper::store::postgres::config(url, &PgOptions::default())
        && let Ok(mut c) = cfg.connect(::postgres::NoTls)
    {
        let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
    }
}

fn instrument() -> InstrumentKey {
    InstrumentKey::new(Segment::NseFno, 52175)
}

/// The events of one round trip: an entry, marks while it is open, an exit, the day's totals,
/// now and then an audit line. Per 20 events: 11 marks, 1 position upsert at entry and 1 at
/// exit, 2 orders, 4 status changes, 2 fills... roughly what a live position produces with
/// throttled marks.
fn round_trip(n: u64) -> Vec<EventKind> {
    let pid = PositionId::new(format!("p{n}"));
    let now = Timestamp(1_763_960_415_000 + n as i64 * 1_000);
    let entry_cid = CorrelationId::new(format!("E-{n}")).expect("valid");
    let exit_cid = CorrelationId::new(format!("X-{n}")).expect("valid");
    let pos = PositionRecord::opened(
        pid.clone(),
        instrument(),
        Side::Long,
        Qty(75),
        Paise(10_000),
        now,
        PositionSource::Entry,
    );
    let order = |cid: &CorrelationId, purpose, txn| OrderRecord {
        correlation_id: cid.clone(),
        broker_order_id: None,
        position_id: pid.clone(),
        instrument: instrument(),
        txn,
        quantity: Qty(75),
        purpose,
        status: OrderStatus::Created,
        created_at: now,
        updated_at: now,
        limit_price: None,
    };
    let status = |cid: &CorrelationId, status| OrderStatusChange {
        correlation_id: cid.clone(),
        status,
        broker_order_id: Some(OrderId(format!("9{n}"))),
        at: now,
        detail: None,
    };
    let fill = |cid: &CorrelationId, trade: String, txn, price| FillRecord {
        trade_id: trade,
        correlation_id: cid.clone(),
        order_id: OrderId(format!("9{n}")),
        instrument: instrument(),
        txn,
        quantity: Qty(75),
        price: Paise(price),
        value: None,
        at: now,
    };
    let mut out = vec![
        EventKind::OrderPlaced(order(&entry_cid, OrderPurpose::Entry, Txn::Buy)),
        EventKind::OrderStatus(status(&entry_cid, OrderStatus::Transit)),
        EventKind::OrderStatus(status(&entry_cid, OrderStatus::Traded)),
        EventKind::Fill(fill(&entry_cid, format!("TE{n}"), Txn::Buy, 10_000)),
        EventKind::PositionUpsert(pos.clone()),
    ];
    for i in 0..11 {
        out.push(EventKind::PositionMark(PositionMark {
            id: pid.clone(),
            best_price: Paise(10_000 + i * 100),
            hwm_pnl: Paise(i * 7_500),
            ratchet_stop: (i > 5).then_some(Paise(9_500)),
            last_price: Paise(10_000 + i * 100),
            last_price_at: Some(now),
            updated_at: now,
        }));
    }
    out.push(EventKind::OrderPlaced(order(
        &exit_cid,
        OrderPurpose::Exit(ExitReason::TakeProfit),
        Txn::Sell,
    )));
    out.push(EventKind::OrderStatus(status(&exit_cid, OrderStatus::Traded)));
    out.push(EventKind::Fill(fill(&exit_cid, format!("TX{n}"), Txn::Sell, 12_000)));
    out.push(EventKind::PositionUpsert(PositionRecord {
        state: PositionState::Exited,
        exit_reason: Some(ExitReason::TakeProfit),
        exit_price: Some(Paise(12_000)),
        exited_at: Some(now),
        ..pos
    }));
    out.push(EventKind::TradeClosed(ClosedTradeRecord {
        position_id: pid,
        instrument: instrument(),
        side: Side::Long,
        reason: ExitReason::TakeProfit,
        entry_price: Paise(10_000),
        exit_price: Paise(12_000),
        quantity: Qty(75),
        gross: Paise(150_000),
        charges: Paise(6_328),
        net: Paise(143_672),
        closed_at: now,
    }));
    out.push(EventKind::DailyPnl(DailyPnlRecord {
        trading_day: now.ist_date(),
        realised_net: Paise(143_672 * (n as i64 + 1)),
        charges: Paise(6_328 * (n as i64 + 1)),
        trade_count: n as u32 + 1,
        updated_at: now,
    }));
    if n.is_multiple_of(10) {
        out.push(EventKind::Audit(AuditRecord {
            at: now,
            actor: Actor::Engine,
            action: "entry".into(),
            detail: format!("{{\"position\":\"p{n}\"}}"),
        }));
    }
    out
}

fn mix(total: usize) -> Vec<EventKind> {
    let mut out = Vec::with_capacity(total + 32);
    let mut n = 0;
    while out.len() < total {
        out.extend(round_trip(n));
        n += 1;
    }
    out.truncate(total);
    out
}

fn print_hist(label: &str, h: &Histogram<u64>) {
    println!(
        "  {label}: p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns ({} samples)",
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        h.len()
    );
}

/// The hot path: `StoreHandle::record` with a consumer draining the queue between runs of 1000
/// events (the normal case: the channel has room),
/// and with no consumer so that the channel is full and every event goes to the overflow
/// buffer (the emergency path, buffer growth included).
fn bench_enqueue(sizes: &Sizes) {
    let kinds = mix(1_000);
    println!("enqueue (StoreHandle::record), realistic event mix:");
    for (label, capacity, drain, total) in [
        ("queue with a consumer", 65_536, true, sizes.enqueue),
        ("channel full, overflow buffer", 1, false, sizes.enqueue / 10),
    ] {
        let (handle, inbox) = queue(capacity);
        let stop = Arc::new(AtomicBool::new(false));
        let consumer = drain.then(|| {
            let (inbox, stop) = (inbox.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut sink = Vec::with_capacity(4096);
                while !stop.load(Ordering::Acquire) {
                    inbox.take_ready(4096, &mut sink);
                    sink.clear();
                    std::thread::yield_now();
                }
            })
        });
        // Per-event mean over runs of 1000 calls, and single calls timed one by one
        // (Instant::now, ~20 ns, included). Events are cloned before the clock starts: the
        // caller owns the event it records.
        let mut runs = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
        let mut calls = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
        let mut spent = Duration::ZERO;
        for round in 0..total / kinds.len() {
            // With a consumer, start each run with an empty queue (as when events come at the
            // engine's pace), so that this case measures the channel path, not the overflow.
            while drain && handle.depth() > 0 {
                std::thread::yield_now();
            }
            let batch = kinds.clone();
            if round % 2 == 0 {
                let t = Instant::now();
                for kind in batch {
                    handle.record(kind);
                }
                let took = t.elapsed();
                spent += took;
                runs.record((took.as_nanos() / kinds.len() as u128) as u64).ok();
            } else {
                for kind in batch {
                    let t = Instant::now();
                    handle.record(kind);
                    calls.record(t.elapsed().as_nanos() as u64).ok();
                }
            }
        }
        stop.store(true, Ordering::Release);
        if let Some(c) = consumer {
            c.join().expect("consumer");
        }
        println!(
            "  {label}: mean {:.0} ns per event ({} events, {} overflowed)",
            spent.as_nanos() as f64 / (runs.len() as f64 * kinds.len() as f64),
            total,
            handle.stats().overflowed
        );
        print_hist(&format!("{label}, mean per event in runs of 1000"), &runs);
        print_hist(&format!("{label}, single calls"), &calls);
        drop(inbox);
    }
}

/// What the engine's threads pay per event handed to the store sink: mapping the engine event
/// to its store records and enqueueing them, with a consumer draining the queue. The router
/// pays for `order sent` before it calls the broker; the exit engine pays for a position
/// change after it has handed the exit order to the router.
fn bench_sink(sizes: &Sizes) {
    use scalper::engine::persist::StoreSink;
    use scalper::engine::seams::{EngineEvent, EventSink};
    use scalper::exec::core::{CoreEvent, PositionChange, PositionEvent};
    use scalper::risk::position::{LifecycleEvent, Origin, Position};

    let (handle, inbox) = queue(65_536);
    let sink = StoreSink::new(handle.clone(), scalper::risk::SessionClock::default());
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (inbox, stop) = (inbox.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut out = Vec::with_capacity(4096);
            while !stop.load(Ordering::Acquire) {
                inbox.take_ready(4096, &mut out);
                out.clear();
                std::thread::yield_now();
            }
        })
    };
    let now = Timestamp(1_763_960_415_000);
    let mut pos = Position::open(
        PositionId::new("Pmwvxyxgn-1"),
        instrument(),
        Side::Long,
        Qty(75),
        Paise(10_000),
        now,
        Origin::Entry,
    );
    let trigger = LifecycleEvent::Trigger {
        reason: ExitReason::RatchetStop,
        price: Paise(10_500),
        at: now,
        stale: false,
    };
    pos.apply(trigger).expect("an active position starts its exit");
    let intent = scalper::domain::OrderIntent {
        correlation_id: CorrelationId::new("X1-Pmwvxyxgn-1").expect("valid"),
        position_id: pos.id.clone(),
        instrument: instrument(),
        txn: Txn::Sell,
        quantity: Qty(75),
        purpose: OrderPurpose::Exit(ExitReason::RatchetStop),
        reference_price: Paise(10_500),
        price_is_stale: false,
        created_at: now,
        limit_price: None,
    };
    let events = [
        ("order sent (router)", EngineEvent::OrderSent { intent, at: now }),
        (
            "position exit started (exit engine)",
            EngineEvent::Core(CoreEvent::Position(Box::new(PositionEvent {
                change: PositionChange::ExitStarted { reason: ExitReason::RatchetStop, attempt: 1 },
                at: now,
                position: pos,
            }))),
        ),
    ];
    println!("store sink (StoreSink::record: map + enqueue), with a consumer:");
    for (label, event) in &events {
        let mut calls = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
        for _ in 0..sizes.enqueue / 10 {
            while handle.depth() > 1_000 {
                std::thread::yield_now();
            }
            let t = Instant::now();
            sink.record(event);
            calls.record(t.elapsed().as_nanos() as u64).ok();
        }
        print_hist(label, &calls);
    }
    stop.store(true, Ordering::Release);
    consumer.join().expect("consumer");
}

/// Write-behind throughput: events recorded as fast as possible while the writer runs, until
/// the last one is committed.
fn bench_write(label: &str, connector: Connector, sizes: &Sizes, dir: &tempfile::TempDir) {
    let (handle, inbox) = queue(65_536);
    let metrics = Metrics::new();
    let name: String = label.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    let cfg = WriterConfig::new(dir.path().join(format!("{name}.spill")));
    let shared = WriterShared::new(inbox, connector, cfg, &metrics, HealthBoard::new());
    let (stop, ctx) = WorkerCtx::standalone("store-writer");
    let mut writer = StoreWriter::new(shared.clone());
    let join = std::thread::spawn(move || writer.run(&ctx));
    // Warm up: connect, migrate, prepare.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !shared.stats().database_up && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let events = mix(sizes.write);
    let started = Instant::now();
    for kind in events {
        handle.record(kind);
    }
    let recorded = started.elapsed();
    let target = sizes.write as u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while shared.stats().written + shared.stats().duplicates < target && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = started.elapsed();
    let stats = shared.stats();
    stop.stop();
    let _ = join.join();
    let text = metrics.render();
    let (count, sum) = histogram_totals(&text, "scalper_store_write_seconds");
    println!(
        "{label}: {} events in {:.2} s = {:.0} events/s (recording took {:.1} ms); {} batches, mean {:.2} ms and {:.0} events per batch; spilled {}",
        stats.written,
        took.as_secs_f64(),
        stats.written as f64 / took.as_secs_f64(),
        recorded.as_secs_f64() * 1e3,
        count,
        if count > 0.0 { sum / count * 1e3 } else { 0.0 },
        if count > 0.0 { stats.written as f64 / count } else { 0.0 },
        stats.spilled,
    );
    assert_eq!(stats.written, target, "every event written");
}

fn histogram_totals(text: &str, name: &str) -> (f64, f64) {
    let get = |suffix: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}_{suffix} ")))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (get("count"), get("sum"))
}
