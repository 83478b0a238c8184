//! A record of every request the sandbox served, for tests to read: when, what, the answer,
//! how many requests were in flight, and the headers a test may want to check.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;

use super::Shared;

/// Request headers kept in the log. Never `Authorization`.
const KEPT_HEADERS: [&str; 7] = [
    "user-agent",
    "accept",
    "accept-encoding",
    "range",
    "x-account-context",
    "x-report",
    // What a proxy on the way adds.
    "via",
];

/// One served request.
#[derive(Clone, Debug, Serialize)]
pub struct RequestRecord {
    /// Since the sandbox started.
    pub started: Duration,
    pub finished: Duration,
    pub method: String,
    /// Path and query.
    pub target: String,
    pub status: u16,
    /// Requests in flight when this one arrived, itself included.
    pub in_flight: u64,
    pub headers: Vec<(String, String)>,
    /// The answer's `Content-Encoding`, if it was compressed.
    pub content_encoding: Option<String>,
}

#[derive(Default)]
pub(crate) struct RequestLog {
    records: Mutex<Vec<RequestRecord>>,
    in_flight: AtomicU64,
    epoch: Mutex<Option<Instant>>,
}

impl RequestLog {
    pub fn start(&self) {
        *self.epoch.lock().expect("not poisoned") = Some(Instant::now());
    }

    fn since_start(&self) -> Duration {
        self.epoch
            .lock()
            .expect("not poisoned")
            .map(|e| e.elapsed())
            .unwrap_or_default()
    }

    pub fn snapshot(&self) -> Vec<RequestRecord> {
        self.records.lock().expect("not poisoned").clone()
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests that were in flight at once, but for the sandbox's own.
    pub fn peak_in_flight(&self) -> u64 {
        let records = self.records.lock().expect("not poisoned");
        records
            .iter()
            .filter(|r| !r.target.starts_with("/_sandbox"))
            .map(|r| r.in_flight)
            .max()
            .unwrap_or(0)
    }
}

pub(crate) async fn record(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let log = &shared.log;
    let started = log.since_start();
    let in_flight = log.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let method = request.method().to_string();
    let target = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers = KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            let value = request.headers().get(*name)?.to_str().ok()?;
            Some((name.to_string(), value.to_string()))
        })
        .collect();
    let response = next.run(request).await;
    log.in_flight.fetch_sub(1, Ordering::SeqCst);
    let entry = RequestRecord {
        started,
        finished: log.since_start(),
        method,
        target,
        status: response.status().as_u16(),
        in_flight,
        headers,
        content_encoding: response
            .headers()
            .get(axum::http::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    log.records.lock().expect("not poisoned").push(entry);
    response
}
