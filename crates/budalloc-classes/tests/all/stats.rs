//! Figures: objects at class size, slab headers as overhead, largest request that succeeds.

use budalloc_core::{Inspect, RawAlloc, SizeClasses};

use crate::{alloc, layout, Exact, Plain, ARENA, LIMIT};

#[test]
fn stats_count_objects_at_class_size_and_slab_headers_as_overhead() {
    let (mut heap, _region, _) = crate::heap::<Exact>(ARENA, 0);
    let initial = heap.stats();
    let l = layout(100, 8);
    let class = *Exact::TABLE.class(Exact::class_of(l).unwrap());
    let live: Vec<_> = (0..5).map(|_| alloc(&mut heap, l)).collect();
    let stats = heap.stats();
    assert_eq!(stats.allocated, 5 * class.size);
    assert_eq!(stats.capacity, initial.capacity - class.slab_waste());
    assert_eq!(stats.overhead, initial.overhead + class.slab_waste());
    assert_eq!(stats.capacity + stats.overhead, initial.capacity + initial.overhead);
    assert_eq!(stats.free, stats.capacity - stats.allocated);
    assert_eq!(heap.backend().stats().allocated, class.slab_size());
    for p in live {
        // SAFETY: live with `l`.
        unsafe { heap.try_deallocate(p, l) }.unwrap();
    }
    // The empty slab stays (free to the user) until flushed.
    assert_eq!(heap.stats().allocated, 0);
    assert_eq!(heap.backend().stats().allocated, class.slab_size());
    heap.flush();
    assert_eq!(heap.stats(), initial);
}

#[test]
fn free_all_restores_the_seeding_over_both_buddies() {
    fn run<P: Default + RawAlloc + Inspect + budalloc_core::Claim>() -> (P, budalloc_testkit::Region) {
        // Room for a slab of every class (up to 32 KiB each under Miri's 1 KiB limit).
        let (mut heap, region, _) = crate::heap::<P>(if cfg!(miri) { 512 * 1024 } else { ARENA }, 48);
        let initial = heap.stats();
        let mut live = Vec::new();
        // Blocks of up to 4 LIMIT (at most 5000) bytes, of alignments 1 to 32.
        let count = if cfg!(miri) { 40 } else { 200 };
        for i in 1..count {
            let l = layout(i * 37 % (4 * LIMIT).min(5000) + 1, 1 << (i % 6));
            live.push((alloc(&mut heap, l), l));
        }
        heap.check_invariants().unwrap();
        for (p, l) in live.into_iter().rev() {
            // SAFETY: live with `l`.
            unsafe { heap.try_deallocate(p, l) }.unwrap();
        }
        heap.flush();
        heap.check_invariants().unwrap();
        assert_eq!(heap.stats(), initial);
        (heap, region)
    }
    // (The heap is dropped before its region: the first tuple field goes first.)
    let mut exact = run::<Exact>();
    assert!(exact.0.backend_mut().is_pristine());
    let mut plain = run::<Plain>();
    assert!(plain.0.backend_mut().is_pristine());
}
