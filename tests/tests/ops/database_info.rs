// Tests for the `database_info` operation.
//
// Schema canonical (migrations 0001, 0006, 0009): tables companies, company_members,
// countries, entity_history, entity_links, link_decisions, opportunities, order_lines,
// orders, organizations, people, products; views data_version, ingest_files,
// ingest_warnings, quarantine.
// Fixture rows: organizations 11, products 4, orders 8, order_lines 9, opportunities 5,
// entity_links 3, entity_history 1 (Acme Corp's version 1), countries 40
// (17 Europe + 3 North America + 4 Latin America + 8 Asia Pacific + 8 Middle East & Africa),
// ingest_files 3 (all loaded; the newest finished 2024-06-02 00:07:02 UTC),
// quarantine 3, data_version 1 row (version 1 from the migration, +1 by the fixture = 2).

use quarry_tests::{empty_db, fixture_db};
use serde_json::{json, Map, Value};

type Row = Map<String, Value>;

fn table<'a>(rows: &'a [Row], name: &str) -> &'a Row {
    rows.iter()
        .find(|r| r["table_name"] == json!(name))
        .unwrap_or_else(|| panic!("no row for {name}"))
}

fn names(rows: &[Row]) -> Vec<&str> {
    rows.iter()
        .map(|r| r["table_name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn lists_tables_and_views_with_exact_counts() {
    let db = fixture_db().await;
    let rows = db.run("database_info", json!({})).await;
    // Tables first, then views, each by name.
    assert_eq!(
        names(&rows),
        vec![
            "companies",
            "company_members",
            "countries",
            "entity_history",
            "entity_links",
            "link_decisions",
            "opportunities",
            "order_lines",
            "orders",
            "organizations",
            "people",
            "products",
            "data_version",
            "ingest_files",
            "ingest_warnings",
            "quarantine"
        ]
    );
    let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, [vec!["table"; 12], vec!["view"; 4]].concat());

    for (name, count) in [
        ("organizations", 11),
        ("products", 4),
        ("orders", 8),
        ("order_lines", 9),
        ("opportunities", 5),
        ("entity_links", 3),
        ("entity_history", 1),
        ("companies", 0),
        ("link_decisions", 0),
        ("countries", 40),
        ("ingest_files", 3),
        ("quarantine", 3),
        ("data_version", 1),
    ] {
        let r = table(&rows, name);
        assert_eq!(r["row_count"], json!(count), "{name}");
        assert_eq!(r["row_count_exact"], json!(true), "{name}");
    }

    let orgs = table(&rows, "organizations");
    // 15 indexes: pkey, (source_system, source_id) unique, attributes GIN, source_updated,
    // parent, email_domain, vat, segment, name trigram, ingest file (migration 0002),
    // normalised name (migration 0007), the matching rules' stored name key, its first word and prefix,
    // VAT key (migration 0009).
    assert_eq!(orgs["index_count"], json!(15));
    assert_eq!(
        orgs["index_names"],
        json!([
            "organizations_attributes_gin",
            "organizations_email_domain_idx",
            "organizations_ingest_file_idx",
            "organizations_name_first_word_idx",
            "organizations_name_key_idx",
            "organizations_name_prefix3_idx",
            "organizations_name_trgm",
            "organizations_normalized_name_idx",
            "organizations_parent_idx",
            "organizations_pkey",
            "organizations_segment_idx",
            "organizations_source_system_source_id_key",
            "organizations_source_updated_idx",
            "organizations_vat_idx",
            "organizations_vat_key_idx"
        ])
    );
    assert_eq!(orgs["column_count"], json!(29));
    assert!(
        orgs["comment"]
            .as_str()
            .unwrap()
            .starts_with("Customers and accounts"),
        "{:?}",
        orgs["comment"]
    );
    let total = orgs["total_bytes"].as_i64().unwrap();
    let table_bytes = orgs["table_bytes"].as_i64().unwrap();
    let index_bytes = orgs["index_bytes"].as_i64().unwrap();
    assert!(table_bytes > 0 && index_bytes > 0, "{orgs:?}");
    assert!(total >= table_bytes + index_bytes, "{orgs:?}");
    assert!(
        orgs["total_size"].as_str().unwrap().ends_with("kB"),
        "{:?}",
        orgs["total_size"]
    );

    assert_eq!(
        table(&rows, "products")["index_names"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert!(table(&rows, "products")["index_names"]
        .as_array()
        .unwrap()
        .contains(&json!("products_name_trgm")));
    assert_eq!(
        table(&rows, "countries")["index_names"],
        json!(["countries_name_key", "countries_pkey"])
    );

    // Views: no storage, no indexes, documented, estimated_rows null.
    let files = table(&rows, "ingest_files");
    assert_eq!(files["total_bytes"], json!(0));
    assert_eq!(files["index_count"], json!(0));
    assert_eq!(files["index_names"], json!([]));
    assert_eq!(files["estimated_rows"], Value::Null);
    assert_eq!(files["column_count"], json!(18));
    assert!(files["comment"]
        .as_str()
        .unwrap()
        .starts_with("The ingest ledger"));

    // Ingest and data version, the same on every row.
    for r in &rows {
        assert_eq!(r["latest_ingest_at"], json!("2024-06-02T00:07:02+00:00"));
        assert_eq!(r["files_loaded"], json!(3));
        assert_eq!(r["files_failed"], json!(0));
        assert_eq!(r["data_version"], json!(2));
        assert!(r["data_changed_at"].is_string());
    }
}

#[tokio::test]
async fn include_views_false_lists_only_tables() {
    let db = fixture_db().await;
    let rows = db
        .run("database_info", json!({"include_views": false}))
        .await;
    assert_eq!(
        names(&rows),
        vec![
            "companies",
            "company_members",
            "countries",
            "entity_history",
            "entity_links",
            "link_decisions",
            "opportunities",
            "order_lines",
            "orders",
            "organizations",
            "people",
            "products"
        ]
    );
    assert!(rows.iter().all(|r| r["kind"] == json!("table")));
    assert_eq!(table(&rows, "order_lines")["row_count"], json!(9));
}

#[tokio::test]
async fn counts_and_ingest_follow_the_data() {
    let db = fixture_db().await;
    db.exec(
        "INSERT INTO canonical.organizations (source_system, source_id, name) VALUES ('crm', 'A9', 'Hooli');
         INSERT INTO quarry.ingest_files (source_system, object_key, content_sha256, size_bytes, status, started_at, finished_at)
         VALUES ('erp', 'erp-data/broken.json', repeat('d', 64), 10, 'failed', '2024-06-03 00:00:00+00', '2024-06-03 00:00:01+00'),
                ('crm', 'crm-data/accounts-2024-06-02-00.json', repeat('e', 64), 10, 'loaded', '2024-06-02 12:00:00+00', '2024-06-02 12:00:05+00');
         UPDATE quarry.data_version SET version = version + 1;",
    )
    .await;
    let rows = db.run("database_info", json!({})).await;
    // 11 + 1 organizations; 3 + 2 ledger rows.
    assert_eq!(table(&rows, "organizations")["row_count"], json!(12));
    assert_eq!(table(&rows, "ingest_files")["row_count"], json!(5));
    // The failed file finished later but is not a load: the newest load is 12:00:05.
    let r = &rows[0];
    assert_eq!(r["latest_ingest_at"], json!("2024-06-02T12:00:05+00:00"));
    assert_eq!(r["files_loaded"], json!(4));
    assert_eq!(r["files_failed"], json!(1));
    assert_eq!(r["data_version"], json!(3));
}

#[tokio::test]
async fn empty_database_has_zero_counts_and_no_ingest() {
    let db = empty_db().await;
    let rows = db.run("database_info", json!({})).await;
    assert_eq!(rows.len(), 16);
    for name in [
        "people",
        "ingest_warnings",
        "organizations",
        "products",
        "orders",
        "order_lines",
        "opportunities",
        "entity_links",
        "entity_history",
        "ingest_files",
        "quarantine",
    ] {
        assert_eq!(table(&rows, name)["row_count"], json!(0), "{name}");
    }
    // Reference data and the version counter come with the migration.
    assert_eq!(table(&rows, "countries")["row_count"], json!(40));
    assert_eq!(table(&rows, "data_version")["row_count"], json!(1));
    let r = &rows[0];
    assert_eq!(r["latest_ingest_at"], Value::Null);
    assert_eq!(r["files_loaded"], json!(0));
    assert_eq!(r["data_version"], json!(1));
}

#[tokio::test]
async fn rejects_invalid_parameters() {
    let db = fixture_db().await;
    let err = db
        .run_err("database_info", json!({"include_views": "perhaps"}))
        .await;
    assert!(err.contains("include_views"), "{err}");
    let err = db
        .run_err("database_info", json!({"schema": "quarry"}))
        .await;
    assert!(err.contains("schema"), "{err}");
}
