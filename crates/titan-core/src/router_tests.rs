//! The router's rules, one by one.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::ids::Time;
use crate::Target;

fn router(index: u32, count: u32) -> Router {
    Router::new(ShardInfo { index, count })
}

fn worker(slot: u16) -> WorkerId {
    WorkerId::new(slot, 1).expect("valid worker id")
}

/// Job `i` of the DAG numbered `dag`.
fn job(dag: u64, i: u32) -> JobId {
    DagId(dag).job(i)
}

fn info(id: WorkerId) -> WorkerInfo {
    WorkerInfo {
        id,
        capacity: 2,
        skills: vec!["GENERAL".into()],
        port: 8081,
        parent: None,
        ephemeral: false,
        home: false,
        spawn_ticket: None,
        instance: 7,
    }
}

#[test]
fn reports_and_requests_about_a_job_go_to_the_owner_of_its_dag() {
    let r = router(0, 3);
    let w = worker(1);
    let j = job(5, 2); // dag 5 belongs to shard 2 of 3
    let inputs = [
        Input::JobStarted {
            job: j,
            attempt: 1,
            worker: w,
        },
        Input::JobFinished {
            job: j,
            attempt: 1,
            worker: w,
            outcome: crate::Outcome::Exited { code: 0 },
            duration: Duration::ZERO,
        },
        Input::ServiceReady {
            job: j,
            attempt: 1,
            worker: w,
        },
        Input::Adopt {
            worker: w,
            job: j,
            attempt: 1,
        },
        Input::Stop { token: 1, job: j },
        Input::Watch { token: 1, job: j },
        Input::Cancel {
            token: 1,
            target: Target::Job(j),
        },
        Input::Cancel {
            token: 1,
            target: Target::Dag(DagId(5)),
        },
    ];
    for input in inputs {
        assert_eq!(r.input(input.clone()).shard, 2, "{input:?}");
    }
}

#[test]
fn submissions_heartbeats_and_confirmations_stay_on_the_shard() {
    let r = router(1, 3);
    let w = worker(4);
    let inputs = [
        Input::Heartbeat { worker: w },
        Input::WorkerLost { worker: w },
        Input::Persisted { lsn: Lsn(3) },
        Input::Tick,
        Input::WorkerUp(info(w)),
    ];
    for input in inputs {
        let d = r.input(input.clone());
        assert_eq!(d, Delivery { shard: 1, input });
    }
}

#[test]
fn a_registration_adopts_on_each_owner_before_announcing_the_worker_there() {
    let r = router(1, 2);
    let w = worker(3);
    // Dags 4 and 6 belong to shard 0, dag 5 to shard 1.
    let attempts = [(job(4, 0), 2), (job(5, 1), 1), (job(6, 0), 3)];
    let sent = r.register(&info(w), attempts);
    let shape: Vec<(u32, &str, Option<JobId>)> = sent
        .iter()
        .map(|d| match &d.input {
            Input::Adopt { job, worker, .. } => {
                assert_eq!(*worker, w);
                (d.shard, "adopt", Some(*job))
            }
            Input::WorkerUp(i) => {
                assert_eq!(i.home, d.shard == 1, "home only on the registering shard");
                (d.shard, "up", None)
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (0, "adopt", Some(job(4, 0))),
            (0, "adopt", Some(job(6, 0))),
            (0, "up", None),
            (1, "adopt", Some(job(5, 1))),
            (1, "up", None),
        ]
    );
}

#[test]
fn a_registration_without_attempts_announces_the_worker_everywhere() {
    let r = router(0, 3);
    let sent = r.register(&info(worker(2)), []);
    assert_eq!(sent.len(), 3);
    let homes: Vec<bool> = sent
        .iter()
        .map(|d| matches!(&d.input, Input::WorkerUp(i) if i.home))
        .collect();
    assert_eq!(homes, [true, false, false]);
}

#[test]
fn a_lost_worker_is_lost_on_every_shard_in_order() {
    let w = worker(9);
    let shards: Vec<u32> = router(2, 4)
        .worker_lost(w)
        .inspect(|d| assert_eq!(d.input, Input::WorkerLost { worker: w }))
        .map(|d| d.shard)
        .collect();
    assert_eq!(shards, [0, 1, 2, 3]);
}

#[test]
fn outputs_to_workers_name_the_worker_and_the_command() {
    let r = router(0, 1);
    let w = worker(1);
    let j = job(1, 0);
    assert_eq!(
        r.route(Output::Dispatch {
            worker: w,
            job: j,
            attempt: 2
        }),
        Route::Worker {
            worker: w,
            command: Command::Run { job: j, attempt: 2 }
        }
    );
    let kill = Output::Kill {
        worker: w,
        job: j,
        attempt: 2,
        reason: KillReason::Cancelled,
    };
    assert!(matches!(
        r.route(kill),
        Route::Worker { worker, command: Command::Kill { reason: KillReason::Cancelled, .. } } if worker == w
    ));
    let idle_for = Duration::from_secs(3);
    assert_eq!(
        r.route(Output::RetireWorker {
            worker: w,
            idle_for
        }),
        Route::Worker {
            worker: w,
            command: Command::Retire { idle_for }
        }
    );
    let silent_for = Duration::from_secs(5);
    assert_eq!(
        r.route(Output::WorkerDead {
            worker: w,
            silent_for
        }),
        Route::Disconnect {
            worker: w,
            silent_for
        }
    );
    let reason = SpawnReason {
        skill: "GPU".into(),
        waiting: Duration::from_secs(1),
        queued: 4,
    };
    assert!(matches!(
        r.route(Output::SpawnWorker { parent: w, ticket: 11, reason }),
        Route::Worker { worker, command: Command::Spawn { ticket: 11, .. } } if worker == w
    ));
}

#[test]
fn a_wake_ticks_the_named_shards_but_never_the_waking_one() {
    let r = router(1, 4);
    let Route::Tick(shards) = r.route(Output::Wake { shards: 0b1011 }) else {
        panic!("a wake becomes ticks");
    };
    assert_eq!(shards.collect::<Vec<_>>(), [0, 3]);
}

#[test]
fn journal_records_stay_and_replies_follow_their_tokens() {
    let r = router(0, 2);
    let record = Record::WorkerJoined {
        instance: 1,
        at: Time(5),
    };
    assert_eq!(
        r.route(Output::Journal {
            lsn: Lsn(4),
            record: record.clone()
        }),
        Route::Journal {
            lsn: Lsn(4),
            record
        }
    );
    let conn = ReplyToken {
        shard: 1,
        conn: 0x0003_0002,
        slot: 17,
    };
    let reply = Ok(Ack::Cancelled { jobs: 1 });
    assert_eq!(
        r.route(Output::Reply {
            token: conn.pack(),
            reply: reply.clone()
        }),
        Route::Reply {
            to: ReplyTo::Connection(conn),
            reply
        }
    );
    let wait = WatchToken {
        origin: 1,
        seq: 9,
        index: 3,
    };
    let (j, state) = (job(2, 0), JobState::Completed);
    let routed = r.route(Output::Notify {
        token: wait.pack(),
        job: j,
        state,
    });
    assert_eq!(
        routed,
        Route::Notify {
            to: ReplyTo::Wait(wait),
            job: j,
            state
        }
    );
    assert_eq!(ReplyTo::Wait(wait).shard(), 1);
}

#[test]
fn without_a_log_the_last_record_of_a_batch_is_confirmed() {
    let journal = |lsn| Output::Journal {
        lsn: Lsn(lsn),
        record: Record::WorkerLeft {
            instance: 1,
            at: Time(1),
        },
    };
    let wake = Output::Wake { shards: 1 };
    assert_eq!(
        confirm_at_once(&[journal(3), wake.clone(), journal(4), wake.clone()]),
        Some(Input::Persisted { lsn: Lsn(4) })
    );
    assert_eq!(confirm_at_once(&[wake]), None);
    assert_eq!(confirm_at_once(&[]), None);
}

#[test]
fn reply_and_watch_tokens_are_told_apart() {
    let reply = ReplyToken {
        shard: 63,
        conn: u32::MAX,
        slot: 0xAB_CDEF,
    };
    assert_eq!(ReplyTo::unpack(reply.pack()), ReplyTo::Connection(reply));
    let watch = WatchToken {
        origin: 63,
        seq: 0xDEAD_BEEF,
        index: 77,
    };
    assert_eq!(ReplyTo::unpack(watch.pack()), ReplyTo::Wait(watch));
}

proptest! {
    #[test]
    fn every_token_reads_back_as_itself(token: u64) {
        prop_assert_eq!(ReplyTo::unpack(token).pack(), token);
    }
}
