//! Allocators that get memory themselves (the system allocator, mimalloc): subjects that are
//! not region-based, called through their `GlobalAlloc` implementations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::NonNull;

use crate::Subject;

/// A thread-safe `GlobalAlloc` that needs no set-up: the system allocator or mimalloc.
pub trait NativeAlloc: GlobalAlloc + Sync + 'static {
    /// Name in reports.
    const NAME: &'static str;
    /// The allocator value (a unit struct).
    const VALUE: Self;
}

impl NativeAlloc for System {
    const NAME: &'static str = "system";
    const VALUE: Self = System;
}

impl NativeAlloc for mimalloc::MiMalloc {
    const NAME: &'static str = "mimalloc";
    const VALUE: Self = mimalloc::MiMalloc;
}

/// A [`NativeAlloc`] as a subject (and, through `&self`, as a heap shared by threads).
pub struct Native<G>(G);

/// The system allocator (`std::alloc::System`: glibc malloc on Linux).
pub type SystemSubject = Native<System>;

/// mimalloc (`mi_malloc` / `mi_free` / `mi_realloc` through its `GlobalAlloc`).
pub type MimallocSubject = Native<mimalloc::MiMalloc>;

impl<G: NativeAlloc> Native<G> {
    /// Allocates a block for `layout`.
    ///
    /// # Safety
    /// `layout.size()` must be non-zero.
    #[inline(never)]
    pub unsafe fn alloc_shared(&self, layout: Layout) -> Option<NonNull<u8>> {
        // SAFETY: the size is non-zero (our caller's promise).
        NonNull::new(unsafe { self.0.alloc(layout) })
    }

    /// Frees a block.
    ///
    /// # Safety
    /// `ptr` must be live, from this allocator, with `layout`.
    #[inline(never)]
    pub unsafe fn free_shared(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded from our caller.
        unsafe { self.0.dealloc(ptr.as_ptr(), layout) }
    }

    /// Resizes a block; `None` (and the block unchanged) on failure.
    ///
    /// # Safety
    /// `ptr` must be live, from this allocator, with `old`; `new_size` must be non-zero.
    #[inline(never)]
    pub unsafe fn realloc_shared(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: forwarded from our caller; `GlobalAlloc::realloc` keeps the block on failure.
        NonNull::new(unsafe { self.0.realloc(ptr.as_ptr(), old, new_size) })
    }
}

impl<G: NativeAlloc> Default for Native<G> {
    fn default() -> Self {
        Native(G::VALUE)
    }
}

impl<G: NativeAlloc> Subject for Native<G> {
    const REGION_BASED: bool = false;

    fn name() -> &'static str {
        G::NAME
    }

    fn max_align() -> usize {
        // Both serve any power-of-two alignment; the workloads ask for at most a page.
        crate::REGION_ALIGN
    }

    unsafe fn new(_region: *mut u8, _len: usize) -> Result<Self, String> {
        Ok(Self::default())
    }

    unsafe fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        // SAFETY: forwarded from our caller.
        unsafe { self.alloc_shared(layout) }
    }

    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded from our caller.
        unsafe { self.free_shared(ptr, layout) }
    }

    unsafe fn realloc(&mut self, ptr: NonNull<u8>, old: Layout, new_size: usize) -> Option<NonNull<u8>> {
        // SAFETY: forwarded from our caller.
        unsafe { self.realloc_shared(ptr, old, new_size) }
    }
}
