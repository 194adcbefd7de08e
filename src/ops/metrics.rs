//! Prometheus metrics. One [`Metrics`] per engine (a registry, not a global, so that tests can
//! run several engines in one process). Metric handles are created once when the engine is
//! built, outside any worker, and captured by the worker factories: a respawned worker keeps
//! counting into the same series.

use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
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
    fn registering_a_name_twice_does_not_panic() {
        let m = Metrics::new();
        m.counter("dup_total", "d");
        m.counter("dup_total", "d");
    }
}
