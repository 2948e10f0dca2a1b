//! Gathers: requests whose answer is put together from parts sent by several shards, kept on the
//! shard that received the request (the origin) until the last part is in (or a wait times out).
//!
//! This module is the bookkeeping and the merging, pure: the table of open gathers with the parts
//! each still expects, how a part merges into its gather (the newest name hit wins, job lists
//! concatenate, STATS counts add up, a wait fills in its jobs), and the answers a finished job
//! list or wait makes. Sending the requests and the answers is [`super::queries`]'s.

use std::cell::RefCell;
use std::collections::HashMap;

use super::mesh::{Part, QueryId, ShardStats};
use titan_proto::message::client::{JobList, JobStatus, WaitReply};

/// What to do with a job once its bare name is resolved.
#[derive(Clone, Copy, Debug)]
pub enum Then {
    Logs(super::logs::LogsParams),
    Status,
    Cancel,
    Stop,
    Watch { query: QueryId, index: u32 },
}

/// How STATS is answered.
#[derive(Clone, Copy, Debug)]
pub enum StatsForm {
    Text,
    Json,
    Workers,
}

pub enum Gather {
    Name {
        token: u64,
        name: Box<str>,
        then: Then,
        /// (submitted µs, job id) of the newest hit so far.
        best: Option<(u64, u64)>,
    },
    Jobs {
        token: u64,
        limit: u32,
        jobs: Vec<JobStatus>,
        more: bool,
    },
    Stats {
        token: u64,
        form: StatsForm,
        acc: Box<ShardStats>,
    },
    Wait {
        token: u64,
        asked: Vec<String>,
        done: Vec<Option<JobStatus>>,
        error: Option<String>,
    },
}

/// Gathers in progress on this shard, each with the parts it still expects. Every method borrows
/// the table only for its own duration.
#[derive(Default)]
pub struct Gathers {
    table: RefCell<Table>,
}

#[derive(Default)]
struct Table {
    next: u32,
    open: HashMap<u32, (Gather, u32)>,
}

impl Gathers {
    /// Opens a gather expecting `parts` parts; returns its sequence number on this shard.
    pub fn open(&self, gather: Gather, parts: u32) -> u32 {
        let mut t = self.table.borrow_mut();
        t.next = t.next.wrapping_add(1);
        let seq = t.next;
        t.open.insert(seq, (gather, parts));
        seq
    }

    /// Merges a part; returns the gather when that was its last part. A part for a gather that
    /// is no longer open (a wait that timed out) is dropped.
    pub fn on_part(&self, seq: u32, part: Part) -> Option<Gather> {
        let mut t = self.table.borrow_mut();
        let (gather, left) = t.open.get_mut(&seq)?;
        merge(gather, part);
        *left = left.saturating_sub(1);
        if *left > 0 {
            return None;
        }
        t.open.remove(&seq).map(|(g, _)| g)
    }

    /// Closes a gather before all its parts came in (a wait's timeout).
    pub fn expire(&self, seq: u32) -> Option<Gather> {
        self.table.borrow_mut().open.remove(&seq).map(|(g, _)| g)
    }
}

fn merge(gather: &mut Gather, part: Part) {
    match (gather, part) {
        // The newest submission of that name wins; ties go to the higher job id.
        (Gather::Name { best, .. }, Part::Name(hit))
            if hit.is_some_and(|h| best.is_none_or(|b| h > b)) =>
        {
            *best = hit;
        }
        (
            Gather::Jobs { jobs, more, .. },
            Part::Jobs {
                jobs: part,
                more: part_more,
            },
        ) => {
            jobs.extend(part);
            *more |= part_more;
        }
        (Gather::Stats { acc, .. }, Part::Stats(part)) => add_stats(acc, *part),
        (Gather::Wait { done, error, .. }, Part::Watched { index, status }) => match *status {
            Ok(s) => {
                if let Some(slot) = done.get_mut(index as usize) {
                    *slot = Some(s);
                }
            }
            Err(e) => {
                error.get_or_insert(e);
            }
        },
        // A part of the wrong kind cannot happen (parts answer the gather that asked).
        _ => {}
    }
}

/// Adds one shard's STATS part to the sum so far.
fn add_stats(acc: &mut ShardStats, part: ShardStats) {
    for (total, n) in acc.by_state.iter_mut().zip(part.by_state) {
        *total += n;
    }
    acc.dlq += part.dlq;
    acc.totals.completed += part.totals.completed;
    acc.totals.cancelled += part.totals.cancelled;
    acc.totals.upstream_failed += part.totals.upstream_failed;
    acc.totals.dead += part.totals.dead;
    acc.services.extend(part.services);
    acc.silent_for.extend(part.silent_for);
    acc.scaling.extend(part.scaling);
    if part.logs.is_some() {
        acc.logs = part.logs;
    }
    if acc.degraded.is_none() {
        acc.degraded = part.degraded;
    }
}

/// Every shard's jobs, newest first, cut to `limit` and to what one frame holds; `truncated`
/// says when some were left out.
pub fn jobs_reply(mut jobs: Vec<JobStatus>, limit: u32, more: bool) -> JobList {
    jobs.sort_by_key(|j| std::cmp::Reverse((j.submitted_at_us, j.id)));
    let mut more = more || jobs.len() > limit as usize;
    jobs.truncate(limit as usize);
    // The list must fit in one frame (jobs with inline scripts carry them in their spec): past
    // that, the oldest are left out and `truncated` says so.
    let fit = super::frames::fitting_in_a_frame(&jobs);
    if fit < jobs.len() {
        jobs.truncate(fit);
        more = true;
    }
    JobList {
        jobs,
        truncated: more,
    }
}

/// A wait's answer: the first error any part reported, or the jobs that finished and the names
/// of those still pending (when it timed out).
pub fn wait_reply(
    asked: Vec<String>,
    done: Vec<Option<JobStatus>>,
    error: Option<String>,
    timed_out: bool,
) -> Result<WaitReply, String> {
    if let Some(e) = error {
        return Err(e);
    }
    let pending = asked
        .into_iter()
        .zip(&done)
        .filter(|(_, d)| d.is_none())
        .map(|(a, _)| a)
        .collect();
    Ok(WaitReply {
        jobs: done.into_iter().flatten().collect(),
        pending,
        timed_out,
    })
}

#[cfg(test)]
#[path = "gather_tests.rs"]
mod tests;
