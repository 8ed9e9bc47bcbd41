//! Rendering: values become bind parameters, identifiers only from declared enums.

use quarry_core::packs::loader::{build_pack_set, check_pack, PackSource};
use quarry_core::packs::params::{InputStyle, ParamValue};
use quarry_core::packs::render::{BindValue, PgType};
use serde_json::json;

const HEADER: &str = "# yaml-language-server: $schema=../schemas/query-pack.schema.json\n";

fn source(params_yaml: &str, sql: &str) -> PackSource {
    let yaml = format!(
        "{HEADER}name: t\nversion: 1.0.0\ntitle: T\ndescription: test\ncost: light\ntimeout_seconds: 5\ncache_ttl_seconds: 0\nmax_rows: 10\nparameters:\n{params_yaml}\ncolumns:\n  - {{name: x, type: text}}\n"
    );
    PackSource {
        yaml_file: "queries/t.yaml".into(),
        yaml_text: yaml,
        sql_file: "queries/t.sql".into(),
        sql_text: Some(sql.into()),
    }
}

fn obj(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().cloned().unwrap_or_default()
}

const PARAMS: &str = "  name: {type: string, description: n, default: \"a\"}\n  n: {type: integer, description: n, default: 3, minimum: 1, maximum: 100}\n  since: {type: date, description: d, default: \"2024-01-01\"}\n  span: {type: interval, description: i, default: \"3 months\"}\n  group_by: {type: identifier, description: g, default: industry, enum: [industry, country]}\n  tags: {type: string_list, description: t, default: [\"x\"]}\n  on: {type: boolean, description: b, default: true}";
const SQL: &str = "SELECT {{ ident(\"group_by\") }} FROM t WHERE name = {{ name }} AND n < {{ n }}\n  AND d >= {{ since }} AND ts > now() - {{ span }} AND tag = ANY({{ tags }})\n  {% if on %}AND on{% endif %}";

#[test]
fn values_become_typed_binds() {
    let set = build_pack_set(&[source(PARAMS, SQL)]).expect("valid pack");
    let pack = set.get("t").expect("pack");
    let params = pack
        .resolve(
            &obj(json!({"name": "x'; DROP TABLE t; --", "group_by": "country"})),
            InputStyle::Json,
        )
        .expect("valid params");
    let q = pack.render(&params).expect("renders");
    assert_eq!(
        q.sql,
        "SELECT \"country\" FROM t WHERE name = $1 AND n < $2\n  AND d >= $3 AND ts > now() - CAST($4 AS interval) AND tag = ANY($5)\n  AND on"
    );
    assert_eq!(q.binds.len(), 5);
    assert_eq!(
        q.binds[0].value,
        BindValue::Text("x'; DROP TABLE t; --".into())
    );
    assert_eq!(q.binds[1].pg_type, PgType::Int8);
    assert_eq!(q.binds[2].pg_type, PgType::Date);
    assert_eq!(
        q.binds[3],
        quarry_core::packs::render::Bind {
            value: BindValue::Text("3 months".into()),
            pg_type: PgType::Interval
        }
    );
    assert_eq!(q.binds[4].value, BindValue::TextArray(vec!["x".into()]));
}

#[test]
fn identifier_outside_enum_is_rejected_before_rendering() {
    let set = build_pack_set(&[source(PARAMS, SQL)]).expect("valid pack");
    let pack = set.get("t").expect("pack");
    let errs = pack
        .resolve(
            &obj(json!({"group_by": "industry\"; DROP TABLE t; --"})),
            InputStyle::Json,
        )
        .expect_err("must be refused");
    assert_eq!(errs[0].parameter, "group_by");
    assert!(
        errs[0].message.contains("choose one of"),
        "{}",
        errs[0].message
    );
}

#[test]
fn template_cannot_smuggle_identifier_text() {
    // Reassigning the parameter inside the template must not bypass the enum check.
    let sql = "{% set group_by = 'x; drop table t' %}SELECT {{ ident(\"group_by\") }} {{ name }} {{ n }} {{ since }} {{ span }} {{ tags }} {{ on }}";
    let (pack, diags) = check_pack(&source(PARAMS, sql));
    assert!(pack.is_none());
    assert!(
        diags
            .iter()
            .any(|d| d.message.contains("not one of the declared enum values")),
        "{diags:?}"
    );
}

#[test]
fn concatenated_text_is_still_bound() {
    let sql = "SELECT {{ ident(\"group_by\") ~ name }} {{ name ~ \"'\" }} {{ n }} {{ since }} {{ span }} {{ tags }} {{ on }}";
    let set = build_pack_set(&[source(PARAMS, sql)]).expect("valid pack");
    let pack = set.get("t").expect("pack");
    let q = pack
        .render(&pack.sample_params().expect("defaults"))
        .expect("renders");
    assert!(q.sql.starts_with("SELECT $1 $2 "), "{}", q.sql);
    assert_eq!(q.binds[0].value, BindValue::Text("\"industry\"a".into()));
}

#[test]
fn text_input_is_parsed_by_declared_type() {
    let set = build_pack_set(&[source(PARAMS, SQL)]).expect("valid pack");
    let pack = set.get("t").expect("pack");
    let params = pack
        .resolve(
            &obj(json!({"n": "42", "on": "false", "tags": "a, b", "span": "1 Year"})),
            InputStyle::Text,
        )
        .expect("valid");
    assert_eq!(params.get("n"), Some(&ParamValue::Integer(42)));
    assert_eq!(params.get("on"), Some(&ParamValue::Boolean(false)));
    assert_eq!(
        params.get("tags"),
        Some(&ParamValue::StringList(vec!["a".into(), "b".into()]))
    );
    assert_eq!(
        params.get("span"),
        Some(&ParamValue::Interval("1 year".into()))
    );
    let errs = pack
        .resolve(
            &obj(json!({"n": "1; drop", "since": "yesterday", "bogus": 1, "span": "1 fortnight"})),
            InputStyle::Text,
        )
        .expect_err("invalid");
    let names: Vec<&str> = errs.iter().map(|e| e.parameter.as_str()).collect();
    assert_eq!(names, vec!["bogus", "n", "since", "span"]);
}

#[test]
fn canonical_json_is_sorted_and_stable() {
    let set = build_pack_set(&[source(PARAMS, SQL)]).expect("valid pack");
    let pack = set.get("t").expect("pack");
    let a = pack
        .resolve(&obj(json!({"n": 5, "name": "z"})), InputStyle::Json)
        .expect("ok");
    let b = pack
        .resolve(&obj(json!({"name": "z", "n": "5"})), InputStyle::Text)
        .expect("ok");
    assert_eq!(a.canonical_json(), b.canonical_json());
    assert!(a
        .canonical_json()
        .starts_with("{\"group_by\":\"industry\",\"n\":5,\"name\":\"z\""));
    let k1 = quarry_core::packs::cache::cache_key(pack, &a, Some(1));
    assert_eq!(k1, quarry_core::packs::cache::cache_key(pack, &b, Some(1)));
    assert_ne!(k1, quarry_core::packs::cache::cache_key(pack, &a, Some(2)));
    assert_eq!(k1.len(), 64);
}
