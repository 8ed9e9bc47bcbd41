-- Entity resolution candidates: pairs of organizations from DIFFERENT source
-- systems that may be the same real-world company. Only companies (kind =
-- 'company') that are not flagged deleted take part; individual shop buyers
-- (kind = 'person') are not companies to resolve.
--
-- Names are normalised (lower case, punctuation to spaces, trailing legal-form
-- suffixes such as GmbH / Inc. / Corp / Ltd / S.A. / LLC removed) and compared
-- with pg_trgm similarity(). To avoid comparing every organization with every
-- other one, name candidates come from a set-similarity join on the names'
-- trigrams (show_trgm) with prefix and size filtering, which finds exactly the
-- pairs that can reach min_similarity and share at least one trigram;
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
WITH orgs AS MATERIALIZED (
  SELECT
    o.id,
    o.source_system,
    coalesce(
      nullif(
        btrim(regexp_replace(
          regexp_replace(lower(o.name), '[^[:alnum:]]+', ' ', 'g'),
          '(\s+(gmbh|mbh|ag|kg|co|inc|incorporated|corp|corporation|company|ltd|limited|llc|llp|lp|plc|sa|s a|sas|sarl|srl|spa|bv|nv|oy|ab|pty|kk))+\s*$',
          '')),
        ''),
      btrim(lower(o.name))
    ) AS norm_name,
    o.email_domain,
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
trigrams AS MATERIALIZED (
  SELECT o.id, o.source_system, o.norm_name, o.email_domain, o.vat_key, t.trgm,
         count(*) OVER (PARTITION BY o.id) AS n
  FROM orgs o
  CROSS JOIN LATERAL unnest(show_trgm(o.norm_name)) AS t(trgm)
),
trigram_frequency AS (
  SELECT trgm, count(*) AS freq
  FROM trigrams
  GROUP BY trgm
),
prefixes AS (
  -- Prefix filtering (exact for Jaccard similarity, which is what pg_trgm's
  -- similarity() computes): order every name's n trigrams by global frequency,
  -- rarest first; two names with similarity >= t always share a trigram among the
  -- first n - ceil(t * n) + 1 of each. Only those prefixes are joined.
  SELECT r.*
  FROM (
    SELECT t.*, row_number() OVER (PARTITION BY t.id ORDER BY f.freq, t.trgm) AS pos
    FROM trigrams t
    JOIN trigram_frequency f ON f.trgm = t.trgm
  ) r
  WHERE r.pos <= r.n - ceil(CAST({{ min_similarity }} AS float8)::numeric * r.n) + 1
),
candidates AS MATERIALIZED (
  -- names that can reach min_similarity (a shared prefix trigram, compatible sizes)
  SELECT a.id AS left_id, b.id AS right_id,
         a.norm_name AS left_norm, b.norm_name AS right_norm,
         a.email_domain AS left_domain, b.email_domain AS right_domain,
         a.vat_key AS left_vat, b.vat_key AS right_vat
  FROM prefixes a
  JOIN prefixes b
    ON b.trgm = a.trgm AND b.id > a.id AND b.source_system <> a.source_system
   AND b.n >= CAST({{ min_similarity }} AS float8)::numeric * a.n
   AND a.n >= CAST({{ min_similarity }} AS float8)::numeric * b.n
  UNION
  -- the same e-mail domain, unless it is a public mail provider (see above)
  SELECT a.id, b.id, a.norm_name, b.norm_name, a.email_domain, b.email_domain, a.vat_key, b.vat_key
  FROM orgs a
  JOIN domain_frequency d ON d.email_domain = a.email_domain AND d.orgs <= 25
  JOIN orgs b ON b.email_domain = a.email_domain AND b.id > a.id AND b.source_system <> a.source_system
  UNION
  -- the same VAT id (compared without spaces and punctuation)
  SELECT a.id, b.id, a.norm_name, b.norm_name, a.email_domain, b.email_domain, a.vat_key, b.vat_key
  FROM orgs a
  JOIN orgs b ON b.vat_key = a.vat_key AND b.id > a.id AND b.source_system <> a.source_system
),
matches AS MATERIALIZED (
  -- the candidates that pass: names similar enough, or a shared key
  SELECT m.*
  FROM (
    SELECT
      c.left_id,
      c.right_id,
      c.left_norm,
      c.right_norm,
      similarity(c.left_norm, c.right_norm)::numeric AS name_similarity,
      CASE WHEN c.left_domain = c.right_domain AND d.orgs <= 25 THEN c.left_domain END AS shared_email_domain,
      CASE WHEN c.left_vat = c.right_vat THEN c.left_vat END AS shared_vat_id
    FROM candidates c
    LEFT JOIN domain_frequency d ON d.email_domain = c.left_domain
  ) m
  WHERE m.name_similarity >= CAST({{ min_similarity }} AS float8)::numeric
     OR m.shared_email_domain IS NOT NULL
     OR m.shared_vat_id IS NOT NULL
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
    coalesce(a.country_code = b.country_code, false) AS same_country,
    sa.shared_attributes,
    round(
      0.50 * m.name_similarity
      + CASE WHEN m.shared_vat_id IS NOT NULL THEN 0.25 ELSE 0 END
      + CASE WHEN m.shared_email_domain IS NOT NULL THEN 0.15 ELSE 0 END
      + CASE WHEN a.country_code = b.country_code THEN 0.05 ELSE 0 END
      + CASE WHEN sa.shared_attributes <> '{}'::jsonb THEN 0.05 ELSE 0 END,
      3) AS score,
    (
      SELECT string_agg(l.method, ',' ORDER BY l.method)
      FROM canonical.entity_links l
      WHERE l.left_id = m.left_id AND l.right_id = m.right_id
    ) AS link_methods
  FROM matches m
  JOIN canonical.organizations a ON a.id = m.left_id
  JOIN canonical.organizations b ON b.id = m.right_id
  CROSS JOIN LATERAL (
    SELECT coalesce(jsonb_object_agg(ka.key, ka.value ORDER BY ka.key), '{}'::jsonb) AS shared_attributes
    FROM jsonb_each(a.attributes) AS ka
    JOIN jsonb_each(b.attributes) AS kb ON kb.key = ka.key AND kb.value = ka.value
  ) sa
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
WHERE {{ include_linked }} OR s.link_methods IS NULL
ORDER BY s.score DESC, s.left_id, s.right_id
LIMIT {{ limit }}
