//! `StateChangeBudget`: the per-connection safety net against a pathological writer.
//!
//! Push is latency-first: a connection writes a StateChange as soon as a change is published, and
//! changes merge in its [`ChangeSlot`](super::slot::ChangeSlot) only while an earlier frame is still
//! unwritten (backpressure from the socket, see docs/push.md). A client that reads fast while a
//! writer commits thousands of changes a second would then get thousands of frames a second; this
//! token bucket caps that. It holds `per_sec` tokens and refills at `per_sec` per second, so a
//! burst of up to `per_sec` StateChanges and any steady stream below `per_sec` per second go out
//! without delay; beyond that the changes wait in the slot and merge.

use std::time::{Duration, Instant};

/// A token bucket of StateChanges for one connection.
#[derive(Debug, Clone)]
pub struct StateChangeBudget {
    /// Tokens per second and the bucket's size; 0 means no cap.
    per_sec: u32,
    tokens: f64,
    refilled_at: Instant,
}

impl StateChangeBudget {
    /// A full bucket of `per_sec` tokens (`push.max_state_changes_per_sec`; 0: no cap).
    pub fn new(per_sec: u32, now: Instant) -> Self {
        StateChangeBudget {
            per_sec,
            tokens: f64::from(per_sec),
            refilled_at: now,
        }
    }

    /// Spends one token when there is one; otherwise says how long until there is.
    pub fn spend(&mut self, now: Instant) -> Result<(), Duration> {
        if self.per_sec == 0 {
            return Ok(());
        }
        let rate = f64::from(self.per_sec);
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_human_rate_stream_is_never_delayed() {
        // 50 changes a second for a minute against the shipped cap of 1,000 a second.
        let start = Instant::now();
        let mut budget = StateChangeBudget::new(1000, start);
        for i in 0..3000 {
            let at = start + Duration::from_millis(20 * i);
            assert_eq!(budget.spend(at), Ok(()), "change {i}");
        }
    }

    #[test]
    fn a_burst_up_to_the_cap_goes_out_back_to_back_and_then_waits_for_a_token() {
        let start = Instant::now();
        let mut budget = StateChangeBudget::new(100, start);
        for i in 0..100 {
            assert_eq!(budget.spend(start), Ok(()), "change {i}");
        }
        let wait = budget.spend(start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(10));
        assert_eq!(budget.spend(start + wait), Ok(()));
        // An idle connection's bucket fills up to its size, not beyond.
        let later = start + Duration::from_secs(60);
        for _ in 0..100 {
            assert_eq!(budget.spend(later), Ok(()));
        }
        assert!(budget.spend(later).is_err());
    }

    #[test]
    fn a_steady_stream_above_the_cap_is_held_to_it() {
        let start = Instant::now();
        let mut budget = StateChangeBudget::new(10, start);
        let mut sent = 0;
        // 1,000 changes a second for 10 seconds.
        for ms in 0..10_000 {
            if budget.spend(start + Duration::from_millis(ms)).is_ok() {
                sent += 1;
            }
        }
        // The first 10 from the full bucket, then 10 a second.
        assert!((108..=111).contains(&sent), "{sent}");
    }

    #[test]
    fn zero_means_no_cap() {
        let start = Instant::now();
        let mut budget = StateChangeBudget::new(0, start);
        for _ in 0..100_000 {
            assert_eq!(budget.spend(start), Ok(()));
        }
    }
}
