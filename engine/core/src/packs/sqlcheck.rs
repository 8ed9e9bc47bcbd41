//! Offline understanding of rendered SQL with PostgreSQL's own parser
//! (libpg_query through the `pg_query` crate, feature `sql-parser`): the same
//! grammar and lexer the server uses, so what it accepts the server accepts, and
//! string literals, comments and dollar quotes are told apart exactly as the
//! server tells them apart.
//!
//! What it finds, each at a byte offset of the rendered SQL (mapped back to the
//! template by [`crate::packs::render::SourceMap`]):
//! - a bind (`{{ name }}`, rendered `$n`) that landed inside a string literal, a
//!   comment, a dollar-quoted string or a quoted identifier: the query would
//!   compare against the text `$n`, silently;
//! - a bind used as a sort, grouping or partition key with no column in it
//!   (`ORDER BY $1`): it sorts by a constant, silently;
//! - more than one statement, or a statement that is not a read: any
//!   non-SELECT, DML in a CTE, `SELECT ... FOR UPDATE/SHARE`, `SELECT INTO`.

/// One problem in a rendered statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlIssue {
    /// Byte offset in the rendered SQL.
    pub offset: usize,
    pub message: String,
    pub help: String,
}

/// True when this build can parse SQL offline.
pub const AVAILABLE: bool = cfg!(feature = "sql-parser");

/// Checks a rendered statement that holds `bind_count` binds (`$1..$n`).
#[cfg(feature = "sql-parser")]
pub fn analyze(sql: &str, bind_count: usize) -> Vec<SqlIssue> {
    imp::analyze(sql, bind_count)
}

/// Without the parser compiled in, nothing is checked offline (the database
/// check still runs); see [`AVAILABLE`].
#[cfg(not(feature = "sql-parser"))]
pub fn analyze(_sql: &str, _bind_count: usize) -> Vec<SqlIssue> {
    Vec::new()
}

/// Functions caller SQL may not call, whatever the database allows: they
/// signal or inspect other sessions, take locks, change settings, reach files,
/// large objects or other servers, sleep, or run a query given as text (which
/// would escape this check). The reader role is also denied them in the
/// database (`engine/db/sql/confine.sql`); this names the problem before the
/// query is sent.
const DENIED_FUNCTIONS: &[&str] = &[
    "set_config",
    "current_setting",
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "database_to_xml",
    "database_to_xmlschema",
    "database_to_xml_and_xmlschema",
    "schema_to_xml",
    "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema",
    "ts_stat",
    "txid_current",
];
/// Name prefixes denied the same way (`pg_` functions are PostgreSQL's
/// administration and introspection functions).
const DENIED_PREFIXES: &[&str] = &["pg_", "dblink", "lo_", "loread", "lowrite"];
/// `pg_` functions that only describe a value: allowed.
/// (`pg_sleep` only waits, within the statement timeout like any slow query.)
const ALLOWED_PG_FUNCTIONS: &[&str] = &[
    "pg_typeof",
    "pg_column_size",
    "pg_size_pretty",
    "pg_size_bytes",
    "pg_sleep",
];

/// Whether caller SQL may call function `name` (schema-qualified or not).
pub fn function_allowed(name: &str) -> bool {
    let base = name.rsplit('.').next().unwrap_or(name).to_ascii_lowercase();
    if ALLOWED_PG_FUNCTIONS.contains(&base.as_str()) {
        return true;
    }
    !(DENIED_FUNCTIONS.contains(&base.as_str())
        || DENIED_PREFIXES.iter().any(|p| base.starts_with(p)))
}

/// Checks caller-supplied SQL (an `sql` parameter) before it is sent: one
/// read-only statement that calls no denied function. Without the parser
/// compiled in, only the database's confinement applies.
#[cfg(feature = "sql-parser")]
pub fn caller_sql(sql: &str) -> Result<(), String> {
    if let Some(i) = imp::analyze(sql, 0).into_iter().next() {
        return Err(format!("{} ({})", i.message, i.help));
    }
    if let Ok(parsed) = pg_query::parse(sql, 0) {
        let mut denied: Vec<String> = parsed
            .functions
            .iter()
            .map(|(f, _)| f.clone())
            .filter(|f| !function_allowed(f))
            .collect();
        denied.sort();
        denied.dedup();
        if !denied.is_empty() {
            return Err(format!(
                "the SQL calls {}, which caller SQL may not call (they act on other sessions, settings, locks, files or servers); query the canonical tables and views instead",
                denied.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    Ok(())
}

/// Without the parser, caller SQL is left to the database's confinement.
#[cfg(not(feature = "sql-parser"))]
pub fn caller_sql(_sql: &str) -> Result<(), String> {
    Ok(())
}

#[cfg(feature = "sql-parser")]
mod imp {
    use pg_query::protobuf::{ScanToken, Token};
    use pg_query::{Node, NodeEnum, NodeRef};

    use super::SqlIssue;

    fn issue(offset: i32, message: impl Into<String>, help: impl Into<String>) -> SqlIssue {
        SqlIssue {
            offset: usize::try_from(offset).unwrap_or(0),
            message: message.into(),
            help: help.into(),
        }
    }

    pub fn analyze(sql: &str, bind_count: usize) -> Vec<SqlIssue> {
        let mut out = Vec::new();
        let tokens = match pg_query::scan(sql) {
            Ok(s) => s.tokens,
            Err(e) => {
                out.push(issue(
                    0,
                    format!("the rendered SQL cannot be read: {e}"),
                    "look for an unclosed quote or comment",
                ));
                return out;
            }
        };
        binds_outside_tokens(sql, &tokens, bind_count, &mut out);
        comment_after_semicolon(&tokens, &mut out);
        // A syntax error is the database check's to report: it has the exact
        // position (libpg_query's message here has none). The lexical checks
        // above hold either way.
        if let Ok(parsed) = pg_query::parse(sql, 0) {
            statements(sql, &parsed.protobuf, &tokens, &mut out);
        }
        out.sort_by_key(|i| i.offset);
        out
    }

    fn text<'a>(sql: &'a str, t: &ScanToken) -> &'a str {
        sql.get(t.start as usize..t.end as usize)
            .unwrap_or_default()
    }

    /// The engine puts the row cap around a pack's statement
    /// (`RenderedQuery::with_row_limit`): it takes off a closing `;`, but not
    /// one with only a comment after it.
    fn comment_after_semicolon(tokens: &[ScanToken], out: &mut Vec<SqlIssue>) {
        let Some(i) = tokens
            .iter()
            .rposition(|t| t.token == Token::Ascii59 as i32)
        else {
            return;
        };
        let rest = &tokens[i + 1..];
        let comment = |t: &ScanToken| {
            t.token == Token::SqlComment as i32 || t.token == Token::CComment as i32
        };
        if !rest.is_empty() && rest.iter().all(comment) {
            out.push(issue(
                tokens[i].start,
                "a comment follows the statement's closing `;`",
                "drop the `;` or put the comment above it: the engine wraps the statement to cap its rows",
            ));
        }
    }

    /// Each `$n` the renderer wrote must be a parameter token of its own.
    fn binds_outside_tokens(
        sql: &str,
        tokens: &[ScanToken],
        binds: usize,
        out: &mut Vec<SqlIssue>,
    ) {
        let mut seen = vec![false; binds + 1];
        for t in tokens.iter().filter(|t| t.token == Token::Param as i32) {
            let n: usize = text(sql, t).trim_start_matches('$').parse().unwrap_or(0);
            match seen.get_mut(n) {
                Some(s) if n > 0 => *s = true,
                _ => out.push(issue(
                    t.start,
                    format!(
                        "the template writes the placeholder `{}` itself",
                        text(sql, t)
                    ),
                    "print values with {{ name }}: the engine numbers the binds",
                )),
            }
        }
        for n in (1..=binds).filter(|n| !seen[*n]) {
            let needle = format!("${n}");
            let hit = tokens.iter().find_map(|t| {
                let s = text(sql, t);
                s.match_indices(&needle)
                    .find(|(i, _)| !s[i + needle.len()..].starts_with(|c: char| c.is_ascii_digit()))
                    .map(|(i, _)| (t, i))
            });
            let Some((t, i)) = hit else { continue };
            let at = t.start + i32::try_from(i).unwrap_or(0);
            let (inside, help) = match Token::try_from(t.token) {
                Ok(Token::Sconst | Token::Usconst | Token::Xconst | Token::Bconst) => {
                    if text(sql, t).starts_with('$') {
                        ("a dollar-quoted string", "a value printed inside quotes is not a value: write {{ name }} without quotes")
                    } else {
                        ("a string literal", "write {{ name }} without quotes; for a pattern, build it in SQL: LIKE '%' || {{ term }} || '%'")
                    }
                }
                Ok(Token::SqlComment | Token::CComment) => (
                    "a comment",
                    "move {{ name }} out of the comment, or write it as {# name #} if it documents the template",
                ),
                Ok(Token::Ident | Token::Uident) => (
                    "a quoted identifier",
                    "identifiers come from identifier parameters: {{ ident(\"name\") }}",
                ),
                _ => ("another token", "print values with {{ name }} where SQL expects a value"),
            };
            out.push(issue(
                at,
                format!("a printed value (bind ${n}) is inside {inside}: the query would use the text `${n}`, not the value"),
                help,
            ));
        }
    }

    fn first_token_at(tokens: &[ScanToken], from: i32) -> i32 {
        tokens
            .iter()
            .find(|t| t.start >= from)
            .map_or(from, |t| t.start)
    }

    fn statements(
        sql: &str,
        parsed: &pg_query::protobuf::ParseResult,
        tokens: &[ScanToken],
        out: &mut Vec<SqlIssue>,
    ) {
        for (i, raw) in parsed.stmts.iter().enumerate() {
            let at = first_token_at(tokens, raw.stmt_location);
            if i > 0 {
                out.push(issue(
                    at,
                    "a second statement: an operation is exactly one SELECT",
                    "remove the `;` and what follows, or make it a CTE (WITH ...) of the one SELECT",
                ));
                continue;
            }
            let kind = raw
                .stmt
                .as_ref()
                .and_then(|s| s.node.as_ref())
                .map(node_name)
                .unwrap_or("an empty statement");
            if kind != "SELECT" {
                out.push(issue(
                    at,
                    format!(
                        "{kind} is not a read: an operation is one SELECT (or WITH ... SELECT)"
                    ),
                    "operations only read; data changes come in through ingest",
                ));
            }
        }
        for (node, _, _, _) in parsed.nodes() {
            match node {
                NodeRef::SelectStmt(s) => {
                    if !s.locking_clause.is_empty() {
                        out.push(issue(
                            locking_position(sql, tokens),
                            "SELECT ... FOR UPDATE/SHARE locks rows: not a read",
                            "remove the locking clause; the reader role runs read-only",
                        ));
                    }
                    if let Some(into) = &s.into_clause {
                        let at = into.rel.as_ref().map_or(0, |r| r.location);
                        out.push(issue(
                            at,
                            "SELECT INTO creates a table: not a read",
                            "remove INTO ...; the answer goes to the caller",
                        ));
                    }
                    for sort in &s.sort_clause {
                        constant_key(sort, "ORDER BY", out);
                    }
                    for g in &s.group_clause {
                        constant_key(g, "GROUP BY", out);
                    }
                }
                NodeRef::WindowDef(w) => window(w, out),
                // An inline OVER (...) is not a node of its own in the walk.
                NodeRef::FuncCall(f) => {
                    if let Some(w) = &f.over {
                        window(w, out);
                    }
                }
                NodeRef::CommonTableExpr(cte) => {
                    if let Some(kind) = cte
                        .ctequery
                        .as_ref()
                        .and_then(|q| q.node.as_ref())
                        .map(node_name)
                        .filter(|k| *k != "SELECT")
                    {
                        out.push(issue(
                            cte.location,
                            format!("the CTE `{}` is {kind}: not a read", cte.ctename),
                            "operations only read; data changes come in through ingest",
                        ));
                    }
                }
                _ => {}
            }
        }
    }

    fn window(w: &pg_query::protobuf::WindowDef, out: &mut Vec<SqlIssue>) {
        for sort in &w.order_clause {
            constant_key(sort, "a window's ORDER BY", out);
        }
        for p in &w.partition_clause {
            constant_key(p, "PARTITION BY", out);
        }
    }

    fn node_name(n: &NodeEnum) -> &'static str {
        match n {
            NodeEnum::SelectStmt(_) => "SELECT",
            NodeEnum::InsertStmt(_) => "INSERT",
            NodeEnum::UpdateStmt(_) => "UPDATE",
            NodeEnum::DeleteStmt(_) => "DELETE",
            NodeEnum::MergeStmt(_) => "MERGE",
            NodeEnum::ExplainStmt(_) => "EXPLAIN",
            NodeEnum::CopyStmt(_) => "COPY",
            NodeEnum::VariableSetStmt(_) => "SET",
            NodeEnum::TransactionStmt(_) => "a transaction statement",
            NodeEnum::CreateTableAsStmt(_) => "CREATE TABLE AS",
            NodeEnum::CallStmt(_) => "CALL",
            NodeEnum::DoStmt(_) => "DO",
            _ => "a statement other than SELECT",
        }
    }

    /// `FOR UPDATE` / `FOR SHARE` / `FOR NO KEY UPDATE` / `FOR KEY SHARE`.
    fn locking_position(sql: &str, tokens: &[ScanToken]) -> i32 {
        tokens
            .windows(2)
            .find(|w| {
                w[0].token == Token::For as i32
                    && matches!(
                        text(sql, &w[1]).to_ascii_lowercase().as_str(),
                        "update" | "share" | "no" | "key"
                    )
            })
            .map_or(0, |w| w[0].start)
    }

    /// A sort/grouping key that holds a bind and no column: a constant.
    fn constant_key(key: &Node, clause: &str, out: &mut Vec<SqlIssue>) {
        let key = match &key.node {
            Some(NodeEnum::SortBy(sb)) => match &sb.node {
                Some(k) => k.as_ref(),
                None => return,
            },
            _ => key,
        };
        let Some(inner) = &key.node else { return };
        let param = match inner {
            NodeEnum::ParamRef(p) => Some(p.location),
            other => {
                let nodes = other.nodes();
                if nodes
                    .iter()
                    .any(|(n, ..)| matches!(n, NodeRef::ColumnRef(_)))
                {
                    None
                } else {
                    nodes.iter().find_map(|(n, ..)| match n {
                        NodeRef::ParamRef(p) => Some(p.location),
                        _ => None,
                    })
                }
            }
        };
        if let Some(at) = param {
            out.push(issue(
                at,
                format!("{clause} a printed value: every row gets the same key, so it orders or groups nothing"),
                "to choose a column, declare a `type: identifier` parameter with an `enum` and print it with {{ ident(\"name\") }}; or use CASE {{ name }} WHEN 'a' THEN col_a ... END",
            ));
        }
    }

    #[cfg(test)]
    mod tests {
        use super::analyze;

        fn messages(sql: &str, binds: usize) -> Vec<(usize, String)> {
            analyze(sql, binds)
                .into_iter()
                .map(|i| (i.offset, i.message))
                .collect()
        }

        #[test]
        fn binds_in_strings_comments_and_dollar_quotes_are_found_where_they_are() {
            let m = messages("SELECT 1 FROM t WHERE a = '$1' AND b LIKE '%$2%'", 2);
            assert_eq!(m.len(), 2, "{m:?}");
            assert_eq!(m[0].0, 27);
            assert!(m[0].1.contains("string literal"), "{m:?}");
            assert_eq!(m[1].0, 44);
            let m = messages("SELECT 1 -- $1\n FROM t WHERE x = $$ $2 $$ AND y = $3", 3);
            assert_eq!(m.len(), 2, "{m:?}");
            assert!(m[0].1.contains("comment"));
            assert!(m[1].1.contains("dollar-quoted"));
            assert!(messages("SELECT $1::text, '$10' FROM t WHERE a = $2", 2).is_empty());
        }

        #[test]
        fn constant_sort_and_group_keys_are_found() {
            let m = messages("SELECT a FROM t ORDER BY $1 DESC", 1);
            assert_eq!(m.len(), 1);
            assert_eq!(m[0].0, 25);
            assert!(m[0].1.starts_with("ORDER BY"));
            assert_eq!(
                messages("SELECT a FROM t GROUP BY a, ($1 || 'x')", 1).len(),
                1
            );
            assert_eq!(
                messages("SELECT rank() OVER (PARTITION BY $1 ORDER BY a) FROM t", 1).len(),
                1
            );
            assert!(messages(
                "SELECT a FROM t ORDER BY CASE $1 WHEN 'x' THEN a ELSE b END, 1",
                1
            )
            .is_empty());
        }

        #[test]
        fn a_comment_after_the_closing_semicolon_is_found() {
            let m = messages("SELECT 1 FROM t; -- the end", 0);
            assert_eq!(m.len(), 1, "{m:?}");
            assert_eq!(m[0].0, 15);
            assert!(m[0].1.contains("closing `;`"), "{m:?}");
            assert!(messages("SELECT 1 FROM t -- the end;\n;\n", 0).is_empty());
            assert!(messages("SELECT 1 FROM t;", 0).is_empty());
        }

        #[test]
        fn only_one_read_statement_passes() {
            let m = messages("SELECT 1; DELETE FROM t", 0);
            assert_eq!(m.len(), 1);
            assert_eq!(m[0].0, 10);
            assert!(m[0].1.contains("second statement"));
            let m = messages(
                "WITH gone AS (DELETE FROM t RETURNING *) SELECT * FROM gone",
                0,
            );
            assert!(m[0].1.contains("CTE `gone` is DELETE"), "{m:?}");
            let m = messages("SELECT * FROM t FOR UPDATE", 0);
            assert_eq!(m[0].0, 16);
            let m = messages("SELECT * INTO copy FROM t", 0);
            assert_eq!(m[0].0, 14);
            let m = messages("UPDATE t SET a = 1", 0);
            assert!(m[0].1.starts_with("UPDATE is not a read"));
            assert!(messages(
                "WITH x AS (SELECT 1) SELECT * FROM x UNION ALL VALUES (2)",
                0
            )
            .is_empty());
        }
    }
}

#[cfg(all(test, feature = "sql-parser"))]
mod caller_sql_tests {
    use super::*;

    #[test]
    fn caller_sql_may_read_but_not_reach_other_sessions() {
        assert_eq!(
            caller_sql("SELECT count(*), pg_typeof(1) FROM canonical.orders"),
            Ok(())
        );
        for (sql, named) in [
            (
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
                "pg_terminate_backend",
            ),
            (
                "SELECT pg_catalog.pg_cancel_backend(1)",
                "pg_catalog.pg_cancel_backend",
            ),
            (
                "SELECT x FROM (SELECT pg_advisory_lock(1) AS x) s",
                "pg_advisory_lock",
            ),
            (
                "SELECT set_config('statement_timeout', '0', false)",
                "set_config",
            ),
            (
                "SELECT query_to_xml('select 1', true, true, '')",
                "query_to_xml",
            ),
            (
                "WITH a AS (SELECT lo_import('/etc/passwd') AS o) SELECT o FROM a",
                "lo_import",
            ),
            ("SELECT pg_read_file('/etc/passwd')", "pg_read_file"),
        ] {
            let e = caller_sql(sql).expect_err(sql);
            assert!(e.contains(&format!("`{named}`")), "{sql}: {e}");
        }
        let e = caller_sql("DELETE FROM canonical.orders").expect_err("a write");
        assert!(e.contains("DELETE") || e.contains("read"), "{e}");
        let e = caller_sql("SELECT 1; SELECT 2").expect_err("two statements");
        assert!(!e.is_empty());
    }
}
