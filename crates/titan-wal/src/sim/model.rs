//! What the simulator's driver expects of the log: every record it appended, which of them were
//! acknowledged (durable by `wait_durable`, or by a snapshot that covers them), and the check that
//! a recovery returned every acknowledged record, exactly, and nothing that was never appended.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Lsn, Replayed};

/// The driver's ledger of one simulated log.
#[derive(Debug, Default)]
pub(crate) struct Model {
    /// Every record appended and not known to be gone, by sequence number.
    pub appended: BTreeMap<u64, Vec<u8>>,
    pub acked: BTreeSet<u64>,
    pub failed: BTreeSet<u64>,
}

/// A recovery's result, rebuilt: the snapshot's records and the replayed ones after it.
#[derive(Debug, Default)]
pub(crate) struct Rebuilt {
    pub records: Vec<(u64, Vec<u8>)>,
    pub bad_snapshot: Option<String>,
}

impl Rebuilt {
    pub fn on(&mut self, item: Replayed<'_>) {
        match item {
            Replayed::Snapshot { bytes, .. } => match decode_state(bytes) {
                Some(records) => self.records = records,
                None => self.bad_snapshot = Some("snapshot state does not decode".into()),
            },
            Replayed::Record(r) => self.records.push((r.lsn.0, r.payload.to_vec())),
        }
    }
}

/// The state a snapshot holds: `(lsn u64, len u32, payload)` repeated.
pub(crate) fn encode_state<'a>(records: impl Iterator<Item = (u64, &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (lsn, payload) in records {
        out.extend_from_slice(&lsn.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(payload);
    }
    out
}

fn decode_state(mut bytes: &[u8]) -> Option<Vec<(u64, Vec<u8>)>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let lsn = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
        let len = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize;
        out.push((lsn, bytes.get(12..12 + len)?.to_vec()));
        bytes = &bytes[12 + len..];
    }
    Some(out)
}

impl Model {
    /// The state a snapshot covering `covered` holds: every record up to it whose batch has not
    /// failed (`failed` asks the journal; if one in flight fails later, the snapshot fails
    /// with it, since `covered` is then not durable either).
    pub fn state_upto(&self, covered: Lsn, failed: impl Fn(u64) -> bool) -> (Vec<u8>, Vec<u64>) {
        let kept: Vec<(u64, &[u8])> = self
            .appended
            .range(..=covered.0)
            .filter(|(&lsn, _)| !self.failed.contains(&lsn) && !failed(lsn))
            .map(|(&lsn, payload)| (lsn, payload.as_slice()))
            .collect();
        let lsns = kept.iter().map(|(lsn, _)| *lsn).collect();
        (encode_state(kept.into_iter()), lsns)
    }

    /// Checks a recovery against the ledger: every acknowledged record is back with its bytes
    /// (except the `forgiven` ones), in order, and every record back was appended with those
    /// bytes. Then the ledger adopts the recovered log as the truth: records back but never
    /// acknowledged are durable now, and records not back are gone (their numbers may be reused).
    pub fn check_and_adopt(
        &mut self,
        rebuilt: &Rebuilt,
        forgiven: &BTreeSet<u64>,
    ) -> Result<(), String> {
        if let Some(bad) = &rebuilt.bad_snapshot {
            return Err(bad.clone());
        }
        let mut previous = 0;
        let mut back = BTreeSet::new();
        for (lsn, payload) in &rebuilt.records {
            if *lsn <= previous {
                return Err(format!("record {lsn} replayed after {previous}"));
            }
            previous = *lsn;
            match self.appended.get(lsn) {
                Some(expected) if expected == payload => {}
                Some(_) => return Err(format!("record {lsn} came back with other bytes")),
                None => return Err(format!("record {lsn} came back but was never appended")),
            }
            back.insert(*lsn);
        }
        let lost: Vec<u64> = self
            .acked
            .iter()
            .filter(|lsn| !back.contains(lsn) && !forgiven.contains(lsn))
            .copied()
            .collect();
        if !lost.is_empty() {
            return Err(format!(
                "SILENT LOSS: {} acknowledged records missing after recovery: {:?}",
                lost.len(),
                &lost[..lost.len().min(20)]
            ));
        }
        self.appended.retain(|lsn, _| back.contains(lsn));
        self.acked = back;
        self.failed.clear();
        Ok(())
    }
}
