//! The environment a job is loaded in: process variables, a `.env` file, and overlays.
//!
//! Loading never calls `std::env::set_var`: the demo and the tests hand their overrides to an
//! [`Env`] value instead, so concurrent runs in one process cannot see each other's settings.

use std::collections::HashMap;

/// A snapshot of environment variables used to resolve overrides and `env:` secrets.
#[derive(Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl std::fmt::Debug for Env {
    // Values may be secrets; only the names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.vars.keys().collect();
        names.sort();
        f.debug_struct("Env").field("names", &names).finish()
    }
}

impl Env {
    /// The process environment. A `.env` file in the working directory has been merged into it
    /// by the binary at start-up (without overriding variables that are already set).
    pub fn from_process() -> Self {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    /// An empty environment (tests).
    pub fn empty() -> Self {
        Env::default()
    }

    /// Sets one variable in this snapshot (the process environment is untouched).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Returns a copy with `name` set.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set(name, value);
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// All variables whose name starts with `prefix`, for the `config` crate's environment
    /// source.
    pub fn with_prefix(&self, prefix: &str) -> HashMap<String, String> {
        self.vars
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The documented prefix of variables that override a provider file's fields:
/// `APISNAP_PROVIDER_<NAME>__<FIELD>[__<FIELD>...]`.
pub fn provider_prefix(name: &str) -> String {
    format!("APISNAP_PROVIDER_{}", env_name(name))
}

/// The documented prefix of variables that override a job file's fields:
/// `APISNAP_JOB_<NAME>__<FIELD>[__<FIELD>...]`.
pub fn job_prefix(name: &str) -> String {
    format!("APISNAP_JOB_{}", env_name(name))
}

/// `seal-metrics` -> `SEAL_METRICS`.
pub fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_upper_snake() {
        assert_eq!(
            provider_prefix("seal-metrics"),
            "APISNAP_PROVIDER_SEAL_METRICS"
        );
        assert_eq!(job_prefix("events.v2"), "APISNAP_JOB_EVENTS_V2");
    }

    #[test]
    fn debug_shows_no_values() {
        let env = Env::empty().with("TOKEN", "hunter2");
        assert!(!format!("{env:?}").contains("hunter2"));
    }
}
