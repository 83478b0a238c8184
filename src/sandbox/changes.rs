//! A data set that changes between runs, for current-state tables: at each generation
//! (`Sandbox::set_generation`) new records are inserted, some earlier ones updated and some
//! deleted (soft: a tombstone with `deleted: true`), as an API with `updated_after` serves
//! them. `GET /seal/changes?updated_after=T&skip&limit` answers the records whose latest
//! change is after `T`, oldest change first; [`state`] says what every record is at a
//! generation, so a test knows the table expected.
//!
//! At generation `k`: records `(k-1)·n .. k·n` are inserted (`n` = the sandbox's `records`);
//! every earlier record with `id % 7 == k % 7` is updated and, unless updated, every one with
//! `id % 11 == k % 11` deleted. A deleted record changes no more. With `?resend=1` the
//! answer also holds, after the changes, the first version of every record deleted in an
//! earlier generation: a stale copy, older than its deletion (a late replica, a lookback).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::{SealToken, Shared, serve};

/// Seconds since the epoch of generation 0's first change (2026-01-01T00:00:00Z).
const BASE: i64 = 1_767_225_600;

/// One record as the API answers it: its latest change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub id: u64,
    /// The generation of the change.
    pub version: u64,
    pub amount: i64,
    pub deleted: bool,
    pub updated_at: String,
}

/// What happens to record `id` at generation `k` (`n` inserted per generation).
fn touch(id: u64, k: u64, n: u64) -> Option<bool> {
    let inserted = id / n + 1;
    match k {
        k if k < inserted => None,
        k if k == inserted => Some(false),
        k if id % 7 == k % 7 => Some(false),
        k if id % 11 == k % 11 => Some(true),
        _ => None,
    }
}

/// The seconds of a change of `id` at generation `k`: every change of a generation after
/// every change of the one before.
fn at(id: u64, k: u64) -> i64 {
    BASE + k as i64 * 1_000_000 + id as i64
}

fn change(id: u64, k: u64, deleted: bool) -> Change {
    let t = chrono::DateTime::from_timestamp(at(id, k), 0).expect("in range");
    Change {
        id,
        version: k,
        amount: id as i64 * 10 + k as i64,
        deleted,
        updated_at: t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    }
}

/// Record `id` at generation `g` (`n` inserted per generation): its latest change, or
/// `None` before it is inserted.
pub fn state(id: u64, g: u64, n: u64) -> Option<Change> {
    latest(id, g, n).map(|(k, deleted)| change(id, k, deleted))
}

/// The generation of record `id`'s latest change at generation `g`, and whether it was a
/// deletion.
fn latest(id: u64, g: u64, n: u64) -> Option<(u64, bool)> {
    let mut last = None;
    for k in (id / n + 1)..=g {
        if let Some(deleted) = touch(id, k, n) {
            last = Some((k, deleted));
            if deleted {
                break;
            }
        }
    }
    last
}

/// The records whose latest change at generation `g` is after `after` (seconds), in order
/// of change.
fn changed_after(after: i64, g: u64, n: u64) -> Vec<(u64, u64, bool)> {
    let mut out = Vec::new();
    for k in 1..=g {
        for id in 0..k * n {
            if at(id, k) <= after {
                continue;
            }
            // Its change at `k` is its latest if nothing later touches it.
            if let Some((latest, deleted)) = latest(id, g, n)
                && latest == k
            {
                out.push((id, k, deleted));
            }
        }
    }
    out
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/changes", get(changes))
}

#[derive(Deserialize)]
struct ChangesQuery {
    updated_after: Option<String>,
    resend: Option<u8>,
    skip: Option<u64>,
    limit: Option<u64>,
}

async fn changes(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Query(q): Query<ChangesQuery>,
) -> Response {
    let after = match q.updated_after.as_deref() {
        None => i64::MIN,
        Some(t) => match chrono::DateTime::parse_from_rfc3339(t) {
            Ok(t) => t.timestamp(),
            Err(_) => {
                return super::json_error(
                    axum::http::StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": format!("updated_after: `{t}` is not ISO-8601")}),
                );
            }
        },
    };
    let (g, n) = (shared.generation(), shared.records().max(1));
    let mut all = changed_after(after, g, n);
    if q.resend == Some(1) {
        // The first version of each record deleted before this generation, again.
        all.extend((0..g * n).filter_map(|id| match latest(id, g, n) {
            Some((k, true)) if k < g => Some((id, id / n + 1, false)),
            _ => None,
        }));
    }
    let (skip, limit) = (
        q.skip.unwrap_or(0) as usize,
        q.limit.unwrap_or(100) as usize,
    );
    let page: Vec<Change> = all
        .iter()
        .skip(skip)
        .take(limit)
        .map(|(id, k, deleted)| change(*id, *k, *deleted))
        .collect();
    let body = serde_json::json!({"data": page, "total": all.len()}).to_string();
    serve(&shared, "seal", &token, body.into_bytes(), Vec::new()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_insert_update_and_delete() {
        let n = 100;
        assert_eq!(state(5, 1, n).unwrap().version, 1);
        assert!(state(150, 1, n).is_none(), "inserted at generation 2");
        // Generation 2 updates ids ≡ 2 (mod 7) and deletes ids ≡ 2 (mod 11) of the first 100.
        assert_eq!(state(9, 2, n).unwrap().version, 2);
        assert!(state(13, 2, n).unwrap().deleted);
        assert_eq!(state(13, 3, n).unwrap().version, 2, "deleted for good");
        let changed = changed_after(at(99, 1), 2, n);
        assert!(changed.iter().all(|(_, k, _)| *k == 2));
        assert_eq!(changed.iter().filter(|(id, _, _)| *id >= 100).count(), 100);
    }
}
