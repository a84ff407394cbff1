//! Unit tests of the buddy mechanism that need the crate's private items.

use core::alloc::Layout;
use core::mem::MaybeUninit;

extern crate std;
use std::boxed::Box;
use std::vec::Vec;

use budalloc_core::{Inspect, RawAlloc};

use crate::Buddy;

fn region(len: usize) -> &'static mut [MaybeUninit<u8>] {
    // 4 KiB aligned so that offsets are predictable.
    let v: Vec<MaybeUninit<u8>> = std::vec![MaybeUninit::uninit(); len + 4096];
    let leaked = Box::leak(v.into_boxed_slice());
    let skip = leaked.as_ptr().align_offset(4096);
    &mut leaked[skip..skip + len]
}

#[test]
fn smoke_alloc_free_restores_seeding() {
    let mut heap: Buddy<16, 4096> = Buddy::new();
    heap.claim(region(16 * 1024)).unwrap();
    heap.check_invariants().unwrap();
    let mut blocks = Vec::new();
    for size in [1, 16, 17, 100, 1000, 4096, 3] {
        let layout = Layout::from_size_align(size, 1).unwrap();
        let b = heap.allocate(layout).unwrap();
        heap.check_invariants().unwrap();
        blocks.push((b, layout));
    }
    for (b, layout) in blocks {
        unsafe { heap.try_deallocate(b.cast(), layout) }.unwrap();
        heap.check_invariants().unwrap();
    }
    assert!(heap.is_pristine());
    std::println!("{}", heap.map(256));
}
