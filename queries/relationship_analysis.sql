-- Account hierarchy: for every organization of one source system, its root, depth,
-- path, descendants, own revenue and revenue rolled up over its whole subtree.
--
-- The hierarchy is organizations.parent_source_id -> source_id within the source
-- system. A recursive CTE walks *up* from every organization to its root, carrying
-- the ids already visited: a walk stops at the root, at a parent that is missing, at
-- an organization it has already visited (a cycle) or after max_depth steps. Each
-- step finds the parent through the (source_system, source_id) key, an index probe,
-- so the walk costs one probe per organization and level. Each (organization,
-- ancestor) pair is then used to count descendants and roll revenue up, so every
-- organization's revenue is added to each of its ancestors exactly once.
-- The walk carries the ancestors' names and the roll-up the own revenue, so the
-- result joins the walk's outputs (whose sizes the planner cannot estimate) to
-- each other once and to the organizations only by their primary key.
--
-- Own revenue (buyer -> account attribution, then orders and won opportunities):
--   unify = false: the organization's own orders and those of organizations in
--     other source systems linked to it through canonical.entity_links (each linked
--     record is attributed to one account only: its highest-scoring link, ties
--     broken by the lowest link id), plus its own closed-won opportunities.
--   unify = true: every organization of a company (canonical.company_members) buys
--     for the company's account in this system (its member of source_system with
--     the lowest id), so a company's orders and won opportunities count once.
-- source_systems keeps only orders and opportunities recorded in those systems.
WITH RECURSIVE walk AS (
  SELECT o.id              AS start_id,
         o.id              AS ancestor_id,
         o.parent_source_id AS next_source_id,
         0                 AS depth,
         ARRAY[o.id]       AS visited,
         ARRAY[o.source_id] AS path,
         o.name            AS ancestor_name
  FROM canonical.organizations o
  WHERE o.source_system = {{ source_system }}::text
  UNION ALL
  SELECT w.start_id,
         a.id,
         a.parent_source_id,
         w.depth + 1,
         w.visited || a.id,
         a.source_id || w.path,
         a.name
  FROM walk w
  JOIN canonical.organizations a
    ON a.source_system = {{ source_system }}::text
   AND a.source_id = w.next_source_id
  WHERE w.depth < {{ max_depth }}
    AND NOT (a.id = ANY (w.visited))
),
chain AS (
  -- The last step of every walk: the topmost ancestor reached, and why it stopped
  -- (its parent already visited: a cycle; a parent not visited: max_depth).
  SELECT c.start_id, c.root_id, c.root_name, c.depth, c.path,
         p.id IS NOT NULL AND p.id = ANY (c.visited)       AS in_cycle,
         p.id IS NOT NULL AND NOT (p.id = ANY (c.visited)) AS truncated
  FROM (
    SELECT DISTINCT ON (w.start_id)
           w.start_id, w.ancestor_id AS root_id, w.ancestor_name AS root_name, w.depth, w.path,
           w.visited, w.next_source_id
    FROM walk w
    ORDER BY w.start_id, w.depth DESC
  ) c
  LEFT JOIN canonical.organizations p
         ON p.source_system = {{ source_system }}::text
        AND p.source_id = c.next_source_id
),
{% if unify %}
account AS (
  -- Each company's account in this hierarchy: its member of the source system with
  -- the lowest id.
  SELECT DISTINCT ON (m.company_id) m.company_id, m.organization_id AS account_id
  FROM canonical.company_members m
  JOIN canonical.organizations o ON o.id = m.organization_id
  WHERE o.source_system = {{ source_system }}::text
  ORDER BY m.company_id, m.organization_id
),
buyer AS (
  SELECT m.organization_id AS buyer_id, a.account_id
  FROM canonical.company_members m
  JOIN account a ON a.company_id = m.company_id
),
{% else %}
attribution AS (
  -- Records of other source systems, each attributed to its best-linked account.
  SELECT DISTINCT ON (k.other_id) k.other_id, k.account_id
  FROM (
    SELECT l.id, l.score, l.left_id AS account_id, l.right_id AS other_id FROM canonical.entity_links l
    UNION ALL
    SELECT l.id, l.score, l.right_id, l.left_id FROM canonical.entity_links l
  ) k
  JOIN canonical.organizations a ON a.id = k.account_id
  JOIN canonical.organizations x ON x.id = k.other_id
  WHERE a.source_system = {{ source_system }}::text
    AND x.source_system <> {{ source_system }}::text
  ORDER BY k.other_id, k.score DESC, k.id
),
buyer AS (
  SELECT o.id AS buyer_id, o.id AS account_id
  FROM canonical.organizations o
  WHERE o.source_system = {{ source_system }}::text
  UNION ALL
  SELECT t.other_id, t.account_id FROM attribution t
),
{% endif %}
order_revenue AS (
  SELECT b.account_id, sum(r.total_amount) AS amount
  FROM buyer b
  JOIN canonical.orders r ON r.organization_id = b.buyer_id
  WHERE {{ source_systems }}::text[] IS NULL OR r.source_system = ANY ({{ source_systems }}::text[])
  GROUP BY b.account_id
),
won_revenue AS (
  SELECT {% if unify %}b.account_id{% else %}y.organization_id{% endif %} AS account_id, sum(y.amount) AS amount
  FROM canonical.opportunities y
{% if unify %}
  JOIN buyer b ON b.buyer_id = y.organization_id
{% else %}
  JOIN canonical.organizations o ON o.id = y.organization_id
{% endif %}
  WHERE y.is_won AND y.amount IS NOT NULL
{% if not unify %}
    AND o.source_system = {{ source_system }}::text
{% endif %}
    AND ({{ source_systems }}::text[] IS NULL OR y.source_system = ANY ({{ source_systems }}::text[]))
  GROUP BY 1
),
own AS (
  SELECT w.start_id AS id,
         coalesce(orv.amount, 0) AS order_revenue,
         coalesce(wr.amount, 0)  AS won_revenue
  FROM walk w
  LEFT JOIN order_revenue orv ON orv.account_id = w.start_id
  LEFT JOIN won_revenue wr ON wr.account_id = w.start_id
  WHERE w.depth = 0
),
rollup AS (
  -- Every walk step (start below ancestor) adds the start's revenue to the ancestor;
  -- the step of depth 0 is the ancestor's own.
  SELECT w.ancestor_id AS id,
         count(*) FILTER (WHERE w.depth > 0)     AS descendants,
         count(*) FILTER (WHERE w.depth = 1)     AS children,
         sum(ow.order_revenue) FILTER (WHERE w.depth = 0) AS order_revenue,
         sum(ow.won_revenue) FILTER (WHERE w.depth = 0)   AS won_revenue,
         sum(ow.order_revenue + ow.won_revenue)  AS rollup_revenue
  FROM walk w
  JOIN own ow ON ow.id = w.start_id
  GROUP BY w.ancestor_id
)
SELECT o.source_system,
       o.source_id,
       o.id                                            AS organization_id,
       m.company_id,
       o.name,
       o.parent_source_id,
       c.path[1]                                       AS root_source_id,
       c.root_name,
       c.depth::bigint                                 AS depth,
       array_to_string(c.path, ' > ')                  AS path,
       ru.children::bigint                             AS direct_children,
       ru.descendants::bigint                          AS descendant_count,
       round(ru.order_revenue, 2)                      AS own_order_revenue,
       round(ru.won_revenue, 2)                        AS own_won_opportunity_revenue,
       round(ru.order_revenue + ru.won_revenue, 2)     AS own_revenue,
       round(ru.rollup_revenue, 2)                     AS rollup_revenue,
       c.in_cycle,
       c.truncated,
       (o.parent_source_id IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM canonical.organizations p
                        WHERE p.source_system = o.source_system
                          AND p.source_id = o.parent_source_id)) AS parent_missing
FROM chain c
JOIN canonical.organizations o ON o.id = c.start_id
JOIN rollup ru ON ru.id = c.start_id
LEFT JOIN canonical.company_members m ON m.organization_id = o.id
WHERE {{ root_source_id }}::text IS NULL
   OR {{ root_source_id }}::text = ANY (c.path)
ORDER BY c.path[1], c.path, o.id
