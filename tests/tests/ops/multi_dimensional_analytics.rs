// Tests for the `multi_dimensional_analytics` operation.
//
// Fixture order lines with their dimensions (month, region of the customer's country,
// industry, product category, channel), quantity and net amount:
//   L1 order 1 Jan  org 7 DE Europe        -  Hardware (p1)    direct  10   100
//   L2 order 1 Jan  org 7 DE Europe        -  Services (p2)    direct   6   900
//   L3 order 2 Feb  org 7 DE Europe        -  Services (p2)    direct   4   600
//   L4 order 3 Feb  org 8 US North America -  Hardware (p1)    direct 200  2000
//   L5 order 4 Mar  org 9 JP Asia Pacific  -  Services (p2)    direct   2   300
//   L6 order 5 Mar  no org                 -  no product       direct   5    50
//   L7 order 6 Jan  org 10 no country      -  Hardware (p3)    online   3    36
//   L8 order 7 Mar  org 11 no country      -  Accessories (p4) online   1    25
//   L9 order 8 Mar  org 10 no country      -  Accessories (p4) online   2    50
// No ordering organization has an industry, so industry is '(unknown)' everywhere.
// Totals: revenue 4061, quantity 233, 8 orders, 5 customers (7, 8, 9, 10, 11).
// The latest order is 2024-03-28T10:00:00Z (order 8); windows count back from it.

use quarry_tests::{empty_db, fixture_db};
use serde_json::{json, Value};

use crate::support::{int, num, text, Row};

fn level<'a>(rows: &'a [Row], name: &str) -> Vec<&'a Row> {
    rows.iter()
        .filter(|r| text(r, "grouping_level") == Some(name))
        .collect()
}

/// (dimension value, revenue, quantity, orders, customers) of the rows of one level.
fn measures(rows: &[&Row], dim: &str) -> Vec<(String, f64, f64, i64, i64)> {
    rows.iter()
        .map(|r| {
            (
                text(r, dim)
                    .unwrap_or_else(|| panic!("{dim} is NULL in {r:?}"))
                    .to_string(),
                num(r, "revenue").unwrap(),
                num(r, "quantity").unwrap(),
                int(r, "order_count").unwrap(),
                int(r, "customer_count").unwrap(),
            )
        })
        .collect()
}

fn m(
    v: &str,
    revenue: f64,
    quantity: f64,
    orders: i64,
    customers: i64,
) -> (String, f64, f64, i64, i64) {
    (v.to_string(), revenue, quantity, orders, customers)
}

fn grand_total(rows: &[Row]) -> &Row {
    let totals: Vec<&Row> = rows
        .iter()
        .filter(|r| r.get("is_grand_total") == Some(&Value::Bool(true)))
        .collect();
    assert_eq!(totals.len(), 1, "exactly one grand total");
    totals[0]
}

#[tokio::test]
async fn defaults_use_grouping_sets_over_the_last_twelve_months() {
    let db = fixture_db().await;
    let rows = db.run("multi_dimensional_analytics", json!({})).await;

    // The grand total comes first: everything (all orders are within 12 months of Mar 28).
    let total = &rows[0];
    assert_eq!(text(total, "grouping_level"), Some("total"));
    assert_eq!(int(total, "grouping_id"), Some(31));
    assert_eq!(int(total, "dimension_count"), Some(0));
    assert_eq!(total.get("is_grand_total"), Some(&Value::Bool(true)));
    for dim in ["period", "region", "industry", "category", "channel"] {
        assert_eq!(total.get(dim), Some(&Value::Null), "{dim}");
    }
    assert_eq!(num(total, "revenue"), Some(4061.0));
    assert_eq!(num(total, "quantity"), Some(233.0)); // 10+6+4+200+2+5+3+1+2
    assert_eq!(int(total, "order_count"), Some(8));
    assert_eq!(int(total, "customer_count"), Some(5));
    assert_eq!(num(total, "average_order_value"), Some(507.63)); // 4061 / 8 = 507.625
    assert_eq!(num(total, "share_of_total_pct"), Some(100.0));

    // Rows: 1 total + 3 months + 4 regions + 1 industry + 4 categories + 2 channels
    // + month x region 6 + month x category 7 + month x channel 5 + region x industry 4
    // + region x category 7 + industry x category 4 = 48.
    assert_eq!(rows.len(), 48);
    let levels: Vec<&str> = {
        let mut v: Vec<&str> = rows
            .iter()
            .map(|r| text(r, "grouping_level").unwrap())
            .collect();
        v.dedup();
        v
    };
    assert_eq!(
        levels,
        vec![
            "total",
            "period",
            "region",
            "industry",
            "category",
            "channel",
            "period+region",
            "period+category",
            "period+channel",
            "region+industry",
            "region+category",
            "industry+category"
        ]
    );

    // Months: Jan 100+900+36 = 1036 (orders 1, 6; customers 7, 10), Feb 600+2000 = 2600,
    // Mar 300+50+25+50 = 425 (orders 4, 5, 7, 8; customers 9, 11, 10).
    let months: Vec<(String, f64, f64, i64, i64)> = measures(&level(&rows, "period"), "period");
    assert_eq!(
        months,
        vec![
            m("2024-01-01", 1036.0, 19.0, 2, 2),
            m("2024-02-01", 2600.0, 204.0, 2, 2),
            m("2024-03-01", 425.0, 10.0, 4, 3),
        ]
    );
    // Regions: '(unknown)' = orders 5, 6, 7, 8: 50+36+25+50 = 161, qty 5+3+1+2 = 11,
    // customers 10 and 11 (order 5 has none).
    assert_eq!(
        measures(&level(&rows, "region"), "region"),
        vec![
            m("(unknown)", 161.0, 11.0, 4, 2),
            m("Asia Pacific", 300.0, 2.0, 1, 1),
            m("Europe", 1600.0, 20.0, 2, 1),
            m("North America", 2000.0, 200.0, 1, 1),
        ]
    );
    // Categories: Hardware 100+2000+36 = 2136 (orders 1, 3, 6), Services 900+600+300 = 1800
    // (orders 1, 2, 4; customers 7, 9), Accessories 25+50 = 75, no product 50 (order 5).
    assert_eq!(
        measures(&level(&rows, "category"), "category"),
        vec![
            m("(unknown)", 50.0, 5.0, 1, 0),
            m("Accessories", 75.0, 3.0, 2, 2),
            m("Hardware", 2136.0, 213.0, 3, 3),
            m("Services", 1800.0, 12.0, 3, 2),
        ]
    );
    // Channels: direct = orders 1..5 = 3950, online = orders 6..8 = 111.
    assert_eq!(
        measures(&level(&rows, "channel"), "channel"),
        vec![
            m("direct", 3950.0, 227.0, 5, 3),
            m("online", 111.0, 6.0, 3, 2)
        ]
    );
    // Hardware share: 2136 / 4061 = 52.598 %.
    let hardware = level(&rows, "category")
        .into_iter()
        .find(|r| text(r, "category") == Some("Hardware"))
        .unwrap();
    assert_eq!(num(hardware, "share_of_total_pct"), Some(52.6));
    assert_eq!(num(hardware, "average_order_value"), Some(712.0)); // 2136 / 3

    // Missing data is '(unknown)', never NULL: the one industry row is a real group
    // (grouping_level 'industry', industry '(unknown)'), distinct from the total.
    let industry = level(&rows, "industry");
    assert_eq!(industry.len(), 1);
    assert_eq!(text(industry[0], "industry"), Some("(unknown)"));
    assert_eq!(int(industry[0], "grouping_id"), Some(27)); // 16 + 8 + 2 + 1
    assert_eq!(industry[0].get("region"), Some(&Value::Null));

    // Month x region, March: (unknown) = orders 5, 7, 8 = 125 (customers 10, 11),
    // Asia Pacific = order 4 = 300.
    let march: Vec<&Row> = level(&rows, "period+region")
        .into_iter()
        .filter(|r| text(r, "period") == Some("2024-03-01"))
        .collect();
    assert_eq!(
        measures(&march, "region"),
        vec![
            m("(unknown)", 125.0, 8.0, 3, 2),
            m("Asia Pacific", 300.0, 2.0, 1, 1)
        ]
    );
    assert_eq!(int(march[0], "grouping_id"), Some(7)); // industry 4 + category 2 + channel 1
}

#[tokio::test]
async fn timeframe_counts_back_from_the_latest_order() {
    let db = fixture_db().await;
    // 3 months (the walkthrough): from 2023-12-28 10:00, every order.
    let rows = db
        .run(
            "multi_dimensional_analytics",
            json!({"timeframe": "3 months"}),
        )
        .await;
    assert_eq!(num(grand_total(&rows), "revenue"), Some(4061.0));

    // 2 months: from 2024-01-28 10:00: orders 2, 3 (Feb) and 4, 5, 7, 8 (Mar) = 2600 + 425.
    let rows = db
        .run(
            "multi_dimensional_analytics",
            json!({"timeframe": "2 months"}),
        )
        .await;
    let t = grand_total(&rows);
    assert_eq!(num(t, "revenue"), Some(3025.0));
    assert_eq!(int(t, "order_count"), Some(6));
    assert_eq!(int(t, "customer_count"), Some(5)); // 7, 8, 9, 11, 10

    // 1 month: from 2024-02-28 10:00: orders 4, 5, 7, 8 = 425, qty 2+5+1+2 = 10.
    let rows = db
        .run(
            "multi_dimensional_analytics",
            json!({"timeframe": "1 month"}),
        )
        .await;
    let t = grand_total(&rows);
    assert_eq!(num(t, "revenue"), Some(425.0));
    assert_eq!(num(t, "quantity"), Some(10.0));
    assert_eq!(int(t, "order_count"), Some(4));
    assert_eq!(int(t, "customer_count"), Some(3)); // 9, 11, 10
    let months: Vec<&str> = level(&rows, "period")
        .iter()
        .map(|r| text(r, "period").unwrap())
        .collect();
    assert_eq!(months, vec!["2024-03-01"]);

    // The boundary is inclusive: order 4 (2024-03-05 10:00) is exactly 23 days before.
    let rows = db
        .run(
            "multi_dimensional_analytics",
            json!({"timeframe": "23 days"}),
        )
        .await;
    assert_eq!(num(grand_total(&rows), "revenue"), Some(425.0));
    // 22 days: from 2024-03-06 10:00: orders 5, 7, 8 = 50 + 25 + 50.
    let rows = db
        .run(
            "multi_dimensional_analytics",
            json!({"timeframe": "22 days"}),
        )
        .await;
    assert_eq!(num(grand_total(&rows), "revenue"), Some(125.0));
    // 1 hour: only order 8 (exactly at the anchor).
    let rows = db
        .run(
            "multi_dimensional_analytics",
            json!({"timeframe": "1 hour"}),
        )
        .await;
    let t = grand_total(&rows);
    assert_eq!(num(t, "revenue"), Some(50.0));
    assert_eq!(int(t, "order_count"), Some(1));
}

#[tokio::test]
async fn rollup_mode_follows_the_hierarchy() {
    let db = fixture_db().await;
    let rows = db
        .run("multi_dimensional_analytics", json!({"mode": "rollup"}))
        .await;
    // Levels: total 1; month 3; month+region 6 (Jan Europe/(unknown), Feb Europe/North
    // America, Mar Asia Pacific/(unknown)); +industry 6 (all '(unknown)'); +category 8
    // (Jan Europe Hardware/Services, Jan (unknown) Hardware, Feb Europe Services,
    // Feb North America Hardware, Mar Asia Pacific Services, Mar (unknown) (unknown)/
    // Accessories); +channel 8 (each of those has one channel). 1+3+6+6+8+8 = 32.
    assert_eq!(rows.len(), 32);
    let counts: Vec<(&str, usize)> = [
        "total",
        "period",
        "period+region",
        "period+region+industry",
        "period+region+industry+category",
        "period+region+industry+category+channel",
    ]
    .iter()
    .map(|l| (*l, level(&rows, l).len()))
    .collect();
    assert_eq!(
        counts,
        vec![
            ("total", 1),
            ("period", 3),
            ("period+region", 6),
            ("period+region+industry", 6),
            ("period+region+industry+category", 8),
            ("period+region+industry+category+channel", 8),
        ]
    );
    // No region-only subtotal in a rollup.
    assert!(level(&rows, "region").is_empty());
    // The most detailed rows have grouping_id 0 and all five dimensions.
    let detail = level(&rows, "period+region+industry+category+channel");
    assert!(detail
        .iter()
        .all(|r| int(r, "grouping_id") == Some(0) && int(r, "dimension_count") == Some(5)));
    // Jan, (unknown) region, Hardware, online = order 6 line, 36.00, qty 3.
    let gus = detail
        .iter()
        .find(|r| text(r, "period") == Some("2024-01-01") && text(r, "region") == Some("(unknown)"))
        .unwrap();
    assert_eq!(text(gus, "category"), Some("Hardware"));
    assert_eq!(text(gus, "channel"), Some("online"));
    assert_eq!(num(gus, "revenue"), Some(36.0));
    assert_eq!(num(gus, "quantity"), Some(3.0));
}

#[tokio::test]
async fn cube_mode_produces_all_thirty_two_groupings() {
    let db = fixture_db().await;
    let rows = db
        .run("multi_dimensional_analytics", json!({"mode": "cube"}))
        .await;
    let mut ids: Vec<i64> = rows
        .iter()
        .map(|r| int(r, "grouping_id").unwrap())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 32, "every combination of the 5 dimensions");
    // Every grouping partitions the same facts: its revenue adds up to 4061.
    for id in 0..32 {
        let sum: f64 = rows
            .iter()
            .filter(|r| int(r, "grouping_id") == Some(id))
            .map(|r| num(r, "revenue").unwrap())
            .sum();
        assert!((sum - 4061.0).abs() < 1e-6, "grouping {id} sums to {sum}");
    }
    // Region x channel exists in a cube (not in the default grouping sets):
    // (unknown) direct = order 5 = 50, (unknown) online = orders 6, 7, 8 = 111.
    let rc = level(&rows, "region+channel");
    let unknown: Vec<(&str, f64)> = rc
        .iter()
        .filter(|r| text(r, "region") == Some("(unknown)"))
        .map(|r| (text(r, "channel").unwrap(), num(r, "revenue").unwrap()))
        .collect();
    assert_eq!(unknown, vec![("direct", 50.0), ("online", 111.0)]);
    // Rows go from the grand total to the most detailed level.
    let dims: Vec<i64> = rows
        .iter()
        .map(|r| int(r, "dimension_count").unwrap())
        .collect();
    assert!(dims.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(text(&rows[0], "grouping_level"), Some("total"));
}

#[tokio::test]
async fn industries_are_grouped_when_organizations_have_them() {
    let db = fixture_db().await;
    // Give GLOBEX (8) an industry: its order 3 (2000, qty 200) moves out of '(unknown)'.
    db.exec("UPDATE canonical.organizations SET industry = 'Finance' WHERE id = 8")
        .await;
    let rows = db.run("multi_dimensional_analytics", json!({})).await;
    assert_eq!(
        measures(&level(&rows, "industry"), "industry"),
        vec![
            m("(unknown)", 2061.0, 33.0, 7, 4),
            m("Finance", 2000.0, 200.0, 1, 1)
        ]
    );
    let fin_hw = level(&rows, "industry+category")
        .into_iter()
        .find(|r| text(r, "industry") == Some("Finance"))
        .unwrap();
    assert_eq!(text(fin_hw, "category"), Some("Hardware"));
    assert_eq!(num(fin_hw, "share_of_total_pct"), Some(49.25)); // 2000 / 4061 = 0.49249
}

#[tokio::test]
async fn empty_database_has_only_an_empty_grand_total() {
    let db = empty_db().await;
    for mode in ["grouping_sets", "rollup", "cube"] {
        let rows = db
            .run("multi_dimensional_analytics", json!({"mode": mode}))
            .await;
        assert_eq!(rows.len(), 1, "{mode}");
        let t = &rows[0];
        assert_eq!(text(t, "grouping_level"), Some("total"));
        assert_eq!(num(t, "revenue"), Some(0.0));
        assert_eq!(int(t, "order_count"), Some(0));
        assert_eq!(num(t, "average_order_value"), None);
    }
}

#[tokio::test]
async fn invalid_parameters_are_rejected() {
    let db = fixture_db().await;
    let cases = [
        (json!({"timeframe": "3 fortnights"}), "timeframe"),
        (json!({"timeframe": "forever"}), "timeframe"),
        (json!({"timeframe": "0 days"}), "timeframe"),
        (
            json!({"timeframe": "1 month'; drop table x; --"}),
            "timeframe",
        ),
        (json!({"mode": "pivot"}), "mode"),
        (json!({"granularity": "month"}), "granularity"),
    ];
    for (params, name) in cases {
        let e = db
            .run_err("multi_dimensional_analytics", params.clone())
            .await;
        assert!(e.contains(name), "{params}: {e}");
    }
}
