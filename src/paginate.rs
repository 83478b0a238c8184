//! Pagination: which page comes next and when to stop.
//!
//! [`PaginationConfig`] is the job file's `[pagination]` table, one struct per strategy;
//! `build()` returns a [`Paginator`]. The fetch stage asks it for the first request, for
//! *speculative* requests (what would come next if every page were full: the strategies
//! whose next request is known in advance allow several in flight), and, once a page has
//! arrived, for the real next request. A speculation that turns out wrong (a short page from
//! a server that caps its page size) is discarded, so no record is skipped. A [`Position`]
//! is plain data, so that checkpoints can store it.

use std::collections::HashSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::Url;

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
}

/// Stop conditions that any strategy may add to its own.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StopConfig {
    /// Where the total number of records is; stop once that many were read.
    #[serde(default)]
    pub total_pointer: Option<JsonPointer>,
    /// Where a boolean "more pages follow" flag is; stop when it is false.
    #[serde(default)]
    pub has_more_pointer: Option<JsonPointer>,
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
    /// For `apisnap run --shard`, when the API does not say its total: at most this many
    /// records (the last shard reads on to the real end whatever this says).
    #[serde(default)]
    pub total_upper_bound: Option<u64>,
}

/// Cursors. Stops when the answer has no cursor (absent, null or empty), on an empty page,
/// or on a false has-more flag. The same cursor twice is an error, not a loop.
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
}

/// The next page's URL in the body. Stops when it is absent, null or empty. The same URL
/// twice is an error. URLs on another host are refused unless the provider allows the host.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NextUrlConfig {
    /// Where the next URL is in each answer (absolute, or relative to the request's URL).
    #[serde(default = "default_next_pointer")]
    pub next_pointer: JsonPointer,
}

/// The next page's URL in the `Link` header (`rel="next"`). Stops when there is none.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkHeaderConfig {}

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

    pub fn build(&self) -> Paginator {
        Paginator {
            config: self.clone(),
            total: None,
            seen: HashSet::new(),
            step: self.page_size(),
            end: None,
        }
    }

    /// Whether the strategy's parameters go into the JSON body.
    pub fn params_in_body(&self) -> bool {
        match self {
            PaginationConfig::Offset(c) => c.params_in == ParamsIn::Body,
            PaginationConfig::Page(c) => c.params_in == ParamsIn::Body,
            PaginationConfig::Cursor(c) => c.params_in == ParamsIn::Body,
            _ => false,
        }
    }

    /// The page size asked for, where the strategy has one.
    pub fn page_size(&self) -> Option<u64> {
        match self {
            PaginationConfig::Offset(c) => Some(c.page_size),
            PaginationConfig::Page(c) => Some(c.page_size),
            PaginationConfig::Cursor(c) => c.limit_param.as_ref().map(|_| c.page_size),
            PaginationConfig::RangeHeader(c) => Some(c.page_size),
            _ => None,
        }
    }

    /// Pointers the fetcher must read from each answer for this strategy.
    pub fn pointers(&self) -> Vec<JsonPointer> {
        let mut out = Vec::new();
        match self {
            PaginationConfig::Offset(c) => {
                out.extend(c.total_pointer.clone());
                out.extend(c.has_more_pointer.clone());
            }
            PaginationConfig::Page(c) => {
                out.extend(c.total_pointer.clone());
                out.extend(c.total_pages_pointer.clone());
                out.extend(c.has_more_pointer.clone());
            }
            PaginationConfig::Cursor(c) => {
                out.push(c.cursor_pointer.clone());
                out.extend(c.has_more_pointer.clone());
            }
            PaginationConfig::NextUrl(c) => out.push(c.next_pointer.clone()),
            _ => {}
        }
        out
    }
}

/// Where a page starts. Stored in checkpoints.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Position {
    Offset {
        offset: u64,
    },
    Page {
        page: u64,
    },
    /// `None`: the first page, requested without a cursor.
    Cursor {
        cursor: Option<String>,
    },
    /// `None`: the endpoint's own URL.
    Url {
        url: Option<String>,
    },
    Range {
        start: u64,
    },
    Single,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Offset { offset } => write!(f, "offset {offset}"),
            Position::Page { page } => write!(f, "page {page}"),
            Position::Cursor { cursor: None } => f.write_str("the first page"),
            Position::Cursor { cursor: Some(c) } => write!(f, "cursor {c}"),
            Position::Url { url: None } => f.write_str("the first page"),
            Position::Url { url: Some(u) } => write!(f, "{u}"),
            Position::Range { start } => write!(f, "range from {start}"),
            Position::Single => f.write_str("the only page"),
        }
    }
}

/// One request's pagination part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub position: Position,
    /// Query parameters to add to the endpoint's own.
    pub query: Vec<(String, String)>,
    /// Fields to set at the top level of the endpoint's JSON body.
    pub body: Vec<(String, serde_json::Value)>,
    /// Headers to add (`Range`).
    pub headers: Vec<(String, String)>,
    /// A URL given by the server: replaces the endpoint's URL and query.
    pub url: Option<Url>,
}

impl PageRequest {
    fn at(position: Position) -> Self {
        PageRequest {
            position,
            query: Vec::new(),
            body: Vec::new(),
            headers: Vec::new(),
            url: None,
        }
    }

    fn param(mut self, params_in: ParamsIn, name: &str, value: serde_json::Value) -> Self {
        if name.is_empty() {
            return self;
        }
        match params_in {
            ParamsIn::Query => {
                let text = match &value {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                self.query.push((name.to_string(), text));
            }
            ParamsIn::Body => self.body.push((name.to_string(), value)),
        }
        self
    }
}

/// What the paginator needs to know about a page it asked for.
#[derive(Clone, Debug, Default)]
pub struct PageOutcome {
    /// Records on the page.
    pub records: u64,
    /// Values at the strategy's pointers ([`PaginationConfig::pointers`]), in that order.
    pub values: Vec<Option<serde_json::Value>>,
    /// The `Link` header's `rel="next"` target, resolved.
    pub link_next: Option<Url>,
    /// The `Content-Range` header.
    pub content_range: Option<String>,
    /// The URL the page was fetched from.
    pub url: Option<Url>,
}

/// Pagination went wrong in a way that retrying cannot fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PaginateError(pub String);

/// The runtime side of [`PaginationConfig`].
#[derive(Clone, Debug)]
pub struct Paginator {
    config: PaginationConfig,
    /// The total (records or pages) once an answer has said.
    total: Option<u64>,
    /// Cursors and URLs already followed, to stop loops.
    seen: HashSet<String>,
    /// How far a speculative request jumps: the records a full page holds. `None` after a
    /// short page (most likely the last one), until the next page shows the server's size.
    step: Option<u64>,
    /// Where a shard's pages end: the next shard's first offset or page (`None` for the
    /// last shard, which reads to the end, and for runs that are not sharded).
    end: Option<u64>,
}

/// One of `count` disjoint parts of one sync (`apisnap run --shard INDEX/COUNT`); written as
/// `INDEX/COUNT` in reports too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Shard, String> {
        let bad = || format!("`{text}`: expected INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/4");
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            index.trim().parse().map_err(|_| bad())?,
            count.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl TryFrom<String> for Shard {
    type Error = String;

    fn try_from(text: String) -> Result<Shard, String> {
        text.parse()
    }
}

impl From<Shard> for String {
    fn from(shard: Shard) -> String {
        shard.to_string()
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The paginator's verdict on a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    Continue(PageRequest),
    Done,
}

impl Paginator {
    /// Splits the pages into `shard.count` disjoint runs of whole pages: this shard's first
    /// position, and where the next shard's begins. The total is what the first answer said
    /// (records, or pages where the API counts pages), else the configured upper bound. The
    /// last shard has no end, so that records added meanwhile are not lost.
    pub fn plan_shard(&self, shard: Shard) -> Result<(Position, Option<u64>), PaginateError> {
        let (page_size, upper, first) = match &self.config {
            PaginationConfig::Offset(c) => (c.page_size, c.total_upper_bound, c.start_offset),
            PaginationConfig::Page(c) => (c.page_size, c.total_upper_bound, c.first_page),
            _ => {
                return Err(PaginateError(
                    "only `offset` and `page` pagination can be split into shards: the \
                     others learn each next request from the answer before it"
                        .into(),
                ));
            }
        };
        let pages = match (&self.config, self.total) {
            (PaginationConfig::Page(c), Some(t)) if c.total_pages_pointer.is_some() => t,
            (_, Some(records)) => records.div_ceil(page_size),
            (_, None) => upper.map(|r| r.div_ceil(page_size)).ok_or_else(|| {
                PaginateError(
                    "sharding needs the number of records: set `pagination.total_pointer` \
                     (where the answer says it) or `pagination.total_upper_bound`"
                        .into(),
                )
            })?,
        };
        let at = |i: u64| pages * i / shard.count;
        let (from, to) = (at(shard.index), at(shard.index + 1));
        let last = shard.index + 1 == shard.count;
        let (start, end) = match &self.config {
            PaginationConfig::Offset(_) => (
                Position::Offset {
                    offset: first + from * page_size,
                },
                first + to * page_size,
            ),
            _ => (Position::Page { page: first + from }, first + to),
        };
        Ok((start, (!last).then_some(end)))
    }

    /// Ends the pages at `end` (a shard's range; `None`: the API's end).
    pub fn set_end(&mut self, end: Option<u64>) {
        self.end = end;
    }

    fn end(&self) -> Option<u64> {
        self.end
    }

    /// The first request, or the one at `resume` when continuing a run.
    pub fn first(&self, resume: Option<&Position>) -> PageRequest {
        let start = match &self.config {
            PaginationConfig::Offset(c) => Position::Offset {
                offset: c.start_offset,
            },
            PaginationConfig::Page(c) => Position::Page { page: c.first_page },
            PaginationConfig::Cursor(_) => Position::Cursor { cursor: None },
            PaginationConfig::NextUrl(_) | PaginationConfig::LinkHeader(_) => {
                Position::Url { url: None }
            }
            PaginationConfig::RangeHeader(_) => Position::Range { start: 0 },
            PaginationConfig::None(_) => Position::Single,
        };
        self.request(resume.cloned().unwrap_or(start))
    }

    /// Pointers the fetcher must read from each answer for this strategy.
    pub fn pointers(&self) -> Vec<JsonPointer> {
        self.config.pointers()
    }

    /// The total (records, or pages for `total_pages_pointer`) once an answer has said.
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// The request for a position.
    pub fn request(&self, position: Position) -> PageRequest {
        let req = PageRequest::at(position.clone());
        match (&self.config, position) {
            (PaginationConfig::Offset(c), Position::Offset { offset }) => req
                .param(c.params_in, &c.offset_param, offset.into())
                .param(c.params_in, &c.limit_param, c.page_size.into()),
            (PaginationConfig::Page(c), Position::Page { page }) => req
                .param(c.params_in, &c.page_param, page.into())
                .param(c.params_in, &c.size_param, c.page_size.into()),
            (PaginationConfig::Cursor(c), Position::Cursor { cursor }) => {
                let mut req = match cursor {
                    Some(cur) => req.param(c.params_in, &c.cursor_param, cur.into()),
                    None => req,
                };
                if let Some(limit) = &c.limit_param {
                    req = req.param(c.params_in, limit, c.page_size.into());
                }
                req
            }
            (PaginationConfig::RangeHeader(c), Position::Range { start }) => {
                let mut req = req;
                req.headers.push((
                    "Range".into(),
                    format!(
                        "{}={}-{}; max={}",
                        c.unit,
                        start,
                        start + c.page_size - 1,
                        c.page_size
                    ),
                ));
                req
            }
            (_, Position::Url { url: Some(u) }) => PageRequest {
                url: Url::parse(&u).ok(),
                ..req
            },
            _ => req,
        }
    }

    /// The request that follows `previous` if `previous` comes back full; `None` for
    /// strategies that need the answer to know, or past a known total.
    pub fn speculate(&self, previous: &PageRequest) -> Option<PageRequest> {
        let step = self.step?;
        let position = match (&self.config, &previous.position) {
            (PaginationConfig::Offset(_), Position::Offset { offset }) => {
                let next = offset + step;
                if self.total.is_some_and(|t| next >= t) || self.end().is_some_and(|e| next >= e) {
                    return None;
                }
                Position::Offset { offset: next }
            }
            (PaginationConfig::Page(_), Position::Page { page })
                if self.end().is_some_and(|e| page + 1 >= e) =>
            {
                return None;
            }
            (PaginationConfig::Page(c), Position::Page { page }) => {
                if c.total_pages_pointer.is_some()
                    && self.total.is_some_and(|t| page + 1 - c.first_page >= t)
                {
                    return None;
                }
                if c.total_pointer.is_some()
                    && self
                        .total
                        .is_some_and(|t| (page + 1 - c.first_page) * c.page_size >= t)
                {
                    return None;
                }
                Position::Page { page: page + 1 }
            }
            (PaginationConfig::RangeHeader(_), Position::Range { start }) => {
                let next = start + step;
                if self.total.is_some_and(|t| next >= t) {
                    return None;
                }
                Position::Range { start: next }
            }
            _ => return None,
        };
        Some(self.request(position))
    }

    /// Learns the server's page size from what arrived.
    fn observe(&mut self, records: u64) {
        match self.step {
            Some(step) if records < step => self.step = None,
            None if records > 0 => self.step = Some(records),
            _ => {}
        }
    }

    /// Decides what follows `previous`, given what its page held.
    pub fn next(
        &mut self,
        previous: &PageRequest,
        page: &PageOutcome,
    ) -> Result<Next, PaginateError> {
        self.observe(page.records);
        let value = |i: usize| page.values.get(i).cloned().flatten();
        let config = self.config.clone();
        match (&config, &previous.position) {
            (PaginationConfig::Offset(c), Position::Offset { offset }) => {
                let mut i = 0;
                if c.total_pointer.is_some() {
                    self.total = as_count(value(i)).or(self.total);
                    i += 1;
                }
                let more = c.has_more_pointer.as_ref().map(|_| as_flag(value(i)));
                if page.records == 0 || more == Some(false) {
                    return Ok(Next::Done);
                }
                if let Some(total) = self.total
                    && *offset >= total
                {
                    return Err(PaginateError(format!(
                        "the server returned {} records at offset {offset}, past its own total \
                         of {total}: it seems to ignore `{}`; stopping instead of looping",
                        page.records, c.offset_param
                    )));
                }
                // Advance by what the server sent, not by what was asked: a server that caps
                // its page size below `page_size` must not make us skip records.
                let next = offset + page.records;
                if let Some(end) = self.end() {
                    if next > end {
                        return Err(PaginateError(format!(
                            "the server returned {} records at offset {offset}, more than the \
                             {} asked for: the shards would overlap",
                            page.records, c.page_size
                        )));
                    }
                    if next == end {
                        return Ok(Next::Done);
                    }
                }
                if self.total.is_some_and(|t| next >= t) {
                    return Ok(Next::Done);
                }
                Ok(Next::Continue(
                    self.request(Position::Offset { offset: next }),
                ))
            }
            (PaginationConfig::Page(c), Position::Page { page: number }) => {
                let mut i = 0;
                let mut pages_total = None;
                if c.total_pointer.is_some() {
                    if let Some(records) = as_count(value(i)) {
                        pages_total = Some(records.div_ceil(c.page_size));
                        self.total = Some(records);
                    }
                    i += 1;
                }
                if c.total_pages_pointer.is_some() {
                    pages_total = as_count(value(i)).or(pages_total);
                    self.total = pages_total;
                    i += 1;
                }
                let more = c.has_more_pointer.as_ref().map(|_| as_flag(value(i)));
                let done_pages = number + 1 - c.first_page;
                if page.records == 0
                    || more == Some(false)
                    || pages_total.is_some_and(|t| done_pages >= t)
                    || self.end().is_some_and(|e| number + 1 >= e)
                {
                    return Ok(Next::Done);
                }
                Ok(Next::Continue(
                    self.request(Position::Page { page: number + 1 }),
                ))
            }
            (PaginationConfig::Cursor(c), Position::Cursor { .. }) => {
                let more = c.has_more_pointer.as_ref().map(|_| as_flag(value(1)));
                let cursor = match value(0) {
                    Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s),
                    Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                };
                let Some(cursor) = cursor else {
                    return Ok(Next::Done);
                };
                if page.records == 0 || more == Some(false) {
                    return Ok(Next::Done);
                }
                if !self.seen.insert(cursor.clone()) {
                    return Err(PaginateError(format!(
                        "the server returned cursor `{cursor}` a second time: stopping \
                         instead of looping"
                    )));
                }
                Ok(Next::Continue(self.request(Position::Cursor {
                    cursor: Some(cursor),
                })))
            }
            (PaginationConfig::NextUrl(_), Position::Url { .. }) => {
                let next = match value(0) {
                    Some(serde_json::Value::String(s)) if !s.is_empty() => s,
                    _ => return Ok(Next::Done),
                };
                let base = page.url.as_ref();
                let url = match base {
                    Some(b) => b.join(&next),
                    None => Url::parse(&next),
                }
                .map_err(|e| PaginateError(format!("the next URL `{next}` is not a URL: {e}")))?;
                self.follow(url, page.records)
            }
            (PaginationConfig::LinkHeader(_), Position::Url { .. }) => match &page.link_next {
                Some(url) => self.follow(url.clone(), page.records),
                None => Ok(Next::Done),
            },
            (PaginationConfig::RangeHeader(_), Position::Range { start }) => {
                if page.records == 0 {
                    return Ok(Next::Done);
                }
                let (end, total) = page
                    .content_range
                    .as_deref()
                    .and_then(parse_content_range)
                    .unwrap_or((start + page.records - 1, None));
                self.total = total.or(self.total);
                let next = end + 1;
                if self.total.is_some_and(|t| next >= t) {
                    return Ok(Next::Done);
                }
                Ok(Next::Continue(
                    self.request(Position::Range { start: next }),
                ))
            }
            _ => Ok(Next::Done),
        }
    }

    fn follow(&mut self, url: Url, records: u64) -> Result<Next, PaginateError> {
        if records == 0 {
            return Ok(Next::Done);
        }
        if !self.seen.insert(url.to_string()) {
            return Err(PaginateError(format!(
                "the server pointed to {url} a second time: stopping instead of looping"
            )));
        }
        Ok(Next::Continue(self.request(Position::Url {
            url: Some(url.to_string()),
        })))
    }
}

fn as_count(value: Option<serde_json::Value>) -> Option<u64> {
    match value? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A has-more flag: `true`, `"true"`, `1`. Anything else, absent included, is false.
fn as_flag(value: Option<serde_json::Value>) -> bool {
    match value {
        Some(serde_json::Value::Bool(b)) => b,
        Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("true"),
        Some(serde_json::Value::Number(n)) => n.as_u64() == Some(1),
        _ => false,
    }
}

/// `entities 0-99/1234` (or `entities 0-99/*`) -> (99, Some(1234)).
fn parse_content_range(header: &str) -> Option<(u64, Option<u64>)> {
    let (_, rest) = header.trim().split_once(' ')?;
    let (range, total) = rest.split_once('/')?;
    let (_, end) = range.split_once('-')?;
    Some((end.trim().parse().ok()?, total.trim().parse().ok()))
}

/// The `rel="next"` target of a `Link` header (RFC 8288), resolved against `base`.
pub fn link_next(header: &str, base: &Url) -> Option<Url> {
    for link in header.split(',') {
        let (target, params) = link.split_once(';').unwrap_or((link, ""));
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=").is_some_and(|v| {
                v.trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
            })
        });
        if is_next {
            return base.join(target).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(page_size: u64) -> Paginator {
        PaginationConfig::Offset(OffsetConfig {
            offset_param: "skip".into(),
            limit_param: "limit".into(),
            page_size,
            start_offset: 0,
            params_in: ParamsIn::Query,
            total_pointer: None,
            has_more_pointer: None,
            total_upper_bound: None,
        })
        .build()
    }

    fn records(n: u64) -> PageOutcome {
        PageOutcome {
            records: n,
            ..PageOutcome::default()
        }
    }

    #[test]
    fn shards_split_whole_pages_and_the_last_reads_on() {
        // 10,500 records in pages of 1,000, by an upper bound: 11 pages over 4 shards.
        let mut config = offset(1000).config;
        if let PaginationConfig::Offset(c) = &mut config {
            c.total_upper_bound = Some(10_500);
        }
        let mut seen = Vec::new();
        for index in 0..4 {
            let mut p = config.build();
            let (start, end) = p.plan_shard(Shard { index, count: 4 }).unwrap();
            p.set_end(end);
            let mut request = p.request(start);
            loop {
                let Position::Offset { offset } = request.position else {
                    panic!("offsets");
                };
                seen.push((index, offset));
                // The data grew past the bound: the last shard reads on to the real end.
                let page = records(if offset < 12_000 { 1000 } else { 0 });
                match p.next(&request, &page).unwrap() {
                    Next::Continue(next) => {
                        if let Some(s) = p.speculate(&request) {
                            assert_eq!(s, next, "speculation stays in the shard");
                        }
                        request = next;
                    }
                    Next::Done => break,
                }
            }
        }
        let starts: Vec<u64> = seen.iter().map(|(_, o)| *o).collect();
        assert_eq!(starts, (0..=12).map(|i| i * 1000).collect::<Vec<_>>());
        let first_of = |shard| seen.iter().find(|(s, _)| *s == shard).unwrap().1;
        assert_eq!(
            (first_of(0), first_of(1), first_of(2), first_of(3)),
            (0, 2000, 5000, 8000)
        );
        let p = offset(1000);
        let e = p.plan_shard(Shard { index: 0, count: 2 }).unwrap_err();
        assert!(e.0.contains("total_upper_bound"), "{e}");
        assert_eq!("3/4".parse::<Shard>(), Ok(Shard { index: 3, count: 4 }));
        assert!("4/4".parse::<Shard>().is_err() && "1".parse::<Shard>().is_err());
    }

    #[test]
    fn short_page_does_not_stop_but_empty_does() {
        let mut p = offset(100);
        let first = p.first(None);
        assert_eq!(first.query[0], ("skip".into(), "0".into()));
        let Next::Continue(second) = p.next(&first, &records(40)).unwrap() else {
            panic!()
        };
        assert_eq!(second.position, Position::Offset { offset: 40 });
        // The speculation assumed a full page: it differs, so it is discarded.
        assert_ne!(p.speculate(&first), Some(second.clone()));
        assert_eq!(p.next(&second, &records(0)).unwrap(), Next::Done);
    }

    #[test]
    fn link_headers() {
        let base = Url::parse("https://api.example.com/v1/items?page=1").unwrap();
        let h = r#"<https://api.example.com/v1/items?page=1>; rel="prev", </v1/items?page=3>; rel="next last""#;
        assert_eq!(
            link_next(h, &base).unwrap().as_str(),
            "https://api.example.com/v1/items?page=3"
        );
        assert!(link_next(r#"<x>; rel="prev""#, &base).is_none());
    }

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("entities 0-99/1234"),
            Some((99, Some(1234)))
        );
        assert_eq!(parse_content_range("entities 100-199/*"), Some((199, None)));
    }

    #[test]
    fn stop_conditions() {
        // A has-more flag.
        let mut p = PaginationConfig::Offset(OffsetConfig {
            offset_param: "skip".into(),
            limit_param: "limit".into(),
            page_size: 10,
            start_offset: 0,
            params_in: ParamsIn::Query,
            total_pointer: None,
            has_more_pointer: Some("/more".parse().unwrap()),
            total_upper_bound: None,
        })
        .build();
        let first = p.first(None);
        let page = |more: bool| PageOutcome {
            records: 10,
            values: vec![Some(more.into())],
            ..PageOutcome::default()
        };
        assert!(matches!(
            p.next(&first, &page(true)).unwrap(),
            Next::Continue(_)
        ));
        assert_eq!(p.next(&first, &page(false)).unwrap(), Next::Done);

        // A page count, 0-based pages, parameters in the body.
        let mut p = PaginationConfig::Page(PageConfig {
            page_param: "p".into(),
            size_param: "n".into(),
            page_size: 10,
            first_page: 0,
            params_in: ParamsIn::Body,
            total_pointer: None,
            total_pages_pointer: Some("/pages".parse().unwrap()),
            has_more_pointer: None,
            total_upper_bound: None,
        })
        .build();
        let first = p.first(None);
        assert_eq!(
            first.body,
            [("p".to_string(), 0.into()), ("n".to_string(), 10.into())]
        );
        let pages = |n: u64| PageOutcome {
            records: 10,
            values: vec![Some(n.into())],
            ..PageOutcome::default()
        };
        let Next::Continue(second) = p.next(&first, &pages(2)).unwrap() else {
            panic!()
        };
        assert_eq!(second.position, Position::Page { page: 1 });
        assert_eq!(p.speculate(&second), None, "no page 2 of 2");
        assert_eq!(p.next(&second, &pages(2)).unwrap(), Next::Done);
    }

    #[test]
    fn records_past_the_total_are_an_error() {
        let mut p = PaginationConfig::Offset(OffsetConfig {
            offset_param: "skip".into(),
            limit_param: "limit".into(),
            page_size: 10,
            start_offset: 20,
            params_in: ParamsIn::Query,
            total_pointer: Some("/total".parse().unwrap()),
            has_more_pointer: None,
            total_upper_bound: None,
        })
        .build();
        let first = p.first(None);
        let out = PageOutcome {
            records: 10,
            values: vec![Some(15.into())],
            ..PageOutcome::default()
        };
        assert!(
            p.next(&first, &out)
                .unwrap_err()
                .0
                .contains("past its own total of 15")
        );
    }

    #[test]
    fn a_repeated_cursor_is_an_error() {
        let mut p = PaginationConfig::Cursor(CursorConfig {
            cursor_param: "cursor".into(),
            cursor_pointer: "/next".parse().unwrap(),
            limit_param: None,
            page_size: 10,
            params_in: ParamsIn::Query,
            has_more_pointer: None,
        })
        .build();
        let first = p.first(None);
        let out = PageOutcome {
            records: 5,
            values: vec![Some("abc".into())],
            ..PageOutcome::default()
        };
        let Next::Continue(second) = p.next(&first, &out).unwrap() else {
            panic!()
        };
        assert_eq!(second.query, [("cursor".to_string(), "abc".to_string())]);
        assert!(
            p.next(&second, &out)
                .unwrap_err()
                .0
                .contains("`abc` a second time")
        );
    }
}
