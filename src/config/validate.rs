//! `apisnap validate`: check job and provider files without making a request.

use std::path::{Path, PathBuf};

use super::{ConfigError, ConfigErrors, check_base_url, job_files, load_job, load_provider};
use crate::env::Env;

/// What validation found.
#[derive(Debug, Default)]
pub struct Report {
    /// Files that passed.
    pub ok: Vec<PathBuf>,
    /// Mistakes; any of these means exit code 2.
    pub errors: ConfigErrors,
    /// Secrets that cannot be resolved here (when not checking secrets strictly).
    pub warnings: ConfigErrors,
}

/// Validates files and directories (a directory: its `*.toml` jobs and `providers/*.toml`).
/// With `secrets`, a secret that cannot be read is an error; without, a warning (so that a
/// CI machine without the secrets can still check the files).
pub fn validate_paths(paths: &[PathBuf], env: &Env, secrets: bool) -> Report {
    let mut report = Report::default();
    for path in paths {
        if path.is_dir() {
            match job_files(path) {
                Ok(jobs) => {
                    for job in &jobs {
                        validate_job(job, env, secrets, &mut report);
                    }
                    shared_outputs(&jobs, env, &mut report.errors);
                }
                Err(e) => report.errors.push(e),
            }
            for provider in job_files(&path.join("providers")).unwrap_or_default() {
                validate_provider(&provider, env, secrets, &mut report);
            }
        } else if path
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == "providers")
        {
            validate_provider(path, env, secrets, &mut report);
        } else if path.is_file() {
            validate_job(path, env, secrets, &mut report);
        } else {
            report
                .errors
                .push(ConfigError::file(path, "no such file or directory"));
        }
    }
    dedup(&mut report.errors);
    dedup(&mut report.warnings);
    report
}

/// Two jobs of one directory must not write into one place: each would clean up the other's
/// parts, and their snapshots would share one `latest.json` (the one beside them).
fn shared_outputs(jobs: &[PathBuf], env: &Env, errors: &mut ConfigErrors) {
    let mut seen: Vec<(String, String)> = Vec::new();
    for file in jobs {
        let Ok(def) = load_job(file, env) else {
            continue;
        };
        // Where the job's snapshots and latest.json go: the directory above a snapshot.
        let rendered = def.job.output.dir.replace("{job}", &def.name);
        let parent = match rendered.trim_end_matches('/').rsplit_once('/') {
            Some((parent, _)) => parent.to_string(),
            None => ".".to_string(),
        };
        if let Some((other, _)) = seen.iter().find(|(_, p)| *p == parent) {
            errors.extend(
                ConfigErrors::from(ConfigError::field(
                    "output.dir",
                    format!(
                        "`{}` puts this job's snapshots in `{parent}`, where job `{other}` \
                         keeps its own: each would remove the other's files and replace its \
                         `latest.json`. Give each job its own directory, e.g. with `{{job}}`",
                        def.job.output.dir
                    ),
                ))
                .in_file(file),
            );
        } else {
            seen.push((def.name.clone(), parent));
        }
    }
}

fn validate_job(file: &Path, env: &Env, secrets: bool, report: &mut Report) {
    match load_job(file, env) {
        Err(e) => report.errors.extend(e),
        Ok(def) => match def.build(env) {
            Ok(_) => report.ok.push(file.to_path_buf()),
            Err(e) => {
                if secrets {
                    report.errors.extend(e);
                } else {
                    report.warnings.extend(e);
                    report.ok.push(file.to_path_buf());
                }
            }
        },
    }
}

fn validate_provider(file: &Path, env: &Env, secrets: bool, report: &mut Report) {
    let provider = match load_provider(file, env) {
        Ok(p) => p,
        Err(e) => return report.errors.extend(e),
    };
    let name = file.file_stem().unwrap_or_default().to_string_lossy();
    // The TLS files: one that cannot be read here may be readable where the job runs (as a
    // secret may), but one that is read and wrong (a key of another certificate) is wrong.
    if let Err(e) = provider.tls.build(env) {
        let unreadable = e.message.starts_with("cannot read")
            || e.field.as_deref() == Some("tls.pkcs12_password");
        let e = ConfigErrors::from(e).in_file(file);
        if unreadable && !secrets {
            report.warnings.extend(e);
        } else {
            return report.errors.extend(e);
        }
    }
    let built = check_base_url(&provider.base_url, "base_url")
        .map_err(ConfigErrors::from)
        .and_then(|base| provider.auth.build(&name, &base, env).map(|_| ()))
        .map_err(|e| e.in_file(file));
    match built {
        Ok(()) => report.ok.push(file.to_path_buf()),
        Err(e) if secrets => report.errors.extend(e),
        Err(e) => {
            report.warnings.extend(e);
            report.ok.push(file.to_path_buf());
        }
    }
}

/// A provider shared by several jobs is checked once per job; report each mistake once.
fn dedup(errors: &mut ConfigErrors) {
    let mut seen = std::collections::HashSet::new();
    errors.0.retain(|e| seen.insert(e.to_string()));
}
