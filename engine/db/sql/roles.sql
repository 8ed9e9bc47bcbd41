-- Roles and grants, re-applied after every migration (idempotent).
-- quarry_owner  owns the schemas and every object in them (DDL).
-- quarry_writer ingests: reads and writes canonical and quarry tables.
-- quarry_reader runs analytics: SELECT on schema canonical only, nothing else.
GRANT USAGE ON SCHEMA canonical TO quarry_reader, quarry_writer;
GRANT USAGE ON SCHEMA quarry TO quarry_writer;
REVOKE ALL ON SCHEMA quarry FROM quarry_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA canonical TO quarry_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA canonical TO quarry_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA quarry TO quarry_writer;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA canonical TO quarry_writer;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA quarry TO quarry_writer;
-- Keys are created and revoked by the owner (quarry keys ...); the server only reads them.
REVOKE INSERT, UPDATE, DELETE ON quarry.api_keys FROM quarry_writer;
REVOKE CREATE ON SCHEMA public FROM quarry_reader, quarry_writer;
-- Key checks (one key at a time, digest in hand) for runtimes holding only the reader.
GRANT USAGE ON SCHEMA quarry_auth TO quarry_reader, quarry_writer;
GRANT EXECUTE ON FUNCTION quarry_auth.check_key(text, text) TO quarry_reader, quarry_writer;
-- The ingest ledger and the quarantine, as views (migration 0008): the API and
-- the web catalog show them with the reader role, which reads nothing else of
-- schema quarry.
GRANT USAGE ON SCHEMA quarry_ops TO quarry_reader, quarry_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA quarry_ops TO quarry_reader, quarry_writer;
