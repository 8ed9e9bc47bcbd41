-- Checking an API key without reading the key table. Runtimes that hold only the
-- reader role (the API function on AWS) ask this function whether a presented key
-- is valid. It answers for one key whose secret digest the caller already has, so
-- the reader learns nothing it did not bring: no list of keys, no digests.
CREATE SCHEMA quarry_auth;
COMMENT ON SCHEMA quarry_auth IS 'Key checks for runtimes that cannot read quarry.api_keys.';

CREATE FUNCTION quarry_auth.check_key(p_id text, p_secret_sha256 text)
RETURNS TABLE (name text, scopes text[], rate_per_second integer)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT k.name, k.scopes, k.rate_per_second
      FROM quarry.api_keys k
     WHERE k.id = p_id
       AND k.revoked_at IS NULL
       AND k.secret_sha256 = p_secret_sha256
$$;
COMMENT ON FUNCTION quarry_auth.check_key(text, text) IS
    'The name, scopes and rate of the active key with this id and secret digest; no row when the key is unknown, revoked or the digest differs.';
REVOKE ALL ON FUNCTION quarry_auth.check_key(text, text) FROM PUBLIC;
