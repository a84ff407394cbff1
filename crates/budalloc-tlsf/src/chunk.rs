//! A chunk's memory: its header, its two bitmaps, and the headers and footers of free blocks.
//!
//! ```text
//! chunk base (aligned to the chunk size C)
//! ├─ ChunkHeader: seal │ next │ prev                                  (3 words)
//! ├─ S bitmap: C / 64 bits, bit g set iff a block starts at granule g
//! ├─ U bitmap: C / 64 bits, bit g set iff granule g lies in a live block
//! ├─ padding up to the first data granule `first`
//! └─ granules first .. C / 64, tiled by blocks:
//!      live block: the caller's bytes (never read or written by us)
//!      free block: FreeHeader (seal │ next │ prev │ granules) at its start,
//!                  its length in granules in the last word of its last granule (the footer)
//! ```
//!
//! A granule is 64 bytes. The `U` bit of a granule is the state of the whole block holding it,
//! so the block left of a block is free exactly when the granule just before it is not used,
//! and its footer then says where it starts: coalescing reads no memory of a live block.

use core::mem::size_of;
use core::ptr::NonNull;

/// Bytes per granule: the unit of block sizes and positions inside a chunk.
pub const GRANULE: usize = 64;

const WORD: usize = size_of::<usize>();
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
    /// `Tlsf::seal(addr, granules, next)`: a header copied from elsewhere, or with any bit of
    /// its length or `next` flipped, does not match. `prev` is checked through the reciprocal
    /// link instead (the previous block's sealed `next` must name this one), so pushing a block
    /// reseals no neighbour.
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
    /// Words of each bitmap.
    pub words: usize,
    /// The first granule of the data area (after the header and the bitmaps).
    pub first: usize,
}

impl Shape {
    /// The shape of a chunk of `size` bytes (a power of two, a multiple of `64 * GRANULE`).
    pub const fn of(size: usize) -> Shape {
        let granules = size / GRANULE;
        let words = granules / BITS;
        let header = (HEADER_WORDS + 2 * words) * WORD;
        Shape { granules, words, first: header.div_ceil(GRANULE) }
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
    /// Granules of live blocks.
    U,
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

    /// Pointer to word `i` of the bitmaps (`i < 2 * words`: `S`, then `U`).
    #[inline]
    fn word_ptr(self, i: usize) -> *mut usize {
        self.0.as_ptr().wrapping_add((HEADER_WORDS + i) * WORD).cast::<usize>()
    }

    /// Word `w` of bitmap `map` of a chunk of shape `shape` (`w < shape.words`).
    #[inline]
    pub fn word(self, shape: Shape, map: Map, w: usize) -> usize {
        let i = if map == Map::S { w } else { shape.words + w };
        // SAFETY: the word lies in the chunk's bitmaps (`w < words`), readable and initialised
        // (`init` cleared them), word-aligned (the header is whole words).
        unsafe { self.word_ptr(i).read() }
    }

    /// Sets word `w` of bitmap `map`.
    #[inline]
    fn set_word(self, shape: Shape, map: Map, w: usize, value: usize) {
        let i = if map == Map::S { w } else { shape.words + w };
        // SAFETY: as in `word`; the bitmaps are ours alone to write.
        unsafe { self.word_ptr(i).write(value) }
    }

    /// Bit `g` of bitmap `map` (`g < shape.granules`).
    #[inline]
    pub fn bit(self, shape: Shape, map: Map, g: usize) -> bool {
        self.word(shape, map, g / BITS) >> (g % BITS) & 1 != 0
    }

    /// Sets bit `g` of bitmap `map` to `value`.
    #[inline]
    pub fn set_bit(self, shape: Shape, map: Map, g: usize, value: bool) {
        let (w, mask) = (g / BITS, 1usize << (g % BITS));
        let word = self.word(shape, map, w);
        self.set_word(shape, map, w, if value { word | mask } else { word & !mask });
    }

    /// Sets bits `from .. to` of bitmap `map` to `value`, a word at a time.
    #[inline]
    pub fn fill(self, shape: Shape, map: Map, from: usize, to: usize, value: bool) {
        let mut g = from;
        while g < to {
            let (w, lo) = (g / BITS, g % BITS);
            let hi = (to - w * BITS).min(BITS);
            let mask = if hi - lo == BITS { usize::MAX } else { ((1usize << (hi - lo)) - 1) << lo };
            let word = self.word(shape, map, w);
            self.set_word(shape, map, w, if value { word | mask } else { word & !mask });
            g = w * BITS + hi;
        }
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

    /// Writes a fresh header and clears both bitmaps.
    pub fn init(self, shape: Shape, header: ChunkHeader) {
        self.put_header(header);
        for w in 0..shape.words {
            self.set_word(shape, Map::S, w, 0);
            self.set_word(shape, Map::U, w, 0);
        }
    }
}
