//! serve's retry policies, in one place and all on `backon`: a transient reconcile failure
//! (1 s … 5 min, jittered, for as long as it lasts), a pull request's preview (5 s … 5 min, at
//! most 8 retries) and a GitHub write-back (1 s … 60 s, jittered, at most 8 attempts).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// The branch: retried through the queue until it succeeds or fails for good.
pub(super) fn reconcile() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(300))
        .without_max_times()
        .with_jitter()
        .build()
}

/// One pull request's preview: 5 s, 10 s … 5 min; `None` after the eighth retry.
pub(super) fn preview() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(5))
        .with_max_delay(Duration::from_secs(300))
        .with_max_times(8)
        .build()
}

/// GitHub write-back: 1 s, 2 s, 4 s … 60 s, jittered, 8 attempts.
pub(super) fn writeback() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(60))
        .with_max_times(8)
        .with_jitter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_is_retried_eight_times_up_to_five_minutes_apart() {
        let delays: Vec<u64> = preview().map(|d| d.as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn a_reconcile_is_retried_for_as_long_as_it_fails_at_most_five_minutes_apart() {
        let delays: Vec<Duration> = reconcile().take(20).collect();
        assert_eq!(delays.len(), 20);
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(600)),
            "{delays:?}"
        );
    }
}
