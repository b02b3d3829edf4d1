//! A fixed-size latency histogram: log-scale buckets, no allocation, for the median and p99 of
//! the time from a frame's arrival to its keep decision over hours of frames.
//!
//! Buckets: one per microsecond below 16 µs, then `SUB` (16) per power of two up to 2^39 µs
//! (about 6 days); a quantile is reported as the middle of its bucket, so it is within
//! 1/(2·`SUB`) ≈ 3% of the true value. Durations past the last bucket count in it. 2.3 KiB,
//! whatever the number of frames.

use std::time::Duration;

/// Buckets per power of two.
const SUB: usize = 16;
/// Bucket rows of `SUB`: the first covers 0..16 µs one by one, each next one a power of two.
const OCTAVES: usize = 36;
const BUCKETS: usize = SUB * OCTAVES;

/// Counts of durations in log-scale buckets (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: [u32; BUCKETS],
    total: u64,
    max_us: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: [0; BUCKETS],
            total: 0,
            max_us: 0,
        }
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.total)
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .field("max_us", &self.max_us)
            .finish()
    }
}

/// Bucket of `us` microseconds: octave = position of the top bit, then `SUB` linear steps in it.
fn bucket(us: u64) -> usize {
    if us < SUB as u64 {
        // Below SUB µs the octaves are narrower than SUB steps: one bucket per microsecond.
        return us as usize;
    }
    let octave = 63 - us.leading_zeros() as usize;
    let step = ((us >> (octave - SUB.trailing_zeros() as usize)) as usize) & (SUB - 1);
    ((octave + 1 - SUB.trailing_zeros() as usize) * SUB + step).min(BUCKETS - 1)
}

/// Lowest microsecond value of bucket `b` and its width.
fn bucket_range(b: usize) -> (u64, u64) {
    if b < SUB {
        return (b as u64, 1);
    }
    let shift = b / SUB - 1;
    let step = (b % SUB) as u64;
    ((SUB as u64 + step) << shift, 1 << shift)
}

impl LatencyHistogram {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one duration.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let b = bucket(us);
        self.counts[b] = self.counts[b].saturating_add(1);
        self.total += 1;
        self.max_us = self.max_us.max(us);
    }

    /// Durations counted.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Longest duration counted.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_us)
    }

    /// The `q` quantile (0..=1), the middle of its bucket (never above the maximum seen); None
    /// when nothing was counted.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        // The rank of the quantile, 1-based: the smallest value with at least q of the counts
        // at or below it.
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                let (low, width) = bucket_range(b);
                let mid = low + width / 2;
                return Some(Duration::from_micros(mid.min(self.max_us)));
            }
        }
        Some(self.max())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_cover_their_values() {
        let mut last = 0;
        for us in (0..100_000u64).chain([1 << 30, 1 << 40, u64::MAX]) {
            let b = bucket(us);
            assert!(b >= last, "{us}");
            last = b;
            if b < BUCKETS - 1 {
                let (low, width) = bucket_range(b);
                assert!(
                    low <= us && us < low + width,
                    "{us} in bucket {b} = {low}+{width}"
                );
            }
        }
    }

    #[test]
    fn quantiles_within_the_bucket_resolution() {
        let mut h = LatencyHistogram::new();
        assert_eq!(h.quantile(0.5), None);
        // 1..=1000 ms: the median is 500 ms, the p99 990 ms.
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 1000);
        let p50 = h.quantile(0.5).unwrap().as_secs_f64();
        let p99 = h.quantile(0.99).unwrap().as_secs_f64();
        assert!((p50 - 0.5).abs() < 0.5 * 0.035, "{p50}");
        assert!((p99 - 0.99).abs() < 0.99 * 0.035, "{p99}");
        let p100 = h.quantile(1.0).unwrap().as_secs_f64();
        assert!(p100 <= 1.0 && p100 > 1.0 - 0.035, "{p100}");
        assert_eq!(h.max(), Duration::from_millis(1000));
        // One slow frame among 200 fast ones moves the p99, not the median.
        let mut h = LatencyHistogram::new();
        for _ in 0..200 {
            h.record(Duration::from_millis(20));
        }
        h.record(Duration::from_secs(3));
        let p50 = h.quantile(0.5).unwrap().as_secs_f64();
        assert!((p50 - 0.02).abs() < 0.001, "{p50}");
        assert!(h.quantile(0.999).unwrap() > Duration::from_secs(2));
    }
}
