//! The persistence gate: the outputs of one core in emission order, the LSN counter of its journal,
//! and the effects held until the records they depend on are durable (raft's `Ready`).
//!
//! A journal record gets the next LSN and leaves at once. An acknowledgement (a reply, a watch
//! notification, a kill) waits until `Persisted` covers every record emitted before it, and leaves
//! in emission order behind the ones held earlier, so replies leave in request order and never
//! acknowledge anything that is not durable. A dispatch names its own bound (the records that made
//! its job ready) and may overtake held acknowledgements. Everything else leaves at once.

use std::collections::vec_deque::Drain;
use std::collections::VecDeque;

use super::ids::Lsn;
use super::output::Output;
use super::record::Record;

/// Outputs waiting for the shell, and those still held for their records.
#[derive(Debug)]
pub struct Outbox {
    /// The LSN the next journal record gets.
    next_lsn: u64,
    /// Every record up to here is durable.
    persisted: Lsn,
    /// Outputs the shell may take, in order.
    ready: VecDeque<Output>,
    /// Outputs held until `persisted` reaches their LSN, in emission order.
    held: VecDeque<(Lsn, Output)>,
}

impl Outbox {
    /// An empty outbox whose first journal record gets `first_lsn` (0 counts as 1).
    pub fn new(first_lsn: u64) -> Outbox {
        let first_lsn = first_lsn.max(1);
        Outbox {
            next_lsn: first_lsn,
            persisted: Lsn(first_lsn - 1),
            ready: VecDeque::new(),
            held: VecDeque::new(),
        }
    }

    /// The last LSN handed out (the next record gets this plus one).
    pub fn last_lsn(&self) -> Lsn {
        Lsn(self.next_lsn - 1)
    }

    /// Queues a journal record under the next LSN.
    pub fn journal(&mut self, record: Record) {
        let lsn = Lsn(self.next_lsn);
        self.next_lsn += 1;
        self.ready.push_back(Output::Journal { lsn, record });
    }

    /// Queues an effect that needs no durability.
    pub fn emit(&mut self, output: Output) {
        self.ready.push_back(output);
    }

    /// Queues an acknowledgement, held until every record emitted so far is persisted.
    pub fn ack(&mut self, output: Output) {
        let need = self.last_lsn();
        if need <= self.persisted && self.held.is_empty() {
            self.ready.push_back(output);
        } else {
            self.held.push_back((need, output));
        }
    }

    /// Queues an effect that needs the records up to `need` durable, but not the ones emitted
    /// after them (it may overtake held acknowledgements).
    pub fn after(&mut self, need: Lsn, output: Output) {
        if need <= self.persisted {
            self.ready.push_back(output);
        } else {
            self.held.push_back((need, output));
        }
    }

    /// Every record up to `lsn` is durable (an LSN past the last one handed out counts as the
    /// last): releases the held outputs at the front that were waiting for them.
    pub fn persisted(&mut self, lsn: Lsn) {
        self.persisted = self.persisted.max(lsn.min(self.last_lsn()));
        while self
            .held
            .front()
            .is_some_and(|(need, _)| *need <= self.persisted)
        {
            if let Some((_, o)) = self.held.pop_front() {
                self.ready.push_back(o);
            }
        }
    }

    /// The next output, in emission order.
    pub fn pop(&mut self) -> Option<Output> {
        self.ready.pop_front()
    }

    /// Every output the shell may take now.
    pub fn drain(&mut self) -> Drain<'_, Output> {
        self.ready.drain(..)
    }
}
