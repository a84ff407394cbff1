//! [`Inspect`] for [`Tlsf`]: every invariant stated on its fields, checked by a walk of every
//! chunk and every bin (O(chunks × granules / 64 + free blocks)).

use budalloc_core::{Inspect, InvariantError, RawAlloc};

use crate::chunk::{Chunk, Map, GRANULE};
use crate::tlsf::{bin_of, Bin, Free, Tlsf, FL, HELD, SL};

impl<B: RawAlloc + Inspect, const CHUNK: usize, const MAX: usize> Tlsf<B, CHUNK, MAX> {
    /// The chunks of the list, front to back, at most `count + 1` of them (a damaged link ends
    /// the walk).
    fn chunk_list(&self) -> impl Iterator<Item = Chunk> + '_ {
        let mut at = self.chunks;
        let mut left = self.count + 1;
        core::iter::from_fn(move || {
            if at == 0 || left == 0 {
                return None;
            }
            left -= 1;
            let chunk = self.chunk_of(at).filter(|c| c.addr() == at)?;
            at = chunk.header().next;
            Some(chunk)
        })
    }

    /// Checks one chunk's blocks; returns `(live granules, free granules, free blocks)`.
    fn check_chunk(&self, chunk: Chunk) -> Result<(usize, usize, usize), InvariantError> {
        let broken = |what, addr| Err(InvariantError { what, addr });
        let shape = Self::SHAPE;
        let base = chunk.addr();
        if chunk.next_set(shape, Map::S, 0, shape.first) != shape.first
            || chunk.next_set(shape, Map::U, 0, shape.first) != shape.first
        {
            return broken("no bit is set below a chunk's data area", base);
        }
        for w in 0..shape.summary * usize::BITS as usize {
            let nonzero = w < shape.words && chunk.word(shape, Map::S, w) != 0;
            if chunk.bit(shape, Map::Z, w) != nonzero {
                return broken("bit w of Z is set iff word w of S is not zero", base);
            }
        }
        if !chunk.bit(shape, Map::S, shape.first) {
            return broken("a block starts at a chunk's first data granule", base);
        }
        let (mut live, mut free, mut blocks) = (0, 0, 0);
        let mut g = shape.first;
        let mut previous_free = false;
        while g < shape.granules {
            let end = chunk.next_set(shape, Map::S, g + 1, shape.granules);
            let addr = base + g * GRANULE;
            let used = chunk.bit(shape, Map::U, g);
            let marked = if used {
                chunk.bit(shape, Map::U, end - 1)
                    && (end - g < 3 || chunk.next_set(shape, Map::U, g + 1, end - 1) == end - 1)
            } else {
                chunk.next_set(shape, Map::U, g, end) == end
            };
            if !marked {
                return broken(
                    "a live block's U bits are set at its two ends only, a free block's nowhere",
                    addr,
                );
            }
            if used {
                live += end - g;
                previous_free = false;
            } else {
                if previous_free {
                    return broken("no two free blocks are adjacent (frees merge)", addr);
                }
                let Ok(Free { h, .. }) = self.check_free(chunk, addr) else {
                    return broken("every free block's header is sealed and linked", addr);
                };
                if h.granules != end - g {
                    return broken("a free header holds its block's length", addr);
                }
                if self.footer_of(chunk, end) != end - g {
                    return broken("a free block's footer holds its length", addr);
                }
                free += end - g;
                blocks += 1;
                previous_free = true;
            }
            g = end;
        }
        Ok((live, free, blocks))
    }
}

impl<B: RawAlloc + Inspect, const CHUNK: usize, const MAX: usize> Inspect for Tlsf<B, CHUNK, MAX> {
    fn check_invariants(&self) -> Result<(), InvariantError> {
        let broken = |what, addr| Err(InvariantError { what, addr });
        let shape = Self::SHAPE;
        // The chunks: sealed, linked both ways, live marked blocks of the backend.
        let (mut live, mut free, mut blocks, mut chunks) = (0, 0, 0, 0);
        let mut prev = 0;
        for chunk in self.chunk_list() {
            let h = chunk.header();
            if h.seal != self.chunk_seal(chunk.addr()) || h.prev != prev {
                return broken("every chunk is sealed and links back to its predecessor", chunk.addr());
            }
            if chunk.addr() % CHUNK != 0
                || self.backend.validate(chunk.ptr(), Self::CHUNK_LAYOUT).is_err()
                || self.backend.is_marked(chunk.ptr()) == Some(false)
            {
                return broken(
                    "every chunk is a marked live block of the backend with the chunk layout",
                    chunk.addr(),
                );
            }
            let (l, f, b) = self.check_chunk(chunk)?;
            if l == 0 && self.spare != Some(chunk) {
                return broken("only the spare chunk has no live block", chunk.addr());
            }
            live += l;
            free += f;
            blocks += b;
            chunks += 1;
            prev = chunk.addr();
        }
        if chunks != self.count {
            return broken("count is the length of the list of chunks", self.chunks);
        }
        if live * GRANULE != self.live {
            return broken("live sums the live blocks of the chunks", 0);
        }
        if live + free != chunks * shape.data() {
            return broken("the blocks of every chunk tile its data area", 0);
        }
        if self.count > 0 && !self.keyed {
            return broken("the secret is stirred whenever a chunk is held", 0);
        }
        if let Some(spare) = self.spare {
            if !self.chunk_list().any(|c| c == spare)
                || self.check_chunk(spare).map(|(l, _, b)| (l, b)) != Ok((0, 1))
            {
                return broken(
                    "the spare chunk is one of ours whose data area is one free block",
                    spare.addr(),
                );
            }
        }
        // The bins: each list holds free blocks of its bin, every free block is in one.
        let mut listed = 0;
        for f in 0..FL {
            for s in 0..SL {
                let bin = Bin::new(f, s);
                let head = self.heads[bin.0];
                if (self.sl_bitmap[f] >> s & 1 != 0) != (head != 0) {
                    return broken("a second-level bit is set iff its bin is non-empty", head);
                }
                let mut at = head;
                let mut prev = 0;
                while at != 0 {
                    let Some(chunk) = self.chunk_of(at) else {
                        return broken("every listed block lies in a chunk", at);
                    };
                    let g = (at - chunk.addr()) / GRANULE;
                    if !chunk.bit(shape, Map::S, g) || chunk.bit(shape, Map::U, g) {
                        return broken("every listed block is a free block", at);
                    }
                    let h = self.read_free(chunk, at);
                    if bin_of(h.granules) != bin || h.prev != prev {
                        return broken("every listed block is in its length's bin, linked back", at);
                    }
                    listed += 1;
                    if listed > blocks {
                        return broken("the bins hold exactly the free blocks of the chunks", at);
                    }
                    prev = at;
                    at = h.next;
                }
            }
            if (self.fl_bitmap >> f & 1 != 0) != (self.sl_bitmap[f] != 0) {
                return broken("a first-level bit is set iff one of its bins is non-empty", 0);
            }
            if u64::from(self.sl_bitmap[f]) >> SL != 0 {
                return broken("no second-level bit names a bin past the last", 0);
            }
        }
        if u64::from(self.fl_bitmap) >> FL != 0 {
            return broken("no first-level bit names a level past the last", 0);
        }
        if listed != blocks {
            return broken("the bins hold exactly the free blocks of the chunks", 0);
        }
        for (i, entry) in self.held.iter().enumerate() {
            if let Some(chunk) = entry {
                if i != (chunk.addr() / CHUNK) % HELD || !self.chunk_list().any(|c| c == *chunk) {
                    return broken("every cached chunk is one of ours, at its own entry", chunk.addr());
                }
            }
        }
        self.backend.check_invariants()
    }

    fn visit_metadata(&self, sink: &mut dyn FnMut(&[usize])) {
        let shape = Self::SHAPE;
        let mut fields = [self.chunks, self.count, self.live, self.fl_bitmap as usize, 0, 0, 0];
        fields[4] = self.spare.map_or(0, Chunk::addr);
        fields[5] = self.secret as usize;
        fields[6] = usize::from(self.keyed);
        sink(&fields);
        for f in 0..FL {
            sink(&self.heads[f * SL..(f + 1) * SL]);
            sink(&[self.sl_bitmap[f] as usize]);
        }
        for entry in &self.held {
            sink(&[entry.map_or(0, Chunk::addr)]);
        }
        for chunk in self.chunk_list() {
            let h = chunk.header();
            sink(&[h.seal, h.next, h.prev]);
            for map in [Map::S, Map::U] {
                for w in 0..shape.words {
                    sink(&[chunk.word(shape, map, w)]);
                }
            }
            for w in 0..shape.summary {
                sink(&[chunk.word(shape, Map::Z, w)]);
            }
            // The free blocks' headers and footers: the policy's own memory.
            let mut g = shape.first;
            while g < shape.granules {
                let end = chunk.next_set(shape, Map::S, g + 1, shape.granules);
                if !chunk.bit(shape, Map::U, g) {
                    let h = self.read_free(chunk, chunk.addr() + g * GRANULE);
                    sink(&[h.seal, h.next, h.prev, h.granules, self.footer_of(chunk, end)]);
                }
                g = end;
            }
        }
        self.backend.visit_metadata(sink);
    }
}
