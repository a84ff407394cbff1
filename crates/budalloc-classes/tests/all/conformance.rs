//! The allocator-api2 conformance suite through `Local`, over size classes on the exact-fit
//! buddy.

use budalloc_sync::Local;
use budalloc_testkit::Region;

use crate::Exact;

/// A `Local` heap over a fresh region; the region outlives the heap (declared after it in the
/// tuple, so dropped after it).
fn local(len: usize) -> (Local<Exact>, Region) {
    let region = Region::new(len, 1 << 20);
    let heap = Local::new(Exact::default());
    let (ptr, len) = region.skewed(0);
    // SAFETY: the region is ours and outlives the heap.
    unsafe { heap.claim_raw(ptr, len) }.expect("claim");
    (heap, region)
}

mod local_classes {
    budalloc_testkit::allocator_conformance!(super::local(if cfg!(miri) { 256 * 1024 } else { 4 << 20 }));
}

#[test]
fn collections_then_free_all_restore_the_seeding() {
    use budalloc_core::{Inspect, RawAlloc};
    let (mut heap, _region) = local(if cfg!(miri) { 256 * 1024 } else { 1 << 20 });
    let before = heap.stats();
    budalloc_testkit::conformance::collections(&heap);
    let policy = heap.get_mut();
    policy.check_invariants().unwrap();
    policy.flush();
    assert_eq!(policy.stats(), before);
    policy.check_invariants().unwrap();
    assert!(policy.backend_mut().is_pristine());
}
