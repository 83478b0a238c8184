//! Strategies that learn each next request from the answer before it: an opaque `cursor`,
//! the next page's URL in the body (`next_url`) or in the `Link` header (`link_header`).
//! None of them can speculate; all of them refuse to follow the same cursor or URL twice.

use std::collections::HashSet;

use url::Url;

use super::config::{CursorConfig, ParamsIn};
use super::{EmptyPages, PageOutcome, PageRequest, PaginateError, Position, Strategy, as_flag};

/// Cursors. Stops when the answer has no cursor (absent, null or empty), on a false has-more
/// flag, or on an empty page — unless the has-more flag says more follow: APIs that scan a
/// sparse range send empty pages mid-stream.
#[derive(Clone, Debug)]
pub(super) struct Cursor {
    cursor_param: String,
    /// The page-size parameter and its value, if the API takes one.
    limit: Option<(String, u64)>,
    params_in: ParamsIn,
    reads_has_more: bool,
    /// Cursors already followed, to stop loops.
    seen: HashSet<String>,
    empty: EmptyPages,
}

impl Cursor {
    pub(super) fn new(c: &CursorConfig) -> Self {
        Cursor {
            cursor_param: c.cursor_param.clone(),
            limit: c.limit_param.clone().map(|p| (p, c.page_size)),
            params_in: c.params_in,
            reads_has_more: c.has_more_pointer.is_some(),
            seen: HashSet::new(),
            empty: EmptyPages::default(),
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
        let more = match self.reads_has_more {
            true => as_flag(page.values.has_more.as_ref())?,
            false => None,
        };
        let cursor = match &page.values.next {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Ok(None),
        };
        if more == Some(false) || (page.records == 0 && more != Some(true)) {
            return Ok(None);
        }
        self.empty.saw(page.records)?;
        if !self.seen.insert(cursor.clone()) {
            return Err(PaginateError(format!(
                "the server returned cursor `{cursor}` a second time: stopping instead of \
                 looping"
            )));
        }
        Ok(Some(Position::Cursor {
            cursor: Some(cursor),
        }))
    }

    fn clone_box(&self) -> Box<dyn Strategy> {
        Box::new(self.clone())
    }
}

/// URLs already followed: the next page's, from the body or the `Link` header.
#[derive(Clone, Debug, Default)]
struct Followed {
    seen: HashSet<String>,
    empty: EmptyPages,
}

impl Followed {
    /// Follows `url` after a page of `records`; an empty page ends the pages unless `more`
    /// (the has-more flag) says more follow.
    fn follow(
        &mut self,
        url: Url,
        records: u64,
        more: Option<bool>,
    ) -> Result<Option<Position>, PaginateError> {
        if more == Some(false) || (records == 0 && more != Some(true)) {
            return Ok(None);
        }
        self.empty.saw(records)?;
        if !self.seen.insert(url.to_string()) {
            return Err(PaginateError(format!(
                "the server pointed to {url} a second time: stopping instead of looping"
            )));
        }
        Ok(Some(Position::Url {
            url: Some(url.to_string()),
        }))
    }
}

/// Where the next page's URL is.
#[derive(Clone, Copy, Debug)]
pub(super) enum NextIn {
    /// The body, at the `next` pointer (`next_url`). Stops when it is absent, null or empty.
    Body,
    /// The `Link` header's `rel="next"` (`link_header`). Stops when there is none.
    LinkHeader,
}

/// The next page's URL, given by each answer.
#[derive(Clone, Debug)]
pub(super) struct NextUrl {
    source: NextIn,
    reads_has_more: bool,
    followed: Followed,
}

impl NextUrl {
    pub(super) fn new(source: NextIn, reads_has_more: bool) -> Self {
        NextUrl {
            source,
            reads_has_more,
            followed: Followed::default(),
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
        let url = match self.source {
            NextIn::LinkHeader => match &page.link_next {
                Some(url) => url.clone(),
                None => return Ok(None),
            },
            NextIn::Body => {
                let next = match &page.values.next {
                    Some(serde_json::Value::String(s)) if !s.is_empty() => s,
                    _ => return Ok(None),
                };
                match page.url.as_ref() {
                    Some(base) => base.join(next),
                    None => Url::parse(next),
                }
                .map_err(|e| PaginateError(format!("the next URL `{next}` is not a URL: {e}")))?
            }
        };
        let more = match self.reads_has_more {
            true => as_flag(page.values.has_more.as_ref())?,
            false => None,
        };
        self.followed.follow(url, page.records, more)
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
