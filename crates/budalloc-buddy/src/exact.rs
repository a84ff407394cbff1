//! Multi-piece blocks: exact fit, placement in free runs, and in-place reshaping.
//!
//! An allocation of `need` fragments at fragment `f` is made of **pieces**: the canonical
//! decomposition of the range `f .. f + need` into naturally aligned buddy blocks, found
//! greedily (at each position the largest block aligned there that still fits). From an aligned
//! start these are the binary digits of `need`, highest first (`need = 5` → a 4-fragment piece
//! at `f`, a 1-fragment piece at `f + 4`); from an unaligned start the sizes first rise to the
//! alignment, then fall. With plain power-of-two blocks `need = 2^k` and there is one piece. The
//! first piece (the head) has its `C` bit clear, the later ones set, and the fragment right after
//! the last piece never carries a `C` bit of this allocation; so a free with a layout of another
//! size, or at a later piece, is told apart from a valid one.
//!
//! Exact fit allocates a `2^k` block and gives back the unused tail as free buddy blocks
//! ([`Slot::trim`]), like Linux's `alloc_pages_exact`, so at most `MIN - 1` bytes of an
//! allocation are wasted. When no free block of order `k` is left, the request is placed in a
//! **run** of adjacent free blocks that is long enough ([`Slot::find_run`]), so an arena runs out
//! only when no free range is long enough, not when no aligned one is (talc-like efficiency).
//! Growing in place absorbs the free blocks behind an allocation, wherever it starts.

use budalloc_core::{Corruption, Order};

use crate::slot::{poison, Slot, FREED};

/// Best fit examines at most this many free blocks of each order smaller than the request (the
/// heads of its lists), then the first block that fits alone: a bounded search, close to best
/// fit. Measuring a run reads `U` bits a word at a time, so 32 probes cost little more than 16
/// did and lift the churn workload's efficiency by a point (91.8 to 92.8%, `drive eff
/// budalloc-heap 20`). When the bounded search finds no run, the policy searches every block
/// ([`Fit::EXHAUSTIVE`]) before it reports out of memory.
const BEST_FIT_PROBES: usize = 32;

/// How [`Slot::find_run`] chooses among the runs that can hold a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fit {
    /// The first run found.
    First,
    /// The tightest run through the first `probes` blocks of each list walked.
    Best { probes: usize },
}

impl Fit {
    /// Best fit as large requests use it: [`BEST_FIT_PROBES`] blocks per list.
    pub(crate) const BOUNDED: Fit = Fit::Best { probes: BEST_FIT_PROBES };
    /// Best fit over every block of the lists walked: when the bounded search found nothing.
    pub(crate) const EXHAUSTIVE: Fit = Fit::Best { probes: usize::MAX };
}

/// How far back, in multiples of the request, a run is measured from the free block that
/// found it (its true start packs the request against the allocation before it: 90.5% on
/// talc's recipe where 1 request back gives 89.4%).
const RUN_BACK: usize = 16;

/// Most pieces an allocation can have (two per order), and the capacity of the lists of blocks
/// a release plans ([`Release`]) and a take or a grow in place collects ([`Blocks`]).
pub(crate) const MAX_PIECES: usize = budalloc_core::MAX_ORDERS * 2;

/// What releasing a set of allocated blocks changes ([`Slot::plan_release`]).
struct Release {
    /// The free blocks (not among those released) that the merges absorb, headers checked.
    absorbed: List<(usize, Order), MAX_PIECES>,
    /// The free blocks the release leaves: the released blocks merged with `absorbed`.
    merged: List<(usize, Order), MAX_PIECES>,
}

impl Release {
    fn new() -> Self {
        Release { absorbed: List::new(), merged: List::new() }
    }
}

/// Free blocks `(fragment, order)` in address order, as [`Slot::free_blocks`] collects them.
type Blocks = List<(usize, Order), MAX_PIECES>;

/// A small stack-allocated list, so the policy never allocates.
pub(crate) struct List<T: Copy, const N: usize> {
    items: [Option<T>; N],
    len: usize,
}

impl<T: Copy, const N: usize> List<T, N> {
    fn new() -> Self {
        List { items: [None; N], len: 0 }
    }

    /// Adds `item` unless the list is full (then `false`, and no change).
    fn try_push(&mut self, item: T) -> bool {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = Some(item);
                self.len += 1;
                true
            }
            None => false,
        }
    }

    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = T> + Clone + '_ {
        self.items[..self.len].iter().flatten().copied()
    }

    fn remove_where(&mut self, f: impl Fn(&T) -> bool) -> bool {
        let Some(i) = self.items[..self.len].iter().position(|x| x.as_ref().is_some_and(&f)) else {
            return false;
        };
        self.items[i..self.len].rotate_left(1);
        self.len -= 1;
        self.items[self.len] = None;
        true
    }
}

/// The canonical pieces of a range of fragments: its decomposition into maximal naturally
/// aligned blocks (of at most order `top`). The decomposition is unique, so it is found greedily
/// from either end: the largest block aligned at the front that fits, or the largest block
/// ending at the back whose start is aligned to its size. No storage, in either direction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pieces {
    /// Absolute index of the arena's fragment 0 (alignment is absolute).
    first: usize,
    /// The range still to decompose: `front .. back` (arena fragments).
    front: usize,
    back: usize,
    /// The largest order a piece may have.
    top: u32,
}

impl Pieces {
    /// The pieces of `front .. back` in an arena whose fragment 0 has absolute index `first`.
    pub(crate) const fn new(first: usize, front: usize, back: usize, top: u32) -> Pieces {
        Pieces { first, front, back, top }
    }
}

impl Iterator for Pieces {
    type Item = (usize, Order);

    #[inline]
    fn next(&mut self) -> Option<(usize, Order)> {
        if self.front >= self.back {
            return None;
        }
        let j =
            (self.first + self.front).trailing_zeros().min((self.back - self.front).ilog2()).min(self.top);
        let order = Order::new(j).unwrap_or(Order::ZERO);
        let piece = (self.front, order);
        self.front += order.fragments();
        Some(piece)
    }
}

impl DoubleEndedIterator for Pieces {
    #[inline]
    fn next_back(&mut self) -> Option<(usize, Order)> {
        if self.front >= self.back {
            return None;
        }
        let j = (self.first + self.back).trailing_zeros().min((self.back - self.front).ilog2()).min(self.top);
        let order = Order::new(j).unwrap_or(Order::ZERO);
        self.back -= order.fragments();
        Some((self.back, order))
    }
}

impl Slot {
    /// The pieces of the range of `need` fragments at `frag`, in address order: the largest
    /// naturally aligned block (at most `MAX`) at each position that still fits.
    #[inline]
    pub(crate) fn pieces(&self, frag: usize, need: usize) -> Pieces {
        Pieces::new(self.arena.first_absolute(), frag, frag + need, self.math().max_order().get())
    }

    /// Whether a live allocation of `need` fragments (a `2^k`-fragment request) starts at
    /// `frag`: every piece is an allocated block with the right continuation bit, and the
    /// allocation does not go on past `need`.
    #[inline]
    pub fn is_live(&self, frag: usize, k: Order, need: usize) -> bool {
        if need == k.fragments() && self.abs(frag) & (k.fragments() - 1) == 0 {
            // One piece: the common case, and the only one without exact fit.
            return self.is_block(frag, k)
                && self.is_allocated(frag)
                && !self.is_continuation(frag)
                && !self.is_continuation(frag + need);
        }
        if !self.exact || frag + need > self.arena.fragments() {
            return false;
        }
        let pieces_ok = self.pieces(frag, need).all(|(p, j)| {
            self.is_block(p, j) && self.is_allocated(p) && self.is_continuation(p) == (p != frag)
        });
        pieces_ok && !self.is_continuation(frag + need)
    }

    /// The allocation a continuation piece at `frag` belongs to: the start of its head.
    pub fn head_of(&self, mut frag: usize) -> usize {
        while frag > 0 && self.is_continuation(frag) {
            frag = self.find_block(frag - 1).frag;
        }
        frag
    }

    /// Fragments of the live allocation whose head is at `frag` (its pieces summed).
    pub fn allocation_len(&self, frag: usize) -> usize {
        let mut end = frag + self.find_block(frag).order.fragments();
        while end < self.arena.fragments() && self.is_continuation(end) {
            end += self.find_block(end).order.fragments();
        }
        end - frag
    }

    /// Cuts the allocated block `frag` of order `k` down to its first `need` fragments, freeing
    /// the rest as buddy blocks. The pieces made after the first get their `C` bit set; the first
    /// keeps its own (`frag`'s bits are unchanged).
    pub fn trim(&mut self, frag: usize, k: Order, need: usize) {
        debug_assert!(need >= 1 && need <= k.fragments(), "trim to {need} of {}", k.fragments());
        let mut p = frag;
        let mut j = k;
        let mut left = need;
        while left < j.fragments() {
            self.set_split(j.get(), self.abs(p), true);
            let Some(half) = j.below() else { break };
            j = half;
            if left > half.fragments() {
                // The lower half is a whole piece; go on in the upper half.
                left -= half.fragments();
                p += half.fragments();
                self.set_allocated(p, true);
                self.set_continuation(p, true);
            } else {
                self.push(p + half.fragments(), half);
                self.set_used(p + half.fragments(), half.fragments(), false);
                self.allocated -= self.math().block_size(half);
            }
        }
    }

    /// Plans the release of `blocks` (all currently allocated and owned) as if each were freed
    /// and merged in turn, changing nothing: the free blocks the merges absorb, their headers
    /// checked, and the free blocks left at the end, in the order freeing them one by one would
    /// have pushed them (any order of `blocks` gives the same blocks). Freeing the blocks one by
    /// one would push a merged block that the next one unlinks again; [`Self::release`] unlinks
    /// and pushes each block once. A plan longer than its lists (never in a coalesced arena: at
    /// most one absorbed block per order on each side of the range, one merged block per piece)
    /// is reported as damage, with nothing changed.
    fn plan_release(
        &self,
        blocks: impl Iterator<Item = (usize, Order)>,
        plan: &mut Release,
    ) -> Result<(), Corruption> {
        let top = self.math().max_order();
        for (start, order) in blocks {
            let (mut p, mut j) = (start, order);
            while j < top && self.inside(j.get() + 1, self.abs(p)) {
                let buddy_abs = self.abs(p) ^ j.fragments();
                let buddy = buddy_abs - self.arena.first_absolute();
                if plan.merged.remove_where(|&(q, o)| q == buddy && o == j) {
                    // One of our own blocks, freed (and merged) before this one.
                } else if !self.is_split(j.get(), buddy_abs)
                    && !self.is_allocated(buddy)
                    && !plan.absorbed.iter().any(|(s, _)| s == buddy)
                {
                    self.check_header(buddy, j)?;
                    if !plan.absorbed.try_push((buddy, j)) {
                        return Err(Corruption::Header { addr: self.arena.addr_of(buddy) });
                    }
                } else {
                    break;
                }
                p = p.min(buddy);
                let Some(up) = j.above() else { break };
                j = up;
            }
            if !plan.merged.try_push((p, j)) {
                return Err(Corruption::Header { addr: self.arena.addr_of(p) });
            }
        }
        Ok(())
    }

    /// Frees `blocks` (the ones planned) as [`Self::plan_release`] found: unlinks the free
    /// blocks absorbed, clears the bits of every block freed and the split bits of the nodes
    /// merged above it, and pushes the merged blocks. Every header it unlinks was checked.
    fn release(&mut self, blocks: impl Iterator<Item = (usize, Order)>, plan: &Release) {
        for (q, j) in plan.absorbed.iter() {
            debug_assert!(self.is_free_block(q, j), "the plan absorbs a block that is not free");
            let header = self.header(q);
            self.unlink(q, j, header);
        }
        for (p, k) in blocks {
            poison(self, p, k, k.fragments(), FREED);
            self.set_allocated(p, false);
            self.set_continuation(p, false);
            self.set_used(p, k.fragments(), false);
            self.allocated -= self.math().block_size(k);
            // The nodes between the block and the merged block holding it are unsplit now.
            let abs = self.abs(p);
            let merged = plan.merged.iter().find(|&(q, j)| q <= p && p < q + j.fragments());
            let top = merged.map_or(k, |(_, j)| j);
            for level in k.get() + 1..=top.get() {
                self.set_split(level, abs, false);
            }
        }
        for (q, j) in plan.merged.iter() {
            self.push(q, j);
        }
        // As freeing the blocks one by one would have left them: free, and merged all the way.
        debug_assert!(
            plan.merged.iter().all(|(q, j)| self.is_free_block(q, j) && self.merge_order(q, j) == j),
            "a merged block of the plan is not free, or could merge further"
        );
    }

    /// Frees the live allocation of `need` fragments at `frag`, merging every piece. On `Err`
    /// nothing changed.
    pub fn free_pieces(&mut self, frag: usize, need: usize) -> Result<(), Corruption> {
        let mut plan = Release::new();
        self.plan_release(self.pieces(frag, need).rev(), &mut plan)?;
        self.release(self.pieces(frag, need), &plan);
        Ok(())
    }

    /// Changes the live allocation at `frag` from `old` to `new` fragments where it is:
    /// shrinking frees the tail; growing absorbs the free blocks behind it. `Ok(false)` (and no
    /// change) if the blocks needed are not free; on `Err` nothing changed. The caller checks
    /// that `frag` is aligned to the new request's block.
    pub fn reshape(&mut self, frag: usize, old: usize, new: usize) -> Result<bool, Corruption> {
        if new < old {
            self.shrink_to(frag, old, new)?;
            Ok(true)
        } else if new > old {
            self.grow_to(frag, old, new)
        } else {
            Ok(true)
        }
    }

    fn shrink_to(&mut self, frag: usize, old: usize, new: usize) -> Result<(), Corruption> {
        let end = frag + new;
        // Pieces wholly past the new end are freed; the one that straddles it is trimmed (the
        // canonical pieces of a shorter range are a prefix of the longer one's, the last cut).
        let pieces = self.pieces(frag, old);
        let outside = pieces.filter(|&(p, _)| p >= end);
        let mut plan = Release::new();
        self.plan_release(outside.clone().rev(), &mut plan)?;
        // The straddling piece's tail, freed by the trim, lies inside that piece's node, so it
        // holds no buddy of a piece outside nor of a block merged from one; the node itself
        // stops a merge before the trim (allocated) and after it (split): the plan holds.
        if let Some((p, j)) = pieces.clone().find(|&(p, j)| p < end && end < p + j.fragments()) {
            self.trim(p, j, end - p);
        }
        self.release(outside, &plan);
        Ok(())
    }

    /// Grows the allocation at `frag` from `old` to `new` fragments by absorbing the free blocks
    /// right behind it. `Ok(false)` (and no change) if they are not free or not long enough.
    fn grow_to(&mut self, frag: usize, old: usize, new: usize) -> Result<bool, Corruption> {
        let end = frag + new;
        // Check pass: free blocks start right at our end and reach past `end`.
        let mut blocks = List::new();
        if self.free_blocks(frag + old, end, &mut blocks)?.is_err() {
            return Ok(false);
        }
        for (p, _) in self.pieces(frag, old) {
            self.set_allocated(p, false);
            self.set_continuation(p, false);
        }
        let taken = self.take_blocks(frag + old, &blocks);
        self.lay_out(frag, frag, end, taken);
        Ok(true)
    }

    /// Collects into `blocks` the free blocks that tile `from ..` up to at least `to`, in address
    /// order, checking each header. `Ok(Err(at))` if the fragment `at` starts no free block (it
    /// lies in an allocated one, or past the arena), or if the blocks are more than
    /// [`MAX_PIECES`] (never in a coalesced arena: the callers' ranges lie in one run of free
    /// blocks and are shorter than two of the largest blocks, so they hold at most two blocks
    /// of each order).
    fn free_blocks(
        &self,
        from: usize,
        to: usize,
        blocks: &mut Blocks,
    ) -> Result<Result<(), usize>, Corruption> {
        let mut at = from;
        while at < to {
            if at >= self.arena.fragments() {
                return Ok(Err(at));
            }
            let block = self.find_block(at);
            if block.allocated || block.frag != at {
                return Ok(Err(at));
            }
            self.check_header(at, block.order)?;
            if !blocks.try_push((at, block.order)) {
                return Ok(Err(at));
            }
            at += block.order.fragments();
        }
        Ok(Ok(()))
    }

    /// Takes `blocks` (found by [`Self::free_blocks`] from `from`) off their lists, counting them
    /// as allocated; returns the end of the last.
    fn take_blocks(&mut self, from: usize, blocks: &Blocks) -> usize {
        let mut end = from;
        for (q, j) in blocks.iter() {
            let header = self.header(q);
            self.unlink(q, j, header);
            self.allocated += self.math().block_size(j);
            end = q + j.fragments();
        }
        end
    }

    /// Lays out `lo .. hi`, memory taken off the free lists or out of an allocation (every `A`
    /// and `C` bit in it clear, all of it counted as allocated), as: free blocks over
    /// `lo .. start`, the allocation `start .. end` as its canonical pieces, free blocks over
    /// `end .. hi`. Each piece becomes a block: its node and those below unsplit, its ancestors
    /// split up to the first that already is.
    fn lay_out(&mut self, lo: usize, start: usize, end: usize, hi: usize) {
        for (p, j) in self.pieces(start, end - start) {
            self.make_block(p, j);
            self.set_allocated(p, true);
            self.set_continuation(p, p != start);
        }
        self.set_used(start, end - start, true);
        for (from, to) in [(lo, start), (end, hi)] {
            if from < to {
                for (p, j) in self.pieces(from, to - from) {
                    self.make_block(p, j);
                    self.push(p, j);
                    self.allocated -= self.math().block_size(j);
                }
            }
        }
    }

    fn make_block(&mut self, frag: usize, k: Order) {
        let abs = self.abs(frag);
        // An unsplit node is a block or lies inside one, so nothing below it is split either:
        // only a node that spanned several of the blocks taken needs its interior cleared.
        if self.is_split(k.get(), abs) {
            self.clear_below(frag, k);
        }
        let mut level = k.get() + 1;
        while self.inside(level, abs) && !self.is_split(level, abs) {
            self.set_split(level, abs, true);
            level += 1;
        }
    }

    /// Where a run of adjacent free blocks can hold `need` fragments starting at a fragment
    /// absolutely aligned to `align` fragments (a power of two), if any: the start. With best
    /// fit, the run that fits tightest (large requests then leave the large holes for large
    /// requests); with first fit, the first found. `parked` is an allocated block to count as
    /// free (the policy's parked last-freed block; the caller merges it before taking a run that
    /// holds it). Reads only bits and the headers of the free blocks it walks (checked).
    ///
    /// Any such run holds a free block of order `floor(log2(need + 1)) - 1` or above (or the
    /// block the parked one merges into), so only those lists are walked. Cost: the blocks
    /// walked times the run lengths (in words of `U` bits). Best fit walks at most `probes`
    /// blocks of each of the one or two orders below the request's, and stops at the first
    /// block that fits alone or once no larger order can give a tighter run; large requests
    /// use [`Fit::BOUNDED`], then [`Fit::EXHAUSTIVE`] if that found nothing (a request that
    /// then fails has walked every free block that could start a run). First fit walks every
    /// list from that order up; the policy asks for it when no free block of the request's
    /// order is left (one or two lists of smaller blocks).
    pub fn find_run(
        &self,
        need: usize,
        align: usize,
        parked: Option<(usize, Order)>,
        fit: Fit,
    ) -> Result<Option<usize>, Corruption> {
        let (best, max_probes) = match fit {
            Fit::First => (false, usize::MAX),
            Fit::Best { probes } => (true, probes),
        };
        let lowest = (need + 1).ilog2().saturating_sub(1);
        // (start, run length) of the tightest run so far. Whether to stop: at the first fit, or
        // at an exact one. A run longer than the tightest so far is not measured to its end.
        let mut found: Option<(usize, usize)> = None;
        let consider = |found: &mut Option<(usize, usize)>, run: Option<(usize, usize)>| -> bool {
            if let Some((start, len)) = run {
                if found.is_none_or(|(_, best_len)| len < best_len) {
                    *found = Some((start, len));
                }
                return !best || len == need;
            }
            false
        };
        // Runs are measured up to twice the request at most: all longer runs fit equally loosely.
        let loose = need.saturating_mul(2);
        let cap =
            |found: &Option<(usize, usize)>| best.then(|| found.map_or(loose, |(_, len)| len.min(loose)));
        // A run of `need` fragments holds an aligned node of order `lowest`, all free: after
        // merging, part of a free block of order `lowest` or more. That block is listed, or it
        // is the one the parked block merges into.
        if let Some((frag, order)) = parked
            .filter(|&(frag, order)| order.get() >= lowest || self.merge_order(frag, order).get() >= lowest)
        {
            let run = self.run_around(frag, order, need, align, parked, cap(&found));
            if consider(&mut found, run) {
                return Ok(found.map(|(start, _)| start));
            }
        }
        for j in lowest..=self.math().max_order().get().min(self.top()) {
            let Some(order) = Order::new(j) else { break };
            // Every run through a block of this order is at least that long: none beats a fit
            // as tight, nor does any larger order.
            if best && found.is_some_and(|(_, len)| order.fragments() >= len) {
                break;
            }
            // Blocks this large fit by themselves: the first one is as good as the others.
            let alone = order.fragments() >= need;
            let mut at = self.head(order);
            let mut probes = 0;
            while let Some(frag) = at {
                // Only `next` is followed here: the seal covers it (the full check comes before
                // any unlink).
                let header = self.check_seal(frag, order)?;
                let run = self.run_around(frag, order, need, align, parked, cap(&found));
                if consider(&mut found, run) || (alone && found.is_some()) {
                    return Ok(found.map(|(start, _)| start));
                }
                probes += 1;
                if probes == max_probes {
                    break;
                }
                at = (header.next != crate::slot::NIL).then_some(header.next as usize);
            }
        }
        Ok(found.map(|(start, _)| start))
    }

    /// Whether the run of free blocks holding the free block `frag` of order `order` can hold
    /// `need` fragments aligned to `align`: `(start, length of the run from start)`. With
    /// `Some(cap)`, the run is measured to its end or to `cap` fragments past its start, whichever
    /// comes first; with `None`, only as far as `need`. Reads only the `U` bits, a word at a time.
    fn run_around(
        &self,
        frag: usize,
        order: Order,
        need: usize,
        align: usize,
        parked: Option<(usize, Order)>,
        cap: Option<usize>,
    ) -> Option<(usize, usize)> {
        // The run holding this block: back to its start (the request then packs against the
        // allocation before it), unless that lies more than `RUN_BACK` requests back: the run
        // is then loose anyway, and taken from the block on.
        let floor = frag.saturating_sub(need.saturating_mul(RUN_BACK));
        let lo = match self.free_since(frag, floor, parked) {
            lo if lo == floor && floor > 0 => frag,
            lo => lo,
        };
        debug_assert!(align.is_power_of_two(), "an alignment of {align} fragments");
        let start = (self.abs(lo).saturating_add(align - 1) & !(align - 1)) - self.arena.first_absolute();
        let until = start.saturating_add(cap.unwrap_or(need).max(need)).min(self.arena.fragments());
        let hi = self.free_until((frag + order.fragments()).min(until), until, parked);
        (start + need <= hi).then(|| (start, hi - start))
    }

    /// Checks, changing nothing, the header of every free block that taking the run of `need`
    /// fragments at `start` unlinks, `parked` (an allocated block to count as free, merged by
    /// the caller before the take) aside.
    pub fn check_run(&self, start: usize, need: usize, parked: Option<usize>) -> Result<(), Corruption> {
        let mut at = self.find_block(start).frag;
        while at < start + need {
            let block = self.find_block(at);
            if parked != Some(at) {
                debug_assert!(!block.allocated, "a run found free holds an allocated block");
                self.check_header(at, block.order)?;
            }
            at += block.order.fragments();
        }
        Ok(())
    }

    /// Allocates `need` fragments at `start`, inside a run found by [`Self::find_run`]: the free
    /// blocks over the range are taken and laid out again as the allocation's pieces, with the
    /// memory before and after it in those blocks freed. On `Err` nothing changed.
    pub fn take_run(&mut self, start: usize, need: usize) -> Result<(), Corruption> {
        let first = self.find_block(start).frag;
        let mut blocks = List::new();
        if let Err(at) = self.free_blocks(first, start + need, &mut blocks)? {
            // `find_run` read this run as free in the `U` bits: only damaged bits disagree.
            return Err(Corruption::Header { addr: self.arena.addr_of(at) });
        }
        let hi = self.take_blocks(first, &blocks);
        self.lay_out(first, start, start + need, hi);
        Ok(())
    }
}
