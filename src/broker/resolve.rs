//! Settling an unknown placement (spec dhan-v2 §6). Dhan has no idempotency key: after a
//! timeout, a reset or a 5xx the order may exist, and a blind resend may create a second one.
//! The recipe: look the correlation id up (404 DH-906 is normal while the order is in
//! TRANSIT), then scan the order book (where TRANSIT orders do show), then ask what the
//! order-update stream has seen, polling with backoff within a bounded window. The order is
//! declared absent only when a lookup *and* a book scan that both started after the window
//! closed found nothing; if the reads keep failing the answer is "undetermined", never absent.
//!
//! [`Resolver`] is the pure step function (state + observation + now → next action);
//! [`resolve_placement`] is the small blocking driver over the REST client and the stream's
//! [`RecentUpdates`].

use std::time::{Duration, Instant};

use super::model::{Order, OrderStatus};
use super::order_updates::RecentUpdates;
use super::rest::DhanClient;
use crate::domain::OrderId;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ResolverConfig {
    /// How long after the unknown outcome an order can still appear. Must exceed the REST
    /// timeout plus Dhan's TRANSIT time (≈ 100–500 ms).
    pub window_ms: u64,
    /// First pause between polling rounds; doubles up to `max_poll_ms`.
    pub first_poll_ms: u64,
    pub max_poll_ms: u64,
    /// Give up (undetermined) when the reads keep failing this long after the window.
    pub give_up_after_ms: u64,
}

impl Default for ResolverConfig {
    fn default() -> ResolverConfig {
        ResolverConfig {
            window_ms: 5_000,
            first_poll_ms: 200,
            max_poll_ms: 1_000,
            give_up_after_ms: 10_000,
        }
    }
}

/// Where the order was seen.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Evidence {
    CorrelationLookup,
    OrderBook,
    OrderUpdateStream,
}

/// How an unknown placement settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The order exists (whatever its status: it may also be REJECTED by the exchange).
    Found { order_id: OrderId, status: OrderStatus, evidence: Evidence },
    /// Provably absent after the window: place again, with a **new** correlation id.
    Absent,
    /// Neither could be proven (reads kept failing): do not place again; escalate.
    Undetermined { reason: String },
}

/// The result of one lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    Found { order_id: OrderId, status: OrderStatus },
    NotFound,
    Failed(String),
}

/// What the driver should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    LookupByCorrelationId,
    ScanOrderBook,
    CheckStream,
    /// Sleep until this instant (ms), then report [`Observation::Woke`].
    WaitUntil(u64),
    Done(Resolution),
}

/// What the driver saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    ByCorrelationId(Lookup),
    OrderBook(Lookup),
    Stream(Lookup),
    Woke,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    Lookup,
    Book,
    Stream,
    Waiting,
    Done,
}

/// The pure resolver for one correlation id.
#[derive(Clone, Debug)]
pub struct Resolver {
    cfg: ResolverConfig,
    deadline: u64,
    give_up_at: u64,
    phase: Phase,
    /// When the current round's correlation lookup started.
    round_started: u64,
    round_clean: bool,
    next_poll_ms: u64,
    last_failure: Option<String>,
}

impl Resolver {
    /// Starts at `now` (the moment the outcome turned out unknown); the first action is a
    /// correlation-id lookup.
    pub fn start(cfg: ResolverConfig, now: u64) -> (Resolver, Action) {
        let r = Resolver {
            cfg,
            deadline: now + cfg.window_ms,
            give_up_at: now + cfg.window_ms + cfg.give_up_after_ms,
            phase: Phase::Lookup,
            round_started: now,
            round_clean: true,
            next_poll_ms: cfg.first_poll_ms,
            last_failure: None,
        };
        (r, Action::LookupByCorrelationId)
    }

    pub fn step(&mut self, obs: Observation, now: u64) -> Action {
        match (self.phase, obs) {
            (Phase::Lookup, Observation::ByCorrelationId(l)) => {
                self.absorb(l, Evidence::CorrelationLookup).unwrap_or_else(|| {
                    self.phase = Phase::Book;
                    Action::ScanOrderBook
                })
            }
            (Phase::Book, Observation::OrderBook(l)) => {
                self.absorb(l, Evidence::OrderBook).unwrap_or_else(|| {
                    self.phase = Phase::Stream;
                    Action::CheckStream
                })
            }
            (Phase::Stream, Observation::Stream(l)) => {
                // The stream can find an order, never prove one absent (it may have dropped
                // messages or been disconnected): its failures do not taint the round.
                if let Lookup::Found { order_id, status } = l {
                    return self.finish(Resolution::Found {
                        order_id,
                        status,
                        evidence: Evidence::OrderUpdateStream,
                    });
                }
                self.end_round(now)
            }
            (Phase::Waiting, Observation::Woke) => {
                self.phase = Phase::Lookup;
                self.round_started = now;
                self.round_clean = true;
                Action::LookupByCorrelationId
            }
            (Phase::Done, _) => Action::Done(Resolution::Undetermined {
                reason: "resolver already finished".into(),
            }),
            (phase, obs) => {
                // A driver bug; say so rather than guess.
                self.finish(Resolution::Undetermined {
                    reason: format!("observation {obs:?} does not fit phase {phase:?}"),
                })
            }
        }
    }

    fn absorb(&mut self, l: Lookup, evidence: Evidence) -> Option<Action> {
        match l {
            Lookup::Found { order_id, status } => {
                Some(self.finish(Resolution::Found { order_id, status, evidence }))
            }
            Lookup::NotFound => None,
            Lookup::Failed(reason) => {
                self.round_clean = false;
                self.last_failure = Some(reason);
                None
            }
        }
    }

    fn end_round(&mut self, now: u64) -> Action {
        if self.round_started >= self.deadline && self.round_clean {
            return self.finish(Resolution::Absent);
        }
        if now >= self.give_up_at {
            let reason = self
                .last_failure
                .clone()
                .unwrap_or_else(|| "no clean lookup after the window".into());
            return self.finish(Resolution::Undetermined { reason });
        }
        let mut wake = now + self.next_poll_ms;
        if self.round_started < self.deadline {
            // The proving round starts right when the window closes.
            wake = wake.min(self.deadline);
        }
        self.next_poll_ms = (self.next_poll_ms * 2).min(self.cfg.max_poll_ms);
        self.phase = Phase::Waiting;
        Action::WaitUntil(wake.max(now))
    }

    fn finish(&mut self, r: Resolution) -> Action {
        self.phase = Phase::Done;
        Action::Done(r)
    }
}

/// The match for `correlation_id` in an order book (the last one if several share it, which
/// would itself be a duplicate placement worth a log line).
pub fn find_in_book(orders: &[Order], correlation_id: &str) -> Lookup {
    let matches: Vec<&Order> =
        orders.iter().filter(|o| o.correlation_id.as_deref() == Some(correlation_id)).collect();
    if matches.len() > 1 {
        log::error!(target: "broker", "{} orders share correlation id {correlation_id}: {:?}",
            matches.len(), matches.iter().map(|o| &o.order_id.0).collect::<Vec<_>>());
    }
    match matches.last() {
        Some(o) => Lookup::Found { order_id: o.order_id.clone(), status: o.order_status.clone() },
        None => Lookup::NotFound,
    }
}

/// Settles an unknown placement by correlation id, blocking up to the window plus the give-up
/// time. `stream` is what the order-update worker has recorded, if it runs.
pub fn resolve_placement(
    client: &DhanClient,
    stream: Option<&RecentUpdates>,
    correlation_id: &str,
    cfg: ResolverConfig,
) -> Resolution {
    resolve_placement_with(client, stream, correlation_id, cfg, &|d| {
        std::thread::sleep(d);
        true
    })
}

/// As [`resolve_placement`], pausing through `sleep` (e.g. `|d| ctx.sleep(d)` inside a worker,
/// which beats the heartbeat and wakes on stop). When `sleep` returns `false` the resolver stops
/// and answers `Undetermined`.
pub fn resolve_placement_with(
    client: &DhanClient,
    stream: Option<&RecentUpdates>,
    correlation_id: &str,
    cfg: ResolverConfig,
    sleep: &dyn Fn(Duration) -> bool,
) -> Resolution {
    let origin = Instant::now();
    let now = || origin.elapsed().as_millis() as u64;
    let (mut r, mut action) = Resolver::start(cfg, now());
    loop {
        let obs = match action {
            Action::Done(res) => {
                log::warn!(target: "broker", "unknown placement {correlation_id} resolved after {:?}: {res:?}", origin.elapsed());
                return res;
            }
            Action::LookupByCorrelationId => {
                Observation::ByCorrelationId(match client.order_by_correlation_id(correlation_id) {
                    Ok(Some(o)) => Lookup::Found { order_id: o.order_id, status: o.order_status },
                    Ok(None) => Lookup::NotFound,
                    Err(e) => Lookup::Failed(e.to_string()),
                })
            }
            Action::ScanOrderBook => Observation::OrderBook(match client.orders() {
                Ok(book) => find_in_book(&book, correlation_id),
                Err(e) => Lookup::Failed(e.to_string()),
            }),
            Action::CheckStream => Observation::Stream(
                match stream.and_then(|s| s.by_correlation_id(correlation_id)) {
                    Some(u) => Lookup::Found { order_id: u.order_id, status: u.status },
                    None => Lookup::NotFound,
                },
            ),
            Action::WaitUntil(at) => {
                if !sleep(Duration::from_millis(at.saturating_sub(now()))) {
                    return Resolution::Undetermined { reason: "stopped while resolving".into() };
                }
                Observation::Woke
            }
        };
        action = r.step(obs, now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: ResolverConfig = ResolverConfig {
        window_ms: 1000,
        first_poll_ms: 100,
        max_poll_ms: 400,
        give_up_after_ms: 2000,
    };

    fn found(id: &str, s: OrderStatus) -> Lookup {
        Lookup::Found { order_id: OrderId(id.into()), status: s }
    }

    /// Runs the resolver against scripted answers: `answer(action, now)`; each step takes 10 ms.
    fn run(mut answer: impl FnMut(&Action, u64) -> Observation) -> (Resolution, u64, usize) {
        let mut now = 0;
        let (mut r, mut action) = Resolver::start(CFG, now);
        let mut lookups = 0;
        loop {
            if let Action::Done(res) = action {
                return (res, now, lookups);
            }
            if action == Action::LookupByCorrelationId {
                lookups += 1;
            }
            let obs = answer(&action, now);
            now = match action {
                Action::WaitUntil(at) => at.max(now),
                _ => now + 10,
            };
            action = r.step(obs, now);
            assert!(now < 10_000, "the resolver must end");
        }
    }

    fn absent_everywhere(action: &Action, _: u64) -> Observation {
        match action {
            Action::LookupByCorrelationId => Observation::ByCorrelationId(Lookup::NotFound),
            Action::ScanOrderBook => Observation::OrderBook(Lookup::NotFound),
            Action::CheckStream => Observation::Stream(Lookup::NotFound),
            Action::WaitUntil(_) => Observation::Woke,
            Action::Done(_) => unreachable!(),
        }
    }

    #[test]
    fn found_by_correlation_id_at_once() {
        let (res, _, _) = run(|a, _| match a {
            Action::LookupByCorrelationId => {
                Observation::ByCorrelationId(found("7", OrderStatus::Pending))
            }
            _ => unreachable!(),
        });
        assert_eq!(
            res,
            Resolution::Found {
                order_id: OrderId("7".into()),
                status: OrderStatus::Pending,
                evidence: Evidence::CorrelationLookup
            }
        );
    }

    #[test]
    fn transit_order_invisible_by_correlation_id_is_found_in_the_order_book() {
        let (res, _, _) = run(|a, now| match a {
            Action::ScanOrderBook => Observation::OrderBook(found("8", OrderStatus::Transit)),
            _ => absent_everywhere(a, now),
        });
        assert!(matches!(
            res,
            Resolution::Found { evidence: Evidence::OrderBook, status: OrderStatus::Transit, .. }
        ));
    }

    #[test]
    fn order_appearing_late_in_the_window_is_found() {
        let (res, at, _) = run(|a, now| match a {
            Action::LookupByCorrelationId if now >= 600 => {
                Observation::ByCorrelationId(found("9", OrderStatus::Traded))
            }
            _ => absent_everywhere(a, now),
        });
        assert!(matches!(res, Resolution::Found { .. }));
        assert!((600..1000).contains(&at), "found at {at}");
    }

    #[test]
    fn seen_only_on_the_stream_is_found() {
        let (res, _, _) = run(|a, now| match a {
            Action::CheckStream => Observation::Stream(found("10", OrderStatus::Traded)),
            _ => absent_everywhere(a, now),
        });
        assert!(matches!(res, Resolution::Found { evidence: Evidence::OrderUpdateStream, .. }));
    }

    #[test]
    fn absent_is_declared_only_after_a_clean_round_started_at_the_window_end() {
        let (res, at, lookups) = run(absent_everywhere);
        assert_eq!(res, Resolution::Absent);
        assert!(at >= 1000, "never before the window closes (ended at {at})");
        assert!(at < 1100, "but promptly after it (ended at {at})");
        assert!(lookups >= 3, "polled during the window: {lookups}");
    }

    #[test]
    fn failed_reads_after_the_window_are_not_proof_of_absence() {
        let (res, at, _) = run(|a, now| match a {
            Action::ScanOrderBook if now >= 1000 => {
                Observation::OrderBook(Lookup::Failed("HTTP 500".into()))
            }
            _ => absent_everywhere(a, now),
        });
        assert!(
            matches!(res, Resolution::Undetermined { ref reason } if reason.contains("500")),
            "{res:?}"
        );
        assert!(at >= 3000, "kept trying until the give-up time: {at}");
    }

    #[test]
    fn a_failure_then_a_clean_round_after_the_window_proves_absence() {
        let (res, _, _) = run(|a, now| match a {
            Action::LookupByCorrelationId if (1000..1200).contains(&now) => {
                Observation::ByCorrelationId(Lookup::Failed("timeout".into()))
            }
            _ => absent_everywhere(a, now),
        });
        assert_eq!(res, Resolution::Absent);
    }

    #[test]
    fn stream_silence_does_not_taint_and_cannot_prove() {
        let (res, _, _) = run(|a, now| match a {
            Action::CheckStream => Observation::Stream(Lookup::Failed("socket down".into())),
            _ => absent_everywhere(a, now),
        });
        assert_eq!(res, Resolution::Absent, "absence rests on REST lookups, not on the stream");
    }

    #[test]
    fn book_scan_picks_our_correlation_id_only() {
        let mk = |id: &str, cid: Option<&str>| -> Order {
            serde_json::from_value(
                serde_json::json!({"orderId": id, "correlationId": cid, "orderStatus": "PENDING"}),
            )
            .unwrap()
        };
        let book =
            vec![mk("1", Some("1000000001-1788847935148")), mk("2", Some("X-1")), mk("3", None)];
        assert_eq!(find_in_book(&book, "X-1"), found("2", OrderStatus::Pending));
        assert_eq!(find_in_book(&book, "X-2"), Lookup::NotFound);
    }
}
