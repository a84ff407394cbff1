//! [`StaticHeap`]: a `#[global_allocator]` over an `N`-byte array inside the static itself.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::fmt;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicUsize, Ordering};

use budalloc_core::{Claim, RawAlloc, Stats};

use crate::{Locked, Spin};

/// A spin-locked policy over its own `N`-byte array, claimed on first use: the `no_std`
/// global allocator.
///
/// The policy records the array's address when it claims it, so a `StaticHeap` must stay where
/// it was first used: a `static` always does. One that was used and then moved (out of a `Box`,
/// by `mem::swap`, ...) would hand out memory where it used to be; instead, it notices the move
/// and refuses to serve: [`try_heap`](Self::try_heap) answers [`Moved`], [`heap`](Self::heap)
/// panics, the `GlobalAlloc` allocation methods return null and `dealloc` aborts.
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
    /// The memory. Invariant: touched only by the policy, once `claimed_at` is set.
    memory: UnsafeCell<[MaybeUninit<u8>; N]>,
    /// 0 until the policy claims `memory`, then (set once, under the lock) the address `memory`
    /// had then. Invariant: the policy is used only while `memory` is still at that address.
    claimed_at: AtomicUsize,
    heap: Locked<A, Spin>,
}

// SAFETY: `memory` is only reached through the policy behind the lock (invariant of `memory`),
// `claimed_at` is atomic, and `Locked` is `Sync` for `A: Send`.
unsafe impl<A: Send, const N: usize> Sync for StaticHeap<A, N> {}

impl<A, const N: usize> StaticHeap<A, N> {
    /// `policy` over `N` bytes, claimed at the first allocation.
    pub const fn new(policy: A) -> Self {
        StaticHeap {
            memory: UnsafeCell::new([MaybeUninit::uninit(); N]),
            claimed_at: AtomicUsize::new(0),
            heap: Locked::new_spin(policy),
        }
    }
}

/// Why a [`StaticHeap`] refuses to serve: it was moved after its first use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    /// Where the array was when the policy claimed it.
    pub claimed_at: usize,
    /// Where it is now.
    pub now_at: usize,
}

impl fmt::Display for Moved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "StaticHeap used at {:#x} after its first use at {:#x}: it must not move",
            self.now_at, self.claimed_at
        )
    }
}

impl<A: RawAlloc + Claim, const N: usize> StaticHeap<A, N> {
    /// The locked policy, with its memory claimed, or why it cannot be used: the heap was moved
    /// since its first use.
    #[inline]
    pub fn try_heap(&self) -> Result<&Locked<A, Spin>, Moved> {
        let here = self.memory.get().addr();
        let claimed_at = match self.claimed_at.load(Ordering::Acquire) {
            0 => self.claim(),
            at => at,
        };
        if claimed_at == here {
            Ok(&self.heap)
        } else {
            Err(Moved { claimed_at, now_at: here })
        }
    }

    /// The locked policy, with its memory claimed.
    ///
    /// # Panics
    ///
    /// If the heap was moved since its first use (see [`try_heap`](Self::try_heap)).
    #[inline]
    pub fn heap(&self) -> &Locked<A, Spin> {
        match self.try_heap() {
            Ok(heap) => heap,
            Err(moved) => panic!("{moved}"),
        }
    }

    /// Claims the array for the policy unless that was done already; returns the address it was
    /// claimed at.
    #[cold]
    #[inline(never)]
    fn claim(&self) -> usize {
        self.heap.with(|policy| match self.claimed_at.load(Ordering::Relaxed) {
            0 => {
                let memory = self.memory.get().cast::<u8>();
                // SAFETY: the array lives as long as `self`, and from here on only the policy
                // touches it, while it stays at this address (checked by `try_heap` at every
                // use); `claimed_at` makes this happen once.
                let _ = unsafe { policy.claim_raw(memory, N) };
                let at = memory.addr();
                self.claimed_at.store(at, Ordering::Release);
                at
            }
            at => at,
        })
    }

    /// The policy's figures.
    ///
    /// # Panics
    ///
    /// As [`heap`](Self::heap).
    pub fn stats(&self) -> Stats {
        self.heap().stats()
    }
}

// SAFETY: forwards to `Locked`'s `GlobalAlloc`, whose guarantees hold once the memory is
// claimed and while it has not moved (`try_heap` makes sure of both); a moved heap allocates
// nothing and aborts on `dealloc`, never touching the memory it used to have.
unsafe impl<A: RawAlloc + Claim + Send, const N: usize> GlobalAlloc for StaticHeap<A, N> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.try_heap() {
            // SAFETY: forwarded from our caller.
            Ok(heap) => unsafe { heap.alloc(layout) },
            Err(_) => core::ptr::null_mut(),
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match self.try_heap() {
            // SAFETY: forwarded from our caller.
            Ok(heap) => unsafe { heap.alloc_zeroed(layout) },
            Err(_) => core::ptr::null_mut(),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match self.try_heap() {
            // SAFETY: forwarded from our caller.
            Ok(heap) => unsafe { heap.dealloc(ptr, layout) },
            Err(moved) => crate::fatal::fail(&moved),
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match self.try_heap() {
            // SAFETY: forwarded from our caller.
            Ok(heap) => unsafe { heap.realloc(ptr, layout, new_size) },
            Err(_) => core::ptr::null_mut(),
        }
    }
}
