//! The allocator-api2 conformance suite: what any budalloc frontend must do as an `Allocator`.
//! Instantiate it with [`allocator_conformance!`](crate::allocator_conformance).

use std::alloc::Layout;
use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasherDefault;

use allocator_api2::alloc::Allocator;
use allocator_api2::boxed::Box as ABox;
use allocator_api2::vec::Vec as AVec;

/// Zero-size requests get dangling, aligned, distinct-from-null pointers; freeing them is a
/// no-op.
pub fn zero_size<A: Allocator + Copy>(a: A) {
    for shift in 0..16 {
        let layout = Layout::from_size_align(0, 1 << shift).expect("layout");
        let block = a.allocate(layout).expect("zero-size allocation");
        assert_eq!(block.len(), 0);
        assert_eq!(block.cast::<u8>().addr().get() % layout.align(), 0, "aligned");
        // SAFETY: just allocated with `layout`.
        unsafe { a.deallocate(block.cast(), layout) };
    }
}

/// `allocate_zeroed` gives zeros even when the block was used and freed before.
pub fn zeroed_after_reuse<A: Allocator + Copy>(a: A) {
    for size in [1, 16, 100, 1000, 4000] {
        let layout = Layout::from_size_align(size, 8).expect("layout");
        let block = a.allocate(layout).expect("allocation");
        // SAFETY: the block is valid for `block.len()` bytes.
        unsafe { block.cast::<u8>().as_ptr().write_bytes(0xFF, block.len()) };
        // SAFETY: live with `layout`.
        unsafe { a.deallocate(block.cast(), layout) };
        let zeroed = a.allocate_zeroed(layout).expect("zeroed allocation");
        // SAFETY: valid for reads of its length, and initialised (zeroed).
        let bytes = unsafe { std::slice::from_raw_parts(zeroed.cast::<u8>().as_ptr(), zeroed.len()) };
        assert!(bytes.iter().all(|&b| b == 0), "allocate_zeroed of {size} bytes is not zero");
        // SAFETY: live with `layout`.
        unsafe { a.deallocate(zeroed.cast(), layout) };
    }
}

/// Grow, grow_zeroed and shrink keep contents, zero what they add, and accept zero sizes.
pub fn resize_keeps_contents<A: Allocator + Copy>(a: A) {
    let small = Layout::from_size_align(24, 8).expect("layout");
    let block = a.allocate(small).expect("allocation").cast::<u8>();
    // SAFETY: valid for 24 bytes.
    unsafe { block.as_ptr().write_bytes(0xA5, 24) };
    let big = Layout::from_size_align(3000, 8).expect("layout");
    // SAFETY: live with `small`, `big` is larger.
    let grown = unsafe { a.grow_zeroed(block, small, big) }.expect("grow").cast::<u8>();
    // SAFETY: valid for 3000 bytes, initialised (copied or zeroed).
    let bytes = unsafe { std::slice::from_raw_parts(grown.as_ptr(), 3000) };
    assert!(bytes[..24].iter().all(|&b| b == 0xA5), "grow kept contents");
    assert!(bytes[24..].iter().all(|&b| b == 0), "grow_zeroed zeroed the rest");
    let mid = Layout::from_size_align(10, 8).expect("layout");
    // SAFETY: live with `big`, `mid` is smaller.
    let shrunk = unsafe { a.shrink(grown, big, mid) }.expect("shrink").cast::<u8>();
    // SAFETY: valid for 10 bytes.
    let bytes = unsafe { std::slice::from_raw_parts(shrunk.as_ptr(), 10) };
    assert!(bytes.iter().all(|&b| b == 0xA5), "shrink kept contents");
    let zero = Layout::from_size_align(0, 8).expect("layout");
    // SAFETY: live with `mid`; shrinking to zero frees it.
    let empty = unsafe { a.shrink(shrunk, mid, zero) }.expect("shrink to zero");
    assert_eq!(empty.len(), 0);
    // SAFETY: a zero-size block; growing it is allocating.
    let again = unsafe { a.grow(empty.cast(), zero, small) }.expect("grow from zero");
    // SAFETY: live with `small`.
    unsafe { a.deallocate(again.cast(), small) };
}

/// Real collections: a growing `Vec`, a `Box`, a `hashbrown::HashMap` with churn. The map's
/// hasher has fixed keys: with hashbrown's default (randomly seeded) one, where removals leave
/// tombstones decides whether the table grows to 8192 buckets (73 744 bytes, more than the
/// largest block of some test heaps), so the test passed or failed from run to run.
pub fn collections<A: Allocator + Copy>(a: A) {
    let n = if cfg!(miri) { 300 } else { 5_000 };
    let mut v = AVec::new_in(a);
    for i in 0..n {
        v.push(i as u64);
    }
    assert_eq!(v.iter().sum::<u64>(), (n as u64 - 1) * n as u64 / 2);
    let b = ABox::new_in([3u32; 100], a);
    let hasher = BuildHasherDefault::<DefaultHasher>::default();
    let mut map = hashbrown::HashMap::with_hasher_in(hasher, a);
    for i in 0..n {
        map.insert(i, i * 2);
        if i % 3 == 0 {
            map.remove(&(i / 2));
        }
    }
    assert!(map.iter().all(|(k, v)| *v == k * 2));
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(v.len(), 10);
    assert_eq!(b.iter().sum::<u32>(), 300);
}

/// Running out of memory is an `AllocError`, and freeing recovers.
pub fn oom_then_recovery<A: Allocator + Copy>(a: A) {
    let layout = Layout::from_size_align(1024, 8).expect("layout");
    let mut live = Vec::new();
    while let Ok(block) = a.allocate(layout) {
        live.push(block.cast::<u8>());
        assert!(live.len() < 1 << 20, "the test arena is bounded");
    }
    assert!(!live.is_empty());
    for p in live.drain(..) {
        // SAFETY: live with `layout`.
        unsafe { a.deallocate(p, layout) };
    }
    let block = a.allocate(layout).expect("allocation after recovery");
    // SAFETY: live with `layout`.
    unsafe { a.deallocate(block.cast(), layout) };
}

/// Generates one `#[test]` per conformance check for a frontend. `$make` is an expression
/// evaluating to `(frontend, guard)`: the frontend value whose `&` is the allocator, and
/// whatever keeps its memory alive (dropped after the frontend).
#[macro_export]
macro_rules! allocator_conformance {
    ($make:expr) => {
        #[test]
        fn zero_size() {
            let (heap, _guard) = $make;
            $crate::conformance::zero_size(&heap);
        }
        #[test]
        fn zeroed_after_reuse() {
            let (heap, _guard) = $make;
            $crate::conformance::zeroed_after_reuse(&heap);
        }
        #[test]
        fn resize_keeps_contents() {
            let (heap, _guard) = $make;
            $crate::conformance::resize_keeps_contents(&heap);
        }
        #[test]
        fn collections() {
            let (heap, _guard) = $make;
            $crate::conformance::collections(&heap);
        }
        #[test]
        fn oom_then_recovery() {
            let (heap, _guard) = $make;
            $crate::conformance::oom_then_recovery(&heap);
        }
    };
}
