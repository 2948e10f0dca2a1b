//! Named limits and defaults of log streaming, in one place (STYLE.md principle 3).
//!
//! Wire limits (`MAX_RECORD_BYTES`, `MAX_DATAGRAM_BYTES`) are part of the datagram format: a
//! receiver rejects anything beyond them. The others are defaults a caller may override through
//! [`ShipperConfig`](super::ShipperConfig) and [`SinkLimits`](super::SinkLimits).

use std::time::Duration;

/// Bytes of the datagram header's fields: magic (4), version (1), reserved (1), section count
/// (2), worker id (4), session (4), datagram sequence number (8).
pub const HEADER_FIELDS_BYTES: usize = 24;

/// Bytes of a seal's tag (ChaCha20-Poly1305): one after the header, one after each section.
pub const TAG_BYTES: usize = titan_auth::SEAL_TAG_BYTES;

/// Bytes of the datagram header: its fields, then the tag of the worker's key over them.
pub const HEADER_BYTES: usize = HEADER_FIELDS_BYTES + TAG_BYTES;

/// Bytes of a section header: job id (8), attempt (4), stream (1), kind (1), record count (2),
/// first sequence number or total (8), body length (2).
pub const SECTION_BYTES: usize = 26;

/// Sections one datagram may hold: their index is part of each seal's nonce, and the index
/// `u16::MAX` is the header's. (A datagram of the largest size holds fewer than 1,600.)
pub const MAX_SECTIONS: u16 = u16::MAX - 1;

/// Bytes in front of each record's payload: flags (1), length (2).
pub const RECORD_HEADER_BYTES: usize = 3;

/// Longest record payload. A line longer than this is shipped as several records, each but the
/// last flagged `CONTINUES`; the workspace file always has the whole line.
pub const MAX_RECORD_BYTES: usize = 1024;

/// Smallest datagram a shipper may be configured with: one record of the largest size must fit
/// into an empty datagram, so a record never waits for space that cannot come.
pub const MIN_DATAGRAM_BYTES: usize =
    HEADER_BYTES + SECTION_BYTES + RECORD_HEADER_BYTES + MAX_RECORD_BYTES + TAG_BYTES;

/// Largest datagram accepted: the largest UDP payload over IPv4 (65535 − 20 − 8).
pub const MAX_DATAGRAM_BYTES: usize = 65_507;

/// Datagram size a shipper packs to unless configured. 1400 bytes fit one Ethernet frame (1500
/// minus IPv4/IPv6 and UDP headers, with room for a tunnel), so a datagram is never fragmented
/// on a real network: a lost fragment would lose the whole datagram. On loopback, larger
/// datagrams cost fewer system calls; see `benches/logs.rs` for the measured difference.
pub const DEFAULT_DATAGRAM_BYTES: usize = 1400;

/// How long the first line of a batch may wait for company before the batch is sent.
pub const DEFAULT_FLUSH_WINDOW: Duration = Duration::from_millis(5);

/// Lines per second a worker streams at most, over all its jobs, unless configured. Streaming
/// is for people watching; the job's files are the complete record. A job printing millions of
/// lines a second would otherwise spend as much CPU on the worker and the master shipping them
/// as it spends printing them, and slow scheduling on a small host. Lines over the budget are
/// not sent; the master counts them like lines lost on the way, and `titan logs` fetches the
/// files.
pub const DEFAULT_MAX_LINES_PER_SEC: u32 = 250_000;

/// The longest flush window accepted (a live view that lags more is not live).
pub const MAX_FLUSH_WINDOW: Duration = Duration::from_secs(1);

/// Bytes read from a job's output socket at once; one read is one write to the log file.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The first reads of a stream use a buffer this large; it grows to [`READ_CHUNK_BYTES`] when a
/// read fills it.
pub const FIRST_READ_BYTES: usize = 4 * 1024;

/// The sink's requested socket receive buffer. Linux caps it at `net.core.rmem_max` (4 MiB on
/// a stock kernel) and doubles it for bookkeeping.
pub const DEFAULT_RECV_BUFFER_BYTES: usize = 4 << 20;

/// Lines the sink keeps per job attempt unless configured.
pub const DEFAULT_MAX_LINES_PER_JOB: usize = 10_000;

/// Bytes (payload plus [`LINE_OVERHEAD_BYTES`] per line) the sink keeps per job attempt.
pub const DEFAULT_MAX_BYTES_PER_JOB: usize = 1 << 20;

/// Job attempts the sink tracks at once; beyond it the oldest finished one is forgotten.
pub const DEFAULT_MAX_JOBS: usize = 1024;

/// Bytes the sink keeps over all jobs: the bound on its memory for line storage.
pub const DEFAULT_MAX_TOTAL_BYTES: usize = 64 << 20;

/// Workers (senders) whose datagram sequence the sink tracks.
pub const DEFAULT_MAX_WORKERS: usize = 4096;

/// What the sink charges per stored line on top of its payload: the line's bookkeeping and the
/// allocator's rounding, so the byte limits bound real memory rather than payload alone.
pub const LINE_OVERHEAD_BYTES: usize = 48;

/// Most lines one [`lines_since`](super::LogSink::lines_since) call returns.
pub const MAX_PAGE_LINES: usize = 10_000;

/// Distinct job attempts followers may wait on at once; past it every waiter is woken (a
/// spurious wake-up, which followers tolerate) so abandoned waits cannot pile up.
pub const MAX_WAITING_KEYS: usize = 4096;

const _: () = assert!(MIN_DATAGRAM_BYTES <= DEFAULT_DATAGRAM_BYTES);
const _: () = assert!(DEFAULT_DATAGRAM_BYTES <= MAX_DATAGRAM_BYTES);
const _: () = assert!(MAX_RECORD_BYTES <= u16::MAX as usize);
// A section's body length is a u16: a whole datagram's worth always fits.
const _: () = assert!(MAX_DATAGRAM_BYTES <= u16::MAX as usize);
const _: () = assert!(MAX_DATAGRAM_BYTES / (SECTION_BYTES + TAG_BYTES) < MAX_SECTIONS as usize);

/// Derived keys the sink keeps at once (per attempt and per worker); past it the cache is
/// emptied and keys are derived again as datagrams need them (one HMAC each), so datagrams
/// naming made-up attempts cannot grow it.
pub const MAX_CACHED_KEYS: usize = 4096;
