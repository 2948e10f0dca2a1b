//! Snapshots: a restored core answers like the one that took the snapshot, records after the
//! snapshot replay on top of it, a corrupt snapshot is a typed error, and snapshots of old shards
//! split across a new shard count.

use std::time::Duration;

use super::*;

/// A core with something in every state: a mid-flight seed DAG (ready services, a failed job
/// waiting for its retry), a delayed job, a queued skill job, a dead job, finished and cancelled jobs.
fn busy() -> (Harness, WorkerId, Vec<JobId>) {
    let mut h = Harness::with(CoreConfig {
        dlq_limit: 5,
        ..config()
    });
    let w = h.worker(0, 8, &["GENERAL"]);
    let dag = h.seed_dag_mid_flight(w);
    let delayed = h.one_off("NOOP||3|60000");
    let gpu = h.one_off("GPU|frame|2|0");
    let done = h.one_off("NOOP");
    h.finish(done, 1, w, 0);
    let doomed = h.submit(Submission::OneOff(JobSpec {
        retries: 0,
        ..JobSpec::new(JobKind::Noop)
    }));
    let doomed = doomed.0.job(0);
    h.finish(doomed, 1, w, 3);
    let gone = h.one_off("RUN|x.py");
    let token = h.token();
    h.step(Input::Cancel {
        token,
        target: Target::Job(gone),
    });
    let mut jobs: Vec<JobId> = (0..5).map(|i| dag.job(i)).collect();
    jobs.extend([delayed, gpu, done, doomed, gone]);
    (h, w, jobs)
}

fn restore(snapshot: &Snapshot) -> Core {
    let bytes = snapshot.encode().unwrap();
    let decoded = Snapshot::decode(&bytes).unwrap();
    assert_eq!(&decoded, snapshot);
    Core::restore(
        config(),
        ShardInfo::SINGLE,
        Arc::new(LoadTable::new()),
        5,
        decoded,
    )
    .unwrap()
}

/// What a restored core must agree on (workers and `since` of timer-driven moves aside).
fn same_jobs(a: &Core, b: &Core, jobs: &[JobId]) {
    for &job in jobs {
        let (x, y) = (a.job(job).unwrap(), b.job(job).unwrap());
        assert_eq!(
            (
                x.state,
                x.attempts,
                x.failures,
                x.crashes,
                x.ready,
                x.last_error,
                x.submitted
            ),
            (
                y.state,
                y.attempts,
                y.failures,
                y.crashes,
                y.ready,
                y.last_error,
                y.submitted
            ),
            "{job}"
        );
        assert_eq!(
            (x.label, x.deps, x.started_at),
            (y.label, y.deps, y.started_at)
        );
    }
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(
        (sa.by_state, sa.dlq, sa.history),
        (sb.by_state, sb.dlq, sb.history)
    );
    assert_eq!(sa.totals.completed, sb.totals.completed);
    assert!(a.dead_letters().eq(b.dead_letters()));
    for skill in ["GENERAL", "GPU"] {
        assert_eq!(a.queued(skill, 100), b.queued(skill, 100), "{skill}");
    }
    assert_eq!(
        a.next_dag_k() + SKIP,
        b.next_dag_k(),
        "ids lost in a crash are skipped"
    );
}

#[test]
fn a_restored_core_answers_like_the_original() {
    let (h, _, jobs) = busy();
    let snap = h.core.snapshot();
    assert_eq!(snap.last_lsn, h.core.last_lsn());
    let mut back = restore(&snap);
    back.finish_recovery(h.now);
    same_jobs(&h.core, &back, &jobs);
    assert_eq!(back.lookup_name("RUN_CALC"), h.core.lookup_name("RUN_CALC"));
    assert!(
        back.job(jobs[0]).unwrap().adopting,
        "services wait for their worker"
    );
    // The failed job's backoff and the delay survive: they fire at their original due times.
    let h2_now = h.now + Duration::from_secs(61);
    back.handle(h2_now, Input::Tick);
    assert_eq!(back.state(jobs[2]), Some(JobState::Queued));
    assert_eq!(back.state(jobs[5]), Some(JobState::Queued));
    // A new submission gets a new id.
    let token = 1;
    back.handle(
        h2_now,
        Input::Submit {
            token,
            submission: Submission::OneOff(JobSpec::new(JobKind::Noop)),
        },
    );
    let fresh = DagId(snap.next_dag_k + SKIP).job(0);
    assert_eq!(back.state(fresh), Some(JobState::Queued));
}

#[test]
fn records_after_a_snapshot_replay_on_top_of_it() {
    let (mut h, w, jobs) = busy();
    let snap = h.core.snapshot();
    let before = h.log.len();
    // B's backoff ends and it is redeployed (attempt 2), becomes ready, RUN_CALC runs and ends.
    h.advance(Duration::from_secs(2));
    h.step(Input::ServiceReady {
        job: jobs[2],
        attempt: 2,
        worker: w,
    });
    h.finish(jobs[3], 1, w, 0);
    assert_eq!(h.state(jobs[4]), JobState::Pending);
    let token = h.token();
    h.step(Input::Cancel {
        token,
        target: Target::Job(jobs[5]),
    });
    let after = journaled(&h.log[before..]);
    assert!(after.len() >= 3, "{after:?}");
    let mut back = restore(&snap);
    for r in after {
        back.replay(r).unwrap();
    }
    back.finish_recovery(h.now);
    h.step(Input::Tick);
    same_jobs(&h.core, &back, &jobs);
    // The same core rebuilt from the whole journal agrees too.
    let full = Harness::recovered(config(), h.journal(), h.now);
    same_jobs(&h.core, &full.core, &jobs);
}

#[test]
fn corrupt_snapshots_are_typed_errors() {
    let (h, _, jobs) = busy();
    let good = h.core.snapshot();
    let load = || Arc::new(LoadTable::new());
    let try_restore =
        |s: Snapshot| Core::restore(config(), ShardInfo::SINGLE, load(), 1, s).map(|_| ());
    let dag = jobs[0].dag();
    let seed_dag =
        |s: &mut Snapshot| -> usize { s.submissions.iter().position(|x| x.dag == dag).unwrap() };
    let mut s = good.clone();
    s.format += 1;
    assert!(matches!(try_restore(s), Err(RestoreError::Format { .. })));
    let mut s = good.clone();
    let i = seed_dag(&mut s);
    s.submissions[i].graph.as_mut().unwrap().parent_start[1] = 99;
    assert!(matches!(try_restore(s), Err(RestoreError::BadGraph { .. })));
    let mut s = good.clone();
    let i = seed_dag(&mut s);
    s.submissions[i].jobs[3].state = JobState::Queued;
    assert!(matches!(
        try_restore(s),
        Err(RestoreError::Inconsistent { .. })
    ));
    let mut s = good.clone();
    let i = seed_dag(&mut s);
    s.submissions[i].jobs[2].wake = None;
    assert!(matches!(
        try_restore(s),
        Err(RestoreError::Inconsistent { .. })
    ));
    let mut s = good.clone();
    s.submissions[0].jobs[0].flags |= 0x80;
    assert!(matches!(
        try_restore(s),
        Err(RestoreError::Inconsistent { .. })
    ));
    let mut s = good.clone();
    s.history.clear();
    assert!(matches!(
        try_restore(s),
        Err(RestoreError::BadHistory { .. })
    ));
    let mut s = good.clone();
    s.names.push(jobs[6]);
    assert_eq!(try_restore(s), Err(RestoreError::BadName { job: jobs[6] }));
    let mut s = good.clone();
    s.submissions.swap(0, 1);
    assert!(matches!(
        try_restore(s),
        Err(RestoreError::DuplicateDag { .. })
    ));
    let mut s = good.clone();
    s.submissions[0].jobs[0].spec.kind = JobKind::Run {
        file: "../escape.py".into(),
        args: Box::new([]),
    };
    assert!(matches!(try_restore(s), Err(RestoreError::BadSpec { .. })));
    let mut core = restore(&good);
    assert!(matches!(
        core.absorb(good.clone()),
        Err(RestoreError::DuplicateDag { .. })
    ));
    core.finish_recovery(h.now);
    assert_eq!(core.absorb(good.clone()), Err(RestoreError::AfterRecovery));
    let bytes = good.encode().unwrap();
    assert!(Snapshot::decode(&bytes[..bytes.len() / 2]).is_err());
    assert!(Snapshot::decode(&[]).is_err());
}

#[test]
fn old_shards_snapshots_split_across_a_new_shard_count() {
    let load = Arc::new(LoadTable::new());
    let mut old: Vec<Harness> = (0..2)
        .map(|index| Harness::shard(config(), ShardInfo { index, count: 2 }, load.clone()))
        .collect();
    let mut all = Vec::new();
    for round in 0..5 {
        for h in old.iter_mut() {
            let text = format!("A{round}|NOOP||1|0|[] ; B{round}|NOOP||1|0|[A{round}]");
            all.push(h.dag(&text));
        }
    }
    let snaps: Vec<Snapshot> = old.iter().map(|h| h.core.snapshot()).collect();
    let count = 3;
    let mut new: Vec<Core> = (0..count)
        .map(|index| {
            let shard = ShardInfo { index, count };
            let mut core = Core::new(config(), shard, Arc::new(LoadTable::new()), 1);
            for s in &snaps {
                core.absorb(s.clone()).unwrap();
            }
            core.finish_recovery(old[0].now);
            core
        })
        .collect();
    for dag in &all {
        let owners: Vec<usize> = (0..3).filter(|&i| new[i].dag(*dag).is_some()).collect();
        assert_eq!(owners, vec![dag.owner(count) as usize], "{dag}");
        let i = owners[0];
        assert_eq!(new[i].state(dag.job(1)), Some(JobState::Blocked));
    }
    // Names resolve to the newest submission per shard; new ids pass every old one.
    assert!(new.iter().any(|c| c.lookup_name("B4").is_some()));
    let oldest_unused = all.iter().map(|d| d.0).max().unwrap() + 1;
    for (i, core) in new.iter_mut().enumerate() {
        core.handle(
            old[0].now,
            Input::Submit {
                token: 1,
                submission: Submission::OneOff(JobSpec::new(JobKind::Noop)),
            },
        );
        let next = ShardInfo {
            index: i as u32,
            count,
        }
        .dag_id(core.next_dag_k() - 1);
        assert!(next.0 >= oldest_unused, "shard {i} reused {next}");
        assert!(core.dag(next).is_some());
    }
}
