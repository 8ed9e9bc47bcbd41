-- Analytics jobs (the local job store port; DynamoDB on AWS) and API keys.

CREATE TABLE quarry.jobs (
    id                text PRIMARY KEY,
    operation         text NOT NULL,
    operation_version text NOT NULL,
    parameters        jsonb NOT NULL,
    format            text NOT NULL CHECK (format IN ('json', 'ndjson', 'csv')),
    state             text NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts      integer NOT NULL CHECK (max_attempts >= 1),
    submitted_at      timestamptz NOT NULL,
    started_at        timestamptz,
    finished_at       timestamptz,
    next_attempt_at   timestamptz NOT NULL,
    lease_expires_at  timestamptz,
    error             jsonb,
    result            json,
    owner             text,
    request_id        text
);
COMMENT ON TABLE quarry.jobs IS 'Analytics jobs and their state machine (queued, running, succeeded, failed); state only moves forward.';
COMMENT ON COLUMN quarry.jobs.attempts IS 'Attempts started so far; a transient failure re-queues the job until max_attempts.';
COMMENT ON COLUMN quarry.jobs.lease_expires_at IS 'A running job whose lease passed belongs to a runner that died; recovery re-queues or fails it.';
COMMENT ON COLUMN quarry.jobs.result IS 'Inline rows for small results, or the object-storage key of a large one.';
CREATE INDEX jobs_due_idx ON quarry.jobs (next_attempt_at) WHERE state = 'queued';
CREATE INDEX jobs_lease_idx ON quarry.jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_finished_idx ON quarry.jobs (finished_at) WHERE finished_at IS NOT NULL;

-- Defence in depth: whatever writes the table, state only moves forward.
CREATE FUNCTION quarry.jobs_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state = NEW.state THEN
        IF OLD.state IN ('succeeded', 'failed') THEN
            RAISE EXCEPTION 'job % is % and can no longer change', OLD.id, OLD.state
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END IF;
    IF NOT ((OLD.state, NEW.state) IN (('queued', 'running'), ('queued', 'failed'),
            ('running', 'queued'), ('running', 'succeeded'), ('running', 'failed'))) THEN
        RAISE EXCEPTION 'job %: illegal state change % -> %', OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.attempts < OLD.attempts THEN
        RAISE EXCEPTION 'job %: attempts cannot decrease', OLD.id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER jobs_forward_only BEFORE UPDATE ON quarry.jobs
    FOR EACH ROW EXECUTE FUNCTION quarry.jobs_forward_only();

CREATE TABLE quarry.api_keys (
    id              text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{12}$'),
    name            text NOT NULL CHECK (name <> ''),
    secret_sha256   char(64) NOT NULL,
    scopes          text[] NOT NULL CHECK (scopes <@ ARRAY['read', 'jobs', 'admin']::text[] AND cardinality(scopes) > 0),
    rate_per_second integer CHECK (rate_per_second > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz
);
COMMENT ON TABLE quarry.api_keys IS 'API keys: only the sha256 of each secret is stored; the key itself is shown once, at creation.';
COMMENT ON COLUMN quarry.api_keys.id IS 'Public part of the key (qk_<id>_<secret>), used to find the row.';
COMMENT ON COLUMN quarry.api_keys.scopes IS 'read: run light operations; jobs: submit and read jobs; admin: custom SQL and all jobs.';
COMMENT ON COLUMN quarry.api_keys.rate_per_second IS 'Per-key request rate; NULL uses the configured default.';

-- Servers keep the data version in memory and learn of every move at commit
-- (LISTEN quarry_data_version), so a cache hit needs no database round trip.
CREATE FUNCTION quarry.notify_data_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('quarry_data_version', NEW.version::text);
    RETURN NEW;
END $$;
CREATE TRIGGER data_version_notify AFTER UPDATE ON quarry.data_version
    FOR EACH ROW EXECUTE FUNCTION quarry.notify_data_version();

-- Cached answers are served as stored: json keeps their key order, jsonb would not.
ALTER TABLE quarry.cache ALTER COLUMN body TYPE json USING body::json;
-- The cache is disposable: no WAL for it, so a cache write costs no fsync. After a
-- crash PostgreSQL empties it, which is only a run of misses.
ALTER TABLE quarry.cache SET UNLOGGED;
