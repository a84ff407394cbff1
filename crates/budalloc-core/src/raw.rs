//! The one trait between layers: a single-threaded allocation policy.

use core::alloc::Layout;
use core::ptr::NonNull;

use crate::{AllocError, FreeError, Stats};

/// A single-threaded allocation policy over memory it owns (arenas).
///
/// Policies take `&mut self` and hold no interior mutability; the frontends of `budalloc-sync`
/// turn any implementor into an `allocator_api2` `Allocator` or a `GlobalAlloc`.
///
/// Terms used below, as in `allocator_api2::alloc::Allocator`:
/// - a block is **currently allocated** from `self` if a call of [`allocate`](Self::allocate),
///   [`grow`](Self::grow), [`shrink`](Self::shrink) (or their in-place forms) on `self`
///   returned it and no call has since freed, grown away or shrunk away that block;
/// - a layout **fits** a currently allocated block if its alignment equals the alignment the
///   block was requested with and its size lies between the size requested and the length of
///   the slice that was returned.
///
/// # Safety
/// Implementors promise, and the frontends rely on it for soundness:
/// - a block returned by a successful call is valid for reads and writes of the returned
///   length, aligned to the requested alignment, at least as long as requested, and disjoint
///   from every other currently allocated block, until it is freed or the policy is dropped;
/// - `grow` and `shrink` keep the first `min(old, new)` bytes of the block's contents;
/// - no method touches the contents of a currently allocated block (the header of a free block
///   is the policy's own memory);
/// - a failed call (`Err`) leaves every currently allocated block valid and unchanged.
pub unsafe trait RawAlloc {
    /// Allocates a block for `layout`; the returned slice may be longer than asked (the whole
    /// block). A zero-size layout is served like a one-byte one.
    ///
    /// # Errors
    /// The request is too large, its alignment too large, or no memory is free.
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError>;

    /// Frees `ptr`, checking first that it is the start of a currently allocated block that
    /// `layout` fits. On `Err`, nothing changed.
    ///
    /// # Errors
    /// Double free, foreign or interior pointer, layout of another block size or alignment,
    /// damaged metadata: see [`FreeError`].
    ///
    /// # Safety
    /// If `ptr` is the start of a block currently allocated from `self`, the caller must own
    /// that block: no one may use it after this call. (Any other pointer value is allowed and
    /// rejected with an error; a stale pointer to a block that was freed and handed to someone
    /// else cannot be told from its new owner's and frees it.)
    unsafe fn try_deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError>;

    /// Checks, reading only metadata and changing nothing, that
    /// [`try_deallocate`](Self::try_deallocate)`(ptr, layout)` would be accepted now: `ptr` is
    /// the start of a currently allocated block that `layout` fits. Layers above a policy (size
    /// classes) use it to validate a block before they read memory inside it.
    ///
    /// # Errors
    /// The error `try_deallocate` would give.
    fn validate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError>;

    /// The same address as `ptr`, as a pointer that carries the provenance of the arena holding
    /// it (valid for the arena's whole block area), or `None` if `ptr` lies in no arena of the
    /// policy. Layers above a policy rebuild pointers to their own metadata inside blocks (a
    /// slab header) from this rather than from a caller's pointer, whose provenance may cover
    /// only the caller's object. Reads no metadata.
    fn rebase(&self, ptr: NonNull<u8>) -> Option<NonNull<u8>>;

    /// Allocates like [`allocate`](Self::allocate) and **marks** the block: while it is live,
    /// [`is_marked`](Self::is_marked) tells it, from metadata alone, from every block that
    /// `allocate`, `grow` or `shrink` hand out. A layer above a policy marks its own blocks
    /// (the size classes' slabs) so that a caller's block of the same size and alignment at
    /// the same address (a stale pointer) is told from one of them without reading block
    /// memory. A marked block is freed with [`try_deallocate`](Self::try_deallocate), which
    /// drops the mark; it is not resized in place. The default marks nothing (`is_marked` then
    /// answers `None`).
    ///
    /// # Errors
    /// As [`allocate`](Self::allocate).
    #[inline]
    fn allocate_marked(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate(layout)
    }

    /// Whether a live block that [`allocate_marked`](Self::allocate_marked) returned starts at
    /// `ptr`: `Some(true)` if one does, `Some(false)` if none does (another live block, free
    /// memory, or memory the policy does not hold), `None` if the policy cannot tell for this
    /// address (it keeps no marks, or none for a block like the one at `ptr`): the caller
    /// then finds out another way. Reads only metadata.
    #[inline]
    fn is_marked(&self, ptr: NonNull<u8>) -> Option<bool> {
        let _ = ptr;
        None
    }

    /// Frees a block.
    ///
    /// # Panics
    /// If [`try_deallocate`](Self::try_deallocate) rejects the call (detected misuse); the
    /// `GlobalAlloc` frontends call `try_deallocate` and abort instead.
    ///
    /// # Safety
    /// `ptr` must denote a block currently allocated from `self`, and `layout` must fit it.
    #[inline]
    #[track_caller]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller owns the block `ptr` (our own contract).
        if let Err(error) = unsafe { self.try_deallocate(ptr, layout) } {
            misuse(error)
        }
    }

    /// Grows the block at `ptr` to fit `new` without moving it, if its neighbours allow.
    ///
    /// # Errors
    /// [`AllocError::OutOfMemory`] if the block cannot grow where it is; the block stays valid
    /// and unchanged. A block that [`try_deallocate`](Self::try_deallocate) would reject gives
    /// [`AllocError::InvalidBlock`] or [`AllocError::Corrupted`], found before anything else:
    /// [`grow`](Self::grow) and [`shrink`](Self::shrink) move a block only after their in-place
    /// attempt failed otherwise.
    ///
    /// # Safety
    /// `ptr` must denote a block currently allocated from `self`, `old` must fit it, and
    /// `new.size() >= old.size()`.
    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError>;

    /// Shrinks the block at `ptr` to fit `new` without moving it, giving the tail back.
    ///
    /// # Errors
    /// If the block cannot be shrunk where it is (e.g. `new` asks for a larger alignment); the
    /// block stays valid and unchanged. A block a checked free would reject: as
    /// [`grow_in_place`](Self::grow_in_place).
    ///
    /// # Safety
    /// `ptr` must denote a block currently allocated from `self`, `old` must fit it, and
    /// `new.size() <= old.size()`.
    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError>;

    /// Grows the block at `ptr` to fit `new`: in place if possible, else by moving it to a new
    /// block (copying `old.size()` bytes) and freeing the old one.
    ///
    /// # Errors
    /// No memory for the new block; the old block stays valid and unchanged. A block that a
    /// checked free would reject (detected misuse) gives [`AllocError::InvalidBlock`] or
    /// [`AllocError::Corrupted`]: from the in-place attempt, before anything is allocated,
    /// copied or freed.
    ///
    /// # Safety
    /// As [`grow_in_place`](Self::grow_in_place).
    unsafe fn grow(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded from our caller.
        match unsafe { self.grow_in_place(ptr, old, new) } {
            Err(e) if e.is_misuse() => Err(e),
            Err(_) => {
                // SAFETY: forwarded from our caller; `old.size() <= new.size()`.
                unsafe { self.relocate(ptr, old, new, old.size()) }
            }
            ok => ok,
        }
    }

    /// Shrinks the block at `ptr` to fit `new`: in place if possible, else by moving it.
    ///
    /// # Errors
    /// As [`grow`](Self::grow).
    ///
    /// # Safety
    /// As [`shrink_in_place`](Self::shrink_in_place).
    unsafe fn shrink(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded from our caller.
        match unsafe { self.shrink_in_place(ptr, old, new) } {
            Err(e) if e.is_misuse() => Err(e),
            Err(_) => {
                // SAFETY: forwarded from our caller; `new.size() <= old.size()`.
                unsafe { self.relocate(ptr, old, new, new.size()) }
            }
            ok => ok,
        }
    }

    /// Moves a block: allocates for `new`, copies `keep` bytes, frees the old block with the
    /// checked free. Called by `grow` and `shrink` after an in-place attempt, which has checked
    /// the block (see the errors of [`grow_in_place`](Self::grow_in_place)); should the free
    /// reject it all the same, the new block goes back and the error is returned, nothing
    /// panics.
    ///
    /// # Safety
    /// `ptr` must denote a block currently allocated from `self`, `old` must fit it, and
    /// `keep <= min(old.size(), new.size())`.
    #[doc(hidden)]
    unsafe fn relocate(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        keep: usize,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: `ptr` is currently allocated with a layout `old` fits, and the caller owns it.
        let free_old = |a: &mut Self| unsafe { a.try_deallocate(ptr, old) };
        let block = self.allocate(new)?;
        // SAFETY: forwarded from our caller (`keep <= min(old.size(), new.size())`); `block` was
        // just allocated with `new`; `free_old` is the checked free of `ptr`.
        unsafe { move_block(self, ptr, keep, block, new, free_old) }
    }

    /// Returns to the policy's free lists whatever it keeps aside to go faster (the buddy's
    /// parked last-freed block, caches), so that figures and maps show every free byte merged.
    /// Changes no currently allocated block.
    fn flush(&mut self) {}

    /// Gives back to the memory it came from whatever free memory the policy keeps aside where
    /// only some requests can use it (the empty slabs size classes cache, for their own class):
    /// `true` if anything went back. A request that failed for lack of memory may succeed
    /// after it, and the frontends try once more when it returns `true`. (A failed request
    /// changes nothing, so this is a separate step, the frontends' choice.) Changes no
    /// currently allocated block. The default keeps nothing aside: `false`.
    fn release_spare(&mut self) -> bool {
        false
    }

    /// Whether `ptr` lies in memory this policy manages (its arenas' block areas). Reads no
    /// metadata; it says nothing about whether a block starts there.
    fn owns(&self, ptr: NonNull<u8>) -> bool;

    /// Length of the block a layout maps to: how many bytes a block allocated with `layout` may
    /// use.
    ///
    /// # Errors
    /// The layout cannot be served at all.
    fn usable_size(&self, layout: Layout) -> Result<usize, AllocError>;

    /// Current figures: capacity, bytes allocated and free, free blocks per order, largest free
    /// block, fragmentation.
    fn stats(&self) -> Stats;
}

/// The moving half of a resize, for [`RawAlloc::relocate`] and for policies that override
/// `grow` / `shrink`, once the new block is allocated: copies `keep` bytes from `ptr` to
/// `block`, then frees the old block with `free_old` (the checked free, or a cheaper one the
/// policy built from its own check of the block). Should `free_old` refuse, `block` goes back
/// and the error is returned; nothing panics.
///
/// # Errors
/// `free_old`'s refusal as [`AllocError::InvalidBlock`] (`block` freed again, the old block
/// unchanged).
///
/// # Safety
/// `ptr` must denote a block currently allocated from `alloc`, valid for reads of `keep`
/// bytes; `block` a block just allocated from `alloc` with `new`, with `keep <= new.size()`;
/// `free_old` must free the old block and nothing else (or refuse and change nothing).
#[doc(hidden)]
#[inline(always)]
pub unsafe fn move_block<A: RawAlloc + ?Sized>(
    alloc: &mut A,
    ptr: NonNull<u8>,
    keep: usize,
    block: NonNull<[u8]>,
    new: Layout,
    free_old: impl FnOnce(&mut A) -> Result<(), FreeError>,
) -> Result<NonNull<[u8]>, AllocError> {
    // SAFETY: the old block is valid for `keep` bytes, the new one for `new.size() >= keep`;
    // both are currently allocated, hence disjoint (our caller's promise).
    unsafe { core::ptr::copy_nonoverlapping(ptr.as_ptr(), block.cast::<u8>().as_ptr(), keep) };
    if let Err(error) = free_old(alloc) {
        // SAFETY: `block` was just allocated with `new` and is ours.
        let _ = unsafe { alloc.try_deallocate(block.cast(), new) };
        return Err(AllocError::invalid_block(error));
    }
    Ok(block)
}

/// Reports a detected misuse on the panicking path, out of line.
#[cold]
#[inline(never)]
#[track_caller]
fn misuse(error: FreeError) -> ! {
    panic!("budalloc: invalid deallocation: {error}")
}

/// A policy that takes memory regions as arenas.
pub trait Claim {
    /// Takes a `'static` region as a new arena.
    ///
    /// # Errors
    /// The region is unusable (too small, overlapping an arena already held) or the policy
    /// cannot hold another arena; nothing is claimed then.
    fn claim(&mut self, region: &'static mut [core::mem::MaybeUninit<u8>]) -> Result<(), crate::RegionError>;

    /// Takes `len` bytes at `ptr` as a new arena.
    ///
    /// # Errors
    /// As [`claim`](Self::claim), plus a null pointer or a region that wraps around the
    /// address space.
    ///
    /// # Safety
    /// - `ptr .. ptr + len` must be valid for reads and writes (unless `ptr` is null, which is
    ///   an error);
    /// - nothing but this policy may access the region until the policy is dropped, except
    ///   through the blocks it hands out.
    unsafe fn claim_raw(&mut self, ptr: *mut u8, len: usize) -> Result<(), crate::RegionError>;
}
