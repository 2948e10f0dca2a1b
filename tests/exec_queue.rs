//! The engine's own queue: with `max_running`, extra launches wait, start in order as slots
//! free up, and can be cancelled while they wait.

mod exec_support;

use exec_support::{config, run, TestDir};
use std::time::{Duration, SystemTime};
use titan::worker::exec::{JobSpec, ProcessEngine, Program, Termination};

fn sleeper(seconds: &str) -> Program {
    Program::perm_file("sleep.sh", vec![seconds.to_string()])
}

#[test]
fn no_more_than_max_running_processes_run_at_once() {
    let dir = TestDir::new("queue-limit");
    let mut config = config(&dir);
    config.max_running = 2;
    // One process thread, so that launch order is start order (with several, two jobs taken in
    // order may still be forked in either order).
    config.process_threads = 1;
    run(move || async move {
        let engine = ProcessEngine::start(config).unwrap();
        let jobs: Vec<_> = (0..6)
            .map(|n| {
                let name = format!("q{n}");
                engine
                    .launch(JobSpec::new(&name, &name, sleeper("0.1")))
                    .unwrap()
            })
            .collect();
        let mut spans: Vec<(SystemTime, SystemTime)> = Vec::new();
        for job in &jobs {
            let outcome = job.outcome().await;
            assert!(outcome.succeeded(), "{outcome:?}");
            spans.push((outcome.started_at.unwrap(), outcome.ended_at));
        }
        // At every start, count the spans that are open: never more than two.
        for &(start, _) in &spans {
            let open = spans
                .iter()
                .filter(|&&(s, e)| s <= start && start < e)
                .count();
            assert!(open <= 2, "{open} processes at once: {spans:?}");
        }
        // FIFO: jobs start in launch order.
        let starts: Vec<SystemTime> = spans.iter().map(|s| s.0).collect();
        assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{starts:?}");
    });
}

#[test]
fn a_queued_job_can_be_cancelled_while_it_waits() {
    let dir = TestDir::new("queue-cancel");
    let mut config = config(&dir);
    config.max_running = 1;
    run(move || async move {
        let engine = ProcessEngine::start(config).unwrap();
        let running = engine
            .launch(JobSpec::new("a", "a", sleeper("30")))
            .unwrap();
        let waiting = engine
            .launch(JobSpec::new("b", "b", sleeper("30")))
            .unwrap();
        running
            .started()
            .await
            .expect("the first job takes the slot");
        waiting.cancel();
        let outcome = waiting.outcome().await;
        assert!(
            matches!(
                outcome.termination,
                Termination::Cancelled { escalated: false }
            ),
            "{outcome:?}"
        );
        assert_eq!(outcome.pid, None, "it never started");
        assert!(
            running.try_outcome().is_none(),
            "the running job is untouched"
        );

        // The slot frees when the running job ends, and a new job starts.
        running.cancel();
        running.outcome().await;
        let next = engine
            .launch(JobSpec::new("c", "c", sleeper("0")).with_timeout(Duration::from_secs(20)))
            .unwrap();
        assert!(next.outcome().await.succeeded());
    });
}
