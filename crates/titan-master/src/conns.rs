//! The shard's connection table: every open connection (client or worker) under a [`ConnKey`], its
//! outbox, its peer, whether it registered as a worker, and when it last sent anything.
//!
//! A key is an index plus a generation, so the key of a closed connection never reaches the
//! connection that reused its index: a reply computed for a client that left is dropped, not sent
//! to a stranger. The key travels inside reply tokens ([`reply_token`], the router's
//! [`ReplyToken`]). At the connection limit the longest-idle client connection that owes no reply
//! may be closed to make room; workers are never evicted.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use titan_core::router::{ReplyToken, SLOT_MASK};
use titan_core::WorkerId;
use titan_runtime::outbox::{Outbox, SlotId};

/// A connection's place in its shard's table; the generation tells a reused place apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub index: u16,
    pub generation: u16,
}

impl ConnKey {
    /// The key as it travels in a reply token.
    pub fn bits(self) -> u32 {
        u32::from(self.index) << 16 | u32::from(self.generation)
    }

    pub fn from_bits(bits: u32) -> ConnKey {
        ConnKey {
            index: (bits >> 16) as u16,
            generation: bits as u16,
        }
    }
}

/// The token of a reply reserved in slot `slot` of connection `conn` on `shard`. Only the low 24
/// bits of the slot travel; the outbox restores the rest ([`Outbox::complete_wrapped`]), sound
/// while fewer than 2^24 replies are in flight per connection (the limit is far lower).
pub fn reply_token(shard: u32, conn: ConnKey, slot: SlotId) -> u64 {
    ReplyToken {
        shard,
        conn: conn.bits(),
        slot: (slot.0 & SLOT_MASK) as u32,
    }
    .pack()
}

/// A connection known to the shard.
pub struct ConnEntry {
    pub outbox: Rc<Outbox>,
    /// The peer's address.
    pub peer: Option<SocketAddr>,
    /// Set once the peer registered as a worker.
    pub worker: Option<WorkerId>,
    /// When bytes last arrived from the peer.
    pub last_active: Instant,
}

/// The table. Every method borrows it only for its own duration, so no borrow outlives a call
/// (none can be held across an await).
#[derive(Default)]
pub struct Conns {
    table: RefCell<Table>,
}

#[derive(Default)]
struct Table {
    entries: Vec<Option<ConnEntry>>,
    generations: Vec<u16>,
    free: Vec<u16>,
}

impl Table {
    fn get(&self, key: ConnKey) -> Option<&ConnEntry> {
        let i = key.index as usize;
        (self.generations.get(i) == Some(&key.generation))
            .then(|| self.entries[i].as_ref())
            .flatten()
    }

    fn get_mut(&mut self, key: ConnKey) -> Option<&mut ConnEntry> {
        let i = key.index as usize;
        if self.generations.get(i) != Some(&key.generation) {
            return None;
        }
        self.entries[i].as_mut()
    }
}

impl Conns {
    /// Adds a connection; `None` when the table has no index left (65,536 open connections).
    pub fn insert(&self, entry: ConnEntry) -> Option<ConnKey> {
        let mut t = self.table.borrow_mut();
        let index = match t.free.pop() {
            Some(i) => i,
            None => {
                let i = u16::try_from(t.entries.len()).ok()?;
                t.entries.push(None);
                t.generations.push(0);
                i
            }
        };
        let generation = t.generations[index as usize].wrapping_add(1);
        t.generations[index as usize] = generation;
        t.entries[index as usize] = Some(entry);
        Some(ConnKey { index, generation })
    }

    /// Forgets a connection; its index may be reused under the next generation.
    pub fn remove(&self, key: ConnKey) -> Option<ConnEntry> {
        let mut t = self.table.borrow_mut();
        let i = key.index as usize;
        if t.generations.get(i) != Some(&key.generation) {
            return None;
        }
        let entry = t.entries[i].take();
        if entry.is_some() {
            t.free.push(key.index);
        }
        entry
    }

    pub fn outbox(&self, key: ConnKey) -> Option<Rc<Outbox>> {
        self.table.borrow().get(key).map(|c| c.outbox.clone())
    }

    /// The worker that registered on this connection, if one did.
    pub fn worker(&self, key: ConnKey) -> Option<WorkerId> {
        self.table.borrow().get(key).and_then(|c| c.worker)
    }

    /// Marks the connection as `worker`'s; returns the peer's address.
    pub fn set_worker(&self, key: ConnKey, worker: WorkerId) -> Option<IpAddr> {
        let mut t = self.table.borrow_mut();
        let entry = t.get_mut(key)?;
        entry.worker = Some(worker);
        entry.peer.map(|p| p.ip())
    }

    /// Bytes arrived from the peer at `now`.
    pub fn touch(&self, key: ConnKey, now: Instant) {
        if let Some(entry) = self.table.borrow_mut().get_mut(key) {
            entry.last_active = now;
        }
    }

    /// Closes the connection's outbox, which ends the connection once what it owes is written.
    pub fn close(&self, key: ConnKey) {
        if let Some(entry) = self.table.borrow().get(key) {
            entry.outbox.close();
        }
    }

    /// The client connection (not a worker's) that has waited longest since it last sent
    /// anything, owes no reply, and has been quiet for at least `min_idle` at `now`.
    pub fn oldest_idle_client(&self, now: Instant, min_idle: Duration) -> Option<ConnKey> {
        let t = self.table.borrow();
        t.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i, e.as_ref()?)))
            .filter(|(_, e)| {
                e.worker.is_none()
                    && e.outbox.in_flight() == 0
                    && now.saturating_duration_since(e.last_active) >= min_idle
            })
            .min_by_key(|(_, e)| e.last_active)
            .map(|(i, _)| ConnKey {
                index: i as u16,
                generation: t.generations[i],
            })
    }

    /// The peer of a connection, for logging.
    pub fn peer(&self, key: ConnKey) -> Option<SocketAddr> {
        self.table.borrow().get(key).and_then(|c| c.peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use titan_core::router::ReplyTo;
    use titan_proto::conn::Outgoing;

    fn entry(last_active: Instant) -> ConnEntry {
        ConnEntry {
            outbox: Outbox::new(Outgoing::default()),
            peer: Some("127.0.0.1:4000".parse().expect("an address")),
            worker: None,
            last_active,
        }
    }

    #[test]
    fn a_reused_index_gets_a_new_generation_and_old_keys_miss() {
        let conns = Conns::default();
        let now = Instant::now();
        let first = conns.insert(entry(now)).expect("room");
        assert!(conns.remove(first).is_some());
        let second = conns.insert(entry(now)).expect("room");
        assert_eq!(second.index, first.index, "the index is reused");
        assert_ne!(second.generation, first.generation);
        assert!(conns.outbox(first).is_none(), "a stale key reaches nothing");
        assert!(conns.remove(first).is_none());
        assert!(conns.outbox(second).is_some());
        let third = conns.insert(entry(now)).expect("room");
        assert_ne!(third.index, second.index, "a live index is not shared");
    }

    #[test]
    fn the_oldest_idle_client_is_chosen_never_a_worker_nor_one_owed_a_reply() {
        let conns = Conns::default();
        let now = Instant::now();
        let ago = |s| now - Duration::from_secs(s);
        let worker = conns.insert(entry(ago(60))).expect("room");
        conns.set_worker(worker, WorkerId::new(1, 1).expect("id"));
        let owed = conns.insert(entry(ago(50))).expect("room");
        conns.outbox(owed).expect("open").reserve();
        let old = conns.insert(entry(ago(40))).expect("room");
        let recent = conns.insert(entry(ago(10))).expect("room");
        let min_idle = Duration::from_secs(5);
        assert_eq!(conns.oldest_idle_client(now, min_idle), Some(old));
        conns.remove(old);
        assert_eq!(conns.oldest_idle_client(now, min_idle), Some(recent));
        conns.touch(recent, now);
        assert_eq!(conns.oldest_idle_client(now, min_idle), None);
    }

    #[test]
    fn a_worker_connection_knows_its_worker_and_peer() {
        let conns = Conns::default();
        let key = conns.insert(entry(Instant::now())).expect("room");
        assert_eq!(conns.worker(key), None);
        let id = WorkerId::new(3, 2).expect("id");
        let ip = conns.set_worker(key, id);
        assert_eq!(ip, Some("127.0.0.1".parse().expect("an ip")));
        assert_eq!(conns.worker(key), Some(id));
    }

    #[test]
    fn reply_tokens_carry_the_shard_the_connection_and_the_low_slot_bits() {
        let conn = ConnKey {
            index: 4095,
            generation: 65535,
        };
        assert_eq!(ConnKey::from_bits(conn.bits()), conn);
        let token = reply_token(63, conn, SlotId((7 << 24) | 0xAB_CDEF));
        let ReplyTo::Connection(t) = ReplyTo::unpack(token) else {
            panic!("a reply token reads as a connection's");
        };
        assert_eq!(
            (t.shard, ConnKey::from_bits(t.conn), t.slot),
            (63, conn, 0xAB_CDEF)
        );
    }

    /// Replies complete in any order through their tokens but leave in request order.
    #[test]
    fn replies_completed_out_of_order_leave_in_request_order() {
        let conns = Conns::default();
        let key = conns.insert(entry(Instant::now())).expect("room");
        let outbox = conns.outbox(key).expect("open");
        let tokens: Vec<u64> = (0..3)
            .map(|_| reply_token(0, key, outbox.reserve()))
            .collect();
        for (token, byte) in tokens.iter().zip([b'a', b'b', b'c']).rev() {
            let ReplyTo::Connection(t) = ReplyTo::unpack(*token) else {
                panic!("a connection token");
            };
            let target = conns
                .outbox(ConnKey::from_bits(t.conn))
                .expect("same connection");
            target.complete_wrapped(t.slot, SLOT_MASK, |out| out.push(byte));
        }
        let mut written = Vec::new();
        outbox.take_transmit(&mut written);
        assert_eq!(written, b"abc");
        assert_eq!(outbox.in_flight(), 0);
    }
}
