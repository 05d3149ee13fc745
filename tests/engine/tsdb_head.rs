//! The TSDB head on the real filesystem: appends and their errors, commits and rollbacks,
//! queries, and what a reopen rebuilds from the WAL (series, refs, samples).

use ballast::tsdb::{AppendError, Durability, Head, HeadOptions, Labels, MatchKind, Matcher};

use crate::os;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(pairs.iter().copied()).expect("valid labels")
}

fn open(directory: &std::path::Path) -> Head {
    Head::open(os(), directory, HeadOptions::default()).expect("opens")
}

fn all(head: &Head) -> Vec<(Labels, Vec<(i64, f64)>)> {
    let matcher = Matcher::new(MatchKind::Regex, "__name__", ".*").expect("compiles");
    head.select(i64::MIN, i64::MAX, &[matcher])
        .expect("reads back")
        .into_iter()
        .map(|series| (series.labels, series.samples))
        .collect()
}

#[test]
fn every_append_error_is_typed_and_leaves_the_batch_usable() {
    let directory = tempfile::tempdir().unwrap();
    let mut head = open(directory.path());
    let up = labels(&[("__name__", "up"), ("job", "api")]);
    let mut appender = head.appender();
    let series = appender.append(&up, 0, 1.0).expect("a sample at t = 0 is kept");
    appender.append_ref(series, 10, 2.0).unwrap();
    assert!(matches!(appender.append_ref(series, 5, 3.0), Err(AppendError::OutOfOrder { t: 5, newest: 10, .. })));
    assert!(matches!(appender.append_ref(series, 10, 9.0), Err(AppendError::Duplicate { t: 10, .. })));
    appender.append_ref(series, 10, 2.0).expect("an identical resend is accepted");
    assert!(matches!(appender.append_ref(999, 20, 1.0), Err(AppendError::UnknownRef { series: 999 })));
    appender.commit(Durability::Synced).unwrap();
    assert_eq!(all(&head), vec![(up.clone(), vec![(0, 1.0), (10, 2.0)])]);
    // Out of bounds: more than half a chunk range (an hour) before the newest sample.
    let mut appender = head.appender();
    appender.append_ref(series, 2 * 3_600_000, 3.0).unwrap();
    appender.commit(Durability::Buffered).unwrap();
    let mut appender = head.appender();
    let late = appender.append(&labels(&[("__name__", "late")]), 100, 1.0);
    assert!(matches!(late, Err(AppendError::OutOfBounds { t: 100, min_valid: 3_600_000 })));
}

#[test]
fn a_rollback_shows_nothing_and_its_new_series_keep_their_ref() {
    let directory = tempfile::tempdir().unwrap();
    let mut head = open(directory.path());
    let a = labels(&[("__name__", "a")]);
    let mut appender = head.appender();
    let first = appender.append(&a, 1, 1.0).unwrap();
    appender.rollback();
    assert!(all(&head).is_empty());
    assert_eq!(head.labels_of(first), None, "not committed: unknown to queries");
    let mut appender = head.appender();
    assert_eq!(appender.append(&a, 2, 2.0).unwrap(), first, "the same labels get the same ref");
    appender.commit(Durability::Synced).unwrap();
    assert_eq!(head.labels_of(first), Some(&a));
    assert_eq!(all(&head), vec![(a, vec![(2, 2.0)])]);
}

/// A batch's newest sample of a series lives on the series, marked with the batch's number
/// (the appender no longer keeps a map of its own): a batch rolled back, dropped, or refused
/// as too large must leave nothing a later batch takes for its own newest sample.
#[test]
fn a_batch_that_never_committed_constrains_no_later_batch() {
    let directory = tempfile::tempdir().unwrap();
    let mut head = open(directory.path());
    let a = labels(&[("__name__", "a")]);
    let mut appender = head.appender();
    let series = appender.append(&a, 1_000, 1.0).unwrap();
    appender.commit(Durability::Buffered).unwrap();
    let mut appender = head.appender();
    appender.append_ref(series, 5_000, 5.0).unwrap();
    appender.rollback();
    let mut appender = head.appender();
    appender.append_ref(series, 4_000, 4.0).unwrap();
    drop(appender);
    let mut appender = head.appender();
    appender.append_ref(series, 3_000, 3.0).expect("only the committed 1,000 is older");
    appender.append_ref(series, 3_000, 3.0).expect("an identical resend in the same batch");
    assert!(matches!(appender.append_ref(series, 2_000, 2.0), Err(AppendError::OutOfOrder { newest: 3_000, .. })));
    appender.commit(Durability::Synced).unwrap();
    assert_eq!(all(&head), vec![(a, vec![(1_000, 1.0), (3_000, 3.0)])]);
}

#[test]
fn a_reopen_rebuilds_series_refs_and_samples_and_never_reissues_a_ref() {
    let directory = tempfile::tempdir().unwrap();
    let (kept, lost, values);
    {
        let mut head = open(directory.path());
        let mut appender = head.appender();
        kept = appender.append(&labels(&[("__name__", "kept")]), 0, f64::NAN).unwrap();
        appender.append_ref(kept, 15_000, -0.0).unwrap();
        appender.commit(Durability::Synced).unwrap();
        values = all(&head);
        let mut appender = head.appender();
        lost = appender.append(&labels(&[("__name__", "lost")]), 30_000, 1.0).unwrap();
        appender.commit(Durability::Buffered).unwrap();
        // Dropped without a sync, as a crashing process would: the buffered commit is lost.
    }
    let mut head = open(directory.path());
    assert_eq!(head.labels_of(kept), Some(&labels(&[("__name__", "kept")])));
    assert_eq!(head.labels_of(lost), None);
    let reopened = all(&head);
    assert_eq!(reopened.len(), 1);
    assert_eq!(reopened[0].1.len(), 2);
    assert!(reopened[0].1[0].1.is_nan() && reopened[0].1[1].1.to_bits() == (-0.0f64).to_bits());
    assert_eq!(values.len(), 1);
    let mut appender = head.appender();
    let fresh = appender.append(&labels(&[("__name__", "fresh")]), 45_000, 1.0).unwrap();
    appender.commit(Durability::Synced).unwrap();
    assert!(fresh > lost && fresh > kept, "ref {fresh} issued again (kept {kept}, lost {lost})");
}

/// tsdb seed 16 of `ballast-sim`: a synced commit whose every sample had been refused returned
/// without a sync, so the buffered commit before it was lost by the crash that followed,
/// though a synced commit promises every commit before it durable.
#[test]
fn an_empty_synced_commit_still_makes_earlier_commits_durable() {
    let directory = tempfile::tempdir().unwrap();
    {
        let mut head = open(directory.path());
        let mut appender = head.appender();
        appender.append(&labels(&[("__name__", "a")]), 10, 1.0).unwrap();
        appender.commit(Durability::Buffered).unwrap();
        head.appender().commit(Durability::Synced).unwrap();
        // Dropped without a close, as a crashing process would.
    }
    let head = open(directory.path());
    assert_eq!(all(&head), vec![(labels(&[("__name__", "a")]), vec![(10, 1.0)])]);
}

#[test]
fn a_damaged_refs_file_fails_a_strict_open_and_a_repair_skips_far_ahead() {
    let directory = tempfile::tempdir().unwrap();
    let first = {
        let mut head = open(directory.path());
        let mut appender = head.appender();
        let first = appender.append(&labels(&[("__name__", "a")]), 10, 1.0).unwrap();
        appender.commit(Durability::Synced).unwrap();
        head.close().unwrap();
        first
    };
    let refs = directory.path().join("refs");
    let mut bytes = std::fs::read(&refs).unwrap();
    bytes[9] ^= 0x40;
    std::fs::write(&refs, &bytes).unwrap();
    match Head::open(os(), directory.path(), HeadOptions::default()) {
        Err(ballast::Error::Corruption { file, .. }) => assert_eq!(file, refs),
        other => panic!("a damaged refs file must fail a strict open, got {other:?}"),
    }
    let repair = HeadOptions { recovery_mode: ballast::RecoveryMode::Repair, ..HeadOptions::default() };
    let mut head = Head::open(os(), directory.path(), repair).expect("a repair open goes on");
    assert_eq!(head.labels_of(first), Some(&labels(&[("__name__", "a")])));
    let mut appender = head.appender();
    let next = appender.append(&labels(&[("__name__", "b")]), 20, 1.0).unwrap();
    assert!(next > first + (1 << 31), "ref {next} could have been issued before the damage");
}

#[test]
fn a_head_refuses_another_structures_directory_and_a_wal_refuses_a_heads() {
    let directory = tempfile::tempdir().unwrap();
    crate::write_log(directory.path(), 40);
    match Head::open(os(), directory.path(), HeadOptions::default()) {
        Err(ballast::Error::ForeignDirectory { expected, .. }) => assert_eq!(expected, "a ballast TSDB head"),
        other => panic!("a head opened on a WAL's directory: {other:?}"),
    }
    let head_directory = tempfile::tempdir().unwrap();
    let mut head = open(head_directory.path());
    let mut appender = head.appender();
    appender.append(&labels(&[("__name__", "a")]), 1, 1.0).unwrap();
    appender.commit(Durability::Synced).unwrap();
    head.close().unwrap();
    assert!(ballast::wal::Wal::open(os(), head_directory.path(), ballast::wal::WalOptions::default()).is_err());
}
