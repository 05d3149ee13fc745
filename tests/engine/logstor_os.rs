//! logstor on the real filesystem: writes, reads, recovery, compaction, the separator, groups.

use std::collections::BTreeMap;
use std::path::Path;

use ballast::logstor::{Logstor, LogstorOptions};

use crate::os;

pub fn options() -> LogstorOptions {
    LogstorOptions {
        segment_size: 16 << 10,
        segments_per_file: 8,
        write_buffer_size: 4096,
        groups_count: 4,
        ..LogstorOptions::default()
    }
}

pub fn open(directory: &Path) -> Logstor {
    Logstor::open(os(), directory, options()).unwrap()
}

fn key(index: u64) -> Vec<u8> {
    format!("key-{index:05}").into_bytes()
}

fn value(index: u64, version: u64) -> Vec<u8> {
    format!("value-{index}-{version}-").repeat((index % 9 + 1) as usize).into_bytes()
}

fn contents(store: &Logstor) -> BTreeMap<Vec<u8>, Vec<u8>> {
    store.scan().map(Result::unwrap).collect()
}

#[test]
fn puts_gets_and_deletes_survive_reopen() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    let mut model = BTreeMap::new();
    for version in 0..3 {
        for index in 0..200 {
            store.put(&key(index), &value(index, version)).unwrap();
            model.insert(key(index), value(index, version));
        }
    }
    for index in (0..200).step_by(3) {
        store.delete(&key(index)).unwrap();
        model.remove(&key(index));
    }
    assert_eq!(store.get(&key(1)).unwrap(), Some(value(1, 2)), "reads see buffered writes");
    assert_eq!(store.get(&key(0)).unwrap(), None);
    store.close().unwrap();
    let store = open(directory.path());
    assert_eq!(contents(&store), model);
    assert_eq!(store.len(), model.len() as u64);
    assert!(store.contains(&key(2)) && !store.contains(&key(3)));
}

#[test]
fn compaction_keeps_every_live_value_and_frees_space() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    let mut model = BTreeMap::new();
    for version in 0..6 {
        for index in 0..150 {
            store.put(&key(index), &value(index, version)).unwrap();
            model.insert(key(index), value(index, version));
        }
    }
    store.sync().unwrap();
    let before = store.stats();
    store.maintain_to_quiescence().unwrap();
    let after = store.stats();
    assert!(after.segments_used < before.segments_used, "{before:?} -> {after:?}");
    assert_eq!(contents(&store), model);
    for segment in 0..after.segments_total {
        assert!(store.check_segment_indexed(segment).unwrap().is_empty());
    }
    drop(store);
    assert_eq!(contents(&open(directory.path())), model);
}

/// Gets go through a cache of 4 KiB blocks. Compaction frees segments and new writes reuse
/// them, so a block cached before must never be served for the segment's next use.
#[test]
fn cached_blocks_of_a_freed_and_reused_segment_are_never_served() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    let mut model = BTreeMap::new();
    for version in 0..8 {
        for index in 0..120 {
            store.put(&key(index), &value(index, version)).unwrap();
            model.insert(key(index), value(index, version));
        }
        store.sync().unwrap();
        store.maintain_to_quiescence().unwrap();
        for (key, value) in &model {
            assert_eq!(store.get(key).unwrap().as_ref(), Some(value), "version {version}");
        }
    }
    assert_eq!(contents(&store), model);
}

/// The index keeps keys of up to 22 bytes inline and longer ones on the heap. Keys on both
/// sides of that boundary, some sharing long prefixes, must read, scan in byte order, compact
/// and reopen exactly like any others.
#[test]
fn short_and_long_keys_mix_in_one_index() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    let mut model = BTreeMap::new();
    let keys: Vec<Vec<u8>> = (0..60u64)
        .map(|index| {
            let length = (index % 30) as usize;
            let mut key = vec![b'p'; length];
            key.extend_from_slice(&index.to_be_bytes()[6..]);
            key
        })
        .chain([Vec::new(), vec![0u8; 22], vec![0u8; 23], vec![255u8; 200]])
        .collect();
    for version in 0..4 {
        for (index, key) in keys.iter().enumerate() {
            let value = value(index as u64, version);
            store.put(key, &value).unwrap();
            model.insert(key.clone(), value);
        }
    }
    for key in keys.iter().step_by(5) {
        store.delete(key).unwrap();
        model.remove(key);
    }
    assert_eq!(contents(&store), model, "scan order is byte order across inline and heap keys");
    store.sync().unwrap();
    store.maintain_to_quiescence().unwrap();
    assert_eq!(contents(&store), model);
    drop(store);
    let store = open(directory.path());
    assert_eq!(contents(&store), model);
    for key in &keys {
        assert_eq!(store.get(key).unwrap(), model.get(key).cloned(), "key {key:?}");
    }
}

#[test]
fn a_deleted_key_never_comes_back_through_compaction_and_reopen() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    for version in 0..4 {
        for index in 0..100 {
            store.put(&key(index), &value(index, version)).unwrap();
        }
    }
    for index in 0..100 {
        store.delete(&key(index)).unwrap();
    }
    store.sync().unwrap();
    for _ in 0..3 {
        store.maintain_to_quiescence().unwrap();
        drop(store);
        store = open(directory.path());
        assert!(store.is_empty(), "deleted keys stay deleted");
    }
    assert!(store.stats().live_bytes < 16 << 10, "tombstones with no older versions left are dropped");
}

#[test]
fn drop_group_removes_its_keys_and_frees_its_segments() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    for index in 0..300 {
        store.put_in_group((index % 3) as u32, &key(index), &value(index, 0)).unwrap();
    }
    store.maintain_to_quiescence().unwrap();
    let before = store.stats();
    store.drop_group(1).unwrap();
    store.maintain_to_quiescence().unwrap();
    assert!(store.stats().segments_used < before.segments_used);
    drop(store);
    let store = open(directory.path());
    for index in 0..300 {
        assert_eq!(store.contains(&key(index)), index % 3 != 1, "key {index}");
    }
}
