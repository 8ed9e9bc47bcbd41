-- Cross-system integrity findings, one row per problem found:
--   missing_in_erp          crm account with no erp customer (no entity link, no shared e-mail
--                           domain; with unify: no erp organization in its company)
--   missing_in_crm          erp customer with no crm account (same test the other way round)
--   country_mismatch        linked records of different systems with different country codes
--                           (with unify: a company member against the company's golden value)
--   name_mismatch           linked records whose names differ after lower-casing, trimming and
--                           collapsing white space (legal_name is accepted as an alternative)
--   vat_mismatch            linked records with different VAT ids (spaces and case ignored)
--   order_unknown_customer  order not resolved to an organization of its own source system
--   line_unknown_sku        order line whose SKU is not a product of its own source system
-- Deleted organizations (is_deleted) are ignored; the missing_in_* checks only run
-- when the other system has organizations at all. Each branch runs only when its
-- check is selected.
WITH {% if unify %}member_cmp AS (
  -- unify: every live member of a company with several members, against the
  -- company's golden values; the other side is the record the golden value came
  -- from (value_sources), and a member is not compared with its own value.
  SELECT c.id AS company_id, c.value_sources,
         o.id AS organization_id, o.source_system, o.source_id, o.name, o.country_code, o.vat_id,
         lower(regexp_replace(btrim(o.name), '\s+', ' ', 'g'))       AS norm_name,
         lower(regexp_replace(btrim(o.legal_name), '\s+', ' ', 'g')) AS norm_legal_name,
         upper(regexp_replace(o.vat_id, '\s', '', 'g'))              AS norm_vat,
         c.name AS r_name, c.country_code AS r_country_code, c.vat_id AS r_vat_id,
         lower(regexp_replace(btrim(c.name), '\s+', ' ', 'g'))       AS r_norm_name,
         lower(regexp_replace(btrim(c.legal_name), '\s+', ' ', 'g')) AS r_norm_legal_name,
         upper(regexp_replace(c.vat_id, '\s', '', 'g'))              AS r_norm_vat
  FROM canonical.companies c
  JOIN canonical.company_members m ON m.company_id = c.id
  JOIN canonical.organizations o ON o.id = m.organization_id AND NOT o.is_deleted
  WHERE c.member_count > 1
),
link_cmp AS (
  -- One row per member and compared field, in the shape of the links' comparison.
  SELECT k.source_system, k.source_id, f.field,
         f.src ->> 'source_system' AS r_source_system, f.src ->> 'source_id' AS r_source_id,
         k.name, k.country_code, k.vat_id, k.norm_name, k.norm_legal_name, k.norm_vat,
         k.r_name, k.r_country_code, k.r_vat_id, k.r_norm_name, k.r_norm_legal_name, k.r_norm_vat,
         jsonb_build_object('company_id', k.company_id, 'compared_with', 'golden value') AS extra
  FROM member_cmp k
  CROSS JOIN LATERAL (VALUES ('name', k.value_sources -> 'name'),
                             ('country_code', k.value_sources -> 'country_code'),
                             ('vat_id', k.value_sources -> 'vat_id')) AS f (field, src)
  WHERE f.src IS NOT NULL
    AND (f.src ->> 'organization_id')::bigint <> k.organization_id
),
{% else %}linked_pair AS (
  -- Every entity link, in both directions.
  SELECT l.left_id AS a_id, l.right_id AS b_id FROM canonical.entity_links l
  UNION ALL
  SELECT l.right_id, l.left_id FROM canonical.entity_links l
),
link_cmp AS (
  -- Each link between live records of two different systems once, oriented from
  -- the smaller organization id, with normalised names and VAT ids.
  SELECT a.source_system, a.source_id,
         b.source_system AS r_source_system, b.source_id AS r_source_id,
         a.name, a.country_code, a.vat_id,
         lower(regexp_replace(btrim(a.name), '\s+', ' ', 'g'))       AS norm_name,
         lower(regexp_replace(btrim(a.legal_name), '\s+', ' ', 'g')) AS norm_legal_name,
         upper(regexp_replace(a.vat_id, '\s', '', 'g'))              AS norm_vat,
         b.name AS r_name, b.country_code AS r_country_code, b.vat_id AS r_vat_id,
         lower(regexp_replace(btrim(b.name), '\s+', ' ', 'g'))       AS r_norm_name,
         lower(regexp_replace(btrim(b.legal_name), '\s+', ' ', 'g')) AS r_norm_legal_name,
         upper(regexp_replace(b.vat_id, '\s', '', 'g'))              AS r_norm_vat,
         jsonb_build_object('link_method', l.method, 'link_score', l.score) AS extra
  FROM canonical.entity_links l
  JOIN canonical.organizations a ON a.id = l.left_id AND NOT a.is_deleted
  JOIN canonical.organizations b ON b.id = l.right_id AND NOT b.is_deleted
  WHERE a.source_system <> b.source_system
),
{% endif %}findings AS (
  SELECT 'missing_in_erp'::text AS check_code,
         CASE WHEN EXISTS (SELECT 1 FROM canonical.opportunities y WHERE y.organization_id = a.id AND y.is_won)
              THEN 'warning' ELSE 'info' END AS severity,
         a.source_system, a.source_id,
         'erp'::text AS related_source_system, NULL::text AS related_source_id,
         jsonb_build_object('name', a.name, 'email_domain', a.email_domain,
{% if unify %}
                            'company_id', am.company_id,
{% endif %}
                            'has_won_opportunity',
                            EXISTS (SELECT 1 FROM canonical.opportunities y WHERE y.organization_id = a.id AND y.is_won))
           AS detail
  FROM canonical.organizations a
{% if unify %}
  LEFT JOIN canonical.company_members am ON am.organization_id = a.id
{% endif %}
  WHERE a.source_system = 'crm'
    AND NOT a.is_deleted
    AND 'missing_in_erp' = ANY ({{ checks }}::text[])
    AND EXISTS (SELECT 1 FROM canonical.organizations e WHERE e.source_system = 'erp' AND NOT e.is_deleted)
{% if unify %}
    AND NOT EXISTS (SELECT 1 FROM canonical.company_members mb
                    JOIN canonical.organizations b ON b.id = mb.organization_id
                    WHERE mb.company_id = am.company_id AND b.source_system = 'erp' AND NOT b.is_deleted)
{% else %}
    -- NOT IN over non-null ids: one hashed set built once. As NOT EXISTS the
    -- planner could run the link lookup again per organization (a nested loop
    -- it chose when it misjudged the e-mail domain test below as leaving one
    -- row): 30 s and more at a million records.
    AND a.id NOT IN (SELECT p.a_id FROM linked_pair p
                     JOIN canonical.organizations b ON b.id = p.b_id
                     WHERE b.source_system = 'erp' AND NOT b.is_deleted)
    AND NOT EXISTS (SELECT 1 FROM canonical.organizations b
                    WHERE b.email_domain = a.email_domain AND b.source_system = 'erp' AND NOT b.is_deleted)
{% endif %}

  UNION ALL
  SELECT 'missing_in_crm',
         CASE WHEN EXISTS (SELECT 1 FROM canonical.orders r WHERE r.organization_id = a.id)
              THEN 'warning' ELSE 'info' END,
         a.source_system, a.source_id,
         'crm', NULL,
         jsonb_build_object('name', a.name, 'email_domain', a.email_domain,
{% if unify %}
                            'company_id', am.company_id,
{% endif %}
                            'orders', (SELECT count(*) FROM canonical.orders r WHERE r.organization_id = a.id))
  FROM canonical.organizations a
{% if unify %}
  LEFT JOIN canonical.company_members am ON am.organization_id = a.id
{% endif %}
  WHERE a.source_system = 'erp'
    AND NOT a.is_deleted
    AND 'missing_in_crm' = ANY ({{ checks }}::text[])
    AND EXISTS (SELECT 1 FROM canonical.organizations e WHERE e.source_system = 'crm' AND NOT e.is_deleted)
{% if unify %}
    AND NOT EXISTS (SELECT 1 FROM canonical.company_members mb
                    JOIN canonical.organizations b ON b.id = mb.organization_id
                    WHERE mb.company_id = am.company_id AND b.source_system = 'crm' AND NOT b.is_deleted)
{% else %}
    -- NOT IN over non-null ids: one hashed set built once. As NOT EXISTS the
    -- planner could run the link lookup again per organization (a nested loop
    -- it chose when it misjudged the e-mail domain test below as leaving one
    -- row): 30 s and more at a million records.
    AND a.id NOT IN (SELECT p.a_id FROM linked_pair p
                     JOIN canonical.organizations b ON b.id = p.b_id
                     WHERE b.source_system = 'crm' AND NOT b.is_deleted)
    AND NOT EXISTS (SELECT 1 FROM canonical.organizations b
                    WHERE b.email_domain = a.email_domain AND b.source_system = 'crm' AND NOT b.is_deleted)
{% endif %}

  UNION ALL
  SELECT 'country_mismatch', 'warning',
         k.source_system, k.source_id, k.r_source_system, k.r_source_id,
         jsonb_build_object('field', 'country_code', 'value', k.country_code, 'related_value', k.r_country_code) || k.extra
  FROM link_cmp k
  WHERE 'country_mismatch' = ANY ({{ checks }}::text[])
{% if unify %}    AND k.field = 'country_code'
{% endif %}    AND nullif(btrim(k.country_code), '') IS NOT NULL
    AND nullif(btrim(k.r_country_code), '') IS NOT NULL
    AND upper(k.country_code) <> upper(k.r_country_code)

  UNION ALL
  SELECT 'name_mismatch', 'info',
         k.source_system, k.source_id, k.r_source_system, k.r_source_id,
         jsonb_build_object('field', 'name', 'value', k.name, 'related_value', k.r_name) || k.extra
  FROM link_cmp k
  WHERE 'name_mismatch' = ANY ({{ checks }}::text[])
{% if unify %}    AND k.field = 'name'
{% endif %}    -- no spelling of one side (name or legal_name) equals a spelling of the other;
    -- && ignores NULL elements
    AND NOT (ARRAY[k.norm_name, k.norm_legal_name] && ARRAY[k.r_norm_name, k.r_norm_legal_name])

  UNION ALL
  SELECT 'vat_mismatch', 'error',
         k.source_system, k.source_id, k.r_source_system, k.r_source_id,
         jsonb_build_object('field', 'vat_id', 'value', k.vat_id, 'related_value', k.r_vat_id) || k.extra
  FROM link_cmp k
  WHERE 'vat_mismatch' = ANY ({{ checks }}::text[])
{% if unify %}    AND k.field = 'vat_id'
{% endif %}    AND nullif(k.norm_vat, '') IS NOT NULL
    AND nullif(k.r_norm_vat, '') IS NOT NULL
    AND k.norm_vat <> k.r_norm_vat

  UNION ALL
  SELECT 'order_unknown_customer', 'error',
         r.source_system, r.source_id, r.source_system, r.customer_source_id,
         jsonb_build_object('order_number', r.order_number,
                            'order_date', r.order_date,
                            'total_amount', r.total_amount,
                            'organization_id', r.organization_id,
                            'reason', CASE
                                        WHEN nullif(btrim(r.customer_source_id), '') IS NULL THEN 'no customer on the order'
                                        WHEN c.id IS NULL THEN 'customer not found in the source system'
                                        ELSE 'organization not resolved'
                                      END)
  FROM canonical.orders r
  LEFT JOIN canonical.organizations c
         ON c.source_system = r.source_system AND c.source_id = r.customer_source_id
  WHERE 'order_unknown_customer' = ANY ({{ checks }}::text[])
    AND (r.organization_id IS NULL OR c.id IS NULL)

  UNION ALL
  SELECT 'line_unknown_sku', 'warning',
         l.source_system, l.source_id, l.source_system, l.sku,
         jsonb_build_object('order_source_id', r.source_id,
                            'line_number', l.line_number,
                            'sku', l.sku,
                            'description', l.description,
                            'net_amount', l.net_amount,
                            'known_in', (SELECT coalesce(jsonb_agg(DISTINCT p.source_system ORDER BY p.source_system), '[]'::jsonb)
                                         FROM canonical.products p WHERE p.sku = l.sku))
  FROM canonical.order_lines l
  JOIN canonical.orders r ON r.id = l.order_id
  WHERE 'line_unknown_sku' = ANY ({{ checks }}::text[])
    AND NOT EXISTS (SELECT 1 FROM canonical.products p
                    WHERE p.source_system = l.source_system AND p.sku = l.sku)
)
SELECT f.check_code AS "check",
       f.severity,
       f.source_system,
       f.source_id,
       f.related_source_system,
       f.related_source_id,
       f.detail
FROM findings f
ORDER BY CASE f.severity WHEN 'error' THEN 1 WHEN 'warning' THEN 2 ELSE 3 END,
         CASE f.check_code
           WHEN 'missing_in_erp' THEN 1 WHEN 'missing_in_crm' THEN 2
           WHEN 'country_mismatch' THEN 3 WHEN 'name_mismatch' THEN 4 WHEN 'vat_mismatch' THEN 5
           WHEN 'order_unknown_customer' THEN 6 ELSE 7
         END,
         f.source_system, f.source_id, f.related_source_system, f.related_source_id
LIMIT {{ limit }}
