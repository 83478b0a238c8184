//! The end of a list: a has-more signal is never overruled, totals in every JSON form, keyset
//! and token-only cursors, a count that changes under the run, ragged pages.

use super::tests::offset;
use super::*;

fn ptr(s: &str) -> JsonPointer {
    s.parse().unwrap()
}

fn page(records: u64, values: Values) -> PageOutcome {
    PageOutcome {
        records,
        values,
        ..PageOutcome::default()
    }
}

fn more(flag: bool) -> Values {
    Values {
        has_more: Some(flag.into()),
        ..Values::default()
    }
}

fn cursor(end: ListEnd, has_more: Option<&str>) -> Paginator {
    PaginationConfig::Cursor(CursorConfig {
        cursor_param: "pageToken".into(),
        cursor_pointer: ptr("/nextPageToken"),
        limit_param: None,
        page_size: 100,
        params_in: ParamsIn::Query,
        has_more_pointer: has_more.map(ptr),
        last_page_pointer: None,
        end,
    })
    .build()
}

fn token(t: Option<&str>) -> Values {
    Values {
        next: t.map(Into::into),
        ..Values::default()
    }
}

fn follows(p: &mut Paginator, at: &PageRequest, out: &PageOutcome) -> PageRequest {
    match p.next(at, out).unwrap() {
        Next::Continue(n) => n,
        Next::Done => panic!("the list ended at {}", at.position),
    }
}

#[test]
fn a_token_alone_says_more_pages_follow_through_short_and_empty_pages() {
    let mut p = cursor(ListEnd::NextAbsent, None);
    let first = p.first();
    let second = follows(&mut p, &first, &page(100, token(Some("a"))));
    // Short, then empty: both go on while a token comes.
    let third = follows(&mut p, &second, &page(37, token(Some("b"))));
    let fourth = follows(&mut p, &third, &page(0, token(Some("c"))));
    assert_eq!(fourth.query, [("pageToken".to_string(), "c".to_string())]);
    // Only the token's absence ends it (absent, null, empty).
    for end in [None, Some(serde_json::Value::Null), Some("".into())] {
        let mut q = p.clone();
        let values = Values {
            next: end,
            ..Values::default()
        };
        assert_eq!(q.next(&fourth, &page(0, values)).unwrap(), Next::Done);
    }
    // A token seen before is a loop.
    let e = p.next(&fourth, &page(5, token(Some("a")))).unwrap_err();
    assert!(e.0.contains("`a` as the next page a second time"), "{e}");
}

#[test]
fn an_api_that_sends_a_cursor_with_its_last_page_can_say_so() {
    let mut p = cursor(ListEnd::EmptyPage, None);
    let first = p.first();
    let second = follows(&mut p, &first, &page(10, token(Some("a"))));
    assert_eq!(
        p.next(&second, &page(0, token(Some("b")))).unwrap(),
        Next::Done
    );
    // Unless a has-more flag says more follow.
    let mut p = cursor(ListEnd::EmptyPage, Some("/more"));
    let first = p.first();
    let values = Values {
        next: Some("a".into()),
        has_more: Some(true.into()),
        ..Values::default()
    };
    follows(&mut p, &first, &page(0, values));
}

#[test]
fn a_has_more_flag_that_says_true_with_no_next_request_fails_every_strategy() {
    // A cursor.
    let mut p = cursor(ListEnd::NextAbsent, Some("/has_more"));
    let first = p.first();
    let e = p.next(&first, &page(10, more(true))).unwrap_err().0;
    assert!(
        e.contains("`/has_more` says more pages follow")
            && e.contains("no cursor at `/nextPageToken`"),
        "{e}"
    );
    // A next URL in the body, and in a `Link` header (no flag there: nothing to overrule).
    let mut p = PaginationConfig::NextUrl(NextUrlConfig {
        next_pointer: ptr("/next"),
        has_more_pointer: Some(ptr("/more")),
        last_page_pointer: None,
        end: ListEnd::NextAbsent,
    })
    .build();
    let first = p.first();
    let e = p.next(&first, &page(10, more(true))).unwrap_err().0;
    assert!(e.contains("no next URL at `/next`"), "{e}");
    // Offset: an empty page that says more would ask for itself again.
    let mut p = PaginationConfig::Offset(OffsetConfig {
        offset_param: "skip".into(),
        limit_param: "limit".into(),
        page_size: 10,
        start_offset: 0,
        params_in: ParamsIn::Query,
        total_pointer: Some(ptr("/total")),
        has_more_pointer: Some(ptr("/more")),
        last_page_pointer: None,
        total_upper_bound: None,
    })
    .build();
    let first = p.first();
    let e = p.next(&first, &page(0, more(true))).unwrap_err().0;
    assert!(e.contains("the page at offset 0 is empty"), "{e}");
    // ... and a total reached does not overrule it.
    let values = Values {
        total: Some(10.into()),
        has_more: Some(true.into()),
        ..Values::default()
    };
    let second = follows(&mut p, &first, &page(10, values));
    assert_eq!(second.position, Position::Offset { offset: 10 });
    // Page numbers: an empty page and a page count reached do not overrule it either.
    let mut p = PaginationConfig::Page(PageConfig {
        page_param: "page".into(),
        size_param: "per_page".into(),
        page_size: 10,
        first_page: 1,
        params_in: ParamsIn::Query,
        total_pointer: None,
        total_pages_pointer: Some(ptr("/pages")),
        has_more_pointer: Some(ptr("/more")),
        last_page_pointer: None,
        total_upper_bound: None,
    })
    .build();
    let first = p.first();
    let values = Values {
        total_pages: Some(1.into()),
        has_more: Some(true.into()),
        ..Values::default()
    };
    let second = follows(&mut p, &first, &page(10, values));
    let third = follows(&mut p, &second, &page(0, more(true)));
    assert_eq!(third.position, Position::Page { page: 3 });
    assert_eq!(p.next(&third, &page(0, more(false))).unwrap(), Next::Done);
}

fn keyset(record: KeyRecord, has_more: Option<&str>) -> Paginator {
    PaginationConfig::Keyset(KeysetConfig {
        key_param: "starting_after".into(),
        key_pointer: ptr("/id"),
        key_record: record,
        limit_param: Some("limit".into()),
        page_size: 100,
        params_in: ParamsIn::Query,
        first_key: None,
        has_more_pointer: has_more.map(ptr),
        last_page_pointer: None,
    })
    .build()
}

fn keyed(key: serde_json::Value, has_more: Option<bool>) -> Values {
    Values {
        record_key: Some(key),
        has_more: has_more.map(Into::into),
        ..Values::default()
    }
}

#[test]
fn keyset_pages_send_the_last_records_key_until_the_flag_or_an_empty_page_ends() {
    let mut p = keyset(KeyRecord::Last, Some("/has_more"));
    assert_eq!(p.pointers().record_key, Some(RecordField::Last(ptr("/id"))));
    let first = p.first();
    assert_eq!(first.query, [("limit".to_string(), "100".to_string())]);
    // A short page with `has_more: true` goes on (the server capped it).
    let second = follows(
        &mut p,
        &first,
        &page(40, keyed("cus_40".into(), Some(true))),
    );
    assert_eq!(
        second.query,
        [
            ("starting_after".to_string(), "cus_40".to_string()),
            ("limit".to_string(), "100".to_string())
        ]
    );
    assert_eq!(
        p.next(&second, &page(7, keyed("cus_47".into(), Some(false))))
            .unwrap(),
        Next::Done
    );
    // An empty page that says more: no record to continue after.
    let e = p.next(&second, &page(0, more(true))).unwrap_err().0;
    assert!(e.contains("there is no record to continue after"), "{e}");
    // A record without the key, while the list goes on.
    let e = p.next(&second, &page(3, more(true))).unwrap_err().0;
    assert!(e.contains("last record has no key at `/id`"), "{e}");

    // No flag: only an empty page ends it; numbers stay numbers in a body.
    let mut p = PaginationConfig::Keyset(KeysetConfig {
        key_param: "after".into(),
        key_pointer: ptr("/seq"),
        key_record: KeyRecord::First,
        limit_param: None,
        page_size: 100,
        params_in: ParamsIn::Body,
        first_key: None,
        has_more_pointer: None,
        last_page_pointer: None,
    })
    .build();
    let first = p.first();
    let second = follows(&mut p, &first, &page(3, keyed(17.into(), None)));
    assert_eq!(second.body, [("after".to_string(), 17.into())]);
    let third = follows(&mut p, &second, &page(1, keyed(9.into(), None)));
    assert_eq!(
        p.next(&third, &page(0, Values::default())).unwrap(),
        Next::Done
    );
    // The same key twice is a loop.
    let e = p
        .next(&third, &page(2, keyed(17.into(), None)))
        .unwrap_err();
    assert!(e.0.contains("a second time"), "{e}");
    // Positions are kept in checkpoints: they round-trip.
    let json = serde_json::to_string(&third.position).unwrap();
    assert_eq!(
        serde_json::from_str::<Position>(&json).unwrap(),
        third.position
    );
    assert!(p.resume(&third.position).is_ok());
    assert!(
        keyset(KeyRecord::Last, None)
            .resume(&Position::Cursor { cursor: None })
            .is_err()
    );
}

#[test]
fn totals_in_every_json_form_of_a_whole_number_are_read_and_others_refused() {
    for (total, want) in [
        (serde_json::json!(30), 30),
        (serde_json::json!(30.0), 30),
        (
            serde_json::from_str::<serde_json::Value>("3e1").unwrap(),
            30,
        ),
        (serde_json::json!("30"), 30),
        (serde_json::json!(" 30.0 "), 30),
        (serde_json::json!("3E1"), 30),
    ] {
        assert_eq!(as_count(Some(&total), "total"), Ok(Some(want)), "{total}");
    }
    assert_eq!(as_count(None, "total"), Ok(None));
    assert_eq!(as_count(Some(&serde_json::Value::Null), "total"), Ok(None));
    for bad in [
        serde_json::json!(30.5),
        serde_json::json!(-3),
        serde_json::json!("thirty"),
        serde_json::json!(true),
        serde_json::json!(1e300),
    ] {
        let e = as_count(Some(&bad), "total at `/total`").unwrap_err();
        assert!(e.0.contains("not a whole number of records"), "{e}");
    }
    // Read, the total stops the pages and is the run's stated count.
    let mut p = PaginationConfig::Offset(OffsetConfig {
        offset_param: "skip".into(),
        limit_param: "limit".into(),
        page_size: 25,
        start_offset: 0,
        params_in: ParamsIn::Query,
        total_pointer: Some(ptr("/total")),
        has_more_pointer: None,
        last_page_pointer: None,
        total_upper_bound: None,
    })
    .build();
    let first = p.first();
    let values = Values {
        total: Some(serde_json::from_str("3e1").unwrap()),
        ..Values::default()
    };
    let second = follows(&mut p, &first, &page(25, values.clone()));
    assert_eq!(p.stated_records(), Some(30));
    assert_eq!(p.next(&second, &page(5, values)).unwrap(), Next::Done);
}

#[test]
fn a_count_that_changes_while_the_pages_are_read_is_seen() {
    let mut p = PaginationConfig::Offset(OffsetConfig {
        offset_param: "skip".into(),
        limit_param: "limit".into(),
        page_size: 10,
        start_offset: 0,
        params_in: ParamsIn::Query,
        total_pointer: Some(ptr("/total")),
        has_more_pointer: None,
        last_page_pointer: None,
        total_upper_bound: None,
    })
    .build();
    let total = |n: u64| Values {
        total: Some(n.into()),
        ..Values::default()
    };
    let first = p.first();
    let second = follows(&mut p, &first, &page(10, total(100)));
    assert_eq!(p.stated_change(), None);
    let third = follows(&mut p, &second, &page(10, total(103)));
    assert_eq!(p.stated_change(), Some((100, 103)));
    assert_eq!(p.stated_records(), Some(100), "checked against the first");
    // Back to the first count: the records may have moved meanwhile, still a change.
    follows(&mut p, &third, &page(10, total(100)));
    assert_eq!(p.stated_change(), Some((100, 103)));
    // A resumed run takes the first count from its checkpoint.
    let mut p = offset(10);
    let mut p2 = PaginationConfig::Offset(OffsetConfig {
        offset_param: "skip".into(),
        limit_param: "limit".into(),
        page_size: 10,
        start_offset: 0,
        params_in: ParamsIn::Query,
        total_pointer: Some(ptr("/total")),
        has_more_pointer: None,
        last_page_pointer: None,
        total_upper_bound: None,
    })
    .build();
    p2.seed_stated(Some(100));
    let at = p2.resume(&Position::Offset { offset: 50 }).unwrap();
    follows(&mut p2, &at, &page(10, total(97)));
    assert_eq!(p2.stated_change(), Some((100, 97)));
    let first = p.first();
    follows(&mut p, &first, &page(10, Values::default()));
    assert_eq!(p.stated_change(), None, "no count, no change");
}

#[test]
fn pages_of_varying_size_stop_speculation_by_records() {
    let mut p = offset(50);
    let mut at = p.first();
    // The server's pages vary below its cap of 50: after the first short page that is not
    // the last, no speculation (each would be wrong, and a wasted request).
    at = follows(&mut p, &at, &page(50, Values::default()));
    assert!(p.speculate(&at).is_some());
    at = follows(&mut p, &at, &page(31, Values::default()));
    at = follows(&mut p, &at, &page(50, Values::default()));
    assert_eq!(p.speculate(&at), None);
    // Pages of the server's size again: after four in a row the odd one was an exception.
    for n in 2..=4 {
        at = follows(&mut p, &at, &page(50, Values::default()));
        assert_eq!(p.speculate(&at).is_some(), n == 4, "after {n} steady pages");
    }
    // Page numbers do not depend on the records a page held: they go on speculating.
    let mut p = PaginationConfig::Page(PageConfig {
        page_param: "page".into(),
        size_param: "per_page".into(),
        page_size: 50,
        first_page: 1,
        params_in: ParamsIn::Query,
        total_pointer: None,
        total_pages_pointer: None,
        has_more_pointer: None,
        last_page_pointer: None,
        total_upper_bound: None,
    })
    .build();
    let mut at = p.first();
    for n in [50, 31, 50] {
        at = follows(&mut p, &at, &page(n, Values::default()));
    }
    assert!(p.speculate(&at).is_some());
}

#[test]
fn a_key_in_the_path_starts_from_the_first_key_and_the_page_size_stays_in_the_query() {
    let mut p = PaginationConfig::Keyset(KeysetConfig {
        key_param: "after".into(),
        key_pointer: ptr("/id"),
        key_record: KeyRecord::Last,
        limit_param: Some("limit".into()),
        page_size: 50,
        params_in: ParamsIn::Path,
        first_key: Some("start".into()),
        has_more_pointer: Some(ptr("/has_more")),
        last_page_pointer: None,
    })
    .build();
    let first = p.first();
    assert_eq!(first.path_key.as_deref(), Some("start"));
    assert_eq!(first.query, [("limit".to_string(), "50".to_string())]);
    let second = follows(&mut p, &first, &page(50, keyed(49.into(), Some(true))));
    assert_eq!(second.path_key.as_deref(), Some("49"));
}

#[test]
fn a_last_page_flag_is_a_has_more_flag_the_other_way_round() {
    // Zendesk's export: the last page says `end_of_stream: true` and still names a next page.
    let mut p = PaginationConfig::NextUrl(NextUrlConfig {
        next_pointer: ptr("/after_url"),
        has_more_pointer: None,
        last_page_pointer: Some(ptr("/end_of_stream")),
        end: ListEnd::NextAbsent,
    })
    .build();
    let first = p.first();
    let page_of = |last: bool| {
        page(
            10,
            Values {
                next: Some("https://x.example/next".into()),
                last_page: Some(last.into()),
                ..Values::default()
            },
        )
    };
    let second = follows(&mut p, &first, &page_of(false));
    assert_eq!(p.next(&second, &page_of(true)).unwrap(), Next::Done);
    // `false` with nothing to follow: more was promised.
    let values = Values {
        last_page: Some(false.into()),
        ..Values::default()
    };
    let e = p.next(&second, &page(10, values)).unwrap_err().0;
    assert!(
        e.contains("the last-page flag at `/end_of_stream` says this is not the last page"),
        "{e}"
    );
    // Both flags, disagreeing with each other.
    let mut p = PaginationConfig::Offset(OffsetConfig {
        offset_param: "skip".into(),
        limit_param: "limit".into(),
        page_size: 10,
        start_offset: 0,
        params_in: ParamsIn::Query,
        total_pointer: None,
        has_more_pointer: Some(ptr("/more")),
        last_page_pointer: Some(ptr("/done")),
        total_upper_bound: None,
    })
    .build();
    let first = p.first();
    let values = Values {
        has_more: Some(true.into()),
        last_page: Some(true.into()),
        ..Values::default()
    };
    let e = p.next(&first, &page(10, values)).unwrap_err().0;
    assert!(e.contains("contradicts itself"), "{e}");
    assert_eq!(p.pointers().list().len(), 2);
}
