//! The slab header: what a slab knows about itself, at the start of its block.
//!
//! ```text
//! slab base (aligned to the slab size S)
//! ├─ Header: seal │ class │ hint │ free │ next │ prev │ next_slab │ prev_slab  (HEADER_FIXED bytes)
//! ├─ free-object bitmap: `words` words, bit i set iff object i is free
//! ├─ padding up to the class's object alignment
//! ├─ object 0 │ object 1 │ … │ object n-1                  (never read or written by us)
//! └─ tail (S - first - n * size bytes)
//! ```
//!
//! Objects carry no links: the allocator never touches their memory, so a double free is a bit
//! test and a freed object keeps whatever its owner left in it.

use core::mem::{offset_of, size_of};
use core::ptr::NonNull;

/// The fixed part of a slab header. The free-object bitmap follows it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// `Classes::seal(base, class)`: the slab's address and class mixed with the heap's secret.
    /// A header with a flipped bit in its class, or copied from another slab, does not match.
    pub seal: usize,
    /// Index of the slab's class in the table.
    pub class: u16,
    /// Every bitmap word below `hint` is zero (no free object there): where the next
    /// allocation starts scanning.
    pub hint: u16,
    /// Number of free objects: the number of set bits in the bitmap.
    pub free: u32,
    /// Address of the next slab in the same partial or empty list (0 at the end, and in a full
    /// slab, which is in neither).
    pub next: usize,
    /// Address of the previous slab in the same partial or empty list (0 at the head, and in a
    /// full slab).
    pub prev: usize,
    /// Address of the next slab in the list of every slab of the class (0 at the end).
    pub next_slab: usize,
    /// Address of the previous slab in the list of every slab of the class (0 at the head).
    pub prev_slab: usize,
}

impl Header {
    /// `(prev, next)` in the list of every slab of the class (`all`), or in the partial or
    /// empty list.
    #[inline]
    pub fn links(&self, all: bool) -> (usize, usize) {
        if all {
            (self.prev_slab, self.next_slab)
        } else {
            (self.prev, self.next)
        }
    }

    /// Sets the `next` link of the list [`links`](Self::links) names.
    #[inline]
    pub fn set_next(&mut self, all: bool, next: usize) {
        *(if all { &mut self.next_slab } else { &mut self.next }) = next;
    }

    /// Sets the `prev` link of the list [`links`](Self::links) names.
    #[inline]
    pub fn set_prev(&mut self, all: bool, prev: usize) {
        *(if all { &mut self.prev_slab } else { &mut self.prev }) = prev;
    }
}

/// Bytes of the fixed header; the bitmap words start here (a multiple of the word size).
pub const HEADER_FIXED: usize = size_of::<Header>();
const _: () = assert!(HEADER_FIXED.is_multiple_of(size_of::<usize>()), "the bitmap must start word-aligned");

const WORD: usize = size_of::<usize>();

/// A slab, by its base address (with a provenance that covers its header).
///
/// Invariant (of every value built by [`Slab::new`]): the pointer is the base of a block of
/// the backend that this heap holds as a slab, valid for reads and writes of the header and its
/// bitmap, and only this heap accesses those bytes (its objects are never accessed through it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slab(NonNull<u8>);

impl Slab {
    /// The slab at `base`.
    ///
    /// # Safety
    /// `base` must be the base of a slab this heap holds, valid for reads and writes of its
    /// header and bitmap, with provenance that covers them.
    #[inline]
    pub unsafe fn new(base: NonNull<u8>) -> Slab {
        Slab(base)
    }

    /// Reads the seal word at `base`, the first check made before treating a block as a slab.
    ///
    /// # Safety
    /// `base` must be valid for reads of one word, and initialised there: the start of a live
    /// block of the backend, at least a word long (see the residual case in the crate docs).
    #[inline]
    pub unsafe fn seal_at(base: NonNull<u8>) -> usize {
        // SAFETY: the caller guarantees one readable word at `base`; slab bases are aligned to
        // their size, so to a word.
        unsafe { base.cast::<usize>().as_ptr().read() }
    }

    /// The slab's base pointer.
    #[inline]
    pub fn ptr(self) -> NonNull<u8> {
        self.0
    }

    /// The slab's base address.
    #[inline]
    pub fn addr(self) -> usize {
        self.0.addr().get()
    }

    /// The fixed header.
    #[inline]
    pub fn get(self) -> Header {
        // SAFETY: the header is readable and initialised (invariant of `Slab`); the base is
        // aligned to the slab size, hence to `Header`.
        unsafe { self.0.cast::<Header>().as_ptr().read() }
    }

    /// Writes the fixed header.
    #[inline]
    pub fn put(self, header: Header) {
        // SAFETY: the header is writable and ours alone (invariant of `Slab`), and aligned.
        unsafe { self.0.cast::<Header>().as_ptr().write(header) }
    }

    /// Writes the `hint` and `free` fields of `header` alone (the rest of the fixed header
    /// is unchanged by an allocation or free that leaves the slab in its list).
    #[inline]
    pub fn put_counts(self, header: &Header) {
        let field = |offset: usize| self.0.as_ptr().wrapping_add(offset);
        // SAFETY: the header is writable and ours alone (invariant of `Slab`); the field lies
        // inside it, aligned for its type (`Header` is `repr(C)` and the base is aligned).
        unsafe { field(offset_of!(Header, hint)).cast::<u16>().write(header.hint) };
        // SAFETY: as above.
        unsafe { field(offset_of!(Header, free)).cast::<u32>().write(header.free) };
    }

    /// Writes the `next` and `prev` fields of `header` alone: the links of the partial or
    /// empty list, which a slab that fills or empties changes (its links in the list of every
    /// slab of its class stay as they are).
    #[inline]
    pub fn put_links(self, header: &Header) {
        let field = |offset: usize| self.0.as_ptr().wrapping_add(offset);
        // SAFETY: the header is writable and ours alone (invariant of `Slab`); the field lies
        // inside it, aligned for its type (`Header` is `repr(C)` and the base is aligned).
        unsafe { field(offset_of!(Header, next)).cast::<usize>().write(header.next) };
        // SAFETY: as above.
        unsafe { field(offset_of!(Header, prev)).cast::<usize>().write(header.prev) };
    }

    /// Pointer to bitmap word `i` (`i < words` of the slab's class).
    #[inline]
    fn word_ptr(self, i: usize) -> *mut usize {
        self.0.as_ptr().wrapping_add(HEADER_FIXED + i * WORD).cast::<usize>()
    }

    /// Bitmap word `i`; `i` must be below the class's word count.
    #[inline]
    pub fn word(self, i: usize) -> usize {
        // SAFETY: word `i` lies in the bitmap (caller's index), readable and initialised
        // (invariant of `Slab`), word-aligned (`HEADER_FIXED` is a multiple of the word size).
        unsafe { self.word_ptr(i).read() }
    }

    /// Sets bitmap word `i`; `i` must be below the class's word count.
    #[inline]
    pub fn set_word(self, i: usize, value: usize) {
        // SAFETY: as in `word`, and the bitmap is ours alone to write.
        unsafe { self.word_ptr(i).write(value) }
    }

    /// Whether object `i` is free.
    #[inline]
    pub fn is_free(self, i: usize) -> bool {
        self.word(i / usize::BITS as usize) >> (i % usize::BITS as usize) & 1 != 0
    }

    /// Writes a fresh header for a slab of `objects` objects in `words` bitmap words, all free.
    pub fn init(self, seal: usize, class: usize, objects: usize, words: usize) {
        self.put(Header {
            seal,
            class: class as u16,
            hint: 0,
            free: objects as u32,
            next: 0,
            prev: 0,
            next_slab: 0,
            prev_slab: 0,
        });
        for i in 0..words {
            let bits = (objects - i * usize::BITS as usize).min(usize::BITS as usize);
            self.set_word(i, if bits == usize::BITS as usize { usize::MAX } else { (1 << bits) - 1 });
        }
    }
}
