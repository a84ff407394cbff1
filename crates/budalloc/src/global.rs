//! [`Global`]: the ready `#[global_allocator]` for programs with `std`.

use core::alloc::{GlobalAlloc, Layout};

use budalloc_core::{Grow, Stats};
use budalloc_sync::{Locked, Spin, SystemSource};

use crate::GlobalBuddy;

/// The buddy policy behind a spin lock, growing region by region from the OS:
///
/// ```no_run
/// #[global_allocator]
/// static ALLOC: budalloc::Global = budalloc::Global::new();
/// # fn main() {}
/// ```
///
/// Nothing on its path panics: out of memory returns null (and std reports it), detected misuse
/// (double free, foreign pointer, wrong layout) prints one line starting with
/// [`crate::fatal::FATAL_PREFIX`] and aborts.
pub struct Global {
    heap: Locked<Grow<GlobalBuddy, SystemSource>, Spin>,
}

impl Global {
    /// A global allocator with no memory yet; the first allocation maps the first region.
    pub const fn new() -> Self {
        Global { heap: Locked::new_spin(Grow::new(GlobalBuddy::new(), SystemSource::new())) }
    }

    /// The heap's figures (takes the lock).
    pub fn stats(&self) -> Stats {
        self.heap.stats()
    }

    /// Runs `f` on the buddy policy under the lock, to look at it (its arenas, its map).
    ///
    /// `f` must not allocate through this allocator: the lock is held, and a spin lock does not
    /// re-enter (the call would never return).
    pub fn inspect<R>(&self, f: impl FnOnce(&GlobalBuddy) -> R) -> R {
        self.heap.with(|grow| f(grow.policy()))
    }
}

impl Default for Global {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: forwards to `Locked`'s `GlobalAlloc`, which never panics and whose blocks come from
// the buddy policy's contract.
unsafe impl GlobalAlloc for Global {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        unsafe { self.heap.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        unsafe { self.heap.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from our caller.
        unsafe { self.heap.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        unsafe { self.heap.realloc(ptr, layout, new_size) }
    }
}
