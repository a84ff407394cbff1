//! A tour of budalloc: one arena, real collections on it, the stats and the arena map before
//! and after frees, and what a checked free says about misuse.
//!
//! Run with `cargo run --release --example tour [picture.svg]`: it also draws a small arena
//! through a workload as an SVG picture (by default `target/budalloc-arena.svg`, relative to the
//! current directory) and prints where it wrote it.

use core::alloc::Layout;
use core::mem::MaybeUninit;

use allocator_api2::boxed::Box as ABox;
use allocator_api2::vec::Vec as AVec;
use budalloc::{Buddy, BuddyHeap, Local, Order, RawAlloc};
use budalloc_core::{write_svg, BlockView, SvgRow};

fn main() {
    // 1. A heap over one region of 256 KiB (any memory will do: a static, a leaked box, mmap).
    //    Aligned to 64 KiB so that the largest blocks start at its beginning.
    #[repr(C, align(65536))]
    struct Region([MaybeUninit<u8>; 256 * 1024]);
    let region = Box::leak(Box::new(Region([MaybeUninit::uninit(); 256 * 1024])));
    let heap = BuddyHeap::default();
    heap.claim(&mut region.0).expect("a 256 KiB region is large enough");
    println!("== a fresh arena: the largest naturally aligned blocks first, then smaller ones");
    print_heap(&heap);

    // 2. Collections from allocator-api2 and hashbrown, all on the arena.
    let mut numbers: AVec<u64, &BuddyHeap> = AVec::new_in(&heap);
    numbers.extend(0..2_000);
    let mut names = hashbrown::HashMap::new_in(&heap);
    for i in 0..300u32 {
        names.insert(i, ABox::new_in([i; 8], &heap));
    }
    let mut strings: AVec<AVec<u8, &BuddyHeap>, &BuddyHeap> = AVec::new_in(&heap);
    for i in 0..200usize {
        let mut s = AVec::with_capacity_in(8 + i % 120, &heap);
        s.extend(core::iter::repeat_n(b'x', i % 100));
        strings.push(s);
    }
    println!("\n== after filling a Vec<u64>, a HashMap<u32, Box<[u32; 8]>> and 200 byte strings");
    print_heap(&heap);

    // 3. Free every other string and half the map: the holes show as lowercase letters.
    let mut keep = true;
    strings.retain(|_| {
        keep = !keep;
        keep
    });
    names.retain(|k, _| k % 2 == 0);
    println!("\n== after freeing every other string and half the map entries: fragmentation");
    print_heap(&heap);

    // 4. Drop everything: buddies coalesce back into the original blocks.
    drop((numbers, names, strings));
    println!("\n== after dropping everything: back to the initial seeding");
    print_heap(&heap);

    // 5. The checked API reports misuse and changes nothing.
    println!("\n== what the checked free says about misuse");
    let mut policy: Buddy<16, 4096, 1> = Buddy::new();
    let region = Box::leak(vec![MaybeUninit::<u8>::uninit(); 16 * 1024].into_boxed_slice());
    policy.claim(region).expect("16 KiB");
    let layout = Layout::from_size_align(100, 8).expect("layout");
    let block = policy.allocate(layout).expect("a 128-byte block").cast::<u8>();
    let inner = block.map_addr(|a| a.checked_add(8).expect("address"));
    let stack = 0u64;
    let checks = [
        ("interior pointer", inner, layout),
        ("foreign pointer", core::ptr::NonNull::from(&stack).cast(), layout),
        ("wrong layout", block, Layout::from_size_align(1000, 8).expect("layout")),
    ];
    for (what, ptr, layout) in checks {
        // SAFETY: none of these pointers is a block someone owns: the free is refused.
        let result = unsafe { policy.try_deallocate(ptr, layout) };
        println!("  {what:<17} -> {}", result.map_or_else(|e| e.to_string(), |()| "accepted".into()));
    }
    // SAFETY: `block` is live with `layout`.
    unsafe { policy.try_deallocate(block, layout) }.expect("a valid free");
    // SAFETY: freed just above: this is the double free the checked API reports.
    let again = unsafe { policy.try_deallocate(block, layout) };
    println!("  {:<17} -> {}", "double free", again.map_or_else(|e| e.to_string(), |()| "accepted".into()));

    // 6. The arena as a picture: a small arena through a workload, one row per moment.
    let path = std::env::args().nth(1).unwrap_or_else(|| "target/budalloc-arena.svg".to_string());
    let svg = picture();
    if let Some(dir) = std::path::Path::new(&path).parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).expect("a directory for the picture");
    }
    std::fs::write(&path, svg).expect("the picture is written");
    println!("\n== the arena as a picture: {path}");
}

/// The policy the picture shows: 32-byte smallest blocks, 16 KiB largest, one arena.
type Small = Buddy<32, { 16 * 1024 }, 1>;

/// Runs a small workload on a 16 KiB arena and draws it as an SVG, one row per moment.
fn picture() -> String {
    // 16 KiB of blocks plus room for the bitmap, aligned so that the first block is 16 KiB.
    #[repr(C, align(16384))]
    struct Region([MaybeUninit<u8>; 16 * 1024 + 256]);
    let region = Box::leak(Box::new(Region([MaybeUninit::uninit(); 16 * 1024 + 256])));
    let mut policy = Small::new();
    let arena = policy.claim(&mut region.0).expect("a 16.25 KiB region is large enough");
    let (start, fragments) = (arena.start(), arena.fragments());
    let mut rows: Vec<(String, Vec<BlockView>)> = Vec::new();
    let mut snap = |policy: &Small, label: &str| rows.push((label.to_string(), blocks(policy, start)));
    snap(&policy, "a fresh arena: one 16 KiB block, and the small blocks the rest of the region makes");

    let layout = |size| Layout::from_size_align(size, 8).expect("layout");
    let alloc = |policy: &mut Small, size| (policy.allocate(layout(size)).expect("room").cast::<u8>(), size);
    let first = alloc(&mut policy, 100);
    snap(&policy, "allocate 100 B: the 16 KiB block splits in halves down to a 128 B block");
    let mut live = vec![first];
    for size in [3000, 700, 40, 200, 1500, 64, 300] {
        live.push(alloc(&mut policy, size));
    }
    snap(
        &policy,
        "allocate 3000, 700, 40, 200, 1500, 64 and 300 B: each gets a power-of-two block, split from the smallest free block that fits",
    );
    for i in [2, 4, 7] {
        let (ptr, size) = live[i];
        // SAFETY: block `i` is live with this layout; it is freed once (the indices differ).
        unsafe { policy.deallocate(ptr, layout(size)) };
    }
    // The block freed last is parked unmerged until the next free; flush so the picture shows
    // every free byte merged.
    policy.flush();
    snap(&policy, "free the 700, 200 and 300 B blocks: holes between live blocks");
    live.push(alloc(&mut policy, 5000));
    snap(&policy, "allocate 5000 B: rounded up to an 8 KiB block");
    for &i in &[0, 1, 3, 5, 8] {
        let (ptr, size) = live[i];
        // SAFETY: these blocks are live with their layouts and were not freed above.
        unsafe { policy.deallocate(ptr, layout(size)) };
    }
    policy.flush();
    snap(&policy, "free everything but the 64 B block: buddies merge, up to the one block still in use");
    let (ptr, size) = live[6];
    // SAFETY: the last live block, freed once.
    unsafe { policy.deallocate(ptr, layout(size)) };
    policy.flush();
    snap(&policy, "free the 64 B block: the buddies merge all the way back to the fresh arena");

    let rows: Vec<SvgRow<'_>> = rows.iter().map(|(label, blocks)| SvgRow { label, blocks }).collect();
    let mut svg = String::new();
    write_svg(&mut svg, "budalloc: a 16 KiB arena through a workload (MIN = 32 B)", fragments, 32, &rows)
        .expect("writing to a String cannot fail");
    svg
}

/// The blocks of `policy`'s arena at `start`, as the picture wants them.
fn blocks(policy: &Small, start: usize) -> Vec<BlockView> {
    let min = policy.math().min_block();
    policy
        .blocks()
        .map(|b| BlockView {
            frag: (b.addr - start) / min,
            order: Order::new((b.size / min).trailing_zeros()).expect("a block is at most MAX"),
            allocated: b.allocated,
        })
        .collect()
}

fn print_heap<A: RawAlloc + MapSource>(heap: &Local<A>) {
    println!("{}", heap.stats());
    heap.with(|policy| println!("{}", policy.render(192))).expect("not re-entered");
}

/// What the tour needs to draw a policy.
trait MapSource {
    fn render(&self, cells: usize) -> String;
}

impl<const MIN: usize, const MAX: usize, const N: usize> MapSource for Buddy<MIN, MAX, N> {
    fn render(&self, cells: usize) -> String {
        self.map(cells).to_string()
    }
}
