//! Pagination: which page comes next and when to stop.
//!
//! [`PaginationConfig`] is the job file's `[pagination]` table; `build()` returns a
//! [`Paginator`], which hands out [`PageRequest`]s and, given what a page held, decides the
//! next one. A position ([`Position`]) is plain data so that checkpoints can store it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, ConfigErrors, JsonPointer};

/// How to walk the pages of an endpoint. `type` selects the strategy.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PaginationConfig {
    /// Skip/limit: `?skip=0&limit=100`, then `?skip=100&limit=100`, ...
    Offset(OffsetConfig),
}

crate::tagged_enum!(PaginationConfig {
    "offset" => Offset(OffsetConfig),
});

/// Skip/limit pagination. Stops on an empty page, or when the total read at `total_pointer`
/// is reached. A page shorter than `page_size` does not stop it: servers that cap their page
/// size would otherwise lose records.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OffsetConfig {
    /// The query parameter holding the number of records to skip.
    #[serde(default = "default_offset_param")]
    pub offset_param: String,
    /// The query parameter holding the page size.
    #[serde(default = "default_limit_param")]
    pub limit_param: String,
    /// Records asked for per request.
    #[serde(default = "default_page_size")]
    pub page_size: u64,
    /// The offset of the first request.
    #[serde(default)]
    pub start_offset: u64,
    /// Where the total number of records is in each response, if the API says.
    #[serde(default)]
    pub total_pointer: Option<JsonPointer>,
}

fn default_offset_param() -> String {
    "skip".into()
}

fn default_limit_param() -> String {
    "limit".into()
}

fn default_page_size() -> u64 {
    100
}

impl PaginationConfig {
    pub fn validate(&self, errors: &mut ConfigErrors) {
        match self {
            PaginationConfig::Offset(c) => {
                if c.page_size == 0 {
                    errors.push(ConfigError::field(
                        "pagination.page_size",
                        "0 records per page would never advance: expected 1 or more, e.g. 100",
                    ));
                }
                for (field, name) in [
                    ("pagination.offset_param", &c.offset_param),
                    ("pagination.limit_param", &c.limit_param),
                ] {
                    if name.is_empty() {
                        errors.push(ConfigError::field(field, "expected a parameter name"));
                    }
                }
                if c.offset_param == c.limit_param {
                    errors.push(ConfigError::field(
                        "pagination.limit_param",
                        "must differ from `offset_param`",
                    ));
                }
            }
        }
    }

    pub fn build(&self) -> Paginator {
        match self {
            PaginationConfig::Offset(c) => Paginator::Offset(c.clone()),
        }
    }

    /// Pointers other than the records pointer whose values the paginator reads.
    pub fn total_pointer(&self) -> Option<&JsonPointer> {
        match self {
            PaginationConfig::Offset(c) => c.total_pointer.as_ref(),
        }
    }
}

/// Where a page starts. Stored in checkpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Position {
    Offset { offset: u64 },
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Offset { offset } => write!(f, "offset {offset}"),
        }
    }
}

/// One request's pagination part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub position: Position,
    /// Query parameters to add to the endpoint's own.
    pub query: Vec<(String, String)>,
}

/// What the paginator needs to know about a page it asked for.
#[derive(Clone, Copy, Debug)]
pub struct PageOutcome {
    /// Records on the page.
    pub records: u64,
    /// The total, where the response carries one.
    pub total: Option<u64>,
}

/// The runtime side of [`PaginationConfig`].
#[derive(Clone, Debug)]
pub enum Paginator {
    Offset(OffsetConfig),
}

impl Paginator {
    /// The first request, or the one at `resume` when continuing a run.
    pub fn first(&self, resume: Option<&Position>) -> PageRequest {
        match (self, resume) {
            (Paginator::Offset(c), Some(Position::Offset { offset })) => {
                self.offset_request(c, *offset)
            }
            (Paginator::Offset(c), None) => self.offset_request(c, c.start_offset),
        }
    }

    /// The request after `previous`, or `None` when `previous` was the last page.
    pub fn next(&self, previous: &PageRequest, outcome: PageOutcome) -> Option<PageRequest> {
        match (self, &previous.position) {
            (Paginator::Offset(c), Position::Offset { offset }) => {
                if outcome.records == 0 {
                    return None;
                }
                // Advance by what the server sent, not by what was asked: a server that caps
                // its page size below `page_size` must not make us skip records.
                let next = offset + outcome.records;
                if outcome.total.is_some_and(|total| next >= total) {
                    return None;
                }
                Some(self.offset_request(c, next))
            }
        }
    }

    fn offset_request(&self, c: &OffsetConfig, offset: u64) -> PageRequest {
        PageRequest {
            position: Position::Offset { offset },
            query: vec![
                (c.offset_param.clone(), offset.to_string()),
                (c.limit_param.clone(), c.page_size.to_string()),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(page_size: u64) -> Paginator {
        Paginator::Offset(OffsetConfig {
            offset_param: "skip".into(),
            limit_param: "limit".into(),
            page_size,
            start_offset: 0,
            total_pointer: None,
        })
    }

    #[test]
    fn short_page_does_not_stop_but_empty_does() {
        let p = offset(100);
        let first = p.first(None);
        assert_eq!(first.query[0], ("skip".into(), "0".into()));
        let out = |records, total| PageOutcome { records, total };
        let second = p.next(&first, out(40, None)).unwrap();
        assert_eq!(second.position, Position::Offset { offset: 40 });
        assert!(p.next(&second, out(0, None)).is_none());
        assert!(p.next(&second, out(60, Some(100))).is_none());
    }
}
