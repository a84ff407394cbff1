//! F1 through the frontend, `local_ops`: drives `&Local<Buddy<16, 4096, 2, EXACT>>`, or (flavour
//! bit 1) `&Local<Classes<Buddy<16, 64 KiB, 2, EXACT>, 1 KiB>>` (`classes_ops`'s narrow shape: size
//! classes over the buddy, whose slabs are reused across classes) as an allocator-api2 `Allocator` (allocate, allocate_zeroed, grow, grow_zeroed, shrink, deallocate,
//! zero sizes included, alignment changes on resize, layouts anywhere in the "fits" range) against
//! a shadow model with fill patterns. Checked after every call: alignment, length, inside a
//! claimed arena, disjoint from every live block, zeroed memory is zero (also when the block was
//! used before), contents kept across grow and shrink, a failure only when the oracle allows it
//! (and then the old block intact), `check_invariants()`, and the allocated bytes. At the end
//! everything is freed and the heap must be pristine.
#![no_main]

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::ptr::NonNull;

use allocator_api2::alloc::Allocator;
use arbitrary::Arbitrary;
use budalloc_buddy::Buddy;
use budalloc_core::{Claim, Inspect, RawAlloc};
use budalloc_fuzz::{
    claim_into, class_geometry, geometry, record_block, Arenas, ClassHeap, Heap, Memory, Scale, BUDDY_SCALE,
    NARROW,
};
use budalloc_sync::Local;
use budalloc_testkit::{Geometry, Live};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    arenas: Arenas,
    /// Bit 0: exact fit for the buddy; bit 1: size classes over it.
    flavour: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Alloc {
        size: usize,
        align_log2: u8,
        zeroed: bool,
    },
    /// Free live block `pick` with a layout whose size `fit` picks in the fitting range.
    Free {
        pick: usize,
        fit: usize,
    },
    /// Grow live block `pick` (old layout picked by `fit`) by `size` bytes; `align_log2` changes
    /// the alignment.
    Grow {
        pick: usize,
        fit: usize,
        size: usize,
        align_log2: Option<u8>,
        zeroed: bool,
    },
    /// Shrink live block `pick` (old layout picked by `fit`) to `size % (old + 1)` bytes.
    Shrink {
        pick: usize,
        fit: usize,
        size: usize,
        align_log2: Option<u8>,
    },
}

fuzz_target!(|input: Input| {
    let (limit, max, max_region) = NARROW;
    let classes = Scale { small: limit, max };
    match input.flavour & 3 {
        0 => run(&input, Heap::<false>::new(), input.arenas.make(), geometry(false), BUDDY_SCALE, |h| {
            h.is_pristine()
        }),
        1 => run(&input, Heap::<true>::new(), input.arenas.make(), geometry(true), BUDDY_SCALE, |h| {
            h.is_pristine()
        }),
        2 => {
            let heap = ClassHeap::<{ NARROW.0 }, { NARROW.1 }, false>::new(Buddy::new());
            let memory = input.arenas.make_in(max_region, max);
            run(&input, heap, memory, class_geometry(max), classes, |h| h.backend_mut().is_pristine())
        }
        _ => {
            let heap = ClassHeap::<{ NARROW.0 }, { NARROW.1 }, true>::new(Buddy::new());
            let memory = input.arenas.make_in(max_region, max);
            run(&input, heap, memory, class_geometry(max), classes, |h| h.backend_mut().is_pristine())
        }
    }
});

/// The shadow model: live blocks in allocation order (zero-size ones included) and the address
/// ranges of the non-empty ones.
struct Model {
    geometry: Geometry,
    regions: Vec<(usize, usize)>,
    live: Vec<Live>,
    ranges: BTreeMap<usize, usize>,
    next_fill: u8,
}

impl Model {
    /// Checks a block just returned for `layout` and records it, filled with a fresh byte.
    fn insert(&mut self, block: NonNull<[u8]>, layout: Layout, zeroed_from: Option<usize>) {
        let ptr = block.cast::<u8>();
        let (addr, len) = (ptr.addr().get(), block.len());
        assert_eq!(addr % layout.align(), 0, "block {addr:#x} not aligned to {}", layout.align());
        assert!(len >= layout.size(), "block of {len} bytes for a request of {}", layout.size());
        if layout.size() == 0 {
            assert_eq!(len, 0, "a zero-size request gets an empty block");
        } else {
            if let Ok(block) = self.geometry.expect(layout.size(), layout.align()) {
                if let Some(expected) = self.geometry.returned(layout.size(), block) {
                    assert_eq!(len as u128, expected, "returned length for {layout:?}");
                }
            }
            record_block(&mut self.ranges, &self.regions, addr, len);
        }
        if let Some(from) = zeroed_from {
            // SAFETY: the block is valid for reads of `len` bytes; the allocator initialised
            // `from..len` (zeroed) and the caller checked or refilled `..from`.
            let bytes = unsafe { std::slice::from_raw_parts(ptr.as_ptr(), len) };
            if let Some(i) = bytes[from.min(len)..].iter().position(|&b| b != 0) {
                panic!(
                    "zeroed block {addr:#x}+{len} ({layout:?}): byte {} is {:#04x}",
                    from + i,
                    bytes[from + i]
                );
            }
        }
        self.next_fill = self.next_fill.wrapping_add(1).max(1);
        // SAFETY: the block is valid for writes of `len >= layout.size()` bytes.
        unsafe { ptr.as_ptr().write_bytes(self.next_fill, layout.size()) };
        self.live.push(Live { ptr, layout, len, fill: self.next_fill });
    }

    /// Takes live block number `pick % len` out of the model, checking its contents.
    fn take(&mut self, pick: usize) -> Option<Live> {
        if self.live.is_empty() {
            return None;
        }
        let live = self.live.swap_remove(pick % self.live.len());
        live.verify();
        if live.len > 0 {
            self.ranges.remove(&live.ptr.addr().get());
        }
        Some(live)
    }

    /// Puts a block back (a failed resize left it in place); its contents must be intact.
    fn put_back(&mut self, live: Live) {
        live.verify();
        if live.len > 0 {
            self.ranges.insert(live.ptr.addr().get(), live.ptr.addr().get() + live.len);
        }
        self.live.push(live);
    }

    /// Bytes the policy holds for the live blocks.
    fn bytes(&self) -> usize {
        self.live.iter().map(|l| l.len).sum()
    }
}

/// A layout that fits `live`: its alignment, a size between the requested one and the length.
fn fitting(live: &Live, fit: usize) -> Layout {
    let size = live.layout.size() + fit % (live.len - live.layout.size() + 1);
    Layout::from_size_align(size, live.layout.align()).expect("a size up to the block length is valid")
}

/// Whether a failed request for `layout` was allowed: the oracle refuses it, or no free block is
/// as large as the block it needs.
fn failure_allowed<P: RawAlloc>(local: &Local<P>, geometry: &Geometry, layout: Layout) -> bool {
    match geometry.expect(layout.size(), layout.align()) {
        Err(_) => true,
        Ok(block) => {
            let largest = local.with(|heap| heap.stats().largest_free).expect("not re-entered");
            (largest as u128) < block
        }
    }
}

/// Runs `input` on `heap` over `memory`, which the oracle sees as `geometry`, with requests
/// shaped by `scale`; at the end, after freeing everything and flushing, `pristine` must hold.
fn run<P: RawAlloc + Inspect + Claim>(
    input: &Input,
    mut heap: P,
    memory: Memory,
    geometry: Geometry,
    scale: Scale,
    pristine: impl FnOnce(&mut P) -> bool,
) {
    let claimed = claim_into(&mut heap, &memory);
    let mut local = Local::new(heap);
    let mut model = Model {
        geometry,
        regions: claimed.iter().map(|&(p, l)| (p.addr(), l)).collect(),
        live: Vec::new(),
        ranges: BTreeMap::new(),
        next_fill: 0,
    };
    {
        let a = &local;
        for op in &input.ops {
            match *op {
                Op::Alloc { size: s, align_log2: al, zeroed } => {
                    let Ok(layout) =
                        Layout::from_size_align(scale.size(s), 1 << scale.align_log2(al).min(40))
                    else {
                        continue;
                    };
                    let result = if zeroed { a.allocate_zeroed(layout) } else { a.allocate(layout) };
                    match result {
                        Ok(block) => model.insert(block, layout, zeroed.then_some(0)),
                        Err(_) => {
                            assert!(failure_allowed(a, &geometry, layout), "allocation of {layout:?} failed")
                        }
                    }
                }
                Op::Free { pick, fit } => {
                    if let Some(live) = model.take(pick) {
                        // SAFETY: the block is live (the model owns it) and the layout fits it.
                        unsafe { a.deallocate(live.ptr, fitting(&live, fit)) };
                    }
                }
                Op::Grow { pick, fit, size: s, align_log2: al, zeroed } => {
                    let Some(live) = model.take(pick) else { continue };
                    let old = fitting(&live, fit);
                    let align = al.map_or(old.align(), |al| 1 << scale.align_log2(al).min(40));
                    let Some(new_size) = old.size().checked_add(scale.size(s)) else {
                        model.put_back(live);
                        continue;
                    };
                    let Ok(new) = Layout::from_size_align(new_size, align) else {
                        model.put_back(live);
                        continue;
                    };
                    // SAFETY: the block is live, `old` fits it, `new.size() >= old.size()`.
                    let result = unsafe {
                        if zeroed {
                            a.grow_zeroed(live.ptr, old, new)
                        } else {
                            a.grow(live.ptr, old, new)
                        }
                    };
                    match result {
                        Ok(block) => {
                            // The requested bytes are kept. With grow_zeroed, allocator-api2 lets
                            // `old.size()..old length` be kept or zeroed; the frontend zeroes
                            // everything from `old.size()` on, and that is what is checked.
                            live.verify_prefix(block.cast(), live.layout.size());
                            model.insert(block, new, zeroed.then_some(old.size()));
                        }
                        Err(_) => {
                            assert!(failure_allowed(a, &geometry, new), "grow to {new:?} failed");
                            model.put_back(live);
                        }
                    }
                }
                Op::Shrink { pick, fit, size: s, align_log2: al } => {
                    let Some(live) = model.take(pick) else { continue };
                    let old = fitting(&live, fit);
                    let align = al.map_or(old.align(), |al| 1 << scale.align_log2(al).min(40));
                    let Ok(new) = Layout::from_size_align(scale.size(s) % (old.size() + 1), align) else {
                        model.put_back(live);
                        continue;
                    };
                    // SAFETY: the block is live, `old` fits it, `new.size() <= old.size()`.
                    match unsafe { a.shrink(live.ptr, old, new) } {
                        Ok(block) => {
                            live.verify_prefix(block.cast(), live.layout.size().min(new.size()));
                            model.insert(block, new, None);
                        }
                        Err(_) => {
                            assert!(failure_allowed(a, &geometry, new), "shrink to {new:?} failed");
                            model.put_back(live);
                        }
                    }
                }
            }
            let (invariants, allocated) =
                a.with(|heap| (heap.check_invariants(), heap.stats().allocated)).expect("not re-entered");
            invariants.unwrap_or_else(|e| panic!("{e} after {op:?}"));
            assert_eq!(allocated, model.bytes(), "allocated bytes after {op:?}");
        }
        while let Some(live) = model.take(0) {
            // SAFETY: the block is live with its own layout.
            unsafe { a.deallocate(live.ptr, live.layout) };
        }
    }
    let heap = local.get_mut();
    heap.check_invariants().expect("invariants after freeing everything");
    // The size classes keep an emptied slab cached until flushed.
    heap.flush();
    assert!(pristine(heap), "not pristine after freeing everything");
}
