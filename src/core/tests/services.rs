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
fn a_crashed_service_restarts_and_a_stable_run_resets_its_budget() {
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
    // It ran for a minute, then crashed: a retry, with failures reset to one.
    h.now = h.now + Duration::from_secs(60);
    h.finish(s, 1, w, 1);
    assert_eq!(h.state(s), JobState::Failed);
    assert_eq!(h.core.job(s).unwrap().failures, 1);
    assert_eq!(h.state(d), JobState::Running);
    // Crash loop without readiness: dies after the retries, but D was already released and survives.
    h.finish(d, 1, w, 0);
    let mut attempt = 1;
    while h.state(s) != JobState::Dead {
        let due = h.core.poll_timeout().unwrap();
        h.now = due;
        h.step(Input::Tick);
        attempt += 1;
        h.finish(s, attempt, w, 1);
    }
    assert_eq!(
        attempt, 4,
        "the stable crash counts as failure 1; three restarts follow"
    );
    assert_eq!(h.state(d), JobState::Completed);
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
