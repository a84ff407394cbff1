//! `cargo xtask`: every CI step of budalloc as a command anyone can run locally.
//!
//! Run `cargo xtask help` for the list of commands. `cargo xtask ci` runs exactly what CI runs,
//! in the same order, and installs the rustup components and targets it needs first (those
//! installs are idempotent). `.ci/run` is a thin wrapper around `cargo xtask ci`.
//!
//! Architecture invariant: xtask depends on no budalloc crate and on no crate from crates.io. It
//! drives `cargo` and `rustup` through [`std::process::Command`] with inherited stdio, and reads
//! `cargo metadata` with the small JSON parser at the bottom of this file.

use std::collections::BTreeSet;
use std::env;
use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

mod bench;

// ---------------------------------------------------------------------------------------------
// What the commands run. Extend these lists rather than the command functions.
// ---------------------------------------------------------------------------------------------

/// The Tree Borrows runs of `cargo xtask miri`: package, test targets (none: all of them, doc
/// tests included) and the lane (0 or 1) the run goes in. Together they hold every test of the
/// unsafe crates bar [`MIRI_SKIPPED`]. Lane 0 also runs the Stacked Borrows pass, lane 1 the
/// global allocator and the many-seeds pass (see `miri_lanes`). Balanced by measurement
/// (`.ci/run` on a clean clone of commit 22ffd9c, 2026-12-08, each run with its build): in
/// lane 0 the buddy 6.3 min, the core 0.3, the TLSF 2.7, the size classes' unit tests 1.2, the
/// frontends 2.4 and Stacked Borrows 0.1; in lane 1 the size classes' integration tests 10.4,
/// the global allocator 2.4 and the seeds 0.9: 13.0 min against 13.7.
const MIRI_RUNS: &[(&str, &[&str], usize)] = &[
    ("budalloc-buddy", &[], 0),
    ("budalloc-core", &[], 0),
    ("budalloc-tlsf", &[], 0),
    ("budalloc-classes", &["--lib"], 0),
    ("budalloc-sync", &[], 0),
    ("budalloc-classes", &["--test", "all"], 1),
    ("budalloc-classes", &["--doc"], 1),
];

/// Flags for the Miri run: tree borrows, strict provenance, symbolic alignment.
const MIRIFLAGS: &str = "-Zmiri-tree-borrows -Zmiri-strict-provenance -Zmiri-symbolic-alignment-check";

/// Flags for the Stacked Borrows pass (Miri's default model).
const MIRIFLAGS_STACKED: &str = "-Zmiri-strict-provenance -Zmiri-symbolic-alignment-check";

/// Schedules (seeds) the threaded tests run under in Miri.
const MIRI_SEEDS: u32 = 4;

/// Tests that run under Stacked Borrows too: package, test target, name filters. Everything
/// else reads or writes a bitmap through bitvec, which Stacked Borrows rejects inside bitvec
/// itself (ferrilab/bitvec#193); those run under Tree Borrows only.
const MIRI_STACKED_BORROWS: &[(&str, &[&str], &[&str])] = &[
    ("budalloc-core", &["--lib"], &["size_math", "order_for", "orders_stay", "stats_and", "bad_regions"]),
    ("budalloc-sync", &["--lib"], &["with_refuses_reentrance"]),
    ("budalloc-sync", &["--test", "all"], &["zero_size"]),
    // The TLSF chunks over the test kit's `Fake` backend (no bitvec): a free through a pointer
    // that reaches the layout only.
    ("budalloc-tlsf", &["--test", "all"], &["passes_stacked_borrows"]),
];

/// Proptest cases per property under Miri (it runs each case roughly 100x slower than native).
const MIRI_PROPTEST_CASES: &str = "8";

/// Packages whose tests also run in release builds, so that the size arithmetic is checked
/// without debug-mode overflow checks.
const RELEASE_TEST_PACKAGES: &[&str] =
    &["budalloc-buddy", "budalloc-classes", "budalloc-core", "budalloc-tlsf"];

/// Embedded target the `no_std` crates must build for.
const NOSTD_TARGET: &str = "thumbv7em-none-eabihf";

/// Packages that must build for [`NOSTD_TARGET`] without default features.
const NOSTD_PACKAGES: &[&str] =
    &["budalloc-core", "budalloc-buddy", "budalloc-classes", "budalloc-tlsf", "budalloc-sync", "budalloc"];

/// Package holding the criterion benchmarks.
const BENCH_PACKAGE: &str = "budalloc-benches";

/// criterion settings for `cargo xtask bench --quick` (the whole run in about a minute on two
/// cores): 0.1 s warm-up, 0.3 s measurement, 10 samples, 1000 bootstrap resamples.
const QUICK_BENCH_ARGS: &[&str] =
    &["--warm-up-time", "0.1", "--measurement-time", "0.3", "--sample-size", "10", "--nresamples", "1000"];

/// cargo-fuzz targets (the `[[bin]]`s of `fuzz/Cargo.toml`), in the order `cargo xtask fuzz` runs
/// them.
const FUZZ_TARGETS: &[&str] = &[
    "buddy_ops",
    "buddy_exact_ops",
    "local_ops",
    "abuse",
    "global_ops",
    "classes_ops",
    "cached_ops",
    "tlsf_ops",
];

/// Seconds per target of `cargo xtask fuzz` without `--time`.
const FUZZ_DEFAULT_SECS: u64 = 30;

/// Committed seed corpora, one directory per target: read by every run, never written.
const FUZZ_SEEDS_DIR: &str = "fuzz/corpus";

/// Working corpora, one directory per target (git-ignored): where libFuzzer keeps what it finds,
/// so runs build on each other without touching the committed seeds.
const FUZZ_WORK_DIR: &str = "fuzz/corpus-run";

/// Seconds per target of the `fuzz-smoke` stage of `cargo xtask ci`.
const FUZZ_SMOKE_SECS: u64 = 15;

/// Working corpora of `fuzz-smoke`, one directory per target, emptied before each run (inside
/// the fuzz workspace's git-ignored target directory): every smoke run starts from the committed
/// seeds alone and writes nothing into the source tree.
const FUZZ_SMOKE_DIR: &str = "fuzz/target/smoke-corpus";

/// Package and example run by `cargo xtask demo`.
const DEMO_PACKAGE: &str = "budalloc";
/// See [`DEMO_PACKAGE`].
const DEMO_EXAMPLE: &str = "tour";

/// Which workspace crates a package may have as normal (non-dev) dependencies.
enum Allowed {
    /// Exactly these workspace crates, or a subset of them.
    Only(&'static [&'static str]),
    /// Any workspace crate (benchmarks and fuzzers sit on top of everything).
    Any,
}

/// The architecture rule checked by `cargo xtask tidy` (conventions item 8). Every workspace
/// package needs an entry here; dev-dependencies are not restricted.
const ALLOWED_DEPS: &[(&str, Allowed)] = &[
    ("budalloc-core", Allowed::Only(&[])),
    ("budalloc-buddy", Allowed::Only(&["budalloc-core"])),
    ("budalloc-classes", Allowed::Only(&["budalloc-core"])),
    ("budalloc-tlsf", Allowed::Only(&["budalloc-core"])),
    ("budalloc-sync", Allowed::Only(&["budalloc-core"])),
    (
        "budalloc",
        Allowed::Only(&[
            "budalloc-core",
            "budalloc-buddy",
            "budalloc-classes",
            "budalloc-tlsf",
            "budalloc-sync",
        ]),
    ),
    ("budalloc-testkit", Allowed::Only(&["budalloc-core"])),
    ("budalloc-benches", Allowed::Any),
    ("fuzz", Allowed::Any),
    ("budalloc-fuzz", Allowed::Any),
    ("xtask", Allowed::Only(&[])),
];

/// Phrase every crate's `lib.rs` header must contain.
const ARCHITECTURE_PHRASE: &str = "Architecture invariant";

/// Tokens forbidden in `.rs` files under `crates/` (outside `//` comment lines). Spelled with
/// `concat!` so that this file does not itself contain them (grep-based checks stay quiet).
const FORBIDDEN_IN_CRATES: &[(&str, &str)] = &[
    (concat!("todo", "!("), "a todo macro left in code"),
    (concat!("unimplemented", "!("), "an unimplemented macro left in code"),
    (concat!("#[ig", "nore]"), "ignored test; fix it or shrink it for slow runners instead"),
    (concat!("#[ig", "nore ="), "ignored test; fix it or shrink it for slow runners instead"),
];

/// Integer-to-pointer casts, forbidden everywhere in library, bench and fuzz code: pointers are
/// derived with `with_addr` / `map_addr` so provenance is kept.
const FORBIDDEN_CASTS: &[&str] = &["usize as *"];

/// Directories (relative to the workspace root) scanned for integer-to-pointer casts.
const CAST_SCAN_DIRS: &[&str] = &["crates", "benches", "fuzz"];

// ---------------------------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------------------------

const HELP: &str = "\
cargo xtask: budalloc's CI steps as local commands

USAGE:
    cargo xtask <COMMAND> [ARGS]

COMMANDS:
    ci       everything CI runs, in order: fmt, clippy, test, loom, tidy, doc, nostd, miri,
             fuzz-smoke (installs the rustup components, targets and cargo-fuzz it needs first)
    test     cargo test --workspace --all-features (unit, integration and doc tests),
             then the core and buddy tests again in release mode
    fmt      cargo fmt --all --check
    clippy   cargo clippy --workspace --all-targets --all-features -- -D warnings
    miri     cargo +nightly miri test on the unsafe crates, with tree borrows,
             strict provenance and symbolic alignment checks
    loom     the loom models of the thread-safe frontends (--cfg budalloc_loom,
             LOOM_MAX_PREEMPTIONS=2, release, own target dir; never capped)
    nostd    build the no_std crates for thumbv7em-none-eabihf without default features
    doc      cargo doc --workspace --no-deps --all-features with RUSTDOCFLAGS=\"-D warnings\"
    tidy     architecture rule (which crate may depend on which), lib.rs headers,
             no stub macros or ignored tests in crates/, no integer-to-pointer casts
    demo     cargo run --release -p budalloc --example tour
    bench    cargo bench -p budalloc-benches [ARGS] against the peers, then a markdown table
             and an SVG chart per workload (docs/bench/; with `--quick`, short criterion runs
             and target/bench-report/ instead)
             (extra arguments pass through; put criterion's after `--`)
    fuzz     [<target>...] [--time S]: cargo +nightly fuzz run on the named targets (default:
             every target), S seconds each (default 30), from the seeds in fuzz/corpus;
             installs cargo-fuzz with --locked first if `cargo fuzz` is missing
    fuzz-smoke
             every fuzz target for 15 s from its committed seeds, in a scratch corpus
             under fuzz/target (the `ci` stage; fails on any crash)
    help     this text

Every command prints what it runs (`$ cargo ...`) and stops at the first failing step.";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{HELP}");
        eprintln!("\nerror: no command given");
        return ExitCode::from(2);
    };
    let mut runner = Runner::new();
    let result = match command.as_str() {
        "help" | "-h" | "--help" => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        "bench" => bench(&mut runner, rest),
        "fuzz" => fuzz(&mut runner, rest),
        "ci" => no_args("ci", rest).and_then(|()| ci(&mut runner)),
        other => match single_stage(other) {
            Some(stage) => no_args(other, rest).and_then(|()| stage(&mut runner)),
            None => {
                eprintln!("{HELP}");
                Err(Failure(format!("unknown command `{other}`")))
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("\nerror: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The commands that take no arguments and are not `ci`.
fn single_stage(name: &str) -> Option<Stage> {
    Some(match name {
        "test" => test,
        "fmt" => fmt_check,
        "clippy" => clippy,
        "miri" => miri,
        "loom" => loom,
        "nostd" => nostd,
        "doc" => doc,
        "tidy" => tidy,
        "demo" => demo,
        "fuzz-smoke" => fuzz_smoke,
        _ => return None,
    })
}

fn no_args(command: &str, rest: &[String]) -> Result {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(Failure(format!("`cargo xtask {command}` takes no arguments (got `{}`)", rest.join(" "))))
    }
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/// A command's body.
type Stage = fn(&mut Runner) -> Result;

/// The stages of `cargo xtask ci`, in order.
const CI_STAGES: &[(&str, Stage)] = &[
    ("fmt", ci_fmt),
    ("clippy", ci_clippy),
    ("test", test),
    ("loom", loom),
    ("tidy", tidy),
    ("doc", doc),
    ("nostd", nostd),
    ("miri", miri),
    ("fuzz-smoke", fuzz_smoke),
];

fn ci(runner: &mut Runner) -> Result {
    let start = Instant::now();
    let mut result = Ok(());
    let mut failed_at = None;
    for (index, (name, stage)) in CI_STAGES.iter().enumerate() {
        banner(&format!("ci stage {}/{}: {name}", index + 1, CI_STAGES.len()));
        if let Err(failure) = stage(runner) {
            result = Err(failure);
            failed_at = Some(index);
            break;
        }
    }
    let skipped: Vec<&str> = match failed_at {
        Some(index) => CI_STAGES[index + 1..].iter().map(|(name, _)| *name).collect(),
        None => Vec::new(),
    };
    runner.print_summary("ci summary", &skipped, start.elapsed());
    result.map_err(|Failure(message)| Failure(format!("ci failed: {message}")))
}

/// `fmt` in CI: make sure rustfmt exists first.
fn ci_fmt(runner: &mut Runner) -> Result {
    ensure_stable_components(runner)?;
    fmt_check(runner)
}

/// `clippy` in CI: make sure clippy exists first.
fn ci_clippy(runner: &mut Runner) -> Result {
    ensure_stable_components(runner)?;
    clippy(runner)
}

fn fmt_check(runner: &mut Runner) -> Result {
    runner.run_step("fmt", cargo(["fmt", "--all", "--check"]))
}

fn clippy(runner: &mut Runner) -> Result {
    runner.run_step(
        "clippy",
        cargo(["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"]),
    )
}

fn test(runner: &mut Runner) -> Result {
    runner.run_step("test", cargo(["test", "--workspace", "--all-features"]))?;
    let mut release = cargo(["test", "--release"]);
    for package in RELEASE_TEST_PACKAGES {
        release = release.args(["-p", package]);
    }
    runner.run_step("test --release", release.arg("--all-features"))
}

/// Packages with loom models (an integration test named `loom`).
const LOOM_PACKAGES: &[&str] = &["budalloc-sync"];

fn loom(runner: &mut Runner) -> Result {
    for package in LOOM_PACKAGES {
        let test = cargo([
            "test",
            "--release",
            "-p",
            package,
            "--test",
            "loom",
            "--",
            "--test-threads=1",
            "--nocapture",
        ])
        .env("RUSTFLAGS", "--cfg budalloc_loom")
        .env("LOOM_MAX_PREEMPTIONS", "2")
        .env("LOOM_LOG", "info")
        // A target directory of its own: the cfg changes every crate's build.
        .env("CARGO_TARGET_DIR", "target/loom");
        runner.run_step(&format!("loom {package}"), test)?;
    }
    Ok(())
}

fn nostd(runner: &mut Runner) -> Result {
    ensure_nostd_target(runner)?;
    let mut build = cargo(["build", "--target", NOSTD_TARGET]);
    for package in NOSTD_PACKAGES {
        build = build.args(["-p", package]);
    }
    runner.run_step("nostd", build.arg("--no-default-features"))
}

/// Tests left out of the Miri run for time (each minutes under Miri): three of the five
/// random-action property tests of the size classes; the two that stay (over the exact-fit
/// buddy, and at the default limit) drive the same code paths; and the TLSF's run in its
/// default geometry. They run natively in `test`.
const MIRI_SKIPPED: &[&str] = &[
    "random_actions_over_the_plain_buddy",
    "random_actions_with_large_slabs",
    "random_class_actions_over_two_arenas",
    // The TLSF's default geometry needs a 4 MiB arena; the two runs in small chunks drive the
    // same paths.
    "random_actions_default_geometry",
];

fn miri(runner: &mut Runner) -> Result {
    ensure_nightly_miri(runner)?;
    runner.run_step("miri setup", cargo(["+nightly", "miri", "setup"]))?;
    // Miri interprets on one core: the runs go in two lanes, one per core, each lane with a
    // target directory of its own (so that the lanes do not wait for each other's build lock).
    let lanes: Vec<Vec<(String, Cmd)>> = miri_lanes()
        .into_iter()
        .enumerate()
        .map(|(lane, runs)| {
            let target = format!("target/miri-lane-{lane}");
            runs.into_iter().map(|(name, cmd)| (name, cmd.env("CARGO_TARGET_DIR", &target))).collect()
        })
        .collect();
    runner.run_lanes("miri", &lanes)
}

/// The Miri runs, in two lanes of about the same length.
fn miri_lanes() -> [Vec<(String, Cmd)>; 2] {
    // 1. Tree Borrows: every test of an unsafe crate (bar `MIRI_SKIPPED`).
    let tree_borrows = |package: &str, targets: &[&str]| {
        let test = cargo(["+nightly", "miri", "test", "-p", package, "--all-features"])
            .args(targets.iter().copied())
            .arg("--")
            .args(MIRI_SKIPPED.iter().flat_map(|t| ["--skip", t]));
        let name = format!("miri tree borrows: {package} {}", targets.join(" "));
        (name.trim_end().to_string(), miri_env(test, MIRIFLAGS))
    };
    // ... and the global-allocator binaries of the facade.
    let global = cargo(["+nightly", "miri", "test", "-p", "budalloc", "--all-features"]).args([
        "--test",
        "global",
        "--test",
        "cached_global",
    ]);
    let global = ("miri tree borrows: global allocator".to_string(), miri_env(global, MIRIFLAGS));
    // 2. The threaded tests under several schedules.
    let seeds = format!("{MIRIFLAGS} -Zmiri-many-seeds=0..{MIRI_SEEDS}");
    let threaded =
        cargo(["+nightly", "miri", "test", "-p", "budalloc-sync", "--all-features", "--test", "all"])
            .args(["--", "threads_share"]);
    let threaded = ("miri tree borrows: threads, many seeds".to_string(), miri_env(threaded, &seeds));
    // 3. Stacked Borrows where bitvec is not involved (bitvec 1.1 itself breaks Stacked Borrows,
    //    ferrilab/bitvec#193, on every bitmap access).
    let stacked = MIRI_STACKED_BORROWS.iter().map(|(package, target, filters)| {
        let sb = cargo(["+nightly", "miri", "test", "-p", package, "--all-features"])
            .args(target.iter().copied())
            .arg("--")
            .args(filters.iter().copied());
        (format!("miri stacked borrows: {package} {}", target.join(" ")), miri_env(sb, MIRIFLAGS_STACKED))
    });
    let lane = |n: usize| {
        MIRI_RUNS.iter().filter(move |(_, _, l)| *l == n).map(move |&(p, t, _)| tree_borrows(p, t))
    };
    // See `MIRI_RUNS` for what each run takes.
    let first = lane(0).chain(stacked).collect();
    let second = lane(1).chain([global, threaded]).collect();
    [first, second]
}

/// The environment of every Miri run: flags, few proptest cases, no optimisation.
fn miri_env(command: Cmd, flags: &str) -> Cmd {
    command
        .env("MIRIFLAGS", flags)
        .env("PROPTEST_CASES", MIRI_PROPTEST_CASES)
        // Miri ignores optimisation; the test profile's opt-level would only add a warning.
        .env("CARGO_PROFILE_TEST_OPT_LEVEL", "0")
}

fn doc(runner: &mut Runner) -> Result {
    runner.run_step(
        "doc",
        cargo(["doc", "--workspace", "--no-deps", "--all-features"]).env("RUSTDOCFLAGS", "-D warnings"),
    )
}

fn demo(runner: &mut Runner) -> Result {
    runner.run_step("demo", cargo(["run", "--release", "-p", DEMO_PACKAGE, "--example", DEMO_EXAMPLE]))
}

/// `cargo bench -p budalloc-benches`, passing `args` through, then the report ([`bench::run`]).
fn bench(runner: &mut Runner, args: &[String]) -> Result {
    bench::run(runner, args)
}

/// The `cargo bench` line for `cargo xtask bench ARGS`: `--quick` (anywhere before a `--`) adds
/// [`QUICK_BENCH_ARGS`] in front of criterion's own arguments (those after `--`).
fn bench_command(args: &[String]) -> Cmd {
    let (cargo_args, harness_args) = match args.iter().position(|arg| arg == "--") {
        Some(split) => (&args[..split], &args[split + 1..]),
        None => (args, &[][..]),
    };
    let quick = cargo_args.iter().any(|arg| arg == "--quick");
    let mut command = cargo(["bench", "-p", BENCH_PACKAGE])
        .args(cargo_args.iter().filter(|arg| *arg != "--quick").map(String::as_str));
    if quick || !harness_args.is_empty() {
        command = command.arg("--");
        if quick {
            command = command.args(QUICK_BENCH_ARGS.iter().copied());
        }
        command = command.args(harness_args.iter().map(String::as_str));
    }
    command
}

/// `cargo xtask fuzz [<target>...] [--time S]`: each target for `S` seconds, starting from its
/// committed seeds ([`FUZZ_SEEDS_DIR`]) and its working corpus ([`FUZZ_WORK_DIR`]), where new
/// inputs go. Stops at the first target that fails (libFuzzer saved the input in
/// `fuzz/artifacts/<target>/`).
fn fuzz(runner: &mut Runner, args: &[String]) -> Result {
    let (targets, secs) = parse_fuzz_args(args)?;
    ensure_cargo_fuzz(runner)?;
    let start = Instant::now();
    let mut result = Ok(());
    let mut failed_at = None;
    for (index, target) in targets.iter().enumerate() {
        let work = runner.root.join(FUZZ_WORK_DIR).join(target);
        let seeds_exist = runner.root.join(FUZZ_SEEDS_DIR).join(target).is_dir();
        let step = fs::create_dir_all(&work)
            .map_err(|e| Failure(format!("cannot create {}: {e}", work.display())))
            .and_then(|()| {
                let command = fuzz_command(target, FUZZ_WORK_DIR, secs, seeds_exist);
                runner.run_step(&format!("fuzz {target}"), command)
            });
        if let Err(failure) = step {
            result = Err(failure);
            failed_at = Some(index);
            break;
        }
    }
    if targets.len() > 1 {
        let skipped: Vec<&str> = failed_at.map_or(Vec::new(), |index| targets[index + 1..].to_vec());
        runner.print_summary("fuzz summary", &skipped, start.elapsed());
    }
    result
}

/// The targets and seconds per target of `cargo xtask fuzz ARGS`: targets in the order given (all
/// of [`FUZZ_TARGETS`] if none), `--time S` or `--time=S` (default [`FUZZ_DEFAULT_SECS`]).
fn parse_fuzz_args(args: &[String]) -> Result<(Vec<&'static str>, u64)> {
    let mut targets = Vec::new();
    let mut secs = FUZZ_DEFAULT_SECS;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = if arg == "--time" {
            Some(args.next().ok_or_else(|| Failure("`--time` needs a number of seconds".into()))?.as_str())
        } else {
            arg.strip_prefix("--time=")
        };
        if let Some(value) = value {
            secs = value.parse().ok().filter(|&s| s > 0).ok_or_else(|| {
                Failure(format!("`--time` takes a positive number of seconds (got `{value}`)"))
            })?;
        } else if let Some(target) = FUZZ_TARGETS.iter().find(|t| **t == arg) {
            targets.push(*target);
        } else {
            return Err(Failure(format!(
                "unknown fuzz target or option `{arg}` (targets: {}; option: --time S)",
                FUZZ_TARGETS.join(", ")
            )));
        }
    }
    if targets.is_empty() {
        targets = FUZZ_TARGETS.to_vec();
    }
    Ok((targets, secs))
}

/// `cargo xtask fuzz-smoke`, the last stage of `ci`: builds every target once, then runs each of
/// [`FUZZ_TARGETS`] for [`FUZZ_SMOKE_SECS`] from its committed seeds alone, with a working corpus
/// in [`FUZZ_SMOKE_DIR`] that is emptied first, two targets at a time (their output goes to
/// `target/xtask-logs/fuzz-smoke-<lane>.log` and is printed when both lanes are done). Fails at
/// the first target without seeds, or when a run fails (a crash, a leak, a timeout: libFuzzer
/// saved the input in `fuzz/artifacts/<target>/`).
fn fuzz_smoke(runner: &mut Runner) -> Result {
    ensure_cargo_fuzz(runner)?;
    runner.run_step("fuzz build", cargo(["+nightly", "fuzz", "build"]))?;
    // A libFuzzer run keeps one core busy: the targets go in two lanes, one per core.
    let mut lanes: Vec<Vec<(String, Cmd)>> = vec![Vec::new(), Vec::new()];
    for (i, target) in FUZZ_TARGETS.iter().enumerate() {
        let seeds = runner.root.join(FUZZ_SEEDS_DIR).join(target);
        if !seeds.is_dir() {
            return Err(Failure(format!(
                "fuzz target `{target}` has no seed corpus: commit a few inputs in {}",
                relative(&runner.root, &seeds)
            )));
        }
        let work = runner.root.join(FUZZ_SMOKE_DIR).join(target);
        match fs::remove_dir_all(&work) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Failure(format!("cannot empty {}: {e}", work.display()))),
        }
        fs::create_dir_all(&work).map_err(|e| Failure(format!("cannot create {}: {e}", work.display())))?;
        let command = fuzz_command(target, FUZZ_SMOKE_DIR, FUZZ_SMOKE_SECS, true);
        lanes[i % 2].push((format!("fuzz-smoke {target}"), command));
    }
    runner.run_lanes("fuzz-smoke", &lanes)
}

/// `cargo +nightly fuzz run <target> <work>/<target> [<seeds>] -- -max_total_time=<secs>
/// -print_final_stats=1`: libFuzzer writes new inputs into the first corpus directory only.
fn fuzz_command(target: &str, work: &str, secs: u64, with_seeds: bool) -> Cmd {
    let work = format!("{work}/{target}");
    let seeds = format!("{FUZZ_SEEDS_DIR}/{target}");
    let mut command = cargo(["+nightly", "fuzz", "run", target, &work]);
    if with_seeds {
        command = command.arg(&seeds);
    }
    command.args(["--", &format!("-max_total_time={secs}"), "-print_final_stats=1"])
}

// ---------------------------------------------------------------------------------------------
// Toolchain setup (idempotent; a no-op when everything is installed)
// ---------------------------------------------------------------------------------------------

/// rustfmt and clippy on the active (stable) toolchain.
fn ensure_stable_components(runner: &mut Runner) -> Result {
    if runner.ensured.stable || !rustup_available(runner) {
        return Ok(());
    }
    runner.run_step("setup: rustfmt, clippy", rustup(["component", "add", "rustfmt", "clippy"]))?;
    runner.ensured.stable = true;
    Ok(())
}

/// The standard library for [`NOSTD_TARGET`].
fn ensure_nostd_target(runner: &mut Runner) -> Result {
    if runner.ensured.nostd_target || !rustup_available(runner) {
        return Ok(());
    }
    runner.run_step(&format!("setup: {NOSTD_TARGET}"), rustup(["target", "add", NOSTD_TARGET]))?;
    runner.ensured.nostd_target = true;
    Ok(())
}

/// A nightly toolchain with Miri and the standard library sources Miri rebuilds.
fn ensure_nightly_miri(runner: &mut Runner) -> Result {
    if runner.ensured.nightly_miri || !rustup_available(runner) {
        return Ok(());
    }
    ensure_nightly(runner)?;
    runner.run_step("setup: miri, rust-src", rustup(["+nightly", "component", "add", "miri", "rust-src"]))?;
    runner.ensured.nightly_miri = true;
    Ok(())
}

/// A nightly toolchain (cargo-fuzz needs it for the sanitizers and `-Z` flags).
fn ensure_nightly(runner: &mut Runner) -> Result {
    if runner.ensured.nightly || !rustup_available(runner) {
        return Ok(());
    }
    let probe = rustup(["run", "nightly", "rustc", "--version"]);
    if !runner.probe(&probe) {
        println!("nightly toolchain not found (`{probe}` failed); installing it");
        runner.run_step(
            "setup: nightly",
            rustup(["toolchain", "install", "nightly", "--profile", "minimal"]),
        )?;
    }
    runner.ensured.nightly = true;
    Ok(())
}

/// cargo-fuzz, installed with `cargo install --locked cargo-fuzz` if `cargo fuzz --version` fails.
fn ensure_cargo_fuzz(runner: &mut Runner) -> Result {
    ensure_nightly(runner)?;
    if runner.ensured.cargo_fuzz {
        return Ok(());
    }
    let probe = cargo(["fuzz", "--version"]);
    if !runner.probe(&probe) {
        println!("cargo-fuzz not found (`{probe}` failed); installing it");
        runner.run_step("setup: cargo-fuzz", cargo(["install", "--locked", "cargo-fuzz"]))?;
    }
    runner.ensured.cargo_fuzz = true;
    Ok(())
}

/// Whether `rustup` is on `PATH`. Without it (a distribution's Rust, Nix) the components are
/// assumed to be installed and the `ensure_*` helpers do nothing.
fn rustup_available(runner: &mut Runner) -> bool {
    let available = *runner.ensured.rustup.get_or_insert_with(|| {
        Command::new("rustup")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    });
    if !available && !runner.ensured.warned_no_rustup {
        println!("note: `rustup` not found on PATH; assuming components and targets are installed");
        runner.ensured.warned_no_rustup = true;
    }
    available
}

// ---------------------------------------------------------------------------------------------
// tidy
// ---------------------------------------------------------------------------------------------

fn tidy(runner: &mut Runner) -> Result {
    runner.step("tidy", |runner| {
        let mut violations = Vec::new();
        check_dependencies(runner, &mut violations)?;
        check_lib_headers(&runner.root, &mut violations)?;
        check_sources(&runner.root, &mut violations)?;
        if violations.is_empty() {
            println!("tidy: no violations");
            return Ok(());
        }
        eprintln!("tidy found {} violation(s):", violations.len());
        for violation in &violations {
            eprintln!("  {violation}");
        }
        Err(Failure(format!("tidy found {} violation(s) (listed above)", violations.len())))
    })
}

/// The architecture rule: normal and build dependencies between workspace packages must be in
/// [`ALLOWED_DEPS`].
fn check_dependencies(runner: &Runner, violations: &mut Vec<String>) -> Result {
    let metadata_cmd = cargo(["metadata", "--format-version", "1", "--no-deps"]);
    let text = runner.capture(&metadata_cmd)?;
    let metadata =
        Json::parse(&text).map_err(|e| Failure(format!("could not parse `{metadata_cmd}` output: {e}")))?;
    let bad_shape = || Failure(format!("unexpected shape of `{metadata_cmd}` output"));
    let packages = metadata.get("packages").and_then(Json::as_array).ok_or_else(bad_shape)?;

    let mut names = BTreeSet::new();
    for package in packages {
        names.insert(package.get("name").and_then(Json::as_str).ok_or_else(bad_shape)?);
    }
    for package in packages {
        let name = package.get("name").and_then(Json::as_str).ok_or_else(bad_shape)?;
        let Some((_, allowed)) = ALLOWED_DEPS.iter().find(|(rule, _)| *rule == name) else {
            violations.push(format!(
                "package `{name}` has no entry in ALLOWED_DEPS (xtask/src/main.rs): \
                 write down which workspace crates it may depend on"
            ));
            continue;
        };
        let dependencies = package.get("dependencies").and_then(Json::as_array).ok_or_else(bad_shape)?;
        for dependency in dependencies {
            let dep = dependency.get("name").and_then(Json::as_str).ok_or_else(bad_shape)?;
            let kind = dependency.get("kind").and_then(Json::as_str);
            if kind == Some("dev") || !names.contains(dep) {
                continue;
            }
            let ok = match allowed {
                Allowed::Any => true,
                Allowed::Only(list) => list.contains(&dep),
            };
            if !ok {
                let kind = if kind == Some("build") { "build dependency" } else { "dependency" };
                let list = match allowed {
                    Allowed::Only([]) => "no workspace crates".to_string(),
                    Allowed::Only(list) => list.join(", "),
                    Allowed::Any => unreachable!("`Any` allows everything"),
                };
                violations.push(format!(
                    "architecture: `{name}` has `{dep}` as a {kind}; it may depend on: {list}"
                ));
            }
        }
    }
    Ok(())
}

/// Every `crates/**/src/lib.rs` starts with a `//!` header stating its architecture invariant.
fn check_lib_headers(root: &Path, violations: &mut Vec<String>) -> Result {
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files)?;
    for file in files {
        let is_crate_root = file.file_name().is_some_and(|n| n == "lib.rs")
            && file.parent().and_then(Path::file_name).is_some_and(|n| n == "src")
            && file.parent().and_then(Path::parent).is_some_and(|dir| dir.join("Cargo.toml").is_file());
        if !is_crate_root {
            continue;
        }
        let text = read(&file)?;
        let header: Vec<&str> = text
            .lines()
            .skip_while(|line| line.trim().is_empty())
            .take_while(|line| line.trim_start().starts_with("//!"))
            .collect();
        let shown = relative(root, &file);
        if header.is_empty() {
            violations.push(format!(
                "{shown}: does not start with a `//!` header (it must state the crate's \
                 \"{ARCHITECTURE_PHRASE}: ...\")"
            ));
        } else if !header.iter().any(|line| line.contains(ARCHITECTURE_PHRASE)) {
            violations.push(format!(
                "{shown}: the `//!` header does not contain \"{ARCHITECTURE_PHRASE}\" \
                 (say what this crate may depend on)"
            ));
        }
    }
    Ok(())
}

/// Forbidden tokens in `crates/`, and integer-to-pointer casts in [`CAST_SCAN_DIRS`]. Lines that
/// are `//` comments (including doc comments) are not checked.
fn check_sources(root: &Path, violations: &mut Vec<String>) -> Result {
    for dir in CAST_SCAN_DIRS {
        let in_crates = *dir == "crates";
        let mut files = Vec::new();
        rust_files(&root.join(dir), &mut files)?;
        for file in files {
            let text = read(&file)?;
            let shown = relative(root, &file);
            for (index, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                let lineno = index + 1;
                if in_crates {
                    for (token, why) in FORBIDDEN_IN_CRATES {
                        if line.contains(token) {
                            violations.push(format!("{shown}:{lineno}: {why}: {}", line.trim()));
                        }
                    }
                }
                if FORBIDDEN_CASTS.iter().any(|token| line.contains(token)) {
                    violations.push(format!(
                        "{shown}:{lineno}: integer-to-pointer cast; derive the pointer with \
                         `with_addr`/`map_addr` instead: {}",
                        line.trim()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// All `.rs` files under `dir` (recursively, in a stable order), skipping `target` and hidden
/// directories. A missing `dir` has no files.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Failure(format!("cannot read directory {}: {e}", dir.display()))),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Failure(format!("cannot read directory {}: {e}", dir.display())))?;
        paths.push(entry.path());
    }
    paths.sort();
    for path in paths {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out)?;
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

// ---------------------------------------------------------------------------------------------
// Running commands and timing steps
// ---------------------------------------------------------------------------------------------

/// Why a command failed, for the user.
#[derive(Debug)]
struct Failure(String);

type Result<T = ()> = std::result::Result<T, Failure>;

/// A command line: program, arguments and extra environment. Displays as a shell line.
#[derive(Clone)]
struct Cmd {
    program: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
}

fn cargo<'a>(args: impl IntoIterator<Item = &'a str>) -> Cmd {
    Cmd { program: "cargo", args: Vec::new(), env: Vec::new() }.args(args)
}

fn rustup<'a>(args: impl IntoIterator<Item = &'a str>) -> Cmd {
    Cmd { program: "rustup", args: Vec::new(), env: Vec::new() }.args(args)
}

impl Cmd {
    fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    fn args<'a>(mut self, args: impl IntoIterator<Item = &'a str>) -> Self {
        self.args.extend(args.into_iter().map(str::to_string));
        self
    }

    fn env(mut self, key: &'static str, value: &str) -> Self {
        self.env.push((key, value.to_string()));
        self
    }

    fn command(&self, root: &Path) -> Command {
        let mut command = Command::new(self.program);
        command.args(&self.args).current_dir(root);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, value) in &self.env {
            write!(f, "{key}={} ", shell_quote(value))?;
        }
        f.write_str(self.program)?;
        for arg in &self.args {
            write!(f, " {}", shell_quote(arg))?;
        }
        Ok(())
    }
}

fn shell_quote(word: &str) -> String {
    let plain =
        !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_+=./:,@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// One timed step, for the summary.
struct StepRecord {
    name: String,
    duration: Duration,
    ok: bool,
}

/// What the `ensure_*` helpers have already done in this run.
#[derive(Default)]
struct Ensured {
    rustup: Option<bool>,
    warned_no_rustup: bool,
    stable: bool,
    nostd_target: bool,
    nightly_miri: bool,
    nightly: bool,
    cargo_fuzz: bool,
}

/// Runs commands from the workspace root and records how long each step took.
struct Runner {
    root: PathBuf,
    steps: Vec<StepRecord>,
    ensured: Ensured,
}

impl Runner {
    fn new() -> Self {
        // xtask lives in `<root>/xtask`; run everything from `<root>` whatever the caller's cwd.
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf();
        Runner { root, steps: Vec::new(), ensured: Ensured::default() }
    }

    /// Runs `body` as the step `name`, printing and recording its wall time.
    fn step(&mut self, name: &str, body: impl FnOnce(&mut Runner) -> Result) -> Result {
        let start = Instant::now();
        let result = body(self);
        let duration = start.elapsed();
        let ok = result.is_ok();
        let outcome = if ok { "ok" } else { "FAILED" };
        println!("--- {name}: {outcome} in {}", format_duration(duration));
        self.steps.push(StepRecord { name: name.to_string(), duration, ok });
        result.map_err(|Failure(message)| Failure(format!("step `{name}` failed: {message}")))
    }

    /// Runs `cmd` with inherited stdio as the step `name`.
    fn run_step(&mut self, name: &str, cmd: Cmd) -> Result {
        self.step(name, |runner| runner.run(&cmd))
    }

    /// Runs `lanes` side by side, each lane's steps in order (a lane stops at its first failing
    /// step), each lane's output going to `target/xtask-logs/<label>-<lane>.log`. When every lane
    /// is done, prints each lane's log, then records every step that ran. For work that keeps
    /// one core busy, as Miri does: two lanes on two cores take half the time of one.
    fn run_lanes(&mut self, label: &str, lanes: &[Vec<(String, Cmd)>]) -> Result {
        let dir = self.root.join("target").join("xtask-logs");
        fs::create_dir_all(&dir).map_err(|e| Failure(format!("cannot create {}: {e}", dir.display())))?;
        let logs: Vec<PathBuf> = (0..lanes.len()).map(|i| dir.join(format!("{label}-{i}.log"))).collect();
        for (i, lane) in lanes.iter().enumerate() {
            let names: Vec<&str> = lane.iter().map(|(name, _)| name.as_str()).collect();
            println!("lane {i} ({}): {}", logs[i].display(), names.join(", "));
        }
        let root = &self.root;
        let outcomes: Vec<Vec<(String, Duration, Result)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = lanes
                .iter()
                .zip(&logs)
                .map(|(lane, log)| scope.spawn(move || run_lane(root, lane, log)))
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle.join().unwrap_or_else(|_| {
                        vec![("lane".to_string(), Duration::ZERO, Err(Failure("a lane panicked".into())))]
                    })
                })
                .collect()
        });
        let mut result = Ok(());
        for (i, (outcome, log)) in outcomes.into_iter().zip(&logs).enumerate() {
            banner(&format!("{label}: lane {i}"));
            match fs::read_to_string(log) {
                Ok(text) => print!("{text}"),
                Err(e) => println!("(cannot read {}: {e})", log.display()),
            }
            for (name, duration, step) in outcome {
                let ok = step.is_ok();
                println!("--- {name}: {} in {}", if ok { "ok" } else { "FAILED" }, format_duration(duration));
                self.steps.push(StepRecord { name: name.clone(), duration, ok });
                if let (Err(Failure(message)), Ok(())) = (step, &result) {
                    result = Err(Failure(format!("step `{name}` failed: {message}")));
                }
            }
        }
        result
    }

    /// Prints `$ cmd`, runs it with inherited stdio and fails unless it exits successfully.
    fn run(&self, cmd: &Cmd) -> Result {
        println!("$ {cmd}");
        let status = cmd.command(&self.root).status().map_err(|e| spawn_failure(cmd, &e))?;
        if status.success() {
            Ok(())
        } else {
            Err(Failure(format!("`{cmd}` exited with {status}")))
        }
    }

    /// Like [`Runner::run`], but returns the command's stdout (stderr is inherited).
    fn capture(&self, cmd: &Cmd) -> Result<String> {
        println!("$ {cmd}");
        let output = cmd
            .command(&self.root)
            .stdin(Stdio::inherit())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| spawn_failure(cmd, &e))?;
        if !output.status.success() {
            return Err(Failure(format!("`{cmd}` exited with {}", output.status)));
        }
        String::from_utf8(output.stdout).map_err(|_| Failure(format!("`{cmd}` printed invalid UTF-8")))
    }

    /// Whether `cmd` succeeds; its output is discarded.
    fn probe(&self, cmd: &Cmd) -> bool {
        cmd.command(&self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// The table of recorded steps, then the `skipped` ones, then the total.
    fn print_summary(&self, title: &str, skipped: &[&str], total: Duration) {
        let width = self.steps.iter().map(|s| s.name.len()).chain(skipped.iter().map(|s| s.len())).max();
        let width = width.unwrap_or(0).max("total".len());
        banner(title);
        println!("{:<width$}  {:>9}  result", "step", "time");
        for step in &self.steps {
            let outcome = if step.ok { "ok" } else { "FAILED" };
            println!("{:<width$}  {:>9}  {outcome}", step.name, format_duration(step.duration));
        }
        for name in skipped {
            println!("{name:<width$}  {:>9}  not run", "-");
        }
        println!("{:<width$}  {:>9}", "total", format_duration(total));
    }
}

/// One lane of [`Runner::run_lanes`]: runs its steps in order with stdout and stderr appended
/// to `log`, up to the first failure; returns each step run with its wall time and outcome.
fn run_lane(root: &Path, lane: &[(String, Cmd)], log: &Path) -> Vec<(String, Duration, Result)> {
    let mut outcomes = Vec::new();
    let file = match fs::File::create(log) {
        Ok(file) => file,
        Err(e) => {
            let failure = Failure(format!("cannot create {}: {e}", log.display()));
            return vec![("lane".to_string(), Duration::ZERO, Err(failure))];
        }
    };
    for (name, cmd) in lane {
        let start = Instant::now();
        let log_error = |e: std::io::Error| Failure(format!("cannot write {}: {e}", log.display()));
        let result = (|| {
            let mut out = file.try_clone().map_err(log_error)?;
            std::io::Write::write_all(&mut out, format!("$ {cmd}\n").as_bytes()).map_err(log_error)?;
            let err = out.try_clone().map_err(log_error)?;
            let status = cmd
                .command(root)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .status()
                .map_err(|e| spawn_failure(cmd, &e))?;
            if status.success() {
                Ok(())
            } else {
                Err(Failure(format!("`{cmd}` exited with {status}")))
            }
        })();
        let failed = result.is_err();
        outcomes.push((name.clone(), start.elapsed(), result));
        if failed {
            break;
        }
    }
    outcomes
}

fn spawn_failure(cmd: &Cmd, error: &std::io::Error) -> Failure {
    if error.kind() == ErrorKind::NotFound {
        Failure(format!("could not run `{cmd}`: `{}` is not installed or not on PATH", cmd.program))
    } else {
        Failure(format!("could not run `{cmd}`: {error}"))
    }
}

fn banner(title: &str) {
    println!("\n=== {title} {}", "=".repeat(70usize.saturating_sub(title.len())));
}

fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let minutes = (secs / 60.0).floor();
        format!("{minutes:.0}m{:04.1}s", secs - minutes * 60.0)
    }
}

// ---------------------------------------------------------------------------------------------
// A minimal JSON parser, enough for `cargo metadata`
// ---------------------------------------------------------------------------------------------

/// A JSON value. Numbers are kept as their source text; nothing here needs their value.
#[derive(Debug)]
enum Json {
    Null,
    Bool(#[allow(dead_code)] bool),
    Number(#[allow(dead_code)] String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> std::result::Result<Json, String> {
        let mut parser = JsonParser { bytes: text.as_bytes(), pos: 0 };
        let value = parser.value(0)?;
        parser.skip_ws();
        if parser.pos != parser.bytes.len() {
            return Err(parser.error("trailing characters"));
        }
        Ok(value)
    }

    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }
}

struct JsonParser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// Nesting limit, far above what `cargo metadata` produces.
const JSON_MAX_DEPTH: usize = 128;

impl JsonParser<'_> {
    fn error(&self, what: &str) -> String {
        format!("{what} at byte {}", self.pos)
    }

    fn skip_ws(&mut self) {
        while self.bytes.get(self.pos).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8) -> std::result::Result<(), String> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.error(&format!("expected `{}`", byte as char)))
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> std::result::Result<Json, String> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.error("invalid literal"))
        }
    }

    fn value(&mut self, depth: usize) -> std::result::Result<Json, String> {
        if depth > JSON_MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        self.skip_ws();
        match self.bytes.get(self.pos) {
            None => Err(self.error("unexpected end of input")),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'"') => self.string().map(Json::String),
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value(depth + 1)?);
                        if self.eat(b']') {
                            break;
                        }
                        self.expect(b',')?;
                    }
                }
                Ok(Json::Array(items))
            }
            Some(b'{') => {
                self.pos += 1;
                let mut members = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        self.skip_ws();
                        if self.bytes.get(self.pos) != Some(&b'"') {
                            return Err(self.error("expected a string key"));
                        }
                        let key = self.string()?;
                        self.expect(b':')?;
                        members.push((key, self.value(depth + 1)?));
                        if self.eat(b'}') {
                            break;
                        }
                        self.expect(b',')?;
                    }
                }
                Ok(Json::Object(members))
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                while self
                    .bytes
                    .get(self.pos)
                    .is_some_and(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                {
                    self.pos += 1;
                }
                let number = std::str::from_utf8(&self.bytes[start..self.pos]).map_err(|e| e.to_string())?;
                Ok(Json::Number(number.to_string()))
            }
            Some(_) => Err(self.error("unexpected character")),
        }
    }

    /// A string starting at the opening quote.
    fn string(&mut self) -> std::result::Result<String, String> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            // Copy the run of plain bytes up to the next quote or backslash in one go; it is
            // valid UTF-8 because the input is a `&str` and the run ends at an ASCII byte.
            let start = self.pos;
            while self.bytes.get(self.pos).is_some_and(|b| *b != b'"' && *b != b'\\') {
                self.pos += 1;
            }
            out.push_str(std::str::from_utf8(&self.bytes[start..self.pos]).map_err(|e| e.to_string())?);
            match self.bytes.get(self.pos) {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(_) => {
                    self.pos += 1; // backslash
                    let escape =
                        *self.bytes.get(self.pos).ok_or_else(|| self.error("unterminated string"))?;
                    self.pos += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let high = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&high) {
                                if !self.bytes[self.pos..].starts_with(b"\\u") {
                                    return Err(self.error("unpaired surrogate"));
                                }
                                self.pos += 2;
                                let low = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return Err(self.error("invalid low surrogate"));
                                }
                                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                            } else {
                                high
                            };
                            out.push(char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape"))?);
                        }
                        _ => return Err(self.error("invalid escape")),
                    }
                }
            }
        }
    }

    fn hex4(&mut self) -> std::result::Result<u32, String> {
        let digits = self.bytes.get(self.pos..self.pos + 4).ok_or_else(|| self.error("short \\u escape"))?;
        let digits = std::str::from_utf8(digits).map_err(|e| e.to_string())?;
        let value = u32::from_str_radix(digits, 16).map_err(|_| self.error("invalid \\u escape"))?;
        self.pos += 4;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cargo_metadata_shapes() {
        let text = r#" {"packages":[{"name":"a\u00e9\ud83d\ude00","n":-1.5e3,"ok":true,"x":null,
            "dependencies":[{"name":"b","kind":"dev"},{"name":"c","kind":null}]}],"e":{},"f":[]} "#;
        let json = Json::parse(text).unwrap();
        let packages = json.get("packages").and_then(Json::as_array).unwrap();
        assert_eq!(packages[0].get("name").and_then(Json::as_str), Some("a\u{e9}\u{1f600}"));
        let deps = packages[0].get("dependencies").and_then(Json::as_array).unwrap();
        assert_eq!(deps[1].get("kind").and_then(Json::as_str), None);
        assert!(Json::parse("[1,]").is_err());
        assert!(Json::parse("{\"a\":1} x").is_err());
        assert!(Json::parse("\"abc").is_err());
    }

    #[test]
    fn every_rule_names_only_known_packages() {
        let known: Vec<&str> = ALLOWED_DEPS.iter().map(|(name, _)| *name).collect();
        for (_, allowed) in ALLOWED_DEPS {
            if let Allowed::Only(list) = allowed {
                assert!(list.iter().all(|dep| known.contains(dep)));
            }
        }
    }

    #[test]
    fn bench_arguments() {
        let line = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            bench_command(&args).to_string()
        };
        assert_eq!(line(&[]), "cargo bench -p budalloc-benches");
        assert_eq!(
            line(&["--quick", "--bench", "peers", "--", "alloc"]),
            "cargo bench -p budalloc-benches --bench peers -- --warm-up-time 0.1 --measurement-time 0.3 \
             --sample-size 10 --nresamples 1000 alloc"
        );
        assert_eq!(line(&["--", "--quick"]), "cargo bench -p budalloc-benches -- --quick");
    }

    #[test]
    fn fuzz_arguments() {
        let parse = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            parse_fuzz_args(&args)
        };
        let (targets, secs) = parse(&[]).unwrap();
        assert_eq!((targets.as_slice(), secs), (FUZZ_TARGETS, FUZZ_DEFAULT_SECS));
        let (targets, secs) = parse(&["--time", "20"]).unwrap();
        assert_eq!((targets.as_slice(), secs), (FUZZ_TARGETS, 20));
        let (targets, secs) = parse(&["abuse", "--time=5"]).unwrap();
        assert_eq!((targets, secs), (vec!["abuse"], 5));
        assert!(parse(&["--time"]).is_err());
        assert!(parse(&["--time", "0"]).is_err());
        assert!(parse(&["nope"]).is_err());
        assert_eq!(
            fuzz_command("abuse", FUZZ_WORK_DIR, 20, true).to_string(),
            "cargo +nightly fuzz run abuse fuzz/corpus-run/abuse fuzz/corpus/abuse -- -max_total_time=20 \
             -print_final_stats=1"
        );
        assert_eq!(
            fuzz_command("local_ops", FUZZ_SMOKE_DIR, FUZZ_SMOKE_SECS, true).to_string(),
            "cargo +nightly fuzz run local_ops fuzz/target/smoke-corpus/local_ops fuzz/corpus/local_ops -- \
             -max_total_time=15 -print_final_stats=1"
        );
    }

    #[test]
    fn fuzz_targets_match_the_fuzz_manifest() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/Cargo.toml");
        let manifest = fs::read_to_string(&path).unwrap();
        let bins: Vec<&str> = manifest
            .split("[[bin]]")
            .skip(1)
            .filter_map(|bin| bin.lines().find_map(|line| line.trim().strip_prefix("name = ")))
            .map(|name| name.trim_matches('"'))
            .collect();
        assert_eq!(bins, FUZZ_TARGETS, "FUZZ_TARGETS and the [[bin]]s of {}", path.display());
    }

    #[test]
    fn quoting() {
        let cmd = cargo(["test", "-p", "x"]).env("MIRIFLAGS", "-Za -Zb");
        assert_eq!(cmd.to_string(), "MIRIFLAGS=\"-Za -Zb\" cargo test -p x");
    }
}
