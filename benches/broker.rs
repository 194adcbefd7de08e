//! Broker-path latency, as distributions (hdrhistogram), on loopback, through the live
//! gateway the order router calls (`engine::live::dhan_broker`):
//!
//! 1. decision → request on the wire: from an exit `OrderIntent` handed to
//!    `LiveGateway::place` to the last byte of its HTTP request read by a local socket. On the
//!    path: the order tracker's registration, circuit-breaker admission, the write-ahead record
//!    in the order journal (a record written under `O_DSYNC`, on the disk under the system's
//!    temp directory), the body, a rate-limiter slot, headers, the send. The reader answers a minimal
//!    acknowledgement so that the pooled connection is reused. The same without the gateway
//!    (the bare REST client) and the journal's durable write alone are shown to split the figure.
//! 2. exit round trip against the simulator: `place` → `Accepted`, and decision → the fill
//!    reported to the exit engine (simulator transit 0; the fill comes back on the
//!    order-update socket through the `order_updates` and `order_tracker` workers).
//!
//! Rate limits are lifted on both sides (the budget would otherwise cap the run at 10/s); the
//! limiter's bookkeeping is still on the path. `cargo bench --bench broker` runs the full
//! counts; under `cargo test` a short smoke run checks that it works.

#[path = "support/micros.rs"]
mod micros;
use micros::{histogram, report};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use hdrhistogram::Histogram;
use scalper::broker::credentials::{Credentials, StaticCredentials};
use scalper::broker::journal::OrderJournal;
use scalper::broker::model::{PlaceOrder, ProductType};
use scalper::broker::outcome::WriteOutcome;
use scalper::broker::ratelimit::{LimiterConfig, Priority, RateLimiter};
use scalper::broker::rest::{DhanClient, RestConfig};
use scalper::config::{Config, Secrets};
use scalper::domain::{
    Clock, CorrelationId, ExitReason, InstrumentKey, OrderIntent, OrderPurpose, Paise, PositionId,
    Qty, Segment, SystemClock, Timestamp, Txn,
};
use scalper::engine::live::{LiveOptions, dhan_broker};
use scalper::engine::seams::{BrokerContext, BrokerParts, NoopSink};
use scalper::exec::messages::OrderEvent;
use scalper::exec::order_book::OrderBookHandle;
use scalper::exec::router::Placement;
use scalper::ops::health::HealthBoard;
use scalper::ops::metrics::Metrics;
use scalper::runtime::{StopHandle, WorkerCtx};
use scalper::sim::broker::{SimBroker, SimBrokerConfig};
use scalper::sim::prices::PriceBoard;

const INSTRUMENT: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);
const TOKEN: &str = "bench-access-token";

struct Sizes {
    warmup: usize,
    runs: usize,
    round_trips: usize,
}

fn unlimited() -> LimiterConfig {
    LimiterConfig {
        orders: vec![],
        data: vec![],
        quote: vec![],
        non_trading: vec![],
        ..LimiterConfig::dhan()
    }
}

fn intent(i: usize) -> OrderIntent {
    OrderIntent {
        correlation_id: CorrelationId::new(format!("X{}-bench", i + 1)).expect("short id"),
        position_id: PositionId::new("bench"),
        instrument: INSTRUMENT,
        txn: Txn::Sell,
        quantity: Qty(75),
        purpose: OrderPurpose::Exit(ExitReason::StopLoss),
        reference_price: Paise(12345),
        price_is_stale: false,
        created_at: Timestamp(0),
        limit_price: None,
    }
}

/// A socket that reads HTTP requests, notes when each one's last byte arrived, and acknowledges.
fn reader(listener: TcpListener, origin: Instant, arrived: crossbeam_channel::Sender<Duration>) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else { return };
        let _ = stream.set_nodelay(true);
        let arrived = arrived.clone();
        std::thread::spawn(move || {
            let Ok(mut w) = stream.try_clone() else { return };
            let mut r = BufReader::new(stream);
            loop {
                let mut len = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                if r.read_exact(&mut body).is_err() {
                    return;
                }
                let _ = arrived.send(origin.elapsed());
                let ack = br#"{"orderId":"52000000000001","orderStatus":"TRANSIT"}"#;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    ack.len()
                );
                if w.write_all(head.as_bytes()).and_then(|_| w.write_all(ack)).is_err() {
                    return;
                }
            }
        });
    }
}

/// The live broker as the engine builds it, pointed at `rest` and `order_updates`.
struct Live {
    parts: BrokerParts,
    events: Receiver<OrderEvent>,
    _dir: tempfile::TempDir,
}

fn live(rest: &str, order_updates: &str) -> Live {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!(
        r#"
mode = "live"
data_dir = "{}"
[feed]
source = "dhan"
url = "ws://127.0.0.1:9/"
[broker]
kind = "dhan"
rest_url = "{rest}"
order_update_url = "{order_updates}"
[limits]
max_daily_loss_rupees = 5000
"#,
        dir.path().display()
    );
    let config = Config::from_toml_str(&text).expect("bench config");
    let secrets = Secrets::resolve(&config, |k| match k {
        "DHAN_CLIENT_ID" => Some("1000000001".into()),
        "DHAN_ACCESS_TOKEN" => Some(TOKEN.into()),
        "SCALPER_CONTROL_TOKEN" => Some("bench-control-token-0123456789".into()),
        _ => None,
    })
    .expect("bench secrets");
    let (events_tx, events) = crossbeam_channel::unbounded();
    let (commands_tx, _commands) = crossbeam_channel::bounded(16);
    let mut options = LiveOptions::from_config(&config);
    options.limiter = unlimited();
    options.poll_every = Duration::from_secs(5);
    let ctx = BrokerContext {
        config: &config,
        secrets: &secrets,
        metrics: &Metrics::new(),
        health: &HealthBoard::new(),
        clock: Arc::new(SystemClock),
        order_events: events_tx,
        commands: commands_tx,
        orders: OrderBookHandle::default(),
        sink: Arc::new(NoopSink),
        data_dir: dir.path(),
        instruments: scalper::instruments::SharedInstruments::default(),
    };
    let parts = dhan_broker(&ctx, options).expect("the live broker builds");
    Live { parts, events, _dir: dir }
}

fn decision_to_wire(s: &Sizes) -> (Histogram<u64>, Histogram<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("bound address");
    let origin = Instant::now();
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || reader(listener, origin, tx));
    let base = format!("http://{addr}/v2");

    let l = live(&base, "ws://127.0.0.1:9/order-update");
    let mut gateway = histogram();
    for i in 0..s.warmup + s.runs {
        let t0 = origin.elapsed();
        let placement = l.parts.gateway.place(&intent(i), SystemClock.now());
        let arrived = rx.recv_timeout(Duration::from_secs(5)).expect("the request arrived");
        assert!(matches!(placement, Placement::Accepted { .. }), "{placement:?}");
        if i >= s.warmup {
            gateway.record(arrived.saturating_sub(t0).as_micros().max(1) as u64).expect("in range");
        }
    }

    let client = DhanClient::new(
        RestConfig::new(base),
        Arc::new(StaticCredentials::new(Credentials::new("1000000001", TOKEN))),
        Arc::new(RateLimiter::new(unlimited())),
    );
    let mut bare = histogram();
    for i in 0..s.warmup + s.runs {
        let t0 = origin.elapsed();
        let order = PlaceOrder::market(&intent(i), ProductType::Intraday);
        let outcome = client.place_order(&order, Priority::Exit);
        let arrived = rx.recv_timeout(Duration::from_secs(5)).expect("the request arrived");
        assert!(matches!(outcome, WriteOutcome::Accepted(_)), "{outcome}");
        if i >= s.warmup {
            bare.record(arrived.saturating_sub(t0).as_micros().max(1) as u64).expect("in range");
        }
    }
    (gateway, bare)
}

fn journal_fsync(s: &Sizes) -> Histogram<u64> {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = OrderJournal::open(dir.path(), SystemClock.now()).expect("journal");
    let mut h = histogram();
    for i in 0..s.warmup + s.runs {
        let t0 = Instant::now();
        journal.record(&intent(i), SystemClock.now()).expect("journal write");
        if i >= s.warmup {
            h.record(t0.elapsed().as_micros().max(1) as u64).expect("in range");
        }
    }
    h
}

/// Runs the broker's workers on threads; stops them when dropped.
struct Workers(Vec<(StopHandle, std::thread::JoinHandle<()>)>);

impl Drop for Workers {
    fn drop(&mut self) {
        for (stop, _) in &self.0 {
            stop.stop();
        }
        for (_, t) in self.0.drain(..) {
            let _ = t.join();
        }
    }
}

fn exit_round_trip(s: &Sizes) -> (Histogram<u64>, Histogram<u64>) {
    let prices = PriceBoard::new();
    prices.set(INSTRUMENT, Paise(12345), Timestamp(0));
    let sim = SimBroker::start(
        SimBrokerConfig {
            access_token: TOKEN.into(),
            enforce_rate_limits: false,
            transit: Duration::ZERO,
            tick: Duration::from_millis(1),
            ..SimBrokerConfig::default()
        },
        prices,
    )
    .expect("simulator on loopback");
    let mut l = live(&sim.base_url(), &sim.order_socket_url());
    let workers = Workers(
        l.parts
            .workers
            .drain(..)
            .map(|mut spec| {
                let (stop, ctx) = WorkerCtx::standalone(&spec.name);
                let mut worker = (spec.factory)();
                (
                    stop,
                    std::thread::spawn(move || {
                        let _ = worker.run(&ctx);
                    }),
                )
            })
            .collect(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.order_socket_clients() == 0 {
        assert!(Instant::now() < deadline, "the order-update socket connects");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (mut accepted, mut filled) = (histogram(), histogram());
    for i in 0..s.warmup + s.round_trips {
        let it = intent(i);
        let t0 = Instant::now();
        let placement = l.parts.gateway.place(&it, SystemClock.now());
        let took = t0.elapsed();
        assert!(matches!(placement, Placement::Accepted { .. }), "{placement:?}");
        loop {
            match l.events.recv_timeout(Duration::from_secs(5)).expect("the fill is reported") {
                OrderEvent::Filled { fill, .. } if fill.correlation_id == it.correlation_id => {
                    break;
                }
                _ => {}
            }
        }
        let fill = t0.elapsed();
        if i >= s.warmup {
            accepted.record(took.as_micros().max(1) as u64).expect("in range");
            filled.record(fill.as_micros().max(1) as u64).expect("in range");
        }
    }
    drop(workers);
    sim.shutdown();
    (accepted, filled)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let s = if full {
        Sizes { warmup: 200, runs: 3000, round_trips: 1000 }
    } else {
        Sizes { warmup: 5, runs: 50, round_trips: 20 }
    };
    scalper::feed::reader::install_crypto_provider();
    println!(
        "broker benchmarks ({}): {} runs after {} warm-up ({} round trips), CPU {:?}, {} cores",
        if full { "full" } else { "smoke" },
        s.runs,
        s.warmup,
        s.round_trips,
        cpu_model(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    let (gateway, bare) = decision_to_wire(&s);
    report("decision -> request on the wire (live gateway)", &gateway);
    report("  the same, bare REST client (no journal, tracker)", &bare);
    report("  order journal write-ahead (durable record)", &journal_fsync(&s));
    let (accepted, filled) = exit_round_trip(&s);
    report("exit round trip: place -> accepted (sim)", &accepted);
    report("exit round trip: decision -> fill reported (sim)", &filled);
}
