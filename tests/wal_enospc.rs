//! A disk that fills up: an 8 MiB ext4 image, loop-mounted, is written until ENOSPC.
//!
//! What must hold: every waiter of a failed batch gets the error; the durable watermark never
//! passes a record that is not on disk; once space is freed, appends are acknowledged again; and
//! after unmount and remount, recovery returns exactly the acknowledged records. "Exactly" is
//! right here, not "at least": the journal cuts a failed batch off the segment before it accepts
//! more appends, so a record that was reported failed cannot reappear. (If that cut itself failed,
//! the journal would report itself failed and the test would say so.)

mod wal_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rand::Rng;
use titan::wal::{AppendError, CommitError, Health, Journal, Lsn, WalConfig};
use wal_support::*;

/// A loop-mounted ext4 image; unmounted and deleted on drop, whatever happened.
struct LoopMount {
    image: PathBuf,
    mount: PathBuf,
    mounted: bool,
}

impl LoopMount {
    fn create(name: &str, size: &str) -> Result<LoopMount, String> {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let image = base.join(format!("{name}-{}.img", std::process::id()));
        let mount = base.join(format!("{name}-{}.mnt", std::process::id()));
        let mut guard = LoopMount {
            image,
            mount,
            mounted: false,
        };
        std::fs::create_dir_all(&guard.mount).map_err(|e| format!("mkdir: {e}"))?;
        sh("truncate", &["-s", size, path_str(&guard.image)])?;
        sh("mkfs.ext4", &["-q", "-F", path_str(&guard.image)])?;
        sh(
            "mount",
            &["-o", "loop", path_str(&guard.image), path_str(&guard.mount)],
        )?;
        guard.mounted = true;
        Ok(guard)
    }

    fn unmount(&mut self) -> Result<(), String> {
        if self.mounted {
            sh("umount", &[path_str(&self.mount)])?;
            self.mounted = false;
        }
        Ok(())
    }

    fn remount(&mut self) -> Result<(), String> {
        self.unmount()?;
        sh(
            "mount",
            &["-o", "loop", path_str(&self.image), path_str(&self.mount)],
        )?;
        self.mounted = true;
        Ok(())
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        if self.mounted && self.unmount().is_err() {
            let _ = sh("umount", &["-l", path_str(&self.mount)]);
        }
        let _ = std::fs::remove_dir(&self.mount);
        let _ = std::fs::remove_file(&self.image);
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn sh(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// What the producer learned about each record it appended.
#[derive(Default)]
struct Ledger {
    acked: Vec<Rec>,
    failed: Vec<Rec>,
    refused: usize,
    failed_batches: usize,
}

fn config() -> WalConfig {
    WalConfig {
        segment_bytes: 1 << 20,
        max_record_bytes: 4 << 10,
        max_batch_bytes: 64 << 10,
        ..WalConfig::default()
    }
}

/// Appends `n` records, waits for the last, and sorts each record into acked or failed.
async fn round(journal: &Journal, rng: &mut rand::rngs::SmallRng, n: usize, ledger: &mut Ledger) {
    let mut appended = Vec::new();
    for _ in 0..n {
        let mut payload = vec![0u8; rng.gen_range(500..1500)];
        rng.fill(&mut payload[..]);
        match journal.append(3, &payload) {
            Ok(lsn) => appended.push(Rec {
                lsn: lsn.0,
                kind: 3,
                payload,
            }),
            Err(AppendError::Recovering { .. }) => ledger.refused += 1,
            Err(e) => panic!("unexpected append error: {e}"),
        }
    }
    let Some(last) = appended.last() else { return };
    let result = journal.wait_durable(Lsn(last.lsn)).await;
    if let Err(CommitError::BatchFailed { first, cause, .. }) = &result {
        ledger.failed_batches += 1;
        assert!(cause.is_no_space(), "expected ENOSPC, got {cause}");
        // Nothing was appended since the failure (appends are refused while recovering), so no
        // later batch can have moved the watermark: it must sit below the failed range.
        assert!(
            journal.durable_lsn() < *first,
            "watermark covers a failed record"
        );
    }
    for rec in appended {
        match journal.outcome(Lsn(rec.lsn)) {
            Some(Ok(())) => ledger.acked.push(rec),
            Some(Err(CommitError::BatchFailed { .. })) => ledger.failed.push(rec),
            other => panic!("record {} has outcome {other:?}", rec.lsn),
        }
    }
}

/// Waits (yielding to the flusher) until the journal has restored its tail after a failure.
async fn until_healthy(journal: &Journal) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match journal.health() {
            Health::Healthy => return,
            Health::Failed(cause) => panic!("journal could not restore its tail: {cause}"),
            Health::Recovering(_) => {}
        }
        assert!(Instant::now() < deadline, "journal still recovering");
        glommio::yield_if_needed().await;
        futures_lite::future::yield_now().await;
    }
}

#[test]
fn full_disk_fails_batches_and_recovery_returns_exactly_the_acknowledged() {
    init_tracing();
    let mut disk = match LoopMount::create("wal-enospc", "8M") {
        Ok(disk) => disk,
        Err(reason) => {
            cannot_set_up(&format!("a loop-mounted ext4 image: {reason}"));
            return;
        }
    };
    let dir = disk.mount.join("wal/shard-0");
    let ballast = disk.mount.join("ballast");
    std::fs::write(&ballast, vec![0x5au8; 1 << 20]).expect("ballast");
    let mut rng = rng("full_disk_fails_batches_and_recovery_returns_exactly_the_acknowledged");
    let ledger = run(|| async {
        let (journal, _, _) = open(&dir, config()).await.expect("open");
        let mut ledger = Ledger::default();
        // Fill the disk, and keep going a few rounds after the first failure.
        let mut rounds_after_full = 0;
        for _ in 0..2000 {
            round(&journal, &mut rng, 40, &mut ledger).await;
            if ledger.failed_batches > 0 {
                until_healthy(&journal).await;
                rounds_after_full += 1;
                if rounds_after_full == 4 {
                    break;
                }
            }
        }
        assert!(ledger.failed_batches > 0, "the disk never filled up");
        let acked_when_full = ledger.acked.len();
        // Free space: appends are acknowledged again.
        std::fs::remove_file(&ballast).expect("remove ballast");
        until_healthy(&journal).await;
        let failed_before = ledger.failed_batches;
        for _ in 0..5 {
            round(&journal, &mut rng, 40, &mut ledger).await;
        }
        assert_eq!(
            ledger.failed_batches, failed_before,
            "writes fail after space was freed"
        );
        assert_eq!(ledger.acked.len(), acked_when_full + 200);
        println!(
            "acked {}, failed {} in {} batches, refused {}",
            ledger.acked.len(),
            ledger.failed.len(),
            ledger.failed_batches,
            ledger.refused
        );
        journal.close().await.expect("close");
        ledger
    });
    disk.remount().expect("remount");
    run(|| async {
        let (journal, replay, report) = open(&dir, config()).await.expect("reopen");
        // Close explicitly: a dropped glommio file is closed by the executor's next IO cycle,
        // which never comes once the executor ends, and an open file keeps the disk busy.
        journal.close().await.expect("close");
        assert_eq!(report.damage, None);
        assert_eq!(
            replay.records, ledger.acked,
            "recovered exactly the acknowledged records"
        );
        for failed in &ledger.failed {
            assert!(
                replay
                    .records
                    .binary_search_by_key(&failed.lsn, |r| r.lsn)
                    .is_err(),
                "failed record {} came back",
                failed.lsn
            );
        }
    });
    disk.unmount().expect("unmount");
}
