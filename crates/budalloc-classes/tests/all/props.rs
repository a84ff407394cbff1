//! Property tests: random action sequences against the shadow model, with every check of the
//! testkit after each step, over both buddies; exhaustion and recovery; interior offsets.

use budalloc_core::{Inspect, RawAlloc};
use budalloc_testkit::{actions, proptest_config, Action, BadFree, Harness, Region};
use proptest::prelude::*;

use crate::{layout, Exact, Plain, GEOMETRY, LIMIT};

/// Arena of the random runs: a few slabs of the small classes; the largest classes' slabs do
/// not fit, so their requests take the fallback path to the buddy (the 4 MiB run below covers
/// their slabs).
const ARENA: usize = if cfg!(miri) { 96 * 1024 } else { 512 * 1024 };

/// Sequence length: short under Miri, where every step is slow.
const STEPS: usize = if cfg!(miri) { 24 } else { 256 };

/// Largest size the actions draw (a few are drawn above it): mostly objects of every class,
/// some blocks of the backend.
const SIZES: usize = 4 * LIMIT;

proptest! {
    #![proptest_config(proptest_config())]

    /// Any mix of valid and invalid operations keeps the heap equal to the model, and freeing
    /// everything (then flushing) restores the buddy's seeding.
    #[test]
    fn random_actions_over_the_exact_buddy(actions in actions(SIZES, STEPS), skew in 0usize..96) {
        crate::replay::<Exact>(&actions, ARENA, skew);
    }

    /// The same with the default limit.
    #[test]
    fn random_actions_default_limit(actions in actions(4 * budalloc_classes::DEFAULT_LIMIT, STEPS), skew in 0usize..96) {
        crate::replay::<crate::DefaultHeap>(&actions, ARENA, skew);
    }

    /// The same over the plain buddy.
    #[test]
    fn random_actions_over_the_plain_buddy(actions in actions(SIZES, STEPS), skew in 0usize..96) {
        crate::replay::<Plain>(&actions, ARENA, skew);
    }

    /// The same in an arena that holds the largest slabs, with sizes drawn up to the limit.
    #[test]
    fn random_actions_with_large_slabs(actions in actions(LIMIT, STEPS)) {
        crate::replay::<Exact>(&actions, crate::ARENA, 0);
    }

    /// The same over two arenas that are not adjacent.
    #[test]
    fn random_class_actions_over_two_arenas(actions in actions(SIZES, STEPS)) {
        let first = Region::new(ARENA / 2, 1 << 20);
        let second = Region::new(ARENA / 2 + 1000, 4096);
        let mut heap = Exact::new(Default::default());
        let regions = vec![first.skewed(0), second.skewed(16)];
        for &(ptr, len) in &regions {
            // SAFETY: both regions are ours and outlive the heap.
            unsafe { heap.backend_mut().claim_raw(ptr, len) }.unwrap();
        }
        let mut harness = Harness::new(heap, GEOMETRY, regions);
        harness.check_every_step = !cfg!(miri);
        harness.run(&actions);
        harness.finish();
    }

    /// Fill to exhaustion with random small sizes, free in random order: the cached slabs go
    /// back on flush and the buddy is pristine, with the figures of the start.
    #[test]
    fn exhaustion_then_recovery(sizes in prop::collection::vec(1usize..=LIMIT / 4, 1..16), order in any::<u64>()) {
        let (mut heap, _region, _) = crate::heap::<Exact>(if cfg!(miri) { 32 * 1024 } else { 1 << 20 }, 0);
        let initial = heap.stats();
        let mut live = Vec::new();
        'fill: loop {
            for &size in &sizes {
                match heap.allocate(layout(size, 1)) {
                    Ok(block) => live.push((block.cast::<u8>(), size)),
                    Err(_) => break 'fill,
                }
            }
        }
        // What is left serves no slab of these classes; the smallest class may still fit.
        while let Ok(block) = heap.allocate(layout(1, 1)) {
            live.push((block.cast(), 1));
        }
        heap.check_invariants().unwrap();
        let mut state = order | 1;
        while !live.is_empty() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            let (ptr, size) = live.swap_remove((state % live.len() as u64) as usize);
            // SAFETY: allocated above with this size and alignment 1.
            unsafe { heap.try_deallocate(ptr, layout(size, 1)) }.unwrap();
        }
        heap.check_invariants().unwrap();
        heap.flush();
        prop_assert!(heap.backend_mut().is_pristine());
        prop_assert_eq!(heap.stats(), initial);
    }

    /// For a live object, every interior offset is rejected and changes nothing.
    #[test]
    fn interior_offsets_rejected(size in 17usize..=LIMIT.min(2048), align_log2 in 0u8..=4, neighbours in 0usize..4) {
        let (heap, _region, whole) = crate::heap::<Exact>(if cfg!(miri) { 64 * 1024 } else { 128 * 1024 }, 0);
        let mut harness = Harness::new(heap, GEOMETRY, vec![whole]);
        for _ in 0..=neighbours {
            harness.alloc_one(size, 1 << align_log2);
        }
        let addresses = harness.model.addresses();
        let pick = addresses.len() / 2;
        let live = harness.model.get(addresses[pick]).clone();
        // Under Miri four offsets per case, the last one included.
        let step = if cfg!(miri) { (live.len / 3).max(1) } else { 1 };
        harness.check_every_step = false;
        for offset in (1..live.len).step_by(step).chain(cfg!(miri).then_some(live.len - 1)) {
            harness.step(&Action::Bad { kind: BadFree::Interior, pick, offset: offset - 1 });
        }
        harness.finish();
    }
}
