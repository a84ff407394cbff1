//! Property tests: random action sequences against the shadow model, with every check of the
//! testkit after each step, for TLSF alone and under size classes.

use budalloc_testkit::{actions, proptest_config};
use proptest::prelude::*;

use crate::{ClassesSmall, Default1M, Small};

/// Arena of the random runs: a few small chunks, so that chunks fill, empty, go back, and
/// requests fall back to the buddy.
const ARENA: usize = if cfg!(miri) { 256 * 1024 } else { 1 << 20 };

/// Sequence length: short under Miri, where every step is slow.
const STEPS: usize = if cfg!(miri) { 24 } else { 256 };

proptest! {
    #![proptest_config(proptest_config())]

    /// Any mix of valid and invalid operations keeps the heap equal to the model, and freeing
    /// everything (then flushing) restores the buddy's seeding. Sizes reach past `MAX`.
    #[test]
    fn random_actions_in_small_chunks(actions in actions(32 * 1024, STEPS), skew in 0usize..4) {
        crate::replay::<Small>(&actions, ARENA, skew * 64);
    }

    /// The same under size classes (small requests in slabs, medium ones in chunks).
    #[test]
    fn random_actions_under_size_classes(actions in actions(24 * 1024, STEPS)) {
        crate::replay::<ClassesSmall>(&actions, ARENA, 0);
    }

    /// The default geometry in an arena that holds two chunks.
    #[test]
    fn random_actions_default_geometry(actions in actions(96 * 1024, STEPS)) {
        crate::replay::<Default1M>(&actions, if cfg!(miri) { 2 << 20 } else { 4 << 20 }, 0);
    }
}
