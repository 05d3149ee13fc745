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

use crate::harness::{bytes_on_disk, Bench, Limits, Row};

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

/// One pass of the workload on a fresh directory: seconds for the puts, for the gets, to
/// reopen, and the bytes on disk after the engine closed.
fn pass<E: Engine>(workload: &Workload, directory: &Path) -> io::Result<[f64; 4]> {
    let started = Instant::now();
    let mut engine = E::open(directory)?;
    for batch in workload.puts.chunks(PER_SYNC) {
        engine.put_batch(batch)?;
    }
    let puts = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut found = 0;
    for key in &workload.gets {
        found += usize::from(engine.get(key)?);
    }
    assert_eq!(found, workload.gets.len(), "every key reads back");
    let gets = started.elapsed().as_secs_f64();
    engine.close()?;
    let bytes = bytes_on_disk(directory)? as f64;
    let started = Instant::now();
    let engine = E::open(directory)?;
    let reopen = started.elapsed().as_secs_f64();
    assert!(engine.get(&workload.gets[0])?, "the store reopens whole");
    Ok([puts, gets, reopen, bytes])
}

type Pass = fn(&Workload, &Path) -> io::Result<[f64; 4]>;

pub fn kv(bench: &mut Bench, limits: &Limits) -> io::Result<()> {
    let count = usize::try_from(bench.n(1_000_000)).expect("fits");
    let workload = Workload::new(count);
    let mut engines: Vec<(&'static str, Pass)> = vec![
        ("ballast logstor", pass::<Ballast>),
        ("fjall 3", pass::<Fjall>),
        ("redb 4", pass::<Redb>),
        ("sled 0.34", pass::<Sled>),
    ];
    engines.retain(|(name, _)| bench.selected(name));
    // In turns, A B C D A B C D ..., each pass on a fresh directory.
    let mut samples = vec![[Vec::new(), Vec::new(), Vec::new(), Vec::new()]; engines.len()];
    for _ in 0..bench.runs {
        for (index, (name, run)) in engines.iter().enumerate() {
            let directory = tempfile::tempdir_in(&bench.base)?;
            let [puts, gets, reopen, bytes] = run(&workload, directory.path())?;
            eprintln!("  kv / {name}: puts {puts:.2}s gets {gets:.2}s reopen {reopen:.3}s {:.0} MB", bytes / 1e6);
            samples[index][0].push(count as f64 / puts);
            samples[index][1].push(count as f64 / gets);
            samples[index][2].push(reopen * 1e3);
            samples[index][3].push(bytes / 1e6);
        }
    }
    let limit_puts = count as f64 / limits.time(count as u64 * 116, (count / PER_SYNC) as u64);
    let cases: [(String, &'static str, bool, Option<f64>); 4] = [
        (format!("{count} random puts, durable every {PER_SYNC}"), "puts/s", true, Some(limit_puts)),
        (format!("{count} random gets"), "gets/s", true, None),
        ("reopen".to_string(), "ms", false, None),
        ("bytes on disk after the run".to_string(), "MB", false, None),
    ];
    for (case_index, (name, unit, higher_is_better, limit)) in cases.into_iter().enumerate() {
        for (engine_index, (engine, _)) in engines.iter().enumerate() {
            bench.rows.push(Row {
                suite: "kv",
                case: name.clone(),
                engine,
                unit,
                samples: samples[engine_index][case_index].clone(),
                higher_is_better,
                limit,
            });
        }
    }
    Ok(())
}
