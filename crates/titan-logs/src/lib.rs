//! Live job output over UDP. The worker's [`LogShipper`] packs output lines into [`datagram`]s
//! and sends them without ever waiting (a datagram that cannot be sent is dropped and counted);
//! the master's [`LogSink`] receives them into a [`LogStore`]: per attempt a bounded ring of
//! recent lines, every sequence gap counted as loss, for `titan logs [-f]` and the dashboard.
//! Datagrams are sealed (authenticated and encrypted) with keys the master derives and hands
//! out, so no one can write lines into a job they were not given ([`SinkKeys`]).
//! Pure parts (format, line splitting, packing, the store) are apart from the glommio shells
//! (`shipper`, `sink`), so they are tested without sockets. (The drain that reads a job's
//! output is the worker's: `titan_worker::drain`.)

pub mod datagram;
mod keys;
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
    OpenKeys, Stream, StreamKey,
};
pub use keys::SinkKeys;
pub use limits::*;
pub use lines::{LineSplitter, Record};
pub use packer::{Packer, Sealed};
pub use ring::{EndTotals, JobLogSummary, LinesPage, LogLine, StreamProgress};
pub use shipper::{AttemptShipper, LogShipper, ShipperConfig, ShipperCounters, ShipperError};
pub use sink::{LogSink, SinkConfig, SinkError};
pub use store::{LogStore, SinkLimits, SinkStats};
