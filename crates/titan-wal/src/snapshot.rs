//! Snapshot files: an opaque state image covering every record up to a sequence number.
//!
//! Format: a 32-byte header, then the payload, zero-padded to the direct-IO block size.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "TTNSNAP1"
//!      8     8  covered LSN (u64, little-endian)
//!     16     8  payload length (u64)
//!     24     4  CRC32C of the payload
//!     28     4  CRC32C of bytes 0..28
//! ```
//!
//! A snapshot is written to a temporary name, synced, renamed into place and the directory synced,
//! so a snapshot file under its final name is complete unless the disk later damaged it; loading
//! verifies both checksums and the covered LSN against the file name and reports any mismatch as
//! a corrupt snapshot, which recovery skips in favour of an older one. (The snapshot's own format
//! did not change with the record format: it carries no records.)

use std::path::Path;

use thiserror::Error;

use super::error::{IoFailure, IoOp};
use super::layout::{sync_dir_on, temporary_path, SnapshotFile};
use super::limits::{
    BLOCK_BYTES, MAX_SNAPSHOT_BYTES, READ_AHEAD_CHUNKS, READ_CHUNK_BYTES,
    SNAPSHOT_WRITE_CHUNK_BYTES,
};
use super::record::Lsn;
use super::storage::{OpenMode, Storage, StorageFile, StreamReader, WriteBuffer};

pub const SNAPSHOT_HEADER_LEN: usize = 32;
const MAGIC: &[u8; 8] = b"TTNSNAP1";
const _: () = assert!(SNAPSHOT_HEADER_LEN == 8 + 8 + 8 + 4 + 4);
const _: () = assert!(SNAPSHOT_WRITE_CHUNK_BYTES % BLOCK_BYTES == 0);

/// Why a snapshot file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotCorruption {
    #[error("file of {len} bytes is shorter than the header")]
    Short { len: u64 },
    #[error("bad magic")]
    Magic,
    #[error("header checksum mismatch")]
    HeaderChecksum,
    #[error("header covers {header} but the file name says {name}")]
    NameMismatch { header: Lsn, name: Lsn },
    #[error("payload length {len} does not fit the file of {file_len} bytes (limit {max})")]
    Length { len: u64, file_len: u64, max: u64 },
    #[error("payload checksum mismatch")]
    PayloadChecksum,
}

/// Encodes the header for a payload.
pub(crate) fn encode_header(covered: Lsn, payload: &[u8]) -> [u8; SNAPSHOT_HEADER_LEN] {
    let mut header = [0u8; SNAPSHOT_HEADER_LEN];
    header[0..8].copy_from_slice(MAGIC);
    header[8..16].copy_from_slice(&covered.0.to_le_bytes());
    header[16..24].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    header[24..28].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    let crc = crc32c::crc32c(&header[0..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Validates a whole snapshot file image; returns the payload range on success.
pub(crate) fn verify(image: &[u8], name_covered: Lsn) -> Result<&[u8], SnapshotCorruption> {
    let file_len = image.len() as u64;
    if image.len() < SNAPSHOT_HEADER_LEN {
        return Err(SnapshotCorruption::Short { len: file_len });
    }
    let u32_at = |at: usize| u32::from_le_bytes(image[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(image[at..at + 8].try_into().expect("8 bytes"));
    if &image[0..8] != MAGIC {
        return Err(SnapshotCorruption::Magic);
    }
    if crc32c::crc32c(&image[0..28]) != u32_at(28) {
        return Err(SnapshotCorruption::HeaderChecksum);
    }
    let covered = Lsn(u64_at(8));
    if covered != name_covered {
        return Err(SnapshotCorruption::NameMismatch {
            header: covered,
            name: name_covered,
        });
    }
    let len = u64_at(16);
    let available = file_len - SNAPSHOT_HEADER_LEN as u64;
    if len > available || len > MAX_SNAPSHOT_BYTES {
        return Err(SnapshotCorruption::Length {
            len,
            file_len,
            max: MAX_SNAPSHOT_BYTES,
        });
    }
    let payload = &image[SNAPSHOT_HEADER_LEN..SNAPSHOT_HEADER_LEN + len as usize];
    if crc32c::crc32c(payload) != u32_at(24) {
        return Err(SnapshotCorruption::PayloadChecksum);
    }
    Ok(payload)
}

/// A loaded snapshot file image; `payload()` is the state bytes.
pub(crate) struct LoadedSnapshot {
    image: Vec<u8>,
    len: usize,
}

impl LoadedSnapshot {
    pub fn payload(&self) -> &[u8] {
        &self.image[SNAPSHOT_HEADER_LEN..SNAPSHOT_HEADER_LEN + self.len]
    }
}

/// Reads and verifies a snapshot. `Ok(Err(_))` is a readable but corrupt file.
pub(crate) async fn load<S: Storage>(
    storage: &S,
    file: &SnapshotFile,
) -> Result<Result<LoadedSnapshot, SnapshotCorruption>, IoFailure> {
    let path = &file.path;
    let handle = storage
        .open_read(path)
        .await
        .map_err(|e| IoFailure::new(IoOp::Open, path, &e))?;
    let file_len = handle
        .size()
        .await
        .map_err(|e| IoFailure::new(IoOp::Read, path, &e))?;
    if file_len > MAX_SNAPSHOT_BYTES + (SNAPSHOT_HEADER_LEN + BLOCK_BYTES) as u64 {
        let _ = handle.close().await;
        return Ok(Err(SnapshotCorruption::Length {
            len: file_len,
            file_len,
            max: MAX_SNAPSHOT_BYTES,
        }));
    }
    let mut reader = handle.stream(READ_CHUNK_BYTES, READ_AHEAD_CHUNKS, file_len);
    let mut image = Vec::with_capacity(file_len as usize);
    loop {
        let chunk = reader
            .next_chunk()
            .await
            .map_err(|e| IoFailure::new(IoOp::Read, path, &e))?;
        if chunk.is_empty() {
            break;
        }
        image.extend_from_slice(&chunk);
    }
    reader
        .close()
        .await
        .map_err(|e| IoFailure::new(IoOp::Close, path, &e))?;
    let len = match verify(&image, file.covered) {
        Ok(payload) => payload.len(),
        Err(corruption) => return Ok(Err(corruption)),
    };
    Ok(Ok(LoadedSnapshot { image, len }))
}

/// Writes `payload` as the snapshot at `path`: temporary file, data sync, rename, directory sync.
pub(crate) async fn write<S: Storage>(
    storage: &S,
    path: &Path,
    covered: Lsn,
    payload: &[u8],
) -> Result<(), IoFailure> {
    let tmp = temporary_path(path);
    let file = storage
        .open_write(&tmp, OpenMode::CreateTruncate, false)
        .await
        .map_err(|e| IoFailure::new(IoOp::Create, &tmp, &e))?;
    let result = write_image(&file, &tmp, covered, payload).await;
    let closed = file
        .close()
        .await
        .map_err(|e| IoFailure::new(IoOp::Close, &tmp, &e));
    if let Err(e) = result.and(closed) {
        // Best effort: a leftover temporary file is removed at the next open anyway.
        let _ = storage.remove_file(&tmp);
        return Err(e);
    }
    storage
        .rename(&tmp, path)
        .await
        .map_err(|e| IoFailure::new(IoOp::Rename, &tmp, &e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    sync_dir_on(storage, dir).await
}

async fn write_image<F: StorageFile>(
    file: &F,
    path: &Path,
    covered: Lsn,
    payload: &[u8],
) -> Result<(), IoFailure> {
    let header = encode_header(covered, payload);
    let total = SNAPSHOT_HEADER_LEN + payload.len();
    let mut written = 0usize;
    // The image is the header followed by the payload; copy it block-aligned, chunk by chunk.
    while written < total {
        let len = (total - written).min(SNAPSHOT_WRITE_CHUNK_BYTES);
        let padded = len.next_multiple_of(BLOCK_BYTES);
        let mut buf = file.alloc_buffer(padded);
        let bytes = buf.bytes_mut();
        let from_header = SNAPSHOT_HEADER_LEN.saturating_sub(written).min(len);
        if from_header > 0 {
            bytes[..from_header].copy_from_slice(&header[written..written + from_header]);
        }
        let payload_at = written + from_header - SNAPSHOT_HEADER_LEN;
        bytes[from_header..len]
            .copy_from_slice(&payload[payload_at..payload_at + len - from_header]);
        bytes[len..].fill(0);
        let done = file
            .write_at(buf, written as u64)
            .await
            .map_err(|e| IoFailure::new(IoOp::Write, path, &e))?;
        if done < padded {
            return Err(IoFailure::short(IoOp::Write, path, done, padded));
        }
        written += len;
    }
    file.fdatasync()
        .await
        .map_err(|e| IoFailure::new(IoOp::Sync, path, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(covered: Lsn, payload: &[u8]) -> Vec<u8> {
        let mut out = encode_header(covered, payload).to_vec();
        out.extend_from_slice(payload);
        out.resize(out.len().next_multiple_of(BLOCK_BYTES), 0);
        out
    }

    #[test]
    fn valid_image_verifies() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let img = image(Lsn(42), &payload);
        assert_eq!(verify(&img, Lsn(42)), Ok(&payload[..]));
        assert_eq!(
            verify(&img, Lsn(41)),
            Err(SnapshotCorruption::NameMismatch {
                header: Lsn(42),
                name: Lsn(41)
            })
        );
    }

    #[test]
    fn any_single_flip_in_header_or_payload_is_detected() {
        let payload = b"state of the world".to_vec();
        let img = image(Lsn(7), &payload);
        for at in 0..SNAPSHOT_HEADER_LEN + payload.len() {
            let mut bad = img.clone();
            bad[at] ^= 0x10;
            assert!(verify(&bad, Lsn(7)).is_err(), "flip at {at} undetected");
        }
    }

    #[test]
    fn truncated_image_is_rejected() {
        let img = image(Lsn(7), &[1u8; 5000]);
        assert!(verify(&img[..4000], Lsn(7)).is_err());
        assert!(verify(&img[..10], Lsn(7)).is_err());
    }
}
