//! Segment files as the writer sees them: the active segment, opening the tail segment found by
//! recovery, and creating new segments, preallocated or not.
//!
//! A preallocated segment is created under a temporary name at its full size and filled with
//! zeros (written, not just reserved with `fallocate`, whose unwritten extents would make every
//! write a metadata change), synced, and renamed into place when the log rolls into it. Writes into
//! it are then pure overwrites, and a sync only has to flush data, not the file system journal:
//! on this machine's disk that halves its cost. Zeros are exactly what the scanner reads as "no
//! more records", so a preallocated segment needs no other marker.
//!
//! Segments are opened `O_DSYNC` ([`SYNC_WRITES`]): a write returns once its data is durable (a
//! FUA write for an overwrite), so a batch costs one io_uring operation instead of a write and an
//! `fdatasync` — about 50–90 µs less per commit here (ack p50 190 µs instead of 240–290).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions};
use tracing::warn;

use super::error::{IoFailure, IoOp};
use super::layout::{segment_path, temporary_path};
use super::limits::{BLOCK_BYTES, SNAPSHOT_WRITE_CHUNK_BYTES};
use super::record::Lsn;
use super::recovery::TailSegment;
use super::snapshot::sync_dir;

/// The segment being appended to.
pub(crate) struct ActiveSegment {
    pub file: DmaFile,
    pub path: PathBuf,
    /// Offset after the last durable record.
    pub end: u64,
    /// The durable bytes of the last, partly filled block: `[align_down(end), end)`.
    pub tail: Vec<u8>,
}

/// A zero-filled, synced segment file waiting under a temporary name.
pub(crate) struct PreparedSegment {
    file: DmaFile,
    path: PathBuf,
}

/// Open flags of every segment the flusher writes: each write is durable when it returns.
pub(crate) const SYNC_WRITES: i32 = nix::libc::O_DSYNC;

pub(crate) const fn align_down(v: u64) -> u64 {
    v - v % BLOCK_BYTES as u64
}

fn prepared_path(dir: &Path) -> PathBuf {
    temporary_path(&dir.join("prepared-segment"))
}

/// Creates a zero-filled segment of `size` bytes under a temporary name. On failure the partial
/// file is removed, so a full disk does not keep losing space to it.
pub(crate) async fn prepare_segment(dir: &Path, size: u64) -> Result<PreparedSegment, IoFailure> {
    let path = prepared_path(dir);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(SYNC_WRITES)
        .dma_open(&path)
        .await
        .map_err(|e| IoFailure::from_glommio(IoOp::Create, &path, e))?;
    match zero_fill(&file, &path, size).await {
        Ok(()) => Ok(PreparedSegment { file, path }),
        Err(e) => {
            let _ = file.close().await;
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

async fn zero_fill(file: &DmaFile, path: &Path, size: u64) -> Result<(), IoFailure> {
    let chunk = SNAPSHOT_WRITE_CHUNK_BYTES as u64;
    let mut zeros = file.alloc_dma_buffer(chunk as usize);
    zeros.as_bytes_mut().fill(0);
    let zeros = Rc::new(zeros);
    let mut at = 0;
    while at < size {
        let len = chunk.min(size - at);
        let written = if len == chunk {
            file.write_rc_at(zeros.clone(), at).await
        } else {
            let mut last = file.alloc_dma_buffer(len as usize);
            last.as_bytes_mut().fill(0);
            file.write_at(last, at).await
        }
        .map_err(|e| IoFailure::from_glommio(IoOp::Write, path, e))?;
        if (written as u64) < len {
            return Err(IoFailure::short(IoOp::Write, path, written, len as usize));
        }
        at += len;
    }
    file.fdatasync()
        .await
        .map_err(|e| IoFailure::from_glommio(IoOp::Sync, path, e))
}

/// Gives a prepared segment its final name (the sequence number of its first record) durably.
pub(crate) async fn install_segment(
    dir: &Path,
    prepared: PreparedSegment,
    start: Lsn,
) -> Result<ActiveSegment, IoFailure> {
    let path = segment_path(dir, start);
    if let Err(e) = prepared.file.rename(&path).await {
        let _ = prepared.file.close().await;
        let _ = std::fs::remove_file(&prepared.path);
        return Err(IoFailure::from_glommio(IoOp::Rename, &prepared.path, e));
    }
    sync_dir(dir).await?;
    Ok(ActiveSegment {
        file: prepared.file,
        path,
        end: 0,
        tail: Vec::new(),
    })
}

/// Drops a prepared segment that will not be used (the journal is closing).
pub(crate) async fn discard_prepared(prepared: PreparedSegment) {
    let _ = prepared.file.close().await;
    if let Err(e) = std::fs::remove_file(&prepared.path) {
        warn!(path = %prepared.path.display(), error = %e, "could not remove a prepared segment");
    }
}

/// Creates a new, empty segment file (not preallocated) and makes its name durable.
pub(crate) async fn create_segment(dir: &Path, start: Lsn) -> Result<ActiveSegment, IoFailure> {
    let path = segment_path(dir, start);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(SYNC_WRITES)
        .dma_open(&path)
        .await
        .map_err(|e| IoFailure::from_glommio(IoOp::Create, &path, e))?;
    if let Err(e) = sync_dir(dir).await {
        let _ = file.close().await;
        // Best effort: the name may or may not be durable; an empty segment is harmless anyway.
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(ActiveSegment {
        file,
        path,
        end: 0,
        tail: Vec::new(),
    })
}

/// Opens the segment the log ends in for appending. A damaged tail is cut off at the last valid
/// record; a clean one (only zeros after the end, e.g. preallocation) is left as it is. The partly
/// filled last block is read back, since the next batch rewrites it.
pub(crate) async fn open_tail(
    tail: &TailSegment,
    damaged: bool,
) -> Result<ActiveSegment, IoFailure> {
    let path = &tail.file.path;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(SYNC_WRITES)
        .dma_open(path)
        .await
        .map_err(|e| IoFailure::from_glommio(IoOp::Open, path, e))?;
    if damaged {
        warn!(
            path = %path.display(),
            offset = tail.end,
            discarded = tail.file_len - tail.end,
            "truncating WAL segment to its last valid record"
        );
        file.truncate(tail.end)
            .await
            .map_err(|e| IoFailure::from_glommio(IoOp::Truncate, path, e))?;
        file.fdatasync()
            .await
            .map_err(|e| IoFailure::from_glommio(IoOp::Sync, path, e))?;
    }
    let base = align_down(tail.end);
    let tail_len = (tail.end - base) as usize;
    let bytes = if tail_len == 0 {
        Vec::new()
    } else {
        let read = file
            .read_at(base, tail_len)
            .await
            .map_err(|e| IoFailure::from_glommio(IoOp::Read, path, e))?;
        read.to_vec()
    };
    if bytes.len() != tail_len {
        return Err(IoFailure::short(IoOp::Read, path, bytes.len(), tail_len));
    }
    Ok(ActiveSegment {
        file,
        path: path.clone(),
        end: tail.end,
        tail: bytes,
    })
}
