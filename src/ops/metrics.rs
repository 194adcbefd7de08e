//! Prometheus metrics. One [`Metrics`] per engine (a registry, not a global, so that tests can
//! run several engines in one process). Metric handles are created once when the engine is
//! built, outside any worker, and captured by the worker factories: a respawned worker keeps
//! counting into the same series.
//!
//! Conventions (README, Operating it): every name starts with `scalper_`; counters end in
//! `_total`; durations and ages are in seconds (`_seconds`, a histogram or a float gauge),
//! never milliseconds; nothing is a precomputed rate (export the counter, the query takes
//! `rate()`); a state is a labelled gauge with one series per possible state, 1 for the
//! current one and 0 for the others ([`StateGauge`]); and a labelled counter whose label
//! values are known in advance is created with all of them at 0 ([`preset`]), so that a
//! query or an alert sees the series before the first event. Each metric's known label
//! values are listed once, next to its registration.

use std::sync::Arc;

use prometheus::core::{MetricVec, MetricVecBuilder};
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The engine's metric registry. Cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Arc<Registry>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// All names get this prefix.
pub const PREFIX: &str = "scalper_";

impl Metrics {
    pub fn new() -> Metrics {
        Metrics { registry: Arc::new(Registry::new()) }
    }

    fn register<C: prometheus::core::Collector + Clone + 'static>(&self, c: C) -> C {
        // A name registered twice is a programming error caught by every test that builds an
        // engine; fall back to an unregistered handle rather than panicking the engine.
        if let Err(e) = self.registry.register(Box::new(c.clone())) {
            log::error!(target: "metrics", "metric registration failed: {e}");
        }
        c
    }

    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::new(format!("{PREFIX}{name}"), help).expect("valid metric name"))
    }

    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(
            IntCounterVec::new(Opts::new(format!("{PREFIX}{name}"), help), labels)
                .expect("valid metric name"),
        )
    }

    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::new(format!("{PREFIX}{name}"), help).expect("valid metric name"))
    }

    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(
            IntGaugeVec::new(Opts::new(format!("{PREFIX}{name}"), help), labels)
                .expect("valid metric name"),
        )
    }

    /// A gauge with a fractional value (seconds).
    pub fn float_gauge(&self, name: &str, help: &str) -> Gauge {
        self.register(Gauge::new(format!("{PREFIX}{name}"), help).expect("valid metric name"))
    }

    pub fn float_gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        self.register(
            GaugeVec::new(Opts::new(format!("{PREFIX}{name}"), help), labels)
                .expect("valid metric name"),
        )
    }

    /// A labelled counter created with every combination of `known` label values at 0 (one
    /// slice of values per label, in label order).
    pub fn counter_vec_preset(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        known: &[&[&str]],
    ) -> IntCounterVec {
        let c = self.counter_vec(name, help, labels);
        preset(&c, known);
        c
    }

    /// A state as a labelled gauge: one series per state in `states` (label `label`), 1 for
    /// the current state, 0 for the others; starts in `initial`.
    pub fn state_gauge(
        &self,
        name: &str,
        help: &str,
        label: &str,
        states: &'static [&'static str],
        initial: &str,
    ) -> StateGauge {
        let g = StateGauge { vec: self.gauge_vec(name, help, &[label]), states, keyed: false };
        g.set(initial);
        g
    }

    /// Like [`Metrics::state_gauge`], one state per `key` (`key_label`, for example
    /// `component`); a key's series appear with its first [`StateGauge::set_for`].
    pub fn state_gauge_vec(
        &self,
        name: &str,
        help: &str,
        key_label: &str,
        label: &str,
        states: &'static [&'static str],
    ) -> StateGauge {
        StateGauge { vec: self.gauge_vec(name, help, &[key_label, label]), states, keyed: true }
    }

    /// A histogram of seconds with the given bucket bounds.
    pub fn histogram(&self, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
        self.register(
            Histogram::with_opts(
                HistogramOpts::new(format!("{PREFIX}{name}"), help).buckets(buckets),
            )
            .expect("valid metric name"),
        )
    }

    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: Vec<f64>,
    ) -> HistogramVec {
        self.register(
            HistogramVec::new(
                HistogramOpts::new(format!("{PREFIX}{name}"), help).buckets(buckets),
                labels,
            )
            .expect("valid metric name"),
        )
    }

    /// Registers a custom collector (for values computed at scrape time).
    pub fn register_collector(&self, c: Box<dyn prometheus::core::Collector>) {
        if let Err(e) = self.registry.register(c) {
            log::error!(target: "metrics", "collector registration failed: {e}");
        }
    }

    /// The Prometheus text exposition of every registered metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        if let Err(e) = enc.encode(&self.registry.gather(), &mut buf) {
            log::error!(target: "metrics", "metrics encoding failed: {e}");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Creates the series of every combination of `known` label values (one slice per label, in
/// label order), so that they show at 0 before the first event.
pub fn preset<B: MetricVecBuilder>(vec: &MetricVec<B>, known: &[&[&str]]) {
    fn walk<B: MetricVecBuilder>(vec: &MetricVec<B>, known: &[&[&str]], prefix: &mut Vec<String>) {
        match known.split_first() {
            None => {
                let values: Vec<&str> = prefix.iter().map(String::as_str).collect();
                if let Err(e) = vec.get_metric_with_label_values(&values) {
                    log::error!(target: "metrics", "presetting labels {values:?}: {e}");
                }
            }
            Some((first, rest)) => {
                for v in *first {
                    prefix.push((*v).to_string());
                    walk(vec, rest, prefix);
                    prefix.pop();
                }
            }
        }
    }
    if !known.is_empty() {
        walk(vec, known, &mut Vec::new());
    }
}

/// A state exported as a labelled gauge (`scalper_trading_state{state="halted"} 1`, the
/// other states 0). Cheap to clone.
#[derive(Clone)]
pub struct StateGauge {
    vec: IntGaugeVec,
    states: &'static [&'static str],
    keyed: bool,
}

impl std::fmt::Debug for StateGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateGauge").field("states", &self.states).finish_non_exhaustive()
    }
}

impl StateGauge {
    /// The possible states.
    pub fn states(&self) -> &'static [&'static str] {
        self.states
    }

    /// Makes `state` the current one (a gauge without a key).
    pub fn set(&self, state: &str) {
        debug_assert!(!self.keyed, "a keyed state gauge needs set_for");
        debug_assert!(self.states.contains(&state), "unknown state {state}");
        for s in self.states {
            self.vec.with_label_values(&[s]).set(i64::from(*s == state));
        }
    }

    /// Makes `state` the current one of `key`.
    pub fn set_for(&self, key: &str, state: &str) {
        debug_assert!(self.keyed, "an unkeyed state gauge needs set");
        debug_assert!(self.states.contains(&state), "unknown state {state}");
        for s in self.states {
            self.vec.with_label_values(&[key, s]).set(i64::from(*s == state));
        }
    }

    /// Removes every series of `key`.
    pub fn remove(&self, key: &str) {
        for s in self.states {
            let _ = self.vec.remove_label_values(&[key, s]);
        }
    }

    /// The current state (of `key`, for a keyed gauge), if one is set.
    pub fn current(&self, key: Option<&str>) -> Option<&'static str> {
        self.states.iter().copied().find(|s| {
            let v = match key {
                Some(k) => self.vec.get_metric_with_label_values(&[k, s]),
                None => self.vec.get_metric_with_label_values(&[s]),
            };
            v.is_ok_and(|g| g.get() == 1)
        })
    }
}

/// Latency buckets (seconds) for network round trips: 0.5 ms … 10 s.
pub fn network_buckets() -> Vec<f64> {
    vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
}

/// Latency buckets (seconds) for in-process stages: 1 µs … 100 ms.
pub fn local_buckets() -> Vec<f64> {
    vec![0.000_001, 0.000_005, 0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_metrics_render_as_prometheus_text() {
        let m = Metrics::new();
        let c = m.counter("things_total", "Things seen");
        c.inc_by(3);
        let g = m.gauge_vec("level", "Level per part", &["part"]);
        g.with_label_values(&["a"]).set(7);
        let text = m.render();
        assert!(text.contains("scalper_things_total 3"), "{text}");
        assert!(text.contains("scalper_level{part=\"a\"} 7"), "{text}");
    }

    #[test]
    fn a_state_gauge_has_one_series_per_state_and_only_the_current_is_1() {
        let m = Metrics::new();
        let g = m.state_gauge("mood", "Mood", "state", &["calm", "busy", "gone"], "calm");
        let text = m.render();
        assert!(text.contains("scalper_mood{state=\"calm\"} 1"), "{text}");
        assert!(text.contains("scalper_mood{state=\"busy\"} 0"), "{text}");
        g.set("gone");
        let text = m.render();
        assert!(text.contains("scalper_mood{state=\"calm\"} 0"), "{text}");
        assert!(text.contains("scalper_mood{state=\"gone\"} 1"), "{text}");
        assert_eq!(g.current(None), Some("gone"));

        let k = m.state_gauge_vec("part", "Part", "part", "status", &["ok", "down"]);
        k.set_for("feed", "down");
        let text = m.render();
        assert!(text.contains("scalper_part{part=\"feed\",status=\"down\"} 1"), "{text}");
        assert!(text.contains("scalper_part{part=\"feed\",status=\"ok\"} 0"), "{text}");
        k.remove("feed");
        assert!(!m.render().contains("scalper_part{"));
    }

    #[test]
    fn a_preset_counter_shows_every_known_combination_at_zero() {
        let m = Metrics::new();
        let c = m.counter_vec_preset(
            "orders_total",
            "Orders",
            &["purpose", "outcome"],
            &[&["entry", "exit"], &["filled", "rejected"]],
        );
        let text = m.render();
        for (p, o) in
            [("entry", "filled"), ("entry", "rejected"), ("exit", "filled"), ("exit", "rejected")]
        {
            let line = format!("scalper_orders_total{{outcome=\"{o}\",purpose=\"{p}\"}} 0");
            assert!(text.contains(&line), "{line} in {text}");
        }
        c.with_label_values(&["exit", "filled"]).inc();
        assert!(m.render().contains("scalper_orders_total{outcome=\"filled\",purpose=\"exit\"} 1"));
    }

    #[test]
    fn registering_a_name_twice_does_not_panic() {
        let m = Metrics::new();
        m.counter("dup_total", "d");
        m.counter("dup_total", "d");
    }
}
