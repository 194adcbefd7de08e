//! The simulated broker's rate limits (spec dhan-v2 §5), counted per client at arrival in
//! sliding windows, independently of the client's limiter so that a mistake in one is caught
//! by the other. Also keeps the arrival times that tests inspect.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::broker::ratelimit::ApiClass;

#[derive(Debug)]
struct SimWindow {
    length: Duration,
    limit: usize,
    arrivals: VecDeque<Instant>,
}

/// Per-class sliding windows plus an arrival log.
#[derive(Debug)]
pub struct SimLimits {
    enforce: bool,
    classes: Vec<(ApiClass, Vec<SimWindow>)>,
    log: Vec<(Instant, ApiClass)>,
    throttled: Vec<(Instant, ApiClass)>,
}

impl SimLimits {
    /// Dhan's table: orders 10/s, 250/min, 1000/h, 7000/day; data 5/s, 100000/day; quote
    /// 1/s; non-trading 20/s.
    pub fn dhan(enforce: bool) -> SimLimits {
        let w = |secs: u64, limit: usize| SimWindow {
            length: Duration::from_secs(secs),
            limit,
            arrivals: VecDeque::new(),
        };
        SimLimits {
            enforce,
            classes: vec![
                (ApiClass::Orders, vec![w(1, 10), w(60, 250), w(3600, 1000), w(86_400, 7000)]),
                (ApiClass::Data, vec![w(1, 5), w(86_400, 100_000)]),
                (ApiClass::Quote, vec![w(1, 1)]),
                (ApiClass::NonTrading, vec![w(1, 20)]),
            ],
            log: Vec::new(),
            throttled: Vec::new(),
        }
    }

    /// Counts a request of `class` arriving at `now`; `false` (and not counted) if it
    /// exceeds a window.
    pub fn admit(&mut self, class: ApiClass, now: Instant) -> bool {
        let Some((_, windows)) = self.classes.iter_mut().find(|(c, _)| *c == class) else {
            return true;
        };
        for w in windows.iter_mut() {
            while w.arrivals.front().is_some_and(|&t| now.duration_since(t) >= w.length) {
                w.arrivals.pop_front();
            }
        }
        if self.enforce && windows.iter().any(|w| w.arrivals.len() >= w.limit) {
            self.throttled.push((now, class));
            return false;
        }
        for w in windows.iter_mut() {
            w.arrivals.push_back(now);
        }
        self.log.push((now, class));
        true
    }

    /// Arrival times of admitted requests of `class`.
    pub fn arrivals(&self, class: ApiClass) -> Vec<Instant> {
        self.log.iter().filter(|(_, c)| *c == class).map(|(t, _)| *t).collect()
    }

    /// How many requests of `class` were answered 429.
    pub fn throttled(&self, class: ApiClass) -> usize {
        self.throttled.iter().filter(|(_, c)| *c == class).count()
    }
}

/// The class of a request (spec §5's headings): order writes, market quotes, data, the rest.
pub fn class_of(method: &str, path: &str) -> ApiClass {
    let p = path.strip_prefix("/v2").unwrap_or(path);
    if p.starts_with("/marketfeed") {
        ApiClass::Quote
    } else if p.starts_with("/charts") || p.starts_with("/optionchain") {
        ApiClass::Data
    } else if p.starts_with("/orders") && method != "GET" {
        ApiClass::Orders
    } else {
        ApiClass::NonTrading
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eleventh_order_in_a_second_is_throttled_and_not_counted() {
        let mut l = SimLimits::dhan(true);
        let t0 = Instant::now();
        for i in 0..10 {
            assert!(l.admit(ApiClass::Orders, t0 + Duration::from_millis(i)));
        }
        assert!(!l.admit(ApiClass::Orders, t0 + Duration::from_millis(999)));
        assert!(l.admit(ApiClass::Orders, t0 + Duration::from_millis(1000)));
        assert_eq!(l.throttled(ApiClass::Orders), 1);
        assert_eq!(l.arrivals(ApiClass::Orders).len(), 11);
        assert!(l.admit(ApiClass::NonTrading, t0), "classes are separate");
    }

    #[test]
    fn classes_follow_the_spec_headings() {
        assert_eq!(class_of("POST", "/v2/orders"), ApiClass::Orders);
        assert_eq!(class_of("DELETE", "/v2/orders/1"), ApiClass::Orders);
        assert_eq!(class_of("GET", "/v2/orders"), ApiClass::NonTrading);
        assert_eq!(class_of("POST", "/v2/marketfeed/ltp"), ApiClass::Quote);
        assert_eq!(class_of("GET", "/v2/fundlimit"), ApiClass::NonTrading);
    }
}
