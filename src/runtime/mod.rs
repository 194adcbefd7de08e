//! The supervised worker runtime: named worker threads, their stop signals and heartbeats, and
//! the supervisor that restarts a panicked worker with backoff and escalates when one keeps
//! failing.

pub mod worker;

pub use worker::{Heartbeat, StopHandle, StopSignal, Worker, WorkerCtx, monotonic_millis};
