//! The sandbox's records: generated from their index, so any test can regenerate record `i`
//! and compare it with what apisnap wrote.
//!
//! The values are chosen to break naive writers: accents, CJK, emoji, commas, quotes and
//! newlines in strings; nulls in a float column and inside a nested object; empty lists.

use serde::Serialize;

/// One record of the standard data set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Record {
    pub id: i64,
    pub name: String,
    pub amount: Option<f64>,
    pub quantity: i64,
    pub active: bool,
    pub created_at: String,
    pub tags: Vec<String>,
    pub address: Address,
}

/// A nested object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Address {
    pub city: String,
    pub zip: Option<String>,
}

/// Column names in the order the API sends them.
pub const COLUMNS: [&str; 8] = [
    "id",
    "name",
    "amount",
    "quantity",
    "active",
    "created_at",
    "tags",
    "address",
];

const NAMES: [&str; 12] = [
    "Zoë Ångström",
    "東京タワー",
    "rocket 🚀 launch ✨",
    "comma, separated, value",
    "say \"hello\" and 'bye'",
    "two\nlines",
    "tab\tseparated",
    "plain ascii",
    "Ünïcødé ñandú",
    "back\\slash",
    "semi;colon",
    "  padded  ",
];

const CITIES: [&str; 5] = ["Málaga", "Zürich", "São Paulo", "Kraków", "Reykjavík"];
const TAGS: [&str; 6] = ["new", "vip", "éte", "北京", "a,b", "q\"uote"];

/// Seconds since the epoch of 2026-01-01T00:00:00Z.
const BASE_TIME: i64 = 1_767_225_600;

/// Record `i` of the standard data set.
pub fn record(i: u64) -> Record {
    let n = i as usize;
    let ts = chrono::DateTime::from_timestamp(BASE_TIME + i as i64 * 37, 0).expect("in range");
    Record {
        id: i as i64,
        name: format!("{} #{i}", NAMES[n % NAMES.len()]),
        // Cents divided once: the nearest double to a two-decimal amount, which prints as
        // one (`-2024.86`, not `-2024.8600000000001`), as a money API sends it.
        amount: (i % 7 != 3).then(|| (((i * 7919) % 1_000_000) as i64 - 250_000) as f64 / 100.0),
        quantity: i as i64 * 3 - 1000,
        active: i.is_multiple_of(3),
        created_at: ts.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        tags: (0..n % 4)
            .map(|k| TAGS[(n + k) % TAGS.len()].to_string())
            .collect(),
        address: Address {
            city: CITIES[n % CITIES.len()].to_string(),
            zip: (!i.is_multiple_of(11)).then(|| format!("{:05}", (i * 13) % 100_000)),
        },
    }
}

/// The index of the first record created after `unix_secs`.
pub fn first_created_after(unix_secs: i64) -> u64 {
    if unix_secs < BASE_TIME {
        0
    } else {
        ((unix_secs - BASE_TIME) / 37 + 1) as u64
    }
}

/// Appends record `i` as JSON.
pub fn write_record(i: u64, out: &mut Vec<u8>) {
    serde_json::to_writer(out, &record(i)).expect("records serialize");
}

/// Records `0..n` rendered once, for benchmarks: a page is then one copy out of this text,
/// so that what a benchmark measures is apisnap, not the sandbox's JSON writer.
pub struct Rendered {
    /// The records, each followed by a comma.
    text: Vec<u8>,
    /// Where each record starts in `text`, and the end as the last entry.
    starts: Vec<usize>,
}

impl Rendered {
    /// Renders records `0..n` on all cores.
    pub fn new(n: u64) -> Rendered {
        let threads = std::thread::available_parallelism().map_or(1, |p| p.get()) as u64;
        let chunk = n.div_ceil(threads).max(1);
        let pieces: Vec<(Vec<u8>, Vec<usize>)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..n)
                .step_by(chunk as usize)
                .map(|from| {
                    scope.spawn(move || {
                        let (mut text, mut starts) = (Vec::new(), Vec::new());
                        for i in from..(from + chunk).min(n) {
                            starts.push(text.len());
                            write_record(i, &mut text);
                            text.push(b',');
                        }
                        (text, starts)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("rendering does not panic"))
                .collect()
        });
        let mut rendered = Rendered {
            text: Vec::with_capacity(pieces.iter().map(|(t, _)| t.len()).sum()),
            starts: Vec::with_capacity(n as usize + 1),
        };
        for (text, starts) in pieces {
            let base = rendered.text.len();
            rendered.starts.extend(starts.iter().map(|s| s + base));
            rendered.text.extend_from_slice(&text);
        }
        rendered.starts.push(rendered.text.len());
        rendered
    }

    /// Records rendered.
    pub fn len(&self) -> u64 {
        self.starts.len() as u64 - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records `start..end`, comma-separated (without the brackets).
    pub fn records(&self, start: u64, end: u64) -> &[u8] {
        if start >= end {
            return &[];
        }
        &self.text[self.starts[start as usize]..self.starts[end as usize] - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varied() {
        assert_eq!(record(5), record(5));
        assert_eq!(record(3).amount, None);
        assert_eq!(record(0).address.zip, None);
        let mut out = Vec::new();
        write_record(7, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], 7);
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, COLUMNS);
    }

    #[test]
    fn rendered_pages_equal_fresh_ones() {
        let rendered = Rendered::new(25);
        assert_eq!(rendered.len(), 25);
        let mut fresh = Vec::new();
        for i in 3..9 {
            if i > 3 {
                fresh.push(b',');
            }
            write_record(i, &mut fresh);
        }
        assert_eq!(rendered.records(3, 9), fresh.as_slice());
        assert_eq!(rendered.records(9, 9), b"");
        assert_eq!(Rendered::new(0).len(), 0);
    }
}
