//! Integration tests of the frontends: the allocator-api2 conformance suite on `Local` over the
//! buddy policy, and what `Local` adds (stats, claim, misuse on free).

mod cached;
mod locked;
mod static_heap;

use budalloc_buddy::Buddy;
use budalloc_core::{Inspect, RawAlloc};
use budalloc_sync::Local;
use budalloc_testkit::Region;

type Policy = Buddy<16, { 1 << 16 }, 2>;

/// A `Local` buddy over a fresh region; the region outlives the heap (declared after it in the
/// tuple, so dropped after it).
fn local(len: usize) -> (Local<Policy>, Region) {
    let region = Region::new(len, 4096);
    let heap = Local::new(Policy::new());
    let (ptr, len) = region.skewed(0);
    // SAFETY: the region is ours and outlives the heap.
    unsafe { heap.claim_raw(ptr, len) }.expect("claim");
    (heap, region)
}

mod local_buddy {
    budalloc_testkit::allocator_conformance!(super::local(if cfg!(miri) { 64 * 1024 } else { 1 << 20 }));
}

#[test]
fn everything_freed_restores_the_seeding() {
    let (mut heap, _region) = local(256 * 1024);
    let before = heap.stats();
    budalloc_testkit::conformance::collections(&heap);
    let policy = heap.get_mut();
    policy.flush(); // the buddy parks the block freed last
    assert_eq!(policy.stats(), before);
    policy.check_invariants().unwrap();
    assert!(policy.is_pristine());
}

#[test]
#[should_panic(expected = "budalloc: invalid deallocation: double free")]
fn misuse_on_the_allocator_path_panics_with_the_error() {
    use allocator_api2::alloc::Allocator;
    let (heap, _region) = local(64 * 1024);
    let layout = core::alloc::Layout::from_size_align(64, 8).unwrap();
    let a = &heap;
    let block = a.allocate(layout).unwrap().cast::<u8>();
    // SAFETY: live with `layout`.
    unsafe { a.deallocate(block, layout) };
    // SAFETY: deliberately a double free: the policy detects it and the frontend panics.
    unsafe { a.deallocate(block, layout) };
}

#[test]
fn reentrant_calls_are_refused() {
    let (heap, _region) = local(64 * 1024);
    let nested = heap.with(|policy| {
        let _ = policy.stats();
        heap.with(|_| ())
    });
    assert_eq!(nested, Some(None));
}
