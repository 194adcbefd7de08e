//! Health: every component reports its own status here; `/health`, the metrics and the
//! [`HealthWatch`] read it. A component is `Ok`, `Degraded` (working, but something needs a
//! look) or `Down`; the engine is healthy when nothing is `Down`. Health never stops the
//! systemd watchdog: a component down is reported (503 on `/health`,
//! `scalper_health_component_status`, a critical alert), and the engine keeps running, since a
//! restart would not bring a feed or a broker back and exits may depend on the fallbacks.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::Serialize;

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Degraded,
    Down,
}

impl Status {
    /// Every status, as the `status` label of `scalper_health_component_status`.
    pub const NAMES: &'static [&'static str] = &["ok", "degraded", "down"];

    pub const fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Degraded => "degraded",
            Status::Down => "down",
        }
    }
}

/// One component's health: a status, a one-line reason, and details as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct ComponentHealth {
    pub status: Status,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl ComponentHealth {
    pub fn ok() -> ComponentHealth {
        ComponentHealth {
            status: Status::Ok,
            reason: String::new(),
            details: serde_json::Value::Null,
        }
    }

    pub fn new(status: Status, reason: impl Into<String>) -> ComponentHealth {
        ComponentHealth { status, reason: reason.into(), details: serde_json::Value::Null }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> ComponentHealth {
        self.details = details;
        self
    }
}

/// The shared board of component health. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct HealthBoard(Arc<RwLock<BTreeMap<String, ComponentHealth>>>);

impl HealthBoard {
    pub fn new() -> HealthBoard {
        HealthBoard::default()
    }

    pub fn set(&self, component: &str, health: ComponentHealth) {
        self.0.write().insert(component.to_string(), health);
    }

    pub fn remove(&self, component: &str) {
        self.0.write().remove(component);
    }

    pub fn get(&self, component: &str) -> Option<ComponentHealth> {
        self.0.read().get(component).cloned()
    }

    /// Every component, by name.
    pub fn snapshot(&self) -> BTreeMap<String, ComponentHealth> {
        self.0.read().clone()
    }

    /// The worst status of all components (`Ok` when there are none).
    pub fn overall(&self) -> Status {
        self.0.read().values().map(|h| h.status).max().unwrap_or(Status::Ok)
    }
}

/// A component that went down, or came back from down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    Down { component: String, reason: String },
    Recovered { component: String },
}

/// What changed between the statuses seen last and the board now (pure). A component that
/// disappears while down has recovered.
pub fn transitions(
    before: &BTreeMap<String, Status>,
    now: &BTreeMap<String, ComponentHealth>,
) -> Vec<Transition> {
    let mut out = Vec::new();
    for (name, h) in now {
        let was_down = before.get(name) == Some(&Status::Down);
        match (was_down, h.status == Status::Down) {
            (false, true) => {
                out.push(Transition::Down { component: name.clone(), reason: h.reason.clone() })
            }
            (true, false) => out.push(Transition::Recovered { component: name.clone() }),
            _ => {}
        }
    }
    for (name, status) in before {
        if *status == Status::Down && !now.contains_key(name) {
            out.push(Transition::Recovered { component: name.clone() });
        }
    }
    out
}

/// Watches the board from the main loop: every component's status in
/// `scalper_health_component_status`, and the transitions into and out of `Down` for the
/// caller to alert on.
pub struct HealthWatch {
    last: BTreeMap<String, Status>,
    gauge: crate::ops::metrics::StateGauge,
}

impl HealthWatch {
    pub fn new(metrics: &crate::ops::metrics::Metrics) -> HealthWatch {
        HealthWatch {
            last: BTreeMap::new(),
            gauge: metrics.state_gauge_vec(
                "health_component_status",
                "Health of each component: 1 for its current status (ok, degraded, down), 0 \
                 for the others",
                "component",
                "status",
                Status::NAMES,
            ),
        }
    }

    pub fn check(&mut self, board: &HealthBoard) -> Vec<Transition> {
        let now = board.snapshot();
        let changes = transitions(&self.last, &now);
        for name in self.last.keys().filter(|n| !now.contains_key(*n)) {
            self.gauge.remove(name);
        }
        for (name, h) in &now {
            self.gauge.set_for(name, h.status.name());
        }
        self.last = now.into_iter().map(|(n, h)| (n, h.status)).collect();
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Case = (BTreeMap<String, Status>, BTreeMap<String, ComponentHealth>, Vec<Transition>);

    #[test]
    fn transitions_into_and_out_of_down_only() {
        let st = |pairs: &[(&str, Status)]| -> BTreeMap<String, Status> {
            pairs.iter().map(|(n, s)| (n.to_string(), *s)).collect()
        };
        let board = |pairs: &[(&str, Status)]| -> BTreeMap<String, ComponentHealth> {
            pairs.iter().map(|(n, s)| (n.to_string(), ComponentHealth::new(*s, "why"))).collect()
        };
        use Status::*;
        let down = |c: &str| Transition::Down { component: c.into(), reason: "why".into() };
        let back = |c: &str| Transition::Recovered { component: c.into() };
        let cases: Vec<Case> = vec![
            (st(&[]), board(&[("feed", Ok)]), vec![]),
            (st(&[("feed", Ok)]), board(&[("feed", Degraded)]), vec![]),
            (st(&[("feed", Degraded)]), board(&[("feed", Down)]), vec![down("feed")]),
            (st(&[]), board(&[("feed", Down)]), vec![down("feed")]),
            (st(&[("feed", Down)]), board(&[("feed", Down)]), vec![]),
            (st(&[("feed", Down)]), board(&[("feed", Degraded)]), vec![back("feed")]),
            (st(&[("lease", Down)]), board(&[]), vec![back("lease")]),
            (
                st(&[("a", Down), ("b", Ok)]),
                board(&[("a", Ok), ("b", Down)]),
                vec![back("a"), down("b")],
            ),
        ];
        for (before, now, want) in cases {
            assert_eq!(transitions(&before, &now), want, "{before:?} -> {now:?}");
        }
    }

    #[test]
    fn the_watch_publishes_every_component_and_reports_each_transition_once() {
        let metrics = crate::ops::metrics::Metrics::new();
        let mut watch = HealthWatch::new(&metrics);
        let b = HealthBoard::new();
        b.set("feed", ComponentHealth::new(Status::Down, "no feed"));
        assert_eq!(watch.check(&b).len(), 1);
        assert!(watch.check(&b).is_empty(), "reported once");
        let text = metrics.render();
        let down = "scalper_health_component_status{component=\"feed\",status=\"down\"} 1";
        assert!(text.contains(down), "{text}");
        let ok = "scalper_health_component_status{component=\"feed\",status=\"ok\"} 0";
        assert!(text.contains(ok), "{text}");
        b.set("feed", ComponentHealth::ok());
        assert_eq!(watch.check(&b), vec![Transition::Recovered { component: "feed".into() }]);
    }

    #[test]
    fn overall_is_the_worst_component() {
        let b = HealthBoard::new();
        assert_eq!(b.overall(), Status::Ok);
        b.set("feed", ComponentHealth::new(Status::Degraded, "reconnecting"));
        b.set("store", ComponentHealth::ok());
        assert_eq!(b.overall(), Status::Degraded);
        b.set("broker", ComponentHealth::new(Status::Down, "breaker open"));
        assert_eq!(b.overall(), Status::Down);
    }
}
