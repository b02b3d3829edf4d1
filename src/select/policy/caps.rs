//! Hard caps over sliding windows of stream time (see the policy docs, "Hard caps").

/// Buckets per cap window (a ring holds one more, for the partial oldest bucket).
const CAP_BUCKETS: usize = 60;

/// Sum of amounts over a sliding window of stream time, in `CAP_BUCKETS` buckets.
#[derive(Debug, Clone)]
pub(super) struct SlidingSum {
    bucket_ms: u64,
    ids: [u64; CAP_BUCKETS + 1],
    sums: [u64; CAP_BUCKETS + 1],
}

impl SlidingSum {
    pub(super) fn new(window_ms: u64) -> Self {
        SlidingSum {
            bucket_ms: window_ms / CAP_BUCKETS as u64,
            ids: [u64::MAX; CAP_BUCKETS + 1],
            sums: [0; CAP_BUCKETS + 1],
        }
    }

    /// At least the sum over `(now − window, now]`: the buckets that overlap it.
    pub(super) fn total(&self, now_ms: u64) -> u64 {
        let cur = now_ms / self.bucket_ms;
        let oldest = cur.saturating_sub(CAP_BUCKETS as u64);
        self.ids
            .iter()
            .zip(&self.sums)
            .filter(|(&id, _)| id != u64::MAX && id >= oldest && id <= cur)
            .fold(0u64, |acc, (_, &s)| acc.saturating_add(s))
    }

    pub(super) fn add(&mut self, now_ms: u64, amount: u64) {
        let cur = now_ms / self.bucket_ms;
        let slot = (cur % (CAP_BUCKETS as u64 + 1)) as usize;
        if self.ids[slot] != cur {
            self.ids[slot] = cur;
            self.sums[slot] = 0;
        }
        self.sums[slot] = self.sums[slot].saturating_add(amount);
    }
}
