//! JSON without silent last-wins: [`StrictValue`] reads like `serde_json::Value`
//! but refuses an object that names a key twice (`{"Id": 1, "Id": 2}`), at any
//! depth, with the key in the message. Ingest reads every record through it (a
//! duplicate key quarantines the record, or fails a JSON document like any
//! invalid JSON), and the API reads request bodies through it (400).
//! The same work as `Value`'s own visitor: one map lookup per key.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A JSON value read with duplicate keys refused.
#[derive(Debug, Clone, PartialEq)]
pub struct StrictValue(pub Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Strict).map(StrictValue)
    }
}

/// Parses `bytes` as JSON, refusing duplicate keys.
pub fn from_slice(bytes: &[u8]) -> serde_json::Result<Value> {
    serde_json::from_slice::<StrictValue>(bytes).map(|s| s.0)
}

struct Strict;

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(Strict)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // Checked before the value is read: the error points at the key.
            match out.entry(key) {
                serde_json::map::Entry::Occupied(e) => return Err(duplicate_key(e.key())),
                serde_json::map::Entry::Vacant(e) => {
                    let StrictValue(v) = map.next_value()?;
                    e.insert(v);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// The error for an object that names `key` twice.
fn duplicate_key<E: de::Error>(key: &str) -> E {
    E::custom(format_args!(
        "duplicate key `{key}` in an object (JSON allows it, but which value is meant is a guess; send each key once)"
    ))
}

/// Adds `key` to an object being read, refused when the object already has it
/// (no silent last-wins). Shared with the document walker of `stream`.
pub fn insert_once<E: de::Error>(
    object: &mut Map<String, Value>,
    key: String,
    value: Value,
) -> Result<(), E> {
    match object.entry(key) {
        serde_json::map::Entry::Occupied(e) => Err(duplicate_key(e.key())),
        serde_json::map::Entry::Vacant(e) => {
            e.insert(value);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth_and_the_rest_reads_like_value() {
        let text = r#"{"a": [1, -2, 3.5, "x", null, true, {"b": {}}], "c": {"d": 1}}"#;
        assert_eq!(
            from_slice(text.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
        let e = from_slice(br#"{"Id": 1, "Name": "a", "Id": 2}"#).unwrap_err();
        assert!(e.to_string().starts_with("duplicate key `Id`"), "{e}");
        assert_eq!((e.line(), e.column()), (1, 27), "at the repeated key");
        let e = from_slice(br#"[{"x": {"y": 1, "y": 1}}]"#).unwrap_err();
        assert!(e.to_string().contains("duplicate key `y`"), "{e}");
    }
}
