//! Draining one job's captured output on the worker: both sockets are read to their end, every
//! byte goes to `stdout.log` / `stderr.log` in the job's directory, and every line to the
//! shipper.
//!
//! Only the disk slows the job down: a read is written (buffered, through io_uring) before the
//! next read, so a job that outpaces the disk blocks on its full socket, while shipping is a
//! non-blocking hand-off. A file that cannot be created or written is reported, and the drain
//! goes on without it: a job must never block because its log cannot be stored.

use crate::exec::{CapturedOutput, STDERR_FILE, STDOUT_FILE};
use futures_lite::AsyncReadExt;
use glommio::io::BufferedFile;
use glommio::net::UnixStream;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use titan_logs::{AttemptKey, AttemptShipper, LineSplitter, Stream, StreamKey};
use titan_logs::{FIRST_READ_BYTES, READ_CHUNK_BYTES};

/// Something that went wrong while draining one stream. The stream was still read to its end.
#[derive(Clone, Debug, thiserror::Error)]
pub enum DrainError {
    #[error("cannot create {}: {source}", path.display())]
    CreateFile {
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("cannot write {} at offset {offset}: {source}", path.display())]
    WriteFile {
        path: PathBuf,
        offset: u64,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("cannot close {}: {source}", path.display())]
    CloseFile {
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("cannot read the job's {stream:?}: {source}")]
    Read {
        stream: Stream,
        #[source]
        source: Arc<io::Error>,
    },
}

/// How one stream's drain went.
#[derive(Clone, Debug, Default)]
pub struct StreamReport {
    /// Bytes the job wrote to the stream.
    pub bytes: u64,
    /// Bytes written to the stream's file (equal to `bytes` unless `error` says otherwise).
    pub file_bytes: u64,
    /// Line records, the stream's total as announced in its end marker. Report it to the
    /// master over TCP too ([`LogSink::on_stream_end`](super::LogSink::on_stream_end)): an end
    /// marker can be lost, a TCP report cannot.
    pub records: u64,
    /// The first thing that went wrong, if anything did.
    pub error: Option<DrainError>,
}

/// How a job's drain went.
#[derive(Clone, Debug, Default)]
pub struct DrainReport {
    pub stdout: StreamReport,
    pub stderr: StreamReport,
}

/// Drains a job's captured output until both streams reach their end (every process of the
/// job has closed them): writes `stdout.log` and `stderr.log` in `job_dir` byte for byte, and
/// hands each line to `shipper` under `key`. Run it as a task beside the job's `outcome()`; it
/// ends shortly after the job.
///
/// The engine has created both files, empty, before the job started; a stream's file is opened
/// here only when the stream has bytes for it. A job that prints nothing (most short jobs) so
/// costs no file operation on the executor, and its two end markers leave in one flush.
pub async fn drain_output(
    output: CapturedOutput,
    job_dir: &Path,
    key: AttemptKey,
    shipper: Option<&AttemptShipper>,
) -> DrainReport {
    let [stdout_missing, stderr_missing] = output.file_errors;
    let stdout = drain_stream(
        output.stdout,
        job_dir.join(STDOUT_FILE),
        stdout_missing,
        key.stream(Stream::Stdout),
        shipper,
    );
    let stderr = drain_stream(
        output.stderr,
        job_dir.join(STDERR_FILE),
        stderr_missing,
        key.stream(Stream::Stderr),
        shipper,
    );
    let (stdout, stderr) = futures_lite::future::zip(stdout, stderr).await;
    if let Some(shipper) = shipper {
        shipper.ship_end(key.stream(Stream::Stdout), stdout.records);
        shipper.ship_end(key.stream(Stream::Stderr), stderr.records);
        // The end markers go out now rather than after the flush window, ahead of the worker's
        // TCP report of the job's end.
        shipper.flush();
    }
    DrainReport { stdout, stderr }
}

/// A stream's log file, opened when its first bytes arrive.
enum LogFile {
    NotOpened,
    Open(BufferedFile),
    /// It could not be opened or written (the error is in the report): the stream is still read
    /// to its end, and shipped.
    Failed,
}

/// `missing` is why the engine could not create the stream's file before the start: the drain
/// tries again if bytes arrive, and reports it if none do.
async fn drain_stream(
    mut socket: UnixStream,
    path: PathBuf,
    missing: Option<Arc<io::Error>>,
    key: StreamKey,
    shipper: Option<&AttemptShipper>,
) -> StreamReport {
    let mut report = StreamReport::default();
    let mut file = LogFile::NotOpened;
    let mut splitter = LineSplitter::new();
    // Most jobs print little or nothing: the buffer grows to a full chunk only once a read
    // fills it (a zeroed 64 KiB per stream was most of a silent job's drain).
    let mut buf = vec![0u8; FIRST_READ_BYTES];
    loop {
        // A read of a socket with data ready completes without yielding, and without a file
        // there is no write to yield at either: give other tasks their turn.
        glommio::yield_if_needed().await;
        let n = match socket.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                note(
                    &mut report,
                    DrainError::Read {
                        stream: key.stream,
                        source: Arc::new(error),
                    },
                );
                break;
            }
        };
        let chunk = &buf[..n];
        report.bytes += n as u64;
        match shipper {
            Some(shipper) => splitter.feed(chunk, |record| shipper.ship_line(key, record)),
            None => splitter.feed(chunk, |_| {}),
        }
        if let LogFile::NotOpened = file {
            file = match open_log(&path).await {
                Ok(open) => LogFile::Open(open),
                Err(error) => {
                    note(
                        &mut report,
                        DrainError::CreateFile {
                            path: path.clone(),
                            source: Arc::new(error.into()),
                        },
                    );
                    LogFile::Failed
                }
            };
        }
        if let LogFile::Open(open) = &file {
            match write_all_at(open, chunk, report.file_bytes).await {
                Ok(()) => report.file_bytes += n as u64,
                Err(error) => {
                    let offset = report.file_bytes;
                    note(
                        &mut report,
                        DrainError::WriteFile {
                            path: path.clone(),
                            offset,
                            source: Arc::new(error),
                        },
                    );
                    if let LogFile::Open(open) = std::mem::replace(&mut file, LogFile::Failed) {
                        close(open, &path, &mut report).await;
                    }
                }
            }
        }
        if n == buf.len() && buf.len() < READ_CHUNK_BYTES {
            buf.resize(READ_CHUNK_BYTES, 0);
        }
    }
    report.records = match shipper {
        Some(shipper) => splitter.finish(|record| shipper.ship_line(key, record)),
        None => splitter.finish(|_| {}),
    };
    match file {
        LogFile::Open(open) => close(open, &path, &mut report).await,
        LogFile::NotOpened => {
            if let Some(source) = missing {
                note(&mut report, DrainError::CreateFile { path, source });
            }
        }
        LogFile::Failed => {}
    }
    report
}

/// Opens a stream's log file for writing, creating it if the engine could not. Never truncates:
/// the engine emptied it before this attempt started, and an earlier attempt of the same job
/// still draining (it shares the directory) must not wipe what this one wrote.
async fn open_log(path: &Path) -> glommio::Result<BufferedFile, ()> {
    glommio::io::OpenOptions::new()
        .write(true)
        .create(true)
        .buffered_open(path)
        .await
}

/// Writes all of `bytes` at `offset`, however short the individual writes.
async fn write_all_at(file: &BufferedFile, mut bytes: &[u8], mut offset: u64) -> io::Result<()> {
    while !bytes.is_empty() {
        let written = file.write_at(bytes.to_vec(), offset).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[written.min(bytes.len())..];
        offset += written as u64;
    }
    Ok(())
}

async fn close(file: BufferedFile, path: &Path, report: &mut StreamReport) {
    if let Err(error) = file.close().await {
        note(
            report,
            DrainError::CloseFile {
                path: path.to_owned(),
                source: Arc::new(error.into()),
            },
        );
    }
}

/// Keeps the first error of a stream: later ones usually follow from it.
fn note(report: &mut StreamReport, error: DrainError) {
    report.error.get_or_insert(error);
}
