//! What every target runs with: the [`Context`] (the workload's RNG, the simulated disk, the
//! counters), the [`Failure`] a check returns and the `fail!` macro that builds it, the
//! [`Canary`] a run may be told to plant; the per-seed swarm draw (`swarm.rs`); the crash plans
//! and disk events of lives and opens (`plan.rs`); the [`Target`] trait a structure implements
//! (`target.rs`) and the one generic loop that drives it (`run.rs`). The runner builds a
//! `Context` and calls [`run`] for the target; a target imports this module, never the runner.

mod checks;
mod plan;
mod run;
mod swarm;
mod target;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use rand_chacha::ChaCha8Rng;

use crate::SimVfs;
pub use checks::{damage_explains, live_read_failed, retry_reads};
pub use plan::LifePlan;
pub use run::{open_and_check, run};
pub use swarm::{apply_canary, draw_faults};
pub use target::{Checked, Opened, Step, Target};

/// Bound on the attempts of one open, and on opens in a row that power failure cut short.
pub const OPEN_ATTEMPTS_MAX: u32 = 12;

/// A deliberately broken disk, to prove the checker sees what it claims to see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Canary {
    /// `sync_data` and `sync_dir` return `Ok` and keep the data pending.
    LyingFsync,
    /// Every odd seed panics before its first operation, as a bug in a check would: each must
    /// fail alone, with its message, and a run of many seeds must go on and report them.
    Panic,
}

impl Canary {
    /// The name `--canary` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::LyingFsync => "lying-fsync",
            Self::Panic => "panic",
        }
    }
}

/// The state a target's workload runs with.
#[allow(missing_debug_implementations, reason = "holds trait objects and an RNG; nothing useful to print")]
pub struct Context {
    pub seed: u64,
    /// The workload's RNG; the disk has its own, so either can be read without shifting the
    /// other.
    pub rng: ChaCha8Rng,
    pub vfs: SimVfs,
    pub vfs_handle: Arc<dyn ballast::vfs::Vfs>,
    pub ops_budget: u64,
    pub ops: u64,
    pub crashes: u64,
    pub recoveries: BTreeMap<&'static str, u64>,
    pub canary: Option<Canary>,
    /// The damage an open saw before its check sent it to open again (`Checked::Reopen`): the
    /// next open's check must still excuse what it caused, though that open's writes may have
    /// healed it (a WAL cut at a misdirected write's hole removes the bytes that went astray;
    /// tsdb seeds 77519, 83123, 90997, 99854).
    pub carried_damage: Vec<crate::Damage>,
}

impl Context {
    pub fn note(&mut self, path: &'static str) {
        *self.recoveries.entry(path).or_default() += 1;
        self.vfs.trace_event(format_args!("recovery {path}"));
    }

    pub fn trace(&self, event: fmt::Arguments<'_>) {
        self.vfs.trace_event(event);
    }

    /// Adds to `seen` the damage the disk holds now and `seen` lacks. An open gathers it before
    /// every attempt: an attempt that fails can leave damage behind (its own write misdirected
    /// onto synced data), and the next attempt, writing over it, heals the ledger; the loss
    /// that damage caused must still be excused (logstor seed 324636).
    pub fn gather_damage(&self, seen: &mut Vec<crate::Damage>) {
        for damage in self.vfs.damage() {
            if !seen.contains(&damage) {
                seen.push(damage);
            }
        }
    }
}

/// A violated invariant: a sentence saying what broke.
#[derive(Debug)]
pub struct Failure {
    /// Which check failed: the format string of its message, the same whatever the numbers in
    /// it. `shrink` keeps only prefixes that fail the same check.
    pub kind: &'static str,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Fails the seed with a formatted message; the format string names the check.
#[macro_export]
macro_rules! fail {
    ($kind:literal $($argument:tt)*) => {
        return Err($crate::harness::Failure { kind: $kind, message: format!($kind $($argument)*) })
    };
}
