//! The TSDB head (issue 13): a fourth structure, modelled on the Prometheus TSDB's head block,
//! on ballast's own WAL.
//!
//! [`chunkenc`], the XOR (Gorilla) chunk encoding, bit for bit as Prometheus writes it, so
//! that the blocks of issue 17 can be read by Prometheus; [`Labels`], a series'
//! validated and sorted label set; [`Matcher`], the four PromQL label matchers;
//! [`MemPostings`], the label index with the sorted-list algebra a query runs on; and the
//! [`Head`]: series with stable refs (reserved durably in blocks, so none is issued twice
//! across crashes), an [`Appender`] whose commit is one WAL record (atomic through any crash)
//! and is buffered or synced, chunks cut as Prometheus cuts them, full chunks in head chunk
//! files so that memory holds about one open chunk per series, `select` over matchers and a
//! time window, deletion by tombstones ([`Head::delete`]), truncation and checkpoints
//! ([`Head::truncate`], [`Head::checkpoint`]) that bound the WAL, all rebuilt at open from
//! the newest checkpoint, the chunk files and the WAL after it.
//!
//! With the `blocks` feature, a [`Tsdb`] keeps the head and the blocks cut from it, in
//! Prometheus's own block format ([`block`]), in one directory Prometheus's tools read:
//! head compaction, levelled block compaction, retention, deletion across both, queries over
//! both.
//!
//! Behind the `tsdb` cargo feature (it brings the `regex` crate; `blocks` brings `crc32c` and
//! `serde_json`), and not yet covered by the crate's stability.

mod appender;
#[cfg(feature = "blocks")]
pub mod block;
pub(crate) mod bytes;
mod checkpoint;
mod chunk_files;
pub mod chunkenc;
#[cfg(feature = "blocks")]
mod compact;
#[cfg(feature = "blocks")]
mod db;
pub(crate) mod deletion;
mod head;
mod head_options;
mod labels;
#[cfg(feature = "blocks")]
mod leveled;
mod matcher;
pub mod postings;
mod record;
mod ref_map;
mod refs;
mod replay;
#[cfg(feature = "blocks")]
mod retention;
mod series;
mod truncation;

pub use appender::{AppendError, Appender, Durability};
#[cfg(feature = "blocks")]
pub use db::{Tsdb, TsdbOptions, TsdbRecovery, DAMAGED_SUFFIX, HEAD_DIRECTORY, PROMETHEUS_WAL_DIRECTORY};
pub use head::{Head, HeadRecovery, HeadStats, SeriesSamples};
pub use head_options::HeadOptions;
pub use labels::{is_valid_name, Label, LabelError, Labels};
pub use matcher::{MatchKind, Matcher, MatcherError};
pub use postings::MemPostings;

/// Whether `name` is a file only a head writes: its `refs` file or a checkpoint.
pub(crate) fn owns_file_name(name: &str) -> bool {
    name == refs::FILE_NAME || checkpoint::parse_file_name(name).is_some()
}

/// A series' reference: stable, drawn from a counter that survives restarts, never reissued.
pub type SeriesRef = u64;
