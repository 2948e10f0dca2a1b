//! The shared worker load table: one fixed array of atomic slots that every shard reads and reserves
//! from without a lock, plus the few global counters placement and scaling need.
//!
//! A slot packs one worker's state into a single `AtomicU64` — `running` (bits 0..16), `capacity`
//! (16..32), `generation` (32..48) and an `alive` bit (48) — so a reservation is one
//! compare-and-swap that checks "same worker generation, alive, running < capacity" atomically.
//! Every operation names the [`WorkerId`] it means; an operation for an older generation than the
//! slot holds is a no-op, which is what lets the shell reuse slots while stale reports are in flight.
//!
//! Liveness transitions (`activate`, `deactivate`, `try_retire`) happen exactly once per worker
//! whichever shard performs them first, and keep the global `alive` counter exact. The `hungry`
//! mask implements cross-shard wake-ups: a shard that could not place a job sets its bit *before*
//! its last placement attempt; a shard that frees capacity takes the other shards' bits and tells
//! the shell to wake them (`Output::Wake`), so no wake-up is lost.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};

use super::ids::{Time, WorkerId};
use super::limits::{LOAD_TABLE_SLOTS, MAX_SHARDS, MAX_WORKER_CAPACITY};

const RUNNING_MASK: u64 = 0xffff;
const CAPACITY_SHIFT: u32 = 16;
const GENERATION_SHIFT: u32 = 32;
const ALIVE_BIT: u64 = 1 << 48;
const SERVICES_SHIFT: u32 = 49;
const SERVICES_MASK: u64 = 0x7fff;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SlotState(u64);

impl SlotState {
    fn new(generation: u16, capacity: u32, running: u32, alive: bool) -> SlotState {
        let mut bits = u64::from(running) & RUNNING_MASK;
        bits |= (u64::from(capacity) & 0xffff) << CAPACITY_SHIFT;
        bits |= u64::from(generation) << GENERATION_SHIFT;
        if alive {
            bits |= ALIVE_BIT;
        }
        SlotState(bits)
    }
    fn running(self) -> u32 {
        (self.0 & RUNNING_MASK) as u32
    }
    fn capacity(self) -> u32 {
        (self.0 >> CAPACITY_SHIFT & 0xffff) as u32
    }
    fn generation(self) -> u16 {
        (self.0 >> GENERATION_SHIFT & 0xffff) as u16
    }
    fn alive(self) -> bool {
        self.0 & ALIVE_BIT != 0
    }
    fn services(self) -> u32 {
        (self.0 >> SERVICES_SHIFT & SERVICES_MASK) as u32
    }
    fn with_running(self, running: u32) -> SlotState {
        SlotState(self.0 & !RUNNING_MASK | u64::from(running))
    }
    fn with_services(self, services: u32) -> SlotState {
        let bits = u64::from(services).min(SERVICES_MASK) << SERVICES_SHIFT;
        SlotState(self.0 & !(SERVICES_MASK << SERVICES_SHIFT) | bits)
    }
    /// One more reservation (and one more service if it is one).
    fn plus(self, service: bool) -> SlotState {
        let s = self.with_running(self.running() + 1);
        if service {
            s.with_services(self.services() + 1)
        } else {
            s
        }
    }

    /// One reservation fewer (and one service fewer if it was one).
    fn minus(self, service: bool) -> SlotState {
        let s = self.with_running(self.running() - 1);
        if service {
            s.with_services(self.services().saturating_sub(1))
        } else {
            s
        }
    }
    fn with_alive(self, alive: bool) -> SlotState {
        SlotState(if alive {
            self.0 | ALIVE_BIT
        } else {
            self.0 & !ALIVE_BIT
        })
    }
}

/// Reservations a worker takes: its capacity, plus `extra` prefetched attempts while no service
/// holds one of its slots.
fn limit(capacity: u32, services: u32, extra: u32) -> u32 {
    let extra = if services == 0 { extra } else { 0 };
    capacity.saturating_add(extra).min(RUNNING_MASK as u32)
}

/// Whether generation `a` is newer than `b` on the 16-bit wrapping circle.
fn newer(a: u16, b: u16) -> bool {
    (a.wrapping_sub(b) as i16) > 0
}

/// One slot, padded to a cache line so shards reserving different workers do not contend.
#[repr(align(64))]
#[derive(Default)]
struct LoadSlot {
    state: AtomicU64,
    last_active_us: AtomicU64,
    /// When an attempt that ran a process last ended on the worker (for prefetching).
    last_turnover_us: AtomicU64,
}

/// A worker's load as seen by placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    /// Attempts reserved on the worker, summed over all shards.
    pub running: u32,
    /// How many of them are services (which hold a slot for as long as they live).
    pub services: u32,
    /// Concurrent attempts the worker accepts.
    pub capacity: u32,
    /// Whether the worker may receive new work.
    pub alive: bool,
}

impl Load {
    /// Reservations it takes with `extra` prefetched attempts allowed (see `LoadTable::reserve`).
    pub fn limit(&self, extra: u32) -> u32 {
        limit(self.capacity, self.services, extra)
    }
}

/// The lock-free load table shared (via `Arc`) by every shard's core.
pub struct LoadTable {
    slots: Box<[LoadSlot]>,
    alive: AtomicU32,
    spawning: AtomicU32,
    hungry: AtomicU64,
}

impl Default for LoadTable {
    fn default() -> LoadTable {
        LoadTable::new()
    }
}

impl std::fmt::Debug for LoadTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadTable")
            .field("alive", &self.alive_workers())
            .field("spawning", &self.spawning())
            .field("running_total", &self.running_total())
            .finish()
    }
}

impl LoadTable {
    /// An empty table of [`LOAD_TABLE_SLOTS`] slots.
    pub fn new() -> LoadTable {
        LoadTable {
            slots: (0..LOAD_TABLE_SLOTS).map(|_| LoadSlot::default()).collect(),
            alive: AtomicU32::new(0),
            spawning: AtomicU32::new(0),
            hungry: AtomicU64::new(0),
        }
    }

    fn slot(&self, w: WorkerId) -> &LoadSlot {
        &self.slots[w.slot()]
    }

    /// Applies `f` to the slot's state with compare-and-swap until it succeeds or `f` declines.
    fn update(&self, w: WorkerId, f: impl Fn(SlotState) -> Option<SlotState>) -> Option<SlotState> {
        let slot = self.slot(w);
        let mut cur = SlotState(slot.state.load(SeqCst));
        loop {
            let next = f(cur)?;
            match slot
                .state
                .compare_exchange_weak(cur.0, next.0, SeqCst, SeqCst)
            {
                Ok(_) => return Some(cur),
                Err(actual) => cur = SlotState(actual),
            }
        }
    }

    /// Makes `w` alive with `capacity` (clamped to [`MAX_WORKER_CAPACITY`]). Returns true when this
    /// call performed the transition; a re-registration of the alive worker only updates capacity,
    /// and an older generation than the slot's is ignored.
    pub fn activate(&self, w: WorkerId, capacity: u32, now: Time) -> bool {
        let capacity = capacity.min(MAX_WORKER_CAPACITY);
        let g = w.generation();
        let before = self.update(w, |s| {
            if s.generation() == g && s.alive() {
                Some(SlotState::new(g, capacity, s.running(), true).with_services(s.services()))
            } else if s.generation() == 0 || newer(g, s.generation()) {
                Some(SlotState::new(g, capacity, 0, true))
            } else {
                None
            }
        });
        let Some(before) = before else { return false };
        let transitioned = !(before.generation() == g && before.alive());
        if transitioned {
            if before.alive() {
                // A newer generation replaced a worker nobody declared dead; keep the count exact.
                self.alive.fetch_sub(1, SeqCst);
            }
            self.alive.fetch_add(1, SeqCst);
            self.slot(w).last_active_us.store(now.0, SeqCst);
        }
        transitioned
    }

    /// Marks `w` dead (no new reservations). Returns true for the one caller that performed it.
    pub fn deactivate(&self, w: WorkerId) -> bool {
        let g = w.generation();
        let done = self
            .update(w, |s| {
                (s.generation() == g && s.alive()).then(|| s.with_alive(false))
            })
            .is_some();
        if done {
            self.alive.fetch_sub(1, SeqCst);
        }
        done
    }

    /// Retires `w` if it is alive, idle (nothing reserved) and not the last alive worker.
    pub fn try_retire(&self, w: WorkerId) -> bool {
        let took = self
            .alive
            .fetch_update(SeqCst, SeqCst, |n| (n > 1).then(|| n - 1))
            .is_ok();
        if !took {
            return false;
        }
        let g = w.generation();
        let done = self
            .update(w, |s| {
                (s.generation() == g && s.alive() && s.running() == 0).then(|| s.with_alive(false))
            })
            .is_some();
        if !done {
            self.alive.fetch_add(1, SeqCst);
        }
        done
    }

    /// Reserves one slot on `w` (for a service if `service`) if it is alive and has room: fewer
    /// than its capacity reserved, or, with no service on it, fewer than capacity plus `extra`
    /// (prefetched attempts). Returns whether it did.
    pub fn reserve(&self, w: WorkerId, extra: u32, service: bool, now: Time) -> bool {
        let g = w.generation();
        let done = self
            .update(w, |s| {
                (s.generation() == g
                    && s.alive()
                    && s.running() < limit(s.capacity(), s.services(), extra))
                .then(|| s.plus(service))
            })
            .is_some();
        if done {
            self.slot(w).last_active_us.fetch_max(now.0, SeqCst);
        }
        done
    }

    /// Reserves one slot on `w` for an attempt it already runs (adoption after a master restart),
    /// even past its capacity: the process exists, so the count must include it. Fails only when
    /// `w` is not this alive generation or the counter is saturated.
    pub fn adopt(&self, w: WorkerId, service: bool, now: Time) -> bool {
        let g = w.generation();
        let done = self
            .update(w, |s| {
                (s.generation() == g && s.alive() && u64::from(s.running()) < RUNNING_MASK)
                    .then(|| s.plus(service))
            })
            .is_some();
        if done {
            self.slot(w).last_active_us.fetch_max(now.0, SeqCst);
        }
        done
    }

    /// Releases one reservation on `w` (alive or not), a service's if `service`; a no-op for a
    /// stale generation.
    pub fn release(&self, w: WorkerId, service: bool, now: Time) {
        let g = w.generation();
        let done = self
            .update(w, |s| {
                (s.generation() == g && s.running() > 0).then(|| s.minus(service))
            })
            .is_some();
        if done {
            self.slot(w).last_active_us.fetch_max(now.0, SeqCst);
        }
    }

    /// Notes that an attempt which ran a process just ended on `w`.
    pub fn note_turnover(&self, w: WorkerId, now: Time) {
        self.slot(w).last_turnover_us.fetch_max(now.0, SeqCst);
    }

    /// When an attempt that ran a process last ended on `w` (`Time(0)`: never).
    pub fn last_turnover(&self, w: WorkerId) -> Time {
        Time(self.slot(w).last_turnover_us.load(SeqCst))
    }

    /// The load of `w`, or `None` when the slot holds another generation.
    pub fn load(&self, w: WorkerId) -> Option<Load> {
        let s = SlotState(self.slot(w).state.load(SeqCst));
        (s.generation() == w.generation()).then(|| Load {
            running: s.running(),
            services: s.services(),
            capacity: s.capacity(),
            alive: s.alive(),
        })
    }

    /// The last time a reservation on `w` began or ended (or it became alive).
    pub fn last_active(&self, w: WorkerId) -> Time {
        Time(self.slot(w).last_active_us.load(SeqCst))
    }

    /// Alive workers, counted exactly by the liveness transitions.
    pub fn alive_workers(&self) -> u32 {
        self.alive.load(SeqCst)
    }

    /// Reservations over all slots (zero when nothing runs anywhere).
    pub fn running_total(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| u64::from(SlotState(s.state.load(SeqCst)).running()))
            .sum()
    }

    /// Services counted over all slots (what the simulator checks returns to zero).
    pub fn services_total(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| u64::from(SlotState(s.state.load(SeqCst)).services()))
            .sum()
    }

    /// Spawn requests in flight (not yet registered, not expired).
    pub fn spawning(&self) -> u32 {
        self.spawning.load(SeqCst)
    }

    /// Counts one more spawn in flight if alive workers plus spawns stay within `max_workers`.
    pub fn try_begin_spawn(&self, max_workers: u32) -> bool {
        self.spawning
            .fetch_update(SeqCst, SeqCst, |n| {
                (self.alive.load(SeqCst) + n < max_workers).then_some(n + 1)
            })
            .is_ok()
    }

    /// Ends one spawn in flight (the child registered, or the request expired).
    pub fn end_spawn(&self) {
        let _ = self
            .spawning
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
    }

    /// Records that `shard` has runnable jobs and no room for them.
    pub fn mark_hungry(&self, shard: u32) {
        debug_assert!(shard < MAX_SHARDS);
        self.hungry.fetch_or(1 << shard, SeqCst);
    }

    /// Takes (clears and returns) the hungry bits of every shard but `shard`.
    pub fn take_hungry_except(&self, shard: u32) -> u64 {
        let others = !(1u64 << shard);
        if self.hungry.load(SeqCst) & others == 0 {
            return 0;
        }
        self.hungry.fetch_and(!others, SeqCst) & others
    }

    /// Clears `shard`'s own hungry bit.
    pub fn clear_hungry(&self, shard: u32) {
        self.hungry.fetch_and(!(1 << shard), SeqCst);
    }
}

/// Assigns [`WorkerId`]s for a shell: the lowest free slot, with that slot's next generation.
#[derive(Debug)]
pub struct WorkerIdAllocator {
    free: BTreeSet<u16>,
    generation: Vec<u16>,
}

impl Default for WorkerIdAllocator {
    fn default() -> WorkerIdAllocator {
        WorkerIdAllocator::new()
    }
}

impl WorkerIdAllocator {
    /// All slots free, generations starting at 1.
    pub fn new() -> WorkerIdAllocator {
        WorkerIdAllocator {
            free: (0..LOAD_TABLE_SLOTS as u16).collect(),
            generation: vec![0; LOAD_TABLE_SLOTS],
        }
    }

    /// A fresh id, or `None` when every slot is taken.
    pub fn allocate(&mut self) -> Option<WorkerId> {
        let slot = self.free.pop_first()?;
        let g = &mut self.generation[usize::from(slot)];
        *g = g.wrapping_add(1).max(1);
        WorkerId::new(slot, *g)
    }

    /// Returns `w`'s slot for reuse (by a later generation).
    pub fn free(&mut self, w: WorkerId) {
        if self.generation.get(w.slot()) == Some(&w.generation()) {
            self.free.insert(w.slot() as u16);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(slot: u16, g: u16) -> WorkerId {
        WorkerId::new(slot, g).unwrap()
    }

    #[test]
    fn reserve_respects_capacity_and_release_frees() {
        let t = LoadTable::new();
        assert!(!t.reserve(w(0, 1), 0, false, Time(1)), "not alive yet");
        assert!(t.activate(w(0, 1), 2, Time(1)));
        assert!(t.reserve(w(0, 1), 0, false, Time(2)) && t.reserve(w(0, 1), 0, false, Time(3)));
        assert!(!t.reserve(w(0, 1), 0, false, Time(4)));
        t.release(w(0, 1), false, Time(5));
        assert_eq!(
            t.load(w(0, 1)),
            Some(Load {
                running: 1,
                services: 0,
                capacity: 2,
                alive: true
            })
        );
        assert_eq!(t.last_active(w(0, 1)), Time(5));
    }

    #[test]
    fn prefetched_reservations_stop_while_a_service_holds_a_slot() {
        let t = LoadTable::new();
        let w = w(0, 1);
        t.activate(w, 1, Time(0));
        assert!(t.reserve(w, 2, false, Time(1)), "within capacity");
        assert!(t.reserve(w, 2, false, Time(1)) && t.reserve(w, 2, false, Time(1)));
        assert!(
            !t.reserve(w, 2, false, Time(1)),
            "capacity 1 + 2 prefetched"
        );
        for _ in 0..3 {
            t.release(w, false, Time(2));
        }
        assert!(t.reserve(w, 0, true, Time(3)), "a service takes the slot");
        assert!(!t.reserve(w, 2, false, Time(3)), "no prefetching behind it");
        // A re-registration keeps the count; the service's end clears it.
        t.activate(w, 1, Time(4));
        assert_eq!(t.load(w).map(|l| (l.running, l.services)), Some((1, 1)));
        t.release(w, true, Time(5));
        assert_eq!(t.load(w).map(|l| (l.running, l.services)), Some((0, 0)));
        assert!(t.reserve(w, 2, false, Time(6)) && t.reserve(w, 2, false, Time(6)));
    }

    #[test]
    fn stale_generations_cannot_touch_a_reused_slot() {
        let t = LoadTable::new();
        t.activate(w(3, 1), 4, Time(0));
        assert!(t.reserve(w(3, 1), 0, false, Time(0)));
        assert!(t.deactivate(w(3, 1)));
        assert!(!t.deactivate(w(3, 1)), "exactly once");
        assert!(t.activate(w(3, 2), 4, Time(0)));
        t.release(w(3, 1), false, Time(0));
        assert!(
            !t.activate(w(3, 1), 4, Time(0)),
            "late duplicate registration of the old worker"
        );
        assert_eq!(t.load(w(3, 2)).unwrap().running, 0);
        assert_eq!(t.load(w(3, 1)), None);
        assert_eq!(t.alive_workers(), 1);
    }

    #[test]
    fn adoption_reserves_past_capacity_but_only_on_the_alive_generation() {
        let t = LoadTable::new();
        assert!(!t.adopt(w(0, 1), false, Time(1)), "not alive yet");
        t.activate(w(0, 1), 1, Time(1));
        assert!(t.reserve(w(0, 1), 0, false, Time(1)));
        assert!(
            t.adopt(w(0, 1), false, Time(2)),
            "the process exists: count it"
        );
        assert_eq!(t.load(w(0, 1)).unwrap().running, 2);
        assert!(
            !t.reserve(w(0, 1), 0, false, Time(3)),
            "still no new placements"
        );
        assert!(!t.adopt(w(0, 2), false, Time(3)), "another generation");
    }

    #[test]
    fn retire_keeps_the_last_worker_and_skips_busy_ones() {
        let t = LoadTable::new();
        t.activate(w(0, 1), 1, Time(0));
        t.activate(w(1, 1), 1, Time(0));
        assert!(t.reserve(w(1, 1), 0, false, Time(0)));
        assert!(!t.try_retire(w(1, 1)), "busy");
        assert_eq!(t.alive_workers(), 2);
        assert!(t.try_retire(w(0, 1)));
        t.release(w(1, 1), false, Time(0));
        assert!(!t.try_retire(w(1, 1)), "last worker");
        assert_eq!(t.alive_workers(), 1);
    }

    #[test]
    fn spawns_are_bounded_with_alive_workers() {
        let t = LoadTable::new();
        t.activate(w(0, 1), 1, Time(0));
        assert!(t.try_begin_spawn(3) && t.try_begin_spawn(3));
        assert!(!t.try_begin_spawn(3));
        t.end_spawn();
        assert!(t.try_begin_spawn(3));
    }

    #[test]
    fn hungry_bits_are_taken_once() {
        let t = LoadTable::new();
        t.mark_hungry(1);
        t.mark_hungry(2);
        assert_eq!(t.take_hungry_except(2), 0b10);
        assert_eq!(t.take_hungry_except(2), 0);
        t.clear_hungry(2);
        assert_eq!(t.take_hungry_except(0), 0);
    }

    #[test]
    fn allocator_hands_out_lowest_slots_with_new_generations() {
        let mut a = WorkerIdAllocator::new();
        let x = a.allocate().unwrap();
        let y = a.allocate().unwrap();
        assert_eq!((x.slot(), y.slot()), (0, 1));
        a.free(x);
        let z = a.allocate().unwrap();
        assert_eq!((z.slot(), z.generation()), (0, 2));
    }

    #[test]
    fn concurrent_reservations_never_exceed_capacity() {
        let t = std::sync::Arc::new(LoadTable::new());
        t.activate(w(0, 1), 7, Time(0));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|_| t.reserve(w(0, 1), 0, false, Time(0)))
                        .count()
                })
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 7);
    }
}
