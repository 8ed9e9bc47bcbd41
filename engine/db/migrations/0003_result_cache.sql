-- The API's result cache (the local cache port; DynamoDB on AWS). Keys are
-- sha256 over operation identity, parameters and the data version, so an ingest
-- that commits makes every older entry unreachable; expired rows are ignored and
-- swept.
CREATE TABLE quarry.cache (
    key        char(64) PRIMARY KEY,
    operation  text NOT NULL,
    body       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
COMMENT ON TABLE quarry.cache IS 'Cached operation results by cache key; rows past expires_at are ignored and swept.';
CREATE INDEX cache_expires_idx ON quarry.cache (expires_at);
