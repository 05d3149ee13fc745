//! ballast-sim: the deterministic simulator. A simulated disk ([`SimVfs`]) and clock
//! ([`SimClock`]) that implement the engine's traits, a fault model drawn per seed, and a
//! runner that drives each target's real engine code through crashes and checks every result
//! against a model.

pub mod clock;
pub mod disk;
pub mod faults;
pub mod trace;

pub use clock::SimClock;
pub use disk::{Damage, SimVfs};
pub use faults::{FaultConfig, FaultCounts, FaultKind};
pub use trace::Trace;
pub mod harness;
pub mod runner;
pub mod shrink;
pub mod targets;
pub mod workload;

pub use harness::Canary;
pub use runner::{run_seed, RunOptions, SeedOutcome, Target};
pub use shrink::{shrink, Shrunk};
pub use workload::{run_workload, Sim, StepError, Workload, WorkloadOutcome};
