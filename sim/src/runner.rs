//! One seeded run of one target: draw the swarm, run lives until the op budget is spent,
//! crash between lives, then a fault-free final phase. Everything a run does is a function of
//! `(target, seed, options)`. The runner builds the [`Context`] and dispatches to the target;
//! what the targets share with it lives in [`crate::harness`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::faults::{FaultConfig, FaultCounts};
// Re-exported: `RunOptions` names it, and `runner::Canary` was its path.
pub use crate::harness::Canary;
use crate::harness::{self, Context, Failure};
use crate::trace::Trace;
use crate::{targets, SimClock, SimVfs};

/// A durable structure the simulator drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Wal,
    Commitlog,
    Logstor,
    Tsdb,
}

impl Target {
    pub const ALL: [Target; 4] = [Target::Wal, Target::Commitlog, Target::Logstor, Target::Tsdb];

    pub fn name(self) -> &'static str {
        match self {
            Self::Wal => "wal",
            Self::Commitlog => "commitlog",
            Self::Logstor => "logstor",
            Self::Tsdb => "tsdb",
        }
    }

    pub fn parse(name: &str) -> Option<Vec<Target>> {
        match name {
            "all" => Some(Self::ALL.to_vec()),
            "wal" => Some(vec![Self::Wal]),
            "commitlog" => Some(vec![Self::Commitlog]),
            "logstor" => Some(vec![Self::Logstor]),
            "tsdb" => Some(vec![Self::Tsdb]),
            _ => None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a run may be told from the command line.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Operations per seed; drawn per seed when `None`.
    pub ops: Option<u64>,
    pub canary: Option<Canary>,
    /// Print every event as it happens.
    pub trace: bool,
}

/// The result of one seed.
#[derive(Clone, Debug)]
pub struct SeedOutcome {
    pub target: Target,
    pub seed: u64,
    /// The violated invariant, if the seed failed.
    pub failure: Option<String>,
    /// Which check failed (see [`Failure::kind`]).
    pub failure_kind: Option<&'static str>,
    pub swarm: String,
    pub ops: u64,
    pub crashes: u64,
    pub faults: FaultCounts,
    pub recoveries: BTreeMap<&'static str, u64>,
    pub sim_nanos: u128,
    pub trace_hash: u64,
}

/// The context a seed runs in: its RNG, its disk (with an RNG of its own) and its op budget.
pub(crate) fn seeded_context(seed: u64, options: &RunOptions) -> (Context, SimClock) {
    let trace = if options.trace { Trace::printing() } else { Trace::off() };
    let clock = SimClock::new();
    // The disk's RNG is derived from the seed but separate from the workload's.
    let vfs = SimVfs::new(seed ^ 0x9e37_79b9_7f4a_7c15, FaultConfig::none(), clock.clone(), trace);
    let mut context = Context {
        seed,
        rng: ChaCha8Rng::seed_from_u64(seed),
        vfs: vfs.clone(),
        vfs_handle: Arc::new(vfs.clone()),
        ops_budget: 0,
        ops: 0,
        crashes: 0,
        recoveries: BTreeMap::new(),
        canary: options.canary,
        carried_damage: Vec::new(),
    };
    // Drawn even when --ops overrides it, so that a shorter run is a prefix of the full one:
    // that is what lets `shrink` cut a failing seed down.
    let drawn_ops = context.rng.gen_range(50..400);
    context.ops_budget = options.ops.unwrap_or(drawn_ops);
    (context, clock)
}

/// What a seed's run returned, a panic in the engine or in a check made a failure of it, with
/// its message: a run of many seeds goes on and reports it (the default hook has printed
/// where it was).
pub(crate) fn catching_panics(
    run: impl FnOnce() -> Result<String, (String, Failure)>,
) -> Result<String, (String, Failure)> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string());
        Err((String::new(), Failure { kind: "panicked: {message}", message: format!("panicked: {message}") }))
    })
}

/// Runs one seed of one target.
pub fn run_seed(target: Target, seed: u64, options: &RunOptions) -> SeedOutcome {
    let (mut context, clock) = seeded_context(seed, options);
    let vfs = context.vfs.clone();
    let result = catching_panics(|| match target {
        _ if options.canary == Some(Canary::Panic) && seed % 2 == 1 => panic!("the panic canary, seed {seed}"),
        Target::Wal => harness::run::<targets::wal::Workload>(&mut context),
        Target::Commitlog => harness::run::<targets::commitlog::Workload>(&mut context),
        Target::Logstor => harness::run::<targets::logstor::Workload>(&mut context),
        Target::Tsdb => harness::run::<targets::tsdb::Workload>(&mut context),
    });
    let swarm = match &result {
        Ok(swarm) | Err((swarm, _)) => swarm.clone(),
    };
    SeedOutcome {
        target,
        seed,
        failure_kind: result.as_ref().err().map(|(_, failure)| failure.kind),
        failure: result.err().map(|(_, failure)| failure.message),
        swarm,
        ops: context.ops,
        crashes: context.crashes,
        faults: vfs.counts(),
        recoveries: context.recoveries,
        sim_nanos: clock.now().as_nanos(),
        trace_hash: vfs.trace_hash(),
    }
}
