//! Token-bucket rate limits, per key (a requester or a target), in memory.
//! Each server process keeps its own buckets: behind a load balancer of n
//! processes a key gets at most n times the configured rate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// The most buckets kept before idle ones are dropped.
const MAX_BUCKETS: usize = 100_000;

/// A set of token buckets with one rate and burst.
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_sec` tokens per second, up to `burst`; a rate of 0 means no
    /// limit.
    pub fn new(per_sec: f64, burst: f64) -> Self {
        RateLimiter {
            per_sec,
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`; false when the bucket is empty.
    pub fn allow(&self, key: &str) -> bool {
        if self.per_sec <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            let (rate, burst) = (self.per_sec, self.burst);
            let level = |t: f64, at: Instant| t + now.duration_since(at).as_secs_f64() * rate;
            // Full buckets carry no state: drop them.
            buckets.retain(|_, (t, at)| level(*t, *at) < burst);
            // Still crowded (many keys used within one refill time): drop
            // the fullest buckets, keeping the emptiest (the keys being
            // limited), down to 90% so that the scan is rare.
            let keep = MAX_BUCKETS / 10 * 9;
            if buckets.len() > keep {
                let mut levels: Vec<f64> = buckets.values().map(|(t, at)| level(*t, *at)).collect();
                let (_, &mut threshold, _) = levels.select_nth_unstable_by(keep, f64::total_cmp);
                let below = levels.iter().filter(|&&l| l < threshold).count();
                let mut equal_room = keep.saturating_sub(below);
                buckets.retain(|_, (t, at)| {
                    let l = level(*t, *at);
                    if l < threshold {
                        true
                    } else if l == threshold && equal_room > 0 {
                        equal_room -= 1;
                        true
                    } else {
                        false
                    }
                });
            }
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_stay_bounded_when_many_keys_are_used_at_once() {
        let l = RateLimiter::new(0.001, 3.0);
        assert!(l.allow("victim") && l.allow("victim") && l.allow("victim"));
        for i in 0..MAX_BUCKETS + 1000 {
            assert!(l.allow(&format!("k{i}")));
        }
        let held = l.buckets.lock().map(|b| b.len()).unwrap_or(usize::MAX);
        assert!(held <= MAX_BUCKETS, "{held} buckets held");
        // The emptiest bucket (a key being limited) was kept.
        assert!(!l.allow("victim"));
    }

    #[test]
    fn burst_then_refusal() {
        let l = RateLimiter::new(0.001, 3.0);
        assert!(l.allow("a") && l.allow("a") && l.allow("a"));
        assert!(!l.allow("a"));
        assert!(l.allow("b"));
        let open = RateLimiter::new(0.0, 1.0);
        assert!((0..100).all(|_| open.allow("a")));
    }
}
