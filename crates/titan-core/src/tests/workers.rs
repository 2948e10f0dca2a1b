//! Workers: loss and crash limits, heartbeats, re-registration, multi-shard wake-ups, scaling.

use std::time::Duration;

use super::*;

#[test]
fn a_lost_worker_requeues_its_jobs_until_the_crash_limit() {
    let mut h = Harness::with(CoreConfig {
        crash_limit: 1,
        ..config()
    });
    let job = h.one_off("RUN|a.py");
    let w0 = h.worker(0, 1, &["GENERAL"]);
    let w1 = h.worker(1, 1, &["GENERAL"]);
    assert_eq!(h.core.job(job).unwrap().worker, Some(w0));
    let outs = h.step(Input::WorkerLost { worker: w0 });
    assert_eq!(dispatches(&outs), vec![(w1, job, 2)]);
    assert_eq!(
        h.load.load(w0).map(|l| (l.running, l.alive)),
        Some((0, false))
    );
    h.step(Input::WorkerLost { worker: w1 });
    assert_eq!(h.state(job), JobState::Dead);
    assert_eq!(h.core.job(job).unwrap().last_error, Some("worker lost"));
    assert_eq!(h.load.running_total(), 0);
    assert_eq!(h.core.stats().totals.requeued_on_loss, 2);
}

#[test]
fn missed_heartbeats_kill_a_home_worker() {
    let mut h = Harness::with(CoreConfig {
        heartbeat_timeout: Duration::from_secs(30),
        ..config()
    });
    let w = h.worker(0, 1, &["GENERAL"]);
    let job = h.one_off("RUN|a.py");
    h.advance(Duration::from_secs(20));
    h.step(Input::Heartbeat { worker: w });
    assert_eq!(h.core.poll_timeout(), Some(h.now + Duration::from_secs(30)));
    let outs = h.advance(Duration::from_secs(30));
    assert_eq!(
        outs.iter()
            .filter(|o| matches!(o, Output::WorkerDead { worker, .. } if *worker == w))
            .count(),
        1
    );
    assert_eq!(h.state(job), JobState::Queued);
    assert_eq!(h.core.stats().workers, 0);
}

#[test]
fn non_home_shards_do_not_track_heartbeats() {
    let mut h = Harness::new();
    let id = WorkerId::new(0, 1).unwrap();
    let info = WorkerInfo {
        id,
        capacity: 1,
        skills: vec!["GENERAL".into()],
        port: 1,
        parent: None,
        ephemeral: false,
        home: false,
        spawn_ticket: None,
        instance: id.slot() as u64,
    };
    h.step(Input::WorkerUp(info));
    assert_eq!(h.core.poll_timeout(), None);
    h.advance(Duration::from_secs(3600));
    assert_eq!(h.core.stats().workers, 1);
}

#[test]
fn reusing_a_slot_forgets_the_previous_worker() {
    let mut h = Harness::new();
    let old = h.worker(0, 1, &["GENERAL"]);
    let job = h.one_off("RUN|a.py");
    let new = WorkerId::new(0, 2).unwrap();
    let outs = h.step(Input::WorkerUp(WorkerInfo {
        id: new,
        capacity: 1,
        skills: vec!["GENERAL".into()],
        port: 1,
        parent: None,
        ephemeral: false,
        home: true,
        spawn_ticket: None,
        instance: new.slot() as u64,
    }));
    assert_eq!(dispatches(&outs), vec![(new, job, 2)]);
    h.finish(job, 1, old, 0);
    assert_eq!(
        h.state(job),
        JobState::Running,
        "the old worker's report is stale"
    );
    assert_eq!(h.load.running_total(), 1);
}

#[test]
fn re_registration_updates_capacity_and_skills() {
    let mut h = Harness::new();
    let w = h.worker(0, 1, &["GENERAL"]);
    let a = h.one_off("PDF|a");
    h.worker(0, 3, &["GENERAL", "PDF"]);
    assert_eq!(h.core.job(a).unwrap().worker, Some(w));
    assert_eq!(h.core.workers()[0].capacity, 3);
}

#[test]
fn a_release_on_one_shard_wakes_a_hungry_shard() {
    let load = Arc::new(LoadTable::new());
    let two = |index| ShardInfo { index, count: 2 };
    let mut s0 = Harness::shard(config(), two(0), load.clone());
    let mut s1 = Harness::shard(config(), two(1), load.clone());
    let id = WorkerId::new(0, 1).unwrap();
    for (h, home) in [(&mut s0, true), (&mut s1, false)] {
        h.step(Input::WorkerUp(WorkerInfo {
            id,
            capacity: 1,
            skills: vec!["GENERAL".into()],
            port: 1,
            parent: None,
            ephemeral: false,
            home,
            spawn_ticket: None,
            instance: id.slot() as u64,
        }));
    }
    let a = s0.one_off("RUN|a.py");
    let b = s1.one_off("RUN|b.py");
    assert_eq!(a.dag().owner(2), 0);
    assert_eq!(b.dag().owner(2), 1);
    assert_eq!(s1.state(b), JobState::Queued);
    let outs = s0.finish(a, 1, id, 0);
    assert!(outs.contains(&Output::Wake { shards: 0b10 }), "{outs:?}");
    let outs = s1.step(Input::Tick);
    assert_eq!(dispatches(&outs), vec![(id, b, 1)]);
    let outs = s1.finish(b, 1, id, 0);
    assert!(
        !outs.iter().any(|o| matches!(o, Output::Wake { .. })),
        "nobody is hungry"
    );
}

fn spawn_cfg() -> CoreConfig {
    CoreConfig {
        scaling_interval: Duration::from_secs(1),
        spawn_after: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(45),
        heartbeat_timeout: Duration::from_secs(3600),
        max_workers: 2,
        ..config()
    }
}

#[test]
fn starving_backlog_spawns_a_child_up_to_the_maximum_and_idle_children_retire() {
    let mut h = Harness::with(spawn_cfg());
    let parent = h.worker(0, 1, &["GENERAL"]);
    let first = h.one_off("RUN|a.py");
    let waiting = h.one_off("RUN|b.py");
    assert_eq!(h.state(waiting), JobState::Queued);
    let mut spawn = None;
    for _ in 0..6 {
        for o in h.advance(Duration::from_secs(1)) {
            if let Output::SpawnWorker {
                parent,
                ticket,
                reason,
            } = o
            {
                spawn = Some((parent, ticket, reason));
            }
        }
    }
    let (p, ticket, reason) = spawn.expect("a spawn request");
    assert_eq!(p, parent);
    assert_eq!(&*reason.skill, "GENERAL");
    assert!(reason.waiting >= Duration::from_secs(5));
    assert_eq!(h.load.spawning(), 1);
    // Bounded: with one alive worker and one spawn in flight, max_workers = 2 allows no more.
    for _ in 0..10 {
        assert!(!h
            .advance(Duration::from_secs(1))
            .iter()
            .any(|o| matches!(o, Output::SpawnWorker { .. })));
    }
    let child = WorkerId::new(1, 1).unwrap();
    let outs = h.step(Input::WorkerUp(WorkerInfo {
        id: child,
        capacity: 1,
        skills: vec!["GENERAL".into()],
        port: 8090,
        parent: Some(parent),
        ephemeral: true,
        home: true,
        spawn_ticket: Some(ticket),
        instance: child.slot() as u64,
    }));
    assert_eq!(dispatches(&outs), vec![(child, waiting, 1)]);
    assert_eq!(h.load.spawning(), 0);
    h.finish(waiting, 1, child, 0);
    h.finish(first, 1, parent, 0);
    let mut retired = None;
    for _ in 0..50 {
        for o in h.advance(Duration::from_secs(1)) {
            if let Output::RetireWorker { worker, idle_for } = o {
                retired = Some((worker, idle_for));
            }
        }
    }
    let (w, idle_for) = retired.expect("the idle child retires");
    assert_eq!(w, child);
    assert!(idle_for >= Duration::from_secs(45));
    assert_eq!(h.load.alive_workers(), 1, "the parent stays");
    h.step(Input::WorkerLost { worker: child });
    assert_eq!(h.core.stats().workers, 1);
    let parent_deadline = Time::from_millis(1000) + Duration::from_secs(3600);
    assert_eq!(
        h.core.poll_timeout(),
        Some(parent_deadline),
        "only the parent's heartbeat is left to watch"
    );
}

#[test]
fn the_last_worker_is_never_retired() {
    let mut h = Harness::with(spawn_cfg());
    let child = WorkerId::new(3, 1).unwrap();
    h.step(Input::WorkerUp(WorkerInfo {
        id: child,
        capacity: 1,
        skills: vec!["GENERAL".into()],
        port: 8090,
        parent: None,
        ephemeral: true,
        home: true,
        spawn_ticket: None,
        instance: child.slot() as u64,
    }));
    for _ in 0..100 {
        assert!(!h
            .advance(Duration::from_secs(1))
            .iter()
            .any(|o| matches!(o, Output::RetireWorker { .. })));
    }
    assert_eq!(h.load.alive_workers(), 1);
}

#[test]
fn an_unanswered_spawn_expires() {
    let mut h = Harness::with(CoreConfig {
        spawn_timeout: Duration::from_secs(10),
        ..spawn_cfg()
    });
    h.worker(0, 1, &["GENERAL"]);
    h.one_off("RUN|a.py");
    h.one_off("RUN|b.py");
    let mut spawns = 0;
    for _ in 0..30 {
        spawns += h
            .advance(Duration::from_secs(1))
            .iter()
            .filter(|o| matches!(o, Output::SpawnWorker { .. }))
            .count();
    }
    assert!(
        spawns >= 2,
        "expired requests make room for new ones ({spawns})"
    );
    assert!(h.load.spawning() <= 1);
}

/// Reports the attempt finished after running for `ran`; returns what the core dispatched.
fn finish_after(h: &mut Harness, job: JobId, w: WorkerId, ran: Duration) -> Vec<(JobId, u32)> {
    let outs = h.step(Input::JobFinished {
        job,
        attempt: 1,
        worker: w,
        outcome: Outcome::Exited { code: 0 },
        duration: ran,
    });
    dispatches(&outs)
        .into_iter()
        .map(|(_, j, a)| (j, a))
        .collect()
}

fn prefetching(depth: u32) -> CoreConfig {
    CoreConfig {
        prefetch: depth,
        prefetch_below: Duration::from_millis(10),
        ..config()
    }
}

fn held(h: &Harness, w: WorkerId) -> u32 {
    h.load.load(w).unwrap().running
}

/// Runs `n` process jobs of 1 ms one at a time on `w`: its processes turn over fast.
fn run_short_jobs(h: &mut Harness, w: WorkerId, n: usize) {
    for _ in 0..n {
        let job = h.one_off("RUN|a.py");
        assert_eq!(h.core.job(job).unwrap().worker, Some(w));
        assert!(finish_after(h, job, w, Duration::from_millis(1)).is_empty());
    }
}

#[test]
fn process_jobs_are_prefetched_while_a_workers_processes_turn_over_fast() {
    let mut h = Harness::with(prefetching(3));
    let w = h.worker(0, 1, &["GENERAL"]);
    let queued: Vec<JobId> = (0..100).map(|_| h.one_off("RUN|a.py")).collect();
    assert_eq!(
        held(&h, w),
        1,
        "a new worker's run times are unknown: no prefetch"
    );
    let mut on_worker: std::collections::VecDeque<JobId> = [queued[0]].into();
    let mut most = Vec::new();
    while let Some(job) = on_worker.pop_front() {
        for (next, attempt) in finish_after(&mut h, job, w, Duration::from_millis(1)) {
            assert_eq!(attempt, 1);
            on_worker.push_back(next);
        }
        most.push(held(&h, w));
    }
    assert!(queued.iter().all(|&j| h.state(j) == JobState::Completed));
    // The average starts at 1 s and moves an eighth of the way per report: a few dozen 1 ms jobs
    // run one at a time, then capacity + prefetch are held, never more.
    assert!(most[..30].iter().all(|&n| n <= 1), "{most:?}");
    assert_eq!(most.iter().max(), Some(&4), "{most:?}");

    // No process ended lately (the worker sat idle): the next burst starts within capacity.
    h.advance(Duration::from_secs(1));
    let burst: Vec<JobId> = (0..3).map(|_| h.one_off("RUN|a.py")).collect();
    assert_eq!(held(&h, w), 1);
    assert!(burst[1..].iter().all(|&j| h.state(j) == JobState::Queued));
    // One long run among short ones ends the prefetching too.
    assert_eq!(
        finish_after(&mut h, burst[0], w, Duration::from_secs(2)),
        vec![(burst[1], 1)]
    );
    assert_eq!(held(&h, w), 1);
}

#[test]
fn noops_are_prefetched_at_once_and_quick_reports_say_nothing_about_processes() {
    let mut h = Harness::with(prefetching(3));
    let w = h.worker(0, 1, &["GENERAL"]);
    let noops: Vec<JobId> = (0..6).map(|_| h.one_off("NOOP")).collect();
    assert_eq!(held(&h, w), 4, "a NOOP holds no slot on the worker");
    for &j in &noops[..4] {
        finish_after(&mut h, j, w, Duration::from_millis(1));
    }
    assert!(noops.iter().all(|&j| h.state(j) != JobState::Queued));
    // Hundreds of NOOP reports, even of 1 ms, say nothing about the worker's processes: their
    // average stays unknown.
    for _ in 0..200 {
        let j = h.one_off("NOOP");
        finish_after(&mut h, j, w, Duration::from_millis(1));
    }
    for &j in &noops[4..] {
        finish_after(&mut h, j, w, Duration::from_millis(1));
    }
    let runs: Vec<JobId> = (0..3).map(|_| h.one_off("RUN|a.py")).collect();
    assert_eq!(held(&h, w), 1);
    assert!(runs[1..].iter().all(|&j| h.state(j) == JobState::Queued));
}

#[test]
fn services_sleeps_and_jobs_with_timeouts_are_never_prefetched() {
    let mut timed = grammar::parse_one_off("RUN|a.py").unwrap();
    timed.timeout_ms = std::num::NonZeroU32::new(60_000);
    let kinds: [(&str, Submission); 3] = [
        (
            "SLEEP",
            Submission::OneOff(grammar::parse_one_off("SLEEP|5000").unwrap()),
        ),
        (
            "DEPLOY",
            Submission::OneOff(grammar::parse_one_off("DEPLOY|server.py").unwrap()),
        ),
        ("timeout", Submission::OneOff(timed)),
    ];
    for (what, submission) in kinds {
        let mut h = Harness::with(prefetching(3));
        let w = h.worker(0, 1, &["GENERAL"]);
        run_short_jobs(&mut h, w, 40);
        let first = h.submit(submission.clone()).0.job(0);
        assert_eq!(h.core.job(first).unwrap().worker, Some(w), "{what}");
        let second = h.submit(submission).0.job(0);
        assert_eq!(
            h.state(second),
            JobState::Queued,
            "{what}: past the capacity"
        );
        assert_eq!(held(&h, w), 1, "{what}");
    }
}

#[test]
fn nothing_is_prefetched_onto_a_worker_a_service_holds() {
    let mut h = Harness::with(prefetching(3));
    let w = h.worker(0, 2, &["GENERAL"]);
    run_short_jobs(&mut h, w, 40);
    let service = h.one_off("DEPLOY|server.py");
    assert_eq!(h.core.job(service).unwrap().worker, Some(w));
    // The other slot still takes a job, and nothing waits behind the service.
    let jobs: Vec<JobId> = (0..3).map(|_| h.one_off("NOOP")).collect();
    assert_eq!(h.core.job(jobs[0]).unwrap().worker, Some(w));
    assert!(jobs[1..].iter().all(|&j| h.state(j) == JobState::Queued));
    assert_eq!(held(&h, w), 2);
}
