//! Integration tests of the size-class layer over the buddy policy: one binary, one module per
//! concern.

mod conformance;
mod errors;
mod fallback;
mod moves;
mod props;
mod stats;

use core::alloc::Layout;
use core::ptr::NonNull;

use budalloc_buddy::Buddy;
use budalloc_classes::Classes;
use budalloc_core::{Claim, Inspect, RawAlloc};
use budalloc_testkit::{Action, Fit, Geometry, Region};

/// Small-object limit of most tested heaps: 32 KiB natively (the largest table in use: slabs
/// up to 1 MiB, fallback blocks); the default 1 KiB under Miri, where slabs stay at most 32 KiB
/// and the arenas small. [`DefaultHeap`] covers the default natively too.
pub const LIMIT: usize = if cfg!(miri) { 1024 } else { 32 * 1024 };

/// The default composition: size classes with the default limit over the exact-fit buddy.
pub type DefaultHeap = Classes<Buddy<16, { 1 << 30 }, 8, true>>;

/// Size classes over the exact-fit buddy: the default composition of issue 3.
pub type Exact = Classes<Buddy<16, { 1 << 30 }, 8, true>, LIMIT>;

/// Size classes over the plain power-of-two buddy.
pub type Plain = Classes<Buddy<16, { 1 << 30 }>, LIMIT>;

/// The oracle's view of both: any length at least as asked, the buddy's limits.
pub const GEOMETRY: Geometry = Geometry { min: 16, max: 1 << 30, fit: Fit::AtLeast };

/// Arena size of most tests: room for a few of the largest slabs.
pub const ARENA: usize = if cfg!(miri) { 128 * 1024 } else { 4 << 20 };

/// A heap of type `P` over a fresh region of `len` bytes aligned to 1 MiB (the largest slab),
/// starting `skew` bytes in. Keep the region alive as long as the heap.
pub fn heap<P: Default + Claim>(len: usize, skew: usize) -> (P, Region, (*mut u8, usize)) {
    budalloc_testkit::fresh_heap(len, skew, 1 << 20)
}

/// A layout, unwrapped.
pub fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).expect("layout")
}

/// Allocates, unwrapped, returning the block's start.
pub fn alloc<P: RawAlloc>(heap: &mut P, l: Layout) -> NonNull<u8> {
    heap.allocate(l).expect("allocation").cast()
}

/// The metadata digest, to prove that a rejected call changed nothing.
pub fn digest(heap: &impl Inspect) -> (u64, usize) {
    budalloc_testkit::metadata_digest(heap)
}

/// Replays `actions` on a fresh `P` over one region of `arena` bytes starting `skew` bytes in,
/// with every harness check, then frees everything and checks the seeding.
pub fn replay<P>(actions: &[Action], arena: usize, skew: usize)
where
    P: Default + RawAlloc + Inspect + Claim,
{
    budalloc_testkit::replay::<P>(actions, GEOMETRY, (arena, skew, 1 << 20));
}
