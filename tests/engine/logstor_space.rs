//! logstor's disk use stays bounded by its live data without the caller's help, and a store
//! closed with `close` verifies clean.
//!
//! The story (issue 11, item 4): `examples/logstor.rs` holds the store's mutex for its whole
//! write loop, so the `Maintenance` thread never got a turn. Six runs with the same live data
//! grew the store from 4 used segments to 37 (22 when we measured it: the thread's few turns
//! are luck), because nothing but maintenance separated or compacted, and every run left its
//! mixed segments behind. And `logstor::verify` reported every segment the last run was writing
//! as torn, because closing the store synced it but never sealed its open segments.

use ballast::logstor::{self, Logstor, LogstorOptions};
use ballast::vfs::OsVfs;

use crate::os;

/// The example's options: 64 KiB segments, 16 to a data file, 16 groups, batches of 4.
fn example_options() -> LogstorOptions {
    LogstorOptions { segment_size: 64 << 10, segments_per_file: 16, ..LogstorOptions::default() }
}

/// `close` seals every segment the store was writing (the mixed one and the groups'): `verify`
/// finds none torn and a reopen seals nothing. A store dropped without `close` is another
/// matter: its open segments were being written when it went, so `verify` counts them torn and
/// the next open seals exactly those.
#[test]
fn a_closed_store_verifies_with_no_torn_segment() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = Logstor::open(os(), directory.path(), example_options()).unwrap();
    for key in 0..300u32 {
        store.put(format!("user:{key}").as_bytes(), b"a value").unwrap();
    }
    // Separate, so group segments are open as well as the mixed one.
    store.maintain_to_quiescence().unwrap();
    store.put(b"user:1", b"a newer value").unwrap();
    store.close().unwrap();
    let report = logstor::verify(&OsVfs::new(), directory.path()).unwrap();
    assert!(report.problem.is_none(), "{report:?}");
    assert_eq!(report.torn_segments, 0, "{report:?}");
    let mut store = Logstor::open(os(), directory.path(), example_options()).unwrap();
    assert_eq!(store.recovery_report().torn_segments_sealed, 0, "{:?}", store.recovery_report());
    assert_eq!(store.get(b"user:1").unwrap(), Some(b"a newer value".to_vec()));

    store.put(b"user:2", b"written, synced, never closed").unwrap();
    store.sync().unwrap();
    drop(store);
    let report = logstor::verify(&OsVfs::new(), directory.path()).unwrap();
    assert!(report.torn_segments > 0, "the dropped store's open segments: {report:?}");
    let store = Logstor::open(os(), directory.path(), example_options()).unwrap();
    assert_eq!(store.recovery_report().torn_segments_sealed, report.torn_segments);
    assert_eq!(store.get(b"user:2").unwrap(), Some(b"written, synced, never closed".to_vec()));
}
