//! Memory per queued job: a counting global allocator measures the live heap of a core holding
//! 1,000,000 queued NOOP one-offs (no workers, every journal record persisted and drained).
//! Target: at most 256 bytes per job (HyperQueue measured ~390 bytes on this machine).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use titan::core::{
    Core, CoreConfig, Input, JobKind, JobSpec, JobState, LoadTable, ShardInfo, Submission, Time,
};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call forwards to the system allocator unchanged; the counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const JOBS: usize = 1_000_000;
const TARGET_BYTES_PER_JOB: usize = 256;

#[test]
fn a_million_queued_noop_jobs_fit_in_256_bytes_each() {
    let load = Arc::new(LoadTable::new());
    let mut core = Core::new(CoreConfig::default(), ShardInfo::SINGLE, load, 1);
    let spec = JobSpec::new(JobKind::Noop);
    let now = Time::from_millis(1_700_000_000_000);
    let before = LIVE.load(Ordering::Relaxed);
    for token in 0..JOBS as u64 {
        core.handle(
            now,
            Input::Submit {
                token,
                submission: Submission::OneOff(spec.clone()),
            },
        );
        core.handle(
            now,
            Input::Persisted {
                lsn: core.last_lsn(),
            },
        );
        for output in core.drain_outputs() {
            drop(output);
        }
    }
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(core.stats().count(JobState::Queued), JOBS);
    let per_job = (after - before) as usize / JOBS;
    println!(
        "live heap per queued NOOP job: {per_job} bytes ({} MB total)",
        (after - before) / 1_000_000
    );
    assert!(
        per_job <= TARGET_BYTES_PER_JOB,
        "{per_job} bytes per queued job"
    );
}
