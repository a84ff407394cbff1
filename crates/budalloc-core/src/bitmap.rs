//! The arena bitmap: a `bitvec` bitset bracketed by two guard keys.
//!
//! In memory it is the seed's `bitmap_t`:
//!
//! ```text
//! front ──► [ key 1 ][ word 0 ][ word 1 ] … [ word n-1 ][ key 2 ]
//! ```
//!
//! What the bits mean is the policy's business; this type only stores them and guards them.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use bitvec::order::Lsb0;
use bitvec::slice::BitSlice;

use crate::{Corruption, GuardKey};

/// The bitset type of every budalloc bitmap.
pub type Bits = BitSlice<usize, Lsb0>;

const WORD: usize = core::mem::size_of::<usize>();

/// Per-process secret mixed into every guard key. A fixed default keeps `no_std` builds
/// deterministic; [`Bitmap::add_key_entropy`] lets a host with a source of randomness stir it.
/// The keys detect corruption (a stray write, an overflow out of the bitset); they are not a
/// defence against an attacker who can read memory.
static KEY_SECRET: AtomicUsize = AtomicUsize::new(0x5bd1_e995_9e37_79b9_u64 as usize);

/// The splitmix64 finaliser: a bijection that spreads every input bit over the output.
const fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A guard-keyed bitset stored in an arena's metadata tail.
#[derive(Debug)]
pub struct Bitmap {
    /// The front key word. Invariant: `words + 2` aligned words from here are valid for reads
    /// and writes and belong to this bitmap alone; word 0 holds `keys[0]`, word `words + 1`
    /// holds `keys[1]` unless the metadata was corrupted.
    front: NonNull<usize>,
    /// Number of bit words between the keys.
    words: usize,
    /// The values the two key words must hold; kept out of the region so that a stray write
    /// cannot change both copies. Invariant: both are odd (never zero) and differ.
    keys: [usize; 2],
}

// SAFETY: a `Bitmap` owns its words exclusively (see `front`); moving it to another thread moves
// that ownership, and it has no shared state besides the atomic `KEY_SECRET`.
unsafe impl Send for Bitmap {}

impl Bitmap {
    /// Stirs `entropy` into the per-process secret from which later arenas derive their keys.
    pub fn add_key_entropy(entropy: usize) {
        let old = KEY_SECRET.load(Ordering::Relaxed) as u64;
        KEY_SECRET.store(mix(old ^ entropy as u64) as usize, Ordering::Relaxed);
    }

    /// Bytes needed for a bitmap of `bits` bits, both keys included.
    pub const fn bytes_for(bits: usize) -> Option<usize> {
        let Some(words) = bits.checked_add(usize::BITS as usize - 1) else { return None };
        let words = words / usize::BITS as usize;
        match words.checked_add(2) {
            Some(w) => w.checked_mul(WORD),
            None => None,
        }
    }

    /// Writes both keys and zeroes the bits.
    ///
    /// # Safety
    /// - `front` must be aligned and valid for reads and writes of `words + 2` `usize` words;
    /// - those words must not be accessed other than through the returned `Bitmap` for as long
    ///   as it lives.
    pub(crate) unsafe fn init(front: NonNull<usize>, words: usize) -> Bitmap {
        let seed = mix(KEY_SECRET.load(Ordering::Relaxed) as u64 ^ front.addr().get() as u64);
        let key1 = (seed as usize) | 1;
        let key2 = (mix(seed ^ 0xa076_1d64_78bd_642f) as usize) | 1;
        let key2 = if key2 == key1 { key1 ^ 2 } else { key2 };
        let bitmap = Bitmap { front, words, keys: [key1, key2] };
        // SAFETY: word 0 lies in the range the caller guarantees valid and aligned.
        unsafe { bitmap.word(0).write(key1) };
        // SAFETY: words 1..=words lie in that range; `write_bytes` zeroes them.
        unsafe { bitmap.word(1).write_bytes(0, words) };
        // SAFETY: word `words + 1` is the last word of that range.
        unsafe { bitmap.word(words + 1).write(key2) };
        bitmap
    }

    /// Pointer to word `i` of the bitmap (0 is the front key), with the bitmap's provenance.
    #[inline]
    fn word(&self, i: usize) -> *mut usize {
        self.front.as_ptr().wrapping_add(i)
    }

    /// Checks both guard keys.
    #[inline]
    pub fn check_keys(&self) -> Result<(), Corruption> {
        let [front, back] = self.key_words();
        if front != self.keys[0] {
            return Err(Corruption::GuardKey { which: GuardKey::Front, addr: self.front.addr().get() });
        }
        if back != self.keys[1] {
            let addr = self.front.addr().get() + (self.words + 1) * WORD;
            return Err(Corruption::GuardKey { which: GuardKey::Back, addr });
        }
        Ok(())
    }

    /// The current contents of the two key words.
    #[inline]
    fn key_words(&self) -> [usize; 2] {
        // SAFETY: word 0 is valid for reads (invariant of `front`).
        let front = unsafe { self.word(0).read() };
        // SAFETY: word `words + 1` is valid for reads (invariant of `front`).
        let back = unsafe { self.word(self.words + 1).read() };
        [front, back]
    }

    /// A 32-bit tag derived from the front key: the arena identity stamped into free headers.
    #[inline]
    pub fn tag(&self) -> u32 {
        (self.keys[0] >> 1) as u32
    }

    /// Bit `i` (as `bits()[i]`, read straight from its word: the hot paths use this). Bits past
    /// the end read as clear.
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        const BITS: usize = usize::BITS as usize;
        self.words().get(i / BITS).is_some_and(|word| word >> (i % BITS) & 1 != 0)
    }

    /// Sets bit `i` to `value` (as `bits_mut().set(i, value)`). Bits past the end are ignored
    /// (never reached: callers index inside the bitmap by construction).
    #[inline]
    pub fn set(&mut self, i: usize, value: bool) {
        const BITS: usize = usize::BITS as usize;
        debug_assert!(i < self.words * BITS, "bit {i} past the bitmap");
        // SAFETY: words 1..=words are valid and exclusively ours (invariant of `front`), and
        // `&mut self` makes this the only access to them.
        let words = unsafe { core::slice::from_raw_parts_mut(self.word(1), self.words) };
        if let Some(word) = words.get_mut(i / BITS) {
            let mask = 1 << (i % BITS);
            if value {
                *word |= mask;
            } else {
                *word &= !mask;
            }
        }
    }

    /// Sets bits `start .. end` to `value`, a word at a time (as
    /// `bits_mut()[start..end].fill(value)`, without bitvec's per-call cost on short ranges).
    #[inline]
    pub fn fill(&mut self, start: usize, end: usize, value: bool) {
        const BITS: usize = usize::BITS as usize;
        debug_assert!(start <= end && end <= self.words * BITS, "bits {start}..{end} past the bitmap");
        // SAFETY: as in `set`.
        let words = unsafe { core::slice::from_raw_parts_mut(self.word(1), self.words) };
        let mut i = start;
        while i < end {
            let (w, low) = (i / BITS, i % BITS);
            let n = (BITS - low).min(end - i);
            let mask = if n == BITS { !0 } else { ((1 << n) - 1) << low };
            if let Some(word) = words.get_mut(w) {
                if value {
                    *word |= mask;
                } else {
                    *word &= !mask;
                }
            }
            i += n;
        }
    }

    /// The first set bit of `start .. end`, or `end` if they are all clear: a word at a time.
    #[inline]
    pub fn next_set(&self, start: usize, end: usize) -> usize {
        self.next_equal(start, end, true)
    }

    /// The first clear bit of `start .. end`, or `end` if they are all set: a word at a time.
    #[inline]
    pub fn next_clear(&self, start: usize, end: usize) -> usize {
        self.next_equal(start, end, false)
    }

    /// The first bit of `start .. end` equal to `value`, or `end`.
    #[inline]
    fn next_equal(&self, start: usize, end: usize, value: bool) -> usize {
        const BITS: usize = usize::BITS as usize;
        if start >= end {
            return end;
        }
        let flip = if value { 0 } else { usize::MAX };
        let words = self.words();
        let last = (end - 1) / BITS;
        let mut w = start / BITS;
        let Some(&first) = words.get(w) else { return end };
        // The bits of the first word from `start` on (as `value` → set), then whole words.
        let mut word = ((first ^ flip) >> (start % BITS)) << (start % BITS);
        loop {
            if word != 0 {
                return (w * BITS + word.trailing_zeros() as usize).min(end);
            }
            w += 1;
            if w > last {
                return end;
            }
            let Some(&next) = words.get(w) else { return end };
            word = next ^ flip;
        }
    }

    /// Where the run of clear bits that ends at `end` (exclusive) starts, looking no lower than
    /// `floor`: the lowest `j >= floor` such that bits `j .. end` are all clear. A word at a
    /// time.
    #[inline]
    pub fn clear_run_start(&self, end: usize, floor: usize) -> usize {
        const BITS: usize = usize::BITS as usize;
        if end <= floor {
            return floor;
        }
        let words = self.words();
        let mut w = (end - 1) / BITS;
        let Some(&last) = words.get(w) else { return end };
        // The bits of the last word below `end`, then whole words down to the one holding
        // `floor`. Invariant: bits `(w + 1) * BITS .. end` are clear.
        let below = (end - 1) % BITS + 1;
        let mut bits = if below == BITS { last } else { last & ((1 << below) - 1) };
        let floor_word = floor / BITS;
        loop {
            if bits != 0 {
                let highest = BITS - 1 - bits.leading_zeros() as usize;
                return (w * BITS + highest + 1).max(floor);
            }
            if w <= floor_word {
                return floor;
            }
            w -= 1;
            let Some(&word) = words.get(w) else { return floor };
            bits = word;
        }
    }

    /// The bits, to read.
    #[inline]
    pub fn bits(&self) -> &Bits {
        BitSlice::from_slice(self.words())
    }

    /// The bits, to change.
    #[inline]
    pub fn bits_mut(&mut self) -> &mut Bits {
        // SAFETY: words 1..=words are valid and exclusively ours (invariant of `front`), and
        // `&mut self` makes this the only live reference to them.
        let words = unsafe { core::slice::from_raw_parts_mut(self.word(1), self.words) };
        BitSlice::from_slice_mut(words)
    }

    /// The bit words (keys excluded).
    #[inline]
    fn words(&self) -> &[usize] {
        // SAFETY: words 1..=words are valid for reads and only changed through `&mut self`.
        unsafe { core::slice::from_raw_parts(self.word(1), self.words) }
    }

    /// The whole bitmap as it lies in memory, keys included: what a metadata snapshot compares.
    pub fn raw_words(&self) -> &[usize] {
        // SAFETY: the `words + 2` words from `front` are valid for reads (invariant of `front`)
        // and only changed through `&mut self`.
        unsafe { core::slice::from_raw_parts(self.front.as_ptr(), self.words + 2) }
    }

    /// Bytes of memory the bitmap occupies, keys included.
    #[inline]
    pub fn footprint(&self) -> usize {
        (self.words + 2) * WORD
    }

    /// Address of the front key word (where the bitmap starts in memory).
    #[inline]
    pub fn addr(&self) -> usize {
        self.front.addr().get()
    }
}
