// Tests for the `relationship_analysis` operation.
//
// Fixture hierarchy (crm): A1 <- A2 <- A3; A4, A5, A6 stand alone.
// Own revenue of the crm accounts, by hand:
//   A1: erp 0000100001 is linked to it (orders 1000 + 600 = 1600) + won O1 5000 = 6600
//   A2: won O5 700                                                           =  700
//   A3: nothing                                                              =    0
//   A4: erp 0000100002 linked (order 2000); O3 is lost                       = 2000
//   A5: nothing                                                              =    0
//   A6: shop 207119001 linked (order 25) + won O4 1000                       = 1025
// Roll-up: A1 = 6600 + 700 + 0 = 7300, A2 = 700 + 0 = 700.

use quarry_tests::fixture_db;
use serde_json::{json, Map, Value};

const OP: &str = "relationship_analysis";

fn money(row: &Map<String, Value>, key: &str) -> f64 {
    row[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {row:?}"))
}

fn ids(rows: &[Map<String, Value>]) -> Vec<&str> {
    rows.iter()
        .map(|r| r["source_id"].as_str().unwrap())
        .collect()
}

fn row<'a>(rows: &'a [Map<String, Value>], source_id: &str) -> &'a Map<String, Value> {
    rows.iter()
        .find(|r| r["source_id"] == source_id)
        .unwrap_or_else(|| panic!("no row for {source_id}"))
}

#[tokio::test]
async fn defaults_walk_the_crm_hierarchy() {
    let db = fixture_db().await;
    let rows = db.run(OP, json!({})).await;
    // Ordered by root, then depth-first by path.
    assert_eq!(ids(&rows), vec!["A1", "A2", "A3", "A4", "A5", "A6"]);
    assert!(rows.iter().all(|r| r["source_system"] == "crm"));

    let expect = [
        // source_id, root, depth, path, children, descendants, own orders, own won, own, rollup
        ("A1", "A1", 0, "A1", 1, 2, 1600.0, 5000.0, 6600.0, 7300.0),
        ("A2", "A1", 1, "A1 > A2", 1, 1, 0.0, 700.0, 700.0, 700.0),
        ("A3", "A1", 2, "A1 > A2 > A3", 0, 0, 0.0, 0.0, 0.0, 0.0),
        ("A4", "A4", 0, "A4", 0, 0, 2000.0, 0.0, 2000.0, 2000.0),
        ("A5", "A5", 0, "A5", 0, 0, 0.0, 0.0, 0.0, 0.0),
        ("A6", "A6", 0, "A6", 0, 0, 25.0, 1000.0, 1025.0, 1025.0),
    ];
    for (id, root, depth, path, children, desc, orders, won, own, rollup) in expect {
        let r = row(&rows, id);
        assert_eq!(r["root_source_id"], root, "{id}");
        assert_eq!(r["depth"], depth, "{id}");
        assert_eq!(r["path"], path, "{id}");
        assert_eq!(r["direct_children"], children, "{id}");
        assert_eq!(r["descendant_count"], desc, "{id}");
        assert_eq!(money(r, "own_order_revenue"), orders, "{id}");
        assert_eq!(money(r, "own_won_opportunity_revenue"), won, "{id}");
        assert_eq!(money(r, "own_revenue"), own, "{id}");
        assert_eq!(money(r, "rollup_revenue"), rollup, "{id}");
        assert_eq!(r["in_cycle"], false, "{id}");
        assert_eq!(r["truncated"], false, "{id}");
        assert_eq!(r["parent_missing"], false, "{id}");
    }
    let a3 = row(&rows, "A3");
    assert_eq!(a3["organization_id"], 3);
    assert_eq!(a3["name"], "Acme Grandchild");
    assert_eq!(a3["parent_source_id"], "A2");
    assert_eq!(a3["root_name"], "Acme Corp");
}

#[tokio::test]
async fn root_source_id_selects_a_subtree() {
    let db = fixture_db().await;
    let rows = db.run(OP, json!({"root_source_id": "A2"})).await;
    assert_eq!(ids(&rows), vec!["A2", "A3"]);
    // Depth and root stay those of the whole tree.
    assert_eq!(rows[0]["depth"], 1);
    assert_eq!(rows[1]["depth"], 2);
    assert_eq!(rows[1]["root_source_id"], "A1");

    let rows = db.run(OP, json!({"root_source_id": "A4"})).await;
    assert_eq!(ids(&rows), vec!["A4"]);

    let rows = db.run(OP, json!({"root_source_id": "nobody"})).await;
    assert!(rows.is_empty());
}

#[tokio::test]
async fn max_depth_truncates_long_chains() {
    let db = fixture_db().await;
    let rows = db.run(OP, json!({"max_depth": 1})).await;
    // A3 can only step up to A2: root A2, depth 1, truncated.
    let a3 = row(&rows, "A3");
    assert_eq!(a3["root_source_id"], "A2");
    assert_eq!(a3["depth"], 1);
    assert_eq!(a3["path"], "A2 > A3");
    assert_eq!(a3["truncated"], true);
    // A1 is only reached from A2 now: 1 descendant, rollup 6600 + 700 = 7300.
    let a1 = row(&rows, "A1");
    assert_eq!(a1["descendant_count"], 1);
    assert_eq!(money(a1, "rollup_revenue"), 7300.0);
    assert_eq!(row(&rows, "A2")["truncated"], false);
    // Rows ordered by root: A1's tree (A1, A2), then A2's (A3), then the rest.
    assert_eq!(ids(&rows), vec!["A1", "A2", "A3", "A4", "A5", "A6"]);
}

#[tokio::test]
async fn source_system_selects_the_hierarchy() {
    let db = fixture_db().await;
    let rows = db.run(OP, json!({"source_system": "erp"})).await;
    assert_eq!(ids(&rows), vec!["0000100001", "0000100002", "0000100003"]);
    // No erp hierarchy: every customer is its own root. Own orders only (the crm
    // accounts linked to them have no orders; opportunities belong to crm).
    let orders: Vec<f64> = rows.iter().map(|r| money(r, "rollup_revenue")).collect();
    assert_eq!(orders, vec![1600.0, 2000.0, 300.0]);
    assert!(rows
        .iter()
        .all(|r| r["depth"] == 0 && r["descendant_count"] == 0));

    let rows = db.run(OP, json!({"source_system": "shop"})).await;
    // 207119000: orders 36 + 50 = 86; 207119001: order 25.
    assert_eq!(ids(&rows), vec!["207119000", "207119001"]);
    assert_eq!(money(&rows[0], "own_revenue"), 86.0);
    assert_eq!(money(&rows[1], "own_revenue"), 25.0);
}

#[tokio::test]
async fn cycles_and_missing_parents_are_flagged() {
    let db = fixture_db().await;
    // C1 and C2 point at each other; C3 hangs below C1; C4's parent does not exist.
    db.exec(
        "INSERT INTO canonical.organizations (source_system, source_id, name, parent_source_id)
         VALUES ('crm', 'C1', 'Loop One', 'C2'),
                ('crm', 'C2', 'Loop Two', 'C1'),
                ('crm', 'C3', 'Below Loop', 'C1'),
                ('crm', 'C4', 'Orphan', 'ZZ');
         INSERT INTO canonical.opportunities (source_system, source_id, name, organization_source_id,
                                              organization_id, amount, is_closed, is_won)
         SELECT 'crm', 'O9', 'Loop deal', 'C3', id, 100.00, true, true
         FROM canonical.organizations WHERE source_system = 'crm' AND source_id = 'C3';",
    )
    .await;
    let rows = db.run(OP, json!({})).await;
    assert_eq!(rows.len(), 10);
    // The untouched trees are unchanged.
    assert_eq!(money(row(&rows, "A1"), "rollup_revenue"), 7300.0);

    // C1's walk: C1 -> C2 -> (C1 again) stop. Root C2, depth 1.
    let c1 = row(&rows, "C1");
    assert_eq!(c1["in_cycle"], true);
    assert_eq!(c1["root_source_id"], "C2");
    assert_eq!(c1["depth"], 1);
    assert_eq!(c1["path"], "C2 > C1");
    // C2 and C3 walk through C1: 2 descendants, C3's 100 rolled up.
    assert_eq!(c1["descendant_count"], 2);
    assert_eq!(c1["direct_children"], 2);
    assert_eq!(money(c1, "rollup_revenue"), 100.0);

    let c2 = row(&rows, "C2");
    assert_eq!(c2["in_cycle"], true);
    assert_eq!(c2["root_source_id"], "C1");
    assert_eq!(c2["path"], "C1 > C2");
    // C1 (directly) and C3 (via C1) walk through C2.
    assert_eq!(c2["descendant_count"], 2);
    assert_eq!(c2["direct_children"], 1);
    assert_eq!(money(c2, "rollup_revenue"), 100.0);

    // C3's walk: C3 -> C1 -> C2 -> (C1 again) stop.
    let c3 = row(&rows, "C3");
    assert_eq!(c3["in_cycle"], true);
    assert_eq!(c3["path"], "C2 > C1 > C3");
    assert_eq!(c3["depth"], 2);
    assert_eq!(money(c3, "own_revenue"), 100.0);

    let c4 = row(&rows, "C4");
    assert_eq!(c4["parent_missing"], true);
    assert_eq!(c4["root_source_id"], "C4");
    assert_eq!(c4["depth"], 0);
    assert_eq!(c4["in_cycle"], false);

    // Order: roots A1, A4, A5, A6, C1 (C2), C2 (C1, C3), C4.
    assert_eq!(
        ids(&rows),
        vec!["A1", "A2", "A3", "A4", "A5", "A6", "C2", "C1", "C3", "C4"]
    );
}

#[tokio::test]
async fn rejects_invalid_parameters() {
    let db = fixture_db().await;
    let e = db.run_err(OP, json!({"max_depth": 0})).await;
    assert!(e.contains("max_depth"), "{e}");
    let e = db.run_err(OP, json!({"max_depth": 51})).await;
    assert!(e.contains("max_depth"), "{e}");
    let e = db
        .run_err(OP, json!({"source_system": "Not A System"}))
        .await;
    assert!(e.contains("source_system"), "{e}");
    let e = db.run_err(OP, json!({"root_source_id": ["A1"]})).await;
    assert!(e.contains("root_source_id"), "{e}");
}
