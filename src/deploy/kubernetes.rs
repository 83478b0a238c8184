//! Kubernetes: a `CronJob` per job, the job files as a `ConfigMap`, a `PersistentVolumeClaim`
//! for snapshots and state, and an example of the credentials `Secret`.
//!
//! Pods are disposable and the checkpoint is on the volume, so a pod stopped (SIGTERM, within
//! the grace period) or killed is followed by one that resumes: `backoffLimit` retries do
//! that, except for exit codes that a retry cannot fix (2: configuration, 3: credentials),
//! which fail the Job at once through a pod failure policy.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{DeployError, Deployable, Rendered};
use crate::schedule::CronFields;

/// How secrets reach the container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SecretsAs {
    /// Each secret variable from the `Secret`, as an environment variable.
    Env,
    /// The `Secret` mounted as files, one per variable, read through `APISNAP_SECRETS_DIR`.
    Files,
}

#[derive(Clone, Debug, clap::Args)]
pub struct KubernetesOptions {
    /// The container image (see deploy/Dockerfile).
    #[arg(long, default_value = concat!("apisnap:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
    /// The namespace; default: none (kubectl's current one).
    #[arg(long)]
    pub namespace: Option<String>,
    /// The Secret holding the credentials, one key per variable.
    #[arg(long, default_value = "apisnap-credentials")]
    pub secret: String,
    /// Secrets as environment variables or as mounted files.
    #[arg(long, value_enum, default_value_t = SecretsAs::Env)]
    pub secrets_as: SecretsAs,
    /// The PersistentVolumeClaim for snapshots, state and the token cache.
    #[arg(long, default_value = "apisnap-data")]
    pub claim: String,
    /// Its size.
    #[arg(long, default_value = "10Gi")]
    pub storage: String,
    /// Skip a run that could not start within this many seconds of its time.
    #[arg(long, default_value_t = 3600)]
    pub starting_deadline_secs: u64,
    /// Pods retried (each resuming the checkpoint) before the Job fails.
    #[arg(long, default_value_t = 3)]
    pub backoff_limit: u32,
    /// Seconds between SIGTERM and SIGKILL: enough to commit the pages received.
    #[arg(long, default_value_t = 120)]
    pub grace_secs: u64,
    /// Split each run into N shards, one pod each: an Indexed Job whose pods run one shard
    /// each (`--shards N`: each takes its index from `JOB_COMPLETION_INDEX`), sharing the
    /// Job's name as the run id. The last shard to finish finalizes the snapshot; a finalize
    /// Job is rendered for doing it by hand. The job's state and output must be in object
    /// storage: the pods share no disk.
    #[arg(long, value_parser = clap::value_parser!(u64).range(2..))]
    pub shards: Option<u64>,
}

impl Default for KubernetesOptions {
    fn default() -> Self {
        KubernetesOptions {
            image: format!("apisnap:{}", env!("CARGO_PKG_VERSION")),
            namespace: None,
            secret: "apisnap-credentials".into(),
            secrets_as: SecretsAs::Env,
            claim: "apisnap-data".into(),
            storage: "10Gi".into(),
            starting_deadline_secs: 3600,
            backoff_limit: 3,
            grace_secs: 120,
            shards: None,
        }
    }
}

const JOBS_DIR: &str = "/etc/apisnap/jobs";
const DATA_DIR: &str = "/var/lib/apisnap";
const SECRETS_DIR: &str = "/var/run/secrets/apisnap";
/// The distroless image's `nonroot` user.
const UID: u64 = 65532;

/// A Kubernetes object name for a job: DNS-1123, at most 52 characters for a CronJob (its
/// Jobs get an 11-character suffix).
pub fn object_name(job: &str) -> Result<String, String> {
    let name: String = format!("apisnap-{job}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_end_matches('-').to_string();
    if name.len() > 52 {
        return Err(format!(
            "the CronJob name `{name}` is longer than Kubernetes allows (52): rename the job file"
        ));
    }
    Ok(name)
}

/// The schedule as Kubernetes reads it (standard 5 fields, days of the week 0-6).
pub fn schedule(fields: &CronFields) -> String {
    format!(
        "{} {} {} {} {}",
        field(&fields.minutes, 0, 59),
        field(&fields.hours, 0, 23),
        field(&fields.days_of_month, 1, 31),
        field(&fields.months, 1, 12),
        field(&fields.days_of_week, 0, 6)
    )
}

/// `*`, `*/n`, `a-b/n`, or a list of values and ranges.
fn field(values: &[u8], lo: u8, hi: u8) -> String {
    if values.len() == usize::from(hi - lo + 1) {
        return "*".into();
    }
    let last = values[values.len() - 1];
    match crate::schedule::expr::step(values) {
        Some(s) if values[0] == lo && last + s > hi => format!("*/{s}"),
        Some(s) => format!("{}-{last}/{s}", values[0]),
        None => crate::schedule::expr::list(values, |v| v.to_string(), "-"),
    }
}

fn metadata(name: &str, o: &KubernetesOptions, labels: Value) -> Value {
    let mut m = json!({ "name": name });
    if let Some(ns) = &o.namespace {
        m["namespace"] = json!(ns);
    }
    m["labels"] = labels;
    m
}

/// The ConfigMap key of a column file (keys cannot hold `/`).
fn column_key(file: &str) -> String {
    let name: String = file
        .trim_start_matches(['.', '/'])
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '.'
            }
        })
        .collect();
    format!("columns.{name}")
}

fn labels(component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "apisnap",
        "app.kubernetes.io/component": component,
    })
}

fn yaml(value: &Value) -> String {
    serde_saphyr::to_string(value).expect("JSON values serialize as YAML")
}

/// Every file: the CronJobs, the ConfigMap, the claim and the Secret's example.
pub fn render(jobs: &[Deployable], o: &KubernetesOptions) -> Result<Vec<Rendered>, DeployError> {
    let mut out = Vec::new();
    // The job and provider files, keyed for the ConfigMap (keys cannot hold `/`).
    let mut files: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut secret_vars: Vec<String> = Vec::new();
    for job in jobs {
        let fail = |message: String| DeployError {
            file: job.file.clone(),
            message,
        };
        if !job.secret_files.is_empty() {
            return Err(fail(format!(
                "`file:` secrets ({}) name paths on this machine; in Kubernetes write them as \
                 `env:NAME` and put NAME in the `{}` Secret",
                job.secret_files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                o.secret
            )));
        }
        for (key, path, source) in [
            (job.job_file.clone(), job.job_file.clone(), &job.file),
            (
                job.provider_file.replace('/', "."),
                job.provider_file.clone(),
                &job.provider_path,
            ),
        ] {
            let text = std::fs::read_to_string(source)
                .map_err(|e| fail(format!("cannot read {}: {e}", source.display())))?;
            files.insert(key, (path, text));
        }
        // The column file rides in the ConfigMap too, mounted where the job names it.
        if let Some(column_file) = &job.column_file {
            let text = std::fs::read_to_string(column_file).map_err(|e| {
                fail(format!(
                    "cannot read the column file {column_file} (`schema.file`, read from the \
                     directory apisnap deploy runs in, as apisnap run does): {e}"
                ))
            })?;
            let key = column_key(column_file);
            files.insert(key.clone(), (format!("columns/{key}"), text));
        }
        secret_vars.extend(job.secret_vars.iter().cloned());
        let name = object_name(&job.name).map_err(fail)?;
        if let Some(n) = o.shards {
            let local: Vec<String> = [
                ("state_dir", job.state_dir.to_string_lossy()),
                ("output.dir", job.output_root.to_string_lossy()),
            ]
            .into_iter()
            .filter(|(_, at)| crate::storage::local_dir(at).is_some())
            .map(|(field, at)| format!("`{field}` ({at})"))
            .collect();
            if !local.is_empty() {
                return Err(fail(format!(
                    "--shards {n} runs each shard in its own pod, and pods share no disk: {} \
                     must be in object storage (s3://, gs://, az://)",
                    local.join(" and ")
                )));
            }
        }
        out.push(Rendered {
            file: format!("{name}.cronjob.yaml"),
            text: yaml(&cron_job(job, &name, o, &files)),
        });
        if let Some(n) = o.shards {
            let mut finalize = cron_job(job, &name, o, &files)["spec"]["jobTemplate"].clone();
            finalize["metadata"] = metadata(&format!("{name}-finalize"), o, labels("finalize"));
            let spec = &mut finalize["spec"];
            if let Some(spec) = spec.as_object_mut() {
                for key in ["completionMode", "completions", "parallelism"] {
                    spec.remove(key);
                }
            }
            spec["backoffLimit"] = json!(o.backoff_limit);
            let container = &mut spec["template"]["spec"]["containers"][0];
            container["args"] = json!([
                "--log-format",
                "json",
                "finalize",
                "--jobs-dir",
                JOBS_DIR,
                job.name,
                "--shards",
                n.to_string(),
                "--run-id",
                "RUN_ID",
            ]);
            if let Some(env) = container["env"].as_array_mut() {
                env.retain(|e| e["name"] != "APISNAP_RUN_ID");
            }
            out.push(Rendered {
                file: format!("{name}.finalize.job.yaml"),
                text: format!(
                    "# The last shard to finish finalizes the snapshot. Should it fail for good,\n\
                     # finalize by hand: replace RUN_ID with the name of the CronJob's Job\n\
                     # (kubectl get jobs -l apisnap/job={}) and `kubectl create -f` this file.\n\
                     # It refuses (exit code 6) while any shard is not complete.\n{}",
                    job.name,
                    yaml(&json!({
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "metadata": finalize["metadata"],
                        "spec": finalize["spec"],
                    }))
                ),
            });
        }
    }
    secret_vars.sort();
    secret_vars.dedup();
    out.push(Rendered {
        file: "apisnap-jobs.configmap.yaml".into(),
        text: yaml(&json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata("apisnap-jobs", o, labels("jobs")),
            "data": files.iter().map(|(k, (_, text))| (k.clone(), json!(text))).collect::<serde_json::Map<_, _>>(),
        })),
    });
    out.push(Rendered {
        file: format!("{}.pvc.yaml", o.claim),
        text: yaml(&json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": metadata(&o.claim, o, labels("data")),
            "spec": {
                // ReadWriteOnce: the jobs' pods share a node. With ReadWriteMany storage
                // they can run anywhere.
                "accessModes": ["ReadWriteOnce"],
                "resources": { "requests": { "storage": o.storage } },
            },
        })),
    });
    out.push(Rendered {
        file: format!("{}.secret.example.yaml", o.secret),
        text: format!(
            "# The credentials the jobs read, one key per variable. Fill in and apply, or create\n\
             # it with: kubectl create secret generic {} {}\n{}",
            o.secret,
            secret_vars
                .iter()
                .map(|v| format!("--from-literal={v}=..."))
                .collect::<Vec<_>>()
                .join(" "),
            yaml(&json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": metadata(&o.secret, o, labels("credentials")),
                "type": "Opaque",
                "stringData": secret_vars.iter().map(|v| (v.clone(), json!(""))).collect::<serde_json::Map<_, _>>(),
            }))
        ),
    });
    Ok(out)
}

fn cron_job(
    job: &Deployable,
    name: &str,
    o: &KubernetesOptions,
    files: &BTreeMap<String, (String, String)>,
) -> Value {
    let mut env = vec![json!({ "name": "XDG_CACHE_HOME", "value": format!("{DATA_DIR}/.cache") })];
    let mut mounts = vec![
        json!({ "name": "jobs", "mountPath": JOBS_DIR, "readOnly": true }),
        json!({ "name": "data", "mountPath": DATA_DIR }),
        json!({ "name": "tmp", "mountPath": "/tmp" }),
    ];
    let column = job.column_file.as_deref().map(|f| (f, column_key(f)));
    let items: Vec<Value> = files
        .iter()
        .filter(|(key, (path, _))| {
            *path == job.job_file
                || *path == job.provider_file
                || column.as_ref().is_some_and(|(_, k)| k == *key)
        })
        .map(|(key, (path, _))| json!({ "key": key, "path": path }))
        .collect();
    if let Some((file, key)) = &column {
        // The pod's working directory is DATA_DIR, where a relative `schema.file` is read.
        let at = if file.starts_with('/') {
            file.to_string()
        } else {
            format!("{DATA_DIR}/{file}")
        };
        mounts.push(json!({
            "name": "jobs",
            "mountPath": at,
            "subPath": format!("columns/{key}"),
            "readOnly": true,
        }));
    }
    let mut volumes = vec![
        json!({ "name": "jobs", "configMap": { "name": "apisnap-jobs", "items": items } }),
        if o.shards.is_some() {
            // State and snapshots are in object storage; a claim would tie the shards'
            // pods to one node. The working directory holds only the token cache.
            json!({ "name": "data", "emptyDir": {} })
        } else {
            json!({ "name": "data", "persistentVolumeClaim": { "claimName": o.claim } })
        },
        json!({ "name": "tmp", "emptyDir": {} }),
    ];
    match o.secrets_as {
        SecretsAs::Env => {
            for var in &job.secret_vars {
                env.push(json!({
                    "name": var,
                    "valueFrom": { "secretKeyRef": { "name": o.secret, "key": var } },
                }));
            }
        }
        SecretsAs::Files if !job.secret_vars.is_empty() => {
            env.push(json!({ "name": "APISNAP_SECRETS_DIR", "value": SECRETS_DIR }));
            mounts
                .push(json!({ "name": "credentials", "mountPath": SECRETS_DIR, "readOnly": true }));
            volumes.push(json!({
                "name": "credentials",
                "secret": {
                    "secretName": o.secret,
                    "defaultMode": 0o400,
                    "items": job.secret_vars.iter().map(|v| json!({ "key": v, "path": v })).collect::<Vec<_>>(),
                },
            }));
        }
        SecretsAs::Files => {}
    }
    let pod_labels = json!({
        "app.kubernetes.io/name": "apisnap",
        "app.kubernetes.io/component": "job",
        "apisnap/job": job.name,
    });
    let mut args = json!([
        "--log-format",
        "json",
        "run",
        "--jobs-dir",
        JOBS_DIR,
        job.name
    ]);
    if let Some(n) = o.shards {
        // An Indexed Job sets JOB_COMPLETION_INDEX in each pod; `--shards` reads it.
        args.as_array_mut()
            .expect("an array")
            .extend([json!("--shards"), json!(n.to_string())]);
        // The shards of one run share its id: the name of the Job the CronJob created.
        env.push(json!({
            "name": "APISNAP_RUN_ID",
            "valueFrom": { "fieldRef": { "fieldPath": "metadata.labels['batch.kubernetes.io/job-name']" } },
        }));
    }
    let mut job_spec = json!({
        "backoffLimit": o.backoff_limit * o.shards.unwrap_or(1) as u32,
        "podFailurePolicy": {
            "rules": [{
                // A configuration (2) or credential (3) error fails the same way on every
                // retry.
                "action": "FailJob",
                "onExitCodes": { "containerName": "apisnap", "operator": "In", "values": [2, 3] },
            }],
        },
    });
    if let Some(n) = o.shards {
        job_spec["completionMode"] = json!("Indexed");
        job_spec["completions"] = json!(n);
        job_spec["parallelism"] = json!(n);
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(name, o, pod_labels.clone()),
        "spec": {
            "schedule": schedule(&job.fields),
            "timeZone": job.timezone,
            // The job lock would refuse a second run anyway; Forbid never starts it.
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": o.starting_deadline_secs,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": { "labels": pod_labels.clone() },
                "spec": merge(job_spec, json!({
                    "template": {
                        "metadata": { "labels": pod_labels },
                        "spec": {
                            "restartPolicy": "Never",
                            "terminationGracePeriodSeconds": o.grace_secs,
                            "securityContext": {
                                "runAsNonRoot": true,
                                "runAsUser": UID,
                                "runAsGroup": UID,
                                "fsGroup": UID,
                                "seccompProfile": { "type": "RuntimeDefault" },
                            },
                            "containers": [{
                                "name": "apisnap",
                                "image": o.image,
                                "imagePullPolicy": "IfNotPresent",
                                "args": args,
                                "workingDir": DATA_DIR,
                                "env": env,
                                "resources": {
                                    "requests": { "cpu": "250m", "memory": "128Mi" },
                                    "limits": { "cpu": "2", "memory": "512Mi" },
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": false,
                                    "readOnlyRootFilesystem": true,
                                    "capabilities": { "drop": ["ALL"] },
                                },
                                "volumeMounts": mounts,
                            }],
                            "volumes": volumes,
                        },
                    },
                })),
            },
        },
    })
}

/// `base` with the fields of `more` added.
fn merge(mut base: Value, more: Value) -> Value {
    if let (Some(base), Value::Object(more)) = (base.as_object_mut(), more) {
        base.extend(more);
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_as_kubernetes_reads_them() {
        for (cron, want) in [
            ("30 2 * * *", "30 2 * * *"),
            ("0 6 * * 1-5", "0 6 * * 1-5"),
            ("0 6 * * 7", "0 6 * * 0"),
            ("0 6 * * 5-7", "0 6 * * 0,5,6"),
            ("*/15 * * * *", "*/15 * * * *"),
            ("10-40/10 * * * *", "10-40/10 * * * *"),
            ("@hourly", "0 * * * *"),
            ("@weekly", "0 0 * * 0"),
        ] {
            assert_eq!(schedule(&CronFields::parse(cron).unwrap()), want, "{cron}");
        }
    }

    #[test]
    fn object_names() {
        assert_eq!(
            object_name("seal_metrics_events").unwrap(),
            "apisnap-seal-metrics-events"
        );
        assert!(object_name(&"x".repeat(60)).is_err());
    }
}
