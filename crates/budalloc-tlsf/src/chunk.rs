//! A chunk's memory: its header, its three bitmaps, and the headers and footers of free blocks.
//!
//! ```text
//! chunk base (aligned to the chunk size C)
//! ├─ ChunkHeader: seal │ next │ prev                                  (3 words)
//! ├─ S and U bitmaps, C / 64 bits each, their words interleaved (S word w, then U word w):
//! │    S: bit g set iff a block starts at granule g
//! │    U: bit g set iff granule g is the first or the last of a live block
//! ├─ Z bitmap: C / 4096 bits, bit w set iff word w of the S bitmap is not zero
//! ├─ padding up to the first data granule `first`
//! └─ granules first .. C / 64, tiled by blocks:
//!      live block: the caller's bytes (never read or written by us)
//!      free block: FreeHeader (seal │ next │ prev │ granules) at its start,
//!                  its length in granules in the last word of its last granule (the footer)
//! ```
//!
//! A granule is 64 bytes. A live block's `U` bits are set at both of its ends, so the block
//! right of a block is free exactly when the `U` bit of its first granule (the one just after
//! the block) is clear, and the block left of it exactly when the bit of the granule just
//! before the block is clear, and that free block's footer then says where it starts:
//! coalescing reads no memory of a live block, and marking a block live or free costs two bits
//! whatever its length. The words of `S` and `U` that cover a granule sit side by side, so the
//! checks of a free (a block starts at the granule, it is live, its neighbours' bits) read one
//! cache line where the two bitmaps apart took two (read misses of `drive budalloc-heap n30000
//! 400000` under `valgrind --tool=cachegrind`: 562 thousand against 634 thousand). The `Z`
//! bitmap summarises `S`, so that checking that no block starts inside a range (a free's check
//! of the length its layout claims) reads at most two words of `S` and the words of `Z` between
//! them: one bit of `Z` per word of `S`, so one word of `Z` per 4096 granules (256 KiB) the
//! range spans.

use core::mem::size_of;
use core::ptr::NonNull;

/// Bytes per granule: the unit of block sizes and positions inside a chunk.
pub const GRANULE: usize = 64;

/// Bytes per word.
pub(crate) const WORD: usize = size_of::<usize>();
const BITS: usize = usize::BITS as usize;

/// The fixed header at a chunk's base.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkHeader {
    /// `Tlsf::chunk_seal(base)`: the chunk's address mixed with the heap's secret.
    pub seal: usize,
    /// Address of the next chunk in the list of every chunk (0 at the end).
    pub next: usize,
    /// Address of the previous chunk in that list (0 at the head).
    pub prev: usize,
}

/// Words of the fixed chunk header; the `S` bitmap starts right after it.
const HEADER_WORDS: usize = size_of::<ChunkHeader>() / WORD;

/// The header of a free block, at its first granule (the policy's own memory while the block is
/// free).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FreeHeader {
    /// `Tlsf::seal(addr, header)`: a header copied from elsewhere, or with any bit of its
    /// length or either link flipped, does not match; so a link read from a sealed header names
    /// a free block. Relinking a block moves its seal by the changed link alone (a block whose
    /// seal did not match still does not).
    pub seal: usize,
    /// Address of the next free block of the same bin (0 at the end).
    pub next: usize,
    /// Address of the previous free block of the same bin (0 at the head).
    pub prev: usize,
    /// Length of the block in granules.
    pub granules: usize,
}

/// The shape of a chunk of `size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Granules in the chunk, header included.
    pub granules: usize,
    /// Words of each of the `S` and `U` bitmaps.
    pub words: usize,
    /// Words of the `Z` bitmap.
    pub summary: usize,
    /// The first granule of the data area (after the header and the bitmaps).
    pub first: usize,
}

impl Shape {
    /// The shape of a chunk of `size` bytes (a power of two, a multiple of `64 * GRANULE`).
    pub const fn of(size: usize) -> Shape {
        let granules = size / GRANULE;
        let words = granules / BITS;
        let summary = words.div_ceil(BITS);
        let header = (HEADER_WORDS + 2 * words + summary) * WORD;
        Shape { granules, words, summary, first: header.div_ceil(GRANULE) }
    }

    /// Granules of the data area: the length of an empty chunk's one free block.
    pub const fn data(&self) -> usize {
        self.granules - self.first
    }
}

/// Which bitmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Map {
    /// Block starts.
    S,
    /// The first and last granules of live blocks.
    U,
    /// Non-zero words of `S`.
    Z,
}

impl Map {
    /// Index of word `w` of this bitmap among the bitmap words of a chunk of shape `shape`:
    /// `S` and `U` interleaved, then `Z`.
    #[inline]
    const fn index(self, shape: Shape, w: usize) -> usize {
        match self {
            Map::S => 2 * w,
            Map::U => 2 * w + 1,
            Map::Z => 2 * shape.words + w,
        }
    }
}

/// A chunk, by its base (with a provenance that covers the whole chunk).
///
/// Invariant (of every value built by [`Chunk::new`]): the pointer is the base of a block of
/// the backend that this heap holds as a chunk of the shape it is used with, valid for reads
/// and writes of all of it; only this heap accesses its header, bitmaps and free blocks, and it
/// never accesses the live blocks in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chunk(NonNull<u8>);

impl Chunk {
    /// The chunk at `base`.
    ///
    /// # Safety
    /// `base` must be the base of a chunk this heap holds, with a provenance that covers it.
    #[inline]
    pub unsafe fn new(base: NonNull<u8>) -> Chunk {
        Chunk(base)
    }

    /// Reads the seal word at `base`, the first check made before treating a block as a chunk.
    ///
    /// # Safety
    /// `base` must be valid for reads of one word, and initialised there: the start of a live
    /// block of the backend, at least a word long.
    #[inline]
    pub unsafe fn seal_at(base: NonNull<u8>) -> usize {
        // SAFETY: the caller guarantees one readable, initialised word at `base`; chunk bases
        // are aligned to the chunk size, hence to a word.
        unsafe { base.cast::<usize>().as_ptr().read() }
    }

    /// The chunk's base pointer.
    #[inline]
    pub fn ptr(self) -> NonNull<u8> {
        self.0
    }

    /// The chunk's base address.
    #[inline]
    pub fn addr(self) -> usize {
        self.0.addr().get()
    }

    /// The fixed header.
    #[inline]
    pub fn header(self) -> ChunkHeader {
        // SAFETY: the header lies at the base of the chunk, readable and initialised (invariant
        // of `Chunk`, and `init` wrote it), aligned (the base is aligned to the chunk size).
        unsafe { self.0.cast::<ChunkHeader>().as_ptr().read() }
    }

    /// Writes the fixed header.
    #[inline]
    pub fn put_header(self, header: ChunkHeader) {
        // SAFETY: as in `header`; the header is ours alone to write.
        unsafe { self.0.cast::<ChunkHeader>().as_ptr().write(header) }
    }

    /// Pointer to word `i` of the bitmaps (`i < 2 * words + summary`: `S` and `U` interleaved,
    /// then `Z`).
    #[inline]
    fn word_ptr(self, i: usize) -> *mut usize {
        self.0.as_ptr().wrapping_add((HEADER_WORDS + i) * WORD).cast::<usize>()
    }

    /// Word `w` of bitmap `map` of a chunk of shape `shape` (`w < shape.words`, or
    /// `w < shape.summary` for `Z`).
    #[inline]
    pub fn word(self, shape: Shape, map: Map, w: usize) -> usize {
        // SAFETY: the word lies in the chunk's bitmaps (`w` is below the bitmap's length),
        // readable and initialised (`init` cleared them), word-aligned (the header is whole
        // words).
        unsafe { self.word_ptr(map.index(shape, w)).read() }
    }

    /// Sets word `w` of bitmap `map`.
    #[inline]
    fn set_word(self, shape: Shape, map: Map, w: usize, value: usize) {
        // SAFETY: as in `word`; the bitmaps are ours alone to write.
        unsafe { self.word_ptr(map.index(shape, w)).write(value) }
    }

    /// Bit `g` of bitmap `map` (`g < shape.granules`).
    #[inline]
    pub fn bit(self, shape: Shape, map: Map, g: usize) -> bool {
        self.word(shape, map, g / BITS) >> (g % BITS) & 1 != 0
    }

    /// Sets bit `g` of bitmap `map` (`S` or `U`) to `value`; a change of `S` is carried to `Z`.
    #[inline]
    pub fn set_bit(self, shape: Shape, map: Map, g: usize, value: bool) {
        debug_assert!(map != Map::Z, "Z follows S");
        let (w, mask) = (g / BITS, 1usize << (g % BITS));
        let word = self.word(shape, map, w);
        let word = if value { word | mask } else { word & !mask };
        self.set_word(shape, map, w, word);
        if map == Map::S {
            let (z, zmask) = (w / BITS, 1usize << (w % BITS));
            let summary = self.word(shape, Map::Z, z);
            self.set_word(shape, Map::Z, z, if word != 0 { summary | zmask } else { summary & !zmask });
        }
    }

    /// Whether a block starts at some granule of `from .. to` (`from <= to <= granules`): at most
    /// two words of `S` and the words of `Z` between them.
    #[inline]
    pub fn starts_in(self, shape: Shape, from: usize, to: usize) -> bool {
        if from >= to {
            return false;
        }
        let (first, last) = (from / BITS, (to - 1) / BITS);
        let low = usize::MAX << (from % BITS);
        let high = usize::MAX >> (BITS - 1 - (to - 1) % BITS);
        if first == last {
            return self.word(shape, Map::S, first) & low & high != 0;
        }
        if self.word(shape, Map::S, first) & low != 0 || self.word(shape, Map::S, last) & high != 0 {
            return true;
        }
        // The whole words of `S` between them: their bits of `Z`.
        self.next_set(shape, Map::Z, first + 1, last) != last
    }

    /// Marks the block of `len` granules (`len >= 1`) at granule `start` live (`U` bits set at
    /// its first and last granule) or not (both cleared).
    #[inline]
    pub fn mark_live(self, shape: Shape, start: usize, len: usize, live: bool) {
        self.set_bit(shape, Map::U, start, live);
        self.set_bit(shape, Map::U, start + len - 1, live);
    }

    /// The first set bit of `from .. to` in bitmap `map`, or `to`: a word at a time.
    #[inline]
    pub fn next_set(self, shape: Shape, map: Map, from: usize, to: usize) -> usize {
        let mut g = from;
        while g < to {
            let (w, lo) = (g / BITS, g % BITS);
            let bits = self.word(shape, map, w) >> lo;
            if bits != 0 {
                return (g + bits.trailing_zeros() as usize).min(to);
            }
            g = (w + 1) * BITS;
        }
        to
    }

    /// The last set bit of `0 ..= at` in bitmap `map`, if any: a word at a time.
    pub fn prev_set(self, shape: Shape, map: Map, at: usize) -> Option<usize> {
        let mut w = at / BITS;
        let below = at % BITS;
        let mut bits = self.word(shape, map, w) & (usize::MAX >> (BITS - 1 - below));
        loop {
            if bits != 0 {
                return Some(w * BITS + BITS - 1 - bits.leading_zeros() as usize);
            }
            w = w.checked_sub(1)?;
            bits = self.word(shape, map, w);
        }
    }

    /// Writes a fresh header and clears the bitmaps.
    pub fn init(self, shape: Shape, header: ChunkHeader) {
        self.put_header(header);
        for w in 0..shape.words {
            self.set_word(shape, Map::S, w, 0);
            self.set_word(shape, Map::U, w, 0);
        }
        for w in 0..shape.summary {
            self.set_word(shape, Map::Z, w, 0);
        }
    }
}
