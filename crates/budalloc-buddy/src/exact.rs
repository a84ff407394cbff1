//! Multi-piece blocks: exact fit and in-place reshaping.
//!
//! An allocation of `need` fragments at fragment `f` is made of **pieces**: the binary digits of
//! `need`, highest first, each a naturally aligned buddy block (`need = 5` → a 4-fragment piece
//! at `f`, a 1-fragment piece at `f + 4`). With plain power-of-two blocks `need = 2^k` and there
//! is one piece. The first piece (the head) has its `C` bit clear, the later ones set, and the
//! fragment right after the last piece never carries a `C` bit of this allocation; so a free
//! with a layout of another size, or at a later piece, is told apart from a valid one.
//!
//! Exact fit allocates a `2^k` block and gives back the unused tail as free buddy blocks
//! ([`Slot::trim`]), like Linux's `alloc_pages_exact`, so at most `MIN - 1` bytes of an
//! allocation are wasted.

use budalloc_core::{Corruption, Order};

use crate::slot::Slot;

/// Most pieces an allocation can have (one per order), and most free blocks a reshape absorbs.
const MAX_PIECES: usize = budalloc_core::MAX_ORDERS * 2;

/// A small stack-allocated list, so the policy never allocates.
struct List<T: Copy, const N: usize> {
    items: [Option<T>; N],
    len: usize,
}

impl<T: Copy, const N: usize> List<T, N> {
    fn new() -> Self {
        List { items: [None; N], len: 0 }
    }

    fn push(&mut self, item: T) {
        debug_assert!(self.len < N, "piece list overflow");
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = Some(item);
            self.len += 1;
        }
    }

    fn iter(&self) -> impl DoubleEndedIterator<Item = T> + '_ {
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

/// The pieces of an allocation of `need` fragments starting at `frag`, highest order first.
pub(crate) fn pieces(frag: usize, need: usize) -> impl DoubleEndedIterator<Item = (usize, Order)> + Clone {
    let top = usize::BITS - need.leading_zeros();
    (0..top).rev().filter(move |&j| need & (1 << j) != 0).map(move |j| {
        let offset = (need >> (j + 1)) << (j + 1);
        (frag + offset, Order::new(j).unwrap_or(Order::ZERO))
    })
}

impl Slot {
    /// Whether a live allocation of `need` fragments (a `2^k`-fragment request) starts at
    /// `frag`: every piece is an allocated block with the right continuation bit, and the
    /// allocation does not go on past `need`.
    #[inline]
    pub fn is_live(&self, frag: usize, k: Order, need: usize) -> bool {
        if self.abs(frag) & (k.fragments() - 1) != 0 {
            return false;
        }
        if need == k.fragments() {
            // One piece: the common case, and the only one without exact fit.
            return self.is_block(frag, k)
                && self.is_allocated(frag)
                && !self.is_continuation(frag)
                && !self.is_continuation(frag + need);
        }
        let pieces_ok = pieces(frag, need).all(|(p, j)| {
            p < self.arena.fragments()
                && self.is_block(p, j)
                && self.is_allocated(p)
                && self.is_continuation(p) == (p != frag)
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
                self.allocated -= self.math().block_size(half);
            }
        }
    }

    /// Checks, without changing anything, every free-block header that freeing `blocks` (given
    /// smallest first, all currently allocated and owned) would unlink while merging.
    fn plan_release(&self, blocks: impl Iterator<Item = (usize, Order)>) -> Result<(), Corruption> {
        let mut merged: List<(usize, Order), MAX_PIECES> = List::new();
        let mut seen: List<usize, MAX_PIECES> = List::new();
        let top = self.math().max_order();
        for (start, order) in blocks {
            let (mut p, mut j) = (start, order);
            while j < top && self.inside(j.get() + 1, self.abs(p)) {
                let buddy_abs = self.abs(p) ^ j.fragments();
                let buddy = buddy_abs - self.arena.first_absolute();
                if merged.remove_where(|&(q, o)| q == buddy && o == j) {
                    // One of our own blocks, freed (and merged) before this one.
                } else if !self.is_split(j.get(), buddy_abs)
                    && !self.is_allocated(buddy)
                    && !seen.iter().any(|s| s == buddy)
                {
                    self.check_header(buddy, j)?;
                    seen.push(buddy);
                } else {
                    break;
                }
                p = p.min(buddy);
                let Some(up) = j.above() else { break };
                j = up;
            }
            merged.push((p, j));
        }
        Ok(())
    }

    /// Frees the live allocation of `need` fragments at `frag`, merging every piece. On `Err`
    /// nothing changed.
    pub fn free_pieces(&mut self, frag: usize, need: usize) -> Result<(), Corruption> {
        self.plan_release(pieces(frag, need).rev())?;
        for (p, j) in pieces(frag, need).rev() {
            self.set_continuation(p, false);
            self.free(p, j)?;
        }
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
        // Pieces wholly past the new end are freed; the one that straddles it is trimmed.
        let outside = pieces(frag, old).filter(|&(p, _)| p >= end);
        self.plan_release(outside.clone().rev())?;
        if let Some((p, j)) = pieces(frag, old).find(|&(p, j)| p < end && end < p + j.fragments()) {
            self.trim(p, j, end - p);
        }
        for (p, j) in outside.rev() {
            self.set_continuation(p, false);
            self.free(p, j)?;
        }
        Ok(())
    }

    fn grow_to(&mut self, frag: usize, old: usize, new: usize) -> Result<bool, Corruption> {
        // The highest bit where `new` has a piece and `old` has none: that node must become one
        // piece, made of `old`'s lower pieces and the free blocks behind them.
        let b = usize::BITS - 1 - ((new ^ old) & new).leading_zeros();
        let Some(order) = Order::new(b) else { return Ok(false) };
        let node = frag + ((new >> (b + 1)) << (b + 1));
        let old_low = old & (order.fragments() - 1);
        if old_low == 0 {
            // `old` ends at the node: the extension is one run of free memory right behind it.
            return self.extend_from_free(frag + old, new - old);
        }
        let fits = order <= self.math().max_order()
            && self.abs(node) & (order.fragments() - 1) == 0
            && self.inside(b, self.abs(node));
        if !fits {
            return Ok(false);
        }
        let new_low = new & (order.fragments() - 1);
        // Check pass: behind our pieces, the node holds only free blocks (it is split, so they
        // lie inside it); after it, a free block starts that can hold `new`'s lower pieces.
        let mut absorbed: List<(usize, Order), MAX_PIECES> = List::new();
        let mut at = node + old_low;
        while at < node + order.fragments() {
            let block = self.find_block(at);
            if block.allocated {
                return Ok(false);
            }
            self.check_header(at, block.order)?;
            absorbed.push((at, block.order));
            at += block.order.fragments();
        }
        let rest = node + order.fragments();
        if new_low > 0 && !self.free_run_at(rest, new_low)? {
            return Ok(false);
        }
        // Commit: the node becomes one allocated piece. Headers are read again at unlink time:
        // unlinking one block rewrites the links of its list neighbours.
        for (p, j) in absorbed.iter() {
            self.unlink(p, j, self.header(p));
            self.allocated += self.math().block_size(j);
        }
        for (p, _) in pieces(node, old_low) {
            self.set_allocated(p, false);
            self.set_continuation(p, false);
        }
        self.clear_below(node, order);
        self.set_allocated(node, true);
        self.set_continuation(node, node != frag);
        if new_low > 0 {
            self.take_free_run(rest, new_low);
        }
        Ok(true)
    }

    /// Whether a free block starts at `at` that can hold `len` fragments (its header checked).
    fn free_run_at(&self, at: usize, len: usize) -> Result<bool, Corruption> {
        if at >= self.arena.fragments() {
            return Ok(false);
        }
        let block = self.find_block(at);
        if block.allocated || block.frag != at || block.order.fragments() < len {
            return Ok(false);
        }
        self.check_header(at, block.order)?;
        Ok(true)
    }

    /// Takes the free block at `at` (checked by [`Self::free_run_at`]) as continuation pieces of
    /// `len` fragments, freeing the rest of it.
    fn take_free_run(&mut self, at: usize, len: usize) {
        let order = self.find_block(at).order;
        self.unlink(at, order, self.header(at));
        self.allocated += self.math().block_size(order);
        self.set_allocated(at, true);
        self.set_continuation(at, true);
        self.trim(at, order, len);
    }

    /// Grows an allocation whose last piece ends at `at` by `len` fragments of the free block
    /// that starts there.
    fn extend_from_free(&mut self, at: usize, len: usize) -> Result<bool, Corruption> {
        if !self.free_run_at(at, len)? {
            return Ok(false);
        }
        self.take_free_run(at, len);
        Ok(true)
    }
}
