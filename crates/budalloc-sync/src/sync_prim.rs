//! The only door to atomics and cells in this crate: `std`/`core` normally, loom's models under
//! `--cfg budalloc_loom`, so the loom tests check the real code.

#[cfg(budalloc_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, Ordering};

#[cfg(not(budalloc_loom))]
pub(crate) use core::sync::atomic::{AtomicBool, Ordering};

/// Hint that the thread is spinning (under loom: let another thread run).
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(budalloc_loom)]
    loom::thread::yield_now();
    #[cfg(not(budalloc_loom))]
    core::hint::spin_loop();
}

/// Exponential backoff for a thread waiting on a lock: 1, 2, 4, ... up to
/// `2^`[`Backoff::SPIN_LIMIT`] spin hints per wait, then (with `std`) a yield to the OS
/// scheduler on every further wait, so a waiter does not burn the core that the preempted
/// holder needs. Without `std` it keeps spinning at the limit.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    /// Waits so far, capped at `SPIN_LIMIT + 1`.
    step: u32,
}

impl Backoff {
    /// The longest spin, as a power of two (64 hints, about a microsecond).
    const SPIN_LIMIT: u32 = 6;

    /// Waits a little longer than last time (under loom: one yield of the model, whose schedules
    /// do not depend on how long a thread spins).
    #[inline]
    pub(crate) fn snooze(&mut self) {
        if cfg!(budalloc_loom) {
            spin_loop();
        } else if self.step <= Self::SPIN_LIMIT {
            for _ in 0..1u32 << self.step {
                spin_loop();
            }
            self.step += 1;
        } else {
            #[cfg(feature = "std")]
            std::thread::yield_now();
            #[cfg(not(feature = "std"))]
            for _ in 0..1u32 << Self::SPIN_LIMIT {
                spin_loop();
            }
        }
    }
}

#[cfg(budalloc_loom)]
pub(crate) use loom::cell::UnsafeCell;

/// `core::cell::UnsafeCell` with loom's access API (`with_mut`), so code is written once.
#[cfg(not(budalloc_loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(budalloc_loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        UnsafeCell(core::cell::UnsafeCell::new(value))
    }

    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }

    pub(crate) fn into_inner(self) -> T {
        self.0.into_inner()
    }
}

#[cfg(all(test, not(budalloc_loom)))]
mod tests {
    use super::Backoff;

    #[test]
    fn backoff_doubles_up_to_its_limit_then_stays_there() {
        let mut backoff = Backoff::default();
        for expected in 1..=Backoff::SPIN_LIMIT + 1 {
            backoff.snooze();
            assert_eq!(backoff.step, expected);
        }
        // Past the limit every wait yields (with `std`) and the step stays capped.
        for _ in 0..3 {
            backoff.snooze();
            assert_eq!(backoff.step, Backoff::SPIN_LIMIT + 1);
        }
    }
}
