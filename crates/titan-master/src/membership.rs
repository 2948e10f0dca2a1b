//! Workers joining and leaving: a registration on the worker's home shard (the one its
//! connection landed on), its announcement to every shard, the reports that follow, and the
//! worker's departure when its connection ends.
//!
//! Where each of these goes is the router's decision (`titan_core::router`): a registration
//! reaches each shard as the adoptions of the attempts the worker still runs whose jobs that
//! shard owns, then its `WorkerUp`; reports go to the shard owning the job; a departure reaches
//! every shard. This module validates, keeps the directory and the worker ids, and carries the
//! router's deliveries out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tracing::{info, warn};

use super::conns::ConnKey;
use super::directory::WorkerHome;
use super::mesh::ShardMsg;
use super::requests::Origin;
use super::shard::Shard;
use titan_core::router::Delivery;
use titan_core::{Input, JobId, WorkerId, WorkerInfo};
use titan_proto::decode;
use titan_proto::message::worker::{ArchivedRegister, Registered};
use titan_proto::{encode_frame, ErrorCode, OpCode, ProtoError};

/// Longest skill list and skill name a worker may advertise.
pub const MAX_SKILLS: usize = 64;
pub const MAX_SKILL_LEN: usize = 64;

/// Checks a worker's advertised skills against the limits; the error says what is allowed.
pub fn check_skills<'a>(skills: impl ExactSizeIterator<Item = &'a str>) -> Result<(), String> {
    let mut skills = skills;
    let too_many = skills.len() > MAX_SKILLS;
    if too_many
        || skills.any(|s| s.len() > MAX_SKILL_LEN || titan_core::ids::check_name(s).is_err())
    {
        return Err(format!(
            "at most {MAX_SKILLS} skills of 1 to {MAX_SKILL_LEN} characters from A-Z a-z 0-9 _ . -"
        ));
    }
    Ok(())
}

/// The registration as the cores read it (skills in upper case, at least one slot).
fn worker_info(id: WorkerId, m: &ArchivedRegister) -> WorkerInfo {
    WorkerInfo {
        id,
        capacity: m.capacity.to_native().max(1),
        skills: m
            .skills
            .iter()
            .map(|s| s.as_str().to_ascii_uppercase().into_boxed_str())
            .collect(),
        port: m.port.to_native(),
        parent: m.parent.as_ref().map(decode::native),
        ephemeral: m.ephemeral,
        home: true,
        spawn_ticket: m.spawn_ticket.as_ref().map(|t| t.to_native()),
        instance: m.instance.to_native(),
    }
}

impl Shard {
    /// An input that reached this shard from outside goes where the router sends it.
    pub(super) fn arrive(&self, input: Input) {
        self.send_input(self.router.input(input));
    }

    pub(super) fn register(
        &self,
        from: Origin<'_>,
        m: &ArchivedRegister,
    ) -> Result<(), ProtoError> {
        let (conn, outbox) = (from.conn, from.outbox);
        let opcode = OpCode::Register;
        if self.conns.worker(conn).is_some() {
            return Err(ProtoError::UnexpectedFrame {
                opcode,
                reason: "this connection already registered",
            });
        }
        check_skills(m.skills.iter().map(|s| s.as_str()))
            .map_err(|reason| ProtoError::InvalidPayload { opcode, reason })?;
        let allocated = self.shared.worker_ids.lock().map(|mut ids| ids.allocate());
        let Ok(Some(id)) = allocated else {
            outbox.reply(|out| {
                titan_proto::encode_error(out, ErrorCode::Unavailable, "the worker table is full")
            });
            return Ok(());
        };
        let info = worker_info(id, m);
        info!(worker = %id, port = info.port, capacity = info.capacity, skills = ?info.skills, shard = self.index, "worker registered");
        let peer_ip = self.conns.set_worker(conn, id);
        let addr = SocketAddr::new(
            peer_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            info.port,
        );
        let home = WorkerHome {
            shard: self.index,
            port: info.port,
            addr,
            conn: Some(conn),
            instance: info.instance,
        };
        self.directory.insert(id, home);
        let heartbeat_ms = (self.shared.config.heartbeat_interval.as_millis() as u32).max(1);
        let (log_key, ticket_key) = self.shared.auth.registration_keys(id, info.instance);
        outbox.reply(|out| {
            let _ = encode_frame(
                out,
                OpCode::Ack,
                &Registered {
                    worker: id,
                    heartbeat_ms,
                    log_port: self.shared.log_port(),
                    log_key,
                    ticket_key,
                },
            );
        });
        // Attempts the worker still runs (or finished while it was away): the core that owns
        // each either adopts it — after a master restart, so it does not run twice — or, when it
        // already gave up on it, answers with a kill.
        let attempts = m
            .running
            .iter()
            .map(|a| (decode::native::<JobId, _>(&a.job), a.attempt.to_native()));
        for Delivery { shard, input } in self.router.register(&info, attempts) {
            match input {
                // Other shards also learn where the worker lives, for their directories.
                Input::WorkerUp(info) if shard != self.index => self.mesh.send(
                    shard,
                    ShardMsg::WorkerUp {
                        info,
                        home_shard: self.index,
                        addr,
                    },
                ),
                input => self.send_input(Delivery { shard, input }),
            }
        }
        Ok(())
    }

    /// Another shard registered a worker.
    pub(super) fn on_remote_worker_up(&self, info: WorkerInfo, home_shard: u32, addr: SocketAddr) {
        let home = WorkerHome {
            shard: home_shard,
            port: info.port,
            addr,
            conn: None,
            instance: info.instance,
        };
        self.directory.insert(info.id, home);
        self.handle(Input::WorkerUp(info));
    }

    /// Inputs from other shards; a lost worker is also forgotten here.
    pub(super) fn on_remote_input(&self, input: Input) {
        if let Input::WorkerLost { worker } = &input {
            self.directory.remove(*worker);
        }
        self.handle(input);
    }

    /// A connection ended: if it was a worker, every shard loses it.
    pub fn on_conn_closed(&self, conn: ConnKey) {
        let entry = self.conns.remove(conn);
        let Some(worker) = entry.and_then(|e| e.worker) else {
            return;
        };
        warn!(%worker, "worker disconnected; its running jobs go back to the queue");
        self.directory.remove(worker);
        for lost in self.router.worker_lost(worker) {
            self.send_input(lost);
        }
        if let Ok(mut ids) = self.shared.worker_ids.lock() {
            ids.free(worker);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skills_are_limited_in_number_length_and_alphabet() {
        let check = |skills: &[&str]| check_skills(skills.iter().copied());
        assert!(check(&[]).is_ok());
        assert!(check(&["GENERAL", "gpu", "a.b-c_9"]).is_ok());
        let longest = "A".repeat(MAX_SKILL_LEN);
        assert!(check(&[longest.as_str()]).is_ok());
        let too_long = "A".repeat(MAX_SKILL_LEN + 1);
        assert!(check(&[too_long.as_str()]).is_err());
        assert!(check(&[""]).is_err(), "an empty skill");
        assert!(check(&["GPU", "has space"]).is_err());
        assert!(check(&["ünï"]).is_err());
        let many = vec!["GPU"; MAX_SKILLS + 1];
        let err = check(&many).expect_err("too many skills");
        assert!(err.contains(&MAX_SKILLS.to_string()), "{err}");
        assert!(check(&vec!["GPU"; MAX_SKILLS]).is_ok());
    }
}
