//! Streaming the records of an export file without holding the file in memory.
//!
//! Two layouts are understood (see [`RecordFormat`]):
//!
//! * one JSON document whose records are an array reached through a path of object
//!   keys, e.g. Salesforce `{"totalSize":2,"done":true,"records":[...]}` (path
//!   `["records"]`) or SAP OData `{"d":{"results":[...]}}` (path `["d","results"]`);
//! * NDJSON, one JSON value per line.
//!
//! In both cases exactly one record is materialised as a [`serde_json::Value`] at a
//! time; it is handed to the caller's callback and dropped. Everything in a JSON
//! document that is not on the path is skipped without being built.
//!
//! ```
//! use quarry_core::stream::{stream_records, RecordFormat, StreamItem};
//! let file = r#"{"totalSize":2,"done":true,"records":[{"Id":"A"},{"Id":"B"}]}"#;
//! let format = RecordFormat::JsonDocument { records_path: vec!["records".into()] };
//! let mut ids = Vec::new();
//! let summary = stream_records(file.as_bytes(), &format, &mut |item| {
//!     if let StreamItem::Record { value, .. } = item {
//!         ids.push(value["Id"].as_str().unwrap_or_default().to_string());
//!     }
//!     Ok(())
//! })
//! .unwrap();
//! assert_eq!(summary.records, 2);
//! assert_eq!(ids, ["A", "B"]);
//! ```

use std::fmt;
use std::io::{self, BufRead, BufReader, Cursor, Read};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Capacity of the read buffer put in front of the caller's reader.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// The UTF-8 byte order mark, ignored at the start of a file.
const UTF8_BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// How an empty `records_path` (the document itself is the array) is shown in errors.
const TOP_LEVEL_LABEL: &str = "(top level)";

/// The layout of an export file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordFormat {
    /// One JSON document; the records are the array at this path of object keys.
    ///
    /// An empty path means the document itself is the array. If a key on the path
    /// occurs more than once in the same object, the first occurrence is used and
    /// later ones are skipped.
    JsonDocument {
        /// Object keys leading from the top-level object to the record array.
        records_path: Vec<String>,
    },
    /// One JSON value per line.
    ///
    /// Lines end with `\n` or `\r\n`; a last line without a line break counts, and
    /// lines holding only whitespace are skipped.
    Ndjson {
        /// Longest accepted line in bytes, not counting its line break. A longer line
        /// is reported as a [`StreamItem::BadRecord`] and is never buffered whole.
        max_line_bytes: usize,
    },
}

/// One item handed to the callback of [`stream_records`].
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// A record parsed as JSON. `position` is its 0-based index in the array (JSON document)
    /// or its 1-based line number (NDJSON).
    Record {
        /// 0-based array index (JSON document) or 1-based line number (NDJSON).
        position: u64,
        /// The record.
        value: Value,
    },
    /// NDJSON only: a line that is not JSON (or too long). `raw` is the line text (lossy UTF-8, cut to max_line_bytes).
    BadRecord {
        /// 1-based line number.
        position: u64,
        /// The line text, lossy UTF-8, without its line break, cut to `max_line_bytes`.
        raw: String,
        /// Why the line was rejected.
        error: String,
    },
}

/// Why streaming a file failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The document is not valid JSON (truncated, malformed). line/column 1-based as serde_json reports.
    #[error("the file is not valid JSON at line {line}, column {column}: {message}")]
    Parse {
        /// What is wrong, without the position.
        message: String,
        /// 1-based line of the problem (0 if unknown).
        line: usize,
        /// 1-based column of the problem (0 if unknown).
        column: usize,
    },
    /// A key on the records path is missing, or a value on the way is not an object.
    #[error("the file has no record array at `{path}`")]
    PathNotFound {
        /// The records path joined with `.`.
        path: String,
    },
    /// The value at the records path exists but is not an array.
    #[error("`{path}` is not an array")]
    NotAnArray {
        /// The records path joined with `.` (`(top level)` for an empty path).
        path: String,
    },
    /// The reader failed.
    #[error("reading the file failed: {0}")]
    Io(#[from] std::io::Error),
    /// The callback asked to stop; its message is passed through.
    #[error("{0}")]
    Stopped(String),
}

/// Counts of what [`stream_records`] handed to its callback.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamSummary {
    /// Number of [`StreamItem::Record`] items.
    pub records: u64,
    /// Number of [`StreamItem::BadRecord`] items (NDJSON only).
    pub bad_records: u64,
}

/// Calls `on_item` for every record in order. The callback may return Err(message) to stop (-> StreamError::Stopped).
///
/// The reader is buffered internally (64 KiB); pass it unbuffered. A UTF-8 byte order
/// mark at the start is ignored. For a JSON document the whole document is checked,
/// including what follows the record array, so a truncated or malformed file gives
/// [`StreamError::Parse`] — possibly after some records were already handed over;
/// the caller is expected to discard them.
pub fn stream_records<R: std::io::Read>(
    reader: R,
    format: &RecordFormat,
    on_item: &mut dyn FnMut(StreamItem) -> Result<(), String>,
) -> Result<StreamSummary, StreamError> {
    let reader = skip_bom(reader)?;
    match format {
        RecordFormat::JsonDocument { records_path } => {
            stream_document(reader, records_path, on_item)
        }
        RecordFormat::Ndjson { max_line_bytes } => stream_ndjson(reader, *max_line_bytes, on_item),
    }
}

/// Buffers `reader`, dropping a leading UTF-8 byte order mark.
fn skip_bom<R: Read>(mut reader: R) -> io::Result<BufReader<io::Chain<Cursor<Vec<u8>>, R>>> {
    let mut head = [0u8; 3];
    let mut filled = 0;
    while filled < head.len() {
        match reader.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let prefix = if head[..filled] == UTF8_BOM {
        Vec::new()
    } else {
        head[..filled].to_vec()
    };
    Ok(BufReader::with_capacity(
        READ_BUFFER_BYTES,
        Cursor::new(prefix).chain(reader),
    ))
}

/// Joins a records path for messages.
fn display_path(path: &[String]) -> String {
    if path.is_empty() {
        TOP_LEVEL_LABEL.to_string()
    } else {
        path.join(".")
    }
}

/// Splits a serde_json error into its message (without the ` at line L column C`
/// suffix serde_json appends) and its position.
fn split_json_error(err: &serde_json::Error) -> (String, usize, usize) {
    let (line, column) = (err.line(), err.column());
    let text = err.to_string();
    let suffix = format!(" at line {line} column {column}");
    let message = match text.strip_suffix(&suffix) {
        Some(m) => m.to_string(),
        None => text,
    };
    (message, line, column)
}

/// Converts a serde_json error raised while reading a document.
fn document_error(err: serde_json::Error) -> StreamError {
    if err.is_io() {
        return StreamError::Io(err.into());
    }
    let (message, line, column) = split_json_error(&err);
    StreamError::Parse {
        message,
        line,
        column,
    }
}

// ---------------------------------------------------------------------------
// JSON document
// ---------------------------------------------------------------------------

/// Mutable state shared by the visitors walking a document.
struct WalkState<'f> {
    on_item: &'f mut dyn FnMut(StreamItem) -> Result<(), String>,
    records: u64,
    /// Set when a visitor aborts for a reason that is not a JSON syntax error; it
    /// takes precedence over the (placeholder) serde error that carried the abort out.
    failure: Option<StreamError>,
}

fn stream_document<R: Read>(
    reader: R,
    records_path: &[String],
    on_item: &mut dyn FnMut(StreamItem) -> Result<(), String>,
) -> Result<StreamSummary, StreamError> {
    let mut state = WalkState {
        on_item,
        records: 0,
        failure: None,
    };
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let walked = PathNode {
        path: records_path,
        depth: 0,
        state: &mut state,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end());
    if let Some(failure) = state.failure.take() {
        return Err(failure);
    }
    walked.map_err(document_error)?;
    Ok(StreamSummary {
        records: state.records,
        bad_records: 0,
    })
}

/// The value at `path[..depth]`: an object to descend into, or (at the end of the
/// path) the record array.
struct PathNode<'p, 's, 'f> {
    path: &'p [String],
    depth: usize,
    state: &'s mut WalkState<'f>,
}

impl PathNode<'_, '_, '_> {
    fn at_array(&self) -> bool {
        self.depth == self.path.len()
    }

    /// Rejects a value of the wrong kind (`found` names it, e.g. "a string").
    fn wrong_kind<E: de::Error>(self, found: &str) -> Result<(), E> {
        let path = display_path(self.path);
        if self.at_array() {
            self.state.failure = Some(StreamError::NotAnArray { path: path.clone() });
            Err(E::custom(format!("`{path}` is not an array")))
        } else if self.depth == 0 {
            // Becomes StreamError::Parse, with the position serde_json attaches.
            Err(E::custom(format!(
                "expected a JSON object at the top level (the records are at `{path}`), found {found}"
            )))
        } else {
            self.state.failure = Some(StreamError::PathNotFound { path: path.clone() });
            Err(E::custom(format!("no record array at `{path}`")))
        }
    }
}

impl<'de> DeserializeSeed<'de> for PathNode<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PathNode<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.at_array() {
            write!(f, "the record array at `{}`", display_path(self.path))
        } else {
            write!(
                f,
                "a JSON object on the way to `{}`",
                display_path(self.path)
            )
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if !self.at_array() {
            return self.wrong_kind("an array");
        }
        let mut position = 0u64;
        while let Some(value) = seq.next_element::<Value>()? {
            if let Err(message) = (self.state.on_item)(StreamItem::Record { position, value }) {
                let carried = de::Error::custom(&message);
                self.state.failure = Some(StreamError::Stopped(message));
                return Err(carried);
            }
            position += 1;
            self.state.records += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.at_array() {
            return self.wrong_kind("an object");
        }
        let wanted = self.path[self.depth].as_str();
        let mut found = false;
        while let Some(is_wanted) = map.next_key_seed(KeyIs(wanted))? {
            if is_wanted && !found {
                found = true;
                map.next_value_seed(PathNode {
                    path: self.path,
                    depth: self.depth + 1,
                    state: &mut *self.state,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if found {
            Ok(())
        } else {
            let path = display_path(self.path);
            self.state.failure = Some(StreamError::PathNotFound { path: path.clone() });
            Err(de::Error::custom(format!("no record array at `{path}`")))
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.wrong_kind("a boolean")
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.wrong_kind("a number")
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.wrong_kind("a number")
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.wrong_kind("a number")
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.wrong_kind("a number")
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.wrong_kind("a number")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.wrong_kind("a string")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.wrong_kind("null")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.wrong_kind("null")
    }
}

/// Reads an object key and tells whether it equals the wanted one, without
/// allocating a `String` per key.
struct KeyIs<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

// ---------------------------------------------------------------------------
// NDJSON
// ---------------------------------------------------------------------------

fn stream_ndjson<B: BufRead>(
    mut reader: B,
    max_line_bytes: usize,
    on_item: &mut dyn FnMut(StreamItem) -> Result<(), String>,
) -> Result<StreamSummary, StreamError> {
    let mut summary = StreamSummary::default();
    let mut line = Vec::new();
    let mut number = 0u64;
    while let Some(too_long) = read_capped_line(&mut reader, &mut line, max_line_bytes)? {
        number += 1;
        let item = if too_long {
            StreamItem::BadRecord {
                position: number,
                raw: String::from_utf8_lossy(&line).into_owned(),
                error: format!("the line is longer than {max_line_bytes} bytes"),
            }
        } else if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        } else {
            match serde_json::from_slice::<Value>(&line) {
                Ok(value) => StreamItem::Record {
                    position: number,
                    value,
                },
                Err(err) => {
                    let (message, _, column) = split_json_error(&err);
                    StreamItem::BadRecord {
                        position: number,
                        raw: String::from_utf8_lossy(&line).into_owned(),
                        error: format!("not valid JSON at column {column}: {message}"),
                    }
                }
            }
        };
        if matches!(item, StreamItem::Record { .. }) {
            summary.records += 1;
        } else {
            summary.bad_records += 1;
        }
        on_item(item).map_err(StreamError::Stopped)?;
    }
    Ok(summary)
}

/// Reads one line into `buf` (cleared first) without its `\n` / `\r\n`, keeping at
/// most `max` bytes of it; the rest of a longer line is read and discarded.
///
/// Returns `None` at the end of the input, otherwise whether the line was longer
/// than `max` bytes (in which case `buf` holds its first `max` bytes).
fn read_capped_line<B: BufRead>(
    reader: &mut B,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<bool>> {
    buf.clear();
    // One byte more than allowed, so that a `\r` right at the limit can be dropped.
    let keep = max.saturating_add(1);
    let mut length = 0usize;
    let mut last = None;
    let mut read_any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            if !read_any {
                return Ok(None);
            }
            break;
        }
        read_any = true;
        let (content, used, line_ended) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        if let Some(&b) = content.last() {
            last = Some(b);
        }
        length = length.saturating_add(content.len());
        let room = keep.saturating_sub(buf.len()).min(content.len());
        buf.extend_from_slice(&content[..room]);
        reader.consume(used);
        if line_ended {
            break;
        }
    }
    let content_length = if last == Some(b'\r') {
        length - 1
    } else {
        length
    };
    buf.truncate(content_length.min(max));
    Ok(Some(content_length > max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::cell::Cell;
    use std::rc::Rc;

    fn doc(path: &[&str]) -> RecordFormat {
        RecordFormat::JsonDocument {
            records_path: path.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn ndjson(max_line_bytes: usize) -> RecordFormat {
        RecordFormat::Ndjson { max_line_bytes }
    }

    /// Streams `input` and collects every item.
    fn collect<R: Read>(
        input: R,
        format: &RecordFormat,
    ) -> (Result<StreamSummary, StreamError>, Vec<StreamItem>) {
        let mut items = Vec::new();
        let result = stream_records(input, format, &mut |item| {
            items.push(item);
            Ok(())
        });
        (result, items)
    }

    fn record(position: u64, value: Value) -> StreamItem {
        StreamItem::Record { position, value }
    }

    /// A reader handing out at most one byte per call.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), out.first_mut()) {
                (Some((&b, rest)), Some(slot)) => {
                    *slot = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    /// A reader that yields some bytes and then fails.
    struct Failing<'a>(&'a [u8]);

    impl Read for Failing<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "disk gone"));
            }
            let n = self.0.len().min(out.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn document_salesforce_records() {
        let input = r#"{"totalSize":2,"done":true,"records":[
            {"attributes":{"type":"Account"},"Id":"001A","Name":"Acme"},
            {"attributes":{"type":"Account"},"Id":"001B","Name":"Globex"}]}"#;
        let (result, items) = collect(input.as_bytes(), &doc(&["records"]));
        assert_eq!(
            result.unwrap(),
            StreamSummary {
                records: 2,
                bad_records: 0
            }
        );
        assert_eq!(
            items,
            vec![
                record(
                    0,
                    json!({"attributes":{"type":"Account"},"Id":"001A","Name":"Acme"})
                ),
                record(
                    1,
                    json!({"attributes":{"type":"Account"},"Id":"001B","Name":"Globex"})
                ),
            ]
        );
    }

    #[test]
    fn document_nested_odata_path() {
        let input =
            r#"{"d":{"__count":"2","results":[{"Customer":"1"},{"Customer":"2"}],"__next":"x"}}"#;
        let (result, items) = collect(input.as_bytes(), &doc(&["d", "results"]));
        assert_eq!(result.unwrap().records, 2);
        assert_eq!(
            items,
            vec![
                record(0, json!({"Customer":"1"})),
                record(1, json!({"Customer":"2"}))
            ]
        );
    }

    #[test]
    fn document_empty_array() {
        let (result, items) = collect(&br#"{"records":[]}"#[..], &doc(&["records"]));
        assert_eq!(result.unwrap(), StreamSummary::default());
        assert!(items.is_empty());
    }

    #[test]
    fn document_empty_path_means_top_level_array() {
        let (result, items) = collect(&b" [1, {\"a\": 2}] \n"[..], &doc(&[]));
        assert_eq!(result.unwrap().records, 2);
        assert_eq!(items, vec![record(0, json!(1)), record(1, json!({"a": 2}))]);

        let (result, _) = collect(&br#"{"a":1}"#[..], &doc(&[]));
        match result {
            Err(StreamError::NotAnArray { path }) => assert_eq!(path, "(top level)"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn document_missing_path() {
        let (result, items) = collect(&br#"{"totalSize":0,"done":true}"#[..], &doc(&["records"]));
        assert!(items.is_empty());
        match result {
            Err(e @ StreamError::PathNotFound { .. }) => {
                assert_eq!(e.to_string(), "the file has no record array at `records`")
            }
            other => panic!("unexpected {other:?}"),
        }

        let (result, _) = collect(&br#"{"d":{"__count":"0"}}"#[..], &doc(&["d", "results"]));
        match result {
            Err(StreamError::PathNotFound { path }) => assert_eq!(path, "d.results"),
            other => panic!("unexpected {other:?}"),
        }

        // A value on the way that is not an object cannot hold the array either.
        let (result, _) = collect(&br#"{"d":[1,2]}"#[..], &doc(&["d", "results"]));
        match result {
            Err(StreamError::PathNotFound { path }) => assert_eq!(path, "d.results"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn document_path_not_an_array() {
        for value in [r#"{"a":1}"#, r#""text""#, "42", "-1", "1.5", "true", "null"] {
            let input = format!(r#"{{"d":{{"results":{value}}}}}"#);
            let (result, items) = collect(input.as_bytes(), &doc(&["d", "results"]));
            assert!(items.is_empty());
            match result {
                Err(e @ StreamError::NotAnArray { .. }) => {
                    assert_eq!(e.to_string(), "`d.results` is not an array", "{value}")
                }
                other => panic!("unexpected {other:?} for {value}"),
            }
        }
    }

    #[test]
    fn document_top_level_not_an_object() {
        for input in ["[1,2]", "\"records\"", "3", "null"] {
            let (result, _) = collect(input.as_bytes(), &doc(&["records"]));
            match result {
                Err(StreamError::Parse { message, line, .. }) => {
                    assert!(message.contains("expected a JSON object"), "{message}");
                    assert_eq!(line, 1);
                }
                other => panic!("unexpected {other:?} for {input}"),
            }
        }
    }

    #[test]
    fn document_truncated_is_parse_error_with_position() {
        let input = "{\"totalSize\": 2, \"done\": true, \"records\": [\n{\"attributes\": {\"type\": \"Account\"}, \"Id\": \"A\", \"Name\": \"Ok\"},\n{\"attributes\": {\"type\": \"Account\"}, \"Id\": \"X\", \"Name\": \"Trunc";
        let (result, items) = collect(input.as_bytes(), &doc(&["records"]));
        // The record before the cut was already delivered; the caller rolls back.
        assert_eq!(items.len(), 1);
        match result {
            Err(
                e @ StreamError::Parse {
                    line: 3, column, ..
                },
            ) => {
                assert_eq!(column, 61, "the last character of the cut line");
                let text = e.to_string();
                assert!(
                    text.starts_with("the file is not valid JSON at line 3, column 61: "),
                    "{text}"
                );
                assert!(text.contains("EOF"), "{text}");
            }
            other => panic!("unexpected {other:?}"),
        }

        // The exact example from the brief.
        let input = r#"{"totalSize": 2, "done": true, "records": [{"attributes": {"type": "Account"}, "Id": "X", "Name": "Trunc"#;
        let (result, items) = collect(input.as_bytes(), &doc(&["records"]));
        assert!(items.is_empty());
        assert!(matches!(
            result,
            Err(StreamError::Parse { line: 1, column, .. }) if column == input.len()
        ));
    }

    #[test]
    fn document_malformed_after_array_is_parse_error() {
        // Truncated after the array.
        let (result, items) = collect(&br#"{"records":[1,2],"done":tr"#[..], &doc(&["records"]));
        assert_eq!(items.len(), 2);
        assert!(
            matches!(result, Err(StreamError::Parse { .. })),
            "{result:?}"
        );

        // Missing closing brace.
        let (result, _) = collect(&br#"{"records":[1,2]"#[..], &doc(&["records"]));
        assert!(
            matches!(result, Err(StreamError::Parse { .. })),
            "{result:?}"
        );

        // Trailing garbage after the document.
        let (result, _) = collect(&b"{\"records\":[1]}\n  x"[..], &doc(&["records"]));
        match result {
            Err(StreamError::Parse {
                message,
                line,
                column,
            }) => {
                assert_eq!((line, column), (2, 3));
                assert_eq!(message, "trailing characters");
            }
            other => panic!("unexpected {other:?}"),
        }

        // Malformed inside a record.
        let (result, items) = collect(&br#"{"records":[{"a":1},{"a":}]}"#[..], &doc(&["records"]));
        assert_eq!(items.len(), 1);
        assert!(matches!(
            result,
            Err(StreamError::Parse {
                line: 1,
                column: 26,
                ..
            })
        ));
    }

    #[test]
    fn document_skips_other_keys_before_and_after() {
        let big: Vec<Value> = (0..2000)
            .map(|i| json!({"i": i, "nested": {"deep": [[[{"x": "y"}]]], "s": "records"}}))
            .collect();
        let input = json!({
            "before": big,
            "records_x": [9, 9, 9],
            "meta": {"records": "not this one", "list": [1, 2, {"records": [7]}]},
            "records": [{"n": 1}, {"n": 2}],
            "after": {"more": big, "escaped \"records\"": "\u{1F600}"},
            "done": true,
        })
        .to_string();
        let (result, items) = collect(input.as_bytes(), &doc(&["records"]));
        assert_eq!(result.unwrap().records, 2);
        assert_eq!(
            items,
            vec![record(0, json!({"n": 1})), record(1, json!({"n": 2}))]
        );
    }

    #[test]
    fn document_duplicate_path_key_uses_first() {
        let (result, items) = collect(
            &br#"{"records":[1],"records":[2,3]}"#[..],
            &doc(&["records"]),
        );
        assert_eq!(result.unwrap().records, 1);
        assert_eq!(items, vec![record(0, json!(1))]);
    }

    #[test]
    fn document_callback_stop() {
        let input = br#"{"records":[{"n":1},{"n":2},{"n":3}],"done":true}"#;
        let mut seen = Vec::new();
        let result = stream_records(&input[..], &doc(&["records"]), &mut |item| {
            if let StreamItem::Record { position, .. } = item {
                seen.push(position);
                if position == 1 {
                    return Err("row 2 rejected by the target".to_string());
                }
            }
            Ok(())
        });
        assert_eq!(seen, vec![0, 1]);
        match result {
            Err(e @ StreamError::Stopped(_)) => {
                assert_eq!(e.to_string(), "row 2 rejected by the target")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn document_bom_is_ignored() {
        let mut input = UTF8_BOM.to_vec();
        input.extend_from_slice(br#"{"records":[{"a":1}]}"#);
        let (result, items) = collect(&input[..], &doc(&["records"]));
        assert_eq!(result.unwrap().records, 1);
        assert_eq!(items, vec![record(0, json!({"a": 1}))]);

        // Also when the reader hands out one byte at a time.
        let (result, _) = collect(Trickle(&input), &doc(&["records"]));
        assert_eq!(result.unwrap().records, 1);
    }

    #[test]
    fn document_unicode_preserved() {
        let input = "{\"records\":[{\"Name\":\"Müller\"},{\"Name\":\"Nguyễn\"},{\"Name\":\"\\u00e9t\\u00e9 \\ud83d\\ude00\"},{\"Straße\":\"東京\"}]}";
        let (result, items) = collect(input.as_bytes(), &doc(&["records"]));
        assert_eq!(result.unwrap().records, 4);
        let names: Vec<Value> = items
            .into_iter()
            .map(|item| match item {
                StreamItem::Record { value, .. } => value,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            names[0]["Name"].as_str().map(str::as_bytes),
            Some("Müller".as_bytes())
        );
        assert_eq!(
            names[1]["Name"].as_str().map(str::as_bytes),
            Some("Nguyễn".as_bytes())
        );
        assert_eq!(names[2]["Name"], json!("été 😀"));
        assert_eq!(names[3]["Straße"], json!("東京"));
    }

    #[test]
    fn document_unicode_path_key() {
        let input = r#"{"Résultats":{"données":[true]}}"#;
        let (result, items) = collect(input.as_bytes(), &doc(&["Résultats", "données"]));
        assert_eq!(result.unwrap().records, 1);
        assert_eq!(items, vec![record(0, json!(true))]);
    }

    #[test]
    fn document_io_error() {
        let (result, items) = collect(Failing(br#"{"records":[1,2,"#), &doc(&["records"]));
        assert_eq!(items.len(), 2);
        match result {
            Err(StreamError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::BrokenPipe),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Produces `{"totalSize":N,"meta":{...},"records":[{...},...],"done":true}`
    /// on the fly, counting the bytes handed out.
    struct GeneratedDocument {
        total: u64,
        next: u64,
        pending: Vec<u8>,
        offset: usize,
        finished: bool,
        produced: Rc<Cell<u64>>,
    }

    impl GeneratedDocument {
        fn new(total: u64, produced: Rc<Cell<u64>>) -> Self {
            let header = format!(
                r#"{{"totalSize":{total},"meta":{{"filler":[{}]}},"records":["#,
                vec!["\"skip me\""; 100].join(",")
            );
            GeneratedDocument {
                total,
                next: 0,
                pending: header.into_bytes(),
                offset: 0,
                finished: false,
                produced,
            }
        }

        fn refill(&mut self) {
            self.pending.clear();
            self.offset = 0;
            if self.next < self.total {
                let comma = if self.next == 0 { "" } else { "," };
                let i = self.next;
                self.pending = format!(
                    r#"{comma}{{"attributes":{{"type":"Account"}},"Id":"001{i:012}","Name":"Müller {i}","Amount":{i}.5}}"#
                )
                .into_bytes();
                self.next += 1;
            } else if !self.finished {
                self.pending = br#"],"done":true}"#.to_vec();
                self.finished = true;
            }
        }
    }

    impl Read for GeneratedDocument {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.offset == self.pending.len() {
                self.refill();
            }
            let n = (self.pending.len() - self.offset).min(out.len());
            out[..n].copy_from_slice(&self.pending[self.offset..self.offset + n]);
            self.offset += n;
            self.produced.set(self.produced.get() + n as u64);
            Ok(n)
        }
    }

    #[test]
    fn document_streams_200k_generated_records() {
        const TOTAL: u64 = 200_000;
        let produced = Rc::new(Cell::new(0u64));
        let reader = GeneratedDocument::new(TOTAL, Rc::clone(&produced));
        let mut expected = 0u64;
        let mut produced_at_first = 0u64;
        let result = stream_records(reader, &doc(&["records"]), &mut |item| match item {
            StreamItem::Record { position, value } => {
                if position != expected {
                    return Err(format!("position {position}, expected {expected}"));
                }
                if position == 0 {
                    produced_at_first = produced.get();
                }
                if value["Amount"].as_f64() != Some(position as f64 + 0.5) {
                    return Err(format!("bad record {value}"));
                }
                expected += 1;
                Ok(())
            }
            other => Err(format!("unexpected {other:?}")),
        });
        assert_eq!(
            result.unwrap(),
            StreamSummary {
                records: TOTAL,
                bad_records: 0
            }
        );
        assert_eq!(expected, TOTAL);
        // The whole input is well over 10 MB; the first record arrived after reading
        // no more than the header and one buffer's worth.
        assert!(produced.get() > 10_000_000, "{}", produced.get());
        assert!(
            produced_at_first <= (READ_BUFFER_BYTES as u64) * 2,
            "{produced_at_first}"
        );
    }

    #[test]
    fn ndjson_records() {
        let input = b"{\"a\":1}\n{\"a\":2}\n[3]\n\"four\"\n";
        let (result, items) = collect(&input[..], &ndjson(1024));
        assert_eq!(
            result.unwrap(),
            StreamSummary {
                records: 4,
                bad_records: 0
            }
        );
        assert_eq!(
            items,
            vec![
                record(1, json!({"a": 1})),
                record(2, json!({"a": 2})),
                record(3, json!([3])),
                record(4, json!("four")),
            ]
        );
    }

    #[test]
    fn ndjson_blank_lines_crlf_and_last_line_without_newline() {
        let input = b"\n{\"a\":1}\r\n   \r\n\t\n{\"a\":2}\r\n\r\n{\"a\":3}";
        let (result, items) = collect(&input[..], &ndjson(1024));
        assert_eq!(result.unwrap().records, 3);
        assert_eq!(
            items,
            vec![
                record(2, json!({"a": 1})),
                record(5, json!({"a": 2})),
                record(7, json!({"a": 3})),
            ]
        );

        let (result, items) = collect(&b""[..], &ndjson(1024));
        assert_eq!(result.unwrap(), StreamSummary::default());
        assert!(items.is_empty());
    }

    #[test]
    fn ndjson_bad_line_in_the_middle() {
        let input = b"{\"a\":1}\n{\"a\": oops}\r\n{\"a\":3}\n{\"a\":4} {\"b\":5}\n";
        let (result, items) = collect(&input[..], &ndjson(1024));
        assert_eq!(
            result.unwrap(),
            StreamSummary {
                records: 2,
                bad_records: 2
            }
        );
        assert_eq!(items.len(), 4);
        assert_eq!(items[0], record(1, json!({"a": 1})));
        match &items[1] {
            StreamItem::BadRecord {
                position,
                raw,
                error,
            } => {
                assert_eq!(*position, 2);
                assert_eq!(raw, "{\"a\": oops}");
                assert!(error.starts_with("not valid JSON at column 7: "), "{error}");
                assert!(!error.contains("line"), "{error}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(items[2], record(3, json!({"a": 3})));
        assert!(
            matches!(&items[3], StreamItem::BadRecord { position: 4, error, .. } if error.contains("trailing characters"))
        );
    }

    #[test]
    fn ndjson_invalid_utf8_line_is_bad_record() {
        let input = b"{\"a\":\"\xff\xfe\"}\n{\"a\":2}\n";
        let (result, items) = collect(&input[..], &ndjson(1024));
        assert_eq!(
            result.unwrap(),
            StreamSummary {
                records: 1,
                bad_records: 1
            }
        );
        assert!(
            matches!(&items[0], StreamItem::BadRecord { position: 1, raw, .. } if raw == "{\"a\":\"\u{FFFD}\u{FFFD}\"}")
        );
        assert_eq!(items[1], record(2, json!({"a": 2})));
    }

    #[test]
    fn ndjson_over_long_line() {
        let long = format!("{{\"a\":\"{}\"}}", "x".repeat(100_000));
        let input = format!("{{\"a\":1}}\n{long}\r\n{{\"a\":3}}\n{long}");
        // One byte at a time, so the cap is exercised across many fill_buf calls.
        for reader in [
            Box::new(input.as_bytes()) as Box<dyn Read>,
            Box::new(Trickle(input.as_bytes())),
        ] {
            let (result, items) = collect(reader, &ndjson(16));
            assert_eq!(
                result.unwrap(),
                StreamSummary {
                    records: 2,
                    bad_records: 2
                }
            );
            assert_eq!(items[0], record(1, json!({"a": 1})));
            assert_eq!(
                items[1],
                StreamItem::BadRecord {
                    position: 2,
                    raw: "{\"a\":\"xxxxxxxxxx".to_string(),
                    error: "the line is longer than 16 bytes".to_string(),
                }
            );
            assert_eq!(items[2], record(3, json!({"a": 3})));
            assert!(matches!(
                &items[3],
                StreamItem::BadRecord { position: 4, raw, .. } if raw.len() == 16
            ));
        }
    }

    #[test]
    fn ndjson_line_exactly_at_limit() {
        // 7 bytes of content; the line break (\n or \r\n) does not count.
        let input = b"{\"a\":1}\r\n{\"a\":2}\n{\"a\":3}\r\n{\"a\":4}\r{\"a\":55}";
        let (result, items) = collect(&input[..], &ndjson(7));
        assert_eq!(
            result.unwrap(),
            StreamSummary {
                records: 3,
                bad_records: 1
            }
        );
        assert_eq!(
            &items[..3],
            &[
                record(1, json!({"a": 1})),
                record(2, json!({"a": 2})),
                record(3, json!({"a": 3})),
            ]
        );
        // A lone \r is not a line break: that line is 16 bytes.
        assert!(matches!(
            &items[3],
            StreamItem::BadRecord { position: 4, raw, .. } if raw == "{\"a\":4}"
        ));
    }

    #[test]
    fn ndjson_callback_stop() {
        let input = b"{\"a\":1}\nnope\n{\"a\":3}\n";
        let mut seen = Vec::new();
        let result = stream_records(&input[..], &ndjson(1024), &mut |item| {
            let bad = matches!(item, StreamItem::BadRecord { .. });
            seen.push(item);
            if bad {
                Err("too many bad records".to_string())
            } else {
                Ok(())
            }
        });
        assert_eq!(seen.len(), 2);
        match result {
            Err(StreamError::Stopped(message)) => assert_eq!(message, "too many bad records"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn ndjson_bom_is_ignored() {
        let mut input = UTF8_BOM.to_vec();
        input.extend_from_slice(b"{\"a\":1}\n{\"a\":2}\n");
        let (result, items) = collect(&input[..], &ndjson(1024));
        assert_eq!(result.unwrap().records, 2);
        assert_eq!(items[0], record(1, json!({"a": 1})));

        let (result, _) = collect(Trickle(&input), &ndjson(1024));
        assert_eq!(result.unwrap().records, 2);

        // A BOM-only file and a file shorter than a BOM.
        let (result, items) = collect(&UTF8_BOM[..], &ndjson(1024));
        assert_eq!(result.unwrap(), StreamSummary::default());
        assert!(items.is_empty());
        let (result, items) = collect(&b"7"[..], &ndjson(1024));
        assert_eq!(result.unwrap().records, 1);
        assert_eq!(items, vec![record(1, json!(7))]);
    }

    #[test]
    fn ndjson_unicode_preserved() {
        let input = "{\"Name\":\"Müller\"}\n{\"Name\":\"Nguyễn\"}\nnicht JSON: Größe\n";
        let (result, items) = collect(input.as_bytes(), &ndjson(1024));
        assert_eq!(
            result.unwrap(),
            StreamSummary {
                records: 2,
                bad_records: 1
            }
        );
        assert_eq!(items[0], record(1, json!({"Name": "Müller"})));
        assert_eq!(items[1], record(2, json!({"Name": "Nguyễn"})));
        assert!(matches!(
            &items[2],
            StreamItem::BadRecord { raw, .. } if raw.as_bytes() == "nicht JSON: Größe".as_bytes()
        ));
    }

    #[test]
    fn ndjson_io_error() {
        let (result, items) = collect(Failing(b"{\"a\":1}\n{\"a\":"), &ndjson(1024));
        assert_eq!(items, vec![record(1, json!({"a": 1}))]);
        match result {
            Err(StreamError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::BrokenPipe),
            other => panic!("unexpected {other:?}"),
        }
    }
}
