//! A plain driver of the workloads, for profilers (`perf`, `valgrind --tool=callgrind`):
//!
//! ```text
//! cargo build --profile bench -p budalloc-benches --example drive
//! target/release/examples/drive <subject> <a|b|c-free|c-cycle|d<max>|n<max>|s<live>|f> <iterations> [live]
//! ```
//!
//! `<subject>` is a name from the reports (`budalloc`, `budalloc-classes`, `talc`, `system`, …;
//! every subject of `budalloc_benches::visit_subjects`). An iteration is a pair for `a`, a round
//! of 1000 allocations and 1000 frees for `b`, one free for `c-free` (allocations back and
//! rebuilds untimed), one free plus allocation back for `c-cycle` (rebuilds untimed) and one
//! random action (alloc / free / realloc, 8 B – 2000 B, at most 1000 live) for `d` (`d<max>`: 8 B – `max` B,
//! e.g. `d30000`; `n<max>`: the same without reallocations), one 8192-byte pair beside `<live>`
//! live 300-byte objects for `s<live>` (a large block shaped like a slab, among many slabs), and
//! for `f` one request just larger than every hole of a region filled with 12 800-byte blocks
//! of which every other one was freed (a region allocator refuses it every time; the system
//! allocator and mimalloc grant it). It builds
//! the workload (untimed), runs it `iterations` times and prints the time per unit (per
//! operation for `b`).
//!
//! On a noisy machine, `drive compare <a|b|c-free|c-cycle|d<max>|n<max>|s<live>|f> <rounds> [live]` gives steadier
//! ratios: it builds the workload for every subject, then runs them in turn, in chunks of about
//! 20 ms, for `rounds` rounds (starting each round with another subject), and prints each
//! subject's median and minimum time per unit and the median per-round ratio to budalloc.
//!
//! `drive scale <shared-subject> <rounds> [actions]` measures how a heap shared by threads (the
//! subjects of `budalloc_benches::visit_shared`: `budalloc-cached`, `talc`, `mimalloc`, …) scales:
//! each round runs `actions` random actions (default 2 000 000; the `threads_N` workload: 8 B –
//! 4 KiB with reallocs) on one thread, then on [`THREADS`] threads, and it prints the median
//! wall time per action of each and the median per-round ratio, steadier than two separate
//! criterion groups on a shared machine. `drive scale <shared-subject> 0 <actions> <threads>`
//! runs `actions` actions on `threads` threads once, for `valgrind --tool=callgrind`.
//!
//! `drive eff <subject|all> [seeds] [a|b|c|talc|churn|fill]` runs the heap-efficiency workloads
//! (see `budalloc_benches::Efficiency`; all three without the last argument) for seeds
//! `0 .. seeds` (default 8) and prints, per subject and workload, the mean, worst and best share
//! of the 16 MiB region that live requested bytes reached at the first failure, and what failed.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use budalloc_benches::{
    summarize, visit_shared, visit_subjects, ActionMix, Actions, Batch, Efficiency, Fragmented, Pair, Shared,
    Subject, Threads, VisitShared, VisitSubjects, THREADS, THREAD_MIX,
};

/// The random actions of workload `d`.
const ACTIONS: ActionMix = ActionMix { max_size: 2000, realloc: true, max_live: 1000 };

/// Runs `n` iterations of a workload; returns the timed part and the units done.
type Runner = Box<dyn FnMut(u64) -> Result<(Duration, u64), String>>;

fn runner<S: Subject + 'static>(workload: &str, live: usize) -> Result<Runner, String> {
    Ok(match workload {
        "a" => {
            let mut w = Pair::<S>::new(64)?;
            Box::new(move |n| {
                let start = Instant::now();
                for _ in 0..n {
                    w.run()?;
                }
                Ok((start.elapsed(), n))
            })
        }
        "b" => {
            let mut w = Batch::<S>::new(1000, 16, 4096)?;
            Box::new(move |n| {
                let start = Instant::now();
                for _ in 0..n {
                    w.run()?;
                }
                Ok((start.elapsed(), n * w.ops() as u64))
            })
        }
        "c-free" => {
            let mut w = Fragmented::<S>::new(live)?;
            Box::new(move |n| {
                let mut timed = Duration::ZERO;
                w.time_frees(n, 100, &mut timed)?;
                Ok((timed, n))
            })
        }
        "c-cycle" => {
            let mut w = Fragmented::<S>::new(live)?;
            Box::new(move |n| {
                let mut timed = Duration::ZERO;
                w.time_cycles(n, &mut timed)?;
                Ok((timed, n))
            })
        }
        d if d.starts_with('d') || d.starts_with('n') => {
            let max_size = match &d[1..] {
                "" => ACTIONS.max_size,
                max => max.parse().map_err(|_| format!("unknown workload {d}"))?,
            };
            let realloc = d.starts_with('d');
            let mut w = Actions::<S>::new(ActionMix { max_size, realloc, ..ACTIONS })?;
            Box::new(move |n| {
                let start = Instant::now();
                w.run(n)?;
                Ok((start.elapsed(), n))
            })
        }
        s if s.starts_with('s') => {
            let live = s[1..].parse().map_err(|_| format!("unknown workload {s}"))?;
            let mut w = Pair::<S>::beside(8192, live, 300)?;
            Box::new(move |n| {
                let start = Instant::now();
                for _ in 0..n {
                    w.run()?;
                }
                Ok((start.elapsed(), n))
            })
        }
        "f" => {
            // Holes of at least 12 800 bytes between live blocks; a request just larger than
            // every hole, again and again.
            let mut w = Pair::<S>::among_holes(12_800)?;
            Box::new(move |n| {
                let start = Instant::now();
                let granted = (0..n).filter(|_| w.try_run()).count();
                if granted > 0 && granted as u64 != n {
                    return Err(format!("{granted} of {n} requests among the holes succeeded"));
                }
                Ok((start.elapsed(), n))
            })
        }
        other => return Err(format!("unknown workload {other}")),
    })
}

/// Builds a runner for every subject (`compare`) or for the one named (`drive <subject>`).
struct Runners {
    /// `None`: every subject.
    only: Option<String>,
    workload: String,
    live: usize,
    built: Vec<(&'static str, Runner)>,
    error: Option<String>,
}

impl VisitSubjects for Runners {
    fn visit<S: Subject + 'static>(&mut self) {
        if self.error.is_some() || self.only.as_ref().is_some_and(|name| name != S::name()) {
            return;
        }
        match runner::<S>(&self.workload, self.live) {
            Ok(run) => self.built.push((S::name(), run)),
            Err(e) => self.error = Some(format!("{}: {e}", S::name())),
        }
    }
}

fn runners(only: Option<&str>, workload: &str, live: usize) -> Result<Vec<(&'static str, Runner)>, String> {
    let mut r = Runners {
        only: only.map(str::to_string),
        workload: workload.to_string(),
        live,
        built: Vec::new(),
        error: None,
    };
    visit_subjects(&mut r);
    match (r.error, only) {
        (Some(e), _) => Err(e),
        (None, Some(name)) if r.built.is_empty() => Err(format!("unknown subject {name}")),
        (None, _) => Ok(r.built),
    }
}

fn drive(subject: &str, workload: &str, iterations: u64, live: usize) -> Result<(), String> {
    let mut built = runners(Some(subject), workload, live)?;
    let (name, run) = &mut built[0];
    let (elapsed, per) = run(iterations)?;
    println!("{name} {workload}: {:.2} ns per unit ({per} units)", elapsed.as_nanos() as f64 / per as f64);
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn compare(workload: &str, rounds: usize, live: usize) -> Result<(), String> {
    let mut subjects = runners(None, workload, live)?;
    // Calibrate: iterations per chunk of about 20 ms (after a warm-up chunk).
    let mut chunk = Vec::new();
    for (_, run) in &mut subjects {
        let mut n = 1;
        loop {
            let (t, _) = run(n)?;
            if t >= Duration::from_millis(20) || n >= 1 << 30 {
                break;
            }
            n *= 2;
        }
        chunk.push(n);
    }
    let mut times = vec![Vec::new(); subjects.len()];
    for round in 0..rounds {
        for j in 0..subjects.len() {
            let i = (round + j) % subjects.len();
            let (t, units) = (subjects[i].1)(chunk[i])?;
            times[i].push(t.as_nanos() as f64 / units as f64);
        }
    }
    let base = times[0].clone();
    println!("{workload} (live {live}), {rounds} rounds of ~20 ms per subject");
    for (i, (name, _)) in subjects.iter().enumerate() {
        let mut ratios: Vec<f64> = times[i].iter().zip(&base).map(|(t, b)| t / b).collect();
        let min = times[i].iter().copied().fold(f64::INFINITY, f64::min);
        let med = median(&mut times[i]);
        println!(
            "{name:24} median {med:9.2} ns  min {min:9.2} ns  peer/budalloc per round: median {:.2}",
            median(&mut ratios)
        );
    }
    Ok(())
}

/// `drive scale`: one shared heap on one thread and on [`THREADS`] threads, round by round.
struct Scale {
    subject: String,
    rounds: usize,
    actions: u64,
    /// With `rounds == 0`: the threads of the single run.
    threads: usize,
    matched: bool,
    result: Result<(), String>,
}

impl Scale {
    fn run<T: Shared + 'static>(&self) -> Result<(), String> {
        if self.rounds == 0 {
            let mut w = Threads::<T>::new(THREAD_MIX, self.threads)?;
            let t = w.run(self.actions)?;
            w.verify()?;
            println!(
                "{} on {} thread(s): {:.2} ns per action",
                T::name(),
                self.threads,
                per(t, self.actions)
            );
            return Ok(());
        }
        // Each round builds fresh heaps, so that no round inherits another's fragmentation.
        let (mut one, mut many, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..self.rounds {
            let t1 = per(Threads::<T>::new(THREAD_MIX, 1)?.run(self.actions)?, self.actions);
            let t2 = per(Threads::<T>::new(THREAD_MIX, THREADS)?.run(self.actions)?, self.actions);
            one.push(t1);
            many.push(t2);
            ratios.push(t1 / t2);
        }
        println!(
            "{:24} 1 thread {:7.2} ns  {THREADS} threads {:7.2} ns per action (medians of {} rounds of {} \
             actions); throughput ratio per round: median {:.2}, min {:.2}, max {:.2}",
            T::name(),
            median(&mut one),
            median(&mut many),
            self.rounds,
            self.actions,
            median(&mut ratios.clone()),
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
        );
        Ok(())
    }
}

/// Nanoseconds per action.
fn per(t: Duration, actions: u64) -> f64 {
    t.as_nanos() as f64 / actions as f64
}

impl VisitShared for Scale {
    fn visit<T: Shared + 'static>(&mut self) {
        if self.subject != "all" && self.subject != T::name() {
            return;
        }
        self.matched = true;
        if let Err(e) = self.run::<T>() {
            self.result = Err(format!("{}: {e}", T::name()));
        }
    }
}

fn scale(args: &[String]) -> ExitCode {
    let usage = "usage: drive scale <shared-subject|all> <rounds> [actions] [threads, with 0 rounds]";
    let parsed = |i: usize, default: u64| args.get(i).map_or(Some(default), |a| a.parse::<u64>().ok());
    let (Some(subject), Some(rounds), Some(actions), Some(threads)) = (
        args.first(),
        parsed(1, 0).filter(|_| args.len() > 1),
        // Rounds of 200 000 actions (a few milliseconds) measured thread start-up as much as
        // the workload: two-thread rounds scaled by 1.0 or 1.9 at random.
        parsed(2, 2_000_000),
        parsed(3, THREADS as u64),
    ) else {
        eprintln!("{usage}");
        return ExitCode::FAILURE;
    };
    let mut run = Scale {
        subject: subject.clone(),
        rounds: rounds as usize,
        actions: actions.max(1),
        threads: threads.max(1) as usize,
        matched: false,
        result: Ok(()),
    };
    visit_shared(&mut run);
    if !run.matched {
        eprintln!("unknown shared subject {subject}; {usage}");
        return ExitCode::FAILURE;
    }
    match run.result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("FAILED: scale {e}");
            ExitCode::FAILURE
        }
    }
}

/// `drive eff`: the efficiency workloads on the subjects whose name matches.
struct EffRun {
    subject: String,
    workloads: Vec<Efficiency>,
    seeds: u64,
    matched: usize,
    failed: usize,
}

impl VisitSubjects for EffRun {
    fn visit<S: Subject + 'static>(&mut self) {
        if self.subject != "all" && self.subject != S::name() {
            return;
        }
        self.matched += 1;
        for &workload in &self.workloads {
            let start = Instant::now();
            let line = match summarize::<S>(workload, self.seeds) {
                Ok(Some(s)) => format!(
                    "mean {:6.2}%  worst {:6.2}%  best {:6.2}%  ({} seeds, {:.1} s; worst stopped at: {})",
                    100.0 * s.mean,
                    100.0 * s.worst,
                    100.0 * s.best,
                    s.seeds,
                    start.elapsed().as_secs_f64(),
                    s.worst_stop
                ),
                Ok(None) => "n/a (not region-based)".to_string(),
                Err(e) => {
                    self.failed += 1;
                    format!("FAILED: {e}")
                }
            };
            println!("{:24} {:18} {line}", S::name(), workload.name());
        }
    }
}

fn eff(args: &[String]) -> ExitCode {
    let usage = "usage: drive eff <subject|all> [seeds] [a|b|c|talc|churn|fill]";
    let Some(subject) = args.first() else {
        eprintln!("{usage}");
        return ExitCode::FAILURE;
    };
    let seeds = match args.get(1).map(|s| s.parse::<u64>()) {
        None => 8,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("{usage}");
            return ExitCode::FAILURE;
        }
    };
    let workloads = match args.get(2) {
        None => Efficiency::ALL.to_vec(),
        Some(name) => match Efficiency::parse(name) {
            Some(w) => vec![w],
            None => {
                eprintln!("{usage}");
                return ExitCode::FAILURE;
            }
        },
    };
    let mut run = EffRun { subject: subject.clone(), workloads, seeds, matched: 0, failed: 0 };
    visit_subjects(&mut run);
    if run.matched == 0 {
        eprintln!("unknown subject {subject}; {usage}");
        return ExitCode::FAILURE;
    }
    if run.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("eff") {
        return eff(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some("scale") {
        return scale(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some("compare") {
        let (Some(workload), Some(rounds)) = (args.get(2), args.get(3).and_then(|r| r.parse().ok())) else {
            eprintln!("usage: drive compare <a|b|c-free|c-cycle|d<max>|n<max>|s<live>|f> <rounds> [live]");
            return ExitCode::FAILURE;
        };
        let live = args.get(4).and_then(|l| l.parse().ok()).unwrap_or(5000);
        return match compare(workload, rounds, live) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                println!("FAILED: compare {workload}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let usage = "usage: drive <subject> <a|b|c-free|c-cycle|d<max>|n<max>> <iterations> [live]";
    let (Some(subject), Some(workload), Some(iterations)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("{usage}");
        return ExitCode::FAILURE;
    };
    let Ok(iterations) = iterations.parse::<u64>() else {
        eprintln!("{usage}");
        return ExitCode::FAILURE;
    };
    let live = args.get(4).and_then(|l| l.parse().ok()).unwrap_or(5000);
    let result = drive(subject, workload, iterations, live);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("FAILED: {subject} {workload}: {e}");
            ExitCode::FAILURE
        }
    }
}
