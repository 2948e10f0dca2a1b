//! One job attempt's recent lines on the master, and what is known of the lines it missed.
//!
//! Lines of both streams sit in one ring in arrival order, each with its position (the
//! cursor), so a follower sees stdout and stderr interleaved roughly as they were printed. Per
//! stream the ring tracks the next expected record number: a jump is loss, a number already
//! passed is a late (or duplicate) datagram that is counted but not shown out of order. The
//! stream's end marker gives its total, which turns a loss at the tail into a count too.

use super::datagram::{LineFlags, Stream};
use super::limits::LINE_OVERHEAD_BYTES;
use std::collections::VecDeque;

/// A line as readers get it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub stream: Stream,
    /// The record's number within its stream.
    pub seq: u64,
    /// How the line ended; [`LineFlags::terminator`] gives the bytes to print after it.
    pub flags: LineFlags,
    pub bytes: Vec<u8>,
}

/// What the sink knows about one stream of one attempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamProgress {
    /// Records received in order (each shown to followers, possibly evicted since).
    pub received: u64,
    /// Records missing so far: skipped numbers, plus those between the last one received and
    /// the total once the end is known. Then `received + lost == total`.
    pub lost: u64,
    /// Records that arrived after a later one had (counted in `lost`, not shown).
    pub late: u64,
    /// The next record number expected.
    pub next_seq: u64,
    /// The stream's total record count, once its end is known.
    pub total: Option<u64>,
}

/// The ring's own per-stream counters; the tail loss is derived, so lines that arrive after
/// their end marker (a total sent over TCP may overtake the last datagrams) still count.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    received: u64,
    gaps: u64,
    late: u64,
    next_seq: u64,
    total: Option<u64>,
}

impl Progress {
    fn lost(&self) -> u64 {
        let tail = self.total.map_or(0, |t| t.saturating_sub(self.next_seq));
        self.gaps + tail
    }

    fn public(&self) -> StreamProgress {
        StreamProgress {
            received: self.received,
            lost: self.lost(),
            late: self.late,
            next_seq: self.next_seq,
            total: self.total,
        }
    }
}

/// Both streams' record counts, known when both have ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EndTotals {
    pub stdout: u64,
    pub stderr: u64,
}

/// One answer to [`lines_since`](super::LogSink::lines_since).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinesPage {
    pub lines: Vec<LogLine>,
    /// The cursor to ask with next time.
    pub next_cursor: u64,
    /// Lines between the cursor asked for and the first line returned that the ring no longer
    /// holds (evicted to keep memory bounded): the reader missed them here, but the worker's
    /// files have them.
    pub skipped: u64,
    /// Lines of this attempt lost on the way so far, both streams.
    pub lost: u64,
    /// Set once both streams have ended: their totals. A follower stops when it has read up to
    /// `next_cursor` of a page with `ended` set.
    pub ended: Option<EndTotals>,
}

/// The state of one attempt's log in the sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct JobLogSummary {
    pub stdout: StreamProgress,
    pub stderr: StreamProgress,
    pub lines_held: usize,
    /// Bytes charged for the lines held (payload plus a fixed overhead per line).
    pub bytes_held: usize,
    /// The cursor of the oldest line held.
    pub first_cursor: u64,
    /// The cursor the next line will get.
    pub next_cursor: u64,
    /// Lines dropped from the ring to respect its limits.
    pub evicted: u64,
    pub ended: Option<EndTotals>,
    /// True when the ring holds every line the job printed: both streams ended, nothing lost,
    /// nothing evicted. Then `lines_since(…, 0, …)` is the job's whole output; otherwise the
    /// worker's files are the only complete record.
    pub holds_everything: bool,
}

/// Per-attempt line limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RingLimits {
    pub max_lines: usize,
    pub max_bytes: usize,
}

/// What one line did to the ring, for the store's totals.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LineEffect {
    pub stored: bool,
    pub evicted: u64,
    /// Bytes charged minus bytes released.
    pub bytes_added: usize,
    pub bytes_freed: usize,
}

#[derive(Debug)]
struct Stored {
    stream: Stream,
    seq: u64,
    flags: LineFlags,
    bytes: Box<[u8]>,
}

impl Stored {
    fn cost(&self) -> usize {
        self.bytes.len() + LINE_OVERHEAD_BYTES
    }
}

#[derive(Debug, Default)]
pub(crate) struct JobRing {
    lines: VecDeque<Stored>,
    /// Cursor of `lines[0]`.
    first: u64,
    bytes: usize,
    streams: [Progress; 2],
    evicted: u64,
    /// The store's activity counter when this ring last received something.
    pub last_active: u64,
}

impl JobRing {
    pub fn new(tick: u64) -> Self {
        Self {
            last_active: tick,
            ..Self::default()
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn next_cursor(&self) -> u64 {
        self.first + self.lines.len() as u64
    }

    pub fn on_line(
        &mut self,
        stream: Stream,
        seq: u64,
        flags: LineFlags,
        bytes: &[u8],
        limits: RingLimits,
    ) -> LineEffect {
        let progress = &mut self.streams[stream.index()];
        let past_end = progress.total.is_some_and(|total| seq >= total);
        if seq < progress.next_seq || past_end {
            progress.late += 1;
            return LineEffect::default();
        }
        progress.gaps += seq - progress.next_seq;
        progress.next_seq = seq + 1;
        progress.received += 1;
        let line = Stored {
            stream,
            seq,
            flags,
            bytes: bytes.into(),
        };
        let cost = line.cost();
        let mut effect = LineEffect {
            stored: true,
            bytes_added: cost,
            ..LineEffect::default()
        };
        while !self.lines.is_empty()
            && (self.lines.len() >= limits.max_lines || self.bytes + cost > limits.max_bytes)
        {
            effect.bytes_freed += self.evict_oldest();
            effect.evicted += 1;
        }
        self.bytes += cost;
        self.lines.push_back(line);
        effect
    }

    /// Records a stream's end after `total` records; returns whether this made the attempt
    /// ended. A second end of the same stream changes nothing.
    pub fn on_end(&mut self, stream: Stream, total: u64) -> bool {
        let progress = &mut self.streams[stream.index()];
        if progress.total.is_some() {
            return false;
        }
        progress.total = Some(total);
        self.ended().is_some()
    }

    /// Drops the oldest line; returns the bytes released (0 when empty).
    pub fn evict_oldest(&mut self) -> usize {
        match self.lines.pop_front() {
            Some(line) => {
                self.first += 1;
                self.evicted += 1;
                let cost = line.cost();
                self.bytes -= cost;
                cost
            }
            None => 0,
        }
    }

    pub fn ended(&self) -> Option<EndTotals> {
        match (self.streams[0].total, self.streams[1].total) {
            (Some(stdout), Some(stderr)) => Some(EndTotals { stdout, stderr }),
            _ => None,
        }
    }

    /// Lines of both streams known to be missing.
    pub fn lost(&self) -> u64 {
        self.streams[0].lost() + self.streams[1].lost()
    }

    /// Lines of both streams that arrived after a later one.
    pub fn late(&self) -> u64 {
        self.streams[0].late + self.streams[1].late
    }

    pub fn page(&self, cursor: u64, max_lines: usize) -> LinesPage {
        let skipped = self.first.saturating_sub(cursor);
        let start = usize::try_from(cursor.saturating_sub(self.first))
            .unwrap_or(usize::MAX)
            .min(self.lines.len());
        let end = start.saturating_add(max_lines).min(self.lines.len());
        let lines = self
            .lines
            .range(start..end)
            .map(|line| LogLine {
                stream: line.stream,
                seq: line.seq,
                flags: line.flags,
                bytes: line.bytes.to_vec(),
            })
            .collect();
        LinesPage {
            lines,
            next_cursor: self.first + end as u64,
            skipped,
            lost: self.lost(),
            ended: self.ended(),
        }
    }

    pub fn summary(&self) -> JobLogSummary {
        let ended = self.ended();
        JobLogSummary {
            stdout: self.streams[0].public(),
            stderr: self.streams[1].public(),
            lines_held: self.lines.len(),
            bytes_held: self.bytes,
            first_cursor: self.first,
            next_cursor: self.next_cursor(),
            evicted: self.evicted,
            ended,
            holds_everything: ended.is_some() && self.evicted == 0 && self.lost() == 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: RingLimits = RingLimits {
        max_lines: 100,
        max_bytes: 1 << 20,
    };

    fn line(ring: &mut JobRing, stream: Stream, seq: u64, limits: RingLimits) -> LineEffect {
        let text = format!("{stream:?} {seq}");
        ring.on_line(stream, seq, LineFlags::empty(), text.as_bytes(), limits)
    }

    #[test]
    fn gaps_late_lines_and_the_tail_are_counted_per_stream() {
        let mut ring = JobRing::new(0);
        for seq in [0, 1, 4, 5] {
            line(&mut ring, Stream::Stdout, seq, ROOMY);
        }
        assert!(!line(&mut ring, Stream::Stdout, 2, ROOMY).stored, "late");
        line(&mut ring, Stream::Stderr, 0, ROOMY);
        assert!(!ring.on_end(Stream::Stdout, 9));
        assert!(!ring.on_end(Stream::Stdout, 9), "idempotent");
        assert!(ring.on_end(Stream::Stderr, 1));
        let summary = ring.summary();
        let out = summary.stdout;
        assert_eq!((out.received, out.lost, out.late), (4, 5, 1));
        assert_eq!(out.received + out.lost, out.total.unwrap());
        assert_eq!(
            summary.ended,
            Some(EndTotals {
                stdout: 9,
                stderr: 1
            })
        );
        assert!(!summary.holds_everything);
        assert!(
            !line(&mut ring, Stream::Stderr, 1, ROOMY).stored,
            "past the end"
        );
        assert_eq!(ring.summary().stderr.late, 1);
    }

    #[test]
    fn lines_overtaken_by_their_end_marker_still_count() {
        let mut ring = JobRing::new(0);
        line(&mut ring, Stream::Stdout, 0, ROOMY);
        ring.on_end(Stream::Stdout, 3);
        assert_eq!(ring.summary().stdout.lost, 2);
        assert!(line(&mut ring, Stream::Stdout, 1, ROOMY).stored);
        assert!(line(&mut ring, Stream::Stdout, 2, ROOMY).stored);
        ring.on_end(Stream::Stderr, 0);
        let summary = ring.summary();
        assert_eq!((summary.stdout.received, summary.stdout.lost), (3, 0));
        assert!(summary.holds_everything);
    }

    #[test]
    fn limits_evict_the_oldest_lines_and_cursors_skip_them() {
        let limits = RingLimits {
            max_lines: 3,
            max_bytes: 1 << 20,
        };
        let mut ring = JobRing::new(0);
        for seq in 0..5 {
            line(&mut ring, Stream::Stdout, seq, limits);
        }
        let page = ring.page(0, 10);
        assert_eq!(page.skipped, 2);
        assert_eq!(page.next_cursor, 5);
        let seqs: Vec<u64> = page.lines.iter().map(|l| l.seq).collect();
        assert_eq!(seqs, vec![2, 3, 4]);
        assert_eq!(ring.page(3, 1).lines[0].seq, 3);
        assert_eq!(ring.page(3, 1).next_cursor, 4);
        let beyond = ring.page(40, 10);
        assert!(beyond.lines.is_empty());
        assert_eq!(beyond.next_cursor, 5);

        let tight = RingLimits {
            max_lines: 100,
            max_bytes: 2 * (LINE_OVERHEAD_BYTES + 8),
        };
        let mut ring = JobRing::new(0);
        for seq in 0..4 {
            line(&mut ring, Stream::Stderr, seq, tight);
        }
        assert_eq!(ring.summary().lines_held, 2);
        assert!(ring.bytes() <= tight.max_bytes);
        assert_eq!(ring.summary().evicted, 2);
    }

    #[test]
    fn a_complete_small_job_is_held_entirely() {
        let mut ring = JobRing::new(0);
        line(&mut ring, Stream::Stdout, 0, ROOMY);
        line(&mut ring, Stream::Stderr, 0, ROOMY);
        ring.on_end(Stream::Stdout, 1);
        ring.on_end(Stream::Stderr, 1);
        let summary = ring.summary();
        assert!(summary.holds_everything);
        assert_eq!(ring.page(0, 10).lines.len(), 2);
    }
}
