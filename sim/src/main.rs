//! `ballast-sim`: run seeds, replay one, check determinism.
#![allow(
    clippy::disallowed_methods,
    reason = "the CLI times runs in wall seconds and paces progress; runs themselves read only SimClock"
)]

mod cli;

use std::process::ExitCode;

use ballast_sim::{run_seed, Canary, RunOptions, Target};
use clap::builder::RangedU64ValueParser;
use clap::{Parser, Subcommand, ValueEnum};

use cli::many::{self, Printing};
use cli::out::out;
use cli::plan::{self, Plan, Seeds, Shard};
use cli::summary::{format_faults, format_map, Report};

#[derive(Parser, Debug)]
#[command(name = "ballast-sim", version, about = "Deterministic fault-injecting simulator for ballast")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a range of seeds and print a summary.
    Run {
        /// `wal`, `commitlog`, `logstor`, or `all` for every target in turn.
        #[arg(long, default_value = "all", value_parser = parse_targets)]
        target: Targets,
        /// Seeds as `START..END` (end exclusive), a single number, or `START..` with `--for`.
        #[arg(long, default_value = "0..1000", value_parser = Seeds::parse)]
        seeds: Seeds,
        /// Only the seeds `s` of the range with `s mod N = K`, as `K/N`: worker K of a fleet
        /// of N (docs/fleet.md); `merge` adds the workers' `--json` summaries up.
        #[arg(long, value_parser = Shard::parse, default_value = "0/1")]
        shard: Shard,
        /// Begin no seed after this long (`90s`, `10m`, `2h`), then print the range covered.
        #[arg(long = "for", value_parser = plan::parse_duration)]
        run_for: Option<std::time::Duration>,
        /// Stop at the first failing seed (in seed order; no later target runs), then print the
        /// range covered.
        #[arg(long)]
        until_fail: bool,
        /// Worker threads, at least 1. Defaults to the number of cores.
        #[arg(long, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
        jobs: Option<usize>,
        /// Operations per seed, at least 1. Drawn per seed by default.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        ops: Option<u64>,
        /// Print only the summary, as one JSON object (the same shape for one target or all).
        #[arg(long)]
        json: bool,
        /// Print each seed's swarm configuration and result, in seed order.
        #[arg(long)]
        verbose: bool,
        /// Run each seed twice and fail it if the two trace hashes differ.
        #[arg(long)]
        check_determinism: bool,
        /// Break something on purpose (the disk, or a check); the run must then fail.
        #[arg(long)]
        canary: Option<CanaryArg>,
    },
    /// Find the shortest prefix of a failing seed's run (`--ops K`) that still fails.
    Shrink {
        /// The target the seed failed on: `wal`, `commitlog` or `logstor`.
        #[arg(long, value_parser = parse_target)]
        target: Target,
        /// The failing seed.
        #[arg(long)]
        seed: u64,
        /// The canary the seed failed with, if any.
        #[arg(long)]
        canary: Option<CanaryArg>,
    },
    /// Add up the `--json` summaries of the shards or consecutive runs of one sweep; fails if
    /// two cover the same seed or the seeds they cover leave a gap.
    Merge {
        /// The summaries, as `run --json` printed them.
        #[arg(required = true)]
        summaries: Vec<std::path::PathBuf>,
    },
    /// Rerun one seed exactly.
    Replay {
        /// The target to run: `wal`, `commitlog` or `logstor`.
        #[arg(long, value_parser = parse_target)]
        target: Target,
        /// The seed to run.
        #[arg(long)]
        seed: u64,
        /// Operations to run, at least 1, as a failure's replay line gives them. Drawn by the seed
        /// by default.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        ops: Option<u64>,
        /// Print every operation, I/O call and injected fault.
        #[arg(long)]
        trace: bool,
        /// Break the disk on purpose, as the failure's replay line says.
        #[arg(long)]
        canary: Option<CanaryArg>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CanaryArg {
    /// `sync_data` returns Ok and keeps the data pending, as a disk that lies would.
    LyingFsync,
    /// Every odd seed panics, as a bug in a check would: each fails alone and the run goes on.
    Panic,
}

impl From<CanaryArg> for Canary {
    fn from(canary: CanaryArg) -> Self {
        match canary {
            CanaryArg::LyingFsync => Canary::LyingFsync,
            CanaryArg::Panic => Canary::Panic,
        }
    }
}

/// The targets `--target` names; a newtype so clap takes it as one value.
#[derive(Clone, Debug)]
struct Targets(Vec<Target>);

fn parse_targets(text: &str) -> Result<Targets, String> {
    Target::parse(text)
        .map(Targets)
        .ok_or_else(|| format!("unknown target {text:?}; expected one of: all, wal, commitlog, logstor"))
}

fn parse_target(text: &str) -> Result<Target, String> {
    match parse_targets(text)?.0.as_slice() {
        [target] => Ok(*target),
        _ => Err("replay takes one target, not `all`".to_string()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            target,
            seeds,
            shard,
            run_for,
            until_fail,
            jobs,
            ops,
            json,
            verbose,
            check_determinism,
            canary,
        } => {
            if let Err(message) = check_plan(&target, seeds, run_for) {
                eprintln!("error: {message}");
                return ExitCode::from(2);
            }
            let options = RunOptions { ops, canary: canary.map(Canary::from), trace: false };
            let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
            many::handle_interrupts();
            let printing = Printing { json, verbose };
            let plan = Plan::new(seeds, shard, run_for, until_fail);
            let report = run(&target.0, &plan, jobs, &options, printing, check_determinism);
            if json {
                out!("{}", report.to_json());
            } else {
                for summary in &report.summaries {
                    out!("{}", summary.to_line());
                    if run_for.is_some() || until_fail || shard != Shard::WHOLE {
                        out!("{}", summary.covered_line(seeds.end));
                    }
                }
                out!("{}", report.verdict());
            }
            match (report.interrupted, report.passed()) {
                (Some(_), _) => ExitCode::from(130),
                (None, true) => ExitCode::SUCCESS,
                (None, false) => ExitCode::from(1),
            }
        }
        Command::Shrink { target, seed, canary } => shrink(target, seed, canary.map(Canary::from)),
        Command::Merge { summaries } => cli::merge::merge(&summaries),
        Command::Replay { target, seed, ops, trace, canary } => {
            let options = RunOptions { ops, canary: canary.map(Canary::from), trace };
            let outcome = run_seed(target, seed, &options);
            out!("swarm: {}", outcome.swarm);
            out!(
                "ops={} crashes={} faults: {} recoveries: {}",
                outcome.ops,
                outcome.crashes,
                format_faults(&outcome.faults),
                format_map(&outcome.recoveries)
            );
            out!("trace-hash: {:016x}", outcome.trace_hash);
            match &outcome.failure {
                Some(failure) => {
                    out!("FAIL target={target} seed={seed}: {failure}");
                    ExitCode::from(1)
                }
                None => {
                    out!("PASS target={target} seed={seed}");
                    ExitCode::SUCCESS
                }
            }
        }
    }
}

/// `--for` times one target's run; an open range needs it.
fn check_plan(targets: &Targets, seeds: Seeds, run_for: Option<std::time::Duration>) -> Result<(), String> {
    if run_for.is_some() && targets.0.len() != 1 {
        return Err("--for runs one target: give --target".to_string());
    }
    if seeds.end.is_none() && run_for.is_none() {
        return Err(format!("--seeds {}.. has no end: give one, or --for", seeds.start));
    }
    Ok(())
}

/// Runs every target in turn over the plan's seeds, until Ctrl-C.
fn run(
    targets: &[Target],
    plan: &Plan,
    jobs: usize,
    options: &RunOptions,
    printing: Printing,
    check_determinism: bool,
) -> Report {
    let mut report = Report { summaries: Vec::new(), interrupted: None };
    for &target in targets {
        let (summary, interrupted) = many::run_many(target, plan, jobs, options, printing, check_determinism);
        let stop = plan.until_fail && !summary.failed.is_empty();
        report.summaries.push(summary);
        if stop {
            break;
        }
        if interrupted.is_some() {
            report.interrupted = interrupted;
            break;
        }
    }
    report
}

/// Finds the shortest prefix of a failing seed's run that fails the same check.
fn shrink(target: Target, seed: u64, canary: Option<Canary>) -> ExitCode {
    let Some(shrunk) = ballast_sim::shrink(target, seed, canary) else {
        out!("PASS target={target} seed={seed}: nothing to shrink");
        return ExitCode::SUCCESS;
    };
    let options = |ops| RunOptions { ops, canary, trace: false };
    match shrunk.shortest {
        Some((ops, outcome)) => {
            out!("shrunk: {} ops -> {ops} ops", shrunk.full.ops);
            out!("FAIL target={target} seed={seed}: {}", outcome.failure.expect("found failing"));
            out!("{}", many::replay_line(target, seed, &options(Some(ops))));
        }
        None => {
            out!("no shorter prefix fails the same check; the failure needs the whole run");
            out!("FAIL target={target} seed={seed}: {}", shrunk.full.failure.expect("the full run failed"));
            out!("{}", many::replay_line(target, seed, &options(None)));
        }
    }
    ExitCode::from(1)
}
