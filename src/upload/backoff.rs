//! Capped exponential backoff with jitter, for a backend that is down or asks us to slow down.

use std::time::Duration;

use crate::util::rng::SplitMix64;

/// Delays `min · 2^n`, capped at `max`, each drawn uniformly from its upper half ("equal
/// jitter": many cars that lost the same server do not return in lockstep, and no delay is
/// shorter than half its step). A server's `Retry-After` wins when it asks for longer.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
    rng: SplitMix64,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            failures: 0,
            rng: SplitMix64::new(seed),
        }
    }

    /// The delay before the next attempt after one more failure.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let step = self
            .min
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        let jittered = step.mul_f64(0.5 + 0.5 * self.rng.next_f64());
        match retry_after {
            Some(ra) => jittered.max(ra.min(self.max.saturating_mul(4))),
            None => jittered,
        }
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// After a success: the next failure starts from `min` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let (min, max) = (Duration::from_millis(100), Duration::from_millis(1000));
        let mut b = Backoff::new(min, max, 7);
        let mut steps = Vec::new();
        for _ in 0..8 {
            steps.push(b.next_delay(None));
        }
        for (n, d) in steps.iter().enumerate() {
            let step = (min * (1 << n)).min(max);
            assert!(*d >= step / 2 && *d <= step, "{n}: {d:?} vs step {step:?}");
        }
        assert!(steps[7] >= max / 2);
        assert_eq!(b.failures(), 8);
        b.reset();
        assert!(b.next_delay(None) <= min);
    }

    #[test]
    fn retry_after_is_honoured_but_bounded() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2), 1);
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(3600))),
            Duration::from_secs(8)
        );
    }
}
