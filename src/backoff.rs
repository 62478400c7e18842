//! Retry delays shared by the outboxes (webhook deliveries, submissions).

/// The delay before retry `attempt` (0 = the first retry): `base · 2^attempt`, capped, then
/// jittered to between half and all of it, so failing subscriptions do not retry in lockstep.
pub fn backoff(attempt: u32, base_ms: u64, cap_ms: u64) -> u64 {
    use rand::Rng;
    let full = base_ms
        .saturating_mul(1u64 << attempt.min(40))
        .min(cap_ms)
        .max(1);
    rand::rng().random_range(full / 2..=full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stops_at_the_cap() {
        for attempt in 0..6 {
            let full = 100u64 << attempt;
            let d = backoff(attempt, 100, 10_000);
            assert!((full / 2..=full).contains(&d), "{attempt}: {d}");
        }
        assert!(backoff(60, 100, 5_000) <= 5_000);
        assert!(backoff(60, 100, 5_000) >= 2_500);
    }
}
