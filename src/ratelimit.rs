//! Requests per second per provider, shared by every job of that provider in the process
//! (`apisnap run a b`, the scheduler), with `governor`'s GCRA limiter.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};

use governor::{DefaultDirectRateLimiter, Quota};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::vocab::ConfigErrors;

pub type Limiter = DefaultDirectRateLimiter;

/// How fast requests to a provider may go.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained requests per second.
    pub requests_per_second: u32,
    /// Requests that may go at once after a quiet spell.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn default_burst() -> u32 {
    1
}

impl RateLimitConfig {
    pub fn validate(&self, errors: &mut ConfigErrors) {
        errors.require(
            self.requests_per_second > 0,
            "rate_limit.requests_per_second",
            "expected at least 1 (remove the table for no limit)",
        );
        errors.require(self.burst > 0, "rate_limit.burst", "expected at least 1");
    }
}

/// The limiter of `provider`, created on first use and shared afterwards.
pub fn shared(provider: &str, config: &RateLimitConfig) -> Option<Arc<Limiter>> {
    static LIMITERS: OnceLock<Mutex<HashMap<String, Arc<Limiter>>>> = OnceLock::new();
    let quota = Quota::per_second(NonZeroU32::new(config.requests_per_second)?)
        .allow_burst(NonZeroU32::new(config.burst)?);
    let mut map = LIMITERS
        .get_or_init(Default::default)
        .lock()
        .expect("not poisoned");
    Some(
        map.entry(provider.to_string())
            .or_insert_with(|| Arc::new(Limiter::direct(quota)))
            .clone(),
    )
}
