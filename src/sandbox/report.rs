//! A report API that takes an account and a date range, as Seal Metrics' reports do:
//! `GET /seal/accounts` lists the accounts, `GET /seal/report?account=A&from=T&to=T&skip&limit`
//! answers account A's events stamped in `[from, to)` (both ISO-8601; `to` excluded), with
//! the total. Events come every three hours from [`START`], so a day's windows meet events
//! exactly on their boundaries (midnight), which a client must take once, in the window
//! they start.
//!
//! Account `a`'s event `k` (`k` below the sandbox's `records`): id `a·1_000_000 + k`, stamped
//! `START + 3h·k`, value `a·k`. [`events`] says which events a window holds.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::{SealToken, Shared, json_error, serve};

/// The accounts `/seal/accounts` lists.
pub const REPORT_ACCOUNTS: [u64; 3] = [3, 5, 8];
/// When the first event of every account happened: 2026-11-01T00:00:00Z.
pub const START: i64 = 1_793_491_200;
/// Seconds between two events of an account.
pub const EVERY: i64 = 3 * 3600;

/// One event as the API answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    pub id: u64,
    pub account: u64,
    pub at: String,
    pub value: u64,
}

/// Account `account`'s events stamped in `[from, to)` (seconds), of `n` in all, in order.
pub fn events(account: u64, from: i64, to: i64, n: u64) -> Vec<Event> {
    let first = ((from - START).max(0) + EVERY - 1) / EVERY;
    let mut out = Vec::new();
    let mut k = first.max(0) as u64;
    while k < n {
        let at = START + EVERY * k as i64;
        if at >= to {
            break;
        }
        if at >= from {
            out.push(Event {
                id: account * 1_000_000 + k,
                account,
                at: chrono::DateTime::from_timestamp(at, 0)
                    .expect("in range")
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string(),
                value: account * k,
            });
        }
        k += 1;
    }
    out
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/accounts", get(accounts))
        .route("/report", get(report))
}

/// The accounts the report API serves.
fn accounts_of(shared: &Shared) -> Vec<u64> {
    match shared.config.report_accounts {
        Some(n) => (1..=n).collect(),
        None => REPORT_ACCOUNTS.to_vec(),
    }
}

async fn accounts(State(shared): State<Arc<Shared>>, SealToken(token): SealToken) -> Response {
    let list: Vec<_> = accounts_of(&shared)
        .iter()
        .map(|id| serde_json::json!({"id": id, "name": format!("Account {id}")}))
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({ "accounts": list })).expect("JSON");
    serve(&shared, "seal", &token, body, Vec::new()).await
}

#[derive(Deserialize)]
struct ReportQuery {
    account: Option<u64>,
    from: Option<String>,
    to: Option<String>,
    skip: Option<u64>,
    limit: Option<u64>,
}

async fn report(
    State(shared): State<Arc<Shared>>,
    SealToken(token): SealToken,
    Query(q): Query<ReportQuery>,
) -> Response {
    let bad = |message: String| {
        json_error(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": message}),
        )
    };
    let known = match shared.config.report_accounts {
        Some(n) => q.account.filter(|a| (1..=n).contains(a)),
        None => q.account.filter(|a| REPORT_ACCOUNTS.contains(a)),
    };
    let Some(account) = known else {
        return bad(format!(
            "account: not one of this user's, got {:?}",
            q.account
        ));
    };
    let time = |name: &str, value: &Option<String>| match value.as_deref() {
        None => Err(format!("{name} is required")),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.timestamp())
            .map_err(|_| format!("{name}: `{t}` is not ISO-8601")),
    };
    let (from, to) = match (time("from", &q.from), time("to", &q.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let all = events(account, from, to, shared.records());
    let skip = q.skip.unwrap_or(0) as usize;
    let limit = q.limit.unwrap_or(100).min(shared.config.max_page_size) as usize;
    let page: Vec<&Event> = all.iter().skip(skip).take(limit).collect();
    let body =
        serde_json::to_vec(&serde_json::json!({"data": page, "total": all.len()})).expect("JSON");
    serve(&shared, "seal", &token, body, Vec::new()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_meet_events_on_their_boundaries_once() {
        let day = 86_400;
        let a = events(3, START, START + day, 100);
        let b = events(3, START + day, START + 2 * day, 100);
        assert_eq!(a.len(), 8);
        assert_eq!(b.len(), 8);
        assert_eq!(a[0].at, "2026-11-01T00:00:00Z");
        assert_eq!(
            b[0].at, "2026-11-02T00:00:00Z",
            "midnight is the next day's"
        );
        assert_eq!(events(3, START + 1, START + day, 100).len(), 7);
        assert_eq!(events(3, START, START + 30 * day, 10).len(), 10);
    }
}
