//! STATS: what one shard contributes (its counts, the services it owns, the heartbeats it hears,
//! its scaling decisions, its log's health) and how the origin turns the sum of every shard's part
//! into the cluster's figures.

use super::mesh::ShardStats;
use super::scaling;
use super::shard::Shard;
use titan_core::{JobState, WorkerView};
use titan_proto::message::client::{ClusterStats, Persistence, WorkerStatus};

impl Shard {
    /// This shard's part of STATS.
    pub(super) fn shard_stats(&self) -> ShardStats {
        let core = self.core.borrow();
        let stats = core.stats();
        let mut by_state = [0u64; 9];
        for (i, n) in stats.by_state.iter().enumerate() {
            by_state[i] = *n as u64;
        }
        let mut services = Vec::new();
        let mut silent_for = Vec::new();
        for worker in core.workers() {
            if worker.home {
                silent_for.push((worker.id, worker.silent_for));
            }
            for job in core.services_on(worker.id) {
                if let Some(label) = core.label(job) {
                    services.push((worker.id, label.to_string()));
                }
            }
        }
        ShardStats {
            by_state,
            dlq: stats.dlq as u64,
            totals: stats.totals,
            services,
            silent_for,
            scaling: self.scaling.recent(),
            logs: self.logs.as_ref().map(|l| l.totals()),
            degraded: self
                .degraded()
                .map(|d| format!("shard {}: {}", self.index, d.cause)),
        }
    }
}

/// The cluster's figures from every shard's part summed (`acc`) and the origin's view of the
/// workers (every shard knows every worker; only a worker's home shard hears its heartbeats).
pub fn cluster_stats(
    acc: ShardStats,
    workers: &[WorkerView<'_>],
    shards: u32,
    has_wal: bool,
) -> ClusterStats {
    let count = |s: JobState| acc.by_state[s as usize];
    let workers = workers
        .iter()
        .map(|w| WorkerStatus {
            id: w.id.0,
            port: w.port,
            running: w.running,
            capacity: w.capacity,
            skills: w.skills.iter().map(|s| s.to_string()).collect(),
            parent: w.parent.map(|p| p.0),
            ephemeral: w.ephemeral,
            services: acc
                .services
                .iter()
                .filter(|(id, _)| *id == w.id)
                .map(|(_, l)| l.clone())
                .collect(),
            silent_for_ms: acc
                .silent_for
                .iter()
                .find(|(id, _)| *id == w.id)
                .map_or(w.silent_for, |&(_, d)| d)
                .as_millis() as u64,
        })
        .collect::<Vec<_>>();
    ClusterStats {
        active_workers: workers.len() as u32,
        queued: count(JobState::Queued),
        delayed: count(JobState::Pending) + count(JobState::Failed),
        blocked: count(JobState::Blocked),
        dlq: acc.dlq,
        running: count(JobState::Running),
        completed: acc.totals.completed,
        cancelled: acc.totals.cancelled,
        upstream_failed: acc.totals.upstream_failed,
        shards,
        persistence: persistence_label(has_wal, acc.degraded.as_deref()),
        workers,
        scaling: scaling::most_recent(acc.scaling),
        logs: acc.logs.unwrap_or_default(),
    }
}

/// Memory only, the log, or why a shard cannot write its log (changes are refused).
fn persistence_label(has_wal: bool, degraded: Option<&str>) -> Persistence {
    match (has_wal, degraded) {
        (false, _) => Persistence::MemoryOnly,
        (true, None) => Persistence::Wal,
        (true, Some(cause)) => Persistence::Failing {
            cause: cause.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use titan_core::{Time, WorkerId};

    fn view(id: WorkerId, silent_for: Duration) -> WorkerView<'static> {
        WorkerView {
            id,
            port: 8081,
            running: 1,
            capacity: 4,
            skills: vec!["GENERAL"],
            parent: None,
            ephemeral: false,
            retiring: false,
            silent_for,
            home: false,
            registered: Time(0),
        }
    }

    #[test]
    fn cluster_figures_come_from_the_summed_parts_and_the_home_shards_heartbeats() {
        let (a, b) = (
            WorkerId::new(1, 1).expect("id"),
            WorkerId::new(2, 1).expect("id"),
        );
        let mut by_state = [0; 9];
        by_state[JobState::Queued as usize] = 4;
        by_state[JobState::Pending as usize] = 1;
        by_state[JobState::Failed as usize] = 2;
        let acc = ShardStats {
            by_state,
            dlq: 3,
            services: vec![(a, "dag-1:WEB".into())],
            // Only `a`'s home shard heard it recently; the origin's own figure is stale.
            silent_for: vec![(a, Duration::from_millis(20))],
            ..ShardStats::default()
        };
        let views = [
            view(a, Duration::from_secs(9)),
            view(b, Duration::from_millis(700)),
        ];
        let stats = cluster_stats(acc, &views, 2, false);
        assert_eq!((stats.queued, stats.delayed, stats.dlq), (4, 3, 3));
        assert_eq!((stats.active_workers, stats.shards), (2, 2));
        assert_eq!(stats.workers[0].services, ["dag-1:WEB"]);
        assert_eq!(stats.workers[0].silent_for_ms, 20);
        assert_eq!(stats.workers[1].silent_for_ms, 700);
        assert_eq!(stats.persistence, Persistence::MemoryOnly);
    }

    #[test]
    fn persistence_says_when_changes_are_refused() {
        assert_eq!(persistence_label(false, None), Persistence::MemoryOnly);
        assert_eq!(persistence_label(true, None), Persistence::Wal);
        let failing = Persistence::Failing {
            cause: "disk full".into(),
        };
        assert_eq!(persistence_label(true, Some("disk full")), failing);
    }
}
