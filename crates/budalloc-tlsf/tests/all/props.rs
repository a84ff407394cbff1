//! Property tests: random action sequences against the shadow model, with every check of the
//! testkit after each step, for TLSF alone and under size classes.

use budalloc_testkit::{actions, proptest_config};
use proptest::prelude::*;

use crate::{Default1M, PropChunks, PropClasses};

/// Arena of the random runs: a few chunks, so that chunks fill, empty, go back, and requests
/// fall back to the buddy.
const ARENA: usize = if cfg!(miri) { 64 * 1024 } else { 1 << 20 };

/// Largest size the actions draw (a few are drawn above it): past the chunks' limit, so that
/// some requests go to the buddy.
const SIZES: usize = if cfg!(miri) { 6 * 1024 } else { 32 * 1024 };

/// Sequence length: short under Miri, where every step is slow.
const STEPS: usize = if cfg!(miri) { 24 } else { 256 };

/// The testkit's configuration, with half its cases under Miri (each case there takes about
/// 6 s: the TLSF's two runs would otherwise add three minutes to CI's Miri lane).
fn config() -> ProptestConfig {
    let mut config = proptest_config();
    if cfg!(miri) {
        config.cases = config.cases.div_ceil(2);
    }
    config
}

proptest! {
    #![proptest_config(config())]

    /// Any mix of valid and invalid operations keeps the heap equal to the model, and freeing
    /// everything (then flushing) restores the buddy's seeding.
    #[test]
    fn random_actions_in_small_chunks(actions in actions(SIZES, STEPS), skew in 0usize..4) {
        crate::replay::<PropChunks>(&actions, ARENA, skew * 64);
    }

    /// The same under size classes (small requests in slabs, medium ones in chunks).
    #[test]
    fn random_actions_under_size_classes(actions in actions(SIZES, STEPS)) {
        crate::replay::<PropClasses>(&actions, ARENA, 0);
    }

    /// The default geometry (1 MiB chunks, up to 64 KiB) in an arena that holds two chunks
    /// (natively only: see `MIRI_SKIPPED` in xtask).
    #[test]
    fn random_actions_default_geometry(actions in actions(96 * 1024, STEPS)) {
        crate::replay::<Default1M>(&actions, 4 << 20, 0);
    }
}
