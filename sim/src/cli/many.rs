//! Running a plan of seeds on worker threads: results in seed order, a panic fails only its
//! seed, and Ctrl-C, the end of `--for`'s time or (with `--until-fail`) a failure stops at the
//! next seed with a summary of those that ran.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ballast_sim::{run_seed, RunOptions, SeedOutcome, Target};

use super::out::{self, out};
use super::plan::Plan;
use super::summary::{Interrupted, Summary};

/// Set by the first Ctrl-C: workers take no new seed after it.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Makes Ctrl-C stop a run at the next seed; a second Ctrl-C ends the process at once.
pub fn handle_interrupts() {
    let installed = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        out::note(format_args!("interrupted: finishing the seeds under way (Ctrl-C again to stop now)"));
    });
    if let Err(error) = installed {
        out::note(format_args!("Ctrl-C will end the run without a summary: {error}"));
    }
}

/// What to print while seeds run.
#[derive(Clone, Copy, Debug)]
pub struct Printing {
    /// Print nothing but the final JSON.
    pub json: bool,
    /// Print every seed's swarm and result.
    pub verbose: bool,
}

/// Runs one seed, and a second time when checking determinism.
pub fn run_one(target: Target, seed: u64, options: &RunOptions, check_determinism: bool) -> SeedOutcome {
    let mut outcome = run_seed(target, seed, options);
    if check_determinism && outcome.failure.is_none() {
        let again = run_seed(target, seed, options);
        if again.trace_hash != outcome.trace_hash {
            outcome.failure =
                Some(format!("nondeterminism: trace hash {:016x} then {:016x}", outcome.trace_hash, again.trace_hash));
            outcome.failure_kind = Some("nondeterminism");
        }
    }
    outcome
}

/// The replay command for a failed seed, runnable as printed.
pub fn replay_line(target: Target, seed: u64, options: &RunOptions) -> String {
    let ops = options.ops.map(|ops| format!(" --ops {ops}")).unwrap_or_default();
    let canary = options.canary.map(|canary| format!(" --canary {}", canary.name())).unwrap_or_default();
    format!("replay: {} replay --target {target} --seed {seed}{ops}{canary}", super::program())
}

/// Outcomes that finished out of order wait here until every seed before them is in.
struct InOrder {
    /// How many of the plan's seeds are folded in: the next is the plan's seed `next`.
    next: u64,
    /// By their place in the plan.
    waiting: BTreeMap<u64, SeedOutcome>,
    summary: Summary,
    /// `--until-fail` met its failure: the seeds after it are not counted.
    stopped: bool,
}

impl InOrder {
    /// Takes the outcome of the plan's `n`-th seed, then prints and folds in every outcome
    /// that is now next in line (none after a failure that stops the run).
    fn take(&mut self, n: u64, outcome: SeedOutcome, options: &RunOptions, printing: Printing, until_fail: bool) {
        self.waiting.insert(n, outcome);
        while !self.stopped {
            let Some(outcome) = self.waiting.remove(&self.next) else { break };
            if !printing.json {
                print_outcome(&outcome, options, printing.verbose);
            }
            self.stopped = until_fail && outcome.failure.is_some();
            self.summary.add(outcome);
            self.next += 1;
        }
    }
}

fn print_outcome(outcome: &SeedOutcome, options: &RunOptions, verbose: bool) {
    let (target, seed) = (outcome.target, outcome.seed);
    if verbose {
        out!("seed {seed}: {}", outcome.swarm);
    }
    if let Some(failure) = &outcome.failure {
        out!("FAIL target={target} seed={seed}: {failure}");
        out!("{}", replay_line(target, seed, options));
    } else if verbose {
        out!("PASS target={target} seed={seed} ops={} crashes={}", outcome.ops, outcome.crashes);
    }
}

/// Runs the seeds of `plan` for `target` on `jobs` threads. Returns the summary of the seeds
/// that ran, in plan order with none missing (all of them, unless Ctrl-C came first: then also
/// where it stopped).
pub fn run_many(
    target: Target,
    plan: &Plan,
    jobs: usize,
    options: &RunOptions,
    printing: Printing,
    check_determinism: bool,
) -> (Summary, Option<Interrupted>) {
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let in_order =
        Mutex::new(InOrder { next: 0, waiting: BTreeMap::new(), summary: Summary::new(target), stopped: false });
    let lock = || in_order.lock().unwrap_or_else(|poison| poison.into_inner());
    let workers_done = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                while !INTERRUPTED.load(Ordering::SeqCst) && !plan.out_of_time() && !lock().stopped {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    let Some(seed) = plan.seed(n) else { break };
                    let outcome = run_one(target, seed, options, check_determinism);
                    lock().take(n, outcome, options, printing, plan.until_fail);
                }
                workers_done.fetch_add(1, Ordering::SeqCst);
            });
        }
        if !printing.json {
            report_progress(target, plan.len(), started, || {
                (lock().next, workers_done.load(Ordering::SeqCst) == jobs as u64)
            });
        }
    });
    let in_order = in_order.into_inner().unwrap_or_else(|poison| poison.into_inner());
    let mut summary = in_order.summary;
    summary.wall_seconds = started.elapsed().as_secs_f64();
    summary.covered = (plan.seeds.start, plan.covered_end(in_order.next), plan.shard);
    let ended = plan.seed(in_order.next).is_none();
    let interrupted = (INTERRUPTED.load(Ordering::SeqCst) && !ended)
        .then(|| Interrupted { target, first_not_run: plan.covered_end(in_order.next) });
    (summary, interrupted)
}

/// Prints progress on stderr every two seconds, once a run has taken three, until every worker
/// has stopped. `state` returns the seeds done and whether the workers have all stopped.
fn report_progress(target: Target, total: Option<u64>, started: Instant, state: impl Fn() -> (u64, bool)) {
    let total = total.map_or_else(|| "?".to_string(), |total| total.to_string());
    let mut last_report = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let (done, stopped) = state();
        if stopped {
            return;
        }
        if started.elapsed() > Duration::from_secs(3) && last_report.elapsed() > Duration::from_secs(2) {
            last_report = Instant::now();
            let seconds = started.elapsed().as_secs_f64();
            out::note(format_args!("progress target={target}: {done}/{total} seeds, {seconds:.0}s"));
        }
    }
}
