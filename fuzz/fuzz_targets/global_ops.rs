//! F4 `global_ops`: drives the `GlobalAlloc` implementation of `Locked<Buddy<16, 4096, 2, EXACT>,
//! Spin>` over a private region (alloc, alloc_zeroed, realloc up and down, dealloc) against a
//! shadow model with fill patterns. Only valid calls: detected misuse aborts by design, which
//! libFuzzer would report as a crash. Checked after every call: alignment, inside a claimed arena,
//! disjoint from every live block, zeroed memory is zero (also after reuse), contents kept by
//! realloc, null only when the oracle allows it (and then the old block intact),
//! `check_invariants()` and the allocated bytes. At the end everything is freed and the heap must
//! be pristine.
#![no_main]

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::ptr::NonNull;

use arbitrary::Arbitrary;
use budalloc_core::{Inspect, RawAlloc};
use budalloc_fuzz::{align_log2, claim_into, geometry, record_block, size, Arenas, Heap};
use budalloc_sync::{Locked, Spin};
use budalloc_testkit::{Geometry, Live};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    arenas: Arenas,
    exact: bool,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Alloc { size: usize, align_log2: u8, zeroed: bool },
    Dealloc { pick: usize },
    Realloc { pick: usize, size: usize },
}

fuzz_target!(|input: Input| {
    if input.exact {
        run::<true>(&input);
    } else {
        run::<false>(&input);
    }
});

struct Model {
    geometry: Geometry,
    regions: Vec<(usize, usize)>,
    live: Vec<Live>,
    ranges: BTreeMap<usize, usize>,
    next_fill: u8,
}

impl Model {
    /// Checks a block just returned for `layout` and records it, filled with a fresh byte.
    fn insert(&mut self, ptr: NonNull<u8>, layout: Layout, len: usize, zeroed: bool) {
        let addr = ptr.addr().get();
        assert_eq!(addr % layout.align(), 0, "block {addr:#x} not aligned to {}", layout.align());
        assert!(len >= layout.size(), "usable size {len} below the request {}", layout.size());
        if let Ok(block) = self.geometry.expect(layout.size(), layout.align()) {
            if let Some(expected) = self.geometry.returned(layout.size(), block) {
                assert_eq!(len as u128, expected, "usable size for {layout:?}");
            }
        }
        record_block(&mut self.ranges, &self.regions, addr, len);
        if zeroed {
            // SAFETY: alloc_zeroed initialised `layout.size()` bytes of the block.
            let bytes = unsafe { std::slice::from_raw_parts(ptr.as_ptr(), layout.size()) };
            if let Some(i) = bytes.iter().position(|&b| b != 0) {
                panic!("alloc_zeroed({layout:?}) at {addr:#x}: byte {i} is {:#04x}", bytes[i]);
            }
        }
        self.next_fill = self.next_fill.wrapping_add(1).max(1);
        // SAFETY: the block is valid for writes of `layout.size()` bytes.
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
        self.ranges.remove(&live.ptr.addr().get());
        Some(live)
    }

    fn put_back(&mut self, live: Live) {
        live.verify();
        self.ranges.insert(live.ptr.addr().get(), live.ptr.addr().get() + live.len);
        self.live.push(live);
    }

    fn bytes(&self) -> usize {
        self.live.iter().map(|l| l.len).sum()
    }
}

fn run<const EXACT: bool>(input: &Input) {
    let memory = input.arenas.make();
    let mut heap = Heap::<EXACT>::new();
    let claimed = claim_into(&mut heap, &memory);
    let mut locked = Locked::<_, Spin>::new(heap);
    let geometry = geometry(EXACT);
    let mut model = Model {
        geometry,
        regions: claimed.iter().map(|&(p, l)| (p.addr(), l)).collect(),
        live: Vec::new(),
        ranges: BTreeMap::new(),
        next_fill: 0,
    };
    let g = &locked;
    // Length the policy holds for a block of `layout`, and whether a null for `layout` was
    // allowed: the oracle refuses it, or no free block is as large as the block it needs.
    let usable =
        |layout: Layout| g.with(|heap| heap.usable_size(layout)).expect("usable size of a served layout");
    let null_allowed = |layout: Layout| match model_geometry(&geometry, layout) {
        None => true,
        Some(block) => (g.with(|heap| heap.stats().largest_free) as u128) < block,
    };
    for op in &input.ops {
        match *op {
            Op::Alloc { size: s, align_log2: al, zeroed } => {
                let Ok(layout) = Layout::from_size_align(size(s), 1 << align_log2(al).min(40)) else {
                    continue;
                };
                if layout.size() == 0 {
                    continue; // a zero size is the caller's undefined behaviour for GlobalAlloc
                }
                // SAFETY: `layout` has a non-zero size.
                let ptr = unsafe {
                    if zeroed {
                        g.alloc_zeroed(layout)
                    } else {
                        g.alloc(layout)
                    }
                };
                match NonNull::new(ptr) {
                    Some(ptr) => model.insert(ptr, layout, usable(layout), zeroed),
                    None => assert!(null_allowed(layout), "alloc({layout:?}) returned null"),
                }
            }
            Op::Dealloc { pick } => {
                if let Some(live) = model.take(pick) {
                    // SAFETY: the block is live, allocated with exactly `live.layout`.
                    unsafe { g.dealloc(live.ptr.as_ptr(), live.layout) };
                }
            }
            Op::Realloc { pick, size: s } => {
                let Some(live) = model.take(pick) else { continue };
                let new_size = size(s);
                let Ok(new) = Layout::from_size_align(new_size, live.layout.align()) else {
                    model.put_back(live);
                    continue;
                };
                if new_size == 0 {
                    model.put_back(live);
                    continue;
                }
                // SAFETY: the block is live with `live.layout`; `new_size` is non-zero and, rounded
                // up to the alignment, does not overflow `isize` (the `Layout` above exists).
                let ptr = unsafe { g.realloc(live.ptr.as_ptr(), live.layout, new_size) };
                match NonNull::new(ptr) {
                    Some(ptr) => {
                        live.verify_prefix(ptr, live.layout.size().min(new_size));
                        model.insert(ptr, new, usable(new), false);
                    }
                    None => {
                        assert!(null_allowed(new), "realloc to {new:?} returned null");
                        model.put_back(live);
                    }
                }
            }
        }
        let (invariants, allocated) = g.with(|heap| (heap.check_invariants(), heap.stats().allocated));
        invariants.unwrap_or_else(|e| panic!("{e} after {op:?}"));
        assert_eq!(allocated, model.bytes(), "allocated bytes after {op:?}");
    }
    while let Some(live) = model.take(0) {
        // SAFETY: the block is live, allocated with exactly `live.layout`.
        unsafe { g.dealloc(live.ptr.as_ptr(), live.layout) };
    }
    let heap = locked.get_mut();
    heap.check_invariants().expect("invariants after freeing everything");
    assert!(heap.is_pristine(), "not pristine after freeing everything");
}

/// The block the oracle says `layout` needs, or `None` if it must be refused.
fn model_geometry(geometry: &Geometry, layout: Layout) -> Option<u128> {
    geometry.expect(layout.size(), layout.align()).ok()
}
