//! Client requests: submit (validation, DagId allocation, storing jobs and the waiting room), cancel
//! (a job with its unreleased descendants, or a whole DAG), stop (services) and watch, whose parked
//! tokens [`Watchers`] holds until their job ends. Every accepted mutation is journaled first and
//! acknowledged through the persistence gate; a refused request changes nothing and journals
//! nothing.

use std::collections::BTreeMap;

use super::dag;
use super::grammar::{self, GrammarError};
use super::ids::{DagId, JobId, Time};
use super::input::Target;
use super::job_store::{flags, Job};
use super::limits::MAX_SKILLS;
use super::machine::Core;
use super::model::{JobState, Submission};
use super::output::{Ack, KillReason, Output, RequestError};
use super::record::Record;
use super::skills::SkillId;
use super::waiting_room::DagState;

type Reply = Result<Ack, RequestError>;

/// Parked `Watch` requests: the tokens waiting for each job to end.
#[derive(Debug, Default)]
pub struct Watchers {
    by_job: BTreeMap<JobId, Vec<u64>>,
    count: usize,
}

impl Watchers {
    /// Parked tokens over all jobs.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Parks `token` until `job` ends.
    pub fn add(&mut self, job: JobId, token: u64) {
        self.by_job.entry(job).or_default().push(token);
        self.count += 1;
    }

    /// `job` ended: the tokens waiting for it.
    pub fn take(&mut self, job: JobId) -> Option<Vec<u64>> {
        let tokens = self.by_job.remove(&job)?;
        self.count -= tokens.len();
        Some(tokens)
    }
}

impl Core {
    pub(super) fn reply(&mut self, token: u64, reply: Reply) {
        self.ack(Output::Reply { token, reply });
    }

    fn owned(&self, dag: DagId) -> Result<(), RequestError> {
        if self.shard.owns(dag) {
            Ok(())
        } else {
            Err(RequestError::WrongShard {
                dag,
                owner: dag.owner(self.shard.count),
            })
        }
    }

    fn live_slot(&self, job: JobId) -> Result<u32, RequestError> {
        self.owned(job.dag())?;
        self.jobs
            .slot_of(job)
            .ok_or(RequestError::UnknownJob { job })
    }

    // ---- submit --------------------------------------------------------------------------------

    pub(super) fn on_submit(&mut self, token: u64, submission: Submission) {
        let one_off = matches!(submission, Submission::OneOff(_));
        let reply = self
            .submit(submission, None)
            .map(|(dag, jobs)| Ack::Submitted { dag, jobs, one_off });
        self.reply(token, reply);
    }

    /// Validates and stores a submission; `replay_id` replays a journaled one under its old id.
    pub(super) fn submit(
        &mut self,
        submission: Submission,
        replay_id: Option<DagId>,
    ) -> Result<(DagId, u32), RequestError> {
        let n = submission.len();
        let live = self.jobs.live();
        if replay_id.is_none() && live + n > self.cfg.max_live_jobs {
            return Err(RequestError::TooManyLiveJobs {
                live,
                adding: n,
                max: self.cfg.max_live_jobs,
            });
        }
        let graph = match &submission {
            Submission::OneOff(spec) => {
                grammar::check_spec(spec, false)
                    .map_err(|(field, problem)| field_error(1, None, field, problem))?;
                None
            }
            Submission::Dag(jobs) => {
                for (i, j) in jobs.iter().enumerate() {
                    grammar::check_spec(&j.spec, true).map_err(|(field, problem)| {
                        field_error(i + 1, Some(&j.name), field, problem)
                    })?;
                }
                Some(dag::validate(jobs).map_err(GrammarError::Dag)?)
            }
        };
        // One-offs (most submissions) intern without allocating a list.
        let (one, many);
        let skills: &[SkillId] = match &submission {
            Submission::OneOff(spec) => {
                one = [self.intern_skill(spec.skill())?];
                &one
            }
            Submission::Dag(jobs) => {
                many = jobs
                    .iter()
                    .map(|j| self.intern_skill(j.spec.skill()))
                    .collect::<Result<Vec<_>, _>>()?;
                &many
            }
        };
        let dag = match replay_id {
            Some(d) => {
                self.dag_ids.note(d);
                d
            }
            None => {
                let d = self.dag_ids.allocate();
                self.journal(Record::Submitted {
                    dag: d,
                    at: self.now,
                    submission: submission.clone(),
                });
                d
            }
        };
        self.store_submission(dag, submission, graph, skills);
        // n <= MAX_DAG_JOBS, which fits a u32.
        Ok((dag, n as u32))
    }

    fn intern_skill(&mut self, name: &str) -> Result<SkillId, RequestError> {
        let max = MAX_SKILLS;
        self.skills
            .intern(name)
            .ok_or(RequestError::TooManySkills { max })
    }

    fn store_submission(
        &mut self,
        dag: DagId,
        submission: Submission,
        graph: Option<dag::DagGraph>,
        skills: &[SkillId],
    ) {
        let now = self.now;
        let new_job = |index: u32, spec, skill, one_off: bool| Job {
            id: dag.job(index),
            spec,
            submitted: now,
            since: now,
            started_at: Time(0),
            worker: None,
            attempt: 0,
            skill,
            state: JobState::Blocked,
            failures: 0,
            crashes: 0,
            flags: if one_off { flags::ONE_OFF } else { 0 },
        };
        match (submission, graph) {
            (Submission::OneOff(spec), _) => {
                let slot = self.jobs.insert(new_job(0, spec, skills[0], true));
                self.enter_runnable(slot);
            }
            (Submission::Dag(jobs), Some(graph)) => {
                let n = jobs.len();
                let mut slots = Vec::with_capacity(n);
                for (i, j) in jobs.into_iter().enumerate() {
                    self.room
                        .index_name(j.name, dag.job(i as u32), now, &self.jobs);
                    slots.push(
                        self.jobs
                            .insert(new_job(i as u32, j.spec, skills[i], false)),
                    );
                }
                let remaining: Box<[u32]> = (0..n).map(|i| graph.parents(i).len() as u32).collect();
                let roots: Vec<u32> = (0..n)
                    .filter(|&i| remaining[i] == 0)
                    .map(|i| slots[i])
                    .collect();
                let state = DagState {
                    graph,
                    remaining,
                    slots: slots.into(),
                    live: n as u32,
                    submitted: now,
                };
                self.room.insert(dag, state);
                for slot in roots {
                    self.enter_runnable(slot);
                }
            }
            (Submission::Dag(_), None) => {
                unreachable!("a DAG submission always has a validated graph")
            }
        }
    }

    // ---- cancel, stop, watch -------------------------------------------------------------------

    pub(super) fn on_cancel(&mut self, token: u64, target: Target) {
        let reply = self
            .cancel(target, false)
            .map(|jobs| Ack::Cancelled { jobs });
        self.reply(token, reply);
    }

    /// Cancels a job or DAG; returns how many jobs became CANCELLED.
    pub(super) fn cancel(&mut self, target: Target, replay: bool) -> Result<u32, RequestError> {
        let slots: Vec<u32> = match target {
            Target::Job(job) => {
                let slot = self.live_slot(job)?;
                let state = self.jobs.at(slot).state;
                if state.is_terminal() {
                    return Err(RequestError::AlreadyFinished { job, state });
                }
                vec![slot]
            }
            Target::Dag(dag) => {
                self.owned(dag)?;
                let slots = self.room.submission_slots(dag, &self.jobs);
                if slots.is_empty() {
                    return Err(RequestError::UnknownDag { dag });
                }
                if slots.iter().all(|&s| self.jobs.at(s).state.is_terminal()) {
                    return Err(RequestError::DagFinished { dag });
                }
                slots
            }
        };
        if !replay {
            self.journal(Record::Cancelled {
                target,
                at: self.now,
            });
        }
        let mut n = 0;
        for slot in slots {
            if !self.jobs.at(slot).state.is_terminal() {
                n += self.cancel_job(slot, KillReason::Cancelled);
            }
        }
        Ok(n)
    }

    pub(super) fn on_stop(&mut self, token: u64, job: JobId) {
        let reply = self.stop(job, false).map(|()| Ack::Stopped { job });
        self.reply(token, reply);
    }

    pub(super) fn stop(&mut self, job: JobId, replay: bool) -> Result<(), RequestError> {
        let slot = self.live_slot(job)?;
        let j = self.jobs.at(slot);
        if !j.spec.is_service() {
            return Err(RequestError::NotAService { job });
        }
        if j.state.is_terminal() {
            return Err(RequestError::AlreadyFinished {
                job,
                state: j.state,
            });
        }
        if !replay {
            self.journal(Record::Stopped { job, at: self.now });
        }
        self.cancel_job(slot, KillReason::Stopped);
        Ok(())
    }

    /// Moves a live job to CANCELLED (killing a running attempt) with its unreleased descendants.
    pub(super) fn cancel_job(&mut self, slot: u32, reason: KillReason) -> u32 {
        let job = self.jobs.at(slot);
        match job.state {
            JobState::Running => self.kill_attempt(slot, reason),
            // Replay keeps QUEUED jobs out of the queues until recovery ends.
            JobState::Queued if !self.replaying() => self.placement.forget(job.skill),
            _ => {}
        }
        self.set_state(slot, JobState::Cancelled);
        self.finish_job(slot);
        1 + self.propagate(slot, JobState::Cancelled)
    }

    /// Asks the worker to kill the live attempt; its reservation stays until the final report.
    pub(super) fn kill_attempt(&mut self, slot: u32, reason: KillReason) {
        let job = self.jobs.at_mut(slot);
        let Some(worker) = job.worker.take() else {
            return;
        };
        let (id, attempt) = (job.id, job.attempt);
        // Through the same gate as the dispatch it follows, so a worker never sees a kill for an
        // attempt before the attempt itself.
        self.ack(Output::Kill {
            worker,
            job: id,
            attempt,
            reason,
        });
    }

    pub(super) fn on_watch(&mut self, token: u64, job: JobId) {
        let slot = match self.live_slot(job) {
            Ok(s) => s,
            Err(e) => return self.reply(token, Err(e)),
        };
        let state = self.jobs.at(slot).state;
        if state.is_terminal() {
            return self.ack(Output::Notify { token, job, state });
        }
        if self.watchers.len() >= self.cfg.max_watchers {
            return self.reply(
                token,
                Err(RequestError::TooManyWatchers {
                    max: self.cfg.max_watchers,
                }),
            );
        }
        self.watchers.add(job, token);
    }
}

fn field_error(
    line: usize,
    id: Option<&str>,
    field: grammar::Field,
    problem: grammar::FieldProblem,
) -> RequestError {
    RequestError::Rejected(GrammarError::Field {
        line,
        id: id.map(str::to_string),
        field,
        problem,
    })
}
