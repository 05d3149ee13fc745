//! `ballast-bench`: ballast side by side with the crates a user would pick instead, and with
//! this disk's physical limit, measured in one run on one filesystem.
//!
//! Every figure is the median of `--runs` runs (at least 5) with min and max beside it; the
//! engines run in turns (A B A B ...) so drift hits all alike; data lives in temp dirs under
//! `--dir` and is removed after each run.

mod harness;
mod kv;
mod logs;
mod prometheus;
mod tsdb;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use harness::{Bench, Limits};

#[derive(Parser, Debug)]
#[command(name = "ballast-bench", about = "ballast against its peers and the disk's limits")]
struct Cli {
    suite: Suite,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Runs per figure; the median is reported. At least 5.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Where the temp dirs go (one filesystem for every engine). Defaults to ./bench-data.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Scale every workload down by this factor, for a quick look (1 = the full shapes).
    #[arg(long, default_value_t = 1)]
    scale_down: u64,
    /// Run only these peers (substrings of their names, comma separated), for a quick look;
    /// ballast always runs. The results in bench/README.md run every engine.
    #[arg(long, value_delimiter = ',')]
    engines: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Suite {
    Limits,
    Wal,
    Commitlog,
    Kv,
    Tsdb,
    /// ballast's TSDB with blocks beside Prometheus 2.42's own (needs promtool).
    Prometheus,
    All,
}

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let base = cli.dir.clone().unwrap_or_else(|| PathBuf::from("bench-data"));
    std::fs::create_dir_all(&base)?;
    let mut bench = Bench::new(base, cli.runs.max(5), cli.scale_down.max(1), cli.json, cli.engines.clone());
    let limits = Limits::measure(&mut bench)?;
    if matches!(cli.suite, Suite::Wal | Suite::All) {
        logs::wal(&mut bench, &limits)?;
    }
    if matches!(cli.suite, Suite::Commitlog | Suite::All) {
        logs::commitlog(&mut bench, &limits)?;
    }
    if matches!(cli.suite, Suite::Kv | Suite::All) {
        kv::kv(&mut bench, &limits)?;
    }
    if matches!(cli.suite, Suite::Tsdb | Suite::All) {
        tsdb::tsdb(&mut bench, &limits)?;
    }
    if matches!(cli.suite, Suite::Prometheus | Suite::All) {
        prometheus::prometheus(&mut bench)?;
    }
    bench.finish(&limits);
    Ok(())
}
