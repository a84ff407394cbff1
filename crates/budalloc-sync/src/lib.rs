//! # budalloc-sync: frontends that make a policy usable by collections
//!
//! This crate owns the frontends: types that wrap any single-threaded policy
//! ([`budalloc_core::RawAlloc`]) and implement `allocator_api2::alloc::Allocator` for shared
//! references, so that `Vec::new_in(&heap)`, `Box::new_in(x, &heap)` and
//! `hashbrown::HashMap::new_in(&heap)` work on a budalloc arena, and `GlobalAlloc` for the
//! thread-safe ones:
//! - [`Local`]: one thread, a re-entrance flag, no atomics;
//! - [`Locked`]: any policy behind a [`RawLock`] chosen by type parameter ([`Spin`], `no_std`;
//!   [`StdLock`] with the `std` feature), with a non-blocking [`Locked::try_with`];
//! - `Cached` (feature `std`): per-thread magazines of size-class objects in front of a
//!   `'static` [`Locked`] policy that implements `budalloc_core::SizeClasses`;
//! - [`StaticHeap`]: a spin-locked policy over an array inside the static, for
//!   `#[global_allocator]` on `no_std`; [`SystemSource`] (feature `std`) feeds
//!   `budalloc_core::Grow` regions from the OS.
//!
//! On the `GlobalAlloc` path nothing panics: failures return null, and detected misuse (double
//! free, foreign pointer, ...) prints one line ([`fatal::FATAL_PREFIX`]) and aborts.
//!
//! Architecture invariant: this crate depends on `budalloc-core` only (and `allocator-api2`),
//! never on a concrete policy. Interior mutability (and, later, locks and atomics) live here and
//! nowhere else: policies are plain `&mut self` structs. It is `#![no_std]`.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]

#[cfg(feature = "std")]
mod cached;
pub mod fatal;
mod frontend;
mod local;
mod locked;
#[cfg(feature = "std")]
mod os;
#[cfg(not(budalloc_loom))]
mod static_heap;
#[cfg(feature = "std")]
mod std_lock;
mod sync_prim;

#[cfg(feature = "std")]
pub use cached::{capacity, Cached, Magazines, BATCH, CACHED_CLASSES, MAGAZINE, MAGAZINE_BYTES};
pub use local::Local;
pub use locked::{Locked, RawLock, Spin, WouldBlock};
#[cfg(feature = "std")]
pub use os::SystemSource;
#[cfg(not(budalloc_loom))]
pub use static_heap::{Moved, StaticHeap};
#[cfg(feature = "std")]
pub use std_lock::StdLock;

#[cfg(test)]
mod tests;
