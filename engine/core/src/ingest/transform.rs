//! Field transforms for ingest mappings.
//!
//! An ingest mapping (YAML, one per source system) says, for each canonical column,
//! which field of a JSON export record feeds it and which named steps turn the raw
//! value into the column value. This module is the vocabulary of those steps
//! ([`Transform`]) and their implementation ([`apply`]).
//!
//! Values stay JSON throughout. The canonical forms a chain can produce are:
//!
//! * timestamps: RFC 3339 strings in UTC with offset `+00:00`, fractional seconds
//!   only when non-zero (`"2024-06-01T09:26:53+00:00"`);
//! * dates: `"YYYY-MM-DD"`;
//! * decimals: strings with exactly the requested number of digits after the point
//!   (`"467574.39"`, `"34.000"`, `"-0.50"`), computed on the decimal text of the
//!   input, never with float arithmetic;
//! * integers: JSON integers; booleans: JSON booleans.
//!
//! `null` passes through every step unchanged, except [`Transform::Default`].
//!
//! ```
//! use quarry_core::ingest::transform::{apply, Transform};
//! use serde_json::json;
//! let steps: Vec<Transform> = serde_yaml::from_str("[trim, {decimal: 2}]").unwrap();
//! assert_eq!(apply(json!(" 8466.005 "), &steps).unwrap(), json!("8466.01"));
//! ```

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, SecondsFormat, Utc};
use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

/// One step applied to a field value. Serialized in YAML as a plain string (`trim`)
/// or, for steps with an argument, as a one-key map (`{decimal: 3}`,
/// `{default: "USD"}`, `{split: {separator: "@", index: 1}}`).
//
// The derived serde code (externally tagged, `remote = "Self"`) is wrapped in
// `serde_yaml::with::singleton_map` by the `Serialize`/`Deserialize` impls below, so
// the one-key-map form is read and written with every format, YAML included
// (serde_yaml 0.9 would otherwise expect `!decimal 3` tags), and the JSON Schema
// derived from this type describes exactly that form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", rename_all = "snake_case", deny_unknown_fields)]
pub enum Transform {
    /// Removes leading and trailing whitespace of a string.
    Trim,
    /// Lower-cases a string.
    Lower,
    /// Upper-cases a string.
    Upper,
    /// Trims a string and replaces every run of whitespace inside it by one space.
    CollapseSpaces,
    /// Turns a string that is empty after trimming into `null`. Other values pass
    /// unchanged.
    EmptyToNull,
    /// Turns a number or boolean into its text (`12` → `"12"`, `true` → `"true"`).
    /// Strings pass unchanged.
    ToText,
    /// Salesforce date-time (`"2024-06-01T09:26:53.000+0000"`, any `±hhmm` offset)
    /// to a UTC timestamp.
    SalesforceDatetime,
    /// SAP OData date (`"/Date(1678441062000)/"`, optionally with an offset suffix
    /// such as `"/Date(1678441062000+0060)/"`; the milliseconds count from the epoch
    /// in UTC, the suffix does not move the instant) to a UTC timestamp.
    SapDate,
    /// RFC 3339 / ISO 8601 date-time with an offset (`"2024-10-13T11:55:34-04:00"`,
    /// `"…Z"`, fractional seconds) to a UTC timestamp. A plain date
    /// (`"2024-10-13"`) is read as midnight UTC.
    Iso8601,
    /// A date `"YYYY-MM-DD"`, validated and kept as a date.
    PlainDate,
    /// Any of the timestamp forms of `salesforce_datetime`, `sap_date` and
    /// `iso8601`, detected from the text.
    Timestamp,
    /// A JSON number or a numeric string (`"8466.00"`, `" -1.5 "`, `"3.5E8"`) to a
    /// decimal string with exactly this many digits after the point,
    /// rounded half away from zero.
    Decimal(u32),
    /// A money amount: the same as `decimal: 2`.
    Money,
    /// A JSON number or a numeric string without a fractional part (`"0042"`,
    /// `"12.00"`) to a JSON integer. `"12.5"` is rejected.
    Integer,
    /// A boolean from `true`/`false`, `"true"`/`"false"`, SAP flags (`"X"` is true,
    /// `""` is false) or `1`/`0`.
    Boolean,
    /// Replaces `null` (a missing field) by this value; other values pass unchanged.
    Default(Value),
    /// Looks the value (as text) up in this table and replaces it by the entry found.
    /// A value that is not in the table is an error, unless the table has a `"*"`
    /// entry, which is then used.
    Map(BTreeMap<String, Value>),
    /// Puts this text in front of a string.
    Prefix(String),
    /// Appends this text to a string.
    Suffix(String),
    /// Removes this text from the start of a string when it is there.
    StripPrefix(String),
    /// Splits a string at every `separator` and keeps the `index`-th piece (from 0;
    /// negative counts from the end, -1 is the last); `null` when there is no such
    /// piece. E-mail domain: `{split: {separator: "@", index: 1}}`; the id at the end
    /// of a Salesforce record URL: `{split: {separator: "/", index: -1}}`.
    Split {
        /// The text to split at; must not be empty.
        separator: String,
        /// Which piece to keep, counting from 0, or from the end when negative.
        index: i64,
    },
    /// Left-pads a string with `fill` to at least `width` characters (SAP leading
    /// zeros: `{pad: {width: 10, fill: "0"}}`). Longer strings pass unchanged.
    Pad {
        /// The minimum length in characters.
        width: usize,
        /// The padding character; `"0"` when left out.
        #[serde(default = "default_fill")]
        fill: char,
    },
    /// A country in any common form to its ISO 3166-1 alpha-2 code: alpha-2
    /// (`"de"`), alpha-3 (`"DEU"`), numeric (`"276"`), the English name or a
    /// common alias (`"Germany"`, `"United States of America"`, `"USA"`,
    /// `"U.S."`, `"UK"`), in any case, with or without spaces and dots. Anything
    /// else is an `invalid_value` error (pair it with `on_invalid: keep` so the
    /// source text is kept in `attributes` rather than lost).
    Country,
    /// An integer amount in the currency's minor unit (Stripe: `7200` USD cents) to
    /// the decimal amount in major units (`"72.00"`). The currency code is read
    /// from the record at `currency` (a path; `^currency` reads the parent); its
    /// ISO 4217 exponent says how many minor units make one (JPY 0, USD 2, BHD 3).
    /// `exponents` overrides it for codes a source treats differently.
    MinorUnits {
        /// Path of the currency code in the record.
        currency: String,
        /// Exponents that differ from ISO 4217 for this source (`{ISK: 2}`).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        exponents: BTreeMap<String, u32>,
    },
    /// Seconds since 1970-01-01 UTC (a number or numeric text; Stripe `created`)
    /// to a UTC timestamp.
    EpochSeconds,
    /// Milliseconds since 1970-01-01 UTC (a number or numeric text) to a UTC
    /// timestamp.
    EpochMillis,
    /// A date or date-time written in this chrono/strftime pattern (`"%m/%d/%Y"`,
    /// `"%d.%m.%Y %H:%M"`), read as UTC unless the pattern has an offset (`%z`),
    /// to a UTC timestamp. Patterns say what a locale's dates mean; nothing is guessed.
    DateFormat(String),
    /// Replaces every match of a regular expression in a string (`with` may use
    /// `$1` for groups): `{replace: {pattern: "gid://shopify/[A-Za-z]+/", with: ""}}`
    /// turns a GraphQL id into the REST id.
    Replace {
        /// The regular expression (Rust `regex` syntax).
        pattern: String,
        /// The replacement; empty removes the matches.
        #[serde(default)]
        with: String,
    },
    /// Tries each chain of steps in turn and keeps the first that succeeds; fails
    /// with every chain's reason when none does. Several date styles in one field:
    /// `{any_of: [[sap_date], [iso8601], [{date_format: "%m/%d/%Y"}]]}`.
    AnyOf(Vec<Vec<Transform>>),
}

fn default_fill() -> char {
    '0'
}

/// Gives the derived (`remote = "Self"`) serializer a `Serialize` impl to wrap.
struct DerivedSer<'a>(&'a Transform);

impl Serialize for DerivedSer<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Transform::serialize(self.0, serializer)
    }
}

/// Gives the derived (`remote = "Self"`) deserializer a `Deserialize` impl to wrap.
struct DerivedDe(Transform);

impl<'de> Deserialize<'de> for DerivedDe {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Transform::deserialize(deserializer).map(DerivedDe)
    }
}

impl Serialize for Transform {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde_yaml::with::singleton_map::serialize(&DerivedSer(self), serializer)
    }
}

impl<'de> Deserialize<'de> for Transform {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_yaml::with::singleton_map::deserialize::<DerivedDe, D>(deserializer).map(|d| d.0)
    }
}

/// Why a value could not be transformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TransformError {
    /// Machine-readable reason: `"invalid_date"`, `"invalid_number"`,
    /// `"invalid_value"` or `"invalid_type"`.
    pub code: &'static str,
    /// For a person: what was found and what was expected, e.g.
    /// `"twelve thousand" is not a number`.
    pub message: String,
}

impl TransformError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        TransformError {
            code,
            message: message.into(),
        }
    }

    fn date(message: impl Into<String>) -> Self {
        Self::new("invalid_date", message)
    }

    fn number(message: impl Into<String>) -> Self {
        Self::new("invalid_number", message)
    }

    fn value(message: impl Into<String>) -> Self {
        Self::new("invalid_value", message)
    }
}

/// The snake_case names of all transforms, in declaration order (for documentation).
pub fn transform_names() -> Vec<&'static str> {
    vec![
        "trim",
        "lower",
        "upper",
        "collapse_spaces",
        "empty_to_null",
        "to_text",
        "salesforce_datetime",
        "sap_date",
        "iso8601",
        "plain_date",
        "timestamp",
        "decimal",
        "money",
        "integer",
        "boolean",
        "default",
        "map",
        "prefix",
        "suffix",
        "strip_prefix",
        "split",
        "pad",
        "country",
        "minor_units",
        "epoch_seconds",
        "epoch_millis",
        "date_format",
        "replace",
        "any_of",
    ]
}

impl Transform {
    /// The snake_case name of the step, as written in YAML.
    fn name(&self) -> &'static str {
        match self {
            Transform::Trim => "trim",
            Transform::Lower => "lower",
            Transform::Upper => "upper",
            Transform::CollapseSpaces => "collapse_spaces",
            Transform::EmptyToNull => "empty_to_null",
            Transform::ToText => "to_text",
            Transform::SalesforceDatetime => "salesforce_datetime",
            Transform::SapDate => "sap_date",
            Transform::Iso8601 => "iso8601",
            Transform::PlainDate => "plain_date",
            Transform::Timestamp => "timestamp",
            Transform::Decimal(_) => "decimal",
            Transform::Money => "money",
            Transform::Integer => "integer",
            Transform::Boolean => "boolean",
            Transform::Default(_) => "default",
            Transform::Map(_) => "map",
            Transform::Prefix(_) => "prefix",
            Transform::Suffix(_) => "suffix",
            Transform::StripPrefix(_) => "strip_prefix",
            Transform::Split { .. } => "split",
            Transform::Pad { .. } => "pad",
            Transform::Country => "country",
            Transform::MinorUnits { .. } => "minor_units",
            Transform::EpochSeconds => "epoch_seconds",
            Transform::EpochMillis => "epoch_millis",
            Transform::DateFormat(_) => "date_format",
            Transform::Replace { .. } => "replace",
            Transform::AnyOf(_) => "any_of",
        }
    }
}

/// Applies `steps` to `value` in order and returns the result, or the first error.
///
/// A missing field is passed as `null`. `null` passes through every step unchanged
/// except `default`. A step given a JSON type it does not handle (`lower` on a
/// number, anything but `default` on an array or object) fails with
/// `invalid_type`.
pub fn apply(value: Value, steps: &[Transform]) -> Result<Value, TransformError> {
    apply_with(value, steps, &|_| Value::Null)
}

/// Like [`apply`], with `lookup` reading other fields of the record for the steps
/// that need them (`minor_units` reads the currency).
pub fn apply_with(
    value: Value,
    steps: &[Transform],
    lookup: &dyn Fn(&str) -> Value,
) -> Result<Value, TransformError> {
    steps
        .iter()
        .try_fold(value, |v, step| apply_step(v, step, lookup))
}

fn apply_step(
    value: Value,
    step: &Transform,
    lookup: &dyn Fn(&str) -> Value,
) -> Result<Value, TransformError> {
    if value.is_null() {
        return Ok(match step {
            Transform::Default(d) => d.clone(),
            _ => Value::Null,
        });
    }
    match step {
        Transform::Trim => with_string(value, step, |s| Ok(s.trim().into())),
        Transform::Lower => with_string(value, step, |s| Ok(s.to_lowercase().into())),
        Transform::Upper => with_string(value, step, |s| Ok(s.to_uppercase().into())),
        Transform::CollapseSpaces => with_string(value, step, |s| {
            Ok(s.split_whitespace().collect::<Vec<_>>().join(" ").into())
        }),
        Transform::EmptyToNull => match value {
            Value::String(s) if s.trim().is_empty() => Ok(Value::Null),
            Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(value),
            other => Err(wrong_type(step, "a string, number or boolean", &other)),
        },
        Transform::ToText => match value {
            Value::String(_) => Ok(value),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            other => Err(wrong_type(step, "a string, number or boolean", &other)),
        },
        // Salesforce APIs write `…000+0000`, `…Z`, date-only values and, in some
        // clients' JSON, epoch milliseconds as numbers.
        Transform::SalesforceDatetime => match value {
            Value::Number(_) => epoch(value, step, 1000),
            _ => with_string(value, step, |s| {
                iso8601(s.trim())
                    .ok_or_else(|| {
                        TransformError::date(format!(
                            "{} is not a Salesforce date-time \
                             (expected e.g. \"2024-06-01T09:26:53.000+0000\", \"…Z\" or a date)",
                            quote_str(s)
                        ))
                    })
                    .and_then(|dt| timestamp_value(dt, s))
            }),
        },
        Transform::SapDate => with_string(value, step, |s| sap_date(s).map(Value::String)),
        Transform::Iso8601 => with_string(value, step, |s| {
            iso8601(s.trim())
                .ok_or_else(|| {
                    TransformError::date(format!(
                        "{} is not an ISO 8601 timestamp with offset \
                         (expected e.g. \"2024-10-13T11:55:34-04:00\" or \"2024-10-13\")",
                        quote_str(s)
                    ))
                })
                .and_then(|dt| timestamp_value(dt, s))
        }),
        Transform::PlainDate => with_string(value, step, |s| {
            plain_date(s.trim())
                .map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
                .ok_or_else(|| {
                    TransformError::date(format!(
                        "{} is not a date (expected YYYY-MM-DD)",
                        quote_str(s)
                    ))
                })
        }),
        Transform::Timestamp => with_string(value, step, |s| {
            let t = s.trim();
            if is_sap_date(t) {
                return sap_date(s).map(Value::String);
            }
            iso8601(t)
                .ok_or_else(|| {
                    TransformError::date(format!(
                        "{} is not a timestamp (expected ISO 8601 with offset, \
                         a Salesforce date-time or SAP \"/Date(ms)/\")",
                        quote_str(s)
                    ))
                })
                .and_then(|dt| timestamp_value(dt, s))
        }),
        Transform::Decimal(places) => decimal(value, step, *places),
        Transform::Money => decimal(value, step, 2),
        Transform::Integer => integer(value, step),
        Transform::Boolean => boolean(value, step),
        Transform::Default(_) => Ok(value),
        Transform::Map(table) => {
            let key = match &value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => return Err(wrong_type(step, "a string, number or boolean", other)),
            };
            match table.get(&key).or_else(|| table.get("*")) {
                Some(v) => Ok(v.clone()),
                None => Err(TransformError::value(format!(
                    "{} is not one of the mapped values ({})",
                    quote(&value),
                    known_keys(table)
                ))),
            }
        }
        Transform::Prefix(p) => with_string(value, step, |s| Ok(format!("{p}{s}").into())),
        Transform::Suffix(p) => with_string(value, step, |s| Ok(format!("{s}{p}").into())),
        Transform::StripPrefix(p) => with_string(value, step, |s| {
            Ok(s.strip_prefix(p.as_str()).unwrap_or(s).into())
        }),
        Transform::Split { separator, index } => {
            if separator.is_empty() {
                return Err(TransformError::value(
                    "split needs a non-empty separator".to_string(),
                ));
            }
            with_string(value, step, |s| {
                let piece = if *index >= 0 {
                    usize::try_from(*index)
                        .ok()
                        .and_then(|i| s.split(separator.as_str()).nth(i))
                } else {
                    usize::try_from(-(index + 1))
                        .ok()
                        .and_then(|i| s.rsplit(separator.as_str()).nth(i))
                };
                Ok(piece.map_or(Value::Null, Value::from))
            })
        }
        Transform::Pad { width, fill } => with_string(value, step, |s| {
            let len = s.chars().count();
            if len >= *width {
                return Ok(s.into());
            }
            let mut out = fill.to_string().repeat(width - len);
            out.push_str(s);
            Ok(out.into())
        }),
        Transform::Country => match &value {
            Value::String(s) => country_code(s).map(Value::from).ok_or_else(|| {
                TransformError::value(format!(
                    "{} is not a country this transform knows (ISO codes, English names and common aliases)",
                    quote_str(s)
                ))
            }),
            other => Err(wrong_type(step, "a string", other)),
        },
        Transform::MinorUnits {
            currency,
            exponents,
        } => minor_units(value, step, &lookup(currency), exponents),
        Transform::EpochSeconds => epoch(value, step, 1),
        Transform::EpochMillis => epoch(value, step, 1000),
        Transform::DateFormat(pattern) => with_string(value, step, |s| {
            let t = s.trim();
            let parsed = DateTime::parse_from_str(t, pattern)
                .ok()
                .or_else(|| {
                    chrono::NaiveDateTime::parse_from_str(t, pattern)
                        .ok()
                        .map(|n| n.and_utc().fixed_offset())
                })
                .or_else(|| {
                    NaiveDate::parse_from_str(t, pattern)
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                        .map(|n| n.and_utc().fixed_offset())
                });
            match parsed {
                Some(dt) => timestamp_value(dt, s),
                None => Err(TransformError::date(format!(
                    "{} does not match the date pattern {}",
                    quote_str(s),
                    quote_str(pattern)
                ))),
            }
        }),
        Transform::Replace { pattern, with } => {
            let re = cached_regex(pattern).map_err(|e| {
                TransformError::value(format!("replace: the pattern {} is not valid: {e}", quote_str(pattern)))
            })?;
            with_string(value, step, |s| Ok(re.replace_all(s, with.as_str()).into_owned().into()))
        }
        Transform::AnyOf(chains) => {
            let mut reasons = Vec::new();
            for chain in chains {
                match apply_with(value.clone(), chain, lookup) {
                    Ok(v) => return Ok(v),
                    Err(e) => reasons.push(e),
                }
            }
            let code = reasons.first().map_or("invalid_value", |e| e.code);
            let all_same = reasons.iter().all(|e| e.code == code);
            Err(TransformError {
                code: if all_same { code } else { "invalid_value" },
                message: if reasons.is_empty() {
                    "any_of lists no alternatives".to_string()
                } else {
                    reasons
                        .iter()
                        .map(|e| e.message.as_str())
                        .collect::<Vec<_>>()
                        .join("; nor ")
                },
            })
        }
    }
}

/// A compiled regular expression, compiled once per pattern for the process.
pub fn cached_regex(pattern: &str) -> Result<Regex, regex::Error> {
    static CACHE: OnceLock<std::sync::Mutex<std::collections::HashMap<String, Regex>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(re) = cache.lock().ok().and_then(|c| c.get(pattern).cloned()) {
        return Ok(re);
    }
    let re = Regex::new(pattern)?;
    if let Ok(mut c) = cache.lock() {
        c.insert(pattern.to_string(), re.clone());
    }
    Ok(re)
}

/// ISO 3166-1 alpha-2 for a code, number, name or alias, in any case and spacing.
fn country_code(text: &str) -> Option<&'static str> {
    use std::str::FromStr;
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return celes::Country::from_code(t).ok().map(|c| c.alpha2);
    }
    // "U.S.A." and "United States of America" are written many ways; celes matches
    // names and aliases without spaces or punctuation, case-insensitively.
    let squeezed: String = t
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect::<String>();
    let squeezed = squeezed
        .strip_prefix("The")
        .or_else(|| squeezed.strip_prefix("the"))
        .filter(|rest| rest.len() > 3)
        .unwrap_or(&squeezed);
    // Abbreviations in everyday use that are not ISO codes.
    if squeezed.eq_ignore_ascii_case("UK") {
        return Some("GB");
    }
    celes::Country::from_str(squeezed)
        .or_else(|_| celes::Country::from_str(t))
        .ok()
        .map(|c| c.alpha2)
}

/// `amount` minor units of the currency `currency` as a decimal string in major units.
fn minor_units(
    value: Value,
    step: &Transform,
    currency: &Value,
    overrides: &BTreeMap<String, u32>,
) -> Result<Value, TransformError> {
    let Some(code) = currency.as_str().map(|c| c.trim().to_uppercase()) else {
        return Err(TransformError::value(format!(
            "minor_units needs the currency code, found {}",
            quote(currency)
        )));
    };
    let exponent = match overrides.get(&code) {
        Some(e) => *e,
        None => iso_currency::Currency::from_code(&code)
            .and_then(|c| c.exponent())
            .map(u32::from)
            .ok_or_else(|| {
                TransformError::value(format!(
                    "{} is not an ISO 4217 currency with minor units; add it to `exponents`",
                    quote_str(&code)
                ))
            })?,
    };
    let amount = integer(value, step)?;
    let text = match &amount {
        Value::Number(n) => n.to_string(),
        other => return Err(wrong_type(step, "an integer amount", other)),
    };
    let (negative, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d.to_string()),
        None => (false, text.clone()),
    };
    let e = exponent as usize;
    let padded = format!("{digits:0>width$}", width = e + 1);
    let (int, frac) = padded.split_at(padded.len() - e);
    let sign = if negative { "-" } else { "" };
    Ok(Value::String(if e == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }))
}

/// Seconds (`per_second` 1) or milliseconds (1000) since the epoch to a timestamp.
fn epoch(value: Value, step: &Transform, per_second: i64) -> Result<Value, TransformError> {
    let original = match &value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        other => return Err(wrong_type(step, "a number or numeric text", other)),
    };
    let exact = decimal(Value::String(original.clone()), step, 3)?;
    let text = exact.as_str().unwrap_or_default();
    let (int, frac) = text.split_once('.').unwrap_or((text, "0"));
    let whole: i64 = int.parse().map_err(|_| out_of_range_date(&original))?;
    let frac_ms: i64 = frac.parse().unwrap_or(0);
    let ms = if per_second == 1 {
        whole
            .checked_mul(1000)
            .and_then(|v| v.checked_add(if whole < 0 { -frac_ms } else { frac_ms }))
    } else {
        Some(whole)
    }
    .ok_or_else(|| out_of_range_date(&original))?;
    let dt =
        DateTime::<Utc>::from_timestamp_millis(ms).ok_or_else(|| out_of_range_date(&original))?;
    timestamp_text(dt, &original).map(Value::String)
}

/// Runs `f` on the text of a string value; any other type is `invalid_type`.
fn with_string(
    value: Value,
    step: &Transform,
    f: impl FnOnce(&str) -> Result<Value, TransformError>,
) -> Result<Value, TransformError> {
    match &value {
        Value::String(s) => f(s),
        other => Err(wrong_type(step, "a string", other)),
    }
}

fn wrong_type(step: &Transform, expected: &str, found: &Value) -> TransformError {
    let kind = match found {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    TransformError::new(
        "invalid_type",
        format!(
            "{} expects {expected}, got {kind} {}",
            step.name(),
            quote(found)
        ),
    )
}

const QUOTE_MAX_CHARS: usize = 60;

/// The value as JSON text, cut to [`QUOTE_MAX_CHARS`] characters (strings keep
/// their quotes).
fn quote(value: &Value) -> String {
    match value {
        Value::String(s) => quote_str(s),
        other => cut(&other.to_string()),
    }
}

fn quote_str(s: &str) -> String {
    let cut_text = cut(s);
    serde_json::to_string(&cut_text).unwrap_or(cut_text)
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(QUOTE_MAX_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn known_keys(table: &BTreeMap<String, Value>) -> String {
    const SHOWN: usize = 10;
    let mut keys: Vec<String> = table.keys().take(SHOWN).map(|k| quote_str(k)).collect();
    if table.len() > SHOWN {
        keys.push(format!("and {} more", table.len() - SHOWN));
    }
    if keys.is_empty() {
        "the map is empty".to_string()
    } else {
        format!("expected {}", keys.join(", "))
    }
}

// ---------------------------------------------------------------------------
// Dates and timestamps
// ---------------------------------------------------------------------------

/// A UTC timestamp as canonical RFC 3339 text, or `invalid_date` when the year is
/// outside 0000–9999 (RFC 3339 has four-digit years).
fn timestamp_value(dt: DateTime<FixedOffset>, original: &str) -> Result<Value, TransformError> {
    timestamp_text(dt.with_timezone(&Utc), original).map(Value::String)
}

fn timestamp_text(dt: DateTime<Utc>, original: &str) -> Result<String, TransformError> {
    if !(0..=9999).contains(&dt.year()) {
        return Err(TransformError::date(format!(
            "{} is out of range (years 0000 to 9999)",
            quote_str(original)
        )));
    }
    Ok(dt.to_rfc3339_opts(SecondsFormat::AutoSi, false))
}

/// A date-time with an explicit offset: RFC 3339 (`Z`, `±hh:mm`) or the
/// Salesforce/ISO basic offset form `±hhmm`, with optional fractional seconds.
fn parse_offset_datetime(s: &str) -> Option<DateTime<FixedOffset>> {
    if !s.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .or_else(|| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z").ok())
}

/// An ISO 8601 date-time with offset, or a plain date at midnight UTC.
fn iso8601(s: &str) -> Option<DateTime<FixedOffset>> {
    parse_offset_datetime(s).or_else(|| {
        plain_date(s)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|naive| naive.and_utc().fixed_offset())
    })
}

fn plain_date(s: &str) -> Option<NaiveDate> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"^\d{4}-\d{2}-\d{2}$").expect("valid regex"));
    if !re.is_match(s) {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

fn sap_date_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // `\/Date(...)\/` is how the JSON text spells it; accept the backslashes too in
    // case an export double-escaped them.
    RE.get_or_init(|| {
        Regex::new(r"^\\?/Date\((?<ms>[^()]*?)(?<offset>[+-]\d{4})?\)\\?/$").expect("valid regex")
    })
}

fn is_sap_date(s: &str) -> bool {
    s.starts_with("/Date(") || s.starts_with("\\/Date(")
}

fn sap_date(s: &str) -> Result<String, TransformError> {
    let bad = || {
        TransformError::date(format!(
            "{} is not an SAP date (expected \"/Date(<milliseconds since 1970>)/\")",
            quote_str(s)
        ))
    };
    let caps = sap_date_regex().captures(s.trim()).ok_or_else(bad)?;
    let ms_text = caps.name("ms").map_or("", |m| m.as_str());
    let digits = ms_text.strip_prefix('-').unwrap_or(ms_text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let ms: i64 = ms_text.parse().map_err(|_| out_of_range_date(s))?;
    let dt = DateTime::<Utc>::from_timestamp_millis(ms).ok_or_else(|| out_of_range_date(s))?;
    timestamp_text(dt, s)
}

fn out_of_range_date(s: &str) -> TransformError {
    TransformError::date(format!(
        "{} is out of range (years 0000 to 9999)",
        quote_str(s)
    ))
}

// ---------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------

/// A decimal number as its digits: value = (-1)^negative × digits × 10^-scale.
/// `digits` always has more than `scale` characters (at least one integer digit).
#[derive(Debug)]
struct DecimalText {
    negative: bool,
    digits: Vec<u8>,
    scale: usize,
}

enum NumberProblem {
    NotANumber,
    Exponent,
    TooLarge,
}

/// Largest exponent magnitude accepted in float text (f64 needs at most 324).
const MAX_EXPONENT: i64 = 400;
/// Largest `decimal` argument accepted.
const MAX_PLACES: u32 = 1000;

impl DecimalText {
    /// Parses `[+-]digits[.digits][e[+-]digits]` (at least one digit in the
    /// mantissa). Exponents are only accepted when `allow_exponent` is set.
    fn parse(text: &str, allow_exponent: bool) -> Result<Self, NumberProblem> {
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (int_part.is_empty() && frac_part.is_empty())
            || !all_digits(int_part)
            || !all_digits(frac_part)
        {
            return Err(NumberProblem::NotANumber);
        }
        let exp: i64 = match exponent {
            None => 0,
            Some(e) => {
                let body = e.strip_prefix(['+', '-']).unwrap_or(e);
                if body.is_empty() || !all_digits(body) {
                    return Err(NumberProblem::NotANumber);
                }
                if !allow_exponent {
                    return Err(NumberProblem::Exponent);
                }
                match e.parse::<i64>() {
                    Ok(v) if v.abs() <= MAX_EXPONENT => v,
                    _ => return Err(NumberProblem::TooLarge),
                }
            }
        };
        let mut digits: Vec<u8> = int_part.bytes().chain(frac_part.bytes()).collect();
        // frac_part.len() is bounded by the input length, exp by MAX_EXPONENT.
        let mut scale = frac_part.len() as i64 - exp;
        if scale < 0 {
            digits.resize(digits.len() + (-scale) as usize, b'0');
            scale = 0;
        }
        let scale = scale as usize;
        if digits.len() <= scale {
            let pad = scale + 1 - digits.len();
            digits.splice(0..0, vec![b'0'; pad]);
        }
        Ok(DecimalText {
            negative,
            digits,
            scale,
        })
    }

    /// Rounds half away from zero to `places` digits after the point.
    fn round(mut self, places: usize) -> Self {
        if self.scale <= places {
            self.digits
                .resize(self.digits.len() + places - self.scale, b'0');
        } else {
            let keep = self.digits.len() - (self.scale - places);
            let round_up = self.digits[keep] >= b'5';
            self.digits.truncate(keep);
            if round_up {
                increment(&mut self.digits);
            }
        }
        self.scale = places;
        self
    }

    fn int_digits(&self) -> &[u8] {
        let int = &self.digits[..self.digits.len() - self.scale];
        let first = int.iter().position(|&b| b != b'0').unwrap_or(int.len());
        &int[first..]
    }

    fn frac_digits(&self) -> &[u8] {
        &self.digits[self.digits.len() - self.scale..]
    }

    fn is_zero(&self) -> bool {
        self.digits.iter().all(|&b| b == b'0')
    }

    /// Canonical text: no superfluous leading zeros, exactly `scale` fractional
    /// digits, no negative zero.
    fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.digits.len() + 2);
        if self.negative && !self.is_zero() {
            out.push('-');
        }
        let int = self.int_digits();
        if int.is_empty() {
            out.push('0');
        } else {
            out.extend(int.iter().map(|&b| b as char));
        }
        if self.scale > 0 {
            out.push('.');
            out.extend(self.frac_digits().iter().map(|&b| b as char));
        }
        out
    }
}

/// Adds one to a string of decimal digits, growing it on carry.
fn increment(digits: &mut Vec<u8>) {
    for d in digits.iter_mut().rev() {
        if *d == b'9' {
            *d = b'0';
        } else {
            *d += 1;
            return;
        }
    }
    digits.insert(0, b'1');
}

/// The decimal text of a number value or numeric string; floats use their shortest
/// round-trip text, so `0.005` is exactly 0.005.
fn number_text(value: &Value, step: &Transform) -> Result<DecimalText, TransformError> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        other => return Err(wrong_type(step, "a number or numeric string", other)),
    };
    // Exponents are read exactly in numbers and text alike: Salesforce Data Loader
    // writes currency fields such as `"3.5E8"`.
    DecimalText::parse(&text, true).map_err(|problem| {
        let shown = quote(value);
        TransformError::number(match problem {
            NumberProblem::NotANumber => format!("{shown} is not a number"),
            NumberProblem::Exponent => {
                format!("{shown} is not a plain decimal number (exponents are not accepted)")
            }
            NumberProblem::TooLarge => format!("{shown} is out of range"),
        })
    })
}

fn decimal(value: Value, step: &Transform, places: u32) -> Result<Value, TransformError> {
    if places > MAX_PLACES {
        return Err(TransformError::value(format!(
            "decimal places must be at most {MAX_PLACES}, got {places}"
        )));
    }
    let parsed = number_text(&value, step)?;
    Ok(Value::String(parsed.round(places as usize).to_text()))
}

fn integer(value: Value, step: &Transform) -> Result<Value, TransformError> {
    if let Value::Number(n) = &value {
        if n.is_i64() || n.is_u64() {
            return Ok(value);
        }
    }
    let parsed = number_text(&value, step)?;
    if parsed.frac_digits().iter().any(|&b| b != b'0') {
        return Err(TransformError::number(format!(
            "{} is not a whole number",
            quote(&value)
        )));
    }
    let int: String = parsed.int_digits().iter().map(|&b| b as char).collect();
    let int = if int.is_empty() { "0".to_string() } else { int };
    let number = if parsed.negative {
        format!("-{int}").parse::<i64>().ok().map(Number::from)
    } else {
        int.parse::<u64>().ok().map(|u| match i64::try_from(u) {
            Ok(i) => Number::from(i),
            Err(_) => Number::from(u),
        })
    };
    number.map(Value::Number).ok_or_else(|| {
        TransformError::number(format!("{} is out of range for an integer", quote(&value)))
    })
}

fn boolean(value: Value, step: &Transform) -> Result<Value, TransformError> {
    let parsed = match &value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(1.0) => Some(true),
            Some(0.0) => Some(false),
            _ => None,
        },
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() || t == "0" || t.eq_ignore_ascii_case("false") {
                Some(false)
            } else if t == "1" || t.eq_ignore_ascii_case("x") || t.eq_ignore_ascii_case("true") {
                Some(true)
            } else {
                None
            }
        }
        other => return Err(wrong_type(step, "a boolean, string or number", other)),
    };
    parsed.map(Value::Bool).ok_or_else(|| {
        TransformError::value(format!(
            "{} is not a boolean (expected true/false, \"X\"/\"\" or 1/0)",
            quote(&value)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(value: Value, steps: &[Transform]) -> Value {
        apply(value, steps).unwrap()
    }

    fn fail(value: Value, steps: &[Transform]) -> TransformError {
        apply(value, steps).unwrap_err()
    }

    // --- strings -----------------------------------------------------------

    #[test]
    fn transform_string_steps() {
        assert_eq!(run(json!("  a b  "), &[Transform::Trim]), json!("a b"));
        assert_eq!(run(json!("\u{a0}x\t\n"), &[Transform::Trim]), json!("x"));
        assert_eq!(run(json!("ÄbC"), &[Transform::Lower]), json!("äbc"));
        assert_eq!(run(json!("straße"), &[Transform::Upper]), json!("STRASSE"));
        assert_eq!(
            run(
                json!("  Acme   \t Corp\n Ltd "),
                &[Transform::CollapseSpaces]
            ),
            json!("Acme Corp Ltd")
        );
        assert_eq!(
            run(json!("42"), &[Transform::Prefix("SAP-".into())]),
            json!("SAP-42")
        );
        assert_eq!(
            run(json!("42"), &[Transform::Suffix("/EUR".into())]),
            json!("42/EUR")
        );
        assert_eq!(
            run(json!("SF-001"), &[Transform::StripPrefix("SF-".into())]),
            json!("001")
        );
        assert_eq!(
            run(json!("001"), &[Transform::StripPrefix("SF-".into())]),
            json!("001")
        );
    }

    #[test]
    fn transform_empty_to_null() {
        assert_eq!(run(json!(""), &[Transform::EmptyToNull]), Value::Null);
        assert_eq!(run(json!("   "), &[Transform::EmptyToNull]), Value::Null);
        assert_eq!(run(json!(" a "), &[Transform::EmptyToNull]), json!(" a "));
        assert_eq!(run(json!(0), &[Transform::EmptyToNull]), json!(0));
        assert_eq!(run(json!(false), &[Transform::EmptyToNull]), json!(false));
        assert_eq!(run(Value::Null, &[Transform::EmptyToNull]), Value::Null);
        assert_eq!(
            fail(json!([]), &[Transform::EmptyToNull]).code,
            "invalid_type"
        );
    }

    #[test]
    fn transform_to_text() {
        assert_eq!(run(json!(12), &[Transform::ToText]), json!("12"));
        assert_eq!(run(json!(-1.5), &[Transform::ToText]), json!("-1.5"));
        assert_eq!(run(json!(true), &[Transform::ToText]), json!("true"));
        assert_eq!(run(json!("x"), &[Transform::ToText]), json!("x"));
        assert_eq!(
            fail(json!({"a": 1}), &[Transform::ToText]).code,
            "invalid_type"
        );
    }

    #[test]
    fn transform_split() {
        let domain = Transform::Split {
            separator: "@".into(),
            index: 1,
        };
        assert_eq!(
            run(json!("a@b.com"), std::slice::from_ref(&domain)),
            json!("b.com")
        );
        assert_eq!(
            run(json!("nobody"), std::slice::from_ref(&domain)),
            Value::Null
        );
        let first = Transform::Split {
            separator: ", ".into(),
            index: 0,
        };
        assert_eq!(run(json!("x, y"), &[first]), json!("x"));
        let e = fail(
            json!("a"),
            &[Transform::Split {
                separator: String::new(),
                index: 0,
            }],
        );
        assert_eq!(e.code, "invalid_value");
    }

    #[test]
    fn transform_pad() {
        let pad = Transform::Pad {
            width: 10,
            fill: '0',
        };
        assert_eq!(
            run(json!("4711"), std::slice::from_ref(&pad)),
            json!("0000004711")
        );
        assert_eq!(
            run(json!("12345678901"), std::slice::from_ref(&pad)),
            json!("12345678901")
        );
        assert_eq!(
            run(json!(""), std::slice::from_ref(&pad)),
            json!("0000000000")
        );
        let stars = Transform::Pad {
            width: 3,
            fill: '*',
        };
        assert_eq!(run(json!("é"), &[stars]), json!("**é"));
        let e = fail(json!(4711), &[pad]);
        assert_eq!(e.code, "invalid_type");
        assert_eq!(e.message, "pad expects a string, got number 4711");
    }

    // --- dates -------------------------------------------------------------

    #[test]
    fn transform_salesforce_datetime() {
        let s = [Transform::SalesforceDatetime];
        assert_eq!(
            run(json!("2024-06-01T09:26:53.000+0000"), &s),
            json!("2024-06-01T09:26:53+00:00")
        );
        assert_eq!(
            run(json!("2024-06-01T09:26:53.000-0700"), &s),
            json!("2024-06-01T16:26:53+00:00")
        );
        assert_eq!(
            run(json!("2024-06-01T23:30:00.250+0530"), &s),
            json!("2024-06-01T18:00:00.250+00:00")
        );
        assert_eq!(
            run(json!("2024-12-31T23:00:00.000-0200"), &s),
            json!("2025-01-01T01:00:00+00:00")
        );
        assert_eq!(
            run(json!("2024-06-01T09:26:53Z"), &s),
            json!("2024-06-01T09:26:53+00:00")
        );
        let e = fail(json!("2024-06-01 09:26"), &s);
        assert_eq!(e.code, "invalid_date");
        assert!(e
            .message
            .starts_with("\"2024-06-01 09:26\" is not a Salesforce date-time"));
        assert_eq!(
            fail(json!("2024-02-30T00:00:00.000+0000"), &s).code,
            "invalid_date"
        );
    }

    #[test]
    fn transform_sap_date() {
        let s = [Transform::SapDate];
        assert_eq!(
            run(json!("/Date(1678441062000)/"), &s),
            json!("2023-03-10T09:37:42+00:00")
        );
        assert_eq!(
            run(json!("/Date(1678441062000+0000)/"), &s),
            json!("2023-03-10T09:37:42+00:00")
        );
        assert_eq!(
            run(json!("/Date(1678441062000+0060)/"), &s),
            json!("2023-03-10T09:37:42+00:00")
        );
        assert_eq!(
            run(json!("\\/Date(1678441062123)\\/"), &s),
            json!("2023-03-10T09:37:42.123+00:00")
        );
        assert_eq!(
            run(json!("/Date(-86400000)/"), &s),
            json!("1969-12-31T00:00:00+00:00")
        );
        for bad in [
            "/Date(abc)/",
            "/Date(99999999999999999)/",
            "/Date(999999999999999999999999)/",
            "/Date()/",
            "Date(1678441062000)",
            "1678441062000",
        ] {
            let e = fail(json!(bad), &s);
            assert_eq!(e.code, "invalid_date", "{bad}");
            assert!(e.message.contains(&format!("{bad:?}")), "{}", e.message);
        }
        assert_eq!(fail(json!(1678441062000_i64), &s).code, "invalid_type");
    }

    #[test]
    fn transform_iso8601() {
        let s = [Transform::Iso8601];
        assert_eq!(
            run(json!("2024-10-13T11:55:34-04:00"), &s),
            json!("2024-10-13T15:55:34+00:00")
        );
        assert_eq!(
            run(json!("2024-10-13T11:55:34Z"), &s),
            json!("2024-10-13T11:55:34+00:00")
        );
        assert_eq!(
            run(json!("2024-10-13T11:55:34.5+02:00"), &s),
            json!("2024-10-13T09:55:34.500+00:00")
        );
        assert_eq!(
            run(json!("2024-10-13T11:55:34.000000Z"), &s),
            json!("2024-10-13T11:55:34+00:00")
        );
        assert_eq!(
            run(json!("2024-10-13"), &s),
            json!("2024-10-13T00:00:00+00:00")
        );
        for bad in ["2024-10-13T11:55:34", "13.10.2024", "2024-13-01", "", "now"] {
            assert_eq!(fail(json!(bad), &s).code, "invalid_date", "{bad}");
        }
        assert_eq!(
            fail(json!("0000-01-01T00:00:00+01:00"), &s).code,
            "invalid_date"
        );
    }

    #[test]
    fn transform_plain_date() {
        let s = [Transform::PlainDate];
        assert_eq!(run(json!("2024-10-13"), &s), json!("2024-10-13"));
        assert_eq!(run(json!(" 2024-02-29 "), &s), json!("2024-02-29"));
        for bad in ["2023-02-29", "2024-1-5", "2024-10-13T00:00:00Z", "20241013"] {
            let e = fail(json!(bad), &s);
            assert_eq!(e.code, "invalid_date", "{bad}");
            assert_eq!(
                e.message,
                format!("{bad:?} is not a date (expected YYYY-MM-DD)")
            );
        }
    }

    #[test]
    fn transform_timestamp_detects_form() {
        let s = [Transform::Timestamp];
        assert_eq!(
            run(json!("/Date(1678441062000)/"), &s),
            json!("2023-03-10T09:37:42+00:00")
        );
        assert_eq!(
            run(json!("2024-06-01T09:26:53.000+0000"), &s),
            json!("2024-06-01T09:26:53+00:00")
        );
        assert_eq!(
            run(json!("2024-10-13T11:55:34-04:00"), &s),
            json!("2024-10-13T15:55:34+00:00")
        );
        assert_eq!(
            run(json!("2024-10-13"), &s),
            json!("2024-10-13T00:00:00+00:00")
        );
        assert_eq!(fail(json!("/Date(abc)/"), &s).code, "invalid_date");
        assert_eq!(fail(json!("yesterday"), &s).code, "invalid_date");
    }

    // --- numbers -----------------------------------------------------------

    #[test]
    fn transform_money_examples() {
        let m = [Transform::Money];
        assert_eq!(run(json!(41856000.0), &m), json!("41856000.00"));
        assert_eq!(run(json!(467574.39), &m), json!("467574.39"));
        assert_eq!(run(json!(0.005), &m), json!("0.01"));
        assert_eq!(run(json!(-0.005), &m), json!("-0.01"));
        assert_eq!(run(json!(1.005), &m), json!("1.01"));
        assert_eq!(run(json!("8466.00"), &m), json!("8466.00"));
        assert_eq!(run(json!(" 34.5 "), &m), json!("34.50"));
        assert_eq!(run(json!(-0.5), &m), json!("-0.50"));
        assert_eq!(run(json!(-0.004), &m), json!("0.00"));
        assert_eq!(run(json!(12), &m), json!("12.00"));
        assert_eq!(run(json!(9.995), &m), json!("10.00"));
        let e = fail(json!("twelve thousand"), &m);
        assert_eq!(e.code, "invalid_number");
        assert_eq!(e.message, "\"twelve thousand\" is not a number");
    }

    #[test]
    fn transform_decimal_places() {
        assert_eq!(
            run(json!("34.000"), &[Transform::Decimal(3)]),
            json!("34.000")
        );
        assert_eq!(
            run(json!(1.23456), &[Transform::Decimal(3)]),
            json!("1.235")
        );
        assert_eq!(
            run(json!(-1.23449), &[Transform::Decimal(3)]),
            json!("-1.234")
        );
        assert_eq!(run(json!("-1.5"), &[Transform::Decimal(0)]), json!("-2"));
        assert_eq!(run(json!("2.4999"), &[Transform::Decimal(0)]), json!("2"));
        assert_eq!(run(json!(".5"), &[Transform::Decimal(1)]), json!("0.5"));
        assert_eq!(run(json!("+007."), &[Transform::Decimal(1)]), json!("7.0"));
        assert_eq!(
            run(json!(1e-7), &[Transform::Decimal(8)]),
            json!("0.00000010")
        );
        assert_eq!(
            run(json!(1e20), &[Transform::Decimal(1)]),
            json!("100000000000000000000.0")
        );
        assert_eq!(
            run(json!(u64::MAX), &[Transform::Decimal(0)]),
            json!("18446744073709551615")
        );
    }

    #[test]
    fn transform_decimal_large_values_exact() {
        assert_eq!(
            run(json!("999999999999999999.995"), &[Transform::Money]),
            json!("1000000000000000000.00")
        );
        assert_eq!(
            run(json!("123456789012345678.125"), &[Transform::Money]),
            json!("123456789012345678.13")
        );
        assert_eq!(
            run(json!("-123456789012345678.124"), &[Transform::Money]),
            json!("-123456789012345678.12")
        );
        assert_eq!(
            run(json!(123456789012345678_i64), &[Transform::Decimal(4)]),
            json!("123456789012345678.0000")
        );
    }

    #[test]
    fn transform_decimal_rejects() {
        // Exponents in text are read exactly (Data Loader writes "3.5E8").
        for (text, money) in [
            ("1e3", "1000.00"),
            ("1E-2", "0.01"),
            ("3.5E8", "350000000.00"),
        ] {
            assert_eq!(
                apply(json!(text), &[Transform::Money]).unwrap(),
                json!(money)
            );
        }
        for bad in [
            "",
            ".",
            "-",
            "1,5",
            "1.2.3",
            "NaN",
            "inf",
            "-Infinity",
            "12 34",
            "0x10",
        ] {
            assert_eq!(
                fail(json!(bad), &[Transform::Money]).code,
                "invalid_number",
                "{bad}"
            );
        }
        let e = fail(json!(true), &[Transform::Money]);
        assert_eq!(e.code, "invalid_type");
        assert_eq!(
            e.message,
            "money expects a number or numeric string, got boolean true"
        );
        assert_eq!(
            fail(json!(1), &[Transform::Decimal(5000)]).code,
            "invalid_value"
        );
    }

    #[test]
    fn transform_integer() {
        let i = [Transform::Integer];
        assert_eq!(run(json!(42), &i), json!(42));
        assert_eq!(run(json!(-42), &i), json!(-42));
        assert_eq!(run(json!(12.0), &i), json!(12));
        assert_eq!(run(json!("0042"), &i), json!(42));
        assert_eq!(run(json!(" -7.000 "), &i), json!(-7));
        assert_eq!(run(json!("-0"), &i), json!(0));
        assert_eq!(run(json!(u64::MAX), &i), json!(u64::MAX));
        assert_eq!(run(json!("18446744073709551615"), &i), json!(u64::MAX));
        assert_eq!(run(json!("-9223372036854775808"), &i), json!(i64::MIN));
        let e = fail(json!("12.5"), &i);
        assert_eq!(e.code, "invalid_number");
        assert_eq!(e.message, "\"12.5\" is not a whole number");
        assert_eq!(fail(json!(12.5), &i).code, "invalid_number");
        assert_eq!(
            fail(json!("18446744073709551616"), &i).code,
            "invalid_number"
        );
        assert_eq!(fail(json!(1e20), &i).code, "invalid_number");
        assert_eq!(apply(json!("1e3"), &i).unwrap(), json!(1000));
        assert_eq!(fail(json!("twelve"), &i).code, "invalid_number");
        assert_eq!(fail(json!(false), &i).code, "invalid_type");
    }

    #[test]
    fn transform_boolean() {
        let b = [Transform::Boolean];
        for (input, expected) in [
            (json!(true), true),
            (json!(false), false),
            (json!("true"), true),
            (json!("FALSE"), false),
            (json!("X"), true),
            (json!("x"), true),
            (json!(""), false),
            (json!(" "), false),
            (json!(1), true),
            (json!(0), false),
            (json!("1"), true),
            (json!("0"), false),
        ] {
            assert_eq!(run(input.clone(), &b), json!(expected), "{input}");
        }
        let e = fail(json!("yes please"), &b);
        assert_eq!(e.code, "invalid_value");
        assert!(e.message.starts_with("\"yes please\" is not a boolean"));
        assert_eq!(fail(json!(2), &b).code, "invalid_value");
        assert_eq!(fail(json!([true]), &b).code, "invalid_type");
    }

    // --- default and map ---------------------------------------------------

    #[test]
    fn transform_default() {
        let d = [Transform::Default(json!("USD"))];
        assert_eq!(run(Value::Null, &d), json!("USD"));
        assert_eq!(run(json!("EUR"), &d), json!("EUR"));
        assert_eq!(run(json!(""), &d), json!(""));
        assert_eq!(
            run(
                json!("  "),
                &[Transform::EmptyToNull, Transform::Default(json!(0))]
            ),
            json!(0)
        );
    }

    #[test]
    fn transform_map() {
        let table: BTreeMap<String, Value> = [
            ("A".to_string(), json!("active")),
            ("B".to_string(), json!("blocked")),
            ("1".to_string(), json!("one")),
            ("true".to_string(), json!(true)),
        ]
        .into_iter()
        .collect();
        let m = [Transform::Map(table.clone())];
        assert_eq!(run(json!("A"), &m), json!("active"));
        assert_eq!(run(json!(1), &m), json!("one"));
        assert_eq!(run(json!(true), &m), json!(true));
        assert_eq!(run(Value::Null, &m), Value::Null);
        let e = fail(json!("Z"), &m);
        assert_eq!(e.code, "invalid_value");
        assert_eq!(
            e.message,
            "\"Z\" is not one of the mapped values (expected \"1\", \"A\", \"B\", \"true\")"
        );
        let mut with_fallback = table;
        with_fallback.insert("*".into(), json!("other"));
        assert_eq!(
            run(json!("Z"), &[Transform::Map(with_fallback)]),
            json!("other")
        );
        assert_eq!(fail(json!({"a": 1}), &m).code, "invalid_type");
    }

    // --- general rules -----------------------------------------------------

    #[test]
    fn transform_null_passes_through() {
        let all = [
            Transform::Trim,
            Transform::Lower,
            Transform::Upper,
            Transform::CollapseSpaces,
            Transform::EmptyToNull,
            Transform::ToText,
            Transform::SalesforceDatetime,
            Transform::SapDate,
            Transform::Iso8601,
            Transform::PlainDate,
            Transform::Timestamp,
            Transform::Decimal(3),
            Transform::Money,
            Transform::Integer,
            Transform::Boolean,
            Transform::Map(BTreeMap::new()),
            Transform::Prefix("x".into()),
            Transform::Suffix("x".into()),
            Transform::StripPrefix("x".into()),
            Transform::Split {
                separator: "@".into(),
                index: 1,
            },
            Transform::Pad {
                width: 3,
                fill: '0',
            },
        ];
        for step in &all {
            assert_eq!(
                run(Value::Null, std::slice::from_ref(step)),
                Value::Null,
                "{step:?}"
            );
        }
        assert_eq!(run(Value::Null, &all), Value::Null);
        assert_eq!(run(json!("x"), &[]), json!("x"));
    }

    #[test]
    fn transform_chaining() {
        let steps = [
            Transform::Trim,
            Transform::Lower,
            Transform::Split {
                separator: "@".into(),
                index: 1,
            },
        ];
        assert_eq!(
            run(json!("  Jane.Doe@ACME.Example "), &steps),
            json!("acme.example")
        );
        let sap_material = [
            Transform::ToText,
            Transform::Trim,
            Transform::Pad {
                width: 8,
                fill: '0',
            },
        ];
        assert_eq!(run(json!(4711), &sap_material), json!("00004711"));
        let currency = [
            Transform::Trim,
            Transform::EmptyToNull,
            Transform::Default(json!("USD")),
            Transform::Upper,
        ];
        assert_eq!(run(json!(" "), &currency), json!("USD"));
        assert_eq!(run(json!(" eur"), &currency), json!("EUR"));
    }

    #[test]
    fn transform_wrong_type_names_step() {
        let e = fail(json!(12), &[Transform::Lower]);
        assert_eq!(e.code, "invalid_type");
        assert_eq!(e.message, "lower expects a string, got number 12");
        assert_eq!(e.to_string(), e.message);
        let e = fail(json!(true), &[Transform::Trim, Transform::SapDate]);
        assert_eq!(e.message, "trim expects a string, got boolean true");
        let e = fail(json!([1, 2]), &[Transform::Timestamp]);
        assert_eq!(e.message, "timestamp expects a string, got array [1,2]");
    }

    #[test]
    fn transform_error_quotes_are_cut() {
        let long = "x".repeat(100);
        let e = fail(json!(long), &[Transform::Money]);
        assert_eq!(
            e.message,
            format!("\"{}…\" is not a number", "x".repeat(60))
        );
        let e = fail(json!("ä".repeat(61)), &[Transform::PlainDate]);
        assert!(e.message.starts_with(&format!("\"{}…\"", "ä".repeat(60))));
    }

    // --- serialization -----------------------------------------------------

    #[test]
    fn transform_yaml_parses() {
        let steps: Vec<Transform> = serde_yaml::from_str(
            "[trim, lower, {decimal: 3}, {default: USD}, {split: {separator: '@', index: 1}}, money]",
        )
        .unwrap();
        assert_eq!(
            steps,
            vec![
                Transform::Trim,
                Transform::Lower,
                Transform::Decimal(3),
                Transform::Default(json!("USD")),
                Transform::Split {
                    separator: "@".into(),
                    index: 1
                },
                Transform::Money,
            ]
        );
        let steps: Vec<Transform> = serde_yaml::from_str(
            "- {map: {A: active, '01': one, '*': other}}\n\
             - {pad: {width: 10, fill: '0'}}\n\
             - {pad: {width: 4}}\n\
             - {default: 0}\n\
             - {prefix: 'SAP-'}\n\
             - iso8601\n\
             - sap_date\n\
             - salesforce_datetime\n",
        )
        .unwrap();
        assert_eq!(
            steps[0],
            Transform::Map(
                [
                    ("A", json!("active")),
                    ("01", json!("one")),
                    ("*", json!("other"))
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
            )
        );
        assert_eq!(
            steps[1],
            Transform::Pad {
                width: 10,
                fill: '0'
            }
        );
        assert_eq!(
            steps[2],
            Transform::Pad {
                width: 4,
                fill: '0'
            }
        );
        assert_eq!(steps[3], Transform::Default(json!(0)));
        assert_eq!(steps[5], Transform::Iso8601);
        // Unquoted YAML scalars work as map keys and pad fill.
        let steps: Vec<Transform> =
            serde_yaml::from_str("[{map: {1: a, 01: b, true: c}}, {pad: {width: 3, fill: 0}}]")
                .unwrap();
        let keys: Vec<&str> = match &steps[0] {
            Transform::Map(m) => m.keys().map(String::as_str).collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(keys, ["01", "1", "true"]);
        assert_eq!(
            steps[1],
            Transform::Pad {
                width: 3,
                fill: '0'
            }
        );
        let e = serde_yaml::from_str::<Vec<Transform>>("[titlecase]").unwrap_err();
        assert!(e.to_string().contains("unknown variant `titlecase`"), "{e}");
        assert!(serde_yaml::from_str::<Vec<Transform>>("[{decimal: 2, money: 1}]").is_err());
        assert!(
            serde_yaml::from_str::<Vec<Transform>>("[{split: {separator: '@', idx: 1}}]").is_err()
        );
    }

    #[test]
    fn transform_serde_round_trip() {
        let steps = vec![
            Transform::Trim,
            Transform::Decimal(3),
            Transform::Default(json!("USD")),
            Transform::Map([("X".to_string(), json!(true))].into_iter().collect()),
            Transform::Split {
                separator: "@".into(),
                index: 1,
            },
            Transform::Pad {
                width: 10,
                fill: '0',
            },
            Transform::Money,
        ];
        let json_text = serde_json::to_string(&steps).unwrap();
        assert_eq!(
            json_text,
            r#"["trim",{"decimal":3},{"default":"USD"},{"map":{"X":true}},{"split":{"separator":"@","index":1}},{"pad":{"width":10,"fill":"0"}},"money"]"#
        );
        assert_eq!(
            serde_json::from_str::<Vec<Transform>>(&json_text).unwrap(),
            steps
        );
        let yaml_text = serde_yaml::to_string(&steps).unwrap();
        assert!(yaml_text.contains("- decimal: 3\n"), "{yaml_text}");
        assert!(yaml_text.contains("- trim\n"), "{yaml_text}");
        assert_eq!(
            serde_yaml::from_str::<Vec<Transform>>(&yaml_text).unwrap(),
            steps
        );
    }

    #[test]
    fn transform_names_match_serde() {
        let samples = [
            Transform::Trim,
            Transform::Lower,
            Transform::Upper,
            Transform::CollapseSpaces,
            Transform::EmptyToNull,
            Transform::ToText,
            Transform::SalesforceDatetime,
            Transform::SapDate,
            Transform::Iso8601,
            Transform::PlainDate,
            Transform::Timestamp,
            Transform::Decimal(2),
            Transform::Money,
            Transform::Integer,
            Transform::Boolean,
            Transform::Default(Value::Null),
            Transform::Map(BTreeMap::new()),
            Transform::Prefix(String::new()),
            Transform::Suffix(String::new()),
            Transform::StripPrefix(String::new()),
            Transform::Split {
                separator: "@".into(),
                index: 0,
            },
            Transform::Pad {
                width: 1,
                fill: '0',
            },
            Transform::Country,
            Transform::MinorUnits {
                currency: "c".into(),
                exponents: BTreeMap::new(),
            },
            Transform::EpochSeconds,
            Transform::EpochMillis,
            Transform::DateFormat("%Y".into()),
            Transform::Replace {
                pattern: "a".into(),
                with: String::new(),
            },
            Transform::AnyOf(vec![]),
        ];
        let serialized: Vec<String> = samples
            .iter()
            .map(|t| match serde_json::to_value(t).unwrap() {
                Value::String(s) => s,
                Value::Object(o) => o.keys().next().unwrap().clone(),
                other => panic!("unexpected {other}"),
            })
            .collect();
        assert_eq!(serialized, transform_names());
        for (t, name) in samples.iter().zip(transform_names()) {
            assert_eq!(t.name(), name);
        }
    }

    #[test]
    fn transform_json_schema() {
        let schema = serde_json::to_value(schemars::schema_for!(Transform)).unwrap();
        let text = schema.to_string();
        for name in transform_names() {
            assert!(
                text.contains(&format!("\"{name}\"")),
                "{name} missing from schema"
            );
        }
        assert!(text.contains("rounded half away from zero"));
    }

    #[test]
    fn country_in_any_common_form() {
        let steps = vec![Transform::Country];
        for (input, code) in [
            ("USA", "US"),
            ("usa", "US"),
            ("U.S.A.", "US"),
            ("United States", "US"),
            ("United States of America", "US"),
            ("US", "US"),
            ("de", "DE"),
            ("DEU", "DE"),
            ("276", "DE"),
            ("Germany", "DE"),
            ("UK", "GB"),
            ("United Kingdom", "GB"),
            ("Great Britain", "GB"),
            ("France", "FR"),
            (" Japan ", "JP"),
            ("South Korea", "KR"),
            ("Czech Republic", "CZ"),
            ("The Netherlands", "NL"),
            ("Netherlands", "NL"),
            ("Russia", "RU"),
            ("Vietnam", "VN"),
        ] {
            assert_eq!(
                apply(json!(input), &steps).map_err(|e| e.message),
                Ok(json!(code)),
                "{input}"
            );
        }
        let err = apply(json!("Atlantis"), &steps).unwrap_err();
        assert_eq!(err.code, "invalid_value");
        assert!(err.message.contains("\"Atlantis\""), "{}", err.message);
    }

    #[test]
    fn minor_units_follow_the_currency_exponent() {
        let steps: Vec<Transform> =
            serde_yaml::from_str("[{minor_units: {currency: currency}}]").unwrap();
        let with = |cur: &'static str| {
            move |p: &str| {
                if p == "currency" {
                    json!(cur)
                } else {
                    Value::Null
                }
            }
        };
        assert_eq!(
            apply_with(json!(7200), &steps, &with("usd")).unwrap(),
            json!("72.00")
        );
        assert_eq!(
            apply_with(json!(5), &steps, &with("EUR")).unwrap(),
            json!("0.05")
        );
        assert_eq!(
            apply_with(json!(-150), &steps, &with("eur")).unwrap(),
            json!("-1.50")
        );
        assert_eq!(
            apply_with(json!(5000), &steps, &with("jpy")).unwrap(),
            json!("5000")
        );
        assert_eq!(
            apply_with(json!("1234"), &steps, &with("BHD")).unwrap(),
            json!("1.234")
        );
        assert_eq!(
            apply_with(json!(0), &steps, &with("usd")).unwrap(),
            json!("0.00")
        );
        let err = apply_with(json!(10), &steps, &with("XYZ")).unwrap_err();
        assert!(err.message.contains("\"XYZ\""), "{}", err.message);
        let err = apply_with(json!(10), &steps, &|_| Value::Null).unwrap_err();
        assert!(
            err.message.contains("needs the currency"),
            "{}",
            err.message
        );
        assert!(apply_with(json!(10.5), &steps, &with("usd")).is_err());
        let over: Vec<Transform> =
            serde_yaml::from_str("[{minor_units: {currency: c, exponents: {ISK: 2}}}]").unwrap();
        let isk = |p: &str| if p == "c" { json!("isk") } else { Value::Null };
        assert_eq!(
            apply_with(json!(1000), &over, &isk).unwrap(),
            json!("10.00")
        );
    }

    #[test]
    fn epoch_seconds_and_millis() {
        assert_eq!(
            apply(json!(1_700_000_000), &[Transform::EpochSeconds]).unwrap(),
            json!("2023-11-14T22:13:20+00:00")
        );
        assert_eq!(
            apply(json!("1700000000.25"), &[Transform::EpochSeconds]).unwrap(),
            json!("2023-11-14T22:13:20.250+00:00")
        );
        assert_eq!(
            apply(json!(1_678_441_062_000_i64), &[Transform::EpochMillis]).unwrap(),
            json!("2023-03-10T09:37:42+00:00")
        );
        assert_eq!(
            apply(json!("soon"), &[Transform::EpochSeconds])
                .unwrap_err()
                .code,
            "invalid_number"
        );
    }

    #[test]
    fn salesforce_datetimes_in_every_form_the_apis_write() {
        let s = [Transform::SalesforceDatetime];
        for (input, out) in [
            (
                json!("2024-06-01T10:00:00.000+0000"),
                "2024-06-01T10:00:00+00:00",
            ),
            (
                json!("2024-06-01T10:00:00.000Z"),
                "2024-06-01T10:00:00+00:00",
            ),
            (
                json!("2024-06-01T12:00:00+02:00"),
                "2024-06-01T10:00:00+00:00",
            ),
            (json!("2024-06-01"), "2024-06-01T00:00:00+00:00"),
            (json!(1_717_236_000_000_i64), "2024-06-01T10:00:00+00:00"),
        ] {
            assert_eq!(apply(input.clone(), &s).unwrap(), json!(out), "{input}");
        }
    }

    #[test]
    fn date_format_any_of_and_split_from_the_end() {
        let steps: Vec<Transform> = serde_yaml::from_str(
            r#"[{any_of: [[sap_date], [iso8601], [{date_format: "%m/%d/%Y"}]]}]"#,
        )
        .unwrap();
        assert_eq!(
            apply(json!("3/15/2021"), &steps).unwrap(),
            json!("2021-03-15T00:00:00+00:00")
        );
        assert_eq!(
            apply(json!("/Date(1130112000000)/"), &steps).unwrap(),
            json!("2005-10-24T00:00:00+00:00")
        );
        let err = apply(json!("15/3/2021"), &steps).unwrap_err();
        assert_eq!(err.code, "invalid_date");
        assert!(err.message.contains("nor"), "{}", err.message);
        let steps: Vec<Transform> =
            serde_yaml::from_str(r#"[{split: {separator: "/", index: -1}}]"#).unwrap();
        assert_eq!(
            apply(
                json!("/services/data/v28.0/sobjects/Account/001i0000002ScjRAAS"),
                &steps
            )
            .unwrap(),
            json!("001i0000002ScjRAAS")
        );
        assert_eq!(apply(json!("001A"), &steps).unwrap(), json!("001A"));
    }
}
