//! Injection attempts through every parameter of every shipped operation: a
//! hostile value is either refused by validation or travels as a bind value; the
//! SQL text never changes and never contains it.

use quarry_core::packs::params::InputStyle;
use quarry_core::packs::render::BindValue;
use quarry_core::Pack;
use quarry_tests::{load_pack, repo_root};
use serde_json::{json, Map, Value};

const PAYLOAD: &str = "x'); DROP TABLE canonical.organizations; --";

fn render(pack: &Pack, name: &str, value: Value) -> Result<(String, Vec<BindValue>), String> {
    let mut input = Map::new();
    for (n, p) in &pack.spec.parameters {
        if p.default.is_none() {
            if let Some(ex) = &p.example {
                input.insert(n.clone(), ex.clone());
            }
        }
    }
    input.insert(name.to_string(), value);
    let params = pack
        .resolve(&input, InputStyle::Json)
        .map_err(|e| format!("{e:?}"))?;
    let q = pack.render(&params)?;
    Ok((q.sql, q.binds.into_iter().map(|b| b.value).collect()))
}

#[test]
fn hostile_values_never_change_the_sql() {
    let mut packs: Vec<String> = std::fs::read_dir(repo_root().join("queries"))
        .expect("queries")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(str::to_string))
        .collect();
    packs.sort();
    let mut tried = 0;
    for op in packs {
        let pack = load_pack(&op);
        if pack.spec.raw_sql {
            continue; // caller SQL by design; covered by the custom_complex_query tests
        }
        for (name, _) in pack.spec.parameters.clone() {
            for hostile in [
                json!(PAYLOAD),
                json!([PAYLOAD]),
                json!(format!("1 day'; {PAYLOAD}")),
            ] {
                tried += 1;
                let Ok((sql, binds)) = render(&pack, &name, hostile.clone()) else {
                    continue; // refused by validation: fine
                };
                assert!(
                    !sql.contains("DROP TABLE"),
                    "{op}.{name}: payload reached the SQL:\n{sql}"
                );
                // The same shape of benign value renders the very same SQL text.
                let benign = match &hostile {
                    Value::Array(_) => json!(["benign"]),
                    _ => json!("benign value"),
                };
                if let Ok((benign_sql, _)) = render(&pack, &name, benign) {
                    assert_eq!(
                        sql, benign_sql,
                        "{op}.{name}: the value changed the SQL text"
                    );
                }
                let carried = binds.iter().any(|b| match b {
                    BindValue::Text(t) => t.contains("DROP TABLE"),
                    BindValue::TextArray(v) => v.iter().any(|t| t.contains("DROP TABLE")),
                    _ => false,
                });
                assert!(
                    carried,
                    "{op}.{name}: an accepted value must travel as a bind"
                );
            }
        }
    }
    assert!(tried > 50, "expected to try many parameters, tried {tried}");
}

#[test]
fn identifier_parameters_only_take_declared_names() {
    for op in ["customer_analysis"] {
        let pack = load_pack(op);
        for (name, p) in &pack.spec.parameters {
            if p.kind != quarry_core::packs::pack::ParamType::Identifier {
                continue;
            }
            let err =
                render(&pack, name, json!("industry\" ; DROP TABLE x; --")).expect_err("refused");
            assert!(err.contains(name.as_str()), "{err}");
            let allowed = p.allowed.clone().unwrap_or_default();
            for v in allowed {
                let (sql, _) = render(&pack, name, v.clone()).expect("declared value renders");
                assert!(
                    sql.contains(&format!("\"{}\"", v.as_str().unwrap_or_default())),
                    "{op}: quoted identifier in SQL"
                );
            }
        }
    }
}
