//! The shard's worker directory: where every worker any shard registered lives (its home shard,
//! and its connection when that is this shard) and how to show it (port, address). Filled by
//! registrations (`WorkerUp`, here or from the mesh) and emptied by departures (`WorkerLost`).
//! Lookups only: no decision iterates it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;

use super::conns::ConnKey;
use titan_core::WorkerId;

/// Where a known worker lives and how to show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerHome {
    pub shard: u32,
    pub port: u16,
    /// Where the worker listens (its connection's peer address, with its registered port):
    /// clients fetch job output files from there.
    pub addr: SocketAddr,
    /// Its connection, when it lives on this shard.
    pub conn: Option<ConnKey>,
    /// The worker process's identity (its registration's `instance`): its ticket key is
    /// derived from it.
    pub instance: u64,
}

/// How to reach a worker from this shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Through this connection, here.
    Here(ConnKey),
    /// Through its home shard.
    Shard(u32),
    /// Unknown or gone: the cores learn of the loss through `WorkerLost`.
    Gone,
}

/// The directory. Every method borrows it only for its own duration.
#[derive(Default)]
pub struct Directory {
    homes: RefCell<HashMap<WorkerId, WorkerHome>>,
}

impl Directory {
    pub fn insert(&self, worker: WorkerId, home: WorkerHome) {
        self.homes.borrow_mut().insert(worker, home);
    }

    pub fn remove(&self, worker: WorkerId) {
        self.homes.borrow_mut().remove(&worker);
    }

    pub fn get(&self, worker: WorkerId) -> Option<WorkerHome> {
        self.homes.borrow().get(&worker).copied()
    }

    pub fn port(&self, worker: WorkerId) -> Option<u16> {
        self.get(worker).map(|h| h.port)
    }

    pub fn addr(&self, worker: WorkerId) -> Option<SocketAddr> {
        self.get(worker).map(|h| h.addr)
    }

    /// The worker registered at `addr` (to issue a ticket for its port), if one is.
    pub fn at(&self, addr: SocketAddr) -> Option<(WorkerId, WorkerHome)> {
        let homes = self.homes.borrow();
        let (id, home) = homes.iter().find(|(_, home)| home.addr == addr)?;
        Some((*id, *home))
    }

    /// How shard `me` reaches `worker`.
    pub fn reach(&self, worker: WorkerId, me: u32) -> Reach {
        match self.get(worker) {
            Some(WorkerHome {
                conn: Some(conn), ..
            }) => Reach::Here(conn),
            Some(WorkerHome { shard, .. }) if shard != me => Reach::Shard(shard),
            _ => Reach::Gone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_reached_through_its_connection_or_its_home_shard() {
        let dir = Directory::default();
        let addr: SocketAddr = "10.0.0.2:8081".parse().expect("an address");
        let (local, remote, gone) = (
            WorkerId::new(1, 1).expect("id"),
            WorkerId::new(2, 1).expect("id"),
            WorkerId::new(3, 1).expect("id"),
        );
        let conn = ConnKey {
            index: 4,
            generation: 2,
        };
        let home = |shard, conn| WorkerHome {
            shard,
            port: 8081,
            addr,
            conn,
            instance: 7,
        };
        dir.insert(local, home(0, Some(conn)));
        dir.insert(remote, home(1, None));
        assert_eq!(dir.reach(local, 0), Reach::Here(conn));
        assert_eq!(dir.reach(remote, 0), Reach::Shard(1));
        assert_eq!(dir.reach(gone, 0), Reach::Gone);
        assert_eq!(
            (dir.port(remote), dir.addr(remote)),
            (Some(8081), Some(addr))
        );
        dir.remove(remote);
        assert_eq!(dir.reach(remote, 0), Reach::Gone);
    }
}
