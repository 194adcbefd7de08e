//! A read-only view of the exit core, for the workers that only look at it (the PnL refresher,
//! the heartbeat): the exit-engine worker alone holds the core mutably.

use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use super::ExitCore;

/// Reads the exit core under a short lock; cannot change it. Cheap to clone.
#[derive(Clone)]
pub struct CoreView(Arc<Mutex<ExitCore>>);

impl CoreView {
    pub fn new(core: &Arc<Mutex<ExitCore>>) -> CoreView {
        CoreView(core.clone())
    }

    /// Locks the core for reading; keep the guard short-lived (the exit engine waits on it).
    pub fn read(&self) -> CoreRead<'_> {
        CoreRead(self.0.lock())
    }
}

/// The exit core, locked for reading.
pub struct CoreRead<'a>(MutexGuard<'a, ExitCore>);

impl std::ops::Deref for CoreRead<'_> {
    type Target = ExitCore;

    fn deref(&self) -> &ExitCore {
        &self.0
    }
}
