//! How many refused, unauthenticated requests are recorded one by one.
//!
//! Every exchange writes an audit record, committed before the answer leaves. A client with no
//! valid key could therefore make the gateway commit a record per request, as fast as it can
//! send them, and fill the audit log's disk with 401s. Per client address (IPv6 by /64, since
//! one host holds a whole /64), refused requests without a valid key — on the model APIs and on
//! the admin endpoints — are recorded one by one up to a burst of [`BURST`], then at
//! [`PER_SECOND`] a second; the rest are counted and written as one `throttled` record per
//! address every [`SUMMARY_EVERY`] (and at shutdown), saying how many requests it stands for.
//! Nothing is dropped silently, and the audit log grows by at most one record per address per
//! interval beyond the allowance. At most [`MAX_ADDRESSES`] addresses are tracked; beyond that,
//! addresses share one bucket (summarised under `*`).
//! Authenticated traffic and requests refused for other reasons are never throttled.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refused requests recorded one by one in a burst, per address.
pub const BURST: f64 = 20.0;
/// Refused requests recorded one by one per second, per address, after the burst.
pub const PER_SECOND: f64 = 1.0;
/// How often counted requests are written as `throttled` records.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(30);
/// Addresses tracked at once.
pub const MAX_ADDRESSES: usize = 4096;

/// A client address as throttled: IPv4 whole, IPv6 by its /64, or every address beyond
/// [`MAX_ADDRESSES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    V4([u8; 4]),
    V6Net([u8; 8]),
    Others,
}

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    let mut net = [0u8; 8];
                    net.copy_from_slice(&o[..8]);
                    Source::V6Net(net)
                }
            },
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::V4(o) => write!(f, "{}", std::net::Ipv4Addr::from(*o)),
            Source::V6Net(n) => {
                let mut o = [0u8; 16];
                o[..8].copy_from_slice(n);
                write!(f, "{}/64", std::net::Ipv6Addr::from(o))
            }
            Source::Others => f.write_str("*"),
        }
    }
}

/// Requests counted instead of recorded, for one address and one kind of request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub source: Source,
    /// `api` of the summary record: the API family or admin endpoint refused.
    pub what: &'static str,
    pub status: u16,
    pub count: u64,
}

struct Bucket {
    tokens: f64,
    last: Instant,
    /// Counted, not yet summarised, by (what, status).
    counted: Vec<(&'static str, u16, u64)>,
}

/// The per-address allowance (see the module docs).
#[derive(Default)]
pub struct Throttle {
    buckets: Mutex<HashMap<Source, Bucket>>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle").finish_non_exhaustive()
    }
}

impl Throttle {
    /// Whether this refused request (`what`, `status`) from `ip` gets its own record; when not,
    /// it is counted for the next summary.
    pub fn record(&self, ip: IpAddr, what: &'static str, status: u16, now: Instant) -> bool {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let mut source = Source::of(ip);
        if !map.contains_key(&source) && map.len() >= MAX_ADDRESSES {
            // Forget full buckets with nothing counted: they would record the next request
            // anyway. If none, this address shares the overflow bucket.
            map.retain(|_, b| !(b.counted.is_empty() && refill(b.tokens, b.last, now) >= BURST));
            if map.len() >= MAX_ADDRESSES {
                source = Source::Others;
            }
        }
        let b = map.entry(source).or_insert(Bucket {
            tokens: BURST,
            last: now,
            counted: Vec::new(),
        });
        b.tokens = refill(b.tokens, b.last, now);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return true;
        }
        match b
            .counted
            .iter_mut()
            .find(|(w, s, _)| *w == what && *s == status)
        {
            Some((_, _, n)) => *n += 1,
            None => b.counted.push((what, status, 1)),
        }
        false
    }

    /// Everything counted since the last call, to be written as summaries. Buckets with nothing
    /// counted and a full allowance are forgotten.
    pub fn take(&self, now: Instant) -> Vec<Pending> {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for (source, b) in map.iter_mut() {
            for (what, status, count) in b.counted.drain(..) {
                out.push(Pending {
                    source: *source,
                    what,
                    status,
                    count,
                });
            }
        }
        map.retain(|_, b| refill(b.tokens, b.last, now) < BURST);
        out
    }
}

fn refill(tokens: f64, last: Instant, now: Instant) -> f64 {
    (tokens + now.saturating_duration_since(last).as_secs_f64() * PER_SECOND).min(BURST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_a_rate_then_counted() {
        let t = Throttle::default();
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let t0 = Instant::now();
        let recorded = (0..100).filter(|_| t.record(ip, "openai", 401, t0)).count();
        assert_eq!(recorded, BURST as usize);
        // Two seconds later: two more recorded, the rest counted.
        let t1 = t0 + Duration::from_secs(2);
        let recorded = (0..10).filter(|_| t.record(ip, "openai", 401, t1)).count();
        assert_eq!(recorded, 2);
        let p = t.take(t1);
        assert_eq!(
            p,
            vec![Pending {
                source: Source::of(ip),
                what: "openai",
                status: 401,
                count: 80 + 8
            }]
        );
        // Taken once; another address is independent.
        assert!(t.take(t1).is_empty());
        assert!(t.record("203.0.113.8".parse().unwrap(), "openai", 401, t1));
    }

    #[test]
    fn ipv6_by_64_and_bounded_addresses() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..BURST as u32 {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            assert!(t.record(ip, "admin", 401, now));
        }
        // Same /64, another host: the allowance is shared.
        assert!(!t.record("2001:db8:1:2:ffff::1".parse().unwrap(), "admin", 401, now));
        assert_eq!(
            Source::of("2001:db8:1:2::9".parse().unwrap()).to_string(),
            "2001:db8:1:2::/64"
        );
        // Many addresses, each over its allowance: the table stays bounded and the excess is
        // counted under `*`, not lost.
        let t = Throttle::default();
        let mut counted = 0u64;
        for i in 0..(MAX_ADDRESSES as u32 + 100) {
            let ip = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
            for _ in 0..(BURST as usize + 1) {
                if !t.record(ip, "openai", 401, now) {
                    counted += 1;
                }
            }
        }
        assert!(t.buckets.lock().unwrap().len() <= MAX_ADDRESSES + 1);
        let p = t.take(now);
        assert_eq!(p.iter().map(|p| p.count).sum::<u64>(), counted);
        assert!(p.iter().any(|p| p.source == Source::Others));
    }
}
