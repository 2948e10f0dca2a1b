//! The real disk: glommio DMA files (direct IO through io_uring) for data, `std::fs` for rare
//! metadata operations (listing, creating directories, removing files, locking), which take
//! microseconds.
//!
//! glommio 0.9 quirks handled here: it decides per thread and device whether direct-IO reads may
//! use the IO-poll ring by reading the first file opened with direct IO, and an empty file makes
//! it guess wrong ([`DiskStorage::prepare_dir`] opens a non-empty probe first); and it opens
//! directories with `openat(-1, ..)`, so a relative path must be made absolute before a
//! directory sync.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{
    DmaBuffer, DmaFile, DmaStreamReader, DmaStreamReaderBuilder, OpenOptions, ReadResult,
};

use super::{OpenMode, Storage, StorageFile, StreamReader, WriteBuffer};
use crate::layout::LOCK_FILE;
use crate::limits::BLOCK_BYTES;

/// The real file system, through glommio.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskStorage;

/// An exclusive `flock` on a directory's `LOCK` file.
#[derive(Debug)]
pub struct DiskLock {
    _lock: nix::fcntl::Flock<fs::File>,
}

/// Keeps the OS error number of a glommio error (its `From` conversion keeps it only for plain
/// IO errors, not for the "enhanced" ones that name the file).
fn io_error<T>(error: glommio::GlommioError<T>) -> io::Error {
    match error {
        glommio::GlommioError::IoError(e) => e,
        glommio::GlommioError::EnhancedIoError { source, .. } => source,
        other => other.into(),
    }
}

/// Name of the probe file [`DiskStorage::prepare_dir`] creates and removes.
const PROBE_FILE: &str = "direct-io-probe.tmp";

impl Storage for DiskStorage {
    type File = DiskFile;
    type Lock = DiskLock;

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.path()))
            .collect()
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<DiskLock> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(DiskLock { _lock: lock }),
            Err((_, errno)) => Err(io::Error::from_raw_os_error(errno as i32)),
        }
    }

    fn read_from(&self, path: &Path, from: u64) -> io::Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = fs::File::open(path)?;
        file.seek(SeekFrom::Start(from))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn copy_durably(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::copy(from, to)?;
        fs::File::open(to)?.sync_all()?;
        let parent = to.parent().unwrap_or(Path::new("."));
        fs::File::open(parent)?.sync_all()
    }

    /// Settles glommio's per-thread, per-device decision whether reads may use the IO-poll ring.
    ///
    /// glommio 0.9 decides it by reading the first block of the first file opened with direct IO
    /// on a device. If that file is empty the read succeeds trivially at end-of-file, the poll
    /// ring is enabled on a device that does not support it, and every later direct-IO read on
    /// that device (from this thread) fails with EOPNOTSUPP. A fresh log directory starts with an
    /// empty segment, so before anything else a throwaway one-block file is opened to make the
    /// probe read real data.
    async fn prepare_dir(&self, dir: &Path) -> io::Result<()> {
        let path = dir.join(PROBE_FILE);
        fs::write(&path, [0u8; BLOCK_BYTES])?;
        let probed = match DmaFile::open(&path).await {
            Ok(file) => file.close().await.map_err(io_error),
            Err(e) => Err(io_error(e)),
        };
        fs::remove_file(&path)?;
        probed
    }

    /// Through glommio, so the executor is not blocked.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let absolute = std::path::absolute(dir)?;
        let handle = glommio::io::Directory::open(&absolute)
            .await
            .map_err(io_error)?;
        let synced = handle.sync().await.map_err(io_error);
        let _ = handle.close().await;
        synced
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        glommio::io::rename(from, to).await.map_err(io_error)
    }

    async fn open_read(&self, path: &Path) -> io::Result<DiskFile> {
        let file = DmaFile::open(path).await.map_err(io_error)?;
        Ok(DiskFile { file })
    }

    async fn open_write(
        &self,
        path: &Path,
        mode: OpenMode,
        sync_writes: bool,
    ) -> io::Result<DiskFile> {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        match mode {
            OpenMode::Existing => {}
            OpenMode::CreateNew => {
                options.create_new(true);
            }
            OpenMode::CreateTruncate => {
                options.create(true).truncate(true);
            }
        }
        if sync_writes {
            options.custom_flags(nix::libc::O_DSYNC);
        }
        let file = options.dma_open(path).await.map_err(io_error)?;
        Ok(DiskFile { file })
    }
}

/// A glommio DMA file.
pub struct DiskFile {
    file: DmaFile,
}

impl WriteBuffer for DmaBuffer {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.as_bytes_mut()
    }
}

impl StorageFile for DiskFile {
    type Buffer = DmaBuffer;
    type Reader = DiskReader;

    fn alloc_buffer(&self, len: usize) -> DmaBuffer {
        self.file.alloc_dma_buffer(len)
    }

    async fn write_at(&self, buf: DmaBuffer, offset: u64) -> io::Result<usize> {
        self.file.write_at(buf, offset).await.map_err(io_error)
    }

    async fn write_shared_at(&self, buf: Rc<DmaBuffer>, offset: u64) -> io::Result<usize> {
        self.file.write_rc_at(buf, offset).await.map_err(io_error)
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let read = self.file.read_at(offset, len).await.map_err(io_error)?;
        Ok(read.to_vec())
    }

    async fn size(&self) -> io::Result<u64> {
        self.file.file_size().await.map_err(io_error)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.truncate(len).await.map_err(io_error)
    }

    async fn fdatasync(&self) -> io::Result<()> {
        self.file.fdatasync().await.map_err(io_error)
    }

    async fn close(self) -> io::Result<()> {
        self.file.close().await.map_err(io_error)
    }

    fn stream(self, chunk: usize, read_ahead: usize, end: u64) -> DiskReader {
        DiskReader {
            chunk: chunk as u64,
            reader: DmaStreamReaderBuilder::new(self.file)
                .with_buffer_size(chunk)
                .with_read_ahead(read_ahead)
                .with_end_pos(end)
                .build(),
        }
    }
}

/// glommio's streaming reader.
pub struct DiskReader {
    chunk: u64,
    reader: DmaStreamReader,
}

impl StreamReader for DiskReader {
    type Chunk = ReadResult;

    async fn next_chunk(&mut self) -> io::Result<ReadResult> {
        self.reader
            .get_buffer_aligned(self.chunk)
            .await
            .map_err(io_error)
    }

    async fn close(self) -> io::Result<()> {
        self.reader.close().await.map_err(io_error)
    }
}
