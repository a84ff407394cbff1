//! Fallback blocks: a class request that no slab can serve is a block of the backend, kept at
//! its class's layout so that it holds the class size and any layout of the class fits it.

use budalloc_buddy::Buddy;
use budalloc_classes::Classes;
use budalloc_core::{Inspect, RawAlloc, SizeClasses};

use crate::{alloc, layout};

/// Exact fit with 16-byte fragments: a block holds only the fragments its layout needs, so a
/// block allocated with a caller's layout may be shorter than its class.
type Tight = Classes<Buddy<16, { 1 << 20 }, 1, true>>;

#[test]
fn a_fallback_block_holds_its_class_and_frees_with_any_layout_of_it() {
    // 4 KiB: too small for a slab (and its bitmap), so every class request falls back.
    let (mut heap, _region, _) = crate::heap::<Tight>(4096, 0);
    let asked = layout(129, 1);
    let c = Tight::class_of(asked).unwrap();
    let class = Tight::class_layout(c);
    assert!(class.size() > 144, "the class is longer than the 9 fragments 129 bytes need");
    for free_with in [asked, class, layout(class.size(), 1)] {
        let block = heap.allocate(asked).unwrap();
        assert!(block.len() >= class.size(), "a fallback block holds its class: {}", block.len());
        let p = block.cast::<u8>();
        // A resize within the class stays where it is and keeps the class size.
        // SAFETY: live with `asked`; the new size is of the same class.
        let grown = unsafe { heap.grow_in_place(p, asked, layout(class.size(), 1)) }.unwrap();
        assert_eq!(grown.cast::<u8>(), p);
        assert!(grown.len() >= class.size());
        // Nothing else lands inside it.
        let other = alloc(&mut heap, layout(16, 1));
        let (start, end) = (p.addr().get(), p.addr().get() + class.size());
        assert!(!(start..end).contains(&other.addr().get()), "two live blocks overlap");
        heap.check_invariants().unwrap();
        // SAFETY: live with `free_with`: any layout of the class fits.
        unsafe { heap.try_deallocate(p, free_with) }.unwrap();
        // SAFETY: live with (16, 1).
        unsafe { heap.try_deallocate(other, layout(16, 1)) }.unwrap();
        heap.check_invariants().unwrap();
        assert!(heap.backend_mut().is_pristine());
    }
}

#[test]
fn a_large_block_shrunk_into_a_class_frees_with_the_class_layout() {
    let (mut heap, _region, _) = crate::heap::<Tight>(4096, 0);
    let big = layout(2048, 64);
    let p = alloc(&mut heap, big);
    let small = layout(129, 1);
    // SAFETY: live with `big`; the new size is smaller.
    let shrunk = unsafe { heap.shrink(p, big, small) }.unwrap();
    let class = Tight::class_layout(Tight::class_of(small).unwrap());
    assert!(shrunk.len() >= class.size());
    heap.check_invariants().unwrap();
    // SAFETY: live with `small`'s class.
    unsafe { heap.try_deallocate(shrunk.cast(), class) }.unwrap();
    assert!(heap.backend_mut().is_pristine());
}

/// Exact fit with 64-byte fragments: blocks longer than a class that is not a multiple of 64.
type Coarse = Classes<Buddy<64, { 1 << 20 }, 1, true>>;

#[test]
fn a_large_block_shrunk_into_a_class_frees_with_any_size_up_to_its_length() {
    // A 112-byte class shrunk into from a large block is 128 bytes long in 64-byte fragments;
    // sizes of 113 to 128 bytes map to the 128-byte class, whose 128-byte alignment the block
    // need not have: the backend is asked with the caller's alignment, so they fit.
    let (mut heap, _region, _) = crate::heap::<Coarse>(1 << 20, 0);
    let large = layout(4097, 1);
    let mut kept = Vec::new();
    let block = loop {
        let p = alloc(&mut heap, large);
        if p.addr().get() % 128 != 0 {
            break p;
        }
        kept.push(p);
    };
    // SAFETY: live with `large`; 102 bytes are fewer.
    let shrunk = unsafe { heap.shrink(block, large, layout(102, 1)) }.unwrap();
    assert_eq!((shrunk.cast::<u8>(), shrunk.len()), (block, 128), "shrunk in place, whole fragments");
    for size in [102, 112, 113, 128] {
        assert_eq!(heap.validate(block, layout(size, 1)), Ok(()), "{size} bytes fit the 128-byte block");
    }
    // SAFETY: live; 120 bytes lie between the size asked and the length returned.
    unsafe { heap.try_deallocate(block, layout(120, 1)) }.unwrap();
    for p in kept {
        // SAFETY: live with `large`.
        unsafe { heap.try_deallocate(p, large) }.unwrap();
    }
    heap.check_invariants().unwrap();
    heap.flush();
    assert!(heap.backend_mut().is_pristine());
}
