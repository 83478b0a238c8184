//! The sandbox's fault injector: seeded, so a test sees the same faults on every run.

use std::time::Duration;

/// One kind of failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Status500,
    Status502,
    Status503,
    /// 429 with `Retry-After: <seconds>`.
    RetryAfterSeconds(u64),
    /// 429 with `Retry-After: <HTTP date this many seconds ahead>`.
    RetryAfterDate(u64),
    /// The connection is closed after half the body.
    CloseMidBody,
    /// The answer comes after this long (longer than the client's timeout).
    Slow(Duration),
    /// The body is cut and is not valid JSON.
    MalformedJson,
}

impl Fault {
    /// Every kind, for "mixed" faults.
    pub fn all(slow: Duration) -> Vec<Fault> {
        vec![
            Fault::Status500,
            Fault::Status502,
            Fault::Status503,
            Fault::RetryAfterSeconds(1),
            Fault::RetryAfterDate(1),
            Fault::CloseMidBody,
            Fault::Slow(slow),
            Fault::MalformedJson,
        ]
    }

    pub fn parse(name: &str) -> Option<Fault> {
        Some(match name {
            "500" => Fault::Status500,
            "502" => Fault::Status502,
            "503" => Fault::Status503,
            "429" => Fault::RetryAfterSeconds(1),
            "429-date" => Fault::RetryAfterDate(1),
            "close" => Fault::CloseMidBody,
            "slow" => Fault::Slow(Duration::from_secs(5)),
            "malformed" => Fault::MalformedJson,
            _ => return None,
        })
    }
}

/// Which data requests fail, and how.
#[derive(Clone, Debug, Default)]
pub struct FaultConfig {
    /// The share of data requests that fail, 0.0 to 1.0.
    pub rate: f64,
    pub seed: u64,
    pub kinds: Vec<Fault>,
    /// Data requests (numbered from 0 in the order they come) that fail with the first
    /// kind, whatever the rate.
    pub at: Vec<u64>,
}

impl FaultConfig {
    /// The fault for the `n`-th data request, if any.
    pub fn pick(&self, n: u64) -> Option<Fault> {
        if self.at.contains(&n) {
            return self.kinds.first().copied();
        }
        if self.rate <= 0.0 || self.kinds.is_empty() {
            return None;
        }
        let r = splitmix64(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let unit = (r >> 11) as f64 / (1u64 << 53) as f64;
        (unit < self.rate).then(|| self.kinds[(splitmix64(r) % self.kinds.len() as u64) as usize])
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_close_to_the_rate() {
        let f = FaultConfig {
            rate: 0.05,
            seed: 7,
            kinds: Fault::all(Duration::from_secs(1)),
            ..Default::default()
        };
        let hits = (0..10_000).filter(|n| f.pick(*n).is_some()).count();
        assert!((400..600).contains(&hits), "{hits}");
        assert_eq!(f.pick(123), f.pick(123));
    }
}
