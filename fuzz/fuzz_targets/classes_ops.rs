//! F1 for size classes, `classes_ops`: random action sequences (allocate, free, grow, shrink, and
//! every kind of bad free) replayed by the testkit harness on `Classes<Buddy<16, MAX, 2, EXACT>,
//! LIMIT>` over one or two fuzzed arenas, in three shapes: classes up to 1 KiB over a 64 KiB buddy
//! in up to 256 KiB, classes up to 4 KiB over a 256 KiB buddy in up to 1 MiB, and the global
//! heap's classes up to 32 KiB over a 2 MiB buddy in up to 4 MiB (larger requests go straight to
//! the buddy). Checked after every step: alignment, inside an arena,
//! disjoint from every live block, at least the size asked, contents kept across grow and
//! shrink, the expected error variant with the metadata digest unchanged for every bad free,
//! `validate` and `rebase` agreeing with the free, allocated bytes, and `check_invariants()` of
//! the classes and the buddy. At the end everything is freed, the cached slabs are flushed, the
//! buddy must be back to its seeding (pristine) and its largest block must allocate.
#![no_main]

use budalloc_fuzz::{run_classes, ClassOpsInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: ClassOpsInput| run_classes(&input));
