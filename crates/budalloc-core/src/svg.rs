//! The arena as a picture: an SVG drawing with one row per moment of a workload, each row the
//! arena's blocks from its start to its end, coloured by order and state (free blocks pale,
//! allocated ones dark), so that splitting, coalescing and fragmentation show at a glance. The
//! text picture for terminals is [`write_map`](crate::write_map).

use core::fmt;

use crate::stats::human;
use crate::{BlockView, Order, MAX_ORDERS};

/// One row of [`write_svg`]: a moment of a workload and the arena's blocks at that moment.
#[derive(Clone, Copy, Debug)]
pub struct SvgRow<'a> {
    /// What happened just before this moment.
    pub label: &'a str,
    /// Every block of the arena, in address order, covering the whole arena.
    pub blocks: &'a [BlockView],
}

/// Left margin of the drawing (pixels).
const MARGIN: f64 = 12.0;
/// Width of the arena's bar (pixels).
const BAR_WIDTH: f64 = 936.0;
/// Height of a row's label line and of its bar (pixels).
const LABEL_HEIGHT: f64 = 18.0;
const BAR_HEIGHT: f64 = 28.0;
/// Vertical space taken by one row (pixels).
const ROW_HEIGHT: f64 = LABEL_HEIGHT + BAR_HEIGHT + 12.0;
/// Height of the title area at the top (pixels).
const HEAD: f64 = 40.0;
/// Legend entries per line, and the distance between them (pixels).
const LEGEND_PER_LINE: usize = 9;
const LEGEND_STEP: f64 = 104.0;
/// Blocks at least this wide (pixels) get a white outline, so neighbours of one colour part.
const OUTLINE_MIN: f64 = 3.0;

/// The hue of order `k` (degrees): neighbouring orders get clearly different hues.
fn hue(order: Order) -> usize {
    (205 + 47 * order.index()) % 360
}

/// The fill of a block: dark for allocated, pale for free, in the hue of its order.
struct Fill(Order, bool);

impl fmt::Display for Fill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (saturation, lightness) = if self.1 { (62, 42) } else { (70, 86) };
        write!(f, "hsl({},{saturation}%,{lightness}%)", hue(self.0))
    }
}

/// Text with `&`, `<` and `>` escaped for XML.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                c => write!(f, "{c}")?,
            }
        }
        Ok(())
    }
}

/// Writes an SVG picture of an arena of `fragments` fragments of `min_block` bytes, one row per
/// entry of `rows` (top to bottom), titled `title`. Each row shows its label, then the free
/// bytes, the number of free blocks and the largest free block at that moment, then the arena
/// as a bar: one rectangle per block, as wide as the block is long. A legend at the bottom names
/// the size of every order that appears.
///
/// # Errors
/// Only those of `out`.
pub fn write_svg(
    out: &mut impl fmt::Write,
    title: &str,
    fragments: usize,
    min_block: usize,
    rows: &[SvgRow<'_>],
) -> fmt::Result {
    let fragments = fragments.max(1);
    // Orders that appear anywhere, for the legend (bit k = order k).
    let seen = rows.iter().flat_map(|r| r.blocks).fold(0u64, |seen, b| seen | 1 << b.order.index());
    let legend_lines = (seen.count_ones() as usize).div_ceil(LEGEND_PER_LINE).max(1);
    let height = HEAD + ROW_HEIGHT * rows.len() as f64 + 36.0 + 20.0 * legend_lines as f64;
    let width = 2.0 * MARGIN + BAR_WIDTH;
    writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">"
    )?;
    writeln!(out, "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>")?;
    writeln!(
        out,
        "<text x=\"{MARGIN}\" y=\"24\" font-size=\"16\" font-weight=\"bold\">{}</text>",
        Escaped(title)
    )?;
    let scale = BAR_WIDTH / fragments as f64;
    for (i, row) in rows.iter().enumerate() {
        let top = HEAD + ROW_HEIGHT * i as f64;
        let (mut free, mut free_blocks, mut largest) = (0usize, 0usize, 0usize);
        for block in row.blocks.iter().filter(|b| !b.allocated) {
            let bytes = block.order.fragments().saturating_mul(min_block);
            free = free.saturating_add(bytes);
            free_blocks += 1;
            largest = largest.max(bytes);
        }
        writeln!(
            out,
            "<text x=\"{MARGIN}\" y=\"{:.1}\"><tspan font-weight=\"bold\">{}</tspan>\
             <tspan dx=\"10\" fill=\"#868e96\">{} free in {free_blocks} blocks, largest {}</tspan></text>",
            top + 13.0,
            Escaped(row.label),
            human(free),
            human(largest)
        )?;
        let y = top + LABEL_HEIGHT;
        writeln!(
            out,
            "<rect x=\"{MARGIN}\" y=\"{y:.1}\" width=\"{BAR_WIDTH}\" height=\"{BAR_HEIGHT}\" fill=\"#f1f3f5\"/>"
        )?;
        for block in row.blocks {
            let x = MARGIN + block.frag as f64 * scale;
            let w = block.order.fragments() as f64 * scale;
            let outline = if w >= OUTLINE_MIN { " stroke=\"#ffffff\" stroke-width=\"1\"" } else { "" };
            writeln!(
                out,
                "<rect x=\"{x:.2}\" y=\"{y:.1}\" width=\"{w:.2}\" height=\"{BAR_HEIGHT}\" fill=\"{}\"{outline}/>",
                Fill(block.order, block.allocated)
            )?;
        }
    }
    let legend = HEAD + ROW_HEIGHT * rows.len() as f64 + 8.0;
    writeln!(
        out,
        "<text x=\"{MARGIN}\" y=\"{:.1}\">each bar is the whole arena ({}, {fragments} fragments of {}); \
         dark = allocated, pale = free; colour = block size:</text>",
        legend + 4.0,
        human(fragments.saturating_mul(min_block)),
        human(min_block)
    )?;
    let shown = (0..MAX_ORDERS as u32).filter(|k| seen & (1 << k) != 0).filter_map(Order::new);
    for (n, order) in shown.enumerate() {
        let x = MARGIN + LEGEND_STEP * (n % LEGEND_PER_LINE) as f64;
        let y = legend + 16.0 + 20.0 * (n / LEGEND_PER_LINE) as f64;
        writeln!(
            out,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"14\" height=\"14\" fill=\"{}\"/>\
             <rect x=\"{:.1}\" y=\"{y:.1}\" width=\"14\" height=\"14\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            Fill(order, true),
            x + 14.0,
            Fill(order, false),
            x + 32.0,
            y + 11.5,
            human(min_block << order.get())
        )?;
    }
    writeln!(out, "</svg>")
}

#[cfg(test)]
mod tests;
