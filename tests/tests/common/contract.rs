//! Every response the HTTP tests receive is checked against the server's own
//! `/openapi.json`: the path and method must be documented, the status must be
//! one of the operation's responses (or `default`), the content type one of
//! that response's, and a JSON body must match its schema, strictly: an object
//! schema that lists its properties accepts no others.

use std::sync::OnceLock;

use serde_json::{json, Value};

/// The document, made strict once per server.
pub struct Contract {
    doc: Value,
}

impl Contract {
    pub fn new(mut doc: Value) -> Contract {
        if let Some(schemas) = doc.pointer_mut("/components/schemas") {
            strict(schemas);
        }
        Contract { doc }
    }

    /// Why the response breaks the contract, if it does.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: Option<&str>,
        raw: &str,
    ) -> Result<(), String> {
        let path = path.split('?').next().unwrap_or(path);
        let Some(item) = self.path_item(path) else {
            // Undocumented paths (the 404 fallback, signed result links) are
            // problem documents or objects the document does not promise.
            return Ok(());
        };
        let Some(op) = item.get(method.to_ascii_lowercase()) else {
            return Ok(());
        };
        let responses = &op["responses"];
        let response = responses
            .get(status.to_string())
            .or_else(|| responses.get("default"))
            .ok_or_else(|| format!("{method} {path}: status {status} is not documented"))?;
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            return if raw.is_empty() || status == 304 {
                Ok(())
            } else {
                Err(format!(
                    "{method} {path} {status}: a body where none is documented"
                ))
            };
        };
        let mime = content_type
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim();
        let media = content.get(mime).ok_or_else(|| {
            format!(
                "{method} {path} {status}: content type {mime:?} is not one of {:?}",
                content.keys().collect::<Vec<_>>()
            )
        })?;
        if !mime.ends_with("json") || mime == "application/x-ndjson" {
            return Ok(());
        }
        let body: Value = serde_json::from_str(raw)
            .map_err(|e| format!("{method} {path} {status}: the body is not JSON: {e}"))?;
        let mut root = media["schema"].clone();
        if let Some(o) = root.as_object_mut() {
            o.insert("components".into(), self.doc["components"].clone());
        }
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&root)
            .map_err(|e| {
                format!("{method} {path} {status}: the documented schema does not compile: {e}")
            })?;
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .take(5)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{method} {path} {status} does not match its documented schema: {}\nbody: {}",
                errors.join("; "),
                raw.chars().take(600).collect::<String>()
            ))
        }
    }

    fn path_item(&self, path: &str) -> Option<&Value> {
        let paths = self.doc["paths"].as_object()?;
        if let Some(item) = paths.get(path) {
            return Some(item);
        }
        let segments: Vec<&str> = path.split('/').collect();
        paths.iter().find_map(|(template, item)| {
            let t: Vec<&str> = template.split('/').collect();
            (t.len() == segments.len()
                && t.iter()
                    .zip(&segments)
                    .all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}'))))
            .then_some(item)
        })
    }
}

/// Object schemas that list their properties get `additionalProperties:
/// false` unless they say otherwise: an undocumented field is a finding.
fn strict(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.contains_key("properties")
                && !m.contains_key("additionalProperties")
                && !m.contains_key("oneOf")
                && !m.contains_key("allOf")
                && !m.contains_key("anyOf")
            {
                m.insert("additionalProperties".into(), json!(false));
            }
            m.values_mut().for_each(strict);
        }
        Value::Array(a) => a.iter_mut().for_each(strict),
        _ => {}
    }
}

/// Where a server keeps its contract once fetched.
pub type Slot = OnceLock<Contract>;
