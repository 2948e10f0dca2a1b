//! Self-scaling with real processes: a backlog makes a worker spawn children up to the maximum,
//! the children take jobs, and idle children are retired.

mod support;

use support::{eventually, Master, Worker};
use titan::core::grammar::parse_one_off;
use titan::core::Submission;
use titan::proto::message::client::ScalingAction;

#[test]
fn a_burst_scales_workers_up_to_the_maximum_and_idle_children_retire() {
    let master = Master::start(&[
        "--shards",
        "2",
        "--max-workers",
        "3",
        "--scale-after-ms",
        "100",
        "--idle-timeout-ms",
        "700",
    ]);
    let parent = Worker::start(&master.addr, &["--capacity", "4"]);
    let mut client = support::connect(&master.addr);
    let spec = parse_one_off("SLEEP|100").unwrap();
    let labels: Vec<String> = (0..200)
        .map(|_| {
            client
                .submit(Submission::OneOff(spec.clone()))
                .unwrap()
                .label
        })
        .collect();
    eventually("three workers", || {
        (client.stats().unwrap().active_workers == 3).then_some(())
    });
    eventually("a child worker to run jobs", || {
        let stats = client.stats().unwrap();
        stats
            .workers
            .iter()
            .any(|w| w.ephemeral && w.parent.is_some() && w.running > 0)
            .then_some(())
    });
    let reply = client.wait(&labels, support::DEADLINE).unwrap();
    assert!(!reply.timed_out, "the burst did not drain");
    let stats = client.stats().unwrap();
    let spawns = stats
        .scaling
        .iter()
        .filter(|e| e.action == ScalingAction::Spawn)
        .count();
    // Three workers at most: the parent and two children (a child retired early under load may
    // be replaced, so later spawns are allowed as long as the maximum held).
    assert!(spawns >= 2, "scaling events: {:?}", stats.scaling);
    assert!(stats
        .scaling
        .iter()
        .all(|e| e.action != ScalingAction::Spawn || e.worker_port == Some(parent.port())));
    // Children are ephemeral: once idle past the timeout they are retired, never the parent.
    // STATS gathers every shard asynchronously, so wait until the worker list and the decisions
    // agree.
    let retired = |s: &titan::proto::message::client::ClusterStats| {
        s.scaling
            .iter()
            .filter(|e| e.action == ScalingAction::Retire)
            .count()
    };
    let stats = eventually("the children to retire", || {
        let s = client.stats().unwrap();
        (s.active_workers == 1 && retired(&s) == spawns).then_some(s)
    });
    assert_eq!(
        stats.workers[0].port,
        parent.port(),
        "the parent is gone: {stats:?}"
    );
    assert!(stats
        .scaling
        .iter()
        .all(|e| e.action != ScalingAction::Retire || e.worker_port != Some(parent.port())));
}
