//! The send side of a connection: replies in request order, frames pushed unasked, and the
//! credit the peer has left.
//!
//! Some replies cannot be written when their request is read: a submit is acknowledged only
//! after its journal record is durable, and a request for a job owned by another shard waits for
//! that shard. Such a request reserves a slot; replies that are ready while earlier slots still
//! wait are parked behind them, so the peer always receives replies in the order it sent
//! requests. Frames sent unasked (a job for a worker, a kill) go straight to the ready bytes.
//!
//! Credit is what the peer may be owed before its requests stop being read: replies reserved and
//! not yet sent (the in-flight bound), and bytes of finished replies not yet written to the
//! socket (the byte budget). Pushed frames are not owed to anyone and do not count.

use std::collections::VecDeque;

use super::layers::Transport;

/// A reserved place in the reply order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotId(pub u64);

/// How much a peer may be owed before its requests stop being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credit {
    /// Replies reserved and not yet released to the writer.
    pub max_in_flight: usize,
    /// Bytes of replies finished and not yet written (parked, ready or being written).
    pub max_bytes_owed: usize,
}

impl Credit {
    /// No bound: the side that sends requests owes no replies.
    pub const UNLIMITED: Credit = Credit {
        max_in_flight: usize::MAX,
        max_bytes_owed: usize::MAX,
    };
}

#[derive(Debug)]
enum Slot {
    Waiting,
    Done(Vec<u8>),
}

/// Reply bytes owed, by where they are.
#[derive(Debug, Default)]
struct Owed {
    /// Finished, parked behind a waiting reply.
    parked: usize,
    /// In the ready bytes.
    ready: usize,
    /// Taken by the writer and not yet reported written.
    writing: usize,
}

#[derive(Debug)]
pub struct Outgoing {
    transport: Transport,
    ready: Vec<u8>,
    /// Frames pushed while a client's handshake is still running, sent once it is done.
    held: Option<Vec<u8>>,
    slots: VecDeque<Slot>,
    first_slot: u64,
    owed: Owed,
    credit: Credit,
}

impl Default for Outgoing {
    fn default() -> Self {
        Outgoing::new(Transport::Plaintext, Credit::UNLIMITED)
    }
}

impl Outgoing {
    pub fn new(transport: Transport, credit: Credit) -> Outgoing {
        Outgoing {
            transport,
            ready: Vec::new(),
            held: None,
            slots: VecDeque::new(),
            first_slot: 0,
            owed: Owed::default(),
            credit,
        }
    }

    /// Writes a reply now, or parks it behind earlier replies that are still waiting.
    pub fn reply(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        if self.slots.is_empty() {
            self.encode_ready(encode);
        } else {
            let done = self.encode_parked(encode);
            self.slots.push_back(done);
        }
    }

    /// Reserves the next place in the reply order for a reply that comes later.
    pub fn reserve(&mut self) -> SlotId {
        self.slots.push_back(Slot::Waiting);
        SlotId(self.first_slot + self.slots.len() as u64 - 1)
    }

    /// Fills a reserved slot; every reply now at the head of the order becomes ready. Returns
    /// false, and ignores the reply, for a slot that is not waiting (filled twice, or unknown).
    pub fn complete(&mut self, slot: SlotId, encode: impl FnOnce(&mut Vec<u8>)) -> bool {
        let Some(index) = slot
            .0
            .checked_sub(self.first_slot)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return false;
        };
        if !matches!(self.slots.get(index), Some(Slot::Waiting)) {
            return false;
        }
        if index == 0 {
            // The head of the order (the common case): encoded straight into the ready bytes.
            self.slots.pop_front();
            self.first_slot += 1;
            self.encode_ready(encode);
        } else {
            self.slots[index] = self.encode_parked(encode);
        }
        self.release_finished_head();
        true
    }

    /// Fills the slot whose low bits are `low` (as carried in a token): the in-flight window is
    /// far smaller than the wrap-around, so the nearest slot at or after the first is the one.
    pub fn complete_wrapped(
        &mut self,
        low: u32,
        mask: u64,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        let delta = (u64::from(low).wrapping_sub(self.first_slot)) & mask;
        self.complete(SlotId(self.first_slot + delta), encode)
    }

    /// Sends a frame the peer did not ask for (it does not wait behind replies). While a
    /// client's handshake runs, the frame waits until it is done.
    pub fn push(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        match &mut self.held {
            Some(held) => encode(held),
            None => encode(&mut self.ready),
        }
    }

    /// A handshake frame: ahead of every frame held back.
    pub(super) fn push_handshake(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        encode(&mut self.ready);
    }

    /// Holds pushed frames back until [`Outgoing::release`] (a client's handshake).
    pub(super) fn hold(&mut self) {
        self.held.get_or_insert_with(Vec::new);
    }

    /// Sends the frames held back, after the handshake's own.
    pub(super) fn release(&mut self) {
        if let Some(held) = self.held.take() {
            self.ready.extend_from_slice(&held);
        }
    }

    /// Replies reserved and not yet released to the writer.
    pub fn in_flight(&self) -> usize {
        self.slots.len()
    }

    /// Bytes of finished replies not yet written to the socket.
    pub fn bytes_owed(&self) -> usize {
        self.owed.parked + self.owed.ready + self.owed.writing
    }

    /// Whether the peer has credit left, so its next requests may be read.
    pub fn may_read(&self) -> bool {
        self.in_flight() < self.credit.max_in_flight
            && self.bytes_owed() <= self.credit.max_bytes_owed
    }

    /// Whether there are bytes for the writer.
    pub fn has_transmit(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Moves everything ready into `wire` (which must be empty) as the socket must carry it.
    /// Call [`Outgoing::on_written`] once it was written.
    pub fn take_transmit(&mut self, wire: &mut Vec<u8>) {
        self.transport.seal(&mut self.ready, wire);
        self.owed.writing += std::mem::take(&mut self.owed.ready);
    }

    /// What [`Outgoing::take_transmit`] handed out was written. Returns whether that gave the
    /// peer credit back.
    pub fn on_written(&mut self) -> bool {
        std::mem::take(&mut self.owed.writing) > 0
    }

    pub(super) fn transport_mut(&mut self) -> &mut Transport {
        &mut self.transport
    }

    /// Encodes a reply straight into the ready bytes.
    fn encode_ready(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        let before = self.ready.len();
        encode(&mut self.ready);
        self.owed.ready += self.ready.len() - before;
    }

    /// Encodes a reply that must wait behind an earlier one.
    fn encode_parked(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> Slot {
        let mut bytes = Vec::new();
        encode(&mut bytes);
        self.owed.parked += bytes.len();
        Slot::Done(bytes)
    }

    fn release_finished_head(&mut self) {
        while let Some(Slot::Done(_)) = self.slots.front() {
            if let Some(Slot::Done(bytes)) = self.slots.pop_front() {
                self.ready.extend_from_slice(&bytes);
                self.owed.parked -= bytes.len();
                self.owed.ready += bytes.len();
            }
            self.first_slot += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(out: &mut Outgoing) -> Vec<u8> {
        let mut buf = Vec::new();
        out.take_transmit(&mut buf);
        out.on_written();
        buf
    }

    #[test]
    fn replies_leave_in_request_order() {
        let mut out = Outgoing::default();
        let first = out.reserve();
        out.reply(|o| o.push(2));
        let third = out.reserve();
        assert_eq!(
            drain(&mut out),
            Vec::<u8>::new(),
            "nothing may pass the waiting first reply"
        );
        assert!(out.complete(third, |o| o.push(3)));
        assert_eq!(drain(&mut out), Vec::<u8>::new());
        assert!(out.complete(first, |o| o.push(1)));
        assert_eq!(drain(&mut out), vec![1, 2, 3]);
        assert_eq!(out.in_flight(), 0);
        assert_eq!(out.bytes_owed(), 0);
    }

    #[test]
    fn pushes_do_not_wait_and_stale_completions_are_ignored() {
        let mut out = Outgoing::default();
        let slot = out.reserve();
        out.push(|o| o.push(9));
        assert_eq!(drain(&mut out), vec![9]);
        assert!(out.complete(slot, |o| o.push(1)));
        assert!(!out.complete(slot, |o| o.push(1)));
        assert!(!out.complete(SlotId(77), |o| o.push(7)));
        assert_eq!(drain(&mut out), vec![1]);
    }

    #[test]
    fn wrapped_slot_numbers_find_their_slot() {
        let mut out = Outgoing::default();
        for _ in 0..300 {
            let slot = out.reserve();
            assert!(out.complete(slot, |_| {}));
        }
        let a = out.reserve();
        let b = out.reserve();
        let mask = 0xff;
        assert!(out.complete_wrapped((b.0 & mask) as u32, mask, |o| o.push(2)));
        assert!(out.complete_wrapped((a.0 & mask) as u32, mask, |o| o.push(1)));
        assert_eq!(drain(&mut out), vec![1, 2]);
    }

    #[test]
    fn the_in_flight_bound_stops_reading_until_replies_leave() {
        let mut out = Outgoing::new(
            Transport::Plaintext,
            Credit {
                max_in_flight: 2,
                max_bytes_owed: usize::MAX,
            },
        );
        let a = out.reserve();
        assert!(out.may_read());
        let b = out.reserve();
        assert!(!out.may_read(), "two replies owed is the bound");
        out.complete(b, |o| o.push(2));
        assert!(!out.may_read(), "a parked reply is still in flight");
        out.complete(a, |o| o.push(1));
        assert!(out.may_read());
    }

    #[test]
    fn the_byte_budget_counts_replies_until_written_and_ignores_pushes() {
        let mut out = Outgoing::new(
            Transport::Plaintext,
            Credit {
                max_in_flight: usize::MAX,
                max_bytes_owed: 100,
            },
        );
        out.push(|o| o.extend_from_slice(&[0; 500]));
        assert_eq!(out.bytes_owed(), 0, "pushed frames are not owed");
        assert!(out.may_read());
        let slot = out.reserve();
        out.reply(|o| o.extend_from_slice(&[1; 60]));
        assert_eq!(out.bytes_owed(), 60, "parked");
        out.complete(slot, |o| o.extend_from_slice(&[2; 50]));
        assert_eq!(out.bytes_owed(), 110);
        assert!(!out.may_read(), "over budget");
        let mut wire = Vec::new();
        out.take_transmit(&mut wire);
        assert_eq!(wire.len(), 610);
        assert_eq!(out.bytes_owed(), 110, "still owed while being written");
        assert!(!out.may_read());
        assert!(out.on_written(), "credit given back");
        assert_eq!(out.bytes_owed(), 0);
        assert!(out.may_read());
        assert!(!out.on_written(), "nothing more to give back");
    }
}
