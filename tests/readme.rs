//! Docs that cannot drift: every TOML block of README.md is a provider, a job, a column file
//! or a job fragment, and `apisnap validate --secrets` accepts it (with the secrets it
//! names set).

mod common;

use common::{Workspace, assert_exit, text};

/// The ```toml blocks of README.md, with the line each starts at.
fn toml_blocks() -> Vec<(usize, String)> {
    common::readme_blocks("toml", None)
}

/// The variables a block's `env:NAME` secrets name.
fn secret_vars(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split("\"env:").skip(1))
        .filter_map(|rest| rest.split('"').next())
        .map(|name| (name.to_string(), "set-for-the-readme-test".to_string()))
        .collect()
}

/// The README's TLS files (`/etc/apisnap/…`) made for real in the workspace, so that the
/// example is checked as a run would check it: the CA bundle parses, the key belongs to the
/// certificate.
fn with_real_tls_files(ws: &Workspace, block: &str) -> String {
    if !block.contains("/etc/apisnap/") {
        return block.to_string();
    }
    let dir = ws.path().join("etc-apisnap");
    std::fs::create_dir_all(&dir).unwrap();
    let ca = common::certs::Ca::new("Example Corp Root CA");
    ca.write(&dir, "corporate-ca.pem");
    common::certs::Ca::new("Example Corp Client CA")
        .client("apisnap@data-team")
        .write(&dir, "client");
    block.replace("/etc/apisnap/", &format!("{}/", dir.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_toml_example_in_the_readme_validates() {
    let blocks = toml_blocks();
    assert!(blocks.len() >= 4, "found {} TOML blocks", blocks.len());
    for (line, block) in blocks {
        let ws = Workspace::with_shipped_jobs();
        let block = with_real_tls_files(&ws, &block);
        // What to validate: the file written, and for a provider the shipped job on it.
        let starts = |key: &str| block.lines().any(|l| l.starts_with(key));
        let (what, files) = if starts("base_url = ") {
            ws.write("jobs/providers/seal_metrics.toml", &block);
            (
                "a provider",
                vec![
                    "jobs/providers/seal_metrics.toml",
                    "jobs/seal_metrics_events.toml",
                ],
            )
        } else if block.contains("[[columns]]") {
            ws.write("schemas/readme.columns.toml", &block);
            ws.write(
                "jobs/readme.toml",
                "provider = \"seal_metrics\"\n[endpoint]\npath = \"/stats/events\"\n\
                 [pagination]\ntype = \"none\"\n[schema]\nfile = \"schemas/readme.columns.toml\"\n",
            );
            ("a column file", vec!["jobs/readme.toml"])
        } else if starts("provider = ") {
            ws.write("jobs/readme.toml", &block);
            ("a job", vec!["jobs/readme.toml"])
        } else {
            // A fragment of a job: its tables (and the keys before them) on a minimal job.
            ws.write(
                "jobs/readme.toml",
                &format!(
                    "provider = \"seal_metrics\"\n{block}\n[endpoint]\npath = \"/stats/events\"\n\
                     [pagination]\ntype = \"none\"\n"
                ),
            );
            ("a job fragment", vec!["jobs/readme.toml"])
        };
        let mut env = secret_vars(&block);
        // The shipped provider's own secrets, for blocks that are not the provider.
        for name in ["SEAL_METRICS_EMAIL", "SEAL_METRICS_PASSWORD"] {
            env.push((name.into(), "set".into()));
        }
        let mut args = vec!["validate", "--secrets"];
        args.extend(files);
        let out = ws.apisnap(&args, &env).await;
        assert!(
            out.status.code() == Some(0),
            "README.md line {line} ({what}) does not validate:\n{}\n{block}",
            text(&out.stderr),
        );
        assert_exit(&out, 0);
    }
}
