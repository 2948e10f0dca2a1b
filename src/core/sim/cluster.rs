//! The simulated cluster outside the master: workers that register, run attempts in virtual time,
//! report, crash (loudly or silently) and get replaced, and clients that submit, cancel and stop.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;

use super::world::{Event, Join, SimWorker, World, HEARTBEAT_EVERY};
use super::SimFailure;
use crate::core::{Input, JobId, Outcome, Target, WorkerId, WorkerInfo};

impl World {
    pub(super) fn bury_worker(&mut self, worker: WorkerId) {
        if let Some(w) = self.workers.get_mut(&worker) {
            w.alive = false;
            w.buried = true;
            w.running.clear();
        }
        self.ids.free(worker);
    }

    pub(super) fn join(&mut self, join: Join) -> Result<(), SimFailure> {
        let Some(id) = self.ids.allocate() else {
            return Ok(());
        };
        let home = id.slot() as u32 % self.cores.len() as u32;
        let ephemeral = join.parent.is_some();
        let w = SimWorker {
            alive: true,
            buried: false,
            home,
            capacity: join.capacity,
            skills: join.skills.clone(),
            ephemeral,
            running: BTreeMap::new(),
        };
        self.workers.insert(id, w);
        for shard in 0..self.cores.len() as u32 {
            let info = WorkerInfo {
                id,
                capacity: join.capacity,
                skills: join.skills.clone(),
                port: 8080 + id.slot() as u16,
                parent: join.parent,
                ephemeral,
                home: shard == home,
                spawn_ticket: join.ticket,
            };
            self.deliver(shard, Input::WorkerUp(info))?;
        }
        Ok(())
    }

    pub(super) fn on_event(&mut self, event: Event) -> Result<(), SimFailure> {
        match event {
            Event::Deliver { shard, input } => self.deliver(shard, input)?,
            Event::Submit { index } => self.on_submit(index)?,
            Event::Cancel { token, pick } => {
                if let Some(&(shard, dag, n)) = self.accepted.get(&token) {
                    let target = if pick % 10 == 0 {
                        Target::Dag(dag)
                    } else {
                        Target::Job(dag.job((pick % u64::from(n)) as u32))
                    };
                    let t = self.token();
                    self.deliver(shard, Input::Cancel { token: t, target })?;
                }
            }
            Event::Stop { shard, job } => {
                let t = self.token();
                self.deliver(shard, Input::Stop { token: t, job })?;
            }
            Event::Arrive {
                worker,
                shard,
                job,
                attempt,
                service,
                run_for,
            } => self.on_arrive(worker, shard, job, attempt, service, run_for)?,
            Event::Done {
                worker,
                job,
                attempt,
            } => {
                let fail = self.rng.gen_range(0..1000) < self.cfg.fail_permille;
                let outcome = if fail {
                    Outcome::Exited { code: 1 }
                } else {
                    Outcome::Exited { code: 0 }
                };
                self.report_end(worker, job, attempt, outcome);
            }
            Event::KillArrive {
                worker,
                job,
                attempt,
            } => self.report_end(worker, job, attempt, Outcome::Killed),
            Event::Crash { silent } => self.on_crash(silent)?,
            Event::Join(join) => self.join(join)?,
            Event::Heartbeats => {
                let beats: Vec<(WorkerId, u32)> = self
                    .workers
                    .iter()
                    .filter(|(_, w)| w.alive)
                    .map(|(&id, w)| (id, w.home))
                    .collect();
                for (worker, home) in beats {
                    self.deliver(home, Input::Heartbeat { worker })?;
                }
                self.schedule(HEARTBEAT_EVERY, Event::Heartbeats);
            }
        }
        Ok(())
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
        let shard = self.rng.gen_range(0..self.cores.len() as u32);
        self.tokens.insert(token, shard);
        if let Some(after) = planned.cancel_after {
            let pick = self.rng.gen();
            self.schedule(after, Event::Cancel { token, pick });
        }
        self.deliver(
            shard,
            Input::Submit {
                token,
                submission: planned.submission,
            },
        )
    }

    fn on_arrive(
        &mut self,
        worker: WorkerId,
        shard: u32,
        job: JobId,
        attempt: u32,
        service: bool,
        run_for: Duration,
    ) -> Result<(), SimFailure> {
        let Some(w) = self.workers.get_mut(&worker).filter(|w| w.alive) else {
            return Ok(());
        };
        w.running.insert((job, attempt), shard);
        let (running, capacity) = (w.running.len(), w.capacity);
        if running > capacity as usize {
            return Err(self.fail(format!(
                "{worker} runs {running} attempts with capacity {capacity}"
            )));
        }
        let lat = self.latency();
        self.schedule(
            lat,
            Event::Deliver {
                shard,
                input: Input::JobStarted {
                    job,
                    attempt,
                    worker,
                },
            },
        );
        if service {
            let ready = Input::ServiceReady {
                job,
                attempt,
                worker,
            };
            self.schedule(
                lat + Duration::from_millis(5),
                Event::Deliver {
                    shard,
                    input: ready,
                },
            );
        } else {
            self.schedule(
                run_for,
                Event::Done {
                    worker,
                    job,
                    attempt,
                },
            );
        }
        Ok(())
    }

    fn report_end(&mut self, worker: WorkerId, job: JobId, attempt: u32, outcome: Outcome) {
        let Some(w) = self.workers.get_mut(&worker).filter(|w| w.alive) else {
            return;
        };
        let Some(shard) = w.running.remove(&(job, attempt)) else {
            return;
        };
        let lat = self.latency();
        let input = Input::JobFinished {
            job,
            attempt,
            worker,
            outcome,
            duration: Duration::ZERO,
        };
        self.schedule(lat, Event::Deliver { shard, input });
    }

    fn on_crash(&mut self, silent: bool) -> Result<(), SimFailure> {
        let alive: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.alive)
            .map(|(&id, _)| id)
            .collect();
        if alive.len() < 2 {
            return Ok(());
        }
        let victim = alive[self.rng.gen_range(0..alive.len())];
        self.report.crashes += 1;
        let (skills, capacity, ephemeral) = {
            let w = &self.workers[&victim];
            (w.skills.clone(), w.capacity, w.ephemeral)
        };
        if silent {
            // The process hangs: no reports, no heartbeats; its home shard will notice.
            let w = self.workers.get_mut(&victim).expect("victim exists");
            w.alive = false;
            w.running.clear();
        } else {
            self.bury_worker(victim);
            for shard in 0..self.cores.len() as u32 {
                self.deliver(shard, Input::WorkerLost { worker: victim })?;
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
