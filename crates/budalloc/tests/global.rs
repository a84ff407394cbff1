//! `budalloc::Global` as the process's global allocator, running real std code on several
//! threads and a crate nobody here wrote (serde_json), with a final accounting check.
//! A `harness = false` test: the test harness itself would allocate through us too, which is
//! fine, but its threads would blur the accounting.

mod real_use;

use real_use::{workload, THREADS};

#[global_allocator]
static ALLOC: budalloc::Global = budalloc::Global::new();

fn main() {
    real_use::warm_up();
    println!("global allocator test: first run (also warms std's lazily allocated state)");
    workload();
    let baseline = ALLOC.stats().allocated;
    let json_bytes = workload();
    let stats = ALLOC.stats();
    assert_eq!(stats.allocated, baseline, "bytes still allocated after the second run: a leak");
    #[cfg(feature = "check-invariants")]
    {
        use budalloc::Inspect;
        ALLOC.inspect(|b| b.check_invariants()).expect("heap invariants after the workload");
    }
    let arenas = ALLOC.inspect_buddy(|b| b.arenas().count());
    println!(
        "global allocator test: ok ({} threads, {json_bytes} bytes of JSON, {arenas} arena(s), capacity {} B, \
         {} B allocated after the second run as after the first)",
        THREADS + 2,
        stats.capacity,
        stats.allocated
    );
}
