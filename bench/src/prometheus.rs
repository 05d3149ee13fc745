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

/// The label sets as promtool's `ReadLabels` reads them: `{"name":"value",...}` per line.
fn labels_file(series: &[Vec<(String, String)>], path: &Path) -> io::Result<()> {
    let mut text = String::new();
    for pairs in series {
        let fields: Vec<String> = pairs.iter().map(|(name, value)| format!("\"{name}\":\"{value}\"")).collect();
        let _ = writeln!(text, "{{{}}}", fields.join(","));
    }
    std::fs::write(path, text)
}

/// promtool's ingest, in ballast, compacting after every round if `compact` (with `options`):
/// returns the seconds it took, close included, and of them the seconds compaction took.
fn ballast_write(
    directory: &Path,
    series: &[Vec<(String, String)>],
    scrapes: u64,
    compact: bool,
    options: TsdbOptions,
) -> io::Result<(f64, f64)> {
    let labels: Vec<Labels> = series
        .iter()
        .map(|pairs| Labels::new(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))).expect("valid labels"))
        .collect();
    let mut tsdb =
        Tsdb::open(Arc::new(OsVfs::new()), Arc::new(SystemClock::new()), directory, options).map_err(other)?;
    let mut refs: Vec<Option<SeriesRef>> = vec![None; labels.len()];
    let mut compacting = 0.0;
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
        if compact {
            let compaction = Instant::now();
            tsdb.compact_head().map_err(other)?;
            tsdb.compact_blocks().map_err(other)?;
            compacting += compaction.elapsed().as_secs_f64();
        }
    }
    tsdb.close().map_err(other)?;
    Ok((begun.elapsed().as_secs_f64(), compacting))
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
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(block.join("meta.json"))?).map_err(other)?;
        samples += meta["stats"]["numSamples"].as_u64().unwrap_or(0);
    }
    Ok((bytes as f64 / samples.max(1) as f64, samples))
}

const QUERIES: [(&str, &str, &str, &str); 2] =
    [("1 %", "__name__", "metric_7", "{__name__=\"metric_7\"}"), ("50 %", "job", "job[0-4]", "{job=~\"job[0-4]\"}")];

/// The workload's samples as OpenMetrics text, for `promtool tsdb create-blocks-from`: each
/// metric family's series together, each series' samples in time order (seconds: every
/// timestamp is a whole number of them).
fn openmetrics(series: &[Vec<(String, String)>], scrapes: u64, path: &Path) -> io::Result<()> {
    let mut out = io::BufWriter::new(std::fs::File::create(path)?);
    let mut by_name: std::collections::BTreeMap<&str, Vec<&Vec<(String, String)>>> = std::collections::BTreeMap::new();
    for pairs in series {
        by_name.entry(pairs[0].1.as_str()).or_default().push(pairs);
    }
    for (name, members) in by_name {
        writeln!(out, "# TYPE {name} gauge")?;
        for pairs in members {
            let labels: Vec<String> = pairs[1..].iter().map(|(n, v)| format!("{n}=\"{v}\"")).collect();
            let labels = labels.join(",");
            for scrape in 1..=scrapes {
                let (value, seconds) =
                    (123_456_789 + 1000 * scrape, TIME_DELTA / 1000 * i64::try_from(scrape).expect("small"));
                writeln!(out, "{name}{{{labels}}} {value} {seconds}")?;
            }
        }
    }
    writeln!(out, "# EOF")?;
    out.flush()
}

/// `promtool tsdb create-blocks-from openmetrics` of `input` into `out`.
fn prometheus_blocks(input: &Path, out: &Path) -> io::Result<()> {
    let output =
        Command::new("promtool").args(["tsdb", "create-blocks-from", "openmetrics"]).arg(input).arg(out).output()?;
    if !output.status.success() {
        return Err(other(format!("create-blocks-from failed: {}", String::from_utf8_lossy(&output.stderr))));
    }
    Ok(())
}

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
    let series = crate::tsdb::series_labels(count);
    let work = tempfile::tempdir_in(&bench.base)?;
    ingest(bench, &series, scrapes, work.path())?;
    // The sizes and queries on a tenth of the series: OpenMetrics text of every sample is
    // about 50 bytes a sample.
    let series = &series[..usize::try_from(count / 10).expect("small").max(1)];
    let blocks = sizes(bench, series, scrapes, work.path())?;
    queries(bench, &blocks)
}

/// Ingest, head only, as promtool's bench (which never compacts within its run): ballast and
/// Prometheus; then ballast compacting after every round.
fn ingest(bench: &mut Bench, series: &[Vec<(String, String)>], scrapes: u64, work: &Path) -> io::Result<()> {
    let labels = work.join("series.json");
    labels_file(series, &labels)?;
    let samples = (series.len() as u64 * scrapes) as f64;
    let out = work.join("prometheus");
    let (mut ballast, mut compacting, mut compaction_share, mut prometheus, mut whole) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..bench.runs {
        let directory = tempfile::tempdir_in(&bench.base)?;
        ballast.push(samples / ballast_write(directory.path(), series, scrapes, false, TsdbOptions::default())?.0);
        let directory = tempfile::tempdir_in(&bench.base)?;
        let (seconds, compaction) = ballast_write(directory.path(), series, scrapes, true, TsdbOptions::default())?;
        compacting.push(samples / seconds);
        compaction_share.push(100.0 * compaction / seconds);
        let _ = std::fs::remove_dir_all(&out);
        let (rate, wall) = prometheus_write(&out, &labels, series.len() as u64, scrapes)?;
        prometheus.push(rate);
        whole.push(samples / wall);
        eprintln!("  prometheus suite run {}: ballast {:.0}/s, prometheus {rate:.0}/s", run + 1, ballast[run]);
    }
    let case = format!("ingest {} series x {scrapes} scrapes, head only (promtool tsdb bench write)", series.len());
    bench.rows.push(Row::new("prometheus", case.clone(), "ballast", "samples/s", ballast, true));
    bench.rows.push(Row::new("prometheus", case.clone(), "prometheus 2.42", "samples/s", prometheus, true));
    bench.rows.push(Row::new(
        "prometheus",
        format!("{case}, promtool's whole process"),
        "prometheus 2.42",
        "samples/s",
        whole,
        true,
    ));
    let compacted = format!("ingest {} series x {scrapes} scrapes, compacting after every 100", series.len());
    bench.rows.push(Row::new("prometheus", compacted.clone(), "ballast", "samples/s", compacting, true));
    bench.rows.push(Row::new(
        "prometheus",
        format!("{compacted}: share of the time compacting"),
        "ballast",
        "%",
        compaction_share,
        false,
    ));
    Ok(())
}

/// Bytes per sample in 2 h blocks of the same samples: ballast's (head compaction into 2 h
/// blocks only; and levelled, the default) and Prometheus's (`create-blocks-from`, 2 h blocks).
/// Returns the directory of Prometheus's blocks (with an empty `wal/`), for the queries.
fn sizes(bench: &mut Bench, series: &[Vec<(String, String)>], scrapes: u64, work: &Path) -> io::Result<PathBuf> {
    let input = work.join("samples.om");
    openmetrics(series, scrapes, &input)?;
    let prometheus = work.join("prometheus-blocks");
    prometheus_blocks(&input, &prometheus)?;
    std::fs::create_dir_all(prometheus.join("wal"))?;
    let (prometheus_bytes, prometheus_samples) = bytes_per_sample(&prometheus)?;
    let two_hours =
        TsdbOptions { block_ranges: vec![TsdbOptions::default().head.chunk_range], ..TsdbOptions::default() };
    let mut rows = Vec::new();
    for (engine, options) in
        [("ballast, 2 h blocks", two_hours), ("ballast, levelled (2 h to 162 h)", TsdbOptions::default())]
    {
        let directory = tempfile::tempdir_in(&bench.base)?;
        ballast_write(directory.path(), series, scrapes, true, options)?;
        let (bytes, samples) = bytes_per_sample(directory.path())?;
        rows.push((engine, bytes, samples));
    }
    rows.push(("prometheus 2.42 (create-blocks-from, 2 h blocks)", prometheus_bytes, prometheus_samples));
    for (engine, bytes, samples) in rows {
        let case = format!("bytes per sample in blocks ({} series; {samples} samples in blocks)", series.len());
        bench.rows.push(Row::new("prometheus", case, engine, "B", vec![bytes], false));
    }
    Ok(prometheus)
}

/// Queries over Prometheus's blocks: `promtool tsdb dump --match` against ballast opening the
/// directory, selecting and printing the same lines; both print the same number.
fn queries(bench: &mut Bench, blocks: &Path) -> io::Result<()> {
    for (share, name, pattern, selector) in QUERIES {
        let (mut ballast_ms, mut prometheus_ms) = (Vec::new(), Vec::new());
        let mut found = None;
        for _ in 0..bench.runs {
            // ballast's open adds `head/` and `LOCK`; promtool ignores both.
            let (lines, seconds) = ballast_query(blocks, name, pattern)?;
            ballast_ms.push(seconds * 1e3);
            let (dumped, dump_seconds) = prometheus_query(blocks, selector)?;
            prometheus_ms.push(dump_seconds * 1e3);
            if lines != dumped {
                return Err(other(format!("{share}: ballast printed {lines} samples, promtool {dumped}")));
            }
            found = Some(lines);
        }
        let case =
            format!("open Prometheus's blocks, select {share} of the series, print ({} samples)", found.unwrap_or(0));
        bench.rows.push(Row::new("prometheus", case.clone(), "ballast", "ms", ballast_ms, false));
        bench.rows.push(Row::new("prometheus", case, "promtool tsdb dump", "ms", prometheus_ms, false));
    }
    Ok(())
}
