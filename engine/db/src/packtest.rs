//! Running pack tests (`queries/tests/*.test.yaml`) against a database: each case
//! in one transaction that starts the id sequences at 1, inserts the given rows as
//! the owner (filling the required columns a case leaves out), switches to the
//! reader role, calls the operation through the same path as the API, compares
//! the answer and rolls everything back.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use quarry_core::packs::packtest::{compare, Given, LoadedTests, TestCase};
use quarry_core::packs::params::InputStyle;
use quarry_core::packs::render::quote_ident;
use quarry_core::Pack;
use serde_json::{Map, Value};
use tokio_postgres::{Client, Transaction};

use crate::ops::{prepare, CallOptions, RunError};

/// Columns the insert trigger sets on new rows; a given value wins over it.
const STAMPED: &[&str] = &["version", "created_at", "updated_at"];

/// Statement timeout of a test call: tests run on small data.
const CASE_TIMEOUT: Duration = Duration::from_secs(30);

/// How one case ended.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    /// Empty when the case passed.
    pub problems: Vec<String>,
    /// The answer's rows (all columns), for `quarry test --update`.
    pub rows: Option<Vec<Map<String, Value>>>,
}

/// A column of a table rows are given for.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    data_type: String,
    udt: String,
    /// NOT NULL without a default, identity or generation: a value must be made up.
    required: bool,
    max_len: Option<i32>,
}

/// What the runner knows about the tables of the scratch database.
#[derive(Debug, Default)]
pub struct Catalog {
    tables: HashMap<String, Vec<Column>>,
}

impl Catalog {
    /// Reads the columns of every table of the `canonical` and `quarry` schemas.
    pub async fn read(client: &Client) -> Result<Self> {
        let rows = client
            .query(
                "SELECT table_schema, table_name, column_name, data_type, udt_name,
                        is_nullable = 'NO' AND column_default IS NULL AND is_identity = 'NO'
                          AND is_generated = 'NEVER' AS required,
                        character_maximum_length
                   FROM information_schema.columns
                  WHERE table_schema IN ('canonical', 'quarry')
                  ORDER BY table_schema, table_name, ordinal_position",
                &[],
            )
            .await
            .context("reading the tables' columns")?;
        let mut tables: HashMap<String, Vec<Column>> = HashMap::new();
        for r in rows {
            let key = format!("{}.{}", r.get::<_, String>(0), r.get::<_, String>(1));
            tables.entry(key).or_default().push(Column {
                name: r.get(2),
                data_type: r.get(3),
                udt: r.get(4),
                required: r.get(5),
                max_len: r.get(6),
            });
        }
        Ok(Catalog { tables })
    }

    /// The qualified name of a table as a test writes it (`organizations` is
    /// `canonical.organizations`), or an error listing the tables there are.
    fn table(&self, written: &str) -> Result<(String, &[Column])> {
        let key = if written.contains('.') {
            written.to_string()
        } else {
            format!("canonical.{written}")
        };
        match self.tables.get(&key) {
            Some(cols) => Ok((key, cols)),
            None => {
                let mut known: Vec<&str> = self
                    .tables
                    .keys()
                    .filter(|k| k.starts_with("canonical."))
                    .map(|k| &k["canonical.".len()..])
                    .collect();
                known.sort();
                bail!(
                    "no table `{written}`: canonical tables are {}; other schemas are written as quarry.NAME",
                    known.join(", ")
                )
            }
        }
    }
}

/// Runs one case. Errors are the runner's own (no database); a failing case is
/// a result with problems.
pub async fn run_case(
    client: &mut Client,
    catalog: &Catalog,
    pack: &Pack,
    tests: &LoadedTests,
    case: &TestCase,
) -> Result<CaseResult> {
    let tx = client
        .transaction()
        .await
        .context("starting a test transaction")?;
    let mut result = CaseResult {
        name: case.name.clone(),
        problems: Vec::new(),
        rows: None,
    };
    // Ids follow the order rows are given in, whatever ran before (setval is
    // not undone by a rollback, so every case starts the sequences again).
    tx.execute(
        "SELECT setval(c.oid, 1, false)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind = 'S' AND n.nspname IN ('canonical', 'quarry')",
        &[],
    )
    .await
    .context("restarting the id sequences")?;
    let mut given = tests.given.clone();
    quarry_core::packs::packtest::merge(&mut given, &case.given);
    if let Err(e) = insert_given(&tx, catalog, &given).await {
        result.problems.push(format!("{e:#}"));
        return Ok(result);
    }
    tx.batch_execute(&format!("SET LOCAL ROLE {}", crate::READER_ROLE))
        .await
        .context("switching to the reader role")?;
    let opts = CallOptions {
        timeout: Some(CASE_TIMEOUT),
        allow_raw_sql: true,
        max_rows: None,
        max_bytes: None,
        work_mem_mb: None,
        cap_on_client: false,
    };
    let answer = match prepare(pack, &case.params, InputStyle::Json, opts) {
        Ok((_, q, limits)) => crate::exec::run_in(&tx, &q, limits)
            .await
            .map_err(RunError::from),
        Err(e) => Err(e),
    };
    let _ = tx.rollback().await;
    match (answer, &case.expect.error) {
        (Ok(out), None) => {
            let rows = out.row_objects();
            result.problems = compare(&case.expect, &rows);
            if out.truncated {
                result.problems.push(format!(
                    "the answer was cut at max_rows ({})",
                    pack.spec.max_rows
                ));
            }
            result.rows = Some(rows);
        }
        (Ok(out), Some(_)) => result.problems.push(format!(
            "expected an error, the operation answered {} row(s)",
            out.rows.len()
        )),
        (Err(e), None) => result.problems.push(format!("the call failed: {e}")),
        (Err(e), Some(want)) => {
            let text = e.to_string();
            if let Some(p) = &want.parameter {
                let named = match &e {
                    RunError::Params(errs) => errs.iter().any(|x| &x.parameter == p),
                    _ => false,
                };
                if !named {
                    result.problems.push(format!(
                        "expected a refusal naming parameter `{p}`, got: {text}"
                    ));
                }
            }
            if let Some(m) = &want.message {
                if !text.contains(m.as_str()) {
                    result
                        .problems
                        .push(format!("expected an error containing {m:?}, got: {text}"));
                }
            }
        }
    }
    Ok(result)
}

/// Inserts the given rows table by table, in the order written.
async fn insert_given(tx: &Transaction<'_>, catalog: &Catalog, given: &Given) -> Result<()> {
    for (written, rows) in given {
        let (table, columns) = catalog.table(written)?;
        let (schema, name) = table.split_once('.').unwrap_or(("canonical", &table));
        let qualified = format!("{}.{}", quote_ident(schema), quote_ident(name));
        if rows
            .iter()
            .any(|r| STAMPED.iter().any(|c| r.contains_key(*c)))
        {
            // A row given at version 2 stays at version 2: the insert trigger that
            // stamps new rows (version 1, now()) is off for this case's transaction.
            let stampers = tx
                .query(
                    "SELECT t.tgname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
                      WHERE t.tgrelid = $1::text::regclass AND p.proname = 'stamp_insert'",
                    &[&table],
                )
                .await
                .context("reading the insert triggers")?;
            for r in stampers {
                let trigger: String = r.get(0);
                tx.batch_execute(&format!(
                    "ALTER TABLE {qualified} DISABLE TRIGGER {}",
                    quote_ident(&trigger)
                ))
                .await
                .with_context(|| format!("turning off {trigger} for the given rows"))?;
            }
        }
        for (i, row) in rows.iter().enumerate() {
            let n = i + 1;
            for k in row.keys() {
                if !columns.iter().any(|c| &c.name == k) {
                    bail!(
                        "given row {n} of {written}: no column `{k}` (columns: {})",
                        columns
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            }
            let mut full = row.clone();
            for c in columns
                .iter()
                .filter(|c| c.required && !row.contains_key(&c.name))
            {
                let v = made_up(c, written, n).with_context(|| {
                    format!("given row {n} of {written}: give a value for `{}`", c.name)
                })?;
                full.insert(c.name.clone(), v);
            }
            let cols: Vec<String> = columns
                .iter()
                .filter(|c| full.contains_key(&c.name))
                .map(|c| quote_ident(&c.name))
                .collect();
            let sql = format!(
                "INSERT INTO {qualified} ({c}) SELECT {c} FROM jsonb_populate_record(NULL::{qualified}, $1::jsonb)",
                c = cols.join(", ")
            );
            tx.execute(&sql, &[&Value::Object(full)])
                .await
                .map_err(|e| {
                    let msg = e
                        .as_db_error()
                        .map(|d| d.message().to_string())
                        .unwrap_or_else(|| e.to_string());
                    anyhow::anyhow!("given row {n} of {written} is refused: {msg}")
                })?;
        }
    }
    Ok(())
}

/// A value for a required column a case does not give: unique text per row,
/// the row number, zero, false, an empty object, a fixed date.
fn made_up(c: &Column, table: &str, n: usize) -> Result<Value> {
    let table = table.rsplit('.').next().unwrap_or(table);
    Ok(match c.data_type.as_str() {
        "text" | "character varying" | "character" => {
            let mut s = format!("{table}-{}-{n}", c.name);
            if let Some(max) = c.max_len.and_then(|m| usize::try_from(m).ok()) {
                s.truncate(max);
            }
            Value::from(s)
        }
        "smallint" | "integer" | "bigint" => Value::from(n),
        "numeric" | "double precision" | "real" => Value::from(0),
        "boolean" => Value::from(false),
        "date" => Value::from("2024-01-01"),
        "timestamp with time zone" | "timestamp without time zone" => {
            Value::from("2024-01-01T00:00:00Z")
        }
        "jsonb" | "json" => Value::Object(Map::new()),
        "ARRAY" => Value::Array(Vec::new()),
        "uuid" => Value::from(format!("00000000-0000-4000-8000-{n:012}")),
        other => bail!("no made-up value for type {other} ({})", c.udt),
    })
}
