//! The fuzz targets' committed corpus seeds (`fuzz/corpus/<target>/`) and every input that ever
//! crashed one (`fuzz/regressions/<target>/`), replayed through the same harness in the normal
//! test suite, so a fixed crash stays fixed without `cargo fuzz`.

mod fuzz_harness;

use std::path::Path;

fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut inputs: Vec<_> = entries
        .flatten()
        .map(|e| {
            (
                e.path().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    inputs.sort();
    inputs
}

#[test]
fn every_corpus_seed_and_regression_input_runs_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut ran = 0;
    for (target, run) in fuzz_harness::TARGETS {
        let seeds = inputs(&root.join("corpus").join(target));
        assert!(!seeds.is_empty(), "no corpus seeds for {target}");
        for (name, bytes) in seeds
            .iter()
            .chain(&inputs(&root.join("regressions").join(target)))
        {
            let outcome = std::panic::catch_unwind(|| run(bytes));
            assert!(outcome.is_ok(), "{target} panicked on {name}");
            ran += 1;
        }
    }
    println!("{ran} fuzz inputs replayed");
}

/// Writes the corpus seeds (run once, by hand: `cargo test --test fuzz_seeds -- --ignored`):
/// small valid inputs for each target, made by the real encoders, so fuzzing starts from
/// well-formed frames, messages, logs, snapshots and datagrams.
#[test]
#[ignore]
fn write_corpus_seeds() {
    use titan::core::grammar::parse_dag;
    use titan::core::{Core, CoreConfig, DagId, LoadTable, Record, ShardInfo, Submission, Time};
    use titan::logs::{AttemptKey, DatagramWriter, LineFlags, Stream};
    use titan::proto::message::Ping;
    use titan::proto::{encode_error, encode_frame, ErrorCode, OpCode, HEADER_LEN};
    use titan::wal::{encode_placed, BatchPlace, Lsn};

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    // Frames and messages.
    let mut frames = vec![7u8];
    let ping = Ping {
        nonce: 42,
        data: b"hello".to_vec(),
    };
    encode_frame(&mut frames, OpCode::Ping, &ping).unwrap();
    encode_error(&mut frames, ErrorCode::Unavailable, "try again");
    write("frame_decoder", "ping-and-error", &frames);
    write(
        "messages",
        "ping",
        &frames[1 + HEADER_LEN..frames.len() / 2],
    );
    // The grammar.
    for (name, text) in [
        ("one-off", "RUN|calc.py|2|100"),
        ("deploy", "DEPLOY|server.py|8080|1|0"),
        (
            "dag",
            "A|RUN|a.py|1|0|[] ; B|RUN|b.py|1|0|[A] ; C|NOOP|x|1|0|[A, B]",
        ),
    ] {
        write("dag_grammar", name, text.as_bytes());
    }
    // Journal records in batches, a segment, and a directory with a snapshot.
    let dag = parse_dag("A|RUN|a.py|1|0|[] ; B|RUN|b.py|1|0|[A]").unwrap();
    let records = [
        Record::Submitted {
            dag: DagId(1),
            at: Time::from_millis(1_000),
            submission: Submission::Dag(dag),
        },
        Record::Stopped {
            job: DagId(1).job(0),
            at: Time::from_millis(1_001),
        },
    ];
    let mut segment = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let place = BatchPlace {
            index: i as u32,
            commit: i + 1 == records.len(),
        };
        encode_placed(
            &mut segment,
            Lsn(i as u64 + 1),
            1,
            &record.encode().unwrap(),
            place,
        );
    }
    write("wal_records", "two-record-batch", &segment);
    let mut core = Core::new(
        CoreConfig::default(),
        ShardInfo::SINGLE,
        std::sync::Arc::new(LoadTable::new()),
        1,
    );
    core.replay(records[0].clone()).unwrap();
    let snapshot = core.snapshot().encode().unwrap();
    write("core_snapshot", "one-dag", &snapshot);
    let mut dir = segment.clone();
    dir.push(0xA5);
    write("wal_recovery", "one-segment", &dir);
    // A log datagram with lines of both streams and an end, sealed with the target's key.
    let seal = fuzz_harness::fuzz_seal_key();
    let mut writer = DatagramWriter::new(1400);
    let key = AttemptKey::new(DagId(1).job(0), 1);
    writer.push_line(
        &seal,
        key.stream(Stream::Stdout),
        0,
        LineFlags::default(),
        b"first line",
    );
    writer.push_line(
        &seal,
        key.stream(Stream::Stderr),
        0,
        LineFlags::CRLF,
        b"an error",
    );
    writer.push_end(&seal, key.stream(Stream::Stdout), 1);
    let worker = titan::core::WorkerId::new(1, 1).unwrap();
    write(
        "log_datagram",
        "lines-and-end",
        writer.seal(&seal, worker, 1, 1),
    );
}
