//! ballast: an embeddable storage engine whose every durable structure is written against a
//! pluggable filesystem ([`vfs::Vfs`]) and clock ([`clock::Clock`]), so that a deterministic
//! simulator can crash it, tear its writes and rot its bits, and check what recovery keeps.
//!
//! Structures:
//! - [`wal`]: a segmented write-ahead log of opaque records.
//! - [`commitlog`]: commits of transactions at caller-supplied offsets, with snapshots.
//! - [`logstor`]: a log-structured key-value store with compaction groups.
//!
//! Every call documents what it makes durable; nothing is durable until a call says so.

pub mod clock;
mod codec;
pub mod commitlog;
mod directory;
mod error;
mod health;
mod listing;
pub mod logstor;
mod repair;
mod segment_writer;
#[cfg(feature = "tsdb")]
pub mod tsdb;
pub mod vfs;
pub mod wal;

pub use error::{CorruptionReason, Error, Result};
pub use repair::{RecoveryMode, Repair};

/// Every Rust block of the README, compiled and run by `cargo test` as doc-tests, so that what
/// the README shows a user works as shown.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
