//! Grow and shrink: in place when the buddies allow, moving otherwise; failures keep the block.

use budalloc_core::{AllocError, FreeError, Inspect, RawAlloc};

use crate::{alloc, buddy_pair, digest, layout, small};

fn fill(p: core::ptr::NonNull<u8>, n: usize, byte: u8) {
    // SAFETY: callers pass a live block of at least `n` bytes.
    unsafe { p.as_ptr().write_bytes(byte, n) };
}

fn holds(p: core::ptr::NonNull<u8>, n: usize, byte: u8) -> bool {
    // SAFETY: callers pass a live block of at least `n` bytes.
    unsafe { core::slice::from_raw_parts(p.as_ptr(), n) }.iter().all(|&b| b == byte)
}

#[test]
fn grow_in_place_absorbs_free_buddies() {
    let (mut heap, _region) = small(8192);
    // A 64-byte block at the start of a free 1 KiB block: allocate the 1 KiB and shrink it.
    let p = alloc(&mut heap, 1024, 1024);
    // SAFETY: `p` is live with layout (1024, 1024).
    unsafe { heap.shrink(p, layout(1024, 1024), layout(64, 8)) }.unwrap();
    fill(p, 64, 0xAB);
    // SAFETY: `p` is live with layout (64, 8).
    let grown = unsafe { heap.grow_in_place(p, layout(64, 8), layout(1000, 8)) }.unwrap();
    assert_eq!(grown.cast::<u8>(), p, "in place");
    assert_eq!(grown.len(), 1024);
    assert!(holds(p, 64, 0xAB));
    heap.check_invariants().unwrap();
    assert_eq!(heap.stats().allocated, 1024);
    // SAFETY: the block now has a layout of (1000, 8).
    unsafe { heap.try_deallocate(p, layout(1000, 8)) }.unwrap();
    assert!(heap.is_pristine());
}

#[test]
fn grow_moves_when_the_buddy_is_taken_and_keeps_contents() {
    let (mut heap, _region) = small(8192);
    let (p, q) = buddy_pair(&mut heap, 64);
    fill(p, 64, 0x11);
    let before = digest(&heap);
    // SAFETY: `p` is live with layout (64, 8).
    let e = unsafe { heap.grow_in_place(p, layout(64, 8), layout(128, 8)) }.unwrap_err();
    assert!(matches!(e, AllocError::OutOfMemory { .. }));
    assert_eq!(digest(&heap), before, "a failed in-place grow changes nothing");
    // SAFETY: as above.
    let moved = unsafe { heap.grow(p, layout(64, 8), layout(128, 8)) }.unwrap().cast::<u8>();
    assert_ne!(moved, p);
    assert!(holds(moved, 64, 0x11));
    // SAFETY: both live with these layouts.
    unsafe { heap.try_deallocate(moved, layout(128, 8)) }.unwrap();
    // SAFETY: as above.
    unsafe { heap.try_deallocate(q, layout(64, 8)) }.unwrap();
    assert!(heap.is_pristine());
}

#[test]
fn grow_never_merges_downward_in_place() {
    let (mut heap, _region) = small(8192);
    let (left, right) = buddy_pair(&mut heap, 64);
    // SAFETY: `left` is live.
    unsafe { heap.try_deallocate(left, layout(64, 8)) }.unwrap();
    // The free buddy lies below `right`: growing in place would move the start.
    // SAFETY: `right` is live with layout (64, 8).
    let e = unsafe { heap.grow_in_place(right, layout(64, 8), layout(128, 8)) };
    assert!(e.is_err());
    // SAFETY: as above.
    unsafe { heap.try_deallocate(right, layout(64, 8)) }.unwrap();
    assert!(heap.is_pristine());
}

#[test]
fn failed_grow_keeps_the_old_block() {
    let (mut heap, _region) = small(8192);
    let p = alloc(&mut heap, 100, 8);
    fill(p, 100, 0x5A);
    let before = digest(&heap);
    // SAFETY: `p` is live with layout (100, 8).
    let e = unsafe { heap.grow(p, layout(100, 8), layout(1 << 20, 8)) }.unwrap_err();
    assert!(matches!(e, AllocError::TooLarge { .. }));
    assert_eq!(digest(&heap), before);
    assert!(holds(p, 100, 0x5A));
    // Exhaust so that a move is impossible too.
    let mut others = Vec::new();
    while let Ok(b) = heap.allocate(layout(2048, 1)) {
        others.push(b);
    }
    // SAFETY: as above.
    let grown = unsafe { heap.grow(p, layout(100, 8), layout(4096, 8)) };
    assert!(matches!(grown, Err(AllocError::OutOfMemory { .. })), "{grown:?}");
    assert!(holds(p, 100, 0x5A));
    heap.check_invariants().unwrap();
}

#[test]
fn shrink_in_place_frees_the_upper_halves() {
    let (mut heap, _region) = small(8192);
    let p = alloc(&mut heap, 4096, 8);
    fill(p, 4096, 0x77);
    // SAFETY: `p` is live with layout (4096, 8).
    let small_block = unsafe { heap.shrink(p, layout(4096, 8), layout(100, 8)) }.unwrap();
    assert_eq!(small_block.cast::<u8>(), p);
    assert_eq!(small_block.len(), 128);
    assert!(holds(p, 100, 0x77));
    assert_eq!(heap.stats().allocated, 128);
    heap.check_invariants().unwrap();
    // The freed halves serve new requests right behind the block.
    let q = alloc(&mut heap, 128, 1);
    assert_eq!(q.addr().get(), p.addr().get() + 128);
    // SAFETY: both live with these layouts.
    unsafe { heap.try_deallocate(q, layout(128, 1)) }.unwrap();
    // SAFETY: as above.
    unsafe { heap.try_deallocate(p, layout(100, 8)) }.unwrap();
    assert!(heap.is_pristine());
}

#[test]
fn shrink_to_a_larger_alignment_moves() {
    let (mut heap, _region) = small(8192);
    let _pad = alloc(&mut heap, 16, 1);
    let p = alloc(&mut heap, 64, 16);
    assert_ne!(p.addr().get() % 1024, 0);
    fill(p, 64, 0x42);
    // SAFETY: `p` is live with layout (64, 16).
    let q = unsafe { heap.shrink(p, layout(64, 16), layout(32, 1024)) }.unwrap().cast::<u8>();
    assert_eq!(q.addr().get() % 1024, 0);
    assert!(holds(q, 32, 0x42));
    heap.check_invariants().unwrap();
}

#[test]
fn resizing_an_invalid_block_is_reported() {
    let (mut heap, _region) = small(8192);
    let p = alloc(&mut heap, 64, 8);
    let inner = p.map_addr(|a| a.checked_add(16).unwrap());
    // SAFETY: deliberately a wrong pointer: the policy checks before it touches anything.
    let e = unsafe { heap.grow_in_place(inner, layout(16, 8), layout(32, 8)) }.unwrap_err();
    assert!(matches!(e, AllocError::InvalidBlock(FreeError::InteriorPointer { .. })), "{e}");
}

#[test]
fn a_resize_that_must_move_a_freed_block_is_rejected_before_anything_changes() {
    let (mut heap, _region) = small(8192);
    let (p, _q) = buddy_pair(&mut heap, 64);
    // SAFETY: `p` is live with layout (64, 8).
    unsafe { heap.try_deallocate(p, layout(64, 8)) }.unwrap();
    heap.flush();
    let before = digest(&heap);
    let allocated = heap.stats().allocated;
    // Grow and shrink of the freed block: neither may allocate, copy or free.
    // SAFETY: deliberately invalid: `p` was freed; the checked paths reject it.
    let grown = unsafe { heap.grow(p, layout(64, 8), layout(1024, 8)) };
    assert!(matches!(grown, Err(AllocError::InvalidBlock(FreeError::DoubleFree { .. }))), "{grown:?}");
    // SAFETY: as above.
    let shrunk = unsafe { heap.shrink(p, layout(64, 8), layout(16, 16)) };
    assert!(matches!(shrunk, Err(AllocError::InvalidBlock(FreeError::DoubleFree { .. }))), "{shrunk:?}");
    assert_eq!(digest(&heap), before, "a rejected resize changes nothing");
    assert_eq!(heap.stats().allocated, allocated, "and leaks nothing");
    heap.check_invariants().unwrap();
}

#[test]
fn a_resize_of_a_freed_block_is_misuse_whatever_the_new_layout() {
    let (mut heap, _region) = small(16 * 1024);
    let l = layout(64, 8);
    let p = alloc(&mut heap, 64, 8);
    let q = alloc(&mut heap, 64, 8);
    // SAFETY: both live with `l`; `q` freed second parks it and merges `p` for real.
    unsafe { heap.try_deallocate(p, l) }.unwrap();
    // SAFETY: as above.
    unsafe { heap.try_deallocate(q, l) }.unwrap();
    let before = digest(&heap);
    // Larger than the policy serves, and a layout that overflows its arithmetic: the freed
    // block is still what is reported, the same as with a new layout it could serve.
    for new in [layout(1 << 20, 8), layout(isize::MAX as usize - 7, 8), layout(128, 8)] {
        for ptr in [p, q] {
            // SAFETY: deliberately stale: the checked policy rejects it.
            let grown = unsafe { heap.grow_in_place(ptr, l, new) };
            assert!(
                matches!(grown, Err(AllocError::InvalidBlock(FreeError::DoubleFree { .. }))),
                "{grown:?}"
            );
            // SAFETY: as above.
            let shrunk = unsafe { heap.shrink_in_place(ptr, l, layout(16, 8)) };
            assert!(
                matches!(shrunk, Err(AllocError::InvalidBlock(FreeError::DoubleFree { .. }))),
                "{shrunk:?}"
            );
        }
    }
    assert_eq!(digest(&heap), before, "a rejected resize changes nothing");
}
