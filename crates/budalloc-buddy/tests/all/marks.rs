//! Marked blocks (`RawAlloc::allocate_marked`): told apart from every other block by
//! `is_marked`, from metadata alone; the mark goes with the free and costs no metadata.

use budalloc_core::{Inspect, RawAlloc};

use crate::{digest, layout, small, Exact};

#[test]
fn a_marked_block_is_told_from_an_unmarked_one_of_the_same_layout() {
    let (mut heap, _region) = small(8192);
    let l = layout(1024, 1024);
    let marked = heap.allocate_marked(l).unwrap().cast::<u8>();
    let plain = heap.allocate(l).unwrap().cast::<u8>();
    heap.check_invariants().unwrap();
    assert_eq!(heap.is_marked(marked), Some(true));
    assert_eq!(heap.is_marked(plain), Some(false));
    // Inside a block, in free memory, outside every arena: no marked block starts there.
    assert_eq!(heap.is_marked(marked.map_addr(|a| a.saturating_add(16))), Some(false));
    let free = heap.allocate(l).unwrap().cast::<u8>();
    // SAFETY: `free` is live with layout `l`.
    unsafe { heap.try_deallocate(free, l) }.unwrap();
    assert_eq!(heap.is_marked(free), Some(false), "the parked block is free memory");
    let outside = core::ptr::NonNull::<u8>::dangling();
    assert_eq!(heap.is_marked(outside), Some(false));
    // The mark takes no bit of its own: the stats are those of two plain blocks.
    assert_eq!(heap.stats().allocated, 2048);
    for p in [marked, plain] {
        // SAFETY: both are live with layout `l`.
        unsafe { heap.try_deallocate(p, l) }.unwrap();
    }
    heap.check_invariants().unwrap();
    assert!(heap.is_pristine(), "the mark went with the free");
}

#[test]
fn the_mark_does_not_outlive_its_block() {
    let (mut heap, _region) = small(8192);
    let l = layout(256, 256);
    let p = heap.allocate_marked(l).unwrap().cast::<u8>();
    // SAFETY: `p` is live with layout `l`.
    unsafe { heap.try_deallocate(p, l) }.unwrap();
    // The parked block comes straight back to a plain allocation: unmarked.
    let q = heap.allocate(l).unwrap().cast::<u8>();
    assert_eq!(q, p);
    assert_eq!(heap.is_marked(q), Some(false));
    heap.check_invariants().unwrap();
    // SAFETY: `q` is live with layout `l`.
    unsafe { heap.try_deallocate(q, l) }.unwrap();
    assert!(heap.is_pristine());
}

#[test]
fn a_one_fragment_block_cannot_be_marked_and_says_so() {
    let (mut heap, _region) = small(4096);
    let l = layout(16, 16);
    let p = heap.allocate_marked(l).unwrap().cast::<u8>();
    assert_eq!(heap.is_marked(p), None, "no second fragment to carry the mark");
    heap.check_invariants().unwrap();
    // SAFETY: `p` is live with layout `l`.
    unsafe { heap.try_deallocate(p, l) }.unwrap();
    assert!(heap.is_pristine());
}

#[test]
fn a_marked_block_is_not_resized_in_place_and_nothing_changes() {
    let (mut heap, _region) = small(8192);
    let l = layout(1024, 8);
    let p = heap.allocate_marked(l).unwrap().cast::<u8>();
    let before = digest(&heap);
    // SAFETY: `p` is live with layout `l` (its buddy is free: a plain block would grow).
    assert!(unsafe { heap.grow_in_place(p, l, layout(2048, 8)) }.is_err());
    // SAFETY: as above.
    assert!(unsafe { heap.shrink_in_place(p, l, layout(64, 8)) }.is_err());
    assert_eq!(digest(&heap), before, "a refused resize changes nothing");
    // Moving is the caller's way: the new block is a plain one.
    // SAFETY: as above.
    let moved = unsafe { heap.grow(p, l, layout(2048, 8)) }.unwrap().cast::<u8>();
    assert_eq!(heap.is_marked(moved), Some(false));
    heap.check_invariants().unwrap();
    // SAFETY: `moved` is live with layout (2048, 8).
    unsafe { heap.try_deallocate(moved, layout(2048, 8)) }.unwrap();
    assert!(heap.is_pristine());
}

#[test]
fn exact_fit_marks_the_head_of_a_multi_piece_block() {
    let region = budalloc_testkit::Region::new(8192, 4096);
    let mut heap = Exact::new();
    let (ptr, len) = region.skewed(0);
    // SAFETY: the region is valid, used by this heap only, and outlives it.
    unsafe { heap.claim_raw(ptr, len) }.unwrap();
    // 48 bytes: a 32-byte head piece and a 16-byte one.
    let l = layout(48, 16);
    let p = heap.allocate_marked(l).unwrap().cast::<u8>();
    let q = heap.allocate(l).unwrap().cast::<u8>();
    heap.check_invariants().unwrap();
    assert_eq!(heap.is_marked(p), Some(true));
    assert_eq!(heap.is_marked(q), Some(false));
    for r in [p, q] {
        // SAFETY: both are live with layout `l`.
        unsafe { heap.try_deallocate(r, l) }.unwrap();
    }
    heap.check_invariants().unwrap();
    assert!(heap.is_pristine());
}

/// Arena of the marks property: small under Miri, where every step checks every invariant.
const MARKS_ARENA: usize = if cfg!(miri) { 8 * 1024 } else { 64 * 1024 };

/// One step of the marks property: allocate (marked or not), free or resize a live block.
#[derive(Clone, Debug)]
enum Step {
    Alloc { size: usize, align_log2: u32, marked: bool },
    Free { pick: usize },
    Resize { pick: usize, size: usize },
}

fn steps() -> impl proptest::strategy::Strategy<Value = Vec<Step>> {
    use proptest::prelude::*;
    let step = prop_oneof![
        3 => (1usize..1500, 0u32..8, any::<bool>())
            .prop_map(|(size, align_log2, marked)| Step::Alloc { size, align_log2, marked }),
        2 => any::<usize>().prop_map(|pick| Step::Free { pick }),
        1 => (any::<usize>(), 1usize..1500).prop_map(|(pick, size)| Step::Resize { pick, size }),
    ];
    proptest::collection::vec(step, 1..if cfg!(miri) { 24 } else { 160 })
}

/// Runs `steps` on `heap`: after every step, every live block answers `is_marked` as it was
/// allocated (`None` only for a block whose first piece is one fragment), a marked block is
/// never resized in place, the invariants hold; at the end, freeing everything restores the
/// seeding.
fn marks_hold<P: RawAlloc + Inspect>(heap: &mut P, steps: &[Step]) {
    let mut live: Vec<(core::ptr::NonNull<u8>, core::alloc::Layout, bool)> = Vec::new();
    for step in steps {
        match *step {
            Step::Alloc { size, align_log2, marked } => {
                let l = layout(size, 1 << align_log2);
                let block = if marked { heap.allocate_marked(l) } else { heap.allocate(l) };
                if let Ok(block) = block {
                    live.push((block.cast(), l, marked));
                }
            }
            Step::Free { pick } if !live.is_empty() => {
                let (p, l, _) = live.swap_remove(pick % live.len());
                // SAFETY: live with `l`.
                unsafe { heap.try_deallocate(p, l) }.unwrap();
                assert_eq!(heap.is_marked(p), Some(false), "a freed block carries no mark");
            }
            Step::Resize { pick, size } if !live.is_empty() => {
                let i = pick % live.len();
                let (p, old, _) = live[i];
                // Whether it carries a mark (a block whose first piece is one fragment cannot).
                let marked = heap.is_marked(p) == Some(true);
                let new = layout(size, old.align());
                let resized = if size >= old.size() {
                    // SAFETY: live with `old`; the size grows.
                    unsafe { heap.grow(p, old, new) }
                } else {
                    // SAFETY: live with `old`; the size shrinks.
                    unsafe { heap.shrink(p, old, new) }
                };
                if let Ok(block) = resized {
                    let q = block.cast::<u8>();
                    if marked {
                        assert_ne!(q, p, "a marked block is moved, never resized in place");
                    }
                    // The block that comes back, moved or not, is a plain one.
                    live[i] = (q, new, false);
                }
            }
            _ => {}
        }
        heap.check_invariants().unwrap();
        for &(p, _, marked) in &live {
            let answer = heap.is_marked(p);
            assert!(answer == Some(marked) || answer.is_none(), "{p:?} marked {marked}: {answer:?}");
        }
    }
    for (p, l, _) in live {
        // SAFETY: live with `l`.
        unsafe { heap.try_deallocate(p, l) }.unwrap();
    }
    heap.flush();
    heap.check_invariants().unwrap();
}

proptest::proptest! {
    #![proptest_config(budalloc_testkit::proptest_config())]

    #[test]
    fn marks_follow_their_blocks(steps in steps(), exact in proptest::prelude::any::<bool>()) {
        if exact {
            let region = budalloc_testkit::Region::new(MARKS_ARENA, 4096);
            let mut heap = Exact::new();
            let (ptr, len) = region.skewed(0);
            // SAFETY: the region is valid, used by this heap only, and outlives it.
            unsafe { heap.claim_raw(ptr, len) }.unwrap();
            marks_hold(&mut heap, &steps);
            proptest::prop_assert!(heap.is_pristine());
        } else {
            let (mut heap, _region) = small(MARKS_ARENA);
            marks_hold(&mut heap, &steps);
            proptest::prop_assert!(heap.is_pristine());
        }
    }
}
