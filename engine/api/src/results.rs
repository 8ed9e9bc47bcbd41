//! Result bodies: the JSON answer of an operation, its NDJSON and CSV forms,
//! and the in-process hot cache of serialized answers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use quarry_core::jobs::ResultFormat;
use quarry_db::OutColumn;
use serde::Serialize;
use serde_json::{Map, Value};

/// A serialized answer kept in memory until `expires`.
#[derive(Clone)]
pub struct HotEntry {
    pub body: Bytes,
    pub expires: Instant,
}

#[derive(Clone)]
pub struct ByBytes;

impl quick_cache::Weighter<String, HotEntry> for ByBytes {
    fn weight(&self, key: &String, val: &HotEntry) -> u64 {
        (key.len() + val.body.len()) as u64
    }
}

/// Recent answers by cache key (the key includes the data version, so entries of
/// older data are simply never asked for again and age out).
pub struct HotCache {
    inner: quick_cache::sync::Cache<String, HotEntry, ByBytes>,
}

impl HotCache {
    /// A cache holding at most `bytes` of answers.
    pub fn new(bytes: u64) -> Self {
        HotCache {
            inner: quick_cache::sync::Cache::with_weighter(4096, bytes.max(1), ByBytes),
        }
    }

    pub fn get(&self, key: &str) -> Option<Bytes> {
        let e = self.inner.get(key)?;
        if e.expires > Instant::now() {
            Some(e.body)
        } else {
            self.inner.remove(key);
            None
        }
    }

    pub fn put(&self, key: String, body: Bytes, ttl: Duration) {
        self.inner.insert(
            key,
            HotEntry {
                body,
                expires: Instant::now() + ttl,
            },
        );
    }
}

fn column_names(body: &Value) -> Vec<String> {
    body.get("columns")
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn rows(body: &Value) -> &[Value] {
    body.get("rows")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The CSV header line, or nothing for NDJSON.
pub(crate) fn header_bytes(format: ResultFormat, columns: &[OutColumn]) -> Vec<u8> {
    match format {
        ResultFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let _ = w.write_record(columns.iter().map(|c| c.name.as_str()));
            w.into_inner().unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// One batch of rows as NDJSON lines or CSV records.
pub(crate) fn rows_bytes(
    format: ResultFormat,
    columns: &[OutColumn],
    rows: &[Vec<Value>],
) -> Vec<u8> {
    match format {
        ResultFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            for r in rows {
                let _ = w.write_record(r.iter().map(|v| match v {
                    Value::Null => std::borrow::Cow::Borrowed(&b""[..]),
                    Value::String(s) => std::borrow::Cow::Borrowed(s.as_bytes()),
                    other => std::borrow::Cow::Owned(other.to_string().into_bytes()),
                }));
            }
            w.into_inner().unwrap_or_default()
        }
        _ => {
            let mut out = Vec::new();
            for r in rows {
                let _ = serde_json::to_writer(&mut out, &RowRef(columns, r));
                out.push(b'\n');
            }
            out
        }
    }
}

/// A row serialized as an object keyed by column name, without copying it.
pub(crate) struct RowRef<'a>(pub &'a [OutColumn], pub &'a [Value]);

impl Serialize for RowRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (c, v) in self.0.iter().zip(self.1) {
            m.serialize_entry(&c.name, v)?;
        }
        m.end()
    }
}

/// One batch of rows as elements of a JSON array: each after a comma unless
/// it is the answer's very first row (`first`).
pub(crate) fn json_rows_bytes(columns: &[OutColumn], rows: &[Vec<Value>], first: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if i > 0 || !first {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, &RowRef(columns, r));
    }
    out
}

/// Serializes an answer body (`{columns, rows, ...}`) as `format`.
pub fn render(body: &Value, format: ResultFormat) -> anyhow::Result<Vec<u8>> {
    match format {
        ResultFormat::Json => Ok(serde_json::to_vec(body)?),
        ResultFormat::Ndjson => {
            let mut out = Vec::new();
            for r in rows(body) {
                serde_json::to_writer(&mut out, r)?;
                out.push(b'\n');
            }
            Ok(out)
        }
        ResultFormat::Csv => {
            let names = column_names(body);
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(&names)?;
            for r in rows(body) {
                let obj = r.as_object().cloned().unwrap_or_else(Map::new);
                w.write_record(names.iter().map(|n| match obj.get(n) {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                }))?;
            }
            Ok(w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)
        }
    }
}

/// The media ranges of an `Accept` header with their q-values (1 when absent),
/// media types lower-cased.
fn media_ranges(accept: &str) -> impl Iterator<Item = (String, f32)> + '_ {
    accept.split(',').map(|range| {
        let mut parts = range.split(';');
        let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .filter_map(|q| q.trim().parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        (mime, q)
    })
}

/// The format an `Accept` header asks for (RFC 9110 12.5.1: the supported
/// media range with the highest q, ties going to the earlier one; `*/*`,
/// `application/*` and no header mean JSON). `Err` carries the header when it
/// accepts none of JSON, NDJSON and CSV.
pub fn negotiate(accept: Option<&str>) -> Result<ResultFormat, String> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(ResultFormat::Json);
    };
    let mut best: Option<(f32, ResultFormat)> = None;
    for (mime, q) in media_ranges(accept) {
        let format = match mime.as_str() {
            "application/json" | "application/*" | "*/*" => ResultFormat::Json,
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
                ResultFormat::Ndjson
            }
            "text/csv" | "text/*" => ResultFormat::Csv,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, format));
        }
    }
    best.map(|(_, f)| f).ok_or_else(|| accept.to_string())
}

/// True when `accept` takes `format` (its media type or a range covering it, q > 0).
pub fn accepts(accept: &str, format: ResultFormat) -> bool {
    media_ranges(accept).any(|(mime, q)| {
        q > 0.0
            && (mime == "*/*"
                || Some(mime.as_str()) == format.content_type().split(';').next()
                || (format != ResultFormat::Csv && mime == "application/*")
                || (format == ResultFormat::Csv && mime == "text/*")
                || (format == ResultFormat::Ndjson
                    && matches!(mime.as_str(), "application/ndjson" | "application/jsonl")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_covers_ranges_and_refuses_q_zero() {
        assert!(accepts("*/*", ResultFormat::Csv));
        assert!(accepts(
            "text/csv;q=0.5, application/json",
            ResultFormat::Csv
        ));
        assert!(!accepts("text/csv;q=0", ResultFormat::Csv));
        assert!(accepts("application/*", ResultFormat::Ndjson));
        assert!(!accepts("application/json", ResultFormat::Csv));
    }
    use serde_json::json;

    #[test]
    fn accept_picks_the_preferred_supported_format() {
        use ResultFormat::*;
        assert_eq!(negotiate(None), Ok(Json));
        assert_eq!(negotiate(Some("*/*")), Ok(Json));
        assert_eq!(negotiate(Some("text/csv")), Ok(Csv));
        assert_eq!(negotiate(Some("application/x-ndjson")), Ok(Ndjson));
        assert_eq!(
            negotiate(Some("application/json;q=0.5, text/csv;q=0.9")),
            Ok(Csv)
        );
        assert_eq!(negotiate(Some("text/html, */*;q=0.1")), Ok(Json));
        assert_eq!(negotiate(Some("text/csv;q=0, application/json")), Ok(Json));
        assert!(negotiate(Some("application/xml")).is_err());
    }

    #[test]
    fn csv_and_ndjson_follow_the_columns() {
        let body = json!({
            "columns": [{"name": "a", "pg_type": "text"}, {"name": "b", "pg_type": "numeric"}],
            "rows": [{"a": "x,y", "b": 1.5}, {"a": null, "b": 2}],
        });
        let csv = String::from_utf8(render(&body, ResultFormat::Csv).expect("csv")).expect("utf8");
        assert_eq!(csv, "a,b\n\"x,y\",1.5\n,2\n");
        let nd = String::from_utf8(render(&body, ResultFormat::Ndjson).expect("nd")).expect("utf8");
        assert_eq!(nd, "{\"a\":\"x,y\",\"b\":1.5}\n{\"a\":null,\"b\":2}\n");
    }

    #[test]
    fn hot_entries_expire() {
        let c = HotCache::new(1 << 20);
        c.put(
            "k".into(),
            Bytes::from_static(b"x"),
            Duration::from_secs(60),
        );
        c.put("gone".into(), Bytes::from_static(b"y"), Duration::ZERO);
        assert_eq!(c.get("k").as_deref(), Some(&b"x"[..]));
        assert!(c.get("gone").is_none());
    }
}
