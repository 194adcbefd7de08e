//! What the in-process engine and live test harnesses share: the event recorder, the HTTP
//! worker added to the test's supervisor on a loopback port with an authenticated client, the wait for a price to
//! reach the engine, and waiting on a condition with a deadline.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scalper::domain::{InstrumentKey, Paise, PositionId, Secret, Segment, Timestamp};
use scalper::engine::seams::{EngineEvent, EventSink};
use scalper::engine::shared::Shared;
use scalper::exec::{ClosedTrade, CoreEvent, NewPosition, PositionChange};
use scalper::ops::http::{self, HttpWorker, OpsApi};
use scalper::runtime::{Supervisor, WorkerSpec};
use serde_json::Value;

pub const A: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);
pub const B: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52176);
pub const C: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52177);
pub const D: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52178);
pub const E: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52179);

/// An IST instant on Monday 24 Nov 2025 (a trading day).
pub fn ist(time: &str) -> Timestamp {
    Timestamp::parse(&format!("2025-11-24T{time}+05:30")).expect("valid test time")
}

pub fn rupees(text: &str) -> Paise {
    Paise::parse_rupees(text).expect("valid test price")
}

/// How long any wait of these tests may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `cond` until it holds; panics with `what` after [`DEADLINE`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Keeps every engine event except the PnL publications (for assertions).
#[derive(Default)]
pub struct Recorder {
    events: parking_lot::Mutex<Vec<EngineEvent>>,
}

impl EventSink for Recorder {
    fn record(&self, event: &EngineEvent) {
        if !matches!(event, EngineEvent::PnlPublished(_)) {
            self.events.lock().push(event.clone());
        }
    }
}

impl Recorder {
    pub fn events(&self) -> Vec<EngineEvent> {
        self.events.lock().clone()
    }

    pub fn closed_trades(&self) -> Vec<ClosedTrade> {
        self.events
            .lock()
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Core(CoreEvent::TradeClosed(t)) => Some(t.as_ref().clone()),
                _ => None,
            })
            .collect()
    }

    pub fn closed(&self, id: &PositionId) -> Option<ClosedTrade> {
        self.closed_trades().into_iter().find(|t| &t.position_id == id)
    }

    /// Positions as they opened (for `positions.csv`).
    pub fn opened(&self) -> Vec<NewPosition> {
        self.events
            .lock()
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Core(CoreEvent::Position(ev))
                    if ev.change == PositionChange::Opened =>
                {
                    let p = &ev.position;
                    Some(NewPosition {
                        id: p.id.clone(),
                        instrument: p.instrument,
                        side: p.side,
                        quantity: p.quantity,
                        entry_price: p.entry_price,
                        opened_at: p.opened_at,
                    })
                }
                _ => None,
            })
            .collect()
    }

    /// The audit records of reconciliation adjustments.
    pub fn reconciliations(&self) -> Vec<String> {
        self.events
            .lock()
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Operator { action: "reconcile", detail, .. } => Some(detail.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every exit intent the exit engine decided, by correlation id.
    pub fn exit_intents(&self) -> Vec<String> {
        self.events
            .lock()
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Core(CoreEvent::ExitIntent(i)) => Some(i.correlation_id.to_string()),
                _ => None,
            })
            .collect()
    }
}

/// An authenticated client of one engine's HTTP API.
pub struct ApiClient {
    pub addr: SocketAddr,
    agent: ureq::Agent,
    token: &'static str,
}

/// Adds the HTTP worker serving `api` (bearer `token`) on a loopback port to `sup`; returns a
/// client for it.
pub fn serve(sup: &mut Supervisor, api: Arc<dyn OpsApi>, token: &'static str) -> ApiClient {
    let (server, addr) = http::bind("127.0.0.1:0").expect("http binds");
    sup.add(WorkerSpec::new("http", Duration::from_secs(5), move || {
        Box::new(HttpWorker::new(server.clone(), api.clone(), Secret::new(token), 64 * 1024))
    }));
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(15)))
        .build()
        .into();
    ApiClient { addr, agent, token }
}

impl ApiClient {
    pub fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .agent
            .get(&format!("http://{}{path}", self.addr))
            .header("Authorization", &format!("Bearer {}", self.token))
            .call();
        answer(resp.expect("GET works"))
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let resp = self
            .agent
            .post(&format!("http://{}{path}", self.addr))
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send(body);
        answer(resp.expect("POST works"))
    }

    /// `/metrics` as text.
    pub fn metrics_text(&self) -> String {
        let url = format!("http://{}/metrics", self.addr);
        self.agent.get(&url).call().expect("metrics").body_mut().read_to_string().expect("body")
    }
}

fn answer(mut resp: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The value of one sample in a Prometheus text (`name{labels}` exactly as rendered).
pub fn metric_value(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits until the engine has `instrument` at `price`, received at `now`: in the tick cache,
/// and evaluated by the exit engine when a position holds it.
pub fn wait_priced(shared: &Shared, instrument: InstrumentKey, price: Paise, now: Timestamp) {
    let cache = shared.cache.clone();
    wait_until(&format!("{instrument} at {price} is in the tick cache"), || {
        cache.tick(instrument).is_some_and(|t| t.ltp == price && t.received_at == now)
    });
    let held = shared.core.lock().positions().any(|p| p.instrument == instrument);
    if held {
        let core = shared.core.clone();
        wait_until(&format!("the exit engine evaluated {instrument} at {price}"), || {
            core.lock().last_tick(&instrument) == Some((price, now))
        });
    }
}
