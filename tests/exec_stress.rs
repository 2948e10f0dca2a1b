//! Many concurrent short jobs: every one is reaped, no zombie is left, and the executor keeps
//! serving timers while the spawns run. (Alone in its binary, so that the zombie count sees no
//! other test's children.)

mod exec_support;

use exec_support::{config, run, zombie_children, TestDir};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};
use titan::worker::exec::{JobSpec, ProcessEngine, Program};

const JOBS: usize = 200;
/// A tick every millisecond; with spawning on the executor thread, 200 back-to-back spawns
/// (about 1 ms each here) would stall it for a few hundred milliseconds in one go.
const TICK: Duration = Duration::from_millis(1);
/// The largest gap between two ticks we accept, leaving room for a loaded 2-core host.
const MAX_TICK_GAP: Duration = Duration::from_millis(100);

#[test]
fn two_hundred_concurrent_jobs_are_all_reaped_and_the_executor_stays_responsive() {
    let dir = TestDir::new("stress");
    let mut config = config(&dir);
    config.max_jobs = JOBS;
    run(move || async move {
        let engine = ProcessEngine::start(config).unwrap();
        let max_gap = Rc::new(Cell::new(Duration::ZERO));
        let ticks = Rc::new(Cell::new(0u64));
        let stop = Rc::new(Cell::new(false));
        let ticker = glommio::spawn_local({
            let (max_gap, ticks, stop) = (max_gap.clone(), ticks.clone(), stop.clone());
            async move {
                let mut last = Instant::now();
                while !stop.get() {
                    glommio::timer::sleep(TICK).await;
                    let now = Instant::now();
                    max_gap.set(max_gap.get().max(now - last));
                    ticks.set(ticks.get() + 1);
                    last = now;
                }
            }
        });

        let began = Instant::now();
        let jobs: Vec<_> = (0..JOBS)
            .map(|n| {
                // Mix trusted binaries with a perm_files script, like a real worker would.
                let program = if n % 10 == 0 {
                    Program::perm_file("fail.sh", Vec::new())
                } else {
                    Program::trusted("/bin/true", Vec::new())
                };
                let name = format!("job-{n}");
                engine.launch(JobSpec::new(&name, &name, program)).unwrap()
            })
            .collect();
        let launched_in = began.elapsed();
        assert_eq!(engine.jobs_in_flight(), JOBS);
        for (n, job) in jobs.iter().enumerate() {
            let outcome = job.outcome().await;
            let expected = if n % 10 == 0 { 3 } else { 0 };
            assert_eq!(outcome.exit_code(), Some(expected), "job {n}: {outcome:?}");
        }
        let all_done_in = began.elapsed();
        stop.set(true);
        ticker.await;

        assert_eq!(engine.jobs_in_flight(), 0);
        assert_eq!(
            zombie_children(),
            Vec::<u32>::new(),
            "every child is reaped"
        );
        println!(
            "{JOBS} jobs: launch calls took {launched_in:?}, all done in {all_done_in:?}; \
             {} ticks, largest gap {:?}",
            ticks.get(),
            max_gap.get()
        );
        assert!(
            launched_in < MAX_TICK_GAP,
            "launch() must not block: {launched_in:?}"
        );
        assert!(
            max_gap.get() < MAX_TICK_GAP,
            "executor stalled for {:?}",
            max_gap.get()
        );
        assert!(ticks.get() > 0);
    });
}
