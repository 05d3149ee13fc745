//! logstor segment generations: a segment used, freed and used again holds buffers of several
//! uses at once, and recovery must tell the current use's from the rest. Each test lays out
//! segment 0 by hand, as the simulator found it after misdirected writes and crashes, and
//! opens the store on it.

use std::fs;
use std::path::Path;

use ballast::logstor::format::{self, encode_record, seal_buffer, BufferKind, Record, BLOCK_SIZE, BUFFER_HEADER_SIZE};
use ballast::logstor::{Logstor, LogstorOptions, SegmentState};
use ballast::{Error, RecoveryMode};

use crate::logstor_os::{open, options};
use crate::os;

/// A data buffer of segment 0 holding one record, one block long.
fn data_buffer(generation: u64, offset: u64, key: &[u8], sequence: u64) -> Vec<u8> {
    let mut buffer = vec![0u8; BUFFER_HEADER_SIZE];
    encode_record(&mut buffer, &Record { key, value: Some(b"a value"), group: 0, sequence });
    seal_buffer(&mut buffer, BufferKind::Data, 0, 0, generation, offset, 1);
    assert_eq!(buffer.len() as u64, BLOCK_SIZE);
    buffer
}

/// A store whose segment 0 holds exactly `blocks` (each one block, at its index), the rest of
/// the segment zeros, and every other segment free.
fn store_with_segment_0(directory: &Path, blocks: &[Vec<u8>]) {
    let mut store = open(directory);
    store.put(b"to create the data file", b"").unwrap();
    store.close().unwrap();
    let path = directory.join(format::data_file_name(0));
    let mut bytes = fs::read(&path).unwrap();
    let segment_size = usize::try_from(options().segment_size).unwrap();
    bytes[..segment_size].fill(0);
    for (index, block) in blocks.iter().enumerate() {
        let at = index * BLOCK_SIZE as usize;
        bytes[at..at + block.len()].copy_from_slice(block);
    }
    fs::write(&path, bytes).unwrap();
}

/// Regression (logstor seeds 80241 and 90502 of `ballast-sim`): segment 0 was freed and used
/// again, and both the FREE marker of the freeing and the first buffer of the new use went
/// astray, so offset 0 still held the old use's first buffer (generation 1) in front of the new
/// use's synced buffers and seal (generation 2). The scan trusted the first buffer's generation,
/// found no seal of it, and sealed the segment as torn: a strict open succeeded without the
/// synced record, and served the stale one.
#[test]
fn an_older_first_buffer_before_a_later_seal_is_corruption() {
    let directory = tempfile::tempdir().unwrap();
    store_with_segment_0(
        directory.path(),
        &[
            data_buffer(1, 0, b"stale", 1),
            data_buffer(2, BLOCK_SIZE, b"synced", 5),
            format::marker(BufferKind::Seal, 0, 0, 2, 2 * BLOCK_SIZE),
        ],
    );
    match Logstor::open(os(), directory.path(), options()) {
        Err(Error::Corruption { file, offset, .. }) => {
            assert_eq!(file, directory.path().join(format::data_file_name(0)));
            assert_eq!(offset, 0, "the stale first buffer is the damage");
        }
        other => panic!("expected corruption at offset 0, got {:?}", other.map(|store| store.len())),
    }
    let repair = LogstorOptions { recovery_mode: RecoveryMode::Repair, ..options() };
    let repaired = Logstor::open(os(), directory.path(), repair).unwrap();
    let report = repaired.recovery_report().repair.clone().expect("a repair is reported");
    assert_eq!((report.offset, report.records_dropped), (0, 1), "the cut drops the synced record it cannot keep");
    assert!(!repaired.contains(b"stale"), "a stale record is never served");
    drop(repaired);
    assert!(!open(directory.path()).contains(b"synced"), "the repaired store reopens strictly");
}

/// Regression (logstor seed 102730 of `ballast-sim`): segment 0's first buffer was torn by a
/// crash (its header decodes, its checksum fails), after a use of generation 2 had lost its
/// first buffer and left later ones. Recovery sealed the segment empty with the torn header's
/// generation, 1; a compaction freed it with generation 2, and the next use read the lost
/// use's buffers as its own continuation: a put lost in a crash came back.
#[test]
fn a_torn_first_buffer_leaves_the_segment_free_above_every_generation_in_it() {
    let directory = tempfile::tempdir().unwrap();
    let mut torn = data_buffer(1, 0, b"torn", 1);
    torn[BUFFER_HEADER_SIZE + 30] ^= 0xff;
    store_with_segment_0(directory.path(), &[torn, data_buffer(2, BLOCK_SIZE, b"lost", 5)]);
    let mut store = open(directory.path());
    assert_eq!(store.segment_state(0), Some(SegmentState::Free), "nothing in segment 0 verifies or is sealed");
    assert!(!store.contains(b"lost") && !store.contains(b"torn"));
    // Fill segment 0 again, from its first buffer, and reopen without a close.
    store.maintain_to_quiescence().unwrap();
    store.put(b"new", b"after the crash").unwrap();
    store.sync().unwrap();
    drop(store);
    let store = open(directory.path());
    assert_eq!(store.get(b"new").unwrap(), Some(b"after the crash".to_vec()));
    assert!(!store.contains(b"lost"), "a buffer of a lost use is never read as part of a new one");
}

/// Regression (logstor seed 100071 of `ballast-sim`): freeing segment 0 wrote a FREE marker of
/// generation 2 over its seal, then one at offset 0; misdirected writes lost the second and
/// damaged the body of the first. The scan took the segment for one torn while written and
/// sealed it again, bringing back records of a group dropped since.
#[test]
fn a_later_free_marker_where_the_buffers_end_means_the_segment_was_freed() {
    let directory = tempfile::tempdir().unwrap();
    let mut void_seal = format::marker(BufferKind::Free, 0, 0, 2, BLOCK_SIZE);
    void_seal.resize(BLOCK_SIZE as usize, 0);
    void_seal[2048] = 0xa5;
    store_with_segment_0(directory.path(), &[data_buffer(1, 0, b"dead", 1), void_seal]);
    let store = open(directory.path());
    assert_eq!(store.segment_state(0), Some(SegmentState::Free));
    assert!(!store.contains(b"dead"), "the records of a freed segment never come back");
}

/// A header is not checked on its own (its checksum covers its records), so any bytes can name
/// any generation. Found in review: a header of generation `u64::MAX` in a free segment made
/// the open add one to it and panic.
#[test]
fn a_header_of_the_highest_generation_does_not_panic_the_open() {
    let directory = tempfile::tempdir().unwrap();
    store_with_segment_0(directory.path(), &[vec![0; BLOCK_SIZE as usize], data_buffer(u64::MAX, BLOCK_SIZE, b"k", 1)]);
    let store = open(directory.path());
    assert_eq!(store.segment_state(0), Some(SegmentState::Free));
    assert!(!store.contains(b"k"));
}

/// Regression (logstor seed 43505 of `ballast-sim`): a freeing cut short by a write error left
/// its FREE marker over the seal (generation 2) and none at offset 0. The open took segment 0
/// for free, rightly, but wrote nothing: the stale buffers at 0 stayed valid, and once a latent
/// sector error took the marker over the seal, the next open read them back as a torn use and
/// served a value a reported repair had dropped. The open now finishes the freeing.
#[test]
fn an_open_finishes_a_freeing_cut_short_so_later_damage_cannot_undo_it() {
    let directory = tempfile::tempdir().unwrap();
    let void_seal = format::marker(BufferKind::Free, 0, 0, 2, BLOCK_SIZE);
    store_with_segment_0(directory.path(), &[data_buffer(1, 0, b"dead", 1), void_seal]);
    let store = open(directory.path());
    assert_eq!(store.segment_state(0), Some(SegmentState::Free));
    assert_eq!(store.recovery_report().frees_finished, 1);
    drop(store);
    // The marker over the seal is lost: only the finished freeing at 0 still says "free".
    let path = directory.path().join(format::data_file_name(0));
    let mut bytes = fs::read(&path).unwrap();
    bytes[BLOCK_SIZE as usize..2 * BLOCK_SIZE as usize].fill(0xee);
    fs::write(&path, bytes).unwrap();
    let store = open(directory.path());
    assert_eq!(store.segment_state(0), Some(SegmentState::Free));
    assert!(!store.contains(b"dead"), "a freed segment's records never come back");
    assert_eq!(store.recovery_report().frees_finished, 0, "a finished freeing is not finished again");
}

/// A FREE marker at offset 0 before a seal of its own generation: the first buffer of a synced
/// use never replaced the marker. Corruption at 0, named for what it is (it was reported as an
/// unknown fragment type 3 before the reason existed).
#[test]
fn a_free_marker_before_a_seal_of_its_generation_is_corruption_named_so() {
    let directory = tempfile::tempdir().unwrap();
    store_with_segment_0(
        directory.path(),
        &[
            format::marker(BufferKind::Free, 0, 0, 1, 0),
            data_buffer(1, BLOCK_SIZE, b"synced", 5),
            format::marker(BufferKind::Seal, 0, 0, 1, 2 * BLOCK_SIZE),
        ],
    );
    match Logstor::open(os(), directory.path(), options()) {
        Err(Error::Corruption { offset: 0, reason: ballast::CorruptionReason::FreeMarkerInUse, .. }) => {}
        other => panic!("expected a free marker in use at 0, got {:?}", other.map(|store| store.len())),
    }
}

/// Found in review: a freeing whose two FREE markers both went astray left segment 0's older
/// use (generation 1) whole, its seal included, and a later use (generation 2) that lost its
/// first buffer wrote beyond that seal. The scan stopped at the old seal and served the old
/// use's records. A valid buffer of a later generation anywhere after the old use's buffers
/// makes them stale, sealed or not.
#[test]
fn a_later_use_beyond_an_older_seal_makes_the_older_use_stale() {
    let directory = tempfile::tempdir().unwrap();
    store_with_segment_0(
        directory.path(),
        &[
            data_buffer(1, 0, b"stale", 1),
            format::marker(BufferKind::Seal, 0, 0, 1, BLOCK_SIZE),
            data_buffer(2, 2 * BLOCK_SIZE, b"lost", 5),
        ],
    );
    let store = open(directory.path());
    assert_eq!(store.segment_state(0), Some(SegmentState::Free));
    assert!(!store.contains(b"stale") && !store.contains(b"lost"));
    assert_eq!(store.recovery_report().frees_finished, 1);
}

/// Found in review: freeing a segment gave the next use the segment's own generation + 1, even
/// where a header on disk named a higher one (a torn buffer of a lost later use), so that use's
/// buffers could read back as the next use's. The next use now carries a generation above
/// every header in the segment.
#[test]
fn freeing_a_segment_goes_above_every_generation_on_disk() {
    let directory = tempfile::tempdir().unwrap();
    let mut torn_later_use = data_buffer(5, 2 * BLOCK_SIZE, b"torn", 9);
    torn_later_use[BUFFER_HEADER_SIZE + 20] ^= 0xff;
    store_with_segment_0(
        directory.path(),
        &[data_buffer(1, 0, b"key", 1), format::marker(BufferKind::Seal, 0, 0, 1, BLOCK_SIZE), torn_later_use],
    );
    let mut store = open(directory.path());
    assert_eq!(store.segment_state(0), Some(SegmentState::Sealed(ballast::logstor::SegmentKind::Mixed)));
    store.put(b"key", b"superseded").unwrap();
    store.maintain_to_quiescence().unwrap();
    assert_eq!(store.segment_state(0), Some(SegmentState::Free), "segment 0 holds nothing live");
    drop(store);
    let bytes = fs::read(directory.path().join(format::data_file_name(0))).unwrap();
    let marker = format::decode_buffer_header(&bytes, 0, 0, BLOCK_SIZE).unwrap();
    assert_eq!(marker.kind, BufferKind::Free);
    assert!(marker.generation > 5, "generation {} is not above the torn header's 5", marker.generation);
}

/// Found in review: a repair plan names the offset its cut lands at, and logstor trusted it;
/// one past the segment wrote a seal into the next segment, and `u64::MAX` overflowed. A plan
/// whose cut lies outside its segment is corruption of the plan, and the open changes nothing.
#[test]
fn a_repair_plan_cutting_outside_its_segment_is_corruption() {
    let directory = tempfile::tempdir().unwrap();
    store_with_segment_0(directory.path(), &[data_buffer(1, 0, b"key", 1)]);
    for truncate_at in [options().segment_size, u64::MAX] {
        let mut plan = b"BLSTRPR\0".to_vec();
        for field in [0u64, truncate_at, 0, 0, 0] {
            plan.extend_from_slice(&field.to_le_bytes());
        }
        plan.extend_from_slice(&0u32.to_le_bytes());
        plan.extend_from_slice(&6u32.to_le_bytes());
        plan.extend_from_slice(b"reason");
        let checksum = crc32fast::hash(&plan);
        plan.extend_from_slice(&checksum.to_le_bytes());
        fs::write(directory.path().join("REPAIR"), &plan).unwrap();
        let before = crate::digest(directory.path());
        let repair = LogstorOptions { recovery_mode: RecoveryMode::Repair, ..options() };
        match Logstor::open(os(), directory.path(), repair) {
            Err(Error::Corruption { file, offset: 16, .. }) => assert_eq!(file, directory.path().join("REPAIR")),
            other => panic!("expected corruption of the plan's cut, got {:?}", other.map(|store| store.len())),
        }
        assert_eq!(crate::digest(directory.path()), before, "a refused open changes nothing");
    }
}
