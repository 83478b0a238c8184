//! Requests in flight at once: a fixed number, or a limit that tunes itself (the default).
//!
//! The adaptive limit is in the spirit of vector's adaptive request concurrency: one
//! controller per provider, shared by the provider's jobs in the process, that looks at
//! each observation period (about one round trip). A 429, a 5xx or a failed connection cuts
//! the limit by a tenth; when such answers are a fifth of the period's or more (a gateway's
//! cap), each of them does, and the limit stays below the one that drew them for a second. Otherwise the period's mean round trip is compared with the lowest
//! seen, the round trip without a queue, as TCP Vegas does: `in flight × (1 − lowest/mean)`
//! requests are waiting somewhere (in the server, or in this process when its cores are
//! busy); above a few the limit shrinks by one, below it a period that used every permit
//! raises it by one. Until the first queue or overload the limit doubles instead (TCP's slow
//! start), so a high-latency API gets its requests in flight within a few round trips.
//!
//! vector compares the period's round trip with a moving average of past ones instead; on a
//! machine whose cores are the bottleneck each doubling raised it by less than the average's
//! own drift, and the limit ran to its maximum without going faster.
//!
//! A permit is held for one attempt, from sending to the last byte of the body: a request
//! waiting out a `Retry-After` or a backoff holds none, so the others go on.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

mod control;

use control::Aimd;

/// The most requests a fixed or adaptive limit puts in flight.
pub const MAX: usize = 64;
/// Where an adaptive limit starts.
const INITIAL: usize = 4;

/// `concurrency` in a job file: a number of requests, or `"adaptive"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConcurrencyConfig {
    /// Tuned while the run goes, per provider (the default).
    #[default]
    Adaptive,
    /// Exactly this many requests in flight for each list of pages.
    Fixed(usize),
}

impl ConcurrencyConfig {
    /// The error for a value out of range, if it is.
    pub fn invalid(&self) -> Option<String> {
        match *self {
            ConcurrencyConfig::Fixed(n) if !(1..=MAX).contains(&n) => Some(format!(
                "{n} is out of range: expected 1-{MAX}, or \"adaptive\""
            )),
            _ => None,
        }
    }
}

impl fmt::Display for ConcurrencyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConcurrencyConfig::Adaptive => f.write_str("adaptive"),
            ConcurrencyConfig::Fixed(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for ConcurrencyConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ConcurrencyConfig::Adaptive => s.serialize_str("adaptive"),
            ConcurrencyConfig::Fixed(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for ConcurrencyConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ConcurrencyConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a number of requests (1-{MAX}) or \"adaptive\"")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(ConcurrencyConfig::Fixed(n.min(usize::MAX as u64) as usize))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Self::Value, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(n), &self)),
                }
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                match s {
                    "adaptive" => Ok(ConcurrencyConfig::Adaptive),
                    // Environment overrides arrive as text.
                    _ => match s.parse::<u64>() {
                        Ok(n) => self.visit_u64(n),
                        Err(_) => Err(E::invalid_value(serde::de::Unexpected::Str(s), &self)),
                    },
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl JsonSchema for ConcurrencyConfig {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Concurrency".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Requests in flight at once: \"adaptive\" (tuned per provider from round-trip times, 429s and 5xx, up to 64) or a fixed number.",
            "oneOf": [
                { "type": "integer", "minimum": 1, "maximum": MAX },
                { "const": "adaptive" }
            ],
            "examples": ["adaptive", 8]
        })
    }
}

impl ConcurrencyConfig {
    /// The runtime limit: a fixed one, or the provider's adaptive one, shared by its jobs in
    /// this process (as its rate limit is).
    pub fn build(&self, provider: &str) -> Concurrency {
        match *self {
            ConcurrencyConfig::Fixed(n) => Concurrency::Fixed(n),
            ConcurrencyConfig::Adaptive => {
                static GATES: OnceLock<Mutex<std::collections::HashMap<String, Gate>>> =
                    OnceLock::new();
                let mut gates = GATES
                    .get_or_init(Default::default)
                    .lock()
                    .expect("not poisoned");
                Concurrency::Adaptive(
                    gates
                        .entry(provider.to_string())
                        .or_insert_with(Gate::adaptive)
                        .clone(),
                )
            }
        }
    }
}

/// A job's limit at run time.
#[derive(Clone, Debug)]
pub enum Concurrency {
    Fixed(usize),
    /// The provider's gate.
    Adaptive(Gate),
}

impl Concurrency {
    /// The limit now and the highest it went: a fixed one's is itself.
    pub fn report(&self) -> ConcurrencyReport {
        match self {
            Concurrency::Fixed(n) => ConcurrencyReport {
                adaptive: false,
                limit: *n,
                peak: *n,
            },
            Concurrency::Adaptive(gate) => gate.report(),
        }
    }

    /// The gate for one list of pages: a fixed limit is each list's own; the adaptive one is
    /// the provider's.
    pub fn gate(&self) -> Gate {
        match self {
            Concurrency::Fixed(n) => Gate::fixed(*n),
            Concurrency::Adaptive(gate) => gate.clone(),
        }
    }
}

/// What an attempt's answer says about the server's load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// An answer: its round trip is a sample.
    Answered,
    /// 429, a 5xx, a failed connection or a timeout: fewer requests.
    Overloaded,
    /// Nothing about load (a 404, a refused certificate).
    Neutral,
}

/// Permits for requests in flight.
#[derive(Clone)]
pub struct Gate(Arc<Inner>);

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("limit", &self.limit())
            .field("adaptive", &self.0.control.is_some())
            .finish()
    }
}

struct Inner {
    semaphore: Arc<Semaphore>,
    /// `None`: a fixed limit.
    control: Option<Mutex<Aimd>>,
    limit: AtomicUsize,
    peak: AtomicUsize,
    /// Permits to forget as they come back: a cut below the permits in use.
    debt: AtomicUsize,
    in_flight: AtomicUsize,
}

/// One attempt's right to be in flight; dropped when its answer has been read.
pub struct Permit {
    gate: Gate,
    started: Instant,
    permit: Option<OwnedSemaphorePermit>,
}

/// What a gate has done, for the run report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConcurrencyReport {
    /// `true` when the limit tuned itself.
    pub adaptive: bool,
    /// The limit at the end of the run.
    pub limit: usize,
    /// The highest it went.
    pub peak: usize,
}

impl fmt::Display for ConcurrencyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.adaptive {
            true => write!(
                f,
                "adaptive, {} at the end, {} at most",
                self.limit, self.peak
            ),
            false => write!(f, "{} (fixed)", self.limit),
        }
    }
}

impl Gate {
    pub fn fixed(n: usize) -> Gate {
        Gate::new(n.max(1), None)
    }

    pub fn adaptive() -> Gate {
        Gate::new(INITIAL, Some(Mutex::new(Aimd::new(INITIAL))))
    }

    fn new(limit: usize, control: Option<Mutex<Aimd>>) -> Gate {
        Gate(Arc::new(Inner {
            semaphore: Arc::new(Semaphore::new(limit)),
            control,
            limit: AtomicUsize::new(limit),
            peak: AtomicUsize::new(limit),
            debt: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
        }))
    }

    /// The limit now.
    pub fn limit(&self) -> usize {
        self.0.limit.load(Ordering::Relaxed)
    }

    pub fn report(&self) -> ConcurrencyReport {
        ConcurrencyReport {
            adaptive: self.0.control.is_some(),
            limit: self.limit(),
            peak: self.0.peak.load(Ordering::Relaxed),
        }
    }

    /// Waits for a permit (first come, first served).
    pub async fn acquire(&self) -> Permit {
        let permit = self
            .0
            .semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let in_flight = self.0.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(control) = &self.0.control
            && in_flight >= self.limit()
        {
            control.lock().expect("not poisoned").saturated = true;
        }
        Permit {
            gate: self.clone(),
            started: Instant::now(),
            permit: Some(permit),
        }
    }

    /// Counts every permit as in use for this period: the caller holds answers that stand
    /// for requests in flight (pages waiting behind an earlier one) and stops at the limit.
    /// In the slow start too: with the held pages left out, at 20 ms the limit grew by one a
    /// period instead of doubling (1M records in 1.14-1.22 s against 0.90-0.97 s); the
    /// queue estimate still ends the slow start at the first request that waits.
    pub fn saturated(&self) {
        if let Some(control) = &self.0.control {
            control.lock().expect("not poisoned").saturated = true;
        }
    }

    /// Moves the limit to `to`: new permits at once; fewer as those in use come back.
    fn set_limit(&self, from: usize, to: usize) {
        let inner = &self.0;
        inner.limit.store(to, Ordering::Relaxed);
        inner.peak.fetch_max(to, Ordering::Relaxed);
        if to > from {
            let want = to - from;
            let mut add = want;
            // Pay the debt first: those permits were never forgotten.
            let _ = inner
                .debt
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                    let paid = d.min(want);
                    add = want - paid;
                    Some(d - paid)
                });
            inner.semaphore.add_permits(add);
        } else {
            let cut = from - to;
            let forgotten = inner.semaphore.forget_permits(cut);
            inner.debt.fetch_add(cut - forgotten, Ordering::Relaxed);
        }
        tracing::debug!(from, to, "concurrency");
    }
}

impl Permit {
    /// The gate it is of, for the attempts after this one.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The round trip starts now, as the request leaves: a wait before it (the rate
    /// limiter's, a login) says nothing of a queue at the server.
    pub fn restart(&mut self) {
        self.started = Instant::now();
    }

    /// Tells the controller how the attempt went; the permit goes back.
    pub fn finish(self, signal: Signal) {
        let Some(control) = &self.gate.0.control else {
            return;
        };
        let mut control = control.lock().expect("not poisoned");
        // Under the lock, so that changes apply in their order.
        let in_flight = self.gate.0.in_flight.load(Ordering::Relaxed);
        if let Some((from, to)) =
            control.observe(signal, self.started.elapsed(), in_flight, Instant::now())
        {
            self.gate.set_limit(from, to);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let inner = &self.gate.0;
        inner.in_flight.fetch_sub(1, Ordering::Relaxed);
        let owed = inner
            .debt
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1))
            .is_ok();
        if owed && let Some(permit) = self.permit.take() {
            permit.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn concurrency_is_adaptive_or_a_number_of_requests() {
        #[derive(Deserialize)]
        struct Job {
            #[serde(default)]
            concurrency: ConcurrencyConfig,
        }
        let parse = |text: &str| toml::from_str::<Job>(text).map(|j| j.concurrency);
        assert_eq!(parse("").unwrap(), ConcurrencyConfig::Adaptive);
        assert_eq!(
            parse("concurrency = \"adaptive\"").unwrap(),
            ConcurrencyConfig::Adaptive
        );
        assert_eq!(
            parse("concurrency = 8").unwrap(),
            ConcurrencyConfig::Fixed(8)
        );
        // An environment override arrives as text.
        assert_eq!(
            parse("concurrency = \"8\"").unwrap(),
            ConcurrencyConfig::Fixed(8)
        );
        let err = parse("concurrency = \"fast\"").unwrap_err().to_string();
        assert!(
            err.contains("a number of requests (1-64) or \"adaptive\""),
            "{err}"
        );
        assert!(parse("concurrency = -1").is_err());
        assert_eq!(
            ConcurrencyConfig::Fixed(0).invalid().unwrap(),
            "0 is out of range: expected 1-64, or \"adaptive\""
        );
        assert_eq!(ConcurrencyConfig::Fixed(64).invalid(), None);
        assert_eq!(
            serde_json::to_value(ConcurrencyConfig::Adaptive).unwrap(),
            "adaptive"
        );
        assert_eq!(
            serde_json::to_value(ConcurrencyConfig::Fixed(3)).unwrap(),
            3
        );
    }

    #[tokio::test]
    async fn a_cut_below_the_permits_in_use_takes_effect_as_they_come_back() {
        let gate = Gate::fixed(4);
        let held: Vec<Permit> =
            futures_util::future::join_all((0..4).map(|_| gate.acquire())).await;
        gate.set_limit(4, 2);
        assert_eq!(gate.0.semaphore.available_permits(), 0);
        drop(held);
        assert_eq!(gate.0.semaphore.available_permits(), 2);
        gate.set_limit(2, 5);
        assert_eq!(gate.0.semaphore.available_permits(), 5);
    }
}
