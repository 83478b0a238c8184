//! `range_header`: `Range: entities=0-99; max=100` requests (Armor), the next range after
//! the answer's `Content-Range`.

use super::config::RangeHeaderConfig;
use super::{PageOutcome, PageRequest, PaginateError, Position, Strategy};

#[derive(Clone, Debug)]
pub(super) struct Ranges {
    unit: String,
    page_size: u64,
    /// The total once a `Content-Range` has said.
    total: Option<u64>,
}

impl Ranges {
    pub(super) fn new(c: &RangeHeaderConfig) -> Self {
        Ranges {
            unit: c.unit.clone(),
            page_size: c.page_size,
            total: None,
        }
    }
}

impl Strategy for Ranges {
    fn first(&self) -> Position {
        Position::Range { start: 0 }
    }

    fn request(&self, position: &Position) -> Option<PageRequest> {
        let Position::Range { start } = position else {
            return None;
        };
        let mut req = PageRequest::at(position.clone());
        req.headers.push((
            "Range".into(),
            format!(
                "{}={}-{}; max={}",
                self.unit,
                start,
                start.saturating_add(self.page_size - 1),
                self.page_size
            ),
        ));
        Some(req)
    }

    fn speculate(&self, previous: &Position, step: u64) -> Option<Position> {
        let Position::Range { start } = previous else {
            return None;
        };
        let next = start + step;
        if self.total.is_some_and(|t| next >= t) {
            return None;
        }
        Some(Position::Range { start: next })
    }

    fn next(
        &mut self,
        previous: &Position,
        page: &PageOutcome,
    ) -> Result<Option<Position>, PaginateError> {
        let Position::Range { start } = previous else {
            return Ok(None);
        };
        if page.records == 0 {
            return Ok(None);
        }
        // The total from `Content-Range`; the next start from the records that came, never
        // from the range's end: a server may send fewer than it claims.
        let total = page
            .content_range
            .as_deref()
            .and_then(parse_content_range)
            .and_then(|(_, total)| total);
        self.total = total.or(self.total);
        let next = start.saturating_add(page.records);
        if self.total.is_some_and(|t| next >= t) {
            return Ok(None);
        }
        Ok(Some(Position::Range { start: next }))
    }

    fn total(&self) -> Option<u64> {
        self.total
    }

    fn stated_records(&self) -> Option<u64> {
        self.total
    }

    fn clone_box(&self) -> Box<dyn Strategy> {
        Box::new(self.clone())
    }
}

/// `entities 0-99/1234` (or `entities 0-99/*`) -> (99, Some(1234)).
pub(super) fn parse_content_range(header: &str) -> Option<(u64, Option<u64>)> {
    let (_, rest) = header.trim().split_once(' ')?;
    let (range, total) = rest.split_once('/')?;
    let (_, end) = range.split_once('-')?;
    Some((end.trim().parse().ok()?, total.trim().parse().ok()))
}
