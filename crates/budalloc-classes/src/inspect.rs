//! `check_invariants()` and metadata snapshots for [`Classes`] (feature `check-invariants`).

use budalloc_core::{Inspect, InvariantError, RawAlloc};

use crate::classes::{held_entry, Classes, EMPTY, FULL, PARTIAL};
use crate::slab::HEADER_FIXED;

fn broken(what: &'static str, addr: usize) -> Result<(), InvariantError> {
    Err(InvariantError { what, addr })
}

impl<B: RawAlloc + Inspect, const LIMIT: usize, const STEPS: usize, const CACHE: usize> Inspect
    for Classes<B, LIMIT, STEPS, CACHE>
{
    fn check_invariants(&self) -> Result<(), InvariantError> {
        self.backend.check_invariants()?;
        let (mut objects, mut slabs, mut waste) = (0usize, 0usize, 0usize);
        for c in 0..Self::TABLE.len {
            let class = Self::TABLE.class(c);
            for kind in [PARTIAL, FULL, EMPTY] {
                let list = self.lists[kind][c];
                if kind == EMPTY && list.len > CACHE {
                    return broken("at most CACHE empty slabs cached per class", 0);
                }
                let mut prev = 0;
                let mut walked = 0;
                let mut idle = 0;
                for slab in self.slabs(kind, c) {
                    let at = slab.addr();
                    let h = slab.get();
                    walked += 1;
                    if h.seal != self.seal(at, c) || usize::from(h.class) != c {
                        return broken("every slab carries the seal of its address and class", at);
                    }
                    if at % class.slab_size() != 0
                        || self.backend.validate(slab.ptr(), class.slab_layout).is_err()
                    {
                        return broken(
                            "every slab is a live block of the backend with its class's slab layout",
                            at,
                        );
                    }
                    if h.prev != prev {
                        return broken("slab lists are doubly linked", at);
                    }
                    prev = at;
                    let mut bits = 0usize;
                    for i in 0..class.words {
                        let word = slab.word(i);
                        bits += word.count_ones() as usize;
                        let valid = class.objects - i * usize::BITS as usize;
                        if valid < usize::BITS as usize && word >> valid != 0 {
                            return broken("no bitmap bit is set past the last object", at);
                        }
                        if i < usize::from(h.hint) && word != 0 {
                            return broken("every bitmap word below the hint is zero", at);
                        }
                    }
                    if bits != h.free as usize {
                        return broken("a slab's free count is the number of set bits of its bitmap", at);
                    }
                    let free = h.free as usize;
                    idle += usize::from(free == class.objects);
                    let right_list = match kind {
                        PARTIAL => free > 0 && idle <= 1,
                        FULL => free == 0,
                        _ => free == class.objects,
                    };
                    if !right_list {
                        return broken(
                            "partial slabs have some objects free (all: one at most), full none, cached empty all",
                            at,
                        );
                    }
                    objects += (class.objects - free) * class.size;
                    slabs += class.slab_size();
                    waste += class.slab_waste();
                }
                if walked != list.len {
                    return broken("`len` is the length of each list", 0);
                }
            }
        }
        if objects != self.object_bytes || slabs != self.slab_bytes || waste != self.slab_waste {
            return broken("object, slab and waste byte counts are the sums over held slabs", 0);
        }
        for c in 0..Self::TABLE.len {
            if let Some(slab) = self.recent[c] {
                if ![PARTIAL, FULL, EMPTY].iter().any(|&kind| self.slabs(kind, c).any(|s| s == slab)) {
                    return broken("the slab last freed into is one of its class's slabs", slab.addr());
                }
            }
        }
        for (entry, held) in self.held.iter().enumerate() {
            if let Some(slab) = *held {
                let class = (0..Self::TABLE.len).find(|&c| {
                    [PARTIAL, FULL, EMPTY].iter().any(|&kind| self.slabs(kind, c).any(|s| s == slab))
                });
                let at_its_entry =
                    class.is_some_and(|c| held_entry(slab.addr(), Self::TABLE.class(c).slab_log2) == entry);
                if !at_its_entry {
                    return broken(
                        "every slab of the held cache is one of ours, at its own entry",
                        slab.addr(),
                    );
                }
            }
        }
        if self.slab_bytes > 0 && !self.keyed {
            return broken("the secret is stirred whenever a slab is held", 0);
        }
        Ok(())
    }

    fn visit_metadata(&self, sink: &mut dyn FnMut(&[usize])) {
        self.backend.visit_metadata(sink);
        sink(&[
            self.object_bytes,
            self.slab_bytes,
            self.slab_waste,
            self.secret as usize,
            usize::from(self.keyed),
        ]);
        for slab in self.recent.iter().chain(&self.held) {
            sink(&[slab.map_or(0, |s| s.addr())]);
        }
        for c in 0..Self::TABLE.len {
            let class = Self::TABLE.class(c);
            for kind in [PARTIAL, FULL, EMPTY] {
                let list = self.lists[kind][c];
                sink(&[list.head.map_or(0, |s| s.addr()), list.len]);
                for slab in self.slabs(kind, c) {
                    let h = slab.get();
                    sink(&[
                        h.seal,
                        usize::from(h.class),
                        usize::from(h.hint),
                        h.free as usize,
                        h.next,
                        h.prev,
                    ]);
                    for i in 0..class.words {
                        sink(&[slab.word(i)]);
                    }
                }
            }
        }
        let _ = HEADER_FIXED;
    }
}
