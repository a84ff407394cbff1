//! # budalloc-sync: frontends that make a policy usable by collections
//!
//! This crate owns the frontends: types that wrap any single-threaded policy
//! ([`budalloc_core::RawAlloc`]) and implement `allocator_api2::alloc::Allocator` for shared
//! references, so that `Vec::new_in(&heap)`, `Box::new_in(x, &heap)` and
//! `hashbrown::HashMap::new_in(&heap)` work on a budalloc arena. For now: [`Local`], for one
//! thread.
//!
//! Architecture invariant: this crate depends on `budalloc-core` only (and `allocator-api2`),
//! never on a concrete policy. Interior mutability (and, later, locks and atomics) live here and
//! nowhere else: policies are plain `&mut self` structs. It is `#![no_std]`.
#![no_std]
#![deny(missing_docs)]

mod local;

pub use local::Local;

#[cfg(test)]
mod tests;
