//! [`Fake`]: a stand-in backing policy with no metadata in its region.

use core::alloc::Layout;
use core::ptr::NonNull;
use std::collections::{BTreeMap, BTreeSet};

use budalloc_core::{AllocError, FreeError, Inspect, InvariantError, RawAlloc, Stats, MAX_ORDERS};

use crate::Region;

/// A first-fit allocator over one region: blocks in a map, no metadata in the region. Enough
/// of `RawAlloc` for a layer over a backend (slabs, chunks), with the buddy's error conventions
/// (free memory is a double free, inside a block an interior pointer, a block start with
/// another size a layout mismatch). It never reads or writes the region: a layer's tests run
/// over it under Stacked Borrows, which the buddy's bitmaps (bitvec) fail (ferrilab/bitvec#193).
pub struct Fake {
    base: NonNull<u8>,
    len: usize,
    /// Live blocks: start → (layout, length).
    live: BTreeMap<usize, (Layout, usize)>,
    /// Calls of `validate` so far.
    validations: core::cell::Cell<usize>,
    /// Calls of `rebase` so far (a walk over the slab lists makes one per slab).
    rebases: core::cell::Cell<usize>,
    /// Whether `allocate_marked` marks (else the trait's defaults: no marks, `is_marked` says
    /// `None`), and the marked blocks' starts.
    marks: Option<BTreeSet<usize>>,
}

impl Fake {
    /// A fake over all of `region`, keeping no marks (`is_marked` says `None`, as the trait's
    /// default).
    pub fn new(region: &Region) -> Fake {
        let (ptr, len) = region.whole();
        Fake {
            base: NonNull::new(ptr).unwrap(),
            len,
            live: BTreeMap::new(),
            validations: Default::default(),
            rebases: Default::default(),
            marks: None,
        }
    }

    /// The same fake, keeping marks.
    pub fn marking(region: &Region) -> Fake {
        Fake { marks: Some(Default::default()), ..Fake::new(region) }
    }

    /// Live blocks.
    pub fn live_blocks(&self) -> usize {
        self.live.len()
    }

    /// Whether a live block starts at `addr`.
    pub fn is_live(&self, addr: usize) -> bool {
        self.live.contains_key(&addr)
    }

    /// Calls of `validate` so far.
    pub fn validations(&self) -> usize {
        self.validations.get()
    }

    /// Calls of `rebase` so far.
    pub fn rebases(&self) -> usize {
        self.rebases.get()
    }

    fn start(&self) -> usize {
        self.base.addr().get()
    }

    /// First address aligned to `align` where `len` bytes are free (checked arithmetic: a
    /// request too large for the address space finds nothing).
    fn find(&self, len: usize, align: usize) -> Option<usize> {
        let mut at = self.start().checked_next_multiple_of(align)?;
        for (&start, &(_, l)) in &self.live {
            if at.checked_add(len)? <= start {
                break;
            }
            // A live block lies inside the region: its end does not overflow.
            at = at.max((start + l).checked_next_multiple_of(align)?);
        }
        (at.checked_add(len)? <= self.start() + self.len).then_some(at)
    }

    fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.start()) < self.len
    }
}

// SAFETY: blocks are disjoint ranges of the region (`find` skips live ones), handed out whole
// and taken back only when live; the region is valid for the fake's lifetime.
unsafe impl RawAlloc for Fake {
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let len = layout.size().max(1).next_multiple_of(16);
        let at = self
            .find(len, layout.align())
            .ok_or(AllocError::OutOfMemory { size: layout.size(), block: len })?;
        self.live.insert(at, (layout, len));
        let ptr = self.base.with_addr(core::num::NonZeroUsize::new(at).unwrap());
        Ok(NonNull::slice_from_raw_parts(ptr, len))
    }

    unsafe fn try_deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        self.validate(ptr, layout)?;
        self.live.remove(&ptr.addr().get());
        if let Some(marks) = &mut self.marks {
            marks.remove(&ptr.addr().get());
        }
        Ok(())
    }

    fn allocate_marked(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = self.allocate(layout)?;
        if let Some(marks) = &mut self.marks {
            marks.insert(block.cast::<u8>().addr().get());
        }
        Ok(block)
    }

    fn is_marked(&self, ptr: NonNull<u8>) -> Option<bool> {
        self.marks.as_ref().map(|marks| marks.contains(&ptr.addr().get()))
    }

    fn validate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        self.validations.set(self.validations.get() + 1);
        let addr = ptr.addr().get();
        if !self.contains(addr) {
            return Err(FreeError::ForeignPointer { addr });
        }
        match self.live.range(..=addr).next_back() {
            Some((&start, &(l, len))) if addr < start + len => {
                if start != addr {
                    Err(FreeError::InteriorPointer { addr, block: start })
                } else if l.align() != layout.align() || layout.size() < l.size() || layout.size() > len {
                    Err(FreeError::LayoutMismatch {
                        addr,
                        block_size: len,
                        size: layout.size(),
                        align: layout.align(),
                        layout_block: layout.size(),
                    })
                } else {
                    Ok(())
                }
            }
            _ => Err(FreeError::DoubleFree { addr, size: layout.size() }),
        }
    }

    fn rebase(&self, ptr: NonNull<u8>) -> Option<NonNull<u8>> {
        self.rebases.set(self.rebases.get() + 1);
        self.contains(ptr.addr().get()).then(|| self.base.with_addr(ptr.addr()))
    }

    unsafe fn grow_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // Never in place, but a bad block is reported first, as the trait asks.
        self.validate(ptr, old).map_err(AllocError::invalid_block)?;
        Err(AllocError::OutOfMemory { size: new.size(), block: new.size() })
    }

    unsafe fn shrink_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded from our caller.
        unsafe { self.grow_in_place(ptr, old, new) }
    }

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.contains(ptr.addr().get())
    }

    fn usable_size(&self, layout: Layout) -> Result<usize, AllocError> {
        Ok(layout.size().max(1).next_multiple_of(16))
    }

    fn stats(&self) -> Stats {
        let allocated = self.live.values().map(|&(_, len)| len).sum();
        // The largest power of two that a naturally aligned request gets.
        let largest_free =
            (4..=self.len.ilog2()).rev().map(|k| 1 << k).find(|&p| self.find(p, p).is_some()).unwrap_or(0);
        Stats {
            capacity: self.len,
            allocated,
            free: self.len - allocated,
            overhead: 0,
            largest_free,
            min_block: 16,
            free_blocks: [0; MAX_ORDERS],
            arenas: 1,
        }
    }
}

impl Inspect for Fake {
    fn check_invariants(&self) -> Result<(), InvariantError> {
        Ok(())
    }

    fn visit_metadata(&self, sink: &mut dyn FnMut(&[usize])) {
        for (&start, &(layout, len)) in &self.live {
            let marked = self.marks.as_ref().is_some_and(|marks| marks.contains(&start));
            sink(&[start, layout.size(), layout.align(), len, usize::from(marked)]);
        }
    }
}
