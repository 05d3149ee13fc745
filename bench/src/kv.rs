//! The `kv` suite: logstor against fjall, redb and sled. 1,000,000 random puts of 16-byte keys
//! and 100-byte values with a durable sync every 1,000, then 1,000,000 random gets, then the
//! time to reopen and the bytes on disk.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ballast::logstor::{Logstor, LogstorOptions};
use ballast::vfs::OsVfs;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use redb::{ReadableDatabase, TableDefinition};

use crate::harness::{bytes_on_disk, Bench, Case, Limits, Run};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const PER_SYNC: usize = 1000;

fn other(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

/// What every engine does, so that each case times just its part.
trait Engine {
    fn open(directory: &Path) -> io::Result<Self>
    where
        Self: Sized;
    /// Writes a batch and makes it durable.
    fn put_batch(&mut self, batch: &[([u8; 16], [u8; 100])]) -> io::Result<()>;
    fn get(&self, key: &[u8; 16]) -> io::Result<bool>;
    fn close(self) -> io::Result<()>
    where
        Self: Sized;
}

struct Ballast(Logstor);

impl Engine for Ballast {
    fn open(directory: &Path) -> io::Result<Self> {
        Logstor::open(Arc::new(OsVfs::new()), directory, LogstorOptions::default()).map(Self).map_err(other)
    }
    fn put_batch(&mut self, batch: &[([u8; 16], [u8; 100])]) -> io::Result<()> {
        for (key, value) in batch {
            self.0.put(key, value).map_err(other)?;
        }
        self.0.sync().map_err(other)
    }
    fn get(&self, key: &[u8; 16]) -> io::Result<bool> {
        Ok(self.0.get(key).map_err(other)?.is_some())
    }
    fn close(mut self) -> io::Result<()> {
        self.0.maintain_to_quiescence().map_err(other)?;
        self.0.close().map_err(other)
    }
}

struct Fjall(fjall::Database, fjall::Keyspace);

impl Engine for Fjall {
    fn open(directory: &Path) -> io::Result<Self> {
        let database = fjall::Database::builder(directory).open().map_err(other)?;
        let keyspace = database.keyspace("kv", fjall::KeyspaceCreateOptions::default).map_err(other)?;
        Ok(Self(database, keyspace))
    }
    fn put_batch(&mut self, batch: &[([u8; 16], [u8; 100])]) -> io::Result<()> {
        for (key, value) in batch {
            self.1.insert(key.as_slice(), value.as_slice()).map_err(other)?;
        }
        self.0.persist(fjall::PersistMode::SyncAll).map_err(other)
    }
    fn get(&self, key: &[u8; 16]) -> io::Result<bool> {
        Ok(self.1.get(key).map_err(other)?.is_some())
    }
    fn close(self) -> io::Result<()> {
        self.0.persist(fjall::PersistMode::SyncAll).map_err(other)
    }
}

struct Redb(redb::Database);

impl Engine for Redb {
    fn open(directory: &Path) -> io::Result<Self> {
        redb::Database::create(directory.join("kv.redb")).map(Self).map_err(other)
    }
    fn put_batch(&mut self, batch: &[([u8; 16], [u8; 100])]) -> io::Result<()> {
        let transaction = self.0.begin_write().map_err(other)?;
        {
            let mut table = transaction.open_table(TABLE).map_err(other)?;
            for (key, value) in batch {
                table.insert(key.as_slice(), value.as_slice()).map_err(other)?;
            }
        }
        transaction.commit().map_err(other)
    }
    fn get(&self, key: &[u8; 16]) -> io::Result<bool> {
        let transaction = self.0.begin_read().map_err(other)?;
        let table = transaction.open_table(TABLE).map_err(other)?;
        Ok(table.get(key.as_slice()).map_err(other)?.is_some())
    }
    fn close(self) -> io::Result<()> {
        Ok(())
    }
}

struct Sled(sled::Db);

impl Engine for Sled {
    fn open(directory: &Path) -> io::Result<Self> {
        sled::open(directory).map(Self).map_err(other)
    }
    fn put_batch(&mut self, batch: &[([u8; 16], [u8; 100])]) -> io::Result<()> {
        for (key, value) in batch {
            self.0.insert(key, value.as_slice()).map_err(other)?;
        }
        self.0.flush().map(drop).map_err(other)
    }
    fn get(&self, key: &[u8; 16]) -> io::Result<bool> {
        Ok(self.0.get(key).map_err(other)?.is_some())
    }
    fn close(self) -> io::Result<()> {
        self.0.flush().map(drop).map_err(other)
    }
}

/// The workload, drawn once so every engine gets the same keys in the same order.
struct Workload {
    puts: Vec<([u8; 16], [u8; 100])>,
    gets: Vec<[u8; 16]>,
}

impl Workload {
    fn new(count: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let puts: Vec<([u8; 16], [u8; 100])> = (0..count)
            .map(|_| {
                let mut value = [0u8; 100];
                rng.fill(&mut value[..]);
                (rng.gen(), value)
            })
            .collect();
        let mut gets: Vec<[u8; 16]> = puts.iter().map(|(key, _)| *key).collect();
        gets.shuffle(&mut rng);
        Self { puts, gets }
    }
}

/// Which part of the workload a case times.
#[derive(Clone, Copy)]
enum Part {
    Puts,
    Gets,
    Reopen,
    Bytes,
}

fn run<E: Engine>(workload: &Workload, part: Part) -> Run<'_> {
    Box::new(move |directory: &Path| {
        let started = Instant::now();
        let mut engine = E::open(directory)?;
        for batch in workload.puts.chunks(PER_SYNC) {
            engine.put_batch(batch)?;
        }
        let put_seconds = started.elapsed().as_secs_f64();
        if let Part::Puts = part {
            engine.close()?;
            return Ok(put_seconds);
        }
        let started = Instant::now();
        let mut found = 0;
        for key in &workload.gets {
            found += usize::from(engine.get(key)?);
        }
        assert_eq!(found, workload.gets.len(), "every key reads back");
        let get_seconds = started.elapsed().as_secs_f64();
        engine.close()?;
        match part {
            Part::Gets => Ok(get_seconds),
            Part::Reopen => {
                let started = Instant::now();
                let engine = E::open(directory)?;
                let seconds = started.elapsed().as_secs_f64();
                assert!(engine.get(&workload.gets[0])?);
                Ok(seconds)
            }
            // Reported through the figure function as bytes, not seconds.
            Part::Bytes => Ok(bytes_on_disk(directory)? as f64),
            Part::Puts => unreachable!(),
        }
    })
}

pub fn kv(bench: &mut Bench, limits: &Limits) -> io::Result<()> {
    let count = usize::try_from(bench.n(1_000_000)).expect("fits");
    let workload = Workload::new(count);
    let engines = |part| -> Vec<(&'static str, Run<'_>)> {
        vec![
            ("ballast logstor", run::<Ballast>(&workload, part)),
            ("fjall 3", run::<Fjall>(&workload, part)),
            ("redb 4", run::<Redb>(&workload, part)),
            ("sled 0.34", run::<Sled>(&workload, part)),
        ]
    };
    let total = count as f64;
    let syncs = (count / PER_SYNC) as u64;
    let limit_puts = total / limits.time(count as u64 * 116, syncs);
    bench.measure(Case {
        suite: "kv",
        name: format!("{count} random puts, durable every {PER_SYNC}"),
        unit: "puts/s",
        higher_is_better: true,
        figure: Box::new(move |seconds| total / seconds),
        limit: Some(limit_puts),
        engines: engines(Part::Puts),
    })?;
    bench.measure(Case {
        suite: "kv",
        name: format!("{count} random gets"),
        unit: "gets/s",
        higher_is_better: true,
        figure: Box::new(move |seconds| total / seconds),
        limit: None,
        engines: engines(Part::Gets),
    })?;
    bench.measure(Case {
        suite: "kv",
        name: "reopen".into(),
        unit: "ms",
        higher_is_better: false,
        figure: Box::new(|seconds| seconds * 1e3),
        limit: None,
        engines: engines(Part::Reopen),
    })?;
    bench.measure(Case {
        suite: "kv",
        name: "bytes on disk after the run".into(),
        unit: "MB",
        higher_is_better: false,
        figure: Box::new(|bytes| bytes / 1e6),
        limit: None,
        engines: engines(Part::Bytes),
    })
}
