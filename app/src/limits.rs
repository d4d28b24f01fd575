//! Request-rate limiting per client: `429 RATE_LIMITED` with `Retry-After`.
//!
//! A client is the authenticated principal when the request carries a valid
//! token, else its peer address. Under `--auth none` the body's `userId` is
//! not an identity (a flood could spread itself over made-up users), so the
//! address counts; an IPv6 client counts by its /64, the block one host
//! usually holds. Behind a proxy every unauthenticated request has the
//! proxy's address: see docs/SECURITY.md.
//!
//! governor's GCRA keeps one small state per client and needs no refill
//! task. States of clients quiet long enough to be back at a full burst are
//! dropped every [`FORGET_QUIET_EVERY`], so the table holds only the clients
//! seen recently.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::domain::UserId;

/// How often states of quiet clients are dropped.
pub const FORGET_QUIET_EVERY: Duration = Duration::from_secs(60);

/// The rate each client may send requests at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second; `0` turns limiting off.
    pub per_second: u32,
    /// Requests a client that has been quiet may send at once.
    pub burst: u32,
}

impl RateLimit {
    pub const OFF: RateLimit = RateLimit {
        per_second: 0,
        burst: 0,
    };

    pub fn validate(&self) -> Result<(), String> {
        if self.per_second > 0 && self.burst == 0 {
            return Err("--rate-limit-burst must be at least 1 when a rate limit is set".into());
        }
        Ok(())
    }
}

/// Who a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Client {
    User(UserId),
    Address(IpAddr),
    /// No principal and no peer address (a request not from a socket).
    Unknown,
}

impl Client {
    pub fn of(principal: Option<&UserId>, peer: Option<IpAddr>) -> Client {
        match (principal, peer) {
            (Some(user), _) => Client::User(user.clone()),
            (None, Some(IpAddr::V6(v6))) if v6.to_ipv4_mapped().is_none() => {
                let [a, b, c, d, ..] = v6.segments();
                Client::Address(IpAddr::V6(std::net::Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0)))
            }
            (None, Some(IpAddr::V6(v6))) => {
                Client::Address(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
            }
            (None, Some(v4)) => Client::Address(v4),
            (None, None) => Client::Unknown,
        }
    }
}

type Keyed = RateLimiter<Client, DefaultKeyedStateStore<Client>, DefaultClock>;

/// One GCRA state per client; limiting off holds nothing.
pub struct ClientRateLimiter {
    limiter: Option<Keyed>,
    clock: DefaultClock,
}

impl ClientRateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        let clock = DefaultClock::default();
        let limiter = NonZeroU32::new(limit.per_second).map(|rate| {
            let burst = NonZeroU32::new(limit.burst).unwrap_or(rate);
            RateLimiter::hashmap_with_clock(
                Quota::per_second(rate).allow_burst(burst),
                clock.clone(),
            )
        });
        Self { limiter, clock }
    }

    /// `Err(wait)` when `client` is over its rate: it may send again after `wait`.
    pub fn check(&self, client: &Client) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(client)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Drops the states of clients that are back at a full burst.
    pub fn forget_quiet_clients(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Clients with a state (for tests and metrics).
    pub fn clients(&self) -> usize {
        self.limiter.as_ref().map_or(0, Keyed::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Client {
        Client::User(UserId::parse(name).expect("user id"))
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_and_others_are_not_affected() {
        let limiter = ClientRateLimiter::new(RateLimit {
            per_second: 1,
            burst: 3,
        });
        for _ in 0..3 {
            assert_eq!(limiter.check(&user("alice")), Ok(()));
        }
        let wait = limiter.check(&user("alice")).expect_err("over the burst");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert_eq!(limiter.check(&user("bob")), Ok(()));
        assert_eq!(limiter.clients(), 2);
    }

    #[test]
    fn off_limits_nothing_and_holds_nothing() {
        let limiter = ClientRateLimiter::new(RateLimit::OFF);
        for _ in 0..1000 {
            assert_eq!(limiter.check(&user("alice")), Ok(()));
        }
        assert_eq!(limiter.clients(), 0);
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64_and_a_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(Client::of(None, Some(a)), Client::of(None, Some(b)));
        assert_ne!(Client::of(None, Some(a)), Client::of(None, Some(other)));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
        let v4: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(Client::of(None, Some(mapped)), Client::Address(v4));
        let alice = UserId::parse("alice").expect("user id");
        assert_eq!(Client::of(Some(&alice), Some(v4)), user("alice"));
    }
}
