//! F2 `abuse`: the harness of `buddy_ops` with a high share of misuse, plus injected faults.
//!
//! - bad frees of the testkit (double and stale, interior and misaligned, foreign, another
//!   block size, and the same-size layouts that must be accepted), and frees of a block of
//!   another heap: each must give its error variant with the metadata unchanged (the harness
//!   checks the digest);
//! - a bit flipped in one of an arena's two guard keys, then a free (or an allocation that this
//!   arena serves), which must fail with `Corrupted(GuardKey)` for that key;
//! - a bit flipped in the 16-byte header of a free block B whose buddy X is live (set up on
//!   purpose when there is none), then frees that make the policy merge X with B: it must read
//!   B's header and fail with `Corrupted(Header)` for B (see `flip_header` for how the parked
//!   last-freed block is dealt with).
//!
//! - with size classes over the buddy (`classes_ops`'s narrow shape: classes up to 1 KiB over a
//!   64 KiB buddy), the same bad frees and frees of another heap's blocks, and a bit flipped in
//!   the seal or the class index of the header of a slab holding a live object, then the free of
//!   that object, which must fail with `Corrupted(Header)` for the slab (the seal covers the
//!   slab's address and class; the other header fields are not promised to be checked).
//!
//! After a flip the metadata digest must be unchanged by the rejected call, and the bit is
//! restored; an undetected flip panics, naming its kind. The injected / detected counts per kind
//! are printed when the process exits. `BUDALLOC_FUZZ_SKIP=kind,...` leaves flip kinds out (to run
//! past a known, reported gap; see `budalloc_fuzz::skipped`).
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use budalloc_buddy::{Block, Buddy};
use budalloc_core::{AllocError, Corruption, FreeError, GuardKey, Inspect, RawAlloc, SizeClasses};
use budalloc_fuzz::{
    claim_into, class_geometry, count, geometry, layout, skipped, Arenas, ClassHeap, Heap, Memory, Scale,
    BUDDY_SCALE, MAX, MIN, NARROW,
};
use budalloc_testkit::{metadata_digest, Action, BadFree, Harness, Region};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    arenas: Arenas,
    /// Bit 0: exact fit (`Buddy<.., true>`) instead of whole power-of-two blocks. Bit 1: size
    /// classes over such a buddy ([`Classes`]) instead of the buddy `Buddy<16, 4096, 2, _>` alone.
    flavour: u8,
    steps: Vec<Step>,
}

/// The size classes `abuse` drives: `classes_ops`'s narrow shape.
type Classes<const EXACT: bool> = ClassHeap<{ NARROW.0 }, { NARROW.1 }, EXACT>;

/// Another heap, whose blocks are freed into the heap under test; made on first use. Its heap
/// is dropped before its region (tuple fields drop in order).
type Other = Option<(Heap<false>, Region)>;

fn other_heap_of(other: &mut Other) -> &mut Heap<false> {
    &mut other
        .get_or_insert_with(|| {
            let region = Region::new(8 * 1024, 4096);
            let mut heap = Heap::<false>::new();
            let (ptr, len) = region.whole();
            // SAFETY: the region is valid, used by this heap only, and dropped after it (tuple
            // fields drop in order).
            unsafe { heap.claim_raw(ptr, len) }.expect("claim of the other heap");
            (heap, region)
        })
        .0
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// Any action of the testkit (a quarter of them are bad frees).
    Act(Action),
    /// An allocation, so there are blocks to abuse.
    Alloc { size: usize, align_log2: u8 },
    /// A bad free.
    Bad { kind: BadFree, pick: usize, offset: usize },
    /// Flip a bit of a guard key of arena `arena`; try a free or (`by_alloc`) an allocation.
    FlipKey { arena: u8, back: bool, bit: u8, by_alloc: bool, pick: usize },
    /// Flip a bit in the header of a free block with a live buddy of order `order` (made if
    /// needed); free the buddy. With size classes: flip a bit of the seal or class of the slab
    /// of live object `pick` (made if needed); free the object.
    FlipHeader { pick: usize, bit: u8, order: u8 },
    /// Free a block of another heap.
    OtherHeap { size: u16, align_log2: u8 },
}

fuzz_target!(|input: Input| match input.flavour & 3 {
    0 => run::<false>(&input),
    1 => run::<true>(&input),
    2 => run_classes::<false>(&input),
    _ => run_classes::<true>(&input),
});

fn run<const EXACT: bool>(input: &Input) {
    let memory = input.arenas.make();
    let mut other: Other = None;
    let mut heap = Heap::<EXACT>::new();
    let claimed = claim_into(&mut heap, &memory);
    let mut h = Harness::new(heap, geometry(EXACT), claimed);
    for step in &input.steps {
        match *step {
            Step::Act(ref action) => act(&mut h, BUDDY_SCALE, false, action),
            Step::Alloc { size, align_log2 } => {
                act(&mut h, BUDDY_SCALE, false, &Action::Alloc { size, align_log2 })
            }
            Step::Bad { kind, pick, offset } => {
                act(&mut h, BUDDY_SCALE, false, &Action::Bad { kind, pick, offset })
            }
            Step::FlipKey { arena, back, bit, by_alloc, pick } => {
                flip_key(&mut h, &memory, arena, back, bit, by_alloc, pick)
            }
            Step::FlipHeader { pick, bit, order } => flip_header(&mut h, &memory, pick, bit, order),
            Step::OtherHeap { size, align_log2 } => {
                other_heap(&mut h, other_heap_of(&mut other), size, align_log2)
            }
        }
    }
    h.finish();
    assert!(h.alloc.is_pristine(), "not pristine after freeing everything");
}

fn run_classes<const EXACT: bool>(input: &Input) {
    let (limit, max, max_region) = NARROW;
    let memory = input.arenas.make_in(max_region, max);
    let mut other: Other = None;
    let mut heap = Classes::<EXACT>::new(Buddy::new());
    let claimed = claim_into(&mut heap, &memory);
    let mut h = Harness::new(heap, class_geometry(max), claimed);
    let scale = Scale { small: limit, max };
    for step in &input.steps {
        match *step {
            Step::Act(ref action) => act(&mut h, scale, true, action),
            Step::Alloc { size, align_log2 } => act(&mut h, scale, true, &Action::Alloc { size, align_log2 }),
            Step::Bad { kind, pick, offset } => act(&mut h, scale, true, &Action::Bad { kind, pick, offset }),
            // The buddy's guard keys: the buddy flavours flip them.
            Step::FlipKey { .. } => {}
            Step::FlipHeader { pick, bit, .. } => flip_slab_header(&mut h, &memory, pick, bit),
            Step::OtherHeap { size, align_log2 } => {
                other_heap(&mut h, other_heap_of(&mut other), size, align_log2)
            }
        }
    }
    h.finish();
    // `finish` ends with an allocation and a free that may leave an empty slab cached.
    h.alloc.flush();
    assert!(h.alloc.backend_mut().is_pristine(), "buddy not pristine after freeing everything");
}

/// One harness step, sizes shaped by `scale`; a bad free that the harness saw rejected (or,
/// same-size, accepted) counts as injected and detected (an undetected one panics inside the
/// harness). With size `classes`, the kinds are counted with a `class_` prefix.
fn act<A: RawAlloc + Inspect>(h: &mut Harness<A>, scale: Scale, classes: bool, action: &Action) {
    let action = scale.shape(action);
    let before = (h.tally.rejected, h.tally.fits_accepted);
    h.step(&action);
    if let Action::Bad { kind, .. } = action {
        if (h.tally.rejected, h.tally.fits_accepted) != before {
            let name = match (kind, classes) {
                (BadFree::Double, false) => "bad_double_or_stale",
                (BadFree::Interior, false) => "bad_interior",
                (BadFree::Foreign, false) => "bad_foreign",
                (BadFree::OtherOrder, false) => "bad_other_order",
                (BadFree::SameOrder, false) => "same_order_accepted",
                (BadFree::Double, true) => "class_bad_double_or_stale",
                (BadFree::Interior, true) => "class_bad_interior",
                (BadFree::Foreign, true) => "class_bad_foreign",
                (BadFree::OtherOrder, true) => "class_bad_other_order",
                (BadFree::SameOrder, true) => "class_same_order_accepted",
            };
            count(name, true);
        }
    }
}

/// Flips bit `bit` of a guard key, checks that the next call on that arena reports it and
/// changes nothing, then restores the key.
fn flip_key<const EXACT: bool>(
    h: &mut Harness<Heap<EXACT>>,
    memory: &Memory,
    arena: u8,
    back: bool,
    bit: u8,
    by_alloc: bool,
    pick: usize,
) {
    // Nothing parked: a parked block would serve an allocation, or answer a free, before the
    // arena's keys are read.
    h.alloc.flush();
    let arenas: Vec<(usize, usize, usize)> = h
        .alloc
        .arenas()
        .map(|a| {
            let bitmap = a.bitmap();
            let key =
                if back { bitmap.addr() + bitmap.footprint() - size_of::<usize>() } else { bitmap.addr() };
            (a.start(), a.end(), key)
        })
        .collect();
    if arenas.is_empty() {
        return;
    }
    let i = usize::from(arena) % arenas.len();
    let (start, end, key) = arenas[i];
    let expected =
        Corruption::GuardKey { which: if back { GuardKey::Back } else { GuardKey::Front }, addr: key };
    let blocks: Vec<Block> = h.alloc.blocks().collect();
    let free_in = |(s, e, _): (usize, usize, usize)| {
        blocks.iter().filter(move |b| !b.allocated && (s..e).contains(&b.addr)).map(|b| b.size)
    };
    // An allocation of arena i's largest free block is served by arena i if no arena before it
    // (the policy tries them in address order) can serve it: none has a block that large or,
    // with exact fit (which also places requests in runs of adjacent free blocks), none has that
    // many free bytes.
    let largest = free_in(arenas[i]).max().unwrap_or(0);
    let alloc_hits_i = largest > 0
        && arenas[..i].iter().all(|&a| {
            let serves = if EXACT { free_in(a).sum::<usize>() } else { free_in(a).max().unwrap_or(0) };
            serves < largest
        });

    let by_alloc = by_alloc && alloc_hits_i;
    let kind = match (back, by_alloc) {
        (false, false) => "key_front_free",
        (true, false) => "key_back_free",
        (false, true) => "key_front_alloc",
        (true, true) => "key_back_alloc",
    };
    if skipped(kind) {
        return;
    }
    let bit = u32::from(bit) % usize::BITS;
    let byte = key + (bit / 8) as usize;
    memory.flip_bit(byte, bit);
    let before = metadata_digest(&h.alloc);
    let (detected, outcome) = if by_alloc {
        let result = h.alloc.allocate(layout(largest, 1));
        (matches!(result, Err(AllocError::Corrupted(c)) if c == expected), format!("{result:?}"))
    } else {
        // A live block of the arena if there is one (a missed check would free it), else the
        // start of a free block.
        let live: Vec<usize> = h.model.addresses().into_iter().filter(|a| (start..end).contains(a)).collect();
        let (ptr, free_layout) = if live.is_empty() {
            let in_arena: Vec<&Block> =
                blocks.iter().filter(|b| !b.allocated && (start..end).contains(&b.addr)).collect();
            let Some(&block) = in_arena.get(pick % in_arena.len().max(1)) else {
                memory.flip_bit(byte, bit);
                return;
            };
            (memory.pointer_to(block.addr), layout(block.size, 1))
        } else {
            let block = h.model.get(live[pick % live.len()]);
            (block.ptr, block.layout)
        };
        // SAFETY: `ptr` is either a live block the model owns (nobody else uses it; if the free
        // went through, the assertion below fails before anything touches it), or not the start
        // of an allocated block, which the checked free must reject.
        let result = unsafe { h.alloc.try_deallocate(ptr, free_layout) };
        (matches!(result, Err(FreeError::Corrupted(c)) if c == expected), format!("{result:?}"))
    };
    count(kind, detected);
    assert!(detected, "undetected {kind}: bit {bit} of the key at {key:#x} flipped, the call gave {outcome}");
    assert_eq!(metadata_digest(&h.alloc), before, "{kind}: the rejected call changed metadata");
    memory.flip_bit(byte, bit);
    h.alloc.check_invariants().unwrap_or_else(|e| panic!("{kind}: after restoring the key: {e}"));
}

/// Free blocks whose buddy (same size, same parent) is a live allocation of exactly one block,
/// other than `except`: `(free block, live buddy)`. Merging the buddy once it is freed checks the
/// free block's header.
fn header_candidates<const EXACT: bool>(h: &Harness<Heap<EXACT>>, except: usize) -> Vec<(usize, usize)> {
    let blocks: BTreeMap<usize, Block> = h.alloc.blocks().map(|b| (b.addr, b)).collect();
    blocks
        .values()
        .filter(|b| !b.allocated && b.size < MAX)
        .filter_map(|b| {
            let buddy = b.addr ^ b.size;
            let other = blocks.get(&buddy)?;
            let live = buddy != except
                && other.allocated
                && other.size == b.size
                && h.model.contains_start(buddy)
                && h.model.get(buddy).len == b.size;
            live.then_some((b.addr, buddy))
        })
        .collect()
}

/// Flips bit `bit` of the header of a free block B whose buddy X is live, then makes the policy
/// merge X with B, which must read B's header and fail with `Corrupted(Header)` for B, changing
/// nothing; then restores the bit.
///
/// The buddy policy parks the block freed last unmerged and merges it at the next free. So: free
/// X (parked: no header read; or, a multi-piece exact-fit free, merged at once: the error comes
/// here), then free T, a live smallest block allocated for the purpose, which merges the parked
/// X first and must report B.
fn flip_header<const EXACT: bool>(
    h: &mut Harness<Heap<EXACT>>,
    memory: &Memory,
    pick: usize,
    bit: u8,
    order: u8,
) {
    let bit = u32::from(bit) % 128;
    // The header: next (bytes 0..4), prev (4..8), seal (8..12), order (12), padding (13..16).
    let kind = match bit / 8 {
        0..=3 => "header_next",
        4..=7 => "header_prev",
        8..=11 => "header_seal",
        12 => "header_order",
        _ => "header_padding",
    };
    if skipped(kind) {
        return;
    }
    // Nothing parked, then the trigger T.
    h.alloc.flush();
    let trigger_layout = layout(MIN, MIN);
    let Ok(trigger) = h.alloc.allocate(trigger_layout) else { return };
    let trigger = trigger.cast::<u8>();
    h.model.insert(trigger, trigger_layout, MIN);
    h.tally.allocs += 1;
    let mut candidates = header_candidates(h, trigger.addr().get());
    if candidates.is_empty() {
        // Set one up: a block aligned to its size that splits a larger free block leaves its
        // buddy free.
        let size = MIN << (u32::from(order) % (MAX / MIN).ilog2());
        let block_layout = layout(size, size);
        let Ok(block) = h.alloc.allocate(block_layout) else { return };
        assert_eq!(block.cast::<u8>().addr().get() % size, 0, "block aligned to its size");
        h.model.insert(block.cast(), block_layout, block.len());
        h.tally.allocs += 1;
        candidates = header_candidates(h, trigger.addr().get());
        if candidates.is_empty() {
            return;
        }
    }
    let (free, live) = candidates[pick % candidates.len()];
    let byte = free + (bit / 8) as usize;
    memory.flip_bit(byte, bit);
    let is_b = |result: &Result<(), FreeError>| matches!(result, Err(FreeError::Corrupted(Corruption::Header { addr })) if *addr == free);
    let before = metadata_digest(&h.alloc);
    let block = h.model.get(live).clone();
    block.verify();
    // SAFETY: X is live in the model, which owns it; it is taken out of the model below if the
    // free went through.
    let freed_x = unsafe { h.alloc.try_deallocate(block.ptr, block.layout) };
    let (detected, outcome) = if is_b(&freed_x) {
        assert_eq!(metadata_digest(&h.alloc), before, "{kind}: the rejected free changed metadata");
        (true, format!("the free of X gave {freed_x:?}"))
    } else if freed_x.is_ok() {
        h.model.remove(live);
        let parked = h.alloc.blocks().any(|b| b.addr == live && b.allocated);
        if parked {
            let before = metadata_digest(&h.alloc);
            // SAFETY: T is live in the model, which owns it; if the free went through, the
            // assertion below fails before anything touches it.
            let freed_t = unsafe { h.alloc.try_deallocate(trigger, trigger_layout) };
            if is_b(&freed_t) {
                assert_eq!(metadata_digest(&h.alloc), before, "{kind}: the rejected free changed metadata");
            }
            (is_b(&freed_t), format!("the free of X parked it; the free of T {trigger:?} gave {freed_t:?}"))
        } else {
            (false, "the free of X merged it with B and gave Ok(())".to_string())
        }
    } else {
        (false, format!("the free of X gave {freed_x:?}"))
    };
    count(kind, detected);
    assert!(
        detected,
        "undetected {kind}: bit {} of byte {} of the header of the free block B {free:#x} flipped; \
         its live buddy X {live:#x} ({:?}): {outcome}",
        bit % 8,
        bit / 8,
        block.layout
    );
    memory.flip_bit(byte, bit);
    h.alloc.check_invariants().unwrap_or_else(|e| panic!("{kind}: after restoring the header: {e}"));
}

/// Flips bit `bit` of the seal or the class index of the header of the slab holding a live
/// object (allocated first if there is none), then frees the object, which must fail with
/// `Corrupted(Header)` for the slab and change nothing; then restores the bit.
fn flip_slab_header<const EXACT: bool>(
    h: &mut Harness<Classes<EXACT>>,
    memory: &Memory,
    pick: usize,
    bit: u8,
) {
    // The header starts with the seal (bytes 0..8) and the class index (8..10).
    let bit = u32::from(bit) % 80;
    let kind = if bit < 64 { "slab_seal" } else { "slab_class" };
    if skipped(kind) {
        return;
    }
    let is_object = |layout| <Classes<EXACT> as SizeClasses>::class_of(layout).is_some();
    let mut objects: Vec<usize> =
        h.model.addresses().into_iter().filter(|&a| is_object(h.model.get(a).layout)).collect();
    if objects.is_empty() {
        let object_layout = layout(MIN << (pick % 6), 1);
        let Ok(object) = h.alloc.allocate(object_layout) else { return };
        h.model.insert(object.cast(), object_layout, object.len());
        h.tally.allocs += 1;
        objects.push(object.cast::<u8>().addr().get());
    }
    let addr = objects[pick % objects.len()];
    let live = h.model.get(addr).clone();
    let class = Classes::<EXACT>::TABLE.class(class_index::<EXACT>(live.layout));
    let base = addr & !(class.slab_size() - 1);
    // Only a slab: a live block of the buddy with the slab layout that holds the object.
    if !memory.contains(base)
        || h.alloc.backend().validate(memory.pointer_to(base), class.slab_layout).is_err()
    {
        return;
    }
    let byte = base + (bit / 8) as usize;
    memory.flip_bit(byte, bit);
    let before = metadata_digest(&h.alloc);
    live.verify();
    // SAFETY: the object is live in the model, which owns it; if the free went through, the
    // assertion below fails before anything touches it.
    let result = unsafe { h.alloc.try_deallocate(live.ptr, live.layout) };
    let detected = matches!(result, Err(FreeError::Corrupted(Corruption::Header { addr })) if addr == base);
    count(kind, detected);
    assert!(
        detected,
        "undetected {kind}: bit {} of byte {} of the header of the slab {base:#x} ({} B, class of {} B) \
         flipped; the free of its live object {addr:#x} ({:?}) gave {result:?}",
        bit % 8,
        bit / 8,
        class.slab_size(),
        class.size,
        live.layout
    );
    assert_eq!(metadata_digest(&h.alloc), before, "{kind}: the rejected free changed metadata");
    memory.flip_bit(byte, bit);
    h.alloc.check_invariants().unwrap_or_else(|e| panic!("{kind}: after restoring the header: {e}"));
}

/// The class of an object's layout.
fn class_index<const EXACT: bool>(layout: std::alloc::Layout) -> usize {
    <Classes<EXACT> as SizeClasses>::class_of(layout).expect("an object's layout maps to a class")
}

/// Frees a block of another heap into the heap under test: `ForeignPointer`, nothing changed.
fn other_heap<A: RawAlloc + Inspect>(h: &mut Harness<A>, other: &mut Heap<false>, size: u16, align_log2: u8) {
    let block_layout = layout(usize::from(size) % 1024 + 1, 1 << (align_log2 % 5));
    let Ok(block) = other.allocate(block_layout) else { return };
    let ptr = block.cast::<u8>();
    let before = metadata_digest(&h.alloc);
    // SAFETY: `ptr` is not a block of the heap under test (another heap's region), which the
    // checked free must reject without touching it.
    let result = unsafe { h.alloc.try_deallocate(ptr, block_layout) };
    let detected = matches!(result, Err(FreeError::ForeignPointer { addr }) if addr == ptr.addr().get());
    count("other_heap", detected);
    assert!(detected, "undetected other_heap: a block of another heap at {ptr:?} gave {result:?}");
    assert_eq!(metadata_digest(&h.alloc), before, "other_heap: the rejected free changed metadata");
    // SAFETY: allocated just above from `other` with `block_layout`.
    unsafe { other.try_deallocate(ptr, block_layout) }.expect("free in its own heap");
}
