//! `budalloc::CachedGlobal` (per-thread caches over size classes over the buddy) as
//! the process's global allocator, running the same real-use workload as `global.rs`: threads
//! allocate and free through their magazines, free blocks other threads allocated, and drain
//! their magazines when they exit; the accounting after a second run must equal the first's.

mod real_use;

use real_use::{workload, THREADS};

#[global_allocator]
static ALLOC: budalloc::CachedGlobal = budalloc::CachedGlobal::new();

fn main() {
    real_use::warm_up();
    println!("cached global allocator test: first run (also warms std's lazily allocated state)");
    workload();
    ALLOC.flush_thread().expect("the main thread's magazines go back");
    let baseline = ALLOC.stats().allocated;
    let json_bytes = workload();
    ALLOC.flush_thread().expect("the main thread's magazines go back");
    let stats = ALLOC.stats();
    assert_eq!(stats.allocated, baseline, "bytes still allocated after the second run: a leak");
    #[cfg(feature = "check-invariants")]
    {
        use budalloc::Inspect;
        ALLOC.inspect(|c| c.check_invariants()).expect("heap invariants after the workload");
    }
    println!(
        "cached global allocator test: ok ({} threads, {json_bytes} bytes of JSON, capacity {} B, \
         {} B allocated after the second run as after the first)",
        THREADS + 2,
        stats.capacity,
        stats.allocated
    );
}
