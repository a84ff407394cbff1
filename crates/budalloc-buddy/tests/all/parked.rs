//! The block freed last is parked, not merged, until the next operation: to callers it is free
//! memory like any other, in the figures and for allocations that need it merged.

use core::ptr::NonNull;

use budalloc_core::{Inspect, RawAlloc};
use budalloc_testkit::{metadata_digest, Region};

use crate::{layout, small, Exact};

fn exact(len: usize) -> (Exact, Region, usize) {
    let region = Region::new(len, 4096);
    let mut heap = Exact::new();
    let (ptr, len) = region.skewed(0);
    // SAFETY: the region is ours and outlives the heap.
    unsafe { heap.claim_raw(ptr, len) }.expect("claim");
    (heap, region, ptr.addr())
}

/// Every one-fragment block of the heap, sorted by address.
fn fragments<P: RawAlloc>(heap: &mut P) -> Vec<NonNull<u8>> {
    let mut all = Vec::new();
    while let Ok(block) = heap.allocate(layout(16, 1)) {
        all.push(block.cast::<u8>());
    }
    all.sort_by_key(|p| p.addr());
    all
}

/// Frees the fragments whose index from `base` lies in `range`.
fn free_fragments<P: RawAlloc>(
    heap: &mut P,
    all: &[NonNull<u8>],
    base: usize,
    range: core::ops::Range<usize>,
) {
    for &p in all.iter().filter(|p| range.contains(&((p.addr().get() - base) / 16))) {
        // SAFETY: live, allocated with (16, 1).
        unsafe { heap.try_deallocate(p, layout(16, 1)) }.unwrap();
    }
}

#[test]
fn the_figures_show_the_parked_block_merged() {
    let (mut heap, _region) = small(4096 + 512);
    let l = layout(4096, 4096);
    let big = heap.allocate(l).unwrap().cast::<u8>();
    let rest = fragments(&mut heap);
    // SAFETY: live with `l`: parked, the only free memory.
    unsafe { heap.try_deallocate(big, l) }.unwrap();
    let parked = heap.stats();
    assert_eq!((parked.free, parked.largest_free), (4096, 4096), "{parked}");
    assert_eq!(parked.free_blocks[8], 1, "{parked}");
    // A parked one-fragment block next to its free buddy counts as the block they merge into.
    let pair =
        rest.windows(2).find(|w| w[0].addr().get() % 32 == 0 && w[1].addr().get() == w[0].addr().get() + 16);
    let &[a, b] = pair.expect("two buddy fragments") else { unreachable!() };
    // SAFETY: live with (16, 1); `b` is parked (and `big` merged) by the second free.
    unsafe { heap.try_deallocate(a, layout(16, 1)) }.unwrap();
    // SAFETY: as above.
    unsafe { heap.try_deallocate(b, layout(16, 1)) }.unwrap();
    heap.check_invariants().unwrap(); // includes: the free blocks add up to `free`
    let parked = heap.stats();
    heap.flush();
    assert_eq!(parked, heap.stats(), "figures before and after merging the parked block");
}

/// A run of 64 free fragments exists only through the parked block, whose own order is below
/// the orders a 64-fragment request walks: the request still finds it (it failed before).
#[test]
fn a_run_through_the_parked_block_serves_a_large_request() {
    let (mut heap, _region, base) = exact(8192);
    let all = fragments(&mut heap);
    // Fragments 32..64 free and merged; their lower half taken as one 256-byte block.
    free_fragments(&mut heap, &all, base, 32..64);
    heap.flush();
    let mid = heap.allocate(layout(256, 256)).unwrap().cast::<u8>();
    assert_eq!(mid.addr().get(), base + 32 * 16);
    // Fragments 16..32 and 64..80 free: blocks of 16 fragments whose buddies are live.
    free_fragments(&mut heap, &all, base, 16..32);
    free_fragments(&mut heap, &all, base, 64..80);
    heap.flush();
    // Parked: 16..80 are all free to the caller, but unmerged: no listed block of 32.
    // SAFETY: live with (256, 256).
    unsafe { heap.try_deallocate(mid, layout(256, 256)) }.unwrap();
    heap.check_invariants().unwrap();
    assert_eq!(heap.stats().free, 64 * 16);
    let block = heap.allocate(layout(1023, 1)).expect("the run through the parked block").cast::<u8>();
    assert_eq!(block.addr().get(), base + 16 * 16);
    heap.check_invariants().unwrap();
    // Nothing else is free: a further request fails and changes nothing.
    let before = metadata_digest(&heap);
    assert!(heap.allocate(layout(16, 1)).is_err());
    assert_eq!(metadata_digest(&heap), before);
}
