//! A connection's outgoing bytes: replies in request order, and frames pushed unasked.
//!
//! Some replies cannot be written when their request is read: a submit is acknowledged only
//! after its journal record is durable, and a request for a job owned by another shard waits for
//! that shard. Such a request reserves a slot; replies that are ready while earlier slots still
//! wait are parked behind them, so the peer always receives replies in the order it sent
//! requests. Frames the master sends unasked (a job for a worker, a kill) go straight to the
//! ready bytes. One writer task per connection drains the ready bytes.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

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

/// A reserved place in the reply order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotId(pub u64);

#[derive(Debug)]
enum Slot {
    Waiting,
    Done(Vec<u8>),
}

/// The outgoing side of one connection. Shared (`Rc`) by the reader, the writer task and the
/// shard, which completes slots and pushes frames; never borrowed across an await.
#[derive(Default)]
pub struct Outbox {
    inner: RefCell<Inner>,
    /// Wakes the writer when bytes are ready or the outbox closes.
    pub writable: Notify,
    /// Wakes the reader when a slot completes (it may be waiting for room in flight).
    pub drained: Notify,
    /// Wakes the reader when the shard closes the connection (a dead worker).
    pub closed: Notify,
}

#[derive(Default)]
struct Inner {
    ready: Vec<u8>,
    slots: VecDeque<Slot>,
    first_slot: u64,
    closing: bool,
}

impl Outbox {
    pub fn new() -> Rc<Outbox> {
        Rc::new(Outbox::default())
    }

    /// Writes a reply now, or parks it behind earlier replies that are still waiting.
    pub fn reply(&self, encode: impl FnOnce(&mut Vec<u8>)) {
        let mut inner = self.inner.borrow_mut();
        if inner.slots.is_empty() {
            encode(&mut inner.ready);
        } else {
            let mut bytes = Vec::new();
            encode(&mut bytes);
            inner.slots.push_back(Slot::Done(bytes));
        }
        drop(inner);
        self.writable.notify();
    }

    /// Reserves the next place in the reply order for a reply that comes later.
    pub fn reserve(&self) -> SlotId {
        let mut inner = self.inner.borrow_mut();
        inner.slots.push_back(Slot::Waiting);
        SlotId(inner.first_slot + inner.slots.len() as u64 - 1)
    }

    /// Fills a reserved slot; every reply now at the head of the order becomes ready. A slot of
    /// a connection that already closed, or filled twice, is ignored.
    pub fn complete(&self, slot: SlotId, encode: impl FnOnce(&mut Vec<u8>)) {
        let mut inner = self.inner.borrow_mut();
        let Some(index) = slot.0.checked_sub(inner.first_slot) else {
            return;
        };
        match inner.slots.get_mut(index as usize) {
            Some(s @ Slot::Waiting) => {
                let mut bytes = Vec::new();
                encode(&mut bytes);
                *s = Slot::Done(bytes);
            }
            _ => return,
        }
        while let Some(Slot::Done(_)) = inner.slots.front() {
            if let Some(Slot::Done(bytes)) = inner.slots.pop_front() {
                inner.ready.extend_from_slice(&bytes);
            }
            inner.first_slot += 1;
        }
        drop(inner);
        self.writable.notify();
        self.drained.notify();
    }

    /// Fills the slot whose low bits are `low` (as carried in a token): the in-flight window is
    /// far smaller than the wrap-around, so the nearest slot at or after the first is the one.
    pub fn complete_wrapped(&self, low: u32, mask: u64, encode: impl FnOnce(&mut Vec<u8>)) {
        let first = self.inner.borrow().first_slot;
        let delta = (u64::from(low).wrapping_sub(first)) & mask;
        self.complete(SlotId(first + delta), encode);
    }

    /// Sends a frame the peer did not ask for (it does not wait behind replies).
    pub fn push(&self, encode: impl FnOnce(&mut Vec<u8>)) {
        encode(&mut self.inner.borrow_mut().ready);
        self.writable.notify();
    }

    /// Replies reserved and not yet written.
    pub fn in_flight(&self) -> usize {
        self.inner.borrow().slots.len()
    }

    /// Swaps the ready bytes into `buf` (which must be empty) for the writer.
    pub fn take_ready(&self, buf: &mut Vec<u8>) {
        debug_assert!(buf.is_empty());
        std::mem::swap(&mut self.inner.borrow_mut().ready, buf);
    }

    /// Asks the writer to finish what is ready and stop.
    pub fn close(&self) {
        self.inner.borrow_mut().closing = true;
        self.writable.notify();
        self.drained.notify();
        self.closed.notify();
    }

    pub fn is_closing(&self) -> bool {
        self.inner.borrow().closing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(outbox: &Outbox) -> Vec<u8> {
        let mut buf = Vec::new();
        outbox.take_ready(&mut buf);
        buf
    }

    #[test]
    fn replies_leave_in_request_order() {
        let outbox = Outbox::default();
        let first = outbox.reserve();
        outbox.reply(|o| o.push(2));
        let third = outbox.reserve();
        assert_eq!(
            drain(&outbox),
            Vec::<u8>::new(),
            "nothing may pass the waiting first reply"
        );
        outbox.complete(third, |o| o.push(3));
        assert_eq!(drain(&outbox), Vec::<u8>::new());
        outbox.complete(first, |o| o.push(1));
        assert_eq!(drain(&outbox), vec![1, 2, 3]);
        assert_eq!(outbox.in_flight(), 0);
    }

    #[test]
    fn pushes_do_not_wait_and_stale_completions_are_ignored() {
        let outbox = Outbox::default();
        let slot = outbox.reserve();
        outbox.push(|o| o.push(9));
        assert_eq!(drain(&outbox), vec![9]);
        outbox.complete(slot, |o| o.push(1));
        outbox.complete(slot, |o| o.push(1));
        outbox.complete(SlotId(77), |o| o.push(7));
        assert_eq!(drain(&outbox), vec![1]);
    }
}
