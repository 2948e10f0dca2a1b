//! The worker side of the protocol: registration, heartbeats, job reports, disconnects.
//!
//! A worker's connection lives on one shard, its home: that shard's core tracks its heartbeats,
//! and its registration is broadcast so every shard can place jobs on it. Reports about a job go
//! to the shard that owns the job (`dag % shards`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tracing::{info, warn};

use super::mesh::{ConnKey, ShardMsg};
use super::requests::Origin;
use super::state::{Shard, WorkerHome};
use titan_core::{Input, JobId, Outcome, WorkerId, WorkerInfo};
use titan_proto::decode::{self, WorkerReport};
use titan_proto::message::worker::{ArchivedJobFinished, ArchivedRegister, Registered};
use titan_proto::{encode_frame, ErrorCode, OpCode, ProtoError};

/// Longest skill list and skill name a worker may advertise.
pub const MAX_SKILLS: usize = 64;
pub const MAX_SKILL_LEN: usize = 64;

impl Shard {
    pub(super) fn on_report(
        &self,
        from: Origin<'_>,
        report: WorkerReport<'_>,
    ) -> Result<(), ProtoError> {
        match report {
            WorkerReport::Register(m) => self.register(from, m)?,
            WorkerReport::Heartbeat { .. } => {
                let worker = self.registered(from.conn, OpCode::Heartbeat)?;
                self.handle(Input::Heartbeat { worker });
            }
            WorkerReport::JobStarted { job, attempt, .. } => {
                let worker = self.registered(from.conn, OpCode::JobStarted)?;
                self.to_owner(
                    job,
                    Input::JobStarted {
                        job,
                        attempt,
                        worker,
                    },
                );
            }
            WorkerReport::JobFinished(m) => {
                let worker = self.registered(from.conn, OpCode::JobComplete)?;
                self.on_job_finished(worker, m)?;
            }
            WorkerReport::ServiceReady { job, attempt } => {
                let worker = self.registered(from.conn, OpCode::ServiceState)?;
                self.to_owner(
                    job,
                    Input::ServiceReady {
                        job,
                        attempt,
                        worker,
                    },
                );
            }
        }
        Ok(())
    }

    /// The worker this connection registered as; a report before `Register` is refused.
    fn registered(&self, conn: ConnKey, opcode: OpCode) -> Result<WorkerId, ProtoError> {
        let worker = self.conns.borrow().get(conn).and_then(|c| c.worker);
        worker.ok_or(ProtoError::UnexpectedFrame {
            opcode,
            reason: "a worker must register first",
        })
    }

    fn on_job_finished(&self, worker: WorkerId, m: &ArchivedJobFinished) -> Result<(), ProtoError> {
        // The outcome goes into the core (maybe on another shard): the one copy out of the frame.
        let outcome: Outcome = decode::owned(OpCode::JobComplete, &m.outcome)?;
        let job: JobId = decode::native(&m.job);
        let attempt = m.attempt.to_native();
        let duration = Duration::from_micros(m.duration_us.to_native());
        let worker_addr = self.workers.borrow().get(&worker).map(|h| h.addr);
        let lines = (m.stdout_lines.to_native(), m.stderr_lines.to_native());
        // An attempt that printed nothing (every NOOP) needs no entry in the sink.
        if let (Some(addr), true) = (worker_addr, lines.0 + lines.1 > 0) {
            self.on_attempt_output_end(job, attempt, lines, addr);
        }
        self.to_owner(
            job,
            Input::JobFinished {
                job,
                attempt,
                worker,
                outcome,
                duration,
            },
        );
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

    fn register(&self, from: Origin<'_>, m: &ArchivedRegister) -> Result<(), ProtoError> {
        let opcode = OpCode::Register;
        if self.registered(from.conn, opcode).is_ok() {
            return Err(ProtoError::UnexpectedFrame {
                opcode,
                reason: "this connection already registered",
            });
        }
        check_skills(m)?;
        let allocated = self.shared.worker_ids.lock().map(|mut ids| ids.allocate());
        let Ok(Some(id)) = allocated else {
            from.outbox.reply(|out| {
                titan_proto::encode_error(out, ErrorCode::Unavailable, "the worker table is full")
            });
            return Ok(());
        };
        let info = worker_info(id, m);
        info!(worker = %id, port = info.port, capacity = info.capacity, skills = ?info.skills, shard = self.index, "worker registered");
        let addr = self.make_home(from.conn, id, info.port);
        let heartbeat_ms = (self.shared.config.heartbeat_interval.as_millis() as u32).max(1);
        from.outbox.reply(|out| {
            let _ = encode_frame(
                out,
                OpCode::Ack,
                &Registered {
                    worker: id,
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
            let job: JobId = decode::native(&attempt.job);
            let attempt = attempt.attempt.to_native();
            self.to_owner(
                job,
                Input::Adopt {
                    worker: id,
                    job,
                    attempt,
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

    /// Marks the connection as worker `id`'s and records its home here; returns the address of
    /// the worker's own port (the connection's IP, the advertised port).
    fn make_home(&self, conn: ConnKey, id: WorkerId, port: u16) -> SocketAddr {
        let peer_ip = {
            let mut conns = self.conns.borrow_mut();
            let entry = conns.get_mut(conn);
            let ip = entry.as_ref().and_then(|e| e.peer).map(|p| p.ip());
            if let Some(entry) = entry {
                entry.worker = Some(id);
            }
            ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
        };
        let addr = SocketAddr::new(peer_ip, port);
        let home = WorkerHome {
            shard: self.index,
            port,
            addr,
            conn: Some(conn),
        };
        self.workers.borrow_mut().insert(id, home);
        addr
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

/// Refuses a skill list the scheduler cannot take (too many, too long, bad characters).
fn check_skills(m: &ArchivedRegister) -> Result<(), ProtoError> {
    let bad = m.skills.len() > MAX_SKILLS
        || m.skills
            .iter()
            .any(|s| s.len() > MAX_SKILL_LEN || titan_core::ids::check_name(s.as_str()).is_err());
    if bad {
        let reason = format!(
            "at most {MAX_SKILLS} skills of 1 to {MAX_SKILL_LEN} characters from A-Z a-z 0-9 _ . -"
        );
        return Err(ProtoError::InvalidPayload {
            opcode: OpCode::Register,
            reason,
        });
    }
    Ok(())
}

/// The core's view of a registering worker (skills upper-cased, capacity at least 1).
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
