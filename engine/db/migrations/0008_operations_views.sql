-- What the ingest did, readable by the API. The API holds only the reader role,
-- which cannot read schema quarry (keys, jobs, cache live there). These views
-- show the ingest ledger and the quarantine and nothing else; owned by the
-- owner, they read the tables with its rights, and the reader gets SELECT on
-- them alone (sql/roles.sql). A quarantined record's raw text is cut at 4000
-- characters here: the page and the API show the reason and the start of the
-- record; `quarry quarantine show ID` shows it whole.
CREATE SCHEMA IF NOT EXISTS quarry_ops;
COMMENT ON SCHEMA quarry_ops IS 'Read-only views of the ingest ledger and the quarantine, for the reader role (the API and the web catalog).';

CREATE VIEW quarry_ops.ingest_files AS
SELECT id, source_system, object_key, content_sha256, size_bytes, mapping_version, status,
       records_read, inserted, updated, unchanged, stale, quarantined, error, started_at, finished_at
  FROM quarry.ingest_files;
COMMENT ON VIEW quarry_ops.ingest_files IS 'The ingest ledger: one row per distinct file with its outcome and counts.';

CREATE VIEW quarry_ops.quarantine AS
SELECT id, ingest_file_id, source_system, object_key, position, record_type,
       left(raw_record, 4000) AS raw_record, length(raw_record) > 4000 AS raw_truncated,
       reason_code, message, mapping_version, created_at, resolved_at
  FROM quarry.quarantine;
COMMENT ON VIEW quarry_ops.quarantine IS 'Quarantined records with their reason; raw_record cut at 4000 characters (raw_truncated tells).';
