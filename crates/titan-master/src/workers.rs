//! The worker side of the protocol: registration, heartbeats, job reports, disconnects.
//!
//! A worker's connection lives on one shard, its home: that shard's core tracks its heartbeats,
//! and its registration is broadcast so every shard can place jobs on it. Reports about a job go
//! to the shard that owns the job (`dag % shards`).

use std::time::Duration;

use tracing::{info, warn};

use super::mesh::{ConnKey, ShardMsg};
use super::state::{Shard, WorkerHome};
use titan_core::{Input, JobId, Outcome, WorkerId, WorkerInfo};
use titan_proto::message::worker::{
    ArchivedHeartbeat, ArchivedJobFinished, ArchivedJobStarted, ArchivedRegister,
    ArchivedServiceState, Registered,
};
use titan_proto::{self as proto, encode_frame, ErrorCode, OpCode, ProtoError};
use titan_runtime::outbox::Outbox;

/// Longest skill list and skill name a worker may advertise.
pub const MAX_SKILLS: usize = 64;
pub const MAX_SKILL_LEN: usize = 64;

impl Shard {
    pub(super) fn on_worker_frame(
        &self,
        conn: ConnKey,
        outbox: &Outbox,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<(), ProtoError> {
        if opcode == OpCode::Register {
            let register = proto::access::<ArchivedRegister>(opcode, payload)?;
            return self.register(conn, outbox, register);
        }
        let worker = self.conns.borrow().get(conn).and_then(|c| c.worker);
        let Some(worker) = worker else {
            return Err(ProtoError::UnexpectedFrame {
                opcode,
                reason: "a worker must register first",
            });
        };
        match opcode {
            OpCode::Heartbeat => {
                proto::access::<ArchivedHeartbeat>(opcode, payload)?;
                self.handle(Input::Heartbeat { worker });
            }
            OpCode::JobStarted => {
                let m = proto::access::<ArchivedJobStarted>(opcode, payload)?;
                let job = JobId(m.job.to_native());
                self.to_owner(
                    job,
                    Input::JobStarted {
                        job,
                        attempt: m.attempt.to_native(),
                        worker,
                    },
                );
            }
            OpCode::JobComplete => {
                let m = proto::access::<ArchivedJobFinished>(opcode, payload)?;
                let outcome: Outcome = rkyv::deserialize::<_, rkyv::rancor::BoxedError>(&m.outcome)
                    .map_err(|e| ProtoError::InvalidPayload {
                        opcode,
                        reason: e.to_string(),
                    })?;
                let job = JobId(m.job.to_native());
                let duration = Duration::from_micros(m.duration_us.to_native());
                let worker_addr = self.workers.borrow().get(&worker).map(|h| h.addr);
                let lines = (m.stdout_lines.to_native(), m.stderr_lines.to_native());
                // An attempt that printed nothing (every NOOP) needs no entry in the sink.
                if let (Some(addr), true) = (worker_addr, lines.0 + lines.1 > 0) {
                    self.on_attempt_output_end(job, m.attempt.to_native(), lines, addr);
                }
                self.to_owner(
                    job,
                    Input::JobFinished {
                        job,
                        attempt: m.attempt.to_native(),
                        worker,
                        outcome,
                        duration,
                    },
                );
            }
            OpCode::ServiceState => {
                let ArchivedServiceState::Ready { job, attempt } =
                    proto::access::<ArchivedServiceState>(opcode, payload)?;
                let job = JobId(job.to_native());
                self.to_owner(
                    job,
                    Input::ServiceReady {
                        job,
                        attempt: attempt.to_native(),
                        worker,
                    },
                );
            }
            _ => {
                return Err(ProtoError::UnexpectedFrame {
                    opcode,
                    reason: "not a worker report",
                })
            }
        }
        Ok(())
    }

    fn to_owner(&self, job: JobId, input: Input) {
        let owner = job.dag().owner(self.count);
        if owner == self.index {
            self.handle(input);
        } else {
            self.mesh.send(owner, ShardMsg::Input(input));
        }
    }

    fn register(
        &self,
        conn: ConnKey,
        outbox: &Outbox,
        m: &ArchivedRegister,
    ) -> Result<(), ProtoError> {
        let opcode = OpCode::Register;
        if self
            .conns
            .borrow()
            .get(conn)
            .and_then(|c| c.worker)
            .is_some()
        {
            return Err(ProtoError::UnexpectedFrame {
                opcode,
                reason: "this connection already registered",
            });
        }
        if m.skills.len() > MAX_SKILLS
            || m.skills.iter().any(|s| {
                s.len() > MAX_SKILL_LEN || titan_core::ids::check_name(s.as_str()).is_err()
            })
        {
            let reason = format!(
                "at most {MAX_SKILLS} skills of 1 to {MAX_SKILL_LEN} characters from A-Z a-z 0-9 _ . -"
            );
            return Err(ProtoError::InvalidPayload { opcode, reason });
        }
        let allocated = self.shared.worker_ids.lock().map(|mut ids| ids.allocate());
        let Ok(Some(id)) = allocated else {
            outbox.reply(|out| {
                titan_proto::encode_error(out, ErrorCode::Unavailable, "the worker table is full")
            });
            return Ok(());
        };
        let skills: Vec<Box<str>> = m
            .skills
            .iter()
            .map(|s| s.as_str().to_ascii_uppercase().into_boxed_str())
            .collect();
        let info = WorkerInfo {
            id,
            capacity: m.capacity.to_native().max(1),
            skills,
            port: m.port.to_native(),
            parent: m.parent.as_ref().map(|p| WorkerId(p.to_native())),
            ephemeral: m.ephemeral,
            home: true,
            spawn_ticket: m.spawn_ticket.as_ref().map(|t| t.to_native()),
            instance: m.instance.to_native(),
        };
        info!(worker = %id, port = info.port, capacity = info.capacity, skills = ?info.skills, shard = self.index, "worker registered");
        let peer_ip = {
            let mut conns = self.conns.borrow_mut();
            let entry = conns.get_mut(conn);
            let ip = entry.as_ref().and_then(|e| e.peer).map(|p| p.ip());
            if let Some(entry) = entry {
                entry.worker = Some(id);
            }
            ip.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
        };
        let addr = std::net::SocketAddr::new(peer_ip, info.port);
        let home = WorkerHome {
            shard: self.index,
            port: info.port,
            addr,
            conn: Some(conn),
        };
        self.workers.borrow_mut().insert(id, home);
        let heartbeat_ms = (self.shared.config.heartbeat_interval.as_millis() as u32).max(1);
        outbox.reply(|out| {
            let _ = encode_frame(
                out,
                OpCode::Ack,
                &Registered {
                    worker: id.0,
                    heartbeat_ms,
                    log_port: self.shared.log_port(),
                },
            );
        });
        // Attempts the worker still runs (or finished while it was away): the core that owns
        // each either adopts it — after a master restart, so it does not run twice — or, when it
        // already gave up on it, answers with a kill. Adoption reports go before the registration
        // is broadcast, so no shard fills the worker's slots with new work first.
        for attempt in m.running.iter() {
            let job = JobId(attempt.job.to_native());
            self.to_owner(
                job,
                Input::Adopt {
                    worker: id,
                    job,
                    attempt: attempt.attempt.to_native(),
                },
            );
        }
        let shard = self.index;
        let remote = WorkerInfo {
            home: false,
            ..info.clone()
        };
        self.broadcast(|| ShardMsg::WorkerUp {
            info: remote.clone(),
            home_shard: shard,
            addr,
        });
        self.handle(Input::WorkerUp(info));
        Ok(())
    }

    /// Another shard registered a worker.
    pub(super) fn on_remote_worker_up(
        &self,
        info: WorkerInfo,
        home_shard: u32,
        addr: std::net::SocketAddr,
    ) {
        let home = WorkerHome {
            shard: home_shard,
            port: info.port,
            addr,
            conn: None,
        };
        self.workers.borrow_mut().insert(info.id, home);
        self.handle(Input::WorkerUp(info));
    }

    /// Inputs from other shards; a lost worker is also forgotten here.
    pub(super) fn on_remote_input(&self, input: Input) {
        if let Input::WorkerLost { worker } = &input {
            self.workers.borrow_mut().remove(worker);
        }
        self.handle(input);
    }

    /// A connection ended: if it was a worker, every shard loses it.
    pub fn on_conn_closed(&self, conn: ConnKey) {
        let entry = self.conns.borrow_mut().remove(conn);
        let Some(worker) = entry.and_then(|e| e.worker) else {
            return;
        };
        warn!(%worker, "worker disconnected; its running jobs go back to the queue");
        self.workers.borrow_mut().remove(&worker);
        self.broadcast(|| ShardMsg::Input(Input::WorkerLost { worker }));
        self.handle(Input::WorkerLost { worker });
        if let Ok(mut ids) = self.shared.worker_ids.lock() {
            ids.free(worker);
        }
    }
}
