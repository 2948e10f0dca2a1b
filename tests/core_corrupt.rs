//! Corrupt and contradictory journals and snapshots: replaying arbitrary well-formed records in any
//! order, arbitrary bytes, or a snapshot with random fields changed never panics — every rejection is
//! a typed error — and the core keeps working afterwards (recovery ends, inputs are handled).
//!
//! And the properties behind "refused": a refused record leaves no trace (the state equals that of
//! replaying only the accepted records), bytes that are not a record are refused as such and
//! change nothing, and a snapshot that is restored describes a state that snapshots back to itself.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use titan::core::*;

fn spec(kind: u8, delay_ms: u32, timeout: u32) -> JobSpec {
    let kind = match kind % 4 {
        0 => JobKind::Noop,
        1 => JobKind::Run {
            file: "a.py".into(),
            args: Box::new([]),
        },
        2 => JobKind::Deploy {
            file: "svc.py".into(),
            port: None,
        },
        _ => JobKind::Skill {
            name: "GPU".into(),
            data: "x".into(),
        },
    };
    JobSpec {
        delay_ms,
        timeout_ms: NonZeroU32::new(timeout),
        ..JobSpec::new(kind)
    }
}

fn arb_submission() -> impl Strategy<Value = Submission> {
    prop_oneof![
        (0u8..4, 0u32..50, 0u32..3).prop_map(|(k, d, t)| Submission::OneOff(spec(k, d, t))),
        (1usize..4, 0u8..4).prop_map(|(n, k)| {
            Submission::Dag(
                (0..n)
                    .map(|i| DagJobSpec {
                        name: format!("J{i}").into(),
                        spec: spec(k + i as u8, 0, 0),
                        deps: if i == 0 {
                            vec![]
                        } else {
                            vec![format!("J{}", i - 1).into()]
                        },
                    })
                    .collect(),
            )
        }),
    ]
}

fn arb_outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        (-2i32..3).prop_map(|code| Outcome::Exited { code }),
        Just(Outcome::Killed),
        Just(Outcome::TimedOut),
        Just(Outcome::Error {
            message: "x".into()
        }),
    ]
}

fn arb_record() -> impl Strategy<Value = Record> {
    let job = (0u64..6, 0u32..4).prop_map(|(d, i)| DagId(d).job(i));
    let attempt = prop_oneof![0u32..4, Just(u32::MAX)];
    let at = (0u64..10_000).prop_map(|ms| Time::from_millis(1_000_000 + ms));
    let cause = prop_oneof![
        arb_outcome().prop_map(EndCause::Reported),
        Just(EndCause::TimedOut),
        Just(EndCause::WorkerLost),
    ];
    let next = prop_oneof![
        Just(Next::Completed),
        Just(Next::Requeued),
        Just(Next::Dead),
        (0u64..10_000).prop_map(|ms| Next::Retry {
            due: Time::from_millis(1_000_000 + ms)
        }),
    ];
    prop_oneof![
        (
            prop_oneof![0u64..6, Just(DagId::MAX), Just(u64::MAX)],
            at.clone(),
            arb_submission()
        )
            .prop_map(|(d, at, submission)| Record::Submitted {
                dag: DagId(d),
                at,
                submission
            }),
        (job.clone(), attempt.clone(), 0u16..3, at.clone()).prop_map(|(job, attempt, w, at)| {
            let worker = WorkerId::new(w, 1).expect("valid");
            Record::Dispatched {
                job,
                attempt,
                worker,
                at,
            }
        }),
        (job.clone(), attempt.clone(), at.clone())
            .prop_map(|(job, attempt, at)| Record::ServiceReady { job, attempt, at }),
        (job.clone(), attempt, at.clone(), cause, next).prop_map(
            |(job, attempt, at, cause, next)| Record::AttemptEnded {
                job,
                attempt,
                at,
                cause,
                next
            }
        ),
        (job.clone(), any::<bool>(), at.clone()).prop_map(|(job, whole, at)| Record::Cancelled {
            target: if whole {
                Target::Dag(job.dag())
            } else {
                Target::Job(job)
            },
            at
        }),
        (job, at).prop_map(|(job, at)| Record::Stopped { job, at }),
    ]
}

fn fresh(shard: ShardInfo) -> Core {
    Core::new(CoreConfig::default(), shard, Arc::new(LoadTable::new()), 3)
}

/// When recovery ends in these tests: later than every record's time.
fn end_of_recovery() -> Time {
    Time::from_millis(2_000_000)
}

/// After recovery the core must still take live inputs without panicking.
fn exercise(core: &mut Core) {
    let now = end_of_recovery();
    core.finish_recovery(now);
    let worker = WorkerId::new(7, 1).expect("valid");
    core.handle(
        now,
        Input::WorkerUp(WorkerInfo {
            id: worker,
            capacity: 4,
            skills: vec!["GENERAL".into(), "GPU".into()],
            port: 1,
            parent: None,
            ephemeral: false,
            home: true,
            spawn_ticket: None,
            instance: worker.slot() as u64,
        }),
    );
    for d in 0..6 {
        core.handle(
            now,
            Input::Adopt {
                worker,
                job: DagId(d).job(0),
                attempt: 1,
            },
        );
    }
    core.handle(now + Duration::from_secs(3600), Input::Tick);
    core.drain_outputs().for_each(drop);
    let _ = core.snapshot().encode();
}

/// The state a core ends recovery in, as a snapshot, without the times jobs entered their
/// states: a refused record still moves the replay clock, so a delay that ends before it is
/// fired at its time rather than at the next record's (documented in `replay.rs`).
fn recovered_state(core: &mut Core) -> Snapshot {
    core.finish_recovery(end_of_recovery());
    let mut image = core.snapshot();
    for submission in &mut image.submissions {
        for job in &mut submission.jobs {
            job.since = Time::ZERO;
        }
    }
    image
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_records_are_replayed_or_refused_and_a_refused_one_leaves_no_trace(
        records in prop::collection::vec(arb_record(), 0..40),
        sharded in any::<bool>(),
    ) {
        let shard = if sharded { ShardInfo { index: 1, count: 2 } } else { ShardInfo::SINGLE };
        // A shard's journal is in time order (its clock never goes back); a refused record still
        // moves the replay clock, which out of order could let a later record in.
        let mut records = records;
        records.sort_by_key(|r| r.at());
        let mut core = fresh(shard);
        let mut accepted = Vec::new();
        for r in records {
            let bytes = r.encode().expect("encodes");
            if core.replay_bytes(&bytes).is_ok() {
                accepted.push(bytes);
            }
        }
        // Replaying only the accepted records, in order, must give the same state: the refused
        // ones changed nothing that lasts.
        let mut only_accepted = fresh(shard);
        for bytes in &accepted {
            prop_assert!(only_accepted.replay_bytes(bytes).is_ok(), "an accepted record was refused");
        }
        prop_assert_eq!(recovered_state(&mut core), recovered_state(&mut only_accepted));
        exercise(&mut core);
    }

    #[test]
    fn arbitrary_bytes_are_refused_as_such_and_change_nothing(
        prefix in prop::collection::vec(arb_record(), 0..6),
        bytes in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let build = || {
            let mut core = fresh(ShardInfo::SINGLE);
            for r in &prefix {
                let _ = core.replay(r.clone());
            }
            core
        };
        let mut core = build();
        let before = core.snapshot();
        let replayed = core.replay_bytes(&bytes);
        match Record::decode(&bytes) {
            // Not a record: refused as undecodable, and the state is untouched.
            Err(_) => {
                prop_assert!(matches!(replayed, Err(ReplayError::Decode(_))), "{:?}", replayed);
                prop_assert_eq!(core.snapshot(), before);
            }
            // By chance a valid record: replayed exactly like the record it decodes to.
            Ok(record) => {
                let mut twin = build();
                let direct = twin.replay(record);
                prop_assert_eq!(replayed, direct);
                prop_assert_eq!(core.snapshot(), twin.snapshot());
            }
        }
        // Whatever the bytes, decoding a snapshot is a typed result, never a panic.
        let _ = Snapshot::decode(&bytes);
        exercise(&mut core);
    }

    #[test]
    fn a_snapshot_with_random_fields_changed_is_restored_or_refused(
        records in prop::collection::vec(arb_record(), 0..40),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8, any::<u32>()), 1..4),
    ) {
        let mut source = fresh(ShardInfo::SINGLE);
        for r in records {
            let _ = source.replay(r);
        }
        let mut snap = source.snapshot();
        for (pick, what, value) in edits {
            if snap.submissions.is_empty() {
                break;
            }
            let i = pick.index(snap.submissions.len());
            let s = &mut snap.submissions[i];
            if s.jobs.is_empty() {
                continue;
            }
            let j = pick.index(s.jobs.len());
            match what {
                0 => s.jobs[j].state = JobState::ALL[value as usize % 9],
                1 => s.jobs[j].flags = value as u8,
                2 => s.jobs[j].attempt = value,
                3 => s.jobs[j].wake = None,
                4 => s.dag = DagId(u64::from(value)),
                5 => { s.jobs.pop(); }
                6 => if let Some(g) = s.graph.as_mut() {
                    let k = pick.index(g.parents.len().max(1));
                    if let Some(p) = g.parents.get_mut(k) { *p = value % 5; }
                },
                _ => snap.names.push(JobId(u64::from(value))),
            }
        }
        let bytes = snap.encode().expect("encodes");
        let decoded = Snapshot::decode(&bytes).expect("valid archive");
        let load = Arc::new(LoadTable::new());
        // Refused is a typed error; restored must be a state that describes itself: its own
        // snapshot restores again, to the same snapshot.
        if let Ok(mut core) = Core::restore(CoreConfig::default(), ShardInfo::SINGLE, load.clone(), 1, decoded) {
            let image = core.snapshot();
            let again = Core::restore(CoreConfig::default(), ShardInfo::SINGLE, load, 1, image.clone());
            prop_assert!(again.is_ok(), "a restored state's own snapshot was refused: {:?}", again.err());
            prop_assert_eq!(again.map(|c| c.snapshot()).ok(), Some(image));
            exercise(&mut core);
        }
    }
}
