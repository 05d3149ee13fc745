//! A repair reports exactly what it drops (issue 11, item 2).
//!
//! A repairing open reports `records_dropped` and `bytes_dropped`; each must equal what a reader
//! found in the directory before the repair minus what it finds after. Each test builds a
//! structure of several segments with synced data, damages 1 to 3 random bytes (or a run of a
//! few) of sealed segments, counts with a reader of its own (the public format decoders only,
//! never the engine's scanners, whose code the repair's counting shares), opens with
//! [`RecoveryMode::Repair`], counts again and compares with the report. The reader's count after
//! is checked against the engine's own, so that a wrong reader cannot pass for a right report.
//!
//! What a reader finds, per structure: the units the format verifies, wherever they lie.
//! - WAL: a record counts when every fragment of it verifies where it lies (a fragment's
//!   checksum binds its segment and offset, so one that verifies was written there): after the
//!   damage in the damaged segment, in later segments, in a segment whose header is damaged.
//!   Bytes: the segment files' lengths added up.
//! - Commitlog: a record is a commit (not a transaction), counted when it verifies where it
//!   lies. Bytes: the segment files' lengths added up (index files are derived, not counted).
//! - Logstor: a record is a record version (a put or a tombstone, every copy of it), counted
//!   when it lies in a data buffer that verifies, of the generation of its segment's seal,
//!   before that seal. Bytes: each sealed segment's data, from its start to its seal, added up.
//!
//! Damage is placed where the format detects it, and a strict open must refuse it. Every byte
//! of a sealed WAL or commitlog segment is such a place, and in logstor every byte of a sealed
//! segment before its seal. (Bytes after a logstor seal are
//! never read, and damage to the seal itself reads as a torn segment, sealed again where the
//! seal was, with nothing lost.)

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use ballast::commitlog::format::{decode_commit_header, verify_commit, FileName};
use ballast::commitlog::{Commitlog, CommitlogOptions};
use ballast::logstor::format::{decode_buffer_header, verify_buffer, BufferHeader, BufferKind, BLOCK_SIZE};
use ballast::logstor::{Logstor, LogstorOptions};
use ballast::wal::format::decode_fragment;
use ballast::wal::{FragmentType, Wal, WalOptions, FRAGMENT_HEADER_SIZE, SEGMENT_HEADER_SIZE};
use ballast::{Error, RecoveryMode, Repair};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::os;

/// Segments every test structure reaches, so that damage has sealed segments to hit and later
/// segments to take with it.
const SEGMENTS_MIN: usize = 4;

/// Damage to synced bytes.
#[derive(Clone, Debug)]
enum Damage {
    /// Up to three bytes anywhere in the places given, each XORed with a non-zero mask.
    Bytes(Vec<(Index, u8)>),
    /// A run of bytes from one place on, inverted, stopping at the end of its place.
    Run(Index, u64),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        prop::collection::vec((any::<Index>(), 1..=255u8), 1..=3).prop_map(Damage::Bytes),
        (any::<Index>(), 2..=16u64).prop_map(|(start, length)| Damage::Run(start, length)),
    ]
}

/// A range of bytes of a file that damage may hit.
struct Place {
    file: PathBuf,
    bytes: Range<u64>,
}

/// One damaged byte: the file, the offset in it, and the mask it is XORed with.
#[derive(Debug)]
struct Hit {
    file: PathBuf,
    offset: u64,
    mask: u8,
}

impl Damage {
    /// The bytes this damage hits among `places`, each once (two masks on one byte could
    /// cancel out).
    fn hits(&self, places: &[Place]) -> Vec<Hit> {
        match self {
            Self::Bytes(bytes) => {
                let mut hits: Vec<Hit> = Vec::new();
                for &(at, mask) in bytes {
                    let Some((file, offset)) = locate(places, at) else { return Vec::new() };
                    if !hits.iter().any(|hit| hit.file == file && hit.offset == offset) {
                        hits.push(Hit { file, offset, mask });
                    }
                }
                hits
            }
            Self::Run(start, length) => {
                let Some((file, offset)) = locate(places, *start) else { return Vec::new() };
                let place = places.iter().find(|place| place.file == file && place.bytes.contains(&offset));
                let end = place.expect("located in it").bytes.end.min(offset + length);
                (offset..end).map(|offset| Hit { file: file.clone(), offset, mask: 0xff }).collect()
            }
        }
    }
}

fn apply(hits: &[Hit]) {
    for hit in hits {
        let mut bytes = fs::read(&hit.file).unwrap();
        bytes[hit.offset as usize] ^= hit.mask;
        fs::write(&hit.file, bytes).unwrap();
    }
}

/// The byte `at` picks among every place's bytes, in order.
fn locate(places: &[Place], at: Index) -> Option<(PathBuf, u64)> {
    let total: u64 = places.iter().map(|place| place.bytes.end - place.bytes.start).sum();
    let mut rest = at.index(usize::try_from(total).ok().filter(|&total| total > 0)?) as u64;
    for place in places {
        let length = place.bytes.end - place.bytes.start;
        if rest < length {
            return Some((place.file.clone(), place.bytes.start + rest));
        }
        rest -= length;
    }
    unreachable!("`rest` is below the total")
}

/// What a reader finds in a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Census {
    records: u64,
    bytes: u64,
    segments: u64,
}

/// Checks a repair's report against the census before and after it.
fn check_report(repair: &Repair, before: Census, after: Census) -> Result<(), TestCaseError> {
    prop_assert!(!repair.resumed);
    prop_assert_eq!(
        repair.records_dropped,
        before.records - after.records,
        "records: report vs reader ({:?} -> {:?})",
        before,
        after
    );
    prop_assert_eq!(
        repair.bytes_dropped,
        before.bytes - after.bytes,
        "bytes: report vs reader ({:?} -> {:?})",
        before,
        after
    );
    prop_assert_eq!(repair.segments_removed, before.segments - after.segments, "segments: report vs reader");
    Ok(())
}

/// The files of `directory` whose names `parse` accepts, with what it makes of the name, sorted.
fn files<T: Ord>(directory: &Path, parse: impl Fn(&str) -> Option<T>) -> Vec<(T, PathBuf)> {
    let mut files: Vec<(T, PathBuf)> = fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter_map(|path| parse(path.file_name()?.to_str()?).map(|parsed| (parsed, path)))
        .collect();
    files.sort_by(|(left, _), (right, _)| left.cmp(right));
    files
}

/// The places of every file but the last: the sealed segments of a WAL or a commitlog.
fn sealed_places<T>(segments: &[(T, PathBuf)]) -> Vec<Place> {
    let sealed = &segments[..segments.len().saturating_sub(1)];
    sealed.iter().map(|(_, file)| Place { file: file.clone(), bytes: 0..fs::metadata(file).unwrap().len() }).collect()
}

mod wal_reader {
    use super::*;

    pub const PAGE_SIZE: u32 = 256;

    pub fn options(recovery_mode: RecoveryMode) -> WalOptions {
        WalOptions {
            segment_size: 2048,
            page_size: PAGE_SIZE,
            recovery_mode,
            preallocate: 512,
            recycle_segments: 0,
            first_segment: 0,
        }
    }

    pub fn segments(directory: &Path) -> Vec<(u64, PathBuf)> {
        files(directory, ballast::wal::parse_segment_file_name)
    }

    pub fn census(directory: &Path) -> Census {
        let segments = segments(directory);
        let mut census = Census { records: 0, bytes: 0, segments: segments.len() as u64 };
        for (number, file) in &segments {
            let bytes = fs::read(file).unwrap();
            census.records += records(*number, &bytes);
            census.bytes += bytes.len() as u64;
        }
        census
    }

    /// Records of segment `number`, its file's `bytes`, whose every fragment verifies.
    fn records(number: u64, bytes: &[u8]) -> u64 {
        let mut count = 0;
        for offset in SEGMENT_HEADER_SIZE..bytes.len() {
            match fragment_at(number, bytes, offset) {
                Some((FragmentType::Full, _)) => count += 1,
                Some((FragmentType::First, end)) => count += u64::from(record_completes(number, bytes, end)),
                _ => {}
            }
        }
        count
    }

    /// The fragment that verifies at `offset`, if one does: its type and where it ends.
    fn fragment_at(number: u64, bytes: &[u8], offset: usize) -> Option<(FragmentType, usize)> {
        let page = PAGE_SIZE as usize;
        let page_end = (offset / page + 1) * page;
        let fragment = decode_fragment(bytes.get(offset..page_end.min(bytes.len()))?, number, offset as u64).ok()?;
        Some((fragment.fragment_type, offset + FRAGMENT_HEADER_SIZE + fragment.payload_length))
    }

    /// Whether the record whose first fragment ends at `end` goes on in middle fragments that
    /// verify to a last one that does. A first or middle fragment fills its page, so the next
    /// one starts where it ends.
    fn record_completes(number: u64, bytes: &[u8], mut end: usize) -> bool {
        // Each step moves `end` on by at least a fragment header.
        loop {
            match fragment_at(number, bytes, end) {
                Some((FragmentType::Middle, next)) => end = next,
                Some((FragmentType::Last, _)) => return true,
                _ => return false,
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn wal_repair_reports_what_it_drops(lengths in prop::collection::vec(0usize..700, 1..12), damage in damage()) {
        let directory = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(os(), directory.path(), wal_reader::options(RecoveryMode::Strict)).unwrap();
        // Bounded: every record takes at least a fragment header of a 2 KiB segment.
        for index in 0.. {
            if wal.segments().1 + 1 >= SEGMENTS_MIN as u64 {
                break;
            }
            let length = lengths[index % lengths.len()];
            wal.append(&vec![(index % 251) as u8 + 1; length]).unwrap();
        }
        wal.close().unwrap();
        let hits = damage.hits(&sealed_places(&wal_reader::segments(directory.path())));
        apply(&hits);
        let before = wal_reader::census(directory.path());
        let strict = Wal::open(os(), directory.path(), wal_reader::options(RecoveryMode::Strict));
        prop_assert!(matches!(strict, Err(Error::Corruption { .. })), "a strict open refuses damage at {:?}: {:?}", hits, strict.map(|_| ()));
        let repaired = Wal::open(os(), directory.path(), wal_reader::options(RecoveryMode::Repair)).unwrap();
        let after = wal_reader::census(directory.path());
        let readable = repaired.records().map(|item| item.map(drop)).collect::<ballast::Result<Vec<()>>>().unwrap();
        prop_assert_eq!(after.records, readable.len() as u64, "the reader agrees with the log after the repair");
        let repair = repaired.recovery_report().repair.clone().expect("a repair is reported");
        check_report(&repair, before, after).map_err(|error| TestCaseError::fail(format!("{error} (damage at {hits:?}, {repair:?})")))?;
    }
}

mod commitlog_reader {
    use super::*;

    pub fn options(recovery_mode: RecoveryMode) -> CommitlogOptions {
        CommitlogOptions {
            segment_size_max: 1024,
            index_interval_bytes: 100,
            write_buffer_size: 300,
            recovery_mode,
            ..CommitlogOptions::default()
        }
    }

    pub fn segments(directory: &Path) -> Vec<(u64, PathBuf)> {
        let segment = |name: &str| match ballast::commitlog::format::parse_file_name(name) {
            Some(FileName::Segment(min_offset)) => Some(min_offset),
            _ => None,
        };
        files(directory, segment)
    }

    pub fn census(directory: &Path) -> Census {
        let segments = segments(directory);
        let mut census = Census { records: 0, bytes: 0, segments: segments.len() as u64 };
        for (min_offset, file) in &segments {
            let bytes = fs::read(file).unwrap();
            census.records += commits(*min_offset, &bytes);
            census.bytes += bytes.len() as u64;
        }
        census
    }

    /// Commits of the segment starting at `min_offset`, its file's `bytes`, that verify.
    fn commits(min_offset: u64, bytes: &[u8]) -> u64 {
        let header_size = ballast::commitlog::format::SEGMENT_HEADER_SIZE;
        let verifies = |position: usize| {
            let rest = &bytes[position..];
            decode_commit_header(rest, rest.len() as u64)
                .is_ok_and(|header| verify_commit(&rest[..header.size() as usize], min_offset, position as u64).is_ok())
        };
        (header_size..bytes.len()).filter(|&position| verifies(position)).count() as u64
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn commitlog_repair_reports_what_it_drops(commits in prop::collection::vec(prop::collection::vec(0usize..200, 1..4), 1..12), damage in damage()) {
        let directory = tempfile::tempdir().unwrap();
        let mut log = Commitlog::open(os(), directory.path(), commitlog_reader::options(RecoveryMode::Strict)).unwrap();
        // Bounded: every commit takes at least a commit header of a 1 KiB segment.
        for index in 0.. {
            if log.segments().len() >= SEGMENTS_MIN {
                break;
            }
            let offset = log.next_offset();
            let payloads: Vec<Vec<u8>> = commits[index % commits.len()].iter().map(|&length| vec![(index % 251) as u8; length]).collect();
            let transactions: Vec<(u64, &[u8])> = (offset..).zip(payloads.iter().map(Vec::as_slice)).collect();
            log.commit(&transactions).unwrap();
        }
        log.close().unwrap();
        let hits = damage.hits(&sealed_places(&commitlog_reader::segments(directory.path())));
        apply(&hits);
        let before = commitlog_reader::census(directory.path());
        let strict = Commitlog::open(os(), directory.path(), commitlog_reader::options(RecoveryMode::Strict));
        prop_assert!(matches!(strict, Err(Error::Corruption { .. })), "a strict open refuses damage at {:?}: {:?}", hits, strict.map(|_| ()));
        let repaired = Commitlog::open(os(), directory.path(), commitlog_reader::options(RecoveryMode::Repair)).unwrap();
        let after = commitlog_reader::census(directory.path());
        let readable = repaired.commits_from(0).map(|item| item.map(drop)).collect::<ballast::Result<Vec<()>>>().unwrap();
        prop_assert_eq!(after.records, readable.len() as u64, "the reader agrees with the log after the repair");
        let repair = repaired.recovery_report().repair.clone().expect("a repair is reported");
        check_report(&repair, before, after).map_err(|error| TestCaseError::fail(format!("{error} (damage at {hits:?}, {repair:?})")))?;
    }
}

mod logstor_reader {
    use super::*;

    pub fn options(recovery_mode: RecoveryMode) -> LogstorOptions {
        LogstorOptions { recovery_mode, ..crate::logstor_os::options() }
    }

    /// A sealed segment as a reader finds it.
    pub struct Sealed {
        pub file: PathBuf,
        /// Where the segment starts in its file.
        pub base: u64,
        /// Where its seal lies in it: its data's length.
        pub seal: u64,
        pub records: u64,
    }

    /// Every segment with a seal that verifies.
    pub fn sealed(directory: &Path) -> Vec<Sealed> {
        let options = options(RecoveryMode::Strict);
        let data_files = files(directory, ballast::logstor::format::parse_data_file_name);
        let mut sealed = Vec::new();
        for (file_index, file) in data_files {
            let bytes = fs::read(&file).unwrap();
            for (local, segment_bytes) in (0u64..).zip(bytes.chunks_exact(options.segment_size as usize)) {
                let segment = file_index * options.segments_per_file + local;
                if let Some((seal, records)) = read_segment(segment, segment_bytes) {
                    sealed.push(Sealed { file: file.clone(), base: local * options.segment_size, seal, records });
                }
            }
        }
        sealed
    }

    pub fn census(directory: &Path) -> Census {
        let sealed = sealed(directory);
        Census {
            records: sealed.iter().map(|segment| segment.records).sum(),
            bytes: sealed.iter().map(|segment| segment.seal).sum(),
            segments: 0,
        }
    }

    /// The seal of segment `segment`, its `bytes`, and the records before it in data buffers of
    /// its generation that verify; `None` if no seal verifies.
    fn read_segment(segment: u64, bytes: &[u8]) -> Option<(u64, u64)> {
        let blocks = (0..bytes.len() as u64).step_by(BLOCK_SIZE as usize);
        let (seal, generation) = blocks.clone().find_map(|offset| {
            buffer_at(segment, bytes, offset)
                .filter(|header| header.kind == BufferKind::Seal)
                .map(|header| (offset, header.generation))
        })?;
        let records = blocks
            .take_while(|&offset| offset < seal)
            .filter_map(|offset| buffer_at(segment, bytes, offset))
            .filter(|header| header.kind == BufferKind::Data && header.generation == generation)
            .map(|header| u64::from(header.records_count))
            .sum();
        Some((seal, records))
    }

    /// The buffer that verifies at `offset`, if one does.
    fn buffer_at(segment: u64, bytes: &[u8], offset: u64) -> Option<BufferHeader> {
        let at = offset as usize;
        let header = decode_buffer_header(&bytes[at..], segment, offset, bytes.len() as u64 - offset).ok()?;
        verify_buffer(&bytes[at..at + header.length() as usize], &header).is_ok().then_some(header)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Damage is placed in sealed segments before their seal, where every byte belongs to a
    /// buffer that must verify. (Damage to a first buffer's generation, bytes 16..24, went
    /// unseen until the scan stopped trusting a first buffer that fails verification: a
    /// strict open sealed the synced segment empty and lost its records without an error.)
    #[test]
    fn logstor_repair_reports_what_it_drops(
        writes in prop::collection::vec((0u8..40, prop::option::of(0usize..600)), 1..150),
        maintain in any::<bool>(),
        damage in damage(),
    ) {
        let directory = tempfile::tempdir().unwrap();
        let mut store = Logstor::open(os(), directory.path(), logstor_reader::options(RecoveryMode::Strict)).unwrap();
        for (index, &(key, value)) in writes.iter().enumerate() {
            match value {
                Some(length) => store.put(&[key], &vec![index as u8; length]).unwrap(),
                None => store.delete(&[key]).unwrap(),
            }
            if maintain && index == writes.len() / 2 {
                store.maintain_to_quiescence().unwrap();
            }
        }
        store.close().unwrap();
        let places: Vec<Place> = logstor_reader::sealed(directory.path())
            .into_iter()
            .map(|segment| Place { file: segment.file, bytes: segment.base..segment.base + segment.seal })
            .collect();
        let hits = damage.hits(&places);
        prop_assume!(!hits.is_empty(), "no sealed segment holds data");
        apply(&hits);
        let before = logstor_reader::census(directory.path());
        let strict = Logstor::open(os(), directory.path(), logstor_reader::options(RecoveryMode::Strict));
        prop_assert!(matches!(strict, Err(Error::Corruption { .. })), "a strict open refuses damage at {:?}", hits);
        let repaired = Logstor::open(os(), directory.path(), logstor_reader::options(RecoveryMode::Repair)).unwrap();
        let after = logstor_reader::census(directory.path());
        prop_assert_eq!(after.records, repaired.recovery_report().records_count, "the reader agrees with the store after the repair");
        let repair = repaired.recovery_report().repair.clone().expect("a repair is reported");
        check_report(&repair, before, after).map_err(|error| TestCaseError::fail(format!("{error} (damage at {hits:?}, {repair:?})")))?;
    }
}
