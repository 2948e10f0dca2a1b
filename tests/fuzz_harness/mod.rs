//! What each fuzz target does with its input, shared by the fuzz targets (`fuzz/`, built by
//! `cargo fuzz`) and by `tests/fuzz_seeds.rs`, which replays every committed corpus seed and every
//! input that ever crashed a target through the same code in the normal test suite.
//!
//! Each function must not panic, whatever the bytes; where a result can be checked, it is.

#![allow(dead_code)]

use std::path::Path;

use titan::core::grammar::{parse_dag, parse_one_off};
use titan::core::{Core, CoreConfig, LoadTable, Record, ShardInfo, Snapshot};
use titan::logs::Datagram;
use titan::proto::message::{client, logs, worker};
use titan::proto::{access, Limits, OpCode, RecvBuf};
use titan::wal::storage::{Faults, SimDisk};
use titan::wal::{decode, replay_dir_on, Replayed, WalConfig};

/// What a target does with one input.
pub type Target = fn(&[u8]);

/// The targets, by the name of their corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame_decoder", frame_decoder),
    ("messages", messages),
    ("dag_grammar", dag_grammar),
    ("wal_records", wal_records),
    ("wal_recovery", wal_recovery),
    ("core_snapshot", core_snapshot),
    ("log_datagram", log_datagram),
];

/// Validates `payload` as every message type in turn (`rkyv::access` with bytecheck).
fn validate_all(opcode: OpCode, payload: &[u8]) {
    macro_rules! each {
        ($($ty:ty),* $(,)?) => {
            $(let _ = access::<$ty>(opcode, payload);)*
        };
    }
    each!(
        titan::proto::message::ArchivedPing,
        titan::proto::message::ArchivedErrorReply,
        client::ArchivedSubmitRequest,
        client::ArchivedSubmitted,
        client::ArchivedJobLabel,
        client::ArchivedJobQuery,
        client::ArchivedJobStatus,
        client::ArchivedListJobsRequest,
        client::ArchivedJobList,
        client::ArchivedWaitRequest,
        client::ArchivedWaitReply,
        client::ArchivedCancelled,
        client::ArchivedStopped,
        client::ArchivedStatsText,
        client::ArchivedClusterStats,
        client::ArchivedWorkerList,
        logs::ArchivedLogsRequest,
        logs::ArchivedLogsReply,
        logs::ArchivedFileRequest,
        logs::ArchivedFileChunk,
        worker::ArchivedRegister,
        worker::ArchivedRegistered,
        worker::ArchivedHeartbeat,
        worker::ArchivedRunJob,
        worker::ArchivedKillJob,
        worker::ArchivedJobStarted,
        worker::ArchivedJobFinished,
        worker::ArchivedServiceState,
        worker::ArchivedSpawnChild,
        worker::ArchivedRetire,
    );
}

/// The frame decoder: the input arrives in pieces (sizes from its first byte), frames come out
/// whole or the stream is refused; every frame's payload is validated as every message.
pub fn frame_decoder(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut buf = RecvBuf::new(Limits {
        max_frame_len: 4096,
    });
    let piece = usize::from(first % 64) + 1;
    for chunk in rest.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match buf.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.payload.len() <= 4096);
                    validate_all(frame.header.opcode, frame.payload);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// Every message's validation on arbitrary bytes.
pub fn messages(data: &[u8]) {
    validate_all(OpCode::Ping, data);
}

/// The DAG and one-off grammar on arbitrary text.
pub fn dag_grammar(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = parse_one_off(&text);
    if let Ok(jobs) = parse_dag(&text) {
        assert!(!jobs.is_empty(), "a parsed DAG has jobs");
    }
}

/// WAL records and segment scanning: the input as a segment, read in pieces; each record's
/// payload as a journal record of the core.
pub fn wal_records(data: &[u8]) {
    let piece = data.first().map_or(1, |&b| usize::from(b) * 7 + 1);
    titan::wal::sim::fuzzing::scan_bytes(data, piece);
    let mut pos = 0;
    while pos < data.len() {
        match decode(&data[pos..], 1 << 16) {
            Ok(d) => {
                let _ = Record::decode(d.record.payload);
                pos += d.encoded_len;
            }
            Err(_) => pos += 8,
        }
    }
}

/// Recovery of a whole shard directory on the simulated disk: the input split into up to three
/// segments and a snapshot; recovery returns a replay or a typed error, never a panic.
pub fn wal_recovery(data: &[u8]) {
    let disk = SimDisk::new(
        0,
        Faults {
            max_yields: 0,
            ..Faults::default()
        },
    );
    let storage = disk.storage();
    let dir = Path::new("/fuzz/shard-0");
    let parts: Vec<&[u8]> = data.splitn(4, |&b| b == 0xA5).collect();
    let names = [
        "00000000000000000001.wal",
        "00000000000000000100.wal",
        "snapshot-00000000000000000050.snap",
        "00000000000000000200.wal",
    ];
    disk.write_durable(dir, names.iter().copied().zip(parts));
    let config = WalConfig {
        max_record_bytes: 1 << 16,
        ..WalConfig::default()
    };
    let mut last = 0;
    let replayed = futures_lite::future::block_on(replay_dir_on(&storage, dir, &config, |r| {
        if let Replayed::Record(r) = r {
            assert!(r.lsn.0 > last, "records replayed out of order");
            last = r.lsn.0;
        }
    }));
    let _ = replayed;
}

/// A core snapshot: decoded, restored into a core, and snapshotted again.
pub fn core_snapshot(data: &[u8]) {
    let Ok(snapshot) = Snapshot::decode(data) else {
        return;
    };
    let load = std::sync::Arc::new(LoadTable::new());
    if let Ok(core) = Core::restore(CoreConfig::default(), ShardInfo::SINGLE, load, 1, snapshot) {
        let _ = core.snapshot().encode();
    }
}

/// The one key every worker and attempt uses in the fuzz target and its seeds: inputs sealed
/// with it reach the parser behind the seal check.
pub fn fuzz_seal_key() -> titan::auth::SealKey {
    titan::auth::SealKey::new(&[7u8; titan::auth::SECRET_BYTES])
}

struct FixedKeys(titan::auth::SealKey);

impl titan::logs::OpenKeys for FixedKeys {
    fn worker_key(&mut self, _: titan::core::WorkerId) -> Option<&titan::auth::SealKey> {
        Some(&self.0)
    }

    fn attempt_key(&mut self, _: titan::logs::AttemptKey) -> Option<&titan::auth::SealKey> {
        Some(&self.0)
    }
}

/// A log datagram (format 2, sealed): its seals checked with a fixed key, its sections
/// decrypted in place, its fields validated, and its entries walked.
pub fn log_datagram(data: &[u8]) {
    let mut bytes = data.to_vec();
    let mut keys = FixedKeys(fuzz_seal_key());
    if let Ok(datagram) = Datagram::open(&mut bytes, &mut keys) {
        for entry in datagram.entries() {
            let _ = entry;
        }
    }
}
