//! The [`Target`] trait: what a simulated structure gives the one generic loop in `run.rs` (its
//! swarm draw, how to open, step, sync and close it, what rot may strike, and its oracle), and
//! what that loop hands back to it.

use std::ops::Range;
use std::path::PathBuf;

use ballast::{Error, RecoveryMode};

use super::{Context, Failure};
use crate::fail;
use crate::faults::FaultConfig;
use crate::Damage;

/// What the life does after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Continue,
    /// A write or sync failed: the handle must refuse every mutating call from now on.
    Poisoned,
    /// The workload asked for a clean reopen.
    Reopen,
}

impl Step {
    /// What the result of a mutating call means for the life: an I/O error poisons the handle,
    /// any other error fails the seed.
    pub fn after(result: ballast::Result<()>, what: &str) -> Result<Step, Failure> {
        match result {
            Ok(()) => Ok(Step::Continue),
            Err(Error::Io { .. }) => Ok(Step::Poisoned),
            Err(error) => fail!("{what} failed: {error}"),
        }
    }
}

/// What the oracle's check of a recovered handle concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checked {
    Sound,
    /// Reading the recovered data back met damage the disk caused: open again, so that the
    /// open reports or repairs it.
    Reopen,
}

/// The open that succeeded, as the oracle's check sees it.
#[derive(Debug)]
pub struct Opened<'a, B> {
    pub mode: RecoveryMode,
    /// All the damage the ledger held at the start of any attempt of this open.
    pub damage: &'a [Damage],
    /// What the target noted about the disk before the first attempt.
    pub before: &'a B,
    pub after_crash: bool,
}

/// A durable structure the simulator drives, with its workload, model and oracle.
pub trait Target: Sized {
    /// The open structure: `Wal`, `Commitlog`, `Logstor`.
    type Handle;
    /// What the oracle notes about the disk before an open (the last segment on disk, say).
    type BeforeOpen: std::fmt::Debug;

    /// The name in the swarm line.
    const NAME: &'static str;
    /// What the handle is called in failure messages: "log", "store".
    const NOUN: &'static str;
    /// A crash armed in a life falls within this many I/O calls of its operation's start.
    const LIFE_CRASH_IO_CALLS: u64;
    /// A crash armed in a recovery falls within this many of its I/O calls.
    const RECOVERY_CRASH_IO_CALLS: u64;
    /// Whether a clean reopen closes the handle half the time; otherwise it is dropped.
    const CLOSES_ON_REOPEN: bool;
    /// Whether the second half of an open's attempts run with the I/O error rates halved.
    const EASES_FAILING_OPENS: bool;
    /// Whether a repair open that reports corruption in a file the disk damaged is tried
    /// again (its own writes met the failing disk); otherwise the seed fails.
    const RETRIES_REPAIR_ON_DAMAGE: bool;

    /// Draws the structure's options and the seed's faults, in the order that fixes the seed's
    /// RNG stream.
    fn draw(context: &mut Context) -> (Self, FaultConfig);
    /// The options, as the swarm line gives them between `ops=` and `faults:`.
    fn describe(&self) -> String;
    /// Bytes an operator frees when an open fails on a full disk.
    fn space_to_free(&self) -> u64;

    fn before_open(&self, context: &Context) -> Self::BeforeOpen;
    fn open(&self, context: &Context, mode: RecoveryMode) -> ballast::Result<Self::Handle>;
    /// Whether the `damage` explains the corruption `error` a strict open reported.
    fn explains_corruption(&self, damage: &[Damage], error: &Error) -> bool;
    /// The oracle: checks what the open recovered against the model, and adopts it.
    fn check_recovered(
        &mut self,
        context: &mut Context,
        handle: &Self::Handle,
        opened: &Opened<'_, Self::BeforeOpen>,
    ) -> Result<Checked, Failure>;

    /// Draws one operation and applies it to the handle and the model.
    fn step(&mut self, context: &mut Context, handle: &mut Self::Handle) -> Result<Step, Failure>;
    /// A check after every step the power survived.
    fn after_step(&mut self, _context: &mut Context, _handle: &mut Self::Handle) -> Result<(), Failure> {
        Ok(())
    }
    fn sync(handle: &mut Self::Handle) -> ballast::Result<()>;
    fn close(handle: Self::Handle) -> ballast::Result<()>;
    /// A close returned: everything written is durable.
    fn closed(&mut self);

    /// The ranges of files the rot between lives may strike: only where the oracle knows what
    /// the engine owes.
    fn rot_eligible(&self, context: &Context) -> Vec<(PathBuf, Range<u64>)>;
    /// Liveness on a perfect disk, after the harness has reopened it.
    fn final_phase(&mut self, context: &mut Context, handle: Self::Handle) -> Result<(), Failure>;
}
