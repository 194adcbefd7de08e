//! What a rejected exit leads to: a pure policy, owned by the exit core, so that a broker that
//! refuses every exit can never make a position storm orders (README "Exactly once").
//!
//! * [`classify`] sorts a rejection (Dhan's §4.8 error as the REST client renders it, or the
//!   order book's `omsErrorDescription`) into **transient** (rate limit, broker or exchange
//!   busy, no price yet, a market order outside the price band) and **permanent** (invalid IP, insufficient funds or margin, lot or
//!   freeze violations, instrument blocked, bad input, credentials, anything unrecognised).
//! * A transient rejection is retried after a backoff: `backoff_base` doubling to
//!   `backoff_cap`, up to 20 % shorter (jitter drawn from the position id and the rejection
//!   count, so replays are reproducible and positions do not retry in step).
//! * A permanent rejection marks the position *exit blocked*: its exit is retried only every
//!   `blocked_retry` in case the cause clears, until the position is out; the core raises a
//!   critical alert each time (see `ExitCore::on_exit_rejected`).
//! * Whatever the cause, no position places more than `max_orders` exit orders within any
//!   `window`: one stuck position cannot spend the order budget the others need.
//! * An operator's retry lets exactly one order through at once, past the backoff and the cap.
//!
//! Every deadline is computed here, from the `Timestamp`s the core is driven with; nothing
//! reads a clock.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{ExitReason, PositionId, Timestamp};
use crate::risk::correlation::position_hash;
use crate::runtime::backoff::BackoffPolicy;

/// The largest fraction of a transient backoff the jitter may take off.
const JITTER: f64 = 0.2;

/// The policy's settings (`[exit_retry]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitRetryPolicy {
    /// The wait after the first transient rejection.
    pub backoff_base: Duration,
    /// The longest wait after transient rejections.
    pub backoff_cap: Duration,
    /// How often the exit of a blocked position is tried again.
    pub blocked_retry: Duration,
    /// At most this many exit orders of one position within `window`.
    pub max_orders: u32,
    pub window: Duration,
}

impl Default for ExitRetryPolicy {
    fn default() -> ExitRetryPolicy {
        ExitRetryPolicy {
            backoff_base: Duration::from_millis(250),
            backoff_cap: Duration::from_secs(5),
            blocked_retry: Duration::from_secs(60),
            max_orders: 6,
            window: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionClass {
    /// Likely to pass if tried again shortly.
    Transient,
    /// Will fail again until someone changes something: escalate.
    Permanent,
}

/// A rejection sorted: its class and a stable cause code for operators and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    pub class: RejectionClass,
    pub cause: &'static str,
}

use RejectionClass::{Permanent, Transient};

/// Phrases (lower case) and what they mean, most specific first: the first that occurs in
/// the rejection text decides. Dhan renders REST refusals as `HTTP 400 DH-905 "Invalid IP"`
/// and exchange/RMS refusals arrive as the order's `omsErrorDescription`.
const RULES: &[(&str, RejectionClass, &str)] = &[
    ("dh-904", Transient, "rate_limit"),
    ("rate limit", Transient, "rate_limit"),
    ("too many requests", Transient, "rate_limit"),
    ("throttl", Transient, "rate_limit"),
    ("dh-908", Transient, "broker_unavailable"),
    ("dh-909", Transient, "broker_unavailable"),
    ("invalid ip", Permanent, "invalid_ip"),
    ("dh-911", Permanent, "invalid_ip"),
    ("insufficient", Permanent, "insufficient_funds"),
    ("margin", Permanent, "insufficient_funds"),
    ("fund", Permanent, "insufficient_funds"),
    ("balance", Permanent, "insufficient_funds"),
    ("freeze", Permanent, "freeze_quantity"),
    ("lot size", Permanent, "lot_size"),
    ("multiple of lot", Permanent, "lot_size"),
    ("lot multiple", Permanent, "lot_size"),
    ("blocked", Permanent, "instrument_blocked"),
    ("banned", Permanent, "instrument_blocked"),
    ("ban period", Permanent, "instrument_blocked"),
    ("not allowed", Permanent, "instrument_blocked"),
    ("restricted", Permanent, "instrument_blocked"),
    ("suspended", Permanent, "instrument_blocked"),
    ("kill switch", Permanent, "kill_switch"),
    ("busy", Transient, "exchange_busy"),
    ("try again", Transient, "exchange_busy"),
    ("try after", Transient, "exchange_busy"),
    ("temporarily", Transient, "exchange_busy"),
    ("not connected", Transient, "exchange_busy"),
    ("timeout", Transient, "exchange_busy"),
    ("timed out", Transient, "exchange_busy"),
    ("no last traded price", Transient, "no_price"),
    ("price band", Transient, "price_band"),
    ("circuit", Transient, "price_band"),
    ("dh-901", Permanent, "authentication"),
    ("invalid token", Permanent, "authentication"),
    ("http 401", Permanent, "authentication"),
    ("dh-902", Permanent, "account"),
    ("dh-903", Permanent, "account"),
    ("not sent:", Permanent, "order_gate"),
    ("dh-905", Permanent, "invalid_input"),
    ("dh-906", Permanent, "order_error"),
    ("dh-907", Permanent, "broker_refused"),
    ("dh-910", Permanent, "broker_refused"),
];

/// Sorts a rejection text. Anything not recognised is permanent: an operator must look.
pub fn classify(why: &str) -> Classified {
    let text = why.to_ascii_lowercase();
    RULES
        .iter()
        .find(|(needle, _, _)| text.contains(needle))
        .map_or(Classified { class: Permanent, cause: "unrecognised" }, |&(_, class, cause)| {
            Classified { class, cause }
        })
}

/// Why a position's exit may not go out now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Go,
    /// Not before `until`; `capped` when it is the per-window order cap that holds it.
    Wait {
        until: Timestamp,
        capped: bool,
    },
}

/// A position whose exit was refused permanently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    pub cause: String,
    /// The broker's words, from the latest rejection.
    pub why: String,
    pub since: Timestamp,
}

/// A rejected exit waiting for its next try, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryView {
    /// The exit that is being retried.
    pub reason: ExitReason,
    /// Rejections since the exit was first decided.
    pub rejections: u32,
    pub class: RejectionClass,
    pub cause: String,
    pub why: String,
    /// When the next order may go (backoff and order cap both counted).
    pub retry_at: Timestamp,
    /// Set once a rejection was permanent; kept until the position is out.
    pub blocked: Option<Blocked>,
}

/// What [`ExitRetries::rejected`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub classified: Classified,
    pub retry_at: Timestamp,
    /// The position is (now) exit blocked.
    pub blocked: bool,
    /// This rejection is the one that blocked it.
    pub newly_blocked: bool,
    pub rejections: u32,
}

#[derive(Debug, Clone, Default)]
struct Track {
    /// Exit orders placed within the window, oldest first.
    sent: VecDeque<Timestamp>,
    retry: Option<Pending>,
    /// One order may go past the backoff and the cap (operator's retry).
    operator: bool,
}

#[derive(Debug, Clone)]
struct Pending {
    reason: ExitReason,
    rejections: u32,
    transient_streak: u32,
    last: Classified,
    why: String,
    retry_at: Timestamp,
    blocked: Option<Blocked>,
}

/// Why an operator's retry was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorRetry {
    /// No rejected exit waits for a retry.
    NothingToRetry,
}

/// Every position's exit orders and rejected exits. See the module doc.
#[derive(Debug, Clone)]
pub struct ExitRetries {
    policy: ExitRetryPolicy,
    backoff: BackoffPolicy,
    tracks: HashMap<PositionId, Track>,
}

impl ExitRetries {
    pub fn new(policy: ExitRetryPolicy) -> ExitRetries {
        let backoff = BackoffPolicy::new(
            policy.backoff_base.max(Duration::from_millis(1)),
            policy.backoff_cap.max(policy.backoff_base).max(Duration::from_millis(1)),
            JITTER,
        )
        .expect("a positive base, a cap not below it and a jitter fraction are valid");
        ExitRetries { policy, backoff, tracks: HashMap::new() }
    }

    pub fn policy(&self) -> &ExitRetryPolicy {
        &self.policy
    }

    /// Whether an exit order of `id` may go out at `now`.
    pub fn gate(&self, id: &PositionId, now: Timestamp) -> Gate {
        let Some(t) = self.tracks.get(id) else { return Gate::Go };
        if t.operator {
            return Gate::Go;
        }
        let cap = self.cap_release(t, now);
        let backoff = t.retry.as_ref().map(|r| r.retry_at).filter(|at| *at > now);
        match (backoff, cap) {
            (None, None) => Gate::Go,
            (Some(b), None) => Gate::Wait { until: b, capped: false },
            (None, Some(c)) => Gate::Wait { until: c, capped: true },
            (Some(b), Some(c)) => Gate::Wait { until: b.max(c), capped: c >= b },
        }
    }

    /// When the order cap frees a slot, if it is full at `now`.
    fn cap_release(&self, t: &Track, now: Timestamp) -> Option<Timestamp> {
        let window = millis(self.policy.window);
        let max = self.policy.max_orders.max(1) as usize;
        let live: Vec<Timestamp> =
            t.sent.iter().copied().filter(|s| now.millis_since(*s) < window).collect();
        (live.len() >= max).then(|| live[live.len() - max].plus_millis(window))
    }

    /// An exit order of `id` went out at `at`.
    pub fn sent(&mut self, id: &PositionId, at: Timestamp) {
        let window = millis(self.policy.window);
        let t = self.tracks.entry(id.clone()).or_default();
        t.operator = false;
        t.sent.push_back(at);
        while t.sent.front().is_some_and(|s| at.millis_since(*s) >= window) {
            t.sent.pop_front();
        }
    }

    /// The exit order of `id` (placed for `reason`) was rejected with `why` at `at`: when to
    /// try again, and whether the position is now exit blocked.
    pub fn rejected(
        &mut self,
        id: &PositionId,
        reason: ExitReason,
        why: &str,
        at: Timestamp,
    ) -> Verdict {
        let classified = classify(why);
        let t = self.tracks.entry(id.clone()).or_default();
        let mut p = t.retry.take().unwrap_or(Pending {
            reason,
            rejections: 0,
            transient_streak: 0,
            last: classified,
            why: String::new(),
            retry_at: at,
            blocked: None,
        });
        p.reason = reason;
        p.rejections = p.rejections.saturating_add(1);
        p.last = classified;
        p.why = why.to_string();
        let newly_blocked = classified.class == Permanent && p.blocked.is_none();
        if classified.class == Permanent {
            let since = p.blocked.as_ref().map_or(at, |b| b.since);
            p.blocked = Some(Blocked { cause: classified.cause.into(), why: why.into(), since });
        }
        let wait = if p.blocked.is_some() {
            self.policy.blocked_retry
        } else {
            let d = self.backoff.delay(p.transient_streak, jitter(id, p.rejections));
            p.transient_streak = p.transient_streak.saturating_add(1);
            d
        };
        p.retry_at = at.plus_millis(millis(wait));
        let verdict = Verdict {
            classified,
            retry_at: p.retry_at,
            blocked: p.blocked.is_some(),
            newly_blocked,
            rejections: p.rejections,
        };
        t.retry = Some(p);
        verdict
    }

    /// The exit a rejected position waits to retry, when it may go at `now`.
    pub fn due(&self, now: Timestamp) -> Vec<(PositionId, ExitReason)> {
        let mut due: Vec<_> = self
            .tracks
            .iter()
            .filter_map(|(id, t)| t.retry.as_ref().map(|r| (id, r.reason)))
            .filter(|(id, _)| self.gate(id, now) == Gate::Go)
            .map(|(id, r)| (id.clone(), r))
            .collect();
        due.sort_by(|a, b| a.0.cmp(&b.0));
        due
    }

    /// The earliest instant a waiting retry may go (after `now`'s gate).
    pub fn next_due(&self, now: Timestamp) -> Option<Timestamp> {
        self.tracks
            .iter()
            .filter(|(_, t)| t.retry.is_some())
            .map(|(id, _)| match self.gate(id, now) {
                Gate::Go => now,
                Gate::Wait { until, .. } => until,
            })
            .min()
    }

    /// An operator asks for one more try of `id`'s rejected exit, now: the reason to exit
    /// for. The next exit order of `id` passes the backoff and the cap.
    pub fn operator_retry(&mut self, id: &PositionId) -> Result<ExitReason, OperatorRetry> {
        let t = self.tracks.get_mut(id).ok_or(OperatorRetry::NothingToRetry)?;
        let reason = t.retry.as_ref().ok_or(OperatorRetry::NothingToRetry)?.reason;
        t.operator = true;
        Ok(reason)
    }

    /// Withdraws an operator's pass that did not lead to an order.
    pub fn cancel_operator_retry(&mut self, id: &PositionId) {
        if let Some(t) = self.tracks.get_mut(id) {
            t.operator = false;
        }
    }

    /// The retry `id` waits for, as the API shows it.
    pub fn view(&self, id: &PositionId, now: Timestamp) -> Option<RetryView> {
        let r = self.tracks.get(id)?.retry.as_ref()?;
        let retry_at = match self.gate(id, now) {
            Gate::Go => now.max(r.retry_at),
            Gate::Wait { until, .. } => until,
        };
        Some(RetryView {
            reason: r.reason,
            rejections: r.rejections,
            class: r.last.class,
            cause: r.last.cause.into(),
            why: r.why.clone(),
            retry_at,
            blocked: r.blocked.clone(),
        })
    }

    /// Positions currently exit blocked.
    pub fn blocked(&self) -> usize {
        self.tracks
            .values()
            .filter(|t| t.retry.as_ref().is_some_and(|r| r.blocked.is_some()))
            .count()
    }

    /// The position is out (or gone): nothing more to track.
    pub fn forget(&mut self, id: &PositionId) {
        self.tracks.remove(id);
    }

    /// Keeps only the positions `keep` says are still open.
    pub fn retain(&mut self, keep: impl Fn(&PositionId) -> bool) {
        self.tracks.retain(|id, _| keep(id));
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A fraction in `[0, 1)` drawn from the position and the rejection count.
fn jitter(id: &PositionId, n: u32) -> f64 {
    let mixed = (position_hash(id) ^ u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (mixed >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests;
