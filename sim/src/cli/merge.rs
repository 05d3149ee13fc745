//! `ballast-sim merge`: the `--json` summaries of a fleet's shards (or of consecutive runs)
//! added up into one of the same shape, after checking that, for each target, they cover one
//! range of seeds exactly: no seed twice, none missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{json, Map, Value};

use super::out::out;
use super::plan::Shard;

/// The seeds one summary covered: those `s` of `start..end` with `s % shard.count ==
/// shard.index`.
#[derive(Clone, Copy, Debug)]
struct Covered {
    start: u64,
    end: u64,
    shard: Shard,
}

/// Residue classes of more than this many seeds are not checked (shard counts whose least
/// common multiple is that large are not a fleet anyone runs).
const CLASSES_MAX: u64 = 1_000_000;

pub fn merge(paths: &[PathBuf]) -> ExitCode {
    let mut by_target: BTreeMap<String, Vec<(Covered, Value)>> = BTreeMap::new();
    // In the order the summaries name them, as a run orders its targets.
    let mut order: Vec<String> = Vec::new();
    for path in paths {
        match read(path) {
            Ok(targets) => {
                for (name, covered, summary) in targets {
                    if !order.contains(&name) {
                        order.push(name.clone());
                    }
                    by_target.entry(name).or_default().push((covered, summary));
                }
            }
            Err(message) => {
                eprintln!("error: {}: {message}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    let mut merged = Vec::new();
    for name in &order {
        let parts = &by_target[name];
        let covered: Vec<Covered> = parts.iter().map(|(covered, _)| *covered).collect();
        match check_tiling(&covered) {
            Ok((start, end)) => merged.push(add_up(name, start, end, parts.iter().map(|(_, summary)| summary))),
            Err(message) => {
                eprintln!("error: target {name}: {message}");
                return ExitCode::from(1);
            }
        }
    }
    let failed: u64 = merged.iter().map(|summary| summary["failed"].as_array().map_or(0, Vec::len) as u64).sum();
    let seeds: u64 = merged.iter().map(|summary| summary["seeds"].as_u64().unwrap_or(0)).sum();
    let wall: f64 = merged.iter().map(|summary| summary["wall_seconds"].as_f64().unwrap_or(0.0)).sum();
    let verdict = if failed == 0 { "PASS" } else { "FAIL" };
    out!(
        "{}",
        json!({ "verdict": verdict, "failed": failed, "interrupted": null, "targets": merged, "seeds": seeds, "wall_seconds": wall })
    );
    eprintln!("{verdict}: {seeds} seeds in {} summaries, {failed} failed", paths.len());
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Each target's name, covered seeds and summary in one `run --json` output.
fn read(path: &Path) -> Result<Vec<(String, Covered, Value)>, String> {
    let text = std::fs::read_to_string(path).map_err(|error| error.to_string())?;
    let report: Value =
        serde_json::from_str(text.trim()).map_err(|error| format!("not a run --json summary: {error}"))?;
    let targets = report["targets"].as_array().ok_or("no \"targets\" list: not a run --json summary")?;
    targets
        .iter()
        .map(|summary| {
            let name = summary["target"].as_str().ok_or("a target without a name")?.to_string();
            let covered = &summary["covered"];
            let number = |key: &str| covered[key].as_u64().ok_or(format!("target {name}: no covered.{key}"));
            let shard = Shard::parse(covered["shard"].as_str().unwrap_or_default())?;
            Ok((name.clone(), Covered { start: number("start")?, end: number("end")?, shard }, summary.clone()))
        })
        .collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The first seed `s` in `from..to` with `s % classes == class`.
fn first_in(class: u64, classes: u64, from: u64, to: u64) -> Option<u64> {
    let seed = from.checked_add((class + classes - from % classes) % classes)?;
    (seed < to).then_some(seed)
}

/// Checks that `parts` cover every seed of one range once; returns the range.
fn check_tiling(parts: &[Covered]) -> Result<(u64, u64), String> {
    let start = parts.iter().map(|part| part.start).min().ok_or("no summaries")?;
    let end = parts.iter().map(|part| part.end).max().unwrap_or(start);
    let mut classes = 1u64;
    for part in parts {
        classes = (classes / gcd(classes, part.shard.count))
            .checked_mul(part.shard.count)
            .filter(|&classes| classes <= CLASSES_MAX)
            .ok_or("the shard counts' least common multiple is too large to check")?;
    }
    for class in 0..classes {
        let mut mine: Vec<&Covered> =
            parts.iter().filter(|part| class % part.shard.count == part.shard.index && part.start < part.end).collect();
        mine.sort_by_key(|part| part.start);
        let mut reach = start;
        for part in mine {
            if let Some(seed) = first_in(class, classes, reach, part.start) {
                return Err(format!("seed {seed} is in no summary"));
            }
            if let Some(seed) = first_in(class, classes, part.start, part.end.min(reach)) {
                return Err(format!("seed {seed} is in two summaries (shard {})", part.shard));
            }
            reach = reach.max(part.end);
        }
        if let Some(seed) = first_in(class, classes, reach, end) {
            return Err(format!("seed {seed} is in no summary"));
        }
    }
    Ok((start, end))
}

/// One target's summaries added up, covering `start..end` whole.
fn add_up<'a>(name: &str, start: u64, end: u64, summaries: impl Iterator<Item = &'a Value>) -> Value {
    let (mut seeds, mut ops, mut crashes, mut sim_seconds, mut wall_seconds) = (0u64, 0u64, 0u64, 0.0, 0.0);
    let mut failed: Vec<Value> = Vec::new();
    let (mut faults, mut recoveries): (BTreeMap<String, u64>, BTreeMap<String, u64>) = Default::default();
    for summary in summaries {
        seeds += summary["seeds"].as_u64().unwrap_or(0);
        ops += summary["ops"].as_u64().unwrap_or(0);
        crashes += summary["crashes"].as_u64().unwrap_or(0);
        sim_seconds += summary["sim_seconds"].as_f64().unwrap_or(0.0);
        wall_seconds += summary["wall_seconds"].as_f64().unwrap_or(0.0);
        failed.extend(summary["failed"].as_array().into_iter().flatten().cloned());
        for (counts, key) in [(&mut faults, "faults"), (&mut recoveries, "recoveries")] {
            for (kind, count) in summary[key].as_object().into_iter().flatten() {
                *counts.entry(kind.clone()).or_default() += count.as_u64().unwrap_or(0);
            }
        }
    }
    failed.sort_by_key(|failure| failure["seed"].as_u64());
    let counts = |counts: BTreeMap<String, u64>| -> Map<String, Value> {
        counts.into_iter().map(|(kind, count)| (kind, count.into())).collect()
    };
    json!({
        "target": name,
        "seeds": seeds,
        "failed": failed,
        "ops": ops,
        "crashes": crashes,
        "faults": counts(faults),
        "recoveries": counts(recoveries),
        "sim_seconds": sim_seconds,
        "wall_seconds": wall_seconds,
        "covered": { "start": start, "end": end, "shard": Shard::WHOLE.to_string() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(start: u64, end: u64, index: u64, count: u64) -> Covered {
        Covered { start, end, shard: Shard { index, count } }
    }

    #[test]
    fn shards_and_consecutive_runs_tile_or_are_refused_naming_a_seed() {
        assert_eq!(check_tiling(&[part(0, 100, 0, 3), part(0, 100, 1, 3), part(0, 100, 2, 3)]), Ok((0, 100)));
        assert_eq!(check_tiling(&[part(0, 40, 0, 1), part(40, 100, 0, 1)]), Ok((0, 100)));
        // A run of shard 1/2 that stopped early, resumed from where it stopped.
        assert_eq!(check_tiling(&[part(0, 10, 0, 2), part(0, 5, 1, 2), part(5, 10, 1, 2)]), Ok((0, 10)));
        assert_eq!(check_tiling(&[part(0, 100, 0, 3), part(0, 100, 2, 3)]), Err("seed 1 is in no summary".into()));
        assert_eq!(check_tiling(&[part(0, 40, 0, 1), part(50, 100, 0, 1)]), Err("seed 40 is in no summary".into()));
        let twice = check_tiling(&[part(0, 60, 0, 1), part(50, 100, 0, 2)]);
        assert_eq!(twice, Err("seed 50 is in two summaries (shard 0/2)".into()));
    }
}
