//! The size-class table, built by a `const fn` from the small-object limit and the number of
//! classes per doubling.
//!
//! # Classes
//! Class 0 is 16 bytes. In each doubling `(2^k, 2^(k+1)]` (`k >= 4`) the classes are the
//! multiples of the spacing `max(16, 2^k / STEPS)`: with `STEPS = 4` (jemalloc's choice) that is
//! 16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, … 28 672, 32 768. Every class
//! size is a multiple of 16, and every power of two up to the limit is a class.
//!
//! An object of a class is aligned to the largest power of two dividing its size (a class of
//! `2^j` bytes is aligned to `2^j`; 48 to 16, 96 to 32, 3072 to 1024): the first object starts
//! at the slab header's size rounded up to that alignment, and the slab is aligned to its own
//! size. So a layout `(size, align)` with `align <= LIMIT` is served by the class of
//! `round_up(size, align)`, which is always a multiple of `align` (see [`Table::class_of`]).
//!
//! # Slabs
//! A class's slab is one block of the backend of `2^slab_log2` bytes, the smallest power of two
//! from [`SLAB_MIN`] up that holds at least [`MIN_OBJECTS`] objects with at most
//! `1/`[`WASTE_DIVISOR`] of it lost to the header, alignment padding and the tail (capped at
//! [`SLAB_MAX`]).
//!
//! # Waste
//! Computed from the tables by the unit test `default_table_waste_per_class`, which fails if
//! they change. Rounding waste of a class is `(size - request) / size` over the requests that
//! map to it (`previous class + 1 ..= size`); slab waste is the share of a slab no object uses.
//!
//! | 4 classes per doubling | default, `LIMIT` = 1 KiB (20 classes) | `LIMIT` = 32 KiB (40 classes) |
//! |---|---:|---:|
//! | rounding, worst, classes above 64 B (a request one byte above the class below) | 19.8 % (513 B in 640) | 20.0 % (2049 B in 2560, …) |
//! | rounding, mean of the per-class means above 64 B (5.9 – 10.0 % per class) | 7.7 % | 7.8 % |
//! | rounding, 16 – 64 B (spacing 16) | worst 93.8 % (1 B in 16), means 11.7 – 46.9 % | same |
//! | slab, worst (power-of-two classes: the header takes one object's slot) | 3.12 % | 3.12 % |
//! | slab, mean over classes | 2.1 % | 2.1 % |
//!
//! Slabs: 4 KiB for classes up to 224 B, 8 to 32 KiB up to 1 KiB, and up to 1 MiB for 32 KiB
//! objects (31 of them); the classes `7 · 2^k` (448, 896, …) hold 9 objects per slab.
//!
//! # Lookup in O(1)
//! Sizes up to [`SMALL_LOOKUP`] bytes (or the limit, if lower) read a 257-entry table indexed by
//! `(size + 15) / 16`; larger ones compute the doubling from `ilog2` and the step from a shift.
//!
//! # Object index without a division
//! `offset / size` is `((offset >> shift) * recip) >> 32` with `shift` the trailing zeros of
//! the size and `recip = ceil(2^32 / (size >> shift))`; it is exact for every offset inside a
//! slab because the odd part of the size is below 32 and slabs are below 2^24 bytes (the unit
//! tests check every offset of every class).

use core::alloc::Layout;

use crate::slab::HEADER_FIXED;

/// Most classes a table may hold (the per-class arrays are this long).
pub const MAX_CLASSES: usize = 96;

/// Largest size the direct lookup table covers, in bytes (or the limit, if lower).
///
/// 4 KiB, not 1: a lookup branches on whether the size is within the table's reach, and a
/// workload whose sizes straddle that bound mispredicts the branch on a good share of its
/// operations (and takes the longer computed path for the rest). Raising the bound from 1 to
/// 4 KiB (interleaved runs, 2026-12-07): random actions of 8 B – 2000 B with reallocations went
/// from 33.0 to 28.1 ns per action (`drive budalloc-heap d2000`), the thread-cached frontend on
/// 8 B – 4 KiB from 23.3 to 19.2 (`drive scale budalloc-cached 5`, one thread), and actions up
/// to 200 B did not change (16.6 ns). Sizes above 4 KiB are the backend's in the default heap,
/// far slower than the branch. The table takes 257 bytes.
pub const SMALL_LOOKUP: usize = 4096;

/// Smallest small-object limit a table takes.
pub const MIN_LIMIT: usize = 1024;

/// Smallest slab, in bytes: a page.
pub const SLAB_MIN: usize = 4096;

/// Largest slab, in bytes (a class that would need more takes this and wastes more).
pub const SLAB_MAX: usize = 1 << 20;

/// Fewest objects a slab should hold, to amortise its header and its trip to the backend.
pub const MIN_OBJECTS: usize = 8;

/// A slab loses at most `1 / WASTE_DIVISOR` of its bytes to header, padding and tail (3.1%),
/// unless [`SLAB_MAX`] stops the search first.
pub const WASTE_DIVISOR: usize = 32;

const WORD_BITS: usize = usize::BITS as usize;
const WORD: usize = core::mem::size_of::<usize>();

/// One size class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    /// Object size in bytes (a multiple of 16).
    pub size: usize,
    /// Alignment every object of the class has: the largest power of two dividing `size`.
    pub align: usize,
    /// log2 of the slab size.
    pub slab_log2: u32,
    /// Offset of object 0 from the slab base: the header's size rounded up to `align`.
    pub first: usize,
    /// Objects per slab (at least 1, at most `u16::MAX`).
    pub objects: usize,
    /// Words of the slab header's free-object bitmap: `ceil(objects / usize::BITS)`.
    pub words: usize,
    /// Trailing zeros of `size`.
    pub shift: u32,
    /// `ceil(2^32 / (size >> shift))`: the reciprocal of the odd part of the size.
    pub recip: u64,
    /// `(size, align)`: the layout objects of the class are allocated and freed with.
    pub layout: Layout,
    /// `(S, S)`: the layout a slab is allocated from the backend with.
    pub slab_layout: Layout,
}

impl Class {
    const EMPTY: Class = Class {
        size: 0,
        align: 0,
        slab_log2: 0,
        first: 0,
        objects: 0,
        words: 0,
        shift: 0,
        recip: 0,
        layout: Layout::new::<u8>(),
        slab_layout: Layout::new::<u8>(),
    };

    /// The slab size in bytes.
    #[inline]
    pub const fn slab_size(&self) -> usize {
        1 << self.slab_log2
    }

    /// `offset / size`, without a division (see the module docs), for `offset` below the slab
    /// size; for larger offsets the result is some number (wrapping arithmetic), which callers
    /// range-check.
    #[inline]
    pub const fn index_of(&self, offset: usize) -> usize {
        (((offset >> self.shift) as u64).wrapping_mul(self.recip) >> 32) as usize
    }

    /// Bytes of the slab lost to the header, alignment padding and the tail.
    pub const fn slab_waste(&self) -> usize {
        self.slab_size() - self.objects * self.size
    }

    /// Where the objects of a slab of `objects` objects of this class would start: the header
    /// (fixed part and bitmap) rounded up to the object alignment.
    const fn first_for(size: usize, objects: usize) -> usize {
        let align = 1 << size.trailing_zeros();
        let header = HEADER_FIXED + objects.div_ceil(WORD_BITS) * WORD;
        header.next_multiple_of(align)
    }

    /// The class of `size` bytes with its slab geometry.
    const fn new(size: usize) -> Class {
        let shift = size.trailing_zeros();
        let odd = (size >> shift) as u64;
        let recip = (1u64 << 32).div_ceil(odd);
        let mut slab_log2 = SLAB_MIN.trailing_zeros();
        loop {
            let slab = 1usize << slab_log2;
            let mut objects = slab / size;
            while objects > 0 && Class::first_for(size, objects) + objects * size > slab {
                objects -= 1;
            }
            if objects > u16::MAX as usize {
                objects = u16::MAX as usize;
            }
            let waste = slab - objects * size;
            let good = objects >= MIN_OBJECTS && waste * WASTE_DIVISOR <= slab;
            if objects > 0 && (good || slab >= SLAB_MAX) {
                return Class {
                    size,
                    align: 1 << shift,
                    slab_log2,
                    first: Class::first_for(size, objects),
                    objects,
                    words: objects.div_ceil(WORD_BITS),
                    shift,
                    recip,
                    layout: layout(size, 1 << shift),
                    slab_layout: layout(slab, slab),
                };
            }
            slab_log2 += 1;
        }
    }
}

/// `Layout::from_size_align` in a `const`, for sizes the table built (powers of two and their
/// multiples, far below `isize::MAX`).
const fn layout(size: usize, align: usize) -> Layout {
    match Layout::from_size_align(size, align) {
        Ok(layout) => layout,
        Err(_) => panic!("a class or slab layout is invalid"),
    }
}

/// The whole table: classes by increasing size and the lookup structures.
#[derive(Clone, Copy, Debug)]
pub struct Table {
    /// The classes; `classes[len..]` are unused.
    pub classes: [Class; MAX_CLASSES],
    /// Number of classes.
    pub len: usize,
    /// `small[(size + 15) / 16]`: the class of a size up to `direct` bytes (entries past it
    /// are never read).
    small: [u8; SMALL_LOOKUP / 16 + 1],
    /// The sizes the direct table serves: up to `min(limit, SMALL_LOOKUP)` bytes.
    direct: usize,
    /// Index of the class of `direct` bytes.
    small_top: usize,
    /// log2 of the classes per doubling.
    steps_log2: u32,
    /// Largest class size: the small-object limit.
    pub limit: usize,
}

impl Table {
    /// Builds the table for classes up to `limit` bytes with `steps` classes per doubling.
    ///
    /// # Panics
    /// At compile time (where it is evaluated in a `const`) if `limit` is not a power of two in
    /// `MIN_LIMIT ..= SLAB_MAX / 2`, `steps` is not a power of two in `1 ..= 16`, or the
    /// table would need more than [`MAX_CLASSES`] classes.
    pub const fn new(limit: usize, steps: usize) -> Table {
        assert!(limit.is_power_of_two(), "the small-object limit must be a power of two");
        assert!(limit >= MIN_LIMIT, "the small-object limit must be at least 1 KiB");
        assert!(limit <= SLAB_MAX / 2, "the small-object limit must leave two objects per largest slab");
        assert!(steps.is_power_of_two() && steps <= 16, "classes per doubling: a power of two up to 16");
        let mut classes = [Class::EMPTY; MAX_CLASSES];
        let mut len = 0;
        let mut size = 16;
        while size <= limit {
            assert!(len < MAX_CLASSES, "too many size classes for MAX_CLASSES");
            classes[len] = Class::new(size);
            len += 1;
            // The next class lies in the doubling `(2^k, 2^(k+1)]` with `k = ilog2(size)` (for a
            // power of two `size = 2^k`, the next doubling starts there).
            let spacing = (1usize << size.ilog2()) / steps;
            size += if spacing < 16 { 16 } else { spacing };
        }
        let mut small = [0u8; SMALL_LOOKUP / 16 + 1];
        let mut i = 0;
        let mut class = 0;
        while i < small.len() {
            let bytes = if i == 0 { 1 } else { i * 16 };
            while class + 1 < len && classes[class].size < bytes {
                class += 1;
            }
            small[i] = class as u8;
            i += 1;
        }
        let direct = if limit < SMALL_LOOKUP { limit } else { SMALL_LOOKUP };
        let small_top = small[direct / 16] as usize;
        Table { classes, len, small, direct, small_top, steps_log2: steps.trailing_zeros(), limit }
    }

    /// The class of `size` bytes (`1 ..= limit`): the smallest class at least that large.
    #[inline]
    pub const fn class_for_size(&self, size: usize) -> usize {
        if size <= self.direct {
            return self.small[size.div_ceil(16)] as usize;
        }
        // `2^k < size <= 2^(k+1)`, `2^k >= direct`; the doubling's classes are `2^k + (j + 1)
        // spacing`.
        let k = (size - 1).ilog2();
        let spacing_log2 = k - self.steps_log2;
        let j = (size - 1 - (1 << k)) >> spacing_log2;
        self.small_top + ((k - self.direct.trailing_zeros()) << self.steps_log2) as usize + j + 1
    }

    /// The class serving `size` bytes aligned to `align`, or `None` if none does (larger than
    /// the limit, or the alignment is). The smallest class that is at least `size` and whose
    /// objects are aligned to `align` is the class of `round_up(size, align)`: its size is a
    /// multiple of `align` (the multiples of `align` in a doubling are multiples of the spacing
    /// there when `align` exceeds it, hence class sizes themselves).
    ///
    /// Always inlined: every allocation and free starts here, and the callers' tables are
    /// constants, so `direct` folds into the comparison. Left to the optimiser, the 4 KiB table
    /// kept it out of line, a call and field loads per lookup (5% more instructions on random
    /// actions up to 200 B, `valgrind --tool=callgrind drive budalloc-heap n200 400000`).
    #[inline(always)]
    pub const fn class_of(&self, size: usize, align: usize) -> Option<usize> {
        if size <= self.direct && align <= 16 {
            // The common case, one table read: every class is a multiple of 16 bytes, so
            // aligned to at least 16, and `direct <= limit`. Size 0 reads entry 0, the class of
            // 1 byte.
            return Some(self.small[size.div_ceil(16)] as usize);
        }
        let size = if size == 0 { 1 } else { size };
        if size > self.limit || align > self.limit {
            return None;
        }
        // `size <= limit` and `align <= limit`, both powers of two' multiples: no overflow.
        let rounded = (size + align - 1) & !(align - 1);
        Some(self.class_for_size(rounded))
    }

    /// Class `c`.
    #[inline]
    pub const fn class(&self, c: usize) -> &Class {
        &self.classes[c]
    }

    /// Distinct slab sizes (log2) in increasing order, and how many there are.
    pub const fn slab_sizes(&self) -> ([u32; MAX_CLASSES], usize) {
        let mut sizes = [0u32; MAX_CLASSES];
        let mut n = 0;
        let mut c = 0;
        while c < self.len {
            let log2 = self.classes[c].slab_log2;
            let mut seen = false;
            let mut i = 0;
            while i < n {
                if sizes[i] == log2 {
                    seen = true;
                }
                i += 1;
            }
            if !seen {
                sizes[n] = log2;
                n += 1;
            }
            c += 1;
        }
        (sizes, n)
    }
}
