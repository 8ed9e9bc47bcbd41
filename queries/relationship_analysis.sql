-- Account hierarchy: for every organization of one source system, its root, depth,
-- path, descendants, own revenue and revenue rolled up over its whole subtree.
--
-- The hierarchy is organizations.parent_source_id -> source_id within the source
-- system. A recursive CTE walks *up* from every organization to its root, carrying
-- the ids already visited: a walk stops at the root, at a parent that is missing, at
-- an organization it has already visited (a cycle) or after max_depth steps. Each
-- (organization, ancestor) pair is then used to count descendants and roll revenue
-- up, so every organization's revenue is added to each of its ancestors exactly once.
--
-- Own revenue = total_amount of the orders placed by the organization, plus those of
-- organizations in other source systems linked to it through canonical.entity_links
-- (each linked record is attributed to one account only: its highest-scoring link,
-- ties broken by the lowest link id), plus the amount of its closed-won opportunities.
WITH RECURSIVE orgs AS (
  SELECT o.id, o.source_system, o.source_id, o.name, o.parent_source_id, p.id AS parent_id
  FROM canonical.organizations o
  LEFT JOIN canonical.organizations p
         ON p.source_system = o.source_system
        AND p.source_id = o.parent_source_id
  WHERE o.source_system = {{ source_system }}::text
),
walk AS (
  SELECT o.id AS start_id,
         o.id AS ancestor_id,
         o.parent_id,
         0 AS depth,
         ARRAY[o.id] AS visited,
         ARRAY[o.source_id] AS path
  FROM orgs o
  UNION ALL
  SELECT w.start_id,
         a.id,
         a.parent_id,
         w.depth + 1,
         w.visited || a.id,
         a.source_id || w.path
  FROM walk w
  JOIN orgs a ON a.id = w.parent_id
  WHERE w.depth < {{ max_depth }}
    AND NOT (a.id = ANY (w.visited))
),
chain AS (
  -- The last step of every walk: the topmost ancestor reached.
  SELECT DISTINCT ON (w.start_id)
         w.start_id,
         w.ancestor_id                           AS root_id,
         w.depth,
         w.path,
         w.parent_id IS NOT NULL AND w.parent_id = ANY (w.visited) AS in_cycle,
         w.parent_id IS NOT NULL AND NOT (w.parent_id = ANY (w.visited)) AS truncated
  FROM walk w
  ORDER BY w.start_id, w.depth DESC
),
links AS (
  SELECT l.id, l.score, l.left_id AS account_id, l.right_id AS other_id FROM canonical.entity_links l
  UNION ALL
  SELECT l.id, l.score, l.right_id, l.left_id FROM canonical.entity_links l
),
attribution AS (
  -- Records of other source systems, each attributed to its best-linked account.
  SELECT DISTINCT ON (k.other_id) k.other_id, k.account_id
  FROM links k
  JOIN orgs a ON a.id = k.account_id
  JOIN canonical.organizations x ON x.id = k.other_id AND x.source_system <> a.source_system
  ORDER BY k.other_id, k.score DESC, k.id
),
buyer AS (
  SELECT o.id AS buyer_id, o.id AS account_id FROM orgs o
  UNION ALL
  SELECT t.other_id, t.account_id FROM attribution t
),
order_revenue AS (
  SELECT b.account_id, sum(r.total_amount) AS amount
  FROM buyer b
  JOIN canonical.orders r ON r.organization_id = b.buyer_id
  GROUP BY b.account_id
),
won_revenue AS (
  SELECT y.organization_id AS account_id, sum(y.amount) AS amount
  FROM canonical.opportunities y
  JOIN orgs o ON o.id = y.organization_id
  WHERE y.is_won AND y.amount IS NOT NULL
  GROUP BY y.organization_id
),
own AS (
  SELECT o.id,
         coalesce(orv.amount, 0) AS order_revenue,
         coalesce(wr.amount, 0)  AS won_revenue
  FROM orgs o
  LEFT JOIN order_revenue orv ON orv.account_id = o.id
  LEFT JOIN won_revenue wr ON wr.account_id = o.id
),
rollup AS (
  -- Every walk step (start below ancestor) adds the start's revenue to the ancestor.
  SELECT w.ancestor_id AS id,
         count(*) FILTER (WHERE w.depth > 0)     AS descendants,
         count(*) FILTER (WHERE w.depth = 1)     AS children,
         sum(ow.order_revenue + ow.won_revenue)  AS rollup_revenue
  FROM walk w
  JOIN own ow ON ow.id = w.start_id
  GROUP BY w.ancestor_id
)
SELECT o.source_system,
       o.source_id,
       o.id                                            AS organization_id,
       o.name,
       o.parent_source_id,
       r.source_id                                     AS root_source_id,
       r.name                                          AS root_name,
       c.depth::bigint                                 AS depth,
       array_to_string(c.path, ' > ')                  AS path,
       ru.children::bigint                             AS direct_children,
       ru.descendants::bigint                          AS descendant_count,
       round(ow.order_revenue, 2)                      AS own_order_revenue,
       round(ow.won_revenue, 2)                        AS own_won_opportunity_revenue,
       round(ow.order_revenue + ow.won_revenue, 2)     AS own_revenue,
       round(ru.rollup_revenue, 2)                     AS rollup_revenue,
       c.in_cycle,
       c.truncated,
       (o.parent_source_id IS NOT NULL AND o.parent_id IS NULL) AS parent_missing
FROM orgs o
JOIN chain c   ON c.start_id = o.id
JOIN orgs r    ON r.id = c.root_id
JOIN own ow    ON ow.id = o.id
JOIN rollup ru ON ru.id = o.id
WHERE {{ root_source_id }}::text IS NULL
   OR {{ root_source_id }}::text = ANY (c.path)
ORDER BY r.source_id, c.path, o.id
