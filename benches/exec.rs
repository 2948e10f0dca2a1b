//! `/bin/true` throughput of the process engine against a bare spawn-and-wait loop, measured in
//! the same run, at several concurrency levels.
//!
//! Run: `cargo bench --bench exec -- [--jobs N] [--rounds R] [--concurrency 1,2,4]
//!       [--threads T] [--workspace DIR] [--only bare|setup|queued|slots]`
//! (job workspaces go under DIR, default target/tmp; `--only` skips the other variants)
//!
//! For each concurrency C, each round runs, one after the other:
//! - `bare`: C threads, each looping `Command::new("/bin/true").status()` (fork/exec + wait);
//! - `setup`: the same plus what a worker must do per job: a workspace directory, two log
//!   files, a process group, a working directory, an environment variable;
//! - `queued`: the engine with `max_running = C` and every job launched up front, so a process
//!   thread starts the next job as soon as one exits (a worker handed more jobs than slots);
//! - `slots`: the engine with C tasks that each launch a job and await its outcome before the
//!   next (a worker that only learns of a job when a slot is free).
//!
//! Engine jobs run as a worker runs them: own workspace directory, log files, process group.
//! Prints the median rate of each, the engine's medians relative to `bare`, and every round.
//! Numbers on a shared 2-core host are noisy; running the variants back to back in each round
//! exposes them to the same noise.

use glommio::{LocalExecutorBuilder, Placement};
use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;
use std::time::Instant;
use titan::worker::exec::{EngineConfig, Job, JobSpec, ProcessEngine, Program};

struct Options {
    jobs: usize,
    rounds: usize,
    concurrency: Vec<usize>,
    threads: usize,
    workspace: PathBuf,
    /// Run only this variant (bare, setup, queued or slots), e.g. under a profiler.
    only: Option<String>,
}

fn parse_options() -> Options {
    let mut options = Options {
        jobs: 2000,
        rounds: 3,
        concurrency: vec![1, 2, 4],
        threads: titan::worker::exec::DEFAULT_PROCESS_THREADS,
        // Under target/, like a worker's titan_workspace/ under its working directory.
        workspace: PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--jobs" => options.jobs = value().parse().expect("--jobs N"),
            "--rounds" => options.rounds = value().parse().expect("--rounds R"),
            "--threads" => options.threads = value().parse().expect("--threads T"),
            "--workspace" => options.workspace = PathBuf::from(value()),
            "--only" => options.only = Some(value()),
            "--concurrency" => {
                options.concurrency = value()
                    .split(',')
                    .map(|c| c.parse().expect("--concurrency 1,2,4"))
                    .collect()
            }
            // `cargo bench` passes `--bench`; other harness flags are ignored too.
            _ => {}
        }
    }
    options
}

/// Runs `body(thread_index)` on `concurrency` threads; returns jobs per second for `jobs`.
fn threaded(jobs: usize, concurrency: usize, body: impl Fn(usize) + Send + Sync + 'static) -> f64 {
    let body = std::sync::Arc::new(body);
    let began = Instant::now();
    let threads: Vec<_> = (0..concurrency)
        .map(|t| {
            let body = body.clone();
            std::thread::spawn(move || body(t))
        })
        .collect();
    for thread in threads {
        thread.join().expect("bench thread");
    }
    jobs as f64 / began.elapsed().as_secs_f64()
}

/// `jobs` runs of `/bin/true`, spawn and wait, on `concurrency` threads.
fn bare(jobs: usize, concurrency: usize) -> f64 {
    threaded(jobs, concurrency, move |t| {
        for _ in (t..jobs).step_by(concurrency) {
            let status = Command::new("/bin/true").status().expect("spawn /bin/true");
            assert!(status.success());
        }
    })
}

/// The bare loop plus the per-job set-up the engine does.
fn bare_with_setup(jobs: usize, concurrency: usize, workspace: PathBuf) -> f64 {
    use std::os::unix::process::CommandExt;
    threaded(jobs, concurrency, move |t| {
        for n in (t..jobs).step_by(concurrency) {
            let dir = workspace.join(format!("job-{n}"));
            std::fs::create_dir_all(&dir).unwrap();
            let stdout = std::fs::File::create(dir.join("stdout.log")).unwrap();
            let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
            let status = Command::new("/bin/true")
                .current_dir(&dir)
                .process_group(0)
                .stdin(std::process::Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .env("TITAN_JOB_ID", n.to_string())
                .status()
                .expect("spawn /bin/true");
            assert!(status.success());
        }
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum EngineMode {
    /// `max_running = C`, all jobs launched at once.
    Queued,
    /// C tasks, each awaiting its job's outcome before launching the next.
    Slots,
}

fn true_job(n: usize) -> JobSpec {
    let name = format!("job-{n}");
    JobSpec::new(&name, &name, Program::trusted("/bin/true", Vec::new()))
}

async fn expect_success(job: Job) {
    let outcome = job.outcome().await;
    assert!(outcome.succeeded(), "{outcome:?}");
}

/// `jobs` runs of `/bin/true` through the engine; jobs per second from the first launch to the
/// last outcome.
fn engine(
    jobs: usize,
    concurrency: usize,
    threads: usize,
    mode: EngineMode,
    workspace: PathBuf,
) -> f64 {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move {
            let mut config = EngineConfig::new("perm_files", &workspace);
            config.process_threads = threads;
            config.max_jobs = jobs.max(concurrency);
            if mode == EngineMode::Queued {
                config.max_running = concurrency;
            }
            let engine = Rc::new(ProcessEngine::start(config).expect("start engine"));
            let began = Instant::now();
            match mode {
                EngineMode::Queued => {
                    let all: Vec<Job> = (0..jobs)
                        .map(|n| engine.launch(true_job(n)).unwrap())
                        .collect();
                    for job in all {
                        expect_success(job).await;
                    }
                }
                EngineMode::Slots => {
                    let slots: Vec<_> = (0..concurrency)
                        .map(|slot| {
                            let engine = engine.clone();
                            glommio::spawn_local(async move {
                                for n in (slot..jobs).step_by(concurrency) {
                                    expect_success(engine.launch(true_job(n)).unwrap()).await;
                                }
                            })
                        })
                        .collect();
                    for slot in slots {
                        slot.await;
                    }
                }
            }
            jobs as f64 / began.elapsed().as_secs_f64()
        })
        .expect("start executor")
        .join()
        .expect("engine run")
}

/// CPU time (user + system) used so far by this process and its reaped children.
fn cpu_time() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let seconds = |who| {
        let usage = getrusage(who).expect("getrusage");
        let (user, system) = (usage.user_time(), usage.system_time());
        user.tv_sec() as f64
            + system.tv_sec() as f64
            + (user.tv_usec() + system.tv_usec()) as f64 * 1e-6
    };
    seconds(UsageWho::RUSAGE_SELF) + seconds(UsageWho::RUSAGE_CHILDREN)
}

/// Runs `f`, returning its rate and the CPU microseconds spent per job (process + children).
fn measured(jobs: usize, f: impl FnOnce() -> f64) -> (f64, f64) {
    let before = cpu_time();
    let rate = f();
    (rate, (cpu_time() - before) * 1e6 / jobs as f64)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn main() {
    let options = parse_options();
    let scratch = options
        .workspace
        .join(format!("titan-exec-bench-{}", std::process::id()));
    let dir = |name: String| scratch.join(name);
    println!(
        "/bin/true jobs per second: {} jobs per run, {} rounds, {} process threads, {} CPUs, \
         workspaces in {}",
        options.jobs,
        options.rounds,
        options.threads,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        scratch.display()
    );
    println!(
        "{:>3} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8}   {:>23}   rounds bare/setup/queued/slots",
        "C", "bare", "setup", "queued", "slots", "queued%", "slots%", "CPU us/job b/s/q/s"
    );
    // One warm-up of each, so page cache and CPU frequency settle before measuring.
    bare(200, 2);
    engine(
        200,
        2,
        options.threads,
        EngineMode::Queued,
        dir("warmup".into()),
    );
    let jobs = options.jobs;
    for &c in &options.concurrency {
        let mut rates: [Vec<f64>; 4] = Default::default();
        let mut cpu: [Vec<f64>; 4] = Default::default();
        for round in 0..options.rounds {
            let wanted = |name: &str| options.only.as_deref().is_none_or(|only| only == name);
            let measure = |name: &str, f: &dyn Fn() -> f64| match wanted(name) {
                true => measured(jobs, f),
                false => (f64::NAN, f64::NAN),
            };
            let runs = [
                measure("bare", &|| bare(jobs, c)),
                measure("setup", &|| {
                    bare_with_setup(jobs, c, dir(format!("setup-{c}-{round}")))
                }),
                measure("queued", &|| {
                    let workspace = dir(format!("queued-{c}-{round}"));
                    engine(jobs, c, options.threads, EngineMode::Queued, workspace)
                }),
                measure("slots", &|| {
                    let workspace = dir(format!("slots-{c}-{round}"));
                    engine(jobs, c, options.threads, EngineMode::Slots, workspace)
                }),
            ];
            for (i, (rate, cpu_per_job)) in runs.into_iter().enumerate() {
                rates[i].push(rate);
                cpu[i].push(cpu_per_job);
            }
        }
        let medians: Vec<f64> = rates.iter().map(|r| median(r)).collect();
        let cpu_medians: Vec<String> = cpu.iter().map(|c| format!("{:.0}", median(c))).collect();
        let rounds: Vec<String> = (0..options.rounds)
            .map(|r| {
                format!(
                    "{:.0}/{:.0}/{:.0}/{:.0}",
                    rates[0][r], rates[1][r], rates[2][r], rates[3][r]
                )
            })
            .collect();
        println!(
            "{:>3} {:>7.0} {:>7.0} {:>7.0} {:>7.0} {:>7.1}% {:>7.1}%   {:>23}   {}",
            c,
            medians[0],
            medians[1],
            medians[2],
            medians[3],
            100.0 * medians[2] / medians[0],
            100.0 * medians[3] / medians[0],
            cpu_medians.join("/"),
            rounds.join(" ")
        );
    }
    // Removed only at the end: deleting thousands of files makes ext4's inode allocation slow
    // for a while (it skips recently deleted inodes), which would hit whichever run comes next.
    let _ = std::fs::remove_dir_all(&scratch);
}
