//! Property tests: random action sequences against the shadow model, with every check of the
//! testkit on after each step (P1, P3, P4, P5 of the reliability matrix).

use budalloc_core::{Inspect, RawAlloc};
use budalloc_testkit::{actions, proptest_config, Harness, Region};
use proptest::prelude::*;

use crate::{layout, Small, SMALL};

/// Arena size and sequence length: small under Miri, where every step is slow.
const ARENA: usize = if cfg!(miri) { 4 * 1024 } else { 48 * 1024 };
const STEPS: usize = if cfg!(miri) { 24 } else { 256 };

proptest! {
    #![proptest_config(proptest_config())]

    /// P1: any mix of valid and invalid operations keeps the policy equal to the model, and
    /// freeing everything restores the seeding.
    #[test]
    fn random_actions_match_the_model(actions in actions(4096, STEPS), skew in 0usize..96) {
        crate::replay::<Small>(SMALL, &actions, ARENA, skew);
    }

    /// The same over two arenas that are not adjacent.
    #[test]
    fn random_actions_over_two_arenas(actions in actions(4096, STEPS)) {
        let first = Region::new(ARENA / 2, 4096);
        let second = Region::new(ARENA / 2 + 1000, 64);
        let mut heap = Small::new();
        let regions = vec![first.skewed(0), second.skewed(8)];
        for &(ptr, len) in &regions {
            // SAFETY: both regions are ours and outlive the heap.
            unsafe { heap.claim_raw(ptr, len) }.unwrap();
        }
        let mut harness = Harness::new(heap, SMALL, regions);
        harness.check_every_step = !cfg!(miri);
        harness.run(&actions);
        harness.finish();
    }

    /// P5: fill to exhaustion with random sizes, free in random order: full coalescing, and the
    /// largest block allocates again.
    #[test]
    fn exhaustion_then_recovery(sizes in prop::collection::vec(1usize..=2048, 1..32), order in any::<u64>()) {
        let region = Region::new(if cfg!(miri) { 2048 } else { ARENA }, 4096);
        let (ptr, len) = region.skewed(0);
        let mut heap = Small::new();
        // SAFETY: the region is ours and outlives the heap.
        unsafe { heap.claim_raw(ptr, len) }.unwrap();
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
        // Fill the remaining dust with the smallest blocks.
        while let Ok(block) = heap.allocate(layout(1, 1)) {
            live.push((block.cast(), 1));
        }
        prop_assert_eq!(heap.stats().free, 0);
        // Free in a pseudo-random order.
        let mut state = order | 1;
        while !live.is_empty() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            let (ptr, size) = live.swap_remove((state % live.len() as u64) as usize);
            // SAFETY: allocated above with this size and alignment 1.
            unsafe { heap.try_deallocate(ptr, layout(size, 1)) }.unwrap();
        }
        heap.check_invariants().unwrap();
        prop_assert!(heap.is_pristine());
        prop_assert_eq!(heap.stats(), initial);
    }

    /// P4: for a live block, every interior offset is rejected and changes nothing.
    #[test]
    fn interior_offsets_rejected(size in 17usize..=512, neighbours in 0usize..4) {
        let region = Region::new(if cfg!(miri) { 4096 } else { 16 * 1024 }, 4096);
        let (ptr, len) = region.skewed(0);
        let mut heap = Small::new();
        // SAFETY: the region is ours and outlives the heap.
        unsafe { heap.claim_raw(ptr, len) }.unwrap();
        let mut harness = Harness::new(heap, SMALL, vec![(ptr, len)]);
        for _ in 0..neighbours {
            harness.alloc_one(size, 8);
        }
        harness.alloc_one(size, 8);
        let addr = *harness.model.addresses().last().unwrap();
        let live = harness.model.get(addr).clone();
        let step = if cfg!(miri) { 97 } else { 1 };
        // Each rejected free is proven side-effect free by the metadata digest; one invariant
        // walk at the end suffices.
        harness.check_every_step = false;
        for offset in (1..live.len).step_by(step) {
            harness.step(&budalloc_testkit::Action::Bad {
                kind: budalloc_testkit::BadFree::Interior,
                pick: harness.model.addresses().iter().position(|&a| a == addr).unwrap(),
                offset: offset - 1,
            });
        }
        harness.finish();
    }
}
