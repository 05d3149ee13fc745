//! Measuring: alternating runs, medians, tables and JSON, and the disk's limits.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One engine's closure for one case: given a fresh directory, returns the seconds it took.
pub type Run<'a> = Box<dyn FnMut(&Path) -> std::io::Result<f64> + 'a>;

#[derive(Debug, Clone)]
pub struct Row {
    pub suite: &'static str,
    pub case: String,
    pub engine: &'static str,
    /// What is measured and how it reads ("records/s", "ms", "MB").
    pub unit: &'static str,
    pub samples: Vec<f64>,
    /// True when larger is better.
    pub higher_is_better: bool,
    /// The physical limit in the same unit, when there is one.
    pub limit: Option<f64>,
}

impl Row {
    /// A row of figures measured outside [`Bench::measure`].
    pub fn new(
        suite: &'static str,
        case: String,
        engine: &'static str,
        unit: &'static str,
        samples: Vec<f64>,
        higher_is_better: bool,
    ) -> Self {
        Self { suite, case, engine, unit, samples, higher_is_better, limit: None }
    }

    pub fn median(&self) -> f64 {
        let mut sorted = self.samples.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    fn min(&self) -> f64 {
        self.samples.iter().copied().fold(f64::INFINITY, f64::min)
    }

    fn max(&self) -> f64 {
        self.samples.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }
}

pub struct Bench {
    pub base: PathBuf,
    pub runs: usize,
    pub scale_down: u64,
    json: bool,
    /// Peers to run (by substring of their name); empty runs all. ballast always runs.
    pub engines: Vec<String>,
    pub rows: Vec<Row>,
}

/// A case to measure: every engine's closure, and how to turn seconds into the reported unit.
pub struct Case<'a> {
    pub suite: &'static str,
    pub name: String,
    pub unit: &'static str,
    pub higher_is_better: bool,
    /// Converts the seconds one run took into the reported figure.
    pub figure: Box<dyn Fn(f64) -> f64 + 'a>,
    pub limit: Option<f64>,
    pub engines: Vec<(&'static str, Run<'a>)>,
}

impl Bench {
    pub fn new(base: PathBuf, runs: usize, scale_down: u64, json: bool, engines: Vec<String>) -> Self {
        Self { base, runs, scale_down, json, engines, rows: Vec::new() }
    }

    /// Whether engine `name` is selected by `--engines`.
    pub fn selected(&self, name: &str) -> bool {
        name.starts_with("ballast") || self.engines.is_empty() || self.engines.iter().any(|want| name.contains(want))
    }

    /// Scales a workload size down for quick looks.
    pub fn n(&self, full: u64) -> u64 {
        (full / self.scale_down).max(1)
    }

    /// Runs every engine of `case` in turns, `runs` times, each in a fresh temp dir.
    pub fn measure(&mut self, mut case: Case<'_>) -> std::io::Result<()> {
        case.engines.retain(|(name, _)| self.selected(name));
        let mut samples = vec![Vec::new(); case.engines.len()];
        for _ in 0..self.runs {
            for (index, (_, run)) in case.engines.iter_mut().enumerate() {
                let directory = tempfile::tempdir_in(&self.base)?;
                let seconds = run(directory.path())?;
                samples[index].push((case.figure)(seconds));
            }
        }
        for ((engine, _), samples) in case.engines.iter().zip(samples) {
            let row = Row {
                suite: case.suite,
                case: case.name.clone(),
                engine,
                unit: case.unit,
                samples,
                higher_is_better: case.higher_is_better,
                limit: case.limit,
            };
            if !self.json {
                eprintln!("  measured {} / {} / {}: {:.1} {}", row.suite, row.case, row.engine, row.median(), row.unit);
            }
            self.rows.push(row);
        }
        Ok(())
    }

    pub fn finish(&self, limits: &Limits) {
        if self.json {
            let rows: Vec<_> = self
                .rows
                .iter()
                .map(|row| {
                    serde_json::json!({
                        "suite": row.suite, "case": row.case, "engine": row.engine, "unit": row.unit,
                        "median": row.median(), "min": row.min(), "max": row.max(), "samples": row.samples,
                        "ballast_ratio": self.ratio(row), "fraction_of_limit": row.limit.map(|limit| row.median() / limit),
                    })
                })
                .collect();
            let limits = serde_json::json!({
                "sequential_write_mb_per_s": limits.bandwidth / 1e6,
                "fsync_latency_us": limits.fsync_seconds * 1e6,
            });
            println!("{}", serde_json::json!({ "limits": limits, "rows": rows }));
            return;
        }
        println!(
            "limits: sequential write with fdatasync {:.0} MB/s; 4 KiB write + fdatasync median {:.0} us",
            limits.bandwidth / 1e6,
            limits.fsync_seconds * 1e6
        );
        let mut suite = "";
        for row in &self.rows {
            if row.suite != suite {
                suite = row.suite;
                println!("\n## {suite}\n");
                println!("| case | engine | median | min | max | unit | ballast / this | of limit |");
                println!("|---|---|---:|---:|---:|---|---:|---:|");
            }
            let ratio = self.ratio(row).map_or("".into(), |ratio| format!("{ratio:.2}x"));
            let limit = row.limit.map_or("".into(), |limit| format!("{:.0}%", 100.0 * row.median() / limit));
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                row.case,
                row.engine,
                human(row.median()),
                human(row.min()),
                human(row.max()),
                row.unit,
                ratio,
                limit
            );
        }
    }

    /// How ballast compares with this row's engine on the same case (>1: ballast is better).
    fn ratio(&self, row: &Row) -> Option<f64> {
        let ours = self
            .rows
            .iter()
            .find(|other| other.case == row.case && other.suite == row.suite && other.engine.starts_with("ballast"))?;
        let (a, b) = (ours.median(), row.median());
        Some(if row.higher_is_better { a / b } else { b / a })
    }
}

fn human(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// This disk's physical limits, measured where the other suites run.
pub struct Limits {
    /// Sequential write bandwidth with fdatasync, bytes per second.
    pub bandwidth: f64,
    /// Median latency of a 4 KiB write plus fdatasync, seconds.
    pub fsync_seconds: f64,
}

impl Limits {
    pub fn measure(bench: &mut Bench) -> std::io::Result<Self> {
        let total = bench.n(256 << 20);
        let chunk = vec![0x5au8; 1 << 20];
        let mut bandwidths = Vec::new();
        let mut latencies = Vec::new();
        for _ in 0..bench.runs {
            let directory = tempfile::tempdir_in(&bench.base)?;
            let mut file = File::create(directory.path().join("sequential"))?;
            let started = Instant::now();
            let mut written = 0;
            while written < total {
                file.write_all(&chunk)?;
                written += chunk.len() as u64;
            }
            file.sync_data()?;
            bandwidths.push(written as f64 / started.elapsed().as_secs_f64());
            let file =
                OpenOptions::new().create(true).truncate(true).write(true).open(directory.path().join("fsync"))?;
            let block = [0x33u8; 4096];
            let mut samples: Vec<Duration> = (0..bench.n(1000))
                .map(|index| {
                    let started = Instant::now();
                    file.write_all_at(&block, index * 4096)?;
                    file.sync_data()?;
                    Ok(started.elapsed())
                })
                .collect::<std::io::Result<_>>()?;
            samples.sort();
            latencies.push(samples[samples.len() / 2].as_secs_f64());
        }
        // The WAL (a) shape's I/O alone, into new blocks and over blocks written before.
        let (mut fresh, mut overwrite) = (Vec::new(), Vec::new());
        for _ in 0..bench.runs {
            let directory = tempfile::tempdir_in(&bench.base)?;
            fresh.push(wal_shape_io(&directory.path().join("fresh"), bench.n(1000), false)? * 1e3);
            overwrite.push(wal_shape_io(&directory.path().join("overwrite"), bench.n(1000), true)? * 1e3);
        }
        bandwidths.sort_by(f64::total_cmp);
        latencies.sort_by(f64::total_cmp);
        let limits =
            Self { bandwidth: bandwidths[bandwidths.len() / 2], fsync_seconds: latencies[latencies.len() / 2] };
        bench.rows.push(Row {
            suite: "limits",
            case: "sequential write + fdatasync".into(),
            engine: "disk",
            unit: "MB/s",
            samples: bandwidths.iter().map(|bandwidth| bandwidth / 1e6).collect(),
            higher_is_better: true,
            limit: None,
        });
        bench.rows.push(Row {
            suite: "limits",
            case: "4 KiB write + fdatasync".into(),
            engine: "disk",
            unit: "us",
            samples: latencies.iter().map(|latency| latency * 1e6).collect(),
            higher_is_better: false,
            limit: None,
        });
        for (samples, blocks) in [(fresh, "new blocks"), (overwrite, "blocks written before (a recycled file)")] {
            bench.rows.push(Row {
                suite: "limits",
                case: format!("1000 x (108 KB write + fdatasync) into {blocks}"),
                engine: "disk",
                unit: "ms",
                samples,
                higher_is_better: false,
                limit: None,
            });
        }
        Ok(limits)
    }

    /// The fastest a workload writing `bytes` with `syncs` syncs can go: seconds.
    pub fn time(&self, bytes: u64, syncs: u64) -> f64 {
        bytes as f64 / self.bandwidth + syncs as f64 * self.fsync_seconds
    }
}

/// Seconds for `syncs` rounds of a 108 KB write (a thousand 100-byte records and their headers)
/// and `fdatasync`, the I/O of the WAL's shape (a). Into a sparse file (what a fresh log writes),
/// or, with `overwrite`, over blocks written and synced before, as in a recycled file: `fdatasync`
/// then has no block allocation to commit to the filesystem journal.
fn wal_shape_io(path: &Path, syncs: u64, overwrite: bool) -> std::io::Result<f64> {
    const ROUND: u64 = 108_000;
    let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(path)?;
    if overwrite {
        let zeros = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < syncs * ROUND {
            file.write_all_at(&zeros, at)?;
            at += zeros.len() as u64;
        }
        file.sync_data()?;
    } else {
        file.set_len(syncs * ROUND)?;
    }
    let round = vec![0x6bu8; ROUND as usize];
    let started = Instant::now();
    for index in 0..syncs {
        file.write_all_at(&round, index * ROUND)?;
        file.sync_data()?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The bytes a directory tree's files take on disk (allocated blocks: the zeros of a sparse
/// preallocation take none).
pub fn allocated_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        total += if metadata.is_dir() { allocated_bytes(&entry.path())? } else { metadata.blocks() * 512 };
    }
    Ok(total)
}

/// Size of a directory tree in bytes.
pub fn bytes_on_disk(path: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        total += if metadata.is_dir() { bytes_on_disk(&entry.path())? } else { metadata.len() };
    }
    Ok(total)
}
