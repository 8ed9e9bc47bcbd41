-- Companies resolved once per ingest run (performance issue): a file that
-- writes organizations queues them, in its own transaction, for the next
-- company resolution instead of recomputing links and companies itself. The
-- queue is durable, so a run stopped between a file's commit and its company
-- resolution loses nothing: the next ingest run (or `quarry links resolve`)
-- resolves what is queued. A file loaded one at a time (the ingest Lambda,
-- `quarry watch`, backfill) resolves the queue in its own transaction, as before.

CREATE TABLE quarry.company_queue (
    organization_id bigint PRIMARY KEY REFERENCES canonical.organizations (id) ON DELETE CASCADE,
    queued_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE quarry.company_queue IS 'Organizations written by loaded files whose links and company are not yet recomputed (resolved at the end of the ingest run, or by `quarry links resolve`).';
COMMENT ON COLUMN quarry.company_queue.organization_id IS 'organizations.id.';
COMMENT ON COLUMN quarry.company_queue.queued_at IS 'When the first file not yet resolved wrote it.';

CREATE TABLE quarry.company_queue_values (
    rule  text NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (rule, value)
);
COMMENT ON TABLE quarry.company_queue_values IS 'Per matching rule, the block values the queued organizations had before the files that queued them (their links are recomputed too, so a link made by an old value goes away).';
COMMENT ON COLUMN quarry.company_queue_values.rule IS 'The rule''s name in mappings/companies.yaml.';
COMMENT ON COLUMN quarry.company_queue_values.value IS 'The rule''s first block value (the compared value for an equal rule, the first blocking key for a similar one).';
