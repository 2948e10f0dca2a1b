//! Restoring a core from [`Snapshot`]s. [`Core::restore`] builds a core in recovery from one
//! snapshot; [`Core::absorb`] adds another one's submissions to a core that is still recovering.
//!
//! After a change of the shard count the master gives every new core every old shard's snapshot:
//! `absorb` keeps the submissions this core owns under the new count (`dag % count`), and takes
//! from every snapshot the bound on the DagIds its shard ever handed out, so a new DagId never
//! repeats an old one — recovered or already pruned. Totals carry over only from a snapshot of the
//! same shard layout (they are per shard).
//!
//! A snapshot is checked completely before anything is applied (TigerBeetle's "assert after
//! reading"): graph offsets and edges, specs, flags, states against dependency counts and timers,
//! the name index and the history. A bad snapshot is a typed [`RestoreError`] and leaves the core
//! as it was, apart from skill names it may have interned.

use std::collections::BTreeSet;

use super::dag::{DagGraph, GraphProblem};
use super::grammar::{self, Field, FieldProblem};
use super::history::Finished;
use super::ids::{DagId, JobId, ShardInfo, Time};
use super::job_store::{flags, Job};
use super::limits::{MAX_DAG_JOBS, MAX_SHARDS, MAX_SKILLS};
use super::load::LoadTable;
use super::machine::{Core, Phase};
use super::model::JobState;
use super::skills::SkillId;
use super::snapshot::{Snapshot, SubmissionImage, SNAPSHOT_FORMAT};
use super::timers::{TimerEntry, TimerKind};
use super::waiting_room::DagState;
use super::CoreConfig;

/// A snapshot that cannot be restored. Nothing is retryable: the snapshot itself is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The bytes are not a valid snapshot (from [`Snapshot::decode`]).
    #[error(transparent)]
    Decode(#[from] super::snapshot::SnapshotDecodeError),
    /// Written by a build with another format.
    #[error("snapshot format {found}; this build reads {expected}")]
    Format {
        /// In the snapshot.
        found: u32,
        /// [`SNAPSHOT_FORMAT`].
        expected: u32,
    },
    /// The snapshot names an impossible shard.
    #[error("snapshot of shard {index} of {count}")]
    BadShard {
        /// Its shard index.
        index: u32,
        /// Its shard count.
        count: u32,
    },
    /// More skills than the interner holds.
    #[error("more than {max} distinct skills")]
    TooManySkills {
        /// The limit.
        max: usize,
    },
    /// A DagId too large for job ids.
    #[error("{dag} is out of range")]
    BadDagId {
        /// The DAG.
        dag: DagId,
    },
    /// A submission appears twice, or is already in the core.
    #[error("{dag} is restored twice")]
    DuplicateDag {
        /// The DAG.
        dag: DagId,
    },
    /// A submission's jobs do not match its shape (a one-off with a graph, names and jobs apart).
    #[error("{dag} holds {jobs} jobs that do not match its shape")]
    BadShape {
        /// The DAG.
        dag: DagId,
        /// Jobs stored.
        jobs: usize,
    },
    /// A DAG's graph is malformed.
    #[error("{dag}: {problem}")]
    BadGraph {
        /// The DAG.
        dag: DagId,
        /// What is wrong.
        problem: GraphProblem,
    },
    /// A spec that would be refused at submit time.
    #[error("job {job}: field {field:?}: {problem}")]
    BadSpec {
        /// The job.
        job: JobId,
        /// The field.
        field: Field,
        /// What is wrong.
        problem: FieldProblem,
    },
    /// A job whose state contradicts the rest of the snapshot.
    #[error("job {job} is {state}, but {reason}")]
    Inconsistent {
        /// The job.
        job: JobId,
        /// Its state.
        state: JobState,
        /// What contradicts it.
        reason: &'static str,
    },
    /// The name index names a job that is not a restored DAG job.
    #[error("the name index points at {job}, which is not a restored DAG job")]
    BadName {
        /// The job.
        job: JobId,
    },
    /// The history lists a submission that is missing or not finished, or misses a finished one.
    #[error("the history and {dag} disagree")]
    BadHistory {
        /// The DAG.
        dag: DagId,
    },
    /// Recovery already ended; snapshots can only be absorbed before the first live input.
    #[error("recovery already ended")]
    AfterRecovery,
}

/// What [`Core::absorb`] took from a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Absorbed {
    /// Submissions this core owns, restored.
    pub submissions: usize,
    /// Their jobs.
    pub jobs: usize,
    /// Submissions left to their owners under the current shard count.
    pub skipped: usize,
}

const KNOWN_FLAGS: u8 = flags::RELEASED | flags::READY | flags::STARTED;

/// A checked submission, ready to apply.
struct Planned {
    image: SubmissionImage,
    graph: Option<DagGraph>,
    skills: Vec<SkillId>,
    remaining: Vec<u32>,
}

impl Core {
    /// A core in recovery, rebuilt from `snapshot`: replay the records after it, then call
    /// `finish_recovery`. LSNs this core emits start at `config.first_lsn` (the master's choice);
    /// DagIds continue past every id the snapshot's shard handed out.
    pub fn restore(
        config: CoreConfig,
        shard: ShardInfo,
        load: std::sync::Arc<LoadTable>,
        seed: u64,
        snapshot: Snapshot,
    ) -> Result<Core, RestoreError> {
        let mut core = Core::new(config, shard, load, seed);
        core.absorb(snapshot)?;
        Ok(core)
    }

    /// Adds the submissions of `snapshot` that this core owns (all of them when the shard layout
    /// did not change). Only before recovery ends; checks everything before changing anything.
    pub fn absorb(&mut self, snapshot: Snapshot) -> Result<Absorbed, RestoreError> {
        if self.phase == Phase::Live {
            return Err(RestoreError::AfterRecovery);
        }
        self.check_header(&snapshot)?;
        for name in &snapshot.skills {
            self.skills
                .intern(name)
                .ok_or(RestoreError::TooManySkills { max: MAX_SKILLS })?;
        }
        let Snapshot {
            shard_index,
            shard_count,
            next_dag_k,
            now,
            submissions,
            history,
            names,
            dlq,
            totals,
            workers,
            ..
        } = snapshot;
        let total = submissions.len();
        let plan = self.plan(submissions)?;
        let history = self.check_history(&plan, history)?;
        let names = self.check_names(&plan, names)?;
        let report = Absorbed {
            submissions: plan.len(),
            jobs: plan.iter().map(|p| p.image.jobs.len()).sum(),
            skipped: total - plan.len(),
        };
        for p in plan {
            self.apply(p);
        }
        let room = &self.room;
        let jobs_of = |dag| room.get(dag).map_or(1, |d| d.slots.len());
        self.history.restore(history, jobs_of);
        for (name, job, submitted) in names {
            self.room.index_name(name, job, submitted, &self.jobs);
        }
        for letter in dlq.into_iter().filter(|l| self.shard.owns(l.job.dag())) {
            self.history.push_dead_letter(letter, self.cfg.dlq_limit);
        }
        if shard_index == self.shard.index && shard_count == self.shard.count {
            self.history.totals_mut().add(&totals);
        }
        // Any old shard may have sent these workers attempts that this core now owns.
        self.adoption.extend_known(workers);
        self.dag_ids.pass_old_shard(next_dag_k, shard_count);
        self.now = self.now.max(now);
        self.replay_until(now);
        Ok(report)
    }

    fn check_header(&self, s: &Snapshot) -> Result<(), RestoreError> {
        if s.format != SNAPSHOT_FORMAT {
            return Err(RestoreError::Format {
                found: s.format,
                expected: SNAPSHOT_FORMAT,
            });
        }
        if s.shard_count == 0 || s.shard_count > MAX_SHARDS || s.shard_index >= s.shard_count {
            return Err(RestoreError::BadShard {
                index: s.shard_index,
                count: s.shard_count,
            });
        }
        Ok(())
    }

    /// Checks every owned submission; returns them with their graphs and dependency counts.
    fn plan(&mut self, submissions: Vec<SubmissionImage>) -> Result<Vec<Planned>, RestoreError> {
        let mut plan: Vec<Planned> = Vec::new();
        let mut last: Option<DagId> = None;
        for image in submissions {
            let dag = image.dag;
            if dag.0 > DagId::MAX {
                return Err(RestoreError::BadDagId { dag });
            }
            if last.is_some_and(|l| l >= dag)
                || self.room.holds(dag)
                || self.jobs.slot_of(dag.job(0)).is_some()
            {
                return Err(RestoreError::DuplicateDag { dag });
            }
            last = Some(dag);
            if !self.shard.owns(dag) {
                continue;
            }
            plan.push(self.plan_submission(image)?);
        }
        Ok(plan)
    }

    fn plan_submission(&mut self, image: SubmissionImage) -> Result<Planned, RestoreError> {
        let dag = image.dag;
        let n = image.jobs.len();
        let shape_ok = match &image.graph {
            None => n == 1,
            Some(g) => n <= MAX_DAG_JOBS && g.names.len() == n,
        };
        if !shape_ok {
            return Err(RestoreError::BadShape { dag, jobs: n });
        }
        let graph = match &image.graph {
            None => None,
            Some(g) => Some(
                DagGraph::from_parts(
                    g.names.clone().into(),
                    g.parent_start.clone().into(),
                    g.parents.clone().into(),
                )
                .map_err(|problem| RestoreError::BadGraph { dag, problem })?,
            ),
        };
        let remaining: Vec<u32> = match &graph {
            None => vec![0],
            Some(g) => (0..n)
                .map(|i| {
                    let unreleased = g
                        .parents(i)
                        .iter()
                        .filter(|&&p| image.jobs[p as usize].flags & flags::RELEASED == 0);
                    unreleased.count() as u32
                })
                .collect(),
        };
        let mut skills = Vec::with_capacity(n);
        for (i, j) in image.jobs.iter().enumerate() {
            let job = dag.job(i as u32);
            grammar::check_spec(&j.spec, graph.is_some()).map_err(|(field, problem)| {
                RestoreError::BadSpec {
                    job,
                    field,
                    problem,
                }
            })?;
            check_job_state(job, j, remaining[i])?;
            let skill = self
                .skills
                .intern(j.spec.skill())
                .ok_or(RestoreError::TooManySkills { max: MAX_SKILLS })?;
            skills.push(skill);
        }
        Ok(Planned {
            image,
            graph,
            skills,
            remaining,
        })
    }

    fn check_history(
        &self,
        plan: &[Planned],
        history: Vec<super::snapshot::FinishedImage>,
    ) -> Result<Vec<Finished>, RestoreError> {
        let mut finished: BTreeSet<DagId> = plan
            .iter()
            .filter(|p| p.image.jobs.iter().all(|j| j.state.is_terminal()))
            .map(|p| p.image.dag)
            .collect();
        let mut out = Vec::new();
        for f in history.into_iter().filter(|f| self.shard.owns(f.dag)) {
            if !finished.remove(&f.dag) {
                return Err(RestoreError::BadHistory { dag: f.dag });
            }
            out.push(Finished {
                at: f.at,
                dag: f.dag,
            });
        }
        match finished.first() {
            Some(&dag) => Err(RestoreError::BadHistory { dag }),
            None => Ok(out),
        }
    }

    fn check_names(
        &self,
        plan: &[Planned],
        names: Vec<JobId>,
    ) -> Result<Vec<(Box<str>, JobId, Time)>, RestoreError> {
        let mut out = Vec::with_capacity(names.len());
        for job in names.into_iter().filter(|j| self.shard.owns(j.dag())) {
            let found = plan
                .binary_search_by_key(&job.dag(), |p| p.image.dag)
                .ok()
                .map(|i| &plan[i]);
            let name = found.and_then(|p| {
                let g = p.graph.as_ref()?;
                let name = g.names.get(job.index() as usize)?;
                Some((name.clone(), p.image.submitted))
            });
            let Some((name, submitted)) = name else {
                return Err(RestoreError::BadName { job });
            };
            out.push((name, job, submitted));
        }
        Ok(out)
    }

    /// Stores one checked submission: jobs, queues, timers, waiting room.
    fn apply(&mut self, p: Planned) {
        let Planned {
            image,
            graph,
            skills,
            remaining,
        } = p;
        let (dag, submitted, one_off) = (image.dag, image.submitted, graph.is_none());
        let mut slots = Vec::with_capacity(image.jobs.len());
        let mut live = 0u32;
        for (i, (j, skill)) in image.jobs.into_iter().zip(skills).enumerate() {
            let id = dag.job(i as u32);
            live += u32::from(!j.state.is_terminal());
            if let Some(e) = j.error {
                self.jobs.set_error(id, e);
            }
            let extra = if one_off { flags::ONE_OFF } else { 0 };
            let slot = self.jobs.insert(Job {
                id,
                spec: j.spec,
                submitted,
                since: j.since,
                started_at: j.started_at,
                worker: None,
                attempt: j.attempt,
                skill,
                state: j.state,
                failures: j.failures,
                crashes: j.crashes,
                flags: j.flags | extra,
            });
            self.wake_up(slot, j.wake);
            slots.push(slot);
        }
        if let Some(graph) = graph {
            let state = DagState {
                graph,
                remaining: remaining.into(),
                slots: slots.into(),
                live,
                submitted,
            };
            self.room.insert(dag, state);
        }
        self.dag_ids.note(dag);
    }

    /// Puts a restored PENDING or FAILED job back on its timer.
    fn wake_up(&mut self, slot: u32, wake: Option<Time>) {
        let j = self.jobs.at(slot);
        let (id, attempt) = (j.id, j.attempt);
        let kind = match j.state {
            // QUEUED jobs enter their queues when recovery ends (`finish_recovery`).
            JobState::Pending => TimerKind::Delay,
            JobState::Failed => TimerKind::Backoff,
            _ => return,
        };
        // `check_job_state` made sure PENDING and FAILED jobs have a wake time.
        let due = wake.unwrap_or(Time::ZERO);
        let attempt = if kind == TimerKind::Delay { 0 } else { attempt };
        self.timers.push(TimerEntry {
            due,
            id,
            kind,
            attempt,
            slot,
        });
    }
}

/// A job image whose state contradicts its flags, timers or dependency count.
fn check_job_state(
    job: JobId,
    j: &super::snapshot::JobImage,
    remaining: u32,
) -> Result<(), RestoreError> {
    let state = j.state;
    let bad = |reason| Err(RestoreError::Inconsistent { job, state, reason });
    if j.flags & !KNOWN_FLAGS != 0 {
        return bad("it has unknown flag bits");
    }
    let waits = matches!(state, JobState::Pending | JobState::Failed);
    if waits && j.wake.is_none() {
        return bad("it has no wake-up time");
    }
    if state == JobState::Blocked && remaining == 0 {
        return bad("no dependency is left to wait for");
    }
    if !state.is_terminal() && state != JobState::Blocked && remaining > 0 {
        return bad("a dependency has not released it");
    }
    if matches!(state, JobState::Failed | JobState::Running) && j.attempt == 0 {
        return bad("it never ran");
    }
    Ok(())
}
