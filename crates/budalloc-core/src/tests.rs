//! Unit tests of the core types: geometry, arithmetic, arena sizing, guard keys.

extern crate std;
use std::alloc::{alloc, dealloc, Layout};
use std::format;
use std::string::ToString;

use core::ptr::NonNull;

use crate::{AllocError, Arena, Bitmap, Corruption, GuardKey, Order, RegionError, SizeMath, MAX_ORDERS};

#[test]
fn size_math_validates_its_parameters() {
    assert!(SizeMath::new(16, 4096).is_ok());
    assert!(SizeMath::new(16, 16).is_ok());
    assert_eq!(SizeMath::new(24, 4096), Err("MIN and MAX must be powers of two"));
    assert_eq!(SizeMath::new(16, 3000), Err("MIN and MAX must be powers of two"));
    assert_eq!(SizeMath::new(64, 32), Err("MIN must not exceed MAX"));
    assert!(SizeMath::new(16, 16 << 31).is_ok());
    assert!(SizeMath::new(16, 16usize << 32).is_err(), "more than 32 orders");
    assert!(SizeMath::new(1 << 40, 1usize << 63).is_err(), "MAX above a quarter of the address space");
}

#[test]
fn order_for_is_a_checked_next_power_of_two() {
    let math = SizeMath::new(16, 1 << 20).unwrap();
    for (size, align, order) in
        [(0, 1, 0), (1, 1, 0), (16, 1, 0), (17, 1, 1), (32, 1, 1), (33, 1, 2), (1, 64, 2)]
    {
        assert_eq!(math.order_for(size, align), Ok(Order::new(order).unwrap()), "size {size} align {align}");
    }
    assert_eq!(math.order_for(1 << 20, 1).map(Order::get), Ok(16));
    assert_eq!(
        math.order_for((1 << 20) + 1, 1),
        Err(AllocError::TooLarge { size: (1 << 20) + 1, max: 1 << 20 })
    );
    assert_eq!(math.order_for(usize::MAX, 1), Err(AllocError::SizeOverflow { size: usize::MAX, align: 1 }));
    assert_eq!(
        math.order_for(isize::MAX as usize, 1),
        Err(AllocError::TooLarge { size: isize::MAX as usize, max: 1 << 20 })
    );
    assert_eq!(math.order_for(1, 1 << 21), Err(AllocError::AlignTooLarge { align: 1 << 21, max: 1 << 20 }));
    // A u128 oracle over every power-of-two boundary.
    for k in 0..usize::BITS {
        for delta in [-1i128, 0, 1] {
            let size = (1i128 << k) + delta;
            if size < 0 || size > usize::MAX as i128 {
                continue;
            }
            let block = (size as u128).max(16).next_power_of_two();
            let got = math.order_for(size as usize, 1);
            if block > 1 << 20 {
                assert!(
                    matches!(got, Err(AllocError::TooLarge { .. } | AllocError::SizeOverflow { .. })),
                    "{size}"
                );
            } else {
                assert_eq!(math.block_size(got.unwrap()) as u128, block, "{size}");
            }
        }
    }
}

#[test]
fn orders_stay_below_the_table_size() {
    assert_eq!(Order::new(MAX_ORDERS as u32), None);
    let top = Order::new(MAX_ORDERS as u32 - 1).unwrap();
    assert_eq!(top.above(), None);
    assert_eq!(Order::ZERO.below(), None);
    assert_eq!(top.below().unwrap().get(), MAX_ORDERS as u32 - 2);
}

/// An owned buffer for arena tests.
struct Buffer(NonNull<u8>, Layout);

impl Buffer {
    fn new(len: usize) -> Buffer {
        let layout = Layout::from_size_align(len, 4096).unwrap();
        // SAFETY: non-zero size.
        let ptr = NonNull::new(unsafe { alloc(layout) }).unwrap();
        Buffer(ptr, layout)
    }
    fn region(&self, offset: usize, len: usize) -> NonNull<[u8]> {
        assert!(offset + len <= self.1.size());
        NonNull::slice_from_raw_parts(self.0.map_addr(|a| a.checked_add(offset).unwrap()), len)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.0.as_ptr(), self.1) };
    }
}

fn two_bits_per_fragment(n: usize) -> Option<usize> {
    n.checked_mul(2)
}

#[test]
fn arena_carves_its_bitmap_from_the_tail() {
    let buffer = Buffer::new(8192);
    for offset in [0, 1, 7, 16, 100] {
        // SAFETY: the buffer outlives the arena and nothing else uses it.
        let arena = unsafe { Arena::new(buffer.region(offset, 4096), 4, two_bits_per_fragment) }.unwrap();
        let (addr, len) = arena.region();
        assert_eq!(arena.start() % 16, 0);
        assert!(arena.start() >= addr);
        assert!(arena.end() <= arena.bitmap().addr());
        assert!(arena.bitmap().addr() + arena.bitmap().footprint() <= addr + len);
        assert!(arena.bitmap().bits().len() >= 2 * arena.fragments());
        assert!(arena.bitmap().bits().not_any(), "bits start cleared");
        arena.bitmap().check_keys().unwrap();
        assert_eq!(arena.capacity() + arena.overhead(), len);
        // Within one fragment plus the bitmap of the optimum.
        let best = (len - (arena.start() - addr)) / 16;
        assert!(arena.fragments() + 1 + arena.bitmap().footprint() / 16 >= best, "offset {offset}");
        // Locate is a pure range check.
        assert_eq!(arena.locate(arena.start()), Some((0, 0)));
        assert_eq!(arena.locate(arena.start() + 17), Some((1, 1)));
        assert_eq!(arena.locate(arena.end()), None);
        assert_eq!(arena.locate(arena.start().wrapping_sub(1)), None);
    }
}

#[test]
fn bad_regions_are_refused() {
    let buffer = Buffer::new(4096);
    // SAFETY: the buffer outlives the arena.
    let e = unsafe { Arena::new(buffer.region(1, 20), 4, two_bits_per_fragment) }.unwrap_err();
    assert!(matches!(e, RegionError::TooSmall { len: 20, .. }), "{e}");
    // SAFETY: as above.
    let e = unsafe { Arena::new(buffer.region(0, 0), 4, two_bits_per_fragment) }.unwrap_err();
    assert!(matches!(e, RegionError::TooSmall { .. }), "{e}");
    let wrapping = NonNull::slice_from_raw_parts(
        NonNull::<u8>::dangling().map_addr(|_| core::num::NonZeroUsize::new(usize::MAX - 15).unwrap()),
        64,
    );
    // SAFETY: a wrapping region is refused before any access.
    let e = unsafe { Arena::new(wrapping, 4, two_bits_per_fragment) }.unwrap_err();
    assert!(matches!(e, RegionError::Overflow { .. }), "{e}");
}

#[test]
fn guard_keys_differ_per_arena_and_catch_stray_writes() {
    let buffer = Buffer::new(8192);
    // SAFETY: the two halves are disjoint and outlive the arenas.
    let a = unsafe { Arena::new(buffer.region(0, 4096), 4, two_bits_per_fragment) }.unwrap();
    // SAFETY: as above.
    let mut b = unsafe { Arena::new(buffer.region(4096, 4096), 4, two_bits_per_fragment) }.unwrap();
    assert_ne!(a.bitmap().raw_words()[0], b.bitmap().raw_words()[0], "keys differ per arena");
    assert_ne!(a.bitmap().tag(), b.bitmap().tag());
    // An overflow out of the bitset hits the back key.
    let back_addr = b.bitmap().addr() + b.bitmap().footprint() - size_of::<usize>();
    let _ = b.bitmap_mut().bits_mut();
    let back = buffer.0.with_addr(core::num::NonZeroUsize::new(back_addr).unwrap()).cast::<usize>();
    // SAFETY: the key word lies in the buffer and is initialised.
    let key = unsafe { back.read() };
    // SAFETY: as above; simulate a stray write.
    unsafe { back.write(key ^ 1) };
    let e = b.bitmap().check_keys().unwrap_err();
    assert_eq!(e, Corruption::GuardKey { which: GuardKey::Back, addr: back.addr().get() });
    assert!(e.to_string().contains("guard key 2"));
    Bitmap::add_key_entropy(12345);
}

#[test]
fn stats_and_sizes_print_readably() {
    assert_eq!(format!("{}", crate::human(64)), "64 B");
    assert_eq!(format!("{}", crate::human(4096)), "4 KiB");
    assert_eq!(format!("{}", crate::human(3 << 20)), "3 MiB");
    assert_eq!(format!("{}", crate::human(1000)), "1000 B");
    let mut stats = crate::Stats {
        capacity: 1024,
        allocated: 512,
        free: 512,
        overhead: 0,
        largest_free: 256,
        min_block: 16,
        free_blocks: [0; MAX_ORDERS],
        arenas: 1,
    };
    assert!((stats.fragmentation() - 0.5).abs() < 1e-9);
    stats.free_blocks[4] = 2;
    assert!(format!("{stats}").contains("2×256 B"));
}

#[test]
fn bitmap_range_operations_agree_with_single_bits() {
    const WORDS: usize = 4;
    const BITS: usize = WORDS * usize::BITS as usize;
    let mut storage = [0usize; WORDS + 2];
    // SAFETY: `storage` holds `WORDS + 2` aligned words and is used only through the bitmap
    // until the end of the test.
    let mut bitmap = unsafe { Bitmap::init(NonNull::from(&mut storage).cast(), WORDS) };
    let mut model = [false; BITS];
    // A small linear congruential generator: deterministic ranges of every shape, including
    // empty ones, single bits, word-aligned and word-straddling ones.
    let mut state = 0x2545_f491_u32;
    let mut next = |bound: usize| {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 8) as usize % bound
    };
    let rounds = if cfg!(miri) { 60 } else { 600 };
    for _ in 0..rounds {
        let a = next(BITS + 1);
        let b = next(BITS + 1);
        let (start, end) = (a.min(b), a.max(b));
        let value = next(3) != 0;
        bitmap.fill(start, end, value);
        model[start..end].fill(value);
        for (i, &bit) in model.iter().enumerate() {
            assert_eq!(bitmap.get(i), bit, "bit {i} after filling {start}..{end} with {value}");
        }
        for _ in 0..8 {
            let (c, d) = (next(BITS + 1), next(BITS + 1));
            let (lo, hi) = (c.min(d), c.max(d));
            let first_set = (lo..hi).find(|&i| model[i]).unwrap_or(hi);
            assert_eq!(bitmap.next_set(lo, hi), first_set, "next_set({lo}, {hi})");
            let first_clear = (lo..hi).find(|&i| !model[i]).unwrap_or(hi);
            assert_eq!(bitmap.next_clear(lo, hi), first_clear, "next_clear({lo}, {hi})");
            let run_start = (lo..hi).rev().find(|&i| model[i]).map_or(lo, |i| i + 1);
            assert_eq!(bitmap.clear_run_start(hi, lo), run_start, "clear_run_start({hi}, {lo})");
        }
    }
    assert!(bitmap.check_keys().is_ok(), "no range operation touched a guard key");
}
