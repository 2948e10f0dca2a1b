//! Gathers merge parts from every shard into one answer.

use super::*;
use titan_core::{Totals, WorkerId};
use titan_proto::message::client::LogTotals;

fn job(id: u64, submitted_at_us: u64) -> JobStatus {
    JobStatus {
        id,
        label: format!("TSK-{id}"),
        submitted_at_us,
        ..JobStatus::sample()
    }
}

fn jobs_part(jobs: Vec<JobStatus>, more: bool) -> Part {
    Part::Jobs { jobs, more }
}

#[test]
fn a_name_resolves_to_the_newest_hit_across_shards() {
    let gathers = Gathers::default();
    let name = Gather::Name {
        token: 1,
        name: "B".into(),
        then: Then::Status,
        best: None,
    };
    let seq = gathers.open(name, 3);
    assert!(gathers.on_part(seq, Part::Name(Some((20, 7)))).is_none());
    assert!(gathers.on_part(seq, Part::Name(None)).is_none());
    let done = gathers.on_part(seq, Part::Name(Some((10, 9))));
    let Some(Gather::Name { best, .. }) = done else {
        panic!("the last part finishes the lookup");
    };
    assert_eq!(best, Some((20, 7)), "the newest submission wins");
    assert!(gathers.on_part(seq, Part::Name(None)).is_none(), "closed");
}

#[test]
fn job_lists_merge_newest_first_and_say_when_cut() {
    let gathers = Gathers::default();
    let list = Gather::Jobs {
        token: 1,
        limit: 3,
        jobs: Vec::new(),
        more: false,
    };
    let seq = gathers.open(list, 2);
    gathers.on_part(seq, jobs_part(vec![job(1, 10), job(3, 30)], false));
    let done = gathers.on_part(seq, jobs_part(vec![job(2, 20), job(4, 40)], false));
    let Some(Gather::Jobs {
        jobs, limit, more, ..
    }) = done
    else {
        panic!("both shards answered");
    };
    let reply = jobs_reply(jobs, limit, more);
    let ids: Vec<u64> = reply.jobs.iter().map(|j| j.id).collect();
    assert_eq!(ids, [4, 3, 2]);
    assert!(reply.truncated, "one job was left out");
    let whole = jobs_reply(vec![job(1, 5), job(2, 5)], 10, false);
    let ids: Vec<u64> = whole.jobs.iter().map(|j| j.id).collect();
    assert_eq!(ids, [2, 1], "same time: the higher id first");
    assert!(!whole.truncated);
    assert!(jobs_reply(vec![], 10, true).truncated, "a shard had more");
}

#[test]
fn stats_parts_add_up() {
    let gathers = Gathers::default();
    let stats = Gather::Stats {
        token: 1,
        form: StatsForm::Json,
        acc: Box::default(),
    };
    let seq = gathers.open(stats, 2);
    let w = WorkerId::new(1, 1).expect("id");
    let part = |n: u64, logs: Option<LogTotals>, degraded: Option<&str>| {
        Part::Stats(Box::new(ShardStats {
            by_state: [n; 9],
            dlq: n,
            totals: Totals {
                completed: n,
                dead: n,
                cancelled: n,
                upstream_failed: n,
                ..Totals::default()
            },
            services: vec![(w, format!("svc-{n}"))],
            silent_for: vec![],
            scaling: vec![],
            logs,
            degraded: degraded.map(str::to_string),
        }))
    };
    let logs = LogTotals {
        lines: 5,
        ..LogTotals::default()
    };
    gathers.on_part(seq, part(1, Some(logs.clone()), None));
    let done = gathers.on_part(seq, part(2, None, Some("shard 1: disk full")));
    let Some(Gather::Stats { acc, .. }) = done else {
        panic!("both shards answered");
    };
    assert_eq!(acc.by_state, [3; 9]);
    assert_eq!(acc.dlq, 3);
    let t = acc.totals;
    assert_eq!(
        (t.completed, t.dead, t.cancelled, t.upstream_failed),
        (3, 3, 3, 3)
    );
    assert_eq!(acc.services.len(), 2);
    assert_eq!(acc.logs, Some(logs), "shard 0's sink counters are kept");
    assert_eq!(acc.degraded.as_deref(), Some("shard 1: disk full"));
}

fn wait(asked: &[&str]) -> Gather {
    Gather::Wait {
        token: 1,
        asked: asked.iter().map(|s| s.to_string()).collect(),
        done: vec![None; asked.len()],
        error: None,
    }
}

fn watched(index: u32, status: Result<JobStatus, String>) -> Part {
    Part::Watched {
        index,
        status: Box::new(status),
    }
}

#[test]
fn a_wait_is_answered_when_every_job_is_terminal() {
    let gathers = Gathers::default();
    let seq = gathers.open(wait(&["TSK-1", "TSK-2"]), 2);
    assert!(gathers.on_part(seq, watched(1, Ok(job(2, 2)))).is_none());
    let Some(Gather::Wait {
        asked, done, error, ..
    }) = gathers.on_part(seq, watched(0, Ok(job(1, 1))))
    else {
        panic!("every job answered");
    };
    let reply = wait_reply(asked, done, error, false).expect("no error");
    let ids: Vec<u64> = reply.jobs.iter().map(|j| j.id).collect();
    assert_eq!(ids, [1, 2], "in the order asked");
    assert!(reply.pending.is_empty() && !reply.timed_out);
    assert!(gathers.expire(seq).is_none(), "the timeout finds it closed");
}

#[test]
fn a_wait_that_times_out_names_the_jobs_still_pending() {
    let gathers = Gathers::default();
    let seq = gathers.open(wait(&["TSK-1", "dag-2:B"]), 2);
    gathers.on_part(seq, watched(0, Ok(job(1, 1))));
    let Some(Gather::Wait {
        asked, done, error, ..
    }) = gathers.expire(seq)
    else {
        panic!("the wait was open");
    };
    let reply = wait_reply(asked, done, error, true).expect("no error");
    assert_eq!(reply.jobs.len(), 1);
    assert_eq!(reply.pending, ["dag-2:B"]);
    assert!(reply.timed_out);
    assert!(
        gathers.on_part(seq, watched(1, Ok(job(2, 2)))).is_none(),
        "late part dropped"
    );
}

#[test]
fn a_wait_reports_the_first_job_it_could_not_watch() {
    let gathers = Gathers::default();
    let seq = gathers.open(wait(&["A", "B", "C"]), 3);
    gathers.on_part(seq, watched(0, Err("no job named A".into())));
    gathers.on_part(seq, watched(1, Err("no job named B".into())));
    let Some(Gather::Wait {
        asked, done, error, ..
    }) = gathers.on_part(seq, watched(2, Ok(job(3, 3))))
    else {
        panic!("every part is in");
    };
    assert_eq!(
        wait_reply(asked, done, error, false).err().as_deref(),
        Some("no job named A")
    );
}
