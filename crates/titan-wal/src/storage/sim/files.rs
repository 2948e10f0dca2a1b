//! The [`Storage`] side of the simulated disk: the file system calls the log makes, each one
//! counted, possibly failed or cut off by the power (`DiskState::step`), and applied to the
//! model in `mod.rs`.

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::{DiskState, Inode, SimDisk, Step};
use crate::storage::{OpenMode, Storage, StorageFile, StreamReader, WriteBuffer};

/// A [`Storage`] on a [`SimDisk`].
#[derive(Debug, Clone)]
pub struct SimStorage {
    pub(super) disk: SimDisk,
}

/// The lock on a simulated directory.
#[derive(Debug)]
pub struct SimLock {
    disk: SimDisk,
    dir: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.disk.0.borrow_mut().locks.remove(&self.dir);
    }
}

fn not_found() -> io::Error {
    io::Error::from_raw_os_error(nix::libc::ENOENT)
}

impl SimStorage {
    fn state(&self) -> std::cell::RefMut<'_, DiskState> {
        self.disk.0.borrow_mut()
    }

    /// Runs a metadata operation that may fail or be cut off by the power.
    fn mutate<T>(&self, f: impl FnOnce(&mut DiskState) -> io::Result<T>) -> io::Result<T> {
        let mut state = self.state();
        match state.step() {
            Step::Proceed => f(&mut state),
            Step::Fail { error, .. } => Err(error),
        }
    }
}

impl Storage for SimStorage {
    type File = SimFile;
    type Lock = SimLock;

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let state = self.disk.0.borrow();
        if !state.dirs.contains(dir) {
            return Err(not_found());
        }
        let files = state.names.keys().filter(|p| p.parent() == Some(dir));
        let dirs = state.dirs.iter().filter(|p| p.parent() == Some(dir));
        Ok(files.chain(dirs).cloned().collect())
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.disk.0.borrow().dirs.contains(path)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        for ancestor in dir.ancestors().filter(|a| !a.as_os_str().is_empty()) {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.mutate(|state| state.names.remove(path).map(drop).ok_or_else(not_found))
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<SimLock> {
        if !self.state().locks.insert(dir.to_path_buf()) {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        Ok(SimLock {
            disk: self.disk.clone(),
            dir: dir.to_path_buf(),
        })
    }

    fn read_from(&self, path: &Path, from: u64) -> io::Result<Vec<u8>> {
        let state = self.disk.0.borrow();
        let id = state.names.get(path).ok_or_else(not_found)?;
        let data = &state.inodes[id].data;
        Ok(data.get(from as usize..).unwrap_or_default().to_vec())
    }

    fn copy_durably(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.mutate(|state| {
            let id = *state.names.get(from).ok_or_else(not_found)?;
            let data = state.inodes[&id].data.clone();
            let copy = state.next_inode;
            state.next_inode += 1;
            state.inodes.insert(
                copy,
                Inode {
                    durable: data.clone(),
                    data,
                },
            );
            state.names.insert(to.to_path_buf(), copy);
            state.durable_names.insert(to.to_path_buf(), copy);
            Ok(())
        })
    }

    async fn prepare_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.disk.settle().await;
        self.mutate(|state| {
            let under = |p: &PathBuf| p.parent() == Some(dir);
            state.durable_names.retain(|p, _| !under(p));
            let visible: Vec<_> = state
                .names
                .iter()
                .filter(|(p, _)| under(p))
                .map(|(p, &id)| (p.clone(), id))
                .collect();
            state.durable_names.extend(visible);
            Ok(())
        })
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.disk.settle().await;
        self.mutate(|state| {
            let id = state.names.remove(from).ok_or_else(not_found)?;
            state.names.insert(to.to_path_buf(), id);
            Ok(())
        })
    }

    async fn open_read(&self, path: &Path) -> io::Result<SimFile> {
        let id = *self.state().names.get(path).ok_or_else(not_found)?;
        Ok(SimFile {
            disk: self.disk.clone(),
            id,
            sync_writes: false,
        })
    }

    async fn open_write(
        &self,
        path: &Path,
        mode: OpenMode,
        sync_writes: bool,
    ) -> io::Result<SimFile> {
        self.disk.settle().await;
        let parent = DiskState::parent_of(path);
        let id = self.mutate(|state| {
            if !state.dirs.contains(&parent) {
                return Err(not_found());
            }
            let existing = state.names.get(path).copied();
            match (mode, existing) {
                (OpenMode::Existing, Some(id)) => Ok(id),
                (OpenMode::Existing, None) => Err(not_found()),
                (OpenMode::CreateNew, Some(_)) => {
                    Err(io::Error::from_raw_os_error(nix::libc::EEXIST))
                }
                (OpenMode::CreateTruncate, Some(id)) => {
                    state.inode(id)?.data.clear();
                    Ok(id)
                }
                (_, None) => {
                    let id = state.next_inode;
                    state.next_inode += 1;
                    state.inodes.insert(id, Inode::default());
                    state.names.insert(path.to_path_buf(), id);
                    Ok(id)
                }
            }
        })?;
        Ok(SimFile {
            disk: self.disk.clone(),
            id,
            sync_writes,
        })
    }
}

/// An open simulated file (it follows its inode across renames, as a real one does).
pub struct SimFile {
    disk: SimDisk,
    id: u64,
    sync_writes: bool,
}

impl WriteBuffer for Vec<u8> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl SimFile {
    fn data(&self) -> io::Result<Vec<u8>> {
        let mut state = self.disk.0.borrow_mut();
        Ok(state.inode(self.id)?.data.clone())
    }
}

impl StorageFile for SimFile {
    type Buffer = Vec<u8>;
    type Reader = SimReader;

    fn alloc_buffer(&self, len: usize) -> Vec<u8> {
        vec![0; len]
    }

    async fn write_at(&self, buf: Vec<u8>, offset: u64) -> io::Result<usize> {
        self.disk.settle().await;
        let sync = self.sync_writes;
        self.disk.0.borrow_mut().write(self.id, &buf, offset, sync)
    }

    async fn write_shared_at(&self, buf: Rc<Vec<u8>>, offset: u64) -> io::Result<usize> {
        self.disk.settle().await;
        let sync = self.sync_writes;
        self.disk.0.borrow_mut().write(self.id, &buf, offset, sync)
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let data = self.data()?;
        let from = (offset as usize).min(data.len());
        Ok(data[from..(from + len).min(data.len())].to_vec())
    }

    async fn size(&self) -> io::Result<u64> {
        Ok(self.data()?.len() as u64)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.disk.settle().await;
        let id = self.id;
        SimStorage {
            disk: self.disk.clone(),
        }
        .mutate(|state| {
            state.inode(id)?.data.resize(len as usize, 0);
            Ok(())
        })
    }

    async fn fdatasync(&self) -> io::Result<()> {
        self.disk.settle().await;
        let id = self.id;
        SimStorage {
            disk: self.disk.clone(),
        }
        .mutate(|state| {
            let inode = state.inode(id)?;
            inode.durable = inode.data.clone();
            Ok(())
        })
    }

    async fn close(self) -> io::Result<()> {
        Ok(())
    }

    fn stream(self, chunk: usize, _read_ahead: usize, end: u64) -> SimReader {
        let mut data = self.data().unwrap_or_default();
        data.truncate(end as usize);
        SimReader {
            data,
            pos: 0,
            chunk,
        }
    }
}

/// Reads a copy of the file taken when the stream started.
pub struct SimReader {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
}

impl StreamReader for SimReader {
    type Chunk = Vec<u8>;

    async fn next_chunk(&mut self) -> io::Result<Vec<u8>> {
        let end = (self.pos + self.chunk).min(self.data.len());
        let chunk = self.data[self.pos..end].to_vec();
        self.pos = end;
        Ok(chunk)
    }

    async fn close(self) -> io::Result<()> {
        Ok(())
    }
}
