//! Pagination: which page comes next and when to stop.
//!
//! [`PaginationConfig`] is the job file's `[pagination]` table, one struct per strategy;
//! `build()` returns a [`Paginator`]: the strategy's runtime object, its parameters and the
//! places in an answer it reads ([`Pointers`], by name) settled once. The fetch stage asks
//! it for the first request, for *speculative* requests (what would come next if every page
//! were full: the strategies whose next request is known in advance allow several in
//! flight), and, once a page has arrived, for the real next request. A speculation that
//! turns out wrong (a short page from a server that caps its page size) is discarded, so no
//! record is skipped. A [`Position`] is plain data, so that checkpoints can store it; a
//! position of another strategy (the job's pagination was edited after a killed run) is
//! refused, never read as "done".
//!
//! - [`numbered`]: `offset` and `page`, the strategies that can be split into shards.
//! - [`cursor`]: `cursor`, `next_url` and `link_header`, which learn each next request from
//!   the answer before it.
//! - [`range`]: `range_header` (`Range: entities=0-99`, answered with `Content-Range`).

mod config;
mod cursor;
mod numbered;
mod range;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::decode::RecordField;
use crate::vocab::JsonPointer;

pub use config::{
    CursorConfig, KeyRecord, KeysetConfig, LinkHeaderConfig, ListEnd, NextUrlConfig,
    NoPaginationConfig, OffsetConfig, PageConfig, PaginationConfig, ParamsIn, RangeHeaderConfig,
};
pub use cursor::link_next;

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
    /// `None`: the first page, requested without a key. Boxed: a position is in every
    /// request, and most are not keys.
    Key {
        key: Option<Box<serde_json::Value>>,
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
            Position::Key { key: None } => f.write_str("the first page"),
            Position::Key { key: Some(k) } => write!(f, "the records after {k}"),
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
    /// The value of the endpoint path's `{page.key}` placeholder (`params_in = "path"`).
    pub path_key: Option<String>,
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
            path_key: None,
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
            ParamsIn::Path => {
                self.path_key = Some(match value {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
            }
        }
        self
    }
}

/// The places in an answer a strategy reads, by what they mean.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pointers {
    /// The total number of records.
    pub total: Option<JsonPointer>,
    /// The number of pages.
    pub total_pages: Option<JsonPointer>,
    /// A "more pages follow" flag.
    pub has_more: Option<JsonPointer>,
    /// A "this is the last page" flag.
    pub last_page: Option<JsonPointer>,
    /// The next cursor, or the next page's URL.
    pub next: Option<JsonPointer>,
    /// A field of the first or last record: a keyset's next key.
    pub record_key: Option<RecordField>,
}

impl Pointers {
    /// The pointers to read, for [`crate::decode::scan`]; [`Pointers::read`] takes its
    /// answer back in the same order.
    pub fn list(&self) -> Vec<JsonPointer> {
        [
            &self.total,
            &self.total_pages,
            &self.has_more,
            &self.last_page,
            &self.next,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    /// The values found at [`Pointers::list`], by name.
    pub fn read(&self, found: Vec<Option<serde_json::Value>>) -> Values {
        let mut found = found.into_iter();
        let mut take = |slot: &Option<JsonPointer>| slot.as_ref().and_then(|_| found.next()?);
        Values {
            total: take(&self.total),
            total_pages: take(&self.total_pages),
            has_more: take(&self.has_more),
            last_page: take(&self.last_page),
            next: take(&self.next),
            record_key: None,
        }
    }
}

/// What an answer held at its strategy's [`Pointers`] (`None`: absent, or not read).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Values {
    pub total: Option<serde_json::Value>,
    pub total_pages: Option<serde_json::Value>,
    pub has_more: Option<serde_json::Value>,
    pub last_page: Option<serde_json::Value>,
    pub next: Option<serde_json::Value>,
    /// The value at [`Pointers::record_key`] in its record.
    pub record_key: Option<serde_json::Value>,
}

/// What the paginator needs to know about a page it asked for.
#[derive(Clone, Debug, Default)]
pub struct PageOutcome {
    /// Records on the page.
    pub records: u64,
    /// Values at the strategy's pointers.
    pub values: Values,
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

/// The paginator's verdict on a page. Not boxed: one is made per page and moved at once
/// into the request it names.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    Continue(PageRequest),
    Done,
}

/// One strategy at run time. Positions are plain data; each strategy knows its own kind and
/// answers `None` for another's.
trait Strategy: std::fmt::Debug + Send + Sync {
    /// Where the pages start.
    fn first(&self) -> Position;
    /// The request at `position`, or `None` if it is not one of this strategy's positions.
    fn request(&self, position: &Position) -> Option<PageRequest>;
    /// The position after `previous` if it comes back with `step` records; `None` where the
    /// answer is needed to know, or past a known end.
    fn speculate(&self, _previous: &Position, _step: u64) -> Option<Position> {
        None
    }
    /// What follows `previous` (`None`: the end), given what its page held.
    fn next(
        &mut self,
        previous: &Position,
        page: &PageOutcome,
    ) -> Result<Option<Position>, PaginateError>;
    /// The total (records, or pages where the API counts pages) once an answer has said.
    fn total(&self) -> Option<u64> {
        None
    }
    /// The records the API said this strategy's pages hold in all (a total pointer, a
    /// `Content-Range` total), once an answer has said.
    fn stated_records(&self) -> Option<u64> {
        None
    }
    /// Splits the pages for `shard`: its first position and where the next shard's begins.
    fn plan_shard(&self, _shard: Shard) -> Result<(Position, Option<u64>), PaginateError> {
        Err(PaginateError(
            "only `offset` and `page` pagination can be split into shards: the others learn \
             each next request from the answer before it"
                .into(),
        ))
    }
    /// Ends the pages at `end` (a shard's range).
    fn set_end(&mut self, _end: Option<u64>) {}
    /// Whether each next position follows from the records the page before held (`offset`,
    /// `range_header`), so that a speculation is wrong after every page of another size.
    fn advances_by_records(&self) -> bool {
        false
    }
    fn clone_box(&self) -> Box<dyn Strategy>;
}

/// The runtime side of [`PaginationConfig`].
#[derive(Debug)]
pub struct Paginator {
    strategy: Box<dyn Strategy>,
    pointers: Pointers,
    /// How far a speculative request jumps: the records a full page holds. `None` after a
    /// short page (most likely the last one), until the next page shows the server's size.
    step: Option<u64>,
    /// The records the first page that had any held: the server's page size, as it showed.
    server_size: Option<u64>,
    /// Set once a page of another size was not the last: the server's page sizes vary, so a
    /// strategy that advances by records speculates no more (every speculation would be
    /// wrong, and cost a request) — until [`STEADY_PAGES`] pages in a row of the server's
    /// size show that the odd one was an exception.
    ragged: bool,
    /// Pages in a row of the server's size.
    steady: u32,
    /// The first count the API stated for these pages (kept in the checkpoint across a
    /// resume), and the last one that differed from it: a collection that changed while
    /// it was read.
    first_stated: Option<u64>,
    changed: Option<u64>,
    fingerprint: String,
}

impl Clone for Paginator {
    fn clone(&self) -> Self {
        Paginator {
            strategy: self.strategy.clone_box(),
            pointers: self.pointers.clone(),
            step: self.step,
            server_size: self.server_size,
            ragged: self.ragged,
            steady: self.steady,
            first_stated: self.first_stated,
            changed: self.changed,
            fingerprint: self.fingerprint.clone(),
        }
    }
}

impl Paginator {
    fn new(
        strategy: Box<dyn Strategy>,
        pointers: Pointers,
        page_size: Option<u64>,
        fingerprint: String,
    ) -> Self {
        Paginator {
            strategy,
            pointers,
            step: page_size,
            server_size: None,
            ragged: false,
            steady: 0,
            first_stated: None,
            changed: None,
            fingerprint,
        }
    }

    /// The places in each answer the fetcher reads for this paginator.
    pub fn pointers(&self) -> &Pointers {
        &self.pointers
    }

    /// Names the settings positions depend on; kept in the checkpoint, so that a run resumed
    /// under other settings is refused instead of misreading its position.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The first request.
    pub fn first(&self) -> PageRequest {
        self.request(&self.strategy.first())
    }

    /// The request at `position`, taken from a checkpoint; an error if the position is not
    /// one of this strategy's (the pagination was changed since it was written).
    pub fn resume(&self, position: &Position) -> Result<PageRequest, PaginateError> {
        self.strategy.request(position).ok_or_else(|| {
            PaginateError(format!(
                "the checkpoint's position ({position}) is not one of this pagination's"
            ))
        })
    }

    fn request(&self, position: &Position) -> PageRequest {
        self.strategy
            .request(position)
            .expect("a strategy's own positions are its own")
    }

    /// The total (records, or pages for `total_pages_pointer`) once an answer has said.
    pub fn total(&self) -> Option<u64> {
        self.strategy.total()
    }

    /// The records the API said the pages hold in all, the first time it said: what the
    /// run checks the records it wrote against.
    pub fn stated_records(&self) -> Option<u64> {
        self.first_stated.or_else(|| self.strategy.stated_records())
    }

    /// Takes the count an earlier run of the same pages was first told (a resumed run's
    /// checkpoint), so that a change across the interruption is seen too.
    pub fn seed_stated(&mut self, stated: Option<u64>) {
        if self.first_stated.is_none() {
            self.first_stated = stated;
        }
    }

    /// The first count the API stated and the latest that differs from it, if the count
    /// changed while the pages were read: records were added or removed meanwhile.
    pub fn stated_change(&self) -> Option<(u64, u64)> {
        Some((self.first_stated?, self.changed?))
    }

    /// Splits the pages into `shard.count` disjoint runs of whole pages: this shard's first
    /// position, and where the next shard's begins. The total is what the first answer said
    /// (records, or pages where the API counts pages), else the configured upper bound. The
    /// last shard has no end, so that records added meanwhile are not lost.
    pub fn plan_shard(&self, shard: Shard) -> Result<(Position, Option<u64>), PaginateError> {
        self.strategy.plan_shard(shard)
    }

    /// Ends the pages at `end` (a shard's range; `None`: the API's end).
    pub fn set_end(&mut self, end: Option<u64>) {
        self.strategy.set_end(end);
    }

    /// The request that follows `previous` if `previous` comes back full; `None` for
    /// strategies that need the answer to know, or past a known total.
    pub fn speculate(&self, previous: &PageRequest) -> Option<PageRequest> {
        if self.ragged && self.strategy.advances_by_records() {
            return None;
        }
        let position = self.strategy.speculate(&previous.position, self.step?)?;
        Some(self.request(&position))
    }

    /// Decides what follows `previous`, given what its page held.
    pub fn next(
        &mut self,
        previous: &PageRequest,
        page: &PageOutcome,
    ) -> Result<Next, PaginateError> {
        // Learn the server's page size from what arrived.
        match self.step {
            Some(step) if page.records < step => self.step = None,
            None if page.records > 0 => self.step = Some(page.records),
            _ => {}
        }
        let varied = match self.server_size {
            _ if page.records == 0 => false,
            None => {
                self.server_size = Some(page.records);
                false
            }
            Some(size) => page.records != size,
        };
        let next = self.strategy.next(&previous.position, page)?;
        if let Some(now) = self.strategy.stated_records() {
            match self.first_stated {
                None => self.first_stated = Some(now),
                // Kept once seen, even if the count comes back: records may have moved
                // between pages meanwhile.
                Some(first) if first != now => self.changed = Some(now),
                Some(_) => {}
            }
        }
        Ok(match next {
            Some(position) => {
                self.steady = if varied { 0 } else { self.steady + 1 };
                self.ragged = varied || (self.ragged && self.steady < STEADY_PAGES);
                Next::Continue(self.request(&position))
            }
            None => Next::Done,
        })
    }
}

/// Pages in a row of the server's own size after which a list that had one of another size
/// speculates again: one short page mid-stream (a filter, a deleted record) does not make
/// the rest of a long list go one request at a time.
const STEADY_PAGES: u32 = 4;

/// One request, no pages.
#[derive(Clone, Debug)]
struct Single;

impl Strategy for Single {
    fn first(&self) -> Position {
        Position::Single
    }

    fn request(&self, position: &Position) -> Option<PageRequest> {
        matches!(position, Position::Single).then(|| PageRequest::at(Position::Single))
    }

    fn next(&mut self, _: &Position, _: &PageOutcome) -> Result<Option<Position>, PaginateError> {
        Ok(None)
    }

    fn clone_box(&self) -> Box<dyn Strategy> {
        Box::new(self.clone())
    }
}

/// A count at a total pointer, in any JSON form of a whole number (`30`, `30.0`, `3e1`) or
/// such a number in a string; `None` when the answer does not say (absent or null). A count
/// that is not a whole number of records (fractional, negative, past 2^53 as a float, not a
/// number) is an error: a total silently not read is a total never checked.
fn as_count(value: Option<&serde_json::Value>, what: &str) -> Result<Option<u64>, PaginateError> {
    let whole = |f: f64| {
        (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f <= 9_007_199_254_740_992.0)
            .then_some(f as u64)
    };
    let count = match value {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().and_then(whole)),
        Some(serde_json::Value::String(s)) => {
            let s = s.trim();
            s.parse::<u64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(whole))
        }
        Some(_) => None,
    };
    match count {
        Some(count) => Ok(Some(count)),
        None => Err(PaginateError(format!(
            "the {what} is {}, which is not a whole number of records",
            value.expect("present")
        ))),
    }
}

/// A has-more flag as APIs write it: `true`/`false`, `1`/`0`, and those, `yes`/`no`, `y`/`n`
/// or `on`/`off` as strings. `None` when the answer does not say (absent or null): the
/// strategy's other signals decide. Anything else is an error, not a guess.
fn as_flag(value: Option<&serde_json::Value>) -> Result<Option<bool>, PaginateError> {
    let word = |s: &str| match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "on" => Some(true),
        "false" | "0" | "no" | "n" | "off" => Some(false),
        _ => None,
    };
    let flag = match value {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Bool(b)) => Some(*b),
        Some(serde_json::Value::Number(n)) => match n.as_u64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Some(serde_json::Value::String(s)) => word(s),
        Some(_) => None,
    };
    match flag {
        Some(flag) => Ok(Some(flag)),
        None => Err(PaginateError(format!(
            "the has-more flag is {}, which is neither true nor false (a token whose presence \
             says more pages follow goes in `cursor_pointer`, not `has_more_pointer`)",
            value.expect("present")
        ))),
    }
}

/// Where the answers say whether more pages follow, if they do: a has-more flag, or a
/// last-page flag (its opposite).
#[derive(Clone, Debug, Default)]
pub(crate) struct HasMore {
    more: Option<JsonPointer>,
    last: Option<JsonPointer>,
}

impl HasMore {
    pub(crate) fn new(more: &Option<JsonPointer>, last: &Option<JsonPointer>) -> HasMore {
        HasMore {
            more: more.clone(),
            last: last.clone(),
        }
    }

    /// What the page's flags say (`None`: no flag, or the answer does not say); flags that
    /// disagree are an error, not a guess.
    fn read(&self, page: &PageOutcome) -> Result<Option<bool>, PaginateError> {
        let flag = |pointer: &Option<JsonPointer>, value: Option<&serde_json::Value>| match pointer
        {
            Some(at) => as_flag(value).map_err(|e| PaginateError(format!("at `{at}`: {}", e.0))),
            None => Ok(None),
        };
        let more = flag(&self.more, page.values.has_more.as_ref())?;
        let last = flag(&self.last, page.values.last_page.as_ref())?;
        match (more, last) {
            (Some(more), Some(last)) if more == last => Err(PaginateError(format!(
                "the has-more flag at `{}` says {more} and the last-page flag at `{}` says \
                 {last}: the answer contradicts itself",
                self.more.as_ref().expect("read"),
                self.last.as_ref().expect("read")
            ))),
            (Some(more), _) => Ok(Some(more)),
            (None, last) => Ok(last.map(|last| !last)),
        }
    }

    /// The failure of a list whose flags say more pages follow where `why` no next request
    /// can be formed: ending there would lose records at exit 0.
    fn contradicted(&self, why: String) -> PaginateError {
        let flag = match (&self.more, &self.last) {
            (Some(at), _) => format!("the has-more flag at `{at}` says more pages follow"),
            (None, Some(at)) => {
                format!("the last-page flag at `{at}` says this is not the last page")
            }
            (None, None) => "the answer says more pages follow".to_string(),
        };
        PaginateError(format!(
            "{flag}, but {why}; stopping instead of ending the list with records missing"
        ))
    }
}

/// The most empty pages in a row a strategy follows (an API scanning a sparse range may
/// send a few); more looks like a server that never ends.
const MAX_EMPTY_PAGES: u32 = 100;

/// Counts empty pages in a row and refuses past [`MAX_EMPTY_PAGES`].
#[derive(Clone, Debug, Default)]
struct EmptyPages(u32);

impl EmptyPages {
    fn saw(&mut self, records: u64) -> Result<(), PaginateError> {
        if records > 0 {
            self.0 = 0;
            return Ok(());
        }
        self.0 += 1;
        if self.0 > MAX_EMPTY_PAGES {
            return Err(PaginateError(format!(
                "the server sent {MAX_EMPTY_PAGES} empty pages in a row, each pointing to \
                 another: stopping instead of looping"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_signals;
