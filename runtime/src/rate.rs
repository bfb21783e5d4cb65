//! Token buckets per key (an address, a person): at most `rate` a second, twice that in a
//! burst. Used for new SIP calls per source address and API requests per person. (A map of
//! two numbers per key is all this needs; a rate-limiting crate would bring its own clock and
//! concurrency machinery for the same.)

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys remembered at most; past this, buckets full again are forgotten.
const MAX_KEYS: usize = 10_000;

/// Token buckets per key.
pub struct Limiter<K> {
    rate: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

/// What a key may still do now, and when that was reckoned.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Eq + Hash + Clone> Limiter<K> {
    /// `rate` a second per key (0: no limit).
    pub fn new(rate: u32) -> Limiter<K> {
        Limiter {
            rate: f64::from(rate),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` may go on now (spending one token); `Err` with how long until it may.
    pub fn admit(&self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let (rate, burst) = (self.rate, self.rate * 2.0);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_its_rate_and_others_are_not_touched() {
        let limiter = Limiter::new(10);
        let t0 = Instant::now();
        let admitted = (0..1000)
            .filter(|_| limiter.admit(&"flood", t0).is_ok())
            .count();
        assert_eq!(admitted, 20, "the burst");
        let wait = limiter.admit(&"flood", t0).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert_eq!(limiter.admit(&"other", t0), Ok(()));
        let later = t0 + Duration::from_millis(500);
        let admitted = (0..1000)
            .filter(|_| limiter.admit(&"flood", later).is_ok())
            .count();
        assert_eq!(admitted, 5, "refilled at 10 a second");
        assert!(Limiter::new(0).admit(&"any", t0).is_ok());
    }
}
