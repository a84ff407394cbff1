//! One arena under the buddy policy: its tree bits, free lists and free-fragment headers.
//!
//! # The bits
//! The arena's bitmap holds, for an arena of `N` fragments:
//!
//! - bits `0 .. N`, **allocated bits** `A`: bit `f` is set iff an allocated block starts at
//!   fragment `f`;
//! - then one **split level** `S_k` per order `k` in `1 ..= top`: one bit per node of order `k`
//!   that lies wholly inside the arena, set iff that node is split into two halves.
//!
//! A node is a *block* iff it is not split and its parent is split. Nodes that stick out of the
//! arena and nodes above the largest order count as split, so with every bit zero the blocks are
//! exactly the seeding: the largest naturally aligned blocks first, then smaller ones. About
//! `2 N` bits in all: with 16-byte fragments, 1.6% of the arena; with 32-byte ones, 0.8%.
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
    /// The arena's tag mixed with this fragment's index and order ([`Slot::seal`]): a header
    /// copied from elsewhere or flipped by a stray write does not match.
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
    /// Highest order with split bits: `min(max_order, log2(N))`. Invariant: no node above it lies
    /// wholly inside the arena below `max_order`.
    top: u32,
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
    allocated: usize,
}

/// Where the bits of the split level of order `k` (`k >= 1`) start, for an arena of `n`
/// fragments: level `k` gets `(n >> (k - 1)) - (n >> k) + 2 >= n >> k` bits, enough for every
/// node of order `k` wholly inside the arena, without a per-level table.
#[inline]
const fn level_offset(n: usize, k: u32) -> usize {
    n + (n - (n >> (k - 1))) + 2 * (k as usize - 1)
}

/// Bits of the bitmap for an arena of `n` fragments under geometry `math`.
pub(crate) fn bits_for(math: SizeMath, n: usize) -> Option<usize> {
    let top = top_order(math, n);
    n.checked_mul(2)?.checked_add(2 * top as usize + 2)
}

fn top_order(math: SizeMath, n: usize) -> u32 {
    if n == 0 {
        0
    } else {
        math.max_order().get().min(n.ilog2())
    }
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
    pub fn new(arena: Arena, math: SizeMath) -> Slot {
        let top = top_order(math, arena.fragments());
        let mut slot = Slot {
            arena,
            math,
            top,
            heads: [NIL; MAX_ORDERS],
            nonempty: 0,
            counts: [0; MAX_ORDERS],
            allocated: 0,
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

    #[inline]
    fn abs(&self, frag: usize) -> usize {
        self.arena.first_absolute() + frag
    }

    /// Whether the node of order `k` containing absolute fragment `abs` lies wholly inside the
    /// arena (and `k` is at most `top`).
    #[inline]
    fn inside(&self, k: u32, abs: usize) -> bool {
        if k > self.top {
            return false;
        }
        let first = (abs >> k) << k;
        let lo = self.arena.first_absolute();
        first >= lo && first + (1 << k) <= lo + self.arena.fragments()
    }

    /// Bit index of the split bit of the node of order `k` (`1 ..= top`) containing `abs`, which
    /// must lie wholly inside the arena.
    #[inline]
    fn split_bit(&self, k: u32, abs: usize) -> usize {
        let lo = self.arena.first_absolute().div_ceil(1 << k);
        level_offset(self.arena.fragments(), k) + (abs >> k) - lo
    }

    /// Whether the node of order `k` containing `abs` is split. Order-0 nodes never are; nodes
    /// sticking out of the arena or above `top` always are.
    #[inline]
    fn is_split(&self, k: u32, abs: usize) -> bool {
        if k == 0 {
            return false;
        }
        if !self.inside(k, abs) {
            return true;
        }
        self.arena.bitmap().bits()[self.split_bit(k, abs)]
    }

    #[inline]
    fn set_split(&mut self, k: u32, abs: usize, split: bool) {
        debug_assert!(k >= 1 && self.inside(k, abs), "split bit of a node outside the arena");
        let bit = self.split_bit(k, abs);
        self.arena.bitmap_mut().bits_mut().set(bit, split);
    }

    /// Whether an allocated block starts at `frag`.
    #[inline]
    pub fn is_allocated(&self, frag: usize) -> bool {
        self.arena.bitmap().bits()[frag]
    }

    #[inline]
    fn set_allocated(&mut self, frag: usize, allocated: bool) {
        self.arena.bitmap_mut().bits_mut().set(frag, allocated);
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

    /// The block that contains fragment `frag` (`frag < N`): O(orders) probes, for error reports
    /// and maps.
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
    fn seal(&self, frag: usize, k: Order) -> u32 {
        self.arena.bitmap().tag() ^ ((frag as u32) ^ (k.get() << 27)).wrapping_mul(0x9e37_79b1)
    }

    #[inline]
    fn header_ptr(&self, frag: usize) -> NonNull<FreeHeader> {
        self.arena.ptr_of(frag).cast()
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

    /// Checks the header of the free block of order `k` at `frag`: seal, order, and links that
    /// point at free blocks of the same order (so that unlinking never writes into a live block).
    pub fn check_header(&self, frag: usize, k: Order) -> Result<FreeHeader, Corruption> {
        let header = self.header(frag);
        let bad = Corruption::Header { addr: self.arena.addr_of(frag) };
        if header.seal != self.seal(frag, k) || u32::from(header.order) != k.get() || header._pad != [0; 3] {
            return Err(bad);
        }
        let link_ok = |link: u32| {
            link == NIL || ((link as usize) < self.arena.fragments() && self.is_free_block(link as usize, k))
        };
        if !link_ok(header.next) || !link_ok(header.prev) {
            return Err(bad);
        }
        if header.prev == NIL && self.heads[k.index()] != frag as u32 {
            return Err(bad);
        }
        Ok(header)
    }

    // ---- free lists -------------------------------------------------------------------------

    /// Puts the free block `frag` of order `k` at the head of its list.
    #[inline]
    fn push(&mut self, frag: usize, k: Order) {
        let i = k.index();
        let old = self.heads[i];
        let header =
            FreeHeader { next: old, prev: NIL, seal: self.seal(frag, k), order: k.get() as u8, _pad: [0; 3] };
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
    fn unlink(&mut self, frag: usize, k: Order, header: FreeHeader) {
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
        self.allocated += self.math.block_size(k);
        Ok(frag)
    }

    /// The free buddies that freeing (or growing) the block `frag` of order `k` up to order
    /// `limit` would merge with, checked without changing anything. Calls `each` with every
    /// buddy and its checked header; returns the order reached. With `strict`, stops with `None`
    /// as soon as a buddy is missing (in-place grow needs all of them; free takes what it finds).
    fn merge_plan(
        &self,
        frag: usize,
        k: Order,
        limit: Order,
        mut each: impl FnMut(usize, Order, FreeHeader),
        strict: bool,
    ) -> Result<Option<Order>, Corruption> {
        let mut start = self.abs(frag);
        let mut j = k;
        while j < limit {
            let size = 1usize << j.get();
            let parent = j.get() + 1;
            let buddy_abs = start ^ size;
            // In-place growth keeps the block where it is: it may only merge upward.
            let needs_lower = strict && buddy_abs < start;
            if needs_lower || !self.inside(parent, start) {
                return Ok(if strict { None } else { Some(j) });
            }
            let buddy = buddy_abs - self.arena.first_absolute();
            // Our node's parent is split, so the buddy is a block iff it is not split itself.
            if self.is_split(j.get(), buddy_abs) || self.is_allocated(buddy) {
                return Ok(if strict { None } else { Some(j) });
            }
            let header = self.check_header(buddy, j)?;
            each(buddy, j, header);
            start &= !size;
            let Some(up) = j.above() else { break };
            j = up;
        }
        Ok(Some(j))
    }

    /// Frees the allocated block of order `k` at `frag` (already validated) and merges it with
    /// its free buddies. On `Err` nothing changed.
    #[inline]
    pub fn free(&mut self, frag: usize, k: Order) -> Result<(), Corruption> {
        // Check pass, read-only: a damaged buddy header is reported before anything changes.
        let target = self.merge_plan(frag, k, self.math.max_order(), |_, _, _| {}, false)?.unwrap_or(k);
        poison(self, frag, k, FREED);
        self.set_allocated(frag, false);
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
        Ok(())
    }

    /// Grows the allocated block `frag` from order `k` to order `to > k` by absorbing the free
    /// buddies above it. On `Err` (or `Ok(false)`: the buddies are not free) nothing changed.
    pub fn grow(&mut self, frag: usize, k: Order, to: Order) -> Result<bool, Corruption> {
        if self.merge_plan(frag, k, to, |_, _, _| {}, true)? != Some(to) {
            return Ok(false);
        }
        let mut j = k;
        while j < to {
            let buddy = frag + j.fragments();
            let header = self.header(buddy);
            self.unlink(buddy, j, header);
            let Some(up) = j.above() else { break };
            j = up;
            self.set_split(j.get(), self.abs(frag), false);
        }
        self.allocated += self.math.block_size(to) - self.math.block_size(k);
        Ok(true)
    }

    /// Shrinks the allocated block `frag` from order `k` to order `to < k`, freeing the upper
    /// halves.
    pub fn shrink(&mut self, frag: usize, k: Order, to: Order) {
        let abs = self.abs(frag);
        let mut j = k;
        while j > to {
            self.set_split(j.get(), abs, true);
            let Some(half) = j.below() else { break };
            j = half;
            self.push(frag + half.fragments(), half);
        }
        self.allocated -= self.math.block_size(k) - self.math.block_size(to);
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

    #[cfg(feature = "check-invariants")]
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

    /// Whether no block strictly inside the block at `frag` of order `k` is marked: no `A` bit
    /// past its first fragment and no split bit on any node below it (word-wise range checks).
    #[cfg(feature = "check-invariants")]
    pub fn interior_clear(&self, frag: usize, k: Order) -> bool {
        let bits = self.arena.bitmap().bits();
        if bits[frag + 1..frag + k.fragments()].any() {
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

/// Fills the start of block `frag` of order `k` with `byte` in debug builds, so reads of fresh
/// or freed memory show a recognisable pattern (mimalloc's `0xD0` / `0xDF`).
#[inline]
pub(crate) fn poison(slot: &Slot, frag: usize, k: Order, byte: u8) {
    if cfg!(debug_assertions) {
        let len = slot.math.block_size(k).min(POISON_LIMIT);
        let ptr = slot.arena.ptr_of(frag);
        // SAFETY: block `frag` of order `k` lies in the block area and belongs to the policy at
        // this moment (being handed out or being freed); `len` does not exceed it.
        unsafe { ptr.write_bytes(byte, len) };
    }
}
