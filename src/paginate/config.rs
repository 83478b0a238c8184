//! The job file's `[pagination]` table: one struct per strategy, validated, and built into
//! the runtime [`Paginator`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cursor::{Cursor, Keyset, NextIn, NextUrl};
use super::numbered::{Offset, Pages};
use super::range::Ranges;
use super::{HasMore, Paginator, Pointers, Single, Strategy};
use crate::decode::RecordField;
use crate::vocab::{ConfigError, ConfigErrors, JsonPointer};

/// How to walk the pages of an endpoint. `type` selects the strategy.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PaginationConfig {
    /// Skip/limit: `?skip=0&limit=100`, then `?skip=100&limit=100`, ...
    Offset(OffsetConfig),
    /// Page numbers: `?page=1&per_page=100`, then `?page=2&per_page=100`, ...
    Page(PageConfig),
    /// An opaque cursor from each answer, sent back for the next page.
    Cursor(CursorConfig),
    /// A field of each page's last record, sent back for the next page (keyset pagination:
    /// `?starting_after=<id of the last record>`, `?since_id=`, `?after=<created_at>`).
    Keyset(KeysetConfig),
    /// The URL of the next page, in each answer's body.
    NextUrl(NextUrlConfig),
    /// The URL of the next page, in the `Link: <…>; rel="next"` header (RFC 8288).
    LinkHeader(LinkHeaderConfig),
    /// `Range: entities=0-99; max=100` requests, the next range after `Content-Range` (Armor).
    RangeHeader(RangeHeaderConfig),
    /// One request, no pages.
    None(NoPaginationConfig),
}

crate::tagged_enum!(PaginationConfig {
    "offset" => Offset(OffsetConfig),
    "page" => Page(PageConfig),
    "cursor" => Cursor(CursorConfig),
    "keyset" => Keyset(KeysetConfig),
    "next_url" => NextUrl(NextUrlConfig),
    "link_header" => LinkHeader(LinkHeaderConfig),
    "range_header" => RangeHeader(RangeHeaderConfig),
    "none" => None(NoPaginationConfig),
});

/// Where the pagination parameters go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamsIn {
    /// The query string.
    #[default]
    Query,
    /// Top-level fields of the JSON body (POST endpoints).
    Body,
    /// The endpoint path's `{page.key}` placeholder (`keyset` only: `/events/after/{page.key}`).
    Path,
}

/// Skip/limit. Stops on an empty page, a reached total or a false has-more flag — never on a
/// merely short page, since servers that cap their page size would otherwise lose records.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OffsetConfig {
    /// The parameter holding the number of records to skip.
    #[serde(default = "default_offset_param")]
    pub offset_param: String,
    /// The parameter holding the page size.
    #[serde(default = "default_limit_param")]
    pub limit_param: String,
    /// Records asked for per request.
    #[serde(default = "default_page_size")]
    pub page_size: u64,
    /// The offset of the first request.
    #[serde(default)]
    pub start_offset: u64,
    /// Query string or JSON body.
    #[serde(default)]
    pub params_in: ParamsIn,
    /// Where the total number of records is in each answer, if the API says.
    #[serde(default)]
    pub total_pointer: Option<JsonPointer>,
    /// Where a boolean "more pages follow" flag is, if the API has one.
    #[serde(default)]
    pub has_more_pointer: Option<JsonPointer>,
    /// Where a boolean "this is the last page" flag is (Zendesk's `/end_of_stream`,
    /// Salesforce's `/done`, Jira's `/isLast`): `true` ends the list, `false` says more
    /// pages follow, as a has-more flag's opposite.
    #[serde(default)]
    pub last_page_pointer: Option<JsonPointer>,
    /// For `apisnap run --shard`, when the API does not say its total: at most this many
    /// records (the last shard reads on to the real end whatever this says).
    #[serde(default)]
    pub total_upper_bound: Option<u64>,
}

/// Page numbers. Stops on an empty page, a reached total, a false has-more flag, or the last
/// page number when the API gives the page count.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PageConfig {
    /// The parameter holding the page number.
    #[serde(default = "default_page_param")]
    pub page_param: String,
    /// The parameter holding the page size; none is sent when empty.
    #[serde(default = "default_size_param")]
    pub size_param: String,
    /// Records asked for per page.
    #[serde(default = "default_page_size")]
    pub page_size: u64,
    /// The number of the first page: 0 or 1.
    #[serde(default = "default_first_page")]
    pub first_page: u64,
    /// Query string or JSON body.
    #[serde(default)]
    pub params_in: ParamsIn,
    /// Where the total number of records is.
    #[serde(default)]
    pub total_pointer: Option<JsonPointer>,
    /// Where the number of pages is.
    #[serde(default)]
    pub total_pages_pointer: Option<JsonPointer>,
    /// Where a boolean "more pages follow" flag is.
    #[serde(default)]
    pub has_more_pointer: Option<JsonPointer>,
    /// Where a boolean "this is the last page" flag is (Zendesk's `/end_of_stream`,
    /// Salesforce's `/done`, Jira's `/isLast`): `true` ends the list, `false` says more
    /// pages follow, as a has-more flag's opposite.
    #[serde(default)]
    pub last_page_pointer: Option<JsonPointer>,
    /// For `apisnap run --shard`, when the API does not say its total: at most this many
    /// records (the last shard reads on to the real end whatever this says).
    #[serde(default)]
    pub total_upper_bound: Option<u64>,
}

/// What ends a list whose answers name the next page (a cursor, a next URL, a `Link`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListEnd {
    /// Only an answer that names no next page (absent, null or empty), or a has-more flag
    /// that says false. Short and empty pages go on while a next page is named: APIs such as
    /// Google's send empty pages with a `nextPageToken` mid-stream.
    #[default]
    NextAbsent,
    /// Also an empty page, unless a has-more flag says more follow: for APIs that name a
    /// next page on every answer, the last one too.
    EmptyPage,
}

/// Cursors. Stops when the answer has no cursor (absent, null or empty) or a has-more flag
/// says false (and, with `end = "empty_page"`, on an empty page). A has-more flag that says
/// true with no cursor fails the run. The same cursor twice is an error, not a loop.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CursorConfig {
    /// The parameter the cursor is sent in.
    #[serde(default = "default_cursor_param")]
    pub cursor_param: String,
    /// Where the next cursor is in each answer.
    #[serde(default = "default_cursor_pointer")]
    pub cursor_pointer: JsonPointer,
    /// The parameter holding the page size, if the API takes one.
    #[serde(default)]
    pub limit_param: Option<String>,
    /// Records asked for per request (with `limit_param`).
    #[serde(default = "default_page_size")]
    pub page_size: u64,
    /// Query string or JSON body.
    #[serde(default)]
    pub params_in: ParamsIn,
    /// Where a boolean "more pages follow" flag is.
    #[serde(default)]
    pub has_more_pointer: Option<JsonPointer>,
    /// Where a boolean "this is the last page" flag is (Zendesk's `/end_of_stream`,
    /// Salesforce's `/done`, Jira's `/isLast`): `true` ends the list, `false` says more
    /// pages follow, as a has-more flag's opposite.
    #[serde(default)]
    pub last_page_pointer: Option<JsonPointer>,
    /// What ends the list: `next_absent` (only an answer without a cursor) or `empty_page`.
    #[serde(default)]
    pub end: ListEnd,
}

/// Which record of a page holds the next request's key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyRecord {
    /// The last record (`starting_after`, `since_id`, `after`).
    #[default]
    Last,
    /// The first record, for lists read backwards (`ending_before`).
    First,
}

/// Keyset pagination: the next request sends a field of the page's last (or first) record.
/// Stops when a has-more flag says false, or on an empty page where there is no flag; a
/// has-more flag that says true on an empty page, or a record without the field, fails the
/// run. Exact on a collection that changes while it is read, where `offset` is not.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeysetConfig {
    /// The parameter the key is sent in, e.g. `starting_after`.
    pub key_param: String,
    /// Where the key is in a record, e.g. `/id`.
    pub key_pointer: JsonPointer,
    /// Which record of the page holds it: `last` or `first`.
    #[serde(default)]
    pub key_record: KeyRecord,
    /// The parameter holding the page size, if the API takes one.
    #[serde(default)]
    pub limit_param: Option<String>,
    /// Records asked for per request (with `limit_param`).
    #[serde(default = "default_page_size")]
    pub page_size: u64,
    /// Query string, JSON body, or the endpoint path's `{page.key}` placeholder (the page
    /// size, if any, then goes in the query).
    #[serde(default)]
    pub params_in: ParamsIn,
    /// The key sent with the first request (`0`, `latest`); without it the first request has
    /// none. A key in the path needs one.
    #[serde(default)]
    pub first_key: Option<String>,
    /// Where a boolean "more pages follow" flag is (Stripe's `/has_more`).
    #[serde(default)]
    pub has_more_pointer: Option<JsonPointer>,
    /// Where a boolean "this is the last page" flag is (Zendesk's `/end_of_stream`,
    /// Salesforce's `/done`, Jira's `/isLast`): `true` ends the list, `false` says more
    /// pages follow, as a has-more flag's opposite.
    #[serde(default)]
    pub last_page_pointer: Option<JsonPointer>,
}

/// The next page's URL in the body. Stops when it is absent, null or empty, or a has-more
/// flag says false (and, with `end = "empty_page"`, on an empty page). The same URL twice is
/// an error. URLs on another host are refused unless the provider allows the host.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NextUrlConfig {
    /// Where the next URL is in each answer (absolute, or relative to the request's URL).
    #[serde(default = "default_next_pointer")]
    pub next_pointer: JsonPointer,
    /// Where a boolean "more pages follow" flag is: a true one with no next URL fails the
    /// run.
    #[serde(default)]
    pub has_more_pointer: Option<JsonPointer>,
    /// Where a boolean "this is the last page" flag is (Zendesk's `/end_of_stream`,
    /// Salesforce's `/done`, Jira's `/isLast`): `true` ends the list, `false` says more
    /// pages follow, as a has-more flag's opposite.
    #[serde(default)]
    pub last_page_pointer: Option<JsonPointer>,
    /// What ends the list: `next_absent` (only an answer without a next URL) or
    /// `empty_page`.
    #[serde(default)]
    pub end: ListEnd,
}

/// The next page's URL in the `Link` header (`rel="next"`). Stops when there is none (and,
/// with `end = "empty_page"`, on an empty page).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkHeaderConfig {
    /// What ends the list: `next_absent` (only an answer without `rel="next"`) or
    /// `empty_page`.
    #[serde(default)]
    pub end: ListEnd,
}

/// Ranges of entities in a request header, the next range from `Content-Range`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RangeHeaderConfig {
    /// The range unit.
    #[serde(default = "default_range_unit")]
    pub unit: String,
    /// Entities asked for per request.
    #[serde(default = "default_page_size")]
    pub page_size: u64,
}

/// A single request.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoPaginationConfig {}

fn default_offset_param() -> String {
    "skip".into()
}
fn default_limit_param() -> String {
    "limit".into()
}
fn default_page_size() -> u64 {
    100
}
fn default_page_param() -> String {
    "page".into()
}
fn default_size_param() -> String {
    "per_page".into()
}
fn default_first_page() -> u64 {
    1
}
fn default_cursor_param() -> String {
    "cursor".into()
}
fn default_cursor_pointer() -> JsonPointer {
    "/next_cursor".parse().expect("valid pointer")
}
fn default_next_pointer() -> JsonPointer {
    "/next".parse().expect("valid pointer")
}
fn default_range_unit() -> String {
    "entities".into()
}

fn check_size(size: u64, errors: &mut ConfigErrors) {
    if size == 0 {
        errors.push(ConfigError::field(
            "pagination.page_size",
            "0 records per page would never advance: expected 1 or more, e.g. 100",
        ));
    }
}

fn check_param(name: &str, field: &str, errors: &mut ConfigErrors) {
    if name.is_empty() {
        errors.push(ConfigError::field(field, "expected a parameter name"));
    }
}

impl PaginationConfig {
    pub fn validate(&self, errors: &mut ConfigErrors) {
        let in_path = |p: ParamsIn| p == ParamsIn::Path;
        match self {
            PaginationConfig::Offset(OffsetConfig { params_in, .. })
            | PaginationConfig::Page(PageConfig { params_in, .. })
            | PaginationConfig::Cursor(CursorConfig { params_in, .. })
                if in_path(*params_in) =>
            {
                errors.push(ConfigError::field(
                    "pagination.params_in",
                    "`path` is for `keyset` keys; expected `query` or `body`",
                ));
            }
            _ => {}
        }
        match self {
            PaginationConfig::Offset(c) => {
                check_size(c.page_size, errors);
                check_param(&c.offset_param, "pagination.offset_param", errors);
                check_param(&c.limit_param, "pagination.limit_param", errors);
                if c.offset_param == c.limit_param {
                    errors.push(ConfigError::field(
                        "pagination.limit_param",
                        "must differ from `offset_param`",
                    ));
                }
            }
            PaginationConfig::Page(c) => {
                check_size(c.page_size, errors);
                check_param(&c.page_param, "pagination.page_param", errors);
                if c.first_page > 1 {
                    errors.push(ConfigError::field(
                        "pagination.first_page",
                        format!("{} is not a first page: expected 0 or 1", c.first_page),
                    ));
                }
            }
            PaginationConfig::Cursor(c) => {
                check_size(c.page_size, errors);
                check_param(&c.cursor_param, "pagination.cursor_param", errors);
                if c.cursor_pointer.is_root() {
                    errors.push(ConfigError::field(
                        "pagination.cursor_pointer",
                        "expected the cursor's place in the answer, e.g. `/next_cursor`",
                    ));
                }
            }
            PaginationConfig::Keyset(c) => {
                check_size(c.page_size, errors);
                check_param(&c.key_param, "pagination.key_param", errors);
                if c.key_pointer.is_root() {
                    errors.push(ConfigError::field(
                        "pagination.key_pointer",
                        "expected the key's place in a record, e.g. `/id`",
                    ));
                }
                if c.params_in == ParamsIn::Path && c.first_key.is_none() {
                    errors.push(ConfigError::field(
                        "pagination.first_key",
                        "a key in the path needs the one the first request sends, e.g. `0`",
                    ));
                }
                if c.limit_param.as_deref() == Some(c.key_param.as_str()) {
                    errors.push(ConfigError::field(
                        "pagination.limit_param",
                        "must differ from `key_param`",
                    ));
                }
            }
            PaginationConfig::NextUrl(c) => {
                if c.next_pointer.is_root() {
                    errors.push(ConfigError::field(
                        "pagination.next_pointer",
                        "expected the next URL's place in the answer, e.g. `/next`",
                    ));
                }
            }
            PaginationConfig::RangeHeader(c) => {
                check_size(c.page_size, errors);
                if c.unit.is_empty() || !c.unit.chars().all(|ch| ch.is_ascii_alphanumeric()) {
                    errors.push(ConfigError::field(
                        "pagination.unit",
                        "expected a word such as `entities`",
                    ));
                }
            }
            PaginationConfig::LinkHeader(_) | PaginationConfig::None(_) => {}
        }
    }

    /// The runtime paginator: one strategy, its parameters and pointers settled once.
    pub fn build(&self) -> Paginator {
        let strategy: Box<dyn Strategy> = match self {
            PaginationConfig::Offset(c) => Box::new(Offset::new(c)),
            PaginationConfig::Page(c) => Box::new(Pages::new(c)),
            PaginationConfig::Cursor(c) => Box::new(Cursor::new(c)),
            PaginationConfig::Keyset(c) => Box::new(Keyset::new(c)),
            PaginationConfig::NextUrl(c) => Box::new(NextUrl::new(
                NextIn::Body(c.next_pointer.clone()),
                HasMore::new(&c.has_more_pointer, &c.last_page_pointer),
                c.end,
            )),
            PaginationConfig::LinkHeader(c) => {
                Box::new(NextUrl::new(NextIn::LinkHeader, HasMore::default(), c.end))
            }
            PaginationConfig::RangeHeader(c) => Box::new(Ranges::new(c)),
            PaginationConfig::None(_) => Box::new(Single),
        };
        Paginator::new(
            strategy,
            self.pointers(),
            self.page_size(),
            self.fingerprint(),
        )
    }

    /// The settings that decide what a position means, in a fixed form: a checkpoint made
    /// under others cannot be resumed under these. Only those: an offset counts records
    /// whatever the page size, a cursor is the server's, a stop condition moves no position.
    fn fingerprint(&self) -> String {
        match self {
            PaginationConfig::Offset(_) => "offset".into(),
            PaginationConfig::Page(c) => {
                format!("page size={} first={}", c.page_size, c.first_page)
            }
            PaginationConfig::Cursor(_) => "cursor".into(),
            PaginationConfig::Keyset(c) => {
                format!("keyset key={} record={:?}", c.key_pointer, c.key_record)
            }
            PaginationConfig::NextUrl(_) => "next_url".into(),
            PaginationConfig::LinkHeader(_) => "link_header".into(),
            PaginationConfig::RangeHeader(c) => format!("range_header unit={}", c.unit),
            PaginationConfig::None(_) => "none".into(),
        }
    }

    /// Whether the strategy's key goes into the endpoint path's `{page.key}`.
    pub fn key_in_path(&self) -> bool {
        matches!(self, PaginationConfig::Keyset(c) if c.params_in == ParamsIn::Path)
    }

    /// Whether the strategy's parameters go into the JSON body.
    pub fn params_in_body(&self) -> bool {
        match self {
            PaginationConfig::Offset(c) => c.params_in == ParamsIn::Body,
            PaginationConfig::Page(c) => c.params_in == ParamsIn::Body,
            PaginationConfig::Cursor(c) => c.params_in == ParamsIn::Body,
            PaginationConfig::Keyset(c) => c.params_in == ParamsIn::Body,
            _ => false,
        }
    }

    /// The page size asked for, where the strategy has one.
    pub fn page_size(&self) -> Option<u64> {
        match self {
            PaginationConfig::Offset(c) => Some(c.page_size),
            PaginationConfig::Page(c) => Some(c.page_size),
            PaginationConfig::Cursor(c) => c.limit_param.as_ref().map(|_| c.page_size),
            PaginationConfig::Keyset(c) => c.limit_param.as_ref().map(|_| c.page_size),
            PaginationConfig::RangeHeader(c) => Some(c.page_size),
            _ => None,
        }
    }

    /// The places in each answer this strategy reads, by what they mean.
    fn pointers(&self) -> Pointers {
        let mut p = Pointers::default();
        match self {
            PaginationConfig::Offset(c) => {
                p.total = c.total_pointer.clone();
                p.has_more = c.has_more_pointer.clone();
                p.last_page = c.last_page_pointer.clone();
            }
            PaginationConfig::Page(c) => {
                p.total = c.total_pointer.clone();
                p.total_pages = c.total_pages_pointer.clone();
                p.has_more = c.has_more_pointer.clone();
                p.last_page = c.last_page_pointer.clone();
            }
            PaginationConfig::Cursor(c) => {
                p.next = Some(c.cursor_pointer.clone());
                p.has_more = c.has_more_pointer.clone();
                p.last_page = c.last_page_pointer.clone();
            }
            PaginationConfig::Keyset(c) => {
                p.has_more = c.has_more_pointer.clone();
                p.last_page = c.last_page_pointer.clone();
                p.record_key = Some(match c.key_record {
                    KeyRecord::Last => RecordField::Last(c.key_pointer.clone()),
                    KeyRecord::First => RecordField::First(c.key_pointer.clone()),
                });
            }
            PaginationConfig::NextUrl(c) => {
                p.next = Some(c.next_pointer.clone());
                p.has_more = c.has_more_pointer.clone();
                p.last_page = c.last_page_pointer.clone();
            }
            PaginationConfig::LinkHeader(_)
            | PaginationConfig::RangeHeader(_)
            | PaginationConfig::None(_) => {}
        }
        p
    }
}
