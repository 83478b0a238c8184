//! Strategies that learn each next request from the answer before it: an opaque `cursor`,
//! a field of the last record (`keyset`), the next page's URL in the body (`next_url`) or
//! in the `Link` header (`link_header`). None of them can speculate; all of them refuse to
//! follow the same cursor, key or URL twice, and none ends a list while a has-more flag says
//! more pages follow.

use std::collections::HashSet;

use url::Url;

use super::config::{CursorConfig, KeyRecord, KeysetConfig, ListEnd, ParamsIn};
use super::{EmptyPages, HasMore, PageOutcome, PageRequest, PaginateError, Position, Strategy};
use crate::vocab::JsonPointer;

/// What a list that names each next page decides after a page: the has-more flag, the
/// end condition, loops.
#[derive(Clone, Debug)]
struct Follow {
    has_more: HasMore,
    end: ListEnd,
    /// What was followed already, to stop loops.
    seen: HashSet<String>,
    empty: EmptyPages,
}

impl Follow {
    fn new(has_more: HasMore, end: ListEnd) -> Self {
        Follow {
            has_more,
            end,
            seen: HashSet::new(),
            empty: EmptyPages::default(),
        }
    }

    /// Whether to follow `next` (the next page as the answer named it, `None` if it named
    /// none) after `page`. A has-more flag that says false ends the list; one that says true
    /// with no next page fails it (`missing` says what was missing).
    fn follow(
        &mut self,
        next: Option<String>,
        page: &PageOutcome,
        missing: impl FnOnce() -> String,
    ) -> Result<Option<String>, PaginateError> {
        let more = self.has_more.read(page)?;
        if more == Some(false) {
            return Ok(None);
        }
        let Some(next) = next else {
            if more == Some(true) {
                return Err(self.has_more.contradicted(missing()));
            }
            return Ok(None);
        };
        if page.records == 0 && self.end == ListEnd::EmptyPage && more != Some(true) {
            return Ok(None);
        }
        self.empty.saw(page.records)?;
        if !self.seen.insert(next.clone()) {
            return Err(PaginateError(format!(
                "the server named `{next}` as the next page a second time: stopping instead of \
                 looping"
            )));
        }
        Ok(Some(next))
    }
}

/// A cursor or key as sent back: a non-empty string or a number; `None` for absent, null or
/// empty; an error for anything else.
fn token(value: Option<&serde_json::Value>, what: &str) -> Result<Option<String>, PaginateError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(PaginateError(format!(
            "the {what} is {other}, not a string or a number"
        ))),
    }
}

/// Cursors. Stops when the answer has no cursor (absent, null or empty) or a has-more flag
/// says false; with `end = "empty_page"`, also on an empty page the flag does not contradict.
#[derive(Clone, Debug)]
pub(super) struct Cursor {
    cursor_param: String,
    cursor_pointer: JsonPointer,
    /// The page-size parameter and its value, if the API takes one.
    limit: Option<(String, u64)>,
    params_in: ParamsIn,
    follow: Follow,
}

impl Cursor {
    pub(super) fn new(c: &CursorConfig) -> Self {
        Cursor {
            cursor_param: c.cursor_param.clone(),
            cursor_pointer: c.cursor_pointer.clone(),
            limit: c.limit_param.clone().map(|p| (p, c.page_size)),
            params_in: c.params_in,
            follow: Follow::new(
                HasMore::new(&c.has_more_pointer, &c.last_page_pointer),
                c.end,
            ),
        }
    }
}

impl Strategy for Cursor {
    fn first(&self) -> Position {
        Position::Cursor { cursor: None }
    }

    fn request(&self, position: &Position) -> Option<PageRequest> {
        let Position::Cursor { cursor } = position else {
            return None;
        };
        let mut req = PageRequest::at(position.clone());
        if let Some(cursor) = cursor {
            req = req.param(self.params_in, &self.cursor_param, cursor.clone().into());
        }
        if let Some((param, size)) = &self.limit {
            req = req.param(self.params_in, param, (*size).into());
        }
        Some(req)
    }

    fn next(
        &mut self,
        _: &Position,
        page: &PageOutcome,
    ) -> Result<Option<Position>, PaginateError> {
        let at = &self.cursor_pointer;
        let cursor = token(page.values.next.as_ref(), &format!("cursor at `{at}`"))?;
        let cursor = self.follow.follow(cursor, page, || {
            format!("the answer has no cursor at `{at}`")
        })?;
        Ok(cursor.map(|cursor| Position::Cursor {
            cursor: Some(cursor),
        }))
    }

    fn clone_box(&self) -> Box<dyn Strategy> {
        Box::new(self.clone())
    }
}

/// Keyset pagination: the next request sends a field of the page's last (or first) record.
/// Stops when a has-more flag says false, or on an empty page where no flag says more.
#[derive(Clone, Debug)]
pub(super) struct Keyset {
    key_param: String,
    first_key: Option<String>,
    key_pointer: JsonPointer,
    key_record: KeyRecord,
    limit: Option<(String, u64)>,
    params_in: ParamsIn,
    follow: Follow,
}

impl Keyset {
    pub(super) fn new(c: &KeysetConfig) -> Self {
        Keyset {
            key_param: c.key_param.clone(),
            first_key: c.first_key.clone(),
            key_pointer: c.key_pointer.clone(),
            key_record: c.key_record,
            limit: c.limit_param.clone().map(|p| (p, c.page_size)),
            params_in: c.params_in,
            // Without a flag, only an empty page ends a keyset list: a short one may be a
            // server's cap. One request more, never a record less.
            follow: Follow::new(
                HasMore::new(&c.has_more_pointer, &c.last_page_pointer),
                ListEnd::EmptyPage,
            ),
        }
    }
}

impl Strategy for Keyset {
    fn first(&self) -> Position {
        Position::Key { key: None }
    }

    fn request(&self, position: &Position) -> Option<PageRequest> {
        let Position::Key { key } = position else {
            return None;
        };
        let mut req = PageRequest::at(position.clone());
        let key = match key {
            Some(key) => Some((**key).clone()),
            None => self.first_key.clone().map(Into::into),
        };
        if let Some(key) = key {
            req = req.param(self.params_in, &self.key_param, key);
        }
        if let Some((param, size)) = &self.limit {
            // A page size has no place in a path: the query has it.
            let params_in = match self.params_in {
                ParamsIn::Path => ParamsIn::Query,
                other => other,
            };
            req = req.param(params_in, param, (*size).into());
        }
        Some(req)
    }

    fn next(
        &mut self,
        _: &Position,
        page: &PageOutcome,
    ) -> Result<Option<Position>, PaginateError> {
        let which = match self.key_record {
            KeyRecord::Last => "last",
            KeyRecord::First => "first",
        };
        let at = &self.key_pointer;
        let key = page.values.record_key.as_ref();
        let text = token(key, &format!("key at `{at}` of the page's {which} record"))?;
        if text.is_none() && page.records > 0 && self.follow.has_more.read(page)? != Some(false) {
            return Err(PaginateError(format!(
                "the page's {which} record has no key at `{at}` (absent, null or empty), so the \
                 next request cannot be formed; stopping instead of ending the list with \
                 records missing"
            )));
        }
        let next = self.follow.follow(text, page, || {
            "the page is empty: there is no record to continue after".to_string()
        })?;
        Ok(next.map(|_| Position::Key {
            key: key.cloned().map(Box::new),
        }))
    }

    fn clone_box(&self) -> Box<dyn Strategy> {
        Box::new(self.clone())
    }
}

/// Where the next page's URL is.
#[derive(Clone, Debug)]
pub(super) enum NextIn {
    /// The body, at this pointer (`next_url`). Absent, null or empty: no next page.
    Body(JsonPointer),
    /// The `Link` header's `rel="next"` (`link_header`).
    LinkHeader,
}

/// The next page's URL, given by each answer.
#[derive(Clone, Debug)]
pub(super) struct NextUrl {
    source: NextIn,
    follow: Follow,
}

impl NextUrl {
    pub(super) fn new(source: NextIn, has_more: HasMore, end: ListEnd) -> Self {
        NextUrl {
            source,
            follow: Follow::new(has_more, end),
        }
    }
}

impl Strategy for NextUrl {
    fn first(&self) -> Position {
        Position::Url { url: None }
    }

    fn request(&self, position: &Position) -> Option<PageRequest> {
        let Position::Url { url } = position else {
            return None;
        };
        Some(PageRequest {
            url: url.as_deref().and_then(|u| Url::parse(u).ok()),
            ..PageRequest::at(position.clone())
        })
    }

    fn next(
        &mut self,
        _: &Position,
        page: &PageOutcome,
    ) -> Result<Option<Position>, PaginateError> {
        let url = match &self.source {
            NextIn::LinkHeader => page.link_next.as_ref().map(Url::to_string),
            NextIn::Body(at) => {
                match token(page.values.next.as_ref(), &format!("next URL at `{at}`"))? {
                    Some(next) => Some(
                        match page.url.as_ref() {
                            Some(base) => base.join(&next),
                            None => Url::parse(&next),
                        }
                        .map_err(|e| {
                            PaginateError(format!("the next URL `{next}` is not a URL: {e}"))
                        })?
                        .to_string(),
                    ),
                    None => None,
                }
            }
        };
        let missing = || match &self.source {
            NextIn::LinkHeader => "the answer has no `Link` header with rel=\"next\"".to_string(),
            NextIn::Body(at) => format!("the answer has no next URL at `{at}`"),
        };
        let missing = missing();
        let url = self.follow.follow(url, page, || missing)?;
        Ok(url.map(|url| Position::Url { url: Some(url) }))
    }

    fn clone_box(&self) -> Box<dyn Strategy> {
        Box::new(self.clone())
    }
}

/// The `rel="next"` target of a `Link` header (RFC 8288), resolved against `base`. `header`
/// may join several header lines with commas; a URL may hold commas itself (inside `<>`),
/// and so may a quoted parameter.
pub fn link_next(header: &str, base: &Url) -> Option<Url> {
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let close = open + rest[open..].find('>')?;
        let target = rest[open + 1..close].trim();
        let (params, after) = split_unquoted(&rest[close + 1..], ',');
        let is_next = split_all_unquoted(params, ';').any(|p| {
            let Some((name, value)) = p.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return base.join(target).ok();
        }
        rest = after;
    }
    None
}

/// `text` up to the first `sep` outside double quotes, and what follows it.
fn split_unquoted(text: &str, sep: char) -> (&str, &str) {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => return (&text[..i], &text[i + 1..]),
            _ => {}
        }
    }
    (text, "")
}

/// `text` split at every `sep` outside double quotes.
fn split_all_unquoted(text: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let (part, after) = split_unquoted(rest?, sep);
        rest = (!after.is_empty()).then_some(after);
        Some(part)
    })
}
