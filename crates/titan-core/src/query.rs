//! Read-only queries for the shell, CLI and dashboard: counters for STATS, job and DAG views, job
//! listings, name lookup, workers and the services they host, and the dead-letter queue. All take
//! `&self`; listings sort what they return, so their order never depends on storage layout.

use std::time::Duration;

use super::history::{DeadLetter, Totals};
use super::ids::{DagId, JobId, JobRef, Time, WorkerId};
use super::job_store::{flags, Job};
use super::machine::Core;
use super::model::{JobSpec, JobState};

/// Counters for STATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Workers this shard considers alive (placeable or not yet disconnected).
    pub workers: usize,
    /// Jobs by state, indexed by `JobState as usize` (retained terminal jobs included).
    pub by_state: [usize; 9],
    /// Jobs not yet terminal.
    pub live: usize,
    /// Entries in the dead-letter queue.
    pub dlq: usize,
    /// Parked watches.
    pub watchers: usize,
    /// Submissions finished and still retained.
    pub history: usize,
    /// Monotonic counters.
    pub totals: Totals,
}

impl Stats {
    /// Jobs in `state`.
    pub fn count(&self, state: JobState) -> usize {
        self.by_state[state as usize]
    }
}

/// One job as queries show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobView<'a> {
    /// Internal id.
    pub id: JobId,
    /// User-facing reference (`TSK-<n>` or `dag-<n>:<NAME>`).
    pub label: JobRef,
    /// Current state.
    pub state: JobState,
    /// What it runs.
    pub spec: &'a JobSpec,
    /// The skill it needs.
    pub skill: &'a str,
    /// Attempts dispatched.
    pub attempts: u32,
    /// Failed attempts counted against retries.
    pub failures: u8,
    /// Attempts lost with their worker.
    pub crashes: u8,
    /// The worker of the live attempt.
    pub worker: Option<WorkerId>,
    /// RUNNING after a master restart, waiting for its worker to report it (`Input::Adopt`).
    pub adopting: bool,
    /// Whether the worker confirmed the live attempt started.
    pub started: bool,
    /// For a service: whether the live attempt is ready.
    pub ready: bool,
    /// Submission time.
    pub submitted: Time,
    /// When it entered its current state (for a finished job: when it finished).
    pub since: Time,
    /// When the live or last attempt was dispatched, if there was one.
    pub started_at: Option<Time>,
    /// The last failure, as text.
    pub last_error: Option<&'a str>,
    /// Names of the jobs it depends on (empty for a one-off).
    pub deps: Vec<&'a str>,
}

/// A DAG and its jobs in submission order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DagView<'a> {
    /// The DAG.
    pub dag: DagId,
    /// Submission time.
    pub submitted: Time,
    /// Jobs not yet terminal.
    pub live: u32,
    /// Its jobs.
    pub jobs: Vec<JobView<'a>>,
}

/// One worker as this shard knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerView<'a> {
    /// Its id.
    pub id: WorkerId,
    /// Its port.
    pub port: u16,
    /// Reservations on it over all shards (from the load table).
    pub running: u32,
    /// Concurrent attempts it accepts.
    pub capacity: u32,
    /// Skills it advertises.
    pub skills: Vec<&'a str>,
    /// The worker that spawned it.
    pub parent: Option<WorkerId>,
    /// Spawned by scaling.
    pub ephemeral: bool,
    /// Retired, waiting for the shell to disconnect it.
    pub retiring: bool,
    /// Since its last heartbeat (meaningful on its home shard only).
    pub silent_for: Duration,
    /// This shard is its home: the one that hears its heartbeats.
    pub home: bool,
    /// When this shard learned of it.
    pub registered: Time,
}

/// A name lookup hit, with what the master needs to pick the newest across shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameHit {
    /// The job.
    pub job: JobId,
    /// When its submission was accepted (compare `(submitted, job.dag())` across shards).
    pub submitted: Time,
}

/// What a [`JobRef`] resolves to on this shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// A job.
    Job(JobId),
    /// A whole DAG.
    Dag(DagId),
}

impl Core {
    /// Counters for STATS.
    pub fn stats(&self) -> Stats {
        Stats {
            workers: self.workers.active(),
            by_state: self.jobs.counts(),
            live: self.jobs.live(),
            dlq: self.history.dead_letters().len(),
            watchers: self.watchers.len(),
            history: self.history.len(),
            totals: *self.history.totals(),
        }
    }

    /// One job's view, while it is retained.
    pub fn job(&self, id: JobId) -> Option<JobView<'_>> {
        self.jobs.slot_of(id).map(|s| self.view(self.jobs.at(s)))
    }

    /// The state of a retained job.
    pub fn state(&self, id: JobId) -> Option<JobState> {
        self.jobs.slot_of(id).map(|s| self.jobs.at(s).state)
    }

    /// Up to `limit` jobs, newest first, optionally only those in `state`.
    pub fn jobs(&self, state: Option<JobState>, limit: usize) -> Vec<JobView<'_>> {
        let mut hits: Vec<&Job> = self
            .jobs
            .iter()
            .map(|(_, j)| j)
            .filter(|j| state.is_none_or(|s| j.state == s))
            .collect();
        if hits.len() > limit {
            hits.select_nth_unstable_by_key(limit, |j| std::cmp::Reverse(j.id));
            hits.truncate(limit);
        }
        hits.sort_unstable_by_key(|j| std::cmp::Reverse(j.id));
        hits.into_iter().map(|j| self.view(j)).collect()
    }

    /// QUEUED jobs of one skill in dispatch order (best first), up to `limit`. Costs O(queue log queue).
    pub fn queued(&self, skill: &str, limit: usize) -> Vec<JobId> {
        let Some(s) = self.skills.get(skill) else {
            return Vec::new();
        };
        self.placement.queued(s, &self.jobs, limit)
    }

    /// A DAG (or a one-off, as a DAG of one) with its jobs.
    pub fn dag(&self, dag: DagId) -> Option<DagView<'_>> {
        if let Some(d) = self.room.get(dag) {
            let jobs = d
                .slots
                .iter()
                .map(|&s| self.view(self.jobs.at(s)))
                .collect();
            return Some(DagView {
                dag,
                submitted: d.submitted,
                live: d.live,
                jobs,
            });
        }
        let job = self.jobs.at(self.jobs.slot_of(dag.job(0))?);
        let live = u32::from(!job.state.is_terminal());
        Some(DagView {
            dag,
            submitted: job.submitted,
            live,
            jobs: vec![self.view(job)],
        })
    }

    /// The most recent retained job with this DAG job name on this shard.
    pub fn lookup_name(&self, name: &str) -> Option<NameHit> {
        let job = self.room.named(name)?;
        let submitted = self.jobs.at(self.jobs.slot_of(job)?).submitted;
        Some(NameHit { job, submitted })
    }

    /// Resolves a user-facing reference against this shard's retained jobs.
    pub fn resolve(&self, r: &JobRef) -> Option<Resolved> {
        match r {
            JobRef::Task(dag) => {
                let id = dag.job(0);
                self.jobs
                    .slot_of(id)
                    .filter(|&s| self.jobs.at(s).has(flags::ONE_OFF))
                    .map(|_| Resolved::Job(id))
            }
            JobRef::Dag(dag) => self.dag(*dag).map(|_| Resolved::Dag(*dag)),
            JobRef::DagJob(dag, name) => {
                let d = self.room.get(*dag)?;
                let i = d.graph.names.iter().position(|n| n == name)?;
                Some(Resolved::Job(dag.job(i as u32)))
            }
            JobRef::Name(name) => self.lookup_name(name).map(|h| Resolved::Job(h.job)),
        }
    }

    /// The user-facing reference of a retained job.
    pub fn label(&self, id: JobId) -> Option<JobRef> {
        self.jobs
            .slot_of(id)
            .map(|s| self.label_of(self.jobs.at(s)))
    }

    fn label_of(&self, job: &Job) -> JobRef {
        if job.has(flags::ONE_OFF) {
            return JobRef::Task(job.id.dag());
        }
        let name = self
            .room
            .get(job.id.dag())
            .map(|d| d.graph.names[job.id.index() as usize].clone());
        JobRef::DagJob(job.id.dag(), name.unwrap_or_default())
    }

    fn view<'a>(&'a self, job: &'a Job) -> JobView<'a> {
        let deps = match self.room.get(job.id.dag()) {
            Some(d) if !job.has(flags::ONE_OFF) => d
                .graph
                .parents(job.id.index() as usize)
                .iter()
                .map(|&p| &*d.graph.names[p as usize])
                .collect(),
            _ => Vec::new(),
        };
        JobView {
            id: job.id,
            label: self.label_of(job),
            state: job.state,
            spec: &job.spec,
            skill: self.skills.name(job.skill),
            attempts: job.attempt,
            failures: job.failures,
            crashes: job.crashes,
            worker: job.worker,
            adopting: job.state == JobState::Running && job.worker.is_none(),
            started: job.has(flags::STARTED),
            ready: job.has(flags::READY),
            submitted: job.submitted,
            since: job.since,
            started_at: (job.started_at != Time(0)).then_some(job.started_at),
            last_error: self.jobs.error(job.id),
            deps,
        }
    }

    /// Workers this shard knows, in id order.
    pub fn workers(&self) -> Vec<WorkerView<'_>> {
        self.workers
            .iter()
            .map(|(id, e)| {
                let load = self.placement.load().load(id);
                WorkerView {
                    id,
                    port: e.port,
                    running: load.map_or(0, |l| l.running),
                    capacity: e.capacity,
                    skills: e.skills.iter().map(|&s| self.skills.name(s)).collect(),
                    parent: e.parent,
                    ephemeral: e.ephemeral,
                    retiring: e.retiring,
                    silent_for: self.now.since(e.last_heartbeat),
                    home: e.home,
                    registered: e.registered,
                }
            })
            .collect()
    }

    /// This shard's services (DEPLOY jobs) running on `worker`, in JobId order.
    pub fn services_on(&self, worker: WorkerId) -> Vec<JobId> {
        let Some(e) = self.workers.get(worker) else {
            return Vec::new();
        };
        let mut ids: Vec<JobId> = e
            .attempts
            .keys()
            .filter_map(|&(job, attempt)| {
                let j = self.jobs.at(self.jobs.slot_of(job)?);
                (j.spec.is_service() && j.state == JobState::Running && j.attempt == attempt)
                    .then_some(job)
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The dead-letter queue, oldest first.
    pub fn dead_letters(&self) -> impl Iterator<Item = &DeadLetter> {
        self.history.dead_letters()
    }
}
