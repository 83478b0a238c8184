//! systemd: `apisnap-<job>.service` (a hardened oneshot) and `apisnap-<job>.timer`.
//!
//! The timer's `OnCalendar=` is rendered from the same parsed expression the scheduler uses
//! ([`CronFields`]), so systemd and `apisnap next` agree; `tests/deploy.rs` checks that
//! against `systemd-analyze calendar`. Secrets reach the service with `LoadCredential=`:
//! systemd copies each file into the service's private `$CREDENTIALS_DIRECTORY`, where an
//! `env:NAME` secret that is not in the environment is read as the file `NAME`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{DeployError, Deployable, Rendered};
use crate::schedule::CronFields;
use crate::schedule::expr::{list, step};

/// Where things are on the target host.
#[derive(Clone, Debug, clap::Args)]
pub struct SystemdOptions {
    /// The apisnap binary on the target host.
    #[arg(long, default_value = "/usr/local/bin/apisnap")]
    pub bin: PathBuf,
    /// The jobs directory on the target host (job files and `providers/`).
    #[arg(
        long = "target-jobs-dir",
        id = "target_jobs_dir",
        default_value = "/etc/apisnap/jobs"
    )]
    pub jobs_dir: PathBuf,
    /// The working directory on the target host (relative output and state go there).
    #[arg(long, default_value = "/var/lib/apisnap")]
    pub workdir: PathBuf,
    /// The directory of credential files on the target host, one per secret variable.
    #[arg(long, default_value = "/etc/apisnap/credentials")]
    pub credentials_dir: PathBuf,
    /// Run as this user instead of a dynamic one.
    #[arg(long)]
    pub user: Option<String>,
    /// Spread each start over up to this many seconds (many hosts, one API).
    #[arg(long)]
    pub randomized_delay_secs: Option<u64>,
    /// node_exporter's textfile collector directory (passed as --metrics-dir).
    #[arg(long)]
    pub metrics_dir: Option<PathBuf>,
    /// How long a stop may take: the run commits its whole pages first.
    #[arg(skip = 120u64)]
    pub stop_timeout_secs: u64,
}

impl Default for SystemdOptions {
    fn default() -> Self {
        SystemdOptions {
            bin: "/usr/local/bin/apisnap".into(),
            jobs_dir: "/etc/apisnap/jobs".into(),
            workdir: "/var/lib/apisnap".into(),
            credentials_dir: "/etc/apisnap/credentials".into(),
            user: None,
            randomized_delay_secs: None,
            metrics_dir: None,
            stop_timeout_secs: 120,
        }
    }
}

/// The `.service` and `.timer` of each job.
pub fn render(jobs: &[Deployable], options: &SystemdOptions) -> Result<Vec<Rendered>, DeployError> {
    let mut out = Vec::new();
    for job in jobs {
        let calendar = on_calendar(&job.fields, &job.timezone).map_err(|message| DeployError {
            file: job.file.clone(),
            message: format!("field `schedule.cron`: {message}"),
        })?;
        out.push(Rendered {
            file: format!("apisnap-{}.service", job.name),
            text: service(job, options),
        });
        out.push(Rendered {
            file: format!("apisnap-{}.timer", job.name),
            text: timer(job, &calendar, options),
        });
    }
    Ok(out)
}

fn service(job: &Deployable, o: &SystemdOptions) -> String {
    let mut s = String::new();
    let what = job.description.as_deref().unwrap_or("a snapshot");
    let _ = writeln!(
        s,
        "# Rendered by `apisnap deploy systemd` from {}.",
        job.job_file
    );
    let _ = writeln!(s, "[Unit]");
    let _ = writeln!(s, "Description=apisnap {}: {}", job.name, escape(what));
    let _ = writeln!(s, "Wants=network-online.target");
    let _ = writeln!(s, "After=network-online.target");
    let _ = writeln!(s);
    let _ = writeln!(s, "[Service]");
    let _ = writeln!(s, "Type=oneshot");
    let mut args = vec![
        o.bin.display().to_string(),
        "--log-format".into(),
        "json".into(),
    ];
    if let Some(dir) = &o.metrics_dir {
        args.extend(["--metrics-dir".into(), dir.display().to_string()]);
    }
    args.extend([
        "run".into(),
        "--jobs-dir".into(),
        o.jobs_dir.display().to_string(),
        job.name.clone(),
    ]);
    let args: Vec<String> = args.iter().map(|a| quote(a)).collect();
    let _ = writeln!(s, "ExecStart={}", args.join(" "));
    let _ = writeln!(s, "WorkingDirectory={}", o.workdir.display());
    match &o.user {
        Some(user) => {
            let _ = writeln!(s, "User={user}");
            let _ = writeln!(s, "Group={user}");
        }
        None => {
            let _ = writeln!(s, "DynamicUser=yes");
        }
    }
    // Directories systemd creates and hands to the (possibly dynamic) user.
    if let Ok(rest) = o.workdir.strip_prefix("/var/lib") {
        let _ = writeln!(s, "StateDirectory={}", rest.display());
    }
    let _ = writeln!(s, "CacheDirectory=apisnap");
    let _ = writeln!(s, "Environment=XDG_CACHE_HOME=/var/cache/apisnap");
    for var in &job.secret_vars {
        let _ = writeln!(
            s,
            "LoadCredential={var}:{}",
            o.credentials_dir.join(var).display()
        );
    }
    // Object storage needs no path here, only the network.
    let mut writable: Vec<PathBuf> = [&job.output_root, &job.state_dir]
        .into_iter()
        .filter_map(|p| crate::storage::local_dir(&p.to_string_lossy()))
        .map(|p| resolve(&o.workdir, &p))
        .collect();
    if o.workdir.strip_prefix("/var/lib").is_err() {
        writable.insert(0, o.workdir.clone());
    }
    if let Some(dir) = &o.metrics_dir {
        writable.push(dir.clone());
    }
    writable.dedup();
    // `-`: a path not created yet is no error; apisnap creates it inside the writable ones.
    let writable: Vec<String> = writable
        .iter()
        .map(|p| format!("-{}", quote(&p.display().to_string())))
        .collect();
    let _ = writeln!(s, "ReadWritePaths={}", writable.join(" "));
    for line in [
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "NoNewPrivileges=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "CapabilityBoundingSet=",
        "UMask=0027",
    ] {
        let _ = writeln!(s, "{line}");
    }
    let _ = writeln!(
        s,
        "# SIGTERM stops the run at a page boundary (exit 130) with its checkpoint resumable."
    );
    let _ = writeln!(s, "TimeoutStopSec={}", o.stop_timeout_secs);
    s
}

fn timer(job: &Deployable, calendar: &str, o: &SystemdOptions) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Rendered by `apisnap deploy systemd` from {}.",
        job.job_file
    );
    let _ = writeln!(s, "[Unit]");
    let _ = writeln!(
        s,
        "Description=apisnap {} at `{}` ({})",
        job.name,
        escape(&job.cron),
        job.timezone
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "[Timer]");
    let _ = writeln!(s, "OnCalendar={calendar}");
    let _ = writeln!(
        s,
        "# A run missed while the host was off or asleep starts at the next boot or wake."
    );
    let _ = writeln!(s, "Persistent=true");
    if let Some(secs) = o.randomized_delay_secs {
        let _ = writeln!(s, "RandomizedDelaySec={secs}");
    }
    let _ = writeln!(s, "Unit=apisnap-{}.service", job.name);
    let _ = writeln!(s);
    let _ = writeln!(s, "[Install]");
    let _ = writeln!(s, "WantedBy=timers.target");
    s
}

fn resolve(workdir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else if p.as_os_str().is_empty() {
        workdir.to_path_buf()
    } else {
        workdir.join(p)
    }
}

/// `%` introduces a specifier in unit files.
fn escape(text: &str) -> String {
    text.replace('%', "%%")
}

/// One `ExecStart=` word.
fn quote(arg: &str) -> String {
    let arg = escape(arg);
    if arg.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '\\') {
        format!("\"{}\"", arg.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        arg
    }
}

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// `OnCalendar=` for a cron expression read in `timezone`: `[weekdays] *-MM-DD HH:MM:00 TZ`.
pub fn on_calendar(fields: &CronFields, timezone: &str) -> Result<String, String> {
    if fields.days_of_month.is_empty()
        || fields.months.iter().all(|m| {
            let longest = match m {
                2 => 29,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            fields.days_of_month.iter().all(|d| *d > longest)
        })
    {
        return Err("no date matches it, so it never fires".into());
    }
    if !fields.every_day_of_month() && !fields.every_day_of_week() {
        // Refused by the parser already; systemd, too, would need both to match.
        return Err(
            "systemd matches day-of-month and day-of-week together, crontab either: split it \
             into two jobs"
                .into(),
        );
    }
    let mut out = String::new();
    if !fields.every_day_of_week() {
        // systemd's week starts on Monday: ranges run Mon..Sun.
        let order: Vec<u8> = fields
            .days_of_week
            .iter()
            .map(|d| (d + 6) % 7)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let names = |i: u8| WEEKDAYS[usize::from((i + 1) % 7)].to_string();
        out.push_str(&list(&order, names, ".."));
        out.push(' ');
    }
    let _ = write!(
        out,
        "*-{}-{} {}:{}:00",
        component(&fields.months, 1, 12),
        component(&fields.days_of_month, 1, 31),
        component(&fields.hours, 0, 23),
        component(&fields.minutes, 0, 59),
    );
    if timezone != "UTC" {
        let _ = write!(out, " {timezone}");
    } else {
        out.push_str(" UTC");
    }
    Ok(out)
}

/// One date or time component: `*`, `00/15` (from 00 every 15 to the end), or a list of
/// values and `a..b` ranges.
fn component(values: &[u8], lo: u8, hi: u8) -> String {
    if values.len() == usize::from(hi - lo + 1) {
        return "*".into();
    }
    match step(values) {
        // systemd's `a/s` runs to the end of the range.
        Some(s) if values[values.len() - 1] + s > hi => format!("{:02}/{s}", values[0]),
        _ => list(values, |v| format!("{v:02}"), ".."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The translations, by table; `tests/deploy.rs` also checks each against
    /// `systemd-analyze calendar` and the scheduler's own fire times.
    const TABLE: &[(&str, &str, &str)] = &[
        (
            "30 2 * * *",
            "Europe/Madrid",
            "*-*-* 02:30:00 Europe/Madrid",
        ),
        (
            "0 6 * * 1-5",
            "Europe/London",
            "Mon..Fri *-*-* 06:00:00 Europe/London",
        ),
        ("@hourly", "UTC", "*-*-* *:00:00 UTC"),
        ("*/15 * * * *", "UTC", "*-*-* *:00/15:00 UTC"),
        ("0 */6 * * *", "UTC", "*-*-* 00/6:00:00 UTC"),
        ("5,35 9-17 * * *", "UTC", "*-*-* 09..17:05,35:00 UTC"),
        ("0 0 1 * *", "UTC", "*-*-01 00:00:00 UTC"),
        ("0 0 1 1,4,7,10 *", "UTC", "*-01/3-01 00:00:00 UTC"),
        ("0 0 1 1,2,7 *", "UTC", "*-01,02,07-01 00:00:00 UTC"),
        ("0 3 * * 0", "UTC", "Sun *-*-* 03:00:00 UTC"),
        ("0 3 * * 5-7", "UTC", "Fri..Sun *-*-* 03:00:00 UTC"),
        ("0 3 * * 1,3", "UTC", "Mon,Wed *-*-* 03:00:00 UTC"),
        ("0 3 */2 * *", "UTC", "*-*-01/2 03:00:00 UTC"),
        (
            "10-40/10 1 * jan-mar *",
            "America/New_York",
            "*-01..03-* 01:10,20,30,40:00 America/New_York",
        ),
        ("@weekly", "Asia/Tokyo", "Sun *-*-* 00:00:00 Asia/Tokyo"),
        (
            "15 1 * * *",
            "America/New_York",
            "*-*-* 01:15:00 America/New_York",
        ),
    ];

    #[test]
    fn translations() {
        for (cron, tz, want) in TABLE {
            let fields = CronFields::parse(cron).unwrap();
            assert_eq!(on_calendar(&fields, tz).unwrap(), *want, "{cron}");
        }
    }

    #[test]
    fn refuses_what_never_fires() {
        let fields = CronFields::parse("0 0 30 2 *").unwrap();
        let err = on_calendar(&fields, "UTC").unwrap_err();
        assert!(err.contains("never fires"), "{err}");
    }
}
