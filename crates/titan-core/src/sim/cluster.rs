//! The simulated cluster outside the master: workers that register, run attempts in virtual time,
//! report, crash (loudly or silently) and get replaced, and clients that submit, cancel and stop.
//! While the master is down, client requests wait and workers keep running and keep their reports.

use std::collections::BTreeSet;
use std::time::Duration;

use rand::Rng;

use super::world::{Event, Join, SimWorker, World, HEARTBEAT_EVERY};
use super::SimFailure;
use crate::router::Delivery;
use crate::{Input, JobId, Outcome, Target, WorkerId, WorkerInfo};

impl World {
    /// The master forgets `worker` for good (lost, dead or retired); its slot may be reused.
    pub(super) fn bury_worker(&mut self, worker: WorkerId) {
        let Some(key) = self.by_id.remove(&worker) else {
            return;
        };
        if let Some(w) = self.workers.get_mut(&key) {
            w.alive = false;
            w.buried = true;
            w.registered = false;
            w.running.clear();
            w.unsent.clear();
        }
        self.adoptable.retain(|_, k| *k != key);
        self.ids.free(worker);
    }

    pub(super) fn join(&mut self, join: Join) -> Result<(), SimFailure> {
        let key = self.next_worker;
        self.next_worker += 1;
        let w = SimWorker {
            id: WorkerId(0),
            registered: false,
            alive: true,
            buried: false,
            capacity: join.capacity,
            skills: join.skills,
            parent: join.parent,
            running: BTreeSet::new(),
            listed: BTreeSet::new(),
            unsent: Vec::new(),
            reported: Vec::new(),
            allowance: 0,
        };
        self.workers.insert(key, w);
        self.register(key, join.ticket, &[])
    }

    /// Registers worker `key` with the current master under a fresh id, listing `attempts`: the
    /// router sends each shard its adoptions and the worker's `WorkerUp`, in the order the hold
    /// after a restart relies on (see `core/adopt.rs`).
    pub(super) fn register(
        &mut self,
        key: u64,
        ticket: Option<u64>,
        attempts: &[(JobId, u32)],
    ) -> Result<(), SimFailure> {
        let Some(id) = self.ids.allocate() else {
            return Ok(());
        };
        self.by_id.insert(id, key);
        let parent = self.workers[&key]
            .parent
            .and_then(|p| self.workers.get(&p))
            .filter(|p| p.registered)
            .map(|p| p.id);
        let w = self.workers.get_mut(&key).expect("joining worker exists");
        w.id = id;
        w.registered = true;
        let info = WorkerInfo {
            id,
            capacity: w.capacity,
            skills: w.skills.clone(),
            port: 8080 + id.slot() as u16,
            parent,
            ephemeral: parent.is_some(),
            home: true,
            spawn_ticket: ticket,
            instance: key,
        };
        let home = self.home_of(id);
        for Delivery { shard, input } in self.router(home).register(&info, attempts.iter().copied())
        {
            self.deliver(shard, input)?;
        }
        Ok(())
    }

    /// The shard whose connection a worker registered on (the simulated workers spread evenly).
    pub(super) fn home_of(&self, worker: WorkerId) -> u32 {
        worker.slot() as u32 % self.cores.len() as u32
    }

    pub(super) fn on_event(&mut self, event: Event) -> Result<(), SimFailure> {
        if self.down && Self::waits_for_master(&event) {
            // Rescheduled (and counted as pending again) when the master is back.
            self.deferred.push(event);
            return Ok(());
        }
        match event {
            Event::Deliver { shard, input } => self.deliver(shard, input)?,
            Event::Submit { index } => self.on_submit(index)?,
            Event::Cancel { token, pick } => {
                if let Some(&(dag, n)) = self.accepted.get(&token) {
                    let target = if pick % 10 == 0 {
                        Target::Dag(dag)
                    } else {
                        Target::Job(dag.job((pick % u64::from(n)) as u32))
                    };
                    let t = self.token();
                    // The client's connection may be on any shard; the router finds the owner.
                    self.arrive(0, Input::Cancel { token: t, target })?;
                }
            }
            Event::Stop { job } => {
                let t = self.token();
                self.stops.insert(t, job);
                self.arrive(0, Input::Stop { token: t, job })?;
            }
            Event::Arrive {
                worker,
                job,
                attempt,
                service,
                run_for,
            } => self.on_arrive(worker, job, attempt, service, run_for)?,
            Event::Done {
                worker,
                job,
                attempt,
                ran,
            } => {
                let fail = self.rng.gen_range(0..1000) < self.cfg.fail_permille;
                let code = i32::from(fail);
                self.report_end(worker, job, attempt, Outcome::Exited { code }, ran);
            }
            Event::KillArrive {
                worker,
                job,
                attempt,
            } => self.report_end(worker, job, attempt, Outcome::Killed, Duration::ZERO),
            Event::Crash { silent } => self.on_crash(silent)?,
            Event::Join(join) => self.join(join)?,
            Event::Heartbeats => {
                if !self.down {
                    let beats: Vec<WorkerId> = self
                        .workers
                        .values()
                        .filter(|w| w.alive && w.registered)
                        .map(|w| w.id)
                        .collect();
                    for worker in beats {
                        self.arrive(self.home_of(worker), Input::Heartbeat { worker })?;
                    }
                }
                self.schedule(HEARTBEAT_EVERY, Event::Heartbeats);
            }
            Event::MasterCrash => self.on_master_crash(),
            Event::MasterUp => self.on_master_up()?,
            Event::Rejoin { worker } => self.on_rejoin(worker)?,
            Event::Snapshot => self.on_snapshot_tick()?,
        }
        Ok(())
    }

    /// Client requests and worker arrivals wait while the master is down.
    fn waits_for_master(event: &Event) -> bool {
        matches!(
            event,
            Event::Submit { .. }
                | Event::Cancel { .. }
                | Event::Stop { .. }
                | Event::Join(_)
                | Event::MasterCrash
                | Event::Rejoin { .. }
        )
    }

    pub(super) fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn on_submit(&mut self, index: usize) -> Result<(), SimFailure> {
        let Some(planned) = self.plan[index].take() else {
            return Ok(());
        };
        self.submissions_left -= 1;
        let token = self.token();
        // The client may reach any shard's connection; the submission lands on that shard.
        let shard = self.rng.gen_range(0..self.cores.len() as u32);
        if let Some(after) = planned.cancel_after {
            let pick = self.rng.gen();
            self.schedule(after, Event::Cancel { token, pick });
        }
        let submission = planned.submission;
        self.arrive(shard, Input::Submit { token, submission })
    }

    fn on_arrive(
        &mut self,
        key: u64,
        job: JobId,
        attempt: u32,
        service: bool,
        run_for: Duration,
    ) -> Result<(), SimFailure> {
        let Some(w) = self.workers.get_mut(&key).filter(|w| w.alive) else {
            return Ok(());
        };
        if w.running.contains(&(job, attempt)) || w.listed.contains(&(job, attempt)) {
            // The master lost the record of an attempt this worker listed when it re-registered
            // and dispatched the same number before reading the list: the worker's own run (and
            // its report) stands for it (see `Input::Adopt`).
            return Ok(());
        }
        w.running.insert((job, attempt));
        // The simulated worker runs prefetched attempts at once instead of queueing them; what
        // is checked is that the master places no more than capacity plus prefetch.
        let (running, capacity, allowance) = (w.running.len(), w.capacity, w.allowance);
        let prefetch = super::world::SIM_PREFETCH as usize;
        if running > capacity as usize + prefetch + allowance {
            return Err(self.fail(format!(
                "worker {key} holds {running} attempts with capacity {capacity} \
                 (+{prefetch} prefetched, +{allowance} adopted)"
            )));
        }
        let lat = self.latency();
        self.send(
            key,
            lat,
            Input::JobStarted {
                job,
                attempt,
                worker: WorkerId(0),
            },
        );
        if service {
            let ready = Input::ServiceReady {
                job,
                attempt,
                worker: WorkerId(0),
            };
            self.send(key, lat + Duration::from_millis(5), ready);
        } else {
            self.schedule(
                run_for,
                Event::Done {
                    worker: key,
                    job,
                    attempt,
                    ran: run_for,
                },
            );
        }
        Ok(())
    }

    /// Sends a worker report (its `worker` field is filled in here), or keeps it while the worker
    /// cannot reach the master.
    pub(super) fn send(&mut self, key: u64, after: Duration, mut input: Input) {
        let Some(w) = self.workers.get_mut(&key).filter(|w| w.alive) else {
            return;
        };
        match &mut input {
            Input::JobStarted { worker, .. }
            | Input::JobFinished { worker, .. }
            | Input::ServiceReady { worker, .. } => *worker = w.id,
            _ => return,
        }
        if matches!(input, Input::JobFinished { .. }) {
            w.reported.push(input.clone());
        }
        if self.down || !w.registered {
            w.unsent.push(input);
            return;
        }
        // The report reaches the worker's home shard, whose router sends it on.
        let id = w.id;
        let home = self.home_of(id);
        let Delivery { shard, input } = self.router(home).input(input);
        self.schedule(after, Event::Deliver { shard, input });
    }

    fn report_end(&mut self, key: u64, job: JobId, attempt: u32, outcome: Outcome, ran: Duration) {
        let Some(w) = self.workers.get_mut(&key).filter(|w| w.alive) else {
            return;
        };
        if !w.running.remove(&(job, attempt)) {
            return;
        }
        let lat = self.latency();
        let input = Input::JobFinished {
            job,
            attempt,
            worker: WorkerId(0),
            outcome,
            duration: ran,
        };
        self.send(key, lat, input);
    }

    fn on_crash(&mut self, silent: bool) -> Result<(), SimFailure> {
        let alive: Vec<u64> = self
            .workers
            .iter()
            .filter(|(_, w)| w.alive)
            .map(|(&k, _)| k)
            .collect();
        if alive.len() < 2 {
            return Ok(());
        }
        let victim = alive[self.rng.gen_range(0..alive.len())];
        self.report.crashes += 1;
        self.adoptable.retain(|_, k| *k != victim);
        let w = self.workers.get_mut(&victim).expect("victim exists");
        let (skills, capacity, ephemeral) = (w.skills.clone(), w.capacity, w.parent.is_some());
        let (id, registered) = (w.id, w.registered);
        if silent || self.down || !registered {
            // The process hangs or dies unseen: no reports, no heartbeats; its home shard (or the
            // grace after a master restart) will notice.
            w.alive = false;
            w.running.clear();
            w.unsent.clear();
            if !registered {
                w.buried = true;
            }
        } else {
            // Its connection closed: every shard loses it at once.
            self.bury_worker(id);
            for Delivery { shard, input } in self.router(self.home_of(id)).worker_lost(id) {
                self.deliver(shard, input)?;
            }
        }
        if !ephemeral {
            self.schedule(
                Duration::from_secs(1),
                Event::Join(Join {
                    skills,
                    capacity,
                    parent: None,
                    ticket: None,
                }),
            );
        }
        Ok(())
    }
}
