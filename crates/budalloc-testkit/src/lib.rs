//! # budalloc-testkit: one operation language, one shadow model (dev-only)
//!
//! This crate owns what every budalloc test shares:
//! - [`Action`]: the operation language (allocate, free, grow, shrink, and bad frees of every
//!   kind) with proptest strategies ([`actions`]);
//! - [`Harness`]: runs actions against any [`RawAlloc`] + [`Inspect`] policy and a shadow model
//!   of live ranges with fill patterns, checking after every step: alignment, block inside an
//!   arena, no overlap, size at least as requested, contents kept across grow and shrink, every
//!   rejected call leaves the metadata byte-identical, the expected error variant, and
//!   `check_invariants()`;
//! - [`Region`]: owned, aligned test regions that are freed when the test ends (so Miri's leak
//!   check stays on);
//! - [`Fake`]: a stand-in backing policy (a first-fit map of blocks, nothing written into the
//!   region), for the tests of a layer over a backend, under Stacked Borrows too.
//!
//! Architecture invariant: this crate depends on `budalloc-core` only (with its
//! `check-invariants` feature), never on a policy or a frontend, so every policy's tests can use
//! it. It is never a normal dependency of a published crate.

use std::alloc::{alloc, dealloc, Layout};
use std::ptr::NonNull;

use budalloc_core::{AllocError, Claim, FreeError, Inspect, RawAlloc, Stats};
use proptest::prelude::*;

mod classes;
pub use classes::{DefaultResize, PowerClasses};
mod fake;
pub use fake::Fake;
pub mod conformance;
mod model;
pub use model::{Live, Model};

/// Proptest settings for budalloc: the environment's `PROPTEST_CASES` (256 by default), cut to
/// 8 cases without failure files under Miri.
pub fn proptest_config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if cfg!(miri) {
        config.cases = config.cases.min(8);
        config.failure_persistence = None;
    }
    config
}

/// An owned, aligned region of memory for a test arena, returned to the system allocator on drop.
/// Drop the allocator using it first.
#[derive(Debug)]
pub struct Region {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl Region {
    /// `len` bytes aligned to `align` (a power of two).
    pub fn new(len: usize, align: usize) -> Region {
        let layout = Layout::from_size_align(len.max(1), align).expect("test region layout");
        // SAFETY: `layout.size() >= 1`.
        let base = unsafe { alloc(layout) };
        let ptr = NonNull::new(base).expect("system allocator out of memory");
        Region { ptr, layout }
    }

    /// The region minus its first `offset` bytes (to test odd starts): pointer and length.
    pub fn skewed(&self, offset: usize) -> (*mut u8, usize) {
        let offset = offset.min(self.layout.size());
        // SAFETY: `offset <= layout.size()`, so the pointer stays inside (or one past) the
        // allocation.
        let ptr = unsafe { self.ptr.as_ptr().add(offset) };
        (ptr, self.layout.size() - offset)
    }

    /// Start and length of the whole region.
    pub fn whole(&self) -> (*mut u8, usize) {
        (self.ptr.as_ptr(), self.layout.size())
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `ptr` was returned by `alloc` with exactly this layout.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// Which misuse an [`Action::Bad`] injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum BadFree {
    /// Free a block that was freed before (if its address is not live again).
    Double,
    /// Free a live block at `offset % len` bytes past its start (offset 0 is skipped).
    Interior,
    /// Free a pointer to memory no arena holds (a stack variable, a static, the system heap).
    Foreign,
    /// Free a live block with the layout of another block size.
    OtherOrder,
    /// Free a live block with another size of the same block size: must succeed (the "fits"
    /// rule).
    SameOrder,
}

/// One step of a test: the operation language shared by proptest, fuzzing and loom scenarios.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Action {
    /// Allocate `size` bytes aligned to `1 << align_log2`.
    Alloc {
        /// Requested size.
        size: usize,
        /// log2 of the requested alignment.
        align_log2: u8,
    },
    /// Free the live block number `pick % live`.
    Free {
        /// Which live block.
        pick: usize,
    },
    /// Grow (or, if smaller, shrink) live block `pick % live` to `size` bytes.
    Resize {
        /// Which live block.
        pick: usize,
        /// New size in bytes.
        size: usize,
    },
    /// Inject a misuse; `pick` and `offset` choose the block and the byte.
    Bad {
        /// The misuse.
        kind: BadFree,
        /// Which block.
        pick: usize,
        /// Byte offset for interior pointers, size choice for layouts.
        offset: usize,
    },
}

/// Sizes that hit every kind of boundary: tiny, around powers of two, and large.
pub fn size_strategy(max: usize) -> impl Strategy<Value = usize> {
    let max_log2 = max.max(2).ilog2();
    prop_oneof![
        4 => 1usize..=64,
        3 => 1usize..=1024,
        2 => (0..=max_log2, -1i64..=1).prop_map(|(k, d)| (1i64 << k).saturating_add(d).max(1) as usize),
        1 => 1usize..=max,
        1 => max..=max.saturating_mul(4),
    ]
}

/// One action, for policies whose largest block is `max` bytes.
pub fn action_strategy(max: usize) -> impl Strategy<Value = Action> {
    let max_log2 = max.max(2).ilog2() as u8;
    let bad = prop_oneof![
        Just(BadFree::Double),
        Just(BadFree::Interior),
        Just(BadFree::Foreign),
        Just(BadFree::OtherOrder),
        Just(BadFree::SameOrder),
    ];
    prop_oneof![
        6 => (size_strategy(max), prop_oneof![4 => 0u8..=3, 1 => 0..=max_log2 + 1])
            .prop_map(|(size, align_log2)| Action::Alloc { size, align_log2 }),
        4 => any::<usize>().prop_map(|pick| Action::Free { pick }),
        2 => (any::<usize>(), size_strategy(max)).prop_map(|(pick, size)| Action::Resize { pick, size }),
        2 => (bad, any::<usize>(), any::<usize>()).prop_map(|(kind, pick, offset)| Action::Bad { kind, pick, offset }),
    ]
}

/// A sequence of up to `len` actions.
pub fn actions(max: usize, len: usize) -> impl Strategy<Value = Vec<Action>> {
    proptest::collection::vec(action_strategy(max), 1..=len)
}

/// How a policy sizes the blocks it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// The whole power-of-two block: `next_power_of_two(max(size, align, min))` bytes.
    PowerOfTwo,
    /// Exact fit: `max(1, ceil(size / min)) * min` bytes.
    Exact,
    /// At least the size asked for (size classes).
    AtLeast,
}

/// What the policy under test is made of, for the model's oracle.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    /// Smallest block.
    pub min: usize,
    /// Largest block (and largest alignment).
    pub max: usize,
    /// How returned lengths relate to requests.
    pub fit: Fit,
}

impl Geometry {
    /// The power-of-two block a request maps to, computed in `u128` so the oracle itself cannot
    /// overflow: `Ok(block)`, or the error class the policy must report.
    pub fn expect(&self, size: usize, align: usize) -> Result<u128, ErrorClass> {
        if align > self.max {
            return Err(ErrorClass::AlignTooLarge);
        }
        let needed = (size as u128).max(align as u128).max(self.min as u128);
        let block = needed.next_power_of_two();
        if block > self.max as u128 {
            return Err(ErrorClass::TooLarge);
        }
        Ok(block)
    }

    /// The length a successful request must return, if the fit says exactly.
    pub fn returned(&self, size: usize, block: u128) -> Option<u128> {
        match self.fit {
            Fit::PowerOfTwo => Some(block),
            Fit::Exact => Some((size as u128).div_ceil(self.min as u128).max(1) * self.min as u128),
            Fit::AtLeast => None,
        }
    }
}

/// Error classes the oracle predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// `TooLarge` or `SizeOverflow`.
    TooLarge,
    /// `AlignTooLarge`.
    AlignTooLarge,
}

/// Counts of what a run did, for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Successful allocations.
    pub allocs: usize,
    /// Allocations refused for lack of memory.
    pub oom: usize,
    /// Allocations refused as too large or too aligned.
    pub refused: usize,
    /// Successful frees.
    pub frees: usize,
    /// Resizes done in place.
    pub resized_in_place: usize,
    /// Resizes that moved the block.
    pub resized_moved: usize,
    /// Resizes that failed.
    pub resize_failed: usize,
    /// Injected misuses, rejected as expected.
    pub rejected: usize,
    /// Same-order frees accepted.
    pub fits_accepted: usize,
}

/// Runs [`Action`]s against a policy and the shadow model, panicking at the first divergence.
pub struct Harness<A: RawAlloc + Inspect> {
    /// The policy under test.
    pub alloc: A,
    /// The shadow model of live blocks.
    pub model: Model,
    geometry: Geometry,
    /// The regions given to the policy (with their provenance), for the "inside an arena" check
    /// and for building pointers into them.
    regions: Vec<(NonNull<u8>, usize)>,
    /// Addresses freed earlier, for double-free injection.
    freed: Vec<(usize, Layout)>,
    /// Free blocks per order right after the arenas were claimed.
    initial: Stats,
    /// Whether to run `check_invariants()` after every step, and to take the metadata digest
    /// before every allocation and resize so that a failed one is shown to change nothing
    /// (both O(metadata)). On by default; the replays turn it off under Miri, where each takes
    /// about a second: the invariants are then checked once, by [`Harness::finish`], and
    /// rejected frees are still digested.
    pub check_every_step: bool,
    /// What happened.
    pub tally: Tally,
    foreign: Box<[u8; 64]>,
}

static FOREIGN_STATIC: [u8; 64] = [0; 64];

/// FNV-1a over a policy's metadata stream, a word at a time: equal digests before and after a
/// rejected call mean the call changed no byte. Each step (xor a word, multiply by an odd
/// number) is a bijection of the running hash, so a change of any one word always changes the
/// digest. Returns the digest and the stream's length in words.
pub fn metadata_digest(alloc: &impl Inspect) -> (u64, usize) {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut len = 0;
    alloc.visit_metadata(&mut |words| {
        len += words.len();
        for &word in words {
            hash = (hash ^ word as u64).wrapping_mul(0x0100_0000_01b3);
        }
    });
    (hash, len)
}

/// A fresh `P` over a new region of `len` bytes aligned to `align`, starting `skew` bytes in:
/// the heap, the region (keep it alive as long as the heap) and the piece claimed.
///
/// # Panics
/// If the heap refuses the region.
pub fn fresh_heap<P: Default + Claim>(
    len: usize,
    skew: usize,
    align: usize,
) -> (P, Region, (*mut u8, usize)) {
    let region = Region::new(len + skew, align);
    let (ptr, len) = region.skewed(skew);
    let mut heap = P::default();
    // SAFETY: the region is ours and outlives the heap (the caller keeps it as long).
    unsafe { heap.claim_raw(ptr, len) }.expect("claim");
    (heap, region, (ptr, len))
}

/// Replays `actions` on a fresh `P` over one region of `arena` bytes aligned to `align`, starting
/// `skew` bytes in, with every harness check after every step (natively; under Miri only at the
/// end), then frees everything and checks the seeding ([`Harness::finish`]).
///
/// # Panics
/// On the first check that fails.
pub fn replay<P: Default + RawAlloc + Inspect + Claim>(
    actions: &[Action],
    geometry: Geometry,
    (arena, skew, align): (usize, usize, usize),
) {
    let (heap, _region, whole) = fresh_heap::<P>(arena, skew, align);
    let mut harness = Harness::new(heap, geometry, vec![whole]);
    harness.check_every_step = !cfg!(miri);
    harness.run(actions);
    harness.finish();
}

/// Frees `ptr` with `layout`, expecting an error that `check` accepts, the same error from
/// `validate`, and no change of metadata (a digest of it before and after).
///
/// # Panics
/// If the free succeeds, gives another error, disagrees with `validate`, or changes metadata.
///
/// # Safety
/// `ptr` must not be the start of a block currently allocated from `heap` that someone else
/// owns: if the free were (wrongly) accepted, that block would be freed.
pub unsafe fn expect_rejected<P: RawAlloc + Inspect>(
    heap: &mut P,
    ptr: NonNull<u8>,
    layout: Layout,
    check: impl Fn(&FreeError) -> bool,
) {
    let before = metadata_digest(heap);
    let predicted = heap.validate(ptr, layout);
    // SAFETY: the caller's promise: no one else's live block is at `ptr`.
    let result = unsafe { heap.try_deallocate(ptr, layout) };
    assert_eq!(predicted, result, "validate and free disagree");
    match result {
        Err(ref e) if check(e) => {}
        other => panic!("free of {:#x} with {layout:?} gave {other:?}", ptr.addr()),
    }
    assert_eq!(metadata_digest(heap), before, "a rejected call changed metadata");
}

impl<A: RawAlloc + Inspect> Harness<A> {
    /// A harness over `alloc`, which holds exactly the regions `regions` (pointer and length).
    pub fn new(alloc: A, geometry: Geometry, regions: Vec<(*mut u8, usize)>) -> Self {
        let regions = regions.into_iter().filter_map(|(p, l)| Some((NonNull::new(p)?, l))).collect();
        alloc.check_invariants().expect("invariants after claiming");
        let initial = alloc.stats();
        Harness {
            alloc,
            model: Model::default(),
            geometry,
            regions,
            freed: Vec::new(),
            initial,
            check_every_step: true,
            tally: Tally::default(),
            foreign: Box::new([0; 64]),
        }
    }

    fn check(&self, what: &Action) {
        if self.check_every_step {
            if let Err(e) = self.alloc.check_invariants() {
                panic!("{e} after {what:?}\n{}", self.model.describe());
            }
        }
        let stats = self.alloc.stats();
        assert_eq!(
            stats.allocated + stats.free,
            stats.capacity,
            "allocated + free = capacity after {what:?}"
        );
        assert_eq!(
            stats.allocated,
            self.model.block_bytes(),
            "allocated bytes agree with the model after {what:?}"
        );
    }

    /// Runs a sequence of actions.
    pub fn run(&mut self, actions: &[Action]) {
        for action in actions {
            self.step(action);
        }
    }

    /// Runs one action and checks everything.
    pub fn step(&mut self, action: &Action) {
        match *action {
            Action::Alloc { size, align_log2 } => self.alloc_one(size, 1usize << align_log2.min(40)),
            Action::Free { pick } => {
                if let Some(addr) = self.model.pick(pick) {
                    self.free_one(addr);
                }
            }
            Action::Resize { pick, size } => {
                if let Some(addr) = self.model.pick(pick) {
                    self.resize_one(addr, size);
                }
            }
            Action::Bad { kind, pick, offset } => self.bad_one(kind, pick, offset),
        }
        self.check(action);
    }

    /// Allocates and records a block, or checks that the refusal was right and changed nothing.
    pub fn alloc_one(&mut self, size: usize, align: usize) {
        let Ok(layout) = Layout::from_size_align(size, align) else { return };
        let before = self.digest_if_checking();
        let expected = self.geometry.expect(size, align);
        match (self.alloc.allocate(layout), expected) {
            (Ok(block), Ok(len)) => {
                let ptr = block.cast::<u8>();
                let addr = ptr.addr().get();
                assert_eq!(addr % align, 0, "block {addr:#x} not aligned to {align}");
                assert!(block.len() >= size, "block shorter than requested");
                if let Some(expected) = self.geometry.returned(size, len) {
                    assert_eq!(block.len() as u128, expected, "returned length for {size} bytes");
                }
                assert!(
                    self.region_of(addr).is_some_and(|(p, l)| addr + block.len() <= p.addr().get() + l),
                    "block {addr:#x}+{} outside every arena",
                    block.len()
                );
                let rebased = self.alloc.rebase(ptr).map(NonNull::addr);
                assert_eq!(rebased, Some(ptr.addr()), "rebase of a fresh block {addr:#x}");
                assert_eq!(self.alloc.validate(ptr, layout), Ok(()), "fresh block {addr:#x} not valid");
                self.model.insert(ptr, layout, block.len());
                self.tally.allocs += 1;
            }
            (Err(AllocError::OutOfMemory { .. }), Ok(len)) => {
                assert!(
                    (self.alloc.stats().largest_free as u128) < len,
                    "out of memory for a {len}-byte block although a free block is that large"
                );
                self.assert_unchanged(before, "failed allocation changed metadata");
                self.tally.oom += 1;
            }
            (
                Err(AllocError::TooLarge { .. } | AllocError::SizeOverflow { .. }),
                Err(ErrorClass::TooLarge),
            )
            | (Err(AllocError::AlignTooLarge { .. }), Err(ErrorClass::AlignTooLarge)) => {
                self.assert_unchanged(before, "refused allocation changed metadata");
                self.tally.refused += 1;
            }
            (got, want) => panic!("allocate({size}, {align}) gave {got:?}, the oracle expects {want:?}"),
        }
    }

    /// Frees the live block at `addr`, checking its contents first.
    pub fn free_one(&mut self, addr: usize) {
        let live = self.model.remove(addr);
        live.verify();
        assert_eq!(self.alloc.validate(live.ptr, live.layout), Ok(()), "live block {addr:#x} not valid");
        // SAFETY: the block is live in the model, so it is currently allocated and ours.
        let result = unsafe { self.alloc.try_deallocate(live.ptr, live.layout) };
        result.unwrap_or_else(|e| panic!("valid free of {addr:#x} rejected: {e}"));
        self.freed.push((addr, live.layout));
        self.tally.frees += 1;
    }

    fn resize_one(&mut self, addr: usize, size: usize) {
        let live = self.model.get(addr).clone();
        live.verify();
        let Ok(new) = Layout::from_size_align(size, live.layout.align()) else { return };
        let before = self.digest_if_checking();
        let grow = size >= live.layout.size();
        let result = if grow {
            // SAFETY: the block is live in the model, `live.layout` fits it, and
            // `size >= live.layout.size()`.
            unsafe { self.alloc.grow(live.ptr, live.layout, new) }
        } else {
            // SAFETY: as above, with `size < live.layout.size()`.
            unsafe { self.alloc.shrink(live.ptr, live.layout, new) }
        };
        match result {
            Ok(block) => {
                let ptr = block.cast::<u8>();
                assert!(block.len() >= size, "resized block shorter than requested");
                assert_eq!(ptr.addr().get() % new.align(), 0, "resized block misaligned");
                // Contents kept up to the smaller size.
                live.verify_prefix(ptr, live.layout.size().min(size));
                self.model.remove(addr);
                if ptr.addr().get() == addr {
                    self.tally.resized_in_place += 1;
                } else {
                    self.tally.resized_moved += 1;
                    self.freed.push((addr, live.layout));
                }
                self.model.insert(ptr, new, block.len());
            }
            Err(
                AllocError::OutOfMemory { .. }
                | AllocError::TooLarge { .. }
                | AllocError::SizeOverflow { .. },
            ) => {
                live.verify();
                self.assert_unchanged(before, "failed resize changed metadata");
                self.tally.resize_failed += 1;
            }
            Err(e) => panic!("resize of {addr:#x} to {size} failed with {e}"),
        }
    }

    fn expect_rejected(&mut self, ptr: NonNull<u8>, layout: Layout, check: impl FnOnce(&FreeError) -> bool) {
        let before = metadata_digest(&self.alloc);
        let predicted = self.alloc.validate(ptr, layout);
        // SAFETY: `ptr` is not the start of a block currently allocated to anyone (each caller
        // checks against the model), so the call cannot free someone else's block.
        let result = unsafe { self.alloc.try_deallocate(ptr, layout) };
        assert_eq!(predicted, result, "validate disagrees with the free of {:#x} ({layout:?})", ptr.addr());
        match result {
            Err(ref e) if check(e) => {}
            other => panic!("bad free of {:#x} ({layout:?}) gave {other:?}", ptr.addr()),
        }
        assert_eq!(metadata_digest(&self.alloc), before, "rejected free changed metadata");
        self.tally.rejected += 1;
    }

    fn bad_one(&mut self, kind: BadFree, pick: usize, offset: usize) {
        match kind {
            BadFree::Double => {
                if self.freed.is_empty() {
                    return;
                }
                let (addr, layout) = self.freed[pick % self.freed.len()];
                if self.model.contains_start(addr) {
                    return; // reused since: freeing it would free its new owner (documented UB)
                }
                let inside_live = self.model.containing(addr).is_some();
                let Some(ptr) = self.pointer_into_arenas(addr) else { return };
                self.expect_rejected(ptr, layout, |e| match e {
                    FreeError::DoubleFree { .. } => !inside_live,
                    FreeError::InteriorPointer { .. } => inside_live,
                    _ => false,
                });
            }
            BadFree::Interior => {
                let Some(addr) = self.model.pick(pick) else { return };
                let live = self.model.get(addr).clone();
                let off = 1 + offset % (live.len - 1).max(1);
                if off >= live.len {
                    return;
                }
                let ptr = live.ptr.map_addr(|a| a.checked_add(off).unwrap_or(a));
                self.expect_rejected(ptr, live.layout, |e| matches!(e, FreeError::InteriorPointer { .. }));
            }
            BadFree::Foreign => {
                let local = 0u64;
                let ptr = match pick % 3 {
                    0 => NonNull::from(&local).cast::<u8>(),
                    1 => NonNull::from(&FOREIGN_STATIC).cast::<u8>(),
                    _ => NonNull::from(&*self.foreign).cast::<u8>(),
                };
                let layout = Layout::new::<u64>();
                assert_eq!(self.alloc.rebase(ptr), None, "rebase of a foreign pointer");
                self.expect_rejected(ptr, layout, |e| matches!(e, FreeError::ForeignPointer { .. }));
            }
            BadFree::OtherOrder => {
                let Some(addr) = self.model.pick(pick) else { return };
                let live = self.model.get(addr).clone();
                let Some(layout) = self.other_order_layout(&live, offset) else { return };
                self.expect_rejected(live.ptr, layout, |e| matches!(e, FreeError::LayoutMismatch { .. }));
            }
            BadFree::SameOrder => {
                let Some(addr) = self.model.pick(pick) else { return };
                let live = self.model.get(addr).clone();
                let Some(layout) = self.same_fit_layout(&live, offset) else { return };
                live.verify();
                let live = self.model.remove(addr);
                // SAFETY: the block is live in the model, and `layout` fits it.
                let result = unsafe { self.alloc.try_deallocate(live.ptr, layout) };
                result.unwrap_or_else(|e| panic!("fitting free of {addr:#x} with {layout:?} rejected: {e}"));
                self.freed.push((addr, layout));
                self.tally.fits_accepted += 1;
            }
        }
    }

    /// Another layout that fits `live`: a size between the requested one and the returned
    /// length (allocator-api2's rule), chosen by `choice`.
    fn same_fit_layout(&self, live: &Live, choice: usize) -> Option<Layout> {
        let low = live.layout.size().max(1);
        let size = low + choice % (live.len - low + 1);
        Layout::from_size_align(size, live.layout.align()).ok()
    }

    /// A layout mapping to another block size than `live`'s.
    fn other_order_layout(&self, live: &Live, choice: usize) -> Option<Layout> {
        let align = live.layout.align();
        let bigger = live.len.checked_mul(2).filter(|&s| s <= self.geometry.max);
        let smaller = (live.len > self.geometry.min && align <= live.len / 2).then_some(live.len / 2);
        let size = match (choice % 3, bigger, smaller) {
            // One fragment more: another allocation size under exact fit, another block
            // otherwise.
            (2, _, _)
                if self.geometry.fit == Fit::Exact && live.len + self.geometry.min <= self.geometry.max =>
            {
                live.len + self.geometry.min
            }
            (0 | 2, Some(b), _) | (1, Some(b), None) => b,
            (_, _, Some(s)) => s,
            _ => return None,
        };
        Layout::from_size_align(size, align).ok()
    }

    /// The metadata digest, if [`Self::check_every_step`] asks for it.
    fn digest_if_checking(&self) -> Option<(u64, usize)> {
        self.check_every_step.then(|| metadata_digest(&self.alloc))
    }

    /// Panics with `what` if a digest was taken and the metadata no longer matches it.
    fn assert_unchanged(&self, before: Option<(u64, usize)>, what: &str) {
        if let Some(before) = before {
            assert_eq!(metadata_digest(&self.alloc), before, "{what}");
        }
    }

    /// The region that contains `addr`.
    fn region_of(&self, addr: usize) -> Option<(NonNull<u8>, usize)> {
        self.regions.iter().copied().find(|&(p, l)| addr.wrapping_sub(p.addr().get()) < l)
    }

    /// A pointer to `addr` with the provenance of the region that holds it.
    fn pointer_into_arenas(&self, addr: usize) -> Option<NonNull<u8>> {
        let (base, _) = self.region_of(addr)?;
        Some(base.with_addr(std::num::NonZeroUsize::new(addr)?))
    }

    /// Checks the invariants of the state the run left (unless the last step did), frees every
    /// live block, then checks that the arenas are back to their initial seeding and that
    /// their largest block allocates.
    pub fn finish(&mut self) {
        if !self.check_every_step {
            if let Err(e) = self.alloc.check_invariants() {
                panic!("{e} after the run\n{}", self.model.describe());
            }
        }
        for addr in self.model.addresses() {
            self.free_one(addr);
        }
        self.alloc.check_invariants().expect("invariants after freeing everything");
        // Whatever the policy keeps aside to go faster goes back to its free lists first.
        self.alloc.flush();
        self.alloc.check_invariants().expect("invariants after flushing");
        let stats = self.alloc.stats();
        assert_eq!(stats.allocated, 0, "bytes still allocated after freeing everything");
        assert_eq!(
            stats.free_blocks, self.initial.free_blocks,
            "free blocks differ from the initial seeding"
        );
        if stats.largest_free > 0 {
            let layout = Layout::from_size_align(stats.largest_free, 1).expect("largest block layout");
            let block =
                self.alloc.allocate(layout).expect("the largest block allocates after freeing everything");
            // SAFETY: just allocated with `layout`.
            unsafe { self.alloc.try_deallocate(block.cast(), layout) }.expect("free of the largest block");
        }
    }
}
