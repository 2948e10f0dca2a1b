//! The master's log sink: the UDP socket on the log port, the receive loop that feeds the
//! [`LogStore`], and the wake-ups of followers waiting for new lines.
//!
//! One sink lives on one executor (it is `!Send`); readers on that executor call it directly,
//! readers elsewhere ask it through whatever channel the master uses between shards.

use super::datagram::{AttemptKey, Stream};
use super::keys::SinkKeys;
use super::limits::{DEFAULT_RECV_BUFFER_BYTES, MAX_DATAGRAM_BYTES, MAX_WAITING_KEYS};
use super::ring::{JobLogSummary, LinesPage};
use super::store::{LogStore, SinkLimits, SinkStats};
use super::sys::{self, Buffer};
use futures_lite::future;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::task::{Poll, Waker};

/// How a sink is set up.
#[derive(Clone, Copy, Debug)]
pub struct SinkConfig {
    pub limits: SinkLimits,
    /// The socket receive buffer to ask for: it absorbs bursts while the executor is busy.
    pub recv_buffer_bytes: usize,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            limits: SinkLimits::default(),
            recv_buffer_bytes: DEFAULT_RECV_BUFFER_BYTES,
        }
    }
}

/// Why a sink could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot bind the log port {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot set up the log socket: {source}")]
    Setup {
        #[source]
        source: io::Error,
    },
    #[error("receiving on the log port failed: {source}")]
    Receive {
        #[source]
        source: io::Error,
    },
}

/// The master's log sink. Cheap to clone; all clones share the socket and the store.
#[derive(Clone)]
pub struct LogSink {
    inner: Rc<Inner>,
}

struct Inner {
    socket: glommio::net::UdpSocket,
    local_addr: SocketAddr,
    recv_buffer_bytes: usize,
    store: RefCell<LogStore>,
    /// Followers waiting for news of an attempt.
    waiters: RefCell<BTreeMap<AttemptKey, Vec<Waker>>>,
}

impl LogSink {
    /// Binds the log port (port 0 picks a free one); datagrams are opened with `keys`. Must be
    /// called on a glommio executor. Unlike glommio's own `bind`, a port in use is an error
    /// rather than shared.
    pub fn bind(addr: SocketAddr, config: SinkConfig, keys: SinkKeys) -> Result<Self, SinkError> {
        let std_socket =
            std::net::UdpSocket::bind(addr).map_err(|source| SinkError::Bind { addr, source })?;
        let setup = |source| SinkError::Setup { source };
        std_socket.set_nonblocking(true).map_err(setup)?;
        let recv_buffer_bytes = sys::set_buffer(
            std_socket.as_fd(),
            Buffer::Receive,
            config.recv_buffer_bytes,
        )
        .map_err(setup)?;
        let local_addr = std_socket.local_addr().map_err(setup)?;
        // SAFETY: `into_raw_fd` hands over ownership of an open UDP socket, which the glommio
        // socket takes and closes on drop.
        let socket = unsafe { glommio::net::UdpSocket::from_raw_fd(std_socket.into_raw_fd()) };
        Ok(Self {
            inner: Rc::new(Inner {
                socket,
                local_addr,
                recv_buffer_bytes,
                store: RefCell::new(LogStore::new(config.limits, keys)),
                waiters: RefCell::new(BTreeMap::new()),
            }),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The receive buffer the kernel granted (Linux reports twice the usable size).
    pub fn recv_buffer_bytes(&self) -> usize {
        self.inner.recv_buffer_bytes
    }

    /// Receives datagrams until the socket fails; spawn it, or race it with a shutdown future.
    /// Invalid and forged datagrams are counted ([`SinkStats::invalid_datagrams`],
    /// [`SinkStats::unauthenticated_datagrams`]) and skipped.
    pub async fn serve(&self) -> Result<(), SinkError> {
        let inner = &*self.inner;
        let mut buf = vec![0u8; MAX_DATAGRAM_BYTES + 1];
        let mut touched = Vec::new();
        loop {
            let len = match inner.socket.recv_from(&mut buf).await {
                Ok((len, _from)) => len,
                Err(error) => {
                    let error = io::Error::from(error);
                    match error.kind() {
                        // A refused earlier send or a signal: nothing wrong with the socket.
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionRefused => continue,
                        _ => return Err(SinkError::Receive { source: error }),
                    }
                }
            };
            touched.clear();
            // An invalid datagram is counted by the store; there is no one to answer.
            let _ = inner
                .store
                .borrow_mut()
                .on_datagram(&mut buf[..len], &mut touched);
            inner.wake(&touched);
        }
    }

    /// Up to `max_lines` lines of an attempt from `cursor` on (start with 0); `None` while the
    /// sink knows nothing of the attempt.
    pub fn lines_since(&self, key: AttemptKey, cursor: u64, max_lines: usize) -> Option<LinesPage> {
        self.inner
            .store
            .borrow()
            .lines_since(key, cursor, max_lines)
    }

    pub fn summary(&self, key: AttemptKey) -> Option<JobLogSummary> {
        self.inner.store.borrow().summary(key)
    }

    pub fn stats(&self) -> SinkStats {
        self.inner.store.borrow().stats()
    }

    /// Records a stream's total from the worker's TCP report of the job's end, which cannot be
    /// lost like the end marker; wakes the attempt's followers.
    pub fn on_stream_end(&self, key: AttemptKey, stream: Stream, total: u64) {
        self.inner
            .store
            .borrow_mut()
            .on_stream_end(key, stream, total);
        self.inner.wake(&[key]);
    }

    /// Forgets an attempt (e.g. when the master forgets the job).
    pub fn forget(&self, key: AttemptKey) {
        self.inner.store.borrow_mut().forget(key);
        self.inner.wake(&[key]);
    }

    /// Runs `query` on the store (for anything the methods above do not cover).
    pub fn with_store<R>(&self, query: impl FnOnce(&LogStore) -> R) -> R {
        query(&self.inner.store.borrow())
    }

    /// Resolves once the attempt has a line at or after `cursor`, has ended, or may have
    /// changed otherwise (wake-ups can be spurious, and an attempt forgotten while waited on
    /// wakes nobody: wait with a timeout and look again).
    pub async fn wait_for_lines(&self, key: AttemptKey, cursor: u64) {
        let inner = &*self.inner;
        let mut registered = false;
        future::poll_fn(|cx| {
            if registered {
                return Poll::Ready(());
            }
            if let Some((next, ended)) = inner.store.borrow().progress(key) {
                if next > cursor || ended {
                    return Poll::Ready(());
                }
            }
            inner.register(key, cx.waker());
            registered = true;
            Poll::Pending
        })
        .await
    }
}

impl Inner {
    fn register(&self, key: AttemptKey, waker: &Waker) {
        let mut waiters = self.waiters.borrow_mut();
        if !waiters.contains_key(&key) && waiters.len() >= MAX_WAITING_KEYS {
            // Abandoned waits would otherwise pile up under keys that never get a line.
            for (_, list) in std::mem::take(&mut *waiters) {
                list.into_iter().for_each(Waker::wake);
            }
        }
        let list = waiters.entry(key).or_default();
        if !list.iter().any(|w| w.will_wake(waker)) {
            list.push(waker.clone());
        }
    }

    fn wake(&self, keys: &[AttemptKey]) {
        let mut waiters = self.waiters.borrow_mut();
        if waiters.is_empty() {
            return;
        }
        for key in keys {
            if let Some(list) = waiters.remove(key) {
                list.into_iter().for_each(Waker::wake);
            }
        }
    }
}
