//! `Locked`: the conformance suite behind both locks, threads sharing one heap, the
//! non-blocking mode, and the `GlobalAlloc` path's answers.

use core::alloc::{GlobalAlloc, Layout};
use std::sync::Barrier;

use budalloc_core::{Inspect, RawAlloc};
use budalloc_sync::{Locked, RawLock, Spin, StdLock, WouldBlock};
use budalloc_testkit::Region;

use crate::Policy;

fn locked<L: RawLock>(len: usize) -> (Locked<Policy, L>, Region) {
    let region = Region::new(len, 4096);
    let heap = Locked::new(Policy::new());
    let (ptr, len) = region.skewed(0);
    // SAFETY: the region is ours and outlives the heap.
    unsafe { heap.claim_raw(ptr, len) }.expect("claim");
    (heap, region)
}

const CONFORMANCE_ARENA: usize = if cfg!(miri) { 64 * 1024 } else { 1 << 20 };

mod spin {
    budalloc_testkit::allocator_conformance!(super::locked::<budalloc_sync::Spin>(super::CONFORMANCE_ARENA));
}

mod std_lock {
    budalloc_testkit::allocator_conformance!(super::locked::<budalloc_sync::StdLock>(
        super::CONFORMANCE_ARENA
    ));
}

/// Threads allocate, fill, check and free on one heap; blocks never overlap and everything is
/// returned.
fn threads_share_one_heap<L: RawLock + Sync>() {
    let (mut heap, _region) = locked::<L>(256 * 1024);
    let threads = 4;
    let rounds = if cfg!(miri) { 20 } else { 2000 };
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        for t in 0..threads {
            let heap = &heap;
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                let mut live = Vec::new();
                for i in 0..rounds {
                    let size = 1 + (i * 37 + t * 101) % 700;
                    let layout = Layout::from_size_align(size, 8).unwrap();
                    // SAFETY: a valid non-zero layout.
                    let p = unsafe { heap.alloc(layout) };
                    assert!(!p.is_null());
                    // SAFETY: the block is ours for `size` bytes.
                    unsafe { p.write_bytes(t as u8, size) };
                    live.push((p, layout));
                    if live.len() > 8 {
                        let (q, l) = live.swap_remove(i % live.len());
                        // SAFETY: ours, filled with our thread's byte.
                        let bytes = unsafe { core::slice::from_raw_parts(q, l.size()) };
                        assert!(bytes.iter().all(|&b| b == t as u8), "another thread wrote into our block");
                        // SAFETY: allocated above with `l`.
                        unsafe { heap.dealloc(q, l) };
                    }
                }
                for (q, l) in live {
                    // SAFETY: allocated above with `l`.
                    unsafe { heap.dealloc(q, l) };
                }
            });
        }
    });
    let policy = heap.get_mut();
    policy.check_invariants().unwrap();
    assert!(policy.is_pristine());
}

#[test]
fn threads_share_one_heap_spin() {
    threads_share_one_heap::<Spin>();
}

#[test]
fn threads_share_one_heap_std_lock() {
    threads_share_one_heap::<StdLock>();
}

fn try_with_refuses_instead_of_waiting<L: RawLock>() {
    let (heap, _region) = locked::<L>(64 * 1024);
    let nested = heap.with(|_| heap.try_with(|a| a.stats()));
    assert_eq!(nested.unwrap_err(), WouldBlock);
    assert!(heap.try_with(|a| a.stats()).is_ok());
}

#[test]
fn try_with_refuses_instead_of_waiting_spin() {
    try_with_refuses_instead_of_waiting::<Spin>();
}

#[test]
fn try_with_refuses_instead_of_waiting_std_lock() {
    try_with_refuses_instead_of_waiting::<StdLock>();
}

#[test]
fn global_alloc_returns_null_on_failure_and_keeps_blocks_on_failed_realloc() {
    let (heap, _region) = locked::<Spin>(64 * 1024);
    let too_big = Layout::from_size_align(1 << 20, 8).unwrap();
    // SAFETY: a valid non-zero layout.
    assert!(unsafe { heap.alloc(too_big) }.is_null());
    let layout = Layout::from_size_align(100, 8).unwrap();
    // SAFETY: as above.
    let p = unsafe { heap.alloc_zeroed(layout) };
    // SAFETY: 100 zeroed bytes.
    assert!(unsafe { core::slice::from_raw_parts(p, 100) }.iter().all(|&b| b == 0));
    // SAFETY: ours.
    unsafe { p.write_bytes(7, 100) };
    // SAFETY: `p` is live with `layout`; a too large size fails and keeps the block.
    assert!(unsafe { heap.realloc(p, layout, 1 << 20) }.is_null());
    // SAFETY: still ours.
    assert!(unsafe { core::slice::from_raw_parts(p, 100) }.iter().all(|&b| b == 7));
    // SAFETY: `p` is live with `layout`.
    let q = unsafe { heap.realloc(p, layout, 3000) };
    assert!(!q.is_null());
    // SAFETY: the first 100 bytes moved along.
    assert!(unsafe { core::slice::from_raw_parts(q, 100) }.iter().all(|&b| b == 7));
    // SAFETY: live with the new layout.
    unsafe { heap.dealloc(q, Layout::from_size_align(3000, 8).unwrap()) };
    assert_eq!(heap.stats().allocated, 0);
}
