//! Job and provider files: their types, loading, environment overrides and validation.
//!
//! A provider (`jobs/providers/NAME.toml`) says how to reach and authenticate against one API;
//! a job (`jobs/NAME.toml`) names a provider, an endpoint, a pagination strategy, an output and
//! optionally a schedule. Both are loaded with the `config` crate so that any field can be
//! overridden from the environment (`APISNAP_PROVIDER_<NAME>__<FIELD>`,
//! `APISNAP_JOB_<NAME>__<FIELD>`, nested fields joined with `__`), then deserialized strictly
//! (unknown fields are errors) and validated. Every error names the file, the field and what
//! was expected.

mod job;
mod load;
mod provider;
mod validate;

pub use job::{
    Drift, EndpointConfig, HttpMethod, JobConfig, OnCountMismatch, OnDuplicate, OnInvalid,
    SchemaConfig,
};
pub use load::{JobDefinition, find_job, job_files, load_job, load_provider};
pub use provider::ProviderConfig;
pub use validate::{Report, validate_paths};
// The vocabulary, re-exported for the binary and the definitions here.
pub use crate::vocab::{ConfigError, ConfigErrors, JsonPointer, check_base_url, join_url};

/// The JSON Schemas of the job and provider files, generated from the types above (doc
/// comments become descriptions), as `(file name, pretty JSON)`.
pub fn json_schemas() -> Vec<(&'static str, String)> {
    let render = |schema: schemars::Schema| {
        let mut text = serde_json::to_string_pretty(&schema).expect("schemas serialize");
        text.push('\n');
        text
    };
    vec![
        ("job.schema.json", render(schemars::schema_for!(JobConfig))),
        (
            "provider.schema.json",
            render(schemars::schema_for!(ProviderConfig)),
        ),
    ]
}
