//! Torn and corrupt tails: a segment cut at every interesting offset, every byte of the last
//! record flipped: recovery must stop at the last whole batch, cut the file there, never panic,
//! and keep appending after it. Damage anywhere else (a later batch or segment follows it, or its
//! own batch's commit is intact) is corruption: opening fails and nothing is cut, unless the
//! operator asked to cut after the last good batch (then the damaged segments are copied aside).

mod wal_support;

use std::path::{Path, PathBuf};

use titan::wal::{decode, Lsn, OpenError, WalConfig, RECORD_HEADER_LEN};
use wal_support::*;

/// Writes a one-segment log of records with assorted sizes, each its own batch (appended once
/// the previous one was durable); returns its records and segment file.
fn build_log(dir: &Path, config: &WalConfig) -> (Vec<Rec>, PathBuf) {
    let sizes = [0usize, 5, 24, 100, 333, 1000, 7, 256, 4000, 17, 64, 129];
    let items: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| (i as u8, (0..n).map(|b| (b * 31 + i) as u8 | 1).collect()))
        .collect();
    let records = run(|| async {
        let (journal, _, _) = open(dir, config.clone()).await.expect("open");
        let mut acked = Vec::new();
        for item in &items {
            acked.extend(append_all(&journal, std::slice::from_ref(item)).await);
        }
        journal.close().await.expect("close");
        acked
    });
    let segments = segment_files(dir);
    assert_eq!(segments.len(), 1);
    (records, segments[0].clone())
}

/// The segment's records plus two blocks of the zeros that follow them in a preallocated file.
fn read_prefix(segment: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(segment).expect("read");
    let end = *boundaries(&bytes).last().expect("end");
    assert!(bytes[end..].iter().all(|&b| b == 0), "preallocated zeros");
    bytes.truncate((end.next_multiple_of(4096) + 4096).min(bytes.len()));
    bytes
}

fn config() -> WalConfig {
    WalConfig {
        segment_bytes: 256 << 10,
        max_record_bytes: 64 << 10,
        ..WalConfig::default()
    }
}

/// Offsets where records start (and the logical end).
fn boundaries(bytes: &[u8]) -> Vec<usize> {
    let mut out = vec![0];
    let mut pos = 0;
    while let Ok(d) = decode(&bytes[pos..], usize::MAX >> 1) {
        pos += d.encoded_len;
        out.push(pos);
    }
    out
}

/// Recovers a copy of the log whose segment holds `bytes`; checks the result and that appending
/// continues after the last good record.
fn recover_and_continue(label: &str, bytes: &[u8], original: &[Rec], config: &WalConfig) {
    let tmp = TempDir::new("torn");
    let dir = tmp.path().join("shard-0");
    std::fs::create_dir_all(&dir).expect("dir");
    let segment = dir.join("00000000000000000001.wal");
    std::fs::write(&segment, bytes).expect("write segment");
    let bounds = boundaries(bytes);
    let good_end = *bounds.last().expect("at least offset 0");
    let good = bounds.len() - 1;
    let expect_damage = bytes[good_end..].iter().any(|&b| b != 0);
    run(|| async {
        let (journal, replay, report) = open(&dir, config.clone()).await.expect(label);
        assert_eq!(replay.records, original[..good], "{label}");
        assert_eq!(
            report.damage.is_some(),
            expect_damage,
            "{label}: {report:?}"
        );
        if let Some(damage) = &report.damage {
            assert_eq!(damage.offset, good_end as u64, "{label}");
        }
        let len = std::fs::metadata(&segment).expect("stat").len();
        // Damage is cut off; a clean end (zeros, as in a preallocated segment) is left alone.
        let expected_len = if expect_damage { good_end } else { bytes.len() };
        assert_eq!(len, expected_len as u64, "{label}: segment length");
        let more = vec![(200u8, b"after".to_vec()), (201, vec![9u8; 3000])];
        let added = append_all(&journal, &more).await;
        assert_eq!(
            added[0].lsn,
            good as u64 + 1,
            "{label}: numbering continues"
        );
        journal.close().await.expect("close");
        let (journal, replay, report) = open(&dir, config.clone()).await.expect("reopen");
        journal.close().await.expect("close");
        let mut expected = original[..good].to_vec();
        expected.extend(added);
        assert_eq!(replay.records, expected, "{label}");
        assert_eq!(report.damage, None, "{label}");
    });
}

#[test]
fn truncation_at_every_interesting_offset() {
    init_tracing();
    let tmp = TempDir::new("truncate-src");
    let config = config();
    let (records, segment) = build_log(tmp.path(), &config);
    let bytes = read_prefix(&segment);
    let bounds = boundaries(&bytes);
    let end = *bounds.last().expect("end");
    assert_eq!(bounds.len() - 1, records.len());
    let mut cuts = vec![0, bytes.len(), end + 1, end + 100];
    for pair in bounds.windows(2).skip(bounds.len() - 5) {
        let (start, next) = (pair[0], pair[1]);
        let payload_mid = start + RECORD_HEADER_LEN + (next - start - RECORD_HEADER_LEN) / 2;
        cuts.extend([
            start,
            start + 1,
            start + 4,
            start + 8,
            start + 17,
            start + RECORD_HEADER_LEN - 1,
            start + RECORD_HEADER_LEN,
            payload_mid,
            next - 1,
        ]);
    }
    cuts.sort();
    cuts.dedup();
    for cut in cuts.into_iter().filter(|&c| c <= bytes.len()) {
        recover_and_continue(&format!("cut at {cut}"), &bytes[..cut], &records, &config);
    }
}

#[test]
fn any_flipped_byte_in_the_last_record_is_cut_off() {
    init_tracing();
    let tmp = TempDir::new("flip-src");
    let config = config();
    let (records, segment) = build_log(tmp.path(), &config);
    let bytes = read_prefix(&segment);
    let bounds = boundaries(&bytes);
    let (last_start, end) = (bounds[bounds.len() - 2], bounds[bounds.len() - 1]);
    for at in last_start..end {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x40;
        let label = format!("flip at {at}");
        // Every flip must be detected: the record decodes only if it is unchanged.
        assert!(
            decode(&damaged[last_start..], usize::MAX >> 1).is_err(),
            "{label}"
        );
        recover_and_continue(&label, &damaged, &records, &config);
    }
}

/// 200 records of 150–199 bytes in 8 KiB segments, batches of at most 4 KiB; returns the
/// records, the segment files and the config.
fn build_segmented_log(dir: &Path) -> (Vec<Rec>, Vec<PathBuf>, WalConfig) {
    let config = WalConfig {
        segment_bytes: 8 << 10,
        max_record_bytes: 1 << 10,
        max_batch_bytes: 4 << 10,
        ..WalConfig::default()
    };
    let items: Vec<_> = (0..200u32)
        .map(|i| (1u8, vec![i as u8 | 1; 150 + (i as usize % 50)]))
        .collect();
    let written = run(|| async {
        let (journal, _, _) = open(dir, config.clone()).await.expect("open");
        let acked = append_all(&journal, &items).await;
        journal.close().await.expect("close");
        acked
    });
    let segments = segment_files(dir);
    assert!(segments.len() >= 5, "{} segments", segments.len());
    (written, segments, config)
}

#[test]
fn corrupt_record_in_an_older_segment_refuses_to_open_and_keeps_every_file() {
    init_tracing();
    let tmp = TempDir::new("middle");
    let dir = tmp.path().join("shard-0");
    let (_, segments, config) = build_segmented_log(&dir);
    let victim = &segments[2];
    let mut bytes = std::fs::read(victim).expect("read");
    let bounds = boundaries(&bytes);
    let hit = bounds[3] + RECORD_HEADER_LEN + 10;
    bytes[hit] ^= 0xff;
    std::fs::write(victim, &bytes).expect("corrupt");
    let before: Vec<Vec<u8>> = segments.iter().map(|s| std::fs::read(s).unwrap()).collect();
    run(|| async {
        match open(&dir, config.clone()).await {
            Err(OpenError::Corrupt {
                path,
                offset,
                count,
                ..
            }) => {
                assert_eq!(
                    (path.as_path(), offset),
                    (victim.as_path(), bounds[3] as u64)
                );
                assert!(count > 0);
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a log damaged in the middle opened"),
        }
    });
    // Nothing was cut or deleted: the records after the damage can still be rescued.
    let after: Vec<Vec<u8>> = segments.iter().map(|s| std::fs::read(s).unwrap()).collect();
    assert_eq!(segment_files(&dir), segments);
    assert!(before == after, "the log was modified");
}

#[test]
fn corrupt_record_far_from_the_end_of_one_segment_refuses_to_open() {
    init_tracing();
    let tmp = TempDir::new("middle-one");
    let dir = tmp.path().join("shard-0");
    // One big segment, small batches: records far past the damage cannot be one torn batch.
    let config = WalConfig {
        segment_bytes: 1 << 20,
        max_record_bytes: 1 << 10,
        max_batch_bytes: 4 << 10,
        ..WalConfig::default()
    };
    let items: Vec<_> = (0..300u32).map(|i| (1u8, vec![i as u8 | 1; 100])).collect();
    run(|| async {
        let (journal, _, _) = open(&dir, config.clone()).await.expect("open");
        append_all(&journal, &items).await;
        journal.close().await.expect("close");
    });
    let segment = segment_files(&dir).pop().expect("a segment");
    let mut bytes = std::fs::read(&segment).expect("read");
    let bounds = boundaries(&bytes);
    bytes[bounds[10] + RECORD_HEADER_LEN + 3] ^= 0x01;
    std::fs::write(&segment, &bytes).expect("corrupt");
    run(|| async {
        match open(&dir, config.clone()).await {
            Err(OpenError::Corrupt {
                offset,
                first,
                last,
                ..
            }) => {
                assert_eq!(offset, bounds[10] as u64);
                assert_eq!((first, last), (Lsn(12), Lsn(300)));
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a log damaged in the middle opened"),
        }
    });
    // Damage inside the last batch, whose commit (record 300) is intact: that write completed,
    // so this is corruption too, however close to the end.
    let mut bytes = std::fs::read(&segment).expect("read");
    bytes[bounds[10] + RECORD_HEADER_LEN + 3] ^= 0x01;
    bytes[bounds[295] + RECORD_HEADER_LEN + 3] ^= 0x01;
    std::fs::write(&segment, &bytes).expect("corrupt");
    run(|| async {
        match open(&dir, config.clone()).await {
            Err(OpenError::Corrupt { offset, .. }) => assert_eq!(offset, bounds[295] as u64),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a batch with an intact commit was cut"),
        }
    });
    // Damage in the last batch's commit itself is a torn final write: cut after the batch
    // before it, and the log opens.
    bytes[bounds[295] + RECORD_HEADER_LEN + 3] ^= 0x01;
    bytes[bounds[299] + RECORD_HEADER_LEN + 3] ^= 0x01;
    std::fs::write(&segment, &bytes).expect("corrupt");
    run(|| async {
        let (_journal, replay, report) = open(&dir, config.clone()).await.expect("open");
        let damage = report.damage.expect("damage");
        assert_eq!(damage.offset, bounds[299] as u64);
        let kept = replay.records.len();
        assert!(
            kept < 299 && kept + damage.dropped as usize == 299,
            "{kept} {damage:?}"
        );
        assert_eq!(damage.cut_at, bounds[kept] as u64);
    });
}

#[test]
fn a_missing_segment_is_a_gap_not_a_silent_skip() {
    init_tracing();
    let tmp = TempDir::new("gap");
    let dir = tmp.path().join("shard-0");
    let config = WalConfig {
        segment_bytes: 8 << 10,
        max_record_bytes: 1 << 10,
        max_batch_bytes: 4 << 10,
        ..WalConfig::default()
    };
    let items: Vec<_> = (0..100u32).map(|i| (1u8, vec![i as u8; 300])).collect();
    run(|| async {
        let (journal, _, _) = open(&dir, config.clone()).await.expect("open");
        append_all(&journal, &items).await;
        journal.close().await.expect("close");
    });
    let segments = segment_files(&dir);
    assert!(segments.len() >= 4);
    std::fs::remove_file(&segments[2]).expect("remove a middle segment");
    run(|| async {
        match open(&dir, config.clone()).await {
            Err(titan::wal::OpenError::Gap { found, path, .. }) => {
                assert_eq!(path, segments[3]);
                assert_eq!(
                    found.0,
                    segments[3]
                        .file_stem()
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                );
            }
            Err(e) => panic!("expected a gap, got {e}"),
            Ok(_) => panic!("expected a gap, the journal opened"),
        }
    });
    // Nothing was deleted by the refused open.
    assert_eq!(segment_files(&dir).len(), segments.len() - 1);
}

/// `batches` batches of `per_batch` records each (every batch waited for before the next is
/// appended, so each is one write); returns the records and the segment file.
fn build_batched_log(dir: &Path, batches: usize, per_batch: usize) -> (Vec<Rec>, PathBuf) {
    let config = config();
    let records = run(|| async {
        let (journal, _, _) = open(dir, config.clone()).await.expect("open");
        let mut acked = Vec::new();
        for b in 0..batches {
            let items: Vec<_> = (0..per_batch)
                .map(|i| (1u8, vec![(b * per_batch + i) as u8 | 1; 40 + 13 * i]))
                .collect();
            acked.extend(append_all(&journal, &items).await);
        }
        journal.close().await.expect("close");
        acked
    });
    let segments = segment_files(dir);
    assert_eq!(segments.len(), 1);
    (records, segments[0].clone())
}

/// The issue-18 probe at the WAL level: a byte flipped inside any record of a log of many batches
/// (each acknowledged before the next was written) stops `open` with `Corrupt`, naming the
/// segment, the damaged offset and the last good sequence number, and changes no byte of the log;
/// only a flip in the last record of the last batch (its commit) reads as a torn final write and
/// is cut. A flip in an earlier record of the last batch leaves its commit intact: corruption too.
#[test]
fn a_flip_in_any_record_of_a_multi_batch_log_is_corruption_unless_it_is_the_torn_last_commit() {
    init_tracing();
    for per_batch in [1usize, 4] {
        let tmp = TempDir::new("flip-every");
        let dir = tmp.path().join("shard-0");
        let batches = 40 / per_batch;
        let (records, segment) = build_batched_log(&dir, batches, per_batch);
        let pristine = std::fs::read(&segment).expect("read");
        let bounds = boundaries(&pristine);
        assert_eq!(bounds.len() - 1, records.len());
        for (i, pair) in bounds.windows(2).enumerate() {
            let label = format!("{per_batch} per batch, flip in record {}", i + 1);
            let mut bytes = pristine.clone();
            bytes[pair[0] + RECORD_HEADER_LEN + 5] ^= 0x20;
            std::fs::write(&segment, &bytes).expect("damage");
            let last_batch_start = (batches - 1) * per_batch;
            let is_last_commit = i == records.len() - 1;
            let result = run(|| async {
                let (journal, replay, _) = open(&dir, config()).await?;
                journal.close().await.expect("close");
                Ok(replay)
            });
            match result {
                Ok(replay) => {
                    assert!(is_last_commit, "{label}: opened, expected Corrupt");
                    assert_eq!(replay.records, records[..last_batch_start], "{label}");
                }
                Err(OpenError::Corrupt {
                    path,
                    offset,
                    last_good,
                    ..
                }) => {
                    assert!(!is_last_commit, "{label}: a torn last commit refused");
                    assert_eq!(path, segment, "{label}");
                    // The damaged record's offset, and the last record of the last whole batch
                    // before it (what `--recover-to-last-good` would keep).
                    let batch_start = i / per_batch * per_batch;
                    assert_eq!(offset, bounds[i] as u64, "{label}");
                    assert_eq!(last_good, Lsn(batch_start as u64), "{label}");
                    assert!(
                        std::fs::read(&segment).expect("read") == bytes,
                        "{label}: the log was modified"
                    );
                }
                Err(e) => panic!("{label}: wrong error: {e}"),
            }
            std::fs::write(&segment, &pristine).expect("restore");
        }
    }
}
