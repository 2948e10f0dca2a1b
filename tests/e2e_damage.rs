//! A damaged log with real processes: a torn tail is cut, damage to acknowledged records stops
//! the master with an error naming the shard, segment, offset and last good record (and changes
//! nothing), `--recover-to-last-good` cuts it after copying it aside, a record that does not fit
//! the state stops recovery, and a missing shard log stops the master too.

mod support;

use std::path::Path;

use support::durability::{kill9, restart, segments, shard_dirs, used_len};
use support::{scratch_dir, titan_command, Master};
use titan::core::grammar::parse_one_off;
use titan::core::Submission;
use titan::wal::{decode, RECORD_HEADER_LEN};

fn submit(master: &Master, n: usize) -> Vec<String> {
    let mut client = support::connect(&master.addr);
    (0..n)
        .map(|_| {
            client
                .submit(Submission::OneOff(parse_one_off("RUN|calc.py").unwrap()))
                .unwrap()
                .label
        })
        .collect()
}

fn known(master: &Master, labels: &[String]) -> Vec<bool> {
    let mut client = support::connect(&master.addr);
    labels.iter().map(|l| client.status(l).is_ok()).collect()
}

/// Offsets where the segment's records start.
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut pos = 0;
    while let Ok(d) = decode(&bytes[pos..], usize::MAX >> 1) {
        offsets.push(pos);
        pos += d.encoded_len;
    }
    offsets
}

/// Runs `titan master` on `data` to its exit; returns its exit code and stderr.
fn master_exit(data: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let data = data.display().to_string();
    let mut args = vec!["master", "--port", "0", "--log-port", "0", "--shards", "1"];
    args.extend(["--data-dir", data.as_str()]);
    args.extend_from_slice(extra);
    let out = titan_command(&args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The issue-18 probe: 40 jobs, each acknowledged in its own batch, then one byte flipped inside
/// record 20. The master must not start, must say where and what (shard, segment, offset, last
/// good record), and must not change the log; `--recover-to-last-good` then starts it with the
/// first 19 jobs, after keeping a copy of the damaged segment.
#[test]
fn a_flip_in_an_acknowledged_record_stops_the_master_and_only_the_operator_cuts_the_log() {
    let data = scratch_dir("flip-middle");
    let master = restart(0, &data, &["--shards", "1"]);
    let labels = submit(&master, 40);
    let port = kill9(master);
    let dir = shard_dirs(&data).pop().expect("a shard directory");
    let segment = segments(&dir).pop().expect("a segment");
    let mut bytes = std::fs::read(&segment).unwrap();
    let offsets = record_offsets(&bytes);
    assert_eq!(offsets.len(), 40, "one record per submit");
    bytes[offsets[19] + RECORD_HEADER_LEN + 5] ^= 0x20;
    std::fs::write(&segment, &bytes).unwrap();
    let (code, stderr) = master_exit(&data, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    for needle in [
        "shard-0".to_string(),
        segment.display().to_string(),
        format!("damaged at offset {}", offsets[19]),
        "the last good record is 19".to_string(),
        "--recover-to-last-good".to_string(),
    ] {
        assert!(
            stderr.contains(&needle),
            "{needle:?} missing from: {stderr}"
        );
    }
    assert!(
        std::fs::read(&segment).unwrap() == bytes,
        "the log was changed"
    );
    let master = restart(port, &data, &["--shards", "1", "--recover-to-last-good"]);
    let present = known(&master, &labels);
    assert_eq!(present, (0..40).map(|i| i < 19).collect::<Vec<_>>());
    let name = segment.file_name().unwrap().to_string_lossy().into_owned();
    let copy = data.join(format!("damaged/shard-0/{name}.damaged-0"));
    assert!(
        std::fs::read(&copy).unwrap() == bytes,
        "no faithful copy at {}",
        copy.display()
    );
}

/// Recovery applies every record or stops: a journal record that names a job the log never
/// submitted stops the master, naming the shard and the record, instead of being skipped.
#[test]
fn a_record_that_does_not_fit_the_state_stops_recovery() {
    use titan::core::{DagId, EndCause, Next, Outcome, Record, Time};
    let data = scratch_dir("unfit-record");
    let master = restart(0, &data, &["--shards", "1"]);
    submit(&master, 2);
    kill9(master);
    let dir = shard_dirs(&data).pop().expect("a shard directory");
    let record = Record::AttemptEnded {
        job: DagId(999).job(0),
        attempt: 1,
        at: Time::from_millis(1_000),
        cause: EndCause::Reported(Outcome::Exited { code: 0 }),
        next: Next::Completed,
    };
    let payload = record.encode().unwrap();
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .unwrap()
        .run(async {
            let (journal, _) = titan::wal::Journal::open(&dir, Default::default(), |_| {})
                .await
                .unwrap();
            let lsn = journal.append(1, &payload).unwrap();
            journal.wait_durable(lsn).await.unwrap();
            journal.close().await.unwrap();
        });
    let segment = segments(&dir).pop().expect("a segment");
    let before = std::fs::read(&segment).unwrap();
    let (code, stderr) = master_exit(&data, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("shard-0") && stderr.contains("record 3 does not fit the state"),
        "{stderr}"
    );
    assert!(
        std::fs::read(&segment).unwrap() == before,
        "the log was changed"
    );
}

#[test]
fn a_truncated_or_bit_flipped_log_tail_is_cut_cleanly() {
    let data = scratch_dir("damaged");
    let survivors = |master: &Master, labels: &[String]| -> usize {
        known(master, labels).into_iter().filter(|&k| k).count()
    };
    let master = restart(0, &data, &["--shards", "1"]);
    let labels = submit(&master, 40);
    let port = kill9(master);
    let dir = shard_dirs(&data).pop().expect("a shard directory");
    let segment = segments(&dir).pop().expect("a segment");
    // A bit flipped inside the last record.
    let mut bytes = std::fs::read(&segment).unwrap();
    let end = used_len(&segment);
    assert!(end > 100, "no records in {}", segment.display());
    bytes[end - 20] ^= 0x10;
    std::fs::write(&segment, &bytes).unwrap();
    let master = restart(port, &data, &["--shards", "1"]);
    let after_flip = survivors(&master, &labels);
    assert!(
        (labels.len() - 3..labels.len()).contains(&after_flip),
        "{after_flip} of {} survived the flip",
        labels.len()
    );
    let more = submit(&master, 10);
    let port = kill9(master);
    // The file cut in the middle of the last record.
    let segment = segments(&dir).pop().expect("a segment");
    let end = used_len(&segment);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.set_len(end as u64 - 30).unwrap();
    drop(file);
    let master = restart(port, &data, &["--shards", "1"]);
    assert_eq!(
        survivors(&master, &labels),
        after_flip,
        "the second cut reached older records"
    );
    let kept = survivors(&master, &more);
    assert!(
        (more.len() - 3..more.len()).contains(&kept),
        "{kept} of {} survived the cut",
        more.len()
    );
    // The repaired log is sound: it accepts new records and survives another crash.
    let fresh = submit(&master, 1);
    let port = kill9(master);
    let master = restart(port, &data, &["--shards", "1"]);
    assert_eq!(survivors(&master, &fresh), 1);
    assert_eq!(survivors(&master, &labels), after_flip);
}

#[test]
fn a_missing_shard_log_stops_the_master_instead_of_dropping_its_jobs() {
    let data = scratch_dir("missing-shard");
    let master = restart(0, &data, &["--shards", "2"]);
    drop(master);
    let shards = shard_dirs(&data);
    assert_eq!(shards.len(), 2, "{shards:?}");
    std::fs::remove_dir_all(&shards[1]).unwrap();
    let data_arg = data.display().to_string();
    let out = support::titan_command(&[
        "master",
        "--port",
        "0",
        "--log-port",
        "0",
        "--shards",
        "2",
        "--data-dir",
        &data_arg,
    ])
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{} is missing", shards[1].display()))
            && stderr.contains("refusing to start"),
        "{stderr}"
    );
}
