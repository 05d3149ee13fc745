//! Ingests a deterministic workload into a TSDB (feature `blocks`) and compacts everything
//! older than the head into Prometheus blocks, so that `promtool` can check what it holds.
//!
//! ```text
//! cargo run --release --features blocks --example tsdb_ingest -- DIR --series 1000 --samples 10000
//! promtool tsdb list DIR
//! promtool tsdb dump DIR
//! ```
//!
//! The generator: series `i` (0 ≤ i < N) has the labels `__name__="ingest_metric_<i mod 10>"`,
//! `series="<i>"`, `job="ingest"`; its sample `j` (0 ≤ j < M) is at
//! `T0 + 15_000 · j` ms with the value `(i · 31 + j · 7) mod 1000 / 4`, where T0 is
//! 2023-11-14T22:13:20Z (1,700,000,000,000 ms). Samples are committed a scrape at a time
//! (every series' sample `j` in one buffered commit, the head synced every 100 scrapes), with
//! 2-hour chunk ranges as Prometheus's: after the last scrape the head keeps at most its
//! newest 1.5 ranges, and the blocks hold every sample older than that. A directory already
//! holding samples is refused (the generator would repeat times the TSDB has).

use std::error::Error;
use std::sync::Arc;

use ballast::clock::SystemClock;
use ballast::tsdb::{Durability, Labels, Tsdb, TsdbOptions};
use ballast::vfs::OsVfs;

const T0: i64 = 1_700_000_000_000;
const INTERVAL: i64 = 15_000;

struct Arguments {
    directory: String,
    series: u64,
    samples: u64,
}

fn parse_arguments() -> Result<Arguments, String> {
    let usage = "usage: tsdb_ingest DIR --series N --samples M";
    let mut args = std::env::args().skip(1);
    let directory = args.next().filter(|arg| !arg.starts_with("--")).ok_or(usage)?;
    let (mut series, mut samples) = (None, None);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value; {usage}"))?;
        let number = value.parse::<u64>().map_err(|_| format!("{flag} takes a whole number, not {value:?}"))?;
        match flag.as_str() {
            "--series" => series = Some(number),
            "--samples" => samples = Some(number),
            _ => return Err(format!("unknown flag {flag}; {usage}")),
        }
    }
    let (Some(series), Some(samples)) = (series, samples) else { return Err(usage.to_string()) };
    if series == 0 || samples == 0 {
        return Err("--series and --samples must be at least 1".to_string());
    }
    Ok(Arguments { directory, series, samples })
}

fn main() -> Result<(), Box<dyn Error>> {
    let arguments = match parse_arguments() {
        Ok(arguments) => arguments,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2)
        }
    };
    let mut tsdb =
        Tsdb::open(Arc::new(OsVfs::new()), Arc::new(SystemClock::new()), &arguments.directory, TsdbOptions::default())?;
    if tsdb.head().max_time().is_some() || tsdb.blocks().next().is_some() {
        return Err(format!("{} already holds samples; give an empty or new directory", arguments.directory).into());
    }
    let labels: Vec<Labels> = (0..arguments.series)
        .map(|i| {
            let (name, series) = (format!("ingest_metric_{}", i % 10), i.to_string());
            Labels::new([("__name__", name.as_str()), ("series", series.as_str()), ("job", "ingest")])
        })
        .collect::<Result<_, _>>()?;
    let mut refs = Vec::with_capacity(labels.len());
    let mut blocks = 0;
    for j in 0..arguments.samples {
        let t = T0 + INTERVAL * i64::try_from(j)?;
        let mut appender = tsdb.appender();
        for (i, labels) in labels.iter().enumerate() {
            let value = ((i as u64 * 31 + j * 7) % 1000) as f64 / 4.0;
            if j == 0 {
                refs.push(appender.append(labels, t, value)?);
            } else {
                appender.append_ref(refs[i], t, value)?;
            }
        }
        appender.commit(if j % 100 == 99 { Durability::Synced } else { Durability::Buffered })?;
        blocks += tsdb.compact_head()?.len();
        if j % 1000 == 999 {
            eprintln!("{} of {} scrapes, {blocks} blocks", j + 1, arguments.samples);
        }
    }
    let in_blocks: u64 = tsdb.blocks().map(|meta| meta.samples).sum();
    println!(
        "{}: {} series, {} samples; {blocks} blocks hold {in_blocks} samples, the head {} (from {} ms)",
        arguments.directory,
        arguments.series,
        arguments.series * arguments.samples,
        arguments.series * arguments.samples - in_blocks,
        tsdb.head().min_sample_time().unwrap_or(T0),
    );
    tsdb.close()?;
    Ok(())
}
