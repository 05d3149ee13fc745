//! Head chunk files on the real filesystem: full chunks leave memory for them; damage to a
//! sealed one fails a strict open and a repairing one restores everything from the WAL; a
//! torn tail of the last one is cut silently.

use std::path::{Path, PathBuf};

use ballast::tsdb::{Durability, Head, HeadOptions, Labels};
use ballast::{CorruptionReason, Error, RecoveryMode};

use crate::{digest, os};

fn options(recovery_mode: RecoveryMode) -> HeadOptions {
    HeadOptions { chunk_file_size: 4096, recovery_mode, ..HeadOptions::default() }
}

type Contents = Vec<(Labels, Vec<(i64, u64)>)>;

fn contents(head: &Head) -> Contents {
    let selected = head.select(i64::MIN, i64::MAX, &[]).expect("reads back");
    selected.into_iter().map(|s| (s.labels, s.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect())).collect()
}

/// 20 series of 600 samples each, a commit per scrape: about 100 full chunks.
fn fill(directory: &Path) -> Contents {
    let mut head = Head::open(os(), directory, options(RecoveryMode::Strict)).unwrap();
    let series: Vec<Labels> =
        (0..20).map(|i| Labels::new([("__name__", "m"), ("i", &i.to_string())]).unwrap()).collect();
    for scrape in 0..600i64 {
        let mut appender = head.appender();
        for (index, labels) in series.iter().enumerate() {
            appender.append(labels, scrape * 15_000, (scrape * index as i64) as f64).unwrap();
        }
        appender.commit(Durability::Buffered).unwrap();
    }
    head.sync().unwrap();
    let stats = head.stats();
    assert!(stats.chunks_in_memory <= 2 * series.len() as u64, "{stats:?}");
    assert!(stats.chunks_in_files >= 80, "{stats:?}");
    assert_eq!(stats.series, 20);
    let contents = contents(&head);
    head.close().unwrap();
    contents
}

fn chunk_files(directory: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(directory.join("chunks_head")).unwrap().map(|entry| entry.unwrap().path()).collect();
    files.sort();
    files
}

#[test]
fn full_chunks_leave_memory_for_chunk_files_and_read_back_after_a_reopen() {
    let directory = tempfile::tempdir().unwrap();
    let expected = fill(directory.path());
    assert!(chunk_files(directory.path()).len() >= 3, "{:?}", chunk_files(directory.path()));
    let head = Head::open(os(), directory.path(), options(RecoveryMode::Strict)).unwrap();
    assert!(head.stats().chunks_in_memory <= 20, "replay kept {:?}", head.stats());
    assert_eq!(contents(&head), expected);
}

#[test]
fn a_damaged_head_chunk_file_fails_a_strict_open_and_a_repair_restores_it_from_the_wal() {
    let directory = tempfile::tempdir().unwrap();
    let expected = fill(directory.path());
    let sealed = chunk_files(directory.path())[0].clone();
    let mut bytes = std::fs::read(&sealed).unwrap();
    bytes[200] ^= 0x20;
    std::fs::write(&sealed, &bytes).unwrap();
    let before = digest(directory.path());
    match Head::open(os(), directory.path(), options(RecoveryMode::Strict)) {
        Err(Error::Corruption { file, offset, reason: CorruptionReason::Checksum { .. }, .. }) => {
            assert_eq!(file, sealed);
            assert!((16..=200).contains(&offset), "the damaged entry begins at {offset}");
        }
        other => panic!("a damaged sealed chunk file must fail a strict open, got {other:?}"),
    }
    assert_eq!(digest(directory.path()), before, "a failed open changes nothing");
    let head = Head::open(os(), directory.path(), options(RecoveryMode::Repair)).unwrap();
    assert_eq!(contents(&head), expected, "every sample restored from the WAL");
    let report = head.recovery_report();
    assert!(matches!(&report.chunk_file_damage, Some((file, _, CorruptionReason::Checksum { .. })) if *file == sealed));
    assert!(report.chunk_files_removed > 0, "the files after the damage go: {report:?}");
    drop(head);
    let head = Head::open(os(), directory.path(), options(RecoveryMode::Strict)).expect("repaired for good");
    assert_eq!(contents(&head), expected);
}

#[test]
fn a_torn_tail_of_the_last_chunk_file_is_cut_silently() {
    let directory = tempfile::tempdir().unwrap();
    let expected = fill(directory.path());
    let last = chunk_files(directory.path()).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    let end = bytes.iter().rposition(|&byte| byte != 0).unwrap() + 1;
    // Half an entry after the last: a write the crash cut short.
    bytes.truncate(end);
    bytes.extend_from_slice(&[7u8; 30]);
    std::fs::write(&last, &bytes).unwrap();
    let head = Head::open(os(), directory.path(), options(RecoveryMode::Strict)).expect("a torn tail is no damage");
    assert_eq!(contents(&head), expected);
    let (file, _, _) = head.recovery_report().chunk_file_damage.clone().expect("the torn tail is reported");
    assert_eq!(file, last);
}
