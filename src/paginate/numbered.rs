//! Strategies whose every request is known in advance: `offset` (skip/limit) and `page`
//! (page numbers). They speculate, and they can be split into shards.

use super::config::{OffsetConfig, PageConfig, ParamsIn};
use super::{
    EmptyPages, HasMore, PageOutcome, PageRequest, PaginateError, Position, Shard, Strategy,
    as_count,
};
use crate::vocab::JsonPointer;

/// Skip/limit. Stops on an empty page, a reached total or a false has-more flag — never on a
/// merely short page, since servers that cap their page size would otherwise lose records.
#[derive(Clone, Debug)]
pub(super) struct Offset {
    offset_param: String,
    limit_param: String,
    page_size: u64,
    start: u64,
    params_in: ParamsIn,
    total_pointer: Option<JsonPointer>,
    has_more: HasMore,
    upper_bound: Option<u64>,
    /// The total once an answer has said.
    total: Option<u64>,
    /// Where a shard's pages end: the next shard's first offset.
    end: Option<u64>,
}

impl Offset {
    pub(super) fn new(c: &OffsetConfig) -> Self {
        Offset {
            offset_param: c.offset_param.clone(),
            limit_param: c.limit_param.clone(),
            page_size: c.page_size,
            start: c.start_offset,
            params_in: c.params_in,
            total_pointer: c.total_pointer.clone(),
            has_more: HasMore::new(&c.has_more_pointer, &c.last_page_pointer),
            upper_bound: c.total_upper_bound,
            total: None,
            end: None,
        }
    }
}

impl Strategy for Offset {
    fn first(&self) -> Position {
        Position::Offset { offset: self.start }
    }

    fn request(&self, position: &Position) -> Option<PageRequest> {
        let Position::Offset { offset } = position else {
            return None;
        };
        Some(
            PageRequest::at(position.clone())
                .param(self.params_in, &self.offset_param, (*offset).into())
                .param(self.params_in, &self.limit_param, self.page_size.into()),
        )
    }

    fn speculate(&self, previous: &Position, step: u64) -> Option<Position> {
        let Position::Offset { offset } = previous else {
            return None;
        };
        let next = offset + step;
        if self.total.is_some_and(|t| next >= t) || self.end.is_some_and(|e| next >= e) {
            return None;
        }
        Some(Position::Offset { offset: next })
    }

    fn next(
        &mut self,
        previous: &Position,
        page: &PageOutcome,
    ) -> Result<Option<Position>, PaginateError> {
        let Position::Offset { offset } = previous else {
            return Ok(None);
        };
        if let Some(pointer) = &self.total_pointer {
            self.total = total_at(page, pointer)?.or(self.total);
        }
        let more = self.has_more.read(page)?;
        if more == Some(false) {
            return Ok(None);
        }
        if page.records == 0 {
            if more == Some(true) {
                return Err(self.has_more.contradicted(format!(
                    "the page at offset {offset} is empty, so the next request would ask for \
                     the same page"
                )));
            }
            return Ok(None);
        }
        if let Some(total) = self.total
            && *offset >= total
        {
            return Err(PaginateError(format!(
                "the server returned {} records at offset {offset}, past its own total \
                 of {total}: it seems to ignore `{}`; stopping instead of looping",
                page.records, self.offset_param
            )));
        }
        // Advance by what the server sent, not by what was asked: a server that caps
        // its page size below `page_size` must not make us skip records.
        let next = offset + page.records;
        if let Some(end) = self.end {
            if next > end {
                return Err(PaginateError(format!(
                    "the server returned {} records at offset {offset}, more than the \
                     {} asked for: the shards would overlap",
                    page.records, self.page_size
                )));
            }
            if next == end {
                return Ok(None);
            }
        }
        // A has-more flag that says more is never overruled by a total reached.
        if self.total.is_some_and(|t| next >= t) && more != Some(true) {
            return Ok(None);
        }
        Ok(Some(Position::Offset { offset: next }))
    }

    fn advances_by_records(&self) -> bool {
        true
    }

    fn total(&self) -> Option<u64> {
        self.total
    }

    fn stated_records(&self) -> Option<u64> {
        // The pages start at `start_offset`: the records before it are not this job's.
        self.total.map(|t| t.saturating_sub(self.start))
    }

    fn plan_shard(&self, shard: Shard) -> Result<(Position, Option<u64>), PaginateError> {
        let pages = match self.total {
            Some(records) => records.div_ceil(self.page_size),
            None => pages_by_bound(self.upper_bound, self.page_size)?,
        };
        let (from, to, last) = split(pages, shard);
        let start = Position::Offset {
            offset: self.start + from * self.page_size,
        };
        Ok((start, (!last).then_some(self.start + to * self.page_size)))
    }

    fn set_end(&mut self, end: Option<u64>) {
        self.end = end;
    }

    fn clone_box(&self) -> Box<dyn Strategy> {
        Box::new(self.clone())
    }
}

/// Page numbers. Stops on an empty page, a reached total, a false has-more flag, or the last
/// page number when the API gives the page count.
#[derive(Clone, Debug)]
pub(super) struct Pages {
    page_param: String,
    size_param: String,
    page_size: u64,
    first_page: u64,
    params_in: ParamsIn,
    total_pointer: Option<JsonPointer>,
    total_pages_pointer: Option<JsonPointer>,
    has_more: HasMore,
    empty: EmptyPages,
    upper_bound: Option<u64>,
    /// The total once an answer has said: records, or pages with `total_pages_pointer`.
    total: Option<u64>,
    /// The records a total pointer stated.
    stated: Option<u64>,
    /// The server's page size: the most records a page held. A server may cap it below
    /// `page_size`, and the number of pages follows the server's size, not the one asked.
    server_size: u64,
    /// Where a shard's pages end: the next shard's first page.
    end: Option<u64>,
}

impl Pages {
    /// Records per page as the server pages them: what it sent, else what was asked.
    fn size(&self) -> u64 {
        if self.server_size > 0 {
            self.server_size
        } else {
            self.page_size
        }
    }
}

impl Pages {
    pub(super) fn new(c: &PageConfig) -> Self {
        Pages {
            page_param: c.page_param.clone(),
            size_param: c.size_param.clone(),
            page_size: c.page_size,
            first_page: c.first_page,
            params_in: c.params_in,
            total_pointer: c.total_pointer.clone(),
            total_pages_pointer: c.total_pages_pointer.clone(),
            has_more: HasMore::new(&c.has_more_pointer, &c.last_page_pointer),
            empty: EmptyPages::default(),
            upper_bound: c.total_upper_bound,
            total: None,
            stated: None,
            server_size: 0,
            end: None,
        }
    }
}

impl Strategy for Pages {
    fn first(&self) -> Position {
        Position::Page {
            page: self.first_page,
        }
    }

    fn request(&self, position: &Position) -> Option<PageRequest> {
        let Position::Page { page } = position else {
            return None;
        };
        Some(
            PageRequest::at(position.clone())
                .param(self.params_in, &self.page_param, (*page).into())
                .param(self.params_in, &self.size_param, self.page_size.into()),
        )
    }

    fn speculate(&self, previous: &Position, _step: u64) -> Option<Position> {
        let Position::Page { page } = previous else {
            return None;
        };
        if self.end.is_some_and(|e| page + 1 >= e) {
            return None;
        }
        let done = page + 1 - self.first_page;
        if self.total_pages_pointer.is_some() && self.total.is_some_and(|t| done >= t) {
            return None;
        }
        if self.total_pointer.is_some() && self.stated.is_some_and(|t| done * self.size() >= t) {
            return None;
        }
        Some(Position::Page { page: page + 1 })
    }

    fn next(
        &mut self,
        previous: &Position,
        page: &PageOutcome,
    ) -> Result<Option<Position>, PaginateError> {
        let Position::Page { page: number } = previous else {
            return Ok(None);
        };
        self.server_size = self.server_size.max(page.records);
        let mut pages_total = None;
        if let Some(pointer) = &self.total_pointer
            && let Some(records) = total_at(page, pointer)?
        {
            pages_total = Some(records.div_ceil(self.size()));
            self.total = Some(records);
            self.stated = Some(records);
        }
        if let Some(pointer) = &self.total_pages_pointer {
            let pages = as_count(
                page.values.total_pages.as_ref(),
                &format!("page count at `{pointer}`"),
            )?;
            pages_total = pages.or(pages_total);
            self.total = pages_total;
        }
        let more = self.has_more.read(page)?;
        let done_pages = number + 1 - self.first_page;
        // A has-more flag that says more is never overruled: not by an empty page (the next
        // number is still a new request), nor by a page count reached.
        if more == Some(false)
            || (more != Some(true)
                && (page.records == 0 || pages_total.is_some_and(|t| done_pages >= t)))
            || self.end.is_some_and(|e| number + 1 >= e)
        {
            return Ok(None);
        }
        self.empty.saw(page.records)?;
        Ok(Some(Position::Page { page: number + 1 }))
    }

    fn total(&self) -> Option<u64> {
        self.total
    }

    fn stated_records(&self) -> Option<u64> {
        self.stated
    }

    fn plan_shard(&self, shard: Shard) -> Result<(Position, Option<u64>), PaginateError> {
        let pages = match self.total {
            Some(pages) if self.total_pages_pointer.is_some() => pages,
            Some(records) => records.div_ceil(self.size()),
            None => pages_by_bound(self.upper_bound, self.size())?,
        };
        let (from, to, last) = split(pages, shard);
        let start = Position::Page {
            page: self.first_page + from,
        };
        Ok((start, (!last).then_some(self.first_page + to)))
    }

    fn set_end(&mut self, end: Option<u64>) {
        self.end = end;
    }

    fn clone_box(&self) -> Box<dyn Strategy> {
        Box::new(self.clone())
    }
}

/// The record total at `pointer`, if the answer says.
fn total_at(page: &PageOutcome, pointer: &JsonPointer) -> Result<Option<u64>, PaginateError> {
    as_count(page.values.total.as_ref(), &format!("total at `{pointer}`"))
}

/// The pages of a total that no answer stated: the configured upper bound's.
fn pages_by_bound(upper_bound: Option<u64>, page_size: u64) -> Result<u64, PaginateError> {
    upper_bound.map(|r| r.div_ceil(page_size)).ok_or_else(|| {
        PaginateError(
            "sharding needs the number of records: set `pagination.total_pointer` \
             (where the answer says it) or `pagination.total_upper_bound`"
                .into(),
        )
    })
}

/// A shard's pages of `pages`: the first, the next shard's first, and whether it is the
/// last shard.
fn split(pages: u64, shard: Shard) -> (u64, u64, bool) {
    let at = |i: u64| pages * i / shard.count;
    (
        at(shard.index),
        at(shard.index + 1),
        shard.index + 1 == shard.count,
    )
}
