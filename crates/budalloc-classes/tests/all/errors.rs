//! The bad-input rows for the size-class layer, one test per row: every rejected call leaves
//! the metadata byte-for-byte unchanged.

use core::alloc::Layout;
use core::num::NonZeroUsize;
use core::ptr::NonNull;

use budalloc_core::{AllocError, Corruption, FreeError, Inspect, RawAlloc, SizeClasses};

use crate::{alloc, digest, layout, Exact, ARENA, LIMIT};

/// Frees `ptr` with `l`, expecting an error `check` accepts, the same from `validate`, and no
/// change of metadata.
fn rejected(heap: &mut Exact, ptr: NonNull<u8>, l: Layout, check: impl Fn(&FreeError) -> bool) {
    // SAFETY: every caller passes a pointer that is not a live block someone else owns.
    unsafe { budalloc_testkit::expect_rejected(heap, ptr, l, check) }
}

/// `ptr` moved by `delta` bytes (provenance kept).
fn at(ptr: NonNull<u8>, delta: isize) -> NonNull<u8> {
    ptr.map_addr(|a| NonZeroUsize::new(a.get().wrapping_add_signed(delta)).unwrap())
}

/// The slab base of an object of `l`.
fn slab_base(heap: &Exact, ptr: NonNull<u8>, l: Layout) -> NonNull<u8> {
    let class = Exact::TABLE.class(Exact::class_of(l).unwrap());
    let rebased = heap.rebase(ptr).unwrap();
    rebased.map_addr(|a| NonZeroUsize::new(a.get() & !(class.slab_size() - 1)).unwrap())
}

#[test]
fn double_free_immediate_and_delayed() {
    let (mut heap, _region, _) = crate::heap::<Exact>(ARENA, 0);
    let l = layout(40, 8);
    let a = alloc(&mut heap, l);
    let keep = alloc(&mut heap, l);
    // SAFETY: live with `l`.
    unsafe { heap.try_deallocate(a, l) }.unwrap();
    rejected(&mut heap, a, l, |e| matches!(e, FreeError::DoubleFree { .. }));
    // Delayed: other objects of the class and of others come and go.
    // (None of the 48-byte class: it would reuse `a`, whose stale free would then free the new
    // owner, as documented.)
    let sizes = [16, 32, 64, 80, 96, 200, 1000, 3000];
    let others: Vec<_> = sizes.iter().map(|&s| (alloc(&mut heap, layout(s, 8)), layout(s, 8))).collect();
    rejected(&mut heap, a, l, |e| matches!(e, FreeError::DoubleFree { .. }));
    for (p, pl) in others {
        // SAFETY: live with `pl`.
        unsafe { heap.try_deallocate(p, pl) }.unwrap();
    }
    // The slab empties and goes back to the buddy on flush: still a double free.
    // SAFETY: live with `l`.
    unsafe { heap.try_deallocate(keep, l) }.unwrap();
    heap.flush();
    rejected(&mut heap, keep, l, |e| matches!(e, FreeError::DoubleFree { .. }));
    rejected(&mut heap, a, l, |e| matches!(e, FreeError::DoubleFree { .. }));
    heap.check_invariants().unwrap();
    assert!(heap.backend_mut().is_pristine());
}

#[test]
fn interior_pointers_at_every_offset_of_an_object() {
    let (mut heap, _region, _) = crate::heap::<Exact>(ARENA, 0);
    for size in [16, 48, 112, 160, 1024, 1280].into_iter().filter(|&s| s <= LIMIT) {
        let l = layout(size, 8);
        let a = alloc(&mut heap, l);
        let b = alloc(&mut heap, l);
        // Under Miri (where each rejection, with its two metadata digests, takes seconds) about
        // five offsets per size, the last one included.
        let step = if cfg!(miri) { (size / 5).max(1) } else { 1 };
        for off in (1..size).step_by(step).chain(cfg!(miri).then_some(size - 1)) {
            rejected(
                &mut heap,
                at(b, off as isize),
                l,
                |e| matches!(e, FreeError::InteriorPointer { block, .. } if *block == b.addr().get()),
            );
        }
        // The slab header: inside the slab, before the first object (memory of no object, as
        // freed memory is: a double free where a block of the layout could have started).
        let base = slab_base(&heap, a, l);
        rejected(&mut heap, at(base, 16), l, |e| matches!(e, FreeError::DoubleFree { .. }));
        rejected(
            &mut heap,
            at(base, 4),
            l,
            |e| matches!(e, FreeError::InteriorPointer { block, .. } if *block == base.addr().get()),
        );
        for p in [a, b] {
            // SAFETY: live with `l`.
            unsafe { heap.try_deallocate(p, l) }.unwrap();
        }
    }
    heap.check_invariants().unwrap();
}

#[test]
fn foreign_pointers() {
    static STATIC: [u64; 4] = [0; 4];
    let (mut heap, _region, _) = crate::heap::<Exact>(ARENA, 0);
    let _live = alloc(&mut heap, layout(64, 8));
    let local = [0u64; 4];
    let boxed = Box::new([0u64; 4]);
    for ptr in
        [NonNull::from(&local).cast(), NonNull::from(&STATIC).cast(), NonNull::from(&*boxed).cast::<u8>()]
    {
        for l in [layout(8, 8), layout(64, 8), layout(LIMIT + 1, 8)] {
            rejected(&mut heap, ptr, l, |e| matches!(e, FreeError::ForeignPointer { .. }));
        }
        assert_eq!(heap.rebase(ptr), None);
    }
}

#[test]
fn layout_of_another_class() {
    let (mut heap, _region, _) = crate::heap::<Exact>(ARENA, 0);
    let l = layout(64, 8);
    let a = alloc(&mut heap, l);
    // (A layout `(64, 64)` maps to the same class, whose objects are all 64-aligned: accepted,
    // as the buddy accepts any alignment for a block of the right size.)
    for other in [layout(16, 8), layout(65, 8), layout(128, 8), layout(64, 128), layout(LIMIT, 8)] {
        rejected(&mut heap, a, other, |e| matches!(e, FreeError::LayoutMismatch { block_size: 64, .. }));
    }
    // Sizes that map to the same class fit (allocator-api2's rule).
    // SAFETY: live; 49 maps to the 64-byte class as 64 does.
    unsafe { heap.try_deallocate(a, layout(49, 8)) }.unwrap();
}

#[test]
fn class_object_freed_with_a_large_layout() {
    let (mut heap, _region, _) = crate::heap::<Exact>(ARENA, 0);
    let l = layout(64, 8);
    let a = alloc(&mut heap, l);
    // The backend sees a pointer inside a live block (the slab); this layer finds the object.
    rejected(&mut heap, a, layout(LIMIT + 1, 8), |e| {
        matches!(e, FreeError::LayoutMismatch { block_size: 64, .. })
    });
    rejected(
        &mut heap,
        at(a, 8),
        layout(LIMIT + 1, 8),
        |e| matches!(e, FreeError::InteriorPointer { block, .. } if *block == a.addr().get()),
    );
    // The slab base with the slab's own layout is not a block anyone was given.
    let base = slab_base(&heap, a, l);
    let slab = Exact::TABLE.class(Exact::class_of(l).unwrap()).slab_layout;
    rejected(&mut heap, base, slab, |e| {
        matches!(e, FreeError::DoubleFree { .. } | FreeError::LayoutMismatch { .. })
    });
    heap.check_invariants().unwrap();
}

#[test]
fn large_block_freed_with_a_small_layout() {
    let (mut heap, _region, _) = crate::heap::<Exact>(ARENA, 0);
    let big = layout(LIMIT * 2, 8);
    let p = alloc(&mut heap, big);
    for small in [layout(16, 8), layout(64, 8), layout(LIMIT, 8)] {
        rejected(&mut heap, p, small, |e| matches!(e, FreeError::LayoutMismatch { .. }));
        rejected(&mut heap, at(p, LIMIT as isize + 64), small, |e| {
            matches!(e, FreeError::InteriorPointer { .. })
        });
    }
    // SAFETY: live with `big`.
    unsafe { heap.try_deallocate(p, big) }.unwrap();
}

#[test]
fn stale_large_pointer_cannot_free_a_slab() {
    // A large block of exactly a slab's size is freed, and the buddy gives the same block to the
    // next slab of that size: freeing the stale pointer again must not free the slab.
    let (mut heap, _region, _) = crate::heap::<Exact>(ARENA, 0);
    let c = (0..Exact::CLASSES).rev().find(|&c| Exact::TABLE.class(c).slab_size() <= ARENA / 4).unwrap();
    let class = *Exact::TABLE.class(c);
    let big = layout(class.slab_size(), 8);
    let p = alloc(&mut heap, big);
    // SAFETY: live with `big`.
    unsafe { heap.try_deallocate(p, big) }.unwrap();
    let object = alloc(&mut heap, class.layout);
    assert_eq!(object.addr().get() & !(class.slab_size() - 1), p.addr().get(), "the slab reuses the block");
    rejected(&mut heap, p, big, |e| matches!(e, FreeError::DoubleFree { .. }));
    // Nor resize it.
    let before = digest(&heap);
    // SAFETY: deliberately invalid: the grow is rejected before anything happens.
    let grown = unsafe { heap.grow_in_place(p, big, layout(class.slab_size(), 8)) };
    assert!(matches!(grown, Err(AllocError::InvalidBlock(FreeError::DoubleFree { .. }))), "{grown:?}");
    assert_eq!(digest(&heap), before);
    // SAFETY: live with the class layout.
    unsafe { heap.try_deallocate(object, class.layout) }.unwrap();
    heap.check_invariants().unwrap();
}

#[test]
fn damaged_seal_is_reported_and_repair_restores_service() {
    let (mut heap, _region, _) = crate::heap::<Exact>(ARENA, 0);
    let l = layout(96, 8);
    let a = alloc(&mut heap, l);
    let base = slab_base(&heap, a, l).cast::<usize>();
    // SAFETY: the slab header is initialised and lies in the heap's region, which this test owns;
    // the reads and writes below go through the region's provenance (rebase).
    let seal = unsafe { base.read() };
    for bit in [0, 7, 31, usize::BITS - 1] {
        // SAFETY: as above.
        unsafe { base.write(seal ^ 1 << bit) };
        rejected(&mut heap, a, l, |e| matches!(e, FreeError::Corrupted(Corruption::Header { .. })));
        assert!(matches!(heap.allocate(l), Err(AllocError::Corrupted(_))));
        assert!(heap.check_invariants().is_err());
        // SAFETY: as above.
        unsafe { base.write(seal) };
        heap.check_invariants().unwrap();
    }
    // A flipped class index is damage too (the word after the seal).
    let class_word = base.map_addr(|x| x.saturating_add(core::mem::size_of::<usize>()));
    // SAFETY: as above.
    let word = unsafe { class_word.read() };
    // SAFETY: as above.
    unsafe { class_word.write(word ^ 1) };
    rejected(&mut heap, a, l, |e| matches!(e, FreeError::Corrupted(_)));
    // SAFETY: as above.
    unsafe { class_word.write(word) };
    // SAFETY: live with `l`.
    unsafe { heap.try_deallocate(a, l) }.unwrap();
    heap.flush();
    assert!(heap.backend_mut().is_pristine());
}

/// A moving `grow` or `shrink` of a block that is not live (freed, interior, a freed large
/// block) is refused before anything is allocated, copied or freed; a valid one frees the old
/// block exactly once (checked once, before the new block is taken).
#[test]
fn a_moving_resize_refuses_a_block_not_live_before_any_change_and_frees_the_old_one() {
    let (mut heap, _region, _) = crate::heap::<Exact>(ARENA, 0);
    let keep = alloc(&mut heap, layout(100, 8));
    let freed = alloc(&mut heap, layout(100, 8));
    let big = alloc(&mut heap, layout(LIMIT + 100, 16));
    // SAFETY: live with these layouts.
    unsafe { heap.try_deallocate(freed, layout(100, 8)) }.unwrap();
    // SAFETY: as above.
    unsafe { heap.try_deallocate(big, layout(LIMIT + 100, 16)) }.unwrap();
    let refused = |heap: &mut Exact, ptr: NonNull<u8>, old: Layout, new: Layout| {
        let before = digest(heap);
        let result = if new.size() >= old.size() {
            // SAFETY: deliberately invalid: `ptr` is not a live block with `old`; the call is
            // refused before anything happens.
            unsafe { heap.grow(ptr, old, new) }
        } else {
            // SAFETY: as above.
            unsafe { heap.shrink(ptr, old, new) }
        };
        assert!(
            matches!(result, Err(AllocError::InvalidBlock(_))),
            "{:#x} {old:?} -> {new:?}: {result:?}",
            ptr.addr()
        );
        assert_eq!(digest(heap), before, "a refused resize changed metadata");
    };
    refused(&mut heap, freed, layout(100, 8), layout(300, 8));
    refused(&mut heap, freed, layout(100, 8), layout(LIMIT + 1, 8));
    refused(&mut heap, at(keep, 16), layout(100, 8), layout(300, 8));
    refused(&mut heap, big, layout(LIMIT + 100, 16), layout(64, 16));
    refused(&mut heap, big, layout(LIMIT + 100, 16), layout(4 * LIMIT, 16));
    // Valid: object to object and object to backend move, each old object free afterwards (a
    // second free of it is a double free); backend to object shrinks the block where it is.
    // SAFETY: live with (100, 8).
    let a = unsafe { heap.grow(keep, layout(100, 8), layout(300, 8)) }.unwrap().cast::<u8>();
    // SAFETY: live with (300, 8).
    let b = unsafe { heap.grow(a, layout(300, 8), layout(LIMIT + 1, 8)) }.unwrap().cast::<u8>();
    // SAFETY: live with (LIMIT + 1, 8).
    let c = unsafe { heap.shrink(b, layout(LIMIT + 1, 8), layout(40, 8)) }.unwrap().cast::<u8>();
    assert_eq!(c, b, "a block of the backend shrinks in place");
    for (old, l) in [(keep, layout(100, 8)), (a, layout(300, 8))] {
        rejected(&mut heap, old, l, |e| matches!(e, FreeError::DoubleFree { .. }));
    }
    heap.check_invariants().unwrap();
    // SAFETY: live with (40, 8).
    unsafe { heap.try_deallocate(c, layout(40, 8)) }.unwrap();
    heap.flush();
    assert!(heap.backend_mut().is_pristine());
}

#[test]
fn grow_and_shrink_in_place() {
    let (mut heap, _region, _) = crate::heap::<Exact>(ARENA, 0);
    // Within a class: in place; across classes: moved by the default path, contents kept.
    let a = alloc(&mut heap, layout(100, 8));
    // SAFETY: the block is live with (100, 8) and 100 bytes long.
    unsafe { a.as_ptr().write_bytes(0x5a, 100) };
    // SAFETY: live with (100, 8).
    let same = unsafe { heap.grow_in_place(a, layout(100, 8), layout(110, 8)) }.unwrap();
    assert_eq!(same.cast::<u8>(), a);
    let before = digest(&heap);
    // SAFETY: live with (110, 8).
    assert!(unsafe { heap.grow_in_place(a, layout(110, 8), layout(300, 8)) }.is_err());
    assert_eq!(digest(&heap), before);
    // SAFETY: live with (110, 8).
    let moved = unsafe { heap.grow(a, layout(110, 8), layout(300, 8)) }.unwrap().cast::<u8>();
    // SAFETY: the first 100 bytes were copied.
    assert!(unsafe { core::slice::from_raw_parts(moved.as_ptr(), 100) }.iter().all(|&b| b == 0x5a));
    // Backend blocks: the exact-fit buddy shrinks them in place, giving the tail back, and
    // grows them in place into it again (where a block is placed is best fit's business: the
    // room to grow is made here, not assumed).
    let most = 2 * LIMIT - 16;
    let big = alloc(&mut heap, layout(most, 16));
    // SAFETY: live with (most, 16).
    let shrunk = unsafe { heap.shrink_in_place(big, layout(most, 16), layout(LIMIT + 16, 16)) }.unwrap();
    assert_eq!(shrunk.cast::<u8>(), big);
    // SAFETY: live with (LIMIT + 16, 16).
    let grown = unsafe { heap.grow_in_place(big, layout(LIMIT + 16, 16), layout(most, 16)) }.unwrap();
    assert_eq!(grown.cast::<u8>(), big);
    // SAFETY: live with (most, 16).
    let shrunk = unsafe { heap.shrink_in_place(big, layout(most, 16), layout(LIMIT + 1, 16)) }.unwrap();
    assert_eq!(shrunk.cast::<u8>(), big);
    // Class to backend and back: moved.
    let before = digest(&heap);
    // SAFETY: live with (300, 8).
    assert!(unsafe { heap.grow_in_place(moved, layout(300, 8), layout(LIMIT + 1, 8)) }.is_err());
    assert_eq!(digest(&heap), before);
    // SAFETY: live with these layouts.
    unsafe { heap.try_deallocate(moved, layout(300, 8)) }.unwrap();
    // SAFETY: as above.
    unsafe { heap.try_deallocate(big, layout(LIMIT + 1, 16)) }.unwrap();
    heap.flush();
    heap.check_invariants().unwrap();
    assert!(heap.backend_mut().is_pristine());
}

#[test]
fn a_resize_with_a_layout_above_the_classes_answers_as_a_free_would() {
    let (mut heap, _region, _) = crate::heap::<Exact>(ARENA, 0);
    let small = layout(64, 8);
    let a = alloc(&mut heap, small);
    let b = alloc(&mut heap, small);
    // SAFETY: live with `small`.
    unsafe { heap.try_deallocate(b, small) }.unwrap();
    let (big, bigger, less) = (layout(LIMIT + 100, 8), layout(4 * LIMIT, 8), layout(LIMIT + 50, 8));
    // A live object, a freed one, and a pointer inside an object, each resized as a block of the
    // backend: the error a free gives (in this layer's terms: the backend sees one live block,
    // the slab), and no change.
    for (what, ptr) in [("live object", a), ("freed object", b), ("interior pointer", at(a, 8))] {
        let expected = AllocError::InvalidBlock(heap.validate(ptr, big).unwrap_err());
        let before = digest(&heap);
        let answers = [
            // SAFETY: deliberately invalid: refused before any change.
            unsafe { heap.grow(ptr, big, bigger) },
            // SAFETY: as above.
            unsafe { heap.shrink(ptr, big, less) },
            // SAFETY: as above.
            unsafe { heap.grow_in_place(ptr, big, bigger) },
            // SAFETY: as above.
            unsafe { heap.shrink_in_place(ptr, big, less) },
        ];
        for answer in answers {
            assert_eq!(answer.map(|_| ()), Err(expected), "{what}");
        }
        assert_eq!(digest(&heap), before, "{what}");
    }
}

#[test]
fn an_alignment_that_leaves_the_classes_resizes_by_the_backends_sizes() {
    let (mut heap, _region, _) = crate::heap::<Exact>(ARENA, 0);
    let before = heap.stats();
    // 100 bytes aligned to 64 KiB: no class serves it, a block of the backend. Shrunk to 100
    // bytes aligned to 8 (the 112-byte class), the backend's layout grows, 100 to 112 bytes:
    // the block stays where it is (a block kept at its class's size) or moves, never shrinks
    // the backend's block below its new layout.
    let over = layout(100, 64 * 1024);
    let p = alloc(&mut heap, over);
    // SAFETY: live with `over`; the size does not grow.
    let q = unsafe { heap.shrink(p, over, layout(100, 8)) }.unwrap().cast::<u8>();
    heap.check_invariants().unwrap();
    // And back: a grow whose backend layout shrinks (112 to 104 bytes, aligned to 64 KiB).
    // SAFETY: live with `layout(100, 8)`; the size grows.
    let r = unsafe { heap.grow(q, layout(100, 8), layout(104, 64 * 1024)) }.unwrap().cast::<u8>();
    assert_eq!(r.addr().get() % (64 * 1024), 0);
    heap.check_invariants().unwrap();
    // SAFETY: live with this layout.
    unsafe { heap.try_deallocate(r, layout(104, 64 * 1024)) }.unwrap();
    heap.flush();
    assert_eq!(heap.stats(), before);
}
