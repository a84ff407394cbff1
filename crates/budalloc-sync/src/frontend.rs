//! What every frontend shares: the allocator-api2 and `GlobalAlloc` behaviour written once, over
//! a frontend's way of reaching its policy ([`Frontend::enter`]).

use core::alloc::Layout;
use core::ptr::{self, NonNull};

use allocator_api2::alloc::AllocError as ApiAllocError;
use budalloc_core::{AllocError, FreeError, RawAlloc};

/// A way to run code on a policy with exclusive access: a cell, a lock.
pub(crate) trait Frontend {
    /// The policy behind the frontend.
    type Policy: RawAlloc;

    /// Runs `f` with exclusive access to the policy.
    fn enter<R>(&self, f: impl FnOnce(&mut Self::Policy) -> R) -> R;
}

/// A dangling pointer aligned to `align`, for zero-size blocks (strict provenance: no
/// provenance at all).
#[inline]
fn dangling(align: usize) -> NonNull<u8> {
    let ptr = ptr::without_provenance_mut::<u8>(align);
    NonNull::new(ptr).unwrap_or(NonNull::dangling())
}

#[inline]
pub(crate) fn empty(layout: Layout) -> NonNull<[u8]> {
    NonNull::slice_from_raw_parts(dangling(layout.align()), 0)
}

/// Zeroes `block[from..]`.
///
/// # Safety
/// `block` must be valid for writes of its length, and `from <= block.len()`.
#[inline]
pub(crate) unsafe fn zero_from(block: NonNull<[u8]>, from: usize) {
    let start = block.cast::<u8>().as_ptr().wrapping_add(from);
    // SAFETY: `from <= block.len()`, and the block is valid for writes of its length.
    unsafe { start.write_bytes(0, block.len() - from) };
}

/// Runs `op` on the policy; if it fails for lack of memory, the policy gives back the free
/// memory it keeps aside ([`RawAlloc::release_spare`]: a size class's cached empty slabs) and,
/// if there was any, `op` runs once more. So a heap whose every object was freed serves a
/// large request without a `flush` first. The error, mapped by `map_err`, comes from the slow
/// path, which runs `op` again, whatever the first error was: carrying the first error out of
/// the fast path, or mapping the merged result, made the fast path's code longer (10 to 25
/// instructions per 64-byte allocate-and-free pair under callgrind). Running a failed
/// operation again is sound: a failed allocation or resize leaves every live block as it was
/// (the old block of a resize included). It may have changed caches (a resize that found its
/// old block invalid gave its new block back; `Grow` keeps a region it claimed), and does so
/// again; the misuse is reported either way.
#[inline(always)]
pub(crate) fn with_spare<F: Frontend, T, E>(
    f: &F,
    op: impl Fn(&mut F::Policy) -> Result<T, AllocError> + Copy,
    map_err: impl FnOnce(AllocError) -> E,
) -> Result<T, E> {
    match f.enter(op) {
        Ok(value) => Ok(value),
        Err(_) => after_error(f, op).map_err(map_err),
    }
}

/// The slow half of [`with_spare`], out of line: `op` again, and once more after
/// [`RawAlloc::release_spare`] if it fails for lack of memory and there was spare memory.
#[cold]
#[inline(never)]
fn after_error<F: Frontend, T>(
    f: &F,
    op: impl Fn(&mut F::Policy) -> Result<T, AllocError>,
) -> Result<T, AllocError> {
    f.enter(|a| match op(a) {
        Err(AllocError::OutOfMemory { .. }) if a.release_spare() => op(a),
        other => other,
    })
}

// ---- allocator-api2 ---------------------------------------------------------------------------

#[inline]
pub(crate) fn allocate<F: Frontend>(f: &F, layout: Layout) -> Result<NonNull<[u8]>, ApiAllocError> {
    if layout.size() == 0 {
        return Ok(empty(layout));
    }
    with_spare(f, move |a| a.allocate(layout), |_| ApiAllocError)
}

#[inline]
pub(crate) fn allocate_zeroed<F: Frontend>(f: &F, layout: Layout) -> Result<NonNull<[u8]>, ApiAllocError> {
    let block = allocate(f, layout)?;
    // SAFETY: a fresh block is valid for writes of its length.
    unsafe { zero_from(block, 0) };
    Ok(block)
}

/// # Safety
/// As `Allocator::deallocate`.
#[inline]
pub(crate) unsafe fn deallocate<F: Frontend>(f: &F, ptr: NonNull<u8>, layout: Layout) {
    if layout.size() != 0 {
        // SAFETY: the caller promises `ptr` is currently allocated and `layout` fits it.
        f.enter(|a| unsafe { a.deallocate(ptr, layout) });
    }
}

/// # Safety
/// As `Allocator::grow`.
pub(crate) unsafe fn grow<F: Frontend>(
    f: &F,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
) -> Result<NonNull<[u8]>, ApiAllocError> {
    if old.size() == 0 {
        return allocate(f, new);
    }
    // SAFETY: the caller's promises (`ptr` live, `old` fits, `new.size() >= old.size()`) are the
    // policy's `grow` contract; a grow that failed left the block as it was, for the retry.
    with_spare(f, move |a| unsafe { a.grow(ptr, old, new) }, |_| ApiAllocError)
}

/// # Safety
/// As `Allocator::grow_zeroed`.
pub(crate) unsafe fn grow_zeroed<F: Frontend>(
    f: &F,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
) -> Result<NonNull<[u8]>, ApiAllocError> {
    // SAFETY: forwarded from our caller.
    let block = unsafe { grow(f, ptr, old, new) }?;
    // SAFETY: the grown block is valid for writes of its length; `old.size() <= block.len()`.
    unsafe { zero_from(block, old.size()) };
    Ok(block)
}

/// # Safety
/// As `Allocator::shrink`.
pub(crate) unsafe fn shrink<F: Frontend>(
    f: &F,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
) -> Result<NonNull<[u8]>, ApiAllocError> {
    if new.size() == 0 {
        // SAFETY: the caller promises `ptr` is live with `old`.
        unsafe { deallocate(f, ptr, old) };
        return Ok(empty(new));
    }
    // SAFETY: the caller's promises are the policy's `shrink` contract; a shrink that failed left
    // the block as it was, for the retry.
    with_spare(f, move |a| unsafe { a.shrink(ptr, old, new) }, |_| ApiAllocError)
}

/// Implements `allocator_api2::alloc::Allocator` for `&$frontend` through the functions above.
macro_rules! allocator_via_frontend {
    ([$($generics:tt)*] $frontend:ty) => {
        // SAFETY: blocks come from the policy, whose `RawAlloc` contract makes them valid,
        // disjoint and kept until freed; the frontend gives it exclusive access for each call;
        // zero-size blocks are dangling and never dereferenced or freed.
        unsafe impl<$($generics)*> allocator_api2::alloc::Allocator for &$frontend {
            #[inline]
            fn allocate(&self, layout: core::alloc::Layout) -> Result<core::ptr::NonNull<[u8]>, allocator_api2::alloc::AllocError> {
                $crate::frontend::allocate(*self, layout)
            }

            #[inline]
            fn allocate_zeroed(&self, layout: core::alloc::Layout) -> Result<core::ptr::NonNull<[u8]>, allocator_api2::alloc::AllocError> {
                $crate::frontend::allocate_zeroed(*self, layout)
            }

            #[inline]
            unsafe fn deallocate(&self, ptr: core::ptr::NonNull<u8>, layout: core::alloc::Layout) {
                // SAFETY: forwarded from our caller.
                unsafe { $crate::frontend::deallocate(*self, ptr, layout) }
            }

            unsafe fn grow(
                &self,
                ptr: core::ptr::NonNull<u8>,
                old: core::alloc::Layout,
                new: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, allocator_api2::alloc::AllocError> {
                // SAFETY: forwarded from our caller.
                unsafe { $crate::frontend::grow(*self, ptr, old, new) }
            }

            unsafe fn grow_zeroed(
                &self,
                ptr: core::ptr::NonNull<u8>,
                old: core::alloc::Layout,
                new: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, allocator_api2::alloc::AllocError> {
                // SAFETY: forwarded from our caller.
                unsafe { $crate::frontend::grow_zeroed(*self, ptr, old, new) }
            }

            unsafe fn shrink(
                &self,
                ptr: core::ptr::NonNull<u8>,
                old: core::alloc::Layout,
                new: core::alloc::Layout,
            ) -> Result<core::ptr::NonNull<[u8]>, allocator_api2::alloc::AllocError> {
                // SAFETY: forwarded from our caller.
                unsafe { $crate::frontend::shrink(*self, ptr, old, new) }
            }
        }
    };
}
pub(crate) use allocator_via_frontend;

// ---- GlobalAlloc --------------------------------------------------------------------------------

/// `GlobalAlloc::alloc`: null on failure, never a panic.
#[inline]
pub(crate) fn global_alloc<F: Frontend>(f: &F, layout: Layout, zeroed: bool) -> *mut u8 {
    match with_spare(f, move |a| a.allocate(layout), |e| e) {
        Ok(block) => {
            if zeroed {
                // SAFETY: a fresh block is valid for writes of its length.
                unsafe { zero_from(block, 0) };
            }
            block.cast::<u8>().as_ptr()
        }
        Err(AllocError::Corrupted(c)) => crate::fatal::misuse(&FreeError::Corrupted(c)),
        Err(_) => ptr::null_mut(),
    }
}

/// `GlobalAlloc::dealloc`: aborts on detected misuse.
///
/// # Safety
/// As `GlobalAlloc::dealloc` (any misuse the policy detects aborts instead of corrupting).
#[inline]
pub(crate) unsafe fn global_dealloc<F: Frontend>(f: &F, ptr: *mut u8, layout: Layout) {
    let Some(ptr) = NonNull::new(ptr) else { return };
    // SAFETY: the caller promises `ptr` was allocated by this allocator with `layout`; if it was
    // not, the policy detects it before changing anything and we abort.
    if let Err(error) = f.enter(|a| unsafe { a.try_deallocate(ptr, layout) }) {
        crate::fatal::misuse(&error)
    }
}

/// `GlobalAlloc::realloc`: in place when the policy can, else moved; null (old block kept) when
/// out of memory; aborts on detected misuse.
///
/// # Safety
/// As `GlobalAlloc::realloc`.
pub(crate) unsafe fn global_realloc<F: Frontend>(
    f: &F,
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
) -> *mut u8 {
    let Ok(new) = Layout::from_size_align(new_size, layout.align()) else { return ptr::null_mut() };
    let Some(old_ptr) = NonNull::new(ptr) else { return ptr::null_mut() };
    let result = with_spare(
        f,
        move |a| {
            if new_size >= layout.size() {
                // SAFETY: the caller promises `ptr` is live with `layout`; sizes grow. A grow that
                // failed left the block as it was, for the retry.
                unsafe { a.grow(old_ptr, layout, new) }
            } else {
                // SAFETY: as above; sizes shrink.
                unsafe { a.shrink(old_ptr, layout, new) }
            }
        },
        |e| e,
    );
    match result {
        Ok(block) => block.cast::<u8>().as_ptr(),
        Err(AllocError::InvalidBlock(error)) => crate::fatal::misuse(&error),
        Err(AllocError::Corrupted(c)) => crate::fatal::misuse(&FreeError::Corrupted(c)),
        Err(_) => ptr::null_mut(),
    }
}

/// Implements `core::alloc::GlobalAlloc` for `$frontend` through the functions above.
macro_rules! global_via_frontend {
    ([$($generics:tt)*] $frontend:ty) => {
        // SAFETY: as for the allocator-api2 impl; in addition nothing here panics or unwinds:
        // failures return null and detected misuse aborts the process.
        unsafe impl<$($generics)*> core::alloc::GlobalAlloc for $frontend {
            #[inline]
            unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
                $crate::frontend::global_alloc(self, layout, false)
            }

            #[inline]
            unsafe fn alloc_zeroed(&self, layout: core::alloc::Layout) -> *mut u8 {
                $crate::frontend::global_alloc(self, layout, true)
            }

            #[inline]
            unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
                // SAFETY: forwarded from our caller.
                unsafe { $crate::frontend::global_dealloc(self, ptr, layout) }
            }

            unsafe fn realloc(&self, ptr: *mut u8, layout: core::alloc::Layout, new_size: usize) -> *mut u8 {
                // SAFETY: forwarded from our caller.
                unsafe { $crate::frontend::global_realloc(self, ptr, layout, new_size) }
            }
        }
    };
}
pub(crate) use global_via_frontend;
