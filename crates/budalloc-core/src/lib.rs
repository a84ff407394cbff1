//! # budalloc-core: the mechanism every budalloc policy stands on
//!
//! This crate owns:
//! - [`Arena`]: one contiguous region handed to an allocator, split into a block area of
//!   `MIN`-byte fragments and a metadata tail that holds the arena's [`Bitmap`];
//! - [`Bitmap`]: the arena's bits (a `bitvec` slice) bracketed by two guard keys (the seed's
//!   `arenaKey1` / `arenaKey2`), so an overflow into or out of the bitset is reported as
//!   [`Corruption::GuardKey`];
//! - [`Order`] and the checked size arithmetic that maps a [`Layout`](core::alloc::Layout) to a
//!   block order;
//! - the errors ([`AllocError`], [`FreeError`], [`RegionError`]), [`Stats`], and [`RawAlloc`],
//!   the single-threaded policy trait between layers;
//! - [`Source`] (where new regions come from) and [`Grow`], which claims one when a policy runs
//!   out of memory.
//!
//! Architecture invariant: this crate depends on no other budalloc crate, and knows nothing of
//! any policy (buddy splitting, size classes) or of threads: every type here is used through
//! `&mut self` and contains no interior mutability. It is `#![no_std]` and never allocates.
//! Pointers are always re-derived from the arena base with `with_addr`; no integer is ever cast
//! to a pointer.
#![no_std]
#![deny(missing_docs)]

mod arena;
mod bitmap;
mod classes;
mod error;
mod grow;
#[cfg(any(test, feature = "check-invariants"))]
mod inspect;
mod map;
mod order;
mod raw;
mod stats;
mod svg;

pub use arena::Arena;
pub use bitmap::{Bitmap, Bits};
pub use classes::SizeClasses;
pub use error::{AllocError, Corruption, FreeError, GuardKey, RegionError};
pub use grow::{Grow, Source};
#[cfg(any(test, feature = "check-invariants"))]
pub use inspect::{Inspect, InvariantError};
pub use map::{symbol, write_map, BlockView};
pub use order::{Order, SizeMath, MAX_ORDERS};
pub use raw::{move_block, Claim, RawAlloc};
pub use stats::Stats;
pub use stats::{human, Human};
pub use svg::{write_svg, SvgRow};

#[cfg(test)]
mod tests;
