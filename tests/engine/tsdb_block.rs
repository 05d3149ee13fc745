//! Blocks ballast writes are read by Prometheus's own tool: `promtool tsdb list` lists the
//! block with its stats, and `promtool tsdb dump` prints exactly the series and samples the
//! head held, value bits and all.
//!
//! Needs `promtool` (Debian's `prometheus` package; `.ci/run` installs it). Where it is
//! absent the test says so on stderr and passes, unless `BALLAST_REQUIRE_PROMTOOL=1` (set by
//! `.ci/run`), when it fails.

use std::process::Command;

use ballast::tsdb::block::{write_block, Ulid};
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
