//! Per-hop timestamps of the tick → order path, for the end-to-end benchmark
//! (`benches/tick_to_order.rs`) and its smoke test: where the time between a crossing tick on
//! the feed socket and the exit's request on the broker's socket goes.
//!
//! Off by default: then a stamp is one relaxed atomic load and a branch, no clock read. A
//! measuring process calls [`enable`], clears the stamps with [`reset`] before it writes a
//! crossing tick, and reads them with [`read`] once the order has arrived. Each hop keeps the
//! *first* stamp since the last reset, so the figures describe one exit at a time on a quiet
//! feed (the benchmark's setup); with several exits in flight they mean nothing.
//!
//! Allocation counting: the benchmark's counting allocator asks [`counting`] on every
//! allocation. It answers with the calling thread's [`HotThread`] role (set once per thread by
//! [`mark_thread`]: the tick reader, the exit engine, the order placers) while the path is
//! *armed*: from the first socket-read stamp after a [`reset`] to the first-byte stamp. So it
//! counts the allocations of the hot threads between the crossing tick's arrival and the
//! request's first byte on the wire.
//!
//! Instants are nanoseconds since a process-wide origin (the first [`origin`] call), the same
//! monotonic clock as `std::time::Instant`, so a simulator in the same process can put its own
//! instants on the same axis with [`since_origin`].

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// The hops, in path order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    /// The reader's `read()` returned the feed frame.
    SocketRead = 0,
    /// A position tick was decoded and applied to the tick cache.
    Decoded = 1,
    /// The exit core decided the exit (the intent leaves the exit engine).
    Decided = 2,
    /// The order router took the exit off its queue.
    RouterDequeue = 3,
    /// The order journal's write-ahead record is durable.
    JournalDurable = 4,
    /// The request's first bytes were written to the broker's socket.
    FirstByteWritten = 5,
}

impl Hop {
    pub const ALL: [Hop; 6] = [
        Hop::SocketRead,
        Hop::Decoded,
        Hop::Decided,
        Hop::RouterDequeue,
        Hop::JournalDurable,
        Hop::FirstByteWritten,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Hop::SocketRead => "socket read",
            Hop::Decoded => "decoded",
            Hop::Decided => "core decision",
            Hop::RouterDequeue => "router dequeue",
            Hop::JournalDurable => "journal durable",
            Hop::FirstByteWritten => "first byte written",
        }
    }
}

/// The threads of the tick → wire path, for allocation counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HotThread {
    Reader = 1,
    ExitEngine = 2,
    Placer = 3,
}

impl HotThread {
    pub const ALL: [HotThread; 3] = [HotThread::Reader, HotThread::ExitEngine, HotThread::Placer];

    pub fn name(self) -> &'static str {
        match self {
            HotThread::Reader => "tick reader",
            HotThread::ExitEngine => "exit engine",
            HotThread::Placer => "order placer",
        }
    }
}

thread_local! {
    /// This thread's role on the path (0: none). No destructor, so it is readable from an
    /// allocator at any point of a thread's life.
    static ROLE: Cell<u8> = const { Cell::new(0) };
}

/// From the crossing tick's socket read to the request's first byte.
static ARMED: AtomicBool = AtomicBool::new(false);

/// Notes the calling thread's role on the path (once, when a hot worker starts).
pub fn mark_thread(role: HotThread) {
    let _ = ROLE.try_with(|r| r.set(role as u8));
}

/// The calling thread's role while the path is armed, for a counting allocator: `None` off
/// the path or outside the window. Allocates nothing.
#[inline]
pub fn counting() -> Option<HotThread> {
    if !ARMED.load(Ordering::Relaxed) {
        return None;
    }
    match ROLE.try_with(Cell::get).unwrap_or(0) {
        1 => Some(HotThread::Reader),
        2 => Some(HotThread::ExitEngine),
        3 => Some(HotThread::Placer),
        _ => None,
    }
}

fn arm_or_disarm(hop: Hop) {
    match hop {
        Hop::SocketRead => ARMED.store(true, Ordering::Release),
        Hop::FirstByteWritten => ARMED.store(false, Ordering::Release),
        _ => {}
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static STAMPS: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];
static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// The process-wide origin of the stamps.
pub fn origin() -> Instant {
    *ORIGIN.get_or_init(Instant::now)
}

/// Nanoseconds from the origin to `at` (never 0, which marks "not stamped").
pub fn since_origin(at: Instant) -> u64 {
    let ns = at.saturating_duration_since(origin()).as_nanos();
    u64::try_from(ns).unwrap_or(u64::MAX).max(1)
}

/// Starts recording (for the rest of the process).
pub fn enable() {
    origin();
    ENABLED.store(true, Ordering::Release);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Notes that `hop` happened now, unless it already has since the last [`reset`].
#[inline]
pub fn stamp(hop: Hop) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let now = since_origin(Instant::now());
    if STAMPS[hop as usize].compare_exchange(0, now, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
        arm_or_disarm(hop);
    }
}

/// [`stamp`] at an instant the caller has already read (no clock read here).
#[inline]
pub fn stamp_at(hop: Hop, at: Instant) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    if STAMPS[hop as usize]
        .compare_exchange(0, since_origin(at), Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
    {
        arm_or_disarm(hop);
    }
}

/// Clears every stamp.
pub fn reset() {
    ARMED.store(false, Ordering::Release);
    for s in &STAMPS {
        s.store(0, Ordering::Release);
    }
}

/// Each hop's stamp (nanoseconds since the origin), `None` where it has not happened.
pub fn read() -> [Option<u64>; 6] {
    let mut out = [None; 6];
    for (o, s) in out.iter_mut().zip(&STAMPS) {
        let v = s.load(Ordering::Acquire);
        *o = (v != 0).then_some(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_keep_the_first_instant_after_a_reset_and_arm_allocation_counting() {
        enable();
        reset();
        stamp(Hop::Decided);
        let first = read()[Hop::Decided as usize].expect("stamped");
        stamp(Hop::Decided);
        assert_eq!(read()[Hop::Decided as usize], Some(first));
        reset();
        assert_eq!(read()[Hop::Decided as usize], None);

        // Allocation counting (in the same test: the stamps are process-wide): a marked
        // thread counts from the socket read to the first byte.
        std::thread::spawn(|| {
            assert_eq!(counting(), None, "not armed, not marked");
            mark_thread(HotThread::ExitEngine);
            assert_eq!(counting(), None, "not armed yet");
            stamp(Hop::SocketRead);
            assert_eq!(counting(), Some(HotThread::ExitEngine));
            stamp(Hop::FirstByteWritten);
            assert_eq!(counting(), None, "the request is on the wire");
        })
        .join()
        .expect("the thread ends");
        assert_eq!(counting(), None, "this thread is not on the path");
    }
}
