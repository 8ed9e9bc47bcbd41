-- multi_dimensional_analytics: an OLAP cube of order-line revenue.
--
-- Facts are order lines (order_lines joined to orders) of the orders placed within
-- `timeframe` before the latest order date in the data (order_date >= max(order_date)
-- - timeframe; anchored on the data, not on now(), so results do not drift while the
-- data stands still). Dimensions: month of the order (UTC), sales region of the buying
-- organization's country (canonical.countries), the organization's industry, the
-- product category (order_lines.product_id -> products) and the order channel.
-- Missing dimension values become '(unknown)' before grouping, so a NULL dimension
-- in the result always means "all values" (a subtotal), never missing data; the
-- grouping_level label and the GROUPING() bitmask say the same thing explicitly.
--
-- mode picks the SQL construct: ROLLUP (month > region > industry > category >
-- channel), CUBE (all 32 combinations) or a curated list of GROUPING SETS.
WITH anchor AS (
    SELECT max(o.order_date) - {{ timeframe }} AS window_start
    FROM canonical.orders o
),
facts AS (
    SELECT date_trunc('month', o.order_date AT TIME ZONE 'UTC')::date AS period,
           coalesce(c.region, '(unknown)')                             AS region,
           coalesce(nullif(btrim(org.industry), ''), '(unknown)')      AS industry,
           coalesce(nullif(btrim(p.category), ''), '(unknown)')        AS category,
           coalesce(nullif(btrim(o.channel), ''), '(unknown)')         AS channel,
           o.id                                                        AS order_id,
           o.organization_id,
           ol.quantity,
           ol.net_amount
    FROM anchor a
    JOIN canonical.orders o ON o.order_date >= a.window_start
    JOIN canonical.order_lines ol ON ol.order_id = o.id
    LEFT JOIN canonical.products p ON p.id = ol.product_id
    LEFT JOIN canonical.organizations org ON org.id = o.organization_id
    LEFT JOIN canonical.countries c ON c.code = org.country_code
),
grouped AS (
    SELECT GROUPING(f.period, f.region, f.industry, f.category, f.channel) AS grouping_id,
           f.period,
           f.region,
           f.industry,
           f.category,
           f.channel,
           sum(f.net_amount)                  AS revenue,
           sum(f.quantity)                    AS quantity,
           count(DISTINCT f.order_id)         AS order_count,
           count(DISTINCT f.organization_id)  AS customer_count
    FROM facts f
{% if mode == "rollup" %}
    GROUP BY ROLLUP (f.period, f.region, f.industry, f.category, f.channel)
{% elif mode == "cube" %}
    GROUP BY CUBE (f.period, f.region, f.industry, f.category, f.channel)
{% else %}
    GROUP BY GROUPING SETS (
        (),
        (f.period),
        (f.region),
        (f.industry),
        (f.category),
        (f.channel),
        (f.period, f.region),
        (f.period, f.category),
        (f.period, f.channel),
        (f.region, f.industry),
        (f.region, f.category),
        (f.industry, f.category)
    )
{% endif %}
),
labelled AS (
    SELECT cu.*,
           coalesce(nullif(concat_ws('+',
                        CASE WHEN cu.grouping_id & 16 = 0 THEN 'period' END,
                        CASE WHEN cu.grouping_id & 8 = 0 THEN 'region' END,
                        CASE WHEN cu.grouping_id & 4 = 0 THEN 'industry' END,
                        CASE WHEN cu.grouping_id & 2 = 0 THEN 'category' END,
                        CASE WHEN cu.grouping_id & 1 = 0 THEN 'channel' END), ''),
                    'total') AS grouping_level,
           5 - (  (cu.grouping_id >> 4 & 1) + (cu.grouping_id >> 3 & 1) + (cu.grouping_id >> 2 & 1)
                + (cu.grouping_id >> 1 & 1) + (cu.grouping_id & 1))   AS dimension_count
    FROM grouped cu
)
SELECT l.grouping_level,
       l.grouping_id::bigint                                         AS grouping_id,
       l.dimension_count::bigint                                     AS dimension_count,
       l.grouping_id = 31                                            AS is_grand_total,
       l.period,
       l.region,
       l.industry,
       l.category,
       l.channel,
       round(coalesce(l.revenue, 0), 2)                              AS revenue,
       round(coalesce(l.quantity, 0), 3)                             AS quantity,
       l.order_count::bigint                                         AS order_count,
       l.customer_count::bigint                                      AS customer_count,
       round(l.revenue / NULLIF(l.order_count, 0), 2)                AS average_order_value,
       round(100 * l.revenue / NULLIF(sum(l.revenue) FILTER (WHERE l.grouping_id = 31) OVER (), 0), 2) AS share_of_total_pct
FROM labelled l
ORDER BY l.dimension_count,
         l.grouping_id,
         l.period NULLS FIRST,
         l.region COLLATE "C" NULLS FIRST,
         l.industry COLLATE "C" NULLS FIRST,
         l.category COLLATE "C" NULLS FIRST,
         l.channel COLLATE "C" NULLS FIRST
