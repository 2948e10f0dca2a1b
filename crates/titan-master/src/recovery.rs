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
    fs::create_dir_all(&root).map_err(io(&root))?;
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
                .map(|index| Core::new(core_config.clone(), ShardInfo { index, count: shards }, load.clone(), 0))
                .collect();
            let mut rejected = 0u64;
            for k in 0..old {
                let dir = wal::shard_dir(&from_dir, k);
                if !dir.exists() {
                    continue;
                }
                let report = wal::replay_dir(&dir, &wal_config, |replayed| match replayed {
                    Replayed::Snapshot { bytes, .. } => match Snapshot::decode(bytes) {
                        Ok(snapshot) => {
                            for core in &mut cores {
                                if core.absorb(snapshot.clone()).is_err() {
                                    rejected += 1;
                                }
                            }
                        }
                        Err(_) => rejected += 1,
                    },
                    Replayed::Record(view) => match Record::access(view.payload) {
                        Ok(archived) => match archived.dag() {
                            Some(dag) => {
                                if cores[dag.owner(shards) as usize].replay_bytes(view.payload).is_err() {
                                    rejected += 1;
                                }
                            }
                            // A departure is not replayed here: the old shards' logs are replayed
                            // one after the other, so a leave from one could hide a later join in
                            // another (and a shard that sent the worker an attempt). An extra
                            // instance only makes the restarted master wait for it up to
                            // `adopt_grace`.
                            None if matches!(
                                archived,
                                titan_core::record::ArchivedRecord::WorkerLeft { .. }
                            ) => {}
                            // A join: every shard may have sent that worker attempts.
                            None => {
                                for core in &mut cores {
                                    if core.replay_bytes(view.payload).is_err() {
                                        rejected += 1;
                                    }
                                }
                            }
                        },
                        Err(_) => rejected += 1,
                    },
                })
                .await
                .map_err(|e| format!("{}: {e}", dir.display()))?;
                info!(dir = %dir.display(), records = report.records, "replayed an old shard");
            }
            if rejected > 0 {
                warn!(rejected, "records or snapshots that contradicted the state were skipped while resharding");
            }
            for (index, core) in cores.iter().enumerate() {
                let bytes = core.snapshot().encode().map_err(|e| e.to_string())?;
                let dir = wal::shard_dir(&to_dir, index as u32);
                let (journal, _) =
                    Journal::open(&dir, wal_config.clone(), |_| {}).await.map_err(|e| format!("{}: {e}", dir.display()))?;
                journal.write_snapshot(wal::Lsn::ZERO, &bytes).await.map_err(|e| format!("{}: {e}", dir.display()))?;
                journal.close().await.map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            Ok::<(), String>(())
        })
        .map_err(|e| RecoveryError::Reshard(e.to_string()))?;
    handle
        .join()
        .map_err(|e| RecoveryError::Reshard(e.to_string()))?
        .map_err(RecoveryError::Reshard)
}

/// What recovering one shard found.
#[derive(Debug, Default)]
pub struct Recovered {
    pub snapshot: bool,
    pub records: u64,
    pub rejected: u64,
    pub damage: Option<String>,
    /// Something was replayed: the core must end recovery before its first live input.
    pub replayed: bool,
}

/// Opens a shard's log on its executor and replays it into `core`. The caller ends recovery
/// (`Core::finish_recovery`) once every shard has recovered, when `Recovered::replayed`.
pub async fn open_shard(
    dir: &Path,
    wal_config: WalConfig,
    core: &mut Core,
) -> Result<(Journal, Recovered), RecoveryError> {
    let mut recovered = Recovered::default();
    let mut unreadable: Option<String> = None;
    let (journal, report) = Journal::open(dir, wal_config, |replayed| match replayed {
        Replayed::Snapshot { bytes, .. } => {
            recovered.snapshot = true;
            match Snapshot::decode(bytes) {
                Ok(snapshot) => {
                    if let Err(e) = core.absorb(snapshot) {
                        warn!(error = %e, "the snapshot contradicts the state; skipped");
                        recovered.rejected += 1;
                    }
                }
                Err(e) => {
                    unreadable.get_or_insert(e.to_string());
                }
            }
        }
        Replayed::Record(view) => {
            recovered.records += 1;
            if let Err(e) = core.replay_bytes(view.payload) {
                if recovered.rejected < 10 {
                    warn!(lsn = view.lsn.0, error = %e, "a journal record contradicts the state; skipped");
                }
                recovered.rejected += 1;
            }
        }
    })
    .await
    .map_err(|e| RecoveryError::Wal { dir: dir.to_path_buf(), reason: e.to_string() })?;
    if let Some(reason) = unreadable {
        let _ = journal.close().await;
        return Err(RecoveryError::Snapshot {
            dir: dir.to_path_buf(),
            reason,
        });
    }
    recovered.damage = report.damage.as_ref().map(|d| format!("{d:?}"));
    recovered.replayed = recovered.snapshot || recovered.records > 0;
    Ok((journal, recovered))
}
