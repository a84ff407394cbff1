//! [`Local`]: a single-threaded cell around a policy.

use core::cell::{Cell, UnsafeCell};
use core::mem::MaybeUninit;

use budalloc_core::{Claim, RawAlloc, RegionError, Stats};

use crate::frontend::{allocator_via_frontend, Frontend};

/// A policy made usable through `&self` on one thread: `&Local<A>` is an `allocator_api2`
/// `Allocator`.
///
/// `Local` is `!Sync`: it cannot be shared between threads. It guards against re-entrance (an
/// allocation made from inside [`Local::with`]) with a flag, so the `&mut` it hands to the
/// policy is always unique.
///
/// Zero-size requests get a dangling, well-aligned pointer and never reach the policy; freeing
/// one is a no-op.
pub struct Local<A> {
    /// The policy. Invariant: a `&mut A` to it exists only while `busy` is set, inside
    /// [`Local::enter`].
    inner: UnsafeCell<A>,
    /// Set while a call is inside the policy.
    busy: Cell<bool>,
}

impl<A: Default> Default for Local<A> {
    fn default() -> Self {
        Local::new(A::default())
    }
}

/// Clears the busy flag when a call leaves the policy, also on unwinding.
struct Busy<'a>(&'a Cell<bool>);

impl Drop for Busy<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl<A> Local<A> {
    /// Wraps `policy`.
    pub const fn new(policy: A) -> Self {
        Local { inner: UnsafeCell::new(policy), busy: Cell::new(false) }
    }

    /// The policy, when the frontend is not shared.
    pub fn get_mut(&mut self) -> &mut A {
        self.inner.get_mut()
    }

    /// Unwraps the policy.
    pub fn into_inner(self) -> A {
        self.inner.into_inner()
    }

    /// Runs `f` on the policy; `None` if called from inside another call on this frontend.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut A) -> R) -> Option<R> {
        if self.busy.replace(true) {
            return None;
        }
        let _busy = Busy(&self.busy);
        // SAFETY: `busy` was clear and is now set until `_busy` drops, so no other `&mut A`
        // exists (invariant of `inner`); `Local` is `!Sync`, so no other thread can be here.
        let policy = unsafe { &mut *self.inner.get() };
        Some(f(policy))
    }

    /// Runs `f` on the policy; panics on re-entrance (a call made from inside [`Local::with`]).
    #[inline]
    #[track_caller]
    fn enter<R>(&self, f: impl FnOnce(&mut A) -> R) -> R {
        match self.with(f) {
            Some(r) => r,
            None => reentered(),
        }
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn reentered() -> ! {
    panic!("budalloc: Local frontend re-entered from inside `Local::with`")
}

impl<A: RawAlloc> Local<A> {
    /// The policy's figures.
    pub fn stats(&self) -> Stats {
        self.enter(|a| a.stats())
    }
}

impl<A: Claim> Local<A> {
    /// Gives the policy a `'static` region as a new arena.
    ///
    /// # Errors
    /// The region is unusable or the policy is full; nothing is claimed then.
    pub fn claim(&self, region: &'static mut [MaybeUninit<u8>]) -> Result<(), RegionError> {
        self.enter(|a| a.claim(region))
    }

    /// Gives the policy `len` bytes at `ptr` as a new arena.
    ///
    /// # Errors
    /// As [`claim`](Self::claim), plus null or wrapping regions.
    ///
    /// # Safety
    /// As [`Claim::claim_raw`]: the region must be valid for reads and writes and used by
    /// nothing else until the policy is dropped.
    pub unsafe fn claim_raw(&self, ptr: *mut u8, len: usize) -> Result<(), RegionError> {
        // SAFETY: forwarded from our caller.
        self.enter(|a| unsafe { a.claim_raw(ptr, len) })
    }
}

impl<A: RawAlloc> Frontend for Local<A> {
    type Policy = A;

    #[inline]
    fn enter<R>(&self, f: impl FnOnce(&mut A) -> R) -> R {
        Local::enter(self, f)
    }
}

allocator_via_frontend!([A: RawAlloc] Local<A>);
