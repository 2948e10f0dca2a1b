//! `--json` output: exactly one JSON value per command, on one line.
//!
//! [`JobStatus`] and [`ClusterStats`] serialize with serde as they are; the other replies are
//! wrappers around them and are built here, field for field, with the same names as the wire
//! messages (`snake_case`), so a script sees one vocabulary. States are their upper-case names.

use serde_json::{json, Value};

use titan_proto::message::client::{
    Cancelled, ClusterStats, JobList, JobStatus, Stopped, Submitted, WaitReply, WorkerList,
};

/// `{"dag": 5, "label": "dag-5", "jobs": [{"id": .., "label": "dag-5:A"}, ..]}`
pub fn submitted(reply: &Submitted) -> Value {
    json!({
        "dag": reply.dag,
        "label": reply.label,
        "jobs": reply
            .jobs
            .iter()
            .map(|j| json!({ "id": j.id, "label": j.label }))
            .collect::<Vec<_>>(),
    })
}

/// One job's status object.
pub fn status(job: &JobStatus) -> Value {
    json!(job)
}

/// `{"jobs": [status, ..], "truncated": false}`
pub fn job_list(list: &JobList) -> Value {
    json!({ "jobs": list.jobs, "truncated": list.truncated })
}

/// `{"jobs": [status, ..], "pending": ["ID", ..], "timed_out": false}`: finished jobs, and the ids
/// (as asked) of jobs still unfinished when the wait timed out.
pub fn wait_reply(reply: &WaitReply) -> Value {
    json!({ "jobs": reply.jobs, "pending": reply.pending, "timed_out": reply.timed_out })
}

/// The structured STATS.
pub fn stats(stats: &ClusterStats) -> Value {
    json!(stats)
}

/// `{"workers": [worker, ..]}`
pub fn worker_list(list: &WorkerList) -> Value {
    json!({ "workers": list.workers })
}

/// `{"jobs": 3}`: how many jobs moved to CANCELLED.
pub fn cancelled(reply: &Cancelled) -> Value {
    json!({ "jobs": reply.jobs })
}

/// `{"label": "dag-4:WORKER_A"}`
pub fn stopped(reply: &Stopped) -> Value {
    json!({ "label": reply.label })
}

/// The value as one line of text, newline-terminated.
pub fn line(value: &Value) -> String {
    format!("{value}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use titan_core::model::JobState;
    use titan_proto::message::client::{
        JobLabel, Persistence, ScalingAction, ScalingEvent, WorkerStatus,
    };

    fn job() -> JobStatus {
        JobStatus {
            id: 7,
            label: "TSK-7".into(),
            state: JobState::UpstreamFailed,
            ready: false,
            finished_at_us: Some(2),
            state_since_us: 2,
            deps: vec!["A".into()],
            ..JobStatus::sample()
        }
    }

    #[test]
    fn status_has_every_wire_field_and_state_names() {
        let v = status(&job());
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = vec![
            "id",
            "label",
            "state",
            "kind",
            "spec",
            "skill",
            "priority",
            "attempts",
            "failures",
            "retries",
            "crashes",
            "worker",
            "worker_port",
            "ready",
            "submitted_at_us",
            "started_at_us",
            "finished_at_us",
            "state_since_us",
            "last_error",
            "deps",
        ];
        let mut keys_sorted = keys.clone();
        keys_sorted.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys_sorted, expected);
        assert_eq!(v["state"], "UPSTREAM_FAILED");
        assert_eq!(v["worker"], Value::Null);
        assert_eq!(v["finished_at_us"], 2);
        assert_eq!(v["deps"], json!(["A"]));
    }

    #[test]
    fn wrappers_nest_the_serde_values() {
        let list = JobList {
            jobs: vec![job()],
            truncated: true,
        };
        let v = job_list(&list);
        assert_eq!(v["truncated"], true);
        assert_eq!(v["jobs"][0], status(&job()));

        let reply = WaitReply {
            jobs: vec![job()],
            pending: vec!["dag-2:B".into()],
            timed_out: true,
        };
        let v = wait_reply(&reply);
        assert_eq!(v["timed_out"], true);
        assert_eq!(v["pending"], json!(["dag-2:B"]));
        assert_eq!(v["jobs"][0]["label"], "TSK-7");

        let workers = WorkerList {
            workers: vec![WorkerStatus {
                id: 65536,
                port: 8080,
                running: 1,
                capacity: 4,
                skills: vec!["GENERAL".into()],
                parent: None,
                ephemeral: false,
                services: vec![],
                silent_for_ms: 3,
            }],
        };
        let v = worker_list(&workers);
        assert_eq!(v["workers"][0]["port"], 8080);
        assert_eq!(v["workers"][0]["parent"], Value::Null);
    }

    #[test]
    fn submitted_lists_ids_and_labels() {
        let reply = Submitted {
            dag: 5,
            label: "dag-5".into(),
            jobs: vec![JobLabel {
                id: 83_886_080,
                label: "dag-5:A".into(),
            }],
        };
        assert_eq!(
            line(&submitted(&reply)),
            "{\"dag\":5,\"jobs\":[{\"id\":83886080,\"label\":\"dag-5:A\"}],\"label\":\"dag-5\"}\n"
        );
        assert_eq!(line(&cancelled(&Cancelled { jobs: 2 })), "{\"jobs\":2}\n");
        assert_eq!(
            line(&stopped(&Stopped { label: "X".into() })),
            "{\"label\":\"X\"}\n"
        );
    }

    #[test]
    fn stats_is_one_object_with_workers() {
        let s = ClusterStats {
            active_workers: 0,
            queued: 1,
            delayed: 2,
            blocked: 3,
            dlq: 4,
            running: 5,
            completed: 6,
            cancelled: 7,
            upstream_failed: 8,
            shards: 2,
            persistence: Persistence::MemoryOnly,
            workers: vec![],
            scaling: vec![],
            logs: Default::default(),
        };
        let v = stats(&s);
        assert_eq!(v["dlq"], 4);
        assert_eq!(v["persistence"], "memory-only");
        assert_eq!(v["workers"], json!([]));
        assert!(!line(&v).trim_end().contains('\n'));
    }

    #[test]
    fn persistence_and_scaling_actions_are_their_text() {
        let failing = Persistence::Failing {
            cause: "disk full".into(),
        };
        assert_eq!(
            json!(failing),
            json!("write-ahead log failing, changes refused (disk full)")
        );
        assert_eq!(json!(Persistence::Wal), json!("wal"));
        let event = ScalingEvent {
            at_us: 1,
            action: ScalingAction::Retire,
            worker: 2,
            worker_port: Some(8081),
            reason: "idle for 1s".into(),
        };
        assert_eq!(
            line(&json!(event)),
            "{\"action\":\"retire\",\"at_us\":1,\"reason\":\"idle for 1s\",\"worker\":2,\"worker_port\":8081}\n"
        );
        assert_eq!(json!(ScalingAction::Spawn), json!("spawn"));
    }
}
