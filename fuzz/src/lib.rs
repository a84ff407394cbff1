//! # budalloc-fuzz: what the cargo-fuzz targets share
//!
//! - [`Arenas`]: the fuzzed memory: one test region of up to 32 KiB, its start skewed by up to
//!   255 bytes, optionally cut into two adjacent arenas;
//! - [`shape`]: maps raw [`Action`]s onto sizes and alignments worth trying (mostly small, some
//!   around powers of two, some at the overflow boundaries, some anything);
//! - [`run_actions`]: the body of `buddy_ops` and `buddy_exact_ops`; [`run_class_actions`]:
//!   the body of `classes_ops` (size classes over the buddy);
//! - [`count`]: per-kind injected / detected counters, printed when the process exits;
//!   [`skipped`]: fault kinds left out on request (`BUDALLOC_FUZZ_SKIP`).
//!
//! Architecture invariant: this crate sits on top of everything (policies, frontends, testkit)
//! and nothing depends on it. It is outside the main workspace and builds only through
//! `cargo +nightly fuzz`.

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::io::Write;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::{Mutex, Once, OnceLock};

use arbitrary::Arbitrary;
use budalloc_buddy::Buddy;
use budalloc_classes::Classes;
use budalloc_core::{Claim, Inspect, RawAlloc, RegionError};
use budalloc_testkit::{Action, Fit, Geometry, Harness, Region};
use budalloc_tlsf::Tlsf;

/// Smallest block of the fuzzed heaps.
pub const MIN: usize = 16;
/// Largest block (and largest alignment) of the fuzzed heaps.
pub const MAX: usize = 4096;

/// The fuzzed policy: 16-byte fragments, 4 KiB largest block, room for two arenas.
pub type Heap<const EXACT: bool> = Buddy<MIN, MAX, 2, EXACT>;

/// The oracle's view of [`Heap`].
pub fn geometry(exact: bool) -> Geometry {
    Geometry { min: MIN, max: MAX, fit: if exact { Fit::Exact } else { Fit::PowerOfTwo } }
}

/// Largest test region, before the skew.
pub const MAX_REGION: usize = 32 * 1024;

/// A region length from which a claim must succeed whatever the skew: padding to `MIN` (< 16),
/// one fragment (16) and the smallest bitmap (two keys and one word: 24).
pub const SURELY_ENOUGH: usize = 64;

/// The memory a heap gets, as the input describes it.
#[derive(Arbitrary, Clone, Debug)]
pub struct Arenas {
    /// Region length, modulo `MAX_REGION + 1`.
    pub len: u16,
    /// Bytes skipped at the start of the 4 KiB-aligned region (odd starts).
    pub skew: u8,
    /// If set, the region is cut at `cut % (len + 1)` into two adjacent arenas.
    pub cut: Option<u16>,
}

/// A test region and the pieces of it handed to a heap. Declare it before the heap, so that it is
/// dropped after it.
pub struct Memory {
    region: Region,
    /// The pieces to claim: pointer (with the region's provenance) and length.
    pub regions: Vec<(*mut u8, usize)>,
}

impl Arenas {
    /// Allocates the region (at most [`MAX_REGION`] bytes, 4 KiB-aligned before the skew) and
    /// cuts it as described.
    pub fn make(&self) -> Memory {
        self.make_in(MAX_REGION, 4096)
    }

    /// As [`make`](Self::make), for a region of at most `max_region` bytes aligned to `align`
    /// before the skew. Above 64 KiB the fuzzed length and cut are scaled by `max_region / 64 KiB`.
    pub fn make_in(&self, max_region: usize, align: usize) -> Memory {
        let unit = (max_region >> 16).max(1);
        let len = usize::from(self.len) * unit % (max_region + 1);
        let skew = usize::from(self.skew);
        let region = Region::new(len + skew, align);
        let (ptr, len) = region.skewed(skew);
        let regions = match self.cut {
            None => vec![(ptr, len)],
            Some(cut) => {
                let cut = usize::from(cut) * unit % (len + 1);
                vec![(ptr, cut), (ptr.wrapping_add(cut), len - cut)]
            }
        };
        Memory { region, regions }
    }
}

impl Memory {
    /// A pointer to `addr`, which must lie in the region, with the region's provenance: for
    /// fault injection into the heap's metadata.
    pub fn pointer_to(&self, addr: usize) -> NonNull<u8> {
        let (base, len) = self.region.whole();
        let base = NonNull::new(base).expect("regions are not null");
        assert!(addr.wrapping_sub(base.addr().get()) < len, "{addr:#x} is outside the test region");
        base.with_addr(NonZeroUsize::new(addr).expect("inside the region, so not null"))
    }

    /// Whether `addr` lies in the test region.
    pub fn contains(&self, addr: usize) -> bool {
        let (base, len) = self.region.whole();
        addr.wrapping_sub(base.addr()) < len
    }

    /// Flips bit `bit` (0..8) of the byte at `addr` in the region: a simulated stray write.
    pub fn flip_bit(&self, addr: usize, bit: u32) {
        let ptr = self.pointer_to(addr);
        // SAFETY: `ptr` points into the live test region (checked by `pointer_to`) and carries
        // its provenance. The heap keeps no reference into its region between calls (it reaches
        // metadata and headers through raw pointers re-derived on each access), so this write
        // is seen by the next call exactly as a stray write would be.
        unsafe { *ptr.as_ptr() ^= 1 << (bit % 8) };
    }
}

/// Claims every piece of `memory` that is large enough into `heap`, and returns the claimed ones.
/// A refusal is only allowed for a piece shorter than [`SURELY_ENOUGH`], and must be `TooSmall`.
pub fn claim_into<A: Claim>(heap: &mut A, memory: &Memory) -> Vec<(*mut u8, usize)> {
    claim_pieces(heap, memory, SURELY_ENOUGH)
}

/// [`claim_into`] for a heap whose smallest workable region is longer: a refusal is allowed for
/// a piece shorter than `surely`.
pub fn claim_pieces<A: Claim>(heap: &mut A, memory: &Memory, surely: usize) -> Vec<(*mut u8, usize)> {
    let mut claimed = Vec::new();
    for &(ptr, len) in &memory.regions {
        // SAFETY: the pieces are disjoint parts of `memory`'s region, valid for reads and writes;
        // every target declares `memory` before the heap, so the region outlives it, and touches
        // it only through the heap (and, in `abuse`, through deliberate fault injection).
        match unsafe { heap.claim_raw(ptr, len) } {
            Ok(()) => claimed.push((ptr, len)),
            Err(RegionError::TooSmall { .. }) if len < surely => {}
            Err(e) => panic!("claim of a {len}-byte region at {:#x} refused: {e}", ptr.addr()),
        }
    }
    claimed
}

/// The sizes and alignments a target asks for: see [`Scale::size`] and [`Scale::align_log2`].
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    /// Most requests are up to a quarter above this (the largest small object).
    pub small: usize,
    /// Some requests are up to a quarter above this (the largest block).
    pub max: usize,
}

/// The scale of the buddy targets: everything up to [`MAX`].
pub const BUDDY_SCALE: Scale = Scale { small: MAX, max: MAX };

impl Scale {
    /// A fuzzed request size: mostly small, some around powers of two (`2^k - 2 ..= 2^k + 2`, up
    /// to `2^63`, wrapping at `2^0`), some just below `usize::MAX` and `isize::MAX`, some
    /// anything; the rest up to `1.25 * small` (5 in 16) or `1.25 * max` (4 in 16).
    pub fn size(self, raw: usize) -> usize {
        let rest = raw >> 4;
        match raw & 15 {
            0 | 1 => rest % 65,
            2 | 3 => {
                let k = (rest % 64) as u32;
                (1usize << k).wrapping_add((rest >> 6) % 5).wrapping_sub(2)
            }
            4 => usize::MAX - rest % 64,
            5 => (usize::MAX >> 1) - rest % 64,
            6 => rest,
            7..=11 => rest % (self.small + self.small / 4),
            _ => rest % (self.max + self.max / 4),
        }
    }

    /// A fuzzed log2 alignment: mostly 1 to 8 bytes, some up to twice `max` (beyond it), some raw
    /// (the harness caps them at `2^40`).
    pub fn align_log2(self, raw: u8) -> u8 {
        match raw {
            0..=159 => raw % 4,
            160..=239 => raw % (self.max.ilog2() as u8 + 2),
            _ => raw,
        }
    }

    /// `action` with its sizes and alignment passed through [`Scale::size`] and
    /// [`Scale::align_log2`].
    pub fn shape(self, action: &Action) -> Action {
        match *action {
            Action::Alloc { size: s, align_log2: a } => {
                Action::Alloc { size: self.size(s), align_log2: self.align_log2(a) }
            }
            Action::Resize { pick, size: s } => Action::Resize { pick, size: self.size(s) },
            ref other => other.clone(),
        }
    }
}

/// [`Scale::size`] of the buddy targets.
pub fn size(raw: usize) -> usize {
    BUDDY_SCALE.size(raw)
}

/// [`Scale::align_log2`] of the buddy targets.
pub fn align_log2(raw: u8) -> u8 {
    BUDDY_SCALE.align_log2(raw)
}

/// [`Scale::shape`] of the buddy targets.
pub fn shape(action: &Action) -> Action {
    BUDDY_SCALE.shape(action)
}

/// The input of `buddy_ops` and `buddy_exact_ops`.
#[derive(Arbitrary, Debug)]
pub struct OpsInput {
    /// The heap's memory.
    pub arenas: Arenas,
    /// What to do with it.
    pub actions: Vec<Action>,
}

/// Replays `input` on a fresh heap with the testkit harness (every check after every step), then
/// frees everything, checks the seeding is back, and allocates the largest block.
pub fn run_actions<const EXACT: bool>(input: &OpsInput) {
    let memory = input.arenas.make();
    let mut heap = Heap::<EXACT>::new();
    let claimed = claim_into(&mut heap, &memory);
    let mut harness = Harness::new(heap, geometry(EXACT), claimed);
    for action in &input.actions {
        harness.step(&shape(action));
    }
    harness.finish();
    assert!(harness.alloc.is_pristine(), "not pristine after freeing everything");
}

// ---- size classes ------------------------------------------------------------------------------

/// The fuzzed size classes: `Classes<Buddy<16, MAX, 2, EXACT>, LIMIT>`, requests above `LIMIT`
/// (or aligned to more) going to the buddy. The targets use two shapes, see [`ClassOpsInput`].
pub type ClassHeap<const LIMIT: usize, const MAX: usize, const EXACT: bool> =
    Classes<Buddy<MIN, MAX, 2, EXACT>, LIMIT>;

/// The narrow shape: classes up to 1 KiB (20 classes, slabs of 4 to 32 KiB, none of them the
/// size of a class), a buddy up to 64 KiB, regions up to 256 KiB.
pub const NARROW: (usize, usize, usize) = (1024, 64 * 1024, 256 * 1024);

/// The wide shape: classes up to 4 KiB (28 classes, slabs of 4 to 128 KiB; the 4 KiB slabs are
/// the block size of the classes above 2 KiB), a buddy up to 256 KiB, regions up to 1 MiB.
pub const WIDE: (usize, usize, usize) = (4096, 256 * 1024, 1024 * 1024);

/// The oracle's view of a [`ClassHeap`] whose buddy's largest block is `max`: errors as the
/// buddy's, objects at least as long as asked.
pub fn class_geometry(max: usize) -> Geometry {
    Geometry { min: MIN, max, fit: Fit::AtLeast }
}

/// The large shape, the global heap's (`budalloc::GlobalClasses`): classes up to 32 KiB (slabs
/// up to 1 MiB), a buddy up to 2 MiB, regions up to 4 MiB.
pub const LARGE: (usize, usize, usize) = (32 * 1024, 2 * 1024 * 1024, 4 * 1024 * 1024);

/// The input of `classes_ops`.
#[derive(Arbitrary, Debug)]
pub struct ClassOpsInput {
    /// The heap's memory (up to 256 KiB, 1 MiB or 4 MiB by shape: the length and cut are scaled).
    pub arenas: Arenas,
    /// Bit 0: exact fit for the buddy (its large blocks and the slabs); `(flavour >> 1) % 3`:
    /// the [`NARROW`], [`WIDE`] or [`LARGE`] shape.
    pub flavour: u8,
    /// What to do with it.
    pub actions: Vec<Action>,
}

/// Runs `input` on the [`ClassHeap`] its flavour names.
pub fn run_classes(input: &ClassOpsInput) {
    match ((input.flavour >> 1) % 3, input.flavour & 1 != 0) {
        (0, false) => run_class_actions::<{ NARROW.0 }, { NARROW.1 }, false>(input, NARROW.2),
        (0, true) => run_class_actions::<{ NARROW.0 }, { NARROW.1 }, true>(input, NARROW.2),
        (1, false) => run_class_actions::<{ WIDE.0 }, { WIDE.1 }, false>(input, WIDE.2),
        (1, true) => run_class_actions::<{ WIDE.0 }, { WIDE.1 }, true>(input, WIDE.2),
        (_, false) => run_class_actions::<{ LARGE.0 }, { LARGE.1 }, false>(input, LARGE.2),
        (_, true) => run_class_actions::<{ LARGE.0 }, { LARGE.1 }, true>(input, LARGE.2),
    }
}

/// Replays `input` on fresh size classes over a region of up to `max_region` bytes (aligned to
/// `MAX` before the skew) with the testkit harness (every check after every step), then frees
/// everything, flushes the cached slabs, checks the buddy's seeding is back and allocates the
/// largest block.
pub fn run_class_actions<const LIMIT: usize, const MAX: usize, const EXACT: bool>(
    input: &ClassOpsInput,
    max_region: usize,
) {
    let memory = input.arenas.make_in(max_region, MAX);
    let mut heap = ClassHeap::<LIMIT, MAX, EXACT>::new(Buddy::new());
    let claimed = claim_into(&mut heap, &memory);
    let mut harness = Harness::new(heap, class_geometry(MAX), claimed);
    let scale = Scale { small: LIMIT, max: MAX };
    for action in &input.actions {
        harness.step(&scale.shape(action));
    }
    harness.finish();
    // `finish` ends with an allocation and a free of the largest request that must succeed,
    // which may be an object: its empty slab stays cached until flushed.
    harness.alloc.flush();
    assert!(harness.alloc.backend_mut().is_pristine(), "buddy not pristine after freeing everything");
}

// ---- tlsf_ops ------------------------------------------------------------------------------

/// The TLSF layer of `tlsf_ops`: 64 KiB chunks (requests up to 16 KiB in them) of an exact-fit
/// buddy with 64-byte fragments and 1 MiB blocks, so that a region of up to 1 MiB holds a few
/// chunks and the runs reach chunk boundaries, emptied chunks, and the fallback to the buddy.
pub type TlsfHeap = Tlsf<Buddy<64, { 1 << 20 }, 2, true>, { 64 * 1024 }, { 16 * 1024 }>;

/// [`TlsfHeap`] under size classes up to 4 KiB: the facade's default composition, scaled down.
pub type ClassesTlsfHeap = Classes<TlsfHeap, 4096>;

/// The oracle's view of the `tlsf_ops` heaps: blocks at least as long as asked, the buddy's
/// limits (64-byte fragments, 1 MiB).
const TLSF_GEOMETRY: Geometry = Geometry { min: 64, max: 1 << 20, fit: Fit::AtLeast };

/// Requests of `tlsf_ops`: mostly up to a quarter above the chunks' 16 KiB limit, some up to the
/// buddy's 1 MiB.
const TLSF_SCALE: Scale = Scale { small: 16 * 1024, max: 1 << 20 };

/// Runs `input` (the [`ClassOpsInput`] of `classes_ops`: flavour bit 0 set puts size classes
/// on top) on a fresh [`TlsfHeap`] or [`ClassesTlsfHeap`] over a region of up to 1 MiB.
pub fn run_tlsf(input: &ClassOpsInput) {
    if input.flavour & 1 == 0 {
        run_tlsf_actions(input, TlsfHeap::new(Buddy::new()), |h| h.backend_mut().is_pristine());
    } else {
        let heap = ClassesTlsfHeap::new(TlsfHeap::new(Buddy::new()));
        run_tlsf_actions(input, heap, |h| h.backend_mut().backend_mut().is_pristine());
    }
}

/// Replays `input` on `heap` with the testkit harness (every check after every step), then
/// frees everything, flushes (the kept chunk and slabs go back) and checks with `pristine`
/// that the buddy is back to its seeding.
fn run_tlsf_actions<P: RawAlloc + Inspect + Claim>(
    input: &ClassOpsInput,
    mut heap: P,
    pristine: impl FnOnce(&mut P) -> bool,
) {
    let memory = input.arenas.make_in(1 << 20, 1 << 20);
    // With 64-byte fragments: padding to a fragment (< 64), one fragment and the bitmap.
    let claimed = claim_pieces(&mut heap, &memory, 4 * 64);
    let mut harness = Harness::new(heap, TLSF_GEOMETRY, claimed);
    for action in &input.actions {
        harness.step(&TLSF_SCALE.shape(action));
    }
    harness.finish();
    harness.alloc.flush();
    assert!(pristine(&mut harness.alloc), "buddy not pristine after freeing everything");
}

/// A layout, for sizes and alignments known to be valid.
pub fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).expect("valid layout")
}

// ---- injected / detected counters -------------------------------------------------------------

/// Per kind: `(kind, injected, detected, skipped)`, in first-seen order.
static COUNTS: Mutex<Vec<(&'static str, u64, u64, u64)>> = Mutex::new(Vec::new());
static AT_EXIT: Once = Once::new();

extern "C" {
    /// The C library's `atexit`: libFuzzer ends a run with `exit()`, so this is where the
    /// totals get printed.
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

/// Records one injected fault of `kind`, and whether it was detected.
pub fn count(kind: &'static str, detected: bool) {
    tally(kind, |entry| {
        entry.1 += 1;
        entry.2 += u64::from(detected);
    });
}

/// Whether faults of `kind` are not to be injected: the environment variable
/// `BUDALLOC_FUZZ_SKIP` lists such kinds, comma-separated (e.g. `header_next,header_prev`). For
/// running past a detection gap that is known and reported, until it is fixed; every skip is
/// counted and printed with the totals. Unset (the default and what `cargo xtask fuzz` does):
/// nothing is skipped.
pub fn skipped(kind: &'static str) -> bool {
    static SKIP: OnceLock<Vec<String>> = OnceLock::new();
    let skip = SKIP.get_or_init(|| {
        let list = std::env::var("BUDALLOC_FUZZ_SKIP").unwrap_or_default();
        list.split(',').map(str::trim).filter(|k| !k.is_empty()).map(String::from).collect()
    });
    let skip = skip.iter().any(|k| k == kind);
    if skip {
        tally(kind, |entry| entry.3 += 1);
    }
    skip
}

/// Updates the counters of `kind`.
fn tally(kind: &'static str, update: impl FnOnce(&mut (&'static str, u64, u64, u64))) {
    AT_EXIT.call_once(|| {
        // SAFETY: `atexit` is the C library's, with this signature; the callback is a plain
        // `extern "C"` function that cannot unwind (it only formats integers and writes to
        // stderr, ignoring errors).
        unsafe { atexit(print_counts) };
    });
    let mut counts = COUNTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let entry = match counts.iter().position(|(k, ..)| *k == kind) {
        Some(i) => &mut counts[i],
        None => {
            counts.push((kind, 0, 0, 0));
            counts.last_mut().expect("just pushed")
        }
    };
    update(entry);
}

/// Prints the counters: one line per kind, `injected / detected`.
extern "C" fn print_counts() {
    let counts = COUNTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "fault injection in this process (kind: injected / detected):");
    for (kind, injected, detected, skipped) in counts.iter() {
        let _ = write!(err, "  {kind:<26} {injected:>12} / {detected}");
        let _ = if *skipped > 0 { writeln!(err, " (skipped on request: {skipped})") } else { writeln!(err) };
    }
}

/// Records the block `addr .. addr + len` that an allocator just handed out in a shadow model's
/// live ranges (`start -> end`), checking first that it lies inside one of `regions` (`(start,
/// len)`, the arenas) and overlaps no live block.
///
/// # Panics
/// If the block lies outside every region or overlaps a live block.
pub fn record_block(
    ranges: &mut BTreeMap<usize, usize>,
    regions: &[(usize, usize)],
    addr: usize,
    len: usize,
) {
    assert!(
        regions.iter().any(|&(start, l)| addr >= start && addr + len <= start + l),
        "block {addr:#x}+{len} outside every arena"
    );
    if let Some((&prev, &end)) = ranges.range(..=addr).next_back() {
        assert!(end <= addr, "block {addr:#x}+{len} overlaps the live block at {prev:#x}");
    }
    if let Some((&next, _)) = ranges.range(addr..).next() {
        assert!(addr + len <= next, "block {addr:#x}+{len} overlaps the live block at {next:#x}");
    }
    ranges.insert(addr, addr + len);
}
