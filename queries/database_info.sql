-- Inventory of the canonical schema: one row per table (and, optionally, view) in
-- schema `canonical` with its row count, size, indexes and comment, plus the
-- latest ingest and the current data version (the same on every row).
--
-- Row counts: a pack cannot build SQL dynamically, so every relation of the
-- canonical model (migrations 0001, 0006 and 0009) is counted exactly with its own scalar
-- subquery (each runs once, only for the row that needs it). A relation added
-- later and not listed here falls back to the planner estimate
-- (pg_class.reltuples, NULL when never analysed); row_count_exact says which.
-- Sizes come from pg_total_relation_size / pg_relation_size / pg_indexes_size
-- (0 for views); indexes from pg_indexes; comments from obj_description.
WITH rels AS (
  SELECT
    c.oid,
    c.relname::text AS table_name,
    CASE WHEN c.relkind IN ('v', 'm') THEN 'view' ELSE 'table' END AS kind,
    c.relkind,
    c.reltuples
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'canonical'
    AND (c.relkind IN ('r', 'p') OR ({{ include_views }} AND c.relkind IN ('v', 'm')))
),
exact_counts AS (
  SELECT
    r.oid,
    CASE r.table_name
      WHEN 'organizations'  THEN (SELECT count(*) FROM canonical.organizations)
      WHEN 'products'       THEN (SELECT count(*) FROM canonical.products)
      WHEN 'orders'         THEN (SELECT count(*) FROM canonical.orders)
      WHEN 'order_lines'    THEN (SELECT count(*) FROM canonical.order_lines)
      WHEN 'opportunities'  THEN (SELECT count(*) FROM canonical.opportunities)
      WHEN 'people'         THEN (SELECT count(*) FROM canonical.people)
      WHEN 'entity_links'   THEN (SELECT count(*) FROM canonical.entity_links)
      WHEN 'entity_history' THEN (SELECT count(*) FROM canonical.entity_history)
      WHEN 'companies'      THEN (SELECT count(*) FROM canonical.companies)
      WHEN 'company_members' THEN (SELECT count(*) FROM canonical.company_members)
      WHEN 'link_decisions' THEN (SELECT count(*) FROM canonical.link_decisions)
      WHEN 'countries'      THEN (SELECT count(*) FROM canonical.countries)
      WHEN 'ingest_files'   THEN (SELECT count(*) FROM canonical.ingest_files)
      WHEN 'quarantine'     THEN (SELECT count(*) FROM canonical.quarantine)
      WHEN 'ingest_warnings' THEN (SELECT count(*) FROM canonical.ingest_warnings)
      WHEN 'data_version'   THEN (SELECT count(*) FROM canonical.data_version)
    END AS exact_rows
  FROM rels r
),
index_info AS (
  SELECT
    i.tablename::text AS table_name,
    count(*) AS index_count,
    jsonb_agg(i.indexname::text ORDER BY i.indexname) AS index_names
  FROM pg_catalog.pg_indexes i
  WHERE i.schemaname = 'canonical'
  GROUP BY i.tablename
),
column_info AS (
  SELECT a.attrelid AS oid, count(*) AS column_count
  FROM pg_catalog.pg_attribute a
  WHERE a.attnum > 0 AND NOT a.attisdropped
  GROUP BY a.attrelid
),
ingest AS (
  SELECT
    max(f.finished_at) FILTER (WHERE f.status = 'loaded') AS latest_ingest_at,
    count(*) FILTER (WHERE f.status = 'loaded') AS files_loaded,
    count(*) FILTER (WHERE f.status = 'failed') AS files_failed
  FROM canonical.ingest_files f
),
version AS (
  SELECT max(d.version) AS data_version, max(d.changed_at) AS data_changed_at
  FROM canonical.data_version d
)
SELECT
  r.table_name,
  r.kind,
  coalesce(e.exact_rows, CASE WHEN r.reltuples >= 0 THEN r.reltuples::bigint END) AS row_count,
  e.exact_rows IS NOT NULL AS row_count_exact,
  CASE WHEN r.reltuples >= 0 AND r.kind = 'table' THEN r.reltuples::bigint END AS estimated_rows,
  coalesce(ci.column_count, 0)::bigint AS column_count,
  pg_total_relation_size(r.oid) AS total_bytes,
  pg_relation_size(r.oid) AS table_bytes,
  pg_indexes_size(r.oid) AS index_bytes,
  pg_size_pretty(pg_total_relation_size(r.oid)) AS total_size,
  coalesce(ii.index_count, 0)::bigint AS index_count,
  coalesce(ii.index_names, '[]'::jsonb) AS index_names,
  obj_description(r.oid, 'pg_class') AS comment,
  g.latest_ingest_at,
  g.files_loaded,
  g.files_failed,
  v.data_version,
  v.data_changed_at
FROM rels r
LEFT JOIN exact_counts e ON e.oid = r.oid
LEFT JOIN index_info ii ON ii.table_name = r.table_name
LEFT JOIN column_info ci ON ci.oid = r.oid
CROSS JOIN ingest g
CROSS JOIN version v
ORDER BY r.kind, r.table_name
