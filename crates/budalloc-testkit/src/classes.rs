//! Forwarding wrappers for tests: a size-class stand-in for frontend tests, and a policy with
//! the trait's default resizes as a reference for a policy's own.

use core::alloc::Layout;
use core::ptr::NonNull;

use budalloc_core::{AllocError, FreeError, RawAlloc, SizeClasses, Stats};

/// A policy whose blocks of 16 B .. 2 KiB are declared as eight power-of-two size classes (each
/// aligned to its size, as a buddy's blocks are): a stand-in for the size-class policy when
/// testing frontends that need [`SizeClasses`].
pub struct PowerClasses<P>(pub P);

impl<P> PowerClasses<P> {
    /// Wraps `policy`.
    pub const fn new(policy: P) -> Self {
        PowerClasses(policy)
    }
}

const CLASSES: usize = 8;

/// Implements `RawAlloc` for a newtype `$name<P>(P)` by forwarding every method to `P`, except
/// `grow` and `shrink`: the trait's defaults (an in-place attempt, then `relocate`).
macro_rules! forward_raw_alloc {
    ($name:ident) => {
        // SAFETY: every call is forwarded to the wrapped policy, which keeps the contract;
        // `grow` and `shrink` are the trait's defaults, built on its methods.
        unsafe impl<P: RawAlloc> RawAlloc for $name<P> {
            fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
                self.0.allocate(layout)
            }
            unsafe fn try_deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
                // SAFETY: forwarded from our caller.
                unsafe { self.0.try_deallocate(ptr, layout) }
            }
            fn validate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
                self.0.validate(ptr, layout)
            }
            fn rebase(&self, ptr: NonNull<u8>) -> Option<NonNull<u8>> {
                self.0.rebase(ptr)
            }
            unsafe fn grow_in_place(
                &mut self,
                p: NonNull<u8>,
                o: Layout,
                n: Layout,
            ) -> Result<NonNull<[u8]>, AllocError> {
                // SAFETY: forwarded from our caller.
                unsafe { self.0.grow_in_place(p, o, n) }
            }
            unsafe fn shrink_in_place(
                &mut self,
                p: NonNull<u8>,
                o: Layout,
                n: Layout,
            ) -> Result<NonNull<[u8]>, AllocError> {
                // SAFETY: forwarded from our caller.
                unsafe { self.0.shrink_in_place(p, o, n) }
            }
            fn flush(&mut self) {
                self.0.flush();
            }
            fn release_spare(&mut self) -> bool {
                self.0.release_spare()
            }
            fn owns(&self, ptr: NonNull<u8>) -> bool {
                self.0.owns(ptr)
            }
            fn usable_size(&self, layout: Layout) -> Result<usize, AllocError> {
                self.0.usable_size(layout)
            }
            fn stats(&self) -> Stats {
                self.0.stats()
            }
        }
    };
}

forward_raw_alloc!(PowerClasses);

/// A policy `P` with the trait's default `grow` and `shrink` (an in-place attempt, then
/// `relocate`): the reference a policy's own resizes are tested against.
pub struct DefaultResize<P>(pub P);

forward_raw_alloc!(DefaultResize);

impl<P: RawAlloc> SizeClasses for PowerClasses<P> {
    const CLASSES: usize = CLASSES;
    fn class_of(layout: Layout) -> Option<usize> {
        let size = layout.size().max(layout.align()).max(16).next_power_of_two();
        let class = (size.trailing_zeros() - 4) as usize;
        (class < CLASSES).then_some(class)
    }
    fn class_layout(class: usize) -> Layout {
        assert!(class < CLASSES, "no class {class}");
        Layout::from_size_align(16 << class, 16 << class).unwrap_or(Layout::new::<u8>())
    }
}

impl<P: budalloc_core::Claim> budalloc_core::Claim for PowerClasses<P> {
    fn claim(
        &mut self,
        region: &'static mut [core::mem::MaybeUninit<u8>],
    ) -> Result<(), budalloc_core::RegionError> {
        self.0.claim(region)
    }

    unsafe fn claim_raw(&mut self, ptr: *mut u8, len: usize) -> Result<(), budalloc_core::RegionError> {
        // SAFETY: forwarded from our caller.
        unsafe { self.0.claim_raw(ptr, len) }
    }
}
