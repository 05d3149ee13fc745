//! The handles: `SimFile`, an open file of a [`SimVfs`], and `SimLock`, a directory lock,
//! with the engine's `Vfs`, `VfsFile` and `VfsLock` traits implemented over the disk's state.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::MutexGuard;

use ballast::vfs::{OpenMode, Vfs, VfsFile, VfsLock};

use super::state::{split, DirOp, Inode, State};
use super::{SimVfs, FILES_MAX};

#[derive(Debug)]
struct SimFile {
    vfs: SimVfs,
    inode: u64,
    boot: u64,
    writable: bool,
    label: String,
}

struct SimLock {
    vfs: SimVfs,
    path: PathBuf,
    token: u64,
}

impl fmt::Debug for SimLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimLock").field("path", &self.path).finish()
    }
}

impl VfsLock for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.vfs.state();
        if state.locks.get(&self.path) == Some(&self.token) {
            state.locks.remove(&self.path);
        }
    }
}

impl Vfs for SimVfs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        let mut state = self.state();
        state.begin(format_args!("open {} {mode:?}", path.display()))?;
        let (parent, name) = split(path)?;
        let existing = state.directory(&parent)?.current.get(&name).copied();
        let id = match (mode, existing) {
            (OpenMode::CreateNew, Some(_)) => return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists")),
            (OpenMode::CreateNew, None) => {
                assert!(state.inodes.len() < FILES_MAX, "simulation holds fewer than {FILES_MAX} files");
                let id = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(id, Inode::default());
                state.dir_op(&parent, DirOp::Link { name, inode: id })?;
                id
            }
            (_, None) => return Err(io::Error::new(io::ErrorKind::NotFound, "no such file")),
            (_, Some(id)) => id,
        };
        state.inode(id).handles += 1;
        let boot = state.boot;
        drop(state);
        Ok(Box::new(SimFile {
            vfs: self.clone(),
            inode: id,
            boot,
            writable: mode != OpenMode::Read,
            label: path.display().to_string(),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.begin(format_args!("remove {}", path.display()))?;
        state.lookup(path)?;
        let (parent, name) = split(path)?;
        state.dir_op(&parent, DirOp::Unlink { name })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.begin(format_args!("rename {} {}", from.display(), to.display()))?;
        let (from_parent, from_name) = split(from)?;
        let (to_parent, to_name) = split(to)?;
        if from_parent != to_parent {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "rename across directories"));
        }
        if state.directories.contains_key(from) {
            return state.rename_directory(from, to);
        }
        state.lookup(from)?;
        state.dir_op(&from_parent, DirOp::Rename { from: from_name, to: to_name })
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.begin(format_args!("mkdir {}", path.display()))?;
        // Directories themselves are durable at once: the engine syncs the parent anyway, and
        // losing a whole directory is outside the fault model.
        for ancestor in path.ancestors() {
            state.directories.entry(ancestor.to_path_buf()).or_default();
        }
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut state = self.state();
        state.begin(format_args!("read_dir {}", path.display()))?;
        Ok(state.directory(path)?.current.keys().cloned().collect())
    }

    fn subdirectories(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut state = self.state();
        state.begin(format_args!("subdirectories {}", path.display()))?;
        state.directory(path)?;
        Ok(state.subdirectories(path))
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.begin(format_args!("rmdir {}", path.display()))?;
        state.remove_directory(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.begin(format_args!("sync_dir {}", path.display()))?;
        if state.faults_enabled && state.config.lying_fsync {
            return Ok(());
        }
        let directory = state.directory(path)?;
        directory.durable = directory.current.clone();
        directory.pending.clear();
        Ok(())
    }

    fn lock_dir(&self, path: &Path) -> io::Result<Box<dyn VfsLock>> {
        let mut state = self.state();
        state.begin(format_args!("lock {}", path.display()))?;
        state.directory(path)?;
        if state.locks.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "directory is locked"));
        }
        let token = state.next_lock_token;
        state.next_lock_token += 1;
        state.locks.insert(path.to_path_buf(), token);
        Ok(Box::new(SimLock { vfs: self.clone(), path: path.to_path_buf(), token }))
    }
}

impl SimFile {
    fn state(&self, operation: fmt::Arguments<'_>) -> io::Result<MutexGuard<'_, State>> {
        let mut state = self.vfs.state();
        state.begin(operation)?;
        if state.boot != self.boot {
            return Err(io::Error::other("stale handle from before a crash"));
        }
        Ok(state)
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::PermissionDenied, "file opened read-only"))
        }
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut state = self.vfs.state();
        if state.boot == self.boot {
            if let Some(inode) = state.inodes.get_mut(&self.inode) {
                inode.handles = inode.handles.saturating_sub(1);
            }
        }
    }
}

impl VfsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut state = self.state(format_args!("read {} {offset}+{}", self.label, buf.len()))?;
        state.read(self.inode, buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check_writable()?;
        let mut state =
            self.state(format_args!("write {} {offset}+{} crc {:08x}", self.label, buf.len(), fnv1a(buf)))?;
        state.write(self.inode, buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.check_writable()?;
        let mut state = self.state(format_args!("sync {}", self.label))?;
        state.sync(self.inode)
    }

    fn len(&self) -> io::Result<u64> {
        let mut state = self.state(format_args!("len {}", self.label))?;
        Ok(state.inode(self.inode).current.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check_writable()?;
        let mut state = self.state(format_args!("set_len {} {len}", self.label))?;
        state.set_len(self.inode, len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.check_writable()?;
        let mut state = self.state(format_args!("allocate {} {len}", self.label))?;
        let current = state.inode(self.inode).current.len() as u64;
        if len > current {
            state.set_len(self.inode, len)?;
        }
        Ok(())
    }
}

/// FNV-1a (32-bit) of `bytes`: only a fingerprint for traces, not a checksum of record. (The
/// trace line still labels it `crc`: renaming the label would change every trace hash.)
fn fnv1a(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for &byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}
