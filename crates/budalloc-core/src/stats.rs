//! Figures a policy reports about itself.

use core::fmt;

use crate::MAX_ORDERS;

/// A policy's figures at one moment. All sizes in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Bytes the arenas' block areas hold in all (metadata and padding excluded).
    pub capacity: usize,
    /// Bytes in currently allocated blocks (whole blocks, not requested sizes).
    pub allocated: usize,
    /// Bytes in free blocks. Invariant: `allocated + free == capacity`.
    pub free: usize,
    /// Bytes of the regions spent on metadata and padding (bitmaps with their keys).
    pub overhead: usize,
    /// Size of the largest free block (0 if none).
    pub largest_free: usize,
    /// Size of the smallest block (`MIN`); the block of order `k` is `min_block << k`.
    pub min_block: usize,
    /// Number of free blocks of each order.
    pub free_blocks: [usize; MAX_ORDERS],
    /// Number of arenas.
    pub arenas: usize,
}

impl Stats {
    /// External fragmentation: the share of free memory that the largest free block cannot
    /// serve, `1 - largest_free / free`, in `0.0 ..= 1.0` (0 when nothing is free). A heap whose
    /// free memory is one block scores 0; one whose free memory is dust scores near 1.
    pub fn fragmentation(&self) -> f64 {
        if self.free == 0 {
            0.0
        } else {
            1.0 - self.largest_free as f64 / self.free as f64
        }
    }

    /// Metadata and padding as a share of all the bytes handed over.
    pub fn overhead_ratio(&self) -> f64 {
        let total = self.capacity + self.overhead;
        if total == 0 {
            0.0
        } else {
            self.overhead as f64 / total as f64
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} arena(s), capacity {} B: {} B allocated, {} B free, largest free block {} B, \
             fragmentation {:.1}%, metadata {} B ({:.2}%)",
            self.arenas,
            self.capacity,
            self.allocated,
            self.free,
            self.largest_free,
            self.fragmentation() * 100.0,
            self.overhead,
            self.overhead_ratio() * 100.0
        )?;
        f.write_str("free blocks per size:")?;
        for (order, &count) in self.free_blocks.iter().enumerate().filter(|(_, &c)| c > 0) {
            write!(f, " {}×{}", count, human(self.min_block << order))?;
        }
        Ok(())
    }
}

/// A byte count shown in the largest unit that divides it exactly (B, KiB, MiB, GiB, TiB).
#[derive(Clone, Copy, Debug)]
pub struct Human(pub usize);

/// Formats a size compactly (`64 B`, `4 KiB`, `1 MiB`).
pub fn human(bytes: usize) -> Human {
    Human(bytes)
}

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut value = self.0;
        let mut unit = 0;
        while value >= 1024 && value.is_multiple_of(1024) && unit + 1 < UNITS.len() {
            value /= 1024;
            unit += 1;
        }
        write!(f, "{value} {}", UNITS[unit])
    }
}
