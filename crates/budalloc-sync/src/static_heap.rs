//! [`StaticHeap`]: a `#[global_allocator]` over an `N`-byte array inside the static itself.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

use budalloc_core::{Claim, RawAlloc, Stats};

use crate::{Locked, Spin};

/// A spin-locked policy over its own `N`-byte array, claimed on first use: the `no_std`
/// global allocator.
///
/// ```
/// use budalloc_buddy::Buddy;
/// use budalloc_sync::StaticHeap;
///
/// #[global_allocator]
/// static HEAP: StaticHeap<Buddy<16, 4096>, { 64 * 1024 }> = StaticHeap::new(Buddy::new());
/// # fn main() { let v = vec![1, 2, 3]; assert_eq!(v.len(), 3); }
/// ```
pub struct StaticHeap<A, const N: usize> {
    /// The memory. Invariant: touched only by the policy, once `claimed` is set.
    memory: UnsafeCell<[MaybeUninit<u8>; N]>,
    /// Set (under the lock) once `memory` was claimed by the policy.
    claimed: AtomicBool,
    heap: Locked<A, Spin>,
}

// SAFETY: `memory` is only reached through the policy behind the lock (invariant of `memory`),
// `claimed` is atomic, and `Locked` is `Sync` for `A: Send`.
unsafe impl<A: Send, const N: usize> Sync for StaticHeap<A, N> {}

impl<A, const N: usize> StaticHeap<A, N> {
    /// `policy` over `N` bytes, claimed at the first allocation.
    pub const fn new(policy: A) -> Self {
        StaticHeap {
            memory: UnsafeCell::new([MaybeUninit::uninit(); N]),
            claimed: AtomicBool::new(false),
            heap: Locked::new_spin(policy),
        }
    }
}

impl<A: RawAlloc + Claim, const N: usize> StaticHeap<A, N> {
    /// The locked policy, with its memory claimed.
    #[inline]
    pub fn heap(&self) -> &Locked<A, Spin> {
        if !self.claimed.load(Ordering::Acquire) {
            self.claim();
        }
        &self.heap
    }

    #[cold]
    #[inline(never)]
    fn claim(&self) {
        self.heap.with(|policy| {
            if !self.claimed.load(Ordering::Relaxed) {
                let memory = self.memory.get().cast::<u8>();
                // SAFETY: the array lives as long as `self` (a static, in practice) and, from
                // here on, only the policy touches it; the flag makes this happen once.
                let _ = unsafe { policy.claim_raw(memory, N) };
                self.claimed.store(true, Ordering::Release);
            }
        });
    }

    /// The policy's figures.
    pub fn stats(&self) -> Stats {
        self.heap().stats()
    }
}

// SAFETY: forwards to `Locked`'s `GlobalAlloc`, whose guarantees hold once the memory is
// claimed (`heap()` makes sure of that).
unsafe impl<A: RawAlloc + Claim + Send, const N: usize> GlobalAlloc for StaticHeap<A, N> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        unsafe { self.heap().alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        unsafe { self.heap().alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from our caller.
        unsafe { self.heap().dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        unsafe { self.heap().realloc(ptr, layout, new_size) }
    }
}
