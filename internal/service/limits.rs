//! Abuse limits of the public HTTP API (`limits.*`), answered with 429 `RATE_LIMITED` and a
//! `Retry-After` header.
//!
//! - Rates (uploads per session and per client IP per minute, session creations per member per
//!   hour) are GCRA limiters from `governor`, keyed, with a burst of the whole allowance: a
//!   phone may send its 30 photos at once, then waits.
//! - Concurrent SSE streams per member and per client IP are counted; a [`StreamSlot`] gives
//!   its place back when the stream ends, however it ends.
//!
//! Keys are only made after the cheap checks that need no key, and per-session keys only after
//! the upload token was verified, so junk identifiers cannot grow the maps. The janitor calls
//! [`AbuseLimits::forget_idle`] so keys that are back to full allowance are dropped.

use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    num::NonZeroU32,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};

use super::error::ApiError;
use crate::conf::AbuseLimitsConf;

pub struct AbuseLimits {
    uploads_per_session: Option<DefaultKeyedRateLimiter<Box<str>>>,
    uploads_per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    sessions_per_member: Option<DefaultKeyedRateLimiter<u32>>,
    streams: Arc<StreamCounts>,
    /// What a refused stream is told to wait: about one `EventSource` retry.
    stream_retry_after: Duration,
}

#[derive(Default)]
struct StreamCounts {
    per_member: Mutex<HashMap<u32, u32>>,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    max_per_member: u32,
    max_per_ip: u32,
}

/// One open SSE stream's place in the per-member and per-IP counts.
pub struct StreamSlot {
    counts: Arc<StreamCounts>,
    member: Option<u32>,
    ip: Option<IpAddr>,
}

impl AbuseLimits {
    pub fn new(conf: &AbuseLimitsConf, stream_retry_after: Duration) -> Self {
        AbuseLimits {
            uploads_per_session: keyed(conf.uploads_per_session_per_minute, Quota::per_minute),
            uploads_per_ip: keyed(conf.uploads_per_ip_per_minute, Quota::per_minute),
            sessions_per_member: keyed(conf.sessions_per_member_per_hour, Quota::per_hour),
            streams: Arc::new(StreamCounts {
                max_per_member: conf.streams_per_member,
                max_per_ip: conf.streams_per_ip,
                ..Default::default()
            }),
            stream_retry_after,
        }
    }

    /// Before an upload is looked at: the client's address.
    pub fn upload_from_ip(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        match (&self.uploads_per_ip, ip) {
            (Some(limiter), Some(ip)) => check(limiter, &ip, "too many uploads from this address"),
            _ => Ok(()),
        }
    }

    /// After the upload token was verified: the session.
    pub fn upload_to_session(&self, identifier: &str) -> Result<(), ApiError> {
        match &self.uploads_per_session {
            Some(limiter) => check(
                limiter,
                &Box::from(identifier),
                "too many uploads to this session",
            ),
            None => Ok(()),
        }
    }

    pub fn create_session(&self, member_id: u32) -> Result<(), ApiError> {
        match &self.sessions_per_member {
            Some(limiter) => check(limiter, &member_id, "too many sessions created"),
            None => Ok(()),
        }
    }

    /// A place for one more SSE stream of `member` from `ip`, or 429.
    pub fn open_stream(&self, member: u32, ip: Option<IpAddr>) -> Result<StreamSlot, ApiError> {
        let counts = &self.streams;
        let refused =
            || ApiError::rate_limited("too many open event streams", self.stream_retry_after);
        if !take(&counts.per_member, member, counts.max_per_member) {
            return Err(refused());
        }
        // From here on the slot owns the member count; dropping it gives it back.
        let mut slot = StreamSlot {
            counts: counts.clone(),
            member: (counts.max_per_member > 0).then_some(member),
            ip: None,
        };
        if let Some(ip) = ip {
            if !take(&counts.per_ip, ip, counts.max_per_ip) {
                return Err(refused());
            }
            slot.ip = (counts.max_per_ip > 0).then_some(ip);
        }
        Ok(slot)
    }

    /// Drops rate-limiter keys that are back to their full allowance.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.uploads_per_session {
            l.retain_recent();
        }
        if let Some(l) = &self.uploads_per_ip {
            l.retain_recent();
        }
        if let Some(l) = &self.sessions_per_member {
            l.retain_recent();
        }
    }
}

fn keyed<K: Hash + Eq + Clone>(
    per_period: u32,
    quota: fn(NonZeroU32) -> Quota,
) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(per_period).map(|n| RateLimiter::keyed(quota(n)))
}

fn check<K: Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
    message: &str,
) -> Result<(), ApiError> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(limiter.clock().now());
        ApiError::rate_limited(message, wait)
    })
}

/// Counts one more under `key` unless that passes `max` (0: unlimited, nothing counted).
fn take<K: Hash + Eq>(map: &Mutex<HashMap<K, u32>>, key: K, max: u32) -> bool {
    if max == 0 {
        return true;
    }
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    let count = map.entry(key).or_insert(0);
    if *count >= max {
        return false;
    }
    *count += 1;
    true
}

fn give_back<K: Hash + Eq>(map: &Mutex<HashMap<K, u32>>, key: &K) {
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(count) = map.get_mut(key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            map.remove(key);
        }
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Some(member) = self.member {
            give_back(&self.counts.per_member, &member);
        }
        if let Some(ip) = self.ip {
            give_back(&self.counts.per_ip, &ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::error::Reason;

    fn conf(streams_per_member: u32, streams_per_ip: u32) -> AbuseLimitsConf {
        AbuseLimitsConf {
            uploads_per_session_per_minute: 2,
            uploads_per_ip_per_minute: 3,
            sessions_per_member_per_hour: 1,
            streams_per_member,
            streams_per_ip,
        }
    }

    #[test]
    fn rates_refuse_past_the_burst_with_a_wait() {
        let limits = AbuseLimits::new(&conf(0, 0), Duration::from_secs(2));
        assert!(limits.upload_to_session("a").is_ok());
        assert!(limits.upload_to_session("a").is_ok());
        let refused = limits.upload_to_session("a").err();
        assert!(
            matches!(&refused, Some(e) if e.reason == Reason::RateLimited && e.retry_after.is_some())
        );
        assert!(limits.upload_to_session("b").is_ok(), "keys are separate");
        assert!(limits.create_session(7).is_ok());
        assert!(limits.create_session(7).is_err());
        assert!(limits.create_session(8).is_ok());
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..3 {
            assert!(limits.upload_from_ip(Some(ip)).is_ok());
        }
        assert!(limits.upload_from_ip(Some(ip)).is_err());
        assert!(limits.upload_from_ip(None).is_ok(), "no address, no key");
    }

    #[test]
    fn stream_slots_are_given_back() {
        let limits = AbuseLimits::new(&conf(2, 3), Duration::from_secs(2));
        let ip: IpAddr = [10, 0, 0, 1].into();
        let a = limits.open_stream(1, Some(ip)).ok();
        let b = limits.open_stream(1, Some(ip)).ok();
        assert!(a.is_some() && b.is_some());
        assert!(
            limits.open_stream(1, Some(ip)).is_err(),
            "member at its limit"
        );
        let c = limits.open_stream(2, Some(ip)).ok();
        assert!(c.is_some());
        assert!(
            limits.open_stream(3, Some(ip)).is_err(),
            "address at its limit"
        );
        drop(a);
        assert!(
            limits.open_stream(1, Some(ip)).is_ok(),
            "a closed stream frees its place"
        );
        drop((b, c));
        let counts = &limits.streams;
        assert!(
            counts
                .per_member
                .lock()
                .map(|m| m.is_empty())
                .unwrap_or(false)
        );
        assert!(counts.per_ip.lock().map(|m| m.is_empty()).unwrap_or(false));
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let limits = AbuseLimits::new(
            &AbuseLimitsConf {
                uploads_per_session_per_minute: 0,
                uploads_per_ip_per_minute: 0,
                sessions_per_member_per_hour: 0,
                streams_per_member: 0,
                streams_per_ip: 0,
            },
            Duration::from_secs(2),
        );
        let slots: Vec<_> = (0..1000)
            .filter_map(|_| limits.open_stream(1, None).ok())
            .collect();
        assert_eq!(slots.len(), 1000);
        assert!((0..1000).all(|_| limits.upload_to_session("a").is_ok()));
    }
}
