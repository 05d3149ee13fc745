//! The TSDB head, in the making (issue 13): a fourth structure, modelled on the Prometheus TSDB's
//! head block, on ballast's own WAL.
//!
//! What is here so far: [`chunkenc`], the XOR (Gorilla) chunk encoding, bit for bit as
//! Prometheus writes it, so that the blocks of the next issue can be read by Prometheus. The
//! series, refs, appender, head chunk files, WAL records, checkpoints, postings and queries
//! come next; until then this module is behind the `tsdb` cargo feature and not part of the
//! crate's stable API.

pub mod chunkenc;
