//! How the sandbox takes load: the requests in flight counted (and their peak); a gateway's
//! concurrency cap that answers 429 beyond it (`SandboxConfig::capacity`); a server with a
//! few workers, where the other requests wait their turn and so take longer
//! (`SandboxConfig::workers`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;

#[derive(Debug, Default)]
pub(crate) struct Load {
    in_flight: AtomicU64,
    peak: AtomicU64,
    /// Requests answered 429 for being past the capacity.
    refused: AtomicU64,
    workers: Option<Arc<tokio::sync::Semaphore>>,
}

/// What the sandbox saw of the load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// The most requests in flight at once (waiting for a worker included).
    pub peak_in_flight: u64,
    /// Requests refused with 429 past `capacity`.
    pub refused: u64,
}

impl Load {
    pub(crate) fn new(workers: Option<usize>) -> Load {
        Load {
            workers: workers.map(|n| Arc::new(tokio::sync::Semaphore::new(n.max(1)))),
            ..Load::default()
        }
    }

    pub(crate) fn stats(&self) -> LoadStats {
        LoadStats {
            peak_in_flight: self.peak.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

/// Decrements the count when the request is over, answered or dropped.
struct InFlight<'a>(&'a Load);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The middleware: counts, refuses past the capacity, queues for a worker.
pub(crate) async fn limit(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path().starts_with("/_sandbox") {
        return next.run(request).await;
    }
    let load = &shared.load;
    let now = load.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    let _counted = InFlight(load);
    load.peak.fetch_max(now, Ordering::Relaxed);
    if shared.config.capacity.is_some_and(|c| now > c as u64) {
        load.refused.fetch_add(1, Ordering::Relaxed);
        return (
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "too many concurrent requests",
        )
            .into_response();
    }
    let _worker = match &load.workers {
        Some(workers) => Some(workers.clone().acquire_owned().await.expect("never closed")),
        None => None,
    };
    next.run(request).await
}
