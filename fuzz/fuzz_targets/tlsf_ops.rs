//! F1 for the TLSF layer, `tlsf_ops`: random action sequences (allocate, free, grow, shrink, and
//! every kind of bad free) replayed by the testkit harness on `Tlsf<Buddy<64, 1 MiB, 2, true>,
//! 64 KiB, 16 KiB>` (flavour bit 0 clear) or on size classes up to 4 KiB over it (set), over one
//! or two fuzzed arenas of up to 1 MiB: requests up to 16 KiB in 64 KiB chunks, larger ones and
//! the chunks themselves from the buddy. Checked after every step: alignment, inside an arena,
//! disjoint from every live block, at least the size asked, contents kept across grow and
//! shrink, the expected error variant with the metadata digest unchanged for every bad free,
//! `validate` and `rebase` agreeing with the free, allocated bytes, and `check_invariants()` of
//! every layer (chunks, bins, slabs, buddy). At the end everything is freed, the kept chunk and
//! slabs are flushed, and the buddy must be back to its seeding.
#![no_main]

use budalloc_fuzz::{run_tlsf, ClassOpsInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: ClassOpsInput| run_tlsf(&input));
