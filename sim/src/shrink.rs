//! Cutting a failing seed down to the shortest prefix of its run that still fails.

use crate::runner::{run_seed, Canary, RunOptions, SeedOutcome, Target};

/// What shrinking a failing seed found.
#[derive(Debug)]
pub struct Shrunk {
    /// The full run, which failed.
    pub full: SeedOutcome,
    /// The shortest `--ops` that fails the same check, and that run; `None` when only the whole
    /// run does.
    pub shortest: Option<(u64, SeedOutcome)>,
}

/// Shrinks seed `seed` of `target`; `None` if the seed passes.
///
/// A run with `--ops K` is a prefix of the full run, so the first K that fails is the shortest.
/// It must fail the same check ([`SeedOutcome::failure_kind`]): a prefix that fails another one
/// shows another bug, not a smaller case of this one.
pub fn shrink(target: Target, seed: u64, canary: Option<Canary>) -> Option<Shrunk> {
    let full = run_seed(target, seed, &RunOptions { ops: None, canary, trace: false });
    let kind = full.failure_kind?;
    // Bounded by the full run's op count.
    let shortest = (1..=full.ops)
        .map(|ops| (ops, run_seed(target, seed, &RunOptions { ops: Some(ops), canary, trace: false })))
        .find(|(_, outcome)| outcome.failure_kind == Some(kind));
    Some(Shrunk { full, shortest })
}
