//! Snapshots: covered segments are deleted (one retained snapshot back), replay starts after the
//! newest valid snapshot, a corrupt newest snapshot falls back to the previous one, and disk use
//! stays bounded under constant churn.

mod wal_support;

use std::path::Path;

use titan::wal::{CommitError, Journal, Lsn, SnapshotError, WalConfig};
use wal_support::*;

fn config() -> WalConfig {
    WalConfig {
        segment_bytes: 8 << 10,
        max_record_bytes: 1 << 10,
        max_batch_bytes: 4 << 10,
        ..WalConfig::default()
    }
}

/// The test's "state": every record so far, serialized.
fn encode_state(records: &[Rec]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(&r.lsn.to_le_bytes());
        out.push(r.kind);
        out.extend_from_slice(&(r.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&r.payload);
    }
    out
}

fn decode_state(mut bytes: &[u8]) -> Vec<Rec> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let lsn = u64::from_le_bytes(bytes[0..8].try_into().expect("8"));
        let kind = bytes[8];
        let len = u32::from_le_bytes(bytes[9..13].try_into().expect("4")) as usize;
        out.push(Rec {
            lsn,
            kind,
            payload: bytes[13..13 + len].to_vec(),
        });
        bytes = &bytes[13 + len..];
    }
    out
}

/// Snapshot state plus the records replayed after it.
fn rebuild(replay: &Replay) -> Vec<Rec> {
    let mut state = replay
        .snapshot
        .as_ref()
        .map_or_else(Vec::new, |(_, bytes)| decode_state(bytes));
    state.extend(replay.records.iter().cloned());
    state
}

fn first_lsn_of(segment: &Path) -> u64 {
    let name = segment.file_stem().and_then(|s| s.to_str()).expect("name");
    name.parse().expect("segment name is a number")
}

async fn snapshot_all(journal: &Journal, all: &[Rec]) -> titan::wal::SnapshotReport {
    let covered = Lsn(all.last().expect("records").lsn);
    journal
        .write_snapshot(covered, &encode_state(all))
        .await
        .expect("snapshot")
}

#[test]
fn snapshots_delete_covered_segments_and_fall_back_when_corrupt() {
    init_tracing();
    let tmp = TempDir::new("snapshots");
    let dir = tmp.path().join("shard-0");
    let mut rng = rng("snapshots_delete_covered_segments_and_fall_back_when_corrupt");
    run(|| async move {
        let (journal, _, _) = open(&dir, config()).await.expect("open");
        let mut all = Vec::new();
        let mut covered = Vec::new();
        for round in 0..3 {
            all.extend(append_all(&journal, &random_records(&mut rng, 120, 400)).await);
            let before = segment_files(&dir);
            let report = snapshot_all(&journal, &all).await;
            covered.push(report.covered);
            let after = segment_files(&dir);
            if round == 0 {
                // One snapshot is not enough to fall back from; the whole log stays.
                assert!(report.removed_segments.is_empty());
                assert_eq!(before, after);
            } else {
                // Segments fully covered by the previous (oldest retained) snapshot go.
                assert!(!report.removed_segments.is_empty(), "round {round}");
                let previous = covered[round - 1];
                for removed in &report.removed_segments {
                    assert!(!removed.exists());
                    let next = after.first().expect("kept segments");
                    assert!(first_lsn_of(removed) < first_lsn_of(next));
                }
                assert!(first_lsn_of(&after[0]) <= previous.0 + 1);
            }
            assert!(snapshot_files(&dir).len() <= 2);
        }
        // Records after the newest snapshot.
        let tail = append_all(&journal, &random_records(&mut rng, 30, 400)).await;
        all.extend(tail.iter().cloned());
        journal.close().await.expect("close");

        let (journal, replay, report) = open(&dir, config()).await.expect("reopen");
        assert_eq!(report.snapshot, Some(covered[2]));
        assert_eq!(replay.records, tail, "only records after the snapshot");
        assert_eq!(rebuild(&replay), all);
        journal.close().await.expect("close");

        // Damage the newest snapshot: replay falls back to the previous one.
        let newest = snapshot_files(&dir).pop().expect("snapshot");
        let mut bytes = std::fs::read(&newest).expect("read");
        let at = bytes.len() / 3;
        bytes[at] ^= 0x08;
        std::fs::write(&newest, &bytes).expect("corrupt");
        let (journal, replay, report) = open(&dir, config()).await.expect("fallback");
        assert_eq!(report.snapshot, Some(covered[1]));
        assert_eq!(report.corrupt_snapshots, vec![newest.clone()]);
        assert!(!newest.exists(), "corrupt snapshot removed");
        assert_eq!(rebuild(&replay), all);
        // And the journal goes on: a new snapshot newer than the surviving one is accepted.
        let more = append_all(&journal, &random_records(&mut rng, 10, 100)).await;
        all.extend(more);
        snapshot_all(&journal, &all).await;
        journal.close().await.expect("close");
        let (_journal, replay, _) = open(&dir, config()).await.expect("reopen");
        assert_eq!(rebuild(&replay), all);
    });
}

#[test]
fn disk_use_stays_bounded_under_churn() {
    init_tracing();
    let tmp = TempDir::new("churn");
    let dir = tmp.path().join("shard-0");
    let mut rng = rng("disk_use_stays_bounded_under_churn");
    run(|| async move {
        let (journal, _, _) = open(&dir, config()).await.expect("open");
        let mut max_segments = 0;
        let mut live: Vec<Rec> = Vec::new();
        for _ in 0..25 {
            live.extend(append_all(&journal, &random_records(&mut rng, 60, 300)).await);
            // Churn: the state keeps only the newest 50 records.
            let keep_from = live.len().saturating_sub(50);
            live.drain(..keep_from);
            snapshot_all(&journal, &live).await;
            max_segments = max_segments.max(segment_files(&dir).len());
            assert!(snapshot_files(&dir).len() <= 2);
        }
        // 60 records of at most ~330 bytes per round is under 3 segments of 8 KiB; two rounds are
        // retained, plus the active segment.
        assert!(max_segments <= 8, "{max_segments} segments");
        journal.close().await.expect("close");
        let (_journal, replay, _) = open(&dir, config()).await.expect("reopen");
        assert_eq!(rebuild(&replay), live);
    });
}

#[test]
fn snapshot_preconditions_are_checked() {
    init_tracing();
    let tmp = TempDir::new("snapshot-errors");
    let dir = tmp.path().join("shard-0");
    run(|| async move {
        let (journal, _, _) = open(&dir, config()).await.expect("open");
        let acked = append_all(&journal, &[(1, b"a".to_vec()), (1, b"b".to_vec())]).await;
        assert!(matches!(
            journal.write_snapshot(Lsn(9), b"state").await,
            Err(SnapshotError::NotDurable {
                cause: CommitError::NotAppended { .. },
                ..
            })
        ));
        journal
            .write_snapshot(Lsn(acked[1].lsn), b"state")
            .await
            .expect("snapshot");
        assert!(matches!(
            journal.write_snapshot(Lsn(acked[0].lsn), b"older").await,
            Err(SnapshotError::NotNewer { .. })
        ));
        journal.close().await.expect("close");
        let (_journal, replay, _) = open(&dir, config()).await.expect("reopen");
        assert_eq!(replay.snapshot, Some((Lsn(2), b"state".to_vec())));
        assert!(replay.records.is_empty());
    });
}

#[test]
fn large_snapshot_round_trips() {
    init_tracing();
    let tmp = TempDir::new("snapshot-large");
    let dir = tmp.path().join("shard-0");
    let state: Vec<u8> = (0..3_000_017u32).map(|i| (i * 7 + i / 977) as u8).collect();
    // Segments of the default size, not written out in advance: the snapshot is the large file.
    let config = WalConfig {
        preallocate: false,
        ..WalConfig::default()
    };
    run(|| async {
        let (journal, _, _) = open(&dir, config.clone()).await.expect("open");
        let lsn = journal.append(1, b"x").expect("append");
        journal.write_snapshot(lsn, &state).await.expect("snapshot");
        journal.close().await.expect("close");
        let (_journal, replay, report) = open(&dir, config).await.expect("open");
        assert_eq!(report.snapshot, Some(lsn));
        assert_eq!(replay.snapshot, Some((lsn, state.clone())));
    });
}

/// The snapshot covers records that a damaged tail lost; the next segment is then named after the
/// snapshot, not after the log's last record, and that is not a gap.
#[test]
fn snapshot_beyond_a_cut_tail_then_roll_is_not_a_gap() {
    init_tracing();
    let tmp = TempDir::new("snapshot-beyond");
    let dir = tmp.path().join("shard-0");
    let config = WalConfig {
        segment_bytes: 8 << 10,
        max_record_bytes: 6 << 10,
        max_batch_bytes: 4 << 10,
        ..WalConfig::default()
    };
    let items: Vec<_> = (0..12u8).map(|i| (1u8, vec![i | 1; 300])).collect();
    let all = run(|| async {
        let (journal, _, _) = open(&dir, config.clone()).await.expect("open");
        // One batch per record, so damage to the ninth leaves later whole batches behind it.
        let mut all = Vec::new();
        for item in &items {
            all.extend(append_all(&journal, std::slice::from_ref(item)).await);
        }
        snapshot_all(&journal, &all).await;
        journal.close().await.expect("close");
        all
    });
    // Corrupt the ninth record: the log now ends at record 8, the snapshot covers 12. The
    // records after the damage are covered by the snapshot, so cutting them loses nothing.
    let segment = segment_files(&dir).pop().expect("segment");
    let mut bytes = std::fs::read(&segment).expect("read");
    let record = titan::wal::encoded_len(300);
    bytes[8 * record + 30] ^= 1;
    std::fs::write(&segment, &bytes).expect("corrupt");
    let big = run(|| async {
        let (journal, replay, report) = open(&dir, config.clone()).await.expect("open");
        assert!(report.damage.is_some());
        assert_eq!(rebuild(&replay), all);
        assert_eq!(journal.last_lsn(), Lsn(12));
        // A record that does not fit the rest of the segment rolls right away, into a segment
        // named after the snapshot (13), while the old segment's last record is 8.
        let big = append_all(&journal, &[(2, vec![7u8; 6000]), (2, vec![8u8; 6000])]).await;
        assert_eq!(big[0].lsn, 13);
        assert_eq!(journal.stats().segments_rolled, 2);
        let names: Vec<u64> = segment_files(&dir)
            .iter()
            .map(|p| first_lsn_of(p))
            .collect();
        assert_eq!(names, vec![1, 13, 14]);
        journal.close().await.expect("close");
        big
    });
    run(|| async {
        let (journal, replay, report) = open(&dir, config.clone()).await.expect("reopen");
        journal.close().await.expect("close");
        assert_eq!(report.damage, None);
        let mut expected = all.clone();
        expected.extend(big);
        assert_eq!(rebuild(&replay), expected);
    });
}
