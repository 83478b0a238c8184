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
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The most requests a fixed or adaptive limit puts in flight.
pub const MAX: usize = 64;
/// Where an adaptive limit starts.
const INITIAL: usize = 4;
/// Each overloaded answer keeps this share of the limit (at least one less in all).
const DECREASE: f64 = 0.9;
/// Requests queued (see [`Aimd::observe`]) below which the limit grows, and above which it
/// shrinks by one, each times log10 of the limit (Netflix's concurrency-limits' Vegas).
const QUEUE_LOW: f64 = 3.0;
const QUEUE_HIGH: f64 = 6.0;
/// The share of a period's answers that are refusals from which they count as clustered
/// (a cap being hit) rather than scattered (a flaky upstream).
const CLUSTERED: f64 = 0.2;
/// After clustered refusals at some limit, the limit stays below it this long before it probes
/// that high again: a gateway's cap answers every request past it at once, so each probe
/// costs refusals.
const HOLD: Duration = Duration::from_secs(1);
/// Requests queued at which slow start ends.
const SLOW_START_QUEUE: f64 = 1.0;
/// How fast the round trip without a queue is forgotten: its value rises by this share per
/// second since it was seen.
const BASE_AGING: f64 = 0.05;
/// How often the limit is halved for [`PROBE_PERIODS`] periods once the slow start is over,
/// so that the round trip is measured with the queue this process makes drained (BBR's
/// PROBE_RTT): without it, against a server kept queued, the aging base catches up with
/// the queued round trip and the limit creeps up for good (to 64 within two minutes against
/// four workers).
const PROBE_EVERY: Duration = Duration::from_secs(10);
/// Periods a probe lasts: the first one's answers are of requests sent before the cut.
const PROBE_PERIODS: u32 = 2;
/// The shortest observation period.
const MIN_PERIOD: Duration = Duration::from_millis(2);

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

/// The adaptive controller's state.
#[derive(Debug)]
struct Aimd {
    limit: usize,
    /// Doubling until the first sign of a queue or of overload.
    slow_start: bool,
    period_start: Option<Instant>,
    /// The period's round trips: their sum (seconds) and number.
    sum: f64,
    samples: u32,
    /// Answers of the period that said the server is overloaded.
    overloaded: u32,
    /// The requests in flight as each answer of the period came, added up.
    in_flight: f64,
    /// Every permit was in use at some moment of the period (or the caller said so: see
    /// [`Gate::saturated`]).
    saturated: bool,
    /// The lowest period mean round trip seen (seconds), and when it was seen: the round trip
    /// without a queue. It ages (see [`BASE_AGING`]) so that a server that has become slower
    /// for good is taken as it is after a while.
    base: Option<(f64, Instant)>,
    /// The limit at the last overload, and when.
    ceiling: Option<(usize, Instant)>,
    probe: Probe,
}

/// Where the controller is in its round-trip probes (see [`PROBE_EVERY`]).
#[derive(Debug, Clone, Copy)]
enum Probe {
    /// The last probe ended then (or the controller started).
    Since(Instant),
    /// The limit is halved; `restore` comes back after `left` more periods.
    Probing { restore: usize, left: u32 },
}

impl Aimd {
    fn new(limit: usize) -> Aimd {
        Aimd {
            limit,
            slow_start: true,
            period_start: None,
            sum: 0.0,
            samples: 0,
            overloaded: 0,
            in_flight: 0.0,
            saturated: false,
            base: None,
            ceiling: None,
            probe: Probe::Since(Instant::now()),
        }
    }

    /// Takes one attempt's outcome; at the end of a period returns the limit's change.
    fn observe(
        &mut self,
        signal: Signal,
        rtt: Duration,
        in_flight: usize,
        now: Instant,
    ) -> Option<(usize, usize)> {
        let start = *self.period_start.get_or_insert(now - rtt);
        match signal {
            Signal::Answered => {
                self.sum += rtt.as_secs_f64();
                self.samples += 1;
                self.in_flight += in_flight as f64;
            }
            Signal::Overloaded => self.overloaded += 1,
            Signal::Neutral => {}
        }
        let period = self
            .base
            .map(|(base, _)| Duration::from_secs_f64(base))
            .unwrap_or(rtt)
            .max(MIN_PERIOD);
        if now.duration_since(start) < period || (self.samples == 0 && self.overloaded == 0) {
            return None;
        }
        let previous = self.limit;
        // The limit the rules below start from: the one before a probe, if one ends.
        let mut from = previous;
        let current = (self.samples > 0).then(|| self.sum / self.samples as f64);
        if let Some(current) = current {
            self.base = Some(match self.base {
                Some((base, since)) => {
                    let aged = base * (1.0 + BASE_AGING * now.duration_since(since).as_secs_f64());
                    if current <= aged {
                        (current, now)
                    } else {
                        (base, since)
                    }
                }
                None => (current, now),
            });
        }
        // Requests waiting in a queue somewhere (TCP Vegas): those in flight times the share
        // of the round trip above the round trip without a queue.
        let queue = match (current, self.base) {
            (Some(current), Some((base, _))) if current > 0.0 => {
                let in_flight = self.in_flight / self.samples as f64;
                in_flight * (1.0 - base / current).max(0.0)
            }
            _ => 0.0,
        };
        let answers = self.samples + self.overloaded;
        let refused = self.overloaded as f64 / answers.max(1) as f64;
        let log = (from as f64).log10().max(0.5);
        let (alpha, beta) = (QUEUE_LOW * log, QUEUE_HIGH * log);
        tracing::trace!(
            limit = from,
            rtt_ms = current.map(|c| c * 1000.0),
            base_ms = self.base.map(|b| b.0 * 1000.0),
            queue,
            self.overloaded,
            self.saturated,
            "period"
        );
        match self.probe {
            Probe::Probing { restore, left } if self.overloaded == 0 => {
                // The halved periods are for the base round trip (taken above), not for
                // the rules below.
                self.probe = match left {
                    0 | 1 => {
                        self.limit = restore;
                        Probe::Since(now)
                    }
                    _ => Probe::Probing {
                        restore,
                        left: left - 1,
                    },
                };
                return self.close_period(now, previous);
            }
            Probe::Probing { restore, .. } => {
                // Overloaded even at half: the rules below cut from the limit before it.
                self.probe = Probe::Since(now);
                from = restore;
            }
            Probe::Since(since) => {
                if !self.slow_start
                    && self.overloaded == 0
                    && from >= 4
                    && now.duration_since(since) >= PROBE_EVERY
                {
                    self.probe = Probe::Probing {
                        restore: from,
                        left: PROBE_PERIODS,
                    };
                    self.limit = from / 2;
                    return self.close_period(now, previous);
                }
            }
        }
        if self.overloaded > 0 {
            self.slow_start = false;
            if refused >= CLUSTERED {
                // Refusals that cluster (a limit past a gateway's cap): a tenth for each,
                // and the limit that drew them is not probed again for a while.
                let kept = DECREASE.powi(self.overloaded.min(64) as i32);
                self.limit = ((from as f64 * kept) as usize).min(from - 1).max(1);
                self.ceiling = Some((from, now));
            } else {
                // A few among many answers (a flaky upstream): one tenth for the period.
                self.limit = ((from as f64 * DECREASE) as usize).min(from - 1).max(1);
            }
        } else if queue > beta {
            self.slow_start = false;
            self.limit = (from - 1).max(1);
        } else if queue >= alpha || (self.slow_start && queue >= SLOW_START_QUEUE) {
            // Doubling stops at the first request that waits: a doubling past that point
            // only fills memory with answers the decoder is not ready for.
            self.slow_start = false;
        } else if self.saturated {
            let below = match self.ceiling {
                Some((ceiling, at)) if now.duration_since(at) < HOLD => ceiling - 1,
                _ => MAX,
            };
            self.limit = match self.slow_start {
                true => from * 2,
                false => from + 1,
            }
            .min(below.max(from))
            .min(MAX);
        }
        self.close_period(now, previous)
    }

    /// Starts the next period; the limit's change, if any, from `from` (the gate's limit
    /// until now).
    fn close_period(&mut self, now: Instant, from: usize) -> Option<(usize, usize)> {
        self.period_start = Some(now);
        self.sum = 0.0;
        self.samples = 0;
        self.overloaded = 0;
        self.in_flight = 0.0;
        self.saturated = false;
        (self.limit != from).then_some((from, self.limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(aimd: &mut Aimd, at: &mut Instant, rtt_ms: u64, signal: Signal, saturated: bool) {
        aimd.saturated = saturated;
        // A period lasts about the long-run round trip: these last longer.
        *at += Duration::from_millis(rtt_ms * 2 + 3);
        let in_flight = aimd.limit;
        aimd.observe(signal, Duration::from_millis(rtt_ms), in_flight, *at);
    }

    /// Two minutes against a server of four workers of 20 ms each (past four requests in
    /// flight, each waits its turn), every permit in use; the highest limit of the second
    /// minute.
    fn against_four_workers(aimd: &mut Aimd) -> usize {
        let start = Instant::now();
        let mut at = start;
        let mut highest = 0;
        while at.duration_since(start) < Duration::from_secs(120) {
            let rtt = Duration::from_secs_f64(0.020 * (aimd.limit as f64 / 4.0).max(1.0));
            at += rtt;
            aimd.saturated = true;
            let in_flight = aimd.limit;
            aimd.observe(Signal::Answered, rtt, in_flight, at);
            if at.duration_since(start) > Duration::from_secs(60) {
                highest = highest.max(aimd.limit);
            }
        }
        highest
    }

    #[test]
    fn every_ten_seconds_the_limit_is_halved_for_two_periods_then_restored() {
        let mut aimd = Aimd::new(20);
        aimd.slow_start = false;
        let start = Instant::now();
        let mut at = start;
        aimd.base = Some((0.020, at));
        // Not every permit in use: nothing else moves the limit.
        let mut limits = Vec::new();
        while at.duration_since(start) < Duration::from_millis(10_200) {
            period(&mut aimd, &mut at, 20, Signal::Answered, false);
            limits.push(aimd.limit);
        }
        let halved: Vec<usize> = limits.iter().copied().filter(|&l| l != 20).collect();
        assert_eq!(halved, [10, 10], "{limits:?}");
        assert_eq!(aimd.limit, 20);
    }

    #[test]
    fn a_server_kept_queued_does_not_draw_the_limit_up_over_minutes() {
        let highest = against_four_workers(&mut Aimd::new(INITIAL));
        assert!(highest <= 12, "{highest}");
    }

    #[test]
    fn the_limit_doubles_while_round_trips_hold_then_grows_by_one_after_a_cut() {
        let mut aimd = Aimd::new(4);
        let mut at = Instant::now();
        for _ in 0..3 {
            period(&mut aimd, &mut at, 20, Signal::Answered, true);
        }
        assert_eq!(aimd.limit, 32);
        period(&mut aimd, &mut at, 20, Signal::Overloaded, true);
        assert_eq!(aimd.limit, 28);
        period(&mut aimd, &mut at, 20, Signal::Answered, true);
        assert_eq!(aimd.limit, 29);
        // Not every permit used: no reason to raise it.
        period(&mut aimd, &mut at, 20, Signal::Answered, false);
        assert_eq!(aimd.limit, 29);
        // Below the limit of the overload for a second, then probing again.
        for _ in 0..10 {
            period(&mut aimd, &mut at, 20, Signal::Answered, true);
        }
        assert_eq!(aimd.limit, 31);
        for _ in 0..20 {
            period(&mut aimd, &mut at, 20, Signal::Answered, true);
        }
        assert!(aimd.limit > 32, "{}", aimd.limit);
    }

    #[test]
    fn scattered_refusals_cut_once_a_period_and_hold_nothing_back() {
        let mut aimd = Aimd::new(40);
        aimd.slow_start = false;
        let mut at = Instant::now();
        aimd.base = Some((0.020, at));
        aimd.period_start = Some(at);
        // One period of 20 ms: 19 answers and one 503.
        for i in 1..=20 {
            at += Duration::from_millis(1);
            let signal = if i == 10 {
                Signal::Overloaded
            } else {
                Signal::Answered
            };
            aimd.saturated = true;
            aimd.observe(signal, Duration::from_millis(20), 40, at);
        }
        assert_eq!(aimd.limit, 36);
        assert!(aimd.ceiling.is_none());
        for _ in 0..5 {
            period(&mut aimd, &mut at, 20, Signal::Answered, true);
        }
        assert_eq!(aimd.limit, 41);
    }

    #[test]
    fn rising_round_trips_cut_the_limit_and_noise_does_not() {
        let mut aimd = Aimd::new(8);
        let mut at = Instant::now();
        aimd.slow_start = false;
        for rtt in [20, 21, 19, 20, 22] {
            period(&mut aimd, &mut at, rtt, Signal::Answered, true);
        }
        assert_eq!(aimd.limit, 13);
        // Three times the round trip without a queue: requests are waiting.
        period(&mut aimd, &mut at, 60, Signal::Answered, true);
        assert_eq!(aimd.limit, 12);
        for _ in 0..5 {
            period(&mut aimd, &mut at, 60, Signal::Answered, true);
        }
        let low = aimd.limit;
        assert!(low <= 8, "{low}");
        // A server slower for good: once its round trip is the norm, the limit grows again.
        for _ in 0..600 {
            period(&mut aimd, &mut at, 60, Signal::Answered, true);
        }
        assert!(aimd.limit > low + 10, "{} after {low}", aimd.limit);
    }

    #[test]
    fn the_limit_stays_between_one_and_the_maximum() {
        let mut aimd = Aimd::new(2);
        let mut at = Instant::now();
        for _ in 0..5 {
            period(&mut aimd, &mut at, 5, Signal::Overloaded, true);
        }
        assert_eq!(aimd.limit, 1);
        for _ in 0..200 {
            period(&mut aimd, &mut at, 5, Signal::Answered, true);
        }
        assert_eq!(aimd.limit, MAX);
    }

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
