//! Reading typed values out of result rows, shared by the operation tests.

use serde_json::{Map, Value};

pub type Row = Map<String, Value>;

pub fn num(row: &Row, key: &str) -> Option<f64> {
    match row.get(key) {
        Some(Value::Null) | None => None,
        Some(v) => Some(
            v.as_f64()
                .unwrap_or_else(|| panic!("{key} is not a number: {v}")),
        ),
    }
}

pub fn int(row: &Row, key: &str) -> Option<i64> {
    match row.get(key) {
        Some(Value::Null) | None => None,
        Some(v) => Some(
            v.as_i64()
                .unwrap_or_else(|| panic!("{key} is not an integer: {v}")),
        ),
    }
}

pub fn text<'a>(row: &'a Row, key: &str) -> Option<&'a str> {
    row.get(key).and_then(Value::as_str)
}

pub fn assert_num(row: &Row, key: &str, expected: Option<f64>) {
    let got = num(row, key);
    match (got, expected) {
        (Some(g), Some(e)) => assert!(
            (g - e).abs() < 1e-9,
            "{key}: got {g}, expected {e} in {row:?}"
        ),
        (g, e) => assert_eq!(g, e, "{key} in {row:?}"),
    }
}
