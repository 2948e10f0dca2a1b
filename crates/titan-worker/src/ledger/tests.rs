//! The ledger's rules, one test each, with a recorder in place of the shell. Handles are
//! numbers, pending launches are names, and time is `t0` plus milliseconds.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::*;

type Book = Ledger<u32, &'static str>;

/// What the ledger asked for, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
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
                Attempt::new(r.job, r.attempt),
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

fn exited(code: i32) -> Outcome {
    Outcome::Exited { code }
}

const NO_LINES: OutputLines = OutputLines {
    stdout: 0,
    stderr: 0,
};

/// A ledger registered at `t0`, and its recorder.
struct Fixture {
    book: Book,
    rec: Recorder,
    t0: Instant,
}

impl Fixture {
    fn linked() -> Fixture {
        let mut fx = Fixture {
            book: Book::default(),
            rec: Recorder::default(),
            t0: Instant::now(),
        };
        fx.book.on_registered(fx.t0, &mut fx.rec);
        fx
    }

    fn at(&self, millis: u64) -> Instant {
        self.t0 + ms(millis)
    }

    /// `attempt` dispatched and launched at `t0` as `handle`.
    fn launch(&mut self, attempt: Attempt, handle: u32, watch: Watch) {
        let t0 = self.t0;
        assert_eq!(
            self.book.on_run(t0, attempt, &mut self.rec),
            Admission::Start
        );
        self.book
            .on_launched(t0, attempt, handle, watch, &mut self.rec);
    }

    /// `attempt` dispatched at `t0` and told to sleep.
    fn sleep(&mut self, attempt: Attempt, length: Duration) {
        let t0 = self.t0;
        self.book.on_run(t0, attempt, &mut self.rec);
        self.book.on_sleep(t0, attempt, length, &mut self.rec);
    }

    /// `attempt` dispatched at `t0` with its service's port taken.
    fn port_busy(&mut self, attempt: Attempt, port: u16) {
        let t0 = self.t0;
        self.rec.taken.insert(port);
        self.book.on_run(t0, attempt, &mut self.rec);
        self.book
            .on_port_busy(t0, attempt, port, "deploy", &mut self.rec);
    }

    fn started(&mut self, attempt: Attempt, pid: u32, exited: bool) {
        let t0 = self.t0;
        self.book
            .on_started(t0, attempt, pid, exited, &mut self.rec);
    }

    /// `attempt` ended at `t0 + millis`, having run for a millisecond.
    fn end(&mut self, millis: u64, attempt: Attempt, outcome: Outcome) {
        let now = self.at(millis);
        self.book
            .on_finished(now, attempt, outcome, ms(1), NO_LINES, &mut self.rec);
    }

    fn kill(&mut self, millis: u64, attempt: Attempt) -> bool {
        let now = self.at(millis);
        self.book.on_kill(now, attempt, &mut self.rec)
    }

    fn tick(&mut self, now: Instant) {
        self.book.on_tick(now, &mut self.rec);
    }

    fn probe(&mut self, now: Instant, attempt: Attempt, result: Result<(), &str>) {
        let result = result.map_err(str::to_string);
        self.book.on_probe(now, attempt, result, &mut self.rec);
    }

    fn take(&mut self) -> Vec<Effect> {
        self.rec.take()
    }

    fn finished(&mut self) -> Vec<(Attempt, Outcome)> {
        self.rec.finished()
    }
}

#[test]
fn an_attempt_done_at_once_is_reported_and_retained() {
    let mut fx = Fixture::linked();
    let t0 = fx.t0;
    assert_eq!(fx.book.on_run(t0, a(1, 1), &mut fx.rec), Admission::Start);
    fx.book.on_finished(
        t0,
        a(1, 1),
        exited(0),
        Duration::ZERO,
        NO_LINES,
        &mut fx.rec,
    );
    let report = Effect::Finished(a(1, 1), exited(0), Duration::ZERO, NO_LINES);
    assert_eq!(fx.take(), [report]);
    assert_eq!(fx.book.running(), 0);
    assert_eq!(fx.book.running_attempts(t0), [a(1, 1)]);
}

#[test]
fn a_dispatch_of_the_running_attempt_is_ignored() {
    let mut fx = Fixture::linked();
    fx.launch(a(1, 2), 10, Watch::Bounded);
    let t0 = fx.t0;
    assert_eq!(
        fx.book.on_run(t0, a(1, 2), &mut fx.rec),
        Admission::Duplicate
    );
    assert_eq!(fx.take(), []);
    assert_eq!(fx.book.running(), 1);
}

#[test]
fn a_newer_attempt_supersedes_and_stops_the_older_process() {
    let mut fx = Fixture::linked();
    fx.launch(a(1, 1), 10, Watch::Bounded);
    fx.launch(a(1, 2), 11, Watch::Bounded);
    assert_eq!(fx.take(), [Effect::Cancel(10)]);
    assert_eq!(fx.book.running_attempts(fx.t0), [a(1, 2)]);
    // The old one's start is not news any more; its end is still reported, as its own.
    fx.started(a(1, 1), 99, false);
    assert_eq!(fx.take(), []);
    fx.end(3, a(1, 1), Outcome::Killed);
    assert_eq!(fx.finished(), [(a(1, 1), Outcome::Killed)]);
    assert_eq!(fx.book.running(), 1, "the new attempt still runs");
}

#[test]
fn a_newer_attempt_ends_a_sleeping_one_at_once_and_drops_a_port_wait() {
    let mut fx = Fixture::linked();
    fx.sleep(a(1, 1), ms(500));
    fx.take();
    let later = fx.at(40);
    fx.book.on_run(later, a(1, 2), &mut fx.rec);
    let killed = Effect::Finished(a(1, 1), Outcome::Killed, ms(40), NO_LINES);
    assert_eq!(fx.take(), [killed]);
    assert_eq!(fx.book.next_deadline(), None, "its timer went with it");

    fx.port_busy(a(2, 1), 8000);
    fx.book.on_run(later, a(2, 2), &mut fx.rec);
    fx.take();
    fx.tick(fx.t0 + PORT_FREE_GRACE * 2);
    assert_eq!(fx.take(), [], "nothing ran, nothing to say");
}

#[test]
fn sleep_succeeds_at_its_deadline_and_not_before() {
    let mut fx = Fixture::linked();
    fx.sleep(a(1, 1), ms(100));
    assert_eq!(fx.take(), [Effect::WakeAt(fx.at(100))]);
    assert_eq!(fx.book.running_attempts(fx.t0), [a(1, 1)]);
    fx.tick(fx.at(99));
    assert_eq!(fx.take(), []);
    fx.tick(fx.at(101));
    let done = Effect::Finished(a(1, 1), exited(0), ms(101), NO_LINES);
    assert_eq!(fx.take(), [done]);
    assert_eq!((fx.book.running(), fx.book.next_deadline()), (0, None));
}

#[test]
fn only_a_deadline_earlier_than_all_others_wakes_the_shell() {
    let mut fx = Fixture::linked();
    for (job, length) in [(1, 300), (2, 500), (3, 100)] {
        fx.sleep(a(job, 1), ms(length));
    }
    assert_eq!(
        fx.take(),
        [Effect::WakeAt(fx.at(300)), Effect::WakeAt(fx.at(100))]
    );
    fx.tick(fx.at(400));
    assert_eq!(fx.finished(), [(a(3, 1), exited(0)), (a(1, 1), exited(0))]);
    assert_eq!(fx.book.next_deadline(), Some(fx.at(500)));
}

#[test]
fn kill_ends_a_sleep_at_once_and_cancels_a_process() {
    let mut fx = Fixture::linked();
    fx.sleep(a(1, 1), ms(1000));
    fx.launch(a(2, 1), 20, Watch::Bounded);
    fx.take();
    assert!(fx.kill(7, a(1, 1)));
    let killed = Effect::Finished(a(1, 1), Outcome::Killed, ms(7), NO_LINES);
    assert_eq!(fx.take(), [killed]);
    assert!(fx.kill(0, a(2, 1)));
    assert_eq!(
        fx.take(),
        [Effect::Cancel(20)],
        "its report follows its end"
    );
    fx.end(1, a(2, 1), Outcome::Killed);
    assert_eq!(fx.finished(), [(a(2, 1), Outcome::Killed)]);
}

#[test]
fn kill_of_an_attempt_that_does_not_run_here_is_ignored() {
    let mut fx = Fixture::linked();
    fx.launch(a(1, 2), 10, Watch::Bounded);
    assert!(!fx.kill(0, a(1, 1)), "an older attempt");
    assert!(!fx.kill(0, a(9, 1)), "another job");
    assert_eq!(fx.take(), []);
}

#[test]
fn a_process_that_exited_before_its_start_notice_is_reported_once() {
    let mut fx = Fixture::linked();
    fx.launch(a(1, 1), 10, Watch::Bounded);
    fx.launch(a(2, 1), 11, Watch::Bounded);
    fx.started(a(1, 1), 501, true);
    fx.started(a(2, 1), 502, false);
    assert_eq!(fx.take(), [Effect::Started(a(2, 1), 502)]);
    let lines = OutputLines {
        stdout: 3,
        stderr: 1,
    };
    let t0 = fx.t0;
    fx.book
        .on_finished(t0, a(1, 1), exited(2), ms(5), lines, &mut fx.rec);
    let report = Effect::Finished(a(1, 1), exited(2), ms(5), lines);
    assert_eq!(fx.take(), [report]);
}

#[test]
fn reports_expire_by_age() {
    let mut fx = Fixture::linked();
    fx.end(0, a(1, 1), exited(0));
    fx.end(10, a(2, 1), exited(0));
    let later = fx.t0 + REPORT_RETENTION + ms(5);
    assert_eq!(fx.book.running_attempts(later), [a(2, 1)]);
    assert_eq!(fx.book.running_attempts(later + ms(10)), []);
}

#[test]
fn reports_are_capped_by_count_oldest_first() {
    let mut fx = Fixture::linked();
    let total = MAX_RETAINED_REPORTS as u64 + 2;
    for job in 0..total {
        fx.end(0, a(job, 1), exited(0));
    }
    let listed = fx.book.running_attempts(fx.t0);
    assert_eq!(listed.len(), MAX_RETAINED_REPORTS);
    assert_eq!(listed.first(), Some(&a(2, 1)), "the two oldest went first");
    assert_eq!(listed.last(), Some(&a(total - 1, 1)));
}

#[test]
fn while_unlinked_reports_are_retained_and_go_at_the_next_registration() {
    let mut fx = Fixture::linked();
    fx.end(0, a(1, 1), exited(0));
    fx.book.on_link_lost(&mut fx.rec);
    fx.take();
    fx.end(0, a(2, 1), exited(1));
    fx.launch(a(3, 1), 30, Watch::Bounded);
    fx.started(a(3, 1), 7, false);
    assert_eq!(fx.take(), [], "nothing is sent without a master");
    assert_eq!(fx.book.running_attempts(fx.t0), [a(1, 1), a(2, 1), a(3, 1)]);
    let now = fx.at(1);
    fx.book.on_registered(now, &mut fx.rec);
    assert_eq!(fx.finished(), [(a(1, 1), exited(0)), (a(2, 1), exited(1))]);
}

#[test]
fn a_registration_resends_reports_then_announces_ready_services_again() {
    let mut fx = Fixture::linked();
    fx.launch(a(1, 1), 10, Watch::Service { port: None });
    fx.started(a(1, 1), 100, false);
    fx.launch(a(2, 1), 20, Watch::Service { port: Some(9000) });
    fx.started(a(2, 1), 200, false);
    fx.end(0, a(3, 1), exited(0));
    fx.take();
    let t0 = fx.t0;
    fx.book.on_registered(t0, &mut fx.rec);
    assert_eq!(
        fx.take(),
        [
            Effect::Finished(a(3, 1), exited(0), ms(1), NO_LINES),
            Effect::Ready(a(1, 1)),
        ],
        "job 2 is not ready yet: it is not announced"
    );
}

#[test]
fn link_loss_withdraws_unstarted_launches_and_they_end_unreported() {
    let mut fx = Fixture::linked();
    fx.launch(a(1, 1), 10, Watch::Bounded);
    fx.launch(a(2, 1), 20, Watch::Bounded);
    fx.launch(a(3, 1), 30, Watch::Bounded);
    fx.started(a(3, 1), 300, false);
    fx.rec.withdrawable.extend([10, 30]);
    fx.take();
    fx.book.on_link_lost(&mut fx.rec);
    // 3 started: not even asked. 2 was already taken by a process thread: it runs on.
    assert_eq!(fx.take(), [Effect::Withdraw(10), Effect::Withdraw(20)]);
    assert_eq!(fx.book.running_attempts(fx.t0), [a(2, 1), a(3, 1)]);
    fx.end(0, a(1, 1), Outcome::Killed);
    fx.end(0, a(2, 1), exited(0));
    let t0 = fx.t0;
    fx.book.on_registered(t0, &mut fx.rec);
    assert_eq!(fx.finished(), [(a(2, 1), exited(0))]);
}

#[test]
fn a_taken_port_that_frees_within_the_grace_launches_the_service() {
    let mut fx = Fixture::linked();
    fx.port_busy(a(1, 1), 8000);
    assert_eq!(fx.take(), [Effect::WakeAt(fx.t0 + PORT_FREE_POLL)]);
    fx.tick(fx.t0 + PORT_FREE_POLL);
    assert_eq!(fx.take(), [Effect::WakeAt(fx.t0 + PORT_FREE_POLL * 2)]);
    fx.rec.taken.clear();
    fx.tick(fx.t0 + PORT_FREE_POLL * 2);
    assert_eq!(fx.take(), [Effect::Launch(a(1, 1), "deploy")]);
    assert_eq!(fx.book.running(), 0, "the shell launches it now");
}

#[test]
fn a_port_still_taken_after_the_grace_refuses_the_deploy() {
    let mut fx = Fixture::linked();
    fx.port_busy(a(1, 1), 8000);
    let mut now = fx.t0;
    while fx.book.running() > 0 {
        now = fx.book.next_deadline().expect("it polls while it waits");
        fx.tick(now);
    }
    let grace_end = fx.t0 + PORT_FREE_GRACE;
    assert!(now >= grace_end && now < grace_end + PORT_FREE_POLL);
    let message = "port 8000 is already in use by another process".into();
    assert_eq!(fx.finished(), [(a(1, 1), Outcome::Rejected { message })]);
}

#[test]
fn a_kill_while_waiting_for_the_port_ends_the_attempt() {
    let mut fx = Fixture::linked();
    fx.port_busy(a(1, 1), 8000);
    fx.take();
    assert!(fx.kill(30, a(1, 1)));
    let killed = Effect::Finished(a(1, 1), Outcome::Killed, ms(30), NO_LINES);
    assert_eq!(fx.take(), [killed]);
    assert_eq!(fx.book.next_deadline(), None);
}

#[test]
fn a_service_with_a_port_is_ready_once_a_probe_connects() {
    let mut fx = Fixture::linked();
    fx.launch(a(1, 1), 10, Watch::Service { port: Some(9000) });
    let probe = Effect::Probe(a(1, 1), 9000, fx.t0 + SERVICE_READY_TIMEOUT);
    fx.started(a(1, 1), 100, true);
    let started = Effect::Started(a(1, 1), 100);
    assert_eq!(
        fx.take(),
        [started, probe.clone()],
        "a service's start is news"
    );
    fx.probe(fx.at(1), a(1, 1), Err("refused"));
    assert_eq!(fx.take(), [Effect::WakeAt(fx.at(6))]);
    fx.tick(fx.at(6));
    assert_eq!(fx.take(), [probe]);
    fx.probe(fx.at(7), a(1, 1), Ok(()));
    assert_eq!(fx.take(), [Effect::Ready(a(1, 1))]);
    fx.probe(fx.at(8), a(1, 1), Ok(()));
    assert_eq!(fx.take(), [], "ready once");
}

#[test]
fn a_service_that_never_opens_its_port_is_killed_and_fails_saying_why() {
    let mut fx = Fixture::linked();
    fx.launch(a(1, 1), 10, Watch::Service { port: Some(9000) });
    fx.started(a(1, 1), 100, false);
    let mut now = fx.t0;
    loop {
        let effects = fx.take();
        if effects.iter().any(|e| matches!(e, Effect::Probe(..))) {
            fx.probe(now, a(1, 1), Err("Connection refused"));
        } else if let Some(at) = fx.book.next_deadline() {
            now = at;
            fx.tick(now);
        } else {
            assert!(effects.contains(&Effect::Cancel(10)), "{effects:?}");
            break;
        }
    }
    assert!(now >= fx.t0 + SERVICE_READY_TIMEOUT);
    fx.end(0, a(1, 1), Outcome::Killed);
    let [(attempt, Outcome::Error { message })] = &fx.finished()[..] else {
        panic!("one error report");
    };
    assert_eq!(*attempt, a(1, 1));
    let prefix = "deploy failed: port 9000 did not accept a connection within 30";
    assert!(message.starts_with(prefix), "{message}");
    assert!(message.ends_with("last: timed out)"), "{message}");
}

#[test]
fn the_cancel_of_a_failed_service_is_sent_once() {
    let mut fx = Fixture::linked();
    fx.launch(a(1, 1), 10, Watch::Service { port: Some(9000) });
    fx.started(a(1, 1), 100, false);
    let late = fx.t0 + SERVICE_READY_TIMEOUT;
    fx.probe(late, a(1, 1), Err("Connection refused"));
    let cancels = fx.take().into_iter().filter(|e| *e == Effect::Cancel(10));
    assert_eq!(cancels.count(), 1);
    assert_eq!(fx.book.next_deadline(), None);
}

#[test]
fn work_past_its_time_limit_is_stopped_and_reported_timed_out() {
    let mut fx = Fixture::linked();
    fx.launch(a(1, 1), 10, Watch::TimeLimit(ms(50)));
    fx.started(a(1, 1), 0, false);
    let expected = [Effect::WakeAt(fx.at(50)), Effect::Started(a(1, 1), 0)];
    assert_eq!(fx.take(), expected);
    fx.tick(fx.at(50));
    assert_eq!(fx.take(), [Effect::Cancel(10)]);
    fx.end(51, a(1, 1), Outcome::Killed);
    assert_eq!(fx.finished(), [(a(1, 1), Outcome::TimedOut)]);
}

#[test]
fn work_that_ends_in_time_clears_its_timer() {
    let mut fx = Fixture::linked();
    fx.launch(a(1, 1), 10, Watch::TimeLimit(ms(50)));
    fx.end(5, a(1, 1), exited(0));
    assert_eq!(fx.book.next_deadline(), None);
    fx.tick(fx.at(60));
    assert_eq!(fx.finished(), [(a(1, 1), exited(0))]);
}
