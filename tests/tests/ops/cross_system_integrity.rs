// Tests for the `cross_system_integrity` operation.
//
// Findings in the fixture, by hand:
//   order_unknown_customer  error    erp 4000005 -> customer 0000199999 does not exist
//   missing_in_erp          warning  crm A2 (acme-sub.example, no link; won O5)
//   missing_in_erp          warning  crm A6 (linked only to shop; mueller.example not in erp; won O4)
//   missing_in_crm          warning  erp 0000100003 UMBRELLA (no e-mail, no link; order 4000004)
//   line_unknown_sku        warning  erp 4000005/10 SKU-9 (no erp product SKU-9)
//   missing_in_erp          info     crm A3 (no e-mail, no link, no won opportunity)
//   missing_in_erp          info     crm A5 (initech.example not in erp, no won opportunity)
//   name_mismatch           info     crm A6 "Müller GmbH" vs shop 207119001 "Accounts Payable"
// A1 and A4 have erp links (and the same names, ignoring case); erp 0000100001 and
// 0000100002 have crm links. No linked pair has two countries or two VAT ids.

use quarry_tests::fixture_db;
use serde_json::{json, Map, Value};

const OP: &str = "cross_system_integrity";

fn summary(rows: &[Map<String, Value>]) -> Vec<(String, String, String, String)> {
    rows.iter()
        .map(|r| {
            (
                r["check"].as_str().unwrap().to_string(),
                r["severity"].as_str().unwrap().to_string(),
                r["source_system"].as_str().unwrap().to_string(),
                r["source_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn s(check: &str, severity: &str, system: &str, id: &str) -> (String, String, String, String) {
    (check.into(), severity.into(), system.into(), id.into())
}

#[tokio::test]
async fn defaults_run_every_check_in_severity_order() {
    let db = fixture_db().await;
    let rows = db.run(OP, json!({})).await;
    assert_eq!(
        summary(&rows),
        vec![
            s("order_unknown_customer", "error", "erp", "4000005"),
            s("missing_in_erp", "warning", "crm", "A2"),
            s("missing_in_erp", "warning", "crm", "A6"),
            s("missing_in_crm", "warning", "erp", "0000100003"),
            s("line_unknown_sku", "warning", "erp", "4000005/10"),
            s("missing_in_erp", "info", "crm", "A3"),
            s("missing_in_erp", "info", "crm", "A5"),
            s("name_mismatch", "info", "crm", "A6"),
        ]
    );

    let order = &rows[0];
    assert_eq!(order["related_source_system"], "erp");
    assert_eq!(order["related_source_id"], "0000199999");
    assert_eq!(
        order["detail"]["reason"],
        "customer not found in the source system"
    );
    assert_eq!(order["detail"]["total_amount"], 50.0);

    let a2 = &rows[1];
    assert_eq!(a2["related_source_system"], "erp");
    assert_eq!(a2["related_source_id"], Value::Null);
    assert_eq!(a2["detail"]["email_domain"], "acme-sub.example");
    assert_eq!(a2["detail"]["has_won_opportunity"], true);

    assert_eq!(rows[3]["detail"]["orders"], 1);

    let line = &rows[4];
    assert_eq!(line["related_source_id"], "SKU-9");
    assert_eq!(line["detail"]["order_source_id"], "4000005");
    assert_eq!(line["detail"]["known_in"], json!([]));

    let name = &rows[7];
    assert_eq!(name["related_source_system"], "shop");
    assert_eq!(name["related_source_id"], "207119001");
    assert_eq!(name["detail"]["value"], "Müller GmbH");
    assert_eq!(name["detail"]["related_value"], "Accounts Payable");
    assert_eq!(name["detail"]["link_method"], "email_domain");
}

#[tokio::test]
async fn checks_selects_the_checks_that_run() {
    let db = fixture_db().await;
    let rows = db
        .run(OP, json!({"checks": ["order_unknown_customer"]}))
        .await;
    assert_eq!(
        summary(&rows),
        vec![s("order_unknown_customer", "error", "erp", "4000005")]
    );

    let rows = db
        .run(
            OP,
            json!({"checks": ["missing_in_crm", "vat_mismatch", "line_unknown_sku"]}),
        )
        .await;
    assert_eq!(
        summary(&rows),
        vec![
            s("missing_in_crm", "warning", "erp", "0000100003"),
            s("line_unknown_sku", "warning", "erp", "4000005/10"),
        ]
    );

    let rows = db.run(OP, json!({"checks": []})).await;
    assert!(rows.is_empty());
}

#[tokio::test]
async fn limit_caps_the_findings_in_order() {
    let db = fixture_db().await;
    let rows = db.run(OP, json!({"limit": 2})).await;
    assert_eq!(
        summary(&rows),
        vec![
            s("order_unknown_customer", "error", "erp", "4000005"),
            s("missing_in_erp", "warning", "crm", "A2"),
        ]
    );
}

#[tokio::test]
async fn compares_fields_of_linked_records() {
    let db = fixture_db().await;
    db.exec(
        // erp ACME moves to Austria: country differs from crm A1 (DE).
        "UPDATE canonical.organizations SET country_code = 'AT' WHERE source_system = 'erp' AND source_id = '0000100001';
         -- Same VAT written differently: not a mismatch.
         UPDATE canonical.organizations SET vat_id = 'de 123 456 789' WHERE source_system = 'crm' AND source_id = 'A1';
         -- Different VAT on A4 vs erp GLOBEX (US999999999): a mismatch.
         UPDATE canonical.organizations SET vat_id = 'US000000000' WHERE source_system = 'crm' AND source_id = 'A4';
         -- GLOBEX renamed, but its legal name still matches A4's name: not a mismatch.
         UPDATE canonical.organizations SET name = 'Globex Holding' WHERE source_system = 'erp' AND source_id = '0000100002';",
    )
    .await;
    let rows = db
        .run(
            OP,
            json!({"checks": ["country_mismatch", "name_mismatch", "vat_mismatch"]}),
        )
        .await;
    assert_eq!(
        summary(&rows),
        vec![
            s("vat_mismatch", "error", "crm", "A4"),
            s("country_mismatch", "warning", "crm", "A1"),
            s("name_mismatch", "info", "crm", "A6"),
        ]
    );
    assert_eq!(rows[0]["related_source_id"], "0000100002");
    assert_eq!(rows[0]["detail"]["value"], "US000000000");
    assert_eq!(rows[0]["detail"]["related_value"], "US999999999");
    assert_eq!(rows[1]["related_source_system"], "erp");
    assert_eq!(rows[1]["related_source_id"], "0000100001");
    assert_eq!(rows[1]["detail"]["value"], "DE");
    assert_eq!(rows[1]["detail"]["related_value"], "AT");
}

#[tokio::test]
async fn unknown_skus_and_unresolved_customers() {
    let db = fixture_db().await;
    db.exec(
        // A shop line selling SKU-2, which only erp knows.
        "INSERT INTO canonical.order_lines (source_system, source_id, order_id, line_number, sku, description,
                                            quantity, unit_price, net_amount, currency)
         VALUES ('shop', '450789002/2', 7, 2, 'SKU-2', 'Service Hour', 1, 150.00, 150.00, 'USD');
         -- A shop order whose customer exists but was not resolved.
         INSERT INTO canonical.orders (source_system, source_id, order_number, customer_source_id, organization_id,
                                       order_date, total_amount)
         VALUES ('shop', '450789004', '#1003', '207119000', NULL, '2024-04-01T10:00:00Z', 10.00);",
    )
    .await;
    let rows = db
        .run(
            OP,
            json!({"checks": ["line_unknown_sku", "order_unknown_customer"]}),
        )
        .await;
    assert_eq!(
        summary(&rows),
        vec![
            s("order_unknown_customer", "error", "erp", "4000005"),
            s("order_unknown_customer", "error", "shop", "450789004"),
            s("line_unknown_sku", "warning", "erp", "4000005/10"),
            s("line_unknown_sku", "warning", "shop", "450789002/2"),
        ]
    );
    assert_eq!(rows[1]["detail"]["reason"], "organization not resolved");
    assert_eq!(rows[1]["related_source_id"], "207119000");
    assert_eq!(rows[3]["related_source_id"], "SKU-2");
    assert_eq!(rows[3]["detail"]["known_in"], json!(["erp"]));
}

#[tokio::test]
async fn deleted_organizations_are_ignored() {
    let db = fixture_db().await;
    // A5 deleted: its missing_in_erp finding goes. erp GLOBEX deleted: A4 loses its
    // only erp counterpart (link and e-mail domain) and is reported, as info (O3 was lost).
    db.exec(
        "UPDATE canonical.organizations SET is_deleted = true
         WHERE (source_system = 'crm' AND source_id = 'A5') OR (source_system = 'erp' AND source_id = '0000100002');",
    )
    .await;
    let rows = db
        .run(OP, json!({"checks": ["missing_in_erp", "missing_in_crm"]}))
        .await;
    assert_eq!(
        summary(&rows),
        vec![
            s("missing_in_erp", "warning", "crm", "A2"),
            s("missing_in_erp", "warning", "crm", "A6"),
            s("missing_in_crm", "warning", "erp", "0000100003"),
            s("missing_in_erp", "info", "crm", "A3"),
            s("missing_in_erp", "info", "crm", "A4"),
        ]
    );
}

#[tokio::test]
async fn rejects_invalid_parameters() {
    let db = fixture_db().await;
    let e = db.run_err(OP, json!({"checks": ["bogus_check"]})).await;
    assert!(e.contains("checks"), "{e}");
    let e = db.run_err(OP, json!({"limit": 0})).await;
    assert!(e.contains("limit"), "{e}");
    let e = db.run_err(OP, json!({"limit": "many"})).await;
    assert!(e.contains("limit"), "{e}");
}
