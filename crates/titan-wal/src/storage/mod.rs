//! The seam between the log and the disk: every file operation the journal, the flusher,
//! recovery and snapshots perform goes through [`Storage`] and [`StorageFile`].
//!
//! [`DiskStorage`] is the real one: glommio DMA files (`O_DIRECT`, `O_DSYNC` where asked),
//! io_uring, and `std::fs` for rare metadata operations. [`SimStorage`] (feature `sim`, and in
//! this crate's tests) is a disk model for the storage-fault simulator: it loses unsynced writes
//! at a power cut, tears the write in flight, flips bits, and fails operations with EIO or
//! ENOSPC, so the real journal code can be run against every one of those (`sim/`).
//!
//! The traits use `async fn` without `Send` bounds on purpose: the log lives on one glommio
//! executor thread, and its futures are `!Send` anyway.

use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::rc::Rc;

mod disk;
#[cfg(any(test, feature = "sim"))]
pub mod sim;

pub use disk::DiskStorage;
#[cfg(any(test, feature = "sim"))]
pub use sim::{Faults, SimDisk, SimStorage};

/// How a file is opened for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file, for reading and writing.
    Existing,
    /// A new file; fails if the name exists.
    CreateNew,
    /// Created, or emptied if it exists.
    CreateTruncate,
}

/// A buffer to write from: aligned DMA memory on the real disk.
pub trait WriteBuffer {
    fn bytes_mut(&mut self) -> &mut [u8];
}

/// The file system a journal lives on.
#[allow(async_fn_in_trait)]
pub trait Storage: Clone + 'static {
    type File: StorageFile;
    /// Held while one journal (or replay) uses a directory; released when dropped.
    type Lock: 'static;

    /// The paths in `dir` (files and directories), in no particular order.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    fn is_dir(&self, path: &Path) -> bool;
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Locks `dir` for one user; a second lock fails with `ErrorKind::WouldBlock`.
    fn lock_dir(&self, dir: &Path) -> io::Result<Self::Lock>;
    /// Reads a file from `from` to its end in one go (rare: only when recovery found damage).
    fn read_from(&self, path: &Path, from: u64) -> io::Result<Vec<u8>>;
    /// Copies `from` to `to` and makes the copy durable (keeping a damaged segment aside).
    fn copy_durably(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Settles whatever the implementation needs before a directory's files are opened (glommio's
    /// direct-IO probe, see `DiskStorage`).
    async fn prepare_dir(&self, dir: &Path) -> io::Result<()>;
    /// Makes a directory entry change (create, rename, unlink) inside `dir` durable.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    async fn open_read(&self, path: &Path) -> io::Result<Self::File>;
    /// Opens for reading and writing. With `sync_writes`, each write is durable when it returns
    /// (`O_DSYNC`); otherwise only after [`StorageFile::fdatasync`].
    async fn open_write(
        &self,
        path: &Path,
        mode: OpenMode,
        sync_writes: bool,
    ) -> io::Result<Self::File>;
}

/// An open file. Writes take whole, block-aligned buffers at block-aligned offsets.
#[allow(async_fn_in_trait)]
pub trait StorageFile: Sized + 'static {
    type Buffer: WriteBuffer + 'static;
    type Reader: StreamReader;

    fn alloc_buffer(&self, len: usize) -> Self::Buffer;
    async fn write_at(&self, buf: Self::Buffer, offset: u64) -> io::Result<usize>;
    /// Writes a buffer that is also written elsewhere (zero-filling reuses one).
    async fn write_shared_at(&self, buf: Rc<Self::Buffer>, offset: u64) -> io::Result<usize>;
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    async fn size(&self) -> io::Result<u64>;
    async fn truncate(&self, len: u64) -> io::Result<()>;
    async fn fdatasync(&self) -> io::Result<()>;
    async fn close(self) -> io::Result<()>;
    /// Reads the file from the start to `end` in chunks of `chunk` bytes, `read_ahead` ahead.
    fn stream(self, chunk: usize, read_ahead: usize, end: u64) -> Self::Reader;
}

/// Sequential reads with read-ahead; an empty chunk is the end.
#[allow(async_fn_in_trait)]
pub trait StreamReader {
    type Chunk: Deref<Target = [u8]>;
    async fn next_chunk(&mut self) -> io::Result<Self::Chunk>;
    async fn close(self) -> io::Result<()>;
}
