-- One row per canonical entity table; source_system is bound as a parameter.
SELECT * FROM (
SELECT
  'organizations'::text                                  AS entity,
  count(*)::bigint                             AS row_count,
  count(*) FILTER (WHERE version > 1)::bigint  AS versioned_rows,
  count(DISTINCT source_system)::bigint        AS source_systems,
  max(source_updated_at)                       AS latest_source_update
FROM canonical.organizations
WHERE {{ source_system }}::text IS NULL OR source_system = {{ source_system }}
UNION ALL
SELECT
  'products'::text                                  AS entity,
  count(*)::bigint                             AS row_count,
  count(*) FILTER (WHERE version > 1)::bigint  AS versioned_rows,
  count(DISTINCT source_system)::bigint        AS source_systems,
  max(source_updated_at)                       AS latest_source_update
FROM canonical.products
WHERE {{ source_system }}::text IS NULL OR source_system = {{ source_system }}
UNION ALL
SELECT
  'orders'::text                                  AS entity,
  count(*)::bigint                             AS row_count,
  count(*) FILTER (WHERE version > 1)::bigint  AS versioned_rows,
  count(DISTINCT source_system)::bigint        AS source_systems,
  max(source_updated_at)                       AS latest_source_update
FROM canonical.orders
WHERE {{ source_system }}::text IS NULL OR source_system = {{ source_system }}
UNION ALL
SELECT
  'order_lines'::text                                  AS entity,
  count(*)::bigint                             AS row_count,
  count(*) FILTER (WHERE version > 1)::bigint  AS versioned_rows,
  count(DISTINCT source_system)::bigint        AS source_systems,
  max(source_updated_at)                       AS latest_source_update
FROM canonical.order_lines
WHERE {{ source_system }}::text IS NULL OR source_system = {{ source_system }}
UNION ALL
SELECT
  'opportunities'::text                                  AS entity,
  count(*)::bigint                             AS row_count,
  count(*) FILTER (WHERE version > 1)::bigint  AS versioned_rows,
  count(DISTINCT source_system)::bigint        AS source_systems,
  max(source_updated_at)                       AS latest_source_update
FROM canonical.opportunities
WHERE {{ source_system }}::text IS NULL OR source_system = {{ source_system }}
) AS entities
ORDER BY array_position(ARRAY['organizations', 'products', 'orders', 'order_lines', 'opportunities'], entity)
