//! Changes to operations that break their callers, found by comparing the packs
//! with a base (the packs of `origin/main`, say), like `buf breaking` does for
//! protobuf: a removed operation, parameter or column, a parameter whose type,
//! enum, bounds, pattern or default changed so that a call that worked may now
//! be refused or answer differently, a new required parameter, a retyped column,
//! an operation that moved from `light` to `heavy` (callers get a job instead of
//! rows). Raising the major version says the break is intended: such an
//! operation is not compared.

use serde_json::Value;

use crate::diag::{word_position, yaml_key_position, Diagnostic};
use crate::packs::pack::{CostClass, ParamSpec};
use crate::{Pack, PackSet};

fn major(version: &str) -> Option<u64> {
    version.split('.').next()?.parse().ok()
}

/// Every breaking change from `base` to `current`, at the current file's line
/// (at the base file for what was removed).
pub fn breaking_changes(base: &PackSet, current: &PackSet) -> Vec<Diagnostic> {
    let mut d = Vec::new();
    for old in base.all() {
        let name = &old.spec.name;
        // The same major version, whether it is still the latest or now served beside a newer one.
        if let Some(new) = current.get(&old.versioned_name()) {
            compare(old, new, &mut d);
            continue;
        }
        match current.get(name) {
            Some(new) if major(&new.spec.version) > major(&old.spec.version) => {} // an announced break
            _ => d.push(
                Diagnostic::new(
                    &old.yaml_file,
                    (1, 1),
                    format!(
                        "operation `{}` (version {}) was removed: its callers get 404",
                        name, old.spec.version
                    ),
                )
                .help("keep it (mark it deprecated with `deprecation:`) until callers have moved"),
            ),
        }
    }
    d
}

fn compare(old: &Pack, new: &Pack, d: &mut Vec<Diagnostic>) {
    let file = new.yaml_file.as_str();
    let y = new.yaml_text.as_str();
    let next_major = major(&old.spec.version).map_or(2, |m| m + 1);
    let help = format!(
        "keep callers working, or raise the major version (`version: {next_major}.0.0`) to announce the break"
    );
    let mut push = |pos: (usize, usize), msg: String| {
        d.push(Diagnostic::new(file, pos, msg).help(help.clone()));
    };
    let op = &new.spec.name;
    for (pname, was) in &old.spec.parameters {
        let Some(now) = new.spec.parameters.get(pname) else {
            push(
                yaml_key_position(y, &["parameters"]),
                format!("{op}: parameter `{pname}` was removed or renamed: calls that send it are refused"),
            );
            continue;
        };
        let at = yaml_key_position(y, &["parameters", pname]);
        for why in narrowed(was, now) {
            push(at, format!("{op}: parameter `{pname}`: {why}"));
        }
    }
    for (pname, now) in &new.spec.parameters {
        if !old.spec.parameters.contains_key(pname) && now.default.is_none() {
            push(
                yaml_key_position(y, &["parameters", pname]),
                format!(
                    "{op}: new parameter `{pname}` is required: calls that worked are now refused"
                ),
            );
        }
    }
    for col in &old.spec.columns {
        match new.spec.columns.iter().find(|c| c.name == col.name) {
            None => push(
                yaml_key_position(y, &["columns"]),
                format!("{op}: column `{}` was removed or renamed", col.name),
            ),
            Some(c) if c.kind != col.kind => push(
                word_position(y, &format!("name: {}", c.name))
                    .unwrap_or_else(|| yaml_key_position(y, &["columns"])),
                format!(
                    "{op}: column `{}` changed type from {} to {}",
                    c.name,
                    col.kind.as_str(),
                    c.kind.as_str()
                ),
            ),
            Some(_) => {}
        }
    }
    if old.spec.cost == CostClass::Light && new.spec.cost == CostClass::Heavy {
        push(
            yaml_key_position(y, &["cost"]),
            format!("{op}: cost changed from light to heavy: synchronous callers now get 202 and a job instead of rows"),
        );
    }
}

/// How a parameter's declaration refuses or changes calls that worked before.
fn narrowed(was: &ParamSpec, now: &ParamSpec) -> Vec<String> {
    let mut why = Vec::new();
    if was.kind != now.kind {
        why.push(format!(
            "type changed from {} to {}",
            was.kind.as_str(),
            now.kind.as_str()
        ));
        return why;
    }
    match (&was.allowed, &now.allowed) {
        (Some(a), Some(b)) => {
            let gone: Vec<String> = a
                .iter()
                .filter(|v| !b.contains(v))
                .map(Value::to_string)
                .collect();
            if !gone.is_empty() {
                why.push(format!("enum values removed: {}", gone.join(", ")));
            }
        }
        (None, Some(_)) => why.push("an enum now limits its values".to_string()),
        _ => {}
    }
    if let Some(lo) = now.minimum {
        if was.minimum.is_none_or(|w| lo > w) {
            why.push(format!("minimum raised to {lo}"));
        }
    }
    if let Some(hi) = now.maximum {
        if was.maximum.is_none_or(|w| hi < w) {
            why.push(format!("maximum lowered to {hi}"));
        }
    }
    if now.pattern.is_some() && now.pattern != was.pattern {
        why.push("a new pattern limits its values".to_string());
    }
    if let Some(n) = now.max_length {
        if was.max_length.is_none_or(|w| n < w) {
            why.push(format!("max_length lowered to {n}"));
        }
    }
    if let Some(n) = now.max_items {
        if was.max_items.is_none_or(|w| n < w) {
            why.push(format!("max_items lowered to {n}"));
        }
    }
    match (&was.default, &now.default) {
        (Some(_), None) => why.push("it became required (its default was removed)".to_string()),
        (Some(a), Some(b)) if a != b => why.push(format!(
            "default changed from {a} to {b}: calls without it now answer differently"
        )),
        _ => {}
    }
    why
}
