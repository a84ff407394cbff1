//! Self-checks switched on by tests and fuzzers (`check-invariants` feature).

/// A stated invariant found broken: which one, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invariant broken: {what} (at {addr:#x})")]
pub struct InvariantError {
    /// The invariant, as written at the field it constrains.
    pub what: &'static str,
    /// Address of the block, header or word where it was found broken (0 if global).
    pub addr: usize,
}

/// What tests and fuzzers ask of every core type and policy.
pub trait Inspect {
    /// Checks every invariant stated on the type's fields, walking all metadata (O(n)).
    ///
    /// # Errors
    /// The first broken invariant found.
    fn check_invariants(&self) -> Result<(), InvariantError>;

    /// Feeds every byte of metadata to `sink`, a word (`usize`) at a time and in a fixed
    /// order: two calls give equal streams iff the metadata is byte-for-byte equal (narrower
    /// fields are widened, each to a word of its own). Used to prove that rejected calls change
    /// nothing. Words, not bytes: a digest of the stream runs once per word, which matters
    /// under Miri, where the rejection tests digest everything twice per call.
    fn visit_metadata(&self, sink: &mut dyn FnMut(&[usize]));
}
