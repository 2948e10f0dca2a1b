//! Services (DEPLOY jobs): readiness releases dependants, stop, crash restarts, redeploy on loss.

use std::time::Duration;

use super::*;

fn ready(h: &mut Harness, job: JobId, attempt: u32, worker: WorkerId) -> Vec<Output> {
    h.step(Input::ServiceReady {
        job,
        attempt,
        worker,
    })
}

#[test]
fn the_seed_inception_dag_releases_on_readiness() {
    let mut h = Harness::new();
    let w = h.worker(0, 16, &["GENERAL"]);
    let dag = h.dag("START_DASH|DEPLOY|server_dashboard.py|1|0|[] ; WORKER_A|DEPLOY|Worker.jar|8081|1|2|[START_DASH] ; WORKER_B|DEPLOY|Worker.jar|8082|1|2|[START_DASH] ; RUN_CALC|RUN|calc.py|2|0|[WORKER_A, WORKER_B] ; WORKER_C|DEPLOY|Worker.jar|8083|1|5|[RUN_CALC]");
    let [dash, a, b, calc, c] = [0, 1, 2, 3, 4].map(|i| dag.job(i));
    assert_eq!(h.state(dash), JobState::Running);
    ready(&mut h, dash, 1, w);
    assert_eq!(
        (h.state(a), h.state(b)),
        (JobState::Pending, JobState::Pending)
    );
    h.advance(Duration::from_millis(2));
    ready(&mut h, a, 1, w);
    assert_eq!(h.state(calc), JobState::Blocked);
    ready(&mut h, b, 1, w);
    assert_eq!(h.state(calc), JobState::Running);
    h.finish(calc, 1, w, 0);
    h.advance(Duration::from_millis(5));
    assert_eq!(h.state(c), JobState::Running);
    assert_eq!(h.core.services_on(w), vec![dash, a, b, c]);
    // Services stay RUNNING while they live.
    assert_eq!(h.state(dash), JobState::Running);
}

#[test]
fn stop_kills_a_service_and_ends_it_cancelled() {
    let mut h = Harness::new();
    let w = h.worker(0, 2, &["GENERAL"]);
    let svc = h.one_off("DEPLOY|web.py|8080");
    ready(&mut h, svc, 1, w);
    let outs = h.step(Input::Stop { token: 4, job: svc });
    assert_eq!(kills(&outs), vec![(svc, KillReason::Stopped)]);
    assert_eq!(replies(&outs), vec![Ok(Ack::Stopped { job: svc })]);
    assert_eq!(h.state(svc), JobState::Cancelled);
    let job = h.one_off("NOOP");
    assert_eq!(h.state(job), JobState::Running, "one slot still free");
    let outs = h.step(Input::Stop { token: 5, job });
    assert_eq!(replies(&outs), vec![Err(RequestError::NotAService { job })]);
    h.step(Input::JobFinished {
        job: svc,
        attempt: 1,
        worker: w,
        outcome: Outcome::Killed,
        duration: Duration::ZERO,
    });
    h.finish(job, 1, w, 0);
    assert_eq!(h.load.running_total(), 0);
}

#[test]
fn a_crashed_service_restarts_after_doubling_delays_until_the_crash_loop_guard() {
    let mut h = Harness::new();
    let w = h.worker(0, 1, &["GENERAL"]);
    let dag = h.dag("S|DEPLOY|svc.py|1|0|[] ; D|NOOP||1|0|[S]");
    let (s, d) = (dag.job(0), dag.job(1));
    ready(&mut h, s, 1, w);
    assert_eq!(
        h.state(d),
        JobState::Queued,
        "released by readiness; the service holds the only slot"
    );
    // It ran for a minute, then crashed: restarted after the base delay, failures reset to one.
    h.now = h.now + Duration::from_secs(60);
    h.finish(s, 1, w, 1);
    assert_eq!(h.state(s), JobState::Failed);
    assert_eq!(h.core.job(s).unwrap().failures, 1);
    assert_eq!(h.state(d), JobState::Running);
    h.finish(d, 1, w, 0);
    // Quick crashes: 100, 200, 400, 800 ms (no jitter), `retries` does not apply; the exit after
    // the fifth start within 10 s ends it DEAD with the reason.
    let mut attempt = 1;
    let mut delays = Vec::new();
    while h.state(s) != JobState::Dead {
        let failed_at = h.now;
        while h.state(s) == JobState::Failed {
            h.now = h.core.poll_timeout().unwrap();
            h.step(Input::Tick);
        }
        delays.push(h.now.since(failed_at));
        attempt += 1;
        assert_eq!(h.state(s), JobState::Running);
        h.finish(s, attempt, w, 1);
    }
    let ms = |n| Duration::from_millis(n);
    assert_eq!(
        delays,
        vec![ms(100), ms(200), ms(400), ms(800), ms(1000)],
        "capped at backoff_max"
    );
    assert_eq!(attempt, 6, "starts 2..=6 fall within the window");
    let error = h.core.job(s).unwrap().last_error.unwrap().to_string();
    assert!(
        error.starts_with("crash loop: 5 starts within 10s"),
        "{error}"
    );
    assert!(error.contains("exited with code 1"), "{error}");
    assert_eq!(h.state(d), JobState::Completed, "D was released before");
}

#[test]
fn a_service_that_runs_stably_between_crashes_restarts_for_ever() {
    let mut h = Harness::new();
    let w = h.worker(0, 1, &["GENERAL"]);
    let s = h.one_off("DEPLOY|svc.py");
    for attempt in 1..=20 {
        assert_eq!(h.state(s), JobState::Running, "attempt {attempt}");
        h.now = h.now + Duration::from_secs(3);
        h.finish(s, attempt, w, 1);
        while h.state(s) == JobState::Failed {
            h.now = h.core.poll_timeout().unwrap();
            h.step(Input::Tick);
        }
    }
    assert_eq!(h.core.job(s).unwrap().attempts, 21);
}

#[test]
fn a_refused_start_is_dead_at_once_without_retries() {
    let mut h = Harness::new();
    let w = h.worker(0, 2, &["GENERAL"]);
    let dag = h.dag("S|DEPLOY|svc.py|9000|1|0|[] ; D|NOOP||1|0|[S]");
    let (s, d) = (dag.job(0), dag.job(1));
    h.step(Input::JobFinished {
        job: s,
        attempt: 1,
        worker: w,
        outcome: Outcome::Rejected {
            message: "port 9000 is already in use".into(),
        },
        duration: Duration::ZERO,
    });
    assert_eq!(h.state(s), JobState::Dead);
    assert_eq!(h.state(d), JobState::UpstreamFailed);
    assert_eq!(
        h.core.job(s).unwrap().last_error,
        Some("refused: port 9000 is already in use")
    );
    let job = h.one_off("RUN|x.sh");
    h.step(Input::JobFinished {
        job,
        attempt: 1,
        worker: w,
        outcome: Outcome::Rejected {
            message: "no".into(),
        },
        duration: Duration::ZERO,
    });
    assert_eq!(h.state(job), JobState::Dead, "one-off jobs too");
}

#[test]
fn a_service_on_a_lost_worker_is_redeployed_elsewhere() {
    let mut h = Harness::new();
    let w0 = h.worker(0, 1, &["GENERAL"]);
    let svc = h.one_off("DEPLOY|web.py");
    ready(&mut h, svc, 1, w0);
    let w1 = h.worker(1, 1, &["GENERAL"]);
    let outs = h.step(Input::WorkerLost { worker: w0 });
    assert_eq!(dispatches(&outs), vec![(w1, svc, 2)]);
    let v = h.core.job(svc).unwrap();
    assert_eq!((v.crashes, v.failures, v.ready), (1, 0, false));
    assert_eq!(h.load.running_total(), 1);
}
