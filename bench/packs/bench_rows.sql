SELECT g::int8 AS id,
       'Customer ' || g AS name,
       round((g % 100000)::numeric / 7, 2) AS amount,
       timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second' AS at,
       g % 2 = 0 AS active,
       CASE WHEN g % 2 = 0 THEN 'note ' || g END AS note
  FROM generate_series(1, {{ rows }}) AS g
 ORDER BY g
