//! `apisnap deploy`: systemd units that systemd accepts and whose timers fire when the
//! scheduler would, Kubernetes manifests that parse and carry what a CronJob needs, secrets
//! read from files the way both deliver them, and `deploy/` kept in step with the jobs.

mod common;

use std::path::Path;

use apisnap::deploy::systemd::on_calendar;
use apisnap::schedule::{CronFields, ScheduleConfig};
use common::{Workspace, assert_exit, provider_env, text};
use serde_json::Value;

fn systemd_analyze() -> Option<&'static str> {
    let found = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        Some("systemd-analyze")
    } else {
        // CI installs it: there, a missing tool is a failure, not a skip.
        assert!(
            std::env::var("CI").is_err(),
            "systemd-analyze is not installed (.ci/run installs it)"
        );
        eprintln!(
            "systemd-analyze is not installed: skipping the systemd checks (.ci/run installs it)"
        );
        None
    }
}

/// The next `n` elapses of an `OnCalendar=` expression, as systemd computes them, in UTC.
fn systemd_elapses(expr: &str, n: usize) -> Vec<chrono::DateTime<chrono::Utc>> {
    let out = std::process::Command::new("systemd-analyze")
        .args(["calendar", &format!("--iterations={n}"), expr])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze calendar rejects `{expr}`: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
        .lines()
        .filter(|l| l.contains("Next elapse:") || l.trim_start().starts_with("Iter. #"))
        .map(|l| {
            let when = l.split_once(": ").unwrap().1.trim();
            chrono::NaiveDateTime::parse_from_str(when, "%a %Y-%m-%d %H:%M:%S UTC")
                .unwrap_or_else(|e| panic!("`{when}`: {e}"))
                .and_utc()
        })
        .collect()
}

#[test]
fn timers_fire_when_the_scheduler_would() {
    if systemd_analyze().is_none() {
        return;
    }
    let cases = [
        ("30 2 * * *", "Europe/Madrid"),
        ("0 6 * * 1-5", "Europe/London"),
        ("@hourly", "UTC"),
        ("15 1 * * *", "America/New_York"),
        ("0 4 * * *", "Europe/London"),
        ("*/15 * * * *", "UTC"),
        ("0 */6 * * *", "UTC"),
        ("5,35 9-17 * * *", "UTC"),
        ("0 0 1 * *", "UTC"),
        ("0 0 1 1,4,7,10 *", "UTC"),
        ("0 0 1 1,2,7 *", "UTC"),
        ("0 3 * * 0", "UTC"),
        ("0 3 * * 5-7", "Asia/Tokyo"),
        ("0 3 * * 1,3", "UTC"),
        ("0 3 */2 * *", "UTC"),
        ("10-40/10 1 * jan-mar *", "America/New_York"),
        ("@weekly", "Asia/Tokyo"),
        ("45 23 31 * *", "Australia/Sydney"),
    ];
    for (cron, timezone) in cases {
        let expr = on_calendar(&CronFields::parse(cron).unwrap(), timezone).unwrap();
        let config = ScheduleConfig {
            cron: cron.into(),
            timezone: timezone.into(),
        };
        // A fire time between the two readings of the clock would shift one list: try again.
        let mut agree = false;
        for _ in 0..3 {
            let now = chrono::Utc::now();
            let ours: Vec<_> = config
                .upcoming(now, 6)
                .unwrap()
                .into_iter()
                .map(|t| t.with_timezone(&chrono::Utc))
                .collect();
            let theirs = systemd_elapses(&expr, 6);
            if ours == theirs {
                agree = true;
                break;
            }
            eprintln!("`{cron}` ({timezone}) -> `{expr}`:\n  ours   {ours:?}\n  theirs {theirs:?}");
        }
        assert!(
            agree,
            "`{cron}` in {timezone} as `{expr}` fires at other times"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_units_verify() {
    let ws = Workspace::with_shipped_jobs();
    let out = ws
        .apisnap(
            &[
                "deploy",
                "systemd",
                "--out",
                "units",
                "--bin",
                common::bin(),
                "--randomized-delay-secs",
                "300",
                "--metrics-dir",
                "/var/lib/node_exporter/textfile_collector",
            ],
            &[],
        )
        .await;
    assert_exit(&out, 0);
    let units = ws.path().join("units");
    let service =
        std::fs::read_to_string(units.join("apisnap-seal_metrics_events.service")).unwrap();
    for line in [
        "Type=oneshot",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=-/var/lib/apisnap/out/seal_metrics_events -/var/lib/apisnap/state -/var/lib/node_exporter/textfile_collector",
        "LoadCredential=SEAL_METRICS_EMAIL:/etc/apisnap/credentials/SEAL_METRICS_EMAIL",
        "LoadCredential=SEAL_METRICS_PASSWORD:/etc/apisnap/credentials/SEAL_METRICS_PASSWORD",
        &format!(
            "ExecStart={} --log-format json --metrics-dir /var/lib/node_exporter/textfile_collector run --jobs-dir /etc/apisnap/jobs seal_metrics_events",
            common::bin()
        ),
    ] {
        assert!(
            service.lines().any(|l| l == line),
            "missing `{line}` in\n{service}"
        );
    }
    let timer = std::fs::read_to_string(units.join("apisnap-spreetail_orders.timer")).unwrap();
    for line in [
        "OnCalendar=Mon..Fri *-*-* 06:00:00 Europe/London",
        "Persistent=true",
        "RandomizedDelaySec=300",
        "Unit=apisnap-spreetail_orders.service",
    ] {
        assert!(
            timer.lines().any(|l| l == line),
            "missing `{line}` in\n{timer}"
        );
    }
    if systemd_analyze().is_none() {
        return;
    }
    let files: Vec<String> = std::fs::read_dir(&units)
        .unwrap()
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .collect();
    let shipped = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "toml")
        })
        .count();
    assert_eq!(
        files.len(),
        2 * shipped,
        "a service and a timer per shipped job"
    );
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_manifests_parse_and_carry_the_cronjob_fields() {
    let ws = Workspace::with_shipped_jobs();
    for (mode, dir) in [("env", "k8s-env"), ("files", "k8s-files")] {
        let out = ws
            .apisnap(
                &[
                    "deploy",
                    "kubernetes",
                    "--out",
                    dir,
                    "--image",
                    "registry.example.com/apisnap:1",
                    "--namespace",
                    "data",
                    "--secrets-as",
                    mode,
                ],
                &[],
            )
            .await;
        assert_exit(&out, 0);
        let dir = ws.path().join(dir);
        let job = yaml(&dir.join("apisnap-seal-metrics-events.cronjob.yaml"));
        assert_eq!(job["kind"], "CronJob");
        assert_eq!(job["metadata"]["namespace"], "data");
        let spec = &job["spec"];
        assert_eq!(spec["schedule"], "30 2 * * *");
        assert_eq!(spec["timeZone"], "Europe/Madrid");
        assert_eq!(spec["concurrencyPolicy"], "Forbid");
        assert_eq!(spec["startingDeadlineSeconds"], 3600);
        let job_spec = &spec["jobTemplate"]["spec"];
        assert_eq!(job_spec["backoffLimit"], 3);
        let pod = &job_spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() >= 60);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        let container = &pod["containers"][0];
        assert_eq!(container["image"], "registry.example.com/apisnap:1");
        assert_eq!(
            container["args"],
            serde_json::json!([
                "--log-format",
                "json",
                "run",
                "--jobs-dir",
                "/etc/apisnap/jobs",
                "seal_metrics_events"
            ])
        );
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"],
            false
        );
        assert!(container["resources"]["requests"]["memory"].is_string());
        assert!(container["resources"]["limits"]["memory"].is_string());
        let volumes = pod["volumes"].as_array().unwrap();
        assert!(
            volumes
                .iter()
                .any(|v| v["persistentVolumeClaim"]["claimName"] == "apisnap-data")
        );
        let env = container["env"].as_array().unwrap();
        match mode {
            "env" => {
                for var in ["SEAL_METRICS_EMAIL", "SEAL_METRICS_PASSWORD"] {
                    assert!(
                        env.iter().any(|e| e["name"] == var
                            && e["valueFrom"]["secretKeyRef"]["name"] == "apisnap-credentials"
                            && e["valueFrom"]["secretKeyRef"]["key"] == var),
                        "{var} from the Secret: {env:?}"
                    );
                }
            }
            _ => {
                assert!(env.iter().any(|e| e["name"] == "APISNAP_SECRETS_DIR"));
                let secret = volumes.iter().find(|v| v["secret"].is_object()).unwrap();
                assert_eq!(secret["secret"]["secretName"], "apisnap-credentials");
            }
        }
        // The ConfigMap holds the job and provider files as they are.
        let map = yaml(&dir.join("apisnap-jobs.configmap.yaml"));
        assert_eq!(
            map["data"]["seal_metrics_events.toml"],
            std::fs::read_to_string(ws.path().join("jobs/seal_metrics_events.toml")).unwrap()
        );
        assert_eq!(
            map["data"]["providers.seal_metrics.toml"],
            std::fs::read_to_string(ws.path().join("jobs/providers/seal_metrics.toml")).unwrap()
        );
        let claim = yaml(&dir.join("apisnap-data.pvc.yaml"));
        assert_eq!(claim["kind"], "PersistentVolumeClaim");
        let secret = yaml(&dir.join("apisnap-credentials.secret.example.yaml"));
        assert!(secret["stringData"]["NETOGRAPHY_SHARED_SECRET"].is_string());
        let weekdays = yaml(&dir.join("apisnap-spreetail-orders.cronjob.yaml"));
        assert_eq!(weekdays["spec"]["schedule"], "0 6 * * 1-5");
    }
}

/// The layouts the manifests and units set up really deliver the credentials: a run with
/// no credential variables, only files in `APISNAP_SECRETS_DIR` (a mounted Secret) or
/// `CREDENTIALS_DIRECTORY` (systemd's `LoadCredential=`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_a_mounted_directory_reach_the_api() {
    let sandbox = common::start_sandbox(apisnap::sandbox::SandboxConfig {
        records: 1_000,
        ..Default::default()
    })
    .await;
    for dir_var in ["APISNAP_SECRETS_DIR", "CREDENTIALS_DIRECTORY"] {
        let ws = Workspace::with_shipped_jobs();
        let mut env = provider_env(&sandbox, &ws, "seal_metrics");
        let secrets = ws.path().join("secrets");
        std::fs::create_dir_all(&secrets).unwrap();
        env.retain(|(k, v)| {
            if k.starts_with("SEAL_METRICS_") {
                std::fs::write(secrets.join(k), format!("{v}\n")).unwrap();
                false
            } else {
                true
            }
        });
        env.push((dir_var.into(), secrets.to_string_lossy().into()));
        let out = ws.apisnap(&["run", "seal_metrics_events"], &env).await;
        assert_exit(&out, 0);
        common::check_output(&ws, "parquet", 1_000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_that_never_fires_is_refused() {
    let ws = Workspace::with_shipped_jobs();
    let path = ws.path().join("jobs/seal_metrics_events.toml");
    let job = std::fs::read_to_string(&path)
        .unwrap()
        .replace("cron = \"30 2 * * *\"", "cron = \"30 2 30 2 *\"");
    std::fs::write(&path, job).unwrap();
    let out = ws
        .apisnap(&["deploy", "systemd", "--out", "units"], &[])
        .await;
    assert_exit(&out, 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("seal_metrics_events.toml")
            && stderr.contains("schedule.cron")
            && stderr.contains("never fires"),
        "{stderr}"
    );
}

/// `deploy/` holds what `apisnap deploy` renders from the shipped jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_deploy_files_are_current() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ws = Workspace::with_shipped_jobs();
    for target in ["systemd", "kubernetes"] {
        let out = ws.apisnap(&["deploy", target, "--out", target], &[]).await;
        assert_exit(&out, 0);
        let mut rendered: Vec<_> = std::fs::read_dir(ws.path().join(target))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        rendered.sort();
        for file in rendered {
            let name = file.file_name().unwrap();
            let shipped = repo.join("deploy").join(target).join(name);
            assert_eq!(
                std::fs::read_to_string(&shipped).unwrap_or_default(),
                std::fs::read_to_string(&file).unwrap(),
                "{} is stale: run `apisnap deploy {target}`",
                shipped.display()
            );
        }
    }
    let dockerfile = std::fs::read_to_string(repo.join("deploy/Dockerfile")).unwrap();
    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert_eq!(stages, 2, "a build stage and a runtime stage");
    assert!(dockerfile.contains("cargo build --release --locked"));
    assert!(
        dockerfile
            .lines()
            .any(|l| l.starts_with("USER ") && !l.contains("root"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_shards_render_an_indexed_job_and_a_finalize_job() {
    let ws = Workspace::empty();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    ws.write(
        "jobs/providers/seal_metrics.toml",
        &std::fs::read_to_string(root.join("jobs/providers/seal_metrics.toml")).unwrap(),
    );
    let job = |state: &str, out: &str| {
        format!(
            "provider = \"seal_metrics\"\nstate_dir = \"{state}\"\n\
             [endpoint]\npath = \"/stats/events\"\n\
             [pagination]\ntype = \"offset\"\ntotal_pointer = \"/total\"\n\
             [output]\ndir = \"{out}\"\n\
             [schedule]\ncron = \"0 3 * * *\"\n"
        )
    };
    // Pods share no disk: local state is refused, naming the field.
    ws.write(
        "jobs/events.toml",
        &job("state", "s3://lake/{job}/{run_id}"),
    );
    let args = ["deploy", "kubernetes", "--out", "k8s", "--shards", "4"];
    let out = ws.apisnap(&args, &[]).await;
    assert_exit(&out, 2);
    assert!(
        text(&out.stderr).contains("`state_dir` (state)"),
        "{}",
        text(&out.stderr)
    );

    ws.write(
        "jobs/events.toml",
        &job("s3://lake/state", "s3://lake/{job}/{run_id}"),
    );
    let out = ws.apisnap(&args, &[]).await;
    assert_exit(&out, 0);
    let cron = yaml(&ws.path().join("k8s/apisnap-events.cronjob.yaml"));
    let spec = &cron["spec"]["jobTemplate"]["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(
        (&spec["completions"], &spec["parallelism"]),
        (&4.into(), &4.into())
    );
    let container = &spec["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[args.len() - 2..], ["--shards", "4"]);
    let env = container["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "APISNAP_RUN_ID"
        && e["valueFrom"]["fieldRef"]["fieldPath"]
            == "metadata.labels['batch.kubernetes.io/job-name']"));
    let volumes = spec["template"]["spec"]["volumes"].as_array().unwrap();
    assert!(
        volumes.iter().all(|v| v["persistentVolumeClaim"].is_null()),
        "no claim ties the shards to one node: {volumes:?}"
    );
    let finalize = yaml(&ws.path().join("k8s/apisnap-events.finalize.job.yaml"));
    assert_eq!(finalize["kind"], "Job");
    assert!(finalize["spec"]["completionMode"].is_null());
    let args = &finalize["spec"]["template"]["spec"]["containers"][0]["args"];
    assert_eq!(args[2], "finalize");
    assert!(args.as_array().unwrap().iter().any(|a| a == "4"));
}

/// Lays out, under `root`, the files a pod of `cron_job` sees from its `jobs` ConfigMap
/// (`map`) and makes its other mounts, as the kubelet would: items below a mount, and a
/// single item where a mount names a `subPath`.
fn materialize_pod(root: &Path, cron_job: &Value, map: &Value) {
    let pod = &cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let volumes = pod["volumes"].as_array().unwrap();
    for mount in pod["containers"][0]["volumeMounts"].as_array().unwrap() {
        let at = root.join(mount["mountPath"].as_str().unwrap().trim_start_matches('/'));
        let volume = volumes.iter().find(|v| v["name"] == mount["name"]).unwrap();
        let Some(items) = volume["configMap"]["items"].as_array() else {
            std::fs::create_dir_all(&at).unwrap();
            continue;
        };
        for item in items {
            let path = item["path"].as_str().unwrap();
            let text = map["data"][item["key"].as_str().unwrap()].as_str().unwrap();
            let target = match mount["subPath"].as_str() {
                Some(sub) if sub == path => at.clone(),
                Some(_) => continue,
                None => at.join(path),
            };
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(&target, text).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_declared_columns_runs_in_the_pod_as_rendered() {
    let ws = Workspace::with_shipped_jobs();
    let sandbox = common::start_sandbox(apisnap::sandbox::SandboxConfig {
        records: 1_200,
        ..Default::default()
    })
    .await;
    // The shipped job, with its columns declared in a file beside the jobs.
    let shipped = std::fs::read_to_string(ws.path().join("jobs/seal_metrics_events.toml")).unwrap();
    ws.write(
        "jobs/declared.toml",
        &shipped.replace(
            "[schedule]",
            "[schema]\nfile = \"schemas/declared.columns.toml\"\ndrift = \"ignore\"\n\n[schedule]",
        ),
    );
    // `created_at` as text, where inference would make it a timestamp: the pod reads the file.
    ws.write(
        "schemas/declared.columns.toml",
        "[[columns]]\nname = \"id\"\ntype = \"int64\"\n\n[[columns]]\nname = \"created_at\"\n\
         type = \"string\"\n",
    );
    let out = ws
        .apisnap(
            &[
                "deploy",
                "kubernetes",
                "--out",
                "k8s",
                "--image",
                "apisnap:test",
            ],
            &[],
        )
        .await;
    assert_exit(&out, 0);
    let k8s = ws.path().join("k8s");
    let job = yaml(&k8s.join("apisnap-declared.cronjob.yaml"));
    let map = yaml(&k8s.join("apisnap-jobs.configmap.yaml"));
    assert_eq!(
        map["data"]["columns.schemas.declared.columns.toml"],
        std::fs::read_to_string(ws.path().join("schemas/declared.columns.toml")).unwrap()
    );
    let root = ws.path().join("pod");
    materialize_pod(&root, &job, &map);
    // The container's command, in its working directory, with the sandbox's credentials.
    let container = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let workdir = root.join(
        container["workingDir"]
            .as_str()
            .unwrap()
            .trim_start_matches('/'),
    );
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .map(|a| match a.strip_prefix('/') {
            Some(abs) if a.starts_with("/etc/") => root.join(abs).to_string_lossy().into_owned(),
            _ => a,
        })
        .collect();
    let mut env = common::provider_env(&sandbox, &ws, "seal_metrics");
    env.retain(|(k, _)| !k.starts_with("APISNAP_JOB_"));
    let out = tokio::process::Command::new(common::bin())
        .args(&args)
        .current_dir(&workdir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .await
        .unwrap();
    assert_exit(&out, 0);
    let dirs = common::snapshot_dirs(&workdir.join("out/declared"));
    assert_eq!(dirs.len(), 1);
    let batch = &common::read_parquet(&common::parts(&dirs[0])[0])[0];
    let names: Vec<&str> = batch
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(
        names,
        ["id", "created_at"],
        "the declared columns, not inferred ones"
    );
    assert_eq!(
        batch.schema_ref().field(1).data_type(),
        &arrow_schema::DataType::Utf8
    );
}
