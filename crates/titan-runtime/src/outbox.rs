//! A connection's outgoing side as tasks share it: the sans-IO [`Outgoing`] (replies in request
//! order, pushed frames, the peer's credit) behind a `RefCell`, with the wake-ups of the tasks
//! around it.
//!
//! The reader reserves reply slots and waits for credit, the shard (or the worker's job table)
//! completes slots and pushes frames, and the writer task drains the ready bytes; all run on one
//! executor, and none holds a borrow across an await.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use titan_proto::conn::Outgoing;
pub use titan_proto::conn::SlotId;

/// A single-waiter wake-up: the waiter sleeps until `notify()` was called since it last woke.
#[derive(Default)]
pub struct Notify {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    pub fn notify(&self) {
        self.fired.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.fired.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// The outgoing side of one connection. Shared (`Rc`) by the reader, the writer task and the
/// shard, which completes slots and pushes frames; never borrowed across an await.
#[derive(Default)]
pub struct Outbox {
    out: RefCell<Outgoing>,
    closing: Cell<bool>,
    /// Wakes the writer when bytes are ready or the outbox closes.
    pub writable: Notify,
    /// Wakes the reader when the peer got credit back (a slot completed, replies were written).
    pub drained: Notify,
    /// Wakes the reader when the shard closes the connection (a dead worker).
    pub closed: Notify,
}

impl Outbox {
    pub fn new(out: Outgoing) -> Rc<Outbox> {
        Rc::new(Outbox {
            out: RefCell::new(out),
            ..Outbox::default()
        })
    }

    /// Writes a reply now, or parks it behind earlier replies that are still waiting.
    pub fn reply(&self, encode: impl FnOnce(&mut Vec<u8>)) {
        self.out.borrow_mut().reply(encode);
        self.writable.notify();
    }

    /// Reserves the next place in the reply order for a reply that comes later.
    pub fn reserve(&self) -> SlotId {
        self.out.borrow_mut().reserve()
    }

    /// Fills a reserved slot; every reply now at the head of the order becomes ready. A slot of
    /// a connection that already closed, or filled twice, is ignored.
    pub fn complete(&self, slot: SlotId, encode: impl FnOnce(&mut Vec<u8>)) {
        let filled = self.out.borrow_mut().complete(slot, encode);
        if filled {
            self.writable.notify();
            self.drained.notify();
        }
    }

    /// Fills the slot whose low bits are `low` (as carried in a token); see
    /// [`Outgoing::complete_wrapped`].
    pub fn complete_wrapped(&self, low: u32, mask: u64, encode: impl FnOnce(&mut Vec<u8>)) {
        let filled = self.out.borrow_mut().complete_wrapped(low, mask, encode);
        if filled {
            self.writable.notify();
            self.drained.notify();
        }
    }

    /// Sends a frame the peer did not ask for (it does not wait behind replies).
    pub fn push(&self, encode: impl FnOnce(&mut Vec<u8>)) {
        self.out.borrow_mut().push(encode);
        self.writable.notify();
    }

    /// Replies reserved and not yet written.
    pub fn in_flight(&self) -> usize {
        self.out.borrow().in_flight()
    }

    /// Whether the peer has credit left for more requests (see [`Outgoing::may_read`]).
    pub fn may_read(&self) -> bool {
        self.out.borrow().may_read()
    }

    /// Moves the ready bytes, as the socket carries them, into `buf` (which must be empty).
    pub fn take_transmit(&self, buf: &mut Vec<u8>) {
        self.out.borrow_mut().take_transmit(buf);
    }

    /// What `take_transmit` handed out was written.
    pub fn on_written(&self) {
        if self.out.borrow_mut().on_written() {
            self.drained.notify();
        }
    }

    /// Runs `f` on the outgoing side (the receive side needs it for the transport and the
    /// handshake). `f` must not touch this outbox.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Outgoing) -> R) -> R {
        f(&mut self.out.borrow_mut())
    }

    /// Asks the writer to finish what is ready and stop.
    pub fn close(&self) {
        self.closing.set(true);
        self.writable.notify();
        self.drained.notify();
        self.closed.notify();
    }

    pub fn is_closing(&self) -> bool {
        self.closing.get()
    }
}
