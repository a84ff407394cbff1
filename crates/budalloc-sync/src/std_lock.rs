//! [`StdLock`]: a blocking lock from `std::sync::{Mutex, Condvar}` (feature `std`).

use std::sync::{Condvar, Mutex, PoisonError, TryLockError};

use crate::RawLock;

/// A lock that sleeps instead of spinning while it waits: a `std::sync::Mutex<bool>` ("held")
/// and a `Condvar`. Neither allocates on Linux (both are futexes).
#[derive(Debug, Default)]
pub struct StdLock {
    held: Mutex<bool>,
    freed: Condvar,
}

// SAFETY: `held` flips from false to true only under the mutex, so one holder at a time; the
// mutex orders every write of the previous holder before the next one's reads.
unsafe impl RawLock for StdLock {
    fn new() -> StdLock {
        StdLock::default()
    }

    fn lock(&self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        while *held {
            held = self.freed.wait(held).unwrap_or_else(PoisonError::into_inner);
        }
        *held = true;
    }

    fn try_lock(&self) -> bool {
        // Never waits, not even for the inner mutex: a caller that interrupted a holder of it
        // (a signal handler) gets `false` rather than a deadlock.
        let mut held = match self.held.try_lock() {
            Ok(held) => held,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return false,
        };
        !std::mem::replace(&mut *held, true)
    }

    unsafe fn unlock(&self) {
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = false;
        self.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    use super::StdLock;
    use crate::RawLock;

    /// A holder of the inner mutex (a thread inside `lock` or `unlock`, or the code a signal
    /// handler interrupted) makes `try_lock` answer `false` at once rather than wait for it.
    #[test]
    fn try_lock_does_not_wait_for_the_inner_mutex() {
        let lock = Arc::new(StdLock::new());
        let inner = lock.held.lock().unwrap();
        let (tx, rx) = mpsc::channel();
        let other = Arc::clone(&lock);
        // Detached: if `try_lock` waited, the test fails at the timeout instead of hanging.
        std::thread::spawn(move || tx.send(other.try_lock()).unwrap());
        let answer = rx.recv_timeout(Duration::from_secs(10));
        drop(inner);
        assert_eq!(answer, Ok(false), "try_lock must not wait");
        assert!(lock.try_lock());
        // SAFETY: we hold the lock, taken just above.
        unsafe { lock.unlock() };
    }
}
