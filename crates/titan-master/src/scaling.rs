//! The shard's recent scaling decisions (spawns and retirements), kept for STATS in a bounded ring,
//! and how STATS merges every shard's rings into the most recent few overall.

use std::cell::RefCell;
use std::collections::VecDeque;

use titan_proto::message::client::ScalingEvent;

/// Scaling decisions STATS shows (the most recent, all shards together); also what each shard
/// keeps.
pub const SCALING_EVENTS_SHOWN: usize = 32;

/// One shard's ring of recent decisions.
#[derive(Default)]
pub struct ScalingLog {
    events: RefCell<VecDeque<ScalingEvent>>,
}

impl ScalingLog {
    /// Keeps `event`, forgetting the oldest when the ring is full.
    pub fn record(&self, event: ScalingEvent) {
        let mut events = self.events.borrow_mut();
        if events.len() == SCALING_EVENTS_SHOWN {
            events.pop_front();
        }
        events.push_back(event);
    }

    /// The decisions kept, oldest first.
    pub fn recent(&self) -> Vec<ScalingEvent> {
        self.events.borrow().iter().cloned().collect()
    }
}

/// Every shard's decisions together: the most recent [`SCALING_EVENTS_SHOWN`], oldest first.
pub fn most_recent(mut events: Vec<ScalingEvent>) -> Vec<ScalingEvent> {
    events.sort_by_key(|e| e.at_us);
    let keep_from = events.len().saturating_sub(SCALING_EVENTS_SHOWN);
    events.drain(..keep_from);
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at_us: u64) -> ScalingEvent {
        ScalingEvent {
            at_us,
            action: titan_proto::message::client::ScalingAction::Spawn,
            worker: 1,
            worker_port: None,
            reason: String::new(),
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_decisions() {
        let log = ScalingLog::default();
        for at in 0..(SCALING_EVENTS_SHOWN as u64 + 5) {
            log.record(event(at));
        }
        let kept = log.recent();
        assert_eq!(kept.len(), SCALING_EVENTS_SHOWN);
        assert_eq!(kept[0].at_us, 5);
    }

    #[test]
    fn shards_decisions_merge_in_time_order_newest_kept() {
        let mut all: Vec<_> = (0..40)
            .map(|i| event(if i % 2 == 0 { i } else { 100 + i }))
            .collect();
        all.reverse();
        let merged = most_recent(all);
        assert_eq!(merged.len(), SCALING_EVENTS_SHOWN);
        assert!(merged.windows(2).all(|w| w[0].at_us <= w[1].at_us));
        assert_eq!(merged.last().map(|e| e.at_us), Some(139));
    }
}
