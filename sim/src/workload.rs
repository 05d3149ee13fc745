//! Simulating your own code: a program that embeds ballast implements [`Workload`] (open or
//! recover, one step, a check after every recovery, a last check on a perfect disk) and
//! [`run_workload`] runs it over the simulated disk with the same swarm draw, crash points,
//! faults, replayable seeds and trace as ballast's own targets.
//!
//! The faults a seed may draw here: power cuts between steps and inside them (at the k-th I/O
//! call), unsynced writes lost, kept anyway or torn, directory entries lost, failing fsyncs
//! and writes, transient read errors, a full disk and latency. Not yet: rot, latent sectors and
//! misdirected writes, which damage synced data (ballast's own oracles know what each
//! structure owes after such damage; a workload's check would have to too).
//!
//! `sim/examples/bank.rs` is a small application on logstor, and how to find its bug.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use ballast::clock::Clock;
use ballast::vfs::Vfs;
use ballast::{Error, RecoveryMode};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::faults::FaultCounts;
use crate::harness::{self, draw_faults, Checked, Context, Failure, Opened, Step, Target};
use crate::runner::{self, RunOptions};
use crate::Damage;

/// What a step of a workload returns when it does not go on.
#[derive(Debug)]
pub enum StepError {
    /// The engine refused: an I/O error or a poisoned handle is the simulated disk failing,
    /// and the harness reopens (then [`Workload::check_recovered`] runs); any other error
    /// fails the seed.
    Engine(Error),
    /// Your program broke a promise: the seed fails with this message.
    Check(String),
}

impl From<Error> for StepError {
    fn from(error: Error) -> Self {
        Self::Engine(error)
    }
}

/// What a workload sees of the simulation while it runs: the disk, the clock, and the seed's
/// random numbers (draw every choice from these, so that a seed replays exactly).
#[allow(missing_debug_implementations, reason = "holds the harness's context")]
pub struct Sim<'a> {
    context: &'a mut Context,
}

impl Sim<'_> {
    /// The simulated disk, to open ballast's structures on.
    pub fn vfs(&self) -> Arc<dyn Vfs> {
        self.context.vfs_handle.clone()
    }

    /// The simulated clock.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::new(self.context.vfs.clock())
    }

    /// The seed's random numbers.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.context.rng
    }

    /// Adds a line to the trace (`replay --trace` prints it).
    pub fn trace(&self, event: std::fmt::Arguments<'_>) {
        self.context.trace(event);
    }
}

/// Your program, run by the simulator: its state is your model of what it has promised.
pub trait Workload: Sized {
    /// What your program holds open (a `Logstor`, say).
    type Handle;
    /// The name in the swarm line.
    const NAME: &'static str;

    /// Draws the workload's options from `sim.rng()`, at the start of a seed.
    fn new(sim: &mut Sim<'_>) -> Self;
    /// Opens your structures on `vfs`: at the start, after a clean close (the harness closes
    /// and reopens about one step in fifty), after a crash, and after a failed write. `mode` is
    /// `Strict` (a strict open that reports damage fails the seed: no fault drawn here damages
    /// synced data).
    fn open(&self, vfs: Arc<dyn Vfs>, clock: Arc<dyn Clock>, mode: RecoveryMode) -> ballast::Result<Self::Handle>;
    /// After every successful open: check that what your program promised survived (and adopt
    /// what it recovered). `Err` fails the seed with the message.
    fn check_recovered(&mut self, sim: &mut Sim<'_>, handle: &Self::Handle) -> Result<(), String>;
    /// One step of your program.
    fn step(&mut self, sim: &mut Sim<'_>, handle: &mut Self::Handle) -> Result<(), StepError>;
    /// Whether a write or sync of the handle failed, so that it refuses every write from now
    /// on (ballast's structures poison themselves so): after a step's I/O error the harness
    /// reopens a poisoned handle, and goes on with one a failed read left usable.
    fn is_poisoned(handle: &Self::Handle) -> bool;
    /// Makes everything written durable. The harness calls it before a clean close, and after
    /// a failed write, when it must refuse with `Error::Poisoned`.
    fn sync(handle: &mut Self::Handle) -> ballast::Result<()>;
    fn close(handle: Self::Handle) -> ballast::Result<()>;
    /// A close returned: everything written is durable.
    fn closed(&mut self) {}
    /// After the last step, on a perfect disk and freshly opened: check that it still works
    /// (it takes writes and reads them back).
    fn final_check(&mut self, sim: &mut Sim<'_>, handle: Self::Handle) -> Result<(), String>;
}

/// The directory a workload's files go in (any path works on the simulated disk).
pub const DIRECTORY: &str = "/workload";

/// How often a step is a clean close and reopen instead.
const CLEAN_REOPEN_RATE: f64 = 0.02;

/// The adapter that lets the harness drive a [`Workload`] as it drives ballast's targets.
struct UserTarget<W>(W);

fn user_failure(message: String) -> Failure {
    Failure { kind: "the workload's check failed", message }
}

impl<W: Workload> Target for UserTarget<W> {
    type Handle = W::Handle;
    type BeforeOpen = ();

    const NAME: &'static str = W::NAME;
    const NOUN: &'static str = "workload";
    const LIFE_CRASH_IO_CALLS: u64 = 12;
    const RECOVERY_CRASH_IO_CALLS: u64 = 12;
    const CLOSES_ON_REOPEN: bool = true;
    const EASES_FAILING_OPENS: bool = true;
    const RETRIES_REPAIR_ON_DAMAGE: bool = false;

    fn draw(context: &mut Context) -> (Self, crate::FaultConfig) {
        let mut faults = draw_faults(&mut context.rng, 1 << 20);
        // Damage to synced data is not among a workload's faults yet (module documentation).
        (faults.misdirected_write, faults.bit_rot, faults.latent_sector) = (0.0, 0.0, 0.0);
        (Self(W::new(&mut Sim { context })), faults)
    }

    fn describe(&self) -> String {
        "workload".to_string()
    }

    fn space_to_free(&self) -> u64 {
        1 << 20
    }

    fn before_open(&self, _context: &Context) {}

    fn open(&self, context: &Context, mode: RecoveryMode) -> ballast::Result<Self::Handle> {
        self.0.open(context.vfs_handle.clone(), Arc::new(context.vfs.clock()), mode)
    }

    /// No fault drawn here damages synced data: a strict open's corruption is never the
    /// disk's doing, and fails the seed.
    fn explains_corruption(&self, _damage: &[Damage], _error: &Error) -> bool {
        false
    }

    fn check_recovered(
        &mut self,
        context: &mut Context,
        handle: &Self::Handle,
        _opened: &Opened<'_, ()>,
    ) -> Result<Checked, Failure> {
        self.0.check_recovered(&mut Sim { context }, handle).map_err(user_failure)?;
        Ok(Checked::Sound)
    }

    fn step(&mut self, context: &mut Context, handle: &mut Self::Handle) -> Result<Step, Failure> {
        // A clean close and reopen now and then, as ballast's targets draw one: the workload's
        // close path and what it owes after it are tested too.
        if context.rng.gen_bool(CLEAN_REOPEN_RATE) {
            return Ok(Step::Reopen);
        }
        match self.0.step(&mut Sim { context }, handle) {
            Ok(()) => Ok(Step::Continue),
            Err(StepError::Engine(Error::Io { .. })) if !W::is_poisoned(handle) => Ok(Step::Continue),
            Err(StepError::Engine(Error::Io { .. } | Error::Poisoned)) => Ok(Step::Poisoned),
            Err(StepError::Engine(error)) => Err(user_failure(format!("the engine refused a step: {error}"))),
            Err(StepError::Check(message)) => Err(user_failure(message)),
        }
    }

    fn sync(handle: &mut Self::Handle) -> ballast::Result<()> {
        W::sync(handle)
    }

    fn close(handle: Self::Handle) -> ballast::Result<()> {
        W::close(handle)
    }

    fn closed(&mut self) {
        self.0.closed();
    }

    fn rot_eligible(&self, _context: &Context) -> Vec<(PathBuf, std::ops::Range<u64>)> {
        Vec::new()
    }

    fn final_phase(&mut self, context: &mut Context, handle: Self::Handle) -> Result<(), Failure> {
        self.0.final_check(&mut Sim { context }, handle).map_err(user_failure)
    }
}

/// The result of one seed of a workload.
#[derive(Clone, Debug)]
pub struct WorkloadOutcome {
    pub seed: u64,
    /// What broke, if the seed failed.
    pub failure: Option<String>,
    /// The seed's draw: its op count and faults.
    pub swarm: String,
    pub ops: u64,
    pub crashes: u64,
    pub faults: FaultCounts,
    pub recoveries: BTreeMap<&'static str, u64>,
    /// Equal for two runs of one seed: replay is exact.
    pub trace_hash: u64,
}

/// Runs seed `seed` of workload `W`: lives of steps cut by crashes, each followed by an open
/// and [`Workload::check_recovered`], then [`Workload::final_check`] on a perfect disk. A
/// panic in the workload or the engine fails the seed with its message.
pub fn run_workload<W: Workload>(seed: u64, options: &RunOptions) -> WorkloadOutcome {
    let (mut context, _clock) = runner::seeded_context(seed, options);
    let result = runner::catching_panics(|| harness::run::<UserTarget<W>>(&mut context));
    let swarm = match &result {
        Ok(swarm) | Err((swarm, _)) => swarm.clone(),
    };
    WorkloadOutcome {
        seed,
        failure: result.err().map(|(_, failure)| failure.message),
        swarm,
        ops: context.ops,
        crashes: context.crashes,
        faults: context.vfs.counts(),
        recoveries: context.recoveries,
        trace_hash: context.vfs.trace_hash(),
    }
}
