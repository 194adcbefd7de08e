//! The supervised worker runtime: named worker threads, their stop signals and heartbeats, and
//! the supervisor that restarts a panicked worker with backoff and escalates when one keeps
//! failing; plus signals, systemd notification, host tuning and the data directory's lock.

pub mod backoff;
pub mod dir_lock;
pub mod failpoint;
pub mod hops;
pub mod host;
pub mod http_message;
pub mod http_server;
pub mod panic_hook;
pub mod signals;
pub mod spin;
pub mod supervisor;
pub mod systemd;
pub mod worker;

pub use backoff::{Backoff, BackoffPolicy};
pub use supervisor::{
    StatusTable, Supervisor, SupervisorConfig, SupervisorEvent, SupervisorHandle,
    SupervisorOutcome, WorkerSpec, WorkerState, WorkerStatus,
};
pub use worker::{
    Heartbeat, StopHandle, StopSignal, Worker, WorkerCtx, beat_current_thread,
    bind_heartbeat_to_thread, monotonic_millis, monotonic_millis_at,
};
