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
//! After a flip the metadata digest must be unchanged by the rejected call, and the bit is
//! restored; an undetected flip panics, naming its kind. The injected / detected counts per kind
//! are printed when the process exits. `BUDALLOC_FUZZ_SKIP=kind,...` leaves flip kinds out (to run
//! past a known, reported gap; see `budalloc_fuzz::skipped`).
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use budalloc_buddy::Block;
use budalloc_core::{AllocError, Corruption, FreeError, GuardKey, Inspect, RawAlloc};
use budalloc_fuzz::{claim_into, count, geometry, layout, shape, skipped, Arenas, Heap, Memory, MAX, MIN};
use budalloc_testkit::{metadata_digest, Action, BadFree, Harness, Region};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    arenas: Arenas,
    /// Exact fit (`Buddy<16, 4096, 2, true>`) instead of whole power-of-two blocks.
    exact: bool,
    steps: Vec<Step>,
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
    /// needed); free the buddy.
    FlipHeader { pick: usize, bit: u8, order: u8 },
    /// Free a block of another heap.
    OtherHeap { size: u16, align_log2: u8 },
}

fuzz_target!(|input: Input| {
    if input.exact {
        run::<true>(&input);
    } else {
        run::<false>(&input);
    }
});

fn run<const EXACT: bool>(input: &Input) {
    let memory = input.arenas.make();
    // Another heap, made on first use; its heap is dropped before its region.
    let mut other: Option<(Heap<false>, Region)> = None;
    let mut heap = Heap::<EXACT>::new();
    let claimed = claim_into(&mut heap, &memory);
    let mut h = Harness::new(heap, geometry(EXACT), claimed);
    for step in &input.steps {
        match *step {
            Step::Act(ref action) => act(&mut h, action),
            Step::Alloc { size, align_log2 } => act(&mut h, &Action::Alloc { size, align_log2 }),
            Step::Bad { kind, pick, offset } => act(&mut h, &Action::Bad { kind, pick, offset }),
            Step::FlipKey { arena, back, bit, by_alloc, pick } => {
                flip_key(&mut h, &memory, arena, back, bit, by_alloc, pick)
            }
            Step::FlipHeader { pick, bit, order } => flip_header(&mut h, &memory, pick, bit, order),
            Step::OtherHeap { size, align_log2 } => {
                let (other, _) = other.get_or_insert_with(|| {
                    let region = Region::new(8 * 1024, 4096);
                    let mut heap = Heap::<false>::new();
                    let (ptr, len) = region.whole();
                    // SAFETY: the region is valid, used by this heap only, and dropped after it
                    // (tuple fields drop in order).
                    unsafe { heap.claim_raw(ptr, len) }.expect("claim of the other heap");
                    (heap, region)
                });
                other_heap(&mut h, other, size, align_log2);
            }
        }
    }
    h.finish();
    assert!(h.alloc.is_pristine(), "not pristine after freeing everything");
}

/// One harness step; a bad free that the harness saw rejected (or, same-size, accepted) counts as
/// injected and detected (an undetected one panics inside the harness).
fn act<const EXACT: bool>(h: &mut Harness<Heap<EXACT>>, action: &Action) {
    let before = (h.tally.rejected, h.tally.fits_accepted);
    h.step(&shape(action));
    if let Action::Bad { kind, .. } = *action {
        if (h.tally.rejected, h.tally.fits_accepted) != before {
            let name = match kind {
                BadFree::Double => "bad_double_or_stale",
                BadFree::Interior => "bad_interior",
                BadFree::Foreign => "bad_foreign",
                BadFree::OtherOrder => "bad_other_order",
                BadFree::SameOrder => "same_order_accepted",
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

/// Frees a block of another heap into the heap under test: `ForeignPointer`, nothing changed.
fn other_heap<const EXACT: bool>(
    h: &mut Harness<Heap<EXACT>>,
    other: &mut Heap<false>,
    size: u16,
    align_log2: u8,
) {
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
