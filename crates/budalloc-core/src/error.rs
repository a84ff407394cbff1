//! Errors of the checked APIs. Every rejected call leaves all metadata byte-for-byte unchanged.

use core::fmt;

/// Which of an arena's two guard keys was found changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuardKey {
    /// The key in front of the bitset (the seed's `arenaKey1`).
    Front,
    /// The key behind the bitset (the seed's `arenaKey2`); an overflow out of the bitset hits it.
    Back,
}

impl fmt::Display for GuardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GuardKey::Front => "1 (front)",
            GuardKey::Back => "2 (back)",
        })
    }
}

/// Metadata found damaged. Nothing is changed when this is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Corruption {
    /// A guard key of the arena's bitmap no longer holds its value.
    #[error("arena metadata corrupted: guard key {which} at {addr:#x} changed")]
    GuardKey {
        /// Which key.
        which: GuardKey,
        /// Address of the key word.
        addr: usize,
    },
    /// The header of a free fragment does not carry its arena's seal, its order or valid links.
    #[error("corrupted free-fragment header at {addr:#x}")]
    Header {
        /// Address of the fragment.
        addr: usize,
    },
}

/// Why an allocation (or an in-place grow or shrink) failed. Nothing is changed on failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum AllocError {
    /// Rounding the request up to a block overflowed `usize` (or exceeds `isize::MAX`).
    #[error("size {size} with alignment {align} overflows when rounded up to a block")]
    SizeOverflow {
        /// Requested size in bytes.
        size: usize,
        /// Requested alignment in bytes.
        align: usize,
    },
    /// The request is larger than the policy's largest block.
    #[error("request of {size} bytes exceeds the largest block ({max} bytes)")]
    TooLarge {
        /// Requested size in bytes.
        size: usize,
        /// Largest block size in bytes.
        max: usize,
    },
    /// The alignment is larger than the policy's largest block.
    #[error("alignment {align} exceeds the largest supported alignment ({max})")]
    AlignTooLarge {
        /// Requested alignment in bytes.
        align: usize,
        /// Largest supported alignment in bytes.
        max: usize,
    },
    /// No arena has a free block large enough (or the neighbours needed for an in-place grow
    /// are not free).
    #[error("out of memory: no free block of {block} bytes for a request of {size} bytes")]
    OutOfMemory {
        /// Requested size in bytes.
        size: usize,
        /// Size of the block the request needs, in bytes.
        block: usize,
    },
    /// Metadata was found damaged while serving the request.
    #[error(transparent)]
    Corrupted(#[from] Corruption),
    /// A grow or shrink was handed a pointer and layout that are not a live block of this
    /// allocator (what a checked free would have rejected).
    #[error("grow or shrink of an invalid block: {0}")]
    InvalidBlock(FreeError),
}

impl AllocError {
    /// The error of a grow, shrink or move handed a block that a checked free rejects with
    /// `error`: damaged metadata stays [`AllocError::Corrupted`], the rest is
    /// [`AllocError::InvalidBlock`].
    #[cold]
    pub fn invalid_block(error: FreeError) -> AllocError {
        match error {
            FreeError::Corrupted(c) => AllocError::Corrupted(c),
            _ => AllocError::InvalidBlock(error),
        }
    }

    /// Whether the error says the block handed in is not a live block of the allocator, or its
    /// metadata is damaged (detected misuse), rather than that the request cannot be served.
    pub fn is_misuse(&self) -> bool {
        matches!(self, AllocError::InvalidBlock(_) | AllocError::Corrupted(_))
    }
}

/// Why a checked free was rejected. Nothing is changed when a free is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum FreeError {
    /// The pointer lies in none of the allocator's arenas (stack, static, another allocator).
    #[error("pointer {addr:#x} is outside every arena of this allocator")]
    ForeignPointer {
        /// The pointer's address.
        addr: usize,
    },
    /// The pointer lies inside an arena but is not the start of a block (misaligned, or inside a
    /// live or free block).
    #[error("pointer {addr:#x} is not the start of a block (it lies inside the block at {block:#x})")]
    InteriorPointer {
        /// The pointer's address.
        addr: usize,
        /// Start of the block that contains it.
        block: usize,
    },
    /// The block is already free.
    #[error("double free of the {size}-byte block at {addr:#x}")]
    DoubleFree {
        /// The block's address.
        addr: usize,
        /// The free block's size in bytes.
        size: usize,
    },
    /// The block is live, but the layout given does not fit it (another order or alignment).
    #[error(
        "layout mismatch at {addr:#x}: the block holds {block_size} bytes, the layout \
         (size {size}, align {align}) implies a {layout_block}-byte block"
    )]
    LayoutMismatch {
        /// The block's address.
        addr: usize,
        /// The live block's size in bytes.
        block_size: usize,
        /// Size given in the layout.
        size: usize,
        /// Alignment given in the layout.
        align: usize,
        /// Block size the layout maps to (0 if the layout maps to no block at all).
        layout_block: usize,
    },
    /// Metadata was found damaged while checking or performing the free.
    #[error(transparent)]
    Corrupted(#[from] Corruption),
}

/// Why a region was refused as an arena. Nothing is claimed when a region is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum RegionError {
    /// The region's pointer is null.
    #[error("region pointer is null")]
    Null,
    /// The region cannot hold one smallest block plus the metadata it needs.
    #[error("region of {len} bytes at {addr:#x} is too small: it needs at least {needed} bytes")]
    TooSmall {
        /// Start address of the region.
        addr: usize,
        /// Length of the region in bytes.
        len: usize,
        /// Smallest usable length from this start address.
        needed: usize,
    },
    /// `start + len` overflows the address space.
    #[error("region of {len} bytes at {addr:#x} wraps around the address space")]
    Overflow {
        /// Start address of the region.
        addr: usize,
        /// Length of the region in bytes.
        len: usize,
    },
    /// The region overlaps an arena the allocator already manages.
    #[error("region at {addr:#x} overlaps an arena already claimed")]
    Overlap {
        /// Start address of the region.
        addr: usize,
    },
    /// The allocator has no room to record another arena.
    #[error("no room for another arena (capacity {capacity})")]
    TooManyArenas {
        /// How many arenas the allocator can hold.
        capacity: usize,
    },
}
