//! What a person at a terminal sees while a run goes: log lines on stderr, and above them a
//! live progress line. Nothing but the logs when stderr is not a terminal (cron, systemd,
//! Kubernetes, a pipe).

/// The progress bar being drawn, if any: log lines are written above it, not through it.
static BAR: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// Where log lines go: stderr, around the progress bar.
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR.lock().map(|b| b.clone()).unwrap_or(None);
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// A progress bar for a run on a terminal: pages, records, records/s, bytes, retries, the
/// concurrency limit. Nothing
/// at all when stderr is not a terminal (cron, systemd, Kubernetes, a pipe).
pub struct ProgressDisplay {
    bar: Option<(indicatif::ProgressBar, tokio::task::JoinHandle<()>)>,
}

impl ProgressDisplay {
    pub fn start(rt: &tokio::runtime::Runtime, job: &crate::run::Job) -> ProgressDisplay {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return ProgressDisplay { bar: None };
        }
        let bar = indicatif::ProgressBar::new_spinner().with_prefix(job.name.clone());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {prefix} {elapsed_precise} {msg}")
                .expect("a valid template"),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        if let Ok(mut slot) = BAR.lock() {
            *slot = Some(bar.clone());
        }
        let handle = job.progress();
        let ticker = {
            let bar = bar.clone();
            rt.spawn(async move {
                let started = std::time::Instant::now();
                let mut barred = false;
                loop {
                    let p = handle.read();
                    if let Some((done, slices)) = p.slices {
                        // A sliced run: slices done of all, with the time left.
                        if !barred {
                            bar.set_style(
                                indicatif::ProgressStyle::with_template(
                                    "{spinner} {prefix} {elapsed_precise} [{bar:30}] {pos}/{len} \
                                     slices {eta_known}{msg}",
                                )
                                .expect("a valid template")
                                .with_key("eta_known", eta_known)
                                .progress_chars("=> "),
                            );
                            barred = true;
                        }
                        bar.set_length(slices);
                        bar.set_position(done.min(slices));
                    } else if let Some(stated) = p.stated {
                        // The API said how many: a bar with percent and time left.
                        if !barred {
                            bar.set_style(
                                indicatif::ProgressStyle::with_template(
                                    "{spinner} {prefix} {elapsed_precise} [{bar:30}] {percent}% \
                                     {eta_known}{msg}",
                                )
                                .expect("a valid template")
                                .with_key("eta_known", eta_known)
                                .progress_chars("=> "),
                            );
                            barred = true;
                        }
                        bar.set_length(stated);
                        bar.set_position((p.committed_before + p.records).min(stated));
                    }
                    let rate = p.records as f64 / started.elapsed().as_secs_f64().max(0.001);
                    bar.set_message(format!(
                        "{} pages, {} records, {:.0} records/s, {}, {} retries, {} in flight at most",
                        p.pages,
                        p.records,
                        rate,
                        indicatif::HumanBytes(p.bytes),
                        p.retries,
                        p.concurrency
                    ));
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
            })
        };
        ProgressDisplay {
            bar: Some((bar, ticker)),
        }
    }

    pub fn finish(self) {
        if let Some((bar, ticker)) = self.bar {
            ticker.abort();
            bar.finish_and_clear();
            if let Ok(mut slot) = BAR.lock() {
                *slot = None;
            }
        }
    }
}

/// `ETA 42s `, once there is a rate to estimate from; nothing before (at 0 % the estimate
/// would say "0s").
fn eta_known(state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write) {
    if state.pos() > 0 {
        let _ = write!(w, "ETA {:#} ", indicatif::HumanDuration(state.eta()));
    }
}

/// Logs to stderr, around the progress bar: text (`json = false`) or one JSON object per
/// line; `RUST_LOG` overrides `level`.
pub fn init_logging(level: &str, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // Our own events at the chosen level; dependencies only when they warn.
        EnvFilter::new(format!("warn,apisnap={level}"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogWriter)
        // Colours for a person at a terminal; plain text in files and journals.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.with_target(false).init();
    }
}
