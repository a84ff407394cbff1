//! The buddy policy over one or more arenas.

use core::alloc::Layout;
use core::fmt;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use budalloc_core::{
    write_map, AllocError, Arena, Claim, Corruption, FreeError, Order, RawAlloc, RegionError, SizeMath,
    Stats, MAX_ORDERS,
};

use crate::exact::Fit;
use crate::slot::{bits_for, poison, Slot, FREED, FRESH, HEADER_SIZE};

/// With exact fit, requests of at least this many bytes are placed best fit, in the tightest
/// run of free blocks (a TLSF-like good fit), instead of splitting the smallest free block of
/// their order, which may sit in the largest hole.
pub const BEST_FIT_FROM: usize = 2048;

/// A binary buddy allocator over up to `ARENAS` caller-given regions.
///
/// - `MIN`: the smallest block (a power of two, at least 16 bytes: a free block holds a 16-byte
///   header);
/// - `MAX`: the largest block and the largest alignment served (a power of two, at most
///   `MIN << 31`);
/// - `ARENAS`: how many regions it can hold;
/// - `EXACT`: exact fit. A request of `s` bytes takes the `2^k` block as usual, keeps its first
///   `ceil(s / MIN)` fragments and gives the tail back as free buddy blocks (as Linux's
///   `alloc_pages_exact`), so at most `MIN - 1` bytes are wasted; the free with the same layout
///   returns every piece and merges. Costs one more bit per fragment.
///
/// A request is rounded up to the next power of two at or above `max(size, align, MIN)`; the
/// whole block is returned. Each block of size `s` is aligned to `s` in absolute address, so
/// alignments up to `MAX` cost nothing extra.
///
/// | operation | cost |
/// |---|---|
/// | allocate | O(1) order choice (a word of "non-empty" bits per arena) + O(splits) |
/// | free | O(1) validation (bit probes) + O(merges), no list scanned |
/// | grow / shrink in place | O(orders crossed) |
/// | pointer → arena | O(log arenas), range-checked before any metadata read |
/// | largest free block | O(1) |
/// | exact fit: allocate / free an allocation of `n` fragments | O(pieces), at most `2 log2 n` blocks laid out or merged |
/// | exact fit: place a request of at least [`BEST_FIT_FROM`] bytes | bounded best fit (32 free blocks of each of one or two orders, each run measured a bitmap word at a time); if no run fits, every free block that could start one (O(free blocks)) |
/// | exact fit: refuse a request again | O(arenas): a search that found no run leaves a bound on the runs' length, kept until fragments are freed or a block is parked |
///
/// Invalid `MIN`/`MAX` fail the build when [`Buddy::new`] is instantiated:
///
/// ```compile_fail
/// let heap = budalloc_buddy::Buddy::<8, 1024>::new(); // MIN below 16 bytes
/// ```
pub struct Buddy<
    const MIN: usize = 16,
    const MAX: usize = { 1 << 30 },
    const ARENAS: usize = 8,
    const EXACT: bool = false,
> {
    /// The arenas. Invariant: `slots[..len]` are `Some`, sorted by start address, with disjoint
    /// regions; `slots[len..]` are `None`.
    slots: [Option<Slot>; ARENAS],
    /// Number of arenas in use.
    len: usize,
    /// The block freed last, parked unmerged: `(arena, fragment, order)`. A free followed by an
    /// allocation of the same order (the commonest pattern there is) then costs no split and no
    /// merge; the next free, an allocation that runs short, a resize or [`RawAlloc::flush`]
    /// merges it for real. Invariant: if set, the block is a single-piece block whose `A` bit is
    /// still set (the bitmap counts it as allocated, so no other free or merge can touch it),
    /// and it is in no free list; `stats()` reports it as free.
    hot: Option<(usize, usize, Order)>,
}

// SAFETY: a `Buddy` owns its arenas' regions exclusively (the contract of `claim_raw`) and has no
// shared state; `Slot` is `Send` through `Arena`, and this impl does not depend on `ARENAS`.
unsafe impl<const MIN: usize, const MAX: usize, const ARENAS: usize, const EXACT: bool> Send
    for Buddy<MIN, MAX, ARENAS, EXACT>
{
}

impl<const MIN: usize, const MAX: usize, const ARENAS: usize, const EXACT: bool> Default
    for Buddy<MIN, MAX, ARENAS, EXACT>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<const MIN: usize, const MAX: usize, const ARENAS: usize, const EXACT: bool>
    Buddy<MIN, MAX, ARENAS, EXACT>
{
    /// The geometry; evaluating it fails the build for a bad `MIN`/`MAX`/`ARENAS`.
    const MATH: SizeMath = {
        assert!(MIN >= HEADER_SIZE, "MIN must be at least 16 bytes: a free block holds a 16-byte header");
        assert!(ARENAS >= 1, "ARENAS must be at least 1");
        match SizeMath::new(MIN, MAX) {
            Ok(math) => math,
            Err(message) => panic!("{}", message),
        }
    };

    /// An allocator with no arena yet; give it memory with [`claim`](Self::claim).
    pub const fn new() -> Self {
        let _ = Self::MATH;
        Buddy { slots: [const { None }; ARENAS], len: 0, hot: None }
    }

    /// The block geometry (`MIN`, `MAX`).
    pub const fn math(&self) -> SizeMath {
        Self::MATH
    }

    /// Takes a `'static` region as a new arena. The bitmap is carved from the region's tail; the
    /// rest is seeded largest naturally aligned block first.
    ///
    /// # Errors
    /// The region is too small, overlaps an arena already held, or there is no room for
    /// another arena.
    pub fn claim(&mut self, region: &'static mut [MaybeUninit<u8>]) -> Result<&Arena, RegionError> {
        let len = region.len();
        let ptr = NonNull::from(region).cast::<u8>();
        // SAFETY: a `&'static mut` region is valid for reads and writes for its length and is
        // ours alone for the rest of the program.
        unsafe { self.claim_raw(ptr.as_ptr(), len) }
    }

    /// Takes `len` bytes at `ptr` as a new arena.
    ///
    /// # Errors
    /// A null pointer, a region that wraps around the address space, too small a region, one
    /// that overlaps an arena already held, or no room for another arena.
    ///
    /// # Safety
    /// - `ptr .. ptr + len` must be valid for reads and writes (unless `ptr` is null, which is
    ///   an error);
    /// - nothing but this allocator may access the region until the allocator is dropped, except
    ///   through the blocks it hands out.
    pub unsafe fn claim_raw(&mut self, ptr: *mut u8, len: usize) -> Result<&Arena, RegionError> {
        let base = NonNull::new(ptr).ok_or(RegionError::Null)?;
        let addr = base.addr().get();
        let end = addr.checked_add(len).ok_or(RegionError::Overflow { addr, len })?;
        let at = self.used().partition_point(|s| s.as_ref().is_some_and(|s| s.arena.region().0 < addr));
        let overlaps = |slot: Option<&Option<Slot>>| {
            slot.and_then(Option::as_ref).is_some_and(|s| {
                let (a, l) = s.arena.region();
                a < end && addr < a + l
            })
        };
        if overlaps(self.used().get(at)) || overlaps(at.checked_sub(1).and_then(|p| self.used().get(p))) {
            return Err(RegionError::Overlap { addr });
        }
        if self.len == ARENAS {
            return Err(RegionError::TooManyArenas { capacity: ARENAS });
        }
        let math = Self::MATH;
        let region = NonNull::slice_from_raw_parts(base, len);
        // SAFETY: the caller guarantees the region valid and ours; `bits_for` is monotone in the
        // fragment count.
        let arena = unsafe { Arena::new(region, math.min_log2(), |n| bits_for(math, n, EXACT)) }?;
        // Insert at `at`, keeping the slots sorted.
        self.slots[at..=self.len].rotate_right(1);
        self.slots[at] = Some(Slot::new(arena, math, EXACT));
        self.len += 1;
        if let Some((i, _, _)) = &mut self.hot {
            // The parked block's arena moved up one place.
            if *i >= at {
                *i += 1;
            }
        }
        Ok(&self.slot(at).arena)
    }

    /// The arenas in address order.
    pub fn arenas(&self) -> impl Iterator<Item = &Arena> + '_ {
        self.slots().map(|s| &s.arena)
    }

    /// Whether every arena is back to its initial seeding (nothing allocated, every free block
    /// coalesced back into the original allocation units). Merges the parked block first.
    pub fn is_pristine(&mut self) -> bool {
        self.flush_hot().is_ok() && self.slots().all(Slot::is_pristine)
    }

    /// Merges the parked block (see `hot`) for real. On `Err` nothing changed.
    #[cold]
    fn flush_hot(&mut self) -> Result<(), Corruption> {
        if let Some((i, frag, order)) = self.hot {
            self.slot_mut(i).free(frag, order)?;
            self.hot = None;
        }
        Ok(())
    }

    /// The error for a pointer to the parked block: it was freed already.
    #[inline]
    fn parked_at(&self, addr: usize) -> Option<FreeError> {
        let (i, frag, order) = self.hot?;
        (self.slot(i).arena.addr_of(frag) == addr)
            .then(|| FreeError::DoubleFree { addr, size: Self::MATH.block_size(order) })
    }

    /// Whether merging the parked block would make a free block of at least `order` (checked
    /// without changing anything, so that a refused allocation changes no metadata).
    #[cold]
    fn parked_merges_to(&self, order: Order) -> Result<bool, Corruption> {
        match self.hot {
            Some((i, frag, parked)) => Ok(self.slot(i).merge_plan(frag, parked)? >= order),
            None => Ok(false),
        }
    }

    /// The parked block, for the invariant check and metadata snapshots.
    #[cfg(feature = "check-invariants")]
    pub(crate) fn hot(&self) -> Option<(usize, usize, Order)> {
        self.hot
    }

    /// Every block of every arena, free or allocated, in address order.
    pub fn blocks(&self) -> impl Iterator<Item = Block> + '_ {
        self.slots().flat_map(|slot| {
            slot.blocks().map(move |b| Block {
                addr: slot.arena.addr_of(b.frag),
                size: Self::MATH.block_size(b.order),
                allocated: b.allocated,
            })
        })
    }

    /// A picture of every arena, one character per fragment (or group of fragments), at most
    /// `max_cells` characters per arena: see [`Map`].
    pub fn map(&self, max_cells: usize) -> Map<'_, MIN, MAX, ARENAS, EXACT> {
        Map { buddy: self, max_cells }
    }

    /// The arenas in use, as stored.
    #[inline]
    fn used(&self) -> &[Option<Slot>] {
        &self.slots[..self.len]
    }

    /// The arenas in use, in address order.
    #[inline]
    pub(crate) fn slots(&self) -> impl Iterator<Item = &Slot> + '_ {
        self.used().iter().flatten()
    }

    #[inline]
    fn slot(&self, i: usize) -> &Slot {
        match &self.slots[i] {
            Some(slot) => slot,
            None => unreachable_slot(),
        }
    }

    #[inline]
    fn slot_mut(&mut self, i: usize) -> &mut Slot {
        match &mut self.slots[i] {
            Some(slot) => slot,
            None => unreachable_slot(),
        }
    }

    /// The arena holding `addr`: O(1) for one arena, O(log n) for n, reading no block memory.
    #[inline]
    fn arena_of(&self, addr: usize) -> Option<usize> {
        if self.len == 1 {
            return self.slot(0).arena.contains(addr).then_some(0);
        }
        let i = self.used().partition_point(|s| s.as_ref().is_some_and(|s| s.arena.start() <= addr));
        let i = i.checked_sub(1)?;
        self.slot(i).arena.contains(addr).then_some(i)
    }

    /// Fragments of an allocation of `need` fragments that its owner's pointer reaches, for a
    /// layout of `size` bytes: those the layout's bytes touch. A fragment the layout's end cuts
    /// goes through the owner's pointer, which Tree Borrows (the model this crate is checked
    /// under) allows; Stacked Borrows still flags a header written there when the owner frees
    /// through a pointer covering only its layout.
    #[inline]
    fn reach(size: usize, need: usize) -> usize {
        size.div_ceil(MIN).min(need)
    }

    /// Fragments an allocation for a request of order `order` and `size` bytes occupies: the
    /// whole `2^order` block, or with exact fit only the fragments the size needs.
    #[inline]
    fn need(order: Order, size: usize) -> usize {
        if EXACT {
            size.div_ceil(MIN).clamp(1, order.fragments())
        } else {
            order.fragments()
        }
    }

    /// Finds the live allocation `ptr` with a layout that fits it:
    /// `(arena, fragment, order, fragments)`. Reads only the bitmap of the arena holding `ptr`.
    #[inline]
    fn live_block(
        &self,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Result<(usize, usize, Order, usize), FreeError> {
        let addr = ptr.addr().get();
        let Some(i) = self.arena_of(addr) else {
            return Err(FreeError::ForeignPointer { addr });
        };
        let slot = self.slot(i);
        slot.arena.bitmap().check_keys()?;
        let order = Self::MATH.order_of(layout);
        if let (Some((frag, 0)), Ok(order)) = (slot.arena.locate(addr), order) {
            let need = Self::need(order, layout.size());
            // A plain block of `order` is aligned as its layout asks; an exact-fit run starts
            // at any fragment, so its alignment is checked here.
            let aligned = !EXACT || addr & (layout.align() - 1) == 0;
            if aligned && slot.is_live(frag, order, need) {
                return Ok((i, frag, order, need));
            }
        }
        let parked = self.hot.and_then(|(h, frag, _)| (h == i).then_some(frag));
        Err(Self::diagnose(slot, addr, layout, parked))
    }

    /// Says why `addr` with `layout` is not a live block that fits (the cold path of free).
    #[cold]
    #[inline(never)]
    fn diagnose(slot: &Slot, addr: usize, layout: Layout, parked: Option<usize>) -> FreeError {
        let Some((frag, offset)) = slot.arena.locate(addr) else {
            return FreeError::ForeignPointer { addr };
        };
        let mut found = slot.find_block(frag);
        if parked == Some(found.frag) {
            // The parked block was freed: to the caller it is free memory.
            found.allocated = false;
        }
        if found.allocated && slot.is_continuation(found.frag) {
            // A later piece of an exact-fit allocation: report the allocation's head.
            found = slot.find_block(slot.head_of(found.frag));
        }
        let block = slot.arena.addr_of(found.frag);
        let block_size = if found.allocated {
            slot.allocation_len(found.frag) * MIN
        } else {
            Self::MATH.block_size(found.order)
        };
        let layout_order = Self::MATH.order_of(layout);
        // A pointer into free memory names a block that was freed already, perhaps merged with
        // its buddies since: a double free, if it could have been a block of its layout.
        // (With exact fit, a run may start at any fragment its alignment allows.)
        let could_be_block = match layout_order {
            Ok(_) if EXACT => offset == 0 && addr & (layout.align() - 1) == 0,
            Ok(order) => offset == 0 && addr.is_multiple_of(Self::MATH.block_size(order)),
            Err(_) => block == addr,
        };
        if !found.allocated && could_be_block {
            FreeError::DoubleFree { addr, size: block_size }
        } else if block != addr {
            FreeError::InteriorPointer { addr, block }
        } else {
            let layout_block = layout_order.map_or(0, |o| Self::need(o, layout.size()) * MIN);
            FreeError::LayoutMismatch {
                addr,
                block_size,
                size: layout.size(),
                align: layout.align(),
                layout_block,
            }
        }
    }

    /// Allocation from the free lists (the parked block aside).
    #[inline]
    fn allocate_from_lists(&mut self, layout: Layout, order: Order) -> Result<NonNull<[u8]>, AllocError> {
        if EXACT && Self::need(order, layout.size()) >= BEST_FIT_FROM / MIN {
            return self.allocate_from_runs(layout, order, true);
        }
        for i in 0..self.len {
            let slot = self.slot_mut(i);
            if let Some(from) = slot.smallest_free_order(order) {
                let frag = slot.allocate(order, from)?;
                let need = Self::need(order, layout.size());
                if need < order.fragments() {
                    slot.trim_taken(frag, order, need);
                }
                poison(slot, frag, order, need, FRESH);
                let ptr = slot.arena.ptr_of(frag);
                return Ok(NonNull::slice_from_raw_parts(ptr, need * MIN));
            }
        }
        if EXACT {
            return self.allocate_from_runs(layout, order, false);
        }
        Err(Self::out_of_memory(layout, order))
    }

    /// Exact fit's placement in runs of adjacent free blocks: the tightest run for a large
    /// request (`best`; over every free block if the bounded best-fit search found none), or,
    /// when no free block of the request's order is left, the first run of smaller blocks that
    /// is long enough. Fails only when no run can hold the request.
    #[inline(never)]
    fn allocate_from_runs(
        &mut self,
        layout: Layout,
        order: Order,
        best: bool,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let need = Self::need(order, layout.size());
        let align = layout.align().div_ceil(MIN);
        // Best fit probes a bounded number of blocks per list: when that finds nothing, it walks
        // every block, so that a request fails only when no run can hold it (a first fit there
        // places the request worse: 89.9% against 90.2% on talc's recipe, `drive eff
        // budalloc-heap`).
        let found = match self.find_run(need, align, if best { Fit::BOUNDED } else { Fit::First })? {
            None if best => self.find_run(need, align, Fit::EXHAUSTIVE)?,
            found => found,
        };
        let Some((i, start)) = found else {
            // The last search walked every block of every arena (best fit's second search, or
            // first fit, which stops only at a fit): no arena has a run this long. The next
            // such request is refused without a walk, until fragments are freed or a block is
            // parked.
            for i in 0..self.len {
                self.slot_mut(i).note_no_run(need, align);
            }
            return Err(Self::out_of_memory(layout, order));
        };
        if let Some((_, frag, parked)) = self.hot.filter(|&(h, _, _)| h == i) {
            // The run may hold the parked block: merge it for real first (the run stays free,
            // whatever its blocks become). Every header the merge and the take unlink is
            // checked before either changes anything.
            let slot = self.slot(i);
            slot.merge_plan(frag, parked)?;
            slot.check_run(start, need, Some(frag))?;
            self.flush_hot()?;
        }
        let slot = self.slot_mut(i);
        slot.take_run(start, need)?;
        poison(slot, start, order, need, FRESH);
        let ptr = slot.arena.ptr_of(start);
        Ok(NonNull::slice_from_raw_parts(ptr, need * MIN))
    }

    /// The first arena with a run of `need` fragments aligned to `align` fragments, the parked
    /// block counted as free: `(arena, start)`.
    fn find_run(&self, need: usize, align: usize, fit: Fit) -> Result<Option<(usize, usize)>, Corruption> {
        for i in 0..self.len {
            let parked = self.hot.and_then(|(h, frag, order)| (h == i).then_some((frag, order)));
            let slot = self.slot(i);
            slot.arena.bitmap().check_keys()?;
            if !slot.may_hold(need) {
                // Known to have no run this long, the parked block counted as free.
                continue;
            }
            if let Some(start) = slot.find_run(need, align, parked, fit)? {
                return Ok(Some((i, start)));
            }
        }
        Ok(None)
    }

    /// Allocation's slow half: no arena has a free block of `order`.
    #[cold]
    #[inline(never)]
    fn out_of_memory(layout: Layout, order: Order) -> AllocError {
        AllocError::OutOfMemory { size: layout.size(), block: Self::MATH.block_size(order) }
    }

    /// Changes the order of the live block `ptr` in place, for grow and shrink.
    ///
    /// # Safety
    /// `ptr` must be currently allocated from `self`, and `old` must fit it.
    unsafe fn resize_in_place(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // A block a checked free would reject is reported before anything else, whatever
        // `new` asks. The parked block was freed; as a neighbour it counts as allocated here
        // (merging it first would change metadata even when the resize then fails): a grow
        // next to it moves instead.
        if let Some(error) = self.parked_at(ptr.addr().get()) {
            return Err(AllocError::InvalidBlock(error));
        }
        let (i, frag, _, old_need) = self.live_block(ptr, old).map_err(AllocError::invalid_block)?;
        let to = Self::MATH.order_of(new)?;
        let new_need = Self::need(to, new.size());
        let slot = self.slot_mut(i);
        let head = slot.pieces(frag, old_need).next().map_or(Order::ZERO, |(_, j)| j);
        if slot.is_marked(frag, head) {
            // A marked block keeps its shape (`RawAlloc::allocate_marked`).
            return Err(AllocError::OutOfMemory { size: new.size(), block: new_need * MIN });
        }
        // The block must already be aligned as the new request's block is (with exact fit, as
        // the new request is: its pieces need no more).
        let aligned = if EXACT {
            ptr.addr().get() & (new.align() - 1) == 0
        } else {
            slot.abs(frag) & (to.fragments() - 1) == 0
        };
        slot.set_origin(Some((ptr, frag, Self::reach(old.size(), old_need))));
        let reshaped = if aligned { slot.reshape(frag, old_need, new_need) } else { Ok(false) };
        slot.set_origin(None);
        if !reshaped? {
            return Err(AllocError::OutOfMemory { size: new.size(), block: new_need * MIN });
        }
        Ok(NonNull::slice_from_raw_parts(ptr, new_need * MIN))
    }
}

#[cold]
fn unreachable_slot() -> ! {
    unreachable!("slot below `len` is empty: the `slots` invariant is broken")
}

// SAFETY: blocks come from disjoint nodes of the arenas' buddy trees, each valid for its whole
// size (inside a region the caller gave us); a block is handed out only when its `A` bit goes
// from 0 to 1 and is taken back only when it goes from 1 to 0, so currently allocated blocks
// never overlap. Headers are written only into free blocks. Failed calls return before the first
// change (every check runs first).
unsafe impl<const MIN: usize, const MAX: usize, const ARENAS: usize, const EXACT: bool> RawAlloc
    for Buddy<MIN, MAX, ARENAS, EXACT>
{
    #[inline]
    fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let order = Self::MATH.order_of(layout)?;
        if let Some((i, frag, parked)) = self.hot {
            let need = Self::need(order, layout.size());
            if parked == order && need == order.fragments() {
                // The block freed last fits exactly: hand it out again, no split, no merge.
                self.hot = None;
                let slot = self.slot(i);
                poison(slot, frag, order, need, FRESH);
                return Ok(NonNull::slice_from_raw_parts(slot.arena.ptr_of(frag), need * MIN));
            }
        }
        match self.allocate_from_lists(layout, order) {
            Err(AllocError::OutOfMemory { .. }) if self.parked_merges_to(order)? => {
                // Merged for real, the parked block serves the request.
                self.flush_hot()?;
                self.allocate_from_lists(layout, order)
            }
            other => other,
        }
    }

    #[inline]
    unsafe fn try_deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        if let Some(error) = self.parked_at(ptr.addr().get()) {
            return Err(error);
        }
        let (i, frag, order, need) = self.live_block(ptr, layout)?;
        if need == order.fragments() && self.slot(i).abs(frag) & (need - 1) == 0 {
            // A single-piece block (not a run of `2^k` fragments at an unaligned start): park
            // it; the block parked before is merged now.
            if self.hot.is_some() {
                self.flush_hot()?;
            }
            if order > Order::ZERO {
                // A parked block carries no mark: it may be handed out by `allocate`.
                self.slot_mut(i).set_marked(frag, false);
            }
            if cfg!(debug_assertions) {
                // Only debug builds write into the parked block (the poison).
                let slot = self.slot_mut(i);
                slot.set_origin(Some((ptr, frag, Self::reach(layout.size(), need))));
                poison(slot, frag, order, need, FREED);
                slot.set_origin(None);
            }
            // Runs through the parked block count it as free: longer than the arena knew.
            self.slot_mut(i).forget_runs();
            self.hot = Some((i, frag, order));
            return Ok(());
        }
        let slot = self.slot_mut(i);
        let head = slot.pieces(frag, need).next().map_or(Order::ZERO, |(_, j)| j);
        slot.set_origin(Some((ptr, frag, Self::reach(layout.size(), need))));
        let result = slot.free_pieces(frag, need);
        slot.set_origin(None);
        result?;
        if head > Order::ZERO {
            // Its second fragment now lies inside a free block: no mark there.
            slot.set_marked(frag, false);
        }
        Ok(())
    }

    fn allocate_marked(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = self.allocate(layout)?;
        let addr = block.cast::<u8>().addr().get();
        let at = self.arena_of(addr).and_then(|i| Some((i, self.slot(i).arena.locate(addr)?.0)));
        if let Some((i, frag)) = at {
            let slot = self.slot_mut(i);
            if slot.find_block(frag).order > Order::ZERO {
                slot.set_marked(frag, true);
            }
        }
        Ok(block)
    }

    fn is_marked(&self, ptr: NonNull<u8>) -> Option<bool> {
        let addr = ptr.addr().get();
        let Some(i) = self.arena_of(addr) else { return Some(false) };
        let slot = self.slot(i);
        slot.arena.bitmap().check_keys().ok()?;
        let Some((frag, 0)) = slot.arena.locate(addr) else { return Some(false) };
        if self.hot.is_some_and(|(h, f, _)| (h, f) == (i, frag)) {
            // The parked block is free memory to callers (and carries no mark).
            return Some(false);
        }
        slot.marked_block(frag)
    }

    #[inline]
    fn validate(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), FreeError> {
        if let Some(error) = self.parked_at(ptr.addr().get()) {
            return Err(error);
        }
        self.live_block(ptr, layout).map(|_| ())
    }

    #[inline]
    fn rebase(&self, ptr: NonNull<u8>) -> Option<NonNull<u8>> {
        let addr = ptr.addr();
        let i = self.arena_of(addr.get())?;
        Some(self.slot(i).arena.ptr_of(0).with_addr(addr))
    }

    fn flush(&mut self) {
        // A damaged buddy header leaves the block parked; the next operation reports it.
        let _ = self.flush_hot();
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

    fn owns(&self, ptr: NonNull<u8>) -> bool {
        self.arena_of(ptr.addr().get()).is_some()
    }

    fn usable_size(&self, layout: Layout) -> Result<usize, AllocError> {
        let order = Self::MATH.order_of(layout)?;
        Ok(Self::need(order, layout.size()) * MIN)
    }

    fn stats(&self) -> Stats {
        let mut stats = Stats {
            capacity: 0,
            allocated: 0,
            free: 0,
            overhead: 0,
            largest_free: 0,
            min_block: MIN,
            free_blocks: [0; MAX_ORDERS],
            arenas: self.len,
        };
        for slot in self.slots() {
            stats.capacity += slot.arena.capacity();
            stats.allocated += slot.allocated_bytes();
            stats.overhead += slot.arena.overhead();
            stats.largest_free = stats.largest_free.max(slot.largest_free());
            for (total, &count) in stats.free_blocks.iter_mut().zip(slot.free_counts()) {
                *total += count as usize;
            }
        }
        if let Some((i, frag, order)) = self.hot {
            // The parked block is free to the user; it is merged at the next operation. The
            // figures show it merged already (as `flush` would leave them): one free block of
            // the order it merges up to, in place of the free buddies it absorbs.
            stats.allocated -= Self::MATH.block_size(order);
            let merged = self.slot(i).merge_order(frag, order);
            for absorbed in &mut stats.free_blocks[order.index()..merged.index()] {
                // Never below zero, even over damaged bits (`check_invariants` reports those).
                *absorbed = absorbed.saturating_sub(1);
            }
            stats.free_blocks[merged.index()] += 1;
            stats.largest_free = stats.largest_free.max(Self::MATH.block_size(merged));
        }
        stats.free = stats.capacity - stats.allocated;
        stats
    }
}

impl<const MIN: usize, const MAX: usize, const ARENAS: usize, const EXACT: bool> Claim
    for Buddy<MIN, MAX, ARENAS, EXACT>
{
    fn claim(&mut self, region: &'static mut [MaybeUninit<u8>]) -> Result<(), RegionError> {
        Buddy::claim(self, region).map(|_| ())
    }

    unsafe fn claim_raw(&mut self, ptr: *mut u8, len: usize) -> Result<(), RegionError> {
        // SAFETY: forwarded from our caller.
        unsafe { Buddy::claim_raw(self, ptr, len) }.map(|_| ())
    }
}

/// One block of an arena, as [`Buddy::blocks`] lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// Start address.
    pub addr: usize,
    /// Size in bytes (a power of two, aligned to itself).
    pub size: usize,
    /// Whether it is allocated (else free).
    pub allocated: bool,
}

/// The text picture of a [`Buddy`]'s arenas: one character per fragment (or per group of
/// fragments in a big arena); lowercase letters are free blocks, uppercase allocated ones, the
/// letter giving the order (`a` = `MIN`, `b` = `2 MIN`, …).
pub struct Map<'a, const MIN: usize, const MAX: usize, const ARENAS: usize, const EXACT: bool> {
    buddy: &'a Buddy<MIN, MAX, ARENAS, EXACT>,
    max_cells: usize,
}

impl<const MIN: usize, const MAX: usize, const ARENAS: usize, const EXACT: bool> fmt::Display
    for Map<'_, MIN, MAX, ARENAS, EXACT>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, slot) in self.buddy.slots().enumerate() {
            if n > 0 {
                f.write_str("\n")?;
            }
            let arena = &slot.arena;
            write_map(f, arena.start(), arena.fragments(), MIN, slot.blocks(), 64, self.max_cells)?;
        }
        Ok(())
    }
}

impl<const MIN: usize, const MAX: usize, const ARENAS: usize, const EXACT: bool> fmt::Debug
    for Buddy<MIN, MAX, ARENAS, EXACT>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buddy").field("min", &MIN).field("max", &MAX).field("stats", &self.stats()).finish()
    }
}
