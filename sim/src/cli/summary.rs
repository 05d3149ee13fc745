//! What a run of many seeds adds up to, per target and overall, as text and as JSON.

use std::collections::BTreeMap;

use ballast_sim::{FaultCounts, FaultKind, SeedOutcome, Target};

use super::plan::Shard;

/// The seeds of one target that ran, folded together in seed order.
#[derive(Debug)]
pub struct Summary {
    pub target: Target,
    pub seeds: u64,
    pub failed: Vec<(u64, String)>,
    pub ops: u64,
    pub crashes: u64,
    pub faults: FaultCounts,
    pub recoveries: BTreeMap<&'static str, u64>,
    pub sim_seconds: f64,
    pub wall_seconds: f64,
    /// The seeds covered: those of the shard in `start..end`.
    pub covered: (u64, u64, Shard),
}

impl Summary {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            seeds: 0,
            failed: Vec::new(),
            ops: 0,
            crashes: 0,
            faults: FaultCounts::default(),
            recoveries: BTreeMap::new(),
            sim_seconds: 0.0,
            wall_seconds: 0.0,
            covered: (0, 0, Shard::WHOLE),
        }
    }

    pub fn add(&mut self, outcome: SeedOutcome) {
        self.seeds += 1;
        self.ops += outcome.ops;
        self.crashes += outcome.crashes;
        self.faults.merge(&outcome.faults);
        for (path, count) in outcome.recoveries {
            *self.recoveries.entry(path).or_default() += count;
        }
        self.sim_seconds += outcome.sim_nanos as f64 / 1e9;
        if let Some(failure) = outcome.failure {
            self.failed.push((outcome.seed, failure));
        }
    }

    pub fn to_line(&self) -> String {
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

    pub fn to_json(&self) -> serde_json::Value {
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
            "covered": { "start": self.covered.0, "end": self.covered.1, "shard": self.covered.2.to_string() },
        })
    }

    /// The seeds it ran, and how the next run resumes after them (`range_end`: the end of the
    /// range it was given, if any).
    pub fn covered_line(&self, range_end: Option<u64>) -> String {
        let (start, end, shard) = self.covered;
        let shard = if shard == Shard::WHOLE { String::new() } else { format!(" --shard {shard}") };
        let covered = format!("covered target={} seeds {start}..{end}{shard}", self.target);
        match range_end {
            Some(range_end) if end >= range_end => format!("{covered}; the whole range"),
            Some(range_end) => format!("{covered}; resume with --seeds {end}..{range_end}{shard}"),
            None => format!("{covered}; resume with --seeds {end}..{shard}"),
        }
    }
}

/// Where an interrupted run stopped: every seed before `first_not_run` of `target` ran.
#[derive(Clone, Copy, Debug)]
pub struct Interrupted {
    pub target: Target,
    pub first_not_run: u64,
}

/// A whole `run`: one summary per target that ran, and where it stopped if interrupted.
#[derive(Debug)]
pub struct Report {
    pub summaries: Vec<Summary>,
    pub interrupted: Option<Interrupted>,
}

impl Report {
    fn seeds(&self) -> u64 {
        self.summaries.iter().map(|summary| summary.seeds).sum()
    }

    fn failed(&self) -> usize {
        self.summaries.iter().map(|summary| summary.failed.len()).sum()
    }

    pub fn passed(&self) -> bool {
        self.failed() == 0
    }

    /// The one-line verdict a plain run ends with.
    pub fn verdict(&self) -> String {
        let targets = self.summaries.len();
        let plural = if targets == 1 { "" } else { "s" };
        let failed: Vec<String> = self
            .summaries
            .iter()
            .flat_map(|summary| summary.failed.iter().map(move |(seed, _)| format!("{} {seed}", summary.target)))
            .collect();
        let verdict = if failed.is_empty() {
            format!("PASS {targets} target{plural}, {} seeds", self.seeds())
        } else {
            let shown = failed.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
            let more = if failed.len() > 10 { format!(", and {} more", failed.len() - 10) } else { String::new() };
            format!("FAIL {} of {} seeds in {targets} target{plural}: {shown}{more}", failed.len(), self.seeds())
        };
        match self.interrupted {
            Some(Interrupted { target, first_not_run }) => {
                format!("INTERRUPTED before {target} seed {first_not_run}; {verdict} that ran")
            }
            None => verdict,
        }
    }

    /// One JSON object, of the same shape whatever `--target` said.
    pub fn to_json(&self) -> serde_json::Value {
        let interrupted = self.interrupted.map(|Interrupted { target, first_not_run }| {
            serde_json::json!({ "target": target.name(), "first_seed_not_run": first_not_run })
        });
        let wall_seconds: f64 = self.summaries.iter().map(|summary| summary.wall_seconds).sum();
        serde_json::json!({
            "verdict": if self.passed() { "PASS" } else { "FAIL" },
            "failed": self.failed(),
            "interrupted": interrupted,
            "targets": self.summaries.iter().map(Summary::to_json).collect::<Vec<_>>(),
            "seeds": self.seeds(),
            "wall_seconds": wall_seconds,
        })
    }
}

pub fn format_faults(faults: &FaultCounts) -> String {
    FaultKind::ALL.iter().map(|kind| format!("{kind}={}", faults.get(*kind))).collect::<Vec<_>>().join(" ")
}

pub fn format_map(map: &BTreeMap<&'static str, u64>) -> String {
    if map.is_empty() {
        return "none".to_string();
    }
    map.iter().map(|(key, count)| format!("{key}={count}")).collect::<Vec<_>>().join(" ")
}
