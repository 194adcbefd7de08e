//! scalper: a synchronous live-trading runtime that keeps options positions on Dhan safe.
//!
//! The path of a tick: `feed` (socket → codec → tick cache) → `exec::exit_engine` (risk rules
//! from `risk`) → `exec::router` → `broker` (paper or Dhan). `runtime` supervises the worker
//! threads, `store` persists (`engine::persist` wires it in, with restart recovery), `publish`
//! mirrors live state to Redis, `instance` keeps a second engine on the same account from
//! trading, `ops` is the operator's surface, `alerts` delivers alerts to people, `sim` is the built-in Dhan simulator, `replay`
//! drives the same core on a virtual clock. `fuzzing` is the harness shared by the `cargo fuzz`
//! targets in `fuzz/` and the corpus regression test.

pub mod alerts;
pub mod app;
pub mod broker;
pub mod cli;
pub mod config;
pub mod domain;
pub mod engine;
pub mod exec;
pub mod feed;
pub mod fuzzing;
pub mod instance;
pub mod instruments;
pub mod ops;
pub mod pnl;
pub mod publish;
pub mod replay;
pub mod risk;
pub mod runtime;
pub mod sim;
pub mod store;
