//! Log messages: a client reading a job's output from the master (`GetLogs`), and from the
//! worker that ran it when the master's ring no longer holds all of it.
//!
//! | opcode | request | success reply |
//! |---|---|---|
//! | `GetLogs` to the master | [`LogsRequest`] | `Data` [`LogsReply`] |
//! | `GetLogs` to a worker | [`FileRequest`] with a [`Ticket`] | `Data` [`FileChunk`] |

use rkyv::{Archive, Deserialize, Serialize};

use titan_core::model::JobState;
use titan_core::WorkerId;

use super::KeyBytes;

/// Lines of a job's latest attempt from `cursor` on. With `wait_ms > 0` the master holds the
/// reply until there is something new (or the attempt ended, or the wait passed): that is how
/// `titan logs -f` follows without polling hard.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct LogsRequest {
    pub job: String,
    /// The attempt the cursor belongs to (0: the latest attempt, from its first line).
    pub attempt: u32,
    pub cursor: u64,
    pub max_lines: u32,
    pub wait_ms: u32,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct LogLine {
    /// 1 = stdout, 2 = stderr.
    pub stream: u8,
    pub bytes: Vec<u8>,
    /// What ended the line in the job's output: `"\n"`, `"\r\n"`, or nothing (a line longer
    /// than the record limit that continues in the next line, or a final line without newline).
    pub terminator: Vec<u8>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct LogsReply {
    pub label: String,
    /// The attempt these lines belong to (0: none started yet).
    pub attempt: u32,
    pub state: JobState,
    pub lines: Vec<LogLine>,
    pub next_cursor: u64,
    /// Lines between the cursor and the first line returned that the master's ring no longer
    /// holds (the worker's files have them).
    pub skipped: u64,
    /// Lines of this attempt lost between the worker and the master.
    pub lost: u64,
    /// Both streams of the attempt ended (their totals are known).
    pub ended: bool,
    /// The ring holds the attempt's whole output (ended, nothing lost, nothing evicted).
    pub complete: bool,
    /// The worker that ran (or runs) the attempt, `HOST:PORT`, to fetch the files from.
    pub worker_addr: Option<String>,
    /// The job's directory on that worker.
    pub job_dir: String,
    /// How the last attempt ended, for people (`exited with code 3`, ...).
    pub last_error: Option<String>,
    /// Lets the client read `job_dir`'s files on `worker_addr` for a while (with it).
    pub ticket: Option<Ticket>,
}

/// A capability ticket: the master's word that its bearer may read the files of one job
/// directory on one worker until the expiry (see `titan_auth::ticket`). `Debug` hides the MAC.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Ticket {
    pub worker: WorkerId,
    pub job_dir: String,
    /// Milliseconds since the Unix epoch.
    pub expires_unix_ms: u64,
    pub tag: KeyBytes,
}

/// A piece of one of a job's output files on a worker.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct FileRequest {
    /// The job's directory name (a plain name inside the worker's workspace).
    pub job_dir: String,
    /// 1 = stdout.log, 2 = stderr.log.
    pub stream: u8,
    pub offset: u64,
    pub max_bytes: u32,
    /// The master's permission to read `job_dir` on this worker.
    pub ticket: Ticket,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct FileChunk {
    pub bytes: Vec<u8>,
    /// The file's size when read.
    pub size: u64,
}
