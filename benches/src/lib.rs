//! Subjects and workloads for comparing budalloc with its peers.
//!
//! Every region allocator under test (a [`Subject`]) gets a fresh [`Region`] of [`REGION_LEN`]
//! bytes whose start address is aligned to exactly [`REGION_ALIGN`] bytes (a multiple of 4096
//! that is not a multiple of 8192: buddy allocators that split by absolute address behave
//! differently with more alignment); the system allocator and mimalloc ([`Native`]) get memory
//! themselves. Every call into a subject goes through an `#[inline(never)]` method, as calls
//! into a `#[global_allocator]` do. [`visit_subjects`] lists the subjects and
//! [`visit_shared`] the heaps shared by threads: a new allocator is one line there.
//!
//! The workloads ([`Pair`], [`Batch`] with its [`FreeOrder`], [`Fragmented`], [`Actions`],
//! [`TwoThreads`], and the untimed heap-efficiency runs of [`Efficiency`]) own their
//! [`Fixture`] (subject plus region) and every pointer they hold, so their methods are safe; an
//! allocation that fails is returned as an `Err` with a reason, never a panic. [`check`] is the
//! correctness check run before a subject is benchmarked; [`verify_live`] checks a workload's
//! live blocks (aligned, inside the region, disjoint) outside the timed loops.

use std::alloc::{self, Layout};
use std::hint::black_box;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use budalloc::allocator_api2::alloc::Allocator;
use budalloc::{Claim, DefaultBuddy, RawAlloc};

mod actions;
mod efficiency;
mod native;

pub use actions::{
    realloc_in, ActionMix, ActionState, Actions, BudallocCached, BudallocLocked, CachedPolicy, Handle, Ops,
    PlainClasses, Shared, SpinLocked, Threads, TwoThreads, Unshared, THREADS, THREAD_MIX, THREAD_SEED,
};
pub use efficiency::{summarize, Efficiency, Score, Summary, CHURN_STEPS, EFF_REGION_LEN};
pub use native::{MimallocSubject, Native, NativeAlloc, SystemSubject};

/// What runs a workload on every subject: [`visit_subjects`] calls
/// [`visit`](Self::visit) once per subject type.
pub trait VisitSubjects {
    /// Called with each subject type in turn.
    fn visit<S: Subject + 'static>(&mut self);
}

/// Calls `v.visit::<S>()` for every single-threaded subject, budalloc first. **A new subject
/// is one line here** (and its `Subject` implementation).
pub fn visit_subjects(v: &mut impl VisitSubjects) {
    v.visit::<BudallocRaw>();
    v.visit::<BudallocLocal>();
    v.visit::<BudallocLockedOne>();
    v.visit::<Raw<budalloc::ExactBuddy>>();
    v.visit::<Raw<budalloc::ClassesBuddy>>();
    v.visit::<BudallocHeap>();
    v.visit::<Raw<PlainClasses>>();
    v.visit::<TalcSubject>();
    v.visit::<RlsfSubject>();
    v.visit::<BuddySystem>();
    v.visit::<BuddyAllocSubject>();
    v.visit::<LinkedList>();
    v.visit::<SystemSubject>();
    v.visit::<MimallocSubject>();
}

/// What runs the two-thread workload on every shared heap: [`visit_shared`] calls
/// [`visit`](Self::visit) once per heap type.
pub trait VisitShared {
    /// Called with each shared heap type in turn.
    fn visit<T: Shared + 'static>(&mut self);
}

/// Calls `v.visit::<T>()` for every heap shared by threads: budalloc's `Locked` frontend, the
/// region peers behind a `spin::Mutex`, the system allocator and mimalloc as they are. **A new
/// shared heap is one line here** (and its `Shared` implementation).
pub fn visit_shared(v: &mut impl VisitShared) {
    v.visit::<BudallocLocked>();
    v.visit::<BudallocLocked<budalloc::ExactBuddy>>();
    v.visit::<BudallocLocked<budalloc::ClassesBuddy>>();
    v.visit::<BudallocCached>();
    v.visit::<BudallocLocked<PlainClasses>>();
    v.visit::<BudallocCached<PlainClasses>>();
    v.visit::<Unshared>();
    v.visit::<SpinLocked<TalcSubject>>();
    v.visit::<SpinLocked<RlsfSubject>>();
    v.visit::<SpinLocked<BuddySystem>>();
    v.visit::<SpinLocked<BuddyAllocSubject>>();
    v.visit::<SpinLocked<LinkedList>>();
    v.visit::<SystemSubject>();
    v.visit::<MimallocSubject>();
}

/// Bytes of the region every subject gets.
pub const REGION_LEN: usize = 64 << 20;

/// The region's start is a multiple of this and not of twice this.
pub const REGION_ALIGN: usize = 4096;

/// Alignment of every request in the timed workloads (a typical Rust type's).
pub const WORKLOAD_ALIGN: usize = 8;

// ---------------------------------------------------------------------------------------------
// The region
// ---------------------------------------------------------------------------------------------

/// A block of memory from `std::alloc`, aligned to exactly [`REGION_ALIGN`], pre-faulted
/// (every page written once, so that no page fault lands in a timed loop), freed on drop.
///
/// Its start lies [`REGION_ALIGN`] bytes past a multiple of its length rounded up to a power of
/// two, at every run: where a buddy allocator's naturally aligned blocks fall in the region, and
/// so how it places requests, does not depend on where `std::alloc` put the memory. (With only
/// the start's low bits fixed, the heap-efficiency means of one build moved by 0.3 points from
/// run to run.)
pub struct Region {
    /// Start of the `std::alloc` allocation (aligned to the length rounded up to a power of two).
    raw: NonNull<u8>,
    /// Layout of the `std::alloc` allocation: `len + REGION_ALIGN` bytes.
    layout: Layout,
    /// Bytes handed out, starting `REGION_ALIGN` bytes into the allocation.
    len: usize,
}

impl Region {
    /// Allocates a region of `len` bytes.
    ///
    /// # Errors
    /// `std::alloc` has no memory, or `len` is absurd.
    pub fn new(len: usize) -> Result<Region, String> {
        let total = len.checked_add(REGION_ALIGN).ok_or("region length overflows")?;
        let align = len.checked_next_power_of_two().ok_or("region length overflows")?.max(2 * REGION_ALIGN);
        let layout = Layout::from_size_align(total, align).map_err(|e| e.to_string())?;
        // SAFETY: the layout's size is non-zero (at least `REGION_ALIGN`).
        let raw = unsafe { alloc::alloc(layout) };
        let raw = NonNull::new(raw).ok_or_else(|| format!("std::alloc failed for {total} bytes"))?;
        let region = Region { raw, layout, len };
        // SAFETY: the region lies inside the allocation, valid for writes of `len` bytes there.
        unsafe { region.start().write_bytes(0, len) };
        Ok(region)
    }

    /// First byte handed out: `REGION_ALIGN` bytes into the allocation, so its address is an
    /// odd multiple of `REGION_ALIGN`.
    pub fn start(&self) -> *mut u8 {
        // SAFETY: `REGION_ALIGN < layout.size()`, so the result lies inside the allocation.
        unsafe { self.raw.add(REGION_ALIGN) }.as_ptr()
    }

    /// Bytes handed out.
    pub fn size(&self) -> usize {
        self.len
    }

    /// Whether `[addr, addr + len)` lies inside the region.
    pub fn contains(&self, addr: usize, len: usize) -> bool {
        let start = self.start().addr();
        addr >= start && addr.checked_add(len).is_some_and(|end| end <= start + self.len)
    }
}

// SAFETY: a `Region` owns its allocation alone and gives out only its address, never access to
// its bytes (the subject built over it does that, under its own rules), so it may move to and be
// shared with other threads.
unsafe impl Send for Region {}
// SAFETY: as for `Send`: `&Region` reads only the address and length.
unsafe impl Sync for Region {}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `raw` was allocated by `std::alloc::alloc` with `layout` and not freed yet.
        unsafe { alloc::dealloc(self.raw.as_ptr(), self.layout) };
    }
}

// ---------------------------------------------------------------------------------------------
// Subjects
// ---------------------------------------------------------------------------------------------

/// An allocator under test, single-threaded, allocating from one region it is given (or, when
/// [`REGION_BASED`](Self::REGION_BASED) is false, from wherever it gets memory itself).
///
/// Adding an allocator to every workload takes one implementation of this trait and one line in
/// [`visit_subjects`].
pub trait Subject: Sized {
    /// Whether the subject allocates from the region it is given. The system allocator and
    /// mimalloc do not: they get no region, and heap-efficiency workloads (which measure how much
    /// of a region a subject can hand out) do not apply to them.
    const REGION_BASED: bool = true;

    /// Name in reports.
    fn name() -> &'static str;

    /// Largest alignment the subject can serve (requests above it fail).
    fn max_align() -> usize {
        REGION_ALIGN
    }

    /// Builds the allocator over `len` bytes at `region` (null and 0 when
    /// [`REGION_BASED`](Self::REGION_BASED) is false).
    ///
    /// # Errors
    /// The allocator refuses the region.
    ///
    /// # Safety
    /// - `region .. region + len` must be valid for reads and writes, used by nothing but the
    ///   returned subject (and the blocks it hands out), and outlive the subject.
    /// - When [`REGION_BASED`](Self::REGION_BASED) is false, any blocks still live when the
    ///   subject is dropped are leaked: workloads free theirs.
    unsafe fn new(region: *mut u8, len: usize) -> Result<Self, String>;

    /// Allocates a block for `layout`; `None` if the subject cannot.
    ///
    /// # Safety
    /// `layout.size()` must be non-zero.
    unsafe fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>>;

    /// Frees a block.
    ///
    /// # Safety
    /// `ptr` must have been returned by [`alloc`](Self::alloc) or [`realloc`](Self::realloc)
    /// on `self` with `layout` (for `realloc`: the old alignment and the new size) and not have
    /// been freed or reallocated since.
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout);

    /// Resizes a block to `new_size` bytes (same alignment), keeping `min(old, new)` bytes;
    /// `None` (and the block unchanged) if the subject cannot. By default: allocate, copy, free.
    ///
    /// # Safety
    /// As [`free`](Self::free) for `ptr` and `old`; `new_size` must be non-zero.
    #[inline(never)]
    unsafe fn realloc(&mut self, ptr: NonNull<u8>, old: Layout, new_size: usize) -> Option<NonNull<u8>> {
        let new = Layout::from_size_align(new_size, old.align()).ok()?;
        // SAFETY: `new_size` is non-zero (our caller's promise).
        let block = unsafe { self.alloc(new) }?;
        // SAFETY: both blocks are live, hence disjoint, and hold at least the bytes copied.
        unsafe { block.copy_from_nonoverlapping(ptr, old.size().min(new_size)) };
        // SAFETY: `ptr` is live with `old` (our caller's promise).
        unsafe { self.free(ptr, old) };
        Some(block)
    }
}

/// A budalloc policy the benchmarks call directly through [`RawAlloc`], with its report name.
pub trait Policy: RawAlloc + Claim + Default {
    /// Name in reports.
    const NAME: &'static str;
}

impl Policy for DefaultBuddy {
    const NAME: &'static str = "budalloc";
}

impl Policy for budalloc::ExactBuddy {
    const NAME: &'static str = "budalloc-exact";
}

impl Policy for budalloc::ClassesBuddy {
    const NAME: &'static str = "budalloc-classes";
}

/// A budalloc policy `P`, called directly through [`RawAlloc`].
pub struct Raw<P>(P);

/// budalloc's default buddy policy, called directly.
pub type BudallocRaw = Raw<DefaultBuddy>;

impl<P: Policy> Subject for Raw<P> {
    fn name() -> &'static str {
        P::NAME
    }

    unsafe fn new(region: *mut u8, len: usize) -> Result<Self, String> {
        let mut policy = P::default();
        // SAFETY: forwarded from our caller.
        unsafe { policy.claim_raw(region, len) }.map_err(|e| format!("claim_raw: {e:?}"))?;
        Ok(Raw(policy))
    }

    #[inline(never)]
    unsafe fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.0.allocate(layout).ok().map(NonNull::cast)
    }

    #[inline(never)]
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `ptr` is live and `layout` fits it (our caller's promise).
        unsafe { self.0.deallocate(ptr, layout) }
    }

    #[inline(never)]
    unsafe fn realloc(&mut self, ptr: NonNull<u8>, old: Layout, new_size: usize) -> Option<NonNull<u8>> {
        let new = Layout::from_size_align(new_size, old.align()).ok()?;
        let block = if new_size >= old.size() {
            // SAFETY: `ptr` is live with `old`, and the new size is not smaller.
            unsafe { self.0.grow(ptr, old, new) }
        } else {
            // SAFETY: `ptr` is live with `old`, and the new size is smaller.
            unsafe { self.0.shrink(ptr, old, new) }
        };
        block.ok().map(NonNull::cast)
    }
}

/// A budalloc frontend, called through the `allocator_api2` `Allocator` implementation of `&H`:
/// the facade's default [`BudallocHeap`], and [`BudallocLocal`] and [`BudallocLockedOne`] over
/// the plain buddy, so that what thread safety costs one thread shows in every single-threaded
/// workload.
pub struct BudallocFront<H>(H);

/// The facade's default heap, `budalloc::Heap` (size classes over the exact-fit buddy, behind
/// `Local`): what a user of the default composition gets.
pub type BudallocHeap = BudallocFront<budalloc::Heap>;

/// `budalloc::Local` over the size classes that `budalloc-cached` shares between threads
/// ([`PlainClasses`]): its one-thread baseline in the `threads_1` group.
pub type BudallocHeapPlain = BudallocFront<budalloc::Local<PlainClasses>>;

/// The plain buddy behind the [`budalloc::Local`] frontend (`budalloc::BuddyHeap`).
pub type BudallocLocal = BudallocFront<budalloc::BuddyHeap>;

/// The plain buddy behind the thread-safe [`budalloc::Locked`] frontend (spin lock), used by
/// one thread.
pub type BudallocLockedOne = BudallocFront<budalloc::Locked<DefaultBuddy>>;

/// What [`BudallocFront`] needs of a frontend: a name, a fresh frontend over a fresh policy,
/// and a claim through `&self`.
pub trait Front {
    /// Name in reports.
    const NAME: &'static str;

    /// The frontend over a fresh policy, with no memory yet.
    fn fresh() -> Self;

    /// Claims `len` bytes at `region`.
    ///
    /// # Safety
    /// As [`Claim::claim_raw`].
    unsafe fn claim(&self, region: *mut u8, len: usize) -> Result<(), budalloc::RegionError>;
}

/// A policy the benchmarks also run behind [`budalloc::Local`], with that subject's report name.
pub trait LocalPolicy: Policy {
    /// Name in reports of `Local` over this policy.
    const LOCAL_NAME: &'static str;
}

impl LocalPolicy for DefaultBuddy {
    const LOCAL_NAME: &'static str = "budalloc-local";
}

impl LocalPolicy for budalloc::ClassesBuddy {
    const LOCAL_NAME: &'static str = "budalloc-heap";
}

impl LocalPolicy for PlainClasses {
    const LOCAL_NAME: &'static str = "budalloc-heap-plain";
}

impl<P: LocalPolicy> Front for budalloc::Local<P> {
    const NAME: &'static str = P::LOCAL_NAME;

    fn fresh() -> Self {
        budalloc::Local::new(P::default())
    }

    unsafe fn claim(&self, region: *mut u8, len: usize) -> Result<(), budalloc::RegionError> {
        // SAFETY: forwarded from our caller.
        unsafe { self.claim_raw(region, len) }
    }
}

impl Front for budalloc::Locked<DefaultBuddy> {
    const NAME: &'static str = "budalloc-locked";

    fn fresh() -> Self {
        budalloc::Locked::new(DefaultBuddy::new())
    }

    unsafe fn claim(&self, region: *mut u8, len: usize) -> Result<(), budalloc::RegionError> {
        // SAFETY: forwarded from our caller.
        unsafe { self.claim_raw(region, len) }
    }
}

impl<H: Front> Subject for BudallocFront<H>
where
    for<'a> &'a H: Allocator,
{
    fn name() -> &'static str {
        H::NAME
    }

    unsafe fn new(region: *mut u8, len: usize) -> Result<Self, String> {
        let heap = H::fresh();
        // SAFETY: forwarded from our caller.
        unsafe { heap.claim(region, len) }.map_err(|e| format!("claim_raw: {e:?}"))?;
        Ok(BudallocFront(heap))
    }

    #[inline(never)]
    unsafe fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        (&self.0).allocate(layout).ok().map(NonNull::cast)
    }

    #[inline(never)]
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `ptr` is live and `layout` fits it (our caller's promise).
        unsafe { (&self.0).deallocate(ptr, layout) }
    }

    #[inline(never)]
    unsafe fn realloc(&mut self, ptr: NonNull<u8>, old: Layout, new_size: usize) -> Option<NonNull<u8>> {
        // SAFETY: forwarded from our caller.
        unsafe { realloc_in(&self.0, ptr, old, new_size) }
    }
}

/// talc 5's single-threaded core `Talc` with the `Manual` source (fails on out-of-memory; the
/// region is claimed up front).
pub struct TalcSubject(talc::base::Talc<talc::source::Manual, talc::DefaultBinning>);

impl Subject for TalcSubject {
    fn name() -> &'static str {
        "talc"
    }

    unsafe fn new(region: *mut u8, len: usize) -> Result<Self, String> {
        let mut talc = talc::base::Talc::new(talc::source::Manual);
        // SAFETY: the region is valid and ours until `talc` is dropped (our caller's promise);
        // `Manual` allows manual heap management.
        unsafe { talc.claim(region, len) }.ok_or("talc refused the region")?;
        Ok(TalcSubject(talc))
    }

    #[inline(never)]
    unsafe fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        // SAFETY: `layout.size()` is non-zero (our caller's promise).
        unsafe { self.0.allocate(layout) }
    }

    #[inline(never)]
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `ptr` was allocated with `layout` (our caller's promise).
        unsafe { self.0.deallocate(ptr.as_ptr(), layout) }
    }

    #[inline(never)]
    unsafe fn realloc(&mut self, ptr: NonNull<u8>, old: Layout, new_size: usize) -> Option<NonNull<u8>> {
        // SAFETY: `ptr` was allocated with `old`, `new_size` is non-zero (our caller's promise).
        if unsafe { self.0.try_realloc_in_place(ptr.as_ptr(), old, new_size) } {
            return Some(ptr);
        }
        let new = Layout::from_size_align(new_size, old.align()).ok()?;
        // SAFETY: `new_size` is non-zero.
        let block = unsafe { self.0.allocate(new) }?;
        // SAFETY: both blocks are live, hence disjoint; we only get here when growing, so
        // both hold `old.size()` bytes.
        unsafe { block.copy_from_nonoverlapping(ptr, old.size()) };
        // SAFETY: `ptr` was allocated with `old`.
        unsafe { self.0.deallocate(ptr.as_ptr(), old) };
        Some(block)
    }
}

/// rlsf's `Tlsf<usize, usize, 52, 64>` (the configuration of the peer figures).
pub struct RlsfSubject(rlsf::Tlsf<'static, usize, usize, 52, 64>);

impl Subject for RlsfSubject {
    fn name() -> &'static str {
        "rlsf"
    }

    unsafe fn new(region: *mut u8, len: usize) -> Result<Self, String> {
        let mut tlsf = rlsf::Tlsf::new();
        let block = NonNull::slice_from_raw_parts(NonNull::new(region).ok_or("null region")?, len);
        // SAFETY: the region is valid and outlives the pool (our caller's promise).
        unsafe { tlsf.insert_free_block_ptr(block) }.ok_or("rlsf refused the region")?;
        Ok(RlsfSubject(tlsf))
    }

    #[inline(never)]
    unsafe fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.0.allocate(layout)
    }

    #[inline(never)]
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `ptr` was allocated from `self` with alignment `layout.align()`.
        unsafe { self.0.deallocate(ptr, layout.align()) }
    }

    #[inline(never)]
    unsafe fn realloc(&mut self, ptr: NonNull<u8>, old: Layout, new_size: usize) -> Option<NonNull<u8>> {
        let new = Layout::from_size_align(new_size, old.align()).ok()?;
        // SAFETY: `ptr` was allocated from `self` with alignment `old.align() == new.align()`.
        unsafe { self.0.reallocate(ptr, new) }
    }
}

/// buddy_system_allocator's `Heap<32>` (unlocked).
pub struct BuddySystem(buddy_system_allocator::Heap<32>);

impl Subject for BuddySystem {
    fn name() -> &'static str {
        "buddy_system_allocator"
    }

    unsafe fn new(region: *mut u8, len: usize) -> Result<Self, String> {
        let mut heap = buddy_system_allocator::Heap::<32>::new();
        // The heap takes an integer address and casts it back to pointers: expose the region's
        // provenance so that those casts may pick it up.
        let start = region.expose_provenance();
        // SAFETY: the region is valid, ours alone and outlives the heap (our caller's promise).
        unsafe { heap.init(start, len) };
        Ok(BuddySystem(heap))
    }

    #[inline(never)]
    unsafe fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.0.alloc(layout).ok()
    }

    #[inline(never)]
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `ptr` was allocated from `self` with `layout` and is not freed yet.
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

/// buddy-alloc's `BuddyAlloc` with 16-byte leaves (its smallest). It takes no alignment: blocks
/// are aligned to the leaf size only, so requests aligned above 16 bytes are refused.
pub struct BuddyAllocSubject(buddy_alloc::buddy_alloc::BuddyAlloc);

/// Leaf (smallest block) size given to buddy-alloc.
const BUDDY_ALLOC_LEAF: usize = 16;

impl Subject for BuddyAllocSubject {
    fn name() -> &'static str {
        "buddy-alloc"
    }

    fn max_align() -> usize {
        BUDDY_ALLOC_LEAF
    }

    unsafe fn new(region: *mut u8, len: usize) -> Result<Self, String> {
        // buddy-alloc turns the base into an integer and builds pointers from integers: expose
        // the region's provenance so that those casts may pick it up.
        let _ = region.expose_provenance();
        let param = buddy_alloc::BuddyAllocParam::new(region, len, BUDDY_ALLOC_LEAF);
        // SAFETY: the region is valid and nothing else writes to it (our caller's promise); it
        // is large enough for the metadata (the constructor panics otherwise).
        let heap = unsafe { buddy_alloc::buddy_alloc::BuddyAlloc::new(param) };
        Ok(BuddyAllocSubject(heap))
    }

    #[inline(never)]
    unsafe fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        if layout.align() > BUDDY_ALLOC_LEAF {
            return None;
        }
        NonNull::new(self.0.malloc(layout.size()))
    }

    #[inline(never)]
    unsafe fn free(&mut self, ptr: NonNull<u8>, _layout: Layout) {
        self.0.free(ptr.as_ptr());
    }
}

/// linked_list_allocator's `Heap` (first fit, unlocked).
pub struct LinkedList(linked_list_allocator::Heap);

impl Subject for LinkedList {
    fn name() -> &'static str {
        "linked_list_allocator"
    }

    unsafe fn new(region: *mut u8, len: usize) -> Result<Self, String> {
        let mut heap = linked_list_allocator::Heap::empty();
        // SAFETY: the region is valid, unused and outlives the heap (our caller's promise).
        unsafe { heap.init(region, len) };
        Ok(LinkedList(heap))
    }

    #[inline(never)]
    unsafe fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.0.allocate_first_fit(layout).ok()
    }

    #[inline(never)]
    unsafe fn free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `ptr` was allocated from `self` with `layout`.
        unsafe { self.0.deallocate(ptr, layout) }
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures, randomness, failures
// ---------------------------------------------------------------------------------------------

/// A subject over its own fresh region (none for a subject that is not
/// [`REGION_BASED`](Subject::REGION_BASED)). The subject is dropped before the region is freed.
pub struct Fixture<S> {
    /// Declared first: dropped first.
    subject: S,
    region: Option<Region>,
}

impl<S: Subject> Fixture<S> {
    /// A fresh region of [`REGION_LEN`] bytes and a subject over it.
    ///
    /// # Errors
    /// No memory for the region, or the subject refuses it.
    pub fn new() -> Result<Self, String> {
        Self::with_len(REGION_LEN)
    }

    /// A fresh region of `len` bytes (aligned to exactly [`REGION_ALIGN`]) and a subject over it.
    ///
    /// # Errors
    /// No memory for the region, or the subject refuses it.
    pub fn with_len(len: usize) -> Result<Self, String> {
        if !S::REGION_BASED {
            // SAFETY: a subject that is not region-based is given no region.
            let subject = unsafe { S::new(std::ptr::null_mut(), 0) }?;
            return Ok(Fixture { subject, region: None });
        }
        let region = Region::new(len)?;
        // SAFETY: the region is valid for reads and writes of its size, nothing else uses it,
        // and it is dropped after the subject (field order; it is never handed out).
        let subject = unsafe { S::new(region.start(), region.size()) }?;
        Ok(Fixture { subject, region: Some(region) })
    }
}

impl<S> Fixture<S> {
    /// The region the subject allocates from (`None` for a subject that is not region-based).
    pub fn region(&self) -> Option<&Region> {
        self.region.as_ref()
    }

    /// The subject.
    pub fn subject(&mut self) -> &mut S {
        &mut self.subject
    }
}

/// The xorshift64 generator with fixed seeds: every run draws the same sequence.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from a seed (zero is replaced by a fixed non-zero value).
    pub fn new(seed: u64) -> Self {
        XorShift(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }

    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `lo ..= hi` (with the negligible bias of a modulo).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// A size in `1 ..= 2^k` for a `k` uniform in `0 ..= max_log2` (small sizes favoured).
    pub fn log_size(&mut self, max_log2: usize) -> usize {
        let k = self.range(0, max_log2);
        self.range(1, 1 << k)
    }

    /// A size in `lo ..= hi` whose logarithm is uniform (`0 < lo <= hi`).
    pub fn log_uniform(&mut self, lo: usize, hi: usize) -> usize {
        // 53 random bits: a uniform `u` in [0, 1).
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let size = lo as f64 * (hi as f64 / lo as f64).powf(u);
        (size as usize).clamp(lo, hi)
    }

    /// Shuffles `items` (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.range(0, i);
            items.swap(i, j);
        }
    }
}

/// The reason an allocation failed, built out of line (the cold path of the timed loops).
#[cold]
#[inline(never)]
fn out_of_memory(what: &str, layout: Layout, live: usize) -> String {
    format!(
        "{what}: allocation of {} B (align {}) failed with {live} blocks live",
        layout.size(),
        layout.align()
    )
}

/// A layout of `size` bytes aligned to [`WORKLOAD_ALIGN`].
fn workload_layout(size: usize) -> Layout {
    match Layout::from_size_align(size.max(1), WORKLOAD_ALIGN) {
        Ok(layout) => layout,
        Err(_) => Layout::new::<u64>(),
    }
}

// ---------------------------------------------------------------------------------------------
// The correctness check
// ---------------------------------------------------------------------------------------------

/// Bytes of the block that [`check`] allocates after freeing everything: it must fit once the
/// heap has coalesced.
pub const CHECK_BIG: usize = 16 << 20;

/// A quick correctness check on a fresh fixture: allocates 600 blocks of random layouts
/// (1 B – 8 KiB, alignments up to `min(4096, S::max_align())`), fills each with its own byte,
/// checks alignment, that every block lies in the region and that no two overlap (sorted by
/// address); reallocates half of them (contents kept, same checks), checks every block still
/// holds its byte, frees them in random order, and finally allocates one [`CHECK_BIG`] block.
///
/// # Errors
/// The first violation found, or an allocation that failed.
pub fn check<S: Subject>() -> Result<(), String> {
    const COUNT: usize = 600;
    let mut fx = Fixture::<S>::new()?;
    let mut rng = XorShift::new(0xC0FF_EE00_D15E_A5E5);
    let max_align_log2 = S::max_align().min(REGION_ALIGN).trailing_zeros() as usize;
    let mut blocks: Vec<(NonNull<u8>, Layout, u8)> = Vec::with_capacity(COUNT);
    let mut result = Ok(());
    for i in 0..COUNT {
        let size = rng.log_size(13);
        let align = 1 << rng.range(0, max_align_log2);
        let layout = Layout::from_size_align(size, align).map_err(|e| e.to_string())?;
        // SAFETY: `size >= 1`.
        let Some(ptr) = (unsafe { fx.subject.alloc(layout) }) else {
            result = Err(out_of_memory("check", layout, blocks.len()));
            break;
        };
        let tag = (i % 251) as u8 + 1;
        // SAFETY: a fresh block is valid for writes of `layout.size()` bytes. If it is not
        // (the subject is broken) the checks below may not catch it first, but this is a test.
        unsafe { ptr.write_bytes(tag, size) };
        blocks.push((ptr, layout, tag));
    }
    if result.is_ok() {
        result = verify(&fx, &mut blocks, "after allocation");
    }
    if result.is_ok() {
        for i in (0..blocks.len()).step_by(2) {
            let (ptr, old, tag) = blocks[i];
            let new_size = rng.log_size(13);
            // SAFETY: `ptr` is live with `old`; `new_size >= 1`.
            let Some(new_ptr) = (unsafe { fx.subject.realloc(ptr, old, new_size) }) else {
                result = Err(format!("realloc of {} B to {new_size} B failed", old.size()));
                break;
            };
            let new = Layout::from_size_align(new_size, old.align()).map_err(|e| e.to_string())?;
            // SAFETY: the reallocated block holds at least `min(old, new)` bytes.
            let kept = unsafe { std::slice::from_raw_parts(new_ptr.as_ptr(), old.size().min(new_size)) };
            if let Some(at) = kept.iter().position(|&b| b != tag) {
                result = Err(format!("realloc of {} B to {new_size} B lost byte {at}", old.size()));
                blocks[i] = (new_ptr, new, tag);
                break;
            }
            // SAFETY: the reallocated block is valid for writes of `new_size` bytes.
            unsafe { new_ptr.write_bytes(tag, new_size) };
            blocks[i] = (new_ptr, new, tag);
        }
    }
    if result.is_ok() {
        result = verify(&fx, &mut blocks, "after realloc");
    }
    rng.shuffle(&mut blocks);
    for &(ptr, layout, _) in &blocks {
        // SAFETY: every block in the list is live with its current layout, freed once.
        unsafe { fx.subject.free(ptr, layout) };
    }
    result?;
    let big = workload_layout(CHECK_BIG);
    // SAFETY: the size is non-zero.
    match unsafe { fx.subject.alloc(big) } {
        // SAFETY: just allocated with `big`.
        Some(ptr) => unsafe { fx.subject.free(ptr, big) },
        None => return Err(format!("{CHECK_BIG} B could not be allocated after freeing everything")),
    }
    Ok(())
}

/// Alignment, containment, overlap and contents of the live blocks of [`check`].
fn verify<S>(fx: &Fixture<S>, blocks: &mut [(NonNull<u8>, Layout, u8)], when: &str) -> Result<(), String> {
    blocks.sort_by_key(|b| b.0.addr());
    verify_geometry(fx.region(), blocks.iter().map(|&(ptr, layout, _)| (ptr, layout)), when)?;
    for &(ptr, layout, tag) in blocks.iter() {
        // SAFETY: the block is live and holds `layout.size()` initialised bytes (we wrote them).
        let bytes = unsafe { std::slice::from_raw_parts(ptr.as_ptr(), layout.size()) };
        if let Some(at) = bytes.iter().position(|&b| b != tag) {
            return Err(format!("{when}: block {:#x} byte {at} was overwritten", ptr.addr()));
        }
    }
    Ok(())
}

/// Checks live blocks, given **sorted by address**: each is aligned to its layout's alignment,
/// lies inside `region` (when there is one), and no two overlap.
///
/// # Errors
/// The first violation, prefixed with `when`.
pub fn verify_geometry(
    region: Option<&Region>,
    sorted: impl Iterator<Item = (NonNull<u8>, Layout)>,
    when: &str,
) -> Result<(), String> {
    let mut previous: Option<(usize, usize)> = None;
    for (ptr, layout) in sorted {
        let addr = ptr.addr().get();
        if addr % layout.align() != 0 {
            return Err(format!("{when}: block {addr:#x} not aligned to {}", layout.align()));
        }
        if region.is_some_and(|r| !r.contains(addr, layout.size())) {
            return Err(format!("{when}: block {addr:#x} + {} B lies outside the region", layout.size()));
        }
        if let Some((a, len)) = previous {
            if a + len > addr {
                return Err(format!("{when}: blocks {a:#x} + {len} B and {addr:#x} overlap"));
            }
        }
        previous = Some((addr, layout.size()));
    }
    Ok(())
}

/// Sorts `live` by address and checks it with [`verify_geometry`].
///
/// # Errors
/// As [`verify_geometry`].
pub fn verify_live(
    region: Option<&Region>,
    live: &mut [(NonNull<u8>, Layout)],
    when: &str,
) -> Result<(), String> {
    live.sort_by_key(|b| b.0.addr());
    verify_geometry(region, live.iter().copied(), when)
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

/// Workload (a): allocate a block, pass it through `black_box`, free it.
pub struct Pair<S: Subject> {
    fx: Fixture<S>,
    layout: Layout,
    /// Blocks kept live beside the pairs ([`Pair::beside`]), freed on drop.
    kept: Vec<(NonNull<u8>, Layout)>,
}

impl<S: Subject> Pair<S> {
    /// A fresh fixture and pairs of `size` bytes (at least 1).
    ///
    /// # Errors
    /// As [`Fixture::new`].
    pub fn new(size: usize) -> Result<Self, String> {
        Ok(Pair { fx: Fixture::new()?, layout: workload_layout(size), kept: Vec::new() })
    }

    /// Pairs of `size` bytes beside `live` blocks of `small` bytes allocated first and kept
    /// live: with a size-class heap, a pair whose block has the size and alignment of a slab
    /// tells it from the heap's many slabs on every free.
    ///
    /// # Errors
    /// As [`Fixture::new`], or the `live` blocks do not fit.
    pub fn beside(size: usize, live: usize, small: usize) -> Result<Self, String> {
        let mut pair = Pair::<S>::new(size)?;
        let layout = workload_layout(small);
        for i in 0..live {
            // SAFETY: the size is at least 1 (`workload_layout`).
            let Some(ptr) = (unsafe { pair.fx.subject.alloc(layout) }) else {
                return Err(out_of_memory("pair beside live blocks", layout, i));
            };
            pair.kept.push((ptr, layout));
        }
        Ok(pair)
    }

    /// A fresh fixture filled with blocks of `hole` bytes (until the first failure, at most the
    /// region's length of them), every other one by address freed again: holes of at least
    /// `hole` bytes between live blocks. The pairs ask for the smallest multiple of 64 bytes
    /// that the allocator then refuses (found by bisection; the system allocator and mimalloc
    /// refuse nothing, and get `REGION_LEN` bytes): how long it takes to say no to a request
    /// just larger than every hole is the workload (`drive f`, [`Pair::try_run`]).
    ///
    /// # Errors
    /// As [`Fixture::new`].
    pub fn among_holes(hole: usize) -> Result<Self, String> {
        let mut pair = Pair::<S>::new(hole)?;
        let layout = workload_layout(hole);
        let mut blocks = Vec::new();
        while blocks.len() < REGION_LEN / layout.size() {
            // SAFETY: the size is at least 1 (`workload_layout`).
            match unsafe { pair.fx.subject.alloc(layout) } {
                Some(ptr) => blocks.push(ptr),
                None => break,
            }
        }
        // Every other one by address, whatever order the allocator placed them in.
        blocks.sort();
        for (i, ptr) in blocks.into_iter().enumerate() {
            if i % 2 == 1 {
                // SAFETY: just allocated with `layout`, freed once.
                unsafe { pair.fx.subject.free(ptr, layout) };
            } else {
                pair.kept.push((ptr, layout));
            }
        }
        // Granted at `lo` (a hole holds that much), refused at `hi` (if anything is).
        let (mut lo, mut hi) = (hole / 64, REGION_LEN / 64);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            pair.layout = workload_layout(mid * 64);
            if pair.try_run() {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        pair.layout = workload_layout(hi * 64);
        Ok(pair)
    }

    /// One allocation, and its free if it succeeded: whether it did.
    #[inline]
    pub fn try_run(&mut self) -> bool {
        // SAFETY: the size is at least 1 (`workload_layout`).
        match unsafe { self.fx.subject.alloc(self.layout) } {
            Some(ptr) => {
                // SAFETY: `ptr` was just allocated with `layout`.
                unsafe { self.fx.subject.free(black_box(ptr), self.layout) };
                true
            }
            None => false,
        }
    }

    /// One allocation and one free.
    ///
    /// # Errors
    /// The allocation failed.
    #[inline]
    pub fn run(&mut self) -> Result<(), String> {
        // SAFETY: the size is at least 1 (`workload_layout`).
        let Some(ptr) = (unsafe { self.fx.subject.alloc(self.layout) }) else {
            return Err(out_of_memory("pair", self.layout, 0));
        };
        let ptr = black_box(ptr);
        // SAFETY: `ptr` was just allocated with `layout`.
        unsafe { self.fx.subject.free(ptr, self.layout) };
        Ok(())
    }

    /// One pair outside any timing, checking the block (aligned, inside the region) while it is
    /// live.
    ///
    /// # Errors
    /// The allocation failed or the check did not hold.
    pub fn verify(&mut self) -> Result<(), String> {
        // SAFETY: the size is at least 1 (`workload_layout`).
        let Some(ptr) = (unsafe { self.fx.subject.alloc(self.layout) }) else {
            return Err(out_of_memory("pair", self.layout, 0));
        };
        let result = verify_live(self.fx.region(), &mut [(ptr, self.layout)], "pair");
        // SAFETY: `ptr` was just allocated with `layout`.
        unsafe { self.fx.subject.free(ptr, self.layout) };
        result
    }
}

impl<S: Subject> Drop for Pair<S> {
    /// Frees the kept blocks (a subject that is not region-based would leak them).
    fn drop(&mut self) {
        for (ptr, layout) in self.kept.drain(..) {
            // SAFETY: allocated with `layout` in `beside`, freed only here.
            unsafe { self.fx.subject.free(ptr, layout) };
        }
    }
}

/// The order in which [`Batch`] frees its blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeOrder {
    /// A fixed-seed random permutation.
    Shuffled,
    /// Last allocated, first freed.
    Lifo,
    /// First allocated, first freed.
    Fifo,
}

/// Workload (b): allocate `N` blocks of random sizes, then free them all in a [`FreeOrder`].
/// The sizes and the order are drawn once (fixed seeds) and replayed by every round.
pub struct Batch<S> {
    fx: Fixture<S>,
    layouts: Vec<Layout>,
    order: Vec<usize>,
    ptrs: Vec<NonNull<u8>>,
}

impl<S: Subject> Batch<S> {
    /// A fresh fixture and a round of `n` blocks of `min ..= max` bytes (uniform), freed in a
    /// random order.
    ///
    /// # Errors
    /// As [`Fixture::new`].
    pub fn new(n: usize, min: usize, max: usize) -> Result<Self, String> {
        Self::with_order(n, min, max, FreeOrder::Shuffled)
    }

    /// A fresh fixture and a round of `n` blocks of `min ..= max` bytes (uniform), freed in
    /// `free_order`.
    ///
    /// # Errors
    /// As [`Fixture::new`].
    pub fn with_order(n: usize, min: usize, max: usize, free_order: FreeOrder) -> Result<Self, String> {
        let mut rng = XorShift::new(0x5EED_0000_0000_00B1);
        let layouts = (0..n).map(|_| workload_layout(rng.range(min, max))).collect();
        let mut order: Vec<usize> = (0..n).collect();
        match free_order {
            FreeOrder::Shuffled => XorShift::new(0x5EED_0000_0000_00B2).shuffle(&mut order),
            FreeOrder::Lifo => order.reverse(),
            FreeOrder::Fifo => {}
        }
        Ok(Batch { fx: Fixture::new()?, layouts, order, ptrs: Vec::with_capacity(n) })
    }

    /// One round outside any timing, checking the blocks (aligned, inside the region, disjoint)
    /// while they are all live.
    ///
    /// # Errors
    /// An allocation failed or a check did not hold.
    pub fn verify_round(&mut self) -> Result<(), String> {
        let mut result = Ok(());
        for &layout in &self.layouts {
            // SAFETY: the size is at least 1 (`workload_layout`).
            match unsafe { self.fx.subject.alloc(layout) } {
                Some(ptr) => self.ptrs.push(ptr),
                None => {
                    result = Err(out_of_memory("batch", layout, self.ptrs.len()));
                    break;
                }
            }
        }
        let mut live: Vec<_> = self.ptrs.iter().copied().zip(self.layouts.iter().copied()).collect();
        if result.is_ok() {
            result = verify_live(self.fx.region(), &mut live, "batch");
        }
        for (ptr, layout) in live {
            // SAFETY: each block was allocated with its layout in this round, freed once.
            unsafe { self.fx.subject.free(ptr, layout) };
        }
        self.ptrs.clear();
        result
    }

    /// Allocations plus frees in one round.
    pub fn ops(&self) -> usize {
        2 * self.layouts.len()
    }

    /// One round: every allocation, then every free in the shuffled order.
    ///
    /// # Errors
    /// An allocation failed (what was allocated is freed again).
    #[inline]
    pub fn run(&mut self) -> Result<(), String> {
        for &layout in &self.layouts {
            // SAFETY: the size is at least 1 (`workload_layout`).
            match unsafe { self.fx.subject.alloc(layout) } {
                Some(ptr) => self.ptrs.push(ptr),
                None => {
                    let error = out_of_memory("batch", layout, self.ptrs.len());
                    for (&ptr, &layout) in self.ptrs.iter().zip(&self.layouts) {
                        // SAFETY: block `i` was allocated with `layouts[i]` in this round.
                        unsafe { self.fx.subject.free(ptr, layout) };
                    }
                    self.ptrs.clear();
                    return Err(error);
                }
            }
        }
        for &i in &self.order {
            // SAFETY: block `i` was allocated with `layouts[i]` in this round; `order` is a
            // permutation, so each is freed once.
            unsafe { self.fx.subject.free(self.ptrs[i], self.layouts[i]) };
        }
        self.ptrs.clear();
        Ok(())
    }
}

/// Workload (c): a fragmented heap. Set-up allocates `2 × live` blocks of 64 B – 1 KiB (uniform,
/// fixed seed) and frees every other one, leaving `live` blocks with holes between them. The
/// timed steps free live blocks and allocate them back with the same layout, visiting the live
/// blocks in a fixed-seed random order (so consecutive frees land far apart).
///
/// An allocator may hand back another hole than the block just freed (after a merge, or by its
/// fit policy), so the heap drifts with use: some peers' lists grow without bound when cycled
/// long enough. To keep the measurement independent of how many iterations a run asks for, the
/// heap is rebuilt after each **sweep** (every live block freed and allocated back once): every
/// live block is freed and the set-up is replayed. Callers run at most
/// [`remaining`](Self::remaining) steps and call [`rebuild`](Self::rebuild) outside the timing.
pub struct Fragmented<S: Subject> {
    fx: Fixture<S>,
    /// Live blocks to keep.
    target: usize,
    /// The live blocks of this sweep; entries `cursor .. cursor + pending` are freed, awaiting
    /// [`refill`](Self::refill); entries before `cursor` were freed and allocated back.
    live: Vec<(NonNull<u8>, Layout)>,
    cursor: usize,
    pending: usize,
}

impl<S: Subject> Fragmented<S> {
    /// Smallest block of the set-up.
    pub const MIN_SIZE: usize = 64;
    /// Largest block of the set-up.
    pub const MAX_SIZE: usize = 1024;

    /// A fresh fixture fragmented down to `live` blocks (at least 1).
    ///
    /// # Errors
    /// As [`Fixture::new`], or an allocation of the set-up failed.
    pub fn new(live: usize) -> Result<Self, String> {
        let target = live.max(1);
        let mut w = Fragmented { fx: Fixture::new()?, target, live: Vec::new(), cursor: 0, pending: 0 };
        w.live = fragment(&mut w.fx, target)?;
        Ok(w)
    }

    /// Number of live blocks.
    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// Frees left in this sweep.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.live.len() - self.cursor - self.pending
    }

    /// Frees every live block and replays the set-up: a fresh sweep over a freshly fragmented
    /// heap.
    ///
    /// # Errors
    /// An allocation of the set-up failed (the heap is then empty and [`remaining`] is 0).
    ///
    /// [`remaining`]: Self::remaining
    pub fn rebuild(&mut self) -> Result<(), String> {
        self.free_live();
        self.live.clear();
        self.cursor = 0;
        self.pending = 0;
        self.live = fragment(&mut self.fx, self.target)?;
        Ok(())
    }

    /// Checks the live blocks (not the pending ones): aligned, inside the region, disjoint.
    ///
    /// # Errors
    /// The first violation.
    pub fn verify(&self) -> Result<(), String> {
        let mut live: Vec<_> = self.live_blocks().collect();
        verify_live(self.fx.region(), &mut live, "fragmented")
    }

    /// The live blocks: every entry outside the pending range.
    fn live_blocks(&self) -> impl Iterator<Item = (NonNull<u8>, Layout)> + '_ {
        let (lo, hi) = (self.cursor, self.cursor + self.pending);
        self.live.iter().enumerate().filter(move |&(i, _)| i < lo || i >= hi).map(|(_, &b)| b)
    }

    /// Frees every live block (not the pending ones, already freed); the list is left as is.
    fn free_live(&mut self) {
        let live: Vec<_> = self.live_blocks().collect();
        for (ptr, layout) in live {
            // SAFETY: entries outside the pending range are live with their layout.
            unsafe { self.fx.subject.free(ptr, layout) };
        }
    }

    /// Frees the next `k` live blocks of this sweep (at most [`remaining`](Self::remaining);
    /// blocks freed before and not yet refilled are refilled first; a sweep that is over is
    /// followed by a [`rebuild`](Self::rebuild)). Returns how many were freed.
    ///
    /// # Errors
    /// Refilling earlier frees or rebuilding failed.
    #[inline]
    pub fn free_some(&mut self, k: usize) -> Result<usize, String> {
        if self.pending != 0 {
            self.refill()?;
        }
        if self.remaining() == 0 {
            self.rebuild()?;
        }
        let k = k.min(self.remaining());
        for &(ptr, layout) in &self.live[self.cursor..self.cursor + k] {
            // SAFETY: entries from `cursor` on are live (nothing is pending) with their layout;
            // they become pending.
            unsafe { self.fx.subject.free(ptr, layout) };
        }
        self.pending = k;
        Ok(k)
    }

    /// Allocates back the blocks freed by [`free_some`](Self::free_some) and moves the cursor
    /// past them.
    ///
    /// # Errors
    /// An allocation failed; the blocks not refilled stay pending.
    #[inline]
    pub fn refill(&mut self) -> Result<(), String> {
        while self.pending != 0 {
            let layout = self.live[self.cursor].1;
            // SAFETY: the size is at least 1.
            let Some(ptr) = (unsafe { self.fx.subject.alloc(layout) }) else {
                return Err(out_of_memory("fragmented refill", layout, self.live.len() - self.pending));
            };
            self.live[self.cursor].0 = ptr;
            self.pending -= 1;
            self.cursor += 1;
        }
        Ok(())
    }

    /// Frees the next live block and allocates it back.
    ///
    /// # Errors
    /// The allocation failed.
    #[inline]
    pub fn cycle(&mut self) -> Result<(), String> {
        self.free_some(1)?;
        self.refill()
    }

    /// Does `frees` frees in runs of up to `run`, adding the time of the frees alone to
    /// `total`: each run is followed by the allocations back, and each sweep by a rebuild, both
    /// outside the timing.
    ///
    /// # Errors
    /// An allocation back or a rebuild failed (`total` holds the time until then).
    pub fn time_frees(&mut self, frees: u64, run: usize, total: &mut Duration) -> Result<(), String> {
        let mut left = frees;
        while left > 0 {
            if self.remaining() == 0 {
                self.rebuild()?;
            }
            let k = left.min(run.max(1) as u64).min(self.remaining() as u64) as usize;
            let start = Instant::now();
            let freed = self.free_some(k);
            *total += start.elapsed();
            left -= (freed? as u64).max(1);
            self.refill()?;
        }
        Ok(())
    }

    /// Does `cycles` [`cycle`](Self::cycle)s, adding their time to `total`; each sweep is
    /// followed by a rebuild outside the timing.
    ///
    /// # Errors
    /// An allocation failed (`total` holds the time until then).
    pub fn time_cycles(&mut self, cycles: u64, total: &mut Duration) -> Result<(), String> {
        let mut left = cycles;
        while left > 0 {
            if self.remaining() == 0 {
                self.rebuild()?;
            }
            let n = left.min(self.remaining() as u64);
            let start = Instant::now();
            let mut result = Ok(());
            for _ in 0..n {
                result = self.cycle();
                if result.is_err() {
                    break;
                }
            }
            *total += start.elapsed();
            result?;
            left -= n;
        }
        Ok(())
    }
}

impl<S: Subject> Drop for Fragmented<S> {
    /// Frees the live blocks (a subject that is not region-based would leak them).
    fn drop(&mut self) {
        self.free_live();
    }
}

/// The set-up of [`Fragmented`]: allocates `2 × live` blocks, frees every other one, and returns
/// the others in a fixed-seed random order. On failure, everything allocated is freed again.
fn fragment<S: Subject>(fx: &mut Fixture<S>, live: usize) -> Result<Vec<(NonNull<u8>, Layout)>, String> {
    let mut rng = XorShift::new(0x5EED_0000_0000_00C1);
    let mut all = Vec::with_capacity(2 * live);
    let mut result = Ok(());
    for _ in 0..2 * live {
        let size = rng.range(Fragmented::<S>::MIN_SIZE, Fragmented::<S>::MAX_SIZE);
        let layout = workload_layout(size);
        // SAFETY: the size is at least 1.
        match unsafe { fx.subject.alloc(layout) } {
            Some(ptr) => all.push((ptr, layout)),
            None => {
                result = Err(out_of_memory("fragmented set-up", layout, all.len()));
                break;
            }
        }
    }
    let mut kept = Vec::with_capacity(live);
    for (i, &(ptr, layout)) in all.iter().enumerate() {
        if i % 2 == 1 || result.is_err() {
            // SAFETY: allocated above with `layout`, freed once.
            unsafe { fx.subject.free(ptr, layout) };
        } else {
            kept.push((ptr, layout));
        }
    }
    result?;
    XorShift::new(0x5EED_0000_0000_00C2).shuffle(&mut kept);
    Ok(kept)
}
