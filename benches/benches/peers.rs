//! budalloc against peer region allocators (talc, rlsf, buddy_system_allocator, buddy-alloc,
//! linked_list_allocator), single-threaded, each on a fresh 64 MiB region aligned to exactly
//! 4096 bytes, every call out of line.
//!
//! Groups (criterion reports the time of one iteration):
//! - `a_pair_64B`: one iteration = allocate 64 B, `black_box`, free;
//! - `b_batch_random_16B-4KiB`: rounds of 1000 allocations of 16 B – 4 KiB (fixed-seed
//!   xorshift) then 1000 frees in a shuffled order; one iteration = one operation (alloc or
//!   free): the time of whole rounds is scaled to the iterations asked for;
//! - `c_free_fragmented/<subject>/<live>`: a heap fragmented down to `<live>` blocks of
//!   64 B – 1 KiB with holes between them (2 × live allocated, every other one freed); one
//!   iteration = one free of a live block (the blocks are visited in a fixed-seed random order;
//!   frees are timed in runs of up to 100), the blocks are allocated back outside the timing;
//!   after every sweep (each live block freed once) the heap is rebuilt outside the timing, so
//!   that the figure does not depend on how long a run cycles the heap;
//! - `c_cycle_fragmented/<subject>/<live>`: same heap and sweeps; one iteration = free one live
//!   block and allocate it back (both timed).
//!
//! Before any benchmark every subject runs `budalloc_benches::check`; a subject that fails it
//! is not benchmarked. Any failure (checker, allocation failure in a workload, panic) prints a
//! line `FAILED: <subject> <workload>: <reason>` and the run goes on.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use budalloc_benches::{
    check, Batch, BudallocLocal, BudallocRaw, BuddyAllocSubject, BuddySystem, Fragmented, LinkedList, Pair,
    RlsfSubject, Subject, TalcSubject,
};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};

/// Size of the blocks of workload (a).
const PAIR_SIZE: usize = 64;
/// Blocks per round of workload (b).
const BATCH_N: usize = 1000;
/// Smallest and largest block of workload (b).
const BATCH_SIZES: (usize, usize) = (16, 4096);
/// Live block counts of workload (c).
const LIVE_COUNTS: [usize; 2] = [500, 5000];
/// Frees timed in one run of `c_free_fragmented` (amortises reading the clock).
const FREE_RUN: usize = 100;
/// Untimed rounds that each workload runs first, so that a failing subject is caught before
/// criterion starts.
const DRY_RUNS: usize = 200;

/// Subjects that failed the checker: not benchmarked.
static FAILED_CHECK: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

/// Calls `$f::<S>($args)` for every subject, budalloc first.
macro_rules! each_subject {
    ($f:ident ( $($arg:expr),* )) => {{
        $f::<BudallocRaw>($($arg),*);
        $f::<BudallocLocal>($($arg),*);
        $f::<TalcSubject>($($arg),*);
        $f::<RlsfSubject>($($arg),*);
        $f::<BuddySystem>($($arg),*);
        $f::<BuddyAllocSubject>($($arg),*);
        $f::<LinkedList>($($arg),*);
    }};
}

fn report_failure(subject: &str, workload: &str, reason: &str) {
    println!("FAILED: {subject} {workload}: {reason}");
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

/// Runs `f`, turning an `Err` or a panic into a `FAILED` line. Returns whether it succeeded.
fn guarded(subject: &str, workload: &str, f: impl FnOnce() -> Result<(), String>) -> bool {
    let reason = match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return true,
        Ok(Err(reason)) => reason,
        Err(payload) => format!("panicked: {}", panic_message(&*payload)),
    };
    report_failure(subject, workload, &reason);
    false
}

fn checked_out<S: Subject>() -> bool {
    FAILED_CHECK.lock().is_ok_and(|failed| failed.contains(&S::name()))
}

/// A workload built on the first call of the benchmark routine (so that benchmarks filtered
/// out on the command line cost nothing), dry-run once, then driven by criterion; the first
/// failure is kept and later calls do no work.
struct Lazy<W> {
    workload: Option<W>,
    failure: Option<String>,
}

impl<W> Lazy<W> {
    fn new() -> Self {
        Lazy { workload: None, failure: None }
    }

    /// The workload, building and dry-running it on first use; `None` once anything failed.
    fn get(
        &mut self,
        build: impl FnOnce() -> Result<W, String>,
        dry_run: impl FnOnce(&mut W) -> Result<(), String>,
    ) -> Option<&mut W> {
        if self.failure.is_some() {
            return None;
        }
        if self.workload.is_none() {
            match build().and_then(|mut w| dry_run(&mut w).map(|()| w)) {
                Ok(w) => self.workload = Some(w),
                Err(e) => {
                    self.failure = Some(e);
                    return None;
                }
            }
        }
        self.workload.as_mut()
    }

    fn fail(&mut self, reason: String) {
        self.failure.get_or_insert(reason);
    }
}

/// Runs one benchmark of subject `S` in `group` with `routine(lazy, iters)`, catching panics and
/// reporting failures.
fn run_bench<S: Subject, W>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    label: &str,
    mut routine: impl FnMut(&mut Lazy<W>, u64) -> Duration,
) {
    if checked_out::<S>() {
        println!("skipped: {} {label}: failed the checker", S::name());
        return;
    }
    let mut lazy = Lazy::new();
    let ok = guarded(S::name(), label, || {
        group.bench_function(id, |b| b.iter_custom(|iters| routine(&mut lazy, iters)));
        Ok(())
    });
    if let (true, Some(reason)) = (ok, lazy.failure) {
        report_failure(S::name(), label, &format!("{reason} (the times above are not valid)"));
    }
}

// ---- the checker ----------------------------------------------------------------------------

fn check_one<S: Subject>() {
    if guarded(S::name(), "checker", check::<S>) {
        println!("check: {} ok", S::name());
    } else if let Ok(mut failed) = FAILED_CHECK.lock() {
        failed.push(S::name());
    }
}

fn check_all(_: &mut Criterion) {
    each_subject!(check_one());
}

// ---- (a) 64-byte pairs ---------------------------------------------------------------------

fn pair_one<S: Subject>(group: &mut BenchmarkGroup<'_, WallTime>) {
    run_bench::<S, Pair<S>>(group, BenchmarkId::from_parameter(S::name()), "a_pair_64B", |lazy, iters| {
        let dry_run = |w: &mut Pair<S>| (0..DRY_RUNS * 10).try_for_each(|_| w.run());
        let Some(w) = lazy.get(|| Pair::new(PAIR_SIZE), dry_run) else { return Duration::ZERO };
        let start = Instant::now();
        let mut failure = None;
        for _ in 0..iters {
            if let Err(e) = w.run() {
                failure = Some(e);
                break;
            }
        }
        let elapsed = start.elapsed();
        if let Some(e) = failure {
            lazy.fail(e);
        }
        elapsed
    });
}

fn a_pair(c: &mut Criterion) {
    let mut group = c.benchmark_group("a_pair_64B");
    each_subject!(pair_one(&mut group));
    group.finish();
}

// ---- (b) random sizes, shuffled frees ------------------------------------------------------

fn batch_one<S: Subject>(group: &mut BenchmarkGroup<'_, WallTime>) {
    let label = "b_batch_random_16B-4KiB";
    run_bench::<S, Batch<S>>(group, BenchmarkId::from_parameter(S::name()), label, |lazy, iters| {
        let build = || Batch::new(BATCH_N, BATCH_SIZES.0, BATCH_SIZES.1);
        let dry_run = |w: &mut Batch<S>| (0..DRY_RUNS / 20).try_for_each(|_| w.run());
        let Some(w) = lazy.get(build, dry_run) else { return Duration::ZERO };
        let ops = w.ops() as u64;
        let rounds = iters.div_ceil(ops);
        let start = Instant::now();
        let mut failure = None;
        for _ in 0..rounds {
            if let Err(e) = w.run() {
                failure = Some(e);
                break;
            }
        }
        let elapsed = start.elapsed();
        if let Some(e) = failure {
            lazy.fail(e);
        }
        // Time per operation × operations asked for.
        elapsed.mul_f64(iters as f64 / (rounds * ops) as f64)
    });
}

fn b_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("b_batch_random_16B-4KiB");
    each_subject!(batch_one(&mut group));
    group.finish();
}

// ---- (c) a fragmented heap -------------------------------------------------------------------

/// One sweep of workload (c) (untimed): to catch a failing subject before criterion starts.
fn dry_sweep<S: Subject>(w: &mut Fragmented<S>) -> Result<(), String> {
    while w.remaining() > 0 {
        w.cycle()?;
    }
    w.rebuild()
}

fn free_one<S: Subject>(group: &mut BenchmarkGroup<'_, WallTime>, live: usize) {
    let id = BenchmarkId::new(S::name(), live);
    let label = format!("c_free_fragmented/{live}");
    run_bench::<S, Fragmented<S>>(group, id, &label, |lazy, iters| {
        let Some(w) = lazy.get(|| Fragmented::new(live), dry_sweep) else { return Duration::ZERO };
        let mut total = Duration::ZERO;
        if let Err(e) = w.time_frees(iters, FREE_RUN, &mut total) {
            lazy.fail(e);
        }
        total
    });
}

fn cycle_one<S: Subject>(group: &mut BenchmarkGroup<'_, WallTime>, live: usize) {
    let id = BenchmarkId::new(S::name(), live);
    let label = format!("c_cycle_fragmented/{live}");
    run_bench::<S, Fragmented<S>>(group, id, &label, |lazy, iters| {
        let Some(w) = lazy.get(|| Fragmented::new(live), dry_sweep) else { return Duration::ZERO };
        let mut total = Duration::ZERO;
        if let Err(e) = w.time_cycles(iters, &mut total) {
            lazy.fail(e);
        }
        total
    });
}

fn c_fragmented(c: &mut Criterion) {
    let mut group = c.benchmark_group("c_free_fragmented");
    for live in LIVE_COUNTS {
        each_subject!(free_one(&mut group, live));
    }
    group.finish();
    let mut group = c.benchmark_group("c_cycle_fragmented");
    for live in LIVE_COUNTS {
        each_subject!(cycle_one(&mut group, live));
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
}

criterion_group! {
    name = peers;
    config = config();
    targets = check_all, a_pair, b_batch, c_fragmented
}
criterion_main!(peers);
