//! `check_invariants()` and metadata snapshots for [`Buddy`] (feature `check-invariants`).

use budalloc_core::{Inspect, InvariantError, Order, RawAlloc, MAX_ORDERS};

use crate::slot::{Slot, NIL};
use crate::Buddy;

fn broken(what: &'static str, addr: usize) -> Result<(), InvariantError> {
    Err(InvariantError { what, addr })
}

impl<const MIN: usize, const MAX: usize, const ARENAS: usize, const EXACT: bool> Inspect
    for Buddy<MIN, MAX, ARENAS, EXACT>
{
    fn check_invariants(&self) -> Result<(), InvariantError> {
        if let Some((i, frag, order)) = self.hot() {
            let slot = self.slots().nth(i);
            let parked_ok = slot.is_some_and(|s| {
                frag < s.arena.fragments()
                    && s.is_block(frag, order)
                    && s.is_allocated(frag)
                    && !s.is_continuation(frag)
                    && !s.is_marked(frag, order)
            });
            if !parked_ok {
                return broken("the parked block is an unmarked single-piece block still allocated", 0);
            }
        }
        let mut previous_end = 0;
        for (i, slot) in self.slots().enumerate() {
            let (addr, len) = slot.arena.region();
            if addr < previous_end {
                return broken("arenas sorted by address, regions disjoint", addr);
            }
            previous_end = addr + len;
            let parked = self.hot().and_then(|(h, frag, order)| (h == i).then_some((frag, order)));
            check_slot(slot, parked)?;
        }
        // The figures agree with themselves, the parked block counted as merged: the free
        // blocks add up to the free bytes, and the largest of them is `largest_free`.
        let stats = self.stats();
        let listed: usize = stats.free_blocks.iter().enumerate().map(|(k, &n)| n * (MIN << k)).sum();
        let largest = stats.free_blocks.iter().rposition(|&n| n > 0).map_or(0, |k| MIN << k);
        if listed != stats.free || largest != stats.largest_free {
            return broken("stats: free blocks add up to `free`, the largest is `largest_free`", listed);
        }
        Ok(())
    }

    fn visit_metadata(&self, sink: &mut dyn FnMut(&[usize])) {
        let parked = self.hot().map_or([usize::MAX; 3], |(i, frag, order)| [i, frag, order.index()]);
        sink(&parked);
        for slot in self.slots() {
            sink(slot.arena.bitmap().raw_words());
            for (&head, &count) in slot.heads().iter().zip(slot.free_counts()) {
                sink(&[head as usize, count as usize]);
            }
            sink(&[slot.nonempty() as usize, slot.allocated_bytes()]);
            // The headers of free blocks are metadata too: walk each list (bounded by its
            // count, so a damaged link cannot loop).
            for (k, &head) in slot.heads().iter().enumerate() {
                let mut at = head;
                for _ in 0..slot.free_counts()[k] {
                    let order = Order::new(k as u32).unwrap_or(Order::ZERO);
                    if at == NIL
                        || at as usize >= slot.arena.fragments()
                        || !slot.is_free_block(at as usize, order)
                    {
                        break;
                    }
                    let h = slot.header(at as usize);
                    sink(&[h.next as usize, h.prev as usize, h.seal as usize, usize::from(h.order)]);
                    at = h.next;
                }
            }
        }
    }
}

/// Checks one arena, whose parked block is `parked` if it has it, against every invariant
/// stated on `Slot`'s fields and in the module docs.
fn check_slot(slot: &Slot, parked: Option<(usize, Order)>) -> Result<(), InvariantError> {
    let arena = &slot.arena;
    let math = slot.math();
    if let Err(e) = arena.bitmap().check_keys() {
        let addr = match e {
            budalloc_core::Corruption::GuardKey { addr, .. } | budalloc_core::Corruption::Header { addr } => {
                addr
            }
        };
        return broken("both guard keys hold their values", addr);
    }
    // Walk the tiling of blocks: covered bits are zero, free blocks are merged and sealed.
    let mut free_seen = [0u32; MAX_ORDERS];
    let mut allocated = 0usize;
    let mut previous: Option<budalloc_core::BlockView> = None;
    let mut frag = 0;
    while frag < arena.fragments() {
        let block = slot.find_block(frag);
        let at = arena.addr_of(block.frag);
        if block.frag != frag {
            return broken("blocks tile the arena", at);
        }
        let k = block.order;
        if k > math.max_order() || block.frag + k.fragments() > arena.fragments() {
            return broken("every block lies inside the arena, at most MAX", at);
        }
        let abs = slot.absolute(frag);
        if !abs.is_multiple_of(k.fragments()) {
            return broken("a block of order k is aligned to its size", at);
        }
        if !slot.interior_clear(frag, k, block.allocated) {
            return broken(
                "inside a block, A bits are clear past its start (but an allocated block's mark) and no node is split",
                at,
            );
        }
        if slot.exact {
            // Word-wise: this runs for every block at every check, under Miri too.
            let (from, to) = (2 * arena.fragments() + frag, 2 * arena.fragments() + frag + k.fragments());
            let stray = if block.allocated {
                arena.bitmap().next_clear(from, to)
            } else {
                arena.bitmap().next_set(from, to)
            };
            if stray != to {
                return broken("a fragment's U bit is set iff it lies in an allocated block", at);
            }
        }
        for level in k.get() + 1..=slot.split_levels() {
            if slot.node_inside(level, abs) && !slot.node_split(level, abs) {
                return broken("every ancestor of a block is split", at);
            }
        }
        if slot.is_continuation(frag) {
            if !block.allocated || !previous.is_some_and(|p| p.allocated) {
                return broken("a continuation piece is allocated and follows an allocated piece", at);
            }
        } else if block.allocated {
            let len = slot.allocation_len(frag);
            let canonical = slot.pieces(frag, len).all(|(p, j)| {
                let piece = slot.find_block(p);
                piece.frag == p && piece.order == j && piece.allocated
            });
            if !canonical {
                return broken("an allocation's pieces are the canonical aligned pieces of its range", at);
            }
        }
        previous = Some(budalloc_core::BlockView { frag, order: k, allocated: block.allocated });
        if block.allocated {
            allocated += math.block_size(k);
        } else {
            free_seen[k.index()] += 1;
            if slot.check_header(frag, k).is_err() {
                return broken("a free block's header carries its seal, order and free-block links", at);
            }
            let buddy_abs = abs ^ k.fragments();
            let parent = k.get() + 1;
            if k < math.max_order() && slot.node_inside(parent, abs) {
                let buddy = buddy_abs - (abs - frag);
                if slot.is_free_block(buddy, k) {
                    return broken("no two free buddies are left unmerged", at);
                }
            }
        }
        frag += k.fragments();
    }
    if allocated != slot.allocated_bytes() {
        return broken("`allocated` is the sum of the allocated blocks' sizes", 0);
    }
    if slot.exact && slot.runs_below() != usize::MAX {
        // The longest run of clear `U` bits, the parked block counted as clear, a word at a time.
        let (base, n) = (2 * arena.fragments(), arena.fragments());
        let (mut at, mut longest) = (0, 0);
        while at < n {
            let clear = arena.bitmap().next_clear(base + at, base + n) - base;
            let start = match parked {
                Some((p, _)) if (at..clear).contains(&p) => p,
                _ => clear,
            };
            let end = slot.free_until(start, n, parked);
            longest = longest.max(end - start);
            at = end.max(start + 1);
        }
        if longest >= slot.runs_below() {
            return broken("no run of free fragments (the parked block counted) is `runs_below` long", 0);
        }
    }
    // Walk every free list: members are free blocks of the list's order, linked both ways.
    for (k, &head) in slot.heads().iter().enumerate() {
        let order = Order::new(k as u32).unwrap_or(Order::ZERO);
        if (head != NIL) != (slot.nonempty() & (1 << k) != 0) {
            return broken("bit k of `nonempty` iff list k is not empty", 0);
        }
        let mut length = 0u32;
        let mut prev = NIL;
        let mut at = head;
        while at != NIL {
            let frag = at as usize;
            if frag >= arena.fragments() || !slot.is_free_block(frag, order) {
                return broken("every free-list entry is a free block of the list's order", arena.start());
            }
            let header = slot.header(frag);
            if header.prev != prev {
                return broken("free lists are doubly linked", arena.addr_of(frag));
            }
            length += 1;
            if length > slot.free_counts()[k] {
                return broken(
                    "`counts[k]` is the length of list k (or the list has a cycle)",
                    arena.addr_of(frag),
                );
            }
            prev = at;
            at = header.next;
        }
        if length != slot.free_counts()[k] || length != free_seen[k] {
            return broken("list k holds exactly the free blocks of order k", 0);
        }
    }
    Ok(())
}
