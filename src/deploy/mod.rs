//! `apisnap deploy`: deployment files rendered from the job definitions, so the schedule,
//! the secrets and the writable paths in them can never drift from the jobs.
//!
//! - [`systemd`]: a service and a timer per job (`OnCalendar=` from the cron expression).
//! - [`kubernetes`]: a `CronJob` per job, the jobs as a `ConfigMap`, a volume claim, and the
//!   shape of the credentials `Secret`.

pub mod kubernetes;
pub mod systemd;

use std::path::{Path, PathBuf};

use crate::config::JobDefinition;
use crate::schedule::CronFields;
use crate::secret::SecretRef;

/// One rendered file.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// The file name, in the output directory.
    pub file: String,
    pub text: String,
}

/// A job's definition cannot be deployed as asked.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", file.display())]
pub struct DeployError {
    pub file: PathBuf,
    pub message: String,
}

/// What a deployment needs to know of a job.
#[derive(Clone, Debug)]
pub struct Deployable {
    pub name: String,
    pub description: Option<String>,
    pub file: PathBuf,
    /// The job file's path relative to the jobs directory, and its provider file's.
    pub job_file: String,
    pub provider_file: String,
    /// The provider file on this machine.
    pub provider_path: PathBuf,
    pub cron: String,
    pub timezone: String,
    pub fields: CronFields,
    /// The environment variables its `env:` secrets name, sorted.
    pub secret_vars: Vec<String>,
    /// `file:` secrets: paths that must exist where the job runs.
    pub secret_files: Vec<PathBuf>,
    /// The directory above the job's snapshots (its output template up to the first
    /// placeholder other than `{job}`), and its state directory; relative to the working
    /// directory unless absolute.
    pub output_root: PathBuf,
    pub state_dir: PathBuf,
    /// The job's column file (`schema.file`): as the job names it (relative to the working
    /// directory, or absolute), and where it is read on this machine.
    pub column_file: Option<String>,
}

impl Deployable {
    /// `None` for a job without a schedule: nothing would start it.
    pub fn of(def: &JobDefinition) -> Result<Option<Deployable>, DeployError> {
        let Some(schedule) = &def.job.schedule else {
            return Ok(None);
        };
        let fields = CronFields::parse(&schedule.cron).map_err(|message| DeployError {
            file: def.file.clone(),
            message: format!("field `schedule.cron`: {message}"),
        })?;
        let mut secret_vars = Vec::new();
        let mut secret_files = Vec::new();
        let auth = serde_json::to_value(&def.provider.auth).expect("configs serialize");
        collect_secrets(&auth, &mut secret_vars, &mut secret_files);
        let proxy = serde_json::to_value(&def.provider.proxy).expect("configs serialize");
        collect_secrets(&proxy, &mut secret_vars, &mut secret_files);
        secret_vars.sort();
        secret_vars.dedup();
        let name_of = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        Ok(Some(Deployable {
            name: def.name.clone(),
            description: def.job.description.clone(),
            file: def.file.clone(),
            job_file: name_of(&def.file),
            provider_file: format!("providers/{}", name_of(&def.provider_file)),
            provider_path: def.provider_file.clone(),
            cron: schedule.cron.clone(),
            timezone: schedule.timezone.clone(),
            fields,
            secret_vars,
            secret_files,
            output_root: output_root(&def.job.output.dir, &def.name),
            state_dir: PathBuf::from(def.job.state_dir.as_str()),
            column_file: def.job.schema.file.clone(),
        }))
    }
}

/// Every secret reference in a serialized auth config.
fn collect_secrets(value: &serde_json::Value, vars: &mut Vec<String>, files: &mut Vec<PathBuf>) {
    match value {
        serde_json::Value::String(s) => match s.parse::<SecretRef>() {
            Ok(SecretRef::Env(name)) => vars.push(name),
            Ok(SecretRef::File(path)) => files.push(path),
            Err(_) => {}
        },
        serde_json::Value::Array(items) => {
            for v in items {
                collect_secrets(v, vars, files);
            }
        }
        serde_json::Value::Object(map) => {
            for v in map.values() {
                collect_secrets(v, vars, files);
            }
        }
        _ => {}
    }
}

/// `out/{job}/{date}` -> `out/seal_metrics_events`.
fn output_root(template: &str, job: &str) -> PathBuf {
    if crate::storage::local_dir(template).is_none() {
        // A URL, kept as text (path components would fold its `//`).
        let text = template.replace("{job}", job);
        let cut = text.find('{').map_or(text.as_str(), |i| &text[..i]);
        return PathBuf::from(cut.trim_end_matches(['/', '-', '_']));
    }
    let mut root = PathBuf::new();
    for part in Path::new(template).components() {
        let text = part.as_os_str().to_string_lossy().replace("{job}", job);
        if text.contains('{') {
            break;
        }
        root.push(text);
    }
    root
}

/// The deployable jobs among `defs`, in order; jobs without a schedule are left out.
pub fn deployables(defs: &[JobDefinition]) -> Result<Vec<Deployable>, DeployError> {
    let mut out = Vec::new();
    for def in defs {
        if let Some(d) = Deployable::of(def)? {
            out.push(d);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_roots() {
        assert_eq!(output_root("out/{job}/{date}", "a"), PathBuf::from("out/a"));
        assert_eq!(
            output_root("s3://lake/{job}/{run_id}", "a"),
            PathBuf::from("s3://lake/a")
        );
        assert_eq!(
            output_root("/data/snapshots/{job}-{date}", "a"),
            PathBuf::from("/data/snapshots")
        );
        assert_eq!(output_root("{date}", "a"), PathBuf::new());
    }
}
