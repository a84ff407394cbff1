//! The shadow model: live blocks with fill patterns.

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::ptr::NonNull;

/// A live block in the model.
#[derive(Clone, Debug)]
pub struct Live {
    /// Where it starts.
    pub ptr: NonNull<u8>,
    /// The layout it was allocated (or last resized) with.
    pub layout: Layout,
    /// The length the policy returned.
    pub len: usize,
    /// The byte its first `layout.size()` bytes hold.
    pub fill: u8,
}

impl Live {
    /// Checks that the block still holds its fill pattern.
    pub fn verify(&self) {
        self.verify_prefix(self.ptr, self.layout.size());
    }

    /// Checks that the first `n` bytes at `at` hold this block's fill pattern.
    pub fn verify_prefix(&self, at: NonNull<u8>, n: usize) {
        // SAFETY: `at` is a block the policy handed out for at least `n` bytes, which the model
        // filled (or copied) and nothing else wrote.
        let bytes = unsafe { std::slice::from_raw_parts(at.as_ptr(), n) };
        if let Some(i) = bytes.iter().position(|&b| b != self.fill) {
            panic!(
                "block {:#x}: byte {i} is {:#04x}, expected fill {:#04x} (overlap or lost contents)",
                at.addr(),
                bytes[i],
                self.fill
            );
        }
    }
}

/// Live blocks by start address.
#[derive(Debug, Default)]
pub struct Model {
    live: BTreeMap<usize, Live>,
    next_fill: u8,
}

impl Model {
    /// Records a new block, checks it overlaps no live one, and fills it.
    pub fn insert(&mut self, ptr: NonNull<u8>, layout: Layout, len: usize) {
        let addr = ptr.addr().get();
        let end = addr + len;
        if let Some((&prev, live)) = self.live.range(..=addr).next_back() {
            assert!(
                prev + live.len <= addr,
                "block {addr:#x}+{len} overlaps live block {prev:#x}+{}",
                live.len
            );
        }
        if let Some((&next, _)) = self.live.range(addr..).next() {
            assert!(end <= next, "block {addr:#x}+{len} overlaps live block {next:#x}");
        }
        self.next_fill = self.next_fill.wrapping_add(1).max(1);
        let fill = self.next_fill;
        // SAFETY: the policy handed out `len >= layout.size()` writable bytes at `ptr`.
        unsafe { ptr.as_ptr().write_bytes(fill, layout.size()) };
        self.live.insert(addr, Live { ptr, layout, len, fill });
    }

    /// Forgets the block at `addr` (which must be live).
    pub fn remove(&mut self, addr: usize) -> Live {
        self.live.remove(&addr).expect("model: no live block there")
    }

    /// The live block at `addr`.
    pub fn get(&self, addr: usize) -> &Live {
        &self.live[&addr]
    }

    /// The start of live block number `pick % count`, if any.
    pub fn pick(&self, pick: usize) -> Option<usize> {
        if self.live.is_empty() {
            return None;
        }
        self.live.keys().nth(pick % self.live.len()).copied()
    }

    /// Whether a live block starts at `addr`.
    pub fn contains_start(&self, addr: usize) -> bool {
        self.live.contains_key(&addr)
    }

    /// The start of the live block containing `addr`, if any.
    pub fn containing(&self, addr: usize) -> Option<usize> {
        let (&start, live) = self.live.range(..=addr).next_back()?;
        (addr < start + live.len).then_some(start)
    }

    /// All live starts, in address order.
    pub fn addresses(&self) -> Vec<usize> {
        self.live.keys().copied().collect()
    }

    /// Number of live blocks.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no block is live.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Sum of the lengths of live blocks.
    pub fn block_bytes(&self) -> usize {
        self.live.values().map(|l| l.len).sum()
    }

    /// Sum of the requested sizes of live blocks.
    pub fn requested_bytes(&self) -> usize {
        self.live.values().map(|l| l.layout.size()).sum()
    }

    /// A listing of live blocks, for failure messages.
    pub fn describe(&self) -> String {
        let mut out = String::from("live blocks:");
        for (addr, live) in &self.live {
            let _ = write!(out, " {addr:#x}+{}", live.len);
        }
        out
    }
}
