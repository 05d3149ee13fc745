//! Opening logstor (issue 11): an option that disagrees with what `logstor.meta` records is
//! refused with `OptionsMismatch` in every mode; an option not on disk may change between
//! opens; and an open that fails, for any reason, leaves the directory as it found it (the
//! `LOCK` file aside, which `digest` skips).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use ballast::commitlog::{Commitlog, CommitlogOptions};
use ballast::logstor::format::{self, BufferKind, BLOCK_SIZE};
use ballast::logstor::{Logstor, LogstorOptions};
use ballast::{CorruptionReason, Error, RecoveryMode};

use crate::{digest, os, write_log};

const MODES: [RecoveryMode; 2] = [RecoveryMode::Strict, RecoveryMode::Repair];
const SEGMENT_SIZE: u64 = 16 << 10;
const SEGMENTS_PER_FILE: u64 = 4;
const GROUPS_COUNT: u32 = 4;

fn options(recovery_mode: RecoveryMode) -> LogstorOptions {
    LogstorOptions {
        segment_size: SEGMENT_SIZE,
        segments_per_file: SEGMENTS_PER_FILE,
        write_buffer_size: 8192,
        groups_count: GROUPS_COUNT,
        read_cache_size: 64 << 10,
        recovery_mode,
        ..LogstorOptions::default()
    }
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn key(index: u64) -> Vec<u8> {
    format!("key-{index:05}").into_bytes()
}

fn value(index: u64, version: u64) -> Vec<u8> {
    format!("value-{index}-{version}-").repeat((index % 13 + 1) as usize).into_bytes()
}

fn contents(store: &Logstor) -> Model {
    store.scan().map(Result::unwrap).collect()
}

/// Puts keys `keys` at `version` (deleting every fifth) into the store and the model.
fn write_keys(store: &mut Logstor, model: &mut Model, keys: std::ops::Range<u64>, version: u64) {
    for index in keys {
        if index % 5 == 4 {
            store.delete(&key(index)).unwrap();
            model.remove(&key(index));
        } else {
            store.put(&key(index), &value(index, version)).unwrap();
            model.insert(key(index), value(index, version));
        }
    }
}

/// A store that any open which writes would change: sealed segments in two data files, a
/// segment whose buffers were synced but never sealed (the next open seals it), and a leftover
/// temp file (the next open removes it). Returns what it holds.
fn write_store(directory: &Path) -> Model {
    let mut store = Logstor::open(os(), directory, options(RecoveryMode::Strict)).unwrap();
    let mut model = Model::new();
    write_keys(&mut store, &mut model, 0..400, 0);
    write_keys(&mut store, &mut model, 0..200, 1);
    store.sync().unwrap();
    assert!(store.stats().segments_total > SEGMENTS_PER_FILE, "the store spans two data files");
    // Dropped without closing: the open segment's synced buffers are left without a seal.
    drop(store);
    fs::write(directory.join("data-00002.ls.tmp"), b"a data file being created").unwrap();
    model
}

/// Where each segment of data file 0 lies in it.
fn segment_range(segment: u64) -> std::ops::Range<usize> {
    let start = (segment * SEGMENT_SIZE) as usize;
    start..start + SEGMENT_SIZE as usize
}

/// The offset of the seal of `segment` of data file 0, if it is sealed.
fn seal_offset(file: &[u8], segment: u64) -> Option<u64> {
    let bytes = &file[segment_range(segment)];
    (0..SEGMENT_SIZE / BLOCK_SIZE).map(|block| block * BLOCK_SIZE).find(|&offset| {
        let at = offset as usize;
        format::decode_buffer_header(&bytes[at..], segment, offset, SEGMENT_SIZE - offset)
            .is_ok_and(|header| header.kind == BufferKind::Seal)
    })
}

/// Turns `write_store`'s store into one a strict open must refuse: the first sealed segment of
/// data file 0 loses its seal (a torn segment, which an open seals again) and a record of the
/// next sealed one is damaged. (Which segments are sealed depends on what the write path's
/// reclaiming freed and reused.) Returns the damaged segment.
fn damage_store(directory: &Path) -> u64 {
    let path = directory.join(format::data_file_name(0));
    let mut file = fs::read(&path).unwrap();
    let sealed: Vec<(u64, u64)> = (0..SEGMENTS_PER_FILE)
        .filter_map(|segment| Some((segment, seal_offset(&file, segment)?)))
        .filter(|&(_, seal)| seal > 0)
        .collect();
    let [(torn, seal), (damaged, _), ..] = sealed[..] else { panic!("two sealed segments in data file 0: {sealed:?}") };
    let seal = segment_range(torn).start + seal as usize;
    file[seal..seal + BLOCK_SIZE as usize].fill(0);
    file[segment_range(damaged).start + 100] ^= 0x40;
    fs::write(&path, file).unwrap();
    damaged
}

#[track_caller]
fn check_refused_unchanged(directory: &Path, options: LogstorOptions, expected: impl Fn(&Error) -> bool) {
    let before = digest(directory);
    let mode = options.recovery_mode;
    match Logstor::open(os(), directory, options) {
        Err(error) if expected(&error) => {}
        Err(error) => panic!("{mode:?}: unexpected error: {error}"),
        Ok(_) => panic!("{mode:?}: the open succeeded"),
    }
    assert_eq!(digest(directory), before, "{mode:?}: the failed open changed the directory");
}

#[track_caller]
fn check_mismatch(field: &'static str, change: fn(&mut LogstorOptions), on_disk: u64, given: u64) {
    for mode in MODES {
        let directory = tempfile::tempdir().unwrap();
        let model = write_store(directory.path());
        let mut changed = options(mode);
        change(&mut changed);
        let meta = directory.path().join(format::META_FILE_NAME);
        check_refused_unchanged(directory.path(), changed, |error| {
            matches!(error, Error::OptionsMismatch { file, field: f, on_disk: d, given: g }
                if *file == meta && *f == field && *d == on_disk && *g == given)
        });
        let store = Logstor::open(os(), directory.path(), options(mode)).unwrap();
        assert_eq!(contents(&store), model, "{field}, {mode:?}: the store opens whole with its own options");
    }
}

/// Regression: `logstor.meta` records the segment size and segments per file, but an open
/// given others took the meta's silently and went on, writing (sealing torn segments, removing
/// temp files) under options the caller never asked for; the groups count was recorded nowhere,
/// so a smaller one left keys in groups the store then refused to delete from. Now each is
/// checked before anything is written.
#[test]
fn an_option_the_meta_file_records_differently_is_refused_in_every_mode_and_changes_nothing() {
    check_mismatch("segment_size", |options| options.segment_size = 32 << 10, SEGMENT_SIZE, 32 << 10);
    check_mismatch("segment_size", |options| options.segment_size = 1 << 20, SEGMENT_SIZE, 1 << 20);
    check_mismatch("segments_per_file", |options| options.segments_per_file = 8, SEGMENTS_PER_FILE, 8);
    check_mismatch("segments_per_file", |options| options.segments_per_file = 1, SEGMENTS_PER_FILE, 1);
    check_mismatch("groups_count", |options| options.groups_count = 2, u64::from(GROUPS_COUNT), 2);
    check_mismatch("groups_count", |options| options.groups_count = 16, u64::from(GROUPS_COUNT), 16);
}

/// Rewrites `logstor.meta` as a build that did not record the groups count wrote it: bytes
/// 40..44 zero, the checksum of bytes 0..60 recomputed.
fn forget_groups_count(directory: &Path) {
    let path = directory.join(format::META_FILE_NAME);
    let mut bytes = fs::read(&path).unwrap();
    bytes[40..44].fill(0);
    let checksum = crc32fast::hash(&bytes[0..60]);
    bytes[60..64].copy_from_slice(&checksum.to_le_bytes());
    fs::write(&path, bytes).unwrap();
}

/// `digest` must see a meta file rewritten with other fields and a valid checksum: hashing its
/// bytes alone, every such file gave the CRC-32 residue, the same for all of them.
#[test]
fn digest_sees_a_meta_file_rewritten_with_its_checksum() {
    let directory = tempfile::tempdir().unwrap();
    drop(Logstor::open(os(), directory.path(), options(RecoveryMode::Strict)).unwrap());
    let before = digest(directory.path());
    forget_groups_count(directory.path());
    assert_ne!(digest(directory.path()), before);
}

/// A store whose meta file predates the recorded groups count holds records of groups 0 to 3
/// (`write_store` spreads its keys over four). Fewer groups would leave keys in groups that
/// `delete` refuses, so the open is refused, naming the fewest groups that hold them; more
/// groups are safe.
#[test]
fn a_meta_file_without_a_groups_count_is_checked_against_the_groups_on_disk() {
    for mode in MODES {
        let directory = tempfile::tempdir().unwrap();
        let mut model = write_store(directory.path());
        forget_groups_count(directory.path());
        for fewer in [1, 3] {
            let options = LogstorOptions { groups_count: fewer, ..options(mode) };
            check_refused_unchanged(directory.path(), options, |error| {
                matches!(error, Error::OptionsMismatch { field: "groups_count", on_disk: 4, given, .. }
                    if *given == u64::from(fewer))
            });
        }
        let more = LogstorOptions { groups_count: 8, ..options(mode) };
        let mut store = Logstor::open(os(), directory.path(), more.clone()).unwrap();
        assert_eq!(contents(&store), model, "{mode:?}: opened with more groups");
        write_keys(&mut store, &mut model, 0..400, 2);
        for index in 0..400 {
            store.delete(&key(index)).unwrap();
            model.remove(&key(index));
        }
        store.maintain_to_quiescence().unwrap();
        store.close().unwrap();
        let store = Logstor::open(os(), directory.path(), more).unwrap();
        assert_eq!(contents(&store), model, "{mode:?}: reopened");
    }
}

fn make_wal(directory: &Path) {
    write_log(directory, 30);
}

fn make_commitlog(directory: &Path) {
    let mut log = Commitlog::open(os(), directory, CommitlogOptions::default()).unwrap();
    log.commit(&[(0, b"first".as_slice()), (1, b"second".as_slice())]).unwrap();
    log.close().unwrap();
}

/// Regression (issue 11): opening a WAL's or a commitlog's directory as logstor wrote
/// `logstor.meta` into it, and the WAL then refused to open until the file was deleted by hand.
#[test]
fn an_open_of_another_structures_directory_refuses_and_changes_nothing() {
    let structures = [(make_wal as fn(&Path), "a ballast WAL"), (make_commitlog, "a ballast commitlog")];
    for (make, holds) in structures {
        for mode in MODES {
            let directory = tempfile::tempdir().unwrap();
            make(directory.path());
            check_refused_unchanged(directory.path(), options(mode), |error| {
                matches!(error, Error::ForeignDirectory { directory: reported, holds: found, expected }
                    if reported == directory.path() && found.starts_with(holds) && *expected == "a ballast logstor store")
            });
        }
    }
    let directory = tempfile::tempdir().unwrap();
    make_wal(directory.path());
    drop(Logstor::open(os(), directory.path(), options(RecoveryMode::Strict)));
    crate::open(directory.path(), RecoveryMode::Strict).expect("the WAL still opens");
}

/// Regression (issue 11): a directory holding a file no ballast structure writes got
/// `logstor.meta` before the open failed on that file, and any file named `*.tmp` was deleted
/// as if logstor had left it. Refused now, alone or next to a store, and kept.
#[test]
fn a_file_logstor_does_not_write_is_refused_and_kept() {
    for name in ["notes.txt", "notes.tmp", "data-1.ls", "data-00001.ls.bak", "logstor.meta.old", "00000001.tmp"] {
        for mode in MODES {
            for beside_a_store in [false, true] {
                let directory = tempfile::tempdir().unwrap();
                if beside_a_store {
                    write_store(directory.path());
                }
                fs::write(directory.path().join(name), b"not logstor's").unwrap();
                let path = directory.path().join(name);
                check_refused_unchanged(
                    directory.path(),
                    options(mode),
                    |error| matches!(error, Error::BadFileName { file } if *file == path),
                );
                assert!(!directory.path().join(format::META_FILE_NAME).exists() || beside_a_store);
            }
        }
    }
}

/// Regression (issue 11): an empty directory path put `LOCK` and `logstor.meta` into whatever
/// directory the process ran in.
#[test]
fn an_empty_path_is_an_invalid_argument_and_writes_nothing() {
    let names = [ballast::vfs::LOCK_FILE_NAME, format::META_FILE_NAME];
    let before = names.map(|name| Path::new(name).exists());
    for mode in MODES {
        match Logstor::open(os(), "", options(mode)) {
            Err(Error::InvalidArgument { .. }) => {}
            other => panic!("{mode:?}: expected InvalidArgument, got {other:?}"),
        }
    }
    assert_eq!(names.map(|name| Path::new(name).exists()), before, "nothing appeared in the working directory");
}

/// Regression (issue 11): a strict open sealed the torn segments it met and removed leftover
/// temp files as it went, and only further on found the damaged segment it had to refuse.
#[test]
fn a_strict_open_that_finds_damage_changes_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let model = write_store(directory.path());
    let damaged = damage_store(directory.path());
    let data = directory.path().join(format::data_file_name(0));
    check_refused_unchanged(
        directory.path(),
        options(RecoveryMode::Strict),
        |error| matches!(error, Error::Corruption { file, segment, .. } if *file == data && *segment == damaged),
    );
    let store = Logstor::open(os(), directory.path(), options(RecoveryMode::Repair)).unwrap();
    let report = store.recovery_report().clone();
    assert_eq!(report.repair.as_ref().expect("the repair is reported").segment, damaged);
    assert!(report.torn_segments_sealed >= 1, "the unsealed segment is sealed again: {report:?}");
    assert!(!directory.path().join("data-00002.ls.tmp").exists(), "the leftover temp file is removed");
    for (key, value) in contents(&store) {
        assert_eq!(model.get(&key), Some(&value), "what is left is what was written");
    }
}

/// Regression (issue 11): an open resumed a repair plan it found on disk, cutting the damaged
/// segment, before it checked the options and the directory's other files, so an open that then
/// failed had changed the store. The state here is a crash between a repair's plan becoming
/// durable and its cut.
#[test]
fn a_repair_plan_on_disk_is_resumed_only_by_an_open_that_succeeds() {
    let directory = tempfile::tempdir().unwrap();
    write_store(directory.path());
    let damaged_segment = damage_store(directory.path());
    let data = directory.path().join(format::data_file_name(0));
    let damaged = fs::read(&data).unwrap();
    drop(Logstor::open(os(), directory.path(), options(RecoveryMode::Repair)).unwrap());
    assert!(directory.path().join("REPAIR").exists(), "the plan stays until the first write");
    fs::write(&data, &damaged).unwrap();
    let stray = directory.path().join("notes.txt");
    for mode in MODES {
        let bigger = LogstorOptions { segment_size: 32 << 10, ..options(mode) };
        check_refused_unchanged(directory.path(), bigger, |error| matches!(error, Error::OptionsMismatch { .. }));
        fs::write(&stray, b"not logstor's").unwrap();
        check_refused_unchanged(directory.path(), options(mode), |error| matches!(error, Error::BadFileName { .. }));
        fs::remove_file(&stray).unwrap();
    }
    let store = Logstor::open(os(), directory.path(), options(RecoveryMode::Strict)).unwrap();
    let repair = store.recovery_report().repair.clone().expect("the resumed repair is reported");
    assert!(repair.resumed);
    assert_eq!(repair.segment, damaged_segment);
    assert_ne!(fs::read(&data).unwrap(), damaged, "the open that succeeded carried the plan out");
}

/// Regression (issue 11): an open of a store whose `logstor.meta` was lost wrote a new one from
/// the options it was given, whatever geometry the data files had been written with.
#[test]
fn data_files_without_a_meta_file_are_refused_in_every_mode() {
    let directory = tempfile::tempdir().unwrap();
    write_store(directory.path());
    let meta = directory.path().join(format::META_FILE_NAME);
    fs::remove_file(&meta).unwrap();
    for mode in MODES {
        check_refused_unchanged(
            directory.path(),
            options(mode),
            |error| matches!(error, Error::Corruption { file, reason: CorruptionReason::MissingFile, .. } if *file == meta),
        );
    }
}

/// Reopens a store written by `write_store` with one option changed, writes, maintains,
/// reopens with it and without it, and requires every write to be there and no repair.
#[track_caller]
fn check_changeable(name: &str, change: fn(&mut LogstorOptions)) {
    let directory = tempfile::tempdir().unwrap();
    let mut model = write_store(directory.path());
    let mut changed = options(RecoveryMode::Strict);
    change(&mut changed);
    let mut store = Logstor::open(os(), directory.path(), changed.clone()).unwrap();
    assert_eq!(contents(&store), model, "{name}: opened with it changed");
    write_keys(&mut store, &mut model, 200..500, 2);
    store.maintain_to_quiescence().unwrap();
    write_keys(&mut store, &mut model, 0..100, 3);
    store.close().unwrap();
    for options in [changed, options(RecoveryMode::Strict)] {
        let store = Logstor::open(os(), directory.path(), options).unwrap();
        assert_eq!(contents(&store), model, "{name}: reopened");
        assert_eq!(store.recovery_report().repair, None, "{name}: nothing to repair");
    }
}

/// The options `logstor.meta` does not record only tune how the store runs: none changes how
/// the files are read.
#[test]
fn an_option_not_on_disk_may_change_between_opens() {
    check_changeable("write_buffer_size 4 KiB", |options| options.write_buffer_size = 4096);
    check_changeable("write_buffer_size 64 KiB", |options| options.write_buffer_size = 64 << 10);
    check_changeable("compaction_batch_max 2", |options| options.compaction_batch_max = 2);
    check_changeable("compaction_batch_max 64", |options| options.compaction_batch_max = 64);
    check_changeable("read_cache_size 0", |options| options.read_cache_size = 0);
    check_changeable("read_cache_size 1 MiB", |options| options.read_cache_size = 1 << 20);
    check_changeable("recovery_mode Repair", |options| options.recovery_mode = RecoveryMode::Repair);
    check_changeable("files_max 1000", |options| options.files_max = 1000);
}

/// `files_max` bounds growth, not what is there: a store holding more data files opens whole
/// and keeps writing into their free segments, and only then refuses to grow.
#[test]
fn a_store_holding_more_data_files_than_files_max_opens_whole_and_stops_growing() {
    let directory = tempfile::tempdir().unwrap();
    let mut model = write_store(directory.path());
    let one_file = LogstorOptions { files_max: 1, ..options(RecoveryMode::Strict) };
    let mut store = Logstor::open(os(), directory.path(), one_file).unwrap();
    assert_eq!(contents(&store), model);
    let files_count = store.stats().segments_total / SEGMENTS_PER_FILE;
    assert!(files_count >= 2, "more files than files_max");
    let mut synced = model.clone();
    let mut failed = None;
    'rounds: for round in 0..100 {
        for index in 1000 + round * 50..1000 + (round + 1) * 50 {
            if let Err(error) = store.put(&key(index), &value(index, 9)) {
                failed = Some(error);
                break 'rounds;
            }
            model.insert(key(index), value(index, 9));
        }
        match store.sync() {
            Ok(()) => synced = model.clone(),
            Err(error) => {
                failed = Some(error);
                break;
            }
        }
    }
    let error = failed.expect("the store fills up");
    assert_eq!(error.io_kind(), Some(std::io::ErrorKind::StorageFull), "{error}");
    assert!(store.is_poisoned());
    assert_eq!(store.stats().segments_total / SEGMENTS_PER_FILE, files_count, "no file was added");
    drop(store);
    let store = Logstor::open(os(), directory.path(), options(RecoveryMode::Strict)).unwrap();
    let reopened = contents(&store);
    for (key, value) in &synced {
        assert_eq!(reopened.get(key), Some(value), "every synced write is kept");
    }
    for (key, value) in &reopened {
        assert_eq!(model.get(key), Some(value), "nothing else comes back");
    }
}
