//! Tests of the log store: datagram and line accounting, limits and eviction.

use super::*;
use crate::datagram::testing::{attempt_key, master, worker_key};
use crate::datagram::{DatagramWriter, LineFlags};
use crate::limits::LINE_OVERHEAD_BYTES;
use titan_core::JobId;

/// A store with the test master's keys.
fn store(limits: SinkLimits) -> LogStore {
    LogStore::new(limits, SinkKeys::new(master()))
}

fn attempt(job: u64) -> AttemptKey {
    AttemptKey::new(JobId(job), 0)
}

/// A datagram from worker 1, session 1, with one line per `(job, stream, seq)`.
fn datagram(seq: u64, lines: &[(u64, Stream, u64)]) -> Vec<u8> {
    let mut writer = DatagramWriter::new(65_000);
    for &(job, stream, line_seq) in lines {
        let text = format!("job {job} line {line_seq}");
        assert!(writer.push_line(
            &attempt_key(attempt(job)),
            attempt(job).stream(stream),
            line_seq,
            LineFlags::empty(),
            text.as_bytes()
        ));
    }
    writer
        .seal(&worker_key(WorkerId(1)), WorkerId(1), 1, seq)
        .to_vec()
}

fn end(seq: u64, job: u64, totals: [u64; 2]) -> Vec<u8> {
    let mut writer = DatagramWriter::new(65_000);
    for stream in Stream::BOTH {
        assert!(writer.push_end(
            &attempt_key(attempt(job)),
            attempt(job).stream(stream),
            totals[stream.index()]
        ));
    }
    writer
        .seal(&worker_key(WorkerId(1)), WorkerId(1), 1, seq)
        .to_vec()
}

fn feed(store: &mut LogStore, bytes: &[u8]) -> Vec<AttemptKey> {
    let mut touched = Vec::new();
    store
        .on_datagram(&mut bytes.to_vec(), &mut touched)
        .expect("valid");
    touched
}

#[test]
fn loss_totals_follow_rings_as_they_change_and_after_they_are_forgotten() {
    let mut store = store(SinkLimits::default());
    // The end marker overtakes job 1's lines: all three count as lost for now.
    feed(&mut store, &end(0, 1, [3, 0]));
    assert_eq!(store.stats().lines_lost, 3);
    // Two of them arrive after all, so the loss shrinks; one arrives twice (late).
    feed(
        &mut store,
        &datagram(1, &[(1, Stream::Stdout, 0), (1, Stream::Stdout, 1)]),
    );
    feed(&mut store, &datagram(2, &[(1, Stream::Stdout, 1)]));
    let stats = store.stats();
    assert_eq!((stats.lines_lost, stats.lines_late), (1, 1));
    // A forgotten attempt's losses stay in the totals.
    assert!(store.forget(attempt(1)));
    let stats = store.stats();
    assert_eq!(
        (stats.lines_lost, stats.lines_late, stats.jobs_tracked),
        (1, 1, 0)
    );
    // Job 2 skips two stderr lines: they add to what job 1 left.
    feed(&mut store, &datagram(3, &[(2, Stream::Stderr, 2)]));
    assert_eq!(store.stats().lines_lost, 3);
}

#[test]
fn datagram_and_line_gaps_are_counted() {
    let mut store = store(SinkLimits::default());
    feed(
        &mut store,
        &datagram(0, &[(1, Stream::Stdout, 0), (2, Stream::Stdout, 0)]),
    );
    // Datagrams 1 and 2 are lost with stdout lines 1..=2 of job 1.
    let touched = feed(
        &mut store,
        &datagram(3, &[(1, Stream::Stdout, 3), (1, Stream::Stderr, 0)]),
    );
    assert_eq!(touched, vec![attempt(1)]);
    feed(&mut store, &end(4, 1, [5, 1]));
    let stats = store.stats();
    assert_eq!(stats.datagrams, 3);
    assert_eq!(stats.datagrams_lost, 2);
    assert_eq!(stats.lines, 4);
    // Job 1: stdout 1, 2 skipped and 4 missing at the tail.
    assert_eq!(stats.lines_lost, 3);
    let summary = store.summary(attempt(1)).unwrap();
    assert_eq!((summary.stdout.received, summary.stdout.lost), (2, 3));
    assert!(summary.ended.is_some());
    assert!(!summary.holds_everything);
    let page = store.lines_since(attempt(1), 0, 100).unwrap();
    assert_eq!(page.lines.len(), 3);
    assert_eq!(page.lines[1].bytes, b"job 1 line 3");
    assert_eq!(page.lost, 3);
}

#[test]
fn late_datagrams_and_new_sessions() {
    let mut store = store(SinkLimits::default());
    feed(&mut store, &datagram(5, &[]));
    feed(&mut store, &datagram(7, &[]));
    feed(&mut store, &datagram(6, &[]));
    let stats = store.stats();
    assert_eq!((stats.datagrams_lost, stats.datagrams_late), (1, 1));
    // The same worker restarted: a new session starts numbering again without a loss.
    let mut writer = DatagramWriter::new(2000);
    let seal = attempt_key(attempt(3));
    assert!(writer.push_end(&seal, attempt(3).stream(Stream::Stdout), 0));
    let restarted = writer
        .seal(&worker_key(WorkerId(1)), WorkerId(1), 2, 0)
        .to_vec();
    feed(&mut store, &restarted);
    let stats = store.stats();
    assert_eq!((stats.datagrams_lost, stats.sessions), (1, 2));
}

#[test]
fn invalid_datagrams_are_counted_and_change_nothing() {
    let mut store = store(SinkLimits::default());
    let mut touched = Vec::new();
    assert!(store
        .on_datagram(&mut b"not a datagram".to_vec(), &mut touched)
        .is_err());
    let stats = store.stats();
    assert_eq!((stats.invalid_datagrams, stats.datagrams), (1, 0));
    assert!(touched.is_empty());
}

#[test]
fn forged_datagrams_are_counted_apart_and_change_nothing() {
    let mut store = store(SinkLimits::default());
    // Lines for job 1 sealed with job 2's key: what a worker that runs job 2 could send.
    let mut writer = DatagramWriter::new(2000);
    let target = attempt(1).stream(Stream::Stdout);
    assert!(writer.push_line(
        &attempt_key(attempt(2)),
        target,
        0,
        LineFlags::empty(),
        b"x"
    ));
    let mut forged = writer
        .seal(&worker_key(WorkerId(1)), WorkerId(1), 1, 0)
        .to_vec();
    let mut touched = Vec::new();
    assert!(store.on_datagram(&mut forged, &mut touched).is_err());
    let stats = store.stats();
    assert_eq!(
        (
            stats.unauthenticated_datagrams,
            stats.invalid_datagrams,
            stats.datagrams
        ),
        (1, 0, 0)
    );
    assert!(touched.is_empty() && store.summary(attempt(1)).is_none());
    assert_eq!(
        stats.sessions, 0,
        "the forged header did not count as a sender"
    );
}

#[test]
fn the_oldest_finished_attempt_is_evicted_first_then_the_idlest() {
    let limits = SinkLimits {
        max_jobs: 2,
        ..SinkLimits::default()
    };
    let mut store = store(limits);
    feed(&mut store, &datagram(0, &[(1, Stream::Stdout, 0)]));
    feed(&mut store, &datagram(1, &[(2, Stream::Stdout, 0)]));
    feed(&mut store, &end(2, 2, [1, 0]));
    feed(&mut store, &datagram(3, &[(3, Stream::Stdout, 0)]));
    assert!(
        store.summary(attempt(2)).is_none(),
        "finished job 2 goes first"
    );
    assert!(store.summary(attempt(1)).is_some());
    feed(&mut store, &datagram(4, &[(4, Stream::Stdout, 0)]));
    assert!(
        store.summary(attempt(1)).is_none(),
        "then the idlest, job 1"
    );
    assert!(store.summary(attempt(3)).is_some());
    assert_eq!(store.stats().jobs_evicted, 2);
    assert_eq!(store.stats().jobs_tracked, 2);
}

#[test]
fn memory_stays_within_the_budget_however_much_is_printed() {
    let limits = SinkLimits {
        max_lines_per_job: 1_000_000,
        max_bytes_per_job: 1 << 20,
        max_jobs: 8,
        max_total_bytes: 40 * 1024,
        max_workers: 4,
    };
    let mut store = store(limits);
    let mut next = [0u64; 3];
    for seq in 0..3000u64 {
        let job = seq % 3;
        let line = (job, Stream::Stdout, next[job as usize]);
        next[job as usize] += 1;
        feed(&mut store, &datagram(seq, &[line]));
        assert!(store.stats().bytes_held <= limits.max_total_bytes);
    }
    let stats = store.stats();
    assert_eq!(stats.lines, 3000);
    assert_eq!(stats.lines_lost, 0);
    let held: usize = (0..3)
        .map(|job| store.summary(attempt(job)).unwrap().lines_held)
        .sum();
    assert_eq!(stats.lines_evicted as usize + held, 3000);
    assert!(held * LINE_OVERHEAD_BYTES <= limits.max_total_bytes);
    // A cursor from the start skips what was evicted and continues without a gap.
    let page = store.lines_since(attempt(0), 0, 10).unwrap();
    assert_eq!(page.skipped, page.lines[0].seq);
    assert_eq!(page.lost, 0);
}

#[test]
fn an_end_over_tcp_ends_a_silent_attempt() {
    let mut store = store(SinkLimits::default());
    assert!(!store.on_stream_end(attempt(9), Stream::Stdout, 0));
    assert_eq!(store.progress(attempt(9)), Some((0, false)));
    assert!(store.on_stream_end(attempt(9), Stream::Stderr, 0));
    assert!(!store.on_stream_end(attempt(9), Stream::Stderr, 0));
    let summary = store.summary(attempt(9)).unwrap();
    assert!(summary.holds_everything);
    assert!(store.forget(attempt(9)));
    assert_eq!(store.progress(attempt(9)), None);
}
