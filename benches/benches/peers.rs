//! budalloc against its peers: the region allocators talc, rlsf, buddy_system_allocator,
//! buddy-alloc and linked_list_allocator (each on a fresh 64 MiB region aligned to exactly
//! 4096 bytes) and the system allocator and mimalloc, every call out of line.
//!
//! Groups (criterion reports the time of one iteration; every figure is a time per operation):
//! - `a_pair_64B`: one iteration = allocate 64 B, `black_box`, free;
//! - `b_batch_random_16B-4KiB`: rounds of 1000 allocations of 16 B – 4 KiB (fixed-seed
//!   xorshift) then 1000 frees in a shuffled order; one iteration = one operation (alloc or
//!   free): the time of whole rounds is scaled to the iterations asked for;
//! - `churn_64B_x1000`: rounds of 1000 allocations of 64 B then 1000 frees, first allocated first
//!   freed; one iteration = one operation;
//! - `mixed_lifo_16B-4KiB`, `mixed_fifo_16B-4KiB`: rounds of 1000 allocations of 16 B – 4 KiB
//!   then the frees, last-in-first-out or first-in-first-out; one iteration = one operation;
//! - `c_free_fragmented_<live>`: a heap fragmented down to `<live>` blocks of 64 B – 1 KiB with
//!   holes between them (2 × live allocated, every other one freed); one iteration = one free of
//!   a live block (visited in a fixed-seed random order, frees timed in runs of up to 100), the
//!   blocks are allocated back outside the timing; after every sweep (each live block freed
//!   once) the heap is rebuilt outside the timing;
//! - `c_cycle_fragmented_<live>`: same heap and sweeps; one iteration = free one live block and
//!   allocate it back (both timed);
//! - `actions_<max>B`, `actions_realloc_<max>B`: random actions (talc's benchmark style, see
//!   `budalloc_benches::ActionState`), sizes 8 B – max, at most 1000 live blocks, without and
//!   with reallocations; one iteration = one action;
//! - `threads_2_actions_realloc_4096B`: the same actions with reallocations up to 4 KiB on two
//!   threads against one heap (region peers behind a `spin::Mutex`, budalloc's `Locked` and
//!   `Cached` frontends, the system allocator and mimalloc as they are); one iteration = one
//!   action of either thread, timed by the wall clock (so lower is more total throughput);
//! - `threads_1_actions_realloc_4096B`: the same heaps on one thread (the scaling baseline),
//!   and `budalloc::Local` over the policies that `budalloc-classes-cached` and
//!   `budalloc-cached` share (`budalloc-heap`, `budalloc-heap-plain`), running the same actions
//!   on the bench thread: what thread safety costs one thread.
//!
//! Before any benchmark every subject runs `budalloc_benches::check`; a subject that fails it is
//! not benchmarked. Every workload runs untimed first and its live blocks are checked (aligned,
//! inside the region, disjoint). Any failure (checker, check, allocation failure in a workload,
//! panic) prints a line `FAILED: <subject> <workload>: <reason>` and the run goes on.
//!
//! The heap-efficiency workloads (`budalloc_benches::Efficiency`) are not timed: they run once
//! per seed (`BUDALLOC_BENCH_SEEDS`, default 5) before the timed groups and print their scores.
//!
//! When `BUDALLOC_BENCH_REPORT` names a file, every group, subject, failure and efficiency score
//! is also appended to it as a tab-separated line (what `cargo xtask bench` turns into tables,
//! with criterion's estimates).

use std::any::Any;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use budalloc_benches::{
    check, summarize, visit_shared, visit_subjects, ActionMix, Actions, Batch, BudallocHeap,
    BudallocHeapPlain, Efficiency, Fragmented, FreeOrder, Pair, Shared, Subject, Threads, VisitShared,
    VisitSubjects, THREADS, THREAD_MIX, THREAD_SEED,
};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};

/// Size of the blocks of workload (a).
const PAIR_SIZE: usize = 64;
/// Blocks per round of the batch workloads.
const BATCH_N: usize = 1000;
/// Smallest and largest block of the mixed-size batches.
const BATCH_SIZES: (usize, usize) = (16, 4096);
/// Block size of the churn batch.
const CHURN_SIZE: usize = 64;
/// Live block counts of workload (c).
const LIVE_COUNTS: [usize; 2] = [500, 5000];
/// Frees timed in one run of `c_free_fragmented` (amortises reading the clock).
const FREE_RUN: usize = 100;
/// Largest request of the random-action groups (talc's benchmark goes from 200 B to 30 KB).
const ACTION_SIZES: [usize; 3] = [200, 2000, 30_000];
/// Live blocks at most in the random-action groups (per thread).
const ACTION_MAX_LIVE: usize = 1000;
/// Untimed rounds that each workload runs first, so that a failing subject is caught before
/// criterion starts.
const DRY_RUNS: usize = 200;
/// Untimed random actions before the live blocks are checked.
const DRY_ACTIONS: u64 = 20_000;
/// Seeds of the efficiency workloads unless `BUDALLOC_BENCH_SEEDS` says otherwise.
const DEFAULT_SEEDS: u64 = 5;

/// Subjects that failed the checker: not benchmarked.
static FAILED_CHECK: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

/// The report file named by `BUDALLOC_BENCH_REPORT`, once opened.
static REPORT: Mutex<Option<File>> = Mutex::new(None);

/// Opens the report file (appending), if one is asked for.
fn open_report() {
    let Some(path) = std::env::var_os("BUDALLOC_BENCH_REPORT") else { return };
    match OpenOptions::new().create(true).append(true).open(&path) {
        Ok(file) => {
            if let Ok(mut report) = REPORT.lock() {
                *report = Some(file);
            }
        }
        Err(e) => println!("warning: cannot open the report file {}: {e}", path.to_string_lossy()),
    }
}

/// Appends one tab-separated line to the report file (tabs and line breaks in fields become
/// spaces).
fn record(fields: &[&str]) {
    let Ok(mut report) = REPORT.lock() else { return };
    let Some(file) = report.as_mut() else { return };
    let line: Vec<String> = fields.iter().map(|f| f.replace(['\t', '\n', '\r'], " ")).collect();
    if let Err(e) = writeln!(file, "{}", line.join("\t")) {
        println!("warning: cannot write the report file: {e}");
    }
}

fn report_failure(subject: &str, workload: &str, reason: &str) {
    println!("FAILED: {subject} {workload}: {reason}");
    record(&["failed", workload, subject, reason]);
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

fn checked_out(name: &str) -> bool {
    FAILED_CHECK.lock().is_ok_and(|failed| failed.contains(&name))
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

    /// Times `body` on the workload (built on first use); a failure is kept and the time until
    /// then returned.
    fn time(
        &mut self,
        build: impl FnOnce() -> Result<W, String>,
        dry_run: impl FnOnce(&mut W) -> Result<(), String>,
        body: impl FnOnce(&mut W, &mut Duration) -> Result<(), String>,
    ) -> Duration {
        let mut total = Duration::ZERO;
        let Some(w) = self.get(build, dry_run) else { return total };
        if let Err(e) = body(w, &mut total) {
            self.failure.get_or_insert(e);
        }
        total
    }
}

/// Runs one benchmark of the subject called `name` in `group` with `routine(lazy, iters)`,
/// catching panics and reporting failures.
fn run_bench<W>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    group_name: &str,
    name: &'static str,
    mut routine: impl FnMut(&mut Lazy<W>, u64) -> Duration,
) {
    if checked_out(name) {
        record(&["subject", group_name, name]);
        report_failure(name, group_name, "failed the checker: not benchmarked");
        return;
    }
    let mut lazy = Lazy::new();
    let mut started = false;
    let ok = guarded(name, group_name, || {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            if !started {
                started = true;
                record(&["subject", group_name, name]);
            }
            b.iter_custom(|iters| routine(&mut lazy, iters));
        });
        Ok(())
    });
    if let (true, Some(reason)) = (ok, lazy.failure) {
        report_failure(name, group_name, &format!("{reason} (the times of this benchmark are not valid)"));
    }
}

/// Times `iters` calls of `one` (each one unit of work).
fn time_units(
    iters: u64,
    total: &mut Duration,
    mut one: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let start = Instant::now();
    let result = (0..iters).try_for_each(|_| one());
    *total += start.elapsed();
    result
}

// ---- the checker ------------------------------------------------------------------------------

struct CheckAll;

impl VisitSubjects for CheckAll {
    fn visit<S: Subject + 'static>(&mut self) {
        if guarded(S::name(), "checker", check::<S>) {
            println!("check: {} ok", S::name());
        } else if let Ok(mut failed) = FAILED_CHECK.lock() {
            failed.push(S::name());
        }
    }
}

fn check_all(_: &mut Criterion) {
    open_report();
    visit_subjects(&mut CheckAll);
    // The one-thread baselines of the threads groups that no other group runs.
    VisitSubjects::visit::<BudallocHeapPlain>(&mut CheckAll);
}

// ---- heap efficiency (untimed) ---------------------------------------------------------------

struct EfficiencyAll {
    workload: Efficiency,
    seeds: u64,
}

impl VisitSubjects for EfficiencyAll {
    fn visit<S: Subject + 'static>(&mut self) {
        let name = self.workload.name();
        let outcome = panic::catch_unwind(|| summarize::<S>(self.workload, self.seeds));
        let outcome =
            outcome.unwrap_or_else(|payload| Err(format!("panicked: {}", panic_message(&*payload))));
        record(&["subject", name, S::name()]);
        match outcome {
            Ok(Some(s)) => {
                println!(
                    "{name}/{}: mean {:.2}% worst {:.2}% best {:.2}% over {} seeds (worst stopped at: {})",
                    S::name(),
                    100.0 * s.mean,
                    100.0 * s.worst,
                    100.0 * s.best,
                    s.seeds,
                    s.worst_stop
                );
                let fields = [s.mean, s.worst, s.best].map(|v| format!("{:.6}", v));
                let seeds = s.seeds.to_string();
                record(&["eff", name, S::name(), &fields[0], &fields[1], &fields[2], &seeds, &s.worst_stop]);
            }
            Ok(None) => {
                println!("{name}/{}: n/a (not region-based)", S::name());
                record(&["na", name, S::name(), "not region-based"]);
            }
            Err(e) => report_failure(S::name(), name, &e),
        }
    }
}

fn efficiency(_: &mut Criterion) {
    let seeds =
        std::env::var("BUDALLOC_BENCH_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_SEEDS);
    for workload in Efficiency::ALL {
        record(&["efficiency", workload.name(), "% of the region", workload.describe()]);
        visit_subjects(&mut EfficiencyAll { workload, seeds });
    }
}

// ---- timed workloads --------------------------------------------------------------------------

/// What a timed group runs.
#[derive(Clone, Copy)]
enum Workload {
    Pair,
    Batch {
        n: usize,
        min: usize,
        max: usize,
        order: FreeOrder,
    },
    FreeFragmented {
        live: usize,
    },
    CycleFragmented {
        live: usize,
    },
    Actions(ActionMix),
    /// Actions on this many threads against one shared heap.
    Threads(ActionMix, usize),
}

/// One criterion group: a workload on every subject.
struct Timed<'g, 'c> {
    group: &'g mut BenchmarkGroup<'c, WallTime>,
    name: String,
    workload: Workload,
}

impl VisitSubjects for Timed<'_, '_> {
    fn visit<S: Subject + 'static>(&mut self) {
        let (group, name) = (&mut *self.group, self.name.as_str());
        match self.workload {
            Workload::Pair => run_bench::<Pair<S>>(group, name, S::name(), |lazy, iters| {
                let dry_run = |w: &mut Pair<S>| {
                    (0..DRY_RUNS * 10).try_for_each(|_| w.run())?;
                    w.verify()
                };
                lazy.time(|| Pair::new(PAIR_SIZE), dry_run, |w, t| time_units(iters, t, || w.run()))
            }),
            Workload::Batch { n, min, max, order } => {
                run_bench::<Batch<S>>(group, name, S::name(), |lazy, iters| {
                    let dry_run = |w: &mut Batch<S>| {
                        (0..DRY_RUNS / 20).try_for_each(|_| w.run())?;
                        w.verify_round()
                    };
                    let body = |w: &mut Batch<S>, t: &mut Duration| {
                        let ops = w.ops() as u64;
                        let rounds = iters.div_ceil(ops);
                        time_units(rounds, t, || w.run())?;
                        // Time per operation × operations asked for.
                        *t = t.mul_f64(iters as f64 / (rounds * ops) as f64);
                        Ok(())
                    };
                    lazy.time(|| Batch::with_order(n, min, max, order), dry_run, body)
                })
            }
            Workload::FreeFragmented { live } => {
                run_bench::<Fragmented<S>>(group, name, S::name(), |lazy, iters| {
                    lazy.time(|| Fragmented::new(live), dry_sweep, |w, t| w.time_frees(iters, FREE_RUN, t))
                })
            }
            Workload::CycleFragmented { live } => {
                run_bench::<Fragmented<S>>(group, name, S::name(), |lazy, iters| {
                    lazy.time(|| Fragmented::new(live), dry_sweep, |w, t| w.time_cycles(iters, t))
                })
            }
            Workload::Actions(mix) => run_bench::<Actions<S>>(group, name, S::name(), |lazy, iters| {
                let dry_run = |w: &mut Actions<S>| {
                    w.run(DRY_ACTIONS)?;
                    w.verify()
                };
                lazy.time(|| Actions::new(mix), dry_run, |w, t| time_units(1, t, || w.run(iters)))
            }),
            // One thread: a single-threaded frontend runs the shared heaps' first thread's actions
            // on the bench thread, the baseline of what thread safety costs one thread (only the
            // subjects `e_threads` names: `timed` never gets this workload). More threads run on
            // the shared heaps (`VisitShared`) only.
            Workload::Threads(mix, 1) => run_bench::<Actions<S>>(group, name, S::name(), |lazy, iters| {
                let dry_run = |w: &mut Actions<S>| {
                    w.run(DRY_ACTIONS)?;
                    w.verify()
                };
                let fresh = || Actions::with_seed(mix, THREAD_SEED);
                lazy.time(fresh, dry_run, |w, t| time_units(1, t, || w.run(iters)))
            }),
            Workload::Threads(..) => {}
        }
    }
}

impl VisitShared for Timed<'_, '_> {
    fn visit<T: Shared + 'static>(&mut self) {
        let Workload::Threads(mix, threads) = self.workload else { return };
        run_bench::<Threads<T>>(self.group, &self.name, T::name(), |lazy, iters| {
            let dry_run = |w: &mut Threads<T>| {
                w.run(DRY_ACTIONS)?;
                w.verify()
            };
            let body = |w: &mut Threads<T>, t: &mut Duration| {
                *t += w.run(iters)?;
                Ok(())
            };
            lazy.time(|| Threads::new(mix, threads), dry_run, body)
        });
    }
}

/// One sweep of workload (c) (untimed), then the live blocks are checked: to catch a failing
/// subject before criterion starts.
fn dry_sweep<S: Subject>(w: &mut Fragmented<S>) -> Result<(), String> {
    w.verify()?;
    while w.remaining() > 0 {
        w.cycle()?;
    }
    w.rebuild()?;
    w.verify()
}

/// A group on every single-threaded subject, its unit and description recorded for the report.
fn timed(c: &mut Criterion, name: &str, description: &str, workload: Workload) {
    record(&["group", name, "ns/op", description]);
    let mut group = c.benchmark_group(name);
    visit_subjects(&mut Timed { group: &mut group, name: name.to_string(), workload });
    group.finish();
}

fn a_pair(c: &mut Criterion) {
    timed(c, "a_pair_64B", "allocate 64 B and free it (per pair)", Workload::Pair);
}

fn b_batches(c: &mut Criterion) {
    let (n, (min, max)) = (BATCH_N, BATCH_SIZES);
    let batches = [
        (
            "b_batch_random_16B-4KiB",
            "1000 × 16 B–4 KiB, freed shuffled (per op)",
            min,
            max,
            FreeOrder::Shuffled,
        ),
        (
            "churn_64B_x1000",
            "1000 × 64 B, then freed first-in-first-out (per op)",
            CHURN_SIZE,
            CHURN_SIZE,
            FreeOrder::Fifo,
        ),
        (
            "mixed_lifo_16B-4KiB",
            "1000 × 16 B–4 KiB, freed last-in-first-out (per op)",
            min,
            max,
            FreeOrder::Lifo,
        ),
        (
            "mixed_fifo_16B-4KiB",
            "1000 × 16 B–4 KiB, freed first-in-first-out (per op)",
            min,
            max,
            FreeOrder::Fifo,
        ),
    ];
    for (name, description, min, max, order) in batches {
        timed(c, name, description, Workload::Batch { n, min, max, order });
    }
}

fn c_fragmented(c: &mut Criterion) {
    for live in LIVE_COUNTS {
        let description =
            format!("free one of {live} live 64 B–1 KiB blocks with holes between them (per free)");
        timed(c, &format!("c_free_fragmented_{live}"), &description, Workload::FreeFragmented { live });
    }
    for live in LIVE_COUNTS {
        let description = format!("free one of {live} live blocks in a fragmented heap and allocate it back");
        timed(c, &format!("c_cycle_fragmented_{live}"), &description, Workload::CycleFragmented { live });
    }
}

fn d_actions(c: &mut Criterion) {
    for realloc in [false, true] {
        for max_size in ACTION_SIZES {
            let mix = ActionMix { max_size, realloc, max_live: ACTION_MAX_LIVE };
            let (name, what) = if realloc {
                (format!("actions_realloc_{max_size}B"), "alloc / free / realloc")
            } else {
                (format!("actions_{max_size}B"), "alloc / free")
            };
            let description =
                format!("random {what}, 8 B–{max_size} B, at most {ACTION_MAX_LIVE} live (per action)");
            timed(c, &name, &description, Workload::Actions(mix));
        }
    }
}

fn e_threads(c: &mut Criterion) {
    let mix = THREAD_MIX;
    // One thread first: the same shared heaps, for the scaling ratio.
    for threads in [1, THREADS] {
        let name = format!("threads_{threads}_actions_realloc_{}B", mix.max_size);
        let description = format!(
            "{threads} thread(s), one heap: random alloc / free / realloc, 8 B–{} B \
             (wall time per action)",
            mix.max_size
        );
        record(&["group", &name, "ns/op", &description]);
        let mut group = c.benchmark_group(&name);
        let workload = Workload::Threads(mix, threads);
        let mut timed = Timed { group: &mut group, name: name.clone(), workload };
        visit_shared(&mut timed);
        if threads == 1 {
            // `Local` over each cached subject's policy: the single-threaded frontend that the
            // thread-safe ones are measured against.
            VisitSubjects::visit::<BudallocHeap>(&mut timed);
            VisitSubjects::visit::<BudallocHeapPlain>(&mut timed);
        }
        group.finish();
    }
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
    targets = check_all, efficiency, a_pair, b_batches, c_fragmented, d_actions, e_threads
}
criterion_main!(peers);
