//! The stall rule: how long a frame in progress may go without bytes before the connection is
//! closed, so a peer cannot pin receive-buffer memory by sending a frame slowly. The rule is one
//! value ([`ProgressRule`]) computed from times passed in; changing the rule (the trust issue
//! turns it into a minimum byte rate) changes this file only.

use std::time::{Duration, Instant};

use super::ConnError;

/// What a peer sending a frame must keep up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressRule {
    /// No rule: the peer is trusted to finish its frames (a client waiting on its server).
    Unlimited,
    /// A partial frame that receives no byte for this long closes the connection. A connection
    /// idle between frames is left alone: connections are long-lived.
    NoProgressFor(Duration),
}

/// The progress of the bytes a connection receives, judged by its rule.
#[derive(Debug)]
pub struct Pacing {
    rule: ProgressRule,
    last_bytes_at: Option<Instant>,
}

impl Pacing {
    pub fn new(rule: ProgressRule) -> Pacing {
        Pacing {
            rule,
            last_bytes_at: None,
        }
    }

    /// Bytes arrived at `now`.
    pub fn on_bytes(&mut self, now: Instant) {
        self.last_bytes_at = Some(now);
    }

    /// When the connection must close unless more bytes arrive first; `None` while no frame is
    /// in progress (`partial` false) or the rule sets no limit.
    pub fn deadline(&self, partial: bool) -> Option<Instant> {
        match self.rule {
            ProgressRule::Unlimited => None,
            ProgressRule::NoProgressFor(limit) => {
                let since = self.last_bytes_at.filter(|_| partial)?;
                Some(since + limit)
            }
        }
    }

    /// `Err(Stalled)` once the deadline has passed at `now`.
    pub fn check(&self, partial: bool, now: Instant) -> Result<(), ConnError> {
        match (self.deadline(partial), self.rule, self.last_bytes_at) {
            (Some(deadline), ProgressRule::NoProgressFor(limit), Some(last)) if now >= deadline => {
                Err(ConnError::Stalled {
                    silent_ms: millis(now.duration_since(last)),
                    limit_ms: millis(limit),
                })
            }
            _ => Ok(()),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    #[test]
    fn a_partial_frame_must_progress_within_the_limit() {
        let t0 = Instant::now();
        let mut pacing = Pacing::new(ProgressRule::NoProgressFor(LIMIT));
        pacing.on_bytes(t0);
        assert_eq!(pacing.deadline(true), Some(t0 + LIMIT));
        assert_eq!(
            pacing.check(true, t0 + LIMIT - Duration::from_millis(1)),
            Ok(())
        );
        assert_eq!(
            pacing.check(true, t0 + LIMIT),
            Err(ConnError::Stalled {
                silent_ms: 10_000,
                limit_ms: 10_000
            })
        );
        // Each arrival of bytes moves the deadline.
        pacing.on_bytes(t0 + Duration::from_secs(9));
        assert_eq!(pacing.check(true, t0 + LIMIT), Ok(()));
        assert_eq!(pacing.deadline(true), Some(t0 + Duration::from_secs(19)));
    }

    #[test]
    fn idle_between_frames_and_unlimited_never_stall() {
        let t0 = Instant::now();
        let mut pacing = Pacing::new(ProgressRule::NoProgressFor(LIMIT));
        assert_eq!(pacing.deadline(true), None, "no byte yet");
        pacing.on_bytes(t0);
        assert_eq!(pacing.deadline(false), None);
        assert_eq!(pacing.check(false, t0 + 100 * LIMIT), Ok(()));
        let mut unlimited = Pacing::new(ProgressRule::Unlimited);
        unlimited.on_bytes(t0);
        assert_eq!(unlimited.deadline(true), None);
        assert_eq!(unlimited.check(true, t0 + 100 * LIMIT), Ok(()));
    }
}
