//! The simulator's invariant checker, fed with every journal record and acknowledgement a core emits.
//! A second checker follows only the durable records; after a master crash the live checker starts
//! over from a copy of it (what was not durable never happened).

use std::collections::{HashMap, HashSet};

use crate::dag;
use crate::ids::{DagId, JobId, Lsn};
use crate::model::Submission;
use crate::record::{Next, Record};
use crate::Target;

#[derive(Clone, Default)]
pub struct Checker {
    /// Parents (by index) of every job of every accepted DAG.
    parents: HashMap<DagId, Vec<Vec<u32>>>,
    /// Jobs whose dependants may run: completed, or ready services.
    done: HashSet<JobId>,
    completed: HashSet<JobId>,
    /// Jobs a record made terminal.
    ended: HashSet<JobId>,
    max_journal: Vec<Lsn>,
    persisted: Vec<Lsn>,
    /// The client request being handled, whose mutation record the next reply depends on.
    request: Option<u64>,
    /// LSN of the record each request's successful reply depends on.
    required: HashMap<u64, Lsn>,
    /// LSN of the record that made a job terminal (when a record names it).
    terminal_lsn: HashMap<JobId, Lsn>,
    pub dispatches: u64,
}

impl Checker {
    pub fn new(shards: usize) -> Checker {
        Checker {
            max_journal: vec![Lsn(0); shards],
            persisted: vec![Lsn(0); shards],
            ..Checker::default()
        }
    }

    pub fn on_journal(&mut self, shard: usize, lsn: Lsn, record: &Record) -> Result<(), String> {
        if lsn <= self.max_journal[shard] {
            return Err(format!(
                "shard {shard}: LSN {lsn:?} not above {:?}",
                self.max_journal[shard]
            ));
        }
        self.max_journal[shard] = lsn;
        if let (
            Some(token),
            Record::Submitted { .. } | Record::Cancelled { .. } | Record::Stopped { .. },
        ) = (self.request, record)
        {
            self.required.insert(token, lsn);
            self.request = None;
        }
        self.track(lsn, record)
    }

    /// A checker for a new master life of `start.len()` shards whose LSNs continue after `start`,
    /// knowing what this (durable) checker knows about jobs.
    pub fn for_new_epoch(&self, start: &[Lsn]) -> Checker {
        Checker {
            max_journal: start.to_vec(),
            persisted: start.to_vec(),
            request: None,
            required: HashMap::new(),
            terminal_lsn: HashMap::new(),
            ..self.clone()
        }
    }

    /// Follows one record's effect on jobs and checks it (no LSN or request bookkeeping).
    pub fn track(&mut self, lsn: Lsn, record: &Record) -> Result<(), String> {
        match record {
            Record::Submitted {
                dag,
                submission: Submission::Dag(jobs),
                ..
            } => {
                let g = dag::validate(jobs)
                    .map_err(|e| format!("{dag}: accepted an invalid DAG: {e}"))?;
                let parents = (0..g.len()).map(|i| g.parents(i).to_vec()).collect();
                self.parents.insert(*dag, parents);
            }
            Record::Submitted { .. } => {}
            Record::Dispatched { job, .. } => {
                self.not_ended(*job, "dispatched")?;
                self.deps_done(*job)?;
                self.dispatches += 1;
            }
            Record::ServiceReady { job, .. } => {
                self.not_ended(*job, "ready")?;
                self.done.insert(*job);
            }
            Record::AttemptEnded { job, next, .. } => {
                self.not_ended(*job, "ended an attempt")?;
                match next {
                    Next::Completed => {
                        if !self.completed.insert(*job) {
                            return Err(format!("{job} completed twice"));
                        }
                        self.done.insert(*job);
                        self.ended.insert(*job);
                        self.terminal_lsn.insert(*job, lsn);
                    }
                    Next::Dead => {
                        self.ended.insert(*job);
                        self.terminal_lsn.insert(*job, lsn);
                    }
                    Next::Retry { .. } | Next::Requeued => {}
                }
            }
            Record::Cancelled {
                target: Target::Job(job),
                ..
            }
            | Record::Stopped { job, .. } => {
                self.not_ended(*job, "cancelled")?;
                self.ended.insert(*job);
                self.terminal_lsn.insert(*job, lsn);
            }
            Record::Cancelled {
                target: Target::Dag(_),
                ..
            }
            | Record::WorkerJoined { .. }
            | Record::WorkerLeft { .. } => {}
        }
        Ok(())
    }

    fn not_ended(&self, job: JobId, what: &str) -> Result<(), String> {
        if self.ended.contains(&job) {
            return Err(format!("{job} {what} after it reached a terminal state"));
        }
        Ok(())
    }

    fn deps_done(&self, job: JobId) -> Result<(), String> {
        let Some(parents) = self.parents.get(&job.dag()) else {
            return Ok(());
        };
        for &p in &parents[job.index() as usize] {
            let parent = job.dag().job(p);
            if !self.done.contains(&parent) {
                return Err(format!(
                    "{job} dispatched before its dependency {parent} completed"
                ));
            }
        }
        Ok(())
    }

    /// A client request is about to be handled; its mutation record (if any) is the next one.
    pub fn expect_request(&mut self, token: u64) {
        self.request = Some(token);
    }

    /// The request was handled; a request that journaled nothing requires nothing.
    pub fn request_done(&mut self) {
        self.request = None;
    }

    /// A `Reply` left the core: a success must not precede the persistence of its record.
    pub fn on_reply(&self, shard: usize, token: u64, ok: bool) -> Result<(), String> {
        match self.required.get(&token) {
            Some(&lsn) => self.covered(shard, lsn, "reply"),
            None if ok => Err(format!(
                "shard {shard}: successful reply to {token} without a journal record"
            )),
            None => Ok(()),
        }
    }

    /// A `Notify` left the core: the record that made the job terminal must be persisted.
    pub fn on_notify(&self, shard: usize, job: JobId) -> Result<(), String> {
        self.terminal_lsn
            .get(&job)
            .map_or(Ok(()), |&lsn| self.covered(shard, lsn, "notify"))
    }

    fn covered(&self, shard: usize, lsn: Lsn, what: &str) -> Result<(), String> {
        if self.persisted[shard] < lsn {
            return Err(format!(
                "shard {shard}: {what} depends on {lsn:?} but only {:?} is persisted",
                self.persisted[shard]
            ));
        }
        Ok(())
    }

    pub fn on_persisted(&mut self, shard: usize, lsn: Lsn) {
        self.persisted[shard] = self.persisted[shard].max(lsn);
    }
}
