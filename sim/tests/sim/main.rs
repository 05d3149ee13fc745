//! Simulator tests: one binary, one module per area.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::cast_possible_truncation,
    reason = "tests compare against the real filesystem and build bytes from indexes"
)]

mod cli;
mod corpus;
mod fault_rules;
mod runner;
mod tsdb_compaction_crash_points;
mod vfs_agreement;
mod wal_crash_points;
mod wal_lost_seal;
