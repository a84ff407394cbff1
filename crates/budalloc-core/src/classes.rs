//! The interface a size-class policy offers to frontends (a per-thread cache keeps objects of
//! each class aside and hands them back with the class's layout).

use core::alloc::Layout;

use crate::RawAlloc;

/// A policy that serves small requests from a fixed table of size classes.
///
/// Every class has one layout ([`class_layout`](Self::class_layout)) with which its objects can
/// be allocated and freed: a frontend may serve any request that [`class_of`](Self::class_of)
/// maps to class `c` with an object allocated as `class_layout(c)`, and must free that object
/// with `class_layout(c)` (or another layout that maps to `c`).
///
/// The table belongs to the type, not to a value: the mapping functions take no `self`, so a
/// thread-safe frontend maps a layout to its class without taking the policy's lock.
pub trait SizeClasses: RawAlloc {
    /// How many classes the table holds; classes are numbered `0 .. CLASSES` by increasing size.
    const CLASSES: usize;

    /// The class that serves `layout`, or `None` if it goes straight to the backing policy (too
    /// large, or an alignment no class guarantees).
    fn class_of(layout: Layout) -> Option<usize>;

    /// The layout to allocate and free objects of `class` with: the class's object size and the
    /// alignment every object of the class has.
    ///
    /// # Panics
    /// If `class >= CLASSES`.
    fn class_layout(class: usize) -> Layout;
}
