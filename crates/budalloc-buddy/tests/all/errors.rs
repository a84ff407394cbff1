//! Every error variant of the checked API, with a snapshot proving the rejected call changed no
//! metadata byte.

use core::alloc::Layout;
use core::ptr::NonNull;

use budalloc_core::{AllocError, Corruption, FreeError, GuardKey, Inspect, RawAlloc};

use crate::{alloc, buddy_pair, digest, layout, small, Small};

/// Frees `ptr` with `layout`, expecting a rejection that changes nothing; returns the error.
fn rejected(heap: &mut Small, ptr: NonNull<u8>, layout: Layout) -> FreeError {
    let before = digest(heap);
    // SAFETY: every caller passes a pointer that is not the start of a block someone owns.
    let error = unsafe { heap.try_deallocate(ptr, layout) }.expect_err("the free must be rejected");
    assert_eq!(digest(heap), before, "rejected free changed metadata ({error})");
    error
}

fn free(heap: &mut Small, ptr: NonNull<u8>, size: usize, align: usize) {
    // SAFETY: callers pass blocks they allocated with this size and alignment.
    unsafe { heap.try_deallocate(ptr, layout(size, align)) }.expect("valid free");
}

#[test]
fn double_free_immediate() {
    let (mut heap, _region) = small(8192);
    let a = alloc(&mut heap, 100, 8);
    let _keep = alloc(&mut heap, 100, 8);
    free(&mut heap, a, 100, 8);
    let e = rejected(&mut heap, a, layout(100, 8));
    assert!(matches!(e, FreeError::DoubleFree { size: 128, .. }), "{e}");
}

#[test]
fn double_free_delayed() {
    let (mut heap, _region) = small(8192);
    let blocks: Vec<_> = (0..8).map(|_| alloc(&mut heap, 48, 8)).collect();
    free(&mut heap, blocks[3], 48, 8);
    for &b in &blocks[5..] {
        free(&mut heap, b, 48, 8);
    }
    let e = rejected(&mut heap, blocks[3], layout(48, 8));
    assert!(matches!(e, FreeError::DoubleFree { .. }), "{e}");
}

#[test]
fn double_free_of_a_right_buddy_after_coalescing() {
    // buddy_alloc's safe_free_invalid_free_01..04: the parent fully free, partially free, and
    // re-allocated.
    let (mut heap, _region) = small(8192);
    let (left, right) = buddy_pair(&mut heap, 16);
    free(&mut heap, right, 16, 1);
    free(&mut heap, left, 16, 1);
    heap.flush(); // merge the parked block: the parent and beyond are free
    assert!(matches!(rejected(&mut heap, right, layout(16, 1)), FreeError::DoubleFree { .. }));
    // Parent partially free: re-allocate the left half only.
    let left2 = alloc(&mut heap, 16, 1);
    assert_eq!(left2, left);
    assert!(matches!(rejected(&mut heap, right, layout(16, 1)), FreeError::DoubleFree { .. }));
    free(&mut heap, left2, 16, 1);
    heap.flush();
    // Parent re-allocated as one bigger block: the old right buddy is now inside it.
    let parent = alloc(&mut heap, 32, 1);
    assert_eq!(parent, left);
    let e = rejected(&mut heap, right, layout(16, 1));
    assert!(matches!(e, FreeError::InteriorPointer { block, .. } if block == left.addr().get()), "{e}");
}

#[test]
fn foreign_pointers_are_rejected_before_any_read() {
    let (mut heap, _region) = small(8192);
    let _live = alloc(&mut heap, 64, 8);
    static STATIC: [u64; 4] = [0; 4];
    let stack = 0u64;
    let system = Box::new(0u64);
    let (mut other, _other_region) = small(8192);
    let theirs = alloc(&mut other, 64, 8);
    let l = layout(8, 8);
    for ptr in [
        NonNull::from(&stack).cast::<u8>(),
        NonNull::from(&STATIC).cast::<u8>(),
        NonNull::from(&*system).cast::<u8>(),
        theirs,
        NonNull::<u64>::dangling().cast::<u8>(),
    ] {
        let e = rejected(&mut heap, ptr, l);
        assert!(matches!(e, FreeError::ForeignPointer { .. }), "{e}");
    }
}

#[test]
fn interior_pointers_at_every_offset() {
    let (mut heap, _region) = small(8192);
    let block = alloc(&mut heap, 256, 8);
    let _neighbour = alloc(&mut heap, 256, 8);
    for offset in (1..256).step_by(if cfg!(miri) { 13 } else { 1 }) {
        let ptr = block.map_addr(|a| a.checked_add(offset).unwrap());
        let e = rejected(&mut heap, ptr, layout(256, 8));
        assert!(
            matches!(e, FreeError::InteriorPointer { block: b, .. } if b == block.addr().get()),
            "offset {offset}: {e}"
        );
    }
}

#[test]
fn interior_pointer_into_free_memory_is_reported() {
    let (mut heap, _region) = small(8192);
    let block = alloc(&mut heap, 64, 8);
    free(&mut heap, block, 64, 8);
    let e = rejected(&mut heap, block.map_addr(|a| a.checked_add(1).unwrap()), layout(64, 8));
    assert!(matches!(e, FreeError::InteriorPointer { .. }), "{e}");
    heap.check_invariants().unwrap();
}

#[test]
fn layout_of_another_order_or_alignment_is_rejected() {
    let (mut heap, _region) = small(8192);
    let block = alloc(&mut heap, 100, 8); // a 128-byte block
    for wrong in [layout(256, 8), layout(64, 8), layout(16, 1), layout(100, 256), layout(0, 256)] {
        let e = rejected(&mut heap, block, wrong);
        assert!(matches!(e, FreeError::LayoutMismatch { block_size: 128, .. }), "{wrong:?}: {e}");
    }
    // A layout that maps to no block at all.
    let e = rejected(&mut heap, block, layout(1 << 20, 8));
    assert!(matches!(e, FreeError::LayoutMismatch { layout_block: 0, .. }), "{e}");
}

#[test]
fn any_size_of_the_same_order_fits() {
    let (mut heap, _region) = small(8192);
    for size in [65, 100, 127, 128] {
        let block = alloc(&mut heap, 100, 8);
        free(&mut heap, block, size, 8);
    }
    // Size zero fits the smallest block.
    let block = alloc(&mut heap, 0, 1);
    free(&mut heap, block, 0, 1);
    assert!(heap.is_pristine());
}

#[test]
fn guard_keys_detect_corruption_and_change_nothing() {
    for which in [GuardKey::Front, GuardKey::Back] {
        let (mut heap, region) = small(8192);
        let block = alloc(&mut heap, 64, 8);
        let arena = heap.arenas().next().unwrap();
        let bitmap = arena.bitmap();
        let key_addr = match which {
            GuardKey::Front => bitmap.addr(),
            GuardKey::Back => bitmap.addr() + bitmap.footprint() - size_of::<usize>(),
        };
        let (base, _) = region.skewed(0);
        let key = base.with_addr(key_addr).cast::<usize>();
        // SAFETY: the key word lies in the region this test owns; the heap is not in a call.
        let saved = unsafe { key.read() };
        // SAFETY: as above: simulate a stray write over the key.
        unsafe { key.write(saved ^ 0x40) };
        let e = rejected(&mut heap, block, layout(64, 8));
        assert_eq!(e, FreeError::Corrupted(Corruption::GuardKey { which, addr: key_addr }));
        let before = digest(&heap);
        let e = heap.allocate(layout(16, 1)).expect_err("allocation with a damaged key");
        assert!(matches!(e, AllocError::Corrupted(Corruption::GuardKey { .. })), "{e}");
        assert_eq!(digest(&heap), before);
        assert!(heap.check_invariants().is_err(), "check_invariants sees the damaged key");
        // SAFETY: restore the key; everything works again.
        unsafe { key.write(saved) };
        free(&mut heap, block, 64, 8);
        assert!(heap.is_pristine());
    }
}

#[test]
fn every_bit_of_a_free_header_is_checked() {
    let (mut heap, region) = small(8192);
    let (left, right) = buddy_pair(&mut heap, 64);
    let other = alloc(&mut heap, 16, 1);
    free(&mut heap, right, 64, 64);
    heap.flush(); // `right` is on its free list; its buddy `left` is live
    free(&mut heap, left, 64, 64); // `left` is parked: the next free merges it with `right`
    let (base, _) = region.skewed(0);
    let header = base.with_addr(right.addr().get());
    let mut undetected = Vec::new();
    for bit in (0..budalloc_buddy::HEADER_SIZE * 8).step_by(if cfg!(miri) { 5 } else { 1 }) {
        let byte = header.map_addr(|a| a + bit / 8);
        // SAFETY: the header lies in the region this test owns; flip one bit, as a stray write.
        unsafe { *byte ^= 1 << (bit % 8) };
        let before = digest(&heap);
        // SAFETY: `other` is live and ours. Its free first merges the parked `left` with
        // `right`, which must be refused because `right`'s header is damaged.
        match unsafe { heap.try_deallocate(other, layout(16, 1)) } {
            Err(FreeError::Corrupted(Corruption::Header { addr })) => assert_eq!(addr, right.addr().get()),
            Err(e) => panic!("bit {bit}: unexpected {e}"),
            Ok(()) => {
                undetected.push(bit);
                break;
            }
        }
        assert_eq!(digest(&heap), before, "bit {bit}: rejected free changed metadata");
        // SAFETY: restore the bit.
        unsafe { *byte ^= 1 << (bit % 8) };
    }
    assert!(undetected.is_empty(), "header bits not detected: {undetected:?}");
    heap.check_invariants().unwrap();
}

#[test]
fn damaged_list_head_fails_allocation_cleanly() {
    let (mut heap, region) = small(8192);
    let a = alloc(&mut heap, 16, 1);
    let b = alloc(&mut heap, 16, 1);
    free(&mut heap, b, 16, 1);
    heap.flush(); // head of the order-0 list
    let (base, _) = region.skewed(0);
    let seal = base.with_addr(b.addr().get() + 8);
    // SAFETY: the header of the free block `b` lies in our region.
    unsafe { *seal ^= 0x10 };
    let before = digest(&heap);
    let e = heap.allocate(layout(16, 1)).expect_err("damaged head");
    assert_eq!(e, AllocError::Corrupted(Corruption::Header { addr: b.addr().get() }));
    assert_eq!(digest(&heap), before);
    // SAFETY: restore.
    unsafe { *seal ^= 0x10 };
    free(&mut heap, a, 16, 1);
    assert!(heap.is_pristine());
}

#[test]
fn size_arithmetic_never_wraps() {
    let heap = Small::new();
    let math = heap.math();
    assert!(matches!(math.order_for(usize::MAX, 1), Err(AllocError::SizeOverflow { .. })));
    assert!(matches!(math.order_for(usize::MAX / 2 + 2, 1), Err(AllocError::SizeOverflow { .. })));
    assert!(matches!(math.order_for(isize::MAX as usize, 1), Err(AllocError::TooLarge { .. })));
    assert!(matches!(math.order_for(4097, 1), Err(AllocError::TooLarge { size: 4097, max: 4096 })));
    assert!(matches!(math.order_for(1, 8192), Err(AllocError::AlignTooLarge { align: 8192, max: 4096 })));
    assert_eq!(math.order_for(4096, 4096).map(|o| o.get()), Ok(8));
    assert_eq!(math.order_for(0, 1).map(|o| o.get()), Ok(0));
}

#[test]
fn refused_and_failed_allocations_change_nothing() {
    let (mut heap, _region) = small(8192);
    let before = digest(&heap);
    let huge = Layout::from_size_align(isize::MAX as usize, 1).unwrap();
    assert!(matches!(heap.allocate(huge), Err(AllocError::TooLarge { .. })));
    assert!(matches!(heap.allocate(layout(1, 8192)), Err(AllocError::AlignTooLarge { .. })));
    assert_eq!(digest(&heap), before);
    // Exhaust, then check that out-of-memory is side-effect free.
    let mut live = Vec::new();
    while let Ok(b) = heap.allocate(layout(1024, 1)) {
        live.push(b);
    }
    let before = digest(&heap);
    let e = heap.allocate(layout(1024, 1)).unwrap_err();
    assert_eq!(e, AllocError::OutOfMemory { size: 1024, block: 1024 });
    assert_eq!(digest(&heap), before);
    // A small request still succeeds when smaller blocks remain (glibc tst-malloc-too-large).
    let _small = heap.allocate(layout(16, 1));
    heap.check_invariants().unwrap();
}
