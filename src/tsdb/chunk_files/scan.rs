//! Reading the head chunk files at open, before anything is written: every file's header and
//! entries, and the first damage.

use std::io;
use std::path::Path;

use super::format::{self, EntryMeta, ENTRY_HEADER_SIZE, HEADER_SIZE};
use super::{file_name, parse_file_name};
use crate::error::{CorruptionReason, Error, Result};
use crate::repair::RecoveryMode;
use crate::vfs::{self, OpenMode, Vfs};

/// A chunk file as scanned.
#[derive(Debug)]
pub(crate) struct FileScan {
    pub number: u64,
    /// Every entry that verified, by offset.
    pub entries: Vec<(u64, EntryMeta)>,
    /// Where the entries end.
    pub end: u64,
}

/// Where the chunk files stop being trustworthy, and why.
#[derive(Debug)]
pub(crate) struct Damage {
    pub number: u64,
    pub offset: u64,
    pub reason: CorruptionReason,
}

#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Every chunk file in the directory, ascending.
    pub numbers: Vec<u64>,
    /// The files scanned: up to the cut.
    pub files: Vec<FileScan>,
    /// Damage (in a repairing open), or the torn tail of the last file.
    pub cut: Option<Damage>,
    /// Temp files a crash left of files being created.
    pub temp_files: Vec<String>,
}

/// Scans the chunk files in `directory`. Damage in a sealed file (any but the last), a bad
/// header, or a file missing from the numbering fails a [`RecoveryMode::Strict`] open with
/// [`Error::Corruption`] naming the file and offset; a repairing open records it as the cut.
/// What does not verify at the end of the last file is a torn tail, cut in either mode: the
/// WAL holds everything the files hold, so nothing is lost either way.
pub(crate) fn scan(vfs: &dyn Vfs, directory: &Path, mode: RecoveryMode) -> Result<Scan> {
    let names = match vfs.read_dir(directory) {
        Ok(names) => names,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Scan::default()),
        Err(error) => return Err(Error::io(directory, "read_dir", error)),
    };
    let mut numbers: Vec<u64> = names.iter().filter_map(|name| parse_file_name(name)).collect();
    numbers.sort_unstable();
    let temp_files = names.into_iter().filter(|name| name.ends_with(".tmp")).collect();
    let mut scan = Scan { numbers: numbers.clone(), files: Vec::new(), cut: None, temp_files };
    for (index, &number) in numbers.iter().enumerate() {
        let last = index + 1 == numbers.len();
        let damage = if index > 0 && numbers[index - 1] + 1 != number {
            // A file is missing before this one: its chunks and every later one's go.
            Some(Damage { number, offset: 0, reason: CorruptionReason::MissingFile })
        } else {
            let (file, damage) = scan_file(vfs, &directory.join(file_name(number)), number, last)?;
            scan.files.push(file);
            damage
        };
        if let Some(damage) = damage {
            let torn = last && damage.offset >= HEADER_SIZE;
            if !torn && mode == RecoveryMode::Strict {
                let file = directory.join(file_name(damage.number));
                return Err(Error::Corruption { file, segment: number, offset: damage.offset, reason: damage.reason });
            }
            scan.cut = Some(damage);
            break;
        }
    }
    Ok(scan)
}

/// The longest chunk an entry may claim: the head cuts chunks near 1 KiB, and no length field
/// may make a scan allocate more than this.
const CHUNK_LENGTH_MAX: u32 = 64 << 10;

/// Scans one file, entry by entry: its entries up to the first that does not verify, and that
/// damage. The last file's entries may end anywhere (zeros of its preallocation follow); a
/// sealed file was cut at the end of its entries, so it must end there.
fn scan_file(vfs: &dyn Vfs, path: &Path, number: u64, last: bool) -> Result<(FileScan, Option<Damage>)> {
    let file = vfs.open(path, OpenMode::Read).map_err(|error| Error::io(path, "open", error))?;
    let length = file.len().map_err(|error| Error::io(path, "len", error))?;
    let mut scanned = FileScan { number, entries: Vec::new(), end: HEADER_SIZE };
    let damage = |offset, reason| Some(Damage { number, offset, reason });
    let mut header = vec![0u8; usize::try_from(length.min(HEADER_SIZE)).expect("small")];
    vfs::read_exact_retrying(file.as_ref(), path, &mut header, 0)?;
    if let Err(reason) = format::check_header(&header, number) {
        return Ok((scanned, damage(0, reason)));
    }
    let mut at = HEADER_SIZE;
    while at < length {
        let mut bytes = vec![0u8; usize::try_from((length - at).min(ENTRY_HEADER_SIZE as u64)).expect("small")];
        vfs::read_exact_retrying(file.as_ref(), path, &mut bytes, at)?;
        let meta = match format::decode_entry_header(&bytes) {
            Ok(Some(meta)) if meta.chunk_length <= CHUNK_LENGTH_MAX => meta,
            Ok(Some(meta)) => {
                return Ok((scanned, damage(at, CorruptionReason::BadLength { length: u64::from(meta.chunk_length) })));
            }
            Ok(None) if last => return Ok((scanned, None)),
            // Zeros where a sealed file's entries should go on: what was written there is lost.
            Ok(None) => return Ok((scanned, damage(at, CorruptionReason::Unsealed))),
            Err(_) if last && bytes.iter().all(|&byte| byte == 0) => return Ok((scanned, None)),
            Err(reason) => return Ok((scanned, damage(at, reason))),
        };
        if meta.length() > length - at {
            return Ok((scanned, damage(at, CorruptionReason::Truncated { length })));
        }
        let mut entry = vec![0u8; usize::try_from(meta.length()).expect("bounded above")];
        vfs::read_exact_retrying(file.as_ref(), path, &mut entry, at)?;
        if let Err(reason) = format::verify_entry(&entry, number, at) {
            return Ok((scanned, damage(at, reason)));
        }
        scanned.entries.push((at, meta));
        at += meta.length();
        scanned.end = at;
    }
    Ok((scanned, None))
}
