//! Each worker's handles, built from the engine's [`Shared`] wiring: a worker gets exactly the
//! pieces it uses, never the whole of it. Only the exit engine gets the exit core mutably; the
//! others read it through a [`CoreView`], and the order book through an `OrderBookView` where
//! they only look.

use crate::exec::router::RouterHandles;

use super::shared::Shared;

impl Shared {
    /// The order router's.
    pub fn router_handles(&self) -> RouterHandles {
        RouterHandles {
            clock: self.clock.clone(),
            orders: self.orders.clone(),
            gateway: self.gateway.clone(),
            sink: self.sink.clone(),
            m: self.m.clone(),
            exits_to_router_rx: self.channels.exits_to_router_rx.clone(),
            entries_to_router_rx: self.channels.entries_to_router_rx.clone(),
            router_to_exit_engine_tx: self.channels.router_to_exit_engine_tx.clone(),
        }
    }
}
