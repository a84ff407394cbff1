//! Unit tests of the buddy mechanism that need the crate's private items.

use core::alloc::Layout;
use core::mem::MaybeUninit;

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
