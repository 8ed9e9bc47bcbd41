// Tests for the `customer_analysis` operation.
//
// Fixture customers (organizations 1..11) and their orders (orders.total_amount):
//   1 Acme Corp        crm  Manufacturing DE Platinum (after the update)  no orders
//   2 Acme Subsidiary  crm  Manufacturing DE Silver                        no orders
//   3 Acme Grandchild  crm  Manufacturing AT Bronze                        no orders
//   4 Globex           crm  Finance       US Gold                          no orders
//   5 Initech          crm  Finance       US Silver                        no orders
//   6 Müller GmbH      crm  Retail        CH Platinum                      no orders
//   7 ACME CORP        erp  -             DE -        orders 1, 2: 1000 + 600 = 1600 (2 orders)
//   8 GLOBEX           erp  -             US -        order 3: 2000 (1 order)
//   9 UMBRELLA         erp  -             JP -        order 4: 300 (1 order)
//  10 Gus García       shop (person) -    -  -        orders 6, 8: 36 + 50 = 86 (2 orders)
//  11 Accounts Payable shop -             -  -        order 7: 25 (1 order)
// Order 5 (50.00) has no organization and belongs to no customer.
// All customers together: 1600 + 2000 + 300 + 86 + 25 = 4011.

use quarry_tests::{empty_db, fixture_db};
use serde_json::{json, Value};

use crate::support::{assert_num, int, num, text, Row};

fn find(rows: &[Row], org_id: i64) -> &Row {
    rows.iter()
        .find(|r| int(r, "organization_id") == Some(org_id))
        .unwrap_or_else(|| panic!("no row for organization {org_id}"))
}

#[tokio::test]
async fn defaults_rank_every_customer_within_its_industry() {
    let db = fixture_db().await;
    let rows = db.run("customer_analysis", json!({})).await;

    // All 11 organizations, one row each; segments ordered by name ('(' sorts first).
    assert_eq!(rows.len(), 11);
    let order: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            (
                text(r, "segment").unwrap().to_string(),
                int(r, "organization_id").unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, i64)> = [
        ("(unknown)", 8),
        ("(unknown)", 7),
        ("(unknown)", 9),
        ("(unknown)", 10),
        ("(unknown)", 11),
        ("Finance", 4),
        ("Finance", 5),
        ("Manufacturing", 1),
        ("Manufacturing", 2),
        ("Manufacturing", 3),
        ("Retail", 6),
    ]
    .iter()
    .map(|(s, i)| (s.to_string(), *i))
    .collect();
    assert_eq!(order, expected);

    // '(unknown)' industry: organizations 7..11, lifetime value 4011, orders 2+1+1+2+1 = 7.
    for r in rows.iter().take(5) {
        assert_eq!(int(r, "segment_size"), Some(5));
        assert_eq!(int(r, "segment_active_customers"), Some(5));
        assert_num(r, "segment_lifetime_value", Some(4011.0));
        assert_eq!(int(r, "segment_order_count"), Some(7));
    }
    // Ranked by lifetime value: 2000 > 1600 > 300 > 86 > 25; percent rank (rank-1)/(5-1).
    let globex = find(&rows, 8);
    assert_eq!(text(globex, "customer_name"), Some("GLOBEX"));
    assert_eq!(text(globex, "source_system"), Some("erp"));
    assert_eq!(text(globex, "source_id"), Some("0000100002"));
    assert_num(globex, "lifetime_value", Some(2000.0));
    assert_num(globex, "metric_value", Some(2000.0));
    assert_eq!(int(globex, "metric_rank"), Some(1));
    assert_num(globex, "metric_percent_rank", Some(0.0));
    // 2000 / 4011 = 0.49863 -> 49.86 %
    assert_num(globex, "value_share_pct", Some(49.86));

    let acme = find(&rows, 7);
    assert_num(acme, "lifetime_value", Some(1600.0));
    assert_eq!(int(acme, "order_count"), Some(2));
    assert_num(acme, "average_order_value", Some(800.0)); // 1600 / 2
    assert_eq!(
        text(acme, "first_order_at"),
        Some("2024-01-15T10:00:00+00:00")
    );
    assert_eq!(
        text(acme, "last_order_at"),
        Some("2024-02-10T10:00:00+00:00")
    );
    assert_eq!(int(acme, "metric_rank"), Some(2));
    assert_eq!(int(acme, "metric_dense_rank"), Some(2));
    assert_num(acme, "metric_percent_rank", Some(0.25));
    assert_num(acme, "value_share_pct", Some(39.89)); // 1600 / 4011 = 0.39890

    let gus = find(&rows, 10);
    assert_eq!(text(gus, "kind"), Some("person"));
    assert_num(gus, "lifetime_value", Some(86.0));
    assert_num(gus, "average_order_value", Some(43.0)); // 86 / 2
    assert_eq!(int(gus, "metric_rank"), Some(4));
    assert_num(gus, "metric_percent_rank", Some(0.75));
    assert_num(gus, "value_share_pct", Some(2.14)); // 86 / 4011 = 0.02144

    let ap = find(&rows, 11);
    assert_eq!(int(ap, "metric_rank"), Some(5));
    assert_num(ap, "metric_percent_rank", Some(1.0));
    assert_num(ap, "value_share_pct", Some(0.62)); // 25 / 4011 = 0.00623

    // Customers without orders: lifetime value 0, no average, no dates; all tie at rank 1.
    let initech = find(&rows, 5);
    assert_eq!(text(initech, "segment"), Some("Finance"));
    assert_eq!(int(initech, "segment_size"), Some(2));
    assert_eq!(int(initech, "segment_active_customers"), Some(0));
    assert_num(initech, "lifetime_value", Some(0.0));
    assert_eq!(int(initech, "order_count"), Some(0));
    assert_num(initech, "average_order_value", None);
    assert_eq!(initech.get("first_order_at"), Some(&Value::Null));
    assert_eq!(int(initech, "metric_rank"), Some(1));
    assert_eq!(int(initech, "metric_dense_rank"), Some(1));
    // Share of a segment whose total is 0 is undefined.
    assert_num(initech, "value_share_pct", None);
    assert_eq!(int(find(&rows, 1), "segment_size"), Some(3));
    assert_eq!(int(find(&rows, 6), "segment_size"), Some(1));
}

#[tokio::test]
async fn walkthrough_call_matches_the_defaults() {
    let db = fixture_db().await;
    let explicit = db
        .run(
            "customer_analysis",
            json!({"metric": "lifetime_value", "group_by": "industry"}),
        )
        .await;
    let defaults = db.run("customer_analysis", json!({})).await;
    assert_eq!(explicit, defaults);
    assert_eq!(explicit.len(), 11);
}

#[tokio::test]
async fn order_count_metric_by_source_system_shares_ranks_on_ties() {
    let db = fixture_db().await;
    let rows = db
        .run(
            "customer_analysis",
            json!({"group_by": "source_system", "metric": "order_count"}),
        )
        .await;
    assert_eq!(rows.len(), 11);
    // crm: 6 customers without orders -> all rank 1 with metric 0.
    for id in 1..=6 {
        let r = find(&rows, id);
        assert_eq!(text(r, "segment"), Some("crm"));
        assert_eq!(int(r, "segment_size"), Some(6));
        assert_num(r, "metric_value", Some(0.0));
        assert_eq!(int(r, "metric_rank"), Some(1));
    }
    // erp: ACME CORP 2 orders (rank 1), GLOBEX and UMBRELLA 1 order each (rank 2, dense 2);
    // percent rank (2-1)/(3-1) = 0.5. Segment: 1600 + 2000 + 300 = 3900, 4 orders.
    let acme = find(&rows, 7);
    assert_eq!(text(acme, "segment"), Some("erp"));
    assert_num(acme, "metric_value", Some(2.0));
    assert_eq!(int(acme, "metric_rank"), Some(1));
    assert_num(acme, "segment_lifetime_value", Some(3900.0));
    assert_eq!(int(acme, "segment_order_count"), Some(4));
    for id in [8, 9] {
        let r = find(&rows, id);
        assert_num(r, "metric_value", Some(1.0));
        assert_eq!(int(r, "metric_rank"), Some(2));
        assert_eq!(int(r, "metric_dense_rank"), Some(2));
        assert_num(r, "metric_percent_rank", Some(0.5));
    }
    // Ties are listed by organization id: erp rows are 7, 8, 9.
    let erp: Vec<i64> = rows
        .iter()
        .filter(|r| text(r, "segment") == Some("erp"))
        .map(|r| int(r, "organization_id").unwrap())
        .collect();
    assert_eq!(erp, vec![7, 8, 9]);
    // Value share stays the share of lifetime value: 1600 / 3900 = 41.03 %.
    assert_num(acme, "value_share_pct", Some(41.03));
    // shop: Gus 2 orders rank 1, Accounts Payable 1 order rank 2; segment 86 + 25 = 111.
    assert_eq!(int(find(&rows, 10), "metric_rank"), Some(1));
    assert_eq!(int(find(&rows, 11), "metric_rank"), Some(2));
    assert_num(find(&rows, 11), "segment_lifetime_value", Some(111.0));
}

#[tokio::test]
async fn average_order_value_by_region_ranks_customers_without_orders_last() {
    let db = fixture_db().await;
    let rows = db
        .run(
            "customer_analysis",
            json!({"group_by": "region", "metric": "average_order_value"}),
        )
        .await;
    // Regions: Europe = DE(1,2,7) + AT(3) + CH(6) = 5; North America = US(4,5,8) = 3;
    // Asia Pacific = JP(9) = 1; (unknown) = no country (10, 11) = 2.
    assert_eq!(int(find(&rows, 3), "segment_size"), Some(5));
    assert_eq!(text(find(&rows, 3), "segment"), Some("Europe"));
    assert_eq!(text(find(&rows, 4), "segment"), Some("North America"));
    assert_eq!(int(find(&rows, 4), "segment_size"), Some(3));
    assert_eq!(text(find(&rows, 9), "segment"), Some("Asia Pacific"));
    assert_eq!(text(find(&rows, 10), "segment"), Some("(unknown)"));

    // Europe: only ACME CORP has orders, average 800 -> rank 1; the four others have no
    // average (NULL metric) and share rank 2, percent rank (2-1)/(5-1) = 0.25.
    let acme = find(&rows, 7);
    assert_num(acme, "metric_value", Some(800.0));
    assert_eq!(int(acme, "metric_rank"), Some(1));
    for id in [1, 2, 3, 6] {
        let r = find(&rows, id);
        assert_num(r, "metric_value", None);
        assert_eq!(int(r, "metric_rank"), Some(2));
        assert_eq!(int(r, "metric_dense_rank"), Some(2));
        assert_num(r, "metric_percent_rank", Some(0.25));
    }
    // (unknown): Gus 86/2 = 43 beats Accounts Payable 25/1 = 25.
    assert_num(find(&rows, 10), "metric_value", Some(43.0));
    assert_eq!(int(find(&rows, 10), "metric_rank"), Some(1));
    assert_eq!(int(find(&rows, 11), "metric_rank"), Some(2));
}

#[tokio::test]
async fn segment_level_returns_one_ranked_row_per_segment() {
    let db = fixture_db().await;
    let rows = db
        .run(
            "customer_analysis",
            json!({"group_by": "source_system", "level": "segment"}),
        )
        .await;
    // erp 3900 > shop 111 > crm 0.
    let segments: Vec<&str> = rows.iter().map(|r| text(r, "segment").unwrap()).collect();
    assert_eq!(segments, vec!["erp", "shop", "crm"]);

    let erp = &rows[0];
    assert_eq!(int(erp, "segment_size"), Some(3));
    assert_eq!(int(erp, "segment_active_customers"), Some(3));
    assert_num(erp, "lifetime_value", Some(3900.0));
    assert_num(erp, "segment_lifetime_value", Some(3900.0));
    assert_eq!(int(erp, "order_count"), Some(4));
    assert_num(erp, "average_order_value", Some(975.0)); // 3900 / 4
    assert_eq!(
        text(erp, "first_order_at"),
        Some("2024-01-15T10:00:00+00:00")
    );
    assert_eq!(
        text(erp, "last_order_at"),
        Some("2024-03-05T10:00:00+00:00")
    );
    assert_eq!(int(erp, "metric_rank"), Some(1));
    assert_num(erp, "value_share_pct", Some(97.23)); // 3900 / 4011 = 0.97233
    assert_eq!(erp.get("organization_id"), Some(&Value::Null));
    assert_eq!(erp.get("customer_name"), Some(&Value::Null));

    let shop = &rows[1];
    assert_eq!(int(shop, "segment_size"), Some(2));
    assert_num(shop, "lifetime_value", Some(111.0));
    assert_eq!(int(shop, "order_count"), Some(3));
    assert_num(shop, "average_order_value", Some(37.0)); // 111 / 3
    assert_eq!(int(shop, "metric_rank"), Some(2));
    assert_num(shop, "metric_percent_rank", Some(0.5)); // (2-1)/(3-1)
    assert_num(shop, "value_share_pct", Some(2.77)); // 111 / 4011 = 0.02767

    let crm = &rows[2];
    assert_eq!(int(crm, "segment_size"), Some(6));
    assert_eq!(int(crm, "segment_active_customers"), Some(0));
    assert_num(crm, "lifetime_value", Some(0.0));
    assert_num(crm, "average_order_value", None);
    assert_eq!(int(crm, "metric_rank"), Some(3));
    assert_num(crm, "value_share_pct", Some(0.0));

    // Ranked by average order value instead: erp 975 > shop 37 > crm (none).
    let by_aov = db
        .run(
            "customer_analysis",
            json!({"group_by": "source_system", "level": "segment", "metric": "average_order_value"}),
        )
        .await;
    let ranked: Vec<(&str, Option<f64>)> = by_aov
        .iter()
        .map(|r| (text(r, "segment").unwrap(), num(r, "metric_value")))
        .collect();
    assert_eq!(
        ranked,
        vec![("erp", Some(975.0)), ("shop", Some(37.0)), ("crm", None)]
    );
}

#[tokio::test]
async fn min_segment_size_drops_small_segments() {
    let db = fixture_db().await;
    // Countries: DE 1,2,7 (3); US 4,5,8 (3); (unknown) 10,11 (2); AT, CH, JP one each.
    let rows = db
        .run(
            "customer_analysis",
            json!({"group_by": "country", "level": "segment", "min_segment_size": 2}),
        )
        .await;
    let got: Vec<(&str, Option<i64>, Option<f64>, Option<i64>)> = rows
        .iter()
        .map(|r| {
            (
                text(r, "segment").unwrap(),
                int(r, "segment_size"),
                num(r, "lifetime_value"),
                int(r, "metric_rank"),
            )
        })
        .collect();
    // US 2000 (GLOBEX), DE 1600 (ACME CORP), (unknown) 86 + 25 = 111.
    assert_eq!(
        got,
        vec![
            ("US", Some(3), Some(2000.0), Some(1)),
            ("DE", Some(3), Some(1600.0), Some(2)),
            ("(unknown)", Some(2), Some(111.0), Some(3)),
        ]
    );
    // Shares stay relative to all customers (4011): 2000 / 4011 = 49.86 %.
    assert_num(&rows[0], "value_share_pct", Some(49.86));

    // At customer level the filter keeps the customers of the big segments only. Tiers:
    // Platinum = Acme Corp (updated to Platinum) + Müller = 2, Silver = 2, 5, Bronze = 3,
    // Gold = 4, (unknown) = 7..11 (5). min 2 keeps Platinum, Silver and (unknown): 9 rows.
    let by_tier = db
        .run(
            "customer_analysis",
            json!({"group_by": "tier", "min_segment_size": 2}),
        )
        .await;
    assert_eq!(by_tier.len(), 9);
    assert_eq!(text(find(&by_tier, 1), "segment"), Some("Platinum"));
    assert_eq!(int(find(&by_tier, 1), "segment_size"), Some(2));
    assert!(by_tier.iter().all(|r| int(r, "organization_id") != Some(3)));
    assert!(by_tier.iter().all(|r| int(r, "organization_id") != Some(4)));

    // Nothing is that large.
    let none = db
        .run("customer_analysis", json!({"min_segment_size": 6}))
        .await;
    assert!(none.is_empty());
}

#[tokio::test]
async fn orders_added_later_change_the_ranking() {
    let db = fixture_db().await;
    // A 5000.00 order for Initech (5): Finance becomes 5000 with Initech at rank 1.
    db.exec(
        "INSERT INTO canonical.orders (source_system, source_id, organization_id, order_date, channel, currency, total_amount)
         VALUES ('erp', '4000099', 5, '2024-04-01T00:00:00Z', 'direct', 'USD', 5000.00)",
    )
    .await;
    let rows = db.run("customer_analysis", json!({})).await;
    let initech = find(&rows, 5);
    assert_num(initech, "lifetime_value", Some(5000.0));
    assert_eq!(int(initech, "metric_rank"), Some(1));
    assert_num(initech, "value_share_pct", Some(100.0));
    let globex = find(&rows, 4);
    assert_eq!(int(globex, "metric_rank"), Some(2));
    assert_num(globex, "metric_percent_rank", Some(1.0));
    assert_num(globex, "value_share_pct", Some(0.0));
}

#[tokio::test]
async fn empty_database_has_no_customers() {
    let db = empty_db().await;
    assert!(db.run("customer_analysis", json!({})).await.is_empty());
    assert!(db
        .run("customer_analysis", json!({"level": "segment"}))
        .await
        .is_empty());
}

#[tokio::test]
async fn invalid_parameters_are_rejected() {
    let db = fixture_db().await;
    let e = db
        .run_err("customer_analysis", json!({"group_by": "name"}))
        .await;
    assert!(e.contains("group_by"), "{e}");
    let e = db
        .run_err(
            "customer_analysis",
            json!({"group_by": "industry; drop table x"}),
        )
        .await;
    assert!(e.contains("group_by"), "{e}");
    let e = db
        .run_err("customer_analysis", json!({"metric": "revenue"}))
        .await;
    assert!(e.contains("metric"), "{e}");
    let e = db
        .run_err("customer_analysis", json!({"level": "country"}))
        .await;
    assert!(e.contains("level"), "{e}");
    let e = db
        .run_err("customer_analysis", json!({"min_segment_size": 0}))
        .await;
    assert!(e.contains("min_segment_size"), "{e}");
    let e = db
        .run_err("customer_analysis", json!({"min_segment_size": "many"}))
        .await;
    assert!(e.contains("min_segment_size"), "{e}");
    let e = db
        .run_err("customer_analysis", json!({"segment": "industry"}))
        .await;
    assert!(e.contains("segment"), "{e}");
}
