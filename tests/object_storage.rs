//! Snapshots and state in object storage: the real binary against a real S3-compatible
//! server (moto's server mode, from PyPI, started on loopback), the snapshot read back from
//! it and every record compared; a run killed and resumed by a "second machine" with no
//! local state at all; two writers racing for one checkpoint.

mod common;

use std::path::Path;
use std::time::Duration;

use apisnap::sandbox::{Sandbox, SandboxConfig};
use common::{Workspace, assert_exit, check_parquet_snapshot, provider_env, text};
use object_store::ObjectStoreExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;

const JOB: &str = "seal_metrics_events";
const BUCKET: &str = "snapshots";

/// moto's S3 server on a free loopback port, stopped when dropped.
struct Moto {
    child: std::process::Child,
    port: u16,
}

impl Moto {
    async fn start() -> Moto {
        let python = common::analyst_python();
        let server = python.with_file_name("moto_server");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", server.display()));
        let moto = Moto { child, port };
        let url = format!("{}/{BUCKET}", moto.endpoint());
        for _ in 0..300 {
            if let Ok(r) = reqwest::Client::new().put(&url).send().await
                && r.status().is_success()
            {
                return moto;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("moto did not start on port {port}");
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The AWS standard environment, pointed at moto (object_store reads it).
    fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([("AWS_ENDPOINT".to_string(), self.endpoint())])
        .collect()
    }

    fn client(&self) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .build()
            .unwrap()
    }

    async fn keys(&self, prefix: &str) -> Vec<String> {
        use futures_util::TryStreamExt;
        let mut keys: Vec<String> =
            object_store::ObjectStore::list(&self.client(), Some(&Key::from(prefix)))
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
                .unwrap();
        keys.sort();
        keys
    }

    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.client().get(&Key::from(key)).await {
            Ok(got) => Some(got.bytes().await.unwrap().to_vec()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("{key}: {e}"),
        }
    }

    /// The multipart uploads in progress in the bucket (their ids), from S3's
    /// ListMultipartUploads.
    async fn uploads(&self) -> String {
        reqwest::get(format!("{}/{BUCKET}?uploads", self.endpoint()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn json(&self, key: &str) -> Option<serde_json::Value> {
        Some(serde_json::from_slice(&self.get(key).await?).unwrap())
    }

    /// Downloads the job's one complete snapshot into `into`; checks its part objects are
    /// exactly the manifest's. Returns the manifest.
    async fn download_snapshot(&self, into: &Path) -> serde_json::Value {
        let keys = self.keys(&format!("out/{JOB}")).await;
        let complete: Vec<&String> = keys.iter().filter(|k| k.ends_with("/_SUCCESS")).collect();
        assert_eq!(complete.len(), 1, "one complete snapshot: {keys:?}");
        let dir = complete[0].trim_end_matches("/_SUCCESS");
        let manifest = self.json(&format!("{dir}/_manifest.json")).await.unwrap();
        let listed: Vec<String> = manifest["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("{dir}/{}", p["file"].as_str().unwrap()))
            .collect();
        let stored: Vec<String> = keys
            .iter()
            .filter(|k| k.starts_with(&format!("{dir}/part-")))
            .cloned()
            .collect();
        assert_eq!(
            stored, listed,
            "the part objects are exactly the manifest's"
        );
        std::fs::create_dir_all(into).unwrap();
        for key in listed {
            let name = key.rsplit('/').next().unwrap();
            std::fs::write(into.join(name), self.get(&key).await.unwrap()).unwrap();
        }
        manifest
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn sandbox(records: u64, latency_ms: u64) -> Sandbox {
    common::start_sandbox(SandboxConfig {
        records,
        latency: Duration::from_millis(latency_ms),
        ..SandboxConfig::default()
    })
    .await
}

/// The shipped Seal Metrics job, writing its snapshot and state to moto.
fn job_env(
    sandbox: &Sandbox,
    moto: &Moto,
    ws: &Workspace,
    part_records: u64,
) -> Vec<(String, String)> {
    let mut env = provider_env(sandbox, ws, "seal_metrics");
    env.extend(moto.env());
    let prefix = apisnap::env::job_prefix(JOB);
    for (k, v) in [
        (
            "OUTPUT__DIR",
            format!("s3://{BUCKET}/out/{{job}}/{{run_id}}"),
        ),
        ("STATE_DIR", format!("s3://{BUCKET}/state")),
        ("OUTPUT__PART_RECORDS", part_records.to_string()),
    ] {
        env.push((format!("{prefix}__{k}"), v));
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_state_live_in_object_storage() {
    let records = 20_000;
    let sandbox = sandbox(records, 0).await;
    let moto = Moto::start().await;
    let ws = Workspace::with_shipped_jobs();
    let out = ws
        .apisnap(&["run", JOB], &job_env(&sandbox, &moto, &ws, 6_000))
        .await;
    assert_exit(&out, 0);

    let state = moto
        .json(&format!("state/{JOB}.json"))
        .await
        .expect("state");
    assert!(state["in_progress"].is_null(), "{state}");
    assert_eq!(state["history"][0]["records"], records);
    let report = moto
        .json(&format!("state/{JOB}.report.json"))
        .await
        .expect("report");
    assert_eq!(report["outcome"], "success");
    let latest = moto
        .json(&format!("out/{JOB}/latest.json"))
        .await
        .expect("latest");
    assert!(
        latest["snapshot"]
            .as_str()
            .unwrap()
            .starts_with("s3://snapshots/out/"),
        "{latest}"
    );

    let local = ws.path().join("downloaded");
    let manifest = moto.download_snapshot(&local).await;
    assert_eq!(manifest["records"], records);
    assert_eq!(manifest["parts"].as_array().unwrap().len(), 4);
    check_parquet_snapshot(&local, records);
    // Nothing of the snapshot or the state was written on this machine.
    assert!(!ws.path().join("out").exists() && !ws.path().join("state").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_on_another_machine() {
    let records = 30_000;
    let sandbox = sandbox(records, 30).await;
    let moto = Moto::start().await;
    let first = Workspace::with_shipped_jobs();
    let mut child = common::spawn(
        &first,
        &job_env(&sandbox, &moto, &first, 3_000),
        &["run", JOB],
    );
    // Killed (SIGKILL, as when a node is lost) once some parts are committed.
    let mut committed = 0;
    for _ in 0..600 {
        if let Some(state) = moto.json(&format!("state/{JOB}.json")).await {
            committed = state["in_progress"]["parts"].as_array().map_or(0, Vec::len);
            if committed >= 2 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(committed >= 2, "the first run committed no parts in time");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    // As if the kill had come in the middle of a large part's multipart upload: the run
    // notes the upload beside its state before the first chunk.
    let orphan = format!("out/{JOB}/part-99999-orphan.parquet");
    let id = object_store::multipart::MultipartStore::create_multipart(
        &moto.client(),
        &Key::from(orphan.as_str()),
    )
    .await
    .unwrap();
    let note = serde_json::json!({"url": format!("s3://{BUCKET}/{orphan}"), "id": id});
    moto.client()
        .put(
            &Key::from(format!("state/{JOB}.upload.json")),
            note.to_string().into(),
        )
        .await
        .unwrap();
    assert!(moto.uploads().await.contains(&id));

    // Another machine: a fresh workspace, no local state, no cache.
    let second = Workspace::with_shipped_jobs();
    let out = second
        .apisnap(&["run", JOB], &job_env(&sandbox, &moto, &second, 3_000))
        .await;
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("resumed"),
        "{}",
        text(&out.stdout)
    );
    let local = second.path().join("downloaded");
    let manifest = moto.download_snapshot(&local).await;
    assert_eq!(manifest["records"], records);
    check_parquet_snapshot(&local, records);
    assert!(
        !moto.uploads().await.contains(&id),
        "the orphaned upload is aborted"
    );
    assert!(
        moto.get(&format!("state/{JOB}.upload.json"))
            .await
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_racing_for_one_checkpoint_one_wins() {
    let records = 20_000;
    let sandbox = sandbox(records, 100).await;
    let moto = Moto::start().await;
    let (a, b) = (
        Workspace::with_shipped_jobs(),
        Workspace::with_shipped_jobs(),
    );
    let first = common::spawn(&a, &job_env(&sandbox, &moto, &a, 2_000), &["run", JOB]);
    let second = common::spawn(&b, &job_env(&sandbox, &moto, &b, 2_000), &["run", JOB]);
    let (first, second) = tokio::join!(first.wait_with_output(), second.wait_with_output());
    let mut outcomes = [first.unwrap(), second.unwrap()];
    outcomes.sort_by_key(|o| o.status.code());
    let [winner, loser] = outcomes;
    assert_eq!(
        (winner.status.code(), loser.status.code()),
        (Some(0), Some(5)),
        "exactly one wins:\n{}\n{}",
        text(&winner.stderr),
        text(&loser.stderr)
    );
    let message = text(&loser.stderr);
    assert!(
        message.contains("took over") || message.contains("another apisnap"),
        "{message}"
    );
    let local = a.path().join("downloaded");
    let manifest = moto.download_snapshot(&local).await;
    assert_eq!(manifest["records"], records);
    check_parquet_snapshot(&local, records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_on_one_run_exactly_one_finishes() {
    let records = 30_000;
    let sandbox = sandbox(records, 100).await;
    let moto = Moto::start().await;
    let (a, b) = (
        Workspace::with_shipped_jobs(),
        Workspace::with_shipped_jobs(),
    );
    // One request at a time: about 3 s for the run, time for the other to take over.
    let env = |ws: &Workspace| {
        let mut env = job_env(&sandbox, &moto, ws, 2_000);
        env.push((
            format!("{}__CONCURRENCY", apisnap::env::job_prefix(JOB)),
            "1".into(),
        ));
        env
    };
    let first = common::spawn(&a, &env(&a), &["run", JOB]);
    let mut committed = 0;
    for _ in 0..600 {
        if let Some(state) = moto.json(&format!("state/{JOB}.json")).await {
            committed = state["in_progress"]["parts"].as_array().map_or(0, Vec::len);
            if committed >= 1 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(committed >= 1, "the first run committed no part in time");
    // A second pod starts while the first is still going (a node that came back, a manual
    // run). It takes the run over and the first stops before its next part, unless the
    // first commits a part between the second's read and its claim: then the second
    // stops, and the first goes on. Either way exactly one finishes, and no record is lost
    // or written twice.
    let second = b.apisnap(&["run", JOB], &env(&b)).await;
    let first = first.wait_with_output().await.unwrap();
    let mut outcomes = [(first, "first"), (second, "second")];
    outcomes.sort_by_key(|(o, _)| o.status.code());
    let [(winner, _), (loser, which)] = &outcomes;
    assert_eq!(
        (winner.status.code(), loser.status.code()),
        (Some(0), Some(5)),
        "{}\n{}",
        text(&winner.stderr),
        text(&loser.stderr)
    );
    assert!(
        text(&loser.stderr).contains("took over"),
        "{which}: {}",
        text(&loser.stderr)
    );
    let local = b.path().join("downloaded");
    let manifest = moto.download_snapshot(&local).await;
    assert_eq!(manifest["records"], records);
    check_parquet_snapshot(&local, records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_hold_what_one_run_holds_record_for_record() {
    let records = 25_013;
    let sandbox = sandbox(records, 0).await;
    let moto = Moto::start().await;
    let ws = Workspace::with_shipped_jobs();
    let prefix = apisnap::env::job_prefix(JOB);
    let mut env = job_env(&sandbox, &moto, &ws, 3_000);
    // The answers say their total, which splits the pages.
    env.push((
        format!("{prefix}__PAGINATION__TOTAL_POINTER"),
        "/total".into(),
    ));
    env.push(("APISNAP_RUN_ID".into(), "nightly-1".into()));

    let early = ws.apisnap(&["finalize", JOB, "--shards", "4"], &env).await;
    assert_exit(&early, 6);
    assert!(text(&early.stderr).contains("not every shard is complete"));

    common::run_shards(&ws, &env, JOB, 4).await;

    let local = ws.path().join("downloaded");
    let manifest = moto.download_snapshot(&local).await;
    assert_eq!(manifest["run_id"], "nightly-1");
    assert_eq!(manifest["records"], records);
    let files: Vec<&str> = manifest["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["file"].as_str().unwrap())
        .collect();
    for i in 0..4 {
        assert!(
            files
                .iter()
                .any(|f| f.starts_with(&format!("part-{i:04}-"))),
            "shard {i} wrote parts: {files:?}"
        );
    }
    // In shard order, the parts hold records 0..N exactly once, as one run's would.
    check_parquet_snapshot(&local, records);
    // And literally: the same job run whole, elsewhere, holds the same rows.
    let mut whole_env = job_env(&sandbox, &moto, &ws, 3_000);
    whole_env.push((
        format!("{prefix}__STATE_DIR"),
        format!("s3://{BUCKET}/whole-state"),
    ));
    whole_env.push((
        format!("{prefix}__OUTPUT__DIR"),
        format!("s3://{BUCKET}/whole/{{job}}/{{run_id}}"),
    ));
    assert_exit(&ws.apisnap(&["run", JOB], &whole_env).await, 0);
    let whole = ws.path().join("whole");
    std::fs::create_dir_all(&whole).unwrap();
    for key in moto.keys("whole").await {
        if let Some(name) = key.rsplit('/').next().filter(|n| n.starts_with("part-")) {
            std::fs::write(whole.join(name), moto.get(&key).await.unwrap()).unwrap();
        }
    }
    // Every row, every value, as one table (the parts split the rows differently).
    let rows = |dir: &Path| {
        let batches: Vec<_> = common::parts(dir)
            .iter()
            .flat_map(|p| common::read_parquet(p))
            .collect();
        arrow_cast::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
    };
    assert_eq!(
        rows(&local),
        rows(&whole),
        "4 shards hold what one run holds"
    );
    let state = moto.json(&format!("state/{JOB}.json")).await.unwrap();
    assert_eq!(state["history"][0]["run_id"], "nightly-1");
    for i in 0..4 {
        let shard = moto
            .json(&format!("state/{JOB}.shard-{i}-of-4.json"))
            .await
            .unwrap();
        assert!(shard["in_progress"].is_null(), "shard {i}: {shard}");
    }
    let again = ws.apisnap(&["finalize", JOB, "--shards", "4"], &env).await;
    assert_exit(&again, 0);
    assert!(text(&again.stdout).contains("already finalized"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_retention_work_in_object_storage() {
    let records = 9_000;
    let sandbox = sandbox(records, 0).await;
    let moto = Moto::start().await;
    let ws = Workspace::with_shipped_jobs();
    let prefix = apisnap::env::job_prefix(JOB);
    let mut env = job_env(&sandbox, &moto, &ws, 2_000);
    env.push((format!("{prefix}__OUTPUT__COMPACT"), "true".into()));
    env.push((format!("{prefix}__OUTPUT__RETAIN"), "1".into()));
    for _ in 0..2 {
        assert_exit(&ws.apisnap(&["run", JOB], &env).await, 0);
    }
    // Two runs, one kept: the older snapshot is gone, objects and all.
    let keys = moto.keys(&format!("out/{JOB}")).await;
    let snapshots: std::collections::BTreeSet<_> = keys
        .iter()
        .filter_map(|k| k.strip_prefix(&format!("out/{JOB}/")))
        .filter_map(|k| k.split_once('/').map(|(dir, _)| dir))
        .collect();
    assert_eq!(snapshots.len(), 1, "{keys:?}");
    let local = ws.path().join("downloaded");
    let manifest = moto.download_snapshot(&local).await;
    let files: Vec<_> = manifest["parts"].as_array().unwrap().iter().collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["file"], "part-all.parquet");
    check_parquet_snapshot(&local, records);
}
