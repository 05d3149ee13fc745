//! The `wal` and `commitlog` suites.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ballast::commitlog::{Commitlog, CommitlogOptions};
use ballast::vfs::OsVfs;
use ballast::wal::{Wal, WalOptions};
use okaywal::{Entry, EntryId, LogManager, ReadChunkResult, SegmentReader, WriteAheadLog};
use spacetimedb_commitlog::payload::ArrayDecoder;
use spacetimedb_paths::server::CommitLogDir;
use spacetimedb_paths::FromPathUnchecked;

use crate::harness::{Bench, Case, Limits, Run};

fn other(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

/// An okaywal manager whose checkpoints finish at once and which, on recovery, reads every
/// chunk, so reopening costs what reading the log back costs. okaywal checkpoints each segment
/// file once it fills and then recycles the file for a later segment: most of its writes in
/// shape (a) land on blocks written before, whose `fdatasync` is about half as dear on this disk
/// (the `limits` suite measures both; see bench/README.md).
#[derive(Debug, Default)]
struct ReadAll {
    bytes: Arc<std::sync::atomic::AtomicU64>,
}

impl LogManager for ReadAll {
    fn recover(&mut self, entry: &mut Entry<'_>) -> io::Result<()> {
        while let ReadChunkResult::Chunk(mut chunk) = entry.read_chunk()? {
            let mut data = Vec::new();
            io::Read::read_to_end(&mut chunk, &mut data)?;
            self.bytes.fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    fn checkpoint_to(&mut self, _last: EntryId, _entries: &mut SegmentReader, _wal: &WriteAheadLog) -> io::Result<()> {
        Ok(())
    }
}

/// The records of a shape: `count` records of `size` bytes with a sync every `per_sync`.
#[derive(Clone, Copy)]
struct Shape {
    name: &'static str,
    count: u64,
    size: usize,
    per_sync: u64,
}

fn record(index: u64, size: usize) -> Vec<u8> {
    let mut record = vec![(index % 251) as u8; size];
    record[..8.min(size)].copy_from_slice(&index.to_le_bytes()[..8.min(size)]);
    record
}

/// How the ballast WAL is driven in a shape.
#[derive(Clone, Copy)]
enum Checkpoints {
    /// Every segment stays (the default 128 MiB segments: shape (a) fits in one), so every sync
    /// writes into new blocks.
    None,
    /// As okaywal's benchmark manager does: once a segment is sealed it is checkpointed at once
    /// and truncated at the next sync, and its file is reused for a later segment
    /// (`WalOptions::recycle_segments`, 1 by default). Segments of 8 MiB, against okaywal's
    /// 768 KiB-1 MiB files: each rotation costs a few syncs of its own.
    AtOnce,
}

/// Segment size of the ballast WAL in [`Checkpoints::AtOnce`].
const CHECKPOINTED_SEGMENT_SIZE: u64 = 8 << 20;

fn ballast_wal(shape: Shape, checkpoints: Checkpoints) -> Run<'static> {
    Box::new(move |directory: &Path| {
        let records: Vec<Vec<u8>> =
            (0..shape.per_sync.min(shape.count)).map(|index| record(index, shape.size)).collect();
        let options = match checkpoints {
            Checkpoints::None => WalOptions::default(),
            Checkpoints::AtOnce => WalOptions { segment_size: CHECKPOINTED_SEGMENT_SIZE, ..WalOptions::default() },
        };
        let started = Instant::now();
        let mut wal = Wal::open(Arc::new(OsVfs::new()), directory, options).map_err(other)?;
        for index in 0..shape.count {
            wal.append(&records[(index % shape.per_sync) as usize]).map_err(other)?;
            if (index + 1) % shape.per_sync == 0 {
                wal.sync().map_err(other)?;
                let (first, last) = wal.segments();
                if matches!(checkpoints, Checkpoints::AtOnce) && first < last {
                    wal.truncate_before(last).map_err(other)?;
                }
            }
        }
        wal.close().map_err(other)?;
        Ok(started.elapsed().as_secs_f64())
    })
}

fn okaywal_write(shape: Shape) -> Run<'static> {
    Box::new(move |directory: &Path| {
        let records: Vec<Vec<u8>> =
            (0..shape.per_sync.min(shape.count)).map(|index| record(index, shape.size)).collect();
        let started = Instant::now();
        let log = WriteAheadLog::recover(directory, ReadAll::default())?;
        let mut index = 0;
        // One entry per sync interval: its commit is okaywal's durable point.
        while index < shape.count {
            let mut entry = log.begin_entry()?;
            for _ in 0..shape.per_sync.min(shape.count - index) {
                entry.write_chunk(&records[(index % shape.per_sync) as usize])?;
                index += 1;
            }
            entry.commit()?;
        }
        log.shutdown()?;
        Ok(started.elapsed().as_secs_f64())
    })
}

pub fn wal(bench: &mut Bench, limits: &Limits) -> io::Result<()> {
    let shapes = [
        Shape { name: "(a) 1M x 100 B, sync every 1000", count: bench.n(1_000_000), size: 100, per_sync: 1000 },
        Shape { name: "(b) 10k x 100 B, sync each", count: bench.n(10_000), size: 100, per_sync: 1 },
        Shape { name: "(c) 1024 x 64 KiB, sync every 16", count: bench.n(1024), size: 64 << 10, per_sync: 16 },
    ];
    for shape in shapes {
        let (count, size) = (shape.count as f64, shape.size as u64);
        let limit_seconds = limits.time(shape.count * size, shape.count / shape.per_sync);
        bench.measure(Case {
            suite: "wal",
            name: shape.name.into(),
            unit: "records/s",
            higher_is_better: true,
            figure: Box::new(move |seconds| count / seconds),
            limit: Some(count / limit_seconds),
            engines: vec![
                ("ballast", ballast_wal(shape, Checkpoints::AtOnce)),
                ("okaywal", okaywal_write(shape)),
                ("ballast, no checkpoints", ballast_wal(shape, Checkpoints::None)),
            ],
        })?;
    }
    // (d) Reopen and read everything back, after shape (a).
    let shape = shapes[0];
    let read_ballast: Run<'_> = Box::new(move |directory: &Path| {
        ballast_wal(shape, Checkpoints::None)(directory)?;
        let started = Instant::now();
        let wal = Wal::open(Arc::new(OsVfs::new()), directory, WalOptions::default()).map_err(other)?;
        let mut bytes = 0;
        for item in wal.records() {
            bytes += item.map_err(other)?.1.len();
        }
        assert_eq!(bytes as u64, shape.count * shape.size as u64);
        Ok(started.elapsed().as_secs_f64())
    });
    let read_okaywal: Run<'_> = Box::new(move |directory: &Path| {
        okaywal_write(shape)(directory)?;
        let bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let started = Instant::now();
        let log = WriteAheadLog::recover(directory, ReadAll { bytes: Arc::clone(&bytes) })?;
        let seconds = started.elapsed().as_secs_f64();
        log.shutdown()?;
        // okaywal hands entries to its manager as segments fill (checkpoints) and replays only
        // what was not checkpointed; say how much that was.
        let read = bytes.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!("  okaywal reopen replayed {read} of {} bytes", shape.count * shape.size as u64);
        Ok(seconds)
    });
    bench.measure(Case {
        suite: "wal",
        name: "(d) reopen and read back (a); okaywal replays only what it has not checkpointed".into(),
        unit: "ms",
        higher_is_better: false,
        figure: Box::new(|seconds| seconds * 1e3),
        limit: None,
        engines: vec![("ballast", read_ballast), ("okaywal", read_okaywal)],
    })
}

/// How ballast's commitlog groups transactions into commits in a case.
#[derive(Clone, Copy)]
enum Commits {
    /// One commit per transaction, as spacetimedb-commitlog 2 writes them.
    PerTransaction,
    /// One commit of the transactions one sync makes durable, as spacetimedb-commitlog 1.3
    /// writes them (`append`, then `flush_and_sync`).
    PerSync,
}

fn ballast_commitlog<const N: usize>(count: u64, per_sync: u64, commits: Commits) -> Run<'static> {
    Box::new(move |directory: &Path| {
        let payload = record(7, N);
        let per_commit = match commits {
            Commits::PerTransaction => 1,
            Commits::PerSync => per_sync,
        };
        let mut batch: Vec<(u64, &[u8])> = Vec::with_capacity(usize::try_from(per_commit).expect("fits"));
        let started = Instant::now();
        let mut log = Commitlog::open(Arc::new(OsVfs::new()), directory, CommitlogOptions::default()).map_err(other)?;
        for offset in 0..count {
            batch.push((offset, &payload));
            if batch.len() as u64 == per_commit || offset + 1 == count {
                log.commit(&batch).map_err(other)?;
                batch.clear();
            }
            if (offset + 1) % per_sync == 0 {
                log.sync().map_err(other)?;
            }
        }
        log.close().map_err(other)?;
        Ok(started.elapsed().as_secs_f64())
    })
}

fn stdb_commitlog<const N: usize>(count: u64, per_sync: u64) -> Run<'static> {
    Box::new(move |directory: &Path| {
        let payload: Box<[u8; N]> = record(7, N).into_boxed_slice().try_into().expect("N bytes");
        let started = Instant::now();
        let options = spacetimedb_commitlog::Options::default();
        let log =
            spacetimedb_commitlog::Commitlog::<[u8; N]>::open(CommitLogDir::from_path_unchecked(directory), options)?;
        for offset in 0..count {
            // 1.3's unit of writing is a commit of the transactions appended since the last
            // flush, written with one `write` call; used as its docs intend, a commit holds
            // what one sync makes durable (ballast and 2.x write a commit per transaction).
            log.append(*payload).map_err(|_| io::Error::other("the commit buffer is full"))?;
            if (offset + 1) % per_sync == 0 {
                log.flush_and_sync()?;
            }
        }
        log.flush_and_sync()?;
        Ok(started.elapsed().as_secs_f64())
    })
}

/// Seconds to read the items `read` starts (the seek included): all of them, or only the first
/// when `seek`. At least one must come.
fn time_reading<I, T, E>(read: impl FnOnce() -> I, seek: bool) -> io::Result<f64>
where
    I: Iterator<Item = Result<T, E>>,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let mut count = 0u64;
    for item in read() {
        item.map_err(other)?;
        count += 1;
        if seek {
            break;
        }
    }
    assert!(count >= 1, "the log holds what was written");
    Ok(started.elapsed().as_secs_f64())
}

pub fn commitlog(bench: &mut Bench, limits: &Limits) -> io::Result<()> {
    let (a, b, c) = (bench.n(1_000_000), bench.n(10_000), bench.n(1024));
    let cases = [
        ("(a) 1M x 100 B, sync every 1000", a, 100, 1000),
        ("(b) 10k x 100 B, sync each", b, 100, 1),
        ("(c) 1024 x 64 KiB, sync every 16", c, 65536, 16),
    ];
    for (name, count, size, per_sync) in cases {
        let limit_seconds = limits.time(count * size, count / per_sync);
        let engines: Vec<(&str, Run<'static>)> = if size == 100 {
            vec![
                ("ballast", ballast_commitlog::<100>(count, per_sync, Commits::PerTransaction)),
                ("spacetimedb-commitlog 1.3", stdb_commitlog::<100>(count, per_sync)),
                ("ballast, a commit per sync", ballast_commitlog::<100>(count, per_sync, Commits::PerSync)),
            ]
        } else {
            vec![
                ("ballast", ballast_commitlog::<65536>(count, per_sync, Commits::PerTransaction)),
                ("spacetimedb-commitlog 1.3", stdb_commitlog::<65536>(count, per_sync)),
                ("ballast, a commit per sync", ballast_commitlog::<65536>(count, per_sync, Commits::PerSync)),
            ]
        };
        let count = count as f64;
        bench.measure(Case {
            suite: "commitlog",
            name: name.into(),
            unit: "transactions/s",
            higher_is_better: true,
            figure: Box::new(move |seconds| count / seconds),
            limit: Some(count / limit_seconds),
            engines,
        })?;
    }
    // Traversal of every transaction, and seeking near the end, after shape (a).
    for (name, seek) in [("traverse (a) from 0", false), ("seek near the end of (a)", true)] {
        let from = if seek { a - a / 1000 } else { 0 };
        let ours = |commits: Commits| -> Run<'static> {
            Box::new(move |directory: &Path| {
                ballast_commitlog::<100>(a, 1000, commits)(directory)?;
                let log =
                    Commitlog::open(Arc::new(OsVfs::new()), directory, CommitlogOptions::default()).map_err(other)?;
                time_reading(|| log.transactions_from(from), seek)
            })
        };
        let theirs: Run<'_> = Box::new(move |directory: &Path| {
            stdb_commitlog::<100>(a, 1000)(directory)?;
            let options = spacetimedb_commitlog::Options::default();
            let log = spacetimedb_commitlog::Commitlog::<[u8; 100]>::open(
                CommitLogDir::from_path_unchecked(directory),
                options,
            )?;
            time_reading(|| log.transactions_from(from, &ArrayDecoder::<100>), seek)
        });
        bench.measure(Case {
            suite: "commitlog",
            name: name.into(),
            unit: "ms",
            higher_is_better: false,
            figure: Box::new(|seconds| seconds * 1e3),
            limit: None,
            engines: vec![
                ("ballast", ours(Commits::PerTransaction)),
                ("spacetimedb-commitlog 1.3", theirs),
                ("ballast, a commit per sync", ours(Commits::PerSync)),
            ],
        })?;
    }
    Ok(())
}
