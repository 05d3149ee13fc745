//! What every target runs with, shared by the runner and the targets: the [`Context`] (the
//! workload's RNG, the simulated disk, the counters), a life's crash plan, the [`Failure`] a
//! check returns and the `fail!` macro that builds it, the per-seed fault draw, and the
//! [`Canary`] a run may be told to plant. The runner builds a `Context` and dispatches to a
//! target; a target imports this module, never the runner.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::faults::FaultConfig;
use crate::SimVfs;

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

/// Draws which fault classes are on for this seed, and their rates (swarm testing).
pub fn draw_faults(rng: &mut ChaCha8Rng, segment_size: u64) -> FaultConfig {
    let mut config = FaultConfig::none();
    if rng.gen_bool(0.1) {
        return config;
    }
    // Each class is on with some probability, and when on its rate is drawn from a range.
    let rate =
        |rng: &mut ChaCha8Rng, on: f64, range: Range<f64>| if rng.gen_bool(on) { rng.gen_range(range) } else { 0.0 };
    config.lost_unsynced = rng.gen_bool(0.9);
    config.spurious_durability = rate(rng, 0.5, 0.1..0.9);
    config.torn_write = rate(rng, 0.5, 0.1..0.8);
    config.size_before_data = rate(rng, 0.5, 0.1..0.8);
    config.dir_entry_lost = rate(rng, 0.5, 0.1..0.7);
    config.fsync_failure = rate(rng, 0.3, 0.002..0.05);
    config.write_error = rate(rng, 0.3, 0.002..0.03);
    config.read_error = rate(rng, 0.3, 0.001..0.02);
    config.latent_sector = rate(rng, 0.3, 0.1..0.6);
    config.bit_rot = rate(rng, 0.3, 0.1..0.6);
    config.misdirected_write = rate(rng, 0.3, 0.002..0.03);
    if rng.gen_bool(0.2) {
        config.capacity_bytes = Some(segment_size * rng.gen_range(4..10));
    }
    config.latency = rng.gen_bool(0.5);
    config.crash_inside_op = rate(rng, 0.5, 0.2..0.8);
    config
}

/// A life's length and, maybe, the step at which power is cut inside an operation.
#[derive(Debug)]
pub struct LifePlan {
    pub length: u64,
    armed_at: Option<u64>,
    k_max: u64,
}

impl Context {
    /// With the seed's crash-inside-op rate, arms a crash at one of the next `k_max` I/O calls
    /// of the recovery about to run (only after a crash).
    pub fn arm_crash_in_recovery(&mut self, after_crash: bool, k_max: u64) {
        if after_crash && self.vfs.config().crash_inside_op > 0.0 && self.rng.gen_bool(0.1) {
            let k = self.rng.gen_range(1..=k_max);
            self.trace(format_args!("op arm crash inside recovery after {k} io calls"));
            self.vfs.crash_after_io_calls(k);
        }
    }

    /// Draws a life: up to 40 operations, and with the seed's crash-inside-op rate a step at
    /// which power will fail at one of that operation's first `k_max` I/O calls.
    pub fn plan_life(&mut self, k_max: u64) -> LifePlan {
        let length = self.rng.gen_range(1..=40u64);
        let crash_inside = self.vfs.config().crash_inside_op;
        let armed_at = (crash_inside > 0.0 && self.rng.gen_bool(crash_inside)).then(|| self.rng.gen_range(0..length));
        LifePlan { length, armed_at, k_max }
    }

    /// Arms the life's crash point if `step` is the one drawn.
    pub fn arm_planned_crash(&mut self, plan: &LifePlan, step: u64) {
        if plan.armed_at == Some(step) {
            let k = self.rng.gen_range(1..=plan.k_max);
            self.trace(format_args!("op arm crash after {k} io calls"));
            self.vfs.crash_after_io_calls(k);
        }
    }

    /// A disk failing so many syncs that open keeps failing (a logstor open syncs every data
    /// file and seals what was torn: 20 syncs and more) calms down: the I/O error rates halve.
    /// Without it, logstor seed 3040 failed 12 opens in a row at 4.5 % per sync.
    pub fn ease_io_errors(&mut self) {
        let mut config = self.vfs.config();
        config.fsync_failure /= 2.0;
        config.write_error /= 2.0;
        config.read_error /= 2.0;
        self.vfs.set_config(config);
        self.note("io_errors_eased");
    }

    /// An open failed with an I/O error and will be retried. If the disk was full, does what an
    /// operator does: frees `grow_by` bytes. Recovery may need a little (a repair writes its
    /// plan first).
    pub fn open_failed(&mut self, error: &ballast::Error, grow_by: u64) {
        self.trace(format_args!("open failed: {error}"));
        if error.io_kind() == Some(std::io::ErrorKind::StorageFull) {
            let mut config = self.vfs.config();
            config.capacity_bytes = config.capacity_bytes.map(|bytes| bytes + grow_by);
            self.vfs.set_config(config);
            self.note("space_freed");
        }
        self.note("open_retried");
    }

    /// Invariant 2 (ARCHITECTURE.md): after a failed write or sync, every mutating call refuses. `result` is such
    /// a call's.
    pub fn expect_poisoned(&mut self, result: ballast::Result<()>, what: &str) -> Result<(), Failure> {
        match result {
            Err(ballast::Error::Poisoned) => {
                self.note("poisoned");
                Ok(())
            }
            other => {
                let message = format!("after a failed write the {what} was not poisoned: sync returned {other:?}");
                Err(Failure { kind: "after a failed write the {what} was not poisoned", message })
            }
        }
    }
}
