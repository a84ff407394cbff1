extern crate std;
use std::string::String;

use super::{write_svg, SvgRow};
use crate::{BlockView, Order};

fn block(frag: usize, k: u32, allocated: bool) -> BlockView {
    BlockView { frag, order: Order::new(k).unwrap(), allocated }
}

#[test]
fn one_rectangle_per_block_and_escaped_labels() {
    // 8 fragments of 16 B: a 64 B block allocated, then 32 B and 32 B free.
    let moment = [block(0, 2, true), block(4, 1, false), block(6, 1, false)];
    let fresh = [block(0, 3, false)];
    let rows =
        [SvgRow { label: "fresh <arena>", blocks: &fresh }, SvgRow { label: "a & b", blocks: &moment }];
    let mut svg = String::new();
    write_svg(&mut svg, "t", 8, 16, &rows).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("fresh &lt;arena&gt;") && svg.contains("a &amp; b"));
    // Background + per row one bar background + one rectangle per block + 2 swatches per order.
    let rects = svg.matches("<rect").count();
    assert_eq!(rects, 1 + 2 + (1 + 3) + 2 * 3);
    assert!(svg.contains("128 B free in 1 blocks, largest 128 B"));
    assert!(svg.contains("64 B free in 2 blocks, largest 32 B"));
    // The legend names the three orders that appear: 32 B, 64 B, 128 B.
    for size in [">32 B<", ">64 B<", ">128 B<"] {
        assert!(svg.contains(size), "{size}");
    }
}
