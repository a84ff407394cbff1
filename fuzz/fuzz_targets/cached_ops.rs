//! F4 for the per-thread magazines, `cached_ops`: drives `budalloc_sync::Magazines` (what one
//! thread of `Cached` holds) directly, in front of a shared `Locked<Classes<Buddy<16, MAX, 2,
//! EXACT>, LIMIT>>` over one or two fuzzed arenas of 64 KiB to 256 KiB in all, in two shapes:
//! `classes_ops`'s narrow one (classes up to 1 KiB over a 64 KiB buddy) and the facade's class
//! limit (classes up to 4 KiB over a 256 KiB buddy, whose largest slabs a small region cannot
//! always give). Requests of 1 B to 8 KiB aligned to 1 to 64 B; a layout that maps to no cached
//! class (the magazines answer `None`) is served by the shared policy itself, as `Cached` does
//! (a resize between a cached class and the shared policy moves the block by hand).
//!
//! Operations: allocate, free, resize (grow or shrink), flush the magazines, and two deliberate
//! misuses of an object just freed into its magazine: a second free, which must give
//! `DoubleFree` for that address, and a resize, which must be refused (`InvalidBlock(DoubleFree)`
//! from the magazine, or, for a new layout of the shared policy, `holds` must see the object as
//! `Cached` does); either must leave `cached()`, the shared `stats()` and the metadata digests
//! of the magazines and the shared policy unchanged. Their counts are printed at exit
//! (`magazine_double_free`, and `magazine_resize_freed` for the resizes the magazines refuse
//! themselves). A resize between two cached classes must return the same block within a class
//! and another block otherwise, the old one then in its magazine.
//!
//! Checked after every call: alignment, at least the size asked (exactly the class size from a
//! magazine), inside a claimed arena, disjoint from every live block, not still in a magazine,
//! contents kept (the fill of the requested size on every free and resize, the first
//! `min(old, new)` bytes after a resize, the fill intact after a failed one), out of memory only
//! when the shared policy's `largest_free` allows it, no other error, the shared policy's
//! allocated bytes at least the live blocks', and `check_invariants()` of the magazines and of
//! the shared policy. At the end every live block is freed, the magazines flushed, the shared
//! policy flushed: it must account no allocated byte, keep its invariants, and its buddy must be
//! back to its seeding (pristine).
#![no_main]

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::ptr::NonNull;

use arbitrary::Arbitrary;
use budalloc_buddy::Buddy;
use budalloc_core::{AllocError, Claim, FreeError, Inspect, RawAlloc, SizeClasses};
use budalloc_fuzz::{claim_into, count, record_block, Arenas, ClassHeap, Memory, NARROW, WIDE};
use budalloc_sync::{Locked, Magazines, CACHED_CLASSES};
use budalloc_testkit::{metadata_digest, Live};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    /// The shared policy's memory: its length is mapped onto 64 KiB to 256 KiB.
    arenas: Arenas,
    /// Bit 0: exact fit for the buddy; bit 1: the wide shape (classes up to 4 KiB).
    flavour: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Allocate [`size`]`(size)` bytes aligned to [`align`]`(align_log2)`.
    Alloc { size: u16, align_log2: u8 },
    /// Free live block `pick`.
    Free { pick: usize },
    /// Resize live block `pick` to [`size`]`(size)` bytes (grow or shrink), same alignment.
    Resize { pick: usize, size: u16 },
    /// Free a live block of a cached class (the first from `pick` on), then free it again.
    DoubleFree { pick: usize },
    /// Free a live block of a cached class (the first from `pick` on), then resize it to
    /// [`size`]`(size)` bytes.
    ResizeFreed { pick: usize, size: u16 },
    /// Give every cached object back to the shared policy.
    Flush,
}

/// Smallest region handed to the shared policy (before the skew), 64 KiB, in the 4-byte units
/// of [`Arenas::make_in`] with a 256 KiB maximum.
const MIN_LEN_UNITS: u16 = 16 * 1024;

/// Largest region, 256 KiB.
const MAX_REGION: usize = 256 * 1024;

fuzz_target!(|input: Input| {
    // 64 KiB to 256 KiB (less 4 bytes): `make_in` scales the length by 4 for a 256 KiB region.
    let arenas =
        Arenas { len: MIN_LEN_UNITS + input.arenas.len % (u16::MAX - MIN_LEN_UNITS + 1), ..input.arenas };
    match input.flavour & 3 {
        0 => {
            let heap = ClassHeap::<{ NARROW.0 }, { NARROW.1 }, false>::new(Buddy::new());
            run(&input, heap, arenas.make_in(MAX_REGION, NARROW.1), |h| h.backend_mut().is_pristine());
        }
        1 => {
            let heap = ClassHeap::<{ NARROW.0 }, { NARROW.1 }, true>::new(Buddy::new());
            run(&input, heap, arenas.make_in(MAX_REGION, NARROW.1), |h| h.backend_mut().is_pristine());
        }
        2 => {
            let heap = ClassHeap::<{ WIDE.0 }, { WIDE.1 }, false>::new(Buddy::new());
            run(&input, heap, arenas.make_in(MAX_REGION, WIDE.1), |h| h.backend_mut().is_pristine());
        }
        _ => {
            let heap = ClassHeap::<{ WIDE.0 }, { WIDE.1 }, true>::new(Buddy::new());
            run(&input, heap, arenas.make_in(MAX_REGION, WIDE.1), |h| h.backend_mut().is_pristine());
        }
    }
});

/// A fuzzed request size, 1 to 8192 bytes: a quarter each up to 64 B, up to 1 KiB (the narrow
/// classes), up to 4 KiB (the wide classes) and up to 8 KiB (the shared policy's blocks).
fn size(raw: u16) -> usize {
    let rest = usize::from(raw & 0x3fff);
    1 + match raw >> 14 {
        0 => rest % 64,
        1 => rest % 1024,
        2 => rest % 4096,
        _ => rest % 8192,
    }
}

/// A fuzzed alignment, 1 to 64 bytes: mostly 1 to 8.
fn align(raw: u8) -> usize {
    1 << if raw < 192 { raw % 4 } else { raw % 7 }
}

/// The class whose magazine serves `layout`, if any (else the shared policy serves it).
fn cached_class<P: SizeClasses>(layout: Layout) -> Option<usize> {
    P::class_of(layout).filter(|&c| c < CACHED_CLASSES)
}

/// The shadow model: live blocks in allocation order and their address ranges.
struct Model {
    regions: Vec<(usize, usize)>,
    live: Vec<Live>,
    ranges: BTreeMap<usize, usize>,
    next_fill: u8,
}

impl Model {
    /// Checks a block just returned for `layout` and records it, filled with a fresh byte.
    fn insert(&mut self, block: NonNull<[u8]>, layout: Layout) {
        let ptr = block.cast::<u8>();
        let (addr, len) = (ptr.addr().get(), block.len());
        assert_eq!(addr % layout.align(), 0, "block {addr:#x} not aligned to {}", layout.align());
        assert!(len >= layout.size(), "block of {len} bytes for a request of {}", layout.size());
        record_block(&mut self.ranges, &self.regions, addr, len);
        self.next_fill = self.next_fill.wrapping_add(1).max(1);
        // SAFETY: the block is valid for writes of `len >= layout.size()` bytes.
        unsafe { ptr.as_ptr().write_bytes(self.next_fill, layout.size()) };
        self.live.push(Live { ptr, layout, len, fill: self.next_fill });
    }

    /// Takes live block number `i` out of the model, checking its contents.
    fn take_at(&mut self, i: usize) -> Live {
        let live = self.live.swap_remove(i);
        live.verify();
        self.ranges.remove(&live.ptr.addr().get());
        live
    }

    /// Takes live block number `pick % len` out of the model, checking its contents.
    fn take(&mut self, pick: usize) -> Option<Live> {
        if self.live.is_empty() {
            return None;
        }
        Some(self.take_at(pick % self.live.len()))
    }

    /// Takes the first live block from number `pick % len` on whose layout `is_cached`
    /// accepts, checking its contents.
    fn take_cached(&mut self, pick: usize, is_cached: impl Fn(Layout) -> bool) -> Option<Live> {
        let n = self.live.len();
        if n == 0 {
            return None;
        }
        let i = (0..n).map(|k| (pick % n + k) % n).find(|&i| is_cached(self.live[i].layout))?;
        Some(self.take_at(i))
    }

    /// Puts a block back (a failed resize left it in place); its contents must be intact.
    fn put_back(&mut self, live: Live) {
        live.verify();
        self.ranges.insert(live.ptr.addr().get(), live.ptr.addr().get() + live.len);
        self.live.push(live);
    }

    /// Bytes of the live blocks.
    fn bytes(&self) -> usize {
        self.live.iter().map(|l| l.len).sum()
    }
}

/// What a rejected misuse must leave as it was: the magazines' object count and metadata, the
/// shared policy's figures and metadata.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    cached: usize,
    magazines: (u64, usize),
    stats: budalloc_core::Stats,
    shared: (u64, usize),
}

/// The [`Snapshot`] of `magazines` and `shared` now.
fn snapshot<P: RawAlloc + Inspect>(magazines: &Magazines, shared: &Locked<P>) -> Snapshot {
    Snapshot {
        cached: magazines.cached(),
        magazines: metadata_digest(magazines),
        stats: shared.stats(),
        shared: shared.with(|p| metadata_digest(p)),
    }
}

/// Checks that a request of the shared policy for `layout` (the class layout of a magazine
/// refill, or the caller's layout) may fail with `error`: out of memory, and the policy's
/// `largest_free` (the largest power of two up to which every size and alignment succeeds) says
/// it could.
fn check_failure<P: RawAlloc>(shared: &Locked<P>, layout: Layout, error: AllocError, what: &str) {
    let largest = shared.stats().largest_free;
    match error {
        AllocError::OutOfMemory { .. } => assert!(
            layout.size() > largest || layout.align() > largest,
            "{what}: out of memory for {layout:?} with every request up to {largest} bytes servable"
        ),
        other => panic!("{what}: {other} ({other:?})"),
    }
}

/// Runs `input` on magazines in front of `heap` over `memory`; at the end, after freeing
/// everything and flushing, `pristine` must hold.
fn run<P: SizeClasses + Inspect + Claim>(
    input: &Input,
    mut heap: P,
    memory: Memory,
    pristine: impl FnOnce(&mut P) -> bool,
) {
    let claimed = claim_into(&mut heap, &memory);
    let mut shared: Locked<P> = Locked::new(heap);
    let mut magazines = Magazines::new();
    let mut model = Model {
        regions: claimed.iter().map(|&(p, l)| (p.addr(), l)).collect(),
        live: Vec::new(),
        ranges: BTreeMap::new(),
        next_fill: 0,
    };
    let is_cached = |layout: Layout| cached_class::<P>(layout).is_some();
    for op in &input.ops {
        match *op {
            Op::Alloc { size: s, align_log2 } => {
                let layout = Layout::from_size_align(size(s), align(align_log2)).expect("valid layout");
                // The layout the shared policy is asked for, and whether a magazine serves it.
                let (result, asked, cached) = match magazines.allocate(&shared, layout) {
                    Some(result) => {
                        let class = cached_class::<P>(layout).expect("a magazine served it");
                        (result, P::class_layout(class), true)
                    }
                    None => (shared.with(|p| p.allocate(layout)), layout, false),
                };
                match result {
                    Ok(block) => {
                        if cached {
                            assert_eq!(block.len(), asked.size(), "an object of {layout:?} from a magazine");
                        }
                        assert!(
                            !magazines.holds::<P>(block.cast(), layout),
                            "{block:?} handed out still cached"
                        );
                        model.insert(block, layout);
                    }
                    Err(error) => check_failure(&shared, asked, error, "allocate"),
                }
            }
            Op::Free { pick } => {
                if let Some(live) = model.take(pick) {
                    // SAFETY: the model owned the block (live with its layout) and let it go.
                    unsafe { free(&mut magazines, &shared, live.ptr, live.layout) };
                }
            }
            Op::Resize { pick, size: s } => {
                if let Some(live) = model.take(pick) {
                    let new = Layout::from_size_align(size(s), live.layout.align()).expect("valid layout");
                    // SAFETY: the model owned the block (live with its layout) and let it go.
                    unsafe { resize(&mut magazines, &shared, &mut model, live, new) };
                }
            }
            Op::DoubleFree { pick } => {
                if let Some(live) = model.take_cached(pick, is_cached) {
                    let (ptr, layout) = (live.ptr, live.layout);
                    // SAFETY: the model owned the block (live with its layout) and let it go.
                    unsafe { free(&mut magazines, &shared, ptr, layout) };
                    assert!(magazines.holds::<P>(ptr, layout), "{ptr:?} just freed is not in its magazine");
                    let before = snapshot(&magazines, &shared);
                    // SAFETY: `ptr` sits in its magazine (checked above): the misuse under test.
                    // The magazine finds it there before it changes, reads or writes anything.
                    let result = unsafe { magazines.deallocate(&shared, ptr, layout) };
                    let detected = matches!(
                        result,
                        Some(Err(FreeError::DoubleFree { addr, .. })) if addr == ptr.addr().get()
                    );
                    count("magazine_double_free", detected);
                    assert!(detected, "second free of {ptr:?} ({layout:?}) just freed: {result:?}");
                    let after = snapshot(&magazines, &shared);
                    assert_eq!(after, before, "the rejected double free changed state");
                }
            }
            Op::ResizeFreed { pick, size: s } => {
                if let Some(live) = model.take_cached(pick, is_cached) {
                    let (ptr, old) = (live.ptr, live.layout);
                    let new = Layout::from_size_align(size(s), old.align()).expect("valid layout");
                    // SAFETY: the model owned the block (live with its layout) and let it go.
                    unsafe { free(&mut magazines, &shared, ptr, old) };
                    assert!(magazines.holds::<P>(ptr, old), "{ptr:?} just freed is not in its magazine");
                    let before = snapshot(&magazines, &shared);
                    // SAFETY: `ptr` sits in its magazine (checked above): the misuse under test.
                    // The magazine finds it there before it allocates, copies or frees anything.
                    let result = unsafe { magazines.resize(&shared, ptr, old, new) };
                    // `None`: `new` maps to no cached class, and `resize` declined without a
                    // change. `Cached` refuses such a resize when `holds` finds the block in its
                    // magazine (asserted above), before it asks the shared policy.
                    if let Some(result) = &result {
                        let detected = matches!(
                            result,
                            Err(AllocError::InvalidBlock(FreeError::DoubleFree { addr, .. })) if *addr == ptr.addr().get()
                        );
                        count("magazine_resize_freed", detected);
                        assert!(detected, "resize of {ptr:?} ({old:?}) just freed, to {new:?}: {result:?}");
                    }
                    let after = snapshot(&magazines, &shared);
                    assert_eq!(after, before, "the refused resize changed state");
                }
            }
            Op::Flush => {
                magazines.flush(&shared).unwrap_or_else(|e| panic!("flush of the magazines: {e}"));
                assert_eq!(magazines.cached(), 0, "objects left in the magazines after a flush");
            }
        }
        magazines.check_invariants().unwrap_or_else(|e| panic!("magazines: {e} after {op:?}"));
        let (invariants, allocated) = shared.with(|p| (p.check_invariants(), p.stats().allocated));
        invariants.unwrap_or_else(|e| panic!("shared policy: {e} after {op:?}"));
        // The shared policy also counts the objects cached in the magazines, and fallback
        // blocks of the buddy at their block size.
        assert!(
            allocated >= model.bytes(),
            "{allocated} bytes allocated, {} live, after {op:?}",
            model.bytes()
        );
    }
    while let Some(live) = model.take(0) {
        // SAFETY: the model owned the block (live with its layout) and let it go.
        unsafe { free(&mut magazines, &shared, live.ptr, live.layout) };
    }
    magazines.flush(&shared).unwrap_or_else(|e| panic!("final flush of the magazines: {e}"));
    assert_eq!(magazines.cached(), 0, "objects left in the magazines after the final flush");
    magazines.check_invariants().expect("magazines' invariants after the final flush");
    let policy = shared.get_mut();
    policy.flush();
    policy.check_invariants().expect("shared policy's invariants after freeing everything");
    assert_eq!(policy.stats().allocated, 0, "bytes allocated after freeing and flushing everything");
    assert!(pristine(policy), "buddy not pristine after freeing and flushing everything");
}

/// Frees a block: into its magazine, or to the shared policy if its layout maps to no cached
/// class. Any error is a bug.
///
/// # Safety
/// - `ptr` must be a block the caller owns, allocated from `shared` (directly or through
///   `magazines`) with `layout`;
/// - it must not be used after this call.
unsafe fn free<P: SizeClasses>(
    magazines: &mut Magazines,
    shared: &Locked<P>,
    ptr: NonNull<u8>,
    layout: Layout,
) {
    // SAFETY: forwarded from our caller.
    let result = match unsafe { magazines.deallocate(shared, ptr, layout) } {
        Some(result) => result,
        // SAFETY: forwarded from our caller; a layout of no cached class was served by the
        // shared policy itself.
        None => shared.with(|p| unsafe { p.try_deallocate(ptr, layout) }),
    };
    result.unwrap_or_else(|e| panic!("free of {ptr:?} ({layout:?}): {e}"));
}

/// Resizes `live` (taken out of the model) to `new`: through the magazines if both layouts map
/// to cached classes, by the shared policy if neither does, else by moving the block between a
/// magazine and the shared policy as `Cached` does. The new block goes into the model with the
/// first `min(old, new)` bytes checked; after out of memory, the old block goes back unchanged.
///
/// # Safety
/// - `live` must be a block the caller owns (taken out of `model`), allocated from `shared`
///   (directly or through `magazines`) with `live.layout`;
/// - after this call only `model` may use it (if it put it back).
unsafe fn resize<P: SizeClasses>(
    magazines: &mut Magazines,
    shared: &Locked<P>,
    model: &mut Model,
    live: Live,
    new: Layout,
) {
    let (ptr, old) = (live.ptr, live.layout);
    let keep = old.size().min(new.size());
    // SAFETY: forwarded from our caller: the block is ours, with `old`.
    let result = match unsafe { magazines.resize(shared, ptr, old, new) } {
        Some(result) => {
            if let Ok(block) = &result {
                if cached_class::<P>(old) == cached_class::<P>(new) {
                    assert_eq!(block.cast::<u8>(), ptr, "a resize within a class moved the block");
                } else {
                    assert_ne!(block.cast::<u8>(), ptr, "a move between classes kept the block");
                    assert!(
                        magazines.holds::<P>(ptr, old),
                        "the old object of a move is not in its magazine"
                    );
                }
            }
            result.map_err(|e| (e, P::class_layout(cached_class::<P>(new).expect("cached"))))
        }
        None => match (cached_class::<P>(old), cached_class::<P>(new)) {
            (None, None) => {
                let resized = shared.with(|p| {
                    if new.size() >= old.size() {
                        // SAFETY: forwarded from our caller: the block is ours, with `old`, a
                        // block of the shared policy (no cached class); the size grows.
                        unsafe { p.grow(ptr, old, new) }
                    } else {
                        // SAFETY: as above; the size shrinks.
                        unsafe { p.shrink(ptr, old, new) }
                    }
                });
                resized.map_err(|e| (e, new))
            }
            (Some(_), None) => match shared.with(|p| p.allocate(new)) {
                Ok(block) => {
                    // SAFETY: both blocks are live, hence disjoint, and hold at least `keep`
                    // bytes.
                    unsafe { ptr.copy_to_nonoverlapping(block.cast::<u8>(), keep) };
                    // SAFETY: forwarded from our caller: the block is ours, with `old`; the
                    // caller gets the new one instead.
                    unsafe { free(magazines, shared, ptr, old) };
                    Ok(block)
                }
                Err(e) => Err((e, new)),
            },
            (None, Some(class)) => {
                shared
                    .with(|p| p.validate(ptr, old))
                    .unwrap_or_else(|e| panic!("live {ptr:?} ({old:?}): {e}"));
                match magazines.allocate(shared, new).expect("a layout of a cached class") {
                    Ok(block) => {
                        // SAFETY: both blocks are live, hence disjoint, and hold at least `keep`
                        // bytes.
                        unsafe { ptr.copy_to_nonoverlapping(block.cast::<u8>(), keep) };
                        // SAFETY: forwarded from our caller: the block is ours, with `old`; the
                        // caller gets the new one instead.
                        unsafe { free(magazines, shared, ptr, old) };
                        Ok(block)
                    }
                    Err(e) => Err((e, P::class_layout(class))),
                }
            }
            (Some(from), Some(to)) => {
                panic!("Magazines::resize declined {old:?} -> {new:?}, classes {from} and {to}")
            }
        },
    };
    match result {
        Ok(block) => {
            live.verify_prefix(block.cast(), keep);
            if let Some(class) = cached_class::<P>(new) {
                assert_eq!(
                    block.len(),
                    P::class_layout(class).size(),
                    "an object of {new:?} from a magazine"
                );
            }
            assert!(!magazines.holds::<P>(block.cast(), new), "{block:?} handed out still cached");
            model.insert(block, new);
        }
        Err((error, asked)) => {
            check_failure(shared, asked, error, "resize");
            model.put_back(live);
        }
    }
}
