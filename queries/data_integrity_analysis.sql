-- Data quality scorecard: one row per canonical entity table and source system.
--
-- Every entity row is checked once: how many of its key fields are filled,
-- whether it passes the validity rules, whether its natural key is shared with
-- another row of the same source, and whether its references resolve. The
-- checks are aggregated to percentages, combined with the freshness of the newest
-- source change (relative to as_of) and the quarantine rate of the source's
-- ingest files, and folded into a weighted 0-100 quality score. Components that do
-- not apply (NULL) are left out of the score and the remaining weights rescaled.
-- With unify (or entity = companies) the companies' golden rows are scored too, and
-- an organization's natural key for uniqueness becomes its company.
WITH params AS (
  SELECT coalesce({{ as_of }}::timestamptz, now()) AS as_of,
         {{ freshness_days }}::numeric            AS freshness_days
),
-- Each table is aggregated to one row per source system inside its own branch
-- (a plain scan with a per-row check, which PostgreSQL runs in parallel and
-- hashes into a handful of groups). Uniqueness comes from grouping the natural
-- keys (dup_*: the rows of every key held by more than one row), not from a
-- window over every row, which had to sort each table by its key.
dup_organizations AS (
  SELECT g.source_system, sum(g.n) AS duplicate_rows
  FROM (
{% if unify %}
    -- with unify the natural key is the company: two records of one source
    -- system in the same company are the same customer recorded twice
    SELECT o.source_system, count(*) AS n
    FROM canonical.organizations o
    JOIN canonical.company_members m ON m.organization_id = o.id
    WHERE ({{ entity }}::text IS NULL OR {{ entity }}::text = 'organizations')
      AND ({{ source_system }}::text IS NULL OR o.source_system = {{ source_system }}::text)
    GROUP BY o.source_system, m.company_id
{% else %}
    SELECT o.source_system, count(*) AS n
    FROM canonical.organizations o
    WHERE nullif(btrim(o.email), '') IS NOT NULL
      AND ({{ entity }}::text IS NULL OR {{ entity }}::text = 'organizations')
      AND ({{ source_system }}::text IS NULL OR o.source_system = {{ source_system }}::text)
    GROUP BY o.source_system, lower(nullif(btrim(o.email), ''))
{% endif %}
    HAVING count(*) > 1
  ) g
  GROUP BY g.source_system
),
dup_products AS (
  SELECT g.source_system, sum(g.n) AS duplicate_rows
  FROM (
    SELECT p.source_system, count(*) AS n
    FROM canonical.products p
    WHERE nullif(btrim(p.sku), '') IS NOT NULL
      AND ({{ entity }}::text IS NULL OR {{ entity }}::text = 'products')
      AND ({{ source_system }}::text IS NULL OR p.source_system = {{ source_system }}::text)
    GROUP BY p.source_system, nullif(btrim(p.sku), '')
    HAVING count(*) > 1
  ) g
  GROUP BY g.source_system
),
dup_orders AS (
  SELECT g.source_system, sum(g.n) AS duplicate_rows
  FROM (
    SELECT r.source_system, count(*) AS n
    FROM canonical.orders r
    WHERE nullif(btrim(r.order_number), '') IS NOT NULL
      AND ({{ entity }}::text IS NULL OR {{ entity }}::text = 'orders')
      AND ({{ source_system }}::text IS NULL OR r.source_system = {{ source_system }}::text)
    GROUP BY r.source_system, btrim(r.order_number)
    HAVING count(*) > 1
  ) g
  GROUP BY g.source_system
),
dup_opportunities AS (
  -- an opportunity without a name shares its key with the account's other
  -- unnamed ones
  SELECT g.source_system, sum(g.n) AS duplicate_rows
  FROM (
    SELECT y.source_system, count(*) AS n
    FROM canonical.opportunities y
    WHERE ({{ entity }}::text IS NULL OR {{ entity }}::text = 'opportunities')
      AND ({{ source_system }}::text IS NULL OR y.source_system = {{ source_system }}::text)
    GROUP BY y.source_system, coalesce(y.organization_source_id, ''), lower(btrim(y.name))
    HAVING count(*) > 1
  ) g
  GROUP BY g.source_system
),
per_entity AS (
  -- organizations: key fields name, email, country_code; unique e-mail (or
  -- company); parent resolves
  SELECT 1 AS entity_rank, 'organizations'::text AS entity, a.source_system,
         a.row_count, 3 * a.row_count AS fields_total, a.fields_filled, a.invalid_rows,
         a.row_count AS uniqueness_checked, coalesce(d.duplicate_rows, 0) AS duplicate_rows,
         a.row_count AS references_checked, a.orphan_rows, a.newest_source_update
  FROM (
    SELECT o.source_system,
           count(*) AS row_count,
           sum(num_nonnulls(nullif(btrim(o.name), ''), nullif(btrim(o.email), ''),
                            nullif(btrim(o.country_code), ''))) AS fields_filled,
           count(*) FILTER (WHERE NOT (
             (nullif(btrim(o.email), '') IS NULL OR btrim(o.email) ~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$')
             AND (nullif(btrim(o.country_code), '') IS NULL OR k.code IS NOT NULL)
             AND coalesce(o.annual_revenue, 0) >= 0
             AND coalesce(o.credit_limit, 0) >= 0
             AND coalesce(o.employee_count, 0) >= 0)) AS invalid_rows,
           count(*) FILTER (WHERE o.parent_source_id IS NOT NULL AND p.id IS NULL) AS orphan_rows,
           max(o.source_updated_at) AS newest_source_update
    FROM canonical.organizations o
    LEFT JOIN canonical.organizations p
      ON p.source_system = o.source_system AND p.source_id = o.parent_source_id
    LEFT JOIN canonical.countries k ON k.code = o.country_code
    WHERE ({{ entity }}::text IS NULL OR {{ entity }}::text = 'organizations')
      AND ({{ source_system }}::text IS NULL OR o.source_system = {{ source_system }}::text)
    GROUP BY o.source_system
  ) a
  LEFT JOIN dup_organizations d ON d.source_system = a.source_system

  UNION ALL
  -- products: key fields sku, name, category, unit_price, currency; unique SKU; no references
  SELECT 2, 'products', a.source_system,
         a.row_count, 5 * a.row_count, a.fields_filled, a.invalid_rows,
         a.row_count, coalesce(d.duplicate_rows, 0),
         0, 0, a.newest_source_update
  FROM (
    SELECT p.source_system,
           count(*) AS row_count,
           sum(num_nonnulls(nullif(btrim(p.sku), ''), nullif(btrim(p.name), ''), nullif(btrim(p.category), ''),
                            p.unit_price, nullif(btrim(p.currency), ''))) AS fields_filled,
           count(*) FILTER (WHERE NOT (
             coalesce(p.unit_price, 0) >= 0
             AND (nullif(btrim(p.currency), '') IS NULL OR p.currency ~ '^[A-Z]{3}$'))) AS invalid_rows,
           max(p.source_updated_at) AS newest_source_update
    FROM canonical.products p
    WHERE ({{ entity }}::text IS NULL OR {{ entity }}::text = 'products')
      AND ({{ source_system }}::text IS NULL OR p.source_system = {{ source_system }}::text)
    GROUP BY p.source_system
  ) a
  LEFT JOIN dup_products d ON d.source_system = a.source_system

  UNION ALL
  -- orders: key fields order_number, customer_source_id, status, currency; unique
  -- order_number; the buying organization resolves
  SELECT 3, 'orders', a.source_system,
         a.row_count, 4 * a.row_count, a.fields_filled, a.invalid_rows,
         a.row_count, coalesce(d.duplicate_rows, 0),
         a.row_count, a.orphan_rows, a.newest_source_update
  FROM (
    SELECT r.source_system,
           count(*) AS row_count,
           sum(num_nonnulls(nullif(btrim(r.order_number), ''), nullif(btrim(r.customer_source_id), ''),
                            nullif(btrim(r.status), ''), nullif(btrim(r.currency), ''))) AS fields_filled,
           count(*) FILTER (WHERE NOT (
             r.total_amount >= 0
             AND coalesce(r.subtotal_amount, 0) >= 0
             AND coalesce(r.tax_amount, 0) >= 0
             AND (nullif(btrim(r.currency), '') IS NULL OR r.currency ~ '^[A-Z]{3}$'))) AS invalid_rows,
           count(*) FILTER (WHERE g.id IS NULL) AS orphan_rows,
           max(r.source_updated_at) AS newest_source_update
    FROM canonical.orders r
    LEFT JOIN canonical.organizations g ON g.id = r.organization_id
    WHERE ({{ entity }}::text IS NULL OR {{ entity }}::text = 'orders')
      AND ({{ source_system }}::text IS NULL OR r.source_system = {{ source_system }}::text)
    GROUP BY r.source_system
  ) a
  LEFT JOIN dup_orders d ON d.source_system = a.source_system

  UNION ALL
  -- order_lines: key fields sku, description, unit_price, currency; uniqueness is
  -- enforced by the schema (source_id, order_id + line_number); the product resolves
  SELECT 4, 'order_lines', l.source_system,
         count(*), 4 * count(*),
         sum(num_nonnulls(nullif(btrim(l.sku), ''), nullif(btrim(l.description), ''),
                          l.unit_price, nullif(btrim(l.currency), ''))),
         count(*) FILTER (WHERE NOT (
           l.quantity > 0
           AND l.net_amount >= 0
           AND l.discount_amount >= 0
           AND coalesce(l.unit_price, 0) >= 0
           AND (nullif(btrim(l.currency), '') IS NULL OR l.currency ~ '^[A-Z]{3}$'))),
         0, 0,
         count(*), count(*) FILTER (WHERE l.product_id IS NULL),
         max(l.source_updated_at)
  FROM canonical.order_lines l
  WHERE ({{ entity }}::text IS NULL OR {{ entity }}::text = 'order_lines')
    AND ({{ source_system }}::text IS NULL OR l.source_system = {{ source_system }}::text)
  GROUP BY l.source_system

  UNION ALL
  -- opportunities: key fields organization_source_id, stage, amount, currency,
  -- close_date; unique (account, name); the account resolves
  SELECT 5, 'opportunities', a.source_system,
         a.row_count, 5 * a.row_count, a.fields_filled, a.invalid_rows,
         a.row_count, coalesce(d.duplicate_rows, 0),
         a.row_count, a.orphan_rows, a.newest_source_update
  FROM (
    SELECT y.source_system,
           count(*) AS row_count,
           sum(num_nonnulls(nullif(btrim(y.organization_source_id), ''), nullif(btrim(y.stage), ''),
                            y.amount, nullif(btrim(y.currency), ''), y.close_date)) AS fields_filled,
           count(*) FILTER (WHERE NOT (
             coalesce(y.amount, 0) >= 0
             AND coalesce(y.probability BETWEEN 0 AND 100, true)
             AND (y.is_closed OR NOT y.is_won)
             AND (nullif(btrim(y.currency), '') IS NULL OR y.currency ~ '^[A-Z]{3}$'))) AS invalid_rows,
           count(*) FILTER (WHERE y.organization_id IS NULL) AS orphan_rows,
           max(y.source_updated_at) AS newest_source_update
    FROM canonical.opportunities y
    WHERE ({{ entity }}::text IS NULL OR {{ entity }}::text = 'opportunities')
      AND ({{ source_system }}::text IS NULL OR y.source_system = {{ source_system }}::text)
    GROUP BY y.source_system
  ) a
  LEFT JOIN dup_opportunities d ON d.source_system = a.source_system

  UNION ALL
  -- companies (with unify, or asked for by entity): the golden rows. Key fields name,
  -- industry, country_code, email_domain; the organizations' validity rules that
  -- apply; unique by construction and without references; as fresh as the newest
  -- member. With source_system: the companies that have a member there.
  SELECT 6, 'companies', '(all)',
         a.row_count, 4 * a.row_count, a.fields_filled, a.invalid_rows,
         0, 0, 0, 0,
         (SELECT max(o.source_updated_at)
          FROM canonical.company_members m
          JOIN canonical.companies c ON c.id = m.company_id
          JOIN canonical.organizations o ON o.id = m.organization_id
          WHERE {{ source_system }}::text IS NULL OR {{ source_system }}::text = ANY (c.source_systems))
  FROM (
    SELECT count(*) AS row_count,
           sum(num_nonnulls(nullif(btrim(c.name), ''), nullif(btrim(c.industry), ''),
                            nullif(btrim(c.country_code), ''), nullif(btrim(c.email_domain), ''))) AS fields_filled,
           count(*) FILTER (WHERE NOT (
             (nullif(btrim(c.country_code), '') IS NULL OR k.code IS NOT NULL)
             AND coalesce(c.annual_revenue, 0) >= 0
             AND coalesce(c.employee_count, 0) >= 0)) AS invalid_rows
    FROM canonical.companies c
    LEFT JOIN canonical.countries k ON k.code = c.country_code
    WHERE ({{ unify }}::boolean OR {{ entity }}::text = 'companies')
      AND ({{ entity }}::text IS NULL OR {{ entity }}::text = 'companies')
      AND ({{ source_system }}::text IS NULL OR {{ source_system }}::text = ANY (c.source_systems))
  ) a
  WHERE a.row_count > 0
),
ingest AS (
  -- The ledger records files per source system, not per entity: the rate applies
  -- to every entity of that source. Only deliveries count: a quarantine replay
  -- re-reads records that were already counted once.
  -- A file applied again under a new mapping version (backfill) counts once, as
  -- its latest application.
  SELECT f.source_system,
         sum(f.records_read)::bigint AS records_read
  FROM (
    SELECT DISTINCT ON (source_system, object_key, content_sha256) source_system, records_read
    FROM canonical.ingest_files
    WHERE status = 'loaded' AND object_key NOT LIKE 'quarantine-replay/%'
    ORDER BY source_system, object_key, content_sha256, id DESC
  ) f
  GROUP BY f.source_system
),
open_quarantine AS (
  -- One entry per rejected record (a replay that rejects it again adds none); a
  -- record a replay resolved no longer counts.
  SELECT q.source_system,
         count(*)::bigint                                   AS all_entries,
         count(*) FILTER (WHERE q.resolved_at IS NULL)::bigint AS open_entries
  FROM canonical.quarantine q
  GROUP BY q.source_system
),
scored AS (
  SELECT e.*,
         i.records_read,
         coalesce(q.all_entries, 0) AS quarantined,
         coalesce(q.open_entries, 0) AS open_quarantine,
         round(extract(epoch FROM (pr.as_of - e.newest_source_update)) / 86400.0, 2) AS age_days,
         round(100.0 * e.fields_filled / NULLIF(e.fields_total, 0), 2)                  AS completeness_pct,
         round(100.0 * (e.row_count - e.invalid_rows) / NULLIF(e.row_count, 0), 2)     AS validity_pct,
         round(100.0 * (e.uniqueness_checked - e.duplicate_rows)
               / NULLIF(e.uniqueness_checked, 0), 2)                                    AS uniqueness_pct,
         round(100.0 * (e.references_checked - e.orphan_rows)
               / NULLIF(e.references_checked, 0), 2)                                    AS referential_integrity_pct,
         CASE WHEN e.newest_source_update IS NOT NULL THEN
           round(greatest(0.0, least(100.0,
                 100.0 * (1 - (extract(epoch FROM (pr.as_of - e.newest_source_update)) / 86400.0)
                              / pr.freshness_days))), 2)
         END                                                                            AS freshness_pct,
         round(100.0 * coalesce(q.open_entries, 0) / NULLIF(i.records_read, 0), 2)      AS quarantine_rate_pct
  FROM per_entity e
  CROSS JOIN params pr
  LEFT JOIN ingest i ON i.source_system = e.source_system
  LEFT JOIN open_quarantine q ON q.source_system = e.source_system
)
SELECT s.entity,
       s.source_system,
       s.row_count::bigint AS row_count,
       s.completeness_pct,
       s.validity_pct,
       s.uniqueness_pct,
       s.referential_integrity_pct,
       s.freshness_pct,
       s.quarantine_rate_pct,
       round(
         (  coalesce(25 * s.completeness_pct, 0)
          + coalesce(20 * s.validity_pct, 0)
          + coalesce(15 * s.uniqueness_pct, 0)
          + coalesce(20 * s.referential_integrity_pct, 0)
          + coalesce(10 * s.freshness_pct, 0)
          + coalesce(10 * (100 - s.quarantine_rate_pct), 0))
         / NULLIF(  CASE WHEN s.completeness_pct IS NULL THEN 0 ELSE 25 END
                  + CASE WHEN s.validity_pct IS NULL THEN 0 ELSE 20 END
                  + CASE WHEN s.uniqueness_pct IS NULL THEN 0 ELSE 15 END
                  + CASE WHEN s.referential_integrity_pct IS NULL THEN 0 ELSE 20 END
                  + CASE WHEN s.freshness_pct IS NULL THEN 0 ELSE 10 END
                  + CASE WHEN s.quarantine_rate_pct IS NULL THEN 0 ELSE 10 END, 0),
         2) AS quality_score,
       s.newest_source_update,
       s.age_days AS freshness_age_days,
       jsonb_build_object(
         'key_fields', CASE s.entity
                         WHEN 'organizations' THEN jsonb_build_array('name', 'email', 'country_code')
                         WHEN 'products'      THEN jsonb_build_array('sku', 'name', 'category', 'unit_price', 'currency')
                         WHEN 'orders'        THEN jsonb_build_array('order_number', 'customer_source_id', 'status', 'currency')
                         WHEN 'order_lines'   THEN jsonb_build_array('sku', 'description', 'unit_price', 'currency')
                         WHEN 'companies'     THEN jsonb_build_array('name', 'industry', 'country_code', 'email_domain')
                         ELSE jsonb_build_array('organization_source_id', 'stage', 'amount', 'currency', 'close_date')
                       END,
         'missing_values', s.fields_total - s.fields_filled,
         'invalid_rows', s.invalid_rows,
         'duplicate_rows', s.duplicate_rows,
         'orphan_rows', s.orphan_rows,
         'records_read', s.records_read,
         'quarantined', s.quarantined,
         'open_quarantine', s.open_quarantine
       ) AS details
FROM scored s
ORDER BY s.entity_rank, s.source_system
