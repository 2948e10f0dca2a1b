//! The simulated shell's routing: inputs into cores, and every core output to where it goes (the
//! WAL, clients, workers, other shards), checking invariants on the way.

use std::cmp::Reverse;
use std::time::Duration;

use rand::Rng;

use super::workload;
use super::world::{Event, Join, World};
use super::SimFailure;
use crate::core::{Ack, Input, JobId, Output};

impl World {
    /// Hands one input to a core and routes what comes out.
    pub(super) fn deliver(&mut self, shard: u32, input: Input) -> Result<(), SimFailure> {
        match &input {
            Input::Persisted { lsn } => self.check.on_persisted(shard as usize, *lsn),
            Input::Submit { token, .. }
            | Input::Cancel { token, .. }
            | Input::Stop { token, .. } => self.check.expect_request(*token),
            _ => {}
        }
        self.cores[shard as usize].handle(self.now, input);
        let routed = self.pump(shard);
        self.check.request_done();
        routed
    }

    pub(super) fn pump(&mut self, shard: u32) -> Result<(), SimFailure> {
        let s = shard as usize;
        let mut dispatched = Vec::new();
        while let Some(output) = self.cores[s].poll_output() {
            match output {
                Output::Journal { lsn, record } => {
                    self.check
                        .on_journal(s, lsn, &record)
                        .map_err(|e| self.fail(e))?;
                    if let crate::core::Record::ServiceReady { job, .. } = record {
                        let life = Duration::from_micros(self.rng.gen_range(50_000..2_000_000));
                        self.schedule(life, Event::Stop { shard, job });
                    }
                    let lag = Duration::from_micros(
                        self.rng
                            .gen_range(0..=self.cfg.max_persist_lag.as_micros() as u64),
                    );
                    self.schedule(
                        lag,
                        Event::Deliver {
                            shard,
                            input: Input::Persisted { lsn },
                        },
                    );
                }
                Output::Reply { token, reply } => {
                    self.check
                        .on_reply(s, token, reply.is_ok())
                        .map_err(|e| self.fail(e))?;
                    if let Ok(Ack::Submitted { dag, jobs }) = reply {
                        self.accepted.insert(token, (shard, dag, jobs));
                        self.report.jobs += u64::from(jobs);
                        if self.rng.gen_range(0..4) == 0 {
                            let job = dag.job(self.rng.gen_range(0..jobs));
                            let t = self.token();
                            self.schedule(
                                Duration::ZERO,
                                Event::Deliver {
                                    shard,
                                    input: Input::Watch { token: t, job },
                                },
                            );
                        }
                    }
                }
                Output::Notify { job, .. } => {
                    self.check.on_notify(s, job).map_err(|e| self.fail(e))?
                }
                Output::Dispatch {
                    worker,
                    job,
                    attempt,
                } => {
                    let spec = self.cores[s]
                        .spec(job)
                        .ok_or_else(|| self.fail(format!("no spec for {job}")))?;
                    let service = spec.is_service();
                    let kind = spec.kind.clone();
                    let run_for = workload::duration(&kind, &mut self.rng);
                    let lat = self.latency();
                    self.schedule(
                        lat,
                        Event::Arrive {
                            worker,
                            shard,
                            job,
                            attempt,
                            service,
                            run_for,
                        },
                    );
                    dispatched.push(job);
                }
                Output::Kill {
                    worker,
                    job,
                    attempt,
                    ..
                } => {
                    let lat = self.latency();
                    self.schedule(
                        lat,
                        Event::KillArrive {
                            worker,
                            job,
                            attempt,
                        },
                    );
                }
                Output::WorkerDead { worker, .. } => {
                    self.bury_worker(worker);
                    for other in (0..self.cores.len() as u32).filter(|&o| o != shard) {
                        self.schedule(
                            Duration::ZERO,
                            Event::Deliver {
                                shard: other,
                                input: Input::WorkerLost { worker },
                            },
                        );
                    }
                }
                Output::SpawnWorker { parent, ticket, .. } => {
                    if let Some(p) = self.workers.get(&parent).filter(|p| p.alive) {
                        let join = Join {
                            skills: p.skills.clone(),
                            capacity: p.capacity,
                            parent: Some(parent),
                            ticket: Some(ticket),
                        };
                        self.report.spawned += 1;
                        self.schedule(Duration::from_millis(100), Event::Join(join));
                    }
                }
                Output::RetireWorker { worker, .. } => {
                    self.report.retired += 1;
                    self.bury_worker(worker);
                    for o in 0..self.cores.len() as u32 {
                        self.schedule(
                            Duration::ZERO,
                            Event::Deliver {
                                shard: o,
                                input: Input::WorkerLost { worker },
                            },
                        );
                    }
                }
                Output::Wake { shards } => {
                    for o in (0..self.cores.len() as u32).filter(|o| shards & (1 << o) != 0) {
                        self.schedule(
                            Duration::ZERO,
                            Event::Deliver {
                                shard: o,
                                input: Input::Tick,
                            },
                        );
                    }
                }
            }
        }
        if self.cfg.check_priority {
            self.check_priority(s, &dispatched)?;
        }
        Ok(())
    }

    /// Every job dispatched in this batch must rank at least as high as the best job left queued.
    fn check_priority(&self, s: usize, dispatched: &[JobId]) -> Result<(), SimFailure> {
        let core = &self.cores[s];
        for &job in dispatched {
            let Some(v) = core.job(job) else { continue };
            let mine = (v.spec.priority, Reverse(job));
            if let Some(&best) = core.queued(v.skill, 1).first() {
                let b = core.job(best).map(|b| (b.spec.priority, Reverse(best)));
                if b.is_some_and(|b| b > mine) {
                    return Err(self.fail(format!(
                        "{job} {mine:?} dispatched while {best} {b:?} waited"
                    )));
                }
            }
        }
        Ok(())
    }
}
