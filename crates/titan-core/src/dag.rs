//! DAG validation and the waiting room's graph: a submission's jobs, their edges in both directions
//! (compressed adjacency, two flat arrays per direction), and the checks that reject a whole DAG
//! before anything of it is queued (empty id, duplicate id, unknown or self dependency, cycle, size).
//!
//! Release cost is proportional to the finished job's out-degree: the children of job `i` are the
//! slice `children[child_start[i]..child_start[i + 1]]`, and each child keeps a counter of unmet
//! dependencies in the core's per-DAG state.

use std::collections::HashMap;

use super::ids::{check_name, NameProblem};
use super::limits::{MAX_DAG_EDGES, MAX_DAG_JOBS};
use super::model::DagJobSpec;

/// Why a DAG was rejected. Lines are 1-based positions of jobs in the submission.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DagError {
    /// The submission holds no job.
    #[error("the DAG has no jobs")]
    Empty,
    /// More jobs than [`MAX_DAG_JOBS`].
    #[error("the DAG has {count} jobs; the limit is {max}")]
    TooManyJobs {
        /// Jobs submitted.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// More dependency edges than [`MAX_DAG_EDGES`].
    #[error("the DAG has more than {max} dependency edges")]
    TooManyEdges {
        /// The limit.
        max: usize,
    },
    /// A job id is empty or malformed.
    #[error("job line {line}: id {id:?}: {problem}")]
    BadId {
        /// Job line.
        line: usize,
        /// The id as given.
        id: String,
        /// What is wrong with it.
        problem: NameProblem,
    },
    /// Two jobs share an id.
    #[error("job line {line}: id {id:?} is already used by job line {first_line}")]
    DuplicateId {
        /// The second occurrence.
        line: usize,
        /// The id.
        id: String,
        /// The first occurrence.
        first_line: usize,
    },
    /// A job lists itself as a dependency.
    #[error("job line {line}: {id:?} depends on itself")]
    SelfDependency {
        /// Job line.
        line: usize,
        /// The id.
        id: String,
    },
    /// A job lists the same dependency twice.
    #[error("job line {line}: {id:?} lists dependency {dep:?} twice")]
    DuplicateDependency {
        /// Job line.
        line: usize,
        /// The job.
        id: String,
        /// The repeated dependency.
        dep: String,
    },
    /// A dependency names no job of this DAG.
    #[error("job line {line}: {id:?} depends on unknown job {dep:?}")]
    UnknownDependency {
        /// Job line.
        line: usize,
        /// The job.
        id: String,
        /// The missing dependency.
        dep: String,
    },
    /// The dependencies form a cycle; `ids[0]` depends on `ids[1]`, ..., the last on `ids[0]`.
    #[error("dependency cycle: {}", cycle_text(.ids))]
    Cycle {
        /// The jobs on the cycle, in dependency order.
        ids: Vec<String>,
    },
}

fn cycle_text(ids: &[String]) -> String {
    let mut s = ids.join(" -> ");
    if let Some(first) = ids.first() {
        s.push_str(" -> ");
        s.push_str(first);
    }
    s
}

/// A validated DAG's shape: names and edges in both directions, indexed by job line (0-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DagGraph {
    /// Job ids by index.
    pub names: Box<[Box<str>]>,
    parent_start: Box<[u32]>,
    parents: Box<[u32]>,
    child_start: Box<[u32]>,
    children: Box<[u32]>,
}

impl DagGraph {
    /// Number of jobs.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the graph has no jobs (never true for a validated DAG).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Indices of the jobs `i` depends on, in the order they were listed.
    pub fn parents(&self, i: usize) -> &[u32] {
        &self.parents[self.parent_start[i] as usize..self.parent_start[i + 1] as usize]
    }

    /// Indices of the jobs that depend on `i`.
    pub fn children(&self, i: usize) -> &[u32] {
        &self.children[self.child_start[i] as usize..self.child_start[i + 1] as usize]
    }

    /// Number of dependency edges.
    pub fn edges(&self) -> usize {
        self.parents.len()
    }

    /// The dependency edges in compressed form: the parents of job `i` are
    /// `parents[parent_start[i]..parent_start[i + 1]]` (what snapshots store).
    pub fn parent_csr(&self) -> (&[u32], &[u32]) {
        (&self.parent_start, &self.parents)
    }

    /// Rebuilds a graph from names and compressed parent edges (as stored by a snapshot), checking
    /// what indexing relies on and that the edges form no cycle.
    pub fn from_parts(
        names: Box<[Box<str>]>,
        parent_start: Box<[u32]>,
        parents: Box<[u32]>,
    ) -> Result<DagGraph, GraphProblem> {
        let n = names.len();
        if n == 0 || n > MAX_DAG_JOBS {
            return Err(GraphProblem::Size { jobs: n });
        }
        if parents.len() > MAX_DAG_EDGES {
            return Err(GraphProblem::TooManyEdges {
                edges: parents.len(),
            });
        }
        let bounds_ok = parent_start.len() == n + 1
            && parent_start[0] == 0
            && parent_start[n] as usize == parents.len()
            && parent_start.windows(2).all(|w| w[0] <= w[1]);
        if !bounds_ok {
            return Err(GraphProblem::BadOffsets);
        }
        for i in 0..n {
            let ps = &parents[parent_start[i] as usize..parent_start[i + 1] as usize];
            if ps.iter().any(|&p| p as usize >= n || p as usize == i) {
                return Err(GraphProblem::BadEdge { job: i });
            }
        }
        let (child_start, children) = invert(n, &parent_start, &parents);
        let graph = DagGraph {
            names,
            parent_start,
            parents,
            child_start,
            children,
        };
        match find_cycle(&graph) {
            Some(ids) => Err(GraphProblem::Cycle { ids }),
            None => Ok(graph),
        }
    }
}

/// Why stored graph parts do not form a valid DAG.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GraphProblem {
    /// No jobs, or more than [`MAX_DAG_JOBS`].
    #[error("{jobs} jobs (1 to {max} allowed)", max = MAX_DAG_JOBS)]
    Size {
        /// Jobs stored.
        jobs: usize,
    },
    /// More than [`MAX_DAG_EDGES`] edges.
    #[error("{edges} edges (at most {max} allowed)", max = MAX_DAG_EDGES)]
    TooManyEdges {
        /// Edges stored.
        edges: usize,
    },
    /// The edge offsets do not delimit the edge list.
    #[error("edge offsets out of order or out of range")]
    BadOffsets,
    /// A parent index outside the DAG, or a job depending on itself.
    #[error("job {job} has a parent outside the DAG or itself")]
    BadEdge {
        /// The job's index.
        job: usize,
    },
    /// The edges form a cycle.
    #[error("dependency cycle through {ids:?}")]
    Cycle {
        /// The jobs on it.
        ids: Vec<String>,
    },
}

/// Validates a DAG submission and builds its graph, or rejects it whole.
pub fn validate(jobs: &[DagJobSpec]) -> Result<DagGraph, DagError> {
    if jobs.is_empty() {
        return Err(DagError::Empty);
    }
    if jobs.len() > MAX_DAG_JOBS {
        return Err(DagError::TooManyJobs {
            count: jobs.len(),
            max: MAX_DAG_JOBS,
        });
    }
    let index = index_names(jobs)?;
    let (parent_start, parents) = resolve_edges(jobs, &index)?;
    let (child_start, children) = invert(jobs.len(), &parent_start, &parents);
    let graph = DagGraph {
        names: jobs.iter().map(|j| j.name.clone()).collect(),
        parent_start,
        parents,
        child_start,
        children,
    };
    if let Some(ids) = find_cycle(&graph) {
        return Err(DagError::Cycle { ids });
    }
    Ok(graph)
}

fn index_names(jobs: &[DagJobSpec]) -> Result<HashMap<&str, u32>, DagError> {
    let mut index: HashMap<&str, u32> = HashMap::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        let line = i + 1;
        check_name(&job.name).map_err(|problem| DagError::BadId {
            line,
            id: job.name.to_string(),
            problem,
        })?;
        // i < MAX_DAG_JOBS < 2^24, so it fits a u32.
        if let Some(first) = index.insert(&job.name, i as u32) {
            return Err(DagError::DuplicateId {
                line,
                id: job.name.to_string(),
                first_line: first as usize + 1,
            });
        }
    }
    Ok(index)
}

type Csr = (Box<[u32]>, Box<[u32]>);

fn resolve_edges(jobs: &[DagJobSpec], index: &HashMap<&str, u32>) -> Result<Csr, DagError> {
    let total: usize = jobs.iter().map(|j| j.deps.len()).sum();
    if total > MAX_DAG_EDGES {
        return Err(DagError::TooManyEdges { max: MAX_DAG_EDGES });
    }
    let mut start = Vec::with_capacity(jobs.len() + 1);
    let mut parents = Vec::with_capacity(total);
    let mut seen: Vec<u32> = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        start.push(parents.len() as u32);
        let line = i + 1;
        seen.clear();
        for dep in &job.deps {
            let Some(&p) = index.get(&**dep) else {
                return Err(DagError::UnknownDependency {
                    line,
                    id: job.name.to_string(),
                    dep: dep.to_string(),
                });
            };
            if p as usize == i {
                return Err(DagError::SelfDependency {
                    line,
                    id: job.name.to_string(),
                });
            }
            if seen.contains(&p) {
                return Err(DagError::DuplicateDependency {
                    line,
                    id: job.name.to_string(),
                    dep: dep.to_string(),
                });
            }
            seen.push(p);
            parents.push(p);
        }
    }
    // total <= MAX_DAG_EDGES, which fits a u32.
    start.push(parents.len() as u32);
    Ok((start.into(), parents.into()))
}

fn invert(n: usize, parent_start: &[u32], parents: &[u32]) -> Csr {
    let mut counts = vec![0u32; n + 1];
    for &p in parents {
        counts[p as usize + 1] += 1;
    }
    for i in 0..n {
        counts[i + 1] += counts[i];
    }
    let child_start: Box<[u32]> = counts.clone().into();
    let mut fill = counts;
    let mut children = vec![0u32; parents.len()];
    for child in 0..n {
        for &p in &parents[parent_start[child] as usize..parent_start[child + 1] as usize] {
            children[fill[p as usize] as usize] = child as u32;
            fill[p as usize] += 1;
        }
    }
    (child_start, children.into())
}

/// Kahn's algorithm; when some jobs are never freed, walks dependencies among them to name a cycle.
fn find_cycle(g: &DagGraph) -> Option<Vec<String>> {
    let n = g.len();
    let mut remaining: Vec<u32> = (0..n).map(|i| g.parents(i).len() as u32).collect();
    let mut ready: Vec<u32> = (0..n as u32)
        .filter(|&i| remaining[i as usize] == 0)
        .collect();
    let mut freed = 0usize;
    while let Some(i) = ready.pop() {
        freed += 1;
        for &c in g.children(i as usize) {
            remaining[c as usize] -= 1;
            if remaining[c as usize] == 0 {
                ready.push(c);
            }
        }
    }
    if freed == n {
        return None;
    }
    // Every job still holding a count has a parent that also holds one, so following such parents
    // must revisit a job; the revisited stretch is a cycle.
    let start = (0..n).find(|&i| remaining[i] > 0)?;
    let mut order: Vec<usize> = Vec::new();
    let mut position: HashMap<usize, usize> = HashMap::new();
    let mut at = start;
    loop {
        if let Some(&pos) = position.get(&at) {
            return Some(
                order[pos..]
                    .iter()
                    .map(|&i| g.names[i].to_string())
                    .collect(),
            );
        }
        position.insert(at, order.len());
        order.push(at);
        at = *g.parents(at).iter().find(|&&p| remaining[p as usize] > 0)? as usize;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobKind, JobSpec};

    fn job(name: &str, deps: &[&str]) -> DagJobSpec {
        DagJobSpec {
            name: name.into(),
            spec: JobSpec::new(JobKind::Noop),
            deps: deps.iter().map(|d| Box::<str>::from(*d)).collect(),
        }
    }

    #[test]
    fn builds_edges_both_ways_in_any_listing_order() {
        let g = validate(&[job("C", &["A", "B"]), job("A", &[]), job("B", &["A"])]).unwrap();
        assert_eq!(g.parents(0), &[1, 2]);
        assert_eq!(g.children(1), &[0, 2]);
        assert_eq!(g.children(2), &[0]);
        assert_eq!(g.edges(), 3);
    }

    #[test]
    fn rejects_each_structural_error() {
        assert_eq!(validate(&[]), Err(DagError::Empty));
        assert!(matches!(
            validate(&[job("", &[])]),
            Err(DagError::BadId {
                line: 1,
                problem: NameProblem::Empty,
                ..
            })
        ));
        assert!(matches!(
            validate(&[job("A", &[]), job("A", &[])]),
            Err(DagError::DuplicateId {
                line: 2,
                first_line: 1,
                ..
            })
        ));
        assert!(matches!(
            validate(&[job("A", &["A"])]),
            Err(DagError::SelfDependency { line: 1, .. })
        ));
        assert!(matches!(
            validate(&[job("A", &["Z"])]),
            Err(DagError::UnknownDependency { line: 1, ref dep, .. }) if dep == "Z"
        ));
        assert!(matches!(
            validate(&[job("A", &[]), job("B", &["A", "A"])]),
            Err(DagError::DuplicateDependency { line: 2, .. })
        ));
    }

    #[test]
    fn names_the_cycle() {
        let err = validate(&[
            job("S", &[]),
            job("A", &["C", "S"]),
            job("B", &["A"]),
            job("C", &["B"]),
        ])
        .unwrap_err();
        let DagError::Cycle { ids } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(ids.len(), 3);
        assert!(["A", "B", "C"].iter().all(|n| ids.iter().any(|i| i == n)));
        assert!(err.to_string().starts_with("dependency cycle: "));
    }

    #[test]
    fn stored_parts_round_trip_and_bad_parts_are_refused() {
        let g = validate(&[job("C", &["A", "B"]), job("A", &[]), job("B", &["A"])]).unwrap();
        let (start, parents) = g.parent_csr();
        let back = DagGraph::from_parts(g.names.clone(), start.into(), parents.into()).unwrap();
        assert_eq!(back, g);
        let names: Box<[Box<str>]> = vec!["A".into(), "B".into()].into();
        let part = |s: &[u32], p: &[u32]| DagGraph::from_parts(names.clone(), s.into(), p.into());
        assert_eq!(part(&[0, 0], &[]), Err(GraphProblem::BadOffsets));
        assert_eq!(
            part(&[0, 1, 1], &[5]),
            Err(GraphProblem::BadEdge { job: 0 })
        );
        assert_eq!(
            part(&[0, 1, 1], &[0]),
            Err(GraphProblem::BadEdge { job: 0 })
        );
        assert_eq!(part(&[0, 2, 1], &[1, 1]), Err(GraphProblem::BadOffsets));
        assert!(matches!(
            part(&[0, 1, 2], &[1, 0]),
            Err(GraphProblem::Cycle { .. })
        ));
        assert!(part(&[0, 0, 1], &[0]).is_ok());
    }

    #[test]
    fn wide_dag_validates_in_linear_time() {
        let mut jobs = vec![job("root", &[])];
        jobs.extend((0..100_000).map(|i| job(&format!("n{i}"), &["root"])));
        let g = validate(&jobs).unwrap();
        assert_eq!(g.children(0).len(), 100_000);
    }
}
