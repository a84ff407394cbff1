//! # budalloc-classes: size classes in slabs over any budalloc policy
//!
//! This crate owns the size-class layer: the `const fn` class table (16 B up to a small-object
//! limit, several classes per doubling, O(1) lookup from a [`Layout`](core::alloc::Layout)),
//! slabs carved from blocks of a backing policy (one power-of-two block per slab, aligned to its
//! size, with a sealed header and a bitmap of free objects at its start), the per-class lists of
//! slabs (the seed's `fragHeaders[N_ALLOCATION_SIZES]`: per class, the slabs with a free object
//! that allocations take from, the cached empty ones, and every slab, so that a slab that fills
//! or takes back its first free object leaves and joins no list but the first), and the checked free that rejects
//! double frees, interior, foreign and misdirected pointers with every byte of metadata
//! unchanged. Requests above the limit go straight to the backing policy.
//!
//! Architecture invariant: this crate depends on `budalloc-core` only. It knows nothing of
//! arenas, buddies, threads or `allocator-api2`: its backend is any
//! [`RawAlloc`](budalloc_core::RawAlloc), reached only through that trait's methods (blocks, marks, `validate`,
//! `rebase`, `owns`, `stats`), and [`Classes`] is a plain struct used through `&mut self`. It
//! is `#![no_std]` and allocation-free; pointers to slab headers are rebuilt with the backend's
//! `rebase` and `with_addr`/`map_addr`, never from integers and never through a caller's
//! pointer.
//!
//! ```
//! use core::alloc::Layout;
//! use core::mem::MaybeUninit;
//! use budalloc_buddy::Buddy;
//! use budalloc_classes::Classes;
//! use budalloc_core::{FreeError, RawAlloc};
//!
//! #[repr(C, align(4096))]
//! struct Region([MaybeUninit<u8>; 256 * 1024]);
//! let mut region = Box::new(Region([MaybeUninit::uninit(); 256 * 1024]));
//! let mut heap: Classes<Buddy<16, { 1 << 20 }, 1, true>> = Classes::new(Buddy::new());
//! // SAFETY: the region outlives the heap and nothing else touches it meanwhile.
//! unsafe { heap.backend_mut().claim_raw(region.0.as_mut_ptr().cast(), 256 * 1024) }.unwrap();
//!
//! let layout = Layout::from_size_align(100, 8).unwrap();
//! let object = heap.allocate(layout).unwrap();
//! assert_eq!(object.len(), 112); // the 112-byte class
//! // SAFETY: live, allocated with `layout`.
//! unsafe { heap.try_deallocate(object.cast(), layout) }.unwrap();
//! // SAFETY: a double free is reported, not performed.
//! let again = unsafe { heap.try_deallocate(object.cast(), layout) };
//! assert!(matches!(again, Err(FreeError::DoubleFree { .. })));
//! heap.flush(); // the empty slab the class kept goes back to the buddy
//! assert!(heap.backend_mut().is_pristine());
//! ```
//!
//! ## The residual case
//! Slabs are *marked* blocks of the backend ([`RawAlloc::allocate_marked`](budalloc_core::RawAlloc::allocate_marked)), so with a backend
//! that keeps marks (the buddy does, for every slab) the free path reads a block's first word
//! (the seal) only once the backend said, from its own metadata, that a slab of ours starts
//! there, and a large block's free tells it from a slab of the same size and alignment from
//! metadata alone.
//!
//! With a backend that keeps no marks ([`RawAlloc::is_marked`](budalloc_core::RawAlloc::is_marked) answers `None`), a free (or
//! grow, shrink, validate) with a class layout reads the first word of the block of the backend
//! at the slab base its address implies, after the backend confirmed that a live block of the
//! slab's size starts there. If that block is not a slab but a large block of someone else's of
//! exactly that size (possible only for a pointer strictly inside it, passed with a small
//! layout: a stale or invented pointer), that word is the block's own data: the seal does not
//! match, the pointer is rejected, but the word was read. And a large block of a slab's size
//! and alignment is told from our slabs by a walk over the slab lists of that size (O(slabs)).
//! In both cases, a walk over our own slab lists (on error paths only) decides whether a bad
//! seal is damage of ours (`Corrupted`) or someone else's block (the backend's diagnosis).
//!
//! ## What the seal does not cover
//! The seal binds a slab header to its address and class, and the list links are checked
//! against the neighbours' seals, and the neighbours' links back, before any unlink. The free count, the hint and the bitmap of
//! free objects are not sealed: a write into them from outside (a stray write before the first
//! object) goes undetected, and a flipped bitmap bit can hand out a live object again. Sealing
//! them would mean recomputing a checksum on every allocation and free.
#![no_std]
#![deny(missing_docs)]

mod classes;
#[cfg(feature = "check-invariants")]
mod inspect;
mod slab;
pub mod table;

pub use classes::{Classes, DEFAULT_LIMIT};
pub use slab::HEADER_FIXED;
pub use table::{Class, Table, MAX_CLASSES};

#[cfg(test)]
extern crate std;

#[cfg(test)]
mod tests;
