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
pub use budalloc_tlsf::Tlsf;

#[cfg(feature = "check-invariants")]
pub use budalloc_core::{Inspect, InvariantError};

#[cfg(feature = "std")]
mod global;
#[cfg(feature = "std")]
pub use global::{CachedGlobal, Global, GlobalClasses, GlobalHeap};

/// The default buddy policy: 16-byte smallest blocks, 1 GiB largest block (and alignment), up to
/// 8 arenas.
pub type DefaultBuddy = Buddy<16, { 1 << 30 }, 8>;

/// The default single-threaded heap: size classes over TLSF chunks of the exact-fit buddy
/// ([`ClassesBuddy`]) behind the [`Local`] frontend. `&Heap` is an `allocator_api2` allocator.
///
/// It holds about 90% of a 16 MiB region in live requested bytes at the first failure on
/// talc's heap-efficiency recipe, where the plain buddy ([`BuddyHeap`]) holds 62%; objects up
/// to 4 KiB come from slabs and cost about what they cost on the plain buddy, blocks up to
/// 128 KiB a TLSF search (see the README's performance section).
pub type Heap = Local<ClassesBuddy>;

/// The plain buddy behind the [`Local`] frontend: power-of-two blocks, the fastest composition
/// for mixed sizes, at the memory cost of rounding every request up to a power of two.
pub type BuddyHeap = Local<DefaultBuddy>;

/// The exact-fit buddy: a request keeps only the 16-byte fragments it needs, and lands in a run
/// of free blocks when no block of its order is left.
pub type ExactBuddy = Buddy<16, { 1 << 30 }, 8, true>;

/// The exact-fit buddy under the size classes and their TLSF chunks ([`TlsfBuddy`]): 1 KiB
/// fragments, since it serves only slabs (4 KiB and up), 1 MiB chunks, requests above 128 KiB
/// or aligned above it (at most 1023 bytes lost to rounding per block, under 0.8%), and the
/// requests the chunks cannot take when no chunk is left. Its bitmaps take 0.05% of an arena
/// (4 bits per fragment), where 64-byte fragments took 0.78% on top of the chunks' own 0.4%,
/// and the space saved shows: heap efficiency (16 MiB, mean over 20 seeds, `drive eff
/// budalloc-heap 20`, 2026-12-07), by fragment size:
///
/// | fragment | talc's recipe | churn | fill |
/// |---|---:|---:|---:|
/// | 64 B | 90.2 % | 93.1 % | 95.5 % |
/// | 256 B | 90.5 % | 93.8 % | 95.9 % |
/// | 1 KiB | 90.7 % | 93.9 % | 96.0 % |
/// | 4 KiB | 90.9 % | 93.6 % | 95.7 % |
///
/// (Before the chunks, size classes directly over the exact-fit buddy with 64-byte fragments:
/// 90.7 %, 93.3 %, 95.0 %.)
pub type SlabBuddy = Buddy<1024, { 1 << 30 }, 8, true>;

/// TLSF in 1 MiB chunks of the exact-fit [`SlabBuddy`], for requests of up to 128 KiB: what
/// the size classes hand to their backend (requests above 4 KiB, their slabs, which go straight
/// to the buddy, and their fallback objects).
///
/// The buddy's exact fit serves a request of a few kilobytes as several blocks placed by a
/// best-fit search over runs of free blocks: random actions of up to 30 000 bytes took 885 ns
/// each over it, 85–95 ns in TLSF chunks (`drive budalloc-heap n30000`, 2026-12-07). The chunk
/// and limit are measured on talc's recipe (16 MiB, 8 seeds, mean), which reallocates blocks
/// to up to 100 000 bytes: with a 64 KiB limit those went to the buddy, whose free space the
/// chunks had split, and it held 83.0 %; with 128 KiB, 89.4 % (and 89.5 % with 4 MiB chunks,
/// 87.0 % with 256 KiB chunks and a 32 KiB limit), then 90.7 % once a request looks at the
/// first blocks of its own bin too and the buddy's fragments grew to 1 KiB (see
/// [`SlabBuddy`]).
pub type TlsfBuddy = Tlsf<SlabBuddy, { 1 << 20 }, { 128 * 1024 }>;

/// Size classes (4 per doubling, 16 B .. 4 KiB, in slabs) over [`TlsfBuddy`]: the policy of
/// the default [`Heap`].
///
/// The 4 KiB limit is measured (before the TLSF chunks, over the exact-fit buddy with 64-byte
/// fragments). Requests above the limit were placed by the exact-fit buddy's best-fit search
/// over runs of free blocks, which packs tightly but costs far more than a slab pop; larger
/// classes round up more and leave partly used slabs behind. Heap efficiency (16 MiB, mean
/// over 20 seeds, `drive eff budalloc-heap 20`) and time per operation on 1000 blocks of
/// 16 B – 4 KiB freed shuffled (`drive budalloc-heap b 200`), 2026-12-04:
///
/// | limit | talc's recipe | churn | fill | 16 B – 4 KiB batch |
/// |---|---:|---:|---:|---:|
/// | 1 KiB | 91.6 % | 93.0 % | 95.7 % | 406 ns |
/// | 4 KiB | 90.2 % | 91.7 % | 94.7 % | 26 ns |
/// | 8 KiB | 87.5 % | 88.4 % | 92.3 % | 26 ns |
///
/// 4 KiB is the largest limit that keeps both workloads above 90% (8 classes per doubling do
/// worse: 87.6% on talc's recipe, more classes leaving more slabs part full; a 16 KiB or
/// 32 KiB limit with 8 classes per doubling holds 73 % / 50 % of talc's recipe, 2026-12-07).
///
/// Each class keeps up to four empty slabs (`CACHE` = 4, where the classes' default is 1)
/// besides its last partial slab: at most five empty slabs of its size. Batches of 1000 random
/// allocations of 16 B – 4 KiB, then their frees (`drive budalloc-heap b 2000000`), took 0.78
/// and 0.83 of the time in two sets of 5 interleaved pairs (8 slabs: 0.75), as a round's slabs
/// no longer go back to the buddy to be taken again the next round. Heap efficiency did not
/// move: the frontends give every empty slab back when a request runs out of memory (`drive
/// eff budalloc-heap 10`: 90.57 %, 93.90 % and 95.99 % either way, 2026-12-08).
pub type ClassesBuddy = Classes<TlsfBuddy, 4096, 4, 4>;

/// The buddy policy behind [`CachedGlobal`]'s size classes: like [`DefaultBuddy`], with room
/// for 32 arenas (regions double in size as the heap grows, so 32 arenas reach far beyond any
/// real heap).
pub type GlobalBuddy = Buddy<16, { 1 << 30 }, 32>;

/// The exact-fit buddy under [`Global`]'s classes and chunks ([`GlobalHeap`]): [`SlabBuddy`]
/// with room for 32 arenas, as [`GlobalBuddy`].
pub type GlobalSlabBuddy = Buddy<1024, { 1 << 30 }, 32, true>;

/// A `no_std` global allocator over a static array of `N` bytes, spin-locked:
/// `#[global_allocator] static HEAP: budalloc::StaticGlobal<{ 1 << 20 }> = budalloc::StaticGlobal::new(budalloc::Buddy::new());`
pub type StaticGlobal<const N: usize> = StaticHeap<DefaultBuddy, N>;
