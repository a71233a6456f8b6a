//! How many request-body bytes the gateway holds in memory at once, all connections together
//! (`server.max_inflight_body_bytes`).
//!
//! Every request body is read whole before inspection; `max_body_bytes` bounds one body, and
//! `max_connections` the number of connections, but their product (32 MiB × 4,096 by default)
//! is far beyond any machine's memory. This budget bounds the sum: a request whose body does
//! not fit is answered 503 with `retry-after` in its API's error shape (agents retry those)
//! instead of being buffered. Bodies reserve chunk by chunk as their bytes arrive, never from
//! the `content-length` they announce (a client that announces 32 MiB and sends nothing must not
//! hold what others need). The reservation is held until the request has been forwarded (or
//! answered).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Budget unit: permits are KiB, so budgets of terabytes fit a semaphore.
const UNIT: u64 = 1024;

/// The shared budget.
#[derive(Debug)]
pub struct BodyBudget {
    sem: Arc<Semaphore>,
    bytes: u64,
}

/// Bytes reserved for one request; released on drop.
#[derive(Debug, Default)]
pub struct Reservation(Option<OwnedSemaphorePermit>);

impl BodyBudget {
    pub fn new(bytes: u64) -> Self {
        let permits = usize::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        BodyBudget {
            sem: Arc::new(Semaphore::new(permits)),
            bytes,
        }
    }

    /// The configured budget in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes reserved right now (rounded up to KiB per reservation step).
    pub fn in_use(&self) -> u64 {
        let total = self.bytes.div_ceil(UNIT);
        total.saturating_sub(self.sem.available_permits() as u64) * UNIT
    }

    /// Add `bytes` to `r`, or `false` (and `r` unchanged) when the budget has no room now.
    pub fn grow(&self, r: &mut Reservation, bytes: u64) -> bool {
        let Ok(n) = u32::try_from(bytes.div_ceil(UNIT)) else {
            return false;
        };
        if n == 0 {
            return true;
        }
        match self.sem.clone().try_acquire_many_owned(n) {
            Ok(p) => {
                match r.0.as_mut() {
                    Some(held) => held.merge(p),
                    None => r.0 = Some(p),
                }
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_releases_and_refuses_past_the_budget() {
        let b = BodyBudget::new(10 * 1024);
        let mut a = Reservation::default();
        assert!(b.grow(&mut a, 6000));
        assert!(b.grow(&mut a, 100));
        assert_eq!(b.in_use(), 7 * 1024);
        let mut c = Reservation::default();
        assert!(!b.grow(&mut c, 4 * 1024), "3 KiB left");
        assert!(b.grow(&mut c, 3 * 1024));
        drop(a);
        assert_eq!(b.in_use(), 3 * 1024);
        assert!(b.grow(&mut c, 7 * 1024));
        assert!(!b.grow(&mut c, 1));
        assert!(b.grow(&mut c, 0));
        assert!(!b.grow(&mut Reservation::default(), u64::MAX));
    }
}
