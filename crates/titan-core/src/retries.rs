//! What a job does after an attempt that did not complete it: the retry policy. A failed plain
//! job retries after `backoff_base * 2^(n-1)` capped at `backoff_max`, minus up to
//! `backoff_jitter_percent` drawn from the core's seeded RNG, until its `retries` are spent; a job
//! that lost its worker is re-queued at once until `crash_limit`; an attempt the worker refused is
//! DEAD at once (a retry cannot fix it). A service restarts after `service_restart_base *
//! 2^(n-1)` (capped, no jitter) however many times, unless the crash-loop guard sees
//! `crash_loop_starts` starts within `crash_loop_window`, for which this part keeps the recent
//! start times of each live service (not in snapshots: after a recovery the window starts empty).

use std::collections::VecDeque;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::config::CoreConfig;
use super::id_map::IdMap;
use super::ids::{JobId, Time};
use super::job_store::Job;
use super::model::Outcome;
use super::record::{EndCause, Next};

/// The retry policy's state: the jitter RNG and the services' recent starts.
#[derive(Debug)]
pub struct Retries {
    rng: SmallRng,
    service_starts: IdMap<JobId, VecDeque<Time>>,
}

impl Retries {
    pub fn new(seed: u64) -> Retries {
        Retries {
            rng: SmallRng::seed_from_u64(seed),
            service_starts: IdMap::default(),
        }
    }

    /// The service `job` starts an attempt at `now` (live or replayed).
    pub fn service_started(&mut self, job: JobId, now: Time, cfg: &CoreConfig) {
        let keep = cfg.crash_loop_starts.max(1) as usize;
        let starts = self.service_starts.entry(job).or_default();
        if starts.len() == keep {
            starts.pop_front();
        }
        starts.push_back(now);
    }

    /// `job` is terminal: its starts no longer count.
    pub fn forget(&mut self, job: JobId) {
        self.service_starts.remove(&job);
    }

    /// What `job` does next now that its attempt ended with `cause` (`success`: it completed).
    /// Its failure and crash counters already count this attempt.
    pub fn next(
        &mut self,
        cfg: &CoreConfig,
        job: &Job,
        cause: &EndCause,
        success: bool,
        now: Time,
    ) -> Next {
        if success {
            return Next::Completed;
        }
        if let EndCause::WorkerLost = cause {
            return if job.crashes > cfg.crash_limit {
                Next::Dead
            } else {
                Next::Requeued
            };
        }
        if let EndCause::Reported(Outcome::Rejected { .. }) = cause {
            return Next::Dead;
        }
        if job.spec.is_service() {
            // Services restart until stopped; only a crash loop ends them (not `retries`).
            if self.crash_looping(job.id, now, cfg) {
                return Next::Dead;
            }
            return Next::Retry {
                due: now + service_delay(cfg, job.failures),
            };
        }
        if job.failures > job.spec.retries {
            return Next::Dead;
        }
        Next::Retry {
            due: now + self.backoff(cfg, job.failures),
        }
    }

    /// Whether the service `job` started `crash_loop_starts` times within the window.
    fn crash_looping(&self, job: JobId, now: Time, cfg: &CoreConfig) -> bool {
        let limit = cfg.crash_loop_starts as usize;
        let window = cfg.crash_loop_window;
        limit > 0
            && self.service_starts.get(&job).is_some_and(|starts| {
                starts.iter().filter(|t| now.since(**t) < window).count() >= limit
            })
    }

    /// `base * 2^(failures-1)`, capped, minus up to `jitter%` drawn from the seeded RNG.
    fn backoff(&mut self, cfg: &CoreConfig, failures: u8) -> Duration {
        let base = cfg.backoff_base.as_micros().min(u128::from(u64::MAX)) as u64;
        let max = cfg.backoff_max.as_micros().min(u128::from(u64::MAX)) as u64;
        let shift = u32::from(failures.saturating_sub(1)).min(40);
        let full = base.saturating_mul(1u64 << shift).min(max);
        let cut = full / 100 * u64::from(cfg.backoff_jitter_percent.min(100));
        let jitter = if cut == 0 {
            0
        } else {
            self.rng.gen_range(0..=cut)
        };
        Duration::from_micros(full - jitter)
    }
}

/// A service's restart delay: `service_restart_base * 2^(failures-1)`, capped, no jitter.
fn service_delay(cfg: &CoreConfig, failures: u8) -> Duration {
    let shift = u32::from(failures.saturating_sub(1)).min(40);
    let base = cfg.service_restart_base;
    base.saturating_mul(1u32 << shift.min(31))
        .min(cfg.backoff_max.max(base))
}
