//! [`Tlsf`]: two-level segregated fit in chunks carved from a backing policy.

use core::alloc::Layout;
use core::num::NonZeroUsize;
use core::ptr::NonNull;

use budalloc_core::{AllocError, Corruption, FreeError, RawAlloc, Stats};

use crate::chunk::{Chunk, ChunkHeader, FreeHeader, Map, Shape, GRANULE, WORD};

/// log2 of the second-level bins per doubling of the block length.
const SL_LOG2: u32 = 4;
/// Second-level bins per first-level bin: 16 per doubling, so a block of a bin is at most
/// 1/16 longer than the bin's lower bound.
pub(crate) const SL: usize = 1 << SL_LOG2;
/// First-level bins: lengths of fewer than `SL` granules share bin 0 (one second-level bin per
/// length), then one per doubling, up to `2^(FL + SL_LOG2 - 1)` granules (32 GiB: twice the
/// largest `CHUNK` that [`Tlsf`]'s bound allows).
pub(crate) const FL: usize = 26;
/// Blocks of a request's own bin looked at before the bins above ([`Tlsf::fit_in_own_bin`]).
const OWN_BIN_PROBES: usize = 8;
/// Entries of the direct-mapped cache of chunks ([`Tlsf`]'s `held`).
pub(crate) const HELD: usize = 256;

/// Default chunk size: 1 MiB (16 384 granules, 4 KiB of them header and bitmaps: 0.4%).
pub const DEFAULT_CHUNK: usize = 1 << 20;
/// Default largest request served in chunks: 64 KiB (at most a sixteenth of a chunk).
pub const DEFAULT_MAX: usize = 64 * 1024;

/// A bin: its first level times `SL` plus its second level, the index of its list in
/// [`Tlsf`]'s `heads`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Bin(pub usize);

impl Bin {
    /// The bin of first level `fl` and second level `sl` (`sl < SL`).
    #[inline]
    pub(crate) const fn new(fl: usize, sl: usize) -> Bin {
        Bin((fl << SL_LOG2) + sl)
    }

    /// The first level: the bit of `fl_bitmap`, the word of `sl_bitmap`.
    #[inline]
    pub(crate) const fn fl(self) -> usize {
        self.0 >> SL_LOG2
    }

    /// The second level: the bit of `sl_bitmap[self.fl()]`.
    #[inline]
    pub(crate) const fn sl(self) -> usize {
        self.0 & (SL - 1)
    }
}

/// The bin of a free block of `n` granules (`n >= 1`).
///
/// Lengths below `SL` share first level 0, one second-level bin each; from there one first
/// level per doubling, `SL` bins each. With `l = log2(n | SL)`, the bin is
/// `(l - SL_LOG2) * SL + (n >> (l - SL_LOG2))` in both ranges (from `SL` up, the shifted
/// length is `SL` plus the second level, which carries the first level one up): no branch
/// (lengths on either side of `SL` come in any order, and a branch on them mispredicted 200
/// thousand times per 400 000 actions of `drive budalloc-heap n30000`).
#[inline]
pub(crate) const fn bin_of(n: usize) -> Bin {
    let k = (n | SL).ilog2() - SL_LOG2;
    Bin(((k as usize) << SL_LOG2) + (n >> k))
}

/// The lowest bin whose every block holds `n` granules (`n >= 1`): `n` rounded up to the next
/// bin boundary, so that the first block of any non-empty bin from there up fits (TLSF's good
/// fit: O(1), never a list walk). Below `SL` every length is a bin boundary (the rounding adds
/// `2^0 - 1`).
#[inline]
const fn bin_above(n: usize) -> Bin {
    bin_of(n + (1 << ((n | SL).ilog2() - SL_LOG2)) - 1)
}

/// The shortest length (granules) of bin `bin`.
#[inline]
const fn bin_floor(bin: Bin) -> usize {
    if bin.fl() == 0 {
        bin.sl()
    } else {
        (SL + bin.sl()) << (bin.fl() - 1)
    }
}

/// Granules a request of `size` bytes takes (a zero-size request takes one).
#[inline]
const fn granules(size: usize) -> usize {
    let n = size.div_ceil(GRANULE);
    n + (n == 0) as usize
}

/// Bytes of a live block of `len` granules that its owner's pointer reaches, for a layout of
/// `size` bytes (at most the block's length): the size rounded up to a word. A word that the
/// layout's end cuts in two goes through the owner's pointer, which Tree Borrows (the model
/// this crate is checked under) allows. Stacked Borrows does not let a pointer reach past the
/// reference it came from: there, that one word (a header word of a request shorter than a
/// header, or the footer of a size that is not a multiple of a word and ends within a word of
/// the block's end) is still flagged when the owner frees through a pointer covering only its
/// layout.
#[inline]
fn caller_bytes(size: usize, len: usize) -> usize {
    (size.saturating_add(WORD - 1) & !(WORD - 1)).min(len * GRANULE)
}

/// Mixes a word (splitmix64's finaliser): stirs the secret once a chunk's address is known.
const fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The terms of a free header's seal, each with its multiplier (odd, so each term is a
/// bijection of its word; splitmix64's and Murmur3's constants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
enum Term {
    /// The block's address with its length.
    Place = 0x9e37_79b9_7f4a_7c15,
    /// The link to the next block of the bin.
    Next = 0xbf58_476d_1ce4_e5b9,
    /// The link to the previous block of the bin.
    Prev = 0xff51_afd7_ed55_8ccd,
}

/// The two links of a free header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// `next`.
    Next,
    /// `prev`.
    Prev,
}

/// A 64-bit seal folded to a word: on 32-bit targets the high half is XORed into the low one
/// (a multiplication carries its input's bits upward only, so the high half holds what the
/// length, rotated there, contributes). Linear in XOR, so seals stay updatable term by term.
#[inline]
const fn fold(z: u64) -> usize {
    if usize::BITS == 64 {
        z as usize
    } else {
        (z ^ (z >> 32)) as usize
    }
}

/// A free block checked for unlinking ([`Tlsf::check_free`]): what the check read, so that the
/// unlink that follows reads none of it again.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Free {
    /// The chunk the block lies in.
    chunk: Chunk,
    /// The block's address.
    addr: usize,
    /// Its header, sealed.
    pub h: FreeHeader,
    /// The chunk of the block `h.prev` names (`None`: the block heads its bin).
    prev: Option<Chunk>,
    /// The chunk of the block `h.next` names (`None`: the block ends its bin's list).
    next: Option<Chunk>,
}

/// Two-level segregated fit (TLSF, Masmano et al. 2004) for medium blocks, in chunks of
/// `CHUNK` bytes taken from a backing policy `B`; everything else goes to `B`.
///
/// A request of at most `MAX` bytes and alignment takes whole 64-byte granules of a chunk: a
/// block among the first few of its own bin that fits it tightest, else the first free block of
/// the lowest non-empty bin whose blocks all fit; split, the granules before an aligned start
/// and after the request kept free. A free checks the block in the chunk's bitmaps (a block starts
/// there, it is live, the layout's length is the block's) and merges it with free neighbours
/// at once: the left one through the footer in its last word, found because the granule before
/// the block is not used. A chunk whose blocks are all free goes back to `B`, but one is kept
/// for reuse until [`RawAlloc::flush`] or [`RawAlloc::release_spare`]. When `B` has no chunk
/// left to give, a request is served by `B` itself, so the heap fails only when `B` does.
///
/// | operation | cost |
/// |---|---|
/// | allocate (medium) | O(1): up to 8 blocks of the request's own bin, else two bitmap scans for the bin above; unlink (neighbours' links checked), split |
/// | free (medium) | O(1) lookup of the chunk (address mask, a 256-entry cache), bit checks (the length the layout claims: at most two words of the `S` bitmap and its summary), merges |
/// | grow / shrink in place | O(1): absorbs the free block behind, or frees the tail |
/// | other requests, blocks of `B` | `B`'s (a free first checks the address is in no chunk) |
///
/// Blocks are as long as their layout rounded up to granules: at most 63 bytes of a block go
/// unused (64 for a zero-size layout, which takes one granule). A layout fits a block exactly
/// when it rounds to the block's length and its alignment (at most `MAX`) divides the block's
/// address.
///
/// Chunks are marked blocks of `B` ([`RawAlloc::allocate_marked`]), aligned to `CHUNK`, so the
/// chunk of any address is found by masking it and asking `B` (or the cache) whether a marked
/// block starts there; its first word (the sealed chunk header) decides. A layer above (size
/// classes) asking [`RawAlloc::is_marked`] of an address in a chunk is told no: its own marked
/// blocks (slabs) come straight from `B`.
///
/// Bad `CHUNK` / `MAX` fail the build when [`Tlsf::new`] is instantiated.
pub struct Tlsf<B, const CHUNK: usize = DEFAULT_CHUNK, const MAX: usize = DEFAULT_MAX> {
    /// The backing policy: chunks, and every request not served in chunks. Invariant: every
    /// chunk in `chunks` is a marked block currently allocated from it with [`Self::CHUNK_LAYOUT`].
    pub(crate) backend: B,
    /// Per bin ([`Bin`]), the first free block (address, 0 if none). Invariant: the list of
    /// a bin, doubly linked through the free headers, holds exactly the free blocks of the
    /// chunks whose length maps to it ([`bin_of`]).
    pub(crate) heads: [usize; FL * SL],
    /// Bit `f` is set iff some bin of first level `f` is non-empty.
    pub(crate) fl_bitmap: u32,
    /// Per first level `f`, bit `s` is set iff bin `(f, s)` is non-empty.
    pub(crate) sl_bitmap: [u32; FL],
    /// The first chunk of the list of every chunk (address, 0 if none), doubly linked through
    /// the chunk headers. Invariant: `count` chunks, each sealed for its address.
    pub(crate) chunks: usize,
    /// Number of chunks held.
    pub(crate) count: usize,
    /// Bytes of the live blocks in chunks. Invariant: the sum of their lengths (the free blocks
    /// hold the rest of the chunks' data areas).
    pub(crate) live: usize,
    /// The chunk whose blocks are all free that is kept for reuse, if any. Invariant: `None`, or
    /// a chunk of the list whose data area is one free block; every other chunk has a live
    /// block.
    pub(crate) spare: Option<Chunk>,
    /// A direct-mapped cache of chunks, each at entry `(base / CHUNK) % HELD`: a free into one
    /// of them asks `B` nothing. Invariant: every `Some` entry is a chunk of the list, at its
    /// own entry.
    pub(crate) held: [Option<Chunk>; HELD],
    /// The secret mixed into every seal: a fixed value until the first chunk is taken, then
    /// stirred once with its address (`keyed` set). Invariant: `keyed` is set whenever a chunk
    /// is held.
    pub(crate) secret: u64,
    /// Whether `secret` was stirred.
    pub(crate) keyed: bool,
    /// While a free or a resize runs: the caller's pointer to the block, its address, and the
    /// bytes of the block it reaches (the layout's size, rounded up to a word: [`caller_bytes`]).
    /// Writes into that range (a free header, a footer) go through the caller's pointer, not the
    /// chunk's: the caller may still hold a protected reference to it (a `Box` dropped inside
    /// the function it was passed to), which a write through another pointer would violate
    /// under the aliasing model (as in the buddy). Writes past it, into the block's tail that no
    /// reference of the caller's covers, go through the chunk's pointer: under Stacked Borrows
    /// the caller's pointer does not reach them. `None` otherwise.
    origin: Option<(NonNull<u8>, usize, usize)>,
}

// SAFETY: a `Tlsf` owns its chunks exclusively (blocks of its backend, which it owns); the raw
// pointers it holds point into those blocks only. Moving it to another thread moves that
// ownership with the backend, so it is `Send` exactly when the backend is.
unsafe impl<B: Send, const CHUNK: usize, const MAX: usize> Send for Tlsf<B, CHUNK, MAX> {}

impl<B: RawAlloc + Default, const CHUNK: usize, const MAX: usize> Default for Tlsf<B, CHUNK, MAX> {
    fn default() -> Self {
        Self::new(B::default())
    }
}

impl<B: RawAlloc, const CHUNK: usize, const MAX: usize> Tlsf<B, CHUNK, MAX> {
    /// The shape of every chunk.
    pub(crate) const SHAPE: Shape = {
        assert!(
            CHUNK.is_power_of_two() && CHUNK >= 16 * 1024,
            "CHUNK must be a power of two of at least 16 KiB"
        );
        assert!(CHUNK / GRANULE < 1 << (FL as u32 + SL_LOG2 - 1), "CHUNK is too large for the bins");
        assert!(MAX >= GRANULE && MAX <= CHUNK / 4, "MAX must lie between one granule and a quarter chunk");
        Shape::of(CHUNK)
    };

    /// The layout chunks are allocated from the backend with: `(CHUNK, CHUNK)`.
    pub(crate) const CHUNK_LAYOUT: Layout = match Layout::from_size_align(CHUNK, CHUNK) {
        Ok(layout) => layout,
        Err(_) => panic!("the chunk layout is invalid"),
    };

    /// A heap over `backend`, holding no chunk yet.
    pub const fn new(backend: B) -> Self {
        let _ = Self::SHAPE;
        Tlsf {
            backend,
            heads: [0; FL * SL],
            fl_bitmap: 0,
            sl_bitmap: [0; FL],
            chunks: 0,
            count: 0,
            live: 0,
            spare: None,
            held: [None; HELD],
            secret: 0x5bd1_e995_7f4a_7c15,
            keyed: false,
            origin: None,
        }
    }

    /// The backing policy.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backing policy, to claim regions or read its own figures.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Whether `layout` is served in chunks: at most `MAX` bytes, aligned to at most `MAX` (a
    /// larger alignment than a granule costs a search for `align / 64 - 1` granules more, given
    /// back in front of the block).
    #[inline]
    fn serves(layout: Layout) -> bool {
        layout.size() <= MAX && layout.align() <= MAX
    }

    /// One term of a free header's seal: a stored word keyed with the secret and multiplied by
    /// the term's own odd constant, a bijection of the word (so a change of that word alone
    /// always changes the seal), unrelated to the other terms (so that two words changed
    /// together, or swapped, do not cancel out).
    #[inline]
    fn seal_term(&self, word: u64, term: Term) -> u64 {
        (word ^ self.secret).wrapping_mul(term as u64)
    }

    /// The seal of free header `h` at `addr`: the XOR of three terms ([`Self::seal_term`]), its
    /// length with its address, and each link, folded to a word. Since the terms are XORed,
    /// relinking a block updates its seal from the link's old and new values alone
    /// ([`Self::relinked`]), without first checking the old seal.
    #[inline]
    pub(crate) fn seal(&self, addr: usize, h: &FreeHeader) -> usize {
        let place = addr as u64 ^ (h.granules as u64).rotate_left(32);
        fold(
            self.seal_term(place, Term::Place)
                ^ self.seal_term(h.next as u64, Term::Next)
                ^ self.seal_term(h.prev as u64, Term::Prev),
        )
    }

    /// Whether the free header `h` read at `addr` carries its seal.
    #[inline]
    pub(crate) fn sealed(&self, addr: usize, h: &FreeHeader) -> bool {
        h.seal == self.seal(addr, h)
    }

    /// `h` with its link `link` set to `to`, its seal moved by the change alone: a header that
    /// carried its seal still does, and one that did not still does not (its damage is reported
    /// when the block itself is next used, not sealed over). Costs two terms where checking the
    /// old seal and sealing anew cost six.
    #[inline]
    fn relinked(&self, mut h: FreeHeader, link: Link, to: usize) -> FreeHeader {
        let (from, term) = match link {
            Link::Next => (core::mem::replace(&mut h.next, to), Term::Next),
            Link::Prev => (core::mem::replace(&mut h.prev, to), Term::Prev),
        };
        h.seal ^= fold(self.seal_term(from as u64, term) ^ self.seal_term(to as u64, term));
        h
    }

    /// The seal of the chunk header at `base`.
    #[inline]
    pub(crate) fn chunk_seal(&self, base: usize) -> usize {
        let z = (self.secret ^ base as u64 ^ 0xc4ce_b9fe_1a85_ec53).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (z ^ (z >> 32)) as usize
    }

    /// The entry of `held` for the chunk at `base`.
    #[inline]
    fn held_entry(base: usize) -> usize {
        (base / CHUNK) % HELD
    }

    /// `addr` with the backend's provenance, if the backend holds that address.
    #[inline]
    fn rebased(&self, addr: NonZeroUsize) -> Option<NonNull<u8>> {
        self.backend.rebase(NonNull::<u8>::dangling().with_addr(addr))
    }

    /// The chunk holding `addr`, if `addr` lies in one of ours: the cache, else `B`'s marks and
    /// the chunk header's seal. Reads only metadata of `B`, then the first word of a marked
    /// block of `B` (a chunk of ours, or a slab of the layer above: sealed words both).
    #[inline]
    pub(crate) fn chunk_of(&self, addr: usize) -> Option<Chunk> {
        let base = addr & !(CHUNK - 1);
        match self.held[Self::held_entry(base)] {
            Some(chunk) if chunk.addr() == base => Some(chunk),
            _ => self.chunk_slow(base),
        }
    }

    /// [`Self::chunk_of`] past the cache.
    #[inline(never)]
    fn chunk_slow(&self, base: usize) -> Option<Chunk> {
        if self.count == 0 {
            return None;
        }
        let ptr = self.rebased(NonZeroUsize::new(base)?)?;
        let live = match self.backend.is_marked(ptr) {
            Some(marked) => marked,
            None => self.backend.validate(ptr, Self::CHUNK_LAYOUT).is_ok(),
        };
        // SAFETY: a live block of the backend starts at `ptr`, at least a word long (a marked
        // block: a chunk or a slab, whose first word is a seal; with a backend that keeps no
        // marks, a live block of the chunk size: see the crate docs' residual case).
        let ours = live && unsafe { Chunk::seal_at(ptr) } == self.chunk_seal(base);
        // SAFETY: sealed as our chunk at this address: a chunk this heap holds.
        ours.then(|| unsafe { Chunk::new(ptr) })
    }

    /// Pointer to `addr` in `chunk` for a write into a block becoming free: through the
    /// caller's pointer if `addr` lies in the block being freed or resized (see `origin`), else
    /// derived from the chunk's. Every other access to a chunk's blocks is to a free block
    /// (never the one being freed: it is live until the free ends), through the chunk's pointer.
    #[inline]
    fn ptr_in(&self, chunk: Chunk, addr: usize) -> NonNull<u8> {
        match self.origin {
            Some((ptr, start, len)) if addr.wrapping_sub(start) < len => ptr.with_addr_of(addr),
            _ => chunk.ptr().with_addr_of(addr),
        }
    }

    /// Reads the free header at `addr` in `chunk` (a free block starts there, or the caller
    /// checks the seal before trusting it).
    #[inline]
    pub(crate) fn read_free(&self, chunk: Chunk, addr: usize) -> FreeHeader {
        // SAFETY: `addr` is a granule of `chunk`'s data area (callers derive it from the chunk's
        // bitmaps or from a link they checked lies in one), so the pointer is in bounds and
        // aligned; the granule starts a free block, whose first granule is the policy's own
        // memory, initialised when the block was freed (a block is free before it is read).
        unsafe { chunk.ptr().with_addr_of(addr).cast::<FreeHeader>().as_ptr().read() }
    }

    /// Writes the header of the free block at `addr` in `chunk` (a block kept free: its links
    /// change).
    #[inline]
    fn write_free(&self, chunk: Chunk, addr: usize, header: FreeHeader) {
        // SAFETY: as in `read_free`; the block is free, so its first granule is ours to write.
        unsafe { chunk.ptr().with_addr_of(addr).cast::<FreeHeader>().as_ptr().write(header) }
    }

    /// The address of the footer of a block that ends at granule `end` (exclusive) of `chunk`:
    /// the last word of its last granule.
    #[inline]
    fn footer_addr(chunk: Chunk, end: usize) -> usize {
        chunk.addr() + end * GRANULE - core::mem::size_of::<usize>()
    }

    /// Reads the footer of the free block that ends at granule `end` (exclusive) of `chunk`.
    #[inline]
    pub(crate) fn footer_of(&self, chunk: Chunk, end: usize) -> usize {
        let addr = Self::footer_addr(chunk, end);
        // SAFETY: the granule before `end` lies in `chunk`'s data area and in a free block (the
        // caller checked its `U` bit): ours, initialised when the block was freed; aligned.
        unsafe { chunk.ptr().with_addr_of(addr).cast::<usize>().as_ptr().read() }
    }

    /// The granule of `addr` in `chunk`.
    #[inline]
    fn granule(chunk: Chunk, addr: usize) -> usize {
        (addr - chunk.addr()) / GRANULE
    }

    /// The chunk of the block a link names (`None` for the end of a list), for links already
    /// checked ([`Self::linked`]) or kept by this heap (the bin heads).
    #[inline]
    fn linked_chunk(&self, addr: usize) -> Option<Chunk> {
        if addr == 0 {
            None
        } else {
            self.chunk_of(addr)
        }
    }

    /// The chunk of the block a sealed link names, before its header is read: `Ok(None)` for
    /// the end of a list. The link comes from a header whose seal matched (or from a bin head,
    /// the heap's own memory), so it names a free block unless the seal was forged; only its
    /// place is checked here (a granule of the data area of a chunk of ours), which is what
    /// makes reading a header there safe, and the header read is then checked by its own seal.
    /// Inlined into every caller: `#[inline]` left it out of line, a call each of the 415 000
    /// times that 400 000 random actions of `drive budalloc-heap n30000` follow a link; with
    /// [`Self::live_block`] inlined too, the run takes 21 instructions per action fewer
    /// (callgrind).
    #[inline(always)]
    fn follow(&self, addr: usize) -> Result<Option<Chunk>, Corruption> {
        if addr == 0 {
            return Ok(None);
        }
        let bad = Corruption::Header { addr };
        let chunk = self.chunk_of(addr).ok_or(bad)?;
        let offset = addr - chunk.addr();
        if !offset.is_multiple_of(GRANULE) || offset / GRANULE < Self::SHAPE.first {
            return Err(bad);
        }
        Ok(Some(chunk))
    }

    /// The header of the free block at `addr` in `chunk`, checked before it is unlinked: its
    /// seal (which covers its length and both links), its length (inside the chunk), and its
    /// neighbours in its bin's list, each in a chunk of ours and linking back to it (glibc's
    /// safe unlinking), the head of the bin exactly when it has no predecessor. The neighbours'
    /// own seals are not checked: unlinking moves them by the changed link alone
    /// ([`Self::relinked`]), so a damaged neighbour stays damaged and is reported when it is next
    /// used itself. The caller checked that a free block starts at `addr`.
    #[inline(always)]
    pub(crate) fn check_free(&self, chunk: Chunk, addr: usize) -> Result<Free, Corruption> {
        let bad = Corruption::Header { addr };
        let h = self.read_free(chunk, addr);
        let g = Self::granule(chunk, addr);
        if !self.sealed(addr, &h) || h.granules == 0 || h.granules > Self::SHAPE.granules - g {
            return Err(bad);
        }
        let prev = self.follow(h.prev)?;
        match prev {
            // Its bin is looked up only here and when it is unlinked from the head (a block
            // with a predecessor has its bin's head elsewhere).
            None if self.heads[bin_of(h.granules).0] == addr => {}
            Some(pc) if self.read_free(pc, h.prev).next == addr => {}
            _ => return Err(bad),
        }
        let next = self.follow(h.next)?;
        if let Some(nc) = next {
            if self.read_free(nc, h.next).prev != addr {
                return Err(bad);
            }
        }
        Ok(Free { chunk, addr, h, prev, next })
    }

    /// `free` as it is now, after another block was unlinked from the same list: its header
    /// read again (its links may have changed) and the chunks of its links found again. Its
    /// length and bin are unchanged, and its links still name free blocks of our chunks (unlinking
    /// keeps the lists whole).
    fn refreshed(&self, free: Free) -> Free {
        let h = self.read_free(free.chunk, free.addr);
        Free { h, prev: self.linked_chunk(h.prev), next: self.linked_chunk(h.next), ..free }
    }

    /// Takes a free block off its bin's list. `free` comes from [`Self::check_free`], and no
    /// list changed since (else from [`Self::refreshed`]): its header and the chunks of its list
    /// neighbours are as checked. The neighbours' headers are read here, and each one's seal
    /// moves by its changed link alone ([`Self::relinked`]).
    #[inline(always)]
    fn unlink(&mut self, free: Free) {
        let Free { addr, h, prev, next, .. } = free;
        debug_assert_eq!(self.read_free(free.chunk, addr), h, "the list changed since the check");
        match prev {
            Some(pc) => {
                let p = self.read_free(pc, h.prev);
                self.write_free(pc, h.prev, self.relinked(p, Link::Next, h.next));
            }
            None => {
                // The block heads its bin: the bin's head moves on, and an emptied bin leaves
                // the bitmaps (a bin with a block before this one stays non-empty).
                let bin = bin_of(h.granules);
                debug_assert_eq!(self.heads[bin.0], addr, "a free block without predecessor heads its bin");
                self.heads[bin.0] = h.next;
                if h.next == 0 {
                    let f = bin.fl();
                    self.sl_bitmap[f] &= !(1 << bin.sl());
                    if self.sl_bitmap[f] == 0 {
                        self.fl_bitmap &= !(1 << f);
                    }
                }
            }
        }
        if let Some(nc) = next {
            let n = self.read_free(nc, h.next);
            self.write_free(nc, h.next, self.relinked(n, Link::Prev, h.prev));
        }
    }

    /// Makes granules `g .. g + len` of `chunk` a free block (bits set by the caller): header,
    /// footer, and the head of its bin's list. The old head's header gets its new `prev`, its
    /// seal moved by that change alone ([`Self::relinked`]): a header that did not carry its
    /// seal is left without one (its damage is reported when it is next used, not laundered).
    #[inline(always)]
    fn push(&mut self, chunk: Chunk, g: usize, len: usize) {
        let addr = chunk.addr() + g * GRANULE;
        let bin = bin_of(len);
        let old = self.heads[bin.0];
        let mut header = FreeHeader { seal: 0, next: old, prev: 0, granules: len };
        header.seal = self.seal(addr, &header);
        let footer = Self::footer_addr(chunk, g + len);
        // SAFETY: the granules are a block becoming free, ours to write (through the caller's
        // pointer where they are the block being freed, see `ptr_in`): its first granule holds
        // the header, in bounds and aligned.
        unsafe { self.ptr_in(chunk, addr).cast::<FreeHeader>().as_ptr().write(header) };
        // SAFETY: as above; the last word of its last granule holds the footer.
        unsafe { self.ptr_in(chunk, footer).cast::<usize>().as_ptr().write(len) };
        if let Some(oc) = self.linked_chunk(old) {
            let o = self.read_free(oc, old);
            self.write_free(oc, old, self.relinked(o, Link::Prev, addr));
        }
        self.heads[bin.0] = addr;
        self.sl_bitmap[bin.fl()] |= 1 << bin.sl();
        self.fl_bitmap |= 1 << bin.fl();
    }

    /// The first non-empty bin at or above `bin`.
    #[inline]
    fn find_bin(&self, bin: Bin) -> Option<Bin> {
        let f = bin.fl();
        let here = self.sl_bitmap[f] & (u32::MAX << bin.sl());
        if here != 0 {
            return Some(Bin::new(f, here.trailing_zeros() as usize));
        }
        let above = self.fl_bitmap & u32::MAX.checked_shl(f as u32 + 1).unwrap_or(0);
        if above == 0 {
            return None;
        }
        let f = above.trailing_zeros() as usize;
        Some(Bin::new(f, self.sl_bitmap[f].trailing_zeros() as usize))
    }

    /// A free block of at least `n` granules in the bin of `n` itself, whose blocks may be
    /// shorter than `n` (the good fit of [`bin_above`] skips it): among its first
    /// [`OWN_BIN_PROBES`] blocks, the first exact fit, else the shortest that fits. Each
    /// header's seal is checked before its link is followed.
    fn fit_in_own_bin(&self, n: usize) -> Result<Option<usize>, Corruption> {
        let bin = bin_of(n);
        if bin == bin_above(n) {
            return Ok(None);
        }
        let mut at = self.heads[bin.0];
        let mut best: Option<(usize, usize)> = None;
        for _ in 0..OWN_BIN_PROBES {
            let Some(chunk) = self.follow(at)? else { break };
            let h = self.read_free(chunk, at);
            if !self.sealed(at, &h) {
                return Err(Corruption::Header { addr: at });
            }
            if h.granules == n {
                return Ok(Some(at));
            }
            if h.granules > n && best.is_none_or(|(_, len)| h.granules < len) {
                best = Some((at, h.granules));
            }
            at = h.next;
        }
        Ok(best.map(|(addr, _)| addr))
    }

    /// Allocates `n` granules in a chunk: `Ok(None)` if no free block is long enough and no
    /// chunk can be had. On `Err` nothing changed.
    fn allocate_granules(&mut self, n: usize, align: usize) -> Result<Option<NonNull<[u8]>>, AllocError> {
        // A block this long holds `n` granules aligned to `align` wherever it starts.
        let need = n + (align / GRANULE).saturating_sub(1);
        let addr = match self.fit_in_own_bin(need)? {
            Some(addr) => addr,
            None => {
                let above = bin_above(need);
                let bin = match self.find_bin(above) {
                    Some(bin) => bin,
                    None => {
                        if !self.add_chunk()? {
                            return Ok(None);
                        }
                        match self.find_bin(above) {
                            Some(bin) => bin,
                            None => return Ok(None),
                        }
                    }
                };
                self.heads[bin.0]
            }
        };
        let chunk = self.chunk_of(addr).ok_or(Corruption::Header { addr })?;
        let shape = Self::SHAPE;
        let g = Self::granule(chunk, addr);
        if !chunk.bit(shape, Map::S, g) || chunk.bit(shape, Map::U, g) {
            return Err(Corruption::Header { addr }.into());
        }
        let free = self.check_free(chunk, addr)?;
        let h = free.h;
        if h.granules < need {
            return Err(Corruption::Header { addr }.into());
        }
        self.unlink(free);
        // Granules in front of the aligned start stay free (the block before is live: free
        // blocks are merged), as do those behind the allocation.
        let front = (addr.wrapping_neg() & (align - 1)) / GRANULE;
        let start = g + front;
        if front > 0 {
            chunk.set_bit(shape, Map::S, start, true);
            self.push(chunk, g, front);
        }
        if h.granules > front + n {
            chunk.set_bit(shape, Map::S, start + n, true);
            self.push(chunk, start + n, h.granules - front - n);
        }
        chunk.mark_live(shape, start, n, true);
        self.live += n * GRANULE;
        if self.spare == Some(chunk) {
            self.spare = None;
        }
        let block = chunk.ptr().with_addr_of(chunk.addr() + start * GRANULE);
        Ok(Some(NonNull::slice_from_raw_parts(block, n * GRANULE)))
    }

    /// Takes a chunk from the backend and makes its data area one free block: `Ok(false)` if the
    /// backend has none to give.
    #[cold]
    #[inline(never)]
    fn add_chunk(&mut self) -> Result<bool, AllocError> {
        // The list head, checked before anything changes: before the backend is asked for the
        // chunk, whose allocation is a change of the backend's metadata.
        let old = self.chunks;
        let head = match NonZeroUsize::new(old) {
            None => None,
            Some(nz) => Some(
                self.chunk_of(nz.get())
                    .filter(|c| c.addr() == old && c.header().prev == 0)
                    .ok_or(Corruption::Header { addr: old })?,
            ),
        };
        let block = match self.backend.allocate_marked(Self::CHUNK_LAYOUT) {
            Ok(block) => block.cast::<u8>(),
            Err(AllocError::OutOfMemory { .. } | AllocError::TooLarge { .. }) => return Ok(false),
            Err(other) => return Err(other),
        };
        let base = self.backend.rebase(block).unwrap_or(block);
        debug_assert_eq!(base.addr().get() % CHUNK, 0, "the backend misaligned a chunk");
        if !self.keyed {
            // No chunk is held, so no seal depends on the secret yet.
            self.secret = mix(self.secret ^ base.addr().get() as u64);
            self.keyed = true;
        }
        // SAFETY: `base` is a block the backend just gave us for `(CHUNK, CHUNK)`: CHUNK bytes,
        // aligned to CHUNK, ours alone, with the backend's provenance over it.
        let chunk = unsafe { Chunk::new(base) };
        let shape = Self::SHAPE;
        chunk.init(shape, ChunkHeader { seal: self.chunk_seal(chunk.addr()), next: old, prev: 0 });
        if let Some(head) = head {
            let mut h = head.header();
            h.prev = chunk.addr();
            head.put_header(h);
        }
        self.chunks = chunk.addr();
        self.count += 1;
        self.held[Self::held_entry(chunk.addr())] = Some(chunk);
        chunk.set_bit(shape, Map::S, shape.first, true);
        self.push(chunk, shape.first, shape.data());
        Ok(true)
    }

    /// Checks, changing nothing, that `chunk` can leave the list of chunks: its neighbours link
    /// back to it (or it is the head).
    fn check_chunk_links(&self, chunk: Chunk) -> Result<ChunkHeader, Corruption> {
        let bad = Corruption::Header { addr: chunk.addr() };
        let h = chunk.header();
        if h.seal != self.chunk_seal(chunk.addr()) {
            return Err(bad);
        }
        if h.prev == 0 {
            if self.chunks != chunk.addr() {
                return Err(bad);
            }
        } else if self.chunk_of(h.prev).filter(|p| p.addr() == h.prev).map(|p| p.header().next)
            != Some(chunk.addr())
        {
            return Err(bad);
        }
        if h.next != 0
            && self.chunk_of(h.next).filter(|n| n.addr() == h.next).map(|n| n.header().prev)
                != Some(chunk.addr())
        {
            return Err(bad);
        }
        Ok(h)
    }

    /// Gives `chunk`, whose data area is one free block in its bin, back to the backend. On
    /// `Err` nothing changed.
    fn give_back(&mut self, chunk: Chunk) -> Result<(), Corruption> {
        let shape = Self::SHAPE;
        let addr = chunk.addr() + shape.first * GRANULE;
        let free = self.check_free(chunk, addr)?;
        if free.h.granules != shape.data() {
            return Err(Corruption::Header { addr });
        }
        let links = self.check_leaving(chunk)?;
        self.unlink(free);
        self.drop_chunk(chunk, links);
        Ok(())
    }

    /// Checks, changing nothing, that `chunk` can go back to the backend: it can leave the list
    /// of chunks ([`Self::check_chunk_links`]) and the backend holds it as a live block.
    fn check_leaving(&self, chunk: Chunk) -> Result<ChunkHeader, Corruption> {
        let links = self.check_chunk_links(chunk)?;
        // Any refusal: the backend no longer holds the chunk as the live block it gave us.
        match self.backend.validate(chunk.ptr(), Self::CHUNK_LAYOUT) {
            Ok(()) => Ok(links),
            Err(FreeError::Corrupted(c)) => Err(c),
            Err(_) => Err(Corruption::Header { addr: chunk.addr() }),
        }
    }

    /// Gives `chunk`, whose blocks are all free and in no bin, back to the backend, its list
    /// links `links` checked ([`Self::check_leaving`]).
    fn drop_chunk(&mut self, chunk: Chunk, links: ChunkHeader) {
        match self.chunk_of(links.prev).filter(|p| p.addr() == links.prev) {
            Some(p) => {
                let mut ph = p.header();
                ph.next = links.next;
                p.put_header(ph);
            }
            None => self.chunks = links.next,
        }
        if let Some(n) = self.chunk_of(links.next).filter(|n| n.addr() == links.next) {
            let mut nh = n.header();
            nh.prev = links.prev;
            n.put_header(nh);
        }
        let entry = &mut self.held[Self::held_entry(chunk.addr())];
        if *entry == Some(chunk) {
            *entry = None;
        }
        if self.spare == Some(chunk) {
            self.spare = None;
        }
        self.count -= 1;
        // Break the seal, so that a stale pointer into the old chunk is never taken for one.
        let mut header = chunk.header();
        header.seal = !header.seal;
        chunk.put_header(header);
        // SAFETY: the chunk is a marked block currently allocated from the backend with this
        // layout (invariant of `chunks`), validated just above, and nothing in it is live.
        let result = unsafe { self.backend.try_deallocate(chunk.ptr(), Self::CHUNK_LAYOUT) };
        debug_assert!(result.is_ok(), "the backend refused a chunk it validated: {result:?}");
    }

    /// The live block at `ptr` in `chunk` that `layout` fits: `(granule, length in granules)`.
    /// Reads only the chunk's bitmaps; changes nothing. Inlined into the free (see
    /// [`Self::follow`]).
    #[inline(always)]
    fn live_block(
        &self,
        chunk: Chunk,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<(usize, usize), FreeError> {
        let addr = ptr.addr().get();
        let shape = Self::SHAPE;
        let offset = addr - chunk.addr();
        let g = offset / GRANULE;
        if offset.is_multiple_of(GRANULE)
            && g >= shape.first
            && chunk.bit(shape, Map::S, g)
            && chunk.bit(shape, Map::U, g)
        {
            // The block is as long as the layout says when the next block starts right after
            // that length (or the chunk ends there) and none starts before.
            let n = granules(layout.size());
            let end = g.saturating_add(n);
            if layout.align() <= MAX
                && addr & (layout.align() - 1) == 0
                && end <= shape.granules
                && (end == shape.granules || chunk.bit(shape, Map::S, end))
                && !chunk.starts_in(shape, g + 1, end)
            {
                return Ok((g, n));
            }
            let len = chunk.next_set(shape, Map::S, g + 1, shape.granules) - g;
            return Err(FreeError::LayoutMismatch {
                addr,
                block_size: len * GRANULE,
                size: layout.size(),
                align: layout.align(),
                layout_block: self.usable_size(layout).unwrap_or(0),
            });
        }
        Err(self.diagnose(chunk, addr, layout))
    }

    /// Says why `addr` in `chunk` is not the start of a live block (the cold path of free).
    #[cold]
    #[inline(never)]
    fn diagnose(&self, chunk: Chunk, addr: usize, layout: Layout) -> FreeError {
        let shape = Self::SHAPE;
        let offset = addr - chunk.addr();
        let g = offset / GRANULE;
        let could_be_block = offset.is_multiple_of(GRANULE) && addr & (layout.align() - 1) == 0;
        let layout_block = self.usable_size(layout).unwrap_or(0);
        if g < shape.first {
            // The chunk's own header and bitmaps: no block of the caller's.
            return if could_be_block {
                FreeError::DoubleFree { addr, size: layout_block }
            } else {
                FreeError::InteriorPointer { addr, block: chunk.addr() }
            };
        }
        // Granule `first` always starts a block, so some start lies at or below `g`.
        let start = chunk.prev_set(shape, Map::S, g).unwrap_or(shape.first);
        let block = chunk.addr() + start * GRANULE;
        if chunk.bit(shape, Map::U, start) {
            FreeError::InteriorPointer { addr, block }
        } else if could_be_block {
            // Free memory where a block could have started: freed already.
            let len = chunk.next_set(shape, Map::S, start + 1, shape.granules) - start;
            FreeError::DoubleFree { addr, size: len * GRANULE }
        } else {
            FreeError::InteriorPointer { addr, block }
        }
    }

    /// Frees the live block `g .. g + len` of `chunk` (validated), merging it with its free
    /// neighbours. Every header it unlinks is checked before anything changes; on `Err` nothing
    /// changed.
    fn release(&mut self, chunk: Chunk, g: usize, len: usize) -> Result<(), Corruption> {
        let shape = Self::SHAPE;
        let base = chunk.addr();
        // The plan: the free neighbours, checked.
        let right = g + len;
        let right_block = if right < shape.granules && !chunk.bit(shape, Map::U, right) {
            let addr = base + right * GRANULE;
            if !chunk.bit(shape, Map::S, right) {
                return Err(Corruption::Header { addr });
            }
            Some(self.check_free(chunk, addr)?)
        } else {
            None
        };
        let left_block = if g > shape.first && !chunk.bit(shape, Map::U, g - 1) {
            let footer = self.footer_of(chunk, g);
            let start = g.wrapping_sub(footer);
            let addr = base.wrapping_add(start.wrapping_mul(GRANULE));
            // The footer is not sealed: it must name the start of a free block (a damaged one
            // naming a live block would have us read its owner's memory as a header).
            if footer == 0
                || footer > g - shape.first
                || !chunk.bit(shape, Map::S, start)
                || chunk.bit(shape, Map::U, start)
            {
                return Err(Corruption::Header { addr: base + (g - 1) * GRANULE });
            }
            let free = self.check_free(chunk, addr)?;
            if free.h.granules != footer {
                return Err(Corruption::Header { addr });
            }
            Some((start, free))
        } else {
            None
        };
        let mut total = len;
        let empties =
            len + right_block.map_or(0, |r| r.h.granules) + left_block.map_or(0, |(_, l)| l.h.granules)
                == shape.data();
        // A chunk that empties is kept (if none is) or goes back: check what leaving unlinks
        // before the first change.
        let leaving = match self.spare {
            Some(spare) if empties && spare != chunk => Some(self.check_leaving(chunk)?),
            _ => None,
        };
        // The changes.
        if let Some(r) = right_block {
            self.unlink(r);
            chunk.set_bit(shape, Map::S, right, false);
            total += r.h.granules;
        }
        let mut start = g;
        if let Some((left, mut l)) = left_block {
            // Unlinking the right block changed the left one's links if the two were
            // neighbours in a list (they may share a bin).
            if right_block.is_some_and(|r| l.h.prev == r.addr || l.h.next == r.addr) {
                l = self.refreshed(l);
            }
            self.unlink(l);
            chunk.set_bit(shape, Map::S, g, false);
            total += l.h.granules;
            start = left;
        }
        chunk.mark_live(shape, g, len, false);
        self.live -= len * GRANULE;
        match leaving {
            Some(links) => self.drop_chunk(chunk, links),
            None => {
                self.push(chunk, start, total);
                if empties {
                    self.spare = Some(chunk);
                }
            }
        }
        Ok(())
    }

    /// Grows the live block `g .. g + len` of `chunk` to `n` granules by taking the front of the
    /// free block behind it. `Ok(false)` (and no change) if that block is not free or too short.
    fn grow_block(&mut self, chunk: Chunk, g: usize, len: usize, n: usize) -> Result<bool, Corruption> {
        let shape = Self::SHAPE;
        let right = g + len;
        if right >= shape.granules || chunk.bit(shape, Map::U, right) {
            return Ok(false);
        }
        let addr = chunk.addr() + right * GRANULE;
        if !chunk.bit(shape, Map::S, right) {
            return Err(Corruption::Header { addr });
        }
        let free = self.check_free(chunk, addr)?;
        let (h, extra) = (free.h, n - len);
        if h.granules < extra {
            return Ok(false);
        }
        self.unlink(free);
        chunk.set_bit(shape, Map::S, right, false);
        if h.granules > extra {
            chunk.set_bit(shape, Map::S, g + n, true);
            self.push(chunk, g + n, h.granules - extra);
        }
        chunk.mark_live(shape, g, len, false);
        chunk.mark_live(shape, g, n, true);
        self.live += extra * GRANULE;
        Ok(true)
    }

    /// Shrinks the live block `g .. g + len` of `chunk` to `n` granules (`1 <= n < len`),
    /// freeing the tail and merging it with a free block behind. On `Err` nothing changed.
    fn shrink_block(&mut self, chunk: Chunk, g: usize, len: usize, n: usize) -> Result<(), Corruption> {
        let shape = Self::SHAPE;
        let right = g + len;
        let right_block = if right < shape.granules && !chunk.bit(shape, Map::U, right) {
            let addr = chunk.addr() + right * GRANULE;
            if !chunk.bit(shape, Map::S, right) {
                return Err(Corruption::Header { addr });
            }
            Some(self.check_free(chunk, addr)?)
        } else {
            None
        };
        let mut tail = len - n;
        if let Some(r) = right_block {
            self.unlink(r);
            chunk.set_bit(shape, Map::S, right, false);
            tail += r.h.granules;
        }
        chunk.mark_live(shape, g, len, false);
        chunk.mark_live(shape, g, n, true);
        chunk.set_bit(shape, Map::S, g + n, true);
        self.live -= (len - n) * GRANULE;
        self.push(chunk, g + n, tail);
        Ok(())
    }

    /// Resizes the block at `ptr` in place: in a chunk by [`Self::grow_block`] /
    /// [`Self::shrink_block`], else by the backend.
    ///
    /// # Safety
    /// As `RawAlloc::grow_in_place` (`grow`) or `RawAlloc::shrink_in_place`.
    unsafe fn resize_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        grow: bool,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let addr = ptr.addr().get();
        let Some(chunk) = self.chunk_of(addr) else {
            return if grow {
                // SAFETY: forwarded from our caller; not in a chunk, so a block of the backend.
                unsafe { self.backend.grow_in_place(ptr, old, new) }
            } else {
                // SAFETY: as above.
                unsafe { self.backend.shrink_in_place(ptr, old, new) }
            };
        };
        let (g, len) = self.live_block(chunk, ptr, old).map_err(AllocError::invalid_block)?;
        let n = granules(new.size());
        let refused = AllocError::OutOfMemory { size: new.size(), block: n.saturating_mul(GRANULE) };
        if new.align() > MAX || addr & (new.align() - 1) != 0 || n > Self::SHAPE.data() {
            return Err(refused);
        }
        self.origin = Some((ptr, addr, caller_bytes(old.size(), len)));
        let result = if n > len {
            self.grow_block(chunk, g, len, n).map(|grown| grown.then_some(()))
        } else if n < len {
            self.shrink_block(chunk, g, len, n).map(Some)
        } else {
            Ok(Some(()))
        };
        self.origin = None;
        match result? {
            Some(()) => Ok(NonNull::slice_from_raw_parts(ptr, n * GRANULE)),
            None => Err(refused),
        }
    }

    /// The largest power of two `p` such that any request of at most `p` bytes and alignment
    /// served in chunks succeeds in the free blocks of the chunks now: one of up to `2p / 64 - 1`
    /// granules (the alignment's padding included) must find a block in a bin at or above the
    /// one it searches from. 0 if none.
    fn largest_request_in_chunks(&self) -> usize {
        let longest = self.largest_in_chunks() / GRANULE;
        let mut p = MAX.next_power_of_two();
        while p >= GRANULE {
            let need = (2 * p / GRANULE).saturating_sub(1).max(1);
            if p <= MAX && bin_floor(bin_above(need)) <= longest {
                return p;
            }
            p /= 2;
        }
        0
    }

    /// The longest free block in chunks, in bytes: the longest of the highest non-empty bin.
    fn largest_in_chunks(&self) -> usize {
        let Some(f) = self.fl_bitmap.checked_ilog2() else { return 0 };
        let f = f as usize;
        let s = self.sl_bitmap[f].ilog2() as usize;
        let mut at = self.heads[Bin::new(f, s).0];
        let mut largest = 0;
        // Each link is checked before it is followed, and a header whose seal does not match
        // ends the walk: a damaged list is reported by the next call that unlinks from it.
        while let Ok(Some(chunk)) = self.follow(at) {
            let h = self.read_free(chunk, at);
            if !self.sealed(at, &h) {
                break;
            }
            largest = largest.max(h.granules);
            at = h.next;
        }
        largest * GRANULE
    }

    /// Gives the spare chunk back to the backend: `true` if there was one.
    fn release_spare_chunk(&mut self) -> bool {
        match self.spare {
            Some(chunk) => self.give_back(chunk).is_ok(),
            None => false,
        }
    }
}

/// `NonNull::with_addr` from an address known to be non-zero (an address inside a chunk).
trait WithAddrOf {
    fn with_addr_of(self, addr: usize) -> Self;
}

impl WithAddrOf for NonNull<u8> {
    #[inline]
    fn with_addr_of(self, addr: usize) -> Self {
        self.map_addr(|a| NonZeroUsize::new(addr).unwrap_or(a))
    }
}

// SAFETY: chunk blocks are handed out only from free blocks taken off the bins (their `U` bits
// go from 0 to 1 and back only when freed), blocks of the chunks tile each chunk's data area
// and never overlap; headers and footers are written only into free blocks; every other
// request is the backend's, whose promises carry over. Failed calls return before their first
// change (every check runs first).
unsafe impl<B: RawAlloc, const CHUNK: usize, const MAX: usize> RawAlloc for Tlsf<B, CHUNK, MAX> {
    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if Self::serves(layout) {
            if let Some(block) = self.allocate_granules(granules(layout.size()), layout.align())? {
                return Ok(block);
            }
        }
        self.backend.allocate(layout)
    }

    #[inline]
    unsafe fn try_deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        let addr = ptr.addr().get();
        match self.chunk_of(addr) {
            Some(chunk) => {
                let (g, len) = self.live_block(chunk, ptr, layout)?;
                self.origin = Some((ptr, addr, caller_bytes(layout.size(), len)));
                let result = self.release(chunk, g, len);
                self.origin = None;
                Ok(result?)
            }
            // SAFETY: forwarded from our caller; in no chunk of ours, so not a block of ours
            // (a chunk's own base lies in it and is rejected above).
            None => unsafe { self.backend.try_deallocate(ptr, layout) },
        }
    }

    #[inline]
    fn validate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        match self.chunk_of(ptr.addr().get()) {
            Some(chunk) => self.live_block(chunk, ptr, layout).map(|_| ()),
            None => self.backend.validate(ptr, layout),
        }
    }

    #[inline]
    fn rebase(&self, ptr: NonNull<u8>) -> Option<NonNull<u8>> {
        self.backend.rebase(ptr)
    }

    fn allocate_marked(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.backend.allocate_marked(layout)
    }

    fn is_marked(&self, ptr: NonNull<u8>) -> Option<bool> {
        match self.chunk_of(ptr.addr().get()) {
            // A chunk is ours: no marked block of a caller's lies in it.
            Some(_) => Some(false),
            None => self.backend.is_marked(ptr),
        }
    }

    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded from our caller.
        unsafe { self.resize_in_place(ptr, old, new, true) }
    }

    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded from our caller.
        unsafe { self.resize_in_place(ptr, old, new, false) }
    }

    fn flush(&mut self) {
        self.release_spare_chunk();
        self.backend.flush();
    }

    fn release_spare(&mut self) -> bool {
        let released = self.release_spare_chunk();
        self.backend.release_spare() || released
    }

    #[inline]
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.backend.owns(ptr)
    }

    /// A layout served in chunks gets its size rounded up to granules; others, the backend's
    /// length. (A block the backend served in a chunk's place, when no chunk could be had, is
    /// as long as the backend makes it.)
    fn usable_size(&self, layout: Layout) -> Result<usize, AllocError> {
        if Self::serves(layout) {
            Ok(granules(layout.size()) * GRANULE)
        } else {
            self.backend.usable_size(layout)
        }
    }

    /// The backend's figures with chunks seen from inside: their headers and bitmaps are
    /// overhead, their live blocks allocated, their free blocks free; `largest_free` is the
    /// largest power of two such that any request of at most that size and alignment succeeds
    /// now: the backend's, or what the free blocks of the chunks guarantee (a request of up to
    /// `2p / 64 - 1` granules, its alignment's padding included, must find a block), whichever
    /// is larger.
    fn stats(&self) -> Stats {
        let mut stats = self.backend.stats();
        let chunk_bytes = self.count * self.backend.usable_size(Self::CHUNK_LAYOUT).unwrap_or(CHUNK);
        let header_bytes = self.count * Self::SHAPE.first * GRANULE;
        stats.capacity -= header_bytes;
        stats.overhead += header_bytes;
        stats.allocated = stats.allocated - chunk_bytes + self.live;
        stats.free = stats.capacity - stats.allocated;
        stats.largest_free = stats.largest_free.max(self.largest_request_in_chunks());
        stats
    }
}

impl<B: RawAlloc + budalloc_core::Claim, const CHUNK: usize, const MAX: usize> budalloc_core::Claim
    for Tlsf<B, CHUNK, MAX>
{
    fn claim(
        &mut self,
        region: &'static mut [core::mem::MaybeUninit<u8>],
    ) -> Result<(), budalloc_core::RegionError> {
        self.backend.claim(region)
    }

    unsafe fn claim_raw(&mut self, ptr: *mut u8, len: usize) -> Result<(), budalloc_core::RegionError> {
        // SAFETY: forwarded from our caller.
        unsafe { self.backend.claim_raw(ptr, len) }
    }
}

impl<B: RawAlloc, const CHUNK: usize, const MAX: usize> core::fmt::Debug for Tlsf<B, CHUNK, MAX> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tlsf")
            .field("chunk", &CHUNK)
            .field("max", &MAX)
            .field("chunks", &self.count)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{bin_above, bin_floor, bin_of, Bin, SL, SL_LOG2};

    /// The definition the branch-free [`bin_of`] computes: `(first level, second level)`.
    fn bin_by_cases(n: usize) -> (usize, usize) {
        if n < SL {
            (0, n)
        } else {
            let f = n.ilog2();
            ((f - SL_LOG2 + 1) as usize, (n >> (f - SL_LOG2)) & (SL - 1))
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "pure arithmetic, no memory for Miri to check: slow there, run natively")]
    fn bins_follow_their_definition() {
        let lengths = (1..1 << 16).chain((16..usize::BITS - 1).flat_map(|k| {
            let p = 1usize << k;
            [p - 1, p, p + 1, p + p / 2]
        }));
        for n in lengths {
            let bin = bin_of(n);
            assert_eq!((bin.fl(), bin.sl()), bin_by_cases(n), "bin of {n}");
            assert_eq!(bin, Bin::new(bin.fl(), bin.sl()));
            assert!(bin_floor(bin) <= n, "{n} lies below its bin {bin:?}");
            let above = bin_above(n);
            assert!(bin_floor(above) >= n && above >= bin, "bin above {n}: {above:?}");
            // The bin just below it holds a length shorter than `n`: `above` is the lowest.
            let below = bin_of(bin_floor(above) - 1);
            assert!(below < above && bin_floor(below) < n, "bin above {n}: {above:?} is not the lowest");
        }
    }
}
