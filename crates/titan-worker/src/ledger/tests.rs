//! The ledger's rules, one test each, with a recorder in place of the shell. Handles are
//! numbers, pending launches are names, and time is `t0` plus an offset.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::*;

type Book = Ledger<u32, &'static str>;

/// What the ledger asked for, in order.
#[derive(Debug, PartialEq, Eq)]
enum Effect {
    Started(Attempt, u32),
    Ready(Attempt),
    Finished(Attempt, Outcome, Duration, OutputLines),
    Cancel(u32),
    Withdraw(u32),
    Launch(Attempt, &'static str),
    Probe(Attempt, u16, Instant),
    WakeAt(Instant),
}

#[derive(Default)]
struct Recorder {
    effects: Vec<Effect>,
    /// Handles `withdraw` succeeds for.
    withdrawable: BTreeSet<u32>,
    /// Ports `port_in_use` says are taken.
    taken: BTreeSet<u16>,
}

impl Recorder {
    /// The effects since the last call.
    fn take(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// The reports finished since the last call, as (attempt, outcome).
    fn finished(&mut self) -> Vec<(Attempt, Outcome)> {
        self.take()
            .into_iter()
            .filter_map(|e| match e {
                Effect::Finished(a, outcome, ..) => Some((a, outcome)),
                _ => None,
            })
            .collect()
    }
}

impl Comm<u32, &'static str> for Recorder {
    fn send(&mut self, report: Report<'_>) {
        self.effects.push(match report {
            Report::Started { attempt, pid } => Effect::Started(attempt, pid),
            Report::Ready(attempt) => Effect::Ready(attempt),
            Report::Finished(r) => Effect::Finished(
                Attempt::new(JobId(r.job), r.attempt),
                r.outcome.clone(),
                Duration::from_micros(r.duration_us),
                OutputLines {
                    stdout: r.stdout_lines,
                    stderr: r.stderr_lines,
                },
            ),
        });
    }

    fn cancel(&mut self, handle: &u32) {
        self.effects.push(Effect::Cancel(*handle));
    }

    fn withdraw(&mut self, handle: &u32) -> bool {
        self.effects.push(Effect::Withdraw(*handle));
        self.withdrawable.contains(handle)
    }

    fn port_in_use(&mut self, port: u16) -> bool {
        self.taken.contains(&port)
    }

    fn launch(&mut self, attempt: Attempt, launch: &'static str) {
        self.effects.push(Effect::Launch(attempt, launch));
    }

    fn probe(&mut self, attempt: Attempt, port: u16, deadline: Instant) {
        self.effects.push(Effect::Probe(attempt, port, deadline));
    }

    fn wake_at(&mut self, at: Instant) {
        self.effects.push(Effect::WakeAt(at));
    }
}

fn a(job: u64, attempt: u32) -> Attempt {
    Attempt::new(JobId(job), attempt)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A registered ledger and its recorder.
fn linked(t0: Instant) -> (Book, Recorder) {
    let mut book = Book::default();
    let mut rec = Recorder::default();
    book.on_registered(t0, &mut rec);
    (book, rec)
}

/// `attempt` dispatched and launched at `now` as handle `handle`.
fn launch(
    book: &mut Book,
    rec: &mut Recorder,
    now: Instant,
    attempt: Attempt,
    handle: u32,
    watch: Watch,
) {
    assert_eq!(book.on_run(now, attempt, rec), Admission::Start);
    book.on_launched(now, attempt, handle, watch, rec);
}

fn exited(code: i32) -> Outcome {
    Outcome::Exited { code }
}

fn no_lines() -> OutputLines {
    OutputLines::default()
}

#[test]
fn an_attempt_done_at_once_is_reported_and_retained() {
    let t0 = Instant::now();
    let (mut book, mut rec) = linked(t0);
    assert_eq!(book.on_run(t0, a(1, 1), &mut rec), Admission::Start);
    book.on_finished(t0, a(1, 1), exited(0), Duration::ZERO, no_lines(), &mut rec);
    assert_eq!(
        rec.take(),
        [Effect::Finished(
            a(1, 1),
            exited(0),
            Duration::ZERO,
            no_lines()
        )]
    );
    assert_eq!(book.running(), 0);
    assert_eq!(book.running_attempts(t0), [a(1, 1)]);
}

#[test]
fn a_dispatch_of_the_running_attempt_is_ignored() {
    let t0 = Instant::now();
    let (mut book, mut rec) = linked(t0);
    launch(&mut book, &mut rec, t0, a(1, 2), 10, Watch::Bounded);
    assert_eq!(book.on_run(t0, a(1, 2), &mut rec), Admission::Duplicate);
    assert_eq!(rec.take(), []);
    assert_eq!(book.running(), 1);
}

#[test]
fn a_newer_attempt_supersedes_and_stops_the_older_process() {
    let t0 = Instant::now();
    let (mut book, mut rec) = linked(t0);
    launch(&mut book, &mut rec, t0, a(1, 1), 10, Watch::Bounded);
    launch(&mut book, &mut rec, t0, a(1, 2), 11, Watch::Bounded);
    assert_eq!(rec.take(), [Effect::Cancel(10)]);
    assert_eq!(book.running_attempts(t0), [a(1, 2)]);
    // The old one's start is not news any more; its end is still reported, as its own.
    book.on_started(t0, a(1, 1), 99, false, &mut rec);
    assert_eq!(rec.take(), []);
    book.on_finished(t0, a(1, 1), Outcome::Killed, ms(3), no_lines(), &mut rec);
    assert_eq!(rec.finished(), [(a(1, 1), Outcome::Killed)]);
    assert_eq!(book.running(), 1, "the new attempt still runs");
}

#[test]
fn a_newer_attempt_ends_a_sleeping_one_at_once_and_drops_a_port_wait() {
    let t0 = Instant::now();
    let (mut book, mut rec) = linked(t0);
    book.on_run(t0, a(1, 1), &mut rec);
    book.on_sleep(t0, a(1, 1), ms(500), &mut rec);
    rec.take();
    book.on_run(t0 + ms(40), a(1, 2), &mut rec);
    assert_eq!(
        rec.take(),
        [Effect::Finished(
            a(1, 1),
            Outcome::Killed,
            ms(40),
            no_lines()
        )]
    );
    assert_eq!(book.next_deadline(), None, "its timer went with it");

    rec.taken.insert(8000);
    book.on_port_busy(t0, a(2, 1), 8000, "deploy-2.1", &mut rec);
    book.on_run(t0, a(2, 2), &mut rec);
    rec.take();
    book.on_tick(t0 + PORT_FREE_GRACE * 2, &mut rec);
    assert_eq!(rec.take(), [], "nothing ran, nothing to say");
}

#[test]
fn sleep_succeeds_at_its_deadline_and_not_before() {
    let t0 = Instant::now();
    let (mut book, mut rec) = linked(t0);
    book.on_run(t0, a(1, 1), &mut rec);
    book.on_sleep(t0, a(1, 1), ms(100), &mut rec);
    assert_eq!(rec.take(), [Effect::WakeAt(t0 + ms(100))]);
    assert_eq!(book.running_attempts(t0), [a(1, 1)]);
    book.on_tick(t0 + ms(99), &mut rec);
    assert_eq!(rec.take(), []);
    book.on_tick(t0 + ms(101), &mut rec);
    assert_eq!(
        rec.take(),
        [Effect::Finished(a(1, 1), exited(0), ms(101), no_lines())]
    );
    assert_eq!((book.running(), book.next_deadline()), (0, None));
}

#[test]
fn only_a_deadline_earlier_than_all_others_wakes_the_shell() {
    let t0 = Instant::now();
    let (mut book, mut rec) = linked(t0);
    for (job, length) in [(1, 300), (2, 500), (3, 100)] {
        book.on_run(t0, a(job, 1), &mut rec);
        book.on_sleep(t0, a(job, 1), ms(length), &mut rec);
    }
    assert_eq!(
        rec.take(),
        [Effect::WakeAt(t0 + ms(300)), Effect::WakeAt(t0 + ms(100))]
    );
    book.on_tick(t0 + ms(400), &mut rec);
    assert_eq!(rec.finished(), [(a(3, 1), exited(0)), (a(1, 1), exited(0))]);
    assert_eq!(book.next_deadline(), Some(t0 + ms(500)));
}

#[test]
fn kill_ends_a_sleep_at_once_and_cancels_a_process() {
    let t0 = Instant::now();
    let (mut book, mut rec) = linked(t0);
    book.on_run(t0, a(1, 1), &mut rec);
    book.on_sleep(t0, a(1, 1), ms(1000), &mut rec);
    launch(&mut book, &mut rec, t0, a(2, 1), 20, Watch::Bounded);
    rec.take();
    assert!(book.on_kill(t0 + ms(7), a(1, 1), &mut rec));
    assert_eq!(
        rec.take(),
        [Effect::Finished(
            a(1, 1),
            Outcome::Killed,
            ms(7),
            no_lines()
        )]
    );
    assert!(book.on_kill(t0, a(2, 1), &mut rec));
    assert_eq!(
        rec.take(),
        [Effect::Cancel(20)],
        "its report follows its end"
    );
    book.on_finished(t0, a(2, 1), Outcome::Killed, ms(1), no_lines(), &mut rec);
    assert_eq!(rec.finished(), [(a(2, 1), Outcome::Killed)]);
}

#[test]
fn kill_of_an_attempt_that_does_not_run_here_is_ignored() {
    let t0 = Instant::now();
    let (mut book, mut rec) = linked(t0);
    launch(&mut book, &mut rec, t0, a(1, 2), 10, Watch::Bounded);
    assert!(!book.on_kill(t0, a(1, 1), &mut rec), "an older attempt");
    assert!(!book.on_kill(t0, a(9, 1), &mut rec), "another job");
    assert_eq!(rec.take(), []);
}

#[test]
fn a_process_that_exited_before_its_start_notice_is_reported_once() {
    let t0 = Instant::now();
    let (mut book, mut rec) = linked(t0);
    launch(&mut book, &mut rec, t0, a(1, 1), 10, Watch::Bounded);
    launch(&mut book, &mut rec, t0, a(2, 1), 11, Watch::Bounded);
    book.on_started(t0, a(1, 1), 501, true, &mut rec);
    book.on_started(t0, a(2, 1), 502, false, &mut rec);
    assert_eq!(rec.take(), [Effect::Started(a(2, 1), 502)]);
    let lines = OutputLines {
        stdout: 3,
        stderr: 1,
    };
    book.on_finished(t0, a(1, 1), exited(2), ms(5), lines, &mut rec);
    assert_eq!(
        rec.take(),
        [Effect::Finished(a(1, 1), exited(2), ms(5), lines)]
    );
}

#[test]
fn reports_expire_by_age() {
    let t0 = Instant::now();
    let (mut book, mut rec) = linked(t0);
    book.on_finished(t0, a(1, 1), exited(0), ms(1), no_lines(), &mut rec);
    book.on_finished(t0 + ms(10), a(2, 1), exited(0), ms(1), no_lines(), &mut rec);
    let later = t0 + REPORT_RETENTION + ms(5);
    assert_eq!(book.running_attempts(later), [a(2, 1)]);
    assert_eq!(book.running_attempts(later + ms(10)), []);
}

#[test]
fn reports_are_capped_by_count_oldest_first() {
    let t0 = Instant::now();
    let mut book = Book::default();
    let mut rec = Recorder::default();
    let total = MAX_RETAINED_REPORTS as u64 + 2;
    for job in 0..total {
        book.on_finished(t0, a(job, 1), exited(0), ms(1), no_lines(), &mut rec);
    }
    let listed = book.running_attempts(t0);
    assert_eq!(listed.len(), MAX_RETAINED_REPORTS);
    assert_eq!(listed.first(), Some(&a(2, 1)), "the two oldest went first");
    assert_eq!(listed.last(), Some(&a(total - 1, 1)));
}

#[test]
fn while_unlinked_reports_are_retained_and_go_at_the_next_registration() {
    let t0 = Instant::now();
    let (mut book, mut rec) = linked(t0);
    book.on_finished(t0, a(1, 1), exited(0), ms(1), no_lines(), &mut rec);
    book.on_link_lost(&mut rec);
    rec.take();
    book.on_finished(t0, a(2, 1), exited(1), ms(1), no_lines(), &mut rec);
    launch(&mut book, &mut rec, t0, a(3, 1), 30, Watch::Bounded);
    book.on_started(t0, a(3, 1), 7, false, &mut rec);
    assert_eq!(rec.take(), [], "nothing is sent without a master");
    assert_eq!(book.running_attempts(t0), [a(1, 1), a(2, 1), a(3, 1)]);
    book.on_registered(t0 + ms(1), &mut rec);
    assert_eq!(rec.finished(), [(a(1, 1), exited(0)), (a(2, 1), exited(1))]);
}

#[test]
fn a_registration_resends_reports_then_announces_ready_services_again() {
    let t0 = Instant::now();
    let (mut book, mut rec) = linked(t0);
    launch(
        &mut book,
        &mut rec,
        t0,
        a(1, 1),
        10,
        Watch::Service { port: None },
    );
    book.on_started(t0, a(1, 1), 100, false, &mut rec);
    launch(
        &mut book,
        &mut rec,
        t0,
        a(2, 1),
        20,
        Watch::Service { port: Some(9000) },
    );
    book.on_started(t0, a(2, 1), 200, false, &mut rec);
    book.on_finished(t0, a(3, 1), exited(0), ms(1), no_lines(), &mut rec);
    rec.take();
    book.on_registered(t0, &mut rec);
    assert_eq!(
        rec.take(),
        [
            Effect::Finished(a(3, 1), exited(0), ms(1), no_lines()),
            Effect::Ready(a(1, 1)),
        ],
        "job 2 is not ready yet: it is not announced"
    );
}

#[test]
fn link_loss_withdraws_unstarted_launches_and_they_end_unreported() {
    let t0 = Instant::now();
    let (mut book, mut rec) = linked(t0);
    launch(&mut book, &mut rec, t0, a(1, 1), 10, Watch::Bounded);
    launch(&mut book, &mut rec, t0, a(2, 1), 20, Watch::Bounded);
    launch(&mut book, &mut rec, t0, a(3, 1), 30, Watch::Bounded);
    book.on_started(t0, a(3, 1), 300, false, &mut rec);
    rec.withdrawable.extend([10, 30]);
    rec.take();
    book.on_link_lost(&mut rec);
    // 3 started: not even asked. 2 was already taken by a process thread: it runs on.
    assert_eq!(rec.take(), [Effect::Withdraw(10), Effect::Withdraw(20)]);
    assert_eq!(book.running_attempts(t0), [a(2, 1), a(3, 1)]);
    book.on_finished(
        t0,
        a(1, 1),
        Outcome::Killed,
        Duration::ZERO,
        no_lines(),
        &mut rec,
    );
    book.on_finished(t0, a(2, 1), exited(0), ms(2), no_lines(), &mut rec);
    book.on_registered(t0, &mut rec);
    assert_eq!(rec.finished(), [(a(2, 1), exited(0))]);
}

#[test]
fn a_taken_port_that_frees_within_the_grace_launches_the_service() {
    let t0 = Instant::now();
    let (mut book, mut rec) = linked(t0);
    rec.taken.insert(8000);
    book.on_run(t0, a(1, 1), &mut rec);
    book.on_port_busy(t0, a(1, 1), 8000, "deploy-1.1", &mut rec);
    assert_eq!(rec.take(), [Effect::WakeAt(t0 + PORT_FREE_POLL)]);
    book.on_tick(t0 + PORT_FREE_POLL, &mut rec);
    assert_eq!(rec.take(), [Effect::WakeAt(t0 + PORT_FREE_POLL * 2)]);
    rec.taken.clear();
    book.on_tick(t0 + PORT_FREE_POLL * 2, &mut rec);
    assert_eq!(rec.take(), [Effect::Launch(a(1, 1), "deploy-1.1")]);
    assert_eq!(book.running(), 0, "the shell launches it now");
}

#[test]
fn a_port_still_taken_after_the_grace_refuses_the_deploy() {
    let t0 = Instant::now();
    let (mut book, mut rec) = linked(t0);
    rec.taken.insert(8000);
    book.on_run(t0, a(1, 1), &mut rec);
    book.on_port_busy(t0, a(1, 1), 8000, "deploy-1.1", &mut rec);
    let mut now = t0;
    while book.running() > 0 {
        now = book.next_deadline().expect("it polls while it waits");
        book.on_tick(now, &mut rec);
    }
    assert!(now >= t0 + PORT_FREE_GRACE && now < t0 + PORT_FREE_GRACE + PORT_FREE_POLL);
    let message = "port 8000 is already in use by another process".into();
    assert_eq!(rec.finished(), [(a(1, 1), Outcome::Rejected { message })]);
}

#[test]
fn a_kill_while_waiting_for_the_port_ends_the_attempt() {
    let t0 = Instant::now();
    let (mut book, mut rec) = linked(t0);
    rec.taken.insert(8000);
    book.on_run(t0, a(1, 1), &mut rec);
    book.on_port_busy(t0, a(1, 1), 8000, "deploy-1.1", &mut rec);
    rec.take();
    assert!(book.on_kill(t0 + ms(30), a(1, 1), &mut rec));
    assert_eq!(
        rec.take(),
        [Effect::Finished(
            a(1, 1),
            Outcome::Killed,
            ms(30),
            no_lines()
        )]
    );
    assert_eq!(book.next_deadline(), None);
}

#[test]
fn a_service_with_a_port_is_ready_once_a_probe_connects() {
    let t0 = Instant::now();
    let (mut book, mut rec) = linked(t0);
    launch(
        &mut book,
        &mut rec,
        t0,
        a(1, 1),
        10,
        Watch::Service { port: Some(9000) },
    );
    let deadline = t0 + SERVICE_READY_TIMEOUT;
    book.on_started(t0, a(1, 1), 100, true, &mut rec);
    assert_eq!(
        rec.take(),
        [
            Effect::Started(a(1, 1), 100),
            Effect::Probe(a(1, 1), 9000, deadline)
        ],
        "a service's start is always news"
    );
    book.on_probe(t0 + ms(1), a(1, 1), Err("refused".into()), &mut rec);
    assert_eq!(rec.take(), [Effect::WakeAt(t0 + ms(6))]);
    book.on_tick(t0 + ms(6), &mut rec);
    assert_eq!(rec.take(), [Effect::Probe(a(1, 1), 9000, deadline)]);
    book.on_probe(t0 + ms(7), a(1, 1), Ok(()), &mut rec);
    assert_eq!(rec.take(), [Effect::Ready(a(1, 1))]);
    book.on_probe(t0 + ms(8), a(1, 1), Ok(()), &mut rec);
    assert_eq!(rec.take(), [], "ready once");
}

#[test]
fn a_service_that_never_opens_its_port_is_killed_and_fails_saying_why() {
    let t0 = Instant::now();
    let (mut book, mut rec) = linked(t0);
    launch(
        &mut book,
        &mut rec,
        t0,
        a(1, 1),
        10,
        Watch::Service { port: Some(9000) },
    );
    book.on_started(t0, a(1, 1), 100, false, &mut rec);
    let mut now = t0;
    loop {
        let probes = rec
            .take()
            .into_iter()
            .filter(|e| matches!(e, Effect::Probe(..)))
            .count();
        if probes > 0 {
            book.on_probe(now, a(1, 1), Err("Connection refused".into()), &mut rec);
        } else if let Some(at) = book.next_deadline() {
            now = at;
            book.on_tick(now, &mut rec);
        } else {
            break;
        }
    }
    assert!(now >= t0 + SERVICE_READY_TIMEOUT);
    book.on_finished(now, a(1, 1), Outcome::Killed, ms(1), no_lines(), &mut rec);
    let [(attempt, Outcome::Error { message })] = &rec.finished()[..] else {
        panic!("one error report");
    };
    assert_eq!(*attempt, a(1, 1));
    assert!(
        message.starts_with("deploy failed: port 9000 did not accept a connection within 30"),
        "{message}"
    );
    assert!(message.ends_with("last: timed out)"), "{message}");
}

#[test]
fn the_cancel_of_a_failed_service_is_sent_once() {
    let t0 = Instant::now();
    let (mut book, mut rec) = linked(t0);
    launch(
        &mut book,
        &mut rec,
        t0,
        a(1, 1),
        10,
        Watch::Service { port: Some(9000) },
    );
    book.on_started(t0, a(1, 1), 100, false, &mut rec);
    let late = t0 + SERVICE_READY_TIMEOUT;
    book.on_probe(late, a(1, 1), Err("Connection refused".into()), &mut rec);
    let cancels = rec.take().into_iter().filter(|e| *e == Effect::Cancel(10));
    assert_eq!(cancels.count(), 1);
    assert_eq!(book.next_deadline(), None);
}

#[test]
fn work_past_its_time_limit_is_stopped_and_reported_timed_out() {
    let t0 = Instant::now();
    let (mut book, mut rec) = linked(t0);
    launch(
        &mut book,
        &mut rec,
        t0,
        a(1, 1),
        10,
        Watch::TimeLimit(ms(50)),
    );
    book.on_started(t0, a(1, 1), 0, false, &mut rec);
    assert_eq!(
        rec.take(),
        [Effect::WakeAt(t0 + ms(50)), Effect::Started(a(1, 1), 0)]
    );
    book.on_tick(t0 + ms(50), &mut rec);
    assert_eq!(rec.take(), [Effect::Cancel(10)]);
    book.on_finished(
        t0 + ms(51),
        a(1, 1),
        Outcome::Killed,
        ms(51),
        no_lines(),
        &mut rec,
    );
    assert_eq!(rec.finished(), [(a(1, 1), Outcome::TimedOut)]);
}

#[test]
fn work_that_ends_in_time_clears_its_timer() {
    let t0 = Instant::now();
    let (mut book, mut rec) = linked(t0);
    launch(
        &mut book,
        &mut rec,
        t0,
        a(1, 1),
        10,
        Watch::TimeLimit(ms(50)),
    );
    book.on_finished(t0 + ms(5), a(1, 1), exited(0), ms(5), no_lines(), &mut rec);
    assert_eq!(book.next_deadline(), None);
    book.on_tick(t0 + ms(60), &mut rec);
    assert_eq!(rec.finished(), [(a(1, 1), exited(0))]);
}
