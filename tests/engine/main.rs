//! Engine integration tests on the real filesystem (`OsVfs` in temp dirs): one binary, one
//! module per area.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::cast_possible_truncation,
    reason = "tests damage files by hand through std::fs and build bytes from indexes"
)]

mod bad_input;
mod commitlog_format;
mod commitlog_open;
mod commitlog_os;
mod docs;
mod logstor_format;
mod logstor_generations;
mod logstor_open;
mod logstor_os;
mod logstor_space;
mod repair_counts;
mod tsdb_block;
mod tsdb_checkpoint;
mod tsdb_chunk_files;
mod tsdb_chunks;
mod tsdb_compaction;
mod tsdb_head;
mod tsdb_index;
mod wal_damage;
mod wal_format;
mod wal_open;
mod wal_os;

use std::path::Path;
use std::sync::Arc;

use ballast::vfs::{OsVfs, Vfs};
use ballast::wal::{Position, RecoveryMode, Wal, WalOptions};

/// Small geometry so a handful of records spans several pages and segments.
pub fn small_options(recovery_mode: RecoveryMode) -> WalOptions {
    WalOptions {
        segment_size: 1024,
        page_size: 256,
        recovery_mode,
        preallocate: 512,
        recycle_segments: 0,
        first_segment: 0,
    }
}

/// Every file under `directory`, recursively, with its length and a hash of its bytes, but the
/// `LOCK` file an open creates (the one change a failed open may leave, documented). Two equal
/// digests mean the directory holds the same files with the same bytes.
///
/// The hash is SipHash (std's, with fixed keys), not a CRC: the CRC-32 of bytes that end with
/// the CRC-32 of what precedes them is one constant (0x2144df1c), and CRCs are linear, so any
/// two such files of one length (a meta file or a repair plan rewritten with other fields and
/// its checksum) hashed the same, whatever was hashed before them.
pub fn digest(directory: &Path) -> std::collections::BTreeMap<String, (u64, u32)> {
    let mut files = std::collections::BTreeMap::new();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(at) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name() != Some(std::ffi::OsStr::new("LOCK")) {
                let bytes = std::fs::read(&path).unwrap();
                let name = path.strip_prefix(directory).unwrap().display().to_string();
                let mut hasher = std::hash::DefaultHasher::new();
                std::hash::Hasher::write(&mut hasher, &bytes);
                files.insert(name, (bytes.len() as u64, std::hash::Hasher::finish(&hasher) as u32));
            }
        }
    }
    files
}

/// `bytes` as hex, 16 to a line after the line's offset, for layout snapshots; all-zero lines
/// after the first `zero_lines_kept` are left out (a preallocated file's tail).
pub fn hexdump(bytes: &[u8], zero_lines_kept: usize) -> String {
    let mut out = String::new();
    for (line, chunk) in bytes.chunks(16).enumerate() {
        if chunk.iter().all(|&byte| byte == 0) && line >= zero_lines_kept {
            continue;
        }
        let hex: Vec<String> = chunk.iter().map(|byte| format!("{byte:02x}")).collect();
        out.push_str(&format!("{:06x}  {}\n", line * 16, hex.join(" ")));
    }
    out
}

pub fn os() -> Arc<dyn Vfs> {
    Arc::new(OsVfs::new())
}

pub fn open(directory: &Path, recovery_mode: RecoveryMode) -> ballast::Result<Wal> {
    Wal::open(os(), directory, small_options(recovery_mode))
}

/// Record `index` of the test logs: a length that varies from empty to several pages.
pub fn record(index: usize) -> Vec<u8> {
    let length = [0, 1, 40, 200, 300, 7, 600, 90][index % 8];
    (0..length).map(|byte| ((index * 31 + byte) % 256) as u8).collect()
}

pub fn read_all(wal: &Wal) -> Vec<(Position, Vec<u8>)> {
    wal.records().collect::<ballast::Result<Vec<_>>>().expect("the log reads back")
}

/// Writes `count` records with `record`, rotating so there are at least three segments, syncs,
/// closes, and returns every record's position.
pub fn write_log(directory: &Path, count: usize) -> Vec<Position> {
    let mut wal = open(directory, RecoveryMode::Strict).expect("a new log opens");
    let mut positions = Vec::new();
    for index in 0..count {
        positions.push(wal.append(&record(index)).expect("append"));
    }
    wal.close().expect("close");
    let segments: std::collections::BTreeSet<u64> = positions.iter().map(|position| position.segment).collect();
    assert!(segments.len() >= 3, "the test log spans at least three segments, has {segments:?}");
    positions
}
