//! Real exports that third parties made, loaded by the real `quarry ingest` with
//! the shipped mappings: Salesforce REST, CLI, sObject and Data Loader CSV
//! output, SAP OData v2 collections and single entities (expanded and deferred),
//! Shopify REST lists, single objects, webhooks and bulk JSONL, and Stripe lists
//! and objects. Where each file comes from is in tests/fixtures/real/SOURCES.md;
//! their values are never edited.
//!
//! The claims: every file loads, nothing is quarantined, what is left out is
//! left out on purpose (and counted), the canonical values are the ones a
//! person reading the export would expect, a second delivery changes nothing,
//! and a cut-off copy of any shape loads nothing.

use std::path::{Path, PathBuf};

use quarry_tests::{empty_db, repo_root, TestDb};
use serde_json::{json, Value};

fn real() -> PathBuf {
    repo_root().join("tests/fixtures/real")
}

fn ingest(db: &TestDb, paths: &[&Path]) -> Vec<Value> {
    let mut args = vec!["ingest".to_string(), "--json".to_string()];
    args.extend(paths.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = db.quarry(&args);
    let reports: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ingest --json printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // The folder also holds SOURCES.md and the mapping tests' expected files:
    // no mapping claims them, and the report says so.
    let (other, exports): (Vec<Value>, Vec<Value>) = reports
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .partition(|r| r["status"] == json!("skipped"));
    for r in &other {
        let key = r["key"].as_str().unwrap_or_default();
        assert!(
            key.ends_with(".md") || key.ends_with(".expected.json"),
            "an export file no mapping claims: {r}"
        );
    }
    exports
}

async fn value(db: &TestDb, sql: &str) -> Value {
    db.value(sql).await
}

fn report<'a>(reports: &'a [Value], file: &str) -> &'a Value {
    reports
        .iter()
        .find(|r| r["key"].as_str().is_some_and(|k| k.ends_with(file)))
        .unwrap_or_else(|| panic!("no report for {file}"))
}

/// Every canonical row, for comparing two loads.
async fn state(db: &TestDb) -> Value {
    value(
        db,
        "SELECT jsonb_build_object(
           'organizations', (SELECT jsonb_agg(to_jsonb(t) - 'updated_at' ORDER BY id) FROM canonical.organizations t),
           'people', (SELECT jsonb_agg(to_jsonb(t) - 'updated_at' ORDER BY id) FROM canonical.people t),
           'opportunities', (SELECT jsonb_agg(to_jsonb(t) - 'updated_at' ORDER BY id) FROM canonical.opportunities t),
           'orders', (SELECT jsonb_agg(to_jsonb(t) - 'updated_at' ORDER BY id) FROM canonical.orders t),
           'order_lines', (SELECT jsonb_agg(to_jsonb(t) - 'updated_at' ORDER BY id) FROM canonical.order_lines t),
           'products', (SELECT jsonb_agg(to_jsonb(t) - 'updated_at' ORDER BY id) FROM canonical.products t),
           'history', (SELECT count(*) FROM canonical.entity_history),
           'links', (SELECT count(*) FROM canonical.entity_links)) AS s",
    )
    .await
}

#[tokio::test]
async fn real_exports_load_with_no_false_rejection_and_no_silent_loss() {
    let db = empty_db().await;
    let reports = ingest(&db, &[&real()]);
    let data_files = reports.len();
    assert!(
        data_files >= 28,
        "every fixture is an export file: {data_files}"
    );
    for r in &reports {
        assert_eq!(r["status"], json!("loaded"), "{r}");
        assert_eq!(r["quarantined"], json!({}), "no false quarantine: {r}");
        assert_eq!(r["warnings"], json!({}), "{r}");
    }
    // What is left out is left out on purpose, and said.
    let skipped: std::collections::BTreeMap<String, u64> = reports
        .iter()
        .flat_map(|r| {
            r["skipped"]
                .as_object()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.as_u64().unwrap_or(0)))
        })
        .fold(Default::default(), |mut m, (k, v)| {
            *m.entry(k).or_default() += v;
            m
        });
    assert_eq!(
        skipped,
        [
            (
                "failed charge, or draft or void invoice (no revenue)".to_string(),
                1
            ),
            (
                "product or variant line of a bulk export (products are read from order lines)"
                    .to_string(),
                9
            ),
            ("record type \"Organization\" is not mapped".to_string(), 1),
            ("record type \"Whizbang\" is not mapped".to_string(), 4),
        ]
        .into_iter()
        .collect()
    );

    // Salesforce. An Account GET with a country code and the compound address.
    assert_eq!(
        value(&db, "SELECT country_code || ' ' || city FROM canonical.organizations WHERE name = 'Alaska Center for Performing Arts'").await,
        json!("US Anchorage")
    );
    // A query that did not select Id: the Id comes from the record URL.
    assert_eq!(
        value(&db, "SELECT name || ' ' || industry || ' ' || employee_count FROM canonical.organizations WHERE source_id = '001i0000002MD84AAG'").await,
        json!("Global Media Media 14668")
    );
    // Opportunities exported without IsWon/IsClosed: the stage says it.
    assert_eq!(
        value(&db, "SELECT count(*) || ' won, ' || sum(amount) FROM canonical.opportunities WHERE is_won AND is_closed").await,
        json!("6 won, 1000000.00")
    );
    assert_eq!(
        value(
            &db,
            "SELECT is_won FROM canonical.opportunities WHERE name = '50K Fall Widget Order'"
        )
        .await,
        json!(true)
    );
    assert_eq!(
        value(&db, "SELECT organization_source_id FROM canonical.opportunities WHERE name = '50K Fall Widget Order'").await,
        json!("001B000001PDHHEIA5"),
        "the account id from the nested Account's URL"
    );
    // Contacts land as people, linked to their account, also from a child subquery.
    assert_eq!(
        value(&db, "SELECT string_agg(p.name || ' @ ' || coalesce(g.name, p.organization_source_id), ', ' ORDER BY p.name) FROM canonical.people p LEFT JOIN canonical.organizations g ON g.id = p.organization_id").await,
        json!("Jack Rogers @ Burlington Textiles Corp of America, John Smith @ Acme Corporation, Rose Gonzalez @ 0011U00000MV7G6QAL, Sean Forbes @ 0011U00000MV7G6QAL")
    );
    // Data Loader CSV: upper-case headers, scientific notation, every row.
    assert_eq!(
        value(&db, "SELECT annual_revenue::text || ' ' || industry FROM canonical.organizations WHERE source_id = '0015i00000fTetrAAC'").await,
        json!("350000000.00 Apparel")
    );
    assert_eq!(
        value(
            &db,
            "SELECT count(*) FROM canonical.organizations WHERE source_id LIKE '0015e00000%'"
        )
        .await,
        json!(58)
    );
    assert_eq!(
        value(&db, "SELECT attributes->>'ACCOUNTNUMBER' FROM canonical.organizations WHERE source_id = '0015i00000fTetrAAC'").await,
        json!("CD656092"),
        "an unmapped column is kept in attributes"
    );

    // SAP. Business partners from a collection and from a single v2 entity.
    assert_eq!(
        value(&db, "SELECT string_agg(source_id || ' ' || name || ' ' || kind || ' ' || coalesce(country_code, '-') || ' ' || city, '; ' ORDER BY source_id) FROM canonical.organizations WHERE source_system = 'erp' AND source_id IN ('10100001', '1003764', '1000162')").await,
        json!("1000162 City Scooter - Muenchen company - München; 1003764 John Doe person DE Walldorf; 10100001 Inlandskunde DE 1 company DE Schoental")
    );
    assert_eq!(
        value(&db, "SELECT email FROM canonical.organizations WHERE source_system = 'erp' AND source_id = '10100001'").await,
        json!("info@10100001.com")
    );
    // A sales order with its items expanded, and one whose items were deferred.
    assert_eq!(
        value(&db, "SELECT o.total_amount::text || ' ' || count(l.*) || ' lines ' || sum(l.net_amount) FROM canonical.orders o JOIN canonical.order_lines l ON l.order_id = o.id WHERE o.source_id = '4000043' GROUP BY o.total_amount").await,
        json!("2656.24 2 lines 2656.24")
    );
    let deferred = report(&reports, "apigee-devrel-A_SalesOrder-to_Item-deferred.json");
    assert_eq!(deferred["children_not_delivered"], json!(1), "{deferred}");
    assert_eq!(
        value(&db, "SELECT order_date::date::text || ' ' || total_amount FROM canonical.orders WHERE source_id = '9000000232'").await,
        json!("2021-03-15 1356.08")
    );

    // Shopify. A REST list, the same order as a single object, a webhook, customers.
    assert_eq!(
        value(&db, "SELECT o.total_amount::text || ' ' || o.billing_country_code || ' ' || count(l.*) FROM canonical.orders o JOIN canonical.order_lines l ON l.order_id = o.id WHERE o.source_system = 'shop' AND o.source_id = '450789469' GROUP BY o.total_amount, o.billing_country_code").await,
        json!("409.94 US 3")
    );
    assert_eq!(
        value(&db, "SELECT name || ' ' || kind || ' ' || country_code || ' ' || city FROM canonical.organizations WHERE source_system = 'shop' AND source_id = '207119551'").await,
        json!("Bob Norman person US Louisville")
    );
    assert_eq!(
        value(&db, "SELECT o.currency || ' ' || o.total_amount || ' ' || g.name || ' ' || g.country_code || ' ' || g.city FROM canonical.orders o JOIN canonical.organizations g ON g.id = o.organization_id WHERE o.source_id = '18922194698473'").await,
        json!("ARS 1450000.00 Juana Pérez AR Berisso")
    );

    // Stripe: minor units become major units; the invoice carries its lines.
    assert_eq!(
        value(&db, "SELECT string_agg(source_id || ' ' || currency || ' ' || total_amount, ', ' ORDER BY source_id) FROM canonical.orders WHERE source_system = 'stripe'").await,
        json!("ch_198c152iMoKf4jyWWYvyqjTX USD 10.61, ch_3MmlLrLkdIwHu7ix0snN0B15 USD 10.99, in_8vzsBYq9vA4uHF USD 60.00")
    );
    assert_eq!(
        value(&db, "SELECT l.net_amount::text || ' ' || l.description FROM canonical.order_lines l WHERE l.source_id = 'in_8vzsBYq9vA4uHF/sub_8vzs5GcsrEzdnn'").await,
        json!("60.00 Silver Plan")
    );
    assert_eq!(
        value(&db, "SELECT name || ' ' || email FROM canonical.organizations WHERE source_id = 'cus_NffrFeUfNV2Hib'").await,
        json!("Jenny Rosen jennyrosen@example.com")
    );

    // Delivered again: every file is a duplicate and nothing changes.
    let before = state(&db).await;
    let again = ingest(&db, &[&real()]);
    assert!(
        again.iter().all(|r| r["status"] == json!("duplicate")),
        "{again:?}"
    );
    assert_eq!(state(&db).await, before);
}

#[tokio::test]
async fn deferred_items_keep_the_lines_already_stored() {
    let db = empty_db().await;
    let dir = std::env::temp_dir().join(format!("quarry-deferred-{}", std::process::id()));
    let erp = dir.join("erp-data");
    std::fs::create_dir_all(&erp).expect("tmp");
    // The same order exported earlier with its items expanded.
    std::fs::write(
        erp.join("a-expanded.json"),
        r#"{"d": {"results": [{"__metadata": {"type": "API_SALES_ORDER_SRV.A_SalesOrderType"},
            "SalesOrder": "9000000232", "SoldToParty": "1004186", "SalesOrderDate": "/Date(1615766400000)/",
            "TotalNetAmount": "1356.08", "TransactionCurrency": "EUR",
            "to_Item": {"results": [{"SalesOrder": "9000000232", "SalesOrderItem": "10", "Material": "M-1",
              "SalesOrderItemText": "Item", "RequestedQuantity": "2.000", "NetAmount": "1356.08"}]}}]}}"#,
    )
    .expect("write");
    let first = ingest(&db, &[&erp.join("a-expanded.json")]);
    assert_eq!(first[0]["status"], json!("loaded"), "{first:?}");
    let second = ingest(
        &db,
        &[&real().join("erp-data/apigee-devrel-A_SalesOrder-to_Item-deferred.json")],
    );
    assert_eq!(second[0]["children_not_delivered"], json!(1), "{second:?}");
    assert_eq!(
        value(&db, "SELECT count(*) FROM canonical.order_lines l JOIN canonical.orders o ON o.id = l.order_id WHERE o.source_id = '9000000232'").await,
        json!(1),
        "the deferred export did not delete the stored line"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn cut_off_copies_of_every_shape_load_nothing() {
    let db = empty_db().await;
    let dir = std::env::temp_dir().join(format!("quarry-cut-{}", std::process::id()));
    for (file, keep) in [
        (
            "crm-data/dataloader-extract-accounts-custom-fields.csv",
            0.6,
        ),
        (
            "shop-data/shopify-api-ruby-bulk-operation-products.jsonl",
            0.9,
        ),
        ("shop-data/shopify-api-ruby-orders.json", 0.5),
        ("stripe-data/posthog-stripe-charges-list.json", 0.7),
    ] {
        let bytes = std::fs::read(real().join(file)).expect("fixture");
        let cut = &bytes[..(bytes.len() as f64 * keep) as usize];
        let target = dir.join(file);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::write(&target, cut).expect("write");
    }
    let reports = ingest(&db, &[&dir]);
    assert_eq!(reports.len(), 4);
    for r in &reports {
        assert_eq!(r["status"], json!("failed"), "{r}");
        assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()), "{r}");
    }
    assert_eq!(
        value(&db, "SELECT (SELECT count(*) FROM canonical.organizations) + (SELECT count(*) FROM canonical.orders)").await,
        json!(0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_document_of_no_known_shape_fails_and_says_what_was_expected() {
    let db = empty_db().await;
    let dir = std::env::temp_dir().join(format!("quarry-shape-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("erp-data")).expect("mkdir");
    std::fs::create_dir_all(dir.join("shop-data")).expect("mkdir");
    std::fs::write(
        dir.join("erp-data/error.json"),
        r#"{"error": {"code": "005056A509B11EE1B9A8FEC11C21578E", "message": {"lang": "en", "value": "Resource not found"}}}"#,
    )
    .expect("write");
    // Pretty-printed JSON is a document, never NDJSON with every line bad.
    std::fs::write(
        dir.join("shop-data/orders.json"),
        "{\n  \"orders\": [\n    {\"id\": 1, \"created_at\": \"2024-01-01T00:00:00Z\", \"total_price\": \"1.00\",\n     \"line_items\": [{\"id\": 1, \"sku\": \"A\", \"title\": \"A\", \"quantity\": 1, \"price\": \"1.00\"}]}\n  ]\n}\n",
    )
    .expect("write");
    let reports = ingest(&db, &[&dir]);
    let erp = report(&reports, "erp-data/error.json");
    assert_eq!(erp["status"], json!("failed"));
    assert!(
        erp["error"]
            .as_str()
            .is_some_and(|e| e.contains("no record type of mapping erp takes it")),
        "{erp}"
    );
    let shop = report(&reports, "shop-data/orders.json");
    assert_eq!(
        (shop["status"].clone(), shop["inserted"].clone()),
        (json!("loaded"), json!(1)),
        "{shop}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
