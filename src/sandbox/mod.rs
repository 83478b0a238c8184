//! The sandbox: a real HTTP server on loopback that emulates the reference providers.
//!
//! Tests, benchmarks and `apisnap demo` reach the providers through it, over real HTTP, the
//! way users' jobs reach the real APIs. Each provider lives under its own base path
//! (`/seal`, ...) and keeps its own counters (logins, data requests, 401s), which tests read
//! with [`Sandbox::stats`] or `GET /_sandbox/stats`.

pub mod data;
mod seal;
mod tokens;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Serialize;
use tokio::sync::oneshot;

pub use tokens::Tokens;

/// Credentials the sandbox accepts; the demo and the tests use them.
pub mod credentials {
    pub const SEAL_EMAIL: &str = "analyst@example.com";
    pub const SEAL_PASSWORD: &str = "sandbox-seal-password";
}

/// How the sandbox behaves.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Records in the data set.
    pub records: u64,
    /// The most records one page returns, whatever the client asks for.
    pub max_page_size: u64,
    /// How long issued tokens live.
    pub token_ttl: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            records: 10_000,
            max_page_size: 10_000,
            token_ttl: Duration::from_secs(3600),
        }
    }
}

/// Per-provider counters.
#[derive(Debug, Default)]
pub struct Counters {
    pub logins: AtomicU64,
    pub failed_logins: AtomicU64,
    pub data_requests: AtomicU64,
    pub unauthorized: AtomicU64,
}

/// A snapshot of one provider's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CounterSnapshot {
    pub logins: u64,
    pub failed_logins: u64,
    pub data_requests: u64,
    pub unauthorized: u64,
}

impl Counters {
    fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            logins: self.logins.load(Ordering::Relaxed),
            failed_logins: self.failed_logins.load(Ordering::Relaxed),
            data_requests: self.data_requests.load(Ordering::Relaxed),
            unauthorized: self.unauthorized.load(Ordering::Relaxed),
        }
    }
}

/// State shared by all handlers.
pub(crate) struct Shared {
    pub config: SandboxConfig,
    pub tokens: Tokens,
    pub counters: BTreeMap<&'static str, Counters>,
}

impl Shared {
    pub(crate) fn counters(&self, provider: &str) -> &Counters {
        &self.counters[provider]
    }

    /// The records array for `[start, start + limit)`, capped by the data set and the page
    /// size cap.
    pub(crate) fn records_array(&self, start: u64, limit: u64, out: &mut Vec<u8>) {
        let end = start
            .saturating_add(limit.min(self.config.max_page_size))
            .min(self.config.records);
        out.push(b'[');
        for i in start..end.max(start) {
            if i > start {
                out.push(b',');
            }
            data::write_record(i, out);
        }
        out.push(b']');
    }
}

/// A running sandbox. Stops when dropped.
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The providers the sandbox emulates, by base path.
pub const PROVIDERS: [&str; 1] = ["seal"];

impl Sandbox {
    /// Starts on 127.0.0.1 (`port` 0 picks a free one).
    pub async fn start(config: SandboxConfig, port: u16) -> std::io::Result<Sandbox> {
        let shared = Arc::new(Shared {
            config,
            tokens: Tokens::default(),
            counters: PROVIDERS
                .iter()
                .map(|p| (*p, Counters::default()))
                .collect(),
        });
        let app = Router::new()
            .nest("/seal", seal::routes())
            .route("/_sandbox/stats", axum::routing::get(stats_handler))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Sandbox {
            addr,
            shared,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL of one emulated provider, e.g. `http://127.0.0.1:41234/seal`.
    pub fn base_url(&self, provider: &str) -> String {
        format!("http://{}/{provider}", self.addr)
    }

    /// The counters of one provider.
    pub fn stats(&self, provider: &str) -> CounterSnapshot {
        self.shared.counters(provider).snapshot()
    }

    /// Every token the sandbox has issued (for leak tests).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.tokens.history()
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn stats_handler(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let stats: BTreeMap<&str, CounterSnapshot> = shared
        .counters
        .iter()
        .map(|(k, v)| (*k, v.snapshot()))
        .collect();
    axum::Json(stats)
}

/// A JSON error response.
pub(crate) fn json_error(
    status: axum::http::StatusCode,
    body: serde_json::Value,
) -> axum::response::Response {
    (status, axum::Json(body)).into_response()
}
