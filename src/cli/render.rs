//! Text rendering of the master's replies for people: submitted ids, the job status block, the jobs
//! and workers tables, `wait` results, times and ages.
//!
//! Every function is pure: it takes the reply (and `now_us` where an age is shown) and returns the
//! text, each line ending in `\n`, so the exact output is unit-tested. STATS text is not here: it
//! is part of the protocol ([`ClusterStats::render_text`](titan_proto::message::client::ClusterStats)).

use std::fmt::Write as _;

use titan_core::ids::WorkerId;
use titan_core::model::JobState;
use titan_proto::message::client::{
    Cancelled, JobList, JobStatus, Stopped, Submitted, WaitReply, WorkerList, WorkerStatus,
};

/// Longest spec shown in a table cell; the status block shows it whole.
pub const TABLE_SPEC_CHARS: usize = 60;

/// What a missing value prints as.
const NONE: &str = "-";

/// The ids a submission got, one per line: the job id of a one-off (`TSK-17`), every job's full
/// id of a DAG (`dag-5:A`).
pub fn submitted(reply: &Submitted) -> String {
    if reply.jobs.is_empty() {
        return format!("{}\n", reply.label);
    }
    reply
        .jobs
        .iter()
        .map(|j| format!("{}\n", j.label))
        .collect()
}

/// `CANCEL`'s answer.
pub fn cancelled(target: &str, reply: &Cancelled) -> String {
    let plural = if reply.jobs == 1 { "" } else { "s" };
    format!("cancelled {target}: {} job{plural}\n", reply.jobs)
}

/// `STOP`'s answer.
pub fn stopped(reply: &Stopped) -> String {
    format!("stopped {}\n", reply.label)
}

/// Everything about one job, one `Label: value` line each.
pub fn status_block(job: &JobStatus) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("Job", format!("{} (id {})", job.label, job.id)),
        ("State", state_line(job)),
        ("Kind", job.kind.clone()),
        ("Spec", spec_line(&job.spec)),
        ("Skill", job.skill.clone()),
        ("Priority", job.priority.to_string()),
        ("Attempts", attempts_line(job)),
        ("Worker", worker_line(job)),
        ("Submitted", format_time_us(job.submitted_at_us)),
        ("Started", opt_time(job.started_at_us)),
        ("Finished", opt_time(job.finished_at_us)),
        ("Deps", deps_line(&job.deps)),
        (
            "Last error",
            job.last_error.clone().unwrap_or_else(|| NONE.into()),
        ),
    ];
    if job.kind == "DEPLOY" {
        rows.insert(2, ("Ready", yes_no(job.ready).into()));
    }
    let width = rows.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    let mut s = String::new();
    for (key, value) in rows {
        let _ = writeln!(s, "{:<width$} {value}", format!("{key}:"));
    }
    s
}

fn state_line(job: &JobStatus) -> String {
    format!(
        "{} (since {})",
        job.state,
        format_time_us(job.state_since_us)
    )
}

fn attempts_line(job: &JobStatus) -> String {
    let mut s = format!(
        "{} ({} failed, {} retries allowed",
        job.attempts, job.failures, job.retries
    );
    if job.crashes > 0 {
        let _ = write!(s, ", {} lost with their worker", job.crashes);
    }
    s.push(')');
    s
}

fn worker_line(job: &JobStatus) -> String {
    match (job.worker, job.worker_port) {
        (Some(w), Some(port)) => format!("{} on port {port}", WorkerId(w)),
        (Some(w), None) => WorkerId(w).to_string(),
        (None, Some(port)) => format!("port {port}"),
        (None, None) => NONE.into(),
    }
}

fn deps_line(deps: &[String]) -> String {
    if deps.is_empty() {
        NONE.into()
    } else {
        deps.join(", ")
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The jobs table, newest first as the master sent it, with a note when more jobs matched.
pub fn jobs_table(list: &JobList, now_us: u64) -> String {
    if list.jobs.is_empty() {
        return "no jobs\n".into();
    }
    let mut table = Table::new(&[
        "JOB", "STATE", "TYPE", "PRI", "TRIES", "WORKER", "AGE", "SPEC",
    ]);
    for job in &list.jobs {
        table.row(vec![
            job.label.clone(),
            job.state.to_string(),
            job.kind.clone(),
            job.priority.to_string(),
            job.attempts.to_string(),
            job.worker_port
                .map_or_else(|| NONE.into(), |p| p.to_string()),
            format_age_ms(now_us.saturating_sub(job.submitted_at_us) / 1000),
            shorten(&job.spec, TABLE_SPEC_CHARS),
        ]);
    }
    let mut s = table.render();
    if list.truncated {
        let _ = writeln!(
            s,
            "({} shown; more jobs match, raise --limit to see them)",
            list.jobs.len()
        );
    }
    s
}

/// The workers table, in the master's order.
pub fn workers_table(list: &WorkerList) -> String {
    if list.workers.is_empty() {
        return "no workers connected\n".into();
    }
    let mut table = Table::new(&[
        "WORKER", "PORT", "LOAD", "SKILLS", "PARENT", "SERVICES", "SEEN",
    ]);
    for w in &list.workers {
        table.row(vec![
            WorkerId(w.id).to_string(),
            w.port.to_string(),
            load_cell(w),
            w.skills.join(","),
            parent_cell(w),
            if w.services.is_empty() {
                NONE.into()
            } else {
                w.services.join(",")
            },
            format!("{} ago", format_age_ms(w.silent_for_ms)),
        ]);
    }
    table.render()
}

fn load_cell(w: &WorkerStatus) -> String {
    let pct = match w.capacity {
        0 => 0,
        cap => u64::from(w.running) * 100 / u64::from(cap),
    };
    format!("{}/{} ({pct}%)", w.running, w.capacity)
}

fn parent_cell(w: &WorkerStatus) -> String {
    match (w.parent, w.ephemeral) {
        (Some(p), true) => format!("{} (scaled)", WorkerId(p)),
        (Some(p), false) => WorkerId(p).to_string(),
        (None, _) => NONE.into(),
    }
}

/// One line per finished job with its final state (failures carry their last error), then one line
/// per job still unfinished when the wait timed out.
pub fn wait_lines(reply: &WaitReply) -> String {
    let width = reply
        .jobs
        .iter()
        .map(|j| j.label.chars().count())
        .chain(reply.pending.iter().map(|p| p.chars().count()))
        .max()
        .unwrap_or(0);
    let mut s = String::new();
    for job in &reply.jobs {
        let _ = write!(s, "{:<width$}  {}", job.label, job.state);
        // A completed job's last error belongs to an earlier, retried attempt: not worth a line.
        if let (Some(e), false) = (&job.last_error, job.state == JobState::Completed) {
            let _ = write!(s, "  ({e})");
        }
        s.push('\n');
    }
    for id in &reply.pending {
        let _ = writeln!(s, "{id:<width$}  (not finished)");
    }
    s
}

/// A left-aligned text table: columns two spaces apart, the last column unpadded.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have as many cells as the header.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut s = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let last = row.len().saturating_sub(1);
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i == last {
                    s.push_str(cell);
                } else {
                    let pad = width - cell.chars().count();
                    let _ = write!(s, "{cell}{:pad$}  ", "");
                }
            }
            s.push('\n');
        }
        s
    }
}

/// Longest spec `status` prints whole: an inline script (`RUN_INLINE|name:BASE64`) can be
/// megabytes; `--json` still carries all of it.
const SPEC_SHOWN: usize = 300;

fn spec_line(spec: &str) -> String {
    if spec.chars().count() <= SPEC_SHOWN {
        return spec.to_string();
    }
    format!(
        "{} ({} bytes in all)",
        shorten(spec, SPEC_SHOWN),
        spec.len()
    )
}

/// Cuts `text` to at most `max` characters, marking the cut with `…`.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

fn opt_time(us: Option<u64>) -> String {
    us.map_or_else(|| NONE.into(), format_time_us)
}

/// Microseconds since the epoch as RFC 3339 UTC with microseconds: `2025-06-01T12:00:03.042117Z`
/// (DAG hand-offs take well under a millisecond, so milliseconds would hide their order).
pub fn format_time_us(us: u64) -> String {
    let secs = us / 1_000_000;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        us % 1_000_000
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A short age: `850ms`, `42s`, `5m`, `3h`, `2d`.
pub fn format_age_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{}s", ms / 1000),
        60_000..=3_599_999 => format!("{}m", ms / 60_000),
        3_600_000..=86_399_999 => format!("{}h", ms / 3_600_000),
        _ => format!("{}d", ms / 86_400_000),
    }
}

#[cfg(test)]
mod tests;
