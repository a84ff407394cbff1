//! F1 for exact fit, `buddy_exact_ops`: as `buddy_ops` on `Buddy<16, 4096, 2, true>`, whose
//! blocks are trimmed to `ceil(size / 16)` fragments (multi-piece allocations, in-place reshaping).
#![no_main]

use budalloc_fuzz::{run_actions, OpsInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: OpsInput| run_actions::<true>(&input));
