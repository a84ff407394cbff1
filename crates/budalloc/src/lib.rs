//! Architecture invariant: the facade depends on every budalloc crate and adds no mechanism of
//! its own: it pins the default compositions with type aliases and re-exports what a user
//! needs. The crate documentation below is the workspace README, so its examples are doctests.
#![doc = include_str!("../../../README.md")]
#![no_std]
#![deny(missing_docs)]

pub use allocator_api2;
pub use budalloc_buddy::{Block, Buddy, Map};
pub use budalloc_core::{
    AllocError, Arena, Claim, Corruption, FreeError, GuardKey, Order, RawAlloc, RegionError, SizeMath, Stats,
};
pub use budalloc_sync::Local;

/// The default buddy policy: 16-byte smallest blocks, 1 GiB largest block (and alignment), up to
/// 8 arenas.
pub type DefaultBuddy = Buddy<16, { 1 << 30 }, 8>;

/// The default single-threaded heap: the buddy policy behind the [`Local`] frontend. `&Heap` is
/// an `allocator_api2` allocator.
pub type Heap = Local<DefaultBuddy>;
