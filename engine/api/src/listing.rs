//! What the list handlers share: the checked query string of a list (unknown
//! names and bad values are 422s naming the parameter) and the reader
//! connection they read with.

use std::collections::HashMap;

use quarry_core::packs::params::ParamError;

use crate::{ApiError, AppState};

/// The query of either list, checked: unknown names and bad values are 422s
/// naming the parameter.
pub struct ListQuery<'a> {
    q: &'a HashMap<String, String>,
    pub errors: Vec<ParamError>,
}

impl<'a> ListQuery<'a> {
    pub fn new(q: &'a HashMap<String, String>, known: &[&str]) -> Self {
        let mut errors: Vec<ParamError> = q
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .map(|k| ParamError {
                parameter: k.chars().take(64).collect(),
                message: format!("unknown parameter; this list takes {}", known.join(", ")),
            })
            .collect();
        errors.sort_by(|a, b| a.parameter.cmp(&b.parameter));
        ListQuery { q, errors }
    }

    pub fn text(&mut self, name: &str) -> Option<String> {
        let v = self.q.get(name)?.trim();
        if v.is_empty() {
            return None;
        }
        if v.len() > 200 {
            self.errors.push(ParamError {
                parameter: name.into(),
                message: "longer than 200 characters".into(),
            });
            return None;
        }
        Some(v.to_owned())
    }

    pub fn int(&mut self, name: &str, min: i64, max: i64) -> Option<i64> {
        let raw = self.q.get(name)?;
        match raw.trim().parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.errors.push(ParamError {
                    parameter: name.into(),
                    message: format!("expected a whole number from {min} to {max}"),
                });
                None
            }
        }
    }

    pub fn boolean(&mut self, name: &str) -> bool {
        match self.q.get(name).map(|s| s.trim()) {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                self.errors.push(ParamError {
                    parameter: name.into(),
                    message: "expected true or false".into(),
                });
                false
            }
        }
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidParameters(self.errors))
        }
    }
}

/// The reader connection both lists use.
pub async fn reader(st: &AppState) -> Result<deadpool_postgres::Object, ApiError> {
    st.reader
        .get()
        .await
        .map_err(|_| ApiError::DatabaseUnavailable)
}
