//! [`Cached`]: per-thread magazines of size-class objects in front of one shared, locked policy.
//!
//! Each thread keeps, per size class, a magazine of up to [`MAGAZINE`] free objects (fewer for
//! large classes: at most [`MAGAZINE_BYTES`], see [`capacity`]). An allocation pops from the
//! thread's magazine and a free pushes onto it: no lock, no atomic. An empty magazine is refilled
//! with half its capacity under one lock; a full one gives its oldest half back under one lock. A block freed by another thread than the one
//! that allocated it simply joins the freeing thread's magazine: there is no per-owner state, so
//! a cross-thread free costs what a local one does and never takes a lock of its own. When a
//! thread exits, its magazines go back to the shared policy, so nothing is lost; an allocation
//! that finds the shared policy out of memory gives the calling thread's magazines back first
//! and tries once more, so memory cached by that thread never makes it fail.
//!
//! What is checked, and when:
//! - a double free (or a resize) of an object that sits in the thread's magazine is caught at
//!   once: every free and resize looks the pointer up in its magazine (one byte of a counting
//!   filter of the cached addresses, then, on a hit, at most [`MAGAZINE`] compares; the
//!   allocator never reads or writes a cached object, which may hold uninitialised bytes);
//! - a resize of a block of the shared policy (a layout that maps to no cached class) is the
//!   shared policy's, checked as a checked free would be; one that moves such a block into a
//!   cached class first checks it the same way. Either refuses a freed, foreign or
//!   misdescribed block before anything is allocated or copied. A resize of an object of a
//!   cached class is checked as its free is: against the magazine at once, by the shared
//!   policy when the magazine goes back;
//! - a foreign or interior pointer, or a wrong layout, is caught by the shared policy's checked
//!   free when the magazine is flushed, at most [`MAGAZINE`] frees later, possibly after this
//!   thread handed the object out again. The `GlobalAlloc` path then aborts with the usual
//!   one-line report;
//! - a double free whose first free already left the magazine (given back to the shared
//!   policy) is caught at the flush only if the object is still free there. If the shared
//!   policy handed it out again meanwhile, the flush finds it live and takes it: two owners
//!   then hold it, and nothing reports it. [`Locked`] checks every free at once, against the
//!   policy's own metadata; use it where that matters more than speed;
//! - a call made while the thread's magazines are in use (re-entered, from a signal handler)
//!   bypasses them and goes to the shared policy: a free of an object that sits in the
//!   magazine then is not caught, and the object has two owners.
//!
//! Requests that map to no class, and zero-size requests, go to the shared policy (or get a
//! dangling pointer) as with [`Locked`].

use core::alloc::Layout;
use core::ptr::NonNull;

use budalloc_core::{AllocError, FreeError, SizeClasses};

use crate::locked::{Locked, RawLock, Spin};

/// Objects a magazine holds at most, per class and thread.
pub const MAGAZINE: usize = 64;
/// Objects moved per refill or flush (one lock each), at most.
pub const BATCH: usize = MAGAZINE / 2;
/// Bytes a magazine holds at most: larger classes get fewer objects ([`capacity`]).
///
/// 128 KiB lets classes up to 2 KiB keep a full [`MAGAZINE`] and the 4 KiB class 32 objects. A
/// thread's magazines then hold at most 2.74 MiB over the 40 classes of a table up to 32 KiB
/// (the facade's `CachedGlobal`; 1.34 MiB with 32 objects and 64 KiB). Measured on the
/// benchmarks' two-thread workload (random alloc / free / realloc of 8 B – 4 KiB):
/// - trips to the shared lock, one thread (`valgrind --tool=callgrind drive scale
///   budalloc-cached 0 400000 1`, 2026-12-07): 821 refills and flushes per 400 000 actions
///   with 32 objects and 64 KiB, 128 with 64 objects and 128 KiB;
/// - two threads against one (`drive scale budalloc-cached 9`, three to four runs each,
///   interleaved, 2026-12-07): throughput ratios (medians of 9 rounds) of 1.57–1.62 with 32
///   objects and 64 KiB, 1.59–1.61 with 64 objects and 64 KiB, 1.65–1.68 with 32 objects and
///   128 KiB, 1.68–1.76 with 64 objects and 128 KiB (14 runs); one thread about 2% slower.
pub const MAGAZINE_BYTES: usize = 128 * 1024;

/// Objects a magazine of `size`-byte objects holds: [`MAGAZINE`], or fewer so that it keeps at
/// most [`MAGAZINE_BYTES`] (and at least 2); refills and flushes move half of it.
#[inline]
pub const fn capacity(size: usize) -> usize {
    let by_bytes = MAGAZINE_BYTES / if size == 0 { 1 } else { size };
    if by_bytes < 2 {
        2
    } else if by_bytes > MAGAZINE {
        MAGAZINE
    } else {
        by_bytes
    }
}

/// Whether a magazine of `size`-byte objects holding `len` is full: `len >= capacity(size)`,
/// without [`capacity`]'s division (which every free would otherwise pay: a magazine that is
/// not full takes the free without a lock). `capacity(size) <= len` holds exactly when
/// `MAGAZINE_BYTES / size <= len`, that is `MAGAZINE_BYTES < (len + 1) * size`, within the
/// bounds `2 ..= MAGAZINE`.
#[inline]
const fn is_full(len: usize, size: usize) -> bool {
    len >= MAGAZINE || (len >= 2 && (len + 1).saturating_mul(size) > MAGAZINE_BYTES)
}

/// Classes that get magazines (the smallest ones); larger classes go to the shared policy.
pub const CACHED_CLASSES: usize = 40;

/// Buckets of a magazine's filter ([`Magazines`]' `filter` field).
///
/// A half-full magazine (32 objects) sends about `32 / FILTER` of the lookups to the compares
/// (6% with 512 buckets), and each one costs a scan whose end the processor cannot predict.
/// Measured with 32-object magazines, half-full at 16 (22% of the lookups with 64 buckets, 3%
/// with 512), on the benchmarks' thread workload (random alloc / free / realloc of 8 B – 4 KiB,
/// one thread, `drive scale budalloc-cached 5`, 10 interleaved rounds each, 2026-12-07): a
/// median of 27.7 ns per action with 64 buckets, 25.2 with 256 and 24.0 with 512 (mimalloc 25.4
/// in six of those rounds). With 64-object magazines, 1024 buckets measured the same as 512
/// (two-thread ratios 1.73–1.78 against 1.74–1.76, one thread within 2%). 512 buckets take
/// 20 KiB per thread over the 40 cached classes, beside the 20 KiB of the magazines' slots.
const FILTER: usize = 512;
// `bucket` takes the top `log2(FILTER)` bits of a hash; a count and `len` fit a byte.
const _: () = assert!(FILTER.is_power_of_two() && MAGAZINE <= u8::MAX as usize);

/// The filter bucket of `ptr`: the top bits of a multiplicative hash of its address (objects
/// of a class lie a multiple of the class size apart, which the low bits alone would repeat).
#[inline]
fn bucket(ptr: NonNull<u8>) -> usize {
    ((ptr.addr().get() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - FILTER.ilog2())) as usize
}

/// One thread's cached objects, per class. Plain data: the thread-local wrapper and the loom
/// model drive the same code.
pub struct Magazines {
    /// Per class, the cached objects. Invariant: `objects[c][..len[c]]` are distinct objects of
    /// class `c`, allocated from the shared policy with a layout of that class (each holds
    /// `class_layout(c)`, the layout the flush frees it with), owned by this cache
    /// (no user holds them); oldest first. `objects[c][len[c]..]` are `None`.
    objects: [[Option<NonNull<u8>>; MAGAZINE]; CACHED_CLASSES],
    /// Per class, how many objects are cached. Invariant: `len[c] <= MAGAZINE`.
    len: [u8; CACHED_CLASSES],
    /// Per class, a counting filter of the cached objects. Invariant: `filter[c][b]` is the
    /// number of objects of `objects[c][..len[c]]` whose [`bucket`] is `b`. A free whose bucket
    /// counts zero is of no cached object: the double-free check reads one byte instead of
    /// comparing the pointer with every cached object (it does that only on a hit, about one
    /// lookup in 16 with a half-full magazine: see [`FILTER`]).
    filter: [[u8; FILTER]; CACHED_CLASSES],
}

// SAFETY: the cached objects are owned by the magazines (no one else holds them), so moving the
// magazines to another thread moves that ownership; `NonNull` is not `Send` only because it may
// alias, which the invariant of `objects` rules out.
unsafe impl Send for Magazines {}

impl Magazines {
    /// Empty magazines.
    pub const fn new() -> Self {
        Magazines {
            objects: [[None; MAGAZINE]; CACHED_CLASSES],
            len: [0; CACHED_CLASSES],
            filter: [[0; FILTER]; CACHED_CLASSES],
        }
    }

    /// Objects cached, all classes together.
    pub fn cached(&self) -> usize {
        self.len.iter().map(|&n| usize::from(n)).sum()
    }

    /// The class a layout is cached under, if any.
    #[inline]
    fn class<A: SizeClasses>(layout: Layout) -> Option<usize> {
        A::class_of(layout).filter(|&c| c < CACHED_CLASSES)
    }

    /// Allocates for `layout` from the magazine of its class, refilling it from `shared` if it is
    /// empty; `None` if the layout is not cached (the caller asks `shared` itself).
    ///
    /// # Errors
    /// The shared policy has no object of the class left, or its metadata is damaged (reported
    /// even when the refill took some objects before it met the damage).
    #[inline]
    pub fn allocate<A: SizeClasses, L: RawLock>(
        &mut self,
        shared: &Locked<A, L>,
        layout: Layout,
    ) -> Option<Result<NonNull<[u8]>, AllocError>> {
        let class = Self::class::<A>(layout)?;
        Some(
            self.take(shared, class)
                .map(|object| NonNull::slice_from_raw_parts(object, A::class_layout(class).size())),
        )
    }

    /// An object of `class` from its magazine, refilled from `shared` first if it is empty.
    ///
    /// # Errors
    /// As [`Self::allocate`].
    #[inline]
    fn take<A: SizeClasses, L: RawLock>(
        &mut self,
        shared: &Locked<A, L>,
        class: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        if let Some(object) = self.pop(class) {
            return Ok(object);
        }
        let layout = A::class_layout(class);
        self.refill(shared, class, layout)?;
        // A refill that succeeds leaves at least one object.
        self.pop(class).ok_or(AllocError::OutOfMemory { size: layout.size(), block: layout.size() })
    }

    /// Takes the newest object of `class`'s magazine, if any.
    #[inline]
    fn pop(&mut self, class: usize) -> Option<NonNull<u8>> {
        let n = usize::from(self.len[class]).checked_sub(1)?;
        let object = self.objects[class][n].take()?;
        self.len[class] = n as u8;
        let count = &mut self.filter[class][bucket(object)];
        debug_assert!(*count > 0, "the filter lost a cached object of class {class}");
        *count -= 1;
        Some(object)
    }

    /// Adds `object` to `class`'s magazine, which has room (`len[class] < MAGAZINE`).
    #[inline]
    fn push(&mut self, class: usize, object: NonNull<u8>) {
        let n = usize::from(self.len[class]);
        debug_assert!(n < MAGAZINE, "a push into the full magazine of class {class}");
        self.objects[class][n] = Some(object);
        self.len[class] += 1;
        self.filter[class][bucket(object)] += 1;
    }

    /// Takes up to half the magazine's [`capacity`] of objects of `class` from `shared`, under
    /// one lock.
    #[cold]
    fn refill<A: SizeClasses, L: RawLock>(
        &mut self,
        shared: &Locked<A, L>,
        class: usize,
        layout: Layout,
    ) -> Result<(), AllocError> {
        let mut first_error = None;
        let batch = capacity(layout.size()) / 2;
        shared.with(|policy| {
            for _ in 0..batch {
                match policy.allocate(layout) {
                    Ok(block) => self.push(class, block.cast::<u8>()),
                    Err(error) => {
                        first_error = Some(error);
                        break;
                    }
                }
            }
        });
        match first_error {
            // Damaged metadata is reported at once, even with objects taken before it (they
            // stay cached: they were handed out by the policy before it found the damage).
            Some(error @ AllocError::Corrupted(_)) => Err(error),
            Some(error) if self.len[class] == 0 => Err(error),
            _ => Ok(()),
        }
    }

    /// Frees `ptr` into the magazine of `layout`'s class, giving the oldest half back to
    /// `shared` first if the magazine is full; `None` if the layout is not cached.
    ///
    /// # Errors
    /// `ptr` is already in the magazine (a double free), or the shared policy rejected an object
    /// of the half given back (misuse detected late: see the module docs).
    ///
    /// # Safety
    /// `ptr` must be a block the caller owns, allocated from `shared` (directly or through a
    /// magazine) with a layout `layout` fits, and must not be used after this call.
    #[inline]
    pub unsafe fn deallocate<A: SizeClasses, L: RawLock>(
        &mut self,
        shared: &Locked<A, L>,
        ptr: NonNull<u8>,
        layout: Layout,
    ) -> Option<Result<(), FreeError>> {
        let class = Self::class::<A>(layout)?;
        let size = A::class_layout(class).size();
        if self.holds_in(class, ptr) {
            return Some(Err(FreeError::DoubleFree { addr: ptr.addr().get(), size }));
        }
        Some(self.put(shared, class, size, ptr))
    }

    /// Adds `ptr`, an object of `class` (of `size` bytes) that is not in the magazine, giving
    /// the oldest half back to `shared` first if the magazine is full.
    ///
    /// # Errors
    /// The shared policy rejected an object of the half given back; `ptr` was not added.
    #[inline]
    fn put<A: SizeClasses, L: RawLock>(
        &mut self,
        shared: &Locked<A, L>,
        class: usize,
        size: usize,
        ptr: NonNull<u8>,
    ) -> Result<(), FreeError> {
        if is_full(usize::from(self.len[class]), size) {
            self.flush_class(shared, class, capacity(size) / 2)?;
        }
        self.push(class, ptr);
        Ok(())
    }

    /// Resizes `ptr`, a block allocated with a layout `old` fits, for `new`, if both layouts
    /// map to cached classes; `None` otherwise (the caller resizes it with `shared`, or moves it
    /// between a magazine and `shared`, as `Cached` does). The same object if
    /// the classes are equal, else a new object of `new`'s class from its magazine, with the
    /// first `min(old.size(), new.size())` bytes copied over and `ptr` freed into its
    /// magazine: one visit to the magazines for what would otherwise be a lookup, an
    /// allocation and a free.
    ///
    /// # Errors
    /// - `ptr` sits in its magazine (a resize of a freed object): nothing changes;
    /// - the new class has no object left, or damaged metadata: nothing changes but what the
    ///   refill took (as [`Self::allocate`]);
    /// - the shared policy rejected an object of the half of the old class's full magazine
    ///   given back (that half stays given back, the rejected object dropped from the cache,
    ///   as [`Self::deallocate`] does): the new object goes back to its magazine and `ptr`
    ///   stays the caller's.
    ///
    /// # Safety
    /// `ptr` must be a block the caller owns, allocated from `shared` (directly or through a
    /// magazine) with a layout `old` fits. After an `Ok` with another block, `ptr` must not be
    /// used.
    #[inline]
    pub unsafe fn resize<A: SizeClasses, L: RawLock>(
        &mut self,
        shared: &Locked<A, L>,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Option<Result<NonNull<[u8]>, AllocError>> {
        let (from, to) = (Self::class::<A>(old)?, Self::class::<A>(new)?);
        // SAFETY: forwarded from our caller; `ptr` holds `old.size()` bytes, and the class of
        // `new` holds `new.size()`.
        Some(unsafe { self.resize_object(shared, ptr, (from, to), old.size().min(new.size())) })
    }

    /// [`Self::resize`] between classes `from` and `to`, copying `keep` bytes.
    ///
    /// # Safety
    /// `ptr` must be an object of class `from` that the caller owns (allocated from `shared`
    /// with a layout of that class), valid for reads of `keep` bytes; `keep` must be at most
    /// the size of class `to`. After an `Ok` with another block, `ptr` must not be used.
    unsafe fn resize_object<A: SizeClasses, L: RawLock>(
        &mut self,
        shared: &Locked<A, L>,
        ptr: NonNull<u8>,
        (from, to): (usize, usize),
        keep: usize,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let old_size = A::class_layout(from).size();
        if self.holds_in(from, ptr) {
            return Err(AllocError::InvalidBlock(FreeError::DoubleFree {
                addr: ptr.addr().get(),
                size: old_size,
            }));
        }
        let new_size = A::class_layout(to).size();
        if from == to {
            // Every object of a class holds the class size.
            return Ok(NonNull::slice_from_raw_parts(ptr, new_size));
        }
        let object = self.take(shared, to)?;
        // SAFETY: `ptr` holds at least `keep` bytes (our caller's promise) and so does the new
        // object (`keep` is at most its class size); the new object was in no one's hands but
        // the magazine's, so the two are disjoint.
        unsafe { ptr.copy_to_nonoverlapping(object, keep) };
        if let Err(error) = self.put(shared, from, old_size, ptr) {
            // The new object was just taken from its magazine, which therefore has room (the
            // flush was of another class).
            self.push(to, object);
            return Err(AllocError::invalid_block(error));
        }
        Ok(NonNull::slice_from_raw_parts(object, new_size))
    }

    /// Whether `ptr` sits in the magazine of `layout`'s class (freed into it, not handed out
    /// since); `false` for a layout that is not cached.
    #[inline]
    pub fn holds<A: SizeClasses>(&self, ptr: NonNull<u8>, layout: Layout) -> bool {
        Self::class::<A>(layout).is_some_and(|class| self.holds_in(class, ptr))
    }

    /// Whether `ptr` sits in `class`'s magazine: one filter byte, and the objects compared only
    /// if it counts any.
    #[inline]
    fn holds_in(&self, class: usize, ptr: NonNull<u8>) -> bool {
        self.filter[class][bucket(ptr)] != 0
            && self.objects[class][..usize::from(self.len[class])].contains(&Some(ptr))
    }

    /// Gives the `count` oldest objects of `class` back to `shared`, under one lock.
    #[cold]
    fn flush_class<A: SizeClasses, L: RawLock>(
        &mut self,
        shared: &Locked<A, L>,
        class: usize,
        count: usize,
    ) -> Result<(), FreeError> {
        let n = usize::from(self.len[class]);
        let count = count.min(n);
        let layout = A::class_layout(class);
        let mut result = Ok(());
        shared.with(|policy| {
            for slot in &mut self.objects[class][..count] {
                if let Some(object) = slot.take() {
                    self.filter[class][bucket(object)] -= 1;
                    // SAFETY: the object is ours (invariant of `objects`) and was allocated with
                    // `layout`; the policy checks it before changing anything.
                    if let Err(error) = unsafe { policy.try_deallocate(object, layout) } {
                        if result.is_ok() {
                            result = Err(error);
                        }
                    }
                }
            }
        });
        self.objects[class].copy_within(count..n, 0);
        self.objects[class][n - count..n].fill(None);
        self.len[class] = (n - count) as u8;
        result
    }

    /// Gives every cached object back to `shared`.
    ///
    /// # Errors
    /// The shared policy rejected a cached object (misuse detected late); the others went back.
    pub fn flush<A: SizeClasses, L: RawLock>(&mut self, shared: &Locked<A, L>) -> Result<(), FreeError> {
        let mut result = Ok(());
        for class in 0..CACHED_CLASSES {
            if self.len[class] > 0 {
                let flushed = self.flush_class(shared, class, MAGAZINE);
                result = result.and(flushed);
            }
        }
        result
    }
}

#[cfg(feature = "check-invariants")]
impl budalloc_core::Inspect for Magazines {
    fn check_invariants(&self) -> Result<(), budalloc_core::InvariantError> {
        let broken = |what, addr| Err(budalloc_core::InvariantError { what, addr });
        for class in 0..CACHED_CLASSES {
            let n = usize::from(self.len[class]);
            if n > MAGAZINE {
                return broken("len[c] <= MAGAZINE", 0);
            }
            let (cached, rest) = self.objects[class].split_at(n);
            if rest.iter().any(Option::is_some) {
                return broken("objects[c][len[c]..] are None", 0);
            }
            let mut counts = [0u8; FILTER];
            for (i, object) in cached.iter().enumerate() {
                let Some(object) = *object else { return broken("objects[c][..len[c]] are objects", 0) };
                if cached[..i].contains(&Some(object)) {
                    return broken("objects[c][..len[c]] are distinct", object.addr().get());
                }
                counts[bucket(object)] += 1;
            }
            if counts != self.filter[class] {
                return broken("filter[c][b] counts the cached objects in bucket b", 0);
            }
        }
        Ok(())
    }

    fn visit_metadata(&self, sink: &mut dyn FnMut(&[usize])) {
        for class in 0..CACHED_CLASSES {
            sink(&[usize::from(self.len[class])]);
            for object in &self.objects[class] {
                sink(&[object.map_or(0, |p| p.addr().get())]);
            }
            for &count in &self.filter[class] {
                sink(&[usize::from(count)]);
            }
        }
    }
}

impl Default for Magazines {
    fn default() -> Self {
        Self::new()
    }
}

/// Per-thread magazines in front of a `'static` shared heap: `&Cached` is an `allocator_api2`
/// allocator, and `Cached` a `GlobalAlloc`.
///
/// The shared heap is borrowed for `'static` because each thread's cache keeps a reference to it
/// until the thread exits (then it flushes into it): declare the heap as a `static`.
///
/// ```
/// use core::mem::MaybeUninit;
/// use budalloc_buddy::Buddy;
/// use budalloc_sync::{Cached, Locked};
/// // A stand-in size-class policy from the test kit: a buddy's blocks of 16 B .. 2 KiB as classes
/// // (`budalloc::ClassesBuddy` is the real one).
/// use budalloc_testkit::PowerClasses;
///
/// static SHARED: Locked<PowerClasses<Buddy<16, 4096, 1>>> = Locked::new_spin(PowerClasses::new(Buddy::new()));
/// static HEAP: Cached<PowerClasses<Buddy<16, 4096, 1>>> = Cached::new(&SHARED);
///
/// #[repr(C, align(4096))]
/// struct Region([MaybeUninit<u8>; 64 * 1024]);
/// let region = Box::leak(Box::new(Region([MaybeUninit::uninit(); 64 * 1024])));
/// SHARED.claim(&mut region.0).unwrap();
///
/// let mut v = allocator_api2::vec::Vec::new_in(&HEAP);
/// v.extend(0..100u32);
/// assert_eq!(v.iter().sum::<u32>(), 4950);
/// drop(v);
/// HEAP.flush_thread().unwrap(); // this thread's cached objects go back to SHARED
/// assert_eq!(SHARED.stats().allocated, 0);
/// ```
pub struct Cached<A: 'static, L: RawLock + 'static = Spin> {
    shared: &'static Locked<A, L>,
}

impl<A, L: RawLock> Cached<A, L> {
    /// Per-thread caches in front of `shared`.
    pub const fn new(shared: &'static Locked<A, L>) -> Self {
        Cached { shared }
    }

    /// The shared heap behind the caches.
    pub fn shared(&self) -> &'static Locked<A, L> {
        self.shared
    }
}

#[cfg(not(budalloc_loom))]
mod tls {
    //! The thread-local half: one set of magazines per thread, bound to the first shared heap
    //! the thread uses through a [`Cached`](super::Cached) (others bypass the cache).

    use core::alloc::Layout;
    use core::cell::{Cell, UnsafeCell};
    use core::ptr::NonNull;

    use budalloc_core::{AllocError, FreeError, SizeClasses};

    use super::{Cached, Magazines, CACHED_CLASSES};
    use crate::locked::{Locked, RawLock};

    /// Flushes magazines into the shared heap at `owner` (a `&'static Locked<A, L>`).
    type FlushFn = unsafe fn(*const (), &mut Magazines);

    /// One thread's cache.
    struct ThreadCache {
        /// The shared heap the magazines belong to (null until first use). Invariant: if not
        /// null, a `&'static Locked<A, L>` and `flush` is `flush_into::<A, L>`.
        owner: Cell<*const ()>,
        flush: Cell<Option<FlushFn>>,
        /// Set while a call runs on the magazines (a re-entrant call bypasses them).
        busy: Cell<bool>,
        magazines: UnsafeCell<Magazines>,
    }

    impl Drop for ThreadCache {
        fn drop(&mut self) {
            if let Some(flush) = self.flush.get() {
                // SAFETY: `owner` and `flush` were set together (invariant of `owner`).
                unsafe { flush(self.owner.get(), self.magazines.get_mut()) };
            }
        }
    }

    std::thread_local! {
        static CACHE: ThreadCache = const {
            ThreadCache {
                owner: Cell::new(core::ptr::null()),
                flush: Cell::new(None),
                busy: Cell::new(false),
                magazines: UnsafeCell::new(Magazines::new()),
            }
        };
    }

    /// # Safety
    /// `owner` must be a `&'static Locked<A, L>`.
    unsafe fn flush_into<A: SizeClasses, L: RawLock>(owner: *const (), magazines: &mut Magazines) {
        // SAFETY: the caller's promise.
        let shared = unsafe { &*owner.cast::<Locked<A, L>>() };
        if let Err(error) = magazines.flush(shared) {
            crate::fatal::misuse(&error)
        }
    }

    impl<A: SizeClasses, L: RawLock> Cached<A, L> {
        /// Runs `f` on this thread's magazines if they belong to our shared heap (binding them
        /// on first use); `None` if the thread is exiting, the call is re-entrant, or the thread
        /// caches for another heap.
        #[inline]
        fn with_magazines<R>(&self, f: impl FnOnce(&mut Magazines) -> R) -> Option<R> {
            let me: *const () = core::ptr::from_ref(self.shared).cast();
            CACHE
                .try_with(|cache| {
                    if cache.busy.get() {
                        return None;
                    }
                    if cache.owner.get() != me {
                        if !cache.owner.get().is_null() {
                            return None;
                        }
                        cache.owner.set(me);
                        cache.flush.set(Some(flush_into::<A, L> as FlushFn));
                    }
                    cache.busy.set(true);
                    // SAFETY: `busy` makes this the only access to the magazines on this thread,
                    // and they are never reached from another thread.
                    let result = f(unsafe { &mut *cache.magazines.get() });
                    cache.busy.set(false);
                    Some(result)
                })
                .ok()
                .flatten()
        }

        /// Allocates through this thread's cache, or from the shared heap. If the shared heap
        /// is out of memory, this thread's magazines go back to it, the shared policy gives back
        /// the free memory it keeps aside ([`RawAlloc::release_spare`]), and the request is
        /// tried once more: objects cached here are free memory only this thread can reach, and
        /// empty slabs cached by the shared size classes serve only their class.
        ///
        /// # Errors
        /// As the policy's `allocate`; [`AllocError::InvalidBlock`] if giving the magazines
        /// back found a misused block (see the module docs).
        #[inline]
        pub(crate) fn cached_allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
            match self.allocate_once(layout) {
                Err(error @ AllocError::OutOfMemory { .. }) => self.allocate_after_flush(layout, error),
                other => other,
            }
        }

        /// One try of [`Self::cached_allocate`].
        #[inline]
        fn allocate_once(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
            match self.with_magazines(|m| m.allocate(self.shared, layout)).flatten() {
                Some(result) => result,
                None => self.shared.with(|a| a.allocate(layout)),
            }
        }

        /// The out-of-memory half of [`Self::cached_allocate`] (the first try failed with
        /// `error`): flush this thread's magazines, then try again if they held anything.
        #[cold]
        #[inline(never)]
        fn allocate_after_flush(
            &self,
            layout: Layout,
            error: AllocError,
        ) -> Result<NonNull<[u8]>, AllocError> {
            if self.give_back_after_oom()? {
                self.allocate_once(layout)
            } else {
                Err(error)
            }
        }

        /// After an out-of-memory answer: gives this thread's magazines back to the shared heap
        /// and has the shared policy give back its spare memory. `Ok(true)` if either freed
        /// anything, so that one more try may succeed.
        ///
        /// # Errors
        /// [`AllocError::InvalidBlock`] if giving the magazines back found a misused block.
        fn give_back_after_oom(&self) -> Result<bool, AllocError> {
            let cached = match self.with_magazines(|m| (m.cached(), m.flush(self.shared))) {
                Some((_, Err(misuse))) => return Err(AllocError::InvalidBlock(misuse)),
                Some((cached, Ok(()))) => cached,
                None => 0,
            };
            Ok(self.shared.with(|a| a.release_spare()) || cached > 0)
        }

        /// Frees through this thread's cache, or into the shared heap.
        ///
        /// # Errors
        /// Detected misuse (see the module docs for when).
        ///
        /// # Safety
        /// As `RawAlloc::try_deallocate`, for a block of the shared heap.
        #[inline]
        pub(crate) unsafe fn cached_deallocate(
            &self,
            ptr: NonNull<u8>,
            layout: Layout,
        ) -> Result<(), FreeError> {
            // SAFETY: forwarded from our caller.
            let cached = self.with_magazines(|m| unsafe { m.deallocate(self.shared, ptr, layout) }).flatten();
            match cached {
                Some(result) => result,
                // SAFETY: forwarded from our caller.
                None => self.shared.with(|a| unsafe { a.try_deallocate(ptr, layout) }),
            }
        }

        /// Resizes through the caches: in place if both layouts map to the same cached class,
        /// by the shared heap if neither maps to a cached class, else by moving the block.
        ///
        /// # Safety
        /// `ptr` must be live with a layout `old` fits, `new` non-zero-size.
        pub(crate) unsafe fn cached_resize(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: forwarded from our caller.
            match self.with_magazines(|m| unsafe { m.resize(self.shared, ptr, old, new) }).flatten() {
                // Not both cached classes, no magazines for this call, or out of memory: the
                // general path below (out of memory, it gives this thread's magazines back and
                // tries again).
                None | Some(Err(AllocError::OutOfMemory { .. })) => {}
                Some(result) => return result,
            }
            let (from, to) = (A::class_of(old), A::class_of(new));
            // The classes this cache keeps magazines for; objects of the others, and blocks above
            // every class, are the shared policy's to resize.
            let cached = |class: Option<usize>| class.filter(|&c| c < CACHED_CLASSES);
            if self.with_magazines(|m| m.holds::<A>(ptr, old)).unwrap_or(false) {
                // Freed into this thread's magazine already: a resize of a freed block.
                let size = from.map_or(old.size(), |c| A::class_layout(c).size());
                return Err(AllocError::InvalidBlock(FreeError::DoubleFree { addr: ptr.addr().get(), size }));
            }
            match (cached(from), cached(to)) {
                // Every block of a class (an object, or a block of the shared policy kept at the
                // class's layout) holds the class size.
                (Some(c), Some(d)) if c == d => {
                    return Ok(NonNull::slice_from_raw_parts(ptr, A::class_layout(c).size()));
                }
                (None, None) => {
                    // Out of memory, tried again once this thread's magazines and the shared
                    // policy's spare memory went back, as an allocation is.
                    let resize = move |a: &mut A| {
                        if new.size() >= old.size() {
                            // SAFETY: forwarded from our caller; the size grows. A grow that
                            // failed left the block as it was, for the second try.
                            unsafe { a.grow(ptr, old, new) }
                        } else {
                            // SAFETY: forwarded from our caller; the size shrinks.
                            unsafe { a.shrink(ptr, old, new) }
                        }
                    };
                    return match self.shared.with(resize) {
                        Err(error @ AllocError::OutOfMemory { .. }) => {
                            if self.give_back_after_oom()? {
                                self.shared.with(resize)
                            } else {
                                Err(error)
                            }
                        }
                        other => other,
                    };
                }
                (Some(_), _) => {}
                (None, Some(_)) => {
                    // Moving a block of the shared policy into a magazine class: it must be live
                    // before anything is allocated or copied (its free below takes the lock
                    // anyway). An object of a cached class is checked as its free is, in the
                    // magazine now and by the shared policy when the magazine goes back: a
                    // check here would take the lock on every resize between classes.
                    self.shared.with(|a| a.validate(ptr, old)).map_err(AllocError::invalid_block)?;
                }
            }
            let block = self.cached_allocate(new)?;
            let keep = old.size().min(new.size());
            // SAFETY: both blocks are live (hence disjoint) and hold at least `keep` bytes.
            unsafe { ptr.copy_to_nonoverlapping(block.cast::<u8>(), keep) };
            // SAFETY: forwarded from our caller: the old block is ours and no longer used.
            if let Err(error) = unsafe { self.cached_deallocate(ptr, old) } {
                // The old block was not ours to free: give the new one back, report the misuse.
                // SAFETY: `block` was just allocated for `new` and is ours.
                let _ = unsafe { self.cached_deallocate(block.cast(), new) };
                return Err(AllocError::invalid_block(error));
            }
            Ok(block)
        }

        /// Gives this thread's cached objects back to the shared heap now (threads do it when
        /// they exit) and unbinds the thread's cache from it, so that the thread may cache for
        /// another heap next; before reading the shared heap's figures, for instance.
        ///
        /// # Errors
        /// A cached object was rejected by the shared heap (misuse detected late).
        pub fn flush_thread(&self) -> Result<(), FreeError> {
            let me: *const () = core::ptr::from_ref(self.shared).cast();
            let result = self.with_magazines(|m| m.flush(self.shared)).unwrap_or(Ok(()));
            let _ = CACHE.try_with(|cache| {
                if cache.owner.get() == me && !cache.busy.get() {
                    cache.owner.set(core::ptr::null());
                    cache.flush.set(None);
                }
            });
            result
        }
    }
}

#[cfg(not(budalloc_loom))]
mod impls {
    use core::alloc::{GlobalAlloc, Layout};
    use core::ptr::{self, NonNull};

    use allocator_api2::alloc::{AllocError as ApiAllocError, Allocator};
    use budalloc_core::{AllocError, FreeError, SizeClasses};

    use super::Cached;
    use crate::frontend::{empty, zero_from};
    use crate::locked::RawLock;

    // SAFETY: blocks come from the shared policy (directly or through a magazine that owns
    // them), whose `RawAlloc` contract makes them valid, disjoint and kept until freed; a block
    // is in a magazine or with a user, never both; zero-size blocks are dangling.
    unsafe impl<A: SizeClasses, L: RawLock> Allocator for &Cached<A, L> {
        #[inline]
        fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, ApiAllocError> {
            if layout.size() == 0 {
                return Ok(empty(layout));
            }
            self.cached_allocate(layout).map_err(|_| ApiAllocError)
        }

        #[inline]
        unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
            if layout.size() != 0 {
                // SAFETY: the caller promises `ptr` is live with a layout that fits.
                if let Err(error) = unsafe { self.cached_deallocate(ptr, layout) } {
                    panic!("budalloc: invalid deallocation: {error}");
                }
            }
        }

        unsafe fn grow(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, ApiAllocError> {
            if old.size() == 0 {
                return self.allocate(new);
            }
            // SAFETY: forwarded from our caller; `new` is at least `old`, so not zero-size.
            unsafe { self.cached_resize(ptr, old, new) }.map_err(|_| ApiAllocError)
        }

        unsafe fn shrink(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, ApiAllocError> {
            if new.size() == 0 {
                // SAFETY: forwarded from our caller.
                unsafe { self.deallocate(ptr, old) };
                return Ok(empty(new));
            }
            // SAFETY: forwarded from our caller.
            unsafe { self.cached_resize(ptr, old, new) }.map_err(|_| ApiAllocError)
        }
    }

    // SAFETY: as for the allocator-api2 impl; in addition nothing here panics or unwinds:
    // failures return null and detected misuse aborts the process.
    unsafe impl<A: SizeClasses, L: RawLock> GlobalAlloc for Cached<A, L> {
        #[inline]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            match self.cached_allocate(layout) {
                Ok(block) => block.cast::<u8>().as_ptr(),
                Err(AllocError::InvalidBlock(error)) => crate::fatal::misuse(&error),
                Err(AllocError::Corrupted(c)) => crate::fatal::misuse(&FreeError::Corrupted(c)),
                Err(_) => ptr::null_mut(),
            }
        }

        #[inline]
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            match self.cached_allocate(layout) {
                Ok(block) => {
                    // SAFETY: a fresh block is valid for writes of its length.
                    unsafe { zero_from(block, 0) };
                    block.cast::<u8>().as_ptr()
                }
                Err(AllocError::InvalidBlock(error)) => crate::fatal::misuse(&error),
                Err(AllocError::Corrupted(c)) => crate::fatal::misuse(&FreeError::Corrupted(c)),
                Err(_) => ptr::null_mut(),
            }
        }

        #[inline]
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            let Some(ptr) = NonNull::new(ptr) else { return };
            // SAFETY: the caller promises `ptr` was allocated here with `layout`; misuse the
            // policy or the magazine detects aborts.
            if let Err(error) = unsafe { self.cached_deallocate(ptr, layout) } {
                crate::fatal::misuse(&error)
            }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let Ok(new) = Layout::from_size_align(new_size, layout.align()) else { return ptr::null_mut() };
            let Some(old_ptr) = NonNull::new(ptr) else { return ptr::null_mut() };
            // SAFETY: the caller promises `ptr` is live with `layout`, and `new_size > 0`.
            match unsafe { self.cached_resize(old_ptr, layout, new) } {
                Ok(block) => block.cast::<u8>().as_ptr(),
                Err(AllocError::InvalidBlock(error)) => crate::fatal::misuse(&error),
                Err(AllocError::Corrupted(c)) => crate::fatal::misuse(&FreeError::Corrupted(c)),
                Err(_) => ptr::null_mut(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{capacity, is_full, MAGAZINE, MAGAZINE_BYTES};

    /// `is_full` says what comparing with `capacity` says, for every length a magazine takes
    /// and every size up to where the capacity stops growing (`MAGAZINE_BYTES / MAGAZINE`),
    /// around each of its other steps (`MAGAZINE_BYTES / n`), and at the edges (sizes whose
    /// products saturate).
    #[test]
    #[cfg_attr(miri, ignore = "pure arithmetic, no memory for Miri to check: slow there, run natively")]
    fn is_full_agrees_with_capacity() {
        let small = 0..=MAGAZINE_BYTES / MAGAZINE + 1;
        let steps = (1..=MAGAZINE).flat_map(|n| {
            let s = MAGAZINE_BYTES / n;
            [s - 1, s, s + 1]
        });
        let edges = [MAGAZINE_BYTES * 2, usize::MAX / 64, usize::MAX / 2, usize::MAX];
        for size in small.chain(steps).chain(edges) {
            for len in 0..=MAGAZINE {
                assert_eq!(is_full(len, size), len >= capacity(size), "len {len}, size {size}");
            }
        }
    }
}
