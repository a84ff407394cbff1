//! A tour of budalloc: one arena, real collections on it, the stats and the arena map before
//! and after frees, and what a checked free says about misuse.
//!
//! Run with `cargo run --release --example tour`.

use core::alloc::Layout;
use core::mem::MaybeUninit;

use allocator_api2::boxed::Box as ABox;
use allocator_api2::vec::Vec as AVec;
use budalloc::{Buddy, Heap, Local, RawAlloc};

fn main() {
    // 1. A heap over one region of 256 KiB (any memory will do: a static, a leaked box, mmap).
    //    Aligned to 64 KiB so that the largest blocks start at its beginning.
    #[repr(C, align(65536))]
    struct Region([MaybeUninit<u8>; 256 * 1024]);
    let region = Box::leak(Box::new(Region([MaybeUninit::uninit(); 256 * 1024])));
    let heap = Heap::default();
    heap.claim(&mut region.0).expect("a 256 KiB region is large enough");
    println!("== a fresh arena: the largest naturally aligned blocks first, then smaller ones");
    print_heap(&heap);

    // 2. Collections from allocator-api2 and hashbrown, all on the arena.
    let mut numbers: AVec<u64, &Heap> = AVec::new_in(&heap);
    numbers.extend(0..2_000);
    let mut names = hashbrown::HashMap::new_in(&heap);
    for i in 0..300u32 {
        names.insert(i, ABox::new_in([i; 8], &heap));
    }
    let mut strings: AVec<AVec<u8, &Heap>, &Heap> = AVec::new_in(&heap);
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
