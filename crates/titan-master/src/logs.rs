//! Job output on the master: the UDP log sink, which lives on shard 0, and `GetLogs`.
//!
//! Workers ship their jobs' output lines over UDP to the sink, which keeps a bounded ring per
//! attempt and counts every gap. When an attempt ends, the worker's `JobComplete` report (TCP,
//! so it cannot be lost) carries the attempt's line totals: its home shard passes them to shard 0
//! with the worker's address, so the sink knows how many lines to expect and where the complete
//! files are. A `GetLogs` request goes to the job's owner shard, which knows the job's latest
//! attempt and state, and then to shard 0, which answers from the ring — holding the reply for up
//! to `wait_ms` when the client follows (`titan logs -f`) and nothing new has arrived yet. A
//! reply that names a worker carries a ticket for the job's directory there (the worker serves
//! files only with one; see `titan_auth::ticket`).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::future;

use super::frames::{data_frame, error_frame};
use super::mesh::ShardMsg;
use super::shard::Shard;
use titan_core::{JobId, JobState};
use titan_logs::{AttemptKey, LogSink, Stream};
use titan_proto::message::client::LogTotals;
use titan_proto::message::logs::{LogLine, LogsReply, Ticket};

/// Attempts whose worker the master remembers for fetching their files.
pub const LOG_INDEX_LIMIT: usize = 100_000;

/// Most lines one `GetLogs` reply carries.
pub const MAX_LINES_PER_REPLY: u32 = 10_000;

/// Longest a follower's request is held.
pub const MAX_LOG_WAIT: Duration = Duration::from_secs(10);

/// Shard 0's logging state.
pub struct LogSide {
    pub sink: LogSink,
    /// Which worker ran each recent attempt (bounded, oldest forgotten first).
    index: RefCell<LogIndex>,
}

#[derive(Default)]
struct LogIndex {
    addrs: HashMap<AttemptKey, SocketAddr>,
    order: VecDeque<AttemptKey>,
}

impl LogSide {
    pub fn new(sink: LogSink) -> LogSide {
        LogSide {
            sink,
            index: RefCell::new(LogIndex::default()),
        }
    }

    fn remember(&self, key: AttemptKey, worker: SocketAddr) {
        let mut index = self.index.borrow_mut();
        if index.addrs.insert(key, worker).is_none() {
            index.order.push_back(key);
            if index.order.len() > LOG_INDEX_LIMIT {
                if let Some(old) = index.order.pop_front() {
                    index.addrs.remove(&old);
                }
            }
        }
    }

    fn worker_of(&self, key: AttemptKey) -> Option<SocketAddr> {
        self.index.borrow().addrs.get(&key).copied()
    }

    pub fn totals(&self) -> LogTotals {
        let s = self.sink.stats();
        LogTotals {
            lines: s.lines,
            lines_lost: s.lines_lost,
            datagrams_lost: s.datagrams_lost,
            lines_evicted: s.lines_evicted,
            invalid_datagrams: s.invalid_datagrams,
            unauthenticated_datagrams: s.unauthenticated_datagrams,
            jobs_tracked: s.jobs_tracked as u64,
            bytes_held: s.bytes_held as u64,
        }
    }
}

/// What a `GetLogs` asks, as it travels between shards.
#[derive(Clone, Copy, Debug)]
pub struct LogsParams {
    pub attempt: u32,
    pub cursor: u64,
    pub max_lines: u32,
    pub wait_ms: u32,
}

/// What the owner shard knows of the job, passed to shard 0 with the request.
#[derive(Clone, Debug)]
pub struct LogsInfo {
    pub job: JobId,
    pub label: String,
    pub state: JobState,
    pub attempt: u32,
    /// The worker running the attempt now, if it runs.
    pub worker: Option<SocketAddr>,
    pub last_error: Option<String>,
}

impl Shard {
    /// An attempt ended on a worker of this shard: tell shard 0 its line totals and its worker.
    pub(super) fn on_attempt_output_end(
        &self,
        job: JobId,
        attempt: u32,
        lines: (u64, u64),
        worker: SocketAddr,
    ) {
        self.send_to(
            0,
            ShardMsg::LogEnd {
                job,
                attempt,
                stdout: lines.0,
                stderr: lines.1,
                worker,
            },
        );
    }

    pub(super) fn on_log_end(
        &self,
        job: JobId,
        attempt: u32,
        stdout: u64,
        stderr: u64,
        worker: SocketAddr,
    ) {
        if let Some(logs) = &self.logs {
            let key = AttemptKey::new(job, attempt);
            logs.sink.on_stream_end(key, Stream::Stdout, stdout);
            logs.sink.on_stream_end(key, Stream::Stderr, stderr);
            logs.remember(key, worker);
        }
    }

    /// On the owner shard: resolve the attempt to read and hand the request to shard 0.
    pub(super) fn logs_for(&self, token: u64, job: JobId, params: LogsParams) {
        let info = {
            let core = self.core.borrow();
            let Some(view) = core.job(job) else {
                return self.deliver(
                    token,
                    error_frame(
                        titan_proto::ErrorCode::NotFound,
                        &format!("unknown job {job}"),
                    ),
                );
            };
            let worker = view.worker.and_then(|w| self.directory.addr(w));
            LogsInfo {
                job,
                label: view.label.to_string(),
                state: view.state,
                attempt: view.attempts,
                worker: if view.state == JobState::Running {
                    worker
                } else {
                    None
                },
                last_error: view.last_error.map(str::to_string),
            }
        };
        self.send_to(
            0,
            ShardMsg::LogsRead {
                token,
                params,
                info: Box::new(info),
            },
        );
    }

    /// On shard 0: answer from the ring, waiting for news first when the client follows.
    pub(super) fn read_logs(&self, token: u64, params: LogsParams, info: LogsInfo) {
        let shard = self.rc();
        glommio::spawn_local(async move {
            let reply = shard.logs_reply(params, &info).await;
            shard.deliver(token, data_frame(&reply));
        })
        .detach();
    }

    async fn logs_reply(&self, params: LogsParams, info: &LogsInfo) -> LogsReply {
        // A new attempt started since the client's cursor: read the new one from its start.
        let cursor = if params.attempt == info.attempt {
            params.cursor
        } else {
            0
        };
        let key = AttemptKey::new(info.job, info.attempt);
        let wait = Duration::from_millis(u64::from(params.wait_ms)).min(MAX_LOG_WAIT);
        let logs = self.logs.as_ref();
        if let Some(logs) = logs {
            let has_news = |s: &LogSide| {
                s.sink
                    .summary(key)
                    .is_some_and(|sum| sum.next_cursor > cursor || sum.ended.is_some())
            };
            if !wait.is_zero() && info.attempt > 0 && !has_news(logs) && !info.state.is_terminal() {
                future::or(
                    logs.sink.wait_for_lines(key, cursor),
                    glommio::timer::sleep(wait),
                )
                .await;
            } else if !wait.is_zero() && info.attempt == 0 && !info.state.is_terminal() {
                // Not started yet: let the follower come back later instead of spinning.
                glommio::timer::sleep(wait).await;
            }
        }
        let max = params.max_lines.clamp(1, MAX_LINES_PER_REPLY) as usize;
        let page = logs.and_then(|l| l.sink.lines_since(key, cursor, max));
        let summary = logs.and_then(|l| l.sink.summary(key));
        let worker = info.worker.or_else(|| logs.and_then(|l| l.worker_of(key)));
        let ticket = worker.and_then(|addr| self.ticket_for(addr, &info.label));
        let lines = page
            .as_ref()
            .map(|p| {
                p.lines
                    .iter()
                    .map(|l| LogLine {
                        stream: if l.stream == Stream::Stdout { 1 } else { 2 },
                        bytes: l.bytes.clone(),
                        terminator: l.flags.terminator().to_vec(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        LogsReply {
            label: info.label.clone(),
            attempt: info.attempt,
            state: info.state,
            lines,
            next_cursor: page.as_ref().map_or(cursor, |p| p.next_cursor),
            skipped: page.as_ref().map_or(0, |p| p.skipped),
            lost: page.as_ref().map_or(0, |p| p.lost),
            ended: summary.as_ref().is_some_and(|s| s.ended.is_some()),
            complete: summary.as_ref().is_some_and(|s| s.holds_everything),
            worker_addr: worker.map(|a| a.to_string()),
            job_dir: info.label.clone(),
            last_error: info.last_error.clone(),
            ticket,
        }
    }

    /// A ticket to read `job_dir` on the worker registered at `addr`, if one is: the worker
    /// checks it with the key of its current registration.
    fn ticket_for(&self, addr: SocketAddr, job_dir: &str) -> Option<Ticket> {
        let (id, home) = self.directory.at(addr)?;
        Some(self.shared.auth.ticket(id, home.instance, job_dir))
    }
}
