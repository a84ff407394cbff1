//! Block orders and the checked arithmetic from a request to a block.

use core::alloc::Layout;

use crate::AllocError;

/// How many orders a policy may have: block sizes run from `MIN` to `MIN << (MAX_ORDERS - 1)`.
///
/// Thirty-two orders keep every per-order table in one `u32` word of "non-empty" bits and every
/// fragment index of an arena in a `u32` (an arena holds at most `u32::MAX` fragments).
pub const MAX_ORDERS: usize = 32;

/// A block order: a block of order `k` is `MIN << k` bytes and aligned to its own size.
///
/// Invariant: the value is below [`MAX_ORDERS`], so `1 << k` fits a `u32` and indexing a
/// per-order table of `MAX_ORDERS` entries never goes out of bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Order(u8);

impl Order {
    /// The smallest order: one `MIN`-byte fragment.
    pub const ZERO: Order = Order(0);

    /// The order `k`, if `k < MAX_ORDERS`.
    #[inline]
    pub const fn new(k: u32) -> Option<Order> {
        if (k as usize) < MAX_ORDERS {
            Some(Order(k as u8))
        } else {
            None
        }
    }

    /// The order as a number.
    #[inline]
    pub const fn get(self) -> u32 {
        self.0 as u32
    }

    /// The order as an index into a per-order table of [`MAX_ORDERS`] entries.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// Number of fragments in a block of this order (`1 << k`).
    #[inline]
    pub const fn fragments(self) -> usize {
        1 << self.0
    }

    /// The next smaller order, if any.
    #[inline]
    pub const fn below(self) -> Option<Order> {
        if self.0 == 0 {
            None
        } else {
            Some(Order(self.0 - 1))
        }
    }

    /// The next larger order, if it is below [`MAX_ORDERS`].
    #[inline]
    pub const fn above(self) -> Option<Order> {
        Order::new(self.0 as u32 + 1)
    }
}

/// The block geometry of a policy: smallest block `MIN = 1 << min_log2`, largest
/// `MAX = 1 << max_log2`. Built by a `const fn` so that policies check their const generics at
/// compile time.
///
/// Invariants: `min_log2 <= max_log2`, `max_log2 - min_log2 < MAX_ORDERS`, and
/// `max_log2 <= usize::BITS - 2`, so `MAX` and any block size are at most `isize::MAX / 2 + 1`
/// and adding one block size to another never overflows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SizeMath {
    min_log2: u8,
    max_log2: u8,
}

impl SizeMath {
    /// The geometry with smallest block `min` and largest block `max`, or a message saying which
    /// rule they break. Use it in a `const` so that a bad pair fails the build.
    pub const fn new(min: usize, max: usize) -> Result<SizeMath, &'static str> {
        if !min.is_power_of_two() || !max.is_power_of_two() {
            return Err("MIN and MAX must be powers of two");
        }
        if min > max {
            return Err("MIN must not exceed MAX");
        }
        let min_log2 = min.trailing_zeros();
        let max_log2 = max.trailing_zeros();
        if max_log2 > usize::BITS - 2 {
            return Err("MAX must be at most a quarter of the address space");
        }
        if (max_log2 - min_log2) as usize >= MAX_ORDERS {
            return Err("MAX / MIN must be below 2^32 (at most 32 orders)");
        }
        Ok(SizeMath { min_log2: min_log2 as u8, max_log2: max_log2 as u8 })
    }

    /// log2 of the smallest block.
    #[inline]
    pub const fn min_log2(self) -> u32 {
        self.min_log2 as u32
    }

    /// The smallest block, in bytes.
    #[inline]
    pub const fn min_block(self) -> usize {
        1 << self.min_log2
    }

    /// The largest block, in bytes.
    #[inline]
    pub const fn max_block(self) -> usize {
        1 << self.max_log2
    }

    /// The order of the largest block.
    #[inline]
    pub const fn max_order(self) -> Order {
        Order(self.max_log2 - self.min_log2)
    }

    /// Size in bytes of a block of order `order`, which must not exceed [`Self::max_order`].
    #[inline]
    pub const fn block_size(self, order: Order) -> usize {
        debug_assert!(order.0 <= self.max_log2 - self.min_log2, "order above the largest block");
        1 << (self.min_log2 + order.0)
    }

    /// The order of the block that serves `layout`: the next power of two at or above
    /// `max(size, align, MIN)`.
    #[inline]
    pub const fn order_of(self, layout: Layout) -> Result<Order, AllocError> {
        self.order_for(layout.size(), layout.align())
    }

    /// The order of the block that serves `size` bytes aligned to `align` (a power of two).
    ///
    /// Checked in every build: sizes that overflow when rounded up give
    /// [`AllocError::SizeOverflow`], sizes above `MAX` give [`AllocError::TooLarge`],
    /// alignments above `MAX` give [`AllocError::AlignTooLarge`]; never a wrapped zero.
    #[inline]
    pub const fn order_for(self, size: usize, align: usize) -> Result<Order, AllocError> {
        let max = self.max_block();
        if align > max {
            return Err(AllocError::AlignTooLarge { align, max });
        }
        let needed = if size > align { size } else { align };
        if needed <= self.min_block() {
            return Ok(Order::ZERO);
        }
        let Some(block) = needed.checked_next_power_of_two() else {
            return Err(AllocError::SizeOverflow { size, align });
        };
        if block > max {
            return Err(AllocError::TooLarge { size, max });
        }
        // block is a power of two in (MIN, MAX]: the difference of logs is below MAX_ORDERS.
        Ok(Order((block.trailing_zeros() - self.min_log2 as u32) as u8))
    }
}
