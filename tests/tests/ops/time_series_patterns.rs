// Tests for the `time_series_patterns` operation.
//
// Fixture orders (UTC) and their ISO weeks (Monday):
//   1 erp  2024-01-15 1000.00  week 2024-01-15
//   6 shop 2024-01-20   36.00  week 2024-01-15
//   2 erp  2024-02-10  600.00  week 2024-02-05
//   3 erp  2024-02-20 2000.00  week 2024-02-19
//   4 erp  2024-03-05  300.00  week 2024-03-04
//   5 erp  2024-03-10   50.00  week 2024-03-04 (Sunday)
//   7 shop 2024-03-15   25.00  week 2024-03-11
//   8 shop 2024-03-28   50.00  week 2024-03-25
// Gap-free weekly series 2024-01-15 .. 2024-03-25 = 11 weeks, index 0..10:
//   revenue [1036, 0, 0, 600, 0, 2000, 0, 350, 25, 0, 50]
//   orders  [   2, 0, 0,   1, 0,    1, 0,   2,  1, 0,  1]
// Growth (above the previous week): index 3, 5, 7, 10 -> four streaks of length 1.
// Trend: x mean 5, Sxx = 110, Sxy = sum (x-5)*y
//   = -5*1036 - 2*600 + 0*2000 + 2*350 + 3*25 + 5*50 = -5355 -> slope -48.6818 -> -48.68;
//   fitted value at x=5 is the mean revenue 4061/11 = 369.18;
//   at x=0: 369.1818 + 5*48.6818 = 612.59.

use quarry_tests::{empty_db, fixture_db};
use serde_json::{json, Map, Value};

type Row = Map<String, Value>;

fn col(rows: &[Row], name: &str) -> Vec<Value> {
    rows.iter().map(|r| r[name].clone()).collect()
}

fn nums(rows: &[Row], name: &str) -> Vec<f64> {
    rows.iter()
        .map(|r| {
            r[name]
                .as_f64()
                .unwrap_or_else(|| panic!("{name} is not a number: {:?}", r[name]))
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn assert_nums(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(close(*g, *w), "{got:?} vs {want:?}");
    }
}

fn anomalies(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .filter(|r| r["is_anomaly"] == json!(true))
        .map(|r| r["period_start"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn weekly_series_with_defaults() {
    let db = fixture_db().await;
    let rows = db.run("time_series_patterns", json!({})).await;
    assert_eq!(rows.len(), 11);
    assert_eq!(rows[0]["period_start"], json!("2024-01-15"));
    assert_eq!(rows[1]["period_start"], json!("2024-01-22"));
    assert_eq!(rows[10]["period_start"], json!("2024-03-25"));
    assert_eq!(
        col(&rows, "period_index"),
        (0..11).map(|i| json!(i)).collect::<Vec<_>>()
    );
    assert_nums(
        &nums(&rows, "revenue"),
        &[
            1036.0, 0.0, 0.0, 600.0, 0.0, 2000.0, 0.0, 350.0, 25.0, 0.0, 50.0,
        ],
    );
    assert_eq!(
        col(&rows, "orders"),
        [2, 0, 0, 1, 0, 1, 0, 2, 1, 0, 1].map(|n| json!(n)).to_vec()
    );
    assert_eq!(rows[0]["revenue_change"], Value::Null);
    assert!(close(rows[1]["revenue_change"].as_f64().unwrap(), -1036.0));
    assert!(close(rows[8]["revenue_change"].as_f64().unwrap(), -325.0)); // 25 - 350

    // Growth streaks: weeks 3, 5, 7 and 10 each grow alone.
    let growth: Vec<bool> = rows.iter().map(|r| r["is_growth"] == json!(true)).collect();
    assert_eq!(
        growth,
        vec![false, false, false, true, false, true, false, true, false, false, true]
    );
    assert_eq!(
        col(&rows, "growth_streak_id"),
        vec![
            Value::Null,
            Value::Null,
            Value::Null,
            json!(1),
            Value::Null,
            json!(2),
            Value::Null,
            json!(3),
            Value::Null,
            Value::Null,
            json!(4)
        ]
    );
    assert_eq!(
        col(&rows, "growth_streak_length"),
        [0, 0, 0, 1, 0, 1, 0, 1, 0, 0, 1].map(|n| json!(n)).to_vec()
    );

    // Window 4: nothing before index 4 (no full window).
    for r in &rows[..4] {
        assert_eq!(
            (
                r["moving_avg"].clone(),
                r["moving_stddev"].clone(),
                r["z_score"].clone()
            ),
            (Value::Null, Value::Null, Value::Null)
        );
        assert_eq!(r["is_anomaly"], json!(false));
    }
    // Index 4 (value 0): window [1036, 0, 0, 600], avg 409,
    //   squares 627^2 + 409^2 + 409^2 + 191^2 = 764172, /3 = 254724, sd 504.70, z = -409/504.70 = -0.810
    assert!(close(rows[4]["moving_avg"].as_f64().unwrap(), 409.0));
    assert!(close(rows[4]["moving_stddev"].as_f64().unwrap(), 504.70));
    assert!(close(rows[4]["z_score"].as_f64().unwrap(), -0.81));
    // Index 5 (2000): window [0, 0, 600, 0], avg 150, squares 3*150^2 + 450^2 = 270000,
    //   /3 = 90000, sd 300, z = 1850/300 = 6.1667 -> the only anomaly at |z| >= 2.
    assert!(close(rows[5]["moving_avg"].as_f64().unwrap(), 150.0));
    assert!(close(rows[5]["moving_stddev"].as_f64().unwrap(), 300.0));
    assert!(close(rows[5]["z_score"].as_f64().unwrap(), 6.167));
    assert_eq!(anomalies(&rows), vec!["2024-02-19"]);
    // Index 10 (50): window [0, 350, 25, 0], avg 93.75.
    assert!(close(rows[10]["moving_avg"].as_f64().unwrap(), 93.75));

    assert!(rows
        .iter()
        .all(|r| close(r["trend_slope"].as_f64().unwrap(), -48.68)));
    assert!(close(rows[0]["trend_value"].as_f64().unwrap(), 612.59));
    assert!(close(rows[5]["trend_value"].as_f64().unwrap(), 369.18));
}

#[tokio::test]
async fn monthly_and_daily_granularity() {
    let db = fixture_db().await;
    // Months: Jan 1000+36 = 1036 (2 orders), Feb 600+2000 = 2600 (2), Mar 300+50+25+50 = 425 (4).
    let rows = db
        .run("time_series_patterns", json!({"granularity": "month"}))
        .await;
    assert_eq!(
        col(&rows, "period_start"),
        vec![
            json!("2024-01-01"),
            json!("2024-02-01"),
            json!("2024-03-01")
        ]
    );
    assert_nums(&nums(&rows, "revenue"), &[1036.0, 2600.0, 425.0]);
    assert_eq!(col(&rows, "orders"), vec![json!(2), json!(2), json!(4)]);
    assert_eq!(
        col(&rows, "is_growth"),
        vec![json!(false), json!(true), json!(false)]
    );
    assert_eq!(
        col(&rows, "growth_streak_length"),
        vec![json!(0), json!(1), json!(0)]
    );
    // Only 2 preceding months at most: window 4 is never full.
    assert!(rows
        .iter()
        .all(|r| r["z_score"].is_null() && r["moving_avg"].is_null()));
    // Slope: Sxy = -1*1036 + 0 + 1*425 = -611, Sxx = 2 -> -305.5;
    // fitted at x=0: mean 4061/3 = 1353.667 + 305.5 = 1659.17.
    assert!(close(rows[0]["trend_slope"].as_f64().unwrap(), -305.5));
    assert!(close(rows[0]["trend_value"].as_f64().unwrap(), 1659.17));
    assert!(close(rows[2]["trend_value"].as_f64().unwrap(), 1048.17));

    // Days 2024-01-15 .. 2024-03-28: 17 (Jan) + 29 (Feb 2024) + 28 (Mar) = 74, gap-free.
    let rows = db
        .run("time_series_patterns", json!({"granularity": "day"}))
        .await;
    assert_eq!(rows.len(), 74);
    assert_eq!(rows[0]["period_start"], json!("2024-01-15"));
    assert_eq!(rows[5]["period_start"], json!("2024-01-20"));
    assert!(close(rows[5]["revenue"].as_f64().unwrap(), 36.0));
    assert_eq!(rows[73]["period_start"], json!("2024-03-28"));
    let total: f64 = nums(&rows, "revenue").iter().sum();
    assert!(close(total, 4061.0));
    let orders: i64 = rows.iter().map(|r| r["orders"].as_i64().unwrap()).sum();
    assert_eq!(orders, 8);
}

#[tokio::test]
async fn source_systems_filter_and_empty_periods() {
    let db = fixture_db().await;
    // shop only: Jan 36 (1 order), Feb none -> filled with 0, Mar 25 + 50 = 75 (2 orders).
    let rows = db
        .run(
            "time_series_patterns",
            json!({"granularity": "month", "source_systems": ["shop"]}),
        )
        .await;
    assert_eq!(
        col(&rows, "period_start"),
        vec![
            json!("2024-01-01"),
            json!("2024-02-01"),
            json!("2024-03-01")
        ]
    );
    assert_nums(&nums(&rows, "revenue"), &[36.0, 0.0, 75.0]);
    assert_eq!(col(&rows, "orders"), vec![json!(1), json!(0), json!(2)]);
    assert_eq!(
        col(&rows, "growth_streak_id"),
        vec![Value::Null, Value::Null, json!(1)]
    );
    // Slope: (-1*36 + 1*75) / 2 = 19.5.
    assert!(close(rows[0]["trend_slope"].as_f64().unwrap(), 19.5));

    // erp weekly: first week 2024-01-15 (1000), last 2024-03-04 (300 + 50): 8 weeks.
    let rows = db
        .run("time_series_patterns", json!({"source_systems": ["erp"]}))
        .await;
    assert_eq!(rows.len(), 8);
    assert_nums(
        &nums(&rows, "revenue"),
        &[1000.0, 0.0, 0.0, 600.0, 0.0, 2000.0, 0.0, 350.0],
    );

    // A system without orders gives no periods at all.
    let rows = db
        .run("time_series_patterns", json!({"source_systems": ["crm"]}))
        .await;
    assert!(rows.is_empty(), "{rows:?}");
}

#[tokio::test]
async fn window_and_threshold_change_the_anomalies() {
    let db = fixture_db().await;
    // window 2 over [1036, 0, 0, 600, 0, 2000, 0, 350, 25, 0, 50]:
    //   index 2: window [1036, 0], avg 518, sd sqrt(2*518^2) = 732.56, z = -0.707
    //   index 3: window [0, 0], sd 0 -> no z
    //   index 5: window [600, 0], avg 300, sd 424.26, z = 1700/424.26 = 4.007
    //   index 10: window [25, 0], avg 12.5, sd 17.678, z = 37.5/17.678 = 2.121
    //   every other |z| is below 1.
    let rows = db.run("time_series_patterns", json!({"window": 2})).await;
    assert_eq!(rows[1]["z_score"], Value::Null);
    assert!(close(rows[2]["moving_avg"].as_f64().unwrap(), 518.0));
    assert!(close(rows[2]["moving_stddev"].as_f64().unwrap(), 732.56));
    assert!(close(rows[2]["z_score"].as_f64().unwrap(), -0.707));
    assert!(close(rows[3]["moving_stddev"].as_f64().unwrap(), 0.0));
    assert_eq!(rows[3]["z_score"], Value::Null);
    assert_eq!(rows[3]["is_anomaly"], json!(false));
    assert!(close(rows[5]["z_score"].as_f64().unwrap(), 4.007));
    assert!(close(rows[10]["z_score"].as_f64().unwrap(), 2.121));
    assert_eq!(anomalies(&rows), vec!["2024-02-19", "2024-03-25"]);

    let rows = db
        .run(
            "time_series_patterns",
            json!({"window": 2, "z_threshold": 3}),
        )
        .await;
    assert_eq!(anomalies(&rows), vec!["2024-02-19"]);
    let rows = db
        .run(
            "time_series_patterns",
            json!({"window": 2, "z_threshold": 4.5}),
        )
        .await;
    assert!(anomalies(&rows).is_empty());
    // Window 4, threshold 6: 6.167 still counts; 6.5 does not.
    let rows = db
        .run("time_series_patterns", json!({"z_threshold": 6}))
        .await;
    assert_eq!(anomalies(&rows), vec!["2024-02-19"]);
    let rows = db
        .run("time_series_patterns", json!({"z_threshold": 6.5}))
        .await;
    assert!(anomalies(&rows).is_empty());
}

#[tokio::test]
async fn growth_streaks_span_consecutive_periods() {
    let db = empty_db().await;
    db.exec(
        "INSERT INTO canonical.orders (source_system, source_id, order_date, total_amount) VALUES
           ('shop', 'd1',  '2024-01-01T09:00:00Z', 100.00),
           ('shop', 'd2',  '2024-01-02T09:00:00Z', 200.00),
           ('shop', 'd3a', '2024-01-03T09:00:00Z', 200.00),
           ('shop', 'd3b', '2024-01-03T23:30:00Z', 100.00),
           ('shop', 'd4',  '2024-01-04T09:00:00Z',  50.00),
           ('shop', 'd5',  '2024-01-05T09:00:00Z',  60.00),
           ('shop', 'd7',  '2024-01-07T09:00:00Z',  10.00);",
    )
    .await;
    let rows = db
        .run(
            "time_series_patterns",
            json!({"granularity": "day", "window": 2}),
        )
        .await;
    // Days 01-01 .. 01-07: [100, 200, 300, 50, 60, 0, 10]; orders [1, 1, 2, 1, 1, 0, 1].
    assert_eq!(rows.len(), 7);
    assert_nums(
        &nums(&rows, "revenue"),
        &[100.0, 200.0, 300.0, 50.0, 60.0, 0.0, 10.0],
    );
    assert_eq!(
        col(&rows, "orders"),
        [1, 1, 2, 1, 1, 0, 1].map(|n| json!(n)).to_vec()
    );
    // Growth on 01-02 and 01-03 (one streak of 2), 01-05 (streak 2), 01-07 (streak 3).
    assert_eq!(
        col(&rows, "growth_streak_id"),
        vec![
            Value::Null,
            json!(1),
            json!(1),
            Value::Null,
            json!(2),
            Value::Null,
            json!(3)
        ]
    );
    assert_eq!(
        col(&rows, "growth_streak_length"),
        [0, 1, 2, 0, 1, 0, 1].map(|n| json!(n)).to_vec()
    );
    // 01-03: window [100, 200], avg 150, sd 70.71, z = 150/70.71 = 2.121 -> anomaly.
    assert!(close(rows[2]["moving_avg"].as_f64().unwrap(), 150.0));
    assert!(close(rows[2]["z_score"].as_f64().unwrap(), 2.121));
    // 01-04: window [200, 300], avg 250, sd 70.71, z = -200/70.71 = -2.828 -> anomaly.
    assert!(close(rows[3]["z_score"].as_f64().unwrap(), -2.828));
    // 01-05: window [300, 50], avg 175, sd 176.78, z = -115/176.78 = -0.651.
    assert!(close(rows[4]["z_score"].as_f64().unwrap(), -0.651));
    // 01-06 (no orders): window [50, 60], avg 55, sd 7.071, z = -55/7.071 = -7.778 -> anomaly.
    assert!(close(rows[5]["z_score"].as_f64().unwrap(), -7.778));
    assert_eq!(
        anomalies(&rows),
        vec!["2024-01-03", "2024-01-04", "2024-01-06"]
    );

    // No orders at all: no periods.
    let empty = empty_db().await;
    assert!(empty
        .run("time_series_patterns", json!({}))
        .await
        .is_empty());
}

#[tokio::test]
async fn rejects_invalid_parameters() {
    let db = fixture_db().await;
    let err = db
        .run_err("time_series_patterns", json!({"granularity": "year"}))
        .await;
    assert!(err.contains("granularity"), "{err}");
    let err = db
        .run_err("time_series_patterns", json!({"granularity": "week'; --"}))
        .await;
    assert!(err.contains("granularity"), "{err}");
    let err = db
        .run_err("time_series_patterns", json!({"window": 1}))
        .await;
    assert!(err.contains("window"), "{err}");
    let err = db
        .run_err("time_series_patterns", json!({"window": 53}))
        .await;
    assert!(err.contains("window"), "{err}");
    let err = db
        .run_err("time_series_patterns", json!({"z_threshold": 0}))
        .await;
    assert!(err.contains("z_threshold"), "{err}");
    let err = db
        .run_err("time_series_patterns", json!({"z_threshold": "high"}))
        .await;
    assert!(err.contains("z_threshold"), "{err}");
    let err = db
        .run_err(
            "time_series_patterns",
            json!({"source_systems": ["Shop Orders"]}),
        )
        .await;
    assert!(err.contains("source_systems"), "{err}");
}
