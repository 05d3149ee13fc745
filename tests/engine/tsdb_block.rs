//! Blocks ballast writes are read by Prometheus's own tool: `promtool tsdb list` lists the
//! blocks a head compaction cut, with their stats, and `promtool tsdb dump` prints exactly the
//! series and samples they hold, value bits and all; and ballast reads the blocks `promtool
//! tsdb create-blocks-from` writes.
//!
//! Needs `promtool` (Debian's `prometheus` package; `.ci/run` installs it). Where it is
//! absent the test says so on stderr and passes, unless `BALLAST_REQUIRE_PROMTOOL=1` (set by
//! `.ci/run`), when it fails.

use std::process::Command;

use std::sync::Arc;

use ballast::clock::SystemClock;
use ballast::tsdb::block::{write_block, Block, NewBlock, Series, Ulid};
use ballast::tsdb::{Durability, Head, HeadOptions, Labels, Matcher, Tsdb, TsdbOptions};

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

/// A float as Go's `strconv.FormatFloat(v, 'g', -1, 64)` prints the values promtool dumps
/// (the ones this test writes: integers and a few decimals).
fn go_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else {
        format!("{v}")
    }
}

/// Ten series scraped every 15 s for 75 minutes, into a TSDB whose chunk range is 10
/// minutes: compaction cuts blocks of every whole range but the newest one and a half.
fn scraped_tsdb(directory: &std::path::Path) -> (Tsdb, Vec<(Labels, i64, f64)>) {
    let options = TsdbOptions { block_chunk_file_size: 64 << 10, ..TsdbOptions::with_chunk_range(600_000) };
    let mut tsdb = Tsdb::open(os(), Arc::new(SystemClock::new()), directory, options).unwrap();
    let start = 1_700_000_000_000i64;
    let mut written = Vec::new();
    for scrape in 0..300i64 {
        let mut appender = tsdb.appender();
        for instance in 0..5 {
            let up =
                Labels::new([("__name__", "up"), ("instance", &format!("host-{instance}")), ("job", "node")]).unwrap();
            let bytes = Labels::new([("__name__", "bytes_total"), ("instance", &format!("host-{instance}"))]).unwrap();
            let (t, v) = (start + scrape * 15_000 + instance, (scrape * 1024 + instance) as f64 / 4.0);
            appender.append(&up, start + scrape * 15_000, 1.0).unwrap();
            appender.append(&bytes, t, v).unwrap();
            written.push((up, start + scrape * 15_000, 1.0));
            written.push((bytes, t, v));
        }
        appender.commit(Durability::Buffered).unwrap();
    }
    (tsdb, written)
}

/// A block cut from a head: level 1, its own source, 4 KiB chunk files.
fn level_one(ulid: Ulid, min_time: i64, max_time: i64) -> NewBlock {
    NewBlock { ulid, min_time, max_time, level: 1, sources: Vec::new(), parents: Vec::new(), chunk_file_size: 4096 }
}

/// `{labels} value timestamp`, as `promtool tsdb dump` prints a sample.
fn dump_line(labels: &Labels, t: i64, v: f64) -> String {
    let labels: Vec<String> = labels.iter().map(|l| format!("{}=\"{}\"", l.name, l.value)).collect();
    format!("{{{}}} {} {t}", labels.join(", "), go_float(v))
}

#[test]
fn promtool_lists_and_dumps_the_blocks_of_a_compacted_tsdb_exactly() {
    let Some(promtool) = promtool() else { return };
    let data = tempfile::tempdir().unwrap();
    let (mut tsdb, written) = scraped_tsdb(data.path());
    let made = tsdb.compact_head().unwrap();
    assert!(made.len() >= 5, "75 minutes in 10-minute ranges: {made:?}");
    let floor = made.last().unwrap().max_time;
    assert!(tsdb.head().min_sample_time().unwrap() >= floor);
    assert!(tsdb.head().max_time().unwrap() - floor <= 900_000, "the head keeps at most 1.5 ranges");
    let in_blocks: Vec<&(Labels, i64, f64)> = written.iter().filter(|(_, t, _)| *t < floor).collect();
    let listed_samples: u64 = made.iter().map(|meta| meta.samples).sum();
    assert_eq!(listed_samples, in_blocks.len() as u64);

    let list = Command::new(promtool).args(["tsdb", "list"]).arg(data.path()).output().unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "promtool tsdb list failed: {}", String::from_utf8_lossy(&list.stderr));
    for meta in &made {
        let name = meta.ulid.to_string();
        let row =
            listed.lines().find(|line| line.starts_with(&name)).unwrap_or_else(|| panic!("{name} not in:\n{listed}"));
        let numbers: Vec<&str> = row.split_whitespace().collect();
        // ULID, min time, max time, duration, samples, chunks, series, size.
        assert_eq!(numbers[1..3], [meta.min_time.to_string(), meta.max_time.to_string()], "{row}");
        assert!(numbers.contains(&meta.samples.to_string().as_str()), "samples in {row:?}");
    }

    let dump = Command::new(promtool).args(["tsdb", "dump"]).arg(data.path()).output().unwrap();
    assert!(dump.status.success(), "promtool tsdb dump failed: {}", String::from_utf8_lossy(&dump.stderr));
    let mut dumped: Vec<String> = String::from_utf8_lossy(&dump.stdout).lines().map(str::to_string).collect();
    dumped.sort();
    let mut expected: Vec<String> = in_blocks.iter().map(|(labels, t, v)| dump_line(labels, *t, *v)).collect();
    expected.sort();
    assert_eq!(dumped, expected);

    // Blocks and head together hold every sample, once; and so after a reopen.
    let everything = |tsdb: &Tsdb| -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        for series in tsdb.select(i64::MIN, i64::MAX, &[]).unwrap() {
            all.extend(series.samples.iter().map(|&(t, v)| dump_line(&series.labels, t, v)));
        }
        all.sort();
        all
    };
    let mut all_written: Vec<String> = written.iter().map(|(labels, t, v)| dump_line(labels, *t, *v)).collect();
    all_written.sort();
    assert_eq!(everything(&tsdb), all_written);
    tsdb.close().unwrap();
    let options = TsdbOptions::with_chunk_range(600_000);
    let tsdb = Tsdb::open(os(), Arc::new(SystemClock::new()), data.path(), options).unwrap();
    assert_eq!(tsdb.blocks().count(), made.len());
    assert_eq!(everything(&tsdb), all_written);
}

#[test]
fn a_block_ballast_wrote_reads_back_whole() {
    let head_directory = tempfile::tempdir().unwrap();
    let mut head = Head::open(os(), head_directory.path(), HeadOptions::default()).unwrap();
    let mut appender = head.appender();
    for i in 0..5000i64 {
        let labels = Labels::new([("__name__", "m"), ("i", &(i % 7).to_string())]).unwrap();
        appender.append(&labels, 1_000 + i * 10, if i % 11 == 0 { f64::NAN } else { i as f64 * 0.5 }).unwrap();
    }
    appender.commit(Durability::Buffered).unwrap();
    let series: Vec<Series> = head
        .select(i64::MIN, i64::MAX, &[])
        .unwrap()
        .into_iter()
        .map(|series| Series { labels: series.labels, samples: series.samples })
        .collect();
    let data = tempfile::tempdir().unwrap();
    let new = level_one(Ulid::new(5, 6), 1_000, 60_000);
    let (block, meta) = write_block(os().as_ref(), data.path(), new, &series).unwrap();
    assert_eq!((meta.series, meta.samples, meta.sources.clone()), (7, 5000, vec![meta.ulid]));
    let read = Block::open(os().as_ref(), &block).unwrap().all_series().unwrap();
    let bits = |all: &[Series]| -> Vec<(Labels, Vec<(i64, u64)>)> {
        all.iter().map(|s| (s.labels.clone(), s.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect())).collect()
    };
    assert_eq!(bits(&read), bits(&series));
    // 4 KiB chunk files: the next begins when one is full, and each is cut to its size.
    let files: Vec<u64> =
        (1..=3).filter_map(|n| std::fs::metadata(block.join(format!("chunks/{n:06}"))).ok()).map(|m| m.len()).collect();
    assert!(files.len() >= 2 && files.iter().all(|&length| length <= 4096 && length > 8), "{files:?}");
    // A flipped bit in a chunk is corruption naming the chunk file.
    let chunks = block.join("chunks").join("000001");
    let mut bytes = std::fs::read(&chunks).unwrap();
    bytes[40] ^= 4;
    std::fs::write(&chunks, bytes).unwrap();
    match Block::open(os().as_ref(), &block).and_then(|block| block.all_series()) {
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
    let tsdb = Tsdb::open(os(), Arc::new(SystemClock::new()), &out, TsdbOptions::default()).unwrap();
    assert!(tsdb.blocks().count() > 0, "promtool wrote no block into {}", out.display());
    let found_by = |matchers: &[Matcher]| -> Vec<String> {
        let mut found = Vec::new();
        for series in tsdb.select(i64::MIN, i64::MAX, matchers).unwrap() {
            found.extend(series.samples.iter().map(|&(t, v)| dump_line(&series.labels, t, v)));
        }
        found.sort();
        found
    };
    expected.sort();
    assert_eq!(found_by(&[]), expected);
    let instance_a: Vec<String> = expected.iter().filter(|line| line.contains("instance=\"a\"")).cloned().collect();
    assert_eq!(found_by(&[Matcher::equal("instance", "a")]), instance_a);
    let up_b: Vec<String> =
        expected.iter().filter(|line| line.starts_with("{__name__=\"up\", instance=\"b\"")).cloned().collect();
    assert_eq!(found_by(&[Matcher::equal("__name__", "up"), Matcher::equal("instance", "b")]), up_b);
    // A window: the first 50 samples of each series.
    let window = tsdb.select(1_700_000_000_000, 1_700_000_000_000 + 49 * 15_000, &[]).unwrap();
    assert!(window.iter().all(|series| series.samples.len() == 50), "{window:?}");
}

/// The bytes of a two-series block, pinned: the index (symbols, series, postings, offset
/// table, TOC), the chunk file, an empty tombstones file and meta.json. A change here is a
/// format change Prometheus's readers must still accept (docs/design/prometheus-block-format.md).
#[test]
fn block_byte_layout() {
    let series = |name: &str, samples: &[(i64, f64)]| Series {
        labels: Labels::new([("__name__", name), ("job", "a")]).unwrap(),
        samples: samples.to_vec(),
    };
    let all =
        [series("down", &[(1_000, 0.0), (2_000, 1.0)]), series("up", &[(1_000, 1.0), (2_000, 1.0), (3_000, 1.0)])];
    let data = tempfile::tempdir().unwrap();
    let new = level_one(Ulid::new(1_700_000_000_000, 1), 1_000, 4_000);
    let (block, _) = write_block(os().as_ref(), data.path(), new, &all).unwrap();
    let read = |name: &str| std::fs::read(block.join(name)).unwrap();
    insta::assert_snapshot!("block_index", crate::hexdump(&read("index"), usize::MAX));
    insta::assert_snapshot!("block_chunks", crate::hexdump(&read("chunks/000001"), usize::MAX));
    insta::assert_snapshot!("block_tombstones", crate::hexdump(&read("tombstones"), usize::MAX));
    insta::assert_snapshot!("block_meta", String::from_utf8(read("meta.json")).unwrap());
}

/// Any damage to any file of a block (a byte changed anywhere, or the file cut short) is read
/// or refused with an error, never a panic, and no length field allocates more than its file
/// holds: 400 damaged copies of a real block, each opened and read whole.
#[test]
fn a_block_damaged_anywhere_is_refused_without_panic() {
    use rand::{Rng, SeedableRng};
    let series: Vec<Series> = (0..5)
        .map(|i| Series {
            labels: Labels::new([("__name__", "m"), ("i", &i.to_string())]).unwrap(),
            samples: (0..2000).map(|t| (t * 1000 + i, (t * i) as f64)).collect(),
        })
        .collect();
    let data = tempfile::tempdir().unwrap();
    let new = level_one(Ulid::new(9, 9), 0, 2_000_000);
    let (block, _) = write_block(os().as_ref(), data.path(), new, &series).unwrap();
    let files = ["index", "tombstones", "meta.json", "chunks/000001", "chunks/000002"];
    let originals: Vec<Vec<u8>> = files.iter().map(|name| std::fs::read(block.join(name)).unwrap()).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    let mut refused = 0;
    for _ in 0..400 {
        let which = rng.gen_range(0..files.len());
        let mut bytes = originals[which].clone();
        if rng.gen_bool(0.2) {
            bytes.truncate(rng.gen_range(0..bytes.len()));
        } else {
            let at = rng.gen_range(0..bytes.len());
            bytes[at] = rng.gen();
        }
        std::fs::write(block.join(files[which]), &bytes).unwrap();
        match Block::open(os().as_ref(), &block).and_then(|block| block.all_series()) {
            Ok(_) => {}
            Err(ballast::Error::Corruption { file, .. } | ballast::Error::BadFileName { file }) => {
                assert!(file.starts_with(&block), "{}", file.display());
                refused += 1;
            }
            Err(error) => panic!("damage in {} gave {error}", files[which]),
        }
        std::fs::write(block.join(files[which]), &originals[which]).unwrap();
    }
    assert!(refused > 300, "most damage is seen: {refused} of 400");
}
