//! Rate control that holds a target rate over minutes: message `i` is due at `start + i / rate`,
//! so a late wake-up is caught up by the next messages instead of drifting.

use std::time::{Duration, Instant};

pub struct Pacer {
    start: Instant,
    interval: Option<Duration>,
    issued: u64,
}

impl Pacer {
    /// `rate <= 0` means as fast as possible.
    pub fn new(rate: f64) -> Self {
        let interval = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
        Pacer {
            start: Instant::now(),
            interval,
            issued: 0,
        }
    }

    /// How long to wait before the next message may go; zero when it is due (or overdue).
    pub fn wait(&self) -> Duration {
        match self.interval {
            None => Duration::ZERO,
            Some(interval) => {
                let due = self.start + interval.mul_f64(self.issued as f64);
                due.saturating_duration_since(Instant::now())
            }
        }
    }

    /// Records that the next message went out.
    pub fn issue(&mut self) {
        self.issued += 1;
    }

    /// Anchors the schedule at now (after a pause): the messages not sent meanwhile are not
    /// caught up in a burst.
    pub fn restart(&mut self) {
        self.start = Instant::now();
        self.issued = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_anchored_to_the_start_so_sleep_overshoot_does_not_drift() {
        let mut pacer = Pacer::new(1000.0);
        let started = Instant::now();
        while pacer.issued < 300 {
            let wait = pacer.wait();
            if wait.is_zero() {
                pacer.issue();
            } else {
                // Oversleep on purpose: a per-message sleep would drift by this much each time.
                std::thread::sleep(wait + Duration::from_millis(2));
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        assert!(
            (0.29..0.5).contains(&elapsed),
            "300 messages at 1000/s took {elapsed}s"
        );
    }

    #[test]
    fn unlimited_rate_never_waits() {
        let mut pacer = Pacer::new(0.0);
        for _ in 0..1000 {
            assert!(pacer.wait().is_zero());
            pacer.issue();
        }
    }
}
