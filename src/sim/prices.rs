//! The simulator's market: the current price of every simulated instrument. The feed half
//! moves prices and streams them; the broker half fills market orders at them. Shared by both.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::domain::{InstrumentKey, Paise, Timestamp};

#[derive(Clone, Debug, Default)]
pub struct PriceBoard(Arc<RwLock<HashMap<InstrumentKey, (Paise, Timestamp)>>>);

impl PriceBoard {
    pub fn new() -> PriceBoard {
        PriceBoard::default()
    }

    pub fn set(&self, key: InstrumentKey, price: Paise, at: Timestamp) {
        self.0.write().insert(key, (price, at));
    }

    /// The current price and when it was set, if the instrument is known.
    pub fn get(&self, key: InstrumentKey) -> Option<(Paise, Timestamp)> {
        self.0.read().get(&key).copied()
    }

    /// Forgets the instrument's price: the simulated RMS then rejects market orders on it
    /// ("no last traded price") until a price is set again.
    pub fn remove(&self, key: InstrumentKey) {
        self.0.write().remove(&key);
    }

    pub fn instruments(&self) -> Vec<InstrumentKey> {
        let mut v: Vec<_> = self.0.read().keys().copied().collect();
        v.sort();
        v
    }
}
