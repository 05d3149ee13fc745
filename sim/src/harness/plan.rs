//! What a life and an open do to the disk on the harness's behalf: the crash points armed in a
//! life or a recovery, easing a disk that fails every open, freeing space for a full one, and
//! the poisoning check after a failed write.

use rand::Rng;

use super::{Context, Failure};

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
