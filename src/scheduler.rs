//! `apisnap schedule`: sleep until the next fire time, run what is due, repeat; stop cleanly
//! on request.
//!
//! Runs are tasks of their own, so a long job never delays another job's fire time; the
//! [`Plan`] keeps a job from overlapping itself. A stop request reaches the running jobs
//! through their own stop signal (they commit whole pages and keep a resumable checkpoint),
//! and the daemon returns once they have ended.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};

use crate::Error;
use crate::run::RunSummary;
use crate::schedule::{Decision, JobSchedule, Plan, Why};

/// What the scheduler needs of a job: its schedule, and from its state whether it has an
/// interrupted run and when it last ran. `None` for a job without a schedule.
pub async fn job_schedule(
    def: &crate::config::JobDefinition,
) -> Result<Option<JobSchedule>, crate::Error> {
    let Some(config) = &def.job.schedule else {
        return Ok(None);
    };
    // Validated when the file was loaded.
    let (schedule, timezone) = config.build().map_err(|message| crate::Error::Internal {
        job: def.name.clone(),
        message,
    })?;
    let state_error = |source| crate::Error::State {
        job: def.name.clone(),
        source,
    };
    let store =
        crate::checkpoint::StateStore::open(&def.job.state_dir, &def.name).map_err(state_error)?;
    let state = store.load().await.map_err(state_error)?;
    let last_run = crate::report::read(&store)
        .await
        .map(|r| r.started_at)
        .or_else(|| state.history.first().map(|r| r.finished_at));
    Ok(Some(JobSchedule {
        job: def.name.clone(),
        schedule,
        timezone,
        last_run,
        resumable: state.in_progress.is_some(),
    }))
}

/// The scheduler's notion of time, so tests can move it by hand.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    /// Returns at `t`, or earlier: the caller looks at [`Clock::now`] again either way.
    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The wall clock.
pub struct SystemClock;

/// The longest single sleep. Timers run on the monotonic clock, which stands still while the
/// host is suspended and ignores changes of the wall clock; waking every minute notices both.
const MAX_SLEEP: Duration = Duration::from_secs(60);

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let wait = (t - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(wait.min(MAX_SLEEP)))
    }
}

/// A clock moved by hand (tests): sleeping waits until [`ManualClock::set`] reaches the time.
pub struct ManualClock {
    now: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: watch::Sender::new(start),
        })
    }

    pub fn set(&self, t: DateTime<Utc>) {
        self.now.send_replace(t);
    }
}

impl Clock for Arc<ManualClock> {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|now| *now >= t).await;
        })
    }
}

/// What the scheduler does, as it does it (also logged).
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Waiting for the next fire time (`None`: no job has one left).
    Sleeping { until: Option<DateTime<Utc>> },
    Started {
        job: String,
        scheduled_for: DateTime<Utc>,
        /// Fire times coalesced into this run besides its own.
        missed: u32,
        why: Why,
    },
    /// The job was still running at this fire time.
    Skipped {
        job: String,
        scheduled_for: DateTime<Utc>,
    },
    Finished {
        job: String,
        exit_code: u8,
        records: Option<u64>,
        error: Option<String>,
    },
    /// The jobs directory was read again (SIGHUP): the jobs scheduled now.
    Reloaded { jobs: Vec<String> },
    /// A stop was requested and every run has ended.
    Stopped,
}

/// Runs one job now: the scheduler's only way to do work.
pub type RunJob = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<RunSummary, Error>> + Send>> + Send + Sync,
>;

pub struct Daemon<C: Clock> {
    clock: C,
    plan: Plan,
    run: RunJob,
    events: Option<mpsc::UnboundedSender<Event>>,
    reloads: Option<mpsc::UnboundedReceiver<Vec<JobSchedule>>>,
}

/// How the scheduler's life went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DaemonReport {
    pub runs: u64,
    pub failed: u64,
    /// Runs stopped by the stop request; they resume on their next run.
    pub interrupted: u64,
    pub skipped: u64,
}

impl<C: Clock> Daemon<C> {
    pub fn new(clock: C, plan: Plan, run: RunJob) -> Self {
        Daemon {
            clock,
            plan,
            run,
            events: None,
            reloads: None,
        }
    }

    /// Takes new schedules from here (the jobs directory read again on SIGHUP).
    pub fn with_reloads(mut self, reloads: mpsc::UnboundedReceiver<Vec<JobSchedule>>) -> Self {
        self.reloads = Some(reloads);
        self
    }

    /// Also sends every [`Event`] here.
    pub fn with_events(mut self, events: mpsc::UnboundedSender<Event>) -> Self {
        self.events = Some(events);
        self
    }

    fn emit(&self, event: Event) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    /// Runs jobs as they come due until `stop` turns true, then waits for the running ones
    /// (which see the same signal and stop at their next commit point).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> DaemonReport {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let mut report = DaemonReport::default();
        let mut running = 0usize;
        loop {
            let now = self.clock.now();
            for decision in self.plan.due(now) {
                match decision {
                    Decision::Run {
                        job,
                        scheduled_for,
                        missed,
                        why,
                    } => {
                        match why {
                            Why::Resume => {
                                tracing::info!(job = %job, "resuming the interrupted run")
                            }
                            Why::Missed => {
                                tracing::warn!(job = %job, scheduled_for = %scheduled_for, "the run due while the scheduler was not running: running it now")
                            }
                            Why::Scheduled if missed > 0 => {
                                tracing::warn!(job = %job, scheduled_for = %scheduled_for, missed, "fire times passed while the host slept or the clock jumped: running once for all of them")
                            }
                            Why::Scheduled => {
                                tracing::info!(job = %job, scheduled_for = %scheduled_for, "starting the scheduled run")
                            }
                        }
                        self.emit(Event::Started {
                            job: job.clone(),
                            scheduled_for,
                            missed,
                            why,
                        });
                        running += 1;
                        report.runs += 1;
                        let run = self.run.clone();
                        let done = done_tx.clone();
                        tokio::spawn(async move {
                            let result = run(job.clone()).await;
                            let _ = done.send((job, result));
                        });
                    }
                    Decision::Skip { job, scheduled_for } => {
                        tracing::warn!(job = %job, scheduled_for = %scheduled_for, "the previous run is still going: skipping this one");
                        report.skipped += 1;
                        self.emit(Event::Skipped { job, scheduled_for });
                    }
                }
            }
            let wake = self.plan.next_wake(now);
            tracing::debug!(until = ?wake, "sleeping");
            self.emit(Event::Sleeping { until: wake });
            let clock = &self.clock;
            let sleep = async {
                match wake {
                    Some(t) => clock.sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            let reloads = &mut self.reloads;
            let reload = async {
                match reloads {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                Some((job, result)) = done_rx.recv() => {
                    running -= 1;
                    self.finished(&job, result, &mut report);
                }
                Some(jobs) = reload => {
                    let names: Vec<String> = jobs.iter().map(|j| j.job.clone()).collect();
                    self.plan.replace(jobs, self.clock.now());
                    tracing::info!(jobs = %names.join(", "), next = ?self.plan.next_wake(self.clock.now()), "reloaded the jobs directory");
                    self.emit(Event::Reloaded { jobs: names });
                }
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        if running > 0 {
            tracing::info!(
                running,
                "stop requested: waiting for the running jobs to commit"
            );
        }
        while running > 0 {
            let Some((job, result)) = done_rx.recv().await else {
                break;
            };
            running -= 1;
            self.finished(&job, result, &mut report);
        }
        tracing::info!(
            runs = report.runs,
            failed = report.failed,
            interrupted = report.interrupted,
            skipped = report.skipped,
            "scheduler stopped"
        );
        self.emit(Event::Stopped);
        report
    }

    fn finished(
        &mut self,
        job: &str,
        result: Result<RunSummary, Error>,
        report: &mut DaemonReport,
    ) {
        self.plan.finished(job);
        let event = match result {
            Ok(summary) => Event::Finished {
                job: job.to_string(),
                exit_code: 0,
                records: Some(summary.records),
                error: None,
            },
            Err(e) => {
                if matches!(e, Error::Interrupted { .. }) {
                    report.interrupted += 1;
                    tracing::warn!(job, "stopped at a commit point; the next run resumes it");
                } else {
                    report.failed += 1;
                    tracing::error!(job, exit_code = e.exit_code(), error = %e, "the run failed");
                }
                Event::Finished {
                    job: job.to_string(),
                    exit_code: e.exit_code(),
                    records: None,
                    error: Some(e.to_string()),
                }
            }
        };
        self.emit(event);
    }
}
