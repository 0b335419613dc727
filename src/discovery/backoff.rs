//! Exponential backoff with jitter for discovery retries, as the reference
//! proxy's supervisor does (1 s doubling to 10 s, +0–20 % random).

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    random_factor: f64,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration, random_factor: f64) -> Backoff {
        Backoff { min, max, random_factor, attempt: 0 }
    }

    /// The reference proxy's defaults.
    pub fn discovery() -> Backoff {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(10), 0.2)
    }

    /// The next delay; `unit_random` in `[0, 1)` supplies the jitter so the
    /// schedule is testable.
    pub fn next_delay(&mut self, unit_random: f64) -> Duration {
        let base = self.min.saturating_mul(1u32 << self.attempt.min(16)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        base.mul_f64(1.0 + self.random_factor * unit_random.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_bounded_jitter() {
        let mut b = Backoff::discovery();
        let plain: Vec<_> = (0..6).map(|_| b.next_delay(0.0).as_secs()).collect();
        assert_eq!(plain, [1, 2, 4, 8, 10, 10]);
        let mut b = Backoff::discovery();
        assert_eq!(b.next_delay(1.0), Duration::from_millis(1200));
        for _ in 0..40 {
            assert!(b.next_delay(0.999) <= Duration::from_secs(12));
        }
    }
}
