//! Per-source admission in front of the SIP parser: an IP allow-list, a token-bucket rate
//! limit per source address, and temporary bans for sources that exceed it. Sans-IO like the
//! rest of the crate: every call takes `now`.
//!
//! The driver asks [`SourceGuard::admit`] before it parses a datagram (or a framed TCP
//! message): a refused one is dropped unparsed, so a flood costs a hash lookup per packet.
//! Memory is bounded: sources live in two generations of at most `max_sources / 2` entries
//! each; when the young one fills up the old one is forgotten whole (its sources were not
//! seen for a full generation) and the young one takes its place. A banned source that keeps
//! sending is seen, so it stays in the young generation and stays banned.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use chorus_sip::guard::{GuardConfig, RateLimit, SourceGuard};
//! use chorus_sip::DropReason;
//!
//! let mut guard = SourceGuard::new(GuardConfig {
//!     rate: Some(RateLimit { per_second: 50, burst: 100, ban: Duration::from_secs(60) }),
//!     ..GuardConfig::default()
//! });
//! let now = Instant::now();
//! let flooder = "192.0.2.66".parse().unwrap();
//! for _ in 0..100 {
//!     assert!(guard.admit(now, flooder).is_ok());
//! }
//! assert_eq!(guard.admit(now, flooder), Err(DropReason::RateLimited));
//! assert_eq!(guard.admit(now, flooder), Err(DropReason::Banned));
//! assert!(guard.admit(now, "192.0.2.7".parse().unwrap()).is_ok());
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use ipnet::IpNet;

use crate::drops::{DropCounts, DropReason};

/// A token bucket per source: `per_second` requests on average, `burst` at once; a source
/// that empties its bucket is banned for `ban` (zero: its excess requests are only dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
    pub ban: Duration,
}

/// Settings of a [`SourceGuard`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardConfig {
    /// Sources allowed to send SIP at all; empty = every source.
    pub allow: Vec<IpNet>,
    /// `None`: no rate limit.
    pub rate: Option<RateLimit>,
    /// Sources never rate-limited (a trusted proxy or SBC, local tools).
    pub exempt: Vec<IpNet>,
    /// Most sources tracked at once.
    pub max_sources: usize,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            allow: Vec::new(),
            rate: None,
            exempt: Vec::new(),
            max_sources: 10_000,
        }
    }
}

/// Counters; never reset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardStats {
    /// Refusals by reason ([`DropReason::NotAllowed`], [`DropReason::RateLimited`],
    /// [`DropReason::Banned`]).
    pub drops: DropCounts,
    /// Bans started.
    pub bans: u64,
    /// Sources forgotten to keep the table bounded.
    pub evicted: u64,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    banned_until: Option<Instant>,
}

/// Admission per source address; see the module docs.
#[derive(Debug)]
pub struct SourceGuard {
    config: GuardConfig,
    young: HashMap<IpAddr, Bucket>,
    old: HashMap<IpAddr, Bucket>,
    stats: GuardStats,
}

impl SourceGuard {
    pub fn new(mut config: GuardConfig) -> Self {
        config.max_sources = config.max_sources.max(2);
        if let Some(rate) = &mut config.rate {
            rate.burst = rate.burst.max(1);
        }
        if config.rate.is_some_and(|r| r.per_second == 0) {
            config.rate = None;
        }
        SourceGuard {
            config,
            young: HashMap::new(),
            old: HashMap::new(),
            stats: GuardStats::default(),
        }
    }

    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// Whether a message from `ip` may be parsed. Counts every refusal in [`GuardStats`].
    pub fn admit(&mut self, now: Instant, ip: IpAddr) -> Result<(), DropReason> {
        let ip = ip.to_canonical();
        let verdict = self.check(now, ip);
        if let Err(reason) = verdict {
            self.stats.drops.add(reason);
        }
        verdict
    }

    /// Whether the allow-list lets `ip` in (an empty list lets everyone in).
    pub fn allowed(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.config.allow.is_empty() || self.config.allow.iter().any(|net| net.contains(&ip))
    }

    /// Whether `ip` is serving a ban at `now` (e.g. to refuse its TCP connections).
    pub fn is_banned(&self, now: Instant, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.young
            .get(&ip)
            .or_else(|| self.old.get(&ip))
            .and_then(|b| b.banned_until)
            .is_some_and(|until| now < until)
    }

    /// Sources tracked now (at most `max_sources`).
    pub fn tracked(&self) -> usize {
        self.young.len() + self.old.len()
    }

    pub fn stats(&self) -> &GuardStats {
        &self.stats
    }

    fn check(&mut self, now: Instant, ip: IpAddr) -> Result<(), DropReason> {
        if !self.allowed(ip) {
            return Err(DropReason::NotAllowed);
        }
        let Some(rate) = self.config.rate else {
            return Ok(());
        };
        if self.config.exempt.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        let burst = f64::from(rate.burst);
        let bucket = self.bucket(now, ip, burst);
        if let Some(until) = bucket.banned_until {
            if now < until {
                return Err(DropReason::Banned);
            }
            // The ban is served: start again with a full bucket.
            *bucket = Bucket {
                tokens: burst,
                last: now,
                banned_until: None,
            };
        }
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * f64::from(rate.per_second)).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        if !rate.ban.is_zero() {
            bucket.banned_until = Some(now + rate.ban);
            self.stats.bans += 1;
            tracing::info!(source = %ip, ban_s = rate.ban.as_secs(), "SIP source over its rate: banned");
        }
        Err(DropReason::RateLimited)
    }

    /// The bucket of `ip`, created full or brought back from the old generation.
    fn bucket(&mut self, now: Instant, ip: IpAddr, burst: f64) -> &mut Bucket {
        if !self.young.contains_key(&ip) {
            let bucket = self.old.remove(&ip).unwrap_or(Bucket {
                tokens: burst,
                last: now,
                banned_until: None,
            });
            if self.young.len() >= self.config.max_sources / 2 {
                self.stats.evicted += self.old.len() as u64;
                self.old = std::mem::take(&mut self.young);
            }
            self.young.insert(ip, bucket);
        }
        self.young.entry(ip).or_insert(Bucket {
            tokens: burst,
            last: now,
            banned_until: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limited(per_second: u32, burst: u32, ban_s: u64) -> GuardConfig {
        GuardConfig {
            rate: Some(RateLimit {
                per_second,
                burst,
                ban: Duration::from_secs(ban_s),
            }),
            ..GuardConfig::default()
        }
    }

    #[test]
    fn a_source_over_its_burst_is_banned_until_the_ban_ends_then_served_again() {
        let t0 = Instant::now();
        let mut guard = SourceGuard::new(limited(50, 100, 60));
        let flooder = ip("198.51.100.9");
        for i in 0..100 {
            assert_eq!(guard.admit(t0, flooder), Ok(()), "request {i}");
        }
        assert_eq!(guard.admit(t0, flooder), Err(DropReason::RateLimited));
        assert!(guard.is_banned(t0, flooder));
        let during = t0 + Duration::from_secs(59);
        assert_eq!(guard.admit(during, flooder), Err(DropReason::Banned));
        let after = t0 + Duration::from_secs(60);
        assert!(!guard.is_banned(after, flooder));
        for _ in 0..100 {
            assert_eq!(guard.admit(after, flooder), Ok(()));
        }
        let stats = guard.stats();
        assert_eq!(stats.bans, 1);
        assert_eq!(stats.drops.get(DropReason::RateLimited), 1);
        assert_eq!(stats.drops.get(DropReason::Banned), 1);
    }

    #[test]
    fn a_source_at_its_average_rate_is_never_limited() {
        let t0 = Instant::now();
        let mut guard = SourceGuard::new(limited(50, 100, 60));
        let phone = ip("198.51.100.10");
        // 40 requests per second for a minute.
        for i in 0..2400u64 {
            let now = t0 + Duration::from_millis(25 * i);
            assert_eq!(guard.admit(now, phone), Ok(()), "request {i}");
        }
        assert_eq!(guard.stats().drops.total(), 0);
    }

    #[test]
    fn another_source_is_served_while_one_is_banned() {
        let t0 = Instant::now();
        let mut guard = SourceGuard::new(limited(5, 10, 30));
        let (flooder, caller) = (ip("127.0.0.1"), ip("127.0.0.2"));
        for _ in 0..50 {
            let _ = guard.admit(t0, flooder);
        }
        assert!(guard.is_banned(t0, flooder));
        assert_eq!(guard.admit(t0, caller), Ok(()));
        assert!(!guard.is_banned(t0, caller));
    }

    #[test]
    fn without_a_ban_only_the_excess_is_dropped() {
        let t0 = Instant::now();
        let mut guard = SourceGuard::new(limited(10, 1, 0));
        let src = ip("192.0.2.1");
        assert_eq!(guard.admit(t0, src), Ok(()));
        assert_eq!(guard.admit(t0, src), Err(DropReason::RateLimited));
        assert_eq!(
            guard.admit(t0 + Duration::from_millis(100), src),
            Ok(()),
            "a token is back after 1/rate"
        );
        assert_eq!(guard.stats().bans, 0);
    }

    #[test]
    fn exempt_sources_are_never_limited_and_a_zero_rate_disables_limits() {
        let t0 = Instant::now();
        let mut config = limited(1, 1, 60);
        config.exempt = vec!["10.0.0.0/8".parse().unwrap()];
        let mut guard = SourceGuard::new(config);
        for _ in 0..1000 {
            assert_eq!(guard.admit(t0, ip("10.1.2.3")), Ok(()));
        }
        let mut off = SourceGuard::new(limited(0, 1, 60));
        for _ in 0..1000 {
            assert_eq!(off.admit(t0, ip("192.0.2.1")), Ok(()));
        }
    }

    #[test]
    fn sources_outside_the_allow_list_are_refused_including_v4_mapped_v6() {
        let t0 = Instant::now();
        let mut guard = SourceGuard::new(GuardConfig {
            allow: vec![
                "192.0.2.0/24".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
            ..GuardConfig::default()
        });
        assert_eq!(guard.admit(t0, ip("192.0.2.200")), Ok(()));
        assert_eq!(guard.admit(t0, ip("::ffff:192.0.2.200")), Ok(()));
        assert_eq!(guard.admit(t0, ip("2001:db8::1")), Ok(()));
        assert_eq!(
            guard.admit(t0, ip("198.51.100.1")),
            Err(DropReason::NotAllowed)
        );
        assert_eq!(
            guard.admit(t0, ip("::ffff:198.51.100.1")),
            Err(DropReason::NotAllowed)
        );
        assert_eq!(guard.stats().drops.get(DropReason::NotAllowed), 2);
    }

    #[test]
    fn the_source_table_stays_bounded_and_a_busy_banned_source_stays_banned() {
        let t0 = Instant::now();
        let mut config = limited(5, 5, 600);
        config.max_sources = 100;
        let mut guard = SourceGuard::new(config);
        let flooder = ip("203.0.113.1");
        for _ in 0..10 {
            let _ = guard.admit(t0, flooder);
        }
        assert!(guard.is_banned(t0, flooder));
        // Spoofed sources churn through the table; the flooder keeps sending too.
        for i in 0..10_000u32 {
            let spoofed = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            let now = t0 + Duration::from_millis(u64::from(i));
            assert_eq!(guard.admit(now, spoofed), Ok(()));
            assert_eq!(guard.admit(now, flooder), Err(DropReason::Banned));
            assert!(guard.tracked() <= 100, "{} tracked", guard.tracked());
        }
        assert!(guard.stats().evicted >= 9_800, "{:?}", guard.stats());
    }
}
