//! ConnectSafely's per-minute API limits (separate from the weekly quota): a sliding
//! 60-second window per bucket. Pure: time is passed in.
//!
//! The vendor also allows bursts of 100 per 10 s per key; with 60 a minute that allowance can
//! never be reached over a full minute, so it is not modelled (the sim is the stricter one).

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};

const WINDOW: TimeDelta = TimeDelta::seconds(60);

/// What a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// Every authenticated request made with this API key.
    Key(String),
    /// Writes for a LinkedIn account (`POST /connect`, `POST /invitations/withdraw`).
    AccountWrites(String),
    /// Reads for a LinkedIn account (`GET /relationship`, `GET /invitations/sent`).
    AccountReads(String),
    /// `/account/*` calls for a LinkedIn account.
    AccountEndpoints(String),
}

impl Bucket {
    /// Human text for the 429 body.
    pub fn describe(&self, limit: u32) -> String {
        match self {
            Bucket::Key(_) => format!("{limit} requests per minute per API key"),
            Bucket::AccountWrites(id) => {
                format!("{limit} write requests per minute for account {id}")
            }
            Bucket::AccountReads(id) => {
                format!("{limit} read requests per minute for account {id}")
            }
            Bucket::AccountEndpoints(id) => {
                format!("{limit} /account requests per minute for account {id}")
            }
        }
    }
}

/// A refused request: which bucket was full and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttled {
    pub bucket: Bucket,
    pub limit: u32,
    /// Whole seconds until the bucket has room (at least 1), for `Retry-After`.
    pub retry_after: u64,
}

#[derive(Debug, Default)]
pub struct Windows {
    hits: HashMap<Bucket, VecDeque<DateTime<Utc>>>,
}

impl Windows {
    /// Counts a request against every bucket, or against none if any of them is full, so a
    /// refused request does not use up room in the others.
    pub fn hit(&mut self, buckets: &[(Bucket, u32)], now: DateTime<Utc>) -> Result<(), Throttled> {
        for (bucket, limit) in buckets {
            let hits = self.hits.entry(bucket.clone()).or_default();
            while hits.front().is_some_and(|t| *t + WINDOW <= now) {
                hits.pop_front();
            }
            if hits.len() >= *limit as usize {
                // Room appears when the hit `limit` places from the newest leaves the window.
                let free_at = match hits.len().checked_sub(*limit as usize) {
                    Some(index) if *limit > 0 => hits[index] + WINDOW,
                    _ => now + WINDOW,
                };
                let millis = (free_at - now).num_milliseconds().max(0) as u64;
                return Err(Throttled {
                    bucket: bucket.clone(),
                    limit: *limit,
                    retry_after: millis.div_ceil(1000).max(1),
                });
            }
        }
        for (bucket, _) in buckets {
            self.hits.entry(bucket.clone()).or_default().push_back(now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn sliding_minute_with_retry_after() {
        let mut w = Windows::default();
        let key = [(Bucket::Key("k".into()), 2)];
        let t0 = at("2024-01-15T09:00:00Z");
        w.hit(&key, t0).unwrap();
        w.hit(&key, t0 + TimeDelta::seconds(20)).unwrap();
        let refused = w
            .hit(&key, t0 + TimeDelta::milliseconds(30_500))
            .unwrap_err();
        assert_eq!(refused.retry_after, 30);
        assert_eq!(refused.limit, 2);
        // The first hit leaves the window at t0 + 60 s.
        w.hit(&key, t0 + TimeDelta::seconds(60)).unwrap();
        assert_eq!(
            w.hit(&key, t0 + TimeDelta::seconds(61))
                .unwrap_err()
                .retry_after,
            19
        );
    }

    #[test]
    fn refusal_by_one_bucket_uses_no_room_in_another() {
        let mut w = Windows::default();
        let now = at("2024-01-15T09:00:00Z");
        let key = (Bucket::Key("k".into()), 10);
        let writes = (Bucket::AccountWrites("a".into()), 1);
        w.hit(&[key.clone(), writes.clone()], now).unwrap();
        let refused = w.hit(&[key.clone(), writes], now).unwrap_err();
        assert_eq!(refused.bucket, Bucket::AccountWrites("a".into()));
        for _ in 0..9 {
            w.hit(std::slice::from_ref(&key), now).unwrap();
        }
        assert!(w.hit(&[key], now).is_err());
    }

    #[test]
    fn a_zero_limit_refuses_everything() {
        let mut w = Windows::default();
        let refused = w
            .hit(&[(Bucket::AccountReads("a".into()), 0)], Utc::now())
            .unwrap_err();
        assert_eq!(refused.retry_after, 60);
    }
}
