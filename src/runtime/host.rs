//! Low-latency host options: pinning named worker threads to CPU cores and locking the
//! process's memory. Both are off unless configured, and both report what was applied: a
//! request that cannot be honoured is logged, never fatal.

/// Pins the calling thread to `core`. Returns whether it was applied.
pub fn pin_current_thread(worker: &str, core: usize) -> bool {
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    match ids.into_iter().find(|c| c.id == core) {
        Some(id) if core_affinity::set_for_current(id) => {
            log::info!(target: "host", "Worker {worker} pinned to CPU core {core}");
            true
        }
        Some(_) => {
            log::warn!(target: "host", "Could not pin worker {worker} to CPU core {core}");
            false
        }
        None => {
            log::warn!(target: "host", "Worker {worker}: CPU core {core} does not exist; not pinned");
            false
        }
    }
}

/// Locks all current and future pages of the process in memory (`mlockall`), so the hot path
/// never takes a page fault to swap. Needs `LimitMEMLOCK=infinity` (or CAP_IPC_LOCK) under
/// systemd. Returns whether it was applied.
pub fn lock_memory() -> bool {
    // SAFETY: mlockall takes two flags and touches no Rust-visible memory.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    if rc == 0 {
        log::info!(target: "host", "Memory locked (mlockall)");
        true
    } else {
        let err = std::io::Error::last_os_error();
        log::warn!(target: "host", "mlockall failed: {err}; memory is not locked");
        false
    }
}

/// Number of CPU cores the process may run on.
pub fn core_count() -> usize {
    core_affinity::get_core_ids().map(|v| v.len()).unwrap_or(1)
}
