//! The `tsdb` suite: the ballast TSDB head against tsink on the same data. 10,000 series of
//! 1,000 samples each, in three shapes a scrape produces (counters of a few events per scrape,
//! gauges unchanged in most scrapes, constants), 15 s scrape intervals with one scrape in ten a
//! few ms off its slot; a commit per scrape. Ingest is timed with every commit durable (ballast
//! `Durability::Synced`, tsink's default `WalSyncMode::PerAppend`: one `insert_rows` per
//! scrape) and with commits buffered (ballast `Durability::Buffered` and one sync at the end,
//! tsink `WalSyncMode::Periodic` of one second), by labels and, for ballast, by the refs the
//! first scrape returned; then the bytes per sample, and the latency of a query whose matcher
//! selects 1 % or 50 % of the series over the whole time range.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast::tsdb::chunkenc::XorChunk;
use ballast::tsdb::{Durability, Head, HeadOptions, Labels, MatchKind, Matcher, SeriesRef};
use ballast::vfs::OsVfs;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tsink::{
    DataPoint, Label, Row, SeriesMatcher, SeriesSelection, Storage, StorageBuilder, TimestampPrecision, WalSyncMode,
};

use crate::harness::{allocated_bytes, Bench, Case, Limits, Row as BenchRow, Run};

const SERIES: u64 = 10_000;
const SCRAPES: u64 = 1_000;
const SCRAPE_INTERVAL: i64 = 15_000;
const START: i64 = 1_700_000_000_000;

fn other(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

/// The data, scrape by scrape: every series' labels and, per scrape, each series' sample.
struct Data {
    labels: Vec<Vec<(String, String)>>,
    /// `scrapes[s][i]`: series `i`'s sample of scrape `s`.
    scrapes: Vec<Vec<(i64, f64)>>,
}

impl Data {
    fn new(series: u64, scrapes: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        let labels = series_labels(series);
        let mut values: Vec<f64> = (0..series).map(|i| if i % 3 == 1 { 50.0 } else { 0.0 }).collect();
        let offsets: Vec<i64> = (0..series).map(|_| rng.gen_range(0..SCRAPE_INTERVAL)).collect();
        let scrapes = (0..scrapes as i64)
            .map(|scrape| {
                (0..series as usize)
                    .map(|i| {
                        // A scraper keeps each target's slot; one scrape in ten lands a few ms off.
                        let jitter = if rng.gen_bool(0.1) { rng.gen_range(-5..=5) } else { 0 };
                        let t = START + offsets[i] + scrape * SCRAPE_INTERVAL + jitter;
                        values[i] = match i % 3 {
                            // A counter: a few events per scrape.
                            0 => values[i] + f64::from(rng.gen_range(0u32..20)),
                            // A gauge: unchanged in most scrapes, else a small step.
                            1 if rng.gen_bool(0.3) => ((values[i] + rng.gen_range(-0.5..0.5)) * 10.0).round() / 10.0,
                            1 => values[i],
                            _ => 1.0,
                        };
                        (t, values[i])
                    })
                    .collect()
            })
            .collect();
        Self { labels, scrapes }
    }

    fn samples(&self) -> u64 {
        self.scrapes.iter().map(|scrape| scrape.len() as u64).sum()
    }
}

/// The suites' series: 100 metric names, 100 series per instance, 10 jobs.
pub fn series_labels(count: u64) -> Vec<Vec<(String, String)>> {
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

fn ballast_labels(pairs: &[(String, String)]) -> Labels {
    Labels::new(pairs.iter().map(|(name, value)| (name.as_str(), value.as_str()))).expect("valid labels")
}

fn open_head(directory: &Path) -> io::Result<Head> {
    Head::open(Arc::new(OsVfs::new()), directory, HeadOptions::default()).map_err(other)
}

/// Ingests `data` into a new head, a commit per scrape, and syncs; by refs after the first
/// scrape if `by_ref`. Returns the head and the seconds it took.
fn ballast_ingest(directory: &Path, data: &Data, by_ref: bool, durability: Durability) -> io::Result<(Head, f64)> {
    let labels: Vec<Labels> = data.labels.iter().map(|pairs| ballast_labels(pairs)).collect();
    let mut head = open_head(directory)?;
    let begun = Instant::now();
    let mut refs: Vec<SeriesRef> = Vec::with_capacity(labels.len());
    for (scrape, samples) in data.scrapes.iter().enumerate() {
        let mut appender = head.appender();
        for (index, &(t, v)) in samples.iter().enumerate() {
            if by_ref && scrape > 0 {
                appender.append_ref(refs[index], t, v).map_err(other)?;
            } else {
                let series = appender.append(&labels[index], t, v).map_err(other)?;
                if scrape == 0 {
                    refs.push(series);
                }
            }
        }
        appender.commit(durability).map_err(other)?;
    }
    head.sync().map_err(other)?;
    Ok((head, begun.elapsed().as_secs_f64()))
}

fn open_tsink(directory: &Path, sync: WalSyncMode) -> io::Result<Arc<dyn Storage>> {
    StorageBuilder::new()
        .with_data_path(directory)
        .with_timestamp_precision(TimestampPrecision::Milliseconds)
        .with_wal_sync_mode(sync)
        .build()
        .map_err(other)
}

fn tsink_ingest(directory: &Path, data: &Data, sync: WalSyncMode) -> io::Result<(Arc<dyn Storage>, f64)> {
    let labels: Vec<(String, Vec<Label>)> = data
        .labels
        .iter()
        .map(|pairs| {
            let rest = pairs[1..].iter().map(|(name, value)| Label::new(name.as_str(), value.as_str())).collect();
            (pairs[0].1.clone(), rest)
        })
        .collect();
    let storage = open_tsink(directory, sync)?;
    let begun = Instant::now();
    for samples in &data.scrapes {
        let rows: Vec<Row> = samples
            .iter()
            .zip(&labels)
            .map(|(&(t, v), (name, labels))| Row::with_labels(name.as_str(), labels.clone(), DataPoint::new(t, v)))
            .collect();
        storage.insert_rows(&rows).map_err(other)?;
    }
    Ok((storage, begun.elapsed().as_secs_f64()))
}

/// The two query shapes: a matcher on one of 100 instances (1 % of the series) and one on five
/// of ten jobs (50 %).
const QUERIES: [(&str, &str, &str); 2] = [("1 %", "instance", "host-7"), ("50 %", "job", "job[0-4]")];

fn ballast_query(head: &Head, name: &str, pattern: &str) -> io::Result<(usize, f64)> {
    let matcher = Matcher::new(MatchKind::Regex, name, pattern).map_err(other)?;
    let begun = Instant::now();
    let found = head.select(i64::MIN, i64::MAX, &[matcher]).map_err(other)?;
    let seconds = begun.elapsed().as_secs_f64();
    Ok((found.iter().map(|series| series.samples.len()).sum(), seconds))
}

fn tsink_query(storage: &dyn Storage, name: &str, pattern: &str) -> io::Result<(usize, f64)> {
    let begun = Instant::now();
    let selection = SeriesSelection::new().with_matcher(SeriesMatcher::regex_match(name, pattern));
    let series = storage.select_series(&selection).map_err(other)?;
    let found = storage.select_many(&series, i64::MIN, i64::MAX).map_err(other)?;
    let seconds = begun.elapsed().as_secs_f64();
    Ok((found.iter().map(|series| series.points.len()).sum(), seconds))
}

pub fn tsdb(bench: &mut Bench, limits: &Limits) -> io::Result<()> {
    let data = Data::new(bench.n(SERIES), bench.n(SCRAPES));
    let shape = format!("{} series x {} samples", data.labels.len(), data.scrapes.len());
    for (durability, sync, how) in [
        (Durability::Synced, WalSyncMode::PerAppend, "every commit synced"),
        (Durability::Buffered, WalSyncMode::Periodic(Duration::from_secs(1)), "commits buffered"),
    ] {
        ingest(bench, &data, format!("ingest {shape}, a commit per scrape, {how}"), durability, sync)?;
    }
    sizes_and_queries(bench, &data, limits)
}

fn ingest(bench: &mut Bench, data: &Data, name: String, durability: Durability, sync: WalSyncMode) -> io::Result<()> {
    let samples = data.samples() as f64;
    let mut engines: Vec<(&'static str, Run<'_>)> = vec![
        (
            "ballast, by labels",
            Box::new(move |dir: &Path| ballast_ingest(dir, data, false, durability).map(|(_, s)| s)),
        ),
        ("ballast, by ref", Box::new(move |dir: &Path| ballast_ingest(dir, data, true, durability).map(|(_, s)| s))),
    ];
    if bench.selected("tsink") {
        engines.push((
            "tsink",
            Box::new(move |dir: &Path| {
                let (storage, seconds) = tsink_ingest(dir, data, sync)?;
                storage.close().map_err(other)?;
                Ok(seconds)
            }),
        ));
    }
    bench.measure(Case {
        suite: "tsdb",
        name,
        unit: "samples/s",
        higher_is_better: true,
        figure: Box::new(move |seconds| samples / seconds),
        limit: None,
        engines,
    })
}

/// The bytes per sample of the XOR encoding alone (Prometheus's, bit for bit), each series cut
/// into chunks of 120 samples: the figure to hold against the Gorilla paper's 1.37.
fn xor_bytes_per_sample(data: &Data) -> f64 {
    let mut bytes = 0;
    for series in 0..data.labels.len() {
        for scrapes in data.scrapes.chunks(120) {
            let mut chunk = XorChunk::new();
            for scrape in scrapes {
                let (t, v) = scrape[series];
                chunk.append(t, v);
            }
            bytes += chunk.bytes().len();
        }
    }
    bytes as f64 / data.samples() as f64
}

/// One ingest per engine, then the bytes per sample and the query latencies, each query
/// repeated `runs` times.
fn sizes_and_queries(bench: &mut Bench, data: &Data, _limits: &Limits) -> io::Result<()> {
    let samples = data.samples();
    let ballast_dir = tempfile::tempdir_in(&bench.base)?;
    let (head, _) = ballast_ingest(ballast_dir.path(), data, true, Durability::Buffered)?;
    let stats = head.stats();
    let in_files = samples - stats.samples_in_memory;
    let mut rows = vec![("XOR chunks of 120 samples (the encoding alone)", xor_bytes_per_sample(data))];
    if in_files > 0 {
        rows.push((
            "ballast (head chunk files: entries of full chunks)",
            stats.chunk_file_bytes as f64 / in_files as f64,
        ));
    }
    let tsink_dir = tempfile::tempdir_in(&bench.base)?;
    let periodic = WalSyncMode::Periodic(Duration::from_secs(1));
    let tsink = if bench.selected("tsink") { Some(tsink_ingest(tsink_dir.path(), data, periodic)?.0) } else { None };
    for (label, name, pattern) in QUERIES {
        let mut ballast_samples = Vec::new();
        let mut tsink_samples = Vec::new();
        let mut expected = None;
        for _ in 0..bench.runs {
            let (found, seconds) = ballast_query(&head, name, pattern)?;
            ballast_samples.push(seconds * 1e3);
            expected = Some(found);
            if let Some(storage) = &tsink {
                let (found, seconds) = tsink_query(storage.as_ref(), name, pattern)?;
                if Some(found) != expected {
                    return Err(other(format!("tsink found {found} samples for {label}, ballast {expected:?}")));
                }
                tsink_samples.push(seconds * 1e3);
            }
        }
        let case = format!("select, matcher on {label} of the series ({} samples)", expected.unwrap_or(0));
        bench.rows.push(BenchRow::new("tsdb", case.clone(), "ballast", "ms", ballast_samples, false));
        if tsink.is_some() {
            bench.rows.push(BenchRow::new("tsdb", case, "tsink", "ms", tsink_samples, false));
        }
    }
    head.close().map_err(other)?;
    if let Some(storage) = tsink {
        storage.close().map_err(other)?;
        rows.push((
            "tsink (blocks of all its files, after close)",
            allocated_bytes(tsink_dir.path())? as f64 / samples as f64,
        ));
    }
    rows.push((
        "ballast (blocks of all its files, after close)",
        allocated_bytes(ballast_dir.path())? as f64 / samples as f64,
    ));
    for (engine, bytes) in rows {
        bench.rows.push(BenchRow::new("tsdb", "bytes per sample".to_string(), engine, "B", vec![bytes], false));
    }
    Ok(())
}
