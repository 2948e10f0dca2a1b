//! Job transitions: submit, delays, priorities, skills, DAG release, retries, DLQ, cancel, timeout,
//! persistence gating, history.

use std::sync::Arc;
use std::time::Duration;

use super::*;

#[test]
fn one_off_runs_to_completion() {
    let mut h = Harness::new();
    let w = h.worker(0, 4, &["GENERAL"]);
    let (dag, outs) = h.submit(Submission::OneOff(JobSpec::new(JobKind::Noop)));
    let job = dag.job(0);
    assert_eq!(dispatches(&outs), vec![(w, job, 1)]);
    assert_eq!(h.state(job), JobState::Running);
    assert_eq!(h.load.load(w).unwrap().running, 1);
    h.finish(job, 1, w, 0);
    assert_eq!(h.state(job), JobState::Completed);
    assert_eq!(h.load.running_total(), 0);
    assert_eq!(h.core.stats().totals.completed, 1);
    assert_eq!(h.core.label(job), Some(JobRef::Task(dag)));
}

#[test]
fn replies_wait_for_persistence_and_keep_request_order() {
    let mut h = Harness::new();
    h.auto_persist = false;
    let spec = JobSpec::new(JobKind::Noop);
    let outs = h.step(Input::Submit {
        token: 10,
        submission: Submission::OneOff(spec),
    });
    let lsn = outs
        .iter()
        .find_map(|o| match o {
            Output::Journal {
                lsn,
                record: Record::Submitted { .. },
            } => Some(*lsn),
            _ => None,
        })
        .expect("journaled");
    assert!(
        replies(&outs).is_empty(),
        "acknowledged before persisted: {outs:?}"
    );
    // A rejected submission after it must not overtake the pending acknowledgement.
    let bad = Submission::Dag(Vec::new());
    let outs = h.step(Input::Submit {
        token: 11,
        submission: bad,
    });
    assert!(replies(&outs).is_empty());
    let outs = h.step(Input::Persisted { lsn });
    let tokens: Vec<u64> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Reply { token, .. } => Some(*token),
            _ => None,
        })
        .collect();
    assert_eq!(tokens, vec![10, 11]);
}

#[test]
fn delayed_job_is_pending_until_due() {
    let mut h = Harness::new();
    let w = h.worker(0, 1, &["GENERAL"]);
    let job = h.one_off("NOOP||1|500");
    assert_eq!(h.state(job), JobState::Pending);
    assert_eq!(h.core.poll_timeout(), Some(h.now.add_millis(500)));
    assert!(dispatches(&h.advance(Duration::from_millis(499))).is_empty());
    assert_eq!(
        dispatches(&h.advance(Duration::from_millis(1))),
        vec![(w, job, 1)]
    );
}

#[test]
fn higher_priority_first_and_fifo_among_equals() {
    let mut h = Harness::new();
    let low = h.one_off("NOOP||0");
    let a = h.one_off("NOOP||5");
    let b = h.one_off("NOOP||5");
    let mid = h.one_off("NOOP||2");
    assert_eq!(h.core.queued(GENERAL, 10), vec![a, b, mid, low]);
    let w = h.worker(0, 1, &["GENERAL"]);
    // One at a time, or all at once when prefetched: in priority order either way.
    let mut finished = 0;
    while finished < 4 {
        let (_, job, attempt) = dispatches(&h.log)[finished];
        h.finish(job, attempt, w, 0);
        finished += 1;
    }
    let order: Vec<JobId> = dispatches(&h.log).iter().map(|d| d.1).collect();
    assert_eq!(order, vec![a, b, mid, low]);
}

#[test]
fn a_skill_nobody_has_never_blocks_other_jobs() {
    let mut h = Harness::new();
    let w = h.worker(0, 2, &["GENERAL"]);
    let pdf = h.one_off("PDF_CONVERT|x.pdf|9");
    let noop = h.one_off("NOOP||1");
    assert_eq!(h.state(pdf), JobState::Queued);
    assert_eq!(h.state(noop), JobState::Running);
    let pw = h.worker(1, 1, &["PDF_CONVERT"]);
    assert_eq!(h.state(pdf), JobState::Running);
    assert_eq!(h.core.job(pdf).unwrap().worker, Some(pw));
    assert_ne!(pw, w);
}

#[test]
fn dag_children_wait_for_all_parents_and_delay_from_release() {
    let mut h = Harness::new();
    let w = h.worker(0, 8, &["GENERAL"]);
    let dag = h.dag("A|NOOP||1|0|[] ; B|NOOP||1|0|[] ; C|NOOP||1|300|[A, B]");
    let (a, b, c) = (dag.job(0), dag.job(1), dag.job(2));
    assert_eq!(h.state(c), JobState::Blocked);
    h.now = h.now + Duration::from_secs(10);
    h.finish(a, 1, w, 0);
    assert_eq!(h.state(c), JobState::Blocked);
    h.finish(b, 1, w, 0);
    assert_eq!(h.state(c), JobState::Pending);
    assert_eq!(h.core.poll_timeout(), Some(h.now.add_millis(300)));
    assert_eq!(
        dispatches(&h.advance(Duration::from_millis(300))),
        vec![(w, c, 1)]
    );
    assert_eq!(h.core.job(c).unwrap().deps, vec!["A", "B"]);
    assert_eq!(
        h.core.resolve(&"C".parse().unwrap()),
        Some(Resolved::Job(c))
    );
    assert_eq!(
        h.core.resolve(&format!("dag-{}:B", dag.0).parse().unwrap()),
        Some(Resolved::Job(b))
    );
}

#[test]
fn invalid_dag_is_rejected_whole_and_journals_nothing() {
    let mut h = Harness::new();
    let jobs = vec![
        DagJobSpec {
            name: "A".into(),
            spec: JobSpec::new(JobKind::Noop),
            deps: vec![],
        },
        DagJobSpec {
            name: "B".into(),
            spec: JobSpec::new(JobKind::Noop),
            deps: vec!["Z".into()],
        },
    ];
    let outs = h.step(Input::Submit {
        token: 1,
        submission: Submission::Dag(jobs),
    });
    assert!(matches!(
        replies(&outs)[..],
        [Err(RequestError::Rejected(grammar::GrammarError::Dag(
            dag::DagError::UnknownDependency { .. }
        )))]
    ));
    assert!(outs.iter().all(|o| !matches!(o, Output::Journal { .. })));
    assert_eq!(h.core.stats().live, 0);
    let bad_path = JobSpec::new(JobKind::Run {
        file: "../x".into(),
        args: Box::new([]),
    });
    let outs = h.step(Input::Submit {
        token: 2,
        submission: Submission::OneOff(bad_path),
    });
    assert!(matches!(
        replies(&outs)[..],
        [Err(RequestError::Rejected(_))]
    ));
}

#[test]
fn failures_retry_with_backoff_then_die_into_the_dlq() {
    let mut h = Harness::new();
    let w = h.worker(0, 1, &["GENERAL"]);
    let dag = h.dag("A|RUN|a.py|1|0|[] ; B|NOOP||1|0|[A] ; C|NOOP||1|0|[B]");
    let a = dag.job(0);
    let mut delays = Vec::new();
    for attempt in 1..=4 {
        assert_eq!(h.core.job(a).unwrap().attempts, attempt);
        h.finish(a, attempt, w, 1);
        if attempt == 4 {
            break;
        }
        assert_eq!(h.state(a), JobState::Failed);
        let due = h.core.poll_timeout().unwrap();
        delays.push(due.since(h.now));
        h.now = due;
        h.step(Input::Tick);
    }
    assert_eq!(delays, [100, 200, 400].map(Duration::from_millis));
    assert_eq!(h.state(a), JobState::Dead);
    assert_eq!(h.state(dag.job(1)), JobState::UpstreamFailed);
    assert_eq!(h.state(dag.job(2)), JobState::UpstreamFailed);
    let dlq: Vec<_> = h.core.dead_letters().collect();
    assert_eq!(dlq.len(), 1);
    assert_eq!(
        (dlq[0].job, dlq[0].attempts, &*dlq[0].error),
        (a, 4, "exited with code 1")
    );
    assert_eq!(h.load.running_total(), 0);
}

#[test]
fn backoff_is_capped_and_jittered_deterministically() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut h = Harness::with(CoreConfig {
            backoff_jitter_percent: 50,
            ..config()
        });
        let w = h.worker(0, 1, &["GENERAL"]);
        let mut spec = grammar::parse_one_off("RUN|a.py").unwrap();
        spec.retries = 10;
        let job = h.submit(Submission::OneOff(spec)).0.job(0);
        let mut delays = Vec::new();
        for attempt in 1..=8 {
            h.finish(job, attempt, w, 3);
            let due = h.core.poll_timeout().unwrap();
            delays.push(due.since(h.now));
            h.now = due;
            h.step(Input::Tick);
        }
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(1)),
            "{delays:?}"
        );
        assert!(delays[7] >= Duration::from_millis(500), "{delays:?}");
        runs.push(delays);
    }
    assert_eq!(runs[0], runs[1], "same seed, same jitter");
}

#[test]
fn cancel_works_from_every_live_state() {
    let mut h = Harness::new();
    let pending = h.one_off("NOOP||1|10000");
    let queued = h.one_off("PDF|x");
    let dag = h.dag("P|NOOP||1|0|[] ; K|NOOP||1|0|[P] ; G|NOOP||1|0|[K]");
    let (p, k, g) = (dag.job(0), dag.job(1), dag.job(2));
    let w = h.worker(0, 1, &["GENERAL"]);
    assert_eq!(h.state(p), JobState::Running);
    for job in [pending, queued, k] {
        let t = h.token();
        let outs = h.step(Input::Cancel {
            token: t,
            target: Target::Job(job),
        });
        assert!(
            matches!(replies(&outs)[..], [Ok(Ack::Cancelled { .. })]),
            "{outs:?}"
        );
        assert_eq!(h.state(job), JobState::Cancelled);
    }
    assert_eq!(
        h.state(g),
        JobState::Cancelled,
        "descendant of a cancelled job"
    );
    // Running: killed, state CANCELLED at once, slot held until the worker's report.
    let outs = h.step(Input::Cancel {
        token: 99,
        target: Target::Job(p),
    });
    assert_eq!(kills(&outs), vec![(p, KillReason::Cancelled)]);
    assert_eq!(h.state(p), JobState::Cancelled);
    assert_eq!(h.load.running_total(), 1);
    let outcome = Outcome::Killed;
    h.step(Input::JobFinished {
        job: p,
        attempt: 1,
        worker: w,
        outcome,
        duration: Duration::ZERO,
    });
    assert_eq!(
        h.state(p),
        JobState::Cancelled,
        "a late report never revives a cancelled job"
    );
    assert_eq!(h.load.running_total(), 0);
    // Terminal: refused.
    let outs = h.step(Input::Cancel {
        token: 100,
        target: Target::Job(p),
    });
    assert!(matches!(
        replies(&outs)[..],
        [Err(RequestError::AlreadyFinished {
            state: JobState::Cancelled,
            ..
        })]
    ));
}

#[test]
fn cancel_a_failed_job_waiting_for_its_retry() {
    let mut h = Harness::new();
    let w = h.worker(0, 1, &["GENERAL"]);
    let job = h.one_off("RUN|a.py");
    h.finish(job, 1, w, 1);
    assert_eq!(h.state(job), JobState::Failed);
    h.step(Input::Cancel {
        token: 5,
        target: Target::Job(job),
    });
    assert_eq!(h.state(job), JobState::Cancelled);
    assert!(
        dispatches(&h.advance(Duration::from_secs(5))).is_empty(),
        "the backoff timer is stale"
    );
}

#[test]
fn cancel_a_whole_dag() {
    let mut h = Harness::new();
    let dag = h.dag("A|NOOP||1|0|[] ; B|NOOP||1|0|[A] ; C|NOOP||1|0|[]");
    let outs = h.step(Input::Cancel {
        token: 1,
        target: Target::Dag(dag),
    });
    assert_eq!(replies(&outs), vec![Ok(Ack::Cancelled { jobs: 3 })]);
    let outs = h.step(Input::Cancel {
        token: 2,
        target: Target::Dag(dag),
    });
    assert_eq!(replies(&outs), vec![Err(RequestError::DagFinished { dag })]);
    let outs = h.step(Input::Cancel {
        token: 3,
        target: Target::Dag(DagId(999)),
    });
    assert_eq!(
        replies(&outs),
        vec![Err(RequestError::UnknownDag { dag: DagId(999) })]
    );
}

#[test]
fn timeout_kills_and_counts_as_a_failed_attempt() {
    let mut h = Harness::new();
    let w = h.worker(0, 1, &["GENERAL"]);
    let mut spec = grammar::parse_one_off("RUN|slow.py").unwrap();
    spec.timeout_ms = std::num::NonZeroU32::new(250);
    spec.retries = 0;
    let job = h.submit(Submission::OneOff(spec)).0.job(0);
    assert_eq!(h.core.poll_timeout(), Some(h.now.add_millis(250)));
    let outs = h.advance(Duration::from_millis(250));
    assert_eq!(kills(&outs), vec![(job, KillReason::TimedOut)]);
    assert_eq!(h.state(job), JobState::Dead);
    assert_eq!(h.core.job(job).unwrap().last_error, Some("timed out"));
    assert_eq!(
        h.load.running_total(),
        1,
        "held until the killed process is reported"
    );
    h.finish(job, 1, w, 137);
    assert_eq!(h.load.running_total(), 0);
    assert_eq!(h.state(job), JobState::Dead);
}

#[test]
fn stale_reports_are_ignored() {
    let mut h = Harness::new();
    let w = h.worker(0, 1, &["GENERAL"]);
    let other = h.worker(1, 1, &["GENERAL"]);
    let job = h.one_off("RUN|a.py");
    h.finish(job, 1, other, 0);
    h.finish(job, 2, w, 0);
    assert_eq!(h.state(job), JobState::Running);
    h.finish(job, 1, w, 0);
    h.finish(job, 1, w, 0);
    assert_eq!(h.state(job), JobState::Completed);
    assert_eq!(h.core.stats().totals.completed, 1);
    assert_eq!(h.core.stats().totals.stale_reports, 3);
    assert_eq!(h.load.running_total(), 0);
}

#[test]
fn watch_notifies_after_the_terminal_record_is_persisted() {
    let mut h = Harness::new();
    let w = h.worker(0, 1, &["GENERAL"]);
    let job = h.one_off("NOOP");
    assert!(h.step(Input::Watch { token: 77, job }).is_empty());
    h.auto_persist = false;
    let outs = h.finish(job, 1, w, 0);
    assert!(!outs.iter().any(|o| matches!(o, Output::Notify { .. })));
    let outs = h.step(Input::Persisted {
        lsn: h.core.last_lsn(),
    });
    assert_eq!(
        outs,
        vec![Output::Notify {
            token: 77,
            job,
            state: JobState::Completed
        }]
    );
    let outs = h.step(Input::Watch { token: 78, job });
    assert_eq!(
        outs,
        vec![Output::Notify {
            token: 78,
            job,
            state: JobState::Completed
        }]
    );
    let outs = h.step(Input::Watch {
        token: 79,
        job: DagId(12345).job(0),
    });
    assert!(matches!(
        replies(&outs)[..],
        [Err(RequestError::UnknownJob { .. })]
    ));
}

#[test]
fn history_and_dlq_are_bounded() {
    let cfg = CoreConfig {
        history_limit: 3,
        dlq_limit: 2,
        history_max_age: Duration::from_secs(60),
        ..config()
    };
    let mut h = Harness::with(cfg);
    let w = h.worker(0, 1, &["GENERAL"]);
    let mut ids = Vec::new();
    for _ in 0..5 {
        let mut spec = grammar::parse_one_off("RUN|x.py").unwrap();
        spec.retries = 0;
        let job = h.submit(Submission::OneOff(spec)).0.job(0);
        h.finish(job, 1, w, 1);
        ids.push(job);
    }
    assert!(h.core.job(ids[0]).is_none() && h.core.job(ids[1]).is_none());
    assert!(h.core.job(ids[2]).is_some());
    assert_eq!(
        h.core.dead_letters().map(|d| d.job).collect::<Vec<_>>(),
        vec![ids[3], ids[4]]
    );
    let s = h.core.stats();
    assert_eq!(
        (
            s.dlq,
            s.totals.dlq_evicted,
            s.totals.pruned,
            s.count(JobState::Dead)
        ),
        (2, 3, 2, 3)
    );
    assert_eq!(h.core.poll_timeout(), Some(h.now + Duration::from_secs(60)));
    h.advance(Duration::from_secs(60));
    assert_eq!(h.core.stats().count(JobState::Dead), 0, "aged out");
    assert_eq!(h.core.jobs(None, 10).len(), 0);
}

#[test]
fn live_job_limit_refuses_with_a_retryable_error() {
    let mut h = Harness::with(CoreConfig {
        max_live_jobs: 2,
        ..config()
    });
    h.one_off("NOOP");
    let outs = h.step(Input::Submit {
        token: 9,
        submission: Submission::Dag(grammar::parse_dag("A|NOOP||1|0|[] ; B|NOOP||1|0|[]").unwrap()),
    });
    let r = replies(&outs);
    assert!(matches!(&r[..], [Err(e @ RequestError::TooManyLiveJobs { .. })] if e.is_retryable()));
}

#[test]
fn listing_filters_and_orders_newest_first() {
    let mut h = Harness::new();
    let a = h.one_off("NOOP");
    let b = h.one_off("NOOP|||100");
    let c = h.one_off("NOOP");
    let all: Vec<JobId> = h.core.jobs(None, 10).iter().map(|v| v.id).collect();
    assert_eq!(all, vec![c, b, a]);
    let queued: Vec<JobId> = h
        .core
        .jobs(Some(JobState::Queued), 1)
        .iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(queued, vec![c]);
    assert_eq!(h.core.stats().count(JobState::Pending), 1);
}

#[test]
fn requests_for_another_shard_are_refused() {
    let load = Arc::new(LoadTable::new());
    let mut h = Harness::shard(config(), ShardInfo { index: 1, count: 2 }, load);
    let job = h.one_off("NOOP");
    assert_eq!(job.dag().owner(2), 1);
    let foreign = DagId(4).job(0);
    let outs = h.step(Input::Cancel {
        token: 1,
        target: Target::Job(foreign),
    });
    assert_eq!(
        replies(&outs),
        vec![Err(RequestError::WrongShard {
            dag: DagId(4),
            owner: 0
        })]
    );
}

#[test]
fn replaying_the_journal_rebuilds_the_seed_dag_mid_flight() {
    let mut h = Harness::new();
    let w = h.worker(0, 8, &["GENERAL"]);
    let dag = h.seed_dag_mid_flight(w);
    let records: Vec<Record> = h
        .log
        .iter()
        .filter_map(|o| match o {
            Output::Journal { record, .. } => Some(record.clone()),
            _ => None,
        })
        .collect();
    let mut fresh = Core::new(config(), ShardInfo::SINGLE, Arc::new(LoadTable::new()), 1);
    for r in records {
        fresh.replay(r).unwrap();
    }
    fresh.finish_recovery(h.now);
    let states: Vec<JobState> = (0..5).map(|i| fresh.state(dag.job(i)).unwrap()).collect();
    use JobState::*;
    // The services that were running wait for their worker to report them; B waits for its retry;
    // the rest wait for their dependencies.
    assert_eq!(states, vec![Running, Running, Failed, Blocked, Blocked]);
    assert!(fresh.job(dag.job(0)).unwrap().adopting);
    assert_eq!(fresh.job(dag.job(2)).unwrap().failures, 1);
    assert!(fresh.job(dag.job(1)).unwrap().spec.is_service());
    // Readiness was journaled, so A's release of RUN_CALC's counter survives: only B is missing.
    let outs_before = fresh.poll_output();
    assert!(outs_before.is_none(), "replay emits nothing");
}
