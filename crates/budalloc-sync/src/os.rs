//! [`SystemSource`]: regions from the operating system (feature `std`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::NonNull;

use budalloc_core::Source;

/// Regions from the system allocator, which maps chunks this large straight from the OS
/// (`mmap` on Unix). Each region is a power of two aligned to its own size, so a buddy policy
/// gets its largest blocks at the start; sizes start at [`SystemSource::FIRST`] and double with
/// every region (up to 1 GiB), so a heap of `n` bytes needs `O(log n)` arenas. A region claimed
/// as an arena is never given back: an arena never moves or disappears (one the policy refused
/// goes back at once).
#[derive(Debug)]
pub struct SystemSource {
    next: usize,
}

impl SystemSource {
    /// Size of the first region: 4 MiB (256 KiB under Miri, where every split level costs).
    pub const FIRST: usize = if cfg!(miri) { 256 << 10 } else { 4 << 20 };
    /// Largest region asked for by growth alone (a larger request gets a region its size).
    pub const LARGEST: usize = 1 << 30;

    /// A source that has handed out nothing yet.
    pub const fn new() -> Self {
        SystemSource { next: Self::FIRST }
    }
}

impl Default for SystemSource {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: each region is a fresh allocation of the system allocator, freed only when released
// unused, so it is valid, disjoint from every other and ours alone.
unsafe impl Source for SystemSource {
    fn acquire(&mut self, min_len: usize) -> Option<NonNull<[u8]>> {
        let len = min_len.checked_next_power_of_two()?.max(self.next);
        let layout = Layout::from_size_align(len, len).ok()?;
        // SAFETY: `len > 0`.
        let ptr = NonNull::new(unsafe { System.alloc(layout) })?;
        self.next = len.saturating_mul(2).min(Self::LARGEST).max(self.next);
        Some(NonNull::slice_from_raw_parts(ptr, len))
    }

    unsafe fn release(&mut self, region: NonNull<[u8]>) {
        let len = region.len();
        let Ok(layout) = Layout::from_size_align(len, len) else { return };
        // SAFETY: `region` came from `acquire` (the caller's promise): `System.alloc` with
        // exactly this layout (a power of two aligned to itself), and it is unused.
        unsafe { System.dealloc(region.cast::<u8>().as_ptr(), layout) };
    }
}
