//! One exponential backoff with jitter and a cap, for every retry in the service: the cloud
//! client's retries of idempotent calls, the clone backoff after failed clones or boots, and
//! the delete backoff. It imports nothing from the service, so both `idch` and `reconciler` use it.

use std::time::Duration;

use rand::Rng;

/// `base * 2^attempt`, capped at `cap`, then jittered into `[ceiling / 2, ceiling]` so that many
/// clients spread out while each still waits a meaningful time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff { base, cap }
    }

    /// The ceiling of the wait after `attempt` failures so far (0: the first retry).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.cap)
    }

    /// The wait for `attempt` with a given jitter in `[0, 1]` (pure; for tests and callers that
    /// draw their own randomness).
    pub fn delay_with(&self, attempt: u32, jitter: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// The wait for `attempt`, jittered at random.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, rand::thread_rng().gen_range(0.0..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubles_caps_and_jitters_within_half() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let ceilings: Vec<u64> = (0..9).map(|a| b.ceiling(a).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(60), "no overflow");
        assert_eq!(b.delay_with(3, 0.0), Duration::from_secs(4));
        assert_eq!(b.delay_with(3, 1.0), Duration::from_secs(8));
        assert_eq!(
            b.delay_with(3, 7.0),
            Duration::from_secs(8),
            "jitter clamped"
        );
        for a in 0..12 {
            let d = b.delay(a);
            assert!(d >= b.ceiling(a) / 2 && d <= b.ceiling(a), "{a}: {d:?}");
        }
    }
}
