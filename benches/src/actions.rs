//! Random actions (talc's benchmark style), on one thread or on two threads sharing one heap.
//!
//! An [`ActionState`] holds the live blocks of one thread and a fixed-seed generator. Each step
//! picks an action from one random word: with no live block, an allocation; at
//! [`ActionMix::max_live`] live blocks, a free; otherwise an allocation or a free of a random
//! live block with equal odds, or (when [`ActionMix::realloc`] is set) 3/8 allocations, 3/8
//! frees and 2/8 reallocations of a random live block. Sizes are uniform in
//! `8 ..= max_size`, alignment 8. The heap stays in a steady state across calls: nothing is
//! freed between rounds.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use budalloc::allocator_api2::alloc::Allocator;
use budalloc::DefaultBuddy;

use crate::native::{Native, NativeAlloc};
use crate::{
    out_of_memory, verify_live, Fixture, Policy, Region, Subject, XorShift, REGION_LEN, WORKLOAD_ALIGN,
};

/// The parameters of a random-action workload.
#[derive(Clone, Copy, Debug)]
pub struct ActionMix {
    /// Largest request (bytes); requests are uniform in `8 ..= max_size`.
    pub max_size: usize,
    /// Whether reallocations are part of the mix.
    pub realloc: bool,
    /// Live blocks at most (per thread).
    pub max_live: usize,
}

/// Smallest request of the random actions (bytes).
const ACTION_MIN_SIZE: usize = 8;

/// The three operations a workload needs, for a subject (`&mut S`) and for a thread's handle on
/// a [`Shared`] heap alike.
pub trait Ops {
    /// As [`Subject::alloc`].
    ///
    /// # Safety
    /// As [`Subject::alloc`].
    unsafe fn op_alloc(&mut self, layout: Layout) -> Option<NonNull<u8>>;

    /// As [`Subject::free`].
    ///
    /// # Safety
    /// As [`Subject::free`].
    unsafe fn op_free(&mut self, ptr: NonNull<u8>, layout: Layout);

    /// As [`Subject::realloc`].
    ///
    /// # Safety
    /// As [`Subject::realloc`].
    unsafe fn op_realloc(&mut self, ptr: NonNull<u8>, old: Layout, new_size: usize) -> Option<NonNull<u8>>;
}

impl<S: Subject> Ops for S {
    #[inline]
    unsafe fn op_alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        // SAFETY: forwarded from our caller.
        unsafe { self.alloc(layout) }
    }

    #[inline]
    unsafe fn op_free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded from our caller.
        unsafe { self.free(ptr, layout) }
    }

    #[inline]
    unsafe fn op_realloc(&mut self, ptr: NonNull<u8>, old: Layout, new_size: usize) -> Option<NonNull<u8>> {
        // SAFETY: forwarded from our caller.
        unsafe { self.realloc(ptr, old, new_size) }
    }
}

/// The live blocks and the generator of one thread's random actions.
pub struct ActionState {
    live: Vec<(NonNull<u8>, Layout)>,
    rng: XorShift,
    mix: ActionMix,
}

// SAFETY: the state holds addresses of blocks it alone owns; it never reads or writes them, and
// freeing them takes the heap (`&mut impl Ops`), whose own `Send`/`Sync` decide which thread may
// do that.
unsafe impl Send for ActionState {}

impl ActionState {
    /// No live block, a generator seeded with `seed`.
    pub fn new(mix: ActionMix, seed: u64) -> Self {
        ActionState { live: Vec::with_capacity(mix.max_live), rng: XorShift::new(seed), mix }
    }

    /// The live blocks.
    pub fn live(&self) -> &[(NonNull<u8>, Layout)] {
        &self.live
    }

    /// The live blocks, to check them (sorting them is fine).
    pub fn live_mut(&mut self) -> &mut [(NonNull<u8>, Layout)] {
        &mut self.live
    }

    /// One random action on `heap`.
    ///
    /// # Errors
    /// An allocation or reallocation failed (nothing changed).
    #[inline]
    pub fn step<O: Ops>(&mut self, heap: &mut O) -> Result<(), String> {
        let r = self.rng.next_u64();
        let n = self.live.len();
        let roll = r % 8;
        let index = (r >> 8) as usize % n.max(1);
        let size = ACTION_MIN_SIZE + (r >> 32) as usize % (self.mix.max_size - ACTION_MIN_SIZE + 1);
        let free = n >= self.mix.max_live
            || (n > 0 && if self.mix.realloc { (3..6).contains(&roll) } else { roll >= 4 });
        if free {
            let (ptr, layout) = self.live.swap_remove(index);
            // SAFETY: the block was live with `layout` and left the list: freed once.
            unsafe { heap.op_free(ptr, layout) };
        } else if n > 0 && self.mix.realloc && roll >= 6 {
            let (ptr, old) = self.live[index];
            // SAFETY: the block is live with `old`; `size >= 8`.
            let Some(moved) = (unsafe { heap.op_realloc(ptr, old, size) }) else {
                return Err(format!("realloc of {} B to {size} B failed with {n} blocks live", old.size()));
            };
            self.live[index] = (moved, Layout::from_size_align(size, old.align()).unwrap_or(old));
        } else {
            let layout = Layout::from_size_align(size, WORKLOAD_ALIGN).unwrap_or(Layout::new::<u64>());
            // SAFETY: `size >= 8`.
            let Some(ptr) = (unsafe { heap.op_alloc(layout) }) else {
                return Err(out_of_memory("random actions", layout, n));
            };
            self.live.push((ptr, layout));
        }
        Ok(())
    }

    /// Frees every live block.
    pub fn free_all<O: Ops>(&mut self, heap: &mut O) {
        for (ptr, layout) in self.live.drain(..) {
            // SAFETY: every listed block is live with its layout and leaves the list: freed once.
            unsafe { heap.op_free(ptr, layout) };
        }
    }
}

/// Random actions on one subject over its own region.
pub struct Actions<S: Subject> {
    fx: Fixture<S>,
    state: ActionState,
}

impl<S: Subject> Actions<S> {
    /// A fresh fixture and no live block.
    ///
    /// # Errors
    /// As [`Fixture::new`].
    pub fn new(mix: ActionMix) -> Result<Self, String> {
        Self::with_seed(mix, 0x5EED_0000_0000_00A1)
    }

    /// A fresh fixture and no live block; the actions drawn from `seed` (with
    /// [`THREAD_SEED`], those of the first thread of [`Threads`]).
    ///
    /// # Errors
    /// As [`Fixture::new`].
    pub fn with_seed(mix: ActionMix, seed: u64) -> Result<Self, String> {
        Ok(Actions { fx: Fixture::new()?, state: ActionState::new(mix, seed) })
    }

    /// `n` actions.
    ///
    /// # Errors
    /// An allocation or reallocation failed.
    #[inline]
    pub fn run(&mut self, n: u64) -> Result<(), String> {
        for _ in 0..n {
            self.state.step(self.fx.subject())?;
        }
        Ok(())
    }

    /// Checks the live blocks: aligned, inside the region, disjoint.
    ///
    /// # Errors
    /// The first violation.
    pub fn verify(&mut self) -> Result<(), String> {
        verify_live(self.fx.region(), self.state.live_mut(), "random actions")
    }
}

impl<S: Subject> Drop for Actions<S> {
    fn drop(&mut self) {
        self.state.free_all(self.fx.subject());
    }
}

// ---------------------------------------------------------------------------------------------
// Two threads, one heap
// ---------------------------------------------------------------------------------------------

/// A heap that threads share through `&self`.
///
/// Adding a thread-safe allocator to the two-thread workload takes one implementation of this
/// trait and one line in [`visit_shared`](crate::visit_shared).
pub trait Shared: Sync + Sized {
    /// Name in reports.
    fn name() -> &'static str;

    /// A fresh heap (over its own region of [`REGION_LEN`] bytes if it takes one).
    ///
    /// # Errors
    /// No memory for the region, or the allocator refuses it.
    fn build() -> Result<Self, String>;

    /// Checks live blocks of this heap: aligned, inside its region (if any), disjoint.
    ///
    /// # Errors
    /// The first violation.
    fn verify(&self, live: &mut [(NonNull<u8>, Layout)]) -> Result<(), String>;

    /// As [`Subject::alloc`], from any thread.
    ///
    /// # Safety
    /// As [`Subject::alloc`].
    unsafe fn alloc(&self, layout: Layout) -> Option<NonNull<u8>>;

    /// As [`Subject::free`], from any thread.
    ///
    /// # Safety
    /// As [`Subject::free`].
    unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout);

    /// As [`Subject::realloc`], from any thread.
    ///
    /// # Safety
    /// As [`Subject::realloc`].
    unsafe fn realloc(&self, ptr: NonNull<u8>, old: Layout, new_size: usize) -> Option<NonNull<u8>>;
}

/// One thread's view of a [`Shared`] heap.
pub struct Handle<'a, T>(pub &'a T);

impl<T: Shared> Ops for Handle<'_, T> {
    #[inline]
    unsafe fn op_alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        // SAFETY: forwarded from our caller.
        unsafe { self.0.alloc(layout) }
    }

    #[inline]
    unsafe fn op_free(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded from our caller.
        unsafe { self.0.free(ptr, layout) }
    }

    #[inline]
    unsafe fn op_realloc(&mut self, ptr: NonNull<u8>, old: Layout, new_size: usize) -> Option<NonNull<u8>> {
        // SAFETY: forwarded from our caller.
        unsafe { self.0.realloc(ptr, old, new_size) }
    }
}

/// A fixture that may move between threads.
struct SendFixture<S>(Fixture<S>);

// SAFETY: the fixture owns its subject and region alone; the peers keep no thread-local state
// and no pointer to anything but their region, so they may be used from another thread, one
// at a time (the spin lock around it sees to that).
unsafe impl<S> Send for SendFixture<S> {}

/// A region peer behind a `spin::Mutex`, as its users share it between threads.
pub struct SpinLocked<S: Subject>(spin::Mutex<SendFixture<S>>);

impl<S: Subject> Shared for SpinLocked<S> {
    fn name() -> &'static str {
        S::name()
    }

    fn build() -> Result<Self, String> {
        Ok(SpinLocked(spin::Mutex::new(SendFixture(Fixture::new()?))))
    }

    fn verify(&self, live: &mut [(NonNull<u8>, Layout)]) -> Result<(), String> {
        verify_live(self.0.lock().0.region(), live, "two threads")
    }

    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> Option<NonNull<u8>> {
        // SAFETY: forwarded from our caller.
        unsafe { self.0.lock().0.subject().alloc(layout) }
    }

    #[inline(never)]
    unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded from our caller.
        unsafe { self.0.lock().0.subject().free(ptr, layout) }
    }

    #[inline(never)]
    unsafe fn realloc(&self, ptr: NonNull<u8>, old: Layout, new_size: usize) -> Option<NonNull<u8>> {
        // SAFETY: forwarded from our caller.
        unsafe { self.0.lock().0.subject().realloc(ptr, old, new_size) }
    }
}

/// The `alloc`, `free` and `realloc` of a [`Shared`] heap whose `heap` field is a budalloc
/// frontend `H` with `&H: allocator_api2::alloc::Allocator`.
macro_rules! shared_via_allocator {
    () => {
        #[inline(never)]
        unsafe fn alloc(&self, layout: Layout) -> Option<NonNull<u8>> {
            (&self.heap).allocate(layout).ok().map(NonNull::cast)
        }

        #[inline(never)]
        unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout) {
            // SAFETY: `ptr` is live and `layout` fits it (our caller's promise).
            unsafe { (&self.heap).deallocate(ptr, layout) }
        }

        #[inline(never)]
        unsafe fn realloc(&self, ptr: NonNull<u8>, old: Layout, new_size: usize) -> Option<NonNull<u8>> {
            // SAFETY: forwarded from our caller.
            unsafe { realloc_in(&self.heap, ptr, old, new_size) }
        }
    };
}

/// A budalloc policy behind its thread-safe frontend, `budalloc::Locked<P, Spin>`, over a
/// region, called through the `allocator_api2` `Allocator` implementation of `&Locked`.
pub struct BudallocLocked<P: Policy = DefaultBuddy> {
    /// Declared first: dropped before the region.
    heap: budalloc::Locked<P>,
    region: Region,
}

impl<P: Policy + Send> Shared for BudallocLocked<P> {
    fn name() -> &'static str {
        P::NAME
    }

    fn build() -> Result<Self, String> {
        let region = Region::new(REGION_LEN)?;
        let heap = budalloc::Locked::new(P::default());
        // SAFETY: the region is valid for reads and writes of its size, used by nothing else,
        // and dropped after the heap (field order).
        unsafe { heap.claim_raw(region.start(), region.size()) }.map_err(|e| format!("claim_raw: {e:?}"))?;
        Ok(BudallocLocked { heap, region })
    }

    fn verify(&self, live: &mut [(NonNull<u8>, Layout)]) -> Result<(), String> {
        verify_live(Some(&self.region), live, "two threads")
    }

    shared_via_allocator!();
}

/// A size-class policy that a per-thread cache can front, with its report name.
pub trait CachedPolicy: Policy + budalloc::SizeClasses + Send {
    /// Name in reports of `Cached` in front of this policy.
    const CACHED_NAME: &'static str;
}

impl CachedPolicy for budalloc::ClassesBuddy {
    const CACHED_NAME: &'static str = "budalloc-classes-cached";
}

/// `CachedGlobal`'s composition over a region: classes up to 32 KiB over the plain buddy.
pub type PlainClasses = budalloc::Classes<DefaultBuddy, { 32 * 1024 }>;

impl Policy for PlainClasses {
    const NAME: &'static str = "budalloc-classes-plain";
}

impl CachedPolicy for PlainClasses {
    const CACHED_NAME: &'static str = "budalloc-cached";
}

/// A size-class heap with per-thread caches: `budalloc::Cached` in front of
/// `budalloc::Locked<P>` over a region. `Cached` needs a `'static` shared heap, so each build
/// leaks its shared heap and its region (one per benchmark).
pub struct BudallocCached<P: CachedPolicy + 'static = budalloc::ClassesBuddy> {
    heap: budalloc::Cached<P>,
    region: &'static Region,
}

impl<P: CachedPolicy + 'static> Shared for BudallocCached<P> {
    fn name() -> &'static str {
        P::CACHED_NAME
    }

    fn build() -> Result<Self, String> {
        let region: &'static Region = Box::leak(Box::new(Region::new(REGION_LEN)?));
        let shared = Box::leak(Box::new(budalloc::Locked::new(P::default())));
        // SAFETY: the region is valid for reads and writes of its size, used by nothing else,
        // and never freed (leaked with the heap).
        unsafe { shared.claim_raw(region.start(), region.size()) }
            .map_err(|e| format!("claim_raw: {e:?}"))?;
        Ok(BudallocCached { heap: budalloc::Cached::new(shared), region })
    }

    fn verify(&self, live: &mut [(NonNull<u8>, Layout)]) -> Result<(), String> {
        verify_live(Some(self.region), live, "threads")
    }

    shared_via_allocator!();
}

/// A heap per thread and nothing shared: `THREADS` [`BudallocLocked`] heaps of the size-class
/// policy over regions of their own. Each thread allocates from its own heap (the first thread
/// to allocate takes heap 0, the next heap 1, and so on, round robin), so no lock is ever
/// contended and no line is shared; a free or realloc goes to the heap whose region holds the
/// block. Not an allocator: the ceiling of the threads workload on this machine, what a
/// frontend with no shared state at all would scale to (`drive scale budalloc-unshared`).
pub struct Unshared {
    /// Boxed, each on cache lines of its own, so that no line holds parts of two heaps.
    heaps: [Box<OwnLines<BudallocLocked<budalloc::ClassesBuddy>>>; THREADS],
    /// Each heap's region, `(start, end)`, read to find the heap of a block: a free reads no
    /// line of another thread's heap, which that thread writes on every action. Reading the
    /// regions from the heaps themselves, with the heaps in plain boxes, cost this subject its
    /// second core: 30.7 ns per action on one thread, 36.7 to 38.7 on two; with both changes,
    /// 30.1 to 32.7 and 18.3 to 20.0 (`drive scale budalloc-unshared 5 2000000`, 2026-12-07).
    bounds: [(usize, usize); THREADS],
}

/// A value alone on its cache lines (128 bytes: a line and the neighbour the hardware
/// prefetches with it).
#[repr(align(128))]
struct OwnLines<T>(T);

/// How many threads have taken a heap of [`Unshared`] (the next one takes this modulo
/// [`THREADS`]).
static NEXT_HEAP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

std::thread_local! {
    /// The heap of [`Unshared`] this thread allocates from, once it has allocated.
    static MY_HEAP: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

impl Unshared {
    /// This thread's heap.
    fn mine(&self) -> &budalloc::Locked<budalloc::ClassesBuddy> {
        let i = MY_HEAP.with(|mine| {
            mine.get().unwrap_or_else(|| {
                let i = NEXT_HEAP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                mine.set(Some(i));
                i
            })
        });
        &self.heaps[i % THREADS].0.heap
    }

    /// The index of the heap whose region holds `ptr`, if one does.
    fn index_of(&self, ptr: NonNull<u8>) -> Option<usize> {
        let addr = ptr.addr().get();
        self.bounds.iter().position(|&(start, end)| (start..end).contains(&addr))
    }

    /// The heap whose region holds `ptr` (heap 0 if none does).
    fn owner(&self, ptr: NonNull<u8>) -> &budalloc::Locked<budalloc::ClassesBuddy> {
        &self.heaps[self.index_of(ptr).unwrap_or(0)].0.heap
    }
}

impl Shared for Unshared {
    fn name() -> &'static str {
        "budalloc-unshared"
    }

    fn build() -> Result<Self, String> {
        let heaps: Vec<_> = (0..THREADS)
            .map(|_| BudallocLocked::build().map(|heap| Box::new(OwnLines(heap))))
            .collect::<Result<_, _>>()?;
        let heaps: [Box<OwnLines<BudallocLocked<_>>>; THREADS] =
            heaps.try_into().map_err(|_| "one heap per thread".to_string())?;
        let bounds = core::array::from_fn(|i| {
            let region = &heaps[i].0.region;
            (region.start().addr(), region.start().addr() + region.size())
        });
        Ok(Unshared { heaps, bounds })
    }

    fn verify(&self, live: &mut [(NonNull<u8>, Layout)]) -> Result<(), String> {
        for (i, heap) in self.heaps.iter().enumerate() {
            let mut own: Vec<_> =
                live.iter().copied().filter(|&(p, _)| self.index_of(p) == Some(i)).collect();
            verify_live(Some(&heap.0.region), &mut own, "threads")?;
        }
        Ok(())
    }

    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> Option<NonNull<u8>> {
        self.mine().allocate(layout).ok().map(NonNull::cast)
    }

    #[inline(never)]
    unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: `ptr` is live in the heap whose region holds it, and `layout` fits it (our
        // caller's promise).
        unsafe { self.owner(ptr).deallocate(ptr, layout) }
    }

    #[inline(never)]
    unsafe fn realloc(&self, ptr: NonNull<u8>, old: Layout, new_size: usize) -> Option<NonNull<u8>> {
        // SAFETY: forwarded from our caller; the block's own heap resizes it.
        unsafe { realloc_in(self.owner(ptr), ptr, old, new_size) }
    }
}

/// Resizes a block through an `allocator_api2` allocator: `grow` or `shrink` to `new_size`
/// bytes, same alignment.
///
/// # Safety
/// `ptr` must be live in `heap` with `old`; `new_size` must be non-zero.
#[inline]
pub unsafe fn realloc_in<A: Allocator>(
    heap: A,
    ptr: NonNull<u8>,
    old: Layout,
    new_size: usize,
) -> Option<NonNull<u8>> {
    let new = Layout::from_size_align(new_size, old.align()).ok()?;
    let block = if new_size >= old.size() {
        // SAFETY: `ptr` is live with `old`, and the new size is not smaller.
        unsafe { heap.grow(ptr, old, new) }
    } else {
        // SAFETY: `ptr` is live with `old`, and the new size is smaller.
        unsafe { heap.shrink(ptr, old, new) }
    };
    block.ok().map(NonNull::cast)
}

impl<G: NativeAlloc> Shared for Native<G> {
    fn name() -> &'static str {
        G::NAME
    }

    fn build() -> Result<Self, String> {
        Ok(Native::default())
    }

    fn verify(&self, live: &mut [(NonNull<u8>, Layout)]) -> Result<(), String> {
        verify_live(None, live, "two threads")
    }

    unsafe fn alloc(&self, layout: Layout) -> Option<NonNull<u8>> {
        // SAFETY: forwarded from our caller.
        unsafe { self.alloc_shared(layout) }
    }

    unsafe fn free(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded from our caller.
        unsafe { self.free_shared(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: NonNull<u8>, old: Layout, new_size: usize) -> Option<NonNull<u8>> {
        // SAFETY: forwarded from our caller.
        unsafe { self.realloc_shared(ptr, old, new_size) }
    }
}

/// Threads of the multi-thread workload (this machine has two cores); the same workload on one
/// thread gives the scaling.
pub const THREADS: usize = 2;

/// The actions of the thread workloads (`threads_N_actions_realloc_4096B`): alloc / free /
/// realloc of 8 B–4 KiB, at most 1000 live blocks per thread.
pub const THREAD_MIX: ActionMix = ActionMix { max_size: 4096, realloc: true, max_live: 1000 };

/// The seed of the first thread's actions in [`Threads`] (thread `i` draws from
/// `THREAD_SEED + i`).
pub const THREAD_SEED: u64 = 0x5EED_0000_0000_0070;

/// Random actions on `threads` threads against one shared heap; each thread has its own live
/// blocks (and frees only those), all from the same heap.
pub struct Threads<T: Shared> {
    heap: T,
    /// Each thread's state alone on its cache lines. Side by side, the states of two threads
    /// shared a line, which each thread writes on every action (the generator, the live list's
    /// length): that false sharing cost every subject much of its second core.
    /// `budalloc-cached` took 19.1 to 19.5 ns per action on one thread and 22.0 to 24.8 on
    /// two; apart, 19.3 and 12.6 to 12.8 ns (`drive scale budalloc-cached 5 2000000`,
    /// 2026-12-07).
    states: Vec<OwnLines<ActionState>>,
}

/// The workload on [`THREADS`] threads.
pub type TwoThreads<T> = Threads<T>;

impl<T: Shared> Threads<T> {
    /// A fresh heap, `threads` threads and no live block.
    ///
    /// # Errors
    /// As [`Shared::build`].
    pub fn new(mix: ActionMix, threads: usize) -> Result<Self, String> {
        let states =
            (0..threads.max(1) as u64).map(|i| OwnLines(ActionState::new(mix, THREAD_SEED + i))).collect();
        Ok(Threads { heap: T::build()?, states })
    }

    /// `total` actions split evenly between the threads; returns the wall time from the first
    /// thread's start to the last one's end, each read by the worker itself (thread start-up
    /// and exit are not timed). The spawning thread takes no reading: with as many workers as
    /// cores it may not run again until a worker is done, and its clock would start late.
    ///
    /// # Errors
    /// An allocation or reallocation failed on some thread (the first error).
    pub fn run(&mut self, total: u64) -> Result<Duration, String> {
        let threads = self.states.len();
        let per_thread = total.div_ceil(threads as u64);
        let heap = &self.heap;
        let ready = Barrier::new(threads);
        let results: Vec<_> = std::thread::scope(|scope| {
            let ready = &ready;
            let workers: Vec<_> = self
                .states
                .iter_mut()
                .map(|OwnLines(state)| {
                    scope.spawn(move || {
                        let mut handle = Handle(heap);
                        ready.wait();
                        let start = Instant::now();
                        let done = (0..per_thread).try_for_each(|_| state.step(&mut handle));
                        done.map(|()| (start, Instant::now()))
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join()).collect()
        });
        let mut span: Option<(Instant, Instant)> = None;
        for result in results {
            let (start, end) = result.map_err(|_| "a worker thread panicked".to_string())??;
            span = Some(span.map_or((start, end), |(s, e)| (s.min(start), e.max(end))));
        }
        let elapsed = span.map_or(Duration::ZERO, |(start, end)| end - start);
        Ok(elapsed.mul_f64(total as f64 / (per_thread * threads as u64) as f64))
    }

    /// Checks the live blocks of all threads together: aligned, inside the region, disjoint.
    ///
    /// # Errors
    /// The first violation.
    pub fn verify(&self) -> Result<(), String> {
        let mut all: Vec<_> = self.states.iter().flat_map(|OwnLines(s)| s.live().iter().copied()).collect();
        self.heap.verify(&mut all)
    }
}

impl<T: Shared> Drop for Threads<T> {
    fn drop(&mut self) {
        let mut handle = Handle(&self.heap);
        for OwnLines(state) in &mut self.states {
            state.free_all(&mut handle);
        }
    }
}
