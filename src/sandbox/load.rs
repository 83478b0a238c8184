//! How the sandbox takes load: a gateway's concurrency cap that answers 429 past it
//! (`SandboxConfig::capacity`); a server with a few workers, where the other requests wait
//! their turn and so take longer (`SandboxConfig::workers`). The requests in flight are the
//! request log's count (the log's layer is outside this one).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;

#[derive(Debug, Default)]
pub(crate) struct Load {
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

    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// The middleware: refuses past the capacity, queues for a worker.
pub(crate) async fn limit(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path().starts_with("/_sandbox") {
        return next.run(request).await;
    }
    let load = &shared.load;
    // This request included: the log counted it on its way in.
    let now = shared.log.in_flight();
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
