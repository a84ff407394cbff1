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
