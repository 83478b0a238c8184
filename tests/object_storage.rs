//! Snapshots and state in object storage: the real binary against real object stores started
//! on loopback — moto's S3 server (PyPI) and Azurite's Azure Blob Storage (npm) — the
//! snapshot read back from them and every record compared; a run killed and resumed by a
//! "second machine" with no local state at all; two writers racing for one checkpoint.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use apisnap::sandbox::{Sandbox, SandboxConfig};
use common::{Workspace, assert_exit, check_parquet_snapshot, provider_env, text};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt};

const JOB: &str = "seal_metrics_events";
/// The bucket (S3) or container (Azure) the tests write to.
const BUCKET: &str = "snapshots";
/// Azurite's one account and its published key (not a secret: every Azurite has it).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// moto's S3 server.
    S3,
    /// Azurite's Blob Storage.
    Azure,
}

/// An object store server on a free loopback port with the bucket created, stopped when
/// dropped.
struct Server {
    kind: Kind,
    child: std::process::Child,
    port: u16,
}

impl Server {
    async fn start(kind: Kind) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = match kind {
            Kind::S3 => {
                let server = common::analyst_python().with_file_name("moto_server");
                let mut command = std::process::Command::new(server);
                command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                command
            }
            Kind::Azure => {
                let mut command = std::process::Command::new(common::azurite_blob());
                command
                    .args([
                        "--inMemoryPersistence",
                        "--silent",
                        "--blobHost",
                        "127.0.0.1",
                    ])
                    .args(["--blobPort", &port.to_string()])
                    // object_store may speak a newer service version than this Azurite knows.
                    .arg("--skipApiVersionCheck");
                command
            }
        };
        let child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("the {kind:?} server does not start: {e}"));
        let server = Server { kind, child, port };
        for _ in 0..300 {
            if server.create_bucket().await {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the {kind:?} server did not start on port {port}");
    }

    /// Creates the bucket; false while the server is not up yet.
    async fn create_bucket(&self) -> bool {
        match self.kind {
            Kind::S3 => reqwest::Client::new()
                .put(format!("{}/{BUCKET}", self.endpoint()))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success()),
            Kind::Azure => {
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                    return false;
                }
                // Containers are made with a signed request, so with Azure's own client.
                let script = "import sys\n\
                    from azure.storage.blob import BlobServiceClient\n\
                    BlobServiceClient.from_connection_string(sys.argv[1]).create_container(sys.argv[2])";
                let connection = format!(
                    "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};\
                     AccountKey={AZURITE_KEY};BlobEndpoint={};",
                    self.endpoint()
                );
                // Listening is not yet serving: a failure is tried again, like moto's.
                std::process::Command::new(common::analyst_python())
                    .args(["-c", script, &connection, BUCKET])
                    .output()
                    .unwrap()
                    .status
                    .success()
            }
        }
    }

    /// The address the clients talk to (Azure's includes the account, path-style).
    fn endpoint(&self) -> String {
        match self.kind {
            Kind::S3 => format!("http://127.0.0.1:{}", self.port),
            Kind::Azure => format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port),
        }
    }

    /// `s3://snapshots` or `az://snapshots`.
    fn root(&self) -> String {
        let scheme = match self.kind {
            Kind::S3 => "s3",
            Kind::Azure => "az",
        };
        format!("{scheme}://{BUCKET}")
    }

    /// Each cloud's standard environment, pointed at the server (object_store reads it).
    fn env(&self) -> Vec<(String, String)> {
        let fixed: &[(&str, &str)] = match self.kind {
            Kind::S3 => &[
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ALLOW_HTTP", "true"),
            ],
            Kind::Azure => &[
                ("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT),
                ("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY),
                ("AZURE_ALLOW_HTTP", "true"),
            ],
        };
        let endpoint = match self.kind {
            Kind::S3 => "AWS_ENDPOINT",
            Kind::Azure => "AZURE_STORAGE_ENDPOINT",
        };
        fixed
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([(endpoint.to_string(), self.endpoint())])
            .collect()
    }

    fn s3(&self) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .build()
            .unwrap()
    }

    fn client(&self) -> Arc<dyn ObjectStore> {
        match self.kind {
            Kind::S3 => Arc::new(self.s3()),
            Kind::Azure => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::new()
                    .with_container_name(BUCKET)
                    .with_account(AZURITE_ACCOUNT)
                    .with_access_key(AZURITE_KEY)
                    .with_endpoint(self.endpoint())
                    .with_allow_http(true)
                    .build()
                    .unwrap(),
            ),
        }
    }

    async fn keys(&self, prefix: &str) -> Vec<String> {
        use futures_util::TryStreamExt;
        let mut keys: Vec<String> = self
            .client()
            .list(Some(&Key::from(prefix)))
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
        assert_eq!(self.kind, Kind::S3);
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
        self.download_dir(dir, into).await
    }

    /// Downloads the complete snapshot at the prefix `dir` into `into`; checks its part
    /// objects are exactly the manifest's. Returns the manifest.
    async fn download_dir(&self, dir: &str, into: &Path) -> serde_json::Value {
        assert!(
            self.get(&format!("{dir}/_SUCCESS")).await.is_some(),
            "{dir} is complete"
        );
        let keys = self.keys(dir).await;
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

impl Drop for Server {
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

/// The shipped Seal Metrics job, writing its snapshot and state to store.
fn job_env(
    sandbox: &Sandbox,
    store: &Server,
    ws: &Workspace,
    part_records: u64,
) -> Vec<(String, String)> {
    let mut env = provider_env(sandbox, ws, "seal_metrics");
    env.extend(store.env());
    let prefix = apisnap::env::job_prefix(JOB);
    for (k, v) in [
        (
            "OUTPUT__DIR",
            format!("{}/out/{{job}}/{{run_id}}", store.root()),
        ),
        ("STATE_DIR", format!("{}/state", store.root())),
        ("OUTPUT__PART_RECORDS", part_records.to_string()),
    ] {
        env.push((format!("{prefix}__{k}"), v));
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_state_live_in_s3() {
    snapshot_and_state_live_in_object_storage(Kind::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_state_live_in_azure_blob_storage() {
    snapshot_and_state_live_in_object_storage(Kind::Azure).await;
}

async fn snapshot_and_state_live_in_object_storage(kind: Kind) {
    let records = 20_000;
    let sandbox = sandbox(records, 0).await;
    let store = Server::start(kind).await;
    let ws = Workspace::with_shipped_jobs();
    let out = ws
        .apisnap(&["run", JOB], &job_env(&sandbox, &store, &ws, 6_000))
        .await;
    assert_exit(&out, 0);

    let state = store
        .json(&format!("state/{JOB}.json"))
        .await
        .expect("state");
    assert!(state["in_progress"].is_null(), "{state}");
    assert_eq!(state["history"][0]["records"], records);
    let report = store
        .json(&format!("state/{JOB}.report.json"))
        .await
        .expect("report");
    assert_eq!(report["outcome"], "success");
    let latest = store
        .json(&format!("out/{JOB}/latest.json"))
        .await
        .expect("latest");
    assert!(
        latest["snapshot"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/out/", store.root())),
        "{latest}"
    );
    // Object storage has no links: `latest.txt` names the snapshot on one line.
    let line = store.get(&format!("out/{JOB}/latest.txt")).await.unwrap();
    assert_eq!(
        String::from_utf8(line).unwrap(),
        format!("{}\n", latest["snapshot"].as_str().unwrap())
    );

    let local = ws.path().join("downloaded");
    let manifest = store.download_snapshot(&local).await;
    assert_eq!(manifest["records"], records);
    assert_eq!(manifest["parts"].as_array().unwrap().len(), 4);
    check_parquet_snapshot(&local, records);
    // Nothing of the snapshot or the state was written on this machine.
    assert!(!ws.path().join("out").exists() && !ws.path().join("state").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_on_another_machine_s3() {
    a_killed_run_resumes_on_another_machine(Kind::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_on_another_machine_azure() {
    a_killed_run_resumes_on_another_machine(Kind::Azure).await;
}

async fn a_killed_run_resumes_on_another_machine(kind: Kind) {
    let records = 30_000;
    let sandbox = sandbox(records, 30).await;
    let store = Server::start(kind).await;
    let first = Workspace::with_shipped_jobs();
    let mut child = common::spawn(
        &first,
        &job_env(&sandbox, &store, &first, 3_000),
        &["run", JOB],
    );
    // Killed (SIGKILL, as when a node is lost) once some parts are committed.
    let mut committed = 0;
    for _ in 0..600 {
        if let Some(state) = store.json(&format!("state/{JOB}.json")).await {
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
    // notes the upload beside its state before the first chunk. (S3 keeps such uploads
    // until aborted; Azure drops uncommitted blocks by itself, so only S3 is checked.)
    let orphan = if kind == Kind::S3 {
        let key = format!("out/{JOB}/part-99999-orphan.parquet");
        let id = object_store::multipart::MultipartStore::create_multipart(
            &store.s3(),
            &Key::from(key.as_str()),
        )
        .await
        .unwrap();
        let note = serde_json::json!({"url": format!("{}/{key}", store.root()), "id": id});
        store
            .client()
            .put(
                &Key::from(format!("state/{JOB}.upload.json")),
                note.to_string().into(),
            )
            .await
            .unwrap();
        assert!(store.uploads().await.contains(&id));
        Some(id)
    } else {
        None
    };

    // Another machine: a fresh workspace, no local state, no cache.
    let second = Workspace::with_shipped_jobs();
    let out = second
        .apisnap(&["run", JOB], &job_env(&sandbox, &store, &second, 3_000))
        .await;
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("resumed"),
        "{}",
        text(&out.stdout)
    );
    let local = second.path().join("downloaded");
    let manifest = store.download_snapshot(&local).await;
    assert_eq!(manifest["records"], records);
    check_parquet_snapshot(&local, records);
    if let Some(id) = orphan {
        assert!(
            !store.uploads().await.contains(&id),
            "the orphaned upload is aborted"
        );
        assert!(
            store
                .get(&format!("state/{JOB}.upload.json"))
                .await
                .is_none()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_racing_for_one_checkpoint_in_s3_one_wins() {
    two_writers_racing_for_one_checkpoint_one_wins(Kind::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_racing_for_one_checkpoint_in_azure_one_wins() {
    two_writers_racing_for_one_checkpoint_one_wins(Kind::Azure).await;
}

async fn two_writers_racing_for_one_checkpoint_one_wins(kind: Kind) {
    let records = 20_000;
    let sandbox = sandbox(records, 100).await;
    let store = Server::start(kind).await;
    let (a, b) = (
        Workspace::with_shipped_jobs(),
        Workspace::with_shipped_jobs(),
    );
    let first = common::spawn(&a, &job_env(&sandbox, &store, &a, 2_000), &["run", JOB]);
    let second = common::spawn(&b, &job_env(&sandbox, &store, &b, 2_000), &["run", JOB]);
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
    let manifest = store.download_snapshot(&local).await;
    assert_eq!(manifest["records"], records);
    check_parquet_snapshot(&local, records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_on_one_run_exactly_one_finishes() {
    let records = 30_000;
    let sandbox = sandbox(records, 100).await;
    let store = Server::start(Kind::S3).await;
    let (a, b) = (
        Workspace::with_shipped_jobs(),
        Workspace::with_shipped_jobs(),
    );
    // One request at a time: about 3 s for the run, time for the other to take over.
    let env = |ws: &Workspace| {
        let mut env = job_env(&sandbox, &store, ws, 2_000);
        env.push((
            format!("{}__CONCURRENCY", apisnap::env::job_prefix(JOB)),
            "1".into(),
        ));
        env
    };
    let first = common::spawn(&a, &env(&a), &["run", JOB]);
    let mut committed = 0;
    for _ in 0..600 {
        if let Some(state) = store.json(&format!("state/{JOB}.json")).await {
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
    let manifest = store.download_snapshot(&local).await;
    assert_eq!(manifest["records"], records);
    check_parquet_snapshot(&local, records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_hold_what_one_run_holds_record_for_record() {
    let records = 25_013;
    let sandbox = sandbox(records, 0).await;
    let store = Server::start(Kind::S3).await;
    let ws = Workspace::with_shipped_jobs();
    let prefix = apisnap::env::job_prefix(JOB);
    let mut env = job_env(&sandbox, &store, &ws, 3_000);
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
    let manifest = store.download_snapshot(&local).await;
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
    let mut whole_env = job_env(&sandbox, &store, &ws, 3_000);
    whole_env.push((
        format!("{prefix}__STATE_DIR"),
        format!("{}/whole-state", store.root()),
    ));
    whole_env.push((
        format!("{prefix}__OUTPUT__DIR"),
        format!("{}/whole/{{job}}/{{run_id}}", store.root()),
    ));
    assert_exit(&ws.apisnap(&["run", JOB], &whole_env).await, 0);
    let whole = ws.path().join("whole");
    std::fs::create_dir_all(&whole).unwrap();
    for key in store.keys("whole").await {
        if let Some(name) = key.rsplit('/').next().filter(|n| n.starts_with("part-")) {
            std::fs::write(whole.join(name), store.get(&key).await.unwrap()).unwrap();
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
    let state = store.json(&format!("state/{JOB}.json")).await.unwrap();
    assert_eq!(state["history"][0]["run_id"], "nightly-1");
    for i in 0..4 {
        let shard = store
            .json(&format!("state/{JOB}.shard-{i}-of-4.json"))
            .await
            .unwrap();
        assert!(shard["in_progress"].is_null(), "shard {i}: {shard}");
    }
    // `status` finds the shards' reports in the bucket.
    let job = common::status_of(&ws, &env, JOB).await;
    let shards = job["last_sharded_run"].as_array().unwrap();
    assert_eq!(shards.len(), 4, "{job}");
    for (i, r) in shards.iter().enumerate() {
        assert_eq!(r["shard"], format!("{i}/4"));
        assert_eq!(r["outcome"], "success");
        assert_eq!(r["run_id"], "nightly-1");
    }
    assert_eq!(job["last_success"]["records"], records);
    let again = ws.apisnap(&["finalize", JOB, "--shards", "4"], &env).await;
    assert_exit(&again, 0);
    assert!(text(&again.stdout).contains("already finalized"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_retention_work_in_object_storage() {
    let records = 9_000;
    let sandbox = sandbox(records, 0).await;
    let store = Server::start(Kind::S3).await;
    let ws = Workspace::with_shipped_jobs();
    let prefix = apisnap::env::job_prefix(JOB);
    let mut env = job_env(&sandbox, &store, &ws, 2_000);
    env.push((format!("{prefix}__OUTPUT__COMPACT"), "true".into()));
    env.push((format!("{prefix}__OUTPUT__RETAIN"), "1".into()));
    for _ in 0..2 {
        assert_exit(&ws.apisnap(&["run", JOB], &env).await, 0);
    }
    // Two runs, one kept: the older snapshot is gone, objects and all.
    let keys = store.keys(&format!("out/{JOB}")).await;
    let snapshots: std::collections::BTreeSet<_> = keys
        .iter()
        .filter_map(|k| k.strip_prefix(&format!("out/{JOB}/")))
        .filter_map(|k| k.split_once('/').map(|(dir, _)| dir))
        .collect();
    assert_eq!(snapshots.len(), 1, "{keys:?}");
    let local = ws.path().join("downloaded");
    let manifest = store.download_snapshot(&local).await;
    let files: Vec<_> = manifest["parts"].as_array().unwrap().iter().collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["file"], "part-all.parquet");
    check_parquet_snapshot(&local, records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_into_a_complete_prefix_writes_beside_it_s3() {
    a_rerun_into_a_complete_prefix_writes_beside_it(Kind::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_into_a_complete_prefix_writes_beside_it_azure() {
    a_rerun_into_a_complete_prefix_writes_beside_it(Kind::Azure).await;
}

/// Object storage cannot rename: a second run into a prefix that holds a complete snapshot
/// (the default `{date}` twice in a day) writes its own beside it, and `latest.json` moves
/// to it only when it is complete.
async fn a_rerun_into_a_complete_prefix_writes_beside_it(kind: Kind) {
    let store = Server::start(kind).await;
    let ws = Workspace::with_shipped_jobs();
    let prefix = apisnap::env::job_prefix(JOB);
    let daily = format!("out/{JOB}/daily");
    let with_dir = |sandbox: &Sandbox| {
        let mut env = job_env(sandbox, &store, &ws, 1_000);
        env.push((
            format!("{prefix}__OUTPUT__DIR"),
            format!("{}/{daily}", store.root()),
        ));
        env
    };
    let good = sandbox(3_000, 0).await;
    assert_exit(&ws.apisnap(&["run", JOB], &with_dir(&good)).await, 0);
    let first = store
        .json(&format!("{daily}/_manifest.json"))
        .await
        .unwrap();
    let latest_key = format!("out/{JOB}/latest.json");
    let latest = || store.json(&latest_key);

    // The second run fails midway (a new field, `drift = "fail"`).
    let breaking = common::start_sandbox(SandboxConfig {
        records: 8_000,
        new_field_from: Some(3_000),
        ..SandboxConfig::default()
    })
    .await;
    assert_exit(&ws.apisnap(&["run", JOB], &with_dir(&breaking)).await, 1);
    let local = ws.path().join("old");
    let kept = store.download_dir(&daily, &local).await;
    assert_eq!(kept["run_id"], first["run_id"]);
    check_parquet_snapshot(&local, 3_000);
    assert_eq!(latest().await.unwrap()["run_id"], first["run_id"]);

    // Resumed against a server that answers: complete beside the old one, and the latest.
    let fixed = sandbox(8_000, 0).await;
    let out = ws.apisnap(&["run", JOB], &with_dir(&fixed)).await;
    assert_exit(&out, 0);
    let latest = latest().await.unwrap();
    assert_ne!(latest["run_id"], first["run_id"], "{}", text(&out.stderr));
    let new_dir = format!("{daily}.{}", latest["run_id"].as_str().unwrap());
    assert_eq!(
        latest["snapshot"].as_str().unwrap(),
        format!("{}/{new_dir}", store.root())
    );
    let local = ws.path().join("new");
    let written = store.download_dir(&new_dir, &local).await;
    assert_eq!(written["records"], 8_000);
    check_parquet_snapshot(&local, 8_000);
    // The earlier snapshot stays complete until `retain` prunes it.
    let local = ws.path().join("old-again");
    store.download_dir(&daily, &local).await;
    check_parquet_snapshot(&local, 3_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_storage_failures_are_one_line_a_person_can_act_on() {
    let sandbox = sandbox(500, 0).await;
    // The error line, checked to be one line without the service's XML.
    let error_line = |out: &std::process::Output| -> String {
        let stderr = text(&out.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "one line: {stderr}");
        assert!(
            !stderr.contains("<?xml") && !stderr.contains("<Error>"),
            "{stderr}"
        );
        errors[0].to_string()
    };
    for kind in [Kind::S3, Kind::Azure] {
        let store = Server::start(kind).await;
        let ws = Workspace::with_shipped_jobs();
        let prefix = apisnap::env::job_prefix(JOB);
        let scheme = store.root().split("://").next().unwrap().to_string();
        // A bucket (an Azure container) that does not exist.
        let mut env = job_env(&sandbox, &store, &ws, 1_000);
        env.push((
            format!("{prefix}__OUTPUT__DIR"),
            format!("{scheme}://missing/out"),
        ));
        env.push((
            format!("{prefix}__STATE_DIR"),
            format!("{scheme}://missing/state"),
        ));
        let out = ws.apisnap(&["run", JOB], &env).await;
        assert_exit(&out, 1);
        let line = error_line(&out);
        assert!(
            line.contains("job `seal_metrics_events`")
                && line.contains("bucket `missing` does not exist")
                && line.contains(&format!("{scheme}://missing/state/")),
            "{kind:?}: {line}"
        );
    }
    // Credentials the service refuses (Azurite checks the account key's signature).
    let store = Server::start(Kind::Azure).await;
    let ws = Workspace::with_shipped_jobs();
    let mut env = job_env(&sandbox, &store, &ws, 1_000);
    for (k, v) in &mut env {
        if k == "AZURE_STORAGE_ACCOUNT_KEY" {
            *v = AZURITE_KEY.replace('E', "F");
        }
    }
    let out = ws.apisnap(&["run", JOB], &env).await;
    assert_exit(&out, 1);
    let line = error_line(&out);
    assert!(
        line.contains("access denied for bucket `snapshots`")
            && line.contains("AuthorizationFailure")
            && line.contains("check the credentials"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_table_lives_in_object_storage_too() {
    let per_generation = 800;
    let sandbox = common::start_sandbox(SandboxConfig {
        records: per_generation,
        ..SandboxConfig::default()
    })
    .await;
    let store = Server::start(Kind::S3).await;
    let ws = Workspace::with_shipped_jobs();
    ws.write(
        "jobs/orders.toml",
        "provider = \"seal_metrics\"\n[endpoint]\npath = \"/changes\"\n\
         [pagination]\ntype = \"offset\"\npage_size = 500\ntotal_pointer = \"/total\"\n\
         [incremental]\ncursor_field = \"updated_at\"\nparam = \"updated_after\"\n\
         [table]\nprimary_key = [\"id\"]\norder_by = \"updated_at\"\n\
         tombstone = { field = \"deleted\", equals = true }\nbuckets = 4\n",
    );
    let mut env = provider_env(&sandbox, &ws, "seal_metrics");
    env.extend(store.env());
    let prefix = apisnap::env::job_prefix("orders");
    env.push((
        format!("{prefix}__OUTPUT__DIR"),
        format!("{}/out/{{job}}/{{run_id}}", store.root()),
    ));
    env.push((
        format!("{prefix}__STATE_DIR"),
        format!("{}/state", store.root()),
    ));
    for g in 1..=2 {
        sandbox.set_generation(g);
        assert_exit(&ws.apisnap(&["run", "orders"], &env).await, 0);
    }
    // `current.txt` names the newest version, whose manifest names its files.
    let pointer = String::from_utf8(store.get("out/orders/current.txt").await.unwrap()).unwrap();
    let version = format!("{}/out/orders/_current/v000002", store.root());
    assert_eq!(pointer, format!("{version}\n"));
    let manifest = store
        .json("out/orders/_current/v000002/_manifest.json")
        .await
        .unwrap();
    let mut ids = Vec::new();
    let local = ws.path().join("current");
    std::fs::create_dir_all(&local).unwrap();
    for file in manifest["files"].as_array().unwrap() {
        let name = file["file"].as_str().unwrap();
        let bytes = store
            .get(&format!("out/orders/_current/v000002/{name}"))
            .await
            .unwrap();
        std::fs::write(local.join(name), bytes).unwrap();
        for batch in common::read_parquet(&local.join(name)) {
            use arrow_array::cast::AsArray;
            let id = batch.column_by_name("id").unwrap();
            ids.extend(
                id.as_primitive::<arrow_array::types::Int64Type>()
                    .values()
                    .iter()
                    .map(|v| *v as u64),
            );
        }
    }
    ids.sort();
    let want: Vec<u64> = (0..2 * per_generation)
        .filter_map(|id| apisnap::sandbox::changes_state(id, 2, per_generation))
        .filter(|c| !c.deleted)
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, want);
    assert_eq!(manifest["rows"], want.len());
    // The DuckDB views name the version by its URL: object storage has no link to follow.
    let views = String::from_utf8(store.get("out/orders/duckdb.sql").await.unwrap()).unwrap();
    assert!(
        views.contains(&format!("read_parquet('{version}/*.parquet')")),
        "{views}"
    );
}
