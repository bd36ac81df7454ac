//! The rules of webhook delivery that do not depend on how a request is sent: when a failed
//! event is tried again, when it is given up on, and which addresses the service may call.
//!
//! They live in biz so that the config check at start-up and the dispatcher's check after DNS
//! resolution are one rule, and so that the schedule is tested without a network.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use chrono::{DateTime, Utc};

/// Exponential backoff with jitter, bounded by the event's age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay after the first failure (5 s); doubled per failure.
    pub base: Duration,
    /// No delay is longer than this (1 h).
    pub cap: Duration,
    /// An event older than this after a failure is dead (`webhooks.max_age`, 24 h).
    pub max_age: Duration,
}

/// What to do with an event whose attempt just failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAt(DateTime<Utc>),
    Dead,
}

impl RetryPolicy {
    pub const DEFAULT_BASE: Duration = Duration::from_secs(5);
    pub const DEFAULT_CAP: Duration = Duration::from_secs(3600);

    /// The delay before attempt `failures + 1`, before jitter: `base · 2^(failures-1)`, capped.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << doublings)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// After the `failures`-th failed attempt at `now` of an event made at `created_at`.
    /// `jitter` in [0, 1) takes up to half of the delay off, so that receivers coming back
    /// from an outage are not hit by every sender at the same instant. The last attempt is
    /// made at `created_at + max_age`, not skipped.
    pub fn after_failure(
        &self,
        failures: u32,
        created_at: DateTime<Utc>,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> AfterFailure {
        let max_age = chrono::Duration::from_std(self.max_age).unwrap_or(chrono::Duration::MAX);
        let Some(deadline) = created_at.checked_add_signed(max_age) else {
            return AfterFailure::Dead;
        };
        if now >= deadline {
            return AfterFailure::Dead;
        }
        let delay = self
            .backoff(failures)
            .mul_f64(1.0 - jitter.clamp(0.0, 1.0) / 2.0);
        let next = chrono::Duration::from_std(delay)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(deadline);
        AfterFailure::RetryAt(next.min(deadline))
    }
}

/// Whether the service may send a webhook to `ip`: false for loopback, private, link-local
/// (169.254.169.254 among them), CGNAT, unspecified, multicast, broadcast, documentation and
/// reserved ranges and their IPv6 counterparts, including IPv4 addresses carried inside IPv6
/// (mapped, NAT64, 6to4).
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = a == 0 // "this network", 0.0.0.0 included
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224; // multicast, reserved, broadcast
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_public_v4(embedded(s[6], s[7])); // NAT64
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2])); // 6to4
    }
    let refused = ip.is_unspecified()
        || ip.is_loopback()
        || s[0..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible (deprecated), ::/96
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]); // discard-only 100::/64
    !refused
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(5),
            cap: Duration::from_secs(3600),
            max_age: Duration::from_secs(24 * 3600),
        }
    }

    #[test]
    fn backoff_doubles_from_five_seconds_to_an_hour() {
        let p = policy();
        let delays: Vec<u64> = (1..=12).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(
            delays,
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(p.backoff(u32::MAX).as_secs(), 3600);
    }

    #[test]
    fn jitter_takes_at_most_half_off() {
        let p = policy();
        let t0 = Utc::now();
        let at = |jitter| match p.after_failure(3, t0, t0, jitter) {
            AfterFailure::RetryAt(t) => (t - t0).num_milliseconds(),
            AfterFailure::Dead => panic!("not dead yet"),
        };
        assert_eq!(at(0.0), 20_000);
        assert_eq!(at(0.5), 15_000);
        assert!(at(0.999) >= 10_000);
    }

    #[test]
    fn the_last_attempt_is_at_max_age_then_the_event_is_dead() {
        let p = policy();
        let created = Utc::now();
        let late = created + chrono::Duration::hours(23) + chrono::Duration::minutes(50);
        assert_eq!(
            p.after_failure(20, created, late, 0.0),
            AfterFailure::RetryAt(created + chrono::Duration::hours(24))
        );
        let over = created + chrono::Duration::hours(24);
        assert_eq!(p.after_failure(21, created, over, 0.0), AfterFailure::Dead);
    }

    #[test]
    fn private_and_special_addresses_are_refused() {
        for text in [
            "0.0.0.0",
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "192.0.2.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            let ip: IpAddr = text.parse().expect("an address");
            assert!(!is_public_ip(ip), "{text} must be refused");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for text in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "93.184.215.14",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "2002:808:808::",
        ] {
            let ip: IpAddr = text.parse().expect("an address");
            assert!(is_public_ip(ip), "{text} must be allowed");
        }
    }
}
