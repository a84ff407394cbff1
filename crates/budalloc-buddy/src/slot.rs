//! One arena under the buddy policy: its tree bits, free lists and free-fragment headers.
//!
//! # The bits
//! The arena's bitmap holds, for an arena of `N` fragments:
//!
//! - bits `0 .. N`, **allocated bits** `A`: bit `f` is set iff an allocated block starts at
//!   fragment `f`, or `f` is the second fragment of a **marked** allocated block (one that
//!   `RawAlloc::allocate_marked` returned) whose first piece has order 1 or more: a bit that is
//!   otherwise always clear, since no block starts inside another, so the mark costs no
//!   metadata;
//! - with exact fit only, bits `N .. 2N`, **continuation bits** `C`: bit `f` is set iff an
//!   allocated block starts at `f` that is a later piece of a multi-piece (exact-fit) allocation;
//! - with exact fit only, bits `2N .. 3N`, **used bits** `U`: bit `f` is set iff fragment `f`
//!   lies in an allocated block (redundant with the tree; they let exact fit measure a run of
//!   free blocks a word of bits at a time instead of a block lookup at a time);
//! - then one **split level** `S_k` per order `k` in `1 ..= top`: one bit per node of order `k`
//!   that lies wholly inside the arena, set iff that node is split into two halves.
//!
//! A node is a *block* iff it is not split and its parent is split. Nodes that stick out of the
//! arena and nodes above the largest order count as split, so with every bit zero the blocks are
//! exactly the seeding: the largest naturally aligned blocks first, then smaller ones. About
//! `2 N` bits in all (`4 N` with exact fit): with 16-byte fragments, 1.6% of the arena (3.1%);
//! with 64-byte ones, 0.4% (0.8%).
//!
//! Every test of "is a free block of order `k` here" is two or three bit probes; nothing ever
//! scans a list or a range. The free-list header in a free block is a cross-check (arena seal,
//! order, link sanity) that turns damage into [`Corruption::Header`]; the bits decide.

use core::mem::size_of;
use core::ptr::NonNull;

use budalloc_core::{Arena, BlockView, Corruption, Order, SizeMath, MAX_ORDERS};

/// "No fragment": the end of a free list.
pub(crate) const NIL: u32 = u32::MAX;

/// The header at the start of every free block (the seed's `fragment_t`): its arena identity,
/// its order and its free-list links. Allocated blocks carry no header.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FreeHeader {
    /// Next free block of the same order (fragment index), or `NIL`.
    pub next: u32,
    /// Previous free block of the same order (fragment index), or `NIL` for the list head.
    pub prev: u32,
    /// The arena's tag mixed with this fragment's index, its order and `next`
    /// ([`Slot::seal`]): a header copied from elsewhere, or with any bit of those flipped, does
    /// not match. `prev` is checked through the reciprocal link instead (the previous block's
    /// sealed `next` must name this one), so a push never reseals a neighbour.
    pub seal: u32,
    /// The block's order.
    pub order: u8,
    _pad: [u8; 3],
}

/// Bytes of a free-fragment header: the smallest `MIN` a buddy policy accepts.
pub const HEADER_SIZE: usize = size_of::<FreeHeader>();
const _: () = assert!(HEADER_SIZE == 16, "the free header must fit the smallest 16-byte fragment");

/// An arena with the buddy policy's per-arena state.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The region, its fragments and its bitmap.
    pub arena: Arena,
    /// Block geometry (MIN, MAX) of the policy.
    math: SizeMath,
    /// Whether the arena has continuation bits (exact fit).
    pub(crate) exact: bool,
    /// Highest order with split bits: `min(max_order, log2(N))`. Invariant: no node above it lies
    /// wholly inside the arena below `max_order`.
    top: u32,
    /// Per order: which nodes lie wholly inside the arena and where their split bits are.
    /// Invariant: `levels[k].count == 0` for `k > top`; `levels[0]` covers every fragment.
    levels: [Level; MAX_ORDERS],
    /// Head of the free list of each order (fragment index), or `NIL`. Invariant: list `k` holds
    /// exactly the free blocks of order `k` (those whose node is a block and whose `A` bit is
    /// clear), doubly linked through their headers.
    heads: [u32; MAX_ORDERS],
    /// Bit `k` is set iff `heads[k] != NIL`.
    nonempty: u32,
    /// Length of each free list.
    counts: [u32; MAX_ORDERS],
    /// Bytes in allocated blocks. Invariant: the sum of the sizes of the blocks whose `A` bit is
    /// set.
    pub(crate) allocated: usize,
    /// With exact fit: every run of free fragments (adjacent fragments whose `U` bits are clear,
    /// the policy's parked block counted as free) is shorter than this, or `usize::MAX` when
    /// nothing is known. Learnt from a search for a run that walked every block and found none
    /// ([`Self::note_no_run`]), forgotten whenever fragments become free ([`Self::set_used`])
    /// or a block is parked ([`Self::forget_runs`]), so a request at least this long is
    /// refused at once instead of walking every free block again. A hint: it changes the cost
    /// of a refused request, never its outcome. Invariant: no such run is `runs_below` long.
    runs_below: usize,
    /// While a free or a resize runs: the caller's pointer to the allocation, its first fragment
    /// and the fragments of it that pointer reaches (those its layout's bytes touch, see
    /// `Buddy::reach`). Writes into that range go through the caller's pointer, not the region
    /// base: the caller may still hold a protected reference to it (a `Box` dropped inside the
    /// function it was passed to), and a write through the base would be a foreign write under
    /// the aliasing model (the miri#2104 family of problems). Writes into the allocation's
    /// fragments past its layout go through the base: under Stacked Borrows the caller's
    /// pointer does not reach them. `None` otherwise.
    origin: Option<(NonNull<u8>, usize, usize)>,
}

/// Where the bits of the split level of order `k` (`k >= 1`) start, for an arena of `n`
/// fragments whose per-fragment bit arrays take `base` bits: level `k` gets
/// `(n >> (k - 1)) - (n >> k) + 2 >= n >> k` bits, enough for every node of order `k` wholly
/// inside the arena, without a per-level table.
#[inline]
const fn level_offset(base: usize, n: usize, k: u32) -> usize {
    base + (n - (n >> (k - 1))) + 2 * (k as usize - 1)
}

/// Bits of the bitmap for an arena of `n` fragments under geometry `math`: `A` (and `C` with
/// exact fit), then the split levels.
pub(crate) fn bits_for(math: SizeMath, n: usize, exact: bool) -> Option<usize> {
    let top = top_order(math, n);
    let per_fragment = if exact { 4 } else { 2 };
    n.checked_mul(per_fragment)?.checked_add(2 * top as usize + 2)
}

fn top_order(math: SizeMath, n: usize) -> u32 {
    if n == 0 {
        0
    } else {
        math.max_order().get().min(n.ilog2())
    }
}

/// Where one order's nodes live: the nodes of order `k` wholly inside the arena are those with
/// `abs >> k` in `lo .. lo + count`; their split bits start at bit `base`. Computed once per
/// arena, so every bit probe is a shift, a subtraction, a compare and a word read.
#[derive(Clone, Copy, Debug, Default)]
struct Level {
    lo: usize,
    count: usize,
    base: usize,
}

/// What `find_block` learned about a fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    /// First fragment of the block containing the fragment.
    pub frag: usize,
    /// The block's order.
    pub order: Order,
    /// Whether the block is allocated.
    pub allocated: bool,
}

impl Slot {
    /// Seeds a fresh arena: every bit zero makes the maximal aligned blocks free; put them on
    /// their lists.
    pub fn new(arena: Arena, math: SizeMath, exact: bool) -> Slot {
        let top = top_order(math, arena.fragments());
        let n = arena.fragments();
        let first = arena.first_absolute();
        let mut levels = [Level::default(); MAX_ORDERS];
        levels[0] = Level { lo: first, count: n, base: 0 };
        for k in 1..=top {
            let lo = first.div_ceil(1 << k);
            let hi = (first + n) >> k;
            let base = level_offset(if exact { 3 * n } else { n }, n, k);
            levels[k as usize] = Level { lo, count: hi.saturating_sub(lo), base };
        }
        let mut slot = Slot {
            arena,
            math,
            exact,
            top,
            levels,
            heads: [NIL; MAX_ORDERS],
            nonempty: 0,
            counts: [0; MAX_ORDERS],
            allocated: 0,
            runs_below: usize::MAX,
            origin: None,
        };
        let mut frag = 0;
        while frag < slot.arena.fragments() {
            let order = slot.seed_order(frag);
            slot.push(frag, order);
            frag += order.fragments();
        }
        slot
    }

    /// The order of the seeding block at `frag`: the largest order `<= max_order` to which
    /// `frag` is absolutely aligned and that still fits the arena.
    fn seed_order(&self, frag: usize) -> Order {
        let abs = self.abs(frag);
        let left = self.arena.fragments() - frag;
        let k = abs.trailing_zeros().min(left.ilog2()).min(self.math.max_order().get());
        Order::new(k).unwrap_or(Order::ZERO)
    }

    /// Highest order with split bits in this arena.
    #[inline]
    pub(crate) fn top(&self) -> u32 {
        self.top
    }

    /// First block of the free list of order `k`, if any.
    #[inline]
    pub(crate) fn head(&self, k: Order) -> Option<usize> {
        let head = self.heads[k.index()];
        (head != NIL).then_some(head as usize)
    }

    #[inline]
    pub(crate) fn abs(&self, frag: usize) -> usize {
        self.arena.first_absolute() + frag
    }

    /// Whether the node of order `k` containing absolute fragment `abs` lies wholly inside the
    /// arena (and `k` is at most `top`).
    #[inline]
    pub(crate) fn inside(&self, k: u32, abs: usize) -> bool {
        match self.levels.get(k as usize) {
            Some(level) => (abs >> k).wrapping_sub(level.lo) < level.count,
            None => false,
        }
    }

    /// Bit index of the split bit of the node of order `k` (`1 ..= top`) containing `abs`, which
    /// must lie wholly inside the arena.
    #[inline]
    fn split_bit(&self, k: u32, abs: usize) -> usize {
        let level = self.levels[k as usize];
        level.base + ((abs >> k) - level.lo)
    }

    /// Whether the node of order `k` containing `abs` is split. Order-0 nodes never are; nodes
    /// sticking out of the arena or above `top` always are.
    #[inline]
    pub(crate) fn is_split(&self, k: u32, abs: usize) -> bool {
        if k == 0 {
            return false;
        }
        let Some(level) = self.levels.get(k as usize) else { return true };
        let index = (abs >> k).wrapping_sub(level.lo);
        index >= level.count || self.arena.bitmap().get(level.base + index)
    }

    #[inline]
    pub(crate) fn set_split(&mut self, k: u32, abs: usize, split: bool) {
        debug_assert!(k >= 1 && self.inside(k, abs), "split bit of a node outside the arena");
        let bit = self.split_bit(k, abs);
        self.arena.bitmap_mut().set(bit, split);
    }

    /// Whether an allocated block starts at `frag`.
    #[inline]
    pub fn is_allocated(&self, frag: usize) -> bool {
        self.arena.bitmap().get(frag)
    }

    #[inline]
    pub(crate) fn set_allocated(&mut self, frag: usize, allocated: bool) {
        self.arena.bitmap_mut().set(frag, allocated);
    }

    /// Whether the block at `frag` is a later piece of an exact-fit allocation (never, without
    /// exact fit; `frag` may be one past the end).
    #[inline]
    pub fn is_continuation(&self, frag: usize) -> bool {
        self.exact && frag < self.arena.fragments() && self.arena.bitmap().get(self.arena.fragments() + frag)
    }

    #[inline]
    pub(crate) fn set_continuation(&mut self, frag: usize, continuation: bool) {
        debug_assert!(self.exact || !continuation, "continuation bit without exact fit");
        if self.exact {
            let bit = self.arena.fragments() + frag;
            self.arena.bitmap_mut().set(bit, continuation);
        }
    }

    /// Whether the allocated block at `frag`, whose first piece has order `k`, is marked (its
    /// second fragment's `A` bit; a block whose first piece is one fragment cannot be).
    #[inline]
    pub(crate) fn is_marked(&self, frag: usize, k: Order) -> bool {
        k > Order::ZERO && self.is_allocated(frag + 1)
    }

    /// Whether a marked allocated block starts at `frag` (`frag < N`), in O(1) from four bits:
    /// `Some(false)` if none does, `None` if the block there is one fragment (it cannot carry a
    /// mark). The order-1 node holding `frag` is split iff a one-fragment block starts there;
    /// otherwise `frag` lies in a block of order 1 or more, which starts at the node's even
    /// fragment and keeps its mark on the odd one.
    #[inline]
    pub(crate) fn marked_block(&self, frag: usize) -> Option<bool> {
        let abs = self.abs(frag);
        if !self.is_allocated(frag) || self.is_continuation(frag) {
            // No allocation starts here (or only a later piece of one).
            return Some(false);
        }
        if self.is_split(1, abs) {
            // An allocated one-fragment block.
            return None;
        }
        // Even: a block of order 1 or more starts here. Odd: the `A` bit is the mark of the
        // block that starts one fragment before.
        Some(abs.is_multiple_of(2) && self.is_allocated(frag + 1))
    }

    /// Marks or unmarks the allocated block at `frag`, whose first piece has order 1 or more.
    #[inline]
    pub(crate) fn set_marked(&mut self, frag: usize, marked: bool) {
        self.set_allocated(frag + 1, marked);
    }

    /// Marks the `len` fragments at `frag` as lying in an allocated block (`used`) or in free
    /// ones: the `U` bits, kept with exact fit only. Fragments that become free may lengthen a
    /// run, so `runs_below` is forgotten.
    #[inline]
    pub(crate) fn set_used(&mut self, frag: usize, len: usize, used: bool) {
        if self.exact {
            let base = 2 * self.arena.fragments();
            self.arena.bitmap_mut().fill(base + frag, base + frag + len, used);
            if !used {
                self.forget_runs();
            }
        }
    }

    /// Forgets what failed searches taught about the runs (`runs_below`): fragments became
    /// free, or a block was parked (counted as free from now on).
    #[inline]
    pub(crate) fn forget_runs(&mut self) {
        self.runs_below = usize::MAX;
    }

    /// [`Self::trim`] of a block just taken off the free lists ([`Self::allocate`]): its tail
    /// was free a moment ago, so no run is longer than before the allocation and what failed
    /// searches taught about the runs (`runs_below`) still holds. ([`Self::trim`] alone forgets
    /// it, as a shrink must: a shrunk allocation's tail is newly free.)
    #[inline]
    pub(crate) fn trim_taken(&mut self, frag: usize, k: Order, need: usize) {
        let runs_below = self.runs_below;
        self.trim(frag, k, need);
        self.runs_below = runs_below;
    }

    /// Whether a run of free fragments (the parked block counted as free) may be `need` long
    /// ([`Self::note_no_run`] rules out some lengths until fragments are freed).
    #[inline]
    pub(crate) fn may_hold(&self, need: usize) -> bool {
        need < self.runs_below
    }

    /// Records that a search that walked every block (the parked block counted as free or not)
    /// found no run that holds `need` fragments aligned to `align`: a run of `need + align - 1`
    /// fragments would hold them at any position, so every run is shorter than that.
    #[inline]
    pub(crate) fn note_no_run(&mut self, need: usize, align: usize) {
        self.runs_below = self.runs_below.min(need.saturating_add(align.saturating_sub(1)));
    }

    /// See `runs_below`.
    #[cfg(feature = "check-invariants")]
    pub(crate) fn runs_below(&self) -> usize {
        self.runs_below
    }

    /// Where the free fragments from `from` on end, looking no further than `until` (at most
    /// `N`): the first fragment of `from .. until` in an allocated block other than `parked`
    /// (an allocated block to count as free), or `until`. Exact fit only: reads the `U` bits.
    #[inline]
    pub(crate) fn free_until(&self, from: usize, until: usize, parked: Option<(usize, Order)>) -> usize {
        debug_assert!(self.exact, "U bits are kept with exact fit only");
        let base = 2 * self.arena.fragments();
        let mut at = from;
        loop {
            let stop = self.arena.bitmap().next_set(base + at, base + until) - base;
            match parked {
                Some((p, k)) if stop == p && stop < until => at = (p + k.fragments()).min(until),
                _ => return stop,
            }
        }
    }

    /// Where the free fragments that end at `to` (exclusive) start, looking no lower than
    /// `floor`: the lowest `j >= floor` such that `j .. to` lies in free blocks or `parked`.
    /// Exact fit only: reads the `U` bits.
    #[inline]
    pub(crate) fn free_since(&self, to: usize, floor: usize, parked: Option<(usize, Order)>) -> usize {
        debug_assert!(self.exact, "U bits are kept with exact fit only");
        let base = 2 * self.arena.fragments();
        let mut at = to;
        loop {
            let start = self.arena.bitmap().clear_run_start(base + at, base + floor) - base;
            match parked {
                Some((p, k)) if start > floor && start == p + k.fragments() => at = p.max(floor),
                _ => return start,
            }
        }
    }

    /// Whether a block (free or allocated) of order `k` starts at `frag`.
    #[inline]
    pub fn is_block(&self, frag: usize, k: Order) -> bool {
        let abs = self.abs(frag);
        let k = k.get();
        abs & ((1 << k) - 1) == 0
            && self.inside(k, abs)
            && !self.is_split(k, abs)
            && self.is_split(k + 1, abs)
    }

    /// Whether a free block of order `k` starts at `frag` (`frag < N`).
    #[inline]
    pub fn is_free_block(&self, frag: usize, k: Order) -> bool {
        self.is_block(frag, k) && !self.is_allocated(frag)
    }

    /// The block that contains fragment `frag` (`frag < N`): O(orders) probes.
    pub fn find_block(&self, frag: usize) -> Found {
        let abs = self.abs(frag);
        let mut k = 0;
        // The block containing `frag` is its lowest ancestor-or-self whose parent is split.
        while !self.is_split(k + 1, abs) {
            k += 1;
        }
        let start = ((abs >> k) << k) - self.arena.first_absolute();
        Found {
            frag: start,
            order: Order::new(k).unwrap_or(Order::ZERO),
            allocated: self.is_allocated(start),
        }
    }

    /// Every block in address order.
    pub fn blocks(&self) -> impl Iterator<Item = BlockView> + '_ {
        let mut frag = 0;
        core::iter::from_fn(move || {
            if frag >= self.arena.fragments() {
                return None;
            }
            let found = self.find_block(frag);
            frag = found.frag + found.order.fragments();
            Some(BlockView { frag: found.frag, order: found.order, allocated: found.allocated })
        })
    }

    // ---- free-fragment headers ------------------------------------------------------------

    /// The seal a free header at `frag` of order `k` must carry.
    #[inline]
    fn seal(&self, frag: usize, k: Order, next: u32) -> u32 {
        // Multiplying by an odd constant is a bijection: any one-bit change of the mixed word
        // changes the seal.
        let mixed = (frag as u32) ^ (k.get() << 27) ^ next.rotate_left(13);
        self.arena.bitmap().tag() ^ mixed.wrapping_mul(0x9e37_79b1)
    }

    #[inline]
    fn header_ptr(&self, frag: usize) -> NonNull<FreeHeader> {
        self.ptr_to(frag).cast()
    }

    /// Pointer to fragment `frag`: through the caller's pointer if `frag` lies in the allocation
    /// being freed or resized (see `origin`), else re-derived from the region base.
    #[inline]
    pub(crate) fn ptr_to(&self, frag: usize) -> NonNull<u8> {
        match self.origin {
            Some((ptr, first, len)) if frag.wrapping_sub(first) < len => {
                ptr.with_addr(self.arena.ptr_of(frag).addr())
            }
            _ => self.arena.ptr_of(frag),
        }
    }

    /// Sets (or, with `None`, clears) the caller's pointer for the free or resize about to run:
    /// `ptr` points at fragment `frag`, an allocation of `len` fragments.
    #[inline]
    pub(crate) fn set_origin(&mut self, origin: Option<(NonNull<u8>, usize, usize)>) {
        self.origin = origin;
    }

    /// Reads the header of the free block at `frag`.
    #[inline]
    pub fn header(&self, frag: usize) -> FreeHeader {
        debug_assert!(!self.is_allocated(frag), "header read from an allocated block");
        // SAFETY: `frag < N`, so the pointer lies in the block area (re-derived from the region
        // base), is aligned (fragments are at least 16-byte aligned) and readable; the block is
        // free, so its first 16 bytes are the policy's own.
        unsafe { self.header_ptr(frag).read() }
    }

    #[inline]
    fn write_header(&mut self, frag: usize, header: FreeHeader) {
        // SAFETY: as in `header`: in bounds, aligned, and the block at `frag` is free (callers
        // write headers only into blocks they are putting on or keeping on a free list).
        unsafe { self.header_ptr(frag).write(header) };
    }

    /// Checks the seal of the header of the free block of order `k` at `frag` (which covers
    /// its order and `next`, and `next` names a fragment of the arena): enough to follow the
    /// list, not to unlink (see [`Self::check_header`]).
    #[inline]
    pub fn check_seal(&self, frag: usize, k: Order) -> Result<FreeHeader, Corruption> {
        let header = self.header(frag);
        let sealed = header.seal == self.seal(frag, k, header.next)
            && u32::from(header.order) == k.get()
            && header._pad == [0; 3]
            && (header.next == NIL || (header.next as usize) < self.arena.fragments());
        if sealed {
            Ok(header)
        } else {
            Err(Corruption::Header { addr: self.arena.addr_of(frag) })
        }
    }

    /// Checks the header of the free block of order `k` at `frag`: seal, order, and links that
    /// point at free blocks of the same order (so that unlinking never writes into a live block).
    pub fn check_header(&self, frag: usize, k: Order) -> Result<FreeHeader, Corruption> {
        let header = self.check_seal(frag, k)?;
        let bad = Corruption::Header { addr: self.arena.addr_of(frag) };
        let n = self.arena.fragments();
        let prev_ok = if header.prev == NIL {
            self.heads[k.index()] == frag as u32
        } else {
            // The previous block must be a free block of this order whose sealed `next` names
            // us (its memory is read only once the bitmap says it is free).
            let prev = header.prev as usize;
            prev < n && self.is_free_block(prev, k) && {
                let before = self.header(prev);
                before.next == frag as u32 && before.seal == self.seal(prev, k, before.next)
            }
        };
        if prev_ok {
            Ok(header)
        } else {
            Err(bad)
        }
    }

    // ---- free lists -------------------------------------------------------------------------

    /// Puts the free block `frag` of order `k` at the head of its list.
    #[inline]
    pub(crate) fn push(&mut self, frag: usize, k: Order) {
        let i = k.index();
        let old = self.heads[i];
        let header = FreeHeader {
            next: old,
            prev: NIL,
            seal: self.seal(frag, k, old),
            order: k.get() as u8,
            _pad: [0; 3],
        };
        self.write_header(frag, header);
        if old != NIL {
            let mut next = self.header(old as usize);
            next.prev = frag as u32;
            self.write_header(old as usize, next);
        }
        self.heads[i] = frag as u32;
        self.nonempty |= 1 << i;
        self.counts[i] += 1;
    }

    /// Takes the free block `frag` of order `k`, whose header `header` was checked, off its list.
    #[inline]
    pub(crate) fn unlink(&mut self, frag: usize, k: Order, header: FreeHeader) {
        let i = k.index();
        debug_assert!(
            header.prev != NIL || self.heads[i] == frag as u32,
            "unlinking a list head that is not the head"
        );
        if header.prev == NIL {
            self.heads[i] = header.next;
            if header.next == NIL {
                self.nonempty &= !(1 << i);
            }
        } else {
            let mut prev = self.header(header.prev as usize);
            prev.next = header.next;
            prev.seal = self.seal(header.prev as usize, k, header.next);
            self.write_header(header.prev as usize, prev);
        }
        if header.next != NIL {
            let mut next = self.header(header.next as usize);
            next.prev = header.prev;
            self.write_header(header.next as usize, next);
        }
        self.counts[i] -= 1;
        debug_assert!((self.heads[i] == NIL) == (self.counts[i] == 0), "free list {i} count out of step");
    }

    // ---- the policy's operations on one arena -----------------------------------------------

    /// The smallest order `>= k` with a free block here, in O(1).
    #[inline]
    pub fn smallest_free_order(&self, k: Order) -> Option<Order> {
        let usable = self.nonempty >> k.get();
        if usable == 0 {
            None
        } else {
            Order::new(k.get() + usable.trailing_zeros())
        }
    }

    /// Allocates a block of order `k` from a free block of order `from >= k` (found by
    /// [`Self::smallest_free_order`]), splitting it down. Returns the first fragment.
    #[inline]
    pub fn allocate(&mut self, k: Order, from: Order) -> Result<usize, Corruption> {
        self.arena.bitmap().check_keys()?;
        let frag = self.heads[from.index()] as usize;
        let header = self.check_header(frag, from)?;
        self.unlink(frag, from, header);
        let abs = self.abs(frag);
        let mut j = from;
        while j > k {
            self.set_split(j.get(), abs, true);
            let Some(half) = j.below() else { break };
            j = half;
            self.push(frag + half.fragments(), half);
        }
        self.set_allocated(frag, true);
        self.set_used(frag, k.fragments(), true);
        self.allocated += self.math.block_size(k);
        Ok(frag)
    }

    /// The order that freeing the block `frag` of order `k` will merge up to, with the header of
    /// every free buddy on the way checked, changing nothing.
    pub(crate) fn merge_plan(&self, frag: usize, k: Order) -> Result<Order, Corruption> {
        self.merge_walk(frag, k, |buddy, j| self.check_header(buddy, j).map(drop))
    }

    /// The order that freeing the block `frag` of order `k` will merge up to, reading only bits
    /// (headers unchecked: for figures).
    pub(crate) fn merge_order(&self, frag: usize, k: Order) -> Order {
        match self.merge_walk(frag, k, |_, _| Ok::<(), core::convert::Infallible>(())) {
            Ok(order) => order,
            Err(never) => match never {},
        }
    }

    /// The order that freeing the block `frag` of order `k` will merge up to, calling `visit`
    /// with each free buddy on the way (and its order) before going past it; stops at the first
    /// `Err` of `visit`. Reads only bits.
    #[inline]
    fn merge_walk<E>(
        &self,
        frag: usize,
        k: Order,
        mut visit: impl FnMut(usize, Order) -> Result<(), E>,
    ) -> Result<Order, E> {
        let mut start = self.abs(frag);
        let mut j = k;
        while j < self.math.max_order() && self.inside(j.get() + 1, start) {
            let buddy_abs = start ^ j.fragments();
            let buddy = buddy_abs - self.arena.first_absolute();
            // Our node's parent is split, so the buddy is a block iff it is not split itself.
            if self.is_split(j.get(), buddy_abs) || self.is_allocated(buddy) {
                break;
            }
            visit(buddy, j)?;
            start &= !j.fragments();
            let Some(up) = j.above() else { break };
            j = up;
        }
        Ok(j)
    }

    /// Frees the allocated block of order `k` at `frag` (already validated) and merges it with
    /// its free buddies. On `Err` nothing changed.
    #[inline]
    pub fn free(&mut self, frag: usize, k: Order) -> Result<(), Corruption> {
        // Check pass, read-only: a damaged buddy header is reported before anything changes.
        let target = self.merge_plan(frag, k)?;
        self.merge_up(frag, k, target);
        Ok(())
    }

    /// Frees the allocated block `frag` of order `k` and merges it up to order `target` with
    /// its free buddies (checked by the caller).
    #[inline]
    fn merge_up(&mut self, frag: usize, k: Order, target: Order) {
        poison(self, frag, k, k.fragments(), FREED);
        self.set_allocated(frag, false);
        self.set_used(frag, k.fragments(), false);
        self.allocated -= self.math.block_size(k);
        let mut start = frag;
        let mut reached = k;
        while reached < target {
            let buddy = (self.abs(start) ^ reached.fragments()) - self.arena.first_absolute();
            let header = self.header(buddy);
            self.unlink(buddy, reached, header);
            start = start.min(buddy);
            let Some(up) = reached.above() else { break };
            reached = up;
            self.set_split(reached.get(), self.abs(start), false);
        }
        self.push(start, reached);
    }

    /// Clears the split bits of the node `frag` of order `k` and of every node below it: the
    /// node becomes one block (its `A`/`C` bits are the caller's business).
    pub(crate) fn clear_below(&mut self, frag: usize, k: Order) {
        let abs = self.abs(frag);
        for level in 1..=k.get() {
            let first = self.split_bit(level, abs);
            let count = 1usize << (k.get() - level);
            self.arena.bitmap_mut().fill(first, first + count, false);
        }
    }

    // ---- figures ----------------------------------------------------------------------------

    pub fn allocated_bytes(&self) -> usize {
        self.allocated
    }

    pub fn free_counts(&self) -> &[u32; MAX_ORDERS] {
        &self.counts
    }

    /// Size of the largest free block, in O(1).
    pub fn largest_free(&self) -> usize {
        if self.nonempty == 0 {
            0
        } else {
            self.math.min_block() << (31 - self.nonempty.leading_zeros())
        }
    }

    #[cfg(feature = "check-invariants")]
    pub fn heads(&self) -> &[u32; MAX_ORDERS] {
        &self.heads
    }

    #[cfg(feature = "check-invariants")]
    pub fn nonempty(&self) -> u32 {
        self.nonempty
    }

    pub fn math(&self) -> SizeMath {
        self.math
    }

    /// Whether the free lists are exactly the seeding of a fresh arena: one free block per
    /// seeding position, nothing allocated.
    pub fn is_pristine(&self) -> bool {
        let mut frag = 0;
        while frag < self.arena.fragments() {
            let order = self.seed_order(frag);
            if !self.is_free_block(frag, order) {
                return false;
            }
            frag += order.fragments();
        }
        self.allocated == 0
    }

    #[cfg(feature = "check-invariants")]
    pub fn split_levels(&self) -> u32 {
        self.top
    }

    #[cfg(feature = "check-invariants")]
    pub fn node_split(&self, k: u32, abs: usize) -> bool {
        self.is_split(k, abs)
    }

    /// Whether no block strictly inside the block at `frag` of order `k` is recorded: no `A`
    /// bit past its first fragment (but the mark of an allocated block, on its second) and no
    /// split bit on any node below it (word-wise range checks).
    #[cfg(feature = "check-invariants")]
    pub fn interior_clear(&self, frag: usize, k: Order, allocated: bool) -> bool {
        let bits = self.arena.bitmap().bits();
        let past = if allocated && k > Order::ZERO { frag + 2 } else { frag + 1 };
        if bits[past.min(frag + k.fragments())..frag + k.fragments()].any() {
            return false;
        }
        let n = self.arena.fragments();
        if self.exact && bits[n + frag + 1..n + frag + k.fragments()].any() {
            return false;
        }
        let abs = self.abs(frag);
        (1..k.get()).all(|level| {
            let first = self.split_bit(level, abs);
            !bits[first..first + (1 << (k.get() - level))].any()
        })
    }

    #[cfg(feature = "check-invariants")]
    pub fn absolute(&self, frag: usize) -> usize {
        self.abs(frag)
    }

    #[cfg(feature = "check-invariants")]
    pub fn node_inside(&self, k: u32, abs: usize) -> bool {
        self.inside(k, abs)
    }
}

/// Byte written over freshly allocated blocks in debug builds.
pub(crate) const FRESH: u8 = 0xD0;
/// Byte written over freed blocks in debug builds.
pub(crate) const FREED: u8 = 0xDF;
/// At most this many bytes of a block are poisoned, so debug builds stay usable with big blocks.
const POISON_LIMIT: usize = 4096;

/// Fills the start of the `fragments` fragments at `frag` (inside a block of order `k`) with
/// `byte` in debug builds, so reads of fresh or freed memory show a recognisable pattern
/// (mimalloc's `0xD0` / `0xDF`).
#[inline]
pub(crate) fn poison(slot: &Slot, frag: usize, k: Order, fragments: usize, byte: u8) {
    if cfg!(debug_assertions) {
        let len = (fragments << slot.math.min_log2()).min(slot.math.block_size(k)).min(POISON_LIMIT);
        let ptr = slot.ptr_to(frag);
        // SAFETY: the fragments lie in the block area and belong to the policy at this moment
        // (being handed out or being freed); `len` does not exceed them.
        unsafe { ptr.write_bytes(byte, len) };
    }
}
