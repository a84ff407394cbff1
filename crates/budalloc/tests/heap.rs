//! The allocator-api2 conformance suite on the facade's single-threaded compositions, as a user
//! gets them: the default `Heap` (size classes over the exact-fit `SlabBuddy`) and `BuddyHeap`
//! (the plain buddy). The policies' own suites (shadow model, properties, bad input, Miri) run
//! in their crates over the same types with other parameters.

use budalloc::{BuddyHeap, Claim, Heap, Local, RawAlloc};
use budalloc_testkit::Region;

/// Region length: large enough for a slab of every class and a few large blocks.
const LEN: usize = 4 << 20;

/// A fresh `Local` heap of policy `P` over a region of [`LEN`] bytes (declared after it in the
/// tuple, so dropped after it).
fn local<P: RawAlloc + Claim + Default>() -> (Local<P>, Region) {
    local_of(LEN)
}

/// As [`local`], over `len` bytes.
fn local_of<P: RawAlloc + Claim + Default>(len: usize) -> (Local<P>, Region) {
    let region = Region::new(len, 1 << 20);
    let heap = Local::new(P::default());
    let (ptr, len) = region.skewed(0);
    // SAFETY: the region is ours and outlives the heap.
    unsafe { heap.claim_raw(ptr, len) }.expect("claim");
    (heap, region)
}

/// A fresh default heap.
fn heap() -> (Heap, Region) {
    local()
}

/// A fresh plain-buddy heap.
fn buddy_heap() -> (BuddyHeap, Region) {
    local()
}

mod default_heap {
    budalloc_testkit::allocator_conformance!(super::heap());
}

mod plain_buddy_heap {
    budalloc_testkit::allocator_conformance!(super::buddy_heap());
}

#[test]
fn the_default_heap_packs_small_objects_and_free_all_restores_the_seeding() {
    let (mut heap, _region) = heap();
    let before = heap.stats();
    // 100-byte requests take the 112-byte class, not a 128-byte power of two.
    let layout = core::alloc::Layout::from_size_align(100, 8).expect("layout");
    let block = heap.get_mut().allocate(layout).expect("a small object");
    assert_eq!(block.len(), 112);
    // A 3000-byte request takes the 3072-byte class; one above the 4 KiB limit keeps only the
    // 64-byte fragments it needs.
    let mid = core::alloc::Layout::from_size_align(3000, 8).expect("layout");
    let object = heap.get_mut().allocate(mid).expect("a 3 KiB object");
    assert_eq!(object.len(), 3072);
    let large = core::alloc::Layout::from_size_align(6000, 8).expect("layout");
    let big = heap.get_mut().allocate(large).expect("a large block");
    assert_eq!(big.len(), 6016);
    // SAFETY: live, with its layout.
    unsafe { heap.get_mut().try_deallocate(object.cast(), mid) }.expect("free");
    // SAFETY: live, with its layout.
    unsafe { heap.get_mut().try_deallocate(block.cast(), layout) }.expect("free");
    // SAFETY: live, with its layout.
    unsafe { heap.get_mut().try_deallocate(big.cast(), large) }.expect("free");
    budalloc_testkit::conformance::collections(&heap);
    let policy = heap.get_mut();
    policy.flush();
    assert_eq!(policy.stats(), before);
    assert!(policy.backend_mut().backend_mut().is_pristine());
}

#[test]
fn the_default_heap_keeps_its_arena_metadata_under_one_percent() {
    // The buddy's bitmaps (4 bits per 1 KiB fragment) and guard keys, at the sizes;
    // the region's pages are only touched where the metadata goes.
    for len in [1 << 20, 64 << 20, 1 << 30] {
        let (heap, _region) = local_of::<budalloc::ClassesBuddy>(len);
        let stats = heap.stats();
        assert_eq!(stats.capacity + stats.overhead, len);
        let share = stats.overhead as f64 / len as f64;
        println!("{len:>10} B arena, fresh: {} B metadata, {:.2}%", stats.overhead, 100.0 * share);
        assert!(share < 0.01, "{len} B: {:.3}% metadata", 100.0 * share);
    }
}

#[test]
fn the_default_heap_keeps_its_metadata_under_one_percent_when_chunks_fill_it() {
    use allocator_api2::alloc::Allocator;
    // Blocks of 100 000 bytes live in TLSF chunks (a header and two bitmaps of 4 KiB per
    // MiB): fill the arena with them, then add the buddy's bitmaps. Under Miri, a small arena.
    let len = if cfg!(miri) { 4 << 20 } else { 64 << 20 };
    let (heap, _region) = local_of::<budalloc::ClassesBuddy>(len);
    let layout = core::alloc::Layout::from_size_align(100_000, 8).expect("layout");
    let mut blocks = Vec::new();
    while let Ok(block) = (&heap).allocate(layout) {
        blocks.push(block.cast::<u8>());
    }
    let stats = heap.stats();
    assert_eq!(stats.capacity + stats.overhead, len);
    let share = stats.overhead as f64 / len as f64;
    println!("{len:>10} B arena of chunks: {} B metadata, {:.2}%", stats.overhead, 100.0 * share);
    assert!(share < 0.01, "{:.3}% metadata", 100.0 * share);
    assert!(stats.allocated >= len / 10 * 9, "{} of {len} B allocated", stats.allocated);
    for block in blocks {
        // SAFETY: live, with `layout`.
        unsafe { (&heap).deallocate(block, layout) };
    }
}

#[test]
#[cfg(feature = "check-invariants")]
fn a_heap_whose_objects_were_all_freed_serves_the_largest_request_it_first_could() {
    use allocator_api2::alloc::Allocator;
    use budalloc::ClassesBuddy;
    use budalloc_core::{Inspect, SizeClasses};
    // A small region: an object of every class takes a slab of each, and the frees leave them
    // cached (one empty slab per class), out of the buddy's reach.
    let (mut heap, _region) = local_of::<ClassesBuddy>(512 << 10);
    let largest = heap.stats().largest_free;
    let layout = |size| core::alloc::Layout::from_size_align(size, 8).expect("layout");
    let objects: Vec<_> = (0..ClassesBuddy::CLASSES)
        .map(|c| {
            let l = ClassesBuddy::class_layout(c);
            (heap.get_mut().allocate(l).expect("an object of every class"), l)
        })
        .collect();
    for (object, l) in objects {
        // SAFETY: live, with its layout.
        unsafe { heap.get_mut().try_deallocate(object.cast(), l) }.expect("free");
    }
    assert_eq!(heap.stats().allocated, 0, "every object is free");
    let big = layout(largest);
    // The policy alone refuses it and changes nothing: a failed request is not the moment to
    // give the cached slabs back behind the caller's back.
    let before = budalloc_testkit::metadata_digest(heap.get_mut());
    assert!(heap.get_mut().allocate(big).is_err(), "the cached slabs hold part of the largest block");
    assert_eq!(budalloc_testkit::metadata_digest(heap.get_mut()), before);
    // The frontend gives them back (`release_spare`) and tries again.
    let block = (&heap).allocate(big).expect("the frontend releases the cached slabs and retries");
    assert!(block.len() >= largest);
    heap.get_mut().check_invariants().expect("invariants");
    // SAFETY: live, with its layout.
    unsafe { (&heap).deallocate(block.cast(), big) };
    let policy = heap.get_mut();
    policy.flush();
    assert!(policy.backend_mut().backend_mut().is_pristine());
}
