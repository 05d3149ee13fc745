//! The TSDB head, in the making (issue 13): a fourth structure, modelled on the Prometheus TSDB's
//! head block, on ballast's own WAL.
//!
//! What is here so far: [`chunkenc`], the XOR (Gorilla) chunk encoding, bit for bit as
//! Prometheus writes it, so that the blocks of the next issue can be read by Prometheus;
//! [`Labels`], a series' validated and sorted label set; [`Matcher`], the four PromQL label
//! matchers; and [`MemPostings`], the label index with the sorted-list algebra a query runs
//! on. The series and their refs, the appender, head chunk files, WAL records, checkpoints and
//! queries over samples come next; until then this module is behind the `tsdb` cargo feature
//! and not part of the crate's stable API.

pub mod chunkenc;
mod labels;
mod matcher;
pub mod postings;

pub use labels::{is_valid_name, Label, LabelError, Labels};
pub use matcher::{MatchKind, Matcher, MatcherError};
pub use postings::MemPostings;

/// A series' reference: stable, drawn from a counter that survives restarts, never reissued.
pub type SeriesRef = u64;
