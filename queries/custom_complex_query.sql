-- The caller's statement becomes a subquery: anything but a single query
-- expression (a second statement, DDL, DML) is a syntax error, and the reader
-- role's READ ONLY transaction refuses writes hidden in functions.
SELECT * FROM (
{{ sql("query") }}
) AS custom_query
