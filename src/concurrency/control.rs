//! The adaptive controller: what each observation period's round trips and overloads do
//! to the limit (see the parent module for the rules and why).

use std::time::{Duration, Instant};

use super::{MAX, Signal};

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

/// The adaptive controller's state.
#[derive(Debug)]
pub(super) struct Aimd {
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
    pub(super) saturated: bool,
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
    pub(super) fn new(limit: usize) -> Aimd {
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
    pub(super) fn observe(
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
        let highest = against_four_workers(&mut Aimd::new(crate::concurrency::INITIAL));
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
}
