//! Health: every component reports its own status here, the HTTP surface and the systemd
//! watchdog read it. A component is `Ok`, `Degraded` (working, but something needs a look) or
//! `Down`; the engine is healthy when nothing is `Down`.

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

#[cfg(test)]
mod tests {
    use super::*;

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
