//! Printing rows as a table, JSON or CSV.

use anyhow::Result;
use clap::ValueEnum;
use quarry_core::packs::params::ResolvedParams;
use quarry_core::Pack;
use quarry_db::QueryOutput;
use serde_json::Value;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn print(
    format: Format,
    pack: &Pack,
    params: &ResolvedParams,
    out: &QueryOutput,
) -> Result<()> {
    match format {
        Format::Json => {
            let params: serde_json::Map<String, Value> = params
                .0
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect();
            let doc = serde_json::json!({
                "operation": pack.spec.name,
                "version": pack.spec.version,
                "parameters": params,
                "columns": out.columns,
                "row_count": out.rows.len(),
                "truncated": out.truncated,
                "elapsed_ms": out.elapsed_ms,
                "rows": out.row_objects(),
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            w.write_record(out.columns.iter().map(|c| c.name.as_str()))?;
            for r in &out.rows {
                w.write_record(r.iter().map(text))?;
            }
            w.flush()?;
        }
        Format::Table => {
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
            t.set_header(out.columns.iter().map(|c| c.name.as_str()));
            for r in &out.rows {
                t.add_row(r.iter().map(text));
            }
            println!("{t}");
            println!(
                "{} row(s){} in {} ms — {} v{}",
                out.rows.len(),
                if out.truncated {
                    " (truncated by the row cap)"
                } else {
                    ""
                },
                out.elapsed_ms,
                pack.spec.name,
                pack.spec.version
            );
        }
    }
    Ok(())
}

/// `quarry operations --json`: the same documents as `GET /operations`
/// (parameters as JSON Schema with types, allowed values, defaults, bounds and
/// descriptions; columns; cost; versions).
pub fn print_operations_json(set: &quarry_core::PackSet) -> anyhow::Result<()> {
    let ops: Vec<Value> = set.all().map(|p| quarry_api::describe(p)).collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({ "operations": ops }))?
    );
    Ok(())
}

pub fn print_operations(set: &quarry_core::PackSet) {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header([
        "operation",
        "version",
        "cost",
        "cache ttl",
        "parameters",
        "title",
    ]);
    for p in set.all() {
        // The latest version by its name, older ones as name@MAJOR.
        let latest = set
            .packs
            .get(&p.spec.name)
            .is_some_and(|l| std::sync::Arc::ptr_eq(l, p));
        let name = if latest {
            p.spec.name.clone()
        } else {
            p.versioned_name()
        };
        let params: Vec<String> = p
            .spec
            .parameters
            .iter()
            .map(|(n, ps)| {
                let mut line = format!("{n}: {}", ps.kind.as_str());
                match &ps.default {
                    Some(d) if ps.allowed.as_ref().is_some_and(|a| d.as_array() == Some(a)) => {
                        line.push_str(" = (all)")
                    }
                    Some(d) if !d.is_null() => line.push_str(&format!(" = {}", text(d))),
                    Some(_) => {}
                    None => line.push_str(" (required)"),
                }
                if let Some(allowed) = &ps.allowed {
                    let values: Vec<String> = allowed.iter().map(text).collect();
                    line.push_str(&format!(" [{}]", values.join("|")));
                }
                match (ps.minimum, ps.maximum) {
                    (Some(lo), Some(hi)) => line.push_str(&format!(" {lo}..={hi}")),
                    (Some(lo), None) => line.push_str(&format!(" >= {lo}")),
                    (None, Some(hi)) => line.push_str(&format!(" <= {hi}")),
                    (None, None) => {}
                }
                line
            })
            .collect();
        t.add_row([
            name,
            match &p.spec.deprecation {
                Some(d) => format!("{} (deprecated {})", p.spec.version, d.since),
                None => p.spec.version.clone(),
            },
            format!("{:?}", p.spec.cost).to_lowercase(),
            format!("{}s", p.spec.cache_ttl_seconds),
            params.join("\n"),
            p.spec.title.clone(),
        ]);
    }
    println!("{t}");
}
