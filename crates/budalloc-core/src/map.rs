//! The text picture of an arena: one character per fragment (or per group of fragments in a
//! big arena), showing free and allocated blocks of each order.

use core::fmt;

use crate::stats::human;
use crate::Order;

/// One block as a map shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockView {
    /// First fragment of the block.
    pub frag: usize,
    /// Its order.
    pub order: Order,
    /// Whether it is allocated (else free).
    pub allocated: bool,
}

/// Letters for orders: order `k` is drawn with the `k`-th symbol, lowercase when free and
/// uppercase when allocated (digits and punctuation past `z`).
const FREE: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz012345";
const LIVE: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ6789@&";

/// The symbol for a block of `order`, free or allocated.
pub fn symbol(order: Order, allocated: bool) -> char {
    let table = if allocated { LIVE } else { FREE };
    char::from(table[order.index()])
}

/// Writes the map of an arena of `fragments` fragments of `min_block` bytes starting at `start`,
/// whose blocks, in address order and covering the whole arena, are `blocks`. At most
/// `max_cells` characters are drawn, `width` per line; when the arena has more fragments than
/// that, each character stands for a group of fragments and shows the block at the group's
/// start.
pub fn write_map(
    f: &mut fmt::Formatter<'_>,
    start: usize,
    fragments: usize,
    min_block: usize,
    blocks: impl Iterator<Item = BlockView>,
    width: usize,
    max_cells: usize,
) -> fmt::Result {
    let width = width.max(8);
    // A power of two per cell, so that cells line up with blocks.
    let per_cell = fragments.div_ceil(max_cells.max(1)).max(1).next_power_of_two();
    let cells = fragments.div_ceil(per_cell);
    writeln!(
        f,
        "arena {start:#x}: {} fragments of {}, one character = {}",
        fragments,
        human(min_block),
        human(min_block.saturating_mul(per_cell))
    )?;
    let mut blocks = blocks.peekable();
    let mut current: Option<BlockView> = None;
    for cell in 0..cells {
        let frag = cell * per_cell;
        while let Some(next) = blocks.peek() {
            if next.frag <= frag {
                current = blocks.next();
            } else {
                break;
            }
        }
        if cell % width == 0 {
            if cell != 0 {
                f.write_str("\n")?;
            }
            write!(f, "{:>#9x} ", frag * min_block)?;
        }
        let c = match current {
            Some(b) if frag < b.frag + b.order.fragments() => symbol(b.order, b.allocated),
            _ => '?',
        };
        write!(f, "{c}")?;
    }
    f.write_str("\nlegend: lowercase = free, UPPERCASE = allocated; ")?;
    for k in 0..4u32 {
        if let Some(order) = Order::new(k) {
            write!(f, "{}/{} = {}, ", symbol(order, false), symbol(order, true), human(min_block << k))?;
        }
    }
    f.write_str("… each letter doubles")
}
