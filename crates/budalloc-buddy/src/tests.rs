//! Unit tests of the buddy mechanism that need the crate's private items.

use core::alloc::Layout;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

extern crate std;
use std::boxed::Box;
use std::vec::Vec;

use budalloc_core::{Inspect, RawAlloc};

use crate::Buddy;

/// A 4 KiB-aligned window of `len` bytes into `buffer` (which must hold `len + 4096`).
fn region(buffer: &mut [MaybeUninit<u8>], len: usize) -> (*mut u8, usize) {
    let skip = buffer.as_ptr().align_offset(4096);
    (buffer[skip..skip + len].as_mut_ptr().cast(), len)
}

#[test]
fn smoke_alloc_free_restores_seeding() {
    let mut buffer: Box<[MaybeUninit<u8>]> = std::vec![MaybeUninit::uninit(); 20 * 1024].into_boxed_slice();
    let (ptr, len) = region(&mut buffer, 16 * 1024);
    let mut heap: Buddy<16, 4096> = Buddy::new();
    // SAFETY: the buffer outlives the heap and is used by nothing else meanwhile.
    unsafe { heap.claim_raw(ptr, len) }.unwrap();
    heap.check_invariants().unwrap();
    let mut blocks = Vec::new();
    for size in [1, 16, 17, 100, 1000, 4096, 3] {
        let layout = Layout::from_size_align(size, 1).unwrap();
        let b = heap.allocate(layout).unwrap();
        heap.check_invariants().unwrap();
        blocks.push((b, layout));
    }
    for (b, layout) in blocks {
        // SAFETY: allocated above with this layout.
        unsafe { heap.try_deallocate(b.cast(), layout) }.unwrap();
        heap.check_invariants().unwrap();
    }
    assert!(heap.is_pristine());
    let map = std::format!("{}", heap.map(256));
    assert!(map.contains("iiii") && !map.contains('?'), "{map}");
    let _ = heap; // the heap goes before the buffer it manages
}

#[test]
fn pieces_are_the_same_from_either_end_and_tile_the_range_with_aligned_blocks() {
    use crate::exact::Pieces;
    // Every offset and length of a few hundred fragments natively; a sample under Miri.
    let (fronts, lens) = if cfg!(miri) { (4, 12) } else { (70, 140) };
    for first in [0usize, 1, 3, 8, 1000, 4097] {
        for front in 0..fronts {
            for len in 0..lens {
                for top in [3u32, 6, 30] {
                    let pieces = Pieces::new(first, front, front + len, top);
                    let forward: Vec<_> = pieces.collect();
                    let mut backward: Vec<_> = pieces.rev().collect();
                    backward.reverse();
                    assert_eq!(forward, backward, "first {first} front {front} len {len} top {top}");
                    let mut at = front;
                    for (p, order) in forward {
                        assert_eq!(p, at, "pieces tile the range");
                        assert!(order.get() <= top);
                        assert_eq!((first + p) % order.fragments(), 0, "a piece is aligned to its size");
                        at += order.fragments();
                    }
                    assert_eq!(at, front + len);
                }
            }
        }
    }
}

/// The bound on the runs' length of `heap`'s one arena.
fn runs_below(heap: &Buddy<64, 4096, 1, true>) -> usize {
    heap.slots().next().unwrap().runs_below()
}

/// An exact-fit heap over a 4 KiB region of `buffer`, filled with one-fragment blocks: the
/// blocks, adjacent, in address order (more than eight).
///
/// # Safety
/// `buffer` must outlive the heap and be used by nothing else meanwhile.
unsafe fn filled_with_fragments(
    buffer: &mut [MaybeUninit<u8>],
) -> (Buddy<64, 4096, 1, true>, Vec<NonNull<u8>>) {
    let (ptr, len) = region(buffer, 4096);
    let mut heap: Buddy<64, 4096, 1, true> = Buddy::new();
    // SAFETY: our caller's promise.
    unsafe { heap.claim_raw(ptr, len) }.unwrap();
    let one = Layout::from_size_align(64, 8).unwrap();
    let mut blocks: Vec<_> =
        core::iter::from_fn(|| heap.allocate(one).ok().map(|b| b.cast::<u8>())).collect();
    blocks.sort();
    assert!(blocks.len() > 8 && blocks.windows(2).all(|w| w[1].addr().get() - w[0].addr().get() == 64));
    (heap, blocks)
}

#[test]
fn a_request_no_run_can_hold_is_refused_again_without_a_search_until_fragments_are_freed() {
    use budalloc_core::AllocError;
    let mut buffer: Box<[MaybeUninit<u8>]> = std::vec![MaybeUninit::uninit(); 8 * 1024].into_boxed_slice();
    // SAFETY: the buffer outlives the heap (dropped first, below).
    let (mut heap, blocks) = unsafe { filled_with_fragments(&mut buffer) };
    let one = Layout::from_size_align(64, 8).unwrap();
    // Every other fragment freed: the longest run is one fragment.
    for &block in blocks.iter().skip(1).step_by(2) {
        // SAFETY: allocated above with `one`, freed once.
        unsafe { heap.try_deallocate(block, one) }.unwrap();
    }
    heap.flush();
    assert_eq!(runs_below(&heap), usize::MAX, "nothing learnt yet");
    // Two fragments: the search walks every block, finds no run, and the arena learns it.
    let two = Layout::from_size_align(128, 8).unwrap();
    assert!(matches!(heap.allocate(two), Err(AllocError::OutOfMemory { .. })));
    assert_eq!(runs_below(&heap), 2, "every run is shorter than two fragments");
    heap.check_invariants().unwrap();
    // A longer request is refused from what the arena knows; the bound stays.
    let three = Layout::from_size_align(192, 8).unwrap();
    assert!(matches!(heap.allocate(three), Err(AllocError::OutOfMemory { .. })));
    assert_eq!(runs_below(&heap), 2);
    // Freeing the block between two free fragments makes a run of three, through the block
    // the free parks (searches count it as free): the bound is forgotten, the arena searched
    // again, the run found, and the parked block merged for real.
    // SAFETY: allocated above with `one`, freed once.
    unsafe { heap.try_deallocate(blocks[2], one) }.unwrap();
    assert_eq!(runs_below(&heap), usize::MAX, "a block was parked: the bound is forgotten");
    heap.check_invariants().unwrap();
    let block = heap.allocate(two).expect("the run of three fragments holds two");
    assert_eq!(block.cast::<u8>().as_ptr(), blocks[1].as_ptr(), "placed at the run's start");
    heap.check_invariants().unwrap();
    let _ = heap; // the heap goes before the buffer it manages
}

#[test]
fn an_allocation_that_gives_back_the_tail_of_its_block_keeps_the_bound_a_shrink_forgets_it() {
    use budalloc_core::AllocError;
    let mut buffer: Box<[MaybeUninit<u8>]> = std::vec![MaybeUninit::uninit(); 8 * 1024].into_boxed_slice();
    // SAFETY: the buffer outlives the heap (dropped first, below).
    let (mut heap, blocks) = unsafe { filled_with_fragments(&mut buffer) };
    let one = Layout::from_size_align(64, 8).unwrap();
    // The first four fragments freed: one free block of four fragments, the only run.
    for &block in &blocks[..4] {
        // SAFETY: allocated above with `one`, freed once.
        unsafe { heap.try_deallocate(block, one) }.unwrap();
    }
    heap.flush();
    let five = Layout::from_size_align(5 * 64, 8).unwrap();
    assert!(matches!(heap.allocate(five), Err(AllocError::OutOfMemory { .. })));
    assert_eq!(runs_below(&heap), 5, "every run is shorter than five fragments");
    // Three fragments take the four-fragment block and give its last fragment back: that
    // fragment was free already, no run grew, and the bound stands.
    let three = Layout::from_size_align(3 * 64, 8).unwrap();
    let block = heap.allocate(three).unwrap().cast::<u8>();
    assert_eq!(block, blocks[0]);
    assert_eq!(runs_below(&heap), 5, "a trimmed fresh block frees nothing new");
    heap.check_invariants().unwrap();
    // Shrinking it to one fragment frees two that were allocated: the bound is forgotten.
    // SAFETY: `block` is live with `three`; `one` is smaller.
    unsafe { heap.shrink_in_place(block, three, one) }.unwrap();
    assert_eq!(runs_below(&heap), usize::MAX, "a shrink frees fragments: the bound is forgotten");
    heap.check_invariants().unwrap();
    let _ = heap; // the heap goes before the buffer it manages
}
