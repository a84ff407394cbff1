//! [`Local`]: a single-threaded cell around a policy.

use core::alloc::Layout;
use core::cell::{Cell, UnsafeCell};
use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};

use allocator_api2::alloc::{AllocError as ApiAllocError, Allocator};
use budalloc_core::{Claim, RawAlloc, RegionError, Stats};

/// A policy made usable through `&self` on one thread: `&Local<A>` is an `allocator_api2`
/// [`Allocator`].
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

/// A dangling pointer aligned to `align`, for zero-size blocks (strict provenance: no
/// provenance at all).
#[inline]
fn dangling(align: usize) -> NonNull<u8> {
    let ptr = ptr::without_provenance_mut::<u8>(align);
    NonNull::new(ptr).unwrap_or(NonNull::dangling())
}

#[inline]
fn empty(layout: Layout) -> NonNull<[u8]> {
    NonNull::slice_from_raw_parts(dangling(layout.align()), 0)
}

/// Zeroes `block[from..]`.
///
/// # Safety
/// `block` must be valid for writes of its length, and `from <= block.len()`.
#[inline]
unsafe fn zero_from(block: NonNull<[u8]>, from: usize) {
    let start = block.cast::<u8>().as_ptr().wrapping_add(from);
    // SAFETY: `from <= block.len()`, and the block is valid for writes of its length.
    unsafe { start.write_bytes(0, block.len() - from) };
}

// SAFETY: blocks come from the policy, whose `RawAlloc` contract makes them valid, disjoint and
// kept until freed; zero-size blocks are dangling and never dereferenced or freed. `&Local` is
// not `Send`, so the allocator is used from one thread; `Local` may be moved, but no block
// depends on its address (blocks live in the arenas).
unsafe impl<A: RawAlloc> Allocator for &Local<A> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, ApiAllocError> {
        if layout.size() == 0 {
            return Ok(empty(layout));
        }
        self.enter(|a| a.allocate(layout)).map_err(|_| ApiAllocError)
    }

    #[inline]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, ApiAllocError> {
        let block = self.allocate(layout)?;
        // SAFETY: a fresh block is valid for writes of its length.
        unsafe { zero_from(block, 0) };
        Ok(block)
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: the caller promises `ptr` is currently allocated and `layout` fits it.
            self.enter(|a| unsafe { a.deallocate(ptr, layout) });
        }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, ApiAllocError> {
        if old.size() == 0 {
            return self.allocate(new);
        }
        // SAFETY: the caller's promises (`ptr` live, `old` fits, `new.size() >= old.size()`)
        // are the policy's `grow` contract.
        self.enter(|a| unsafe { a.grow(ptr, old, new) }).map_err(|_| ApiAllocError)
    }

    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, ApiAllocError> {
        // SAFETY: forwarded from our caller.
        let block = unsafe { self.grow(ptr, old, new) }?;
        // SAFETY: the grown block is valid for writes of its length; `old.size() <= new.size()
        // <= block.len()`.
        unsafe { zero_from(block, old.size()) };
        Ok(block)
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, ApiAllocError> {
        if new.size() == 0 {
            // SAFETY: the caller promises `ptr` is live with `old`.
            unsafe { self.deallocate(ptr, old) };
            return Ok(empty(new));
        }
        // SAFETY: the caller's promises are the policy's `shrink` contract.
        self.enter(|a| unsafe { a.shrink(ptr, old, new) }).map_err(|_| ApiAllocError)
    }
}
