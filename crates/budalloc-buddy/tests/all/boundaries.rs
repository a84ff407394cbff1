//! Every boundary size and alignment: sizes 1 ..= MAX, MAX + 1, alignments 1 ..= MAX and 2 MAX.

use budalloc_core::{AllocError, RawAlloc};

use crate::{layout, small};

#[test]
fn every_size_up_to_max_gets_the_next_power_of_two() {
    let (mut heap, _region) = small(16 * 1024);
    let step = if cfg!(miri) { 61 } else { 1 };
    for size in (1..=4096).step_by(step).chain([4096]) {
        let l = layout(size, 1);
        let block = heap.allocate(l).unwrap_or_else(|e| panic!("size {size}: {e}"));
        let expected = size.next_power_of_two().max(16);
        assert_eq!(block.len(), expected, "size {size}");
        assert_eq!(block.cast::<u8>().addr().get() % expected, 0, "a block is aligned to its size");
        assert_eq!(heap.usable_size(l), Ok(expected));
        // SAFETY: just allocated with `l`.
        unsafe { heap.try_deallocate(block.cast(), l) }.unwrap();
    }
    assert!(heap.is_pristine());
    assert!(matches!(heap.allocate(layout(4097, 1)), Err(AllocError::TooLarge { size: 4097, max: 4096 })));
    assert!(matches!(heap.allocate(layout(8192, 1)), Err(AllocError::TooLarge { .. })));
}

#[test]
fn every_alignment_up_to_max_and_beyond() {
    let (mut heap, _region) = small(16 * 1024);
    for shift in 0..=12 {
        let align = 1usize << shift;
        for size in [1, align / 2, align, align + 1] {
            let Ok(l) = core::alloc::Layout::from_size_align(size.max(1), align) else { continue };
            if l.size() > 4096 {
                continue;
            }
            let block = heap.allocate(l).unwrap_or_else(|e| panic!("size {size} align {align}: {e}"));
            assert_eq!(block.cast::<u8>().addr().get() % align, 0);
            // SAFETY: just allocated with `l`.
            unsafe { heap.try_deallocate(block.cast(), l) }.unwrap();
        }
    }
    let e = heap.allocate(layout(1, 8192)).unwrap_err();
    assert_eq!(e, AllocError::AlignTooLarge { align: 8192, max: 4096 });
    assert!(heap.is_pristine());
}
