use super::*;
use crate::paginate::range::parse_content_range;

pub(super) fn offset(page_size: u64) -> Paginator {
    offset_config(page_size).build()
}

fn offset_config(page_size: u64) -> PaginationConfig {
    PaginationConfig::Offset(OffsetConfig {
        offset_param: "skip".into(),
        limit_param: "limit".into(),
        page_size,
        start_offset: 0,
        params_in: ParamsIn::Query,
        total_pointer: None,
        has_more_pointer: None,
        last_page_pointer: None,
        total_upper_bound: None,
    })
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
    let mut config = offset_config(1000);
    if let PaginationConfig::Offset(c) = &mut config {
        c.total_upper_bound = Some(10_500);
    }
    let mut seen = Vec::new();
    for index in 0..4 {
        let mut p = config.build();
        let (start, end) = p.plan_shard(Shard { index, count: 4 }).unwrap();
        p.set_end(end);
        let mut request = p.resume(&start).unwrap();
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
    let first = p.first();
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
        last_page_pointer: None,
        total_upper_bound: None,
    })
    .build();
    let first = p.first();
    let page = |more: bool| PageOutcome {
        records: 10,
        values: Values {
            has_more: Some(more.into()),
            ..Values::default()
        },
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
        last_page_pointer: None,
        total_upper_bound: None,
    })
    .build();
    let first = p.first();
    assert_eq!(
        first.body,
        [("p".to_string(), 0.into()), ("n".to_string(), 10.into())]
    );
    let pages = |n: u64| PageOutcome {
        records: 10,
        values: Values {
            total_pages: Some(n.into()),
            ..Values::default()
        },
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
        last_page_pointer: None,
        total_upper_bound: None,
    })
    .build();
    let first = p.first();
    let out = PageOutcome {
        records: 10,
        values: Values {
            total: Some(15.into()),
            ..Values::default()
        },
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
        last_page_pointer: None,
        end: ListEnd::NextAbsent,
    })
    .build();
    let first = p.first();
    let out = PageOutcome {
        records: 5,
        values: Values {
            next: Some("abc".into()),
            ..Values::default()
        },
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
            .contains("`abc` as the next page a second time")
    );
}

#[test]
fn a_position_of_another_strategy_is_refused() {
    let p = offset(100);
    assert!(p.resume(&Position::Offset { offset: 300 }).is_ok());
    let e = p
        .resume(&Position::Cursor {
            cursor: Some("abc".into()),
        })
        .unwrap_err();
    assert!(e.0.contains("not one of this pagination's"), "{e}");
    assert_eq!(
        p.fingerprint(),
        offset(50).fingerprint(),
        "an offset counts records whatever the page size"
    );
    let page = |size| {
        PaginationConfig::Page(PageConfig {
            page_param: "page".into(),
            size_param: "per_page".into(),
            page_size: size,
            first_page: 1,
            params_in: ParamsIn::Query,
            total_pointer: None,
            total_pages_pointer: None,
            has_more_pointer: None,
            last_page_pointer: None,
            total_upper_bound: None,
        })
        .build()
    };
    assert_ne!(
        page(50).fingerprint(),
        page(100).fingerprint(),
        "a page number means other records under another page size"
    );
}

#[test]
fn link_headers_with_commas_and_several_lines() {
    let base = Url::parse("https://api.example.com/v1/items?page=1").unwrap();
    // Two header lines joined, commas in URLs and in a quoted title, `next` not first.
    let h = r#"</v1/items?page=1&fields=id,name>; rel="first", </v1/items?page=1&fields=id,name>; title="a, b; c"; rel="self", </v1/items?page=2&fields=id,name>; rel="next""#;
    assert_eq!(
        link_next(h, &base).unwrap().as_str(),
        "https://api.example.com/v1/items?page=2&fields=id,name"
    );
    assert!(link_next(r#"</x?a=1,2>; rel="prev""#, &base).is_none());
    assert!(link_next("", &base).is_none());
}

#[test]
fn has_more_flags_as_apis_write_them() {
    let flag = |v: serde_json::Value| as_flag(Some(&v));
    for yes in [
        serde_json::json!(true),
        serde_json::json!(1),
        serde_json::json!("1"),
        serde_json::json!("yes"),
        serde_json::json!("True"),
    ] {
        assert_eq!(flag(yes.clone()), Ok(Some(true)), "{yes}");
    }
    for no in [
        serde_json::json!(false),
        serde_json::json!(0),
        serde_json::json!("0"),
        serde_json::json!("no"),
    ] {
        assert_eq!(flag(no.clone()), Ok(Some(false)), "{no}");
    }
    // Absent or null: the answer did not say, and other signals decide.
    assert_eq!(as_flag(None), Ok(None));
    assert_eq!(flag(serde_json::Value::Null), Ok(None));
    assert!(flag(serde_json::json!("maybe")).is_err());
}

#[test]
fn page_counts_follow_the_servers_page_size() {
    // 100 records, 50 asked per page, the server sends 10: ten pages, not two.
    let mut p = PaginationConfig::Page(PageConfig {
        page_param: "page".into(),
        size_param: "per_page".into(),
        page_size: 50,
        first_page: 1,
        params_in: ParamsIn::Query,
        total_pointer: Some("/total".parse().unwrap()),
        total_pages_pointer: None,
        has_more_pointer: None,
        last_page_pointer: None,
        total_upper_bound: None,
    })
    .build();
    let page = PageOutcome {
        records: 10,
        values: Values {
            total: Some(100.into()),
            ..Values::default()
        },
        ..PageOutcome::default()
    };
    let mut request = p.first();
    let mut pages = 1;
    while let Next::Continue(next) = p.next(&request, &page).unwrap() {
        request = next;
        pages += 1;
    }
    assert_eq!(pages, 10);
    assert_eq!(p.stated_records(), Some(100));
}

#[test]
fn ranges_advance_by_what_came_not_by_what_was_claimed() {
    let mut p = PaginationConfig::RangeHeader(RangeHeaderConfig {
        unit: "entities".into(),
        page_size: 50,
    })
    .build();
    let first = p.first();
    let page = |range: &str| PageOutcome {
        records: 10,
        content_range: Some(range.into()),
        ..PageOutcome::default()
    };
    let Next::Continue(second) = p.next(&first, &page("entities 0-49/25")).unwrap() else {
        panic!()
    };
    assert_eq!(second.position, Position::Range { start: 10 });
    let Next::Continue(third) = p
        .next(&second, &page("entities 10-18446744073709551615/25"))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(third.position, Position::Range { start: 20 });
    assert_eq!(
        p.next(&third, &page("entities 20-29/25")).unwrap(),
        Next::Done
    );
}
