-- Revenue time series with trend, anomalies and growth streaks.
--
-- Order revenue (orders.total_amount) and order counts are bucketed by day, ISO
-- week (Monday) or calendar month of order_date in UTC, then made gap-free with
-- generate_series from the first to the last period that has orders (empty
-- periods count as 0). On that series:
--   * trend: least-squares line of revenue over the period index (regr_slope /
--     regr_intercept), the same slope on every row plus the fitted value per row;
--   * anomalies: moving z-score against the `window` periods BEFORE the current
--     one: z = (revenue - avg) / stddev_samp of that window; computed only once a
--     full window precedes the period and its stddev is not 0; flagged when
--     |z| >= z_threshold;
--   * growth streaks (gaps and islands): a period grows when its revenue is above
--     the previous period's; consecutive growing periods form a streak, numbered
--     1, 2, ... in time order, and growth_streak_length counts the periods of the
--     streak so far (0 when not growing).
WITH orders_in_scope AS (
  SELECT
    date_trunc({{ granularity }}::text, o.order_date AT TIME ZONE 'UTC')::date AS period_start,
    o.total_amount
  FROM canonical.orders o
  WHERE {{ source_systems }}::text[] IS NULL OR o.source_system = ANY({{ source_systems }}::text[])
),
per_period AS (
  SELECT period_start, count(*) AS orders, sum(total_amount) AS revenue
  FROM orders_in_scope
  GROUP BY period_start
),
series AS (
  SELECT g.period_start::date AS period_start,
         (row_number() OVER (ORDER BY g.period_start) - 1) AS period_index
  FROM (SELECT min(period_start) AS first_period, max(period_start) AS last_period FROM per_period) b
  CROSS JOIN LATERAL generate_series(
    b.first_period::timestamp,
    b.last_period::timestamp,
    CASE {{ granularity }}::text
      WHEN 'day' THEN interval '1 day'
      WHEN 'week' THEN interval '1 week'
      ELSE interval '1 month'
    END) AS g(period_start)
),
filled AS (
  SELECT s.period_start, s.period_index,
         coalesce(p.orders, 0)::bigint AS orders,
         coalesce(p.revenue, 0)::numeric AS revenue
  FROM series s
  LEFT JOIN per_period p ON p.period_start = s.period_start
),
windowed AS (
  SELECT
    f.*,
    f.revenue - lag(f.revenue) OVER w AS revenue_change,
    count(*) OVER prev AS window_periods,
    avg(f.revenue) OVER prev AS moving_avg,
    stddev_samp(f.revenue) OVER prev AS moving_stddev,
    regr_slope(f.revenue, f.period_index) OVER () AS trend_slope,
    regr_intercept(f.revenue, f.period_index) OVER () AS trend_intercept
  FROM filled f
  WINDOW w AS (ORDER BY f.period_start),
         prev AS (ORDER BY f.period_start ROWS BETWEEN {{ window }} PRECEDING AND 1 PRECEDING)
),
flagged AS (
  SELECT
    wd.*,
    coalesce(wd.revenue_change > 0, false) AS is_growth,
    wd.window_periods = {{ window }} AS full_window
  FROM windowed wd
),
islands AS (
  -- every non-growing period starts a new island; the growing periods after it belong to it
  SELECT fl.*,
         count(*) FILTER (WHERE NOT fl.is_growth) OVER (ORDER BY fl.period_start) AS island
  FROM flagged fl
),
streaks AS (
  SELECT i.*,
         CASE WHEN i.full_window
              THEN (i.revenue - i.moving_avg) / NULLIF(i.moving_stddev, 0) END AS z,
         CASE WHEN i.is_growth
              THEN count(*) FILTER (WHERE i.is_growth) OVER (PARTITION BY i.island ORDER BY i.period_start)
              ELSE 0 END AS growth_streak_length
  FROM islands i
)
SELECT
  s.period_start,
  s.period_index::bigint AS period_index,
  s.orders,
  round(s.revenue, 2) AS revenue,
  round(s.revenue_change, 2) AS revenue_change,
  s.is_growth,
  CASE WHEN s.is_growth
       THEN dense_rank() OVER (ORDER BY CASE WHEN s.is_growth THEN s.island END NULLS LAST) END::bigint AS growth_streak_id,
  s.growth_streak_length::bigint AS growth_streak_length,
  CASE WHEN s.full_window THEN round(s.moving_avg, 2) END AS moving_avg,
  CASE WHEN s.full_window THEN round(s.moving_stddev, 2) END AS moving_stddev,
  round(s.z, 3) AS z_score,
  coalesce(abs(s.z) >= CAST({{ z_threshold }} AS float8)::numeric, false) AS is_anomaly,
  round(s.trend_slope::numeric, 2) AS trend_slope,
  round((s.trend_intercept + s.trend_slope * s.period_index)::numeric, 2) AS trend_value
FROM streaks s
ORDER BY s.period_start
