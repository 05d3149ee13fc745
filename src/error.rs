//! The crate's one error type.
//!
//! Errors are named after what failed and carry where it failed: the file and the byte offset.
//! `Vfs` implementations speak `std::io::Error`; the engine wraps those with the path and the
//! operation that failed, so a user never has to guess which file a message is about.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a stretch of bytes on disk was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptionReason {
    /// A file header does not start with the expected magic bytes.
    BadMagic,
    /// A file header names a format version this build does not read.
    UnsupportedVersion { version: u16 },
    /// A header field disagrees with the file it was found in (segment number, page size).
    HeaderMismatch { field: &'static str, expected: u64, found: u64 },
    /// The stored checksum does not match the bytes. A misdirected or stale fragment lands
    /// here too, because its checksum covers the segment number and offset it was written for.
    Checksum { expected: u32, found: u32 },
    /// A fragment's length runs past the end of its page or file.
    BadLength { length: u64 },
    /// A fragment type byte that is not one of the defined types.
    BadFragmentType { fragment_type: u8 },
    /// Fragments out of order: a middle or last without a first, or a first inside a record.
    BadFragmentOrder { fragment_type: u8 },
    /// A reserved byte that must be zero is not.
    NonZeroReserved,
    /// Bytes after the end of a sealed segment's data, or in padding, are not zero.
    NonZeroPadding,
    /// The file ends in the middle of a structure that a sealed file must hold whole.
    Truncated { length: u64 },
    /// A sealed segment's data ends without the seal that marks where it was sealed: records
    /// written at its end are missing (a write the disk put somewhere else).
    Unsealed,
    /// A logstor FREE marker stands where a segment in use has data: at offset 0 before that
    /// use's seal, or among its buffers. The first buffer of a synced use never replaced it.
    FreeMarkerInUse,
    /// A file the directory must hold is gone: `logstor.meta`, beside data files that need it.
    MissingFile,
    /// A commit's first offset leaves a gap after the offsets before it.
    OutOfOrder { expected: u64, found: u64 },
    /// A commit claims offsets that earlier commits already hold: the history forked.
    Forked { expected: u64, found: u64 },
    /// A commit's epoch is lower than the epoch of a commit before it.
    EpochRegression { previous: u64, found: u64 },
    /// A record whose checksum verifies does not decode as its structure's record: it stops
    /// making sense at byte `at` of it. Written by another program, or by a bug.
    BadRecord { at: u64 },
}

impl fmt::Display for CorruptionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => write!(f, "bad magic"),
            Self::UnsupportedVersion { version } => write!(f, "unsupported format version {version}"),
            Self::HeaderMismatch { field, expected, found } => {
                write!(f, "header field {field} is {found}, expected {expected}")
            }
            Self::Checksum { expected, found } => {
                write!(f, "checksum mismatch: stored {expected:#010x}, computed {found:#010x}")
            }
            Self::BadLength { length } => write!(f, "length {length} runs past its bounds"),
            Self::BadFragmentType { fragment_type } => write!(f, "unknown fragment type {fragment_type}"),
            Self::BadFragmentOrder { fragment_type } => {
                write!(f, "fragment type {fragment_type} out of order")
            }
            Self::NonZeroReserved => write!(f, "reserved byte is not zero"),
            Self::NonZeroPadding => write!(f, "padding or data past the end is not zero"),
            Self::Truncated { length } => write!(f, "file truncated at {length} bytes"),
            Self::Unsealed => write!(f, "sealed segment's data ends before its seal"),
            Self::FreeMarkerInUse => write!(f, "a free marker where a segment in use has data"),
            Self::MissingFile => write!(f, "the file is missing"),
            Self::OutOfOrder { expected, found } => write!(f, "offset {found} where {expected} was expected"),
            Self::Forked { expected, found } => {
                write!(f, "offset {found} again where {expected} was expected: the history forked")
            }
            Self::EpochRegression { previous, found } => write!(f, "epoch {found} after epoch {previous}"),
            Self::BadRecord { at } => write!(f, "a record that verifies does not decode at its byte {at}"),
        }
    }
}

/// Everything that can go wrong in ballast.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed. `operation` names the call (`"write_at"`, `"sync_data"`, ...).
    Io { path: PathBuf, operation: &'static str, source: io::Error },
    /// Bytes on disk failed verification. `segment` is the segment number the file holds,
    /// `offset` the byte offset in that file where the damaged structure starts.
    Corruption { file: PathBuf, segment: u64, offset: u64, reason: CorruptionReason },
    /// A file in a data directory has a name the engine does not recognise.
    BadFileName { file: PathBuf },
    /// Segment numbering has a hole: `missing` should exist between its neighbours.
    SegmentGap { directory: PathBuf, missing: u64 },
    /// Another handle, in this process or another, holds the directory's lock. `holder` is
    /// the process ID the holder wrote in the `LOCK` file, when it wrote one (`OsVfs` does).
    Locked { directory: PathBuf, holder: Option<u32> },
    /// An earlier write or sync failed; the handle refuses every mutating call until reopened.
    Poisoned,
    /// A record is larger than one segment can hold.
    RecordTooLarge { length: u64, max: u64 },
    /// The caller passed an argument the call cannot accept.
    InvalidArgument { reason: String },
    /// A commit's transaction offsets do not continue the log: `found` where `expected` was due.
    OffsetMismatch { expected: u64, found: u64 },
    /// `set_epoch` was asked to go backwards.
    EpochRegression { current: u64, requested: u64 },
    /// An option given to an open disagrees with what the files on disk were written with (a
    /// page size, a segment size, ...). Not corruption: nothing on disk is wrong, and the open
    /// changed nothing. Open again with `field` set to `on_disk`.
    OptionsMismatch { file: PathBuf, field: &'static str, on_disk: u64, given: u64 },
    /// The directory holds files of another ballast structure: `holds` names one of them, and
    /// `expected` the structure the open was for. The open changed nothing.
    ForeignDirectory { directory: PathBuf, holds: String, expected: &'static str },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, operation: &'static str, source: io::Error) -> Self {
        Self::Io { path: path.into(), operation, source }
    }

    /// The underlying I/O error kind, when this is an I/O error.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Self::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    /// True for [`Error::Corruption`].
    pub fn is_corruption(&self) -> bool {
        matches!(self, Self::Corruption { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, operation, source } => {
                write!(f, "{operation} failed on {}: {source}", path.display())
            }
            Self::Corruption { file, segment, offset, reason } => {
                write!(f, "corruption in {} (segment {segment}) at offset {offset}: {reason}", file.display())
            }
            Self::BadFileName { file } => {
                write!(f, "unexpected file in data directory: {}", file.display())
            }
            Self::SegmentGap { directory, missing } => {
                write!(f, "segment {missing} is missing in {}", directory.display())
            }
            Self::Locked { directory, holder: Some(pid) } => {
                write!(f, "directory {} is locked by another handle, of process {pid}", directory.display())
            }
            Self::Locked { directory, holder: None } => {
                write!(f, "directory {} is locked by another handle", directory.display())
            }
            Self::Poisoned => write!(f, "handle poisoned by an earlier failed write or sync; reopen it"),
            Self::RecordTooLarge { length, max } => {
                write!(f, "record of {length} bytes exceeds the maximum of {max}")
            }
            Self::InvalidArgument { reason } => write!(f, "invalid argument: {reason}"),
            Self::OffsetMismatch { expected, found } => {
                write!(f, "transaction offset {found} does not continue the log; expected {expected}")
            }
            Self::EpochRegression { current, requested } => {
                write!(f, "epoch {requested} is lower than the current epoch {current}")
            }
            Self::OptionsMismatch { file, field, on_disk, given } => write!(
                f,
                "{} was written with {field} {on_disk}, but the open was given {given}: open it with {field} {on_disk}",
                file.display()
            ),
            Self::ForeignDirectory { directory, holds, expected } => {
                write!(f, "{} holds {holds}, not {expected}", directory.display())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
