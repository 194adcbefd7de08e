//! Fault injection for the simulated broker: latency, random error and reset rates, bursts of
//! 5xx / 429 / resets / garbage, placements whose answer never arrives although the order was
//! created, orders refused with a chosen Dhan error (at the API, or by the exchange / RMS with
//! an `omsErrorDescription`), dropped order-update messages and forced order-socket drops. Set at start through
//! [`FaultConfig`] and changed at run time through the cloneable [`Faults`] handle.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// Steady-state faults.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultConfig {
    /// Added before every REST answer.
    pub latency: Duration,
    /// Percent of REST requests answered `500 DH-908` without being processed.
    pub error_rate_pct: u32,
    /// Percent of REST requests whose connection is reset without an answer (not processed).
    pub reset_rate_pct: u32,
    /// Percent of order-update messages never sent.
    pub drop_update_rate_pct: u32,
    /// How long a withheld answer keeps its connection open before closing it.
    pub withhold_for: Duration,
    /// Seed of the random faults, for reproducible runs.
    pub seed: u64,
}

impl Default for FaultConfig {
    fn default() -> FaultConfig {
        FaultConfig {
            latency: Duration::ZERO,
            error_rate_pct: 0,
            reset_rate_pct: 0,
            drop_update_rate_pct: 0,
            withhold_for: Duration::from_secs(10),
            seed: 7,
        }
    }
}

/// A one-off fault for the next N matching requests.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `500 DH-908`, request not processed.
    ServerError,
    /// Processed (an order is created), then answered `500 DH-908`.
    ServerErrorAfterAccept,
    /// `429 DH-904`, not processed.
    Throttle,
    /// Connection reset, no answer, not processed.
    Reset,
    /// Processed (an order is created and proceeds), the answer never arrives.
    TimeoutAfterAccept,
    /// `200` with a body that is not JSON, not processed.
    Garbage,
}

/// How the simulator refuses an order it was told to refuse (spec dhan-v2 §4.8, §4.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// At the call: this HTTP status and Dhan's error body; no order is created.
    Api { status: u16, error_type: String, code: String, message: String },
    /// Accepted (`TRANSIT`), then `REJECTED` by the exchange / RMS with this
    /// `omsErrorDescription`, e.g. `"RMS:Insufficient Funds"`.
    Exchange { reason: String },
}

impl Refusal {
    /// Dhan's error body at the call, e.g. `(400, "Input_Exception", "DH-905", "Invalid IP")`.
    pub fn api(status: u16, error_type: &str, code: &str, message: &str) -> Refusal {
        Refusal::Api {
            status,
            error_type: error_type.into(),
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn exchange(reason: &str) -> Refusal {
        Refusal::Exchange { reason: reason.into() }
    }
}

/// Which placements to refuse, how, and how many times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefuseOrders {
    /// Only orders on this instrument (`None`: any).
    pub instrument: Option<crate::domain::InstrumentKey>,
    /// Only orders whose correlation id starts with this (`"X"`: the engine's exits).
    pub correlation_prefix: Option<String>,
    pub refusal: Refusal,
    /// The next this many matching placements (`None`: every one until cleared).
    pub count: Option<u32>,
}

/// Which requests a burst applies to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Any,
    /// `POST /orders`.
    Place,
    /// Place, modify, cancel.
    OrderWrites,
    /// GET requests.
    Reads,
    /// `GET /trades/{order-id}`: one order's trades.
    OrderTrades,
    /// `GET /trades`: the whole trade book.
    TradeBook,
}

impl Scope {
    pub fn matches(self, method: &str, path: &str) -> bool {
        let p = path.strip_prefix("/v2").unwrap_or(path);
        match self {
            Scope::Any => true,
            Scope::Place => method == "POST" && p == "/orders",
            Scope::OrderWrites => method != "GET" && p.starts_with("/orders"),
            Scope::Reads => method == "GET",
            Scope::OrderTrades => method == "GET" && p.starts_with("/trades/"),
            Scope::TradeBook => method == "GET" && p == "/trades",
        }
    }
}

#[derive(Debug)]
struct Burst {
    fault: Fault,
    scope: Scope,
    remaining: u32,
}

#[derive(Debug)]
struct State {
    cfg: FaultConfig,
    bursts: Vec<Burst>,
    drop_updates: u32,
    refusals: Vec<RefuseOrders>,
    rng: fastrand::Rng,
}

/// The run-time fault controls. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Faults {
    state: Arc<Mutex<State>>,
    /// Bumped to make every order-update connection drop now.
    socket_generation: Arc<AtomicU64>,
}

impl Faults {
    pub fn new(cfg: FaultConfig) -> Faults {
        let rng = fastrand::Rng::with_seed(cfg.seed);
        Faults {
            state: Arc::new(Mutex::new(State {
                cfg,
                bursts: Vec::new(),
                drop_updates: 0,
                refusals: Vec::new(),
                rng,
            })),
            socket_generation: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn set_config(&self, cfg: FaultConfig) {
        self.state.lock().cfg = cfg;
    }

    pub fn config(&self) -> FaultConfig {
        self.state.lock().cfg.clone()
    }

    pub fn set_latency(&self, latency: Duration) {
        self.state.lock().cfg.latency = latency;
    }

    /// The next `count` requests within `scope` suffer `fault`.
    pub fn inject(&self, fault: Fault, scope: Scope, count: u32) {
        self.state.lock().bursts.push(Burst { fault, scope, remaining: count });
    }

    /// Refuses the placements `rule` matches (added after any earlier rule).
    pub fn refuse_orders(&self, rule: RefuseOrders) {
        self.state.lock().refusals.push(rule);
    }

    /// The refusal for a placement on `instrument` with `correlation_id`, if a rule matches
    /// (consumes one from a counted rule).
    pub(crate) fn refusal_for(
        &self,
        instrument: crate::domain::InstrumentKey,
        correlation_id: Option<&str>,
    ) -> Option<Refusal> {
        let mut s = self.state.lock();
        let rule = s.refusals.iter_mut().find(|r| {
            r.count != Some(0)
                && r.instrument.is_none_or(|i| i == instrument)
                && r.correlation_prefix
                    .as_deref()
                    .is_none_or(|p| correlation_id.is_some_and(|c| c.starts_with(p)))
        })?;
        if let Some(n) = &mut rule.count {
            *n -= 1;
        }
        let refusal = rule.refusal.clone();
        s.refusals.retain(|r| r.count != Some(0));
        Some(refusal)
    }

    /// Removes every pending burst, refusal and random rate.
    pub fn clear(&self) {
        let mut s = self.state.lock();
        s.bursts.clear();
        s.refusals.clear();
        s.drop_updates = 0;
        s.cfg.error_rate_pct = 0;
        s.cfg.reset_rate_pct = 0;
        s.cfg.drop_update_rate_pct = 0;
        s.cfg.latency = Duration::ZERO;
    }

    /// The next `count` order-update messages are never sent.
    pub fn drop_order_updates(&self, count: u32) {
        self.state.lock().drop_updates += count;
    }

    /// Drops every connected order-update socket now (with a reset, no close frame).
    pub fn disconnect_order_sockets(&self) {
        self.socket_generation.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn socket_generation(&self) -> u64 {
        self.socket_generation.load(Ordering::Acquire)
    }

    /// The fault for this request, if any (consumes one from a matching burst), and the
    /// latency to add.
    pub(crate) fn for_request(
        &self,
        method: &str,
        path: &str,
    ) -> (Option<Fault>, Duration, Duration) {
        let mut s = self.state.lock();
        let latency = s.cfg.latency;
        let withhold = s.cfg.withhold_for;
        if let Some(b) =
            s.bursts.iter_mut().find(|b| b.remaining > 0 && b.scope.matches(method, path))
        {
            b.remaining -= 1;
            let f = b.fault;
            s.bursts.retain(|b| b.remaining > 0);
            return (Some(f), latency, withhold);
        }
        let (err, rst) = (s.cfg.error_rate_pct, s.cfg.reset_rate_pct);
        let roll = s.rng.u32(0..100);
        let fault = if roll < err {
            Some(Fault::ServerError)
        } else if roll < err + rst {
            Some(Fault::Reset)
        } else {
            None
        };
        (fault, latency, withhold)
    }

    /// Whether the next order-update message is dropped.
    pub(crate) fn drop_this_update(&self) -> bool {
        let mut s = self.state.lock();
        if s.drop_updates > 0 {
            s.drop_updates -= 1;
            return true;
        }
        let pct = s.cfg.drop_update_rate_pct;
        pct > 0 && s.rng.u32(0..100) < pct
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_apply_to_their_scope_and_run_out() {
        let f = Faults::new(FaultConfig::default());
        f.inject(Fault::Throttle, Scope::Place, 2);
        assert_eq!(f.for_request("GET", "/v2/orders").0, None);
        assert_eq!(f.for_request("POST", "/v2/orders").0, Some(Fault::Throttle));
        assert_eq!(f.for_request("POST", "/v2/orders").0, Some(Fault::Throttle));
        assert_eq!(f.for_request("POST", "/v2/orders").0, None);
    }

    #[test]
    fn random_rates_are_reproducible_from_the_seed() {
        let cfg = FaultConfig { error_rate_pct: 30, reset_rate_pct: 20, ..FaultConfig::default() };
        let a = Faults::new(cfg.clone());
        let b = Faults::new(cfg);
        let run =
            |f: &Faults| (0..200).map(|_| f.for_request("GET", "/v2/orders").0).collect::<Vec<_>>();
        let (ra, rb) = (run(&a), run(&b));
        assert_eq!(ra, rb);
        let errors = ra.iter().filter(|f| **f == Some(Fault::ServerError)).count();
        assert!((30..90).contains(&errors), "about 30 % of 200: {errors}");
    }

    #[test]
    fn refusals_match_instrument_and_correlation_prefix_and_run_out() {
        use crate::domain::{InstrumentKey, Segment};
        let (a, b) =
            (InstrumentKey::new(Segment::NseFno, 1), InstrumentKey::new(Segment::NseFno, 2));
        let f = Faults::new(FaultConfig::default());
        f.refuse_orders(RefuseOrders {
            instrument: Some(a),
            correlation_prefix: Some("X".into()),
            refusal: Refusal::exchange("RMS:Insufficient Funds"),
            count: Some(2),
        });
        assert_eq!(f.refusal_for(b, Some("X1-p")), None);
        assert_eq!(f.refusal_for(a, Some("N1-p")), None);
        assert_eq!(f.refusal_for(a, None), None);
        assert_eq!(
            f.refusal_for(a, Some("X1-p")),
            Some(Refusal::exchange("RMS:Insufficient Funds"))
        );
        assert!(f.refusal_for(a, Some("X2-p")).is_some());
        assert_eq!(f.refusal_for(a, Some("X3-p")), None);
        f.refuse_orders(RefuseOrders {
            instrument: None,
            correlation_prefix: None,
            refusal: Refusal::api(400, "Input_Exception", "DH-905", "Invalid IP"),
            count: None,
        });
        for _ in 0..5 {
            assert!(matches!(f.refusal_for(b, None), Some(Refusal::Api { status: 400, .. })));
        }
        f.clear();
        assert_eq!(f.refusal_for(b, None), None);
    }

    #[test]
    fn dropped_updates_are_counted_down() {
        let f = Faults::new(FaultConfig::default());
        f.drop_order_updates(1);
        assert!(f.drop_this_update());
        assert!(!f.drop_this_update());
    }
}
