//! Live log streaming: job output lines travel from workers to the master over UDP.
//!
//! On the worker, [`drain_output`] empties a job's captured stdout and stderr, writes them
//! byte for byte to `stdout.log` / `stderr.log` in the job's directory (the complete record)
//! and hands each line to the worker's [`LogShipper`], which packs lines into datagrams
//! ([`datagram`]) and sends them without ever waiting: a datagram that cannot be sent is dropped
//! and counted. On the master, a [`LogSink`] receives datagrams into a [`LogStore`]: per job
//! attempt a bounded ring of recent lines, with every gap in the sequence numbers counted as
//! loss, for `titan logs [-f]` and the dashboard.
//!
//! Pure parts (format, line splitting, packing, the store) are separate from the glommio shells
//! (`drain`, `shipper`, `sink`) so they can be tested without sockets.

pub mod datagram;
mod limits;
mod lines;
mod packer;
mod ring;
mod shipper;
mod sink;
mod store;
mod sys;

pub use datagram::{
    AttemptKey, Datagram, DatagramHeader, DatagramWriter, DecodeError, Entry, LineEntry, LineFlags,
    Stream, StreamKey,
};
pub use limits::*;
pub use lines::{LineSplitter, Record};
pub use packer::{Packer, Sealed};
pub use ring::{EndTotals, JobLogSummary, LinesPage, LogLine, StreamProgress};
pub use shipper::{LogShipper, ShipperConfig, ShipperCounters, ShipperError};
pub use sink::{LogSink, SinkConfig, SinkError};
pub use store::{LogStore, SinkLimits, SinkStats};
