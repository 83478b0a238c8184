//! Which jobs are due, given the time: the scheduler's bookkeeping, free of clocks and I/O.
//!
//! Policies (documented in the README):
//! - **Never overlap.** A job still running when its next fire time comes skips that run
//!   (logged); the running one carries on.
//! - **Missed runs are coalesced.** Fire times that passed while the host slept, the clock
//!   jumped or the scheduler was busy produce one run, not one per missed time.
//! - **On start**, a job runs at once if it has an interrupted run to resume, or if a fire
//!   time passed since its last run started (it was missed while the scheduler was down, as
//!   systemd's `Persistent=true` does). A job that never ran waits for its first fire time.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// What the scheduler knows of a job when it starts.
#[derive(Clone, Debug)]
pub struct JobSchedule {
    pub job: String,
    pub schedule: cron::Schedule,
    pub timezone: Tz,
    /// When its last run started (any outcome), if it ever ran.
    pub last_run: Option<DateTime<Utc>>,
    /// Whether it has an interrupted run that the next run resumes.
    pub resumable: bool,
}

/// What to do about a job whose time came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Start a run. `missed` counts the fire times coalesced into it besides the last.
    Run {
        job: String,
        scheduled_for: DateTime<Utc>,
        missed: u32,
        why: Why,
    },
    /// The job is still running: this fire time is skipped.
    Skip {
        job: String,
        scheduled_for: DateTime<Utc>,
    },
}

/// Why a run starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Its fire time came.
    Scheduled,
    /// On start: an interrupted run to finish.
    Resume,
    /// On start: a fire time passed while the scheduler was not running.
    Missed,
}

#[derive(Debug)]
struct Entry {
    job: String,
    schedule: cron::Schedule,
    timezone: Tz,
    /// The next fire time; `None` when the schedule has no more.
    next: Option<DateTime<Utc>>,
    running: bool,
    /// A run decided at start, handed out by the first [`Plan::due`].
    at_start: Option<(Why, DateTime<Utc>)>,
}

/// The jobs' next fire times and which of them are running.
#[derive(Debug)]
pub struct Plan {
    entries: Vec<Entry>,
}

fn next_after(schedule: &cron::Schedule, tz: &Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule
        .after(&t.with_timezone(tz))
        .next()
        .map(|t| t.with_timezone(&Utc))
}

impl Plan {
    pub fn new(jobs: Vec<JobSchedule>, now: DateTime<Utc>) -> Plan {
        let entries = jobs
            .into_iter()
            .map(|j| {
                let at_start = if j.resumable {
                    Some((Why::Resume, now))
                } else {
                    j.last_run
                        .and_then(|last| next_after(&j.schedule, &j.timezone, last))
                        .filter(|missed| *missed <= now)
                        .map(|missed| (Why::Missed, missed))
                };
                Entry {
                    next: next_after(&j.schedule, &j.timezone, now),
                    job: j.job,
                    schedule: j.schedule,
                    timezone: j.timezone,
                    running: false,
                    at_start,
                }
            })
            .collect();
        Plan { entries }
    }

    /// Takes the schedules of a reloaded jobs directory: every job's next fire time is its
    /// new schedule's first after `now`; a job that is running stays running (it is not
    /// started twice), and one removed while running is kept, with no fire time, until it
    /// ends; a run decided at start and not handed out yet stays decided.
    pub fn replace(&mut self, jobs: Vec<JobSchedule>, now: DateTime<Utc>) {
        let mut old: std::collections::HashMap<String, Entry> =
            self.entries.drain(..).map(|e| (e.job.clone(), e)).collect();
        for j in jobs {
            let previous = old.remove(&j.job);
            self.entries.push(Entry {
                next: next_after(&j.schedule, &j.timezone, now),
                running: previous.as_ref().is_some_and(|e| e.running),
                at_start: previous.and_then(|e| e.at_start),
                job: j.job,
                schedule: j.schedule,
                timezone: j.timezone,
            });
        }
        for (_, e) in old.into_iter().filter(|(_, e)| e.running) {
            self.entries.push(Entry {
                next: None,
                at_start: None,
                ..e
            });
        }
    }

    /// The jobs due at `now`; each of them moves on to its first fire time after `now`.
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<Decision> {
        let mut out = Vec::new();
        for e in &mut self.entries {
            if let Some((why, scheduled_for)) = e.at_start.take() {
                e.running = true;
                out.push(Decision::Run {
                    job: e.job.clone(),
                    scheduled_for,
                    missed: 0,
                    why,
                });
                continue;
            }
            let Some(first) = e.next.filter(|t| *t <= now) else {
                continue;
            };
            // The fire times up to now: the last is the one run, the others are coalesced.
            let mut last = first;
            let mut missed = 0u32;
            for t in e.schedule.after(&first.with_timezone(&e.timezone)) {
                let t = t.with_timezone(&Utc);
                if t > now {
                    e.next = Some(t);
                    break;
                }
                last = t;
                missed += 1;
            }
            if e.next.is_some_and(|n| n <= now) {
                // The schedule ran out of fire times (its last year).
                e.next = None;
            }
            if e.running {
                out.push(Decision::Skip {
                    job: e.job.clone(),
                    scheduled_for: last,
                });
            } else {
                e.running = true;
                out.push(Decision::Run {
                    job: e.job.clone(),
                    scheduled_for: last,
                    missed,
                    why: Why::Scheduled,
                });
            }
        }
        out
    }

    /// Records that `job`'s run ended.
    pub fn finished(&mut self, job: &str) {
        for e in &mut self.entries {
            if e.job == job {
                e.running = false;
            }
        }
    }

    /// When the next job is due: now, for runs decided at start.
    pub fn next_wake(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.entries
            .iter()
            .filter_map(|e| {
                if e.at_start.is_some() {
                    Some(now)
                } else {
                    e.next
                }
            })
            .min()
    }

    pub fn is_running(&self, job: &str) -> bool {
        self.entries.iter().any(|e| e.job == job && e.running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn job(name: &str, cron: &str, tz: &str) -> JobSchedule {
        JobSchedule {
            job: name.into(),
            schedule: crate::schedule::parse(cron).unwrap(),
            timezone: tz.parse().unwrap(),
            last_run: None,
            resumable: false,
        }
    }

    fn run_at(d: &Decision) -> (String, DateTime<Utc>, u32) {
        match d {
            Decision::Run {
                job,
                scheduled_for,
                missed,
                ..
            } => (job.clone(), *scheduled_for, *missed),
            Decision::Skip { .. } => panic!("expected a run: {d:?}"),
        }
    }

    #[test]
    fn fires_at_each_fire_time_and_not_between() {
        let now = utc("2026-11-23T10:07:00Z");
        let mut plan = Plan::new(vec![job("a", "*/15 * * * *", "UTC")], now);
        assert!(
            plan.due(now).is_empty(),
            "a new job waits for its first fire time"
        );
        assert_eq!(plan.next_wake(now), Some(utc("2026-11-23T10:15:00Z")));
        assert!(plan.due(utc("2026-11-23T10:14:59Z")).is_empty());
        let d = plan.due(utc("2026-11-23T10:15:00Z"));
        assert_eq!(run_at(&d[0]), ("a".into(), utc("2026-11-23T10:15:00Z"), 0));
        plan.finished("a");
        assert_eq!(plan.next_wake(now), Some(utc("2026-11-23T10:30:00Z")));
    }

    #[test]
    fn a_running_job_skips_its_fire_time() {
        let now = utc("2026-11-23T10:07:00Z");
        let mut plan = Plan::new(vec![job("a", "*/15 * * * *", "UTC")], now);
        assert_eq!(plan.due(utc("2026-11-23T10:15:01Z")).len(), 1);
        assert!(plan.is_running("a"));
        let d = plan.due(utc("2026-11-23T10:30:00Z"));
        assert_eq!(
            d,
            vec![Decision::Skip {
                job: "a".into(),
                scheduled_for: utc("2026-11-23T10:30:00Z")
            }]
        );
        plan.finished("a");
        assert!(plan.due(utc("2026-11-23T10:31:00Z")).is_empty());
        assert_eq!(run_at(&plan.due(utc("2026-11-23T10:45:00Z"))[0]).2, 0);
    }

    #[test]
    fn fire_times_missed_while_asleep_make_one_run() {
        let now = utc("2026-11-23T10:07:00Z");
        let mut plan = Plan::new(vec![job("a", "*/15 * * * *", "UTC")], now);
        // Asleep from 10:07 to 13:07: 10:15 ... 13:00 passed, 12 fire times.
        let d = plan.due(utc("2026-11-23T13:07:00Z"));
        assert_eq!(d.len(), 1);
        assert_eq!(run_at(&d[0]), ("a".into(), utc("2026-11-23T13:00:00Z"), 11));
        plan.finished("a");
        assert_eq!(plan.next_wake(now), Some(utc("2026-11-23T13:15:00Z")));
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        // 02:30 in Madrid: 01:30 UTC in winter, 00:30 UTC in summer. On 2026-03-29 the
        // clocks jump from 02:00 to 03:00, so 02:30 does not exist that day.
        let now = utc("2026-03-27T12:00:00Z");
        let mut plan = Plan::new(vec![job("a", "30 2 * * *", "Europe/Madrid")], now);
        let mut fired = Vec::new();
        let mut t = now;
        while fired.len() < 3 {
            t = plan.next_wake(t).unwrap();
            for d in plan.due(t) {
                fired.push(run_at(&d).1);
                plan.finished("a");
            }
        }
        assert_eq!(
            fired,
            vec![
                utc("2026-03-28T01:30:00Z"),
                utc("2026-03-30T00:30:00Z"),
                utc("2026-03-31T00:30:00Z"),
            ]
        );
    }

    #[test]
    fn on_start_resumes_and_catches_up_but_never_ran_waits() {
        let now = utc("2026-11-23T10:07:00Z");
        let mut resumable = job("resume", "0 3 * * *", "UTC");
        resumable.resumable = true;
        let mut missed = job("missed", "0 3 * * *", "UTC");
        missed.last_run = Some(utc("2026-11-22T03:00:00Z"));
        let mut current = job("current", "0 3 * * *", "UTC");
        current.last_run = Some(utc("2026-11-23T03:00:04Z"));
        let never = job("never", "0 3 * * *", "UTC");
        let mut plan = Plan::new(vec![resumable, missed, current, never], now);
        assert_eq!(plan.next_wake(now), Some(now));
        let d = plan.due(now);
        assert_eq!(
            d,
            vec![
                Decision::Run {
                    job: "resume".into(),
                    scheduled_for: now,
                    missed: 0,
                    why: Why::Resume
                },
                Decision::Run {
                    job: "missed".into(),
                    scheduled_for: utc("2026-11-23T03:00:00Z"),
                    missed: 0,
                    why: Why::Missed
                },
            ]
        );
        assert!(plan.due(now).is_empty());
        assert_eq!(
            plan.next_wake(now),
            Some(Utc.with_ymd_and_hms(2026, 11, 24, 3, 0, 0).unwrap())
        );
    }

    #[test]
    fn a_reload_keeps_a_running_job_running_and_takes_the_new_times() {
        let start = utc("2026-11-23T10:00:00Z");
        let mut plan = Plan::new(
            vec![
                job("a", "*/10 * * * *", "UTC"),
                job("b", "0 12 * * *", "UTC"),
            ],
            start,
        );
        let at = utc("2026-11-23T10:10:00Z");
        assert_eq!(plan.due(at).len(), 1, "a runs at 10:10");
        assert!(plan.is_running("a"));
        // a every five minutes now, b gone, c new.
        plan.replace(
            vec![
                job("a", "*/5 * * * *", "UTC"),
                job("c", "30 10 * * *", "UTC"),
            ],
            at,
        );
        assert!(plan.is_running("a"), "not started twice");
        assert_eq!(plan.next_wake(at), Some(utc("2026-11-23T10:15:00Z")));
        let due = plan.due(utc("2026-11-23T10:15:00Z"));
        assert!(
            matches!(&due[..], [Decision::Skip { job, .. }] if job == "a"),
            "{due:?}"
        );
        plan.finished("a");
        let due = plan.due(utc("2026-11-23T10:30:00Z"));
        let jobs: Vec<_> = due.iter().map(|d| run_at(d).0).collect();
        assert_eq!(jobs, ["a", "c"]);
        let named = |d: &Decision| match d {
            Decision::Run { job, .. } | Decision::Skip { job, .. } => job.clone(),
        };
        let later = plan.due(utc("2026-11-23T12:00:00Z"));
        assert!(
            later.iter().all(|d| named(d) != "b"),
            "b is gone: {later:?}"
        );
    }
}
