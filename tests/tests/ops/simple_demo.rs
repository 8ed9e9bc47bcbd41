// Tests for the `simple_demo` operation.

use quarry_tests::fixture_db;
use serde_json::{json, Value};

fn row<'a>(
    rows: &'a [serde_json::Map<String, Value>],
    entity: &str,
) -> &'a serde_json::Map<String, Value> {
    rows.iter()
        .find(|r| r["entity"] == json!(entity))
        .unwrap_or_else(|| panic!("no row for {entity}"))
}

#[tokio::test]
async fn counts_every_entity() {
    let db = fixture_db().await;
    let rows = db.run("simple_demo", json!({})).await;
    assert_eq!(rows.len(), 5);
    // Fixture: 11 organizations (crm 6, erp 3, shop 2); Acme Corp updated once -> version 2.
    let o = row(&rows, "organizations");
    assert_eq!(
        (
            o["row_count"].clone(),
            o["versioned_rows"].clone(),
            o["source_systems"].clone()
        ),
        (json!(11), json!(1), json!(3))
    );
    assert_eq!(
        o["latest_source_update"],
        json!("2024-05-01T00:00:00+00:00")
    );
    assert_eq!(row(&rows, "products")["row_count"], json!(4));
    let orders = row(&rows, "orders");
    assert_eq!(orders["row_count"], json!(8));
    assert_eq!(
        orders["latest_source_update"],
        json!("2024-03-28T10:00:00+00:00")
    );
    assert_eq!(row(&rows, "order_lines")["row_count"], json!(9));
    assert_eq!(row(&rows, "opportunities")["source_systems"], json!(1));
}

#[tokio::test]
async fn filters_by_source_system() {
    let db = fixture_db().await;
    let rows = db.run("simple_demo", json!({"source_system": "erp"})).await;
    // erp: 3 customers, 2 products, 5 orders, 6 lines, no opportunities.
    let counts: Vec<Value> = rows.iter().map(|r| r["row_count"].clone()).collect();
    assert_eq!(
        counts,
        vec![json!(3), json!(2), json!(5), json!(6), json!(0)]
    );
    let err = db
        .run_err("simple_demo", json!({"source_system": "erp' OR 1=1 --"}))
        .await;
    assert!(err.contains("source_system"), "{err}");
}
