//! When each change's doorbell reached a feed, until its snapshot is handed to the feed's
//! watchers: the `qrupload_change_delivery_seconds` histogram, one observation per change.
//!
//! Announcements are kept in version order; a published snapshot settles every change up to
//! its version. A re-read after a resync announces a version that may never exist: once a
//! read has covered it, it is dropped unobserved.

use std::{collections::VecDeque, sync::Mutex, time::Instant};

use crate::metrics::Metrics;

/// More changes than this waiting for one read are not timed (the earliest ones still are).
const MAX_WAITING: usize = 1024;

#[derive(Default)]
pub(super) struct Doorbells(Mutex<VecDeque<(u64, Instant)>>);

impl Doorbells {
    /// The bus announced `version`, newer than what watchers have.
    pub(super) fn rang(&self, version: u64) {
        let mut waiting = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if waiting.len() < MAX_WAITING && waiting.back().is_none_or(|&(v, _)| v < version) {
            waiting.push_back((version, Instant::now()));
        }
    }

    /// A read that started once `read_for` was announced has left the watchers at
    /// `published`: the changes up to it are delivered, the versions up to `read_for` beyond
    /// it were never made.
    pub(super) fn settled(&self, read_for: u64, published: u64, metrics: &Metrics) {
        let mut waiting = self.0.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(&(version, at)) = waiting.front() {
            if version > read_for.max(published) {
                break;
            }
            waiting.pop_front();
            if version <= published {
                metrics.change_delivered(at.elapsed());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(metrics: &Metrics) -> u64 {
        metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix("qrupload_change_delivery_seconds_count "))
            .and_then(|v| v.parse().ok())
            .expect("the histogram's count")
    }

    #[test]
    fn one_observation_per_change_and_none_for_a_phantom() {
        let (bells, metrics) = (Doorbells::default(), Metrics::default());
        bells.rang(2);
        bells.rang(3);
        bells.rang(3);
        bells.settled(2, 2, &metrics);
        assert_eq!(delivered(&metrics), 1);
        // A resync asked for 5; the read found 4.
        bells.rang(4);
        bells.rang(5);
        bells.settled(5, 4, &metrics);
        assert_eq!(delivered(&metrics), 3);
        bells.rang(6);
        bells.settled(6, 6, &metrics);
        assert_eq!(
            delivered(&metrics),
            4,
            "5 was dropped, not left to be timed later"
        );
    }
}
