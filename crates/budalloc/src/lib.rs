//! Architecture invariant: the facade depends on every budalloc crate and adds no mechanism of
//! its own: it pins the default compositions with type aliases and re-exports what a user
//! needs. The crate documentation below is the workspace README, so its examples are doctests.
#![doc = include_str!("../../../README.md")]
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]

pub use allocator_api2;
pub use budalloc_buddy::{Block, Buddy, Map};
pub use budalloc_classes::Classes;
pub use budalloc_core::{
    AllocError, Arena, Claim, Corruption, FreeError, Grow, GuardKey, Order, RawAlloc, RegionError,
    SizeClasses, SizeMath, Source, Stats,
};
pub use budalloc_sync::{fatal, Local, Locked, RawLock, Spin, StaticHeap, WouldBlock};
#[cfg(feature = "std")]
pub use budalloc_sync::{Cached, StdLock, SystemSource};

#[cfg(feature = "check-invariants")]
pub use budalloc_core::{Inspect, InvariantError};

#[cfg(feature = "std")]
mod global;
#[cfg(feature = "std")]
pub use global::{CachedGlobal, Global, GlobalClasses};

/// The default buddy policy: 16-byte smallest blocks, 1 GiB largest block (and alignment), up to
/// 8 arenas.
pub type DefaultBuddy = Buddy<16, { 1 << 30 }, 8>;

/// The default single-threaded heap: size classes over the exact-fit buddy ([`ClassesBuddy`])
/// behind the [`Local`] frontend. `&Heap` is an `allocator_api2` allocator.
///
/// It holds about 90% of a 16 MiB region in live requested bytes at the first failure on
/// talc's heap-efficiency recipe, where the plain buddy ([`BuddyHeap`]) holds 62%; objects up
/// to 4 KiB come from slabs and cost about what they cost on the plain buddy, larger blocks more
/// (see the README's performance section).
pub type Heap = Local<ClassesBuddy>;

/// The plain buddy behind the [`Local`] frontend: power-of-two blocks, the fastest composition
/// for mixed sizes, at the memory cost of rounding every request up to a power of two.
pub type BuddyHeap = Local<DefaultBuddy>;

/// The exact-fit buddy: a request keeps only the 16-byte fragments it needs, and lands in a run
/// of free blocks when no block of its order is left.
pub type ExactBuddy = Buddy<16, { 1 << 30 }, 8, true>;

/// The exact-fit buddy under the size classes: 64-byte fragments, since it serves only slabs
/// and requests above the classes' limit (at most 63 bytes lost to rounding per block, under
/// 6% above 1 KiB and under 1.6% above 4 KiB). Its
/// bitmaps take 0.78% of an arena where 16-byte fragments take 3.1%, and the larger fragments
/// pack better too: on talc's recipe (16 MiB, 8 seeds, mean / worst) the classes hold 91.5% /
/// 89.7% over it against 89.9% / 87.2% over [`ExactBuddy`], and 93.0% against 91.4% on the churn
/// workload (`drive eff budalloc-classes 8`, 2026-11-26).
pub type SlabBuddy = Buddy<64, { 1 << 30 }, 8, true>;

/// Size classes (4 per doubling, 16 B .. 4 KiB, in slabs) over the exact-fit [`SlabBuddy`]: the
/// policy of the default [`Heap`].
///
/// The 4 KiB limit is measured. Requests above the limit are placed by the exact-fit buddy's
/// best-fit search over runs of free blocks, which packs tightly but costs far more than a slab
/// pop; larger classes round up more and leave partly used slabs behind. Heap efficiency (16
/// MiB, mean over 20 seeds, `drive eff budalloc-heap 20`) and time per operation on 1000 blocks
/// of 16 B – 4 KiB freed shuffled (`drive budalloc-heap b 200`), 2026-12-04:
///
/// | limit | talc's recipe | churn | fill | 16 B – 4 KiB batch |
/// |---|---:|---:|---:|---:|
/// | 1 KiB | 91.6 % | 93.0 % | 95.7 % | 406 ns |
/// | 4 KiB | 90.2 % | 91.7 % | 94.7 % | 26 ns |
/// | 8 KiB | 87.5 % | 88.4 % | 92.3 % | 26 ns |
///
/// 4 KiB is the largest limit that keeps both workloads above 90% (8 classes per doubling do
/// worse: 87.6% on talc's recipe, more classes leaving more slabs part full).
pub type ClassesBuddy = Classes<SlabBuddy, 4096>;

/// The buddy policy behind [`Global`] and [`CachedGlobal`]'s size classes: like
/// [`DefaultBuddy`], with room for 32 arenas (regions
/// double in size as the heap grows, so 32 arenas reach far beyond any real heap).
pub type GlobalBuddy = Buddy<16, { 1 << 30 }, 32>;

/// A `no_std` global allocator over a static array of `N` bytes, spin-locked:
/// `#[global_allocator] static HEAP: budalloc::StaticGlobal<{ 1 << 20 }> = budalloc::StaticGlobal::new(budalloc::Buddy::new());`
pub type StaticGlobal<const N: usize> = StaticHeap<DefaultBuddy, N>;
