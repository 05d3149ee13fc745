//! Blocks ballast writes are read by Prometheus's own tool: `promtool tsdb list` lists the
//! block with its stats, and `promtool tsdb dump` prints exactly the series and samples the
//! head held, value bits and all.
//!
//! Needs `promtool` (Debian's `prometheus` package; `.ci/run` installs it). Where it is
//! absent the test says so on stderr and passes, unless `BALLAST_REQUIRE_PROMTOOL=1` (set by
//! `.ci/run`), when it fails.

use std::process::Command;

use ballast::tsdb::block::{read_block, write_block, Ulid};
use ballast::tsdb::{Durability, Head, HeadOptions, Labels};

use crate::os;

fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool").arg("--version").output().is_ok_and(|output| output.status.success());
    if !found {
        assert!(
            std::env::var("BALLAST_REQUIRE_PROMTOOL").as_deref() != Ok("1"),
            "promtool is required (BALLAST_REQUIRE_PROMTOOL=1) but not installed"
        );
        eprintln!(
            "SKIPPED: promtool is not installed (apt-get install prometheus); the block interop test did not run"
        );
    }
    found.then_some("promtool")
}

/// The head's contents as `promtool tsdb dump` prints them: `{labels} value timestamp`.
fn expected_dump(head: &Head) -> Vec<String> {
    let mut lines = Vec::new();
    for series in head.select(i64::MIN, i64::MAX, &[]).unwrap() {
        let labels: Vec<String> = series.labels.iter().map(|l| format!("{}=\"{}\"", l.name, l.value)).collect();
        for (t, v) in &series.samples {
            lines.push(format!("{{{}}} {} {t}", labels.join(", "), go_float(*v)));
        }
    }
    lines.sort();
    lines
}

/// A float as Go's `strconv.FormatFloat(v, 'g', -1, 64)` prints the values promtool dumps
/// (the ones this test writes: integers and a few decimals).
fn go_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else {
        format!("{v}")
    }
}

#[test]
fn promtool_lists_and_dumps_a_block_ballast_wrote_exactly() {
    let Some(promtool) = promtool() else { return };
    let head_directory = tempfile::tempdir().unwrap();
    let mut head = Head::open(os(), head_directory.path(), HeadOptions::default()).unwrap();
    let start = 1_700_000_000_000i64;
    for scrape in 0..300i64 {
        let mut appender = head.appender();
        for instance in 0..5 {
            let up =
                Labels::new([("__name__", "up"), ("instance", &format!("host-{instance}")), ("job", "node")]).unwrap();
            let bytes = Labels::new([("__name__", "bytes_total"), ("instance", &format!("host-{instance}"))]).unwrap();
            appender.append(&up, start + scrape * 15_000, 1.0).unwrap();
            appender
                .append(&bytes, start + scrape * 15_000 + instance, (scrape * 1024 + instance) as f64 / 4.0)
                .unwrap();
        }
        appender.commit(Durability::Buffered).unwrap();
    }
    let data = tempfile::tempdir().unwrap();
    let series = head.select(i64::MIN, i64::MAX, &[]).unwrap();
    let (block, stats) = write_block(os().as_ref(), data.path(), Ulid::new(1_700_000_000_000, 42), &series).unwrap();
    assert_eq!((stats.series, stats.samples), (10, 3000));
    // promtool 2.42's dump opens DIR/wal too, and wants it to be Prometheus's WAL or empty.
    std::fs::create_dir(data.path().join("wal")).unwrap();

    let list = Command::new(promtool).args(["tsdb", "list"]).arg(data.path()).output().unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "promtool tsdb list failed: {}", String::from_utf8_lossy(&list.stderr));
    let name = block.file_name().unwrap().to_string_lossy().to_string();
    let row = listed.lines().find(|line| line.starts_with(&name)).unwrap_or_else(|| panic!("{name} not in:\n{listed}"));
    assert!(row.contains(" 3000 ") && row.contains(" 10 "), "samples and series in {row:?}");

    let dump = Command::new(promtool).args(["tsdb", "dump"]).arg(data.path()).output().unwrap();
    assert!(dump.status.success(), "promtool tsdb dump failed: {}", String::from_utf8_lossy(&dump.stderr));
    let mut dumped: Vec<String> = String::from_utf8_lossy(&dump.stdout).lines().map(str::to_string).collect();
    dumped.sort();
    assert_eq!(dumped.len(), 3000);
    assert_eq!(dumped, expected_dump(&head));
}

#[test]
fn a_block_ballast_wrote_reads_back_whole() {
    let head_directory = tempfile::tempdir().unwrap();
    let mut head = Head::open(os(), head_directory.path(), HeadOptions::default()).unwrap();
    let mut appender = head.appender();
    for i in 0..500i64 {
        let labels = Labels::new([("__name__", "m"), ("i", &(i % 7).to_string())]).unwrap();
        appender.append(&labels, 1_000 + i * 10, if i % 11 == 0 { f64::NAN } else { i as f64 * 0.5 }).unwrap();
    }
    appender.commit(Durability::Buffered).unwrap();
    let series = head.select(i64::MIN, i64::MAX, &[]).unwrap();
    let data = tempfile::tempdir().unwrap();
    let (block, _) = write_block(os().as_ref(), data.path(), Ulid::new(5, 6), &series).unwrap();
    let read = read_block(os().as_ref(), &block).unwrap();
    let bits = |all: &[ballast::tsdb::SeriesSamples]| -> Vec<(Labels, Vec<(i64, u64)>)> {
        all.iter().map(|s| (s.labels.clone(), s.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect())).collect()
    };
    assert_eq!(bits(&read), bits(&series));
    // A flipped bit in a chunk is corruption naming the chunk file.
    let chunks = block.join("chunks").join("000001");
    let mut bytes = std::fs::read(&chunks).unwrap();
    bytes[40] ^= 4;
    std::fs::write(&chunks, bytes).unwrap();
    match read_block(os().as_ref(), &block) {
        Err(ballast::Error::Corruption { file, .. }) => assert_eq!(file, chunks),
        other => panic!("a damaged chunk must be corruption, got {other:?}"),
    }
}

/// `promtool tsdb create-blocks-from openmetrics` writes blocks from an OpenMetrics file;
/// ballast reads back exactly what the file holds.
#[test]
fn ballast_reads_the_blocks_promtool_writes() {
    let Some(promtool) = promtool() else { return };
    let work = tempfile::tempdir().unwrap();
    let mut text = String::new();
    let mut expected = Vec::new();
    for (name, instance) in [("up", "a"), ("up", "b"), ("requests_total", "a")] {
        text.push_str(&format!("# TYPE {name} gauge\n"));
        for i in 0..200i64 {
            // OpenMetrics timestamps are seconds.
            let (t, v) = (1_700_000_000 + i * 15, (i * 3) as f64 + 0.25);
            text.push_str(&format!("{name}{{instance=\"{instance}\"}} {v} {t}\n"));
            expected.push(format!("{{__name__=\"{name}\", instance=\"{instance}\"}} {v} {}", t * 1000));
        }
    }
    // OpenMetrics wants each metric family's lines together, which the loop above keeps.
    text.push_str("# EOF\n");
    let input = work.path().join("input.om");
    std::fs::write(&input, text).unwrap();
    let out = work.path().join("out");
    let made = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&out)
        .output()
        .unwrap();
    assert!(made.status.success(), "promtool create-blocks-from failed: {}", String::from_utf8_lossy(&made.stderr));
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&out).unwrap() {
        let block = entry.unwrap().path();
        if !block.join("meta.json").exists() {
            continue;
        }
        for series in read_block(os().as_ref(), &block).unwrap() {
            let labels: Vec<String> = series.labels.iter().map(|l| format!("{}=\"{}\"", l.name, l.value)).collect();
            for (t, v) in series.samples {
                found.push(format!("{{{}}} {} {t}", labels.join(", "), go_float(v)));
            }
        }
    }
    found.sort();
    expected.sort();
    assert!(!found.is_empty(), "promtool wrote no block into {}", out.display());
    assert_eq!(found, expected);
}
