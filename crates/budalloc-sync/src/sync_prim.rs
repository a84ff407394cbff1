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
