//! The `prometheus` suite: ballast's `Tsdb` beside Prometheus 2.42's own TSDB, on the workload
//! of `promtool tsdb bench write` (cmd/promtool/tsdb.go), fed the same series.
//!
//! promtool's workload, which ballast's side repeats step for step: N series (from a file of
//! label sets, one JSON object per line; here the series of the `tsdb` suite), each starting
//! at the value 123456789 and growing by 1000 per scrape; scrapes 30 s apart from t = 30 000
//! ms; rounds of 100 scrapes, each round splitting the series into shards of 1 000, each shard
//! committing once per scrape (one appender, appends by ref after the first). Prometheus runs
//! the shards of a round on goroutines in parallel and compacts its head into 2 h blocks in
//! the background; ballast runs them one after another on one thread, commits buffered (as
//! Prometheus's WAL writes without fsync), and compacts (head, then blocks) after every round,
//! inside the timed loop. Both then close.
//!
//! Figures: samples/s over the ingest (promtool's own figure for Prometheus, and its wall time
//! for the whole process beside it); bytes per sample of the blocks each wrote (their files
//! over the samples their meta.json count); and query latency for matchers hitting 1 % and
//! 50 % of the series over the same blocks (Prometheus's, copied into a directory with an
//! empty `wal/`): `promtool tsdb dump --match` against ballast opening the directory,
//! selecting, and printing the same lines, both to /dev/null, each a fresh process-like start.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use ballast::clock::SystemClock;
use ballast::tsdb::{Durability, Labels, MatchKind, Matcher, SeriesRef, Tsdb, TsdbOptions};
use ballast::vfs::OsVfs;

use crate::harness::{Bench, Row};

const SERIES: u64 = 10_000;
const SCRAPES: u64 = 3_000;
const TIME_DELTA: i64 = 30_000;
const SHARD: usize = 1_000;
const ROUND: u64 = 100;

fn other(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

/// The series: the `tsdb` suite's label sets.
fn series(count: u64) -> Vec<Vec<(String, String)>> {
    (0..count)
        .map(|i| {
            vec![
                ("__name__".to_string(), format!("metric_{}", i % 100)),
                ("instance".to_string(), format!("host-{}", i / 100)),
                ("job".to_string(), format!("job{}", i % 10)),
            ]
        })
        .collect()
}

/// The label sets as promtool's `ReadLabels` reads them: `{"name":"value",...}` per line.
fn labels_file(series: &[Vec<(String, String)>], path: &Path) -> io::Result<()> {
    let mut text = String::new();
    for pairs in series {
        let fields: Vec<String> = pairs.iter().map(|(name, value)| format!("\"{name}\":\"{value}\"")).collect();
        let _ = writeln!(text, "{{{}}}", fields.join(","));
    }
    std::fs::write(path, text)
}

/// promtool's ingest, in ballast: returns the seconds it took and the TSDB, closed and
/// reopened.
fn ballast_write(directory: &Path, series: &[Vec<(String, String)>], scrapes: u64) -> io::Result<f64> {
    let labels: Vec<Labels> = series
        .iter()
        .map(|pairs| Labels::new(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))).expect("valid labels"))
        .collect();
    let mut tsdb = Tsdb::open(Arc::new(OsVfs::new()), Arc::new(SystemClock::new()), directory, TsdbOptions::default())
        .map_err(other)?;
    let mut refs: Vec<Option<SeriesRef>> = vec![None; labels.len()];
    let mut values: Vec<i64> = vec![123_456_789; labels.len()];
    let begun = Instant::now();
    for round in (0..scrapes).step_by(usize::try_from(ROUND).expect("small")) {
        for (shard, shard_labels) in labels.chunks(SHARD).enumerate() {
            let mut t = TIME_DELTA * i64::try_from(round).expect("small");
            for _ in 0..ROUND.min(scrapes - round) {
                t += TIME_DELTA;
                let mut appender = tsdb.appender();
                for (offset, labels) in shard_labels.iter().enumerate() {
                    let index = shard * SHARD + offset;
                    values[index] += 1000;
                    let value = values[index] as f64;
                    match refs[index] {
                        Some(series) => appender.append_ref(series, t, value).map_err(other)?,
                        None => refs[index] = Some(appender.append(labels, t, value).map_err(other)?),
                    }
                }
                appender.commit(Durability::Buffered).map_err(other)?;
            }
        }
        tsdb.compact_head().map_err(other)?;
        tsdb.compact_blocks().map_err(other)?;
    }
    tsdb.close().map_err(other)?;
    Ok(begun.elapsed().as_secs_f64())
}

/// What `promtool tsdb bench write` printed: its samples/s, and the wall seconds of the run.
fn prometheus_write(out: &Path, labels: &Path, series: u64, scrapes: u64) -> io::Result<(f64, f64)> {
    let begun = Instant::now();
    let output = Command::new("promtool")
        .args(["tsdb", "bench", "write"])
        .arg(format!("--out={}", out.display()))
        .arg(format!("--metrics={series}"))
        .arg(format!("--scrapes={scrapes}"))
        .arg(labels)
        .output()?;
    let seconds = begun.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(other(format!("promtool tsdb bench write failed: {}", String::from_utf8_lossy(&output.stderr))));
    }
    let rate = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("> samples/sec:"))
        .and_then(|rate| rate.trim().parse().ok())
        .ok_or_else(|| other(format!("no samples/sec in promtool's output:\n{text}")))?;
    Ok((rate, seconds))
}

/// The block directories in `directory` (names that are ULIDs: 26 characters, no dot).
fn blocks(directory: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(directory)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default().to_string();
        if path.is_dir() && name.len() == 26 && !name.contains('.') && path.join("meta.json").exists() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// The blocks' bytes (every file) over the samples their meta.json count.
fn bytes_per_sample(directory: &Path) -> io::Result<(f64, u64)> {
    let (mut bytes, mut samples) = (0u64, 0u64);
    for block in blocks(directory)? {
        bytes += crate::harness::bytes_on_disk(&block)?;
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(block.join("meta.json"))?).map_err(other)?;
        samples += meta["stats"]["numSamples"].as_u64().unwrap_or(0);
    }
    Ok((bytes as f64 / samples.max(1) as f64, samples))
}

/// Copies Prometheus's blocks into `to`, beside an empty `wal/`: what both engines query.
fn blocks_only(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to.join("wal"))?;
    for block in blocks(from)? {
        let target = to.join(block.file_name().expect("named"));
        std::fs::create_dir_all(target.join("chunks"))?;
        for name in ["index", "tombstones", "meta.json"] {
            std::fs::copy(block.join(name), target.join(name))?;
        }
        for chunk in std::fs::read_dir(block.join("chunks"))? {
            let chunk = chunk?;
            std::fs::copy(chunk.path(), target.join("chunks").join(chunk.file_name()))?;
        }
    }
    Ok(())
}

const QUERIES: [(&str, &str, &str, &str); 2] =
    [("1 %", "instance", "host-7", "{instance=\"host-7\"}"), ("50 %", "job", "job[0-4]", "{job=~\"job[0-4]\"}")];

/// `promtool tsdb dump --match` of `directory`, its output counted and dropped: lines, seconds.
fn prometheus_query(directory: &Path, selector: &str) -> io::Result<(usize, f64)> {
    let begun = Instant::now();
    let mut child = Command::new("promtool")
        .args(["tsdb", "dump"])
        .arg(format!("--match={selector}"))
        .arg(directory)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut lines = 0;
    let stdout = child.stdout.take().expect("piped");
    for line in io::BufRead::lines(io::BufReader::new(stdout)) {
        line?;
        lines += 1;
    }
    if !child.wait()?.success() {
        return Err(other("promtool tsdb dump failed"));
    }
    Ok((lines, begun.elapsed().as_secs_f64()))
}

/// ballast opening `directory`, selecting, and printing the lines promtool prints (to a sink).
fn ballast_query(directory: &Path, name: &str, pattern: &str) -> io::Result<(usize, f64)> {
    let begun = Instant::now();
    let tsdb = Tsdb::open(Arc::new(OsVfs::new()), Arc::new(SystemClock::new()), directory, TsdbOptions::default())
        .map_err(other)?;
    let matcher = Matcher::new(MatchKind::Regex, name, pattern).map_err(other)?;
    let mut sink = io::BufWriter::new(io::sink());
    let mut lines = 0;
    for series in tsdb.select(i64::MIN, i64::MAX, &[matcher]).map_err(other)? {
        let labels: Vec<String> = series.labels.iter().map(|l| format!("{}=\"{}\"", l.name, l.value)).collect();
        let labels = labels.join(", ");
        for (t, v) in &series.samples {
            writeln!(sink, "{{{labels}}} {v} {t}")?;
            lines += 1;
        }
    }
    sink.flush()?;
    drop(tsdb);
    Ok((lines, begun.elapsed().as_secs_f64()))
}

pub fn prometheus(bench: &mut Bench) -> io::Result<()> {
    if Command::new("promtool").arg("--version").output().is_err() {
        eprintln!("SKIPPED: the prometheus suite needs promtool (apt-get install prometheus)");
        return Ok(());
    }
    let (count, scrapes) = (bench.n(SERIES), bench.n(SCRAPES));
    let series = series(count);
    let work = tempfile::tempdir_in(&bench.base)?;
    let labels = work.path().join("series.json");
    labels_file(&series, &labels)?;
    let samples = (count * scrapes) as f64;
    let shape = format!("{count} series x {scrapes} scrapes (promtool tsdb bench write)");
    let (mut ballast_rates, mut prometheus_rates, mut prometheus_walls) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ballast_size, mut prometheus_size) = (Vec::new(), Vec::new());
    let prometheus_out = work.path().join("prometheus");
    for run in 0..bench.runs {
        let ballast_dir = tempfile::tempdir_in(&bench.base)?;
        ballast_rates.push(samples / ballast_write(ballast_dir.path(), &series, scrapes)?);
        ballast_size.push(bytes_per_sample(ballast_dir.path())?.0);
        let _ = std::fs::remove_dir_all(&prometheus_out);
        let (rate, wall) = prometheus_write(&prometheus_out, &labels, count, scrapes)?;
        prometheus_rates.push(rate);
        prometheus_walls.push(samples / wall);
        prometheus_size.push(bytes_per_sample(&prometheus_out.join("storage"))?.0);
        eprintln!("  prometheus suite run {}: ballast {:.0}/s, prometheus {rate:.0}/s", run + 1, ballast_rates[run]);
    }
    let ingest = format!("ingest {shape}");
    bench.rows.push(Row::new("prometheus", ingest.clone(), "ballast", "samples/s", ballast_rates, true));
    bench.rows.push(Row::new("prometheus", ingest.clone(), "prometheus 2.42", "samples/s", prometheus_rates, true));
    bench.rows.push(Row::new(
        "prometheus",
        format!("{ingest}, promtool's whole process"),
        "prometheus 2.42",
        "samples/s",
        prometheus_walls,
        true,
    ));
    let sizes = "bytes per sample in blocks".to_string();
    bench.rows.push(Row::new("prometheus", sizes.clone(), "ballast", "B", ballast_size, false));
    bench.rows.push(Row::new("prometheus", sizes, "prometheus 2.42", "B", prometheus_size, false));
    let queried = work.path().join("blocks");
    blocks_only(&prometheus_out.join("storage"), &queried)?;
    for (share, name, pattern, selector) in QUERIES {
        let (mut ballast_ms, mut prometheus_ms) = (Vec::new(), Vec::new());
        let mut found = None;
        for _ in 0..bench.runs {
            // ballast's open adds `head/` and `LOCK`; promtool ignores both.
            let (lines, seconds) = ballast_query(&queried, name, pattern)?;
            ballast_ms.push(seconds * 1e3);
            let (dumped, dump_seconds) = prometheus_query(&queried, selector)?;
            prometheus_ms.push(dump_seconds * 1e3);
            if lines != dumped {
                return Err(other(format!("{share}: ballast printed {lines} samples, promtool {dumped}")));
            }
            found = Some(lines);
        }
        let case = format!("open, select {share} of the series, print ({} samples)", found.unwrap_or(0));
        bench.rows.push(Row::new("prometheus", case.clone(), "ballast", "ms", ballast_ms, false));
        bench.rows.push(Row::new("prometheus", case, "promtool tsdb dump", "ms", prometheus_ms, false));
    }
    Ok(())
}
