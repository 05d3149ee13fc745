//! `ballast-sim`: run seeds, replay one, check determinism.
#![allow(
    clippy::disallowed_methods,
    reason = "the CLI times runs in wall seconds and paces progress; runs themselves read only SimClock"
)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::ops::Range;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ballast_sim::{run_seed, Canary, FaultCounts, FaultKind, RunOptions, SeedOutcome, Target};
use clap::{Parser, Subcommand, ValueEnum};

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
        /// Seeds as `START..END` (end exclusive) or a single number.
        #[arg(long, default_value = "0..1000", value_parser = parse_seeds)]
        seeds: Range<u64>,
        /// Worker threads. Defaults to the number of cores.
        #[arg(long)]
        jobs: Option<usize>,
        /// Operations per seed. Drawn per seed by default.
        #[arg(long)]
        ops: Option<u64>,
        /// Print only the summary, as one JSON object.
        #[arg(long)]
        json: bool,
        /// Print each seed's swarm configuration and result.
        #[arg(long)]
        verbose: bool,
        /// Run each seed twice and fail it if the two trace hashes differ.
        #[arg(long)]
        check_determinism: bool,
        /// Break the disk on purpose; the run must then fail.
        #[arg(long)]
        canary: Option<CanaryArg>,
    },
    /// Find the shortest prefix of a failing seed's run (`--ops K`) that still fails.
    Shrink {
        #[arg(long, value_parser = parse_target)]
        target: Target,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        canary: Option<CanaryArg>,
    },
    /// Rerun one seed exactly.
    Replay {
        #[arg(long, value_parser = parse_target)]
        target: Target,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        ops: Option<u64>,
        /// Print every operation, I/O call and injected fault.
        #[arg(long)]
        trace: bool,
        #[arg(long)]
        canary: Option<CanaryArg>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CanaryArg {
    LyingFsync,
}

impl From<CanaryArg> for Canary {
    fn from(canary: CanaryArg) -> Self {
        match canary {
            CanaryArg::LyingFsync => Canary::LyingFsync,
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

fn parse_seeds(text: &str) -> Result<Range<u64>, String> {
    let number = |part: &str| part.trim().parse::<u64>().map_err(|error| format!("bad seed {part:?}: {error}"));
    match text.split_once("..") {
        Some((start, end)) => {
            let range = number(start)?..number(end)?;
            if range.is_empty() {
                return Err(format!("empty seed range {text}"));
            }
            Ok(range)
        }
        None => {
            let seed = number(text)?;
            Ok(seed..seed.checked_add(1).ok_or("seed too large")?)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { target, seeds, jobs, ops, json, verbose, check_determinism, canary } => {
            let options = RunOptions { ops, canary: canary.map(Canary::from), trace: false };
            let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)).max(1);
            let mut failed = false;
            let flat = target.0.len() > 1;
            let mut summaries = Vec::new();
            for target in target.0 {
                let summary = run_many(target, seeds.clone(), jobs, &options, json, verbose, check_determinism);
                failed |= !summary.failed.is_empty();
                summaries.push(summary);
            }
            if json {
                let values: Vec<_> = summaries.iter().map(Summary::to_json).collect();
                let value = if flat {
                    serde_json::json!({ "targets": values })
                } else {
                    values.into_iter().next().expect("one target")
                };
                println!("{value}");
            } else {
                for summary in &summaries {
                    println!("{}", summary.to_line());
                }
            }
            if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Shrink { target, seed, canary } => {
            let canary = canary.map(Canary::from);
            let full = run_seed(target, seed, &RunOptions { ops: None, canary, trace: false });
            let Some(failure) = full.failure else {
                println!("PASS target={target} seed={seed}: nothing to shrink");
                return ExitCode::SUCCESS;
            };
            // A run with --ops K is a prefix of the full run; the first K that fails is the
            // shortest. Bounded by the full run's op count.
            let shortest = (1..=full.ops)
                .map(|ops| (ops, run_seed(target, seed, &RunOptions { ops: Some(ops), canary, trace: false })))
                .find(|(_, outcome)| outcome.failure.is_some());
            let canary_flag = canary.map(|_| " --canary lying-fsync").unwrap_or_default();
            match shortest {
                Some((ops, outcome)) => {
                    println!("shrunk: {} ops -> {ops} ops", full.ops);
                    println!("FAIL target={target} seed={seed}: {}", outcome.failure.expect("found failing"));
                    println!("replay: ballast-sim replay --target {target} --seed {seed} --ops {ops}{canary_flag}");
                }
                None => {
                    println!("no shorter prefix fails; the failure needs the whole run");
                    println!("FAIL target={target} seed={seed}: {failure}");
                    println!("replay: ballast-sim replay --target {target} --seed {seed}{canary_flag}");
                }
            }
            ExitCode::from(1)
        }
        Command::Replay { target, seed, ops, trace, canary } => {
            let options = RunOptions { ops, canary: canary.map(Canary::from), trace };
            let outcome = run_seed(target, seed, &options);
            println!("swarm: {}", outcome.swarm);
            println!(
                "ops={} crashes={} faults: {} recoveries: {}",
                outcome.ops,
                outcome.crashes,
                format_faults(&outcome.faults),
                format_map(&outcome.recoveries)
            );
            println!("trace-hash: {:016x}", outcome.trace_hash);
            match &outcome.failure {
                Some(failure) => {
                    println!("FAIL target={target} seed={seed}: {failure}");
                    ExitCode::from(1)
                }
                None => {
                    println!("PASS target={target} seed={seed}");
                    ExitCode::SUCCESS
                }
            }
        }
    }
}

struct Summary {
    target: Target,
    seeds: u64,
    failed: Vec<(u64, String)>,
    ops: u64,
    crashes: u64,
    faults: FaultCounts,
    recoveries: BTreeMap<&'static str, u64>,
    sim_seconds: f64,
    wall_seconds: f64,
}

impl Summary {
    fn to_line(&self) -> String {
        format!(
            "summary target={} seeds={} failed={} ops={} crashes={} sim_seconds={:.1} wall_seconds={:.1}\n  faults: {}\n  recoveries: {}",
            self.target,
            self.seeds,
            self.failed.len(),
            self.ops,
            self.crashes,
            self.sim_seconds,
            self.wall_seconds,
            format_faults(&self.faults),
            format_map(&self.recoveries),
        )
    }

    fn to_json(&self) -> serde_json::Value {
        let faults: serde_json::Map<String, serde_json::Value> =
            FaultKind::ALL.iter().map(|kind| (kind.key().to_string(), self.faults.get(*kind).into())).collect();
        let recoveries: serde_json::Map<String, serde_json::Value> =
            self.recoveries.iter().map(|(path, count)| (path.to_string(), (*count).into())).collect();
        let failed: Vec<_> = self
            .failed
            .iter()
            .map(|(seed, invariant)| serde_json::json!({ "seed": seed, "invariant": invariant }))
            .collect();
        serde_json::json!({
            "target": self.target.name(),
            "seeds": self.seeds,
            "failed": failed,
            "ops": self.ops,
            "crashes": self.crashes,
            "faults": faults,
            "recoveries": recoveries,
            "sim_seconds": self.sim_seconds,
            "wall_seconds": self.wall_seconds,
        })
    }
}

fn format_faults(faults: &FaultCounts) -> String {
    FaultKind::ALL.iter().map(|kind| format!("{kind}={}", faults.get(*kind))).collect::<Vec<_>>().join(" ")
}

fn format_map(map: &BTreeMap<&'static str, u64>) -> String {
    if map.is_empty() {
        return "none".to_string();
    }
    map.iter().map(|(key, count)| format!("{key}={count}")).collect::<Vec<_>>().join(" ")
}

fn run_one(target: Target, seed: u64, options: &RunOptions, check_determinism: bool) -> SeedOutcome {
    let mut outcome = run_seed(target, seed, options);
    if check_determinism && outcome.failure.is_none() {
        let again = run_seed(target, seed, options);
        if again.trace_hash != outcome.trace_hash {
            outcome.failure =
                Some(format!("nondeterminism: trace hash {:016x} then {:016x}", outcome.trace_hash, again.trace_hash));
        }
    }
    outcome
}

fn run_many(
    target: Target,
    seeds: Range<u64>,
    jobs: usize,
    options: &RunOptions,
    json: bool,
    verbose: bool,
    check_determinism: bool,
) -> Summary {
    let started = Instant::now();
    let next = AtomicU64::new(seeds.start);
    let done = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::new());
    let total = seeds.end - seeds.start;
    let print_lock = Mutex::new(());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds.end {
                    break;
                }
                let outcome = run_one(target, seed, options, check_determinism);
                if !json {
                    let _guard = print_lock.lock().unwrap_or_else(|poison| poison.into_inner());
                    if verbose {
                        println!("seed {seed}: {}", outcome.swarm);
                    }
                    if let Some(failure) = &outcome.failure {
                        println!("FAIL target={target} seed={seed}: {failure}");
                        let ops = options.ops.map(|ops| format!(" --ops {ops}")).unwrap_or_default();
                        let canary = options.canary.map(|_| " --canary lying-fsync").unwrap_or_default();
                        println!("replay: ballast-sim replay --target {target} --seed {seed}{ops}{canary}");
                    } else if verbose {
                        println!("PASS target={target} seed={seed} ops={} crashes={}", outcome.ops, outcome.crashes);
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
                outcomes.lock().unwrap_or_else(|poison| poison.into_inner()).push(outcome);
            });
        }
        if !json {
            // Progress on stderr for runs longer than a few seconds.
            let mut last_report = Instant::now();
            while done.load(Ordering::Relaxed) < usize::try_from(total).unwrap_or(usize::MAX) {
                std::thread::sleep(Duration::from_millis(100));
                if started.elapsed() > Duration::from_secs(3) && last_report.elapsed() > Duration::from_secs(2) {
                    last_report = Instant::now();
                    let count = done.load(Ordering::Relaxed);
                    let _ = writeln!(
                        std::io::stderr(),
                        "progress target={target}: {count}/{total} seeds, {:.0}s",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        }
    });
    let mut outcomes = outcomes.into_inner().unwrap_or_else(|poison| poison.into_inner());
    outcomes.sort_by_key(|outcome| outcome.seed);
    let mut summary = Summary {
        target,
        seeds: total,
        failed: Vec::new(),
        ops: 0,
        crashes: 0,
        faults: FaultCounts::default(),
        recoveries: BTreeMap::new(),
        sim_seconds: 0.0,
        wall_seconds: 0.0,
    };
    for outcome in outcomes {
        summary.ops += outcome.ops;
        summary.crashes += outcome.crashes;
        summary.faults.merge(&outcome.faults);
        for (path, count) in outcome.recoveries {
            *summary.recoveries.entry(path).or_default() += count;
        }
        summary.sim_seconds += outcome.sim_nanos as f64 / 1e9;
        if let Some(failure) = outcome.failure {
            summary.failed.push((outcome.seed, failure));
        }
    }
    summary.wall_seconds = started.elapsed().as_secs_f64();
    summary
}
