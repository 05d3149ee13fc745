//! How a head is opened: its options, their defaults and their checks.

use crate::error::{Error, Result};
use crate::wal::WalOptions;
use crate::RecoveryMode;

/// How the head is opened.
#[derive(Clone, Debug)]
pub struct HeadOptions {
    /// The width of a chunk range in milliseconds: no chunk spans two. Defaults to two hours.
    pub chunk_range: i64,
    /// The WAL's segment size. Defaults to 128 MiB.
    pub wal_segment_size: u64,
    /// The WAL's page size (see [`WalOptions::page_size`]). Defaults to 32 KiB.
    pub wal_page_size: u32,
    /// What opening does with damaged synced data in the WAL and the head chunk files
    /// (whose damage loses nothing: the WAL and the checkpoint hold what they hold).
    pub recovery_mode: RecoveryMode,
    /// The size of a head chunk file: a file is preallocated to it, and the next begins when
    /// an entry would not fit. At least 4 KiB. Defaults to 128 MiB.
    pub chunk_file_size: u64,
    /// How many refs the head reserves at a time: it records the end of each reservation in
    /// the `refs` file (a small atomic write) before handing out the first ref of it, so that
    /// no crash can make it hand a ref out twice. At least 1; defaults to 1,024.
    pub refs_reserved_at_once: u64,
}

impl HeadOptions {
    pub(super) fn check(&self) -> Result<()> {
        let invalid = |reason: &str| Err(Error::InvalidArgument { reason: reason.to_string() });
        if self.chunk_range <= 0 {
            return invalid("chunk_range must be positive");
        }
        if self.refs_reserved_at_once == 0 {
            return invalid("refs_reserved_at_once must be at least 1");
        }
        if self.chunk_file_size < 4096 {
            return invalid("chunk_file_size must be at least 4096");
        }
        Ok(())
    }
}

impl Default for HeadOptions {
    fn default() -> Self {
        let wal = WalOptions::default();
        Self {
            chunk_range: 2 * 3_600_000,
            wal_segment_size: wal.segment_size,
            wal_page_size: wal.page_size,
            recovery_mode: RecoveryMode::Strict,
            chunk_file_size: 128 << 20,
            refs_reserved_at_once: 1024,
        }
    }
}
