//! Loom models of the `Locked` frontend over the buddy policy, on a tiny arena (four to eight
//! smallest blocks) so the search is exhaustive under `LOOM_MAX_PREEMPTIONS=2`.
//!
//! Run with `cargo xtask loom` (`RUSTFLAGS="--cfg budalloc_loom" LOOM_MAX_PREEMPTIONS=2
//! cargo test --release -p budalloc-sync --test loom`). No model caps permutations or time.
#![cfg(budalloc_loom)]

use core::alloc::Layout;
use core::ptr::NonNull;

use budalloc_buddy::Buddy;
use budalloc_core::{FreeError, Inspect, RawAlloc};
// `flush` is a `RawAlloc` method: merges the parked block.
use budalloc_sync::{Locked, Spin};
use loom::sync::Arc;
use loom::thread;

/// 16-byte blocks, 128-byte largest block: a 128-byte arena holds eight smallest blocks.
type Tiny = Buddy<16, 128, 1>;

/// A heap over a fresh 128-byte-aligned region; the region is freed by [`finish`].
fn tiny_heap() -> (Arc<Locked<Tiny, Spin>>, *mut u8, Layout) {
    // 128 bytes of blocks and the bitmap behind them.
    let layout = Layout::from_size_align(256, 128).unwrap();
    // SAFETY: non-zero size.
    let region = unsafe { std::alloc::alloc(layout) };
    let heap = Locked::new(Tiny::new());
    // SAFETY: the region is ours until `finish` frees it, after the heap is gone.
    unsafe { heap.claim_raw(region, 128 + 3 * size_of::<usize>()) }.unwrap();
    assert_eq!(heap.stats().capacity, 128);
    (Arc::new(heap), region, layout)
}

/// Checks the heap is back to its seeding, then frees the region.
fn finish(heap: Arc<Locked<Tiny, Spin>>, region: *mut u8, layout: Layout) {
    let mut heap = Arc::try_unwrap(heap).ok().expect("threads joined");
    let policy = heap.get_mut();
    policy.check_invariants().unwrap();
    assert!(policy.is_pristine(), "everything merged back");
    drop(heap);
    // SAFETY: allocated in `tiny_heap` with `layout`; the heap is gone.
    unsafe { std::alloc::dealloc(region, layout) };
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 1).unwrap()
}

/// Sends a block address between threads (the heap owns the memory; the pointer is just a name).
#[derive(Clone, Copy)]
struct Block(NonNull<u8>);
// SAFETY: the block is handed over whole; only its receiver uses it afterwards.
unsafe impl Send for Block {}

#[test]
fn concurrent_allocations_are_disjoint_and_accounted() {
    loom::model(|| {
        let (heap, region, l) = tiny_heap();
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let heap = heap.clone();
                thread::spawn(move || Block(heap.with(|a| a.allocate(layout(32))).unwrap().cast()))
            })
            .collect();
        let blocks: Vec<Block> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_ne!(blocks[0].0, blocks[1].0);
        let a = blocks[0].0.addr().get();
        let b = blocks[1].0.addr().get();
        assert!(a + 32 <= b || b + 32 <= a, "blocks overlap");
        assert_eq!(heap.stats().allocated, 64);
        for block in blocks {
            // SAFETY: allocated above with this layout.
            heap.with(|h| unsafe { h.try_deallocate(block.0, layout(32)) }).unwrap();
        }
        finish(heap, region, l);
    });
}

#[test]
fn racing_double_free_exactly_one_wins() {
    loom::model(|| {
        let (heap, region, l) = tiny_heap();
        let block = Block(heap.with(|a| a.allocate(layout(16))).unwrap().cast());
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let heap = heap.clone();
                // SAFETY: both threads claim the block; the policy lets exactly one free it and
                // reports the other as a double free.
                thread::spawn(move || heap.with(|a| unsafe { a.try_deallocate(block.0, layout(16)) }))
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(results.iter().any(|r| matches!(r, Err(FreeError::DoubleFree { .. }))), "{results:?}");
        finish(heap, region, l);
    });
}

#[test]
fn cross_thread_free_makes_the_block_reusable() {
    loom::model(|| {
        let (heap, region, l) = tiny_heap();
        // Main owns the left half; another thread frees it while main asks for a 64-byte block
        // that only the freed half (or the right half) can serve.
        let left = Block(heap.with(|a| a.allocate(layout(64))).unwrap().cast());
        let freer = {
            let heap = heap.clone();
            // SAFETY: the block is handed to this thread whole.
            thread::spawn(move || heap.with(|a| unsafe { a.try_deallocate(left.0, layout(64)) }).unwrap())
        };
        let other = heap.with(|a| a.allocate(layout(64))).expect("one 64-byte block is always free");
        freer.join().unwrap();
        // Whatever the interleaving, the rest of the arena is one reusable 64-byte block.
        let again = heap.with(|a| a.allocate(layout(64))).expect("the freed block is reusable");
        for block in [other, again] {
            // SAFETY: allocated above with this layout.
            heap.with(|a| unsafe { a.try_deallocate(block.cast(), layout(64)) }).unwrap();
        }
        finish(heap, region, l);
    });
}

#[test]
fn two_buddies_freed_concurrently_merge_exactly_once() {
    loom::model(|| {
        let (heap, region, l) = tiny_heap();
        let left = heap.with(|a| a.allocate(layout(64))).unwrap().cast::<u8>();
        let right = heap.with(|a| a.allocate(layout(64))).unwrap().cast::<u8>();
        assert_eq!(left.addr().get() ^ right.addr().get(), 64, "buddies");
        let handles: Vec<_> = [Block(left), Block(right)]
            .into_iter()
            .map(|block| {
                let heap = heap.clone();
                // SAFETY: each thread frees the block it was given.
                thread::spawn(move || {
                    heap.with(|a| unsafe { a.try_deallocate(block.0, layout(64)) }).unwrap()
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        // The block freed last is parked unmerged; merging it must give one 128-byte block.
        heap.with(|a| a.flush());
        assert_eq!(heap.stats().free_blocks[3], 1, "one 128-byte block");
        finish(heap, region, l);
    });
}

#[test]
fn exhaustion_under_contention_then_free_all() {
    loom::model(|| {
        let (heap, region, l) = tiny_heap();
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let heap = heap.clone();
                thread::spawn(move || {
                    let mut mine = Vec::new();
                    while let Ok(b) = heap.with(|a| a.allocate(layout(32))) {
                        mine.push(Block(b.cast()));
                    }
                    mine
                })
            })
            .collect();
        let all: Vec<Block> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        assert_eq!(all.len(), 4, "the arena holds four 32-byte blocks, all handed out once");
        for b in all {
            // SAFETY: allocated above with this layout.
            heap.with(|a| unsafe { a.try_deallocate(b.0, layout(32)) }).unwrap();
        }
        finish(heap, region, l);
    });
}

/// The tiny buddy with its orders declared as size classes, for the per-thread cache.
type TinyClasses = budalloc_testkit::PowerClasses<Tiny>;

#[test]
fn cache_flush_racing_refill_and_thread_exit_lose_nothing() {
    use budalloc_sync::Magazines;
    loom::model(|| {
        let layout_ = Layout::from_size_align(256, 128).unwrap();
        // SAFETY: non-zero size.
        let region = unsafe { std::alloc::alloc(layout_) };
        let shared = Locked::<TinyClasses, Spin>::new(budalloc_testkit::PowerClasses::new(Tiny::new()));
        // SAFETY: the region is ours until freed below, after the heap is gone.
        unsafe { shared.claim_raw(region, 128 + 3 * size_of::<usize>()) }.unwrap();
        let shared = Arc::new(shared);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let shared = shared.clone();
                // The magazines (about 30 KiB, 20 of them the double-free filter) do not fit
                // loom's default 32 KiB thread stack beside the frames that use them.
                let builder = thread::Builder::new().stack_size(1 << 18);
                let spawned = builder.spawn(move || {
                    // Each thread: its own magazines, refilled from the shared heap (racing the
                    // other's refill and flush), one object used and freed into the magazine,
                    // then everything flushed as at thread exit.
                    let mut magazines = Magazines::new();
                    let got = magazines.allocate(&*shared, layout(32)).expect("a cached class");
                    if let Ok(block) = got {
                        let p = block.cast::<u8>();
                        // SAFETY: a fresh 32-byte block, ours.
                        unsafe { p.write_bytes(0xAB, 32) };
                        // SAFETY: live with `layout(32)`, not used afterwards.
                        let freed = unsafe { magazines.deallocate(&*shared, p, layout(32)) };
                        freed.expect("a cached class").unwrap();
                    }
                    magazines.check_invariants().unwrap();
                    magazines.flush(&*shared).unwrap();
                    magazines.check_invariants().unwrap();
                    assert_eq!(magazines.cached(), 0);
                    got.is_ok()
                });
                spawned.expect("loom spawns the thread")
            })
            .collect();
        let served: Vec<bool> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        // One refill takes the whole arena (4 blocks of 32 B): the other thread may find it empty,
        // but at least one is served and nothing stays out.
        assert!(served.contains(&true));
        let mut shared = Arc::try_unwrap(shared).ok().expect("threads joined");
        let policy = shared.get_mut();
        policy.0.check_invariants().unwrap();
        assert!(policy.0.is_pristine(), "every cached object went back and merged");
        drop(shared);
        // SAFETY: allocated above with `layout_`; the heap is gone.
        unsafe { std::alloc::dealloc(region, layout_) };
    });
}
