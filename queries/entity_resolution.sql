-- Entity resolution candidates: pairs of organizations from DIFFERENT source
-- systems that may be the same real-world company. Only companies (kind =
-- 'company') that are not flagged deleted take part; individual shop buyers
-- (kind = 'person') are not companies to resolve.
--
-- Names are normalised (lower case, punctuation to spaces, trailing legal-form
-- suffixes such as GmbH / Inc. / Corp / Ltd / S.A. / LLC removed) and compared
-- with pg_trgm similarity(), once per pair of distinct names. To avoid comparing
-- every name with every other one, name candidates come from a set-similarity join
-- on the names' trigrams (show_trgm) with prefix and size filtering, which finds
-- exactly the pairs that can reach the threshold and share at least one trigram
-- (unless the names are so few that comparing all of them is cheaper);
-- similarity() is then computed only for those. Pairs that share an e-mail domain
-- or a VAT id are candidates whatever their names. An e-mail domain used by more
-- than 25 organizations (in the compared source systems) is taken for a public
-- mail provider and is no evidence.
--
-- Score (0..1) = 0.50 * name similarity
--              + 0.25 if the VAT ids are equal
--              + 0.15 if the e-mail domains are equal
--              + 0.05 if the countries are equal
--              + 0.05 if at least one attributes key has the same value on both sides
-- Each pair appears once, left_id < right_id (the convention of entity_links).
--
-- Only the best `limit` pairs are answered, so pairs that cannot be among them are
-- never made. Names are compared once per distinct name (many organizations share
-- one). A pair of organizations scores at least 0.50 x its names' similarity (plus
-- whatever its keys add, known exactly for the pairs sharing a key); the best such
-- lower bound that `limit` pairs reach is a score the answer's last row reaches.
-- Organizations of a pair of names are paired only when they can reach it without
-- a shared key (at most 0.50 x similarity + 0.10), and the attributes of a pair
-- are compared only when it can reach the limit-th best score without them.
WITH orgs AS MATERIALIZED (
  SELECT
    o.id,
    o.source_system,
    coalesce(
      nullif(
        btrim(regexp_replace(
          regexp_replace(lower(o.name), '[^[:alnum:]]+', ' ', 'g'),
          -- non-capturing groups: with capturing ones PostgreSQL runs its
          -- backtracking matcher on every name (3.6 s of 5.4 s at 1M records);
          -- without, only its automaton (0.6 s), for the same strings
          '(?:\s+(?:gmbh|mbh|ag|kg|co|inc|incorporated|corp|corporation|company|ltd|limited|llc|llp|lp|plc|sa|s a|sas|sarl|srl|spa|bv|nv|oy|ab|pty|kk))+\s*$',
          '')),
        ''),
      btrim(lower(o.name))
    ) AS norm_name,
    o.email_domain,
    o.country_code,
    nullif(upper(regexp_replace(o.vat_id, '[^[:alnum:]]+', '', 'g')), '') AS vat_key
  FROM canonical.organizations o
  WHERE o.kind = 'company'
    AND NOT o.is_deleted
    AND ({{ source_systems }}::text[] IS NULL OR o.source_system = ANY({{ source_systems }}::text[]))
),
domain_frequency AS MATERIALIZED (
  SELECT email_domain, count(*) AS orgs
  FROM orgs
  WHERE email_domain IS NOT NULL
  GROUP BY email_domain
),
links AS MATERIALIZED (
  SELECT l.left_id, l.right_id, string_agg(l.method, ',' ORDER BY l.method) AS link_methods
  FROM canonical.entity_links l
  GROUP BY l.left_id, l.right_id
),
key_pairs AS MATERIALIZED (
  -- the same e-mail domain, unless it is a public mail provider (see above), or the
  -- same VAT id (compared without spaces and punctuation): candidates whatever
  -- their names
  SELECT k.left_id, k.right_id
  FROM (
    SELECT a.id AS left_id, b.id AS right_id
    FROM orgs a
    JOIN domain_frequency d ON d.email_domain = a.email_domain AND d.orgs <= 25
    JOIN orgs b ON b.email_domain = a.email_domain AND b.id > a.id AND b.source_system <> a.source_system
    UNION
    SELECT a.id, b.id
    FROM orgs a
    JOIN orgs b ON b.vat_key = a.vat_key AND b.id > a.id AND b.source_system <> a.source_system
  ) k
),
key_scores AS MATERIALIZED (
  -- the pairs sharing a key, scored without the attributes (exact)
  SELECT k.left_id, k.right_id, a.norm_name AS left_norm, b.norm_name AS right_norm,
         similarity(a.norm_name, b.norm_name)::numeric AS name_similarity
  FROM key_pairs k
  JOIN orgs a ON a.id = k.left_id
  JOIN orgs b ON b.id = k.right_id
),
key_bound AS (
  -- the limit-th best score without the attributes among the pairs sharing a key
  -- (linked ones left out when asked), -1 when there are fewer: `limit` pairs reach
  -- it (see name_threshold)
  SELECT coalesce((SELECT m.base_score FROM (
                     SELECT round(0.50 * ks.name_similarity
                                  + CASE WHEN a.vat_key = b.vat_key THEN 0.25 ELSE 0 END
                                  + CASE WHEN a.email_domain = b.email_domain AND d.orgs <= 25 THEN 0.15 ELSE 0 END
                                  + CASE WHEN a.country_code = b.country_code THEN 0.05 ELSE 0 END, 3) AS base_score
                     FROM key_scores ks
                     JOIN orgs a ON a.id = ks.left_id
                     JOIN orgs b ON b.id = ks.right_id
                     LEFT JOIN domain_frequency d ON d.email_domain = a.email_domain
                     LEFT JOIN links k ON k.left_id = ks.left_id AND k.right_id = ks.right_id
                     WHERE {{ include_linked }} OR k.link_methods IS NULL
                   ) m
                   ORDER BY m.base_score DESC OFFSET {{ limit }} - 1 LIMIT 1), -1) AS min_score
),
name_systems AS MATERIALIZED (
  -- every distinct normalised name once per source system, with its organizations
  SELECT norm_name, source_system, count(*) AS orgs
  FROM orgs
  GROUP BY norm_name, source_system
),
name_list AS MATERIALIZED (
  SELECT DISTINCT norm_name FROM name_systems
),
trigrams AS MATERIALIZED (
  SELECT nm.norm_name, t.trgm, count(*) OVER (PARTITION BY nm.norm_name) AS n
  FROM name_list nm
  CROSS JOIN LATERAL unnest(show_trgm(nm.norm_name)) AS t(trgm)
),
same_name_bound AS (
  -- Organizations of the same name (one with trigrams) score at least 0.50 x 1:
  -- 0.50 when there are enough such pairs (linked ones aside when asked), else -1.
  SELECT CASE WHEN coalesce(sum(x.org_pairs), 0)
                   >= {{ limit }} + CASE WHEN {{ include_linked }} THEN 0
                                         ELSE (SELECT count(*) FROM links) END
              THEN 0.500 ELSE -1 END AS min_score
  FROM (
    SELECT ns.norm_name, (sum(ns.orgs) * sum(ns.orgs) - sum(ns.orgs * ns.orgs)) / 2 AS org_pairs
    FROM name_systems ns
    WHERE EXISTS (SELECT 1 FROM trigrams t WHERE t.norm_name = ns.norm_name)
    GROUP BY ns.norm_name
  ) x
),
name_threshold AS (
  -- Pairs of names only need comparing where 0.50 x similarity + 0.10 can reach a
  -- score `limit` pairs are known to reach (sharing a key, or the same name).
  SELECT greatest(CAST({{ min_similarity }} AS float8)::numeric,
                  2 * (greatest((SELECT min_score FROM key_bound),
                                (SELECT min_score FROM same_name_bound)) - 0.10)) AS t
),
prefix_groups AS MATERIALIZED (
  -- Prefix filtering (exact for Jaccard similarity, which is what pg_trgm's
  -- similarity() computes): order every name's n trigrams by global frequency,
  -- rarest first; two names with similarity >= t always share a trigram among the
  -- first n - ceil(t * n) + 1 of each. The names whose prefix holds a trigram are
  -- gathered per trigram and paired within the group (no join to plan).
  SELECT r.trgm, array_agg(r.norm_name ORDER BY r.norm_name) AS names, array_agg(r.n ORDER BY r.norm_name) AS sizes
  FROM (
    SELECT t.norm_name, t.trgm, t.n,
           row_number() OVER (PARTITION BY t.norm_name ORDER BY f.freq, t.trgm) AS pos
    FROM trigrams t
    JOIN (SELECT trgm, count(*) AS freq FROM trigrams GROUP BY trgm) f ON f.trgm = t.trgm
  ) r
  WHERE r.pos <= r.n - ceil((SELECT t FROM name_threshold) * r.n) + 1
  GROUP BY r.trgm
),
strategy AS (
  -- Few distinct names sharing many trigrams (names drawn from a short list of
  -- words) make the prefix groups pair more names than comparing every name with
  -- every other would: then every pair of names is compared instead.
  SELECT (SELECT count(*) FROM name_list) * ((SELECT count(*) FROM name_list) + 1) / 2
         <= (SELECT coalesce(sum(cardinality(g.names)::bigint * (cardinality(g.names) + 1) / 2), 0)
             FROM prefix_groups g) AS every_pair
),
name_candidates AS MATERIALIZED (
  SELECT DISTINCT a.name AS x, b.name AS y
  FROM prefix_groups g
  CROSS JOIN LATERAL unnest(g.names, g.sizes) WITH ORDINALITY AS a(name, n, i)
  CROSS JOIN LATERAL unnest(g.names, g.sizes) WITH ORDINALITY AS b(name, n, j)
  WHERE NOT (SELECT every_pair FROM strategy)
    AND b.j >= a.i
    AND b.n >= (SELECT t FROM name_threshold) * a.n
    AND a.n >= (SELECT t FROM name_threshold) * b.n
  UNION ALL
  SELECT a.norm_name, b.norm_name
  FROM name_list a
  JOIN name_list b ON b.norm_name >= a.norm_name
  WHERE (SELECT every_pair FROM strategy)
    AND (SELECT t FROM name_threshold) <= 1
),
name_pairs AS MATERIALIZED (
  -- pairs of names (x <= y, a name with itself too) at least min_similarity similar
  -- (name_threshold, when the pairs sharing a key leave less room) and sharing a trigram, with how many pairs of organizations of different
  -- systems they make (for a name with itself, each pair was counted in both orders)
  SELECT p.x, p.y, p.sim,
         coalesce(sum(s.orgs * t.orgs) FILTER (WHERE s.source_system <> t.source_system), 0)
           / CASE WHEN p.x = p.y THEN 2 ELSE 1 END AS org_pairs
  FROM (
    SELECT c.x, c.y, similarity(c.x, c.y)::numeric AS sim
    FROM name_candidates c
  ) p
  JOIN name_systems s ON s.norm_name = p.x
  JOIN name_systems t ON t.norm_name = p.y
  WHERE p.sim >= (SELECT t FROM name_threshold)
    AND p.sim > 0
  GROUP BY p.x, p.y, p.sim
),
bound AS (
  -- the best lower bound that `limit` pairs reach: among the pairs sharing a key
  -- (key_bound), of the same name (same_name_bound), or of the similar names compared (0.50 x similarity;
  -- when linked pairs are left out, as many more pairs as there are links must
  -- reach it); -1 when neither has `limit` pairs
  SELECT greatest(
           (SELECT min_score FROM key_bound),
           (SELECT min_score FROM same_name_bound),
           coalesce((SELECT max(c.lb) FILTER (WHERE c.reached >= c.need)
                     FROM (
                       SELECT round(0.50 * np.sim, 3) AS lb,
                              sum(np.org_pairs) OVER (ORDER BY round(0.50 * np.sim, 3) DESC) AS reached,
                              {{ limit }} + CASE WHEN {{ include_linked }} THEN 0
                                                 ELSE (SELECT count(*) FROM links) END AS need
                       FROM name_pairs np
                     ) c), -1)) AS min_score
),
candidates AS (
  -- organizations of similar names that can reach the bound without a key (each
  -- pair once: a pair of different names in both orders, a name with itself once),
  -- and the pairs sharing a key
  SELECT a.id AS left_id, b.id AS right_id, a.norm_name AS left_norm, b.norm_name AS right_norm,
         np.sim AS name_similarity
  FROM name_pairs np
  CROSS JOIN bound bd
  CROSS JOIN LATERAL (VALUES (np.x, np.y, true), (np.y, np.x, false)) AS o(l, r, first)
  JOIN orgs a ON a.norm_name = o.l
  JOIN orgs b ON b.norm_name = o.r AND b.id > a.id AND b.source_system <> a.source_system
  WHERE round(0.50 * np.sim + 0.10, 3) >= bd.min_score
    AND (np.x <> np.y OR o.first)
    AND NOT EXISTS (SELECT 1 FROM key_pairs k WHERE k.left_id = a.id AND k.right_id = b.id)
  UNION ALL
  SELECT ks.left_id, ks.right_id, ks.left_norm, ks.right_norm, ks.name_similarity
  FROM key_scores ks
),
matches AS MATERIALIZED (
  -- the candidates with their evidence and score without the attributes
  SELECT m.*,
         round(0.50 * m.name_similarity
               + CASE WHEN m.shared_vat_id IS NOT NULL THEN 0.25 ELSE 0 END
               + CASE WHEN m.shared_email_domain IS NOT NULL THEN 0.15 ELSE 0 END
               + CASE WHEN m.same_country THEN 0.05 ELSE 0 END, 3) AS base_score
  FROM (
    SELECT c.left_id, c.right_id, c.left_norm, c.right_norm, c.name_similarity,
           CASE WHEN a.email_domain = b.email_domain AND d.orgs <= 25 THEN a.email_domain END AS shared_email_domain,
           CASE WHEN a.vat_key = b.vat_key THEN a.vat_key END AS shared_vat_id,
           coalesce(a.country_code = b.country_code, false) AS same_country,
           k.link_methods
    FROM candidates c
    JOIN orgs a ON a.id = c.left_id
    JOIN orgs b ON b.id = c.right_id
    LEFT JOIN domain_frequency d ON d.email_domain = a.email_domain
    LEFT JOIN links k ON k.left_id = c.left_id AND k.right_id = c.right_id
  ) m
  WHERE {{ include_linked }} OR m.link_methods IS NULL
),
base_bound AS (
  -- the limit-th best score without the attributes: a pair that cannot reach it
  -- even with them (+0.05) is not in the answer, and its attributes are never compared
  SELECT coalesce((SELECT m.base_score FROM matches m
                   ORDER BY m.base_score DESC OFFSET {{ limit }} - 1 LIMIT 1), -1) AS min_score
),
scored AS (
  SELECT
    m.*,
    a.source_system AS left_source_system,
    a.source_id AS left_source_id,
    a.name AS left_name,
    b.source_system AS right_source_system,
    b.source_id AS right_source_id,
    b.name AS right_name,
    sa.shared_attributes,
    round(m.base_score + CASE WHEN sa.shared_attributes <> '{}'::jsonb THEN 0.05 ELSE 0 END, 3) AS score
  FROM matches m
  CROSS JOIN base_bound bb
  JOIN canonical.organizations a ON a.id = m.left_id
  JOIN canonical.organizations b ON b.id = m.right_id
  CROSS JOIN LATERAL (
    SELECT coalesce(jsonb_object_agg(ka.key, ka.value ORDER BY ka.key), '{}'::jsonb) AS shared_attributes
    FROM jsonb_each(a.attributes) AS ka
    JOIN jsonb_each(b.attributes) AS kb ON kb.key = ka.key AND kb.value = ka.value
  ) sa
  WHERE m.base_score + 0.05 >= bb.min_score
)
SELECT
  s.left_id,
  s.left_source_system,
  s.left_source_id,
  s.left_name,
  s.right_id,
  s.right_source_system,
  s.right_source_id,
  s.right_name,
  s.left_norm AS left_normalized_name,
  s.right_norm AS right_normalized_name,
  round(s.name_similarity, 3) AS name_similarity,
  s.shared_email_domain,
  s.shared_vat_id,
  s.same_country,
  s.shared_attributes,
  s.score,
  s.link_methods IS NOT NULL AS already_linked,
  s.link_methods
FROM scored s
ORDER BY s.score DESC, s.left_id, s.right_id
LIMIT {{ limit }}
