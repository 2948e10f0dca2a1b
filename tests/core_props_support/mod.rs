//! Comparisons between a core that never stopped and one rebuilt from its journal or a snapshot,
//! for the property tests in `core_props.rs`.

use super::*;

/// The observable state of `job` must agree between the core that never stopped and a recovered
/// one (where attempts that were running wait for their workers).
pub(crate) fn same_job(live: &Core, back: &Core, job: JobId) -> Result<(), TestCaseError> {
    let a = live.job(job).expect("retained");
    let b = back
        .job(job)
        .ok_or_else(|| TestCaseError::fail(format!("{job} lost")))?;
    prop_assert_eq!(
        (
            a.state,
            a.attempts,
            a.failures,
            a.crashes,
            a.ready,
            a.started_at
        ),
        (
            b.state,
            b.attempts,
            b.failures,
            b.crashes,
            b.ready,
            b.started_at
        ),
        "{}",
        job
    );
    prop_assert_eq!(
        (a.last_error, a.submitted, &a.label, &a.deps),
        (b.last_error, b.submitted, &b.label, &b.deps)
    );
    prop_assert_eq!(b.adopting, a.state == JobState::Running, "{}", job);
    Ok(())
}

/// Whole-core agreement: every job, counts, queues in order, the DLQ, names, the next DagId.
pub(crate) fn same_core(live: &Core, back: &Core, jobs: &[JobId]) -> Result<(), TestCaseError> {
    for &job in jobs {
        same_job(live, back, job)?;
    }
    let (a, b) = (live.stats(), back.stats());
    let totals = |t: Totals| {
        (
            t.completed,
            t.dead,
            t.cancelled,
            t.upstream_failed,
            t.requeued_on_loss,
        )
    };
    prop_assert_eq!(
        (a.by_state, a.dlq, a.history),
        (b.by_state, b.dlq, b.history)
    );
    prop_assert_eq!(totals(a.totals), totals(b.totals));
    prop_assert!(live.dead_letters().eq(back.dead_letters()));
    for skill in ["GENERAL", "GPU"] {
        prop_assert_eq!(
            live.queued(skill, usize::MAX),
            back.queued(skill, usize::MAX)
        );
    }
    for i in 0..6 {
        let name = format!("J{i}");
        prop_assert_eq!(live.lookup_name(&name), back.lookup_name(&name));
    }
    prop_assert_eq!(live.next_dag_k() + SKIP, back.next_dag_k());
    Ok(())
}

/// Applies `ops`, taking a snapshot (through its bytes) after `cut` of them; returns it with the
/// number of journal records it covers.
pub(crate) fn run_with_snapshot(
    d: &mut Driver,
    ops: Vec<Op>,
    cut: usize,
) -> Result<(Snapshot, usize), TestCaseError> {
    let mut snap = None;
    for (i, op) in ops.into_iter().enumerate() {
        if i == cut {
            snap = Some((d.core.snapshot(), d.journal.len()));
        }
        d.apply(op)?;
    }
    let (snap, covered) = snap.unwrap_or_else(|| (d.core.snapshot(), d.journal.len()));
    let bytes = snap
        .encode()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back = Snapshot::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, &snap);
    Ok((back, covered))
}

pub(crate) fn replay_all(core: &mut Core, records: &[Record]) -> Result<(), TestCaseError> {
    for r in records {
        if let Err(e) = core.replay(r.clone()) {
            prop_assert!(false, "replay of {:?} failed: {}", r, e);
        }
    }
    Ok(())
}
