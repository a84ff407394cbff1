//! Death tests: the `GlobalAlloc` path aborts on detected misuse with one clear line. The test
//! runs its own binary again as a child per case (hardened_malloc's pattern) and checks the
//! child died of SIGABRT with exactly the expected line on stderr.

use std::alloc::{GlobalAlloc, Layout};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: budalloc::Global = budalloc::Global::new();

const CASE_VAR: &str = "BUDALLOC_DEATH_CASE";

/// Each case: name, and a fragment the single stderr line must contain after the prefix.
const CASES: &[(&str, &str)] = &[
    ("double_free", "double free of the 64-byte block at 0x"),
    // A block of a TLSF chunk (above the 4 KiB classes; the size reported is the free block's
    // there, merged with its free neighbours), then one of the buddy (above 128 KiB).
    ("double_free_medium", "double free of the "),
    ("double_free_large", "double free of the 262144-byte block at 0x"),
    ("invalid_free", "is outside every arena of this allocator"),
    ("interior_free", "is not the start of a block"),
    ("size_mismatch", "layout mismatch at 0x"),
    ("corrupted_guard_key", "arena metadata corrupted: guard key 2 (back)"),
    // A realloc that cannot stay in place must not move (and free) a block that is not live.
    ("realloc_grow_freed", "double free of the 64-byte block at 0x"),
    ("realloc_shrink_freed", "double free of the 1024-byte block at 0x"),
    ("realloc_grow_large_freed", "double free of the 262144-byte block at 0x"),
    // The per-thread cache checks a block before it moves it between a class and the heap.
    ("cached_realloc_foreign", "is outside every arena of this allocator"),
    ("cached_realloc_shrink_freed", "double free of the 65536-byte block at 0x"),
    // A static heap moved after its first use serves nothing and stops at a free.
    ("static_heap_moved", "it must not move"),
];

/// A request above the TLSF chunks' limit: the buddy under them serves it.
const LARGE: usize = 256 * 1024;

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

fn alloc(size: usize) -> *mut u8 {
    // SAFETY: a valid non-zero layout.
    let p = unsafe { ALLOC.alloc(layout(size)) };
    assert!(!p.is_null());
    p
}

/// Frees `p` with a layout of `size` bytes: each case below makes this call a misuse that the
/// allocator must detect before touching memory.
fn free(p: *mut u8, size: usize) {
    // SAFETY: deliberately not always valid: the allocator checks and aborts on misuse.
    unsafe { ALLOC.dealloc(p, layout(size)) }
}

/// Commits the misuse `case`; returns only if the allocator failed to stop it.
fn run_case(case: &str) {
    match case {
        "double_free" | "double_free_medium" | "double_free_large" => {
            let size = match case {
                "double_free" => 64,
                "double_free_medium" => 8192,
                _ => LARGE,
            };
            let p = alloc(size);
            free(p, size);
            free(p, size);
        }
        "invalid_free" => {
            let mut on_stack = [0u8; 64];
            free(on_stack.as_mut_ptr(), 64);
        }
        "interior_free" => {
            let p = alloc(256);
            free(p.wrapping_add(16), 64);
        }
        "size_mismatch" => {
            let p = alloc(64);
            free(p, 4096);
        }
        "corrupted_guard_key" => {
            // Above the chunks' 128 KiB: a block of the buddy itself, whose free reads the keys.
            let p = alloc(LARGE);
            let key = ALLOC.inspect_buddy(|b| {
                let bitmap = b.arenas().find(|a| a.contains(p.addr())).unwrap().bitmap();
                bitmap.addr() + bitmap.footprint() - size_of::<usize>()
            });
            // A stray write over the key behind the bitset, through a pointer into the arena.
            let key = p.with_addr(key).cast::<usize>();
            // SAFETY: the key word lies in the arena `p` belongs to; nothing else runs.
            let value = unsafe { key.read() };
            // SAFETY: as above.
            unsafe { key.write(value ^ 0x10) };
            free(p, LARGE);
        }
        "realloc_grow_freed" | "realloc_shrink_freed" | "realloc_grow_large_freed" => {
            let size = match case {
                "realloc_grow_freed" => 64,
                "realloc_shrink_freed" => 1024,
                _ => LARGE,
            };
            let p = alloc(size);
            let _neighbour = alloc(size);
            free(p, size);
            // Another size class, or a block of the buddy whose neighbour is live: the resize
            // cannot stay in place, it would move the block.
            let new_size = match size {
                64 => 4096,
                1024 => 16,
                _ => 2 * LARGE,
            };
            // SAFETY: deliberately invalid: `p` was freed; the allocator checks and aborts.
            let _ = unsafe { ALLOC.realloc(p, layout(size), new_size) };
        }
        "cached_realloc_foreign" => {
            let heap = budalloc::CachedGlobal::new();
            // Unmapped: reading it would fault.
            let wild = std::ptr::without_provenance_mut::<u8>(0x1000);
            // SAFETY: deliberately a foreign pointer: the allocator must stop before reading it.
            let _ = unsafe { heap.realloc(wild, layout(64 * 1024), 16) };
        }
        "cached_realloc_shrink_freed" => {
            let heap = budalloc::CachedGlobal::new();
            // Above the size classes: a block of the shared policy.
            let big = layout(64 * 1024);
            // SAFETY: valid non-zero layouts; `p` is live until its free below.
            let p = unsafe { heap.alloc(big) };
            // SAFETY: as above.
            let _neighbour = unsafe { heap.alloc(big) };
            // SAFETY: as above.
            unsafe { heap.dealloc(p, big) };
            // SAFETY: deliberately invalid: `p` was freed; the allocator checks and aborts.
            let _ = unsafe { heap.realloc(p, big, 16) };
        }
        "static_heap_moved" => {
            let heap: Box<budalloc::StaticGlobal<8192>> =
                Box::new(budalloc::StaticGlobal::new(budalloc::DefaultBuddy::new()));
            // SAFETY: a valid non-zero layout.
            let p = unsafe { heap.alloc(layout(64)) };
            assert!(!p.is_null());
            let moved = *heap;
            // SAFETY: a valid non-zero layout.
            assert!(unsafe { moved.alloc(layout(64)) }.is_null(), "a moved heap must not serve");
            // SAFETY: deliberately invalid: `p` belongs to the heap before the move.
            unsafe { moved.dealloc(p, layout(64)) };
        }
        other => panic!("unknown case {other}"),
    }
}

/// How long a child may take to die: a misuse that deadlocks (a panic inside the allocator's
/// lock that allocates again) must fail the test, not hang it.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs this binary again for `case`; its output, or `None` (the child killed) if it is still
/// running after [`CHILD_TIMEOUT`].
fn run_child(exe: &std::path::Path, case: &str) -> Option<std::process::Output> {
    let mut child =
        Command::new(exe).env(CASE_VAR, case).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > CHILD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Exited: its (short) output is all in the pipes.
    Some(child.wait_with_output().unwrap())
}

fn main() {
    if let Ok(case) = std::env::var(CASE_VAR) {
        run_case(&case);
        // Still alive: the allocator did not stop the misuse.
        std::process::exit(3);
    }
    let exe = std::env::current_exe().unwrap();
    let mut failures = Vec::new();
    for &(case, expected) in CASES {
        let Some(out) = run_child(&exe, case) else {
            failures.push(format!("{case}: still running after {CHILD_TIMEOUT:?} (a hang, not an abort)"));
            continue;
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        #[cfg(unix)]
        let aborted = {
            use std::os::unix::process::ExitStatusExt;
            out.status.signal() == Some(6)
        };
        #[cfg(not(unix))]
        let aborted = !out.status.success();
        let line_ok = lines.len() == 1
            && lines[0].starts_with(budalloc::fatal::FATAL_PREFIX)
            && lines[0].contains(expected);
        if aborted && line_ok {
            println!("death {case}: SIGABRT with `{}`", lines[0]);
        } else {
            failures.push(format!("{case}: status {:?}, stderr {stderr:?}", out.status));
        }
    }
    assert!(failures.is_empty(), "death tests failed:\n{}", failures.join("\n"));
    println!("death tests: {}/{} died with SIGABRT and the expected line", CASES.len(), CASES.len());
}
