//! `StaticHeap` outside a `static`: it serves where it was first used, and a heap moved after
//! that refuses to serve rather than hand out the memory it used to have.

use core::alloc::{GlobalAlloc, Layout};

use allocator_api2::alloc::Allocator;
use budalloc_buddy::Buddy;
use budalloc_sync::{Moved, StaticHeap};

type Heap = StaticHeap<Buddy<16, 4096>, 8192>;

fn range_of(heap: &Heap) -> core::ops::Range<usize> {
    let start = core::ptr::from_ref(heap).addr();
    start..start + core::mem::size_of::<Heap>()
}

/// Allocates a block from `heap`, checks it lies inside the heap, and frees it.
fn serves_from_inside(heap: &Heap) {
    let layout = Layout::from_size_align(64, 8).unwrap();
    let block = heap.heap().allocate(layout).unwrap().cast::<u8>();
    assert!(range_of(heap).contains(&block.addr().get()));
    // SAFETY: live with `layout`.
    unsafe { heap.heap().deallocate(block, layout) };
}

#[test]
fn blocks_lie_inside_the_heap_that_serves_them() {
    serves_from_inside(&Box::new(StaticHeap::new(Buddy::new())));
}

#[test]
fn an_unused_heap_may_move() {
    let boxed: Box<Heap> = Box::new(StaticHeap::new(Buddy::new()));
    let moved: Heap = *boxed;
    serves_from_inside(&moved);
}

/// Safe code only: the policy claimed the box's memory, and the box is freed by the move. The
/// moved heap must not hand out blocks there.
#[test]
fn a_heap_moved_after_its_first_use_refuses_to_serve() {
    let boxed: Box<Heap> = Box::new(StaticHeap::new(Buddy::new()));
    let _ = boxed.stats(); // the first use claims the array where it lies now
    let claimed_at = range_of(&boxed).start;
    let moved: Heap = *boxed;
    let Err(Moved { claimed_at: was, now_at }) = moved.try_heap() else {
        panic!("a moved heap must refuse to serve")
    };
    assert!(was >= claimed_at && was < claimed_at + core::mem::size_of::<Heap>());
    assert!(range_of(&moved).contains(&now_at));
    let layout = Layout::from_size_align(64, 8).unwrap();
    // SAFETY: a valid layout; null is the answer expected.
    assert!(unsafe { moved.alloc(layout) }.is_null());
    // SAFETY: as above.
    assert!(unsafe { moved.alloc_zeroed(layout) }.is_null());
}

#[test]
#[should_panic(expected = "it must not move")]
fn heap_of_a_moved_heap_panics() {
    let boxed: Box<Heap> = Box::new(StaticHeap::new(Buddy::new()));
    let _ = boxed.stats();
    let moved: Heap = *boxed;
    let _ = moved.heap();
}
