//! `Cached`: per-thread magazines over a shared locked heap. The policy here is a stand-in for
//! the size-class policy: power-of-two classes of 16 B .. 2 KiB served by a buddy.

use core::alloc::Layout;
use core::ptr::NonNull;
use std::alloc::GlobalAlloc;

use budalloc_buddy::Buddy;
use budalloc_core::{AllocError, Claim, FreeError, Inspect, RawAlloc, SizeClasses, Stats};
use budalloc_sync::{capacity, Cached, Locked};
use budalloc_testkit::Region;

/// The buddy, with its orders up to 2 KiB declared as size classes.
type PowerClasses = budalloc_testkit::PowerClasses<Buddy<16, { 1 << 16 }, 2>>;

/// A `Cached` over a fresh heap. Dropping the guard flushes this thread's cache and unbinds it
/// before the heap and its region go.
pub struct Guard<P: SizeClasses + 'static = PowerClasses> {
    cached: Cached<P>,
    shared: *mut Locked<P>,
    _region: Region,
}

impl<P: SizeClasses + 'static> Drop for Guard<P> {
    fn drop(&mut self) {
        self.cached.flush_thread().expect("cached objects go back");
        // SAFETY: `shared` came from `Box::into_raw` in `guard`, this thread's cache no longer
        // refers to it (flushed and unbound), and the tests spawn no thread that outlives it.
        drop(unsafe { Box::from_raw(self.shared) });
    }
}

impl<P: SizeClasses + 'static> Guard<P> {
    fn heap(&self) -> &Cached<P> {
        &self.cached
    }

    fn shared(&self) -> &Locked<P> {
        // SAFETY: the box lives until `drop`.
        unsafe { &*self.shared }
    }
}

/// A `Cached` over `policy` given a fresh region of `len` bytes.
fn guard<P: SizeClasses + Claim + 'static>(mut policy: P, len: usize) -> Guard<P> {
    let region = Region::new(len, 4096);
    let (ptr, len) = region.skewed(0);
    // SAFETY: the region is ours and outlives the heap (the guard drops the heap first).
    unsafe { policy.claim_raw(ptr, len) }.expect("claim");
    let shared = Box::into_raw(Box::new(Locked::new(policy)));
    // SAFETY: the box is freed only by the guard, after the thread's cache let go of it; no
    // other thread keeps a cache bound to it past the test (threads are joined and flush on
    // exit).
    let cached = Cached::new(unsafe { &*shared });
    Guard { cached, shared, _region: region }
}

pub fn cached(len: usize) -> Guard {
    guard(PowerClasses::new(Buddy::new()), len)
}

mod conformance {
    use allocator_api2::alloc::{AllocError, Allocator, Layout};
    use core::ptr::NonNull;

    /// `&Guard` allocates through its `Cached`.
    // SAFETY: forwarded to `&Cached`, an allocator.
    unsafe impl Allocator for super::Guard {
        fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
            self.heap().allocate(layout)
        }
        unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
            // SAFETY: forwarded from our caller.
            unsafe { self.heap().deallocate(ptr, layout) }
        }
        unsafe fn grow(&self, p: NonNull<u8>, o: Layout, n: Layout) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: forwarded from our caller.
            unsafe { self.heap().grow(p, o, n) }
        }
        unsafe fn shrink(&self, p: NonNull<u8>, o: Layout, n: Layout) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: forwarded from our caller.
            unsafe { self.heap().shrink(p, o, n) }
        }
    }

    budalloc_testkit::allocator_conformance!((
        super::cached(if cfg!(miri) { 64 * 1024 } else { 1 << 20 }),
        ()
    ));
}

/// A block handed from one thread to another.
struct Block(NonNull<u8>);

// SAFETY: the block is owned by whoever holds the `Block`; it moves with it.
unsafe impl Send for Block {}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

#[test]
fn a_free_then_alloc_reuses_the_cached_object_without_the_lock() {
    let guard = cached(256 * 1024);
    let heap = guard.heap();
    // SAFETY: non-zero size.
    let a = unsafe { heap.alloc(layout(64)) };
    assert!(!a.is_null());
    // SAFETY: live with `layout(64)`.
    unsafe { heap.dealloc(a, layout(64)) };
    // The lock is held by us now: a cached allocation must not need it.
    // SAFETY: non-zero size.
    let again = guard.shared().with(|_| unsafe { heap.alloc(layout(48)) });
    assert_eq!(again, a, "the object freed last comes back first");
    // SAFETY: live with `layout(48)`, which maps to the same class.
    unsafe { heap.dealloc(again, layout(48)) };
}

#[test]
fn a_double_free_into_the_magazine_is_reported() {
    let guard = cached(256 * 1024);
    let heap = guard.heap();
    let a = allocator_api2::alloc::Allocator::allocate(&heap, layout(32)).unwrap().cast::<u8>();
    // SAFETY: live with `layout(32)`.
    unsafe { allocator_api2::alloc::Allocator::deallocate(&heap, a, layout(32)) };
    let second = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: deliberately a double free: the magazine detects it.
        unsafe { allocator_api2::alloc::Allocator::deallocate(&heap, a, layout(32)) };
    }));
    let message = second.expect_err("double free must be reported");
    let text = message.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(text.contains("double free"), "{text}");
}

#[test]
fn a_resize_of_an_object_in_the_magazine_is_refused() {
    use allocator_api2::alloc::Allocator;
    let guard = cached(256 * 1024);
    let heap = guard.heap();
    let a = heap.allocate(layout(32)).unwrap().cast::<u8>();
    // SAFETY: live with `layout(32)`.
    unsafe { heap.deallocate(a, layout(32)) };
    for new in [layout(32), layout(1000)] {
        // SAFETY: deliberately a resize of a freed block: the magazine holds it, and says so.
        assert!(unsafe { heap.grow(a, layout(32), new) }.is_err(), "grow to {new:?}");
    }
    // SAFETY: as above.
    assert!(unsafe { heap.shrink(a, layout(32), layout(16)) }.is_err());
    // The object is still cached once: it comes back once, then another one.
    let b = heap.allocate(layout(32)).unwrap().cast::<u8>();
    let c = heap.allocate(layout(32)).unwrap().cast::<u8>();
    assert_eq!(b, a);
    assert_ne!(c, a);
    for p in [b, c] {
        // SAFETY: live with `layout(32)`.
        unsafe { heap.deallocate(p, layout(32)) };
    }
}

/// A shared heap over a fresh 64 KiB region of its own, for magazines driven directly (not a
/// thread's cache). Bind the pair in this order: the heap drops first.
fn shared_heap() -> (Region, Locked<PowerClasses>) {
    let region = Region::new(64 * 1024, 4096);
    let (ptr, len) = region.skewed(0);
    let mut policy = PowerClasses::new(Buddy::new());
    // SAFETY: the region is ours and outlives the heap (the caller drops the heap first).
    unsafe { policy.claim_raw(ptr, len) }.expect("claim");
    (region, Locked::new(policy))
}

#[test]
fn every_object_in_a_magazine_is_known_to_it_and_no_other_is() {
    use budalloc_sync::{Magazines, MAGAZINE};
    // Magazines driven directly over a heap of their own (not a thread's cache), filled and
    // emptied in a scrambled order next to an exact model of the magazine (newest last; a free
    // into a full one gives the oldest half back first). After every step each object the model
    // says is cached is refused as a double free (the filter counts it), every live one is taken
    // (a filter hit on a bucket another object shares is no false report), and the filter
    // matches the objects.
    let (_region, shared) = shared_heap();
    let mut magazines = Magazines::new();
    let l = layout(64);
    // Whole refills, all handed out: the magazine is empty, and every object it will hold is
    // one the model saw freed.
    let start = if cfg!(miri) { 2 * MAGAZINE } else { 8 * MAGAZINE };
    let mut live: Vec<NonNull<u8>> =
        (0..start).map(|_| magazines.allocate(&shared, l).expect("a cached class").unwrap().cast()).collect();
    assert_eq!(magazines.cached(), 0);
    let mut cached: Vec<NonNull<u8>> = Vec::new();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut flushes = 0;
    // Three frees in four: the magazine fills and gives its oldest half back again and again.
    // Under Miri, fewer steps, still past a flush (the magazine grows by half an object a step
    // on average: three magazines' worth of steps), and the invariants and every cached and
    // live object checked only every eighth step and after each flush (natively, after every
    // step).
    for step in 0..if cfg!(miri) { 3 * MAGAZINE } else { 600 } {
        if live.is_empty() && cached.is_empty() {
            break;
        }
        let mut flushed = false;
        if !live.is_empty() && (cached.is_empty() || next(4) != 0) {
            let p = live.swap_remove(next(live.len()));
            if cached.len() == capacity(64) {
                cached.drain(..capacity(64) / 2);
                flushes += 1;
                flushed = true;
            }
            // SAFETY: live with `l`, not used afterwards.
            let freed = unsafe { magazines.deallocate(&shared, p, l) }.expect("a cached class");
            assert_eq!(freed, Ok(()), "step {step}: a live object is taken");
            cached.push(p);
        } else {
            let p = magazines.allocate(&shared, l).expect("a cached class").unwrap().cast();
            assert_eq!(cached.pop(), Some(p), "step {step}: the newest cached object comes back");
            live.push(p);
        }
        assert_eq!(magazines.cached(), cached.len(), "step {step}");
        if cfg!(miri) && step % 8 != 0 && !flushed {
            continue;
        }
        magazines.check_invariants().unwrap();
        for &p in &cached {
            // SAFETY: deliberately a double free of a cached object: refused, nothing changes.
            let again = unsafe { magazines.deallocate(&shared, p, l) }.expect("a cached class");
            assert!(matches!(again, Err(FreeError::DoubleFree { .. })), "step {step}: {again:?}");
        }
        for &p in &live {
            assert!(!magazines.holds::<PowerClasses>(p, l), "step {step}: a live object is not cached");
        }
    }
    assert!(flushes > 0, "the magazine never filled");
    for p in live {
        // SAFETY: live with `l`.
        unsafe { magazines.deallocate(&shared, p, l) }.expect("a cached class").unwrap();
    }
    magazines.flush(&shared).unwrap();
    magazines.check_invariants().unwrap();
    assert_eq!(magazines.cached(), 0);
    assert_eq!(shared.stats().allocated, 0);
}

#[test]
fn a_moving_resize_whose_free_is_refused_reports_it_and_keeps_the_old_block() {
    use budalloc_sync::Magazines;
    // `Magazines::resize` itself: the 64-byte class's magazine is full, a foreign pointer the
    // oldest of its objects; a move to another class frees the old object into it, which gives
    // the oldest half back, and the shared heap rejects the foreign pointer.
    let (_region, shared) = shared_heap();
    let mut magazines = Magazines::new();
    let l = layout(64);
    let mut foreign = [0u64; 8];
    let foreign = NonNull::from(&mut foreign).cast::<u8>();
    let mut objects: Vec<NonNull<u8>> = (0..capacity(64))
        .map(|_| magazines.allocate(&shared, l).expect("a cached class").unwrap().cast())
        .collect();
    let live = objects.pop().expect("objects");
    // SAFETY: a fresh 64-byte object, ours.
    unsafe { live.write_bytes(0x5A, 64) };
    // SAFETY: deliberately a foreign pointer: accepted into the magazine, rejected when the
    // oldest half goes back.
    unsafe { magazines.deallocate(&shared, foreign, l) }.expect("a cached class").unwrap();
    for p in objects {
        // SAFETY: live with `l`.
        unsafe { magazines.deallocate(&shared, p, l) }.expect("a cached class").unwrap();
    }
    assert_eq!(magazines.cached(), capacity(64));
    let new = layout(200);
    // SAFETY: `live` is live with `l`.
    let moved = unsafe { magazines.resize(&shared, live, l, new) }.expect("both classes cached");
    assert!(
        matches!(moved, Err(AllocError::InvalidBlock(FreeError::ForeignPointer { addr })) if addr == foreign.addr().get()),
        "{moved:?}"
    );
    assert!(!magazines.holds::<PowerClasses>(live, l), "the old object stays the caller's");
    // SAFETY: `live` is still ours, 64 bytes.
    assert!(unsafe { core::slice::from_raw_parts(live.as_ptr(), 64) }.iter().all(|&b| b == 0x5A));
    // The half given back stays given back (the foreign pointer dropped); the new object is
    // back in its magazine, with the rest of its class's refill.
    let refill = capacity(256) / 2;
    assert_eq!(magazines.cached(), capacity(64) - capacity(64) / 2 + refill);
    magazines.check_invariants().unwrap();
    // SAFETY: live with `l`.
    unsafe { magazines.deallocate(&shared, live, l) }.expect("a cached class").unwrap();
    magazines.flush(&shared).unwrap();
    assert_eq!(shared.stats().allocated, 0);
}

/// A resize that moves a block out of (or into) the classes checks the old block first: a freed
/// or foreign block is refused before anything is allocated, copied or freed.
#[test]
fn a_moving_resize_of_a_block_that_is_not_live_is_refused_before_copying() {
    use allocator_api2::alloc::Allocator;
    let guard = cached(256 * 1024);
    let heap = guard.heap();
    let big = layout(8 * 1024); // above the classes: a block of the shared policy
    let kept = heap.allocate(big).unwrap().cast::<u8>();
    let freed = heap.allocate(big).unwrap().cast::<u8>();
    // SAFETY: live with `big`.
    unsafe { heap.deallocate(freed, big) };
    // A dangling address: reading it would be caught by Miri (and fault natively).
    let wild = NonNull::new(core::ptr::without_provenance_mut::<u8>(0x1000)).unwrap();
    let before = guard.shared().stats();
    for (ptr, expected) in [(freed, "double free"), (wild, "outside every arena")] {
        for new in [layout(1024), layout(16 * 1024)] {
            let result = if new.size() < big.size() {
                // SAFETY: deliberately a resize of a block that is not live: it must be refused.
                unsafe { heap.shrink(ptr, big, new) }
            } else {
                // SAFETY: as above.
                unsafe { heap.grow(ptr, big, new) }
            };
            assert!(result.is_err(), "a resize of a block that is not live must be refused");
            // What a checked free says of it (the allocator-api2 error carries no detail).
            let text = guard.shared().with(|a| a.validate(ptr, big)).unwrap_err().to_string();
            assert!(text.contains(expected), "{text}");
            assert_eq!(guard.shared().stats(), before, "nothing allocated, copied or freed");
        }
    }
    // SAFETY: live with `big`.
    unsafe { heap.deallocate(kept, big) };
}

/// Size classes up to 128 KiB over a buddy: the classes from `CACHED_CLASSES` on get no
/// magazines, so their objects are the shared policy's, as blocks above every class are.
type WideClasses = budalloc_classes::Classes<Buddy<16, { 1 << 20 }, 2>, { 128 * 1024 }>;

/// An object of a class without magazines is the shared policy's: a resize of it is checked
/// before anything is allocated, copied or freed, as a block above every class is.
#[test]
fn a_resize_of_an_object_of_an_uncached_class_that_is_not_live_is_refused() {
    use allocator_api2::alloc::Allocator;
    let guard = guard(WideClasses::new(Buddy::new()), 4 << 20);
    let heap = guard.heap();
    let big = layout(96 * 1024);
    let class = <WideClasses as SizeClasses>::class_of(big).expect("a class");
    assert!(class >= budalloc_sync::CACHED_CLASSES, "class {class} has magazines");
    let kept = heap.allocate(big).unwrap().cast::<u8>();
    let freed = heap.allocate(big).unwrap().cast::<u8>();
    // SAFETY: live with `big`.
    unsafe { heap.deallocate(freed, big) };
    let wild = NonNull::new(core::ptr::without_provenance_mut::<u8>(0x1000)).unwrap();
    let before = guard.shared().stats();
    for ptr in [freed, wild] {
        // Into a cached class, into another uncached class, within its own class.
        for new in [layout(64), layout(120 * 1024), layout(90 * 1024)] {
            // SAFETY: deliberately a resize of a block that is not live: it must be refused.
            let result = unsafe { heap.shrink(ptr, big, new) };
            assert!(result.is_err(), "shrink of {ptr:?} to {new:?} must be refused");
            assert_eq!(guard.shared().stats(), before, "nothing allocated, copied or freed");
        }
    }
    // SAFETY: live with `big`.
    unsafe { heap.deallocate(kept, big) };
}

/// A refill that finds damaged metadata after it took some objects reports it at once, rather
/// than serve from what it took and leave the damage for a later call to find.
#[test]
fn a_refill_that_meets_damaged_metadata_reports_it() {
    use allocator_api2::alloc::Allocator;
    let guard = cached(64 * 1024);
    let l = layout(1024);
    // Every 1 KiB block taken from the shared heap, two given back: `a` into its free list,
    // `b` parked (handed out first by the next allocation).
    let mut blocks = guard.shared().with(|s| {
        let mut blocks = Vec::new();
        while let Ok(block) = s.allocate(l) {
            blocks.push(block.cast::<u8>());
        }
        blocks
    });
    let (b, a) = (blocks.pop().unwrap(), blocks.pop().unwrap());
    for p in [a, b] {
        // SAFETY: live with `l`, ours.
        guard.shared().with(|s| unsafe { s.try_deallocate(p, l) }).unwrap();
    }
    let seal = a.as_ptr().wrapping_add(8);
    // SAFETY: the header of the free block `a`, in the region the heap manages.
    unsafe { *seal ^= 0x10 };
    // The refill takes `b`, then meets `a`'s header.
    assert!(guard.heap().allocate(l).is_err(), "damaged metadata must be reported");
    // SAFETY: restores the header.
    unsafe { *seal ^= 0x10 };
    let again = guard.heap().allocate(l).expect("the damage repaired").cast::<u8>();
    blocks.push(again);
    for p in blocks {
        // SAFETY: live with `l`.
        unsafe { guard.heap().deallocate(p, l) };
    }
}

#[test]
fn a_foreign_pointer_is_reported_when_its_magazine_is_flushed() {
    let guard = cached(256 * 1024);
    let heap = guard.heap();
    let mut foreign = [0u64; 8];
    let ptr = NonNull::from(&mut foreign).cast::<u8>();
    // SAFETY: deliberately a foreign pointer: accepted into the magazine (which never touches
    // the memory), rejected when the magazine goes back.
    unsafe { allocator_api2::alloc::Allocator::deallocate(&heap, ptr, Layout::new::<[u64; 8]>()) }
    let error = heap.flush_thread().expect_err("the shared heap rejects it");
    assert!(matches!(error, FreeError::ForeignPointer { .. }), "{error}");
}

#[test]
fn a_resize_whose_free_meets_a_foreign_pointer_in_the_full_magazine_keeps_the_old_block() {
    use allocator_api2::alloc::Allocator;
    let guard = cached(256 * 1024);
    let heap = guard.heap();
    let l = Layout::new::<[u64; 8]>();
    let live = heap.allocate(l).unwrap().cast::<u8>();
    // SAFETY: a fresh 64-byte block, ours.
    unsafe { live.write_bytes(0x5A, 64) };
    // The 64-byte class's magazine, full, with a foreign pointer the oldest of all.
    let mut foreign = [0u64; 8];
    let others: Vec<NonNull<u8>> = (1..capacity(64)).map(|_| heap.allocate(l).unwrap().cast()).collect();
    // SAFETY: deliberately a foreign pointer: accepted into the magazine, rejected when the
    // oldest half goes back.
    unsafe { heap.deallocate(NonNull::from(&mut foreign).cast(), l) };
    for p in others {
        // SAFETY: live with `l`.
        unsafe { heap.deallocate(p, l) };
    }
    // A move into another class frees `live` into that full magazine: the shared heap rejects
    // the foreign pointer, and the resize fails with the old block still the caller's.
    // SAFETY: `live` is live with `l`; the new layout is larger.
    let grown = unsafe { heap.grow(live, l, Layout::from_size_align(200, 8).unwrap()) };
    assert!(grown.is_err(), "{grown:?}");
    // SAFETY: `live` is still ours, 64 bytes.
    assert!(unsafe { core::slice::from_raw_parts(live.as_ptr(), 64) }.iter().all(|&b| b == 0x5A));
    // SAFETY: live with `l`.
    unsafe { heap.deallocate(live, l) };
    heap.flush_thread().unwrap();
    guard.shared().with(|p| {
        p.flush();
        assert_eq!(p.stats().allocated, 0, "the new object went back, and the old one");
        p.0.check_invariants().unwrap();
    });
}

#[test]
fn magazines_are_bounded_and_refill_in_batches() {
    let guard = cached(1 << 20);
    let heap = guard.heap();
    let before = guard.shared().stats();
    let mut blocks = Vec::new();
    let (cap, batch) = (capacity(64), capacity(64) / 2);
    for _ in 0..3 * cap {
        // SAFETY: non-zero size.
        blocks.push(unsafe { heap.alloc(layout(64)) });
    }
    // At most one batch beyond what the thread holds sits in its magazine.
    let taken = guard.shared().stats().allocated - before.allocated;
    assert!((3 * cap * 64..=(3 * cap + batch) * 64).contains(&taken), "{taken}");
    for block in blocks {
        // SAFETY: live with `layout(64)`.
        unsafe { heap.dealloc(block, layout(64)) };
    }
    // The magazine keeps at most its capacity; the rest went back.
    let kept = guard.shared().stats().allocated - before.allocated;
    assert!(kept <= cap * 64, "{kept}");
    heap.flush_thread().unwrap();
    guard.shared().with(|p| {
        p.flush();
        assert_eq!(p.stats(), before);
        p.0.check_invariants().unwrap();
    });
}

/// Real size classes, over a 64 KiB buddy.
type Slabs = budalloc_classes::Classes<Buddy<16, { 1 << 16 }, 2>>;

/// Takes an object of every class the shared policy's free memory allows and frees it there:
/// each class then keeps an empty slab, out of the buddy's reach.
fn fill_and_free_every_class(guard: &Guard<Slabs>) {
    guard.shared().with(|p| {
        let objects: Vec<_> = (0..Slabs::CLASSES)
            .filter_map(|c| {
                let l = Slabs::class_layout(c);
                p.allocate(l).ok().map(|o| (o, l))
            })
            .collect();
        assert!(objects.len() > 2);
        for (object, l) in objects {
            // SAFETY: live with `l`.
            unsafe { p.try_deallocate(object.cast(), l) }.unwrap();
        }
    });
}

#[test]
fn an_allocation_out_of_memory_takes_back_the_empty_slabs_the_shared_classes_keep() {
    let guard = guard(Slabs::new(Buddy::new()), 64 * 1024);
    let heap = guard.heap();
    let largest = guard.shared().with(|p| p.backend().stats().largest_free);
    // Objects of every class taken and freed on the shared policy: each class keeps its empty
    // slab, out of the buddy's reach.
    fill_and_free_every_class(&guard);
    guard.shared().with(|p| {
        assert_eq!(p.stats().allocated, 0);
        assert!(p.backend().stats().largest_free < largest, "the cached slabs split the largest block");
    });
    // The request finds the heap short and the magazines empty; the shared policy gives its
    // empty slabs back and the request is served.
    // SAFETY: non-zero size.
    let big = NonNull::new(unsafe { heap.alloc(layout(largest)) }).expect("the empty slabs went back");
    // SAFETY: live with this layout.
    unsafe { heap.dealloc(big.as_ptr(), layout(largest)) };
    // The same for a block of the shared policy grown by `realloc`: 2 KiB (no class), with the
    // empty slabs back in the way.
    // SAFETY: non-zero size.
    let small = NonNull::new(unsafe { heap.alloc(layout(2048)) }).expect("room for 2 KiB");
    fill_and_free_every_class(&guard);
    let grown = guard.shared().with(|p| p.backend().stats().largest_free);
    assert!(grown < largest / 2, "the empty slabs split the free memory: {grown} of {largest}");
    // SAFETY: live with `layout(2048)`; a larger size.
    let moved = unsafe { heap.realloc(small.as_ptr(), layout(2048), largest / 2) };
    let moved = NonNull::new(moved).expect("the empty slabs went back for the realloc");
    // SAFETY: live with this layout.
    unsafe { heap.dealloc(moved.as_ptr(), layout(largest / 2)) };
    heap.flush_thread().unwrap();
    guard.shared().with(|p| {
        p.flush();
        assert!(p.backend_mut().is_pristine());
    });
}

#[test]
fn an_allocation_out_of_memory_takes_back_the_threads_magazines_first() {
    let guard = cached(64 * 1024);
    let before = guard.shared().stats();
    let heap = guard.heap();
    // Fill the heap with 1 KiB blocks.
    let mut blocks = Vec::new();
    // SAFETY: non-zero size.
    while let Some(block) = NonNull::new(unsafe { heap.alloc(layout(1024)) }) {
        blocks.push(block);
    }
    // Two buddies go into this thread's magazine, not back to the heap.
    let i = blocks
        .iter()
        .position(|b| b.addr().get() % 2048 == 0 && blocks.contains(&b.map_addr(|a| a.saturating_add(1024))))
        .expect("a pair of buddies");
    let pair = [blocks[i], blocks[i].map_addr(|a| a.saturating_add(1024))];
    blocks.retain(|b| !pair.contains(b));
    let full = guard.shared().stats();
    assert!(full.largest_free < 2048, "{full:?}");
    for block in pair {
        // SAFETY: live with `layout(1024)`.
        unsafe { heap.dealloc(block.as_ptr(), layout(1024)) };
    }
    assert_eq!(guard.shared().stats(), full, "the heap itself stays full");
    // A 2 KiB request finds the heap full, gives the magazine back (the buddies merge) and gets
    // their memory.
    // SAFETY: non-zero size.
    let big = NonNull::new(unsafe { heap.alloc(layout(2048)) }).expect("the cached memory serves it");
    assert_eq!(big, pair[0]);
    let live = blocks.into_iter().map(|b| (b, layout(1024)));
    free_all_back_to(&guard, before, live.chain([(big, layout(2048))]));
}

/// Frees `blocks` (live with their layouts) through the guard's cache, flushes it and the shared
/// policy, and expects the shared heap's figures `before` and its invariants.
fn free_all_back_to(guard: &Guard, before: Stats, blocks: impl IntoIterator<Item = (NonNull<u8>, Layout)>) {
    for (block, l) in blocks {
        // SAFETY: the callers pass live blocks with their layouts.
        unsafe { guard.heap().dealloc(block.as_ptr(), l) };
    }
    guard.heap().flush_thread().unwrap();
    guard.shared().with(|p| {
        p.flush();
        assert_eq!(p.stats(), before);
        p.0.check_invariants().unwrap();
    });
}

#[test]
fn a_resize_of_a_large_block_out_of_memory_takes_back_the_threads_magazines() {
    let guard = cached(64 * 1024);
    let before = guard.shared().stats();
    let heap = guard.heap();
    // A block above the classes (up to 2 KiB), then the rest of the heap in 1 KiB blocks.
    let (old, new) = (layout(4096), layout(8192));
    assert!(PowerClasses::class_of(old).is_none() && PowerClasses::class_of(new).is_none());
    // SAFETY: non-zero size.
    let big = NonNull::new(unsafe { heap.alloc(old) }).unwrap();
    let mut blocks = Vec::new();
    // SAFETY: non-zero size.
    while let Some(block) = NonNull::new(unsafe { heap.alloc(layout(1024)) }) {
        blocks.push(block);
    }
    // Eight 1 KiB blocks that make an 8 KiB buddy block go into this thread's magazine.
    let run = |b: NonNull<u8>| (0..8).map(move |k| b.map_addr(|a| a.saturating_add(k * 1024)));
    let first = *blocks
        .iter()
        .find(|b| b.addr().get() % 8192 == 0 && run(**b).all(|p| blocks.contains(&p)))
        .expect("an 8 KiB run of 1 KiB blocks");
    blocks.retain(|b| !run(first).any(|p| p == *b));
    for block in run(first) {
        // SAFETY: live with `layout(1024)`.
        unsafe { heap.dealloc(block.as_ptr(), layout(1024)) };
    }
    assert!(guard.shared().stats().largest_free < 8192, "the heap itself stays full");
    // The shared policy cannot grow the block in place nor find 8 KiB: the magazine goes back
    // (the buddies merge) and the moving resize gets their memory, as an allocation would.
    // SAFETY: live with `old`.
    let grown = NonNull::new(unsafe { heap.realloc(big.as_ptr(), old, new.size()) })
        .expect("the memory cached by this thread serves the resize");
    assert_eq!(grown, first);
    let live = blocks.into_iter().map(|b| (b, layout(1024)));
    free_all_back_to(&guard, before, live.chain([(grown, new)]));
}

#[test]
fn threads_share_the_heap_and_drain_their_caches_on_exit() {
    let guard = cached(1 << 20);
    let before = guard.shared().stats();
    let heap = guard.heap();
    let (tx, rx) = std::sync::mpsc::channel::<(Block, usize)>();
    let rounds = if cfg!(miri) { 40 } else { 4000 };
    std::thread::scope(|s| {
        // A producer allocates; a consumer frees what it receives (cross-thread frees).
        s.spawn(move || {
            for i in 0..rounds {
                let size = 16 << (i % 6);
                // SAFETY: non-zero size.
                let p = NonNull::new(unsafe { heap.alloc(layout(size)) }).expect("allocation");
                // SAFETY: a fresh block of `size` bytes.
                unsafe { p.write_bytes(i as u8, size) };
                tx.send((Block(p), size)).unwrap();
            }
            heap.flush_thread().unwrap();
        });
        s.spawn(move || {
            for (Block(p), size) in rx {
                // SAFETY: the producer filled the block and gave it to us.
                let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), size) };
                assert!(bytes.iter().all(|&b| b == bytes[0]), "contents kept across threads");
                // SAFETY: received once, live with `layout(size)`, ours now.
                unsafe { heap.dealloc(p.as_ptr(), layout(size)) };
            }
            heap.flush_thread().unwrap();
        });
    });
    guard.shared().with(|p| {
        p.flush();
        assert_eq!(p.stats(), before, "nothing lost across threads");
    });
}
