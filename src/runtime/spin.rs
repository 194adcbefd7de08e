//! How a hot worker waits for its next input: asleep on its channels and sockets (the
//! default, idle-friendly), or spinning on them (`[host] busy_poll`, for a colocated host with
//! cores to spare). A spinning worker polls every input without blocking and pauses the CPU
//! between empty polls; one that shares its pinned core with another spinning worker yields
//! the core instead, so that the other one runs within a context switch rather than at the
//! scheduler's next tick.

/// A worker's way of waiting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Waiting {
    /// Block on channels and sockets (with timeouts): no CPU while idle.
    #[default]
    Sleep,
    /// Poll without blocking; `std::hint::spin_loop` between empty polls.
    Spin,
    /// Poll without blocking; `std::thread::yield_now` between empty polls (a core shared with
    /// another spinning worker).
    SpinYield,
}

impl Waiting {
    /// The way `worker` waits under `[host]`.
    pub fn for_worker(host: &crate::config::HostConfig, worker: &str) -> Waiting {
        match (host.spins(worker), host.shares_core(worker)) {
            (false, _) => Waiting::Sleep,
            (true, false) => Waiting::Spin,
            (true, true) => Waiting::SpinYield,
        }
    }

    pub fn spins(self) -> bool {
        self != Waiting::Sleep
    }

    /// Between two empty polls of a spinning worker.
    #[inline]
    pub fn pause(self) {
        match self {
            Waiting::Sleep => {}
            Waiting::Spin => std::hint::spin_loop(),
            Waiting::SpinYield => std::thread::yield_now(),
        }
    }
}
