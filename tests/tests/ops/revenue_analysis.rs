// Tests for the `revenue_analysis` operation.
//
// Fixture orders (order_date UTC, total_amount, organization):
//   1 erp  2024-01-15 (Mon)  1000.00  org 7 ACME CORP
//   2 erp  2024-02-10 (Sat)   600.00  org 7
//   3 erp  2024-02-20 (Tue)  2000.00  org 8 GLOBEX
//   4 erp  2024-03-05 (Tue)   300.00  org 9 UMBRELLA
//   5 erp  2024-03-10 (Sun)    50.00  no organization
//   6 shop 2024-01-20 (Sat)    36.00  org 10 Gus García
//   7 shop 2024-03-15 (Fri)    25.00  org 11 Accounts Payable
//   8 shop 2024-03-28 (Thu)    50.00  org 10
// Total 4061.00. Months: Jan 1000 + 36 = 1036; Feb 600 + 2000 = 2600;
// Mar 300 + 50 + 25 + 50 = 425.

use quarry_tests::{empty_db, fixture_db};
use serde_json::{json, Value};

use crate::support::{assert_num, int, num, text, Row};

fn column_nums(rows: &[Row], key: &str) -> Vec<Option<f64>> {
    rows.iter().map(|r| num(r, key)).collect()
}

#[tokio::test]
async fn defaults_give_monthly_revenue_with_running_total_growth_and_moving_average() {
    let db = fixture_db().await;
    let rows = db.run("revenue_analysis", json!({})).await;
    assert_eq!(rows.len(), 3);

    let periods: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                text(r, "period_start").unwrap(),
                text(r, "period_end").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        periods,
        vec![
            ("2024-01-01", "2024-01-31"),
            ("2024-02-01", "2024-02-29"),
            ("2024-03-01", "2024-03-31")
        ]
    );
    assert_eq!(
        column_nums(&rows, "revenue"),
        vec![Some(1036.0), Some(2600.0), Some(425.0)]
    );
    let orders: Vec<Option<i64>> = rows.iter().map(|r| int(r, "order_count")).collect();
    assert_eq!(orders, vec![Some(2), Some(2), Some(4)]);
    // Distinct resolved customers: Jan {7, 10}, Feb {7, 8}, Mar {9, 11, 10} (order 5 has none).
    let customers: Vec<Option<i64>> = rows.iter().map(|r| int(r, "customer_count")).collect();
    assert_eq!(customers, vec![Some(2), Some(2), Some(3)]);
    // 1036/2 = 518, 2600/2 = 1300, 425/4 = 106.25.
    assert_eq!(
        column_nums(&rows, "average_order_value"),
        vec![Some(518.0), Some(1300.0), Some(106.25)]
    );
    // Running total 1036, 1036 + 2600 = 3636, 3636 + 425 = 4061.
    assert_eq!(
        column_nums(&rows, "running_total"),
        vec![Some(1036.0), Some(3636.0), Some(4061.0)]
    );
    // Shares of 4061: 25.511 %, 64.024 %, 10.465 %; running 25.51, 89.535 -> 89.53, 100.
    assert_eq!(
        column_nums(&rows, "share_of_total_pct"),
        vec![Some(25.51), Some(64.02), Some(10.47)]
    );
    assert_eq!(
        column_nums(&rows, "running_share_pct"),
        vec![Some(25.51), Some(89.53), Some(100.0)]
    );
    // LAG growth: Feb 2600 - 1036 = 1564 (1564/1036 = 150.97 %); Mar 425 - 2600 = -2175 (-83.65 %).
    assert_eq!(
        column_nums(&rows, "previous_revenue"),
        vec![None, Some(1036.0), Some(2600.0)]
    );
    assert_eq!(
        column_nums(&rows, "growth_amount"),
        vec![None, Some(1564.0), Some(-2175.0)]
    );
    assert_eq!(
        column_nums(&rows, "growth_pct"),
        vec![None, Some(150.97), Some(-83.65)]
    );
    // Moving average over 3 periods: 1036; (1036+2600)/2 = 1818; 4061/3 = 1353.67.
    assert_eq!(
        column_nums(&rows, "moving_average"),
        vec![Some(1036.0), Some(1818.0), Some(1353.67)]
    );
    // Ranks by revenue: Feb 1, Jan 2, Mar 3.
    let ranks: Vec<(Option<i64>, Option<i64>)> = rows
        .iter()
        .map(|r| (int(r, "revenue_rank"), int(r, "revenue_dense_rank")))
        .collect();
    assert_eq!(
        ranks,
        vec![(Some(2), Some(2)), (Some(1), Some(1)), (Some(3), Some(3))]
    );
    // Customer columns do not apply.
    assert!(rows
        .iter()
        .all(|r| r.get("organization_id") == Some(&Value::Null)));
    assert!(rows
        .iter()
        .all(|r| r.get("customer_name") == Some(&Value::Null)));
}

#[tokio::test]
async fn moving_window_sets_the_number_of_periods_averaged() {
    let db = fixture_db().await;
    let one = db
        .run("revenue_analysis", json!({"moving_window": 1}))
        .await;
    assert_eq!(
        column_nums(&one, "moving_average"),
        vec![Some(1036.0), Some(2600.0), Some(425.0)]
    );
    // Two periods: 1036; (1036+2600)/2 = 1818; (2600+425)/2 = 1512.5.
    let two = db
        .run("revenue_analysis", json!({"moving_window": 2}))
        .await;
    assert_eq!(
        column_nums(&two, "moving_average"),
        vec![Some(1036.0), Some(1818.0), Some(1512.5)]
    );
    // More periods than exist: the average of all periods so far.
    let wide = db
        .run("revenue_analysis", json!({"moving_window": 24}))
        .await;
    assert_eq!(
        column_nums(&wide, "moving_average"),
        vec![Some(1036.0), Some(1818.0), Some(1353.67)]
    );
}

#[tokio::test]
async fn quarter_and_year_granularity_collapse_the_periods() {
    let db = fixture_db().await;
    for (granularity, end) in [("quarter", "2024-03-31"), ("year", "2024-12-31")] {
        let rows = db
            .run("revenue_analysis", json!({"granularity": granularity}))
            .await;
        assert_eq!(rows.len(), 1, "{granularity}");
        let r = &rows[0];
        assert_eq!(text(r, "period_start"), Some("2024-01-01"));
        assert_eq!(text(r, "period_end"), Some(end));
        assert_num(r, "revenue", Some(4061.0));
        assert_eq!(int(r, "order_count"), Some(8));
        assert_eq!(int(r, "customer_count"), Some(5)); // organizations 7, 8, 9, 10, 11
        assert_num(r, "average_order_value", Some(507.63)); // 4061 / 8 = 507.625
        assert_num(r, "previous_revenue", None);
        assert_num(r, "growth_pct", None);
        assert_num(r, "running_share_pct", Some(100.0));
    }
}

#[tokio::test]
async fn weekly_periods_are_gap_free_and_filtered_by_source_system() {
    let db = fixture_db().await;
    let rows = db
        .run(
            "revenue_analysis",
            json!({"granularity": "week", "source_systems": ["shop"]}),
        )
        .await;
    // Shop orders fall in the ISO weeks starting 2024-01-15 (order 6, 36.00), 2024-03-11
    // (order 7, 25.00) and 2024-03-25 (order 8, 50.00); every week between is present:
    // Jan 15, 22, 29, Feb 5, 12, 19, 26, Mar 4, 11, 18, 25 = 11 weeks.
    let starts: Vec<&str> = rows
        .iter()
        .map(|r| text(r, "period_start").unwrap())
        .collect();
    assert_eq!(
        starts,
        vec![
            "2024-01-15",
            "2024-01-22",
            "2024-01-29",
            "2024-02-05",
            "2024-02-12",
            "2024-02-19",
            "2024-02-26",
            "2024-03-04",
            "2024-03-11",
            "2024-03-18",
            "2024-03-25"
        ]
    );
    assert_eq!(text(&rows[0], "period_end"), Some("2024-01-21"));
    let revenue = column_nums(&rows, "revenue");
    assert_eq!(revenue[0], Some(36.0));
    assert_eq!(revenue[8], Some(25.0));
    assert_eq!(revenue[10], Some(50.0));
    assert_eq!(revenue.iter().filter(|v| **v == Some(0.0)).count(), 8);
    // Empty weeks: no orders, no average.
    assert_eq!(int(&rows[1], "order_count"), Some(0));
    assert_num(&rows[1], "average_order_value", None);
    // Week after the first: 0 - 36 = -36, -100 %; after an empty week the percent is NULL.
    assert_num(&rows[1], "growth_amount", Some(-36.0));
    assert_num(&rows[1], "growth_pct", Some(-100.0));
    assert_num(&rows[8], "growth_amount", Some(25.0));
    assert_num(&rows[8], "growth_pct", None);
    // Shop total 36 + 25 + 50 = 111; shares of it: 50/111 = 45.05 %.
    assert_num(&rows[10], "running_total", Some(111.0));
    assert_num(&rows[10], "share_of_total_pct", Some(45.05));
    // Moving average (3 weeks) in week Mar 25: (0 + 25 + 50)... weeks Mar 11, 18, 25 = (25 + 0 + 50)/3 = 25.
    assert_num(&rows[10], "moving_average", Some(25.0));
    // Ranks: 50 first, 36 second, 25 third, the 8 empty weeks tie at 4 (dense 4).
    assert_eq!(int(&rows[10], "revenue_rank"), Some(1));
    assert_eq!(int(&rows[0], "revenue_rank"), Some(2));
    assert_eq!(int(&rows[8], "revenue_rank"), Some(3));
    assert_eq!(int(&rows[1], "revenue_rank"), Some(4));
    assert_eq!(int(&rows[1], "revenue_dense_rank"), Some(4));

    // Two source systems: erp + shop is everything.
    let both = db
        .run(
            "revenue_analysis",
            json!({"source_systems": ["erp", "shop"]}),
        )
        .await;
    assert_eq!(
        column_nums(&both, "revenue"),
        vec![Some(1036.0), Some(2600.0), Some(425.0)]
    );
    // A source without orders: nothing.
    let none = db
        .run("revenue_analysis", json!({"source_systems": ["crm"]}))
        .await;
    assert!(none.is_empty());
}

#[tokio::test]
async fn date_range_is_inclusive_and_bounds_the_daily_series() {
    let db = fixture_db().await;
    let rows = db
        .run(
            "revenue_analysis",
            json!({"granularity": "day", "start_date": "2024-03-01", "end_date": "2024-03-10"}),
        )
        .await;
    // 10 days, Mar 1..10; order 4 (Mar 5, 300) and order 5 (Mar 10 10:00, 50, end date inclusive).
    assert_eq!(rows.len(), 10);
    assert_eq!(text(&rows[0], "period_start"), Some("2024-03-01"));
    assert_eq!(text(&rows[0], "period_end"), Some("2024-03-01"));
    assert_eq!(text(&rows[9], "period_start"), Some("2024-03-10"));
    let revenue = column_nums(&rows, "revenue");
    assert_eq!(revenue[4], Some(300.0));
    assert_eq!(revenue[9], Some(50.0));
    assert_num(&rows[9], "running_total", Some(350.0));
    // Shares of 350: 300/350 = 85.71 %, 50/350 = 14.29 %.
    assert_num(&rows[4], "share_of_total_pct", Some(85.71));
    assert_num(&rows[9], "share_of_total_pct", Some(14.29));
    // 3-day moving average on Mar 5 (Mar 3, 4, 5) = 100; on Mar 7 (5, 6, 7) = 100; Mar 8 = 0.
    assert_num(&rows[4], "moving_average", Some(100.0));
    assert_num(&rows[6], "moving_average", Some(100.0));
    assert_num(&rows[7], "moving_average", Some(0.0));
    // Mar 10 (8, 9, 10) = 50/3 = 16.67.
    assert_num(&rows[9], "moving_average", Some(16.67));

    // Monthly with the range: the series runs from the start month to the end month,
    // even where there are no orders (Apr, May).
    let monthly = db
        .run(
            "revenue_analysis",
            json!({"start_date": "2024-02-15", "end_date": "2024-05-31"}),
        )
        .await;
    let starts: Vec<&str> = monthly
        .iter()
        .map(|r| text(r, "period_start").unwrap())
        .collect();
    assert_eq!(
        starts,
        vec!["2024-02-01", "2024-03-01", "2024-04-01", "2024-05-01"]
    );
    // Feb only counts order 3 (Feb 20, 2000); order 2 (Feb 10) is before the start.
    assert_eq!(
        column_nums(&monthly, "revenue"),
        vec![Some(2000.0), Some(425.0), Some(0.0), Some(0.0)]
    );
    assert_eq!(
        column_nums(&monthly, "running_total"),
        vec![Some(2000.0), Some(2425.0), Some(2425.0), Some(2425.0)]
    );
    assert_num(&monthly[3], "growth_pct", None); // previous month had no revenue
    assert_num(&monthly[2], "growth_pct", Some(-100.0));
}

#[tokio::test]
async fn customers_view_ranks_customers_by_revenue() {
    let db = fixture_db().await;
    let rows = db
        .run("revenue_analysis", json!({"view": "customers"}))
        .await;
    // GLOBEX 2000 > ACME CORP 1600 > UMBRELLA 300 > Gus 36 + 50 = 86 > Accounts Payable 25.
    let got: Vec<(Option<i64>, &str, &str, Option<i64>, Option<f64>)> = rows
        .iter()
        .map(|r| {
            (
                int(r, "organization_id"),
                text(r, "customer_name").unwrap(),
                text(r, "source_system").unwrap(),
                int(r, "order_count"),
                num(r, "revenue"),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (Some(8), "GLOBEX", "erp", Some(1), Some(2000.0)),
            (Some(7), "ACME CORP", "erp", Some(2), Some(1600.0)),
            (Some(9), "UMBRELLA", "erp", Some(1), Some(300.0)),
            (Some(10), "Gus García", "shop", Some(2), Some(86.0)),
            (Some(11), "Accounts Payable", "shop", Some(1), Some(25.0)),
        ]
    );
    let ranks: Vec<Option<i64>> = rows.iter().map(|r| int(r, "revenue_rank")).collect();
    assert_eq!(ranks, vec![Some(1), Some(2), Some(3), Some(4), Some(5)]);
    // Shares of all 4061 (order 5 without a customer included in the total):
    // 2000/4061 = 49.249 %, 1600/4061 = 39.399 %, 300/4061 = 7.387 %, 86/4061 = 2.118 %, 25/4061 = 0.616 %.
    assert_eq!(
        column_nums(&rows, "share_of_total_pct"),
        vec![Some(49.25), Some(39.4), Some(7.39), Some(2.12), Some(0.62)]
    );
    // Pareto: 2000, 3600, 3900, 3986, 4011; the last is 4011/4061 = 98.77 %.
    assert_eq!(
        column_nums(&rows, "running_total"),
        vec![
            Some(2000.0),
            Some(3600.0),
            Some(3900.0),
            Some(3986.0),
            Some(4011.0)
        ]
    );
    assert_num(&rows[4], "running_share_pct", Some(98.77));
    assert_num(&rows[1], "average_order_value", Some(800.0));
    // Period columns do not apply.
    for r in &rows {
        assert_eq!(r.get("period_start"), Some(&Value::Null));
        assert_eq!(r.get("customer_count"), Some(&Value::Null));
        assert_num(r, "moving_average", None);
        assert_num(r, "growth_pct", None);
    }
}

#[tokio::test]
async fn customers_view_rank_and_dense_rank_differ_on_ties() {
    let db = fixture_db().await;
    // UMBRELLA (9) gets another 1700.00: 300 + 1700 = 2000, tied with GLOBEX (8).
    db.exec(
        "INSERT INTO canonical.orders (source_system, source_id, organization_id, order_date, channel, currency, total_amount)
         VALUES ('erp', '4000099', 9, '2024-03-20T00:00:00Z', 'direct', 'USD', 1700.00)",
    )
    .await;
    let rows = db
        .run("revenue_analysis", json!({"view": "customers"}))
        .await;
    let got: Vec<(Option<i64>, Option<i64>, Option<i64>)> = rows
        .iter()
        .map(|r| {
            (
                int(r, "organization_id"),
                int(r, "revenue_rank"),
                int(r, "revenue_dense_rank"),
            )
        })
        .collect();
    // 8 and 9 tie at 2000 (listed by id), ACME CORP 1600 is rank 3 but dense rank 2.
    assert_eq!(
        got,
        vec![
            (Some(8), Some(1), Some(1)),
            (Some(9), Some(1), Some(1)),
            (Some(7), Some(3), Some(2)),
            (Some(10), Some(4), Some(3)),
            (Some(11), Some(5), Some(4)),
        ]
    );
}

#[tokio::test]
async fn customers_view_respects_date_and_source_filters() {
    let db = fixture_db().await;
    let rows = db
        .run(
            "revenue_analysis",
            json!({"view": "customers", "source_systems": ["shop"], "end_date": "2024-03-20"}),
        )
        .await;
    // Shop orders up to Mar 20: order 6 (Gus, 36) and order 7 (Accounts Payable, 25); total 61.
    assert_eq!(rows.len(), 2);
    assert_eq!(int(&rows[0], "organization_id"), Some(10));
    assert_num(&rows[0], "revenue", Some(36.0));
    assert_eq!(int(&rows[0], "order_count"), Some(1));
    assert_num(&rows[0], "share_of_total_pct", Some(59.02)); // 36/61 = 0.59016
    assert_eq!(int(&rows[1], "organization_id"), Some(11));
    assert_num(&rows[1], "share_of_total_pct", Some(40.98)); // 25/61 = 0.40984
    assert_num(&rows[1], "running_share_pct", Some(100.0));
}

#[tokio::test]
async fn empty_database_returns_no_rows() {
    let db = empty_db().await;
    assert!(db.run("revenue_analysis", json!({})).await.is_empty());
    assert!(db
        .run("revenue_analysis", json!({"view": "customers"}))
        .await
        .is_empty());
}

#[tokio::test]
async fn invalid_parameters_are_rejected() {
    let db = fixture_db().await;
    let cases = [
        (json!({"granularity": "hour"}), "granularity"),
        (json!({"moving_window": 0}), "moving_window"),
        (json!({"moving_window": 25}), "moving_window"),
        (json!({"start_date": "2024-13-01"}), "start_date"),
        (json!({"end_date": "yesterday"}), "end_date"),
        (json!({"view": "products"}), "view"),
        (json!({"source_systems": ["ERP; DROP"]}), "source_systems"),
        (json!({"currency": "USD"}), "currency"),
    ];
    for (params, name) in cases {
        let e = db.run_err("revenue_analysis", params.clone()).await;
        assert!(e.contains(name), "{params}: {e}");
    }
}
