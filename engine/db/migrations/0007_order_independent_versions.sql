-- Versions are a function of the set of files delivered, not of their order.
--
-- The versions of a row are ordered by (source timestamp, content): a version
-- without a timestamp comes before any with one, and two versions with the same
-- timestamp are ordered by the md5 of their content, so every run agrees on which
-- is the newest. The current row is always the newest version seen; a version
-- that arrives after a newer one (a late file) is placed into entity_history at
-- its place and the versions after it are renumbered, instead of being dropped.

-- What is not content: bookkeeping, generated columns and resolved references.
CREATE FUNCTION canonical.version_content(row_data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT row_data - ARRAY['id', 'version', 'created_at', 'updated_at', 'ingest_file_id',
                            'email_domain', 'organization_id', 'product_id', 'order_id']
$$;
COMMENT ON FUNCTION canonical.version_content(jsonb) IS 'A row as JSON without bookkeeping, generated columns and resolved references: what makes two versions of a row the same version.';

-- The sort key of a version: versions sort by it, oldest first.
CREATE FUNCTION canonical.version_rank(row_data jsonb) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN row_data->>'source_updated_at' IS NULL THEN '0'
                ELSE '1' || to_char((row_data->>'source_updated_at')::timestamptz AT TIME ZONE 'UTC',
                                    'YYYYMMDDHH24MISSUS') END
           || md5(canonical.version_content(row_data)::text)
$$;
COMMENT ON FUNCTION canonical.version_rank(jsonb) IS 'Sort key of a version of a row: (has a source timestamp, the timestamp in UTC, md5 of the content). The current row has the greatest rank of all versions seen.';

-- Renumbering (a late version placed before the current one) changes only the
-- version: the trigger lets such an update through without a new version.
CREATE OR REPLACE FUNCTION canonical.track_version() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bookkeeping constant text[] := ARRAY['id', 'version', 'created_at', 'updated_at', 'ingest_file_id', 'email_domain'];
    refs constant text[] := ARRAY['organization_id', 'product_id'];
BEGIN
    IF (to_jsonb(NEW) - bookkeeping - refs) = (to_jsonb(OLD) - bookkeeping - refs) THEN
        IF NEW.version IS DISTINCT FROM OLD.version
           AND (to_jsonb(NEW) - 'version' - 'email_domain') = (to_jsonb(OLD) - 'version' - 'email_domain') THEN
            RETURN NEW; -- renumbered by canonical.place_late_version
        END IF;
        IF (to_jsonb(NEW) - bookkeeping) = (to_jsonb(OLD) - bookkeeping) THEN
            RETURN NULL; -- identical content: no write, no new version
        END IF;
        -- only resolved references changed: keep the version and its bookkeeping
        NEW.id := OLD.id;
        NEW.created_at := OLD.created_at;
        NEW.version := OLD.version;
        NEW.updated_at := OLD.updated_at;
        NEW.ingest_file_id := OLD.ingest_file_id;
        RETURN NEW;
    END IF;
    INSERT INTO canonical.entity_history
        (entity, entity_id, source_system, source_id, version, row_data, source_updated_at, valid_from)
    VALUES
        (TG_TABLE_NAME, OLD.id, OLD.source_system, OLD.source_id, OLD.version, to_jsonb(OLD),
         OLD.source_updated_at, OLD.updated_at);
    NEW.id := OLD.id;
    NEW.created_at := OLD.created_at;
    NEW.version := OLD.version + 1;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION canonical.track_version() IS 'BEFORE UPDATE trigger of every entity table: skips updates that change nothing, applies resolved references (organization_id, product_id) and renumbering without a new version, otherwise saves the old row to entity_history and bumps version and updated_at.';

-- A version older than the current row, from a file delivered late: unless the
-- same content is already the current row or in history, it goes into history at
-- its place (by version_rank) and the versions after it move up by one.
CREATE FUNCTION canonical.place_late_version(p_entity text, p_late jsonb) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    cur jsonb;
    cur_id bigint := (p_late->>'id')::bigint;
    content jsonb := canonical.version_content(p_late);
    rank text := canonical.version_rank(p_late);
    place integer;
BEGIN
    IF p_entity NOT IN ('organizations', 'products', 'orders', 'order_lines', 'opportunities', 'people') THEN
        RAISE EXCEPTION 'place_late_version: % is not a versioned entity', p_entity;
    END IF;
    EXECUTE format('SELECT to_jsonb(t) FROM canonical.%I t WHERE t.id = $1 FOR UPDATE', p_entity)
        INTO cur USING cur_id;
    IF cur IS NULL OR canonical.version_content(cur) = content
       OR canonical.version_rank(cur) <= rank THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM canonical.entity_history h
               WHERE h.entity = p_entity AND h.entity_id = cur_id
                 AND canonical.version_content(h.row_data) = content) THEN
        RETURN false; -- seen before
    END IF;
    SELECT count(*) + 1 INTO place FROM canonical.entity_history h
    WHERE h.entity = p_entity AND h.entity_id = cur_id
      AND canonical.version_rank(h.row_data) < rank;
    -- Move the later versions up by one (through negative numbers: the
    -- (entity, entity_id, version) key is checked row by row).
    UPDATE canonical.entity_history
    SET version = -version - 1, row_data = jsonb_set(row_data, '{version}', to_jsonb(version + 1))
    WHERE entity = p_entity AND entity_id = cur_id AND version >= place;
    UPDATE canonical.entity_history SET version = -version
    WHERE entity = p_entity AND entity_id = cur_id AND version < 0;
    EXECUTE format('UPDATE canonical.%I SET version = version + 1 WHERE id = $1', p_entity) USING cur_id;
    INSERT INTO canonical.entity_history
        (entity, entity_id, source_system, source_id, version, row_data, source_updated_at, valid_from, valid_to)
    VALUES
        (p_entity, cur_id, cur->>'source_system', cur->>'source_id', place,
         p_late || jsonb_build_object('version', place),
         (p_late->>'source_updated_at')::timestamptz, now(), now());
    RETURN true;
END
$$;
COMMENT ON FUNCTION canonical.place_late_version(text, jsonb) IS 'Places a version older than the current row (a late file) into entity_history at its place by version_rank and renumbers the later versions; does nothing when the same content was seen before. Its valid_from equals valid_to: it was never current.';
COMMENT ON COLUMN canonical.entity_history.version IS 'The place of this version among all versions of the row seen, oldest first by source timestamp (then content): the current row has the highest.';
COMMENT ON COLUMN canonical.entity_history.valid_from IS 'When this version became current in Quarry (equal to valid_to for a version that arrived after a newer one and was never current).';

-- Links are recomputed, not accumulated: for every key value a file touches
-- (before and after), the automatic links of that value are made exactly the
-- set the rules give over all organizations, whatever the order files came in.
-- A link by a key is made when the mapping of either side's source declares it.
CREATE TABLE quarry.source_link_keys (
    source_system text PRIMARY KEY,
    link_keys     text[] NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE quarry.source_link_keys IS 'The link keys (email_domain, vat_id, name) that the mapping of each source system declares, as of its last load; a link by a key needs one side''s source to declare it. Sources loaded before this table existed are registered by their next load.';

CREATE INDEX organizations_normalized_name_idx ON canonical.organizations (canonical.normalized_company_name(name))
    WHERE kind = 'company';

COMMENT ON TABLE canonical.entity_history IS 'Previous versions of every canonical entity row: written, whole, when a newer source version replaces the row, or when an older one arrives after it (placed by source timestamp). Versions of rows without a source timestamp of their own (order lines, rows of sources without one) follow the order of delivery.';
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['organizations', 'products', 'orders', 'order_lines', 'opportunities', 'people'] LOOP
        EXECUTE format('COMMENT ON COLUMN canonical.%I.version IS %L', t,
            'The place of the current version among all versions of the row seen (1 for the first); older versions are in entity_history.');
    END LOOP;
END
$$;
