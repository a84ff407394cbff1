//! # budalloc-buddy: the binary buddy policy
//!
//! This crate owns the buddy policy over [`budalloc_core::Arena`]s: rounding requests up to a
//! power of two, the per-order free lists (the seed's `fragHeaders[N_ALLOCATION_SIZES]`) with
//! O(1) choice of order, splitting, O(1) buddy tests in the bitmap, coalescing on free, in-place
//! grow and shrink, and the checked free that rejects misuse without changing anything.
//!
//! Architecture invariant: this crate depends on `budalloc-core` only. It knows nothing of
//! threads, locks, `allocator-api2` or size classes: [`Buddy`] is a plain struct used through
//! `&mut self` (the `RawAlloc` trait); the frontends of `budalloc-sync` make it shareable.
//! Everything here is `#![no_std]` and allocation-free.
//!
//! ```
//! use core::alloc::Layout;
//! use core::mem::MaybeUninit;
//! use budalloc_buddy::Buddy;
//! use budalloc_core::RawAlloc;
//!
//! // Any memory the heap may own; aligned so the bitmap words and the largest blocks are too.
//! #[repr(C, align(4096))]
//! struct Region([MaybeUninit<u8>; 64 * 1024]);
//! let mut region = Box::new(Region([MaybeUninit::uninit(); 64 * 1024]));
//! let mut heap: Buddy<16, 4096> = Buddy::new();
//! // SAFETY: the region outlives the heap and nothing else touches it meanwhile.
//! unsafe { heap.claim_raw(region.0.as_mut_ptr().cast(), 64 * 1024) }.unwrap();
//! let layout = Layout::from_size_align(100, 8).unwrap();
//! let block = heap.allocate(layout).unwrap();
//! assert_eq!(block.len(), 128); // rounded up to the next power of two
//! unsafe { heap.try_deallocate(block.cast(), layout) }.unwrap();
//! assert!(heap.is_pristine()); // coalesced back into the original blocks
//! ```
#![no_std]
#![deny(missing_docs)]

mod buddy;
mod exact;
#[cfg(feature = "check-invariants")]
mod inspect;
mod slot;

pub use buddy::{Block, Buddy, Map, BEST_FIT_FROM};
pub use slot::HEADER_SIZE;

#[cfg(test)]
mod tests;
