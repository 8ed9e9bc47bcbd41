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
//! use quarry_core::ingest::stream::{stream_records, RecordFormat, StreamItem};
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
use serde_json::{Map, Value};

/// Capacity of the read buffer put in front of the caller's reader.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Largest record of a JSON document, in bytes of the file (what a record may
/// hold whole in memory, as an NDJSON line may): past it the file fails with a
/// clear message instead of memory growing with the input.
pub const MAX_RECORD_BYTES: u64 = 16 << 20;

/// Counts the bytes the JSON parser consumes and refuses to read on once more
/// than `limit` were consumed since `mark` (the start of the current record).
struct Capped<R> {
    inner: R,
    consumed: std::rc::Rc<std::cell::Cell<u64>>,
    mark: std::rc::Rc<std::cell::Cell<u64>>,
    over: std::rc::Rc<std::cell::Cell<bool>>,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let consumed = self.consumed.get() + n as u64;
        self.consumed.set(consumed);
        if consumed - self.mark.get() > self.limit {
            self.over.set(true);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "record over the size limit",
            ));
        }
        Ok(n)
    }
}

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
    /// lines holding only whitespace are skipped. A last line that is not JSON and
    /// has no line break is a truncated file: the whole file fails.
    Ndjson {
        /// Longest accepted line in bytes, not counting its line break. A longer line
        /// is reported as a [`StreamItem::BadRecord`] and is never buffered whole.
        max_line_bytes: usize,
    },
    /// Whichever of these layouts the content shows (see [`Layouts`]).
    Detect(Layouts),
}

/// The layouts one source accepts; [`stream_records`] tells them apart by content:
/// a file that does not start with `{` or `[` is CSV; a first line that is a whole
/// JSON value followed by another value is NDJSON; anything else is one JSON
/// document, whose records are found by the first of `document` that matches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layouts {
    /// Where records sit in a JSON document, tried together in one pass; empty when
    /// JSON documents are not accepted.
    pub document: Vec<DocShape>,
    /// NDJSON (JSON Lines) accepted, with this longest line.
    pub ndjson: Option<usize>,
    /// CSV with a header row accepted. Empty fields are null; a header `A.B` makes
    /// a nested object, so `Account.Name` reads like the JSON form.
    pub csv: bool,
    /// Top-level field names the source reads. A CSV header that names none of
    /// them (compared without case) is not an export of this source: the file
    /// fails. Empty: no check.
    pub fields: Vec<String>,
}

/// Where the records of a JSON document are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocShape {
    /// The array at this path of object keys holds the records (empty: the document
    /// is the array).
    Array(Vec<String>),
    /// The object at this path is the one record of the file (empty: the document
    /// itself), as in single-object API responses and webhooks.
    Object(Vec<String>),
}

impl DocShape {
    /// The path of object keys to the array or object.
    pub fn path(&self) -> &[String] {
        match self {
            DocShape::Array(p) | DocShape::Object(p) => p,
        }
    }

    /// For messages: "a record array at `records`", "one record at the top level".
    pub fn describe(&self) -> String {
        match self {
            DocShape::Array(p) if p.is_empty() => "a record array at the top level".into(),
            DocShape::Array(p) => format!("a record array at `{}`", p.join(".")),
            DocShape::Object(p) if p.is_empty() => "one record object at the top level".into(),
            DocShape::Object(p) => format!("one record object at `{}`", p.join(".")),
        }
    }
}

/// One item handed to the callback of [`stream_records`].
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// A record parsed as JSON. `position` is its 0-based index in the array (JSON document)
    /// or its 1-based line number (NDJSON).
    Record {
        /// 0-based array index (JSON document), 1-based line number (NDJSON) or row
        /// number (CSV, the header being row 1).
        position: u64,
        /// The record.
        value: Value,
        /// The record is the whole file (a single-object document): a record of no
        /// known type then means the file is of no known shape.
        whole: bool,
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
    /// No declared shape matched the document.
    #[error(
        "the file has none of the shapes this source reads: expected {expected}; found {found}"
    )]
    NoShape {
        /// The shapes, described.
        expected: String,
        /// What the top level holds.
        found: String,
    },
    /// The file is of a layout the source does not accept, or records sit in two places.
    #[error("{0}")]
    Ambiguous(String),
    /// NDJSON whose last line is cut off, or CSV whose rows do not fit its header.
    #[error("{0}")]
    Truncated(String),
    /// A record (or another value) of a JSON document is over the size limit.
    #[error("{0}")]
    TooLarge(String),
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
            stream_document(reader, &[DocShape::Array(records_path.clone())], on_item)
        }
        RecordFormat::Ndjson { max_line_bytes } => {
            stream_ndjson(reader, *max_line_bytes, 0, on_item)
        }
        RecordFormat::Detect(layouts) => stream_detected(reader, layouts, on_item),
    }
}

/// What [`detect`] found at the start of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detected {
    Empty,
    Document,
    Ndjson,
    Csv,
}

/// Tells the layout from the first bytes, then streams with it.
fn stream_detected<B: BufRead>(
    mut reader: B,
    layouts: &Layouts,
    on_item: &mut dyn FnMut(StreamItem) -> Result<(), String>,
) -> Result<StreamSummary, StreamError> {
    // Leading blank lines are dropped but counted, so NDJSON line numbers stay true.
    let mut blank_lines = 0u64;
    let first = loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if buf.is_empty() {
            break None;
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                blank_lines += buf[..i].iter().filter(|&&b| b == b'\n').count() as u64;
                let b = buf[i];
                reader.consume(i);
                break Some(b);
            }
            None => {
                let n = buf.len();
                blank_lines += buf.iter().filter(|&&b| b == b'\n').count() as u64;
                reader.consume(n);
            }
        }
    };
    let accepts = || {
        let mut a = Vec::new();
        if !layouts.document.is_empty() {
            a.push("a JSON document");
        }
        if layouts.ndjson.is_some() {
            a.push("NDJSON");
        }
        if layouts.csv {
            a.push("CSV with a header row");
        }
        a.join(" or ")
    };
    let mut prefix = vec![b'\n'; blank_lines as usize];
    let kind = match first {
        None if layouts.ndjson.is_some() || layouts.csv => Detected::Empty,
        None => Detected::Document,
        Some(b'{' | b'[') => match (layouts.document.is_empty(), layouts.ndjson) {
            (true, None) => {
                return Err(StreamError::Ambiguous(format!(
                    "the file is JSON, but this source reads {}",
                    accepts()
                )))
            }
            (true, Some(_)) => Detected::Ndjson,
            (false, None) => Detected::Document,
            (false, Some(max)) => {
                // NDJSON when the first line is a whole JSON value and another follows.
                let mut line = Vec::new();
                let read = read_capped_line(&mut reader, &mut line, max)?;
                let whole = matches!(read, Some((false, true)))
                    && serde_json::from_slice::<IgnoredAny>(&line).is_ok();
                let ended = matches!(read, Some((_, true)));
                prefix.extend_from_slice(&line);
                if ended {
                    prefix.push(b'\n');
                }
                let mut next = None;
                if whole {
                    loop {
                        let buf = match reader.fill_buf() {
                            Ok(b) => b,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => return Err(e.into()),
                        };
                        if buf.is_empty() {
                            break;
                        }
                        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
                            Some(i) => {
                                next = Some(buf[i]);
                                break;
                            }
                            None => {
                                let n = buf.len();
                                let newlines = buf.iter().filter(|&&b| b == b'\n').count();
                                prefix.extend(std::iter::repeat_n(b'\n', newlines));
                                reader.consume(n);
                            }
                        }
                    }
                }
                if matches!(next, Some(b'{' | b'[')) {
                    Detected::Ndjson
                } else {
                    Detected::Document
                }
            }
        },
        Some(_) if layouts.csv => Detected::Csv,
        Some(b) => {
            let shown = if b.is_ascii_graphic() {
                format!("`{}`", b as char)
            } else {
                format!("byte 0x{b:02x}")
            };
            return Err(StreamError::Ambiguous(format!(
                "the file is not JSON (it starts with {shown}); this source reads {}",
                accepts()
            )));
        }
    };
    let reader = Cursor::new(prefix).chain(reader);
    match kind {
        Detected::Empty => Ok(StreamSummary::default()),
        Detected::Document if layouts.document.is_empty() => Err(StreamError::Ambiguous(format!(
            "the file is one JSON document, but this source reads {}",
            accepts()
        ))),
        Detected::Document => stream_document(reader, &layouts.document, on_item),
        Detected::Ndjson => stream_ndjson(reader, layouts.ndjson.unwrap_or(usize::MAX), 0, on_item),
        Detected::Csv => stream_csv(reader, &layouts.fields, on_item),
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
    shapes: &'f [DocShape],
    records: u64,
    /// The shape that delivered records (the first one found in the document).
    matched: Option<usize>,
    /// Set when a visitor aborts for a reason that is not a JSON syntax error; it
    /// takes precedence over the (placeholder) serde error that carried the abort out.
    failure: Option<StreamError>,
    /// With a single array shape: why it was not found (kept for the old, precise
    /// messages `no record array at` / `is not an array`).
    miss: Option<StreamError>,
    /// Bytes the parser consumed so far, and where the current record began:
    /// the size limit counts from there.
    consumed: std::rc::Rc<std::cell::Cell<u64>>,
    mark: std::rc::Rc<std::cell::Cell<u64>>,
    /// What the top level holds, for the message when no shape matched.
    found: String,
}

impl WalkState<'_> {
    fn single_array(&self) -> Option<&[String]> {
        match self.shapes {
            [DocShape::Array(p)] => Some(p),
            _ => None,
        }
    }

    fn emit<E: de::Error>(&mut self, position: u64, value: Value, whole: bool) -> Result<(), E> {
        if let Err(message) = (self.on_item)(StreamItem::Record {
            position,
            value,
            whole,
        }) {
            let carried = E::custom(&message);
            self.failure = Some(StreamError::Stopped(message));
            return Err(carried);
        }
        self.records += 1;
        Ok(())
    }
}

fn stream_document<R: Read>(
    reader: R,
    shapes: &[DocShape],
    on_item: &mut dyn FnMut(StreamItem) -> Result<(), String>,
) -> Result<StreamSummary, StreamError> {
    let consumed = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let mark = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let over = std::rc::Rc::new(std::cell::Cell::new(false));
    let reader = Capped {
        inner: reader,
        consumed: consumed.clone(),
        mark: mark.clone(),
        over: over.clone(),
        limit: MAX_RECORD_BYTES,
    };
    let mut state = WalkState {
        on_item,
        shapes,
        records: 0,
        matched: None,
        failure: None,
        miss: None,
        found: String::new(),
        consumed,
        mark,
    };
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let walked = Node {
        live: (0..shapes.len()).collect(),
        depth: 0,
        keep: false,
        state: &mut state,
    }
    .deserialize(&mut deserializer)
    .and_then(|_| deserializer.end());
    if over.get() {
        return Err(StreamError::TooLarge(format!(
            "record {} of the document (or a value before the records) is larger than {} MiB: the file is not loaded; split the export into smaller records or deliver it as NDJSON",
            state.records + 1,
            MAX_RECORD_BYTES >> 20
        )));
    }
    if let Some(failure) = state.failure.take() {
        return Err(failure);
    }
    walked.map_err(document_error)?;
    if state.matched.is_none() {
        if let Some(miss) = state.miss.take() {
            return Err(miss);
        }
        return Err(StreamError::NoShape {
            expected: shapes
                .iter()
                .map(DocShape::describe)
                .collect::<Vec<_>>()
                .join("; or "),
            found: state.found,
        });
    }
    Ok(StreamSummary {
        records: state.records,
        bad_records: 0,
    })
}

/// What a node of the document gave its parent.
enum Walked {
    /// Records were found at or below it.
    Matched,
    /// Nothing below it; its value when the parent asked to keep it.
    Unmatched(Option<Value>),
}

/// One value of the document, at `depth`, with the shapes whose path still
/// agrees with the keys walked so far (`live`).
struct Node<'s, 'f> {
    live: Vec<usize>,
    depth: usize,
    /// The parent may need this value as part of a single-record object.
    keep: bool,
    state: &'s mut WalkState<'f>,
}

impl Node<'_, '_> {
    /// The live shape of kind `array` (or object) that ends here.
    fn ends_here(&self, array: bool) -> Option<usize> {
        self.live.iter().copied().find(|&i| {
            let s = &self.state.shapes[i];
            s.path().len() == self.depth && matches!(s, DocShape::Array(_)) == array
        })
    }

    fn describe_top(&mut self, found: String) {
        // Set before a map's keys are known; visit_map overwrites it with them.
        if self.depth == 0 {
            self.state.found = found;
        }
    }

    /// A value that holds no records: kept for the parent, or a miss to report.
    fn no_records<E: de::Error>(mut self, found: &str, value: Value) -> Result<Walked, E> {
        if let Some(path) = self.state.single_array() {
            let path_text = display_path(path);
            if self.depth == path.len() {
                self.state.miss = Some(StreamError::NotAnArray { path: path_text });
            } else if self.depth == 0 {
                // Becomes StreamError::Parse, with the position serde_json attaches.
                return Err(E::custom(format!(
                    "expected a JSON object at the top level (the records are at `{path_text}`), found {found}"
                )));
            } else {
                self.state.miss = Some(StreamError::PathNotFound { path: path_text });
            }
        }
        self.describe_top(found.to_string());
        Ok(Walked::Unmatched(self.keep.then_some(value)))
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = Walked;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Walked, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = Walked;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Walked, A::Error> {
        self.describe_top("an array".into());
        if let Some(i) = self.ends_here(true) {
            match self.state.matched {
                None => {
                    self.state.matched = Some(i);
                    let mut position = 0u64;
                    loop {
                        // Each record may be up to MAX_RECORD_BYTES from its start.
                        self.state.mark.set(self.state.consumed.get());
                        let Some(crate::strict_json::StrictValue(value)) = seq.next_element()?
                        else {
                            break;
                        };
                        self.state.emit(position, value, false)?;
                        position += 1;
                    }
                    return Ok(Walked::Matched);
                }
                // The same key twice: the first occurrence was used.
                Some(m) if self.state.shapes[m].path() == self.state.shapes[i].path() => {
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    return Ok(Walked::Matched);
                }
                Some(m) => {
                    let (a, b) = (
                        self.state.shapes[m].describe(),
                        self.state.shapes[i].describe(),
                    );
                    let msg = format!("the file has records both as {a} and as {b}; split it into one file per shape");
                    self.state.failure = Some(StreamError::Ambiguous(msg.clone()));
                    return Err(de::Error::custom(msg));
                }
            }
        }
        if self.keep {
            let mut items = Vec::new();
            while let Some(crate::strict_json::StrictValue(v)) = seq.next_element()? {
                items.push(v);
            }
            return self.no_records("an array", Value::Array(items));
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.no_records("an array", Value::Null)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Walked, A::Error> {
        let object_here = self.ends_here(false);
        let mut buf = (object_here.is_some() || self.keep).then(Map::new);
        let mut matched_here = false;
        let mut keys_seen: Vec<String> = Vec::new();
        let mut missing_on_path = self.state.single_array().is_some();
        while let Some(key) = map.next_key::<String>()? {
            if self.depth == 0 && keys_seen.len() < 8 {
                keys_seen.push(key.clone());
            }
            let deeper: Vec<usize> = self
                .live
                .iter()
                .copied()
                .filter(|&i| self.state.shapes[i].path().get(self.depth) == Some(&key))
                .collect();
            if !deeper.is_empty() {
                missing_on_path = false;
                let child = Node {
                    live: deeper,
                    depth: self.depth + 1,
                    keep: buf.is_some(),
                    state: &mut *self.state,
                };
                match map.next_value_seed(child)? {
                    Walked::Matched => matched_here = true,
                    Walked::Unmatched(Some(v)) => {
                        if let Some(b) = buf.as_mut() {
                            crate::strict_json::insert_once(b, key, v)?;
                        }
                    }
                    Walked::Unmatched(None) => {}
                }
            } else if let Some(b) = buf.as_mut() {
                let crate::strict_json::StrictValue(v) = map.next_value()?;
                crate::strict_json::insert_once(b, key, v)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if self.depth == 0 {
            self.state.found = if keys_seen.is_empty() {
                "an empty object".into()
            } else {
                format!("an object with keys {}", keys_seen.join(", "))
            };
        }
        if matched_here {
            return Ok(Walked::Matched);
        }
        if let (Some(i), None) = (object_here, self.state.matched) {
            self.state.matched = Some(i);
            let value = Value::Object(buf.unwrap_or_default());
            self.state.emit(0, value, true)?;
            return Ok(Walked::Matched);
        }
        if let Some(path) = self.state.single_array() {
            if self.depth == path.len() {
                self.state.miss = Some(StreamError::NotAnArray {
                    path: display_path(path),
                });
            } else if missing_on_path {
                self.state.miss = Some(StreamError::PathNotFound {
                    path: display_path(path),
                });
            }
        }
        Ok(Walked::Unmatched(
            self.keep.then(|| Value::Object(buf.unwrap_or_default())),
        ))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Walked, E> {
        self.no_records("a boolean", Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Walked, E> {
        self.no_records("a number", Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Walked, E> {
        self.no_records("a number", Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Walked, E> {
        self.no_records("a number", Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Walked, E> {
        self.no_records("a string", Value::String(v.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Walked, E> {
        self.no_records("null", Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Walked, E> {
        self.no_records("null", Value::Null)
    }
}

// ---------------------------------------------------------------------------
// NDJSON
// ---------------------------------------------------------------------------

fn stream_ndjson<B: BufRead>(
    mut reader: B,
    max_line_bytes: usize,
    first_line: u64,
    on_item: &mut dyn FnMut(StreamItem) -> Result<(), String>,
) -> Result<StreamSummary, StreamError> {
    let mut summary = StreamSummary::default();
    let mut line = Vec::new();
    let mut number = first_line;
    while let Some((too_long, ended)) = read_capped_line(&mut reader, &mut line, max_line_bytes)? {
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
            match crate::strict_json::from_slice(&line) {
                Ok(value) => StreamItem::Record {
                    position: number,
                    value,
                    whole: false,
                },
                Err(err) if !ended && err.is_eof() => {
                    return Err(StreamError::Truncated(format!(
                        "line {number}, the last line, is cut off (it is not complete JSON and has no line break): the file is truncated; deliver it again once it is complete"
                    )));
                }
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
/// than `max` bytes (in which case `buf` holds its first `max` bytes) and whether
/// it ended with a line break.
fn read_capped_line<B: BufRead>(
    reader: &mut B,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<(bool, bool)>> {
    buf.clear();
    // One byte more than allowed, so that a `\r` right at the limit can be dropped.
    let keep = max.saturating_add(1);
    let mut length = 0usize;
    let mut last = None;
    let mut read_any = false;
    let mut ended = false;
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
            ended = true;
            break;
        }
    }
    let content_length = if last == Some(b'\r') {
        length - 1
    } else {
        length
    };
    buf.truncate(content_length.min(max));
    Ok(Some((content_length > max, ended)))
}

// ---------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------

/// CSV with a header row (RFC 4180 quoting). Every row becomes an object keyed by
/// the header; an empty field is null (Salesforce Bulk API and Data Loader write
/// null that way) and a header `Account.Name` nests (`{"Account": {"Name": ..}}`).
/// A row whose field count differs from the header's fails the file: that is
/// what a cut-off file looks like.
fn stream_csv<R: Read>(
    reader: R,
    known: &[String],
    on_item: &mut dyn FnMut(StreamItem) -> Result<(), String>,
) -> Result<StreamSummary, StreamError> {
    let csv_error = |e: csv::Error| -> StreamError {
        match e.into_kind() {
            csv::ErrorKind::Io(e) => StreamError::Io(e),
            other => StreamError::Truncated(format!("the CSV file is malformed: {other:?}")),
        }
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(reader);
    let headers = rdr.byte_headers().map_err(csv_error)?.clone();
    let mut paths: Vec<Vec<String>> = Vec::with_capacity(headers.len());
    for (i, h) in headers.iter().enumerate() {
        let name = std::str::from_utf8(h).map_err(|_| {
            StreamError::Truncated(format!("CSV header column {} is not UTF-8", i + 1))
        })?;
        let path: Vec<String> = name.trim().split('.').map(str::to_string).collect();
        if path.iter().any(String::is_empty) {
            return Err(StreamError::Truncated(format!(
                "CSV header column {} ({name:?}) is empty or has an empty part",
                i + 1
            )));
        }
        if paths.contains(&path) {
            return Err(StreamError::Truncated(format!(
                "CSV header names column {name:?} twice"
            )));
        }
        paths.push(path);
    }
    if !known.is_empty()
        && !paths
            .iter()
            .any(|p| known.iter().any(|k| k.eq_ignore_ascii_case(&p[0])))
    {
        let header: Vec<String> = paths.iter().take(8).map(|p| p.join(".")).collect();
        return Err(StreamError::Ambiguous(format!(
            "the CSV header ({}) names none of the fields this source reads (such as {}): it is not an export of this source",
            header.join(", "),
            known.iter().take(6).cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let mut summary = StreamSummary::default();
    let mut row = csv::ByteRecord::new();
    // Rows are numbered as a spreadsheet shows them: the header is row 1.
    let mut line = 1u64;
    while rdr.read_byte_record(&mut row).map_err(csv_error)? {
        line += 1;
        if row.len() != paths.len() {
            return Err(StreamError::Truncated(format!(
                "CSV row {line} has {} field(s) but the header has {}: the file is cut off or malformed",
                row.len(),
                paths.len()
            )));
        }
        let mut object = Map::new();
        let mut bad = None;
        for (path, field) in paths.iter().zip(row.iter()) {
            let value = match std::str::from_utf8(field) {
                Ok("") => Value::Null,
                Ok(text) => Value::String(text.to_string()),
                Err(_) => {
                    bad = Some(format!("field {} is not UTF-8", path.join(".")));
                    break;
                }
            };
            if !insert_path(&mut object, path, value) {
                return Err(StreamError::Truncated(format!(
                    "CSV header uses {} both as a value and as an object",
                    path.join(".")
                )));
            }
        }
        let item = match bad {
            Some(error) => {
                summary.bad_records += 1;
                StreamItem::BadRecord {
                    position: line,
                    raw: String::from_utf8_lossy(row.as_slice()).into_owned(),
                    error,
                }
            }
            None => {
                summary.records += 1;
                StreamItem::Record {
                    position: line,
                    value: Value::Object(object),
                    whole: false,
                }
            }
        };
        on_item(item).map_err(StreamError::Stopped)?;
    }
    Ok(summary)
}

/// Sets `path` in `object`, making nested objects; false when a prefix of the
/// path already holds a value that is not an object.
fn insert_path(object: &mut Map<String, Value>, path: &[String], value: Value) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = object;
    for p in parents {
        let slot = cur
            .entry(p.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        match slot {
            Value::Object(m) => cur = m,
            // An empty relationship column before its children: a null parent.
            Value::Null => {
                *slot = Value::Object(Map::new());
                let Value::Object(m) = slot else { return false };
                cur = m;
            }
            _ => return false,
        }
    }
    if let Some(Value::Object(_)) = cur.get(last) {
        return value.is_null();
    }
    cur.insert(last.clone(), value);
    true
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
        StreamItem::Record {
            position,
            value,
            whole: false,
        }
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
            StreamItem::Record {
                position, value, ..
            } => {
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
    fn a_record_over_the_size_limit_fails_the_file_with_bounded_memory() {
        // Many records below the limit pass, whatever the document's total size.
        let small = format!("{{\"a\":\"{}\"}}", "x".repeat(1 << 20));
        let doc_ok = format!("{{\"records\":[{}]}}", vec![small; 20].join(","));
        let (result, _) = collect(doc_ok.as_bytes(), &doc(&["records"]));
        assert_eq!(result.unwrap().records, 20);
        // One record over it fails the file, naming the record.
        let huge = format!(
            "{{\"records\":[{{\"a\":1}},{{\"a\":\"{}\"}}]}}",
            "y".repeat((MAX_RECORD_BYTES + 10) as usize)
        );
        let (result, items) = collect(huge.as_bytes(), &doc(&["records"]));
        assert_eq!(items.len(), 1);
        match result {
            Err(StreamError::TooLarge(m)) => {
                assert!(m.starts_with("record 2 of the document"), "{m}");
                assert!(m.contains("16 MiB"), "{m}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_record_naming_a_key_twice_is_refused_not_last_wins() {
        let input =
            b"{\"Id\":\"1\",\"Name\":\"a\"}\n{\"Id\":\"2\",\"Name\":\"b\",\"Name\":\"c\"}\n";
        let (result, items) = collect(&input[..], &ndjson(1024));
        assert_eq!(result.unwrap().bad_records, 1);
        assert!(
            matches!(&items[1], StreamItem::BadRecord { position: 2, error, .. } if error.contains("duplicate key `Name`")),
            "{:?}",
            items[1]
        );
        // In a JSON document it fails the file, like any invalid JSON there.
        let (result, _) = collect(
            &br#"{"records":[{"a":1},{"a":1,"b":{"c":1,"c":2}}]}"#[..],
            &doc(&["records"]),
        );
        assert!(
            matches!(&result, Err(StreamError::Parse { message, .. }) if message.contains("duplicate key `c`")),
            "{result:?}"
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

    fn shop_layouts() -> RecordFormat {
        RecordFormat::Detect(Layouts {
            document: vec![
                DocShape::Array(vec!["orders".into()]),
                DocShape::Object(vec!["order".into()]),
                DocShape::Object(vec![]),
            ],
            ndjson: Some(1024),
            csv: false,
            fields: Vec::new(),
        })
    }

    fn values(items: Vec<StreamItem>) -> Vec<(u64, Value, bool)> {
        items
            .into_iter()
            .map(|i| match i {
                StreamItem::Record {
                    position,
                    value,
                    whole,
                } => (position, value, whole),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn detect_pretty_printed_list_document_is_not_ndjson() {
        let input = "{\n  \"orders\": [\n    {\"id\": 1},\n    {\"id\": 2}\n  ]\n}\n";
        let (result, items) = collect(input.as_bytes(), &shop_layouts());
        assert_eq!(result.unwrap().records, 2);
        assert_eq!(
            values(items),
            vec![(0, json!({"id": 1}), false), (1, json!({"id": 2}), false)]
        );
        // The same document on one line.
        let (result, items) = collect(&br#"{"orders":[{"id":1}]}"#[..], &shop_layouts());
        assert_eq!(result.unwrap().records, 1);
        assert_eq!(values(items), vec![(0, json!({"id": 1}), false)]);
    }

    #[test]
    fn detect_ndjson_keeps_line_numbers() {
        let input = "\n{\"id\":1}\n\n{\"id\":2}\n";
        let (result, items) = collect(input.as_bytes(), &shop_layouts());
        assert_eq!(result.unwrap().records, 2);
        assert_eq!(
            values(items),
            vec![(2, json!({"id": 1}), false), (4, json!({"id": 2}), false)]
        );
    }

    #[test]
    fn detect_single_objects() {
        let (result, items) = collect(
            &br#"{"order":{"id":7,"line_items":[]}}"#[..],
            &shop_layouts(),
        );
        assert_eq!(result.unwrap().records, 1);
        assert_eq!(
            values(items),
            vec![(0, json!({"id": 7, "line_items": []}), true)]
        );
        // A bare webhook object, pretty printed: the whole document is the record,
        // including keys read while looking for the other shapes.
        let input = "{\n \"id\": 8,\n \"orders\": 3,\n \"customer\": {\"id\": 1}\n}";
        let (result, items) = collect(input.as_bytes(), &shop_layouts());
        assert_eq!(result.unwrap().records, 1);
        assert_eq!(
            values(items),
            vec![(
                0,
                json!({"id": 8, "orders": 3, "customer": {"id": 1}}),
                true
            )]
        );
    }

    #[test]
    fn detect_odata_v2_collection_and_single_entity() {
        let sap = RecordFormat::Detect(Layouts {
            document: vec![
                DocShape::Array(vec!["d".into(), "results".into()]),
                DocShape::Array(vec!["value".into()]),
                DocShape::Object(vec!["d".into()]),
            ],
            ndjson: None,
            csv: false,
            fields: Vec::new(),
        });
        let (r, items) = collect(&br#"{"d":{"results":[{"A":1}]}}"#[..], &sap);
        assert_eq!(r.unwrap().records, 1);
        assert_eq!(values(items), vec![(0, json!({"A": 1}), false)]);
        let (r, items) = collect(
            &br#"{"d":{"__metadata":{"type":"x"},"A":2,"to_Item":{"results":[]}}}"#[..],
            &sap,
        );
        assert_eq!(r.unwrap().records, 1);
        assert_eq!(
            values(items),
            vec![(
                0,
                json!({"__metadata":{"type":"x"},"A":2,"to_Item":{"results":[]}}),
                true
            )]
        );
        let (r, items) = collect(
            &br#"{"@odata.context":"$metadata#A_X","value":[{"A":3}]}"#[..],
            &sap,
        );
        assert_eq!(r.unwrap().records, 1);
        assert_eq!(values(items), vec![(0, json!({"A": 3}), false)]);
        // Nothing that fits: the message names what was expected and found.
        let (r, _) = collect(&br#"{"error":{"code":"x"},"x":1}"#[..], &sap);
        let text = r.unwrap_err().to_string();
        assert_eq!(
            text,
            "the file has none of the shapes this source reads: expected a record array at `d.results`; or a record array at `value`; or one record object at `d`; found an object with keys error, x"
        );
        // NDJSON is not read by this source.
        let (r, _) = collect(&b"{\"A\":1}\n{\"A\":2}\n"[..], &sap);
        assert!(matches!(r, Err(StreamError::Parse { .. })), "{r:?}");
    }

    #[test]
    fn detect_two_record_arrays_is_an_error() {
        let f = RecordFormat::Detect(Layouts {
            document: vec![
                DocShape::Array(vec!["records".into()]),
                DocShape::Array(vec!["result".into(), "records".into()]),
            ],
            ndjson: None,
            csv: false,
            fields: Vec::new(),
        });
        let (r, _) = collect(&br#"{"records":[1],"result":{"records":[2]}}"#[..], &f);
        assert!(
            matches!(&r, Err(StreamError::Ambiguous(m)) if m.contains("both")),
            "{r:?}"
        );
    }

    #[test]
    fn detect_truncated_ndjson_fails_the_file() {
        let (r, items) = collect(
            &b"{\"id\":1}\n{\"id\":2}\n{\"id\":3, \"na"[..],
            &shop_layouts(),
        );
        assert_eq!(items.len(), 2);
        match r {
            Err(e @ StreamError::Truncated(_)) => {
                assert!(
                    e.to_string().contains("line 3, the last line, is cut off"),
                    "{e}"
                )
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn csv_layouts() -> RecordFormat {
        RecordFormat::Detect(Layouts {
            document: vec![DocShape::Array(vec!["records".into()])],
            ndjson: None,
            csv: true,
            fields: vec!["Id".into(), "Name".into()],
        })
    }

    #[test]
    fn detect_csv_with_nested_headers_and_nulls() {
        let input = "\u{feff}\"Id\",\"Name\",\"Account.Name\",\"Amount\"\r\n\"006A\",\"Deal, big\",\"Acme\",\"\"\r\n006B,\"Müller \"\"GmbH\"\"\",,12.5\r\n";
        let (r, items) = collect(input.as_bytes(), &csv_layouts());
        assert_eq!(r.unwrap().records, 2);
        assert_eq!(
            values(items),
            vec![
                (
                    2,
                    json!({"Id":"006A","Name":"Deal, big","Account":{"Name":"Acme"},"Amount":null}),
                    false
                ),
                (
                    3,
                    json!({"Id":"006B","Name":"Müller \"GmbH\"","Account":{"Name":null},"Amount":"12.5"}),
                    false
                ),
            ]
        );
    }

    #[test]
    fn detect_truncated_csv_fails_the_file() {
        let (r, _) = collect(&b"Id,Name,Amount\n1,a,2\n2,b"[..], &csv_layouts());
        match r {
            Err(e @ StreamError::Truncated(_)) => assert!(
                e.to_string()
                    .starts_with("CSV row 3 has 2 field(s) but the header has 3"),
                "{e}"
            ),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn detect_csv_of_another_source_fails() {
        let (r, _) = collect(&b"this is not json\n"[..], &csv_layouts());
        assert_eq!(
            r.unwrap_err().to_string(),
            "the CSV header (this is not json) names none of the fields this source reads (such as Id, Name): it is not an export of this source"
        );
        // Upper-case headers (Data Loader) name the same fields.
        let (r, _) = collect(&b"ID,NAME\n001A,Acme\n"[..], &csv_layouts());
        assert_eq!(r.unwrap().records, 1);
    }

    #[test]
    fn detect_refuses_layouts_the_source_does_not_read() {
        let (r, _) = collect(&b"Id,Name\n1,a\n"[..], &shop_layouts());
        assert_eq!(
            r.unwrap_err().to_string(),
            "the file is not JSON (it starts with `I`); this source reads a JSON document or NDJSON"
        );
    }
}
