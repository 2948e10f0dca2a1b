//! Round trips through real files: append, close or drop, reopen, compare. Also segment rolling,
//! concurrent producers, per-record mode, and replaying and retiring another shard's directory.

mod wal_support;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rand::Rng;
use titan::wal::{
    list_shard_dirs, replay_dir, retire_dir, shard_dir, AppendError, CommitMode, Journal, Lsn,
    OpenError, WalConfig,
};
use wal_support::*;

#[test]
fn random_records_survive_restarts() {
    init_tracing();
    let tmp = TempDir::new("roundtrip");
    let dir = tmp.path().join("shard-0");
    let mut rng = rng("random_records_survive_restarts");
    let config = small_config();
    run(|| async move {
        let mut expected = Vec::new();
        for round in 0..3 {
            let (journal, replay, report) = open(&dir, config.clone()).await.expect("open");
            assert_eq!(replay.records, expected, "round {round}");
            assert_eq!(report.damage, None);
            let items = random_records(&mut rng, 700, 600);
            expected.extend(append_all(&journal, &items).await);
            journal.close().await.expect("close");
        }
        let lsns: Vec<u64> = expected.iter().map(|r| r.lsn).collect();
        assert_eq!(lsns, (1..=2100).collect::<Vec<_>>());
        assert!(segment_files(&dir).len() > 3, "segments rolled");
        let (_journal, replay, _) = open(&dir, config.clone()).await.expect("reopen");
        assert_eq!(replay.records, expected);
    });
}

#[test]
fn dropping_the_journal_still_writes_what_was_appended() {
    init_tracing();
    let tmp = TempDir::new("drop");
    let dir = tmp.path().join("shard-0");
    run(|| async move {
        let (journal, _, _) = open(&dir, WalConfig::default()).await.expect("open");
        journal.append(1, b"one").expect("append");
        journal.append(2, b"two").expect("append");
        // Not awaited: the detached flusher writes them and then releases the directory.
        drop(journal);
        let deadline = Instant::now() + Duration::from_secs(10);
        let replay = loop {
            match open(&dir, WalConfig::default()).await {
                Ok((journal, replay, _)) => {
                    journal.close().await.expect("close");
                    break replay;
                }
                Err(OpenError::Locked { .. }) if Instant::now() < deadline => {
                    futures_lite::future::yield_now().await;
                }
                Err(e) => panic!("reopen: {e}"),
            }
        };
        let payloads: Vec<_> = replay.records.iter().map(|r| r.payload.clone()).collect();
        assert_eq!(payloads, vec![b"one".to_vec(), b"two".to_vec()]);
    });
}

#[test]
fn concurrent_producers_get_ordered_durable_records() {
    init_tracing();
    let tmp = TempDir::new("producers");
    let dir = tmp.path().join("shard-0");
    let mut rng = rng("concurrent_producers_get_ordered_durable_records");
    let items = Rc::new(random_records(&mut rng, 4000, 300));
    run(|| async move {
        let (journal, _, _) = open(&dir, small_config()).await.expect("open");
        let journal = Rc::new(journal);
        let acked = Rc::new(RefCell::new(Vec::new()));
        let producers: Vec<_> = (0..40)
            .map(|p| {
                let (journal, acked, items) = (journal.clone(), acked.clone(), items.clone());
                glommio::spawn_local(async move {
                    for (kind, payload) in items.iter().skip(p).step_by(40) {
                        let lsn = journal.append(*kind, payload).expect("append");
                        journal.wait_durable(lsn).await.expect("durable");
                        assert!(journal.durable_lsn() >= lsn);
                        acked.borrow_mut().push(Rec {
                            lsn: lsn.0,
                            kind: *kind,
                            payload: payload.clone(),
                        });
                    }
                })
            })
            .collect();
        for producer in producers {
            producer.await;
        }
        let stats = journal.stats();
        assert_eq!(stats.durable_records, 4000);
        assert!(stats.batches < 4000, "group commit batched: {stats:?}");
        let mut acked = acked.take();
        acked.sort_by_key(|r| r.lsn);
        Rc::try_unwrap(journal)
            .ok()
            .expect("producers finished")
            .close()
            .await
            .expect("close");
        let (_journal, replay, _) = open(&dir, small_config()).await.expect("reopen");
        assert_eq!(replay.records, acked);
    });
}

#[test]
fn per_record_mode_syncs_every_record() {
    init_tracing();
    let tmp = TempDir::new("per-record");
    let dir = tmp.path().join("shard-0");
    let config = WalConfig {
        commit_mode: CommitMode::PerRecord,
        ..small_config()
    };
    run(|| async move {
        let (journal, _, _) = open(&dir, config.clone()).await.expect("open");
        let items: Vec<_> = (0..50u8).map(|i| (i, vec![i; i as usize * 7])).collect();
        for (kind, payload) in &items {
            journal.append(*kind, payload).expect("append");
        }
        journal.wait_durable(Lsn(50)).await.expect("durable");
        assert_eq!(journal.stats().batches, 50);
        journal.close().await.expect("close");
        let (_journal, replay, _) = open(&dir, config).await.expect("reopen");
        let payloads: Vec<_> = replay.records.iter().map(|r| r.payload.clone()).collect();
        assert_eq!(
            payloads,
            items.into_iter().map(|(_, p)| p).collect::<Vec<_>>()
        );
    });
}

#[test]
fn limits_are_enforced_without_assigning_numbers() {
    init_tracing();
    let tmp = TempDir::new("limits");
    let dir = tmp.path().join("shard-0");
    let config = WalConfig {
        max_record_bytes: 1000,
        max_pending_bytes: 4096,
        ..small_config()
    };
    run(|| async move {
        let (journal, _, _) = open(&dir, config).await.expect("open");
        assert!(matches!(
            journal.append(0, &[0u8; 1001]),
            Err(AppendError::TooLarge {
                len: 1001,
                max: 1000
            })
        ));
        // Fill the pending buffer synchronously (the flusher cannot run in between).
        let mut accepted = 0;
        let refused = loop {
            match journal.append(0, &[1u8; 1000]) {
                Ok(_) => accepted += 1,
                Err(e) => break e,
            }
        };
        assert!(refused.is_retryable(), "{refused}");
        assert!(matches!(refused, AppendError::Backpressure { .. }));
        assert_eq!(journal.last_lsn(), Lsn(accepted));
        journal.wait_durable(Lsn(accepted)).await.expect("durable");
        journal.append(0, &[1u8; 1000]).expect("room again");
        journal.close().await.expect("close");
    });
}

#[test]
fn old_shard_dirs_replay_and_retire() {
    init_tracing();
    let tmp = TempDir::new("reshard");
    let root = tmp.path().join("wal");
    let mut rng = rng("old_shard_dirs_replay_and_retire");
    let config = small_config();
    run(|| async move {
        let mut written = Vec::new();
        for shard in 0..3 {
            let (journal, _, _) = open(&shard_dir(&root, shard), config.clone())
                .await
                .expect("open");
            written.push(append_all(&journal, &random_records(&mut rng, 300, 400)).await);
            journal.close().await.expect("close");
        }
        let shards = list_shard_dirs(&root).expect("list");
        assert_eq!(
            shards.iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        for (index, path) in shards {
            let mut replay = Replay::default();
            let report = replay_dir(&path, &config, collector(&mut replay))
                .await
                .expect("replay");
            assert_eq!(replay.records, written[index as usize]);
            assert_eq!(report.records, 300);
            // Replaying does not change anything: a second replay sees the same.
            let mut again = Replay::default();
            replay_dir(&path, &config, collector(&mut again))
                .await
                .expect("replay again");
            assert_eq!(again.records, replay.records);
            retire_dir(&path).expect("retire");
            assert!(!path.exists());
        }
        assert!(list_shard_dirs(&root).expect("list").is_empty());
        // A journal can be reopened on the retired shard's name, empty.
        let (journal, replay, _) = Journal::open(&shard_dir(&root, 0), config, |_| {})
            .await
            .map(|(j, r)| (j, Replay::default(), r))
            .expect("open fresh");
        assert!(replay.records.is_empty());
        assert_eq!(journal.last_lsn(), Lsn(0));
    });
}

#[test]
fn records_of_the_maximum_size_round_trip() {
    init_tracing();
    let tmp = TempDir::new("max-size");
    let dir = tmp.path().join("shard-0");
    let config = small_config();
    let max = config.max_record_bytes;
    run(|| async move {
        let (journal, _, _) = open(&dir, config.clone()).await.expect("open");
        let mut rng = rng("records_of_the_maximum_size_round_trip");
        let items: Vec<_> = (0..40)
            .map(|_| {
                let mut p = vec![0u8; max];
                rng.fill(&mut p[..]);
                (7u8, p)
            })
            .collect();
        let acked = append_all(&journal, &items).await;
        journal.close().await.expect("close");
        let (_journal, replay, _) = open(&dir, config).await.expect("reopen");
        assert_eq!(replay.records, acked);
    });
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    init_tracing();
    let tmp = TempDir::new("lock");
    let dir = tmp.path().join("shard-0");
    run(|| async move {
        let (journal, _, _) = open(&dir, small_config()).await.expect("open");
        assert!(matches!(
            open(&dir, small_config()).await,
            Err(OpenError::Locked { .. })
        ));
        journal.close().await.expect("close");
        let (journal, _, _) = open(&dir, small_config()).await.expect("open after close");
        journal.close().await.expect("close");
    });
}

#[test]
fn a_batch_window_gathers_records_into_fewer_syncs() {
    init_tracing();
    let tmp = TempDir::new("window");
    let dir = tmp.path().join("shard-0");
    let config = WalConfig {
        batch_window: Duration::from_millis(3),
        ..small_config()
    };
    run(|| async move {
        let (journal, _, _) = open(&dir, config.clone()).await.expect("open");
        let journal = Rc::new(journal);
        // Producers that each append and wait: without a window the first would sync alone.
        let producers: Vec<_> = (0..8u8)
            .map(|p| {
                let journal = journal.clone();
                glommio::spawn_local(async move {
                    for i in 0..20u8 {
                        let lsn = journal.append(p, &[i; 50]).expect("append");
                        journal.wait_durable(lsn).await.expect("durable");
                    }
                })
            })
            .collect();
        for producer in producers {
            producer.await;
        }
        let stats = journal.stats();
        assert_eq!(stats.durable_records, 160);
        assert!(stats.batches <= 40, "{stats:?}");
        Rc::try_unwrap(journal)
            .ok()
            .expect("producers done")
            .close()
            .await
            .expect("close");
        let (journal, replay, _) = open(&dir, config).await.expect("reopen");
        assert_eq!(replay.records.len(), 160);
        journal.close().await.expect("close");
    });
}
