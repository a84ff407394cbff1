//! Integration tests of the buddy policy: one binary, one module per concern.

mod boundaries;
mod errors;
mod exact;
mod marks;
mod parked;
mod props;
mod regions;
mod resize;

use core::alloc::Layout;
use core::ptr::NonNull;

use budalloc_buddy::Buddy;
use budalloc_testkit::{Fit, Geometry, Region};

/// The policy most tests use: 16-byte fragments, 4 KiB largest block, 4 arenas.
pub type Small = Buddy<16, 4096, 4>;

/// The oracle's view of [`Small`].
pub const SMALL: Geometry = Geometry { min: 16, max: 4096, fit: Fit::PowerOfTwo };

/// The exact-fit variant of [`Small`].
pub type Exact = Buddy<16, 4096, 4, true>;

/// The oracle's view of [`Exact`].
pub const EXACT: Geometry = Geometry { min: 16, max: 4096, fit: Fit::Exact };

/// A `Small` heap over a fresh region of `len` bytes aligned to 4 KiB. Keep the region alive
/// as long as the heap.
pub fn small(len: usize) -> (Small, Region) {
    let region = Region::new(len, 4096);
    let mut heap = Small::new();
    let (ptr, len) = region.skewed(0);
    // SAFETY: the region is valid and used by this heap only; it outlives the heap in every
    // test (both are returned together and the heap is declared first).
    unsafe { heap.claim_raw(ptr, len) }.expect("claim");
    (heap, region)
}

/// A layout, unwrapped.
pub fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).expect("layout")
}

/// Allocates, unwrapped, returning the block's start.
pub fn alloc(heap: &mut Small, size: usize, align: usize) -> NonNull<u8> {
    use budalloc_core::RawAlloc;
    heap.allocate(layout(size, align)).expect("allocation").cast()
}

/// The metadata digest, to prove that a rejected call changed nothing.
pub fn digest(heap: &Small) -> (u64, usize) {
    budalloc_testkit::metadata_digest(heap)
}

/// Two live buddies of `size` bytes, `left` below `right`, built deterministically: allocate
/// their parent, shrink it (freeing the upper half), and take the upper half back (the free
/// lists are LIFO).
pub fn buddy_pair(heap: &mut Small, size: usize) -> (NonNull<u8>, NonNull<u8>) {
    use budalloc_core::RawAlloc;
    let left = alloc(heap, 2 * size, 2 * size);
    // SAFETY: `left` is live with layout (2 size, 2 size).
    unsafe { heap.shrink(left, layout(2 * size, 2 * size), layout(size, size)) }.expect("shrink in place");
    let right = alloc(heap, size, size);
    assert_eq!(right.addr().get(), left.addr().get() + size, "buddies are adjacent");
    (left, right)
}

/// Replays `actions` on a fresh `P` over one region of `arena` bytes starting `skew` bytes past
/// a 4 KiB boundary, with every harness check after every step (natively; under Miri, where
/// each check is O(metadata) and slow, only at the end), then frees everything and checks the
/// seeding.
pub fn replay<P>(geometry: Geometry, actions: &[budalloc_testkit::Action], arena: usize, skew: usize)
where
    P: Default + budalloc_core::RawAlloc + budalloc_core::Inspect + budalloc_core::Claim,
{
    let region = Region::new(arena + 96, 4096);
    let (ptr, len) = region.skewed(skew);
    let mut heap = P::default();
    // SAFETY: the region is ours and outlives the heap (the harness is dropped first).
    unsafe { heap.claim_raw(ptr, len) }.unwrap();
    let mut harness = budalloc_testkit::Harness::new(heap, geometry, vec![(ptr, len)]);
    harness.check_every_step = !cfg!(miri);
    harness.run(actions);
    harness.finish();
}
