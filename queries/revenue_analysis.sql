-- revenue_analysis: revenue over time, or customers ranked by revenue.
--
-- Revenue is orders.total_amount of the orders that pass the filters (order date
-- within start_date..end_date, both inclusive, evaluated in UTC; source system in
-- source_systems). Periods are order_date truncated in UTC to the granularity.
--
-- view = periods: one row per period, gap-free (generate_series from the first to
--   the last period: start_date/end_date when given, otherwise the first/last order),
--   so periods without orders appear with revenue 0. Running total, LAG growth
--   (absolute and percent), a moving average over the last moving_window periods
--   (fewer at the start of the series) and RANK/DENSE_RANK of the periods by revenue.
-- view = customers: one row per buying organization, ranked by revenue (RANK and
--   DENSE_RANK), with its share of total revenue and the cumulative (Pareto) running
--   total in rank order. Orders whose customer is unresolved (organization_id NULL)
--   count in the total but have no row.
-- unify = true: a customer is a company (canonical.companies, organizations of
--   every system joined by accepted links): its orders from every system count
--   once, under its golden name; customer_count counts companies.
WITH filtered AS (
    SELECT o.id,
{% if unify %}
           m.company_id                 AS customer_id,
{% else %}
           o.organization_id            AS customer_id,
{% endif %}
           o.total_amount,
           o.order_date,
           date_trunc({{ granularity }}, o.order_date AT TIME ZONE 'UTC')::date AS period_start
    FROM canonical.orders o
{% if unify %}
    LEFT JOIN canonical.company_members m ON m.organization_id = o.organization_id
{% endif %}
    WHERE ({{ start_date }}::date IS NULL
           OR o.order_date >= ({{ start_date }}::date)::timestamp AT TIME ZONE 'UTC')
      AND ({{ end_date }}::date IS NULL
           OR o.order_date < ({{ end_date }}::date + 1)::timestamp AT TIME ZONE 'UTC')
      AND ({{ source_systems }}::text[] IS NULL
           OR o.source_system = ANY ({{ source_systems }}::text[]))
),
totals AS (
    SELECT sum(total_amount) AS total_revenue FROM filtered
)
{% if view == "customers" %}
, per_customer AS (
    SELECT f.customer_id,
           count(*)::bigint    AS order_count,
           sum(f.total_amount) AS revenue
    FROM filtered f
    WHERE f.customer_id IS NOT NULL
    GROUP BY f.customer_id
),
ranked AS (
    SELECT pc.*,
           rank() OVER (ORDER BY pc.revenue DESC)       AS revenue_rank,
           dense_rank() OVER (ORDER BY pc.revenue DESC) AS revenue_dense_rank,
           sum(pc.revenue) OVER (ORDER BY pc.revenue DESC, pc.customer_id
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running_total
    FROM per_customer pc
)
SELECT NULL::date                                                    AS period_start,
       NULL::date                                                    AS period_end,
{% if unify %}
       NULL::bigint                                                  AS organization_id,
       r.customer_id                                                 AS company_id,
       co.name                                                       AS customer_name,
       array_to_string(co.source_systems, ',')                       AS source_system,
{% else %}
       r.customer_id                                                 AS organization_id,
       m.company_id,
       org.name                                                      AS customer_name,
       org.source_system,
{% endif %}
       r.order_count,
       NULL::bigint                                                  AS customer_count,
       round(r.revenue, 2)                                           AS revenue,
       round(r.revenue / NULLIF(r.order_count, 0), 2)                AS average_order_value,
       round(r.running_total, 2)                                     AS running_total,
       round(100 * r.revenue / NULLIF(t.total_revenue, 0), 2)        AS share_of_total_pct,
       round(100 * r.running_total / NULLIF(t.total_revenue, 0), 2)  AS running_share_pct,
       NULL::numeric                                                 AS previous_revenue,
       NULL::numeric                                                 AS growth_amount,
       NULL::numeric                                                 AS growth_pct,
       NULL::numeric                                                 AS moving_average,
       r.revenue_rank,
       r.revenue_dense_rank
FROM ranked r
{% if unify %}
JOIN canonical.companies co ON co.id = r.customer_id
{% else %}
JOIN canonical.organizations org ON org.id = r.customer_id
LEFT JOIN canonical.company_members m ON m.organization_id = r.customer_id
{% endif %}
CROSS JOIN totals t
ORDER BY r.revenue_rank, r.customer_id
{% else %}
, step AS (
{% if granularity == "day" %}
    SELECT interval '1 day' AS step
{% elif granularity == "week" %}
    SELECT interval '1 week' AS step
{% elif granularity == "month" %}
    SELECT interval '1 month' AS step
{% elif granularity == "quarter" %}
    SELECT interval '3 months' AS step
{% else %}
    SELECT interval '1 year' AS step
{% endif %}
),
bounds AS (
    SELECT date_trunc({{ granularity }},
                      coalesce(({{ start_date }}::date)::timestamp,
                               min(f.order_date AT TIME ZONE 'UTC'))) AS first_period,
           date_trunc({{ granularity }},
                      coalesce(({{ end_date }}::date)::timestamp,
                               max(f.order_date AT TIME ZONE 'UTC'))) AS last_period
    FROM filtered f
),
series AS (
    SELECT gs::date AS period_start,
           (gs + s.step)::date - 1 AS period_end
    FROM bounds b
    CROSS JOIN step s
    CROSS JOIN LATERAL generate_series(b.first_period, b.last_period, s.step) AS gs
),
per_period AS (
    SELECT s.period_start,
           s.period_end,
           count(f.id)::bigint                        AS order_count,
           count(DISTINCT f.customer_id)::bigint      AS customer_count,
           coalesce(sum(f.total_amount), 0)           AS revenue
    FROM series s
    LEFT JOIN filtered f ON f.period_start = s.period_start
    GROUP BY s.period_start, s.period_end
),
windowed AS (
    SELECT p.*,
           sum(p.revenue) OVER (ORDER BY p.period_start
                                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)  AS running_total,
           lag(p.revenue) OVER (ORDER BY p.period_start)                           AS previous_revenue,
           avg(p.revenue) OVER (ORDER BY p.period_start
                                ROWS BETWEEN {{ moving_window }} - 1 PRECEDING AND CURRENT ROW) AS moving_average,
           rank() OVER (ORDER BY p.revenue DESC)                                   AS revenue_rank,
           dense_rank() OVER (ORDER BY p.revenue DESC)                             AS revenue_dense_rank
    FROM per_period p
)
SELECT w.period_start,
       w.period_end,
       NULL::bigint                                                        AS organization_id,
       NULL::bigint                                                        AS company_id,
       NULL::text                                                          AS customer_name,
       NULL::text                                                          AS source_system,
       w.order_count,
       w.customer_count,
       round(w.revenue, 2)                                                 AS revenue,
       round(w.revenue / NULLIF(w.order_count, 0), 2)                      AS average_order_value,
       round(w.running_total, 2)                                           AS running_total,
       round(100 * w.revenue / NULLIF(t.total_revenue, 0), 2)              AS share_of_total_pct,
       round(100 * w.running_total / NULLIF(t.total_revenue, 0), 2)        AS running_share_pct,
       round(w.previous_revenue, 2)                                        AS previous_revenue,
       round(w.revenue - w.previous_revenue, 2)                            AS growth_amount,
       round(100 * (w.revenue - w.previous_revenue) / NULLIF(w.previous_revenue, 0), 2) AS growth_pct,
       round(w.moving_average, 2)                                          AS moving_average,
       w.revenue_rank,
       w.revenue_dense_rank
FROM windowed w
CROSS JOIN totals t
ORDER BY w.period_start
{% endif %}
