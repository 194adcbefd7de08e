//! Dhan's rate limits (spec dhan-v2 §5), one budget per API class shared by every thread that
//! talks to Dhan.
//!
//! The core ([`LimiterCore`]) is pure: sliding windows over the grant times, fed `now` in
//! milliseconds. A sliding window never lets more than `limit` requests into *any* interval of
//! the window's length, so the broker sees no burst whether it counts in fixed or sliding
//! windows (a token bucket with a burst of `limit` can let nearly twice that into one second).
//! Each window is lengthened by a small margin to absorb network jitter between our grant and
//! the request's arrival. Exits come first: an entry never takes a slot while an exit of the
//! same class is waiting, and entries may not use the last `exit_reserve` slots of a window.
//! A 429 / DH-904 (no `Retry-After`) closes the class for an exponentially growing pause.
//!
//! [`RateLimiter`] is the blocking, thread-safe shell the REST client calls before each request.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Dhan's API classes (spec §5), each with its own budget.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApiClass {
    /// Place, modify, cancel (and slicing, super and forever orders).
    Orders,
    /// Historical charts, option chain.
    Data,
    /// `/marketfeed/*` (LTP, OHLC, quote).
    Quote,
    /// Everything else: order book, trades, positions, funds, kill switch.
    NonTrading,
}

impl ApiClass {
    pub const ALL: [ApiClass; 4] =
        [ApiClass::Orders, ApiClass::Data, ApiClass::Quote, ApiClass::NonTrading];

    pub const fn name(self) -> &'static str {
        match self {
            ApiClass::Orders => "orders",
            ApiClass::Data => "data",
            ApiClass::Quote => "quote",
            ApiClass::NonTrading => "non_trading",
        }
    }

    const fn index(self) -> usize {
        match self {
            ApiClass::Orders => 0,
            ApiClass::Data => 1,
            ApiClass::Quote => 2,
            ApiClass::NonTrading => 3,
        }
    }
}

impl fmt::Display for ApiClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who is asking. Exits (and reads, which never add risk) go first; entries wait behind them
/// and leave a reserve untouched.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Priority {
    Exit,
    Entry,
}

/// At most `limit` requests in any `length_ms` interval; entries may use `limit − exit_reserve`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub length_ms: u64,
    pub limit: u32,
    pub exit_reserve: u32,
}

impl Window {
    pub const fn new(length_ms: u64, limit: u32, exit_reserve: u32) -> Window {
        Window { length_ms, limit, exit_reserve }
    }
}

const SECOND: u64 = 1000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// The limits of every class, the jitter margin and the 429 backoff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimiterConfig {
    pub orders: Vec<Window>,
    pub data: Vec<Window>,
    pub quote: Vec<Window>,
    pub non_trading: Vec<Window>,
    /// Added to every window's length (network jitter between grant and arrival).
    pub margin_ms: u64,
    /// First pause after a 429; doubles on each further 429 up to `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
}

impl LimiterConfig {
    /// Spec §5: orders 10/s, 250/min, 1000/h, 7000/day; data 5/s, 100000/day; quote 1/s;
    /// non-trading 20/s. Exits keep ~10 % of each order window (at least one slot).
    pub fn dhan() -> LimiterConfig {
        LimiterConfig {
            orders: vec![
                Window::new(SECOND, 10, 1),
                Window::new(MINUTE, 250, 25),
                Window::new(HOUR, 1000, 100),
                Window::new(DAY, 7000, 700),
            ],
            data: vec![Window::new(SECOND, 5, 0), Window::new(DAY, 100_000, 0)],
            quote: vec![Window::new(SECOND, 1, 0)],
            non_trading: vec![Window::new(SECOND, 20, 0)],
            margin_ms: 50,
            backoff_initial_ms: 1000,
            backoff_max_ms: 30_000,
        }
    }

    fn windows(&self, class: ApiClass) -> &[Window] {
        match class {
            ApiClass::Orders => &self.orders,
            ApiClass::Data => &self.data,
            ApiClass::Quote => &self.quote,
            ApiClass::NonTrading => &self.non_trading,
        }
    }
}

/// What the core answers to a request for a slot.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go now; the slot is taken.
    Granted,
    /// No slot before this instant (ms).
    WaitUntil(u64),
    /// An entry while an exit of the same class waits: wait until the exits are served.
    BehindExits,
}

#[derive(Debug)]
struct WindowState {
    window: Window,
    /// Grant times still inside the window, oldest first.
    grants: VecDeque<u64>,
}

impl WindowState {
    fn prune(&mut self, now: u64) {
        while let Some(&t) = self.grants.front() {
            if t + self.window.length_ms <= now {
                self.grants.pop_front();
            } else {
                break;
            }
        }
    }

    /// When the next slot for `priority` opens, `now` if one is open.
    fn next_open(&self, priority: Priority, now: u64) -> u64 {
        let usable = match priority {
            Priority::Exit => self.window.limit,
            Priority::Entry => self.window.limit.saturating_sub(self.window.exit_reserve),
        } as usize;
        let used = self.grants.len();
        if used < usable {
            return now;
        }
        if usable == 0 {
            return u64::MAX;
        }
        // The slot frees when the (used − usable + 1)-th oldest grant leaves the window.
        self.grants[used - usable] + self.window.length_ms
    }
}

#[derive(Debug)]
struct ClassState {
    windows: Vec<WindowState>,
    throttled_until: u64,
    next_backoff_ms: u64,
    exits_waiting: u32,
    granted: u64,
    throttles: u64,
}

/// The pure limiter: no clock, no locks. `now` is milliseconds on any monotonic scale.
#[derive(Debug)]
pub struct LimiterCore {
    cfg: LimiterConfig,
    classes: Vec<ClassState>,
}

/// A class's counters, for health and metrics.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ClassStats {
    pub granted: u64,
    pub throttles: u64,
    /// Until when a 429 keeps the class closed (ms, core time scale); 0 if never.
    pub throttled_until: u64,
    pub exits_waiting: u32,
}

impl LimiterCore {
    pub fn new(cfg: LimiterConfig) -> LimiterCore {
        let classes = ApiClass::ALL
            .iter()
            .map(|&c| ClassState {
                windows: cfg
                    .windows(c)
                    .iter()
                    .map(|w| WindowState {
                        window: Window { length_ms: w.length_ms + cfg.margin_ms, ..*w },
                        grants: VecDeque::new(),
                    })
                    .collect(),
                throttled_until: 0,
                next_backoff_ms: cfg.backoff_initial_ms,
                exits_waiting: 0,
                granted: 0,
                throttles: 0,
            })
            .collect();
        LimiterCore { cfg, classes }
    }

    /// Takes a slot of `class` at `now` if one is open for `priority`.
    pub fn try_acquire(&mut self, class: ApiClass, priority: Priority, now: u64) -> Decision {
        let st = &mut self.classes[class.index()];
        if now < st.throttled_until {
            return Decision::WaitUntil(st.throttled_until);
        }
        if priority == Priority::Entry && st.exits_waiting > 0 {
            return Decision::BehindExits;
        }
        let mut open_at = now;
        for w in &mut st.windows {
            w.prune(now);
            open_at = open_at.max(w.next_open(priority, now));
        }
        if open_at > now {
            return Decision::WaitUntil(open_at);
        }
        for w in &mut st.windows {
            w.grants.push_back(now);
        }
        st.granted += 1;
        Decision::Granted
    }

    /// An exit of `class` starts (`+1`) or stops (`−1`) waiting for a slot.
    pub fn exit_waiting(&mut self, class: ApiClass, waiting: bool) {
        let st = &mut self.classes[class.index()];
        if waiting {
            st.exits_waiting += 1;
        } else {
            st.exits_waiting = st.exits_waiting.saturating_sub(1);
        }
    }

    /// The broker answered 429 / DH-904: close the class for the current backoff, then double
    /// it. Returns when the class reopens.
    pub fn note_throttled(&mut self, class: ApiClass, now: u64) -> u64 {
        let max = self.cfg.backoff_max_ms;
        let st = &mut self.classes[class.index()];
        st.throttled_until = st.throttled_until.max(now + st.next_backoff_ms);
        st.next_backoff_ms = (st.next_backoff_ms * 2).min(max);
        st.throttles += 1;
        st.throttled_until
    }

    /// A request of `class` went through without a 429: the backoff starts over.
    pub fn note_accepted(&mut self, class: ApiClass) {
        let initial = self.cfg.backoff_initial_ms;
        self.classes[class.index()].next_backoff_ms = initial;
    }

    pub fn stats(&self, class: ApiClass) -> ClassStats {
        let st = &self.classes[class.index()];
        ClassStats {
            granted: st.granted,
            throttles: st.throttles,
            throttled_until: st.throttled_until,
            exits_waiting: st.exits_waiting,
        }
    }
}

/// Why no slot was granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    #[error(
        "no {class} rate-limit slot for a {priority:?} request within its deadline (next in {wait:?})"
    )]
    Deadline { class: ApiClass, priority: Priority, wait: Duration },
}

/// What the limiter did, in the order it did it (recorded under its lock when the event log is
/// on; for audits and tests).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LimiterEvent {
    Waiting(ApiClass, Priority),
    Granted(ApiClass, Priority),
    GaveUp(ApiClass, Priority),
}

/// A waiting caller wakes at least this often to beat its worker's heartbeat.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// The shared, blocking limiter. One per process (per Dhan client id), behind an `Arc`.
#[derive(Debug)]
pub struct RateLimiter {
    core: Mutex<LimiterCore>,
    changed: Condvar,
    origin: Instant,
    events: Option<Mutex<Vec<LimiterEvent>>>,
}

impl RateLimiter {
    pub fn new(cfg: LimiterConfig) -> RateLimiter {
        RateLimiter {
            core: Mutex::new(LimiterCore::new(cfg)),
            changed: Condvar::new(),
            origin: Instant::now(),
            events: None,
        }
    }

    /// A limiter that also records every wait, grant and give-up (see [`RateLimiter::events`]).
    pub fn with_event_log(cfg: LimiterConfig) -> RateLimiter {
        RateLimiter { events: Some(Mutex::new(Vec::new())), ..RateLimiter::new(cfg) }
    }

    /// The recorded events (empty unless built with [`RateLimiter::with_event_log`]).
    pub fn events(&self) -> Vec<LimiterEvent> {
        self.events.as_ref().map(|e| e.lock().clone()).unwrap_or_default()
    }

    fn record(&self, e: LimiterEvent) {
        if let Some(log) = &self.events {
            log.lock().push(e);
        }
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn instant_of(&self, ms: u64) -> Instant {
        self.origin + Duration::from_millis(ms)
    }

    /// Blocks until a slot of `class` is granted, or fails at once if none can open before
    /// `deadline`. While it waits it beats the heartbeat of the worker on the calling thread
    /// ([`crate::runtime::beat_current_thread`]).
    pub fn acquire(
        &self,
        class: ApiClass,
        priority: Priority,
        deadline: Instant,
    ) -> Result<(), RateLimitError> {
        let mut core = self.core.lock();
        if priority == Priority::Exit {
            core.exit_waiting(class, true);
        }
        let mut announced = false;
        let result = loop {
            let wake = match core.try_acquire(class, priority, self.now_ms()) {
                Decision::Granted => break Ok(()),
                Decision::WaitUntil(at) => {
                    let at = self.instant_of(at);
                    if at > deadline {
                        let wait = at.saturating_duration_since(Instant::now());
                        break Err(RateLimitError::Deadline { class, priority, wait });
                    }
                    at
                }
                Decision::BehindExits if Instant::now() >= deadline => {
                    break Err(RateLimitError::Deadline { class, priority, wait: Duration::ZERO });
                }
                Decision::BehindExits => deadline,
            };
            if !announced {
                announced = true;
                self.record(LimiterEvent::Waiting(class, priority));
            }
            // In slices, beating the waiting worker's heartbeat: a wait for a slot is bounded
            // by `deadline` and is not a hang.
            self.changed.wait_until(&mut core, wake.min(Instant::now() + WAIT_SLICE));
            crate::runtime::beat_current_thread();
        };
        self.record(match result {
            Ok(()) => LimiterEvent::Granted(class, priority),
            Err(_) => LimiterEvent::GaveUp(class, priority),
        });
        if priority == Priority::Exit {
            core.exit_waiting(class, false);
            // Entries parked behind this exit may go now.
            self.changed.notify_all();
        }
        result
    }

    /// The broker answered 429 / DH-904 for `class`.
    pub fn note_throttled(&self, class: ApiClass) -> Duration {
        let now = self.now_ms();
        let until = self.core.lock().note_throttled(class, now);
        log::warn!(target: "broker", "Dhan rate limit hit (429) on {class} requests; pausing them for {} ms", until - now);
        Duration::from_millis(until - now)
    }

    /// A request of `class` was answered without a 429.
    pub fn note_accepted(&self, class: ApiClass) {
        self.core.lock().note_accepted(class);
    }

    pub fn stats(&self, class: ApiClass) -> ClassStats {
        self.core.lock().stats(class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_window(length: u64, limit: u32, reserve: u32) -> LimiterCore {
        LimiterCore::new(LimiterConfig {
            orders: vec![Window::new(length, limit, reserve)],
            data: vec![],
            quote: vec![],
            non_trading: vec![],
            margin_ms: 0,
            backoff_initial_ms: 1000,
            backoff_max_ms: 8000,
        })
    }

    const O: ApiClass = ApiClass::Orders;

    #[test]
    fn ten_orders_per_second_then_the_eleventh_waits_for_the_first_to_leave_the_window() {
        let mut c = one_window(1000, 10, 0);
        for i in 0..10 {
            assert_eq!(c.try_acquire(O, Priority::Exit, 100 + i), Decision::Granted);
        }
        assert_eq!(c.try_acquire(O, Priority::Exit, 500), Decision::WaitUntil(1100));
        assert_eq!(c.try_acquire(O, Priority::Exit, 1099), Decision::WaitUntil(1100));
        assert_eq!(c.try_acquire(O, Priority::Exit, 1100), Decision::Granted);
        assert_eq!(c.try_acquire(O, Priority::Exit, 1100), Decision::WaitUntil(1101));
    }

    #[test]
    fn no_interval_of_one_window_ever_holds_more_than_the_limit() {
        // Requests every 7 ms for 10 s: count grants in every 1000 ms interval.
        let mut c = one_window(1000, 10, 0);
        let mut grants = Vec::new();
        let mut t = 0;
        while t < 10_000 {
            if c.try_acquire(O, Priority::Exit, t) == Decision::Granted {
                grants.push(t);
            }
            t += 7;
        }
        for (i, &start) in grants.iter().enumerate() {
            let inside = grants[i..].iter().take_while(|&&g| g < start + 1000).count();
            assert!(inside <= 10, "{inside} grants in [{start}, {})", start + 1000);
        }
        assert!(grants.len() >= 95, "the budget is used, not starved: {}", grants.len());
    }

    #[test]
    fn every_order_window_applies_per_minute_as_well_as_per_second() {
        let mut c = LimiterCore::new(LimiterConfig { margin_ms: 0, ..LimiterConfig::dhan() });
        let mut granted = 0;
        for t in (0..60_000u64).step_by(100) {
            if c.try_acquire(O, Priority::Exit, t) == Decision::Granted {
                granted += 1;
            }
        }
        assert_eq!(granted, 250, "10/s would allow 600 in a minute; 250/min caps it");
        assert_eq!(c.try_acquire(O, Priority::Exit, 59_999), Decision::WaitUntil(60_000));
    }

    #[test]
    fn entries_leave_the_exit_reserve_untouched() {
        let mut c = one_window(1000, 10, 2);
        for i in 0..8 {
            assert_eq!(c.try_acquire(O, Priority::Entry, i), Decision::Granted);
        }
        assert!(matches!(c.try_acquire(O, Priority::Entry, 8), Decision::WaitUntil(_)));
        assert_eq!(c.try_acquire(O, Priority::Exit, 9), Decision::Granted);
        assert_eq!(c.try_acquire(O, Priority::Exit, 10), Decision::Granted);
        assert!(matches!(c.try_acquire(O, Priority::Exit, 11), Decision::WaitUntil(1000)));
    }

    #[test]
    fn an_entry_never_takes_a_slot_while_an_exit_waits() {
        let mut c = one_window(1000, 10, 0);
        c.exit_waiting(O, true);
        assert_eq!(c.try_acquire(O, Priority::Entry, 0), Decision::BehindExits);
        assert_eq!(c.try_acquire(O, Priority::Exit, 0), Decision::Granted);
        c.exit_waiting(O, false);
        assert_eq!(c.try_acquire(O, Priority::Entry, 0), Decision::Granted);
    }

    #[test]
    fn a_429_closes_the_class_with_doubling_pauses_until_a_request_passes() {
        let mut c = one_window(1000, 10, 0);
        assert_eq!(c.note_throttled(O, 0), 1000);
        assert_eq!(c.try_acquire(O, Priority::Exit, 500), Decision::WaitUntil(1000));
        assert_eq!(c.note_throttled(O, 1000), 3000);
        assert_eq!(c.note_throttled(O, 3000), 7000);
        assert_eq!(c.note_throttled(O, 7000), 15000, "capped at 8 s");
        assert_eq!(c.note_throttled(O, 15000), 23000, "stays at the cap");
        c.note_accepted(O);
        assert_eq!(c.note_throttled(O, 30000), 31000, "back to the first pause");
        assert_eq!(c.try_acquire(O, Priority::Exit, 31000), Decision::Granted);
    }

    #[test]
    fn classes_have_separate_budgets() {
        let mut c = LimiterCore::new(LimiterConfig::dhan());
        assert_eq!(c.try_acquire(ApiClass::Quote, Priority::Exit, 0), Decision::Granted);
        assert!(matches!(
            c.try_acquire(ApiClass::Quote, Priority::Exit, 1),
            Decision::WaitUntil(1050)
        ));
        for i in 0..20 {
            assert_eq!(c.try_acquire(ApiClass::NonTrading, Priority::Exit, i), Decision::Granted);
        }
        assert!(matches!(
            c.try_acquire(ApiClass::NonTrading, Priority::Exit, 20),
            Decision::WaitUntil(_)
        ));
        assert_eq!(c.try_acquire(O, Priority::Entry, 20), Decision::Granted);
    }

    #[test]
    fn blocking_acquire_fails_fast_when_the_deadline_is_too_close() {
        let l = RateLimiter::new(LimiterConfig::dhan());
        let soon = Instant::now() + Duration::from_millis(200);
        assert!(l.acquire(ApiClass::Quote, Priority::Exit, soon).is_ok());
        let t0 = Instant::now();
        let err = l.acquire(ApiClass::Quote, Priority::Exit, soon).unwrap_err();
        assert!(matches!(err, RateLimitError::Deadline { class: ApiClass::Quote, .. }));
        assert!(
            t0.elapsed() < Duration::from_millis(150),
            "no waiting for a slot that cannot come"
        );
    }
}
