//! [`Classes`]: size classes in slabs over any [`RawAlloc`] backend.

use core::alloc::Layout;
use core::num::NonZeroUsize;
use core::ptr::NonNull;

use budalloc_core::{
    move_block, AllocError, Claim, Corruption, FreeError, RawAlloc, RegionError, SizeClasses, Stats,
};

use crate::slab::{Header, Slab};
use crate::table::{Class, Table, MAX_CLASSES, SLAB_MIN};

/// The default small-object limit: 1 KiB (20 classes, slabs of 4 to 32 KiB).
///
/// Chosen by measurement rather than the 32 KiB first planned. Heap efficiency (live requested
/// bytes / 16 MiB at the first failure, mean and worst of 8 seeds; the issue's two workloads:
/// talc's recipe, and fill-to-half + 50 000 random actions + fill), over
/// `Buddy<16, { 1 << 30 }, 1, true>`, 2026-11-26:
///
/// | `LIMIT` | talc recipe | churn |
/// |---|---|---|
/// | exact-fit buddy alone | 90.6 % (88.4) | 90.5 % (89.9) |
/// | 1 KiB | 91.0 % (89.9) | 91.3 % (91.1) |
/// | 4 KiB | 89.5 % (86.4) | 90.2 % (89.8) |
/// | 8 KiB | 86.8 % (85.2) | 86.7 % (86.2) |
/// | 16 KiB | 81.5 % (79.2) | 83.0 % (81.4) |
/// | 32 KiB | 68.9 % (65.8) | 80.3 % (78.7) |
///
/// Above 1 KiB the exact-fit buddy wastes less than 16 bytes per block where a class rounds up
/// by 8 % on average, and the large classes' slabs (up to 1 MiB for 32 KiB objects, to keep
/// their header and tail under 1/32) strand memory in partly used slabs; flushing the cached
/// empty slabs before failing changed the figures by under 0.5 point. Slabs of 1/8 waste
/// instead of 1/32 lift the 32 KiB row to 80.6 / 81.5 % and leave 1 KiB where it is.
///
/// The best limit depends on the backend: over an exact-fit buddy with 64-byte fragments,
/// 4 KiB keeps both workloads above 90 % (90.2 / 91.7 %, against 91.6 / 93.0 % with 1 KiB)
/// and spares requests up to 4 KiB the buddy's best-fit search (16 times faster on blocks of
/// 16 B – 4 KiB).
pub const DEFAULT_LIMIT: usize = 1024;

/// Index of the per-class lists in [`Classes::lists`]: the slabs allocations take objects from.
pub(crate) const PARTIAL: usize = 0;
/// See [`PARTIAL`]: every slab of the class (linked through `next_slab` / `prev_slab`; the
/// other two lists through `next` / `prev`).
pub(crate) const ALL: usize = 1;
/// See [`PARTIAL`]: the cached empty slabs.
pub(crate) const EMPTY: usize = 2;

/// Bits per bitmap word.
const BITS: usize = usize::BITS as usize;

/// Entries of [`Classes::held`], the cache of slabs a free recognises without asking the
/// backend (a power of two, two per set): 8 KiB of the policy's struct. A free into a slab the
/// cache does not hold takes the full path, which asks the backend whether a marked block
/// starts at the slab's base (about 290 instructions more). A heap of 5 000 live objects of
/// 64 B to 1 KiB among as many holes (`drive budalloc-heap c-free 200000`) holds more slabs
/// than 128 entries did: 197 thousand of its 200 thousand timed frees asked the backend, and
/// 46 thousand with 512 entries, none with 1024. Its frees took 0.72 of the time (24–25 ns
/// against 35–48 ns, interleaved runs), and batches of 1000 random allocations and frees of
/// 16 B to 4 KiB (`drive budalloc-heap b`) 0.93.
pub(crate) const HELD: usize = 1024;

/// The default heap secret, stirred with the first slab's address (see `Classes::secret`).
const SECRET: u64 = 0x2545_f491_4f6c_dd1d;

/// The splitmix64 finaliser: a bijection that spreads every input bit over the output.
const fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What a pointer freed with a class layout is.
#[derive(Clone, Copy, Debug)]
enum Found {
    /// Object `index` of `slab`.
    Object(Slab, usize),
    /// A block of the backend allocated with a class layout when no slab could be had (see
    /// `allocate_fallback`).
    Block,
}

/// What the fast path of a free found ([`Classes::push_fast`]).
enum Pushed {
    /// The object is free.
    Done,
    /// Object `index` of the slab, allocated, checked; its free moves the slab to another list
    /// (nothing changed yet).
    Moves(Slab, usize),
    /// Not an object the fast path knows (nothing changed).
    Unknown,
}

/// A doubly linked list of slabs, through their headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct List {
    /// The first slab, or `None`.
    pub head: Option<Slab>,
    /// How many slabs the list holds.
    pub len: usize,
}

impl List {
    const EMPTY: List = List { head: None, len: 0 };
}

/// Size classes over a backend `B`: small objects from slabs, everything else from `B`.
///
/// - `LIMIT`: the largest class, in bytes (a power of two from 1 KiB to 512 KiB; default
///   [`DEFAULT_LIMIT`], 1 KiB, chosen by measurement: see there). Requests larger than
///   `LIMIT`, or aligned to more than `LIMIT`, go straight to `B`.
/// - `STEPS`: classes per doubling (a power of two up to 16; default 4, as jemalloc): the
///   rounding waste of a class is below `1 / STEPS` of its size (the table and its measured
///   waste are in the [`table`](crate::table) docs and the crate README).
/// - `CACHE`: how many empty slabs each class keeps instead of returning them to `B` (at least
///   1, default 1): a class that empties and refills a slab in turn does not go to `B` each
///   time. Besides these, a class's last partial slab stays partial when it empties, so a class
///   holds at most `CACHE + 1` empty slabs. [`RawAlloc::flush`] returns them all, and so does
///   [`RawAlloc::release_spare`], which the frontends call when a request runs out of memory
///   before they try it again: a heap whose objects were all freed serves any request its
///   region could.
///
/// A slab of a class is one block of `B` of a power-of-two size `S`, allocated as `(S, S)` so
/// that its base is `addr & !(S - 1)` for any address inside it. Its header (seal, class,
/// free count, list links and a bitmap of free objects) sits at its start, so no object starts
/// at a slab base; objects are never read or written by the allocator.
///
/// | operation | cost |
/// |---|---|
/// | allocate a small object | O(1): class lookup, pop from the class's first partial slab (a bit scan from a hint) |
/// | free a small object | O(1): slab base by masking; if it is not the class's current or last-freed-into slab nor in a 1024-entry cache of slabs held, a metadata-only `B::is_marked` of its base (`B::validate` with a `B` that keeps no marks); seal and bit checks |
/// | grow / shrink | in place within a class (or by `B` for its blocks); otherwise the old block is checked once, the new one allocated, the bytes copied, and the old one freed from that check |
/// | large allocate / free | `B`'s, plus (free) `B::is_marked` when the block has the size and alignment of a slab (slabs are marked blocks of `B`; with a `B` that keeps no marks, an O(slabs of that size) walk) |
///
/// Bad `LIMIT` / `STEPS` / `CACHE` fail the build when [`Classes::new`] is instantiated:
///
/// ```compile_fail
/// # use budalloc_classes::Classes;
/// # use budalloc_buddy::Buddy;
/// let heap: Classes<Buddy, 3000> = Classes::new(Buddy::new()); // LIMIT not a power of two
/// ```
pub struct Classes<B, const LIMIT: usize = DEFAULT_LIMIT, const STEPS: usize = 4, const CACHE: usize = 1> {
    /// The backing policy: slabs and large blocks come from it. Invariant: every slab in
    /// `lists` is a block currently allocated from it with the slab layout of its class.
    pub(crate) backend: B,
    /// Per list kind ([`PARTIAL`], [`ALL`], [`EMPTY`]) and class: the class's slabs, doubly
    /// linked through their headers (the seed's `fragHeaders[N_ALLOCATION_SIZES]`).
    /// Invariants: `lists[ALL][c]` holds every slab of class `c` this heap holds;
    /// `lists[PARTIAL][c]` those with some but not all objects free, and at most one slab with
    /// every object free (the class's last partial slab, kept when it emptied, see
    /// `release`); `lists[EMPTY][c]` the other slabs with every object free, at most `CACHE`
    /// of them, newest first. A full slab (no object free) is in neither of these two, so a
    /// slab that fills or takes back its first free object touches no neighbour of a list it
    /// leaves: it leaves none. Every slab is in `ALL` and in at most one other list, carries
    /// the seal of its address and class, and its `free` count is the number of set bits of
    /// its bitmap. `len` is the length of each list.
    pub(crate) lists: [[List; MAX_CLASSES]; 3],
    /// Bytes in live objects, counted at their class size. Invariant: the sum over held slabs
    /// of `(objects - free) * size`.
    pub(crate) object_bytes: usize,
    /// Bytes of the slabs held. Invariant: the sum over held slabs of their slab size.
    pub(crate) slab_bytes: usize,
    /// Bytes of the slabs held that no object can use (header, padding, tail). Invariant: the
    /// sum over held slabs of their class's `slab_waste()`.
    pub(crate) slab_waste: usize,
    /// The secret mixed into every seal; a fixed value until the first slab is taken, then
    /// stirred once with that slab's address (`keyed` set). Invariant: `keyed` is set whenever
    /// a slab is held.
    pub(crate) secret: u64,
    /// Whether `secret` was stirred.
    pub(crate) keyed: bool,
    /// Per class: the slab an object was last freed into, if we still hold it. A free into it
    /// (or into the head of the class's partial list) is known to be a free into one of our
    /// slabs without asking the backend. Invariant: `None` or a slab in one of class `c`'s
    /// lists.
    pub(crate) recent: [Option<Slab>; MAX_CLASSES],
    /// A two-way set-associative cache of slabs we hold, any class, each in one of the two
    /// entries of set [`held_set`] of its base and size (the one used last first): a free into
    /// one of them is known to be a free into one of our slabs without asking the backend (the
    /// first place a free looks, see [`Self::held_object`] and [`Self::known_slab`]).
    /// Filled when a slab is taken from the backend and when a free validated one through the
    /// backend; an entry is dropped when its slab goes back.
    /// Invariant: every `Some` entry is a slab in one of our lists, in its own set, and no
    /// slab is in two entries.
    pub(crate) held: [Option<Slab>; HELD],
    /// Some class may hold a slab with every object free, cached or kept in its partial list
    /// (set when a free empties a slab; cleared when [`RawAlloc::release_spare`] or
    /// [`RawAlloc::flush`] gave every such slab back). Invariant: set whenever a class holds
    /// such a slab, so that `release_spare` costs one test when there is nothing to give, as a
    /// program that meets out-of-memory again and again would otherwise pay a walk over the
    /// classes each time.
    pub(crate) spare: bool,
}

/// The first of the two entries of [`Classes::held`] that a slab of size `2^log2` at `base`
/// may take (the set; the other entry is the next one): its address in units of its own size,
/// plus an offset per slab size, modulo the number of sets. Slabs of one size that sit together
/// (as a heap's slabs tend to) never evict one another until there are [`HELD`] of them,
/// whatever their size; in units of the smallest slab instead, 16 KiB slabs used only a
/// quarter of the entries and 64 KiB ones a sixteenth.
///
/// Two ways, because a heap's slabs do not sit together for long: random actions of up to
/// 2000 B hold a few hundred slabs of 4 to 32 KiB spread over the region, and with one entry
/// per slab 14% of the frees found their entry taken by another slab (34 000 of 250 000,
/// `drive budalloc-heap d2000 400000`), still 10% with 4096 entries: two hot slabs that share
/// an entry evict each other on every free.
#[inline]
pub(crate) const fn held_set(base: usize, log2: u32) -> usize {
    ((base >> log2).wrapping_add(log2 as usize * HELD_SPREAD)) % (HELD / 2) * 2
}

/// Sets between the sets of consecutive slab sizes in [`held_set`] (odd, so the sizes
/// interleave rather than share a run of sets).
const HELD_SPREAD: usize = 13;

// SAFETY: a `Classes` owns its slabs exclusively (they are blocks of its backend, which it
// owns); the raw pointers it holds point into those blocks only. Moving it to another thread
// moves that ownership with the backend, so it is `Send` exactly when the backend is.
unsafe impl<B: Send, const LIMIT: usize, const STEPS: usize, const CACHE: usize> Send
    for Classes<B, LIMIT, STEPS, CACHE>
{
}

impl<B: RawAlloc + Default, const LIMIT: usize, const STEPS: usize, const CACHE: usize> Default
    for Classes<B, LIMIT, STEPS, CACHE>
{
    fn default() -> Self {
        Self::new(B::default())
    }
}

impl<B: RawAlloc, const LIMIT: usize, const STEPS: usize, const CACHE: usize>
    Classes<B, LIMIT, STEPS, CACHE>
{
    /// The class table; evaluating it fails the build for a bad `LIMIT`, `STEPS` or `CACHE`.
    pub const TABLE: Table = {
        // The newest empty slab stays cached and the oldest goes back when the cache is full:
        // the free that empties a slab never hands that slab (holding the object just freed,
        // which its owner may still reference) back to the backend, which may write into it.
        assert!(CACHE >= 1, "CACHE must be at least 1");
        Table::new(LIMIT, STEPS)
    };

    /// Distinct slab sizes (log2), for the diagnosis of bad frees.
    const SLAB_SIZES: ([u32; MAX_CLASSES], usize) = Self::TABLE.slab_sizes();

    /// Size classes over `backend`, holding no slab yet.
    pub const fn new(backend: B) -> Self {
        let _ = Self::TABLE;
        Classes {
            backend,
            lists: [[List::EMPTY; MAX_CLASSES]; 3],
            object_bytes: 0,
            slab_bytes: 0,
            slab_waste: 0,
            secret: SECRET,
            keyed: false,
            recent: [None; MAX_CLASSES],
            held: [None; HELD],
            spare: false,
        }
    }

    /// The backing policy.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backing policy, to change (claim memory). Freeing a slab of ours through it breaks
    /// this heap's invariants (it is `unsafe` there anyway).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// The seal of a slab at `base` of class `c`: the secret, the address and the class (in the
    /// top 16 bits, above any address) mixed by one odd multiply and one xor-shift, both
    /// bijections, so any change of address or class changes the seal. Every allocation and
    /// free computes one; the full `mix` would cost twice the instructions without being harder
    /// to invert (a bijection too, it hides the secret from no one who reads a header and knows
    /// its address). The seal detects damage and stray pointers, not a deliberate forgery.
    #[inline]
    pub(crate) fn seal(&self, base: usize, c: usize) -> usize {
        let z = (self.secret ^ base as u64 ^ (c as u64).rotate_right(16)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (z ^ (z >> 32)) as usize
    }

    /// The class table.
    #[inline]
    fn class(c: usize) -> &'static Class {
        const { &Self::TABLE }.class(c)
    }

    /// The slab at `addr` with the backend's provenance, if the backend holds that address.
    #[inline]
    fn rebased(&self, addr: NonZeroUsize) -> Option<NonNull<u8>> {
        self.backend.rebase(NonNull::<u8>::dangling().with_addr(addr))
    }

    /// The slab a link names, checked: an address the backend holds, aligned to the class's slab
    /// size, carrying the seal of class `c`. `Ok(None)` for the end of a list.
    fn linked(&self, addr: usize, c: usize) -> Result<Option<Slab>, Corruption> {
        let Some(nz) = NonZeroUsize::new(addr) else { return Ok(None) };
        let bad = Corruption::Header { addr };
        let base = self.rebased(nz).ok_or(bad)?;
        if !addr.is_multiple_of(Self::class(c).slab_size()) {
            return Err(bad);
        }
        // SAFETY: `base` lies in the backend's memory (rebased), word-aligned; a link of our
        // header names a slab of ours, whose first word is its seal (a damaged link may name
        // other memory of the backend: the residual case of the crate docs).
        if unsafe { Slab::seal_at(base) } != self.seal(addr, c) {
            return Err(bad);
        }
        // SAFETY: sealed for class `c` at this address: a slab of ours.
        Ok(Some(unsafe { Slab::new(base) }))
    }

    /// The neighbours of `slab` (header `h`) in list `kind` of class `c`, checked: each is a
    /// sealed slab of the class, other than `slab`, that links back to it (a link damaged into
    /// the address of another slab of ours is caught too, as glibc's safe unlinking catches
    /// it), and the slab has no predecessor exactly when it is the list's head.
    fn links(
        &self,
        kind: usize,
        c: usize,
        slab: Slab,
        h: &Header,
    ) -> Result<(Option<Slab>, Option<Slab>), Corruption> {
        let all = kind == ALL;
        let (prev, next) = h.links(all);
        let prev = self.linked(prev, c)?;
        let next = self.linked(next, c)?;
        // A slab linked to itself would pass the back-link test; it is damage too.
        let back = |neighbour: Option<Slab>, of: fn((usize, usize)) -> usize| {
            neighbour.is_none_or(|n| n != slab && of(n.get().links(all)) == slab.addr())
        };
        let head_ok = prev.is_none() == (self.lists[kind][c].head == Some(slab));
        if !head_ok || !back(prev, |(_, next)| next) || !back(next, |(prev, _)| prev) {
            return Err(Corruption::Header { addr: slab.addr() });
        }
        Ok((prev, next))
    }

    /// The successor of `slab` (header `h`), the head of list `kind` (not [`ALL`]) of class `c`,
    /// checked as [`Self::links`] checks it: the short form for taking the head off a list.
    #[inline]
    fn next_of_head(
        &self,
        kind: usize,
        c: usize,
        slab: Slab,
        h: &Header,
    ) -> Result<Option<Slab>, Corruption> {
        debug_assert!(kind != ALL && self.lists[kind][c].head == Some(slab) && h.prev == 0);
        let next = self.linked(h.next, c)?;
        if next.is_some_and(|n| n == slab || n.get().prev != slab.addr()) {
            return Err(Corruption::Header { addr: slab.addr() });
        }
        Ok(next)
    }

    /// Takes the slab with header `h` out of list `kind` of class `c`, given its checked
    /// neighbours. Writes only the neighbours' headers (and the slab's links in `h` stay
    /// as they were).
    fn unlink(&mut self, kind: usize, c: usize, h: &Header, prev: Option<Slab>, next: Option<Slab>) {
        let all = kind == ALL;
        let (h_prev, h_next) = h.links(all);
        match prev {
            Some(p) => {
                let mut ph = p.get();
                ph.set_next(all, h_next);
                p.put(ph);
            }
            None => self.lists[kind][c].head = next,
        }
        if let Some(n) = next {
            let mut nh = n.get();
            nh.set_prev(all, h_prev);
            n.put(nh);
        }
        self.lists[kind][c].len -= 1;
    }

    /// Puts `slab` at the front of list `kind` of class `c`, setting its links in `h` (which
    /// the caller writes back).
    fn push(&mut self, kind: usize, c: usize, slab: Slab, h: &mut Header) {
        let all = kind == ALL;
        let list = &mut self.lists[kind][c];
        if let Some(old) = list.head {
            let mut oh = old.get();
            oh.set_prev(all, slab.addr());
            old.put(oh);
        }
        h.set_prev(all, 0);
        h.set_next(all, list.head.map_or(0, Slab::addr));
        list.head = Some(slab);
        list.len += 1;
    }

    /// Hands back to the backend `slab` of class `c`, in list `kind` ([`PARTIAL`] or
    /// [`EMPTY`]) with every object free, and takes it off its lists. Checks both pairs of
    /// links before the first change; on `Err` nothing changed.
    fn give_back(&mut self, kind: usize, c: usize, slab: Slab) -> Result<(), FreeError> {
        let h = slab.get();
        let (prev, next) = self.links(kind, c, slab, &h)?;
        let (prev_slab, next_slab) = self.links(ALL, c, slab, &h)?;
        // SAFETY: a slab of our lists is a block currently allocated from the backend with the
        // slab layout (invariant of `lists`); every object of it is free, so no live object
        // lies in it.
        unsafe { self.backend.try_deallocate(slab.ptr(), Self::class(c).slab_layout) }?;
        self.unlink(kind, c, &h, prev, next);
        self.unlink(ALL, c, &h, prev_slab, next_slab);
        self.forget(c, slab);
        Ok(())
    }

    /// The fast path of an allocation of class `c`: the first free object of the word the
    /// class's first partial slab hints at, when that slab's header checks (seal, class, head
    /// of its list) and the allocation leaves it partial. `None`, with nothing changed, in
    /// every other case: [`Self::allocate_object`] then does it all, reporting what it finds.
    ///
    /// Kept apart from `allocate_object` so that the common case is a short straight line with
    /// no call and few registers, inlined into the frontend. With this path, [`Self::push_fast`]
    /// and [`Self::resize_fast`], a 64-byte allocate-and-free pair takes 256 instructions
    /// (harness and `Local` included) where the full paths took 279, and a reallocation between
    /// classes about 320 where it took 355 (`valgrind --tool=callgrind drive budalloc-heap a
    /// 400000`, and `d200 400000`, less the region's set-up, 2026-12-07). Time, interleaved
    /// runs against the build before (`drive budalloc-heap`, 9 pairs of runs, medians): the
    /// pair 5% faster, random actions up to 2000 B 4% faster; with reallocations, and up to
    /// 200 B, level (within 1%). Builds along the way ranged from 5% slower to 6% faster on
    /// the pair, whose time moves with code alignment.
    #[inline(always)]
    fn pop_fast(&mut self, c: usize) -> Option<NonNull<[u8]>> {
        let slab = self.lists[PARTIAL][c].head?;
        let class = Self::class(c);
        let h = slab.get();
        let i = usize::from(h.hint);
        let usual = h.seal == self.seal(slab.addr(), c)
            && usize::from(h.class) == c
            && h.free > 1
            && h.prev == 0
            && i < class.words;
        if !usual {
            return None;
        }
        let word = slab.word(i);
        let index = i * BITS + word.trailing_zeros() as usize;
        if word == 0 || index >= class.objects {
            return None;
        }
        let rest = word & (word - 1);
        slab.set_word(i, rest);
        let mut h = h;
        h.free -= 1;
        // Every word up to `i` is now zero if `rest` is: the next allocation starts past it.
        if rest == 0 && i + 1 < class.words {
            h.hint += 1;
        }
        slab.put_counts(&h);
        self.object_bytes += class.size;
        let ptr = slab.ptr().map_addr(|a| a.saturating_add(class.first + index * class.size));
        Some(NonNull::slice_from_raw_parts(ptr, class.size))
    }

    /// The allocated object of class `c` at `ptr`, if it lies in a slab the
    /// [`held`](Self::held) cache knows: the slab, the object's index and the slab's header,
    /// checked as [`Self::object_at`] checks them. Reads the cache entry, then that slab's
    /// header and bitmap word; changes nothing. `None` says nothing about `ptr`: the fast paths
    /// then leave it to the full ones.
    #[inline(always)]
    fn held_object(&self, ptr: NonNull<u8>, c: usize) -> Option<(Slab, usize, Header)> {
        let class = Self::class(c);
        let addr = ptr.addr().get();
        let slab = self.held_slab(addr & !(class.slab_size() - 1), class.slab_log2)?;
        self.object_at(slab.ptr(), addr, c)
    }

    /// The fast path of a free of `ptr` with a layout of class `c`: an allocated object of a
    /// slab of the class that the [`held`](Self::held) cache knows, whose header checks (the
    /// checks of [`Self::object_at`]). Freed here if its slab stays in its list
    /// ([`Pushed::Done`]); if the slab moves to another list, [`Pushed::Moves`] and nothing
    /// changed ([`Self::release_moving`] does it). [`Pushed::Unknown`], with nothing changed, in
    /// every other case (a slab the cache does not hold, a block of the backend, a double
    /// free, damage): [`Self::free_with_class`] then does it all, reporting what it finds.
    #[inline(always)]
    fn push_fast(&mut self, ptr: NonNull<u8>, c: usize) -> Pushed {
        match self.held_object(ptr, c) {
            Some((slab, index, h)) if self.release_in_place(c, slab, index, h) => Pushed::Done,
            Some((slab, index, _)) => Pushed::Moves(slab, index),
            None => Pushed::Unknown,
        }
    }

    /// Allocates an object of class `c` for `layout`.
    #[inline]
    fn allocate_object(&mut self, c: usize, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let slab = match self.lists[PARTIAL][c].head {
            Some(slab) => slab,
            None => self.refill(c, layout)?,
        };
        let class = Self::class(c);
        let mut h = slab.get();
        let corrupt = || AllocError::Corrupted(Corruption::Header { addr: slab.addr() });
        if h.seal != self.seal(slab.addr(), c) || usize::from(h.class) != c || h.free == 0 || h.prev != 0 {
            return Err(corrupt());
        }
        // The first free object at or after the hint.
        let mut i = h.hint as usize;
        let word = loop {
            if i >= class.words {
                return Err(corrupt());
            }
            let word = slab.word(i);
            if word != 0 {
                break word;
            }
            i += 1;
        };
        let index = i * BITS + word.trailing_zeros() as usize;
        if index >= class.objects {
            return Err(corrupt());
        }
        // A slab that fills leaves the partial list (a full slab is in no list but `ALL`):
        // check its successor before changing anything.
        let next = if h.free == 1 {
            Some(self.next_of_head(PARTIAL, c, slab, &h).map_err(AllocError::Corrupted)?)
        } else {
            None
        };
        slab.set_word(i, word & (word - 1));
        h.hint = i as u16;
        h.free -= 1;
        match next {
            Some(next) => {
                self.unlink(PARTIAL, c, &h, None, next);
                h.next = 0;
                slab.put_counts(&h);
                slab.put_links(&h);
            }
            None => slab.put_counts(&h),
        }
        self.object_bytes += class.size;
        let ptr = slab.ptr().map_addr(|a| a.saturating_add(class.first + index * class.size));
        Ok(NonNull::slice_from_raw_parts(ptr, class.size))
    }

    /// Makes a partial slab of class `c` available: the newest cached empty slab, or a new one
    /// from the backend. On `Err` nothing changed.
    #[cold]
    #[inline(never)]
    fn refill(&mut self, c: usize, layout: Layout) -> Result<Slab, AllocError> {
        let class = Self::class(c);
        if let Some(slab) = self.lists[EMPTY][c].head {
            let mut h = slab.get();
            if h.seal != self.seal(slab.addr(), c) || usize::from(h.class) != c || h.prev != 0 {
                return Err(AllocError::Corrupted(Corruption::Header { addr: slab.addr() }));
            }
            let next = self.next_of_head(EMPTY, c, slab, &h)?;
            self.unlink(EMPTY, c, &h, None, next);
            self.push(PARTIAL, c, slab, &mut h);
            slab.put(h);
            return Ok(slab);
        }
        // Marked, so that a large block's free tells it from this slab without a walk.
        let block = self.backend.allocate_marked(class.slab_layout).map_err(|e| match e {
            AllocError::OutOfMemory { .. } => {
                AllocError::OutOfMemory { size: layout.size(), block: class.slab_size() }
            }
            other => other,
        })?;
        let block = block.cast::<u8>();
        let base = self.backend.rebase(block).unwrap_or(block);
        debug_assert_eq!(base.addr().get() % class.slab_size(), 0, "the backend misaligned a slab");
        if !self.keyed {
            // No slab is held, so no seal depends on the secret yet.
            self.secret = mix(self.secret ^ base.addr().get() as u64);
            self.keyed = true;
        }
        // SAFETY: `base` is a block the backend just gave us for `(S, S)`: S bytes, aligned to
        // S, ours alone; the header and bitmap (`first <= S`) lie inside.
        let slab = unsafe { Slab::new(base) };
        slab.init(self.seal(slab.addr(), c), c, class.objects, class.words);
        let mut h = slab.get();
        self.push(PARTIAL, c, slab, &mut h);
        self.push(ALL, c, slab, &mut h);
        slab.put(h);
        self.hold(c, slab);
        self.slab_bytes += class.slab_size();
        self.slab_waste += class.slab_waste();
        Ok(slab)
    }

    /// A request of class `c` whose slab the backend cannot give: the backend serves it
    /// itself, as it would a large one, with the class's layout ([`Self::backend_layout`]), so
    /// the block holds the class size like an object of the class. The free with any layout of
    /// the class finds no object there and asks the backend, which recognises its block. (A
    /// deviation from "classes serve small requests": without it, a heap whose largest free
    /// block is smaller than a class's slab fails requests that the backend could serve, and a
    /// small heap fails early.)
    #[cold]
    #[inline(never)]
    fn allocate_fallback(&mut self, c: usize) -> Result<NonNull<[u8]>, AllocError> {
        self.backend.allocate(Self::class(c).layout)
    }

    /// The layout the backend knows a block of ours by, for a caller's `layout`: the class's
    /// size with the caller's alignment if `layout` maps to a class (a fallback block, or a
    /// large block shrunk into the classes' range, is kept at its class's size, so any layout of
    /// the class fits it, as it fits an object), else `layout` itself.
    ///
    /// The caller's alignment, not the class's: a backend with coarser blocks than the class
    /// size (64-byte fragments or granules, for a 112-byte class) returns a longer block, which
    /// the caller may then free with any size up to its length, one that maps to a larger
    /// class, whose own alignment (128 bytes) the block need not have. Sizes of one class give
    /// the same block in any backend (both round them up alike); the caller's alignment is the
    /// one the block was asked with.
    #[inline]
    fn backend_layout(layout: Layout) -> Layout {
        match const { &Self::TABLE }.class_of(layout.size(), layout.align()) {
            Some(c) => {
                Layout::from_size_align(Self::class(c).size, layout.align()).unwrap_or(Self::class(c).layout)
            }
            None => layout,
        }
    }

    /// The block at `base` if it may be a slab of size `2^log2` of ours: a marked block of the
    /// backend (a slab of ours, of some size: the caller's seal check tells which), or, with a
    /// backend that cannot tell, a live block of the slab layout (a metadata-only check;
    /// nothing of the block is read).
    #[inline]
    fn live_block(&self, base: usize, log2: u32) -> Option<NonNull<u8>> {
        let ptr = self.rebased(NonZeroUsize::new(base)?)?;
        match self.backend.is_marked(ptr) {
            Some(marked) => marked.then_some(ptr),
            None => {
                let layout = Layout::from_size_align(1 << log2, 1 << log2).ok()?;
                self.backend.validate(ptr, layout).is_ok().then_some(ptr)
            }
        }
    }

    /// Finds the live object `ptr` of class `c` that `layout` (mapping to `c`) fits, or the
    /// backend block allocated for `layout` in its place. Reads the backend's metadata, then the
    /// slab's seal and bitmap; changes nothing.
    #[inline]
    fn locate(&self, ptr: NonNull<u8>, layout: Layout, c: usize) -> Result<Found, FreeError> {
        let addr = ptr.addr().get();
        let class = Self::class(c);
        let base = addr & !(class.slab_size() - 1);
        if addr != base {
            // A slab of one of our lists is live by the invariant of `lists`: no need to ask
            // the backend. Otherwise a live block of the backend at `base` of the slab size
            // (which holds `ptr` too) whose first word is our seal.
            let base = match self.known_slab(base, c) {
                Some(slab) => Some(slab.ptr()),
                None => self.live_block(base, class.slab_log2),
            };
            if let Some((slab, index, _)) = base.and_then(|base| self.object_at(base, addr, c)) {
                return Ok(Found::Object(slab, index));
            }
        }
        self.locate_slow(ptr, layout, c)
    }

    /// The live object of class `c` at `addr` in the live block `base` of the backend (of the
    /// slab size, holding `addr` past its start), if that block is a slab of class `c` and
    /// `addr` the start of one of its allocated objects: the slab, the object's index and the
    /// slab's header. Reads the seal, then the header and the bitmap; changes nothing.
    #[inline(always)]
    fn object_at(&self, base: NonNull<u8>, addr: usize, c: usize) -> Option<(Slab, usize, Header)> {
        let class = Self::class(c);
        // SAFETY: a live block of the backend of the slab size: at least a word, word-aligned.
        // (If it is not one of our slabs, this reads its first word: the residual case of the
        // crate docs.)
        let seal = unsafe { Slab::seal_at(base) };
        if seal != self.seal(base.addr().get(), c) {
            return None;
        }
        // SAFETY: sealed for class `c` at its address: a slab of ours.
        let slab = unsafe { Slab::new(base) };
        let h = slab.get();
        // Below `first` (the slab's base included) the offset wraps to a huge value, whose
        // index fails one of the range tests.
        let offset = (addr - slab.addr()).wrapping_sub(class.first);
        let index = class.index_of(offset);
        let live = usize::from(h.class) == c
            && index < class.objects
            && index.wrapping_mul(class.size) == offset
            && !slab.is_free(index);
        live.then_some((slab, index, h))
    }

    /// The slab at `base`, if it is one that class `c`'s free path knows without asking the
    /// backend: a slab of the [`held`](Self::held) cache (of any class: the caller checks the
    /// seal, which covers it), the head of its partial list, or the slab last freed into.
    ///
    /// The cache is asked first: it holds nearly every slab, so that test almost always
    /// succeeds and the processor predicts it, where random frees find the partial head only
    /// some of the time and mispredict the test about once in two frees. Asking the cache
    /// first took a quarter of the mispredicted branches out of 400 000 random actions up to
    /// 200 B (`valgrind --tool=cachegrind --branch-sim=yes drive budalloc-heap n200`) and 2%
    /// of the instructions; time per action fell 6% without reallocations and 5% with them
    /// (`drive budalloc-heap n200` / `d200`, interleaved runs, 2026-12-07). The 64-byte pair,
    /// whose slab is always the partial head, took 13.1 ns against 14.8 before in back-to-back
    /// criterion runs; its time moves with code alignment (one `drive` build put it at 16 ns,
    /// and 12.8 ns built with `-x86-branches-within-32B-boundaries`). Since then the fast paths
    /// ask the cache alone ([`Self::held_object`]) and leave every miss to the full paths,
    /// which look here through [`Self::locate`].
    #[inline]
    fn known_slab(&self, base: usize, c: usize) -> Option<Slab> {
        let known = |slab: &Slab| slab.addr() == base;
        self.held_slab(base, Self::class(c).slab_log2)
            .or_else(|| self.lists[PARTIAL][c].head.filter(known))
            .or_else(|| self.recent[c].filter(known))
    }

    /// Remembers `slab`, one of ours of class `c`, in the first entry of its set of the
    /// [`held`](Self::held) cache; the slab that was there moves to the second entry, evicting
    /// the one used least recently.
    #[inline]
    fn hold(&mut self, c: usize, slab: Slab) {
        let set = held_set(slab.addr(), Self::class(c).slab_log2);
        if self.held[set] != Some(slab) {
            // The other entry keeps the slab used before (this one, if it was there: it is
            // not kept twice).
            self.held[set + 1] = self.held[set];
            self.held[set] = Some(slab);
        }
    }

    /// The slab at `base` (aligned to `2^log2`), if the [`held`](Self::held) cache holds it in
    /// set [`held_set`]: a slab of ours, of the size its seal and class tell.
    #[inline(always)]
    fn held_slab(&self, base: usize, log2: u32) -> Option<Slab> {
        let set = held_set(base, log2);
        // Both entries are read at once and one is selected without a branch, then tested
        // once: which entry holds a slab is as good as random, and a branch on it was
        // mispredicted about one free in two (60 000 of 200 000 frees, `valgrind
        // --tool=cachegrind --branch-sim=yes drive budalloc-heap n2000 400000`), which made
        // random actions 7% slower than with one entry per slab (an `if` or an index into the
        // pair compiles to that branch). Indexing the second read by the first comparison
        // instead chained two reads: the 64-byte pair was 7% slower (`drive budalloc-heap a`,
        // 9 interleaved pairs of runs).
        let (first, second) = (self.held[set], self.held[set + 1]);
        let pick = core::hint::select_unpredictable(first.map_or(0, Slab::addr) == base, first, second);
        pick.filter(|slab| slab.addr() == base)
    }

    /// Takes the accounting of slab `slab` of class `c` off this heap, which just handed it
    /// back to the backend (after unlinking it).
    fn forget(&mut self, c: usize, slab: Slab) {
        let class = Self::class(c);
        self.slab_bytes -= class.slab_size();
        self.slab_waste -= class.slab_waste();
        if self.recent[c] == Some(slab) {
            self.recent[c] = None;
        }
        let set = held_set(slab.addr(), class.slab_log2);
        for entry in &mut self.held[set..set + 2] {
            if *entry == Some(slab) {
                *entry = None;
            }
        }
    }

    /// Not an object: a fallback block of the backend, or an error.
    #[cold]
    #[inline(never)]
    fn locate_slow(&self, ptr: NonNull<u8>, layout: Layout, c: usize) -> Result<Found, FreeError> {
        // A block of the backend that validates with the class's size and is not a slab of
        // ours is one `allocate_fallback` handed out (or a large block shrunk into the class).
        let class_layout = Self::backend_layout(layout);
        if self.backend.validate(ptr, class_layout).is_ok() {
            // Unless it is one of our slabs, whose size a class layout may have.
            self.not_a_slab(ptr, class_layout)?;
            return Ok(Found::Block);
        }
        Err(self.diagnose(ptr, layout, c))
    }

    /// Says why `ptr` with `layout` (class `c`) is not a live object that fits (the cold path of
    /// free). Changes nothing.
    #[cold]
    #[inline(never)]
    fn diagnose(&self, ptr: NonNull<u8>, layout: Layout, c: usize) -> FreeError {
        let addr = ptr.addr().get();
        if !self.backend.owns(ptr) {
            return FreeError::ForeignPointer { addr };
        }
        let size = Self::class(c).size;
        match self.slab_view(ptr, layout, size) {
            Some(error) => error,
            None => self.backend_view(ptr, layout, size),
        }
    }

    /// If `ptr` lies in a slab of ours, why it cannot be freed with `layout` (which implies
    /// blocks of `layout_block` bytes). Only slabs found in our own lists are read (O(slabs) per
    /// slab size: error paths only). Changes nothing.
    fn slab_view(&self, ptr: NonNull<u8>, layout: Layout, layout_block: usize) -> Option<FreeError> {
        let addr = ptr.addr().get();
        let (sizes, n) = Self::SLAB_SIZES;
        for &log2 in &sizes[..n] {
            let base = addr & !((1 << log2) - 1);
            let Some(block) = self.live_block(base, log2) else { continue };
            if !self.holds_slab(base, log2) {
                continue; // a block of someone else's
            }
            // SAFETY: one of our slabs (found in our lists), live in the backend: its header is
            // ours to read.
            let seal = unsafe { Slab::seal_at(block) };
            let class = (0..Self::TABLE.len)
                .find(|&k| Self::class(k).slab_log2 == log2 && seal == self.seal(base, k));
            return Some(match class {
                // SAFETY: as above.
                Some(k) => self.classify(unsafe { Slab::new(block) }, k, addr, layout, layout_block),
                None => FreeError::Corrupted(Corruption::Header { addr: base }),
            });
        }
        None
    }

    /// A backend's rejection of `ptr` with a layout routed to it, in this layer's terms: memory
    /// of a slab of ours is no block the caller holds (the backend sees one live block there).
    #[cold]
    #[inline(never)]
    fn reclassify(&self, ptr: NonNull<u8>, layout: Layout, error: FreeError) -> FreeError {
        match error {
            FreeError::ForeignPointer { .. } | FreeError::Corrupted(_) => error,
            _ => {
                let layout_block = self.backend.usable_size(layout).unwrap_or(0);
                self.slab_view(ptr, layout, layout_block).unwrap_or(error)
            }
        }
    }

    /// The error for `addr` freed with `layout` (implying blocks of `layout_block` bytes) where
    /// it lies in `slab` of class `k`.
    fn classify(&self, slab: Slab, k: usize, addr: usize, layout: Layout, layout_block: usize) -> FreeError {
        let h = slab.get();
        if usize::from(h.class) != k {
            return FreeError::Corrupted(Corruption::Header { addr: slab.addr() });
        }
        let class = Self::class(k);
        let offset = addr - slab.addr();
        let index = class.index_of(offset.wrapping_sub(class.first));
        // Where a block of the layout could have been (an object, or a fallback block of the
        // backend aligned only as asked), freed memory means a double free.
        let could_be_object = addr & (layout.align() - 1) == 0;
        if offset < class.first || index >= class.objects {
            // In the header or the tail: memory no object uses.
            return if could_be_object {
                FreeError::DoubleFree { addr, size: layout_block }
            } else {
                FreeError::InteriorPointer { addr, block: slab.addr() }
            };
        }
        let start = slab.addr() + class.first + index * class.size;
        if slab.is_free(index) {
            if could_be_object {
                FreeError::DoubleFree { addr, size: class.size }
            } else {
                FreeError::InteriorPointer { addr, block: start }
            }
        } else if start != addr {
            FreeError::InteriorPointer { addr, block: start }
        } else {
            FreeError::LayoutMismatch {
                addr,
                block_size: class.size,
                size: layout.size(),
                align: layout.align(),
                layout_block,
            }
        }
    }

    /// The error for `ptr` freed with a class layout (objects of `layout_block` bytes) where no
    /// slab holds it: what the backend says about the smallest layout there (free memory,
    /// inside or at the start of a block).
    fn backend_view(&self, ptr: NonNull<u8>, layout: Layout, layout_block: usize) -> FreeError {
        let addr = ptr.addr().get();
        let mismatch = |block_size| FreeError::LayoutMismatch {
            addr,
            block_size,
            size: layout.size(),
            align: layout.align(),
            layout_block,
        };
        let probe = Layout::new::<u8>();
        match self.backend.validate(ptr, probe) {
            Err(FreeError::DoubleFree { .. }) if addr & (layout.align() - 1) == 0 => {
                FreeError::DoubleFree { addr, size: layout_block }
            }
            Err(FreeError::DoubleFree { .. }) => FreeError::InteriorPointer { addr, block: addr },
            Err(FreeError::LayoutMismatch { block_size, .. }) => mismatch(block_size),
            Err(other) => other,
            Ok(()) => mismatch(self.backend.usable_size(probe).unwrap_or(0)),
        }
    }

    /// Whether a slab of ours of size `2^log2` starts at `base`, by walking the lists of the
    /// classes with that slab size (O(slabs); cold paths only). Reads only our own headers; a
    /// slab whose seal is damaged is found through its predecessor's link (or the list head).
    /// A damaged seal ends a walk, so all three lists are walked: what one walk misses past the
    /// damage, another may reach.
    pub(crate) fn holds_slab(&self, base: usize, log2: u32) -> bool {
        (0..Self::TABLE.len).filter(|&c| Self::class(c).slab_log2 == log2).any(|c| {
            (0..3).any(|kind| {
                self.slabs(kind, c).any(|s| s.addr() == base || s.get().links(kind == ALL).1 == base)
            })
        })
    }

    /// The slabs of list `kind` of class `c`, front to back, at most `len` of them (a damaged
    /// link ends the walk).
    pub(crate) fn slabs(&self, kind: usize, c: usize) -> impl Iterator<Item = Slab> + '_ {
        let list = self.lists[kind][c];
        let mut at = list.head;
        let mut left = list.len;
        core::iter::from_fn(move || {
            let slab = at.filter(|_| left > 0)?;
            left -= 1;
            at = self.linked(slab.get().links(kind == ALL).1, c).ok().flatten();
            Some(slab)
        })
    }

    /// Rejects `ptr` if it is one of our slabs, which a layout routed to the backend could
    /// otherwise free or resize (a stale pointer to a large block whose memory became a slab of
    /// the same size). Slabs are marked blocks of the backend
    /// ([`RawAlloc::allocate_marked`]), so this reads only metadata, and at most our own header
    /// when a slab does start at `ptr`; with a backend that keeps no marks, it walks the slabs
    /// of that size (O(slabs)) when `ptr` has the size and alignment of one.
    #[inline]
    fn not_a_slab(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        let addr = ptr.addr().get();
        if self.slab_bytes == 0 || !addr.is_multiple_of(SLAB_MIN) {
            return Ok(());
        }
        self.not_a_slab_slow(ptr, layout)
    }

    #[cold]
    #[inline(never)]
    fn not_a_slab_slow(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        let addr = ptr.addr().get();
        let len = match self.backend.usable_size(layout) {
            Ok(len) if len.is_power_of_two() && addr.is_multiple_of(len) => len,
            _ => return Ok(()),
        };
        let log2 = len.trailing_zeros();
        let slab_here = match self.backend.is_marked(ptr) {
            Some(false) => false,
            // A slab of ours starts at `ptr`; of that size, if its sealed header says so (a
            // damaged one is looked for by the walk, which finds it through its neighbour).
            Some(true) => {
                self.sealed_slab_log2(addr).map_or_else(|| self.holds_slab(addr, log2), |l| l == log2)
            }
            None => self.holds_slab(addr, log2),
        };
        if slab_here {
            Err(FreeError::DoubleFree { addr, size: len })
        } else {
            Ok(())
        }
    }

    /// The slab size (log2) of the slab of ours at `base` (a marked block of the backend), from
    /// its header, if the header carries the seal of its address and class.
    fn sealed_slab_log2(&self, base: usize) -> Option<u32> {
        let ptr = self.rebased(NonZeroUsize::new(base)?)?;
        // SAFETY: the backend says a marked block starts at `base`: a slab of ours (we mark
        // nothing else), whose header is ours to read.
        let slab = unsafe { Slab::new(ptr) };
        let h = slab.get();
        let c = usize::from(h.class);
        (c < Self::TABLE.len && h.seal == self.seal(base, c)).then(|| Self::class(c).slab_log2)
    }

    /// Whether freeing an object of a slab of class `c` whose header is `h` moves the slab to
    /// another list: it was full, or it empties (the class's only partial slab stays partial
    /// when it empties, so at most one empty slab sits in a partial list: a class that
    /// allocates and frees one object in turn touches no list and does not take a slab back
    /// from the cache each time). `(was_full, empties)`.
    #[inline]
    fn moves(&self, c: usize, h: &Header) -> (bool, bool) {
        let was_full = h.free == 0;
        let empties =
            h.free as usize + 1 == Self::class(c).objects && (was_full || self.lists[PARTIAL][c].len != 1);
        (was_full, empties)
    }

    /// Whether freeing an object of a slab of class `c` whose header is `h` leaves the slab in
    /// its list: [`Self::moves`] says neither, written out for the fast paths (through `moves`'
    /// pair of flags, inlined, the 64-byte pair took 6 more instructions; called, 16).
    #[inline(always)]
    fn stays(&self, c: usize, h: &Header) -> bool {
        let empties = h.free as usize + 1 == Self::class(c).objects;
        let stays = h.free != 0 && !(empties && self.lists[PARTIAL][c].len != 1);
        debug_assert_eq!(stays, self.moves(c, h) == (false, false));
        stays
    }

    /// Marks object `index` of `slab` (class `c`, header `h`, written back by the caller) free
    /// and counts it out.
    #[inline]
    fn mark_free(&mut self, c: usize, slab: Slab, h: &mut Header, index: usize) {
        let w = index / BITS;
        slab.set_word(w, slab.word(w) | 1 << (index % BITS));
        h.free += 1;
        h.hint = h.hint.min(w as u16);
        self.object_bytes -= Self::class(c).size;
        self.recent[c] = Some(slab);
    }

    /// Frees object `index` of `slab` (class `c`, header `h` as just read), already validated,
    /// if the slab stays in its list (the common case: no link to check, nothing can fail).
    /// `false`, and nothing changed, if it moves (see [`Self::stays`]): [`Self::release`] does
    /// it.
    #[inline(always)]
    fn release_in_place(&mut self, c: usize, slab: Slab, index: usize, h: Header) -> bool {
        if !self.stays(c, &h) {
            return false;
        }
        self.free_staying(c, slab, index, h);
        true
    }

    /// Frees object `index` of `slab` (class `c`, header `h` as just read), validated, whose
    /// slab stays in its list ([`Self::stays`] said so).
    #[inline(always)]
    fn free_staying(&mut self, c: usize, slab: Slab, index: usize, mut h: Header) {
        // The class's only partial slab empties and stays: `release_spare` looks here.
        self.spare |= h.free as usize + 1 == Self::class(c).objects;
        self.mark_free(c, slab, &mut h, index);
        slab.put_counts(&h);
    }

    /// Frees object `index` of `slab` (class `c`), already validated. Moves the slab between
    /// lists; caches it when it empties, returning the oldest cached slab to the backend if the
    /// cache is full. Every check runs before the first change.
    fn release(&mut self, c: usize, slab: Slab, index: usize) -> Result<(), FreeError> {
        if self.release_in_place(c, slab, index, slab.get()) {
            return Ok(());
        }
        self.release_moving(c, slab, index)
    }

    /// The half of [`Self::release`] that moves the slab to another list (the free fills a
    /// full slab's first hole, which only joins the partial list, or empties a slab), out of
    /// line.
    #[inline(never)]
    fn release_moving(&mut self, c: usize, slab: Slab, index: usize) -> Result<(), FreeError> {
        // Read once: the eviction below may relink this slab in `ALL`, but only the counts and
        // the partial or empty links are written back, and those it leaves alone.
        let mut h = slab.get();
        let (was_full, empties) = self.moves(c, &h);
        // A full slab is in no list to leave; a partial one that empties leaves its list.
        let neighbours = if was_full { None } else { Some(self.links(PARTIAL, c, slab, &h)?) };
        if empties && self.lists[EMPTY][c].len >= CACHE {
            // The oldest cached slab goes back: the first change, made only if its checks pass
            // (its lists are not this slab's partial list, so `neighbours` still holds).
            let oldest = self.slabs(EMPTY, c).last().ok_or(Corruption::Header { addr: slab.addr() })?;
            self.give_back(EMPTY, c, oldest)?;
        }
        self.mark_free(c, slab, &mut h, index);
        if let Some((prev, next)) = neighbours {
            self.unlink(PARTIAL, c, &h, prev, next);
        }
        self.spare |= empties;
        self.push(if empties { EMPTY } else { PARTIAL }, c, slab, &mut h);
        slab.put_counts(&h);
        slab.put_links(&h);
        Ok(())
    }

    /// A request no class serves, straight from the backend; out of line, so the small-object
    /// path of `allocate` stays short (no spills of the backend's registers).
    #[inline(never)]
    fn allocate_large(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.backend.allocate(layout)
    }

    /// Frees `ptr` with a layout no class serves: a block of the backend, unless it is one of
    /// our slabs. Inlined, unlike [`Self::allocate_large`] (a tail call to the backend there):
    /// the backend's result is looked at here, so out of line this was one more frame and one
    /// more error returned through memory on every free of a medium block: 26 instructions
    /// per such free of `drive budalloc-heap n30000 400000` (callgrind). The 64-byte pair,
    /// whose free now shares its function with this call, was level in interleaved `drive`
    /// runs and 4–5% slower in criterion runs (see the README's performance section).
    ///
    /// # Safety
    /// As `RawAlloc::try_deallocate`.
    #[inline(always)]
    unsafe fn free_large(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        self.not_a_slab(ptr, layout)?;
        // SAFETY: not a slab of ours; the caller's promise about `ptr` holds for the backend,
        // which holds every block that is not an object.
        unsafe { self.backend.try_deallocate(ptr, layout) }.map_err(|e| self.reclassify(ptr, layout, e))
    }

    /// Frees `ptr` with `layout` of class `c`: an object of any slab of ours, or a fallback
    /// block of the backend; the full path of `try_deallocate`, out of line.
    ///
    /// # Safety
    /// As `RawAlloc::try_deallocate`.
    #[inline(never)]
    unsafe fn free_with_class(
        &mut self,
        ptr: NonNull<u8>,
        layout: Layout,
        c: usize,
    ) -> Result<(), FreeError> {
        match self.locate(ptr, layout, c)? {
            Found::Object(slab, index) => {
                self.release(c, slab, index)?;
                // Still ours: a free hands back only the oldest cached empty slab, never the
                // one it freed into (that one was not in the cache).
                self.hold(c, slab);
                Ok(())
            }
            // SAFETY: a block of the backend that the class's layout fits (validated), not a
            // slab (checked); the caller owns it.
            Found::Block => unsafe { self.backend.try_deallocate(ptr, Self::backend_layout(layout)) },
        }
    }

    /// What `ptr` with `layout` is, checked as a free would check it (changing nothing): an
    /// object of one of our slabs, with its class, or a block of the backend (with the class
    /// its layout maps to, or `usize::MAX` if none: a block has no slab class). With a layout
    /// above the classes only the slab check is made here (`ptr` is no slab's base); the
    /// backend checks the block when it is resized or freed, and its refusal is told in this
    /// layer's terms ([`Self::reclassify`]).
    #[inline]
    fn find(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(Found, usize), FreeError> {
        match const { &Self::TABLE }.class_of(layout.size(), layout.align()) {
            Some(c) => self.locate(ptr, layout, c).map(|found| (found, c)),
            None => {
                self.not_a_slab(ptr, layout)?;
                Ok((Found::Block, usize::MAX))
            }
        }
    }

    /// Shared half of grow and shrink in place, for the block `found` (class `c` if an object)
    /// at `ptr` and `new` of class `new_class` (`None`: no class serves it). `Ok(None)`: an
    /// object whose new layout maps to another class (or to none), which only a move serves
    /// (no error is built: the moving resize does not need one).
    ///
    /// # Safety
    /// `ptr` must be currently allocated from `self`, `old` must fit it and `found` must be what
    /// [`Self::find`] said of it; `new` as the respective `RawAlloc` method requires.
    unsafe fn resize_found(
        &mut self,
        ptr: NonNull<u8>,
        (found, c): (Found, usize),
        old: Layout,
        (new, new_class): (Layout, Option<usize>),
    ) -> Result<Option<NonNull<[u8]>>, AllocError> {
        match found {
            Found::Object(..) => {
                Ok((new_class == Some(c)).then(|| NonNull::slice_from_raw_parts(ptr, Self::class(c).size)))
            }
            // A block of the backend stays one whatever `new` maps to: a free with a class
            // layout finds it through the backend (see `locate_slow`). The backend knows it by
            // its class's layout when its layout maps to a class.
            Found::Block => {
                let (old_block, new_block) = (Self::backend_layout(old), Self::backend_layout(new));
                // By the backend's sizes, not the caller's direction: an alignment that takes a
                // layout out of the classes makes a shrink into a class a growth of the
                // backend's layout (100 B aligned to 64 KiB to 100 B aligned to 8: 100 to 112).
                let resized = if new_block.size() >= old_block.size() {
                    // SAFETY: `ptr` is a block of the backend (not a slab of ours, checked by
                    // `find`) that `old_block` fits (validated, or our caller's promise: a
                    // class's blocks are kept at its size), and `new_block` is at least as
                    // large.
                    unsafe { self.backend.grow_in_place(ptr, old_block, new_block) }
                } else {
                    // SAFETY: as above; `new_block` is smaller.
                    unsafe { self.backend.shrink_in_place(ptr, old_block, new_block) }
                };
                match resized {
                    // A layout above the classes was not checked against our slabs (`find`
                    // only made sure `ptr` is no slab's base): a pointer into one is the
                    // backend's "interior pointer" until told in this layer's terms, as a free
                    // tells it.
                    Err(AllocError::InvalidBlock(error)) if c == usize::MAX => {
                        Err(AllocError::InvalidBlock(self.reclassify(ptr, old, error)))
                    }
                    other => other.map(Some),
                }
            }
        }
    }

    /// Shared half of grow and shrink in place.
    ///
    /// # Safety
    /// `ptr` must be currently allocated from `self` and `old` must fit it; `new` as the
    /// respective `RawAlloc` method requires.
    unsafe fn resize_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let found = self.find(ptr, old).map_err(AllocError::invalid_block)?;
        let new_class = const { &Self::TABLE }.class_of(new.size(), new.align());
        // SAFETY: forwarded from our caller; `found` is what `find` said of `ptr`.
        match unsafe { self.resize_found(ptr, found, old, (new, new_class)) }? {
            Some(block) => Ok(block),
            None => {
                Err(AllocError::OutOfMemory { size: new.size(), block: self.usable_size(new).unwrap_or(0) })
            }
        }
    }

    /// The fast path of a resize of an object to a layout of a class: `ptr` an allocated
    /// object the [`held`](Self::held) cache knows ([`Self::held_object`]). If its new class is
    /// its own, it stays where it is; else the new object comes from [`Self::pop_fast`] (or
    /// the class's full path, [`Self::allocate_class`]), and the old one is freed in place
    /// ([`Self::free_staying`]) if its slab stays in its list, or by
    /// [`Self::release_moving`], whose refusal gives the new object back ([`move_block`]).
    /// `None`, with nothing changed, in every other case (and when the allocation fails):
    /// [`Self::resize`] then does it all, reporting what it finds.
    ///
    /// Through `resize` alone, the look-up, the allocation and the free each took their full
    /// paths (figures at [`Self::pop_fast`]). With `pop_fast` and an old slab that stays alone,
    /// 86% of the reallocations of random actions up to 200 B took this path, and 76% of those
    /// up to 2000 B, whose old slabs more often fill or empty; with the class's full path and
    /// `release_moving` too, all of them up to 200 B and 98% up to 2000 B (2 174 of 99 672
    /// still take `resize`: objects the held cache does not know; `drive budalloc-heap d2000
    /// 400000` under callgrind, 174.2 million instructions where it took 178.1).
    ///
    /// # Safety
    /// As [`Self::resize`].
    #[inline(always)]
    unsafe fn resize_fast(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        keep: usize,
    ) -> Option<NonNull<[u8]>> {
        let table = const { &Self::TABLE };
        let c = table.class_of(old.size(), old.align())?;
        let n = table.class_of(new.size(), new.align())?;
        let (slab, index, h) = self.held_object(ptr, c)?;
        if n == c {
            return Some(NonNull::slice_from_raw_parts(ptr, Self::class(c).size));
        }
        // Whether the old object's slab stays in its list when it is freed: decided before the
        // allocation, which takes from slabs of another class (or the backend) and so leaves
        // `h` as it is.
        let stays = self.stays(c, &h);
        let block = match self.pop_fast(n) {
            Some(block) => block,
            None => self.allocate_class(n, new).ok()?,
        };
        let free_old = |heap: &mut Self| {
            if stays {
                heap.free_staying(c, slab, index, h);
                Ok(())
            } else {
                heap.release_moving(c, slab, index)
            }
        };
        // SAFETY: `ptr` is live with `old` (our caller's promise, checked by `held_object`),
        // valid for `keep <= old.size()` bytes; `block` was just allocated for `new` (a slot of
        // another class's slab, or a block of the backend), `keep <= new.size()`; `free_old`
        // frees the old object alone (in place, or moving its slab: a refusal changes nothing).
        unsafe { move_block(self, ptr, keep, block, new, free_old) }.ok()
    }

    /// Shared body of grow and shrink: in place if the block stays in its class (or the
    /// backend resizes it where it is), else moved, keeping `keep` bytes. The old block is
    /// checked once, before anything changes, and freed from what that check found: the
    /// default `grow` checks it in the in-place attempt and again in the free after the copy.
    /// The allocation of the new block touches no slab of the old object's class (another
    /// class, or the backend), so what the check found still holds when the old one is freed.
    ///
    /// # Safety
    /// As [`RawAlloc::grow`] or [`RawAlloc::shrink`]; `keep <= min(old.size(),
    /// new.size())`.
    unsafe fn resize(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        keep: usize,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let found = self.find(ptr, old).map_err(AllocError::invalid_block)?;
        // The new layout's class, looked up once for the in-place attempt and the allocation.
        let new_class = const { &Self::TABLE }.class_of(new.size(), new.align());
        // SAFETY: forwarded from our caller; `found` is what `find` said of `ptr`.
        match unsafe { self.resize_found(ptr, found, old, (new, new_class)) } {
            Ok(Some(block)) => return Ok(block),
            Err(e) if e.is_misuse() => return Err(e),
            Ok(None) | Err(_) => {}
        }
        let free_old = |heap: &mut Self| match found {
            (Found::Object(slab, index), c) => heap.release(c, slab, index).map(|()| heap.hold(c, slab)),
            // SAFETY: a block of the backend that the backend layout of `old` fits, not a slab
            // (checked by `find`); the caller owns it.
            (Found::Block, _) => unsafe { heap.backend.try_deallocate(ptr, Self::backend_layout(old)) },
        };
        let block = self.allocate_in(new_class, new)?;
        // SAFETY: `ptr` is live with `old` (our caller's promise, checked by `find`), valid for
        // `keep <= old.size()` bytes; `block` was just allocated with `new`, `keep <=
        // new.size()`; `free_old` frees what `find` found (the allocation of the new block
        // touched no slab of the old object's class).
        unsafe { move_block(self, ptr, keep, block, new, free_old) }
    }

    /// Allocates for `layout`, whose class is `class` (`None`: no class serves it): an object by
    /// the fast path, else by the full one; a block of the backend straight away.
    #[inline(always)]
    fn allocate_in(&mut self, class: Option<usize>, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        match class {
            Some(c) => match self.pop_fast(c) {
                Some(block) => Ok(block),
                None => self.allocate_class(c, layout),
            },
            None => self.allocate_large(layout),
        }
    }

    /// Allocates an object of class `c` for `layout`: every case, with every check reporting
    /// what it found, and a block of the backend when no slab can be had. Out of line:
    /// [`Self::allocate_in`] tries [`Self::pop_fast`] first.
    #[inline(never)]
    fn allocate_class(&mut self, c: usize, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        match self.allocate_object(c, layout) {
            Err(AllocError::OutOfMemory { .. }) => self.allocate_fallback(c),
            other => other,
        }
    }

    /// Gives every cached empty slab back to the backend, and the empty slab a partial list may
    /// keep (if [`spare`](Self::spare) says there may be one: a test, when there is none).
    /// `true` if any slab went back. A damaged header or a refusing backend leaves the slab
    /// where it is (and `spare` set); the next operation on it reports the damage.
    fn release_empty(&mut self) -> bool {
        if !self.spare {
            return false;
        }
        let (mut released, mut kept) = (false, false);
        for c in 0..Self::TABLE.len {
            let objects = Self::class(c).objects;
            let idle = self.slabs(PARTIAL, c).find(|slab| slab.get().free as usize == objects);
            if let Some(slab) = idle {
                match self.give_back(PARTIAL, c, slab) {
                    Ok(()) => released = true,
                    Err(_) => kept = true,
                }
            }
            while let Some(slab) = self.lists[EMPTY][c].head {
                if self.give_back(EMPTY, c, slab).is_err() {
                    kept = true;
                    break;
                }
                released = true;
            }
        }
        self.spare = kept;
        released
    }

    /// The largest power of two `P` such that every request with `max(size, align)` at most
    /// `P` succeeds now. The backend serves any request up to its largest free block (directly,
    /// or as a fallback for a class whose slab it cannot give); beyond that, classes with a
    /// partial or cached slab serve, up to the first class without one.
    fn largest_request(&self, backend_largest: usize) -> usize {
        for c in 0..Self::TABLE.len {
            let class = Self::class(c);
            let ready = self.lists[PARTIAL][c].len > 0
                || self.lists[EMPTY][c].len > 0
                || backend_largest >= class.slab_size();
            if !ready {
                let below = if class.size > 16 { 1 << (class.size - 1).ilog2() } else { 0 };
                return backend_largest.max(below);
            }
        }
        LIMIT.max(backend_largest)
    }
}

// SAFETY: objects are disjoint slots of slabs, each slab a block currently allocated from the
// backend (disjoint from every other block of it); a slot is handed out only when its bit goes
// from free to allocated and taken back only when it goes back, so live objects never overlap
// each other or the backend's blocks. The allocator writes only slab headers (before the first
// slot) and never an object. Large blocks are the backend's, under its own guarantees. Every
// failing call returns before its first change (checks run first).
unsafe impl<B: RawAlloc, const LIMIT: usize, const STEPS: usize, const CACHE: usize> RawAlloc
    for Classes<B, LIMIT, STEPS, CACHE>
{
    #[inline(always)]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_in(const { &Self::TABLE }.class_of(layout.size(), layout.align()), layout)
    }

    #[inline(always)]
    unsafe fn try_deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        match const { &Self::TABLE }.class_of(layout.size(), layout.align()) {
            Some(c) => {
                match self.push_fast(ptr, c) {
                    Pushed::Done => Ok(()),
                    Pushed::Moves(slab, index) => self.release_moving(c, slab, index),
                    // Every other case (and every error) takes the full path.
                    // SAFETY: forwarded from our caller.
                    Pushed::Unknown => unsafe { self.free_with_class(ptr, layout, c) },
                }
            }
            // SAFETY: forwarded from our caller.
            None => unsafe { self.free_large(ptr, layout) },
        }
    }

    #[inline]
    fn validate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        match const { &Self::TABLE }.class_of(layout.size(), layout.align()) {
            Some(c) => self.locate(ptr, layout, c).map(|_| ()),
            None => {
                self.not_a_slab(ptr, layout)?;
                self.backend.validate(ptr, layout).map_err(|e| self.reclassify(ptr, layout, e))
            }
        }
    }

    #[inline]
    fn rebase(&self, ptr: NonNull<u8>) -> Option<NonNull<u8>> {
        self.backend.rebase(ptr)
    }

    fn flush(&mut self) {
        self.release_empty();
        self.backend.flush();
    }

    /// The cached empty slabs go back to the backend, and the empty slab a partial list keeps:
    /// a test when there is none, else O(classes + partial slabs).
    fn release_spare(&mut self) -> bool {
        let released = self.release_empty();
        self.backend.release_spare() || released
    }

    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded from our caller.
        unsafe { self.resize_in_place(ptr, old, new) }
    }

    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded from our caller.
        unsafe { self.resize_in_place(ptr, old, new) }
    }

    unsafe fn grow(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded from our caller; `old.size() <= new.size()`.
        if let Some(block) = unsafe { self.resize_fast(ptr, old, new, old.size()) } {
            return Ok(block);
        }
        // SAFETY: as above; the fast path changed nothing.
        unsafe { self.resize(ptr, old, new, old.size()) }
    }

    unsafe fn shrink(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded from our caller; `new.size() <= old.size()`.
        if let Some(block) = unsafe { self.resize_fast(ptr, old, new, new.size()) } {
            return Ok(block);
        }
        // SAFETY: as above; the fast path changed nothing.
        unsafe { self.resize(ptr, old, new, new.size()) }
    }

    #[inline]
    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.backend.owns(ptr)
    }

    fn usable_size(&self, layout: Layout) -> Result<usize, AllocError> {
        match const { &Self::TABLE }.class_of(layout.size(), layout.align()) {
            Some(c) => Ok(Self::class(c).size),
            None => self.backend.usable_size(layout),
        }
    }

    /// The backend's figures with slabs accounted as this layer sees them:
    /// - `capacity`: the backend's, minus the slab bytes no object can use (headers, padding,
    ///   tails of held slabs);
    /// - `allocated`: live objects at their class size, plus the backend's allocated blocks that
    ///   are not slabs;
    /// - `free`: `capacity - allocated` (free objects in held slabs, cached empty slabs, and the
    ///   backend's free blocks);
    /// - `overhead`: the backend's, plus the slab bytes taken out of `capacity`;
    /// - `largest_free`: the largest power of two such that any request of at most that size
    ///   and alignment succeeds now (not the backend's largest free block: a free block smaller
    ///   than a class's slab cannot serve that class);
    /// - `free_blocks`, `min_block`, `arenas`: the backend's.
    ///
    /// Deviation from "capacity from the backend": `Stats` defines `capacity` without metadata
    /// and `overhead` as the metadata, so slab headers belong to the latter only (counting them
    /// in both would make `capacity + overhead` exceed the memory handed over).
    fn stats(&self) -> Stats {
        let mut stats = self.backend.stats();
        stats.largest_free = self.largest_request(stats.largest_free);
        stats.capacity -= self.slab_waste;
        stats.overhead += self.slab_waste;
        stats.allocated = stats.allocated - self.slab_bytes + self.object_bytes;
        stats.free = stats.capacity - stats.allocated;
        stats
    }
}

impl<B: RawAlloc, const LIMIT: usize, const STEPS: usize, const CACHE: usize> SizeClasses
    for Classes<B, LIMIT, STEPS, CACHE>
{
    const CLASSES: usize = Self::TABLE.len;

    #[inline]
    fn class_of(layout: Layout) -> Option<usize> {
        const { &Self::TABLE }.class_of(layout.size(), layout.align())
    }

    fn class_layout(class: usize) -> Layout {
        assert!(class < Self::TABLE.len, "class {class} out of range");
        Self::class(class).layout
    }
}

impl<B: RawAlloc + Claim, const LIMIT: usize, const STEPS: usize, const CACHE: usize> Claim
    for Classes<B, LIMIT, STEPS, CACHE>
{
    fn claim(&mut self, region: &'static mut [core::mem::MaybeUninit<u8>]) -> Result<(), RegionError> {
        self.backend.claim(region)
    }

    unsafe fn claim_raw(&mut self, ptr: *mut u8, len: usize) -> Result<(), RegionError> {
        // SAFETY: forwarded from our caller.
        unsafe { self.backend.claim_raw(ptr, len) }
    }
}

impl<B: RawAlloc, const LIMIT: usize, const STEPS: usize, const CACHE: usize> core::fmt::Debug
    for Classes<B, LIMIT, STEPS, CACHE>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Classes")
            .field("limit", &LIMIT)
            .field("steps", &STEPS)
            .field("cache", &CACHE)
            .field("stats", &self.stats())
            .finish()
    }
}
