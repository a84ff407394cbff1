//! `check_invariants()` and metadata snapshots for [`Classes`] (feature `check-invariants`).

use budalloc_core::{Inspect, InvariantError, RawAlloc};

use crate::classes::{held_set, Classes, ALL, EMPTY, PARTIAL};
use crate::slab::{Header, Slab, HEADER_FIXED};

fn broken(what: &'static str, addr: usize) -> Result<(), InvariantError> {
    Err(InvariantError { what, addr })
}

impl<B: RawAlloc, const LIMIT: usize, const STEPS: usize, const CACHE: usize>
    Classes<B, LIMIT, STEPS, CACHE>
{
    /// Walks list `kind` of class `c`, checking that it is doubly linked and `len` long, and
    /// hands each slab with its header to `each`.
    fn check_list(
        &self,
        kind: usize,
        c: usize,
        mut each: impl FnMut(Slab, &Header) -> Result<(), InvariantError>,
    ) -> Result<(), InvariantError> {
        // The walk follows `next` links that check out (sealed slabs of the class): a damaged
        // one ends it early (`len` then disagrees), and the last slab's must be 0.
        let (mut prev, mut walked, mut last_next) = (0, 0, 0);
        for slab in self.slabs(kind, c) {
            let h = slab.get();
            walked += 1;
            let (h_prev, h_next) = h.links(kind == ALL);
            if h_prev != prev {
                return broken("slab lists are doubly linked", slab.addr());
            }
            prev = slab.addr();
            last_next = h_next;
            each(slab, &h)?;
        }
        if walked != self.lists[kind][c].len {
            return broken("`len` is the length of each list", 0);
        }
        if last_next != 0 {
            return broken("slab lists are doubly linked", prev);
        }
        Ok(())
    }
}

impl<B: RawAlloc + Inspect, const LIMIT: usize, const STEPS: usize, const CACHE: usize> Inspect
    for Classes<B, LIMIT, STEPS, CACHE>
{
    fn check_invariants(&self) -> Result<(), InvariantError> {
        self.backend.check_invariants()?;
        let (mut objects, mut slabs, mut waste) = (0usize, 0usize, 0usize);
        for c in 0..Self::TABLE.len {
            let class = Self::TABLE.class(c);
            // Every slab of the class, through `ALL`: its header, bitmap and counts.
            let mut listed = 0;
            self.check_list(ALL, c, |slab, h| {
                let at = slab.addr();
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
                if h.free == 0 && (h.next != 0 || h.prev != 0) {
                    return broken("a full slab is in no partial or empty list", at);
                }
                listed += usize::from(h.free != 0);
                objects += (class.objects - h.free as usize) * class.size;
                slabs += class.slab_size();
                waste += class.slab_waste();
                Ok(())
            })?;
            // The partial and the empty list: slabs of the class, in the right state.
            if self.lists[EMPTY][c].len > CACHE {
                return broken("at most CACHE empty slabs cached per class", 0);
            }
            for kind in [PARTIAL, EMPTY] {
                let mut idle = 0;
                self.check_list(kind, c, |slab, h| {
                    if !self.slabs(ALL, c).any(|s| s == slab) {
                        return broken("every slab of a partial or empty list is one of its class's slabs", slab.addr());
                    }
                    let free = h.free as usize;
                    idle += usize::from(free == class.objects);
                    let right_list = match kind {
                        PARTIAL => free > 0 && idle <= 1,
                        _ => free == class.objects && !self.slabs(PARTIAL, c).any(|s| s == slab),
                    };
                    if !right_list {
                        return broken(
                            "partial slabs have some objects free (all: one at most), cached empty all, and no slab is in both",
                            slab.addr(),
                        );
                    }
                    Ok(())
                })?;
            }
            let idle = self.slabs(PARTIAL, c).any(|slab| slab.get().free as usize == class.objects);
            if (idle || self.lists[EMPTY][c].len > 0) && !self.spare {
                return broken("a heap that holds an empty slab has `spare` set", 0);
            }
            // Every slab with a free object is in one of the two (each in one, by the checks
            // above): as many as they hold.
            if listed != self.lists[PARTIAL][c].len + self.lists[EMPTY][c].len {
                return broken("every slab with a free object is in the partial or the empty list", 0);
            }
        }
        if objects != self.object_bytes || slabs != self.slab_bytes || waste != self.slab_waste {
            return broken("object, slab and waste byte counts are the sums over held slabs", 0);
        }
        for c in 0..Self::TABLE.len {
            if let Some(slab) = self.recent[c] {
                if !self.slabs(ALL, c).any(|s| s == slab) {
                    return broken("the slab last freed into is one of its class's slabs", slab.addr());
                }
            }
        }
        for (entry, held) in self.held.iter().enumerate() {
            if let Some(slab) = *held {
                let class = (0..Self::TABLE.len).find(|&c| self.slabs(ALL, c).any(|s| s == slab));
                let in_its_set = class
                    .is_some_and(|c| held_set(slab.addr(), Self::TABLE.class(c).slab_log2) == entry & !1);
                // In its own set, it can only be held twice as the set's other entry.
                let once = self.held[entry ^ 1] != Some(slab);
                if !in_its_set || !once {
                    return broken(
                        "every slab of the held cache is one of ours, in its own set, once",
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
        sink(&[usize::from(self.spare)]);
        // A few words per call: the held cache alone is a thousand entries.
        for slabs in self.recent.chunks(32).chain(self.held.chunks(32)) {
            let mut words = [0; 32];
            for (word, slab) in words.iter_mut().zip(slabs) {
                *word = slab.map_or(0, |s| s.addr());
            }
            sink(&words[..slabs.len()]);
        }
        for c in 0..Self::TABLE.len {
            let class = Self::TABLE.class(c);
            for kind in [PARTIAL, ALL, EMPTY] {
                let list = self.lists[kind][c];
                sink(&[list.head.map_or(0, |s| s.addr()), list.len]);
            }
            for slab in self.slabs(ALL, c) {
                let h = slab.get();
                sink(&[
                    h.seal,
                    usize::from(h.class),
                    usize::from(h.hint),
                    h.free as usize,
                    h.next,
                    h.prev,
                    h.next_slab,
                    h.prev_slab,
                ]);
                for i in 0..class.words {
                    sink(&[slab.word(i)]);
                }
            }
        }
        let _ = HEADER_FIXED;
    }
}
