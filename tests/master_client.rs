//! Client operations against the real master, with no worker attached: jobs wait QUEUED, and
//! everything a client can ask or change without a worker is checked.

mod support;

use support::Master;
use titan::cli::client::Client;
use titan::core::grammar::{parse_dag, parse_one_off};
use titan::core::{JobState, Submission};
use titan::proto::ErrorCode;

fn submit_text(client: &mut Client, text: &str) -> titan::proto::message::client::Submitted {
    let spec = parse_one_off(text).expect("valid one-off");
    client
        .submit(Submission::OneOff(spec))
        .expect("submit accepted")
}

#[test]
fn seed_one_offs_are_accepted_and_wait_queued_without_workers() {
    let master = Master::start(&["--shards", "2"]);
    let mut client = support::connect(&master.addr);
    let run = submit_text(&mut client, "RUN|calc.py");
    assert!(run.label.starts_with("TSK-"), "{run:?}");
    let delayed = submit_text(&mut client, "PDF_CONVERT|future_report.pdf|1|8000");
    let email = submit_text(&mut client, "EMAIL_ALERT|admin@titan.com|1|0");
    assert_eq!(client.status(&run.label).unwrap().state, JobState::Queued);
    assert_eq!(
        client.status(&delayed.label).unwrap().state,
        JobState::Pending
    );
    let status = client.status(&email.label).unwrap();
    assert_eq!(
        (status.state, status.skill.as_str()),
        (JobState::Queued, "EMAIL_ALERT")
    );
    let stats = client.stats().unwrap();
    assert_eq!(
        (stats.queued, stats.delayed, stats.active_workers),
        (2, 1, 0)
    );
    let text = client.stats_text().unwrap();
    assert!(
        text.starts_with(
            "--- TITAN SYSTEM MONITOR ---\nActive Workers:    0\nExecution Queue:   2 jobs\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("[INFO] No workers currently connected."),
        "{text}"
    );
}

#[test]
fn dag_jobs_are_named_and_found_by_full_id_and_bare_name_across_shards() {
    let master = Master::start(&["--shards", "2"]);
    let mut client = support::connect(&master.addr);
    let dag = "A|RUN|calc.py|1|0|[] ; B|RUN|calc.py|1|0|[A] ; C|RUN|calc.py|1|0|[A] ; D|RUN|calc.py|1|0|[B, C]";
    let mut last = None;
    for _ in 0..4 {
        let reply = client
            .submit(Submission::Dag(parse_dag(dag).unwrap()))
            .unwrap();
        assert_eq!(reply.jobs.len(), 4);
        assert_eq!(reply.jobs[3].label, format!("{}:D", reply.label));
        last = Some(reply);
    }
    let last = last.unwrap();
    let by_name = client.status("D").unwrap();
    assert_eq!(
        by_name.label, last.jobs[3].label,
        "a bare name means the most recent job of that name"
    );
    assert_eq!(by_name.state, JobState::Blocked);
    assert_eq!(by_name.deps, vec!["B".to_string(), "C".to_string()]);
    let listed = client.jobs(Some(JobState::Blocked), 100).unwrap();
    assert_eq!(listed.jobs.len(), 12);
    assert!(!listed.truncated);
    let limited = client.jobs(None, 5).unwrap();
    assert_eq!(limited.jobs.len(), 5);
    assert!(limited.truncated);
}

#[test]
fn cancel_cascades_to_descendants_and_reports_counts() {
    let master = Master::start(&["--shards", "2"]);
    let mut client = support::connect(&master.addr);
    let dag =
        parse_dag("A|RUN|calc.py|1|0|[] ; B|RUN|calc.py|1|0|[A] ; C|RUN|calc.py|1|0|[B]").unwrap();
    let reply = client.submit(Submission::Dag(dag)).unwrap();
    let cancelled = client.cancel(&reply.jobs[0].label).unwrap();
    assert_eq!(cancelled.jobs, 3);
    for job in &reply.jobs {
        assert_eq!(
            client.status(&job.label).unwrap().state,
            JobState::Cancelled
        );
    }
    let again = client.cancel(&reply.jobs[0].label).unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::Rejected), "{again}");
}

#[test]
fn bad_requests_get_clear_errors_and_nothing_is_queued() {
    let master = Master::start(&["--shards", "2"]);
    let mut client = support::connect(&master.addr);
    let unknown = client.status("TSK-999999").unwrap_err();
    assert_eq!(unknown.code(), Some(ErrorCode::NotFound), "{unknown}");
    let nobody = client.status("NO_SUCH_NAME").unwrap_err();
    assert!(
        nobody.to_string().contains("no job named NO_SUCH_NAME"),
        "{nobody}"
    );
    // A cycle built directly (the client-side parser would refuse it first): the master must
    // validate again.
    let mut dag = parse_dag("A|RUN|calc.py|1|0|[] ; B|RUN|calc.py|1|0|[A]").unwrap();
    dag[0].deps.push("B".into());
    let cycle = client.submit(Submission::Dag(dag)).unwrap_err();
    assert_eq!(cycle.code(), Some(ErrorCode::Rejected), "{cycle}");
    assert!(cycle.to_string().contains("cycle"), "{cycle}");
    let stats = client.stats().unwrap();
    assert_eq!(
        stats.queued + stats.blocked + stats.delayed,
        0,
        "nothing of a rejected DAG is queued"
    );
}

#[test]
fn wait_times_out_with_the_jobs_still_pending() {
    let master = Master::start(&["--shards", "2"]);
    let mut client = support::connect(&master.addr);
    let job = submit_text(&mut client, "RUN|calc.py");
    let reply = client
        .wait(
            std::slice::from_ref(&job.label),
            std::time::Duration::from_millis(200),
        )
        .unwrap();
    assert!(reply.timed_out);
    assert_eq!(reply.pending, vec![job.label]);
}

#[test]
fn path_traversal_is_refused_by_the_master_even_from_a_crafted_client() {
    use titan::core::{JobKind, JobSpec};
    let master = Master::start(&["--shards", "1"]);
    let mut client = support::connect(&master.addr);
    for file in ["../../etc/passwd", "/etc/passwd", "a/../../b.sh"] {
        let spec = JobSpec::new(JobKind::Run {
            file: file.into(),
            args: Box::new([]),
        });
        let err = client.submit(Submission::OneOff(spec)).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Rejected), "{file}: {err}");
    }
    assert_eq!(client.stats().unwrap().queued, 0);
}
