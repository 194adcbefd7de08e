//! The system allocator with a hook called on every allocation (not on a free), for the
//! allocation counts of the tick → wire path: `benches/tick_to_order.rs` counts per hot
//! thread, `tests/order_path_allocations.rs` per closure. The hook must not allocate.

use std::alloc::{GlobalAlloc, Layout, System};

pub struct Counting(pub fn());

// SAFETY: every call is forwarded to the system allocator unchanged; the hook is documented
// to allocate nothing (it reads a thread-local without a destructor or bumps an atomic).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        (self.0)();
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        (self.0)();
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        (self.0)();
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}
