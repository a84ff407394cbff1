//! [`Locked`]: any policy behind a lock chosen by type parameter.

use core::mem::MaybeUninit;

use budalloc_core::{Claim, RawAlloc, RegionError, Stats};

use crate::frontend::{allocator_via_frontend, global_via_frontend, Frontend};
use crate::sync_prim::{AtomicBool, Backoff, Ordering, UnsafeCell};

/// A lock without data: what [`Locked`] is generic over.
///
/// # Safety
/// Implementors promise mutual exclusion: between a successful [`lock`](Self::lock) or
/// [`try_lock`](Self::try_lock) and the matching [`unlock`](Self::unlock), no other call
/// succeeds in locking; `unlock` makes every write done under the lock visible to the next
/// holder (release/acquire). Breaking it lets two threads reach the policy at once: two `&mut`
/// to it, overlapping blocks, corrupted metadata.
pub unsafe trait RawLock {
    /// An unlocked lock.
    fn new() -> Self;
    /// Waits until the lock is ours.
    fn lock(&self);
    /// Takes the lock if it is free, without waiting; `false` (and nothing taken) if it is held
    /// (or, for a lock built on another one, if taking it would mean waiting).
    fn try_lock(&self) -> bool;
    /// Releases the lock.
    ///
    /// # Safety
    /// The caller must hold the lock.
    unsafe fn unlock(&self);
}

/// A test-and-test-and-set spin lock with exponential backoff (and, with `std`, a yield to the
/// OS once the backoff is long): `no_std`, no allocation, checked by loom.
#[derive(Debug)]
pub struct Spin {
    locked: AtomicBool,
}

#[cfg(not(budalloc_loom))]
impl Spin {
    /// An unlocked spin lock, usable in a `static`.
    pub const fn unlocked() -> Spin {
        Spin { locked: AtomicBool::new(false) }
    }
}

// SAFETY: `lock`/`try_lock` take the lock with a compare-exchange from `false` to `true` that
// only one thread can win (Acquire), and `unlock` stores `false` with Release.
unsafe impl RawLock for Spin {
    fn new() -> Spin {
        Spin { locked: AtomicBool::new(false) }
    }

    #[inline]
    fn lock(&self) {
        if self.try_lock() {
            return;
        }
        self.lock_contended();
    }

    #[inline]
    fn try_lock(&self) -> bool {
        self.locked.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    #[inline]
    unsafe fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

impl Spin {
    /// The slow path of `lock`: test-and-test-and-set with exponential backoff, then yields to
    /// the OS (with `std`) so that a preempted holder gets the core back.
    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        let mut backoff = Backoff::default();
        loop {
            while self.locked.load(Ordering::Relaxed) {
                backoff.snooze();
            }
            if self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return;
            }
        }
    }
}

/// The lock was held: returned by [`Locked::try_with`] instead of waiting (and, from an
/// interrupt handler that interrupted the holder, instead of deadlocking).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the allocator's lock is held")]
pub struct WouldBlock;

/// A policy behind a lock `L`: `&Locked<A, L>` is an `allocator_api2` allocator, and
/// `Locked<A, L>` a `GlobalAlloc`.
pub struct Locked<A, L: RawLock = Spin> {
    lock: L,
    /// The policy. Invariant: accessed only while `lock` is held.
    inner: UnsafeCell<A>,
}

// SAFETY: the policy is only reached while the lock is held (invariant of `inner`), so sharing
// `&Locked` between threads hands the policy from one thread to another, which `A: Send` allows.
unsafe impl<A: Send, L: RawLock + Sync> Sync for Locked<A, L> {}

/// Releases the lock when a call leaves the policy, also on unwinding.
struct Held<'a, L: RawLock>(&'a L);

impl<L: RawLock> Drop for Held<'_, L> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: a `Held` exists only while its lock is held by this thread.
        unsafe { self.0.unlock() };
    }
}

#[cfg(not(budalloc_loom))]
impl<A> Locked<A, Spin> {
    /// `policy` behind a spin lock, usable in a `static`.
    pub const fn new_spin(policy: A) -> Self {
        Locked { lock: Spin::unlocked(), inner: UnsafeCell::new(policy) }
    }
}

impl<A, L: RawLock> Locked<A, L> {
    /// Wraps `policy` behind a fresh lock.
    pub fn new(policy: A) -> Self {
        Locked { lock: L::new(), inner: UnsafeCell::new(policy) }
    }

    /// The policy, when the frontend is not shared.
    pub fn get_mut(&mut self) -> &mut A {
        self.inner.with_mut(|policy| {
            // SAFETY: `&mut self` is exclusive, so no other access to the policy can exist.
            unsafe { &mut *policy }
        })
    }

    /// Unwraps the policy.
    pub fn into_inner(self) -> A {
        self.inner.into_inner()
    }

    /// Runs `f` on the policy under the lock, waiting for it.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut A) -> R) -> R {
        self.lock.lock();
        let _held = Held(&self.lock);
        self.inner.with_mut(|policy| {
            // SAFETY: the lock is held until `_held` drops, so this is the only access
            // (invariant of `inner`).
            let policy = unsafe { &mut *policy };
            f(policy)
        })
    }

    /// Runs `f` on the policy if the lock is free; [`WouldBlock`] if it is held (by another
    /// thread, or by the code this interrupt handler interrupted).
    ///
    /// # Errors
    /// [`WouldBlock`] when the lock is held.
    #[inline]
    pub fn try_with<R>(&self, f: impl FnOnce(&mut A) -> R) -> Result<R, WouldBlock> {
        if !self.lock.try_lock() {
            return Err(WouldBlock);
        }
        let _held = Held(&self.lock);
        Ok(self.inner.with_mut(|policy| {
            // SAFETY: as in `with`.
            let policy = unsafe { &mut *policy };
            f(policy)
        }))
    }
}

impl<A: RawAlloc, L: RawLock> Locked<A, L> {
    /// The policy's figures.
    pub fn stats(&self) -> Stats {
        self.with(|a| a.stats())
    }
}

impl<A: Claim, L: RawLock> Locked<A, L> {
    /// Gives the policy a `'static` region as a new arena.
    ///
    /// # Errors
    /// The region is unusable or the policy is full; nothing is claimed then.
    pub fn claim(&self, region: &'static mut [MaybeUninit<u8>]) -> Result<(), RegionError> {
        self.with(|a| a.claim(region))
    }

    /// Gives the policy `len` bytes at `ptr` as a new arena.
    ///
    /// # Errors
    /// As [`claim`](Self::claim), plus null or wrapping regions.
    ///
    /// # Safety
    /// As [`Claim::claim_raw`].
    pub unsafe fn claim_raw(&self, ptr: *mut u8, len: usize) -> Result<(), RegionError> {
        // SAFETY: forwarded from our caller.
        self.with(|a| unsafe { a.claim_raw(ptr, len) })
    }
}

impl<A: RawAlloc, L: RawLock> Frontend for Locked<A, L> {
    type Policy = A;

    #[inline]
    fn enter<R>(&self, f: impl FnOnce(&mut A) -> R) -> R {
        self.with(f)
    }
}

allocator_via_frontend!([A: RawAlloc, L: RawLock] Locked<A, L>);
global_via_frontend!([A: RawAlloc, L: RawLock] Locked<A, L>);
