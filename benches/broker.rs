//! Broker-path latency, as distributions (hdrhistogram), on loopback:
//!
//! 1. decision → request on the wire: from an `OrderIntent` to the last byte of the HTTP
//!    request read by a local socket (body built, limiter slot, headers, ureq send). The reader
//!    answers a minimal acknowledgement so that the pooled connection is reused.
//! 2. exit round trip against the simulator: `place_order` → `Accepted`.
//!
//! Rate limits are lifted on both sides (the budget would otherwise cap the run at 10/s); the
//! limiter's own bookkeeping is still on the path. Run: `cargo bench --bench broker`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use scalper::broker::credentials::{Credentials, StaticCredentials};
use scalper::broker::model::{PlaceOrder, ProductType};
use scalper::broker::outcome::WriteOutcome;
use scalper::broker::ratelimit::{LimiterConfig, Priority, RateLimiter};
use scalper::broker::rest::{DhanClient, RestConfig};
use scalper::domain::{
    CorrelationId, ExitReason, InstrumentKey, OrderIntent, OrderPurpose, Paise, PositionId, Qty,
    Segment, Timestamp, Txn,
};
use scalper::sim::broker::{SimBroker, SimBrokerConfig};
use scalper::sim::prices::PriceBoard;

const WARMUP: usize = 200;
const RUNS: usize = 3000;
const INSTRUMENT: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);

fn unlimited() -> Arc<RateLimiter> {
    Arc::new(RateLimiter::new(LimiterConfig {
        orders: vec![],
        data: vec![],
        quote: vec![],
        non_trading: vec![],
        ..LimiterConfig::dhan()
    }))
}

fn intent(i: usize) -> OrderIntent {
    OrderIntent {
        correlation_id: CorrelationId::new(format!("B-{i}")).expect("short id"),
        position_id: PositionId::new("bench"),
        instrument: INSTRUMENT,
        txn: Txn::Sell,
        quantity: Qty(75),
        purpose: OrderPurpose::Exit(ExitReason::StopLoss),
        reference_price: Paise(12345),
        price_is_stale: false,
        created_at: Timestamp(0),
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn report(name: &str, h: &Histogram<u64>) {
    println!(
        "{name:<44} n={:<5} p50={:>7} µs  p90={:>7} µs  p99={:>7} µs  p99.9={:>7} µs  max={:>7} µs  mean={:>9.1} µs",
        h.len(),
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.90),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        h.mean()
    );
}

/// A socket that reads HTTP requests, notes when each one's last byte arrived, and acknowledges.
fn reader(listener: TcpListener, origin: Instant, arrived: crossbeam_channel::Sender<Duration>) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else { return };
        let _ = stream.set_nodelay(true);
        let arrived = arrived.clone();
        std::thread::spawn(move || {
            let mut w = match stream.try_clone() {
                Ok(w) => w,
                Err(_) => return,
            };
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

fn decision_to_wire() -> Histogram<u64> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("bound address");
    let origin = Instant::now();
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || reader(listener, origin, tx));
    let client = DhanClient::new(
        RestConfig::new(format!("http://{addr}/v2")),
        Arc::new(StaticCredentials::new(Credentials::new("1000000001", "bench-token"))),
        unlimited(),
    );
    let mut h = histogram();
    for i in 0..WARMUP + RUNS {
        let t0 = origin.elapsed();
        let order = PlaceOrder::market(&intent(i), ProductType::Intraday);
        let outcome = client.place_order(&order, Priority::Exit);
        let arrived = rx.recv_timeout(Duration::from_secs(5)).expect("the request arrived");
        assert!(matches!(outcome, WriteOutcome::Accepted(_)), "{outcome}");
        if i >= WARMUP {
            h.record((arrived.saturating_sub(t0)).as_micros().max(1) as u64).expect("in range");
        }
    }
    h
}

fn exit_round_trip() -> Histogram<u64> {
    let prices = PriceBoard::new();
    prices.set(INSTRUMENT, Paise(12345), Timestamp(0));
    let sim = SimBroker::start(
        SimBrokerConfig {
            enforce_rate_limits: false,
            transit: Duration::from_millis(100),
            ..SimBrokerConfig::default()
        },
        prices,
    )
    .expect("simulator on loopback");
    let client = DhanClient::new(
        RestConfig::new(sim.base_url()),
        Arc::new(StaticCredentials::new(Credentials::new(sim.client_id(), "sim-access-token"))),
        unlimited(),
    );
    let mut h = histogram();
    for i in 0..WARMUP + RUNS {
        let order = PlaceOrder::market(&intent(i), ProductType::Intraday);
        let t0 = Instant::now();
        let outcome = client.place_order(&order, Priority::Exit);
        let took = t0.elapsed();
        assert!(matches!(outcome, WriteOutcome::Accepted(_)), "{outcome}");
        if i >= WARMUP {
            h.record(took.as_micros().max(1) as u64).expect("in range");
        }
    }
    sim.shutdown();
    h
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
    println!(
        "broker benchmarks: {RUNS} runs after {WARMUP} warm-up, CPU {:?}, {} cores",
        cpu_model(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    report("decision -> request on the wire (loopback)", &decision_to_wire());
    report("exit round trip: place -> accepted (sim)", &exit_round_trip());
}
