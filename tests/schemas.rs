//! The published JSON Schemas match the Rust types. Regenerate with
//! `cargo run -- schema export`.

#[test]
fn schemas_are_fresh() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    for (name, want) in apisnap::config::json_schemas() {
        let path = dir.join(name);
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is stale: run `cargo run -- schema export` and commit the result",
            path.display()
        );
    }
}

#[test]
fn schemas_describe_the_shipped_files() {
    // Every top-level key of the shipped files is a property the schema knows.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let schemas = apisnap::config::json_schemas();
    let props = |name: &str| -> Vec<String> {
        let (_, text) = schemas.iter().find(|(n, _)| *n == name).unwrap();
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        v["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let job_props = props("job.schema.json");
    for key in ["provider", "endpoint", "pagination", "output", "schedule"] {
        assert!(job_props.contains(&key.to_string()), "{key}");
    }
    let provider_props = props("provider.schema.json");
    for key in ["base_url", "auth", "headers", "retry"] {
        assert!(provider_props.contains(&key.to_string()), "{key}");
    }
    assert!(root.join("jobs/providers").is_dir());
}
