//! The worker's log shipper: one per worker, shared by every job's drain. It packs records into
//! datagrams ([`Packer`]) and sends each as soon as it is full, or when its first line has
//! waited for the flush window.
//!
//! Sending never waits. The socket is non-blocking and each datagram is one `send` system call
//! on the executor thread: when the kernel refuses it (send buffer full, master unreachable)
//! the datagram is dropped and counted, and the job's output goes on being drained at disk
//! speed. Lost lines are never silent: the master sees the gap in the numbers, and the
//! counters here say how many the worker itself dropped.

use super::datagram::StreamKey;
use super::limits::{
    DEFAULT_DATAGRAM_BYTES, DEFAULT_FLUSH_WINDOW, DEFAULT_MAX_LINES_PER_SEC, MAX_DATAGRAM_BYTES,
    MAX_FLUSH_WINDOW, MIN_DATAGRAM_BYTES,
};
use super::lines::Record;
use super::packer::{Packer, Sealed};
use super::sys::{self, Buffer};
use futures_lite::future;
use std::cell::{Cell, RefCell};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant, SystemTime};
use titan_auth::{KeyBytes, SealKey};
use titan_core::WorkerId;

/// How a worker ships its logs.
#[derive(Clone, Debug)]
pub struct ShipperConfig {
    /// The master's log port (`titan master --log-port`).
    pub master: SocketAddr,
    /// Written into every datagram; the master counts datagram loss per worker.
    pub worker: WorkerId,
    /// Seals the datagrams' headers: the worker's log key, from its registration.
    pub worker_key: KeyBytes,
    /// Datagram size to pack to, within [`MIN_DATAGRAM_BYTES`]..=[`MAX_DATAGRAM_BYTES`].
    pub datagram_bytes: usize,
    /// How long the first line of a batch may wait before the batch is sent.
    pub flush_window: Duration,
    /// A socket send buffer to ask for; `None` keeps the system default.
    pub send_buffer_bytes: Option<usize>,
    /// Lines streamed per second at most (a token bucket holding a tenth of a second's
    /// worth); `None` streams everything.
    pub max_lines_per_sec: Option<u32>,
}

impl ShipperConfig {
    /// Defaults: [`DEFAULT_DATAGRAM_BYTES`], [`DEFAULT_FLUSH_WINDOW`], the system send buffer.
    pub fn new(master: SocketAddr, worker: WorkerId, worker_key: KeyBytes) -> Self {
        Self {
            master,
            worker,
            worker_key,
            datagram_bytes: DEFAULT_DATAGRAM_BYTES,
            flush_window: DEFAULT_FLUSH_WINDOW,
            send_buffer_bytes: None,
            max_lines_per_sec: Some(DEFAULT_MAX_LINES_PER_SEC),
        }
    }
}

/// Why a shipper could not start.
#[derive(Debug, thiserror::Error)]
pub enum ShipperError {
    #[error("invalid log shipper configuration: {reason}")]
    Config { reason: String },
    #[error("cannot {what}: {source}")]
    Socket {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// What a shipper has done since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShipperCounters {
    /// Line records handed to the shipper.
    pub lines: u64,
    /// End-of-stream markers handed to the shipper.
    pub ends: u64,
    /// Datagrams sealed (each used one sequence number).
    pub datagrams: u64,
    /// Datagrams the kernel accepted.
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    /// Datagrams dropped because the kernel refused them (`datagrams - datagrams_sent`).
    pub datagrams_dropped: u64,
    /// Line records in dropped datagrams.
    pub lines_dropped: u64,
    /// Of the dropped datagrams, those refused for another reason than a full buffer
    /// (e.g. nothing listens on the master's log port).
    pub send_errors: u64,
    /// Line records not sent because the worker was over its streaming budget.
    pub lines_throttled: u64,
}

/// A token bucket of lines. Time is read only when the tokens run out, so a line costs a
/// decrement while the budget lasts; once it is out, only every [`RECHECK_EVERY`]th line reads
/// the clock again (a job printing millions of lines a second otherwise spends more on clock
/// reads than on printing).
struct Budget {
    rate: f64,
    burst: f64,
    tokens: Cell<f64>,
    refilled: Cell<Instant>,
    /// Lines refused since the clock was last read (0: read it at the next refusal).
    refused: Cell<u32>,
}

/// Refused lines between two clock reads while the budget is out (~1 ms of lines at the
/// default rate, so the bucket refills at most that late).
const RECHECK_EVERY: u32 = 256;

impl Budget {
    fn new(lines_per_sec: u32) -> Budget {
        let rate = f64::from(lines_per_sec.max(1));
        let burst = (rate / 10.0).max(1.0);
        Budget {
            rate,
            burst,
            tokens: Cell::new(burst),
            refilled: Cell::new(Instant::now()),
            refused: Cell::new(0),
        }
    }

    fn take(&self) -> bool {
        if self.tokens.get() < 1.0 {
            let refused = self.refused.get();
            if refused > 0 && refused < RECHECK_EVERY {
                self.refused.set(refused + 1);
                return false;
            }
            self.refused.set(1);
            let now = Instant::now();
            let earned = now.duration_since(self.refilled.get()).as_secs_f64() * self.rate;
            self.refilled.set(now);
            self.tokens
                .set((self.tokens.get() + earned).min(self.burst));
            if self.tokens.get() < 1.0 {
                return false;
            }
            self.refused.set(0);
        }
        self.tokens.set(self.tokens.get() - 1.0);
        true
    }
}

/// The worker's log shipper. Cheap to clone; every clone shares one socket and one batch.
/// Lives on the executor that created it.
#[derive(Clone)]
pub struct LogShipper {
    inner: Rc<Inner>,
}

struct Inner {
    budget: Option<Budget>,
    socket: UdpSocket,
    packer: RefCell<Packer>,
    counters: Cell<ShipperCounters>,
    /// When the open batch got its first entry; `None` while it is empty.
    batch_opened: Cell<Option<Instant>>,
    signal: Rc<FlushSignal>,
}

impl LogShipper {
    /// Opens a UDP socket towards the master's log port and starts the flush task. Must be
    /// called on a glommio executor; the shipper belongs to it.
    pub fn new(config: ShipperConfig) -> Result<Self, ShipperError> {
        validate(&config)?;
        let socket = open_socket(&config)?;
        let signal = Rc::new(FlushSignal::default());
        let inner = Rc::new(Inner {
            budget: config.max_lines_per_sec.map(Budget::new),
            socket,
            packer: RefCell::new(Packer::new(
                config.worker,
                SealKey::new(&config.worker_key),
                new_session(),
                config.datagram_bytes,
            )),
            counters: Cell::new(ShipperCounters::default()),
            batch_opened: Cell::new(None),
            signal: signal.clone(),
        });
        glommio::spawn_local(flusher(Rc::downgrade(&inner), signal, config.flush_window)).detach();
        Ok(Self { inner })
    }

    /// This shipper with the key of one attempt (from its `RunJob`): what the attempt's drain
    /// ships its lines through.
    pub fn for_attempt(&self, key: &KeyBytes) -> AttemptShipper {
        AttemptShipper {
            shipper: self.clone(),
            seal: SealKey::new(key),
        }
    }

    /// Queues one record of a job's stream for sending, sealed with `seal` (its attempt's key).
    pub fn ship_line(&self, seal: &SealKey, key: StreamKey, record: Record<'_>) {
        let inner = &*self.inner;
        inner.bump(|c| c.lines += 1);
        if inner.budget.as_ref().is_some_and(|b| !b.take()) {
            // Its sequence number is skipped: the master counts the gap.
            inner.bump(|c| c.lines_throttled += 1);
            return;
        }
        let sealed = {
            let mut packer = inner.packer.borrow_mut();
            let before = packer.sealed();
            packer.push_line(seal, key, record, |datagram| inner.send(datagram));
            packer.sealed() != before
        };
        inner.on_pushed(sealed);
    }

    /// Queues the end marker of a job's stream after `total` records.
    pub fn ship_end(&self, seal: &SealKey, key: StreamKey, total: u64) {
        let inner = &*self.inner;
        inner.bump(|c| c.ends += 1);
        let sealed = {
            let mut packer = inner.packer.borrow_mut();
            let before = packer.sealed();
            packer.push_end(seal, key, total, |datagram| inner.send(datagram));
            packer.sealed() != before
        };
        inner.on_pushed(sealed);
    }

    /// Sends the open batch now, if it holds anything.
    pub fn flush(&self) {
        self.inner.flush();
    }

    /// Sends the open batch, or an empty datagram when there is none: a datagram number the
    /// master sees, so it can count datagrams lost at the end of a burst.
    pub fn sync(&self) {
        let inner = &*self.inner;
        inner
            .packer
            .borrow_mut()
            .sync(|datagram| inner.send(datagram));
        inner.batch_opened.set(None);
    }

    pub fn counters(&self) -> ShipperCounters {
        self.inner.counters.get()
    }

    /// The session number in this shipper's datagrams.
    pub fn session(&self) -> u32 {
        self.inner.packer.borrow().session()
    }

    /// Sets the worker id and key of later datagrams (once the master has assigned them).
    pub fn set_worker(&self, worker: WorkerId, worker_key: &KeyBytes) {
        self.inner
            .packer
            .borrow_mut()
            .set_worker(worker, SealKey::new(worker_key));
    }

    /// The size datagrams are packed to.
    pub fn datagram_bytes(&self) -> usize {
        self.inner.packer.borrow().datagram_bytes()
    }

    /// The local address datagrams leave from.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.socket.local_addr()
    }
}

impl Inner {
    fn bump(&self, change: impl FnOnce(&mut ShipperCounters)) {
        let mut counters = self.counters.get();
        change(&mut counters);
        self.counters.set(counters);
    }

    /// Sends one sealed datagram without waiting; a refusal drops it and is counted.
    fn send(&self, datagram: Sealed<'_>) {
        let result = self.socket.send(datagram.bytes);
        self.bump(|c| {
            c.datagrams += 1;
            match result {
                Ok(n) => {
                    c.datagrams_sent += 1;
                    c.bytes_sent += n as u64;
                }
                Err(error) => {
                    c.datagrams_dropped += 1;
                    c.lines_dropped += u64::from(datagram.lines);
                    if error.kind() != io::ErrorKind::WouldBlock {
                        c.send_errors += 1;
                    }
                }
            }
        });
    }

    /// Keeps the batch's age current after a push and wakes the flush task for a new batch.
    fn on_pushed(&self, sealed: bool) {
        if self.packer.borrow().is_empty() {
            self.batch_opened.set(None);
        } else if sealed || self.batch_opened.get().is_none() {
            self.batch_opened.set(Some(Instant::now()));
            self.signal.fire();
        }
    }

    fn flush(&self) {
        self.packer
            .borrow_mut()
            .flush(|datagram| self.send(datagram));
        self.batch_opened.set(None);
    }
}

impl Drop for Inner {
    /// Sends what is still batched and stops the flush task.
    fn drop(&mut self) {
        self.flush();
        self.signal.close();
    }
}

/// Wakes the flush task: `fire` when a batch opens, `close` when the shipper is gone. Kept
/// apart from [`Inner`] so the task can wait on it without keeping the shipper alive.
#[derive(Default)]
struct FlushSignal {
    fired: Cell<bool>,
    closed: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl FlushSignal {
    fn fire(&self) {
        self.fired.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    fn close(&self) {
        self.closed.set(true);
        self.fire();
    }

    /// Waits for a `fire` (or `close`); returns false once closed.
    async fn wait(&self) -> bool {
        future::poll_fn(|cx| {
            if self.fired.replace(false) {
                Poll::Ready(!self.closed.get())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// Sends each batch once its first entry is `window` old, unless it filled up first.
async fn flusher(inner: Weak<Inner>, signal: Rc<FlushSignal>, window: Duration) {
    while signal.wait().await {
        loop {
            // The shipper is only borrowed between sleeps, so dropping it ends this task.
            let due = {
                let Some(inner) = inner.upgrade() else { return };
                let Some(opened) = inner.batch_opened.get() else {
                    break;
                };
                let due = opened + window;
                if Instant::now() >= due {
                    inner.flush();
                    break;
                }
                due
            };
            glommio::timer::sleep(due.saturating_duration_since(Instant::now())).await;
        }
    }
}

fn validate(config: &ShipperConfig) -> Result<(), ShipperError> {
    if !(MIN_DATAGRAM_BYTES..=MAX_DATAGRAM_BYTES).contains(&config.datagram_bytes) {
        return Err(ShipperError::Config {
            reason: format!(
                "datagram_bytes is {}, must be {MIN_DATAGRAM_BYTES}..={MAX_DATAGRAM_BYTES}",
                config.datagram_bytes
            ),
        });
    }
    if config.flush_window.is_zero() || config.flush_window > MAX_FLUSH_WINDOW {
        return Err(ShipperError::Config {
            reason: format!(
                "flush_window {:?} must be above zero and at most {MAX_FLUSH_WINDOW:?}",
                config.flush_window
            ),
        });
    }
    Ok(())
}

fn open_socket(config: &ShipperConfig) -> Result<UdpSocket, ShipperError> {
    let socket_error = |what: &str| {
        let what = what.to_string();
        move |source| ShipperError::Socket { what, source }
    };
    let local: SocketAddr = match config.master {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).map_err(socket_error("bind the log socket"))?;
    socket
        .connect(config.master)
        .map_err(socket_error(&format!(
            "address the log port {}",
            config.master
        )))?;
    socket
        .set_nonblocking(true)
        .map_err(socket_error("make the log socket non-blocking"))?;
    if let Some(bytes) = config.send_buffer_bytes {
        sys::set_buffer(socket.as_fd(), Buffer::Send, bytes)
            .map_err(socket_error("set the log socket's send buffer"))?;
    }
    Ok(socket)
}

/// A random session number: it starts every seal's nonce, so two senders sharing a key (a
/// worker's successive runs) must not pick the same one. From the OS random source; the clock
/// and the pid only if that fails.
fn new_session() -> u32 {
    titan_auth::random_bytes::<4>()
        .map(u32::from_be_bytes)
        .unwrap_or_else(|_| {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos() ^ (d.as_secs() as u32));
            nanos ^ std::process::id().rotate_left(16)
        })
}

/// A shipper bound to one attempt's key: the handle a job's drain ships through. Cheap to
/// clone.
#[derive(Clone)]
pub struct AttemptShipper {
    shipper: LogShipper,
    seal: SealKey,
}

impl AttemptShipper {
    /// Queues one record of the attempt's stream `key`.
    pub fn ship_line(&self, key: StreamKey, record: Record<'_>) {
        self.shipper.ship_line(&self.seal, key, record);
    }

    /// Queues the end marker of the attempt's stream `key` after `total` records.
    pub fn ship_end(&self, key: StreamKey, total: u64) {
        self.shipper.ship_end(&self.seal, key, total);
    }

    /// Sends the open batch now (see [`LogShipper::flush`]).
    pub fn flush(&self) {
        self.shipper.flush();
    }

    /// The shipper underneath.
    pub fn shipper(&self) -> &LogShipper {
        &self.shipper
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exhausted_budget_reads_the_clock_once_per_recheck_and_then_refills() {
        let budget = Budget::new(1000);
        let burst = budget.burst as u32;
        for _ in 0..burst {
            assert!(budget.take());
        }
        assert!(!budget.take(), "the burst is spent");
        // A second passes: the bucket earned tokens, seen at the next recheck, not before.
        let earlier = budget.refilled.get().checked_sub(Duration::from_secs(1));
        budget
            .refilled
            .set(earlier.expect("the clock is past one second"));
        for _ in 1..RECHECK_EVERY {
            assert!(!budget.take());
        }
        assert!(budget.take(), "the recheck refills the bucket");
        assert!(budget.take(), "and the refill lasts");
    }
}
