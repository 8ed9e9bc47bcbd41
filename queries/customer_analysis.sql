-- customer_analysis: customer segmentation and ranking.
--
-- Customers are all organizations (kind company or person). Each one gets its order
-- statistics (lifetime value = sum of orders.total_amount, 0 without orders; order
-- count; average order value = lifetime value / order count, NULL without orders) and
-- is placed in a segment by the chosen dimension (industry, country, tier,
-- source_system or region via canonical.countries; missing values form the segment
-- '(unknown)'). Segments smaller than min_segment_size are dropped with HAVING.
--
-- unify = true: a customer is a company (canonical.companies: organizations of
--   every source system joined by accepted links), segmented by its golden
--   values; its orders from every system count once. source_systems keeps only
--   orders from those systems (with or without unify).
--
-- level = customer: one row per customer with its segment's size and totals and its
--   rank, dense rank and percent rank within the segment by the chosen metric
--   (highest first, customers without a value last).
-- level = segment: one row per segment with its totals; the rank columns then rank
--   the segments against each other by the chosen metric, and the customer columns
--   are NULL.
WITH order_stats AS (
    -- per customer: an organization, or with unify a company (all its members' orders)
    SELECT {% if unify %}m.company_id{% else %}o.organization_id{% endif %} AS customer_id,
           count(*)::bigint    AS order_count,
           sum(o.total_amount) AS lifetime_value,
           min(o.order_date)   AS first_order_at,
           max(o.order_date)   AS last_order_at
    FROM canonical.orders o
{% if unify %}
    JOIN canonical.company_members m ON m.organization_id = o.organization_id
{% endif %}
    WHERE o.organization_id IS NOT NULL
      AND ({{ source_systems }}::text[] IS NULL OR o.source_system = ANY({{ source_systems }}::text[]))
    GROUP BY 1
),
customers AS (
{% if unify %}
    -- one customer per company, described by its golden row (survivorship of
    -- mappings/companies.yaml)
    SELECT NULL::bigint                                        AS organization_id,
           co.id                                               AS company_id,
           co.name                                             AS customer_name,
           co.kind,
           array_to_string(co.source_systems, ',')             AS source_system,
           NULL::text                                          AS source_id,
           coalesce(nullif(btrim(co.industry), ''), '(unknown)') AS industry,
           coalesce(co.country_code::text, '(unknown)')          AS country,
           coalesce(nullif(btrim(co.tier), ''), '(unknown)')     AS tier,
           coalesce(c.region, '(unknown)')                        AS region,
           coalesce(s.lifetime_value, 0)::numeric(18, 2)          AS lifetime_value,
           coalesce(s.order_count, 0)::bigint                     AS order_count,
           round(s.lifetime_value / NULLIF(s.order_count, 0), 2)  AS average_order_value,
           s.first_order_at,
           s.last_order_at
    FROM canonical.companies co
    LEFT JOIN canonical.countries c ON c.code = co.country_code
    LEFT JOIN order_stats s ON s.customer_id = co.id
{% else %}
    SELECT org.id                                              AS organization_id,
           m.company_id,
           org.name                                            AS customer_name,
           org.kind,
           org.source_system,
           org.source_id,
           coalesce(nullif(btrim(org.industry), ''), '(unknown)') AS industry,
           coalesce(org.country_code::text, '(unknown)')          AS country,
           coalesce(nullif(btrim(org.tier), ''), '(unknown)')     AS tier,
           coalesce(c.region, '(unknown)')                        AS region,
           coalesce(s.lifetime_value, 0)::numeric(18, 2)          AS lifetime_value,
           coalesce(s.order_count, 0)::bigint                     AS order_count,
           round(s.lifetime_value / NULLIF(s.order_count, 0), 2)  AS average_order_value,
           s.first_order_at,
           s.last_order_at
    FROM canonical.organizations org
    LEFT JOIN canonical.company_members m ON m.organization_id = org.id
    LEFT JOIN canonical.countries c ON c.code = org.country_code
    LEFT JOIN order_stats s ON s.customer_id = org.id
    WHERE org.kind IN ('company', 'person')
{% endif %}
),
segmented AS (
    SELECT cu.{{ ident("group_by") }} AS segment,
           cu.*,
{% if metric == "lifetime_value" %}
           cu.lifetime_value::numeric AS metric_value
{% elif metric == "order_count" %}
           cu.order_count::numeric AS metric_value
{% else %}
           cu.average_order_value::numeric AS metric_value
{% endif %}
    FROM customers cu
),
grand AS (
    SELECT sum(lifetime_value) AS total_lifetime_value FROM segmented
),
segments AS (
    SELECT segment,
           count(*)::bigint                                AS segment_size,
           count(*) FILTER (WHERE order_count > 0)::bigint AS segment_active_customers,
           sum(lifetime_value)                             AS segment_lifetime_value,
           sum(order_count)::bigint                        AS segment_order_count,
           min(first_order_at)                             AS first_order_at,
           max(last_order_at)                              AS last_order_at
    FROM segmented
    GROUP BY segment
    HAVING count(*) >= {{ min_segment_size }}
)
{% if level == "segment" %}
, segment_metrics AS (
    SELECT g.*,
           round(g.segment_lifetime_value / NULLIF(g.segment_order_count, 0), 2) AS average_order_value,
{% if metric == "lifetime_value" %}
           g.segment_lifetime_value::numeric AS metric_value
{% elif metric == "order_count" %}
           g.segment_order_count::numeric AS metric_value
{% else %}
           round(g.segment_lifetime_value / NULLIF(g.segment_order_count, 0), 2) AS metric_value
{% endif %}
    FROM segments g
)
SELECT m.segment,
       m.segment_size,
       m.segment_active_customers,
       round(m.segment_lifetime_value, 2)                   AS segment_lifetime_value,
       m.segment_order_count,
       NULL::bigint                                         AS organization_id,
       NULL::bigint                                         AS company_id,
       NULL::text                                           AS customer_name,
       NULL::text                                           AS kind,
       NULL::text                                           AS source_system,
       NULL::text                                           AS source_id,
       round(m.segment_lifetime_value, 2)                   AS lifetime_value,
       m.segment_order_count                                AS order_count,
       m.average_order_value,
       m.first_order_at,
       m.last_order_at,
       m.metric_value,
       rank() OVER w                                        AS metric_rank,
       dense_rank() OVER w                                  AS metric_dense_rank,
       round((percent_rank() OVER w)::numeric, 4)           AS metric_percent_rank,
       round(100 * m.segment_lifetime_value / NULLIF(gr.total_lifetime_value, 0), 2) AS value_share_pct
FROM segment_metrics m
CROSS JOIN grand gr
WINDOW w AS (ORDER BY m.metric_value DESC NULLS LAST)
ORDER BY metric_rank, m.segment COLLATE "C"
{% else %}
SELECT s.segment,
       g.segment_size,
       g.segment_active_customers,
       round(g.segment_lifetime_value, 2)                   AS segment_lifetime_value,
       g.segment_order_count,
       s.organization_id,
       s.company_id,
       s.customer_name,
       s.kind,
       s.source_system,
       s.source_id,
       s.lifetime_value,
       s.order_count,
       s.average_order_value,
       s.first_order_at,
       s.last_order_at,
       s.metric_value,
       rank() OVER w                                        AS metric_rank,
       dense_rank() OVER w                                  AS metric_dense_rank,
       round((percent_rank() OVER w)::numeric, 4)           AS metric_percent_rank,
       round(100 * s.lifetime_value / NULLIF(g.segment_lifetime_value, 0), 2) AS value_share_pct
FROM segmented s
JOIN segments g ON g.segment = s.segment
WINDOW w AS (PARTITION BY s.segment ORDER BY s.metric_value DESC NULLS LAST)
ORDER BY s.segment COLLATE "C", metric_rank, s.organization_id, s.company_id
{% endif %}
