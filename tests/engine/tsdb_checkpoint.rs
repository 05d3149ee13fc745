//! The head's deletions, truncations and checkpoints on the real filesystem: what a deletion
//! hides, what a truncation drops (and that its refs are never issued again), that replay from
//! a checkpoint and the WAL after it equals replay from the whole WAL, and that a damaged
//! checkpoint fails an open in both modes without changing the directory.

use std::path::Path;

use ballast::tsdb::{AppendError, Durability, Head, HeadOptions, Labels, MatchKind, Matcher, SeriesRef};
use ballast::{Error, RecoveryMode};

use crate::{digest, os};

fn labels(name: &str, job: &str) -> Labels {
    Labels::new([("__name__", name), ("job", job)]).expect("valid labels")
}

/// Small WAL segments, so that a few hundred commits span many.
fn options() -> HeadOptions {
    HeadOptions { wal_segment_size: 8192, wal_page_size: 1024, chunk_range: 600_000, ..HeadOptions::default() }
}

fn open(directory: &Path) -> Head {
    Head::open(os(), directory, options()).expect("opens")
}

/// Everything a query returns, with value bits, and the refs of the series.
type Contents = Vec<(SeriesRef, Labels, Vec<(i64, u64)>)>;

fn contents(head: &Head) -> Contents {
    head.select(i64::MIN, i64::MAX, &[])
        .expect("reads back")
        .into_iter()
        .map(|series| (series.series, series.labels, series.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect()))
        .collect()
}

fn job(value: &str) -> Matcher {
    Matcher::new(MatchKind::Equal, "job", value).expect("valid")
}

/// A workload with commits over 12 series, deletions and truncations; `checkpoint` says after
/// which steps the head checkpoints (a truncation always does).
fn run(head: &mut Head, checkpoint: impl Fn(u64) -> bool) {
    for step in 0..400u64 {
        let mut appender = head.appender();
        for series in 0..3 {
            let index = (step * 3 + series) % 12;
            let labels = labels(&format!("m{}", index % 4), &format!("j{}", index % 3));
            let value = if step % 17 == 0 { f64::NAN } else { (step * 7 + series) as f64 };
            appender.append(&labels, (step * 1000) as i64, value).unwrap();
        }
        appender.commit(Durability::Buffered).unwrap();
        if step % 50 == 25 {
            head.delete((step as i64 - 30) * 1000, (step as i64 - 10) * 1000, &[job("j1")], Durability::Buffered)
                .unwrap();
        }
        if step % 120 == 119 {
            head.truncate((step as i64 - 100) * 1000).unwrap();
        } else if checkpoint(step) {
            head.checkpoint().unwrap();
        }
    }
    head.sync().unwrap();
}

#[test]
fn replay_from_a_checkpoint_and_the_wal_after_it_equals_replay_from_the_whole_wal() {
    let (whole, checkpointed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut head = open(whole.path());
    // Truncations checkpoint too; these steps add checkpoints between them.
    run(&mut head, |_| false);
    let expected = contents(&head);
    let samples: usize = expected.iter().map(|(_, _, samples)| samples.len()).sum();
    // 400 steps of 3 samples; the last truncation (at step 359, to 259 s) leaves 140 steps,
    // and deletions of job j1 hide some of them.
    assert!(samples > 300 && samples < 140 * 3, "{samples} samples");
    drop(head);
    let mut head = open(checkpointed.path());
    run(&mut head, |step| step % 37 == 0);
    assert_eq!(contents(&head), expected, "live");
    drop(head);
    let head = open(checkpointed.path());
    assert_eq!(contents(&head), expected, "replayed");
    assert_eq!(contents(&open(whole.path())), expected);
    let checkpoints: Vec<String> = std::fs::read_dir(checkpointed.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("checkpoint."))
        .collect();
    assert_eq!(checkpoints.len(), 1, "older checkpoints go: {checkpoints:?}");
    let segments = std::fs::read_dir(checkpointed.path().join("wal")).unwrap().count();
    assert!(segments <= 3, "the covered segments go, {segments} left");
}

#[test]
fn a_deletion_hides_its_range_up_to_the_newest_sample_and_survives_a_reopen() {
    let directory = tempfile::tempdir().unwrap();
    let mut head = open(directory.path());
    let (a, b) = (labels("up", "a"), labels("up", "b"));
    let mut appender = head.appender();
    for t in 0..10 {
        appender.append(&a, t * 10, t as f64).unwrap();
        appender.append(&b, t * 10, t as f64).unwrap();
    }
    appender.commit(Durability::Buffered).unwrap();
    assert_eq!(head.delete(20, 1_000, &[job("a")], Durability::Synced).unwrap(), 1);
    assert_eq!(head.delete(20, 1_000, &[job("a")], Durability::Synced).unwrap(), 0, "nothing left there");
    let mut appender = head.appender();
    appender.append(&a, 100, 10.0).unwrap();
    assert!(matches!(appender.append(&a, 50, 1.0), Err(AppendError::OutOfOrder { .. })), "deletion keeps the newest");
    appender.commit(Durability::Synced).unwrap();
    let expected = vec![(0, 0.0f64.to_bits()), (10, 1.0f64.to_bits()), (100, 10.0f64.to_bits())];
    let found = contents(&head);
    assert_eq!(found[0].2, expected, "the later sample at 100 is not hidden");
    assert_eq!(found[1].2.len(), 10, "job b untouched");
    drop(head);
    assert_eq!(contents(&open(directory.path())), found);
}

#[test]
fn a_truncation_drops_old_samples_and_empty_series_whose_refs_are_never_issued_again() {
    let directory = tempfile::tempdir().unwrap();
    let mut head = open(directory.path());
    let (old, young) = (labels("old", "a"), labels("young", "a"));
    let mut appender = head.appender();
    let old_ref = appender.append(&old, 1_000, 1.0).unwrap();
    let young_ref = appender.append(&young, 1_000, 1.0).unwrap();
    appender.append_ref(young_ref, 200_000, 2.0).unwrap();
    appender.commit(Durability::Buffered).unwrap();
    head.truncate(100_000).unwrap();
    assert_eq!(head.labels_of(old_ref), None, "a series left without samples goes");
    assert_eq!(head.label_values("__name__"), ["young"]);
    let mut appender = head.appender();
    assert!(matches!(appender.append_ref(young_ref, 99_999, 1.0), Err(AppendError::OutOfBounds { .. })));
    let again = appender.append(&old, 200_000, 3.0).unwrap();
    assert!(again > young_ref, "ref {again} was issued before");
    appender.commit(Durability::Synced).unwrap();
    let found = contents(&head);
    assert_eq!(
        found,
        vec![
            (again, old.clone(), vec![(200_000, 3.0f64.to_bits())]),
            (young_ref, young.clone(), vec![(200_000, 2.0f64.to_bits())]),
        ]
    );
    drop(head);
    let mut head = open(directory.path());
    assert_eq!(contents(&head), found);
    let mut appender = head.appender();
    assert!(
        matches!(appender.append_ref(young_ref, 99_999, 1.0), Err(AppendError::OutOfBounds { .. })),
        "after a reopen"
    );
}

#[test]
fn a_damaged_checkpoint_fails_an_open_in_both_modes_and_changes_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let mut head = open(directory.path());
    run(&mut head, |step| step == 390);
    head.close().unwrap();
    let name = std::fs::read_dir(directory.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .find(|name| name.starts_with("checkpoint."))
        .expect("a checkpoint");
    let path = directory.path().join(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0x08;
    std::fs::write(&path, &bytes).unwrap();
    let before = digest(directory.path());
    for recovery_mode in [RecoveryMode::Strict, RecoveryMode::Repair] {
        match Head::open(os(), directory.path(), HeadOptions { recovery_mode, ..options() }) {
            Err(Error::Corruption { file, offset, .. }) => {
                assert_eq!(file, path);
                assert!(offset <= 100, "the damaged record begins at {offset}");
            }
            other => panic!("{recovery_mode:?}: a damaged checkpoint must fail the open, got {other:?}"),
        }
        assert_eq!(digest(directory.path()), before, "{recovery_mode:?}");
    }
}
