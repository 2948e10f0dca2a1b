//! Recovery from the journal: adopting running attempts after a master restart, the grace period,
//! orphan kills, repeated crashes, and typed errors for records that do not fit.

use std::time::Duration;

use super::*;

const GRACE: Duration = Duration::from_secs(10);

/// A master that dispatched `RUN|a.py` (attempt 1) to worker slot 0, then died.
fn crashed_with_one_running() -> (Vec<Record>, JobId, Time) {
    let mut h = Harness::new();
    h.worker(0, 2, &["GENERAL"]);
    let job = h.one_off("RUN|a.py");
    assert_eq!(h.state(job), JobState::Running);
    (h.journal(), job, h.now)
}

#[test]
fn a_reported_attempt_is_adopted_without_a_new_dispatch() {
    let (records, job, now) = crashed_with_one_running();
    let mut h = Harness::recovered(config(), records, now + Duration::from_secs(1));
    assert!(h.core.job(job).unwrap().adopting);
    assert_eq!(h.core.poll_timeout(), Some(h.now + GRACE));
    // The worker (the same process: slot 0 is its instance here) re-registers under a new id and
    // lists its attempt; the report comes first.
    let w = WorkerId::new(0, 2).unwrap();
    let outs = h.adopt(w, job, 1);
    assert!(
        outs.is_empty(),
        "parked until the worker registers: {outs:?}"
    );
    let outs = h.worker_outs(0, 2);
    assert!(
        dispatches(&outs).is_empty() && kills(&outs).is_empty(),
        "{outs:?}"
    );
    let view = h.core.job(job).unwrap();
    assert_eq!(
        (view.state, view.attempts, view.worker),
        (JobState::Running, 1, Some(w))
    );
    assert!(!view.adopting);
    assert_eq!(h.load.load(w).unwrap().running, 1, "the slot is reserved");
    // The grace ends with nothing left to re-queue.
    let outs = h.advance(GRACE);
    assert!(journaled(&outs).is_empty(), "{outs:?}");
    h.finish(job, 1, w, 0);
    assert_eq!(h.state(job), JobState::Completed);
    assert_eq!(h.load.running_total(), 0);
    let totals = h.core.stats().totals;
    assert_eq!(
        (totals.adopted, totals.orphaned, totals.requeued_on_loss),
        (1, 0, 0)
    );
}

#[test]
fn an_unreported_attempt_is_requeued_when_the_grace_ends() {
    let (records, job, now) = crashed_with_one_running();
    let mut h = Harness::recovered(config(), records, now);
    let w = h.worker(1, 1, &["GENERAL"]);
    assert_eq!(
        h.state(job),
        JobState::Running,
        "not re-queued during the grace"
    );
    assert_eq!(h.load.load(w).unwrap().running, 0);
    let outs = h.advance(GRACE);
    let ended = journaled(&outs);
    assert!(matches!(
        ended.first(),
        Some(Record::AttemptEnded {
            attempt: 1,
            cause: EndCause::WorkerLost,
            next: Next::Requeued,
            ..
        })
    ));
    assert_eq!(dispatches(&outs), vec![(w, job, 2)]);
    assert_eq!(h.core.job(job).unwrap().crashes, 1);
    // The old worker shows up late: its copy is an orphan and must die.
    let late = WorkerId::new(2, 1).unwrap();
    h.worker(2, 1, &["GENERAL"]);
    let outs = h.adopt(late, job, 1);
    assert_eq!(kills(&outs), vec![(job, KillReason::Orphaned)]);
    assert_eq!(h.core.job(job).unwrap().worker, Some(w));
}

#[test]
fn reports_the_core_cannot_account_for_are_killed() {
    let mut h = Harness::new();
    let w = h.worker(0, 4, &["GENERAL"]);
    let done = h.one_off("RUN|a.py");
    let cancelled = h.one_off("RUN|b.py");
    let other = h.one_off("RUN|c.py");
    h.finish(done, 1, w, 0);
    let (records, now) = (h.journal(), h.now);
    // While the master is down nothing changes; after the restart `cancelled` is cancelled.
    let mut h = Harness::recovered(config(), records, now);
    let token = h.token();
    h.step(Input::Cancel {
        token,
        target: Target::Job(cancelled),
    });
    let w2 = h.worker(1, 4, &["GENERAL"]);
    let unknown = DagId(999).job(0);
    for (job, attempt) in [(done, 1), (cancelled, 1), (unknown, 1), (other, 7)] {
        let outs = h.adopt(w2, job, attempt);
        assert_eq!(kills(&outs), vec![(job, KillReason::Orphaned)], "{job}");
    }
    // The right report for `other` is still adopted; a second worker claiming it is an orphan.
    assert!(h.adopt(w2, other, 1).is_empty());
    assert!(
        h.adopt(w2, other, 1).is_empty(),
        "a duplicate report changes nothing"
    );
    let w3 = h.worker(2, 4, &["GENERAL"]);
    assert_eq!(
        kills(&h.adopt(w3, other, 1)),
        vec![(other, KillReason::Orphaned)]
    );
    assert_eq!(h.core.stats().totals.orphaned, 5);
    // A killed orphan's final report is stale: it releases nothing.
    h.finish(cancelled, 1, w2, 1);
    assert_eq!(
        h.load.load(w2).unwrap().running,
        1,
        "only `other` holds a slot"
    );
}

#[test]
fn an_attempt_whose_dispatch_record_was_lost_is_adopted_and_nothing_runs_before_its_worker_is_back()
{
    let (mut records, job, now) = crashed_with_one_running();
    // The dispatch left without waiting for its record, which was not durable when the master died.
    assert!(matches!(records.pop(), Some(Record::Dispatched { .. })));
    let mut h = Harness::recovered(config(), records, now);
    assert_eq!(h.state(job), JobState::Queued);
    // Another worker registers first: the queued job must not get attempt 1 a second time.
    let other = h.worker_outs(5, 1);
    assert!(dispatches(&other).is_empty(), "held: {other:?}");
    let w = WorkerId::new(0, 2).unwrap();
    assert!(h.adopt(w, job, 1).is_empty());
    let outs = h.worker_outs(0, 2);
    assert!(
        kills(&outs).is_empty() && dispatches(&outs).is_empty(),
        "{outs:?}"
    );
    assert!(
        journaled(&outs).iter().any(|r| matches!(
            r,
            Record::Dispatched { job: j, attempt: 1, worker, .. } if *j == job && *worker == w
        )),
        "the adopted attempt is journaled now: {outs:?}"
    );
    let view = h.core.job(job).unwrap();
    assert_eq!(
        (view.state, view.attempts, view.worker),
        (JobState::Running, 1, Some(w))
    );
    h.finish(job, 1, w, 0);
    assert_eq!(h.state(job), JobState::Completed);
    assert_eq!(h.core.stats().totals.adopted, 1);
}

#[test]
fn dispatch_resumes_when_the_grace_ends_without_the_known_worker() {
    let (mut records, job, now) = crashed_with_one_running();
    records.pop();
    let mut h = Harness::recovered(config(), records, now);
    let other = WorkerId::new(5, 1).unwrap();
    assert!(dispatches(&h.worker_outs(5, 1)).is_empty());
    let outs = h.advance(GRACE);
    assert!(
        journaled(&outs)
            .iter()
            .any(|r| matches!(r, Record::WorkerLeft { instance: 0, .. })),
        "{outs:?}"
    );
    assert_eq!(dispatches(&outs), vec![(other, job, 1)]);
}

#[test]
fn a_timeout_still_counts_while_an_attempt_waits_for_its_worker() {
    let mut h = Harness::new();
    h.worker(0, 1, &["GENERAL"]);
    let job = h.one_off("RUN|slow.py");
    let mut spec_timeout = h.core.spec(job).unwrap().clone();
    spec_timeout.timeout_ms = std::num::NonZeroU32::new(2_000);
    let timed = h.submit(Submission::OneOff(spec_timeout)).0.job(0);
    h.finish(job, 1, WorkerId::new(0, 1).unwrap(), 0);
    assert_eq!(h.state(timed), JobState::Running);
    let (records, now) = (h.journal(), h.now);
    let mut h = Harness::recovered(config(), records, now + Duration::from_secs(1));
    let outs = h.advance(Duration::from_secs(1));
    assert!(matches!(
        journaled(&outs).first(),
        Some(Record::AttemptEnded {
            cause: EndCause::TimedOut,
            ..
        })
    ));
    assert_eq!(h.state(timed), JobState::Failed);
    let w = h.worker(1, 1, &["GENERAL"]);
    assert_eq!(
        kills(&h.adopt(w, timed, 1)),
        vec![(timed, KillReason::Orphaned)]
    );
}

#[test]
fn zero_grace_requeues_at_once_and_a_second_crash_replays_cleanly() {
    let (records, job, now) = crashed_with_one_running();
    let cfg = CoreConfig {
        adopt_grace: Duration::ZERO,
        ..config()
    };
    let mut h = Harness::recovered(cfg.clone(), records.clone(), now);
    assert_eq!(h.state(job), JobState::Queued);
    let mut all = records;
    all.extend(journaled(&h.core.drain_outputs().collect::<Vec<_>>()));
    let w = h.worker(4, 1, &["GENERAL"]);
    assert_eq!(h.core.job(job).unwrap().worker, Some(w));
    all.extend(h.journal());
    // The second master replays both lives of the job without a contradiction.
    let h2 = Harness::recovered(config(), all, h.now);
    let view = h2.core.job(job).unwrap();
    assert_eq!(
        (view.state, view.attempts, view.crashes),
        (JobState::Running, 2, 1)
    );
}

#[test]
fn bad_records_are_typed_errors() {
    let (records, job, _) = crashed_with_one_running();
    let records: Vec<Record> = records.into_iter().filter(|r| r.dag().is_some()).collect();
    let fresh = || Core::new(config(), ShardInfo::SINGLE, Arc::new(LoadTable::new()), 1);
    let mut core = fresh();
    let err = core.replay(records[1].clone()).unwrap_err();
    assert_eq!(err, ReplayError::UnknownJob { job });
    core.replay(records[0].clone()).unwrap();
    assert_eq!(
        core.replay(records[0].clone()),
        Err(ReplayError::DuplicateDag { dag: job.dag() })
    );
    let ended = |attempt, next| Record::AttemptEnded {
        job,
        attempt,
        at: Time(5),
        cause: EndCause::Reported(Outcome::Exited { code: 0 }),
        next,
    };
    assert!(matches!(
        core.replay(ended(1, Next::Completed)),
        Err(ReplayError::WrongState { .. })
    ));
    core.replay(records[1].clone()).unwrap();
    assert_eq!(
        core.replay(ended(2, Next::Completed)),
        Err(ReplayError::WrongAttempt {
            job,
            current: 1,
            attempt: 2
        })
    );
    assert!(matches!(
        core.replay(ended(1, Next::Retry { due: Time(9) })),
        Err(ReplayError::WrongState { .. })
    ));
    let ready = Record::ServiceReady {
        job,
        attempt: 1,
        at: Time(6),
    };
    assert_eq!(core.replay(ready), Err(ReplayError::NotAService { job }));
    assert!(matches!(
        core.replay_bytes(b"not a record"),
        Err(ReplayError::Decode(_))
    ));
    let huge = Record::Cancelled {
        target: Target::Dag(DagId(DagId::MAX + 1)),
        at: Time(1),
    };
    assert!(matches!(
        core.replay(huge),
        Err(ReplayError::BadDagId { .. })
    ));
    let stop = |dag: DagId| Record::Stopped {
        job: dag.job(0),
        at: Time(1),
    };
    let mut sharded = Core::new(
        config(),
        ShardInfo { index: 1, count: 2 },
        Arc::new(LoadTable::new()),
        1,
    );
    assert_eq!(
        sharded.replay(stop(DagId(4))),
        Err(ReplayError::WrongShard {
            dag: DagId(4),
            owner: 0
        })
    );
    // The good record still applies after the bad ones, and nothing replays after recovery.
    core.replay(ended(1, Next::Completed)).unwrap();
    assert_eq!(core.state(job), Some(JobState::Completed));
    core.finish_recovery(Time(100));
    assert_eq!(
        core.replay(records[0].clone()),
        Err(ReplayError::AfterRecovery)
    );
}

#[test]
fn replay_accepts_interleaved_submissions_at_their_own_times() {
    // Two old shards' records, the later shard's first: each job is released at its own time.
    let mut a = Harness::shard(
        config(),
        ShardInfo { index: 0, count: 2 },
        Arc::new(LoadTable::new()),
    );
    let mut b = Harness::shard(
        config(),
        ShardInfo { index: 1, count: 2 },
        Arc::new(LoadTable::new()),
    );
    b.now = Time::from_millis(50_000);
    let da = a.dag("P|NOOP||1|0|[] ; C|NOOP||1|100000|[P]");
    let db = b.one_off("NOOP||1|1000");
    let wa = a.worker(0, 1, &["GENERAL"]);
    a.finish(da.job(0), 1, wa, 0);
    let mut records = b.journal();
    records.extend(a.journal());
    let mut core = Core::new(config(), ShardInfo::SINGLE, Arc::new(LoadTable::new()), 3);
    for r in records {
        core.replay(r).unwrap();
    }
    // C's delay counts from P's completion at 1 s (due at 101 s), not from the other shard's
    // clock at 50 s (which would make it due at 150 s).
    core.finish_recovery(Time::from_millis(120_000));
    assert_eq!(core.state(da.job(1)), Some(JobState::Queued));
    assert_eq!(core.state(db), Some(JobState::Queued));
    assert!(core.next_dag_k() >= 2, "past both recovered ids");
}

#[test]
fn an_orphan_ahead_of_a_waiting_attempt_raises_the_next_number() {
    // Attempt 1 is durable; attempt 2 was dispatched (and the loss of 1 recorded) but not persisted.
    let (records, job, now) = crashed_with_one_running();
    let mut h = Harness::recovered(config(), records, now);
    let w = h.worker(1, 2, &["GENERAL"]);
    assert_eq!(
        kills(&h.adopt(w, job, 2)),
        vec![(job, KillReason::Orphaned)]
    );
    assert_eq!(
        h.core.job(job).unwrap().attempts,
        1,
        "the waiting attempt is untouched"
    );
    let outs = h.advance(GRACE);
    assert_eq!(
        dispatches(&outs),
        vec![(w, job, 3)],
        "past the orphan's number"
    );
    // The floor is not journaled, but the record of attempt 3 replays after attempt 1.
    let mut all = h.journal();
    all.splice(0..0, crashed_with_one_running().0);
    let again = Harness::recovered(config(), all, h.now);
    assert_eq!(again.core.job(job).unwrap().attempts, 3);
}

#[test]
fn an_adopted_job_queued_again_has_one_queue_entry() {
    // Before the crash: A runs on a one-slot worker (its dispatch record is lost), B waits.
    let mut h = Harness::new();
    h.worker(0, 1, &["GENERAL"]);
    let a = h.one_off("RUN|a.py");
    let b = h.one_off("RUN|b.py|5|0");
    assert_eq!(h.state(b), JobState::Queued);
    let mut records = h.journal();
    records.retain(|r| !matches!(r, Record::Dispatched { .. }));
    let mut h = Harness::recovered(config(), records, h.now);
    // The worker comes back with A: adopted, its slot taken, so B stays on top of the queue.
    let w = WorkerId::new(0, 1).unwrap();
    h.adopt(w, a, 1);
    h.worker(0, 1, &["GENERAL"]);
    assert_eq!(h.core.job(a).unwrap().worker, Some(w));
    assert_eq!(h.core.queued("GENERAL", 10), vec![b]);
    // The worker is lost: A is queued again, once (the entry it had before the adoption is stale).
    h.step(Input::WorkerLost { worker: w });
    assert_eq!(h.core.queued("GENERAL", 10), vec![b, a]);
}

#[test]
fn an_adopted_job_queued_again_waits_for_the_record_of_its_requeue() {
    let (mut records, job, now) = crashed_with_one_running();
    records.pop();
    let mut h = Harness::recovered(config(), records, now);
    let w = WorkerId::new(0, 2).unwrap();
    h.adopt(w, job, 1);
    h.worker_outs(0, 2);
    let other = h.worker(1, 2, &["GENERAL"]);
    assert_eq!(h.core.job(job).unwrap().worker, Some(w));
    // The adopted worker is lost before anything is durable: the job is queued again, and its
    // next dispatch must wait for that requeue (and the adoption) to be on disk — the entry the
    // job had in the queue before the adoption must not stand in for it.
    h.auto_persist = false;
    let outs = h.step(Input::WorkerLost { worker: w });
    assert!(dispatches(&outs).is_empty(), "dispatched early: {outs:?}");
    let lsn = h.core.last_lsn();
    let outs = h.step(Input::Persisted { lsn });
    assert_eq!(dispatches(&outs), vec![(other, job, 2)]);
}

#[test]
fn a_report_of_an_attempt_for_a_job_queued_after_the_restart_is_an_orphan() {
    let (records, _, now) = crashed_with_one_running();
    let mut h = Harness::recovered(config(), records, now);
    // Holding (worker instance 0 is not back): a job submitted now stays queued.
    let fresh = h.one_off("RUN|b.py");
    assert_eq!(h.state(fresh), JobState::Queued);
    let w = WorkerId::new(0, 2).unwrap();
    let outs = h.adopt(w, fresh, 1);
    assert!(outs.is_empty(), "parked: {outs:?}");
    let outs = h.worker_outs(0, 2);
    assert_eq!(kills(&outs), vec![(fresh, KillReason::Orphaned)]);
    assert!(
        dispatches(&outs).contains(&(w, fresh, 2)),
        "past the orphan's number: {outs:?}"
    );
}

#[test]
fn a_service_whose_readiness_was_lost_releases_its_children_when_its_worker_says_it_again() {
    let mut h = Harness::new();
    let w = h.worker(0, 2, &["GENERAL"]);
    let dag = h.dag("S|DEPLOY|server.py|1|0|[] ; C|RUN|c.py|1|0|[S]");
    let (service, child) = (dag.job(0), dag.job(1));
    h.step(Input::ServiceReady {
        job: service,
        attempt: 1,
        worker: w,
    });
    assert_eq!(h.state(child), JobState::Running);
    // The crash lost the readiness record and everything after it.
    let mut records = h.journal();
    let ready = records
        .iter()
        .position(|r| matches!(r, Record::ServiceReady { .. }))
        .expect("journaled");
    records.truncate(ready);
    let mut h = Harness::recovered(config(), records, h.now);
    let back = WorkerId::new(0, 2).unwrap();
    h.adopt(back, service, 1);
    h.worker_outs(0, 2);
    assert_eq!(h.state(child), JobState::Blocked);
    // The worker repeats the readiness of the services it runs after registering.
    let outs = h.step(Input::ServiceReady {
        job: service,
        attempt: 1,
        worker: back,
    });
    assert_eq!(dispatches(&outs), vec![(back, child, 1)]);
}
