//! The storage-fault simulator: the real journal (group commit, flusher, segments, snapshots,
//! recovery) runs on the simulated disk ([`SimDisk`]), driven by one seed.
//!
//! Each seed runs a few epochs. In each, the log is opened (recovered) and checked against the
//! driver's ledger (`model.rs`), producers append records and wait for some of them, a task takes
//! snapshots, operations fail now and then (EIO, ENOSPC), and the power is cut during a random
//! operation (tearing a write in flight) or after a clean close. Between epochs bits may be
//! flipped in the durable files. The property: every acknowledged record comes back with its
//! bytes, or recovery refuses to start with a precise error (`OpenError::Corrupt`, `Gap`) —
//! and only when bits were flipped; never a silent loss, never a record that was not appended.
//! After a refusal, `recover_to_last_good` must open the log and keep what precedes the damage.
//!
//! The one loss the log cannot see is forgiven, and counted: bits flipped inside the commit
//! record of the very last batch make it look exactly like a batch torn by the crash (telling
//! them apart would take a second write per batch; see `docs/decisions/019`), and so do flips in
//! an earlier batch when every batch after it was damaged as well.

pub mod fuzzing;
mod model;

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use self::model::{Model, Rebuilt};
use crate::record::decode;
use crate::storage::sim::Faults;
use crate::storage::{SimDisk, SimStorage};
use crate::{AppendError, CommitError, CommitMode, Journal, Lsn, OpenError, WalConfig};

/// What one seed did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedReport {
    pub epochs: u32,
    pub crashes: u32,
    pub acked: u64,
    pub failed_ops: u64,
    pub flips: u32,
    /// Recoveries refused with a precise error after bits were flipped.
    pub refusals: u32,
    /// Acknowledged records lost to a flip in the last batch's commit (see the module docs).
    pub forgiven: u64,
}

/// Totals over many seeds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub seeds: u64,
    pub epochs: u64,
    pub crashes: u64,
    pub acked: u64,
    pub failed_ops: u64,
    pub flips: u64,
    pub refusals: u64,
    pub forgiven: u64,
}

impl Summary {
    pub fn add(&mut self, r: &SeedReport) {
        self.seeds += 1;
        self.epochs += u64::from(r.epochs);
        self.crashes += u64::from(r.crashes);
        self.acked += r.acked;
        self.failed_ops += r.failed_ops;
        self.flips += u64::from(r.flips);
        self.refusals += u64::from(r.refusals);
        self.forgiven += r.forgiven;
    }
}

const DIR: &str = "/sim/wal/shard-0";
const ASIDE: &str = "/sim/damaged";
/// Epochs (open, work, power cut) per seed.
const EPOCHS: u32 = 4;

fn config(rng: &mut SmallRng) -> WalConfig {
    WalConfig {
        segment_bytes: rng.gen_range(4..=16) * 4096,
        max_record_bytes: 2048,
        max_batch_bytes: rng.gen_range(1..=4) * 4096,
        max_pending_bytes: 256 << 10,
        batch_window: std::time::Duration::ZERO,
        snapshots_retained: 2,
        commit_mode: if rng.gen_bool(0.1) {
            CommitMode::PerRecord
        } else {
            CommitMode::Group
        },
        preallocate: rng.gen_bool(0.5),
        recover_to_last_good: None,
    }
}

/// Runs one seed; `Err` describes a broken property (and names the seed).
pub async fn run_seed(seed: u64) -> Result<SeedReport, String> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let disk = SimDisk::new(seed ^ 0x5eed_d15c, Faults::default());
    let config = config(&mut rng);
    let mut model = Model::default();
    let mut report = SeedReport::default();
    let mut forgiven = BTreeSet::new();
    let mut flipped = false;
    for _ in 0..EPOCHS {
        report.epochs += 1;
        disk.power_cut(Faults::default());
        let mut rebuilt = Rebuilt::default();
        let opened = Journal::open_on(disk.storage(), Path::new(DIR), config.clone(), |r| {
            rebuilt.on(r)
        })
        .await;
        let journal = match opened {
            Ok((journal, _)) => journal,
            Err(e) if flipped && is_precise(&e) => {
                report.refusals += 1;
                recover_anyway(&disk, &config, &model, &e).await?;
                break;
            }
            Err(e) => return Err(format!("seed {seed}: recovery refused: {e}")),
        };
        let checked = model.check_and_adopt(&rebuilt, &forgiven);
        report.forgiven += forgiven.len() as u64;
        forgiven.clear();
        if let Err(e) = checked {
            return Err(format!("seed {seed}, epoch {}: {e}", report.epochs));
        }
        let faults = epoch_faults(&mut rng);
        disk.set_faults(faults);
        let model_cell = Rc::new(RefCell::new(std::mem::take(&mut model)));
        let journal = Rc::new(journal);
        work(&journal, &model_cell, &disk, &mut rng).await;
        let journal = Rc::try_unwrap(journal).map_err(|_| "journal still shared")?;
        // After a power cut every operation fails, so this ends the flusher quickly.
        let _ = journal.close().await;
        model = Rc::try_unwrap(model_cell)
            .map_err(|_| "model still shared")?
            .into_inner();
        report.crashes += u32::from(disk.crashed());
        report.failed_ops = disk.failures();
        disk.power_cut(Faults::default());
        let trace = std::env::var_os("TITAN_SIM_TRACE").is_some();
        if trace {
            eprintln!(
                "seed {seed} epoch {}: {faults:?} crashed {} ops {} acked {} last {:?}",
                report.epochs,
                disk.crashed(),
                disk.ops(),
                model.acked.len(),
                model.acked.last()
            );
        }
        if rng.gen_bool(0.2) {
            let (count, hit) = flip(&disk, &mut rng);
            if trace {
                eprintln!("  flipped {count}, forgiven {hit:?}");
            }
            report.flips += count;
            flipped |= count > 0;
            forgiven = hit;
        }
    }
    report.acked = model.acked.len() as u64;
    Ok(report)
}

fn epoch_faults(rng: &mut SmallRng) -> Faults {
    Faults {
        crash_at_op: rng.gen_bool(0.85).then(|| rng.gen_range(1..400)),
        fail_rate: if rng.gen_bool(0.5) {
            0.0
        } else {
            rng.gen_range(0.001..0.03)
        },
        max_yields: rng.gen_range(0..=3),
    }
}

fn is_precise(e: &OpenError) -> bool {
    matches!(e, OpenError::Corrupt { .. } | OpenError::Gap { .. })
}

/// Producers append and wait, a snapshot task snapshots now and then, until the work is done,
/// the journal fails, or the power is cut.
async fn work(
    journal: &Rc<Journal<SimStorage>>,
    model: &Rc<RefCell<Model>>,
    disk: &SimDisk,
    rng: &mut SmallRng,
) {
    let producers = rng.gen_range(1..=3);
    let records = rng.gen_range(20..200);
    let mut tasks = Vec::new();
    for p in 0..producers {
        let (journal, model, disk) = (journal.clone(), model.clone(), disk.clone());
        let seed = rng.gen::<u64>() ^ p;
        tasks.push(glommio::spawn_local(async move {
            produce(&journal, &model, &disk, seed, records).await
        }));
    }
    let done = Rc::new(Cell::new(false));
    let every = rng.gen_range(10..80);
    let (j, m, d, stop) = (journal.clone(), model.clone(), disk.clone(), done.clone());
    let snapshotter =
        glommio::spawn_local(async move { snapshots(&j, &m, &d, &stop, every).await });
    for task in tasks {
        task.await;
    }
    done.set(true);
    snapshotter.await;
}

async fn produce(
    journal: &Journal<SimStorage>,
    model: &RefCell<Model>,
    disk: &SimDisk,
    seed: u64,
    records: u32,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut waiting = Vec::new();
    for _ in 0..records {
        if disk.crashed() {
            return;
        }
        let mut payload = vec![0u8; rng.gen_range(0..1500)];
        rng.fill(&mut payload[..]);
        match journal.append(1, &payload) {
            Ok(lsn) => {
                model.borrow_mut().appended.insert(lsn.0, payload);
                waiting.push(lsn);
            }
            Err(AppendError::Backpressure { .. }) | Err(AppendError::Recovering { .. }) => {}
            Err(_) => return,
        }
        if rng.gen_bool(0.3) || waiting.len() > 16 {
            settle(journal, model, &mut waiting).await;
        }
        futures_lite::future::yield_now().await;
    }
    settle(journal, model, &mut waiting).await;
}

/// Waits for every record in `waiting` and books its outcome.
async fn settle(journal: &Journal<SimStorage>, model: &RefCell<Model>, waiting: &mut Vec<Lsn>) {
    for lsn in waiting.drain(..) {
        let outcome = journal.wait_durable(lsn).await;
        let mut model = model.borrow_mut();
        match outcome {
            Ok(()) => {
                model.acked.insert(lsn.0);
            }
            Err(CommitError::BatchFailed { .. }) => {
                model.failed.insert(lsn.0);
            }
            Err(_) => {}
        }
    }
}

async fn snapshots(
    journal: &Journal<SimStorage>,
    model: &RefCell<Model>,
    disk: &SimDisk,
    done: &Cell<bool>,
    every: u64,
) {
    let mut taken = 0;
    while !disk.crashed() && !done.get() {
        let last = journal.last_lsn();
        if last.0 >= taken + every {
            let failed = |lsn| matches!(journal.outcome(Lsn(lsn)), Some(Err(_)));
            let (state, held) = model.borrow().state_upto(last, failed);
            if journal.write_snapshot(last, &state).await.is_ok() {
                // What the snapshot holds is durable now, with or without its records.
                model.borrow_mut().acked.extend(held);
            }
            taken = last.0;
        }
        if matches!(journal.health(), crate::Health::Failed(_)) {
            return;
        }
        futures_lite::future::yield_now().await;
    }
}

/// Flips bits in segments and snapshots; returns how many, and the records whose loss the log
/// cannot see: those of the last batches of the newest segment when every one of them was hit
/// (a flip in the last batch's commit reads as a torn write; one in an earlier batch is only
/// taken for a tear when every later batch was damaged too, destroying the evidence).
fn flip(disk: &SimDisk, rng: &mut SmallRng) -> (u32, BTreeSet<u64>) {
    let newest = disk
        .durable_names(Path::new(DIR))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .max();
    let batches = newest
        .as_ref()
        .and_then(|p| disk.durable_file(p))
        .map_or_else(Vec::new, |image| batches(&image));
    let count = rng.gen_range(1..=3);
    let flips = disk.flip_bits(count, |p| {
        p.extension().is_some_and(|e| e == "wal" || e == "snap")
    });
    let hit = |&(start, end, _): &(u64, u64, Vec<u64>)| {
        flips
            .iter()
            .any(|(p, at)| Some(p) == newest.as_ref() && (start..end).contains(at))
    };
    let forgiven = batches
        .iter()
        .rev()
        .take_while(|b| hit(b))
        .flat_map(|(_, _, lsns)| lsns.iter().copied())
        .collect();
    (flips.len() as u32, forgiven)
}

/// The whole batches of a segment image: byte range and sequence numbers of each.
fn batches(image: &[u8]) -> Vec<(u64, u64, Vec<u64>)> {
    let mut out = Vec::new();
    let (mut pos, mut start, mut lsns) = (0, 0, Vec::new());
    while let Ok(d) = decode(&image[pos..], usize::MAX >> 1) {
        lsns.push(d.record.lsn.0);
        pos += d.encoded_len;
        if d.place.commit {
            out.push((start as u64, pos as u64, std::mem::take(&mut lsns)));
            start = pos;
        }
    }
    out
}

/// After a refusal, the operator's way out must work: the log opens with `recover_to_last_good`,
/// keeps copies, and every acknowledged record up to the last good one is there.
async fn recover_anyway(
    disk: &SimDisk,
    config: &WalConfig,
    model: &Model,
    refusal: &OpenError,
) -> Result<(), String> {
    let OpenError::Corrupt { last_good, .. } = refusal else {
        return Ok(());
    };
    let config = WalConfig {
        recover_to_last_good: Some(PathBuf::from(ASIDE)),
        ..config.clone()
    };
    let mut rebuilt = Rebuilt::default();
    let (journal, report) =
        Journal::open_on(disk.storage(), Path::new(DIR), config, |r| rebuilt.on(r))
            .await
            .map_err(|e| format!("--recover-to-last-good did not open the log: {e}"))?;
    let _ = journal.close().await;
    if report.copies.is_empty() {
        return Err("--recover-to-last-good cut the log without keeping a copy".into());
    }
    let back: BTreeSet<u64> = rebuilt.records.iter().map(|(lsn, _)| *lsn).collect();
    let lost: Vec<_> = model
        .acked
        .range(..=last_good.0)
        .filter(|lsn| !back.contains(lsn))
        .collect();
    if !lost.is_empty() {
        return Err(format!(
            "--recover-to-last-good lost records before {last_good}: {lost:?}"
        ));
    }
    Ok(())
}
