//! Reading job and provider files, with environment overrides.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::{ConfigError, ConfigErrors, JobConfig, ProviderConfig};
use crate::env::{Env, job_prefix, provider_prefix};

/// A job file and its provider file, loaded and checked (secrets not yet resolved).
#[derive(Clone, Debug)]
pub struct JobDefinition {
    /// The job's name: its file name without `.toml`.
    pub name: String,
    pub file: PathBuf,
    pub job: JobConfig,
    pub provider_file: PathBuf,
    pub provider: ProviderConfig,
}

/// Loads a job file and the provider it names (`providers/<name>.toml` beside it), applies
/// environment overrides, and validates both. Secrets are resolved later, by `build`.
pub fn load_job(file: &Path, env: &Env) -> Result<JobDefinition, ConfigErrors> {
    let name = file_stem(file)?;
    // The name becomes `{job}` in paths and the state's file name.
    crate::vocab::check_name(&name, "the job's name (its file name)")
        .map_err(|e| ConfigError::file(file, e))?;
    let job: JobConfig = read_file(file, &job_prefix(&name), env)?;
    let mut errors = job.validate().in_file(file);

    let providers_dir = file
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("providers");
    let provider_file = providers_dir.join(format!("{}.toml", job.provider));
    let provider = if job.provider.is_empty()
        || job.provider.contains(['/', '\\'])
        || !provider_file.is_file()
    {
        let known = provider_names(&providers_dir);
        errors.push(ConfigError {
            file: Some(file.to_path_buf()),
            field: Some("provider".into()),
            message: format!(
                "unknown provider `{}`: expected a file {} ({})",
                job.provider,
                provider_file.display(),
                if known.is_empty() {
                    format!("{} holds no provider files", providers_dir.display())
                } else {
                    format!("known providers: {}", known.join(", "))
                }
            ),
        });
        None
    } else {
        match load_provider(&provider_file, env) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.extend(e);
                None
            }
        }
    };
    match provider {
        Some(provider) if errors.is_empty() => Ok(JobDefinition {
            name,
            file: file.to_path_buf(),
            job,
            provider_file,
            provider,
        }),
        _ => Err(errors),
    }
}

/// Loads and validates one provider file.
pub fn load_provider(file: &Path, env: &Env) -> Result<ProviderConfig, ConfigErrors> {
    let name = file_stem(file)?;
    let provider: ProviderConfig = read_file(file, &provider_prefix(&name), env)?;
    provider.validate().in_file(file).into_result(provider)
}

/// The job files in a directory (`*.toml`, not descending into `providers/`), sorted.
pub fn job_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ConfigError::file(dir, format!("cannot read the jobs directory: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Finds a job given as a path (`jobs/events.toml`) or a name (`events`) in `jobs_dir`.
pub fn find_job(arg: &str, jobs_dir: &Path) -> Result<PathBuf, ConfigError> {
    let as_path = PathBuf::from(arg);
    if as_path.is_file() {
        return Ok(as_path);
    }
    let in_dir = jobs_dir.join(format!("{arg}.toml"));
    if in_dir.is_file() {
        return Ok(in_dir);
    }
    let known: Vec<String> = job_files(jobs_dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    Err(ConfigError::file(
        &as_path,
        format!(
            "no such job: expected a job file or the name of one in {} ({})",
            jobs_dir.display(),
            if known.is_empty() {
                "it has none".to_string()
            } else {
                format!("known jobs: {}", known.join(", "))
            }
        ),
    ))
}

fn provider_names(dir: &Path) -> Vec<String> {
    job_files(dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect()
}

fn file_stem(file: &Path) -> Result<String, ConfigError> {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ConfigError::file(file, "expected a file named <name>.toml"))
}

/// Reads a TOML file through the `config` crate (file, then `<prefix>__...` variables on
/// top), then deserializes strictly. The merged tree goes through `serde_json::Value` so that
/// `serde_path_to_error` can name the exact field of a type error.
fn read_file<T: DeserializeOwned>(file: &Path, prefix: &str, env: &Env) -> Result<T, ConfigErrors> {
    if !file.is_file() {
        return Err(ConfigError::file(file, "no such file").into());
    }
    let merged = config::Config::builder()
        .add_source(config::File::from(file).format(config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(prefix)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env.with_prefix(&format!("{prefix}__")))),
        )
        .build()
        .map_err(|e| ConfigError::file(file, strip_origin(&e.to_string(), file)))?;
    let tree: serde_json::Value = merged
        .try_deserialize()
        .map_err(|e| ConfigError::file(file, e.to_string()))?;
    check_override_case(&tree, file, prefix, env)?;
    serde_path_to_error::deserialize(tree).map_err(|e| {
        let mut path = e.path().to_string();
        let mut message = e.inner().to_string();
        if let Some((inner, rest)) = crate::vocab::split_path(&message) {
            path = if path == "." {
                inner.to_string()
            } else {
                format!("{path}.{inner}")
            };
            message = rest.to_string();
        }
        let var = format!("{prefix}__{}", path.replace('.', "__").to_uppercase());
        if env.get(&var).is_some() {
            message.push_str(&format!(" (the value comes from {var})"));
        }
        ConfigErrors::from(ConfigError {
            file: Some(file.to_path_buf()),
            field: (path != ".").then_some(path),
            message,
        })
    })
}

/// Variable names carry no case and the `config` crate lower-cases the keys it reads from
/// them, so `…__QUERY__PAGESIZE` cannot reach the file's `pageSize`: it would silently add
/// a `pagesize` beside it (a second query parameter, header or credential). Refused instead.
fn check_override_case(
    tree: &serde_json::Value,
    file: &Path,
    prefix: &str,
    env: &Env,
) -> Result<(), ConfigErrors> {
    let vars = env.with_prefix(&format!("{prefix}__"));
    let mut vars: Vec<&String> = vars.keys().collect();
    vars.sort();
    for var in vars {
        let path: Vec<String> = var[prefix.len() + 2..]
            .split("__")
            .map(str::to_lowercase)
            .collect();
        let mut node = tree;
        for (depth, key) in path.iter().enumerate() {
            let Some(map) = node.as_object() else { break };
            if let Some(spelled) = map.keys().find(|k| *k != key && same_key(k, key)) {
                let field = path[..depth]
                    .iter()
                    .chain([spelled])
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(".");
                return Err(ConfigError {
                    file: Some(file.to_path_buf()),
                    field: Some(field),
                    message: format!(
                        "{var} cannot override `{spelled}`: variable names carry no case, so \
                         it would add a key `{key}` beside it; change the value in the file"
                    ),
                }
                .into());
            }
            match map.get(key) {
                Some(next) => node = next,
                None => break,
            }
        }
    }
    Ok(())
}

/// Keys a variable would mean alike: case aside, and `_` for a header's `-` (shells allow no
/// `-` in variable names).
fn same_key(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    norm(a) == norm(b)
}

/// The `config` crate repeats the file name in its messages; we print it once.
fn strip_origin(message: &str, file: &Path) -> String {
    message
        .replace(&format!(" in {}", file.display()), "")
        .trim()
        .to_string()
}
