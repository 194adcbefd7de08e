//! The built-in Dhan simulator: a market-data WebSocket server and a broker (REST + order-update
//! socket) that follow spec dhan-v2 as faithfully as the engine's client must. Used by `make run`
//! (paper mode), by `scalper sim`, and by the tests over real loopback sockets. `setup` builds
//! it from the configuration; `command` is `scalper sim`.

pub mod broker;
pub mod command;
pub mod faults;
pub mod feed;
pub mod http;
pub mod limits;
pub mod listener;
pub mod order_socket;
pub mod orders;
pub mod prices;
pub mod render;
pub mod rest_api;
pub mod saved_prices;
pub mod scenario;
pub mod setup;
pub mod validate;
