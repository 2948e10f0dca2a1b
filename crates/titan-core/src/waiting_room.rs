//! The DAG waiting room: for each retained DAG its graph, the unmet-dependency counter of each of
//! its jobs, the slots of its jobs and how many are not yet terminal ([`DagState`]), plus the name
//! index that resolves a DAG job's name to the newest job holding it. One-off jobs have no entry.
//!
//! Release costs O(out-degree): a job that completes (or a service that becomes ready) decrements
//! its children's counters once, and a child whose counter reaches zero while BLOCKED becomes
//! runnable. A job that dies or is cancelled before releasing its children takes its BLOCKED
//! descendants with it, in time linear in the edges of the affected subgraph.

use std::collections::{BTreeMap, HashMap};

use super::dag::DagGraph;
use super::ids::{DagId, JobId, Time};
use super::job_store::JobStore;
use super::model::JobState;

/// The waiting room of one DAG: its graph, unmet-dependency counters and the slots of its jobs.
#[derive(Debug)]
pub struct DagState {
    pub graph: DagGraph,
    pub remaining: Box<[u32]>,
    pub slots: Box<[u32]>,
    /// Jobs not yet terminal.
    pub live: u32,
    pub submitted: Time,
}

/// Every retained DAG of one core, by id, and the name index.
#[derive(Debug, Default)]
pub struct WaitingRoom {
    dags: BTreeMap<DagId, DagState>,
    names: HashMap<Box<str>, JobId>,
}

impl WaitingRoom {
    pub fn get(&self, dag: DagId) -> Option<&DagState> {
        self.dags.get(&dag)
    }

    pub fn holds(&self, dag: DagId) -> bool {
        self.dags.contains_key(&dag)
    }

    pub fn insert(&mut self, dag: DagId, state: DagState) {
        self.dags.insert(dag, state);
    }

    /// Retained DAGs in id order.
    pub fn iter(&self) -> impl Iterator<Item = (DagId, &DagState)> {
        self.dags.iter().map(|(&dag, d)| (dag, d))
    }

    /// Forgets a DAG and the names that still point at it.
    pub fn remove(&mut self, dag: DagId) -> Option<DagState> {
        let d = self.dags.remove(&dag)?;
        for name in d.graph.names.iter() {
            if self.names.get(name).is_some_and(|id| id.dag() == dag) {
                self.names.remove(name);
            }
        }
        Some(d)
    }

    /// The slots of a submission's jobs: a DAG's in index order, or a one-off's one.
    pub fn submission_slots(&self, dag: DagId, jobs: &JobStore) -> Vec<u32> {
        match self.dags.get(&dag) {
            Some(d) => d.slots.to_vec(),
            None => jobs.slot_of(dag.job(0)).into_iter().collect(),
        }
    }

    // ---- the name index ------------------------------------------------------------------------

    /// Indexes `name` for lookups unless a retained job of a newer submission holds it already
    /// (newest by `(submitted, dag)`, the order the master uses across shards). Live submissions are
    /// always the newest; recovery may meet submissions of several old shards in any order.
    pub fn index_name(&mut self, name: Box<str>, id: JobId, submitted: Time, jobs: &JobStore) {
        if let Some(&old) = self.names.get(&name) {
            let held = jobs.slot_of(old).map(|s| jobs.at(s).submitted);
            if held.is_some_and(|t| (t, old.dag()) > (submitted, id.dag())) {
                return;
            }
        }
        self.names.insert(name, id);
    }

    /// The job `name` resolves to.
    pub fn named(&self, name: &str) -> Option<JobId> {
        self.names.get(name).copied()
    }

    /// Every job the name index points at, in id order.
    pub fn named_jobs(&self) -> Vec<JobId> {
        let mut names: Vec<JobId> = self.names.values().copied().collect();
        names.sort_unstable();
        names
    }

    // ---- release and failure propagation -------------------------------------------------------

    /// Job `id` of a DAG released its children: decrements their unmet-dependency counters and
    /// returns the slots of the BLOCKED ones that have none left, in edge order.
    pub fn release(&mut self, id: JobId, jobs: &JobStore) -> Vec<u32> {
        let Some(dag) = self.dags.get_mut(&id.dag()) else {
            return Vec::new();
        };
        let mut runnable = Vec::new();
        for &c in dag.graph.children(id.index() as usize) {
            let c = c as usize;
            dag.remaining[c] -= 1;
            if dag.remaining[c] == 0 && jobs.at(dag.slots[c]).state == JobState::Blocked {
                runnable.push(dag.slots[c]);
            }
        }
        runnable
    }

    /// Moves every BLOCKED descendant of DAG job `id` to `to` at `now`; returns their slots.
    pub fn end_descendants(
        &self,
        id: JobId,
        to: JobState,
        jobs: &mut JobStore,
        now: Time,
    ) -> Vec<u32> {
        let mut changed = Vec::new();
        if let Some(dag) = self.dags.get(&id.dag()) {
            let mut stack = vec![id.index()];
            while let Some(i) = stack.pop() {
                for &c in dag.graph.children(i as usize) {
                    let cs = dag.slots[c as usize];
                    if jobs.at(cs).state == JobState::Blocked {
                        jobs.set_state(cs, to, now);
                        changed.push(cs);
                        stack.push(c);
                    }
                }
            }
        }
        changed
    }

    /// One more job of `dag` is terminal; returns the DAG's job count when that was its last.
    pub fn job_ended(&mut self, dag: DagId) -> Option<usize> {
        self.dags.get_mut(&dag).and_then(|d| {
            d.live -= 1;
            (d.live == 0).then_some(d.slots.len())
        })
    }
}
