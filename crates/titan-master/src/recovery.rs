//! The data directory, and rebuilding the cores from it at start.
//!
//! Layout: `DATA/wal/CURRENT` names the active generation and its shard count; the logs live in
//! `DATA/wal/gen-<G>/shard-<i>/`. With the same `--shards` as last time, each shard opens its
//! own log on its own executor and replays it (the newest snapshot, then the records after it).
//! With a different count, recovery first runs once on a temporary executor: every old shard's
//! log is replayed into the new cores (each record to the owner of its DAG), each new core's
//! snapshot is written as the first state of a new generation, `CURRENT` is switched atomically,
//! and the old generation is deleted. A crash part-way leaves `CURRENT` on the old generation,
//! whose logs are untouched, and the half-written one is removed on the next start.
//!
//! Recovery applies every record and snapshot or stops: a snapshot or record that does not fit
//! the state rebuilt so far means the log does not describe what was acknowledged, so the master
//! refuses to start (naming the shard, the directory and the record) rather than start without
//! it. A log corrupt in the middle stops it the same way (`titan_wal::OpenError::Corrupt`),
//! unless the operator passed `--recover-to-last-good`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use glommio::{LocalExecutorBuilder, Placement};
use tracing::{info, warn};

use titan_core::{Core, CoreConfig, LoadTable, Record, ShardInfo, Snapshot};
use titan_runtime::{EXECUTOR_IO_MEMORY, EXECUTOR_RING_DEPTH};
use titan_wal::{self as wal, Journal, Replayed, WalConfig};

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("data directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a generation file this build understands: {content:?}")]
    BadCurrent { path: PathBuf, content: String },
    #[error("write-ahead log {dir}: {reason}")]
    Wal { dir: PathBuf, reason: String },
    /// Acknowledged records are damaged: the master does not start on part of its log.
    #[error(
        "{shard} ({dir}): {source}. To cut the log there instead, start the master with \
         --recover-to-last-good: every damaged segment is copied to DATA_DIR/damaged/ first, and \
         the acknowledged records after the last good one are dropped"
    )]
    Corrupt {
        shard: String,
        dir: PathBuf,
        source: Box<titan_wal::OpenError>,
    },
    #[error("resharding failed: {0}")]
    Reshard(String),
    #[error(
        "{path} is missing, but {current} says the log has it: refusing to start with part of \
         the log gone (restore it, or move the data directory aside to start empty)"
    )]
    Missing { path: PathBuf, current: PathBuf },
    #[error(
        "a snapshot in {dir} cannot be read by this build ({reason}); it was written by another \
         version or is damaged, and the log it replaced is gone: refusing to start without the \
         jobs it holds (run the version that wrote it, or move the data directory aside)"
    )]
    Snapshot { dir: PathBuf, reason: String },
    /// A snapshot or record that does not fit the state rebuilt before it.
    #[error(
        "{shard} ({dir}): {what} does not fit the state recovered before it ({reason}): the log \
         does not describe what was acknowledged, so the master does not start without it \
         (restore the data directory from a copy, or move it aside to start empty)"
    )]
    Replay {
        shard: String,
        dir: PathBuf,
        what: String,
        reason: String,
    },
}

/// The shard a log directory belongs to, for errors (`shard-3`).
fn shard_name(dir: &Path) -> String {
    dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// A failed open of a shard's log, with corruption singled out.
fn open_error(dir: &Path, error: titan_wal::OpenError) -> RecoveryError {
    match error {
        titan_wal::OpenError::Corrupt { .. } => RecoveryError::Corrupt {
            shard: shard_name(dir),
            dir: dir.to_path_buf(),
            source: Box::new(error),
        },
        other => RecoveryError::Wal {
            dir: dir.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RecoveryError + '_ {
    move |source| RecoveryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The active generation of the logs.
#[derive(Clone, Debug)]
pub struct Generation {
    pub dir: PathBuf,
    pub number: u64,
}

impl Generation {
    pub fn shard_dir(&self, index: u32) -> PathBuf {
        wal::shard_dir(&self.dir, index)
    }
}

fn wal_root(data: &Path) -> PathBuf {
    data.join("wal")
}

fn generation_dir(data: &Path, number: u64) -> PathBuf {
    wal_root(data).join(format!("gen-{number}"))
}

fn read_current(data: &Path) -> Result<Option<(u64, u32)>, RecoveryError> {
    let path = wal_root(data).join("CURRENT");
    let content = match fs::read_to_string(&path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let mut fields = content.split_whitespace();
    let parsed = match (fields.next(), fields.next(), fields.next(), fields.next()) {
        (Some("generation"), Some(g), Some("shards"), Some(n)) => {
            g.parse().ok().zip(n.parse().ok())
        }
        _ => None,
    };
    parsed
        .map(Some)
        .ok_or(RecoveryError::BadCurrent { path, content })
}

/// Creates a generation's shard directories, durably, before `CURRENT` names it: from then on a
/// missing one means part of the log was lost or removed, never a first start cut short.
fn create_generation(data: &Path, number: u64, shards: u32) -> Result<(), RecoveryError> {
    let dir = generation_dir(data, number);
    for k in 0..shards {
        let shard = wal::shard_dir(&dir, k);
        fs::create_dir_all(&shard).map_err(io(&shard))?;
    }
    for synced in [&dir, &wal_root(data)] {
        fs::File::open(synced)
            .and_then(|d| d.sync_all())
            .map_err(io(synced))?;
    }
    Ok(())
}

/// Creates `dir` and its missing ancestors, and syncs the parent of each one created: a new
/// directory's entry is durable only once its parent is synced, and without that a power cut
/// after the first acknowledgements could take the whole log (`DATA/wal`) with it.
fn create_dirs_durably(dir: &Path) -> Result<(), RecoveryError> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .take_while(|a| !a.is_dir())
        .collect();
    fs::create_dir_all(dir).map_err(io(dir))?;
    for created in missing.iter().rev() {
        let parent = match created.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io(parent))?;
    }
    Ok(())
}

/// Every shard directory `CURRENT` names must exist: starting without one would silently drop
/// its jobs.
fn check_generation(data: &Path, number: u64, shards: u32) -> Result<(), RecoveryError> {
    let dir = generation_dir(data, number);
    for k in 0..shards {
        let shard = wal::shard_dir(&dir, k);
        if !shard.is_dir() {
            return Err(RecoveryError::Missing {
                path: shard,
                current: wal_root(data).join("CURRENT"),
            });
        }
    }
    Ok(())
}

/// Writes `CURRENT` atomically (temp file, fsync, rename, directory fsync).
fn write_current(data: &Path, number: u64, shards: u32) -> Result<(), RecoveryError> {
    let root = wal_root(data);
    let tmp = root.join("CURRENT.tmp");
    let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
    writeln!(file, "generation {number} shards {shards}").map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, root.join("CURRENT")).map_err(io(&root))?;
    fs::File::open(&root)
        .and_then(|d| d.sync_all())
        .map_err(io(&root))
}

/// Removes generation directories other than `keep` (leftovers of an interrupted reshard).
fn remove_other_generations(data: &Path, keep: u64) -> Result<(), RecoveryError> {
    let root = wal_root(data);
    for entry in fs::read_dir(&root).map_err(io(&root))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(n) = name
            .strip_prefix("gen-")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if n != keep {
            warn!(dir = %entry.path().display(), "removing a log generation that is not current");
            fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
        }
    }
    Ok(())
}

/// Finds (or creates, or reshards into) the generation `shards` shards will open. Runs before
/// any shard starts.
pub fn prepare(
    data: &Path,
    shards: u32,
    wal_config: &WalConfig,
    core_config: &CoreConfig,
) -> Result<Generation, RecoveryError> {
    let root = wal_root(data);
    create_dirs_durably(&root)?;
    let number = match read_current(data)? {
        None => {
            create_generation(data, 1, shards)?;
            write_current(data, 1, shards)?;
            1
        }
        Some((number, old)) if old == shards => {
            check_generation(data, number, old)?;
            number
        }
        Some((number, old)) => {
            check_generation(data, number, old)?;
            info!(
                from = old,
                to = shards,
                "the shard count changed: moving every job to its new shard"
            );
            let next = number + 1;
            remove_other_generations(data, number)?;
            reshard(data, number, old, next, shards, wal_config, core_config)?;
            write_current(data, next, shards)?;
            fs::remove_dir_all(generation_dir(data, number))
                .map_err(io(&generation_dir(data, number)))?;
            next
        }
    };
    remove_other_generations(data, number)?;
    Ok(Generation {
        dir: generation_dir(data, number),
        number,
    })
}

/// Replays generation `from` (`old` shards) into `shards` fresh cores and writes their snapshots
/// as generation `to`, on a temporary executor.
fn reshard(
    data: &Path,
    from: u64,
    old: u32,
    to: u64,
    shards: u32,
    wal_config: &WalConfig,
    core_config: &CoreConfig,
) -> Result<(), RecoveryError> {
    let (from_dir, to_dir) = (generation_dir(data, from), generation_dir(data, to));
    let (wal_config, core_config) = (wal_config.clone(), core_config.clone());
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name("titan-reshard")
        .io_memory(EXECUTOR_IO_MEMORY)
        .ring_depth(EXECUTOR_RING_DEPTH)
        .spawn(move || async move {
            let load = Arc::new(LoadTable::new());
            let mut cores: Vec<Core> = (0..shards)
                .map(|index| {
                    Core::new(
                        core_config.clone(),
                        ShardInfo {
                            index,
                            count: shards,
                        },
                        load.clone(),
                        0,
                    )
                })
                .collect();
            for k in 0..old {
                let dir = wal::shard_dir(&from_dir, k);
                if !dir.exists() {
                    continue;
                }
                let mut failure: Option<String> = None;
                let report = wal::replay_dir(&dir, &wal_config, |replayed| {
                    if failure.is_none() {
                        failure = reshard_one(&mut cores, shards, replayed).err();
                    }
                })
                .await
                .map_err(|e| format!("{}: {e}", dir.display()))?;
                if let Some(reason) = failure {
                    return Err(format!(
                        "{}: {reason}; the old log does not describe what was acknowledged, so \
                         the master does not start without it",
                        dir.display()
                    ));
                }
                info!(dir = %dir.display(), records = report.records, "replayed an old shard");
            }
            for (index, core) in cores.iter().enumerate() {
                let bytes = core.snapshot().encode().map_err(|e| e.to_string())?;
                let dir = wal::shard_dir(&to_dir, index as u32);
                let (journal, _) = Journal::open(&dir, wal_config.clone(), |_| {})
                    .await
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
                journal
                    .write_snapshot(wal::Lsn::ZERO, &bytes)
                    .await
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
                journal
                    .close()
                    .await
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            Ok::<(), String>(())
        })
        .map_err(|e| RecoveryError::Reshard(e.to_string()))?;
    handle
        .join()
        .map_err(|e| RecoveryError::Reshard(e.to_string()))?
        .map_err(RecoveryError::Reshard)
}

/// Replays one snapshot or record of an old shard into the new cores: each record to the owner
/// of its DAG, a join to every core.
fn reshard_one(cores: &mut [Core], shards: u32, replayed: Replayed<'_>) -> Result<(), String> {
    match replayed {
        Replayed::Snapshot { covered, bytes } => {
            let snapshot = Snapshot::decode(bytes).map_err(|e| format!("snapshot: {e}"))?;
            for core in cores.iter_mut() {
                core.absorb(snapshot.clone())
                    .map_err(|e| format!("the snapshot covering record {covered}: {e}"))?;
            }
            Ok(())
        }
        Replayed::Record(view) => {
            let lsn = view.lsn;
            let archived =
                Record::access(view.payload).map_err(|e| format!("record {lsn}: {e}"))?;
            let replay = |core: &mut Core| {
                core.replay_bytes(view.payload)
                    .map_err(|e| format!("record {lsn}: {e}"))
            };
            match archived.dag() {
                Some(dag) => replay(&mut cores[dag.owner(shards) as usize]),
                // A departure is not replayed here: the old shards' logs are replayed one after
                // the other, so a leave from one could hide a later join in another (and a shard
                // that sent the worker an attempt). An extra instance only makes the restarted
                // master wait for it up to `adopt_grace`.
                None if matches!(
                    archived,
                    titan_core::record::ArchivedRecord::WorkerLeft { .. }
                ) =>
                {
                    Ok(())
                }
                // A join: every shard may have sent that worker attempts.
                None => cores.iter_mut().try_for_each(replay),
            }
        }
    }
}

/// What recovering one shard found.
#[derive(Debug, Default)]
pub struct Recovered {
    pub snapshot: bool,
    pub records: u64,
    /// Always 0 now that a rejection stops recovery; kept for the shard's log line.
    pub rejected: u64,
    pub damage: Option<String>,
    /// Something was replayed: the core must end recovery before its first live input.
    pub replayed: bool,
}

/// Opens a shard's log on its executor and replays it into `core`, every snapshot and record or
/// none: the first one the core refuses stops recovery with its error. The caller ends recovery
/// (`Core::finish_recovery`) once every shard has recovered, when `Recovered::replayed`.
pub async fn open_shard(
    dir: &Path,
    wal_config: WalConfig,
    core: &mut Core,
) -> Result<(Journal, Recovered), RecoveryError> {
    let mut recovered = Recovered::default();
    let mut failure: Option<RecoveryError> = None;
    let refused = |what: String, reason: String| RecoveryError::Replay {
        shard: shard_name(dir),
        dir: dir.to_path_buf(),
        what,
        reason,
    };
    let (journal, report) = Journal::open(dir, wal_config, |replayed| {
        if failure.is_some() {
            return;
        }
        match replayed {
            Replayed::Snapshot { covered, bytes } => {
                recovered.snapshot = true;
                failure = match Snapshot::decode(bytes) {
                    Ok(snapshot) => core.absorb(snapshot).err().map(|e| {
                        refused(
                            format!("the snapshot covering record {covered}"),
                            e.to_string(),
                        )
                    }),
                    Err(e) => Some(RecoveryError::Snapshot {
                        dir: dir.to_path_buf(),
                        reason: e.to_string(),
                    }),
                };
            }
            Replayed::Record(view) => {
                recovered.records += 1;
                if let Err(e) = core.replay_bytes(view.payload) {
                    failure = Some(refused(format!("record {}", view.lsn), e.to_string()));
                }
            }
        }
    })
    .await
    .map_err(|e| open_error(dir, e))?;
    if let Some(failure) = failure {
        let _ = journal.close().await;
        return Err(failure);
    }
    if let Some(damage) = &report.damage {
        warn!(
            shard = %shard_name(dir),
            path = %damage.path.display(),
            cut_at = damage.cut_at,
            dropped = damage.dropped,
            copies = ?report.copies,
            "the log was cut after its last whole batch"
        );
    }
    recovered.damage = report.damage.as_ref().map(|d| format!("{d:?}"));
    recovered.replayed = recovered.snapshot || recovered.records > 0;
    Ok((journal, recovered))
}
