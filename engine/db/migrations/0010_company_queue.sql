-- Companies resolved once per ingest run (performance issue): a file that
-- writes organizations queues them, in its own transaction, for the next
-- company resolution instead of recomputing links and companies itself. The
-- queue is durable, so a run stopped between a file's commit and its company
-- resolution loses nothing: the next ingest run (or `quarry companies resolve`)
-- resolves what is queued. A file loaded one at a time (the ingest Lambda,
-- `quarry watch`, backfill) resolves its own entries in its own transaction.
--
-- No uniqueness on purpose: a file only ever inserts rows (so it never waits
-- for, nor locks a row of, a resolution running meanwhile), and a resolution
-- deletes only the rows it saw, so the entries of a file that commits later
-- stay for the next one. No foreign key either (no row locks on organizations
-- from the queue): a resolution skips ids that no longer exist.

CREATE TABLE quarry.company_queue (
    organization_id   bigint NOT NULL,
    ingest_file_id    bigint,
    rules_fingerprint text,
    queued_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX company_queue_file_idx ON quarry.company_queue (ingest_file_id);
COMMENT ON TABLE quarry.company_queue IS 'Organizations written by loaded files whose links and company are not yet recomputed (resolved at the end of the ingest run, or by `quarry companies resolve`); one row per file that wrote them.';
COMMENT ON COLUMN quarry.company_queue.organization_id IS 'organizations.id.';
COMMENT ON COLUMN quarry.company_queue.ingest_file_id IS 'The ledger entry (quarry.ingest_files.id) of the file that queued it.';
COMMENT ON COLUMN quarry.company_queue.rules_fingerprint IS 'Fingerprint of the company rules the file saw (NULL: none registered); a resolution under other rules recomputes everything.';
COMMENT ON COLUMN quarry.company_queue.queued_at IS 'When the file queued it.';

CREATE TABLE quarry.company_queue_values (
    rule           text NOT NULL,
    value          text NOT NULL,
    ingest_file_id bigint
);
CREATE INDEX company_queue_values_file_idx ON quarry.company_queue_values (ingest_file_id);
COMMENT ON TABLE quarry.company_queue_values IS 'Per matching rule, the block values the queued organizations had before the files that queued them (their links are recomputed too, so a link made by an old value goes away).';
COMMENT ON COLUMN quarry.company_queue_values.rule IS 'The rule''s name in mappings/companies.yaml.';
COMMENT ON COLUMN quarry.company_queue_values.value IS 'The rule''s first block value (the compared value for an equal rule, the first blocking key for a similar one).';
COMMENT ON COLUMN quarry.company_queue_values.ingest_file_id IS 'The ledger entry of the file that queued it.';
