//! Heap efficiency: how much of a region a subject hands out before its first failure.
//!
//! Each workload runs on a fresh region of [`EFF_REGION_LEN`] bytes until the first allocation
//! (or reallocation) that fails; the score is the bytes **requested** by the live blocks at that
//! moment divided by the region's size (so rounding, headers, alignment padding and
//! fragmentation all count against the subject). The live blocks are then checked (aligned,
//! inside the region, disjoint): a subject that breaks that fails the workload instead of
//! scoring.
//!
//! - [`Efficiency::TalcRecipe`] (talc's heap-efficiency benchmark): sizes uniform in `4 .. c`
//!   for a `c` uniform in `16 .. 10000` per allocation, alignment `8 << (trailing_zeros(u16) /
//!   2)` for a random `u16` (8 B – 2 KiB, most often 8 B), 50 % allocations, 10 % frees of a
//!   random live block, 40 % reallocations of a random live block to a size uniform in
//!   `4 .. 100 000`.
//! - [`Efficiency::Churn`]: fill to half the region with sizes log-uniform in 8 B – 32 KiB
//!   (alignment 8), then [`CHURN_STEPS`] random actions that keep it near half full (a third
//!   reallocations to a new log-uniform size; otherwise a free when above half, an allocation
//!   when below), then allocations until the first failure.
//! - [`Efficiency::Fill`]: allocations of log-uniform sizes (8 B – 32 KiB, alignment 8) into the
//!   empty region until the first failure.

use std::alloc::Layout;
use std::ptr::NonNull;

use crate::{verify_live, Fixture, Subject, XorShift};

/// Bytes of the region every efficiency run gets.
pub const EFF_REGION_LEN: usize = 16 << 20;

/// Random actions of [`Efficiency::Churn`] between the fill to half and the final fill.
pub const CHURN_STEPS: usize = 50_000;

/// Smallest size of the log-uniform workloads (bytes).
const LOG_MIN: usize = 8;
/// Largest size of the log-uniform workloads (bytes).
const LOG_MAX: usize = 32 << 10;
/// Largest size a reallocation of [`Efficiency::TalcRecipe`] asks for (bytes, exclusive).
const TALC_REALLOC_MAX: usize = 100_000;
/// Alignment of the log-uniform workloads.
const LOG_ALIGN: usize = 8;

/// A heap-efficiency workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Efficiency {
    /// talc's recipe: allocations, frees and large reallocations of mixed alignment.
    TalcRecipe,
    /// Fill to half, churn, fill to the first failure.
    Churn,
    /// Fill the empty region to the first failure.
    Fill,
}

impl Efficiency {
    /// Every workload, in report order.
    pub const ALL: [Efficiency; 3] = [Efficiency::TalcRecipe, Efficiency::Churn, Efficiency::Fill];

    /// Name in reports (also accepted by [`parse`](Self::parse)).
    pub fn name(self) -> &'static str {
        match self {
            Efficiency::TalcRecipe => "eff_a_talc_recipe",
            Efficiency::Churn => "eff_b_churn",
            Efficiency::Fill => "eff_c_fill",
        }
    }

    /// One line saying what the workload does.
    pub fn describe(self) -> &'static str {
        match self {
            Efficiency::TalcRecipe => {
                "talc's recipe: 50% alloc (4 B..c, c in 16..10000, align 8..2048) / 10% free / \
                 40% realloc up to 100 000 B, 16 MiB, until the first failure"
            }
            Efficiency::Churn => {
                "fill to half (8 B..32 KiB log-uniform), 50 000 random frees/allocs/reallocs, \
                 then allocate until the first failure, 16 MiB"
            }
            Efficiency::Fill => {
                "allocate 8 B..32 KiB (log-uniform) into an empty 16 MiB region until it fails"
            }
        }
    }

    /// A workload from its name or its letter (`a`, `b`, `c`).
    pub fn parse(name: &str) -> Option<Efficiency> {
        if name.is_empty() {
            return None;
        }
        Efficiency::ALL.into_iter().find(|w| {
            let short = &w.name()["eff_".len()..];
            name == w.name() || name == short || name == &short[..1] || short[2..].starts_with(name)
        })
    }
}

/// The outcome of one efficiency run.
#[derive(Clone, Debug)]
pub struct Score {
    /// Bytes requested by the blocks live at the first failure.
    pub live_bytes: usize,
    /// Blocks live at the first failure.
    pub live_blocks: usize,
    /// Bytes of the region.
    pub region: usize,
    /// Actions done, including the one that failed.
    pub actions: usize,
    /// The request that failed.
    pub stop: String,
}

impl Score {
    /// Live requested bytes over the region's size.
    pub fn ratio(&self) -> f64 {
        self.live_bytes as f64 / self.region as f64
    }
}

/// Scores over several seeds.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Mean of the ratios.
    pub mean: f64,
    /// Lowest ratio.
    pub worst: f64,
    /// Highest ratio.
    pub best: f64,
    /// Seeds run.
    pub seeds: u64,
    /// Why the worst run stopped.
    pub worst_stop: String,
}

/// Runs `workload` on subject `S` for seeds `0 .. seeds`; `Ok(None)` when the subject is not
/// [`REGION_BASED`](Subject::REGION_BASED) (the workload does not apply).
///
/// # Errors
/// A run's set-up failed or its live blocks broke a check (the first such seed).
pub fn summarize<S: Subject>(workload: Efficiency, seeds: u64) -> Result<Option<Summary>, String> {
    if !S::REGION_BASED {
        return Ok(None);
    }
    let mut ratios = Vec::new();
    let mut worst_stop = String::new();
    for seed in 0..seeds.max(1) {
        let score = run::<S>(workload, seed).map_err(|e| format!("seed {seed}: {e}"))?;
        let ratio = score.ratio();
        if ratios.iter().all(|&r| ratio < r) {
            worst_stop = score.stop;
        }
        ratios.push(ratio);
    }
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    let worst = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let best = ratios.iter().copied().fold(0.0, f64::max);
    Ok(Some(Summary { mean, worst, best, seeds: seeds.max(1), worst_stop }))
}

/// One run of `workload` on subject `S` with `seed`.
///
/// # Errors
/// The fixture could not be built, or the live blocks broke a check.
pub fn run<S: Subject>(workload: Efficiency, seed: u64) -> Result<Score, String> {
    let mut heap = Tracked::<S>::new()?;
    let mut rng = XorShift::new(0xEFF1_C1E7_0000_0000 ^ (seed + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let stop = match workload {
        Efficiency::TalcRecipe => talc_recipe(&mut heap, &mut rng),
        Efficiency::Churn => churn(&mut heap, &mut rng),
        Efficiency::Fill => fill(&mut heap, &mut rng),
    };
    let (live_bytes, live_blocks, actions) = (heap.live_bytes, heap.live.len(), heap.actions);
    let region = heap.fx.region().map_or(0, |r| r.size());
    verify_live(heap.fx.region(), &mut heap.live, workload.name())?;
    Ok(Score { live_bytes, live_blocks, region, actions, stop })
}

/// talc's recipe until the first failure; returns the failed request.
fn talc_recipe<S: Subject>(heap: &mut Tracked<S>, rng: &mut XorShift) -> String {
    loop {
        let roll = rng.next_u64() % 10;
        let step = if roll < 5 || heap.live.is_empty() {
            let c = rng.range(16, 10_000 - 1);
            let size = rng.range(4, c - 1);
            let align = 8usize << ((rng.next_u64() as u16).trailing_zeros() / 2);
            heap.alloc(size, align)
        } else if roll < 6 {
            let i = rng.range(0, heap.live.len() - 1);
            heap.free(i);
            Ok(())
        } else {
            let i = rng.range(0, heap.live.len() - 1);
            heap.realloc(i, rng.range(4, TALC_REALLOC_MAX - 1))
        };
        if let Err(stop) = step {
            return stop;
        }
    }
}

/// Fill to half, churn, fill to the first failure; returns the failed request.
fn churn<S: Subject>(heap: &mut Tracked<S>, rng: &mut XorShift) -> String {
    let half = EFF_REGION_LEN / 2;
    while heap.live_bytes < half {
        if let Err(stop) = heap.alloc(rng.log_uniform(LOG_MIN, LOG_MAX), LOG_ALIGN) {
            return format!("{stop} (filling to half)");
        }
    }
    for _ in 0..CHURN_STEPS {
        let step = if rng.next_u64().is_multiple_of(3) && !heap.live.is_empty() {
            let i = rng.range(0, heap.live.len() - 1);
            heap.realloc(i, rng.log_uniform(LOG_MIN, LOG_MAX))
        } else if heap.live_bytes >= half && !heap.live.is_empty() {
            let i = rng.range(0, heap.live.len() - 1);
            heap.free(i);
            Ok(())
        } else {
            heap.alloc(rng.log_uniform(LOG_MIN, LOG_MAX), LOG_ALIGN)
        };
        if let Err(stop) = step {
            return format!("{stop} (during the churn)");
        }
    }
    fill(heap, rng)
}

/// Allocations until the first failure; returns the failed request.
fn fill<S: Subject>(heap: &mut Tracked<S>, rng: &mut XorShift) -> String {
    loop {
        if let Err(stop) = heap.alloc(rng.log_uniform(LOG_MIN, LOG_MAX), LOG_ALIGN) {
            return stop;
        }
    }
}

/// A subject on an [`EFF_REGION_LEN`] region with its live blocks and their requested bytes.
struct Tracked<S: Subject> {
    fx: Fixture<S>,
    live: Vec<(NonNull<u8>, Layout)>,
    live_bytes: usize,
    actions: usize,
}

impl<S: Subject> Tracked<S> {
    fn new() -> Result<Self, String> {
        Ok(Tracked { fx: Fixture::with_len(EFF_REGION_LEN)?, live: Vec::new(), live_bytes: 0, actions: 0 })
    }

    /// Allocates `size` bytes aligned to `align`; the failed request on failure.
    fn alloc(&mut self, size: usize, align: usize) -> Result<(), String> {
        self.actions += 1;
        let layout = Layout::from_size_align(size.max(1), align).map_err(|e| e.to_string())?;
        // SAFETY: the size is at least 1.
        match unsafe { self.fx.subject().alloc(layout) } {
            Some(ptr) => {
                self.live.push((ptr, layout));
                self.live_bytes += layout.size();
                Ok(())
            }
            None => Err(format!("alloc {} B align {}", layout.size(), layout.align())),
        }
    }

    /// Frees live block `i`.
    fn free(&mut self, i: usize) {
        self.actions += 1;
        let (ptr, layout) = self.live.swap_remove(i);
        self.live_bytes -= layout.size();
        // SAFETY: `ptr` was live with `layout`; it left the list, so it is freed once.
        unsafe { self.fx.subject().free(ptr, layout) };
    }

    /// Resizes live block `i` to `new_size` bytes; the failed request on failure (the block
    /// stays live with its old size).
    fn realloc(&mut self, i: usize, new_size: usize) -> Result<(), String> {
        self.actions += 1;
        let (ptr, old) = self.live[i];
        let new = Layout::from_size_align(new_size.max(1), old.align()).map_err(|e| e.to_string())?;
        // SAFETY: `ptr` is live with `old`; the new size is at least 1.
        match unsafe { self.fx.subject().realloc(ptr, old, new.size()) } {
            Some(moved) => {
                self.live[i] = (moved, new);
                self.live_bytes = self.live_bytes - old.size() + new.size();
                Ok(())
            }
            None => Err(format!("realloc {} B -> {} B align {}", old.size(), new.size(), old.align())),
        }
    }
}

impl<S: Subject> Drop for Tracked<S> {
    fn drop(&mut self) {
        for &(ptr, layout) in &self.live {
            // SAFETY: every listed block is live with its layout, freed once.
            unsafe { self.fx.subject().free(ptr, layout) };
        }
    }
}
