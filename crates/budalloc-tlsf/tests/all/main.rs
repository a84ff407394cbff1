//! Integration tests of the TLSF layer over the exact-fit buddy, alone and under size classes:
//! one binary, one module per concern.

mod errors;
mod props;

use core::alloc::Layout;
use core::ptr::NonNull;

use budalloc_buddy::Buddy;
use budalloc_classes::Classes;
use budalloc_core::{Claim, Inspect, RawAlloc};
use budalloc_testkit::{Action, Fit, Geometry, Region};
use budalloc_tlsf::Tlsf;

/// The backing buddy of these tests: exact fit, 64-byte fragments (as the facade's).
pub type Backend = Buddy<64, { 1 << 30 }, 8, true>;

/// TLSF in small chunks (64 KiB, requests up to 16 KiB) over any backend.
pub type SmallOver<B> = Tlsf<B, { 64 * 1024 }, { 16 * 1024 }>;

/// [`SmallOver`] the buddy, so that a small arena holds several chunks and the tests reach
/// chunk boundaries, chunk reuse and the fallback to the buddy.
pub type Small = SmallOver<Backend>;

/// What the property tests run on: [`Small`] natively; under Miri, where every step is slow,
/// 16 KiB chunks (requests up to 4 KiB) in a smaller arena, with smaller requests.
#[cfg(not(miri))]
pub type PropChunks = Small;
/// See the native definition.
#[cfg(miri)]
pub type PropChunks = Tlsf<Backend, { 16 * 1024 }, { 4 * 1024 }>;

/// Size classes over [`PropChunks`].
pub type PropClasses = Classes<PropChunks, 4096>;

/// The default TLSF geometry (1 MiB chunks, requests up to 64 KiB).
pub type Default1M = Tlsf<Backend>;

/// The oracle's view: any length at least as asked, the buddy's limits.
pub const GEOMETRY: Geometry = Geometry { min: 64, max: 1 << 30, fit: Fit::AtLeast };

/// A heap of type `P` over a fresh region of `len` bytes aligned to 1 MiB, starting `skew`
/// bytes in. Keep the region alive as long as the heap.
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
