//! A fault-free SimVfs and the real filesystem must agree on every result of any sequence of
//! file and directory operations: the simulator is only as good as its likeness to the disk.

use std::io;
use std::path::{Path, PathBuf};

use ballast::vfs::{read_exact_at, OpenMode, OsVfs, Vfs, VfsFile};
use ballast_sim::SimVfs;
use proptest::prelude::*;

const NAMES: [&str; 4] = ["a", "b", "c", "segment.tmp"];

#[derive(Clone, Debug)]
enum Op {
    Create(usize),
    Open(usize, bool),
    Write { handle: usize, offset: u64, length: usize, byte: u8 },
    Read { handle: usize, offset: u64, length: usize },
    SetLen { handle: usize, length: u64 },
    Allocate { handle: usize, length: u64 },
    Len(usize),
    Sync(usize),
    Rename(usize, usize),
    Remove(usize),
    ReadDir,
    SyncDir,
    Close(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let name = 0..NAMES.len();
    let handle = 0..8usize;
    prop_oneof![
        name.clone().prop_map(Op::Create),
        (name.clone(), any::<bool>()).prop_map(|(name, writable)| Op::Open(name, writable)),
        (handle.clone(), 0..3000u64, 0..1500usize, any::<u8>()).prop_map(|(handle, offset, length, byte)| Op::Write {
            handle,
            offset,
            length,
            byte
        }),
        (handle.clone(), 0..3000u64, 0..2000usize).prop_map(|(handle, offset, length)| Op::Read {
            handle,
            offset,
            length
        }),
        (handle.clone(), 0..4000u64).prop_map(|(handle, length)| Op::SetLen { handle, length }),
        (handle.clone(), 0..4000u64).prop_map(|(handle, length)| Op::Allocate { handle, length }),
        handle.clone().prop_map(Op::Len),
        handle.clone().prop_map(Op::Sync),
        (name.clone(), name.clone()).prop_map(|(from, to)| Op::Rename(from, to)),
        name.prop_map(Op::Remove),
        Just(Op::ReadDir),
        Just(Op::SyncDir),
        handle.prop_map(Op::Close),
    ]
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Done,
    Bytes(Vec<u8>),
    Length(u64),
    Names(Vec<String>),
    Failed(io::ErrorKind),
    NoHandle,
}

fn outcome<T>(result: io::Result<T>, map: impl FnOnce(T) -> Outcome) -> Outcome {
    match result {
        Ok(value) => map(value),
        Err(error) => Outcome::Failed(error.kind()),
    }
}

struct Side {
    vfs: Box<dyn Vfs>,
    directory: PathBuf,
    handles: Vec<(Box<dyn VfsFile>, bool)>,
}

impl Side {
    fn path(&self, name: usize) -> PathBuf {
        self.directory.join(NAMES[name])
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        let handle = |handles: &Vec<(Box<dyn VfsFile>, bool)>, index: usize| {
            (!handles.is_empty()).then(|| index % handles.len())
        };
        match op {
            Op::Create(name) => {
                let path = self.path(*name);
                match self.vfs.open(&path, OpenMode::CreateNew) {
                    Ok(file) => {
                        self.handles.push((file, true));
                        Outcome::Done
                    }
                    Err(error) => Outcome::Failed(error.kind()),
                }
            }
            Op::Open(name, writable) => {
                let mode = if *writable { OpenMode::ReadWrite } else { OpenMode::Read };
                match self.vfs.open(&self.path(*name), mode) {
                    Ok(file) => {
                        self.handles.push((file, *writable));
                        Outcome::Done
                    }
                    Err(error) => Outcome::Failed(error.kind()),
                }
            }
            Op::Write { handle: index, offset, length, byte } => match handle(&self.handles, *index) {
                Some(index) if self.handles[index].1 => {
                    outcome(self.handles[index].0.write_at(&vec![*byte; *length], *offset), |()| Outcome::Done)
                }
                _ => Outcome::NoHandle,
            },
            Op::Read { handle: index, offset, length } => match handle(&self.handles, *index) {
                Some(index) => {
                    let file = &self.handles[index].0;
                    let file_length = file.len().expect("len works");
                    let available = file_length.saturating_sub(*offset).min(*length as u64) as usize;
                    let mut buf = vec![0u8; available];
                    outcome(read_exact_at(file.as_ref(), &mut buf, *offset), |()| Outcome::Bytes(buf))
                }
                None => Outcome::NoHandle,
            },
            Op::SetLen { handle: index, length } => match handle(&self.handles, *index) {
                Some(index) if self.handles[index].1 => {
                    outcome(self.handles[index].0.set_len(*length), |()| Outcome::Done)
                }
                _ => Outcome::NoHandle,
            },
            Op::Allocate { handle: index, length } => match handle(&self.handles, *index) {
                Some(index) if self.handles[index].1 => {
                    outcome(self.handles[index].0.allocate(*length), |()| Outcome::Done)
                }
                _ => Outcome::NoHandle,
            },
            Op::Len(index) => match handle(&self.handles, *index) {
                Some(index) => outcome(self.handles[index].0.len(), Outcome::Length),
                None => Outcome::NoHandle,
            },
            Op::Sync(index) => match handle(&self.handles, *index) {
                Some(index) if self.handles[index].1 => outcome(self.handles[index].0.sync_data(), |()| Outcome::Done),
                _ => Outcome::NoHandle,
            },
            Op::Rename(from, to) => outcome(self.vfs.rename(&self.path(*from), &self.path(*to)), |()| Outcome::Done),
            Op::Remove(name) => outcome(self.vfs.remove_file(&self.path(*name)), |()| Outcome::Done),
            Op::ReadDir => outcome(self.vfs.read_dir(&self.directory), |names| {
                Outcome::Names(names.into_iter().filter(|name| name != ballast::vfs::LOCK_FILE_NAME).collect())
            }),
            Op::SyncDir => outcome(self.vfs.sync_dir(&self.directory), |()| Outcome::Done),
            Op::Close(index) => match handle(&self.handles, *index) {
                Some(index) => {
                    self.handles.remove(index);
                    Outcome::Done
                }
                None => Outcome::NoHandle,
            },
        }
    }
}

fn sides(temp: &Path) -> (Side, Side) {
    let sim = SimVfs::perfect(7);
    sim.create_dir_all(Path::new("/data")).unwrap();
    let os = Side { vfs: Box::new(OsVfs::new()), directory: temp.to_path_buf(), handles: Vec::new() };
    let sim = Side { vfs: Box::new(sim), directory: PathBuf::from("/data"), handles: Vec::new() };
    (os, sim)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn simvfs_agrees_with_the_real_filesystem(ops in prop::collection::vec(op(), 1..60)) {
        let temp = tempfile::tempdir().unwrap();
        let (mut os, mut sim) = sides(temp.path());
        for (index, op) in ops.iter().enumerate() {
            let expected = os.apply(op);
            let found = sim.apply(op);
            prop_assert_eq!(found, expected, "op {} {:?}", index, op);
        }
    }
}

#[test]
fn both_sides_lock_directories_exclusively() {
    let temp = tempfile::tempdir().unwrap();
    let (os, sim) = sides(temp.path());
    for side in [os, sim] {
        let first = side.vfs.lock_dir(&side.directory).unwrap();
        assert_eq!(side.vfs.lock_dir(&side.directory).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        drop(first);
        side.vfs.lock_dir(&side.directory).expect("a dropped lock is released");
    }
}
