//! Growing on demand: a [`Source`] of regions and [`Grow`], which claims a new region from it
//! when a policy runs out of memory.

use core::alloc::Layout;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use crate::{AllocError, Claim, FreeError, RawAlloc, RegionError, Stats};

/// Where new regions come from (the OS, a bigger heap, `memory.grow`).
///
/// # Safety
/// A region returned by [`acquire`](Self::acquire) must be valid for reads and writes for its
/// whole length, disjoint from every other region the source returned, and used by nothing else
/// until it is released (or forever, if the source never takes it back). Breaking this hands the
/// same memory to two owners.
pub unsafe trait Source {
    /// A region of at least `min_len` bytes, or `None` when the source is exhausted.
    fn acquire(&mut self, min_len: usize) -> Option<NonNull<[u8]>>;

    /// Takes back a region that [`acquire`](Self::acquire) returned and that was never used
    /// (the policy refused it). The default keeps it: a source that cannot take memory back
    /// loses the region, so [`Grow`] asks for one only when the policy can take it.
    ///
    /// # Safety
    /// `region` must be a region this source's `acquire` returned, not released since, and
    /// nothing may use it after this call.
    unsafe fn release(&mut self, region: NonNull<[u8]>) {
        let _ = region;
    }
}

/// A policy that grows: on out-of-memory, asks its [`Source`] for a region large enough for the
/// request and claims it as a new arena; arenas never move.
#[derive(Debug, Default)]
pub struct Grow<P, S> {
    policy: P,
    source: S,
    /// Whether the policy refused a region for want of room for another arena. Invariant:
    /// once set, the policy holds as many arenas as it can (arenas are never dropped), so no
    /// region is asked for again.
    full: bool,
}

impl<P, S> Grow<P, S> {
    /// `policy` growing from `source`.
    pub const fn new(policy: P, source: S) -> Self {
        Grow { policy, source, full: false }
    }

    /// The policy.
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// The policy, to change.
    pub fn policy_mut(&mut self) -> &mut P {
        &mut self.policy
    }

    /// The source of regions.
    pub fn source(&self) -> &S {
        &self.source
    }
}

impl<P: RawAlloc + Claim, S: Source> Grow<P, S> {
    /// Claims a region for a request that just failed; `false` if the source or the policy
    /// cannot take more.
    #[cold]
    #[inline(never)]
    fn grow_for(&mut self, layout: Layout) -> bool {
        if self.full {
            return false;
        }
        // Room for the block at its alignment plus the bitmap: twice the request covers both
        // for any policy whose metadata is under half its arena.
        let Some(min_len) = layout.size().max(layout.align()).checked_mul(2) else { return false };
        let Some(region) = self.source.acquire(min_len) else { return false };
        // SAFETY: the source's contract makes the region valid and ours alone.
        match unsafe { self.policy.claim_raw(region.cast::<u8>().as_ptr(), region.len()) } {
            Ok(()) => true,
            Err(error) => {
                self.full = matches!(error, RegionError::TooManyArenas { .. });
                // SAFETY: the source just gave us `region`, and the policy refused it: unused.
                unsafe { self.source.release(region) };
                false
            }
        }
    }

    /// `allocate(policy, layout)`, claiming a new region and trying once more on out-of-memory.
    #[inline]
    fn allocate_with(
        &mut self,
        layout: Layout,
        allocate: impl Fn(&mut P, Layout) -> Result<NonNull<[u8]>, AllocError>,
    ) -> Result<NonNull<[u8]>, AllocError> {
        match allocate(&mut self.policy, layout) {
            Err(AllocError::OutOfMemory { .. }) if self.grow_for(layout) => {
                allocate(&mut self.policy, layout)
            }
            other => other,
        }
    }
}

// SAFETY: every block comes from `P`, which upholds the contract; `Grow` only adds regions.
unsafe impl<P: RawAlloc + Claim, S: Source> RawAlloc for Grow<P, S> {
    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_with(layout, P::allocate)
    }

    fn allocate_marked(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_with(layout, P::allocate_marked)
    }

    #[inline]
    fn is_marked(&self, ptr: NonNull<u8>) -> Option<bool> {
        self.policy.is_marked(ptr)
    }

    #[inline]
    unsafe fn try_deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        // SAFETY: forwarded from our caller.
        unsafe { self.policy.try_deallocate(ptr, layout) }
    }

    #[inline]
    fn validate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        self.policy.validate(ptr, layout)
    }

    #[inline]
    fn rebase(&self, ptr: NonNull<u8>) -> Option<NonNull<u8>> {
        self.policy.rebase(ptr)
    }

    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded from our caller.
        unsafe { self.policy.grow_in_place(ptr, old, new) }
    }

    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded from our caller.
        unsafe { self.policy.shrink_in_place(ptr, old, new) }
    }

    fn flush(&mut self) {
        self.policy.flush();
    }

    fn release_spare(&mut self) -> bool {
        self.policy.release_spare()
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.policy.owns(ptr)
    }

    fn usable_size(&self, layout: Layout) -> Result<usize, AllocError> {
        self.policy.usable_size(layout)
    }

    fn stats(&self) -> Stats {
        self.policy.stats()
    }
}

impl<P: Claim, S> Claim for Grow<P, S> {
    fn claim(&mut self, region: &'static mut [MaybeUninit<u8>]) -> Result<(), RegionError> {
        self.policy.claim(region)
    }

    unsafe fn claim_raw(&mut self, ptr: *mut u8, len: usize) -> Result<(), RegionError> {
        // SAFETY: forwarded from our caller.
        unsafe { self.policy.claim_raw(ptr, len) }
    }
}

#[cfg(feature = "check-invariants")]
impl<P: crate::Inspect, S> crate::Inspect for Grow<P, S> {
    fn check_invariants(&self) -> Result<(), crate::InvariantError> {
        self.policy.check_invariants()
    }

    fn visit_metadata(&self, sink: &mut dyn FnMut(&[usize])) {
        self.policy.visit_metadata(sink);
    }
}
