//! Durability with real processes: masters killed with SIGKILL and restarted on their data
//! directory, a changed shard count, and a disk that fills up. Damaged logs are in
//! `e2e_damage.rs`, the crash loop in `e2e_crash_loop.rs`.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use support::durability::{kill9, restart};
use support::{eventually, scratch_dir, Master, Worker};
use titan::cli::client::Client;
use titan::core::grammar::{parse_dag, parse_one_off};
use titan::core::{JobState, Submission};

fn statuses(client: &mut Client, labels: &[String]) -> BTreeMap<String, (JobState, Vec<String>)> {
    labels
        .iter()
        .map(|l| {
            let s = client.status(l).unwrap_or_else(|e| panic!("{l} lost: {e}"));
            (l.clone(), (s.state, s.deps))
        })
        .collect()
}

#[test]
fn acknowledged_jobs_and_dag_edges_survive_kill_9() {
    let data = scratch_dir("durable");
    let master = restart(0, &data, &["--shards", "2"]);
    let mut client = support::connect(&master.addr);
    let mut labels = Vec::new();
    for _ in 0..10 {
        labels.push(
            client
                .submit(Submission::OneOff(parse_one_off("RUN|calc.py").unwrap()))
                .unwrap()
                .label,
        );
    }
    let dag = "A|RUN|calc.py|1|0|[] ; B|RUN|calc.py|1|0|[A] ; C|RUN|calc.py|1|0|[A] ; D|RUN|calc.py|1|0|[B, C]";
    for _ in 0..3 {
        let reply = client
            .submit(Submission::Dag(parse_dag(dag).unwrap()))
            .unwrap();
        labels.extend(reply.jobs.into_iter().map(|j| j.label));
    }
    let before = statuses(&mut client, &labels);
    drop(client);
    let port = kill9(master);
    let master = restart(port, &data, &["--shards", "2"]);
    let mut client = support::connect(&master.addr);
    assert_eq!(
        statuses(&mut client, &labels),
        before,
        "state after the crash differs"
    );
    // And they run, in dependency order, once a worker arrives.
    let _worker = Worker::start(&master.addr, &[]);
    let reply = client.wait(&labels, support::DEADLINE).unwrap();
    assert!(
        reply.jobs.iter().all(|j| j.state == JobState::Completed),
        "{:?}",
        reply.pending
    );
    for chunk in labels[10..].chunks(4) {
        let s: Vec<_> = chunk.iter().map(|l| client.status(l).unwrap()).collect();
        for (child, parent) in [(1, 0), (2, 0), (3, 1), (3, 2)] {
            assert!(
                s[child].started_at_us >= s[parent].finished_at_us,
                "{} ran before {}",
                s[child].label,
                s[parent].label
            );
        }
    }
}

#[test]
fn the_default_relative_data_directory_works_and_survives_kill_9() {
    // `titan master` with no `--data-dir` keeps its log in `titan_data` under the working
    // directory: a relative path all the way down to the directory syncs.
    let cwd = scratch_dir("relative-data");
    let master = Master::start_in(&cwd, 0);
    let mut client = support::connect(&master.addr);
    let label = client
        .submit(Submission::OneOff(parse_one_off("RUN|calc.py").unwrap()))
        .unwrap()
        .label;
    drop(client);
    let port = kill9(master);
    assert!(
        cwd.join("titan_data").is_dir(),
        "the log is under the working directory"
    );
    let master = Master::start_in(&cwd, port);
    let mut client = support::connect(&master.addr);
    assert_eq!(client.status(&label).unwrap().state, JobState::Queued);
}

#[test]
fn jobs_move_to_their_new_shards_when_the_shard_count_changes() {
    let data = scratch_dir("reshard");
    let master = restart(0, &data, &["--shards", "2"]);
    let mut client = support::connect(&master.addr);
    let mut labels = Vec::new();
    for _ in 0..20 {
        labels.push(
            client
                .submit(Submission::OneOff(
                    parse_one_off("RUN|calc.py|2|0").unwrap(),
                ))
                .unwrap()
                .label,
        );
    }
    let dag = "A|RUN|calc.py|1|0|[] ; B|RUN|calc.py|1|0|[A] ; C|RUN|calc.py|1|0|[A, B]";
    for _ in 0..4 {
        labels.extend(
            client
                .submit(Submission::Dag(parse_dag(dag).unwrap()))
                .unwrap()
                .jobs
                .into_iter()
                .map(|j| j.label),
        );
    }
    let before = statuses(&mut client, &labels);
    drop(client);
    let mut port = kill9(master);
    for shards in ["1", "3", "2"] {
        let master = restart(port, &data, &["--shards", shards]);
        let mut client = support::connect(&master.addr);
        assert_eq!(
            statuses(&mut client, &labels),
            before,
            "after moving to {shards} shards"
        );
        drop(client);
        port = kill9(master);
    }
    let master = restart(port, &data, &["--shards", "3"]);
    let _worker = Worker::start(&master.addr, &[]);
    let mut client = support::connect(&master.addr);
    let fresh = client
        .submit(Submission::OneOff(parse_one_off("NOOP").unwrap()))
        .unwrap();
    assert!(
        !labels.contains(&fresh.label),
        "a recovered id was handed out again"
    );
    let reply = client.wait(&labels, support::DEADLINE).unwrap();
    assert!(
        reply.jobs.iter().all(|j| j.state == JobState::Completed),
        "{:?}",
        reply.pending
    );
}

/// A small ext4 file system the test mounts, unmounted when dropped.
struct SmallDisk {
    mount: PathBuf,
}

impl SmallDisk {
    fn mount(size_mb: u64) -> Option<SmallDisk> {
        let dir = scratch_dir("small-disk");
        let image = dir.join("image");
        let mount = dir.join("mnt");
        std::fs::create_dir_all(&mount).ok()?;
        let run =
            |cmd: &mut std::process::Command| cmd.status().ok().filter(|s| s.success()).map(|_| ());
        run(std::process::Command::new("truncate")
            .arg("-s")
            .arg(format!("{size_mb}M"))
            .arg(&image))?;
        run(std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&image))?;
        run(std::process::Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mount))?;
        Some(SmallDisk { mount })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.mount)
            .status();
    }
}

#[test]
fn a_full_disk_refuses_changes_clearly_keeps_serving_reads_and_loses_no_acknowledged_job() {
    let Some(disk) = SmallDisk::mount(64) else {
        support::durability::cannot_set_up(
            "a loop-mounted ext4 file system (needs root and mkfs.ext4)",
        );
        return;
    };
    let data = disk.mount.join("data");
    let filler = disk.mount.join("filler");
    let master = restart(0, &data, &["--shards", "1"]);
    let mut client = support::connect(&master.addr);
    // Fill the disk to within a few MiB, then submit jobs carrying 200 KiB scripts.
    let free = nix::sys::statvfs::statvfs(&disk.mount).unwrap();
    let avail = free.blocks_available() * free.fragment_size();
    std::fs::write(&filler, vec![7u8; avail.saturating_sub(3 << 20) as usize]).unwrap();
    let script = vec![b'#'; 200 << 10];
    let spec = titan::core::JobSpec::new(titan::core::JobKind::RunInline {
        name: "big.sh".into(),
        bytes: script.into(),
    });
    // A submit in flight when the disk fills is in doubt: its effect is in memory and becomes
    // durable with the next snapshot, so the master neither acknowledges nor refuses it until
    // then. The client gives up on it after a while and reconnects; only acknowledgements and
    // refusals are asserted on.
    client.set_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut acked = Vec::new();
    let mut in_doubt = 0;
    let refusal = loop {
        match client.submit(Submission::OneOff(spec.clone())) {
            Ok(reply) => acked.push(reply.label),
            Err(e) if e.code().is_some() => break e,
            Err(_) => {
                in_doubt += 1;
                client = support::connect(&master.addr);
                client.set_timeout(Some(Duration::from_secs(2))).unwrap();
            }
        }
        assert!(acked.len() + in_doubt < 1000, "the disk never filled");
    };
    eprintln!(
        "{} acknowledged, {in_doubt} in doubt before the refusal",
        acked.len()
    );
    assert_eq!(
        refusal.code(),
        Some(titan::proto::ErrorCode::Unavailable),
        "{refusal}"
    );
    assert!(
        refusal.to_string().contains("cannot write its log"),
        "{refusal}"
    );
    // Reads keep working, and say why changes are refused.
    let stats = client.stats().unwrap();
    assert!(
        stats.persistence.to_string().contains("changes refused"),
        "{}",
        stats.persistence
    );
    for label in &acked {
        client.status(label).unwrap();
    }
    // Space comes back: the shard snapshots itself and accepts changes again.
    std::fs::remove_file(&filler).unwrap();
    let fresh = eventually("changes to be accepted again", || {
        client
            .submit(Submission::OneOff(parse_one_off("NOOP").unwrap()))
            .ok()
    });
    acked.push(fresh.label);
    // Every acknowledged job survives a crash.
    drop(client);
    let port = kill9(master);
    let master = restart(port, &data, &["--shards", "1"]);
    let mut client = support::connect(&master.addr);
    for label in &acked {
        client
            .status(label)
            .unwrap_or_else(|e| panic!("acknowledged {label} lost: {e}"));
    }
    drop(client);
    drop(master);
    drop(disk);
}
