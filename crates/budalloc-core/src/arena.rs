//! One region handed to an allocator: a block area of `MIN`-byte fragments and a metadata tail.
//!
//! ```text
//! region ─► [ pad ][ fragment 0 | fragment 1 | … | fragment n-1 ][ key 1 | bits … | key 2 ][ pad ]
//!                   ▲ start (multiple of MIN)                      ▲ bitmap
//! ```
//!
//! The bitmap sits behind the block area so that a region aligned to a large power of two keeps
//! its largest blocks at its start.

use core::mem::align_of;
use core::num::NonZeroUsize;
use core::ptr::NonNull;

use crate::{Bitmap, RegionError};

/// One contiguous region managed by an allocator, with its own guard-keyed [`Bitmap`].
///
/// Fragment `i` is the `MIN`-byte unit at `start + i * MIN`. A pointer maps to its fragment in
/// O(1) and is range-checked ([`Arena::locate`]) before any metadata is read.
#[derive(Debug)]
pub struct Arena {
    /// The region's first byte; carries provenance over the whole region. Every pointer the
    /// arena hands out is re-derived from it with `with_addr`.
    base: NonNull<u8>,
    /// Length of the whole region in bytes. Invariant: `base + len` does not overflow.
    len: usize,
    /// Address of fragment 0. Invariant: a multiple of `1 << min_log2`, and
    /// `start + frags << min_log2 <= bitmap.addr() <= base + len`.
    start: usize,
    /// Number of fragments. Invariant: `1 <= frags <= u32::MAX`.
    frags: usize,
    /// log2 of the fragment size `MIN`.
    min_log2: u32,
    /// The bits, right behind the block area.
    bitmap: Bitmap,
}

// SAFETY: an `Arena` owns its region exclusively (the contract of `Arena::new`); moving it to
// another thread moves that ownership along. It has no interior mutability.
unsafe impl Send for Arena {}

impl Arena {
    /// Takes `region` as an arena of `1 << min_log2`-byte fragments whose bitmap holds
    /// `bits_for(fragments)` bits. The block area is as large as the region allows once the
    /// bitmap is carved from its tail; an arena holds at most `u32::MAX` fragments (the rest of
    /// a larger region stays unused).
    ///
    /// # Errors
    /// [`RegionError::Overflow`] if the region wraps around the address space;
    /// [`RegionError::TooSmall`] if it cannot hold one fragment and the bitmap.
    ///
    /// # Safety
    /// - `region` must be valid for reads and writes for its whole length;
    /// - nothing else may access the region while the arena, or any allocator built on it, lives
    ///   (blocks it hands out excepted, through the pointers it returns);
    /// - `bits_for` must be monotone: fewer fragments never need more bits.
    pub unsafe fn new(
        region: NonNull<[u8]>,
        min_log2: u32,
        bits_for: impl Fn(usize) -> Option<usize>,
    ) -> Result<Arena, RegionError> {
        let base = region.cast::<u8>();
        let len = region.len();
        let addr = base.addr().get();
        let min = 1usize << min_log2;
        let too_small = |needed| RegionError::TooSmall { addr, len, needed };
        let end = addr.checked_add(len).ok_or(RegionError::Overflow { addr, len })?;
        let start = addr.checked_next_multiple_of(min).ok_or(RegionError::Overflow { addr, len })?;
        let meta_bytes = |frags: usize| bits_for(frags).and_then(Bitmap::bytes_for);
        // The smallest region that would do: padding, one fragment, one bitmap.
        let needed = (start - addr).saturating_add(min).saturating_add(meta_bytes(1).unwrap_or(usize::MAX));
        if start >= end {
            return Err(too_small(needed));
        }
        // First guess from the whole span, then one refinement: `bits_for` is monotone, so the
        // refined count's bitmap is no larger than the first one and still fits.
        let span = end - start;
        let first = (span >> min_log2).min(u32::MAX as usize);
        let meta = meta_bytes(first).ok_or(RegionError::Overflow { addr, len })?;
        let frags = (span.saturating_sub(meta) >> min_log2).min(u32::MAX as usize);
        if frags == 0 {
            return Err(too_small(needed));
        }
        let bits = bits_for(frags).ok_or(RegionError::Overflow { addr, len })?;
        let words = bits.div_ceil(usize::BITS as usize);
        // `min` is at least a word's alignment in every policy; align anyway.
        let meta_addr = (start + (frags << min_log2)).next_multiple_of(align_of::<usize>());
        debug_assert!(
            meta_addr + (words + 2) * core::mem::size_of::<usize>() <= end,
            "bitmap overruns region"
        );
        let front = base.cast::<usize>().with_addr(nonzero(meta_addr));
        // SAFETY: `front..front + words + 2` lies inside the region (the sizing above), is
        // aligned, and is reserved for the bitmap: the block area ends before it.
        let bitmap = unsafe { Bitmap::init(front, words) };
        Ok(Arena { base, len, start, frags, min_log2, bitmap })
    }

    /// Address of fragment 0.
    #[inline]
    pub fn start(&self) -> usize {
        self.start
    }

    /// One past the last byte of the block area.
    #[inline]
    pub fn end(&self) -> usize {
        self.start + (self.frags << self.min_log2)
    }

    /// Number of fragments in the block area.
    #[inline]
    pub fn fragments(&self) -> usize {
        self.frags
    }

    /// Bytes of the block area (what can be handed out).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.frags << self.min_log2
    }

    /// The whole region as it was handed over: start address and length.
    #[inline]
    pub fn region(&self) -> (usize, usize) {
        (self.base.addr().get(), self.len)
    }

    /// Absolute number of fragment 0 (`start / MIN`): a block of order `k` is naturally aligned
    /// iff its absolute fragment number is a multiple of `1 << k`.
    #[inline]
    pub fn first_absolute(&self) -> usize {
        self.start >> self.min_log2
    }

    /// Whether `addr` lies in the block area.
    #[inline]
    pub fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.start) < self.capacity()
    }

    /// Maps `addr` to `(fragment, byte offset inside it)` if it lies in the block area. Reads no
    /// memory: this is the range check that precedes every metadata access.
    #[inline]
    pub fn locate(&self, addr: usize) -> Option<(usize, usize)> {
        let offset = addr.wrapping_sub(self.start);
        if offset < self.capacity() {
            Some((offset >> self.min_log2, offset & ((1 << self.min_log2) - 1)))
        } else {
            None
        }
    }

    /// Address of fragment `frag` (which may be `fragments()`, one past the end).
    #[inline]
    pub fn addr_of(&self, frag: usize) -> usize {
        debug_assert!(frag <= self.frags, "fragment {frag} beyond the arena");
        self.start + (frag << self.min_log2)
    }

    /// Pointer to fragment `frag`, re-derived from the region base (strict provenance).
    #[inline]
    pub fn ptr_of(&self, frag: usize) -> NonNull<u8> {
        debug_assert!(frag < self.frags, "fragment {frag} beyond the arena");
        self.base.with_addr(nonzero(self.addr_of(frag)))
    }

    /// The arena's bitmap.
    #[inline]
    pub fn bitmap(&self) -> &Bitmap {
        &self.bitmap
    }

    /// The arena's bitmap, to change.
    #[inline]
    pub fn bitmap_mut(&mut self) -> &mut Bitmap {
        &mut self.bitmap
    }

    /// Bytes of the region not available as blocks: the bitmap and the padding around the block
    /// area.
    #[inline]
    pub fn overhead(&self) -> usize {
        self.len - self.capacity()
    }
}

/// `addr` as a `NonZeroUsize`; every address built from a non-null region base by adding an
/// offset inside the region is non-zero.
#[inline]
fn nonzero(addr: usize) -> NonZeroUsize {
    debug_assert!(addr != 0);
    NonZeroUsize::new(addr).unwrap_or(NonZeroUsize::MIN)
}
