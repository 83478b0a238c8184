//! Declared schemas: types and coercions, values that cannot be coerced (fail or null), and
//! `apisnap schema infer`.

mod common;

use apisnap::sandbox::data::record;
use apisnap::sandbox::{Sandbox, SandboxConfig};
use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float64Type, TimestampSecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use common::{Workspace, assert_exit, parts, provider_env, snapshot_dirs, text};

const JOB: &str = "seal_metrics_events";

const COLUMNS: &str = r#"
[[columns]]
name = "id"
type = "float64"          # integers coerced to floats
nullable = false

[[columns]]
name = "name"
type = "string"

[[columns]]
name = "amount"
type = "decimal"          # numbers to decimal(12, 2)
precision = 12
scale = 2

[[columns]]
name = "quantity"
type = "string"           # numbers kept as text

[[columns]]
name = "active"
type = "bool"

[[columns]]
name = "created_at"
type = "timestamp"        # ISO-8601 strings to timestamps
unit = "second"
timezone = "UTC"

[[columns]]
name = "tags"
type = "list"
item = { type = "string" }

[[columns]]
name = "address"
type = "json"             # an object kept as JSON text
"#;

fn batches(dir: &std::path::Path) -> Vec<RecordBatch> {
    parts(dir)
        .iter()
        .flat_map(|p| common::read_parquet(p))
        .collect()
}

async fn sandbox(config: SandboxConfig) -> Sandbox {
    common::start_sandbox(config).await
}

fn env(sandbox: &Sandbox, ws: &Workspace, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = provider_env(sandbox, ws, "seal_metrics");
    env.push((
        "APISNAP_JOB_SEAL_METRICS_EVENTS__SCHEMA__FILE".into(),
        "schemas/events.columns.toml".into(),
    ));
    for (k, v) in extra {
        env.push((k.to_string(), v.to_string()));
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_types_coerce_every_value() {
    let records = 3_000;
    let sandbox = sandbox(SandboxConfig {
        records,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    ws.write("schemas/events.columns.toml", COLUMNS);
    let out = ws.apisnap(&["run", JOB], &env(&sandbox, &ws, &[])).await;
    assert_exit(&out, 0);
    let dir = &snapshot_dirs(&ws.path().join("out"))[0];
    let mut i = 0u64;
    for batch in batches(dir) {
        let schema = batch.schema();
        assert_eq!(
            schema.field_with_name("id").unwrap().data_type(),
            &DataType::Float64
        );
        assert_eq!(
            schema.field_with_name("created_at").unwrap().data_type(),
            &DataType::Timestamp(TimeUnit::Second, Some("UTC".into()))
        );
        assert_eq!(
            schema.field_with_name("amount").unwrap().data_type(),
            &DataType::Decimal128(12, 2)
        );
        let id = batch
            .column_by_name("id")
            .unwrap()
            .as_primitive::<Float64Type>();
        let amount = batch
            .column_by_name("amount")
            .unwrap()
            .as_primitive::<Decimal128Type>();
        let quantity = batch.column_by_name("quantity").unwrap().as_string::<i32>();
        let created = batch
            .column_by_name("created_at")
            .unwrap()
            .as_primitive::<TimestampSecondType>();
        let address = batch.column_by_name("address").unwrap().as_string::<i32>();
        for row in 0..batch.num_rows() {
            let want = record(i);
            assert_eq!(id.value(row), want.id as f64);
            match want.amount {
                Some(a) => assert_eq!(amount.value(row), (a * 100.0).round() as i128, "record {i}"),
                None => assert!(amount.is_null(row)),
            }
            assert_eq!(quantity.value(row), want.quantity.to_string());
            let at = chrono::DateTime::parse_from_rfc3339(&want.created_at).unwrap();
            assert_eq!(created.value(row), at.timestamp());
            let json: serde_json::Value = serde_json::from_str(address.value(row)).unwrap();
            assert_eq!(
                json,
                serde_json::json!({"city": want.address.city, "zip": want.address.zip})
            );
            i += 1;
        }
    }
    assert_eq!(i, records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_that_cannot_be_coerced_fails_naming_it_or_becomes_null() {
    let records = 2_500;
    let sandbox = sandbox(SandboxConfig {
        records,
        bad_value_every: Some(1_000),
        ..SandboxConfig::default()
    })
    .await;
    let columns = COLUMNS.replace(
        "type = \"decimal\"          # numbers to decimal(12, 2)\nprecision = 12\nscale = 2",
        "type = \"float64\"",
    );
    assert_ne!(columns, COLUMNS);

    // fail (the default): page, record, field and value are named.
    let ws = Workspace::with_shipped_jobs();
    ws.write("schemas/events.columns.toml", &columns);
    let out = ws
        .apisnap(
            &["run", JOB],
            &env(
                &sandbox,
                &ws,
                &[("APISNAP_JOB_SEAL_METRICS_EVENTS__CONCURRENCY", "1")],
            ),
        )
        .await;
    assert_exit(&out, 1);
    let err = text(&out.stderr);
    assert!(
        err.contains("job `seal_metrics_events`: the page at offset 0"),
        "{err}"
    );
    assert!(
        err.contains("record 0 of the page: field `amount`: the value \"n/a\""),
        "{err}"
    );
    assert!(err.contains("schema.on_invalid = \"null\""), "{err}");

    // null: the run completes, the values are null, and the manifest counts them.
    let ws = Workspace::with_shipped_jobs();
    ws.write("schemas/events.columns.toml", &columns);
    let out = ws
        .apisnap(
            &["run", JOB],
            &env(
                &sandbox,
                &ws,
                &[(
                    "APISNAP_JOB_SEAL_METRICS_EVENTS__SCHEMA__ON_INVALID",
                    "null",
                )],
            ),
        )
        .await;
    assert_exit(&out, 0);
    let dir = &snapshot_dirs(&ws.path().join("out"))[0];
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("_manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["invalid_values_nulled"],
        serde_json::json!({"amount": 3})
    );
    let mut i = 0u64;
    for batch in batches(dir) {
        let amount = batch
            .column_by_name("amount")
            .unwrap()
            .as_primitive::<Float64Type>();
        for row in 0..batch.num_rows() {
            let want = if i.is_multiple_of(1_000) {
                None
            } else {
                record(i).amount
            };
            assert_eq!(
                amount.is_valid(row).then(|| amount.value(row)),
                want,
                "record {i}"
            );
            i += 1;
        }
    }
    assert_eq!(i, records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_infer_writes_a_column_file_the_job_can_use() {
    let sandbox = sandbox(SandboxConfig {
        records: 500,
        ..SandboxConfig::default()
    })
    .await;
    let ws = Workspace::with_shipped_jobs();
    let base = provider_env(&sandbox, &ws, "seal_metrics");
    let out = ws.apisnap(&["schema", "infer", JOB], &base).await;
    assert_exit(&out, 0);
    let printed = text(&out.stdout);
    assert!(
        printed.contains("name = \"created_at\"\ntype = \"timestamp\"\nunit = \"microsecond\"\ntimezone = \"UTC\""),
        "{printed}"
    );
    assert!(printed.contains("type = \"struct\""), "{printed}");
    std::fs::create_dir_all(ws.path().join("schemas")).unwrap();
    let out = ws
        .apisnap(
            &[
                "schema",
                "infer",
                JOB,
                "--out",
                "schemas/events.columns.toml",
            ],
            &base,
        )
        .await;
    assert_exit(&out, 0);
    let out = ws.apisnap(&["run", JOB], &env(&sandbox, &ws, &[])).await;
    assert_exit(&out, 0);
    common::check_parquet_snapshot(&snapshot_dirs(&ws.path().join("out"))[0], 500);
    // A broken column file is a config error naming file and field.
    ws.write(
        "schemas/events.columns.toml",
        "[[columns]]\nname = \"id\"\ntype = \"integer\"\n",
    );
    let out = ws
        .apisnap(&["validate", "--secrets"], &env(&sandbox, &ws, &[]))
        .await;
    assert_exit(&out, 2);
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "schemas/events.columns.toml: field `columns[0].type`: unknown type `integer`"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_structs_ints_and_not_nullable_columns() {
    let sandbox = sandbox(SandboxConfig {
        records: 1_000,
        ..SandboxConfig::default()
    })
    .await;
    let columns = r#"
[[columns]]
name = "id"
type = "int64"
nullable = false
[[columns]]
name = "address"
type = "struct"
fields = [{ name = "city", type = "string" }, { name = "zip", type = "string" }]
"#;
    let ws = Workspace::with_shipped_jobs();
    ws.write("schemas/events.columns.toml", columns);
    // The other fields are not declared: by default that stops the run.
    let out = ws.apisnap(&["run", JOB], &env(&sandbox, &ws, &[])).await;
    assert_exit(&out, 1);
    assert!(text(&out.stderr).contains("fixed by the column file"));
    let ignore = [("APISNAP_JOB_SEAL_METRICS_EVENTS__SCHEMA__DRIFT", "ignore")];
    let out = ws
        .apisnap(&["run", JOB, "--fresh"], &env(&sandbox, &ws, &ignore))
        .await;
    assert_exit(&out, 0);
    let dir = &snapshot_dirs(&ws.path().join("out"))[0];
    let mut i = 0u64;
    for batch in batches(dir) {
        assert_eq!(batch.num_columns(), 2, "only the declared columns");
        let address = batch.column_by_name("address").unwrap().as_struct();
        let city = address.column_by_name("city").unwrap().as_string::<i32>();
        for row in 0..batch.num_rows() {
            assert_eq!(city.value(row), record(i).address.city);
            i += 1;
        }
    }
    assert_eq!(i, 1_000);

    // amount is null in every 7th record: a non-nullable column refuses it, naming it.
    let ws = Workspace::with_shipped_jobs();
    ws.write(
        "schemas/events.columns.toml",
        "[[columns]]\nname = \"amount\"\ntype = \"float64\"\nnullable = false\n",
    );
    let out = ws
        .apisnap(
            &["run", JOB],
            &env(
                &sandbox,
                &ws,
                &[("APISNAP_JOB_SEAL_METRICS_EVENTS__SCHEMA__DRIFT", "ignore")],
            ),
        )
        .await;
    assert_exit(&out, 1);
    let err = text(&out.stderr);
    assert!(
        err.contains("record 3 of the page: field `amount`: the value (absent) cannot be read: the column is declared not nullable")
            || err.contains("record 3 of the page: field `amount`: the value null cannot be read: the column is declared not nullable"),
        "{err}"
    );
}
