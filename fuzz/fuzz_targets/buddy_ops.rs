//! F1 `buddy_ops`: random action sequences (allocate, free, grow, shrink, and every kind of bad
//! free) replayed by the testkit harness on a `Buddy<16, 4096, 2>` over one or two fuzzed arenas,
//! checking after every step alignment, arena bounds, disjointness, lengths, contents, error
//! variants, unchanged metadata on rejection and `check_invariants()`; at the end everything is
//! freed, the seeding must be back and the largest block must allocate.
#![no_main]

use budalloc_fuzz::{run_actions, OpsInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: OpsInput| run_actions::<false>(&input));
