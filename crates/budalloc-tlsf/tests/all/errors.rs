//! Bad input and the behaviours the layer promises: each rejected call reports the right error
//! (the same from `validate`) and leaves every byte of metadata as it was.

use core::alloc::Layout;
use core::num::NonZeroUsize;
use core::ptr::NonNull;

use budalloc_core::{AllocError, Corruption, FreeError, Inspect, RawAlloc};

use budalloc_testkit::{Fake, Region};

use crate::{alloc, digest, heap, layout, Small, SmallOver};

/// Arena of most tests: room for several 64 KiB chunks and blocks of the buddy beside them.
/// Smaller under Miri, where every metadata digest and invariant check reads the buddy's
/// bitmaps for the whole arena (a 1 MiB arena made a test of many rejected calls take half a
/// minute); the tests pass with either.
const ARENA: usize = if cfg!(miri) { 256 * 1024 } else { 1 << 20 };

/// Frees `ptr` with `l`, expecting an error `check` accepts, the same from `validate`, and no
/// change of metadata.
fn rejected(heap: &mut Small, ptr: NonNull<u8>, l: Layout, check: impl Fn(&FreeError) -> bool) {
    // SAFETY: every caller passes a pointer that is not a live block someone else owns.
    unsafe { budalloc_testkit::expect_rejected(heap, ptr, l, check) }
}

/// Frees the live block `ptr` with `l`, expecting it refused for damaged metadata and no change
/// of metadata.
fn refused_as_damage(heap: &mut Small, ptr: NonNull<u8>, l: Layout, context: &str) {
    let before = digest(heap);
    // SAFETY: every caller passes a live block it owns; the free is refused (asserted).
    let result = unsafe { heap.try_deallocate(ptr, l) };
    assert!(matches!(result, Err(FreeError::Corrupted(_))), "{context}: {result:?}");
    assert_eq!(digest(heap), before, "{context}");
}

/// Frees a live block, expecting success.
fn free(heap: &mut Small, ptr: NonNull<u8>, l: Layout) {
    // SAFETY: every caller passes a live block it owns, with a layout that fits it.
    unsafe { heap.try_deallocate(ptr, l) }.expect("valid free");
}

/// `ptr` moved by `delta` bytes (provenance kept).
fn at(ptr: NonNull<u8>, delta: isize) -> NonNull<u8> {
    ptr.map_addr(|a| NonZeroUsize::new(a.get().wrapping_add_signed(delta)).unwrap())
}

/// Word of a free header: seal, next, prev, length.
const SEAL: usize = 0;
const NEXT: usize = 1;
const PREV: usize = 2;
const LENGTH: usize = 3;

/// Flips bit 0 of the length word of the free header at `ptr`.
fn damage(ptr: NonNull<u8>) {
    damage_word(ptr, LENGTH, 1);
}

/// Flips the bits `mask` of word `index` of the free header at `ptr`.
fn damage_word(ptr: NonNull<u8>, index: usize, mask: usize) {
    let word = ptr.cast::<usize>().as_ptr().wrapping_add(index);
    // SAFETY: `ptr` is a free block of a region the test owns; its first granule holds the
    // heap's free header, readable and writable.
    let value = unsafe { word.read() };
    // SAFETY: as above.
    unsafe { word.write(value ^ mask) };
}

#[test]
fn blocks_are_whole_granules_and_neighbours_merge() {
    let (mut heap, _region, _) = heap::<Small>(ARENA, 0);
    let before = heap.stats();
    let a = heap.allocate(layout(5000, 8)).unwrap();
    assert_eq!(a.len(), 5056);
    let b = alloc(&mut heap, layout(100, 64));
    let c = alloc(&mut heap, layout(3000, 16));
    heap.check_invariants().unwrap();
    // The middle first, then both sides: every merge shape.
    free(&mut heap, b, layout(100, 64));
    free(&mut heap, a.cast(), layout(5000, 8));
    heap.check_invariants().unwrap();
    free(&mut heap, c, layout(3000, 16));
    heap.check_invariants().unwrap();
    heap.flush();
    assert_eq!(heap.stats(), before);
    assert!(heap.backend_mut().is_pristine());
}

#[test]
fn large_alignments_are_served_in_chunks() {
    let (mut heap, _region, _) = heap::<Small>(ARENA, 0);
    let skew = alloc(&mut heap, layout(100, 8));
    let l = layout(3000, 4096);
    let a = alloc(&mut heap, l);
    assert_eq!(a.addr().get() % 4096, 0);
    // In the chunk of the first block: the granules in front of it stayed free.
    assert_eq!(a.addr().get() & !(64 * 1024 - 1), skew.addr().get() & !(64 * 1024 - 1));
    heap.check_invariants().unwrap();
    rejected(&mut heap, a, layout(3000, 8192), |e| matches!(e, FreeError::LayoutMismatch { .. }));
    free(&mut heap, a, l);
    free(&mut heap, skew, layout(100, 8));
    heap.flush();
    assert!(heap.backend_mut().is_pristine());
}

#[test]
fn bad_frees_are_reported_and_change_nothing() {
    let (mut heap, _region, _) = heap::<Small>(ARENA, 0);
    let l = layout(5000, 8);
    let a = alloc(&mut heap, l);
    let b = alloc(&mut heap, l);
    free(&mut heap, a, l);
    rejected(&mut heap, a, l, |e| matches!(e, FreeError::DoubleFree { .. }));
    for delta in [64, 8, 4992] {
        rejected(&mut heap, at(b, delta), l, |e| matches!(e, FreeError::InteriorPointer { .. }));
    }
    for other in [layout(6000, 8), layout(4000, 8)] {
        rejected(&mut heap, b, other, |e| matches!(e, FreeError::LayoutMismatch { .. }));
    }
    // An alignment the block's address does not have.
    let unaligned = 1 << (b.addr().get().trailing_zeros() + 1);
    rejected(&mut heap, b, layout(5000, unaligned), |e| matches!(e, FreeError::LayoutMismatch { .. }));
    let local = 0u64;
    let foreign = NonNull::from(&local).cast::<u8>();
    rejected(&mut heap, foreign, layout(8, 8), |e| matches!(e, FreeError::ForeignPointer { .. }));
    // The chunk's own base, with the chunk's layout: not a block of the caller's.
    let base = b.map_addr(|x| NonZeroUsize::new(x.get() & !(64 * 1024 - 1)).unwrap());
    rejected(&mut heap, base, layout(64 * 1024, 64 * 1024), |e| matches!(e, FreeError::DoubleFree { .. }));
    // Any size that rounds to the block's 79 granules fits it.
    free(&mut heap, b, layout(4993, 8));
    heap.check_invariants().unwrap();
}

#[test]
fn a_layout_that_spans_several_blocks_is_refused() {
    let (mut heap, _region, _) = heap::<Small>(ARENA, 0);
    // Blocks of 40 granules in a row, then one of 1: a layout claiming a block runs to the start
    // of a later one (a block boundary, as for a real length) over starts that lie in the first,
    // a middle or the last word of the `S` bitmap the range covers.
    let l = layout(40 * 64, 8);
    let blocks: Vec<_> = (0..8).map(|_| alloc(&mut heap, l)).collect();
    let tail = alloc(&mut heap, layout(64, 8));
    for (i, &block) in blocks.iter().enumerate() {
        for spanned in 2..=8 - i {
            let claimed = layout(spanned * 40 * 64, 8);
            rejected(&mut heap, block, claimed, |e| matches!(e, FreeError::LayoutMismatch { .. }));
        }
    }
    for &block in &blocks {
        free(&mut heap, block, l);
    }
    free(&mut heap, tail, layout(64, 8));
    heap.check_invariants().unwrap();
}

#[test]
fn damaged_free_header_is_reported_before_any_change() {
    let (mut heap, _region, _) = heap::<Small>(ARENA, 0);
    let l = layout(5000, 8);
    let a = alloc(&mut heap, l);
    let b = alloc(&mut heap, l);
    let c = alloc(&mut heap, l);
    free(&mut heap, b, l);
    damage(b);
    // Freeing either neighbour would merge with the damaged block: refused, nothing changed.
    // (`validate` checks the block alone, which is sound; the merge finds the damage.)
    for neighbour in [a, c] {
        assert_eq!(heap.validate(neighbour, l), Ok(()));
        refused_as_damage(&mut heap, neighbour, l, "a neighbour of the damaged block");
    }
    assert!(heap.check_invariants().is_err());
    // Repaired, everything frees.
    damage(b);
    heap.check_invariants().unwrap();
    free(&mut heap, a, l);
    free(&mut heap, c, l);
    heap.flush();
    assert!(heap.backend_mut().is_pristine());
}

#[test]
fn every_word_of_a_free_header_is_sealed() {
    let (mut heap, _region, _) = heap::<Small>(ARENA, 0);
    let l = layout(5000, 8);
    let [a, b, c, d, e] = core::array::from_fn(|_| alloc(&mut heap, l));
    // `b` and `d` share a bin; `d` heads it, linked to `b` both ways.
    free(&mut heap, b, l);
    free(&mut heap, d, l);
    // A flipped bit of any word, the links as much as the length, fails the seal: freeing a
    // neighbour, which would merge with the damaged block, is refused and changes nothing.
    for (damaged, neighbour) in [(b, a), (d, e)] {
        for word in [SEAL, NEXT, PREV, LENGTH] {
            for mask in [1, 1 << 6, 1 << 40] {
                damage_word(damaged, word, mask);
                refused_as_damage(&mut heap, neighbour, l, &format!("word {word}, mask {mask:#x}"));
                damage_word(damaged, word, mask);
            }
        }
    }
    heap.check_invariants().unwrap();
    for block in [a, c, e] {
        free(&mut heap, block, l);
    }
    heap.flush();
    assert!(heap.backend_mut().is_pristine());
}

#[test]
fn pushing_onto_a_damaged_block_does_not_reseal_it() {
    let (mut heap, _region, _) = heap::<Small>(ARENA, 0);
    let l = layout(5000, 8);
    let [a, b, _, d, _] = core::array::from_fn(|_| alloc(&mut heap, l));
    free(&mut heap, b, l);
    // 79 granules become 78: the same bin, so nothing but the seal tells.
    damage(b);
    // Freeing `d` pushes it onto `b`'s bin and rewrites `b`'s back link: the damage stays
    // visible instead of being sealed over.
    free(&mut heap, d, l);
    refused_as_damage(&mut heap, a, l, "the left neighbour of the damaged block");
    assert!(heap.check_invariants().is_err());
}

#[test]
fn unlinking_beside_a_damaged_block_does_not_reseal_it() {
    let (mut heap, _region, _) = heap::<Small>(ARENA, 0);
    let l = layout(5000, 8);
    let [a, b, c, d, e, _] = core::array::from_fn(|_| alloc(&mut heap, l));
    // `b` and `d` share a bin: `d` heads it, `b` follows.
    free(&mut heap, b, l);
    free(&mut heap, d, l);
    damage(b);
    // Freeing `c` merges it with `b` (damaged: refused, nothing changed) ...
    refused_as_damage(&mut heap, c, l, "the neighbour of the damaged block");
    // ... but freeing `e` merges it with `d` alone, and unlinking `d` rewrites `b`'s back link:
    // that moves `b`'s seal by the link's change alone, so the damage stays visible.
    free(&mut heap, e, l);
    assert!(heap.check_invariants().is_err());
    refused_as_damage(&mut heap, a, l, "the left neighbour of the damaged block");
    // Flipping the bit back repairs `b`: its seal followed the new back link, so the heap is
    // whole again.
    damage(b);
    heap.check_invariants().unwrap();
}

#[test]
fn grow_and_shrink_in_place() {
    let (mut heap, _region, _) = heap::<Small>(ARENA, 0);
    let a = alloc(&mut heap, layout(5000, 8));
    // SAFETY: live with the old layout; the size grows.
    let grown = unsafe { heap.grow_in_place(a, layout(5000, 8), layout(9000, 8)) }.unwrap();
    assert_eq!((grown.cast::<u8>(), grown.len()), (a, 9024));
    heap.check_invariants().unwrap();
    // SAFETY: live with the old layout; the size shrinks.
    let shrunk = unsafe { heap.shrink_in_place(a, layout(9000, 8), layout(100, 8)) }.unwrap();
    assert_eq!((shrunk.cast::<u8>(), shrunk.len()), (a, 128));
    heap.check_invariants().unwrap();
    // A neighbour stops the growth: refused, nothing changed.
    let b = alloc(&mut heap, layout(1000, 8));
    let before = digest(&heap);
    // SAFETY: live with the old layout; the size grows.
    assert!(unsafe { heap.grow_in_place(a, layout(100, 8), layout(5000, 8)) }.is_err());
    assert_eq!(digest(&heap), before);
    // The moving grow copies and frees.
    // SAFETY: live with the old layout; the size grows.
    let moved = unsafe { heap.grow(a, layout(100, 8), layout(5000, 8)) }.unwrap();
    free(&mut heap, moved.cast(), layout(5000, 8));
    free(&mut heap, b, layout(1000, 8));
    heap.check_invariants().unwrap();
    heap.flush();
    assert!(heap.backend_mut().is_pristine());
}

#[test]
fn requests_fall_back_to_the_buddy_when_no_chunk_can_be_had() {
    let (mut heap, _region, _) = heap::<Small>(256 * 1024, 0);
    let l = layout(8000, 8);
    let mut blocks = Vec::new();
    while let Ok(block) = heap.allocate(l) {
        blocks.push(block.cast::<u8>());
    }
    heap.check_invariants().unwrap();
    // The arena holds 4 chunks' worth of 7 blocks each (the chunk headers take a little of
    // each); the last blocks came from the buddy once no chunk was left.
    assert!(blocks.len() >= 28, "{} blocks", blocks.len());
    assert!(blocks.iter().any(|&b| heap.validate(b, l).is_ok()));
    for block in blocks {
        free(&mut heap, block, l);
    }
    heap.check_invariants().unwrap();
    heap.flush();
    assert!(heap.backend_mut().is_pristine());
}

#[test]
fn an_emptied_chunk_is_kept_once_and_given_back_on_flush() {
    let (mut heap, _region, _) = heap::<Small>(ARENA, 0);
    let initial = heap.backend().stats();
    let l = layout(16 * 1024, 8);
    // Two chunks' worth.
    let blocks: Vec<_> = (0..6).map(|_| alloc(&mut heap, l)).collect();
    let chunks = |heap: &Small| format!("{heap:?}");
    assert!(chunks(&heap).contains("chunks: 2"), "{}", chunks(&heap));
    for block in blocks {
        free(&mut heap, block, l);
    }
    // One empty chunk went back at once, the other is kept for reuse.
    assert!(chunks(&heap).contains("chunks: 1"), "{}", chunks(&heap));
    heap.check_invariants().unwrap();
    assert!(heap.release_spare());
    assert!(chunks(&heap).contains("chunks: 0"), "{}", chunks(&heap));
    assert_eq!(heap.backend().stats(), initial);
}

#[test]
fn a_footer_damaged_to_name_a_live_block_is_refused_without_reading_it() {
    let (mut heap, _region, _) = heap::<Small>(ARENA, 0);
    let l = layout(640, 8); // 10 granules each
    let [a, f, b, c] = core::array::from_fn(|_| alloc(&mut heap, l));
    free(&mut heap, f, l);
    // The footer of `f` (the last word of its block) claims 20 granules: the block it names
    // would start at `a`, which is live. Footers carry no seal; the bitmaps must refuse it.
    let footer = at(f, 640 - 8).cast::<usize>();
    // SAFETY: the last word of the free block `f`, in the region the test owns.
    unsafe { footer.as_ptr().write(20) };
    // The free of `b` looks left through that footer: refused as damage of the footer, before
    // `a`'s memory is read as a header, and nothing changed. `a`'s owner holds a reference to
    // it meanwhile (a protected one under Miri: reading its bytes through the chunk's pointer
    // would be undefined behaviour there).
    let before = digest(&heap);
    // SAFETY: `a` is a live block of 640 bytes, ours alone.
    let owner = unsafe { &mut *a.cast::<[u8; 640]>().as_ptr() };
    let result = free_beside(&mut heap, b, l, owner);
    let footer_granule = f.addr().get() + 640 - 64;
    assert_eq!(result, Err(FreeError::Corrupted(Corruption::Header { addr: footer_granule })));
    assert_eq!(digest(&heap), before);
    // SAFETY: as above: the footer mended.
    unsafe { footer.as_ptr().write(10) };
    for block in [a, b, c] {
        free(&mut heap, block, l);
    }
    heap.flush();
    assert!(heap.backend_mut().is_pristine());
}

/// Frees `ptr` with `l` while `owner` holds a (protected, for this call) reference to another
/// live block.
fn free_beside(
    heap: &mut Small,
    ptr: NonNull<u8>,
    l: Layout,
    owner: &mut [u8; 640],
) -> Result<(), FreeError> {
    owner[0] = 1;
    // SAFETY: `ptr` is a live block the test owns, freed with its layout.
    unsafe { heap.try_deallocate(ptr, l) }
}

#[test]
fn an_allocation_refused_for_a_damaged_chunk_list_changes_nothing() {
    let (mut heap, _region, _) = heap::<Small>(ARENA, 0);
    // One 64 KiB chunk full of three 16 KiB blocks (less its header): the next request needs a
    // new chunk.
    let l = layout(16 * 1024, 8);
    let blocks: [_; 3] = core::array::from_fn(|_| alloc(&mut heap, l));
    // The chunk's header: its `prev` link (word 2) damaged.
    let head = blocks[0].map_addr(|a| NonZeroUsize::new(a.get() & !(64 * 1024 - 1)).unwrap());
    damage_word(head, PREV, 64);
    let before = digest(&heap);
    let result = heap.allocate(l);
    assert!(matches!(result, Err(AllocError::Corrupted(_))), "{result:?}");
    // Neither the chunks' metadata nor the buddy's: the buddy was not asked for a chunk.
    assert_eq!(digest(&heap), before);
    damage_word(head, PREV, 64);
    for block in blocks {
        free(&mut heap, block, l);
    }
    heap.flush();
    assert!(heap.backend_mut().is_pristine());
}

/// A free through a pointer whose borrow covers only the layout, not the block's tail (a
/// `Box<[u8; 5000]>` in a 5056-byte block): it succeeds and leaves the heap whole, with the
/// chunks from any backend.
fn free_through_the_layout_alone<B: RawAlloc + Inspect>(mut heap: SmallOver<B>) {
    let l = layout(5000, 8);
    let block = alloc(&mut heap, l);
    let right = alloc(&mut heap, l);
    // SAFETY: a live block of at least 5000 bytes, ours alone.
    let bytes = unsafe { &mut *block.cast::<[u8; 5000]>().as_ptr() };
    bytes.fill(7);
    let narrow = NonNull::from(bytes).cast::<u8>();
    // SAFETY: a live block of ours, freed once, with its layout.
    unsafe { heap.try_deallocate(narrow, l) }.expect("valid free");
    heap.check_invariants().unwrap();
    // SAFETY: as above.
    unsafe { heap.try_deallocate(right, l) }.expect("valid free");
}

/// [`free_through_the_layout_alone`] over the buddy, natively and under Miri's Tree Borrows.
#[test]
fn a_free_through_a_pointer_to_the_layout_alone_writes_the_tail_through_the_chunk() {
    let (heap, _region, _) = heap::<Small>(ARENA, 0);
    free_through_the_layout_alone(heap);
}

/// [`free_through_the_layout_alone`] over the test kit's `Fake`, which keeps no metadata in its
/// region, so that `cargo xtask miri` runs it under Stacked Borrows too: there, a write into
/// the block's tail through the caller's pointer (which reaches the layout's 5000 bytes only)
/// is undefined behaviour, and that is what the fix of 2026-12-07 stopped (the footer past the
/// layout written through the chunk's pointer). Over the buddy, Stacked Borrows fails inside
/// bitvec first (ferrilab/bitvec#193).
#[test]
fn a_free_through_a_pointer_to_the_layout_alone_passes_stacked_borrows() {
    // Room for a few chunks, aligned to one (the fake hands out chunks aligned within it).
    let region = Region::new(4 * 64 * 1024, 64 * 1024);
    free_through_the_layout_alone(SmallOver::new(Fake::marking(&region)));
}
