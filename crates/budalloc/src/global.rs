//! [`Global`] and [`CachedGlobal`]: the ready `#[global_allocator]`s for programs with `std`.

use core::alloc::{GlobalAlloc, Layout};

use budalloc_classes::Classes;
use budalloc_core::{FreeError, Grow, Stats};
use budalloc_sync::{Cached, Locked, Spin, SystemSource};
use budalloc_tlsf::Tlsf;

use crate::{GlobalBuddy, GlobalSlabBuddy};

/// The policy behind [`Global`]: the default [`Heap`](crate::Heap)'s composition (size classes
/// up to 4 KiB over TLSF chunks of the exact-fit buddy, as [`ClassesBuddy`](crate::ClassesBuddy)),
/// its buddy growing region by region from the OS, its classes keeping up to four empty slabs
/// each as there.
pub type GlobalHeap =
    Classes<Tlsf<Grow<GlobalSlabBuddy, SystemSource>, { 1 << 20 }, { 128 * 1024 }>, 4096, 4, 4>;

/// The default heap's policy ([`GlobalHeap`]) behind a spin lock, growing region by region from
/// the OS: every free is checked at once, against the policy's own metadata, and a request
/// keeps what the default heap keeps (at most 19.8% rounding above 64 B in the classes, a
/// 64-byte granule in the chunks, a 1 KiB fragment above 128 KiB), where the plain buddy would
/// round it up to a power of two.
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
    heap: Locked<GlobalHeap, Spin>,
}

impl Global {
    /// A global allocator with no memory yet; the first allocation maps the first region.
    pub const fn new() -> Self {
        Global {
            heap: Locked::new_spin(Classes::new(Tlsf::new(Grow::new(
                GlobalSlabBuddy::new(),
                SystemSource::new(),
            )))),
        }
    }

    /// The heap's figures (takes the lock).
    pub fn stats(&self) -> Stats {
        self.heap.stats()
    }

    /// Runs `f` on the policy under the lock, to look at it (its classes, chunks, and through
    /// `backend()` the buddy's arenas and map).
    ///
    /// `f` must not allocate through this allocator: the lock is held, and a spin lock does not
    /// re-enter (the call would never return).
    pub fn inspect<R>(&self, f: impl FnOnce(&GlobalHeap) -> R) -> R {
        self.heap.with(|heap| f(heap))
    }

    /// Runs `f` on the buddy under the classes and chunks ([`Self::inspect`]'s rules apply).
    pub fn inspect_buddy<R>(&self, f: impl FnOnce(&GlobalSlabBuddy) -> R) -> R {
        self.inspect(|heap| f(heap.backend().backend().policy()))
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

/// The policy behind [`CachedGlobal`]: size classes up to 32 KiB over the plain buddy, growing
/// region by region from the OS. A global allocator is judged on speed first: the classes serve
/// (and the per-thread magazines cache) nearly every request, and the plain buddy serves the rest
/// without the exact-fit buddy's best-fit search (see the README's performance section).
pub type GlobalClasses = Classes<Grow<GlobalBuddy, SystemSource>, { 32 * 1024 }>;

/// The one shared heap behind every [`CachedGlobal`] (a process has one global allocator).
static SHARED: Locked<GlobalClasses, Spin> =
    Locked::new_spin(Classes::new(Grow::new(GlobalBuddy::new(), SystemSource::new())));

/// Per-thread caches ([`Cached`]) over size classes over the buddy, growing from the OS: the
/// global allocator for multi-threaded programs.
///
/// ```no_run
/// #[global_allocator]
/// static ALLOC: budalloc::CachedGlobal = budalloc::CachedGlobal::new();
/// # fn main() {}
/// ```
///
/// Allocations and frees of every class (16 B to 32 KiB) go through the calling thread's
/// magazines without a lock; larger ones, refills and flushes take the shared heap's spin
/// lock. As with [`Global`], nothing panics: out of memory returns null and detected misuse
/// aborts with one line; but a misuse of a small block other than a double free into the
/// thread's own magazine is detected when the magazine is flushed, not at the faulty call, and
/// a double free whose first free already reached the shared heap can go unreported (see
/// [`Cached`]). Use [`Global`] where every free must be checked at once.
pub struct CachedGlobal {
    cached: Cached<GlobalClasses, Spin>,
}

impl CachedGlobal {
    /// The global allocator; the first allocation maps the first region.
    pub const fn new() -> Self {
        CachedGlobal { cached: Cached::new(&SHARED) }
    }

    /// The shared heap's figures (takes the lock). Objects in threads' magazines count as
    /// allocated: call [`flush_thread`](Self::flush_thread) first for the calling thread's.
    pub fn stats(&self) -> Stats {
        SHARED.stats()
    }

    /// Gives the calling thread's cached objects back to the shared heap (threads do it when
    /// they exit).
    ///
    /// # Errors
    /// A cached object was rejected by the shared heap (misuse detected late).
    pub fn flush_thread(&self) -> Result<(), FreeError> {
        self.cached.flush_thread()
    }

    /// Runs `f` on the shared policy under the lock, to look at it. `f` must not allocate
    /// through this allocator (the spin lock does not re-enter).
    pub fn inspect<R>(&self, f: impl FnOnce(&GlobalClasses) -> R) -> R {
        SHARED.with(|policy| f(policy))
    }
}

impl Default for CachedGlobal {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: forwards to `Cached`'s `GlobalAlloc`, which never panics and whose blocks come from
// the shared policy's contract.
unsafe impl GlobalAlloc for CachedGlobal {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        unsafe { self.cached.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        unsafe { self.cached.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from our caller.
        unsafe { self.cached.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        unsafe { self.cached.realloc(ptr, layout, new_size) }
    }
}
