//! Time for one shard's core: the wall clock it reads (made non-decreasing, as the core requires),
//! and the timer that sleeps until the core's next deadline and is woken when an input moves that
//! deadline earlier.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::shard::Shard;
use titan_core::{Input, Time};
use titan_runtime::outbox::Notify;

/// Wall-clock time for the core, in microseconds since the epoch, never going backwards.
#[derive(Default)]
pub struct Clock {
    last: Cell<u64>,
}

impl Clock {
    pub fn now(&self) -> Time {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Time(self.advance(wall))
    }

    /// The later of `wall` and the last reading (a clock stepped back does not move time back).
    fn advance(&self, wall: u64) -> u64 {
        let now = wall.max(self.last.get());
        self.last.set(now);
        now
    }
}

/// The deadline the timer task sleeps towards, and the bell that wakes it.
#[derive(Default)]
pub struct Timer {
    wake: Notify,
    armed: Cell<Option<Time>>,
}

impl Timer {
    /// The timer task is about to sleep towards `deadline` (`None`: until woken).
    pub fn arm(&self, deadline: Option<Time>) {
        self.armed.set(deadline);
    }

    /// The core's next deadline is now `next`: wakes the timer task when that is earlier than
    /// what it sleeps towards (a later one it finds by itself when it wakes).
    pub fn moved(&self, next: Option<Time>) {
        if earlier(next, self.armed.get()) {
            self.armed.set(next);
            self.wake.notify();
        }
    }

    async fn woken(&self) {
        self.wake.wait().await
    }
}

/// Whether deadline `next` comes before `armed` (no deadline is the latest of all).
fn earlier(next: Option<Time>, armed: Option<Time>) -> bool {
    match (next, armed) {
        (Some(n), Some(a)) => n < a,
        (Some(_), None) => true,
        _ => false,
    }
}

impl Shard {
    /// Runs the core's deadlines: sleeps until the next one (or until it moves), then ticks.
    pub async fn run_timer(self: Rc<Shard>) {
        loop {
            let deadline = self.core.borrow_mut().poll_timeout();
            self.timer.arm(deadline);
            match deadline {
                None => self.timer.woken().await,
                Some(deadline) => {
                    let now = self.clock.now();
                    if deadline > now {
                        let wait = Duration::from_micros(deadline.0 - now.0);
                        futures_lite::future::or(glommio::timer::sleep(wait), self.timer.woken())
                            .await;
                        continue;
                    }
                    self.handle(Input::Tick);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_never_goes_back() {
        let clock = Clock::default();
        assert_eq!(clock.advance(100), 100);
        assert_eq!(clock.advance(90), 100);
        assert_eq!(clock.advance(120), 120);
        assert!(clock.now().0 >= 120);
    }

    #[test]
    fn only_an_earlier_deadline_wakes_the_timer() {
        let (t1, t2) = (Some(Time(1)), Some(Time(2)));
        assert!(earlier(t1, t2));
        assert!(!earlier(t2, t1));
        assert!(!earlier(t1, t1));
        assert!(earlier(t1, None));
        assert!(!earlier(None, t1));
        let timer = Timer::default();
        timer.arm(t2);
        timer.moved(t1);
        assert_eq!(timer.armed.get(), t1);
        timer.moved(t2);
        assert_eq!(
            timer.armed.get(),
            t1,
            "a later deadline leaves the timer be"
        );
    }
}
