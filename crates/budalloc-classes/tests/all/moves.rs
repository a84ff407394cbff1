//! Differential test of the size classes' own `grow` and `shrink` (one check of the old block,
//! then a move that frees it from that check) against the trait's default (an in-place attempt,
//! then `relocate`, whose checked free checks the block again). Two heaps over regions aligned
//! alike run the same random actions; at every step both must answer the same: the block's
//! offset and length, the error variant, the contents kept, the figures, and (for a resize of a
//! freed block) unchanged metadata. Natively only: under Miri, `errors.rs` covers the same paths
//! one by one.

use core::alloc::Layout;
use core::mem::discriminant;
use core::ptr::NonNull;

use budalloc_buddy::Buddy;
use budalloc_classes::Classes;
use budalloc_core::{AllocError, Claim, Inspect, RawAlloc};

use budalloc_testkit::{DefaultResize, Region};

use crate::{digest, layout, Exact, Plain, LIMIT};

/// xorshift64: the same actions for both heaps, from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Sizes around the small-object limit and up to three times it (classes, fallback blocks,
/// large blocks, and moves between them), alignments up to a page.
fn random_layout(r: &mut Rng) -> Layout {
    let size = match r.below(4) {
        0 => r.below(64),
        1 => r.below(LIMIT + 1),
        2 => LIMIT - 64 + r.below(128),
        _ => r.below(3 * LIMIT),
    };
    layout(size, [1, 8, 16, 64, 4096][r.below(5)])
}

/// A resize of `ptr` from `old` to `new`: `grow` or `shrink` by the sizes.
///
/// # Safety
/// As `RawAlloc::grow` / `shrink`, but for the blocks a caller may pass deliberately (freed).
unsafe fn resize<H: RawAlloc>(
    h: &mut H,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
) -> Result<NonNull<[u8]>, AllocError> {
    if new.size() >= old.size() {
        // SAFETY: forwarded from our caller.
        unsafe { h.grow(ptr, old, new) }
    } else {
        // SAFETY: forwarded from our caller.
        unsafe { h.shrink(ptr, old, new) }
    }
}

/// What a result says, comparable across heaps: the offset from the heap's region and the
/// length of the block, or the error variant.
fn outcome(
    r: &Result<NonNull<[u8]>, AllocError>,
    base: usize,
) -> Result<(usize, usize), core::mem::Discriminant<AllocError>> {
    match r {
        Ok(b) => Ok((b.cast::<u8>().addr().get() - base, b.len())),
        Err(e) => Err(discriminant(e)),
    }
}

/// A block live in both heaps: its start in each, its layout and the byte it is filled with.
#[derive(Clone, Copy)]
struct Live {
    a: NonNull<u8>,
    b: NonNull<u8>,
    layout: Layout,
    fill: u8,
}

/// A heap `P` over a fresh region of `len` bytes aligned to 8 MiB: two such heaps place their
/// blocks at the same offsets (the buddy's blocks are aligned absolutely).
fn heap<P: Default + Claim>(len: usize) -> (P, Region, usize) {
    let region = Region::new(len, 8 << 20);
    let (ptr, len) = region.skewed(0);
    let mut heap = P::default();
    // SAFETY: the region is ours and outlives the heap (the caller keeps it until the end).
    unsafe { heap.claim_raw(ptr, len) }.expect("claim");
    (heap, region, ptr.addr())
}

fn fill(ptr: NonNull<u8>, len: usize, byte: u8) {
    // SAFETY: every caller passes a block live with at least `len` bytes.
    unsafe { ptr.as_ptr().write_bytes(byte, len) };
}

/// Runs `steps` random actions on a heap `P` and on the same heap with the default resizes.
fn differential<P: RawAlloc + Inspect + Default + Claim>(seed: u64, arena: usize, steps: usize) {
    let (mut a, _region_a, base_a) = heap::<P>(arena);
    let (b, _region_b, base_b) = heap::<P>(arena);
    let mut b = DefaultResize(b);
    let mut r = Rng(seed | 1);
    let mut live: Vec<Live> = Vec::new();
    let mut freed: Vec<Live> = Vec::new();
    for step in 0..steps {
        let choice = r.below(10);
        if choice < 4 || live.is_empty() {
            let l = random_layout(&mut r);
            let (x, y) = (a.allocate(l), b.allocate(l));
            assert_eq!(outcome(&x, base_a), outcome(&y, base_b), "step {step}: allocate {l:?}");
            if let (Ok(x), Ok(y)) = (x, y) {
                let byte = r.next() as u8;
                fill(x.cast(), l.size(), byte);
                fill(y.cast(), l.size(), byte);
                live.push(Live { a: x.cast(), b: y.cast(), layout: l, fill: byte });
            }
        } else if choice < 6 {
            let block = live.swap_remove(r.below(live.len()));
            // SAFETY: live in both heaps with its layout.
            let x = unsafe { a.try_deallocate(block.a, block.layout) };
            // SAFETY: as above.
            let y = unsafe { b.try_deallocate(block.b, block.layout) };
            assert!(x.is_ok() && y.is_ok(), "step {step}: free {:?}: {x:?} / {y:?}", block.layout);
            freed.push(block);
        } else if choice < 9 {
            let i = r.below(live.len());
            let block = live[i];
            let n = random_layout(&mut r);
            let n = layout(n.size(), if r.below(2) == 0 { block.layout.align() } else { n.align() });
            // SAFETY: live in both heaps with its layout.
            let x = unsafe { resize(&mut a, block.a, block.layout, n) };
            // SAFETY: as above.
            let y = unsafe { resize(&mut b, block.b, block.layout, n) };
            let what = format!("step {step}: resize {:?} -> {n:?}: {x:?} / {y:?}", block.layout);
            assert_eq!(outcome(&x, base_a), outcome(&y, base_b), "{what}");
            if let (Ok(x), Ok(y)) = (x, y) {
                let kept = block.layout.size().min(n.size());
                // SAFETY: the block is live with at least `n.size() >= kept` bytes.
                let bytes = unsafe { core::slice::from_raw_parts(x.cast::<u8>().as_ptr(), kept) };
                assert!(bytes.iter().all(|&v| v == block.fill), "{what}: contents lost");
                let byte = r.next() as u8;
                fill(x.cast(), n.size(), byte);
                fill(y.cast(), n.size(), byte);
                if x.cast::<u8>() != block.a {
                    freed.push(block);
                }
                live[i] = Live { a: x.cast(), b: y.cast(), layout: n, fill: byte };
            }
        } else {
            // A freed block, unless its memory is (part of) a live block again: that call would
            // be a resize of someone else's block.
            let inside = |f: &Live| {
                live.iter().any(|l| {
                    (l.a.addr()..l.a.addr().saturating_add(l.layout.size().max(1))).contains(&f.a.addr())
                })
            };
            freed.retain(|f| !inside(f));
            if freed.is_empty() {
                continue;
            }
            let stale = freed[r.below(freed.len())];
            let n = random_layout(&mut r);
            let before = digest(&a);
            // SAFETY: deliberately invalid: a freed block, which no live block covers; both
            // heaps must refuse it and change nothing.
            let x = unsafe { resize(&mut a, stale.a, stale.layout, n) };
            // SAFETY: as above.
            let y = unsafe { resize(&mut b, stale.b, stale.layout, n) };
            let what = format!("step {step}: resize of a freed {:?} -> {n:?}: {x:?} / {y:?}", stale.layout);
            assert!(x.as_ref().is_err_and(AllocError::is_misuse), "{what}");
            assert_eq!(outcome(&x, base_a), outcome(&y, base_b), "{what}");
            assert_eq!(digest(&a), before, "{what}: metadata changed");
        }
        a.check_invariants().unwrap_or_else(|e| panic!("step {step}: {e}"));
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!((sa.allocated, sa.free), (sb.allocated, sb.free), "step {step}: figures differ");
        if freed.len() > 64 {
            freed.remove(0);
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "minutes under Miri; errors.rs covers these paths there")]
fn own_resizes_answer_as_the_default_ones_do() {
    for seed in 1..=8u64 {
        for arena in [256 * 1024, 1 << 20, 4 << 20] {
            let seed = seed * 7919;
            differential::<Exact>(seed, arena, 2000);
            differential::<Plain>(seed, arena, 2000);
            differential::<Classes<Buddy<16, { 1 << 30 }, 8, true>, 1024, 4, 3>>(seed, arena, 2000);
            differential::<Classes<Buddy<16, { 1 << 30 }, 8, true>, 4096, 8, 1>>(seed, arena, 2000);
        }
    }
}
