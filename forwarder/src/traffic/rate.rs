//! A token bucket paced by the clock: the packet rate limit and the churn schedule of one queue.
//!
//! Rates are exact rationals (`per_second_num / per_second_den` tokens per second, e.g. a total
//! rate split over the queues) kept in integer units of 1 / (den × 10^9) token, so no rounding
//! drift accumulates however long the run. The caller passes the time it read once per fill call;
//! a refill and a take are a few 128-bit integer operations. Owned by one queue source's thread.

use std::time::Instant;

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Tokens that accrue at a fixed rate up to a cap.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    /// Units added per elapsed nanosecond.
    units_per_nano: u128,
    /// Units that make one token.
    units_per_token: u128,
    /// Accrued units.
    credit: u128,
    last_refill: Instant,
}

impl TokenBucket {
    /// An empty bucket accruing `per_second_num / per_second_den` tokens per second from `now`.
    /// A zero denominator is treated as 1.
    pub(crate) fn new(per_second_num: u64, per_second_den: u64, now: Instant) -> Self {
        TokenBucket {
            units_per_nano: u128::from(per_second_num),
            units_per_token: u128::from(per_second_den.max(1)) * NANOS_PER_SECOND,
            credit: 0,
            last_refill: now,
        }
    }

    /// Adds what accrued since the last refill, keeping at most `cap` tokens: time the owner did
    /// not spend asking is lost beyond the cap, as with any burst-limited bucket.
    pub(crate) fn refill(&mut self, now: Instant, cap: u64) {
        let elapsed = now.saturating_duration_since(self.last_refill).as_nanos();
        self.last_refill = now.max(self.last_refill);
        let cap_units = u128::from(cap).saturating_mul(self.units_per_token);
        self.credit = self
            .credit
            .saturating_add(elapsed.saturating_mul(self.units_per_nano))
            .min(cap_units);
    }

    /// Whole tokens available.
    pub(crate) fn available(&self) -> u64 {
        u64::try_from(self.credit / self.units_per_token).unwrap_or(u64::MAX)
    }

    /// Takes up to `wanted` tokens; returns how many were taken.
    pub(crate) fn take(&mut self, wanted: u64) -> u64 {
        let taken = wanted.min(self.available());
        self.credit -= u128::from(taken) * self.units_per_token;
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn accrues_at_the_rational_rate() {
        let start = Instant::now();
        // 1000 per second over 3 queues: 333.33.. per second each.
        let mut bucket = TokenBucket::new(1000, 3, start);
        bucket.refill(start + Duration::from_secs(3), u64::MAX);
        assert_eq!(bucket.take(u64::MAX), 1000);
        bucket.refill(start + Duration::from_millis(3_003), u64::MAX);
        assert_eq!(bucket.take(u64::MAX), 1, "3 ms at 333.3/s is one token");
        assert_eq!(bucket.take(1), 0);
    }

    #[test]
    fn cap_bounds_the_burst_and_takes_are_partial() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1_000_000, 1, start);
        bucket.refill(start + Duration::from_secs(10), 32);
        assert_eq!(bucket.available(), 32);
        assert_eq!(bucket.take(20), 20);
        assert_eq!(bucket.take(20), 12);
        assert_eq!(bucket.take(1), 0);
    }

    #[test]
    fn no_time_no_tokens_and_clock_going_back_is_harmless() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1_000_000_000, 64, start + Duration::from_secs(1));
        bucket.refill(start, 100);
        assert_eq!(bucket.available(), 0);
        bucket.refill(start + Duration::from_secs(1), 100);
        assert_eq!(bucket.available(), 0);
    }
}
