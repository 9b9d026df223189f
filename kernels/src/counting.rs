//! A global allocator that counts allocations, for the tests that prove an engine's `activate` and
//! `infer` allocate nothing. Install it in a test binary without libtest (`harness = false`: the
//! allocator sees every thread, and libtest's own threads allocate):
//!
//! ```text
//! #[global_allocator]
//! static GLOBAL: dynofa_kernels::counting::Counting = dynofa_kernels::counting::Counting;
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting allocations and reallocations.
#[derive(Debug)]
pub struct Counting;

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations so far by a [`Counting`] global allocator (0 when it is not installed).
pub fn allocations() -> usize {
    ALLOCATIONS.load(Ordering::SeqCst)
}
