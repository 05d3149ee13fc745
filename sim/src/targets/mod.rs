//! One module per simulated structure: its workload, its model, and its checker.

pub mod commitlog;
pub mod logstor;
pub mod tsdb;
pub mod wal;
