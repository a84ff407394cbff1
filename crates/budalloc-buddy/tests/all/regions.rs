//! Regions of odd sizes and alignments, bad regions, several arenas.

use core::mem::MaybeUninit;
use core::ptr;

use budalloc_core::{Inspect, RawAlloc, RegionError};
use budalloc_testkit::Region;

use crate::{alloc, layout, Small};

#[test]
fn odd_sizes_and_starts_seed_largest_aligned_blocks_first() {
    let region = Region::new(44 * 1024, 4096);
    let skews: &[usize] =
        if cfg!(miri) { &[0, 3, 16, 1000] } else { &[0, 1, 3, 8, 15, 16, 17, 100, 1000, 4095] };
    let lens: &[usize] =
        if cfg!(miri) { &[100, 4097, 20000] } else { &[100, 1000, 4096, 4097, 7 * 4096 + 48, 30000, 39000] };
    for &skew in skews {
        for &len in lens {
            let (ptr, _) = region.skewed(skew);
            let mut heap = Small::new();
            // SAFETY: the region is ours, outlives the heap, and `len + skew` fits in it.
            unsafe { heap.claim_raw(ptr, len) }.unwrap_or_else(|e| panic!("skew {skew} len {len}: {e}"));
            heap.check_invariants().unwrap();
            assert!(heap.is_pristine());
            let arena = heap.arenas().next().unwrap();
            // The seeding: every free block is naturally aligned and as large as it can be
            // (its parent would be misaligned, stick out of the arena, or exceed MAX).
            let blocks: Vec<_> = heap.blocks().collect();
            let mut at = arena.start();
            for b in &blocks {
                assert_eq!(b.addr, at, "blocks tile the arena");
                assert!(!b.allocated);
                assert_eq!(b.addr % b.size, 0, "naturally aligned");
                let parent = b.size * 2;
                let parent_start = b.addr & !(parent - 1);
                assert!(
                    parent > 4096 || parent_start < arena.start() || parent_start + parent > arena.end(),
                    "block {:#x}+{} could have been part of a larger seed block",
                    b.addr,
                    b.size
                );
                at += b.size;
            }
            assert_eq!(at, arena.end());
            // The whole capacity is allocatable in MIN blocks.
            let stats = heap.stats();
            let mut n = 0;
            while heap.allocate(layout(16, 1)).is_ok() {
                n += 1;
            }
            assert_eq!(n * 16, stats.capacity);
            let meta = stats.overhead as f64 / len as f64;
            assert!(len < 4096 || meta < 0.03, "metadata and padding {meta:.3} of the region");
        }
    }
}

#[test]
fn bad_regions_are_errors_never_panics() {
    let mut heap = Small::new();
    // SAFETY: a null pointer is refused before any access.
    assert_eq!(unsafe { heap.claim_raw(ptr::null_mut(), 4096) }.unwrap_err(), RegionError::Null);
    let near_end = ptr::without_provenance_mut::<u8>(usize::MAX - 100);
    // SAFETY: a wrapping region is refused before any access.
    let e = unsafe { heap.claim_raw(near_end, 4096) }.unwrap_err();
    assert!(matches!(e, RegionError::Overflow { .. }), "{e}");
    let region = Region::new(4096, 4096);
    for len in [0, 1, 15, 16, 31, 40] {
        let (ptr, _) = region.skewed(1);
        // SAFETY: the region is ours and `len` fits in it.
        let e = unsafe { heap.claim_raw(ptr, len) }.unwrap_err();
        assert!(matches!(e, RegionError::TooSmall { .. }), "len {len}: {e}");
    }
    assert_eq!(heap.arenas().count(), 0, "nothing claimed");
    // The smallest region that works, from an aligned start: one fragment and the bitmap.
    let (ptr, _) = region.skewed(0);
    // SAFETY: as above.
    unsafe { heap.claim_raw(ptr, 16 + 3 * size_of::<usize>()) }.unwrap();
    assert_eq!(heap.stats().capacity, 16);
}

#[test]
fn several_arenas_overlap_and_capacity() {
    let regions: Vec<Region> = (0..5).map(|_| Region::new(4096, 4096)).collect();
    let mut heap = Small::new();
    for r in &regions[..4] {
        let (ptr, len) = r.skewed(0);
        // SAFETY: each region is ours and outlives the heap.
        unsafe { heap.claim_raw(ptr, len) }.unwrap();
    }
    let (ptr, len) = regions[4].skewed(0);
    // SAFETY: as above.
    assert_eq!(unsafe { heap.claim_raw(ptr, len) }.unwrap_err(), RegionError::TooManyArenas { capacity: 4 });
    let (ptr, _) = regions[1].skewed(100);
    // SAFETY: overlapping regions are refused before any access.
    assert!(matches!(unsafe { heap.claim_raw(ptr, 100) }, Err(RegionError::Overlap { .. })));
    let starts: Vec<_> = heap.arenas().map(|a| a.start()).collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "arenas sorted by address");
    heap.check_invariants().unwrap();
}

#[test]
fn requests_spill_into_later_arenas_and_frees_find_their_arena() {
    let a = Region::new(8192, 4096);
    let b = Region::new(8192, 4096);
    let mut heap = Small::new();
    for r in [&a, &b] {
        let (ptr, len) = r.skewed(0);
        // SAFETY: each region is ours and outlives the heap.
        unsafe { heap.claim_raw(ptr, len) }.unwrap();
    }
    let capacity = heap.stats().capacity;
    let mut live = Vec::new();
    while let Ok(block) = heap.allocate(layout(512, 1)) {
        live.push(block.cast::<u8>());
    }
    assert_eq!(live.len() * 512, capacity - capacity % 512 - (heap.stats().free / 512) * 512);
    let arenas: Vec<_> = heap.arenas().map(|a| (a.start(), a.end())).collect();
    for (s, e) in &arenas {
        assert!(live.iter().any(|p| (*s..*e).contains(&p.addr().get())), "both arenas serve");
    }
    for p in live {
        assert!(heap.owns(p));
        // SAFETY: allocated above with this layout.
        unsafe { heap.try_deallocate(p, layout(512, 1)) }.unwrap();
    }
    assert!(heap.is_pristine());
}

#[test]
fn static_region_claim() {
    /// A region aligned like the bitmap words it will hold (Miri's symbolic alignment check
    /// judges alignment by the allocation, not by the address).
    #[repr(C, align(4096))]
    struct Aligned([MaybeUninit<u8>; 4096]);
    let raw = Box::into_raw(Box::new(Aligned([MaybeUninit::uninit(); 4096])));
    // SAFETY: `raw` comes from `Box::into_raw`; the reference is the only access until the box
    // is rebuilt below, after the heap is gone.
    let region: &'static mut [MaybeUninit<u8>] = unsafe { &mut (*raw).0 };
    let mut heap = Small::new();
    let arena = heap.claim(region).unwrap();
    assert!(arena.capacity() >= 3 * 1024);
    let p = alloc(&mut heap, 10, 1);
    // SAFETY: allocated above.
    unsafe { heap.try_deallocate(p, layout(10, 1)) }.unwrap();
    let _ = heap;
    // SAFETY: the heap is no longer used; give the memory back so Miri's leak check stays on.
    drop(unsafe { Box::from_raw(raw) });
}

/// A source of regions cut from one [`Region`], counting what is asked and given back.
struct Counted<'r> {
    region: &'r Region,
    /// Bytes handed out so far, from the start of the region.
    used: usize,
    acquired: usize,
    released: usize,
}

// SAFETY: regions are consecutive, disjoint slices of `region`, which outlives the policy in
// the test below, and are never handed out twice.
unsafe impl budalloc_core::Source for Counted<'_> {
    fn acquire(&mut self, min_len: usize) -> Option<ptr::NonNull<[u8]>> {
        let (base, len) = self.region.whole();
        let len_wanted = min_len.max(4096).next_power_of_two();
        if self.used + len_wanted > len {
            return None;
        }
        self.acquired += 1;
        let start = base.wrapping_add(self.used);
        self.used += len_wanted;
        Some(ptr::NonNull::slice_from_raw_parts(ptr::NonNull::new(start)?, len_wanted))
    }

    unsafe fn release(&mut self, region: ptr::NonNull<[u8]>) {
        self.released += 1;
        // The last region handed out comes back: the next one reuses its memory.
        self.used -= region.len();
    }
}

#[test]
fn a_policy_with_no_room_for_another_arena_gets_no_more_regions() {
    let region = Region::new(64 * 1024, 4096);
    let source = Counted { region: &region, used: 0, acquired: 0, released: 0 };
    // One arena only.
    let mut heap = budalloc_core::Grow::new(budalloc_buddy::Buddy::<16, 4096, 1>::new(), source);
    let l = layout(4096, 8);
    // The only arena (8 KiB: twice the request, its bitmap included) has room for one.
    let first = heap.allocate(l).unwrap();
    for _ in 0..10 {
        assert!(matches!(heap.allocate(l), Err(budalloc_core::AllocError::OutOfMemory { .. })));
    }
    let source = heap.source();
    assert_eq!((source.acquired, source.released), (2, 1), "the refused region went back, once");
    assert_eq!(source.used, 8192, "only the arena's memory is taken");
    // SAFETY: live with `l`.
    unsafe { heap.try_deallocate(first.cast(), l) }.unwrap();
    heap.check_invariants().unwrap();
}
