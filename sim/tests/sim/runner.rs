//! The runner: determinism, the canary, and a snapshot of one run's summary.

use ballast_sim::{run_seed, Canary, FaultKind, RunOptions, SeedOutcome, Target};

fn summary(outcome: &SeedOutcome) -> String {
    let faults: Vec<String> = FaultKind::ALL
        .iter()
        .filter(|kind| outcome.faults.get(**kind) > 0)
        .map(|kind| format!("{kind}={}", outcome.faults.get(*kind)))
        .collect();
    let recoveries: Vec<String> = outcome.recoveries.iter().map(|(path, count)| format!("{path}={count}")).collect();
    format!(
        "swarm: {}\nfailure: {:?}\nops={} crashes={}\nfaults: {}\nrecoveries: {}\ntrace-hash: {:016x}\n",
        outcome.swarm,
        outcome.failure,
        outcome.ops,
        outcome.crashes,
        faults.join(" "),
        recoveries.join(" "),
        outcome.trace_hash
    )
}

#[test]
fn a_seed_replays_exactly() {
    for target in Target::ALL {
        for seed in 0..30 {
            let first = run_seed(target, seed, &RunOptions::default());
            let second = run_seed(target, seed, &RunOptions::default());
            assert_eq!(summary(&first), summary(&second), "{target} seed {seed}");
        }
    }
}

#[test]
fn different_seeds_take_different_paths() {
    let hashes: std::collections::BTreeSet<u64> =
        (0..20).map(|seed| run_seed(Target::Wal, seed, &RunOptions::default()).trace_hash).collect();
    assert_eq!(hashes.len(), 20);
}

#[test]
fn wal_seeds_pass() {
    for seed in 0..300 {
        let outcome = run_seed(Target::Wal, seed, &RunOptions::default());
        assert_eq!(outcome.failure, None, "seed {seed}: replay with `ballast-sim replay --target wal --seed {seed}`");
    }
}

#[test]
fn commitlog_seeds_pass() {
    for seed in 0..300 {
        let outcome = run_seed(Target::Commitlog, seed, &RunOptions::default());
        assert_eq!(
            outcome.failure, None,
            "seed {seed}: replay with `ballast-sim replay --target commitlog --seed {seed}`"
        );
    }
}

#[test]
fn logstor_seeds_pass() {
    for seed in 0..150 {
        let outcome = run_seed(Target::Logstor, seed, &RunOptions::default());
        assert_eq!(
            outcome.failure, None,
            "seed {seed}: replay with `ballast-sim replay --target logstor --seed {seed}`"
        );
    }
}

#[test]
fn the_lying_fsync_canary_is_caught() {
    // A disk that acknowledges fsync and keeps the data pending: the checker must report lost
    // synced data, or it cannot see what it claims to see.
    let options = RunOptions { canary: Some(Canary::LyingFsync), ..RunOptions::default() };
    for target in Target::ALL {
        // Under a lying fsync, a segment whose header never reached the disk is also reported,
        // as corruption where nothing was damaged; "lost synced data" must still appear.
        let failures: Vec<String> = (0..100).filter_map(|seed| run_seed(target, seed, &options).failure).collect();
        assert!(failures.len() >= 75, "{target}: only {} of 100 canary seeds failed", failures.len());
        assert!(failures.iter().any(|failure| failure.contains("lost synced data")), "{target}: {failures:?}");
    }
}

#[test]
fn run_summary_snapshot() {
    // A reviewed diff whenever the workload, the fault model or the engine's I/O changes.
    let outcome = run_seed(Target::Wal, 7, &RunOptions { ops: Some(150), ..RunOptions::default() });
    insta::assert_snapshot!("wal_seed_7", summary(&outcome));
}
