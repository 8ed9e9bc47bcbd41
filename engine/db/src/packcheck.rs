//! The database half of `quarry check`, shared by the CLI and the server's
//! reload: every branch of every pack prepared and EXPLAINed as the reader role,
//! database errors placed at the template's line and column through the
//! branch's source map, declared columns compared by name and type.

use quarry_core::diag::Diagnostic;
use quarry_core::packs::cost::{CostBudget, PlanCost};
use quarry_core::packs::pack::CostClass;
use quarry_core::Pack;
use tokio_postgres::Client;

/// What the database check of a set of packs found.
#[derive(Debug, Default)]
pub struct DbCheck {
    pub diagnostics: Vec<Diagnostic>,
    /// Distinct renderings prepared and explained.
    pub renderings: usize,
    pub operations: usize,
}

/// Prepares and EXPLAINs every branch of `packs` on `reader` (a reader-role
/// connection). Each problem is reported once, with the first branch showing it.
/// With a `budget`, the declared cost class is compared with the plans (see
/// [`quarry_core::packs::cost`]): the most expensive branch of a `light` operation.
pub async fn check_packs(
    reader: &mut Client,
    packs: &[&Pack],
    budget: Option<&CostBudget>,
) -> DbCheck {
    let mut out = DbCheck::default();
    for p in packs {
        let (renders, _) = quarry_core::packs::loader::render_branches(p);
        out.operations += 1;
        let mut reported = std::collections::HashSet::new();
        let mut worst: Option<(PlanCost, String)> = None;
        for r in &renders {
            match crate::exec::explain(reader, &r.query).await {
                Ok(report) => {
                    out.renderings += 1;
                    if let Some(b) = budget {
                        let c = PlanCost::of(&report.plan, b);
                        if worst
                            .as_ref()
                            .is_none_or(|(w, _)| c.total_cost > w.total_cost)
                        {
                            worst = Some((c, r.label.clone()));
                        }
                    }
                    if p.spec.raw_sql {
                        continue;
                    }
                    if let Some(d) = column_diag(p, &report.columns, &r.label) {
                        if reported.insert(without_branch(&d.message)) {
                            out.diagnostics.push(d);
                        }
                    }
                }
                Err(e) => {
                    let d = sql_diag(p, r, &e);
                    let key = format!("{}:{}:{}", d.line, d.column, without_branch(&d.message));
                    if reported.insert(key) {
                        out.diagnostics.push(d);
                    }
                }
            }
        }
        if let (Some(b), Some((c, label))) = (budget, worst) {
            out.diagnostics.extend(cost_diag(p, &c, &label, b));
        }
    }
    out
}

/// The declared cost class against the most expensive branch's plan.
fn cost_diag(p: &Pack, c: &PlanCost, label: &str, b: &CostBudget) -> Option<Diagnostic> {
    let at = quarry_core::diag::yaml_key_position(&p.yaml_text, &["cost"]);
    let with = if label == "the defaults" {
        String::new()
    } else {
        format!(" (with {label})")
    };
    match p.spec.cost {
        CostClass::Light => c.too_heavy(b).map(|why| {
            Diagnostic::new(
                &p.yaml_file,
                at,
                format!("declared light, but its plan is too expensive for a synchronous answer{with}: {why}"),
            )
            .help("declare `cost: heavy` (it then runs as a job), or make the plan cheaper (an index, a filter); the budget is --cost-budget / --large-table-rows")
        }),
        CostClass::Heavy if c.light_enough(b) => Some(
            Diagnostic::new(
                &p.yaml_file,
                at,
                format!(
                    "declared heavy, but its most expensive plan is cheap (estimated cost {:.0}, no large scan or sort){with}: it could answer synchronously",
                    c.total_cost
                ),
            )
            .help("declare `cost: light` unless the data it runs on in production is much larger than here")
            .warning(),
        ),
        CostClass::Heavy => None,
    }
}

/// A problem's text without the branch it was seen with (each problem is
/// reported once, with the first branch that shows it).
pub fn without_branch(message: &str) -> String {
    message
        .split(" (with ")
        .next()
        .unwrap_or(message)
        .to_string()
}

/// Declared columns against the ones the database reports, names and types;
/// the `columns:` block to paste when they differ.
fn column_diag(p: &quarry_core::Pack, got: &[crate::OutColumn], label: &str) -> Option<Diagnostic> {
    use quarry_core::packs::pack::ColumnType;
    let declared = &p.spec.columns;
    let mut problems = Vec::new();
    let mut at = quarry_core::diag::yaml_key_position(&p.yaml_text, &["columns"]);
    if got.len() != declared.len() || got.iter().zip(declared).any(|(g, d)| g.name != d.name) {
        problems.push(format!(
            "declared columns [{}] but the query returns [{}]",
            declared
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            got.iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    } else {
        for (g, d) in got.iter().zip(declared) {
            let want = ColumnType::for_pg(&g.pg_type);
            if want != d.kind {
                if problems.is_empty() {
                    if let Some(pos) =
                        quarry_core::diag::word_position(&p.yaml_text, &format!("name: {}", d.name))
                    {
                        at = pos;
                    }
                }
                problems.push(format!(
                    "column `{}` is declared {} but the query returns {} ({})",
                    d.name,
                    d.kind.as_str(),
                    want.as_str(),
                    g.pg_type
                ));
            }
        }
    }
    if problems.is_empty() {
        return None;
    }
    let with = if label == "the defaults" {
        String::new()
    } else {
        format!(" (with {label})")
    };
    let block: Vec<String> = got
        .iter()
        .map(|g| {
            let desc = declared
                .iter()
                .find(|d| d.name == g.name)
                .map(|d| d.description.as_str())
                .unwrap_or("TODO: what the column holds");
            format!(
                "  - {{name: {}, type: {}, description: {}}}",
                g.name,
                ColumnType::for_pg(&g.pg_type).as_str(),
                serde_json::to_string(desc).unwrap_or_default()
            )
        })
        .collect();
    Some(
        Diagnostic::new(
            &p.yaml_file,
            at,
            format!("{}{with}", problems.join("; ")),
        )
        .help(format!(
            "`columns:` must list what the SELECT returns, in order, with its type; this block does:\ncolumns:\n{}",
            block.join("\n")
        )),
    )
}

/// Maps a database error on a rendered branch back to the template through the
/// branch's source map: the character the database points at, at its template
/// line and column.
fn sql_diag(
    p: &quarry_core::Pack,
    r: &quarry_core::packs::loader::BranchRender,
    e: &crate::QueryError,
) -> Diagnostic {
    let (msg, position, hint) = match e {
        crate::QueryError::Sql {
            sqlstate,
            message,
            position,
            hint,
            ..
        } => (
            format!("the database rejects the rendered SQL: {message} (SQLSTATE {sqlstate})"),
            *position,
            hint.clone(),
        ),
        other => (
            format!("the database could not check the query: {other}"),
            None,
            None,
        ),
    };
    let rendered = r.query.sql.as_str();
    let offset = position.map(|char_pos| {
        rendered
            .chars()
            .take(char_pos.saturating_sub(1) as usize)
            .map(char::len_utf8)
            .sum::<usize>()
    });
    let pos = offset.map_or((1, 1), |o| r.map.locate(o));
    let with = if r.label == "the defaults" {
        String::new()
    } else {
        format!(" (with {})", r.label)
    };
    let mut d = Diagnostic::new(&p.sql_file, pos, format!("{msg}{with}"));
    let mut help = String::new();
    if let Some(o) = offset {
        let o = o.min(rendered.len());
        let line_start = rendered[..o].rfind('\n').map_or(0, |i| i + 1);
        let line_end = rendered[o..].find('\n').map_or(rendered.len(), |i| o + i);
        help.push_str(&format!(
            "rendered SQL: {}",
            rendered[line_start..line_end].trim()
        ));
    }
    if let Some(h) = hint {
        if !help.is_empty() {
            help.push_str("; ");
        }
        help.push_str(&h);
    }
    if !help.is_empty() {
        d = d.help(help);
    }
    d
}
