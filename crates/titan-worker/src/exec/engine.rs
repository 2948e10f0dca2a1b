//! The [`ProcessEngine`]: the executor-side owner of the process threads, the completion queue
//! and the table of jobs in flight.
//!
//! Flow of one job: [`ProcessEngine::launch`] checks the spec, registers a [`JobCell`], queues a
//! [`LaunchRequest`] with the process pool and spawns the job's supervisor task; a process
//! thread forks/execs when a slot is free and queues `Launched`; when the pidfd fires, a process
//! thread queues `Exited`; the dispatch task drains the queue and hands each event to its cell;
//! the supervisor reaps and publishes the [`Outcome`](super::Outcome).

use super::completion::{completion_channel, Completion, CompletionQueue, Doorbell};
use super::job::{supervise, Job, JobCell, JobLimits};
use super::launcher::{kill_and_reap, signal_group, LaunchRequest, LauncherContext};
use super::outcome::LaunchError;
use super::pool::ProcessPool;
use super::resolve::{check_file_name, Resolver};
use super::spec::{EngineConfig, JobSpec, MAX_LAUNCH_NOTICE_DELAY, MAX_PROCESS_THREADS};
use nix::sys::signal::Signal;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::process::Child;
use std::rc::{Rc, Weak};
use std::sync::{Arc, Mutex, PoisonError};

/// Why an engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid engine configuration: {reason}")]
    Config { reason: String },
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// Runs jobs as processes on behalf of one glommio executor. Cheap to clone (a shared handle).
///
/// Jobs keep the engine alive while they run: dropping every handle does not stop them (call
/// [`shutdown`](Self::shutdown)). If the executor's thread ends with jobs still running, their
/// process groups are SIGKILLed and reaped on a helper thread; no zombie is left. (A glommio
/// executor run on the main thread is an exception: Rust does not promise thread-local
/// destructors there, but the process is exiting and init adopts its children.)
#[derive(Clone)]
pub struct ProcessEngine {
    shared: Rc<Shared>,
}

struct Shared {
    config: EngineConfig,
    /// Absolute `titan_workspace/`.
    workspace: PathBuf,
    next_token: Cell<u64>,
    jobs: RefCell<BTreeMap<u64, Rc<JobCell>>>,
    queue: Arc<CompletionQueue>,
    pool: Arc<ProcessPool>,
    shutting_down: Cell<bool>,
    torn_down: Cell<bool>,
}

impl ProcessEngine {
    /// Starts the engine's threads and its dispatch task. Must be called on a glommio executor
    /// (the engine then belongs to that executor). Creates the workspace directory, a one-off
    /// blocking `mkdir` at start-up.
    pub fn start(config: EngineConfig) -> Result<Self, EngineError> {
        validate(&config)?;
        std::fs::create_dir_all(&config.workspace).map_err(|source| EngineError::Io {
            what: format!("create workspace {}", config.workspace.display()),
            source,
        })?;
        let workspace = absolute(&config.workspace, "workspace")?;
        let perm_files = absolute(&config.perm_files, "perm_files")?;
        let (queue, doorbell) = completion_channel().map_err(|source| EngineError::Io {
            what: "create the completion socket".into(),
            source,
        })?;
        let dev_null = std::fs::File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|source| EngineError::Io {
                what: "open /dev/null".into(),
                source,
            })?;
        let context = LauncherContext {
            resolver: Resolver::new(config.perm_files.clone(), config.search_path.clone()),
            dev_null,
            perm_files,
            affinity: config.child_affinity,
            sentinel: config.sentinel.clone(),
            job_nice: config.job_nice,
        };
        let pool = ProcessPool::start(
            config.process_threads,
            config.max_running,
            config.launch_notice_delay,
            context,
            queue.clone(),
        )
        .map_err(|source| EngineError::Io {
            what: "start the process threads".into(),
            source,
        })?;
        let shared = Rc::new(Shared {
            config,
            workspace,
            next_token: Cell::new(1),
            jobs: RefCell::new(BTreeMap::new()),
            queue,
            pool,
            shutting_down: Cell::new(false),
            torn_down: Cell::new(false),
        });
        LIVE_ENGINES.with(|engines| engines.register(&shared));
        glommio::spawn_local(dispatch(Rc::downgrade(&shared), doorbell)).detach();
        Ok(Self { shared })
    }

    /// Starts a job. Returns at once with a handle; the process is started on a launcher thread.
    /// Errors here are about the request itself; everything that can go wrong later (a missing
    /// file, a failed exec) arrives as the outcome's `FailedToStart`.
    pub fn launch(&self, spec: JobSpec) -> Result<Job, LaunchError> {
        let shared = &self.shared;
        if shared.shutting_down.get() {
            return Err(LaunchError::ShuttingDown);
        }
        check_file_name(&spec.workspace_dir).map_err(LaunchError::BadWorkspaceName)?;
        check_env(&spec.env)?;
        if shared.jobs.borrow().len() >= shared.config.max_jobs {
            return Err(LaunchError::TooManyJobs {
                limit: shared.config.max_jobs,
            });
        }
        let token = shared.next_token.get();
        shared.next_token.set(token + 1);
        let cell = Rc::new(JobCell::new(token, spec.job_id.clone()));
        let request = LaunchRequest {
            token,
            job_id: spec.job_id,
            job_dir: shared.workspace.join(&spec.workspace_dir),
            program: spec.program,
            env: spec.env,
            output: spec.output,
            cancelled: cell.cancel_flag.clone(),
        };
        shared.pool.submit(request);
        shared.jobs.borrow_mut().insert(token, cell.clone());
        let limits = JobLimits {
            timeout: spec.timeout,
            kill_grace: spec.kill_grace.unwrap_or(shared.config.kill_grace),
            leftovers: spec.leftovers,
        };
        let task_shared = shared.clone();
        let task_cell = cell.clone();
        glommio::spawn_local(async move {
            supervise(&task_cell, limits, &task_shared.pool).await;
            task_shared.jobs.borrow_mut().remove(&task_cell.token);
        })
        .detach();
        Ok(Job::new(cell, shared.pool.clone()))
    }

    /// Jobs launching or running.
    pub fn jobs_in_flight(&self) -> usize {
        self.shared.jobs.borrow().len()
    }

    /// The absolute workspace directory of a job (where its logs are).
    pub fn job_dir(&self, workspace_dir: &str) -> PathBuf {
        self.shared.workspace.join(workspace_dir)
    }

    /// Refuses new jobs, cancels every job in flight (SIGTERM, SIGKILL after each job's grace)
    /// and waits until all have ended.
    pub async fn shutdown(&self) {
        self.shared.shutting_down.set(true);
        let jobs: Vec<Job> = self
            .shared
            .jobs
            .borrow()
            .values()
            .map(|cell| Job::new(cell.clone(), self.shared.pool.clone()))
            .collect();
        for job in &jobs {
            job.cancel();
        }
        for job in jobs {
            job.outcome().await;
        }
    }
}

/// Hands every completion to its job. Ends when the queue closes (the engine is gone).
async fn dispatch(shared: Weak<Shared>, mut doorbell: Doorbell) {
    while let Some(batch) = doorbell.next_batch().await {
        match shared.upgrade() {
            Some(shared) => batch.into_iter().for_each(|c| shared.on_completion(c)),
            None => dispose(batch),
        }
    }
}

impl Shared {
    fn on_completion(&self, completion: Completion) {
        match completion {
            Completion::Launched { token, result } => {
                let cell = self.jobs.borrow().get(&token).cloned();
                match cell {
                    Some(cell) => cell.on_launched(result),
                    // Cannot happen: a cell stays in the table until its supervisor has
                    // received this very event. Still, never leak a process.
                    None => dispose(vec![Completion::Launched { token, result }]),
                }
            }
            Completion::Exited { token, at, wall } => {
                // An unknown token is a job already reaped by teardown; nothing to do.
                let cell = self.jobs.borrow().get(&token).cloned();
                if let Some(cell) = cell {
                    cell.on_exited(at, wall);
                }
            }
        }
    }
}

impl Shared {
    /// Stops the threads and kills and reaps every process still owned, without touching
    /// glommio (it may already be gone). Idempotent.
    fn teardown(&self) {
        if self.torn_down.replace(true) {
            return;
        }
        let queued = self.queue.close();
        self.pool.stop();
        let mut orphans: Vec<Child> = launched_children(queued);
        orphans.extend(
            self.jobs
                .borrow()
                .values()
                .filter_map(|cell| cell.take_process()),
        );
        reap_in_background(orphans);
    }
}

impl Drop for Shared {
    /// Runs when the last handle and the last supervisor are gone, normally with no job left.
    fn drop(&mut self) {
        self.teardown();
    }
}

thread_local! {
    /// The engines started on this thread. Supervisor tasks keep their engine alive, and glommio
    /// never drops tasks still pending when an executor ends (a waker in the job cell keeps its
    /// task alive), so `Drop` alone would miss an executor that ends with jobs running. This
    /// thread-local's destructor, run when the executor's thread exits, tears those engines down.
    static LIVE_ENGINES: LiveEngines = const { LiveEngines(RefCell::new(Vec::new())) };
}

struct LiveEngines(RefCell<Vec<Weak<Shared>>>);

impl LiveEngines {
    fn register(&self, shared: &Rc<Shared>) {
        let mut engines = self.0.borrow_mut();
        engines.retain(|weak| weak.strong_count() > 0);
        engines.push(Rc::downgrade(shared));
    }
}

impl Drop for LiveEngines {
    fn drop(&mut self) {
        for weak in self.0.get_mut().drain(..) {
            if let Some(shared) = weak.upgrade() {
                shared.teardown();
            }
        }
    }
}

/// Kills and reaps the processes inside completions nobody will handle.
fn dispose(batch: Vec<Completion>) {
    reap_in_background(launched_children(batch));
}

/// SIGKILLs each child's group and reaps it on a helper thread: killed processes die promptly
/// but not instantly, and a destructor on the executor must not wait. Should no thread be
/// available, the wait happens here rather than leaving zombies.
fn reap_in_background(children: Vec<Child>) {
    if children.is_empty() {
        return;
    }
    for child in &children {
        signal_group(child.id(), Signal::SIGKILL);
    }
    let slot = Arc::new(Mutex::new(Some(children)));
    let thread_slot = slot.clone();
    let spawned = std::thread::Builder::new()
        .name("titan-reap-orphans".into())
        .spawn(move || reap_slot(&thread_slot));
    if let Err(error) = spawned {
        tracing::warn!(%error, "reaping orphaned jobs on the executor thread");
        reap_slot(&slot);
    }
}

fn reap_slot(slot: &Mutex<Option<Vec<Child>>>) {
    let children = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    children.into_iter().flatten().for_each(kill_and_reap);
}

fn launched_children(batch: Vec<Completion>) -> Vec<Child> {
    batch
        .into_iter()
        .filter_map(|completion| match completion {
            Completion::Launched {
                result: Ok(spawned),
                ..
            } => Some(spawned.child),
            _ => None,
        })
        .collect()
}

fn validate(config: &EngineConfig) -> Result<(), EngineError> {
    if !(1..=MAX_PROCESS_THREADS).contains(&config.process_threads) {
        return Err(EngineError::Config {
            reason: format!(
                "process_threads is {}, must be 1..={MAX_PROCESS_THREADS}",
                config.process_threads
            ),
        });
    }
    if config.launch_notice_delay > MAX_LAUNCH_NOTICE_DELAY {
        return Err(EngineError::Config {
            reason: format!(
                "launch_notice_delay {:?} exceeds {MAX_LAUNCH_NOTICE_DELAY:?}",
                config.launch_notice_delay
            ),
        });
    }
    if config.max_running == 0 {
        return Err(EngineError::Config {
            reason: "max_running must be at least 1".into(),
        });
    }
    if config.max_jobs == 0 {
        return Err(EngineError::Config {
            reason: "max_jobs must be at least 1".into(),
        });
    }
    Ok(())
}

fn absolute(path: &std::path::Path, what: &str) -> Result<PathBuf, EngineError> {
    std::path::absolute(path).map_err(|source| EngineError::Io {
        what: format!("make the {what} path {} absolute", path.display()),
        source,
    })
}

fn check_env(env: &[(String, String)]) -> Result<(), LaunchError> {
    let bad = env.iter().find(|(name, value)| {
        name.is_empty() || name.contains(['=', '\0']) || value.contains('\0')
    });
    match bad {
        Some((name, _)) => Err(LaunchError::BadEnv { name: name.clone() }),
        None => Ok(()),
    }
}
