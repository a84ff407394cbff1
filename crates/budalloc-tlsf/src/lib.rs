//! # budalloc-tlsf: two-level segregated fit for medium blocks, in chunks of any policy
//!
//! This crate owns the medium-block layer: [`Tlsf`] takes chunks (1 MiB by default) from a
//! backing policy and serves the requests of up to `MAX` bytes (64 KiB by default) in them with
//! TLSF's O(1) good fit: free blocks sit in one list per bin (16 bins per doubling of the
//! length, found by two bitmap scans), a request takes the first block of the lowest bin whose
//! blocks all fit and gives back its tail, and a free merges the block with its free neighbours
//! at once. Blocks are whole 64-byte granules, so at most 63 bytes of a block go unused (64 for a
//! zero-size request). Each chunk records in bitmaps of its own where blocks start and where
//! live blocks begin and end, so the checked free rejects double frees, interior, foreign and
//! misdescribed pointers, and damaged headers, from metadata alone and with every byte of
//! metadata unchanged, as the buddy's does. Everything else (larger requests, larger alignments, the layer above's marked
//! blocks) goes straight to the backing policy.
//!
//! It exists for speed where the exact-fit buddy is slow: a request of a few kilobytes that the
//! buddy serves as several pieces, found by a best-fit search over runs of free blocks, is one
//! bitmap scan and a split here.
//!
//! Architecture invariant: this crate depends on `budalloc-core` only. It knows nothing of
//! arenas, buddies, size classes, threads or `allocator-api2`: its backend is any
//! [`RawAlloc`](budalloc_core::RawAlloc), reached only through that trait's methods (blocks,
//! marks, `validate`, `rebase`, `owns`, `stats`), and [`Tlsf`] is a plain struct used through
//! `&mut self`. It is `#![no_std]` and allocation-free; pointers into chunks are rebuilt with
//! the backend's `rebase` and `with_addr`/`map_addr`, never from integers.
//!
//! ```
//! use core::alloc::Layout;
//! use core::mem::MaybeUninit;
//! use budalloc_buddy::Buddy;
//! use budalloc_tlsf::Tlsf;
//! use budalloc_core::{FreeError, RawAlloc};
//!
//! #[repr(C, align(1048576))]
//! struct Region([MaybeUninit<u8>; 2 << 20]);
//! let mut region = Box::new(Region([MaybeUninit::uninit(); 2 << 20]));
//! let mut heap: Tlsf<Buddy<64, { 1 << 21 }, 1, true>> = Tlsf::new(Buddy::new());
//! // SAFETY: the region outlives the heap and nothing else touches it meanwhile.
//! unsafe { heap.backend_mut().claim_raw(region.0.as_mut_ptr().cast(), 2 << 20) }.unwrap();
//!
//! let layout = Layout::from_size_align(5000, 8).unwrap();
//! let block = heap.allocate(layout).unwrap();
//! assert_eq!(block.len(), 5056); // 79 granules of 64 bytes
//! // SAFETY: live, allocated with `layout`.
//! unsafe { heap.try_deallocate(block.cast(), layout) }.unwrap();
//! // SAFETY: a double free is reported, not performed.
//! let again = unsafe { heap.try_deallocate(block.cast(), layout) };
//! assert!(matches!(again, Err(FreeError::DoubleFree { .. })));
//! heap.flush(); // the empty chunk kept for reuse goes back to the buddy
//! assert!(heap.backend_mut().is_pristine());
//! ```
//!
//! ## The residual case
//! Chunks are *marked* blocks of the backend, so with a backend that keeps marks (the buddy
//! does) a free reads a chunk header's first word (its seal) only once the backend said, from
//! its own metadata, that a marked block starts there: a chunk of ours or a slab of the layer
//! above, both sealed. With a backend that keeps no marks, a free of a block of the backend
//! reads the first word of the live block of the chunk's size at the chunk base its address
//! implies, if there is one, as `budalloc-classes` does for slabs.

#![no_std]
#![deny(missing_docs)]

mod chunk;
#[cfg(feature = "check-invariants")]
mod inspect;
mod tlsf;

pub use chunk::GRANULE;
pub use tlsf::{Tlsf, DEFAULT_CHUNK, DEFAULT_MAX};
