// Tests for the `data_integrity_analysis` operation.
//
// Expected values are worked out by hand from tests/fixtures/small.sql.
// Quarantine rates come from the three ingest files: crm 2 of 8 records = 25 %,
// erp 0 of 3 = 0 %, shop 1 of 4 = 25 %.
// Score = (25*completeness + 20*validity + 15*uniqueness + 20*referential
//          + 10*freshness + 10*(100 - quarantine rate)) / (sum of weights of the
//          non-NULL components).

use quarry_tests::{empty_db, fixture_db};
use serde_json::{json, Map, Value};

const OP: &str = "data_integrity_analysis";

fn num(row: &Map<String, Value>, key: &str) -> Option<f64> {
    match &row[key] {
        Value::Null => None,
        v => Some(
            v.as_f64()
                .unwrap_or_else(|| panic!("{key} is not a number: {v}")),
        ),
    }
}

fn assert_num(row: &Map<String, Value>, key: &str, expected: Option<f64>) {
    let got = num(row, key);
    match (got, expected) {
        (Some(g), Some(e)) => assert!(
            (g - e).abs() < 1e-9,
            "{key}: got {g}, expected {e} in {row:?}"
        ),
        (None, None) => {}
        _ => panic!("{key}: got {got:?}, expected {expected:?} in {row:?}"),
    }
}

fn key(row: &Map<String, Value>) -> (String, String) {
    (
        row["entity"].as_str().unwrap().to_string(),
        row["source_system"].as_str().unwrap().to_string(),
    )
}

fn find<'a>(rows: &'a [Map<String, Value>], entity: &str, source: &str) -> &'a Map<String, Value> {
    rows.iter()
        .find(|r| r["entity"] == entity && r["source_system"] == source)
        .unwrap_or_else(|| panic!("no row for {entity}/{source}"))
}

#[tokio::test]
async fn defaults_score_every_entity_and_source() {
    let db = fixture_db().await;
    let rows = db.run(OP, json!({})).await;
    let keys: Vec<(String, String)> = rows.iter().map(key).collect();
    let expected: Vec<(String, String)> = [
        ("organizations", "crm"),
        ("organizations", "erp"),
        ("organizations", "shop"),
        ("products", "erp"),
        ("products", "shop"),
        ("orders", "erp"),
        ("orders", "shop"),
        ("order_lines", "erp"),
        ("order_lines", "shop"),
        ("opportunities", "crm"),
    ]
    .iter()
    .map(|(e, s)| (e.to_string(), s.to_string()))
    .collect();
    assert_eq!(keys, expected);
    let counts: Vec<i64> = rows
        .iter()
        .map(|r| r["row_count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, vec![6, 3, 2, 2, 2, 5, 3, 6, 3, 5]);

    // crm organizations: name 6/6, email 5/6 (A3 has none), country 6/6 -> 17/18 = 94.44 %.
    let crm = find(&rows, "organizations", "crm");
    assert_num(crm, "completeness_pct", Some(94.44));
    assert_num(crm, "validity_pct", Some(100.0));
    assert_num(crm, "uniqueness_pct", Some(100.0));
    assert_num(crm, "referential_integrity_pct", Some(100.0)); // A2 -> A1, A3 -> A2 resolve
    assert_num(crm, "quarantine_rate_pct", Some(25.0));
    // newest change 2024-05-01 is far more than 30 days before now.
    assert_num(crm, "freshness_pct", Some(0.0));
    assert_eq!(crm["newest_source_update"], "2024-05-01T00:00:00+00:00");
    assert_eq!(crm["details"]["missing_values"], 1);
    assert_eq!(crm["details"]["records_read"], 8);
    assert_eq!(crm["details"]["quarantined"], 2);
    assert_eq!(crm["details"]["open_quarantine"], 2);
    assert_eq!(
        crm["details"]["key_fields"],
        json!(["name", "email", "country_code"])
    );

    // erp organizations: UMBRELLA has no e-mail -> 8/9 = 88.89 %.
    assert_num(
        find(&rows, "organizations", "erp"),
        "completeness_pct",
        Some(88.89),
    );
    // shop organizations: no country on either -> names 2 + e-mails 2 of 6 = 66.67 %.
    assert_num(
        find(&rows, "organizations", "shop"),
        "completeness_pct",
        Some(66.67),
    );

    // erp orders: order 4000005 has no organization -> 4/5 = 80 %.
    // score = (25*100 + 20*100 + 15*100 + 20*80 + 10*0 + 10*100) / 100 = 86.00
    let erp_orders = find(&rows, "orders", "erp");
    assert_num(erp_orders, "referential_integrity_pct", Some(80.0));
    assert_num(erp_orders, "quality_score", Some(86.0));
    assert_eq!(erp_orders["details"]["orphan_rows"], 1);

    // erp order lines: SKU-9 has no product -> 5/6 = 83.33 %; no uniqueness, no
    // source timestamps: score = (2500 + 2000 + 20*83.33 + 10*100) / 75
    //                          = 7166.6 / 75 = 95.5547 -> 95.55
    let erp_lines = find(&rows, "order_lines", "erp");
    assert_num(erp_lines, "referential_integrity_pct", Some(83.33));
    assert_num(erp_lines, "uniqueness_pct", None);
    assert_num(erp_lines, "freshness_pct", None);
    assert_num(erp_lines, "quality_score", Some(95.55));
    assert_eq!(erp_lines["newest_source_update"], Value::Null);

    // shop products: no references, no timestamps, quarantine 25 %:
    // (2500 + 2000 + 1500 + 10*75) / 70 = 6750 / 70 = 96.43
    let shop_products = find(&rows, "products", "shop");
    assert_num(shop_products, "referential_integrity_pct", None);
    assert_num(shop_products, "quality_score", Some(96.43));

    // crm opportunities: all clean, stale, quarantine 25 %:
    // (2500 + 2000 + 1500 + 2000 + 0 + 750) / 100 = 87.50
    assert_num(
        find(&rows, "opportunities", "crm"),
        "quality_score",
        Some(87.5),
    );
}

#[tokio::test]
async fn as_of_and_freshness_days_set_freshness() {
    let db = fixture_db().await;
    // Newest crm organization change is 2024-05-01; as_of 2024-05-16 -> 15 days old.
    let rows = db
        .run(OP, json!({"entity": "organizations", "source_system": "crm", "as_of": "2024-05-16T00:00:00Z"}))
        .await;
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_num(r, "freshness_age_days", Some(15.0));
    // 100 * (1 - 15/30) = 50
    assert_num(r, "freshness_pct", Some(50.0));
    // (25*94.44 + 2000 + 1500 + 2000 + 10*50 + 10*75) / 100 = 9111 / 100 = 91.11
    assert_num(r, "quality_score", Some(91.11));

    let rows = db
        .run(
            OP,
            json!({"entity": "organizations", "source_system": "crm", "as_of": "2024-05-16T00:00:00Z", "freshness_days": 60}),
        )
        .await;
    // 100 * (1 - 15/60) = 75; score = (2361 + 2000 + 1500 + 2000 + 750 + 750) / 100 = 93.61
    assert_num(&rows[0], "freshness_pct", Some(75.0));
    assert_num(&rows[0], "quality_score", Some(93.61));

    // as_of before the newest change: negative age, full freshness.
    let rows = db
        .run(
            OP,
            json!({"entity": "organizations", "source_system": "crm", "as_of": "2024-04-01"}),
        )
        .await;
    assert_num(&rows[0], "freshness_age_days", Some(-30.0));
    assert_num(&rows[0], "freshness_pct", Some(100.0));

    // Shop orders: newest 2024-03-28T10:00Z, as_of 2024-04-07T10:00Z -> 10 days of 30
    // -> 100 * (1 - 10/30) = 66.67
    let rows = db
        .run(
            OP,
            json!({"entity": "orders", "source_system": "shop", "as_of": "2024-04-07T10:00:00Z"}),
        )
        .await;
    assert_num(&rows[0], "freshness_pct", Some(66.67));
}

#[tokio::test]
async fn entity_and_source_system_filter_rows() {
    let db = fixture_db().await;
    let rows = db.run(OP, json!({"entity": "orders"})).await;
    let keys: Vec<(String, String)> = rows.iter().map(key).collect();
    assert_eq!(
        keys,
        vec![
            ("orders".to_string(), "erp".to_string()),
            ("orders".to_string(), "shop".to_string())
        ]
    );

    let rows = db.run(OP, json!({"source_system": "shop"})).await;
    let entities: Vec<&str> = rows.iter().map(|r| r["entity"].as_str().unwrap()).collect();
    assert_eq!(
        entities,
        vec!["organizations", "products", "orders", "order_lines"]
    );
    assert!(rows.iter().all(|r| r["source_system"] == "shop"));

    let rows = db.run(OP, json!({"source_system": "nosuchsystem"})).await;
    assert!(rows.is_empty());
}

#[tokio::test]
async fn detects_invalid_duplicate_and_orphan_rows() {
    let db = fixture_db().await;
    db.exec(
        "INSERT INTO canonical.organizations (source_system, source_id, name, email, country_code, parent_source_id)
         VALUES ('crm', 'B1', 'Bad Mail', 'not-an-email', 'XX', NULL),
                ('crm', 'B2', 'Globex Again', 'AP@globex.example', 'US', 'NOPE');
         INSERT INTO canonical.order_lines (source_system, source_id, order_id, line_number, sku, product_id,
                                            description, quantity, unit_price, net_amount, currency)
         VALUES ('shop', '450789001/2', 6, 2, 'SKU-1', 3, 'Widget', 0, 12.00, 0, 'USD');",
    )
    .await;
    let rows = db
        .run(
            OP,
            json!({"entity": "organizations", "source_system": "crm"}),
        )
        .await;
    let r = &rows[0];
    assert_eq!(r["row_count"], 8);
    // name 8/8, e-mail 7/8 (A3), country 8/8 -> 23/24 = 95.83 %
    assert_num(r, "completeness_pct", Some(95.83));
    // B1: malformed e-mail and unknown country -> 7/8 = 87.5 %
    assert_num(r, "validity_pct", Some(87.5));
    // A4 and B2 share ap@globex.example (case-insensitive) -> 6/8 = 75 %
    assert_num(r, "uniqueness_pct", Some(75.0));
    // B2's parent NOPE does not exist -> 7/8 = 87.5 %
    assert_num(r, "referential_integrity_pct", Some(87.5));
    assert_eq!(r["details"]["invalid_rows"], 1);
    assert_eq!(r["details"]["duplicate_rows"], 2);
    assert_eq!(r["details"]["orphan_rows"], 1);

    // A line with quantity 0: 3 of 4 shop lines valid = 75 %.
    let rows = db
        .run(
            OP,
            json!({"entity": "order_lines", "source_system": "shop"}),
        )
        .await;
    assert_num(&rows[0], "validity_pct", Some(75.0));
}

#[tokio::test]
async fn empty_database_returns_no_rows() {
    let db = empty_db().await;
    assert!(db.run(OP, json!({})).await.is_empty());
}

#[tokio::test]
async fn rejects_invalid_parameters() {
    let db = fixture_db().await;
    let e = db.run_err(OP, json!({"entity": "customers"})).await;
    assert!(e.contains("entity"), "{e}");
    let e = db.run_err(OP, json!({"freshness_days": 0})).await;
    assert!(e.contains("freshness_days"), "{e}");
    let e = db.run_err(OP, json!({"freshness_days": 4000})).await;
    assert!(e.contains("freshness_days"), "{e}");
    let e = db.run_err(OP, json!({"as_of": "yesterday"})).await;
    assert!(e.contains("as_of"), "{e}");
    let e = db.run_err(OP, json!({"source_system": "CRM; drop"})).await;
    assert!(e.contains("source_system"), "{e}");
}
